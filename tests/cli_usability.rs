//! What a new user meets first: the list of variants says what each is.

use assert_cmd::Command;

#[test]
fn variants_lists_every_variant_with_a_line_saying_what_it_is() {
    let out = Command::cargo_bin("lbsim")
        .unwrap()
        .arg("variants")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for id in ["pre-4308", "pre-8095", "pr-8095", "priority-lock", "a115"] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no line for {id} in:\n{text}"));
        let what = line.trim_start()[id.len()..].trim();
        assert!(what.len() > 40, "{id}: {what:?}");
    }
    assert!(
        text.contains("alias buggy") && text.contains("alias fixed"),
        "{text}"
    );
}

#[test]
fn run_writes_to_the_untracked_out_directory_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = std::fs::canonicalize("scenarios/close_race_minimal.toml").unwrap();
    let out = Command::cargo_bin("lbsim")
        .unwrap()
        .current_dir(dir.path())
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--runs",
            "50",
            "--strategy",
            "random",
            "--no-plot",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dir.path()
            .join("out/close_race_minimal/summary.csv")
            .is_file()
    );
    assert!(
        !dir.path().join("results").exists(),
        "the tracked results/ was written"
    );
    let ignore = std::fs::read_to_string(".gitignore").unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "/out"), "{ignore}");
}

#[test]
fn the_readme_links_only_inside_the_repository() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    assert!(
        !readme.contains("../"),
        "the README points outside the repository"
    );
    // Every relative link names a file that exists.
    for part in readme.split("](").skip(1) {
        let target = part.split(')').next().unwrap();
        if target.starts_with("http") {
            continue;
        }
        let path = target.split('#').next().unwrap();
        assert!(
            std::path::Path::new(path).exists(),
            "README links to {path}, which does not exist"
        );
    }
}

/// Scheduling decisions per run of `scenario` with `extra` appended, under
/// the timed strategy.
fn steps_per_run(dir: &std::path::Path, extra: &str) -> f64 {
    let src = std::fs::read_to_string("scenarios/flapping_localities.toml").unwrap();
    let path = dir.join(format!("s{}.toml", extra.len()));
    std::fs::write(&path, format!("{src}\n{extra}")).unwrap();
    let out = Command::cargo_bin("lbsim")
        .unwrap()
        .args(["run", path.to_str().unwrap(), "--runs", "5"])
        .args(["--strategy", "timed", "--variant", "pre-8095"])
        .args(["--no-plot", "--quiet", "--format", "json", "--out"])
        .arg(dir.join(format!("out{}", extra.len())))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    v["steps"].as_f64().unwrap() / v["runs"].as_f64().unwrap()
}

#[test]
fn the_connect_table_sets_the_reconnect_backoff() {
    // With the real test's parameters every backoff after the first is 0,
    // so a refusing backend is redialled in a hot loop; grpc-go's defaults
    // back off for a second and more.
    let dir = tempfile::tempdir().unwrap();
    let test = steps_per_run(dir.path(), "");
    let grpc = steps_per_run(dir.path(), "[connect]\npreset = \"grpc\"\n");
    assert!(
        grpc * 10.0 < test,
        "grpc {grpc} vs test {test} steps per run"
    );
    let slow = steps_per_run(
        dir.path(),
        "[connect]\nbase_delay = \"1s\"\nmultiplier = 1.6\nmax_delay = \"120s\"\n",
    );
    assert!(
        slow * 10.0 < test,
        "slow {slow} vs test {test} steps per run"
    );
}
