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
