//! Reference §2.1: grpc-go's `internal/balancergroup/balancergroup_test.go`
//! scenarios at `e0ac3acff` (before PR #8095, where `Start` exists).
//!
//! The Go tests aggregate the children's pickers with the weighted target
//! aggregator and a deterministic WRR; [`TestAggregator`] plays that part:
//! it expands each READY child by its weight, in id order, and asks the
//! child's picker in turn.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

use lbsim::grpc::balancer::{
    BalancerState, BoxFut, ClientConn, ClientConnState, ErrPicker, GrpcError, PickError, PickInfo,
    Picker, Registry, SubConn,
};
use lbsim::grpc::balancergroup::{BalancerGroup, BalancerStateAggregator};
use lbsim::grpc::connectivity::ConnectivityState;
use lbsim::grpc::variant::Variant;

use crate::harness::*;

const SEEDS: u64 = 50;

/// The variants in which the group still has `Start` (before PR #8095).
pub const WITH_START: [Variant; 3] = [Variant::Pre4308, Variant::Pre8095, Variant::PriorityLock];

// ---------------------------------------------------------------------------
// The weighted aggregator of the Go tests.

pub struct TestAggregator {
    cc: Rc<FakeCc>,
    started: Cell<bool>,
    weights: RefCell<BTreeMap<String, u32>>,
    states: RefCell<BTreeMap<String, BalancerState>>,
}

struct WeightedPicker {
    entries: Vec<Rc<dyn Picker>>,
    next: Cell<usize>,
}

impl Picker for WeightedPicker {
    fn pick(&self, info: &PickInfo) -> Result<Rc<dyn SubConn>, PickError> {
        let i = self.next.get();
        self.next.set(i + 1);
        self.entries[i % self.entries.len()].pick(info)
    }

    fn describe(&self) -> String {
        format!("wrr({})", self.entries.len())
    }
}

impl TestAggregator {
    pub fn new(cc: Rc<FakeCc>) -> Rc<Self> {
        Rc::new(TestAggregator {
            cc,
            started: Cell::new(false),
            weights: RefCell::new(BTreeMap::new()),
            states: RefCell::new(BTreeMap::new()),
        })
    }

    pub fn start(&self) {
        self.started.set(true);
    }

    pub fn stop(&self) {
        self.started.set(false);
    }

    /// A new child starts CONNECTING with a queueing picker.
    pub fn add(&self, id: &str, weight: u32) {
        self.weights.borrow_mut().insert(id.to_string(), weight);
        self.states
            .borrow_mut()
            .insert(id.to_string(), BalancerState::connecting_queue());
    }

    pub async fn remove(&self, id: &str) {
        self.weights.borrow_mut().remove(id);
        self.states.borrow_mut().remove(id);
        self.push().await;
    }

    pub fn update_weight(&self, id: &str, weight: u32) {
        self.weights.borrow_mut().insert(id.to_string(), weight);
    }

    async fn push(&self) {
        if !self.started.get() {
            return;
        }
        let (mut entries, mut connecting) = (Vec::new(), false);
        for (id, s) in self.states.borrow().iter() {
            match s.connectivity_state {
                ConnectivityState::Ready => {
                    for _ in 0..self.weights.borrow()[id] {
                        entries.push(s.picker.clone());
                    }
                }
                ConnectivityState::Connecting => connecting = true,
                _ => {}
            }
        }
        let state = if !entries.is_empty() {
            BalancerState {
                connectivity_state: ConnectivityState::Ready,
                picker: Rc::new(WeightedPicker {
                    entries,
                    next: Cell::new(0),
                }),
            }
        } else if connecting {
            BalancerState::connecting_queue()
        } else {
            BalancerState {
                connectivity_state: ConnectivityState::TransientFailure,
                picker: Rc::new(ErrPicker(err("transient failure"))),
            }
        };
        self.cc.update_state(state).await;
    }
}

impl BalancerStateAggregator for TestAggregator {
    /// Updates of ids not (or no longer) added are ignored.
    fn update_state(&self, id: &str, state: BalancerState) -> BoxFut<'_, ()> {
        let id = id.to_string();
        Box::pin(async move {
            if !self.weights.borrow().contains_key(&id) {
                return;
            }
            self.states.borrow_mut().insert(id, state);
            self.push().await;
        })
    }
}

/// A group on `env`'s fake ClientConn.
pub fn new_group(
    env: &Env,
    aggregator: Option<&Rc<TestAggregator>>,
    cache_timeout: u64,
) -> Rc<BalancerGroup> {
    let agg: Weak<dyn BalancerStateAggregator> = match aggregator {
        Some(a) => Rc::downgrade(a) as Weak<dyn BalancerStateAggregator>,
        None => Weak::<TestAggregator>::new(),
    };
    BalancerGroup::new(
        env.cc.clone() as Rc<dyn ClientConn>,
        env.opts.clone(),
        agg,
        cache_timeout,
    )
}

pub async fn add(bg: &BalancerGroup, env: &Env, id: &str, policy: &str) -> Result<(), GrpcError> {
    bg.add_with_client_conn(id, policy, env.cc.clone() as Rc<dyn ClientConn>)
        .await
}

// ---------------------------------------------------------------------------
// Scenarios with stub children.

/// `TestBalancerGroup_start_close_deadlock`: `Start` builds children that
/// were added (with addresses) before it, without deadlocking.
#[test]
fn bg_start_close_deadlock() {
    run_scenario(
        "start_close_deadlock",
        Sched::LateTimers,
        &WITH_START,
        SEEDS,
        |variant| async move {
            const POLICY: &str = "stub-TestBalancerGroup_start_close_deadlock";
            let calls = Rc::new(RefCell::new(Vec::new()));
            let mut reg = Registry::new();
            reg.register(counting_stub(POLICY, calls.clone()));
            let env = Env::new(variant, reg);
            let gator = TestAggregator::new(env.cc.clone());
            gator.start();
            let bg = new_group(&env, Some(&gator), 0);
            gator.add("b1", 2);
            add(&bg, &env, "b1", POLICY).await.expect("added");
            bg.update_client_conn_state("b1", endpoints_state(&[0, 1]))
                .await
                .expect("updated");
            gator.add("b2", 1);
            add(&bg, &env, "b2", POLICY).await.expect("added");
            bg.update_client_conn_state("b2", endpoints_state(&[2, 3]))
                .await
                .expect("updated");
            assert_eq!(env.lifecycle.built_count(), 0, "built before Start");
            bg.start().await;
            assert_eq!(env.lifecycle.built_count(), 2);
            // Start replays each child's stored addresses.
            assert_eq!(
                calls.borrow().as_slice(),
                ["update_client_conn_state", "update_client_conn_state"]
            );
            bg.close().await;
            assert_eq!(env.lifecycle.unclosed(), Vec::<String>::new());
        },
    );
}

/// `TestBalancerGroupBuildOptions`: the options given to the group reach
/// the child policy.
#[test]
fn bg_build_options() {
    run_scenario(
        "build_options",
        Sched::LateTimers,
        &ALL_VARIANTS,
        SEEDS,
        |variant| async move {
            const POLICY: &str = "stubBalancer-TestBalancerGroupBuildOptions";
            let mut reg = Registry::new();
            reg.register(StubBuilder::new(
                POLICY,
                StubFuncs {
                    update_client_conn_state: Some(Rc::new(move |d, _| {
                        Box::pin(async move {
                            let o = &d.opts;
                            if o.variant != variant
                                || o.sub_balancer_close_timeout != 7
                                || o.priority_init_timeout != 11
                                || o.registry.get(POLICY).is_none()
                            {
                                return Err(GrpcError::new("unexpected build options"));
                            }
                            Ok(())
                        })
                    })),
                    ..Default::default()
                },
            ));
            let env = Env::with_timeouts(variant, reg, 7, 11);
            let bg = new_group(&env, None, 0);
            bg.start().await;
            add(&bg, &env, "b1", POLICY).await.expect("added");
            bg.update_client_conn_state("b1", ClientConnState::default())
                .await
                .expect("the child saw the group's build options");
            bg.close().await;
        },
    );
}

/// `TestBalancerExitIdleOne`: `ExitIdleOne` reaches that child.
#[test]
fn bg_exit_idle_one() {
    run_scenario(
        "exit_idle_one",
        Sched::LateTimers,
        &ALL_VARIANTS,
        SEEDS,
        |variant| async move {
            const POLICY: &str = "stub-balancer-test-balancergroup-exit-idle-one";
            let calls = Rc::new(RefCell::new(Vec::new()));
            let mut reg = Registry::new();
            reg.register(counting_stub(POLICY, calls.clone()));
            let env = Env::new(variant, reg);
            let bg = new_group(&env, None, 0);
            bg.start().await;
            add(&bg, &env, "b1", POLICY).await.expect("added");
            bg.exit_idle_one("b1").await;
            assert_eq!(calls.borrow().as_slice(), ["exit_idle"]);
            bg.close().await;
            assert_eq!(calls.borrow().as_slice(), ["exit_idle", "close"]);
        },
    );
}

/// `TestBalancerGroup_CloseStopsBalancerInCache`: closing the group closes
/// a child sitting in the deleted-child cache. (Before PR #4308 it did not:
/// that variant is left out.)
#[test]
fn bg_close_stops_balancer_in_cache() {
    run_scenario(
        "close_stops_balancer_in_cache",
        Sched::LateTimers,
        &[
            Variant::Pre8095,
            Variant::Pr8095,
            Variant::PriorityLock,
            Variant::A115,
        ],
        SEEDS,
        |variant| async move {
            const POLICY: &str = "stub-TestBalancerGroup_CloseStopsBalancerInCache";
            let calls = Rc::new(RefCell::new(Vec::new()));
            let mut reg = Registry::new();
            reg.register(counting_stub(POLICY, calls.clone()));
            let env = Env::new(variant, reg);
            let gator = TestAggregator::new(env.cc.clone());
            gator.start();
            let bg = new_group(&env, Some(&gator), lbsim::sim::SEC);
            bg.start().await;
            gator.add("b3", 1);
            add(&bg, &env, "b3", POLICY).await.expect("added");
            gator.remove("b3").await;
            bg.remove("b3").await;
            assert_eq!(bg.cached_children(), 1);
            assert!(calls.borrow().is_empty(), "a cached child was closed");
            bg.close().await;
            assert_eq!(calls.borrow().as_slice(), ["close"]);
            assert_eq!(bg.cached_children(), 0);
            assert_eq!(env.lifecycle.unclosed(), Vec::<String>::new());
        },
    );
}
