//! Port of grpc-go `xds/internal/balancer/priority` at `e0ac3acff`.

pub mod balancer;
pub mod child;
pub mod config;
pub mod ignore_resolve_now;
pub mod sync_priority;

pub use balancer::{PriorityBalancer, PriorityBuilder};
pub use config::{Child, ChildPolicy, LbConfig};
pub use sync_priority::ERR_ALL_PRIORITIES_REMOVED;

/// Registered name of the priority policy.
pub const NAME: &str = "priority_experimental";
