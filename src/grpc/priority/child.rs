//! Port of grpc-go `xds/internal/balancer/priority/balancer_child.go` at
//! `e0ac3acff`, with the gRFC A115 `stop(immediate)` branch (`ccc8d7bda`).
//!
//! Every method here runs with the priority mutex held by its caller.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use crate::grpc::Variant;
use crate::grpc::balancer::{
    BalancerState, ClientConn, ClientConnState, ErrPicker, LoadBalancingConfig, PickError,
    ResolverState,
};
use crate::grpc::connectivity::ConnectivityState;
use crate::sim::{self, Timer};

use super::balancer::PriorityBalancer;
use super::config::Child;
use super::ignore_resolve_now::IgnoreResolveNowClientConn;
use crate::sim::Name;

/// The init timer and its stopped flag (`timerWrapper`): the flag guards the
/// race where the timer fires while `stop_init_timer` holds the mutex.
pub struct TimerWrapper {
    pub stopped: Cell<bool>,
    pub timer: RefCell<Option<Timer>>,
}

pub struct ChildBalancer {
    pub name: String,
    parent: Weak<PriorityBalancer>,
    parent_cc: Rc<dyn ClientConn>,
    pub balancer_name: RefCell<String>,
    cc: RefCell<Rc<IgnoreResolveNowClientConn>>,

    ignore_reresolution_requests: Cell<bool>,
    config: RefCell<Option<LoadBalancingConfig>>,
    r_state: RefCell<ResolverState>,

    /// Added to the balancergroup (built or taken from its cache).
    pub started: Cell<bool>,
    /// The child reported TRANSIENT_FAILURE since it last reported READY or IDLE.
    pub reported_tf: Cell<bool>,
    /// The last state the child reported, or CONNECTING with a queueing picker.
    pub state: RefCell<BalancerState>,
    pub init_timer: RefCell<Option<Rc<TimerWrapper>>>,
    self_ref: Weak<ChildBalancer>,
}

impl ChildBalancer {
    pub fn new(
        name: &str,
        parent: Weak<PriorityBalancer>,
        balancer_name: &str,
        cc: Rc<dyn ClientConn>,
    ) -> Rc<Self> {
        Rc::new_cyclic(|me| ChildBalancer {
            name: name.to_string(),
            parent,
            parent_cc: cc.clone(),
            balancer_name: RefCell::new(balancer_name.to_string()),
            cc: RefCell::new(IgnoreResolveNowClientConn::new(cc, false)),
            ignore_reresolution_requests: Cell::new(false),
            config: RefCell::new(None),
            r_state: RefCell::new(ResolverState::default()),
            started: Cell::new(false),
            reported_tf: Cell::new(false),
            state: RefCell::new(BalancerState::connecting_queue()),
            init_timer: RefCell::new(None),
            self_ref: me.clone(),
        })
    }

    fn parent(&self) -> Rc<PriorityBalancer> {
        self.parent
            .upgrade()
            .expect("priority balancer outlives its children")
    }

    /// The policy changed: a new ignore-resolve-now wrapper for the new child.
    pub fn update_balancer_name(&self, balancer_name: &str) {
        *self.balancer_name.borrow_mut() = balancer_name.to_string();
        *self.cc.borrow_mut() = IgnoreResolveNowClientConn::new(
            self.parent_cc.clone(),
            self.ignore_reresolution_requests.get(),
        );
    }

    /// Stores the config; a started child gets it at once.
    pub async fn update_config(&self, child: &Child, r_state: ResolverState) {
        self.ignore_reresolution_requests
            .set(child.ignore_reresolution_requests);
        *self.config.borrow_mut() = child.config.config.clone();
        *self.r_state.borrow_mut() = r_state;
        if self.started.get() {
            self.send_update().await;
        }
    }

    /// Adds the child to the group (built, or reused from the cache), starts
    /// its init timer and sends it its config.
    pub async fn start(&self) {
        if self.started.get() {
            return;
        }
        self.started.set(true);
        let parent = self.parent();
        let cc = self.cc.borrow().clone();
        let name = self.balancer_name.borrow().clone();
        let _ = parent
            .bg
            .add_with_client_conn(&self.name, &name, cc as Rc<dyn ClientConn>)
            .await;
        self.start_init_timer().await;
        self.send_update().await;
    }

    pub async fn send_update(&self) {
        self.cc
            .borrow()
            .update_ignore_resolve_now(self.ignore_reresolution_requests.get());
        let state = ClientConnState {
            resolver_state: self.r_state.borrow().clone(),
            balancer_config: self.config.borrow().clone(),
        };
        let parent = self.parent();
        let result = parent.bg.update_client_conn_state(&self.name, state).await;
        // Before fd539615a Go only logs the error; from it (A115) the child
        // reports TRANSIENT_FAILURE with the error, and the update is
        // handled as one from the child.
        if let Err(err) = result
            && parent.opts.variant == Variant::A115
        {
            self.reported_tf.set(true);
            let tf = BalancerState {
                connectivity_state: ConnectivityState::TransientFailure,
                picker: Rc::new(ErrPicker(PickError::Failed(err))),
            };
            *self.state.borrow_mut() = tf.clone();
            Box::pin(parent.handle_child_state_update(&self.name, tf)).await;
        }
    }

    /// Removes the child from the group (`immediate`: close it even if the
    /// group caches; gRFC A115) and resets its state.
    pub async fn stop(&self, immediate: bool) {
        if !self.started.get() {
            return;
        }
        self.stop_init_timer().await;
        let parent = self.parent();
        if immediate {
            parent.bg.remove_immediately(&self.name).await;
        } else {
            parent.bg.remove(&self.name).await;
        }
        self.started.set(false);
        *self.state.borrow_mut() = BalancerState::connecting_queue();
        self.reported_tf.set(false);
    }

    pub async fn start_init_timer(&self) {
        if self.init_timer.borrow().is_some() {
            return;
        }
        let timer_w = Rc::new(TimerWrapper {
            stopped: Cell::new(false),
            timer: RefCell::new(None),
        });
        *self.init_timer.borrow_mut() = Some(timer_w.clone());
        let me = self.self_ref.upgrade().expect("child alive");
        let tw = timer_w.clone();
        // The callback holds the balancer, as Go's closure does (through
        // the child's strong parent pointer): it may fire after Close has
        // dropped every other reference, and then returns on `stopped`.
        let parent = self.parent();
        let timeout = parent.opts.priority_init_timeout;
        let timer = sim::after_func(
            timeout,
            {
                let name = self.name.clone();
                Name::lazy(move || format!("priority.initTimer[{name}]"))
            },
            async move {
                let guard = parent.mu.lock().await;
                if tw.stopped.get() {
                    guard.unlock().await;
                    return;
                }
                *me.init_timer.borrow_mut() = None;
                parent.sync_priority("").await;
                guard.unlock().await;
            },
        )
        .await;
        *timer_w.timer.borrow_mut() = Some(timer);
    }

    pub async fn stop_init_timer(&self) {
        let Some(timer_w) = self.init_timer.borrow_mut().take() else {
            return;
        };
        timer_w.stopped.set(true);
        let timer = timer_w.timer.borrow_mut().take();
        if let Some(t) = timer {
            t.stop().await;
        }
    }
}
