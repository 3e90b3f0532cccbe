//! The test harness the conformance tests share: a fake parent ClientConn
//! and fake SubConns in the shape of grpc-go's `testutils.BalancerClientConn`
//! and `TestSubConn`, wait helpers that poll in virtual time, stub policies,
//! and the runner that drives each scenario over several seeds.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::rc::{Rc, Weak};

use lbsim::grpc::balancer::{
    Address, Balancer, BalancerState, BoxFut, BuildOptions, Builder, ClientConn, ClientConnState,
    Endpoint, GrpcError, Lifecycle, NewSubConnOptions, PickError, PickInfo, Picker, Registry,
    ResolverState, StateListener, SubConn, SubConnId, SubConnState,
};
use lbsim::grpc::connectivity::ConnectivityState;
use lbsim::grpc::leaf::{PickFirstBuilder, RoundRobinBuilder};
use lbsim::grpc::priority::{Child, LbConfig, PriorityBalancer};
use lbsim::grpc::variant::Variant;
use lbsim::sim::strategy::{Decision, Point, RandomStrategy, RuntimeModel, Strategy, Timed};
use lbsim::sim::{self, Event, MS, Outcome, RunConfig, SEC, Sim};

/// How long a wait helper polls before failing (grpc-go's `defaultTestTimeout`).
pub const WAIT_TIMEOUT: u64 = 5 * SEC;
/// How long "nothing happens" is watched (grpc-go's `defaultTestShortTimeout`
/// in the priority package).
pub const SHORT: u64 = 100 * MS;

// ---------------------------------------------------------------------------
// Strategies and the runner.

/// Random choice among the runnable tasks; a timer fires only when no task
/// can run, so virtual time advances only while the model is quiescent. This
/// is a fast machine: every goroutine finishes its work long before any
/// timer, so "nothing happened within 100 ms" really means nothing was going
/// to happen, and a 10 s init timer never fires early. Interleavings of the
/// goroutines themselves still vary with the seed.
pub struct LateTimers(RandomStrategy);

impl LateTimers {
    pub fn new() -> Self {
        LateTimers(RandomStrategy::new())
    }
}

impl Strategy for LateTimers {
    fn new_execution(&mut self, seed: u64) {
        self.0.new_execution(seed);
    }

    fn next_task(&mut self, point: &Point<'_>) -> Decision {
        let tasks_only = Point {
            runnable: point.runnable,
            current: point.current,
            next_timer: None,
            now: point.now,
            step: point.step,
            pending: point.pending,
        };
        self.0.next_task(&tasks_only)
    }

    fn choose(&mut self, n: usize) -> usize {
        self.0.choose(n)
    }

    fn name(&self) -> String {
        "late-timers".into()
    }
}

/// Which strategy a scenario runs under.
#[derive(Clone, Copy, Debug)]
pub enum Sched {
    /// [`LateTimers`]: for scenarios whose expectations assume timers fire on
    /// time (a watch window, a pending init timer that must not fire).
    LateTimers,
    /// The timed runtime model: time follows step costs, so interleavings
    /// come from timing and timers fire at their deadline.
    Timed,
    /// Uniform random, timers may fire early: only for scenarios whose
    /// expectations hold whenever timers fire.
    Random,
}

/// Runs `body` once per (variant, seed) and fails on any outcome but Ok: a
/// panic in the body (a failed expectation), a deadlock, a leaked task.
pub fn run_scenario<F, Fut>(name: &str, sched: Sched, variants: &[Variant], seeds: u64, body: F)
where
    F: Fn(Variant) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let strategy: Box<dyn Strategy> = match sched {
        Sched::LateTimers => Box::new(LateTimers::new()),
        Sched::Timed => Box::new(Timed::new(RuntimeModel::default())),
        Sched::Random => Box::new(RandomStrategy::new()),
    };
    let mut sim = Sim::new(strategy);
    for &variant in variants {
        for seed in 0..seeds {
            let report = sim.run(&RunConfig::new(seed), body(variant));
            assert!(
                report.outcome == Outcome::Ok,
                "{name} [{variant}, {sched:?}, seed {seed}]: {}\n{}",
                report.outcome,
                report.describe()
            );
        }
    }
}

/// Runs `body` under [`Sched::LateTimers`] and under [`Sched::Timed`].
pub fn run_both<F, Fut>(name: &str, variants: &[Variant], seeds: u64, body: F)
where
    F: Fn(Variant) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    run_scenario(name, Sched::LateTimers, variants, seeds, &body);
    run_scenario(name, Sched::Timed, variants, seeds, &body);
}

/// The variants whose priority behaviour matches grpc-go at `e0ac3acff` when
/// the group's cache is off (every variant differs only in caching and close).
pub const ALL_VARIANTS: [Variant; 5] = Variant::ALL;

// ---------------------------------------------------------------------------
// Polling in virtual time.

/// Polls `f` every millisecond of virtual time until it yields a value;
/// panics with `what` after [`WAIT_TIMEOUT`].
pub async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = sim::now() + WAIT_TIMEOUT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(sim::now() < deadline, "timed out waiting for {what}");
        sim::sleep(MS).await;
    }
}

// ---------------------------------------------------------------------------
// The fake SubConn.

pub struct FakeSubConn {
    id: SubConnId,
    addrs: Vec<Address>,
    listener: Option<StateListener>,
    health_listener: RefCell<Option<StateListener>>,
    connect_called: Event,
    connects: Cell<u32>,
    cc: Weak<FakeCc>,
}

impl FakeSubConn {
    pub fn sc_id(&self) -> SubConnId {
        self.id
    }

    /// The first address (every test SubConn has one).
    pub fn addr(&self) -> &str {
        &self.addrs[0].addr
    }

    pub fn connect_count(&self) -> u32 {
        self.connects.get()
    }

    /// `TestSubConn.UpdateState`: waits until `connect()` was called, then
    /// calls the state listener synchronously; for READY, then tells the
    /// health listener READY, as a channel without health checking does.
    pub async fn update_state(&self, s: ConnectivityState) {
        self.update_state_err(s, None).await;
    }

    pub async fn update_state_err(&self, s: ConnectivityState, err: Option<&str>) {
        self.connect_called.wait().await;
        let state = SubConnState {
            connectivity_state: s,
            connection_error: err.map(GrpcError::new),
        };
        if let Some(l) = &self.listener {
            l(state).await;
        }
        let health = self.health_listener.borrow().clone();
        if let (ConnectivityState::Ready, Some(h)) = (s, health) {
            h(SubConnState::new(ConnectivityState::Ready)).await;
        }
    }
}

impl SubConn for FakeSubConn {
    fn id(&self) -> SubConnId {
        self.id
    }

    fn addresses(&self) -> Vec<Address> {
        self.addrs.clone()
    }

    fn connect(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            self.connects.set(self.connects.get() + 1);
            self.connect_called.fire().await;
        })
    }

    /// Keeps the listener; `update_state(READY)` calls it (grpc-go's fake).
    fn register_health_listener(&self, listener: StateListener) -> BoxFut<'_, ()> {
        Box::pin(async move {
            *self.health_listener.borrow_mut() = Some(listener);
        })
    }

    /// Only records the call, as grpc-go's fake does: no SHUTDOWN state is
    /// delivered unless the test sends one.
    fn shutdown(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            if let Some(cc) = self.cc.upgrade() {
                cc.record_shutdown(self.id);
            }
        })
    }
}

// ---------------------------------------------------------------------------
// The fake parent ClientConn.

/// Something the fake ClientConn saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CcEvent {
    NewSubConn(SubConnId, String),
    Shutdown(SubConnId),
    State(String),
    ResolveNow,
}

/// What [`FakeCc::assert_in_order_since`] looks for.
#[derive(Debug)]
pub enum Seen {
    /// A state whose description starts with this (e.g. `Connecting/queue`).
    State(&'static str),
    Shutdown(SubConnId),
    NewSubConnFor(String),
}

impl Seen {
    fn matches(&self, e: &CcEvent) -> bool {
        match (self, e) {
            (Seen::State(p), CcEvent::State(s)) => s.starts_with(p),
            (Seen::Shutdown(a), CcEvent::Shutdown(b)) => a == b,
            (Seen::NewSubConnFor(a), CcEvent::NewSubConn(_, b)) => a == b,
            _ => false,
        }
    }
}

#[derive(Default)]
pub struct FakeCc {
    next_id: Cell<u32>,
    /// Created SubConns not yet taken by `next_sub_conn`.
    new_sub_conns: RefCell<VecDeque<Rc<FakeSubConn>>>,
    /// Shutdown calls not yet taken by `next_shutdown`.
    shutdowns: RefCell<VecDeque<SubConnId>>,
    shutdown_counts: RefCell<BTreeMap<SubConnId, u32>>,
    /// The latest state not yet taken (grpc-go's buffer-1 channels that keep
    /// only the newest value).
    latest: RefCell<Option<BalancerState>>,
    resolve_now: Cell<u32>,
    log: RefCell<Vec<CcEvent>>,
    self_ref: RefCell<Weak<FakeCc>>,
}

impl FakeCc {
    pub fn new() -> Rc<Self> {
        let cc = Rc::new(FakeCc::default());
        *cc.self_ref.borrow_mut() = Rc::downgrade(&cc);
        cc
    }

    fn record_shutdown(&self, id: SubConnId) {
        self.shutdowns.borrow_mut().push_back(id);
        *self.shutdown_counts.borrow_mut().entry(id).or_default() += 1;
        self.log.borrow_mut().push(CcEvent::Shutdown(id));
    }

    /// A position in the event log, for [`FakeCc::states_since`].
    pub fn mark(&self) -> usize {
        self.log.borrow().len()
    }

    /// Checks that the events since `mark` contain `want` in this order
    /// (other events may come between them).
    pub fn assert_in_order_since(&self, mark: usize, want: &[Seen]) {
        let log = self.log.borrow();
        let mut it = log[mark..].iter();
        for w in want {
            assert!(
                it.any(|e| w.matches(e)),
                "{w:?} not found in order in {:?}",
                &log[mark..]
            );
        }
    }

    /// Every state pushed to the parent since `mark`, in order (the
    /// latest-only slot hides transient ones; this does not).
    pub fn states_since(&self, mark: usize) -> Vec<String> {
        self.log.borrow()[mark..]
            .iter()
            .filter_map(|e| match e {
                CcEvent::State(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn shutdown_count(&self, sc: &FakeSubConn) -> u32 {
        self.shutdown_counts
            .borrow()
            .get(&sc.id)
            .copied()
            .unwrap_or(0)
    }

    pub fn resolve_now_count(&self) -> u32 {
        self.resolve_now.get()
    }

    /// The next SubConn created (`<-NewSubConnCh`).
    pub async fn next_sub_conn(&self) -> Rc<FakeSubConn> {
        wait_for("a NewSubConn", || {
            self.new_sub_conns.borrow_mut().pop_front()
        })
        .await
    }

    /// The next SubConn created, which must be for `addr`.
    pub async fn next_sub_conn_for(&self, addr: &str) -> Rc<FakeSubConn> {
        let sc = self.next_sub_conn().await;
        assert_eq!(sc.addr(), addr, "NewSubConn for the wrong address");
        sc
    }

    /// The next Shutdown call (`<-ShutdownSubConnCh`).
    pub async fn next_shutdown(&self) -> SubConnId {
        wait_for("a SubConn Shutdown", || {
            self.shutdowns.borrow_mut().pop_front()
        })
        .await
    }

    /// Waits for the next `n` Shutdown calls and checks they are exactly
    /// `want` (as a multiset: Go's map iteration makes the order random).
    pub async fn expect_shutdowns(&self, want: &[&FakeSubConn]) {
        let mut got = Vec::new();
        for _ in want {
            got.push(self.next_shutdown().await);
        }
        got.sort();
        let mut want: Vec<SubConnId> = want.iter().map(|s| s.id).collect();
        want.sort();
        assert_eq!(got, want, "unexpected SubConn shutdowns");
    }

    /// Takes every Shutdown call not yet read.
    pub fn take_shutdowns(&self) -> Vec<SubConnId> {
        self.shutdowns.borrow_mut().drain(..).collect()
    }

    /// Watches for [`SHORT`] of virtual time: no SubConn is created and
    /// none is shut down.
    pub async fn expect_no_sub_conn_change(&self) {
        sim::sleep(SHORT).await;
        self.assert_no_sub_conn_change();
    }

    pub fn assert_no_sub_conn_change(&self) {
        let created: Vec<String> = self
            .new_sub_conns
            .borrow()
            .iter()
            .map(|s| format!("{}({})", s.id, s.addr()))
            .collect();
        assert!(created.is_empty(), "unexpected NewSubConn: {created:?}");
        let shut: Vec<SubConnId> = self.shutdowns.borrow().iter().copied().collect();
        assert!(shut.is_empty(), "unexpected Shutdown: {shut:?}");
    }

    /// Watches for [`SHORT`]: no SubConn is created.
    pub async fn expect_no_new_sub_conn(&self) {
        sim::sleep(SHORT).await;
        let created: Vec<String> = self
            .new_sub_conns
            .borrow()
            .iter()
            .map(|s| format!("{}({})", s.id, s.addr()))
            .collect();
        assert!(created.is_empty(), "unexpected NewSubConn: {created:?}");
    }

    /// Takes the latest state, waiting for one.
    pub async fn next_state(&self) -> BalancerState {
        wait_for("a state update", || self.latest.borrow_mut().take()).await
    }

    /// Drops any state not yet read.
    pub fn drain_state(&self) {
        self.latest.borrow_mut().take();
    }

    /// Watches for [`SHORT`]: the parent gets no new state.
    pub async fn expect_no_state(&self) {
        sim::sleep(SHORT).await;
        let s = self.latest.borrow_mut().take();
        assert!(s.is_none(), "unexpected state update: {s:?}");
    }

    /// `WaitForRoundRobinPicker`: reads states until one is READY with a
    /// picker that round-robins over exactly `want`.
    pub async fn wait_for_round_robin(&self, want: &[&FakeSubConn]) {
        let ids: Vec<SubConnId> = want.iter().map(|s| s.id).collect();
        let mut last = String::from("received no picker");
        let deadline = sim::now() + WAIT_TIMEOUT;
        loop {
            if let Some(s) = self.latest.borrow_mut().take() {
                if s.connectivity_state != ConnectivityState::Ready {
                    last = format!("state {:?} instead of READY", s);
                } else {
                    match is_round_robin(&ids, s.picker.as_ref()) {
                        Ok(()) => return,
                        Err(e) => last = e,
                    }
                }
            }
            assert!(
                sim::now() < deadline,
                "timed out waiting for a round-robin picker over {ids:?}; last: {last}"
            );
            sim::sleep(MS).await;
        }
    }

    /// `WaitForPickerWithErr`: reads pickers until one fails with `want`.
    pub async fn wait_for_picker_with_err(&self, want: &PickError) {
        let mut last = String::from("received no picker");
        let deadline = sim::now() + WAIT_TIMEOUT;
        loop {
            if let Some(s) = self.latest.borrow_mut().take() {
                match s.picker.pick(&PickInfo::default()) {
                    Err(e) if &e == want => return,
                    Err(e) => last = format!("{s:?} failed with {e:?}"),
                    Ok(sc) => last = format!("{s:?} picked {}", sc.id()),
                }
            }
            assert!(
                sim::now() < deadline,
                "timed out waiting for a picker failing with {want:?}; last: {last}"
            );
            sim::sleep(MS).await;
        }
    }
}

/// A picker that fails with `text`.
pub fn err(text: &str) -> PickError {
    PickError::Failed(GrpcError::new(text))
}

/// grpc-go's `IsRoundRobin`: the first `want.len()` picks are `want` as a
/// multiset, and the next two rounds repeat them in the same order.
pub fn is_round_robin(want: &[SubConnId], picker: &dyn Picker) -> Result<(), String> {
    let pick = || {
        picker
            .pick(&PickInfo::default())
            .map(|sc| sc.id())
            .map_err(|e| format!("{} failed with {e:?}", picker.describe()))
    };
    let mut remaining: BTreeMap<SubConnId, i32> = BTreeMap::new();
    for w in want {
        *remaining.entry(*w).or_default() += 1;
    }
    let mut first = Vec::new();
    for _ in want {
        let got = pick()?;
        first.push(got);
        let left = remaining.entry(got).or_default();
        *left -= 1;
        if *left < 0 {
            return Err(format!("not round robin: want {want:?}, got {first:?}"));
        }
    }
    for _ in 0..2 {
        for w in &first {
            let g = pick()?;
            if g != *w {
                return Err(format!("not round robin: first round {first:?}, then {g}"));
            }
        }
    }
    Ok(())
}

impl ClientConn for FakeCc {
    fn new_sub_conn(
        &self,
        addrs: Vec<Address>,
        opts: NewSubConnOptions,
    ) -> BoxFut<'_, Result<Rc<dyn SubConn>, GrpcError>> {
        Box::pin(async move {
            let id = SubConnId(self.next_id.get());
            self.next_id.set(id.0 + 1);
            let sc = Rc::new(FakeSubConn {
                id,
                addrs,
                listener: opts.state_listener,
                health_listener: RefCell::new(None),
                connect_called: Event::new(format!("testSubConn.connectCalled[{id}]")),
                connects: Cell::new(0),
                cc: self.self_ref.borrow().clone(),
            });
            self.log
                .borrow_mut()
                .push(CcEvent::NewSubConn(id, sc.addr().to_string()));
            self.new_sub_conns.borrow_mut().push_back(sc.clone());
            Ok(sc as Rc<dyn SubConn>)
        })
    }

    fn update_state(&self, state: BalancerState) -> BoxFut<'_, ()> {
        Box::pin(async move {
            self.log
                .borrow_mut()
                .push(CcEvent::State(format!("{state:?}")));
            *self.latest.borrow_mut() = Some(state);
        })
    }

    fn resolve_now(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            self.resolve_now.set(self.resolve_now.get() + 1);
            self.log.borrow_mut().push(CcEvent::ResolveNow);
        })
    }
}

// ---------------------------------------------------------------------------
// Addresses and configs.

/// Backend address i: `"i.i.i.i:i"`.
pub fn addr(i: u32) -> String {
    format!("{i}.{i}.{i}.{i}:{i}")
}

/// A priority config: `children` as (name, policy, backend indices); the
/// priorities are the given names in order.
pub fn priority_config(children: &[(&str, &str, &[u32])], priorities: &[&str]) -> ClientConnState {
    priority_config_ignoring(children, priorities, &[])
}

/// Like [`priority_config`], with `ignoreReresolutionRequests` set on the
/// children named in `ignoring`.
pub fn priority_config_ignoring(
    children: &[(&str, &str, &[u32])],
    priorities: &[&str],
    ignoring: &[&str],
) -> ClientConnState {
    let mut endpoints = Vec::new();
    let mut lb = LbConfig::default();
    for (name, policy, backends) in children {
        let mut child = Child::new(policy);
        child.ignore_reresolution_requests = ignoring.contains(name);
        lb.children.insert(name.to_string(), child);
        for b in *backends {
            endpoints.push(Endpoint::new(&addr(*b)).in_child(name));
        }
    }
    lb.priorities = priorities.iter().map(|p| p.to_string()).collect();
    ClientConnState {
        resolver_state: ResolverState {
            endpoints,
            ..Default::default()
        },
        balancer_config: Some(lb.into_any()),
    }
}

/// A ClientConnState for a leaf: endpoints for the given backends.
pub fn endpoints_state(backends: &[u32]) -> ClientConnState {
    ClientConnState {
        resolver_state: ResolverState {
            endpoints: backends.iter().map(|b| Endpoint::new(&addr(*b))).collect(),
            ..Default::default()
        },
        balancer_config: None,
    }
}

// ---------------------------------------------------------------------------
// The environment of one run.

/// What a test builds its policy with.
pub struct Env {
    pub cc: Rc<FakeCc>,
    pub lifecycle: Rc<Lifecycle>,
    pub opts: BuildOptions,
}

impl Env {
    /// grpc-go's priority test package: cache timeout 0, init timeout 10 s.
    pub fn new(variant: Variant, registry: Registry) -> Env {
        Env::with_timeouts(variant, registry, 0, 10 * SEC)
    }

    pub fn with_timeouts(
        variant: Variant,
        registry: Registry,
        sub_balancer_close_timeout: u64,
        priority_init_timeout: u64,
    ) -> Env {
        let lifecycle = Rc::new(Lifecycle::default());
        let opts = BuildOptions {
            logger: Default::default(),
            variant,
            registry: Rc::new(registry),
            sub_balancer_close_timeout,
            priority_init_timeout,
            lifecycle: lifecycle.clone(),
        };
        Env {
            cc: FakeCc::new(),
            lifecycle,
            opts,
        }
    }

    pub async fn build_priority(&self) -> Rc<PriorityBalancer> {
        PriorityBalancer::build(self.cc.clone() as Rc<dyn ClientConn>, self.opts.clone()).await
    }

    /// The child policies (balancergroup entries) built and not yet closed,
    /// by id, sorted.
    pub fn live_children(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .lifecycle
            .unclosed()
            .into_iter()
            .filter_map(|d| {
                d.strip_prefix("child policy ")
                    .and_then(|rest| rest.split(' ').next())
                    .map(str::to_string)
            })
            .collect();
        v.sort();
        v
    }

    /// Waits until the children built and not closed are exactly `want`
    /// (a child is closed after its SubConns are shut down, so the test may
    /// see those first).
    pub async fn expect_live_children(&self, want: &[&str]) {
        let deadline = sim::now() + WAIT_TIMEOUT;
        loop {
            let live = self.live_children();
            if live == want {
                return;
            }
            assert!(
                sim::now() < deadline,
                "children built and not closed: {live:?}, want {want:?}"
            );
            sim::sleep(MS).await;
        }
    }

    /// Closes the policy (the Go tests' deferred `pb.Close()`) and checks
    /// every child it built was closed.
    pub async fn close_priority(&self, pb: &Rc<PriorityBalancer>) {
        pb.close().await;
        assert_eq!(
            self.lifecycle.unclosed(),
            Vec::<String>::new(),
            "children left open after Close"
        );
    }
}

// ---------------------------------------------------------------------------
// Stub policies (grpc-go's `internal/balancer/stub`).

/// What a stub policy holds: its ClientConn, its build options, and data of
/// the test's choosing.
pub struct StubData {
    pub cc: Rc<dyn ClientConn>,
    pub opts: BuildOptions,
    pub data: RefCell<Option<Rc<dyn Any>>>,
}

type StubInit = Rc<dyn Fn(&Rc<StubData>)>;
type StubFn<A, R> = Rc<dyn Fn(Rc<StubData>, A) -> BoxFut<'static, R>>;

/// The functions of a stub policy; absent ones do nothing.
#[derive(Clone, Default)]
pub struct StubFuncs {
    pub init: Option<StubInit>,
    pub update_client_conn_state: Option<StubFn<ClientConnState, Result<(), GrpcError>>>,
    pub resolver_error: Option<StubFn<GrpcError, ()>>,
    pub exit_idle: Option<StubFn<(), ()>>,
    pub close: Option<StubFn<(), ()>>,
}

pub struct StubBuilder {
    pub name: String,
    pub funcs: StubFuncs,
}

impl StubBuilder {
    pub fn new(name: &str, funcs: StubFuncs) -> Rc<Self> {
        Rc::new(StubBuilder {
            name: name.to_string(),
            funcs,
        })
    }
}

struct StubBalancer {
    data: Rc<StubData>,
    funcs: StubFuncs,
}

impl Builder for StubBuilder {
    fn name(&self) -> &str {
        &self.name
    }

    fn build(
        &self,
        cc: Rc<dyn ClientConn>,
        opts: BuildOptions,
    ) -> BoxFut<'static, Rc<dyn Balancer>> {
        let funcs = self.funcs.clone();
        Box::pin(async move {
            let data = Rc::new(StubData {
                cc,
                opts,
                data: RefCell::new(None),
            });
            if let Some(init) = &funcs.init {
                init(&data);
            }
            Rc::new(StubBalancer { data, funcs }) as Rc<dyn Balancer>
        })
    }
}

impl Balancer for StubBalancer {
    fn update_client_conn_state(&self, s: ClientConnState) -> BoxFut<'_, Result<(), GrpcError>> {
        match &self.funcs.update_client_conn_state {
            Some(f) => f(self.data.clone(), s),
            None => Box::pin(async { Ok(()) }),
        }
    }

    fn resolver_error(&self, e: GrpcError) -> BoxFut<'_, ()> {
        match &self.funcs.resolver_error {
            Some(f) => f(self.data.clone(), e),
            None => Box::pin(async {}),
        }
    }

    fn exit_idle(&self) -> BoxFut<'_, ()> {
        match &self.funcs.exit_idle {
            Some(f) => f(self.data.clone(), ()),
            None => Box::pin(async {}),
        }
    }

    fn close(&self) -> BoxFut<'_, ()> {
        match &self.funcs.close {
            Some(f) => f(self.data.clone(), ()),
            None => Box::pin(async {}),
        }
    }
}

/// A stub whose calls are counted, by kind, in a shared log.
pub fn counting_stub(name: &str, calls: Rc<RefCell<Vec<String>>>) -> Rc<StubBuilder> {
    let record = |calls: &Rc<RefCell<Vec<String>>>, what: &'static str| {
        let calls = calls.clone();
        move |_: Rc<StubData>| calls.borrow_mut().push(what.to_string())
    };
    let (u, r, e, c) = (
        record(&calls, "update_client_conn_state"),
        record(&calls, "resolver_error"),
        record(&calls, "exit_idle"),
        record(&calls, "close"),
    );
    StubBuilder::new(
        name,
        StubFuncs {
            update_client_conn_state: Some(Rc::new(move |d, _| {
                u(d);
                Box::pin(async { Ok(()) })
            })),
            resolver_error: Some(Rc::new(move |d, _| {
                r(d);
                Box::pin(async {})
            })),
            exit_idle: Some(Rc::new(move |d, _| {
                e(d);
                Box::pin(async {})
            })),
            close: Some(Rc::new(move |d, _| {
                c(d);
                Box::pin(async {})
            })),
            ..Default::default()
        },
    )
}

/// Registers the leaf policies, `pick_first` and `round_robin`.
pub fn register_leaves(reg: &mut Registry) {
    reg.register(Rc::new(PickFirstBuilder));
    reg.register(Rc::new(RoundRobinBuilder::new()));
}

/// A registered policy under another name (grpc-go's `another-round-robin`
/// and `noopBalancerBuilderWrapper`): builds exactly what `inner` builds.
pub struct RenamedBuilder {
    pub name: String,
    pub inner: Rc<dyn Builder>,
}

impl RenamedBuilder {
    pub fn new(name: &str, inner: Rc<dyn Builder>) -> Rc<Self> {
        Rc::new(RenamedBuilder {
            name: name.to_string(),
            inner,
        })
    }
}

impl Builder for RenamedBuilder {
    fn name(&self) -> &str {
        &self.name
    }

    fn build(
        &self,
        cc: Rc<dyn ClientConn>,
        opts: BuildOptions,
    ) -> BoxFut<'static, Rc<dyn Balancer>> {
        self.inner.build(cc, opts)
    }
}
