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
    #[error("{path}: cannot write")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    // `cause` is in the message, so it is not also the error's source
    // (which `{:#}` would print a second time).
    #[error("{path}: cannot read: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: not a {what} written by lbsim: {cause}")]
    Csv {
        path: PathBuf,
        what: &'static str,
        cause: csv::Error,
    },
    #[error("{path}: not a {what} written by lbsim: it has no `{missing}` column")]
    Columns {
        path: PathBuf,
        what: &'static str,
        missing: String,
    },
    #[error(
        "{path} has no rows; is it the summary.csv of a finished run? `lbsim run` writes one row per variant"
    )]
    Empty { path: PathBuf },
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
///
/// `client_failures` counts the runs in which the client script had an
/// expectation fail (`expect`, `rpc_until`), whatever their outcome; it is
/// not an outcome and not in `rate`. It and the index and seed of the first
/// such run are the last columns, so that readers of the older files keep
/// working; a summary.csv without them (written before they were added)
/// reads as `None`.
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
    pub client_failures: Option<u64>,
    pub first_client_failure_index: Option<u64>,
    /// The value `lbsim replay --seed` takes to reproduce the first run
    /// with a failed client expectation.
    pub first_client_failure_seed: Option<u64>,
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

/// The `oracle` of a `failures.csv` row for a run whose client had an
/// expectation fail.
pub const CLIENT_ORACLE: &str = "client";

/// One row of `failures.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailureRow {
    pub run_index: u64,
    pub seed: u64,
    pub variant: String,
    pub strategy: String,
    /// The outcome (`leak`, `deadlock`, `panic`, `limit`), or
    /// [`CLIENT_ORACLE`] for a failed client expectation.
    pub oracle: String,
    /// Tasks alive at the end, `; `-separated; for a `client` row, the
    /// client expectations that failed.
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
                client_failures: Some(c.client_failures),
                first_client_failure_index: s.first_client_failure.map(|f| f.index),
                first_client_failure_seed: s.first_client_failure.map(|f| f.seed),
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
            oracle: if f.client {
                CLIENT_ORACLE.to_string()
            } else {
                f.result.outcome.as_str().to_string()
            },
            leaked: if f.client {
                f.result.client_errors.join("; ")
            } else {
                f.result.leaked.join("; ")
            },
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
    "client_failures",
    "first_client_failure_index",
    "first_client_failure_seed",
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

/// The columns a summary.csv cannot do without (the others may be empty).
/// The first eight of [`SUMMARY_HEADER`], scenario to runs.
const SUMMARY_KEY_COLUMNS: &[&str] = SUMMARY_HEADER.split_at(8).0;

/// Reads a CSV file of `lbsim` with `columns` in its header (`what` names
/// the kind of file in messages). A file without a header has no rows.
fn read_csv<T: serde::de::DeserializeOwned>(
    path: &Path,
    columns: &[&str],
    what: &'static str,
) -> Result<Vec<T>, ReportError> {
    let file = std::fs::File::open(path).map_err(|cause| ReportError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    let csv_err = |cause| ReportError::Csv {
        path: path.to_path_buf(),
        what,
        cause,
    };
    let mut r = csv::Reader::from_reader(std::io::BufReader::new(file));
    let header = r.headers().map_err(csv_err)?.clone();
    if header.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(missing) = columns.iter().find(|c| !header.iter().any(|h| h == **c)) {
        return Err(ReportError::Columns {
            path: path.to_path_buf(),
            what,
            missing: (*missing).to_string(),
        });
    }
    r.deserialize()
        .collect::<Result<Vec<T>, _>>()
        .map_err(csv_err)
}

/// The rows of a `summary.csv`; a file without rows (empty, or a header
/// only) is an error: every finished run writes one row per variant.
pub fn read_summary_csv(path: &Path) -> Result<Vec<SummaryRow>, ReportError> {
    let rows: Vec<SummaryRow> = read_csv(path, SUMMARY_KEY_COLUMNS, "summary.csv")?;
    if rows.is_empty() {
        return Err(ReportError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(rows)
}

/// The rows of a `failures.csv` (none if the runs did not fail).
pub fn read_failures_csv(path: &Path) -> Result<Vec<FailureRow>, ReportError> {
    read_csv(path, FAILURES_HEADER, "failures.csv")
}

/// A `summary.csv` to merge: the path as the user gave it (for messages)
/// and its rows.
#[derive(Clone, Debug)]
pub struct SummaryFile {
    pub path: PathBuf,
    pub rows: Vec<SummaryRow>,
}

/// The result of [`merge`]: the merged rows and, if they are partial, notes
/// saying why (interrupted shards, missing run ranges), for stderr.
#[derive(Clone, Debug, PartialEq)]
pub struct Merged {
    pub rows: Vec<SummaryRow>,
    pub notes: Vec<String>,
}

/// The fix offered when shards of different runs are given.
const ONE_RUN: &str = "merge only shards of one run (same scenario, seed, strategy and --runs)";

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn fmt_range(r: &std::ops::Range<u64>) -> String {
    format!("{}..{}", r.start, r.end)
}

/// What differs between two rows in the columns every shard of one run shares.
fn run_differences(a: &SummaryRow, b: &SummaryRow) -> Vec<(String, String)> {
    let mut d = Vec::new();
    if a.scenario != b.scenario {
        d.push((
            format!("scenario {}", a.scenario),
            format!("scenario {}", b.scenario),
        ));
    }
    if a.seed != b.seed {
        d.push((format!("seed {}", a.seed), format!("seed {}", b.seed)));
    }
    if a.strategy != b.strategy {
        d.push((
            format!("strategy {}", a.strategy),
            format!("strategy {}", b.strategy),
        ));
    }
    if a.runs_total != b.runs_total {
        d.push((
            format!("runs_total {}", a.runs_total),
            format!("runs_total {}", b.runs_total),
        ));
    }
    d
}

/// Checks that a row's run range and counts fit together.
fn check_row(path: &Path, r: &SummaryRow) -> Result<(), ReportError> {
    let bad = |what: String| {
        Err(ReportError::Merge(format!(
            "{}: the row of variant {} {what}; the file was edited or damaged: merge the summary.csv files `lbsim run` wrote",
            path.display(),
            r.variant
        )))
    };
    if r.run_from > r.run_to || r.run_to > r.runs_total {
        return bad(format!(
            "covers runs {}..{} of {}, which is not a range of them",
            r.run_from, r.run_to, r.runs_total
        ));
    }
    let len = r.run_to - r.run_from;
    if r.runs > len || (!r.partial && r.runs != len) {
        return bad(format!(
            "counts {} runs in the {len} runs {}..{}{}",
            r.runs,
            r.run_from,
            r.run_to,
            if r.partial { "" } else { " and is not partial" }
        ));
    }
    Ok(())
}

/// Whether a row covers a whole shard: not partial, or partial with the
/// shard's range and fewer runs (an interrupted run that records the range
/// it ran ends where it stopped, not where a shard ends).
fn whole_shard(r: &SummaryRow) -> bool {
    !r.partial || r.runs < r.run_to - r.run_from
}

/// The shard count `N` with which every range in `ranges` starts where a
/// shard `I/N` of `total` runs does, and ends where one does if it is a
/// whole shard (the `bool`); the smallest if several `N` fit. The runs
/// missing between the ranges are then whole shards of `N`, except the end
/// of an interrupted one. Shards of different counts mix (`0/2` with `2/4`
/// and `3/4`).
fn shard_count(total: u64, ranges: &[(std::ops::Range<u64>, bool)]) -> Option<u64> {
    if total == 0 {
        return None;
    }
    let start = |i: u64, n: u64| (u128::from(total) * u128::from(i) / u128::from(n)) as u64;
    let index = |run: u64, n: u64| (u128::from(run) * u128::from(n)).div_ceil(u128::from(total));
    let boundary = |run: u64, n: u64| {
        let i = index(run, n);
        i <= u128::from(n) && start(i as u64, n) == run
    };
    // A shard of N has floor(total/N) or ceil(total/N) runs, so a range of
    // `len` runs is a shard of some N in total/(len+1) < N < total/(len-1).
    let mut lengths: Vec<u64> = ranges
        .iter()
        .filter(|(_, whole)| *whole)
        .map(|(r, _)| r.end - r.start)
        .filter(|&l| l > 0)
        .collect();
    lengths.sort_unstable();
    lengths.dedup();
    let mut candidates: Vec<u64> = lengths
        .iter()
        .flat_map(|&len| {
            let low = total / (len + 1) + 1;
            let high = if len == 1 {
                total
            } else {
                (total / (len - 1) + 1).min(total)
            };
            (low..=high).take(10_000)
        })
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    candidates.into_iter().find(|&n| {
        ranges
            .iter()
            .all(|(r, whole)| boundary(r.start, n) && (!whole || boundary(r.end, n)))
    })
}

/// `--shard 1/4 and 3/4`: the shards of `n` within `gaps`, and whether
/// there are several; runs of three or more consecutive shards are written
/// `I/N to J/N`. `None` if no whole shard is missing.
fn missing_shards(total: u64, n: u64, gaps: &[std::ops::Range<u64>]) -> Option<(String, bool)> {
    let index = |run: u64| (u128::from(run) * u128::from(n)).div_ceil(u128::from(total)) as u64;
    let mut items = Vec::new();
    for g in gaps {
        let (first, end) = (index(g.start), index(g.end));
        match end.saturating_sub(first) {
            0 => {}
            1 | 2 => items.extend((first..end).map(|i| format!("{i}/{n}"))),
            _ => items.push(format!("{first}/{n} to {}/{n}", end - 1)),
        }
    }
    let plural = items.len() > 1 || items.iter().any(|i| i.contains(" to "));
    (!items.is_empty()).then(|| (format!("--shard {}", and_list(&items)), plural))
}

/// The run ranges of `0..total` that `sorted` (by start) leaves uncovered.
fn gaps(total: u64, sorted: &[&std::ops::Range<u64>]) -> Vec<std::ops::Range<u64>> {
    let mut out = Vec::new();
    let mut at = 0;
    for r in sorted {
        if r.start > at {
            out.push(at..r.start);
        }
        at = at.max(r.end);
    }
    if at < total {
        out.push(at..total);
    }
    out
}

/// Combines shard summaries into the summary one unsharded run would give:
/// counts are summed, the first failure is the one with the smallest index,
/// derived columns are recomputed. Rows are grouped by variant in order of
/// first appearance; `elapsed_s` becomes the sum over shards.
///
/// Refused, with a message naming the files: a file without rows; rows of
/// different runs (scenario, seed, strategy, runs_total); overlapping run
/// ranges (the same runs counted twice); baselines that differ; and run
/// ranges left uncovered, unless a row of the variant is partial (an
/// interrupted shard) or `allow_missing`. Then the merged row is `partial`
/// and [`Merged::notes`] say which runs are missing.
pub fn merge(files: &[SummaryFile], allow_missing: bool) -> Result<Merged, ReportError> {
    let Some(first_file) = files.first() else {
        return Err(ReportError::Merge(
            "no summary.csv given: name the summary.csv of every shard".into(),
        ));
    };
    for f in files {
        if f.rows.is_empty() {
            return Err(ReportError::Empty {
                path: f.path.clone(),
            });
        }
        for r in &f.rows {
            check_row(&f.path, r)?;
        }
    }
    // Every row must come from the same run as the first.
    let reference = &first_file.rows[0];
    for (fi, f) in files.iter().enumerate() {
        for r in &f.rows {
            let diffs = run_differences(r, reference);
            if diffs.is_empty() {
                continue;
            }
            let (here, there): (Vec<String>, Vec<String>) = diffs.into_iter().unzip();
            let other = if fi == 0 {
                "another row of the same file".to_string()
            } else {
                first_file.path.display().to_string()
            };
            return Err(ReportError::Merge(format!(
                "{} has {} but {other} has {}: {ONE_RUN}",
                f.path.display(),
                and_list(&here),
                and_list(&there),
            )));
        }
    }
    let total = reference.runs_total;

    // Rows by variant, in order of first appearance, with their file.
    let mut groups: Vec<Vec<(&Path, &SummaryRow)>> = Vec::new();
    for f in files {
        for r in &f.rows {
            match groups.iter_mut().find(|g| g[0].1.key() == r.key()) {
                Some(g) => g.push((&f.path, r)),
                None => groups.push(vec![(&f.path, r)]),
            }
        }
    }

    let mut out = Vec::new();
    // (variant, gaps) of variants with runs missing, and whether a row is partial.
    let mut incomplete: Vec<(&str, Vec<std::ops::Range<u64>>, bool)> = Vec::new();
    let mut interrupted: Vec<String> = Vec::new();
    for mut g in groups {
        g.sort_by_key(|(_, r)| (r.run_from, r.run_to));
        for w in g.windows(2) {
            let ((pa, a), (pb, b)) = (w[0], w[1]);
            if b.run_from < a.run_to {
                let twice = if pa == pb {
                    format!(" ({} is given twice)", pa.display())
                } else {
                    String::new()
                };
                return Err(ReportError::Merge(format!(
                    "{}: run ranges {}..{} of {} and {}..{} of {} overlap for variant {}{twice}; merge each shard's summary once",
                    a.scenario,
                    a.run_from,
                    a.run_to,
                    pa.display(),
                    b.run_from,
                    b.run_to,
                    pb.display(),
                    a.variant,
                )));
            }
        }
        let (first_path, first) = g[0];
        if let Some((p, r)) = g.iter().find(|(_, r)| r.paired_with != first.paired_with) {
            let paired = |r: &SummaryRow| match &r.paired_with {
                Some(b) => format!("pairs it with {b}"),
                None => "has it unpaired (the baseline)".to_string(),
            };
            return Err(ReportError::Merge(format!(
                "{}: variant {}: {} {} but {} {}: run every shard with the same --variant list",
                first.scenario,
                first.variant,
                p.display(),
                paired(r),
                first_path.display(),
                paired(first),
            )));
        }
        let ranges: Vec<std::ops::Range<u64>> =
            g.iter().map(|(_, r)| r.run_from..r.run_to).collect();
        let missing = gaps(total, &ranges.iter().collect::<Vec<_>>());
        let any_partial = g.iter().any(|(_, r)| r.partial);
        for (p, r) in g.iter().filter(|(_, r)| r.partial) {
            let note = if whole_shard(r) {
                format!(
                    "{} was interrupted after {} of its {} runs ({}..{})",
                    p.display(),
                    r.runs,
                    r.run_to - r.run_from,
                    r.run_from,
                    r.run_to
                )
            } else {
                format!(
                    "{} was interrupted after {} runs ({}..{})",
                    p.display(),
                    r.runs,
                    r.run_from,
                    r.run_to
                )
            };
            if !interrupted.contains(&note) {
                interrupted.push(note);
            }
        }
        if !missing.is_empty() {
            incomplete.push((first.variant.as_str(), missing.clone(), any_partial));
        }

        let mut m = first.clone();
        m.run_from = first.run_from;
        m.run_to = g.last().expect("non-empty group").1.run_to;
        m.partial = any_partial || !missing.is_empty();
        let sum = |f: fn(&SummaryRow) -> u64| g.iter().map(|(_, r)| f(r)).sum::<u64>();
        m.runs = sum(|r| r.runs);
        m.ok = sum(|r| r.ok);
        m.leaks = sum(|r| r.leaks);
        m.deadlocks = sum(|r| r.deadlocks);
        m.panics = sum(|r| r.panics);
        m.limits = sum(|r| r.limits);
        m.steps = sum(|r| r.steps);
        m.preemptions = sum(|r| r.preemptions);
        m.client_failures = merge_client_failures(&g)?;
        // The shard whose first (client) failure has the smallest index.
        let earliest = |index: fn(&SummaryRow) -> Option<u64>| {
            g.iter()
                .map(|(_, r)| r)
                .filter(|r| index(r).is_some())
                .min_by_key(|r| index(r))
        };
        let fc = earliest(|r| r.first_client_failure_index);
        m.first_client_failure_index = fc.and_then(|r| r.first_client_failure_index);
        m.first_client_failure_seed = fc.and_then(|r| r.first_client_failure_seed);
        let ff = earliest(|r| r.first_failure_index);
        m.first_failure_index = ff.and_then(|r| r.first_failure_index);
        m.first_failure_seed = ff.and_then(|r| r.first_failure_seed);
        m.first_failure_oracle = ff.and_then(|r| r.first_failure_oracle.clone());
        m.base_only = first
            .base_only
            .map(|_| g.iter().filter_map(|(_, r)| r.base_only).sum());
        m.variant_only = first
            .variant_only
            .map(|_| g.iter().filter_map(|(_, r)| r.variant_only).sum());
        m.elapsed_s = (g.iter().map(|(_, r)| r.elapsed_s).sum::<f64>() * 1e3).round() / 1e3;
        m.derive();
        out.push(m);
    }

    // Which runs are missing, as ranges and as the shards that would cover them.
    let all_ranges: Vec<(std::ops::Range<u64>, bool)> = files
        .iter()
        .flat_map(|f| {
            f.rows
                .iter()
                .map(|r| (r.run_from..r.run_to, whole_shard(r)))
        })
        .collect();
    let n = shard_count(total, &all_ranges);
    let describe = |gaps: &[std::ops::Range<u64>], verb: &str| {
        let ranges: Vec<String> = gaps.iter().map(fmt_range).collect();
        let shards = n
            .and_then(|n| missing_shards(total, n, gaps))
            .map(|(list, plural)| {
                format!(
                    " ({list} {} {verb})",
                    match (plural, verb) {
                        (true, "missing") => "are",
                        (false, "missing") => "is",
                        (true, _) => "were",
                        (false, _) => "was",
                    }
                )
            });
        (
            format!(
                "run{} {} of {total}",
                if ranges.len() == 1 && gaps[0].end - gaps[0].start == 1 {
                    ""
                } else {
                    "s"
                },
                and_list(&ranges)
            ),
            shards.unwrap_or_default(),
        )
    };
    let same_gaps =
        incomplete.len() == out.len() && incomplete.windows(2).all(|w| w[0].1 == w[1].1);
    let variants = out
        .iter()
        .map(|r| r.variant.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let coverage = || {
        let mut given: Vec<(u64, u64, String)> = files
            .iter()
            .map(|f| {
                let r = &f.rows[0];
                (r.run_from, r.run_to, f.path.display().to_string())
            })
            .collect();
        given.sort();
        given.dedup();
        let mut items: Vec<String> = given
            .iter()
            .take(8)
            .map(|(a, b, p)| format!("{a}..{b} ({p})"))
            .collect();
        if given.len() > 8 {
            items.push(format!("{} more", given.len() - 8));
        }
        format!(
            "The summaries given cover runs {}; a shard that never ran runs with `lbsim run SCENARIO --variant {} --seed {} --strategy {} --runs {total} --shard I/N`",
            and_list(&items),
            variants,
            reference.seed,
            reference.strategy
        )
    };

    let refused: Vec<_> = incomplete
        .iter()
        .filter(|(_, _, partial)| !partial && !allow_missing)
        .collect();
    if !refused.is_empty() {
        let what = if same_gaps {
            let (runs, shards) = describe(&refused[0].1, "missing");
            format!("{runs} are missing: merge the summaries of every shard{shards}")
        } else {
            let each: Vec<String> = refused
                .iter()
                .map(|(v, gaps, _)| {
                    let (runs, shards) = describe(gaps, "missing");
                    format!("{runs} are missing for variant {v}{shards}")
                })
                .collect();
            format!(
                "{}: merge the summaries of every shard, each run with the same --variant list",
                and_list(&each)
            )
        };
        return Err(ReportError::Merge(format!(
            "{what}, or pass --allow-missing for a partial summary. {}",
            coverage()
        )));
    }

    let mut notes = interrupted;
    if same_gaps && !incomplete.is_empty() {
        let (runs, shards) = describe(&incomplete[0].1, "not given");
        notes.push(format!("{runs} are missing{shards}"));
    } else {
        for (v, gaps, _) in &incomplete {
            let (runs, shards) = describe(gaps, "not given");
            notes.push(format!("{runs} are missing for variant {v}{shards}"));
        }
    }
    if !notes.is_empty() {
        let runs: Vec<String> = out
            .iter()
            .map(|r| r.runs)
            .collect::<std::collections::BTreeSet<_>>()
            .iter()
            .map(u64::to_string)
            .collect();
        notes.push(format!(
            "the merged summary is partial ({} of {total} runs per variant): run the missing runs (same --seed {} --strategy {} --runs {total}) and merge every shard's summary.csv for a complete one",
            runs.join(" or "),
            reference.seed,
            reference.strategy
        ));
    }
    Ok(Merged { rows: out, notes })
}

/// The sum of the shards' `client_failures`; `None` if no shard has the
/// column (all written before it was added). Refused if some have it and
/// some do not: the shards then come from different versions of lbsim.
fn merge_client_failures(g: &[(&Path, &SummaryRow)]) -> Result<Option<u64>, ReportError> {
    let with = g.iter().find(|(_, r)| r.client_failures.is_some());
    let without = g.iter().find(|(_, r)| r.client_failures.is_none());
    match (with, without) {
        (Some((pw, r)), Some((po, _))) => Err(ReportError::Merge(format!(
            "{}: variant {}: {} has a client_failures count but {} has none (it was written by an older lbsim, which did not count failed client expectations): run that shard again with this lbsim and merge the summaries of one version",
            r.scenario,
            r.variant,
            pw.display(),
            po.display()
        ))),
        (None, _) => Ok(None),
        (Some(_), None) => Ok(Some(g.iter().filter_map(|(_, r)| r.client_failures).sum())),
    }
}

/// Combines the failures.csv rows of shards into one, sorted as one
/// unsharded run sorts them: by run index, then by the order of the
/// variants in `summary`.
pub fn merge_failures(mut rows: Vec<FailureRow>, summary: &[SummaryRow]) -> Vec<FailureRow> {
    let order = |v: &str| summary.iter().position(|r| r.variant == v);
    rows.sort_by_key(|f| (f.run_index, order(&f.variant), f.oracle == CLIENT_ORACLE));
    rows.dedup();
    rows
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
    // Only when some expectation failed, like the first-failure lines.
    for r in rows {
        if let Some(n) = r.client_failures.filter(|&n| n > 0) {
            s.push_str(&format!(
                "client expectations failed in {n} of {} runs of {}",
                r.runs, r.variant
            ));
            if let (Some(i), Some(seed)) =
                (r.first_client_failure_index, r.first_client_failure_seed)
            {
                s.push_str(&format!(": first run {i} seed {seed}"));
            }
            s.push('\n');
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
