//! Scheduling strategies: who runs at each preemption point.
//!
//! One small trait, one file per implementation. At every preemption point the
//! kernel hands the strategy a [`Point`]: the runnable tasks (sorted by id), the
//! task that was running if it could continue, and the deadline of the next
//! timer if firing it is allowed. The strategy answers with a [`Decision`].
//! Because every choice is visible in the `Point`, a systematic strategy can
//! enumerate the alternatives at each point.

mod dfs;
mod pct;
mod random;
mod replay;
mod timed;

pub use dfs::{Branch, Dfs, Reduction};
pub use pct::Pct;
pub use random::RandomStrategy;
pub use replay::Replay;
pub use timed::{RuntimeModel, Timed};

use super::task::TaskId;

/// One scheduling decision the kernel asks for.
pub struct Point<'a> {
    /// Runnable tasks, sorted by id. Never empty.
    pub runnable: &'a [TaskId],
    /// The task that reached this preemption point and could continue, if any.
    /// Choosing another task then is a preemption.
    pub current: Option<TaskId>,
    /// Deadline of the earliest timer, if "fire it now" is a legal choice.
    pub next_timer: Option<u64>,
    /// Virtual time now, in nanoseconds.
    pub now: u64,
    /// Decisions taken so far in this run.
    pub step: u64,
    /// What the next step of each runnable task (same order as `runnable`)
    /// would do with what it waits for; empty unless the strategy records
    /// footprints.
    pub pending: &'a [Pending],
}

/// What a runnable task's next step does with the object it waits for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Pending {
    /// It waits for nothing, or for something that is ready.
    Free,
    /// It takes a mutex that is free.
    Acquire,
    /// It tries a mutex that is held: it would only block.
    Held,
    /// It waits for something that is not ready: it would only block.
    Blocked,
}

impl Pending {
    /// The step would block at once and change nothing.
    pub fn stalls(self) -> bool {
        matches!(self, Pending::Held | Pending::Blocked)
    }

    /// The step is a mutex's lock.
    pub fn locks(self) -> bool {
        matches!(self, Pending::Acquire | Pending::Held)
    }
}

impl Point<'_> {
    /// Number of alternatives: each runnable task, plus the timer if any.
    pub fn choices(&self) -> usize {
        self.runnable.len() + usize::from(self.next_timer.is_some())
    }

    /// The alternative with index `i` in the canonical order (tasks by id,
    /// then the timer).
    pub fn choice(&self, i: usize) -> Choice {
        if i < self.runnable.len() {
            Choice::Task(self.runnable[i])
        } else {
            Choice::Timer
        }
    }

    /// Index of `choice` in the canonical order, if it is legal here.
    pub fn index_of(&self, choice: Choice) -> Option<usize> {
        match choice {
            Choice::Task(t) => self.runnable.binary_search(&t).ok(),
            Choice::Timer => self.next_timer.map(|_| self.runnable.len()),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Choice {
    /// Run this task (it must be in `Point::runnable`).
    Task(TaskId),
    /// Fire the earliest timer now.
    Timer,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Decision {
    pub choice: Choice,
    /// Virtual time at which the chosen step happens (never before `Point::now`;
    /// the kernel clamps). Only the timed strategy moves time on task steps.
    pub at: u64,
}

impl Decision {
    pub fn now(point: &Point<'_>, choice: Choice) -> Self {
        Decision {
            choice,
            at: point.now,
        }
    }
}

/// A scheduling strategy. One instance serves many runs in sequence; the
/// kernel calls `new_execution` before each.
pub trait Strategy: std::any::Any {
    /// A new run starts with this seed.
    fn new_execution(&mut self, seed: u64);

    /// Pick who runs next.
    fn next_task(&mut self, point: &Point<'_>) -> Decision;

    /// A nondeterministic choice among `n > 1` alternatives made by model code
    /// (a Go `select` with several ready cases, map iteration order).
    fn choose(&mut self, n: usize) -> usize;

    /// `task` became runnable at virtual time `now` (spawned or woken). The
    /// kernel calls it before the task is first among a point's runnable
    /// tasks, so a strategy may size its per-task tables here only.
    fn on_wake(&mut self, _task: TaskId, _now: u64) {}

    /// A timer fired and woke or started `task` (after `on_wake`).
    fn timer_woke(&mut self, _task: TaskId) {}

    /// `task` blocked or finished at virtual time `now`.
    fn on_block(&mut self, _task: TaskId, _now: u64) {}

    /// The run just ended.
    fn end_execution(&mut self) {}

    /// Whether the kernel should record step footprints and hand them to
    /// [`Strategy::step_footprint`] (asked once per run).
    fn wants_footprints(&self) -> bool {
        false
    }

    /// Just before each decision, when footprints are on: the objects the
    /// step since the previous decision used (its operation, what it
    /// re-checked after a wake, non-blocking reads, timer deadlines, the task
    /// table, the data stream), with repeats.
    fn step_footprint(&mut self, _footprint: &[super::task::Use]) {}

    /// After a run: true if a reducing search found it redundant (a
    /// reordering of schedules already explored) and only finished it so
    /// the model could shut down; its outcome is not a new result.
    fn redundant(&self) -> bool {
        false
    }

    /// Alternatives a reducing search skipped as redundant so far.
    fn pruned(&self) -> u64 {
        0
    }

    /// A strategy that follows a recorded schedule: why the last run did not
    /// follow it, if it did not.
    fn divergence(&self) -> Option<String> {
        None
    }

    /// How many decisions of a fixed schedule prefix the search follows
    /// (fewer than given if one was not possible).
    fn prefix_followed(&self) -> usize {
        0
    }

    /// A systematic search that recorded them: the subtrees off its first
    /// schedule, to explore apart (see [`Dfs::recording_branches`]).
    fn branches(&self) -> &[Branch] {
        &[]
    }

    /// A systematic strategy returns true once it has no new schedule left.
    fn is_complete(&self) -> bool {
        false
    }

    /// Short name for reports, e.g. `random` or `pct:3`.
    fn name(&self) -> String;
}

/// The strategy of a simulation, as the kernel holds it: the two bulk
/// strategies by value, so that their calls at every decision and wake are
/// direct and inlined, and any other behind a trait object. There is one per
/// simulation, so the random strategy's inline generator costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Sched {
    Random(RandomStrategy),
    Timed(Box<Timed>),
    Other(Box<dyn Strategy>),
}

impl Sched {
    pub fn new(strategy: Box<dyn Strategy>) -> Self {
        let any: &dyn std::any::Any = &*strategy;
        if any.is::<RandomStrategy>() || any.is::<Timed>() {
            let any: Box<dyn std::any::Any> = strategy;
            match any.downcast::<RandomStrategy>() {
                Ok(r) => Sched::Random(*r),
                Err(any) => Sched::Timed(any.downcast::<Timed>().expect("checked above")),
            }
        } else {
            Sched::Other(strategy)
        }
    }

    /// The strategy for the calls that are not on the hot path.
    pub fn get(&self) -> &dyn Strategy {
        match self {
            Sched::Random(s) => s,
            Sched::Timed(s) => &**s,
            Sched::Other(s) => &**s,
        }
    }

    pub fn get_mut(&mut self) -> &mut dyn Strategy {
        match self {
            Sched::Random(s) => s,
            Sched::Timed(s) => &mut **s,
            Sched::Other(s) => &mut **s,
        }
    }

    /// The decision at a point given by its parts: the random strategy
    /// draws from them directly, without a [`Point`] laid out in memory.
    #[inline(always)]
    pub fn decide(
        &mut self,
        runnable: &[TaskId],
        current: Option<TaskId>,
        next_timer: Option<u64>,
        now: u64,
        step: u64,
        pending: &[Pending],
    ) -> Decision {
        let d = match self {
            Sched::Random(s) => s.pick(runnable, next_timer.is_some(), now),
            Sched::Timed(s) => s.decide(runnable, current, next_timer, now),
            Sched::Other(s) => s.next_task(&Point {
                runnable,
                current,
                next_timer,
                now,
                step,
                pending,
            }),
        };
        debug_assert!(
            (Point {
                runnable,
                current,
                next_timer,
                now,
                step,
                pending,
            })
            .index_of(d.choice)
            .is_some(),
            "illegal choice {d:?}"
        );
        d
    }

    #[inline(always)]
    pub fn next_task(&mut self, point: &Point<'_>) -> Decision {
        match self {
            Sched::Random(s) => s.next_task(point),
            Sched::Timed(s) => s.next_task(point),
            Sched::Other(s) => s.next_task(point),
        }
    }

    #[inline]
    pub fn choose(&mut self, n: usize) -> usize {
        match self {
            Sched::Random(s) => s.choose(n),
            Sched::Timed(s) => s.choose(n),
            Sched::Other(s) => s.choose(n),
        }
    }

    #[inline]
    pub fn on_wake(&mut self, task: TaskId, now: u64) {
        match self {
            Sched::Random(s) => s.on_wake(task, now),
            Sched::Timed(s) => s.on_wake(task, now),
            Sched::Other(s) => s.on_wake(task, now),
        }
    }

    #[inline]
    pub fn on_block(&mut self, task: TaskId, now: u64) {
        match self {
            Sched::Random(s) => s.on_block(task, now),
            Sched::Timed(s) => s.on_block(task, now),
            Sched::Other(s) => s.on_block(task, now),
        }
    }

    #[inline]
    pub fn timer_woke(&mut self, task: TaskId) {
        match self {
            Sched::Random(s) => s.timer_woke(task),
            Sched::Timed(s) => s.timer_woke(task),
            Sched::Other(s) => s.timer_woke(task),
        }
    }
}

/// Parsed form of a `--strategy` argument.
#[derive(Clone, Debug, PartialEq)]
pub enum StrategyKind {
    Timed,
    Random,
    Pct { depth: u32 },
}

impl StrategyKind {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "timed" => Ok(StrategyKind::Timed),
            "random" => Ok(StrategyKind::Random),
            _ => {
                if let Some(d) = s.strip_prefix("pct:") {
                    let depth: u32 = d.parse().map_err(|_| {
                        format!("`{s}`: the depth after `pct:` must be a whole number, e.g. pct:3")
                    })?;
                    if depth == 0 {
                        return Err(format!("`{s}`: PCT depth must be at least 1"));
                    }
                    Ok(StrategyKind::Pct { depth })
                } else {
                    Err(format!(
                        "unknown strategy `{s}`: use timed, random or pct:D (D = bug depth, e.g. pct:3)"
                    ))
                }
            }
        }
    }

    pub fn label(&self) -> String {
        match self {
            StrategyKind::Timed => "timed".into(),
            StrategyKind::Random => "random".into(),
            StrategyKind::Pct { depth } => format!("pct:{depth}"),
        }
    }
}
