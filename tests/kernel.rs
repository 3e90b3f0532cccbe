//! Kernel behaviour: determinism, mutual exclusion, races found, oracles, replay.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use lbsim::sim::strategy::{Dfs, Pct, RandomStrategy, Replay, RuntimeModel, Timed};
use lbsim::sim::{
    self, Event, Mutex, Outcome, RunConfig, Sim, Strategy, Unbounded, after_func, go, sleep,
};

fn strategies() -> Vec<(&'static str, Box<dyn Strategy>)> {
    vec![
        ("random", Box::new(RandomStrategy::new())),
        ("pct:1", Box::new(Pct::new(1, 200))),
        ("pct:3", Box::new(Pct::new(3, 200))),
        ("timed", Box::new(Timed::new(RuntimeModel::default()))),
    ]
}

/// Four tasks increment a shared counter under a mutex with a preemption
/// point between the read and the write; an `inside` flag catches any two
/// tasks in the critical section at once.
async fn contended_counter(result: Rc<Cell<u32>>, violations: Rc<Cell<u32>>) {
    let mu = Rc::new(Mutex::new("counter.mu"));
    let counter = Rc::new(Cell::new(0u32));
    let inside = Rc::new(Cell::new(false));
    let done = Rc::new(Unbounded::<()>::new("done"));
    for i in 0..4 {
        let (mu, counter, inside, done, violations) = (
            mu.clone(),
            counter.clone(),
            inside.clone(),
            done.clone(),
            violations.clone(),
        );
        go(&format!("worker-{i}"), async move {
            for _ in 0..5 {
                let g = mu.lock().await;
                if inside.replace(true) {
                    violations.set(violations.get() + 1);
                }
                let v = counter.get();
                sim::yield_now().await;
                counter.set(v + 1);
                inside.set(false);
                g.unlock().await;
            }
            done.put(()).await.unwrap();
        })
        .await;
    }
    for _ in 0..4 {
        done.get().await;
    }
    result.set(counter.get());
}

#[test]
fn mutual_exclusion_holds_under_every_strategy() {
    for (name, strategy) in strategies() {
        let mut sim = Sim::new(strategy);
        for seed in 0..300 {
            let result = Rc::new(Cell::new(0));
            let violations = Rc::new(Cell::new(0));
            let report = sim.run(
                &RunConfig::new(seed),
                contended_counter(result.clone(), violations.clone()),
            );
            assert_eq!(
                report.outcome,
                Outcome::Ok,
                "{name} seed {seed}: {}",
                report.describe()
            );
            assert_eq!(violations.get(), 0, "{name} seed {seed}");
            assert_eq!(result.get(), 20, "{name} seed {seed}");
        }
    }
}

#[test]
fn lost_update_without_mutex_is_found() {
    // Same counter without the lock: random scheduling must find the lost update.
    let mut sim = Sim::new(Box::new(RandomStrategy::new()));
    let mut lost = 0;
    for seed in 0..200 {
        let counter = Rc::new(Cell::new(0u32));
        let c = counter.clone();
        let report = sim.run(&RunConfig::new(seed), async move {
            let done = Rc::new(Event::new("done"));
            let d2 = done.clone();
            let c2 = c.clone();
            go("other", async move {
                let v = c2.get();
                sim::yield_now().await;
                c2.set(v + 1);
                d2.fire().await;
            })
            .await;
            let v = c.get();
            sim::yield_now().await;
            c.set(v + 1);
            done.wait().await;
        });
        assert_eq!(report.outcome, Outcome::Ok);
        if counter.get() == 1 {
            lost += 1;
        }
    }
    assert!(lost > 10, "lost update seen {lost} times in 200 runs");
}

fn traced(strategy: Box<dyn Strategy>, seed: u64) -> String {
    let mut sim = Sim::new(strategy);
    let mut cfg = RunConfig::new(seed);
    cfg.trace = true;
    let r = sim.run(
        &cfg,
        contended_counter(Rc::new(Cell::new(0)), Rc::new(Cell::new(0))),
    );
    r.trace.expect("trace on").render()
}

#[test]
fn same_seed_gives_identical_trace_in_process_and_across_threads() {
    for seed in [1u64, 2, 99] {
        let a = traced(Box::new(RandomStrategy::new()), seed);
        let b = traced(Box::new(RandomStrategy::new()), seed);
        assert_eq!(a, b);
        let c = std::thread::spawn(move || traced(Box::new(RandomStrategy::new()), seed))
            .join()
            .unwrap();
        assert_eq!(a, c);
        let t1 = traced(Box::new(Timed::new(RuntimeModel::default())), seed);
        let t2 =
            std::thread::spawn(move || traced(Box::new(Timed::new(RuntimeModel::default())), seed))
                .join()
                .unwrap();
        assert_eq!(t1, t2);
        assert!(a.lines().count() > 50);
    }
    assert_ne!(
        traced(Box::new(RandomStrategy::new()), 1),
        traced(Box::new(RandomStrategy::new()), 2)
    );
}

#[test]
fn replay_of_recorded_schedule_reproduces_the_trace() {
    for (name, strategy) in strategies() {
        let mut sim = Sim::new(strategy);
        for seed in 0..20 {
            let mut cfg = RunConfig::new(seed);
            cfg.trace = true;
            cfg.record = true;
            let original = sim.run(
                &cfg,
                contended_counter(Rc::new(Cell::new(0)), Rc::new(Cell::new(0))),
            );
            let schedule = original.schedule.clone().unwrap();
            let text = schedule.to_string();
            let parsed = sim::Schedule::parse(&text).unwrap();
            let mut replay = Sim::new(Box::new(Replay::new(parsed)));
            let again = replay.run(
                &cfg,
                contended_counter(Rc::new(Cell::new(0)), Rc::new(Cell::new(0))),
            );
            assert_eq!(
                original.trace.unwrap().render(),
                again.trace.unwrap().render(),
                "{name} seed {seed}"
            );
            assert_eq!(original.decision_hash, again.decision_hash);
        }
    }
}

#[test]
fn leak_oracle_names_the_blocked_task_and_its_creator() {
    let mut sim = Sim::new(Box::new(RandomStrategy::new()));
    let report = sim.run(&RunConfig::new(5), async {
        go("spawner", async {
            let q = Rc::new(Unbounded::<u32>::new("orphan.queue"));
            go("orphan.run", async move {
                q.get().await;
            })
            .await;
        })
        .await;
        sleep(sim::MS).await;
    });
    assert_eq!(report.outcome, Outcome::Leak);
    assert_eq!(report.alive.len(), 1);
    let leaked = &report.alive[0];
    assert_eq!(leaked.name, "orphan.run");
    assert_eq!(leaked.creator.as_deref(), Some("spawner"));
    assert_eq!(leaked.state, "get on unbounded \"orphan.queue\"");
    assert!(report.describe().contains("created by spawner"));
}

#[test]
fn task_finishing_within_grace_is_not_a_leak() {
    let mut sim = Sim::new(Box::new(RandomStrategy::new()));
    let report = sim.run(&RunConfig::new(5), async {
        go("slow", async {
            sleep(5 * sim::SEC).await;
        })
        .await;
    });
    assert_eq!(report.outcome, Outcome::Ok, "{}", report.describe());
    let report = sim.run(&RunConfig::new(5), async {
        go("too-slow", async {
            sleep(11 * sim::SEC).await;
        })
        .await;
    });
    assert_eq!(report.outcome, Outcome::Leak);
    assert_eq!(report.alive[0].name, "too-slow");
}

#[test]
fn deadlock_oracle_lists_blocked_tasks() {
    let mut sim = Sim::new(Box::new(RandomStrategy::new()));
    for seed in 0..50 {
        let report = sim.run(&RunConfig::new(seed), async {
            let a = Rc::new(Mutex::new("a"));
            let b = Rc::new(Mutex::new("b"));
            let (a2, b2) = (a.clone(), b.clone());
            let both = Rc::new(Event::new("both-locked"));
            let both2 = both.clone();
            go("ab", async move {
                let ga = a2.lock().await;
                both2.wait().await;
                let gb = b2.lock().await;
                gb.unlock().await;
                ga.unlock().await;
            })
            .await;
            let gb = b.lock().await;
            // Wait until "ab" holds `a`, then close the cycle.
            while !a.is_locked() {
                sim::yield_now().await;
            }
            both.fire().await;
            let ga = a.lock().await;
            ga.unlock().await;
            gb.unlock().await;
        });
        assert_eq!(report.outcome, Outcome::Deadlock, "seed {seed}");
        let names: Vec<_> = report
            .alive
            .iter()
            .map(|t| (t.name.as_str(), t.state.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("main", "lock on mutex \"a\""),
                ("ab", "lock on mutex \"b\"")
            ]
        );
    }
}

#[test]
fn panic_is_caught_and_reported_without_aborting_the_batch() {
    let mut sim = Sim::new(Box::new(RandomStrategy::new()));
    for seed in 0..5 {
        let report = sim.run(&RunConfig::new(seed), async {
            go("bad", async {
                sim::yield_now().await;
                panic!("invariant broken");
            })
            .await;
            sleep(sim::MS).await;
        });
        assert_eq!(report.outcome, Outcome::Panic);
        let p = report.panic.unwrap();
        assert_eq!(p.task, "bad");
        assert!(p.message.starts_with("invariant broken"), "{}", p.message);
    }
    // The next run in the same Sim is unaffected.
    let ok = sim.run(&RunConfig::new(9), async {});
    assert_eq!(ok.outcome, Outcome::Ok);
}

/// The AfterFunc race: the callback task is launched (so `stop` returns
/// false) but has not run yet when the stopper proceeds.
async fn after_func_race(stopped_late: Rc<Cell<bool>>) {
    let ran = Rc::new(Cell::new(false));
    let r2 = ran.clone();
    let t = after_func(10 * sim::MS, "init-timer", async move {
        r2.set(true);
    })
    .await;
    sleep(10 * sim::MS).await;
    let stopped = t.stop().await;
    if !stopped && !ran.get() {
        stopped_late.set(true);
    }
}

#[test]
fn after_func_stop_race_is_reachable() {
    let mut sim = Sim::new(Box::new(RandomStrategy::new()));
    let mut seen_late = 0;
    let mut seen_stopped = 0;
    for seed in 0..400 {
        let late = Rc::new(Cell::new(false));
        let r = sim.run(&RunConfig::new(seed), after_func_race(late.clone()));
        assert_eq!(r.outcome, Outcome::Ok);
        if late.get() {
            seen_late += 1;
        } else {
            seen_stopped += 1;
        }
    }
    assert!(
        seen_late > 0,
        "stop() returned false before the callback ran: never seen"
    );
    assert!(seen_stopped > 0);
}

#[test]
fn timers_fire_in_deadline_order_and_stop_cancels() {
    let mut sim = Sim::new(Box::new(RandomStrategy::new()));
    for seed in 0..100 {
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        let r = sim.run(&RunConfig::new(seed), async move {
            let mut timers = Vec::new();
            for (i, d) in [30u64, 10, 20, 40].into_iter().enumerate() {
                let l = l.clone();
                timers.push(
                    after_func(d * sim::MS, &format!("t{i}"), async move {
                        l.borrow_mut().push((i, sim::now()));
                    })
                    .await,
                );
            }
            // Any timer may already have fired (a slow goroutine); stop()
            // reports exactly that.
            let stopped = timers[3].stop().await;
            assert_eq!(stopped, !timers[3].has_fired());
            assert!(!timers[3].stop().await, "a timer does not stop twice");
            sleep(50 * sim::MS).await;
            if stopped {
                assert!(l.borrow().iter().all(|&(i, _)| i != 3), "stopped timer ran");
            }
        });
        assert_eq!(r.outcome, Outcome::Ok, "{}", r.describe());
        let order: Vec<usize> = log.borrow().iter().map(|&(i, _)| i).collect();
        // Callbacks never run before their deadline, and a stopped timer's
        // callback never runs.
        let mut sorted = order.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), order.len());
        assert!(sorted.starts_with(&[0, 1, 2]));
        for &(i, t) in log.borrow().iter() {
            assert!(t >= [30, 10, 20, 40][i] * sim::MS);
        }
    }
}

/// Toy bug of depth 2: the reader must run between the writer's two steps.
/// One ordering constraint (depth 1) is needed for `a before b`, a second
/// to place the reader in the gap.
async fn depth2_bug(hit: Rc<Cell<bool>>) {
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
    let (x2, d2, h) = (x.clone(), done.clone(), hit.clone());
    go("reader", async move {
        if x2.get() == 1 {
            h.set(true);
        }
        d2.put(()).await.unwrap();
    })
    .await;
    done.get().await;
    done.get().await;
}

#[test]
fn pct_finds_depth_two_bug_at_least_at_its_bound() {
    // n = 3 tasks, k = steps per run; bound 1/(n k).
    let k = 16;
    let mut sim = Sim::new(Box::new(Pct::new(2, k)));
    let runs = 3_000;
    let mut hits = 0;
    let mut max_steps = 0;
    for seed in 0..runs {
        let hit = Rc::new(Cell::new(false));
        let r = sim.run(&RunConfig::new(seed), depth2_bug(hit.clone()));
        max_steps = max_steps.max(r.steps);
        hits += u64::from(hit.get());
    }
    assert!(
        max_steps <= k,
        "k={k} must cover the run ({max_steps} steps)"
    );
    let bound = 1.0 / (3.0 * k as f64);
    let rate = hits as f64 / runs as f64;
    assert!(rate >= bound, "pct:2 hit rate {rate} below bound {bound}");
}

/// Toy bug of depth 1: the reader runs before the writer's only write.
async fn depth1_bug(hit: Rc<Cell<bool>>) {
    let x = Rc::new(Cell::new(0));
    let done = Rc::new(Unbounded::<()>::new("done"));
    let (x1, d1) = (x.clone(), done.clone());
    sim::spawn("writer", async move {
        sim::yield_now().await;
        x1.set(1);
        d1.put(()).await.unwrap();
    });
    let (x2, d2, h) = (x.clone(), done.clone(), hit.clone());
    sim::spawn("reader", async move {
        sim::yield_now().await;
        if x2.get() == 0 {
            h.set(true);
        }
        d2.put(()).await.unwrap();
    });
    done.get().await;
    done.get().await;
}

#[test]
fn pct_finds_depth_one_bug_at_least_at_its_bound() {
    let runs = 3_000;
    let mut sim = Sim::new(Box::new(Pct::new(1, 16)));
    let mut hits = 0;
    for seed in 0..runs {
        let hit = Rc::new(Cell::new(false));
        sim.run(&RunConfig::new(seed), depth1_bug(hit.clone()));
        hits += u64::from(hit.get());
    }
    // n = 3 tasks: bound 1/n.
    let rate = hits as f64 / runs as f64;
    assert!(rate >= 1.0 / 3.0, "pct:1 hit rate {rate} below 1/3");
}

#[test]
fn exhaustive_counts_interleavings_of_two_tasks() {
    // Tasks of a and b steps (a step = the code up to the next preemption
    // point), started before any decision: C(a+b, a) schedules, all distinct.
    // The steps share a plain cell (a race the reduction assumes away), so
    // the search is the unpruned one.
    for (a, b) in [(1usize, 1usize), (2, 2), (3, 2), (4, 3)] {
        let mut dfs = Sim::new(Box::new(Dfs::without_pruning(None)));
        let mut orders = std::collections::BTreeSet::new();
        let mut runs = 0;
        while !dfs.strategy().is_complete() {
            let log = Rc::new(RefCell::new(String::new()));
            let l = log.clone();
            dfs.run(&RunConfig::new(0), async move {
                for (name, steps) in [("a", a), ("b", b)] {
                    let l = l.clone();
                    sim::spawn(name, async move {
                        for i in 0..steps {
                            if i > 0 {
                                sim::yield_now().await;
                            }
                            l.borrow_mut().push_str(name);
                        }
                    });
                }
            });
            runs += 1;
            orders.insert(log.borrow().clone());
            assert!(runs < 100_000, "did not terminate");
        }
        let binom = (1..=a).fold(1usize, |acc, i| acc * (b + i) / i);
        assert_eq!(runs, binom, "a={a} b={b}");
        assert_eq!(orders.len(), binom, "a={a} b={b}");
    }
}

#[test]
fn exhaustive_preemption_bound_limits_the_search() {
    // With bound 0 only the forced switches remain; the depth-2 bug needs
    // one preemption of the writer (bound 1).
    let found = |bound| {
        let mut dfs = Sim::new(Box::new(Dfs::without_pruning(Some(bound))));
        let mut hit_any = false;
        let mut runs = 0;
        while !dfs.strategy().is_complete() {
            let hit = Rc::new(Cell::new(false));
            dfs.run(&RunConfig::new(0), depth2_bug(hit.clone()));
            hit_any |= hit.get();
            runs += 1;
        }
        (hit_any, runs)
    };
    let (hit0, runs0) = found(0);
    let (hit1, runs1) = found(1);
    assert!(!hit0, "bound 0 must not find a depth-2 bug");
    assert!(hit1, "bound 1 finds it");
    assert!(runs1 > runs0);
}

/// A strategy that panics at its first decision: the panic is outside any
/// task, so it leaves `Sim::run` by unwinding.
struct Broken;

impl Strategy for Broken {
    fn new_execution(&mut self, _seed: u64) {}
    fn next_task(
        &mut self,
        _point: &lbsim::sim::strategy::Point<'_>,
    ) -> lbsim::sim::strategy::Decision {
        panic!("broken strategy");
    }
    fn choose(&mut self, _n: usize) -> usize {
        0
    }
    fn name(&self) -> String {
        "broken".into()
    }
}

#[test]
fn a_run_that_unwinds_leaves_the_thread_ready_for_the_next_run() {
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Sim::new(Box::new(Broken)).run(&RunConfig::new(1), async {
            sim::yield_now().await;
        })
    }));
    assert!(unwound.is_err(), "the strategy's panic leaves the run");
    // Outside a run, a primitive says so.
    let outside = std::panic::catch_unwind(|| Event::new("stray"));
    let message = outside.err().expect("a primitive outside a run panics");
    assert_eq!(
        message.downcast_ref::<&str>().copied(),
        Some("an lbsim primitive was used outside a simulation run")
    );
    // The next run on this thread works.
    let (result, violations) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let (r, v) = (result.clone(), violations.clone());
    let report =
        Sim::new(Box::new(RandomStrategy::new())).run(&RunConfig::new(7), contended_counter(r, v));
    assert_eq!(report.outcome, Outcome::Ok);
    assert_eq!((result.get(), violations.get()), (20, 0));
}
