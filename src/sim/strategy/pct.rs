//! Probabilistic Concurrency Testing (Burckhardt, Kothari, Musuvathi,
//! Nagarakatte; ASPLOS 2010).
//!
//! Every task gets a random priority when first seen; the highest-priority
//! runnable task always runs. At `depth - 1` change points, drawn uniformly
//! among the first `k` steps, the priority of the task that is running drops
//! below every initial priority. A bug of depth `d` is then found with
//! probability at least `1 / (n * k^(d-1))` per run, for `n` tasks.
//!
//! Firing the next timer is treated as one more task with its own random
//! priority, so a timer overtaking running tasks is explored too; once it
//! has fired, it ranks below the tasks at their initial priority and, by a
//! fresh coin per firing, above or below the lowered ones.

use rand::Rng as _;
use rand_chacha::ChaCha8Rng;

use super::{Choice, Decision, Point, Strategy};
use crate::sim::rng;
use crate::sim::task::TaskId;

pub struct Pct {
    depth: u32,
    k: u64,
    rng: ChaCha8Rng,
    /// Priority per task id; 0 = not yet assigned.
    priorities: Vec<u64>,
    timer_priority: u64,
    /// Steps at which the running task's priority drops, ascending.
    change_points: Vec<u64>,
    next_change: usize,
    last: Option<Choice>,
}

impl Pct {
    /// `depth` >= 1; `k` is the expected number of steps of a run (the range
    /// the change points are drawn from).
    pub fn new(depth: u32, k: u64) -> Self {
        assert!(depth >= 1);
        Pct {
            depth,
            k: k.max(1),
            rng: rng::rng(0, rng::STREAM_SCHEDULE),
            priorities: Vec::new(),
            timer_priority: 0,
            change_points: Vec::new(),
            next_change: 0,
            last: None,
        }
    }

    fn fresh_priority(&mut self) -> u64 {
        // Initial priorities sit above every change-point priority (< depth).
        self.rng.next_u64() | (1 << 63)
    }

    fn priority(&mut self, t: TaskId) -> u64 {
        let i = t.index();
        if i >= self.priorities.len() {
            self.priorities.resize(i + 1, 0);
        }
        if self.priorities[i] == 0 {
            self.priorities[i] = self.fresh_priority();
        }
        self.priorities[i]
    }
}

impl Strategy for Pct {
    fn new_execution(&mut self, seed: u64) {
        self.rng = rng::rng(seed, rng::STREAM_SCHEDULE);
        self.priorities.clear();
        self.timer_priority = self.fresh_priority();
        self.change_points = (1..self.depth)
            .map(|_| 1 + self.rng.next_u64() % self.k)
            .collect();
        self.change_points.sort_unstable();
        self.next_change = 0;
        self.last = None;
    }

    fn next_task(&mut self, point: &Point<'_>) -> Decision {
        while self.next_change < self.change_points.len()
            && self.change_points[self.next_change] <= point.step
        {
            // Priority d-1-i for the i-th change point: later changes rank lower.
            let low = u64::from(self.depth) - 1 - self.next_change as u64;
            match self.last {
                Some(Choice::Task(t)) => {
                    self.priority(t);
                    self.priorities[t.index()] = low;
                }
                Some(Choice::Timer) => self.timer_priority = low,
                None => {}
            }
            self.next_change += 1;
        }
        // Runnable is sorted by id: one size check covers every task here.
        if let Some(last) = point.runnable.last()
            && last.index() >= self.priorities.len()
        {
            self.priorities.resize(last.index() + 1, 0);
        }
        let mut best = None;
        let mut best_p = 0;
        for &t in point.runnable {
            let mut p = self.priorities[t.index()];
            if p == 0 {
                p = self.fresh_priority();
                self.priorities[t.index()] = p;
            }
            if best.is_none() || p > best_p {
                best = Some(Choice::Task(t));
                best_p = p;
            }
        }
        if point.next_timer.is_some() && self.timer_priority > best_p {
            best = Some(Choice::Timer);
        }
        let choice = best.expect("runnable is never empty");
        self.last = Some(choice);
        if choice == Choice::Timer {
            // After a firing, time moves only when every task still at its
            // initial priority is blocked, and then, by a fresh coin for each
            // firing, either before the tasks a change point lowered or only
            // once they are blocked too. Above the tasks for the whole run, a
            // chain of timers (a reconnect loop against a stopped listener)
            // would starve the rest until the step limit; always below the
            // lowered tasks, time could not pass while a lowered task is
            // delayed, which is when a race window opens; always above them,
            // a lowered client that must restart a listener would starve
            // behind the reconnect loop for ever.
            self.timer_priority = if self.rng.next_u64() & 1 == 0 {
                u64::from(self.depth)
            } else {
                0
            };
        }
        Decision::now(point, choice)
    }

    fn choose(&mut self, n: usize) -> usize {
        rng::below(&mut self.rng, n)
    }

    fn name(&self) -> String {
        format!("pct:{}", self.depth)
    }
}
