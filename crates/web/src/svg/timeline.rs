//! A session's timeline: one row per slave, its stage runs as bars along the session's
//! time, its sync waits as thin marks under them (blue met, red failed), and the windows of
//! the faults that held on it shaded across its row, as Jepsen shades fault windows on its
//! plots. Every element has a tooltip. A pure function of the record and its timeline, so
//! it is unit-tested as text.

use std::fmt::Write;

use xrdtest_model::{RunState, SessionRecord, Timeline};

use super::TrendResult;
use crate::escape;

const LABEL_WIDTH: f64 = 120.0;
const PLOT_WIDTH: f64 = 760.0;
const ROW_HEIGHT: f64 = 30.0;
const TOP: f64 = 8.0;
const AXIS_HEIGHT: f64 = 34.0;
const LEGEND_HEIGHT: f64 = 22.0;

/// A run's bar in the trends chart's colours.
fn run_colour(state: RunState) -> &'static str {
    let result = match state {
        RunState::Passed => TrendResult::Passed,
        RunState::Failed | RunState::TimedOut | RunState::Disconnected => TrendResult::Failed,
        RunState::Cancelled | RunState::Skipped => TrendResult::NotRun,
        RunState::Pending | RunState::Running => TrendResult::Unfinished,
    };
    result.colour()
}

/// The SVG, or `None` when nothing of the session has started yet. `now_ms` ends what has
/// not ended (a running stage, a fault still held).
pub fn timeline_svg(record: &SessionRecord, timeline: &Timeline, now_ms: u64) -> Option<String> {
    let runs = record.stages.iter().flat_map(|stage| stage.runs.iter().map(move |run| (stage, run)));
    let start = runs
        .clone()
        .filter_map(|(_, run)| run.started_ms)
        .chain(timeline.waits.iter().map(|w| w.started_unix_ms))
        .chain(timeline.faults.iter().map(|f| f.started_unix_ms))
        .min()?;
    let end = runs
        .clone()
        .map(|(_, run)| run.ended_ms.unwrap_or(if run.started_ms.is_some() { now_ms } else { start }))
        .chain(timeline.waits.iter().map(|w| w.ended_unix_ms))
        .chain(timeline.faults.iter().map(|f| f.ended_unix_ms.unwrap_or(now_ms)))
        .chain(record.ended_ms)
        .max()
        .unwrap_or(start)
        .max(start + 1);
    let span = (end - start) as f64;
    let x = |ms: u64| LABEL_WIDTH + (ms.clamp(start, end) - start) as f64 / span * PLOT_WIDTH;
    let row_of = |slave: &str| record.slaves.iter().position(|s| s == slave);
    let y = |row: usize| TOP + row as f64 * ROW_HEIGHT;
    let rows = record.slaves.len().max(1);
    let height = TOP + rows as f64 * ROW_HEIGHT + AXIS_HEIGHT + LEGEND_HEIGHT;
    let width = LABEL_WIDTH + PLOT_WIDTH + 20.0;

    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"Timeline of session {}\" font-size=\"12\" \
         font-family=\"sans-serif\">",
        record.id
    );
    for (row, slave) in record.slaves.iter().enumerate() {
        let _ = write!(
            svg,
            "<text x=\"4\" y=\"{:.1}\" class=\"tl-slave\">{}</text>\
             <line x1=\"{LABEL_WIDTH}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#e3e5e8\"/>",
            y(row) + ROW_HEIGHT / 2.0 + 4.0,
            escape::html(slave),
            LABEL_WIDTH + PLOT_WIDTH,
            y(row) + ROW_HEIGHT,
            y(row) + ROW_HEIGHT,
        );
    }
    // Fault windows first, under everything else.
    for fault in &timeline.faults {
        let (x0, x1) = (x(fault.started_unix_ms), x(fault.ended_unix_ms.unwrap_or(now_ms)));
        let until = match fault.ended_unix_ms {
            Some(ended) => format!("{:.1} s", (ended.saturating_sub(fault.started_unix_ms)) as f64 / 1000.0),
            None => "never healed".to_string(),
        };
        let title = format!(
            "fault {} {}: {} ({until}){}",
            fault.id,
            fault.kind,
            fault.params,
            fault.error.as_deref().map(|e| format!(", error: {e}")).unwrap_or_default()
        );
        for row in fault.targets.iter().filter_map(|t| row_of(t)) {
            let _ = write!(
                svg,
                "<rect class=\"tl-fault\" data-fault=\"{}\" x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{ROW_HEIGHT}\" \
                 fill=\"#f0a030\" fill-opacity=\"0.28\"><title>{}</title></rect>",
                fault.id,
                y(row),
                (x1 - x0).max(2.0),
                escape::html(&title)
            );
        }
    }
    for (stage, run) in runs {
        let (Some(started), Some(row)) = (run.started_ms, row_of(&run.slave)) else { continue };
        let ended = run.ended_ms.unwrap_or(now_ms);
        let (x0, x1) = (x(started), x(ended));
        let title = format!(
            "{} on {}: {} ({:.1} s)",
            stage.stage,
            run.slave,
            run.state.as_str(),
            ended.saturating_sub(started) as f64 / 1000.0
        );
        let _ = write!(
            svg,
            "<rect class=\"tl-run\" x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"2\" fill=\"{}\" \
             stroke=\"#fff\" stroke-width=\"0.5\"><title>{}</title></rect>",
            y(row) + 6.0,
            (x1 - x0).max(1.5),
            ROW_HEIGHT - 16.0,
            run_colour(run.state),
            escape::html(&title)
        );
    }
    for wait in &timeline.waits {
        let Some(row) = row_of(&wait.slave) else { continue };
        let (x0, x1) = (x(wait.started_unix_ms), x(wait.ended_unix_ms));
        let waited = wait.ended_unix_ms.saturating_sub(wait.started_unix_ms) as f64 / 1000.0;
        let (colour, how) = match &wait.failure {
            None => ("#2f6fd6", format!("met after {waited:.1} s")),
            Some(reason) => ("#d64545", format!("failed after {waited:.1} s: {reason}")),
        };
        let _ = write!(
            svg,
            "<rect class=\"tl-wait\" x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"4\" fill=\"{colour}\">\
             <title>{} on {}: {}</title></rect>",
            y(row) + ROW_HEIGHT - 8.0,
            (x1 - x0).max(2.0),
            escape::html(&wait.what),
            escape::html(&wait.slave),
            escape::html(&how)
        );
    }
    // The time axis: seconds from the start, at a step that gives about 8 ticks.
    let axis_y = TOP + rows as f64 * ROW_HEIGHT;
    let step = tick_step(span / 1000.0);
    let mut tick = 0.0;
    while tick <= span / 1000.0 + 1e-9 {
        let tx = LABEL_WIDTH + tick * 1000.0 / span * PLOT_WIDTH;
        let _ = write!(
            svg,
            "<line x1=\"{tx:.1}\" x2=\"{tx:.1}\" y1=\"{axis_y:.1}\" y2=\"{:.1}\" stroke=\"#888\"/>\
             <text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{}s</text>",
            axis_y + 4.0,
            axis_y + 16.0,
            trim_number(tick)
        );
        tick += step;
    }
    let legend_y = axis_y + AXIS_HEIGHT;
    let _ = write!(
        svg,
        "<g class=\"tl-legend\" fill=\"#333\">\
         <rect x=\"{LABEL_WIDTH}\" y=\"{:.1}\" width=\"12\" height=\"10\" fill=\"#2e9d4f\"/><text x=\"{:.1}\" y=\"{:.1}\">stage run</text>\
         <rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"4\" fill=\"#2f6fd6\"/><text x=\"{:.1}\" y=\"{:.1}\">sync wait</text>\
         <rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"10\" fill=\"#f0a030\" fill-opacity=\"0.28\"/><text x=\"{:.1}\" y=\"{:.1}\">fault held</text>\
         </g></svg>",
        legend_y - 10.0,
        LABEL_WIDTH + 16.0,
        legend_y,
        LABEL_WIDTH + 100.0,
        legend_y - 6.0,
        LABEL_WIDTH + 116.0,
        legend_y,
        LABEL_WIDTH + 200.0,
        legend_y - 10.0,
        LABEL_WIDTH + 216.0,
        legend_y,
    );
    Some(svg)
}

/// 1, 2 or 5 times a power of ten, in seconds, so that `span_s` has about 8 ticks.
fn tick_step(span_s: f64) -> f64 {
    let raw = (span_s / 8.0).max(0.001);
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * power).find(|step| *step >= raw).unwrap_or(10.0 * power)
}

fn trim_number(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use xrdtest_model::{FaultRecord, RunOptions, SessionState, Stage, StageRecord, StageRun, Trigger, WaitRecord};

    fn run(slave: &str, state: RunState, started: Option<u64>, ended: Option<u64>) -> StageRun {
        StageRun {
            slave: slave.into(),
            stage_id: 1,
            state,
            exit_code: None,
            started_ms: started,
            ended_ms: ended,
            output_bytes: 0,
            dropped_bytes: 0,
            reason: None,
            logs: Vec::new(),
        }
    }

    fn record(stages: Vec<StageRecord>) -> SessionRecord {
        SessionRecord {
            id: 5,
            suite: "ts".into(),
            trigger: Trigger::Manual,
            definition_hash: "h".into(),
            commit: None,
            slaves: vec!["a".into(), "b".into()],
            state: SessionState::Passed,
            reason: None,
            created_ms: 0,
            started_ms: Some(1000),
            ended_ms: Some(11000),
            cases: Vec::new(),
            stages,
            cluster: None,
            options: RunOptions::default(),
        }
    }

    fn stage(stage: Stage, runs: Vec<StageRun>) -> StageRecord {
        StageRecord { stage, timeout_ms: 1000, skipped: None, runs, repetition: 1, attempt: 1 }
    }

    #[test]
    fn nothing_started_draws_nothing() {
        let r = record(vec![stage(Stage::SuiteInit, vec![run("a", RunState::Pending, None, None)])]);
        assert_eq!(timeline_svg(&r, &Timeline::default(), 5000), None);
    }

    #[test]
    fn runs_waits_and_faults_sit_on_their_rows_and_times() {
        let r = record(vec![stage(
            Stage::CaseRun { case: "c".into() },
            vec![
                run("a", RunState::Passed, Some(1000), Some(6000)),
                run("b", RunState::Failed, Some(1000), Some(11000)),
            ],
        )]);
        let timeline = Timeline {
            waits: vec![WaitRecord {
                slave: "b".into(),
                stage_id: 1,
                what: "barrier <up> (2)".into(),
                started_unix_ms: 2000,
                ended_unix_ms: 3000,
                failure: Some("timed out".into()),
            }],
            faults: vec![FaultRecord {
                id: 9,
                kind: "partition".into(),
                targets: vec!["a".into(), "b".into()],
                params: "a -- b".into(),
                made_by: "a".into(),
                stage_id: 1,
                started_unix_ms: 6000,
                ended_unix_ms: None,
                details: Vec::new(),
                error: None,
            }],
        };
        let svg = timeline_svg(&r, &timeline, 11000).unwrap();
        // 10 s over 760 px: a's run is the first half, from x = 120.
        assert!(svg.contains("<rect class=\"tl-run\" x=\"120.0\" y=\"14.0\" width=\"380.0\""), "{svg}");
        assert!(svg
            .contains("fill=\"#d64545\" stroke=\"#fff\" stroke-width=\"0.5\"><title>case_run:c on b: failed (10.0 s)"));
        // The wait: 2 s to 3 s on b's row (y = 38), red, its text escaped.
        assert!(
            svg.contains(
                "<rect class=\"tl-wait\" x=\"196.0\" y=\"60.0\" width=\"76.0\" height=\"4\" fill=\"#d64545\">"
            ),
            "{svg}"
        );
        assert!(svg.contains("barrier &#60;up&#62; (2) on b: failed after 1.0 s: timed out"), "{svg}");
        // The fault: shaded on both rows from 6 s to now (11 s), never healed.
        assert_eq!(svg.matches("class=\"tl-fault\" data-fault=\"9\"").count(), 2);
        assert!(svg.contains("x=\"500.0\" y=\"8.0\" width=\"380.0\""), "{svg}");
        assert!(svg.contains("fault 9 partition: a -- b (never healed)"), "{svg}");
        assert!(svg.contains(">0s</text>") && svg.contains(">10s</text>"), "{svg}");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(10.0), 2.0);
        assert_eq!(tick_step(0.4), 0.05);
        assert_eq!(tick_step(100.0), 20.0);
        assert_eq!(tick_step(3600.0), 500.0);
        assert_eq!(trim_number(0.25), "0.25");
        assert_eq!(trim_number(10.0), "10");
    }
}
