//! The command-line interface: one file per subcommand.
//!
//! Flags are parsed by clap into raw argument structs, validated into the
//! library's types, and every error comes back here to be printed as
//! `error: ...` with exit code 2.

mod compare;
mod explore;
mod merge;
mod minimize;
mod plot;
mod replay;
mod run;
mod sweep;
mod validate;

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for bad input (unreadable or invalid files, bad flags).
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code when a run failed a `--fail-on` condition.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of a run stopped by Ctrl-C (its output is marked partial).
pub const EXIT_INTERRUPTED: u8 = 130;

/// What `--fail-on` of `run` and `explore` watches for (a schedule of
/// `explore` is one run).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// A run leaked.
    Leak,
    /// A run deadlocked.
    Deadlock,
    /// A run panicked or hit its step limit.
    Panic,
    /// A run did not end `ok`.
    Any,
    /// A run's client script had an expectation fail (`expect`,
    /// `rpc_until`).
    Client,
}

impl FailOn {
    /// Whether some run ended in an outcome this watches for; `count`
    /// gives the number of runs with each outcome, `client_failures` the
    /// number with a failed client expectation.
    pub fn hit(self, count: impl Fn(crate::sim::Outcome) -> u64, client_failures: u64) -> bool {
        use crate::sim::Outcome::{Deadlock, Leak, Limit, Panic};
        let watched: &[crate::sim::Outcome] = match self {
            FailOn::Leak => &[Leak],
            FailOn::Deadlock => &[Deadlock],
            FailOn::Panic => &[Panic, Limit],
            FailOn::Any => &[Leak, Deadlock, Panic, Limit],
            FailOn::Client => return client_failures > 0,
        };
        watched.iter().any(|&o| count(o) > 0)
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "lbsim",
    version,
    about = "Measure and explain rare races in gRPC-Go's priority load balancer"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a scenario many times per variant and report leak rates.
    Run(run::RunArgs),
    /// Re-run one run exactly and explain it (trace, leak report, outcome).
    Replay(replay::ReplayArgs),
    /// Run a scenario at several values of one parameter and chart the leak rate against it.
    Sweep(sweep::SweepArgs),
    /// Enumerate every schedule within a preemption bound and report failures.
    Explore(explore::ExploreArgs),
    /// Shrink a failing run to its fewest preemptions and print it.
    Minimize(minimize::MinimizeArgs),
    /// Draw the leak-rate chart of a summary.csv.
    Plot(plot::PlotArgs),
    /// Combine the summary.csv files of shards into one summary.
    Merge(merge::MergeArgs),
    /// Check a scenario file and report the first problem in it.
    Validate(validate::ValidateArgs),
    /// Predict the Go validation harness and set it beside the real grpc-go measurements.
    Compare(compare::CompareArgs),
    /// Print the version and the list of variants.
    Variants,
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_BAD_INPUT } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Replay(args) => replay::replay(args),
        Command::Sweep(args) => sweep::sweep(args),
        Command::Explore(args) => explore::explore(args),
        Command::Minimize(args) => minimize::minimize(args),
        Command::Plot(args) => plot::plot(args),
        Command::Merge(args) => merge::merge(args),
        Command::Validate(args) => validate::validate(args),
        Command::Compare(args) => compare::compare(args),
        Command::Variants => variants(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// `--strategy` if given, else the scenario's `run.strategy`.
fn strategy_kind(
    arg: Option<&str>,
    scenario: &crate::scenario::Scenario,
) -> anyhow::Result<crate::sim::strategy::StrategyKind> {
    match arg {
        Some(s) => crate::sim::strategy::StrategyKind::parse(s)
            .map_err(|e| anyhow::anyhow!("--strategy: {e}")),
        None => Ok(scenario.run.strategy.clone()),
    }
}

/// The strategy that reproduces one run and its seed: a recorded
/// `--schedule`, or the `--strategy` (default: the scenario's) with `--seed`.
fn reproducing_strategy(
    scenario: &crate::scenario::Scenario,
    model: &crate::scenario::driver::GrpcModel,
    seed: Option<u64>,
    strategy: Option<&str>,
    schedule: Option<&str>,
) -> anyhow::Result<(Box<dyn crate::sim::Strategy>, u64)> {
    use crate::experiment::Model as _;
    match schedule {
        Some(text) => {
            let schedule = crate::sim::Schedule::parse(text)
                .map_err(|e| anyhow::anyhow!("--schedule: {e}"))?;
            let seed = schedule.seed;
            Ok((Box::new(crate::sim::strategy::Replay::new(schedule)), seed))
        }
        None => {
            let kind = strategy_kind(strategy, scenario)?;
            let spec = crate::experiment::StrategySpec::new(
                &kind,
                &scenario.runtime,
                model.expected_steps(),
            );
            let seed = seed.ok_or_else(|| anyhow::anyhow!("--seed or --schedule is required"))?;
            Ok((spec.build(), seed))
        }
    }
}

fn variants() -> anyhow::Result<ExitCode> {
    let mut s = format!("lbsim {}\nvariants:\n", env!("CARGO_PKG_VERSION"));
    for v in crate::grpc::Variant::ALL {
        s.push_str(&format!("  {:<14} {}\n", v.as_str(), v.describe()));
    }
    print_stdout(&s)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints to stdout; a closed pipe (`lbsim run ... | head`) is not an error.
fn print_stdout(s: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}
