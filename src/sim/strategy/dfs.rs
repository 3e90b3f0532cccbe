//! Depth-first enumeration of schedules with a preemption bound (CHESS-style
//! context bounding). Each execution replays the prefix recorded on the stack
//! and extends it with the non-preempting choice; after the run, the deepest
//! frame with an untried alternative within the bound is advanced.
//!
//! Preemptions are counted per actor switch, tasks and the timer alike: a
//! switch away from a task that could continue costs one (firing a timer
//! while it could continue is such a switch), and firing a timer before its
//! deadline costs one more. Switches forced by blocking are free, and so is
//! the choice right after a fire (the timer took its step and is done, as a
//! task that blocked). The two costs add up, so a reordering of commuting
//! steps changes the cost only through the switches at its ends; the
//! reductions below rely on that. When nothing can run and a timer fires by
//! itself, that fire is a frame with one alternative (it is not a decision
//! of the schedule), so that the race analysis sees it. Model choices
//! (`select`, map order) are enumerated too and never count as
//! preemptions; an optional choice bound limits how many of them may differ
//! from the first alternative (the first ready case, the first order), for
//! spaces where those choices multiply everything.
//!
//! Three reductions ([`Reduction`]) skip schedules that only reorder
//! commuting steps of ones already explored. All rest on the footprint the
//! kernel reports for every step: the objects it used and how (see
//! [`Strategy::step_footprint`]). Two steps of different tasks commute
//! unless they use one object in conflicting ways (anything but two reads
//! or two additions). Firing a timer writes the clock, the timer queue, its
//! deadline and its timer (and starts or wakes a task, which orders that
//! task after it); reading `now` or arming a timer reads the clock, and a
//! timer that becomes the earliest writes the queue. So a fire commutes with
//! steps that leave time and timers alone. A fire comes after the arming of
//! its timer (`Access::Arm` and `Access::Fire` on the timer's slot): that is
//! an ordering, never a race.
//!
//! **Sleep sets** (Godefroid), the default. After the subtree of task `a` at
//! a point is explored, `a` sleeps in its later siblings' subtrees until a
//! step that does not commute with `a`'s step there runs; a sleeping task is
//! not scheduled, because every schedule that runs it there is a reordering
//! of one already explored. Under a preemption bound the reordering must
//! not cost more preemptions than the schedule it stands for. Moving one
//! step can add a switch (away from `a` where it could go on), so the
//! argument moves `a`'s whole run (see [`Dfs::sleep_after`]): while the
//! steps since its point commute with that run, `a` is not scheduled; once
//! they do not, it is scheduled only as a probe that must go on until one of
//! its steps conflicts with a step it slept through. A preempting
//! alternative does not sleep behind the running task's. When every
//! alternative at a point sleeps, the rest of that execution is redundant:
//! it finishes without branching (so the model shuts down and frees what it
//! holds) and is reported as redundant, not as a schedule.
//! `tests/reduction_fuzz.rs` checks this reduction against the plain search
//! on random programs at K = 0, 1 and 2.
//!
//! **Dynamic partial-order reduction** (Flanagan and Godefroid, POPL 2005),
//! with the sleep sets on top. A point starts with only its first
//! alternative to explore. After each execution, its steps get vector
//! clocks: a step happens after its task's previous step, after the step
//! that spawned or woke its task, and after every earlier step it conflicts
//! with. Two conflicting steps of different tasks that are not ordered
//! otherwise race; the race is reversed by trying the later step's task at
//! the earlier step's point (or, if it could not run there, the first later
//! step that does not depend on the earlier one; failing that, every
//! alternative). Under a preemption bound, reversing at that point may be a
//! preemption the budget cannot pay while switching where the earlier
//! step's task was last switched to is free, so the task is also tried
//! there, or every alternative if it could not run there (the conservative
//! points of BPOR, Coons, Musuvathi and McKinley, OOPSLA 2013). Fires are
//! not a sequence of their own: a fire's past is its timer's arming, and it
//! races with steps that armed an earlier timer since. Even so, on random
//! programs this reduction misses outcomes of the plain search at K = 1
//! (the reversal of one race can need a preemption that only a reordering
//! of another makes affordable), so it is for hunting bugs fast, not for
//! showing their absence.
//!
//! **Steps that only block** are not scheduled by either reduction (the
//! plain search keeps them: it is the reference). The kernel tells which
//! runnable tasks would block at once on their next operation (a held
//! mutex, an empty queue, an event not fired; [`Pending`]). Such a step
//! changes nothing, so the search does not switch to that task while
//! another can run; if the running task would only block, it goes on alone
//! (switching away would be a preemption that reaches nothing new); if
//! every task would, they block one by one for free. A mutex's acquire, its
//! release and a blocked attempt are told apart: a lock races with the
//! holder's acquire, not with the release that let it through, and its
//! task's readiness after a release is not an ordering. This is the usual
//! model of locks in partial-order reduction (a task waiting on a held lock
//! is disabled).
//!
//! Footprints are observed, not predicted: a sleeping task's entry carries
//! the footprints its step and its run had when they were explored, which
//! stay valid while only commuting steps run. Reads of model state outside
//! kernel objects are assumed to be protected by kernel objects (the Go
//! code is race-free).

use std::rc::Rc;

use super::{Choice, Decision, Pending, Point, Strategy};
use crate::sim::TaskId;
use crate::sim::schedule::StepKind;
use crate::sim::task::{Access, ObjId, Use};

/// How one step used objects: one entry per object, sorted by object;
/// `None` when unknown (the step then commutes with nothing).
type Footprint = Option<Vec<Use>>;

/// A finished footprint kept in sleep sets: shared, since an entry is copied
/// into every frame below it while it sleeps.
type Shared = Option<Rc<[Use]>>;

/// Sorts by object and merges the uses of one object: the same access stays,
/// different ones become a write.
fn normalise(raw: &[Use]) -> Vec<Use> {
    let mut v = raw.to_vec();
    v.sort_unstable();
    let mut out: Vec<Use> = Vec::with_capacity(v.len());
    for u in v {
        match out.last_mut() {
            Some(last) if last.obj == u.obj => {
                if last.access != u.access {
                    last.access = Access::Write;
                }
            }
            _ => out.push(u),
        }
    }
    out
}

/// Two steps commute if both footprints are known and no object is used by
/// both in conflicting ways.
#[cfg(test)]
fn commute(a: &Footprint, b: &Footprint) -> bool {
    commute_uses(a.as_deref(), b.as_deref())
}

fn commute_uses(a: Option<&[Use]>, b: Option<&[Use]>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return false;
    };
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].obj.cmp(&b[j].obj) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                if a[i].conflicts(b[j]) {
                    return false;
                }
                i += 1;
                j += 1;
            }
        }
    }
    true
}

fn union(into: &mut Footprint, more: &Footprint) {
    match (into.as_mut(), more) {
        (Some(a), Some(b)) => {
            a.extend_from_slice(b);
            *a = normalise(a);
        }
        _ => *into = None,
    }
}

#[derive(Clone, Debug)]
struct Frame {
    /// Alternatives at this point, non-preempting one first.
    alternatives: Vec<Alt>,
    /// Tasks that could run here but are not alternatives: the running task
    /// would only block, so it goes first (switching away from it would be
    /// a preemption that reaches nothing new).
    also: Vec<Alt>,
    /// What the search has done with each alternative.
    marks: Vec<Mark>,
    chosen: usize,
    /// Preemptions spent before this frame.
    spent_before: u32,
    /// Non-first model choices made before this frame.
    choices_before: u32,
    /// Tasks asleep here.
    sleep: Vec<Sleeper>,
    /// The chosen alternative probes a sleeper: its task must go on until a
    /// step of it conflicts with these uses, those of the steps it slept
    /// through (see [`Dfs::sleep_after`]).
    probe: Option<Rc<[Use]>>,
    /// Task alternatives whose subtrees are done.
    done: Vec<Done>,
    /// Footprint of the steps the chosen task took after this one without
    /// a switch, over the executions that passed through it; `None` if
    /// unknown, or if the task could have gone on where the search did
    /// not let it (it slept there).
    run: Footprint,
    /// The task running at this point, if any (it could go on).
    current: Option<TaskId>,
    /// Nothing could run: a timer fires by itself. Not a decision of the
    /// schedule; the frame is there for the race analysis.
    forced: bool,
    /// Decisions of the schedule before this frame.
    decision: u32,
    /// Footprint of the chosen alternative's step (union over the
    /// executions that passed through it).
    footprint: Footprint,
    /// The chosen step as the race analysis saw it (scheduling frames of
    /// the current execution that have been analysed).
    step: Option<StepInfo>,
}

/// A task alternative whose subtree is done. It sleeps in its later
/// siblings' subtrees with the footprint of its whole run from this point:
/// the steps it took here without a switch until it blocked, over the
/// executions of its subtree (see [`Dfs::sleep_after`]).
#[derive(Clone, Debug)]
struct Done {
    task: TaskId,
    /// Footprint of its step here.
    step: Shared,
    /// Footprint of its run from here (the step included).
    run: Shared,
    /// Choosing it here was a preemption.
    preempts: bool,
}

/// A task asleep at a point.
#[derive(Clone, Debug)]
struct Sleeper {
    task: TaskId,
    /// Footprint of its step where its subtree was explored.
    step: Shared,
    /// Footprint of its run there.
    run: Shared,
    /// That point (a scheduling frame).
    origin: u32,
    /// A step since then did not commute with its run: scheduling it here
    /// can reach something new, but only if it goes on until one of its
    /// steps conflicts with a step it slept through.
    probe: bool,
}

/// A probe in progress (see [`Sleeper::probe`]).
#[derive(Clone, Debug)]
struct Probe {
    task: TaskId,
    /// Uses of the steps it slept through.
    slept: Rc<[Use]>,
    /// The frame where it started.
    at: usize,
}

/// Whether an alternative's task sleeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asleep {
    No,
    Yes,
    /// It may be probed (see [`Sleeper::probe`]); its subtree was explored
    /// at this frame.
    Probe(u32),
}

/// Search state of one alternative at a point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    /// Not (yet) needed: no race asks for it (dynamic partial-order
    /// reduction only; the other reductions mark every alternative `Todo`).
    Idle,
    /// To be explored.
    Todo,
    /// Explored, or skipped because its task slept.
    Done,
}

/// Which reduction [`Dfs`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Every schedule within the bounds.
    #[default]
    None,
    /// Every alternative is tried unless its task sleeps.
    SleepSets,
    /// An alternative is tried only where a race in an explored execution
    /// asks for it (and its task is awake).
    Dpor,
}

impl Reduction {
    pub fn as_str(self) -> &'static str {
        match self {
            Reduction::None => "none",
            Reduction::SleepSets => "sleep-sets",
            Reduction::Dpor => "dpor",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alt {
    Sched {
        choice: Choice,
        /// Choosing it switches away from a task that could go on.
        preempts: bool,
        /// It fires a timer before its deadline (that costs one more).
        early: bool,
        /// The task's step locks a mutex.
        locks: bool,
    },
    Pick(usize),
}

impl Alt {
    /// Preemptions it costs.
    fn cost(self) -> u32 {
        match self {
            Alt::Sched {
                preempts, early, ..
            } => u32::from(preempts) + u32::from(early),
            Alt::Pick(_) => 0,
        }
    }

    fn task(self) -> Option<TaskId> {
        match self {
            Alt::Sched {
                choice: Choice::Task(t),
                ..
            } => Some(t),
            _ => None,
        }
    }
}

/// One analysed step: who took it, its footprint, and its vector clock
/// (for each actor, how many of its steps happen before or at this one).
#[derive(Clone, Debug)]
struct StepInfo {
    actor: u32,
    /// 1-based index of this step among its actor's steps.
    seq: u32,
    fp: Shared,
    /// The actor's previous step (frame index).
    prev_same: Option<u32>,
    /// First frame of the run of consecutive steps by this actor that
    /// contains this one (where the search switched to it).
    block_start: u32,
    clock: Vec<u32>,
}

/// How a schedule records an alternative.
fn kind(alt: Alt) -> StepKind {
    match alt {
        Alt::Sched {
            choice: Choice::Task(t),
            ..
        } => StepKind::Task(t.0),
        Alt::Sched {
            choice: Choice::Timer,
            ..
        } => StepKind::Timer,
        Alt::Pick(k) => StepKind::Choose(k as u32),
    }
}

/// The actor of a scheduling alternative: the timer queue is actor 0, task
/// `t` is actor `t + 1`.
fn actor_of(choice: Choice) -> u32 {
    match choice {
        Choice::Timer => 0,
        Choice::Task(t) => t.0 + 1,
    }
}

/// Happens-before: `clock` covers step `seq` of `actor`.
fn covers(clock: &[u32], actor: u32, seq: u32) -> bool {
    clock.get(actor as usize).is_some_and(|&c| c >= seq)
}

fn join(into: &mut Vec<u32>, other: &[u32]) {
    if into.len() < other.len() {
        into.resize(other.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(other) {
        *a = (*a).max(*b);
    }
}

const SEED_MUL: u64 = 0x517c_c1b7_2722_0a95;

/// A fixed, seedless hasher for object ids: lookups only, never iterated.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(SEED_MUL);
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(SEED_MUL);
    }
}

type IdMap<V> = std::collections::HashMap<ObjId, V, std::hash::BuildHasherDefault<IdHasher>>;

/// When a task last could run, and what made it runnable then (frames).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Seen {
    last: Option<u32>,
    enabler: Option<u32>,
}

/// Incremental race analysis of the current execution (dynamic
/// partial-order reduction): the frames below `analysed` have their
/// [`StepInfo`] and are entered in the logs. Backtracking rolls it back.
#[derive(Default)]
struct Races {
    analysed: usize,
    /// Per object, the analysed steps that used it, in order.
    logs: IdMap<Vec<(u32, Access)>>,
    /// Analysed steps with an unknown footprint (they conflict with all).
    opaque: Vec<u32>,
    /// Per actor, its last analysed step.
    last_of: Vec<Option<u32>>,
    /// Per task: the last analysed frame where it could run, and the step
    /// that made it runnable there (it was spawned or woken by that step,
    /// so its next step cannot come before it).
    seen: Vec<Seen>,
    /// Tasks woken or started by a timer that fired by itself (nothing
    /// could run) after the step of a frame, in this execution.
    timer_woken: Vec<(u32, TaskId)>,
    /// Entries of `seen` changed by each frame, to undo on rollback.
    undo: Vec<(u32, u32, Seen)>,
}

pub struct Dfs {
    bound: Option<u32>,
    choice_bound: Option<u32>,
    /// Non-first model choices made so far in this execution.
    choices: u32,
    reduction: Reduction,
    stack: Vec<Frame>,
    depth: usize,
    spent: u32,
    complete: bool,
    /// Index of the scheduling frame whose step is running.
    last_sched: Option<usize>,
    /// That step's footprint has reached its frame.
    delivered: bool,
    /// Footprint of the step that just ended, from the kernel.
    last_footprint: Vec<Use>,
    /// The current execution is redundant: it runs to its end without
    /// frames, the running task continuing or else the lowest id.
    coasting: bool,
    /// Executions started.
    executions: u64,
    /// Alternatives within the bound not explored because their task slept.
    pruned: u64,
    races: Races,
    /// Decisions every schedule starts with (see [`Dfs::with_prefix`]).
    prefix: Vec<StepKind>,
    /// Runnable tasks at the latest point whose next step tries a held
    /// mutex.
    held: Vec<TaskId>,
    /// The task this execution probes, and the uses of the steps it slept
    /// through, until one of its steps conflicts with them.
    probing: Option<Probe>,
    /// Record the branches off the first schedule (see [`Strategy::branches`]).
    record_branches: bool,
    branches: Vec<Branch>,
    /// The subtree this search covers starts with the step of a task whose
    /// own subtree is explored elsewhere (see [`Dfs::below`]).
    seed: Option<Branch>,
}

/// A part of the search: the schedules that follow the first schedule
/// (every point's first alternative) up to one point and take another
/// alternative there. Every schedule but the first is in exactly one
/// branch, so the branches can be explored apart, in any order or at once.
/// Explored with [`Dfs::below`], a branch is exactly what the whole search
/// explores at that point once the first alternative's subtree is done.
/// Sent to the thread that explores it.
#[derive(Clone, Debug)]
pub struct Branch {
    /// The decisions of the first schedule before the branch point.
    pub prefix: Vec<StepKind>,
    /// The first schedule's decision at the branch point.
    first: StepKind,
    /// Its task, with its step there and its run from there: what the
    /// whole search knows of that subtree when it moves on to the other
    /// alternatives (see [`Done`]).
    done: Option<(TaskId, Footprint, Footprint)>,
}

impl Dfs {
    /// `bound`: maximum preemptions per schedule (`None` = unbounded), with
    /// sleep sets.
    pub fn new(bound: Option<u32>) -> Self {
        Dfs::with_reduction(bound, Reduction::SleepSets)
    }

    /// The plain bounded search, every schedule within the bound.
    pub fn without_pruning(bound: Option<u32>) -> Self {
        Dfs::with_reduction(bound, Reduction::None)
    }

    /// `bound` as in [`Dfs::new`], with the given reduction.
    pub fn with_reduction(bound: Option<u32>, reduction: Reduction) -> Self {
        Dfs {
            bound,
            choice_bound: None,
            choices: 0,
            reduction,
            stack: Vec::new(),
            depth: 0,
            spent: 0,
            complete: false,
            last_sched: None,
            delivered: true,
            last_footprint: Vec::new(),
            coasting: false,
            executions: 0,
            pruned: 0,
            races: Races::default(),
            prefix: Vec::new(),
            held: Vec::new(),
            probing: None,
            record_branches: false,
            branches: Vec::new(),
            seed: None,
        }
    }

    /// Records, at the end of the first execution, the branches off it
    /// that fit the bounds (see [`Branch`]), deepest first, as the whole
    /// search takes them; read them with [`Strategy::branches`]. The search
    /// itself goes on as usual.
    pub fn recording_branches(self) -> Self {
        Dfs {
            record_branches: true,
            ..self
        }
    }

    /// Explores only `branch` (of a search with the same bounds, reduction
    /// and prefix): its prefix is followed; at the branch point the first
    /// schedule's alternative is done, with what its subtree left, and the
    /// others are explored.
    pub fn below(self, branch: Branch) -> Self {
        Dfs {
            prefix: branch.prefix.clone(),
            seed: Some(branch),
            ..self
        }
    }

    /// Explores only the schedules that start with these decisions (as
    /// recorded in a [`crate::sim::Schedule`]); their preemptions count
    /// towards the bound. A decision that is not possible ends the prefix.
    pub fn with_prefix(self, prefix: Vec<StepKind>) -> Self {
        Dfs { prefix, ..self }
    }

    /// At a new frame inside the prefix: only the recorded alternative is
    /// explored. False if the frame is past the prefix or the recorded
    /// decision is not among its alternatives.
    fn force(&mut self, index: usize) -> bool {
        let f = &mut self.stack[index];
        let decision = f.decision as usize;
        let Some(&want) = self.prefix.get(decision).filter(|_| !f.forced) else {
            return false;
        };
        let Some(k) = f.alternatives.iter().position(|&a| kind(a) == want) else {
            self.prefix.truncate(decision);
            return false;
        };
        f.marks.fill(Mark::Done);
        f.chosen = k;
        true
    }

    /// At the new frame `index`: if it is the branch point of the branch
    /// this search explores, marks the first schedule's alternative done
    /// there, as the whole search has it when it moves on. True if it was.
    fn seed(&mut self, index: usize) -> bool {
        let f = &mut self.stack[index];
        if f.forced || f.decision as usize != self.prefix.len() {
            return false;
        }
        let Some(branch) = self.seed.take() else {
            return false;
        };
        let Some(i) = f.alternatives.iter().position(|&a| kind(a) == branch.first) else {
            return false;
        };
        f.marks[i] = Mark::Done;
        if let Some((task, step, run)) = branch.done {
            f.done.push(Done {
                task,
                step: step.map(Rc::from),
                run: run.map(Rc::from),
                preempts: false,
            });
        }
        true
    }

    /// The branches off the execution that just ended, which followed the
    /// first alternative everywhere after the prefix (see [`Branch`]).
    fn record(&mut self) {
        // The run of the task chosen at each frame, as `backtrack` will
        // gather it: its steps from there while it went on.
        let mut runs: Vec<Footprint> = self.stack.iter().map(|f| f.run.clone()).collect();
        let mut done = vec![None; self.stack.len()];
        for i in (0..self.stack.len()).rev() {
            let f = &self.stack[i];
            let Some(task) = f.alternatives[f.chosen].task() else {
                continue;
            };
            let mut fp = runs[i].clone();
            union(&mut fp, &f.footprint);
            if let Some(prev) = self.went_on_from(i, task) {
                union(&mut runs[prev], &fp);
            }
            done[i] = Some((task, f.footprint.clone(), fp));
        }
        let mut path = Vec::new();
        let mut branches = Vec::new();
        for (i, f) in self.stack.iter().enumerate() {
            if f.forced {
                continue;
            }
            let first = kind(f.alternatives[f.chosen]);
            if path.len() >= self.prefix.len()
                && (0..f.alternatives.len())
                    .any(|j| j != f.chosen && self.allowed(f, f.alternatives[j]))
            {
                branches.push(Branch {
                    prefix: path.clone(),
                    first,
                    done: done[i].clone(),
                });
            }
            path.push(first);
        }
        // The whole search backtracks from the end: its order is the
        // deepest branch first.
        branches.reverse();
        self.branches = branches;
    }

    /// At most `c` model choices per schedule other than the first
    /// alternative (`None`: every choice is enumerated, the default).
    pub fn with_choice_bound(self, c: Option<u32>) -> Self {
        Dfs {
            choice_bound: c,
            ..self
        }
    }

    /// Executions started so far.
    pub fn executions(&self) -> u64 {
        self.executions
    }

    fn prune(&self) -> bool {
        self.reduction != Reduction::None
    }

    fn allowed(&self, f: &Frame, alt: Alt) -> bool {
        match alt {
            Alt::Sched { .. } => self.bound.is_none_or(|b| f.spent_before + alt.cost() <= b),
            Alt::Pick(k) if k > 0 => self.choice_bound.is_none_or(|c| f.choices_before < c),
            _ => true,
        }
    }

    fn asleep(frame: &Frame, alt: Alt) -> Asleep {
        let Some(t) = alt.task() else {
            return Asleep::No;
        };
        // A task probed at a point is done there too: any entry that
        // lets it sleep outright wins, else the probe from the latest point
        // (the fewest steps slept through).
        let mut asleep = Asleep::No;
        for s in frame.sleep.iter().filter(|s| s.task == t) {
            match (s.probe, asleep) {
                (false, _) => return Asleep::Yes,
                (true, Asleep::Probe(o)) if o >= s.origin => {}
                (true, _) => asleep = Asleep::Probe(s.origin),
            }
        }
        asleep
    }

    /// Chooses alternative `i` at frame `index`, as a probe if its task
    /// sleeps there since frame `origin`: the uses of the steps from there
    /// are what the probe must conflict with (none known: no probe).
    fn choose_at(&mut self, index: usize, i: usize, origin: Option<u32>) {
        let probe = origin.and_then(|o| {
            let mut slept = Vec::new();
            for f in &self.stack[o as usize..index] {
                slept.extend_from_slice(f.footprint.as_deref()?);
            }
            Some(Rc::from(normalise(&slept)))
        });
        let f = &mut self.stack[index];
        f.marks[i] = Mark::Done;
        f.chosen = i;
        f.probe = probe;
    }

    /// The next alternative to explore at frame `index`: the first one
    /// marked `Todo` that is within the bound and not asleep (it may be a
    /// probe). Sleeping ones are marked done and counted as pruned.
    fn next_alternative(&mut self, index: usize) -> Option<usize> {
        for i in 0..self.stack[index].alternatives.len() {
            let f = &self.stack[index];
            let alt = f.alternatives[i];
            if f.marks[i] != Mark::Todo || !self.allowed(f, alt) {
                continue;
            }
            let origin = match Self::asleep(f, alt) {
                Asleep::Yes => {
                    self.stack[index].marks[i] = Mark::Done;
                    self.pruned += 1;
                    continue;
                }
                Asleep::No => None,
                Asleep::Probe(o) => Some(o),
            };
            self.choose_at(index, i, origin);
            return Some(i);
        }
        None
    }

    /// Moves to the next schedule; false if none is left.
    fn backtrack(&mut self) -> bool {
        while let Some(top) = self.stack.last() {
            let index = self.stack.len() - 1;
            // The step that contains this frame changes or goes.
            let owner = if top
                .alternatives
                .first()
                .is_some_and(|a| matches!(a, Alt::Pick(_)))
            {
                self.previous_sched(index).unwrap_or(0)
            } else {
                index
            };
            self.rollback(owner);
            let top = &mut self.stack[index];
            if let Some(&Alt::Sched {
                choice: Choice::Task(task),
                preempts,
                ..
            }) = top.alternatives.get(top.chosen)
            {
                let step = top.footprint.replace(Vec::new());
                let mut fp = top.run.replace(Vec::new());
                union(&mut fp, &step);
                // The run from the previous point, if the task went on
                // from there to here.
                if let Some(prev) = self.went_on_from(index, task) {
                    union(&mut self.stack[prev].run, &fp);
                }
                self.stack[index].done.push(Done {
                    task,
                    step: step.map(Rc::from),
                    run: fp.map(Rc::from),
                    preempts,
                });
            }
            if self.next_alternative(index).is_some() {
                return true;
            }
            self.stack.pop();
        }
        false
    }

    /// The tasks asleep after the step of the scheduling frame `parent`,
    /// whose footprint was `fp`: those asleep there and those whose
    /// subtrees are done there, as long as their steps commute with it.
    ///
    /// A sleeper `t` stands for moving its run to the point where its
    /// subtree was explored. Say that from there, `u w` ran and then `t`
    /// ran `t1 .. tj` before a switch to `r`. If `u w` commutes with all of
    /// `t1 .. tj`, this is a reordering of `t1 .. tj u w r`, in `t`'s
    /// subtree. That reordering costs no more preemptions. Early fires cost
    /// the same in both (the clock is where it was: `t` does not touch it).
    /// Of the switches, only those at the ends of the moved run differ:
    /// leaving `tj` is a switch away from a task that could go on in both or
    /// in neither; entering `t1` after `w` is one if entering `r` after `w`
    /// is (after a fire, both are free); and at the point itself, choosing
    /// `t` is a switch no more than choosing `u` is, unless `u` was the
    /// running task (so a preempting alternative never sleeps behind the
    /// running task's). So it was explored if the schedule it stands for
    /// fits the bound. (When an early fire could share one preemption with
    /// the switch it makes, this failed: the random programs of
    /// `tests/reduction_fuzz.rs` lost outcomes until the two costs were
    /// made to add up.)
    ///
    /// Hence, under a bound, a task sleeps while the steps since its point
    /// commute with its first step, as usual; while they also commute with
    /// its whole run there, it is not scheduled at all; once they do not, it
    /// may be scheduled, but only as a probe: it must go on until one of its
    /// steps conflicts with a step it slept through, and a switch away
    /// before that, or its blocking, reaches nothing new.
    ///
    /// Moving only `t1` is not enough under a bound: it adds a switch from
    /// `t` to `u` where `t` could go on, and a schedule that needed none is
    /// lost (the `own_lock_first` toy of `tests/explore.rs` lost an outcome
    /// at K = 0 that way).
    fn sleep_after(&self, parent: usize, fp: &[Use]) -> Vec<Sleeper> {
        let p = &self.stack[parent];
        let (ran, preempts) = match p.alternatives[p.chosen] {
            Alt::Sched {
                choice, preempts, ..
            } => (
                match choice {
                    Choice::Task(t) => Some(t),
                    Choice::Timer => None,
                },
                preempts,
            ),
            Alt::Pick(_) => (None, false),
        };
        let bounded = self.bound.is_some();
        let keeps =
            |t: TaskId, step: &Shared| Some(t) != ran && commute_uses(step.as_deref(), Some(fp));
        let probe = |run: &Shared| bounded && !commute_uses(run.as_deref(), Some(fp));
        let mut sleep: Vec<Sleeper> = p
            .sleep
            .iter()
            .filter(|s| keeps(s.task, &s.step))
            .map(|s| Sleeper {
                probe: s.probe || probe(&s.run),
                ..s.clone()
            })
            .collect();
        sleep.extend(
            p.done
                .iter()
                .filter(|d| (!bounded || preempts || !d.preempts) && keeps(d.task, &d.step))
                .map(|d| Sleeper {
                    task: d.task,
                    step: d.step.clone(),
                    run: d.run.clone(),
                    origin: parent as u32,
                    probe: probe(&d.run),
                }),
        );
        sleep
    }

    /// The decisions of the schedule before a new frame.
    fn next_decision(&self) -> usize {
        self.stack
            .last()
            .map_or(0, |f| f.decision as usize + usize::from(!f.forced))
    }

    /// The scheduling frame `task`, chosen at frame `index`, went on from
    /// without a switch, if any: its run from there includes its run from
    /// `index`.
    fn went_on_from(&self, index: usize, task: TaskId) -> Option<usize> {
        if self.stack[index].current != Some(task) {
            return None;
        }
        let prev = self.previous_sched(index)?;
        let p = &self.stack[prev];
        (p.alternatives[p.chosen].task() == Some(task)).then_some(prev)
    }

    /// The scheduling frame before frame `index`.
    fn previous_sched(&self, index: usize) -> Option<usize> {
        (0..index)
            .rev()
            .find(|&i| matches!(self.stack[i].alternatives[0], Alt::Sched { .. }))
    }

    fn push_frame(
        &mut self,
        alternatives: Vec<Alt>,
        also: Vec<Alt>,
        sleep: Vec<Sleeper>,
        current: Option<TaskId>,
        forced: bool,
    ) {
        let pick = matches!(alternatives.first(), Some(Alt::Pick(_)));
        let mark = if pick || self.reduction != Reduction::Dpor {
            Mark::Todo
        } else {
            Mark::Idle
        };
        self.stack.push(Frame {
            marks: vec![mark; alternatives.len()],
            alternatives,
            also,
            chosen: 0,
            spent_before: self.spent,
            choices_before: self.choices,
            sleep,
            probe: None,
            done: Vec::new(),
            run: Some(Vec::new()),
            current,
            forced,
            decision: self.next_decision() as u32,
            footprint: Some(Vec::new()),
            step: None,
        });
    }

    /// Chooses the first alternative at the new frame `index`: with DPOR
    /// the first one within the bound that is awake; otherwise the first
    /// marked one.
    fn first_alternative(&mut self, index: usize) -> Option<usize> {
        if self.reduction == Reduction::Dpor {
            let f = &self.stack[index];
            let (first, origin) = (0..f.alternatives.len())
                .filter(|&i| self.allowed(f, f.alternatives[i]))
                .find_map(|i| match Self::asleep(f, f.alternatives[i]) {
                    Asleep::No => Some((i, None)),
                    Asleep::Probe(o) => Some((i, Some(o))),
                    Asleep::Yes => None,
                })?;
            self.choose_at(index, first, origin);
            Some(first)
        } else {
            self.next_alternative(index)
        }
    }

    /// The alternatives at a new point, and the tasks that could run there
    /// but are not alternatives. A task whose next step would only block
    /// (see [`Pending`]) is not scheduled while another can run: that step
    /// changes nothing, and it is taken when the task runs anyway. If the
    /// running task would only block, it goes on alone; if every task would,
    /// the first one runs. Inside a prefix every alternative stays, so that
    /// any recorded schedule can be followed.
    fn alternatives(&self, point: &Point<'_>) -> (Vec<Alt>, Vec<Alt>) {
        if point.runnable.is_empty() {
            // A timer fires because nothing else can happen.
            let fire = Alt::Sched {
                choice: Choice::Timer,
                preempts: false,
                early: false,
                locks: false,
            };
            return (vec![fire], Vec::new());
        }
        let filter =
            self.prune() && self.next_decision() >= self.prefix.len() && !point.pending.is_empty();
        let pending = |t: TaskId| {
            point
                .runnable
                .binary_search(&t)
                .ok()
                .and_then(|i| point.pending.get(i).copied())
                .unwrap_or(Pending::Free)
        };
        let task = |t: TaskId, preempts: bool| Alt::Sched {
            choice: Choice::Task(t),
            preempts,
            early: false,
            locks: pending(t).locks(),
        };
        let stalls = |t: TaskId| filter && pending(t).stalls();
        let mut alts = Vec::with_capacity(point.choices());
        let mut also = Vec::new();
        // Switching away from the running task is a preemption, unless a
        // timer just fired: like a task that took a step and blocked, it
        // leaves a free choice.
        let after_fire = self.last_sched.is_some_and(|p| {
            matches!(
                self.stack[p].alternatives[self.stack[p].chosen],
                Alt::Sched {
                    choice: Choice::Timer,
                    ..
                }
            )
        });
        let switch_costs = point.current.is_some() && !after_fire;
        if let Some(c) = point.current.filter(|&c| stalls(c)) {
            alts.push(task(c, false));
            also.extend(
                point
                    .runnable
                    .iter()
                    .filter(|&&t| t != c && !stalls(t))
                    .map(|&t| task(t, true)),
            );
            return (alts, also);
        }
        if let Some(c) = point.current {
            alts.push(task(c, false));
        }
        for i in 0..point.choices() {
            let choice = point.choice(i);
            match choice {
                Choice::Task(t) if Some(t) == point.current || stalls(t) => continue,
                Choice::Task(t) => alts.push(task(t, switch_costs)),
                // With no task to run, every task would only block: the
                // timer waits until they have.
                Choice::Timer => {
                    if !alts.is_empty() {
                        alts.push(Alt::Sched {
                            choice,
                            preempts: switch_costs,
                            early: point.next_timer.is_some_and(|d| d > point.now),
                            locks: false,
                        });
                    }
                }
            }
        }
        if alts.is_empty() {
            // Every task would only block: they do, one by one, for free.
            alts.push(task(point.runnable[0], false));
        }
        (alts, also)
    }

    fn take(&mut self) -> Alt {
        let f = &self.stack[self.depth];
        let alt = f.alternatives[f.chosen];
        if let (Some(slept), Some(task)) = (&f.probe, alt.task()) {
            self.probing = Some(Probe {
                task,
                slept: slept.clone(),
                at: self.depth,
            });
        }
        self.depth += 1;
        match alt {
            Alt::Sched { .. } => self.spent += alt.cost(),
            Alt::Pick(k) if k > 0 => self.choices += 1,
            _ => {}
        }
        alt
    }

    /// Asks for `actor`, whose step at frame `at` races with the step at
    /// frame `index`, to be tried at `index`. If its task could not run
    /// there, the first later step that does not depend on the step at
    /// `index` is asked for instead (it can run there and starts a
    /// reordering that leads to the race's reversal); failing that, every
    /// alternative.
    fn request(&mut self, index: usize, actor: u32, at: usize) {
        if self.mark(index, actor) {
            return;
        }
        let (a, seq) = {
            let s = self.step_at(index);
            (s.actor, s.seq)
        };
        let first = (index + 1..at.min(self.stack.len())).find_map(|k| {
            let s = self.stack[k].step.as_ref()?;
            (!covers(&s.clock, a, seq)).then_some(s.actor)
        });
        if first.is_some_and(|f| self.mark(index, f)) {
            return;
        }
        self.mark_all(index);
    }

    fn mark_all(&mut self, index: usize) {
        for mark in self.stack[index].marks.iter_mut() {
            if *mark == Mark::Idle {
                *mark = Mark::Todo;
            }
        }
    }

    /// Marks `actor`'s alternative at frame `index` to be explored, unless
    /// it already is or was; false if it has none there.
    fn mark(&mut self, index: usize, actor: u32) -> bool {
        let f = &mut self.stack[index];
        for (alt, mark) in f.alternatives.iter().zip(f.marks.iter_mut()) {
            if let Alt::Sched { choice, .. } = alt
                && actor_of(*choice) == actor
            {
                if *mark == Mark::Idle {
                    *mark = Mark::Todo;
                }
                return true;
            }
        }
        false
    }

    /// A step of `actor` whose required past is covered by `clock` races
    /// with the latest earlier step (before frame `before`) of another
    /// actor that it conflicts with and that does not happen before it:
    /// `actor` is requested at that step's point, and at the start of that
    /// step's block (BPOR's conservative point: `actor` if it could run
    /// there, else every alternative).
    fn race(
        &mut self,
        actor: u32,
        clock: &[u32],
        fp: Option<&[Use]>,
        before: usize,
        armed: Option<u32>,
    ) {
        let concurrent = |i: u32| {
            let s = self.step_at(i as usize);
            s.actor != actor && !covers(clock, s.actor, s.seq)
        };
        let mut latest: Option<u32> = None;
        match fp {
            None => {
                latest = (0..before as u32)
                    .rev()
                    .find(|&i| self.stack[i as usize].step.is_some() && concurrent(i));
            }
            Some(uses) => {
                for u in uses {
                    let Some(log) = self.races.logs.get(&u.obj) else {
                        continue;
                    };
                    for &(i, access) in log.iter().rev() {
                        if latest.is_some_and(|l| i <= l) {
                            break;
                        }
                        if actor == 0 && self.step_at(i as usize).actor == 0 {
                            // An earlier fire since this one's timer was
                            // armed: a step it comes after may have delayed
                            // this one (by arming an earlier timer); look
                            // past it.
                            if armed.is_some_and(|a| i > a) {
                                continue;
                            }
                            break;
                        }
                        let other = Use { obj: u.obj, access };
                        if u.races_after(other) {
                            if concurrent(i) {
                                latest = Some(i);
                                break;
                            }
                            if access.exclusive() {
                                // Everything earlier on this object that
                                // conflicts happens before this use.
                                break;
                            }
                        }
                    }
                }
                if let Some(&o) = self.races.opaque.last()
                    && latest.is_none_or(|l| o > l)
                    && concurrent(o)
                {
                    latest = Some(o);
                }
            }
        }
        if let Some(i) = latest {
            let start = self.step_at(i as usize).block_start;
            self.request(i as usize, actor, before);
            if start != i && !self.mark(start as usize, actor) {
                self.mark_all(start as usize);
            }
        }
    }

    /// Enters the frames of this execution not yet analysed into the race
    /// analysis and asks for the alternatives their races need.
    fn analyse(&mut self) {
        let end = self.stack.len();
        let mut prev_sched: Option<usize> = (0..self.races.analysed)
            .rev()
            .find(|&i| self.stack[i].step.is_some());
        while self.races.analysed < end {
            let j = self.races.analysed;
            self.races.analysed += 1;
            let Alt::Sched { choice, .. } = self.stack[j].alternatives[self.stack[j].chosen] else {
                continue;
            };
            // A task that could run here but not at the previous step was
            // spawned or woken by that step.
            let before = prev_sched.map(|p| p as u32);
            let frame = &self.stack[j];
            for alt in frame.alternatives.iter().chain(&frame.also) {
                if let Some(t) = alt.task() {
                    let t = t.index();
                    if self.races.seen.len() <= t {
                        self.races.seen.resize(t + 1, Seen::default());
                    }
                    let old = self.races.seen[t];
                    self.races.undo.push((j as u32, t as u32, old));
                    let enabler = if matches!(alt, Alt::Sched { locks: true, .. }) {
                        // Only a release lets a lock proceed, and the
                        // release does not race with it: the lock races
                        // with the holder's acquire.
                        None
                    } else if old.last.is_some() && old.last == before {
                        old.enabler
                    } else if before
                        .is_some_and(|b| self.races.timer_woken.contains(&(b, TaskId(t as u32))))
                    {
                        // The step did not wake it: time passed once
                        // nothing could run, and a timer did.
                        None
                    } else {
                        before
                    };
                    self.races.seen[t] = Seen {
                        last: Some(j as u32),
                        enabler,
                    };
                }
            }
            let actor = actor_of(choice);
            if self.races.last_of.len() <= actor as usize {
                self.races.last_of.resize(actor as usize + 1, None);
            }
            let prev_same = self.races.last_of[actor as usize];
            // What this actor's own past covers: its previous step and the
            // step that spawned or woke it.
            // Fires are not a sequence of their own: each fires whichever
            // timer is the earliest then. A fire's past is the arming of
            // its timer (below) and what it conflicts with.
            let mut clock = if actor == 0 {
                Vec::new()
            } else {
                self.own_past(actor)
            };
            let seq = prev_same.map_or(1, |p| self.step_at(p as usize).seq + 1);
            // A timer fire's footprint is the clock, the timer queue, its
            // deadline and its timer, and what a task it starts does.
            let fp: Shared = self.stack[j].footprint.as_deref().map(Rc::from);
            // A fire comes after the arming of its timer: that step (and
            // what came before it) is its past, not a race.
            let mut armed = None;
            for u in fp.iter().flat_map(|f| f.iter()) {
                if u.access == Access::Fire
                    && let Some(log) = self.races.logs.get(&u.obj)
                {
                    for &(i, _) in log {
                        join(&mut clock, &self.step_at(i as usize).clock);
                        armed = armed.max(Some(i));
                    }
                }
            }
            self.race(actor, &clock, fp.as_deref(), j, armed);
            // The clock: joined with every earlier step this one conflicts
            // with (the last write and later conflicting uses per object).
            match fp.as_deref() {
                None => {
                    for p in self.races.last_of.iter().flatten() {
                        join(&mut clock, &self.step_at(*p as usize).clock);
                    }
                }
                Some(uses) => {
                    for u in uses {
                        if let Some(log) = self.races.logs.get(&u.obj) {
                            for &(i, access) in log.iter().rev() {
                                if (Use { obj: u.obj, access }).conflicts(*u) {
                                    join(&mut clock, &self.step_at(i as usize).clock);
                                    if access.exclusive() {
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    if let Some(&o) = self.races.opaque.last() {
                        join(&mut clock, &self.step_at(o as usize).clock);
                    }
                }
            }
            if clock.len() <= actor as usize {
                clock.resize(actor as usize + 1, 0);
            }
            clock[actor as usize] = seq;
            match fp.as_deref() {
                None => self.races.opaque.push(j as u32),
                Some(uses) => {
                    for u in uses {
                        self.races
                            .logs
                            .entry(u.obj)
                            .or_default()
                            .push((j as u32, u.access));
                    }
                }
            }
            self.races.last_of[actor as usize] = Some(j as u32);
            let block_start = match prev_sched {
                Some(p) if self.step_at(p).actor == actor => self.step_at(p).block_start,
                _ => j as u32,
            };
            self.stack[j].step = Some(StepInfo {
                actor,
                seq,
                fp,
                prev_same,
                block_start,
                clock,
            });
            prev_sched = Some(j);
        }
        // Tasks that could still run at the last point never took their
        // next step; it may conflict with anything after their last one.
        // (A redundant execution went on past its frames.)
        if let Some(last) = prev_sched.filter(|_| !self.coasting) {
            let f = &self.stack[last];
            let waiting: Vec<TaskId> = f
                .alternatives
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != f.chosen)
                .map(|(_, a)| a)
                .chain(&f.also)
                .filter_map(|a| a.task())
                .chain(self.held.iter().copied())
                .collect();
            for t in waiting {
                let actor = t.0 + 1;
                // Only its own last step is known to come before it (the
                // step that woke it may be its last conflict, and is then
                // treated as a race too: more to explore, nothing missed).
                let clock = self.last_clock(actor);
                self.race(actor, &clock, None, end, None);
            }
        }
    }

    /// The clock covering what must come before the next step of `actor`:
    /// its previous step, and the step that spawned or woke it.
    fn own_past(&self, actor: u32) -> Vec<u32> {
        let mut clock = self.last_clock(actor);
        if actor > 0
            && let Some(Seen {
                enabler: Some(e), ..
            }) = self.races.seen.get(actor as usize - 1)
        {
            join(&mut clock, &self.step_at(*e as usize).clock);
        }
        clock
    }

    /// The clock of `actor`'s last analysed step (empty if none).
    fn last_clock(&self, actor: u32) -> Vec<u32> {
        self.races
            .last_of
            .get(actor as usize)
            .copied()
            .flatten()
            .map(|p| self.step_at(p as usize).clock.clone())
            .unwrap_or_default()
    }

    /// The analysed step of frame `i`.
    fn step_at(&self, i: usize) -> &StepInfo {
        self.stack[i].step.as_ref().expect("analysed")
    }

    /// Takes the frames from `to` up out of the race analysis.
    fn rollback(&mut self, to: usize) {
        while self.races.analysed > to {
            self.races.analysed -= 1;
            let j = self.races.analysed;
            while let Some(&(frame, t, old)) = self.races.undo.last()
                && frame as usize == j
            {
                self.races.seen[t as usize] = old;
                self.races.undo.pop();
            }
            let f = &mut self.stack[j];
            let Some(step) = f.step.take() else {
                continue;
            };
            match step.fp.as_deref() {
                None => {
                    self.races.opaque.pop();
                }
                Some(uses) => {
                    for u in uses {
                        if let Some(log) = self.races.logs.get_mut(&u.obj) {
                            log.pop();
                        }
                    }
                }
            }
            self.races.last_of[step.actor as usize] = step.prev_same;
        }
    }
}

/// The choice of a redundant run finishing without branching: the running
/// task continues, else the lowest id runs.
fn coast(point: &Point<'_>) -> Decision {
    let choice = point.current.map_or(point.choice(0), Choice::Task);
    Decision::now(point, choice)
}

impl Strategy for Dfs {
    fn new_execution(&mut self, _seed: u64) {
        self.executions += 1;
        self.races.timer_woken.clear();
        self.depth = 0;
        self.spent = 0;
        self.choices = 0;
        self.last_sched = None;
        self.delivered = true;
        self.coasting = false;
        self.probing = None;
    }

    fn end_execution(&mut self) {
        if !self.coasting
            && !self.delivered
            && let Some(p) = self.last_sched
        {
            // The last step ended the run; its footprint is unknown.
            self.stack[p].footprint = None;
        }
        if self.record_branches && self.executions == 1 {
            self.record();
        }
        if self.reduction == Reduction::Dpor {
            self.analyse();
        }
        if !self.backtrack() {
            self.complete = true;
        }
    }

    fn is_complete(&self) -> bool {
        self.complete
    }

    fn wants_footprints(&self) -> bool {
        self.prune()
    }

    fn step_footprint(&mut self, footprint: &[Use]) {
        // Only a new point uses it (see `next_task`).
        if self.depth == self.stack.len() {
            self.last_footprint.clear();
            self.last_footprint.extend_from_slice(footprint);
        }
    }

    fn timer_woke(&mut self, task: TaskId) {
        // Only fires that no frame chose matter (see `analyse`).
        if self.reduction == Reduction::Dpor
            && let Some(p) = self.last_sched
            && !matches!(
                self.stack[p].alternatives[self.stack[p].chosen],
                Alt::Sched {
                    choice: Choice::Timer,
                    ..
                }
            )
        {
            self.races.timer_woken.push((p as u32, task));
        }
    }

    fn redundant(&self) -> bool {
        self.coasting
    }

    fn pruned(&self) -> u64 {
        self.pruned
    }

    fn prefix_followed(&self) -> usize {
        self.prefix.len()
    }

    fn branches(&self) -> &[Branch] {
        &self.branches
    }

    fn next_task(&mut self, point: &Point<'_>) -> Decision {
        if self.coasting {
            return coast(point);
        }
        // The footprint of the step that just ended reaches its frame only
        // when this point is new: a replayed point follows a replayed step,
        // whose footprint is already there.
        let new_point = self.depth == self.stack.len();
        let mut fp = None;
        if self.prune() && !self.delivered {
            if let (Some(p), true) = (self.last_sched, new_point) {
                let uses = normalise(&self.last_footprint);
                union(&mut self.stack[p].footprint, &Some(uses.clone()));
                fp = Some(uses);
            }
            self.delivered = true;
        }
        self.held.clear();
        self.held.extend(
            point
                .runnable
                .iter()
                .zip(point.pending)
                .filter(|(_, p)| **p == Pending::Held)
                .map(|(t, _)| *t),
        );
        if let (Some(probe), Some(p)) = (&self.probing, self.last_sched) {
            if !commute_uses(self.stack[p].footprint.as_deref(), Some(&probe.slept)) {
                // The probed task's step conflicts with one it slept
                // through: what follows is new.
                self.probing = None;
            } else if point.current != Some(probe.task) && new_point {
                // It blocked or ended first: a reordering of a schedule
                // explored where it slept from. This execution tells DPOR
                // nothing about the races at the probe's point, so every
                // alternative there is tried.
                if self.reduction == Reduction::Dpor && self.stack[probe.at].done.is_empty() {
                    self.mark_all(probe.at);
                }
                self.coasting = true;
                return coast(point);
            }
        }
        if new_point {
            let (alts, also) = self.alternatives(point);
            let sleep = match (self.last_sched, fp) {
                (Some(p), Some(fp)) => self.sleep_after(p, &fp),
                _ => Vec::new(),
            };
            self.push_frame(alts, also, sleep, point.current, point.runnable.is_empty());
            let index = self.stack.len() - 1;
            let first = if self.force(index) {
                Some(self.stack[index].chosen)
            } else {
                self.seed(index);
                self.first_alternative(index)
            };
            // The task that ran last could go on here but sleeps: its run
            // from its frame is not known in full.
            if let Some(p) = self.last_sched
                && let Some(t) = self.stack[p].alternatives[self.stack[p].chosen].task()
                && point.current == Some(t)
                && first.is_none_or(|f| self.stack[index].alternatives[f].task() != Some(t))
            {
                self.stack[p].run = None;
            }
            if self.probing.is_some() {
                // Switching away from the probed task before its conflict
                // reaches nothing new either.
                let f = &mut self.stack[index];
                for (i, mark) in f.marks.iter_mut().enumerate() {
                    if Some(i) != first {
                        *mark = Mark::Done;
                    }
                }
            }
            match first {
                Some(first) => self.stack[index].chosen = first,
                None => {
                    // Everything here sleeps: nothing new below this point.
                    // The frame is dropped and the run coasts to its end.
                    self.stack.pop();
                    self.coasting = true;
                    return coast(point);
                }
            }
        }
        self.last_sched = Some(self.depth);
        self.delivered = false;
        let alt = self.take();
        match alt {
            Alt::Sched { choice, .. } if point.index_of(choice).is_some() => {
                Decision::now(point, choice)
            }
            // The model is not deterministic given the prefix; fall back safely.
            _ => Decision::now(point, point.choice(0)),
        }
    }

    fn choose(&mut self, n: usize) -> usize {
        if self.coasting {
            return 0;
        }
        if self.depth == self.stack.len() {
            self.push_frame(
                (0..n).map(Alt::Pick).collect(),
                Vec::new(),
                Vec::new(),
                None,
                false,
            );
            let index = self.stack.len() - 1;
            if !self.force(index) {
                self.stack[index].marks[0] = Mark::Done;
                // At the branch point of this search, the first choice's
                // subtree is explored elsewhere.
                if self.seed(index) && self.next_alternative(index).is_none() {
                    self.stack.pop();
                    self.coasting = true;
                    return 0;
                }
            }
        }
        match self.take() {
            Alt::Pick(k) if k < n => k,
            _ => 0,
        }
    }

    fn name(&self) -> String {
        match self.bound {
            Some(b) => format!("exhaustive:{b}"),
            None => "exhaustive".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sim::ObjId;

    fn uses(ids: &[(u32, Access)]) -> Footprint {
        let raw: Vec<Use> = ids
            .iter()
            .map(|&(i, access)| Use {
                obj: ObjId(i),
                access,
            })
            .collect();
        Some(normalise(&raw))
    }

    fn fp(ids: &[u32]) -> Footprint {
        uses(&ids.iter().map(|&i| (i, Access::Write)).collect::<Vec<_>>())
    }

    #[test]
    fn reads_commute_and_additions_commute_but_not_with_each_other() {
        use Access::{Add, Read, Write};
        assert!(commute(&uses(&[(1, Read)]), &uses(&[(1, Read)])));
        assert!(commute(&uses(&[(1, Add)]), &uses(&[(1, Add)])));
        assert!(!commute(&uses(&[(1, Add)]), &uses(&[(1, Read)])));
        assert!(!commute(&uses(&[(1, Write)]), &uses(&[(1, Read)])));
        assert!(!commute(&uses(&[(1, Write)]), &uses(&[(1, Write)])));
        // A step that reads and adds to one object conflicts with either.
        let both = uses(&[(1, Read), (1, Add)]);
        assert!(!commute(&both, &uses(&[(1, Read)])));
        assert!(!commute(&both, &uses(&[(1, Add)])));
        assert!(commute(&uses(&[(1, Read), (1, Read)]), &uses(&[(1, Read)])));
    }

    #[test]
    fn footprints_commute_only_when_known_and_disjoint() {
        assert!(commute(&fp(&[1, 3, 5]), &fp(&[2, 4, 6])));
        assert!(commute(&fp(&[]), &fp(&[2])));
        assert!(!commute(&fp(&[1, 3, 5]), &fp(&[5, 7])));
        assert!(!commute(&None, &fp(&[])));
        assert!(!commute(&fp(&[1]), &None));
        let mut u = fp(&[3, 1]);
        union(&mut u, &fp(&[2, 3]));
        assert_eq!(u, fp(&[1, 2, 3]));
        union(&mut u, &None);
        assert_eq!(u, None);
    }

    #[test]
    fn a_blocked_lock_attempt_races_only_with_the_holders_acquire() {
        use Access::{Acquire, Attempt, Read, Release, Write};
        let on = |access| Use {
            obj: ObjId(1),
            access,
        };
        // Two acquires race: either task can take the free mutex first.
        assert!(on(Acquire).races_after(on(Acquire)));
        // A release and a later acquire, or a blocked attempt and anything
        // that needs the mutex free, never could have run the other way.
        assert!(!on(Acquire).races_after(on(Release)));
        assert!(!on(Acquire).races_after(on(Attempt)));
        assert!(!on(Attempt).races_after(on(Release)));
        assert!(!on(Release).races_after(on(Attempt)));
        assert!(on(Attempt).races_after(on(Acquire)));
        // They are still ordered (happens-before), and a blocked attempt
        // commutes with what leaves the mutex as it is.
        assert!(on(Acquire).conflicts(on(Release)));
        assert!(on(Attempt).conflicts(on(Release)));
        assert!(!on(Attempt).conflicts(on(Attempt)));
        assert!(!on(Attempt).conflicts(on(Read)));
        assert!(on(Read).conflicts(on(Acquire)));
        assert!(on(Write).races_after(on(Release)));
        assert!(Release.exclusive() && Acquire.exclusive() && !Attempt.exclusive());
    }

    fn point<'a>(
        runnable: &'a [TaskId],
        pending: &'a [Pending],
        current: Option<TaskId>,
        next_timer: Option<u64>,
    ) -> Point<'a> {
        Point {
            runnable,
            current,
            next_timer,
            now: 0,
            step: 0,
            pending,
        }
    }

    fn tasks(alts: &[Alt]) -> Vec<Option<u32>> {
        alts.iter().map(|a| a.task().map(|t| t.0)).collect()
    }

    #[test]
    fn a_task_whose_next_step_only_blocks_is_not_scheduled() {
        use Pending::{Acquire, Blocked, Free, Held};
        let dfs = Dfs::with_reduction(Some(2), Reduction::Dpor);
        let ts = [TaskId(0), TaskId(1), TaskId(2), TaskId(3)];
        // Task 2 waits on a held mutex, task 3 for an event: neither is an
        // alternative; the timer is (a preemption: task 0 could go on).
        let p = point(
            &ts,
            &[Free, Acquire, Held, Blocked],
            Some(TaskId(0)),
            Some(5),
        );
        let (alts, also) = dfs.alternatives(&p);
        assert_eq!(tasks(&alts), [Some(0), Some(1), None]);
        assert!(also.is_empty());
        assert!(matches!(
            alts[1],
            Alt::Sched {
                preempts: true,
                locks: true,
                ..
            }
        ));
        assert!(matches!(
            alts[2],
            Alt::Sched {
                preempts: true,
                locks: false,
                ..
            }
        ));
        // The running task would only block: it goes on alone, and the
        // others are kept as tasks that could run here.
        let p = point(&ts, &[Held, Free, Held, Free], Some(TaskId(0)), Some(5));
        let (alts, also) = dfs.alternatives(&p);
        assert_eq!(tasks(&alts), [Some(0)]);
        assert!(matches!(
            alts[0],
            Alt::Sched {
                preempts: false,
                ..
            }
        ));
        assert_eq!(tasks(&also), [Some(1), Some(3)]);
        // Every task would only block: the first one runs, for free, and
        // the timer waits until they all have.
        let p = point(&ts[2..], &[Held, Blocked], None, Some(5));
        let (alts, _) = dfs.alternatives(&p);
        assert_eq!(tasks(&alts), [Some(2)]);
        assert!(matches!(
            alts[0],
            Alt::Sched {
                preempts: false,
                ..
            }
        ));
        // Inside a prefix every alternative stays, to follow any schedule.
        let dfs =
            Dfs::with_reduction(Some(2), Reduction::Dpor).with_prefix(vec![StepKind::Task(2)]);
        let p = point(&ts, &[Free, Acquire, Held, Blocked], Some(TaskId(0)), None);
        let (alts, _) = dfs.alternatives(&p);
        assert_eq!(tasks(&alts), [Some(0), Some(1), Some(2), Some(3)]);
    }
}
