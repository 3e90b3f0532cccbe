//! The trace of a run: every executed operation with its virtual time, task
//! and object. Off in bulk runs; recording costs one branch per step then.

use std::fmt::Write as _;
use std::rc::Rc;

use super::task::{ObjId, ObjKind, Op, TaskId};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    pub time: u64,
    /// `None` for events outside any task (a timer firing with nothing running).
    pub task: Option<TaskId>,
    pub op: Op,
    /// The object operated on; for `Op::Spawn`, the id of the new task.
    pub obj: ObjId,
    pub note: Option<Rc<str>>,
}

#[derive(Clone, Debug)]
pub struct Trace {
    pub events: Vec<TraceEvent>,
    /// Per task id: name and creator.
    pub tasks: Vec<(Rc<str>, Option<TaskId>)>,
    /// Per object id: kind and name.
    pub objects: Vec<(ObjKind, Rc<str>)>,
    /// Where the run was preempted, in event order.
    pub preemptions: Vec<Preemption>,
}

/// A preemption of a run: the strategy switched away from a task that could
/// go on (or fired a timer while it could, or before its deadline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preemption {
    /// Index of the first event after it.
    pub before: usize,
    pub time: u64,
    /// The task that could have gone on.
    pub from: Option<TaskId>,
    /// The task chosen instead; `None` for a timer fire.
    pub to: Option<TaskId>,
    /// How many preemptions it counts: 2 for a timer fired before its
    /// deadline while a task could go on.
    pub cost: u64,
}

/// `12.345678ms`-style fixed-width rendering of virtual nanoseconds.
pub fn fmt_time(ns: u64) -> String {
    format!("{}.{:06}ms", ns / 1_000_000, ns % 1_000_000)
}

impl Trace {
    pub fn task_name(&self, t: TaskId) -> &str {
        &self.tasks[t.index()].0
    }

    fn object(&self, ev: &TraceEvent) -> String {
        match ev.op {
            Op::Spawn => {
                let child = TaskId(ev.obj.0);
                format!("task#{} \"{}\"", child, self.task_name(child))
            }
            _ => {
                let (kind, name) = &self.objects[ev.obj.0 as usize];
                if *kind == ObjKind::None {
                    String::new()
                } else {
                    format!("{} \"{}\"", kind.as_str(), name)
                }
            }
        }
    }

    /// One line per event: time, task, operation, object, note.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for ev in &self.events {
            let task = match ev.task {
                Some(t) => format!("#{} {}", t, self.task_name(t)),
                None => "-".to_string(),
            };
            let _ = write!(
                out,
                "{:>16}  {:<44} {:<11} {}",
                fmt_time(ev.time),
                task,
                ev.op.as_str(),
                self.object(ev)
            );
            if let Some(n) = &ev.note {
                let _ = write!(out, "  {n}");
            }
            out.push('\n');
        }
        out
    }

    /// [`Trace::render`] with a marked line before the events that follow
    /// each preemption: `>>> preemption k of n: A -> B` (B is a task or a
    /// timer fire).
    pub fn render_marked(&self) -> String {
        let plain = self.render();
        let n: u64 = self.preemptions.iter().map(|p| p.cost).sum();
        let name = |t: Option<TaskId>| match t {
            Some(t) => format!("#{} {}", t, self.task_name(t)),
            None => "-".to_string(),
        };
        let mut done = 0;
        let mut mark = |p: &Preemption| {
            let to = match p.to {
                Some(_) => name(p.to),
                None => "a timer fire".to_string(),
            };
            let k = if p.cost > 1 {
                format!("s {}-{}", done + 1, done + p.cost)
            } else {
                format!(" {}", done + 1)
            };
            done += p.cost;
            format!(
                "{:>16}  >>> preemption{k} of {n}: {} -> {to}\n",
                fmt_time(p.time),
                name(p.from)
            )
        };
        let mut out = String::new();
        let mut marks = self.preemptions.iter().peekable();
        for (i, line) in plain.lines().enumerate() {
            while let Some(p) = marks.next_if(|p| p.before <= i) {
                out.push_str(&mark(p));
            }
            out.push_str(line);
            out.push('\n');
        }
        for p in marks {
            out.push_str(&mark(p));
        }
        out
    }

    /// FNV-1a of the rendered trace: a short fingerprint to compare runs.
    pub fn hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.render().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        h
    }
}
