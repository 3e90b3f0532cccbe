//! Results as rows: `summary.csv` (one row per variant × strategy, with the
//! counts needed to merge shards exactly), `failures.csv` (one row per failing
//! run, with the command that replays it), JSON lines, the stdout table, and
//! the shard merge. Files are written atomically (temp file + rename).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::experiment::stats::{mcnemar_exact, wilson95};
use crate::experiment::{Experiment, ExperimentResult, Failure};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a summary.csv written by lbsim: {source}")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("cannot merge: {0}")]
    Merge(String),
}

/// One row of `summary.csv`, one JSON line of `run --format json`.
///
/// `rate` is the leak rate `leaks / runs`; the interval is Wilson's at 95%.
/// `base_only`/`variant_only` count the runs (same seed) where only the
/// baseline (`paired_with`) or only this variant leaked; `mcnemar_p` is the
/// exact McNemar p-value of that difference. `elapsed_s` and `runs_per_s` are
/// wall-clock figures for information; nothing else depends on them. Each run
/// index executes every variant, so `runs_per_s` is this variant's runs over
/// the whole experiment's time; multiply by the number of rows for all runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub scenario: String,
    pub variant: String,
    pub strategy: String,
    /// The master seed.
    pub seed: u64,
    /// Runs per variant of the whole experiment (all shards).
    pub runs_total: u64,
    /// The run indices this row covers: `run_from..run_to`.
    pub run_from: u64,
    pub run_to: u64,
    pub runs: u64,
    pub ok: u64,
    pub leaks: u64,
    pub deadlocks: u64,
    pub panics: u64,
    pub limits: u64,
    pub steps: u64,
    pub preemptions: u64,
    pub rate: f64,
    pub ci95_low: f64,
    pub ci95_high: f64,
    pub first_failure_index: Option<u64>,
    /// The value `lbsim replay --seed` takes to reproduce the first failure.
    pub first_failure_seed: Option<u64>,
    pub first_failure_oracle: Option<String>,
    pub paired_with: Option<String>,
    pub base_only: Option<u64>,
    pub variant_only: Option<u64>,
    pub mcnemar_p: Option<f64>,
    pub partial: bool,
    pub elapsed_s: f64,
    pub runs_per_s: f64,
}

impl SummaryRow {
    /// Recomputes the derived columns (rate, interval, p-value, speed) from the counts.
    fn derive(&mut self) {
        self.rate = if self.runs == 0 {
            0.0
        } else {
            self.leaks as f64 / self.runs as f64
        };
        (self.ci95_low, self.ci95_high) = wilson95(self.leaks, self.runs);
        self.mcnemar_p = match (self.base_only, self.variant_only) {
            (Some(b), Some(c)) => Some(mcnemar_exact(b, c)),
            _ => None,
        };
        self.runs_per_s = if self.elapsed_s > 0.0 {
            (self.runs as f64 / self.elapsed_s).round()
        } else {
            0.0
        };
    }

    fn key(&self) -> (&str, &str, &str, u64, u64) {
        (
            &self.scenario,
            &self.variant,
            &self.strategy,
            self.seed,
            self.runs_total,
        )
    }
}

/// One row of `failures.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailureRow {
    pub run_index: u64,
    pub seed: u64,
    pub variant: String,
    pub strategy: String,
    pub oracle: String,
    /// Tasks alive at the end, `; `-separated.
    pub leaked: String,
    pub replay: String,
}

/// The summary rows of an experiment, in the order of its variants.
pub fn summary_rows(
    scenario: &str,
    exp: &Experiment,
    result: &ExperimentResult,
) -> Vec<SummaryRow> {
    let elapsed_s = (result.elapsed.as_secs_f64() * 1e3).round() / 1e3;
    result
        .summaries
        .iter()
        .map(|s| {
            let c = &s.counts;
            let mut row = SummaryRow {
                scenario: scenario.to_string(),
                variant: s.variant.as_str().to_string(),
                strategy: exp.strategy.label(),
                seed: exp.master_seed,
                runs_total: exp.runs,
                run_from: result.range.start,
                run_to: result.range.end,
                runs: c.runs,
                ok: c.ok,
                leaks: c.leaks,
                deadlocks: c.deadlocks,
                panics: c.panics,
                limits: c.limits,
                steps: c.steps,
                preemptions: c.preemptions,
                rate: 0.0,
                ci95_low: 0.0,
                ci95_high: 0.0,
                first_failure_index: s.first_failure.map(|f| f.index),
                first_failure_seed: s.first_failure.map(|f| f.seed),
                first_failure_oracle: s.first_failure.map(|f| f.outcome.as_str().to_string()),
                paired_with: s.paired.map(|(b, _)| b.as_str().to_string()),
                base_only: s.paired.map(|(_, d)| d.base_only),
                variant_only: s.paired.map(|(_, d)| d.variant_only),
                mcnemar_p: None,
                partial: result.partial,
                elapsed_s,
                runs_per_s: 0.0,
            };
            row.derive();
            row
        })
        .collect()
}

/// `lbsim replay ...` for one run, with the scenario path quoted for a shell if needed.
pub fn replay_command(scenario_path: &Path, variant: &str, seed: u64, strategy: &str) -> String {
    format!(
        "lbsim replay {} --variant {variant} --seed {seed} --strategy {strategy}",
        shell_quote(&scenario_path.display().to_string())
    )
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./+:=@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

pub fn failure_rows(scenario_path: &Path, strategy: &str, failures: &[Failure]) -> Vec<FailureRow> {
    failures
        .iter()
        .map(|f| FailureRow {
            run_index: f.index,
            seed: f.seed,
            variant: f.variant.as_str().to_string(),
            strategy: strategy.to_string(),
            oracle: f.result.outcome.as_str().to_string(),
            leaked: f.result.leaked.join("; "),
            replay: replay_command(scenario_path, f.variant.as_str(), f.seed, strategy),
        })
        .collect()
}

/// CSV text of rows, header first (a header is written even with no rows).
pub fn to_csv<T: Serialize>(rows: &[T], header: &[&str]) -> Result<String, csv::Error> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    w.write_record(header)?;
    for r in rows {
        w.serialize(r)?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).expect("csv output is UTF-8"))
}

pub const SUMMARY_HEADER: &[&str] = &[
    "scenario",
    "variant",
    "strategy",
    "seed",
    "runs_total",
    "run_from",
    "run_to",
    "runs",
    "ok",
    "leaks",
    "deadlocks",
    "panics",
    "limits",
    "steps",
    "preemptions",
    "rate",
    "ci95_low",
    "ci95_high",
    "first_failure_index",
    "first_failure_seed",
    "first_failure_oracle",
    "paired_with",
    "base_only",
    "variant_only",
    "mcnemar_p",
    "partial",
    "elapsed_s",
    "runs_per_s",
];

pub const FAILURES_HEADER: &[&str] = &[
    "run_index",
    "seed",
    "variant",
    "strategy",
    "oracle",
    "leaked",
    "replay",
];

pub fn summary_csv(rows: &[SummaryRow]) -> String {
    to_csv(rows, SUMMARY_HEADER).expect("summary rows serialize")
}

pub fn failures_csv(rows: &[FailureRow]) -> String {
    to_csv(rows, FAILURES_HEADER).expect("failure rows serialize")
}

/// One JSON object per row, one per line.
pub fn json_lines(rows: &[SummaryRow]) -> String {
    rows.iter()
        .map(|r| serde_json::to_string(r).expect("summary rows serialize") + "\n")
        .collect()
}

/// Writes `contents` to `path` through a temporary file in the same
/// directory and a rename, so readers never see a half-written file.
pub fn write_atomic(path: &Path, contents: &str) -> Result<(), ReportError> {
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

pub fn read_summary_csv(path: &Path) -> Result<Vec<SummaryRow>, ReportError> {
    let mut r = csv::Reader::from_path(path).map_err(|source| ReportError::Csv {
        path: path.to_path_buf(),
        source,
    })?;
    r.deserialize()
        .collect::<Result<Vec<SummaryRow>, _>>()
        .map_err(|source| ReportError::Csv {
            path: path.to_path_buf(),
            source,
        })
}

/// Combines shard summaries into the summary one unsharded run would give:
/// counts are summed, the first failure is the one with the smallest index,
/// derived columns are recomputed. Rows are grouped by (scenario, variant,
/// strategy, seed, runs_total) in order of first appearance. Overlapping
/// index ranges are an error (the same runs counted twice); missing ranges
/// make the merged row `partial`. `elapsed_s` becomes the sum over shards.
pub fn merge(rows: &[SummaryRow]) -> Result<Vec<SummaryRow>, ReportError> {
    let mut groups: Vec<Vec<&SummaryRow>> = Vec::new();
    for r in rows {
        match groups.iter_mut().find(|g| g[0].key() == r.key()) {
            Some(g) => g.push(r),
            None => groups.push(vec![r]),
        }
    }
    let mut out = Vec::new();
    for mut g in groups {
        g.sort_by_key(|r| (r.run_from, r.run_to));
        for w in g.windows(2) {
            if w[1].run_from < w[0].run_to {
                return Err(ReportError::Merge(format!(
                    "{} / {} / {}: run ranges {}..{} and {}..{} overlap; merge each shard's summary once",
                    w[0].scenario,
                    w[0].variant,
                    w[0].strategy,
                    w[0].run_from,
                    w[0].run_to,
                    w[1].run_from,
                    w[1].run_to
                )));
            }
        }
        let contiguous = g.windows(2).all(|w| w[0].run_to == w[1].run_from);
        let first = g[0];
        let mut m = first.clone();
        m.run_from = first.run_from;
        m.run_to = g.last().expect("non-empty group").run_to;
        m.partial = g.iter().any(|r| r.partial)
            || !contiguous
            || m.run_from != 0
            || m.run_to != m.runs_total;
        let sum = |f: fn(&SummaryRow) -> u64| g.iter().map(|r| f(r)).sum::<u64>();
        m.runs = sum(|r| r.runs);
        m.ok = sum(|r| r.ok);
        m.leaks = sum(|r| r.leaks);
        m.deadlocks = sum(|r| r.deadlocks);
        m.panics = sum(|r| r.panics);
        m.limits = sum(|r| r.limits);
        m.steps = sum(|r| r.steps);
        m.preemptions = sum(|r| r.preemptions);
        let ff = g
            .iter()
            .filter(|r| r.first_failure_index.is_some())
            .min_by_key(|r| r.first_failure_index);
        m.first_failure_index = ff.and_then(|r| r.first_failure_index);
        m.first_failure_seed = ff.and_then(|r| r.first_failure_seed);
        m.first_failure_oracle = ff.and_then(|r| r.first_failure_oracle.clone());
        if g.iter().any(|r| r.paired_with != first.paired_with) {
            return Err(ReportError::Merge(format!(
                "{} / {}: shards were paired with different baselines; run every shard with the same --variant list",
                first.scenario, first.variant
            )));
        }
        m.base_only = first
            .base_only
            .map(|_| g.iter().filter_map(|r| r.base_only).sum());
        m.variant_only = first
            .variant_only
            .map(|_| g.iter().filter_map(|r| r.variant_only).sum());
        m.elapsed_s = (g.iter().map(|r| r.elapsed_s).sum::<f64>() * 1e3).round() / 1e3;
        m.derive();
        out.push(m);
    }
    Ok(out)
}

fn fmt_rate(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else {
        format!("{x:.2e}")
    }
}

/// The human-readable table printed by `lbsim run`. Contains no wall-clock
/// figures, so it is identical for identical inputs.
pub fn table(rows: &[SummaryRow]) -> String {
    let mut s = String::new();
    if let Some(r) = rows.first() {
        s.push_str(&format!(
            "scenario {}  strategy {}  seed {}  runs {}..{} of {}{}\n",
            r.scenario,
            r.strategy,
            r.seed,
            r.run_from,
            r.run_to,
            r.runs_total,
            if r.partial {
                "  (PARTIAL: interrupted)"
            } else {
                ""
            }
        ));
    }
    s.push_str(&format!(
        "{:<14} {:>10} {:>8} {:>6} {:>6} {:>10} {:>22}  {}\n",
        "variant",
        "runs",
        "leaks",
        "dead",
        "panic",
        "leak rate",
        "95% CI",
        "vs baseline (leaked only in base / only here, McNemar p)"
    ));
    for r in rows {
        let paired = match (&r.paired_with, r.base_only, r.variant_only, r.mcnemar_p) {
            (Some(b), Some(x), Some(y), Some(p)) => format!("{b}: {x} / {y}, p = {}", fmt_p(p)),
            _ => "(baseline)".into(),
        };
        s.push_str(&format!(
            "{:<14} {:>10} {:>8} {:>6} {:>6} {:>10} {:>22}  {}\n",
            r.variant,
            r.runs,
            r.leaks,
            r.deadlocks,
            r.panics + r.limits,
            fmt_rate(r.rate),
            format!("[{}, {}]", fmt_rate(r.ci95_low), fmt_rate(r.ci95_high)),
            paired
        ));
    }
    for r in rows {
        if let Some(seed) = r.first_failure_seed {
            s.push_str(&format!(
                "first failure of {} ({}): run {} seed {seed}\n",
                r.variant,
                r.first_failure_oracle.as_deref().unwrap_or("?"),
                r.first_failure_index.unwrap_or(0)
            ));
        }
    }
    s
}

fn fmt_p(p: f64) -> String {
    if p < 1e-300 {
        "< 1e-300".into()
    } else if p >= 0.001 {
        format!("{p:.3}")
    } else {
        format!("{p:.1e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("scenarios/a.toml"), "scenarios/a.toml");
        assert_eq!(shell_quote("my dir/a.toml"), "'my dir/a.toml'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/summary.csv");
        write_atomic(&p, "a").unwrap();
        write_atomic(&p, "b").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "b");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
