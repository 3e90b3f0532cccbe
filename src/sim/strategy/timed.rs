//! The realistic model: interleavings emerge from timing.
//!
//! `gomaxprocs` virtual processors run the runnable tasks. Every step (the
//! code between two preemption points) costs CPU time drawn from `step_cost`.
//! A woken or new task becomes ready after `wake_latency` (the runtime's
//! handoff). After any step a task may be descheduled for a heavy-tailed
//! `pause` with probability `pause_prob` (OS preemption, GC assist, async
//! preemption). At each point the step that can start earliest runs; a timer
//! fires when its deadline comes before that. This is list scheduling of
//! steps on P processors, so the order of events follows their virtual times.

use rand_chacha::ChaCha8Rng;

use super::{Choice, Decision, Point, Strategy};
use crate::sim::dist::{Dist, Sampler};
use crate::sim::rng;
use crate::sim::task::TaskId;

/// Parameters of the timed strategy (the scenario's `[runtime]` table).
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeModel {
    pub gomaxprocs: u32,
    pub step_cost: Dist,
    pub wake_latency: Dist,
    pub pause_prob: f64,
    pub pause: Dist,
}

impl Default for RuntimeModel {
    fn default() -> Self {
        RuntimeModel {
            gomaxprocs: 2,
            step_cost: Dist::LogNormal {
                median: 150,
                sigma: 0.6,
            },
            wake_latency: Dist::LogNormal {
                median: 1_000,
                sigma: 0.5,
            },
            pause_prob: 0.001,
            pause: Dist::Pareto {
                min: 20_000,
                alpha: 1.2,
                cap: 20_000_000,
            },
        }
    }
}

pub struct Timed {
    model: RuntimeModel,
    /// Table-driven samplers of `model.step_cost` and `model.wake_latency`,
    /// drawn at every decision and every wake-up.
    step_cost: Sampler,
    wake_latency: Sampler,
    rng: ChaCha8Rng,
    /// Earliest time each task can run its next step.
    ready_at: Vec<u64>,
    /// Time each processor becomes free.
    procs: Vec<u64>,
}

impl Timed {
    pub fn new(model: RuntimeModel) -> Self {
        let p = model.gomaxprocs.max(1) as usize;
        Timed {
            step_cost: Sampler::new(&model.step_cost),
            wake_latency: Sampler::new(&model.wake_latency),
            model,
            rng: rng::rng(0, rng::STREAM_TIMING),
            ready_at: Vec::new(),
            procs: vec![0; p],
        }
    }

    fn ready(&mut self, t: TaskId) -> &mut u64 {
        let i = t.index();
        if i >= self.ready_at.len() {
            self.ready_at.resize(i + 1, 0);
        }
        &mut self.ready_at[i]
    }
}

impl Strategy for Timed {
    fn new_execution(&mut self, seed: u64) {
        self.rng = rng::rng(seed, rng::STREAM_TIMING);
        self.ready_at.clear();
        self.procs.iter_mut().for_each(|p| *p = 0);
    }

    fn next_task(&mut self, point: &Point<'_>) -> Decision {
        let (proc_idx, proc_free) = self
            .procs
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|&(i, t)| (t, i))
            .expect("at least one processor");
        // Every step starts at the earliest when a processor is free and not
        // in the past; the one that can start first runs. Ties go to the
        // running task (no switch), then to the lowest id.
        let floor = proc_free.max(point.now);
        if let Some(last) = point.runnable.last()
            && last.index() >= self.ready_at.len()
        {
            self.ready_at.resize(last.index() + 1, 0);
        }
        let mut best = (u64::MAX, point.runnable[0]);
        let mut current_start = None;
        for &t in point.runnable {
            let start = self.ready_at[t.index()].max(floor);
            if start < best.0 {
                best = (start, t);
            }
            if Some(t) == point.current {
                current_start = Some(start);
            }
        }
        if let Some(c) = point.current
            && current_start == Some(best.0)
        {
            best.1 = c;
        }
        let (start, task) = best;
        if let Some(deadline) = point.next_timer
            && deadline <= start
        {
            return Decision {
                choice: Choice::Timer,
                at: deadline.max(point.now),
            };
        }
        let cost = self.step_cost.sample(&mut self.rng).max(1);
        let end = start + cost;
        self.procs[proc_idx] = end;
        let mut ready = end;
        if self.model.pause_prob > 0.0 && rng::unit(&mut self.rng) < self.model.pause_prob {
            ready += self.model.pause.sample(&mut self.rng);
        }
        *self.ready(task) = ready;
        Decision {
            choice: Choice::Task(task),
            at: start,
        }
    }

    fn choose(&mut self, n: usize) -> usize {
        rng::below(&mut self.rng, n)
    }

    fn on_wake(&mut self, task: TaskId, now: u64) {
        let lat = self.wake_latency.sample(&mut self.rng);
        let r = self.ready(task);
        *r = (*r).max(now + lat);
    }

    fn name(&self) -> String {
        "timed".into()
    }
}
