//! Many runs: the seam to the model, seed streams, threads, shards,
//! aggregation and statistics.
//!
//! Run `i` uses seed `derive_seed(master, i)` and executes every requested
//! variant with that seed in the same worker, so outcomes are paired
//! (before/after on the same seed) and the discordant pairs for McNemar's
//! test are counted on the fly. Aggregates are order-independent sums plus
//! the smallest-index failure, so the result does not depend on `--jobs`, and
//! shards (disjoint index ranges) merge exactly.
//!
//! A failed client expectation (the Go test's `t.Fatalf`) is not an outcome:
//! the run still ends `ok`, `leak` and so on. Runs with one are counted
//! beside the outcomes, per variant, with the smallest such index.

pub mod search;
pub mod stats;

use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::grpc::Variant;
use crate::scenario::Scenario;
use crate::scenario::driver::{GrpcModel, ModelCheck};
use crate::sim::rng::derive_seed;
use crate::sim::strategy::{Pct, RandomStrategy, RuntimeModel, StrategyKind, Timed};
use crate::sim::{Outcome, RunConfig, RunReport, Sim, Strategy};

/// What one run of the model produced, reduced to what an experiment keeps.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    pub outcome: Outcome,
    /// Names of the tasks alive at the end (leaked or deadlocked), goleak-style.
    pub leaked: Vec<String>,
    pub steps: u64,
    pub preemptions: u64,
    pub tasks: usize,
    /// The client expectations that failed (`expect`, `rpc_until`), in the
    /// order they failed; empty if every one held.
    pub client_errors: Vec<String>,
}

impl RunResult {
    pub fn from_report(report: &RunReport) -> Self {
        let leaked = if report.outcome == Outcome::Ok {
            Vec::new()
        } else {
            report.alive.iter().map(|t| t.name.clone()).collect()
        };
        let leaked = match &report.panic {
            Some(p) if report.outcome == Outcome::Panic => {
                vec![format!("panic in {}: {}", p.task, p.message)]
            }
            _ => leaked,
        };
        RunResult {
            outcome: report.outcome,
            leaked,
            steps: report.steps,
            preemptions: report.preemptions,
            tasks: report.tasks_spawned,
            client_errors: Vec::new(),
        }
    }

    /// One run of the gRPC model: the kernel's report with the model's
    /// checks, as `GrpcModel::run_one` reduces them, and the client
    /// expectations that failed.
    pub fn from_model_run(report: &RunReport, check: &ModelCheck) -> Self {
        let mut result = RunResult::from_report(report);
        if report.outcome == Outcome::Leak {
            result
                .leaked
                .extend(check.unclosed.iter().map(|c| format!("{c} never closed")));
        }
        result.client_errors = check.client_errors.clone();
        result
    }
}

/// Limits of one run, shared by all runs of an experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// The leak check's grace period after the client closed the channel.
    pub grace: u64,
    pub max_steps: u64,
    pub max_time: u64,
}

impl RunOptions {
    pub fn for_scenario(scenario: &Scenario) -> Self {
        let base = RunConfig::new(0);
        RunOptions {
            grace: scenario.client.leak_check_grace,
            max_steps: base.max_steps,
            max_time: base.max_time,
        }
    }

    /// The kernel's configuration for a bulk run with this seed (no trace,
    /// no recorded schedule).
    pub fn config(&self, seed: u64) -> RunConfig {
        RunConfig {
            grace: self.grace,
            max_steps: self.max_steps,
            max_time: self.max_time,
            ..RunConfig::new(seed)
        }
    }
}

/// The seam between experiments and a model: one run of one variant with one
/// seed on a simulator owned by the calling thread. `Sync` because workers
/// share the model; each worker owns its `Sim` (strategies are not `Send`).
pub trait Model: Sync {
    fn run_one(&self, variant: Variant, sim: &mut Sim, seed: u64, opts: &RunOptions) -> RunResult;

    /// Typical number of scheduling decisions in a run: PCT draws its change
    /// points from this range.
    fn expected_steps(&self) -> u64 {
        1_000
    }
}

/// The model `lbsim run` uses for a scenario: the gRPC port driven by the
/// scenario's client script, with the client expectations that failed kept
/// in each result.
pub fn model_for(scenario: &Scenario) -> Box<dyn Model> {
    Box::new(GrpcModel::new(scenario))
}

/// A strategy, as a value that can be sent to worker threads and built there.
#[derive(Clone, Debug, PartialEq)]
pub enum StrategySpec {
    Timed(RuntimeModel),
    Random,
    Pct { depth: u32, k_steps: u64 },
}

impl StrategySpec {
    pub fn new(kind: &StrategyKind, runtime: &RuntimeModel, k_steps: u64) -> Self {
        match kind {
            StrategyKind::Timed => StrategySpec::Timed(runtime.clone()),
            StrategyKind::Random => StrategySpec::Random,
            StrategyKind::Pct { depth } => StrategySpec::Pct {
                depth: *depth,
                k_steps,
            },
        }
    }

    pub fn build(&self) -> Box<dyn Strategy> {
        match self {
            StrategySpec::Timed(model) => Box::new(Timed::new(model.clone())),
            StrategySpec::Random => Box::new(RandomStrategy::new()),
            StrategySpec::Pct { depth, k_steps } => Box::new(Pct::new(*depth, *k_steps)),
        }
    }

    /// The `--strategy` value that selects it: `timed`, `random`, `pct:3`.
    pub fn label(&self) -> String {
        match self {
            StrategySpec::Timed(_) => "timed".into(),
            StrategySpec::Random => "random".into(),
            StrategySpec::Pct { depth, .. } => format!("pct:{depth}"),
        }
    }
}

/// Shard `index` of `count` (0-based): a contiguous slice of the run indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` with `0 <= I < N`.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let err = || format!("`{s}`: write the shard as I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(err)?;
        let index: u64 = i.trim().parse().map_err(|_| err())?;
        let count: u64 = n.trim().parse().map_err(|_| err())?;
        if count == 0 || index >= count {
            return Err(err());
        }
        Ok(Shard { index, count })
    }

    /// The run indices of this shard out of `runs`: the shards partition
    /// `0..runs` into contiguous ranges whose sizes differ by at most one.
    pub fn range(&self, runs: u64) -> Range<u64> {
        let at = |i: u64| (u128::from(runs) * u128::from(i) / u128::from(self.count)) as u64;
        at(self.index)..at(self.index + 1)
    }
}

/// One experiment: every run index of the shard, every variant, one strategy.
#[derive(Clone, Debug)]
pub struct Experiment {
    pub variants: Vec<Variant>,
    pub strategy: StrategySpec,
    /// Total runs per variant over all shards.
    pub runs: u64,
    pub master_seed: u64,
    pub shard: Shard,
    pub jobs: usize,
    pub opts: RunOptions,
    /// How many failing runs to keep (the smallest indices).
    pub max_failures: usize,
}

/// Order-independent counts for one variant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub runs: u64,
    pub ok: u64,
    pub leaks: u64,
    pub deadlocks: u64,
    pub panics: u64,
    pub limits: u64,
    pub steps: u64,
    pub preemptions: u64,
    /// Runs with at least one failed client expectation, whatever their
    /// outcome (not an outcome: `runs = ok + leaks + ...` without them).
    pub client_failures: u64,
}

impl Counts {
    fn add(&mut self, r: &RunResult) {
        self.runs += 1;
        if !r.client_errors.is_empty() {
            self.client_failures += 1;
        }
        match r.outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Leak => self.leaks += 1,
            Outcome::Deadlock => self.deadlocks += 1,
            Outcome::Panic => self.panics += 1,
            Outcome::Limit => self.limits += 1,
        }
        self.steps += r.steps;
        self.preemptions += r.preemptions;
    }

    fn merge(&mut self, o: &Counts) {
        self.runs += o.runs;
        self.ok += o.ok;
        self.leaks += o.leaks;
        self.deadlocks += o.deadlocks;
        self.panics += o.panics;
        self.limits += o.limits;
        self.steps += o.steps;
        self.preemptions += o.preemptions;
        self.client_failures += o.client_failures;
    }

    pub fn failures(&self) -> u64 {
        self.runs - self.ok
    }
}

/// The failing run with the smallest index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirstFailure {
    pub index: u64,
    pub seed: u64,
    pub outcome: Outcome,
}

/// The run with the smallest index whose client had an expectation fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirstClientFailure {
    pub index: u64,
    pub seed: u64,
}

/// Leak outcomes of a variant paired with the baseline's on the same seeds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Discordant {
    /// Runs where the baseline leaked and this variant did not.
    pub base_only: u64,
    /// Runs where this variant leaked and the baseline did not.
    pub variant_only: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VariantSummary {
    pub variant: Variant,
    pub counts: Counts,
    pub first_failure: Option<FirstFailure>,
    pub first_client_failure: Option<FirstClientFailure>,
    /// The baseline it is paired with and the discordant pairs; `None` for
    /// the baseline itself.
    pub paired: Option<(Variant, Discordant)>,
}

/// One failing run, kept for `failures.csv`: failing by its outcome, or
/// (`client`) by a failed client expectation. A run that fails both ways
/// is kept twice, the outcome first.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub index: u64,
    pub seed: u64,
    pub variant: Variant,
    pub result: RunResult,
    /// Kept for its failed client expectations (`result.client_errors`),
    /// not for its outcome.
    pub client: bool,
}

#[derive(Clone, Debug)]
pub struct ExperimentResult {
    pub summaries: Vec<VariantSummary>,
    /// Failing runs with the smallest indices, at most `max_failures`, by
    /// (index, variant order).
    pub failures: Vec<Failure>,
    /// Failing runs not kept because of the cap.
    pub failures_dropped: u64,
    /// The run indices done: the shard's index range, or for a partial
    /// result the part of it from its start that was done.
    pub range: Range<u64>,
    /// Stopped before every run of the range was done.
    pub partial: bool,
    /// Wall time (reporting only).
    pub elapsed: Duration,
}

/// The variant others are compared with: `pre-8095` if requested, else the first.
pub fn baseline(variants: &[Variant]) -> Option<Variant> {
    if variants.contains(&Variant::Pre8095) {
        Some(Variant::Pre8095)
    } else {
        variants.first().copied()
    }
}

/// Runs handed to a worker at a time: large enough that the shared counter is
/// cheap, small enough that threads finish together.
const CHUNK: u64 = 64;

struct WorkerState {
    counts: Vec<Counts>,
    first: Vec<Option<FirstFailure>>,
    first_client: Vec<Option<FirstClientFailure>>,
    discordant: Vec<Discordant>,
    failures: Vec<Failure>,
    failures_dropped: u64,
}

impl WorkerState {
    fn new(n: usize) -> Self {
        WorkerState {
            counts: vec![Counts::default(); n],
            first: vec![None; n],
            first_client: vec![None; n],
            discordant: vec![Discordant::default(); n],
            failures: Vec::new(),
            failures_dropped: 0,
        }
    }
}

/// Runs the experiment on `exp.jobs` threads. `stop` is polled before each
/// chunk of run indices is taken (Ctrl-C), and every chunk taken is
/// finished, so a stopped experiment has done a prefix of its range (its
/// `range`); `progress` is called from the calling thread with the number
/// of run indices done, a few times a second and once at the end.
pub fn run(
    model: &dyn Model,
    exp: &Experiment,
    stop: &AtomicBool,
    progress: &dyn Fn(u64),
) -> ExperimentResult {
    let started = Instant::now();
    let range = exp.shard.range(exp.runs);
    let nv = exp.variants.len();
    let base = baseline(&exp.variants).and_then(|b| exp.variants.iter().position(|v| *v == b));
    let next_chunk = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let states: Mutex<Vec<WorkerState>> = Mutex::new(Vec::new());
    let jobs = exp.jobs.max(1);

    let worker = || {
        let mut st = WorkerState::new(nv);
        let mut sim = Sim::new(exp.strategy.build());
        let mut outcomes = vec![Outcome::Ok; nv];
        // Chunks are taken in order and each is finished: the indices done
        // are always a prefix of the range.
        while !stop.load(Ordering::Relaxed) {
            let c = next_chunk.fetch_add(1, Ordering::Relaxed);
            let start = range.start.saturating_add(c.saturating_mul(CHUNK));
            if start >= range.end {
                break;
            }
            for index in start..(start + CHUNK).min(range.end) {
                let seed = derive_seed(exp.master_seed, index);
                for (vi, &variant) in exp.variants.iter().enumerate() {
                    let result =
                        run_guarded(model, variant, &mut sim, seed, exp, &mut outcomes[vi]);
                    st.counts[vi].add(&result);
                    // Indices rise within a worker: the first seen is its smallest.
                    let failed = result.outcome.is_failure();
                    if failed && st.first[vi].is_none() {
                        st.first[vi] = Some(FirstFailure {
                            index,
                            seed,
                            outcome: result.outcome,
                        });
                    }
                    let client_failed = !result.client_errors.is_empty();
                    if client_failed && st.first_client[vi].is_none() {
                        st.first_client[vi] = Some(FirstClientFailure { index, seed });
                    }
                    let kept = [failed, client_failed];
                    for client in [false, true].into_iter().filter(|&c| kept[usize::from(c)]) {
                        if st.failures.len() < exp.max_failures {
                            st.failures.push(Failure {
                                index,
                                seed,
                                variant,
                                result: result.clone(),
                                client,
                            });
                        } else {
                            st.failures_dropped += 1;
                        }
                    }
                }
                if let Some(b) = base {
                    let base_leak = outcomes[b] == Outcome::Leak;
                    for (vi, o) in outcomes.iter().enumerate() {
                        let leak = *o == Outcome::Leak;
                        if base_leak && !leak {
                            st.discordant[vi].base_only += 1;
                        } else if leak && !base_leak {
                            st.discordant[vi].variant_only += 1;
                        }
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }
        states
            .lock()
            .expect("no worker panics while holding the lock")
            .push(st);
    };

    std::thread::scope(|s| {
        let handles: Vec<_> = (0..jobs).map(|_| s.spawn(worker)).collect();
        while !handles.iter().all(|h| h.is_finished()) {
            progress(done.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(20));
        }
        for h in handles {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(e);
            }
        }
    });
    let completed = done.load(Ordering::Relaxed);
    progress(completed);

    // Combine: sums, minimum-index first failures, smallest-index failures.
    let states = states.into_inner().expect("workers finished");
    let mut counts = vec![Counts::default(); nv];
    let mut first: Vec<Option<FirstFailure>> = vec![None; nv];
    let mut first_client: Vec<Option<FirstClientFailure>> = vec![None; nv];
    let mut discordant = vec![Discordant::default(); nv];
    let mut failures = Vec::new();
    let mut failures_dropped = 0;
    for st in states {
        for vi in 0..nv {
            counts[vi].merge(&st.counts[vi]);
            first[vi] = match (first[vi], st.first[vi]) {
                (Some(a), Some(b)) => Some(if b.index < a.index { b } else { a }),
                (a, b) => a.or(b),
            };
            first_client[vi] = match (first_client[vi], st.first_client[vi]) {
                (Some(a), Some(b)) => Some(if b.index < a.index { b } else { a }),
                (a, b) => a.or(b),
            };
            discordant[vi].base_only += st.discordant[vi].base_only;
            discordant[vi].variant_only += st.discordant[vi].variant_only;
        }
        failures.extend(st.failures);
        failures_dropped += st.failures_dropped;
    }
    let order = |v: Variant| exp.variants.iter().position(|x| *x == v);
    failures.sort_by_key(|f| (f.index, order(f.variant), f.client));
    if failures.len() > exp.max_failures {
        failures_dropped += (failures.len() - exp.max_failures) as u64;
        failures.truncate(exp.max_failures);
    }
    let summaries = exp
        .variants
        .iter()
        .enumerate()
        .map(|(vi, &variant)| VariantSummary {
            variant,
            counts: counts[vi].clone(),
            first_failure: first[vi],
            first_client_failure: first_client[vi],
            paired: match base {
                Some(b) if b != vi => Some((exp.variants[b], discordant[vi])),
                _ => None,
            },
        })
        .collect();
    ExperimentResult {
        summaries,
        failures,
        failures_dropped,
        partial: completed < range.end - range.start,
        range: range.start..range.start + completed,
        elapsed: started.elapsed(),
    }
}

/// One run; a panic that escapes the kernel (in model set-up code) is counted
/// as a panic outcome instead of aborting the experiment.
fn run_guarded(
    model: &dyn Model,
    variant: Variant,
    sim: &mut Sim,
    seed: u64,
    exp: &Experiment,
    outcome: &mut Outcome,
) -> RunResult {
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        model.run_one(variant, sim, seed, &exp.opts)
    }));
    let result = result.unwrap_or_else(|payload| {
        // The simulator may be unusable after an unwind through it.
        *sim = Sim::new(exp.strategy.build());
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".into());
        RunResult {
            outcome: Outcome::Panic,
            leaked: vec![format!("panic outside the simulation: {message}")],
            steps: 0,
            preemptions: 0,
            tasks: 0,
            client_errors: Vec::new(),
        }
    });
    *outcome = result.outcome;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ranges_partition_the_runs() {
        for runs in [0u64, 1, 7, 10, 1_000_003] {
            for count in 1..=7 {
                let mut next = 0;
                for index in 0..count {
                    let r = Shard { index, count }.range(runs);
                    assert_eq!(r.start, next, "runs {runs} shard {index}/{count}");
                    assert!(r.end - r.start <= runs / count + 1);
                    next = r.end;
                }
                assert_eq!(next, runs);
            }
        }
        assert_eq!(Shard::WHOLE.range(10), 0..10);
        assert_eq!(Shard { index: 1, count: 3 }.range(10), 3..6);
    }

    #[test]
    fn shard_parse() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        for bad in ["4/4", "1/0", "x/2", "3", "-1/2", ""] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn seeds_are_shared_across_variants_and_shards() {
        // Run i's seed depends only on the master seed and i.
        assert_eq!(derive_seed(7, 123), derive_seed(7, 123));
        assert_ne!(derive_seed(7, 123), derive_seed(7, 124));
        assert_ne!(derive_seed(7, 123), derive_seed(8, 123));
        // Known value, so that a change to the derivation (which would break
        // every recorded replay command) is caught.
        assert_eq!(derive_seed(0, 0), 0xe220_a839_7b1d_cdaf);
    }

    /// Leaks on seeds divisible by 3 in pre-8095 and by 5 in pr-8095.
    struct ByResidue;

    impl Model for ByResidue {
        fn run_one(&self, variant: Variant, _: &mut Sim, seed: u64, _: &RunOptions) -> RunResult {
            let m = if variant == Variant::Pre8095 { 3 } else { 5 };
            RunResult {
                outcome: if seed.is_multiple_of(m) {
                    Outcome::Leak
                } else {
                    Outcome::Ok
                },
                leaked: Vec::new(),
                steps: seed % 7,
                preemptions: 0,
                tasks: 1,
                client_errors: Vec::new(),
            }
        }
    }

    fn experiment(jobs: usize, shard: Shard) -> Experiment {
        Experiment {
            variants: vec![Variant::Pre8095, Variant::Pr8095],
            strategy: StrategySpec::Random,
            runs: 1_000,
            master_seed: 9,
            shard,
            jobs,
            opts: RunOptions {
                grace: 0,
                max_steps: 1,
                max_time: 1,
            },
            max_failures: 5,
        }
    }

    #[test]
    fn results_do_not_depend_on_jobs_and_keep_the_smallest_failures() {
        let stop = AtomicBool::new(false);
        let one = run(&ByResidue, &experiment(1, Shard::WHOLE), &stop, &|_| {});
        let three = run(&ByResidue, &experiment(3, Shard::WHOLE), &stop, &|_| {});
        assert_eq!(one.summaries, three.summaries);
        assert_eq!(one.failures, three.failures);
        assert_eq!(one.failures_dropped, three.failures_dropped);
        assert!(!one.partial);

        let seeds: Vec<u64> = (0..1_000).map(|i| derive_seed(9, i)).collect();
        let leaks3 = seeds.iter().filter(|s| *s % 3 == 0).count() as u64;
        let both = seeds.iter().filter(|s| *s % 15 == 0).count() as u64;
        let s = &one.summaries;
        assert_eq!(s[0].counts.leaks, leaks3);
        assert_eq!(
            s[0].first_failure.unwrap().index,
            seeds.iter().position(|s| s % 3 == 0).unwrap() as u64
        );
        let (base, d) = s[1].paired.unwrap();
        assert_eq!(base, Variant::Pre8095);
        assert_eq!(d.base_only, leaks3 - both);
        assert_eq!(d.variant_only, s[1].counts.leaks - both);
        // The kept failures are the five with the smallest indices.
        let mut expected: Vec<(u64, Variant)> = Vec::new();
        for (i, seed) in seeds.iter().enumerate() {
            for (v, m) in [(Variant::Pre8095, 3), (Variant::Pr8095, 5)] {
                if seed % m == 0 {
                    expected.push((i as u64, v));
                }
            }
        }
        let kept: Vec<(u64, Variant)> = one.failures.iter().map(|f| (f.index, f.variant)).collect();
        assert_eq!(kept, expected[..5]);
        assert_eq!(one.failures_dropped, expected.len() as u64 - 5);
    }

    #[test]
    fn shards_cover_the_same_runs() {
        let stop = AtomicBool::new(false);
        let whole = run(&ByResidue, &experiment(2, Shard::WHOLE), &stop, &|_| {});
        let mut leaks = 0;
        let mut runs = 0;
        for index in 0..4 {
            let part = run(
                &ByResidue,
                &experiment(2, Shard { index, count: 4 }),
                &stop,
                &|_| {},
            );
            leaks += part.summaries[0].counts.leaks;
            runs += part.summaries[0].counts.runs;
        }
        assert_eq!(
            (runs, leaks),
            (
                whole.summaries[0].counts.runs,
                whole.summaries[0].counts.leaks
            )
        );
    }

    #[test]
    fn a_stop_request_gives_a_partial_result() {
        let stop = AtomicBool::new(true);
        let r = run(&ByResidue, &experiment(2, Shard::WHOLE), &stop, &|_| {});
        assert!(r.partial);
        assert_eq!(r.summaries[0].counts.runs, 0);
    }

    /// Leaks on seeds divisible by 3 in pre-8095; its client's expectation
    /// fails on seeds divisible by 4 in every variant, whatever the outcome.
    struct ClientByResidue;

    impl Model for ClientByResidue {
        fn run_one(&self, variant: Variant, _: &mut Sim, seed: u64, _: &RunOptions) -> RunResult {
            let leak = variant == Variant::Pre8095 && seed.is_multiple_of(3);
            RunResult {
                outcome: if leak { Outcome::Leak } else { Outcome::Ok },
                leaked: Vec::new(),
                steps: 1,
                preemptions: 0,
                tasks: 1,
                client_errors: if seed.is_multiple_of(4) {
                    vec![format!("rpc reached s1, want s0 (seed {seed})")]
                } else {
                    Vec::new()
                },
            }
        }
    }

    #[test]
    fn failed_client_expectations_are_counted_beside_the_outcomes() {
        let stop = AtomicBool::new(false);
        let mut exp = experiment(1, Shard::WHOLE);
        exp.max_failures = 10_000;
        let one = run(&ClientByResidue, &exp, &stop, &|_| {});
        exp.jobs = 3;
        let three = run(&ClientByResidue, &exp, &stop, &|_| {});
        assert_eq!(one.summaries, three.summaries);
        assert_eq!(one.failures, three.failures);

        let seeds: Vec<u64> = (0..1_000).map(|i| derive_seed(9, i)).collect();
        let by4 = seeds.iter().filter(|s| *s % 4 == 0).count() as u64;
        let first4 = seeds.iter().position(|s| s % 4 == 0).unwrap() as u64;
        for s in &one.summaries {
            assert_eq!(s.counts.client_failures, by4, "{:?}", s.variant);
            // Not an outcome: the outcomes still add up to the runs.
            let c = &s.counts;
            assert_eq!(c.ok + c.leaks + c.deadlocks + c.panics + c.limits, c.runs);
            assert_eq!(
                s.first_client_failure,
                Some(FirstClientFailure {
                    index: first4,
                    seed: seeds[first4 as usize]
                })
            );
        }
        assert_eq!(one.summaries[1].counts.ok, 1_000);
        assert_eq!(one.summaries[1].first_failure, None);

        // failures.csv: a row per run failing by its outcome and one per
        // run with a failed expectation; a run failing both ways has both,
        // the outcome first.
        let mut expected: Vec<(u64, Variant, bool)> = Vec::new();
        for (i, seed) in seeds.iter().enumerate() {
            for v in [Variant::Pre8095, Variant::Pr8095] {
                if v == Variant::Pre8095 && seed % 3 == 0 {
                    expected.push((i as u64, v, false));
                }
                if seed % 4 == 0 {
                    expected.push((i as u64, v, true));
                }
            }
        }
        let kept: Vec<(u64, Variant, bool)> = one
            .failures
            .iter()
            .map(|f| (f.index, f.variant, f.client))
            .collect();
        assert_eq!(kept, expected);
        assert!(
            one.failures
                .iter()
                .any(|f| f.client && !f.result.outcome.is_failure())
        );
        assert!(
            one.failures
                .iter()
                .any(|f| f.client && f.result.outcome.is_failure())
        );
    }

    #[test]
    fn a_run_keeps_the_client_errors_of_its_model_check() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scenarios/switch_to_lower_priority_and_back.toml");
        let scenario = Scenario::load(&path).unwrap();
        let model = model_for(&scenario);
        let driver = GrpcModel::new(&scenario);
        let opts = RunOptions::for_scenario(&scenario);
        for seed in 0..12 {
            for variant in [Variant::Pre4308, Variant::Pr8095] {
                let mut a = Sim::new(Box::new(RandomStrategy::new()));
                let ours = model.run_one(variant, &mut a, seed, &opts);
                let (report, check) = driver.run_report(
                    variant,
                    &mut Sim::new(Box::new(RandomStrategy::new())),
                    &RunConfig {
                        max_early_fire: crate::scenario::driver::MAX_STALL,
                        ..opts.config(seed)
                    },
                );
                assert_eq!(ours.client_errors, check.client_errors);
                assert_eq!(ours.steps, report.steps);
                assert_eq!(ours.outcome, report.outcome, "{variant:?} seed {seed}");
            }
        }
    }

    #[test]
    fn baseline_prefers_pre_8095() {
        assert_eq!(
            baseline(&[Variant::Pr8095, Variant::Pre8095]),
            Some(Variant::Pre8095)
        );
        assert_eq!(
            baseline(&[Variant::A115, Variant::Pr8095]),
            Some(Variant::A115)
        );
        assert_eq!(baseline(&[]), None);
    }
}
