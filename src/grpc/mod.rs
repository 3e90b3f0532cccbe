//! The port of gRPC-Go's priority load balancer and the tree around it.
//! Each file names the Go file and commit it ports. This module knows
//! nothing of the command line, files or charts.

pub mod balancer;
pub mod balancergroup;
pub mod cache;
pub mod clientconn;
pub mod connectivity;
pub mod gracefulswitch;
pub mod grpclog;
pub mod leaf;
pub mod outlier_detection;
pub mod priority;
pub mod probe;
pub mod serializer;
pub mod subconn;
pub mod tree;
pub mod variant;
pub mod xds;

pub use balancer::*;
pub use connectivity::ConnectivityState;
pub use variant::Variant;
