//! `lbsim replay SCENARIO --variant V --seed S`: re-runs one run exactly and
//! explains it: the trace, a goleak-style report of what leaked, and the
//! outcome as the last line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, anyhow};

use crate::grpc::Variant;
use crate::report;
use crate::scenario::Scenario;
use crate::scenario::driver::GrpcModel;
use crate::sim::{RunConfig, Sim, Trace};

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// The variant to run (one).
    #[arg(long)]
    pub variant: String,
    /// The run's seed, as `lbsim run` reports it (failures.csv, first_failure_seed).
    #[arg(long, required_unless_present = "schedule")]
    pub seed: Option<u64>,
    /// timed, random or pct:D [default: the scenario's `run.strategy`].
    #[arg(long)]
    pub strategy: Option<String>,
    /// A recorded schedule (`<seed>:<steps>`) to follow instead of a strategy.
    #[arg(long, conflicts_with = "seed")]
    pub schedule: Option<String>,
    /// Write the full trace to this file instead of printing it.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Draw the run's timeline to this .svg or .png file.
    #[arg(long)]
    pub timeline: Option<PathBuf>,
    /// Print the recorded schedule (for `--schedule`).
    #[arg(long)]
    pub print_schedule: bool,
}

pub fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(&args.scenario)?;
    let variant = Variant::parse(&args.variant).map_err(|e| anyhow!("--variant: {e}"))?;
    let model = GrpcModel::new(&scenario);
    let (strategy, seed) = super::reproducing_strategy(
        &scenario,
        &model,
        args.seed,
        args.strategy.as_deref(),
        args.schedule.as_deref(),
    )?;
    let mut sim = Sim::new(strategy);
    let cfg = RunConfig {
        trace: true,
        record: true,
        ..model.run_config(seed)
    };
    let (report, check) = model.run_report(variant, &mut sim, &cfg);
    let trace = report.trace.as_ref().expect("tracing was on");

    let mut out = String::new();
    let text = trace.render();
    match &args.trace {
        Some(path) => {
            report::write_atomic(path, &text)
                .with_context(|| format!("writing {}", path.display()))?;
            out.push_str(&format!(
                "trace: {} events written to {}\n",
                trace.events.len(),
                path.display()
            ));
        }
        None => out.push_str(&text),
    }
    if let Some(path) = &args.timeline {
        let title = format!("{} — {} seed {}", scenario.name, variant, seed);
        report::timeline(trace, &title, path, None)
            .with_context(|| format!("drawing {}", path.display()))?;
        out.push_str(&format!("timeline: {}\n", path.display()));
    }
    out.push('\n');
    out.push_str(&format!(
        "run: {} steps, {} preemptions ({} of them timer fires), {} tasks, ended at {} virtual, decision hash {:016x}, trace hash {:016x}\n",
        report.steps,
        report.preemptions,
        report.timer_preemptions,
        report.tasks_spawned,
        crate::sim::dist::fmt_duration(report.end_time),
        report.decision_hash,
        trace.hash()
    ));
    if args.print_schedule
        && let Some(s) = &report.schedule
    {
        out.push_str(&format!("schedule: {s}\n"));
    }
    if let Some(why) = sim.strategy().divergence() {
        out.push_str(&format!(
            "schedule not followed from {why} (steps count from 0); the run went on without that decision (a schedule recorded under another variant or scenario does not line up)\n"
        ));
    }
    for e in &check.client_errors {
        out.push_str(&format!("client: {e}\n"));
    }
    if report.outcome.is_failure() {
        let owners = child_of_tasks(trace);
        out.push_str(&report.describe());
        for t in &report.alive {
            if let Some(child) = owners.get(&t.name) {
                out.push_str(&format!(
                    "goroutine {} belongs to child policy {child}\n",
                    t.id
                ));
            }
        }
        for c in &check.unclosed {
            out.push_str(&format!("never closed: {c}\n"));
        }
        for (name, deadline) in &report.armed_timers {
            out.push_str(&format!(
                "timer still armed: {name} (fires at {})\n",
                crate::sim::dist::fmt_duration(*deadline)
            ));
        }
    }
    out.push_str(&format!("outcome: {}\n", report.outcome));
    super::print_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// Maps task names to the priority child they serve, from the notes the
/// policies write when they learn their child's name ("outlier_detection odN
/// serves priority-0-1").
fn child_of_tasks(trace: &Trace) -> BTreeMap<String, String> {
    let mut instance_child = BTreeMap::new();
    for e in &trace.events {
        if let Some(n) = &e.note
            && let Some(rest) = n.strip_prefix("outlier_detection ")
            && let Some((inst, child)) = rest.split_once(" serves ")
        {
            instance_child.insert(inst.to_string(), child.to_string());
        }
    }
    let mut out = BTreeMap::new();
    for (name, _) in &trace.tasks {
        if let Some(inst) = name
            .strip_prefix("outlier_detection.run[")
            .and_then(|r| r.strip_suffix(']'))
            && let Some(child) = instance_child.get(inst)
        {
            out.insert(name.to_string(), child.clone());
        }
    }
    out
}
