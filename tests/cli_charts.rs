//! Pictures end to end: what `replay --timeline` tells about the run.

use assert_cmd::Command;
use serde_json::Value;

const FLAGSHIP: &str = "scenarios/switch_to_lower_priority_and_back.toml";

fn run_ok(args: &[&str]) -> String {
    let out = Command::cargo_bin("lbsim")
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

/// The title of a timeline: the first text of the SVG.
fn title(svg: &str) -> String {
    let start = svg.find("<text ").expect("a text");
    let open = start + svg[start..].find('>').unwrap() + 1;
    let close = open + svg[open..].find("</text>").unwrap();
    svg[open..close].trim().to_string()
}

#[test]
fn replay_timeline_names_the_outcome_in_its_title() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(&[
        "run",
        FLAGSHIP,
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
        dir.path().to_str().unwrap(),
    ]);
    let row: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let seed = row["first_failure_seed"].as_u64().unwrap().to_string();
    for (variant, outcome) in [("pre-4308", "leak"), ("pr-8095", "ok")] {
        let svg = dir.path().join(format!("{variant}.svg"));
        let stdout = run_ok(&[
            "replay",
            FLAGSHIP,
            "--variant",
            variant,
            "--seed",
            &seed,
            "--strategy",
            "random",
            "--timeline",
            svg.to_str().unwrap(),
        ]);
        assert_eq!(
            stdout.lines().last().unwrap(),
            format!("outcome: {outcome}")
        );
        let svg = std::fs::read_to_string(&svg).unwrap();
        let title = title(&svg);
        assert!(
            title.starts_with(&format!(
                "switch_to_lower_priority_and_back — {variant} seed {seed}"
            )) && title.ends_with(&format!("— outcome: {outcome}")),
            "{title}"
        );
    }
}
