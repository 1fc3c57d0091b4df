//! Just enough SVG for time charts: a plot area mapping time and value to
//! pixels, axes with labelled ticks, lines, steps and markers. Every text
//! that reaches the page goes through [`escape`].

use std::fmt::Write as _;

/// Plot area margins, in pixels: room for the axis labels.
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// A chart's frame: its size and the ranges its axes show.
pub(super) struct Frame {
    pub(super) width: f64,
    pub(super) height: f64,
    /// Unix seconds at the left and right edges.
    pub(super) t0: f64,
    pub(super) t1: f64,
    /// Values at the bottom and top edges.
    pub(super) y0: f64,
    pub(super) y1: f64,
}

impl Frame {
    /// A frame over `[t0, t1]` and `[0, y_max]`, widened when a range is
    /// empty so that one point still has a place.
    pub(super) fn new(width: f64, height: f64, (t0, t1): (f64, f64), y_max: f64) -> Frame {
        let (t0, t1) = if t1 > t0 {
            (t0, t1)
        } else {
            (t0 - 60.0, t0 + 60.0)
        };
        let pad = (t1 - t0) * 0.03;
        Frame {
            width,
            height,
            t0: t0 - pad,
            t1: t1 + pad,
            y0: 0.0,
            y1: if y_max > 0.0 { y_max } else { 1.0 },
        }
    }

    pub(super) fn x(&self, t: f64) -> f64 {
        LEFT + (t - self.t0) / (self.t1 - self.t0) * (self.width - LEFT - RIGHT)
    }

    pub(super) fn y(&self, value: f64) -> f64 {
        let clamped = value.clamp(self.y0, self.y1);
        self.height
            - BOTTOM
            - (clamped - self.y0) / (self.y1 - self.y0) * (self.height - TOP - BOTTOM)
    }

    /// The opening tag, the plot's background and both axes: time ticks
    /// labelled with `clock`, value ticks with `value`.
    pub(super) fn open(
        &self,
        id: &str,
        title: &str,
        time_ticks: &[(f64, String)],
        value_ticks: &[(f64, String)],
    ) -> String {
        let mut out = format!(
            "<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" \
             width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{title}\">\n\
             <rect class=\"plot\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\"/>\n",
            id = escape(id),
            w = self.width,
            h = self.height,
            title = escape(title),
            pw = self.width - LEFT - RIGHT,
            ph = self.height - TOP - BOTTOM,
        );
        for (value, text) in value_ticks {
            let y = px(self.y(*value));
            let _ = writeln!(
                out,
                "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/>\
                 <text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                px(self.width - RIGHT),
                px(LEFT - 6.0),
                px(self.y(*value) + 4.0),
                escape(text)
            );
        }
        for (t, text) in time_ticks {
            let x = px(self.x(*t));
            let _ = writeln!(
                out,
                "<text class=\"tick\" x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                px(self.height - 8.0),
                escape(text)
            );
        }
        out
    }

    /// A line through `points` (time, value), in order.
    pub(super) fn line(&self, class: &str, points: &[(f64, f64)]) -> String {
        if points.is_empty() {
            return String::new();
        }
        let mut d = String::new();
        for (i, (t, v)) in points.iter().enumerate() {
            let _ = write!(
                d,
                "{}{},{} ",
                if i == 0 { "M" } else { "L" },
                px(self.x(*t)),
                px(self.y(*v))
            );
        }
        format!(
            "<path class=\"{}\" d=\"{}\"/>\n",
            escape(class),
            d.trim_end()
        )
    }

    /// A step line: each value holds until the next point's time, the last
    /// one until `until`.
    pub(super) fn steps(&self, class: &str, points: &[(f64, f64)], until: f64) -> String {
        let mut stepped = Vec::with_capacity(points.len() * 2);
        for (i, &(t, v)) in points.iter().enumerate() {
            stepped.push((t, v));
            let next = points.get(i + 1).map_or(until, |(t, _)| *t);
            stepped.push((next, v));
        }
        self.line(class, &stepped)
    }

    pub(super) fn close(&self) -> &'static str {
        "</svg>\n"
    }
}

/// A pixel coordinate, to a tenth.
pub(super) fn px(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").unwrap_or(&text).to_string()
}

/// Evenly spaced time ticks, labelled as the time of day.
pub(super) fn time_ticks(
    (t0, t1): (f64, f64),
    count: usize,
    clock: impl Fn(f64) -> String,
) -> Vec<(f64, String)> {
    if t1 <= t0 || count < 2 {
        return vec![(t0, clock(t0))];
    }
    (0..count)
        .map(|i| {
            let t = t0 + (t1 - t0) * i as f64 / (count - 1) as f64;
            (t, clock(t))
        })
        .collect()
}

/// Text for HTML and SVG: the five characters that could open markup or
/// end an attribute are escaped.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cannot_open_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn values_map_into_the_plot_and_out_of_range_ones_are_clamped() {
        let frame = Frame::new(400.0, 200.0, (0.0, 100.0), 10.0);
        assert_eq!(frame.y(0.0), 200.0 - BOTTOM);
        assert_eq!(frame.y(10.0), TOP);
        assert_eq!(frame.y(99.0), TOP, "clamped to the top");
        assert!(frame.x(0.0) > LEFT && frame.x(100.0) < 400.0 - RIGHT);
        let single = Frame::new(400.0, 200.0, (50.0, 50.0), 0.0);
        assert!(single.x(50.0) > LEFT, "one point has a place");
        assert_eq!(
            frame.steps("s", &[(0.0, 1.0), (50.0, 2.0)], 100.0),
            frame.line("s", &[(0.0, 1.0), (50.0, 1.0), (50.0, 2.0), (100.0, 2.0)])
        );
    }
}
