//! `lbsim sweep SCENARIO --param KEY=FROM..TO[:STEPS]`: the leak rate of each
//! variant against one numeric scenario parameter.
//!
//! Every point runs the same experiment (same master seed, runs, variants and
//! strategy) on a copy of the scenario with the parameter set, so points
//! differ only by the parameter. Writes `sweep_<key>.csv` and
//! `sweep_<key>.png`/`.svg` (dots of the key become underscores).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::run::{STOP, check_outputs, install_ctrlc, runs_per_variant};
use crate::experiment::{self, Experiment, RunOptions, Shard, StrategySpec};
use crate::report::{self, SweepPoint};
use crate::scenario::{PARAM_KEYS, Scenario, parse_variants};
use crate::sim::dist::{fmt_duration, parse_duration};
use crate::sim::strategy::StrategyKind;

#[derive(clap::Args, Debug)]
pub struct SweepArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// KEY=FROM..TO[:STEPS]: e.g. runtime.pause_prob=0.0002..0.002:4,
    /// balancer.init_timeout=1ms..20ms, runtime.gomaxprocs=1..8:8 [STEPS default: 5].
    #[arg(long)]
    pub param: String,
    /// Space the points evenly on a log scale (FROM must be above zero).
    #[arg(long)]
    pub log: bool,
    /// Variants, comma-separated, or `all` [default: the scenario's `run.variants`].
    #[arg(long)]
    pub variant: Option<String>,
    /// Runs per variant at each point [default: the scenario's `run.runs`].
    #[arg(long)]
    pub runs: Option<u64>,
    /// Master seed, the same at every point [default: the scenario's `run.seed`].
    #[arg(long)]
    pub seed: Option<u64>,
    /// timed, random or pct:D [default: the scenario's `run.strategy`].
    #[arg(long)]
    pub strategy: Option<String>,
    /// Worker threads [default: the number of CPUs]. Results do not depend on it.
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Output directory [default: out/<scenario>/; out/ is not tracked by git].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Do not draw the chart.
    #[arg(long)]
    pub no_plot: bool,
    /// No progress bar and no notes on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// How a sweepable parameter is written and measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A probability, written as a plain number between 0 and 1.
    Probability,
    /// A whole number.
    Count,
    /// A duration, written with a unit (`250ms`).
    Duration,
}

fn kind_of(key: &str) -> Result<Kind, String> {
    match key {
        "runtime.pause_prob" | "runtime.steal_prob" => Ok(Kind::Probability),
        "runtime.gomaxprocs" => Ok(Kind::Count),
        "balancer.init_timeout"
        | "balancer.cache_timeout"
        | "client.leak_check_grace"
        | "client.spin" => Ok(Kind::Duration),
        "runtime.step_cost"
        | "runtime.wake_latency"
        | "runtime.pause"
        | "runtime.handoff"
        | "runtime.steal" => Err(format!(
            "`{key}` is a distribution (such as lognormal(300ns, 0.8)), which has no single \
             number to sweep; sweep runtime.pause_prob (how often pauses happen) or \
             runtime.gomaxprocs instead, or write one scenario file per distribution and \
             `lbsim run` each"
        )),
        "run.runs" => Err("`run.runs` is not a model parameter; set it with --runs".into()),
        "run.seed" => Err(
            "`run.seed` is not a model parameter; a sweep uses one master seed (--seed) at \
             every point so that points are comparable"
                .into(),
        ),
        _ => Err(format!(
            "unknown parameter `{key}`; sweepable parameters: {}",
            SWEEPABLE.join(", ")
        )),
    }
}

const SWEEPABLE: &[&str] = &[
    "runtime.pause_prob",
    "runtime.steal_prob",
    "runtime.gomaxprocs",
    "balancer.init_timeout",
    "balancer.cache_timeout",
    "client.leak_check_grace",
    "client.spin",
];

/// A parsed `--param`: the key and the points, each as the text given to
/// [`Scenario::set_param`] and as a number in `unit` for the chart and CSV.
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    pub key: String,
    pub unit: String,
    pub points: Vec<(String, f64)>,
}

const PARAM_HELP: &str = "write --param KEY=FROM..TO[:STEPS], e.g. \
     runtime.pause_prob=0.0002..0.002:4 or balancer.init_timeout=1ms..20ms:5";

/// Parses `KEY=FROM..TO[:STEPS]` into the points to run, evenly spaced (or
/// log-spaced with `log`). Whole numbers are rounded and repeated values
/// dropped; durations are rounded to whole nanoseconds.
pub fn parse_param(text: &str, log: bool) -> Result<Sweep, String> {
    let (key, range) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` has no `=`; {PARAM_HELP}"))?;
    let key = key.trim();
    let kind = kind_of(key)?;
    debug_assert!(PARAM_KEYS.contains(&key));
    let (range, steps) = match range.rsplit_once(':') {
        Some((r, s)) => {
            let steps: usize = s.trim().parse().map_err(|_| {
                format!(
                    "`{s}` is not a number of steps; write a whole number of at least 1 after `:`"
                )
            })?;
            (r, steps)
        }
        None => (range, 5),
    };
    if steps == 0 {
        return Err(format!(
            "{key}: 0 steps; write at least 1 after `:` (2 or more to see a trend)"
        ));
    }
    let (from, to) = range
        .split_once("..")
        .ok_or_else(|| format!("`{range}` is not a range FROM..TO; {PARAM_HELP}"))?;
    let (from, to) = (from.trim(), to.trim());
    let number = |s: &str| -> Result<f64, String> {
        match kind {
            Kind::Duration => parse_duration(s)
                .map(|ns| ns as f64)
                .map_err(|e| format!("{key} is a duration: {e}")),
            Kind::Probability => match s.parse::<f64>() {
                Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
                _ => Err(format!(
                    "{key} is a probability: `{s}` is not a plain number between 0 and 1 \
                     (write e.g. 0.0005)"
                )),
            },
            Kind::Count => match s.parse::<u64>() {
                Ok(n) if n >= 1 => Ok(n as f64),
                _ => Err(format!(
                    "{key} is a whole number: `{s}` is not a whole number of at least 1"
                )),
            },
        }
    };
    let (lo, hi) = (number(from)?, number(to)?);
    if lo > hi {
        return Err(format!(
            "{key}: FROM ({from}) is above TO ({to}); write the smaller value first"
        ));
    }
    if steps == 1 && lo != hi {
        return Err(format!(
            "{key}: one step cannot cover {from}..{to}; use 2 or more steps, or FROM = TO"
        ));
    }
    if log && lo <= 0.0 {
        return Err(format!(
            "{key}: --log needs FROM above zero (got {from}); start at a small positive value"
        ));
    }
    let raw: Vec<f64> = (0..steps)
        .map(|i| {
            if steps == 1 {
                return lo;
            }
            let t = i as f64 / (steps - 1) as f64;
            let v = if log {
                (lo.ln() + (hi.ln() - lo.ln()) * t).exp()
            } else {
                lo + (hi - lo) * t
            };
            // The ends exactly as written, whatever the rounding above.
            if i == 0 {
                lo
            } else if i == steps - 1 {
                hi
            } else {
                v
            }
        })
        .collect();

    let (unit, scale) = match kind {
        Kind::Probability => ("per step", 1.0),
        Kind::Count => ("", 1.0),
        Kind::Duration => duration_unit(hi),
    };
    let mut points: Vec<(String, f64)> = Vec::new();
    for v in raw {
        let (text, x) = match kind {
            Kind::Probability => {
                // Ten significant digits: no 0.0008000000000000001.
                let v: f64 = format!("{v:.9e}")
                    .parse()
                    .expect("a formatted float parses");
                (format!("{v}"), v)
            }
            Kind::Count => {
                let n = v.round();
                (format!("{n}"), n)
            }
            Kind::Duration => {
                let ns = v.round();
                (format!("{ns}ns"), ns / scale)
            }
        };
        if points.last().is_none_or(|(t, _)| *t != text) {
            points.push((text, x));
        }
    }
    Ok(Sweep {
        key: key.to_string(),
        unit: unit.to_string(),
        points,
    })
}

/// The unit durations up to `max_ns` are shown in, and nanoseconds per unit.
fn duration_unit(max_ns: f64) -> (&'static str, f64) {
    if max_ns >= 1e9 {
        ("s", 1e9)
    } else if max_ns >= 1e6 {
        ("ms", 1e6)
    } else if max_ns >= 1e3 {
        ("us", 1e3)
    } else {
        ("ns", 1.0)
    }
}

/// One row of `sweep_<key>.csv`: one variant at one point.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepRow {
    pub scenario: String,
    pub param: String,
    /// The parameter's value in `unit` (durations) or as written.
    pub value: f64,
    pub unit: String,
    pub variant: String,
    pub strategy: String,
    pub seed: u64,
    pub runs: u64,
    pub leaks: u64,
    pub deadlocks: u64,
    pub panics: u64,
    pub rate: f64,
    pub ci95_low: f64,
    pub ci95_high: f64,
    pub first_failure_seed: Option<u64>,
    /// This point was interrupted (Ctrl-C) before all its runs were done.
    pub partial: bool,
    /// Runs whose client had an expectation fail (not an outcome; last, so
    /// that readers of the older files keep working).
    pub client_failures: u64,
}

pub const SWEEP_HEADER: &[&str] = &[
    "scenario",
    "param",
    "value",
    "unit",
    "variant",
    "strategy",
    "seed",
    "runs",
    "leaks",
    "deadlocks",
    "panics",
    "rate",
    "ci95_low",
    "ci95_high",
    "first_failure_seed",
    "partial",
    "client_failures",
];

pub fn sweep(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let base = Scenario::load(&args.scenario)?;
    let plan = parse_param(&args.param, args.log).map_err(|e| anyhow!("--param: {e}"))?;
    let variants = match &args.variant {
        Some(v) => parse_variants(v).map_err(|e| anyhow!("--variant: {e}"))?,
        None => base.run.variants.clone(),
    };
    let kind = super::strategy_kind(args.strategy.as_deref(), &base)?;
    let runs = runs_per_variant(args.runs, &base)?;
    let jobs = match args.jobs {
        Some(0) => return Err(anyhow!("--jobs: must be at least 1")),
        Some(j) => j,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let master_seed = args.seed.unwrap_or(base.run.seed);
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(base.stem()));
    // Every point is set before anything runs, so a bad value fails at once.
    let mut scenarios = Vec::new();
    for (text, x) in &plan.points {
        let mut s = base.clone();
        s.set_param(&plan.key, text)
            .map_err(|e| anyhow!("--param: {e}"))?;
        scenarios.push((s, *x));
    }
    let stem = format!("sweep_{}", plan.key.replace('.', "_"));
    let mut outputs = vec![format!("{stem}.csv")];
    if !args.no_plot {
        outputs.extend([format!("{stem}.png"), format!("{stem}.svg")]);
    }
    check_outputs("--out", &out_dir, &out_dir, &outputs)?;
    if plan.key.starts_with("runtime.") && kind != StrategyKind::Timed && !args.quiet {
        eprintln!(
            "note: {} is part of the runtime model, which only the timed strategy uses; \
             under {} every point runs the same schedules",
            plan.key,
            args.strategy
                .as_deref()
                .unwrap_or("the scenario's strategy")
        );
    }

    install_ctrlc();
    let total = runs.saturating_mul(scenarios.len() as u64);
    let bar = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} runs  {per_sec}  ETA {eta}  {msg}")
                .expect("valid progress template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    };

    let mut rows: Vec<SweepRow> = Vec::new();
    let mut label = String::new();
    let mut partial = false;
    let mut elapsed = 0.0;
    for (i, (scenario, x)) in scenarios.iter().enumerate() {
        if STOP.load(Ordering::SeqCst) {
            partial = true;
            break;
        }
        bar.set_message(format!(
            "point {}/{}: {} = {}",
            i + 1,
            scenarios.len(),
            plan.key,
            show(*x, &plan.unit)
        ));
        let model = experiment::model_for(scenario);
        let exp = Experiment {
            variants: variants.clone(),
            strategy: StrategySpec::new(&kind, &scenario.runtime, model.expected_steps()),
            runs,
            master_seed,
            shard: Shard::WHOLE,
            jobs,
            opts: RunOptions::for_scenario(scenario),
            max_failures: 0,
        };
        label = exp.strategy.label();
        let offset = runs.saturating_mul(i as u64);
        let result = experiment::run(model.as_ref(), &exp, &STOP, &|done| {
            bar.set_position(offset + done)
        });
        elapsed += result.elapsed.as_secs_f64();
        partial |= result.partial;
        for r in report::summary_rows(&base.name, &exp, &result) {
            rows.push(SweepRow {
                scenario: r.scenario,
                param: plan.key.clone(),
                value: *x,
                unit: plan.unit.clone(),
                variant: r.variant,
                strategy: r.strategy,
                seed: r.seed,
                runs: r.runs,
                leaks: r.leaks,
                deadlocks: r.deadlocks,
                panics: r.panics + r.limits,
                rate: r.rate,
                ci95_low: r.ci95_low,
                ci95_high: r.ci95_high,
                first_failure_seed: r.first_failure_seed,
                partial: r.partial,
                client_failures: r.client_failures.unwrap_or(0),
            });
        }
        if result.partial {
            break;
        }
    }
    bar.finish_and_clear();

    let csv_path = out_dir.join(format!("{stem}.csv"));
    let csv = report::to_csv(&rows, SWEEP_HEADER).context("formatting the sweep CSV")?;
    report::write_atomic(&csv_path, &csv)?;
    let mut written = vec![csv_path.display().to_string()];
    if !args.no_plot && rows.iter().any(|r| r.runs > 0) {
        for ext in ["png", "svg"] {
            let path = out_dir.join(format!("{stem}.{ext}"));
            draw_sweep(&rows, &base.name, &label, partial, args.log, &path)?;
            written.push(path.display().to_string());
        }
    }

    super::print_stdout(&table(&rows, &label, master_seed, partial))?;
    if !args.quiet {
        let points = rows
            .iter()
            .map(|r| r.value.to_bits())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        eprintln!(
            "{points} point(s) × {} variant(s), {} runs in all, in {elapsed:.1} s; wrote {}",
            variants.len(),
            rows.iter().map(|r| r.runs).sum::<u64>(),
            written.join(", ")
        );
        if partial {
            eprintln!(
                "interrupted: the files cover only the points (and runs) completed and are \
                 marked partial"
            );
        }
    }
    if partial {
        return Ok(ExitCode::from(super::EXIT_INTERRUPTED));
    }
    Ok(ExitCode::SUCCESS)
}

/// A value with its unit, for the table and messages.
fn show(x: f64, unit: &str) -> String {
    match unit {
        "s" => fmt_duration((x * 1e9).round() as u64),
        "ms" => fmt_duration((x * 1e6).round() as u64),
        "us" => fmt_duration((x * 1e3).round() as u64),
        "ns" => fmt_duration(x.round() as u64),
        // Six significant digits: log-spaced values are long.
        _ => {
            let decimals = (5 - x.abs().max(1e-300).log10().floor() as i32).clamp(0, 15) as usize;
            report::trim_zeros(&format!("{x:.decimals$}"))
        }
    }
}

/// The chart of a sweep's rows; `log_x` for a log-spaced sweep.
pub fn draw_sweep(
    rows: &[SweepRow],
    scenario: &str,
    strategy: &str,
    partial: bool,
    log_x: bool,
    path: &Path,
) -> anyhow::Result<()> {
    let points: Vec<SweepPoint> = rows
        .iter()
        .map(|r| SweepPoint {
            variant: r.variant.clone(),
            x: r.value,
            runs: r.runs,
            leaks: r.leaks,
            rate: r.rate,
            ci_low: r.ci95_low,
            ci_high: r.ci95_high,
        })
        .collect();
    let (param, unit) = rows
        .first()
        .map_or(("", ""), |r| (r.param.as_str(), r.unit.as_str()));
    let title = format!(
        "Leak rate against {param} — {scenario}, {strategy} strategy{}",
        if partial { " (PARTIAL)" } else { "" }
    );
    // The error names the file.
    report::sweep_chart_scaled(&points, param, unit, &title, log_x, path)?;
    Ok(())
}

/// The stdout table: one line per point × variant. No wall-clock figures.
fn table(rows: &[SweepRow], strategy: &str, seed: u64, partial: bool) -> String {
    let mut s = String::new();
    if let Some(r) = rows.first() {
        s.push_str(&format!(
            "scenario {}  sweep {}  strategy {strategy}  seed {seed}{}\n",
            r.scenario,
            r.param,
            if partial {
                "  (PARTIAL: interrupted)"
            } else {
                ""
            }
        ));
    }
    s.push_str(&format!(
        "{:>12} {:<14} {:>10} {:>7} {:>6} {:>6} {:>10} {:>22}\n",
        "value", "variant", "runs", "leaks", "dead", "panic", "leak rate", "95% CI"
    ));
    for r in rows {
        s.push_str(&format!(
            "{:>12} {:<14} {:>10} {:>7} {:>6} {:>6} {:>10} {:>22}\n",
            show(r.value, &r.unit),
            r.variant,
            r.runs,
            r.leaks,
            r.deadlocks,
            r.panics,
            report::fmt_rate(r.rate),
            format!(
                "[{}, {}]",
                report::fmt_rate(r.ci95_low),
                report::fmt_rate(r.ci95_high)
            )
        ));
    }
    // Only when some expectation failed, as in `lbsim run`'s table.
    for r in rows.iter().filter(|r| r.client_failures > 0) {
        s.push_str(&format!(
            "client expectations failed in {} of {} runs of {} at {}\n",
            r.client_failures,
            r.runs,
            r.variant,
            show(r.value, &r.unit)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &Sweep) -> Vec<&str> {
        s.points.iter().map(|(t, _)| t.as_str()).collect()
    }

    #[test]
    fn probabilities_evenly_spaced_without_float_noise() {
        let s = parse_param("runtime.pause_prob=0.0002..0.002:4", false).unwrap();
        assert_eq!(texts(&s), ["0.0002", "0.0008", "0.0014", "0.002"]);
        assert_eq!(s.unit, "per step");
    }

    #[test]
    fn default_five_steps_and_log_spacing() {
        let s = parse_param("runtime.pause_prob=0.0001..0.01", true).unwrap();
        assert_eq!(
            texts(&s),
            ["0.0001", "0.000316227766", "0.001", "0.00316227766", "0.01"]
        );
    }

    #[test]
    fn durations_in_one_unit() {
        let s = parse_param("balancer.init_timeout=1ms..20ms:3", false).unwrap();
        assert_eq!(texts(&s), ["1000000ns", "10500000ns", "20000000ns"]);
        assert_eq!(s.unit, "ms");
        let xs: Vec<f64> = s.points.iter().map(|p| p.1).collect();
        assert_eq!(xs, [1.0, 10.5, 20.0]);
    }

    #[test]
    fn counts_rounded_and_deduplicated() {
        let s = parse_param("runtime.gomaxprocs=1..3:5", false).unwrap();
        assert_eq!(texts(&s), ["1", "2", "3"]);
    }

    #[test]
    fn bad_params_say_how_to_fix_them() {
        for (text, needle) in [
            ("runtime.pause_prob", "no `=`"),
            ("runtime.bogus=1..2", "sweepable parameters"),
            ("runtime.pause=1ms..2ms", "runtime.pause_prob"),
            (
                "runtime.pause_prob=0.002..0.001",
                "write the smaller value first",
            ),
            ("runtime.pause_prob=0.001..0.002:0", "0 steps"),
            ("runtime.pause_prob=0.001..0.002:x", "not a number of steps"),
            ("balancer.init_timeout=1..20", "has no unit"),
            ("runtime.gomaxprocs=1.5..4", "whole number"),
            ("runtime.pause_prob=0..0.1", ""),
            ("runtime.pause_prob=0.1-0.2", "FROM..TO"),
            ("run.seed=1..4", "--seed"),
        ] {
            match parse_param(text, false) {
                Err(e) => assert!(e.contains(needle), "{text}: {e}"),
                Ok(s) => assert_eq!(text, "runtime.pause_prob=0..0.1", "{text}: {s:?}"),
            }
        }
        assert!(
            parse_param("runtime.pause_prob=0..0.1", true)
                .unwrap_err()
                .contains("above zero")
        );
    }
}
