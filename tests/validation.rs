//! The validation harness: the probe scenario that mirrors `validation/go/`
//! (the priority policy with probe children, driven directly), and
//! `lbsim compare`, which predicts it from a calibration and sets the
//! prediction beside real measurements.

use assert_cmd::Command;
use serde_json::Value;

const PROBE: &str = "scenarios/validation_probe.toml";

fn lbsim() -> Command {
    Command::cargo_bin("lbsim").unwrap()
}

fn json_lines(args: &[&str]) -> Vec<Value> {
    let out = lbsim().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "lbsim {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_harness_leaks_before_the_fix_and_never_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let rows = json_lines(&[
        "run",
        PROBE,
        "--runs",
        "4000",
        "--strategy",
        "random",
        "--variant",
        "pre-8095,pr-8095,a115",
        "--format",
        "json",
        "--no-plot",
        "--quiet",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    let leaks = |v: &str| {
        rows.iter()
            .find(|r| r["variant"] == v)
            .unwrap_or_else(|| panic!("no row for {v}"))["leaks"]
            .as_u64()
            .unwrap()
    };
    assert!(leaks("pre-8095") > 0, "{rows:?}");
    assert_eq!(leaks("pr-8095"), 0);
    assert_eq!(leaks("a115"), 0);
    for r in &rows {
        assert_eq!(r["deadlocks"], 0, "{r}");
        assert_eq!(r["panics"], 0, "{r}");
    }
}

fn explore(variant: &str, bound: &str) -> Value {
    let rows = json_lines(&[
        "explore",
        PROBE,
        "--variant",
        variant,
        "--preemption-bound",
        bound,
        "--choice-bound",
        "0",
        "--format",
        "json",
    ]);
    rows.into_iter().next().unwrap()
}

#[test]
fn one_preemption_makes_the_harness_leak_before_the_fix() {
    let r = explore("pre-8095", "1");
    assert!(r["leaks"].as_u64().unwrap() > 0, "{r}");
}

#[test]
fn the_fixed_harness_is_leak_free_within_two_preemptions() {
    for v in ["pr-8095", "a115"] {
        let r = explore(v, "2");
        assert_eq!(r["complete"], true, "{v}: {r}");
        assert!(r["schedules"].as_u64().unwrap() > 100, "{v}: {r}");
        assert_eq!(r["leaks"], 0, "{v}: {r}");
        assert_eq!(r["deadlocks"], 0, "{v}: {r}");
        assert_eq!(r["panics"], 0, "{v}: {r}");
    }
}

/// Writes `text` as `name` in `dir`, checks that `lbsim validate` refuses it
/// with exit 2, and returns the message.
fn refused(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    let out = lbsim()
        .args(["validate", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{name}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn probe_steps_are_refused_in_a_channel_scenario_and_channel_steps_in_a_probe_one() {
    let dir = tempfile::tempdir().unwrap();
    let channel = std::fs::read_to_string("scenarios/close_race_minimal.toml").unwrap();
    let err = refused(
        dir.path(),
        "bad_channel.toml",
        &channel.replace(
            "{ op = \"close\" },",
            "{ op = \"report\", child = \"p0\", state = \"ready\" },\n  { op = \"close\" },",
        ),
    );
    assert!(err.contains("bad_channel.toml:"), "{err}");
    assert!(err.contains("unknown client op `report`"), "{err}");

    let probe = std::fs::read_to_string(PROBE).unwrap();
    let err = refused(
        dir.path(),
        "bad_probe.toml",
        &probe.replace(
            "{ op = \"close\" },",
            "{ op = \"rpc\", expect = \"s0\" },\n  { op = \"close\" },",
        ),
    );
    assert!(err.contains("unknown client op `rpc`"), "{err}");
    assert!(err.contains("report, wait_built"), "{err}");

    let err = refused(
        dir.path(),
        "bad_child.toml",
        &probe.replace(
            "child = \"p1\", state = \"ready\"",
            "child = \"p7\", state = \"ready\"",
        ),
    );
    assert!(err.contains("unknown child `p7`"), "{err}");
    assert!(err.contains("p0, p1"), "{err}");

    let err = refused(
        dir.path(),
        "bad_backend.toml",
        &format!("{probe}\n[[backend]]\nname = \"s0\"\n"),
    );
    assert!(err.contains("cannot have [[backend]] tables"), "{err}");
}

/// A calibration file as `validation/go -mode calibrate` writes it, with
/// only the fields `lbsim compare` reads.
fn calibration(gomaxprocs: u32, race: bool) -> String {
    let s = |p10: u64, p50: u64, p90: u64| {
        format!("{{\"n\": 100, \"p10\": {p10}, \"p50\": {p50}, \"p90\": {p90}}}")
    };
    let pauses = "{\"spin_ns\": 1000000000, \"gaps\": 5000, \"histogram\": [\
        {\"lo_ns\": 2000, \"hi_ns\": 5000, \"count\": 500},\
        {\"lo_ns\": 20000, \"hi_ns\": 50000, \"count\": 4000},\
        {\"lo_ns\": 50000, \"hi_ns\": 100000, \"count\": 500}]}";
    format!(
        "{{\"version\": \"v1.71.1\", \"race\": {race}, \"gomaxprocs\": {gomaxprocs},\
          \"wake_running_waker\": {wr}, \"stolen\": {st}, \"stolen_fraction\": 0.9,\
          \"wake_blocking_waker\": {wb}, \"wake_send_cost\": {sc}, \"mutex_handoff\": {mh},\
          \"step_costs\": {{\"close\": {cl}, \"iteration\": {it}, \"harness_wake_slow\": {hw}}},\
          \"pauses\": {{\"threshold_ns\": 2000, \"idle\": {pauses}, \"harness\": {pauses}, \"worker\": {pauses}}}}}",
        wr = s(70_000, 72_000, 200_000),
        st = s(70_000, 72_000, 74_000),
        wb = s(190, 10_000, 11_000),
        sc = s(9_000, 9_700, 10_500),
        mh = s(70_000, 72_000, 100_000),
        cl = s(700, 800, 1_000),
        it = s(12_000, 13_000, 40_000),
        hw = s(13_000, 25_000, 60_000),
    )
}

#[test]
fn compare_predicts_every_measured_point_and_writes_table_and_chart() {
    let dir = tempfile::tempdir().unwrap();
    let cal = dir.path().join("calibration");
    std::fs::create_dir(&cal).unwrap();
    for p in [1, 2] {
        std::fs::write(
            cal.join(format!("gomaxprocs-{p}.json")),
            calibration(p, false),
        )
        .unwrap();
    }
    let row = |v: &str, p: u32, d: u64, n: u64, k: u64| {
        format!(
            "{{\"version\":\"{v}\",\"race\":false,\"gomaxprocs\":{p},\"delay_ns\":{d},\"iterations\":{n},\"leaks\":{k}}}\n"
        )
    };
    let real = dir.path().join("real.jsonl");
    std::fs::write(
        &real,
        [
            row("v1.71.1", 2, 0, 100_000, 20),
            row("v1.71.1", 2, 50_000, 100_000, 5),
            row("v1.71.1", 1, 0, 100_000, 0),
            row("v1.72.0", 2, 0, 100_000, 0),
            row("v1.81.1", 2, 0, 100_000, 0),
        ]
        .concat(),
    )
    .unwrap();
    let out = dir.path().join("out");
    let args = |jobs: &str| {
        vec![
            "compare".to_string(),
            "--real".into(),
            real.to_str().unwrap().into(),
            "--calibration".into(),
            cal.to_str().unwrap().into(),
            "--runs".into(),
            "3000".into(),
            "--fixed-runs".into(),
            "500".into(),
            "--jobs".into(),
            jobs.into(),
            "--out".into(),
            out.to_str().unwrap().into(),
        ]
    };
    let run = |jobs: &str| {
        let o = lbsim().args(args(jobs)).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read_to_string(out.join("comparison.csv")).unwrap()
    };
    let csv = run("1");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 6, "{csv}");
    assert!(
        lines[1].starts_with("v1.71.1,pre-8095,false,2,0,100000,20,"),
        "{csv}"
    );
    assert!(lines[4].starts_with("v1.72.0,pr-8095,"), "{csv}");
    assert!(lines[5].starts_with("v1.81.1,a115,"), "{csv}");
    // The fixed versions are predicted leak-free too.
    for l in &lines[4..] {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f[11], "0", "{l}");
    }
    assert_eq!(run("2"), csv, "predictions do not depend on --jobs");
    for f in [
        "comparison.md",
        "runtime.toml",
        "validation.png",
        "validation.svg",
    ] {
        let len = std::fs::metadata(out.join(f)).unwrap().len();
        assert!(len > 100, "{f}: {len} bytes");
    }
    let toml = std::fs::read_to_string(out.join("runtime.toml")).unwrap();
    assert!(toml.contains("steal = "), "{toml}");

    // An --out that is a file is refused before anything runs.
    let file = dir.path().join("afile");
    std::fs::write(&file, "").unwrap();
    let mut bad_out = args("1");
    let n = bad_out.len();
    bad_out[n - 1] = file.to_str().unwrap().into();
    let o = lbsim().args(bad_out).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not a directory"), "{err}");

    // A point without its calibration is refused before anything runs.
    std::fs::remove_file(cal.join("gomaxprocs-1.json")).unwrap();
    let o = lbsim().args(args("1")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("gomaxprocs-1.json: cannot read"), "{err}");
}

#[test]
fn the_probe_scenario_runs_the_model_derived_from_the_committed_calibration() {
    use lbsim::experiment::model_for;
    let scenario = lbsim::scenario::Scenario::load(PROBE).unwrap();
    let cal = lbsim::validation::Calibration::load(std::path::Path::new(
        "results/validation/calibration/gomaxprocs-2.json",
    ))
    .unwrap();
    let steps = model_for(&scenario).expected_steps() as f64;
    assert_eq!(scenario.runtime, cal.runtime_model(steps));
}

#[test]
fn minimize_marks_each_preemption_in_the_trace_and_prints_the_replay() {
    // A leaking schedule, found by a bounded search.
    let out = lbsim()
        .args([
            "explore",
            PROBE,
            "--variant",
            "pre-8095",
            "--preemption-bound",
            "1",
            "--choice-bound",
            "0",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let schedule = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("schedule: "))
        .unwrap_or_else(|| panic!("no schedule in:\n{text}"))
        .to_string();
    let out = lbsim()
        .args([
            "minimize",
            PROBE,
            "--variant",
            "pre-8095",
            "--schedule",
            &schedule,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let n: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("minimized: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no minimized count in:\n{text}"));
    let marks: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(">>> preemption"))
        .collect();
    assert!(n >= 1 && !marks.is_empty(), "{text}");
    assert!(
        marks.last().unwrap().contains(&format!("of {n}: ")),
        "{marks:?} against {n} preemptions"
    );
    // The leak's preemption takes the worker off inside Remove.
    assert!(
        marks.iter().any(|m| m.contains("priority.run ->")),
        "{marks:?}"
    );
    assert!(text.contains("replay: lbsim replay "), "{text}");
}
