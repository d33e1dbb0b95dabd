//! `GET /metrics`: the master's state for Prometheus, in the text exposition format 0.0.4
//! (`# HELP`, `# TYPE`, one sample a line, label values escaped).
//!
//! Access follows the API's reads: open, unless `[web] require_login` closes reading; then
//! the API token is needed as `Authorization: Bearer <api_token>` (a scraper cannot log in
//! with a form; Prometheus sends a bearer token with `authorization: { credentials: ... }`).
//!
//! Every scrape reads the store's indexes for the session counts (keys only, nothing
//! decoded) off the async threads; the rest is counters in memory.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use xrdtest_master::handle::{CoreHandle, HistogramSnapshot};
use xrdtest_model::SessionState;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What one scrape shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// `(suite, state, count)`, sorted by suite.
    pub sessions: Vec<(String, SessionState, u64)>,
    /// Per stage kind.
    pub stage_durations: Vec<(&'static str, HistogramSnapshot)>,
    pub slaves_connected: usize,
    pub hypervisors_connected: usize,
    pub sessions_queued: usize,
    pub sessions_running: usize,
    /// Sent and failed; `None` when not configured (shown as 0).
    pub mails: Option<(u64, u64)>,
    pub webhooks: Option<(u64, u64)>,
}

/// The handler of `GET /metrics`.
pub async fn metrics(State(core): State<CoreHandle>, headers: HeaderMap) -> Response {
    if let Err(refusal) = allowed(&core, &headers) {
        return refusal;
    }
    let counting = core.clone();
    let sessions = match tokio::task::spawn_blocking(move || counting.session_counts()).await {
        Ok(Ok(sessions)) => sessions,
        Ok(Err(err)) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot count sessions: {err}\n")).into_response()
        }
        Err(err) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot count sessions: {err}\n")).into_response()
        }
    };
    let peers = core.peers();
    let connected = |role: &str| peers.iter().filter(|p| p.connected && p.role == role).count();
    let snapshot = Snapshot {
        sessions,
        stage_durations: core.stage_durations(),
        slaves_connected: connected("slave"),
        hypervisors_connected: connected("hypervisor"),
        sessions_queued: core.queued_sessions(),
        sessions_running: core.running_sessions(),
        mails: core.alert_counts(),
        webhooks: core.webhook_counts(),
    };
    ([(header::CONTENT_TYPE, CONTENT_TYPE), (header::CACHE_CONTROL, "no-store")], render(&snapshot)).into_response()
}

/// Open, unless reading needs a login: then the API token as a bearer token.
#[allow(clippy::result_large_err)]
fn allowed(core: &CoreHandle, headers: &HeaderMap) -> Result<(), Response> {
    if !core.web_settings().require_login {
        return Ok(());
    }
    let refuse = |status: StatusCode, message: &str| Err((status, format!("{message}\n")).into_response());
    let given = crate::auth::bearer_token(headers).unwrap_or("");
    if core.token_scope(given).is_some() {
        return Ok(());
    }
    if !core.accepts_tokens() {
        return refuse(
            StatusCode::FORBIDDEN,
            "/metrics needs an API token while [web] require_login is set, and the master has no api_token (nor any `xrdtest token create` token)",
        );
    }
    {
        refuse(StatusCode::UNAUTHORIZED, "missing or wrong API token (Authorization: Bearer <api_token>)")
    }
}

/// A label value as the format wants it: `\`, `"` and newlines escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `# HELP` text: `\` and newlines escaped (quotes stay).
pub fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value: integers without a fraction, `+Inf`, `-Inf`, `NaN`.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        // Rust's shortest round-trip form, never with an exponent (`1`, `0.1`, `2.5`,
        // `1000000000000000000000`): all valid Go floats.
        format!("{value}")
    }
}

/// The text being written.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
            let _ = write!(self.0, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.0, " {}", format_value(value));
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value as f64);
    }
}

/// The whole exposition of `snapshot`.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = Exposition(String::new());
    out.family("xrdtest_build_info", "gauge", "The running xrdtest-master's version (always 1).");
    out.sample("xrdtest_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1.0);

    out.family("xrdtest_sessions", "gauge", "Stored sessions by suite and state.");
    let mut suites: Vec<&str> = snapshot.sessions.iter().map(|(suite, _, _)| suite.as_str()).collect();
    suites.dedup();
    for suite in suites {
        // Every state of a suite that has sessions, so that a state going to 0 shows as 0.
        for &state in SessionState::ALL {
            let count = snapshot
                .sessions
                .iter()
                .find(|(s, st, _)| s == suite && *st == state)
                .map_or(0, |(_, _, count)| *count);
            out.sample("xrdtest_sessions", &[("suite", suite), ("state", state.as_str())], count as f64);
        }
    }

    let name = "xrdtest_stage_duration_seconds";
    out.family(
        name,
        "histogram",
        "Durations of stage runs of the sessions ended since the master started, by stage kind.",
    );
    for (stage, histogram) in &snapshot.stage_durations {
        for (bound, count) in &histogram.buckets {
            let le = format_value(*bound);
            out.sample(&format!("{name}_bucket"), &[("stage", stage), ("le", &le)], *count as f64);
        }
        out.sample(&format!("{name}_bucket"), &[("stage", stage), ("le", "+Inf")], histogram.count as f64);
        out.sample(&format!("{name}_sum"), &[("stage", stage)], histogram.sum_seconds);
        out.sample(&format!("{name}_count"), &[("stage", stage)], histogram.count as f64);
    }

    out.gauge("xrdtest_slaves_connected", "Slaves connected now.", snapshot.slaves_connected as f64);
    out.gauge("xrdtest_hypervisors_connected", "Hypervisors connected now.", snapshot.hypervisors_connected as f64);
    out.gauge(
        "xrdtest_sessions_queued",
        "Sessions waiting in the queue for their slaves or cluster.",
        snapshot.sessions_queued as f64,
    );
    out.gauge("xrdtest_sessions_running", "Sessions running now.", snapshot.sessions_running as f64);
    let (mails_sent, mails_failed) = snapshot.mails.unwrap_or_default();
    out.counter("xrdtest_alert_mails_sent_total", "Alert mails the SMTP server accepted.", mails_sent);
    out.counter(
        "xrdtest_alert_mails_failed_total",
        "Alert mails given up on (tries used up, refused, or dropped).",
        mails_failed,
    );
    let (hooks_sent, hooks_failed) = snapshot.webhooks.unwrap_or_default();
    out.counter("xrdtest_webhooks_sent_total", "Webhooks a receiver took (a 2xx answer).", hooks_sent);
    out.counter(
        "xrdtest_webhooks_failed_total",
        "Webhooks given up on (tries used up, refused, or dropped).",
        hooks_failed,
    );
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// A core (no listener) with `settings` at the top of its `master.toml`.
    fn core(dir: &std::path::Path, settings: &str) -> CoreHandle {
        let config = xrdtest_master::config::MasterConfig::from_toml(
            &format!("secret = \"s\"\nstate_dir = \"{}\"\n{settings}", dir.display()),
            dir,
        )
        .unwrap();
        let store = xrdtest_master::store::Store::open(&dir.join("store")).unwrap();
        let auth = xrdtest_master::peer_auth::PeerAuth::open(&config).unwrap();
        let tokens = xrdtest_master::api_tokens::TokenStore::load(&config.state_dir).unwrap();
        CoreHandle::new(xrdtest_master::master::Master::new(config, store, auth, tokens))
    }

    async fn scrape(core: &CoreHandle, bearer: Option<&str>) -> (StatusCode, String) {
        let mut headers = HeaderMap::new();
        if let Some(token) = bearer {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        }
        let response = metrics(State(core.clone()), headers).await;
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        if status == StatusCode::OK {
            assert_eq!(content_type.as_ref().and_then(|v| v.to_str().ok()), Some(CONTENT_TYPE));
        }
        (status, text)
    }

    #[tokio::test]
    async fn open_like_the_api_reads_and_behind_the_api_token_when_reading_needs_a_login() {
        let dir = tempfile::tempdir().unwrap();
        let open = core(&dir.path().join("open"), "");
        let (status, text) = scrape(&open, None).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(text.contains("# TYPE xrdtest_sessions gauge") && text.contains("xrdtest_webhooks_sent_total 0"));

        let closed =
            core(&dir.path().join("closed"), "api_token = \"t0ken\"\n[web]\npassword = \"pw\"\nrequire_login = true");
        assert_eq!(scrape(&closed, None).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(scrape(&closed, Some("wrong")).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(scrape(&closed, Some("t0ken")).await.0, StatusCode::OK);

        let no_token = core(&dir.path().join("no-token"), "[web]\npassword = \"pw\"\nrequire_login = true");
        let (status, text) = scrape(&no_token, Some("anything")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(text.contains("api_token"), "{text}");
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("two\nlines"), "two\\nlines");
        assert_eq!(escape_label("plain_suite.1"), "plain_suite.1");
        assert_eq!(escape_help("back\\slash \"quoted\"\nnext"), "back\\\\slash \"quoted\"\\nnext");
    }

    #[test]
    fn values_are_go_floats() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(2.5), "2.5");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
    }

    #[test]
    fn a_snapshot_renders_every_family_once_with_typed_samples() {
        let snapshot = Snapshot {
            sessions: vec![("ts_\"odd\"".into(), SessionState::Failed, 2), ("ts_a".into(), SessionState::Passed, 3)],
            stage_durations: vec![(
                "case_run",
                HistogramSnapshot { buckets: vec![(0.5, 1), (1.0, 2)], count: 3, sum_seconds: 4.25 },
            )],
            slaves_connected: 2,
            hypervisors_connected: 0,
            sessions_queued: 1,
            sessions_running: 1,
            mails: None,
            webhooks: Some((5, 1)),
        };
        let text = render(&snapshot);
        let lines: Vec<&str> = text.lines().collect();
        for expected in [
            "# HELP xrdtest_sessions Stored sessions by suite and state.",
            "# TYPE xrdtest_sessions gauge",
            r#"xrdtest_sessions{suite="ts_\"odd\"",state="failed"} 2"#,
            r#"xrdtest_sessions{suite="ts_\"odd\"",state="passed"} 0"#,
            r#"xrdtest_sessions{suite="ts_a",state="passed"} 3"#,
            r#"xrdtest_sessions{suite="ts_a",state="interrupted"} 0"#,
            "# TYPE xrdtest_stage_duration_seconds histogram",
            r#"xrdtest_stage_duration_seconds_bucket{stage="case_run",le="0.5"} 1"#,
            r#"xrdtest_stage_duration_seconds_bucket{stage="case_run",le="1"} 2"#,
            r#"xrdtest_stage_duration_seconds_bucket{stage="case_run",le="+Inf"} 3"#,
            r#"xrdtest_stage_duration_seconds_sum{stage="case_run"} 4.25"#,
            r#"xrdtest_stage_duration_seconds_count{stage="case_run"} 3"#,
            "xrdtest_slaves_connected 2",
            "xrdtest_hypervisors_connected 0",
            "xrdtest_sessions_queued 1",
            "xrdtest_sessions_running 1",
            "# TYPE xrdtest_alert_mails_sent_total counter",
            "xrdtest_alert_mails_sent_total 0",
            "xrdtest_alert_mails_failed_total 0",
            "xrdtest_webhooks_sent_total 5",
            "xrdtest_webhooks_failed_total 1",
        ] {
            assert!(lines.contains(&expected), "missing `{expected}` in:\n{text}");
        }
        assert_eq!(lines.iter().filter(|l| l.starts_with("xrdtest_sessions{")).count(), 2 * SessionState::ALL.len());
        // Each family's HELP and TYPE once, TYPE right after HELP, before its samples.
        let types: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
        let mut names: Vec<&str> = types.iter().filter_map(|t| t.split(' ').next()).collect();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "{types:?}");
        for (i, line) in lines.iter().enumerate() {
            if line.starts_with("# HELP ") {
                assert!(lines[i + 1].starts_with("# TYPE "), "{line}");
            }
        }
        assert!(text.ends_with('\n'));
    }
}
