//! The single-threaded executor: tasks, the run loop, preemption points,
//! blocking and waking by task id, and the timer queue.
//!
//! A task is a boxed `!Send` future. It is polled only by [`Sim::run`]; the
//! kernel never uses real wakers. At a preemption point the running task asks
//! the strategy who runs next: if the answer is itself it simply continues (no
//! switch, no re-poll), otherwise it records the chosen task and returns
//! `Pending`, and the run loop polls the chosen one.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use rand_chacha::ChaCha8Rng;

use super::name::Name;
use super::oracle::{self, Outcome, RunReport};
use super::rng;
use super::schedule::{Schedule, Step, StepKind};
use super::strategy::{Choice, Pending, Point, RandomStrategy, Sched, Strategy};
use super::task::{
    Access, Blocker, CLOCK, NO_OBJ, ObjId, ObjKind, Op, TASK_TABLE, TIMER_QUEUE, TaskId, TaskInfo,
    TaskNotes, TaskState, Use,
};
use super::timer_heap::TimerHeap;
use super::trace::{Preemption, Trace, TraceEvent};

pub(crate) type LocalFut = Pin<Box<dyn Future<Output = ()>>>;

thread_local! {
    /// This thread's kernel: made once per thread and kept for every later
    /// run (a run's state comes and goes inside it). A plain reference needs
    /// no destructor, so reading it is one load, with no check of the
    /// slot's lifetime on every primitive.
    static KERNEL: Cell<Option<&'static Kernel>> = const { Cell::new(None) };
    /// The run on this thread records step footprints: lets the primitives'
    /// non-blocking reads skip the kernel entirely in bulk runs.
    static FOOTPRINTS: Cell<bool> = const { Cell::new(false) };
    /// This thread's kernel while a run is going on on it (`None` between
    /// runs): what every primitive reads, one load and no second check.
    static ACTIVE: Cell<Option<&'static Kernel>> = const { Cell::new(None) };
}

/// Whether the run on this thread records step footprints.
#[inline(always)]
pub(crate) fn footprints_on() -> bool {
    FOOTPRINTS.with(Cell::get)
}

/// Runs `f` with the kernel of the run on this thread.
///
/// Panics if no run is active: every primitive belongs to a run.
#[inline]
pub(crate) fn with<R>(f: impl FnOnce(&Kernel) -> R) -> R {
    match ACTIVE.get() {
        Some(k) => f(k),
        None => panic!("an lbsim primitive was used outside a simulation run"),
    }
}

/// Like [`with`], but returns `None` outside a run (for `Drop` impls).
pub(crate) fn try_with<R>(f: impl FnOnce(&Kernel) -> R) -> Option<R> {
    ACTIVE.try_with(Cell::get).ok().flatten().map(f)
}

/// This thread's kernel, made on first use.
fn thread_kernel() -> &'static Kernel {
    KERNEL.get().unwrap_or_else(|| {
        let k: &'static Kernel = Box::leak(Box::new(Kernel {
            st: RefCell::new(State::idle()),
            futs: RefCell::new(Vec::new()),
            spawned: RefCell::new(Vec::new()),
            has_spawned: Cell::new(false),
            active: Cell::new(false),
        }));
        KERNEL.set(Some(k));
        k
    })
}

/// Limits and switches of one run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub seed: u64,
    /// Virtual time after the main task returns during which the other tasks
    /// may still finish (goleak's retry window). Default 10 s.
    pub grace: u64,
    /// Strategy decisions after which the run is stopped as a livelock.
    pub max_steps: u64,
    /// Virtual time after which the run is stopped as a livelock.
    pub max_time: u64,
    /// Record a trace of every executed operation.
    pub trace: bool,
    /// Record the schedule (every decision) for replay.
    pub record: bool,
    /// How far ahead of virtual time a timer may be fired early as a
    /// scheduling choice (a goroutine stalled that long). `u64::MAX`: any
    /// pending timer, as the design states; a bound keeps implausible
    /// choices (a 15-minute cache timer overtaking a running goroutine) out.
    pub max_early_fire: u64,
}

impl RunConfig {
    pub fn new(seed: u64) -> Self {
        RunConfig {
            seed,
            grace: 10 * super::SEC,
            max_steps: 5_000_000,
            max_time: 3_600 * super::SEC,
            trace: false,
            record: false,
            max_early_fire: u64::MAX,
        }
    }
}

pub(crate) enum TimerAction {
    Wake(TaskId),
    Spawn {
        name: Name,
        creator: Option<TaskId>,
        fut: LocalFut,
        /// Set when the task is launched, if anyone asks.
        fired: Option<Rc<Cell<bool>>>,
    },
}

enum Next {
    /// The task at the preemption point continues.
    Continue,
    /// Switch to this task.
    Switch(TaskId),
    /// Nothing can run and no timer may fire.
    Idle,
    /// The step or time limit was hit.
    Limit,
}

pub(crate) struct State {
    pub now: u64,
    pub tasks: Vec<TaskInfo>,
    /// Per task, what footprints note about it (empty when they are not
    /// recorded).
    notes: Vec<TaskNotes>,
    /// Runnable tasks, sorted by id.
    pub runnable: Vec<TaskId>,
    pub current: Option<TaskId>,
    next: Option<TaskId>,
    timers: TimerHeap,
    /// Deadline of the earliest pending timer (a cache of `timers.peek()`,
    /// read at every decision).
    timer_head: Option<u64>,
    timer_slots: Vec<Option<(ObjId, TimerAction)>>,
    timer_seq: u64,
    pub objects: Vec<(ObjKind, Name)>,
    strategy: Sched,
    pub steps: u64,
    pub preemptions: u64,
    pub timer_preemptions: u64,
    record: Option<Vec<Step>>,
    pub trace: Option<Vec<TraceEvent>>,
    /// With a trace: where each preemption happened in it.
    trace_preemptions: Vec<Preemption>,
    hash: u64,
    pub data_rng: ChaCha8Rng,
    horizon: u64,
    max_steps: u64,
    max_time: u64,
    max_early_fire: u64,
    main_done_at: Option<u64>,
    limit_hit: bool,
    /// No footprints, no trace and no recorded schedule: the preemption
    /// point takes a path without any of their checks.
    plain: bool,
    /// Objects used by the step since the last decision, when the strategy
    /// asked for footprints (`None`: not recorded, no cost).
    footprint: Option<Vec<Use>>,
    /// Objects on which a lock, get, wait or receive would block now,
    /// indexed by id (kept only while footprints are recorded).
    unready: Vec<bool>,
    /// What each runnable task's next step would do (see [`Pending`]),
    /// handed to the strategy with each point when footprints are recorded.
    pending: Vec<Pending>,
}

pub(crate) struct Kernel {
    /// The state of the run on this thread (an idle one between runs, so
    /// that reaching it needs no check of its presence).
    st: RefCell<State>,
    futs: RefCell<Vec<Option<LocalFut>>>,
    /// Futures of tasks spawned during a poll, in id order, to be appended
    /// to `futs`.
    spawned: RefCell<Vec<LocalFut>>,
    /// `spawned` is not empty.
    has_spawned: Cell<bool>,
    /// A run is going on: its primitives may use the kernel.
    active: Cell<bool>,
}

impl State {
    /// The state the kernel holds between runs.
    fn idle() -> State {
        State {
            now: 0,
            tasks: Vec::new(),
            notes: Vec::new(),
            runnable: Vec::new(),
            current: None,
            next: None,
            timers: TimerHeap::default(),
            timer_head: None,
            timer_slots: Vec::new(),
            timer_seq: 0,
            objects: Vec::new(),
            strategy: Sched::Random(RandomStrategy::new()),
            steps: 0,
            preemptions: 0,
            timer_preemptions: 0,
            record: None,
            trace: None,
            trace_preemptions: Vec::new(),
            hash: 0,
            data_rng: rng::rng(0, rng::STREAM_DATA),
            horizon: u64::MAX,
            max_steps: 0,
            max_time: 0,
            max_early_fire: u64::MAX,
            main_done_at: None,
            limit_hit: false,
            plain: true,
            footprint: None,
            unready: Vec::new(),
            pending: Vec::new(),
        }
    }

    // Insertion and removal shift the ids above `t` one by one in a loop that
    // stops at a compared value: for the short lists kept here that is
    // cheaper than `Vec::insert`/`remove`, which call `memmove`.

    fn insert_runnable(&mut self, t: TaskId) {
        // One pass from the end (a woken or new task is usually among the
        // last): shift the larger ids up; if `t` turns out to be there
        // already, put them back.
        let v = &mut self.runnable;
        v.push(t);
        let mut j = v.len() - 1;
        while j > 0 && v[j - 1] > t {
            v[j] = v[j - 1];
            j -= 1;
        }
        if j > 0 && v[j - 1] == t {
            v.remove(j);
            return;
        }
        v[j] = t;
    }

    fn remove_runnable(&mut self, t: TaskId) {
        let v = &mut self.runnable;
        if v.binary_search(&t).is_err() {
            return;
        }
        let mut carry = v.pop().expect("t is in the list");
        let mut j = v.len();
        while carry != t {
            j -= 1;
            carry = std::mem::replace(&mut v[j], carry);
        }
    }

    pub fn wake(&mut self, t: TaskId) {
        let info = &mut self.tasks[t.index()];
        if matches!(info.state, TaskState::Blocked(_)) {
            if self.footprint.is_some() {
                if let TaskState::Blocked(b) =
                    std::mem::replace(&mut info.state, TaskState::Runnable)
                {
                    self.notes[t.index()].resumed_from = Some(b);
                }
            } else {
                info.state = TaskState::Runnable;
            }
            self.insert_runnable(t);
            let now = self.now;
            self.strategy.on_wake(t, now);
        }
    }

    pub fn block_current(&mut self, blocker: Blocker) {
        let t = self.current.expect("block outside a task");
        self.tasks[t.index()].state = TaskState::Blocked(blocker);
        self.remove_runnable(t);
        let now = self.now;
        self.strategy.on_block(t, now);
    }

    #[inline]
    pub fn register(&mut self, kind: ObjKind, name: Name) -> ObjId {
        self.objects.push((kind, name));
        let id = ObjId(self.objects.len() as u32 - 1);
        // A new event, queue or oneshot has nothing to take yet.
        if self.footprint.is_some()
            && matches!(kind, ObjKind::Event | ObjKind::Unbounded | ObjKind::Oneshot)
        {
            self.set_unready(id, true);
        }
        id
    }

    /// Whether an operation waiting on `obj` would block now (see
    /// [`State::unready`]).
    pub fn set_unready(&mut self, obj: ObjId, unready: bool) {
        let i = obj.0 as usize;
        if self.unready.len() <= i {
            self.unready.resize(i + 1, false);
        }
        self.unready[i] = unready;
    }

    /// The running task is at a `select` over these objects.
    pub fn note_select(&mut self, objs: impl Iterator<Item = ObjId>) {
        if let Some(t) = self.current
            && let Some(notes) = self.notes.get_mut(t.index())
        {
            notes.pending = Some(Blocker::Select(objs.collect()));
        }
    }

    /// What the next step of runnable task `t` would do with what it waits
    /// for.
    fn pending_of(&self, t: TaskId) -> Pending {
        let notes = &self.notes[t.index()];
        let unready = |o: &ObjId| self.unready.get(o.0 as usize).copied().unwrap_or(false);
        match notes.resumed_from.as_ref().or(notes.pending.as_ref()) {
            Some(Blocker::On(Op::Lock, m)) if unready(m) => Pending::Held,
            Some(Blocker::On(Op::Lock, _)) => Pending::Acquire,
            Some(Blocker::On(Op::Get | Op::Wait | Op::Recv, o)) if unready(o) => Pending::Blocked,
            Some(Blocker::Select(objs)) if objs.iter().all(unready) => Pending::Blocked,
            _ => Pending::Free,
        }
    }

    /// Records that the running step changes `obj` (for footprints).
    #[inline]
    pub fn touch(&mut self, obj: ObjId) {
        self.touch_as(obj, Access::Write);
    }

    /// Records that the running step uses `obj` this way (for footprints).
    #[inline]
    pub fn touch_as(&mut self, obj: ObjId, access: Access) {
        if let Some(f) = &mut self.footprint
            && obj != NO_OBJ
        {
            f.push(Use { obj, access });
        }
    }

    /// Records the objects operation `op` on `obj` uses.
    #[inline]
    pub fn touch_op(&mut self, op: Op, obj: ObjId, access: Access) {
        if self.footprint.is_none() {
            return;
        }
        match op {
            Op::Spawn => self.touch(TASK_TABLE),
            Op::Yield | Op::Note | Op::Exit | Op::TimerFire => {}
            _ => self.touch_as(obj, access),
        }
    }

    /// The step of task `t` begins: a task woken from a block first
    /// re-checks what it waited on.
    #[cold]
    fn begin_step(&mut self, t: TaskId) {
        if let Some(b) = self.notes[t.index()].resumed_from.take() {
            match b {
                // A lock records its own use once it knows whether it
                // blocks again.
                Blocker::On(Op::Lock, _) => {}
                Blocker::On(op, obj) => {
                    let access = if op == Op::Wait {
                        Access::Read
                    } else {
                        Access::Write
                    };
                    self.touch_op(op, obj, access)
                }
                Blocker::Select(objs) => {
                    for &o in objs.iter() {
                        self.touch_as(o, Access::Read);
                    }
                }
            }
        }
    }

    #[inline]
    pub fn tracing(&self) -> bool {
        self.trace.is_some()
    }

    /// With a trace, notes that `from` was preempted here, for `to` (a
    /// task, or `None` for a timer fire), counting `cost` preemptions.
    fn mark_preemption(&mut self, from: Option<TaskId>, to: Option<TaskId>, cost: u64) {
        if let Some(tr) = &self.trace {
            let before = tr.len();
            self.trace_preemptions.push(Preemption {
                before,
                time: self.now,
                from,
                to,
                cost,
            });
        }
    }

    pub fn trace_event(&mut self, op: Op, obj: ObjId, note: Option<Rc<str>>) {
        let (time, task) = (self.now, self.current);
        if let Some(tr) = &mut self.trace {
            tr.push(TraceEvent {
                time,
                task,
                op,
                obj,
                note,
            });
        }
    }

    fn spawn_task(&mut self, name: Name, creator: Option<TaskId>) -> TaskId {
        let id = TaskId(self.tasks.len() as u32);
        self.tasks.push(TaskInfo {
            name,
            creator,
            state: TaskState::Runnable,
        });
        if self.footprint.is_some() {
            self.notes.push(TaskNotes::default());
        }
        self.touch(TASK_TABLE);
        self.insert_runnable(id);
        let now = self.now;
        self.strategy.on_wake(id, now);
        id
    }

    pub fn add_timer(&mut self, deadline: u64, obj: ObjId, action: TimerAction) -> u32 {
        let slot = self.timer_slots.len() as u32;
        self.timer_slots.push(Some((obj, action)));
        self.timer_seq += 1;
        self.timers.push(slot, (deadline, self.timer_seq));
        // Timers with the same deadline fire in the order they were armed:
        // two starts with one deadline do not commute. The deadline is
        // relative to now; a new earliest timer changes which one fires next.
        let earliest = self.timer_head.is_none_or(|d| deadline < d);
        if self.footprint.is_some() {
            self.touch(deadline_obj(deadline));
            self.touch_as(slot_obj(slot), Access::Arm);
            self.touch_as(CLOCK, Access::Read);
            if earliest {
                self.touch(TIMER_QUEUE);
            }
        }
        if earliest {
            self.timer_head = Some(deadline);
        }
        slot
    }

    fn refresh_timer_head(&mut self) {
        self.timer_head = self.timers.peek().map(|(_, (d, _))| d);
    }

    /// Go's `Timer.Stop`: true if the timer was pending and is now cancelled.
    pub fn stop_timer(&mut self, slot: u32) -> bool {
        if let Some((deadline, _)) = self.timers.remove(slot) {
            self.timer_slots[slot as usize] = None;
            let head = self.timer_head;
            self.refresh_timer_head();
            if self.footprint.is_some() {
                self.touch(deadline_obj(deadline));
                if self.timer_head != head {
                    self.touch(TIMER_QUEUE);
                }
            }
            true
        } else {
            false
        }
    }

    #[inline]
    fn next_timer_deadline(&self) -> Option<u64> {
        self.timer_head.filter(|&d| d <= self.horizon)
    }

    /// Before a decision, when footprints are recorded: hands the step's
    /// footprint to the strategy and notes what each runnable task's next
    /// step would do.
    #[inline(never)]
    fn footprint_point(&mut self) {
        if let Some(f) = &mut self.footprint {
            self.strategy.get_mut().step_footprint(f);
            f.clear();
            let mut pending = std::mem::take(&mut self.pending);
            pending.clear();
            pending.extend(self.runnable.iter().map(|&t| self.pending_of(t)));
            self.pending = pending;
        }
    }

    /// Pops the earliest timer and performs its action. Returns the task to
    /// spawn (its future must be installed by the caller, outside the borrow).
    fn fire_next_timer(&mut self) -> Option<(TaskId, LocalFut)> {
        let (slot, (deadline, _)) = self.timers.pop()?;
        self.refresh_timer_head();
        self.now = self.now.max(deadline);
        let (obj, action) = self.timer_slots[slot as usize].take()?;
        if self.footprint.is_some() {
            // What the fire uses besides what its action does (waking a
            // task orders that task's next step after the fire).
            for o in [TIMER_QUEUE, CLOCK, deadline_obj(deadline), obj] {
                self.touch(o);
            }
            self.touch_as(slot_obj(slot), Access::Fire);
        }
        match action {
            TimerAction::Wake(t) => {
                self.trace_event(Op::TimerFire, obj, None);
                self.wake(t);
                self.strategy.timer_woke(t);
                None
            }
            TimerAction::Spawn {
                name,
                creator,
                fut,
                fired,
            } => {
                if let Some(fired) = fired {
                    fired.set(true);
                }
                let id = self.spawn_task(name, creator);
                self.strategy.timer_woke(id);
                let (time, task) = (self.now, Some(id));
                if let Some(tr) = &mut self.trace {
                    tr.push(TraceEvent {
                        time,
                        task,
                        op: Op::TimerFire,
                        obj,
                        note: None,
                    });
                }
                Some((id, fut))
            }
        }
    }

    fn note_decision(&mut self, step: Step) {
        self.note_decision_as::<false>(step);
    }

    /// [`State::note_decision`]; `PLAIN`: the run records no schedule.
    #[inline(always)]
    fn note_decision_as<const PLAIN: bool>(&mut self, step: Step) {
        let code = match step.kind {
            StepKind::Task(t) => u64::from(t) + 2,
            StepKind::Timer => 1,
            StepKind::Choose(k) => u64::from(k) << 32,
        };
        self.hash = (self.hash ^ code ^ step.dt.rotate_left(17)).wrapping_mul(0x100_0000_01b3);
        if !PLAIN && let Some(r) = &mut self.record {
            r.push(step);
        }
    }
}

/// The pseudo-object of a timer deadline in footprints (distinct deadlines
/// may share one; that only makes steps look dependent).
const DEADLINE_SPAN: u32 = 1 << 24;

fn deadline_obj(deadline: u64) -> ObjId {
    let h = deadline.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    ObjId(TIMER_QUEUE.0 - 16 - (h % u64::from(DEADLINE_SPAN)) as u32)
}

/// The pseudo-object of one armed timer (its slot), below the deadlines:
/// its arming and its fire use it.
fn slot_obj(slot: u32) -> ObjId {
    ObjId(TIMER_QUEUE.0 - 16 - DEADLINE_SPAN - (slot % DEADLINE_SPAN))
}

/// The operation at a preemption point.
#[derive(Clone, Copy)]
pub(crate) struct PointOp {
    pub op: Op,
    pub obj: ObjId,
    /// How the operation uses `obj` (for footprints); `None` when the
    /// operation records its own use once it knows whether it blocks.
    pub access: Option<Access>,
    /// The operation is traced at the point (a spawn traces itself).
    pub traced: bool,
}

/// What a preemption point does next.
pub(crate) enum Preempted {
    /// The running task continues (its operation has been traced).
    Continue,
    /// The task must return `Pending`; if `trace_on_resume`, its operation is
    /// to be traced when it is resumed.
    Yield {
        trace_on_resume: bool,
        /// The operation is to be recorded in the footprint on resume.
        touch_on_resume: bool,
    },
}

impl Preempted {
    /// A yield with nothing to do on resume (a run without footprints or
    /// trace).
    const YIELD: Preempted = Preempted::Yield {
        trace_on_resume: false,
        touch_on_resume: false,
    };
}

impl Kernel {
    /// The state of the current run.
    #[inline(always)]
    pub fn state(&self) -> RefMut<'_, State> {
        self.st.borrow_mut()
    }

    /// The state of the current run, to read.
    #[inline(always)]
    pub fn state_ref(&self) -> Ref<'_, State> {
        self.st.borrow()
    }

    /// The state of the current run, unless it is in use.
    #[inline]
    pub fn try_state(&self) -> Option<RefMut<'_, State>> {
        self.st.try_borrow_mut().ok()
    }

    /// Asks the strategy who runs next. `cur` is the task at a preemption
    /// point that could continue, or `None` if the running task blocked.
    ///
    /// The common case (tasks can run) stays in line; recording footprints,
    /// a fire with nothing runnable and a fire chosen by the strategy are
    /// out of line, so that the hot path keeps few registers live.
    #[inline(always)]
    fn decide<const PLAIN: bool>(&self, st: &mut State, cur: Option<TaskId>) -> Next {
        // A timer that fires is like a task that takes one step and
        // blocks: the choice after it is free.
        let mut fired = false;
        loop {
            if st.steps >= st.max_steps || st.now > st.max_time {
                st.limit_hit = true;
                return Next::Limit;
            }
            let timer = st.next_timer_deadline();
            if !PLAIN && st.footprint.is_some() {
                st.footprint_point();
            }
            if st.runnable.is_empty() {
                if timer.is_none() {
                    return Next::Idle;
                }
                self.fire_when_idle(st, timer);
                continue;
            }
            let early = timer.filter(|d| d.saturating_sub(st.now) <= st.max_early_fire);
            let d = st
                .strategy
                .decide(&st.runnable, cur, early, st.now, st.steps, &st.pending);
            st.steps += 1;
            let at = d.at.max(st.now);
            let dt = at - st.now;
            st.now = at;
            st.note_decision_as::<PLAIN>(Step::from_choice(d.choice, dt));
            match d.choice {
                Choice::Timer => {
                    self.fire_chosen(st, cur, fired, early);
                    fired = true;
                }
                Choice::Task(t) if Some(t) == cur => return Next::Continue,
                Choice::Task(t) => {
                    if cur.is_some() && !fired {
                        st.preemptions += 1;
                        if !PLAIN {
                            st.mark_preemption(cur, Some(t), 1);
                        }
                    }
                    return Next::Switch(t);
                }
            }
        }
    }

    /// Nothing can run: time jumps to the next timer; not a choice. A
    /// strategy that follows footprints still sees it, as a point with the
    /// timer as its only alternative: the fire is a step like any other for
    /// its analysis. It is not a decision of the schedule.
    #[cold]
    #[inline(never)]
    fn fire_when_idle(&self, st: &mut State, timer: Option<u64>) {
        if st.footprint.is_some() {
            let point = Point {
                runnable: &[],
                current: None,
                next_timer: timer,
                now: st.now,
                step: st.steps,
                pending: &st.pending,
            };
            let d = st.strategy.next_task(&point);
            debug_assert_eq!(d.choice, Choice::Timer);
        }
        let spawned = st.fire_next_timer();
        self.install(spawned);
    }

    /// The strategy chose to fire the earliest timer (`early`: its deadline,
    /// if it may fire now) at a point where `cur` could go on.
    #[inline(never)]
    fn fire_chosen(&self, st: &mut State, cur: Option<TaskId>, fired: bool, early: Option<u64>) {
        // Firing a timer while a task could go on switches away from it
        // (unless a fire just left a free choice), and firing it before its
        // deadline stalls whoever could run: one preemption each.
        let cost =
            u64::from(cur.is_some() && !fired) + u64::from(early.is_some_and(|d| d > st.now));
        st.preemptions += cost;
        st.timer_preemptions += cost;
        if cost > 0 {
            st.mark_preemption(cur, None, cost);
        }
        let spawned = st.fire_next_timer();
        self.install(spawned);
    }

    fn install(&self, spawned: Option<(TaskId, LocalFut)>) {
        if let Some((id, fut)) = spawned {
            self.add_future(id, fut);
        }
    }

    /// Gives task `id` its future. The futures of tasks made while another
    /// is being polled (which holds `futs`) wait in `spawned` until the poll
    /// ends.
    fn add_future(&self, id: TaskId, fut: LocalFut) {
        let mut spawned = self.spawned.borrow_mut();
        if let Ok(futs) = self.futs.try_borrow() {
            debug_assert_eq!(futs.len() + spawned.len(), id.index());
        }
        spawned.push(fut);
        self.has_spawned.set(true);
    }

    /// The preemption point before operation `op` on `obj` of the running
    /// task. If the task continues now, the operation is traced (when
    /// `traced` and the run records a trace). Otherwise the task must return
    /// `Pending` (another task was chosen, or the run is being stopped).
    #[inline]
    pub fn preempt(&self, what: &PointOp) -> Preempted {
        let mut st = self.state();
        if !st.plain {
            // The operation is read here only: the plain path never loads it.
            let PointOp {
                op,
                obj,
                access,
                traced,
            } = *what;
            return self.preempt_full(st, op, obj, access, traced);
        }
        let cur = st.current;
        match self.decide::<true>(&mut st, cur) {
            Next::Continue => Preempted::Continue,
            Next::Switch(t) => {
                st.next = Some(t);
                Preempted::YIELD
            }
            Next::Idle | Next::Limit => Preempted::YIELD,
        }
    }

    /// [`Kernel::preempt`] in a run that records footprints, a trace or
    /// the schedule.
    #[inline(never)]
    fn preempt_full(
        &self,
        mut st: RefMut<'_, State>,
        op: Op,
        obj: ObjId,
        access: Option<Access>,
        traced: bool,
    ) -> Preempted {
        let cur = st.current;
        if st.footprint.is_some()
            && let Some(t) = cur
        {
            let notes = &mut st.notes[t.index()];
            match op {
                Op::Lock | Op::Get | Op::Wait | Op::Recv => {
                    notes.pending = Some(Blocker::On(op, obj));
                }
                // Noted by `select` itself, with all its cases.
                Op::Select => {}
                _ => notes.pending = None,
            }
        }
        match self.decide::<false>(&mut st, cur) {
            Next::Continue => {
                if traced && st.tracing() {
                    st.trace_event(op, obj, None);
                }
                if let Some(access) = access {
                    st.touch_op(op, obj, access);
                }
                Preempted::Continue
            }
            Next::Switch(t) => {
                st.next = Some(t);
                Preempted::Yield {
                    trace_on_resume: traced && st.tracing(),
                    touch_on_resume: st.footprint.is_some(),
                }
            }
            Next::Idle | Next::Limit => Preempted::Yield {
                trace_on_resume: traced && st.tracing(),
                touch_on_resume: st.footprint.is_some(),
            },
        }
    }

    /// The run loop: polls the chosen task until nothing can happen any
    /// more. Returns the report of a task that returned `Pending` outside a
    /// kernel primitive. While a task is polled, it and its future are in
    /// `polling` (left there if the poll panics).
    fn drive(
        &self,
        main_id: TaskId,
        grace: u64,
        cx: &mut Context<'_>,
        polling: &mut Option<TaskId>,
    ) -> Option<oracle::PanicReport> {
        let mut task = self.start_step(&mut self.state())?;
        loop {
            // The future is polled where it lies; tasks it spawns get theirs
            // after the poll.
            *polling = Some(task);
            let polled = {
                let mut futs = self.futs.borrow_mut();
                if self.has_spawned.get() {
                    self.has_spawned.set(false);
                    futs.extend(self.spawned.borrow_mut().drain(..).map(Some));
                }
                futs[task.index()]
                    .as_mut()
                    .expect("a runnable task has a future")
                    .as_mut()
                    .poll(cx)
            };
            *polling = None;
            // One borrow of the state ends this step and starts the next.
            let mut st = match polled {
                Poll::Ready(()) => {
                    // Dropped outside the borrow: its destructors may use
                    // the kernel.
                    let fut = self.futs.borrow_mut()[task.index()].take();
                    drop(fut);
                    let mut st = self.state();
                    st.trace_event(Op::Exit, NO_OBJ, None);
                    st.tasks[task.index()].state = TaskState::Done;
                    st.remove_runnable(task);
                    let now = st.now;
                    st.strategy.on_block(task, now);
                    if task == main_id {
                        st.main_done_at = Some(now);
                        st.horizon = now.saturating_add(grace);
                        // Timers past the horizon never fire.
                        st.touch_as(CLOCK, Access::Read);
                        st.touch(TIMER_QUEUE);
                    }
                    st
                }
                Poll::Pending => {
                    let st = self.state();
                    if st.limit_hit {
                        return None;
                    }
                    if st.next.is_none()
                        && matches!(st.tasks[task.index()].state, TaskState::Runnable)
                    {
                        // The task awaited something that is not a kernel
                        // primitive; it would never be woken.
                        let name = st.tasks[task.index()].name.render();
                        return Some(oracle::PanicReport {
                            task: name.to_string(),
                            message: "task returned Pending outside an lbsim primitive".into(),
                        });
                    }
                    st
                }
            };
            st.current = None;
            task = self.start_step(&mut st)?;
        }
    }

    /// Chooses the task whose step comes next (the one a preemption point
    /// chose, or a decision with no task running) and makes it current;
    /// `None` when nothing can happen any more.
    #[inline(always)]
    fn start_step(&self, st: &mut State) -> Option<TaskId> {
        let task = match st.next.take() {
            Some(t) => t,
            None => {
                let next = if st.plain {
                    self.decide::<true>(st, None)
                } else {
                    self.decide::<false>(st, None)
                };
                match next {
                    Next::Switch(t) => t,
                    Next::Continue => unreachable!("no current task to continue"),
                    Next::Idle | Next::Limit => return None,
                }
            }
        };
        st.current = Some(task);
        if st.footprint.is_some() {
            st.begin_step(task);
        }
        Some(task)
    }

    pub fn spawn(&self, name: Name, fut: LocalFut) -> TaskId {
        let id = {
            let mut st = self.state();
            let creator = st.current;
            let id = st.spawn_task(name, creator);
            let (time, note) = (st.now, None);
            if let Some(tr) = &mut st.trace {
                tr.push(TraceEvent {
                    time,
                    task: creator,
                    op: Op::Spawn,
                    obj: ObjId(id.0),
                    note,
                });
            }
            id
        };
        self.add_future(id, fut);
        id
    }

    /// A nondeterministic choice among `n` alternatives, made by the strategy
    /// and recorded in the schedule.
    pub fn choose(&self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        let mut st = self.state();
        let k = st.strategy.choose(n);
        debug_assert!(k < n);
        st.note_decision(Step {
            kind: StepKind::Choose(k as u32),
            dt: 0,
        });
        k
    }
}

/// Leaves the thread's kernel idle if a run unwinds out of [`Sim::run`] (a
/// panic outside any task), so that the next run on the thread starts clean.
struct Detach(&'static Kernel);

impl Drop for Detach {
    fn drop(&mut self) {
        if self.0.active.replace(false) {
            ACTIVE.with(|a| a.set(None));
            FOOTPRINTS.with(|f| f.set(false));
            if let Ok(mut futs) = self.0.futs.try_borrow_mut() {
                futs.clear();
            }
            if let Ok(mut spawned) = self.0.spawned.try_borrow_mut() {
                spawned.clear();
            }
            self.0.has_spawned.set(false);
            if let Ok(mut st) = self.0.st.try_borrow_mut() {
                *st = State::idle();
            }
        }
    }
}

/// Runs simulations with one strategy, one run after another.
pub struct Sim {
    strategy: Option<Sched>,
    spare: Spare,
}

/// The kernel's buffers, kept empty between runs so that a batch of short
/// runs does not allocate them again for each run.
#[derive(Default)]
struct Spare {
    tasks: Vec<TaskInfo>,
    runnable: Vec<TaskId>,
    futs: Vec<Option<LocalFut>>,
    objects: Vec<(ObjKind, Name)>,
    timer_slots: Vec<Option<(ObjId, TimerAction)>>,
    timers: TimerHeap,
}

impl Sim {
    pub fn new(strategy: Box<dyn Strategy>) -> Self {
        oracle::install_panic_hook();
        Sim {
            strategy: Some(Sched::new(strategy)),
            spare: Spare::default(),
        }
    }

    pub fn strategy(&self) -> &dyn Strategy {
        self.strategy
            .as_ref()
            .expect("strategy present between runs")
            .get()
    }

    pub fn strategy_mut(&mut self) -> &mut dyn Strategy {
        self.strategy
            .as_mut()
            .expect("strategy present between runs")
            .get_mut()
    }

    /// Runs `main` as the main task until it returns and the grace period is
    /// over, or until nothing can happen any more, and reports what happened.
    pub fn run<F>(&mut self, cfg: &RunConfig, main: F) -> RunReport
    where
        F: Future<Output = ()> + 'static,
    {
        let mut strategy = self.strategy.take().expect("Sim::run is not reentrant");
        strategy.get_mut().new_execution(cfg.seed);
        let Spare {
            mut tasks,
            mut runnable,
            mut futs,
            mut objects,
            timer_slots,
            timers,
        } = std::mem::take(&mut self.spare);
        tasks.reserve(32);
        runnable.reserve(32);
        futs.reserve(32);
        objects.push((ObjKind::None, Name::from("-")));
        let footprint = strategy.get().wants_footprints().then(Vec::new);
        let st = State {
            now: 0,
            tasks,
            notes: Vec::new(),
            runnable,
            current: None,
            next: None,
            timers,
            timer_head: None,
            timer_slots,
            timer_seq: 0,
            objects,
            strategy,
            steps: 0,
            preemptions: 0,
            timer_preemptions: 0,
            record: cfg.record.then(Vec::new),
            trace: cfg.trace.then(Vec::new),
            trace_preemptions: Vec::new(),
            hash: 0xcbf2_9ce4_8422_2325,
            data_rng: rng::rng(cfg.seed, rng::STREAM_DATA),
            horizon: u64::MAX,
            max_steps: cfg.max_steps,
            max_time: cfg.max_time,
            max_early_fire: cfg.max_early_fire,
            main_done_at: None,
            limit_hit: false,
            plain: footprint.is_none() && !cfg.trace && !cfg.record,
            footprint,
            unready: Vec::new(),
            pending: Vec::new(),
        };
        let kernel = thread_kernel();
        assert!(
            !kernel.active.get(),
            "a simulation run is already going on on this thread"
        );
        FOOTPRINTS.with(|f| f.set(st.footprint.is_some()));
        *kernel.st.borrow_mut() = st;
        *kernel.futs.borrow_mut() = futs;
        kernel.active.set(true);
        ACTIVE.set(Some(kernel));
        let _detach = Detach(kernel);
        let _in_sim = oracle::InSim::enter();

        let main_id = kernel.spawn(Name::from("main"), Box::pin(main));
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        // The task being polled is noted outside the unwind boundary, so a
        // panicking task is named and its future dropped after the report
        // is taken. One `catch_unwind` covers the whole run loop instead of
        // one per poll; a panic outside a poll is not a task's and
        // propagates as before.
        let mut polling: Option<TaskId> = None;
        let driven = std::panic::catch_unwind(AssertUnwindSafe(|| {
            kernel.drive(main_id, cfg.grace, &mut cx, &mut polling)
        }));
        let panic = match driven {
            Ok(panic) => panic,
            Err(payload) => {
                let Some(task) = polling.take() else {
                    std::panic::resume_unwind(payload)
                };
                let fut = kernel.futs.borrow_mut()[task.index()].take();
                let st = kernel.state_ref();
                let panic = oracle::PanicReport {
                    task: st.tasks[task.index()].name.to_string(),
                    message: oracle::panic_message(&payload),
                };
                drop(st);
                drop(fut);
                Some(panic)
            }
        };

        let report = {
            let mut st = kernel.state();
            st.strategy.get_mut().end_execution();
            let outcome = if panic.is_some() {
                Outcome::Panic
            } else if st.limit_hit {
                Outcome::Limit
            } else if st.main_done_at.is_none() {
                Outcome::Deadlock
            } else if st.tasks.iter().any(|t| t.state != TaskState::Done) {
                Outcome::Leak
            } else {
                Outcome::Ok
            };
            let alive = oracle::alive_tasks(&st);
            let timers = st
                .timers
                .iter()
                .map(|(slot, (d, _))| {
                    let obj = st.timer_slots[slot as usize]
                        .as_ref()
                        .map_or(NO_OBJ, |(o, _)| *o);
                    (st.objects[obj.0 as usize].1.to_string(), d)
                })
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_iter()
                .collect();
            let trace = st.trace.take().map(|events| Trace {
                events,
                tasks: st
                    .tasks
                    .iter()
                    .map(|t| (t.name.render(), t.creator))
                    .collect(),
                objects: st
                    .objects
                    .iter()
                    .map(|(kind, name)| (*kind, name.render()))
                    .collect(),
                preemptions: std::mem::take(&mut st.trace_preemptions),
            });
            RunReport {
                seed: cfg.seed,
                outcome,
                steps: st.steps,
                preemptions: st.preemptions,
                timer_preemptions: st.timer_preemptions,
                tasks_spawned: st.tasks.len(),
                end_time: st.now,
                main_done_at: st.main_done_at,
                alive,
                armed_timers: timers,
                panic,
                decision_hash: st.hash,
                schedule: st.record.take().map(|steps| Schedule {
                    seed: cfg.seed,
                    steps,
                }),
                trace,
            }
        };

        // Drop the futures while the kernel is still reachable (their
        // destructors may release primitives), then detach it.
        let mut futs = std::mem::take(&mut *kernel.futs.borrow_mut());
        futs.clear();
        let spawned = std::mem::take(&mut *kernel.spawned.borrow_mut());
        kernel.has_spawned.set(false);
        drop(spawned);
        let mut timer_slots = std::mem::take(&mut kernel.state().timer_slots);
        timer_slots.clear();
        kernel.active.set(false);
        ACTIVE.set(None);
        FOOTPRINTS.with(|f| f.set(false));
        let mut st = std::mem::replace(&mut *kernel.st.borrow_mut(), State::idle());
        st.tasks.clear();
        st.runnable.clear();
        st.objects.clear();
        st.timers.clear();
        self.spare = Spare {
            tasks: st.tasks,
            runnable: st.runnable,
            futs,
            objects: st.objects,
            timer_slots,
            timers: st.timers,
        };
        self.strategy = Some(st.strategy);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runnable_list_stays_sorted_and_unique() {
        let mut st = State::idle();
        let mut model = std::collections::BTreeSet::new();
        let mut r = rng::rng(11, 0);
        for _ in 0..20_000 {
            let t = TaskId(rng::below(&mut r, 24) as u32);
            if rng::below(&mut r, 2) == 0 {
                st.insert_runnable(t);
                model.insert(t);
            } else {
                st.remove_runnable(t);
                model.remove(&t);
            }
            assert!(st.runnable.iter().copied().eq(model.iter().copied()));
        }
    }
}
