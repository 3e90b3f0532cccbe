//! Go's synchronisation primitives, with a preemption point before every
//! visible operation: `Mutex` (sync.Mutex), `Unbounded` (grpc-go
//! buffer.Unbounded), `Event` (grpcsync.Event), a oneshot channel, `select`
//! over several of them, and `GoMap` (a map whose iteration order is drawn
//! from the run's strategy, as Go's is random).

use std::borrow::Borrow;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::executor::{PointOp, Preempted, footprints_on, try_with, with};
use super::name::Name;
use super::task::{Access, Blocker, ObjId, ObjKind, ObjSet, Op, TaskId};

/// The preemption point before operation `op` on `obj`. Completes when the
/// strategy lets the current task run its operation; records it in the trace.
pub(crate) struct Preempt {
    what: PointOp,
    yielded: bool,
    /// Set when the task yielded here in a traced run: the operation is
    /// traced when the task resumes.
    trace_on_resume: bool,
    /// Set when the task yielded here in a run that records footprints
    /// (kept here: reading the thread-local flag on every resume cost the
    /// timed kernel bench about 9 ns per point).
    touch_on_resume: bool,
}

/// A preemption point that a future which may block after it passes once:
/// polled again after a wake-up, it is already passed.
pub(crate) struct PointOnce {
    point: Preempt,
    passed: bool,
}

impl PointOnce {
    fn new(point: Preempt) -> Self {
        PointOnce {
            point,
            passed: false,
        }
    }

    /// Ready once the point has completed, and on every poll after that.
    #[inline]
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.passed {
            if Pin::new(&mut self.point).poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.passed = true;
        }
        Poll::Ready(())
    }
}

pub(crate) fn preempt(op: Op, obj: ObjId) -> Preempt {
    Preempt {
        what: PointOp {
            op,
            obj,
            access: Some(Access::Write),
            traced: true,
        },
        yielded: false,
        trace_on_resume: false,
        touch_on_resume: false,
    }
}

/// A preemption point whose operation traces itself (a spawn names its child).
pub(crate) fn preempt_untraced(op: Op) -> Preempt {
    Preempt {
        what: PointOp {
            op,
            obj: super::task::NO_OBJ,
            access: Some(Access::Write),
            traced: false,
        },
        yielded: false,
        trace_on_resume: false,
        touch_on_resume: false,
    }
}

impl Preempt {
    /// The task resumes at this point in a run that records a trace or
    /// footprints: its operation is recorded now (out of line: bulk runs
    /// never take this path).
    #[cold]
    #[inline(never)]
    fn note_on_resume(&self) {
        with(|k| {
            let mut st = k.state();
            let PointOp {
                op, obj, access, ..
            } = self.what;
            if self.trace_on_resume {
                st.trace_event(op, obj, None);
            }
            if let Some(access) = access {
                st.touch_op(op, obj, access);
            }
        });
    }
}

impl Future for Preempt {
    type Output = ();
    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            // Resumed: the task that chose this one already took the decision.
            if self.trace_on_resume || self.touch_on_resume {
                self.note_on_resume();
            }
            return Poll::Ready(());
        }
        match with(|k| k.preempt(&self.what)) {
            Preempted::Continue => Poll::Ready(()),
            Preempted::Yield {
                trace_on_resume,
                touch_on_resume,
            } => {
                self.touch_on_resume = touch_on_resume;
                self.yielded = true;
                self.trace_on_resume = trace_on_resume;
                Poll::Pending
            }
        }
    }
}

/// Blocks the current task until another task wakes it.
pub(crate) struct Block<'a> {
    blocker: Option<Blocker>,
    /// The wait list the task joins as it blocks, if any.
    waiters: Option<&'a Waiters>,
}

pub(crate) fn block(blocker: Blocker) -> Block<'static> {
    Block {
        blocker: Some(blocker),
        waiters: None,
    }
}

/// Adds the current task to `waiters` and blocks it until another task wakes
/// it (one kernel access for both).
fn block_on(waiters: &Waiters, blocker: Blocker) -> Block<'_> {
    Block {
        blocker: Some(blocker),
        waiters: Some(waiters),
    }
}

/// Adds the current task to `waiters`, if any, and blocks it on `blocker`
/// (one kernel access for both). Out of line: the futures that call it stay
/// small on their path that does not block.
#[inline(never)]
fn block_current_on(waiters: Option<&Waiters>, blocker: Blocker) {
    with(|k| {
        let mut st = k.state();
        if let Some(w) = waiters {
            w.add(st.current.expect("called outside a task"));
        }
        st.block_current(blocker);
    });
}

impl Future for Block<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        match self.blocker.take() {
            Some(b) => {
                block_current_on(self.waiters, b);
                Poll::Pending
            }
            None => Poll::Ready(()),
        }
    }
}

/// Tells the kernel whether an operation that waits on `obj` (lock, get,
/// wait, receive) would block now; systematic search does not schedule a
/// task whose next step would only block.
#[inline]
fn set_unready(obj: ObjId, unready: bool) {
    if footprints_on() {
        note_unready(obj, unready);
    }
}

/// [`set_unready`] in a run that records footprints (out of line: the
/// primitives that call it stay small in bulk runs).
#[cold]
#[inline(never)]
fn note_unready(obj: ObjId, unready: bool) {
    try_with(|k| {
        if let Some(mut st) = k.try_state() {
            st.set_unready(obj, unready);
        }
    });
}

/// Records a use of `obj` outside a preemption point in the running step's
/// footprint (a Go atomic load, a non-blocking receive).
#[inline]
pub(crate) fn touch(obj: ObjId, access: Access) {
    if footprints_on() {
        note_touch(obj, access);
    }
}

/// [`touch`] in a run that records footprints (out of line, as
/// [`note_unready`]).
#[cold]
#[inline(never)]
fn note_touch(obj: ObjId, access: Access) {
    try_with(|k| {
        if let Some(mut st) = k.try_state() {
            st.touch_as(obj, access);
        }
    });
}

pub(crate) fn current() -> TaskId {
    with(|k| k.state_ref().current.expect("called outside a task"))
}

fn register(kind: ObjKind, name: Name) -> ObjId {
    with(|k| k.state().register(kind, name))
}

/// A list of blocked tasks waiting for one object to change, in the order
/// they joined it (the order they are woken in). The first few are kept
/// inline: most objects never have more waiters than that, and a wait then
/// allocates nothing.
#[derive(Default)]
pub struct Waiters(RefCell<WaitList>);

const INLINE_WAITERS: usize = 4;

struct WaitList {
    inline: [TaskId; INLINE_WAITERS],
    len: usize,
    /// Waiters past the inline ones, in order.
    spill: Vec<TaskId>,
}

impl Default for WaitList {
    fn default() -> Self {
        WaitList {
            inline: [TaskId(0); INLINE_WAITERS],
            len: 0,
            spill: Vec::new(),
        }
    }
}

impl WaitList {
    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.inline[..self.len].iter().chain(&self.spill).copied()
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, t: TaskId) {
        // The inline part and the (usually empty) spill apart: a chained
        // iterator costs more than the two short scans.
        if self.inline[..self.len].contains(&t) || self.spill.contains(&t) {
            return;
        }
        if self.spill.is_empty() && self.len < INLINE_WAITERS {
            self.inline[self.len] = t;
            self.len += 1;
        } else {
            self.spill.push(t);
        }
    }

    fn remove(&mut self, t: TaskId) {
        if let Some(i) = self.inline[..self.len].iter().position(|&x| x == t) {
            // A loop, not `copy_within`: for at most three ids a call to
            // `memmove` costs more than the copy.
            for j in i + 1..self.len {
                self.inline[j - 1] = self.inline[j];
            }
            self.len -= 1;
            if !self.spill.is_empty() {
                self.inline[self.len] = self.spill.remove(0);
                self.len += 1;
            }
        } else {
            self.spill.retain(|&x| x != t);
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.spill.clear();
    }
}

impl Waiters {
    #[inline]
    fn add(&self, t: TaskId) {
        self.0.borrow_mut().push(t);
    }

    #[inline]
    fn remove(&self, t: TaskId) {
        self.0.borrow_mut().remove(t);
    }

    /// Wakes every waiter, in join order, and empties the list.
    #[inline]
    fn wake_all(&self) {
        // Checked in line: most wake-ups find no waiter.
        if !self.0.borrow().is_empty() {
            self.wake_listed();
        }
    }

    #[inline(never)]
    fn wake_listed(&self) {
        let mut w = self.0.borrow_mut();
        // Outside a run (a destructor after it ended) there is no one to wake.
        // Waking touches only the kernel state, never a wait list, so the list
        // stays borrowed and keeps its buffer for the next waiters.
        let _ = try_with(|k| {
            let mut st = k.state();
            // In join order: the inline part, then the spill.
            for &t in &w.inline[..w.len] {
                st.wake(t);
            }
            for &t in &w.spill {
                st.wake(t);
            }
        });
        w.clear();
    }
}

/// Go's `sync.Mutex`. Unlock is explicit and is itself a preemption point.
/// On unlock every waiter is woken and they race for the lock again, so the
/// strategy decides who gets it (and a newcomer may barge in, as in Go).
pub struct Mutex {
    id: ObjId,
    locked: Cell<bool>,
    waiters: Waiters,
}

impl Mutex {
    pub fn new(name: impl Into<Name>) -> Self {
        Mutex {
            id: register(ObjKind::Mutex, name.into()),
            locked: Cell::new(false),
            waiters: Waiters::default(),
        }
    }

    pub fn id(&self) -> ObjId {
        self.id
    }

    pub fn is_locked(&self) -> bool {
        touch(self.id, Access::Read);
        self.locked.get()
    }

    pub fn lock(&self) -> Lock<'_> {
        let mut point = preempt(Op::Lock, self.id);
        point.what.access = None;
        Lock {
            mutex: self,
            point: PointOnce::new(point),
        }
    }

    /// The lock is held: the current task tries it and blocks on it.
    #[inline(never)]
    fn block(&self) {
        touch(self.id, Access::Attempt);
        block_current_on(Some(&self.waiters), Blocker::On(Op::Lock, self.id));
    }

    /// For footprints: the step took the lock, which now blocks a lock.
    #[cold]
    #[inline(never)]
    fn note_acquire(&self) {
        touch(self.id, Access::Acquire);
        set_unready(self.id, true);
    }

    #[inline]
    fn release(&self) {
        self.locked.set(false);
        set_unready(self.id, false);
        self.waiters.wake_all();
    }
}

/// Proof that a [`Mutex`] is held. Call [`MutexGuard::unlock`]; dropping the
/// guard releases the lock too but without a preemption point (for panics and
/// early returns).
#[must_use = "a Go mutex stays locked until unlock() is awaited"]
pub struct MutexGuard<'a> {
    mutex: &'a Mutex,
    held: bool,
}

impl<'a> MutexGuard<'a> {
    pub fn unlock(self) -> Unlock<'a> {
        let mut point = preempt(Op::Unlock, self.mutex.id);
        point.what.access = Some(Access::Release);
        Unlock { guard: self, point }
    }
}

impl MutexGuard<'_> {
    /// The guard is dropped while it holds the lock (a panic or an early
    /// return): a release without a preemption point.
    #[cold]
    #[inline(never)]
    fn release_on_drop(&mut self) {
        // A release without a preemption point still changes the lock.
        touch(self.mutex.id, Access::Release);
        self.mutex.release();
    }
}

impl Drop for MutexGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // After `unlock` (the usual end) there is nothing to do.
        if self.held {
            self.release_on_drop();
        }
    }
}

/// The future of [`Mutex::lock`] (written out by hand: an `async fn` costs
/// more per poll). The preemption point, then, while the lock is held, a
/// block on the mutex's wait list until an unlock wakes the task.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Lock<'a> {
    mutex: &'a Mutex,
    point: PointOnce,
}

impl<'a> Future for Lock<'a> {
    type Output = MutexGuard<'a>;
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<MutexGuard<'a>> {
        if self.point.poll(cx).is_pending() {
            return Poll::Pending;
        }
        // Past the point, every poll follows a block (woken, or polled
        // again): the lock is tried again.
        let mutex = self.mutex;
        if mutex.locked.get() {
            mutex.block();
            return Poll::Pending;
        }
        mutex.locked.set(true);
        if footprints_on() {
            mutex.note_acquire();
        }
        Poll::Ready(MutexGuard { mutex, held: true })
    }
}

/// The future of [`MutexGuard::unlock`]: the preemption point, then the
/// release. Dropped before the point completes, the guard it holds releases
/// the lock without one.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Unlock<'a> {
    guard: MutexGuard<'a>,
    point: Preempt,
}

impl Future for Unlock<'_> {
    type Output = ();
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Pin::new(&mut self.point).poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.guard.held = false;
        self.guard.mutex.release();
        Poll::Ready(())
    }
}

/// Returned by `put` on a closed [`Unbounded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("put called on a closed unbounded buffer")]
pub struct BufferClosed;

/// grpc-go's `buffer.Unbounded`: `put` never blocks; `get` waits for an item;
/// after `close`, items already queued are still delivered, then `get`
/// returns `None`, and `put` fails.
pub struct Unbounded<T> {
    id: ObjId,
    items: RefCell<VecDeque<T>>,
    closing: Cell<bool>,
    waiters: Waiters,
}

impl<T> Unbounded<T> {
    pub fn new(name: impl Into<Name>) -> Self {
        Unbounded {
            id: register(ObjKind::Unbounded, name.into()),
            items: RefCell::new(VecDeque::new()),
            closing: Cell::new(false),
            waiters: Waiters::default(),
        }
    }

    pub fn put(&self, v: T) -> Put<'_, T> {
        let mut point = preempt(Op::Put, self.id);
        if std::mem::size_of::<T>() == 0 {
            // Values of a zero-sized type cannot be told apart: two puts
            // leave the same buffer in either order (a WaitGroup's Done).
            point.what.access = Some(Access::Add);
        }
        Put {
            buf: self,
            v: Some(v),
            point,
        }
    }

    /// Receive from the buffer (`<-b.Get()` followed by `b.Load()`).
    pub fn get(&self) -> Get<'_, T> {
        Get {
            buf: self,
            point: PointOnce::new(preempt(Op::Get, self.id)),
        }
    }

    /// Non-blocking receive, for use right after [`select`] chose this buffer.
    /// `None` means closed and drained.
    pub fn try_get(&self) -> Option<T> {
        touch(self.id, Access::Write);
        let mut items = self.items.borrow_mut();
        let v = items.pop_front();
        if items.is_empty() && !self.closing.get() {
            set_unready(self.id, true);
        }
        v
    }

    pub async fn close(&self) {
        preempt(Op::Close, self.id).await;
        self.closing.set(true);
        set_unready(self.id, false);
        self.waiters.wake_all();
    }

    pub fn len(&self) -> usize {
        touch(self.id, Access::Read);
        self.items.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        touch(self.id, Access::Read);
        self.items.borrow().is_empty()
    }
}

/// The future of [`Unbounded::put`] (written out by hand: an `async fn`
/// costs more per poll): the preemption point, then the put.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Put<'a, T> {
    buf: &'a Unbounded<T>,
    /// The value, until it is put.
    v: Option<T>,
    point: Preempt,
}

// The value is never pinned: it is moved into the buffer.
impl<T> Unpin for Put<'_, T> {}

impl<T> Future for Put<'_, T> {
    type Output = Result<(), BufferClosed>;
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BufferClosed>> {
        if Pin::new(&mut self.point).poll(cx).is_pending() {
            return Poll::Pending;
        }
        let buf = self.buf;
        if buf.closing.get() {
            // Dropped now, as the operation ends, not with the future.
            drop(self.v.take());
            return Poll::Ready(Err(BufferClosed));
        }
        let v = self.v.take().expect("a put polled after it completed");
        buf.items.borrow_mut().push_back(v);
        set_unready(buf.id, false);
        buf.waiters.wake_all();
        Poll::Ready(Ok(()))
    }
}

/// The future of [`Unbounded::get`]: the preemption point, then, while the
/// buffer is empty and open, a block on its wait list.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Get<'a, T> {
    buf: &'a Unbounded<T>,
    point: PointOnce,
}

impl<T> Future for Get<'_, T> {
    type Output = Option<T>;
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if self.point.poll(cx).is_pending() {
            return Poll::Pending;
        }
        let buf = self.buf;
        if let Some(v) = buf.try_get() {
            return Poll::Ready(Some(v));
        }
        if buf.closing.get() {
            return Poll::Ready(None);
        }
        block_current_on(Some(&buf.waiters), Blocker::On(Op::Get, buf.id));
        Poll::Pending
    }
}

/// grpcsync.Event: fires once; `wait` returns once it has fired.
pub struct Event {
    id: ObjId,
    fired: Cell<bool>,
    waiters: Waiters,
}

impl Event {
    pub fn new(name: impl Into<Name>) -> Self {
        Event {
            id: register(ObjKind::Event, name.into()),
            fired: Cell::new(false),
            waiters: Waiters::default(),
        }
    }

    /// Fires the event; true if this call fired it.
    pub fn fire(&self) -> Fire<'_> {
        Fire {
            event: self,
            point: preempt(Op::Fire, self.id),
        }
    }

    /// An atomic load in Go; not a preemption point here.
    pub fn has_fired(&self) -> bool {
        touch(self.id, Access::Read);
        self.fired.get()
    }

    /// `<-e.Done()`.
    pub fn wait(&self) -> Wait<'_> {
        let mut point = preempt(Op::Wait, self.id);
        point.what.access = Some(Access::Read);
        Wait {
            event: self,
            point: PointOnce::new(point),
        }
    }
}

/// The future of [`Event::fire`] (written out by hand: an `async fn` costs
/// more per poll): the preemption point, then the fire.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Fire<'a> {
    event: &'a Event,
    point: Preempt,
}

impl Future for Fire<'_> {
    type Output = bool;
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        if Pin::new(&mut self.point).poll(cx).is_pending() {
            return Poll::Pending;
        }
        let event = self.event;
        if event.fired.get() {
            return Poll::Ready(false);
        }
        event.fired.set(true);
        set_unready(event.id, false);
        event.waiters.wake_all();
        Poll::Ready(true)
    }
}

/// The future of [`Event::wait`] (written out by hand: an `async fn` costs
/// more per poll): the preemption point, then a block on the event's wait
/// list until it fires.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Wait<'a> {
    event: &'a Event,
    point: PointOnce,
}

impl Future for Wait<'_> {
    type Output = ();
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.point.poll(cx).is_pending() {
            return Poll::Pending;
        }
        let event = self.event;
        if event.fired.get() {
            return Poll::Ready(());
        }
        block_current_on(Some(&event.waiters), Blocker::On(Op::Wait, event.id));
        Poll::Pending
    }
}

struct OneshotInner<T> {
    id: ObjId,
    value: RefCell<Option<T>>,
    sent: Cell<bool>,
    sender_gone: Cell<bool>,
    waiters: Waiters,
}

/// Sending half of a one-value channel.
pub struct OneshotSender<T>(Rc<OneshotInner<T>>);
/// Receiving half of a one-value channel.
pub struct OneshotReceiver<T>(Rc<OneshotInner<T>>);

/// A channel that carries one value (a Go `done` channel with a result).
pub fn oneshot<T>(name: impl Into<Name>) -> (OneshotSender<T>, OneshotReceiver<T>) {
    let inner = Rc::new(OneshotInner {
        id: register(ObjKind::Oneshot, name.into()),
        value: RefCell::new(None),
        sent: Cell::new(false),
        sender_gone: Cell::new(false),
        waiters: Waiters::default(),
    });
    (OneshotSender(inner.clone()), OneshotReceiver(inner))
}

impl<T> OneshotSender<T> {
    pub async fn send(self, v: T) {
        preempt(Op::Send, self.0.id).await;
        *self.0.value.borrow_mut() = Some(v);
        self.0.sent.set(true);
        set_unready(self.0.id, false);
        self.0.waiters.wake_all();
    }
}

impl<T> Drop for OneshotSender<T> {
    fn drop(&mut self) {
        // Dropping the sender unblocks the receiver: part of the step.
        touch(self.0.id, Access::Write);
        self.0.sender_gone.set(true);
        set_unready(self.0.id, false);
        self.0.waiters.wake_all();
    }
}

impl<T> OneshotReceiver<T> {
    /// The value, or `None` if the sender was dropped without sending.
    pub async fn recv(self) -> Option<T> {
        preempt(Op::Recv, self.0.id).await;
        loop {
            if self.0.sent.get() {
                return self.0.value.borrow_mut().take();
            }
            if self.0.sender_gone.get() {
                return None;
            }
            block_on(&self.0.waiters, Blocker::On(Op::Recv, self.0.id)).await;
        }
    }
}

/// Something a Go `select` can wait on.
pub trait Selectable {
    fn obj(&self) -> ObjId;
    /// A receive would not block now.
    fn is_ready(&self) -> bool;
    /// The list of tasks blocked until a receive would not block.
    #[doc(hidden)]
    fn waiters(&self) -> &Waiters;
}

impl<T> Selectable for Unbounded<T> {
    fn obj(&self) -> ObjId {
        self.id
    }
    fn is_ready(&self) -> bool {
        !self.items.borrow().is_empty() || self.closing.get()
    }
    fn waiters(&self) -> &Waiters {
        &self.waiters
    }
}

impl Selectable for Event {
    fn obj(&self) -> ObjId {
        self.id
    }
    fn is_ready(&self) -> bool {
        self.fired.get()
    }
    fn waiters(&self) -> &Waiters {
        &self.waiters
    }
}

/// Go's `select` over receive cases: waits until at least one case is ready
/// and returns the index of one ready case. As in Go, when several are ready
/// the choice is random (here: made by the strategy and recorded). The
/// caller then takes the value without blocking (`try_get`, `has_fired`).
pub fn select<'a>(cases: &'a [&'a dyn Selectable]) -> Select<'a> {
    assert!(
        !cases.is_empty() && cases.len() <= ObjSet::MAX,
        "select takes 1..=8 cases"
    );
    let mut point = preempt(Op::Select, cases[0].obj());
    point.what.access = Some(Access::Read);
    Select {
        cases,
        point: PointOnce::new(point),
        blocked: None,
    }
}

/// The future of [`select`] (written out by hand: an `async fn` costs more
/// per poll). The preemption point, then, while no case is ready, a block on
/// the wait lists of all the cases (one kernel access for all) until one of
/// them wakes the task.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Select<'a> {
    cases: &'a [&'a dyn Selectable],
    point: PointOnce,
    /// The task, while it is blocked on the cases' wait lists.
    blocked: Option<TaskId>,
}

impl Future for Select<'_> {
    type Output = usize;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let cases = self.cases;
        if !self.point.passed {
            // The first poll: the task is at the select.
            if !self.point.point.yielded && footprints_on() {
                with(|k| {
                    let mut st = k.state();
                    st.note_select(cases.iter().map(|c| c.obj()));
                });
            }
            if self.point.poll(cx).is_pending() {
                return Poll::Pending;
            }
            if footprints_on() {
                for c in &cases[1..] {
                    touch(c.obj(), Access::Read);
                }
            }
        } else if let Some(me) = self.blocked.take() {
            // Woken: off every wait list, then the cases are checked again.
            for c in cases {
                c.waiters().remove(me);
            }
        }
        let mut ready = [0u8; ObjSet::MAX];
        let mut n = 0;
        for (i, c) in cases.iter().enumerate() {
            if c.is_ready() {
                ready[n] = i as u8;
                n += 1;
            }
        }
        if n > 0 {
            let k = if n > 1 { with(|k| k.choose(n)) } else { 0 };
            return Poll::Ready(usize::from(ready[k]));
        }
        let me = with(|k| {
            let mut st = k.state();
            let me = st.current.expect("called outside a task");
            // The task joins the wait lists in the cases' order.
            let objs = cases
                .iter()
                .map(|c| {
                    c.waiters().add(me);
                    c.obj()
                })
                .collect();
            st.block_current(Blocker::Select(objs));
            me
        });
        self.blocked = Some(me);
        Poll::Pending
    }
}

/// Puts `items` in an order drawn from the strategy, as Go's `range` over a
/// map would visit them.
pub fn go_order<T>(mut items: Vec<T>) -> Vec<T> {
    if items.len() > 1 {
        with(|k| {
            for i in (1..items.len()).rev() {
                let j = k.choose(i + 1);
                items.swap(i, j);
            }
        });
    }
    items
}

/// A Go map: a `BTreeMap` for storage (deterministic), with iteration in an
/// order drawn from the run's strategy, as `for k := range m` is random in Go.
/// Every permutation is possible here, a superset of Go's orders.
pub struct GoMap<K, V> {
    map: BTreeMap<K, V>,
}

impl<K: Ord + Clone, V> Default for GoMap<K, V> {
    fn default() -> Self {
        GoMap {
            map: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, V> GoMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.map.insert(k, v)
    }

    pub fn get<Q: Ord + ?Sized>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.map.get(k)
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.map.get_mut(k)
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.map.remove(k)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.map.contains_key(k)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Keys in Go's random iteration order (a shuffle drawn from the strategy).
    pub fn keys_go_order(&self) -> Vec<K> {
        go_order(self.map.keys().cloned().collect())
    }

    /// Values in Go's random iteration order.
    pub fn values_go_order(&self) -> Vec<V>
    where
        V: Clone,
    {
        go_order(self.map.values().cloned().collect())
    }

    /// Entries in Go's random iteration order.
    pub fn iter_go_order(&self) -> Vec<(K, &V)> {
        go_order(self.map.iter().map(|(k, v)| (k.clone(), v)).collect())
    }

    /// Entries in key order, for reports and assertions (not Go's order).
    pub fn iter_sorted(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }

    /// Takes every entry out, in Go's random order.
    pub fn drain_go_order(&mut self) -> Vec<(K, V)> {
        go_order(std::mem::take(&mut self.map).into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::rng;

    #[test]
    fn a_wait_list_keeps_join_order_like_a_vec_without_repeats() {
        let mut list = WaitList::default();
        let mut model: Vec<TaskId> = Vec::new();
        let mut r = rng::rng(3, 0);
        for _ in 0..20_000 {
            let t = TaskId(rng::below(&mut r, 10) as u32);
            match rng::below(&mut r, 5) {
                0 | 1 => {
                    list.push(t);
                    if !model.contains(&t) {
                        model.push(t);
                    }
                }
                2 | 3 => {
                    list.remove(t);
                    model.retain(|&x| x != t);
                }
                _ => {
                    list.clear();
                    model.clear();
                }
            }
            assert!(list.iter().eq(model.iter().copied()));
            assert_eq!(list.is_empty(), model.is_empty());
        }
    }

    /// Keys, entries and a drain of the same map under the same seed come
    /// in one order: the shuffle of the sorted keys, one draw per entry
    /// after the first, and the values stay with their keys.
    #[test]
    fn a_go_map_lists_keys_entries_and_drains_in_one_shuffled_order() {
        use crate::sim::strategy::RandomStrategy;
        use crate::sim::{RunConfig, Sim};
        let order = |seed: u64, how: u8| {
            let out = Rc::new(RefCell::new(Vec::new()));
            let o = out.clone();
            let mut simu = Sim::new(Box::new(RandomStrategy::new()));
            let report = simu.run(&RunConfig::new(seed), async move {
                let mut m = GoMap::new();
                for k in 0..12u32 {
                    m.insert(k, k * 10);
                }
                let got: Vec<(u32, u32)> = match how {
                    0 => m.keys_go_order().into_iter().map(|k| (k, k * 10)).collect(),
                    1 => m
                        .iter_go_order()
                        .into_iter()
                        .map(|(k, v)| (k, *v))
                        .collect(),
                    _ => {
                        let all = m.drain_go_order();
                        assert!(m.is_empty());
                        all
                    }
                };
                *o.borrow_mut() = got;
            });
            assert_eq!(
                report.outcome,
                crate::sim::Outcome::Ok,
                "{}",
                report.describe()
            );
            out.take()
        };
        let mut shuffled = 0;
        for seed in 0..20 {
            let keys = order(seed, 0);
            assert_eq!(keys.len(), 12);
            assert_eq!(order(seed, 1), keys, "seed {seed}");
            assert_eq!(order(seed, 2), keys, "seed {seed}");
            shuffled += usize::from(keys.windows(2).any(|w| w[0].0 > w[1].0));
        }
        assert!(shuffled > 15, "orders are drawn, not sorted: {shuffled}");
    }
}
