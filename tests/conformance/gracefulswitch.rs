//! The graceful-switch balancer's `Close` and the goroutine each swap starts
//! to close the old child (9b990b635, part of `a115`).

use std::cell::Cell;
use std::rc::Rc;

use lbsim::grpc::balancer::{BalancerState, ErrPicker, PickError, Registry};
use lbsim::grpc::connectivity::ConnectivityState;
use lbsim::grpc::gracefulswitch::GracefulSwitch;
use lbsim::grpc::variant::Variant;
use lbsim::sim;

use crate::harness::*;

const SEEDS: u64 = 50;

/// A swap hands the old child to a goroutine that closes it. From
/// 9b990b635 `Close` waits for that goroutine; before it, `Close` returns
/// while the old child may still be closing. The old child here takes
/// 10 ms to close.
#[test]
fn a115_close_waits_for_the_swap_goroutines() {
    run_scenario(
        "gracefulswitch close",
        Sched::LateTimers,
        &ALL_VARIANTS,
        SEEDS,
        |variant| async move {
            const SLOW: &str = "slow-to-close";
            const READY: &str = "ready-at-once";
            let closed = Rc::new(Cell::new(false));
            let c = closed.clone();
            let mut reg = Registry::new();
            reg.register(StubBuilder::new(
                SLOW,
                StubFuncs {
                    close: Some(Rc::new(move |_, ()| {
                        let c = c.clone();
                        Box::pin(async move {
                            sim::sleep(10 * sim::MS).await;
                            c.set(true);
                        })
                    })),
                    ..Default::default()
                },
            ));
            reg.register(StubBuilder::new(
                READY,
                StubFuncs {
                    update_client_conn_state: Some(Rc::new(|d, _| {
                        Box::pin(async move {
                            d.cc.update_state(BalancerState {
                                connectivity_state: ConnectivityState::Ready,
                                picker: Rc::new(ErrPicker(PickError::NoSubConnAvailable)),
                            })
                            .await;
                            Ok(())
                        })
                    })),
                    ..Default::default()
                },
            ));
            let env = Env::new(variant, reg);
            let gsb = GracefulSwitch::new(FakeCc::new(), env.opts.clone());
            let builder = |name: &str| env.opts.registry.get(name).expect("registered");
            gsb.switch_to(builder(SLOW)).await.expect("switched");
            gsb.switch_to(builder(READY)).await.expect("switched");
            // The pending child reports READY: the swap starts the goroutine
            // that closes the slow child.
            gsb.update_client_conn_state(endpoints_state(&[0]))
                .await
                .expect("update accepted");
            gsb.close().await;
            assert_eq!(
                closed.get(),
                variant == Variant::A115,
                "{variant}: old child closed when Close returns"
            );
            sim::sleep(20 * sim::MS).await;
            assert!(closed.get(), "{variant}: old child closed in the end");
        },
    );
}
