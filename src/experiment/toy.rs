//! PLACEHOLDER MODEL — not gRPC. A toy with the shape of the #7783 race, so
//! that experiments, statistics, output and the command line can be built and
//! tested before the scenario driver for the real port (`crate::grpc`) exists.
//! [`super::model_for`] returns it until that driver replaces it.
//!
//! Three tasks: a child's `run()` loop that lives until its close event fires
//! (the goroutine a leak check finds), a priority worker that demotes the child
//! into a timeout cache, and the client that closes the group. If the demotion
//! lands after the close has cleared the cache, nothing ever closes the child:
//! a leak, unless the cache timeout fires within the grace period. Variants
//! with a terminal close check the closed flag under the lock and close the
//! child at once; `pre-4308` never closes cached children at close.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::grpc::Variant;
use crate::scenario::Scenario;
use crate::sim::{Event, Mutex, Sim, Timer, after_func, go, spawn, yield_now};

use super::{Model, RunOptions, RunResult};

/// Steps of syncPriority work before the worker demotes the child.
const DEMOTE_STEPS: u32 = 1;
/// Steps of client work (its RPCs) before it closes the channel.
const CLIENT_STEPS: u32 = 9;

pub struct ToyModel {
    cache_timeout: u64,
}

impl ToyModel {
    pub fn new(scenario: &Scenario) -> Self {
        ToyModel {
            cache_timeout: scenario.balancer.cache_timeout,
        }
    }
}

struct Group {
    outgoing_mu: Mutex,
    closed: Cell<bool>,
    /// The cached child's close event and its eviction timer.
    cache: RefCell<Option<(Rc<Event>, Timer)>>,
}

impl Model for ToyModel {
    fn run_one(&self, variant: Variant, sim: &mut Sim, seed: u64, opts: &RunOptions) -> RunResult {
        let cache_timeout = self.cache_timeout;
        let terminal_close = variant.terminal_close() || variant == Variant::PriorityLock;
        let report = sim.run(&opts.config(seed), async move {
            let group = Rc::new(Group {
                outgoing_mu: Mutex::new("balancergroup.outgoing_mu"),
                closed: Cell::new(false),
                cache: RefCell::new(None),
            });
            let child_closed = Rc::new(Event::new("child.closed"));
            let ev = child_closed.clone();
            spawn("outlier_detection.run", async move { ev.wait().await });

            let (g, ev) = (group.clone(), child_closed.clone());
            go("priority.run", async move {
                for _ in 0..DEMOTE_STEPS {
                    yield_now().await;
                }
                let guard = g.outgoing_mu.lock().await;
                if g.closed.get() && terminal_close {
                    ev.fire().await;
                } else {
                    let evict = ev.clone();
                    let timer = after_func(cache_timeout, "cache.evict", async move {
                        evict.fire().await;
                    })
                    .await;
                    *g.cache.borrow_mut() = Some((ev, timer));
                }
                guard.unlock().await;
            })
            .await;

            for _ in 0..CLIENT_STEPS {
                yield_now().await;
            }
            let guard = group.outgoing_mu.lock().await;
            group.closed.set(true);
            let cached = group.cache.borrow_mut().take();
            if let Some((ev, timer)) = cached
                && variant != Variant::Pre4308
            {
                timer.stop().await;
                ev.fire().await;
            }
            guard.unlock().await;
        });
        RunResult::from_report(&report)
    }

    fn expected_steps(&self) -> u64 {
        20
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Outcome;
    use crate::sim::strategy::RandomStrategy;

    fn toy(cache_timeout: u64) -> ToyModel {
        ToyModel { cache_timeout }
    }

    fn leaks(model: &ToyModel, variant: Variant, runs: u64) -> u64 {
        let mut sim = Sim::new(Box::new(RandomStrategy::new()));
        let opts = RunOptions {
            grace: 10 * crate::sim::SEC,
            max_steps: 10_000,
            max_time: 3_600 * crate::sim::SEC,
        };
        (0..runs)
            .filter(|&s| model.run_one(variant, &mut sim, s, &opts).outcome == Outcome::Leak)
            .count() as u64
    }

    #[test]
    fn buggy_leaks_sometimes_fixed_never() {
        let m = toy(15 * 60 * crate::sim::SEC);
        let buggy = leaks(&m, Variant::Pre8095, 2_000);
        assert!(buggy > 10 && buggy < 400, "pre-8095 leaked {buggy} of 2000");
        assert_eq!(leaks(&m, Variant::Pr8095, 2_000), 0);
    }

    #[test]
    fn short_cache_timeout_evicts_before_the_leak_check() {
        let m = toy(crate::sim::SEC);
        assert_eq!(leaks(&m, Variant::Pre8095, 500), 0);
    }
}
