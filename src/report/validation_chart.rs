//! The validation chart: leak rates measured on the real grpc-go harness
//! against lbsim's prediction of the same harness, over the close delay d,
//! with the ratio real/predicted per point underneath.
//!
//! The top panel shows both rates on a log axis with their Wilson 95%
//! intervals, one colour per (GOMAXPROCS, race detector) series: real
//! points are filled circles joined by solid lines, predictions hollow
//! squares joined by dashed lines. A zero count is not a rate: it is drawn
//! as the leak-rate chart draws it, a cap at the upper bound of its
//! interval with an arrow pointing down, and no line through it. The bottom panel shows real/predicted per point on
//! a log axis, with the goal band 0.5–2 shaded and an approximate 95%
//! interval for the ratio (Katz's log method); points where either count
//! is zero have no ratio and are left out, and the legend says how many.

use std::ops::Range;
use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::chart::{
    BOUND_ARROW, BOUND_CAP, GREY, GRID_BOLD, GRID_LIGHT, HEADER_H, ZERO_LABEL, bound_marker,
    dashes, fmt_sig, fmt_tick, header, log_ticks, shown, text, whisker,
};
use super::{
    ChartError, DrawResult, PALETTE, Paint, fmt_decade, fmt_rate, font, render, text_width,
    thousands,
};

/// One point of the validation: the real grpc-go harness against lbsim's prediction
/// of the same harness, at one GOMAXPROCS, race-detector setting and close delay d.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidationPoint {
    pub gomaxprocs: u32,
    pub race: bool,
    pub delay_ns: u64,
    pub real_runs: u64,
    pub real_leaks: u64,
    pub real_rate: f64,
    pub real_lo: f64,
    pub real_hi: f64,
    pub pred_runs: u64,
    pub pred_leaks: u64,
    pub pred_rate: f64,
    pub pred_lo: f64,
    pub pred_hi: f64,
}

impl ValidationPoint {
    /// real_rate / pred_rate, None when either count is 0.
    pub fn ratio(&self) -> Option<f64> {
        let r = self.real_rate / self.pred_rate;
        (self.real_leaks > 0 && self.pred_leaks > 0 && r.is_finite() && r > 0.0).then_some(r)
    }

    /// An approximate 95% interval of [`Self::ratio`] by Katz's log method:
    /// ln r ± 1.96·√(1/k₁ − 1/n₁ + 1/k₂ − 1/n₂).
    fn ratio_interval(&self) -> Option<(f64, f64)> {
        let r = self.ratio()?;
        if self.real_runs == 0 || self.pred_runs == 0 {
            return None;
        }
        let term = |k: u64, n: u64| (1.0 / k as f64 - 1.0 / n as f64).max(0.0);
        let se =
            (term(self.real_leaks, self.real_runs) + term(self.pred_leaks, self.pred_runs)).sqrt();
        let m = (1.959_964 * se).exp();
        Some((r / m, r * m))
    }

    fn real_shown(&self) -> Option<f64> {
        shown(
            self.real_runs,
            self.real_leaks,
            self.real_rate,
            self.real_hi,
        )
    }

    fn pred_shown(&self) -> Option<f64> {
        shown(
            self.pred_runs,
            self.pred_leaks,
            self.pred_rate,
            self.pred_hi,
        )
    }

    fn delay_us(&self) -> f64 {
        self.delay_ns as f64 / 1000.0
    }
}

/// Draws real against predicted leak rate over the delay, one colour per
/// (gomaxprocs, race) series, and below it the ratio real/predicted per point.
/// Writes `path` (.png or .svg, chosen by extension).
pub fn validation_chart(
    points: &[ValidationPoint],
    title: &str,
    path: &Path,
) -> Result<(), ChartError> {
    if !points
        .iter()
        .any(|p| p.real_shown().is_some() || p.pred_shown().is_some())
    {
        return Err(ChartError::Empty {
            path: path.to_path_buf(),
            what: "no validation point has any runs".into(),
        });
    }
    render(path, SIZE, &Validation { points, title })
}

const SIZE: (u32, u32) = (1000, 760);
const LEGEND_W: i32 = 262;
/// Width of the y label area of both panels, so their x axes line up.
const Y_AREA: i32 = 80;
const MARGIN_R: i32 = 16;
/// Share of the body height taken by the top panel.
const TOP_SHARE: f64 = 0.65;
/// Horizontal offset of a real point left and a prediction right of their
/// series' position, in pixels.
const PAIR_DODGE: i32 = 5;
/// The ratio panel's goal band.
const GOAL: (f64, f64) = (0.5, 2.0);
const BAND: RGBColor = RGBColor(222, 238, 222);

/// One (GOMAXPROCS, race) series, its points ordered by delay.
struct Series<'a> {
    label: String,
    colour: RGBColor,
    points: Vec<&'a ValidationPoint>,
}

fn series_of(points: &[ValidationPoint]) -> Vec<Series<'_>> {
    let mut keys: Vec<(u32, bool)> = points.iter().map(|p| (p.gomaxprocs, p.race)).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.iter()
        .enumerate()
        .map(|(i, &(g, race))| {
            let mut pts: Vec<&ValidationPoint> = points
                .iter()
                .filter(|p| (p.gomaxprocs, p.race) == (g, race))
                .collect();
            pts.sort_by_key(|p| p.delay_ns);
            Series {
                label: if race {
                    format!("GOMAXPROCS={g}, -race")
                } else {
                    format!("GOMAXPROCS={g}")
                },
                colour: PALETTE[i % PALETTE.len()],
                points: pts,
            }
        })
        .collect()
}

/// A linear axis (over plotted positions: µs, log10 µs or log10 rate)
/// with given major ticks, labelled and drawn as bold grid lines, and minor
/// ones drawn as light grid lines only.
#[derive(Clone)]
struct Axis {
    inner: RangedCoordf64,
    major: Vec<(f64, String)>,
    minor: Vec<f64>,
}

impl Axis {
    fn new(lo: f64, hi: f64, major: Vec<(f64, String)>, minor: Vec<f64>) -> Self {
        Axis {
            inner: (lo..hi).into(),
            major: major
                .into_iter()
                .filter(|(v, _)| *v >= lo && *v <= hi)
                .collect(),
            minor: minor.into_iter().filter(|v| *v >= lo && *v <= hi).collect(),
        }
    }

    fn label(&self, v: f64) -> String {
        self.major
            .iter()
            .find(|(m, _)| (m - v).abs() < 1e-9)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        let mut out: Vec<f64> = self.major.iter().map(|(v, _)| *v).collect();
        if hint.weight().allow_light_points() {
            out.extend(&self.minor);
        }
        out
    }

    fn range(&self) -> Range<f64> {
        self.inner.range()
    }
}

/// The delay axis: linear in µs, or, when a linear axis would crowd the
/// small delays together, logarithmic with 0 at its own position left of
/// the first decade and a break mark after it.
struct DelayScale {
    axis: Axis,
    /// Plotted position of d = 0 on a log axis; `None` for a linear one.
    zero_at: Option<f64>,
    /// Plotted position of the axis break (log axis with a 0 only).
    brk: Option<f64>,
}

impl DelayScale {
    fn pos(&self, us: f64) -> f64 {
        match self.zero_at {
            None => us,
            Some(z) if us <= 0.0 => z,
            Some(_) => us.log10(),
        }
    }

    /// Chooses the axis for the distinct delays `us` (ascending) on a plot
    /// `plot_w` pixels wide with tick labels in a `label_px` font.
    fn new(us: &[f64], plot_w: f64, label_px: f64) -> Self {
        let max = us.last().copied().unwrap_or(0.0).max(0.0);
        let positive: Vec<f64> = us.iter().copied().filter(|&d| d > 0.0).collect();
        let min_gap = |pos: &dyn Fn(f64) -> f64, lo: f64, hi: f64| {
            us.windows(2)
                .map(|w| (pos(w[1]) - pos(w[0])) / (hi - lo) * plot_w)
                .fold(f64::INFINITY, f64::min)
        };
        // Linear: 0 to the largest delay, a little room either side.
        let lin_max = if max > 0.0 { max } else { 1.0 };
        let (lin_lo, lin_hi) = (-0.04 * lin_max, 1.04 * lin_max);
        let lin_gap = min_gap(&|d| d, lin_lo, lin_hi);
        if positive.len() >= 2 && lin_gap < 22.0 {
            let e0 = positive[0].log10().floor();
            let has_zero = us.iter().any(|&d| d <= 0.0);
            let zero_at = e0 - 0.6;
            let first = if has_zero {
                zero_at
            } else {
                positive[0].log10()
            };
            let last = max.log10();
            let pad = 0.05 * (last - first).max(0.5);
            let (lo, hi) = (first - pad, last + pad);
            let log_pos = |d: f64| if d <= 0.0 { zero_at } else { d.log10() };
            if min_gap(&log_pos, lo, hi) > lin_gap {
                return Self::log(e0, zero_at, has_zero, lo, hi, plot_w, label_px);
            }
        }
        Self::linear(lin_lo, lin_hi, lin_max, plot_w, label_px)
    }

    fn linear(lo: f64, hi: f64, max: f64, plot_w: f64, label_px: f64) -> Self {
        let px_per_us = plot_w / (hi - lo);
        let mut e = (max / 50.0).log10().floor() as i32;
        let (major, minor) = 'found: loop {
            for m in [1.0, 2.0, 5.0] {
                let step = m * 10f64.powi(e);
                let n = (max / step + 1e-9).floor() as usize;
                let major: Vec<(f64, String)> = (0..=n)
                    .map(|k| {
                        let v = k as f64 * step;
                        (v, fmt_tick(v, step * 100.0))
                    })
                    .collect();
                let widest = major
                    .iter()
                    .map(|(_, s)| text_width(s, label_px))
                    .max()
                    .unwrap_or(0) as f64;
                if step * px_per_us >= (widest + 18.0).max(44.0) || n == 0 {
                    let minor = (0..=2 * n + 1).map(|k| k as f64 * step / 2.0).collect();
                    break 'found (major, minor);
                }
            }
            e += 1;
        };
        DelayScale {
            axis: Axis::new(lo, hi, major, minor),
            zero_at: None,
            brk: None,
        }
    }

    fn log(
        e0: f64,
        zero_at: f64,
        has_zero: bool,
        lo: f64,
        hi: f64,
        plot_w: f64,
        label_px: f64,
    ) -> Self {
        let top = 10f64.powf(hi);
        let px = |v: f64| (v - lo) / (hi - lo) * plot_w;
        let labelled = |vs: Vec<f64>| -> Vec<(f64, String)> {
            let mut out = Vec::new();
            if has_zero {
                out.push((zero_at, "0".to_string()));
            }
            out.extend(vs.into_iter().map(|v| (v, fmt_us(10f64.powf(v)))));
            out
        };
        let fits = |ticks: &[(f64, String)]| {
            ticks.windows(2).all(|w| {
                let half = |s: &str| f64::from(text_width(s, label_px)) / 2.0;
                px(w[1].0) - px(w[0].0) >= half(&w[0].1) + half(&w[1].1) + 10.0
            })
        };
        let fine = labelled(log_ticks(10f64.powf(e0), top));
        let major = if fits(&fine) {
            fine
        } else {
            let decades: Vec<f64> = (e0 as i32..=hi.floor() as i32).map(f64::from).collect();
            let all = labelled(decades.clone());
            if fits(&all) {
                all
            } else {
                labelled(decades.into_iter().step_by(2).collect())
            }
        };
        let mut minor = Vec::new();
        let mut e = e0 as i32;
        while f64::from(e) <= hi {
            for m in 1..10 {
                minor.push((f64::from(m) * 10f64.powi(e)).log10());
            }
            e += 1;
        }
        DelayScale {
            axis: Axis::new(lo, hi, major, minor),
            zero_at: has_zero.then_some(zero_at),
            brk: has_zero.then_some(zero_at + 0.3),
        }
    }
}

/// A delay tick on a log axis: three significant digits, thousands
/// separated (`0.5`, `20`, `1,000`).
fn fmt_us(v: f64) -> String {
    if v >= 1000.0 {
        thousands(v.round() as u64)
    } else {
        fmt_sig(v)
    }
}

/// A log axis over `lo..hi` (log10 values) with every decade labelled and
/// the other whole multiples of each decade as light lines; `extra` are
/// further labelled values (log10) kept when they leave room.
fn log_axis(lo: f64, hi: f64, extra: &[f64], plot_h: f64, label_px: f64) -> Axis {
    let mut major: Vec<(f64, String)> = (lo.ceil() as i32..=hi.floor() as i32)
        .map(|e| {
            let v = f64::from(e);
            (v, fmt_decade(10f64.powf(v)))
        })
        .collect();
    let px_per_decade = plot_h / (hi - lo);
    for &v in extra {
        let clear = major
            .iter()
            .all(|(m, _)| (m - v).abs() * px_per_decade >= label_px * 1.2);
        if clear {
            major.push((v, fmt_rate(10f64.powf(v))));
        }
    }
    major.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut minor = Vec::new();
    for e in lo.floor() as i32..=hi.ceil() as i32 {
        for m in 2..10 {
            minor.push((f64::from(m) * 10f64.powi(e)).log10());
        }
    }
    Axis::new(lo, hi, major, minor)
}

struct Validation<'a> {
    points: &'a [ValidationPoint],
    title: &'a str,
}

/// Marks drawn in the legend.
enum Mark {
    Heading,
    Note,
    Series(RGBColor),
    Real,
    Pred,
    Zero,
    Whisker,
    Band,
    One,
}

fn hollow_square<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    c: RGBColor,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let h = 5;
    root.draw(&Rectangle::new(
        [(x - h, y - h), (x + h, y + h)],
        WHITE.filled(),
    ))?;
    root.draw(&Rectangle::new(
        [(x - h, y - h), (x + h, y + h)],
        c.stroke_width(2),
    ))?;
    Ok(())
}

fn dashed<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    a: (i32, i32),
    b: (i32, i32),
    c: RGBColor,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    for d in dashes(a, b, 7.0, 11.0, 0.0) {
        root.draw(&PathElement::new(d.to_vec(), c.stroke_width(2)))?;
    }
    Ok(())
}

/// Legend entries from (`x`, `y`) down; returns the y below the last one.
fn legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    x: i32,
    mut y: i32,
    entries: &[(Mark, Vec<String>)],
) -> Result<i32, Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    for (mark, lines) in entries {
        let (cx, cy) = (x + 13, y + 8);
        match mark {
            Mark::Heading | Mark::Note => {}
            Mark::Series(c) => {
                root.draw(&PathElement::new(
                    vec![(x, cy), (x + 26, cy)],
                    c.stroke_width(3),
                ))?;
                root.draw(&Circle::new((cx, cy), 5, c.filled()))?;
            }
            Mark::Real => {
                root.draw(&PathElement::new(
                    vec![(x, cy), (x + 26, cy)],
                    GREY.stroke_width(2),
                ))?;
                root.draw(&Circle::new((cx, cy), 5, GREY.filled()))?;
            }
            Mark::Pred => {
                dashed(root, (x - 2, cy), (x + 28, cy), GREY)?;
                hollow_square(root, (cx, cy), GREY)?;
            }
            Mark::Zero => bound_marker(root, (cx, cy - 8), BOUND_CAP, BOUND_ARROW, GREY)?,
            Mark::Whisker => whisker(root, cx, cy + 9, cy - 9, 5, GREY)?,
            Mark::Band => {
                root.draw(&Rectangle::new([(x, y), (x + 26, y + 16)], BAND.filled()))?;
                root.draw(&PathElement::new(
                    vec![(x, cy), (x + 26, cy)],
                    GREY.stroke_width(1),
                ))?;
            }
            Mark::One => {
                root.draw(&PathElement::new(
                    vec![(x, cy), (x + 26, cy)],
                    GREY.stroke_width(1),
                ))?;
            }
        }
        let (tx, style) = match mark {
            Mark::Heading => (x, font(15.0)),
            Mark::Note => (x, font(13.0).color(&GREY)),
            _ => (x + 36, font(14.0)),
        };
        for line in lines {
            text(root, line, (tx, y), &style, HPos::Left, VPos::Top)?;
            y += 18;
        }
        y += if matches!(mark, Mark::Heading) { 4 } else { 8 };
    }
    Ok(y)
}

/// An axis break mark (two short slanted strokes) across the x axis at `x`.
fn axis_break<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, x: i32, y: i32) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.draw(&Rectangle::new(
        [(x - 3, y - 6), (x + 3, y + 6)],
        WHITE.filled(),
    ))?;
    for dx in [-3, 3] {
        root.draw(&PathElement::new(
            vec![(x + dx - 3, y + 6), (x + dx + 3, y - 6)],
            BLACK.stroke_width(1),
        ))?;
    }
    Ok(())
}

impl Paint for Validation<'_> {
    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let w = root.dim_in_pixel().0 as i32;
        let series = series_of(self.points);

        let real_total: u64 = self.points.iter().map(|p| p.real_runs).sum();
        let pred_total: u64 = self.points.iter().map(|p| p.pred_runs).sum();
        let subtitle = format!(
            "real: {} iterations, predicted: {} runs · {} points · whiskers: Wilson 95% interval",
            thousands(real_total),
            thousands(pred_total),
            self.points.len()
        );
        header(root, self.title, &subtitle)?;

        // Panels.
        let body = root.margin(HEADER_H as u32, 10, 10, LEGEND_W as u32);
        let (body_w, body_h) = body.dim_in_pixel();
        let top_h = (f64::from(body_h) * TOP_SHARE).round() as u32;
        let (top, bottom) = body.split_vertically(top_h);
        let plot_w = f64::from(body_w as i32 - Y_AREA - MARGIN_R);
        let (top_margin, top_x_area, bottom_margin, bottom_x_area) = (8, 34, 14, 58);

        // The delay axis, shared.
        let mut delays: Vec<f64> = self
            .points
            .iter()
            .filter(|p| p.real_shown().is_some() || p.pred_shown().is_some())
            .map(ValidationPoint::delay_us)
            .collect();
        delays.sort_by(f64::total_cmp);
        delays.dedup();
        let xs = DelayScale::new(&delays, plot_w, 14.0);
        // Series step aside from each other, real and predicted from each
        // other, within a fraction of the smallest gap between delays.
        let (x_lo, x_hi) = (xs.axis.range().start, xs.axis.range().end);
        let gap_px = delays
            .windows(2)
            .map(|d| (xs.pos(d[1]) - xs.pos(d[0])) / (x_hi - x_lo) * plot_w)
            .fold(plot_w, f64::min);
        let n_series = series.len() as i32;
        let series_step = if n_series > 1 {
            ((0.55 * gap_px - f64::from(2 * PAIR_DODGE)) / f64::from(2 * (n_series - 1)))
                .clamp(0.0, 12.0) as i32
        } else {
            0
        };
        let pair_dodge = if gap_px < 24.0 { 3 } else { PAIR_DODGE };
        let dodge = |k: usize| (2 * k as i32 - (n_series - 1)) * series_step;

        // The rate axis: every shown value and whisker, a decade below the
        // lowest, some room above the highest.
        let (mut lo, mut hi) = (f64::INFINITY, 0f64);
        for p in self.points {
            for (v, leaks, ci_lo, ci_hi) in [
                (p.real_shown(), p.real_leaks, p.real_lo, p.real_hi),
                (p.pred_shown(), p.pred_leaks, p.pred_lo, p.pred_hi),
            ] {
                let Some(v) = v else { continue };
                lo = lo.min(v);
                hi = hi.max(v);
                if leaks > 0 {
                    if ci_lo > 0.0 {
                        lo = lo.min(ci_lo);
                    }
                    if ci_hi.is_finite() {
                        hi = hi.max(ci_hi);
                    }
                }
            }
        }
        if !lo.is_finite() || hi <= 0.0 {
            return Err("no point has a positive rate or upper bound".into());
        }
        // Not snapped to decades (a line chart has no bar base), but at
        // least one decade inside, and with few decades the 2 and 5
        // multiples labelled as well.
        let (lo_log, hi_log) = (lo.log10(), hi.log10());
        let span = (hi_log - lo_log).max(0.5);
        let mut y_lo = lo_log - 0.06 * span;
        if y_lo.ceil() > hi_log {
            y_lo = y_lo.floor();
        }
        let y_hi = hi_log + 0.1 * (hi_log - y_lo);
        let top_plot_h = f64::from(top_h as i32 - top_margin - top_x_area);
        let extra: Vec<f64> = if y_hi.floor() - y_lo.ceil() < 1.0 {
            (y_lo.floor() as i32..=y_hi.ceil() as i32)
                .flat_map(|e| [2.0, 5.0].map(|m| (m * 10f64.powi(e)).log10()))
                .collect()
        } else {
            Vec::new()
        };
        let y_axis = log_axis(y_lo, y_hi, &extra, top_plot_h, 14.0);

        let mut chart = ChartBuilder::on(&top)
            .margin_top(top_margin as u32)
            .margin_right(MARGIN_R as u32)
            .x_label_area_size(top_x_area as u32)
            .y_label_area_size(Y_AREA as u32)
            .build_cartesian_2d(xs.axis.clone(), y_axis.clone())?;
        let x_label = |v: &f64| xs.axis.label(*v);
        chart
            .configure_mesh()
            .x_label_formatter(&x_label)
            .y_label_formatter(&|v| y_axis.label(*v))
            .y_desc("leak rate per iteration (log scale)")
            .axis_desc_style(font(16.0))
            .label_style(font(14.0))
            .bold_line_style(GRID_BOLD)
            .light_line_style(GRID_LIGHT)
            .draw()?;
        let at = |d: f64, rate: f64| chart.backend_coord(&(xs.pos(d), rate.log10()));
        let y_floor = chart.backend_coord(&(x_lo, y_lo)).1;
        let plot_x = chart.plotting_area().get_pixel_range().0;

        // Every marker in pixels, then drawn in layers: lines, the notes
        // of zero counts (on a white ground that lines pass under), and
        // whiskers and markers on top.
        struct Dot {
            x: i32,
            y: i32,
            colour: RGBColor,
            real: bool,
            /// Whisker ends in pixels, or `None` for a zero count.
            whisker: Option<(i32, i32)>,
            runs: u64,
        }
        let mut dots: Vec<Dot> = Vec::new();
        for (k, s) in series.iter().enumerate() {
            for real in [true, false] {
                let side = if real { -pair_dodge } else { pair_dodge };
                let mut prev: Option<(i32, i32)> = None;
                for p in &s.points {
                    let (runs, leaks, v, ci_lo, ci_hi) = if real {
                        (
                            p.real_runs,
                            p.real_leaks,
                            p.real_shown(),
                            p.real_lo,
                            p.real_hi,
                        )
                    } else {
                        (
                            p.pred_runs,
                            p.pred_leaks,
                            p.pred_shown(),
                            p.pred_lo,
                            p.pred_hi,
                        )
                    };
                    let Some(v) = v else {
                        prev = None;
                        continue;
                    };
                    let (x, y) = at(p.delay_us(), v);
                    let x = x + dodge(k) + side;
                    let whisker = (leaks > 0).then(|| {
                        let low = if ci_lo > 0.0 {
                            at(p.delay_us(), ci_lo).1
                        } else {
                            y_floor
                        };
                        (low, at(p.delay_us(), ci_hi.max(v)).1)
                    });
                    // Segments join neighbouring measured rates only: a
                    // zero count breaks the line.
                    if let (Some(a), Some(_)) = (prev, whisker) {
                        if real {
                            root.draw(&PathElement::new(
                                vec![a, (x, y)],
                                s.colour.stroke_width(2),
                            ))?;
                        } else {
                            dashed(root, a, (x, y), s.colour)?;
                        }
                    }
                    prev = whisker.map(|_| (x, y));
                    dots.push(Dot {
                        x,
                        y,
                        colour: s.colour,
                        real,
                        whisker,
                        runs,
                    });
                }
            }
        }
        let zero_count = dots.iter().filter(|d| d.whisker.is_none()).count();
        // Notes that would overlap one already drawn are left out: the
        // triangle and the legend still say what a zero is.
        let mut placed: Vec<(i32, i32, i32, i32)> = Vec::new();
        for d in dots.iter().filter(|d| d.whisker.is_none()) {
            let (x, y) = (d.x, d.y);
            let note = format!(
                "{} 0/{}",
                if d.real { "real" } else { "lbsim" },
                thousands(d.runs)
            );
            // Beside the triangle, away from its partner; above it where
            // that would leave the plot.
            let nw = text_width(&note, 12.0);
            let (at_x, x0, ty) = if d.real && x - 10 - nw >= plot_x.start {
                (x - 10, x - 10 - nw, y - 2)
            } else if !d.real && x + 10 + nw <= plot_x.end {
                (x + 10, x + 10, y - 2)
            } else {
                (x, x - nw / 2, y - 8)
            };
            let hp = if at_x == x0 {
                HPos::Left
            } else if at_x == x {
                HPos::Center
            } else {
                HPos::Right
            };
            let rect = (x0 - 2, ty - 14, x0 + nw + 2, ty);
            if placed
                .iter()
                .any(|r| rect.0 < r.2 + 12 && r.0 < rect.2 + 12 && rect.1 < r.3 && r.1 < rect.3)
            {
                continue;
            }
            placed.push(rect);
            root.draw(&Rectangle::new(
                [(rect.0, rect.1), (rect.2, rect.3)],
                WHITE.mix(0.85).filled(),
            ))?;
            text(
                root,
                &note,
                (at_x, ty),
                &font(12.0).color(&d.colour),
                hp,
                VPos::Bottom,
            )?;
        }
        for d in &dots {
            match d.whisker {
                None => bound_marker(root, (d.x, d.y), BOUND_CAP, BOUND_ARROW, d.colour)?,
                Some((low, high)) => {
                    whisker(root, d.x, low, high, 4, d.colour)?;
                    if d.real {
                        root.draw(&Circle::new((d.x, d.y), 5, d.colour.filled()))?;
                    } else {
                        hollow_square(root, (d.x, d.y), d.colour)?;
                    }
                }
            }
        }
        if let Some(b) = xs.brk {
            let (bx, by) = chart.backend_coord(&(b, y_lo));
            axis_break(root, bx, by)?;
        }

        // The ratio panel.
        let ratios: Vec<(usize, &ValidationPoint, f64, (f64, f64))> = series
            .iter()
            .enumerate()
            .flat_map(|(k, s)| {
                s.points
                    .iter()
                    .filter_map(move |p| Some((k, *p, p.ratio()?, p.ratio_interval()?)))
            })
            .collect();
        let (mut r_lo, mut r_hi) = (GOAL.0.log10() - 0.7, GOAL.1.log10() + 0.7);
        for (_, _, r, (a, b)) in &ratios {
            r_lo = r_lo.min(r.log10()).min(a.log10().max(-4.0));
            r_hi = r_hi.max(r.log10()).max(b.log10().min(4.0));
        }
        let r_lo = (r_lo - 0.05).floor().max(r_lo - 0.3);
        let r_hi = (r_hi + 0.05).ceil().min(r_hi + 0.3);
        let bottom_plot_h =
            f64::from(bottom.dim_in_pixel().1 as i32 - bottom_margin - bottom_x_area);
        let r_axis = log_axis(
            r_lo,
            r_hi,
            &[GOAL.0.log10(), GOAL.1.log10()],
            bottom_plot_h,
            14.0,
        );
        let mut rchart = ChartBuilder::on(&bottom)
            .margin_top(bottom_margin as u32)
            .margin_right(MARGIN_R as u32)
            .x_label_area_size(bottom_x_area as u32)
            .y_label_area_size(Y_AREA as u32)
            .build_cartesian_2d(xs.axis.clone(), r_axis.clone())?;
        rchart.plotting_area().draw(&Rectangle::new(
            [(x_lo, GOAL.0.log10()), (x_hi, GOAL.1.log10())],
            BAND.filled(),
        ))?;
        rchart
            .configure_mesh()
            .x_label_formatter(&x_label)
            .y_label_formatter(&|v| r_axis.label(*v))
            .x_desc("delay d between p0's picker and Close (µs)")
            .y_desc("real / predicted")
            .axis_desc_style(font(16.0))
            .label_style(font(14.0))
            .bold_line_style(GRID_BOLD.mix(0.7))
            .light_line_style(GRID_LIGHT.mix(0.6))
            .draw()?;
        rchart.plotting_area().draw(&PathElement::new(
            vec![(x_lo, 0.0), (x_hi, 0.0)],
            GREY.stroke_width(1),
        ))?;
        let rat = |d: f64, r: f64| rchart.backend_coord(&(xs.pos(d), r.log10().clamp(r_lo, r_hi)));
        let mut inside = 0;
        for (k, p, r, (a, b)) in &ratios {
            let c = series[*k].colour;
            let (x, y) = rat(p.delay_us(), *r);
            let x = x + dodge(*k);
            let (ya, yb) = (rat(p.delay_us(), *a).1, rat(p.delay_us(), *b).1);
            whisker(root, x, ya, yb, 4, c)?;
            root.draw(&Circle::new((x, y), 5, c.filled()))?;
            if (GOAL.0..=GOAL.1).contains(r) {
                inside += 1;
            }
        }
        if let Some(b) = xs.brk {
            let (bx, by) = rchart.backend_coord(&(b, r_lo));
            axis_break(root, bx, by)?;
        }

        // Legend: series and markers beside the top panel, the ratio panel's
        // key beside it.
        let lx = w - LEGEND_W + 20;
        let mut entries = vec![(Mark::Heading, vec!["Series".to_string()])];
        for s in &series {
            entries.push((Mark::Series(s.colour), vec![s.label.clone()]));
        }
        entries.push((Mark::Heading, vec!["Markers".to_string()]));
        entries.push((Mark::Real, vec!["real grpc-go".into()]));
        entries.push((Mark::Pred, vec!["lbsim prediction (dashed)".into()]));
        entries.push((Mark::Whisker, vec!["Wilson 95% interval".into()]));
        if zero_count > 0 {
            entries.push((
                Mark::Zero,
                vec![ZERO_LABEL.into(), "(no rate; no line)".into()],
            ));
        }
        legend(root, lx, HEADER_H + 14, &entries)?;

        let omitted = self
            .points
            .iter()
            .filter(|p| {
                (p.real_shown().is_some() || p.pred_shown().is_some()) && p.ratio().is_none()
            })
            .count();
        let mut notes = vec![format!("{inside} of {} ratios in 0.5–2", ratios.len())];
        if omitted > 0 {
            notes.push(format!("{omitted} omitted: a count is 0"));
        }
        let ratio_entries = vec![
            (Mark::Heading, vec!["Ratio panel".to_string()]),
            (Mark::Band, vec!["goal band 0.5–2".into()]),
            (Mark::One, vec!["1: perfect agreement".into()]),
            (Mark::Whisker, vec!["≈95% interval (Katz)".into()]),
            (Mark::Note, notes),
        ];
        let ry = HEADER_H + top_h as i32 + bottom_margin - 4;
        legend(root, lx, ry, &ratio_entries)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wilson(k: u64, n: u64) -> (f64, f64) {
        let (k, n) = (k as f64, n as f64);
        let z = 1.959_964;
        let p = k / n;
        let d = 1.0 + z * z / n;
        let c = (p + z * z / (2.0 * n)) / d;
        let m = z * ((p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt()) / d;
        ((c - m).max(0.0), (c + m).min(1.0))
    }

    fn point(
        gomaxprocs: u32,
        race: bool,
        delay_ns: u64,
        (real_runs, real_leaks): (u64, u64),
        (pred_runs, pred_leaks): (u64, u64),
    ) -> ValidationPoint {
        let (real_lo, real_hi) = wilson(real_leaks, real_runs);
        let (pred_lo, pred_hi) = wilson(pred_leaks, pred_runs);
        ValidationPoint {
            gomaxprocs,
            race,
            delay_ns,
            real_runs,
            real_leaks,
            real_rate: real_leaks as f64 / real_runs as f64,
            real_lo,
            real_hi,
            pred_runs,
            pred_leaks,
            pred_rate: pred_leaks as f64 / pred_runs as f64,
            pred_lo,
            pred_hi,
        }
    }

    /// 2 GOMAXPROCS × 6 delays including 0; one point without a real leak,
    /// one without a predicted leak.
    pub(crate) fn sample() -> Vec<ValidationPoint> {
        let mut pts = Vec::new();
        let delays = [0u64, 20_000, 40_000, 60_000, 80_000, 100_000];
        let real2 = [900, 410, 150, 52, 9, 0];
        let pred2 = [1_400, 380, 95, 30, 12, 3];
        let real8 = [2_600, 1_700, 800, 300, 120, 40];
        let pred8 = [2_100, 1_500, 900, 420, 90, 0];
        for (i, &d) in delays.iter().enumerate() {
            pts.push(point(2, false, d, (200_000, real2[i]), (100_000, pred2[i])));
            pts.push(point(8, true, d, (200_000, real8[i]), (100_000, pred8[i])));
        }
        pts
    }

    #[test]
    fn ratio_is_real_over_predicted() {
        let p = point(2, false, 0, (1_000, 20), (2_000, 10));
        let r = p.ratio().unwrap();
        assert!((r - 4.0).abs() < 1e-12, "{r}");
        let (a, b) = p.ratio_interval().unwrap();
        assert!(a < r && r < b, "{a} {r} {b}");
    }

    #[test]
    fn ratio_of_a_zero_count_is_none() {
        assert_eq!(point(2, false, 0, (1_000, 0), (2_000, 10)).ratio(), None);
        assert_eq!(point(2, false, 0, (1_000, 5), (2_000, 0)).ratio(), None);
        assert_eq!(point(2, false, 0, (1_000, 0), (2_000, 0)).ratio(), None);
    }

    #[test]
    fn draws_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let pts = sample();
        for name in ["validation.png", "validation.svg"] {
            let path = dir.path().join(name);
            validation_chart(&pts, "lbsim against grpc-go", &path).unwrap();
            let len = std::fs::metadata(&path).unwrap().len();
            assert!(len > 0, "{name} is empty");
        }
        let png = std::fs::read(dir.path().join("validation.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        assert_eq!((be(&png[16..20]), be(&png[20..24])), SIZE);
        let svg = std::fs::read_to_string(dir.path().join("validation.svg")).unwrap();
        for s in [
            "lbsim against grpc-go",
            "real: 2,400,000 iterations, predicted: 1,200,000 runs",
            "GOMAXPROCS=2",
            "GOMAXPROCS=8, -race",
            "real grpc-go",
            "lbsim prediction (dashed)",
            "0 leaks: 95% upper bound",
            "delay d between p0",
            "real / predicted",
            "real 0/200,000",
            "lbsim 0/100,000",
            "2 omitted: a count is 0",
        ] {
            assert!(svg.contains(s), "no {s:?} in the SVG");
        }
        // Every decade of the rate axis is labelled.
        for d in ["1e-5", "1e-4", "1e-3", "0.01"] {
            assert!(svg.lines().any(|l| l.trim() == d), "no tick {d}");
        }
    }

    #[test]
    fn a_zero_count_is_the_bound_marker_of_the_other_charts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zeros.svg");
        validation_chart(&sample(), "zeros", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        // No hollow triangle that could pass for a measured point.
        let triangles: Vec<_> = crate::report::svg::paths(&svg)
            .into_iter()
            .filter(|p| p.fill == "#FFFFFF" && p.points.len() == 3)
            .collect();
        assert!(triangles.is_empty(), "hollow triangles: {triangles:?}");
        // The sample's two zero counts are caps with arrows down, and the
        // legend explains the mark in grey, in the leak-rate chart's words.
        let hex = |c: RGBColor| format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2);
        let bounds = |c: RGBColor| super::super::chart::tests::bounds(&svg, &hex(c)).len();
        let marked: usize = PALETTE.iter().map(|&c| bounds(c)).sum();
        assert_eq!(marked, 2, "zero points drawn as bounds");
        assert_eq!(bounds(GREY), 1, "legend swatch");
        assert!(svg.contains(ZERO_LABEL));
    }

    #[test]
    fn crowded_small_delays_get_a_log_axis_with_zero() {
        let delays = [0u64, 500, 1_000, 2_000, 5_000, 10_000, 100_000, 1_000_000];
        let pts: Vec<ValidationPoint> = delays
            .iter()
            .map(|&d| point(4, false, d, (50_000, 30), (50_000, 25)))
            .collect();
        let us: Vec<f64> = pts.iter().map(ValidationPoint::delay_us).collect();
        let xs = DelayScale::new(&us, 640.0, 14.0);
        assert!(xs.zero_at.is_some(), "expected a log delay axis");
        assert_eq!(xs.axis.label(xs.pos(0.0)), "0");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.svg");
        validation_chart(&pts, "log delays", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        for t in ["0", "1", "10", "100", "1,000"] {
            assert!(svg.lines().any(|l| l.trim() == t), "no tick {t}");
        }
    }

    #[test]
    fn evenly_spaced_delays_keep_a_linear_axis() {
        let us = [0.0, 20.0, 40.0, 60.0, 80.0, 100.0];
        let xs = DelayScale::new(&us, 640.0, 14.0);
        assert!(xs.zero_at.is_none());
        let labels: Vec<&str> = xs.axis.major.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            labels,
            [
                "0", "10", "20", "30", "40", "50", "60", "70", "80", "90", "100"
            ]
        );
    }

    #[test]
    fn nothing_to_draw_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.png");
        let e = validation_chart(&[], "empty", &path).unwrap_err();
        assert!(matches!(e, ChartError::Empty { .. }), "{e:?}");
        assert!(!path.exists());
        let e = validation_chart(&sample(), "t", &dir.path().join("x.gif")).unwrap_err();
        assert!(matches!(e, ChartError::UnsupportedFormat { .. }), "{e:?}");
    }
}
