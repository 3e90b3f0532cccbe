//! Reports: result rows (`summary.csv`, `failures.csv`, JSON, the table,
//! shard merge), leak-rate and sweep charts, and the timeline picture of a
//! trace.
//!
//! Pictures are drawn with plotters into PNG or SVG, chosen by the file
//! extension. Text uses the bundled DejaVu Sans (see `assets/fonts/`), so no
//! system font library is needed. Every file is written atomically: drawn
//! into a temporary file in the same directory, then renamed over the target.

pub mod chart;
pub mod summary;
pub mod timeline;
pub mod validation_chart;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

pub use chart::{RateBar, SweepPoint, leak_rate_chart, sweep_chart, sweep_chart_scaled};
pub use summary::*;
pub use timeline::{
    TimelineAxis, TimelineEnd, TimelineOptions, TimelineWindow, timeline, timeline_with,
};

/// Why a chart could not be written. Every variant names the target file.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("{}: unsupported picture format; use a .png or .svg file name", path.display())]
    UnsupportedFormat { path: PathBuf },
    #[error("{}: nothing to draw: {what}", path.display())]
    Empty { path: PathBuf, what: String },
    #[error("{}: the bundled font could not be loaded", path.display())]
    Font { path: PathBuf },
    // `message` is the drawing library's text, which wraps an I/O error in
    // Rust debug syntax (`ImageError(IoError(Os { .. message: "File name
    // too long" }))`): the sentence names the cause only.
    #[error(
        "{}: could not draw the picture: {}",
        path.display(),
        message
            .split_once("message: \"")
            .and_then(|(_, m)| m.split_once('"'))
            .map_or_else(
                || message
                    .trim_start_matches("backend error: ")
                    .trim_start_matches("Drawing backend error: "),
                |(m, _)| m
            )
    )]
    Draw { path: PathBuf, message: String },
    #[error("{}: cannot write the picture", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// DejaVu Sans 2.37 from Debian's fonts-dejavu-core; licence beside it.
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The font family name every text style in this module uses.
pub(crate) const FONT_FAMILY: &str = "sans-serif";

/// Registers the bundled font with plotters, once per process.
pub(crate) fn ensure_font(path: &Path) -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(ChartError::Font {
            path: path.to_path_buf(),
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    Png,
    Svg,
}

impl Format {
    fn of(path: &Path) -> Result<Self, ChartError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("png") => Ok(Format::Png),
            Some("svg") => Ok(Format::Svg),
            _ => Err(ChartError::UnsupportedFormat {
                path: path.to_path_buf(),
            }),
        }
    }
}

pub(crate) type DrawResult = Result<(), Box<dyn Error>>;

/// Something that draws itself on a drawing area of any backend.
pub(crate) trait Paint {
    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static;
}

/// Draws `picture` into `path` (PNG or SVG by extension) of `size` pixels,
/// through a temporary file in the same directory and a rename.
pub(crate) fn render(
    path: &Path,
    size: (u32, u32),
    picture: &impl Paint,
) -> Result<(), ChartError> {
    let format = Format::of(path)?;
    ensure_font(path)?;
    let name =
        path.file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| ChartError::UnsupportedFormat {
                path: path.to_path_buf(),
            })?;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let ext = match format {
        Format::Png => "png",
        Format::Svg => "svg",
    };
    // The temporary name keeps the extension: the bitmap encoder picks the
    // image format from it.
    let tmp = path.with_file_name(format!(".{name}.{}-{seq}.tmp.{ext}", std::process::id()));
    let draw_err = |e: Box<dyn Error>| ChartError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let drawn: Result<(), ChartError> = match format {
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
                picture.paint(&root).map_err(draw_err)?;
                root.present().map_err(|e| draw_err(Box::new(e)))?;
            }
            std::fs::write(&tmp, svg).map_err(|source| ChartError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
        Format::Png => {
            let root = BitMapBackend::new(&tmp, size).into_drawing_area();
            let r = picture
                .paint(&root)
                .and_then(|()| root.present().map_err(|e| Box::new(e) as Box<dyn Error>));
            drop(root);
            r.map_err(|e| {
                // The encoder reports a missing directory as a drawing error.
                match std::fs::metadata(
                    path.parent()
                        .filter(|p| !p.as_os_str().is_empty())
                        .unwrap_or(Path::new(".")),
                ) {
                    Err(source) => ChartError::Io {
                        path: path.to_path_buf(),
                        source,
                    },
                    Ok(_) => draw_err(e),
                }
            })
        }
    };
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        ChartError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// A text style in the bundled font.
pub(crate) fn font(size: f64) -> TextStyle<'static> {
    (FONT_FAMILY, size).into_font().color(&BLACK)
}

/// Width in pixels of `s` in the bundled font at `size` (after [`ensure_font`]).
pub(crate) fn text_width(s: &str, size: f64) -> i32 {
    font(size)
        .font
        .box_size(s)
        .map_or(s.len() as i32 * size as i32 / 2, |(w, _)| w as i32)
}

/// Okabe–Ito colours: distinguishable with the common colour-vision deficiencies.
pub(crate) const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(120, 120, 120), // grey
    RGBColor(0, 0, 0),       // black
];

/// A stable colour for a variant: the known variants always get the same
/// one (buggy red, fixed green), others take the palette in order of
/// appearance (`index`).
pub(crate) fn variant_colour(name: &str, index: usize) -> RGBColor {
    match name {
        "pre-4308" => PALETTE[4],
        "pre-8095" | "buggy" => PALETTE[1],
        "pr-8095" | "fixed" => PALETTE[2],
        "priority-lock" => PALETTE[0],
        "a115" => PALETTE[3],
        _ => [PALETTE[5], PALETTE[0], PALETTE[3], PALETTE[6], PALETTE[7]][index % 5],
    }
}

/// `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate for a label: plain decimals down to 0.001, scientific below
/// (`2.1e-5`), three significant digits at most.
pub(crate) fn fmt_rate(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    if v >= 0.001 {
        let digits = (2 - v.log10().floor() as i32).max(0) as usize;
        let s = format!("{v:.digits$}");
        trim_zeros(&s)
    } else {
        let e = v.log10().floor() as i32;
        let m = v / 10f64.powi(e);
        // Rounding the mantissa may carry into the next decade.
        let (m, e) = if (m * 10.0).round() >= 100.0 {
            (1.0, e + 1)
        } else {
            (m, e)
        };
        format!("{}e{e}", trim_zeros(&format!("{m:.1}")))
    }
}

/// Tick label for a power of ten on a log axis.
pub(crate) fn fmt_decade(v: f64) -> String {
    let e = v.log10().round() as i32;
    if (-2..=0).contains(&e) {
        fmt_rate(10f64.powi(e))
    } else if e > 0 {
        thousands(10u64.pow(e as u32))
    } else {
        format!("1e{e}")
    }
}

/// Tick label for 1, 2, 5 (or any whole multiple) times a power of ten on
/// a log axis: [`fmt_decade`]'s style, `2e-4` beside `1e-4`, `0.05` beside
/// `0.01`, `2,000` beside `1,000`.
pub(crate) fn fmt_log_tick(v: f64) -> String {
    let e = (v.log10() + 1e-9).floor() as i32;
    let m = (v / 10f64.powi(e)).round() as u64;
    // Rounding may carry into the next decade.
    let (m, e) = if m >= 10 { (1, e + 1) } else { (m.max(1), e) };
    if m == 1 {
        fmt_decade(10f64.powi(e))
    } else if (-2..=0).contains(&e) {
        fmt_rate(m as f64 * 10f64.powi(e))
    } else if e > 0 {
        thousands(m * 10u64.pow(e as u32))
    } else {
        format!("{m}e{e}")
    }
}

pub(crate) fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Output files of this module's tests: each in the system's temporary
/// directory, removed when the test ends (set `LBSIM_KEEP_CHARTS` to keep
/// them for a look).
#[cfg(test)]
pub(crate) struct Scratch(PathBuf);

#[cfg(test)]
impl Scratch {
    pub(crate) fn new(name: &str) -> Self {
        // One directory per file: tests run in parallel.
        let dir = std::env::temp_dir().join(format!("lbsim-report-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        Scratch(dir.join(name))
    }
}

#[cfg(test)]
impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

#[cfg(test)]
impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

#[cfg(test)]
impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("LBSIM_KEEP_CHARTS").is_none() {
            let _ = std::fs::remove_file(&self.0);
            let _ = self.0.parent().map(std::fs::remove_dir);
        }
    }
}

/// Reading back the SVG that plotters writes, for tests that check what a
/// picture shows: texts with their anchor and size, rectangles, polylines,
/// polygons and circles, each with its colours.
#[cfg(test)]
#[allow(dead_code)] // Some fields are only read through Debug, in failure messages.
pub(crate) mod svg {
    /// A `<text>`: `size` is the font size the drawing code asked for (the
    /// SVG backend writes it scaled by 1/1.24).
    #[derive(Clone, Debug)]
    pub struct SvgText {
        pub x: i32,
        pub y: i32,
        pub anchor: String,
        /// `dy`: `0.5ex` for text centred on `y`, `0.76em` for text below it.
        pub dy: String,
        pub size: f64,
        pub fill: String,
        pub text: String,
    }

    impl SvgText {
        /// Left and right pixel edges, from the bundled font's metrics.
        pub fn span(&self) -> (i32, i32) {
            let w = super::text_width(&self.text, self.size);
            match self.anchor.as_str() {
                "end" => (self.x - w, self.x),
                "middle" => (self.x - w / 2, self.x + w / 2),
                _ => (self.x, self.x + w),
            }
        }

        /// Top and bottom pixel edges (the line height is the font size).
        pub fn rows(&self) -> (i32, i32) {
            let h = self.size.round() as i32;
            match self.dy.as_str() {
                "0.5ex" => (self.y - h / 2, self.y + h / 2),
                "0.76em" => (self.y, self.y + h),
                _ => (self.y - h, self.y),
            }
        }
    }

    #[derive(Clone, Debug)]
    pub struct SvgRect {
        pub x: i32,
        pub y: i32,
        pub w: i32,
        pub h: i32,
        pub fill: String,
        pub stroke: String,
        pub opacity: f64,
    }

    /// A `<polyline>` or a `<polygon>`.
    #[derive(Clone, Debug)]
    pub struct SvgPath {
        pub points: Vec<(i32, i32)>,
        pub fill: String,
        pub stroke: String,
    }

    #[derive(Clone, Debug)]
    pub struct SvgCircle {
        pub cx: i32,
        pub cy: i32,
        pub r: i32,
        pub fill: String,
        pub stroke: String,
    }

    fn attr<'a>(tag: &'a str, name: &str) -> &'a str {
        let key = format!(" {name}=\"");
        tag.find(&key)
            .map(|i| {
                let rest = &tag[i + key.len()..];
                &rest[..rest.find('"').unwrap_or(rest.len())]
            })
            .unwrap_or("")
    }

    fn num(tag: &str, name: &str) -> f64 {
        attr(tag, name).parse().unwrap_or(f64::NAN)
    }

    /// Every opening tag `<name ...>` of the document, attributes and all.
    fn tags<'a>(svg: &'a str, name: &str) -> Vec<&'a str> {
        let open = format!("<{name} ");
        let mut out = Vec::new();
        let mut rest = svg;
        while let Some(i) = rest.find(&open) {
            let tail = &rest[i..];
            let end = tail.find('>').map_or(tail.len(), |e| e + 1);
            out.push(&tail[..end]);
            rest = &tail[end..];
        }
        out
    }

    fn unescape(s: &str) -> String {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    }

    pub fn texts(svg: &str) -> Vec<SvgText> {
        let mut out = Vec::new();
        let mut rest = svg;
        while let Some(i) = rest.find("<text ") {
            let tail = &rest[i..];
            let open_end = tail.find('>').expect("text tag closes") + 1;
            let close = tail.find("</text>").expect("text element closes");
            let tag = &tail[..open_end];
            out.push(SvgText {
                x: num(tag, "x").round() as i32,
                y: num(tag, "y").round() as i32,
                anchor: attr(tag, "text-anchor").to_string(),
                dy: attr(tag, "dy").to_string(),
                size: num(tag, "font-size") * 1.24,
                fill: attr(tag, "fill").to_string(),
                text: unescape(tail[open_end..close].trim()),
            });
            rest = &tail[close..];
        }
        out
    }

    pub fn rects(svg: &str) -> Vec<SvgRect> {
        tags(svg, "rect")
            .into_iter()
            .map(|t| SvgRect {
                x: num(t, "x") as i32,
                y: num(t, "y") as i32,
                w: num(t, "width") as i32,
                h: num(t, "height") as i32,
                fill: attr(t, "fill").to_string(),
                stroke: attr(t, "stroke").to_string(),
                opacity: num(t, "opacity"),
            })
            .collect()
    }

    fn points(t: &str) -> Vec<(i32, i32)> {
        attr(t, "points")
            .split_whitespace()
            .filter_map(|p| {
                let (x, y) = p.split_once(',')?;
                Some((x.parse().ok()?, y.parse().ok()?))
            })
            .collect()
    }

    /// Polylines and polygons alike.
    pub fn paths(svg: &str) -> Vec<SvgPath> {
        let mut out: Vec<SvgPath> = Vec::new();
        for name in ["polyline", "polygon"] {
            out.extend(tags(svg, name).into_iter().map(|t| SvgPath {
                points: points(t),
                fill: attr(t, "fill").to_string(),
                stroke: attr(t, "stroke").to_string(),
            }));
        }
        out
    }

    pub fn circles(svg: &str) -> Vec<SvgCircle> {
        tags(svg, "circle")
            .into_iter()
            .map(|t| SvgCircle {
                cx: num(t, "cx") as i32,
                cy: num(t, "cy") as i32,
                r: num(t, "r") as i32,
                fill: attr(t, "fill").to_string(),
                stroke: attr(t, "stroke").to_string(),
            })
            .collect()
    }

    /// Whether two closed pixel intervals share more than their ends.
    pub fn overlap((a0, a1): (i32, i32), (b0, b1): (i32, i32)) -> bool {
        a0 < b1 && b0 < a1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(fmt_rate(1.0), "1");
        assert_eq!(fmt_rate(0.5), "0.5");
        assert_eq!(fmt_rate(0.0123), "0.0123");
        assert_eq!(fmt_rate(2.0e-5), "2e-5");
        assert_eq!(fmt_rate(2.14e-5), "2.1e-5");
        assert_eq!(fmt_rate(9.99e-6), "1e-5");
        assert_eq!(fmt_decade(1e-5 * 1.000_000_1), "1e-5");
        assert_eq!(fmt_decade(0.1), "0.1");
        assert_eq!(fmt_decade(1.0), "1");
        for (v, want) in [
            (1e-4, "1e-4"),
            (2e-4 * 1.000_000_1, "2e-4"),
            (5e-4, "5e-4"),
            (2e-3, "2e-3"),
            (0.02, "0.02"),
            (0.5, "0.5"),
            (1.0, "1"),
            (2.0, "2"),
            (5e3, "5,000"),
            (9.999_999_9e-5, "1e-4"),
        ] {
            assert_eq!(fmt_log_tick(v), want, "{v}");
        }
    }

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(Format::of(Path::new("a/b.PNG")).unwrap(), Format::Png);
        assert_eq!(Format::of(Path::new("b.svg")).unwrap(), Format::Svg);
        let e = Format::of(Path::new("out/chart.jpg")).unwrap_err();
        assert!(e.to_string().contains("out/chart.jpg"), "{e}");
    }
}
