//! `lbsim explore SCENARIO --variant V --preemption-bound K`: every schedule
//! of the scenario with at most K preemptions, depth first; reports how many
//! there were, whether the space was exhausted, and each failure with the
//! command that replays it.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::anyhow;
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::experiment::search::{self, Exploration};
use crate::grpc::Variant;
use crate::scenario::Scenario;
use crate::scenario::driver::GrpcModel;
use crate::sim::strategy::Reduction;
use crate::sim::{Outcome, RunConfig, Schedule, Sim};

use super::FailOn;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct ExploreArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// The variant to explore (one).
    #[arg(long)]
    pub variant: String,
    /// Most preemptions per schedule. A switch away from a task that could
    /// continue costs one, and so does firing a timer before its deadline
    /// (firing one early while a task could continue costs two). Switches
    /// forced by blocking, and the choice right after a timer fired, are
    /// free.
    #[arg(long)]
    pub preemption_bound: u32,
    /// Stop after this many schedules (the report then says `complete: false`).
    #[arg(long)]
    pub max_schedules: Option<u64>,
    /// Stop after this many seconds of wall time (then `complete: false`).
    #[arg(long)]
    pub max_seconds: Option<f64>,
    /// Seed of the runs (data randomness only; the schedule is enumerated)
    /// [default: the scenario's `run.seed`].
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also bound the model choices (which ready case a Go `select` takes,
    /// map iteration order): at most this many per schedule differ from the
    /// first alternative [default: all enumerated].
    #[arg(long)]
    pub choice_bound: Option<u32>,
    /// How reorderings of explored schedules are skipped: `sleep-sets`
    /// tries every alternative whose task is awake, and reaches every
    /// outcome the plain search reaches; `dpor` tries an alternative only
    /// where an explored execution has a race that needs it (faster, but
    /// under a preemption bound it can miss schedules: use it to hunt, not
    /// to prove absence); `none` explores every schedule within the bounds
    /// (slowest; for checking the others).
    #[arg(long, value_enum, default_value_t = ReductionArg::SleepSets)]
    pub reduction: ReductionArg,
    /// Explore only the schedules that begin with this schedule's decisions
    /// (as `replay --schedule` takes it; its preemptions count towards the
    /// bound, its seed is the runs' seed unless `--seed` is given): for
    /// example, everything within the bound around a failure's prefix.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Worker threads [default: the number of CPUs]. The search is split
    /// into the branches off its first schedule whatever the number, so a
    /// search that completes reports the same whatever it is. Not with
    /// `--reduction dpor`, which runs on one thread.
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Failing schedules to print in full, and as many with a failed
    /// client expectation (all are counted).
    #[arg(long, default_value_t = 3)]
    pub show: usize,
    /// Exit with code 1 if any schedule had this outcome (`client`: a
    /// failed client expectation).
    #[arg(long, value_enum)]
    pub fail_on: Vec<FailOn>,
}

/// `--reduction`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ReductionArg {
    Dpor,
    SleepSets,
    None,
}

impl From<ReductionArg> for Reduction {
    fn from(r: ReductionArg) -> Self {
        match r {
            ReductionArg::Dpor => Reduction::Dpor,
            ReductionArg::SleepSets => Reduction::SleepSets,
            ReductionArg::None => Reduction::None,
        }
    }
}

pub fn explore(args: ExploreArgs) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(&args.scenario)?;
    let variant = super::replay::one_variant(&args.variant, "explore")?;
    if args.max_schedules == Some(0) {
        return Err(anyhow!(
            "--max-schedules 0: must be at least 1 (up to {}); leave it out for no limit",
            u64::MAX
        ));
    }
    if let Some(s) = args.max_seconds
        && !(s > 0.0 && Duration::try_from_secs_f64(s).is_ok())
    {
        return Err(anyhow!(
            "--max-seconds {s}: must be a number of seconds above 0 (such as 0.5 or 60); leave it out for no limit"
        ));
    }
    let model = GrpcModel::new(&scenario);
    let prefix = match &args.prefix {
        Some(text) => Some(Schedule::parse(text).map_err(|e| anyhow!("--prefix: {e}"))?),
        None => None,
    };
    let seed = args
        .seed
        .or(prefix.as_ref().map(|p| p.seed))
        .unwrap_or(scenario.run.seed);
    let cfg = model.run_config(seed);
    let jobs = match (args.jobs, args.reduction) {
        (Some(0), _) => return Err(anyhow!("--jobs: must be at least 1")),
        (Some(j), ReductionArg::Dpor) if j > 1 => {
            return Err(anyhow!(
                "--jobs {j}: a DPOR search runs on one thread; drop --jobs or use --reduction sleep-sets"
            ));
        }
        (Some(j), _) => j,
        (None, _) => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut how = search::Search::bounded(args.preemption_bound).with(args.reduction.into());
    how.choice_bound = args.choice_bound;
    how.prefix = prefix
        .map(|p| p.steps.iter().map(|s| s.kind).collect())
        .unwrap_or_default();
    super::run::install_ctrlc();
    how.stop = Some(&super::run::STOP);
    // On a terminal: schedules so far, their rate, failures and redundant
    // runs (the size of the space is not known in advance).
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {pos} schedules  {per_sec}  {elapsed}  {msg}")
                .expect("valid progress template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        ProgressBar::hidden()
    };
    let (failures, redundant) = (AtomicU64::new(0), AtomicU64::new(0));
    let run = || {
        |sim: &mut Sim, cfg: &RunConfig| {
            let (r, check) = model.run_report(variant, sim, cfg);
            if sim.strategy().redundant() {
                redundant.fetch_add(1, Ordering::Relaxed);
            } else {
                bar.inc(1);
                failures.fetch_add(u64::from(r.outcome.is_failure()), Ordering::Relaxed);
            }
            if !bar.is_hidden() {
                bar.set_message(format!(
                    "failures {}, redundant runs {}",
                    failures.load(Ordering::Relaxed),
                    redundant.load(Ordering::Relaxed)
                ));
            }
            search::Ran {
                report: r,
                client_error: check.client_errors.into_iter().next(),
            }
        }
    };
    let max_time = args.max_seconds.map(Duration::from_secs_f64);
    let ex = if how.reduction == Reduction::Dpor {
        search::explore(how, args.max_schedules, max_time, args.show, &cfg, run())
    } else {
        search::explore_split(
            how,
            jobs,
            args.max_schedules,
            max_time,
            args.show,
            &cfg,
            run,
        )
    };
    bar.finish_and_clear();
    let out = match args.format {
        Format::Table => table(&args, &scenario.name, variant, &ex),
        Format::Json => json(&args, &scenario.name, variant, seed, &ex),
    };
    super::print_stdout(&out)?;
    if ex.interrupted {
        eprintln!("interrupted: the report covers only the schedules explored before Ctrl-C");
        return Ok(ExitCode::from(super::EXIT_INTERRUPTED));
    }
    let failed = args
        .fail_on
        .iter()
        .any(|f| f.hit(|o| ex.count(o), ex.client_failures));
    Ok(if failed {
        ExitCode::from(super::EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn replay_command(scenario: &Path, variant: Variant, schedule: &str) -> String {
    format!(
        "lbsim replay {} --variant {variant} --schedule {schedule}",
        scenario.display()
    )
}

fn table(args: &ExploreArgs, name: &str, variant: Variant, ex: &Exploration) -> String {
    let mut s = format!(
        "scenario {name}, variant {variant}, preemption bound {}{}\n",
        args.preemption_bound,
        args.choice_bound
            .map_or(String::new(), |c| format!(", choice bound {c}"))
    );
    s.push_str(&format!(
        "schedules: {}  complete: {}{}  time: {:.1} s  ({:.0} schedules/s)\n",
        ex.schedules,
        ex.complete,
        if ex.interrupted { " (interrupted)" } else { "" },
        ex.elapsed.as_secs_f64(),
        ex.per_second()
    ));
    let given = ex.prefix_given;
    if given > 0 {
        s.push_str(&format!(
            "prefix: the first {} of its {given} decisions fixed{}\n",
            ex.prefix_followed,
            if ex.prefix_followed < given {
                " (the next one was not possible; the search went on from there)"
            } else {
                ""
            }
        ));
    }
    s.push_str(&format!(
        "longest run: {} decisions; most preemptions used: {}\n",
        ex.max_steps, ex.max_preemptions
    ));
    if ex.reduction == Reduction::None {
        s.push_str("reduction: none\n");
    } else {
        s.push_str(&format!(
            "reduction: {}; {} alternatives pruned (task asleep), {} executions found redundant\n",
            ex.reduction.as_str(),
            ex.pruned,
            ex.redundant
        ));
    }
    if ex.branches > 0 {
        s.push_str(&format!(
            "split into {} branches off the first schedule\n",
            ex.branches
        ));
    }
    let outcomes: Vec<String> = ex
        .outcomes
        .iter()
        .map(|(o, n)| format!("{o} {n}"))
        .collect();
    s.push_str(&format!("outcomes: {}\n", outcomes.join(", ")));
    s.push_str(&format!(
        "failures: {} (leak {}, deadlock {}, panic {}, limit {})\n",
        ex.failures_total(),
        ex.count(Outcome::Leak),
        ex.count(Outcome::Deadlock),
        ex.count(Outcome::Panic),
        ex.count(Outcome::Limit)
    ));
    for f in &ex.failures {
        let text = f.schedule.to_string();
        s.push_str(&format!(
            "\n{} at schedule #{} after {:.1} s ({} preemptions)\n  schedule: {text}\n  {}\n",
            f.outcome,
            f.index,
            f.after.as_secs_f64(),
            f.preemptions,
            replay_command(&args.scenario, variant, &text)
        ));
    }
    if (ex.failures.len() as u64) < ex.failures_total() {
        s.push_str(&format!(
            "({} more failing schedules not shown; --show N prints more)\n",
            ex.failures_total() - ex.failures.len() as u64
        ));
    }
    if ex.client_failures > 0 {
        s.push_str(&format!(
            "\nclient expectations failed: {} schedules\n",
            ex.client_failures
        ));
        for c in &ex.first_client_failures {
            let f = &c.found;
            let text = f.schedule.to_string();
            s.push_str(&format!(
                "\nclient expectation failed at schedule #{} after {:.1} s ({} preemptions; outcome {})\n  {}\n  schedule: {text}\n  {}\n",
                f.index,
                f.after.as_secs_f64(),
                f.preemptions,
                f.outcome,
                c.error,
                replay_command(&args.scenario, variant, &text)
            ));
        }
        if (ex.first_client_failures.len() as u64) < ex.client_failures {
            s.push_str(&format!(
                "({} more not shown; --show N prints more)\n",
                ex.client_failures - ex.first_client_failures.len() as u64
            ));
        }
    }
    s
}

fn json(args: &ExploreArgs, name: &str, variant: Variant, seed: u64, ex: &Exploration) -> String {
    let found = |f: &search::Found| {
        let text = f.schedule.to_string();
        serde_json::json!({
            "outcome": f.outcome.as_str(),
            "index": f.index,
            "after_s": f.after.as_secs_f64(),
            "preemptions": f.preemptions,
            "schedule": text,
            "replay": replay_command(&args.scenario, variant, &text),
        })
    };
    let failures: Vec<serde_json::Value> = ex.failures.iter().map(found).collect();
    let client: Vec<serde_json::Value> = ex
        .first_client_failures
        .iter()
        .map(|c| {
            let mut v = found(&c.found);
            v["error"] = c.error.clone().into();
            v
        })
        .collect();
    let v = serde_json::json!({
        "scenario": name,
        "variant": variant.as_str(),
        "strategy": format!("exhaustive:{}", args.preemption_bound),
        "preemption_bound": args.preemption_bound,
        "choice_bound": args.choice_bound,
        "seed": seed,
        "schedules": ex.schedules,
        "complete": ex.complete,
        "interrupted": ex.interrupted,
        "runs": ex.schedules,
        "leaks": ex.count(Outcome::Leak),
        "deadlocks": ex.count(Outcome::Deadlock),
        "panics": ex.count(Outcome::Panic),
        "limits": ex.count(Outcome::Limit),
        "failures": ex.failures_total(),
        "first_failures": failures,
        "client_failures": ex.client_failures,
        "first_client_failures": client,
        "max_preemptions": ex.max_preemptions,
        "max_steps": ex.max_steps,
        "elapsed_s": ex.elapsed.as_secs_f64(),
        "schedules_per_s": ex.per_second(),
        "reduction": ex.reduction.as_str(),
        "prefix_decisions": ex.prefix_given,
        "prefix_followed": ex.prefix_followed,
        "pruned_alternatives": ex.pruned,
        "redundant_executions": ex.redundant,
        "branches": ex.branches,
    });
    format!("{v}\n")
}
