//! The command line end to end: `run` output and determinism, shards and
//! `merge`, and scenario files rejected with exit code 2 and a located message.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

mod common;
use common::{pre4308_leaking_seed, run_ok, without_timing};

const FLAGSHIP: &str = "scenarios/switch_to_lower_priority_and_back.toml";

fn lbsim() -> Command {
    Command::cargo_bin("lbsim").unwrap()
}

fn tiny_run(out: &Path, extra: &[&str]) -> String {
    let out = out.to_str().unwrap();
    let mut args = vec![
        "run",
        FLAGSHIP,
        "--runs",
        "300",
        "--seed",
        "42",
        "--strategy",
        "random",
        "--variant",
        "pre-4308,fixed,a115",
        "--out",
        out,
        "--quiet",
    ];
    args.extend_from_slice(extra);
    run_ok(&args)
}

#[test]
fn json_has_all_fields_and_sane_values() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = tiny_run(
        dir.path(),
        &["--format", "json", "--jobs", "2", "--no-plot"],
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for v in &lines {
        for key in [
            "scenario",
            "variant",
            "strategy",
            "runs",
            "leaks",
            "deadlocks",
            "panics",
            "rate",
            "ci95_low",
            "ci95_high",
            "first_failure_seed",
            "elapsed_s",
            "runs_per_s",
            "partial",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        assert_eq!(v["scenario"], "switch_to_lower_priority_and_back");
        assert_eq!(v["strategy"], "random");
        assert_eq!(v["runs"], 300);
        assert_eq!(v["partial"], false);
        let (lo, rate, hi) = (
            v["ci95_low"].as_f64().unwrap(),
            v["rate"].as_f64().unwrap(),
            v["ci95_high"].as_f64().unwrap(),
        );
        assert!(0.0 <= lo && lo <= rate && rate <= hi && hi <= 1.0, "{v}");
        assert_eq!(rate, v["leaks"].as_f64().unwrap() / 300.0);
    }
    // In the flagship, pre-4308 leaks in every run: the demoted child is
    // cached when the channel closes, and that version never closes it.
    let buggy = &lines[0];
    assert_eq!(buggy["variant"], "pre-4308");
    assert!(buggy["leaks"].as_u64().unwrap() > 0, "{buggy}");
    assert!(buggy["first_failure_seed"].is_u64());
    let fixed = &lines[1];
    assert_eq!(fixed["leaks"], 0);
    assert!(fixed["first_failure_seed"].is_null());
    assert_eq!(fixed["paired_with"], "pre-4308");
    assert_eq!(fixed["base_only"], buggy["leaks"]);
    assert!(fixed["mcnemar_p"].as_f64().unwrap() < 1e-6);

    // The first failure's seed is in failures.csv with its replay command.
    let failures = std::fs::read_to_string(dir.path().join("failures.csv")).unwrap();
    let seed = buggy["first_failure_seed"].as_u64().unwrap();
    let expected =
        format!("lbsim replay {FLAGSHIP} --variant pre-4308 --seed {seed} --strategy random");
    assert!(
        failures.lines().nth(1).unwrap().ends_with(&expected),
        "{failures}"
    );
    assert!(dir.path().join("summary.csv").exists());
}

#[test]
fn same_seed_same_summary_for_any_thread_count() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = tiny_run(a.path(), &["--jobs", "1"]);
    let two = tiny_run(b.path(), &["--jobs", "2"]);
    assert_eq!(one, two);
    assert!(one.contains("pre-4308"));
    let read = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap();
    assert_eq!(
        without_timing(&read(a.path(), "summary.csv")),
        without_timing(&read(b.path(), "summary.csv"))
    );
    assert_eq!(
        read(a.path(), "failures.csv"),
        read(b.path(), "failures.csv")
    );
    // A different seed gives different counts.
    let c = tempfile::tempdir().unwrap();
    let other = run_ok(&[
        "run",
        FLAGSHIP,
        "--runs",
        "300",
        "--seed",
        "43",
        "--strategy",
        "random",
        "--variant",
        "pre-4308,fixed,a115",
        "--out",
        c.path().to_str().unwrap(),
        "--quiet",
    ]);
    assert_ne!(one, other);
}

#[test]
fn merged_shards_equal_the_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    tiny_run(&whole, &["--jobs", "2"]);
    let mut parts: Vec<PathBuf> = Vec::new();
    for i in 0..3 {
        let d = dir.path().join(format!("s{i}"));
        tiny_run(&d, &["--shard", &format!("{i}/3"), "--jobs", "1"]);
        parts.push(d.join("summary.csv"));
    }
    let merged = dir.path().join("merged.csv");
    // Shards given out of order.
    run_ok(&[
        "merge",
        parts[2].to_str().unwrap(),
        parts[0].to_str().unwrap(),
        parts[1].to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    assert_eq!(
        without_timing(&read(&merged)),
        without_timing(&read(&whole.join("summary.csv")))
    );

    // Two shards of three: refused, unless a partial summary is asked for.
    let out = lbsim()
        .args([
            "merge",
            parts[0].to_str().unwrap(),
            parts[1].to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stdout = run_ok(&[
        "merge",
        "--allow-missing",
        parts[0].to_str().unwrap(),
        parts[1].to_str().unwrap(),
    ]);
    assert!(
        stdout.lines().skip(1).all(|l| l.contains(",true,")),
        "{stdout}"
    );
    // The same shard twice is refused.
    let out = lbsim()
        .args([
            "merge",
            parts[0].to_str().unwrap(),
            parts[0].to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("overlap"));
}

#[test]
fn fail_on_leak_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = lbsim()
        .args([
            "run",
            FLAGSHIP,
            "--runs",
            "50",
            "--strategy",
            "random",
            "--variant",
            "pre-4308",
            "--quiet",
            "--fail-on",
            "leak",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = lbsim()
        .args([
            "run",
            FLAGSHIP,
            "--runs",
            "50",
            "--strategy",
            "random",
            "--variant",
            "fixed",
            "--quiet",
            "--fail-on",
            "leak",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

const GOOD: &str = r#"# a test scenario
[scenario]
name = "t"

[[backend]]
name = "s0"

[[backend]]
name = "s1"

[[priority]]
backends = ["s0"]

[[priority]]
backends = ["s1"]

[[health]]
at = "1s"
backend = "s0"
state = "down"

[[health]]
at = "2s"
backend = "s0"
state = "up"

[runtime]
pause = "pareto(20us, 1.2, 20ms)"

[client]
script = [{ op = "rpc", expect = "s0" }, { op = "close" }]

[run]
strategy = "timed"
variants = ["pre-8095"]
"#;

/// Writes `text` to a file, runs `lbsim validate` and `lbsim run` on it, and
/// checks both exit 2 with `error: FILE:LINE:COL: ...` containing `needle`.
fn assert_rejected(text: &str, line: usize, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    for cmd in ["validate", "run"] {
        let mut c = lbsim();
        c.arg(cmd).arg(&path);
        if cmd == "run" {
            c.arg("--out").arg(dir.path());
        }
        let out = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {stderr}");
        let prefix = format!("error: {}:{line}:", path.display());
        assert!(
            stderr.starts_with(&prefix),
            "{cmd}: expected `{prefix}` in:\n{stderr}"
        );
        assert!(
            stderr.contains(needle),
            "{cmd}: expected `{needle}` in:\n{stderr}"
        );
        assert!(
            stderr.contains("help: "),
            "{cmd}: no fix suggested:\n{stderr}"
        );
    }
}

#[test]
fn good_scenario_validates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.toml");
    std::fs::write(&path, GOOD).unwrap();
    let out = run_ok(&["validate", path.to_str().unwrap()]);
    assert!(out.starts_with("ok: "), "{out}");
}

#[test]
fn syntax_error() {
    assert_rejected(&GOOD.replace(r#"name = "s1""#, r#"name = "s1"#), 9, "");
}

#[test]
fn unknown_key() {
    assert_rejected(
        &GOOD.replace(r#"name = "s1""#, "name = \"s1\"\nlatncy = \"1ms\""),
        10,
        "unknown field `latncy`",
    );
}

#[test]
fn wrong_type() {
    assert_rejected(&GOOD.replace(r#"at = "2s""#, "at = 2"), 23, "invalid type");
}

#[test]
fn negative_duration() {
    assert_rejected(
        &GOOD.replace(r#"at = "1s""#, r#"at = "-1s""#),
        18,
        "negative",
    );
}

#[test]
fn unknown_backend() {
    assert_rejected(
        &GOOD.replace(
            r#"backend = "s0"
state = "up""#,
            r#"backend = "s7"
state = "up""#,
        ),
        24,
        "unknown backend `s7`",
    );
}

#[test]
fn empty_priority() {
    assert_rejected(
        &GOOD.replace(r#"backends = ["s1"]"#, "backends = []"),
        15,
        "has no backends",
    );
}

#[test]
fn backend_in_no_priority() {
    assert_rejected(
        &GOOD.replace("[[priority]]\nbackends = [\"s1\"]\n", ""),
        9,
        "backend `s1` is in no priority",
    );
}

#[test]
fn timeline_out_of_order() {
    assert_rejected(
        &GOOD.replace(r#"at = "2s""#, r#"at = "500ms""#),
        23,
        "comes before the previous one",
    );
}

#[test]
fn bad_distribution() {
    assert_rejected(
        &GOOD.replace("pareto(20us, 1.2, 20ms)", "gauss(1ms)"),
        28,
        "unknown distribution `gauss`",
    );
}

#[test]
fn bad_variant_name() {
    assert_rejected(
        &GOOD.replace(r#"["pre-8095"]"#, r#"["pre-8095", "buggyy"]"#),
        35,
        "unknown variant `buggyy`",
    );
}

#[test]
fn bad_strategy() {
    assert_rejected(
        &GOOD.replace(r#"strategy = "timed""#, r#"strategy = "pct:x""#),
        34,
        "pct:",
    );
}

#[test]
fn unknown_client_op() {
    assert_rejected(
        &GOOD.replace(r#"op = "close""#, r#"op = "shutdown""#),
        31,
        "unknown client op `shutdown`",
    );
}

#[test]
fn missing_file() {
    for cmd in ["validate", "run"] {
        let out = lbsim()
            .args([cmd, "no/such/scenario.toml"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("error: no/such/scenario.toml: cannot read"),
            "{stderr}"
        );
    }
}

#[test]
fn bad_flags_exit_2() {
    for args in [
        vec!["run", FLAGSHIP, "--variant", "nope"],
        vec!["run", FLAGSHIP, "--strategy", "fastest"],
        vec!["run", FLAGSHIP, "--shard", "3/3"],
        vec!["run", FLAGSHIP, "--jobs", "0"],
        vec!["run", FLAGSHIP, "--format", "xml"],
        vec!["run", FLAGSHIP, "--fail-on", "sometimes"],
        vec!["merge", "no/such/summary.csv"],
    ] {
        let out = lbsim().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("error"),
            "{args:?}"
        );
    }
}

#[test]
fn replay_reports_a_leak_with_a_stable_trace_hash_and_ok_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let seed = pre4308_leaking_seed(dir.path());
    let replay = |variant: &str| {
        run_ok(&[
            "replay",
            FLAGSHIP,
            "--variant",
            variant,
            "--seed",
            &seed,
            "--strategy",
            "random",
        ])
    };
    let first = replay("pre-4308");
    assert_eq!(first, replay("pre-4308"), "replay is deterministic");
    assert_eq!(first.lines().last().unwrap(), "outcome: leak");
    assert!(first.contains("outlier_detection.run["), "{first}");
    assert!(
        first.contains("belongs to child policy priority-0-1"),
        "{first}"
    );
    assert!(first.contains("trace hash "));
    let fixed = replay("pr-8095");
    assert_eq!(fixed.lines().last().unwrap(), "outcome: ok");
}

fn tiny_sweep(out: &Path, jobs: &str) -> String {
    run_ok(&[
        "sweep",
        FLAGSHIP,
        "--param",
        "runtime.pause_prob=0.0005..0.002:2",
        "--runs",
        "50",
        "--strategy",
        "timed",
        "--variant",
        "pre-4308,pr-8095",
        "--jobs",
        jobs,
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ])
}

#[test]
fn sweep_writes_csv_and_charts() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = tiny_sweep(dir.path(), "2");
    let csv = std::fs::read_to_string(dir.path().join("sweep_runtime_pause_prob.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    for col in [
        "param",
        "value",
        "variant",
        "strategy",
        "runs",
        "leaks",
        "rate",
        "ci95_low",
        "ci95_high",
        "partial",
    ] {
        assert!(
            header.iter().any(|h| h == col),
            "no column {col}: {header:?}"
        );
    }
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let got: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                &r[col("value")],
                &r[col("variant")],
                &r[col("runs")],
                &r[col("partial")],
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("0.0005", "pre-4308", "50", "false"),
            ("0.0005", "pr-8095", "50", "false"),
            ("0.002", "pre-4308", "50", "false"),
            ("0.002", "pr-8095", "50", "false"),
        ]
    );
    for r in &rows {
        assert_eq!(&r[col("param")], "runtime.pause_prob");
        assert_eq!(&r[col("strategy")], "timed");
        // Before PR #4308 every run leaks; after PR #8095 none should.
        let want = if &r[col("variant")] == "pre-4308" {
            "50"
        } else {
            "0"
        };
        assert_eq!(&r[col("leaks")], want, "{r:?}");
    }
    assert!(stdout.contains("sweep runtime.pause_prob"), "{stdout}");
    assert_eq!(stdout.lines().count(), 2 + rows.len(), "{stdout}");

    let svg = std::fs::read_to_string(dir.path().join("sweep_runtime_pause_prob.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(
        svg.contains("Leak rate against runtime.pause_prob"),
        "title missing"
    );
    let png = std::fs::read(dir.path().join("sweep_runtime_pause_prob.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));

    // The same sweep on one thread writes the same file.
    let one = tempfile::tempdir().unwrap();
    tiny_sweep(one.path(), "1");
    assert_eq!(
        std::fs::read_to_string(one.path().join("sweep_runtime_pause_prob.csv")).unwrap(),
        csv
    );
}

#[test]
fn sweep_rejects_a_bad_param_with_exit_2() {
    for (param, needle) in [
        ("runtime.nonsense=1..2", "sweepable parameters"),
        ("runtime.pause_prob=0.002..0.001", "smaller value first"),
        ("runtime.pause_prob=0.001..0.002:0", "0 steps"),
        ("balancer.init_timeout=1..20", "no unit"),
        ("runtime.pause=1ms..2ms", "sweep runtime.pause_prob"),
        ("runtime.pause_prob", "KEY=FROM..TO"),
    ] {
        let out = lbsim()
            .args(["sweep", FLAGSHIP, "--param", param, "--runs", "1"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{param}: {err}");
        assert!(
            err.contains("--param") && err.contains(needle),
            "{param}: {err}"
        );
    }
}

/// `lbsim explore scenarios/close_race_minimal.toml --format json` with
/// these arguments, parsed.
fn explore_minimal_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec![
        "explore",
        "scenarios/close_race_minimal.toml",
        "--format",
        "json",
    ];
    all.extend_from_slice(args);
    serde_json::from_str(run_ok(&all).trim()).unwrap()
}

#[test]
fn explore_reports_schedules_and_completeness_as_json() {
    let v = explore_minimal_json(&[
        "--variant",
        "pr-8095",
        "--preemption-bound",
        "1",
        "--max-schedules",
        "40",
    ]);
    assert_eq!(v["schedules"], 40);
    assert_eq!(v["complete"], false);
    assert_eq!(v["leaks"], 0);
    assert_eq!(v["variant"], "pr-8095");
    assert_eq!(v["reduction"], "sleep-sets");
    assert!(v["pruned_alternatives"].as_u64().is_some());
    assert!(v["redundant_executions"].as_u64().is_some());
    // Split into the branches off the first schedule: there are some.
    assert!(v["branches"].as_u64().unwrap() > 0, "{v}");
    assert!(v["choice_bound"].is_null());
}

#[test]
fn explore_exhausts_the_minimal_scenario_without_preemptions() {
    // K = 0 with the first model choices only: every schedule explored
    // (some twenty thousand: the channel's close path runs six goroutines
    // that can interleave without preemption), none failing; without a
    // reduction the same search takes more.
    let json = |extra: &[&str]| {
        let mut args = vec![
            "--variant",
            "pre-8095",
            "--preemption-bound",
            "0",
            "--choice-bound",
            "0",
        ];
        args.extend_from_slice(extra);
        explore_minimal_json(&args)
    };
    let pruned = json(&[]);
    assert_eq!(pruned["complete"], true);
    assert_eq!(pruned["failures"], 0);
    assert_eq!(pruned["choice_bound"], 0);
    // Split into branches, the search reports the same on one thread as on
    // two (the wall-clock fields aside).
    let timeless = |mut v: serde_json::Value| {
        let o = v.as_object_mut().unwrap();
        o.remove("elapsed_s");
        o.remove("schedules_per_s");
        v
    };
    let one = timeless(json(&["--jobs", "1"]));
    assert_eq!(one, timeless(json(&["--jobs", "2"])));
    assert_eq!(one, timeless(pruned.clone()));
    // The plain search has more schedules than the pruned one: it is still
    // going after as many as the pruned search needed in all.
    let pruned_schedules = pruned["schedules"].as_u64().unwrap();
    let cap = (pruned_schedules + 1).to_string();
    let plain = json(&["--reduction", "none", "--max-schedules", &cap]);
    assert_eq!(plain["reduction"], "none");
    assert_eq!(plain["complete"], false, "{plain} vs {pruned}");
    assert_eq!(plain["schedules"].as_u64().unwrap(), pruned_schedules + 1);
}

#[test]
fn explore_rejects_threads_for_dpor_with_exit_2() {
    let out = lbsim()
        .args([
            "explore",
            "scenarios/close_race_minimal.toml",
            "--variant",
            "pr-8095",
            "--preemption-bound",
            "0",
            "--reduction",
            "dpor",
            "--jobs",
            "2",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--jobs 2") && err.contains("one thread"),
        "{err}"
    );
}

#[test]
fn minimize_rejects_a_run_that_does_not_fail() {
    lbsim()
        .args([
            "minimize",
            "scenarios/close_race_minimal.toml",
            "--variant",
            "pr-8095",
            "--seed",
            "1",
            "--strategy",
            "timed",
        ])
        .assert()
        .code(2);
}

#[test]
fn explore_below_a_prefix_says_how_much_of_it_was_followed() {
    let json = |prefix: &str| {
        explore_minimal_json(&[
            "--variant",
            "pr-8095",
            "--preemption-bound",
            "0",
            "--choice-bound",
            "0",
            "--prefix",
            prefix,
        ])
    };
    // The first 16 decisions of a schedule: main until it first blocks,
    // then three of the tasks it started.
    let whole = json("1:0*10.1*3.2*2.3");
    assert_eq!(whole["prefix_decisions"], 16);
    assert_eq!(whole["prefix_followed"], 16);
    assert_eq!(whole["complete"], true);
    // Task 99 does not exist: the prefix stops before it.
    let cut = json("1:0*10.1*3.2*2.3.99");
    assert_eq!(cut["prefix_decisions"], 17);
    assert_eq!(cut["prefix_followed"], 16);
}

#[test]
fn replay_says_where_a_schedule_was_not_followed() {
    let args = |schedule: &'static str| {
        [
            "replay",
            "scenarios/close_race_minimal.toml",
            "--variant",
            "pre-8095",
            "--schedule",
            schedule,
        ]
    };
    // Main runs its first six steps; there is no task 99: the replay
    // says where it left the schedule and fails.
    let out = lbsim().args(args("1:0*6.99")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.contains("schedule not followed from step 6: recorded Task(99) is not possible here"),
        "{out}"
    );
    assert!(!run_ok(&args("1:0*6")).contains("not followed"));
}
