//! `lbsim run SCENARIO`: runs × variants × one strategy, with statistics.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::experiment::{self, Experiment, RunOptions, Shard, StrategySpec};
use crate::report;
use crate::scenario::{Scenario, parse_variants};
use crate::sim::Outcome;

use super::FailOn;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// Variants, comma-separated, or `all` [default: the scenario's `run.variants`].
    #[arg(long)]
    pub variant: Option<String>,
    /// Runs per variant, over all shards [default: the scenario's `run.runs`].
    #[arg(long)]
    pub runs: Option<u64>,
    /// Master seed; run i uses a seed derived from it and i [default: the scenario's `run.seed`].
    #[arg(long)]
    pub seed: Option<u64>,
    /// timed, random or pct:D [default: the scenario's `run.strategy`].
    #[arg(long)]
    pub strategy: Option<String>,
    /// Worker threads [default: the number of CPUs]. Results do not depend on it.
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Run only shard I of N (0-based): a disjoint slice of the run indices.
    #[arg(long)]
    pub shard: Option<String>,
    /// Output directory [default: results/<scenario>/, or results/<scenario>/shard-I-of-N/].
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Do not draw the leak-rate chart (leak_rate.png and .svg in the output directory).
    #[arg(long)]
    pub no_plot: bool,
    /// No progress bar and no notes on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Exit with code 1 if any run of any variant had this outcome.
    #[arg(long, value_enum)]
    pub fail_on: Vec<FailOn>,
    /// Failing runs to keep in failures.csv (those with the smallest indices).
    #[arg(long, default_value_t = 1_000)]
    pub max_failures: usize,
}

/// Set by Ctrl-C; workers stop between runs.
pub(super) static STOP: AtomicBool = AtomicBool::new(false);

pub(super) fn install_ctrlc() {
    // A second Ctrl-C exits at once, for a run that does not stop.
    let _ = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(super::EXIT_INTERRUPTED));
        }
    });
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(&args.scenario)?;
    let variants = match &args.variant {
        Some(v) => parse_variants(v).map_err(|e| anyhow!("--variant: {e}"))?,
        None => scenario.run.variants.clone(),
    };
    let kind = super::strategy_kind(args.strategy.as_deref(), &scenario)?;
    let shard = match &args.shard {
        Some(s) => Shard::parse(s).map_err(|e| anyhow!("--shard: {e}"))?,
        None => Shard::WHOLE,
    };
    let runs = args.runs.unwrap_or(scenario.run.runs);
    if runs == 0 {
        return Err(anyhow!("--runs: must be at least 1"));
    }
    let jobs = match args.jobs {
        Some(0) => return Err(anyhow!("--jobs: must be at least 1")),
        Some(j) => j,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let out_dir = args.out.clone().unwrap_or_else(|| {
        let base = PathBuf::from("results").join(scenario.stem());
        if shard == Shard::WHOLE {
            base
        } else {
            base.join(format!("shard-{}-of-{}", shard.index, shard.count))
        }
    });

    let model = experiment::model_for(&scenario);
    let exp = Experiment {
        variants,
        strategy: StrategySpec::new(&kind, &scenario.runtime, model.expected_steps()),
        runs,
        master_seed: args.seed.unwrap_or(scenario.run.seed),
        shard,
        jobs,
        opts: RunOptions::for_scenario(&scenario),
        max_failures: args.max_failures,
    };

    install_ctrlc();
    let range = shard.range(runs);
    let bar = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(
            Some(range.end - range.start),
            ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} runs  {per_sec}  ETA {eta}  {msg}")
                .expect("valid progress template"),
        );
        bar.set_message(format!("× {} variant(s)", exp.variants.len()));
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    };
    let result = experiment::run(model.as_ref(), &exp, &STOP, &|done| bar.set_position(done));
    bar.finish_and_clear();

    let rows = report::summary_rows(&scenario.name, &exp, &result);
    let label = exp.strategy.label();
    let failures = report::failure_rows(&args.scenario, &label, &result.failures);
    let summary_path = out_dir.join("summary.csv");
    let failures_path = out_dir.join("failures.csv");
    report::write_atomic(&summary_path, &report::summary_csv(&rows))
        .with_context(|| format!("writing {}", summary_path.display()))?;
    report::write_atomic(&failures_path, &report::failures_csv(&failures))
        .with_context(|| format!("writing {}", failures_path.display()))?;

    let mut charts = Vec::new();
    if !args.no_plot && rows.iter().any(|r| r.runs > 0) {
        for name in ["leak_rate.png", "leak_rate.svg"] {
            let path = out_dir.join(name);
            super::plot::draw_leak_rate(&rows, &path, None)?;
            charts.push(path.display().to_string());
        }
    }

    let text = match args.format {
        Format::Table => report::table(&rows),
        Format::Json => report::json_lines(&rows),
        Format::Csv => report::summary_csv(&rows),
    };
    super::print_stdout(&text)?;

    if !args.quiet {
        let done = rows.first().map_or(0, |r| r.runs);
        let secs = result.elapsed.as_secs_f64();
        eprintln!(
            "{done} runs × {} variant(s) in {secs:.2} s ({:.0} runs/s per variant); wrote {} and {}{}{}",
            exp.variants.len(),
            done as f64 / secs.max(1e-9),
            summary_path.display(),
            failures_path.display(),
            charts.iter().map(|c| format!(", {c}")).collect::<String>(),
            if result.failures_dropped > 0 {
                format!(
                    " ({} more failures not kept; see --max-failures)",
                    result.failures_dropped
                )
            } else {
                String::new()
            }
        );
        if result.partial {
            eprintln!(
                "interrupted: the results cover only the runs completed and are marked partial"
            );
        }
    }

    if result.partial {
        return Ok(ExitCode::from(super::EXIT_INTERRUPTED));
    }
    let failed = args.fail_on.iter().any(|f| {
        rows.iter().any(|r| {
            f.hit(|o| match o {
                Outcome::Ok => r.ok,
                Outcome::Leak => r.leaks,
                Outcome::Deadlock => r.deadlocks,
                Outcome::Panic => r.panics,
                Outcome::Limit => r.limits,
            })
        })
    });
    if failed {
        if !args.quiet {
            eprintln!("failing: a run matched --fail-on");
        }
        return Ok(ExitCode::from(super::EXIT_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}
