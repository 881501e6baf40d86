//! Server-rendered SVG line charts. Pure: data in, markup out.

use std::fmt::Write as _;

use model::TimestampNs;
use store::Point;

use crate::view::escape;

/// Chart canvas size in SVG user units; the page scales it to its container.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
// Wide enough for the longest axis label ("999.9 Mb/s") at the axis font size.
const MARGIN_LEFT: f64 = 80.0;
const MARGIN_RIGHT: f64 = 12.0;
// The legend sits in the top margin, above the plot, so lines never run over it.
const MARGIN_TOP: f64 = 26.0;
const MARGIN_BOTTOM: f64 = 28.0;
const NS_PER_S: f64 = 1e9;

/// One line of a chart: points in time order, `None` marking a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Legend label.
    pub label: String,
    /// CSS class that colours the line.
    pub class: &'static str,
    /// (timestamp, value) with gaps as `None`.
    pub points: Vec<(TimestampNs, Option<f64>)>,
}

/// Converts cumulative octet counter samples into bits per second between consecutive
/// samples. A counter that goes backwards (reset, wrap), a pause much longer than the usual
/// sample spacing, or a delete of the counter (its interface removed, say) yields a gap,
/// never a zero or a spike; the first sample after a delete starts a new run. Other values
/// that are not numbers are skipped.
pub fn bit_rate(points: &[Point]) -> Vec<(TimestampNs, Option<f64>)> {
    // Numbers, and `None` for deletes.
    let series: Vec<(TimestampNs, Option<f64>)> = points
        .iter()
        .filter_map(|p| match p.value.as_f64() {
            Some(v) => Some((p.ts, Some(v))),
            None if p.value.is_deleted() => Some((p.ts, None)),
            None => None,
        })
        .collect();
    let mut spacings: Vec<i64> = series
        .windows(2)
        .filter(|w| w[0].1.is_some() && w[1].1.is_some())
        .map(|w| w[1].0 - w[0].0)
        .collect();
    spacings.sort_unstable();
    let median = spacings.get(spacings.len() / 2).copied().unwrap_or(0);
    let max_gap = median.saturating_mul(5) / 2;
    let mut out = Vec::with_capacity(series.len());
    for w in series.windows(2) {
        let ((t0, v0), (t1, v1)) = (w[0], w[1]);
        let (Some(v0), Some(v1)) = (v0, v1) else {
            if v1.is_none() {
                out.push((t1, None));
            }
            continue;
        };
        let dt = t1 - t0;
        let rate = (dt > 0 && v1 >= v0 && (max_gap == 0 || dt <= max_gap))
            .then(|| (v1 - v0) * 8.0 / (dt as f64 / NS_PER_S));
        if rate.is_none() {
            out.push((t0, None));
        }
        out.push((t1, rate));
    }
    out
}

/// Formats a rate with an SI unit and at most one decimal, dropping a zero decimal:
/// `12.3 Mb/s`, `600 Mb/s`.
pub fn format_bps(v: f64) -> String {
    let units = [(1e12, "Tb/s"), (1e9, "Gb/s"), (1e6, "Mb/s"), (1e3, "kb/s")];
    let (scaled, unit) = units
        .iter()
        .find(|(scale, _)| v.abs() >= *scale)
        .map(|&(scale, unit)| (v / scale, unit))
        .unwrap_or((v, "b/s"));
    let text = format!("{scaled:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {unit}")
}

/// A tick step for `range` giving about `target` ticks, on a 1-2-5 scale.
fn nice_step(range: f64, target: f64) -> f64 {
    if range <= 0.0 || !range.is_finite() {
        return 1.0;
    }
    let raw = range / target;
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn clock_label(ts: TimestampNs) -> String {
    let secs = ts.div_euclid(1_000_000_000);
    let day = secs.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

/// Renders lines over the window `[from, to]` as a standalone `<svg>` element with axes,
/// grid and legend. `id` becomes the element id so live updates can replace it.
pub fn render(id: &str, title: &str, lines: &[Line], from: TimestampNs, to: TimestampNs) -> String {
    let plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let span = (to - from).max(1) as f64;
    let max = lines
        .iter()
        .flat_map(|l| l.points.iter().filter_map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let step = nice_step(max.max(1.0), 4.0);
    let top = (max / step).ceil().max(1.0) * step;
    let x = |ts: TimestampNs| MARGIN_LEFT + (ts - from) as f64 / span * plot_w;
    let y = |v: f64| MARGIN_TOP + plot_h - v / top * plot_h;

    let mut svg = String::with_capacity(4096);
    let _ = write!(
        svg,
        r#"<svg id="{id}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}" xmlns="http://www.w3.org/2000/svg">"#,
        id = escape(id),
        title = escape(title),
    );
    let _ = write!(svg, "<title>{}</title>", escape(title));
    // Horizontal grid and value labels.
    let mut v = 0.0;
    while v <= top + step / 2.0 {
        let yy = y(v);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{MARGIN_LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}"/><text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            MARGIN_LEFT + plot_w,
            MARGIN_LEFT - 6.0,
            yy + 4.0,
            format_bps(v)
        );
        v += step;
    }
    // Time labels: five evenly spaced, UTC.
    for i in 0..=4 {
        let ts = from + ((to - from) as f64 * f64::from(i) / 4.0) as i64;
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            svg,
            r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
            x(ts),
            HEIGHT - 8.0,
            clock_label(ts)
        );
    }
    let _ = write!(
        svg,
        r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">UTC</text>"#,
        MARGIN_LEFT - 6.0,
        HEIGHT - 8.0
    );
    for line in lines {
        let mut d = String::new();
        let mut pen_down = false;
        for &(ts, value) in &line.points {
            if ts < from || ts > to {
                continue;
            }
            match value {
                Some(v) => {
                    let cmd = if pen_down { 'L' } else { 'M' };
                    let _ = write!(d, "{cmd}{:.1},{:.1}", x(ts), y(v));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let _ = write!(
            svg,
            r#"<path class="line {}" d="{d}"><title>{}</title></path>"#,
            line.class,
            escape(&line.label)
        );
    }
    for (i, line) in lines.iter().enumerate() {
        let lx = MARGIN_LEFT + 8.0 + i as f64 * 120.0;
        let _ = write!(
            svg,
            r#"<rect class="swatch {}" x="{lx:.1}" y="{:.1}" width="10" height="10"/><text class="legend" x="{:.1}" y="{:.1}">{}</text>"#,
            line.class,
            6.0,
            lx + 14.0,
            15.0,
            escape(&line.label)
        );
    }
    if lines.iter().all(|l| l.points.iter().all(|p| p.1.is_none())) {
        let _ = write!(
            svg,
            r#"<text class="empty" x="{:.1}" y="{:.1}" text-anchor="middle">no data in this window</text>"#,
            MARGIN_LEFT + plot_w / 2.0,
            MARGIN_TOP + plot_h / 2.0
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Value;

    fn pts(v: &[(i64, u64)]) -> Vec<Point> {
        v.iter()
            .map(|&(s, o)| Point {
                ts: s * 1_000_000_000,
                value: Value::Uint(o),
            })
            .collect()
    }

    #[test]
    fn bit_rate_is_octets_times_eight_per_second() {
        let r = bit_rate(&pts(&[(0, 0), (10, 1000), (20, 3000)]));
        assert_eq!(
            r,
            vec![
                (10_000_000_000, Some(800.0)),
                (20_000_000_000, Some(1600.0))
            ]
        );
    }

    #[test]
    fn counter_reset_and_long_pause_are_gaps_not_spikes() {
        let r = bit_rate(&pts(&[
            (0, 0),
            (10, 1000),
            (20, 500),
            (30, 1500),
            (300, 9000),
        ]));
        let values: Vec<Option<f64>> = r.iter().map(|p| p.1).collect();
        assert_eq!(values[1], None, "reset must be a gap: {r:?}");
        assert!(values.contains(&Some(800.0)));
        assert_eq!(
            *values.last().unwrap(),
            None,
            "long pause must be a gap: {r:?}"
        );
    }

    #[test]
    fn a_delete_is_a_gap_and_restarts_the_rate() {
        let mut points = pts(&[(0, 0), (10, 1000), (30, 0), (40, 1000), (50, 2000)]);
        points.insert(
            2,
            Point {
                ts: 20_000_000_000,
                value: Value::Deleted,
            },
        );
        // Text in a counter series is not a number and not a delete: skipped.
        points.push(Point {
            ts: 55_000_000_000,
            value: Value::String("n/a".into()),
        });
        let r = bit_rate(&points);
        assert_eq!(
            r,
            vec![
                (10_000_000_000, Some(800.0)),
                (20_000_000_000, None),
                (40_000_000_000, Some(800.0)),
                (50_000_000_000, Some(800.0)),
            ],
            "no rate across the delete (1000 -> 0 would be a reset anyway, so check the gap)"
        );
        // Across a delete with a counter that kept growing, still no rate.
        let mut grow = pts(&[(0, 0), (10, 1000), (30, 5000), (40, 6000)]);
        grow.insert(
            2,
            Point {
                ts: 20_000_000_000,
                value: Value::Deleted,
            },
        );
        let values: Vec<Option<f64>> = bit_rate(&grow).iter().map(|p| p.1).collect();
        assert_eq!(values, vec![Some(800.0), None, Some(800.0)]);
    }

    #[test]
    fn units_scale() {
        assert_eq!(format_bps(950.0), "950 b/s");
        assert_eq!(format_bps(1_500.0), "1.5 kb/s");
        assert_eq!(format_bps(600_000_000.0), "600 Mb/s");
        assert_eq!(format_bps(2_340_000_000.0), "2.3 Gb/s");
        assert_eq!(format_bps(0.0), "0 b/s");
    }

    #[test]
    fn renders_paths_gaps_and_escapes_labels() {
        let line = Line {
            label: "in <Ethernet1>".into(),
            class: "in",
            points: vec![(0, Some(1.0)), (10, Some(2.0)), (20, None), (30, Some(3.0))],
        };
        let svg = render("c1", "Ethernet1", &[line], 0, 40);
        assert!(svg.starts_with(r#"<svg id="c1""#));
        assert!(svg.ends_with("</svg>"));
        assert!(svg.contains("in &lt;Ethernet1&gt;"));
        // Two separate strokes because of the gap: two move commands.
        let d = svg
            .split(r#" d=""#)
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert!(!svg.contains("no data"));
    }

    #[test]
    fn empty_chart_says_so() {
        let svg = render("c", "t", &[], 0, 10);
        assert!(svg.contains("no data in this window"));
    }
}
