//! `lbsim replay SCENARIO --variant V --seed S`: re-runs one run exactly and
//! explains it: the trace, a goleak-style report of what leaked, and the
//! outcome as the last line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail};

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
    let variant = one_variant(&args.variant, "replay")?;
    // The files are checked before the run, so that one cannot be written
    // after the other was.
    if let Some(path) = &args.trace {
        check_output_file("--trace", path)?;
    }
    if let Some(path) = &args.timeline {
        let ext = path.extension().and_then(|e| e.to_str());
        if !ext.is_some_and(|e| e.eq_ignore_ascii_case("png") || e.eq_ignore_ascii_case("svg")) {
            bail!(
                "--timeline {}: the picture format is chosen by the extension; use a .png or .svg file name",
                path.display()
            );
        }
        check_output_file("--timeline", path)?;
    }
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
            report::write_atomic(path, &text)?;
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
        let opts = report::TimelineOptions {
            end: Some(report::TimelineEnd::of(&report)),
            ..report::TimelineOptions::default()
        };
        // The error names the file.
        report::timeline_with(trace, &title, path, &opts)?;
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
    let divergence = sim.strategy().divergence();
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
    match &divergence {
        // This run is not the recorded one: its outcome is not the answer.
        Some(why) => out.push_str(&format!(
            "outcome: not reproduced (schedule not followed from {why}; the run went on without it and ended {})\n",
            report.outcome
        )),
        None => out.push_str(&format!("outcome: {}\n", report.outcome)),
    }
    super::print_stdout(&out)?;
    if let Some(why) = divergence {
        return Err(schedule_not_followed(&why));
    }
    Ok(ExitCode::SUCCESS)
}

/// The error of a `--schedule` that the run could not follow.
pub(super) fn schedule_not_followed(why: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "--schedule: not followed (steps count from 0) at {why}; the schedule does not fit \
         this scenario and variant: use the scenario file and --variant it was recorded with"
    )
}

/// `--variant` of a command that runs one variant (`replay`, `explore`,
/// `minimize`): `all` or a list is refused with the names to choose from.
pub(super) fn one_variant(text: &str, command: &str) -> anyhow::Result<Variant> {
    Variant::parse(text).map_err(|_| {
        let choices = Variant::ALL
            .iter()
            .map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let text = text.trim();
        if text == "all" || text.contains(',') {
            anyhow!("--variant {text}: {command} runs one variant; choose one of {choices}")
        } else {
            anyhow!(
                "--variant: unknown variant `{text}`; {command} runs one variant; choose one of {choices}"
            )
        }
    })
}

/// Checks before the run that `path` (given with `flag`) can be written:
/// its directory is created if missing.
fn check_output_file(flag: &str, path: &Path) -> anyhow::Result<()> {
    let Some(name) = path.file_name() else {
        bail!(
            "{flag} {}: not a file name; give the path of a file",
            path.display()
        );
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    super::run::check_outputs(flag, path, dir, &[name])
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
