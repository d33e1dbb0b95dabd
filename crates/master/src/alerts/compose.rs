//! What alert mails say: pure functions from a finished session record to mails.
//!
//! Policies (XrdTest's): the suite's `alert_success` applies when the session passed,
//! `alert_failure` when it did not (failed, could not start, cancelled, interrupted).
//! - `SUITE`: one mail with the final state of the session.
//! - `CASE`: the suite's mail, then one mail per test case that ran (passed or failed),
//!   whatever that case's own outcome. Cases that never ran (suite init failed, cancelled
//!   first, session could not start) get no mail of their own; the suite mail lists them.
//! - `NONE`: nothing.
//!
//! A session without `alert_emails`, or not finished, gives no mail.

use std::fmt::Write as _;

use xrdtest_defs::{AlertPolicy, Suite};
use xrdtest_proto::StageId;
use xrdtest_report::format::human_utc;

use crate::model::{CaseRecord, CaseState, RunState, SessionRecord, SessionState, StageRecord, StageRun};

/// How many of a failed stage's last output lines a mail quotes.
pub const TAIL_LINES: usize = 50;
/// Output lines longer than this are cut in mails (mail lines should stay short).
const MAX_LINE_CHARS: usize = 500;
/// Most per-case mails one session sends (policy `CASE`): a long soak or a large repeat
/// would otherwise send one per case run; the suite's mail lists every case.
pub const MAX_CASE_MAILS: usize = 20;
/// Reasons longer than this are cut in subjects.
const MAX_SUBJECT_REASON_CHARS: usize = 80;

/// Who gets mail about a suite's sessions, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSettings {
    pub emails: Vec<String>,
    /// Applies when the session passed.
    pub on_success: AlertPolicy,
    /// Applies when it did not: failed, could not start, cancelled or interrupted.
    pub on_failure: AlertPolicy,
}

impl From<&Suite> for AlertSettings {
    fn from(suite: &Suite) -> AlertSettings {
        AlertSettings {
            emails: suite.alert_emails.clone(),
            on_success: suite.alert_success,
            on_failure: suite.alert_failure,
        }
    }
}

/// One plain-text mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
}

/// The policy that applies to `record`'s outcome; `None` when there is nobody to tell or
/// the session is not finished.
pub fn applicable_policy(settings: &AlertSettings, record: &SessionRecord) -> AlertPolicy {
    if settings.emails.is_empty() || !record.state.is_final() {
        return AlertPolicy::None;
    }
    if record.state == SessionState::Passed {
        settings.on_success
    } else {
        settings.on_failure
    }
}

/// How many mails [`compose`] makes for `record` (without reading any output).
pub fn mail_count(settings: &AlertSettings, record: &SessionRecord) -> usize {
    match applicable_policy(settings, record) {
        AlertPolicy::None => 0,
        AlertPolicy::Suite => 1,
        AlertPolicy::Case => 1 + record.cases.iter().filter(|c| case_ran(c)).count().min(MAX_CASE_MAILS),
    }
}

/// The mails to send about a finished session: the suite's mail first, then (policy
/// `CASE`) one per case that ran, in case order. `tail` gives the last output lines of a
/// stage run (at most [`TAIL_LINES`] of them are quoted).
pub fn compose(
    settings: &AlertSettings,
    record: &SessionRecord,
    dashboard_url: Option<&str>,
    tail: &dyn Fn(StageId) -> Vec<String>,
) -> Vec<Mail> {
    let policy = applicable_policy(settings, record);
    if policy == AlertPolicy::None {
        return Vec::new();
    }
    let link = dashboard_url.map(|url| format!("{}/sessions/{}", url.trim_end_matches('/'), record.id));
    let mut mails = vec![Mail {
        to: settings.emails.clone(),
        subject: suite_subject(record),
        body: suite_body(record, link.as_deref(), tail),
    }];
    if policy == AlertPolicy::Case {
        for case in record.cases.iter().filter(|c| case_ran(c)).take(MAX_CASE_MAILS) {
            mails.push(Mail {
                to: settings.emails.clone(),
                subject: format!(
                    "[xrdtest] {} #{} case {} {}",
                    record.suite,
                    record.id,
                    case_label(case),
                    case_state_word(case.state).to_uppercase()
                ),
                body: case_body(record, case, link.as_deref(), tail),
            });
        }
    }
    mails
}

/// A case instance's name, with its pass when the session made more than one.
fn case_label(case: &CaseRecord) -> String {
    if case.repetition > 1 {
        format!("{} (pass {})", case.name, case.repetition)
    } else {
        case.name.clone()
    }
}

/// A case that ran to an outcome of its own (not skipped, not cut short before it began).
fn case_ran(case: &CaseRecord) -> bool {
    matches!(case.state, CaseState::Passed | CaseState::Failed | CaseState::Flaky)
}

/// The session never started running its stages (for example a slave was not connected).
fn could_not_start(record: &SessionRecord) -> bool {
    record.started_ms.is_none()
}

/// `PASSED`, `FAILED`...; a passed session with flaky cases is `PASSED (FLAKY)`.
fn session_state_word(record: &SessionRecord) -> String {
    let word = record.state.as_str().to_uppercase();
    if record.is_flaky() {
        format!("{word} (FLAKY)")
    } else {
        word
    }
}

fn case_state_word(state: CaseState) -> &'static str {
    match state {
        CaseState::Pending => "pending",
        CaseState::Running => "running",
        CaseState::Passed => "passed",
        CaseState::Failed => "failed",
        CaseState::NotRun => "not run",
        CaseState::Flaky => "flaky",
    }
}

fn run_state_word(state: RunState) -> &'static str {
    match state {
        RunState::Pending => "pending",
        RunState::Running => "running",
        RunState::Passed => "passed",
        RunState::Failed => "failed",
        RunState::TimedOut => "timed out",
        RunState::Cancelled => "cancelled",
        RunState::Skipped => "skipped",
        RunState::Disconnected => "disconnected",
    }
}

fn shorten(text: &str, max: usize) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max.saturating_sub(3)).collect();
    cut.push_str("...");
    cut
}

fn suite_subject(record: &SessionRecord) -> String {
    let total = record.cases.len();
    let failed = record.cases.iter().filter(|c| c.state == CaseState::Failed).count();
    let not_run = record.cases.iter().filter(|c| !case_ran(c)).count();
    let reason = record.reason.as_deref().map(|r| shorten(r, MAX_SUBJECT_REASON_CHARS));
    let flaky = record.cases.iter().filter(|c| c.state == CaseState::Flaky).count();
    let detail = if record.state == SessionState::Passed && flaky > 0 {
        format!("{total} of {total} cases passed, {flaky} of them flaky")
    } else if record.state == SessionState::Passed {
        format!("{total} of {total} cases passed")
    } else if could_not_start(record) {
        format!("could not start: {}", reason.unwrap_or_else(|| "no reason recorded".into()))
    } else if failed > 0 {
        let mut text = format!("{failed} of {total} cases failed");
        if not_run > 0 {
            let _ = write!(text, ", {not_run} not run");
        }
        text
    } else if let Some(reason) = reason {
        reason
    } else {
        format!("{not_run} of {total} cases not run")
    };
    format!("[xrdtest] {} #{} {} ({detail})", record.suite, record.id, session_state_word(record))
}

/// `850ms`, `12.3s`, `4m05s`, `1h02m`.
fn format_duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000)
    }
}

fn span(started: Option<u64>, ended: Option<u64>) -> String {
    match (started, ended) {
        (Some(start), Some(end)) => format_duration(end.saturating_sub(start)),
        _ => "-".into(),
    }
}

/// `Label:    value` lines, aligned.
fn field(body: &mut String, label: &str, value: &str) {
    let _ = writeln!(body, "{:<10}{value}", format!("{label}:"));
}

fn header(body: &mut String, record: &SessionRecord, link: Option<&str>) {
    field(body, "Suite", &record.suite);
    field(body, "Session", &format!("#{}", record.id));
    let state = if could_not_start(record) && record.state != SessionState::Passed {
        format!("{} (could not start)", session_state_word(record))
    } else {
        session_state_word(record)
    };
    field(body, "State", &state);
    if let Some(reason) = &record.reason {
        field(body, "Reason", reason);
    }
    if !record.options.params.is_empty() {
        let params: Vec<String> = record.options.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        field(body, "Params", &params.join(" "));
    }
    field(body, "Trigger", &format!("{:?}", record.trigger).to_lowercase());
    field(body, "Commit", record.commit.as_deref().unwrap_or("none"));
    field(body, "Slaves", &if record.slaves.is_empty() { "none".into() } else { record.slaves.join(", ") });
    field(body, "Created", &human_utc(record.created_ms));
    field(body, "Started", &record.started_ms.map(human_utc).unwrap_or_else(|| "never".into()));
    if let Some(ended) = record.ended_ms {
        field(body, "Ended", &human_utc(ended));
    }
    field(body, "Duration", &span(record.started_ms, record.ended_ms));
    if let Some(link) = link {
        field(body, "Link", link);
    }
}

/// Rows of cells as a fixed-width table, two spaces indented; the first row is the head.
fn table(body: &mut String, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let _ = write!(line, "  {cell:<width$}", width = widths[i]);
        }
        let _ = writeln!(body, "{}", line.trim_end());
    }
}

fn case_table(body: &mut String, record: &SessionRecord) {
    if record.cases.is_empty() {
        body.push_str("Cases: none\n");
        return;
    }
    let failed = record.cases.iter().filter(|c| c.state == CaseState::Failed).count();
    let passed = record.cases.iter().filter(|c| c.state == CaseState::Passed).count();
    let flaky = record.cases.iter().filter(|c| c.state == CaseState::Flaky).count();
    let other = record.cases.len() - failed - passed - flaky;
    let mut counts = format!("{passed} passed, {failed} failed");
    if flaky > 0 {
        let _ = write!(counts, ", {flaky} flaky");
    }
    if other > 0 {
        let _ = write!(counts, ", {other} not run");
    }
    let _ = writeln!(body, "Cases ({counts}):");
    let mut rows = vec![vec!["CASE".to_string(), "STATE".into(), "DURATION".into()]];
    for case in &record.cases {
        let mut state = match case.state {
            CaseState::Failed => "FAILED".to_string(),
            CaseState::Flaky => "FLAKY".to_string(),
            state => case_state_word(state).to_string(),
        };
        if case.attempts > 1 {
            let _ = write!(state, " ({} attempts)", case.attempts);
        }
        let name =
            if case.repetition > 1 { format!("{} (pass {})", case.name, case.repetition) } else { case.name.clone() };
        rows.push(vec![name, state, span(case.started_ms, case.ended_ms)]);
    }
    table(body, &rows);
}

/// What went wrong with a run, in words; `None` if it did not fail.
fn failure(stage: &StageRecord, run: &StageRun) -> Option<String> {
    let reason = run.reason.as_deref();
    let text = match run.state {
        RunState::Failed => match (run.exit_code, reason) {
            (Some(code), Some(reason)) => format!("exit code {code} ({reason})"),
            (Some(code), None) => format!("exit code {code}"),
            (None, Some(reason)) => format!("failed: {reason}"),
            (None, None) => "failed".into(),
        },
        RunState::TimedOut => {
            let mut text = format!("timed out after {}", format_duration(stage.timeout_ms));
            if let Some(reason) = reason {
                let _ = write!(text, " ({reason})");
            }
            text
        }
        RunState::Disconnected => format!("disconnected: {}", reason.unwrap_or("the slave went away")),
        RunState::Pending | RunState::Running | RunState::Passed | RunState::Cancelled | RunState::Skipped => {
            return None
        }
    };
    Some(text)
}

/// A printable mail line: control characters replaced, very long lines cut.
fn clean_line(text: &str) -> String {
    let cleaned: String = text.chars().map(|c| if c.is_control() && c != '\t' { '\u{FFFD}' } else { c }).collect();
    if cleaned.chars().count() > MAX_LINE_CHARS {
        let mut cut: String = cleaned.chars().take(MAX_LINE_CHARS).collect();
        cut.push_str(" [line cut]");
        cut
    } else {
        cleaned
    }
}

/// The failures of the stages `stages` keeps, each with its output's last lines.
fn failures(
    body: &mut String,
    record: &SessionRecord,
    keep: &dyn Fn(&StageRecord) -> bool,
    tail: &dyn Fn(StageId) -> Vec<String>,
) {
    let failed: Vec<(&StageRecord, &StageRun, String)> = record
        .stages
        .iter()
        .filter(|s| keep(s))
        .flat_map(|stage| stage.runs.iter().filter_map(move |run| failure(stage, run).map(|f| (stage, run, f))))
        .collect();
    if failed.is_empty() {
        return;
    }
    let _ = writeln!(body, "\nFailures ({}):", failed.len());
    for (stage, run, what) in failed {
        let _ = writeln!(body, "\n* {} on {}: {what}", stage.label(), run.slave);
        if run.dropped_bytes > 0 {
            let _ = writeln!(body, "  ({} bytes of output were dropped over the output limit)", run.dropped_bytes);
        }
        let mut lines = if run.stage_id == 0 { Vec::new() } else { tail(run.stage_id) };
        let excess = lines.len().saturating_sub(TAIL_LINES);
        lines.drain(..excess);
        if lines.is_empty() {
            body.push_str("  Output: none\n");
            continue;
        }
        if lines.len() == TAIL_LINES {
            let _ = writeln!(body, "  Output (last {TAIL_LINES} lines):");
        } else {
            let _ = writeln!(body, "  Output ({} lines):", lines.len());
        }
        for line in &lines {
            let _ = writeln!(body, "  | {}", clean_line(line));
        }
    }
}

fn suite_body(record: &SessionRecord, link: Option<&str>, tail: &dyn Fn(StageId) -> Vec<String>) -> String {
    let mut body = String::new();
    header(&mut body, record, link);
    body.push('\n');
    case_table(&mut body, record);
    failures(&mut body, record, &|_| true, tail);
    body
}

fn case_body(
    record: &SessionRecord,
    case: &CaseRecord,
    link: Option<&str>,
    tail: &dyn Fn(StageId) -> Vec<String>,
) -> String {
    let mut body = String::new();
    field(&mut body, "Suite", &record.suite);
    field(&mut body, "Session", &format!("#{} ({})", record.id, record.state.as_str()));
    field(&mut body, "Case", &case_label(case));
    field(&mut body, "State", &case_state_word(case.state).to_uppercase());
    field(&mut body, "Duration", &span(case.started_ms, case.ended_ms));
    field(&mut body, "Trigger", &format!("{:?}", record.trigger).to_lowercase());
    field(&mut body, "Commit", record.commit.as_deref().unwrap_or("none"));
    if let Some(link) = link {
        field(&mut body, "Link", link);
    }
    let of_case =
        |stage: &StageRecord| stage.stage.case() == Some(case.name.as_str()) && stage.repetition == case.repetition;
    body.push_str("\nStages:\n");
    let mut rows = vec![vec!["STAGE".to_string(), "SLAVE".into(), "STATE".into(), "EXIT".into(), "DURATION".into()]];
    for stage in record.stages.iter().filter(|s| of_case(s)) {
        for run in &stage.runs {
            let kind = stage.stage.kind();
            rows.push(vec![
                if stage.attempt > 1 { format!("{kind} (attempt {})", stage.attempt) } else { kind.to_string() },
                run.slave.clone(),
                run_state_word(run.state).to_string(),
                run.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                span(run.started_ms, run.ended_ms),
            ]);
        }
    }
    table(&mut body, &rows);
    failures(&mut body, record, &of_case, tail);
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RunOptions, Trigger};
    use xrdtest_proto::Stage;

    fn settings(on_success: AlertPolicy, on_failure: AlertPolicy) -> AlertSettings {
        AlertSettings { emails: vec!["a@example.org".into(), "b@example.org".into()], on_success, on_failure }
    }

    fn run(slave: &str, stage_id: StageId, state: RunState, exit_code: Option<i32>) -> StageRun {
        StageRun {
            slave: slave.into(),
            stage_id,
            state,
            exit_code,
            started_ms: Some(1_000),
            ended_ms: Some(1_400),
            output_bytes: 0,
            dropped_bytes: 0,
            reason: None,
            logs: Vec::new(),
        }
    }

    fn stage(stage: Stage, runs: Vec<StageRun>) -> StageRecord {
        StageRecord { stage, timeout_ms: 90_000, skipped: None, runs, repetition: 1, attempt: 1 }
    }

    fn case(name: &str, state: CaseState) -> CaseRecord {
        let ran = matches!(state, CaseState::Passed | CaseState::Failed);
        CaseRecord {
            state,
            started_ms: ran.then_some(1_000),
            ended_ms: ran.then_some(2_500),
            attempts: u32::from(ran),
            ..CaseRecord::pending(name, name, Vec::new(), 1)
        }
    }

    fn session(state: SessionState) -> SessionRecord {
        SessionRecord {
            id: 12,
            suite: "ts_demo".into(),
            trigger: Trigger::Schedule,
            definition_hash: "h".into(),
            commit: Some("0123abcd".into()),
            slaves: vec!["s1".into(), "s2".into()],
            state,
            reason: None,
            created_ms: 1_714_564_800_000,
            started_ms: Some(1_714_564_801_000),
            ended_ms: Some(1_714_564_863_000),
            cases: Vec::new(),
            stages: Vec::new(),
            cluster: None,
            options: RunOptions::default(),
        }
    }

    fn passed_session() -> SessionRecord {
        let mut record = session(SessionState::Passed);
        record.cases = vec![case("first", CaseState::Passed), case("second", CaseState::Passed)];
        record.stages = vec![
            stage(Stage::SuiteInit, vec![run("s1", 1, RunState::Passed, Some(0))]),
            stage(Stage::CaseRun { case: "first".into() }, vec![run("s1", 2, RunState::Passed, Some(0))]),
            stage(Stage::CaseRun { case: "second".into() }, vec![run("s1", 3, RunState::Passed, Some(0))]),
        ];
        record
    }

    fn failed_session() -> SessionRecord {
        let mut record = session(SessionState::Failed);
        record.reason = Some("failed cases: bad, slow".into());
        record.cases = vec![
            case("good", CaseState::Passed),
            case("bad", CaseState::Failed),
            case("slow", CaseState::Failed),
            case("never", CaseState::NotRun),
        ];
        let mut timed_out = run("s2", 6, RunState::TimedOut, None);
        timed_out.reason = Some("killed after the stage timeout".into());
        let mut gone = run("s1", 7, RunState::Disconnected, None);
        gone.reason = Some("slave disconnected (not back within 60s)".into());
        record.stages = vec![
            stage(Stage::CaseRun { case: "good".into() }, vec![run("s1", 3, RunState::Passed, Some(0))]),
            stage(
                Stage::CaseRun { case: "bad".into() },
                vec![run("s1", 4, RunState::Failed, Some(3)), run("s2", 5, RunState::Passed, Some(0))],
            ),
            stage(Stage::CaseRun { case: "slow".into() }, vec![timed_out, gone]),
        ];
        record
    }

    fn not_started_session() -> SessionRecord {
        let mut record = session(SessionState::Failed);
        record.reason = Some("slave s2 not connected".into());
        record.started_ms = None;
        record.cases = vec![case("first", CaseState::NotRun)];
        record
    }

    fn tails(stage_id: StageId) -> Vec<String> {
        (0..stage_id * 20).map(|i| format!("stage {stage_id} line {i}")).collect()
    }

    fn subjects(mails: &[Mail]) -> Vec<&str> {
        mails.iter().map(|m| m.subject.as_str()).collect()
    }

    #[test]
    fn every_policy_for_every_outcome() {
        use AlertPolicy::{Case, None, Suite};
        let passed = passed_session();
        let failed = failed_session();
        let not_started = not_started_session();
        let url = Some("https://dash.example.org/");
        // (on_success, on_failure, record, subjects expected)
        let cases: Vec<(AlertPolicy, AlertPolicy, &SessionRecord, Vec<&str>)> = vec![
            (Suite, None, &passed, vec!["[xrdtest] ts_demo #12 PASSED (2 of 2 cases passed)"]),
            (
                Case,
                None,
                &passed,
                vec![
                    "[xrdtest] ts_demo #12 PASSED (2 of 2 cases passed)",
                    "[xrdtest] ts_demo #12 case first PASSED",
                    "[xrdtest] ts_demo #12 case second PASSED",
                ],
            ),
            (None, Suite, &passed, vec![]),
            (None, Suite, &failed, vec!["[xrdtest] ts_demo #12 FAILED (2 of 4 cases failed, 1 not run)"]),
            (
                None,
                Case,
                &failed,
                vec![
                    "[xrdtest] ts_demo #12 FAILED (2 of 4 cases failed, 1 not run)",
                    "[xrdtest] ts_demo #12 case good PASSED",
                    "[xrdtest] ts_demo #12 case bad FAILED",
                    "[xrdtest] ts_demo #12 case slow FAILED",
                ],
            ),
            (Suite, None, &failed, vec![]),
            (None, Suite, &not_started, vec!["[xrdtest] ts_demo #12 FAILED (could not start: slave s2 not connected)"]),
            (None, Case, &not_started, vec!["[xrdtest] ts_demo #12 FAILED (could not start: slave s2 not connected)"]),
            (Case, None, &not_started, vec![]),
        ];
        for (on_success, on_failure, record, expected) in cases {
            let settings = settings(on_success, on_failure);
            let mails = compose(&settings, record, url, &tails);
            assert_eq!(subjects(&mails), expected, "{on_success:?}/{on_failure:?} for {:?}", record.state);
            assert_eq!(mails.len(), mail_count(&settings, record));
            for mail in &mails {
                assert_eq!(mail.to, ["a@example.org", "b@example.org"]);
                assert!(mail.body.contains("Link:     https://dash.example.org/sessions/12\n"), "{}", mail.body);
            }
        }
    }

    #[test]
    fn a_passed_session_with_a_flaky_case_says_so() {
        let mut record = passed_session();
        record.cases[1].state = CaseState::Flaky;
        record.cases[1].attempts = 2;
        record.options.params = vec![("size".into(), "64".into())];
        let mails = compose(&settings(AlertPolicy::Case, AlertPolicy::None), &record, None, &tails);
        assert_eq!(
            subjects(&mails),
            [
                "[xrdtest] ts_demo #12 PASSED (FLAKY) (2 of 2 cases passed, 1 of them flaky)",
                "[xrdtest] ts_demo #12 case first PASSED",
                "[xrdtest] ts_demo #12 case second FLAKY",
            ]
        );
        assert!(mails[0].body.contains("FLAKY (2 attempts)"), "{}", mails[0].body);
        assert!(mails[0].body.contains("1 passed, 0 failed, 1 flaky"), "{}", mails[0].body);
        assert!(mails[0].body.contains("Params:   size=64\n"), "{}", mails[0].body);
    }

    #[test]
    fn no_recipients_or_unfinished_sessions_give_no_mail() {
        let mut no_one = settings(AlertPolicy::Case, AlertPolicy::Case);
        no_one.emails.clear();
        assert!(compose(&no_one, &failed_session(), None, &tails).is_empty());
        let mut running = failed_session();
        running.state = SessionState::Running;
        let all = settings(AlertPolicy::Case, AlertPolicy::Case);
        assert!(compose(&all, &running, None, &tails).is_empty());
        assert_eq!(mail_count(&all, &running), 0);
    }

    #[test]
    fn cancelled_and_interrupted_sessions_follow_the_failure_policy() {
        let mut record = passed_session();
        record.state = SessionState::Cancelled;
        record.reason = Some("cancelled by alice".into());
        record.cases[1] = case("second", CaseState::NotRun);
        let mails = compose(&settings(AlertPolicy::None, AlertPolicy::Suite), &record, None, &tails);
        assert_eq!(subjects(&mails), ["[xrdtest] ts_demo #12 CANCELLED (cancelled by alice)"]);
        record.state = SessionState::Interrupted;
        record.reason = None;
        let mails = compose(&settings(AlertPolicy::None, AlertPolicy::Suite), &record, None, &tails);
        assert_eq!(subjects(&mails), ["[xrdtest] ts_demo #12 INTERRUPTED (1 of 2 cases not run)"]);
        let mut init_failed = failed_session();
        init_failed.reason = Some("suite initialization failed".into());
        for case in &mut init_failed.cases {
            case.state = CaseState::NotRun;
        }
        let mails = compose(&settings(AlertPolicy::None, AlertPolicy::Case), &init_failed, None, &tails);
        assert_eq!(subjects(&mails), ["[xrdtest] ts_demo #12 FAILED (suite initialization failed)"]);
    }

    #[test]
    fn suite_mail_has_header_case_table_and_failures_with_the_last_lines() {
        let mails =
            compose(&settings(AlertPolicy::None, AlertPolicy::Suite), &failed_session(), Some("http://d"), &tails);
        let body = &mails[0].body;
        let expected_head = "\
Suite:    ts_demo
Session:  #12
State:    FAILED
Reason:   failed cases: bad, slow
Trigger:  schedule
Commit:   0123abcd
Slaves:   s1, s2
Created:  2024-05-01 12:00:00 UTC
Started:  2024-05-01 12:00:01 UTC
Ended:    2024-05-01 12:01:03 UTC
Duration: 1m02s
Link:     http://d/sessions/12

Cases (1 passed, 2 failed, 1 not run):
  CASE   STATE    DURATION
  good   passed   1.5s
  bad    FAILED   1.5s
  slow   FAILED   1.5s
  never  not run  -

Failures (3):

* case_run:bad on s1: exit code 3
  Output (last 50 lines):
  | stage 4 line 30
";
        assert!(body.starts_with(expected_head), "{body}");
        assert!(body.contains("  | stage 4 line 79\n\n* case_run:slow on s2: timed out after 1m30s (killed after"));
        assert!(!body.contains("stage 4 line 29\n"));
        assert!(body.contains("* case_run:slow on s1: disconnected: slave disconnected (not back within 60s)\n"));
        assert!(!body.contains("stage 5 line"), "passed runs quote no output");
        assert_eq!(body.lines().filter(|l| l.starts_with("  | stage 6 ")).count(), 50);
        assert!(body.contains("  Output (last 50 lines):\n  | stage 7 line 90\n"));
    }

    #[test]
    fn case_mail_has_the_case_stages_and_only_its_failures() {
        let mails = compose(&settings(AlertPolicy::None, AlertPolicy::Case), &failed_session(), None, &|_| {
            vec!["only line".into(), "bell \u{7} here".into()]
        });
        let bad = mails.iter().find(|m| m.subject.ends_with("case bad FAILED")).expect("mail for case bad");
        let expected = "\
Suite:    ts_demo
Session:  #12 (failed)
Case:     bad
State:    FAILED
Duration: 1.5s
Trigger:  schedule
Commit:   0123abcd

Stages:
  STAGE     SLAVE  STATE   EXIT  DURATION
  case_run  s1     failed  3     400ms
  case_run  s2     passed  0     400ms

Failures (1):

* case_run:bad on s1: exit code 3
  Output (2 lines):
  | only line
  | bell \u{FFFD} here
";
        assert_eq!(bad.body, expected);
        let good = mails.iter().find(|m| m.subject.ends_with("case good PASSED")).expect("mail for case good");
        assert!(!good.body.contains("Failures"), "{}", good.body);
        assert!(!good.body.contains("Link:"), "no dashboard URL, no link line");
    }

    #[test]
    fn session_that_could_not_start_says_so() {
        let mails = compose(&settings(AlertPolicy::None, AlertPolicy::Suite), &not_started_session(), None, &tails);
        let body = &mails[0].body;
        assert!(body.contains("State:    FAILED (could not start)\nReason:   slave s2 not connected\n"), "{body}");
        assert!(body.contains("Started:  never\n"));
        assert!(body.contains("Duration: -\n"));
        assert!(body.contains("  first  not run  -\n"));
        assert!(!body.contains("Failures"));
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(human_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(human_utc(951_825_600_000), "2000-02-29 12:00:00 UTC");
        assert_eq!(human_utc(1_714_564_800_999), "2024-05-01 12:00:00 UTC");
        assert_eq!(format_duration(999), "999ms");
        assert_eq!(format_duration(12_345), "12.3s");
        assert_eq!(format_duration(245_000), "4m05s");
        assert_eq!(format_duration(3_720_000), "1h02m");
        assert_eq!(shorten("a\nb", 10), "a b");
        assert_eq!(shorten("abcdefghijkl", 8), "abcde...");
        assert_eq!(clean_line(&"x".repeat(600)).len(), MAX_LINE_CHARS + " [line cut]".len());
    }
}
