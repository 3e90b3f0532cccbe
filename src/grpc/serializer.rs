//! Port of grpc-go `internal/grpcsync/callback_serializer.go` at `e0ac3acff`:
//! a task that runs scheduled callbacks one at a time, in order.
//!
//! The Go context is an [`Event`] here (`Ctx`): cancelling fires it, and a
//! callback tests `ctx.has_fired()` where Go tests `ctx.Err() != nil`.

use std::future::Future;
use std::rc::Rc;

use crate::grpc::balancer::BoxFut;
use crate::sim::Name;
use crate::sim::{self, Event, Unbounded, select};

/// A cancellable context: fired means cancelled.
pub type Ctx = Rc<Event>;

/// A scheduled callback: the future of the closure given to
/// [`CallbackSerializer::try_schedule`], already applied to the serializer's
/// context. One box, where a boxed closure returning a boxed future took two;
/// the closures are `move |ctx| async move { .. }`, so applying one early
/// runs none of its code.
type Callback = BoxFut<'static, ()>;

/// The names [`CallbackSerializer::new`] gives the objects of the serializer
/// `$name`, as literals for [`CallbackSerializer::new_static`].
macro_rules! serializer_names {
    ($name:literal) => {
        [
            concat!($name, ".done"),
            concat!($name, ".callbacks"),
            concat!($name, ".run"),
        ]
    };
}
pub(crate) use serializer_names;

/// `grpcsync.CallbackSerializer`.
pub struct CallbackSerializer {
    done: Event,
    callbacks: Unbounded<Callback>,
    /// The context `run` was started with, handed to each callback.
    ctx: Ctx,
}

impl CallbackSerializer {
    /// `NewCallbackSerializer(ctx)`: starts the `run` task (`go cs.run(ctx)`),
    /// named `<name>.run`.
    pub async fn new(name: &str, ctx: Ctx) -> Rc<CallbackSerializer> {
        let name: Rc<str> = Rc::from(name);
        let named = |suffix: &'static str| {
            let name = name.clone();
            Name::lazy(move || format!("{name}.{suffix}"))
        };
        Self::start(named("done"), named("callbacks"), named("run"), ctx).await
    }

    /// [`Self::new`] for a serializer whose name is a literal: its names
    /// are literals too (see [`serializer_names`]), so none is allocated.
    pub async fn new_static(names: [&'static str; 3], ctx: Ctx) -> Rc<CallbackSerializer> {
        let [done, callbacks, run] = names;
        Self::start(done.into(), callbacks.into(), run.into(), ctx).await
    }

    async fn start(done: Name, callbacks: Name, run: Name, ctx: Ctx) -> Rc<CallbackSerializer> {
        let cs = Rc::new(CallbackSerializer {
            done: Event::new(done),
            callbacks: Unbounded::new(callbacks),
            ctx: ctx.clone(),
        });
        let runner = cs.clone();
        sim::go(run, async move { runner.run(ctx).await }).await;
        cs
    }

    /// `TrySchedule`: queues `f`; dropped silently once the serializer has
    /// started shutting down.
    pub async fn try_schedule<F, Fut>(&self, f: F)
    where
        F: FnOnce(Ctx) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let cb: Callback = Box::pin(f(self.ctx.clone()));
        let _ = self.callbacks.put(cb).await;
    }

    /// `ScheduleOr`: queues `f`, or runs `on_failure` if the serializer is
    /// shutting down.
    pub async fn schedule_or<C, CFut, F, Fut>(&self, f: C, on_failure: F)
    where
        C: FnOnce(Ctx) -> CFut,
        CFut: Future<Output = ()> + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = ()>,
    {
        let cb: Callback = Box::pin(f(self.ctx.clone()));
        if self.callbacks.put(cb).await.is_err() {
            on_failure().await;
        }
    }

    /// `Done()`: fired once `run` has returned.
    pub fn done(&self) -> &Event {
        &self.done
    }

    async fn run(&self, ctx: Ctx) {
        while !ctx.has_fired() {
            let which = select(&[&*ctx, &self.callbacks]).await;
            if which == 1
                && let Some(cb) = self.callbacks.try_get()
            {
                cb.await;
            }
        }
        // Cancelled: refuse new callbacks but run every one already queued;
        // they see the cancelled context.
        self.callbacks.close().await;
        while let Some(cb) = self.callbacks.get().await {
            cb.await;
        }
        self.done.fire().await;
    }
}
