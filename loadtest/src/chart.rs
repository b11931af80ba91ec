//! The `--chart` SVG: throughput (top panel) and p50/p90/p99 latency (bottom panel) against
//! concurrency or request rate, on a shared x axis, so the knee (where throughput flattens and
//! latency climbs) shows at a glance. Hand-written SVG: no dependency, opens in any browser.

use crate::options::{Load, format_rate};
use crate::report::{LevelResult, Report};
use std::fmt::Write;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 620.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 130.0;
const PANEL_HEIGHT: f64 = 210.0;
const TOP_PANEL_Y: f64 = 60.0;
const BOTTOM_PANEL_Y: f64 = 340.0;

/// One plotted series: its name, colour and one value per level.
struct Series {
    name: &'static str,
    class: &'static str,
    colour: &'static str,
    values: Vec<f64>,
}

/// Renders the report's levels as a self-contained SVG document.
pub fn render(report: &Report) -> String {
    let rate = report.is_rate();
    let xs: Vec<f64> = report.levels.iter().map(|l| l.load.x()).collect();
    let x_axis = XAxis::new(&xs);
    let throughput = Series {
        name: "inferences/s",
        class: "throughput",
        colour: "#1f77b4",
        values: report.levels.iter().map(|l| l.inferences_per_s).collect(),
    };
    let ms = |f: fn(&LevelResult) -> u64| -> Vec<f64> {
        report.levels.iter().map(|l| f(l) as f64 / 1000.0).collect()
    };
    let latencies = [
        Series {
            name: "p50",
            class: "p50",
            colour: "#2ca02c",
            values: ms(|l| l.p50_us),
        },
        Series {
            name: "p90",
            class: "p90",
            colour: "#ff7f0e",
            values: ms(|l| l.p90_us),
        },
        Series {
            name: "p99",
            class: "p99",
            colour: "#d62728",
            values: ms(|l| l.p99_us),
        },
    ];

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        svg,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/><text x="{}" y="28" text-anchor="middle" font-size="16">{}</text>"#,
        WIDTH / 2.0,
        escape(&format!(
            "{} ({}, {} row(s) per request) on {}",
            report.model,
            report.protocol,
            report.rows_per_request,
            report.urls.join(", ")
        ))
    );
    let x_label = match report.levels.first().map(|l| l.load) {
        Some(Load::Rate { arrivals, .. }) => {
            format!("scheduled request rate (requests/s, {arrivals:?} arrivals)")
        }
        _ if rate => "request rate (requests/s)".to_string(),
        _ => "concurrency (closed-loop connections)".to_string(),
    };
    panel(
        &mut svg,
        TOP_PANEL_Y,
        "throughput (inferences/s)",
        &x_axis,
        &xs,
        std::slice::from_ref(&throughput),
        None,
    );
    panel(
        &mut svg,
        BOTTOM_PANEL_Y,
        "latency (ms)",
        &x_axis,
        &xs,
        &latencies,
        Some(&x_label),
    );
    svg.push_str("</svg>\n");
    svg
}

/// Maps level values to pixels: logarithmic when the levels span a factor of 4 or more (as
/// `1:64:x2` sweeps do), linear otherwise.
struct XAxis {
    min: f64,
    max: f64,
    log: bool,
}

impl XAxis {
    fn new(xs: &[f64]) -> Self {
        let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (min, max) = if min.is_finite() {
            (min, max)
        } else {
            (1.0, 1.0)
        };
        XAxis {
            min,
            max,
            log: min > 0.0 && max / min >= 4.0,
        }
    }

    fn pixel(&self, x: f64) -> f64 {
        let width = WIDTH - LEFT - RIGHT;
        if self.max <= self.min {
            return LEFT + width / 2.0;
        }
        let t = if self.log {
            (x.ln() - self.min.ln()) / (self.max.ln() - self.min.ln())
        } else {
            (x - self.min) / (self.max - self.min)
        };
        LEFT + 20.0 + t * (width - 40.0)
    }
}

/// One panel: frame, y ticks, x ticks at each level, a line and a marker per level per series,
/// and a legend.
fn panel(
    svg: &mut String,
    top: f64,
    y_label: &str,
    x_axis: &XAxis,
    xs: &[f64],
    series: &[Series],
    x_label: Option<&str>,
) {
    let bottom = top + PANEL_HEIGHT;
    let right = WIDTH - RIGHT;
    let y_max = nice_ceiling(
        series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .fold(0.0, f64::max),
    );
    let y = |v: f64| bottom - v / y_max * PANEL_HEIGHT;
    let _ = write!(
        svg,
        r##"<g class="panel"><rect x="{LEFT}" y="{top}" width="{}" height="{PANEL_HEIGHT}" fill="none" stroke="#444"/>"##,
        right - LEFT
    );
    for step in 0..=4 {
        let value = y_max * step as f64 / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{0:.1}" x2="{right}" y2="{0:.1}" stroke="#ddd"/><text x="{1}" y="{2:.1}" text-anchor="end">{3}</text>"##,
            y(value),
            LEFT - 6.0,
            y(value) + 4.0,
            short(value)
        );
    }
    for &x in xs {
        let _ = write!(
            svg,
            r##"<line x1="{0:.1}" y1="{bottom}" x2="{0:.1}" y2="{1}" stroke="#444"/><text x="{0:.1}" y="{2}" text-anchor="middle">{3}</text>"##,
            x_axis.pixel(x),
            bottom + 5.0,
            bottom + 18.0,
            format_rate(x)
        );
    }
    let _ = write!(
        svg,
        r#"<text transform="translate(24 {0:.1}) rotate(-90)" text-anchor="middle">{1}</text>"#,
        top + PANEL_HEIGHT / 2.0,
        escape(y_label)
    );
    if let Some(label) = x_label {
        let _ = write!(
            svg,
            r#"<text x="{0:.1}" y="{1}" text-anchor="middle">{2}</text>"#,
            (LEFT + right) / 2.0,
            bottom + 40.0,
            escape(label)
        );
    }
    for (index, s) in series.iter().enumerate() {
        let points: Vec<String> = xs
            .iter()
            .zip(&s.values)
            .map(|(&x, &v)| format!("{:.1},{:.1}", x_axis.pixel(x), y(v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline class="{}" fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            s.class,
            s.colour,
            points.join(" ")
        );
        for (&x, &v) in xs.iter().zip(&s.values) {
            let _ = write!(
                svg,
                r#"<circle class="{} point" cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{}: {}</title></circle>"#,
                s.class,
                x_axis.pixel(x),
                y(v),
                s.colour,
                format_rate(x),
                short(v)
            );
        }
        let legend_y = top + 16.0 + index as f64 * 20.0;
        let _ = write!(
            svg,
            r#"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="{3}" stroke-width="3"/><text x="{4}" y="{5}">{6}</text>"#,
            right + 12.0,
            legend_y,
            right + 36.0,
            s.colour,
            right + 42.0,
            legend_y + 4.0,
            escape(s.name)
        );
    }
    svg.push_str("</g>");
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v` (1 for nothing to show).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * power)
}

/// A tick label: 12k, 1.5, 250.
fn short(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Escapes text for XML content and attributes.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{Arrivals, Protocol};
    use crate::tally::{Outcome, Tally};
    use std::time::Duration;

    fn report(loads: &[Load]) -> Report {
        let levels = loads
            .iter()
            .enumerate()
            .map(|(i, &load)| {
                let mut tally = Tally::new(Duration::from_secs(1));
                for _ in 0..(10 * (i + 1)) {
                    let success = Outcome::Success {
                        queue_us: None,
                        compute_us: None,
                    };
                    tally.record(success, Duration::from_micros(1000 * (i as u64 + 1)));
                }
                LevelResult::new(load, 1, &tally, Vec::new(), true, None)
            })
            .collect();
        Report {
            model: "m<&>".into(),
            model_version: None,
            urls: vec!["http://a:1".into()],
            protocol: Protocol::HttpBinary,
            rows_per_request: 1,
            levels,
        }
    }

    /// Checks that every element opened is closed in order and attributes are quoted: the
    /// XML well-formedness a browser needs, without an XML dependency.
    fn assert_well_formed(svg: &str) {
        let mut open: Vec<&str> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("every tag ends") + start;
            let tag = &rest[start + 1..end];
            assert!(!tag.contains('<'), "a '<' inside a tag: {tag}");
            assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes: {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop(), Some(name), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                open.push(tag.split_whitespace().next().unwrap());
            }
            rest = &rest[end + 1..];
        }
        assert!(open.is_empty(), "unclosed: {open:?}");
        assert!(!rest.contains('&') || rest.contains("&amp;"));
    }

    #[test]
    fn one_point_per_level_per_series() {
        let loads: Vec<Load> = [1, 2, 4, 8, 16].map(Load::Concurrency).to_vec();
        let svg = render(&report(&loads));
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_well_formed(&svg);
        for class in ["throughput", "p50", "p90", "p99"] {
            assert_eq!(
                svg.matches(&format!("<circle class=\"{class} point\""))
                    .count(),
                5,
                "{class}"
            );
        }
        assert!(svg.contains("concurrency (closed-loop connections)"));
        assert!(svg.contains("m&lt;&amp;&gt;"), "the title is escaped");
        assert!(svg.contains(">latency (ms)<") && svg.contains(">throughput (inferences/s)<"));
    }

    #[test]
    fn rate_charts_label_the_rate_axis() {
        let loads: Vec<Load> = [100.0, 200.0, 400.0]
            .map(|rps| Load::Rate {
                rps,
                arrivals: Arrivals::Poisson,
                max_in_flight: 8,
            })
            .to_vec();
        let svg = render(&report(&loads));
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<circle class=\"p99 point\"").count(), 3);
        assert!(svg.contains("scheduled request rate (requests/s, Poisson arrivals)"));
        // Higher levels sit further right.
        let cx: Vec<f64> = svg
            .match_indices("<circle class=\"throughput point\" cx=\"")
            .map(|(i, m)| {
                let tail = &svg[i + m.len()..];
                tail[..tail.find('"').unwrap()].parse().unwrap()
            })
            .collect();
        assert!(cx.windows(2).all(|w| w[0] < w[1]), "{cx:?}");
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(1030.0), 2000.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
    }
}
