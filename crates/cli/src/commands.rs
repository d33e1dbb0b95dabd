//! The commands that talk to a master: run, sessions, show, slaves, cancel.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use std::fmt::Write as _;

use xrdtest_model::api::{CancelRequest, OutputPage, PlanView, RunRequest, SessionCreated, SessionPage};
use xrdtest_model::{now_ms, CaseState, RunState, SessionRecord, SessionState};

use crate::client::ApiClient;

/// Exit codes of `xrdtest run --wait` (documented in docs/cli.md).
pub const EXIT_PASSED: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_CANCELLED: u8 = 3;
pub const EXIT_NOT_STARTED: u8 = 4;

/// The options of `xrdtest run` and `xrdtest plan`: what a session runs and how.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Run only this case (repeatable): a case name runs every instance of it, an
    /// instance name (`copy[size=64,mode=sync]`) that one. Cases keep the suite's order.
    #[arg(long = "case", value_name = "NAME")]
    pub cases: Vec<String>,
    /// Leave this case or instance out (repeatable).
    #[arg(long, value_name = "NAME")]
    pub skip: Vec<String>,
    /// Override a tag for this session only (repeatable); the key must be one of the
    /// suite's or its cases' tags or matrix keys.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Run the selected cases N times over, in order (default: the suite's `repeat`).
    #[arg(long, value_name = "N")]
    pub repeat: Option<u32>,
    /// Repeat the case list until DURATION (`90s`, `2h`) has passed, finishing the case
    /// in progress: a soak.
    #[arg(long = "for", value_name = "DURATION", conflicts_with = "repeat")]
    pub for_duration: Option<String>,
    /// Run a failed case instance again, init to finalize, up to N more times (default:
    /// the case's or suite's `retries`). One that passes later is flaky.
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Run no more cases after the first failed one (suite finalize still runs).
    #[arg(long)]
    pub exit_first: bool,
    /// A cluster suite: after a failed session keep its cluster up for DURATION (held),
    /// so a person can log in and look; `xrdtest cluster stop` ends it sooner.
    #[arg(long, value_name = "DURATION")]
    pub keep_on_failure: Option<String>,
}

/// `KEY=VALUE`.
fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

impl RunArgs {
    /// The API's run request for these options.
    pub fn request(&self, trigger: Option<&str>) -> RunRequest {
        RunRequest {
            trigger: trigger.map(str::to_string),
            cases: self.cases.clone(),
            skip: self.skip.clone(),
            params: self.params.iter().cloned().collect(),
            repeat: self.repeat,
            for_duration: self.for_duration.clone(),
            retries: self.retries,
            exit_first: self.exit_first.then_some(true),
            keep_on_failure: self.keep_on_failure.clone(),
        }
    }
}

/// Starts a suite; with `wait`, follows it and returns its exit code (writing its JUnit
/// report to `junit` first, when given).
pub fn run(
    api: &ApiClient,
    suite: &str,
    options: &RunArgs,
    wait: bool,
    junit: Option<&std::path::Path>,
    json_output: bool,
) -> Result<ExitCode> {
    let request = options.request(Some("manual"));
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
    if let Some(file) = junit {
        crate::reports::write_junit(api, record.id, file)?;
    }
    if json_output {
        println!("{}", serde_json::to_string_pretty(&record)?);
    }
    Ok(ExitCode::from(exit_code_of(&record)))
}

/// Prints the plan of a run with `options`.
pub fn plan(api: &ApiClient, suite: &str, options: &RunArgs, json_output: bool) -> Result<ExitCode> {
    let plan: PlanView = api.post(&format!("/api/suites/{suite}/plan"), &options.request(None))?;
    if json_output {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", format_plan(&plan));
    }
    Ok(ExitCode::SUCCESS)
}

/// A plan as text: its options, the slaves and tags every stage has, then each stage.
pub fn format_plan(plan: &PlanView) -> String {
    let mut out = String::new();
    let options = &plan.options;
    let mut how = vec![if plan.repeats_until_time {
        format!("repeat until {} has passed", human(options.for_ms.unwrap_or(0)))
    } else {
        format!("{} pass{}", options.repeat, if options.repeat == 1 { "" } else { "es" })
    }];
    if let Some(retries) = options.retries {
        how.push(format!("retries {retries}"));
    }
    if options.exit_first {
        how.push("exit-first".into());
    }
    if let Some(ms) = options.keep_on_failure_ms {
        how.push(format!("keep the cluster {} after a failure", human(ms)));
    }
    let _ = writeln!(out, "suite {}: {}", plan.suite, how.join(", "));
    let _ = writeln!(out, "slaves: {}", if plan.slaves.is_empty() { "(none)".into() } else { plan.slaves.join(" ") });
    if !options.params.is_empty() {
        let params: Vec<String> = options.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "parameters: {}", params.join(" "));
    }
    let tags: Vec<String> = plan.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "tags of every stage: {}  (and per slave: slavename)", tags.join(" "));
    let _ = writeln!(out);
    let _ = writeln!(out, "{:>4}  {:<48} {:>5} {:>8}  TAGS", "#", "STAGE", "PASS", "ATTEMPTS");
    for (index, stage) in plan.stages.iter().enumerate() {
        let pass = if stage.case.is_some() { stage.repetition.to_string() } else { "-".into() };
        let attempts = if stage.case.is_some() { format!("≤{}", stage.max_attempts) } else { "-".into() };
        let tags: Vec<String> = stage.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "{:>4}  {:<48} {:>5} {:>8}  {}", index + 1, stage.stage, pass, attempts, tags.join(" "));
    }
    if plan.repeats_until_time {
        let _ = writeln!(out, "      (the case stages repeat, a pass at a time, until the time is up)");
    }
    out
}

fn human(ms: u64) -> String {
    xrdtest_defs::units::format_duration(Duration::from_millis(ms))
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
                        stage.label(),
                        run.slave,
                        run_state_word(run.state)
                    );
                }
            }
        }
        if print && last_state != Some(record.state) {
            let now = now_ms();
            println!("[{}] session {id} {}: {}", clock(now), record.suite, record.verdict());
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
    println!("session {} of {}: {}", record.id, record.suite, record.verdict().to_uppercase());
    if let Some(reason) = &record.reason {
        println!("  {reason}");
    }
    if !record.options.params.is_empty() {
        let params: Vec<String> = record.options.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("  parameters: {}", params.join(" "));
    }
    let passes = record.cases.iter().map(|case| case.repetition).max().unwrap_or(1);
    let label = |case: &xrdtest_model::CaseRecord| {
        if passes > 1 {
            format!("{} (pass {})", case.name, case.repetition)
        } else {
            case.name.clone()
        }
    };
    let width = record.cases.iter().map(|case| label(case).chars().count()).max().unwrap_or(0).max(30);
    for case in &record.cases {
        let attempts = if case.attempts > 1 { format!(", {} attempts", case.attempts) } else { String::new() };
        let state = match case.state {
            CaseState::Flaky => "FLAKY",
            state => state.as_str(),
        };
        println!("  case {:<width$} {:<8} {}{attempts}", label(case), state, seconds(case.started_ms, case.ended_ms));
    }
    for stage in &record.stages {
        for run in &stage.runs {
            if matches!(run.state, RunState::Failed | RunState::TimedOut | RunState::Disconnected) && run.stage_id != 0
            {
                println!();
                println!(
                    "  {} on {}: {} — last output:",
                    stage.label(),
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
            "{:>6}  {:<24} {:<15} {:<9} {:>9}  {}/{} passed{}",
            s.id,
            s.suite,
            if s.state == SessionState::Passed && s.cases_flaky > 0 { "flaky" } else { s.state.as_str() },
            s.trigger.as_str(),
            seconds(s.started_ms, s.ended_ms),
            s.cases_passed,
            s.cases_total,
            if s.cases_flaky > 0 { format!(", {} flaky", s.cases_flaky) } else { String::new() }
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
    println!("session {} — suite {} — {}", record.id, record.suite, record.verdict());
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
        println!("{}", stage.label());
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
