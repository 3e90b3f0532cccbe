//! The channel and the policies above the priority policy, ported from
//! grpc-go at `e0ac3acff`: `clientconn.go` (NewSubConn bookkeeping, the
//! connectivity state manager, Close), `balancer_wrapper.go`
//! (ccBalancerWrapper: its serializer, UpdateState, close),
//! `resolver_wrapper.go` (close), `picker_wrapper.go` (pick, blocking until
//! the next picker), `internal/idle` (Close), and the xDS policies:
//! `xds/internal/balancer/clustermanager` (its state aggregator and its
//! balancergroup, cache off), `xds/internal/balancer/cdsbalancer` (its
//! serializer, its watch, Close) and `xds/internal/balancer/clusterresolver`
//! (its `run()` task, its resource resolver, Close, and the priority config
//! built from the EDS priorities). The top gracefulswitch and the one around
//! cds are the ported [`GracefulSwitch`], and cluster_manager's group is the
//! ported [`BalancerGroup`], so every lock of those layers is on the path of
//! each picker update, SubConn creation and SubConn state update.
//!
//! The close path follows the reference §4.1 step by step: `Close` closes
//! the idleness manager, publishes SHUTDOWN under `cc.mu`, closes the
//! resolver wrapper (the xDS resolver closes on its serializer, dropping the
//! xDS client), closes the picker wrapper, queues the balancer's close on the
//! balancer serializer and cancels it, then waits for both serializers. The
//! close callback closes the top gracefulswitch, then cluster_manager (its
//! aggregator, then its group: every tracked SubConn shut down, then cds
//! closed through its gracefulswitch); cds queues its close on its own
//! serializer and waits for it; that callback cancels the cluster watch and
//! closes cluster_resolver, which fires `closed` and waits for `done`;
//! cluster_resolver's `run()` task stops its resource resolver (a watch
//! cancellation, then its serializer), closes the priority policy and fires
//! `done`. `ClientConn::close` returns once every addrConn is torn down.
//!
//! Simplified, and why it cannot change whether the close race can happen:
//! * No management server, ADS stream or name resolution: the EDS priorities
//!   reach cluster_resolver through the xDS client's update channel
//!   directly, and ResolveNow is only counted (`src/grpc/xds.rs` says what
//!   of the xDS client is kept).
//! * The ClientConn wrappers of cds and cluster_resolver are folded away:
//!   they only add credentials and intercept ResolveNow, and take no lock.
//! * The channel's RWMutex is a plain mutex; channelz and the connectivity
//!   state's subscribers (there are none in the modelled tests) are left
//!   out, and the final wait on the state pubsub's serializer, after every
//!   policy has closed, too.
//! * Everything that decides the race is kept: `priority.Close()` runs on
//!   the cluster_resolver `run()` task, a different task from the priority
//!   worker and the balancer serializer, and the whole chain blocks the
//!   caller of `ClientConn::close` until it returns.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::{Rc, Weak};

use crate::grpc::balancer::{
    Address, Attributes, Balancer, BalancerState, BoxFut, BuildOptions, Builder,
    ClientConn as ClientConnApi, ClientConnState, Endpoint, ErrPicker, GrpcError,
    NewSubConnOptions, PickError, PickInfo, Picker, ResolverState, SubConn, SubConnId,
};
use crate::grpc::balancergroup::{BalancerGroup, BalancerStateAggregator};
use crate::grpc::connectivity::ConnectivityState;
use crate::grpc::gracefulswitch::GracefulSwitch;
use crate::grpc::grpclog::Logger;
use crate::grpc::outlier_detection::{self, OdConfig};
use crate::grpc::priority::{self, Child, LbConfig};
use crate::grpc::serializer::{CallbackSerializer, Ctx, serializer_names};
use crate::grpc::subconn::{AddrConn, ConnectParams};
use crate::grpc::xds::{ResourceResolver, XdsClient, XdsResolver};
use crate::net::Network;
use crate::sim::{
    self, Event, GoMap, Mutex, Timer, Unbounded, after_func, after_func_fire, select,
};

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
    pub(crate) mu: Mutex,
    /// `cc.conns`; `None` once the channel is closing.
    conns: RefCell<Option<GoMap<SubConnId, Rc<AddrConn>>>>,
    next_sub_conn: Cell<u32>,
    pub(crate) network: Rc<Network>,
    pub(crate) params: ConnectParams,
    pub(crate) logger: Logger,
    serializer: RefCell<Option<Rc<CallbackSerializer>>>,
    serializer_ctx: Ctx,
    /// `ccb.mu` / `ccb.closed`.
    ccb_mu: Mutex,
    ccb_closed: Cell<bool>,
    /// `ccb.balancer` (the top gracefulswitch); `None` once closed.
    balancer: RefCell<Option<Rc<GracefulSwitch>>>,
    /// Whether `ccb.balancer.SwitchTo` has run (`ccb.curBalancerName`).
    switched: Cell<bool>,
    picker_wrapper: PickerWrapper,
    /// `cc.csMgr`: its mutex, its state and its pubsub's mutex.
    csm_mu: Mutex,
    state: Cell<ConnectivityState>,
    pubsub_mu: Mutex,
    /// `cc.idlenessMgr`: its mutex and its idle timer.
    idle_mu: Mutex,
    idle_timer: RefCell<Option<Timer>>,
    /// `cc.resolverWrapper`.
    resolver: RefCell<Option<Rc<ResolverWrapper>>>,
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

    /// `csMgr.updateState`: publishes a change (no subscriber is modelled;
    /// the publication still takes the pubsub's mutex) and logs it.
    async fn update_connectivity_state(&self, s: ConnectivityState) {
        let g = self.csm_mu.lock().await;
        let old = self.state.get();
        if old == ConnectivityState::Shutdown || old == s {
            g.unlock().await;
            return;
        }
        self.state.set(s);
        let p = self.pubsub_mu.lock().await;
        p.unlock().await;
        self.logger
            .info(|| format!("Channel Connectivity change to {s}"))
            .await;
        g.unlock().await;
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
            cc.update_connectivity_state(s.connectivity_state).await;
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

// ------------------------------------------------------- resolver wrapper

/// `ccResolverWrapper`: the channel's resolver (the xDS resolver) runs on
/// its serializer, which Close cancels and the channel waits for.
struct ResolverWrapper {
    mu: Mutex,
    closed: Cell<bool>,
    serializer: Rc<CallbackSerializer>,
    serializer_ctx: Ctx,
    resolver: Rc<RefCell<Option<Rc<XdsResolver>>>>,
    logger: Logger,
}

impl ResolverWrapper {
    async fn start(resolver: Rc<XdsResolver>, logger: Logger) -> Rc<ResolverWrapper> {
        let ctx: Ctx = Rc::new(Event::new("ccr.serializer.ctx"));
        let serializer =
            CallbackSerializer::new_static(serializer_names!("ccr.serializer"), ctx.clone()).await;
        Rc::new(ResolverWrapper {
            mu: Mutex::new("ccr.mu"),
            closed: Cell::new(false),
            serializer,
            serializer_ctx: ctx,
            resolver: Rc::new(RefCell::new(Some(resolver))),
            logger,
        })
    }

    /// `ccResolverWrapper.close`: the resolver is closed on the serializer.
    async fn close(&self) {
        self.logger
            .info(|| "Closing the name resolver".into())
            .await;
        let g = self.mu.lock().await;
        self.closed.set(true);
        g.unlock().await;
        let r = self.resolver.clone();
        self.serializer
            .try_schedule(move |_ctx| async move {
                let resolver = r.borrow_mut().take();
                if let Some(resolver) = resolver {
                    resolver.close().await;
                }
            })
            .await;
        self.serializer_ctx.fire().await;
    }
}

// ---------------------------------------------------------- cluster_manager

/// The cluster_manager's one child: cds for the cluster "cluster".
const CLUSTER_CHILD: &str = "cluster:cluster";

/// `xds_cluster_manager_experimental`.
pub const CLUSTER_MANAGER: &str = "xds_cluster_manager_experimental";

/// Builds `xds_cluster_manager_experimental`.
pub struct ClusterManagerBuilder;

impl Builder for ClusterManagerBuilder {
    fn name(&self) -> &str {
        CLUSTER_MANAGER
    }

    fn build(
        &self,
        cc: Rc<dyn ClientConnApi>,
        opts: BuildOptions,
    ) -> BoxFut<'static, Rc<dyn Balancer>> {
        Box::pin(async move { ClusterManager::build(cc, opts).await as Rc<dyn Balancer> })
    }
}

/// `xds_cluster_manager_experimental` (`clustermanager.go`): a state
/// aggregator and a balancergroup with the cache disabled. Its only child
/// here is cds for the one cluster, and every SubConn of the tree is
/// created through its group.
pub struct ClusterManager {
    aggregator: Rc<StateAggregator>,
    bg: Rc<BalancerGroup>,
    /// The children of the last config (`b.children`).
    children: RefCell<BTreeSet<String>>,
    logger: Logger,
}

impl ClusterManager {
    async fn build(cc: Rc<dyn ClientConnApi>, opts: BuildOptions) -> Rc<ClusterManager> {
        let aggregator = Rc::new(StateAggregator {
            cc: cc.clone(),
            mu: Mutex::new("cluster_manager.aggregator.mu"),
            closed: Cell::new(false),
            states: RefCell::new(BTreeMap::new()),
            pause: Cell::new(false),
            need_update_on_resume: Cell::new(false),
            logger: opts.logger.clone(),
        });
        let weak: Weak<StateAggregator> = Rc::downgrade(&aggregator);
        let agg: Weak<dyn BalancerStateAggregator> = weak;
        let bg = BalancerGroup::new(cc, opts.clone(), agg, 0);
        // PR #8095 removed `Start`: the group is started from `New`.
        if !opts.variant.terminal_close() {
            bg.start().await;
        }
        opts.logger.info(|| "cluster_manager: Created".into()).await;
        Rc::new(ClusterManager {
            aggregator,
            bg,
            children: RefCell::new(BTreeSet::new()),
            logger: opts.logger,
        })
    }
}

impl Balancer for ClusterManager {
    /// `UpdateClientConnState` with the config of one child, cds for the
    /// cluster: state updates are paused while children are added and
    /// configured, then the aggregated state is pushed once.
    fn update_client_conn_state(&self, s: ClientConnState) -> BoxFut<'_, Result<(), GrpcError>> {
        Box::pin(async move {
            self.aggregator.pause_state_updates().await;
            let mut result = Ok(());
            if !self.children.borrow().contains(CLUSTER_CHILD) {
                self.aggregator.add(CLUSTER_CHILD).await;
                if let Err(e) = self.bg.add(CLUSTER_CHILD, CDS).await {
                    result = Err(e);
                }
            }
            let child_state = ClientConnState {
                resolver_state: ResolverState {
                    endpoints: Vec::new(),
                    attributes: s.resolver_state.attributes.clone(),
                },
                balancer_config: None,
            };
            if let Err(e) = self
                .bg
                .update_client_conn_state(CLUSTER_CHILD, child_state)
                .await
            {
                result = Err(e);
            }
            self.children.borrow_mut().insert(CLUSTER_CHILD.to_string());
            self.aggregator.resume_state_updates().await;
            result
        })
    }

    fn resolver_error(&self, err: GrpcError) -> BoxFut<'_, ()> {
        Box::pin(async move { self.bg.resolver_error(err).await })
    }

    fn exit_idle(&self) -> BoxFut<'_, ()> {
        Box::pin(async move { self.bg.exit_idle().await })
    }

    /// The aggregator, then the group (every tracked SubConn shut down, then
    /// cds closed).
    fn close(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            self.aggregator.close().await;
            self.bg.close().await;
            self.logger
                .info(|| "cluster_manager: Shutdown".into())
                .await;
        })
    }
}

/// The state of one child in the aggregator: its last state and the state
/// it counts as (TRANSIENT_FAILURE stays until READY or IDLE).
struct ChildPickerState {
    state: BalancerState,
    state_to_aggregate: ConnectivityState,
}

/// cluster_manager's `balancerStateAggregator`.
struct StateAggregator {
    cc: Rc<dyn ClientConnApi>,
    mu: Mutex,
    closed: Cell<bool>,
    states: RefCell<BTreeMap<String, ChildPickerState>>,
    pause: Cell<bool>,
    need_update_on_resume: Cell<bool>,
    logger: Logger,
}

impl StateAggregator {
    async fn close(&self) {
        let g = self.mu.lock().await;
        self.closed.set(true);
        g.unlock().await;
    }

    /// A new child starts CONNECTING with a picker that queues.
    async fn add(&self, id: &str) {
        let g = self.mu.lock().await;
        self.states.borrow_mut().insert(
            id.to_string(),
            ChildPickerState {
                state: BalancerState::connecting_queue(),
                state_to_aggregate: ConnectivityState::Connecting,
            },
        );
        self.build_and_update_locked().await;
        g.unlock().await;
    }

    async fn pause_state_updates(&self) {
        let g = self.mu.lock().await;
        self.pause.set(true);
        self.need_update_on_resume.set(false);
        g.unlock().await;
    }

    async fn resume_state_updates(&self) {
        let g = self.mu.lock().await;
        self.pause.set(false);
        if self.need_update_on_resume.get() {
            let s = self.build_locked().await;
            self.cc.update_state(s).await;
        }
        g.unlock().await;
    }

    async fn build_and_update_locked(&self) {
        if self.closed.get() {
            return;
        }
        if self.pause.get() {
            self.need_update_on_resume.set(true);
            return;
        }
        let s = self.build_locked().await;
        self.cc.update_state(s).await;
    }

    /// The aggregated state (`ConnectivityStateEvaluator`) and the picker
    /// group. Every RPC of the model goes to the one cluster, so the group
    /// picks with that child's picker.
    async fn build_locked(&self) -> BalancerState {
        self.logger
            .info(|| "cluster_manager: Child pickers".into())
            .await;
        let states = self.states.borrow();
        let counts = |s: ConnectivityState| {
            states
                .values()
                .filter(|c| c.state_to_aggregate == s)
                .count()
        };
        let connectivity_state = if counts(ConnectivityState::Ready) > 0 {
            ConnectivityState::Ready
        } else if counts(ConnectivityState::Connecting) > 0 {
            ConnectivityState::Connecting
        } else if counts(ConnectivityState::Idle) > 0 {
            ConnectivityState::Idle
        } else {
            ConnectivityState::TransientFailure
        };
        let picker = states.get(CLUSTER_CHILD).map_or_else(
            || Rc::new(ErrPicker(PickError::NoSubConnAvailable)) as Rc<dyn Picker>,
            |c| c.state.picker.clone(),
        );
        BalancerState {
            connectivity_state,
            picker,
        }
    }
}

impl BalancerStateAggregator for StateAggregator {
    fn update_state(&self, id: &str, state: BalancerState) -> BoxFut<'_, ()> {
        self.update_state_shared(&Rc::from(id), state)
    }

    fn update_state_shared(&self, id: &Rc<str>, state: BalancerState) -> BoxFut<'_, ()> {
        let id = id.clone();
        Box::pin(async move {
            self.logger
                .info(|| format!("cluster_manager: State update from sub-balancer {id:?}"))
                .await;
            let g = self.mu.lock().await;
            let known = {
                let mut states = self.states.borrow_mut();
                match states.get_mut(&*id) {
                    None => false,
                    Some(c) => {
                        if !(c.state_to_aggregate == ConnectivityState::TransientFailure
                            && state.connectivity_state == ConnectivityState::Connecting)
                        {
                            c.state_to_aggregate = state.connectivity_state;
                        }
                        c.state = state;
                        true
                    }
                }
            };
            if known {
                self.build_and_update_locked().await;
            }
            g.unlock().await;
        })
    }
}

// ---------------------------------------------------------------------- cds

/// `cds_experimental`.
pub const CDS: &str = "cds_experimental";

/// Builds `cds_experimental`.
pub struct CdsBuilder;

impl Builder for CdsBuilder {
    fn name(&self) -> &str {
        CDS
    }

    fn build(
        &self,
        cc: Rc<dyn ClientConnApi>,
        opts: BuildOptions,
    ) -> BoxFut<'static, Rc<dyn Balancer>> {
        Box::pin(async move { Cds::build(cc, opts).await as Rc<dyn Balancer> })
    }
}

/// `cds_experimental`: its serializer, its watch of the cluster, and the
/// cluster_resolver child built and closed on the serializer.
pub struct Cds {
    cc: Rc<dyn ClientConnApi>,
    opts: BuildOptions,
    serializer: Rc<CallbackSerializer>,
    serializer_cancel: Ctx,
    state: Rc<CdsState>,
}

/// What only the serializer's callbacks touch.
#[derive(Default)]
struct CdsState {
    xds_client: RefCell<Option<Rc<XdsClient>>>,
    watching: Cell<bool>,
    child: RefCell<Option<Rc<ClusterResolver>>>,
}

impl Cds {
    async fn build(cc: Rc<dyn ClientConnApi>, opts: BuildOptions) -> Rc<Cds> {
        let ctx: Ctx = Rc::new(Event::new("cds.serializer.ctx"));
        let serializer =
            CallbackSerializer::new_static(serializer_names!("cds.serializer"), ctx.clone()).await;
        opts.logger.info(|| "cds: Created".into()).await;
        Rc::new(Cds {
            cc,
            opts,
            serializer,
            serializer_cancel: ctx,
            state: Rc::new(CdsState::default()),
        })
    }
}

impl Balancer for Cds {
    /// Takes the xDS client from the resolver state and, on the serializer,
    /// watches the cluster. The cluster resource arrives at once: the
    /// serializer builds cluster_resolver.
    fn update_client_conn_state(&self, s: ClientConnState) -> BoxFut<'_, Result<(), GrpcError>> {
        Box::pin(async move {
            let Some(client) = s.resolver_state.attributes.get::<XdsClient>() else {
                return Err(GrpcError::new("xds: no xDS client found in resolver state"));
            };
            let (st, cc, opts) = (self.state.clone(), self.cc.clone(), self.opts.clone());
            self.serializer
                .try_schedule(move |_ctx| async move {
                    *st.xds_client.borrow_mut() = Some(client.clone());
                    st.watching.set(true);
                    if st.child.borrow().is_none() {
                        let logger = opts.logger.clone();
                        let cr = ClusterResolver::build(cc, opts, client).await;
                        *st.child.borrow_mut() = Some(cr);
                        logger
                            .info(|| "cds: Created child policy cluster_resolver".into())
                            .await;
                    }
                })
                .await;
            Ok(())
        })
    }

    fn resolver_error(&self, _err: GrpcError) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }

    fn exit_idle(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let st = self.state.clone();
            self.serializer
                .try_schedule(move |_ctx| async move {
                    let child = st.child.borrow().clone();
                    if let Some(c) = child {
                        c.exit_idle().await;
                    }
                })
                .await;
        })
    }

    /// On the serializer: cancel the watch, close cluster_resolver; then
    /// stop the serializer and wait for it.
    fn close(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let (st, logger) = (self.state.clone(), self.opts.logger.clone());
            self.serializer
                .try_schedule(move |_ctx| async move {
                    // closeAllWatchers
                    let client = st.xds_client.borrow().clone();
                    if let Some(client) = client
                        && st.watching.replace(false)
                    {
                        client.cancel_watch().await;
                    }
                    let cr = st.child.borrow_mut().take();
                    if let Some(cr) = cr {
                        cr.close().await;
                    }
                    logger.info(|| "cds: Shutdown".into()).await;
                })
                .await;
            self.serializer_cancel.fire().await;
            self.serializer.done().wait().await;
        })
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
    resource_watcher: ResourceResolver,
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
        client: Rc<XdsClient>,
    ) -> Rc<ClusterResolver> {
        let resource_updates = client.eds.clone();
        let resource_watcher = ResourceResolver::new(client).await;
        opts.logger
            .info(|| "cluster_resolver: Created".into())
            .await;
        let b = Rc::new(ClusterResolver {
            cc,
            opts,
            update_ch: Unbounded::new("cluster_resolver.updateCh"),
            resource_watcher,
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

    async fn exit_idle(&self) {
        let _ = self.update_ch.put(()).await;
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
                    self.resource_watcher.stop(true).await;
                    let child = self.child.borrow_mut().take();
                    if let Some(c) = child {
                        c.close().await;
                    }
                    self.update_ch.close().await;
                    self.opts
                        .logger
                        .info(|| "cluster_resolver: Shutdown".into())
                        .await;
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
        self.opts
            .logger
            .info(|| "cluster_resolver: Built child policy config".into())
            .await;
        let child = self.child.borrow().clone().expect("built above");
        let _ = child
            .update_client_conn_state(ClientConnState {
                resolver_state: ResolverState {
                    endpoints,
                    attributes: Attributes::default(),
                },
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

/// `grpc.DefaultIdleTimeout`: the idleness manager's timer.
const IDLE_TIMEOUT: u64 = 30 * 60 * sim::SEC;

/// A gRPC channel to the xDS cluster "cluster".
pub struct ClientConn {
    core: Rc<ChannelCore>,
    eds: Rc<Unbounded<ClusterUpdate>>,
    rpc_timeout: Option<u64>,
}

impl ClientConn {
    /// `grpc.NewClient` plus the first resolver update: starts the xDS
    /// resolver (with its xDS client) on the resolver wrapper, the balancer
    /// serializer and the idleness timer; on the balancer serializer the top
    /// gracefulswitch switches to cluster_manager and gets the resolver
    /// state; the EDS priorities (addresses, highest priority first) reach
    /// cluster_resolver through the xDS client.
    pub async fn new(opts: ChannelOptions, priorities: Vec<Vec<Rc<str>>>) -> ClientConn {
        let logger = opts.build.logger.clone();
        let serializer_ctx: Ctx = Rc::new(Event::new("ccb.serializer.ctx"));
        let core = Rc::new(ChannelCore {
            mu: Mutex::new("cc.mu"),
            conns: RefCell::new(Some(GoMap::new())),
            next_sub_conn: Cell::new(0),
            network: opts.network.clone(),
            params: opts.connect_params.clone(),
            logger: logger.clone(),
            serializer: RefCell::new(None),
            serializer_ctx: serializer_ctx.clone(),
            ccb_mu: Mutex::new("ccb.mu"),
            ccb_closed: Cell::new(false),
            balancer: RefCell::new(None),
            switched: Cell::new(false),
            picker_wrapper: PickerWrapper::new(),
            csm_mu: Mutex::new("csMgr.mu"),
            state: Cell::new(ConnectivityState::Idle),
            pubsub_mu: Mutex::new("csMgr.pubSub.mu"),
            idle_mu: Mutex::new("idlenessMgr.idleMu"),
            idle_timer: RefCell::new(None),
            resolver: RefCell::new(None),
            resolve_now_count: Cell::new(0),
        });
        let idle = after_func(IDLE_TIMEOUT, "idlenessMgr.timer", async {}).await;
        *core.idle_timer.borrow_mut() = Some(idle);
        let client = XdsClient::new(logger.clone()).await;
        let eds = client.eds.clone();
        let resolver = XdsResolver::build(client.clone(), logger.clone()).await;
        *core.resolver.borrow_mut() = Some(ResolverWrapper::start(resolver, logger.clone()).await);
        let serializer =
            CallbackSerializer::new_static(serializer_names!("ccb.serializer"), serializer_ctx)
                .await;
        *core.serializer.borrow_mut() = Some(serializer.clone());
        let cc: Rc<dyn ClientConnApi> = Rc::new(CcbHandle(Rc::downgrade(&core)));
        let top = GracefulSwitch::new(cc, opts.build.clone());
        *core.balancer.borrow_mut() = Some(top);
        // ccb.updateClientConnState: on the serializer.
        let c = core.clone();
        let state = ClientConnState {
            resolver_state: ResolverState {
                endpoints: Vec::new(),
                attributes: Attributes::new(client),
            },
            balancer_config: None,
        };
        serializer
            .try_schedule(move |ctx| async move {
                let top = c.balancer.borrow().clone();
                if ctx.has_fired() {
                    return;
                }
                let Some(top) = top else { return };
                if !c.switched.replace(true) {
                    let _ = top.switch_to(Rc::new(ClusterManagerBuilder)).await;
                    c.logger
                        .info(|| format!("Channel switches to new LB policy {CLUSTER_MANAGER:?}"))
                        .await;
                }
                let _ = top.update_client_conn_state(state).await;
            })
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
        let Some(d) = self.rpc_timeout else {
            // No deadline: nothing else holds the context.
            let ctx = Event::new("rpc.ctx");
            return self.rpc_with_ctx(&ctx, wait_for_ready, hash_key).await;
        };
        let ctx = Rc::new(Event::new("rpc.ctx"));
        let timer = after_func_fire(d, "rpc.deadline", ctx.clone()).await;
        let r = self.rpc_with_ctx(&ctx, wait_for_ready, hash_key).await;
        timer.stop().await;
        r
    }

    async fn rpc_with_ctx(
        &self,
        ctx: &Event,
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
                if select(&[ctx, &pg.blocking]).await == 0 {
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
                    return Err(GrpcError::prefixed("Unavailable: ", &e));
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
                        Err(e) => Err(GrpcError::prefixed("Unavailable: ", &e)),
                    };
                }
            }
        }
    }

    /// `ClientConn.Close()` as in the reference §4.1: returns once the
    /// whole policy tree has closed and every addrConn is torn down.
    pub async fn close(&self) {
        let core = &self.core;
        // idlenessMgr.Close: no entering or leaving idle from here on.
        let g = core.idle_mu.lock().await;
        let timer = core.idle_timer.borrow_mut().take();
        if let Some(t) = timer {
            t.stop().await;
        }
        g.unlock().await;

        let g = core.mu.lock().await;
        let Some(conns) = core.conns.borrow_mut().take() else {
            g.unlock().await;
            return;
        };
        core.update_connectivity_state(ConnectivityState::Shutdown)
            .await;
        g.unlock().await;

        let resolver = core.resolver.borrow().clone();
        if let Some(r) = &resolver {
            r.close().await;
        }
        core.picker_wrapper.close().await;

        // ccb.close()
        let g = core.ccb_mu.lock().await;
        core.ccb_closed.set(true);
        g.unlock().await;
        core.logger
            .info(|| "ccBalancerWrapper: closing".into())
            .await;
        let c = core.clone();
        let serializer = core.serializer();
        serializer
            .try_schedule(move |_ctx| async move {
                let top = c.balancer.borrow().clone();
                let Some(top) = top else { return };
                top.close().await;
                *c.balancer.borrow_mut() = None;
            })
            .await;
        core.serializer_ctx.fire().await;

        if let Some(r) = &resolver {
            r.serializer.done().wait().await;
        }
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
        core.logger.info(|| "Channel deleted".into()).await;
    }
}
