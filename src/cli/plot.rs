//! `lbsim plot summary.csv`: the leak-rate chart of a run's summary.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::report::{self, RateBar, SummaryRow};

#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    /// A summary.csv written by `lbsim run` or `lbsim merge`.
    pub summary: PathBuf,
    /// Output file, .png or .svg [default: leak_rate.png and leak_rate.svg beside the CSV].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Chart title [default: "Sub-balancer leak rate per variant — <scenario>"].
    #[arg(long)]
    pub title: Option<String>,
}

pub fn plot(args: PlotArgs) -> anyhow::Result<ExitCode> {
    let rows = report::read_summary_csv(&args.summary)?;
    let targets = match &args.out {
        Some(p) => vec![p.clone()],
        None => {
            let dir = args.summary.parent().unwrap_or(Path::new("."));
            vec![dir.join("leak_rate.png"), dir.join("leak_rate.svg")]
        }
    };
    for t in &targets {
        draw_leak_rate(&rows, t, args.title.as_deref())?;
        eprintln!("wrote {}", t.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The leak-rate chart of `rows`, titled with the scenario.
pub fn draw_leak_rate(rows: &[SummaryRow], path: &Path, title: Option<&str>) -> anyhow::Result<()> {
    let bars: Vec<RateBar> = rows
        .iter()
        .map(|r| RateBar {
            variant: r.variant.clone(),
            strategy: r.strategy.clone(),
            runs: r.runs,
            leaks: r.leaks,
            rate: r.rate,
            ci_low: r.ci95_low,
            ci_high: r.ci95_high,
        })
        .collect();
    let scenario = rows.first().map_or("", |r| r.scenario.as_str());
    let title = title.map_or_else(
        || format!("Sub-balancer leak rate per variant — {scenario}"),
        str::to_string,
    );
    // The chart's own error names the file and the cause.
    report::leak_rate_chart(&bars, &title, path)?;
    Ok(())
}
