//! The session page (grid of stages × slaves), one cell's page (output and logs), the
//! history, and cancel.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use xrdtest_master::handle::{CancelError, HistoryFilter};
use xrdtest_model::{
    now_ms, CaseState, ClusterRun, RunOptions, SessionId, SessionRecord, SessionState, SessionSummary, SlaveCleanup,
    StageRecord, StageRun, Trigger,
};
use xrdtest_proto::StageId;

use super::clusters::{step_views, StepView};
use super::format;
use super::values::{run_rows, session_rows, ValueRow};
use super::{check_reader, error_page, page, see_other, store_error, CsrfForm, Nav};
use crate::auth::{require_writer, Viewer};
use crate::escape;
use crate::WebState;

/// Sessions per history page.
pub const PAGE_SIZE: usize = 50;
/// The cell page shows at least this many of the last output lines; the API has the rest.
pub const TAIL_LINES: usize = 5000;

/// One cell of the grid: a stage on a slave. Also sent as JSON to the live page.
#[derive(Debug, Clone, Serialize)]
pub struct CellView {
    /// The element id: `cell-<row>-<column>`.
    pub id: String,
    pub slave: String,
    /// `state-<cls>`.
    pub cls: &'static str,
    pub label: &'static str,
    /// `exit 1`, or empty.
    pub exit: String,
    pub duration: String,
    /// The cell's page, once the stage was sent (empty before).
    pub href: String,
    /// Tooltip: the reason, output size.
    pub title: String,
}

pub struct GridRow {
    /// `case_run:name`: the stage as the API names it (the same for every pass and attempt).
    pub key: String,
    /// The stage as people read it: [`StageRecord::label`](xrdtest_model::StageRecord::label).
    pub label: String,
    pub kind: &'static str,
    pub case: String,
    /// `pass 2, attempt 2`: what the label adds to the stage's name (empty for the first).
    pub extra: String,
    /// Its pass and attempt (0 for suite init and finalize).
    pub repetition: u32,
    pub attempt: u32,
    pub timeout: String,
    pub skipped: String,
    pub cells: Vec<Option<CellView>>,
}

/// A test case's line (one case instance in one pass): also sent live.
#[derive(Debug, Clone, Serialize)]
pub struct CaseView {
    pub id: String,
    /// The instance: `case` or `case[size=64,mode=sync]`.
    pub name: String,
    /// Which pass over the case list.
    pub pass: u32,
    /// Attempts made so far.
    pub attempts: u32,
    pub cls: &'static str,
    pub label: &'static str,
    pub duration: String,
}

/// The parts of the session page that change while it runs.
#[derive(Debug, Clone, Serialize)]
pub struct SessionUpdate {
    pub state_cls: &'static str,
    pub state_label: &'static str,
    /// The outcome in one word (`flaky` for a passed session with flaky cases).
    pub verdict: &'static str,
    /// Case instances that passed only when run again, so far.
    pub flaky: usize,
    /// `2 flaky cases`, or empty.
    pub flaky_text: String,
    /// Stage rows and case rows: the page reloads when the engine adds or drops some (a
    /// retry, a soak's next pass), since its rows are numbered.
    pub rows: usize,
    pub case_rows: usize,
    pub reason: String,
    #[serde(rename = "final")]
    pub is_final: bool,
    pub started: String,
    pub ended: String,
    pub duration: String,
    pub done: usize,
    pub total: usize,
    pub cells: Vec<CellView>,
    pub cases: Vec<CaseView>,
    /// A cluster suite's cluster.
    pub cluster: Option<ClusterPanel>,
}

/// The cluster of a cluster session: where it runs and each step it went through.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterPanel {
    pub name: String,
    /// Empty until one is picked.
    pub hypervisor: String,
    /// Who started it, and so whether it stops with the session.
    pub started: &'static str,
    pub steps: Vec<StepView>,
}

fn cluster_panel(run: &ClusterRun) -> ClusterPanel {
    ClusterPanel {
        name: run.name.clone(),
        hypervisor: run.hypervisor.clone().unwrap_or_default(),
        started: match (&run.hypervisor, run.started_here) {
            (None, _) => "",
            (Some(_), true) => "for this session: stopped when it ends",
            (Some(_), false) => "by hand before the session: left running",
        },
        steps: step_views(&run.steps),
    }
}

/// The slaves of a session's grid: its own list, then any other a run names.
fn columns(record: &SessionRecord) -> Vec<String> {
    let mut slaves = record.slaves.clone();
    for run in record.stages.iter().flat_map(|s| &s.runs) {
        if !slaves.contains(&run.slave) {
            slaves.push(run.slave.clone());
        }
    }
    slaves
}

fn cell(record: &SessionRecord, row: usize, column: usize, run: &StageRun, now: u64) -> CellView {
    let (cls, label) = format::run_state(run.state);
    let mut title = Vec::new();
    if let Some(reason) = &run.reason {
        title.push(reason.clone());
    }
    if run.output_bytes > 0 {
        title.push(format!("output {}", format::bytes(run.output_bytes)));
    }
    if run.dropped_bytes > 0 {
        title.push(format!("{} dropped", format::bytes(run.dropped_bytes)));
    }
    CellView {
        id: format!("cell-{row}-{column}"),
        slave: run.slave.clone(),
        cls,
        label,
        exit: run.exit_code.map(|code| format!("exit {code}")).unwrap_or_default(),
        duration: format::span(run.started_ms, run.ended_ms, now),
        href: if run.stage_id == 0 {
            String::new()
        } else {
            format!("/sessions/{}/stages/{}", record.id, run.stage_id)
        },
        title: title.join("; "),
    }
}

pub fn grid(record: &SessionRecord, now: u64) -> (Vec<String>, Vec<GridRow>) {
    let slaves = columns(record);
    let rows = record
        .stages
        .iter()
        .enumerate()
        .map(|(row, stage)| GridRow {
            key: stage.stage.to_string(),
            label: stage.label(),
            kind: stage.stage.kind(),
            case: stage.stage.case().unwrap_or_default().to_string(),
            extra: label_extra(stage),
            repetition: stage.repetition,
            attempt: stage.attempt,
            timeout: format::duration(stage.timeout_ms),
            skipped: stage.skipped.clone().unwrap_or_default(),
            cells: slaves
                .iter()
                .enumerate()
                .map(|(column, slave)| {
                    stage.runs.iter().find(|run| run.slave == *slave).map(|run| cell(record, row, column, run, now))
                })
                .collect(),
        })
        .collect();
    (slaves, rows)
}

/// What a stage's label adds to its name: `pass 2, attempt 3`, or empty.
fn label_extra(stage: &StageRecord) -> String {
    let label = stage.label();
    let name = stage.stage.to_string();
    label
        .strip_prefix(name.as_str())
        .map(|rest| rest.trim().trim_start_matches('(').trim_end_matches(')').to_string())
        .unwrap_or_default()
}

/// Stages done (every run final, or skipped) and in all.
pub fn progress(record: &SessionRecord) -> (usize, usize) {
    let done = record
        .stages
        .iter()
        .filter(|s| s.skipped.is_some() || (!s.runs.is_empty() && s.runs.iter().all(|r| r.state.is_final())))
        .count();
    (done, record.stages.len())
}

/// The stage that runs now, in words (`case_run:name (attempt 2)`), if one does.
pub fn current_stage(record: &SessionRecord) -> String {
    record
        .stages
        .iter()
        .find(|s| s.runs.iter().any(|r| r.state == xrdtest_model::RunState::Running))
        .map(StageRecord::label)
        .unwrap_or_default()
}

/// Case records that ended flaky.
pub fn flaky_count(record: &SessionRecord) -> usize {
    record.cases.iter().filter(|case| case.state == CaseState::Flaky).count()
}

pub fn cases(record: &SessionRecord, now: u64) -> Vec<CaseView> {
    record
        .cases
        .iter()
        .enumerate()
        .map(|(index, case)| {
            let (cls, label) = format::case_state(case.state);
            CaseView {
                id: format!("case-{index}"),
                name: case.name.clone(),
                pass: case.repetition,
                attempts: case.attempts,
                cls,
                label,
                duration: format::span(case.started_ms, case.ended_ms, now),
            }
        })
        .collect()
}

pub fn session_update(record: &SessionRecord, now: u64) -> SessionUpdate {
    let (state_cls, state_label) = format::session_state(record.state);
    let (_, rows) = grid(record, now);
    let (done, total) = progress(record);
    let flaky = flaky_count(record);
    SessionUpdate {
        state_cls,
        state_label,
        verdict: record.verdict(),
        flaky,
        flaky_text: if flaky == 0 { String::new() } else { format::flaky_cases(flaky) },
        rows: record.stages.len(),
        case_rows: record.cases.len(),
        reason: record.reason.clone().unwrap_or_default(),
        is_final: record.state.is_final(),
        started: format::time_opt(record.started_ms),
        ended: format::time_opt(record.ended_ms),
        duration: format::span(record.started_ms, record.ended_ms, now),
        done,
        total,
        cells: rows.into_iter().flat_map(|row| row.cells.into_iter().flatten()).collect(),
        cases: cases(record, now),
        cluster: record.cluster.as_ref().map(cluster_panel),
    }
}

pub fn trigger_label(trigger: &Trigger) -> &'static str {
    match trigger {
        Trigger::Manual => "manual",
        Trigger::Api => "API",
        Trigger::Schedule => "schedule",
    }
}

/// One of the options a session was asked to run with, beyond the defaults.
pub struct OptionRow {
    /// A stable name for the page's tests and scripts: `cases`, `repeat`...
    pub key: &'static str,
    pub label: &'static str,
    pub value: String,
}

/// The options of `options` that are not the defaults of a plain run (every case once,
/// no retries beyond the definition's), in words. The parameters are shown apart.
pub fn option_rows(options: &RunOptions) -> Vec<OptionRow> {
    let mut rows = Vec::new();
    let mut push = |key, label, value: String| rows.push(OptionRow { key, label, value });
    if !options.cases.is_empty() {
        push("cases", "Only", options.cases.join(", "));
    }
    if !options.skip.is_empty() {
        push("skip", "Skipped", options.skip.join(", "));
    }
    if options.repeat > 1 {
        push("repeat", "Repeat", format!("{} passes over the cases", options.repeat));
    }
    if let Some(ms) = options.for_ms {
        push("for", "Repeat for", format!("{} (passes follow one another until then)", format::duration(ms)));
    }
    if let Some(retries) = options.retries {
        push("retries", "Retries", format!("{retries} for every case (over the definition's)"));
    }
    if options.exit_first {
        push("exit_first", "Exit first", "no more cases after the first failed one".to_string());
    }
    if let Some(ms) = options.keep_on_failure_ms {
        push(
            "keep_on_failure",
            "Keep on failure",
            format!("the cluster stays up {} after a failure", format::duration(ms)),
        );
    }
    rows
}

/// Parses a session id from the path; `None` for anything but a number.
fn parse_id(text: &str) -> Option<u64> {
    text.parse().ok()
}

#[derive(Template)]
#[template(path = "session.html")]
struct SessionPage {
    nav: Nav,
    id: SessionId,
    /// Marked `keep`: retention never prunes it.
    kept: bool,
    suite: String,
    trigger: &'static str,
    created: String,
    commit: String,
    definition: String,
    update: SessionUpdate,
    slaves: Vec<String>,
    rows: Vec<GridRow>,
    cases: Vec<CaseView>,
    percent: usize,
    /// `--param`s, in the order given.
    params: Vec<(String, String)>,
    options: Vec<OptionRow>,
    /// Results and checks of every run (at most a cap of them), and how many there are.
    values: Vec<ValueRow>,
    values_total: usize,
    /// The timeline (SVG) of stage runs, sync waits and faults; empty before anything ran.
    timeline: String,
    /// The faults of the session, for the table under the timeline.
    faults: Vec<FaultRow>,
    /// What each slave ended at the session's end.
    cleanup: Vec<SlaveCleanup>,
}

/// One fault of a session, as the session page lists it.
struct FaultRow {
    id: u64,
    kind: String,
    params: String,
    made_by: String,
    started: String,
    held: String,
    outcome: String,
}

pub async fn session_page(
    State(state): State<Arc<WebState>>,
    viewer: Viewer,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    if let Err(response) = check_reader(&state, &viewer, &uri) {
        return response;
    }
    let Some(id) = parse_id(&id) else {
        return error_page(&state, &viewer, &uri, StatusCode::NOT_FOUND, format!("There is no session `{id}`."));
    };
    let record = match state.core.session(id) {
        Ok(Some(record)) => record,
        Ok(None) => {
            return error_page(&state, &viewer, &uri, StatusCode::NOT_FOUND, format!("There is no session {id}."))
        }
        Err(err) => return store_error(&state, &viewer, &uri, err),
    };
    let (values, values_total) = match state.core.session_values(&record) {
        Ok(values) => session_rows(&record, &values),
        Err(err) => return store_error(&state, &viewer, &uri, err),
    };
    let timeline = match state.core.timeline(id) {
        Ok(timeline) => timeline,
        Err(err) => return store_error(&state, &viewer, &uri, err),
    };
    let cleanup = match state.core.cleanup(id) {
        Ok(cleanup) => cleanup,
        Err(err) => return store_error(&state, &viewer, &uri, err),
    };
    let now = now_ms();
    let faults = timeline
        .faults
        .iter()
        .map(|fault| FaultRow {
            id: fault.id,
            kind: fault.kind.clone(),
            params: fault.params.clone(),
            made_by: fault.made_by.clone(),
            started: format::time(fault.started_unix_ms),
            held: match fault.ended_unix_ms {
                Some(ended) => format!("{:.1} s", ended.saturating_sub(fault.started_unix_ms) as f64 / 1000.0),
                None => "not known to be healed".into(),
            },
            outcome: fault.error.clone().unwrap_or_else(|| fault.details.join("; ")),
        })
        .collect();
    let timeline_svg = crate::svg::timeline::timeline_svg(&record, &timeline, now).unwrap_or_default();
    let update = session_update(&record, now);
    let (slaves, rows) = grid(&record, now);
    let percent = (update.done * 100).checked_div(update.total).unwrap_or(0);
    page(&SessionPage {
        nav: Nav::new(&state, &viewer, &uri, "sessions", format!("Session {id} · {}", record.suite)),
        id,
        kept: state.core.is_kept(id).unwrap_or(false),
        suite: record.suite.clone(),
        trigger: trigger_label(&record.trigger),
        created: format::time(record.created_ms),
        commit: record.commit.as_deref().map(format::short).unwrap_or_default(),
        definition: format::short(&record.definition_hash),
        cases: update.cases.clone(),
        update,
        slaves,
        rows,
        percent,
        params: record.options.params.clone(),
        options: option_rows(&record.options),
        values,
        values_total,
        timeline: timeline_svg,
        faults,
        cleanup,
    })
}

pub async fn cancel(
    State(state): State<Arc<WebState>>,
    viewer: Viewer,
    uri: Uri,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(response) = require_writer(&viewer, &form.csrf) {
        return response;
    }
    let Some(id) = parse_id(&id) else {
        return error_page(&state, &viewer, &uri, StatusCode::NOT_FOUND, format!("There is no session `{id}`."));
    };
    match state.core.cancel(id, "cancelled from the dashboard") {
        // Already over: the session page shows how it ended.
        Ok(()) | Err(CancelError::Finished(_)) => see_other(&format!("/sessions/{id}")),
        Err(CancelError::Unknown(_)) => {
            error_page(&state, &viewer, &uri, StatusCode::NOT_FOUND, format!("There is no session {id}."))
        }
        Err(CancelError::Store(err)) => store_error(&state, &viewer, &uri, err),
    }
}

#[derive(serde::Deserialize)]
pub struct KeepForm {
    csrf: String,
    /// `1` marks the session keep, anything else takes the mark off.
    keep: String,
}

/// `POST /sessions/{id}/keep`: the Keep button; back to the session page.
pub async fn keep(
    State(state): State<Arc<WebState>>,
    viewer: Viewer,
    uri: Uri,
    Path(id): Path<String>,
    Form(form): Form<KeepForm>,
) -> Response {
    if let Err(response) = require_writer(&viewer, &form.csrf) {
        return response;
    }
    let Some(id) = parse_id(&id) else {
        return error_page(&state, &viewer, &uri, StatusCode::NOT_FOUND, format!("There is no session `{id}`."));
    };
    match state.core.set_kept(id, form.keep == "1") {
        Ok(true) => see_other(&format!("/sessions/{id}")),
        Ok(false) => error_page(&state, &viewer, &uri, StatusCode::NOT_FOUND, format!("There is no session {id}.")),
        Err(err) => store_error(&state, &viewer, &uri, err),
    }
}

/// One output line as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LineView {
    /// Local time of day with milliseconds.
    pub t: String,
    /// The text (escaped by the template, set as text by the script).
    pub x: String,
}

pub fn line_views(lines: impl IntoIterator<Item = xrdtest_proto::OutputLine>) -> Vec<LineView> {
    lines.into_iter().map(|line| LineView { t: format::clock(line.unix_ms), x: line.text }).collect()
}

/// A collected log file; also sent live when the stage ends.
#[derive(Debug, Clone, Serialize)]
pub struct LogView {
    pub path: String,
    pub content: String,
    pub truncated: String,
    pub error: String,
}

pub fn log_views(logs: Vec<xrdtest_proto::LogFile>) -> Vec<LogView> {
    logs.into_iter()
        .map(|log| LogView {
            path: log.path,
            content: String::from_utf8_lossy(&log.content).into_owned(),
            truncated: if log.truncated_bytes > 0 {
                format!("the first {} were cut", format::bytes(log.truncated_bytes))
            } else {
                String::new()
            },
            error: log.error.unwrap_or_default(),
        })
        .collect()
}

/// The state of one run, as the cell page shows it; also sent live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunView {
    pub cls: &'static str,
    pub label: &'static str,
    #[serde(rename = "final")]
    pub is_final: bool,
    pub exit: String,
    pub started: String,
    pub ended: String,
    pub duration: String,
    pub reason: String,
    pub output: String,
}

pub fn run_view(run: &StageRun, now: u64) -> RunView {
    let (cls, label) = format::run_state(run.state);
    let mut output = format::bytes(run.output_bytes);
    if run.dropped_bytes > 0 {
        output.push_str(&format!(", {} dropped (over the output limit)", format::bytes(run.dropped_bytes)));
    }
    RunView {
        cls,
        label,
        is_final: run.state.is_final(),
        exit: run.exit_code.map(|c| c.to_string()).unwrap_or_default(),
        started: format::time_opt(run.started_ms),
        ended: format::time_opt(run.ended_ms),
        duration: format::span(run.started_ms, run.ended_ms, now),
        reason: run.reason.clone().unwrap_or_default(),
        output,
    }
}

/// The stage and run of `stage_id` in a session.
pub fn find_run(record: &SessionRecord, stage_id: StageId) -> Option<(usize, &StageRun)> {
    record
        .stages
        .iter()
        .enumerate()
        .find_map(|(index, stage)| stage.runs.iter().find(|run| run.stage_id == stage_id).map(|run| (index, run)))
}

#[derive(Template)]
#[template(path = "stage.html")]
struct StagePage {
    nav: Nav,
    session: SessionId,
    suite: String,
    session_cls: &'static str,
    session_label: &'static str,
    stage: String,
    slave: String,
    stage_id: StageId,
    run: RunView,
    lines: Vec<LineView>,
    earlier: bool,
    next_seq: u64,
    logs: Vec<LogView>,
    values: Vec<ValueRow>,
}

pub async fn stage_page(
    State(state): State<Arc<WebState>>,
    viewer: Viewer,
    uri: Uri,
    Path((id, stage_id)): Path<(String, String)>,
) -> Response {
    if let Err(response) = check_reader(&state, &viewer, &uri) {
        return response;
    }
    let not_found = |what: String| error_page(&state, &viewer, &uri, StatusCode::NOT_FOUND, what);
    let (Some(id), Some(stage_id)) = (parse_id(&id), parse_id(&stage_id).filter(|s| *s != 0)) else {
        return not_found(format!("There is no stage `{stage_id}` in session `{id}`."));
    };
    let record = match state.core.session(id) {
        Ok(Some(record)) => record,
        Ok(None) => return not_found(format!("There is no session {id}.")),
        Err(err) => return store_error(&state, &viewer, &uri, err),
    };
    let Some((index, run)) = find_run(&record, stage_id) else {
        return not_found(format!("Session {id} has no stage {stage_id}."));
    };
    let (chunks, earlier) = match state.core.output_tail_chunks(stage_id, TAIL_LINES) {
        Ok(found) => found,
        Err(err) => return store_error(&state, &viewer, &uri, err),
    };
    let next_seq = chunks.last().map(|(seq, _)| seq + 1).unwrap_or(0);
    let logs = match state.core.logs(stage_id) {
        Ok(logs) => log_views(logs),
        Err(err) => return store_error(&state, &viewer, &uri, err),
    };
    let (session_cls, session_label) = format::session_state(record.state);
    let stage = record.stages[index].label();
    let values = match state.core.values(stage_id) {
        Ok(values) => run_rows(&stage, &run.slave, "", &values),
        Err(err) => return store_error(&state, &viewer, &uri, err),
    };
    page(&StagePage {
        nav: Nav::new(&state, &viewer, &uri, "sessions", format!("{stage} on {} · session {id}", run.slave)),
        session: id,
        suite: record.suite.clone(),
        session_cls,
        session_label,
        stage,
        slave: run.slave.clone(),
        stage_id,
        run: run_view(run, now_ms()),
        lines: line_views(chunks.into_iter().flat_map(|(_, lines)| lines)),
        earlier,
        next_seq,
        logs,
        values,
    })
}

/// A session in a list (history, dashboard failures).
pub struct SummaryRow {
    pub id: SessionId,
    pub suite: String,
    pub cls: &'static str,
    pub label: &'static str,
    pub trigger: &'static str,
    pub created: String,
    pub duration: String,
    pub cases: String,
    pub reason: String,
    /// Case instances that passed only when run again.
    pub flaky: usize,
    /// `2 flaky cases`, or empty.
    pub flaky_text: String,
}

pub fn summary_row(summary: &SessionSummary, now: u64) -> SummaryRow {
    let (cls, label) = format::session_state(summary.state);
    let flaky = summary.cases_flaky;
    SummaryRow {
        id: summary.id,
        suite: summary.suite.clone(),
        cls,
        label,
        trigger: trigger_label(&summary.trigger),
        created: format::time(summary.created_ms),
        duration: format::span(summary.started_ms, summary.ended_ms, now),
        cases: match (summary.cases_total, flaky) {
            (0, _) => String::new(),
            (total, 0) => format!("{}/{total} passed", summary.cases_passed),
            (total, flaky) => format!("{}/{total} passed, {flaky} flaky", summary.cases_passed),
        },
        reason: summary.reason.clone().unwrap_or_default(),
        flaky,
        flaky_text: if flaky == 0 { String::new() } else { format::flaky_cases(flaky) },
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct HistoryQuery {
    suite: String,
    state: String,
    from: String,
    to: String,
    page: String,
    /// The last session of the page before (a link to the next, older page).
    before: String,
    /// The first session of the page after (a link to the previous, newer page).
    after: String,
}

impl HistoryQuery {
    /// This query at another page, as a link; `cursor` is `("before" | "after", id)`.
    fn link(&self, page: usize, cursor: Option<(&str, SessionId)>) -> String {
        let mut pairs = Vec::new();
        for (name, value) in [("suite", &self.suite), ("state", &self.state), ("from", &self.from), ("to", &self.to)] {
            if !value.trim().is_empty() {
                pairs.push(format!("{name}={}", escape::url_component(value.trim())));
            }
        }
        if page > 1 {
            pairs.push(format!("page={page}"));
            if let Some((name, id)) = cursor {
                pairs.push(format!("{name}={id}"));
            }
        }
        if pairs.is_empty() {
            "/sessions".into()
        } else {
            format!("/sessions?{}", pairs.join("&"))
        }
    }
}

pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "history.html")]
struct HistoryPage {
    nav: Nav,
    rows: Vec<SummaryRow>,
    suites: Vec<Choice>,
    states: Vec<Choice>,
    from: String,
    to: String,
    page: usize,
    first: usize,
    last: usize,
    newer: String,
    older: String,
    filtered: bool,
}

pub async fn history(
    State(state): State<Arc<WebState>>,
    viewer: Viewer,
    uri: Uri,
    Query(query): Query<HistoryQuery>,
) -> Response {
    if let Err(response) = check_reader(&state, &viewer, &uri) {
        return response;
    }
    let mut problems = Vec::new();
    let suite = Some(query.suite.trim().to_string()).filter(|s| !s.is_empty());
    let session_state = match query.state.trim() {
        "" => None,
        text => {
            let parsed = SessionState::parse(text);
            if parsed.is_none() {
                problems.push(format!("`{text}` is not a session state."));
            }
            parsed
        }
    };
    let mut day = |text: &str, end: bool| match text.trim() {
        "" => None,
        text => match format::parse_day(text) {
            Ok((start, next)) => Some(if end { next } else { start }),
            Err(problem) => {
                problems.push(problem);
                None
            }
        },
    };
    let from_ms = day(&query.from, false);
    let to_ms = day(&query.to, true);
    let page_number = match query.page.trim() {
        "" => 1,
        text => text.parse::<usize>().ok().filter(|p| (1..=1_000_000).contains(p)).unwrap_or_else(|| {
            problems.push(format!("`{text}` is not a page number."));
            1
        }),
    };
    let mut cursor = |text: &str, name: &str| match text.trim() {
        "" => None,
        text => {
            let parsed = text.parse::<SessionId>().ok();
            if parsed.is_none() {
                problems.push(format!("`{text}` is not a session number ({name})."));
            }
            parsed
        }
    };
    let before_id = cursor(&query.before, "before");
    let after_id = cursor(&query.after, "after");
    if !problems.is_empty() {
        let message = problems.join(" ");
        return error_page(&state, &viewer, &uri, StatusCode::BAD_REQUEST, message);
    }
    let filter = HistoryFilter { suite: suite.clone(), state: session_state, from_ms, to_ms, before_id, after_id };
    let offset = (page_number - 1) * PAGE_SIZE;
    // Links carry the edge of the page they come from, so following them never skips
    // through the sessions before: every page costs the same however deep it is.
    let found = if after_id.is_some() {
        state.core.history_newer(&filter, PAGE_SIZE).map(|(rows, newer)| (rows, newer, true))
    } else {
        let skip = if before_id.is_some() { 0 } else { offset };
        state.core.history(&filter, skip, PAGE_SIZE).map(|(rows, older)| (rows, page_number > 1, older))
    };
    let (summaries, has_newer, has_older) = match found {
        Ok(found) => found,
        Err(err) => return store_error(&state, &viewer, &uri, err),
    };
    let first_id = summaries.first().map(|s| s.id);
    let last_id = summaries.last().map(|s| s.id);
    let newer = match (has_newer && page_number > 1, first_id) {
        (false, _) => String::new(),
        (true, Some(first)) => query.link(page_number - 1, Some(("after", first))),
        // Past the end: the page before, counted from the newest.
        (true, None) => query.link(page_number - 1, None),
    };
    let older = match (has_older, last_id) {
        (true, Some(last)) => query.link(page_number + 1, Some(("before", last))),
        _ => String::new(),
    };
    let now = now_ms();
    let mut suite_names: Vec<String> = state.core.definitions().repository.suites.keys().cloned().collect();
    if let Some(suite) = &suite {
        if !suite_names.contains(suite) {
            suite_names.push(suite.clone());
        }
    }
    let suites = suite_names
        .into_iter()
        .map(|name| Choice { selected: suite.as_ref() == Some(&name), label: name.clone(), value: name })
        .collect();
    let states = SessionState::ALL
        .iter()
        .copied()
        .map(|s| Choice {
            value: s.as_str().to_string(),
            label: format::session_state(s).1.to_string(),
            selected: session_state == Some(s),
        })
        .collect();
    let shown = summaries.len();
    page(&HistoryPage {
        nav: Nav::new(&state, &viewer, &uri, "sessions", "History"),
        rows: summaries.iter().map(|s| summary_row(s, now)).collect(),
        suites,
        states,
        from: query.from.trim().to_string(),
        to: query.to.trim().to_string(),
        page: page_number,
        first: offset + 1,
        last: offset + shown,
        newer,
        older,
        filtered: filter.suite.is_some() || filter.state.is_some() || from_ms.is_some() || to_ms.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use xrdtest_proto::Stage;

    #[test]
    fn grid_rows_say_which_pass_and_attempt() {
        let record = |repetition, attempt| StageRecord {
            stage: Stage::CaseRun { case: "copy[size=64]".into() },
            timeout_ms: 1000,
            skipped: None,
            runs: Vec::new(),
            repetition,
            attempt,
        };
        assert_eq!(label_extra(&record(1, 1)), "");
        assert_eq!(label_extra(&record(2, 1)), "pass 2");
        assert_eq!(label_extra(&record(2, 3)), "pass 2, attempt 3");
        let suite_init = StageRecord { stage: Stage::SuiteInit, ..record(0, 0) };
        assert_eq!(label_extra(&suite_init), "");
    }

    #[test]
    fn only_options_beyond_the_defaults_are_listed() {
        assert!(option_rows(&RunOptions { repeat: 1, ..RunOptions::default() }).is_empty());
        let options = RunOptions {
            cases: vec!["a".into(), "b[x=1]".into()],
            skip: vec!["c".into()],
            params: vec![("files".into(), "5".into())],
            repeat: 3,
            for_ms: Some(7_200_000),
            retries: Some(2),
            exit_first: true,
            keep_on_failure_ms: Some(600_000),
        };
        let rows: Vec<(&str, String)> = option_rows(&options).into_iter().map(|r| (r.key, r.value)).collect();
        let keys: Vec<&str> = rows.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["cases", "skip", "repeat", "for", "retries", "exit_first", "keep_on_failure"]);
        assert_eq!(rows[0].1, "a, b[x=1]");
        assert!(rows[3].1.starts_with("2 h 00 min"), "{}", rows[3].1);
    }
}
