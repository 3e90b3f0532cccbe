//! `lbsim minimize SCENARIO --variant V (--seed S | --schedule X)`: takes a
//! failing run, records its schedule and shrinks it to the schedule with the
//! fewest preemptions (then the fewest recorded steps) that still fails the
//! same oracle; prints it, its trace and the command that replays it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail};

use crate::experiment::search;
use crate::scenario::Scenario;
use crate::scenario::driver::GrpcModel;
use crate::sim::strategy::Replay;
use crate::sim::{RunConfig, Sim};

#[derive(clap::Args, Debug)]
pub struct MinimizeArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// The variant to run (one).
    #[arg(long)]
    pub variant: String,
    /// Seed of a failing run, as `lbsim run` reports it.
    #[arg(long, required_unless_present = "schedule")]
    pub seed: Option<u64>,
    /// timed, random or pct:D [default: the scenario's `run.strategy`].
    #[arg(long, conflicts_with = "schedule")]
    pub strategy: Option<String>,
    /// A recorded failing schedule (`<seed>:<steps>`, as `explore` prints it).
    #[arg(long, conflicts_with = "seed")]
    pub schedule: Option<String>,
    /// Print only the summary, not the trace.
    #[arg(long)]
    pub no_trace: bool,
}

pub fn minimize(args: MinimizeArgs) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(&args.scenario)?;
    let variant = super::replay::one_variant(&args.variant, "minimize")?;
    let model = GrpcModel::new(&scenario);

    // The failing run, recorded.
    let (strategy, seed) = super::reproducing_strategy(
        &scenario,
        &model,
        args.seed,
        args.strategy.as_deref(),
        args.schedule.as_deref(),
    )?;
    let cfg = RunConfig {
        record: true,
        ..model.run_config(seed)
    };
    let mut sim = Sim::new(strategy);
    let (report, _) = model.run_report(variant, &mut sim, &cfg);
    // A schedule that could not be followed gave some other run: it is not
    // the failure asked about.
    if let Some(why) = sim.strategy().divergence() {
        return Err(super::replay::schedule_not_followed(&why));
    }
    if !report.outcome.is_failure() {
        bail!(
            "that run of {variant} ends `{}`: there is no failure to minimize",
            report.outcome
        );
    }
    let recorded = report.schedule.clone().expect("recording was on");
    let m = search::minimize(&recorded, report.outcome, &cfg, |sim, cfg| {
        model.run_report(variant, sim, cfg).0
    })
    .ok_or_else(|| anyhow!("the recorded schedule does not reproduce the failure"))?;

    let text = m.schedule.to_string();
    let mut out = String::new();
    // One replay of the result, traced unless --no-trace.
    let mut sim = Sim::new(Box::new(Replay::new(m.schedule.clone())));
    let replay_cfg = RunConfig {
        trace: !args.no_trace,
        ..cfg.clone()
    };
    let (r, check) = model.run_report(variant, &mut sim, &replay_cfg);
    if !args.no_trace {
        out.push_str(&r.trace.as_ref().expect("tracing was on").render_marked());
        out.push('\n');
        out.push_str(&r.describe());
        for c in &check.unclosed {
            out.push_str(&format!("never closed: {c}\n"));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "original: {} preemptions, {} decisions ({} recorded steps)\n",
        m.original_preemptions,
        m.original_steps,
        recorded.steps.len()
    ));
    out.push_str(&format!(
        "minimized: {} preemptions ({} of them timer fires), {} decisions, {} recorded steps ({} replays tried)\n",
        m.preemptions,
        r.timer_preemptions,
        m.steps,
        m.schedule.steps.len(),
        m.attempts
    ));
    out.push_str(&format!("schedule: {text}\n"));
    out.push_str(&format!(
        "replay: lbsim replay {} --variant {variant} --schedule {text}\n",
        args.scenario.display()
    ));
    out.push_str(&format!("outcome: {}\n", m.outcome));
    super::print_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}
