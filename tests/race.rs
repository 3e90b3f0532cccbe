//! The race of grpc-go issue #7783, deterministically (reference §4.3): every
//! interleaving of a balancergroup `Remove` with the group's `Close`, and of
//! the priority worker's demotion of a lower priority with the priority
//! policy's `Close`, explored exhaustively; which ones leak, per variant.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::{Rc, Weak};

use lbsim::grpc::balancergroup::{BalancerGroup, BalancerStateAggregator};
use lbsim::grpc::priority::{Child, LbConfig, PriorityBalancer};
use lbsim::grpc::{
    Address, Balancer, BalancerState, BoxFut, BuildOptions, Builder, ClientConn, ClientConnState,
    ConnectivityState, Endpoint, ErrPicker, GrpcError, Lifecycle, NewSubConnOptions, PickError,
    Registry, ResolverState, SubConn, Variant,
};
use lbsim::sim::strategy::{Dfs, RandomStrategy, Reduction};
use lbsim::sim::{self, Event, Outcome, RunConfig, RunReport, Sim, Strategy};

const CACHE_TIMEOUT: u64 = 15 * 60 * sim::SEC;

/// A child policy with a persistent goroutine, like outlier_detection's
/// `run()`: it lives until the policy is closed. A child that is never
/// closed therefore shows up as a leaked task.
struct StubPersistent {
    cc: Rc<dyn ClientConn>,
    name: RefCell<String>,
    closed: Rc<Event>,
    done: Rc<Event>,
}

impl Balancer for StubPersistent {
    fn update_client_conn_state(&self, s: ClientConnState) -> BoxFut<'_, Result<(), GrpcError>> {
        Box::pin(async move {
            if let Some(name) = s.balancer_config.and_then(|c| c.downcast::<String>().ok()) {
                *self.name.borrow_mut() = (*name).clone();
            }
            Ok(())
        })
    }
    fn resolver_error(&self, _: GrpcError) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }
    fn exit_idle(&self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }
    fn close(&self) -> BoxFut<'_, ()> {
        Box::pin(async move {
            self.closed.fire().await;
            self.done.wait().await;
        })
    }
}

/// Builds [`StubPersistent`] children and keeps them so a test can drive them.
#[derive(Default, Clone)]
struct StubBuilder {
    built: Rc<RefCell<Vec<Rc<StubPersistent>>>>,
}

impl StubBuilder {
    /// Waits (in virtual time) until a child named `name` has its config.
    async fn wait_for(&self, name: &str) -> Rc<StubPersistent> {
        loop {
            let found = self
                .built
                .borrow()
                .iter()
                .rev()
                .find(|s| *s.name.borrow() == name)
                .cloned();
            if let Some(s) = found {
                return s;
            }
            sim::yield_now().await;
        }
    }

    fn by_name(&self, name: &str) -> Rc<StubPersistent> {
        self.built
            .borrow()
            .iter()
            .rev()
            .find(|s| *s.name.borrow() == name)
            .cloned()
            .unwrap_or_else(|| panic!("no stub child named {name}"))
    }
}

impl Builder for StubBuilder {
    fn name(&self) -> &str {
        "stub-persistent"
    }
    fn build(&self, cc: Rc<dyn ClientConn>, _: BuildOptions) -> BoxFut<'static, Rc<dyn Balancer>> {
        let me = self.clone();
        Box::pin(async move {
            let closed = Rc::new(Event::new("stub.closed"));
            let done = Rc::new(Event::new("stub.done"));
            let (c, d) = (closed.clone(), done.clone());
            let n = me.built.borrow().len();
            sim::go(&format!("stub.run#{n}"), async move {
                c.wait().await;
                d.fire().await;
            })
            .await;
            let b = Rc::new(StubPersistent {
                cc,
                name: RefCell::new(String::new()),
                closed,
                done,
            });
            me.built.borrow_mut().push(b.clone());
            b as Rc<dyn Balancer>
        })
    }
}

/// The parent ClientConn: records the pickers pushed up.
#[derive(Default)]
struct RecordingCc {
    states: RefCell<Vec<ConnectivityState>>,
}

impl ClientConn for RecordingCc {
    fn new_sub_conn(
        &self,
        _: Vec<Address>,
        _: NewSubConnOptions,
    ) -> BoxFut<'_, Result<Rc<dyn SubConn>, GrpcError>> {
        Box::pin(async { Err(GrpcError::new("stub children create no SubConns")) })
    }
    fn update_state(&self, state: BalancerState) -> BoxFut<'_, ()> {
        self.states.borrow_mut().push(state.connectivity_state);
        Box::pin(async {})
    }
    fn resolve_now(&self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }
}

struct NoAggregator;

impl BalancerStateAggregator for NoAggregator {
    fn update_state(&self, _: &str, _: BalancerState) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }
}

fn options(variant: Variant, stubs: &Rc<StubBuilder>) -> BuildOptions {
    let mut registry = Registry::new();
    registry.register(Rc::new((**stubs).clone()));
    BuildOptions {
        logger: Default::default(),
        variant,
        registry: Rc::new(registry),
        sub_balancer_close_timeout: CACHE_TIMEOUT,
        priority_init_timeout: 10 * sim::SEC,
        lifecycle: Rc::new(Lifecycle::default()),
    }
}

/// What one explored schedule did.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Observed {
    /// A task was alive at the end (the stub's goroutine of a child never closed).
    leaked: bool,
    /// Children built and never closed.
    unclosed: Vec<String>,
    /// Remove put the child into the cache.
    cached: bool,
    /// ... after Close had cleared the cache.
    cached_after_clear: bool,
}

fn observe(report: &RunReport, lifecycle: &Lifecycle) -> Observed {
    assert!(
        matches!(report.outcome, Outcome::Ok | Outcome::Leak),
        "{}",
        report.describe()
    );
    let trace = report.trace.as_ref().expect("trace on");
    let note_at = |prefix: &str| {
        trace
            .events
            .iter()
            .position(|e| e.note.as_deref().is_some_and(|n| n.starts_with(prefix)))
    };
    let added = note_at("timeoutCache: added");
    let cleared = note_at("timeoutCache: cleared");
    Observed {
        leaked: report.outcome == Outcome::Leak,
        unclosed: lifecycle.unclosed(),
        cached: added.is_some(),
        cached_after_clear: matches!((added, cleared), (Some(a), Some(c)) if a > c),
    }
}

fn traced(seed: u64) -> RunConfig {
    let mut cfg = RunConfig::new(seed);
    cfg.trace = true;
    // A 15-minute cache timer can not overtake goroutines that are running.
    cfg.max_early_fire = sim::SEC;
    cfg
}

/// Runs every schedule of `Remove(p1)` racing `Close` on a group holding p0
/// and p1, and returns what each did.
fn explore_group_remove_vs_close(variant: Variant) -> Vec<Observed> {
    explore_group(variant, Dfs::new(Some(1)))
}

fn explore_group(variant: Variant, dfs: Dfs) -> Vec<Observed> {
    // One preemption places Remove anywhere inside Close, or Close anywhere
    // inside Remove: the preempted task resumes for free when the other
    // finishes or blocks on a lock it holds.
    let mut dfs = Sim::new(Box::new(dfs));
    let mut seen = Vec::new();
    while !dfs.strategy().is_complete() {
        let stubs = Rc::new(StubBuilder::default());
        let opts = options(variant, &stubs);
        let lifecycle = opts.lifecycle.clone();
        let report = dfs.run(&traced(0), async move {
            let agg: Rc<dyn BalancerStateAggregator> = Rc::new(NoAggregator);
            let cc: Rc<dyn ClientConn> = Rc::new(RecordingCc::default());
            let bg = BalancerGroup::new(cc.clone(), opts, Rc::downgrade(&agg), CACHE_TIMEOUT);
            bg.start().await;
            for id in ["p0", "p1"] {
                bg.add_with_client_conn(id, "stub-persistent", cc.clone())
                    .await
                    .unwrap();
            }
            let finished = Rc::new(sim::Unbounded::<()>::new("finished"));
            let (b, f) = (bg.clone(), finished.clone());
            sim::spawn("remover", async move {
                b.remove("p1").await;
                f.put(()).await.unwrap();
            });
            let (b, f) = (bg.clone(), finished.clone());
            sim::spawn("closer", async move {
                b.close().await;
                f.put(()).await.unwrap();
            });
            finished.get().await;
            finished.get().await;
            drop(agg);
        });
        if dfs.strategy().redundant() {
            // A reordering of schedules already explored.
            continue;
        }
        seen.push(observe(&report, &lifecycle));
        assert!(seen.len() < 200_000, "search did not end");
    }
    eprintln!("{variant}: {} schedules", seen.len());
    seen
}

#[test]
fn group_remove_racing_close_leaks_only_in_the_window_before_the_fix() {
    let seen = explore_group_remove_vs_close(Variant::Pre8095);
    let leaking: Vec<_> = seen.iter().filter(|o| o.leaked).collect();
    assert!(
        !leaking.is_empty(),
        "the leaking interleaving must be reachable"
    );
    for o in &seen {
        // The leak happens exactly when Remove caches p1 after Close cleared
        // the cache (and, holding the outgoing lock, before Close's final loop).
        assert_eq!(o.leaked, o.cached_after_clear, "{o:?}");
        if o.leaked {
            assert_eq!(
                o.unclosed,
                vec!["child policy p1 (stub-persistent)".to_string()]
            );
        } else {
            assert!(o.unclosed.is_empty(), "{o:?}");
        }
    }
    // Every other placement was explored too.
    assert!(seen.iter().any(|o| o.cached && !o.cached_after_clear));
    assert!(seen.iter().any(|o| !o.cached));
}

#[test]
fn group_remove_racing_close_never_leaks_after_the_fix() {
    for variant in [Variant::Pr8095, Variant::A115] {
        let seen = explore_group_remove_vs_close(variant);
        for o in &seen {
            assert!(!o.leaked && o.unclosed.is_empty(), "{variant}: {o:?}");
            assert!(
                !o.cached_after_clear,
                "{variant}: nothing enters the cache after Clear"
            );
        }
        assert!(
            seen.iter().any(|o| o.cached),
            "{variant}: the cached-then-cleared path is covered"
        );
        assert!(
            seen.iter().any(|o| !o.cached),
            "{variant}: the path where Close goes first is covered"
        );
    }
}

#[test]
fn reductions_keep_every_outcome_of_the_group_race() {
    // A reduction skips reorderings of commuting steps; what the schedules
    // can end in (leak or not, what stays unclosed, whether and when the
    // child was cached) must be the same as in the plain bounded search.
    for variant in [Variant::Pre8095, Variant::Pr8095] {
        let plain = explore_group(variant, Dfs::without_pruning(Some(1)));
        let kinds = |v: &[Observed]| v.iter().map(|o| format!("{o:?}")).collect::<BTreeSet<_>>();
        for reduction in [Reduction::SleepSets, Reduction::Dpor] {
            let reduced = explore_group(variant, Dfs::with_reduction(Some(1), reduction));
            eprintln!(
                "{variant} {reduction:?}: {} vs {} plain schedules",
                reduced.len(),
                plain.len()
            );
            assert_eq!(kinds(&reduced), kinds(&plain), "{variant} {reduction:?}");
            assert!(
                reduced.len() < plain.len(),
                "{variant} {reduction:?}: {} vs {} plain schedules",
                reduced.len(),
                plain.len()
            );
        }
    }
}

#[test]
fn before_pr_4308_a_child_cached_at_close_always_leaks() {
    let seen = explore_group_remove_vs_close(Variant::Pre4308);
    assert!(seen.iter().any(|o| o.cached));
    for o in &seen {
        assert_eq!(o.leaked, o.cached, "{o:?}");
    }
}

/// A priority policy over stub children p0 and p1 with p1 in use (p0 failed);
/// then p0 reports READY (the worker demotes and removes p1) while `Close`
/// runs on another task. Returns what happened.
async fn priority_demote_vs_close(stubs: Rc<StubBuilder>, opts: BuildOptions) {
    let cc = Rc::new(RecordingCc::default());
    let pb = PriorityBalancer::build(cc.clone(), opts).await;
    let mut config = LbConfig::default();
    for name in ["p0", "p1"] {
        let mut child = Child::new("stub-persistent");
        child.config.config = Some(Rc::new(name.to_string()));
        config.children.insert(name.to_string(), child);
        config.priorities.push(name.to_string());
    }
    pb.update_client_conn_state(ClientConnState {
        resolver_state: ResolverState {
            endpoints: vec![
                Endpoint::new("10.0.0.1:80").in_child("p0"),
                Endpoint::new("10.0.0.2:80").in_child("p1"),
            ],
            ..Default::default()
        },
        balancer_config: Some(config.into_any()),
    })
    .await
    .unwrap();
    let state = |s| BalancerState {
        connectivity_state: s,
        picker: Rc::new(ErrPicker(PickError::NoSubConnAvailable)),
    };
    // p0 fails: failover to p1, which becomes READY.
    stubs
        .wait_for("p0")
        .await
        .cc
        .update_state(state(ConnectivityState::TransientFailure))
        .await;
    stubs
        .wait_for("p1")
        .await
        .cc
        .update_state(state(ConnectivityState::Ready))
        .await;
    while cc
        .states
        .borrow()
        .last()
        .is_none_or(|s| *s != ConnectivityState::Ready)
    {
        sim::yield_now().await;
    }
    // p0 comes back while the channel closes.
    let p0 = stubs.by_name("p0");
    let finished = Rc::new(sim::Unbounded::<()>::new("finished"));
    let f = finished.clone();
    sim::spawn("p0.update", async move {
        p0.cc.update_state(state(ConnectivityState::Ready)).await;
        f.put(()).await.unwrap();
    });
    let (b, f) = (pb.clone(), finished.clone());
    sim::spawn("cluster_resolver.run", async move {
        b.close().await;
        f.put(()).await.unwrap();
    });
    finished.get().await;
    finished.get().await;
}

fn sample_priority_close(variant: Variant, runs: u64) -> BTreeSet<(bool, Vec<String>)> {
    let mut sim = Sim::new(Box::new(RandomStrategy::new()) as Box<dyn Strategy>);
    let mut outcomes = BTreeSet::new();
    for seed in 0..runs {
        let stubs = Rc::new(StubBuilder::default());
        let opts = options(variant, &stubs);
        let lifecycle = opts.lifecycle.clone();
        let report = sim.run(&traced(seed), priority_demote_vs_close(stubs, opts));
        let o = observe(&report, &lifecycle);
        assert_eq!(
            o.leaked,
            !o.unclosed.is_empty(),
            "{variant} seed {seed}: {o:?}"
        );
        if o.leaked {
            assert!(
                o.cached_after_clear,
                "{variant} seed {seed}: leak outside the window"
            );
            assert!(
                report.alive.iter().all(|t| t.name.starts_with("stub.run")),
                "{}",
                report.describe()
            );
        }
        outcomes.insert((o.leaked, o.unclosed));
    }
    outcomes
}

#[test]
fn priority_close_racing_the_worker_leaks_only_before_the_fix() {
    let runs = 3_000;
    let buggy = sample_priority_close(Variant::Pre8095, runs);
    assert!(
        buggy.iter().any(|(leaked, _)| *leaked),
        "pre-8095 must leak in some of {runs} random schedules: {buggy:?}"
    );
    for variant in [Variant::Pr8095, Variant::PriorityLock, Variant::A115] {
        let fixed = sample_priority_close(variant, runs);
        assert_eq!(
            fixed,
            BTreeSet::from([(false, vec![])]),
            "{variant} must never leak"
        );
    }
}

#[test]
fn close_is_terminal_after_the_fix() {
    let mut sim = Sim::new(Box::new(RandomStrategy::new()));
    for seed in 0..50 {
        let stubs = Rc::new(StubBuilder::default());
        let opts = options(Variant::Pr8095, &stubs);
        let lifecycle = opts.lifecycle.clone();
        let built_after = Rc::new(Cell::new(0));
        let b2 = built_after.clone();
        let report = sim.run(&traced(seed), async move {
            let agg: Rc<dyn BalancerStateAggregator> = Rc::new(NoAggregator);
            let weak: Weak<dyn BalancerStateAggregator> = Rc::downgrade(&agg);
            let cc: Rc<dyn ClientConn> = Rc::new(RecordingCc::default());
            let bg = BalancerGroup::new(cc.clone(), opts, weak, CACHE_TIMEOUT);
            bg.add_with_client_conn("p0", "stub-persistent", cc.clone())
                .await
                .unwrap();
            bg.remove("p0").await;
            bg.add_with_client_conn("p1", "stub-persistent", cc.clone())
                .await
                .unwrap();
            bg.close().await;
            let before = stubs.built.borrow().len();
            let err = bg
                .add_with_client_conn("p2", "stub-persistent", cc.clone())
                .await
                .unwrap_err();
            assert_eq!(err.0.as_ref(), "balancergroup: already closed");
            bg.remove("p1").await;
            assert!(
                bg.update_client_conn_state("p1", ClientConnState::default())
                    .await
                    .is_ok()
            );
            bg.resolver_error(GrpcError::new("x")).await;
            bg.exit_idle().await;
            bg.exit_idle_one("p1").await;
            b2.set(stubs.built.borrow().len() - before);
            assert_eq!(bg.cached_children(), 0);
            assert!(bg.child_ids().is_empty());
            drop(agg);
        });
        assert_eq!(report.outcome, Outcome::Ok, "{}", report.describe());
        assert_eq!(built_after.get(), 0, "nothing is built after close");
        assert!(lifecycle.unclosed().is_empty());
        assert!(report.armed_timers.is_empty(), "{:?}", report.armed_timers);
    }
}

/// A priority policy whose only child's init timer can fire at any point
/// around `Close`, after which the test drops the policy: the timer's
/// callback must find the child stopped and return, as in Go, where its
/// closure holds the balancer.
#[test]
fn an_init_timer_firing_around_close_is_harmless() {
    for variant in [Variant::Pre8095, Variant::Pr8095, Variant::A115] {
        let mut dfs = Sim::new(Box::new(Dfs::new(Some(2))));
        let mut runs = 0;
        let mut fired_before_stop = 0;
        while !dfs.strategy().is_complete() {
            let stubs = Rc::new(StubBuilder::default());
            let mut opts = options(variant, &stubs);
            opts.priority_init_timeout = sim::MS;
            let report = dfs.run(&traced(0), async move {
                let cc = Rc::new(RecordingCc::default());
                let pb = PriorityBalancer::build(cc, opts).await;
                let mut config = LbConfig::default();
                let mut child = Child::new("stub-persistent");
                child.config.config = Some(Rc::new("p0".to_string()));
                config.children.insert("p0".into(), child);
                config.priorities.push("p0".into());
                pb.update_client_conn_state(ClientConnState {
                    resolver_state: ResolverState::default(),
                    balancer_config: Some(config.into_any()),
                })
                .await
                .unwrap();
                pb.close().await;
                drop(pb);
            });
            if dfs.strategy().redundant() {
                continue;
            }
            runs += 1;
            assert!(
                matches!(report.outcome, Outcome::Ok | Outcome::Leak),
                "{variant}: {}",
                report.describe()
            );
            let trace = report.trace.as_ref().unwrap();
            let fire = trace.events.iter().position(|e| {
                e.op == lbsim::sim::Op::TimerFire
                    && trace.objects[e.obj.0 as usize].1.contains("initTimer[p0]")
            });
            let stop = trace.events.iter().position(|e| {
                e.op == lbsim::sim::Op::TimerStop
                    && trace.objects[e.obj.0 as usize].1.contains("initTimer[p0]")
            });
            // The timer fired before Close stopped it: its callback runs
            // after (or while) Close finishes and the policy is dropped.
            if let (Some(fire), Some(stop)) = (fire, stop)
                && fire < stop
            {
                fired_before_stop += 1;
            }
            assert!(runs < 100_000, "search did not end");
        }
        assert!(
            fired_before_stop > 0,
            "{variant}: no schedule fired the init timer before Close ({runs} schedules)"
        );
    }
}
