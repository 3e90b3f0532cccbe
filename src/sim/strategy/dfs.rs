//! Depth-first enumeration of schedules with a preemption bound (CHESS-style
//! context bounding). Each execution replays the prefix recorded on the stack
//! and extends it with the non-preempting choice; after the run, the deepest
//! frame with an untried alternative within the bound is advanced.
//!
//! A preemption is choosing anything other than the running task while it
//! could continue, including firing a timer early. Switches forced by
//! blocking are free. Model choices (`select`, map order) are enumerated too
//! and never count as preemptions.

use super::{Choice, Decision, Point, Strategy};

#[derive(Clone, Debug)]
struct Frame {
    /// Alternatives at this point, non-preempting one first.
    alternatives: Vec<Alt>,
    chosen: usize,
    /// Preemptions spent before this frame.
    spent_before: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alt {
    Sched { choice: Choice, preempts: bool },
    Pick(usize),
}

pub struct Dfs {
    bound: Option<u32>,
    stack: Vec<Frame>,
    depth: usize,
    spent: u32,
    executions: u64,
    complete: bool,
}

impl Dfs {
    /// `bound`: maximum preemptions per schedule (`None` = unbounded).
    pub fn new(bound: Option<u32>) -> Self {
        Dfs {
            bound,
            stack: Vec::new(),
            depth: 0,
            spent: 0,
            executions: 0,
            complete: false,
        }
    }

    /// Executions started so far.
    pub fn executions(&self) -> u64 {
        self.executions
    }

    fn allowed(&self, spent_before: u32, alt: Alt) -> bool {
        match (alt, self.bound) {
            (Alt::Sched { preempts: true, .. }, Some(b)) => spent_before < b,
            _ => true,
        }
    }

    /// Moves to the next schedule; false if none is left.
    fn backtrack(&mut self) -> bool {
        while let Some(top) = self.stack.last_mut() {
            let spent_before = top.spent_before;
            let mut next = top.chosen + 1;
            let n = top.alternatives.len();
            while next < n {
                let alt = self.stack.last().expect("non-empty").alternatives[next];
                if self.allowed(spent_before, alt) {
                    break;
                }
                next += 1;
            }
            let top = self.stack.last_mut().expect("non-empty");
            if next < n {
                top.chosen = next;
                return true;
            }
            self.stack.pop();
        }
        false
    }

    fn frame(&mut self, alternatives: impl FnOnce() -> Vec<Alt>) -> Alt {
        if self.depth == self.stack.len() {
            let alternatives = alternatives();
            self.stack.push(Frame {
                alternatives,
                chosen: 0,
                spent_before: self.spent,
            });
        }
        let f = &self.stack[self.depth];
        let alt = f.alternatives[f.chosen];
        self.depth += 1;
        if let Alt::Sched { preempts: true, .. } = alt {
            self.spent += 1;
        }
        alt
    }
}

impl Strategy for Dfs {
    fn new_execution(&mut self, _seed: u64) {
        self.executions += 1;
        self.depth = 0;
        self.spent = 0;
    }

    fn end_execution(&mut self) {
        if !self.backtrack() {
            self.complete = true;
        }
    }

    fn is_complete(&self) -> bool {
        self.complete
    }

    fn next_task(&mut self, point: &Point<'_>) -> Decision {
        let alt = self.frame(|| {
            let mut alts = Vec::with_capacity(point.choices());
            if let Some(c) = point.current {
                alts.push(Alt::Sched {
                    choice: Choice::Task(c),
                    preempts: false,
                });
            }
            for i in 0..point.choices() {
                let choice = point.choice(i);
                if Some(choice) == point.current.map(Choice::Task) {
                    continue;
                }
                alts.push(Alt::Sched {
                    choice,
                    preempts: point.current.is_some(),
                });
            }
            alts
        });
        match alt {
            Alt::Sched { choice, .. } if point.index_of(choice).is_some() => {
                Decision::now(point, choice)
            }
            // The model is not deterministic given the prefix; fall back safely.
            _ => Decision::now(point, point.choice(0)),
        }
    }

    fn choose(&mut self, n: usize) -> usize {
        match self.frame(|| (0..n).map(Alt::Pick).collect()) {
            Alt::Pick(k) if k < n => k,
            _ => 0,
        }
    }

    fn name(&self) -> String {
        match self.bound {
            Some(b) => format!("exhaustive:{b}"),
            None => "exhaustive".into(),
        }
    }
}
