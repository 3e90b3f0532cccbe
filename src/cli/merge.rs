//! `lbsim merge A.csv B.csv ... [--out FILE]`: combine shard summaries
//! exactly as one unsharded run would have produced them, and with `--out`
//! the failures.csv beside them and the leak-rate chart.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use crate::report::{self, SummaryFile, SummaryRow};

#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// summary.csv files of the shards, all of one run (same scenario, seed,
    /// strategy and --runs); together they must cover every run.
    #[arg(required = true)]
    pub summaries: Vec<PathBuf>,
    /// Where to write the merged summary.csv; without it the CSV goes to
    /// stdout. With it, the failures.csv found beside the inputs are merged
    /// into failures.csv beside it, and the leak-rate chart is drawn there.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Do not draw the leak-rate chart (leak_rate.png and .svg beside --out).
    #[arg(long)]
    pub no_plot: bool,
    /// Merge even if some runs are in none of the summaries (shards not
    /// given or not finished); the merged summary is then marked partial.
    #[arg(long)]
    pub allow_missing: bool,
}

pub fn merge(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let files = args
        .summaries
        .iter()
        .map(|p| {
            Ok(SummaryFile {
                path: p.clone(),
                rows: report::read_summary_csv(p)?,
            })
        })
        .collect::<Result<Vec<_>, report::ReportError>>()?;
    let merged = report::merge(&files, args.allow_missing)?;
    for note in &merged.notes {
        eprintln!("warning: {note}");
    }
    let Some(path) = &args.out else {
        super::print_stdout(&report::summary_csv(&merged.rows))?;
        return Ok(ExitCode::SUCCESS);
    };

    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let failures_path = dir.join("failures.csv");
    let failures = read_failures(&files, path, &failures_path)?;

    let mut wrote = vec![path.display().to_string()];
    report::write_atomic(path, &report::summary_csv(&merged.rows))
        .with_context(|| format!("writing {}", path.display()))?;
    if let Some(rows) = failures {
        let rows = report::merge_failures(rows, &merged.rows);
        report::write_atomic(&failures_path, &report::failures_csv(&rows))
            .with_context(|| format!("writing {}", failures_path.display()))?;
        wrote.push(failures_path.display().to_string());
    }
    if !args.no_plot && merged.rows.iter().any(|r| r.runs > 0) {
        for name in ["leak_rate.png", "leak_rate.svg"] {
            let chart = dir.join(name);
            super::plot::draw_leak_rate(&merged.rows, &chart, None)?;
            wrote.push(chart.display().to_string());
        }
    }
    super::print_stdout(&report::table(&merged.rows))?;
    eprintln!("wrote {}", wrote.join(", "));
    Ok(ExitCode::SUCCESS)
}

/// The same file, whether or not it exists yet.
fn same_file(a: &Path, b: &Path) -> bool {
    let canonical = |p: &Path| {
        p.canonicalize().ok().or_else(|| {
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
            let dir = dir.unwrap_or(Path::new(".")).canonicalize().ok()?;
            Some(dir.join(p.file_name()?))
        })
    };
    match (canonical(a), canonical(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The rows of the failures.csv beside each summary, checked against it;
/// `None` if no summary has one. Refuses to let the merged files replace
/// an input.
fn read_failures(
    files: &[SummaryFile],
    out: &Path,
    out_failures: &Path,
) -> anyhow::Result<Option<Vec<report::FailureRow>>> {
    let beside = |f: &SummaryFile| {
        f.path
            .parent()
            .unwrap_or(Path::new(""))
            .join("failures.csv")
    };
    let mut rows = Vec::new();
    // failures.csv merged, not found, and beside several summaries.
    let mut merged: Vec<String> = Vec::new();
    let mut absent: Vec<String> = Vec::new();
    let mut shared: Vec<String> = Vec::new();
    for f in files {
        if same_file(&f.path, out) {
            bail!(
                "--out {} is {}, one of the summaries to merge: write the merged summary to another file",
                out.display(),
                f.path.display()
            );
        }
        let path = beside(f);
        let shown = path.display().to_string();
        if [&merged, &absent, &shared]
            .iter()
            .any(|l| l.contains(&shown))
        {
            continue;
        }
        if !path.exists() {
            absent.push(shown);
            continue;
        }
        if same_file(&path, out_failures) {
            bail!(
                "--out {}: the merged failures.csv would replace {shown}, the failures of a shard: write the merged summary into another directory",
                out.display(),
            );
        }
        // Summaries in one directory: whose failures.csv is it?
        let sharing: Vec<String> = files
            .iter()
            .filter(|g| same_file(&beside(g), &path))
            .map(|g| g.path.display().to_string())
            .collect();
        if sharing.len() > 1 {
            eprintln!(
                "warning: {shown} is beside several summaries ({}), so it is not merged: keep each shard's summary.csv and failures.csv in a directory of their own",
                sharing.join(", ")
            );
            shared.push(shown);
            continue;
        }
        let shard_rows = report::read_failures_csv(&path)?;
        check_failures(&path, &f.path, &f.rows, &shard_rows)?;
        rows.extend(shard_rows);
        merged.push(shown);
    }
    if merged.is_empty() {
        eprintln!(
            "warning: wrote no merged failures.csv: no summary has a failures.csv of its own beside it{}{}",
            if absent.is_empty() {
                String::new()
            } else {
                format!(" ({} not found)", absent.join(", "))
            },
            if out_failures.exists() {
                format!(
                    "; {} is older and not from this merge",
                    out_failures.display()
                )
            } else {
                String::new()
            }
        );
        return Ok(None);
    }
    if !absent.is_empty() {
        eprintln!(
            "warning: {} not found: the merged failures.csv lacks the failing runs of {}",
            absent.join(", "),
            if absent.len() == 1 {
                "that shard"
            } else {
                "those shards"
            }
        );
    }
    Ok(Some(rows))
}

/// Checks that a failures.csv belongs to the summary.csv beside it, and
/// says on stderr if `--max-failures` left failing runs out of it.
fn check_failures(
    path: &Path,
    summary_path: &Path,
    summary: &[SummaryRow],
    rows: &[report::FailureRow],
) -> anyhow::Result<()> {
    for f in rows {
        let Some(s) = summary.iter().find(|s| s.variant == f.variant) else {
            bail!(
                "{}: run {} failed with variant {}, which {} beside it has no row for: the two files are not from the same run; run the shard again",
                path.display(),
                f.run_index,
                f.variant,
                summary_path.display()
            );
        };
        if !(s.run_from..s.run_to).contains(&f.run_index) || f.strategy != s.strategy {
            bail!(
                "{}: run {} ({}, strategy {}) is not one of the runs {}..{} (strategy {}) of {} beside it: the two files are not from the same run; run the shard again",
                path.display(),
                f.run_index,
                f.variant,
                f.strategy,
                s.run_from,
                s.run_to,
                s.strategy,
                summary_path.display()
            );
        }
    }
    // A row per run failing by its outcome, and one per run with a failed
    // client expectation.
    let failing: u64 = summary
        .iter()
        .map(|s| s.runs.saturating_sub(s.ok) + s.client_failures.unwrap_or(0))
        .sum();
    if (rows.len() as u64) < failing {
        eprintln!(
            "warning: {} keeps {} of the {failing} failing runs of {} (--max-failures): the merged failures.csv lacks the others",
            path.display(),
            rows.len(),
            summary_path.display()
        );
    }
    Ok(())
}
