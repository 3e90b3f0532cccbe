//! The scenario driver: builds the gRPC model of a scenario (backends, the
//! channel with its policy tree) and runs the client script as the main task
//! (the test goroutine), then applies the end-of-run oracles.
//!
//! The client behaves like the Go test: a failed expectation (`t.Fatalf`)
//! skips to the deferred `Close`, so the leak check still runs; the servers
//! are stopped after the channel is closed, as the test's defers and
//! cleanups do, and the leak check's grace period follows.

use std::cell::RefCell;
use std::rc::Rc;

use crate::experiment::{Model, RunOptions, RunResult};
use crate::grpc::clientconn::{ChannelOptions, ClientConn, ClusterUpdate};
use crate::grpc::grpclog::Logger;
use crate::grpc::priority::{Child, LbConfig, PriorityBalancer};
use crate::grpc::probe::{self, ParentCc, ProbeBuilder, ProbeConfig, ProbeWorld};
use crate::grpc::{
    Balancer, BuildOptions, ClientConn as ClientConnApi, ClientConnState, Lifecycle, Registry,
    Variant, tree,
};
use crate::net::{self, Backend, BackendConfig, HealthTimeline, Network, RandomHealth};
use crate::sim::dist::Dist;
use crate::sim::strategy::RandomStrategy;
use crate::sim::{self, Outcome, RunConfig, RunReport, Sim};

use super::{ClientStep, DownBehaviour, Scenario};

/// How far ahead a pending timer may be fired as a scheduling choice under
/// the systematic strategies: a goroutine stalled for up to a second. This
/// keeps the implausible choices out (a 15-minute cache timer or a 10-second
/// init timer overtaking running goroutines) while every timer of the race
/// (backoff, connect deadlines, round trips) stays reorderable.
pub const MAX_STALL: u64 = sim::SEC;

/// Pause after a failed RPC in a retry loop: the RPC's own cost in the Go
/// test's tight loop, so that virtual time moves while the client spins.
const RETRY_PAUSE: u64 = 20 * sim::US;

/// What the model-level oracles saw, beside the kernel's report.
#[derive(Debug, Default, Clone)]
pub struct ModelCheck {
    /// Child policies built and never closed.
    pub unclosed: Vec<String>,
    /// Client expectations that failed (the Go test's `t.Fatalf`).
    pub client_errors: Vec<String>,
    /// Model objects still alive once the run is over, counted through the
    /// lifecycle record every policy holds: 0 when nothing outlives the run
    /// (no reference cycle), so memory stays flat over many runs.
    pub objects_alive_after_run: usize,
}

pub struct GrpcModel {
    scenario: Scenario,
    expected_steps: u64,
}

impl GrpcModel {
    pub fn new(scenario: &Scenario) -> Self {
        let mut model = GrpcModel {
            scenario: scenario.clone(),
            expected_steps: 1_000,
        };
        model.expected_steps = model.calibrate_steps();
        model
    }

    /// PCT draws change points from the expected length of a run: the mean
    /// steps of a few fixed-seed random runs of `pre-8095`, deterministic for
    /// a scenario.
    fn calibrate_steps(&self) -> u64 {
        let mut sim = Sim::new(Box::new(RandomStrategy::new()));
        let opts = RunOptions::for_scenario(&self.scenario);
        let n = 8;
        let total: u64 = (0..n)
            .map(|i| {
                self.run_report(Variant::Pre8095, &mut sim, &self.config(&opts, 1_000 + i))
                    .0
                    .steps
            })
            .sum();
        (total / n).max(10)
    }

    fn config(&self, opts: &RunOptions, seed: u64) -> RunConfig {
        RunConfig {
            max_early_fire: MAX_STALL,
            ..opts.config(seed)
        }
    }

    /// The kernel configuration of one run of this scenario with `seed`, as
    /// `lbsim run` uses it (the scenario's grace, the stall bound); callers
    /// switch tracing or recording on.
    pub fn run_config(&self, seed: u64) -> RunConfig {
        self.config(&RunOptions::for_scenario(&self.scenario), seed)
    }

    /// One run with full control of the kernel's configuration (trace,
    /// recorded schedule), for replay and exploration.
    pub fn run_report(
        &self,
        variant: Variant,
        sim: &mut Sim,
        cfg: &RunConfig,
    ) -> (RunReport, ModelCheck) {
        let lifecycle = Rc::new(Lifecycle::default());
        let client_errors = Rc::new(RefCell::new(Vec::new()));
        let scenario = self.scenario.clone();
        let mut report = if scenario.probe.is_some() {
            sim.run(
                cfg,
                probe_client(scenario, variant, lifecycle.clone(), client_errors.clone()),
            )
        } else {
            sim.run(
                cfg,
                client(scenario, variant, lifecycle.clone(), client_errors.clone()),
            )
        };
        let check = ModelCheck {
            unclosed: lifecycle.unclosed(),
            client_errors: client_errors.borrow().clone(),
            objects_alive_after_run: Rc::strong_count(&lifecycle) - 1,
        };
        // A child never closed is a leak even if its tasks happened to end.
        if report.outcome == Outcome::Ok && !check.unclosed.is_empty() {
            report.outcome = Outcome::Leak;
        }
        (report, check)
    }
}

impl Model for GrpcModel {
    fn run_one(&self, variant: Variant, sim: &mut Sim, seed: u64, opts: &RunOptions) -> RunResult {
        let (report, check) = self.run_report(variant, sim, &self.config(opts, seed));
        RunResult::from_model_run(&report, &check)
    }

    fn expected_steps(&self) -> u64 {
        self.expected_steps
    }
}

fn backend_config(b: &super::Backend) -> BackendConfig {
    BackendConfig {
        connect_latency: b.latency.clone(),
        down: match b.down {
            DownBehaviour::Refuse => net::DownBehaviour::Refuse(b.latency.clone()),
            DownBehaviour::Timeout => net::DownBehaviour::Timeout,
        },
        rpc_latency: b.latency.clone(),
    }
}

/// What every policy of a run is built with: `registry` (holding any
/// policies of the run's own) plus the built-in ones, and the scenario's
/// balancer settings.
fn build_options(
    scenario: &Scenario,
    variant: Variant,
    lifecycle: Rc<Lifecycle>,
    mut registry: Registry,
) -> BuildOptions {
    tree::register_builtin(&mut registry);
    BuildOptions {
        variant,
        registry: Rc::new(registry),
        sub_balancer_close_timeout: scenario.balancer.cache_timeout,
        priority_init_timeout: scenario.balancer.init_timeout,
        lifecycle,
        logger: if scenario.client.test_logger {
            Logger::test()
        } else {
            Logger::off()
        },
    }
}

/// The test goroutine: builds the world and runs the client script.
async fn client(
    scenario: Scenario,
    variant: Variant,
    lifecycle: Rc<Lifecycle>,
    errors: Rc<RefCell<Vec<String>>>,
) {
    let build = build_options(&scenario, variant, lifecycle, Registry::new());

    let network = Rc::new(Network::new());
    let mut backends: Vec<Rc<Backend>> = Vec::new();
    for (i, b) in scenario.backends.iter().enumerate() {
        let backend = Backend::new(&b.name, &b.name, backend_config(b));
        if !b.initially_up {
            backend.stop_listener().await;
        }
        let script: Vec<(u64, bool)> = scenario
            .health
            .iter()
            .filter(|h| h.backend == i)
            .map(|h| (h.at, h.up))
            .collect();
        let random = b.flap.as_ref().map(|f| RandomHealth {
            up: f.up.clone(),
            down: f.down.clone(),
        });
        if !script.is_empty() || random.is_some() {
            backend
                .start_health(HealthTimeline { script, random })
                .await;
        }
        network.add(backend.clone());
        backends.push(backend);
    }
    let priorities: Vec<Vec<Rc<str>>> = scenario
        .priorities
        .iter()
        .map(|p| {
            p.backends
                .iter()
                .map(|&b| backends[b].address().clone())
                .collect()
        })
        .collect();
    let cc = ClientConn::new(
        ChannelOptions {
            build,
            network,
            connect_params: scenario.connect.clone(),
            rpc_timeout: None,
            child_policy: Some(scenario.balancer.child_policy.channel_policy().to_string()),
        },
        priorities,
    )
    .await;

    let fail = |text: String| {
        sim::note(|| format!("client: {text}"));
        errors.borrow_mut().push(text);
    };
    for step in &scenario.client.steps {
        match step {
            ClientStep::Rpc {
                expect,
                wait_for_ready,
                ..
            } => {
                let r = cc.rpc(*wait_for_ready, None).await;
                match (r, expect) {
                    (Ok(peer), Some(b)) if peer != *backends[*b].name() => {
                        fail(format!("rpc reached {peer}, want {}", backends[*b].name()));
                        break;
                    }
                    (Err(e), Some(_)) => {
                        fail(format!("rpc failed: {e}"));
                        break;
                    }
                    _ => {}
                }
            }
            ClientStep::RpcUntil {
                backend,
                wait_for_ready,
                timeout,
            } => {
                let deadline = sim::now().saturating_add(*timeout);
                let want = backends[*backend].name().clone();
                let mut reached = false;
                while sim::now() < deadline {
                    match cc.rpc(*wait_for_ready, None).await {
                        Ok(peer) if peer == want => {
                            reached = true;
                            break;
                        }
                        _ => sim::sleep(RETRY_PAUSE).await,
                    }
                }
                if !reached {
                    fail(format!("no rpc reached {want} within the timeout"));
                    break;
                }
            }
            ClientStep::UpdateConfig {
                priorities,
                child_policy,
            } => {
                let priorities: Vec<Vec<Rc<str>>> = priorities
                    .iter()
                    .map(|p| p.iter().map(|&b| backends[b].address().clone()).collect())
                    .collect();
                sim::note(|| "client: push a new priority config".into());
                cc.update_cluster(ClusterUpdate {
                    priorities,
                    child_policy: child_policy.map(|p| p.as_str().to_string()),
                })
                .await;
            }
            ClientStep::StopListener { backend } => backends[*backend].stop_listener().await,
            ClientStep::RestartListener { backend } => backends[*backend].restart_listener().await,
            ClientStep::Sleep { duration } => {
                let d = sample(duration);
                sim::sleep(d).await;
            }
            ClientStep::Spin { duration } => spin(sample(duration)).await,
            ClientStep::Report { .. }
            | ClientStep::WaitBuilt { .. }
            | ClientStep::WaitPicker { .. } => {
                // Validation keeps probe steps out of channel scenarios.
                fail("a probe step in a scenario without [probe]".into());
                break;
            }
            ClientStep::Close => break,
        }
    }
    sim::note(|| "client: conn.Close()".into());
    cc.close().await;
    for b in &backends {
        b.stop().await;
    }
}

/// A duration drawn from the run's data stream.
fn sample(d: &Dist) -> u64 {
    let mut r = crate::sim::rng::rng(sim::random_u64(), 0);
    d.sample(&mut r)
}

/// Busy for `d` of virtual time without giving up the processor, as the Go
/// harness spins on the monotonic clock: a preemption point per step, each
/// costing CPU time under `timed`. Under the strategies whose steps take no
/// time, the rest passes as a sleep.
async fn spin(d: u64) {
    let end = sim::now().saturating_add(d);
    while sim::now() < end {
        let before = sim::now();
        sim::yield_now().await;
        let after = sim::now();
        if after == before {
            sim::sleep(end - after).await;
            break;
        }
    }
}

/// The probe harness's test goroutine (the `[probe]` scenarios): builds the
/// priority policy on a recording parent with one probe child per priority,
/// as `validation/go/` does on the real grpc-go code, and runs the script.
async fn probe_client(
    scenario: Scenario,
    variant: Variant,
    lifecycle: Rc<Lifecycle>,
    errors: Rc<RefCell<Vec<String>>>,
) {
    let harness = scenario.probe.clone().expect("a probe scenario");
    let world = ProbeWorld::new();
    let mut registry = Registry::new();
    registry.register(Rc::new(ProbeBuilder::new(world.clone())));
    let build = build_options(&scenario, variant, lifecycle, registry);
    let fail = |text: String| {
        sim::note(|| format!("harness: {text}"));
        errors.borrow_mut().push(text);
    };
    let parent: Rc<dyn ClientConnApi> = Rc::new(ParentCc::new(world.clone()));
    let pb = PriorityBalancer::build(parent, build).await;
    let mut cfg = LbConfig::default();
    for name in &harness.children {
        let mut child = Child::new(probe::NAME);
        child.config.config = Some(Rc::new(ProbeConfig { name: name.clone() }));
        cfg.children.insert(name.clone(), child);
        cfg.priorities.push(name.clone());
    }
    let state = ClientConnState {
        resolver_state: Default::default(),
        balancer_config: Some(cfg.into_any()),
    };
    if let Err(e) = pb.update_client_conn_state(state).await {
        fail(format!("config: {e}"));
    } else {
        for step in &scenario.client.steps {
            match step {
                ClientStep::Report { child, state } => {
                    let name = &harness.children[*child];
                    let Some(p) = world.probe(name) else {
                        fail(format!("report to {name}, which was never built"));
                        break;
                    };
                    sim::note(|| format!("harness: {name} reports {state}"));
                    p.report(*state).await;
                }
                ClientStep::WaitBuilt { child } => {
                    let name = &harness.children[*child];
                    if world.wait_built(name).await.is_none() {
                        break;
                    }
                    sim::note(|| format!("harness: {name} built"));
                }
                ClientStep::WaitPicker { child } => {
                    let name = &harness.children[*child];
                    if world.wait_picker(name).await.is_none() {
                        break;
                    }
                    sim::note(|| format!("harness: the parent has {name}'s picker"));
                }
                ClientStep::Sleep { duration } => sim::sleep(sample(duration)).await,
                ClientStep::Spin { duration } => spin(sample(duration)).await,
                ClientStep::Close => break,
                ClientStep::Rpc { .. }
                | ClientStep::RpcUntil { .. }
                | ClientStep::StopListener { .. }
                | ClientStep::RestartListener { .. }
                | ClientStep::UpdateConfig { .. } => {
                    fail("a channel step in a [probe] scenario".into());
                    break;
                }
            }
        }
    }
    sim::note(|| "harness: priority.Close()".into());
    pb.close().await;
}
