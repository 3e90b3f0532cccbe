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

/// A scheduled callback; it receives the serializer's context.
pub type Callback = Box<dyn FnOnce(Ctx) -> BoxFut<'static, ()>>;

/// Boxes an async closure as a [`Callback`].
pub fn callback<F, Fut>(f: F) -> Callback
where
    F: FnOnce(Ctx) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    Box::new(move |ctx| Box::pin(f(ctx)))
}

/// `grpcsync.CallbackSerializer`.
pub struct CallbackSerializer {
    done: Event,
    callbacks: Unbounded<Callback>,
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
        let cs = Rc::new(CallbackSerializer {
            done: Event::new(named("done")),
            callbacks: Unbounded::new(named("callbacks")),
        });
        let runner = cs.clone();
        sim::go(named("run"), async move { runner.run(ctx).await }).await;
        cs
    }

    /// `TrySchedule`: queues `f`; dropped silently once the serializer has
    /// started shutting down.
    pub async fn try_schedule(&self, f: Callback) {
        let _ = self.callbacks.put(f).await;
    }

    /// `ScheduleOr`: queues `f`, or runs `on_failure` if the serializer is
    /// shutting down.
    pub async fn schedule_or<F, Fut>(&self, f: Callback, on_failure: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ()>,
    {
        if self.callbacks.put(f).await.is_err() {
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
                cb(ctx.clone()).await;
            }
        }
        // Cancelled: refuse new callbacks but run every one already queued;
        // they see the cancelled context.
        self.callbacks.close().await;
        while let Some(cb) = self.callbacks.get().await {
            cb(ctx.clone()).await;
        }
        self.done.fire().await;
    }
}
