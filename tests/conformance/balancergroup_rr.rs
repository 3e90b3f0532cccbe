//! Reference §2.1: the balancergroup scenarios whose children are
//! `round_robin` (and, for the graceful switch, a stub over `pick_first`).

use std::collections::BTreeMap;
use std::rc::Rc;

use lbsim::grpc::balancer::{Balancer, ClientConnState, PickInfo, Registry, SubConn, SubConnId};
use lbsim::grpc::balancergroup::BalancerGroup;
use lbsim::grpc::connectivity::ConnectivityState::*;
use lbsim::grpc::gracefulswitch::GracefulSwitchConfig;
use lbsim::grpc::variant::Variant;
use lbsim::sim::{self, SEC};

use crate::balancergroup::{TestAggregator, WITH_START, add, new_group};
use crate::harness::*;

const SEEDS: u64 = 50;
const RR: &str = "round_robin";

/// The variants whose cached children are closed by `Close` (all since
/// PR #4308).
const CACHE_CLOSES: [Variant; 4] = [
    Variant::Pre8095,
    Variant::Pr8095,
    Variant::PriorityLock,
    Variant::A115,
];

fn rr_registry() -> Registry {
    let mut reg = Registry::new();
    register_leaves(&mut reg);
    reg
}

/// Takes `n` new SubConns, brings each CONNECTING then READY, and returns
/// them by address.
async fn ready_sub_conns(env: &Env, n: usize) -> BTreeMap<String, Rc<FakeSubConn>> {
    let mut m = BTreeMap::new();
    for _ in 0..n {
        let sc = env.cc.next_sub_conn().await;
        sc.update_state(Connecting).await;
        sc.update_state(Ready).await;
        m.insert(sc.addr().to_string(), sc);
    }
    m
}

fn pick_list<'a>(
    m: &'a BTreeMap<String, Rc<FakeSubConn>>,
    backends: &[u32],
) -> Vec<&'a FakeSubConn> {
    backends.iter().map(|b| m[&addr(*b)].as_ref()).collect()
}

/// `TestBalancerGroup_start_close`: children added before `Start` are built
/// by it; `Close` shuts every SubConn down; changes made while closed are
/// stored and applied by the next `Start` (restartable before PR #8095).
#[test]
fn bg_start_close() {
    run_both("start_close", &WITH_START, SEEDS, |variant| async move {
        let env = Env::new(variant, rr_registry());
        let gator = TestAggregator::new(env.cc.clone());
        gator.start();
        let bg = new_group(&env, Some(&gator), 0);
        gator.add("b1", 2);
        add(&bg, &env, "b1", RR).await.expect("added");
        bg.update_client_conn_state("b1", endpoints_state(&[0, 1]))
            .await
            .expect("updated");
        gator.add("b2", 1);
        add(&bg, &env, "b2", RR).await.expect("added");
        bg.update_client_conn_state("b2", endpoints_state(&[2, 3]))
            .await
            .expect("updated");
        env.cc.expect_no_new_sub_conn().await;

        bg.start().await;
        let m1 = ready_sub_conns(&env, 4).await;
        env.cc
            .wait_for_round_robin(&pick_list(&m1, &[0, 0, 1, 1, 2, 3]))
            .await;

        gator.stop();
        bg.close().await;
        // The group's incoming section shuts each SubConn down first.
        let mut first: Vec<SubConnId> = Vec::new();
        for _ in 0..4 {
            first.push(env.cc.next_shutdown().await);
        }
        first.sort();
        let mut all: Vec<SubConnId> = m1.values().map(|s| s.id()).collect();
        all.sort();
        assert_eq!(first, all);
        for sc in m1.values() {
            sc.update_state(Shutdown).await;
        }
        assert!(
            env.cc.take_shutdowns().iter().all(|id| all.contains(id)),
            "Shutdown of a SubConn the group did not own"
        );
        assert_eq!(env.live_children(), Vec::<String>::new());

        gator.add("b3", 1);
        add(&bg, &env, "b3", RR).await.expect("added");
        bg.update_client_conn_state("b3", endpoints_state(&[1, 2]))
            .await
            .expect("updated");
        gator.remove("b1").await;
        bg.remove("b1").await;
        gator.update_weight("b2", 3);
        bg.update_client_conn_state("b2", endpoints_state(&[0, 3]))
            .await
            .expect("updated");
        env.cc.expect_no_sub_conn_change().await;
        assert_eq!(env.live_children(), Vec::<String>::new());

        gator.start();
        bg.start().await;
        let m2 = ready_sub_conns(&env, 4).await;
        env.cc
            .wait_for_round_robin(&pick_list(&m2, &[0, 0, 0, 3, 3, 3, 1, 2]))
            .await;
        assert_eq!(env.live_children(), ["b2", "b3"]);
        bg.close().await;
        assert_eq!(env.lifecycle.unclosed(), Vec::<String>::new());
    });
}

/// What `init_for_caching_test` leaves: the aggregator, the group, b1's
/// and b2's SubConns by address, and when b2 was removed.
struct CachingSetup {
    gator: Rc<TestAggregator>,
    bg: Rc<BalancerGroup>,
    m: BTreeMap<String, Rc<FakeSubConn>>,
    removed_at: u64,
}

/// `initBalancerGroupForCachingTest`: b1 (weight 2, backends 0–1) and b2
/// (weight 1, backends 2–3) READY; then b2 removed: cached, not closed.
async fn init_for_caching_test(env: &Env, cache_timeout: u64) -> CachingSetup {
    let gator = TestAggregator::new(env.cc.clone());
    gator.start();
    let bg = new_group(env, Some(&gator), cache_timeout);
    gator.add("b1", 2);
    add(&bg, env, "b1", RR).await.expect("added");
    bg.update_client_conn_state("b1", endpoints_state(&[0, 1]))
        .await
        .expect("updated");
    gator.add("b2", 1);
    add(&bg, env, "b2", RR).await.expect("added");
    bg.update_client_conn_state("b2", endpoints_state(&[2, 3]))
        .await
        .expect("updated");
    bg.start().await;
    let m = ready_sub_conns(env, 4).await;
    env.cc
        .wait_for_round_robin(&pick_list(&m, &[0, 0, 1, 1, 2, 3]))
        .await;

    gator.remove("b2").await;
    let removed_at = sim::now();
    bg.remove("b2").await;
    sim::sleep(10 * lbsim::sim::MS).await;
    assert!(
        env.cc.take_shutdowns().is_empty(),
        "a cached child's SubConn shut down"
    );
    env.cc.wait_for_round_robin(&pick_list(&m, &[0, 1])).await;
    assert_eq!(bg.cached_children(), 1);
    CachingSetup {
        gator,
        bg,
        m,
        removed_at,
    }
}

/// `TestBalancerGroup_locality_caching`: a cached child's updates do not
/// reach the parent; re-adding it (same builder) reuses it and re-sends its
/// up-to-date picker, without new SubConns.
#[test]
fn bg_locality_caching() {
    run_both(
        "locality_caching",
        &CACHE_CLOSES,
        SEEDS,
        |variant| async move {
            let env = Env::new(variant, rr_registry());
            let CachingSetup { gator, bg, m, .. } = init_for_caching_test(&env, 5 * SEC).await;
            m[&addr(2)].update_state(TransientFailure).await;
            env.cc.expect_no_state().await;

            gator.add("b2", 1);
            add(&bg, &env, "b2", RR).await.expect("re-added");
            env.cc
                .wait_for_round_robin(&pick_list(&m, &[0, 0, 1, 1, 3, 3]))
                .await;
            env.cc.expect_no_new_sub_conn().await;
            assert_eq!(bg.cached_children(), 0);
            bg.close().await;
            assert_eq!(env.lifecycle.unclosed(), Vec::<String>::new());
        },
    );
}

/// `TestBalancerGroup_locality_caching_close_group`: Close shuts down the
/// SubConns of live and cached children alike.
#[test]
fn bg_locality_caching_close_group() {
    run_both(
        "locality_caching_close_group",
        &CACHE_CLOSES,
        SEEDS,
        |variant| async move {
            let env = Env::new(variant, rr_registry());
            let CachingSetup { bg, m, .. } = init_for_caching_test(&env, 5 * SEC).await;
            bg.close().await;
            let mut first: Vec<SubConnId> = Vec::new();
            for _ in 0..4 {
                first.push(env.cc.next_shutdown().await);
            }
            first.sort();
            let mut all: Vec<SubConnId> = m.values().map(|s| s.id()).collect();
            all.sort();
            assert_eq!(first, all);
            assert_eq!(bg.cached_children(), 0);
            assert_eq!(env.lifecycle.unclosed(), Vec::<String>::new());
        },
    );
}

/// `TestBalancerGroup_locality_caching_not_read_within_timeout`: a cached
/// child not re-added is closed when its cache timer fires (1 s).
#[test]
fn bg_locality_caching_not_read_within_timeout() {
    run_both(
        "locality_caching_not_read",
        &CACHE_CLOSES,
        SEEDS,
        |variant| async move {
            let env = Env::new(variant, rr_registry());
            let CachingSetup {
                bg, m, removed_at, ..
            } = init_for_caching_test(&env, SEC).await;
            let first = env.cc.next_shutdown().await;
            assert!(sim::now() >= removed_at + SEC, "closed before the timeout");
            let mut seen = vec![first];
            seen.extend(env.cc.take_shutdowns());
            let (sc2, sc3) = (m[&addr(2)].id(), m[&addr(3)].id());
            assert!(seen.iter().all(|id| *id == sc2 || *id == sc3), "{seen:?}");
            wait_for("both of b2's SubConns shut down", || {
                (env.cc.shutdown_count(&m[&addr(2)]) > 0 && env.cc.shutdown_count(&m[&addr(3)]) > 0)
                    .then_some(())
            })
            .await;
            assert_eq!(env.live_children(), ["b1"]);
            assert_eq!(bg.cached_children(), 0);
            bg.close().await;
        },
    );
}

/// `TestBalancerGroup_locality_caching_read_with_different_builder`:
/// re-adding a cached child with another builder closes the cached one at
/// once and builds a fresh child, which has no config until it is sent one.
#[test]
fn bg_locality_caching_read_with_different_builder() {
    run_both(
        "locality_caching_different_builder",
        &CACHE_CLOSES,
        SEEDS,
        |variant| async move {
            const NOOP_WRAPPER: &str = "noopBalancerBuilderWrapper";
            let mut reg = rr_registry();
            let rr = reg.get(RR).expect("rr");
            reg.register(RenamedBuilder::new(NOOP_WRAPPER, rr));
            let env = Env::new(variant, reg);
            let CachingSetup { gator, bg, m, .. } = init_for_caching_test(&env, 5 * SEC).await;

            gator.add("b2", 1);
            add(&bg, &env, "b2", NOOP_WRAPPER).await.expect("re-added");
            let shut = env.cc.take_shutdowns();
            let (sc2, sc3) = (m[&addr(2)].id(), m[&addr(3)].id());
            assert!(shut.contains(&sc2) && shut.contains(&sc3), "{shut:?}");
            assert!(shut.iter().all(|id| *id == sc2 || *id == sc3), "{shut:?}");
            env.cc.expect_no_new_sub_conn().await;

            bg.update_client_conn_state("b2", endpoints_state(&[4, 5]))
                .await
                .expect("updated");
            let m2 = ready_sub_conns(&env, 2).await;
            let want = [
                m[&addr(0)].as_ref(),
                m[&addr(0)].as_ref(),
                m[&addr(1)].as_ref(),
                m[&addr(1)].as_ref(),
                m2[&addr(4)].as_ref(),
                m2[&addr(5)].as_ref(),
            ];
            env.cc.wait_for_round_robin(&want).await;
            bg.close().await;
            assert_eq!(env.lifecycle.unclosed(), Vec::<String>::new());
        },
    );
}

/// `TestBalancerGracefulSwitch`: a config naming another policy switches
/// the child gracefully: the old picker stays until the new child is READY,
/// then the old child's SubConns are shut down.
#[test]
fn bg_graceful_switch() {
    run_both(
        "graceful_switch",
        &ALL_VARIANTS,
        SEEDS,
        |variant| async move {
            const POLICY: &str = "TestBalancerGracefulSwitch";
            let mut reg = rr_registry();
            // Wraps pick_first and drops the first endpoint of every update.
            reg.register(StubBuilder::new(
                POLICY,
                StubFuncs {
                    update_client_conn_state: Some(Rc::new(|d, mut s| {
                        Box::pin(async move {
                            let existing = d.data.borrow().clone();
                            let pf = match existing {
                                Some(b) => b,
                                None => {
                                    let builder = d.opts.registry.get("pick_first").expect("pf");
                                    let b = builder.build(d.cc.clone(), d.opts.clone()).await;
                                    let any: Rc<dyn std::any::Any> = Rc::new(b);
                                    *d.data.borrow_mut() = Some(any.clone());
                                    any
                                }
                            };
                            let pf = pf.downcast_ref::<Rc<dyn Balancer>>().expect("pf").clone();
                            s.resolver_state.endpoints.remove(0);
                            pf.update_client_conn_state(s).await
                        })
                    })),
                    close: Some(Rc::new(|d, ()| {
                        Box::pin(async move {
                            let inner = d.data.borrow_mut().take();
                            if let Some(pf) = inner
                                && let Some(pf) = pf.downcast_ref::<Rc<dyn Balancer>>()
                            {
                                pf.close().await;
                            }
                        })
                    })),
                    ..Default::default()
                },
            ));
            let env = Env::new(variant, reg);
            let gator = TestAggregator::new(env.cc.clone());
            gator.start();
            let bg = new_group(&env, Some(&gator), 0);
            gator.add("b1", 1);
            add(&bg, &env, "b1", RR).await.expect("added");
            bg.update_client_conn_state("b1", endpoints_state(&[0, 1]))
                .await
                .expect("updated");
            bg.start().await;
            let m1 = ready_sub_conns(&env, 2).await;
            env.cc.wait_for_round_robin(&pick_list(&m1, &[0, 1])).await;

            let child_builder = env.opts.registry.get(POLICY).expect("registered");
            let mut s: ClientConnState = endpoints_state(&[2, 3]);
            s.balancer_config = Some(Rc::new(GracefulSwitchConfig {
                child_builder,
                child_config: None,
            }));
            bg.update_client_conn_state("b1", s)
                .await
                .expect("switched");
            let sc = env.cc.next_sub_conn_for(&addr(3)).await;
            sc.update_state(Connecting).await;
            env.cc.expect_no_state().await;

            sc.update_state(Ready).await;
            let st = env.cc.next_state().await;
            for _ in 0..3 {
                let picked = st.picker.pick(&PickInfo::default()).expect("a pick");
                assert_eq!(picked.id(), sc.id());
            }
            let old: Vec<SubConnId> = m1.values().map(|s| s.id()).collect();
            let a = env.cc.next_shutdown().await;
            let b = env.cc.next_shutdown().await;
            assert!(a != b && old.contains(&a) && old.contains(&b), "{a} {b}");
            bg.close().await;
        },
    );
}

/// `TestBalancerGroup_start_close` as PR #8095 truncated it: children are
/// built on Add (there is no `Start`), and Close shuts every SubConn down.
#[test]
fn bg_start_close_terminal() {
    run_both(
        "start_close (pr-8095)",
        &[Variant::Pr8095, Variant::A115],
        SEEDS,
        |variant| async move {
            let env = Env::new(variant, rr_registry());
            let gator = TestAggregator::new(env.cc.clone());
            gator.start();
            let bg = new_group(&env, Some(&gator), 0);
            gator.add("b1", 2);
            add(&bg, &env, "b1", RR).await.expect("added");
            bg.update_client_conn_state("b1", endpoints_state(&[0, 1]))
                .await
                .expect("updated");
            gator.add("b2", 1);
            add(&bg, &env, "b2", RR).await.expect("added");
            bg.update_client_conn_state("b2", endpoints_state(&[2, 3]))
                .await
                .expect("updated");
            let m = ready_sub_conns(&env, 4).await;
            env.cc
                .wait_for_round_robin(&pick_list(&m, &[0, 0, 1, 1, 2, 3]))
                .await;

            gator.stop();
            bg.close().await;
            let mut first: Vec<SubConnId> = Vec::new();
            for _ in 0..4 {
                first.push(env.cc.next_shutdown().await);
            }
            first.sort();
            let mut all: Vec<SubConnId> = m.values().map(|s| s.id()).collect();
            all.sort();
            assert_eq!(first, all);
            assert_eq!(env.lifecycle.unclosed(), Vec::<String>::new());
        },
    );
}
