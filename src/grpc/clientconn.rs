//! The channel and the policies above the priority policy, ported from
//! grpc-go at `e0ac3acff`: `clientconn.go` (NewSubConn bookkeeping, Close),
//! `balancer_wrapper.go` (ccBalancerWrapper: its serializer, UpdateState,
//! close), `picker_wrapper.go` (pick, blocking until the next picker), and
//! minimal versions of `internal/balancer/gracefulswitch`,
//! `xds/internal/balancer/clustermanager` (its balancergroup, cache off),
//! `xds/internal/balancer/cdsbalancer` (its serializer and Close) and
//! `xds/internal/balancer/clusterresolver` (its `run()` task, Close, and the
//! priority config built from the EDS priorities).
//!
//! The close path follows the reference §4.1 step by step: the caller
//! queues the close callback on the balancer serializer and cancels it;
//! that callback closes the top gracefulswitch, then the cluster_manager
//! layer (state aggregator, then its group: every tracked SubConn shut down,
//! then cds closed); cds queues its close on its own serializer and waits
//! for it; that callback closes cluster_resolver, which fires `closed` and
//! waits for `done`; cluster_resolver's `run()` task closes the priority
//! policy and fires `done`. `ClientConn::close` returns once the balancer
//! serializer has finished, after which every remaining addrConn is torn
//! down by its own task.
//!
//! Simplified, and why it cannot change whether the close race can happen:
//! * No xDS client, resolver or management server: the EDS priorities are
//!   handed to cluster_resolver's resource channel directly, and
//!   ResolveNow is only counted. They never touch the priority policy's
//!   balancergroup or its locks.
//! * The gracefulswitch wrappers between cluster_manager, cds and
//!   cluster_resolver, and the cds/cluster_resolver ClientConn wrappers,
//!   are folded away (they only intercept ResolveNow and credentials); the
//!   top gracefulswitch's mutex is kept, as it is on the path of every
//!   picker update and of Close. No Go lock on the path from the priority
//!   worker up to the picker wrapper is held across a call into the
//!   priority policy, so removing intermediate hops can only shorten that
//!   path, never order Close against `Remove` in a way Go cannot.
//! * The channel's RWMutex is a plain mutex, and the idleness manager,
//!   channelz and connectivity-state subscribers are left out.
//! * Everything that decides the race is kept: `priority.Close()` runs on
//!   the cluster_resolver `run()` task, a different task from the priority
//!   worker and the balancer serializer, and the whole chain blocks the
//!   caller of `ClientConn::close` until it returns.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::{Rc, Weak};

use crate::grpc::balancer::{
    Address, Balancer, BalancerState, BoxFut, BuildOptions, ClientConn as ClientConnApi,
    ClientConnState, Endpoint, GrpcError, NewSubConnOptions, PickError, PickInfo, Picker,
    ResolverState, StateListener, SubConn, SubConnId, SubConnState,
};
use crate::grpc::connectivity::ConnectivityState;
use crate::grpc::outlier_detection::{self, OdConfig};
use crate::grpc::priority::{self, Child, LbConfig};
use crate::grpc::serializer::{CallbackSerializer, Ctx, callback};
use crate::grpc::subconn::{AddrConn, ConnectParams};
use crate::net::Network;
use crate::sim::{self, Event, GoMap, Mutex, Unbounded, after_func, select};

/// The child policy under each priority's outlier_detection.
pub const LEAF_POLICY: &str = crate::grpc::leaf::ROUND_ROBIN;

/// `ErrClientConnClosing`.
pub fn err_client_conn_closing() -> GrpcError {
    GrpcError::new("grpc: the client connection is closing")
}

/// One update of the cluster's resources as cluster_resolver receives it:
/// the EDS priorities (addresses, highest priority first) and, if it
/// changed, the policy under each priority's outlier_detection (from the
/// CDS resource in grpc-go; carried on the same update here, as the xDS
/// client is not modelled).
#[derive(Clone, Debug)]
pub struct ClusterUpdate {
    pub priorities: Vec<Vec<Rc<str>>>,
    /// A registered leaf policy name; `None` keeps the current one.
    pub child_policy: Option<String>,
}

/// cluster_resolver's child-name generator (`configbuilder_childname.go`):
/// a priority keeps the name of the first of its localities that was named
/// by the previous update and whose name no earlier priority of this update
/// took; otherwise it gets the next new name, `priority-<prefix>-<n>`. Each
/// address is its own locality here. The first update names its priorities
/// `priority-0-0`, `priority-0-1`, ... in order.
#[derive(Clone, Debug, Default)]
pub struct NameGenerator {
    prefix: u64,
    next_id: u64,
    /// Locality (address) to the name of its priority in the last update.
    existing: BTreeMap<Rc<str>, String>,
}

impl NameGenerator {
    pub fn new(prefix: u64) -> Self {
        NameGenerator {
            prefix,
            ..NameGenerator::default()
        }
    }

    /// The child names of `priorities`, in order; remembers them for the
    /// next update.
    pub fn generate(&mut self, priorities: &[Vec<Rc<str>>]) -> Vec<String> {
        let mut names = Vec::with_capacity(priorities.len());
        let mut used: BTreeSet<String> = BTreeSet::new();
        let mut next: BTreeMap<Rc<str>, String> = BTreeMap::new();
        for localities in priorities {
            let reused = localities
                .iter()
                .filter_map(|l| self.existing.get(l))
                .find(|n| !used.contains(*n))
                .cloned();
            let name = reused.unwrap_or_else(|| {
                let n = format!("priority-{}-{}", self.prefix, self.next_id);
                self.next_id += 1;
                n
            });
            for l in localities {
                next.insert(l.clone(), name.clone());
            }
            used.insert(name.clone());
            names.push(name);
        }
        self.existing = next;
        names
    }
}

/// Builds the priority policy's config the way cluster_resolver does for
/// one EDS cluster: one child per priority named by `names`, each an
/// outlier_detection over `leaf_policy`, and the endpoints with their
/// hierarchical path naming their child.
pub fn build_named_priority_config(
    priorities: &[Vec<Rc<str>>],
    names: &mut NameGenerator,
    leaf_policy: &str,
) -> (LbConfig, Vec<Endpoint>) {
    let mut cfg = LbConfig::default();
    let mut endpoints = Vec::new();
    let child_names = names.generate(priorities);
    for (name, addrs) in child_names.into_iter().zip(priorities) {
        let mut child = Child::new(outlier_detection::NAME);
        child.config.config = Some(Rc::new(OdConfig::new(leaf_policy, &name)));
        cfg.children.insert(name.clone(), child);
        cfg.priorities.push(name.clone());
        for a in addrs {
            endpoints.push(Endpoint::new(a).in_child(&name));
        }
    }
    (cfg, endpoints)
}

/// The config of a first update: children `priority-0-<i>`, each an
/// outlier_detection over round_robin.
pub fn build_priority_config(priorities: &[Vec<Rc<str>>]) -> (LbConfig, Vec<Endpoint>) {
    build_named_priority_config(priorities, &mut NameGenerator::new(0), LEAF_POLICY)
}

// ------------------------------------------------------------ picker wrapper

struct PickerGen {
    picker: Option<Rc<dyn Picker>>,
    blocking: Event,
}

/// `pickerWrapper`.
struct PickerWrapper {
    picker_gen: RefCell<Option<Rc<PickerGen>>>,
}

impl PickerWrapper {
    fn new() -> Self {
        PickerWrapper {
            picker_gen: RefCell::new(Some(Rc::new(PickerGen {
                picker: None,
                blocking: Event::new("pickerWrapper.blockingCh"),
            }))),
        }
    }

    async fn swap(&self, new: Option<Rc<PickerGen>>) {
        let old = std::mem::replace(&mut *self.picker_gen.borrow_mut(), new);
        if let Some(old) = old {
            old.blocking.fire().await;
        }
    }

    async fn update_picker(&self, p: Rc<dyn Picker>) {
        sim::note(|| format!("picker {}", p.describe()));
        self.swap(Some(Rc::new(PickerGen {
            picker: Some(p),
            blocking: Event::new("pickerWrapper.blockingCh"),
        })))
        .await;
    }

    async fn close(&self) {
        self.swap(None).await;
    }
}

// ------------------------------------------------------------- channel core

/// The state grpc-go keeps in `ClientConn` and `ccBalancerWrapper`, shared
/// with the addrConns (which hold it weakly).
pub struct ChannelCore {
    /// `cc.mu`.
    mu: Mutex,
    /// `cc.conns`; `None` once the channel is closing.
    conns: RefCell<Option<GoMap<SubConnId, Rc<AddrConn>>>>,
    next_sub_conn: Cell<u32>,
    pub(crate) network: Rc<Network>,
    pub(crate) params: ConnectParams,
    serializer: RefCell<Option<Rc<CallbackSerializer>>>,
    serializer_ctx: Ctx,
    /// `ccb.mu` / `ccb.closed`.
    ccb_mu: Mutex,
    ccb_closed: Cell<bool>,
    /// `ccb.balancer` (the top gracefulswitch); `None` once closed.
    balancer: RefCell<Option<Rc<ClusterManager>>>,
    picker_wrapper: PickerWrapper,
    state: Cell<ConnectivityState>,
    resolve_now_count: Cell<u32>,
}

impl ChannelCore {
    pub(crate) fn serializer(&self) -> Rc<CallbackSerializer> {
        self.serializer
            .borrow()
            .clone()
            .expect("serializer started with the channel")
    }

    /// `ccb.balancer == nil`.
    pub(crate) fn balancer_closed(&self) -> bool {
        self.balancer.borrow().is_none()
    }

    /// `cc.resolveNow`: counted (no resolver is modelled).
    pub(crate) fn resolve_now(&self) {
        self.resolve_now_count.set(self.resolve_now_count.get() + 1);
    }

    /// `cc.removeAddrConn`.
    pub(crate) async fn remove_addr_conn(&self, ac: &Rc<AddrConn>) {
        let g = self.mu.lock().await;
        let removed = match &mut *self.conns.borrow_mut() {
            None => false,
            Some(conns) => {
                conns.remove(&ac.id());
                true
            }
        };
        g.unlock().await;
        if removed {
            ac.tear_down().await;
        }
    }

    fn addr_conn(&self, id: SubConnId) -> Option<Rc<AddrConn>> {
        self.conns
            .borrow()
            .as_ref()
            .and_then(|c| c.get(&id).cloned())
    }
}

/// The ClientConn the top policy sees (`ccBalancerWrapper`), held weakly.
struct CcbHandle(Weak<ChannelCore>);

impl ClientConnApi for CcbHandle {
    fn new_sub_conn(
        &self,
        addrs: Vec<Address>,
        opts: NewSubConnOptions,
    ) -> BoxFut<'_, Result<Rc<dyn SubConn>, GrpcError>> {
        Box::pin(async move {
            let Some(cc) = self.0.upgrade() else {
                return Err(err_client_conn_closing());
            };
            let g = cc.mu.lock().await;
            let g2 = cc.ccb_mu.lock().await;
            if cc.ccb_closed.get() {
                g2.unlock().await;
                g.unlock().await;
                return Err(GrpcError::new(
                    "balancer is being closed; no new SubConns allowed",
                ));
            }
            g2.unlock().await;
            if addrs.is_empty() {
                g.unlock().await;
                return Err(GrpcError::new(
                    "grpc: cannot create SubConn with empty address list",
                ));
            }
            // newAddrConnLocked
            if cc.conns.borrow().is_none() {
                g.unlock().await;
                return Err(err_client_conn_closing());
            }
            let id = SubConnId(cc.next_sub_conn.get());
            cc.next_sub_conn.set(id.0 + 1);
            let ac = AddrConn::new(id, addrs, self.0.clone(), opts.state_listener);
            if let Some(conns) = &mut *cc.conns.borrow_mut() {
                conns.insert(id, ac.clone());
            }
            sim::note(|| format!("NewSubConn {id}"));
            g.unlock().await;
            Ok(ac as Rc<dyn SubConn>)
        })
    }

    fn update_state(&self, s: BalancerState) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let Some(cc) = self.0.upgrade() else { return };
            let g = cc.mu.lock().await;
            if cc.conns.borrow().is_none() {
                g.unlock().await;
                return;
            }
            let g2 = cc.ccb_mu.lock().await;
            if cc.ccb_closed.get() {
                g2.unlock().await;
                g.unlock().await;
                return;
            }
            g2.unlock().await;
            cc.picker_wrapper.update_picker(s.picker).await;
            cc.state.set(s.connectivity_state);
            g.unlock().await;
        })
    }

    fn resolve_now(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            if let Some(cc) = self.0.upgrade() {
                let g = cc.ccb_mu.lock().await;
                let closed = cc.ccb_closed.get();
                g.unlock().await;
                if !closed {
                    cc.resolve_now();
                }
            }
        })
    }
}

// ------------------------------------------------ cluster_manager (+ top gsb)

/// The top gracefulswitch and `xds_cluster_manager_experimental` with its
/// balancergroup (one child: cds for "cluster"; cache disabled). Every
/// SubConn of the tree is created through its group.
pub struct ClusterManager {
    cc: Rc<dyn ClientConnApi>,
    opts: BuildOptions,
    /// The top gracefulswitch's `mu` and `closed`.
    gsb_mu: Mutex,
    gsb_closed: Cell<bool>,
    /// The state aggregator's `mu` and `started`.
    aggregator_mu: Mutex,
    aggregator_started: Cell<bool>,
    incoming_mu: Mutex,
    incoming_started: Cell<bool>,
    sc_to_sub_balancer: RefCell<GoMap<SubConnId, Rc<dyn SubConn>>>,
    outgoing_mu: Mutex,
    outgoing_started: Cell<bool>,
    cds: RefCell<Option<Rc<Cds>>>,
    eds: Rc<Unbounded<ClusterUpdate>>,
    me: Weak<ClusterManager>,
}

/// The ClientConn cds and everything below it see.
struct ClusterManagerChildCc(Weak<ClusterManager>);

impl ClientConnApi for ClusterManagerChildCc {
    fn new_sub_conn(
        &self,
        addrs: Vec<Address>,
        opts: NewSubConnOptions,
    ) -> BoxFut<'_, Result<Rc<dyn SubConn>, GrpcError>> {
        Box::pin(async move {
            match self.0.upgrade() {
                Some(cm) => cm.new_sub_conn(addrs, opts).await,
                None => Err(err_client_conn_closing()),
            }
        })
    }

    fn update_state(&self, state: BalancerState) -> BoxFut<'_, ()> {
        Box::pin(async move {
            if let Some(cm) = self.0.upgrade() {
                cm.update_state(state).await;
            }
        })
    }

    fn resolve_now(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            if let Some(cm) = self.0.upgrade() {
                cm.cc.resolve_now().await;
            }
        })
    }
}

impl ClusterManager {
    fn new(
        cc: Rc<dyn ClientConnApi>,
        opts: BuildOptions,
        eds: Rc<Unbounded<ClusterUpdate>>,
    ) -> Rc<Self> {
        Rc::new_cyclic(|me| ClusterManager {
            cc,
            opts,
            gsb_mu: Mutex::new("gracefulswitch.mu"),
            gsb_closed: Cell::new(false),
            aggregator_mu: Mutex::new("cluster_manager.aggregator.mu"),
            aggregator_started: Cell::new(true),
            incoming_mu: Mutex::new("cluster_manager.bg.incomingMu"),
            incoming_started: Cell::new(true),
            sc_to_sub_balancer: RefCell::new(GoMap::new()),
            outgoing_mu: Mutex::new("cluster_manager.bg.outgoingMu"),
            outgoing_started: Cell::new(true),
            cds: RefCell::new(None),
            eds,
            me: me.clone(),
        })
    }

    /// `bg.newSubConn`.
    async fn new_sub_conn(
        &self,
        addrs: Vec<Address>,
        opts: NewSubConnOptions,
    ) -> Result<Rc<dyn SubConn>, GrpcError> {
        let g = self.incoming_mu.lock().await;
        if !self.incoming_started.get() {
            g.unlock().await;
            return Err(GrpcError::new(
                "NewSubConn is called after balancer group is closed",
            ));
        }
        let sc_id: Rc<Cell<Option<SubConnId>>> = Rc::new(Cell::new(None));
        let (me, id2, old) = (self.me.clone(), sc_id.clone(), opts.state_listener.clone());
        let listener: StateListener = Rc::new(move |s: SubConnState| {
            let (me, id, old) = (me.clone(), id2.get(), old.clone());
            Box::pin(async move {
                if let (Some(cm), Some(id)) = (me.upgrade(), id) {
                    cm.update_sub_conn_state(id, s, old).await;
                }
            })
        });
        let r = self
            .cc
            .new_sub_conn(
                addrs,
                NewSubConnOptions {
                    state_listener: Some(listener),
                },
            )
            .await;
        match r {
            Ok(sc) => {
                sc_id.set(Some(sc.id()));
                self.sc_to_sub_balancer
                    .borrow_mut()
                    .insert(sc.id(), sc.clone());
                g.unlock().await;
                Ok(sc)
            }
            Err(e) => {
                g.unlock().await;
                Err(e)
            }
        }
    }

    /// `bg.updateSubConnState`.
    async fn update_sub_conn_state(
        &self,
        id: SubConnId,
        state: SubConnState,
        cb: Option<StateListener>,
    ) {
        let g = self.incoming_mu.lock().await;
        if !self.sc_to_sub_balancer.borrow().contains_key(&id) {
            g.unlock().await;
            return;
        }
        if state.connectivity_state == ConnectivityState::Shutdown {
            self.sc_to_sub_balancer.borrow_mut().remove(&id);
        }
        g.unlock().await;
        let g = self.outgoing_mu.lock().await;
        if let Some(cb) = cb {
            cb(state).await;
        }
        g.unlock().await;
    }

    /// The state aggregator, then the top gracefulswitch, then the channel.
    async fn update_state(&self, state: BalancerState) {
        let g = self.aggregator_mu.lock().await;
        if !self.aggregator_started.get() {
            g.unlock().await;
            return;
        }
        let g2 = self.gsb_mu.lock().await;
        if !self.gsb_closed.get() {
            self.cc.update_state(state).await;
        }
        g2.unlock().await;
        g.unlock().await;
    }
}

impl Balancer for ClusterManager {
    /// Builds cds for the one cluster on the first update.
    fn update_client_conn_state(&self, _s: ClientConnState) -> BoxFut<'_, Result<(), GrpcError>> {
        Box::pin(async move {
            let g = self.outgoing_mu.lock().await;
            if self.outgoing_started.get() && self.cds.borrow().is_none() {
                let cc: Rc<dyn ClientConnApi> = Rc::new(ClusterManagerChildCc(self.me.clone()));
                let cds = Cds::build(cc, self.opts.clone(), self.eds.clone()).await;
                *self.cds.borrow_mut() = Some(cds);
            }
            g.unlock().await;
            Ok(())
        })
    }

    fn resolver_error(&self, _err: GrpcError) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }

    fn exit_idle(&self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }

    /// gracefulswitch Close, then cluster_manager Close (aggregator, then
    /// the group's three sections; the cache is disabled).
    fn close(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let g = self.gsb_mu.lock().await;
            self.gsb_closed.set(true);
            g.unlock().await;

            let g = self.aggregator_mu.lock().await;
            self.aggregator_started.set(false);
            g.unlock().await;

            let g = self.incoming_mu.lock().await;
            if self.incoming_started.get() {
                self.incoming_started.set(false);
                let scs = self.sc_to_sub_balancer.borrow_mut().drain_go_order();
                for (_, sc) in scs {
                    sc.shutdown().await;
                }
            }
            g.unlock().await;

            let g = self.outgoing_mu.lock().await;
            if self.outgoing_started.get() {
                self.outgoing_started.set(false);
                let cds = self.cds.borrow_mut().take();
                if let Some(cds) = cds {
                    cds.close().await;
                }
            }
            g.unlock().await;
        })
    }
}

// ---------------------------------------------------------------------- cds

/// `cds_experimental`: its serializer, and the cluster_resolver child built
/// and closed on it.
pub struct Cds {
    serializer: Rc<CallbackSerializer>,
    serializer_cancel: Ctx,
    child: Rc<RefCell<Option<Rc<ClusterResolver>>>>,
}

impl Cds {
    async fn build(
        cc: Rc<dyn ClientConnApi>,
        opts: BuildOptions,
        eds: Rc<Unbounded<ClusterUpdate>>,
    ) -> Rc<Cds> {
        let ctx: Ctx = Rc::new(Event::new("cds.serializer.ctx"));
        let serializer = CallbackSerializer::new("cds.serializer", ctx.clone()).await;
        let child: Rc<RefCell<Option<Rc<ClusterResolver>>>> = Rc::new(RefCell::new(None));
        // The CDS resource arrives: build cluster_resolver on the serializer.
        let c = child.clone();
        serializer
            .try_schedule(callback(move |_ctx| async move {
                let cr = ClusterResolver::build(cc, opts, eds).await;
                *c.borrow_mut() = Some(cr);
            }))
            .await;
        Rc::new(Cds {
            serializer,
            serializer_cancel: ctx,
            child,
        })
    }

    async fn close(&self) {
        let c = self.child.clone();
        self.serializer
            .try_schedule(callback(move |_ctx| async move {
                let cr = c.borrow_mut().take();
                if let Some(cr) = cr {
                    cr.close().await;
                }
            }))
            .await;
        self.serializer_cancel.fire().await;
        self.serializer.done().wait().await;
    }
}

// ----------------------------------------------------------- cluster_resolver

/// `cluster_resolver_experimental`: its `run()` task owns the priority
/// policy. Every call into the priority policy, Close included, happens on
/// that task.
pub struct ClusterResolver {
    cc: Rc<dyn ClientConnApi>,
    opts: BuildOptions,
    update_ch: Unbounded<()>,
    resource_updates: Rc<Unbounded<ClusterUpdate>>,
    closed: Event,
    done: Event,
    child: RefCell<Option<Rc<dyn Balancer>>>,
    /// The leaf policy under each priority (the cluster's LB policy).
    leaf_policy: RefCell<String>,
    /// `childNameGen`: child names stay with their localities across updates.
    names: RefCell<NameGenerator>,
}

impl ClusterResolver {
    async fn build(
        cc: Rc<dyn ClientConnApi>,
        opts: BuildOptions,
        resource_updates: Rc<Unbounded<ClusterUpdate>>,
    ) -> Rc<ClusterResolver> {
        let b = Rc::new(ClusterResolver {
            cc,
            opts,
            update_ch: Unbounded::new("cluster_resolver.updateCh"),
            resource_updates,
            closed: Event::new("cluster_resolver.closed"),
            done: Event::new("cluster_resolver.done"),
            child: RefCell::new(None),
            leaf_policy: RefCell::new(LEAF_POLICY.to_string()),
            names: RefCell::new(NameGenerator::new(0)),
        });
        let runner = b.clone();
        sim::go("cluster_resolver.run", async move { runner.run().await }).await;
        b
    }

    async fn run(&self) {
        loop {
            let which = select(&[&self.update_ch, &*self.resource_updates, &self.closed]).await;
            match which {
                0 => {
                    if self.update_ch.try_get().is_none() {
                        return;
                    }
                    // ExitIdle
                    let child = self.child.borrow().clone();
                    if let Some(c) = child {
                        c.exit_idle().await;
                    }
                }
                1 => {
                    if let Some(update) = self.resource_updates.try_get() {
                        if let Some(policy) = update.child_policy {
                            *self.leaf_policy.borrow_mut() = policy;
                        }
                        self.update_child_config(&update.priorities).await;
                    }
                }
                _ => {
                    let child = self.child.borrow_mut().take();
                    if let Some(c) = child {
                        c.close().await;
                    }
                    self.update_ch.close().await;
                    self.done.fire().await;
                    return;
                }
            }
        }
    }

    /// `updateChildConfig`: builds the priority policy on first use and
    /// pushes the config built from the EDS priorities, naming the children
    /// as the previous update did where their localities stay.
    async fn update_child_config(&self, priorities: &[Vec<Rc<str>>]) {
        if self.child.borrow().is_none() {
            let Some(builder) = self.opts.registry.get(priority::NAME) else {
                sim::note(|| format!("{} is not registered", priority::NAME));
                return;
            };
            let b = builder.build(self.cc.clone(), self.opts.clone()).await;
            *self.child.borrow_mut() = Some(b);
        }
        let leaf = self.leaf_policy.borrow().clone();
        let (cfg, endpoints) =
            build_named_priority_config(priorities, &mut self.names.borrow_mut(), &leaf);
        let child = self.child.borrow().clone().expect("built above");
        let _ = child
            .update_client_conn_state(ClientConnState {
                resolver_state: ResolverState { endpoints },
                balancer_config: Some(cfg.into_any()),
            })
            .await;
    }

    async fn close(&self) {
        self.closed.fire().await;
        self.done.wait().await;
    }
}

// ------------------------------------------------------------------ channel

/// How to build a channel.
#[derive(Clone)]
pub struct ChannelOptions {
    pub build: BuildOptions,
    pub network: Rc<Network>,
    pub connect_params: ConnectParams,
    /// Deadline of each RPC's context (`None`: no deadline).
    pub rpc_timeout: Option<u64>,
    /// The policy under every priority, by registry name (`None`:
    /// round_robin).
    pub child_policy: Option<String>,
}

/// A gRPC channel to the xDS cluster "cluster".
pub struct ClientConn {
    core: Rc<ChannelCore>,
    eds: Rc<Unbounded<ClusterUpdate>>,
    rpc_timeout: Option<u64>,
}

impl ClientConn {
    /// `grpc.NewClient` plus the first resolver update: starts the balancer
    /// serializer, builds the tree on it, and hands cluster_resolver the
    /// EDS priorities (addresses, highest priority first).
    pub async fn new(opts: ChannelOptions, priorities: Vec<Vec<Rc<str>>>) -> ClientConn {
        let serializer_ctx: Ctx = Rc::new(Event::new("ccb.serializer.ctx"));
        let core = Rc::new(ChannelCore {
            mu: Mutex::new("cc.mu"),
            conns: RefCell::new(Some(GoMap::new())),
            next_sub_conn: Cell::new(0),
            network: opts.network.clone(),
            params: opts.connect_params.clone(),
            serializer: RefCell::new(None),
            serializer_ctx: serializer_ctx.clone(),
            ccb_mu: Mutex::new("ccb.mu"),
            ccb_closed: Cell::new(false),
            balancer: RefCell::new(None),
            picker_wrapper: PickerWrapper::new(),
            state: Cell::new(ConnectivityState::Idle),
            resolve_now_count: Cell::new(0),
        });
        let serializer = CallbackSerializer::new("ccb.serializer", serializer_ctx).await;
        *core.serializer.borrow_mut() = Some(serializer.clone());
        let eds: Rc<Unbounded<ClusterUpdate>> = Rc::new(Unbounded::new("xds.eds.updates"));
        let cc: Rc<dyn ClientConnApi> = Rc::new(CcbHandle(Rc::downgrade(&core)));
        let top = ClusterManager::new(cc, opts.build.clone(), eds.clone());
        *core.balancer.borrow_mut() = Some(top);
        // ccb.updateClientConnState: on the serializer.
        let c = core.clone();
        serializer
            .try_schedule(callback(move |ctx| async move {
                let top = c.balancer.borrow().clone();
                if ctx.has_fired() {
                    return;
                }
                if let Some(top) = top {
                    let _ = top
                        .update_client_conn_state(ClientConnState::default())
                        .await;
                }
            }))
            .await;
        let _ = eds
            .put(ClusterUpdate {
                priorities,
                child_policy: opts.child_policy.clone(),
            })
            .await;
        ClientConn {
            core,
            eds,
            rpc_timeout: opts.rpc_timeout,
        }
    }

    /// A new EDS update for the cluster (as the xDS client delivers it).
    pub async fn update_priorities(&self, priorities: Vec<Vec<Rc<str>>>) {
        self.update_cluster(ClusterUpdate {
            priorities,
            child_policy: None,
        })
        .await;
    }

    /// A new update of the cluster's resources: cluster_resolver's `run()`
    /// task turns it into a new priority config and pushes it to the
    /// priority policy, as it does the first one.
    pub async fn update_cluster(&self, update: ClusterUpdate) {
        let _ = self.eds.put(update).await;
    }

    /// The channel's connectivity state.
    pub fn state(&self) -> ConnectivityState {
        self.core.state.get()
    }

    /// How many times re-resolution was requested.
    pub fn resolve_now_count(&self) -> u32 {
        self.core.resolve_now_count.get()
    }

    /// One unary RPC: picks a SubConn (blocking for the next picker while
    /// none is available, or on failure with `wait_for_ready`), sends over
    /// its connection and waits for the response. Returns the name of the
    /// backend that served it.
    pub async fn rpc(
        &self,
        wait_for_ready: bool,
        hash_key: Option<&str>,
    ) -> Result<Rc<str>, GrpcError> {
        let ctx = Rc::new(Event::new("rpc.ctx"));
        let timer = match self.rpc_timeout {
            Some(d) => {
                let c = ctx.clone();
                Some(
                    after_func(d, "rpc.deadline", async move {
                        c.fire().await;
                    })
                    .await,
                )
            }
            None => None,
        };
        let r = self.rpc_with_ctx(&ctx, wait_for_ready, hash_key).await;
        if let Some(t) = timer {
            t.stop().await;
        }
        r
    }

    async fn rpc_with_ctx(
        &self,
        ctx: &Rc<Event>,
        wait_for_ready: bool,
        hash_key: Option<&str>,
    ) -> Result<Rc<str>, GrpcError> {
        let info = PickInfo {
            hash_key: hash_key.map(Rc::from),
        };
        let mut ch: Option<Rc<PickerGen>> = None;
        let mut last_pick_err: Option<GrpcError> = None;
        loop {
            let Some(pg) = self.core.picker_wrapper.picker_gen.borrow().clone() else {
                return Err(err_client_conn_closing());
            };
            if pg.picker.is_none() {
                ch = Some(pg.clone());
            }
            if ch.as_ref().is_some_and(|c| Rc::ptr_eq(c, &pg)) {
                if select(&[&**ctx, &pg.blocking]).await == 0 {
                    return Err(GrpcError::new(match &last_pick_err {
                        Some(e) => format!("DeadlineExceeded: latest balancer error: {e}"),
                        None => "DeadlineExceeded: context deadline exceeded while waiting for connections to become ready".to_string(),
                    }));
                }
                continue;
            }
            ch = Some(pg.clone());
            let picker = pg.picker.clone().expect("checked above");
            match picker.pick(&info) {
                Err(PickError::NoSubConnAvailable) => continue,
                Err(PickError::Failed(e)) => {
                    if wait_for_ready {
                        last_pick_err = Some(e);
                        continue;
                    }
                    return Err(GrpcError::new(format!("Unavailable: {e}")));
                }
                Ok(sc) => {
                    let Some(ac) = self.core.addr_conn(sc.id()) else {
                        continue;
                    };
                    let Some(transport) = ac.get_ready_transport().await else {
                        continue;
                    };
                    return match transport.round_trip(Some(ctx)).await {
                        Ok(()) => Ok(transport.backend_name().clone()),
                        Err(e) => Err(GrpcError::new(format!("Unavailable: {e}"))),
                    };
                }
            }
        }
    }

    /// `ClientConn.Close()` as in the reference §4.1: returns once the
    /// whole policy tree has closed and every addrConn is torn down.
    pub async fn close(&self) {
        let core = &self.core;
        let g = core.mu.lock().await;
        let Some(conns) = core.conns.borrow_mut().take() else {
            drop(g);
            return;
        };
        core.state.set(ConnectivityState::Shutdown);
        g.unlock().await;

        core.picker_wrapper.close().await;

        // ccb.close()
        let g = core.ccb_mu.lock().await;
        core.ccb_closed.set(true);
        g.unlock().await;
        let c = core.clone();
        let serializer = core.serializer();
        serializer
            .try_schedule(callback(move |_ctx| async move {
                let top = c.balancer.borrow().clone();
                let Some(top) = top else { return };
                top.close().await;
                *c.balancer.borrow_mut() = None;
            }))
            .await;
        core.serializer_ctx.fire().await;

        serializer.done().wait().await;

        let mut conns = conns;
        let all = conns.drain_go_order();
        let n = all.len();
        let finished: Rc<Unbounded<()>> = Rc::new(Unbounded::new("cc.close.wg"));
        for (_, ac) in all {
            let f = finished.clone();
            sim::go("addrConn.tearDown", async move {
                ac.tear_down().await;
                let _ = f.put(()).await;
            })
            .await;
        }
        for _ in 0..n {
            finished.get().await;
        }
    }
}
