//! The timed strategy's `runnext` model of Go wake-ups: a goroutine woken by
//! a running goroutine waits in the waker's processor until the waker blocks
//! (then `handoff`) or an idle processor steals it (`steal`); on one
//! processor nothing steals it.

use std::cell::Cell;
use std::rc::Rc;

use lbsim::sim::dist::Dist;
use lbsim::sim::strategy::{RuntimeModel, Timed};
use lbsim::sim::{self, Outcome, RunConfig, Sim, Unbounded, go};

const US: u64 = sim::US;

fn model(gomaxprocs: u32, steal: Option<u64>) -> RuntimeModel {
    RuntimeModel {
        gomaxprocs,
        step_cost: Dist::Const(100),
        wake_latency: Dist::Const(1_000),
        pause_prob: 0.0,
        pause: Dist::Const(0),
        handoff: steal.map(|_| Dist::Const(200)),
        steal: steal.map(Dist::Const),
        steal_prob: 1.0,
    }
}

/// A waker sends to a parked receiver, then stays busy for `busy` of virtual
/// time (a spin of yields), then blocks. Returns (when the receiver ran, when
/// the waker blocked), both relative to the send.
fn wake_while_busy(m: RuntimeModel, busy: u64) -> (u64, u64) {
    let woke = Rc::new(Cell::new(0u64));
    let blocked = Rc::new(Cell::new(0u64));
    let sent = Rc::new(Cell::new(0u64));
    let (w, b, s) = (woke.clone(), blocked.clone(), sent.clone());
    let mut simu = Sim::new(Box::new(Timed::new(m)));
    let report = simu.run(&RunConfig::new(7), async move {
        let ch = Rc::new(Unbounded::<()>::new("ch"));
        let done = Rc::new(Unbounded::<()>::new("done"));
        let (ch2, done2, w2) = (ch.clone(), done.clone(), w.clone());
        go("receiver", async move {
            ch2.get().await;
            w2.set(sim::now());
            done2.put(()).await.unwrap();
        })
        .await;
        // Let the receiver park.
        sim::sleep(50 * US).await;
        s.set(sim::now());
        ch.put(()).await.unwrap();
        let end = sim::now() + busy;
        while sim::now() < end {
            sim::yield_now().await;
        }
        b.set(sim::now());
        done.get().await;
    });
    assert_eq!(report.outcome, Outcome::Ok, "{}", report.describe());
    (woke.get() - sent.get(), blocked.get() - sent.get())
}

#[test]
fn without_steal_a_wake_costs_wake_latency() {
    let (woke, blocked) = wake_while_busy(model(2, None), 100 * US);
    assert!(woke < 5 * US, "woke after {woke} ns");
    assert!(blocked >= 100 * US);
}

#[test]
fn a_goroutine_woken_by_a_busy_one_is_stolen_after_steal() {
    let (woke, blocked) = wake_while_busy(model(2, Some(60 * US)), 100 * US);
    assert!(
        (60 * US..62 * US).contains(&woke),
        "stolen after {woke} ns (waker blocked at {blocked})"
    );
}

#[test]
fn a_goroutine_woken_by_a_busy_one_runs_when_the_waker_blocks() {
    let (woke, blocked) = wake_while_busy(model(2, Some(60 * US)), 10 * US);
    assert!(
        woke > blocked && woke < blocked + 2 * US,
        "ran at {woke} ns, waker blocked at {blocked} ns"
    );
}

#[test]
fn on_one_processor_nothing_steals() {
    let (woke, blocked) = wake_while_busy(model(1, Some(60 * US)), 100 * US);
    assert!(
        woke > blocked && woke < blocked + 2 * US,
        "ran at {woke} ns, waker blocked at {blocked} ns"
    );
}

#[test]
fn with_steal_prob_zero_nothing_steals_on_two_processors() {
    let m = RuntimeModel {
        steal_prob: 0.0,
        ..model(2, Some(60 * US))
    };
    let (woke, blocked) = wake_while_busy(m, 100 * US);
    assert!(
        woke > blocked && woke < blocked + 2 * US,
        "ran at {woke} ns, waker blocked at {blocked} ns"
    );
}

#[test]
fn a_scenario_sets_the_runnext_model_and_refuses_handoff_alone() {
    let base = std::fs::read_to_string("scenarios/validation_probe.toml").unwrap();
    let with = |runtime: &str| {
        let text = match base.find("\n[runtime]").map(|i| i + 1) {
            Some(i) => {
                let end = base[i..].find("\n[run]").map_or(base.len(), |j| i + j);
                format!("{}{runtime}\n{}", &base[..i], &base[end..])
            }
            None => base.replace("\n[run]", &format!("\n{runtime}\n\n[run]")),
        };
        lbsim::scenario::Scenario::parse("t.toml", &text)
    };
    let s = with("[runtime]\nsteal = \"20us\"\nhandoff = \"200ns\"\nsteal_prob = 0.5").unwrap();
    assert_eq!(s.runtime.steal, Some(Dist::Const(20 * US)));
    assert_eq!(s.runtime.handoff, Some(Dist::Const(200)));
    assert_eq!(s.runtime.steal_prob, 0.5);
    let e = with("[runtime]\nhandoff = \"200ns\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("`handoff` is set without `steal`"), "{e}");
    let e = with("[runtime]\nsteal = \"20us\"\nsteal_prob = 1.5")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a probability"), "{e}");
}
