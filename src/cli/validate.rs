//! `lbsim validate SCENARIO`: load a scenario and report the first problem.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::scenario::Scenario;

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
}

pub fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let s = Scenario::load(&args.scenario)?;
    super::print_stdout(&format!(
        "ok: {}: scenario `{}`: {} backend(s) in {} priorities, {} scripted health transition(s), {} client step(s)\n",
        args.scenario.display(),
        s.name,
        s.backends.len(),
        s.priorities.len(),
        s.health.len(),
        s.client.steps.len()
    ))?;
    Ok(ExitCode::SUCCESS)
}
