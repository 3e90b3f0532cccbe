//! Virtual time: `now`, `sleep`, and Go's `time.AfterFunc`.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

use super::executor::{LocalFut, TimerAction, with};
use super::name::Name;
use super::sync::{Event, block, current, preempt};
use super::task::{Access, Blocker, CLOCK, NO_OBJ, ObjId, ObjKind, Op};

pub const NS: u64 = 1;
pub const US: u64 = 1_000;
pub const MS: u64 = 1_000_000;
pub const SEC: u64 = 1_000_000_000;

/// Virtual time in nanoseconds since the start of the run.
pub fn now() -> u64 {
    with(|k| {
        let mut st = k.state();
        st.touch_as(CLOCK, Access::Read);
        st.now
    })
}

/// `time.Sleep(d)`.
pub async fn sleep(d: u64) {
    preempt(Op::Sleep, NO_OBJ).await;
    let me = current();
    with(|k| {
        let mut st = k.state();
        let deadline = st.now.saturating_add(d);
        st.add_timer(deadline, NO_OBJ, TimerAction::Wake(me));
    });
    block(Blocker::On(Op::Sleep, NO_OBJ)).await;
}

/// A timer armed by [`after_func`] or [`after_func_fire`].
pub struct Timer {
    slot: u32,
    obj: ObjId,
    /// Set when the callback task is launched; `None` for a timer from
    /// [`after_func_fire`], whose event tells instead.
    fired: Option<Rc<Cell<bool>>>,
}

/// `time.AfterFunc(d, f)`: after `d`, `f` runs in a new task named `name`.
/// The timer start is a preemption point. `f` is boxed at once (see
/// [`super::go`]).
pub fn after_func<F>(d: u64, name: impl Into<Name>, f: F) -> impl Future<Output = Timer>
where
    F: Future<Output = ()> + 'static,
{
    let name = name.into();
    let fut: LocalFut = Box::pin(f);
    after_func_boxed(d, name, fut, true)
}

/// `time.AfterFunc(d, f)` where `f` fires `event`: the Go pattern of a
/// timer a task waits for (`time.NewTimer` and a `select` on its channel,
/// a context deadline). The same kernel calls as [`after_func`] with
/// `async move { event.fire().await }`, without a launch flag to allocate:
/// the returned timer's [`Timer::has_fired`] is not available.
pub fn after_func_fire(
    d: u64,
    name: impl Into<Name>,
    event: Rc<Event>,
) -> impl Future<Output = Timer> {
    let name = name.into();
    let fut: LocalFut = Box::pin(async move {
        event.fire().await;
    });
    after_func_boxed(d, name, fut, false)
}

async fn after_func_boxed(d: u64, name: Name, fut: LocalFut, flag: bool) -> Timer {
    let obj = with(|k| k.state().register(ObjKind::Timer, name.clone()));
    preempt(Op::TimerStart, obj).await;
    let fired = flag.then(|| Rc::new(Cell::new(false)));
    let slot = with(|k| {
        let mut st = k.state();
        let deadline = st.now.saturating_add(d);
        let creator = st.current;
        st.add_timer(
            deadline,
            obj,
            TimerAction::Spawn {
                name,
                creator,
                fut,
                fired: fired.clone(),
            },
        )
    });
    Timer { slot, obj, fired }
}

impl Timer {
    /// `Timer.Stop()`: true if the call stopped the timer, false if it had
    /// already fired (its callback task was already launched) or was stopped.
    pub async fn stop(&self) -> bool {
        preempt(Op::TimerStop, self.obj).await;
        with(|k| k.state().stop_timer(self.slot))
    }

    /// Whether the callback task has been launched. Not for a timer from
    /// [`after_func_fire`] (ask its event).
    pub fn has_fired(&self) -> bool {
        let fired = self
            .fired
            .as_ref()
            .expect("a timer from after_func_fire: ask its event");
        super::sync::touch(self.obj, super::task::Access::Read);
        fired.get()
    }
}
