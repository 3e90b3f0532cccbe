//! Systematic search over schedules: bounded exhaustive exploration (`lbsim
//! explore`) and shrinking a failing schedule to its fewest preemptions
//! (`lbsim minimize`). Both are written against a closure that performs one
//! run, so the same code drives the gRPC model and the kernel's toy models.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::sim::TaskId;
use crate::sim::schedule::{Schedule, Step, StepKind};
use crate::sim::strategy::{Choice, Decision, Dfs, Point, Reduction, Strategy};
use crate::sim::{Outcome, RunConfig, RunReport, Sim};

/// What one run of a search gave: the kernel's report and, for models with
/// a client script, the first of its expectations that failed.
#[derive(Debug)]
pub struct Ran {
    pub report: RunReport,
    pub client_error: Option<String>,
}

impl From<RunReport> for Ran {
    fn from(report: RunReport) -> Self {
        Ran {
            report,
            client_error: None,
        }
    }
}

/// One schedule in which a client expectation failed, found by [`explore`]:
/// the schedule (its outcome may be a failure too, or ok) and the first
/// expectation that failed.
#[derive(Clone, Debug)]
pub struct ClientFound {
    pub found: Found,
    pub error: String,
}

/// One failing schedule found by [`explore`].
#[derive(Clone, Debug)]
pub struct Found {
    pub outcome: Outcome,
    /// Index (0-based) of the schedule among those explored.
    pub index: u64,
    /// Time from the start of the search to the end of this schedule.
    pub after: Duration,
    pub preemptions: u64,
    pub schedule: Schedule,
}

/// What an exploration saw.
#[derive(Clone, Debug, Default)]
pub struct Exploration {
    /// Schedules executed to the end.
    pub schedules: u64,
    /// The reduction used.
    pub reduction: Reduction,
    /// Executions found to be reorderings of schedules already explored
    /// (finished without branching; not counted in `schedules`).
    pub redundant: u64,
    /// Alternatives within the bound skipped because their task slept.
    pub pruned: u64,
    /// Decisions in [`Search::prefix`].
    pub prefix_given: usize,
    /// Decisions of [`Search::prefix`] the schedules followed: fewer than
    /// given if one was not possible.
    pub prefix_followed: usize,
    /// Branches off the first schedule the search was split into (0: not
    /// split; see [`explore_split`]).
    pub branches: usize,
    /// The whole space within the bound was explored.
    pub complete: bool,
    /// Stopped by [`Search::stop`] before the space or the limits ran out.
    pub interrupted: bool,
    /// Runs per outcome (every outcome that occurred, `ok` included).
    pub outcomes: BTreeMap<Outcome, u64>,
    /// The first failing schedules, in the order found.
    pub failures: Vec<Found>,
    /// Schedules in which a client expectation failed, whatever their
    /// outcome.
    pub client_failures: u64,
    /// The first of those, in the order found (as many as `failures` keeps).
    pub first_client_failures: Vec<ClientFound>,
    pub elapsed: Duration,
    /// Most preemptions used by one schedule.
    pub max_preemptions: u64,
    /// Longest run, in decisions.
    pub max_steps: u64,
}

impl Exploration {
    pub fn failures_total(&self) -> u64 {
        self.outcomes
            .iter()
            .filter(|(o, _)| o.is_failure())
            .map(|(_, n)| n)
            .sum()
    }

    pub fn count(&self, o: Outcome) -> u64 {
        self.outcomes.get(&o).copied().unwrap_or(0)
    }

    pub fn per_second(&self) -> f64 {
        self.schedules as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// How [`explore`] searches.
#[derive(Clone, Debug)]
pub struct Search {
    /// Most preemptions per schedule (`None`: unbounded).
    pub bound: Option<u32>,
    /// How redundant reorderings are skipped (see [`Dfs`]); any reduction
    /// assumes the model is race-free outside kernel objects.
    pub reduction: Reduction,
    /// Most model choices (select case, map order) per schedule other than
    /// the first alternative (`None`: all enumerated).
    pub choice_bound: Option<u32>,
    /// Checked between runs: once set, the search stops and reports what it
    /// has, marked interrupted (Ctrl-C).
    pub stop: Option<&'static AtomicBool>,
    /// Decisions every explored schedule starts with (empty: none).
    pub prefix: Vec<StepKind>,
}

impl Search {
    pub fn bounded(bound: u32) -> Self {
        Search {
            bound: Some(bound),
            reduction: Reduction::SleepSets,
            choice_bound: None,
            stop: None,
            prefix: Vec::new(),
        }
    }

    pub fn unpruned(self) -> Self {
        self.with(Reduction::None)
    }

    pub fn with(self, reduction: Reduction) -> Self {
        Search { reduction, ..self }
    }
}

/// When a search stops short of its space.
struct Limits {
    max_schedules: Option<u64>,
    max_time: Option<Duration>,
    stop: Option<&'static AtomicBool>,
    start: Instant,
    /// Schedules explored so far by every thread of the search.
    schedules: AtomicU64,
    keep: usize,
}

impl Limits {
    /// Counts one more schedule, unless `max_schedules` were counted
    /// already (by any thread).
    fn count(&self) -> bool {
        self.schedules
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                self.max_schedules.is_none_or(|m| n < m).then_some(n + 1)
            })
            .is_ok()
    }

    fn reached(&self, executions: u64) -> bool {
        self.stop.is_some_and(|s| s.load(Ordering::Relaxed))
            || self
                .max_schedules
                .is_some_and(|m| self.schedules.load(Ordering::Relaxed) >= m)
            || self
                .max_time
                .is_some_and(|t| executions.is_multiple_of(256) && self.start.elapsed() >= t)
    }
}

/// Runs the search `sim`'s strategy holds until it is complete, the limits
/// are reached or `executions` runs were made, adding what it saw to `ex`
/// (failure indices count from `ex.schedules`).
fn drive<T: Into<Ran>>(
    sim: &mut Sim,
    limits: &Limits,
    executions: Option<u64>,
    cfg: &RunConfig,
    ex: &mut Exploration,
    run: &mut impl FnMut(&mut Sim, &RunConfig) -> T,
) {
    let mut made = 0u64;
    let mut cut = false;
    while !sim.strategy().is_complete()
        && executions.is_none_or(|n| made < n)
        && !limits.reached(made)
    {
        made += 1;
        let Ran {
            report,
            client_error,
        } = run(sim, cfg).into();
        if sim.strategy().redundant() {
            ex.redundant += 1;
            continue;
        }
        if !limits.count() {
            // Another thread reached `max_schedules` first: this schedule
            // is not reported.
            cut = true;
            break;
        }
        *ex.outcomes.entry(report.outcome).or_default() += 1;
        ex.max_preemptions = ex.max_preemptions.max(report.preemptions);
        ex.max_steps = ex.max_steps.max(report.steps);
        // This schedule, as kept among the first failures.
        let index = ex.schedules;
        let found = || Found {
            outcome: report.outcome,
            after: limits.start.elapsed(),
            index,
            preemptions: report.preemptions,
            schedule: report.schedule.clone().expect("recording was on"),
        };
        if report.outcome.is_failure() && ex.failures.len() < limits.keep {
            ex.failures.push(found());
        }
        if let Some(error) = client_error {
            ex.client_failures += 1;
            if ex.first_client_failures.len() < limits.keep {
                ex.first_client_failures.push(ClientFound {
                    found: found(),
                    error,
                });
            }
        }
        ex.schedules += 1;
    }
    ex.complete = !cut && sim.strategy().is_complete();
    ex.pruned += sim.strategy().pruned();
}

impl Search {
    fn dfs(&self) -> Dfs {
        Dfs::with_reduction(self.bound, self.reduction)
            .with_choice_bound(self.choice_bound)
            .with_prefix(self.prefix.clone())
    }

    fn limits(
        &self,
        max_schedules: Option<u64>,
        max_time: Option<Duration>,
        keep: usize,
    ) -> Limits {
        Limits {
            max_schedules,
            max_time,
            stop: self.stop,
            start: Instant::now(),
            schedules: AtomicU64::new(0),
            keep,
        }
    }
}

/// Explores every schedule with at most `search.bound` preemptions (depth
/// first, replaying the prefix each time) until the space is exhausted or
/// `max_schedules` runs were made or `max_time` has passed. With pruning,
/// reorderings of explored schedules are skipped. `run` performs one run
/// with the given simulator and configuration (`cfg.record` is set so
/// failures carry their schedule). Keeps the first `keep` failures.
pub fn explore<T: Into<Ran>>(
    search: Search,
    max_schedules: Option<u64>,
    max_time: Option<Duration>,
    keep: usize,
    cfg: &RunConfig,
    mut run: impl FnMut(&mut Sim, &RunConfig) -> T,
) -> Exploration {
    let limits = search.limits(max_schedules, max_time, keep);
    let cfg = RunConfig {
        record: true,
        ..cfg.clone()
    };
    let mut sim = Sim::new(Box::new(search.dfs()));
    let mut ex = Exploration {
        reduction: search.reduction,
        prefix_given: search.prefix.len(),
        ..Exploration::default()
    };
    drive(&mut sim, &limits, None, &cfg, &mut ex, &mut run);
    ex.interrupted = !ex.complete && search.stop.is_some_and(|s| s.load(Ordering::Relaxed));
    ex.prefix_followed = sim.strategy().prefix_followed();
    ex.elapsed = limits.start.elapsed();
    ex
}

/// [`explore`] split into the branches off the first schedule (see
/// [`crate::sim::strategy::Branch`]), explored by `jobs` threads, each with
/// its own simulator and the run function `make` gives it.
///
/// A branch starts from what the whole search knows at its branch point
/// when it gets there (the first alternative's subtree, in the first
/// schedule's step and run), so the split search explores exactly the
/// schedules the whole search does; the split does not depend on `jobs`,
/// and neither does the result of a search that completes: counts,
/// outcomes and failures are merged in branch order. With `jobs > 1`,
/// which schedules a search stopped by a limit had explored depends on
/// timing. Sleep sets and the plain search only: a DPOR branch would not
/// see the races of the first alternative's subtree that ask for its other
/// alternatives.
pub fn explore_split<R, T>(
    search: Search,
    jobs: usize,
    max_schedules: Option<u64>,
    max_time: Option<Duration>,
    keep: usize,
    cfg: &RunConfig,
    make: impl Fn() -> R + Sync,
) -> Exploration
where
    R: FnMut(&mut Sim, &RunConfig) -> T,
    T: Into<Ran>,
{
    assert!(
        search.reduction != Reduction::Dpor,
        "DPOR searches are not split"
    );
    let limits = search.limits(max_schedules, max_time, keep);
    let cfg = RunConfig {
        record: true,
        ..cfg.clone()
    };
    let mut ex = Exploration {
        reduction: search.reduction,
        prefix_given: search.prefix.len(),
        ..Exploration::default()
    };
    // The first schedule, and the branches off it.
    let mut sim = Sim::new(Box::new(search.dfs().recording_branches()));
    drive(&mut sim, &limits, Some(1), &cfg, &mut ex, &mut make());
    ex.prefix_followed = sim.strategy().prefix_followed();
    let branches = sim.strategy().branches().to_vec();
    ex.branches = branches.len();
    // Its backtracking after the first run belongs to the whole search,
    // which the branches replace: what it pruned is not counted.
    ex.pruned = 0;
    let done = ex.schedules == 1 || ex.redundant == 1;
    let next = AtomicUsize::new(0);
    let parts: Vec<std::sync::Mutex<Option<Exploration>>> = branches
        .iter()
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    let worker = || {
        let mut run = make();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(branch) = branches.get(i) else {
                break;
            };
            if limits.reached(0) {
                break;
            }
            let mut sim = Sim::new(Box::new(search.dfs().below(branch.clone())));
            let mut part = Exploration::default();
            drive(&mut sim, &limits, None, &cfg, &mut part, &mut run);
            *parts[i].lock().expect("no worker panicked") = Some(part);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..jobs.max(1) {
            s.spawn(worker);
        }
        worker();
    });
    ex.complete = done;
    for part in parts {
        let Some(part) = part.into_inner().expect("no worker panicked") else {
            ex.complete = false;
            continue;
        };
        ex.complete &= part.complete;
        ex.redundant += part.redundant;
        ex.pruned += part.pruned;
        for (o, n) in part.outcomes {
            *ex.outcomes.entry(o).or_default() += n;
        }
        ex.max_preemptions = ex.max_preemptions.max(part.max_preemptions);
        ex.max_steps = ex.max_steps.max(part.max_steps);
        for mut f in part.failures {
            if ex.failures.len() < keep {
                f.index += ex.schedules;
                ex.failures.push(f);
            }
        }
        ex.client_failures += part.client_failures;
        for mut f in part.first_client_failures {
            if ex.first_client_failures.len() < keep {
                f.found.index += ex.schedules;
                ex.first_client_failures.push(f);
            }
        }
        ex.schedules += part.schedules;
    }
    ex.interrupted = !ex.complete && search.stop.is_some_and(|s| s.load(Ordering::Relaxed));
    ex.elapsed = limits.start.elapsed();
    ex
}

/// How [`Edited`] changes the preempting decision at one position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Edit {
    /// Let the running task continue, then follow the rest of the schedule.
    Continue,
    /// Let the running task continue until it blocks or ends, switch then
    /// to the task the schedule preempted it for, and follow the rest.
    Defer,
}

/// Follows a recorded schedule with one preempting decision edited: before
/// the edited position it replays exactly; after it, recorded steps that are
/// not possible any more are skipped. From position `cut` on, and when the
/// schedule is used up, the running task continues, else the lowest id runs,
/// and no timer fires early (as [`crate::sim::strategy::Replay`] does past
/// its end). Logs which decisions were preemptions.
struct Edited {
    steps: Vec<Step>,
    edit: Option<(usize, Edit)>,
    cut: usize,
    /// Next recorded step to read.
    cursor: usize,
    /// Decisions made so far in this run.
    decision: usize,
    /// `Defer` in progress: the task to switch to once the running one stops.
    deferred: Option<TaskId>,
    preempting: Rc<RefCell<Vec<usize>>>,
}

impl Edited {
    fn new(
        steps: &[Step],
        edit: Option<(usize, Edit)>,
        cut: usize,
        log: Rc<RefCell<Vec<usize>>>,
    ) -> Self {
        Edited {
            steps: steps.to_vec(),
            edit,
            cut,
            cursor: 0,
            decision: 0,
            deferred: None,
            preempting: log,
        }
    }

    /// The next recorded step that is possible here (skipping impossible
    /// ones once the schedule has been edited).
    fn recorded(&mut self, point: &Point<'_>) -> Option<(Choice, u64)> {
        let edited = self.edit.is_some_and(|(p, _)| self.decision > p);
        while self.cursor < self.cut.min(self.steps.len()) {
            let s = self.steps[self.cursor];
            self.cursor += 1;
            match s.kind {
                StepKind::Task(t) if point.runnable.binary_search(&TaskId(t)).is_ok() => {
                    return Some((Choice::Task(TaskId(t)), s.dt));
                }
                StepKind::Timer if point.next_timer.is_some() => {
                    return Some((Choice::Timer, s.dt));
                }
                _ if edited => continue,
                _ => return None,
            }
        }
        None
    }
}

impl Strategy for Edited {
    fn new_execution(&mut self, _seed: u64) {
        self.cursor = 0;
        self.decision = 0;
        self.deferred = None;
        self.preempting.borrow_mut().clear();
    }

    fn next_task(&mut self, point: &Point<'_>) -> Decision {
        let fallback = Choice::Task(point.current.unwrap_or(point.runnable[0]));
        let d = self.decision;
        let (mut choice, dt) = if let Some(t) = self.deferred {
            match point.current {
                Some(c) => (Choice::Task(c), 0),
                None => {
                    self.deferred = None;
                    let c = if point.runnable.binary_search(&t).is_ok() {
                        Choice::Task(t)
                    } else {
                        fallback
                    };
                    (c, 0)
                }
            }
        } else {
            self.recorded(point).unwrap_or((fallback, 0))
        };
        if let Some((p, edit)) = self.edit
            && p == d
            && let Some(c) = point.current
            && choice != Choice::Task(c)
        {
            if let (Edit::Defer, Choice::Task(t)) = (edit, choice) {
                self.deferred = Some(t);
            }
            choice = Choice::Task(c);
        }
        if point.current.is_some_and(|c| choice != Choice::Task(c)) {
            self.preempting.borrow_mut().push(d);
        }
        self.decision += 1;
        Decision {
            choice,
            at: point.now + dt,
        }
    }

    fn choose(&mut self, n: usize) -> usize {
        self.decision += 1;
        match self.steps.get(self.cursor).map(|s| s.kind) {
            Some(StepKind::Choose(k)) if self.cursor < self.cut => {
                self.cursor += 1;
                (k as usize).min(n - 1)
            }
            _ => 0,
        }
    }

    fn name(&self) -> String {
        "replay".into()
    }
}

/// A shrunk failing schedule.
#[derive(Clone, Debug)]
pub struct Minimized {
    pub outcome: Outcome,
    /// The shortest prefix that, replayed (the running task continuing past
    /// its end, as `Replay` does), still fails the same way.
    pub schedule: Schedule,
    pub preemptions: u64,
    /// Decisions of the full run.
    pub steps: u64,
    /// Preemptions and decisions of the run it started from.
    pub original_preemptions: u64,
    pub original_steps: u64,
    /// Replays tried.
    pub attempts: u64,
}

/// Shrinks `failing` (a recorded schedule whose run ends with the failure
/// `target`) to the schedule with the fewest preemptions and then the fewest
/// recorded steps that still ends in `target`: each preempting decision in
/// turn is replaced by "continue the running task" (then following the rest
/// of the schedule, or dropping it) or by "continue it until it blocks, then
/// switch to the task it was preempted for" (then the rest), a change is kept when the oracle still fires
/// and the run has fewer preemptions (or as many and fewer steps), until no
/// single change helps; then the schedule is cut to its shortest failing
/// prefix. Every candidate is a real run and the result is what that run
/// recorded, so it replays exactly. `None` if `failing` does not end in
/// `target`.
pub fn minimize(
    failing: &Schedule,
    target: Outcome,
    cfg: &RunConfig,
    mut run: impl FnMut(&mut Sim, &RunConfig) -> RunReport,
) -> Option<Minimized> {
    let cfg = RunConfig {
        record: true,
        seed: failing.seed,
        ..cfg.clone()
    };
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut attempts = 0u64;
    let mut attempt = |steps: &[Step], edit: Option<(usize, Edit)>, cut: usize| {
        attempts += 1;
        let mut sim = Sim::new(Box::new(Edited::new(steps, edit, cut, log.clone())));
        let report = run(&mut sim, &cfg);
        let positions = log.borrow().clone();
        (report, positions)
    };

    let (first, mut positions) = attempt(&failing.steps, None, usize::MAX);
    if first.outcome != target {
        return None;
    }
    let (original_preemptions, original_steps) = (first.preemptions, first.steps);
    let mut best = first;
    loop {
        let steps = best.schedule.as_ref().expect("recorded").steps.clone();
        let mut improved = false;
        'search: for &p in &positions {
            for (edit, cut) in [
                (Edit::Continue, usize::MAX),
                (Edit::Defer, usize::MAX),
                (Edit::Continue, p + 1),
            ] {
                let (r, pos) = attempt(&steps, Some((p, edit)), cut);
                if r.outcome == target && (r.preemptions, r.steps) < (best.preemptions, best.steps)
                {
                    best = r;
                    positions = pos;
                    improved = true;
                    break 'search;
                }
            }
        }
        if !improved {
            break;
        }
    }
    // The shortest prefix that fails the same way with no more preemptions.
    let steps = best.schedule.as_ref().expect("recorded").steps.clone();
    let mut cut = steps.len();
    for len in 0..steps.len() {
        let (r, _) = attempt(&steps, None, len);
        if r.outcome == target && r.preemptions <= best.preemptions {
            cut = len;
            break;
        }
    }
    Some(Minimized {
        outcome: target,
        schedule: Schedule {
            seed: failing.seed,
            steps: steps[..cut].to_vec(),
        },
        preemptions: best.preemptions,
        steps: best.steps,
        original_preemptions,
        original_steps,
        attempts,
    })
}
