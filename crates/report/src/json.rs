//! A session as one JSON document (`report.json`): the record, the values of its runs, and
//! per case instance what the other formats say of it, so that a program reads one file.
//!
//! `{"format": "xrdtest-report", "version": 1, "verdict", "session": SessionRecord,
//! "values": {stage id: StageValues}, "suite_failed_stages": [...], "cases": [...]}`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use xrdtest_model::{CaseState, CheckSource, RunState, SessionRecord, StageId, StageValues};

use crate::data::{FailedRun, Instance, SessionData};

/// The name and version of this document's layout; a change that breaks readers raises it.
pub const FORMAT: &str = "xrdtest-report";
pub const VERSION: u32 = 1;

#[derive(Serialize)]
struct Report<'a> {
    format: &'static str,
    version: u32,
    /// The state, or `flaky` for a passed session with flaky cases.
    verdict: &'a str,
    session: &'a SessionRecord,
    values: &'a BTreeMap<StageId, StageValues>,
    /// Suite init and finalize runs that did not pass.
    suite_failed_stages: Vec<FailedStage<'a>>,
    cases: Vec<CaseReport<'a>>,
}

/// One case instance in one pass.
#[derive(Serialize)]
struct CaseReport<'a> {
    /// The instance (`copy[size=64]`).
    name: &'a str,
    /// With ` (pass N)` when the session made several passes.
    label: &'a str,
    case: &'a str,
    params: &'a [(String, String)],
    pass: u32,
    state: CaseState,
    attempts: u32,
    started_ms: Option<u64>,
    ended_ms: Option<u64>,
    duration_ms: Option<u64>,
    /// Why it did not pass (null when passed or flaky).
    reason: Option<String>,
    /// Runs that did not pass, of every attempt (a flaky instance's earlier failures too).
    failed_stages: Vec<FailedStage<'a>>,
    checks: Vec<CheckEntry<'a>>,
    results: Vec<ResultEntry<'a>>,
}

#[derive(Serialize)]
struct FailedStage<'a> {
    /// `case_run:copy (attempt 2)`.
    stage: String,
    kind: &'static str,
    attempt: u32,
    slave: &'a str,
    stage_id: StageId,
    state: RunState,
    exit_code: Option<i32>,
    reason: Option<&'a str>,
    /// Its last lines of output.
    output_tail: Vec<&'a str>,
}

#[derive(Serialize)]
struct CheckEntry<'a> {
    name: &'a str,
    passed: bool,
    message: &'a str,
    source: CheckSource,
    slave: &'a str,
    stage: String,
    attempt: u32,
    stage_id: StageId,
}

#[derive(Serialize)]
struct ResultEntry<'a> {
    name: &'a str,
    value: f64,
    unit: &'a str,
    slave: &'a str,
    stage: String,
    attempt: u32,
    stage_id: StageId,
}

fn failed_stage<'a>(data: &'a SessionData, failed: &FailedRun<'a>) -> FailedStage<'a> {
    FailedStage {
        stage: failed.stage.label(),
        kind: failed.stage.stage.kind(),
        attempt: failed.stage.attempt,
        slave: &failed.run.slave,
        stage_id: failed.run.stage_id,
        state: failed.run.state,
        exit_code: failed.run.exit_code,
        reason: failed.run.reason.as_deref(),
        output_tail: data.tail_of(failed.run).iter().map(|line| line.text.as_str()).collect(),
    }
}

fn case_report<'a>(data: &'a SessionData, instance: &'a Instance<'a>) -> CaseReport<'a> {
    let attempts: BTreeSet<u32> = instance.stages.iter().map(|(_, stage)| stage.attempt).collect();
    let failed_stages = attempts
        .iter()
        .flat_map(|&attempt| instance.failed_runs(attempt))
        .map(|failed| failed_stage(data, &failed))
        .collect();
    let mut checks = Vec::new();
    let mut results = Vec::new();
    for (_, stage) in &instance.stages {
        for run in &stage.runs {
            let Some(values) = data.values_of(run) else { continue };
            for check in &values.checks {
                checks.push(CheckEntry {
                    name: &check.name,
                    passed: check.passed,
                    message: &check.message,
                    source: check.source,
                    slave: &run.slave,
                    stage: stage.label(),
                    attempt: stage.attempt,
                    stage_id: run.stage_id,
                });
            }
            for result in &values.results {
                results.push(ResultEntry {
                    name: &result.name,
                    value: result.value,
                    unit: &result.unit,
                    slave: &run.slave,
                    stage: stage.label(),
                    attempt: stage.attempt,
                    stage_id: run.stage_id,
                });
            }
        }
    }
    let case = instance.case;
    CaseReport {
        name: &case.name,
        label: &instance.label,
        case: &case.case,
        params: &case.params,
        pass: case.repetition,
        state: case.state,
        attempts: case.attempts,
        started_ms: case.started_ms,
        ended_ms: case.ended_ms,
        duration_ms: instance.duration_ms(),
        reason: instance.reason(data.record.reason.as_deref()),
        failed_stages,
        checks,
        results,
    }
}

/// The report as pretty-printed JSON.
pub fn json(data: &SessionData) -> String {
    let instances = data.instances();
    let report = Report {
        format: FORMAT,
        version: VERSION,
        verdict: data.record.verdict(),
        session: &data.record,
        values: &data.values,
        suite_failed_stages: data.failed_suite_runs().iter().map(|failed| failed_stage(data, failed)).collect(),
        cases: instances.iter().map(|instance| case_report(data, instance)).collect(),
    };
    // Plain data with string keys and finite numbers: serializing cannot fail.
    serde_json::to_string_pretty(&report).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;
    use serde_json::Value;

    #[test]
    fn the_report_holds_the_record_values_and_cases() {
        let data = testdata::mixed();
        let report: Value = serde_json::from_str(&json(&data)).expect("valid JSON");
        assert_eq!(report["format"], "xrdtest-report");
        assert_eq!(report["version"], 1);
        assert_eq!(report["verdict"], "failed");
        assert_eq!(report["session"]["id"], 42);
        assert_eq!(report["values"]["3"]["results"][0]["name"], "latency_ms");
        let cases = report["cases"].as_array().expect("cases");
        let names: Vec<&str> = cases.iter().map(|c| c["name"].as_str().unwrap_or("")).collect();
        assert_eq!(names, ["measure", "broken", "wobbly", "later"]);
        assert_eq!(cases[0]["duration_ms"], 2000);
        assert_eq!(cases[0]["results"].as_array().map(Vec::len), Some(3));
        assert_eq!(cases[0]["results"][0]["value"], 12.5);
        assert_eq!(cases[0]["results"][0]["slave"], "s1");
        assert_eq!(cases[1]["state"], "failed");
        assert_eq!(cases[1]["failed_stages"][1]["output_tail"][1], "bye");
        assert_eq!(cases[1]["checks"][0]["passed"], false);
        assert_eq!(cases[1]["checks"][0]["source"], "script");
        assert_eq!(cases[2]["state"], "flaky");
        assert_eq!(cases[2]["reason"], Value::Null);
        assert_eq!(cases[2]["failed_stages"][0]["stage"], "case_run:wobbly");
        assert_eq!(cases[2]["failed_stages"][0]["attempt"], 1);
        assert_eq!(cases[3]["reason"], "not run: exit-first");
        assert_eq!(report["suite_failed_stages"].as_array().map(Vec::len), Some(0));

        let failed: Value = serde_json::from_str(&json(&testdata::suite_init_failed())).expect("valid JSON");
        assert_eq!(failed["suite_failed_stages"][0]["slave"], "s1");
        assert_eq!(failed["suite_failed_stages"][0]["output_tail"][0], "cannot mount /data");
    }
}
