//! Pictures end to end: what `replay --timeline` tells about the run.

mod common;
use common::{pre4308_leaking_seed, run_ok};

const FLAGSHIP: &str = "scenarios/switch_to_lower_priority_and_back.toml";

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
    let seed = pre4308_leaking_seed(dir.path());
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
