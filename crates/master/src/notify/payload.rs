//! What a webhook says: pure functions from a finished session record to the body sent.
//!
//! - `json`: the session summary (its fields are listed in `docs/results.md`).
//! - `slack`: `{"text", "blocks"}` as Slack incoming webhooks (and Mattermost, Rocket.Chat)
//!   take them: `text` is the notification's fallback, the blocks a `section` in mrkdwn and a
//!   `context` line.
//! - `matrix`: the content of an `m.room.message` event, `m.text` with an HTML
//!   `formatted_body`, for bridges and bots that post what they are given into a room.

use serde_json::{json, Value};
// XML escaping (both quotes too) is HTML escaping for Matrix's `formatted_body`.
use xrdtest_report::xml::attr as escape_html;

use super::criteria::Change;
use super::WebhookFormat;
use crate::model::{CaseState, SessionId, SessionRecord, SessionState};

/// The `format` field of a `json` body, and its version: raised when a field changes meaning
/// or goes away (new fields may come without it).
pub const FORMAT: &str = "xrdtest-webhook";
pub const VERSION: u32 = 1;
/// The event every body is about (also the `X-Xrdtest-Event` header).
pub const EVENT: &str = "session.finished";
/// Most failed case instances named in a body; the counts tell the rest.
pub const MAX_LISTED_CASES: usize = 20;
/// Reasons are cut to this many characters in chat messages (Slack refuses a section over
/// 3000).
const MAX_REASON_CHARS: usize = 500;

/// What a body says beside the record itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The suite's previous finished session: its id and state.
    pub previous: Option<(SessionId, SessionState)>,
    pub change: Option<Change>,
    /// The session's page on the dashboard, when the master knows its public URL.
    pub link: Option<String>,
}

/// The session page's URL under a dashboard base URL.
pub fn session_link(dashboard_url: Option<&str>, id: SessionId) -> Option<String> {
    dashboard_url.map(|base| format!("{}/sessions/{id}", base.trim_end_matches('/')))
}

/// The bytes POSTed for `record` in `format` (what the signature covers).
pub fn body(format: WebhookFormat, record: &SessionRecord, context: &Context) -> Vec<u8> {
    let value = match format {
        WebhookFormat::Json => summary(record, context),
        WebhookFormat::Slack => slack(record, context),
        WebhookFormat::Matrix => matrix(record, context),
    };
    // A `Value` always serializes.
    serde_json::to_vec(&value).unwrap_or_default()
}

struct Counts {
    total: usize,
    passed: usize,
    failed: usize,
    not_run: usize,
    flaky: usize,
}

/// Under Slack's limit of 3,000 characters of text in a section block.
const MAX_SLACK_SECTION_CHARS: usize = 2_900;

fn counts(record: &SessionRecord) -> Counts {
    let count = |state: CaseState| record.cases.iter().filter(|c| c.state == state).count();
    Counts {
        total: record.cases.len(),
        passed: count(CaseState::Passed),
        failed: count(CaseState::Failed),
        not_run: count(CaseState::NotRun),
        flaky: count(CaseState::Flaky),
    }
}

fn failed_cases(record: &SessionRecord) -> Vec<&str> {
    // An instance fails in each pass it fails in: named once, in the order first failed.
    let mut names: Vec<&str> = Vec::new();
    for case in record.cases.iter().filter(|c| c.state == CaseState::Failed) {
        if !names.contains(&case.name.as_str()) {
            names.push(&case.name);
        }
    }
    names.truncate(MAX_LISTED_CASES);
    names
}

fn duration_ms(record: &SessionRecord) -> Option<u64> {
    Some(record.ended_ms?.saturating_sub(record.started_ms?))
}

/// The `json` body: the session summary.
pub fn summary(record: &SessionRecord, context: &Context) -> Value {
    let counts = counts(record);
    json!({
        "format": FORMAT,
        "version": VERSION,
        "event": EVENT,
        "session": {
            "id": record.id,
            "suite": record.suite,
            "state": record.state.as_str(),
            "verdict": record.verdict(),
            "passed": record.state == SessionState::Passed,
            "reason": record.reason,
            "trigger": record.trigger.as_str(),
            "created_ms": record.created_ms,
            "started_ms": record.started_ms,
            "ended_ms": record.ended_ms,
            "duration_ms": duration_ms(record),
            "cases": {
                "total": counts.total,
                "passed": counts.passed,
                "failed": counts.failed,
                "not_run": counts.not_run,
                "flaky": counts.flaky,
            },
            "failed_cases": failed_cases(record),
            "commit": record.commit,
            "definition_hash": record.definition_hash,
            "slaves": record.slaves,
            "url": context.link,
        },
        "previous": context.previous.map(|(id, state)| json!({ "id": id, "state": state.as_str() })),
        "change": context.change.map(Change::as_str),
    })
}

/// `failed (regression)`, `passed (fixed)`, `flaky`...
fn outcome(record: &SessionRecord, context: &Context) -> String {
    match context.change {
        Some(Change::Regression) => format!("{} (regression)", record.verdict()),
        Some(Change::Fix) => format!("{} (fixed)", record.verdict()),
        None => record.verdict().to_string(),
    }
}

/// `3 cases: 1 passed, 2 failed`, with not run and flaky when there are any.
fn case_line(record: &SessionRecord) -> String {
    let counts = counts(record);
    let mut parts = vec![format!("{} passed", counts.passed), format!("{} failed", counts.failed)];
    if counts.not_run > 0 {
        parts.push(format!("{} not run", counts.not_run));
    }
    if counts.flaky > 0 {
        parts.push(format!("{} flaky", counts.flaky));
    }
    let noun = if counts.total == 1 { "case" } else { "cases" };
    format!("{} {noun}: {}", counts.total, parts.join(", "))
}

/// Duration, commit and trigger, for the small print.
fn details(record: &SessionRecord) -> Vec<String> {
    let mut details = Vec::new();
    match duration_ms(record) {
        Some(ms) if ms < 1000 => details.push(format!("{ms} ms")),
        Some(ms) => details.push(format!("{:.1} s", ms as f64 / 1000.0)),
        None => {}
    }
    if let Some(commit) = &record.commit {
        details.push(format!("commit {}", commit.chars().take(12).collect::<String>()));
    }
    details.push(format!("trigger {}", record.trigger.as_str()));
    details
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Slack's three characters with a meaning in mrkdwn text.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn slack_emoji(record: &SessionRecord) -> &'static str {
    match record.state {
        SessionState::Passed if record.is_flaky() => ":warning:",
        SessionState::Passed => ":white_check_mark:",
        SessionState::Cancelled => ":no_entry_sign:",
        SessionState::Interrupted => ":warning:",
        _ => ":x:",
    }
}

/// The `slack` body.
pub fn slack(record: &SessionRecord, context: &Context) -> Value {
    let suite = slack_escape(&record.suite);
    let session = match &context.link {
        Some(link) => format!("<{}|#{}>", slack_escape(link), record.id),
        None => format!("#{}", record.id),
    };
    let outcome = outcome(record, context);
    let fallback = format!("{} #{} {outcome}", record.suite, record.id);
    let mut text = format!("{} *{suite}* session {session} {outcome}", slack_emoji(record));
    if let Some(reason) = &record.reason {
        text.push_str(&format!("\n{}", slack_escape(&cut(reason, MAX_REASON_CHARS))));
    }
    text.push_str(&format!("\n{}", case_line(record)));
    let failed = failed_cases(record);
    if !failed.is_empty() {
        let names: Vec<String> = failed.iter().map(|name| format!("`{}`", slack_escape(name))).collect();
        text.push_str(&format!("\nfailed: {}", names.join(", ")));
    }
    // Slack refuses a section's text past 3,000 characters (and a refused body is not retried).
    let text = cut(&text, MAX_SLACK_SECTION_CHARS);
    json!({
        "text": fallback,
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text": text } },
            { "type": "context", "elements": [{ "type": "mrkdwn", "text": slack_escape(&details(record).join(" · ")) }] },
        ],
    })
}

/// The `matrix` body.
pub fn matrix(record: &SessionRecord, context: &Context) -> Value {
    let outcome = outcome(record, context);
    let reason = record.reason.as_deref().map(|r| cut(r, MAX_REASON_CHARS));
    let failed = failed_cases(record);
    let details = details(record).join(" · ");

    let mut body = format!("{} #{} {outcome}", record.suite, record.id);
    if let Some(reason) = &reason {
        body.push_str(&format!(": {reason}"));
    }
    body.push_str(&format!("\n{}", case_line(record)));
    if !failed.is_empty() {
        body.push_str(&format!("\nfailed: {}", failed.join(", ")));
    }
    body.push_str(&format!("\n{details}"));
    if let Some(link) = &context.link {
        body.push_str(&format!("\n{link}"));
    }

    let session = match &context.link {
        Some(link) => format!("<a href=\"{}\">#{}</a>", escape_html(link), record.id),
        None => format!("#{}", record.id),
    };
    let mut html = format!("<b>{}</b> {session} <b>{}</b>", escape_html(&record.suite), escape_html(&outcome));
    if let Some(reason) = &reason {
        html.push_str(&format!(": {}", escape_html(reason)));
    }
    html.push_str(&format!("<br>{}", escape_html(&case_line(record))));
    if !failed.is_empty() {
        let names: Vec<String> = failed.iter().map(|name| format!("<code>{}</code>", escape_html(name))).collect();
        html.push_str(&format!("<br>failed: {}", names.join(", ")));
    }
    html.push_str(&format!("<br><small>{}</small>", escape_html(&details)));
    json!({
        "msgtype": "m.text",
        "body": body,
        "format": "org.matrix.custom.html",
        "formatted_body": html,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CaseRecord, Trigger};

    fn record(state: SessionState) -> SessionRecord {
        let mut record = SessionRecord::queued(12, "ts_<demo>", Trigger::Api, vec!["a1".into()], 1_000);
        record.state = state;
        record.started_ms = Some(2_000);
        record.ended_ms = Some(14_500);
        record.commit = Some("0123456789abcdef0123".into());
        record.definition_hash = "feed".into();
        let case = |name: &str, state: CaseState| CaseRecord { state, ..CaseRecord::pending(name, name, vec![], 1) };
        record.cases = vec![case("good", CaseState::Passed), case("bad&worse", CaseState::Failed)];
        if state != SessionState::Passed {
            record.reason = Some("case bad&worse failed: exit code 7 on a1".into());
        }
        record
    }

    fn context() -> Context {
        Context {
            previous: Some((11, SessionState::Passed)),
            change: Some(Change::Regression),
            link: session_link(Some("https://dash.example.org/"), 12),
        }
    }

    #[test]
    fn the_json_summary_holds_every_documented_field() {
        let value: Value =
            serde_json::from_slice(&body(WebhookFormat::Json, &record(SessionState::Failed), &context()))
                .expect("valid JSON");
        assert_eq!(
            value,
            json!({
                "format": "xrdtest-webhook", "version": 1, "event": "session.finished",
                "session": {
                    "id": 12, "suite": "ts_<demo>", "state": "failed", "verdict": "failed", "passed": false,
                    "reason": "case bad&worse failed: exit code 7 on a1", "trigger": "api",
                    "created_ms": 1000, "started_ms": 2000, "ended_ms": 14500, "duration_ms": 12500,
                    "cases": { "total": 2, "passed": 1, "failed": 1, "not_run": 0, "flaky": 0 },
                    "failed_cases": ["bad&worse"],
                    "commit": "0123456789abcdef0123", "definition_hash": "feed", "slaves": ["a1"],
                    "url": "https://dash.example.org/sessions/12",
                },
                "previous": { "id": 11, "state": "passed" },
                "change": "regression",
            })
        );
        let first = summary(&record(SessionState::Passed), &Context::default());
        assert!(first["previous"].is_null() && first["change"].is_null() && first["session"]["url"].is_null());
        assert_eq!(first["session"]["passed"], true);
    }

    #[test]
    fn long_instance_names_keep_a_slack_section_under_its_limit_and_repeats_are_named_once() {
        let mut long = record(SessionState::Failed);
        let name = |i: usize| format!("copy[{}={i}]", "k".repeat(400));
        long.cases = (0..20)
            .flat_map(|i| [name(i), name(i)])
            .map(|n| CaseRecord { state: CaseState::Failed, ..CaseRecord::pending(&n, "copy", vec![], 1) })
            .collect();
        assert_eq!(failed_cases(&long).len(), MAX_LISTED_CASES.min(20));
        assert_eq!(failed_cases(&long)[1], name(1), "each instance once, in order");
        let value = slack(&long, &context());
        let text = value["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(text.chars().count() <= 3000, "{} characters", text.chars().count());
    }

    #[test]
    fn slack_shape_is_text_and_blocks_with_mrkdwn_escaped() {
        let value = slack(&record(SessionState::Failed), &context());
        let object = value.as_object().unwrap();
        assert_eq!(object.keys().collect::<Vec<_>>(), ["blocks", "text"]);
        assert_eq!(value["text"], "ts_<demo> #12 failed (regression)");
        let blocks = value["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "section");
        assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
        let text = blocks[0]["text"]["text"].as_str().unwrap();
        assert!(
            text.starts_with(
                ":x: *ts_&lt;demo&gt;* session <https://dash.example.org/sessions/12|#12> failed (regression)"
            ),
            "{text}"
        );
        assert!(
            text.contains("bad&amp;worse failed: exit code 7") && text.contains("2 cases: 1 passed, 1 failed"),
            "{text}"
        );
        assert!(text.contains("failed: `bad&amp;worse`"), "{text}");
        assert_eq!(blocks[1]["type"], "context");
        assert_eq!(blocks[1]["elements"][0]["text"], "12.5 s · commit 0123456789ab · trigger api");
        let fixed = slack(&record(SessionState::Passed), &Context { change: Some(Change::Fix), ..Context::default() });
        assert!(fixed["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .starts_with(":white_check_mark: *ts_&lt;demo&gt;* session #12 passed (fixed)"));
    }

    #[test]
    fn matrix_shape_is_m_text_with_escaped_html() {
        let value = matrix(&record(SessionState::Failed), &context());
        let object = value.as_object().unwrap();
        assert_eq!(object.keys().collect::<Vec<_>>(), ["body", "format", "formatted_body", "msgtype"]);
        assert_eq!(value["msgtype"], "m.text");
        assert_eq!(value["format"], "org.matrix.custom.html");
        let body = value["body"].as_str().unwrap();
        assert!(body.starts_with("ts_<demo> #12 failed (regression): case bad&worse failed"), "{body}");
        assert!(body.ends_with("\nhttps://dash.example.org/sessions/12"), "{body}");
        let html = value["formatted_body"].as_str().unwrap();
        assert!(html.starts_with("<b>ts_&lt;demo&gt;</b> <a href=\"https://dash.example.org/sessions/12\">#12</a> <b>failed (regression)</b>"), "{html}");
        assert!(html.contains("<code>bad&amp;worse</code>") && !html.contains("bad&worse"), "{html}");
    }

    #[test]
    fn long_reasons_are_cut_in_chat_messages_only() {
        let mut long = record(SessionState::Failed);
        long.reason = Some("é".repeat(2 * MAX_REASON_CHARS));
        let text = slack(&long, &Context::default())["blocks"][0]["text"]["text"].as_str().unwrap().to_string();
        assert!(text.contains(&format!("{}…", "é".repeat(MAX_REASON_CHARS))) && text.len() < 3000, "{}", text.len());
        assert_eq!(summary(&long, &Context::default())["session"]["reason"].as_str().unwrap().chars().count(), 1000);
    }
}
