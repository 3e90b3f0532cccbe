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
