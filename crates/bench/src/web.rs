//! Part 4: the dashboard with 10,000 stored sessions, loaded by `wrk` with 20 connections.
//! Target: p99 under 50 ms for the dashboard, history and suites pages.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use xrdtest_master::model::{
    CaseRecord, CaseState, RunOptions, RunState, SessionRecord, SessionState, StageRecord, StageRun, Trigger,
};
use xrdtest_master::store::Store;
use xrdtest_proto::Stage;

use crate::harness::{write_suite, Cluster};

const SESSIONS: u64 = 10_000;
const SUITES: [&str; 5] = ["ts_alpha", "ts_beta", "ts_gamma", "ts_delta", "ts_epsilon"];

/// A finished session like the ones a lab accumulates: 4 cases on 3 slaves.
fn session(id: u64) -> SessionRecord {
    let suite = SUITES[(id % SUITES.len() as u64) as usize];
    let slaves: Vec<String> = (1..=3).map(|n| format!("slave{n}")).collect();
    let failed = id % 7 == 0;
    let start = 1_760_000_000_000 + id * 60_000;
    let mut stages = vec![Stage::SuiteInit];
    let cases: Vec<String> = (0..4).map(|c| format!("case{c}")).collect();
    for case in &cases {
        stages.push(Stage::CaseInit { case: case.clone() });
        stages.push(Stage::CaseRun { case: case.clone() });
        stages.push(Stage::CaseFinalize { case: case.clone() });
    }
    stages.push(Stage::SuiteFinalize);
    let stages = stages
        .into_iter()
        .enumerate()
        .map(|(i, stage)| StageRecord {
            repetition: u32::from(stage.case().is_some()),
            attempt: u32::from(stage.case().is_some()),
            stage,
            timeout_ms: 600_000,
            skipped: None,
            runs: slaves
                .iter()
                .enumerate()
                .map(|(s, slave)| StageRun {
                    slave: slave.clone(),
                    stage_id: id * 100 + (i * 3 + s) as u64,
                    state: if failed && i == 5 { RunState::Failed } else { RunState::Passed },
                    exit_code: Some(if failed && i == 5 { 1 } else { 0 }),
                    started_ms: Some(start + i as u64 * 1000),
                    ended_ms: Some(start + i as u64 * 1000 + 800),
                    output_bytes: 1200,
                    dropped_bytes: 0,
                    reason: None,
                    logs: Vec::new(),
                })
                .collect(),
        })
        .collect();
    SessionRecord {
        id,
        suite: suite.into(),
        trigger: if id % 3 == 0 { Trigger::Schedule } else { Trigger::Manual },
        definition_hash: "0".repeat(64),
        commit: None,
        slaves,
        state: if failed { SessionState::Failed } else { SessionState::Passed },
        reason: failed.then(|| "failed cases: case1".to_string()),
        created_ms: start,
        started_ms: Some(start),
        ended_ms: Some(start + 14_000),
        cases: cases
            .iter()
            .enumerate()
            .map(|(c, name)| CaseRecord {
                state: if failed && c == 1 { CaseState::Failed } else { CaseState::Passed },
                started_ms: Some(start + 1000 + c as u64 * 3000),
                ended_ms: Some(start + 3800 + c as u64 * 3000),
                attempts: 1,
                ..CaseRecord::pending(name, name, Vec::new(), 1)
            })
            .collect(),
        stages,
        cluster: None,
        options: RunOptions { repeat: 1, ..RunOptions::default() },
    }
}

fn fill(state_dir: &Path) -> Result<()> {
    let store = Store::open(&state_dir.join("store")).context("opening the store")?;
    for id in 1..=SESSIONS {
        store.put_session(&session(id))?;
    }
    // Keep the ids of new sessions after the stored ones.
    while store.next_session_id()? < SESSIONS {}
    store.flush_now()?;
    Ok(())
}

/// The 99th-percentile latency `wrk --latency` printed, in ms.
fn p99_ms(output: &str) -> Option<f64> {
    let line = output.lines().find(|l| l.trim_start().starts_with("99%"))?;
    let value = line.split_whitespace().nth(1)?;
    let (number, unit) = value.split_at(value.find(|c: char| c.is_ascii_alphabetic())?);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        _ => return None,
    })
}

fn requests_per_second(output: &str) -> Option<f64> {
    output.lines().find(|l| l.starts_with("Requests/sec:"))?.split_whitespace().nth(1)?.parse().ok()
}

pub fn run() -> Result<()> {
    println!("\n== 4. dashboard: {SESSIONS} stored sessions, wrk with 20 connections for 5 s per page ==");
    if Command::new("wrk").arg("--version").output().is_err() {
        bail!("wrk is not installed: apt-get install wrk");
    }
    let names = vec!["slave1".to_string()];
    let cluster = Cluster::start(0, "", |defs| {
        for suite in SUITES {
            write_suite(defs, suite, &names, &["case0".to_string()], "true\n", false)?;
        }
        let state = defs.parent().map(|p| p.join("state")).context("state folder")?;
        fill(&state)
    })?;
    for (label, path) in [
        ("dashboard", "/"),
        ("history", "/sessions"),
        ("history, page 100", "/sessions?page=100"),
        ("history, filtered", "/sessions?suite=ts_beta&state=failed"),
        ("suites", "/suites"),
        ("session", "/sessions/9000"),
    ] {
        let url = format!("{}{path}", cluster.api);
        let out = Command::new("wrk").args(["-t2", "-c20", "-d5s", "--latency", &url]).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let non_2xx = text.lines().find(|l| l.contains("Non-2xx")).map(str::trim).unwrap_or("");
        match p99_ms(&text) {
            Some(p99) => println!(
                "{label:<20} {path:<40} p99 {p99:>7.2} ms, {:>7.0} req/s (target p99 < 50 ms) [{}] {non_2xx}",
                requests_per_second(&text).unwrap_or(0.0),
                if p99 < 50.0 && non_2xx.is_empty() { "met" } else { "NOT met" }
            ),
            None => println!("{label}: could not read wrk's output:\n{text}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_wrk_percentiles() {
        let out = "  Latency Distribution\n     50%    1.20ms\n     99%  812.00us\nRequests/sec:   1234.56\n";
        assert_eq!(super::p99_ms(out), Some(0.812));
        assert_eq!(super::requests_per_second(out), Some(1234.56));
    }
}
