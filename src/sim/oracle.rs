//! End-of-run oracles: leaked tasks, deadlock, panic, and the run report.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::Once;

use super::executor::State;
use super::schedule::Schedule;
use super::task::{Blocker, ObjId, TaskId, TaskState};
use super::trace::Trace;

#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Every task finished within the grace period after main returned.
    Ok,
    /// Main returned but some task was still alive when the grace period ended.
    Leak,
    /// Nothing could run, no timer was armed, and main had not returned.
    Deadlock,
    /// A task panicked.
    Panic,
    /// The run hit its step or virtual-time limit (a livelock or a runaway model).
    Limit,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Leak => "leak",
            Outcome::Deadlock => "deadlock",
            Outcome::Panic => "panic",
            Outcome::Limit => "limit",
        }
    }

    pub fn is_failure(self) -> bool {
        self != Outcome::Ok
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task that was alive at the end of a run, described like a goleak entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskReport {
    pub id: TaskId,
    pub name: String,
    /// Name of the task that spawned it (`None` for main and timer callbacks
    /// armed outside any task).
    pub creator: Option<String>,
    /// `blocked on lock mutex "priority.mu"`, `runnable`, ...
    pub state: String,
}

impl fmt::Display for TaskReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "goroutine {} [{}]:\n    {}",
            self.id, self.state, self.name
        )?;
        if let Some(c) = &self.creator {
            write!(f, "\n    created by {c}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PanicReport {
    pub task: String,
    pub message: String,
}

/// Everything a run produced.
#[derive(Debug)]
pub struct RunReport {
    pub seed: u64,
    pub outcome: Outcome,
    pub steps: u64,
    /// Switches away from a task that could continue, and timers fired
    /// while a task could continue or before their deadline.
    pub preemptions: u64,
    /// How many of `preemptions` were timer fires.
    pub timer_preemptions: u64,
    pub tasks_spawned: usize,
    pub end_time: u64,
    pub main_done_at: Option<u64>,
    /// Tasks not finished at the end: leaked (if main returned) or blocked
    /// (deadlock), sorted by id.
    pub alive: Vec<TaskReport>,
    /// Timers still armed at the end: (name, deadline).
    pub armed_timers: Vec<(String, u64)>,
    pub panic: Option<PanicReport>,
    /// Hash of every decision taken; equal hashes mean equal schedules.
    pub decision_hash: u64,
    pub schedule: Option<Schedule>,
    pub trace: Option<Trace>,
}

impl RunReport {
    /// A goleak-style description of what is wrong, empty for `Ok`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        match self.outcome {
            Outcome::Ok => {}
            Outcome::Leak => {
                out.push_str(&format!(
                    "found unexpected goroutines ({} still alive after the grace period):\n",
                    self.alive.len()
                ));
            }
            Outcome::Deadlock => {
                out.push_str("all goroutines are asleep - deadlock!\n");
            }
            Outcome::Panic => {
                if let Some(p) = &self.panic {
                    out.push_str(&format!("panic in {}: {}\n", p.task, p.message));
                }
            }
            Outcome::Limit => {
                out.push_str(&format!(
                    "run stopped at its limit after {} steps at t={}ns\n",
                    self.steps, self.end_time
                ));
            }
        }
        if self.outcome != Outcome::Ok {
            for t in &self.alive {
                out.push_str(&format!("{t}\n"));
            }
        }
        out
    }
}

fn describe_state(st: &State, state: &TaskState) -> String {
    let obj = |o: &ObjId| {
        let (kind, name) = &st.objects[o.0 as usize];
        format!("{} \"{}\"", kind.as_str(), name)
    };
    match state {
        TaskState::Runnable => "runnable".into(),
        TaskState::Done => "done".into(),
        TaskState::Blocked(Blocker::On(op, o)) => format!("{} on {}", op.as_str(), obj(o)),
        TaskState::Blocked(Blocker::Select(objs)) => format!(
            "select on {}",
            objs.iter().map(obj).collect::<Vec<_>>().join(", ")
        ),
    }
}

pub(crate) fn alive_tasks(st: &State) -> Vec<TaskReport> {
    st.tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.state != TaskState::Done)
        .map(|(i, t)| TaskReport {
            id: TaskId(i as u32),
            name: t.name.to_string(),
            creator: t.creator.map(|c| st.tasks[c.index()].name.to_string()),
            state: describe_state(st, &t.state),
        })
        .collect()
}

thread_local! {
    static IN_SIM: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Marks this thread as running a simulation: panics in model code are
/// captured into the report instead of being printed.
pub(crate) struct InSim(bool);

impl InSim {
    pub fn enter() -> Self {
        InSim(IN_SIM.with(|f| f.replace(true)))
    }
}

impl Drop for InSim {
    fn drop(&mut self) {
        IN_SIM.with(|f| f.set(self.0));
    }
}

pub(crate) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_SIM.with(|f| f.get()) {
                let loc = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(loc));
            } else {
                default(info);
            }
        }));
    });
}

pub(crate) fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    let msg = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    };
    let loc = LAST_PANIC
        .with(|p| p.borrow_mut().take())
        .unwrap_or_default();
    format!("{msg}{loc}")
}
