//! Reference §1.21: the priority package's other test files
//! (`config_test.go`, `ignore_resolve_now_test.go`).
//!
//! `TestCompareStringSlice` has no counterpart: the port compares priority
//! lists with `Vec`'s `==`, not a helper of its own.

use std::rc::Rc;

use lbsim::grpc::balancer::ClientConn;
use lbsim::grpc::priority::ignore_resolve_now::IgnoreResolveNowClientConn;
use lbsim::grpc::priority::{Child, LbConfig};
use lbsim::grpc::variant::Variant;

use crate::harness::*;

fn config(children: &[&str], priorities: &[&str]) -> LbConfig {
    let mut c = LbConfig::default();
    for name in children {
        c.children
            .insert(name.to_string(), Child::new("round_robin"));
    }
    c.priorities = priorities.iter().map(|p| p.to_string()).collect();
    c
}

/// `TestParseConfig`, for the validation the port keeps (JSON parsing is
/// not ported: configs are built as values).
#[test]
fn p1_21_parse_config_validation() {
    let missing_child = config(&["child-1", "child-2"], &["child-1", "child-2", "child-3"]);
    let err = missing_child
        .validate()
        .expect_err("a priority without a child");
    assert!(err.contains("child-3"), "{err}");

    let unused_child = config(&["child-1", "child-2", "child-3"], &["child-1", "child-2"]);
    let err = unused_child
        .validate()
        .expect_err("a child without a priority");
    assert!(err.contains("child-3"), "{err}");

    let mut good = config(
        &["child-1", "child-2", "child-3"],
        &["child-1", "child-2", "child-3"],
    );
    good.children
        .get_mut("child-1")
        .unwrap()
        .ignore_reresolution_requests = true;
    good.validate().expect("a valid config");
    let names: Vec<_> = good.children.keys().cloned().collect();
    assert_eq!(names, ["child-1", "child-2", "child-3"]);
    let ignoring: Vec<bool> = good
        .children
        .values()
        .map(|c| c.ignore_reresolution_requests)
        .collect();
    assert_eq!(ignoring, [true, false, false]);
    assert!(
        good.children
            .values()
            .all(|c| c.config.name == "round_robin")
    );
}

/// `TestIgnoreResolveNowClientConn`: the flag is mutable on a live wrapper.
#[test]
fn p1_21_ignore_resolve_now_client_conn() {
    run_scenario(
        "1.21 ignore_resolve_now",
        Sched::LateTimers,
        &[Variant::Pre8095],
        5,
        |_| async move {
            let cc = FakeCc::new();
            let w = IgnoreResolveNowClientConn::new(cc.clone() as Rc<dyn ClientConn>, false);
            w.resolve_now().await;
            assert_eq!(cc.resolve_now_count(), 1);

            w.update_ignore_resolve_now(true);
            for _ in 0..5 {
                w.resolve_now().await;
            }
            lbsim::sim::sleep(SHORT).await;
            assert_eq!(
                cc.resolve_now_count(),
                1,
                "ResolveNow forwarded while ignored"
            );

            w.update_ignore_resolve_now(false);
            w.resolve_now().await;
            assert_eq!(cc.resolve_now_count(), 2);
        },
    );
}
