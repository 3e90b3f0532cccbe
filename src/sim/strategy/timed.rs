//! The realistic model: interleavings emerge from timing.
//!
//! `gomaxprocs` virtual processors run the runnable tasks. Every step (the
//! code between two preemption points) costs CPU time drawn from `step_cost`.
//! A woken or new task becomes ready after `wake_latency` (the runtime's
//! handoff). After any step a task may be descheduled for a heavy-tailed
//! `pause` with probability `pause_prob` (OS preemption, GC assist, async
//! preemption). At each point the step that can start earliest runs; a timer
//! fires when its deadline comes before that. This is list scheduling of
//! steps on P processors, so the order of events follows their virtual times.
//!
//! With `steal` set, wake-ups follow the Go scheduler's `runnext` rule: a
//! goroutine made ready by a running goroutine (a channel send, an unlock, a
//! `go` statement) waits in the waker's processor. It runs `handoff` after
//! the waker blocks, unless an idle processor steals it first, `steal` after
//! the wake (a spinning thread is woken and, finding the victim running,
//! waits before it takes its `runnext`). A second wake by the same waker
//! pushes the first goroutine to the ordinary run queue (`wake_latency`).
//! An idle processor steals with probability `steal_prob`; with one
//! processor nothing can steal. Unstolen, the goroutine runs at the latest
//! after Go's 10 ms time slice. Without `steal`, every wake costs
//! `wake_latency`, as before.

use rand::Rng as _;
use rand_chacha::ChaCha8Rng;

use super::{Choice, Decision, Point, Strategy};
use crate::sim::dist::{Dist, Sampler};
use crate::sim::rng;
use crate::sim::task::TaskId;

/// Parameters of the timed strategy (the scenario's `[runtime]` table).
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeModel {
    pub gomaxprocs: u32,
    pub step_cost: Dist,
    pub wake_latency: Dist,
    pub pause_prob: f64,
    pub pause: Dist,
    /// The `runnext` model (see the module comment): the latency from the
    /// waker blocking to the woken goroutine running on its processor.
    pub handoff: Option<Dist>,
    /// The `runnext` model: the latency until an idle processor steals a
    /// goroutine woken by one that keeps running. `None` turns the model off.
    pub steal: Option<Dist>,
    /// The `runnext` model: the probability that an idle processor steals
    /// such a goroutine at all; otherwise it waits for the waker to block.
    pub steal_prob: f64,
}

/// Go's scheduling time slice (`forcePreemptNS` in runtime/proc.go): a
/// goroutine parked behind a running one on a single processor waits at most
/// this long.
const TIME_SLICE: u64 = 10_000_000;

impl Default for RuntimeModel {
    fn default() -> Self {
        RuntimeModel {
            gomaxprocs: 2,
            step_cost: Dist::LogNormal {
                median: 150,
                sigma: 0.6,
            },
            wake_latency: Dist::LogNormal {
                median: 1_000,
                sigma: 0.5,
            },
            pause_prob: 0.001,
            pause: Dist::Pareto {
                min: 20_000,
                alpha: 1.2,
                cap: 20_000_000,
            },
            handoff: None,
            steal: None,
            steal_prob: 1.0,
        }
    }
}

/// The `runnext` bookkeeping of one run.
struct RunNext {
    handoff: Sampler,
    steal: Sampler,
    /// The task whose step is running now, if a task step (not a timer fire).
    running: Option<TaskId>,
    /// The end of the running step.
    running_end: u64,
    /// Per task: the goroutine parked in its processor's `runnext`.
    slot: Vec<Option<TaskId>>,
    /// Per task parked in a `runnext`: when it could run apart from the wake
    /// (the end of a pause it was serving).
    base: Vec<u64>,
    /// Per task parked in a `runnext`: whose.
    parked_in: Vec<Option<TaskId>>,
}

/// The entry of task `t` in a per-task table, grown with defaults as tasks
/// appear.
fn at<T: Copy + Default>(v: &mut Vec<T>, t: TaskId) -> &mut T {
    let i = t.index();
    if i >= v.len() {
        v.resize(i + 1, T::default());
    }
    &mut v[i]
}

pub struct Timed {
    model: RuntimeModel,
    /// Table-driven samplers of `model.step_cost` and `model.wake_latency`,
    /// drawn at every decision and every wake-up.
    step_cost: Sampler,
    wake_latency: Sampler,
    rng: ChaCha8Rng,
    /// Earliest time each task can run its next step.
    ready_at: Vec<u64>,
    /// Time each processor becomes free, in ascending order from `head`
    /// round the ring. Processors are interchangeable: only the multiset of
    /// these times matters, so the one free first is always the head. A
    /// step usually ends after every other processor is free: the head then
    /// moves round the ring without moving any time.
    procs: Vec<u64>,
    /// Index in `procs` of the least free time.
    head: usize,
    runnext: Option<RunNext>,
    /// `model.pause_prob > 0`: each step draws whether it pauses.
    pause_draw: bool,
    /// A step pauses when the top 53 bits of its draw are below this: the
    /// same test as `rng::unit(..) < model.pause_prob`, in integers.
    pause_below: u64,
}

impl Timed {
    pub fn new(model: RuntimeModel) -> Self {
        let p = model.gomaxprocs.max(1) as usize;
        Timed {
            step_cost: Sampler::new(&model.step_cost),
            wake_latency: Sampler::new(&model.wake_latency),
            runnext: model.steal.as_ref().map(|steal| RunNext {
                handoff: Sampler::new(model.handoff.as_ref().unwrap_or(&model.wake_latency)),
                steal: Sampler::new(steal),
                running: None,
                running_end: 0,
                slot: Vec::new(),
                base: Vec::new(),
                parked_in: Vec::new(),
            }),
            pause_draw: model.pause_prob > 0.0,
            pause_below: unit_threshold(model.pause_prob),
            model,
            rng: rng::rng(0, rng::STREAM_TIMING),
            ready_at: Vec::new(),
            procs: vec![0; p],
            head: 0,
        }
    }
}

/// The least integer `k` with `k as f64 * 2^-53 >= p` (capped at 2^63):
/// for `k < 2^53`, `k < unit_threshold(p)` exactly when `k * 2^-53 < p`
/// (scaling by a power of two is exact, and an integer is below a real
/// exactly when it is below its ceiling).
fn unit_threshold(p: f64) -> u64 {
    if p.is_nan() || p <= 0.0 {
        return 0;
    }
    (p * (1u64 << 53) as f64).ceil().min((1u64 << 63) as f64) as u64
}

impl Timed {
    /// The processor free first runs a step until `end` (not before its
    /// free time): the head leaves the ring, and `end` goes in at the place
    /// that keeps the times sorted, found from the tail.
    #[inline(always)]
    fn occupy_first_proc(&mut self, end: u64) {
        let procs = &mut self.procs[..];
        let n = procs.len();
        // The head's slot is the ring's last once the head moves on.
        let mut slot = self.head;
        let head = if slot + 1 == n { 0 } else { slot + 1 };
        self.head = head;
        while slot != head {
            let prev = if slot == 0 { n - 1 } else { slot - 1 };
            let t = procs[prev];
            if t <= end {
                break;
            }
            procs[slot] = t;
            slot = prev;
        }
        procs[slot] = end;
    }

    /// The free time of the processor free first.
    #[inline(always)]
    fn first_proc_free(&self) -> u64 {
        self.procs[self.head]
    }

    /// [`Strategy::next_task`] at a point given by its parts (see
    /// [`Point`]). In line in the kernel's decision: 14 fewer instructions
    /// per `timed` decision for 3 more per `random` one, whose path it
    /// shares (README, Performance).
    #[inline(always)]
    pub(crate) fn decide(
        &mut self,
        runnable: &[TaskId],
        current: Option<TaskId>,
        next_timer: Option<u64>,
        now: u64,
    ) -> Decision {
        // The processor free first: the head of the sorted free times.
        let proc_free = self.first_proc_free();
        // Every step starts at the earliest when a processor is free and not
        // in the past; the one that can start first runs. Ties go to the
        // running task (no switch), then to the lowest id.
        let floor = proc_free.max(now);
        // The first task (lowest id) whose start is least: one that is
        // ready by `floor` starts at `floor`, which nothing beats, so the
        // scan stops at the first such task.
        let ready_at = &self.ready_at;
        let mut best = (u64::MAX, runnable[0]);
        for &t in runnable {
            let ready = ready_at[t.index()];
            if ready <= floor {
                best = (floor, t);
                break;
            }
            if ready < best.0 {
                best = (ready, t);
            }
        }
        if let Some(c) = current
            && ready_at[c.index()].max(floor) == best.0
        {
            best.1 = c;
        }
        let (start, task) = best;
        if let Some(deadline) = next_timer
            && deadline <= start
        {
            if let Some(rn) = &mut self.runnext {
                rn.running = None;
            }
            return Decision {
                choice: Choice::Timer,
                at: deadline.max(now),
            };
        }
        let cost = self.step_cost.sample(&mut self.rng).max(1);
        let end = start + cost;
        self.occupy_first_proc(end);
        let mut ready = end;
        if self.pause_draw && (self.rng.next_u64() >> 11) < self.pause_below {
            ready += self.model.pause.sample(&mut self.rng);
        }
        // Every runnable task was made ready by `on_wake` (a spawn or a
        // wake-up), which grew the table to cover it.
        self.ready_at[task.index()] = ready;
        if let Some(rn) = &mut self.runnext {
            rn.running = Some(task);
            rn.running_end = end;
            // Stolen (or handed off): no longer parked.
            if let Some(w) = at(&mut rn.parked_in, task).take()
                && rn.slot[w.index()] == Some(task)
            {
                rn.slot[w.index()] = None;
            }
        }
        Decision {
            choice: Choice::Task(task),
            at: start,
        }
    }
}

impl Strategy for Timed {
    fn new_execution(&mut self, seed: u64) {
        self.rng = rng::rng(seed, rng::STREAM_TIMING);
        self.ready_at.clear();
        self.procs.iter_mut().for_each(|p| *p = 0);
        self.head = 0;
        if let Some(rn) = &mut self.runnext {
            rn.running = None;
            rn.slot.clear();
            rn.base.clear();
            rn.parked_in.clear();
        }
    }

    fn next_task(&mut self, point: &Point<'_>) -> Decision {
        self.decide(point.runnable, point.current, point.next_timer, point.now)
    }

    fn choose(&mut self, n: usize) -> usize {
        rng::below(&mut self.rng, n)
    }

    fn on_wake(&mut self, task: TaskId, now: u64) {
        let single = self.model.gomaxprocs <= 1;
        if let Some(rn) = &mut self.runnext
            && let Some(waker) = rn.running
            && waker != task
        {
            // Parked in the waker's runnext: stolen after `steal` (never on
            // one processor before the time slice ends), or run after the
            // waker blocks.
            let stolen = !single
                && (self.model.steal_prob >= 1.0
                    || rng::unit(&mut self.rng) < self.model.steal_prob);
            let wait = if stolen {
                rn.steal.sample(&mut self.rng)
            } else {
                TIME_SLICE
            };
            let ready = at(&mut self.ready_at, task);
            let base = *ready;
            *ready = base.max(now + wait);
            *at(&mut rn.base, task) = base;
            *at(&mut rn.parked_in, task) = Some(waker);
            if let Some(old) = at(&mut rn.slot, waker).replace(task) {
                rn.parked_in[old.index()] = None;
                // The previous occupant is kicked to the run queue.
                let lat = self.wake_latency.sample(&mut self.rng);
                let r = &mut self.ready_at[old.index()];
                *r = (*r).min(now.max(rn.base[old.index()]) + lat);
            }
            return;
        }
        let lat = self.wake_latency.sample(&mut self.rng);
        let r = at(&mut self.ready_at, task);
        *r = (*r).max(now + lat);
    }

    fn on_block(&mut self, task: TaskId, _now: u64) {
        let Some(rn) = &mut self.runnext else {
            return;
        };
        let Some(parked) = at(&mut rn.slot, task).take() else {
            return;
        };
        // The waker's processor turns to its runnext.
        let end = if rn.running == Some(task) {
            rn.running_end
        } else {
            self.ready_at.get(task.index()).copied().unwrap_or(0)
        };
        rn.parked_in[parked.index()] = None;
        let lat = rn.handoff.sample(&mut self.rng);
        let base = rn.base[parked.index()];
        let r = &mut self.ready_at[parked.index()];
        *r = (*r).min(base.max(end + lat));
    }

    fn name(&self) -> String {
        "timed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_processors_keep_the_multiset_of_free_times() {
        // The earlier form: scan for the first least free time, replace it.
        let mut r = rng::rng(9, 0);
        for p in 1..=6 {
            let mut t = Timed::new(RuntimeModel {
                gomaxprocs: p,
                ..RuntimeModel::default()
            });
            let mut naive = vec![0u64; p as usize];
            for _ in 0..2_000 {
                let (i, &least) = naive
                    .iter()
                    .enumerate()
                    .min_by_key(|&(_, v)| v)
                    .expect("one processor at least");
                assert_eq!(t.first_proc_free(), least);
                // Ends often tie with other processors' free times.
                let end = least + rng::below(&mut r, 4) as u64 * 100;
                naive[i] = end;
                t.occupy_first_proc(end);
                let mut sorted = naive.clone();
                sorted.sort_unstable();
                let n = t.procs.len();
                let ring: Vec<u64> = (0..n).map(|k| t.procs[(t.head + k) % n]).collect();
                assert_eq!(ring, sorted);
            }
        }
    }

    #[test]
    fn the_integer_pause_test_is_the_float_one() {
        let mut r = rng::rng(4, 0);
        let probs = [
            0.0,
            -0.5,
            f64::NAN,
            5e-324,
            1e-17,
            0.0005,
            0.001,
            1.0 / 3.0,
            0.5,
            0.999_999,
            1.0,
            2.0,
            f64::INFINITY,
        ];
        for p in probs {
            let below = unit_threshold(p);
            // Draws near the threshold and random ones.
            let near = below.min(1 << 53);
            let mut ks: Vec<u64> = (0..3)
                .flat_map(|d| [near.saturating_sub(d), near + d])
                .collect();
            ks.extend((0..2000).map(|_| r.next_u64() >> 11));
            for k in ks.into_iter().filter(|&k| k < 1 << 53) {
                let unit = k as f64 * (1.0 / (1u64 << 53) as f64);
                assert_eq!(k < below, unit < p, "p {p}, k {k}");
            }
        }
    }
}
