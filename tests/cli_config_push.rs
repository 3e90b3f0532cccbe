//! The channel's configuration end to end: the `update_config` client op
//! pushes one mid-run, which reaches the priority policy through
//! cluster_resolver and moves RPCs to the backend it now prefers (without
//! the push they never get there); `[balancer] child_policy` is the policy
//! the channel runs from the start.
//!
//! `lbsim run` counts the runs with a failed client expectation
//! (`client_failures`, beside the outcomes), and a few of them are also
//! replayed: `replay` prints every failed expectation as a `client: ` line.

use std::path::Path;

use serde_json::Value;

mod common;
use common::run_ok;

/// s0 serves p0 and s1 p1; the client pushes `STEP`, waits until an RPC
/// reaches s1, and expects the next RPC to reach s1 as well.
const SCENARIO: &str = r#"
[scenario]
name = "config_push"

[[backend]]
name = "s0"

[[backend]]
name = "s1"

[[priority]]
backends = ["s0"]

[[priority]]
backends = ["s1"]

[client]
script = [
  { op = "rpc", expect = "s0" },
  STEP,
  { op = "rpc_until", backend = "s1", timeout = "10s" },
  { op = "rpc", expect = "s1" },
  { op = "close" },
]
"#;

const REORDER: &str =
    r#"{ op = "update_config", priorities = [["s1"], ["s0"]], child_policy = "pick_first" }"#;
const REMOVE: &str = r#"{ op = "update_config", priorities = [["s1"]] }"#;
/// The negative control: the same time passes, nothing is pushed.
const NO_PUSH: &str = r#"{ op = "sleep", for = "1ms" }"#;

/// The fixed variants: the older ones leak a child cached at close
/// (pre-4308 always, pre-8095 in the race of #7783), which is not what
/// these tests are about.
const VARIANTS: &str = "pr-8095,a115";

const WAIT: &str = r#"  { op = "rpc_until", backend = "s1", timeout = "10s" },
"#;

fn write_scenario(dir: &Path, text: &str) -> String {
    let path = dir.join("config_push.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// `lbsim run` over 50 random schedules; one JSON summary per variant.
fn run(dir: &Path, scenario: &str) -> Vec<Value> {
    let out = dir.join("out");
    let summaries: Vec<Value> = run_ok(&[
        "run",
        scenario,
        "--runs",
        "50",
        "--strategy",
        "random",
        "--seed",
        "1",
        "--variant",
        VARIANTS,
        "--format",
        "json",
        "--no-plot",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ])
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    assert_eq!(summaries.len(), 2);
    summaries
}

/// Replays one run; returns what `replay` printed (the trace goes to a
/// file) and the trace.
fn replay(dir: &Path, scenario: &str, variant: &str, seed: u64) -> (String, String) {
    let trace = dir.join(format!("{variant}-{seed}.trace"));
    let seed = seed.to_string();
    let printed = run_ok(&[
        "replay",
        scenario,
        "--variant",
        variant,
        "--strategy",
        "random",
        "--seed",
        &seed,
        "--trace",
        trace.to_str().unwrap(),
    ]);
    (printed, std::fs::read_to_string(trace).unwrap())
}

/// Every run ends cleanly and meets every expectation of the client, and
/// so do the replayed ones; returns the replayed traces.
fn assert_push_works(step: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), &SCENARIO.replace("STEP", step));
    for s in run(dir.path(), &scenario) {
        assert_eq!(s["runs"], 50, "{s}");
        assert_eq!(s["ok"], s["runs"], "{s}");
        assert_eq!(s["client_failures"], 0, "{s}");
    }
    let mut traces = Vec::new();
    for variant in VARIANTS.split(',') {
        for seed in 1..=5 {
            let (stdout, trace) = replay(dir.path(), &scenario, variant, seed);
            assert!(
                stdout.contains("outcome: ok"),
                "{variant} {seed}:\n{stdout}"
            );
            assert!(
                !stdout.contains("client: "),
                "{variant} seed {seed}: an expectation failed:\n{stdout}"
            );
            traces.push(trace);
        }
    }
    traces
}

#[test]
fn reordered_priorities_move_rpcs_to_s1_under_its_own_child() {
    for trace in assert_push_works(REORDER) {
        let after = &trace[trace.find("client: push a new priority config").unwrap()..];
        // s1 keeps the child it had (priority-0-1), now first and running
        // pick_first directly instead of round_robin over pick_first.
        assert!(
            after.contains("push picker of priority-0-1 (Ready/pf{"),
            "s1's child should serve after the push"
        );
    }
}

#[test]
fn removing_s0s_priority_moves_rpcs_to_s1() {
    for trace in assert_push_works(REMOVE) {
        let after = &trace[trace.find("client: push a new priority config").unwrap()..];
        assert!(after.contains("balancergroup: Remove(priority-0-0) begins"));
        assert!(after.contains("push picker of priority-0-1 (Ready/rr[pf{"));
    }
}

#[test]
fn without_the_push_s1_is_never_reached() {
    let dir = tempfile::tempdir().unwrap();
    let text = SCENARIO.replace("STEP", NO_PUSH);
    let scenario = write_scenario(dir.path(), &text);
    // Every run fails its expectation, and ends cleanly all the same.
    for s in run(dir.path(), &scenario) {
        assert_eq!(s["ok"], s["runs"], "{s}");
        assert_eq!(s["client_failures"], s["runs"], "{s}");
    }
    let (stdout, _) = replay(dir.path(), &scenario, "pr-8095", 1);
    assert!(
        stdout.contains("client: no rpc reached s1 within the timeout"),
        "{stdout}"
    );
    // Without the wait, the expectation itself fails.
    assert!(text.contains(WAIT));
    let scenario = write_scenario(dir.path(), &text.replace(WAIT, ""));
    let (stdout, _) = replay(dir.path(), &scenario, "pr-8095", 1);
    assert!(
        stdout.contains("client: rpc reached s0, want s1"),
        "{stdout}"
    );
}

/// One priority over s0 and s1 under `POLICY`; every RPC expects s0.
const TWO_BACKENDS: &str = r#"
[scenario]
name = "two_backends"

[[backend]]
name = "s0"

[[backend]]
name = "s1"

[[priority]]
backends = ["s0", "s1"]

[balancer]
child_policy = "POLICY"

[client]
script = [
  { op = "rpc", expect = "s0", wait_for_ready = true },
  { op = "rpc", expect = "s0" },
  { op = "rpc", expect = "s0" },
  { op = "rpc", expect = "s0" },
  { op = "close" },
]
"#;

/// Failed expectations (`client:` lines) in replays of seeds 1..=5 of
/// [`TWO_BACKENDS`] under `policy`.
fn failed_expectations(policy: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), &TWO_BACKENDS.replace("POLICY", policy));
    (1..=5)
        .map(|seed| {
            let (stdout, _) = replay(dir.path(), &scenario, "pr-8095", seed);
            stdout.lines().filter(|l| l.starts_with("client:")).count()
        })
        .sum()
}

#[test]
fn the_balancer_child_policy_is_the_policy_the_channel_runs() {
    // pick_first stays on the first backend; round_robin spreads the RPCs.
    assert_eq!(failed_expectations("pick_first"), 0);
    assert!(failed_expectations("round_robin") > 0);
}
