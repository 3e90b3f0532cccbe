//! A recorded run: the seed plus every decision the strategy made, in order.
//!
//! Printable form: `<seed>:<step>.<step>...` where a step is a task id (`7`),
//! `t` (fire the next timer) or `c<k>` (alternative k of a model choice),
//! optionally followed by `+<ns>` (virtual time advanced before the step) and
//! `*<n>` (the same step n times in a row). Example: `42:0*3.1.t.c1.2+150*2`.

use std::fmt;

use super::strategy::Choice;
use super::task::TaskId;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StepKind {
    Task(u32),
    Timer,
    Choose(u32),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Step {
    pub kind: StepKind,
    /// Virtual nanoseconds that passed before this step (timed strategy only).
    pub dt: u64,
}

impl Step {
    pub fn from_choice(choice: Choice, dt: u64) -> Self {
        let kind = match choice {
            Choice::Task(TaskId(t)) => StepKind::Task(t),
            Choice::Timer => StepKind::Timer,
        };
        Step { kind, dt }
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Schedule {
    pub seed: u64,
    pub steps: Vec<Step>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad schedule `{text}`: {why}")]
pub struct ScheduleParseError {
    pub text: String,
    pub why: String,
}

impl Schedule {
    /// Number of steps that switched away from a task that could have
    /// continued is not recoverable from the steps alone; this counts how
    /// often consecutive task steps differ, a cheap proxy used for display.
    pub fn task_switches(&self) -> usize {
        let mut last = None;
        let mut n = 0;
        for s in &self.steps {
            if let StepKind::Task(t) = s.kind {
                if last.is_some_and(|l| l != t) {
                    n += 1;
                }
                last = Some(t);
            }
        }
        n
    }

    pub fn parse(text: &str) -> Result<Self, ScheduleParseError> {
        let err = |why: String| ScheduleParseError {
            text: if text.len() > 60 {
                format!("{}...", &text[..60])
            } else {
                text.to_string()
            },
            why,
        };
        let text = text.trim();
        let (seed, rest) = text
            .split_once(':')
            .ok_or_else(|| err("expected `<seed>:<steps>`".into()))?;
        let seed = seed
            .parse::<u64>()
            .map_err(|_| err(format!("seed `{seed}` is not a whole number")))?;
        let mut steps = Vec::new();
        if !rest.is_empty() {
            for tok in rest.split('.') {
                let (tok, times) = match tok.split_once('*') {
                    Some((t, n)) => (
                        t,
                        n.parse::<usize>()
                            .ok()
                            .filter(|&n| n > 0)
                            .ok_or_else(|| err(format!("bad repeat count in `{tok}`")))?,
                    ),
                    None => (tok, 1),
                };
                let (tok, dt) = match tok.split_once('+') {
                    Some((t, d)) => (
                        t,
                        d.parse::<u64>()
                            .map_err(|_| err(format!("bad time advance in `{tok}`")))?,
                    ),
                    None => (tok, 0),
                };
                let kind = if tok == "t" {
                    StepKind::Timer
                } else if let Some(k) = tok.strip_prefix('c') {
                    StepKind::Choose(k.parse().map_err(|_| err(format!("bad choice `{tok}`")))?)
                } else {
                    StepKind::Task(tok.parse().map_err(|_| {
                        err(format!(
                            "bad step `{tok}`: expected a task id, `t` or `c<k>`"
                        ))
                    })?)
                };
                steps.extend(std::iter::repeat_n(Step { kind, dt }, times));
            }
        }
        Ok(Schedule { seed, steps })
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.seed)?;
        let mut i = 0;
        let mut first = true;
        while i < self.steps.len() {
            let s = self.steps[i];
            let mut n = 1;
            while i + n < self.steps.len() && self.steps[i + n] == s {
                n += 1;
            }
            if !first {
                f.write_str(".")?;
            }
            first = false;
            match s.kind {
                StepKind::Task(t) => write!(f, "{t}")?,
                StepKind::Timer => f.write_str("t")?,
                StepKind::Choose(k) => write!(f, "c{k}")?,
            }
            if s.dt > 0 {
                write!(f, "+{}", s.dt)?;
            }
            if n > 1 {
                write!(f, "*{n}")?;
            }
            i += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn step() -> impl Strategy<Value = Step> {
        (
            prop_oneof![
                (0u32..40).prop_map(StepKind::Task),
                Just(StepKind::Timer),
                (0u32..5).prop_map(StepKind::Choose),
            ],
            prop_oneof![Just(0u64), 0u64..1_000_000_000],
        )
            .prop_map(|(kind, dt)| Step { kind, dt })
    }

    proptest! {
        #[test]
        fn encoding_round_trips(seed in any::<u64>(), steps in proptest::collection::vec(step(), 0..200)) {
            let s = Schedule { seed, steps };
            let text = s.to_string();
            prop_assert_eq!(Schedule::parse(&text).unwrap(), s);
        }
    }

    #[test]
    fn runs_are_compressed() {
        let s = Schedule {
            seed: 9,
            steps: vec![
                Step {
                    kind: StepKind::Task(0),
                    dt: 0,
                },
                Step {
                    kind: StepKind::Task(0),
                    dt: 0,
                },
                Step {
                    kind: StepKind::Task(0),
                    dt: 0,
                },
                Step {
                    kind: StepKind::Timer,
                    dt: 0,
                },
                Step {
                    kind: StepKind::Choose(1),
                    dt: 5,
                },
            ],
        };
        assert_eq!(s.to_string(), "9:0*3.t.c1+5");
    }

    #[test]
    fn bad_text_is_rejected_with_reason() {
        assert!(Schedule::parse("nope").unwrap_err().why.contains("<seed>"));
        assert!(Schedule::parse("1:x").unwrap_err().why.contains("bad step"));
        assert!(Schedule::parse("1:3*0").is_err());
    }
}
