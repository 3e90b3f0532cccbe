//! Reference §2.2 (the balancergroup tests added after PR #8095) and §4.3.2:
//! closing the group is terminal. These run under the variants that include
//! PR #8095 (`pr-8095` and `a115`). No expectation here depends on a timer,
//! so they run under the plain random strategy, which may also fire timers
//! (the polls' sleeps) early.

use std::cell::RefCell;
use std::rc::Rc;

use lbsim::grpc::balancer::{
    Address, ClientConn, GrpcError, NewSubConnOptions, Registry, StateListener, SubConnState,
};
use lbsim::grpc::connectivity::ConnectivityState;
use lbsim::grpc::variant::Variant;

use crate::balancergroup::{add, new_group};
use crate::harness::*;

const SEEDS: u64 = 50;
const TERMINAL: [Variant; 2] = [Variant::Pr8095, Variant::A115];
const POLICY: &str = "stub-after-close";

type Calls = Rc<RefCell<Vec<String>>>;

/// An env with the counting stub registered, and its call log.
fn stub_env(variant: Variant) -> (Env, Calls) {
    let calls: Calls = Rc::new(RefCell::new(Vec::new()));
    let mut reg = Registry::new();
    reg.register(counting_stub(POLICY, calls.clone()));
    (Env::new(variant, reg), calls)
}

/// `…UpdateClientConnState_AfterClose`: returns no error and the child is
/// not called.
#[test]
fn bg_update_client_conn_state_after_close() {
    run_scenario(
        "UpdateClientConnState_AfterClose",
        Sched::Random,
        &TERMINAL,
        SEEDS,
        |variant| async move {
            let (env, calls) = stub_env(variant);
            let bg = new_group(&env, None, 0);
            add(&bg, &env, "b1", POLICY).await.expect("added");
            bg.close().await;
            assert_eq!(calls.borrow().as_slice(), ["close"]);
            bg.update_client_conn_state("b1", endpoints_state(&[0]))
                .await
                .expect("no error after close");
            assert_eq!(calls.borrow().as_slice(), ["close"]);
        },
    );
}

/// `…ResolverError_AfterClose`: the child is not called.
#[test]
fn bg_resolver_error_after_close() {
    run_scenario(
        "ResolverError_AfterClose",
        Sched::Random,
        &TERMINAL,
        SEEDS,
        |variant| async move {
            let (env, calls) = stub_env(variant);
            let bg = new_group(&env, None, 0);
            add(&bg, &env, "b1", POLICY).await.expect("added");
            bg.close().await;
            bg.resolver_error(GrpcError::new("resolver error")).await;
            assert_eq!(calls.borrow().as_slice(), ["close"]);
        },
    );
}

/// `…ExitIdleOne_AfterClose` and `TestBalancerExitIdle_AfterClose`.
#[test]
fn bg_exit_idle_after_close() {
    run_scenario(
        "ExitIdle_AfterClose",
        Sched::Random,
        &TERMINAL,
        SEEDS,
        |variant| async move {
            let (env, calls) = stub_env(variant);
            let bg = new_group(&env, None, 0);
            add(&bg, &env, "b1", POLICY).await.expect("added");
            bg.close().await;
            bg.exit_idle_one("b1").await;
            bg.exit_idle().await;
            assert_eq!(calls.borrow().as_slice(), ["close"]);
        },
    );
}

/// `…ExitIdleOne_NonExistentID`: no child is called.
#[test]
fn bg_exit_idle_one_non_existent_id() {
    run_scenario(
        "ExitIdleOne_NonExistentID",
        Sched::Random,
        &TERMINAL,
        SEEDS,
        |variant| async move {
            let (env, calls) = stub_env(variant);
            let bg = new_group(&env, None, 0);
            add(&bg, &env, "b1", POLICY).await.expect("added");
            bg.exit_idle_one("no-such-child").await;
            assert!(calls.borrow().is_empty(), "{:?}", calls.borrow());
            bg.close().await;
        },
    );
}

/// `TestBalancerExitIdle_All`: ExitIdle reaches every child.
#[test]
fn bg_exit_idle_all() {
    run_scenario(
        "ExitIdle_All",
        Sched::Random,
        &TERMINAL,
        SEEDS,
        |variant| async move {
            let (env, calls) = stub_env(variant);
            let bg = new_group(&env, None, 0);
            for id in ["b1", "b2", "b3"] {
                add(&bg, &env, id, POLICY).await.expect("added");
            }
            bg.exit_idle().await;
            assert_eq!(calls.borrow().as_slice(), ["exit_idle"; 3]);
            bg.close().await;
            assert_eq!(env.lifecycle.unclosed(), Vec::<String>::new());
        },
    );
}

/// §4.3.2: after Close, Add fails; Remove, UpdateClientConnState,
/// ResolverError, ExitIdle and ExitIdleOne never reach a child; a child's
/// NewSubConn fails; a SubConn state is not delivered to its child.
#[test]
fn bg_close_is_terminal() {
    run_scenario(
        "close is terminal",
        Sched::Random,
        &TERMINAL,
        SEEDS,
        |variant| async move {
            const CHILD: &str = "stub-subconn-after-close";
            let calls: Calls = Rc::new(RefCell::new(Vec::new()));
            let child_ccs: Rc<RefCell<Vec<Rc<dyn ClientConn>>>> = Rc::default();
            let delivered: Calls = Rc::default();
            let mut reg = Registry::new();
            reg.register(counting_stub(POLICY, calls.clone()));
            let (ccs, seen) = (child_ccs.clone(), delivered.clone());
            reg.register(StubBuilder::new(
                CHILD,
                StubFuncs {
                    init: Some(Rc::new(move |d| ccs.borrow_mut().push(d.cc.clone()))),
                    update_client_conn_state: Some(Rc::new(move |d, s| {
                        let seen = seen.clone();
                        Box::pin(async move {
                            let listener: StateListener = Rc::new(move |st: SubConnState| {
                                seen.borrow_mut().push(st.connectivity_state.to_string());
                                Box::pin(async {})
                            });
                            let addrs = s.resolver_state.endpoints[0].addresses.clone();
                            let sc =
                                d.cc.new_sub_conn(
                                    addrs,
                                    NewSubConnOptions {
                                        state_listener: Some(listener),
                                    },
                                )
                                .await?;
                            sc.connect().await;
                            Ok(())
                        })
                    })),
                    ..Default::default()
                },
            ));
            let env = Env::new(variant, reg);
            let bg = new_group(&env, None, lbsim::sim::SEC);
            add(&bg, &env, "b1", POLICY).await.expect("added");
            add(&bg, &env, "b2", CHILD).await.expect("added");
            bg.update_client_conn_state("b2", endpoints_state(&[0]))
                .await
                .expect("updated");
            let sc = env.cc.next_sub_conn_for(&addr(0)).await;
            sc.update_state(ConnectivityState::Ready).await;
            assert_eq!(delivered.borrow().as_slice(), ["READY"]);

            bg.close().await;
            assert_eq!(calls.borrow().as_slice(), ["close"]);
            // Once by the group, once by the graceful-switch wrapper.
            env.cc.expect_shutdowns(&[&sc, &sc]).await;
            assert_eq!(env.lifecycle.unclosed(), Vec::<String>::new());

            let e = add(&bg, &env, "b3", POLICY)
                .await
                .expect_err("Add after close");
            assert_eq!(e.to_string(), "balancergroup: already closed");
            bg.remove("b1").await;
            bg.remove_immediately("b1").await;
            bg.update_client_conn_state("b1", endpoints_state(&[1]))
                .await
                .expect("no error after close");
            bg.resolver_error(GrpcError::new("resolver error")).await;
            bg.exit_idle().await;
            bg.exit_idle_one("b1").await;
            assert_eq!(calls.borrow().as_slice(), ["close"]);
            assert_eq!(bg.cached_children(), 0);

            let child_cc = child_ccs.borrow()[0].clone();
            let r = child_cc
                .new_sub_conn(
                    vec![Address::new(&addr(5))],
                    NewSubConnOptions {
                        state_listener: None,
                    },
                )
                .await;
            // The child's ClientConn is the graceful-switch wrapper, which
            // refuses first (in Go too); nothing reaches the parent.
            assert!(r.is_err(), "NewSubConn after close succeeded");
            sc.update_state(ConnectivityState::Idle).await;
            assert_eq!(delivered.borrow().as_slice(), ["READY"]);
            env.cc.assert_no_sub_conn_change();
        },
    );
}

/// gRFC A115's `TestBalancerGroup_RemoveImmediately` (cache 5 s):
/// RemoveImmediately closes at once, Remove caches, Close closes the cached
/// child.
#[test]
fn bg_remove_immediately() {
    run_scenario(
        "RemoveImmediately",
        Sched::LateTimers,
        &[Variant::A115],
        SEEDS,
        |variant| async move {
            let (env, _) = stub_env(variant);
            let bg = new_group(&env, None, 5 * lbsim::sim::SEC);
            add(&bg, &env, "child-1", POLICY).await.expect("added");
            add(&bg, &env, "child-2", POLICY).await.expect("added");
            bg.remove_immediately("child-1").await;
            assert_eq!(env.lifecycle.closed_count(), 1);
            bg.remove("child-2").await;
            lbsim::sim::sleep(SHORT).await;
            assert_eq!(env.lifecycle.closed_count(), 1, "a cached child was closed");
            assert_eq!(bg.cached_children(), 1);
            bg.close().await;
            assert_eq!(env.lifecycle.unclosed(), Vec::<String>::new());
        },
    );
}
