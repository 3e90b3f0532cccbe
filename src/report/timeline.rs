//! The timeline picture of a trace: one lane per goroutine, mutex holds as
//! bars, channel, event, timer and `go` operations as marks, trace notes as
//! labels on the lane of the task that wrote them, and the leaking window of
//! the balancergroup's `Close` (from clearing the deleted-child cache to
//! closing the children in the map) shaded across all lanes. Given how the
//! run ended ([`TimelineEnd`]), the title names the outcome and a panic is
//! marked at the panicking task's last event, with its message.
//!
//! Note labels are stacked in rows above their lane so that no two overlap
//! and, wherever the notes allow it, no label's line down to its event
//! crosses another label. Every mutex shown has a colour of its own.
//!
//! The x axis is either virtual time or the step number (the event's index
//! in the trace, which is also its line in the rendered trace text). Under
//! the untimed strategies many steps happen at the same virtual time, so by
//! default the step axis is used when the events share few distinct times;
//! the axis label always says which one is shown.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    ChartError, DrawResult, PALETTE, Paint, ensure_font, font, render, text_width, thousands,
    trim_zeros,
};
use crate::sim::trace::fmt_time;
use crate::sim::{Op, Outcome, RunReport, TaskId, Trace};

/// Which quantity the x axis shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimelineAxis {
    /// Virtual time when most events have distinct times, steps otherwise.
    #[default]
    Auto,
    /// The event's index in the trace.
    Step,
    /// Virtual time, in ns, µs, ms or s as the span suits.
    Time,
}

/// Which part of the trace to draw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimelineWindow {
    /// The last close of the tree (from the last `priority: Close`, or the
    /// group's last `Close`, and a `Remove` racing it, to `Close done`),
    /// with some context; the whole trace (at most its last 600 steps) if
    /// the trace has no close.
    #[default]
    Auto,
    /// Every event.
    All,
    /// Events with virtual time in `start..=end` (nanoseconds).
    Time(u64, u64),
    /// Events with index in `start..end`.
    Steps(usize, usize),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimelineOptions {
    pub window: TimelineWindow,
    pub axis: TimelineAxis,
    /// How the run ended, if known: named in the title; a panic is marked.
    pub end: Option<TimelineEnd>,
}

/// How the run drawn ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineEnd {
    pub outcome: Outcome,
    /// The task that panicked and the panic's message.
    pub panic: Option<(TaskId, String)>,
}

impl TimelineEnd {
    /// The outcome of `report` and, for a panic, the task that panicked.
    /// The report names it only by name: it is the task of that name left
    /// runnable (it was running when it panicked); if there are several, or
    /// none, the one of them (or of all tasks of that name) whose last event
    /// in the trace is the latest.
    pub fn of(report: &RunReport) -> Self {
        let panic = report.panic.as_ref().and_then(|p| {
            let runnable: Vec<TaskId> = report
                .alive
                .iter()
                .filter(|t| t.name == p.task && t.state == "runnable")
                .map(|t| t.id)
                .collect();
            let task = match (&runnable[..], report.trace.as_ref()) {
                ([t], _) => *t,
                (_, Some(trace)) => {
                    let named: Vec<TaskId> = (0..trace.tasks.len() as u32)
                        .map(TaskId)
                        .filter(|&t| trace.task_name(t) == p.task)
                        .collect();
                    let among = if runnable.is_empty() { named } else { runnable };
                    among.into_iter().max_by_key(|&t| last_event_of(trace, t))?
                }
                (_, None) => *runnable.first()?,
            };
            Some((task, p.message.clone()))
        });
        TimelineEnd {
            outcome: report.outcome,
            panic,
        }
    }
}

/// The last event of task `t`: its last operation, or its spawn if it has
/// none.
fn last_event_of(trace: &Trace, t: TaskId) -> Option<usize> {
    (0..trace.events.len()).rev().find(|&i| {
        let e = &trace.events[i];
        e.task == Some(t) || (e.op == Op::Spawn && e.obj.0 == t.0)
    })
}

/// Draws `trace` as a timeline into `path` (PNG or SVG by extension).
/// `window` restricts it to events with virtual time in `start..=end`
/// nanoseconds; `None` shows the last close of the tree
/// ([`TimelineWindow::Auto`]). The axis is chosen as [`TimelineAxis::Auto`].
pub fn timeline(
    trace: &Trace,
    title: &str,
    path: &Path,
    window: Option<(u64, u64)>,
) -> Result<(), ChartError> {
    let window = match window {
        Some((a, b)) => TimelineWindow::Time(a, b),
        None => TimelineWindow::Auto,
    };
    timeline_with(
        trace,
        title,
        path,
        &TimelineOptions {
            window,
            axis: TimelineAxis::Auto,
            end: None,
        },
    )
}

/// [`timeline`] with the window and the axis chosen explicitly.
pub fn timeline_with(
    trace: &Trace,
    title: &str,
    path: &Path,
    opts: &TimelineOptions,
) -> Result<(), ChartError> {
    let empty = |what: String| ChartError::Empty {
        path: path.to_path_buf(),
        what,
    };
    if trace.events.is_empty() {
        return Err(empty("the trace has no events (was tracing on?)".into()));
    }
    let (mut a, mut b) = window_range(trace, opts.window);
    // The automatic window shows a panic too.
    let panicked = opts
        .end
        .as_ref()
        .and_then(|e| e.panic.as_ref())
        .and_then(|(t, _)| last_event_of(trace, *t));
    if let (TimelineWindow::Auto, Some(i)) = (opts.window, panicked) {
        if i < a {
            a = i.saturating_sub(15);
        }
        if i >= b {
            b = (i + 10).min(trace.events.len());
        }
    }
    if a >= b {
        return Err(empty(format!("no event in the window {:?}", opts.window)));
    }
    ensure_font(path)?;
    let layout = Layout::with_end(trace, title, a, b, opts.axis, opts.end.as_ref());
    render(path, (layout.width as u32, layout.height as u32), &layout)
}

const NOTE_PREFIX_CLEARED: &str = "timeoutCache: cleared";
const NOTE_PREFIX_C3: &str = "balancergroup: Close C3";
const OUTGOING_MUTEX: &str = "balancergroup.outgoingMu";

fn note_of(trace: &Trace, i: usize) -> Option<&str> {
    trace.events[i].note.as_deref()
}

fn last_note(trace: &Trace, prefix: &str, before: usize) -> Option<usize> {
    (0..before.min(trace.events.len()))
        .rev()
        .find(|&i| note_of(trace, i).is_some_and(|n| n.starts_with(prefix)))
}

fn first_note(trace: &Trace, prefix: &str, from: usize) -> Option<usize> {
    (from..trace.events.len()).find(|&i| note_of(trace, i).is_some_and(|n| n.starts_with(prefix)))
}

/// The events to draw, as an index range `a..b`.
fn window_range(trace: &Trace, window: TimelineWindow) -> (usize, usize) {
    let n = trace.events.len();
    match window {
        TimelineWindow::All => (0, n),
        TimelineWindow::Steps(a, b) => (a.min(n), b.min(n)),
        TimelineWindow::Time(t0, t1) => {
            let a = trace.events.partition_point(|e| e.time < t0);
            let b = trace.events.partition_point(|e| e.time <= t1);
            (a, b.max(a))
        }
        TimelineWindow::Auto => {
            let close = last_note(trace, "priority: Close", n)
                .or_else(|| last_note(trace, "balancergroup: Close C1", n));
            let Some(close) = close else {
                return (n.saturating_sub(600), n);
            };
            let mut start = close;
            if let Some(r) = last_note(trace, "balancergroup: Remove(", close)
                && r + 400 >= close
            {
                start = r;
            }
            let mut end = first_note(trace, "balancergroup: Close done", close).unwrap_or(close);
            for prefix in [
                "balancergroup: Remove(",
                "balancergroup: cache child",
                "timeoutCache: added",
            ] {
                if let Some(i) = last_note(trace, prefix, n)
                    && i > close
                {
                    end = end.max(i);
                }
            }
            (start.saturating_sub(15), (end + 26).min(n))
        }
    }
}

/// Where Close's C3 section (whose note is event `c3`) acquires the
/// outgoing lock: from then on every child still in the map is closed, so
/// the window in which a `Remove` can cache a child for good ends there.
/// `None` if it never does (the window stays open to the end).
fn c3_acquires(trace: &Trace, holds: &[Hold], c3: usize) -> Option<usize> {
    let task = trace.events[c3].task?;
    let asked = (c3..trace.events.len()).find(|&i| {
        let e = &trace.events[i];
        e.task == Some(task)
            && e.op == Op::Lock
            && trace
                .objects
                .get(e.obj.0 as usize)
                .is_some_and(|(_, name)| &**name == OUTGOING_MUTEX)
    })?;
    holds
        .iter()
        .find(|h| h.task == task && h.asked == asked)
        .and_then(|h| h.from)
}

/// Every mutex hold of the trace. The trace records a `lock` when it is
/// called, not when it succeeds; holds of one mutex follow each other, so a
/// task that called `lock` while another held it acquired the mutex at that
/// holder's `unlock`.
fn mutex_holds(trace: &Trace) -> Vec<Hold> {
    let mut asking: BTreeMap<(u32, TaskId), usize> = BTreeMap::new();
    let mut last_unlock: BTreeMap<u32, usize> = BTreeMap::new();
    let mut holds = Vec::new();
    for (i, e) in trace.events.iter().enumerate() {
        let Some(task) = e.task else { continue };
        let obj = e.obj.0;
        match e.op {
            Op::Lock => {
                asking.insert((obj, task), i);
            }
            Op::Unlock => {
                if let Some(asked) = asking.remove(&(obj, task)) {
                    let from = last_unlock.get(&obj).map_or(asked, |&u| u.max(asked));
                    holds.push(Hold {
                        task,
                        obj,
                        asked,
                        from: Some(from),
                        to: Some(i),
                        depth: 0,
                    });
                    last_unlock.insert(obj, i);
                }
            }
            _ => {}
        }
    }
    // Locks never unlocked. One task left: it holds the mutex. Several: the
    // first to ask after the last unlock got it, if nobody was still
    // waiting from before; otherwise the trace does not say who did.
    let mut left: BTreeMap<u32, Vec<(usize, TaskId)>> = BTreeMap::new();
    for ((obj, task), asked) in asking {
        left.entry(obj).or_default().push((asked, task));
    }
    for (obj, mut tasks) in left {
        tasks.sort();
        let unlocked = last_unlock.get(&obj).copied();
        let holder = match unlocked {
            _ if tasks.len() == 1 => Some(tasks[0].0),
            Some(u) if tasks[0].0 < u => None,
            _ => Some(tasks[0].0),
        };
        for (asked, task) in tasks {
            let from = (holder == Some(asked)).then(|| unlocked.map_or(asked, |u| u.max(asked)));
            holds.push(Hold {
                task,
                obj,
                asked,
                from,
                to: None,
                depth: 0,
            });
        }
    }
    let depths: Vec<usize> = holds
        .iter()
        .map(|h| {
            holds
                .iter()
                .filter(|o| {
                    o.task == h.task && o.asked < h.asked && o.to.is_none_or(|to| to > h.asked)
                })
                .count()
        })
        .collect();
    for (h, d) in holds.iter_mut().zip(depths) {
        h.depth = d;
    }
    holds.sort_by_key(|h| (h.asked, h.task, h.obj));
    holds
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Axis {
    Step,
    /// Nanoseconds per unit, unit name.
    Time(f64, &'static str),
}

/// A mutex hold: `lock` called at `asked`, acquired at `from` (`None`: not
/// known to be, still waiting at the end), `unlock` at `to` (`None`: never).
struct Hold {
    task: TaskId,
    obj: u32,
    asked: usize,
    from: Option<usize>,
    to: Option<usize>,
    /// How many of the task's other holds were already open at `from`.
    depth: usize,
}

struct Lane {
    task: Option<TaskId>,
    name: String,
    never_exits: bool,
    panicked: bool,
    /// Another lane has the same name: show the task id too.
    show_id: bool,
    top: i32,
    height: i32,
    mid: i32,
}

struct NoteLabel {
    lane: usize,
    row: usize,
    /// Pixel x of the event; the text starts there, or ends there if flipped.
    x: i32,
    flipped: bool,
    text: String,
    hot: bool,
}

enum LegendItem<'a> {
    Heading(&'static str),
    Mark(Op),
    Note(&'static str),
    Mutex(u32, &'a str),
    Waiting,
    Band(String),
    Panic,
}

const PANIC_LEGEND: &str = "panic (at the task's last event)";

const WAITING: &str = "outline: waiting for the mutex";

/// How each kind of operation is marked.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mark {
    TriangleUp,
    TriangleDown,
    Cross,
    Diamond,
    HollowDiamond,
    Circle,
    HollowCircle,
    HollowSquare,
    Square,
    Tick,
    End,
}

const BLUE: RGBColor = PALETTE[0];
const VERMILLION: RGBColor = PALETTE[1];
const GREEN: RGBColor = PALETTE[2];
const PURPLE: RGBColor = PALETTE[3];
const ORANGE: RGBColor = PALETTE[4];
const SKY: RGBColor = PALETTE[5];
const GREY: RGBColor = RGBColor(110, 110, 110);
const BAND: RGBColor = RGBColor(220, 40, 40);
const HOT: RGBColor = RGBColor(190, 0, 0);

fn mark_of(op: Op) -> Option<(Mark, RGBColor, &'static str)> {
    Some(match op {
        Op::Put => (Mark::TriangleUp, BLUE, "channel put"),
        Op::Get => (Mark::TriangleDown, BLUE, "channel get"),
        Op::Close => (Mark::Cross, VERMILLION, "channel close"),
        Op::Fire => (Mark::Diamond, ORANGE, "event fire"),
        Op::Wait => (Mark::HollowDiamond, ORANGE, "event wait"),
        Op::Send => (Mark::TriangleUp, SKY, "oneshot send"),
        Op::Recv => (Mark::TriangleDown, SKY, "oneshot recv"),
        Op::Select => (Mark::HollowCircle, SKY, "select"),
        Op::TimerStart => (Mark::HollowCircle, GREEN, "timer start"),
        Op::TimerStop => (Mark::Cross, GREEN, "timer stop"),
        Op::TimerFire => (Mark::Circle, GREEN, "timer fire"),
        Op::Sleep => (Mark::HollowSquare, GREEN, "sleep"),
        Op::Spawn => (Mark::Square, PURPLE, "go (spawn)"),
        Op::Yield => (Mark::Tick, GREY, "yield"),
        Op::Exit => (Mark::End, RGBColor(0, 0, 0), "task exits"),
        Op::Lock | Op::Unlock | Op::Note => return None,
    })
}

const WIDTH: i32 = 1700;
const LEGEND_GAP: i32 = 64;
const LEGEND_ROW: i32 = 22;
const HEADER: i32 = 96;
const ROW_H: i32 = 15;
const NOTE_SIZE: f64 = 12.0;
/// Pixels kept free between two labels in a row.
const NOTE_GAP: i32 = 8;
const BAR_ZONE: i32 = 30;

struct Layout<'a> {
    trace: &'a Trace,
    /// The title, with the outcome when it is known.
    title: String,
    a: usize,
    b: usize,
    axis: Axis,
    width: i32,
    height: i32,
    x0: i32,
    x1: i32,
    vmin: f64,
    vmax: f64,
    lanes: Vec<Lane>,
    lane_of: BTreeMap<Option<TaskId>, usize>,
    holds: Vec<Hold>,
    /// Mutex object ids in order of first hold, for colours and legend.
    mutexes: Vec<u32>,
    /// One colour per name of [`Layout::mutex_names`], in that order.
    mutex_colours: Vec<RGBColor>,
    /// The panicking task's last event and the task.
    panic_at: Option<(usize, TaskId)>,
    notes: Vec<NoteLabel>,
    /// The leaking window as event indices (clear, C3 or trace end).
    band: Option<(usize, Option<usize>)>,
    /// Notes of a child entering the cache inside the band.
    cached_in_band: Vec<usize>,
    plot_bottom: i32,
}

impl<'a> Layout<'a> {
    #[cfg(test)]
    fn new(trace: &'a Trace, title: &str, a: usize, b: usize, axis: TimelineAxis) -> Self {
        Self::with_end(trace, title, a, b, axis, None)
    }

    fn with_end(
        trace: &'a Trace,
        title: &str,
        a: usize,
        b: usize,
        axis: TimelineAxis,
        end: Option<&TimelineEnd>,
    ) -> Self {
        let title = match end {
            Some(e) => format!("{title} — outcome: {}", e.outcome),
            None => title.to_string(),
        };
        let panic_at = end
            .and_then(|e| e.panic.as_ref())
            .and_then(|(t, _)| Some((last_event_of(trace, *t)?, *t)));
        let panic_message = end
            .and_then(|e| e.panic.as_ref())
            .map(|(_, m)| panic_label(m));
        let events = &trace.events[a..b];
        let distinct = {
            let mut times: Vec<u64> = events.iter().map(|e| e.time).collect();
            times.dedup();
            times.len()
        };
        let use_time = match axis {
            TimelineAxis::Step => false,
            TimelineAxis::Time => true,
            TimelineAxis::Auto => distinct > 1 && distinct * 2 >= events.len(),
        };
        let (t_a, t_b) = (events[0].time, events[events.len() - 1].time);
        let axis = if use_time {
            let span = t_b - t_a;
            let (div, unit) = if span >= 10_000_000_000 {
                (1e9, "s")
            } else if span >= 10_000_000 {
                (1e6, "ms")
            } else if span >= 10_000 {
                (1e3, "µs")
            } else {
                (1.0, "ns")
            };
            Axis::Time(div, unit)
        } else {
            Axis::Step
        };
        let (vmin, vmax) = match axis {
            Axis::Step => (a as f64 - 0.5, (b - 1) as f64 + 0.5),
            Axis::Time(div, _) => {
                let (lo, hi) = (t_a as f64 / div, t_b as f64 / div);
                let pad = ((hi - lo) * 0.02).max(if hi > lo { 0.0 } else { 1.0 });
                (lo - pad, hi + pad)
            }
        };

        // Mutex holds over the whole trace, kept if they overlap the window.
        let mut holds = mutex_holds(trace);
        // The leaking window.
        let cleared = last_note(trace, NOTE_PREFIX_CLEARED, trace.events.len());
        let band = cleared.map(|c| {
            (
                c,
                first_note(trace, NOTE_PREFIX_C3, c).and_then(|d| c3_acquires(trace, &holds, d)),
            )
        });
        holds.retain(|h| h.asked < b && h.to.is_none_or(|to| to >= a));
        let mut mutexes: Vec<u32> = Vec::new();
        for h in &holds {
            if !mutexes.contains(&h.obj) {
                mutexes.push(h.obj);
            }
        }

        // Lanes: every task with an event in the window or a hold across it.
        // (The main task's spawn is the only event without a task that is
        // not a timer; it gets no lane of its own.)
        let mut lane_tasks: Vec<Option<TaskId>> = events
            .iter()
            .filter(|e| e.task.is_some() || e.op != Op::Spawn)
            .map(|e| e.task)
            .collect();
        lane_tasks.extend(holds.iter().map(|h| Some(h.task)));
        lane_tasks.extend(
            events
                .iter()
                .filter(|e| e.op == Op::Spawn)
                .map(|e| Some(TaskId(e.obj.0))),
        );
        let exits: Vec<TaskId> = trace
            .events
            .iter()
            .filter(|e| e.op == Op::Exit)
            .filter_map(|e| e.task)
            .collect();
        // A task that never exits (a leaked goroutine) gets a lane even
        // without an event in the window, if it existed by the window's end.
        let spawned_by_end = |t: u32| {
            t == 0
                || trace.events[..b]
                    .iter()
                    .any(|e| e.op == Op::Spawn && e.obj.0 == t)
                || trace.events[..b].iter().any(|e| e.task == Some(TaskId(t)))
        };
        lane_tasks.extend(
            (0..trace.tasks.len() as u32)
                .filter(|&t| !exits.contains(&TaskId(t)) && spawned_by_end(t))
                .map(|t| Some(TaskId(t))),
        );
        lane_tasks.sort_by_key(|t| t.map_or(u64::MAX, |t| u64::from(t.0)));
        lane_tasks.dedup();
        let mut lanes: Vec<Lane> = lane_tasks
            .iter()
            .map(|&task| {
                let (name, never_exits) = match task {
                    Some(t) if t.index() < trace.tasks.len() => {
                        (trace.task_name(t).to_string(), !exits.contains(&t))
                    }
                    Some(t) => (format!("task#{t}"), false),
                    None => ("(timers, no task)".to_string(), false),
                };
                Lane {
                    task,
                    name,
                    never_exits,
                    panicked: task.is_some() && panic_at.is_some_and(|(_, t)| task == Some(t)),
                    show_id: false,
                    top: 0,
                    height: 0,
                    mid: 0,
                }
            })
            .collect();
        for i in 0..lanes.len() {
            let dup = lanes
                .iter()
                .enumerate()
                .any(|(j, l)| j != i && l.name == lanes[i].name);
            lanes[i].show_id = dup;
        }
        let lane_of: BTreeMap<Option<TaskId>, usize> =
            lanes.iter().enumerate().map(|(i, l)| (l.task, i)).collect();

        let label_w = lanes
            .iter()
            .map(|l| text_width(&lane_label(l), 14.0))
            .max()
            .unwrap_or(100)
            .clamp(120, 360)
            + 24;
        let (x0, x1) = (label_w, WIDTH - 30);
        let to_px = |v: f64| x0 + ((v - vmin) / (vmax - vmin) * f64::from(x1 - x0)).round() as i32;
        let value = |i: usize| match axis {
            Axis::Step => i as f64,
            Axis::Time(div, _) => trace.events[i].time as f64 / div,
        };

        let in_band = |i: usize| band.is_some_and(|(c, d)| i > c && d.is_none_or(|d| i < d));
        let cached_in_band: Vec<usize> = (0..trace.events.len())
            .filter(|&i| {
                in_band(i)
                    && note_of(trace, i).is_some_and(|n| {
                        n.starts_with("timeoutCache: added")
                            || n.starts_with("balancergroup: cache child")
                    })
            })
            .collect();

        // Notes stacked in rows above each lane's bar zone; a panic's
        // message is one more, in red.
        let mut notes = Vec::new();
        let mut extents: Vec<Vec<(i32, i32, i32)>> = vec![Vec::new(); lanes.len()];
        let panic_note = panic_at
            .filter(|(i, _)| (a..b).contains(i))
            .zip(panic_message);
        let texts = events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((a + i, e.task, e.note.as_deref()?.to_string(), false)))
            .chain(panic_note.map(|((i, t), m)| (i, Some(t), m, true)));
        for (idx, task, text, is_panic) in texts {
            let Some(&lane) = lane_of.get(&task) else {
                continue;
            };
            let x = to_px(value(idx));
            let w = text_width(&text, NOTE_SIZE) + 8;
            let flipped = x + w > x1 + 20;
            let (l, r) = if flipped { (x - w, x) } else { (x, x + w) };
            extents[lane].push((l, r, x));
            notes.push(NoteLabel {
                lane,
                row: 0,
                x,
                flipped,
                hot: is_panic || cached_in_band.contains(&idx),
                text,
            });
        }
        let mut rows = vec![0; lanes.len()];
        for (lane, ext) in extents.iter().enumerate() {
            let (placed, n) = stack_labels(ext);
            rows[lane] = n;
            for (note, &row) in notes.iter_mut().filter(|n| n.lane == lane).zip(&placed) {
                note.row = row;
            }
        }
        let mut y = HEADER;
        for (lane, &r) in lanes.iter_mut().zip(&rows) {
            lane.top = y;
            lane.height = r as i32 * ROW_H + BAR_ZONE + if r == 0 { 0 } else { 4 };
            lane.mid = y + lane.height - BAR_ZONE / 2;
            y += lane.height;
        }
        let plot_bottom = y;
        let mutex_colours = {
            let mut names: Vec<&str> = Vec::new();
            for &m in &mutexes {
                let n = trace.objects.get(m as usize).map_or("?", |(_, n)| &**n);
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            mutex_palette(names.len())
        };
        let mut layout = Layout {
            trace,
            title,
            a,
            b,
            axis,
            width: WIDTH,
            height: 0,
            x0,
            x1,
            vmin,
            vmax,
            lanes,
            lane_of,
            holds,
            mutexes,
            mutex_colours,
            panic_at,
            notes,
            band,
            cached_in_band,
            plot_bottom,
        };
        let rows = layout.legend().last().map_or(0, |(_, _, row)| *row) + 1;
        layout.height = plot_bottom + LEGEND_GAP + (rows - 1) * LEGEND_ROW + 24;
        layout
    }

    /// Whether the panicking task's last event is among the events drawn.
    fn panic_visible(&self) -> bool {
        self.panic_at
            .is_some_and(|(i, _)| (self.a..self.b).contains(&i))
    }

    /// Whether the leaking window overlaps the events drawn.
    fn band_visible(&self) -> bool {
        self.band
            .is_some_and(|(c, d)| c < self.b && d.is_none_or(|d| d >= self.a))
    }

    /// The legend's items with their x and row: the marks seen in the
    /// window, notes, the mutexes held and the leaking window.
    fn legend(&self) -> Vec<(LegendItem<'_>, i32, i32)> {
        let mut items = Vec::new();
        let (left, right) = (20, self.width - 20);
        let (mut x, mut row) = (left, 0);
        let place = |items: &mut Vec<_>, item, w: i32, x: &mut i32, row: &mut i32| {
            if *x + w > right && *x > left + 120 {
                *x = left + 120;
                *row += 1;
            }
            items.push((item, *x, *row));
            *x += w;
        };
        let mut kinds: Vec<Op> = Vec::new();
        for e in &self.trace.events[self.a..self.b] {
            if mark_of(e.op).is_some() && !kinds.contains(&e.op) {
                kinds.push(e.op);
            }
        }
        kinds.sort_by_key(|op| mark_of(*op).map(|m| m.2));
        items.push((LegendItem::Heading("marks:"), x, row));
        x += 120;
        for op in kinds {
            let w = text_width(mark_of(op).expect("filtered").2, 13.0) + 40;
            place(&mut items, LegendItem::Mark(op), w, &mut x, &mut row);
        }
        let note = "note (text written by the task)";
        place(
            &mut items,
            LegendItem::Note(note),
            text_width(note, 13.0) + 40,
            &mut x,
            &mut row,
        );
        if self.panic_visible() {
            place(
                &mut items,
                LegendItem::Panic,
                text_width(PANIC_LEGEND, 13.0) + 48,
                &mut x,
                &mut row,
            );
        }
        let names = self.mutex_names();
        if !names.is_empty() {
            row += 1;
            x = left;
            items.push((LegendItem::Heading("mutex held:"), x, row));
            x += 120;
            for name in names {
                let obj = self
                    .mutexes
                    .iter()
                    .copied()
                    .find(|&o| self.object_name(o) == name)
                    .unwrap_or(0);
                let w = text_width(name, 13.0) + 48;
                place(
                    &mut items,
                    LegendItem::Mutex(obj, name),
                    w,
                    &mut x,
                    &mut row,
                );
            }
            if self.holds.iter().any(|h| h.from != Some(h.asked)) {
                let w = text_width(WAITING, 13.0) + 48;
                place(&mut items, LegendItem::Waiting, w, &mut x, &mut row);
            }
        }
        if self.band_visible() {
            row += 1;
            let mut label = format!(
                "leaking window: from the cache's Clear (\"{NOTE_PREFIX_CLEARED}\") until Close C3 acquires {OUTGOING_MUTEX}; a child cached in between is never closed"
            );
            if let Some(&i) = self.cached_in_band.first() {
                label += &format!(" (here: step {}, in red)", thousands(i as u64));
            }
            items.push((LegendItem::Band(label), left, row));
        }
        items
    }

    fn value(&self, i: usize) -> f64 {
        match self.axis {
            Axis::Step => i as f64,
            Axis::Time(div, _) => self.trace.events[i].time as f64 / div,
        }
    }

    fn px(&self, v: f64) -> i32 {
        let v = v.clamp(self.vmin, self.vmax);
        self.x0
            + ((v - self.vmin) / (self.vmax - self.vmin) * f64::from(self.x1 - self.x0)).round()
                as i32
    }

    /// Pixel x of event `i`, clamped to the plot.
    fn ex(&self, i: usize) -> i32 {
        self.px(self.value(i))
    }

    /// Each name of a mutex shown has a colour of its own; mutexes of the
    /// same name (one per child, say) share it.
    fn mutex_colour(&self, obj: u32) -> RGBColor {
        let name = self.object_name(obj);
        let i = self
            .mutex_names()
            .iter()
            .position(|m| *m == name)
            .unwrap_or(0);
        self.mutex_colours
            .get(i)
            .copied()
            .unwrap_or(RGBColor(120, 120, 120))
    }

    /// Distinct names of the mutexes held, in order of first hold.
    fn mutex_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for &m in &self.mutexes {
            let n = self.object_name(m);
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names
    }

    fn object_name(&self, obj: u32) -> &str {
        self.trace
            .objects
            .get(obj as usize)
            .map_or("?", |(_, name)| name)
    }

    fn axis_label(&self) -> String {
        match self.axis {
            Axis::Step => "step (index of the event in the trace; one step per operation)".into(),
            Axis::Time(_, unit) => format!("virtual time ({unit})"),
        }
    }

    fn subtitle(&self) -> String {
        let n = self.trace.events.len();
        let (ta, tb) = (
            self.trace.events[self.a].time,
            self.trace.events[self.b - 1].time,
        );
        let times = if ta == tb {
            format!("all at virtual time {}", fmt_time(ta))
        } else {
            format!("virtual time {} – {}", fmt_time(ta), fmt_time(tb))
        };
        let mut s = format!(
            "steps {}–{} of {} · {times}",
            thousands(self.a as u64),
            thousands((self.b - 1) as u64),
            thousands(n as u64),
        );
        if self.axis == Axis::Step {
            s += " · x axis by step: many steps share one virtual time";
        }
        s
    }

    fn ticks(&self) -> Vec<f64> {
        let span = self.vmax - self.vmin;
        let target = f64::from(self.x1 - self.x0) / 110.0;
        let raw = span / target.max(1.0);
        let mag = 10f64.powf(raw.log10().floor());
        let mut step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag);
        if self.axis == Axis::Step {
            step = step.max(1.0).round();
        }
        let mut v = (self.vmin / step).ceil() * step;
        let mut out = Vec::new();
        while v <= self.vmax + 1e-9 {
            out.push(v);
            v += step;
        }
        out
    }

    fn tick_label(&self, v: f64, step: f64) -> String {
        match self.axis {
            Axis::Step => thousands(v.round() as u64),
            Axis::Time(..) => {
                let decimals = (-(step.log10().floor()) as i32).clamp(0, 6) as usize;
                trim_zeros(&format!("{v:.decimals$}"))
            }
        }
    }
}

/// `n` colours for as many mutexes, each far from every other: ten chosen
/// ones while they suffice; beyond, as many hues evenly spaced around the
/// perceptual (OKLCH) colour circle, at three lightnesses in turn (so that
/// hues of the same lightness are three steps apart), handed out in an
/// order that gives mutexes next to each other in the legend hues far
/// apart.
fn mutex_palette(n: usize) -> Vec<RGBColor> {
    const CHOSEN: [RGBColor; 10] = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(230, 159, 0),
        RGBColor(86, 180, 233),
        RGBColor(140, 86, 75),
        RGBColor(120, 120, 120),
        RGBColor(188, 189, 34),
        RGBColor(40, 40, 140),
    ];
    if n <= CHOSEN.len() {
        return CHOSEN[..n].to_vec();
    }
    // A multiple of three, so that the last hue and the first, neighbours
    // on the circle, differ in lightness too.
    let hues = n.div_ceil(3) * 3;
    let ring: Vec<RGBColor> = (0..hues)
        .map(|i| {
            let light = [0.42, 0.6, 0.78][i % 3];
            oklch(light, 0.17, i as f64 / hues as f64 * std::f64::consts::TAU)
        })
        .collect();
    // Walk the circle in steps of about 3/8 of a turn, a step coprime with
    // its length so that every hue is visited once.
    let step = (3 * hues / 8..hues)
        .find(|&k| gcd(k, hues) == 1)
        .unwrap_or(1);
    (0..n).map(|i| ring[i * step % hues]).collect()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// An sRGB colour from OKLCH lightness, chroma and hue (radians), clipped
/// to the gamut.
fn oklch(l: f64, c: f64, h: f64) -> RGBColor {
    let (a, b) = (c * h.cos(), c * h.sin());
    let l_ = (l + 0.396_337_777_4 * a + 0.215_803_757_3 * b).powi(3);
    let m_ = (l - 0.105_561_345_8 * a - 0.063_854_172_8 * b).powi(3);
    let s_ = (l - 0.089_484_177_5 * a - 1.291_485_548_0 * b).powi(3);
    let lin = [
        4.076_741_662_1 * l_ - 3.307_711_591_3 * m_ + 0.230_969_929_2 * s_,
        -1.268_438_004_6 * l_ + 2.609_757_401_1 * m_ - 0.341_319_396_5 * s_,
        -0.004_196_086_3 * l_ - 0.703_418_614_7 * m_ + 1.707_614_701_0 * s_,
    ];
    let [r, g, b] = lin.map(|v| {
        let v = v.clamp(0.0, 1.0);
        let e = if v <= 0.003_130_8 {
            12.92 * v
        } else {
            1.055 * v.powf(1.0 / 2.4) - 0.055
        };
        (e * 255.0).round() as u8
    });
    RGBColor(r, g, b)
}

/// Rows for the note labels of one lane, row 0 on top. `labels[i]` is the
/// pixel extent of label i's text and the x of its line down to its event
/// (through every row below its own); labels are placed in order. A label
/// goes in the first row where its text keeps clear of the texts there and
/// of the lines passing through, and where its own line crosses no text
/// below; failing that, in a new row inserted where the same holds, tried
/// from the bottom up; failing even that (two labels each covering the
/// other's line), in a new bottom row, where no text is in its way. Returns
/// each label's row and the number of rows.
fn stack_labels(labels: &[(i32, i32, i32)]) -> (Vec<usize>, usize) {
    const LINE: i32 = 3;
    let mut row: Vec<usize> = Vec::with_capacity(labels.len());
    let mut n = 0;
    for (j, &(l, r, x)) in labels.iter().enumerate() {
        let placed = &labels[..j];
        // Whether the label fits at row `p`: an existing one, or a new one
        // inserted there (pushing rows `p..` down).
        let fits = |p: usize, new: bool| {
            placed.iter().zip(&row).all(|(&(pl, pr, px), &pr_row)| {
                let above = pr_row < p;
                let same = !new && pr_row == p;
                if above {
                    // Its line passes through row p.
                    !(l - LINE < px && px < r + LINE)
                } else if same {
                    r + NOTE_GAP <= pl || pr + NOTE_GAP <= l
                } else {
                    // Below: our line passes by its text.
                    !(pl - LINE < x && x < pr + LINE)
                }
            })
        };
        let p = match (0..n).find(|&p| fits(p, false)) {
            Some(p) => p,
            None => {
                let p = (0..=n).rev().find(|&p| fits(p, true)).unwrap_or(n);
                for q in &mut row {
                    if *q >= p {
                        *q += 1;
                    }
                }
                n += 1;
                p
            }
        };
        row.push(p);
    }
    (row, n)
}

/// The label of a panic: its message's first line, shortened.
fn panic_label(message: &str) -> String {
    let line = message.lines().next().unwrap_or("");
    if line.chars().count() > 100 {
        let s: String = line.chars().take(99).collect();
        format!("panic: {s}…")
    } else {
        format!("panic: {line}")
    }
}

fn lane_label(l: &Lane) -> String {
    let name = if l.name.chars().count() > 44 {
        let s: String = l.name.chars().take(43).collect();
        format!("{s}…")
    } else {
        l.name.clone()
    };
    let name = match l.task {
        Some(t) if l.show_id => format!("{name} (task {t})"),
        _ => name,
    };
    if l.panicked {
        format!("{name} — panicked")
    } else if l.never_exits {
        format!("{name} — never exits")
    } else {
        name
    }
}

fn draw_mark<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    mark: Mark,
    c: RGBColor,
    (x, y): (i32, i32),
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let r = 5;
    let thick = c.stroke_width(2);
    match mark {
        Mark::TriangleUp => {
            root.draw(&Polygon::new(
                vec![(x - r, y + r - 1), (x + r, y + r - 1), (x, y - r)],
                c.filled(),
            ))?;
        }
        Mark::TriangleDown => {
            root.draw(&Polygon::new(
                vec![(x - r, y - r + 1), (x + r, y - r + 1), (x, y + r)],
                c.filled(),
            ))?;
        }
        Mark::Cross => {
            root.draw(&PathElement::new(
                vec![(x - r, y - r), (x + r, y + r)],
                thick,
            ))?;
            root.draw(&PathElement::new(
                vec![(x - r, y + r), (x + r, y - r)],
                thick,
            ))?;
        }
        Mark::Diamond | Mark::HollowDiamond => {
            let pts = vec![
                (x, y - r - 1),
                (x + r + 1, y),
                (x, y + r + 1),
                (x - r - 1, y),
            ];
            if mark == Mark::Diamond {
                root.draw(&Polygon::new(pts, c.filled()))?;
            } else {
                root.draw(&Polygon::new(pts.clone(), WHITE.filled()))?;
                let mut closed = pts;
                closed.push(closed[0]);
                root.draw(&PathElement::new(closed, thick))?;
            }
        }
        Mark::Circle => {
            root.draw(&Circle::new((x, y), r, c.filled()))?;
        }
        Mark::HollowCircle => {
            root.draw(&Circle::new((x, y), r, WHITE.filled()))?;
            root.draw(&Circle::new((x, y), r, thick))?;
        }
        Mark::Square | Mark::HollowSquare => {
            let rect = [(x - r + 1, y - r + 1), (x + r - 1, y + r - 1)];
            if mark == Mark::Square {
                root.draw(&Rectangle::new(rect, c.filled()))?;
            } else {
                root.draw(&Rectangle::new(rect, WHITE.filled()))?;
                root.draw(&Rectangle::new(rect, thick))?;
            }
        }
        Mark::Tick => {
            root.draw(&PathElement::new(
                vec![(x, y - 4), (x, y + 4)],
                c.stroke_width(1),
            ))?;
        }
        Mark::End => {
            root.draw(&Rectangle::new(
                [(x - 1, y - 9), (x + 1, y + 9)],
                c.filled(),
            ))?;
        }
    }
    Ok(())
}

/// The mark of a panic: a red eight-pointed burst centred on `(x, y)`.
fn draw_burst<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, (x, y): (i32, i32)) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let pts: Vec<(i32, i32)> = (0..16)
        .map(|k| {
            let r = if k % 2 == 0 { 11.0 } else { 5.0 };
            let a = f64::from(k) * std::f64::consts::PI / 8.0;
            (
                x + (r * a.cos()).round() as i32,
                y + (r * a.sin()).round() as i32,
            )
        })
        .collect();
    root.draw(&Polygon::new(pts.clone(), HOT.filled()))?;
    let mut closed = pts;
    closed.push(closed[0]);
    root.draw(&PathElement::new(closed, BLACK.stroke_width(1)))?;
    Ok(())
}

fn text<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    s: &str,
    at: (i32, i32),
    style: &TextStyle<'_>,
    h: HPos,
    v: VPos,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.draw(&Text::new(s.to_string(), at, style.pos(Pos::new(h, v))))?;
    Ok(())
}

impl Paint for Layout<'_> {
    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let trace = self.trace;
        let (x0, x1) = (self.x0, self.x1);
        let top = HEADER;
        let bottom = self.plot_bottom;

        // Header.
        let mut size = 22.0;
        while size > 12.0 && text_width(&self.title, size) > self.width - 40 {
            size -= 1.0;
        }
        text(
            root,
            &self.title,
            (self.width / 2, 10),
            &font(size),
            HPos::Center,
            VPos::Top,
        )?;
        text(
            root,
            &self.subtitle(),
            (self.width / 2, 40),
            &font(14.0).color(&GREY),
            HPos::Center,
            VPos::Top,
        )?;

        // Lane backgrounds and names.
        for (i, lane) in self.lanes.iter().enumerate() {
            if i % 2 == 1 {
                root.draw(&Rectangle::new(
                    [(0, lane.top), (self.width, lane.top + lane.height)],
                    RGBColor(246, 246, 246).filled(),
                ))?;
            }
            let colour = if lane.never_exits || lane.panicked {
                HOT
            } else {
                BLACK
            };
            text(
                root,
                &lane_label(lane),
                (x0 - 12, lane.mid),
                &font(14.0).color(&colour),
                HPos::Right,
                VPos::Center,
            )?;
        }

        // Grid.
        let ticks = self.ticks();
        let tick_step = if ticks.len() >= 2 {
            ticks[1] - ticks[0]
        } else {
            1.0
        };
        for &t in &ticks {
            let x = self.px(t);
            root.draw(&PathElement::new(
                vec![(x, top), (x, bottom)],
                RGBColor(225, 225, 225).stroke_width(1),
            ))?;
        }

        // The leaking window, across every lane.
        let mut band_px = None;
        if let Some((c, d)) = self.band {
            let left = self.ex(c);
            let right = d.map_or(x1, |d| self.ex(d));
            let visible = c < self.b && d.is_none_or(|d| d >= self.a);
            if visible && right >= left {
                let right = right.max(left + 3);
                root.draw(&Rectangle::new(
                    [(left, top - 24), (right, bottom)],
                    BAND.mix(0.13).filled(),
                ))?;
                for x in [left, right] {
                    root.draw(&PathElement::new(
                        vec![(x, top - 24), (x, bottom)],
                        BAND.mix(0.6).stroke_width(1),
                    ))?;
                }
                band_px = Some((left, right));
            }
        }
        if let Some((left, right)) = band_px {
            let label = if self.cached_in_band.is_empty() {
                "leaking window: cache cleared → children closed (nothing was cached inside it)"
                    .to_string()
            } else {
                "leaking window: a child cached here is never closed".to_string()
            };
            let w = text_width(&label, 14.0);
            let centre = (left + right) / 2;
            let x = (centre - w / 2).clamp(4, self.width - w - 4);
            text(
                root,
                &label,
                (x, top - 20),
                &font(14.0).color(&HOT),
                HPos::Left,
                VPos::Top,
            )?;
        }

        // Lifelines: from the first event in the window (or the spawn) to
        // the exit or the right edge.
        for lane in &self.lanes {
            let Some(t) = lane.task else { continue };
            let first = (self.a..self.b).find(|&i| {
                let e = &trace.events[i];
                e.task == Some(t) || (e.op == Op::Spawn && e.obj.0 == t.0)
            });
            let start = match first {
                Some(i) => {
                    let spawned_here =
                        trace.events[i].op == Op::Spawn && trace.events[i].obj.0 == t.0;
                    if spawned_here { self.ex(i) } else { x0 }
                }
                None => x0,
            };
            let end = (self.a..self.b)
                .find(|&i| trace.events[i].task == Some(t) && trace.events[i].op == Op::Exit)
                .map_or(x1, |i| self.ex(i));
            let exited_before = (0..self.a)
                .any(|i| trace.events[i].task == Some(t) && trace.events[i].op == Op::Exit);
            if exited_before {
                continue;
            }
            let colour = if lane.never_exits {
                HOT
            } else {
                RGBColor(150, 150, 150)
            };
            root.draw(&PathElement::new(
                vec![(start, lane.mid), (end, lane.mid)],
                colour.stroke_width(1),
            ))?;
        }

        // Mutex holds; a lock taken while holding another is drawn thinner,
        // inside the outer bar. Waiting for a mutex is an outline.
        for h in &self.holds {
            let Some(&lane) = self.lane_of.get(&Some(h.task)) else {
                continue;
            };
            let mid = self.lanes[lane].mid;
            let pos = |i: usize| if i < self.a { x0 } else { self.ex(i) };
            let end = match h.to {
                Some(to) if to < self.b => self.ex(to),
                _ => x1,
            };
            let half = [8, 5, 3][h.depth.min(2)];
            let c = self.mutex_colour(h.obj);
            let asked = pos(h.asked);
            let got = h.from.map_or(end, pos);
            if got > asked + 1 {
                let rect = [(asked, mid - half + 2), (got, mid + half - 2)];
                root.draw(&Rectangle::new(rect, WHITE.filled()))?;
                root.draw(&Rectangle::new(rect, c.stroke_width(1)))?;
            }
            if h.from.is_none() {
                continue;
            }
            let (left, right) = (got, end.max(got + 3));
            let alpha = if h.depth == 0 { 0.45 } else { 0.9 };
            let rect = [(left, mid - half), (right, mid + half)];
            root.draw(&Rectangle::new(rect, c.mix(alpha).filled()))?;
            root.draw(&Rectangle::new(rect, c.stroke_width(1)))?;
            if h.depth > 0 {
                continue;
            }
            // The mutex's name, if it fits before a nested hold or a mark.
            let from = h.from.unwrap_or(h.asked);
            let stop = h.to.unwrap_or(self.b).min(self.b);
            let inner = self
                .holds
                .iter()
                .filter(|o| o.task == h.task && o.depth > 0 && o.asked > from && o.asked < stop)
                .map(|o| self.ex(o.asked))
                .min()
                .unwrap_or(right);
            let first_mark = (from + 1..stop)
                .filter(|&i| self.trace.events[i].task == Some(h.task))
                .filter(|&i| !matches!(self.trace.events[i].op, Op::Lock | Op::Unlock))
                .map(|i| self.ex(i))
                .next()
                .unwrap_or(right);
            let free = inner.min(first_mark).min(right) - left - 10;
            let name = self.object_name(h.obj);
            if free > text_width(name, 11.0) {
                text(
                    root,
                    name,
                    (left + 4, mid),
                    &font(11.0),
                    HPos::Left,
                    VPos::Center,
                )?;
            }
        }

        // Spawn connectors, then marks.
        for i in self.a..self.b {
            let e = &trace.events[i];
            if e.op != Op::Spawn {
                continue;
            }
            let (Some(&from), Some(&to)) = (
                self.lane_of.get(&e.task),
                self.lane_of.get(&Some(TaskId(e.obj.0))),
            ) else {
                continue;
            };
            let x = self.ex(i);
            root.draw(&PathElement::new(
                vec![(x, self.lanes[from].mid), (x, self.lanes[to].mid)],
                PURPLE.mix(0.7).stroke_width(1),
            ))?;
        }
        for i in self.a..self.b {
            let e = &trace.events[i];
            let Some((mark, colour, _)) = mark_of(e.op) else {
                continue;
            };
            let Some(&lane) = self.lane_of.get(&e.task) else {
                continue;
            };
            draw_mark(root, mark, colour, (self.ex(i), self.lanes[lane].mid))?;
        }

        // Notes: the lines down to the events first, then the labels. A
        // label that a line must cross (see `stack_labels`) gets a backing
        // in its lane's colour, so that the line stops at it.
        let colour = |n: &NoteLabel| if n.hot { HOT } else { RGBColor(30, 30, 30) };
        let row_y = |n: &NoteLabel| self.lanes[n.lane].top + 3 + n.row as i32 * ROW_H;
        for n in &self.notes {
            let mid = self.lanes[n.lane].mid;
            root.draw(&PathElement::new(
                vec![(n.x, row_y(n) + 2), (n.x, mid)],
                colour(n).mix(0.5).stroke_width(1),
            ))?;
            root.draw(&Circle::new((n.x, mid), 3, colour(n).filled()))?;
        }
        for n in &self.notes {
            let y = row_y(n);
            let w = text_width(&n.text, NOTE_SIZE);
            let (l, r) = if n.flipped {
                (n.x - 3 - w, n.x - 3)
            } else {
                (n.x + 3, n.x + 3 + w)
            };
            let crossed = self
                .notes
                .iter()
                .any(|m| m.lane == n.lane && m.row < n.row && l - 2 <= m.x && m.x <= r + 2);
            if crossed {
                let back = if n.lane % 2 == 1 {
                    RGBColor(246, 246, 246)
                } else {
                    WHITE
                };
                root.draw(&Rectangle::new(
                    [(l - 2, y), (r + 2, y + ROW_H - 2)],
                    back.mix(0.9).filled(),
                ))?;
            }
            let (x, h) = if n.flipped {
                (n.x - 3, HPos::Right)
            } else {
                (n.x + 3, HPos::Left)
            };
            text(
                root,
                &n.text,
                (x, y),
                &font(NOTE_SIZE).color(&colour(n)),
                h,
                VPos::Top,
            )?;
        }

        // The panic, at the task's last event.
        if let Some((i, t)) = self.panic_at
            && self.panic_visible()
            && let Some(&lane) = self.lane_of.get(&Some(t))
        {
            draw_burst(root, (self.ex(i), self.lanes[lane].mid))?;
        }

        // Axis.
        root.draw(&PathElement::new(
            vec![(x0, bottom), (x1, bottom)],
            BLACK.stroke_width(1),
        ))?;
        for &t in &ticks {
            let x = self.px(t);
            root.draw(&PathElement::new(
                vec![(x, bottom), (x, bottom + 5)],
                BLACK.stroke_width(1),
            ))?;
            text(
                root,
                &self.tick_label(t, tick_step),
                (x, bottom + 8),
                &font(13.0),
                HPos::Center,
                VPos::Top,
            )?;
        }
        text(
            root,
            &self.axis_label(),
            ((x0 + x1) / 2, bottom + 30),
            &font(15.0),
            HPos::Center,
            VPos::Top,
        )?;

        // Legend.
        let legend_font = font(13.0);
        let base = bottom + LEGEND_GAP;
        for (item, x, row) in self.legend() {
            let y = base + row * LEGEND_ROW;
            match item {
                LegendItem::Heading(label) => {
                    text(root, label, (x, y), &legend_font, HPos::Left, VPos::Center)?;
                }
                LegendItem::Mark(op) => {
                    let (mark, colour, label) = mark_of(op).expect("only marked ops");
                    draw_mark(root, mark, colour, (x + 8, y))?;
                    text(
                        root,
                        label,
                        (x + 20, y),
                        &legend_font,
                        HPos::Left,
                        VPos::Center,
                    )?;
                }
                LegendItem::Note(label) => {
                    root.draw(&Circle::new((x + 8, y), 3, BLACK.filled()))?;
                    text(
                        root,
                        label,
                        (x + 20, y),
                        &legend_font,
                        HPos::Left,
                        VPos::Center,
                    )?;
                }
                LegendItem::Mutex(obj, name) => {
                    let c = self.mutex_colour(obj);
                    let rect = [(x, y - 6), (x + 24, y + 6)];
                    root.draw(&Rectangle::new(rect, c.mix(0.45).filled()))?;
                    root.draw(&Rectangle::new(rect, c.stroke_width(1)))?;
                    text(
                        root,
                        name,
                        (x + 30, y),
                        &legend_font,
                        HPos::Left,
                        VPos::Center,
                    )?;
                }
                LegendItem::Panic => {
                    draw_burst(root, (x + 11, y))?;
                    text(
                        root,
                        PANIC_LEGEND,
                        (x + 28, y),
                        &legend_font,
                        HPos::Left,
                        VPos::Center,
                    )?;
                }
                LegendItem::Waiting => {
                    let rect = [(x, y - 4), (x + 24, y + 4)];
                    root.draw(&Rectangle::new(rect, GREY.stroke_width(1)))?;
                    text(
                        root,
                        WAITING,
                        (x + 30, y),
                        &legend_font,
                        HPos::Left,
                        VPos::Center,
                    )?;
                }
                LegendItem::Band(label) => {
                    let rect = [(x, y - 7), (x + 24, y + 7)];
                    root.draw(&Rectangle::new(rect, BAND.mix(0.13).filled()))?;
                    root.draw(&Rectangle::new(rect, BAND.mix(0.6).stroke_width(1)))?;
                    text(
                        root,
                        &label,
                        (x + 32, y),
                        &legend_font,
                        HPos::Left,
                        VPos::Center,
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Scratch, svg};
    use crate::sim::strategy::RandomStrategy;
    use crate::sim::{self, Mutex, RunConfig, Sim};
    use crate::sim::{Outcome, RunReport};
    use std::rc::Rc;

    /// Two tasks contend a mutex; the notes mimic the balancergroup's.
    fn small_trace(seed: u64) -> Trace {
        trace_after(seed, 0)
    }

    /// [`small_trace`] after `warmup` yields of the main task.
    fn trace_after(seed: u64, warmup: usize) -> Trace {
        let mut sim = Sim::new(Box::new(RandomStrategy::new()));
        let mut cfg = RunConfig::new(seed);
        cfg.trace = true;
        let report = sim.run(&cfg, async move {
            for _ in 0..warmup {
                sim::yield_now().await;
            }
            let mu = Rc::new(Mutex::new(OUTGOING_MUTEX));
            let done = Rc::new(sim::Unbounded::<()>::new("done"));
            let (m, d) = (mu.clone(), done.clone());
            sim::go("remover", async move {
                let g = m.lock().await;
                sim::note(|| "balancergroup: Remove(p1) begins".into());
                sim::note(|| "timeoutCache: added p1".into());
                g.unlock().await;
                d.put(()).await.unwrap();
            })
            .await;
            let (m, d) = (mu.clone(), done.clone());
            sim::go("closer", async move {
                sim::note(|| "priority: Close".into());
                sim::note(|| "timeoutCache: cleared 0 entries".into());
                sim::yield_now().await;
                sim::note(|| {
                    "balancergroup: Close C3 (outgoing: close children in the map)".into()
                });
                let g = m.lock().await;
                g.unlock().await;
                d.put(()).await.unwrap();
            })
            .await;
            done.get().await;
            done.get().await;
        });
        report.trace.expect("trace on")
    }

    #[test]
    fn timeline_svg_names_tasks_and_notes() {
        let trace = small_trace(1);
        let path = Scratch::new("timeline.svg");
        let title = "Timeline of seed 1";
        timeline(&trace, title, &path, None).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"));
        assert!(svg.contains(title));
        for name in ["main", "remover", "closer"] {
            assert!(svg.contains(name), "lane {name} missing");
        }
        for note in [
            "balancergroup: Remove(p1) begins",
            "timeoutCache: added p1",
            "timeoutCache: cleared 0 entries",
            "balancergroup: Close C3",
        ] {
            assert!(svg.contains(note), "note {note:?} missing");
        }
        assert!(svg.contains(OUTGOING_MUTEX), "mutex legend missing");
        assert!(svg.contains("leaking window"));
        // All events of an untimed run share one virtual time: steps.
        assert!(svg.contains("step (index"), "axis label");
    }

    #[test]
    fn timeline_png_and_time_axis() {
        let trace = small_trace(2);
        let path = Scratch::new("timeline.png");
        timeline(&trace, "t", &path, Some((0, u64::MAX))).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let svg_path = Scratch::new("timeline_time.svg");
        let opts = TimelineOptions {
            window: TimelineWindow::All,
            axis: TimelineAxis::Time,
            end: None,
        };
        timeline_with(&trace, "t", &svg_path, &opts).unwrap();
        let svg = std::fs::read_to_string(&svg_path).unwrap();
        assert!(svg.contains("virtual time (ns)"), "axis label");
    }

    #[test]
    fn windows_select_events() {
        let trace = small_trace(3);
        let n = trace.events.len();
        assert_eq!(window_range(&trace, TimelineWindow::All), (0, n));
        assert_eq!(window_range(&trace, TimelineWindow::Steps(2, 5)), (2, 5));
        assert_eq!(window_range(&trace, TimelineWindow::Time(1, 2)), (n, n));
        let path = Scratch::new("empty.svg");
        let e = timeline(&trace, "t", &path, Some((1, 2))).unwrap_err();
        assert!(matches!(e, ChartError::Empty { .. }), "{e:?}");
    }

    #[test]
    fn leaking_window_runs_from_clear_to_the_c3_lock() {
        let (mut inside, mut outside) = (0, 0);
        for seed in 0..60 {
            let trace = small_trace(seed);
            let n = trace.events.len();
            let layout = Layout::new(&trace, "t", 0, n, TimelineAxis::Auto);
            let (c, d) = layout.band.expect("cleared note present");
            assert!(
                trace.events[c]
                    .note
                    .as_deref()
                    .unwrap()
                    .starts_with(NOTE_PREFIX_CLEARED)
            );
            let d = d.expect("C3 acquires the lock");
            // Either C3 found the mutex free, or it got it at an unlock.
            let e = &trace.events[d];
            let c3_task = trace
                .events
                .iter()
                .find(|e| {
                    e.note
                        .as_deref()
                        .is_some_and(|t| t.starts_with(NOTE_PREFIX_C3))
                })
                .unwrap()
                .task;
            assert!(
                (e.op == Op::Lock && e.task == c3_task)
                    || (e.op == Op::Unlock && e.task != c3_task),
                "seed {seed}: {e:?}"
            );
            assert!(trace.events[..d].iter().any(|e| {
                e.note
                    .as_deref()
                    .is_some_and(|t| t.starts_with(NOTE_PREFIX_C3))
            }));
            let added = trace
                .events
                .iter()
                .position(|e| e.note.as_deref() == Some("timeoutCache: added p1"))
                .unwrap();
            if added > c && added < d {
                assert_eq!(layout.cached_in_band, vec![added], "seed {seed}");
                inside += 1;
            } else {
                assert!(layout.cached_in_band.is_empty(), "seed {seed}");
                outside += 1;
            }
        }
        assert!(
            inside > 0 && outside > 0,
            "{inside} inside, {outside} outside"
        );
    }

    #[test]
    fn default_window_is_the_last_close() {
        let trace = trace_after(5, 200);
        let n = trace.events.len();
        let (a, b) = window_range(&trace, TimelineWindow::Auto);
        assert!(a > 150, "the warm-up is left out: {a}..{b} of {n}");
        let notes: Vec<&str> = trace.events[a..b]
            .iter()
            .filter_map(|e| e.note.as_deref())
            .collect();
        for note in ["priority: Close", "balancergroup: Remove(p1) begins"] {
            assert!(notes.contains(&note), "{note:?} not in {notes:?}");
        }
        // Without any close: the whole (short) trace.
        let mut no_close = small_trace(5);
        no_close.events.retain(|e| e.note.is_none());
        let n = no_close.events.len();
        assert_eq!(window_range(&no_close, TimelineWindow::Auto), (0, n));
    }

    #[test]
    fn mutex_holds_pair_lock_with_unlock() {
        let mut waited = 0;
        for seed in 0..40 {
            let trace = small_trace(seed);
            let layout = Layout::new(&trace, "t", 0, trace.events.len(), TimelineAxis::Auto);
            assert_eq!(layout.holds.len(), 2, "one hold per task");
            for h in &layout.holds {
                let (from, to) = (h.from.expect("acquired"), h.to.expect("unlocked"));
                assert!(h.asked <= from && from < to);
                assert_eq!(trace.events[h.asked].op, Op::Lock);
                assert_eq!(trace.events[to].op, Op::Unlock);
                assert_eq!(trace.events[to].task, Some(h.task));
                if from > h.asked {
                    // Acquired when the other task let go.
                    waited += 1;
                    assert_eq!(trace.events[from].op, Op::Unlock);
                    assert_ne!(trace.events[from].task, Some(h.task));
                }
            }
            let [h0, h1] = &layout.holds[..] else {
                unreachable!()
            };
            assert!(h0.to.unwrap() <= h1.from.unwrap(), "holds overlap");
        }
        assert!(waited > 0, "contention never happened");
        let trace = small_trace(4);
        let layout = Layout::new(&trace, "t", 0, trace.events.len(), TimelineAxis::Auto);
        assert_eq!(layout.axis, Axis::Step);
    }

    /// A run in which "crasher" panics after taking and releasing a mutex
    /// that "worker" also uses; main waits for a message that never comes.
    fn panicking_run(seed: u64) -> RunReport {
        let mut sim = Sim::new(Box::new(RandomStrategy::new()));
        let mut cfg = RunConfig::new(seed);
        cfg.trace = true;
        sim.run(&cfg, async move {
            let mu = Rc::new(Mutex::new("state.mu"));
            let never = Rc::new(sim::Unbounded::<()>::new("never"));
            let m = mu.clone();
            sim::go("worker", async move {
                let g = m.lock().await;
                sim::note(|| "worker: update state".into());
                g.unlock().await;
            })
            .await;
            sim::go("crasher", async move {
                sim::note(|| "crasher: begins".into());
                let g = mu.lock().await;
                g.unlock().await;
                sim::yield_now().await;
                panic!("index out of range");
            })
            .await;
            never.get().await;
        })
    }

    fn hex(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    #[test]
    fn outcome_is_in_the_title_and_a_panic_is_marked() {
        let report = panicking_run(11);
        assert_eq!(report.outcome, Outcome::Panic);
        let trace = report.trace.as_ref().unwrap();
        let end = TimelineEnd::of(&report);
        let crasher = (0..trace.tasks.len() as u32)
            .map(TaskId)
            .find(|&t| trace.task_name(t) == "crasher")
            .unwrap();
        assert_eq!(end.outcome, Outcome::Panic);
        // The report names the task; the one left runnable is the one.
        assert!(
            report
                .alive
                .iter()
                .any(|t| t.id == crasher && t.state == "runnable"),
            "{:?}",
            report.alive
        );
        let (task, message) = end.panic.clone().expect("the panic");
        assert_eq!(task, crasher);
        assert!(message.starts_with("index out of range"), "{message}");
        let last = (0..trace.events.len())
            .rev()
            .find(|&i| trace.events[i].task == Some(crasher))
            .unwrap();

        let path = Scratch::new("panic.svg");
        let opts = TimelineOptions {
            end: Some(end),
            ..TimelineOptions::default()
        };
        timeline_with(trace, "Timeline of seed 11", &path, &opts).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let texts = svg::texts(&svg);
        assert!(
            texts[0].text.starts_with("Timeline of seed 11")
                && texts[0].text.contains("outcome: panic"),
            "title: {:?}",
            texts[0].text
        );
        // The mark: a red burst on the crasher's lane at its last event.
        let layout = Layout::with_end(
            trace,
            "t",
            0,
            trace.events.len(),
            TimelineAxis::Auto,
            opts.end.as_ref(),
        );
        let lane = &layout.lanes[layout.lane_of[&Some(crasher)]];
        assert!(
            lane_label(lane).contains("panicked"),
            "{}",
            lane_label(lane)
        );
        assert_eq!(layout.panic_at, Some((last, crasher)));
        let (x, y) = (layout.ex(last), lane.mid);
        let burst = svg::paths(&svg)
            .into_iter()
            .find(|p| p.fill == hex(HOT) && p.points.len() >= 8)
            .expect("a panic mark");
        let (cx, cy) = (
            burst.points.iter().map(|p| p.0).sum::<i32>() / burst.points.len() as i32,
            burst.points.iter().map(|p| p.1).sum::<i32>() / burst.points.len() as i32,
        );
        assert!(
            (cx - x).abs() <= 1 && (cy - y).abs() <= 1,
            "mark at {cx},{cy}, event at {x},{y}"
        );
        let label = texts
            .iter()
            .find(|t| t.text == format!("panic: {message}"))
            .expect("the panic's message");
        assert_eq!(label.fill, hex(HOT));

        // Other outcomes are named in the title too.
        let ok = small_trace(1);
        let path = Scratch::new("ok.svg");
        let opts = TimelineOptions {
            end: Some(TimelineEnd {
                outcome: Outcome::Leak,
                panic: None,
            }),
            ..TimelineOptions::default()
        };
        timeline_with(&ok, "Leaky", &path, &opts).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg::texts(&svg)[0].text.contains("outcome: leak"));
    }

    /// A task that writes `n` long notes in a row, then yields `tail` times.
    fn chatty_trace(n: usize, tail: usize) -> Trace {
        let mut sim = Sim::new(Box::new(RandomStrategy::new()));
        let mut cfg = RunConfig::new(3);
        cfg.trace = true;
        let report = sim.run(&cfg, async move {
            sim::go("chatty", async move {
                for i in 0..n {
                    sim::note(|| {
                        format!(
                            "chatty: step {i} of the state machine ({})",
                            "#".repeat(i % 7 * 4)
                        )
                    });
                }
                for _ in 0..tail {
                    sim::yield_now().await;
                }
            })
            .await;
        });
        report.trace.expect("trace on")
    }

    /// A label's text, its left and right, and its top and bottom.
    type LabelBox = (String, (i32, i32), (i32, i32));

    /// Note labels drawn into `svg`.
    fn note_boxes(svg: &str) -> Vec<LabelBox> {
        svg::texts(svg)
            .into_iter()
            .filter(|t| t.fill == "#1E1E1E" && t.dy == "0.76em")
            .map(|t| (t.text.clone(), t.span(), t.rows()))
            .collect()
    }

    #[test]
    fn note_labels_do_not_overlap() {
        for (n, tail, leaders_clear) in [(40, 60, true), (30, 0, false), (12, 0, false)] {
            let trace = chatty_trace(n, tail);
            let path = Scratch::new("chatty.svg");
            let opts = TimelineOptions {
                window: TimelineWindow::All,
                ..TimelineOptions::default()
            };
            timeline_with(&trace, "Chatty", &path, &opts).unwrap();
            let svg = std::fs::read_to_string(&path).unwrap();
            let boxes = note_boxes(&svg);
            assert_eq!(boxes.len(), n);
            for (i, a) in boxes.iter().enumerate() {
                for b in &boxes[i + 1..] {
                    assert!(
                        !(svg::overlap(a.1, b.1) && svg::overlap(a.2, b.2)),
                        "{n} notes: {a:?} and {b:?} overlap"
                    );
                }
            }
            if !leaders_clear {
                continue;
            }
            // The line from each label down to its event crosses no other label.
            let leaders: Vec<(i32, i32, i32)> = svg::paths(&svg)
                .into_iter()
                .filter(|p| {
                    p.stroke == "#1E1E1E" && p.points.len() == 2 && p.points[0].0 == p.points[1].0
                })
                .map(|p| (p.points[0].0, p.points[0].1, p.points[1].1))
                .collect();
            assert_eq!(leaders.len(), n);
            for &(x, y0, y1) in &leaders {
                for (text, (l, r), (t, b)) in &boxes {
                    let own = (*t - y0).abs() <= 3 && (*l - x).abs() <= 4;
                    assert!(
                        own || !(*l < x && x < *r && svg::overlap((y0, y1), (*t, *b))),
                        "the line at x {x} from y {y0} to {y1} crosses {text:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn mutexes_in_view_have_distinct_colours() {
        for k in [3, 10, 14, 24] {
            let mut sim = Sim::new(Box::new(RandomStrategy::new()));
            let mut cfg = RunConfig::new(1);
            cfg.trace = true;
            let report = sim.run(&cfg, async move {
                let mus: Vec<Mutex> = (0..k).map(|i| Mutex::new(format!("m{i}.mu"))).collect();
                for m in &mus {
                    let g = m.lock().await;
                    g.unlock().await;
                }
            });
            let trace = report.trace.unwrap();
            let layout = Layout::new(&trace, "t", 0, trace.events.len(), TimelineAxis::Auto);
            assert_eq!(layout.mutex_names().len(), k);
            let colours: Vec<RGBColor> = layout
                .mutexes
                .iter()
                .map(|&m| layout.mutex_colour(m))
                .collect();
            for (i, a) in colours.iter().enumerate() {
                for (j, b) in colours.iter().enumerate().skip(i + 1) {
                    let d = ((f64::from(a.0) - f64::from(b.0)).powi(2)
                        + (f64::from(a.1) - f64::from(b.1)).powi(2)
                        + (f64::from(a.2) - f64::from(b.2)).powi(2))
                    .sqrt();
                    assert!(
                        d > 40.0,
                        "{k} mutexes: m{i} {a:?} and m{j} {b:?} are alike ({d:.0})"
                    );
                }
            }
            // The legend shows each in its own colour.
            let path = Scratch::new("mutexes.svg");
            timeline(&trace, "t", &path, None).unwrap();
            let svg = std::fs::read_to_string(&path).unwrap();
            let legend: Vec<String> = svg::rects(&svg)
                .into_iter()
                .filter(|r| r.w == 24 && r.h == 12 && r.stroke == "none")
                .map(|r| r.fill)
                .collect();
            let mut distinct = legend.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), k, "{legend:?}");
        }
    }
}
