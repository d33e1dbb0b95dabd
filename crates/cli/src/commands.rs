//! The commands that talk to a master: run, sessions, show, slaves, cancel.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use xrdtest_model::api::{CancelRequest, OutputPage, RunRequest, SessionCreated, SessionPage};
use xrdtest_model::{now_ms, RunState, SessionRecord, SessionState};

use crate::client::ApiClient;

/// Exit codes of `xrdtest run --wait` (documented in docs/cli.md).
pub const EXIT_PASSED: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_CANCELLED: u8 = 3;
pub const EXIT_NOT_STARTED: u8 = 4;

/// Starts a suite; with `wait`, follows it and returns its exit code.
pub fn run(
    api: &ApiClient,
    suite: &str,
    cases: &[String],
    skip: &[String],
    wait: bool,
    json_output: bool,
) -> Result<ExitCode> {
    let request = RunRequest { trigger: Some("manual".into()), cases: cases.to_vec(), skip: skip.to_vec() };
    let created: SessionCreated = api.post(&format!("/api/suites/{suite}/run"), &request)?;
    if !wait {
        if json_output {
            println!("{}", json!({ "session": created.session }));
        } else {
            println!("session {} of {suite} started", created.session);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let record = follow(api, created.session, !json_output)?;
    if json_output {
        println!("{}", serde_json::to_string_pretty(&record)?);
    }
    Ok(ExitCode::from(exit_code_of(&record)))
}

pub fn exit_code_of(record: &SessionRecord) -> u8 {
    match record.state {
        SessionState::Passed => EXIT_PASSED,
        SessionState::Cancelled | SessionState::Interrupted => EXIT_CANCELLED,
        SessionState::Failed if record.started_ms.is_none() => EXIT_NOT_STARTED,
        _ => EXIT_FAILED,
    }
}

fn clock(ms: u64) -> String {
    let secs = (ms / 1000) % 86400;
    format!("{:02}:{:02}:{:02}", secs / 3600, (secs / 60) % 60, secs % 60)
}

fn seconds(start: Option<u64>, end: Option<u64>) -> String {
    match (start, end) {
        (Some(start), Some(end)) => format!("{:.2}s", end.saturating_sub(start) as f64 / 1000.0),
        _ => "-".into(),
    }
}

/// Polls a session and prints every change of a stage run until it ends.
pub fn follow(api: &ApiClient, id: u64, print: bool) -> Result<SessionRecord> {
    let mut seen: HashMap<(usize, String), RunState> = HashMap::new();
    let mut last_state = None;
    let mut cluster_steps_seen = 0;
    loop {
        let record: SessionRecord = api.get(&format!("/api/sessions/{id}"))?;
        if let (true, Some(cluster)) = (print, &record.cluster) {
            for step in cluster.steps.iter().skip(cluster_steps_seen) {
                println!("[{}]   cluster {:<24} {:<20} {}", clock(step.unix_ms), cluster.name, step.state, step.detail);
            }
            cluster_steps_seen = cluster.steps.len();
        }
        for (index, stage) in record.stages.iter().enumerate() {
            for run in &stage.runs {
                let key = (index, run.slave.clone());
                if seen.get(&key) == Some(&run.state) || run.state == RunState::Pending {
                    continue;
                }
                seen.insert(key, run.state);
                if print {
                    let when = run.ended_ms.or(run.started_ms).unwrap_or_else(now_ms);
                    let detail = match (run.state, &run.reason) {
                        (RunState::Running, _) => String::new(),
                        (_, Some(reason)) => format!(" ({}; {reason})", seconds(run.started_ms, run.ended_ms)),
                        _ => format!(" ({})", seconds(run.started_ms, run.ended_ms)),
                    };
                    println!(
                        "[{}]   {:<32} {:<20} {}{detail}",
                        clock(when),
                        stage.stage.to_string(),
                        run.slave,
                        run_state_word(run.state)
                    );
                }
            }
        }
        if print && last_state != Some(record.state) {
            let now = now_ms();
            println!("[{}] session {id} {}: {}", clock(now), record.suite, record.state.as_str());
            last_state = Some(record.state);
        }
        if record.state.is_final() {
            if print {
                print_summary(api, &record);
            }
            return Ok(record);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run_state_word(state: RunState) -> &'static str {
    match state {
        RunState::Pending => "pending",
        RunState::Running => "running",
        RunState::Passed => "passed",
        RunState::Failed => "FAILED",
        RunState::TimedOut => "TIMEOUT",
        RunState::Cancelled => "cancelled",
        RunState::Skipped => "skipped",
        RunState::Disconnected => "DISCONNECTED",
    }
}

/// The last `n` lines of a stage's output.
fn output_tail(api: &ApiClient, stage_id: u64, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut from = 0;
    while let Ok(page) = api.get::<OutputPage>(&format!("/api/stages/{stage_id}/output?from={from}&max_chunks=256")) {
        if page.lines.is_empty() {
            break;
        }
        lines.extend(page.lines.into_iter().map(|l| l.text));
        if lines.len() > 4 * n {
            lines.drain(..lines.len() - n);
        }
        from = page.next;
    }
    let excess = lines.len().saturating_sub(n);
    lines.split_off(excess)
}

fn print_summary(api: &ApiClient, record: &SessionRecord) {
    println!();
    println!("session {} of {}: {}", record.id, record.suite, record.state.as_str().to_uppercase());
    if let Some(reason) = &record.reason {
        println!("  {reason}");
    }
    for case in &record.cases {
        println!("  case {:<30} {:<8} {}", case.name, case.state.as_str(), seconds(case.started_ms, case.ended_ms));
    }
    for stage in &record.stages {
        for run in &stage.runs {
            if matches!(run.state, RunState::Failed | RunState::TimedOut | RunState::Disconnected) && run.stage_id != 0
            {
                println!();
                println!(
                    "  {} on {}: {} — last output:",
                    stage.stage,
                    run.slave,
                    run.reason.as_deref().unwrap_or("failed")
                );
                for line in output_tail(api, run.stage_id, 10) {
                    println!("    | {line}");
                }
            }
        }
    }
}

/// `/api/sessions` with the filters given, each value percent-encoded.
fn sessions_path(suite: Option<&str>, state: Option<&str>, limit: usize) -> String {
    let mut path = format!("/api/sessions?limit={limit}");
    for (name, value) in [("suite", suite), ("state", state)] {
        if let Some(value) = value {
            path.push_str(&format!("&{name}={}", utf8_percent_encode(value, NON_ALPHANUMERIC)));
        }
    }
    path
}

pub fn sessions(
    api: &ApiClient,
    suite: Option<&str>,
    state: Option<&str>,
    limit: usize,
    json_output: bool,
) -> Result<ExitCode> {
    let page: SessionPage = api.get(&sessions_path(suite, state, limit))?;
    if json_output {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:>6}  {:<24} {:<15} {:<9} {:>9}  CASES", "ID", "SUITE", "STATE", "TRIGGER", "DURATION");
    for s in &page.sessions {
        println!(
            "{:>6}  {:<24} {:<15} {:<9} {:>9}  {}/{} passed",
            s.id,
            s.suite,
            s.state.as_str(),
            s.trigger.as_str(),
            seconds(s.started_ms, s.ended_ms),
            s.cases_passed,
            s.cases_total
        );
    }
    println!("({} of {} sessions)", page.sessions.len(), page.total);
    Ok(ExitCode::SUCCESS)
}

pub fn show(api: &ApiClient, id: u64, json_output: bool) -> Result<ExitCode> {
    let record: SessionRecord = api.get(&format!("/api/sessions/{id}"))?;
    if json_output {
        println!("{}", serde_json::to_string_pretty(&record)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("session {} — suite {} — {}", record.id, record.suite, record.state.as_str());
    println!(
        "trigger {}, slaves {}, definition {}",
        record.trigger,
        record.slaves.join(" "),
        &record.definition_hash[..12.min(record.definition_hash.len())]
    );
    if let Some(reason) = &record.reason {
        println!("reason: {reason}");
    }
    for stage in &record.stages {
        println!("{}", stage.stage);
        for run in &stage.runs {
            println!(
                "    {:<20} {:<12} exit {:<5} {:>8}  {}",
                run.slave,
                run_state_word(run.state),
                run.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                seconds(run.started_ms, run.ended_ms),
                run.reason.as_deref().unwrap_or("")
            );
        }
    }
    print_summary(api, &record);
    Ok(ExitCode::SUCCESS)
}

pub fn slaves(api: &ApiClient, json_output: bool) -> Result<ExitCode> {
    let answer: Value = api.get("/api/slaves")?;
    if json_output {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<28} {:<11} {:<10} {:<22} SESSION", "NAME", "ROLE", "STATE", "ADDRESS");
    for peer in answer["slaves"].as_array().into_iter().flatten() {
        println!(
            "{:<28} {:<11} {:<10} {:<22} {}",
            peer["name"].as_str().unwrap_or(""),
            peer["role"].as_str().unwrap_or(""),
            if peer["connected"].as_bool() == Some(true) { "connected" } else { "away" },
            peer["address"].as_str().unwrap_or(""),
            peer["session"].as_u64().map(|s| s.to_string()).unwrap_or_else(|| "-".into())
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cancel(api: &ApiClient, id: u64, reason: Option<&str>) -> Result<ExitCode> {
    let reason = reason.unwrap_or("cancelled from the command line");
    let request = CancelRequest { reason: Some(reason.to_string()) };
    let _: Value = api.post(&format!("/api/sessions/{id}/cancel"), &request)?;
    println!("session {id}: cancelling");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_filters_are_percent_encoded() {
        assert_eq!(sessions_path(None, None, 20), "/api/sessions?limit=20");
        assert_eq!(sessions_path(Some("ts_ok"), Some("failed"), 5), "/api/sessions?limit=5&suite=ts%5Fok&state=failed");
        assert_eq!(
            sessions_path(Some("a&state=passed"), Some("x y#z"), 1),
            "/api/sessions?limit=1&suite=a%26state%3Dpassed&state=x%20y%23z"
        );
    }
}
