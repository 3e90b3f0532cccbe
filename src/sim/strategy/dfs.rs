//! Depth-first enumeration of schedules with a preemption bound (CHESS-style
//! context bounding). Each execution replays the prefix recorded on the stack
//! and extends it with the non-preempting choice; after the run, the deepest
//! frame with an untried alternative within the bound is advanced.
//!
//! A preemption is choosing anything other than the running task while it
//! could continue, or firing a timer before its deadline. Switches forced by
//! blocking are free. Model choices (`select`, map order) are enumerated too
//! and never count as preemptions; an optional choice bound limits how many
//! of them may differ from the first alternative (the first ready case, the
//! first order), for spaces where those choices multiply everything.
//!
//! **Sleep sets** (Godefroid's partial-order reduction), on by default. The
//! kernel reports the footprint of every step: the objects it used and how
//! (see [`Strategy::step_footprint`]). Two steps of different tasks commute
//! unless they use one object in conflicting ways (anything but two reads
//! or two additions). After the subtree of task `a` at a point is explored,
//! `a` sleeps in its later siblings' subtrees until some step that does not
//! commute with `a`'s step runs; a sleeping task is not scheduled, because
//! every schedule that runs it there is a reordering of one already explored.
//! When every alternative at a point sleeps, the rest of that execution is
//! redundant: it finishes without branching (so the model shuts down and
//! frees what it holds) and is reported as redundant, not as a schedule. Firing a timer moves time and wakes
//! or starts tasks, so it commutes with nothing.
//!
//! Footprints are observed, not predicted: a sleeping task's entry carries
//! the footprint its step had when it was explored, which stays valid while
//! only commuting steps run. Reads of model state outside kernel objects are
//! assumed to be protected by kernel objects (the Go code is race-free).
//! With a preemption bound, a reordering that sleep sets rely on can cost a
//! different number of preemptions (Coons, Musuvathi and McKinley, OOPSLA
//! 2013), so a pruned search is checked against the unpruned one on small
//! models in the tests.

use std::rc::Rc;

use super::{Choice, Decision, Point, Strategy};
use crate::sim::TaskId;
use crate::sim::task::{Access, Use};

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
    chosen: usize,
    /// Preemptions spent before this frame.
    spent_before: u32,
    /// Non-first model choices made before this frame.
    choices_before: u32,
    /// Tasks asleep here, with the footprint of their step.
    sleep: Vec<(TaskId, Shared)>,
    /// Task alternatives whose subtrees are done, with their step footprint.
    done: Vec<(TaskId, Shared)>,
    /// Footprint of the chosen alternative's step (union over the
    /// executions that passed through it).
    footprint: Footprint,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alt {
    Sched { choice: Choice, preempts: bool },
    Pick(usize),
}

impl Alt {
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

pub struct Dfs {
    bound: Option<u32>,
    choice_bound: Option<u32>,
    /// Non-first model choices made so far in this execution.
    choices: u32,
    prune: bool,
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
}

impl Dfs {
    /// `bound`: maximum preemptions per schedule (`None` = unbounded). Sleep
    /// sets are on; see [`Dfs::without_pruning`].
    pub fn new(bound: Option<u32>) -> Self {
        Dfs {
            bound,
            choice_bound: None,
            choices: 0,
            prune: true,
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
        }
    }

    /// The plain bounded search, every schedule within the bound.
    pub fn without_pruning(bound: Option<u32>) -> Self {
        Dfs {
            prune: false,
            ..Dfs::new(bound)
        }
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

    fn allowed(&self, f: &Frame, alt: Alt) -> bool {
        match alt {
            Alt::Sched { preempts: true, .. } => self.bound.is_none_or(|b| f.spent_before < b),
            Alt::Pick(k) if k > 0 => self.choice_bound.is_none_or(|c| f.choices_before < c),
            _ => true,
        }
    }

    fn asleep(frame: &Frame, alt: Alt) -> bool {
        alt.task()
            .is_some_and(|t| frame.sleep.iter().any(|(s, _)| *s == t))
    }

    /// First alternative at or after `from` that is within the bound and
    /// awake; counts the sleeping ones skipped.
    fn next_alternative(&mut self, index: usize, from: usize) -> Option<usize> {
        let f = &self.stack[index];
        let mut pruned = 0;
        let mut found = None;
        for (i, &alt) in f.alternatives.iter().enumerate().skip(from) {
            if !self.allowed(f, alt) {
                continue;
            }
            if Self::asleep(f, alt) {
                pruned += 1;
                continue;
            }
            found = Some(i);
            break;
        }
        self.pruned += pruned;
        found
    }

    /// Moves to the next schedule; false if none is left.
    fn backtrack(&mut self) -> bool {
        while let Some(top) = self.stack.last_mut() {
            if let Some(t) = top.alternatives.get(top.chosen).and_then(|a| a.task()) {
                let fp = top.footprint.replace(Vec::new());
                top.done.push((t, fp.map(Rc::from)));
            }
            let index = self.stack.len() - 1;
            let from = self.stack[index].chosen + 1;
            if let Some(next) = self.next_alternative(index, from) {
                self.stack[index].chosen = next;
                return true;
            }
            self.stack.pop();
        }
        false
    }

    /// The tasks asleep after the step of the scheduling frame `parent`,
    /// whose footprint was `fp`.
    fn sleep_after(&self, parent: usize, fp: &[Use]) -> Vec<(TaskId, Shared)> {
        let p = &self.stack[parent];
        let Some(ran) = p.alternatives[p.chosen].task() else {
            // A timer fired: nothing commutes with that.
            return Vec::new();
        };
        p.sleep
            .iter()
            .chain(&p.done)
            .filter(|(t, sfp)| *t != ran && commute_uses(sfp.as_deref(), Some(fp)))
            .cloned()
            .collect()
    }

    fn push_frame(&mut self, alternatives: Vec<Alt>, sleep: Vec<(TaskId, Shared)>) {
        self.stack.push(Frame {
            alternatives,
            chosen: 0,
            spent_before: self.spent,
            choices_before: self.choices,
            sleep,
            done: Vec::new(),
            footprint: Some(Vec::new()),
        });
    }

    fn take(&mut self) -> Alt {
        let f = &self.stack[self.depth];
        let alt = f.alternatives[f.chosen];
        self.depth += 1;
        match alt {
            Alt::Sched { preempts: true, .. } => self.spent += 1,
            Alt::Pick(k) if k > 0 => self.choices += 1,
            _ => {}
        }
        alt
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
        self.depth = 0;
        self.spent = 0;
        self.choices = 0;
        self.last_sched = None;
        self.delivered = true;
        self.coasting = false;
    }

    fn end_execution(&mut self) {
        if !self.coasting
            && !self.delivered
            && let Some(p) = self.last_sched
        {
            // The last step ended the run; its footprint is unknown.
            self.stack[p].footprint = None;
        }
        if !self.backtrack() {
            self.complete = true;
        }
    }

    fn is_complete(&self) -> bool {
        self.complete
    }

    fn wants_footprints(&self) -> bool {
        self.prune
    }

    fn step_footprint(&mut self, footprint: &[Use]) {
        // Only a new point uses it (see `next_task`).
        if self.depth == self.stack.len() {
            self.last_footprint.clear();
            self.last_footprint.extend_from_slice(footprint);
        }
    }

    fn redundant(&self) -> bool {
        self.coasting
    }

    fn pruned(&self) -> u64 {
        self.pruned
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
        if self.prune && !self.delivered {
            if let (Some(p), true) = (self.last_sched, new_point) {
                let uses = normalise(&self.last_footprint);
                union(&mut self.stack[p].footprint, &Some(uses.clone()));
                fp = Some(uses);
            }
            self.delivered = true;
        }
        if new_point {
            let mut alts = Vec::with_capacity(point.choices());
            if let Some(c) = point.current {
                alts.push(Alt::Sched {
                    choice: Choice::Task(c),
                    preempts: false,
                });
            }
            for i in 0..point.choices() {
                let choice = point.choice(i);
                if Some(choice) == point.current.map(Choice::Task) {
                    continue;
                }
                let preempts = point.current.is_some()
                    || (choice == Choice::Timer && point.next_timer.is_some_and(|d| d > point.now));
                alts.push(Alt::Sched { choice, preempts });
            }
            let sleep = match (self.last_sched, fp) {
                (Some(p), Some(fp)) => self.sleep_after(p, &fp),
                _ => Vec::new(),
            };
            self.push_frame(alts, sleep);
            let index = self.stack.len() - 1;
            match self.next_alternative(index, 0) {
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
            self.push_frame((0..n).map(Alt::Pick).collect(), Vec::new());
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
}
