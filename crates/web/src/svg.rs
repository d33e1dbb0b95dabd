//! The trends chart: each test case's duration and result across a suite's sessions, drawn
//! as an SVG image on the server (no chart library in the browser).
//!
//! x: the sessions in order (one band each, oldest left); y: the case's duration. One line
//! per case instance (its colour from [`series_colour`]), one point per session and pass
//! (the passes of a repeated session side by side in its band), filled by the case's
//! result (flaky: amber); a case that has no duration in a session (not run, still running) gets
//! a hollow mark on the x axis and breaks its line. Every point links to its session and
//! has a tooltip. A pure function of its input, so it is unit-tested as text.
//!
//! [`metric`] draws each reported result's chart on the same x axis (`Bands`); [`timeline`]
//! draws a session's stage runs, sync waits and fault windows per slave.

pub mod metric;
pub mod timeline;

use std::fmt::Write;

use xrdtest_model::SessionId;

use crate::escape;

/// How a case ended in one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrendResult {
    Passed,
    Failed,
    /// Failed, then passed when run again.
    Flaky,
    NotRun,
    /// Pending or running: no result yet.
    Unfinished,
}

impl TrendResult {
    pub fn label(self) -> &'static str {
        match self {
            TrendResult::Passed => "passed",
            TrendResult::Failed => "failed",
            TrendResult::Flaky => "flaky",
            TrendResult::NotRun => "not run",
            TrendResult::Unfinished => "unfinished",
        }
    }

    pub(crate) fn colour(self) -> &'static str {
        match self {
            TrendResult::Passed => "#2e9d4f",
            TrendResult::Failed => "#d64545",
            TrendResult::Flaky => "#e0a800",
            TrendResult::NotRun => "#9aa0a6",
            TrendResult::Unfinished => "#2f6fd6",
        }
    }
}

/// One case in one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrendPoint {
    pub session: SessionId,
    /// Which pass over the case list (1 unless the session repeated its cases).
    pub pass: u32,
    /// From the case's start to its end; `None` when it did not run or has not ended.
    pub duration_ms: Option<u64>,
    pub result: TrendResult,
}

/// One case across sessions, in session order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseSeries {
    pub name: String,
    pub points: Vec<TrendPoint>,
}

/// Line colours, distinguishable and readable on white; case `i` uses `PALETTE[i % len]`.
const PALETTE: [&str; 10] =
    ["#1f77b4", "#ff7f0e", "#9467bd", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#393b79", "#637939"];

/// The colour of the `index`th series' line (for a legend beside the chart).
pub fn series_colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

/// The x axis of a chart over sessions: one band per session, oldest left, shared by the
/// passes of a repeated session (side by side in it).
pub(crate) struct Bands {
    /// Sorted, without duplicates.
    sessions: Vec<SessionId>,
    /// Per session, its passes (at least 1).
    passes: Vec<u32>,
    left: f64,
    band: f64,
}

impl Bands {
    /// The bands of every (session, pass) in `points`, over `width` from `left`.
    pub(crate) fn new(points: impl IntoIterator<Item = (SessionId, u32)>, left: f64, width: f64) -> Bands {
        let points: Vec<(SessionId, u32)> = points.into_iter().collect();
        let mut sessions: Vec<SessionId> = points.iter().map(|(session, _)| *session).collect();
        sessions.sort_unstable();
        sessions.dedup();
        let mut passes = vec![1u32; sessions.len()];
        for (session, pass) in points {
            if let Ok(index) = sessions.binary_search(&session) {
                passes[index] = passes[index].max(pass);
            }
        }
        let band = width / sessions.len().max(1) as f64;
        Bands { sessions, passes, left, band }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The x of a session's pass.
    pub(crate) fn at(&self, session: SessionId, pass: u32) -> f64 {
        let index = self.sessions.binary_search(&session).unwrap_or(0);
        let passes = self.passes.get(index).copied().unwrap_or(1);
        let within = (f64::from(pass.clamp(1, passes)) - 0.5) / f64::from(passes);
        self.left + self.band * (index as f64 + within)
    }

    /// The x of a session's band's middle.
    pub(crate) fn centre(&self, session: SessionId) -> f64 {
        let index = self.sessions.binary_search(&session).unwrap_or(0);
        self.left + self.band * (index as f64 + 0.5)
    }

    /// Writes the `#id` labels under the axis at `y`: at most about ten, evenly spread,
    /// always the newest.
    pub(crate) fn write_labels(&self, svg: &mut String, y: f64) {
        let sessions = &self.sessions;
        let every = sessions.len().div_ceil(10).max(1);
        for (index, session) in sessions.iter().enumerate() {
            if index % every == 0 || index + 1 == sessions.len() {
                if index % every != 0 && (sessions.len() - 1) % every < every / 2 {
                    continue; // too close to the previous label
                }
                let _ = write!(
                    svg,
                    r##"<text x="{:.1}" y="{y:.1}" text-anchor="middle" fill="#4b5563">#{session}</text>"##,
                    self.centre(*session),
                );
            }
        }
    }
}

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 340.0;
const LEFT: f64 = 70.0;

/// The y axis at `left` from `top` to `bottom` and the x axis along `bottom` to `right`,
/// as every chart of the trends page draws them.
fn write_axes(svg: &mut String, left: f64, top: f64, bottom: f64, right: f64) {
    let _ = write!(
        svg,
        r##"<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#6b7280"/><line x1="{left}" y1="{bottom}" x2="{right:.1}" y2="{bottom}" stroke="#6b7280"/>"##,
    );
}
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 52.0;

/// A short duration for axis labels: `0`, `500 ms`, `30 s`, `2 min`, `1.5 h`.
fn axis_duration(ms: u64) -> String {
    if ms == 0 {
        "0".into()
    } else if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        trim(ms as f64 / 1000.0, "s")
    } else if ms < 3_600_000 {
        trim(ms as f64 / 60_000.0, "min")
    } else {
        trim(ms as f64 / 3_600_000.0, "h")
    }
}

fn trim(value: f64, unit: &str) -> String {
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {unit}")
}

/// A tooltip's duration: exact enough to compare runs.
fn tooltip_duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.2} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {:02} s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// The step of the y axis: 1, 2 or 5 times a power of ten (or a round unit of time), giving
/// at most about five ticks up to `max`.
fn tick_step(max: u64) -> u64 {
    const STEPS: [u64; 25] = [
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
        600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 18_000_000, 36_000_000,
    ];
    let wanted = max.div_ceil(5).max(1);
    STEPS.iter().copied().find(|step| *step >= wanted).unwrap_or_else(|| wanted.next_power_of_two())
}

/// The chart as a standalone `<svg>` element, scaled to its container's width.
pub fn trends_svg(series: &[CaseSeries]) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let bands = Bands::new(series.iter().flat_map(|s| s.points.iter().map(|p| (p.session, p.pass))), LEFT, plot_w);

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="trends" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-label="case durations and results per session" font-family="system-ui, sans-serif" font-size="12">"#
    );
    let plot_h = HEIGHT - TOP - BOTTOM;
    let bottom = TOP + plot_h;
    if bands.is_empty() {
        let _ = write!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#d0d4da"/><text x="{}" y="{}" text-anchor="middle" fill="#6b7280">No sessions yet</text></svg>"##,
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
        return svg;
    }

    let max = series.iter().flat_map(|s| s.points.iter().filter_map(|p| p.duration_ms)).max().unwrap_or(0);
    let step = tick_step(max);
    let top_value = (max.div_ceil(step).max(1)) * step;
    let y = |ms: u64| bottom - (ms as f64 / top_value as f64) * plot_h;
    let at = |session: SessionId, pass: u32| bands.at(session, pass);

    // Grid lines and y labels.
    let mut value = 0;
    while value <= top_value {
        let at = y(value);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{at:.1}" x2="{:.1}" y2="{at:.1}" stroke="#e5e7eb"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#4b5563">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            at + 4.0,
            escape::html(&axis_duration(value))
        );
        value += step;
    }
    write_axes(&mut svg, LEFT, TOP, bottom, LEFT + plot_w);
    bands.write_labels(&mut svg, bottom + 16.0);
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#374151">session</text><text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle" fill="#374151">duration</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 8.0,
        TOP + plot_h / 2.0
    );

    for (index, case) in series.iter().enumerate() {
        let colour = series_colour(index);
        let name = escape::html(&case.name);
        let _ = write!(svg, r#"<g class="series" data-case="{name}">"#);
        // The line, broken where the case has no duration.
        let mut segment: Vec<String> = Vec::new();
        let mut segments = Vec::new();
        for point in &case.points {
            match point.duration_ms {
                Some(ms) => segment.push(format!("{:.1},{:.1}", at(point.session, point.pass), y(ms))),
                None => segments.push(std::mem::take(&mut segment)),
            }
        }
        segments.push(segment);
        for segment in segments.iter().filter(|s| s.len() > 1) {
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.8" stroke-linejoin="round" points="{}"/>"#,
                segment.join(" ")
            );
        }
        for point in &case.points {
            let pass = if point.pass > 1 { format!(" pass {}", point.pass) } else { String::new() };
            let tooltip = match point.duration_ms {
                Some(ms) => format!(
                    "{} — session #{}{pass}: {}, {}",
                    case.name,
                    point.session,
                    point.result.label(),
                    tooltip_duration(ms)
                ),
                None => format!("{} — session #{}{pass}: {}", case.name, point.session, point.result.label()),
            };
            let mark = match point.duration_ms {
                Some(ms) => format!(
                    r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{}" stroke="{colour}" stroke-width="1.5">"#,
                    at(point.session, point.pass),
                    y(ms),
                    point.result.colour()
                ),
                None => format!(
                    r#"<circle class="no-duration" cx="{:.1}" cy="{bottom:.1}" r="3.5" fill="white" stroke="{}" stroke-width="1.5">"#,
                    at(point.session, point.pass),
                    point.result.colour()
                ),
            };
            let _ = write!(
                svg,
                r#"<a href="/sessions/{}" class="point result-{}">{mark}<title>{}</title></circle></a>"#,
                point.session,
                point.result.label().replace(' ', "-"),
                escape::html(&tooltip)
            );
        }
        svg.push_str("</g>");
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn point(session: SessionId, duration_ms: Option<u64>, result: TrendResult) -> TrendPoint {
        TrendPoint { session, pass: 1, duration_ms, result }
    }

    /// Checks that every element is closed in order and every attribute value is quoted:
    /// enough of XML to catch a broken chart.
    pub(crate) fn assert_well_formed(svg: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let text = &rest[..start];
            assert!(!text.contains('>'), "stray `>` in text: {text}");
            let end = rest[start..].find('>').expect("unclosed tag") + start;
            let tag = &rest[start + 1..end];
            assert!(!tag.contains('<'), "`<` inside a tag: {tag}");
            assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes: {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "mismatched close");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap_or("").to_string());
            }
            rest = &rest[end + 1..];
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "bad number in {svg}");
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
    }

    #[test]
    fn empty_input_and_cases_without_points_draw_an_empty_chart() {
        for svg in [trends_svg(&[]), trends_svg(&[CaseSeries { name: "a".into(), points: vec![] }])] {
            assert_well_formed(&svg);
            assert!(svg.contains("No sessions yet"));
        }
    }

    #[test]
    fn one_point_is_centred_and_labelled() {
        let svg =
            trends_svg(&[CaseSeries { name: "only".into(), points: vec![point(7, Some(1500), TrendResult::Passed)] }]);
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(!svg.contains("<polyline"), "one point draws no line");
        assert!(svg.contains(r#"href="/sessions/7""#));
        assert!(svg.contains(">#7<"));
        assert!(svg.contains("only — session #7: passed, 1.50 s"));
        // Centred in the only band.
        assert!(svg.contains(&format!(r#"cx="{:.1}""#, LEFT + (WIDTH - LEFT - RIGHT) / 2.0)));
    }

    #[test]
    fn zero_durations_do_not_divide_by_zero() {
        let svg = trends_svg(&[CaseSeries {
            name: "fast".into(),
            points: vec![point(1, Some(0), TrendResult::Passed), point(2, Some(0), TrendResult::Failed)],
        }]);
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<polyline").count(), 1);
    }

    #[test]
    fn names_are_escaped_and_results_coloured() {
        let svg = trends_svg(&[CaseSeries {
            name: "<script>alert('x')</script>&".into(),
            points: vec![
                point(1, Some(1000), TrendResult::Passed),
                point(2, Some(3000), TrendResult::Failed),
                point(3, None, TrendResult::NotRun),
            ],
        }]);
        assert_well_formed(&svg);
        assert!(!svg.contains("<script"));
        assert!(svg.contains("&#60;script&#62;alert(&#39;x&#39;)&#60;/script&#62;&#38;"), "{svg}");
        assert!(svg.contains(TrendResult::Passed.colour()) && svg.contains(TrendResult::Failed.colour()));
        assert!(svg.contains(r#"class="no-duration""#));
        assert!(svg.contains("class=\"point result-not-run\""));
    }

    #[test]
    fn missing_durations_break_lines_and_series_share_the_x_axis() {
        let a = CaseSeries {
            name: "a".into(),
            points: vec![
                point(10, Some(100), TrendResult::Passed),
                point(11, Some(200), TrendResult::Passed),
                point(12, None, TrendResult::NotRun),
                point(13, Some(300), TrendResult::Passed),
                point(14, Some(250), TrendResult::Passed),
            ],
        };
        let b = CaseSeries { name: "b".into(), points: vec![point(12, Some(90_000), TrendResult::Failed)] };
        let svg = trends_svg(&[a, b]);
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<polyline").count(), 2, "two segments for a, none for b");
        assert_eq!(svg.matches("<circle").count(), 6);
        assert!(svg.contains(series_colour(0)) && svg.contains(series_colour(1)));
        // The y axis reaches past the longest duration, in minutes.
        assert!(svg.contains(">1.5 min<") || svg.contains(">2 min<"), "{svg}");
    }

    #[test]
    fn many_sessions_get_a_readable_number_of_labels() {
        let points = (1..=200).map(|id| point(id, Some(id * 10), TrendResult::Passed)).collect();
        let svg = trends_svg(&[CaseSeries { name: "long".into(), points }]);
        assert_well_formed(&svg);
        let labels = svg.matches(">#").count();
        assert!((5..=12).contains(&labels), "{labels} x labels");
        assert!(svg.contains(">#200<"), "the newest session is labelled");
    }

    #[test]
    fn flaky_points_have_their_colour_and_passes_share_their_sessions_band() {
        let pass = |session, pass, result| TrendPoint { session, pass, duration_ms: Some(1000), result };
        let svg = trends_svg(&[CaseSeries {
            name: "warm_up".into(),
            points: vec![
                pass(1, 1, TrendResult::Flaky),
                pass(2, 1, TrendResult::Passed),
                pass(2, 2, TrendResult::Flaky),
            ],
        }]);
        assert_well_formed(&svg);
        assert!(svg.contains(TrendResult::Flaky.colour()));
        assert_eq!(svg.matches("class=\"point result-flaky\"").count(), 2);
        assert!(svg.contains("warm_up — session #2 pass 2: flaky, 1.00 s"), "{svg}");
        // Session 2's band holds its two passes at a quarter and three quarters.
        let band = (WIDTH - LEFT - RIGHT) / 2.0;
        for within in [1.25, 1.75] {
            assert!(svg.contains(&format!(r#"cx="{:.1}""#, LEFT + band * within)), "{svg}");
        }
        assert!(svg.contains(&format!(r#"cx="{:.1}""#, LEFT + band * 0.5)), "a session of one pass is centred");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(0), 1);
        assert_eq!(tick_step(9), 2);
        assert_eq!(tick_step(4_000), 1_000);
        assert_eq!(tick_step(90_000), 30_000);
        assert_eq!(axis_duration(30_000), "30 s");
        assert_eq!(axis_duration(90_000), "1.5 min");
        assert_eq!(axis_duration(500), "500 ms");
    }
}
