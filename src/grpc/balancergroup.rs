//! Port of grpc-go `internal/balancergroup/balancergroup.go` at `e0ac3acff`,
//! with the variant branches of PR #4308 (`9a10f3578`, before it), PR #8095
//! (`aa629e0ef`) and gRFC A115 (`ccc8d7bda`).
//!
//! The group holds two locks, as in Go: `outgoing_mu` guards the calls down
//! to children (the id map, the deleted-child cache, the started/closed flag)
//! and `incoming_mu` guards the calls up to the ClientConn (the SubConn map,
//! its own started/closed flag). Children are wrapped in a graceful-switch
//! balancer built through a `SubBalancerWrapper`, which is the ClientConn the
//! child sees.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::{Rc, Weak};

use crate::sim::{self, GoMap, Mutex};

use super::balancer::{
    Address, BalancerState, BoxFut, BuildOptions, Builder, ClientConn, ClientConnState, GrpcError,
    NewSubConnOptions, StateListener, SubConn, SubConnId, SubConnState, weak_listener,
};
use super::cache::TimeoutCache;
use super::connectivity::ConnectivityState;
use super::gracefulswitch::GracefulSwitch;
use super::variant::Variant;
use crate::sim::Name;

/// Receives the state of each child (`balancergroup.BalancerStateAggregator`).
pub trait BalancerStateAggregator {
    fn update_state(&self, id: &str, state: BalancerState) -> BoxFut<'_, ()>;

    /// [`Self::update_state`] from the group, which holds the id as an
    /// `Rc<str>`: an aggregator that keeps the id overrides this to share it
    /// rather than copy it.
    fn update_state_shared(&self, id: &Rc<str>, state: BalancerState) -> BoxFut<'_, ()> {
        self.update_state(id, state)
    }
}

/// One child of the group (`subBalancerWrapper`). It is the ClientConn the
/// child policy is built with: `update_state` and `new_sub_conn` go through
/// the group; everything else goes to the embedded ClientConn `cc`.
pub struct SubBalancerWrapper {
    cc: Rc<dyn ClientConn>,
    id: Rc<str>,
    group: Weak<BalancerGroup>,
    mu: Mutex,
    state: RefCell<Option<BalancerState>>,
    builder: Rc<dyn Builder>,
    build_opts: BuildOptions,
    cc_state: RefCell<Option<ClientConnState>>,
    balancer: RefCell<Option<Rc<GracefulSwitch>>>,
    /// Lifecycle id of the running child, for the "never closed" oracle.
    instance: Cell<Option<u32>>,
    self_ref: Weak<SubBalancerWrapper>,
}

impl SubBalancerWrapper {
    pub fn id(&self) -> &str {
        &self.id
    }

    async fn update_balancer_state_with_cached_picker(&self) {
        let guard = self.mu.lock().await;
        let state = self.state.borrow().clone();
        if let (Some(state), Some(group)) = (state, self.group.upgrade()) {
            group.update_balancer_state(&self.id, state).await;
        }
        guard.unlock().await;
    }

    async fn start_balancer(&self) {
        let me = self.self_ref.upgrade().expect("wrapper alive");
        let existing = self.balancer.borrow().clone();
        let gsb = match existing {
            Some(b) => b,
            None => {
                let b = GracefulSwitch::new(me as Rc<dyn ClientConn>, self.build_opts.clone());
                *self.balancer.borrow_mut() = Some(b.clone());
                b
            }
        };
        sim::note(|| format!("balancergroup: build child {}", self.id));
        self.build_opts
            .logger
            .info(|| {
                format!(
                    "Creating child policy of type {:?} for child {:?}",
                    self.builder.name(),
                    self.id
                )
            })
            .await;
        let instance = self.build_opts.lifecycle.built(format!(
            "child policy {} ({})",
            self.id,
            self.builder.name()
        ));
        self.instance.set(Some(instance));
        let _ = gsb.switch_to(self.builder.clone()).await;
        let cc_state = self.cc_state.borrow().clone();
        if let Some(s) = cc_state {
            let _ = gsb.update_client_conn_state(s).await;
        }
    }

    async fn exit_idle(&self) -> bool {
        let b = self.balancer.borrow().clone();
        if let Some(b) = b {
            b.exit_idle().await;
        }
        true
    }

    async fn update_client_conn_state(&self, s: ClientConnState) -> Result<(), GrpcError> {
        *self.cc_state.borrow_mut() = Some(s.clone());
        let b = self.balancer.borrow().clone();
        match b {
            Some(b) => b.update_client_conn_state(s).await,
            None => Ok(()),
        }
    }

    async fn resolver_error(&self, err: GrpcError) {
        let b = self.balancer.borrow().clone();
        if let Some(b) = b {
            b.resolver_error(err).await;
        }
    }

    async fn stop_balancer(&self) {
        let b = self.balancer.borrow_mut().take();
        let Some(b) = b else { return };
        sim::note(|| format!("balancergroup: close child {}", self.id));
        b.close().await;
        if let Some(i) = self.instance.take() {
            self.build_opts.lifecycle.closed(i);
        }
    }
}

impl ClientConn for SubBalancerWrapper {
    fn new_sub_conn(
        &self,
        addrs: Vec<Address>,
        opts: NewSubConnOptions,
    ) -> BoxFut<'_, Result<Rc<dyn SubConn>, GrpcError>> {
        Box::pin(async move {
            let group = self
                .group
                .upgrade()
                .ok_or_else(|| GrpcError::new("balancer group is gone"))?;
            let me = self.self_ref.upgrade().expect("wrapper alive");
            group.new_sub_conn(me, addrs, opts).await
        })
    }

    fn update_state(&self, state: BalancerState) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let guard = self.mu.lock().await;
            *self.state.borrow_mut() = Some(state.clone());
            if let Some(group) = self.group.upgrade() {
                group.update_balancer_state(&self.id, state).await;
            }
            guard.unlock().await;
        })
    }

    fn resolve_now(&self) -> BoxFut<'_, ()> {
        self.cc.resolve_now()
    }
}

type ChildCache = TimeoutCache<String, Rc<SubBalancerWrapper>>;

/// A tracked SubConn and the child that created it.
type OwnedSubConn = (Rc<dyn SubConn>, Rc<SubBalancerWrapper>);

pub struct BalancerGroup {
    cc: Rc<dyn ClientConn>,
    build_opts: BuildOptions,
    variant: Variant,
    state_aggregator: Weak<dyn BalancerStateAggregator>,

    outgoing_mu: Mutex,
    /// Before PR #8095: set by `start`, cleared by `close`.
    outgoing_started: Cell<bool>,
    /// PR #8095 and later: set by `close`, never cleared.
    outgoing_closed: Cell<bool>,
    id_to_balancer_config: RefCell<GoMap<String, Rc<SubBalancerWrapper>>>,
    deleted_balancer_cache: Option<Rc<ChildCache>>,

    incoming_mu: Mutex,
    incoming_started: Cell<bool>,
    incoming_closed: Cell<bool>,
    sc_to_sub_balancer: RefCell<GoMap<SubConnId, OwnedSubConn>>,

    self_ref: Weak<BalancerGroup>,
}

impl BalancerGroup {
    /// `balancergroup.New`. A zero `sub_balancer_close_timeout` disables the cache.
    pub fn new(
        cc: Rc<dyn ClientConn>,
        build_opts: BuildOptions,
        state_aggregator: Weak<dyn BalancerStateAggregator>,
        sub_balancer_close_timeout: u64,
    ) -> Rc<Self> {
        let variant = build_opts.variant;
        Rc::new_cyclic(|me| BalancerGroup {
            cc,
            variant,
            state_aggregator,
            outgoing_mu: Mutex::new("balancergroup.outgoingMu"),
            outgoing_started: Cell::new(false),
            outgoing_closed: Cell::new(false),
            id_to_balancer_config: RefCell::new(GoMap::new()),
            deleted_balancer_cache: (sub_balancer_close_timeout != 0)
                .then(|| TimeoutCache::new(sub_balancer_close_timeout)),
            incoming_mu: Mutex::new("balancergroup.incomingMu"),
            incoming_started: Cell::new(false),
            incoming_closed: Cell::new(false),
            sc_to_sub_balancer: RefCell::new(GoMap::new()),
            self_ref: me.clone(),
            build_opts,
        })
    }

    /// PR #8095 deleted `Start`: the group behaves as started from `New`.
    fn terminal(&self) -> bool {
        self.variant.terminal_close()
    }

    /// Whether `outgoing` calls may proceed: started (before PR #8095) or not
    /// yet closed (after).
    fn outgoing_open(&self) -> bool {
        if self.terminal() {
            !self.outgoing_closed.get()
        } else {
            self.outgoing_started.get()
        }
    }

    /// `Start` (before PR #8095 only): builds every child added so far.
    pub async fn start(&self) {
        if self.terminal() {
            return;
        }
        let guard = self.incoming_mu.lock().await;
        self.incoming_started.set(true);
        guard.unlock().await;

        let guard = self.outgoing_mu.lock().await;
        if self.outgoing_started.get() {
            guard.unlock().await;
            return;
        }
        let configs = self.id_to_balancer_config.borrow().values_go_order();
        for config in configs {
            config.start_balancer().await;
        }
        self.outgoing_started.set(true);
        guard.unlock().await;
    }

    /// `Add`: a child built with the group's own ClientConn.
    pub async fn add(&self, id: &str, balancer_name: &str) -> Result<(), GrpcError> {
        self.add_with_client_conn(id, balancer_name, self.cc.clone())
            .await
    }

    /// `AddWithClientConn`: adds a child under `id`, reusing a cached child
    /// with the same builder.
    pub async fn add_with_client_conn(
        &self,
        id: &str,
        balancer_name: &str,
        cc: Rc<dyn ClientConn>,
    ) -> Result<(), GrpcError> {
        self.build_opts
            .logger
            .info(|| format!("Adding child policy of type {balancer_name:?} for child {id:?}"))
            .await;
        let Some(builder) = self.build_opts.registry.get(balancer_name) else {
            let prefix = if self.terminal() {
                "balancergroup: "
            } else {
                ""
            };
            return Err(GrpcError::new(format!(
                "{prefix}unregistered balancer name {balancer_name:?}"
            )));
        };
        let guard = self.outgoing_mu.lock().await;
        // PR #8095: closing is terminal.
        if self.terminal() && self.outgoing_closed.get() {
            guard.unlock().await;
            return Err(GrpcError::new("balancergroup: already closed"));
        }
        let mut sbc: Option<Rc<SubBalancerWrapper>> = None;
        let may_reuse = self.terminal() || self.outgoing_started.get();
        if let (true, Some(cache)) = (may_reuse, &self.deleted_balancer_cache)
            && let Some(old) = cache.remove(&id.to_string()).await
        {
            sim::note(|| format!("balancergroup: reuse cached child {id}"));
            if old.builder.name() != builder.name() {
                old.stop_balancer().await;
                self.cleanup_sub_conns(&old).await;
            } else {
                sbc = Some(old);
            }
        }
        let sbc = match sbc {
            None => {
                let sbc = Rc::new_cyclic(|me| SubBalancerWrapper {
                    cc,
                    id: Rc::from(id),
                    group: self.self_ref.clone(),
                    mu: Mutex::new({
                        let id = id.to_string();
                        Name::lazy(move || format!("subBalancerWrapper.mu[{id}]"))
                    }),
                    state: RefCell::new(None),
                    builder,
                    build_opts: self.build_opts.clone(),
                    cc_state: RefCell::new(None),
                    balancer: RefCell::new(None),
                    instance: Cell::new(None),
                    self_ref: me.clone(),
                });
                if self.outgoing_open() {
                    sbc.start_balancer().await;
                }
                sbc
            }
            Some(sbc) => {
                sbc.update_balancer_state_with_cached_picker().await;
                sbc
            }
        };
        self.id_to_balancer_config
            .borrow_mut()
            .insert(id.to_string(), sbc);
        guard.unlock().await;
        Ok(())
    }

    /// `Remove`: the child is cached (with a timer that closes it) if the
    /// cache is enabled, else closed now.
    pub async fn remove(&self, id: &str) {
        self.remove_internal(id, true).await;
    }

    /// `RemoveImmediately` (gRFC A115): closes the child even if caching is on.
    pub async fn remove_immediately(&self, id: &str) {
        self.remove_internal(id, false).await;
    }

    async fn remove_internal(&self, id: &str, with_caching: bool) {
        sim::note(|| format!("balancergroup: Remove({id}) begins"));
        self.build_opts
            .logger
            .info(|| format!("Removing child policy for child {id:?}"))
            .await;
        let guard = self.outgoing_mu.lock().await;
        // PR #8095: after close, Remove leaves the child for Close to close.
        if self.terminal() && self.outgoing_closed.get() {
            guard.unlock().await;
            return;
        }
        let removed = self.id_to_balancer_config.borrow_mut().remove(id);
        let Some(sb_to_remove) = removed else {
            guard.unlock().await;
            return;
        };
        // Before PR #8095: a group that is not started only forgets the child.
        if !self.terminal() && !self.outgoing_started.get() {
            guard.unlock().await;
            return;
        }
        if let (true, Some(cache)) = (with_caching, &self.deleted_balancer_cache) {
            let group = self.self_ref.clone();
            let sb = sb_to_remove.clone();
            let variant = self.variant;
            sim::note(|| format!("balancergroup: cache child {id}"));
            cache
                .add(
                    id.to_string(),
                    sb_to_remove,
                    Box::new(move || {
                        Box::pin(async move {
                            let Some(bg) = group.upgrade() else { return };
                            let guard = bg.outgoing_mu.lock().await;
                            // Before PR #4308 the eviction callback closed the
                            // child only while the group was started, and Close
                            // cleared the cache after stopping the group.
                            if variant != Variant::Pre4308 || bg.outgoing_started.get() {
                                sb.stop_balancer().await;
                            }
                            guard.unlock().await;
                            bg.cleanup_sub_conns(&sb).await;
                        })
                    }),
                )
                .await;
            guard.unlock().await;
            return;
        }
        sb_to_remove.stop_balancer().await;
        guard.unlock().await;
        self.cleanup_sub_conns(&sb_to_remove).await;
    }

    /// Forgets the SubConns of a removed child.
    async fn cleanup_sub_conns(&self, config: &Rc<SubBalancerWrapper>) {
        let guard = self.incoming_mu.lock().await;
        let keys = self.sc_to_sub_balancer.borrow().keys_go_order();
        for sc in keys {
            let mut map = self.sc_to_sub_balancer.borrow_mut();
            if map.get(&sc).is_some_and(|(_, b)| Rc::ptr_eq(b, config)) {
                map.remove(&sc);
            }
        }
        guard.unlock().await;
    }

    async fn connect(&self, sb: &Rc<SubBalancerWrapper>) {
        let guard = self.incoming_mu.lock().await;
        if self.terminal() && self.incoming_closed.get() {
            guard.unlock().await;
            return;
        }
        let scs: Vec<Rc<dyn SubConn>> = self
            .sc_to_sub_balancer
            .borrow()
            .values_go_order()
            .into_iter()
            .filter(|(_, b)| Rc::ptr_eq(b, sb))
            .map(|(sc, _)| sc)
            .collect();
        for sc in scs {
            sc.connect().await;
        }
        guard.unlock().await;
    }

    /// The SubConn state listener the group installs around the child's.
    /// It owns the group, so the listener boxes it as it is, and is an async
    /// block, which keeps its arguments once.
    #[allow(clippy::manual_async_fn)] // an async fn would store its arguments twice
    fn update_sub_conn_state(
        self: Rc<Self>,
        sc: SubConnId,
        state: SubConnState,
        cb: Option<StateListener>,
    ) -> impl Future<Output = ()> + 'static {
        async move {
            let guard = self.incoming_mu.lock().await;
            if self.terminal() && self.incoming_closed.get() {
                guard.unlock().await;
                return;
            }
            if !self.sc_to_sub_balancer.borrow().contains_key(&sc) {
                guard.unlock().await;
                return;
            }
            if state.connectivity_state == ConnectivityState::Shutdown {
                self.sc_to_sub_balancer.borrow_mut().remove(&sc);
            }
            guard.unlock().await;

            let guard = self.outgoing_mu.lock().await;
            if self.terminal() && self.outgoing_closed.get() {
                guard.unlock().await;
                return;
            }
            if let Some(cb) = cb {
                cb(state).await;
            }
            guard.unlock().await;
        }
    }

    /// `UpdateClientConnState(id, s)`: forwards to the child with that id.
    pub async fn update_client_conn_state(
        &self,
        id: &str,
        s: ClientConnState,
    ) -> Result<(), GrpcError> {
        let guard = self.outgoing_mu.lock().await;
        if self.terminal() && self.outgoing_closed.get() {
            guard.unlock().await;
            return Ok(());
        }
        let config = self.id_to_balancer_config.borrow().get(id).cloned();
        let result = match config {
            Some(c) => c.update_client_conn_state(s).await,
            None => Ok(()),
        };
        guard.unlock().await;
        result
    }

    pub async fn resolver_error(&self, err: GrpcError) {
        let guard = self.outgoing_mu.lock().await;
        if self.terminal() && self.outgoing_closed.get() {
            guard.unlock().await;
            return;
        }
        let configs = self.id_to_balancer_config.borrow().values_go_order();
        for config in configs {
            config.resolver_error(err.clone()).await;
        }
        guard.unlock().await;
    }

    async fn new_sub_conn(
        &self,
        config: Rc<SubBalancerWrapper>,
        addrs: Vec<Address>,
        mut opts: NewSubConnOptions,
    ) -> Result<Rc<dyn SubConn>, GrpcError> {
        let guard = self.incoming_mu.lock().await;
        let closed = if self.terminal() {
            self.incoming_closed.get()
        } else {
            !self.incoming_started.get()
        };
        if closed {
            guard.unlock().await;
            let prefix = if self.terminal() {
                "balancergroup: "
            } else {
                ""
            };
            return Err(GrpcError::new(format!(
                "{prefix}NewSubConn is called after balancer group is closed"
            )));
        }
        let sc_cell: Rc<Cell<Option<SubConnId>>> = Rc::new(Cell::new(None));
        let old_listener = opts.state_listener.take();
        let cell = sc_cell.clone();
        let listener = weak_listener(self.self_ref.clone(), move |bg, state| {
            let sc = cell.get()?;
            Some(bg.update_sub_conn_state(sc, state, old_listener.clone()))
        });
        opts.state_listener = Some(listener);
        let sc = match self.cc.new_sub_conn(addrs, opts).await {
            Ok(sc) => sc,
            Err(e) => {
                guard.unlock().await;
                return Err(e);
            }
        };
        sc_cell.set(Some(sc.id()));
        self.sc_to_sub_balancer
            .borrow_mut()
            .insert(sc.id(), (sc.clone(), config));
        guard.unlock().await;
        Ok(sc)
    }

    async fn update_balancer_state(&self, id: &Rc<str>, state: BalancerState) {
        self.build_opts
            .logger
            .info(|| format!("Balancer state update from child {id}, new state: {state:?}"))
            .await;
        if let Some(agg) = self.state_aggregator.upgrade() {
            agg.update_state_shared(id, state).await;
        }
    }

    /// `Close`, in three sections: C1 shuts down every SubConn (incoming),
    /// C2 clears the deleted-child cache running its callbacks, C3 closes
    /// every child still in the id map (outgoing).
    pub async fn close(&self) {
        sim::note(|| "balancergroup: Close C1 (incoming: shut down SubConns)".into());
        let guard = self.incoming_mu.lock().await;
        let shut_down = if self.terminal() {
            self.incoming_closed.set(true);
            true
        } else if self.incoming_started.get() {
            self.incoming_started.set(false);
            true
        } else {
            false
        };
        if shut_down {
            let keys = self.sc_to_sub_balancer.borrow().keys_go_order();
            for key in keys {
                let entry = self.sc_to_sub_balancer.borrow_mut().remove(&key);
                if let Some((sc, _)) = entry {
                    sc.shutdown().await;
                }
            }
        }
        guard.unlock().await;

        // PR #8095: mark the group closed before the cache is cleared, so no
        // Remove can put a child into the cache after it was cleared.
        if self.terminal() {
            let guard = self.outgoing_mu.lock().await;
            self.outgoing_closed.set(true);
            guard.unlock().await;
        }

        if self.variant != Variant::Pre4308 {
            self.clear_cache().await;
        }

        sim::note(|| "balancergroup: Close C3 (outgoing: close children in the map)".into());
        let guard = self.outgoing_mu.lock().await;
        if self.terminal() {
            let ids = self.id_to_balancer_config.borrow().keys_go_order();
            for id in ids {
                let config = self.id_to_balancer_config.borrow().get(&id).cloned();
                if let Some(config) = config {
                    config.stop_balancer().await;
                }
                self.id_to_balancer_config.borrow_mut().remove(&id);
            }
        } else if self.outgoing_started.get() {
            self.outgoing_started.set(false);
            let configs = self.id_to_balancer_config.borrow().values_go_order();
            for config in configs {
                config.stop_balancer().await;
            }
        }
        guard.unlock().await;

        // Before PR #4308 the cache was cleared last, after the group had
        // stopped, so the eviction callbacks closed nothing.
        if self.variant == Variant::Pre4308 {
            self.clear_cache().await;
        }
        sim::note(|| "balancergroup: Close done".into());
    }

    async fn clear_cache(&self) {
        sim::note(|| "balancergroup: Close C2 (clear the deleted-child cache)".into());
        if let Some(cache) = &self.deleted_balancer_cache {
            cache.clear(true).await;
        }
        sim::note(|| "balancergroup: Close C2 done (cache empty)".into());
    }

    pub async fn exit_idle(&self) {
        let guard = self.outgoing_mu.lock().await;
        if self.terminal() && self.outgoing_closed.get() {
            guard.unlock().await;
            return;
        }
        let configs = self.id_to_balancer_config.borrow().values_go_order();
        for config in configs {
            if !config.exit_idle().await {
                self.connect(&config).await;
            }
        }
        guard.unlock().await;
    }

    pub async fn exit_idle_one(&self, id: &str) {
        let guard = self.outgoing_mu.lock().await;
        if self.terminal() && self.outgoing_closed.get() {
            guard.unlock().await;
            return;
        }
        let config = self.id_to_balancer_config.borrow().get(id).cloned();
        if let Some(config) = config
            && !config.exit_idle().await
        {
            self.connect(&config).await;
        }
        guard.unlock().await;
    }

    /// Children currently in the deleted-child cache (for assertions).
    pub fn cached_children(&self) -> usize {
        self.deleted_balancer_cache.as_ref().map_or(0, |c| c.len())
    }

    /// Ids of the children in the id map, sorted (for assertions).
    pub fn child_ids(&self) -> Vec<String> {
        self.id_to_balancer_config
            .borrow()
            .iter_sorted()
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Number of SubConns the group tracks (for assertions).
    pub fn tracked_sub_conns(&self) -> usize {
        self.sc_to_sub_balancer.borrow().len()
    }
}
