//! Systematic search: bounded exploration finds a depth-2 bug exactly at
//! bound 1, and `minimize` shrinks failing schedules to their fewest
//! preemptions; the shrunk leak of `pre-8095` does not leak under `pr-8095`.

use std::cell::Cell;
use std::rc::Rc;

use lbsim::experiment::search;
use lbsim::experiment::{Model as _, StrategySpec};
use lbsim::grpc::Variant;
use lbsim::scenario::Scenario;
use lbsim::scenario::driver::{GrpcModel, MAX_STALL};
use lbsim::sim::strategy::{RandomStrategy, Replay, StrategyKind};
use lbsim::sim::{self, Outcome, RunConfig, Sim, Unbounded, go};

/// Toy bug of depth 2 (as in tests/kernel.rs): the reader must run between
/// the writer's two steps; it then panics.
async fn depth2_bug() {
    let x = Rc::new(Cell::new(0));
    let done = Rc::new(Unbounded::<()>::new("done"));
    let (x1, d1) = (x.clone(), done.clone());
    go("writer", async move {
        x1.set(1);
        sim::yield_now().await;
        x1.set(2);
        d1.put(()).await.unwrap();
    })
    .await;
    let (x2, d2) = (x.clone(), done.clone());
    go("reader", async move {
        assert_ne!(x2.get(), 1, "reader saw the intermediate value");
        d2.put(()).await.unwrap();
    })
    .await;
    done.get().await;
    done.get().await;
}

#[test]
fn depth_two_bug_is_found_at_bound_one_and_not_zero() {
    let cfg = RunConfig::new(0);
    let at = |k| {
        // The toy shares a plain cell without a lock (a data race), which
        // the sleep-set reduction assumes away: search it unpruned.
        search::explore(
            search::Search::bounded(k).unpruned(),
            None,
            None,
            1,
            &cfg,
            |sim, cfg| sim.run(cfg, depth2_bug()),
        )
    };
    let k0 = at(0);
    let k1 = at(1);
    assert!(k0.complete && k1.complete);
    assert_eq!(k0.failures_total(), 0, "bound 0 cannot find a depth-2 bug");
    assert!(k1.count(Outcome::Panic) > 0, "bound 1 finds it");
    assert!(k1.schedules > k0.schedules);
    // The reported schedule replays to the same failure.
    let found = &k1.failures[0];
    assert_eq!(found.preemptions, 1);
    let mut sim = Sim::new(Box::new(Replay::new(found.schedule.clone())));
    assert_eq!(sim.run(&cfg, depth2_bug()).outcome, Outcome::Panic);
}

/// A race-free model (every shared value is used under a kernel mutex) with
/// an atomicity violation: two incrementers read and write the counter in
/// separate critical sections, so one update can be lost. Two bystanders
/// work on locks of their own, which the sleep sets can reorder freely. The
/// final value goes to `out`; a lost update panics.
async fn lost_update(out: Rc<Cell<u32>>) {
    let counter = Rc::new((sim::Mutex::new("counter.mu"), Cell::new(0u32)));
    let done = Rc::new(Unbounded::<()>::new("done"));
    for name in ["inc-a", "inc-b"] {
        let (c, d) = (counter.clone(), done.clone());
        go(name, async move {
            let g = c.0.lock().await;
            let seen = c.1.get();
            g.unlock().await;
            let g = c.0.lock().await;
            c.1.set(seen + 1);
            g.unlock().await;
            d.put(()).await.unwrap();
        })
        .await;
    }
    for name in ["bystander-x", "bystander-y"] {
        let d = done.clone();
        go(name, async move {
            let own = sim::Mutex::new(name);
            for _ in 0..2 {
                own.lock().await.unlock().await;
            }
            d.put(()).await.unwrap();
        })
        .await;
    }
    for _ in 0..4 {
        done.get().await;
    }
    let g = counter.0.lock().await;
    out.set(counter.1.get());
    g.unlock().await;
    assert_eq!(counter.1.get(), 2, "an increment was lost");
}

#[test]
fn sleep_sets_prune_reorderings_but_keep_every_outcome() {
    let cfg = RunConfig::new(0);
    for k in 0..=2 {
        let explore = |how: search::Search| {
            let finals = Rc::new(std::cell::RefCell::new(std::collections::BTreeSet::new()));
            let f = finals.clone();
            let ex = search::explore(how, None, None, 1, &cfg, move |sim, cfg| {
                let out = Rc::new(Cell::new(0));
                let r = sim.run(cfg, lost_update(out.clone()));
                if !sim.strategy().redundant() {
                    f.borrow_mut().insert((r.outcome, out.get()));
                }
                r
            });
            let finals = finals.borrow().clone();
            (ex, finals)
        };
        let (pruned, pruned_finals) = explore(search::Search::bounded(k));
        let (plain, plain_finals) = explore(search::Search::bounded(k).unpruned());
        assert!(pruned.complete && plain.complete, "K={k}");
        // Same outcomes and final values, same failures found.
        assert_eq!(pruned_finals, plain_finals, "K={k}");
        assert_eq!(
            pruned.outcomes.keys().collect::<Vec<_>>(),
            plain.outcomes.keys().collect::<Vec<_>>(),
            "K={k}"
        );
        assert_eq!(
            pruned.count(Outcome::Panic) > 0,
            plain.count(Outcome::Panic) > 0,
            "K={k}"
        );
        // Far fewer schedules.
        assert!(pruned.pruned > 0, "K={k}: nothing pruned");
        assert!(
            pruned.schedules * 2 < plain.schedules,
            "K={k}: {} pruned vs {} plain",
            pruned.schedules,
            plain.schedules
        );
        // The lost update needs the other incrementer to run between the
        // read and the write: a preemption (K = 0 still reaches it when an
        // incrementer blocks on the lock).
        if k >= 1 {
            assert!(plain.count(Outcome::Panic) > 0, "K={k}");
        }
    }
}

/// The first leaking schedule `lbsim explore scenarios/close_race_minimal.toml
/// --variant pre-8095 --preemption-bound 2 --choice-bound 0` finds (schedule
/// #92,993, results/README.md). Regenerate it with that command if the model
/// changes.
const EXPLORED_LEAK: &str = "1:0*6.1*3.2*7.3*4.4*8.c0*2.4*3.5*55.0*2.6*12.5*17.0*2.4*2.7*6.2*21.6*8.8*2.7*6.2*21.6*21.5*55.0*2.9*12.5*16.0*2.10*6.2*21.9*8.11*2.1*2.12*2.7*6.2*21.6*9.13*6.2*21.6*8.14*2.13*7.2*21.6*26.2*9.5*4.6*21.5*13.0*5.15*2.t.16*2.0*9.2.c0.2*7.c0.2*9.3.c0.3*4.4*2.c0.4*8.5*6.4*5.6*2.4*21.c0.4*5.3*3.2*4.0.c0.0*3.5.c0.17*6.0*2.10*4.18*7.0*3.15*3";

#[test]
fn the_leak_explore_found_needs_two_preemptions_and_only_the_buggy_variant_leaks() {
    let scenario = Scenario::load("scenarios/close_race_minimal.toml").unwrap();
    let model = GrpcModel::new(&scenario);
    let schedule = lbsim::sim::Schedule::parse(EXPLORED_LEAK).unwrap();
    let cfg = model.run_config(schedule.seed);
    let replay = |variant| {
        let mut sim = Sim::new(Box::new(Replay::new(schedule.clone())));
        model.run_report(variant, &mut sim, &cfg)
    };
    let (r, check) = replay(Variant::Pre8095);
    assert_eq!(r.outcome, Outcome::Leak);
    // One switch away from the priority worker and one timer fired while it
    // could still run (the RPC's answer arriving during its stall).
    assert_eq!((r.preemptions, r.timer_preemptions), (2, 1));
    assert!(
        check.unclosed.iter().any(|u| u.contains("priority-0-1")),
        "the demoted child is never closed: {:?}",
        check.unclosed
    );
    for variant in [Variant::Pr8095, Variant::PriorityLock, Variant::A115] {
        assert_eq!(replay(variant).0.outcome, Outcome::Ok, "{variant}");
    }
}

#[test]
fn a_stopped_search_reports_what_it_explored_as_interrupted() {
    // The flag is raised during the fifth run; the search stops after it.
    static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let cfg = RunConfig::new(0);
    let mut runs = 0;
    let how = search::Search {
        stop: Some(&STOP),
        ..search::Search::bounded(2).unpruned()
    };
    let ex = search::explore(how, None, None, 1, &cfg, |sim, cfg| {
        runs += 1;
        if runs == 5 {
            STOP.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        sim.run(cfg, depth2_bug())
    });
    assert_eq!(ex.schedules, 5);
    assert!(ex.interrupted && !ex.complete);
    // Without the flag the same search runs to the end.
    STOP.store(false, std::sync::atomic::Ordering::SeqCst);
    let full = search::explore(
        search::Search::bounded(2).unpruned(),
        None,
        None,
        1,
        &cfg,
        |sim, cfg| sim.run(cfg, depth2_bug()),
    );
    assert!(full.complete && !full.interrupted && full.schedules > 5);
}

#[test]
fn the_choice_bound_limits_non_first_model_choices() {
    // Two model choices among three alternatives: 9 schedules; at most one
    // of them other than the first: 1 + 2 + 2 = 5; none: 1.
    let cfg = RunConfig::new(0);
    for (bound, want) in [(None, 9), (Some(2), 9), (Some(1), 5), (Some(0), 1)] {
        let how = search::Search {
            choice_bound: bound,
            ..search::Search::bounded(0)
        };
        let ex = search::explore(how, None, None, 0, &cfg, |sim, cfg| {
            sim.run(cfg, async {
                sim::choose(3);
                sim::choose(3);
            })
        });
        assert!(ex.complete);
        assert_eq!(ex.schedules, want, "choice bound {bound:?}");
    }
}

#[test]
fn minimize_shrinks_a_random_failure_to_one_preemption() {
    // A random run that hits the bug uses many preemptions; one suffices.
    let mut sim = Sim::new(Box::new(RandomStrategy::new()));
    let cfg = RunConfig {
        record: true,
        ..RunConfig::new(0)
    };
    let failing = (0..500)
        .map(|seed| {
            sim.run(
                &RunConfig {
                    seed,
                    ..cfg.clone()
                },
                depth2_bug(),
            )
        })
        .find(|r| r.outcome == Outcome::Panic)
        .expect("random scheduling hits the toy bug");
    let m = search::minimize(
        failing.schedule.as_ref().unwrap(),
        Outcome::Panic,
        &cfg,
        |sim, cfg| sim.run(cfg, depth2_bug()),
    )
    .expect("the recorded schedule fails");
    assert_eq!(m.preemptions, 1);
    assert!(m.original_preemptions > 1, "the random run took a detour");
    let mut sim = Sim::new(Box::new(Replay::new(m.schedule.clone())));
    let r = sim.run(&cfg, depth2_bug());
    assert_eq!(r.outcome, Outcome::Panic);
    assert_eq!(r.preemptions, 1);
}

#[test]
fn minimized_flagship_leak_replays_and_does_not_leak_after_the_fix() {
    // The reference leak of the flagship scenario (results/README.md).
    let scenario = Scenario::load("scenarios/switch_to_lower_priority_and_back.toml").unwrap();
    let model = GrpcModel::new(&scenario);
    let cfg = RunConfig {
        max_early_fire: MAX_STALL,
        record: true,
        grace: scenario.client.leak_check_grace,
        ..RunConfig::new(12612280629371687117)
    };
    let timed = StrategySpec::new(
        &StrategyKind::Timed,
        &scenario.runtime,
        model.expected_steps(),
    );
    let mut sim = Sim::new(timed.build());
    let (r, _) = model.run_report(Variant::Pre8095, &mut sim, &cfg);
    assert_eq!(r.outcome, Outcome::Leak, "the reference seed leaks");
    let m = search::minimize(
        r.schedule.as_ref().unwrap(),
        Outcome::Leak,
        &cfg,
        |sim, cfg| model.run_report(Variant::Pre8095, sim, cfg).0,
    )
    .expect("the recorded schedule leaks");
    assert!(m.preemptions < r.preemptions);
    // Timer fires while a task could continue count as preemptions; the
    // leak needs about three of each.
    assert!(m.preemptions <= 8, "{} preemptions", m.preemptions);

    let replay = |variant| {
        let mut sim = Sim::new(Box::new(Replay::new(m.schedule.clone())));
        model.run_report(variant, &mut sim, &cfg).0
    };
    let before = replay(Variant::Pre8095);
    assert_eq!(before.outcome, Outcome::Leak);
    assert_eq!(before.preemptions, m.preemptions);
    assert!(
        before.preemptions - before.timer_preemptions <= 4,
        "{} task switches",
        before.preemptions - before.timer_preemptions
    );
    // The same schedule under the fix (it may diverge where the code
    // differs; the run must still complete without leaking).
    let after = replay(Variant::Pr8095);
    assert_eq!(
        after.outcome,
        Outcome::Ok,
        "pr-8095 under the minimized schedule"
    );
}
