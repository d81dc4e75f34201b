//! Small hand-written SVG charts: line charts of time series and bar charts of
//! distributions. Written by hand rather than with a plotting crate so the output is
//! byte-for-byte stable (numbers are printed with fixed decimals) and costs no
//! dependencies.

use std::fmt::Write;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 58.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f",
];

/// One line of a [`LineChart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed y range; by default from 0 (or the lowest value, if negative) to the highest.
    pub y_range: Option<(f64, f64)>,
    /// Dashed vertical markers at these x values, with a label.
    pub markers: Vec<(f64, String)>,
}

impl LineChart {
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            y_range: None,
            markers: Vec::new(),
        }
    }

    pub fn series(mut self, s: Series) -> Self {
        self.series.push(s);
        self
    }

    pub fn y_range(mut self, lo: f64, hi: f64) -> Self {
        self.y_range = Some((lo, hi));
        self
    }

    pub fn marker(mut self, x: f64, label: &str) -> Self {
        self.markers.push((x, label.into()));
        self
    }

    pub fn svg(&self) -> String {
        let points = self.series.iter().flat_map(|s| s.points.iter());
        let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::MAX, f64::MIN, 0.0f64, f64::MIN);
        for &(x, y) in points {
            x_lo = x_lo.min(x);
            x_hi = x_hi.max(x);
            y_lo = y_lo.min(y);
            y_hi = y_hi.max(y);
        }
        if x_lo > x_hi {
            (x_lo, x_hi, y_hi) = (0.0, 1.0, 1.0);
        }
        if let Some((lo, hi)) = self.y_range {
            (y_lo, y_hi) = (lo, hi);
        }
        let x_axis = Axis::new(x_lo, x_hi);
        let y_axis = Axis::new(y_lo, y_hi);
        let mut out = frame(&self.title, &self.x_label, &self.y_label);
        grid(&mut out, &x_axis, &y_axis);
        for (x, label) in &self.markers {
            let px = x_axis.px(*x);
            let _ = write!(
                out,
                r##"<line x1="{px:.1}" y1="{TOP:.1}" x2="{px:.1}" y2="{:.1}" stroke="#555" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#555">{}</text>"##,
                HEIGHT - BOTTOM,
                px + 3.0,
                TOP + 12.0,
                escape(label)
            );
        }
        for (k, s) in self.series.iter().enumerate() {
            let colour = COLOURS[k % COLOURS.len()];
            let mut path = String::new();
            for (i, &(x, y)) in s.points.iter().enumerate() {
                let cmd = if i == 0 { 'M' } else { 'L' };
                let _ = write!(path, "{cmd}{:.1},{:.1} ", x_axis.px(x), y_axis.py(y));
            }
            let _ = write!(
                out,
                r#"<path d="{}" fill="none" stroke="{colour}" stroke-width="1.6"/>"#,
                path.trim_end()
            );
            if s.points.len() == 1 {
                let (x, y) = s.points[0];
                let _ = write!(
                    out,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                    x_axis.px(x),
                    y_axis.py(y)
                );
            }
        }
        legend(&mut out, self.series.iter().map(|s| s.name.as_str()));
        out.push_str("</svg>\n");
        out
    }
}

/// Bars with a label each, e.g. a histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub bars: Vec<(String, f64)>,
}

impl BarChart {
    pub fn new(title: &str, x_label: &str, y_label: &str, bars: Vec<(String, f64)>) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            bars,
        }
    }

    pub fn svg(&self) -> String {
        let y_hi = self.bars.iter().map(|b| b.1).fold(0.0f64, f64::max);
        let y_axis = Axis::new(0.0, if y_hi > 0.0 { y_hi } else { 1.0 });
        let mut out = frame(&self.title, &self.x_label, &self.y_label);
        for &v in &y_axis.ticks {
            let py = y_axis.py(v);
            let _ = write!(
                out,
                r##"<line x1="{LEFT:.1}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                WIDTH - RIGHT,
                LEFT - 6.0,
                py + 4.0,
                y_axis.label(v)
            );
        }
        let n = self.bars.len().max(1) as f64;
        let slot = (WIDTH - LEFT - RIGHT) / n;
        let every = (self.bars.len() / 24).max(1);
        for (i, (label, v)) in self.bars.iter().enumerate() {
            let x = LEFT + slot * i as f64;
            let top = y_axis.py(*v);
            let _ = write!(
                out,
                r##"<rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}"/>"##,
                x + slot * 0.1,
                slot * 0.8,
                (HEIGHT - BOTTOM - top).max(0.0),
                COLOURS[0]
            );
            if i % every == 0 {
                let _ = write!(
                    out,
                    r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
                    x + slot / 2.0,
                    HEIGHT - BOTTOM + 16.0,
                    escape(label)
                );
            }
        }
        axes(&mut out);
        out.push_str("</svg>\n");
        out
    }
}

/// A linear axis with "nice" ticks (1, 2 or 5 times a power of ten).
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    decimals: usize,
}

impl Axis {
    fn new(lo: f64, hi: f64) -> Self {
        let hi = if hi > lo { hi } else { lo + 1.0 };
        let raw = (hi - lo) / 6.0;
        // The step is 1, 2 or 5 times 10^exponent; labels then need exactly -exponent
        // decimals (none for steps of 1 and up), so every tick prints differently.
        let mut exponent = raw.log10().floor() as i32;
        let magnitude = 10f64.powi(exponent);
        let multiple = [1.0, 2.0, 5.0]
            .into_iter()
            .find(|m| m * magnitude >= raw)
            .unwrap_or_else(|| {
                exponent += 1;
                1.0
            });
        let step = multiple * 10f64.powi(exponent);
        let first = (lo / step).floor() * step;
        let last = (hi / step).ceil() * step;
        let count = ((last - first) / step).round() as usize;
        let ticks = (0..=count).map(|i| first + step * i as f64).collect();
        Self {
            lo: first,
            hi: last,
            ticks,
            decimals: usize::try_from(-exponent).unwrap_or(0),
        }
    }

    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.lo) / (self.hi - self.lo) * (WIDTH - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        HEIGHT - BOTTOM - (y - self.lo) / (self.hi - self.lo) * (HEIGHT - TOP - BOTTOM)
    }

    fn label(&self, v: f64) -> String {
        format!("{v:.*}", self.decimals)
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn frame(title: &str, x_label: &str, y_label: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif"><rect width="100%" height="100%" fill="#fff"/><text x="{:.1}" y="24" font-size="15" text-anchor="middle">{}</text><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text><text x="16" y="{:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"##,
        WIDTH / 2.0,
        escape(title),
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 14.0,
        escape(x_label),
        (TOP + HEIGHT - BOTTOM) / 2.0,
        (TOP + HEIGHT - BOTTOM) / 2.0,
        escape(y_label)
    );
    out
}

fn grid(out: &mut String, x: &Axis, y: &Axis) {
    for &v in &y.ticks {
        let py = y.py(v);
        let _ = write!(
            out,
            r##"<line x1="{LEFT:.1}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            y.label(v)
        );
    }
    for &v in &x.ticks {
        let px = x.px(v);
        let _ = write!(
            out,
            r##"<line x1="{px:.1}" y1="{TOP:.1}" x2="{px:.1}" y2="{:.1}" stroke="#f0f0f0"/><text x="{px:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 16.0,
            x.label(v)
        );
    }
    axes(out);
}

fn axes(out: &mut String) {
    let _ = write!(
        out,
        r##"<line x1="{LEFT:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/><line x1="{LEFT:.1}" y1="{TOP:.1}" x2="{LEFT:.1}" y2="{:.1}" stroke="#333"/>"##,
        HEIGHT - BOTTOM,
        WIDTH - RIGHT,
        HEIGHT - BOTTOM,
        HEIGHT - BOTTOM
    );
}

fn legend<'a>(out: &mut String, names: impl Iterator<Item = &'a str>) {
    for (k, name) in names.enumerate() {
        let y = TOP + 8.0 + 16.0 * k as f64;
        let x = WIDTH - RIGHT - 190.0;
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="12" height="3" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            y - 4.0,
            COLOURS[k % COLOURS.len()],
            x + 16.0,
            y,
            escape(name)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_numbers_covering_the_range() {
        let a = Axis::new(0.0, 9_730.0);
        assert_eq!(a.ticks.first(), Some(&0.0));
        assert!(a.ticks.last().is_some_and(|&t| t >= 9_730.0));
        assert!(
            a.ticks
                .iter()
                .all(|t| t % 1000.0 == 0.0 || t % 500.0 == 0.0)
        );
    }

    #[test]
    fn tick_labels_have_the_precision_of_the_step() {
        for (hi, second) in [(0.37, "0.1"), (0.3, "0.05"), (0.012, "0.002"), (7.0, "2")] {
            let a = Axis::new(0.0, hi);
            let labels: Vec<String> = a.ticks.iter().map(|&t| a.label(t)).collect();
            assert_eq!(labels[1], second, "axis 0..{hi}: {labels:?}");
            for (t, l) in a.ticks.iter().zip(&labels) {
                let back: f64 = l.parse().expect("a number");
                assert!((back - t).abs() < 1e-9, "axis 0..{hi}: {t} printed as {l}");
            }
        }
    }

    #[test]
    fn charts_are_svg_with_escaped_text() {
        let svg = LineChart::new("a < b", "t", "y")
            .series(Series::new("s", vec![(0.0, 1.0), (1.0, 2.0)]))
            .svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt; b"));
        let bars = BarChart::new("h", "x", "n", vec![("1".into(), 3.0)]).svg();
        assert!(bars.contains("<rect"));
    }
}
