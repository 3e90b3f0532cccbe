//! `lbsim run SCENARIO`: runs × variants × one strategy, with statistics.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
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
    /// Output directory [default: out/<scenario>/, or out/<scenario>/shard-I-of-N/; out/ is not tracked by git].
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

/// The most runs per variant `run` and `sweep` take: far more than can be
/// done (a million take minutes), and few enough that every count and sum
/// over them fits in 64 bits.
pub(super) const MAX_RUNS: u64 = 1_000_000_000_000;

/// The runs per variant: `--runs` if given, else the scenario's `run.runs`;
/// between 1 and [`MAX_RUNS`].
pub(super) fn runs_per_variant(arg: Option<u64>, scenario: &Scenario) -> anyhow::Result<u64> {
    let runs = arg.unwrap_or(scenario.run.runs);
    if (1..=MAX_RUNS).contains(&runs) {
        return Ok(runs);
    }
    let range = format!("between 1 and {MAX_RUNS} (10^12) runs per variant");
    match arg {
        Some(_) => bail!("--runs {runs}: must be {range}"),
        None => {
            bail!("run.runs = {runs} in the scenario: must be {range}; lower it or give --runs")
        }
    }
}

/// Checks before any run that the files `names` can be written into `dir`,
/// which `flag` chose as `given` (the directory itself, or a file in it):
/// `dir` must be a directory or creatable (it is created now), no name may
/// be taken by a directory, and files must be creatable in it.
pub(super) fn check_outputs(
    flag: &str,
    given: &Path,
    dir: &Path,
    names: &[impl AsRef<Path>],
) -> anyhow::Result<()> {
    let head = format!("{flag} {}", given.display());
    // `dir` joined with a name is shown as given; "" is the current directory.
    let names: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    // The nearest existing one of `dir` and its parents must be a directory.
    if let Some(file) = dir
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .find(|a| a.exists())
        .filter(|a| !a.is_dir())
    {
        if file == given {
            bail!(
                "{head}: not a directory (a file of that name exists); give {flag} a directory, \
                 which is created if missing, or move the file away"
            );
        }
        bail!(
            "{head}: {} is a file, not a directory; give {flag} a path below a directory, \
             which is created if missing",
            file.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "{head}: cannot create the directory {}; give {flag} another path",
            dir.display()
        )
    })?;
    for path in names {
        if path.is_dir() {
            bail!(
                "{head}: {} is a directory, where lbsim writes a file; move it away or give \
                 {flag} another path",
                path.display()
            );
        }
    }
    let probe = dir.join(format!(".lbsim-write-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .with_context(|| {
            format!(
                "{head}: cannot create files in {}; give {flag} a directory you can write to",
                dir.display()
            )
        })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Set by Ctrl-C; workers stop once the chunk of runs they are on is done.
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
    let runs = runs_per_variant(args.runs, &scenario)?;
    if shard.count > runs {
        bail!(
            "--shard {}/{}: {} shards for {runs} run(s) would leave shards without runs; \
             use at most {runs} shards (N <= --runs)",
            shard.index,
            shard.count,
            shard.count
        );
    }
    let jobs = match args.jobs {
        Some(0) => return Err(anyhow!("--jobs: must be at least 1")),
        Some(j) => j,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let out_dir = args.out.clone().unwrap_or_else(|| {
        let base = PathBuf::from("out").join(scenario.stem());
        if shard == Shard::WHOLE {
            base
        } else {
            base.join(format!("shard-{}-of-{}", shard.index, shard.count))
        }
    });
    let mut outputs = vec!["summary.csv", "failures.csv"];
    if !args.no_plot {
        outputs.extend(["leak_rate.png", "leak_rate.svg"]);
    }
    check_outputs("--out", &out_dir, &out_dir, &outputs)?;

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
    report::write_atomic(&summary_path, &report::summary_csv(&rows))?;
    report::write_atomic(&failures_path, &report::failures_csv(&failures))?;

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
            f.hit(
                |o| match o {
                    Outcome::Ok => r.ok,
                    Outcome::Leak => r.leaks,
                    Outcome::Deadlock => r.deadlocks,
                    Outcome::Panic => r.panics,
                    Outcome::Limit => r.limits,
                },
                r.client_failures.unwrap_or(0),
            )
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
