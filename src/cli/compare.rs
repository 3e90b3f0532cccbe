//! `lbsim compare`: lbsim's prediction of the Go validation harness beside
//! what the harness measured on the real grpc-go code.
//!
//! For every measured point (grpc-go version, race detector, GOMAXPROCS,
//! close delay d) it runs the harness scenario with the variant that models
//! that version, the runtime model derived from the calibration measured at
//! that GOMAXPROCS and race setting (latencies only, never a leak rate), and
//! the same d; then it writes the table and the chart.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::anyhow;

use crate::experiment::stats::wilson95;
use crate::experiment::{self, Experiment, RunOptions, Shard, StrategySpec};
use crate::report::validation_chart::{ValidationPoint, validation_chart};
use crate::report::write_atomic;
use crate::scenario::Scenario;
use crate::sim::strategy::StrategyKind;
use crate::validation::{Calibration, RealRow, load_real, runtime_toml};

use super::run::{STOP, check_outputs, install_ctrlc};

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// The harness scenario (the probe scenario the Go harness mirrors).
    #[arg(long, default_value = "scenarios/validation_probe.toml")]
    pub scenario: PathBuf,
    /// The real harness's measurements, one JSON object per line.
    #[arg(long, default_value = "results/validation/real.jsonl")]
    pub real: PathBuf,
    /// Directory of the calibrations: gomaxprocs-P.json and gomaxprocs-P-race.json.
    #[arg(long, default_value = "results/validation/calibration")]
    pub calibration: PathBuf,
    /// Predicted runs per point of a leaking version.
    #[arg(long, default_value_t = 200_000)]
    pub runs: u64,
    /// Predicted runs per point of a fixed version (v1.72.0, v1.81.x).
    #[arg(long, default_value_t = 20_000)]
    pub fixed_runs: u64,
    /// Master seed of the predictions.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Worker threads [default: the number of CPUs]. Results do not depend on it.
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Output directory.
    #[arg(long, default_value = "results/validation")]
    pub out: PathBuf,
    /// Do not draw the chart.
    #[arg(long)]
    pub no_plot: bool,
}

/// One point: the measurement and the prediction.
struct Row {
    real: RealRow,
    pred_runs: u64,
    pred_leaks: u64,
    /// Predicted runs that did not end ok or leak (deadlock, panic, limit).
    pred_other: u64,
}

fn calibration_path(dir: &Path, gomaxprocs: u32, race: bool) -> PathBuf {
    let race = if race { "-race" } else { "" };
    dir.join(format!("gomaxprocs-{gomaxprocs}{race}.json"))
}

pub fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let base = Scenario::load(&args.scenario)?;
    if base.probe.is_none() {
        return Err(anyhow!(
            "{}: not a harness scenario (it has no [probe] table); use scenarios/validation_probe.toml",
            args.scenario.display()
        ));
    }
    if args.runs == 0 || args.fixed_runs == 0 {
        return Err(anyhow!("--runs and --fixed-runs must be at least 1"));
    }
    let jobs = match args.jobs {
        Some(0) => return Err(anyhow!("--jobs: must be at least 1")),
        Some(j) => j,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let real = load_real(&args.real)?;
    let mut outputs = vec!["comparison.csv", "comparison.md", "runtime.toml"];
    if !args.no_plot {
        outputs.extend(["validation.png", "validation.svg"]);
    }
    check_outputs("--out", &args.out, &args.out, &outputs)?;

    // Every calibration is read, and every scenario set up, before anything runs.
    let steps = experiment::model_for(&base).expected_steps() as f64;
    let mut plans = Vec::new();
    let mut runtimes = String::new();
    for r in &real {
        let path = calibration_path(&args.calibration, r.gomaxprocs, r.race);
        let cal = Calibration::load(&path)?;
        if cal.gomaxprocs != r.gomaxprocs || cal.race != r.race {
            return Err(anyhow!(
                "{}: measured at GOMAXPROCS={} race={}, but the name says GOMAXPROCS={} race={}; re-run validation/run.sh",
                path.display(),
                cal.gomaxprocs,
                cal.race,
                r.gomaxprocs,
                r.race
            ));
        }
        let mut s = base.clone();
        s.runtime = cal.runtime_model(steps);
        s.set_param("client.spin", &format!("{}ns", r.delay_ns))?;
        let header = format!(
            "# GOMAXPROCS={}{}, from {}\n",
            r.gomaxprocs,
            if r.race { ", -race" } else { "" },
            path.display()
        );
        if !runtimes.contains(&header) {
            runtimes.push_str(&header);
            runtimes.push_str(&runtime_toml(&s.runtime));
            runtimes.push('\n');
        }
        plans.push((r.clone(), s));
    }

    install_ctrlc();
    let mut rows = Vec::new();
    let mut partial = false;
    for (i, (r, s)) in plans.iter().enumerate() {
        if STOP.load(Ordering::SeqCst) {
            partial = true;
            break;
        }
        let variant = r.variant().expect("checked when loaded");
        let runs = if variant == crate::grpc::Variant::Pre8095 {
            args.runs
        } else {
            args.fixed_runs
        };
        let model = experiment::model_for(s);
        let exp = Experiment {
            variants: vec![variant],
            strategy: StrategySpec::new(&StrategyKind::Timed, &s.runtime, model.expected_steps()),
            runs,
            master_seed: args.seed,
            shard: Shard::WHOLE,
            jobs,
            opts: RunOptions::for_scenario(s),
            max_failures: 0,
        };
        let result = experiment::run(model.as_ref(), &exp, &STOP, &|_| {});
        let c = &result.summaries[0].counts;
        eprintln!(
            "[{}/{}] {} race={} GOMAXPROCS={} d={}ns: real {}/{}, predicted {}/{} ({:.1} s)",
            i + 1,
            plans.len(),
            r.version,
            r.race,
            r.gomaxprocs,
            r.delay_ns,
            r.leaks,
            r.iterations,
            c.leaks,
            c.runs,
            result.elapsed.as_secs_f64()
        );
        if result.partial {
            partial = true;
        }
        rows.push(Row {
            real: r.clone(),
            pred_runs: c.runs,
            pred_leaks: c.leaks,
            pred_other: c.runs - c.ok - c.leaks,
        });
        if partial {
            break;
        }
    }

    let csv = comparison_csv(&rows);
    write_atomic(&args.out.join("comparison.csv"), &csv)?;
    let md = comparison_md(&rows, partial);
    write_atomic(&args.out.join("comparison.md"), &md)?;
    write_atomic(&args.out.join("runtime.toml"), &runtimes)?;
    if !args.no_plot {
        let points: Vec<ValidationPoint> = rows
            .iter()
            .filter(|r| r.real.version == "v1.71.1")
            .map(point)
            .collect();
        if !points.is_empty() {
            for ext in ["png", "svg"] {
                validation_chart(
                    &points,
                    "Leak rate of grpc-go v1.71.1: real harness vs lbsim prediction",
                    &args.out.join(format!("validation.{ext}")),
                )?;
            }
        }
    }
    super::print_stdout(&md)?;
    eprintln!(
        "wrote {}/comparison.csv, comparison.md, runtime.toml{}",
        args.out.display(),
        if args.no_plot {
            ""
        } else {
            ", validation.png/.svg"
        }
    );
    if partial {
        return Ok(ExitCode::from(super::EXIT_INTERRUPTED));
    }
    Ok(ExitCode::SUCCESS)
}

fn point(r: &Row) -> ValidationPoint {
    let (rl, rh) = wilson95(r.real.leaks, r.real.iterations);
    let (pl, ph) = wilson95(r.pred_leaks, r.pred_runs);
    ValidationPoint {
        gomaxprocs: r.real.gomaxprocs,
        race: r.real.race,
        delay_ns: r.real.delay_ns,
        real_runs: r.real.iterations,
        real_leaks: r.real.leaks,
        real_rate: rate(r.real.leaks, r.real.iterations),
        real_lo: rl,
        real_hi: rh,
        pred_runs: r.pred_runs,
        pred_leaks: r.pred_leaks,
        pred_rate: rate(r.pred_leaks, r.pred_runs),
        pred_lo: pl,
        pred_hi: ph,
    }
}

fn rate(k: u64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { k as f64 / n as f64 }
}

fn comparison_csv(rows: &[Row]) -> String {
    let mut s = String::from(
        "version,variant,race,gomaxprocs,delay_ns,real_iterations,real_leaks,real_rate,real_ci95_low,real_ci95_high,pred_runs,pred_leaks,pred_rate,pred_ci95_low,pred_ci95_high,ratio,pred_other_failures\n",
    );
    for r in rows {
        let p = point(r);
        let ratio = p.ratio().map_or(String::new(), |x| format!("{x:.3}"));
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{:.3e},{:.3e},{:.3e},{},{},{:.3e},{:.3e},{:.3e},{},{}",
            r.real.version,
            r.real.variant().map_or("", |v| v.as_str()),
            r.real.race,
            r.real.gomaxprocs,
            r.real.delay_ns,
            r.real.iterations,
            r.real.leaks,
            p.real_rate,
            p.real_lo,
            p.real_hi,
            r.pred_runs,
            r.pred_leaks,
            p.pred_rate,
            p.pred_lo,
            p.pred_hi,
            ratio,
            r.pred_other
        );
    }
    s
}

fn fmt_rate(k: u64, n: u64, lo: f64, hi: f64) -> String {
    if k == 0 {
        format!("0 / {n} (< {hi:.1e})")
    } else {
        format!(
            "{k} / {n} = {:.2e} [{lo:.1e}, {hi:.1e}]",
            k as f64 / n as f64
        )
    }
}

fn comparison_md(rows: &[Row], partial: bool) -> String {
    let mut s = String::new();
    if partial {
        s.push_str("**Partial: interrupted before every point was predicted.**\n\n");
    }
    s.push_str("| grpc-go | lbsim variant | race | GOMAXPROCS | d | real leaks / iterations (95% CI) | predicted leaks / runs (95% CI) | real / predicted |\n");
    s.push_str("|---|---|---|--:|--:|--:|--:|--:|\n");
    for r in rows {
        let p = point(r);
        let ratio = match p.ratio() {
            Some(x) => format!("{x:.2}"),
            None if r.real.leaks == 0 && r.pred_leaks == 0 => "both 0".into(),
            None => "—".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} µs | {} | {} | {} |",
            r.real.version,
            r.real.variant().map_or("", |v| v.as_str()),
            if r.real.race { "yes" } else { "no" },
            r.real.gomaxprocs,
            r.real.delay_ns as f64 / 1_000.0,
            fmt_rate(r.real.leaks, r.real.iterations, p.real_lo, p.real_hi),
            fmt_rate(r.pred_leaks, r.pred_runs, p.pred_lo, p.pred_hi),
            ratio
        );
    }
    s
}
