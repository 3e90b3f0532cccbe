//! Leak-rate charts: one bar per variant, and rate against a swept parameter.
//!
//! Both use a logarithmic rate axis, labelled at every decade, because the
//! rates of interest span many decades (a buggy variant at 2e-5, a fixed one
//! at 0); an axis with fewer than two decades on it is labelled at 1, 2 and
//! 5 times each power of ten instead, so that values can still be read. A
//! zero count has no place on a log axis; it is drawn as a bound, not as a
//! rate: a cap with an arrow pointing down at the upper bound of its Wilson
//! 95% interval (about 4/runs). In the bar chart it is labelled
//! `0 leaks (< bound)`, with no bar under it; in the sweep chart the legend
//! says `0 leaks: 95% upper bound`, and lines to it are dashed. A reader
//! sees both that no leak was observed and how strong that evidence is, and
//! no zero looks like a measured rate.

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    ChartError, DrawResult, Paint, fmt_log_tick, fmt_rate, font, render, text_width, thousands,
    trim_zeros, variant_colour,
};

/// One bar of [`leak_rate_chart`]: the leak count of one variant under one
/// strategy, with its Wilson 95% interval.
#[derive(Clone, Debug, PartialEq)]
pub struct RateBar {
    pub variant: String,
    pub strategy: String,
    pub runs: u64,
    pub leaks: u64,
    pub rate: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// One point of [`sweep_chart`]: a variant's leak count at one value of the
/// swept parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepPoint {
    pub variant: String,
    pub x: f64,
    pub runs: u64,
    pub leaks: u64,
    pub rate: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// The legend's name for a sweep point without leaks, drawn as a bound.
pub const ZERO_LABEL: &str = "0 leaks: 95% upper bound";

/// The label of a variant without leaks in the bar chart: the count and the
/// bound the rate is below, `0 leaks (< 2.6e-5)`.
pub fn zero_label(ci_high: f64) -> String {
    format!("0 leaks (< {})", fmt_rate(ci_high))
}

pub(crate) const HEADER_H: i32 = 84;
const LEGEND_W: i32 = 290;
pub(crate) const GREY: RGBColor = RGBColor(90, 90, 90);
pub(crate) const GRID_BOLD: RGBColor = RGBColor(205, 205, 205);
pub(crate) const GRID_LIGHT: RGBColor = RGBColor(238, 238, 238);

/// Draws the leak rate of each variant as a bar on a log scale, with Wilson
/// 95% whiskers; bars of several strategies are grouped by strategy. A
/// variant with no leak gets no bar: a cap at its interval's upper bound with
/// an arrow pointing down, labelled with [`zero_label`]. Writes PNG or SVG,
/// chosen by the extension of `path`.
pub fn leak_rate_chart(bars: &[RateBar], title: &str, path: &Path) -> Result<(), ChartError> {
    if bars.iter().all(|b| b.runs == 0) {
        return Err(ChartError::Empty {
            path: path.to_path_buf(),
            what: "no variant has any runs".into(),
        });
    }
    let layout = BarLayout::new(bars);
    let width = (LEGEND_W as u32 + 120 + 130 * layout.slots.ceil() as u32).clamp(960, 2600);
    render(
        path,
        (width, 660),
        &LeakRate {
            bars,
            title,
            layout,
        },
    )
}

/// Draws one line per variant of the leak rate against a swept parameter
/// (`param`, measured in `unit`), with a shaded Wilson 95% band, on a log
/// rate axis. A point with no leak is a bound, as in [`leak_rate_chart`]:
/// a cap at its interval's upper bound with an arrow pointing down, named
/// [`ZERO_LABEL`] in the legend. Writes PNG or SVG, chosen by the extension
/// of `path`.
pub fn sweep_chart(
    points: &[SweepPoint],
    param: &str,
    unit: &str,
    title: &str,
    path: &Path,
) -> Result<(), ChartError> {
    sweep_chart_scaled(points, param, unit, title, false, path)
}

/// [`sweep_chart`] with a choice of x axis: with `log_x` the parameter axis
/// is logarithmic (for log-spaced sweeps) and points at x <= 0 are left out.
pub fn sweep_chart_scaled(
    points: &[SweepPoint],
    param: &str,
    unit: &str,
    title: &str,
    log_x: bool,
    path: &Path,
) -> Result<(), ChartError> {
    let usable = points
        .iter()
        .filter(|p| p.runs > 0 && p.x.is_finite() && (!log_x || p.x > 0.0))
        .count();
    if usable == 0 {
        return Err(ChartError::Empty {
            path: path.to_path_buf(),
            what: "no sweep point has any runs".into(),
        });
    }
    render(
        path,
        (1100, 640),
        &Sweep {
            points,
            param,
            unit,
            title,
            log_x,
        },
    )
}

/// The height a bar or point is drawn at: the rate, or for zero leaks the
/// interval's upper bound. `None` when there is nothing to draw.
pub(crate) fn shown(runs: u64, leaks: u64, rate: f64, ci_high: f64) -> Option<f64> {
    let v = if leaks == 0 { ci_high } else { rate };
    (runs > 0 && v.is_finite() && v > 0.0).then_some(v)
}

/// A log axis range covering `lo..hi` with `head_px` pixels free above `hi`
/// on a plot `plot_px` high, and some room below `lo` so the lowest bar
/// has a visible height.
fn log_range(lo: f64, hi: f64, plot_px: f64, head_px: f64) -> (f64, f64) {
    let lo_log = (lo.log10() - 0.3).floor();
    let hi_log = hi.log10().max(lo_log + 1.0);
    let top = hi_log + (hi_log - lo_log) * head_px / (plot_px - head_px).max(1.0);
    (10f64.powf(lo_log), 10f64.powf(top))
}

/// Every power of ten from `lo` to `hi`, both included (a bound that is a
/// power of ten up to rounding counts as one).
pub(crate) fn decade_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let first = (lo.log10() - 1e-9).ceil() as i32;
    let last = (hi.log10() + 1e-9).floor() as i32;
    (first..=last).map(|e| 10f64.powi(e)).collect()
}

/// The labelled values of a log rate axis from `lo` to `hi`: every power of
/// ten; on an axis with fewer than two of them, 1, 2 and 5 times each power
/// of ten; on one too short for two of those, every whole multiple.
pub(crate) fn rate_labels(lo: f64, hi: f64) -> Vec<f64> {
    let decades = decade_ticks(lo, hi);
    if decades.len() >= 2 {
        return decades;
    }
    let multiples = |ms: &[u32]| {
        let mut out = Vec::new();
        let mut e = (lo.log10() - 1e-9).floor() as i32;
        while 10f64.powi(e) <= hi * (1.0 + 1e-9) {
            for &m in ms {
                let v = f64::from(m) * 10f64.powi(e);
                if v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9) {
                    out.push(v);
                }
            }
            e += 1;
        }
        out
    };
    let labels = multiples(&[1, 2, 5]);
    if labels.len() >= 2 {
        labels
    } else {
        multiples(&[1, 2, 3, 4, 5, 6, 7, 8, 9])
    }
}

/// A log rate axis from `lo` to `hi` with bold grid lines and labels at
/// [`rate_labels`], and light lines at the other 2..9 times each decade
/// when it spans few enough decades for them to stay apart.
fn rate_axis(lo: f64, hi: f64) -> impl Ranged<ValueType = f64, FormatOption = DefaultFormatting> {
    let bold = rate_labels(lo, hi);
    let mut light = Vec::new();
    if (hi / lo).log10() <= 5.0 {
        let mut e = lo.log10().floor() as i32;
        while 10f64.powi(e) <= hi {
            for m in 2..=9 {
                let v = f64::from(m) * 10f64.powi(e);
                let labelled = bold.iter().any(|b| (b / v - 1.0).abs() < 1e-9);
                if v > lo && v < hi && !labelled {
                    light.push(v);
                }
            }
            e += 1;
        }
    }
    (lo..hi)
        .log_scale()
        .with_key_points(bold)
        .with_light_points(light)
}

/// Distinct values in order of first appearance.
fn ordered<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for s in items {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

pub(crate) fn text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: &str,
    at: (i32, i32),
    style: &TextStyle<'_>,
    h: HPos,
    v: VPos,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    area.draw(&Text::new(s.to_string(), at, style.pos(Pos::new(h, v))))?;
    Ok(())
}

/// The largest font size not above `size` (and not below `min`) at which
/// `s` fits in `width` pixels.
fn fit<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: &str,
    width: i32,
    size: f64,
    min: f64,
) -> Result<f64, Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let mut sz = size;
    while sz > min {
        let (w, _) = area.estimate_text_size(s, &font(sz))?;
        if (w as i32) <= width {
            break;
        }
        sz -= 1.0;
    }
    Ok(sz)
}

/// Dash segments along `a`–`b`: `dash` pixels on, repeating every
/// `period` pixels, the first starting `phase` pixels in.
pub(crate) fn dashes(
    a: (i32, i32),
    b: (i32, i32),
    dash: f64,
    period: f64,
    phase: f64,
) -> Vec<[(i32, i32); 2]> {
    let (dx, dy) = (f64::from(b.0 - a.0), f64::from(b.1 - a.1));
    let len = dx.hypot(dy);
    if len < 1.0 {
        return Vec::new();
    }
    let at = |t: f64| {
        let t = t.clamp(0.0, len) / len;
        (a.0 + (dx * t).round() as i32, a.1 + (dy * t).round() as i32)
    };
    let mut out = Vec::new();
    let mut t = phase % period - period;
    while t < len {
        if t + dash > 0.0 {
            out.push([at(t), at(t + dash)]);
        }
        t += period;
    }
    out
}

/// A vertical interval whisker in pixels: a line with caps `half` wide.
pub(crate) fn whisker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    x: i32,
    y_low: i32,
    y_high: i32,
    half: i32,
    colour: RGBColor,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let st = colour.stroke_width(2);
    area.draw(&PathElement::new(vec![(x, y_low), (x, y_high)], st))?;
    for y in [y_low, y_high] {
        area.draw(&PathElement::new(vec![(x - half, y), (x + half, y)], st))?;
    }
    Ok(())
}

/// Title and subtitle across the top of the picture.
pub(crate) fn header<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let w = root.dim_in_pixel().0 as i32;
    let t = fit(root, title, w - 40, 24.0, 14.0)?;
    text(root, title, (w / 2, 14), &font(t), HPos::Center, VPos::Top)?;
    let s = fit(root, subtitle, w - 40, 15.0, 10.0)?;
    text(
        root,
        subtitle,
        (w / 2, 50),
        &font(s).color(&GREY),
        HPos::Center,
        VPos::Top,
    )?;
    Ok(())
}

/// Legend entries drawn in a panel right of the plot.
enum Swatch {
    Solid(RGBColor),
    Bound(RGBColor),
    Whisker,
    Line(RGBColor),
    Band(RGBColor),
    Heading,
}

fn legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    x: i32,
    mut y: i32,
    entries: &[(Swatch, Vec<String>)],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let style = font(14.0);
    for (swatch, lines) in entries {
        let (sx, sy) = (x, y + 1);
        match swatch {
            Swatch::Solid(c) => {
                root.draw(&Rectangle::new([(sx, sy), (sx + 22, sy + 14)], c.filled()))?;
            }
            Swatch::Bound(c) => bound_marker(root, (sx + 11, sy), 16, 16, *c)?,
            Swatch::Whisker => {
                let st = BLACK.stroke_width(2);
                root.draw(&PathElement::new(
                    vec![(sx + 11, sy - 2), (sx + 11, sy + 16)],
                    st,
                ))?;
                root.draw(&PathElement::new(
                    vec![(sx + 5, sy - 2), (sx + 17, sy - 2)],
                    st,
                ))?;
                root.draw(&PathElement::new(
                    vec![(sx + 5, sy + 16), (sx + 17, sy + 16)],
                    st,
                ))?;
            }
            Swatch::Line(c) => {
                root.draw(&PathElement::new(
                    vec![(sx, sy + 7), (sx + 22, sy + 7)],
                    c.stroke_width(3),
                ))?;
                root.draw(&Circle::new((sx + 11, sy + 7), 4, c.filled()))?;
            }
            Swatch::Band(c) => {
                root.draw(&Rectangle::new(
                    [(sx, sy), (sx + 22, sy + 14)],
                    c.mix(0.2).filled(),
                ))?;
                root.draw(&PathElement::new(
                    vec![(sx, sy + 7), (sx + 22, sy + 7)],
                    c.stroke_width(2),
                ))?;
            }
            Swatch::Heading => {}
        }
        let tx = if matches!(swatch, Swatch::Heading) {
            x
        } else {
            x + 32
        };
        for line in lines {
            text(root, line, (tx, y), &style, HPos::Left, VPos::Top)?;
            y += 18;
        }
        y += 8;
    }
    Ok(())
}

/// A bound: a cap `width` pixels wide at `(x, y)` and an arrow `length`
/// pixels long pointing down from its middle, "the rate is below this".
pub(crate) fn bound_marker<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    width: i32,
    length: i32,
    c: RGBColor,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let half = width / 2;
    root.draw(&PathElement::new(
        vec![(x - half, y), (x + half, y)],
        c.stroke_width(3),
    ))?;
    let head = (length / 3).clamp(5, 9);
    let tip = y + length;
    root.draw(&PathElement::new(
        vec![(x, y), (x, tip - head)],
        c.stroke_width(2),
    ))?;
    root.draw(&Polygon::new(
        vec![
            (x - head * 2 / 3, tip - head),
            (x + head * 2 / 3, tip - head),
            (x, tip),
        ],
        c.filled(),
    ))?;
    Ok(())
}

fn runs_phrase(runs: impl Iterator<Item = u64>, per: &str) -> String {
    let runs: Vec<u64> = runs.filter(|&r| r > 0).collect();
    let lo = runs.iter().copied().min().unwrap_or(0);
    let hi = runs.iter().copied().max().unwrap_or(0);
    if lo == hi {
        format!("{} runs per {per}", thousands(lo))
    } else {
        format!("{}–{} runs per {per}", thousands(lo), thousands(hi))
    }
}

/// Where each bar goes: bars of one strategy side by side, strategies apart.
struct BarLayout {
    /// Centre of each bar, in slot units.
    centres: Vec<f64>,
    /// (strategy, first slot, last slot) per group.
    groups: Vec<(String, f64, f64)>,
    slots: f64,
}

impl BarLayout {
    const GAP: f64 = 0.7;

    fn new(bars: &[RateBar]) -> Self {
        let strategies = ordered(bars.iter().map(|b| b.strategy.as_str()));
        let mut centres = vec![0.0; bars.len()];
        let mut groups = Vec::new();
        let mut x = 0.0;
        for (g, s) in strategies.iter().enumerate() {
            if g > 0 {
                x += Self::GAP;
            }
            let start = x;
            for (i, b) in bars.iter().enumerate() {
                if b.strategy == *s {
                    centres[i] = x + 0.5;
                    x += 1.0;
                }
            }
            groups.push((s.to_string(), start, x));
        }
        BarLayout {
            centres,
            groups,
            slots: x,
        }
    }
}

struct LeakRate<'a> {
    bars: &'a [RateBar],
    title: &'a str,
    layout: BarLayout,
}

impl Paint for LeakRate<'_> {
    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let (w, h) = root.dim_in_pixel();
        let (w, h) = (w as i32, h as i32);
        let bars = self.bars;
        let strategies = ordered(bars.iter().map(|b| b.strategy.as_str()));
        let variants = ordered(bars.iter().map(|b| b.variant.as_str()));
        let grouped = strategies.len() > 1;
        let colour = |v: &str| {
            let i = variants.iter().position(|x| *x == v).unwrap_or(0);
            variant_colour(v, i)
        };

        let mut subtitle = runs_phrase(bars.iter().map(|b| b.runs), "bar");
        if grouped {
            subtitle += &format!(" · strategies: {}", strategies.join(", "));
        } else {
            subtitle += &format!(" · strategy: {}", strategies[0]);
        }
        subtitle += " · whiskers: Wilson 95% interval";
        header(root, self.title, &subtitle)?;

        // The rate axis.
        let mut lo = f64::INFINITY;
        let mut hi: f64 = 0.0;
        for b in bars {
            let Some(v) = shown(b.runs, b.leaks, b.rate, b.ci_high) else {
                continue;
            };
            lo = lo.min(v);
            hi = hi.max(v).max(b.ci_high);
            if b.leaks > 0 && b.ci_low > 0.0 {
                lo = lo.min(b.ci_low);
            }
        }
        if !lo.is_finite() || hi <= 0.0 {
            return Err("no bar has a positive rate or upper bound".into());
        }
        let x_area = if grouped { 78 } else { 56 };
        let plot_px = (h - HEADER_H - x_area - 20) as f64;
        let (ymin, ymax) = log_range(lo, hi, plot_px, 66.0);

        let body = root.margin(HEADER_H as u32, 10, 10, LEGEND_W as u32);
        let mut chart = ChartBuilder::on(&body)
            .x_label_area_size(x_area)
            .y_label_area_size(78)
            .build_cartesian_2d(0f64..self.layout.slots, rate_axis(ymin, ymax))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_label_formatter(&|v| fmt_log_tick(*v))
            .y_desc("leak rate (leaks per run, log scale)")
            .x_desc(if grouped {
                "variant, grouped by strategy"
            } else {
                "variant"
            })
            .axis_desc_style(font(16.0))
            .label_style(font(14.0))
            .bold_line_style(GRID_BOLD)
            .light_line_style(GRID_LIGHT)
            .draw()?;

        let plot = chart.plotting_area();
        let px = |x: f64, y: f64| chart.backend_coord(&(x, y));
        let slot_px = (px(1.0, ymin).0 - px(0.0, ymin).0).max(1);
        let half = 0.36;
        let mut any_zero = false;
        for (i, b) in bars.iter().enumerate() {
            let c = self.layout.centres[i];
            let col = colour(&b.variant);
            let (l, r) = (c - half, c + half);
            let label_w = slot_px - 6;
            let Some(top) = shown(b.runs, b.leaks, b.rate, b.ci_high) else {
                let (x, y) = px(c, ymin);
                let sz = fit(root, "no runs", label_w, 13.0, 9.0)?;
                text(
                    root,
                    "no runs",
                    (x, y - 8),
                    &font(sz),
                    HPos::Center,
                    VPos::Bottom,
                )?;
                continue;
            };
            let lines: [String; 3];
            let whisker_top;
            if b.leaks > 0 {
                plot.draw(&Rectangle::new(
                    [(l, ymin), (r, top)],
                    col.mix(0.85).filled(),
                ))?;
                let low = if b.ci_low > 0.0 { b.ci_low } else { ymin };
                let high = b.ci_high.max(top);
                let (wx, wlo) = px(c, low.max(ymin));
                let (_, whi) = px(c, high);
                whisker(root, wx, wlo, whi, (slot_px / 10).clamp(5, 12), BLACK)?;
                whisker_top = high;
                let leaks = if b.leaks == 1 { "leak" } else { "leaks" };
                lines = [
                    fmt_rate(b.rate),
                    format!("{} {leaks}", thousands(b.leaks)),
                    format!("in {} runs", thousands(b.runs)),
                ];
            } else {
                // No bar: nothing was measured. A cap at the bound with an
                // arrow down says the rate is somewhere below it.
                any_zero = true;
                let (x0, y) = px(l, top);
                let (x1, _) = px(r, top);
                let (x, base) = px(c, ymin);
                let cap = ((x1 - x0) * 3 / 5).clamp(14, 90);
                let length = ((base - y) / 2).clamp(8, 40);
                bound_marker(root, (x, y), cap, length, col)?;
                whisker_top = top;
                lines = [
                    zero_label(top),
                    "95% upper bound".to_string(),
                    format!("in {} runs", thousands(b.runs)),
                ];
            }
            // Labels above the bar, last line lowest.
            let (x, y) = px(c, whisker_top);
            let mut ly = y - 10;
            for (k, line) in lines.iter().enumerate().rev() {
                let base = if k == 0 { 15.0 } else { 13.0 };
                let sz = fit(root, line, label_w, base, 8.0)?;
                let st = if k == 0 {
                    font(sz)
                } else {
                    font(sz).color(&GREY)
                };
                text(root, line, (x, ly), &st, HPos::Center, VPos::Bottom)?;
                ly -= sz as i32 + 3;
            }
            // The bar's name under the axis.
            let (x, y) = px(c, ymin);
            let name = &b.variant;
            let sz = fit(root, name, label_w, 15.0, 8.0)?;
            text(root, name, (x, y + 8), &font(sz), HPos::Center, VPos::Top)?;
        }
        if grouped {
            for (s, a, z) in &self.layout.groups {
                let (xa, y) = px(*a + 0.08, ymin);
                let (xz, _) = px(*z - 0.08, ymin);
                let y = y + 30;
                root.draw(&PathElement::new(
                    vec![(xa, y - 4), (xa, y), (xz, y), (xz, y - 4)],
                    GREY.stroke_width(1),
                ))?;
                let sz = fit(root, s, xz - xa, 15.0, 8.0)?;
                text(
                    root,
                    s,
                    ((xa + xz) / 2, y + 3),
                    &font(sz),
                    HPos::Center,
                    VPos::Top,
                )?;
            }
        }

        // Legend.
        let mut entries = Vec::new();
        if grouped {
            entries.push((Swatch::Heading, vec!["Variants".to_string()]));
            for v in &variants {
                entries.push((Swatch::Solid(colour(v)), vec![v.to_string()]));
            }
        }
        entries.push((Swatch::Heading, vec!["How to read".to_string()]));
        let sample = if grouped || variants.len() > 1 {
            GREY
        } else {
            colour(variants[0])
        };
        entries.push((
            Swatch::Solid(sample),
            vec![
                "bar: observed leak rate".into(),
                "(leaking runs / runs)".into(),
            ],
        ));
        entries.push((
            Swatch::Whisker,
            vec!["whisker: Wilson 95%".into(), "confidence interval".into()],
        ));
        if any_zero {
            entries.push((
                Swatch::Bound(sample),
                vec![
                    "no bar, cap and arrow: no".into(),
                    "leak seen; the rate is below".into(),
                    "the interval's upper bound".into(),
                    "(about 4 / runs)".into(),
                ],
            ));
        }
        let lx = w - LEGEND_W + 24;
        legend(root, lx, HEADER_H + 16, &entries)?;
        Ok(())
    }
}

struct Sweep<'a> {
    points: &'a [SweepPoint],
    param: &'a str,
    unit: &'a str,
    title: &'a str,
    log_x: bool,
}

/// A linear f64 axis whose ticks are either plotters' own or given ones
/// (log10 positions on a log-transformed axis).
struct Ticked {
    inner: RangedCoordf64,
    ticks: Option<Vec<f64>>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        match &self.ticks {
            Some(t) => t.clone(),
            None => self.inner.key_points(hint),
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

/// Width and arrow length, in pixels, of the bound drawn for a sweep point
/// without leaks (the legend's swatch is 16 by 16).
pub(crate) const BOUND_CAP: i32 = 16;
pub(crate) const BOUND_ARROW: i32 = 18;

/// Width of the sweep chart's y label area, in pixels.
const Y_LABEL_AREA: i32 = 78;
/// Font size of axis tick labels.
const TICK_SIZE: f64 = 14.0;

/// Width in pixels of the plot of a sweep chart `width` pixels wide: the
/// picture less its 10 px left margin, the rate axis's labels and the legend.
fn sweep_plot_width(width: i32) -> i32 {
    width - 10 - Y_LABEL_AREA - LEGEND_W
}

/// The x range of a sweep chart in axis units (log10 of the value on a log
/// axis) for the swept values `xs`: their span and 4% more on each side;
/// around a single value, half a decade on each side on a log axis, half
/// the value on each side on a linear one (1 on each side of zero).
fn sweep_x_range(xs: &[f64], log_x: bool) -> (f64, f64) {
    let fx = |x: f64| if log_x { x.log10() } else { x };
    let (lo, hi) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(fx(x)), b.max(fx(x)))
        });
    if lo < hi {
        let d = (hi - lo) * 0.04;
        (lo - d, hi + d)
    } else if log_x {
        (lo - 0.5, hi + 0.5)
    } else {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() / 2.0 };
        (lo - d, hi + d)
    }
}

/// The swept values `xs` (ascending, above zero) to tick on a log axis
/// spanning `lo..hi` (log10 units) over `plot_px` pixels: all of them if
/// their labels fit side by side, else every k-th from the first, with the
/// smallest k that keeps the labels apart. A log sweep spaces its values
/// evenly on the axis, so the ticks stay evenly spaced.
fn sweep_log_ticks(xs: &[f64], (lo, hi): (f64, f64), plot_px: i32) -> Vec<f64> {
    const GAP: i32 = 10;
    let spans: Vec<(i32, i32)> = xs
        .iter()
        .map(|&x| {
            let c = ((x.log10() - lo) / (hi - lo) * f64::from(plot_px)).round() as i32;
            let w = text_width(&fmt_sig(x), TICK_SIZE);
            (c - w / 2, c + w - w / 2)
        })
        .collect();
    (1..=xs.len())
        .map(|k| (0..xs.len()).step_by(k).collect::<Vec<usize>>())
        .find(|chosen| {
            chosen
                .windows(2)
                .all(|p| spans[p[0]].1 + GAP <= spans[p[1]].0)
        })
        .map(|chosen| chosen.into_iter().map(|i| xs[i]).collect())
        .unwrap_or_default()
}

/// Tick positions for a log axis from `lo` to `hi`, as log10 values: the
/// 1-2-5 values inside the range, or every whole multiple of a power of ten
/// when the range spans under two decades.
pub(crate) fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let steps: &[f64] = if hi / lo < 100.0 {
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    } else {
        &[1.0, 2.0, 5.0]
    };
    let mut out = Vec::new();
    let mut e = lo.log10().floor() as i32;
    while 10f64.powi(e) <= hi {
        for m in steps {
            let v = m * 10f64.powi(e);
            if v >= lo && v <= hi {
                out.push(v.log10());
            }
        }
        e += 1;
    }
    out
}

/// A value for a log-axis tick: three significant digits, no trailing zeros.
pub(crate) fn fmt_sig(v: f64) -> String {
    let decimals = (2 - v.abs().max(1e-300).log10().floor() as i32).clamp(0, 15) as usize;
    trim_zeros(&format!("{v:.decimals$}"))
}

/// Compact number for an axis tick: no trailing zeros, precision from the
/// axis span.
pub(crate) fn fmt_tick(v: f64, span: f64) -> String {
    let decimals = (2 - span.abs().max(1e-12).log10().floor() as i32).clamp(0, 9) as usize;
    let s = trim_zeros(&format!("{v:.decimals$}"));
    if s == "-0" { "0".into() } else { s }
}

impl Paint for Sweep<'_> {
    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let (w, h) = root.dim_in_pixel();
        let (w, h) = (w as i32, h as i32);
        let points: Vec<&SweepPoint> = self
            .points
            .iter()
            .filter(|p| p.runs > 0 && p.x.is_finite() && (!self.log_x || p.x > 0.0))
            .collect();
        // Plotted position of a parameter value: log10 of it on a log axis.
        let fx = |x: f64| if self.log_x { x.log10() } else { x };
        let variants = ordered(points.iter().map(|p| p.variant.as_str()));
        let colour = |v: &str| {
            let i = variants.iter().position(|x| *x == v).unwrap_or(0);
            variant_colour(v, i)
        };
        let mut axis_name = if self.unit.is_empty() {
            self.param.to_string()
        } else {
            format!("{} ({})", self.param, self.unit)
        };
        if self.log_x {
            axis_name.push_str(", log scale");
        }
        let subtitle = format!(
            "leak rate against {} · {} · band: Wilson 95% interval",
            self.param,
            runs_phrase(points.iter().map(|p| p.runs), "point")
        );
        header(root, self.title, &subtitle)?;

        let mut xs: Vec<f64> = points.iter().map(|p| p.x).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        let (xmin, xmax) = sweep_x_range(&xs, self.log_x);
        let ticks = if self.log_x {
            sweep_log_ticks(&xs, (xmin, xmax), sweep_plot_width(w))
        } else {
            Vec::new()
        };
        let mut lo = f64::INFINITY;
        let mut hi: f64 = 0.0;
        for p in &points {
            if let Some(v) = shown(p.runs, p.leaks, p.rate, p.ci_high) {
                lo = lo.min(v);
                hi = hi.max(v).max(p.ci_high);
            }
            if p.leaks > 0 && p.ci_low > 0.0 {
                lo = lo.min(p.ci_low);
            }
        }
        if !lo.is_finite() || hi <= 0.0 {
            return Err("no point has a positive rate or upper bound".into());
        }
        // Not snapped to a decade: a line chart has no bar base to show.
        let (lo_log, hi_log) = (lo.log10(), hi.log10());
        let span = (hi_log - lo_log).max(1.0);
        let (ymin, ymax) = (
            10f64.powf(hi_log - span - 0.08 * span),
            10f64.powf(hi_log + 0.08 * span),
        );
        let _ = h;

        let body = root.margin(HEADER_H as u32, 10, 10, LEGEND_W as u32);
        // Linear ticks are plotters' own; log ticks are swept values.
        let x_axis = Ticked {
            inner: (xmin..xmax).into(),
            ticks: self
                .log_x
                .then(|| ticks.iter().map(|x| x.log10()).collect()),
        };
        let mut chart = ChartBuilder::on(&body)
            .x_label_area_size(60)
            .y_label_area_size(Y_LABEL_AREA)
            .build_cartesian_2d(x_axis, rate_axis(ymin, ymax))?;
        let span = xmax - xmin;
        let x_label = |v: &f64| {
            if self.log_x {
                // The swept value itself, not its image through log10.
                let x = ticks
                    .iter()
                    .copied()
                    .min_by(|a, b| (a.log10() - v).abs().total_cmp(&(b.log10() - v).abs()))
                    .unwrap_or(10f64.powf(*v));
                fmt_sig(x)
            } else {
                fmt_tick(*v, span)
            }
        };
        chart
            .configure_mesh()
            .x_labels(10)
            .max_light_lines(2)
            .x_label_formatter(&x_label)
            .y_label_formatter(&|v| fmt_log_tick(*v))
            .y_desc("leak rate (leaks per run, log scale)")
            .x_desc(axis_name.as_str())
            .axis_desc_style(font(16.0))
            .label_style(font(14.0))
            .bold_line_style(GRID_BOLD)
            .light_line_style(GRID_LIGHT)
            .draw()?;

        let mut series: Vec<(&str, Vec<&SweepPoint>)> = variants
            .iter()
            .map(|v| {
                let mut ps: Vec<&SweepPoint> =
                    points.iter().copied().filter(|p| p.variant == *v).collect();
                ps.sort_by(|a, b| a.x.total_cmp(&b.x));
                (*v, ps)
            })
            .collect();
        series.retain(|(_, ps)| !ps.is_empty());

        // Bands first, so lines and markers stay on top.
        for (v, ps) in &series {
            let col = colour(v);
            if ps.len() >= 2 {
                let mut poly: Vec<(f64, f64)> = ps
                    .iter()
                    .map(|p| (fx(p.x), p.ci_high.max(ymin).min(ymax)))
                    .collect();
                // A point without leaks has no lower bound on a log axis:
                // the band pinches to its upper bound there rather than
                // filling the plot down to the axis.
                for p in ps.iter().rev() {
                    let low = if p.leaks > 0 && p.ci_low > 0.0 {
                        p.ci_low
                    } else {
                        p.ci_high
                    };
                    poly.push((fx(p.x), low.max(ymin).min(ymax)));
                }
                chart.draw_series(std::iter::once(Polygon::new(poly, col.mix(0.18).filled())))?;
            }
        }
        // Upper bounds of several variants often coincide (same runs, no
        // leak): their dashes interleave and their markers step aside, so
        // every variant stays visible.
        let n_series = series.len() as i32;
        let mut any_zero = false;
        for (k, (v, ps)) in series.iter().enumerate() {
            let col = colour(v);
            let k = k as i32;
            let dodge = (2 * k - (n_series - 1)) * 4;
            let line: Vec<((i32, i32), bool)> = ps
                .iter()
                .filter_map(|p| {
                    shown(p.runs, p.leaks, p.rate, p.ci_high)
                        .map(|y| (chart.backend_coord(&(fx(p.x), y)), p.leaks > 0))
                })
                .collect();
            // Solid between measured rates; dashed where a point is only
            // an upper bound.
            for pair in line.windows(2) {
                let ((a, a_measured), (b, b_measured)) = (pair[0], pair[1]);
                if a_measured && b_measured {
                    root.draw(&PathElement::new(vec![a, b], col.stroke_width(3)))?;
                } else {
                    for d in dashes(a, b, 7.0, 7.0 * n_series.max(2) as f64, 7.0 * k as f64) {
                        root.draw(&PathElement::new(d.to_vec(), col.stroke_width(3)))?;
                    }
                }
            }
            for p in ps {
                let Some(y) = shown(p.runs, p.leaks, p.rate, p.ci_high) else {
                    continue;
                };
                if ps.len() == 1 && p.leaks > 0 {
                    let (x, lo_px) = chart.backend_coord(&(fx(p.x), p.ci_low.max(ymin)));
                    let (_, hi_px) = chart.backend_coord(&(fx(p.x), p.ci_high.max(y)));
                    whisker(root, x, lo_px, hi_px, 6, col)?;
                }
                let (x, y) = chart.backend_coord(&(fx(p.x), y));
                if p.leaks == 0 {
                    // Not a measured point: a cap at the bound with an
                    // arrow down, as the bar chart draws a zero.
                    any_zero = true;
                    bound_marker(root, (x + dodge, y), BOUND_CAP, BOUND_ARROW, col)?;
                } else {
                    root.draw(&Circle::new((x, y), 5, col.filled()))?;
                }
            }
        }

        let mut entries = vec![(Swatch::Heading, vec!["Variants".to_string()])];
        for (v, _) in &series {
            entries.push((Swatch::Line(colour(v)), vec![v.to_string()]));
        }
        entries.push((Swatch::Heading, vec!["How to read".to_string()]));
        entries.push((
            Swatch::Band(GREY),
            vec!["band: Wilson 95%".into(), "confidence interval".into()],
        ));
        if any_zero {
            entries.push((
                Swatch::Bound(GREY),
                vec![
                    ZERO_LABEL.into(),
                    "cap and arrow: no leak seen;".into(),
                    "the rate is below the cap".into(),
                    "(about 4 / runs); lines to".into(),
                    "it are dashed".into(),
                ],
            ));
        }
        legend(root, w - LEGEND_W + 24, HEADER_H + 16, &entries)?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::{Scratch, fmt_decade, svg};

    fn wilson(k: u64, n: u64) -> (f64, f64) {
        let (k, n) = (k as f64, n as f64);
        let z = 1.959_964;
        let p = k / n;
        let d = 1.0 + z * z / n;
        let c = (p + z * z / (2.0 * n)) / d;
        let m = z * ((p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt()) / d;
        ((c - m).max(0.0), (c + m).min(1.0))
    }

    fn bar(variant: &str, strategy: &str, runs: u64, leaks: u64) -> RateBar {
        let (ci_low, ci_high) = wilson(leaks, runs);
        RateBar {
            variant: variant.into(),
            strategy: strategy.into(),
            runs,
            leaks,
            rate: leaks as f64 / runs as f64,
            ci_low,
            ci_high,
        }
    }

    fn sample_bars() -> Vec<RateBar> {
        vec![
            bar("pre-4308", "timed", 100_000, 100_000),
            bar("pre-8095", "timed", 100_000, 3),
            bar("pr-8095", "timed", 100_000, 0),
            bar("priority-lock", "timed", 100_000, 0),
            bar("a115", "timed", 100_000, 0),
        ]
    }

    /// Width and height from a PNG's IHDR chunk.
    pub(crate) fn png_size(bytes: &[u8]) -> (u32, u32) {
        assert!(bytes.len() > 24, "too short for a PNG");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&bytes[12..16], b"IHDR", "first chunk is IHDR");
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        (be(&bytes[16..20]), be(&bytes[20..24]))
    }

    #[test]
    fn leak_rate_png_is_a_png() {
        let path = Scratch::new("leak_rate.png");
        leak_rate_chart(&sample_bars(), "Leak rate per variant", &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (w, h) = png_size(&bytes);
        assert!(w >= 900 && h >= 600, "{w}x{h}");
        // Nothing else was left in the directory: the temporary was renamed.
        let dir = path.parent().unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn leak_rate_svg_has_title_and_zero_marker() {
        let path = Scratch::new("leak_rate.svg");
        let title = "Sub-balancer leaks: switch to lower priority and back";
        leak_rate_chart(&sample_bars(), title, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(
            svg.starts_with("<svg") || svg.starts_with("<?xml"),
            "{}",
            &svg[..80]
        );
        assert!(svg.contains(title));
        assert!(svg.contains("leak rate (leaks per run, log scale)"));
        // Three zero-leak variants, each marked with its bound.
        assert_eq!(svg.matches("0 leaks (&lt; 3.8e-5)").count(), 3);
        assert!(svg.contains("100,000 runs per bar"));
        assert!(svg.contains("Wilson 95%"));
        for v in ["pre-4308", "pre-8095", "pr-8095", "priority-lock", "a115"] {
            assert!(svg.contains(v), "{v}");
        }
    }

    #[test]
    fn bars_of_several_strategies_are_grouped() {
        let mut bars = sample_bars();
        bars.truncate(3);
        bars.push(bar("pre-8095", "random", 20_000, 40));
        bars.push(bar("pr-8095", "random", 20_000, 0));
        let path = Scratch::new("grouped.svg");
        leak_rate_chart(&bars, "Grouped", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("grouped by strategy"));
        assert!(svg.contains("\ntimed\n"), "group label");
        assert!(svg.contains("20,000–100,000 runs per bar"));
        assert_eq!(svg.matches("0 leaks (&lt; ").count(), 2);
    }

    #[test]
    fn errors_name_the_file() {
        let e = leak_rate_chart(&sample_bars(), "t", Path::new("/tmp/x.gif")).unwrap_err();
        assert!(matches!(e, ChartError::UnsupportedFormat { .. }));
        let e = leak_rate_chart(&[], "t", Path::new("/tmp/empty.svg")).unwrap_err();
        assert!(e.to_string().contains("/tmp/empty.svg"), "{e}");
        let missing = Path::new("/nonexistent-dir-lbsim/chart.svg");
        let e = leak_rate_chart(&sample_bars(), "t", missing).unwrap_err();
        assert!(matches!(e, ChartError::Io { .. }), "{e:?}");
        assert!(
            e.to_string().contains("nonexistent-dir-lbsim/chart.svg"),
            "{e}"
        );
        let missing = Path::new("/nonexistent-dir-lbsim/chart.png");
        let e = leak_rate_chart(&sample_bars(), "t", missing).unwrap_err();
        assert!(
            e.to_string().contains("nonexistent-dir-lbsim/chart.png"),
            "{e}"
        );
    }

    fn sample_sweep() -> Vec<SweepPoint> {
        let mut pts = Vec::new();
        for (i, x) in [0.0, 0.25, 0.5, 1.0, 2.0].iter().enumerate() {
            for (v, k) in [("pre-8095", [0u64, 2, 9, 30, 80][i]), ("pr-8095", 0)] {
                let (ci_low, ci_high) = wilson(k, 50_000);
                pts.push(SweepPoint {
                    variant: v.into(),
                    x: *x,
                    runs: 50_000,
                    leaks: k,
                    rate: k as f64 / 50_000.0,
                    ci_low,
                    ci_high,
                });
            }
        }
        pts
    }

    #[test]
    fn sweep_png_and_svg() {
        let pts = sample_sweep();
        let png = Scratch::new("sweep.png");
        sweep_chart(&pts, "pause probability", "per step", "Sweep", &png).unwrap();
        let (w, h) = png_size(&std::fs::read(&png).unwrap());
        assert_eq!((w, h), (1100, 640));
        let svg_path = Scratch::new("sweep.svg");
        let title = "Leak rate against the pause probability";
        sweep_chart(&pts, "pause probability", "per step", title, &svg_path).unwrap();
        let svg = std::fs::read_to_string(&svg_path).unwrap();
        assert!(svg.contains(title));
        assert!(svg.contains("pause probability (per step)"));
        assert!(svg.contains(ZERO_LABEL));
        assert!(svg.contains("50,000 runs per point"));
        // The bands are translucent polygons.
        assert!(svg.contains("<polygon"), "no band drawn");
    }

    #[test]
    fn sweep_of_one_point_draws() {
        let mut pts = sample_sweep();
        pts.truncate(1);
        let path = Scratch::new("sweep1.svg");
        sweep_chart(&pts, "gomaxprocs", "", "One point", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains(">gomaxprocs<") || svg.contains("gomaxprocs"));
        let e = sweep_chart(&[], "p", "", "none", &path).unwrap_err();
        assert!(matches!(e, ChartError::Empty { .. }));
    }

    #[test]
    fn log_ticks_are_round_values_inside_the_range() {
        let t: Vec<String> = log_ticks(0.0002, 0.002)
            .iter()
            .map(|v| fmt_sig(10f64.powf(*v)))
            .collect();
        assert_eq!(
            t,
            [
                "0.0002", "0.0003", "0.0004", "0.0005", "0.0006", "0.0007", "0.0008", "0.0009",
                "0.001", "0.002"
            ]
        );
        let t: Vec<String> = log_ticks(0.00009, 0.011)
            .iter()
            .map(|v| fmt_sig(10f64.powf(*v)))
            .collect();
        assert_eq!(
            t,
            [
                "0.0001", "0.0002", "0.0005", "0.001", "0.002", "0.005", "0.01"
            ]
        );
    }

    #[test]
    fn log_x_sweep_labels_its_axis_and_skips_zero() {
        let pts = sample_sweep();
        let path = Scratch::new("sweep_log.svg");
        sweep_chart_scaled(&pts, "pause probability", "per step", "Log", true, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("pause probability (per step), log scale"));
        assert!(
            ["0.5", "1", "2"]
                .iter()
                .all(|t| svg.lines().any(|l| l.trim() == *t)),
            "no 1-2-5 tick labels"
        );
        let zero: Vec<SweepPoint> = pts.into_iter().filter(|p| p.x == 0.0).collect();
        let e = sweep_chart_scaled(&zero, "p", "", "none", true, &path).unwrap_err();
        assert!(matches!(e, ChartError::Empty { .. }));
    }

    /// The flagship's result: a measured rate and a zero with the same runs.
    fn flagship_bars() -> Vec<RateBar> {
        vec![
            bar("pre-8095", "timed", 150_000, 2),
            bar("pr-8095", "timed", 150_000, 0),
        ]
    }

    fn colour_hex(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    /// Tick labels of the rate axis: right-aligned text left of the plot.
    fn y_labels(svg: &str) -> Vec<String> {
        svg::texts(svg)
            .into_iter()
            .filter(|t| t.anchor == "end" && t.x < 100)
            .map(|t| t.text)
            .collect()
    }

    #[test]
    fn a_zero_is_a_bound_marker_not_a_bar() {
        let path = Scratch::new("zero_bound.svg");
        leak_rate_chart(&flagship_bars(), "Flagship", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let (leaky, fixed) = (
            colour_hex(variant_colour("pre-8095", 0)),
            colour_hex(variant_colour("pr-8095", 1)),
        );
        let rects = svg::rects(&svg);
        // The measured rate is a bar from the axis up.
        let bar = rects
            .iter()
            .find(|r| r.fill == leaky)
            .expect("the measured bar");
        // The zero has no bar, filled or outlined.
        let zero_rects: Vec<_> = rects
            .iter()
            .filter(|r| r.fill == fixed || r.stroke == fixed)
            .collect();
        assert!(
            zero_rects.is_empty(),
            "a bar for zero leaks: {zero_rects:?}"
        );
        // It is a cap at its upper bound: a horizontal stroke in its colour,
        // much narrower than a bar, with an arrow pointing down below it.
        let paths = svg::paths(&svg);
        let cap = paths
            .iter()
            .find(|p| p.stroke == fixed && p.points.len() == 2 && p.points[0].1 == p.points[1].1)
            .expect("a horizontal cap at the bound");
        let cap_w = (cap.points[1].0 - cap.points[0].0).abs();
        assert!(
            cap_w > 10 && cap_w < bar.w,
            "cap {cap_w} px, bar {} px",
            bar.w
        );
        let y = cap.points[0].1;
        let head = paths
            .iter()
            .find(|p| p.fill == fixed && p.points.len() >= 3)
            .expect("an arrowhead");
        let tip = head.points.iter().map(|p| p.1).max().unwrap();
        assert!(
            tip > y + 10,
            "the arrow points down from the cap: {y} -> {tip}"
        );
        // The label says what it is: no leak, and the bound.
        let texts: Vec<String> = svg::texts(&svg).into_iter().map(|t| t.text).collect();
        let (_, hi) = wilson(0, 150_000);
        let label = format!("0 leaks (< {})", fmt_rate(hi));
        assert_eq!(label, "0 leaks (< 2.6e-5)");
        assert!(texts.contains(&label), "{texts:?}");
    }

    #[test]
    fn every_decade_of_the_rate_axis_is_labelled() {
        for (bars, want) in [
            (flagship_bars(), &["1e-6", "1e-5"][..]),
            (
                vec![
                    bar("pre-8095", "timed", 2_000, 1),
                    bar("pr-8095", "timed", 2_000, 0),
                ],
                &["1e-5", "1e-4", "1e-3"][..],
            ),
            (
                sample_bars(),
                &["1e-6", "1e-5", "1e-4", "1e-3", "0.01", "0.1", "1"][..],
            ),
        ] {
            let path = Scratch::new("decades.svg");
            leak_rate_chart(&bars, "Decades", &path).unwrap();
            let svg = std::fs::read_to_string(&path).unwrap();
            let labels = y_labels(&svg);
            for w in want {
                assert!(labels.iter().any(|l| l == w), "{w} missing from {labels:?}");
            }
        }
    }

    #[test]
    fn decades_inside_a_range_survive_rounding() {
        let d: Vec<String> = decade_ticks(1e-6, 10f64.powf(-4.3))
            .iter()
            .map(|v| fmt_decade(*v))
            .collect();
        assert_eq!(d, ["1e-6", "1e-5"]);
        let d: Vec<String> = decade_ticks(10f64.powf(-5.5), 1.0)
            .iter()
            .map(|v| fmt_decade(*v))
            .collect();
        assert_eq!(d, ["1e-5", "1e-4", "1e-3", "0.01", "0.1", "1"]);
    }

    #[test]
    fn one_value_gets_a_range_around_it() {
        assert_eq!(sweep_x_range(&[0.01], false), (0.005, 0.015));
        assert_eq!(sweep_x_range(&[4.0], false), (2.0, 6.0));
        assert_eq!(sweep_x_range(&[0.0], false), (-1.0, 1.0));
        assert_eq!(sweep_x_range(&[100.0], true), (1.5, 2.5));
        let (a, b) = sweep_x_range(&[1.0, 2.0], false);
        assert!((a - 0.96).abs() < 1e-12 && (b - 2.04).abs() < 1e-12);
    }

    #[test]
    fn log_ticks_thin_out_evenly_when_labels_would_touch() {
        crate::report::ensure_font(Path::new("x.svg")).unwrap();
        let xs: Vec<f64> = (0..25).map(|i| 1e-4 * 10f64.powf(i as f64 / 8.0)).collect();
        let range = sweep_x_range(&xs, true);
        // Wide enough: every value.
        let four = sweep_x_range(&xs[..4], true);
        assert_eq!(sweep_log_ticks(&xs[..4], four, 722), xs[..4].to_vec());
        let t = sweep_log_ticks(&xs, range, 722);
        assert!(t.len() >= 5 && t.len() < xs.len(), "{t:?}");
        assert_eq!(t[0], xs[0]);
        let k = xs.iter().position(|x| *x == t[1]).unwrap();
        for (i, x) in t.iter().enumerate() {
            assert_eq!(*x, xs[i * k], "every {k}-th value");
        }
        // A narrower plot keeps fewer.
        assert!(sweep_log_ticks(&xs, range, 300).len() < t.len());
        assert_eq!(sweep_log_ticks(&xs[..1], (-4.5, -3.5), 722), vec![xs[0]]);
    }

    /// `n` points log-spaced from `lo` to `hi`, the way `sweep --log` spaces
    /// them; every point of pre-8095 has leaks, so each has a dot.
    fn log_sweep(lo: f64, hi: f64, n: usize) -> Vec<SweepPoint> {
        (0..n)
            .flat_map(|i| {
                let t = i as f64 / (n - 1) as f64;
                let x = 10f64.powf(lo.log10() + t * (hi / lo).log10());
                [("pre-8095", 5), ("pr-8095", 0)].map(|(v, k)| {
                    let (ci_low, ci_high) = wilson(k, 10_000);
                    SweepPoint {
                        variant: v.into(),
                        x,
                        runs: 10_000,
                        leaks: k,
                        rate: k as f64 / 10_000.0,
                        ci_low,
                        ci_high,
                    }
                })
            })
            .collect()
    }

    /// The x axis's tick labels: centred text below the plot.
    fn x_labels(svg: &str) -> Vec<svg::SvgText> {
        let texts = svg::texts(svg);
        let axis_y = texts
            .iter()
            .filter(|t| t.text.starts_with("pause probability (per step)"))
            .map(|t| t.y)
            .next()
            .expect("axis name");
        texts
            .into_iter()
            .filter(|t| t.anchor == "middle" && t.y > 500 && t.y < axis_y)
            .collect()
    }

    #[test]
    fn log_sweep_ticks_sit_on_the_swept_values_without_overlap() {
        for (lo, hi, n) in [(0.0002, 0.002, 4), (1e-4, 0.1, 7), (1e-4, 0.1, 25)] {
            let pts = log_sweep(lo, hi, n);
            let path = Scratch::new("sweep_ticks.svg");
            sweep_chart_scaled(&pts, "pause probability", "per step", "Log", true, &path).unwrap();
            let svg = std::fs::read_to_string(&path).unwrap();
            let labels = x_labels(&svg);
            assert!(labels.len() >= 3.min(n), "{n} points: {labels:?}");
            // Each label names a swept value and sits on its dot.
            let dots: Vec<i32> = svg::circles(&svg)
                .iter()
                .filter(|c| c.fill == colour_hex(variant_colour("pre-8095", 0)) && c.r == 5)
                .map(|c| c.cx)
                .collect();
            assert_eq!(dots.len(), n, "one dot per point");
            let swept: Vec<String> = pts.iter().map(|p| fmt_sig(p.x)).collect();
            for l in &labels {
                assert!(swept.contains(&l.text), "{:?} is not a swept value", l.text);
                let i = swept.iter().position(|s| *s == l.text).unwrap() / 2;
                assert!(
                    (l.x - dots[i]).abs() <= 1,
                    "{} at x {} but its point at {}",
                    l.text,
                    l.x,
                    dots[i]
                );
            }
            // When their labels fit, every point is labelled.
            if n <= 7 {
                assert_eq!(labels.len(), n, "{labels:?}");
            }
            for pair in labels.windows(2) {
                let (a, b) = (pair[0].span(), pair[1].span());
                assert!(
                    a.1 + 4 <= b.0,
                    "{:?} and {:?} collide",
                    pair[0].text,
                    pair[1].text
                );
            }
        }
    }

    #[test]
    fn one_point_sweep_has_a_range_around_the_point() {
        for (x, log_x) in [(0.01, false), (0.01, true), (4.0, false), (250.0, true)] {
            let pts: Vec<SweepPoint> = log_sweep(x, 2.0 * x, 2)
                .into_iter()
                .take(2)
                .map(|p| SweepPoint { x, ..p })
                .collect();
            let path = Scratch::new("sweep_one.svg");
            sweep_chart_scaled(&pts, "pause probability", "per step", "One", log_x, &path).unwrap();
            let svg = std::fs::read_to_string(&path).unwrap();
            let labels = x_labels(&svg);
            let values: Vec<f64> = labels
                .iter()
                .map(|l| {
                    l.text
                        .parse::<f64>()
                        .unwrap_or_else(|_| panic!("{:?}", l.text))
                })
                .collect();
            assert!(!values.is_empty());
            // Every tick is within a factor of ten of the point, none at or
            // below zero, and the point itself is labelled in the middle.
            for v in &values {
                assert!(
                    *v > 0.0 && *v >= x / 10.0 && *v <= x * 10.0,
                    "{x}: ticks {values:?}"
                );
            }
            let at = labels
                .iter()
                .find(|l| l.text.parse::<f64>().ok() == Some(x))
                .unwrap_or_else(|| panic!("{x} not labelled: {values:?}"));
            let dot = svg::circles(&svg)
                .into_iter()
                .find(|c| c.r == 5)
                .expect("the point's dot");
            assert!(
                (at.x - dot.cx).abs() <= 1,
                "label at {}, point at {}",
                at.x,
                dot.cx
            );
            // The point is in the middle of the plot: 10 px left margin and
            // a 78 px label area, then the plot up to the legend.
            let (left, right) = (10 + 78, 1100 - LEGEND_W);
            let mid = (left + right) / 2;
            assert!(
                (dot.cx - mid).abs() < 20,
                "{x}: point at {} of {left}..{right}",
                dot.cx
            );
        }
    }

    /// Arrowheads in `colour`: filled triangles pointing down, as (tip x,
    /// tip y), each with the cap above it whose middle is over the tip.
    pub(crate) fn bounds(svg: &str, colour: &str) -> Vec<(i32, i32)> {
        let paths = svg::paths(svg);
        let heads: Vec<(i32, i32)> = paths
            .iter()
            .filter(|p| p.fill == colour && p.points.len() == 3)
            .filter_map(|p| {
                let tip = *p.points.iter().max_by_key(|q| q.1)?;
                let others: Vec<_> = p.points.iter().filter(|q| **q != tip).collect();
                (others.len() == 2 && others.iter().all(|q| q.1 < tip.1)).then_some(tip)
            })
            .collect();
        for &(x, tip) in &heads {
            let cap = paths.iter().find(|p| {
                let [a, b] = p.points[..] else { return false };
                p.stroke == colour
                    && a.1 == b.1
                    && (a.0 - b.0).abs() >= 14
                    && ((a.0 + b.0) / 2 - x).abs() <= 1
                    && (11..=40).contains(&(tip - a.1))
            });
            assert!(cap.is_some(), "no cap above the arrow at ({x}, {tip})");
        }
        heads
    }

    #[test]
    fn a_zero_sweep_point_is_a_bound_marker_not_a_point() {
        let pts = sample_sweep();
        let path = Scratch::new("sweep_zero.svg");
        sweep_chart(&pts, "pause probability", "per step", "Zeros", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let (leaky, fixed) = (
            colour_hex(variant_colour("pre-8095", 0)),
            colour_hex(variant_colour("pr-8095", 1)),
        );
        // Nothing hollow that could pass for a measured point.
        let hollow: Vec<_> = svg::paths(&svg)
            .into_iter()
            .filter(|p| p.fill == "#FFFFFF")
            .collect();
        assert!(hollow.is_empty(), "hollow markers: {hollow:?}");
        // Every zero is a cap with an arrow down: pr-8095 at its five
        // points, pre-8095 at its first; its other four are dots.
        let zeros = bounds(&svg, &fixed);
        assert_eq!(zeros.len(), 5, "{zeros:?}");
        assert_eq!(bounds(&svg, &leaky).len(), 1);
        let dots = svg::circles(&svg)
            .into_iter()
            .filter(|c| c.fill == leaky && c.r == 5)
            .count();
        assert_eq!(dots, 4);
        // The bounds of pr-8095 (same runs, no leak) are at one height.
        assert!(zeros.windows(2).all(|w| w[0].1 == w[1].1), "{zeros:?}");
        // The legend explains it with the same mark, in grey.
        let grey = colour_hex(GREY);
        assert_eq!(bounds(&svg, &grey).len(), 1, "legend swatch");
        let texts: Vec<String> = svg::texts(&svg).into_iter().map(|t| t.text).collect();
        assert!(
            texts.iter().any(|t| t == "0 leaks: 95% upper bound"),
            "{texts:?}"
        );
    }

    /// The rate axis's labels with their values, top to bottom.
    fn y_ticks(svg: &str) -> Vec<(f64, i32, String)> {
        let mut t: Vec<(f64, i32, String)> = svg::texts(svg)
            .into_iter()
            .filter(|t| t.anchor == "end" && t.x < 100)
            .map(|t| {
                let v = t.text.replace(',', "").parse::<f64>();
                (v.unwrap_or_else(|_| panic!("{:?}", t.text)), t.y, t.text)
            })
            .collect();
        t.sort_by_key(|(_, y, _)| *y);
        t
    }

    #[test]
    fn a_rate_axis_within_a_decade_is_labelled_between_decades() {
        // Every rate between 2e-4 and 4e-4: the axis spans little more than
        // a decade and holds one power of ten.
        let pts: Vec<SweepPoint> = [(1.0, 200), (2.0, 300), (3.0, 400)]
            .iter()
            .map(|&(x, k)| {
                let (ci_low, ci_high) = wilson(k, 1_000_000);
                SweepPoint {
                    variant: "pre-8095".into(),
                    x,
                    runs: 1_000_000,
                    leaks: k,
                    rate: k as f64 / 1e6,
                    ci_low,
                    ci_high,
                }
            })
            .collect();
        let path = Scratch::new("sweep_narrow.svg");
        sweep_chart(&pts, "gomaxprocs", "", "Narrow", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let ticks = y_ticks(&svg);
        let labels: Vec<&str> = ticks.iter().map(|t| t.2.as_str()).collect();
        assert!(ticks.len() >= 3, "{labels:?}");
        for want in ["2e-4", "5e-4", "1e-4"] {
            assert!(labels.contains(&want), "{want} missing from {labels:?}");
        }
        // Higher values higher up, on one log scale: the pixels per decade
        // agree between every pair of labels.
        let per_decade: Vec<f64> = ticks
            .windows(2)
            .map(|w| f64::from(w[1].1 - w[0].1) / (w[0].0 / w[1].0).log10())
            .collect();
        for d in &per_decade {
            assert!(*d > 0.0, "{labels:?}");
            assert!((d / per_decade[0] - 1.0).abs() < 0.03, "{per_decade:?}");
        }
    }

    #[test]
    fn rate_labels_fill_in_short_axes() {
        let show = |lo: f64, hi: f64| -> Vec<String> {
            rate_labels(lo, hi)
                .iter()
                .map(|v| fmt_log_tick(*v))
                .collect()
        };
        // Two decades or more: decades only.
        assert_eq!(show(1e-6, 10f64.powf(-4.3)), ["1e-6", "1e-5"]);
        // One decade: 1, 2 and 5 times it.
        assert_eq!(
            show(10f64.powf(-4.4), 10f64.powf(-3.2)),
            ["5e-5", "1e-4", "2e-4", "5e-4"]
        );
        // None: 1, 2 and 5 times the powers around.
        assert_eq!(show(0.012, 0.09), ["0.02", "0.05"]);
        // Too short for two of those: every multiple.
        assert_eq!(show(2.1e-3, 4.5e-3), ["3e-3", "4e-3"]);
    }
}
