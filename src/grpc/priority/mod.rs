//! Port of grpc-go `xds/internal/balancer/priority` at `e0ac3acff`.

pub mod config;

pub use config::{Child, ChildPolicy, LbConfig};

/// Registered name of the priority policy.
pub const NAME: &str = "priority_experimental";
