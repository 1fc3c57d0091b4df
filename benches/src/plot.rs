//! A small SVG line chart for the growth figures: one or more series of
//! (x, y) points, each axis linear or logarithmic, with ticks at the
//! measured x values. Self-contained: no script, no external font.

use std::fmt::Write;

pub(crate) struct Series<'a> {
    pub(crate) label: &'a str,
    pub(crate) points: Vec<(f64, f64)>,
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Scale {
    Linear,
    Log,
}

pub(crate) struct Axis<'a> {
    pub(crate) label: &'a str,
    pub(crate) scale: Scale,
}

impl<'a> Axis<'a> {
    pub(crate) fn linear(label: &'a str) -> Self {
        Axis {
            label,
            scale: Scale::Linear,
        }
    }

    pub(crate) fn log(label: &'a str) -> Self {
        Axis {
            label,
            scale: Scale::Log,
        }
    }
}

pub(crate) struct Chart<'a> {
    pub(crate) title: &'a str,
    pub(crate) x: Axis<'a>,
    pub(crate) y: Axis<'a>,
    pub(crate) series: Vec<Series<'a>>,
    /// How a measured x value is written under its tick.
    pub(crate) x_tick: fn(f64) -> String,
}

const WIDTH: f64 = 680.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 56.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// Maps a value onto [0, 1] of an axis spanning `low..=high`.
fn position(value: f64, low: f64, high: f64, scale: Scale) -> f64 {
    let (value, low, high) = match scale {
        Scale::Linear => (value, low, high),
        Scale::Log => (value.ln(), low.ln(), high.ln()),
    };
    if high > low {
        (value - low) / (high - low)
    } else {
        0.5
    }
}

/// Round y gridlines: 0 (or the lowest decade on a log axis) up to a
/// little above the highest point.
fn y_ticks(high: f64, low: f64, scale: Scale) -> Vec<f64> {
    match scale {
        Scale::Log => {
            let mut tick = 10f64.powf(low.log10().floor());
            let mut ticks = vec![tick];
            while tick < high {
                tick *= 10.0;
                ticks.push(tick);
            }
            ticks
        }
        Scale::Linear => {
            let raw = high / 5.0;
            let magnitude = 10f64.powf(raw.log10().floor());
            let step = [1.0, 2.0, 2.5, 5.0, 10.0]
                .into_iter()
                .map(|m| m * magnitude)
                .find(|step| *step >= raw)
                .unwrap_or(10.0 * magnitude);
            (0..=((high / step).ceil() as usize))
                .map(|i| i as f64 * step)
                .collect()
        }
    }
}

fn number(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if value >= 10.0 || value == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Chart<'_> {
    pub(crate) fn svg(&self) -> String {
        let points = self.series.iter().flat_map(|s| s.points.iter());
        let xs: Vec<f64> = points.clone().map(|p| p.0).collect();
        let x_low = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let x_high = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let y_max = points.clone().map(|p| p.1).fold(0.0, f64::max);
        let y_min = points.map(|p| p.1).fold(f64::INFINITY, f64::min);
        let ticks = y_ticks(y_max.max(f64::MIN_POSITIVE), y_min, self.y.scale);
        let (y_low, y_high) = (ticks[0], *ticks.last().expect("at least one tick"));
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let at_x = |x: f64| LEFT + position(x, x_low, x_high, self.x.scale) * plot_w;
        let at_y = |y: f64| TOP + plot_h - position(y, y_low, y_high, self.y.scale) * plot_h;

        let mut svg = String::new();
        let _ = write!(
            svg,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
             width=\"{WIDTH}\" height=\"{HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{LEFT}\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
            escape(self.title)
        );
        for tick in &ticks {
            let y = at_y(*tick);
            let _ = writeln!(
                svg,
                "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT + plot_w,
                LEFT - 6.0,
                y + 4.0,
                number(*tick)
            );
        }
        // Ticks at the first series' points: the others' would crowd them.
        let mut x_ticks: Vec<f64> = self.series[0].points.iter().map(|p| p.0).collect();
        x_ticks.sort_by(f64::total_cmp);
        x_ticks.dedup();
        for tick in x_ticks {
            let x = at_x(tick);
            let _ = writeln!(
                svg,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#eee\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                TOP + plot_h,
                TOP + plot_h + 16.0,
                escape(&(self.x_tick)(tick))
            );
        }
        let _ = write!(
            svg,
            "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#888\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
             <text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
            LEFT + plot_w / 2.0,
            HEIGHT - 14.0,
            escape(self.x.label),
            TOP + plot_h / 2.0,
            escape(self.y.label)
        );
        for (index, series) in self.series.iter().enumerate() {
            let colour = COLOURS[index % COLOURS.len()];
            let path: Vec<String> = series
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", at_x(x), at_y(y)))
                .collect();
            let _ = writeln!(
                svg,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
                path.join(" ")
            );
            for &(x, y) in &series.points {
                let _ = writeln!(
                    svg,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{colour}\"><title>{}: {}</title></circle>",
                    at_x(x),
                    at_y(y),
                    escape(&(self.x_tick)(x)),
                    number(y)
                );
            }
            let legend_y = TOP + 10.0 + index as f64 * 20.0;
            let _ = writeln!(
                svg,
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{legend_y:.1}\" y2=\"{legend_y:.1}\" stroke=\"{colour}\" stroke-width=\"2\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                LEFT + plot_w + 12.0,
                LEFT + plot_w + 32.0,
                LEFT + plot_w + 38.0,
                legend_y + 4.0,
                escape(series.label)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}
