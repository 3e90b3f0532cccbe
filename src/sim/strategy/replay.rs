//! Follows a recorded [`Schedule`] decision by decision.

use super::{Choice, Decision, Point, Strategy};
use crate::sim::schedule::{Schedule, StepKind};
use crate::sim::task::TaskId;

pub struct Replay {
    schedule: Schedule,
    pos: usize,
    divergence: Option<String>,
}

impl Replay {
    pub fn new(schedule: Schedule) -> Self {
        Replay {
            schedule,
            pos: 0,
            divergence: None,
        }
    }

    /// Why the run did not follow the schedule, if it did not.
    pub fn divergence(&self) -> Option<&str> {
        self.divergence.as_deref()
    }

    /// Steps of the schedule not used by the last run.
    pub fn unused_steps(&self) -> usize {
        self.schedule.steps.len().saturating_sub(self.pos)
    }

    fn diverge(&mut self, why: String) {
        if self.divergence.is_none() {
            // `pos` has moved past the step in question; steps count from 0.
            self.divergence = Some(format!("step {}: {why}", self.pos - 1));
        }
    }

    /// Past the end of the schedule (or after a divergence): keep the running
    /// task if it can continue, otherwise the lowest id; never fire a timer
    /// early.
    fn fallback(point: &Point<'_>) -> Choice {
        Choice::Task(point.current.unwrap_or(point.runnable[0]))
    }
}

impl Strategy for Replay {
    fn new_execution(&mut self, _seed: u64) {
        self.pos = 0;
        self.divergence = None;
    }

    fn next_task(&mut self, point: &Point<'_>) -> Decision {
        let Some(step) = self.schedule.steps.get(self.pos).copied() else {
            self.pos += 1;
            return Decision::now(point, Self::fallback(point));
        };
        self.pos += 1;
        let choice = match step.kind {
            StepKind::Task(t) if point.runnable.binary_search(&TaskId(t)).is_ok() => {
                Choice::Task(TaskId(t))
            }
            StepKind::Timer if point.next_timer.is_some() => Choice::Timer,
            other => {
                self.diverge(format!("recorded {other:?} is not possible here"));
                Self::fallback(point)
            }
        };
        Decision {
            choice,
            at: point.now + step.dt,
        }
    }

    fn choose(&mut self, n: usize) -> usize {
        match self.schedule.steps.get(self.pos).copied() {
            Some(s) => {
                self.pos += 1;
                match s.kind {
                    StepKind::Choose(k) if (k as usize) < n => k as usize,
                    other => {
                        self.diverge(format!("recorded {other:?} where a choice of {n} was made"));
                        0
                    }
                }
            }
            None => 0,
        }
    }

    fn divergence(&self) -> Option<String> {
        self.divergence.clone()
    }

    fn name(&self) -> String {
        "replay".into()
    }
}
