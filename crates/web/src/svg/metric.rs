//! The chart of one result of one case instance across a suite's sessions, drawn on the
//! server like the durations chart.
//!
//! x: the sessions in order (the bands of `Bands`, passes side by side); y: the value, the
//! result's name and unit as the axis title. One line per slave (its colour from
//! [`series_colour`], named in a legend above the plot), the case's `min` and `max` as
//! dashed labelled lines, and the points whose threshold check failed as red marks. Every
//! point links to its session and has a tooltip; past `dots == false` (a page with very many
//! values) only the failed points are marked, the lines carry the rest. Every name is escaped:
//! results, instances, slaves and units come from scripts and configurations.

use std::fmt::Write;

use xrdtest_defs::Threshold;

use super::{series_colour, write_axes, Bands};
use crate::escape;
use crate::result_history::MetricHistory;

const WIDTH: f64 = 640.0;
const PLOT_HEIGHT: f64 = 190.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 44.0;
const LEGEND_ROW: f64 = 18.0;
/// The mark of a point whose check failed, and of its legend entry.
const FAILED: &str = "#d64545";
const BOUND: &str = "#b3261e";

/// A step of 1, 2 or 5 times a power of ten, giving about five ticks over `span`.
fn nice_step(span: f64) -> f64 {
    let rough = span / 5.0;
    if !rough.is_finite() || rough <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(rough.log10().floor());
    let fraction = rough / power;
    let nice = match fraction {
        f if f <= 1.0 => 1.0,
        f if f <= 2.0 => 2.0,
        f if f <= 5.0 => 5.0,
        _ => 10.0,
    };
    nice * power
}

/// The y axis: from `low` to `high` (round values), in steps of `step`.
struct Scale {
    low: f64,
    high: f64,
    step: f64,
}

impl Scale {
    /// A range holding every value: from 0 when all are positive and 0 is not far, padded
    /// when they are all equal.
    fn of(values: &[f64]) -> Scale {
        let finite = values.iter().copied().filter(|v| v.is_finite());
        let (mut low, mut high) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
        if low > high {
            (low, high) = (0.0, 1.0);
        }
        if low >= 0.0 && low <= high / 2.0 {
            low = 0.0;
        }
        if high - low <= f64::EPSILON * high.abs().max(1.0) {
            let pad = (high.abs() * 0.1).max(1.0);
            high += pad;
            low = if low >= 0.0 && low - pad < 0.0 { 0.0 } else { low - pad };
        }
        let step = nice_step(high - low);
        let low = (low / step).floor() * step;
        let mut high = (high / step).ceil() * step;
        if high <= low {
            high = low + step;
        }
        Scale { low, high, step }
    }

    /// Room of one step past a bound that sits on an edge, so that its line is not drawn
    /// over an axis (but for a lower edge at 0, where values are usually counts or times).
    fn with_room_for(mut self, bounds: &[f64]) -> Scale {
        let near = |a: f64, b: f64| (a - b).abs() <= self.step * 1e-9;
        if bounds.iter().any(|b| near(*b, self.high)) {
            self.high += self.step;
        }
        if self.low != 0.0 && bounds.iter().any(|b| near(*b, self.low)) {
            self.low -= self.step;
        }
        self
    }

    fn ticks(&self) -> impl Iterator<Item = f64> + '_ {
        let count = ((self.high - self.low) / self.step).round().clamp(1.0, 20.0) as usize;
        (0..=count).map(move |i| self.low + self.step * i as f64)
    }

    /// Decimals that tell the ticks apart.
    fn decimals(&self) -> usize {
        (-self.step.log10().floor()).clamp(0.0, 9.0) as usize
    }
}

/// A tick's label: `0`, `12.5`, `1.5e7` for very large ones.
fn axis_number(value: f64, decimals: usize) -> String {
    let text = if value.abs() >= 1e7 { format!("{value:.1e}") } else { format!("{value:.decimals$}") };
    match text.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') {
        true => "0".to_string(),
        false => text,
    }
}

/// A value with its unit, for tooltips and bound labels: `12.5 ms`.
fn with_unit(value: f64, unit: &str) -> String {
    match unit.is_empty() {
        true => format!("{value}"),
        false => format!("{value} {unit}"),
    }
}

/// Cuts a legend name to `max` characters, with `…`.
fn short(name: &str, max: usize) -> String {
    match name.chars().count() > max {
        true => format!("{}…", name.chars().take(max - 1).collect::<String>()),
        false => name.to_string(),
    }
}

/// One legend entry: its mark's colour, its text, and whether it is the failed-check one.
struct LegendEntry {
    colour: &'static str,
    text: String,
    title: String,
    failed: bool,
}

/// The legend's entries laid out in rows over the width: (entry, x, row).
fn legend_layout(entries: &[LegendEntry]) -> (Vec<(f64, usize)>, usize) {
    let mut places = Vec::new();
    let (mut x, mut row) = (LEFT, 0usize);
    for entry in entries {
        // About 6.6 px per character at 12 px: enough for a system sans-serif.
        let width = 26.0 + entry.text.chars().count() as f64 * 6.6 + 12.0;
        if x > LEFT && x + width > WIDTH - RIGHT {
            x = LEFT;
            row += 1;
        }
        places.push((x, row));
        x += width;
    }
    (places, if entries.is_empty() { 0 } else { row + 1 })
}

/// The chart of `history`, with `threshold`'s `min` and `max` when the case has them.
pub fn metric_svg(history: &MetricHistory, threshold: Option<&Threshold>, dots: bool) -> String {
    let unit = history.unit();
    let slaves = history.slaves();
    let mut entries: Vec<LegendEntry> = slaves
        .iter()
        .enumerate()
        .map(|(index, slave)| LegendEntry {
            colour: series_colour(index),
            text: short(slave, 32),
            title: slave.to_string(),
            failed: false,
        })
        .collect();
    if history.any_failed() {
        entries.push(LegendEntry {
            colour: FAILED,
            text: "check failed".into(),
            title: "its threshold check failed".into(),
            failed: true,
        });
    }
    let (places, rows) = legend_layout(&entries);
    let top = TOP + rows as f64 * LEGEND_ROW;
    let height = top + PLOT_HEIGHT + BOTTOM;
    let plot_w = WIDTH - LEFT - RIGHT;
    let bottom = top + PLOT_HEIGHT;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="metric" data-instance="{}" data-result="{}" data-unit="{}" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="{} of {} per session and slave" font-family="system-ui, sans-serif" font-size="12">"#,
        escape::html(&history.instance),
        escape::html(&history.result),
        escape::html(unit),
        escape::html(&history.result),
        escape::html(&history.instance),
    );
    for (entry, (x, row)) in entries.iter().zip(&places) {
        let y = TOP + *row as f64 * LEGEND_ROW + 9.0;
        let mark = match entry.failed {
            true => format!(
                r##"<circle cx="{:.1}" cy="{y:.1}" r="4.5" fill="{FAILED}" stroke="#7f1d1d" stroke-width="1.5"/>"##,
                x + 10.0
            ),
            false => format!(
                r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="2.5"/>"#,
                x + 20.0,
                entry.colour
            ),
        };
        let _ = write!(
            svg,
            r##"<g class="legend-entry"><title>{}</title>{mark}<text x="{:.1}" y="{:.1}" fill="#374151">{}</text></g>"##,
            escape::html(&entry.title),
            x + 26.0,
            y + 4.0,
            escape::html(&entry.text)
        );
    }
    let axis_title = match unit.is_empty() {
        true => history.result.clone(),
        false => format!("{} ({unit})", history.result),
    };
    let _ = write!(
        svg,
        r##"<text class="axis-title" transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle" fill="#374151">{}</text>"##,
        top + PLOT_HEIGHT / 2.0,
        escape::html(&axis_title)
    );
    if history.points.is_empty() {
        let _ = write!(
            svg,
            r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PLOT_HEIGHT}" fill="none" stroke="#d0d4da"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#6b7280">No values yet</text></svg>"##,
            LEFT + plot_w / 2.0,
            top + PLOT_HEIGHT / 2.0
        );
        return svg;
    }

    let bounds: Vec<(&str, f64)> = threshold
        .map(|t| [("min", t.min), ("max", t.max)].into_iter().filter_map(|(n, v)| v.map(|v| (n, v))).collect())
        .unwrap_or_default();
    let mut values: Vec<f64> = history.points.iter().map(|p| p.value).collect();
    values.extend(bounds.iter().map(|(_, v)| *v));
    let scale = Scale::of(&values).with_room_for(&bounds.iter().map(|(_, v)| *v).collect::<Vec<_>>());
    let y = |value: f64| bottom - (value - scale.low) / (scale.high - scale.low) * PLOT_HEIGHT;
    let bands = Bands::new(history.points.iter().map(|p| (p.session, p.pass)), LEFT, plot_w);

    // Grid and y labels.
    let decimals = scale.decimals();
    for tick in scale.ticks() {
        let at = y(tick);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{at:.1}" x2="{:.1}" y2="{at:.1}" stroke="#e5e7eb"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#4b5563">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            at + 4.0,
            axis_number(tick, decimals)
        );
    }
    write_axes(&mut svg, LEFT, top, bottom, LEFT + plot_w);
    bands.write_labels(&mut svg, bottom + 16.0);
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#374151">session</text>"##,
        LEFT + plot_w / 2.0,
        bottom + 36.0
    );

    // The case's bounds: the max label above its line, the min label below, so that close
    // bounds stay readable; inside the plot when a line runs along its edge.
    for (name, value) in &bounds {
        let at = y(*value);
        let above = match *name == "max" {
            true => at - top > 16.0,
            false => bottom - at <= 16.0,
        };
        let label_y = if above { at - 4.0 } else { at + 13.0 };
        let _ = write!(
            svg,
            r##"<g class="threshold threshold-{name}" data-value="{value}"><line x1="{LEFT}" y1="{at:.1}" x2="{:.1}" y2="{at:.1}" stroke="{BOUND}" stroke-width="1.2" stroke-dasharray="6 4"/><text x="{:.1}" y="{label_y:.1}" text-anchor="end" fill="{BOUND}">{}</text></g>"##,
            LEFT + plot_w,
            LEFT + plot_w - 4.0,
            escape::html(&format!("{name} {}", with_unit(*value, unit)))
        );
    }

    let instance = &history.instance;
    let mut failed_marks = String::new();
    for (index, slave) in slaves.iter().enumerate() {
        let colour = series_colour(index);
        let points: Vec<_> = history.points.iter().filter(|p| p.slave == *slave).collect();
        let _ = write!(svg, r#"<g class="series" data-slave="{}">"#, escape::html(slave));
        if points.len() > 1 {
            let line: Vec<String> =
                points.iter().map(|p| format!("{:.1},{:.1}", bands.at(p.session, p.pass), y(p.value))).collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.8" stroke-linejoin="round" points="{}"><title>{}</title></polyline>"#,
                line.join(" "),
                escape::html(slave)
            );
        }
        for point in &points {
            let failed = point.passed == Some(false);
            if !dots && !failed && points.len() > 1 {
                continue;
            }
            let pass = if point.pass > 1 { format!(" pass {}", point.pass) } else { String::new() };
            let verdict = match point.passed {
                Some(true) => ", check passed",
                Some(false) => ", check failed",
                None => "",
            };
            let tooltip = format!(
                "{instance} · {} — session #{}{pass} on {slave}: {}{verdict}",
                history.result,
                point.session,
                with_unit(point.value, &point.unit)
            );
            let (cx, cy) = (bands.at(point.session, point.pass), y(point.value));
            // A slave's only point has no line to show it: a larger dot.
            let radius = if points.len() == 1 { 4.5 } else { 3.5 };
            let mark = match failed {
                true => format!(
                    r##"<circle cx="{cx:.1}" cy="{cy:.1}" r="5.5" fill="{FAILED}" stroke="#7f1d1d" stroke-width="1.5">"##
                ),
                false => format!(
                    r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="{radius}" fill="{colour}" stroke="white" stroke-width="1">"#
                ),
            };
            let html = format!(
                r#"<a href="/sessions/{}" class="point{}">{mark}<title>{}</title></circle></a>"#,
                point.session,
                if failed { " check-failed" } else { "" },
                escape::html(&tooltip)
            );
            // Failed marks go on top of every line.
            match failed {
                true => failed_marks.push_str(&html),
                false => svg.push_str(&html),
            }
        }
        svg.push_str("</g>");
    }
    svg.push_str(&failed_marks);
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result_history::MetricPoint;
    use crate::svg::tests::assert_well_formed;
    use xrdtest_defs::Better;
    use xrdtest_model::SessionId;

    fn point(session: SessionId, slave: &str, value: f64, passed: Option<bool>) -> MetricPoint {
        MetricPoint { session, pass: 1, slave: slave.into(), value, unit: "ms".into(), passed, ended_ms: None }
    }

    fn history(points: Vec<MetricPoint>) -> MetricHistory {
        MetricHistory { instance: "copy[size=64]".into(), case: "copy".into(), result: "latency_ms".into(), points }
    }

    fn bounds(min: Option<f64>, max: Option<f64>) -> Threshold {
        Threshold { min, max, regress_pct: None, baseline: 5, better: Better::Either }
    }

    #[test]
    fn no_points_draw_an_empty_chart_with_its_axis_title() {
        let svg = metric_svg(&history(Vec::new()), Some(&bounds(None, Some(100.0))), true);
        assert_well_formed(&svg);
        assert!(svg.contains("No values yet"));
        assert!(svg.contains(">latency_ms<"), "{svg}");
    }

    #[test]
    fn one_point_is_centred_with_its_unit_and_bounds() {
        let svg =
            metric_svg(&history(vec![point(7, "s1", 12.5, Some(true))]), Some(&bounds(Some(1.0), Some(100.0))), true);
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(!svg.contains("<polyline"), "one point draws no line");
        assert!(svg.contains(&format!(r#"cx="{:.1}""#, LEFT + (WIDTH - LEFT - RIGHT) / 2.0)), "{svg}");
        assert!(svg.contains(">latency_ms (ms)<"), "the unit on the axis");
        assert!(svg.contains(r#"class="threshold threshold-max" data-value="100""#));
        assert!(svg.contains(">max 100 ms<") && svg.contains(">min 1 ms<"), "{svg}");
        assert!(svg.contains("copy[size=64] · latency_ms — session #7 on s1: 12.5 ms, check passed"));
        assert!(svg.contains(r#"href="/sessions/7""#) && svg.contains(">#7<"));
        // The y axis reaches the max bound.
        assert!(svg.contains(">100<"), "{svg}");
    }

    #[test]
    fn a_line_per_slave_a_legend_and_failed_checks_marked_on_top() {
        let svg = metric_svg(
            &history(vec![
                point(1, "s1", 10.0, None),
                point(1, "s2", 20.0, None),
                point(2, "s1", 11.0, None),
                point(2, "s2", 150.0, Some(false)),
                point(3, "s1", 12.0, None),
            ]),
            Some(&bounds(None, Some(100.0))),
            true,
        );
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches(r#"class="legend-entry""#).count(), 3, "two slaves and the failed mark");
        assert!(svg.contains(">check failed<"));
        assert_eq!(svg.matches("class=\"point check-failed\"").count(), 1);
        assert!(svg.rfind("check-failed").unwrap() > svg.rfind("<polyline").unwrap(), "drawn last");
        assert!(svg.contains(series_colour(0)) && svg.contains(series_colour(1)));
        assert!(svg.contains("session #2 on s2: 150 ms, check failed"));
        // Without dots only the failed one is marked.
        let lines_only = metric_svg(
            &history(vec![point(1, "s1", 1.0, None), point(2, "s1", 2.0, Some(false)), point(3, "s1", 3.0, None)]),
            None,
            false,
        );
        assert_well_formed(&lines_only);
        assert_eq!(lines_only.matches("class=\"point").count(), 1, "{lines_only}");
    }

    #[test]
    fn hostile_names_and_units_are_escaped() {
        let mut hostile = history(vec![
            MetricPoint { unit: "<b>&\"'".into(), ..point(1, "<script>alert(1)</script>", 1.0, Some(false)) },
            MetricPoint { unit: "<b>&\"'".into(), ..point(2, "<script>alert(1)</script>", 2.0, None) },
        ]);
        hostile.instance = "c[mode=\"><img src=x onerror=alert(2)>]".into();
        hostile.result = "r\"/><script>".into();
        let svg = metric_svg(&hostile, Some(&bounds(Some(0.5), None)), true);
        assert_well_formed(&svg);
        assert!(!svg.contains("<script") && !svg.contains("<img") && !svg.contains("<b>"), "{svg}");
        assert!(svg.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
        assert!(svg.contains("data-unit=\"&#60;b&#62;&#38;&#34;&#39;\""));
    }

    #[test]
    fn equal_negative_and_huge_values_get_round_finite_axes() {
        for values in [vec![5.0, 5.0], vec![0.0, 0.0], vec![-3.0, -1.5, 2.0], vec![1e9, 3e9], vec![0.001, 0.002]] {
            let points = values.iter().enumerate().map(|(i, v)| point(i as u64 + 1, "s1", *v, None)).collect();
            let svg = metric_svg(&history(points), None, true);
            assert_well_formed(&svg);
        }
        let scale = Scale::of(&[-3.0, 2.0]);
        assert_eq!((scale.low, scale.high, scale.step), (-3.0, 2.0, 1.0));
        let scale = Scale::of(&[5.0, 5.0]);
        assert!(scale.low < 5.0 && scale.high > 5.0);
        let scale = Scale::of(&[40.0, 95.0]);
        assert_eq!((scale.low, scale.high), (0.0, 100.0), "positive values near 0 start at 0");
        let scale = Scale::of(&[1000.0, 1002.0]);
        assert!(scale.low >= 999.0, "a narrow band far from 0 is not flattened");
        assert_eq!(axis_number(-0.0, 1), "0");
        assert_eq!(axis_number(2.5, 1), "2.5");
        assert_eq!(axis_number(3e9, 0), "3.0e9");
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(nice_step(47.0), 10.0);
    }

    /// The number in the first `name="…"` of `svg` after `marker`.
    fn number_after(svg: &str, marker: &str, name: &str) -> f64 {
        let rest = &svg[svg.find(marker).expect("the marker")..];
        let start = rest.find(&format!(" {name}=\"")).expect("the attribute") + name.len() + 3;
        rest[start..start + rest[start..].find('"').expect("its end")].parse().expect("a number")
    }

    #[test]
    fn bounds_on_an_edge_get_room_and_their_labels_stay_inside() {
        let scale = Scale::of(&[60.0, 80.0, 50.0]).with_room_for(&[50.0]);
        assert_eq!((scale.low, scale.high), (40.0, 80.0), "a step below the min");
        let scale = Scale::of(&[0.0, 100.0]).with_room_for(&[0.0, 100.0]);
        assert_eq!((scale.low, scale.high), (0.0, 120.0), "0 stays the floor");
        let svg = metric_svg(
            &history(vec![point(1, "s1", 0.0, None), point(2, "s1", 90.0, None)]),
            Some(&bounds(Some(0.0), Some(90.0))),
            true,
        );
        assert_well_formed(&svg);
        // The min line is the x axis: its label goes above it, inside the plot.
        let line = number_after(&svg, "threshold-min", "y1");
        let label = number_after(&svg, "threshold-min", "y");
        assert!(label < line, "label {label} above the line {line}");
        let line = number_after(&svg, "threshold-max", "y1");
        let label = number_after(&svg, "threshold-max", "y");
        assert!(label < line, "the max label above its line, with room: {label} {line}");
    }

    #[test]
    fn long_legends_wrap_into_rows() {
        let points =
            (0..12).map(|i| point(1, &format!("slave-with-a-long-name-{i:02}.cluster.test"), i as f64, None)).collect();
        let svg = metric_svg(&history(points), None, true);
        assert_well_formed(&svg);
        let (_, rows) = legend_layout(
            &(0..12)
                .map(|i| LegendEntry {
                    colour: "#000",
                    text: format!("slave-with-a-long-name-{i:02}"),
                    title: String::new(),
                    failed: false,
                })
                .collect::<Vec<_>>(),
        );
        assert!(rows >= 3, "{rows} rows");
    }
}
