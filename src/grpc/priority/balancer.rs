//! Port of grpc-go `xds/internal/balancer/priority/balancer.go` at
//! `e0ac3acff`, with the variant branches: PR #8095 (`aa629e0ef`: no
//! `bg.Start()`), the priority-lock alternative fix (Close holds the mutex
//! while it closes the group) and gRFC A115 (`ccc8d7bda`: children removed
//! from the config, or whose policy changed, are closed immediately).
//!
//! Child state updates are only queued by `update_state`; the `run` task
//! handles them under the mutex. `close` runs on its caller's task (in the
//! real tree: the cluster_resolver goroutine) and, before the fix, closes the
//! balancergroup without the mutex: the window of issue #7783.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use crate::grpc::balancer::{
    Balancer, BalancerState, BoxFut, BuildOptions, Builder, ClientConn, ClientConnState, ErrPicker,
    GrpcError, PickError, ResolverState, group_endpoints,
};
use crate::grpc::balancergroup::{BalancerGroup, BalancerStateAggregator};
use crate::grpc::connectivity::ConnectivityState;
use crate::grpc::variant::Variant;
use crate::sim::{self, Event, GoMap, Mutex, OneshotSender, Unbounded, select};

use super::child::ChildBalancer;
use super::config::LbConfig;
use super::sync_priority::ERR_ALL_PRIORITIES_REMOVED;

/// Items of the worker's queue.
enum Update {
    ChildState {
        name: Rc<str>,
        state: BalancerState,
    },
    /// Sent by `update_client_conn_state`; the worker clears the inhibit flag,
    /// syncs, and signals the waiting caller.
    ResumePickerUpdates {
        done: OneshotSender<()>,
    },
}

pub struct PriorityBalancer {
    pub(super) cc: Rc<dyn ClientConn>,
    pub(super) bg: Rc<BalancerGroup>,
    done: Event,
    child_balancer_state_update: Unbounded<Update>,
    pub(super) opts: BuildOptions,

    pub(super) mu: Mutex,
    pub(super) child_in_use: RefCell<String>,
    pub(super) priorities: RefCell<Rc<[String]>>,
    pub(super) children: RefCell<GoMap<String, Rc<ChildBalancer>>>,
    /// Set while a config update is being applied; cleared by the resume
    /// marker on the worker.
    pub(super) inhibit_picker_updates: Cell<bool>,
    self_ref: Weak<PriorityBalancer>,
}

/// The builder registered as `priority_experimental`.
pub struct PriorityBuilder;

impl Builder for PriorityBuilder {
    fn name(&self) -> &str {
        super::NAME
    }

    fn build(
        &self,
        cc: Rc<dyn ClientConn>,
        opts: BuildOptions,
    ) -> BoxFut<'static, Rc<dyn Balancer>> {
        Box::pin(async move {
            let b = PriorityBalancer::build(cc, opts).await;
            b as Rc<dyn Balancer>
        })
    }
}

impl PriorityBalancer {
    pub async fn build(cc: Rc<dyn ClientConn>, opts: BuildOptions) -> Rc<PriorityBalancer> {
        let b = Rc::new_cyclic(|me: &Weak<PriorityBalancer>| {
            let aggregator: Weak<dyn BalancerStateAggregator> = me.clone();
            PriorityBalancer {
                bg: BalancerGroup::new(
                    cc.clone(),
                    opts.clone(),
                    aggregator,
                    opts.sub_balancer_close_timeout,
                ),
                cc,
                done: Event::new("priority.done"),
                child_balancer_state_update: Unbounded::new("priority.childBalancerStateUpdate"),
                opts,
                mu: Mutex::new("priority.mu"),
                child_in_use: RefCell::new(String::new()),
                priorities: RefCell::new(Rc::from([])),
                children: RefCell::new(GoMap::new()),
                inhibit_picker_updates: Cell::new(false),
                self_ref: me.clone(),
            }
        });
        // PR #8095 removed `Start`: the group is started from `New`.
        if !b.opts.variant.terminal_close() {
            b.bg.start().await;
        }
        let worker = b.clone();
        sim::go("priority.run", async move { worker.run().await }).await;
        b.opts.logger.info(|| "priority: Created".into()).await;
        b
    }

    /// The balancergroup (for assertions).
    pub fn balancer_group(&self) -> &Rc<BalancerGroup> {
        &self.bg
    }

    /// Names of the children in the map and whether each is started (sorted).
    pub fn children_started(&self) -> Vec<(String, bool)> {
        self.children
            .borrow()
            .iter_sorted()
            .map(|(k, c)| (k.clone(), c.started.get()))
            .collect()
    }

    pub fn child_in_use(&self) -> String {
        self.child_in_use.borrow().clone()
    }

    async fn update_client_conn_state_impl(&self, s: ClientConnState) -> Result<(), GrpcError> {
        let new_config = s
            .balancer_config
            .clone()
            .and_then(|c| c.downcast::<LbConfig>().ok())
            .ok_or_else(|| GrpcError::new("unexpected balancer config type"))?;
        let endpoints_split = group_endpoints(&s.resolver_state.endpoints);
        let a115 = self.opts.variant == Variant::A115;

        let guard = self.mu.lock().await;
        let names = sim::go_order(new_config.children.keys().cloned().collect());
        for name in names {
            let new_sub_config = &new_config.children[&name];
            let Some(bb) = self.opts.registry.get(&new_sub_config.config.name) else {
                // Go logs and skips a child whose policy is not registered.
                continue;
            };
            let r_state = ResolverState {
                endpoints: endpoints_split
                    .get(name.as_str())
                    .cloned()
                    .unwrap_or_default(),
                attributes: s.resolver_state.attributes.clone(),
            };
            let current = self.children.borrow().get(&name).cloned();
            let Some(current_child) = current else {
                let cb =
                    ChildBalancer::new(&name, self.self_ref.clone(), bb.name(), self.cc.clone());
                cb.update_config(new_sub_config, r_state).await;
                self.children.borrow_mut().insert(name.clone(), cb);
                continue;
            };
            if *current_child.balancer_name.borrow() != bb.name() {
                // A115: a child whose policy changed is closed immediately.
                current_child.stop(a115).await;
                current_child.update_balancer_name(bb.name());
            }
            current_child.update_config(new_sub_config, r_state).await;
        }
        let old_names = self.children.borrow().keys_go_order();
        for name in old_names {
            if !new_config.children.contains_key(&name) {
                let old_child = self.children.borrow().get(&name).cloned();
                if let Some(old_child) = old_child {
                    // A115: a child removed from the config is closed
                    // immediately (the env var that restores caching is off).
                    old_child.stop(a115).await;
                }
                self.children.borrow_mut().remove(&name);
            }
        }

        *self.priorities.borrow_mut() = Rc::from(new_config.priorities.as_slice());

        if new_config.priorities.is_empty() {
            self.child_in_use.borrow_mut().clear();
            self.cc
                .update_state(BalancerState {
                    connectivity_state: ConnectivityState::TransientFailure,
                    picker: Rc::new(ErrPicker(PickError::Failed(GrpcError::new(
                        ERR_ALL_PRIORITIES_REMOVED,
                    )))),
                })
                .await;
            guard.unlock().await;
            return Ok(());
        }

        self.inhibit_picker_updates.set(true);
        let (done_tx, done_rx) = sim::oneshot::<()>("priority.resumePickerUpdates.done");
        let _ = self
            .child_balancer_state_update
            .put(Update::ResumePickerUpdates { done: done_tx })
            .await;
        guard.unlock().await;
        done_rx.recv().await;
        Ok(())
    }

    async fn close_impl(&self) {
        sim::note(|| "priority: Close".into());
        let a115 = self.opts.variant == Variant::A115;
        if self.opts.variant == Variant::PriorityLock {
            // The alternative fix: the whole Close, the group's included, runs
            // under the priority mutex, so no worker handler (and no Remove
            // it makes) can interleave with the group's Close.
            let guard = self.mu.lock().await;
            self.bg.close().await;
            self.child_balancer_state_update.close().await;
            self.done.fire().await;
            self.child_in_use.borrow_mut().clear();
            self.stop_all_children(false).await;
            guard.unlock().await;
            return;
        }
        self.bg.close().await;
        self.child_balancer_state_update.close().await;

        let guard = self.mu.lock().await;
        self.done.fire().await;
        self.child_in_use.borrow_mut().clear();
        self.stop_all_children(a115).await;
        guard.unlock().await;
    }

    async fn stop_all_children(&self, immediate: bool) {
        let children = self.children.borrow().values_go_order();
        for child in children {
            child.stop(immediate).await;
        }
    }

    /// The worker: handles queued child updates and resume markers under the
    /// mutex until `done` fires or the queue is closed.
    async fn run(&self) {
        loop {
            let which = select(&[&self.child_balancer_state_update, &self.done]).await;
            if which == 1 {
                return;
            }
            let Some(update) = self.child_balancer_state_update.try_get() else {
                // Closed and drained.
                return;
            };
            let guard = self.mu.lock().await;
            if self.done.has_fired() {
                guard.unlock().await;
                return;
            }
            match update {
                Update::ChildState { name, state } => {
                    sim::note(|| format!("priority: handle {name} {:?}", state));
                    self.handle_child_state_update(&name, state).await;
                }
                Update::ResumePickerUpdates { done } => {
                    self.inhibit_picker_updates.set(false);
                    let in_use = self.child_in_use.borrow().clone();
                    self.sync_priority(&in_use).await;
                    done.send(()).await;
                }
            }
            guard.unlock().await;
        }
    }
}

impl BalancerStateAggregator for PriorityBalancer {
    /// Only queues the update; the worker handles it.
    fn update_state(&self, id: &str, state: BalancerState) -> BoxFut<'_, ()> {
        self.update_state_shared(&Rc::from(id), state)
    }

    fn update_state_shared(&self, id: &Rc<str>, state: BalancerState) -> BoxFut<'_, ()> {
        let name = id.clone();
        Box::pin(async move {
            let _ = self
                .child_balancer_state_update
                .put(Update::ChildState { name, state })
                .await;
        })
    }
}

impl Balancer for PriorityBalancer {
    fn update_client_conn_state(&self, s: ClientConnState) -> BoxFut<'_, Result<(), GrpcError>> {
        Box::pin(self.update_client_conn_state_impl(s))
    }

    fn resolver_error(&self, err: GrpcError) -> BoxFut<'_, ()> {
        Box::pin(async move { self.bg.resolver_error(err).await })
    }

    fn exit_idle(&self) -> BoxFut<'_, ()> {
        Box::pin(async move { self.bg.exit_idle().await })
    }

    fn close(&self) -> BoxFut<'_, ()> {
        Box::pin(self.close_impl())
    }
}
