//! Port of grpc-go `xds/internal/balancer/priority/balancer_priority.go` at
//! `e0ac3acff`: choosing the child in use. Every method runs with the
//! priority mutex held.

use std::rc::Rc;

use crate::grpc::Variant;
use crate::grpc::balancer::{BalancerState, BoxFut};
use crate::grpc::connectivity::ConnectivityState;
use crate::sim;

use super::balancer::PriorityBalancer;
use super::child::ChildBalancer;

/// `ErrAllPrioritiesRemoved`.
pub const ERR_ALL_PRIORITIES_REMOVED: &str = "no priority is provided, all priorities are removed";

impl PriorityBalancer {
    /// Picks the highest priority that is not started, READY, IDLE,
    /// CONNECTING with its init timer pending, or the last one; pushes its
    /// picker if it is a new choice or the child that updated; then switches
    /// to it (which always stops every lower priority).
    ///
    /// Boxed: it is reached again from the init timer it may start.
    pub fn sync_priority<'a>(&'a self, child_updating: &'a str) -> BoxFut<'a, ()> {
        Box::pin(async move {
            if self.inhibit_picker_updates.get() {
                return;
            }
            let priorities = self.priorities.borrow().clone();
            for (p, name) in priorities.iter().enumerate() {
                let Some(child) = self.children.borrow().get(name).cloned() else {
                    continue;
                };
                let state = child.state.borrow().connectivity_state;
                if !child.started.get()
                    || state == ConnectivityState::Ready
                    || state == ConnectivityState::Idle
                    || (state == ConnectivityState::Connecting
                        && child.init_timer.borrow().is_some())
                    || p == priorities.len() - 1
                {
                    if *self.child_in_use.borrow() != child.name || child.name == child_updating {
                        let s: BalancerState = child.state.borrow().clone();
                        sim::note(|| format!("priority: push picker of {} ({:?})", child.name, s));
                        self.cc.update_state(s).await;
                    }
                    self.switch_to_child(&child, p).await;
                    break;
                }
            }
        })
    }

    async fn stop_sub_balancers_lower_than_priority(&self, p: usize) {
        let priorities = self.priorities.borrow().clone();
        for name in priorities.iter().skip(p + 1) {
            let child = self.children.borrow().get(name).cloned();
            if let Some(child) = child {
                child.stop(false).await;
            }
        }
    }

    async fn switch_to_child(&self, child: &Rc<ChildBalancer>, priority: usize) {
        self.stop_sub_balancers_lower_than_priority(priority).await;
        if *self.child_in_use.borrow() == child.name && child.started.get() {
            return;
        }
        *self.child_in_use.borrow_mut() = child.name.clone();
        if !child.started.get() {
            child.start().await;
        }
    }

    /// Runs on the worker with the mutex held.
    pub(super) async fn handle_child_state_update(&self, child_name: &str, s: BalancerState) {
        let Some(child) = self.children.borrow().get(child_name).cloned() else {
            return;
        };
        if !child.started.get() {
            return;
        }
        let new_state = s.connectivity_state;
        let old_state = std::mem::replace(&mut *child.state.borrow_mut(), s).connectivity_state;
        match new_state {
            ConnectivityState::Ready | ConnectivityState::Idle => {
                child.reported_tf.set(false);
                child.stop_init_timer().await;
            }
            ConnectivityState::TransientFailure => {
                child.reported_tf.set(true);
                child.stop_init_timer().await;
            }
            ConnectivityState::Connecting => {
                // A115 (with 9b39ae241): a child already connecting keeps its
                // timer, so failover comes when it fires even if the child
                // reports Connecting again.
                let restart = self.opts.variant != Variant::A115
                    || old_state != ConnectivityState::Connecting;
                if !child.reported_tf.get() && restart {
                    child.start_init_timer().await;
                }
            }
            ConnectivityState::Shutdown => {}
        }
        self.sync_priority(child_name).await;
    }
}
