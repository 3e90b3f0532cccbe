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
use lbsim::sim::strategy::{RandomStrategy, Reduction, Replay, StrategyKind};
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

/// Two tasks that lock and unlock a mutex of their own twice, then report
/// on `done`: steps the reductions can reorder freely.
async fn bystanders(done: &Rc<Unbounded<()>>) {
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
}

/// Explores `model` and collects, over the schedules that are not
/// redundant, each outcome with the value the model left in its cell.
fn explore_finals<T, F>(
    how: search::Search,
    model: impl Fn(Rc<Cell<T>>) -> F,
) -> (
    search::Exploration,
    std::collections::BTreeSet<(Outcome, T)>,
)
where
    T: Copy + Default + Ord,
    F: std::future::Future<Output = ()> + 'static,
{
    let finals = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let ex = search::explore(how, None, None, 1, &RunConfig::new(0), |sim, cfg| {
        let out = Rc::new(Cell::new(T::default()));
        let r = sim.run(cfg, model(out.clone()));
        if !sim.strategy().redundant() {
            finals.borrow_mut().insert((r.outcome, out.get()));
        }
        r
    });
    (ex, finals.into_inner())
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
    bystanders(&done).await;
    for _ in 0..4 {
        done.get().await;
    }
    let g = counter.0.lock().await;
    out.set(counter.1.get());
    g.unlock().await;
    assert_eq!(counter.1.get(), 2, "an increment was lost");
}

#[test]
fn reductions_prune_reorderings_but_keep_every_outcome() {
    for k in 0..=2 {
        let explore = |how| explore_finals(how, lost_update);
        let (plain, plain_finals) = explore(search::Search::bounded(k).unpruned());
        let mut executions = Vec::new();
        for reduction in [Reduction::SleepSets, Reduction::Dpor] {
            let (pruned, pruned_finals) = explore(search::Search::bounded(k).with(reduction));
            eprintln!(
                "lost update K={k} {reduction:?}: {} (+{} redundant) vs {} plain",
                pruned.schedules, pruned.redundant, plain.schedules
            );
            executions.push(pruned.schedules + pruned.redundant);
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
            // Fewer schedules; far fewer once preemptions multiply them.
            let factor = if k == 0 { 1 } else { 2 };
            assert!(
                pruned.schedules * factor < plain.schedules,
                "K={k}: {} pruned vs {} plain",
                pruned.schedules,
                plain.schedules
            );
        }
        // DPOR only branches where a race asks for it: fewer executions
        // than sleep sets alone once preemptions multiply the space.
        if k == 2 {
            assert!(executions[1] * 2 < executions[0], "K=2: {executions:?}");
        }
        // The lost update needs the other incrementer to run between the
        // read and the write: a preemption (K = 0 still reaches it when an
        // incrementer blocks on the lock).
        if k >= 1 {
            assert!(plain.count(Outcome::Panic) > 0, "K={k}");
        }
    }
}

/// Three tasks take one mutex in turn and append their number to a log
/// inside it, yielding while they hold it; `c` starts only after `a` fired
/// an event at the end of its turn. `out` gets the log: the order of the
/// critical sections (123, 132 or 213).
async fn lock_order(out: Rc<Cell<u32>>) {
    let shared = Rc::new((sim::Mutex::new("m"), Cell::new(0u32)));
    let a_done = Rc::new(sim::Event::new("a_done"));
    let done = Rc::new(Unbounded::<()>::new("done"));
    for (name, id) in [("a", 1), ("b", 2), ("c", 3)] {
        let (m, ev, d) = (shared.clone(), a_done.clone(), done.clone());
        go(name, async move {
            if id == 3 {
                ev.wait().await;
            }
            let g = m.0.lock().await;
            sim::yield_now().await;
            m.1.set(m.1.get() * 10 + id);
            sim::yield_now().await;
            g.unlock().await;
            if id == 1 {
                ev.fire().await;
            }
            d.put(()).await.unwrap();
        })
        .await;
    }
    for _ in 0..3 {
        done.get().await;
    }
    out.set(shared.1.get());
}

#[test]
fn the_search_skips_steps_that_only_block_and_still_reaches_every_order() {
    // Random scheduling runs tasks whose lock or wait only blocks; the
    // search does not, and must still reach every order sampling reaches.
    let mut sampled = std::collections::BTreeSet::new();
    let mut sim = Sim::new(Box::new(RandomStrategy::new()));
    for seed in 0..2_000 {
        let out = Rc::new(Cell::new(0));
        let r = sim.run(&RunConfig::new(seed), lock_order(out.clone()));
        assert_eq!(r.outcome, Outcome::Ok);
        sampled.insert(out.get());
    }
    assert_eq!(sampled, [123, 132, 213].into());
    for how in [
        search::Search::bounded(3).unpruned(),
        search::Search::bounded(3).with(Reduction::SleepSets),
        search::Search::bounded(3).with(Reduction::Dpor),
    ] {
        let (ex, finals) = explore_finals(how, lock_order);
        assert!(ex.complete);
        let orders: std::collections::BTreeSet<u32> = finals.iter().map(|&(_, v)| v).collect();
        assert_eq!(orders, sampled, "{:?}", ex.reduction);
    }
    // Taking the mutex from a holder needs no preemption once the holder
    // yields inside its critical section: the search reaches every order
    // at bound 1 too.
    let (_, finals) = explore_finals(search::Search::bounded(1).with(Reduction::Dpor), lock_order);
    assert_eq!(finals.len(), 3);
}

/// A timer's callback racing a stop and a clock read, with a bystander
/// that arms a timer of its own: `out` gets 1 if the callback ran, 2 if the
/// stop cancelled it, 4 if the reader saw the deadline passed.
async fn timer_race(out: Rc<Cell<u32>>) {
    // The bits are shared under a kernel mutex: the reductions see every
    // use of them.
    let bits = Rc::new((sim::Mutex::new("bits"), Cell::new(0u32)));
    let set = |bits: Rc<(sim::Mutex, Cell<u32>)>, bit: u32| async move {
        let g = bits.0.lock().await;
        bits.1.set(bits.1.get() | bit);
        g.unlock().await;
    };
    let done = Rc::new(Unbounded::<()>::new("done"));
    let b = bits.clone();
    let timer = Rc::new(sim::after_func(sim::US, "callback", set(b, 1)).await);
    let (b, t, d) = (bits.clone(), timer.clone(), done.clone());
    go("stopper", async move {
        sim::yield_now().await;
        if t.stop().await {
            set(b, 2).await;
        }
        d.put(()).await.unwrap();
    })
    .await;
    let (b, d) = (bits.clone(), done.clone());
    go("reader", async move {
        sim::yield_now().await;
        if sim::now() >= sim::US {
            set(b, 4).await;
        }
        d.put(()).await.unwrap();
    })
    .await;
    let d = done.clone();
    go("sleeper", async move {
        sim::sleep(2 * sim::US).await;
        d.put(()).await.unwrap();
    })
    .await;
    for _ in 0..3 {
        done.get().await;
    }
    sim::sleep(5 * sim::US).await;
    let g = bits.0.lock().await;
    out.set(bits.1.get());
    g.unlock().await;
}

#[test]
fn timer_fires_commute_only_with_what_leaves_their_timer_and_the_clock_alone() {
    // A fire uses the clock, the timer queue and its timer; steps that use
    // none of them commute with it. The reductions must keep every outcome
    // of the plain search.
    for k in 0..=1 {
        let (plain, plain_finals) =
            explore_finals(search::Search::bounded(k).unpruned(), timer_race);
        assert!(plain.complete, "K={k}");
        for reduction in [Reduction::SleepSets, Reduction::Dpor] {
            let (reduced, finals) =
                explore_finals(search::Search::bounded(k).with(reduction), timer_race);
            eprintln!(
                "timer race K={k} {reduction:?}: {} (+{} redundant) vs {} plain",
                reduced.schedules, reduced.redundant, plain.schedules
            );
            assert!(reduced.complete, "K={k} {reduction:?}");
            assert_eq!(finals, plain_finals, "K={k} {reduction:?}");
        }
        if k >= 1 {
            // Stopped in time or not, and the clock read on either side.
            let values: std::collections::BTreeSet<u32> =
                plain_finals.iter().map(|&(_, v)| v).collect();
            assert!(
                values.contains(&2) && values.contains(&5),
                "K={k}: {values:?}"
            );
        }
    }
}

/// The shape of the balancergroup leak in miniature, with the closer woken
/// by a timer: a remover takes the outgoing lock, takes the child out of the
/// map and, the group still being started, caches it; a closer that sleeps
/// first clears the cache, then marks the group closed and closes what is
/// left in the map. A remover stalled between its check and its caching lets
/// the child escape both: one switch and one early timer fire. All shared
/// state is used under kernel mutexes; `out` gets whether the child was
/// closed.
async fn cache_vs_close(out: Rc<Cell<bool>>) {
    struct Group {
        outgoing: sim::Mutex,
        cache_mu: sim::Mutex,
        in_map: Cell<bool>,
        started: Cell<bool>,
        cached: Cell<bool>,
        closed: Cell<bool>,
    }
    let g = Rc::new(Group {
        outgoing: sim::Mutex::new("outgoing"),
        cache_mu: sim::Mutex::new("cache"),
        in_map: Cell::new(true),
        started: Cell::new(true),
        cached: Cell::new(false),
        closed: Cell::new(false),
    });
    let done = Rc::new(Unbounded::<()>::new("done"));
    bystanders(&done).await;
    let (r, d) = (g.clone(), done.clone());
    go("remover", async move {
        let o = r.outgoing.lock().await;
        r.in_map.set(false);
        if r.started.get() {
            let c = r.cache_mu.lock().await;
            r.cached.set(true);
            c.unlock().await;
        } else {
            r.closed.set(true);
        }
        o.unlock().await;
        d.put(()).await.unwrap();
    })
    .await;
    sim::sleep(sim::US).await;
    let c = g.cache_mu.lock().await;
    if g.cached.replace(false) {
        g.closed.set(true);
    }
    c.unlock().await;
    let o = g.outgoing.lock().await;
    g.started.set(false);
    if g.in_map.replace(false) {
        g.closed.set(true);
    }
    o.unlock().await;
    for _ in 0..3 {
        done.get().await;
    }
    let c = g.cache_mu.lock().await;
    // A child cached after the clear is closed when its cache timer fires,
    // long after the close: here, never.
    out.set(g.closed.get());
    c.unlock().await;
    assert!(out.get(), "the removed child was never closed");
}

#[test]
fn every_reduction_finds_the_timer_woken_cache_race_at_bound_two() {
    for k in 0..=2 {
        let explore = |how| explore_finals(how, cache_vs_close);
        let (plain, plain_finals) = explore(search::Search::bounded(k).unpruned());
        assert!(plain.complete, "K={k}");
        // Only two preemptions, one of them the early fire, reach it.
        assert_eq!(plain.count(Outcome::Panic) > 0, k == 2, "K={k}");
        for reduction in [Reduction::SleepSets, Reduction::Dpor] {
            let (reduced, finals) = explore(search::Search::bounded(k).with(reduction));
            eprintln!(
                "cache vs close K={k} {reduction:?}: {} (+{} redundant) vs {} plain",
                reduced.schedules, reduced.redundant, plain.schedules
            );
            assert!(reduced.complete, "K={k} {reduction:?}");
            assert_eq!(finals, plain_finals, "K={k} {reduction:?}");
            assert!(
                reduced.schedules <= plain.schedules,
                "K={k} {reduction:?}: {} vs {}",
                reduced.schedules,
                plain.schedules
            );
        }
    }
}

/// A leaking schedule `lbsim explore scenarios/close_race_minimal.toml
/// --variant pre-8095 --preemption-bound 2 --choice-bound 0 --reduction
/// dpor` found: its first, schedule #246,444 after 106 s (results/README.md).
/// Regenerate it with that command if the model changes.
const EXPLORED_LEAK: &str = "1:0*10.1*3.2*2.3*2.4*2.5*38.0*2.6*5.7*2.8*8.c0*2.8*3.9*69.0*2.10*12.9*23.0*2.8*2.11*10.5*31.10*8.12*2.11*6.5*31.10*21.9*69.0*2.13*12.9*22.0*2.14*10.5*31.13*8.15*2.1*2.16*2.11*6.5*31.10*9.17*10.5*31.10*8.18*2.17*7.5*31.10*26.5*9.9*4.10*21.9*21.0*5.19*2.t.20*2.0*20.4.c0.4*4.3*4.4*3.2*5.4*3.2*5.4*9.2*4.4*3.0*2.5.c0.5*7.c0.5*15.6.c0.6*7.8*8.7*4.8*2.c0.8*12.9*6.8*5.10*2.8*25.c0.8*5.6*3.5*2.c0.5*11.c0.5*11.0.c0.0*3.9.c0.21*6.0*2.14*4.22*7.0*3.19*3";

/// The model of `close_race_minimal`, [`EXPLORED_LEAK`] and its run
/// configuration.
fn explored_leak() -> (GrpcModel, lbsim::sim::Schedule, RunConfig) {
    let scenario = Scenario::load("scenarios/close_race_minimal.toml").unwrap();
    let model = GrpcModel::new(&scenario);
    let schedule = lbsim::sim::Schedule::parse(EXPLORED_LEAK).unwrap();
    let cfg = model.run_config(schedule.seed);
    (model, schedule, cfg)
}

#[test]
fn the_leak_explore_found_needs_two_preemptions_and_only_the_buggy_variant_leaks() {
    let (model, schedule, cfg) = explored_leak();
    let replay = |variant, schedule: &lbsim::sim::Schedule| {
        let mut sim = Sim::new(Box::new(Replay::new(schedule.clone())));
        let cfg = RunConfig {
            trace: true,
            ..cfg.clone()
        };
        let (r, check) = model.run_report(variant, &mut sim, &cfg);
        // Where the run stopped following the schedule, if it did.
        let left_at = sim.strategy().divergence().map(|d| {
            let n = d.strip_prefix("step ").and_then(|d| d.split(':').next());
            n.and_then(|n| n.parse::<usize>().ok())
                .expect("step N: why")
        });
        (r, check, left_at)
    };
    let (r, check, left_at) = replay(Variant::Pre8095, &schedule);
    assert_eq!((r.outcome, left_at), (Outcome::Leak, None));
    // One switch away from the priority worker and one timer fired while it
    // could still run (the RPC's answer arriving during its stall).
    assert_eq!((r.preemptions, r.timer_preemptions), (2, 1));
    assert!(
        check.unclosed.iter().any(|u| u.contains("priority-0-1")),
        "the demoted child is never closed: {:?}",
        check.unclosed
    );
    // The fixed variants take the same interleaving: the worker stalls in
    // Remove holding the outgoing lock and the channel closes. A schedule
    // is a list of positions, so it lines up only where the code takes the
    // same steps: pr-8095 and a115 start their two balancergroups (the
    // cluster_manager's, decisions 49-52 of the balancer serializer, and the
    // priority policy's, 66-69 of cluster_resolver.run) without `Start`'s
    // two lock pairs, and leave it only where their fix changes Close. Each
    // is followed well past the stall and closes the cached child: the
    // clear finds it.
    let mut aligned = schedule.clone();
    aligned.steps.drain(66..70);
    aligned.steps.drain(49..53);
    for (variant, schedule) in [
        (Variant::Pr8095, &aligned),
        (Variant::A115, &aligned),
        (Variant::PriorityLock, &schedule),
    ] {
        let (r, _, left_at) = replay(variant, schedule);
        assert_eq!(r.outcome, Outcome::Ok, "{variant}");
        assert!(
            left_at.is_some_and(|n| n > 750),
            "{variant}: left at {left_at:?}"
        );
        let trace = r.trace.as_ref().unwrap().render();
        assert!(
            trace.contains("timeoutCache: cleared 1 entries"),
            "{variant}"
        );
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
        let run = || {
            |sim: &mut Sim, cfg: &RunConfig| {
                sim.run(cfg, async {
                    sim::choose(3);
                    sim::choose(3);
                })
            }
        };
        let ex = search::explore(how.clone(), None, None, 0, &cfg, run());
        assert!(ex.complete);
        assert_eq!(ex.schedules, want, "choice bound {bound:?}");
        // Split at the model choices too, on one thread and on two.
        for jobs in [1, 2] {
            let split = search::explore_split(how.clone(), jobs, None, None, 0, &cfg, run);
            assert!(split.complete);
            assert_eq!(
                (split.schedules, split.branches > 0),
                (want, want > 1),
                "choice bound {bound:?}, {jobs} jobs"
            );
        }
    }
}

#[test]
fn client_failures_are_counted_and_kept_alike_whole_and_split() {
    // Two model choices among three: 9 schedules. The "client" fails when
    // both choices agree (3 schedules); the run itself always ends ok.
    let cfg = RunConfig::new(0);
    let how = search::Search::bounded(0);
    let run = || {
        |sim: &mut Sim, cfg: &RunConfig| {
            let picked = Rc::new(Cell::new((0, 0)));
            let out = picked.clone();
            let report = sim.run(cfg, async move {
                let a = sim::choose(3);
                out.set((a, sim::choose(3)));
            });
            let (a, b) = picked.get();
            search::Ran {
                report,
                client_error: (a == b).then(|| format!("both {a}")),
            }
        }
    };
    let whole = search::explore(how.clone(), None, None, 2, &cfg, run());
    assert!(whole.complete);
    assert_eq!(
        (
            whole.schedules,
            whole.client_failures,
            whole.failures_total()
        ),
        (9, 3, 0)
    );
    let kept = |ex: &search::Exploration| -> Vec<(u64, String, String)> {
        ex.first_client_failures
            .iter()
            .map(|c| (c.found.index, c.error.clone(), c.found.schedule.to_string()))
            .collect()
    };
    let first = kept(&whole);
    assert_eq!(first.len(), 2, "keeps as many as asked");
    assert_eq!(first[0].1, "both 0");
    for jobs in [1, 2] {
        let split = search::explore_split(how.clone(), jobs, None, None, 2, &cfg, run);
        assert!(split.complete && split.branches > 0);
        assert_eq!(split.client_failures, 3, "{jobs} jobs");
        assert_eq!(kept(&split), first, "{jobs} jobs");
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
        ..RunConfig::new(8412537345531533255)
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
    // Timer fires while a task could continue count as preemptions. This
    // seed shrinks to 13: 4 timer fires and 9 task switches (the close path
    // hands over between six goroutines while the worker stalls).
    assert!(m.preemptions <= 13, "{} preemptions", m.preemptions);

    let replay = |variant| {
        let mut sim = Sim::new(Box::new(Replay::new(m.schedule.clone())));
        model.run_report(variant, &mut sim, &cfg).0
    };
    let before = replay(Variant::Pre8095);
    assert_eq!(before.outcome, Outcome::Leak);
    assert_eq!(before.preemptions, m.preemptions);
    assert!(
        before.preemptions - before.timer_preemptions <= 9,
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

/// Replays a schedule and notes the decisions that were preemptions.
struct Preemptions {
    inner: Replay,
    at: Rc<std::cell::RefCell<Vec<usize>>>,
    decisions: usize,
}

impl lbsim::sim::strategy::Strategy for Preemptions {
    fn new_execution(&mut self, seed: u64) {
        self.inner.new_execution(seed);
    }
    fn next_task(
        &mut self,
        point: &lbsim::sim::strategy::Point<'_>,
    ) -> lbsim::sim::strategy::Decision {
        use lbsim::sim::strategy::Choice;
        let d = self.inner.next_task(point);
        let preempts = match d.choice {
            Choice::Task(t) => point.current.is_some_and(|c| c != t),
            Choice::Timer => {
                point.current.is_some() || point.next_timer.is_some_and(|n| n > point.now)
            }
        };
        if preempts {
            self.at.borrow_mut().push(self.decisions);
        }
        self.decisions += 1;
        d
    }
    fn choose(&mut self, n: usize) -> usize {
        self.decisions += 1;
        self.inner.choose(n)
    }
    fn name(&self) -> String {
        "preemptions".into()
    }
}

#[test]
fn dpor_finds_the_explored_leak_below_the_prefix_before_its_first_preemption() {
    // Every decision of the pinned leak up to its first preemption is
    // fixed; below that point DPOR must find a leak with two preemptions by
    // itself (BPOR's conservative points are needed for that).
    let (model, schedule, cfg) = explored_leak();
    let at = Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut sim = Sim::new(Box::new(Preemptions {
        inner: Replay::new(schedule.clone()),
        at: at.clone(),
        decisions: 0,
    }));
    assert_eq!(
        model.run_report(Variant::Pre8095, &mut sim, &cfg).0.outcome,
        Outcome::Leak
    );
    let first = at.borrow()[0];
    let how = search::Search {
        prefix: schedule.steps[..first].iter().map(|s| s.kind).collect(),
        choice_bound: Some(0),
        ..search::Search::bounded(2).with(Reduction::Dpor)
    };
    let ex = search::explore(how, None, None, 1, &cfg, |sim, cfg| {
        model.run_report(Variant::Pre8095, sim, cfg).0
    });
    assert!(ex.complete);
    assert_eq!(
        ex.prefix_followed, first,
        "the prefix is followed to its end"
    );
    assert!(
        ex.count(Outcome::Leak) > 0,
        "{} schedules, no leak",
        ex.schedules
    );
    assert_eq!(ex.failures[0].preemptions, 2);
}

/// Sleep sets against the preemption bound: `t` first takes a lock of its
/// own, then appends 1 to a log under the shared mutex; `u` appends 2
/// under it. `out` gets the log (12 or 21).
async fn own_lock_first(out: Rc<Cell<u32>>) {
    let shared = Rc::new((sim::Mutex::new("m"), Cell::new(0u32)));
    let done = Rc::new(Unbounded::<()>::new("done"));
    let (s, d) = (shared.clone(), done.clone());
    go("t", async move {
        let own = sim::Mutex::new("own");
        own.lock().await.unlock().await;
        let g = s.0.lock().await;
        s.1.set(s.1.get() * 10 + 1);
        g.unlock().await;
        d.put(()).await.unwrap();
    })
    .await;
    let (s, d) = (shared.clone(), done.clone());
    go("u", async move {
        let g = s.0.lock().await;
        s.1.set(s.1.get() * 10 + 2);
        g.unlock().await;
        d.put(()).await.unwrap();
    })
    .await;
    for _ in 0..2 {
        done.get().await;
    }
    out.set(shared.1.get());
}

#[test]
fn a_sleeping_task_stands_for_its_whole_run_not_its_first_step() {
    // Once `t` has run first, `u`'s run commutes with `t`'s first step, so
    // `t` would sleep through it. But `u` then `t` (log 21) needs no
    // preemption, while moving only `t`'s first step before `u` costs one:
    // with one-step sleep sets, K = 0 reached only 12.
    for k in 0..=2 {
        let (plain, plain_finals) =
            explore_finals(search::Search::bounded(k).unpruned(), own_lock_first);
        let logs: std::collections::BTreeSet<u32> = plain_finals.iter().map(|&(_, v)| v).collect();
        assert_eq!(logs, [12, 21].into(), "K={k}");
        for reduction in [Reduction::SleepSets, Reduction::Dpor] {
            let (reduced, finals) =
                explore_finals(search::Search::bounded(k).with(reduction), own_lock_first);
            eprintln!(
                "own lock first K={k} {reduction:?}: {} (+{} redundant) vs {} plain",
                reduced.schedules, reduced.redundant, plain.schedules
            );
            assert!(reduced.complete, "K={k} {reduction:?}");
            assert_eq!(finals, plain_finals, "K={k} {reduction:?}");
        }
    }
}
