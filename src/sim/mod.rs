//! The discrete-event kernel: simulated goroutines on a single-threaded
//! executor, Go's synchronisation primitives, virtual time, scheduling
//! strategies, recorded schedules, traces and end-of-run oracles.
//!
//! This module knows nothing about gRPC.

pub mod dist;
mod executor;
mod name;
pub mod oracle;
pub mod rng;
pub mod schedule;
pub mod strategy;
pub mod sync;
mod task;
pub mod time;
mod timer_heap;
pub mod trace;

use std::future::Future;
use std::rc::Rc;

pub use executor::{RunConfig, Sim};
pub use name::Name;
pub use oracle::{Outcome, PanicReport, RunReport, TaskReport};
pub use schedule::{Schedule, Step, StepKind};
pub use strategy::{Choice, Decision, Point, Strategy, StrategyKind};
pub use sync::{
    BufferClosed, Event, GoMap, Mutex, MutexGuard, OneshotReceiver, OneshotSender, Selectable,
    Unbounded, go_order, oneshot, select,
};
pub use task::{Access, ObjId, Op, TaskId, Use};
pub use time::{MS, NS, SEC, Timer, US, after_func, after_func_fire, now, sleep};
pub use trace::{Preemption, Trace, TraceEvent};

use rand::Rng as _;
use task::NO_OBJ;

/// `go f()`: starts a task named `name`. The spawn is a preemption point.
///
/// The task's future is boxed at once, so the future returned here (and
/// every future that awaits it) holds a pointer instead of a copy of it.
pub fn go<F>(name: impl Into<Name>, f: F) -> impl Future<Output = TaskId>
where
    F: Future<Output = ()> + 'static,
{
    let name = name.into();
    let fut: executor::LocalFut = Box::pin(f);
    async move {
        sync::preempt_untraced(Op::Spawn).await;
        executor::with(|k| k.spawn(name, fut))
    }
}

/// Starts a task without a preemption point: for setting up a model before
/// its tasks run (a `go` statement inside model code is [`go`]).
pub fn spawn<F>(name: impl Into<Name>, f: F) -> TaskId
where
    F: Future<Output = ()> + 'static,
{
    executor::with(|k| k.spawn(name.into(), Box::pin(f)))
}

/// An explicit preemption point (`runtime.Gosched()`).
pub async fn yield_now() {
    sync::preempt(Op::Yield, NO_OBJ).await;
}

/// The running task.
pub fn current_task() -> TaskId {
    sync::current()
}

/// Adds a free-text line to the trace, if tracing; `text` is only evaluated then.
pub fn note(text: impl FnOnce() -> String) {
    executor::with(|k| {
        let mut st = k.state();
        if st.tracing() {
            let t: Rc<str> = Rc::from(text());
            st.trace_event(Op::Note, NO_OBJ, Some(t));
        }
    });
}

/// A nondeterministic choice among `n` alternatives made by the strategy
/// (recorded in the schedule, enumerated by systematic search).
pub fn choose(n: usize) -> usize {
    executor::with(|k| k.choose(n))
}

/// A draw from the run's data stream (durations, latencies): fixed by the
/// seed, independent of the schedule.
pub fn random_u64() -> u64 {
    executor::with(|k| {
        let mut st = k.state();
        st.touch(task::DATA_STREAM);
        st.data_rng.next_u64()
    })
}

/// Uniform float in [0, 1) from the run's data stream.
pub fn random_unit() -> f64 {
    executor::with(|k| {
        let mut st = k.state();
        st.touch(task::DATA_STREAM);
        rng::unit(&mut st.data_rng)
    })
}
