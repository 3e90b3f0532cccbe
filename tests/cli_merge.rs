//! `lbsim merge` end to end: shards of different runs, missing shards and
//! empty files are refused with exit code 2 and a message naming the files;
//! failures.csv and the leak-rate chart are merged beside `--out`.
//!
//! Every command runs in a temporary directory with shard paths relative to
//! it, so messages can be checked for the exact paths a user typed.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

mod common;
use common::without_timing;

const MINIMAL: &str = "scenarios/close_race_minimal.toml";
/// Leaks in every run with `pre-4308`: failures.csv has rows.
const FLAGSHIP: &str = "scenarios/switch_to_lower_priority_and_back.toml";

fn scenario(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .to_str()
        .unwrap()
        .to_string()
}

fn lbsim(dir: &Path, args: &[&str]) -> Output {
    Command::cargo_bin("lbsim")
        .unwrap()
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(dir: &Path, args: &[&str]) -> Output {
    let out = lbsim(dir, args);
    assert!(
        out.status.success(),
        "lbsim {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

/// Exit code 2 with `error: ...` (not a panic, code 101), nothing on stdout.
fn refused(dir: &Path, args: &[&str]) -> String {
    let out = lbsim(dir, args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "lbsim {args:?}: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(stdout(&out), "", "lbsim {args:?}");
    err
}

/// `lbsim run` of the minimal scenario into `dir/out` with `--runs 300
/// --strategy random` unless `extra` gives them.
fn run_minimal(dir: &Path, out: &str, extra: &[&str]) {
    let sc = scenario(MINIMAL);
    let mut args = vec!["run", sc.as_str(), "--quiet", "--no-plot", "--out", out];
    for (flag, default) in [("--runs", "300"), ("--strategy", "random")] {
        if !extra.contains(&flag) {
            args.extend([flag, default]);
        }
    }
    args.extend_from_slice(extra);
    ok(dir, &args);
}

#[test]
fn merge_refuses_shards_of_different_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    run_minimal(d, "shard-0", &["--shard", "0/2"]);
    run_minimal(d, "shard-1", &["--shard", "1/2"]);
    run_minimal(d, "seed-7", &["--shard", "1/2", "--seed", "7"]);
    run_minimal(d, "pct", &["--shard", "1/2", "--strategy", "pct:2"]);
    run_minimal(d, "runs-400", &["--shard", "1/2", "--runs", "400"]);
    let flagship = scenario(FLAGSHIP);
    ok(
        d,
        &[
            "run",
            &flagship,
            "--runs",
            "300",
            "--strategy",
            "random",
            "--seed",
            "1",
            "--variant",
            "pre-8095,fixed",
            "--shard",
            "1/2",
            "--quiet",
            "--no-plot",
            "--out",
            "flagship",
        ],
    );
    let fix = "merge only shards of one run (same scenario, seed, strategy and --runs)";
    for (other, differs) in [
        ("seed-7", "has seed 7 but shard-0/summary.csv has seed 1"),
        (
            "pct",
            "has strategy pct:2 but shard-0/summary.csv has strategy random",
        ),
        (
            "runs-400",
            "has runs_total 400 but shard-0/summary.csv has runs_total 300",
        ),
        (
            "flagship",
            "has scenario switch_to_lower_priority_and_back but shard-0/summary.csv has scenario close_race_minimal",
        ),
    ] {
        let path = format!("{other}/summary.csv");
        let err = refused(
            d,
            &[
                "merge",
                "shard-0/summary.csv",
                &path,
                "--out",
                "m/summary.csv",
            ],
        );
        assert!(
            err.contains(&format!("{path} {differs}: {fix}")),
            "{other}: {err}"
        );
        assert!(!d.join("m").exists(), "{other}: nothing is written");
    }
    // Several differences are all named.
    run_minimal(
        d,
        "both",
        &["--shard", "1/2", "--seed", "7", "--runs", "400"],
    );
    let err = refused(d, &["merge", "shard-0/summary.csv", "both/summary.csv"]);
    assert!(
        err.contains(
            "both/summary.csv has seed 7 and runs_total 400 but shard-0/summary.csv has seed 1 and runs_total 300"
        ),
        "{err}"
    );

    // Different variants of one run are different rows: fine.
    run_minimal(d, "a115-0", &["--shard", "0/2", "--variant", "a115"]);
    run_minimal(d, "a115-1", &["--shard", "1/2", "--variant", "a115"]);
    let out = ok(
        d,
        &[
            "merge",
            "shard-0/summary.csv",
            "a115-1/summary.csv",
            "shard-1/summary.csv",
            "a115-0/summary.csv",
        ],
    );
    let csv = stdout(&out);
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{csv}");
    assert!(rows.iter().all(|r| r.contains(",300,0,300,300,")), "{csv}");
    assert!(rows.iter().all(|r| r.contains(",false,")), "{csv}");
}

#[test]
fn merge_refuses_missing_shards_and_names_them() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for i in 0..4 {
        run_minimal(
            d,
            &format!("shard-{i}"),
            &["--shard", &format!("{i}/4"), "--runs", "400"],
        );
    }
    let err = refused(
        d,
        &[
            "merge",
            "shard-2/summary.csv",
            "shard-0/summary.csv",
            "--out",
            "m/summary.csv",
        ],
    );
    assert!(
        err.contains(
            "runs 100..200 and 300..400 of 400 are missing: merge the summaries of every shard (--shard 1/4 and 3/4 are missing)"
        ),
        "{err}"
    );
    assert!(!d.join("m").exists(), "nothing is written");

    // A lone shard is not a result.
    let err = refused(d, &["merge", "shard-1/summary.csv"]);
    assert!(
        err.contains("runs 0..100 and 200..400 of 400 are missing"),
        "{err}"
    );
    assert!(
        err.contains("--shard 0/4, 2/4 and 3/4 are missing"),
        "{err}"
    );

    // Shards of different counts mix; the missing one is named.
    run_minimal(d, "half-0", &["--shard", "0/2", "--runs", "400"]);
    let err = refused(d, &["merge", "half-0/summary.csv", "shard-2/summary.csv"]);
    assert!(
        err.contains("runs 300..400 of 400 are missing: merge the summaries of every shard (--shard 3/4 is missing)"),
        "{err}"
    );
    let out = ok(
        d,
        &[
            "merge",
            "half-0/summary.csv",
            "shard-2/summary.csv",
            "shard-3/summary.csv",
        ],
    );
    assert!(
        stdout(&out).lines().skip(1).all(|l| l.contains(",false,")),
        "{}",
        stdout(&out)
    );

    // --allow-missing: a partial summary, and stderr says what is missing.
    let out = ok(d, &["merge", "shard-1/summary.csv", "--allow-missing"]);
    let csv = stdout(&out);
    assert!(csv.lines().skip(1).all(|l| l.contains(",true,")), "{csv}");
    let err = stderr(&out);
    assert!(
        err.contains(
            "runs 0..100 and 200..400 of 400 are missing (--shard 0/4, 2/4 and 3/4 were not given)"
        ),
        "{err}"
    );

    // All four in any order: complete, not partial.
    let out = ok(
        d,
        &[
            "merge",
            "shard-3/summary.csv",
            "shard-1/summary.csv",
            "shard-0/summary.csv",
            "shard-2/summary.csv",
        ],
    );
    let csv = stdout(&out);
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.contains(",400,0,400,400,") && l.contains(",false,")),
        "{csv}"
    );
    assert_eq!(stderr(&out), "");

    // The existing overlap error stays.
    let err = refused(d, &["merge", "shard-0/summary.csv", "shard-0/summary.csv"]);
    assert!(err.contains("overlap"), "{err}");
}

/// Marks a shard's summary as interrupted after `runs` runs, as Ctrl-C
/// would: with the shard's range (`prefix` false), or with the range of
/// the runs done (`prefix` true).
fn interrupt(summary: &Path, runs: u64, prefix: bool) {
    let text = std::fs::read_to_string(summary).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut out = header.join(",") + "\n";
    for line in lines {
        let mut f: Vec<String> = line.split(',').map(str::to_string).collect();
        f[col("partial")] = "true".into();
        f[col("runs")] = runs.to_string();
        f[col("ok")] = runs.to_string();
        if prefix {
            let from: u64 = f[col("run_from")].parse().unwrap();
            f[col("run_to")] = (from + runs).to_string();
        }
        out += &(f.join(",") + "\n");
    }
    std::fs::write(summary, out).unwrap();
}

#[test]
fn merge_of_an_interrupted_shard_is_partial_and_says_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for i in 0..4 {
        run_minimal(
            d,
            &format!("shard-{i}"),
            &["--shard", &format!("{i}/4"), "--runs", "400"],
        );
    }
    for (prefix, interrupted, missing) in [
        (
            false,
            "shard-1/summary.csv was interrupted after 40 of its 100 runs (100..200)",
            "runs 200..400 of 400 are missing (--shard 2/4 and 3/4 were not given)",
        ),
        (
            true,
            "shard-1/summary.csv was interrupted after 40 runs (100..140)",
            "runs 140..400 of 400 are missing (--shard 2/4 and 3/4 were not given)",
        ),
    ] {
        let _ = std::fs::remove_dir_all(d.join("shard-1"));
        run_minimal(d, "shard-1", &["--shard", "1/4", "--runs", "400"]);
        interrupt(&d.join("shard-1/summary.csv"), 40, prefix);
        let out = ok(d, &["merge", "shard-0/summary.csv", "shard-1/summary.csv"]);
        let csv = stdout(&out);
        assert!(
            csv.lines().skip(1).all(|l| l.contains(",true,")),
            "partial: {csv}"
        );
        let err = stderr(&out);
        assert!(err.contains(interrupted), "{err}");
        assert!(err.contains(missing), "{err}");
        assert!(
            err.contains("the merged summary is partial (140 of 400 runs"),
            "{err}"
        );
    }
}

#[test]
fn merge_refuses_an_empty_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    run_minimal(d, "shard-0", &["--shard", "0/2"]);
    run_minimal(d, "shard-1", &["--shard", "1/2"]);
    std::fs::create_dir(d.join("empty")).unwrap();
    std::fs::write(d.join("empty/summary.csv"), "").unwrap();
    let header = std::fs::read_to_string(d.join("shard-1/summary.csv"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    std::fs::create_dir(d.join("header")).unwrap();
    std::fs::write(d.join("header/summary.csv"), header + "\n").unwrap();
    for bad in ["empty/summary.csv", "header/summary.csv"] {
        for args in [
            vec!["merge", bad],
            vec!["merge", "shard-0/summary.csv", bad, "shard-1/summary.csv"],
        ] {
            let err = refused(d, &args);
            assert!(
                err.contains(&format!(
                    "{bad} has no rows; is it the summary.csv of a finished run?"
                )),
                "{args:?}: {err}"
            );
        }
    }
}

/// The flagship scenario leaks in every `pre-4308` run: whole run and three shards.
fn flagship_shards(d: &Path) -> Vec<PathBuf> {
    let sc = scenario(FLAGSHIP);
    let run = |out: &str, shard: Option<&str>| {
        let mut args = vec![
            "run",
            sc.as_str(),
            "--runs",
            "300",
            "--seed",
            "42",
            "--strategy",
            "random",
            "--variant",
            "pre-4308,fixed",
            "--quiet",
            "--no-plot",
            "--out",
            out,
        ];
        if let Some(s) = shard {
            args.extend(["--shard", s]);
        }
        ok(d, &args);
    };
    run("whole", None);
    (0..3)
        .map(|i| {
            let name = format!("shard-{i}");
            run(&name, Some(&format!("{i}/3")));
            PathBuf::from(name).join("summary.csv")
        })
        .collect()
}

#[test]
fn merge_writes_failures_and_chart_beside_out() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let parts = flagship_shards(d);
    let p = |i: usize| parts[i].to_str().unwrap().to_string();
    let read = |rel: &str| std::fs::read_to_string(d.join(rel)).unwrap();

    let out = ok(d, &["merge", &p(2), &p(0), &p(1), "--out", "m/summary.csv"]);
    assert_eq!(
        without_timing(&read("m/summary.csv")),
        without_timing(&read("whole/summary.csv"))
    );
    let failures = read("m/failures.csv");
    assert_eq!(failures.lines().count(), 301, "{failures}");
    assert_eq!(failures, read("whole/failures.csv"));
    for chart in ["m/leak_rate.png", "m/leak_rate.svg"] {
        let len = std::fs::metadata(d.join(chart))
            .unwrap_or_else(|e| panic!("{chart}: {e}; stderr: {}", stderr(&out)))
            .len();
        assert!(len > 0, "{chart}");
    }

    // --no-plot: failures.csv but no chart.
    ok(
        d,
        &[
            "merge",
            &p(0),
            &p(1),
            &p(2),
            "--out",
            "n/summary.csv",
            "--no-plot",
        ],
    );
    assert_eq!(read("n/failures.csv"), read("whole/failures.csv"));
    assert!(!d.join("n/leak_rate.png").exists());
    assert!(!d.join("n/leak_rate.svg").exists());

    // A shard without failures.csv: said on stderr, the others merged.
    std::fs::remove_file(d.join("shard-1/failures.csv")).unwrap();
    let out = ok(
        d,
        &[
            "merge",
            &p(0),
            &p(1),
            &p(2),
            "--out",
            "o/summary.csv",
            "--no-plot",
        ],
    );
    let err = stderr(&out);
    assert!(err.contains("shard-1/failures.csv"), "{err}");
    let whole = read("whole/failures.csv");
    let expected: String = whole
        .lines()
        .enumerate()
        .filter(|(i, l)| {
            *i == 0 || {
                let index: u64 = l.split(',').next().unwrap().parse().unwrap();
                !(100..200).contains(&index)
            }
        })
        .map(|(_, l)| l.to_string() + "\n")
        .collect();
    assert_eq!(read("o/failures.csv"), expected);

    // The merged failures.csv must not replace a shard's.
    let before = read("shard-0/failures.csv");
    let err = refused(
        d,
        &["merge", &p(0), &p(1), &p(2), "--out", "shard-0/merged.csv"],
    );
    assert!(
        err.contains("would replace shard-0/failures.csv, the failures of a shard"),
        "{err}"
    );
    assert_eq!(read("shard-0/failures.csv"), before);
    assert!(!d.join("shard-0/merged.csv").exists());

    // A failures.csv of another run beside a shard's summary is refused.
    std::fs::copy(d.join("whole/failures.csv"), d.join("shard-1/failures.csv")).unwrap();
    let err = refused(d, &["merge", &p(0), &p(1), &p(2), "--out", "q/summary.csv"]);
    assert!(
        err.contains("shard-1/failures.csv: run 0 (pre-4308, strategy random) is not one of the runs 100..200"),
        "{err}"
    );
    assert!(err.contains("not from the same run"), "{err}");
}
