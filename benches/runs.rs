//! Whole runs per second of the flagship scenario through the experiment
//! runner (`model_for`, as `lbsim run` uses it), with `--jobs 2`, per strategy.
//!
//! `cargo bench --bench runs --profile release`: the gRPC model of the
//! flagship scenario, `pre-8095`, through the same runner as `lbsim run`,
//! built as `lbsim` is (one unit, fat LTO; the bench profile leaves LTO out
//! to keep `cargo test --release` quick).

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lbsim::experiment::{self, Experiment, RunOptions, Shard, StrategySpec};
use lbsim::grpc::Variant;
use lbsim::scenario::Scenario;
use lbsim::sim::strategy::StrategyKind;

const RUNS: u64 = 5_000;

/// The same allocator as the `lbsim` binary, so the figures match `lbsim run`.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn runs(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/switch_to_lower_priority_and_back.toml"
    );
    let scenario = Scenario::load(path).expect("flagship scenario loads");
    let model = experiment::model_for(&scenario);
    let mut group = c.benchmark_group("flagship_runs");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RUNS));
    for kind in ["random", "pct:3", "timed"] {
        let exp = Experiment {
            variants: vec![Variant::Pre8095],
            strategy: StrategySpec::new(
                &StrategyKind::parse(kind).unwrap(),
                &scenario.runtime,
                model.expected_steps(),
            ),
            runs: RUNS,
            master_seed: 1,
            shard: Shard::WHOLE,
            jobs: 2,
            opts: RunOptions::for_scenario(&scenario),
            max_failures: 1_000,
        };
        let stop = AtomicBool::new(false);
        let t = Instant::now();
        let r = experiment::run(model.as_ref(), &exp, &stop, &|_| {});
        eprintln!(
            "{kind}: {:.0} runs/s ({} leaks in {RUNS})",
            RUNS as f64 / t.elapsed().as_secs_f64(),
            r.summaries[0].counts.leaks
        );
        group.bench_function(kind, |b| {
            b.iter(|| experiment::run(model.as_ref(), &exp, &stop, &|_| {}))
        });
    }
    group.finish();
}

criterion_group!(benches, runs);
criterion_main!(benches);
