//! Uniform choice among the alternatives at every preemption point.

use rand_chacha::ChaCha8Rng;

use super::{Choice, Decision, Point, Strategy};
use crate::sim::rng;
use crate::sim::task::TaskId;

pub struct RandomStrategy {
    rng: ChaCha8Rng,
}

impl RandomStrategy {
    pub fn new() -> Self {
        RandomStrategy {
            rng: rng::rng(0, rng::STREAM_SCHEDULE),
        }
    }
}

impl RandomStrategy {
    /// [`Strategy::next_task`] at a point with these runnable tasks, with
    /// or without a timer that may fire, at virtual time `now`: one draw
    /// unless there is a single alternative.
    #[inline(always)]
    pub(crate) fn pick(&mut self, runnable: &[TaskId], timer: bool, now: u64) -> Decision {
        let n = runnable.len() + usize::from(timer);
        let i = if n == 1 {
            0
        } else {
            rng::below(&mut self.rng, n)
        };
        let choice = match runnable.get(i) {
            Some(&t) => Choice::Task(t),
            None => Choice::Timer,
        };
        Decision { choice, at: now }
    }
}

impl Default for RandomStrategy {
    fn default() -> Self {
        Self::new()
    }
}

impl Strategy for RandomStrategy {
    fn new_execution(&mut self, seed: u64) {
        self.rng = rng::rng(seed, rng::STREAM_SCHEDULE);
    }

    #[inline]
    fn next_task(&mut self, point: &Point<'_>) -> Decision {
        self.pick(point.runnable, point.next_timer.is_some(), point.now)
    }

    fn choose(&mut self, n: usize) -> usize {
        rng::below(&mut self.rng, n)
    }

    fn name(&self) -> String {
        "random".into()
    }
}
