//! The tree below and above the priority policy: the serializer, backends,
//! SubConns, pick_first/round_robin, outlier_detection and the channel's
//! close path, driven through the kernel with a stub priority policy.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use lbsim::grpc::balancer::{
    Address, Balancer, BalancerState, BoxFut, BuildOptions, Builder, ClientConn as ClientConnApi,
    ClientConnState, GrpcError, Lifecycle, NewSubConnOptions, Registry, ResolverState, SubConn,
    group_endpoints,
};
use lbsim::grpc::clientconn::{ChannelOptions, ClientConn, NameGenerator, build_priority_config};
use lbsim::grpc::connectivity::ConnectivityState;
use lbsim::grpc::priority::{self, LbConfig};
use lbsim::grpc::serializer::CallbackSerializer;
use lbsim::grpc::subconn::ConnectParams;
use lbsim::grpc::{Variant, tree};
use lbsim::net::{Backend, BackendConfig, Network};
use lbsim::sim::strategy::RandomStrategy;
use lbsim::sim::{self, Event, MS, Mutex, Outcome, RunConfig, Sim, Strategy, TaskId};

// ------------------------------------------------------------- stub priority

/// What the stub priority saw, for assertions after the run.
#[derive(Default)]
struct Observed {
    built_on: Cell<Option<TaskId>>,
    updated_on: RefCell<Vec<TaskId>>,
    closed_on: Cell<Option<TaskId>>,
    /// States of child 0 as reported to the stub, in order.
    child0_states: RefCell<Vec<ConnectivityState>>,
}

/// A stand-in for `priority_experimental`: builds every child at once and
/// forwards the state of the highest-priority READY child (else child 0's).
struct StubPriority {
    cc: Rc<dyn ClientConnApi>,
    opts: BuildOptions,
    mu: Mutex,
    children: RefCell<Vec<(String, Rc<dyn Balancer>)>>,
    states: RefCell<Vec<Option<BalancerState>>>,
    observed: Rc<Observed>,
    me: Weak<StubPriority>,
}

struct StubChildCc {
    parent: Weak<StubPriority>,
    index: usize,
}

impl ClientConnApi for StubChildCc {
    fn new_sub_conn(
        &self,
        addrs: Vec<Address>,
        opts: NewSubConnOptions,
    ) -> BoxFut<'_, Result<Rc<dyn SubConn>, GrpcError>> {
        Box::pin(async move {
            let p = self.parent.upgrade().expect("stub alive");
            p.cc.new_sub_conn(addrs, opts).await
        })
    }

    fn update_state(&self, state: BalancerState) -> BoxFut<'_, ()> {
        Box::pin(async move {
            let Some(p) = self.parent.upgrade() else {
                return;
            };
            let g = p.mu.lock().await;
            if self.index == 0 {
                p.observed
                    .child0_states
                    .borrow_mut()
                    .push(state.connectivity_state);
            }
            p.states.borrow_mut()[self.index] = Some(state);
            let chosen = {
                let states = p.states.borrow();
                states
                    .iter()
                    .flatten()
                    .find(|s| s.connectivity_state == ConnectivityState::Ready)
                    .or(states[0].as_ref())
                    .cloned()
            };
            if let Some(s) = chosen {
                p.cc.update_state(s).await;
            }
            g.unlock().await;
        })
    }

    fn resolve_now(&self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }
}

impl Balancer for StubPriority {
    fn update_client_conn_state(&self, s: ClientConnState) -> BoxFut<'_, Result<(), GrpcError>> {
        Box::pin(async move {
            self.observed
                .updated_on
                .borrow_mut()
                .push(sim::current_task());
            let cfg = s
                .balancer_config
                .expect("config")
                .downcast::<LbConfig>()
                .unwrap_or_else(|_| panic!("priority config"));
            let grouped = group_endpoints(&s.resolver_state.endpoints);
            if self.children.borrow().is_empty() {
                for (i, name) in cfg.priorities.iter().enumerate() {
                    let child = &cfg.children[name];
                    let builder = self
                        .opts
                        .registry
                        .get(&child.config.name)
                        .expect("child registered");
                    let cc: Rc<dyn ClientConnApi> = Rc::new(StubChildCc {
                        parent: self.me.clone(),
                        index: i,
                    });
                    let b = builder.build(cc, self.opts.clone()).await;
                    self.states.borrow_mut().push(None);
                    self.children.borrow_mut().push((name.clone(), b));
                }
            }
            let children = self.children.borrow().clone();
            for (name, b) in children {
                let child = &cfg.children[&name];
                let endpoints = grouped.get(name.as_str()).cloned().unwrap_or_default();
                let _ = b
                    .update_client_conn_state(ClientConnState {
                        resolver_state: ResolverState {
                            endpoints,
                            ..Default::default()
                        },
                        balancer_config: child.config.config.clone(),
                    })
                    .await;
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
            self.observed.closed_on.set(Some(sim::current_task()));
            let children = std::mem::take(&mut *self.children.borrow_mut());
            for (_, b) in children {
                b.close().await;
            }
        })
    }
}

struct StubPriorityBuilder(Rc<Observed>);

impl Builder for StubPriorityBuilder {
    fn name(&self) -> &str {
        priority::NAME
    }
    fn build(
        &self,
        cc: Rc<dyn ClientConnApi>,
        opts: BuildOptions,
    ) -> BoxFut<'static, Rc<dyn Balancer>> {
        let observed = self.0.clone();
        Box::pin(async move {
            observed.built_on.set(Some(sim::current_task()));
            Rc::new_cyclic(|me| StubPriority {
                cc,
                opts,
                mu: Mutex::new("stub_priority.mu"),
                children: RefCell::new(Vec::new()),
                states: RefCell::new(Vec::new()),
                observed,
                me: me.clone(),
            }) as Rc<dyn Balancer>
        })
    }
}

// ------------------------------------------------------------------ harness

struct World {
    cc: ClientConn,
    backends: Vec<Rc<Backend>>,
    lifecycle: Rc<Lifecycle>,
}

async fn world(observed: Rc<Observed>, priorities: &[&[&str]]) -> World {
    let mut reg = Registry::new();
    tree::register_builtin(&mut reg);
    reg.register(Rc::new(StubPriorityBuilder(observed)));
    let lifecycle = Rc::new(Lifecycle::default());
    let build = BuildOptions {
        logger: Default::default(),
        variant: Variant::Pre8095,
        registry: Rc::new(reg),
        sub_balancer_close_timeout: 0,
        priority_init_timeout: 10 * sim::SEC,
        lifecycle: lifecycle.clone(),
    };
    let network = Rc::new(Network::new());
    let mut backends = Vec::new();
    let mut addrs: Vec<Vec<Rc<str>>> = Vec::new();
    for p in priorities {
        let mut level = Vec::new();
        for name in p.iter() {
            let addr = format!("{name}.test:443");
            let b = Backend::new(name, &addr, BackendConfig::default());
            network.add(b.clone());
            backends.push(b);
            level.push(Rc::from(addr.as_str()));
        }
        addrs.push(level);
    }
    let cc = ClientConn::new(
        ChannelOptions {
            build,
            network,
            connect_params: ConnectParams::fast(),
            rpc_timeout: None,
            child_policy: None,
        },
        addrs,
    )
    .await;
    World {
        cc,
        backends,
        lifecycle,
    }
}

/// Random scheduling only: under PCT the reconnect loop against a stopped
/// listener (the test's zero backoff after the first) keeps spawning
/// high-priority tasks and can starve the test task until the step limit.
fn strategies() -> Vec<(&'static str, Box<dyn Strategy>)> {
    vec![("random", Box::new(RandomStrategy::new()))]
}

/// RPCs until one reaches `want` (ignoring failures), at most `tries`.
async fn rpc_until(cc: &ClientConn, want: &str, wait_for_ready: bool, tries: u32) -> bool {
    for _ in 0..tries {
        if let Ok(peer) = cc.rpc(wait_for_ready, None).await
            && &*peer == want
        {
            return true;
        }
        sim::sleep(MS).await;
    }
    false
}

// -------------------------------------------------------------------- tests

#[test]
fn serializer_runs_queued_callbacks_after_cancel_and_refuses_new_ones() {
    let mut sim = Sim::new(Box::new(RandomStrategy::new()));
    for seed in 0..200 {
        let log = Rc::new(RefCell::new(Vec::<String>::new()));
        let l = log.clone();
        let report = sim.run(&RunConfig::new(seed), async move {
            let ctx = Rc::new(Event::new("ctx"));
            let cs = CallbackSerializer::new("test.serializer", ctx.clone()).await;
            for i in 0..3 {
                let l = l.clone();
                cs.try_schedule(move |ctx| async move {
                    l.borrow_mut().push(format!("cb{i}:{}", ctx.has_fired()));
                })
                .await;
            }
            ctx.fire().await;
            cs.done().wait().await;
            let l2 = l.clone();
            cs.schedule_or(
                |_| async { panic!("ran after done") },
                || async move { l2.borrow_mut().push("refused".into()) },
            )
            .await;
        });
        assert_eq!(
            report.outcome,
            Outcome::Ok,
            "seed {seed}: {}",
            report.describe()
        );
        let log = log.borrow();
        // Every callback queued before the cancel ran, in order.
        let cbs: Vec<&String> = log.iter().filter(|s| s.starts_with("cb")).collect();
        assert_eq!(cbs.len(), 3, "seed {seed}: {log:?}");
        for (i, s) in cbs.iter().enumerate() {
            assert!(s.starts_with(&format!("cb{i}:")), "seed {seed}: {log:?}");
        }
        assert_eq!(log.last().map(String::as_str), Some("refused"));
    }
}

#[test]
fn fast_connect_params_back_off_10ms_then_zero() {
    let mut sim = Sim::new(Box::new(RandomStrategy::new()));
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    let report = sim.run(&RunConfig::new(1), async move {
        let p = ConnectParams::fast();
        for i in 0..3 {
            g.borrow_mut().push(p.backoff.backoff(i));
        }
    });
    assert_eq!(report.outcome, Outcome::Ok);
    assert_eq!(*got.borrow(), vec![10 * MS, 0, 0]);
}

#[test]
fn priority_config_routes_each_backend_to_its_child() {
    let (cfg, endpoints) = build_priority_config(&[vec![Rc::from("a:1")], vec![Rc::from("b:1")]]);
    assert_eq!(cfg.priorities, vec!["priority-0-0", "priority-0-1"]);
    cfg.validate().expect("valid config");
    let grouped = group_endpoints(&endpoints);
    assert_eq!(grouped["priority-0-0"][0].addresses[0].addr.as_ref(), "a:1");
    assert_eq!(grouped["priority-0-1"][0].addresses[0].addr.as_ref(), "b:1");
}

/// Child names follow their localities from one update to the next, as
/// cluster_resolver names them: merged priorities keep the first free name,
/// a split or new priority gets a new one, a reordered one keeps its own.
#[test]
fn child_names_follow_their_localities_across_updates() {
    let l = |names: &[&str]| -> Vec<Rc<str>> { names.iter().map(|&n| Rc::from(n)).collect() };
    let mut g = NameGenerator::new(0);
    let mut gen_ = |p: &[&[&str]]| -> Vec<String> {
        let p: Vec<Vec<Rc<str>>> = p.iter().map(|x| l(x)).collect();
        g.generate(&p)
    };
    assert_eq!(
        gen_(&[&["l1"], &["l2"], &["l3"]]),
        ["priority-0-0", "priority-0-1", "priority-0-2"]
    );
    assert_eq!(
        gen_(&[&["l1"], &["l2"], &["l3"]]),
        ["priority-0-0", "priority-0-1", "priority-0-2"]
    );
    assert_eq!(
        gen_(&[&["l1", "l2"], &["l3"]]),
        ["priority-0-0", "priority-0-2"]
    );
    assert_eq!(gen_(&[&["l1"], &["l4"]]), ["priority-0-0", "priority-0-3"]);
    // Reordered: each locality keeps its child.
    assert_eq!(gen_(&[&["l4"], &["l1"]]), ["priority-0-3", "priority-0-0"]);
    // l2 was dropped by the last update: its old name is forgotten.
    assert_eq!(gen_(&[&["l2"], &["l1"]]), ["priority-0-4", "priority-0-0"]);
}

/// One priority: S0 serves; its listener stops, so round_robin's pick_first
/// reports IDLE then TRANSIENT_FAILURE; S0 comes back and serves again; the
/// channel closes leaving no task, no policy and no connection behind.
#[test]
fn round_robin_follows_a_backend_down_and_back() {
    for (name, strategy) in strategies() {
        let mut sim = Sim::new(strategy);
        for seed in 0..150 {
            let observed = Rc::new(Observed::default());
            let ok = Rc::new(Cell::new(false));
            let unclosed = Rc::new(RefCell::new(Vec::new()));
            let (o, k, u) = (observed.clone(), ok.clone(), unclosed.clone());
            let o2 = observed.clone();
            let report = sim.run(&RunConfig::new(seed), async move {
                let w = world(o, &[&["s0"]]).await;
                let s0 = w.backends[0].clone();
                let first = w.cc.rpc(true, None).await;
                assert_eq!(first.as_deref().ok(), Some("s0"), "first RPC {first:?}");
                s0.stop_listener().await;
                // Wait for round_robin to report TRANSIENT_FAILURE.
                let mut in_tf = false;
                for _ in 0..500 {
                    let last = o2.child0_states.borrow().last().copied();
                    if last == Some(ConnectivityState::TransientFailure) {
                        in_tf = true;
                        break;
                    }
                    sim::sleep(MS).await;
                }
                assert!(in_tf, "round_robin never reported TF with S0 down");
                // Without wait-for-ready an RPC now fails (TF is sticky).
                assert!(w.cc.rpc(false, None).await.is_err(), "RPC succeeded in TF");
                s0.restart_listener().await;
                let back = rpc_until(&w.cc, "s0", true, 500).await;
                w.cc.close().await;
                *u.borrow_mut() = w.lifecycle.unclosed();
                k.set(back);
            });
            assert_eq!(
                report.outcome,
                Outcome::Ok,
                "{name} seed {seed}: {}",
                report.describe()
            );
            assert!(report.alive.is_empty(), "{name} seed {seed}");
            assert!(ok.get(), "{name} seed {seed}: S0 never served again");
            assert!(
                unclosed.borrow().is_empty(),
                "{name} seed {seed}: unclosed {:?}",
                unclosed.borrow()
            );
            let states = observed.child0_states.borrow();
            let ready = states
                .iter()
                .position(|s| *s == ConnectivityState::Ready)
                .expect("child READY first");
            let tf = states
                .iter()
                .skip(ready)
                .position(|s| *s == ConnectivityState::TransientFailure)
                .map(|i| i + ready)
                .unwrap_or_else(|| panic!("{name} seed {seed}: no TF in {states:?}"));
            assert!(
                states[ready..tf].contains(&ConnectivityState::Idle),
                "{name} seed {seed}: READY->TF not via IDLE: {states:?}"
            );
            assert_eq!(states.last(), Some(&ConnectivityState::Ready));
        }
    }
}

/// Two priorities: the flagship sequence (S0 down, failover to S1, S0 back,
/// failback, close) under the stub priority. Close reaches the priority
/// policy on the cluster_resolver task (the one that built it), not on the
/// caller's, and leaves nothing alive: every outlier_detection `run()` task
/// has returned.
#[test]
fn close_path_closes_priority_on_the_cluster_resolver_task() {
    for (name, strategy) in strategies() {
        let mut sim = Sim::new(strategy);
        for seed in 0..150 {
            let observed = Rc::new(Observed::default());
            let unclosed = Rc::new(RefCell::new(Vec::new()));
            let main_task = Rc::new(Cell::new(None));
            let (o, u, m) = (observed.clone(), unclosed.clone(), main_task.clone());
            let report = sim.run(&RunConfig::new(seed), async move {
                m.set(Some(sim::current_task()));
                let w = world(o, &[&["s0"], &["s1"]]).await;
                let (s0, s1) = (w.backends[0].clone(), w.backends[1].clone());
                // The stub builds both priorities at once, so S1 may serve
                // first; the real priority policy would only build p0.
                assert!(rpc_until(&w.cc, "s0", true, 500).await, "S0 never served");
                s0.stop_listener().await;
                assert!(rpc_until(&w.cc, "s1", true, 500).await, "no failover to S1");
                s0.restart_listener().await;
                assert!(
                    rpc_until(&w.cc, "s0", false, 500).await,
                    "no failback to S0"
                );
                w.cc.close().await;
                s0.stop().await;
                s1.stop().await;
                *u.borrow_mut() = w.lifecycle.unclosed();
            });
            assert_eq!(
                report.outcome,
                Outcome::Ok,
                "{name} seed {seed}: {}",
                report.describe()
            );
            assert!(report.alive.is_empty(), "{name} seed {seed}");
            assert!(unclosed.borrow().is_empty(), "{name} seed {seed}");
            let built = observed.built_on.get().expect("priority built");
            assert_eq!(observed.closed_on.get(), Some(built), "{name} seed {seed}");
            assert_ne!(Some(built), main_task.get());
            assert!(
                observed.updated_on.borrow().iter().all(|t| *t == built),
                "config delivered off the cluster_resolver task"
            );
        }
    }
}

/// Leaving the channel open must show up as leaked outlier_detection tasks:
/// the oracle the close-path test relies on can fail.
#[test]
fn an_unclosed_channel_leaks_the_outlier_detection_task() {
    let mut sim = Sim::new(Box::new(RandomStrategy::new()));
    let observed = Rc::new(Observed::default());
    let report = sim.run(&RunConfig::new(7), async move {
        let w = world(observed, &[&["s0"]]).await;
        assert_eq!(w.cc.rpc(true, None).await.as_deref().ok(), Some("s0"));
        std::mem::forget(w);
    });
    assert_eq!(report.outcome, Outcome::Leak, "{}", report.describe());
    assert!(
        report
            .alive
            .iter()
            .any(|t| t.name.starts_with("outlier_detection.run[")),
        "{}",
        report.describe()
    );
}
