//! `lbsim merge A.csv B.csv ... [--out FILE]`: combine shard summaries
//! exactly as one unsharded run would have produced them.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::report;

#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// summary.csv files of the shards.
    #[arg(required = true)]
    pub summaries: Vec<PathBuf>,
    /// Where to write the merged summary.csv; without it the CSV goes to stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Accepted for symmetry with `run`; charts come later.
    #[arg(long)]
    pub no_plot: bool,
}

pub fn merge(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    for p in &args.summaries {
        rows.extend(report::read_summary_csv(p)?);
    }
    let merged = report::merge(&rows)?;
    let csv = report::summary_csv(&merged);
    match &args.out {
        Some(path) => {
            report::write_atomic(path, &csv)?;
            super::print_stdout(&report::table(&merged))?;
        }
        None => super::print_stdout(&csv)?,
    }
    Ok(ExitCode::SUCCESS)
}
