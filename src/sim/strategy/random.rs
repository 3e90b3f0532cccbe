//! Uniform choice among the alternatives at every preemption point.

use rand_chacha::ChaCha8Rng;

use super::{Decision, Point, Strategy};
use crate::sim::rng;

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
        let n = point.choices();
        let i = if n == 1 {
            0
        } else {
            rng::below(&mut self.rng, n)
        };
        Decision::now(point, point.choice(i))
    }

    fn choose(&mut self, n: usize) -> usize {
        rng::below(&mut self.rng, n)
    }

    fn name(&self) -> String {
        "random".into()
    }
}
