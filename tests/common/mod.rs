//! Helpers shared by the command-line tests (each test file that uses them
//! says `mod common;`).

/// A summary CSV without its wall-clock columns (`elapsed_s`, `runs_per_s`),
/// found by name, so that runs compare by their results alone.
#[allow(dead_code)]
pub fn without_timing(csv: &str) -> String {
    let header: Vec<&str> = csv.lines().next().unwrap_or("").split(',').collect();
    let timing = |i: usize| matches!(header.get(i), Some(&"elapsed_s" | &"runs_per_s"));
    csv.lines()
        .map(|l| {
            let kept: Vec<&str> = l
                .split(',')
                .enumerate()
                .filter(|(i, _)| !timing(*i))
                .map(|(_, f)| f)
                .collect();
            kept.join(",") + "\n"
        })
        .collect()
}

/// Runs `lbsim args`, asserts it succeeded (showing its stderr if not) and
/// returns its stdout.
#[allow(dead_code)]
pub fn run_ok(args: &[&str]) -> String {
    let out = assert_cmd::Command::cargo_bin("lbsim")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lbsim {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The seed of the first of 5 `random` runs of the flagship under
/// `pre-4308` (every one leaks), run with its outputs in `dir`.
#[allow(dead_code)]
pub fn pre4308_leaking_seed(dir: &std::path::Path) -> String {
    let out = run_ok(&[
        "run",
        "scenarios/switch_to_lower_priority_and_back.toml",
        "--runs",
        "5",
        "--strategy",
        "random",
        "--variant",
        "pre-4308",
        "--format",
        "json",
        "--quiet",
        "--no-plot",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let row: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    row["first_failure_seed"].as_u64().unwrap().to_string()
}
