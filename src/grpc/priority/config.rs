//! Port of grpc-go `xds/internal/balancer/priority/config.go` at `e0ac3acff`:
//! the priority policy's parsed configuration.

use std::collections::BTreeMap;

use std::rc::Rc;

use crate::grpc::balancer::LoadBalancingConfig;

/// One child's policy: its registered name and its parsed config.
#[derive(Clone)]
pub struct ChildPolicy {
    pub name: String,
    pub config: Option<LoadBalancingConfig>,
}

/// `priority.Child`.
#[derive(Clone)]
pub struct Child {
    pub config: ChildPolicy,
    pub ignore_reresolution_requests: bool,
}

/// `priority.LBConfig`: children by name, and their names from highest
/// priority to lowest. (Go holds `Children` in a map; the policy iterates it
/// in Go's random order, so the storage order here does not matter.)
#[derive(Clone, Default)]
pub struct LbConfig {
    pub children: BTreeMap<String, Child>,
    pub priorities: Vec<String>,
}

impl LbConfig {
    /// `parseConfig`'s validation: every priority names a child and every
    /// child is in the priority list.
    pub fn validate(&self) -> Result<(), String> {
        for p in &self.priorities {
            if !self.children.contains_key(p) {
                return Err(format!("priority {p:?} not found in children"));
            }
        }
        for name in self.children.keys() {
            if !self.priorities.contains(name) {
                return Err(format!("child {name:?} not found in priorities"));
            }
        }
        Ok(())
    }

    /// The config as the type-erased value carried in `ClientConnState`.
    pub fn into_any(self) -> LoadBalancingConfig {
        Rc::new(self)
    }
}

impl Child {
    pub fn new(policy: &str) -> Self {
        Child {
            config: ChildPolicy {
                name: policy.to_string(),
                config: None,
            },
            ignore_reresolution_requests: false,
        }
    }
}
