//! Port of grpc-go `internal/balancer/gracefulswitch/gracefulswitch.go` at
//! `e0ac3acff`: the wrapper the balancergroup puts around each child. It
//! builds the child through a `balancerWrapper` that tracks the SubConns the
//! child created and shuts them all down when the child is closed (the
//! second Shutdown per SubConn the priority tests count), and it switches
//! gracefully to a new policy when a config names one.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::{Rc, Weak};

use crate::grpc::Variant;
use crate::sim::{self, Mutex, Unbounded};

use super::balancer::{
    Balancer, BalancerState, BoxFut, BuildOptions, Builder, ClientConn, ClientConnState, GrpcError,
    NewSubConnOptions, StateListener, SubConn, SubConnId, SubConnState, weak_listener,
};
use super::connectivity::ConnectivityState;

/// The graceful-switch config (`gracefulswitch.lbConfig`): switch to this
/// child policy and give it this config.
pub struct GracefulSwitchConfig {
    pub child_builder: Rc<dyn Builder>,
    pub child_config: Option<super::balancer::LoadBalancingConfig>,
}

pub struct GracefulSwitch {
    build_opts: BuildOptions,
    cc: Rc<dyn ClientConn>,
    mu: Mutex,
    balancer_current: RefCell<Option<Rc<BalancerWrapper>>>,
    balancer_pending: RefCell<Option<Rc<BalancerWrapper>>>,
    closed: Cell<bool>,
    current_mu: Mutex,
    /// From 9b990b635 (A115 only, so that the other variants' objects keep
    /// their ids): the swap goroutines as a WaitGroup that `close` waits on.
    /// Each ends with a put; `active` counts the puts not yet waited for.
    swaps_done: Option<Unbounded<()>>,
    active: Cell<u32>,
    self_ref: Weak<GracefulSwitch>,
}

pub struct BalancerWrapper {
    gsb: Weak<GracefulSwitch>,
    builder: Rc<dyn Builder>,
    balancer: RefCell<Option<Rc<dyn Balancer>>>,
    last_state: RefCell<BalancerState>,
    subconns: RefCell<BTreeMap<SubConnId, Rc<dyn SubConn>>>,
    self_ref: Weak<BalancerWrapper>,
}

fn same(a: &Option<Rc<BalancerWrapper>>, b: &Rc<BalancerWrapper>) -> bool {
    a.as_ref().is_some_and(|a| Rc::ptr_eq(a, b))
}

impl GracefulSwitch {
    pub fn new(cc: Rc<dyn ClientConn>, build_opts: BuildOptions) -> Rc<Self> {
        let swaps_done = (build_opts.variant == Variant::A115)
            .then(|| Unbounded::new("gracefulswitch.activeGoroutines"));
        Rc::new_cyclic(|me| GracefulSwitch {
            build_opts,
            cc,
            mu: Mutex::new("gracefulswitch.mu"),
            balancer_current: RefCell::new(None),
            balancer_pending: RefCell::new(None),
            closed: Cell::new(false),
            current_mu: Mutex::new("gracefulswitch.currentMu"),
            swaps_done,
            active: Cell::new(0),
            self_ref: me.clone(),
        })
    }

    fn current_or_pending(&self, bw: &Rc<BalancerWrapper>) -> bool {
        same(&self.balancer_current.borrow(), bw) || same(&self.balancer_pending.borrow(), bw)
    }

    /// Called with `mu` held.
    async fn swap(&self) {
        let pending = self
            .balancer_pending
            .borrow()
            .clone()
            .expect("swap with a pending balancer");
        let state = pending.last_state.borrow().clone();
        self.cc.update_state(state).await;
        let cur = self.balancer_current.replace(Some(pending));
        *self.balancer_pending.borrow_mut() = None;
        let me = self
            .self_ref
            .upgrade()
            .expect("gracefulswitch alive while in use");
        let tracked = self.swaps_done.is_some();
        if tracked {
            self.active.set(self.active.get() + 1);
        }
        sim::go("gracefulswitch.closeOld", async move {
            let guard = me.current_mu.lock().await;
            if let Some(cur) = cur {
                cur.close().await;
            }
            guard.unlock().await;
            if let Some(done) = &me.swaps_done {
                let _ = done.put(()).await;
            }
        })
        .await;
    }

    pub async fn switch_to(&self, builder: Rc<dyn Builder>) -> Result<(), GrpcError> {
        self.switch_to_internal(builder).await.map(|_| ())
    }

    async fn switch_to_internal(
        &self,
        builder: Rc<dyn Builder>,
    ) -> Result<Rc<BalancerWrapper>, GrpcError> {
        let guard = self.mu.lock().await;
        if self.closed.get() {
            guard.unlock().await;
            return Err(GrpcError::new("gracefulSwitchBalancer is closed"));
        }
        let bw = Rc::new_cyclic(|me| BalancerWrapper {
            gsb: self.self_ref.clone(),
            builder: builder.clone(),
            balancer: RefCell::new(None),
            last_state: RefCell::new(BalancerState::connecting_queue()),
            subconns: RefCell::new(BTreeMap::new()),
            self_ref: me.clone(),
        });
        let bal_to_close = self.balancer_pending.borrow_mut().take();
        if self.balancer_current.borrow().is_none() {
            *self.balancer_current.borrow_mut() = Some(bw.clone());
        } else {
            *self.balancer_pending.borrow_mut() = Some(bw.clone());
        }
        guard.unlock().await;
        if let Some(old) = bal_to_close {
            old.close().await;
        }
        let new_balancer = builder
            .build(bw.clone() as Rc<dyn ClientConn>, self.build_opts.clone())
            .await;
        *bw.balancer.borrow_mut() = Some(new_balancer);
        Ok(bw)
    }

    fn latest_balancer_locked(&self) -> Option<Rc<BalancerWrapper>> {
        self.balancer_pending
            .borrow()
            .clone()
            .or_else(|| self.balancer_current.borrow().clone())
    }

    async fn latest_balancer(&self) -> Option<Rc<BalancerWrapper>> {
        let guard = self.mu.lock().await;
        let b = self.latest_balancer_locked();
        guard.unlock().await;
        b
    }

    pub async fn update_client_conn_state(
        &self,
        mut state: ClientConnState,
    ) -> Result<(), GrpcError> {
        let mut bal_to_update = self.latest_balancer().await;
        let gsb_cfg = state
            .balancer_config
            .as_ref()
            .and_then(|c| c.clone().downcast::<GracefulSwitchConfig>().ok());
        if let Some(cfg) = gsb_cfg {
            let needs_switch = match &bal_to_update {
                None => true,
                Some(b) => b.builder.name() != cfg.child_builder.name(),
            };
            if needs_switch {
                bal_to_update = Some(
                    self.switch_to_internal(cfg.child_builder.clone())
                        .await
                        .map_err(|e| {
                            GrpcError::new(format!("could not switch to new child balancer: {e}"))
                        })?,
                );
            }
            state.balancer_config = cfg.child_config.clone();
        }
        let Some(b) = bal_to_update else {
            return Err(GrpcError::new("gracefulSwitchBalancer is closed"));
        };
        let child = b.balancer.borrow().clone();
        match child {
            Some(child) => child.update_client_conn_state(state).await,
            None => Ok(()),
        }
    }

    pub async fn resolver_error(&self, err: GrpcError) {
        match self.latest_balancer().await {
            None => {
                self.cc
                    .update_state(BalancerState {
                        connectivity_state: ConnectivityState::TransientFailure,
                        picker: Rc::new(super::balancer::ErrPicker(
                            super::balancer::PickError::Failed(err),
                        )),
                    })
                    .await;
            }
            Some(b) => {
                let child = b.balancer.borrow().clone();
                if let Some(child) = child {
                    child.resolver_error(err).await;
                }
            }
        }
    }

    pub async fn exit_idle(&self) {
        // Every modelled policy implements ExitIdle, so Go's fallback of
        // connecting each SubConn is never taken.
        if let Some(b) = self.latest_balancer().await {
            let child = b.balancer.borrow().clone();
            if let Some(child) = child {
                child.exit_idle().await;
            }
        }
    }

    /// The listener's future. It owns the balancer, so the listener boxes
    /// it as it is, and is an async block, which keeps its arguments once.
    #[allow(clippy::manual_async_fn)] // an async fn would store its arguments twice
    fn update_sub_conn_state(
        self: Rc<Self>,
        sc: SubConnId,
        state: SubConnState,
        cb: Option<StateListener>,
    ) -> impl Future<Output = ()> + 'static {
        async move {
            let current_guard = self.current_mu.lock().await;
            let guard = self.mu.lock().await;
            let find = |b: &Option<Rc<BalancerWrapper>>| {
                b.as_ref()
                    .filter(|b| b.subconns.borrow().contains_key(&sc))
                    .cloned()
            };
            let bal_to_update = find(&self.balancer_current.borrow())
                .or_else(|| find(&self.balancer_pending.borrow()));
            let Some(bal) = bal_to_update else {
                guard.unlock().await;
                current_guard.unlock().await;
                return;
            };
            if state.connectivity_state == ConnectivityState::Shutdown {
                bal.subconns.borrow_mut().remove(&sc);
            }
            guard.unlock().await;
            if let Some(cb) = cb {
                cb(state).await;
            }
            current_guard.unlock().await;
        }
    }

    pub async fn close(&self) {
        let guard = self.mu.lock().await;
        self.closed.set(true);
        let current = self.balancer_current.borrow_mut().take();
        let pending = self.balancer_pending.borrow_mut().take();
        guard.unlock().await;
        if let Some(c) = current {
            c.close().await;
        }
        if let Some(p) = pending {
            p.close().await;
        }
        // `activeGoroutines.Wait()`.
        if let Some(done) = &self.swaps_done {
            while self.active.get() > 0 {
                done.get().await;
                self.active.set(self.active.get() - 1);
            }
        }
    }
}

impl BalancerWrapper {
    async fn close(&self) {
        // Taken, not cloned: the child holds this wrapper as its ClientConn,
        // and the pair would otherwise keep each other alive after the run.
        let child = self.balancer.borrow_mut().take();
        if let Some(child) = child {
            child.close().await;
        }
        let Some(gsb) = self.gsb.upgrade() else {
            return;
        };
        let guard = gsb.mu.lock().await;
        let subconns: Vec<Rc<dyn SubConn>> =
            sim::go_order(self.subconns.borrow().values().cloned().collect());
        for sc in subconns {
            sc.shutdown().await;
        }
        guard.unlock().await;
    }
}

impl ClientConn for BalancerWrapper {
    fn new_sub_conn(
        &self,
        addrs: Vec<super::balancer::Address>,
        opts: NewSubConnOptions,
    ) -> BoxFut<'_, Result<Rc<dyn SubConn>, GrpcError>> {
        Box::pin(async move {
            let gsb = self
                .gsb
                .upgrade()
                .ok_or_else(|| GrpcError::new("graceful switch balancer is gone"))?;
            let me = self.self_ref.upgrade().expect("wrapper alive");
            let guard = gsb.mu.lock().await;
            if !gsb.current_or_pending(&me) {
                guard.unlock().await;
                return Err(GrpcError::new(
                    "balancerWrapper that called NewSubConn is deleted",
                ));
            }
            guard.unlock().await;
            let sc_cell: Rc<Cell<Option<SubConnId>>> = Rc::new(Cell::new(None));
            let old_listener = opts.state_listener.clone();
            let cell = sc_cell.clone();
            let listener = weak_listener(Rc::downgrade(&gsb), move |gsb, state| {
                let sc = cell.get()?;
                Some(gsb.update_sub_conn_state(sc, state, old_listener.clone()))
            });
            let sc = gsb
                .cc
                .new_sub_conn(
                    addrs,
                    NewSubConnOptions {
                        state_listener: Some(listener),
                    },
                )
                .await?;
            sc_cell.set(Some(sc.id()));
            let guard = gsb.mu.lock().await;
            if !gsb.current_or_pending(&me) {
                sc.shutdown().await;
                guard.unlock().await;
                return Err(GrpcError::new(
                    "balancerWrapper that called NewSubConn is deleted",
                ));
            }
            self.subconns.borrow_mut().insert(sc.id(), sc.clone());
            guard.unlock().await;
            Ok(sc)
        })
    }

    fn update_state(&self, state: BalancerState) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let Some(gsb) = self.gsb.upgrade() else {
                return;
            };
            let me = self.self_ref.upgrade().expect("wrapper alive");
            let guard = gsb.mu.lock().await;
            *self.last_state.borrow_mut() = state.clone();
            if !gsb.current_or_pending(&me) {
                guard.unlock().await;
                return;
            }
            if same(&gsb.balancer_current.borrow(), &me) {
                let has_pending = gsb.balancer_pending.borrow().is_some();
                if state.connectivity_state != ConnectivityState::Ready && has_pending {
                    gsb.swap().await;
                } else {
                    gsb.cc.update_state(state).await;
                }
                guard.unlock().await;
                return;
            }
            let current_ready = gsb.balancer_current.borrow().as_ref().is_some_and(|c| {
                c.last_state.borrow().connectivity_state == ConnectivityState::Ready
            });
            if state.connectivity_state != ConnectivityState::Connecting || !current_ready {
                gsb.swap().await;
            }
            guard.unlock().await;
        })
    }

    fn resolve_now(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let Some(gsb) = self.gsb.upgrade() else {
                return;
            };
            let me = self.self_ref.upgrade().expect("wrapper alive");
            let latest = gsb.latest_balancer().await;
            if latest.is_some_and(|l| Rc::ptr_eq(&l, &me)) {
                gsb.cc.resolve_now().await;
            }
        })
    }
}
