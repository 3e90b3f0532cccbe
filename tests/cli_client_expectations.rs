//! Failed client expectations (`expect`, `rpc_until`) in bulk runs: they
//! are not an outcome, but `lbsim run` counts the runs with one per variant
//! (`client_failures` in summary.csv, the JSON line and the table), keeps
//! the first such run's seed, lists the runs in failures.csv as `client`
//! rows, and `lbsim merge` sums the count over shards. `lbsim explore`
//! counts the schedules with one and prints them to replay.

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

mod common;
use common::run_ok;

/// s0 serves p0 and s1 p1. The client reaches s0, sleeps up to 40 ms and
/// expects s0 again; HEALTH takes s0 down at 20 ms, so under the timed
/// strategy the second expectation fails in about half of the runs (the
/// channel has failed over to s1) and holds in the others. Without HEALTH
/// both always hold.
const SCENARIO: &str = r#"
[scenario]
name = "client_expectations"

[[backend]]
name = "s0"

[[backend]]
name = "s1"

[[priority]]
backends = ["s0"]

[[priority]]
backends = ["s1"]

HEALTH

[client]
script = [
  { op = "rpc", expect = "s0" },
  { op = "sleep", for = "uniform(0, 40ms)" },
  { op = "rpc", expect = "s0" },
  { op = "close" },
]
"#;

const HEALTH: &str = r#"[[health]]
at = "20ms"
backend = "s0"
state = "down""#;

const VARIANTS: &str = "pr-8095,a115";
const RUNS: u64 = 100;

fn write_scenario(dir: &Path, down: bool) -> String {
    let path = dir.join("client_expectations.toml");
    let text = SCENARIO.replace("HEALTH", if down { HEALTH } else { "" });
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn lbsim(args: &[&str]) -> Output {
    Command::cargo_bin("lbsim")
        .unwrap()
        .args(args)
        .output()
        .unwrap()
}

/// `lbsim run` with the timed strategy into `out`; `extra` adds flags.
fn run(scenario: &str, out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["run", scenario, "--variant", VARIANTS, "--seed", "1"];
    let runs = RUNS.to_string();
    args.extend([
        "--runs",
        &runs,
        "--strategy",
        "timed",
        "--no-plot",
        "--quiet",
    ]);
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    run_ok(&args)
}

fn json(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The rows of a CSV file as maps from column name to value.
fn csv_rows(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            header
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn failed_expectations_are_counted_per_variant_with_a_seed_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    let sc = write_scenario(dir.path(), true);
    let out = dir.path().join("out");
    let lines = json(&run(&sc, &out, &["--format", "json", "--jobs", "2"]));
    assert_eq!(lines.len(), 2);
    let failures = csv_rows(&out.join("failures.csv"));
    for v in &lines {
        let variant = v["variant"].as_str().unwrap();
        let n = v["client_failures"]
            .as_u64()
            .unwrap_or_else(|| panic!("no client_failures count: {v}"));
        // Some runs fail the expectation, not all: the count is per run.
        assert!(n > 0 && n < RUNS, "{variant}: {n} of {RUNS}");
        // Not an outcome: the outcomes still add up to the runs, and the
        // leak rate does not count them.
        let outcomes: u64 = ["ok", "leaks", "deadlocks", "panics", "limits"]
            .iter()
            .map(|k| v[k].as_u64().unwrap())
            .sum();
        assert_eq!(outcomes, RUNS, "{v}");
        assert_eq!(v["leaks"], 0, "{v}");

        // failures.csv has one `client` row per such run, with the failed
        // expectation and the replay command.
        let rows: Vec<_> = failures
            .iter()
            .filter(|r| r["variant"] == variant && r["oracle"] == "client")
            .collect();
        assert_eq!(rows.len() as u64, n, "{variant}");
        assert!(rows[0]["leaked"].contains("want s0"), "{:?}", rows[0]);
        let first_index = v["first_client_failure_index"].as_u64().unwrap();
        let first_seed = v["first_client_failure_seed"].as_u64().unwrap();
        assert_eq!(rows[0]["run_index"], first_index.to_string());
        assert_eq!(rows[0]["seed"], first_seed.to_string());
        assert!(
            rows[0]["replay"].ends_with(&format!("--seed {first_seed} --strategy timed")),
            "{:?}",
            rows[0]
        );

        // The first seed reproduces it: replay prints the failed expectation.
        let replay = run_ok(&[
            "replay",
            &sc,
            "--variant",
            variant,
            "--seed",
            &first_seed.to_string(),
            "--strategy",
            "timed",
            "--trace",
            dir.path().join("trace.txt").to_str().unwrap(),
        ]);
        assert!(
            replay.contains("\nclient: rpc reached s1, want s0\n"),
            "{replay}"
        );
    }

    // summary.csv: the count is the last columns; the table says it.
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let header = summary.lines().next().unwrap();
    assert!(
        header.ends_with(
            ",runs_per_s,client_failures,first_client_failure_index,first_client_failure_seed"
        ),
        "{header}"
    );
    let table = run(&sc, &dir.path().join("table"), &[]);
    for v in &lines {
        let line = format!(
            "client expectations failed in {} of {RUNS} runs of {}: first run {} seed {}",
            v["client_failures"],
            v["variant"].as_str().unwrap(),
            v["first_client_failure_index"],
            v["first_client_failure_seed"]
        );
        assert!(table.contains(&line), "{line}\n{table}");
    }

    // Results do not depend on the number of threads.
    let one = dir.path().join("one");
    run(&sc, &one, &["--jobs", "1"]);
    assert_eq!(
        std::fs::read_to_string(one.join("failures.csv")).unwrap(),
        std::fs::read_to_string(out.join("failures.csv")).unwrap()
    );
    let client = |d: &Path| {
        csv_rows(&d.join("summary.csv"))
            .into_iter()
            .map(|r| {
                (
                    r["client_failures"].clone(),
                    r["first_client_failure_seed"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(client(&one), client(&out));
}

#[test]
fn expectations_that_always_hold_count_zero() {
    let dir = tempfile::tempdir().unwrap();
    let sc = write_scenario(dir.path(), false);
    let out = dir.path().join("out");
    let lines = json(&run(&sc, &out, &["--format", "json"]));
    assert_eq!(lines.len(), 2);
    for v in &lines {
        assert_eq!(v["client_failures"], 0, "{v}");
        assert!(v["first_client_failure_seed"].is_null(), "{v}");
        assert_eq!(v["ok"], RUNS, "{v}");
    }
    let failures = csv_rows(&out.join("failures.csv"));
    assert!(failures.is_empty(), "{failures:?}");
    let summary = csv_rows(&out.join("summary.csv"));
    assert!(summary.iter().all(|r| r["client_failures"] == "0"));
    // The table mentions client expectations only when one failed.
    let table = run(&sc, &dir.path().join("table"), &[]);
    assert!(table.contains("scenario client_expectations"), "{table}");
    assert!(!table.contains("client expectations"), "{table}");
}

/// Drops the client columns from a summary.csv, as lbsim wrote it before
/// it counted failed client expectations.
fn as_older_summary(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let older: String = text
        .lines()
        .map(|l| l.rsplitn(4, ',').nth(3).unwrap().to_string() + "\n")
        .collect();
    assert!(older.lines().next().unwrap().ends_with(",runs_per_s"));
    std::fs::write(path, older).unwrap();
}

#[test]
fn merge_sums_client_failures_over_shards() {
    let dir = tempfile::tempdir().unwrap();
    let sc = write_scenario(dir.path(), true);
    let whole = dir.path().join("whole");
    run(&sc, &whole, &[]);
    let mut shards = Vec::new();
    for i in 0..3 {
        let d = dir.path().join(format!("shard-{i}"));
        run(&sc, &d, &["--shard", &format!("{i}/3")]);
        shards.push(d.join("summary.csv").to_str().unwrap().to_string());
    }
    let merged = dir.path().join("merged/summary.csv");
    let mut args = vec!["merge"];
    args.extend(shards.iter().map(String::as_str));
    args.extend(["--out", merged.to_str().unwrap(), "--no-plot"]);
    let table = run_ok(&args);

    let (m, w) = (csv_rows(&merged), csv_rows(&whole.join("summary.csv")));
    assert_eq!(m.len(), 2);
    for (m, w) in m.iter().zip(&w) {
        let shard_sum: u64 = shards
            .iter()
            .map(|s| {
                csv_rows(Path::new(s))
                    .iter()
                    .find(|r| r["variant"] == m["variant"])
                    .map(|r| r["client_failures"].parse::<u64>().unwrap())
                    .unwrap()
            })
            .sum();
        assert!(shard_sum > 0);
        assert_eq!(m["client_failures"], shard_sum.to_string());
        for col in [
            "client_failures",
            "first_client_failure_index",
            "first_client_failure_seed",
        ] {
            assert_eq!(m[col], w[col], "{col} of {}", m["variant"]);
        }
    }
    assert!(table.contains("client expectations failed in"), "{table}");
    // The merged failures.csv is the unsharded run's, client rows included.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("merged/failures.csv")).unwrap(),
        std::fs::read_to_string(whole.join("failures.csv")).unwrap()
    );

    // A shard written before the count existed cannot be merged with newer
    // ones: its count is unknown. The error names it; exit code 2.
    as_older_summary(Path::new(&shards[1]));
    let out = lbsim(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("error: ") && !err.contains("panicked"),
        "{err}"
    );
    assert!(
        err.contains(&shards[1]) && err.contains("client_failures"),
        "{err}"
    );

    // Older summaries alone still merge, with no count.
    for s in [&shards[0], &shards[2]] {
        as_older_summary(Path::new(s));
    }
    run_ok(&args);
    for r in csv_rows(&merged) {
        assert_eq!(
            r.get("client_failures").map(String::as_str),
            Some(""),
            "{r:?}"
        );
    }
}

#[test]
fn sweep_counts_them_at_every_point() {
    let dir = tempfile::tempdir().unwrap();
    let sc = write_scenario(dir.path(), true);
    let out = dir.path().join("sweep");
    let table = run_ok(&[
        "sweep",
        &sc,
        "--param",
        "balancer.init_timeout=1s..10s:2",
        "--variant",
        "pr-8095",
        "--runs",
        "50",
        "--seed",
        "1",
        "--strategy",
        "timed",
        "--no-plot",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    let rows = csv_rows(&out.join("sweep_balancer_init_timeout.csv"));
    assert_eq!(rows.len(), 2);
    for r in &rows {
        let n: u64 = r["client_failures"].parse().unwrap();
        assert!(n > 0 && n < 50, "{r:?}");
        let line = format!("client expectations failed in {n} of 50 runs of pr-8095 at ");
        assert!(table.contains(&line), "{line}\n{table}");
    }
}

#[test]
fn fail_on_client_exits_1_only_when_an_expectation_failed() {
    let dir = tempfile::tempdir().unwrap();
    let code = |down: bool| {
        let scenario = write_scenario(dir.path(), down);
        let out = dir.path().join(if down { "down" } else { "up" });
        lbsim(&[
            "run",
            &scenario,
            "--variant",
            VARIANTS,
            "--runs",
            "40",
            "--strategy",
            "timed",
            "--no-plot",
            "--quiet",
            "--fail-on",
            "client",
            "--out",
            out.to_str().unwrap(),
        ])
        .status
        .code()
    };
    assert_eq!(code(true), Some(1));
    assert_eq!(code(false), Some(0));
}

/// `lbsim explore` with the scenario's seed fixed: its sleep is drawn once,
/// so with no preemption either every schedule reaches s1 the second time
/// (the sleep ends after HEALTH) or none does.
fn explore(scenario: &str, seed: u64, extra: &[&str]) -> Output {
    let seed = seed.to_string();
    let mut args = vec![
        "explore",
        scenario,
        "--variant",
        "pr-8095",
        "--preemption-bound",
        "0",
        "--max-schedules",
        "3",
        "--seed",
        &seed,
    ];
    args.extend_from_slice(extra);
    lbsim(&args)
}

#[test]
fn explore_counts_failed_expectations_with_schedules_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    let sc = write_scenario(dir.path(), true);
    let (mut failing, mut holding) = (None, None);
    for seed in 1..=12 {
        let out = explore(&sc, seed, &["--format", "json"]);
        assert_eq!(out.status.code(), Some(0));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["schedules"], 3, "{v}");
        // Not an outcome: every schedule still ends ok.
        assert_eq!(v["failures"], 0, "{v}");
        match v["client_failures"].as_u64().unwrap() {
            0 => {
                assert_eq!(v["first_client_failures"], serde_json::json!([]), "{v}");
                holding.get_or_insert(seed);
            }
            3 => {
                failing.get_or_insert((seed, v));
            }
            n => panic!("seed {seed}: {n} of 3 schedules failed an expectation"),
        }
        if failing.is_some() && holding.is_some() {
            break;
        }
    }
    let (seed, v) = failing.expect("a seed whose sleep outlasts HEALTH");
    let holding = holding.expect("a seed whose sleep ends before HEALTH");
    let first = &v["first_client_failures"][0];
    assert_eq!(first["outcome"], "ok", "{first}");
    assert_eq!(first["error"], "rpc reached s1, want s0", "{first}");
    // Its replay command reproduces it.
    let replay = first["replay"].as_str().unwrap();
    let args: Vec<&str> = replay.split(' ').skip(1).collect();
    let replayed = run_ok(&args);
    assert!(
        replayed.contains("\nclient: rpc reached s1, want s0\n"),
        "{replayed}"
    );

    // The table says it, with the schedule.
    let table = explore(&sc, seed, &["--show", "1"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("client expectations failed: 3 schedules"),
        "{text}"
    );
    assert!(
        text.contains("client expectation failed at schedule #0") && text.contains(replay),
        "{text}"
    );
    let held = explore(&sc, holding, &[]);
    assert!(
        !String::from_utf8_lossy(&held.stdout).contains("client expectation"),
        "{held:?}"
    );

    // --fail-on client exits 1 only when an expectation failed.
    let fail_on = ["--fail-on", "client"];
    assert_eq!(explore(&sc, seed, &fail_on).status.code(), Some(1));
    assert_eq!(explore(&sc, holding, &fail_on).status.code(), Some(0));
}
