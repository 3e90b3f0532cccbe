//! Bad command-line input is rejected before any run, with exit code 2 and a
//! message that names the problem and the fix; errors name their cause once;
//! an interrupted run records the runs it did.

use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use assert_cmd::Command;

const SCENARIO: &str = "scenarios/close_race_minimal.toml";

/// Long enough for the unfixed code to be caught running a huge `--runs`
/// instead of rejecting its input; the fixed code answers at once.
const TIMEOUT: Duration = Duration::from_secs(10);

fn lbsim() -> Command {
    let mut c = Command::cargo_bin("lbsim").unwrap();
    c.timeout(TIMEOUT);
    c
}

fn output(args: &[&str]) -> Output {
    lbsim().args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `args`, expects exit code 2 and returns stderr.
fn bad_input(args: &[&str]) -> String {
    let o = output(args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "lbsim {args:?}: expected exit code 2\nstdout:\n{}\nstderr:\n{err}",
        stdout(&o)
    );
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// 1. Output paths are checked before the first run.

#[test]
fn run_out_that_is_a_file_is_rejected_before_any_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("afile");
    std::fs::write(&file, "keep me").unwrap();
    // A hundred million runs would take minutes: only a check before the
    // first run answers within the timeout.
    let err = bad_input(&[
        "run",
        SCENARIO,
        "--runs",
        "100000000",
        "--strategy",
        "random",
        "--out",
        s(&file),
    ]);
    assert!(err.contains(s(&file)), "{err}");
    assert!(err.contains("not a directory"), "{err}");
    assert!(err.contains("--out"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn run_out_with_a_directory_in_place_of_an_output_file_is_rejected_before_any_run() {
    for name in [
        "summary.csv",
        "failures.csv",
        "leak_rate.png",
        "leak_rate.svg",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join(name);
        std::fs::create_dir(&blocker).unwrap();
        let err = bad_input(&[
            "run",
            SCENARIO,
            "--runs",
            "100000000",
            "--strategy",
            "random",
            "--out",
            s(dir.path()),
        ]);
        assert!(err.contains(s(&blocker)), "{name}: {err}");
        assert!(err.contains("is a directory"), "{name}: {err}");
    }
    // Without charts the chart names do not matter.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("leak_rate.png")).unwrap();
    let o = output(&[
        "run",
        SCENARIO,
        "--runs",
        "200",
        "--strategy",
        "random",
        "--no-plot",
        "-q",
        "--out",
        s(dir.path()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn run_out_below_a_file_is_rejected_and_a_new_directory_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("afile");
    std::fs::write(&file, "").unwrap();
    let below = file.join("sub");
    let err = bad_input(&[
        "run",
        SCENARIO,
        "--runs",
        "100000000",
        "--strategy",
        "random",
        "--out",
        s(&below),
    ]);
    assert!(err.contains(s(&below)), "{err}");
    assert!(err.contains("--out"), "{err}");

    let fresh = dir.path().join("a").join("b");
    let o = output(&[
        "run",
        SCENARIO,
        "--runs",
        "200",
        "--strategy",
        "random",
        "-q",
        "--out",
        s(&fresh),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "summary.csv",
        "failures.csv",
        "leak_rate.png",
        "leak_rate.svg",
    ] {
        assert!(fresh.join(f).is_file(), "{f}");
    }
}

#[test]
fn sweep_out_that_is_a_file_is_rejected_before_any_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("afile");
    std::fs::write(&file, "").unwrap();
    let err = bad_input(&[
        "sweep",
        SCENARIO,
        "--param",
        "balancer.init_timeout=1ms..2ms:2",
        "--runs",
        "100000000",
        "--strategy",
        "random",
        "--out",
        s(&file),
    ]);
    assert!(err.contains(s(&file)), "{err}");
    assert!(err.contains("not a directory"), "{err}");
    assert!(err.contains("--out"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("sweep_balancer_init_timeout.png");
    std::fs::create_dir(&blocker).unwrap();
    let err = bad_input(&[
        "sweep",
        SCENARIO,
        "--param",
        "balancer.init_timeout=1ms..2ms:2",
        "--runs",
        "100000000",
        "--strategy",
        "random",
        "--out",
        s(dir.path()),
    ]);
    assert!(err.contains(s(&blocker)), "{err}");
    assert!(err.contains("is a directory"), "{err}");
}

#[test]
fn replay_output_paths_are_checked_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("afile");
    std::fs::write(&file, "").unwrap();
    let trace = dir.path().join("trace.txt");
    let timeline = file.join("t.svg");
    let err = bad_input(&[
        "replay",
        SCENARIO,
        "--variant",
        "pre-8095",
        "--seed",
        "1",
        "--strategy",
        "random",
        "--trace",
        s(&trace),
        "--timeline",
        s(&timeline),
    ]);
    assert!(err.contains(s(&timeline)), "{err}");
    assert!(err.contains("--timeline"), "{err}");
    // Nothing was written: the check came before the run and the trace.
    assert!(!trace.exists());

    let err = bad_input(&[
        "replay",
        SCENARIO,
        "--variant",
        "pre-8095",
        "--seed",
        "1",
        "--strategy",
        "random",
        "--trace",
        s(dir.path()),
    ]);
    assert!(err.contains("--trace"), "{err}");
    assert!(err.contains("is a directory"), "{err}");

    // A missing parent directory is created, for the timeline as for the trace.
    let timeline = dir.path().join("new").join("t.svg");
    let trace = dir.path().join("new2").join("t.txt");
    let o = output(&[
        "replay",
        SCENARIO,
        "--variant",
        "pre-8095",
        "--seed",
        "1",
        "--strategy",
        "random",
        "--trace",
        s(&trace),
        "--timeline",
        s(&timeline),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(timeline.is_file() && trace.is_file());
}

// 2. A schedule that cannot be followed is not reported as a good replay.

#[test]
fn replay_of_a_schedule_that_cannot_be_followed_fails() {
    // Task 99 never exists: the very first decision cannot be followed.
    let o = output(&[
        "replay",
        SCENARIO,
        "--variant",
        "pre-8095",
        "--schedule",
        "1:99.99.99",
    ]);
    let out = stdout(&o);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "stdout:\n{out}\nstderr:\n{err}");
    let last = out.lines().last().unwrap_or("");
    assert!(last.starts_with("outcome: "), "{last}");
    assert!(!last.starts_with("outcome: ok"), "{last}");
    assert!(err.contains("step 0"), "{err}");
    assert!(err.contains("--variant"), "{err}");

    // minimize refuses it too, rather than shrinking some other run.
    let o = output(&[
        "minimize",
        SCENARIO,
        "--variant",
        "pre-8095",
        "--schedule",
        "1:99.99.99",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not followed") && err.contains("step 0"),
        "{err}"
    );
    assert!(!stdout(&o).contains("minimized:"), "{}", stdout(&o));

    // A schedule recorded from this scenario and variant replays and exits 0.
    let rec = output(&[
        "replay",
        SCENARIO,
        "--variant",
        "pre-8095",
        "--seed",
        "3",
        "--strategy",
        "random",
        "--print-schedule",
    ]);
    assert!(rec.status.success(), "{}", stderr(&rec));
    let rec_out = stdout(&rec);
    let schedule = rec_out
        .lines()
        .find_map(|l| l.strip_prefix("schedule: "))
        .unwrap()
        .to_string();
    let o = output(&[
        "replay",
        SCENARIO,
        "--variant",
        "pre-8095",
        "--schedule",
        &schedule,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).lines().last(),
        rec_out.lines().last(),
        "the replay ends as the recorded run did"
    );
}

// 3. An interrupted run records the runs it did.

/// Ok runs, and a stop request after `after` of them.
struct StopAfter<'a> {
    stop: &'a AtomicBool,
    count: AtomicU64,
    after: u64,
}

impl lbsim::experiment::Model for StopAfter<'_> {
    fn run_one(
        &self,
        _: lbsim::grpc::Variant,
        _: &mut lbsim::sim::Sim,
        seed: u64,
        _: &lbsim::experiment::RunOptions,
    ) -> lbsim::experiment::RunResult {
        if self.count.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            self.stop.store(true, Ordering::SeqCst);
        }
        lbsim::experiment::RunResult {
            outcome: if seed.is_multiple_of(7) {
                lbsim::sim::Outcome::Leak
            } else {
                lbsim::sim::Outcome::Ok
            },
            leaked: Vec::new(),
            steps: 1,
            preemptions: 0,
            tasks: 1,
            client_errors: Vec::new(),
        }
    }
}

#[test]
fn a_stopped_experiment_reports_the_range_it_ran() {
    use lbsim::experiment::{Experiment, RunOptions, Shard, StrategySpec};
    for (jobs, shard) in [
        (1, Shard::WHOLE),
        (4, Shard::WHOLE),
        (3, Shard { index: 1, count: 3 }),
    ] {
        let stop = AtomicBool::new(false);
        let model = StopAfter {
            stop: &stop,
            count: AtomicU64::new(0),
            after: 1_000,
        };
        let exp = Experiment {
            variants: vec![lbsim::grpc::Variant::Pre8095, lbsim::grpc::Variant::Pr8095],
            strategy: StrategySpec::Random,
            runs: 3_000_000,
            master_seed: 5,
            shard,
            jobs,
            opts: RunOptions {
                grace: 0,
                max_steps: 1,
                max_time: 1,
            },
            max_failures: 10,
        };
        let r = lbsim::experiment::run(&model, &exp, &stop, &|_| {});
        assert!(r.partial, "jobs {jobs}");
        let whole = shard.range(exp.runs);
        let done = r.summaries[0].counts.runs;
        assert!(done > 0 && done < whole.end - whole.start);
        assert_eq!(r.range, whole.start..whole.start + done, "jobs {jobs}");
        for f in &r.failures {
            assert!(r.range.contains(&f.index), "{f:?} outside {:?}", r.range);
        }
        let rows = lbsim::report::summary_rows("t", &exp, &r);
        for row in &rows {
            assert_eq!((row.run_from, row.run_to), (r.range.start, r.range.end));
            assert_eq!(row.runs, done);
            assert!(row.partial);
        }
        let table = lbsim::report::table(&rows);
        let expected = format!("runs {}..{} of 3000000", r.range.start, r.range.end);
        assert!(table.contains(&expected), "{table}");
    }
}

#[cfg(unix)]
#[test]
fn an_interrupted_run_records_and_prints_the_range_it_ran() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lbsim"))
        .args([
            "run",
            SCENARIO,
            "--runs",
            "1000000000",
            "--strategy",
            "random",
            "--jobs",
            "4",
            "--no-plot",
            "--quiet",
            "--out",
        ])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The output directory is made just before the Ctrl-C handler is
    // installed; then the runs are under way.
    let started = Instant::now();
    while !dir.exists() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1_000));
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("lbsim run did not stop within 30 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));

    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut ranges = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let from: u64 = f[col("run_from")].parse().unwrap();
        let to: u64 = f[col("run_to")].parse().unwrap();
        let runs: u64 = f[col("runs")].parse().unwrap();
        assert_eq!(f[col("partial")], "true");
        assert_eq!(from, 0);
        assert_eq!(to, runs, "{line}");
        assert!(runs < 1_000_000_000);
        ranges.push(to);
    }
    assert!(!ranges.is_empty());
    let table = stdout(&out);
    let expected = format!("runs 0..{} of 1000000000  (PARTIAL", ranges[0]);
    assert!(table.contains(&expected), "{table}");
}

// 4. Errors name their cause once, in words.

/// The error and its causes as `lbsim` prints them (`{:#}`): joined by `: `.
fn printed(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// The printed error names `path` and says `cause` once.
fn assert_cause_once(e: &(dyn std::error::Error + 'static), path: &Path, cause: &str) {
    let p = printed(e);
    assert!(p.contains(s(path)), "{p}");
    assert_eq!(p.matches(cause).count(), 1, "{cause:?} in {p}");
}

#[test]
fn library_errors_do_not_repeat_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let e = lbsim::scenario::Scenario::load(&missing).unwrap_err();
    assert_cause_once(&e, &missing, "No such file or directory");
    let e = lbsim::report::write_atomic(dir.path(), "x").unwrap_err();
    assert_cause_once(&e, dir.path(), "Is a directory");
    let e = lbsim::report::read_summary_csv(&missing).unwrap_err();
    assert_cause_once(&e, &missing, "No such file or directory");
    let e = lbsim::validation::load_real(&missing).unwrap_err();
    assert_cause_once(&e, &missing, "No such file or directory");
}

/// `error: ...` of a failed command: the cause appears once.
fn assert_once(err: &str, cause: &str) {
    assert_eq!(err.matches(cause).count(), 1, "{cause:?} in {err}");
}

#[test]
fn command_errors_name_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let err = bad_input(&["run", s(&missing)]);
    assert_once(&err, "No such file or directory");
    assert!(err.contains(s(&missing)), "{err}");

    let err = bad_input(&["plot", s(&dir.path().join("missing.csv"))]);
    assert_once(&err, "No such file or directory");

    // A summary to draw, then a picture whose target is a directory.
    let out = dir.path().join("run");
    let o = output(&[
        "run",
        SCENARIO,
        "--runs",
        "200",
        "--strategy",
        "random",
        "--no-plot",
        "-q",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = out.join("summary.csv");
    let target = dir.path().join("pic.svg");
    std::fs::create_dir(&target).unwrap();
    let err = bad_input(&["plot", s(&summary), "--out", s(&target)]);
    assert_once(&err, "Is a directory");
    assert_once(&err, s(&target));
}

#[test]
fn drawing_errors_are_sentences_naming_the_file_and_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = output(&[
        "run",
        SCENARIO,
        "--runs",
        "200",
        "--strategy",
        "random",
        "--no-plot",
        "-q",
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A name the target can have but the temporary file beside it cannot
    // (too long), so that the PNG encoder fails.
    let target = dir.path().join(format!("{}.png", "x".repeat(245)));
    let err = bad_input(&["plot", s(&out.join("summary.csv")), "--out", s(&target)]);
    assert_once(&err, s(&target));
    assert_once(&err, "File name too long");
    for debug in ["ImageError", "IoError", "Os {", "kind:", "code:"] {
        assert!(!err.contains(debug), "{debug:?} in {err}");
    }
}

// 5. Commands that run one variant say so.

#[test]
fn one_variant_commands_reject_all_with_a_fitting_message() {
    for cmd in [
        vec!["replay", SCENARIO, "--variant", "all", "--seed", "1"],
        vec![
            "explore",
            SCENARIO,
            "--variant",
            "all",
            "--preemption-bound",
            "1",
        ],
        vec!["minimize", SCENARIO, "--variant", "all", "--seed", "1"],
    ] {
        let err = bad_input(&cmd);
        let expected = format!("{} runs one variant; choose one of", cmd[0]);
        assert!(err.contains(&expected), "{err}");
        assert!(err.contains("pre-8095") && err.contains("pr-8095"), "{err}");
        assert!(!err.contains("or all"), "{err}");
    }
    let err = bad_input(&[
        "replay",
        SCENARIO,
        "--variant",
        "pre-8095,pr-8095",
        "--seed",
        "1",
    ]);
    assert!(err.contains("replay runs one variant"), "{err}");
    let err = bad_input(&["replay", SCENARIO, "--variant", "nope", "--seed", "1"]);
    assert!(err.contains("unknown variant `nope`"), "{err}");
    assert!(!err.contains("or all"), "{err}");
}

// 6. Counts out of range are rejected with the valid range.

#[test]
fn more_shards_than_runs_are_rejected() {
    // --out in case the check fails: nothing is written in the crate.
    let dir = tempfile::tempdir().unwrap();
    let err = bad_input(&[
        "run",
        SCENARIO,
        "--runs",
        "3",
        "--shard",
        "0/5",
        "--strategy",
        "random",
        "--no-plot",
        "--out",
        s(dir.path()),
    ]);
    assert!(err.contains("--shard"), "{err}");
    assert!(err.contains("at most 3"), "{err}");
    // As many shards as runs is fine.
    let o = output(&[
        "run",
        SCENARIO,
        "--runs",
        "3",
        "--shard",
        "2/3",
        "--strategy",
        "random",
        "--no-plot",
        "-q",
        "--out",
        s(dir.path()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn runs_beyond_the_limit_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = s(dir.path());
    for runs in ["18446744073709551615", "18446744073709551000"] {
        let err = bad_input(&[
            "run",
            SCENARIO,
            "--runs",
            runs,
            "--strategy",
            "random",
            "--out",
            out,
        ]);
        assert!(err.contains("--runs"), "{err}");
        assert!(err.contains("between 1 and"), "{err}");
        let err = bad_input(&[
            "sweep",
            SCENARIO,
            "--param",
            "balancer.init_timeout=1ms..2ms:2",
            "--runs",
            runs,
            "--strategy",
            "random",
            "--out",
            out,
        ]);
        assert!(err.contains("--runs"), "{err}");
        assert!(err.contains("between 1 and"), "{err}");
    }
    let err = bad_input(&["run", SCENARIO, "--runs", "0", "--out", out]);
    assert!(err.contains("between 1 and"), "{err}");
}

#[test]
fn explore_limits_must_be_positive() {
    let err = bad_input(&[
        "explore",
        SCENARIO,
        "--variant",
        "pre-8095",
        "--preemption-bound",
        "1",
        "--max-schedules",
        "0",
    ]);
    assert!(err.contains("--max-schedules"), "{err}");
    assert!(err.contains("at least 1"), "{err}");
    for secs in ["0", "-1", "NaN", "inf"] {
        let err = bad_input(&[
            "explore",
            SCENARIO,
            "--variant",
            "pre-8095",
            "--preemption-bound",
            "1",
            &format!("--max-seconds={secs}"),
        ]);
        assert!(err.contains("--max-seconds"), "{secs}: {err}");
    }
}
