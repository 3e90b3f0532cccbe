//! The sleep-set reduction of `explore` against the plain bounded search on
//! random small programs: at every preemption bound it must reach exactly
//! the outcomes the plain search reaches. The programs are race-free (shared
//! cells are used under kernel mutexes) and mix locks, a shared queue,
//! yields, sleeps and clock reads. The reduced search runs whole, and split
//! into the branches off its first schedule (as `lbsim explore` runs it) on
//! one and on two threads.
//!
//! DPOR is not checked here: it is not complete under a preemption bound
//! (on these programs it misses outcomes at K = 1, e.g. program 70), which
//! is why `explore` defaults to sleep sets.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Mutex;

use lbsim::experiment::search;
use lbsim::sim::strategy::Reduction;
use lbsim::sim::{self, Outcome, RunConfig, Unbounded, go};

#[derive(Clone, Copy, Debug)]
enum Op {
    /// Lock mutex `m`, optionally yield while holding it, fold the cell it
    /// guards into the task's view and update the cell.
    Crit {
        m: usize,
        yield_inside: bool,
    },
    /// Lock both mutexes (always 0 then 1) and update both cells.
    Both,
    Put,
    /// Take from the shared queue (blocks while it is empty).
    Get,
    Yield,
    Sleep(u64),
    /// Fold the clock into the task's view.
    Now,
}

type Program = Vec<Vec<Op>>;

/// SplitMix64: a small deterministic generator for the programs.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn program(seed: u64) -> Program {
    let mut g = Gen(seed);
    let tasks = 2 + g.below(2) as usize;
    let mut puts = 0;
    let mut gets = 0;
    let mut prog: Program = (0..tasks)
        .map(|_| {
            let ops = 2 + g.below(3) as usize;
            (0..ops)
                .map(|_| match g.below(10) {
                    0..=2 => Op::Crit {
                        m: g.below(2) as usize,
                        yield_inside: g.below(2) == 0,
                    },
                    3 => Op::Both,
                    4 => {
                        puts += 1;
                        Op::Put
                    }
                    5 => {
                        gets += 1;
                        Op::Get
                    }
                    6 => Op::Yield,
                    7 => Op::Sleep(1 + g.below(2)),
                    _ => Op::Now,
                })
                .collect()
        })
        .collect();
    // Mostly no task waits forever for an item; sometimes one does (a
    // deadlock is an outcome too).
    if gets > puts && g.below(4) != 0 {
        prog[0].push(Op::Put);
    }
    prog
}

fn mix(acc: u64, v: u64) -> u64 {
    (acc ^ v).wrapping_mul(0x100_0000_01b3).rotate_left(7)
}

async fn run_program(prog: Rc<Program>, out: Rc<Cell<u64>>) {
    let cells = Rc::new([
        (sim::Mutex::new("m0"), Cell::new(0u64)),
        (sim::Mutex::new("m1"), Cell::new(0u64)),
    ]);
    let queue = Rc::new(Unbounded::<u64>::new("q"));
    let done = Rc::new(Unbounded::<()>::new("done"));
    let views = Rc::new(RefCell::new(vec![0u64; prog.len()]));
    for (i, ops) in prog.iter().enumerate() {
        let ops = ops.clone();
        let (cells, queue, done, views) =
            (cells.clone(), queue.clone(), done.clone(), views.clone());
        let id = i as u64 + 1;
        go("worker", async move {
            let mut acc = 0u64;
            for op in ops {
                match op {
                    Op::Crit { m, yield_inside } => {
                        let g = cells[m].0.lock().await;
                        if yield_inside {
                            sim::yield_now().await;
                        }
                        acc = mix(acc, cells[m].1.get());
                        cells[m].1.set(cells[m].1.get() * 5 + id);
                        g.unlock().await;
                    }
                    Op::Both => {
                        let g0 = cells[0].0.lock().await;
                        let g1 = cells[1].0.lock().await;
                        acc = mix(acc, cells[0].1.get() ^ (cells[1].1.get() << 20));
                        cells[0].1.set(cells[0].1.get() * 5 + id);
                        cells[1].1.set(cells[1].1.get() * 5 + id);
                        g1.unlock().await;
                        g0.unlock().await;
                    }
                    Op::Put => queue.put(id).await.unwrap(),
                    Op::Get => acc = mix(acc, queue.get().await.unwrap_or(99)),
                    Op::Yield => sim::yield_now().await,
                    Op::Sleep(us) => sim::sleep(us * sim::US).await,
                    Op::Now => acc = mix(acc, sim::now()),
                }
            }
            // Each task writes only its own slot; main reads the slots
            // after every task has reported on `done`.
            views.borrow_mut()[i] = acc;
            done.put(()).await.unwrap();
        })
        .await;
    }
    for _ in 0..prog.len() {
        done.get().await;
    }
    let g = (cells[0].0.lock().await, cells[1].0.lock().await);
    let mut h = mix(cells[0].1.get(), cells[1].1.get());
    for v in views.borrow().iter() {
        h = mix(h, *v);
    }
    out.set(h);
    g.1.unlock().await;
    g.0.unlock().await;
}

/// What a search reached: the outcomes (with the final hash) of the
/// non-redundant schedules, each with the first schedule that reached it,
/// and the numbers of schedules and of redundant executions.
type Reached = (BTreeMap<(Outcome, u64), String>, u64, u64);

/// What a search reached, or `None` if it did not finish within `cap`
/// schedules. With `jobs`, the search is split into its branches and
/// explored by that many threads.
fn finals(how: search::Search, prog: &Program, cap: u64, jobs: Option<usize>) -> Option<Reached> {
    let seen = Mutex::new(BTreeMap::new());
    let run = || {
        let prog = Rc::new(prog.clone());
        let seen = &seen;
        move |sim: &mut sim::Sim, cfg: &RunConfig| {
            let out = Rc::new(Cell::new(0));
            let r = sim.run(cfg, run_program(prog.clone(), out.clone()));
            if !sim.strategy().redundant() {
                let how = r
                    .schedule
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                seen.lock()
                    .unwrap()
                    .entry((r.outcome, out.get()))
                    .or_insert_with(|| format!("{} preemptions: {how}", r.preemptions));
            }
            r
        }
    };
    let cfg = RunConfig::new(0);
    let ex = match jobs {
        None => search::explore(how, Some(cap), None, 1, &cfg, run()),
        Some(jobs) => search::explore_split(how, jobs, Some(cap), None, 1, &cfg, run),
    };
    ex.complete
        .then(|| (seen.into_inner().unwrap(), ex.schedules, ex.redundant))
}

#[test]
fn reductions_reach_every_outcome_of_the_plain_search_on_random_programs() {
    const PROGRAMS: u64 = 150;
    const CAP: u64 = 30_000;
    let mut compared = 0;
    let mut several = 0;
    for seed in 0..PROGRAMS {
        let prog = program(seed);
        for k in 0..=2 {
            let Some((plain, _, _)) =
                finals(search::Search::bounded(k).unpruned(), &prog, CAP, None)
            else {
                continue;
            };
            // The whole search, then the search split into branches on one
            // and on two threads: the split explores exactly what the whole
            // search explores, and on one thread in the same order.
            let reduction = Reduction::SleepSets;
            let mut whole = None;
            for jobs in [None, Some(1), Some(2)] {
                let (reduced, schedules, redundant) =
                    finals(search::Search::bounded(k).with(reduction), &prog, CAP, jobs)
                        .expect("a reduced search finishes where the plain one does");
                let missed: Vec<&String> = plain
                    .iter()
                    .filter(|(k, _)| !reduced.contains_key(k))
                    .map(|(_, how)| how)
                    .collect();
                assert!(
                    missed.is_empty() && reduced.len() == plain.len(),
                    "program {seed} at K={k} with {reduction:?} on {jobs:?} jobs: {prog:?}\nmissed: {missed:#?}"
                );
                let (first, counts) =
                    whole.get_or_insert((reduced.clone(), (schedules, redundant)));
                assert_eq!(
                    (schedules, redundant),
                    *counts,
                    "program {seed} at K={k}, split on {jobs:?} jobs against whole: {prog:?}"
                );
                if jobs == Some(1) {
                    // On one thread, in the whole search's order: each
                    // outcome is first reached by the same schedule.
                    assert_eq!(
                        &reduced, first,
                        "program {seed} at K={k}, split on one thread against whole: {prog:?}"
                    );
                }
            }
            compared += 1;
            if plain.len() > 1 {
                several += 1;
            }
        }
    }
    eprintln!("{compared} comparisons, {several} with more than one outcome");
    // Most comparisons ran, and most had something to lose.
    assert!(compared >= PROGRAMS * 2, "{compared} comparisons");
    assert!(several * 3 >= compared, "{several} of {compared}");
}
