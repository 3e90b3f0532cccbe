//! Simulated goroutines: identity, provenance and state.

use std::fmt;

/// Index of a task within one run. Ids are dense and assigned in spawn
/// order, so they are identical in every replay of the same schedule.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TaskId(pub u32);

impl TaskId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Index of a synchronisation object (mutex, queue, event, timer) within one run.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct ObjId(pub u32);

/// `ObjId(0)` is reserved for "no object" (yield, spawn without a target).
pub const NO_OBJ: ObjId = ObjId(0);

/// How a step uses an object, for deciding whether two steps commute: two
/// reads commute, two additions commute (puts of indistinguishable values),
/// two lock attempts that blocked commute; anything else on the same object
/// does not.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Access {
    Read,
    Add,
    Write,
    /// Takes a free mutex.
    Acquire,
    /// Releases a mutex.
    Release,
    /// Tries a held mutex and blocks (changes nothing).
    Attempt,
    /// Arms a timer (on the timer's own pseudo-object).
    Arm,
    /// Fires that timer: it cannot come before its arming, so the two are
    /// ordered but never a race.
    Fire,
}

impl Access {
    /// Every other access to the object is ordered against this one, so
    /// whatever came before this use on the object happens before it too.
    pub fn exclusive(self) -> bool {
        matches!(
            self,
            Access::Write | Access::Acquire | Access::Release | Access::Arm | Access::Fire
        )
    }
}

/// One entry of a step's footprint.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Use {
    pub obj: ObjId,
    pub access: Access,
}

impl Use {
    /// The two uses do not commute.
    pub fn conflicts(self, other: Use) -> bool {
        use Access::*;
        self.obj == other.obj
            && match (self.access, other.access) {
                // A blocked attempt changes nothing: only what takes or
                // frees the mutex decides whether it blocks.
                (Attempt, a) | (a, Attempt) => matches!(a, Acquire | Release | Write),
                (a, b) => a != b || !matches!(a, Read | Add),
            }
    }

    /// This use, later in a run, and `earlier` (which does not happen
    /// before it) form a race that reordering can reverse. A mutex's
    /// release, or an attempt that blocked on it, never could run while a
    /// later acquire or attempt could (the mutex was held): the race of
    /// that acquire is with the holder's acquire. Likewise an attempt that
    /// blocked and the holder's release.
    pub fn races_after(self, earlier: Use) -> bool {
        use Access::*;
        self.conflicts(earlier)
            && !matches!(
                (earlier.access, self.access),
                (Release | Attempt, Acquire | Attempt) | (Attempt, Release) | (Arm, Fire)
            )
    }
}

/// Pseudo-objects for the footprints of steps (never registered, never in a
/// trace): the timer queue (the top of the id space, one pseudo-object per
/// deadline below it), the task table and the run's data stream. Two steps
/// that both use one of them do not commute.
pub const TIMER_QUEUE: ObjId = ObjId(u32::MAX);
pub const TASK_TABLE: ObjId = ObjId(u32::MAX - 1);
pub const DATA_STREAM: ObjId = ObjId(u32::MAX - 2);
/// Virtual time: a timer fire writes it, reading `now` or arming a timer
/// (whose deadline is relative to now) reads it.
pub const CLOCK: ObjId = ObjId(u32::MAX - 3);

/// What kind of object an [`ObjId`] names; used in traces and leak reports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ObjKind {
    None,
    Mutex,
    Unbounded,
    Event,
    Oneshot,
    Timer,
    Task,
}

impl ObjKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjKind::None => "-",
            ObjKind::Mutex => "mutex",
            ObjKind::Unbounded => "unbounded",
            ObjKind::Event => "event",
            ObjKind::Oneshot => "oneshot",
            ObjKind::Timer => "timer",
            ObjKind::Task => "task",
        }
    }
}

/// A visible operation: every one of these is (or is immediately preceded by)
/// a preemption point.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    Lock,
    Unlock,
    Put,
    Get,
    Close,
    Fire,
    Wait,
    Send,
    Recv,
    Select,
    TimerStart,
    TimerStop,
    TimerFire,
    Sleep,
    Spawn,
    Yield,
    Exit,
    Note,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lock => "lock",
            Op::Unlock => "unlock",
            Op::Put => "put",
            Op::Get => "get",
            Op::Close => "close",
            Op::Fire => "fire",
            Op::Wait => "wait",
            Op::Send => "send",
            Op::Recv => "recv",
            Op::Select => "select",
            Op::TimerStart => "timer-start",
            Op::TimerStop => "timer-stop",
            Op::TimerFire => "timer-fire",
            Op::Sleep => "sleep",
            Op::Spawn => "go",
            Op::Yield => "yield",
            Op::Exit => "exit",
            Op::Note => "note",
        }
    }
}

/// What a blocked task waits for.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Blocker {
    /// A single object (mutex, queue get, event wait, oneshot recv, sleep timer).
    On(Op, ObjId),
    /// A Go `select` over several objects.
    Select(ObjSet),
}

/// The objects of one `select` (at most [`ObjSet::MAX`]), kept inline: a
/// select that blocks allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ObjSet {
    objs: [ObjId; ObjSet::MAX],
    len: u8,
}

impl ObjSet {
    pub const MAX: usize = 8;
}

impl FromIterator<ObjId> for ObjSet {
    /// Panics past [`ObjSet::MAX`] objects.
    fn from_iter<I: IntoIterator<Item = ObjId>>(iter: I) -> Self {
        let mut set = ObjSet {
            objs: [ObjId(0); ObjSet::MAX],
            len: 0,
        };
        for o in iter {
            set.objs[set.len as usize] = o;
            set.len += 1;
        }
        set
    }
}

impl std::ops::Deref for ObjSet {
    type Target = [ObjId];
    fn deref(&self) -> &[ObjId] {
        &self.objs[..self.len as usize]
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum TaskState {
    Runnable,
    Blocked(Blocker),
    Done,
}

pub(crate) struct TaskInfo {
    pub name: super::name::Name,
    pub creator: Option<TaskId>,
    pub state: TaskState,
}

/// What a run that records footprints keeps about a task besides its
/// [`TaskInfo`] (apart from it: the task table of a bulk run stays small).
#[derive(Default)]
pub(crate) struct TaskNotes {
    /// What the task was blocked on before its last wake, kept until it
    /// runs again: its next step re-checks those objects.
    pub resumed_from: Option<Blocker>,
    /// What the operation at the task's preemption point waits for, if it
    /// can block.
    pub pending: Option<Blocker>,
}
