//! Sessions the format tests share (tests only).

use std::collections::BTreeMap;

use xrdtest_model::{
    CaseRecord, CaseState, Check, CheckSource, OutputLine, ResultValue, RunState, SessionRecord, SessionState, Stage,
    StageRecord, StageRun, StageValues, Trigger,
};

use crate::SessionData;

pub const T0: u64 = 1_700_000_000_000;

pub fn run(
    slave: &str,
    id: u64,
    state: RunState,
    exit: Option<i32>,
    reason: Option<&str>,
    at: u64,
    ms: u64,
) -> StageRun {
    StageRun {
        stage_id: id,
        state,
        exit_code: exit,
        started_ms: (state != RunState::Skipped).then_some(at),
        ended_ms: (state != RunState::Skipped).then_some(at + ms),
        reason: reason.map(str::to_string),
        output_bytes: 10,
        ..StageRun::pending(slave)
    }
}

pub fn stage(stage: Stage, repetition: u32, attempt: u32, runs: Vec<StageRun>) -> StageRecord {
    StageRecord { stage, timeout_ms: 60_000, skipped: None, runs, repetition, attempt }
}

fn case_run(case: &str) -> Stage {
    Stage::CaseRun { case: case.into() }
}

fn passed(slave: &str, id: u64, at: u64) -> StageRun {
    run(slave, id, RunState::Passed, Some(0), None, at, 100)
}

pub fn case(name: &str, state: CaseState, attempts: u32, at: Option<u64>, ms: u64) -> CaseRecord {
    CaseRecord {
        state,
        started_ms: at,
        ended_ms: at.map(|at| at + ms),
        attempts,
        ..CaseRecord::pending(name, name.split('[').next().unwrap_or(name), Vec::new(), 1)
    }
}

fn line(text: &str) -> OutputLine {
    OutputLine { unix_ms: T0, text: text.into() }
}

pub fn result(name: &str, value: f64, unit: &str) -> ResultValue {
    ResultValue { name: name.into(), value, unit: unit.into() }
}

pub fn check(name: &str, passed: bool, message: &str) -> Check {
    Check { name: name.into(), passed, message: message.into(), source: CheckSource::Script }
}

fn record(state: SessionState, reason: Option<&str>) -> SessionRecord {
    let mut record = SessionRecord::queued(42, "ts_x", Trigger::Manual, vec!["s1".into(), "s2".into()], T0);
    record.state = state;
    record.reason = reason.map(str::to_string);
    record.started_ms = Some(T0);
    record.ended_ms = Some(T0 + 10_000);
    record.definition_hash = "d1f2e3".into();
    record.commit = Some("abc123".into());
    record.options.params = vec![("size".into(), "64".into())];
    record.options.repeat = 1;
    record
}

/// A failed session: `measure` passed with values and checks, `broken` failed (a failed
/// check on s1, exit 3 on s2), `wobbly` flaky (failed on s1 in attempt 1), `later` not run.
pub fn mixed() -> SessionData {
    let mut record = record(SessionState::Failed, Some("exit-first"));
    let at = T0 + 1000;
    record.cases = vec![
        case("measure", CaseState::Passed, 1, Some(at), 2000),
        case("broken", CaseState::Failed, 1, Some(at + 2000), 1500),
        case("wobbly", CaseState::Flaky, 2, Some(at + 3500), 1000),
        case("later", CaseState::NotRun, 0, None, 0),
    ];
    record.stages = vec![
        stage(Stage::SuiteInit, 0, 0, vec![passed("s1", 1, T0), passed("s2", 2, T0)]),
        stage(case_run("measure"), 1, 1, vec![passed("s1", 3, at), passed("s2", 4, at)]),
        stage(
            case_run("broken"),
            1,
            1,
            vec![
                run("s1", 5, RunState::Failed, Some(0), Some("check `sums` failed: abc != def"), at + 2000, 300),
                run("s2", 6, RunState::Failed, Some(3), Some("exit code 3"), at + 2000, 400),
            ],
        ),
        stage(
            case_run("wobbly"),
            1,
            1,
            vec![
                run("s1", 7, RunState::Failed, Some(1), Some("exit code 1"), at + 3500, 200),
                passed("s2", 8, at + 3500),
            ],
        ),
        stage(case_run("wobbly"), 1, 2, vec![passed("s1", 9, at + 4000), passed("s2", 10, at + 4000)]),
        stage(
            case_run("later"),
            1,
            1,
            vec![
                run("s1", 0, RunState::Skipped, None, Some("exit-first"), 0, 0),
                run("s2", 0, RunState::Skipped, None, Some("exit-first"), 0, 0),
            ],
        ),
        stage(Stage::SuiteFinalize, 0, 0, vec![passed("s1", 11, T0 + 9000), passed("s2", 12, T0 + 9000)]),
    ];
    let mut values = BTreeMap::new();
    values.insert(
        3,
        StageValues {
            results: vec![result("latency_ms", 12.5, "ms"), result("ops", 1000.0, "")],
            checks: vec![check("reply", true, "")],
        },
    );
    values.insert(
        4,
        StageValues { results: vec![result("latency_ms", 14.0, "ms")], checks: vec![check("reply", true, "")] },
    );
    values.insert(5, StageValues { results: Vec::new(), checks: vec![check("sums", false, "abc != def")] });
    let mut tails = BTreeMap::new();
    tails.insert(5, vec![line("sums differ")]);
    tails.insert(6, vec![line("error: <disk> & \u{1b}[31mred"), line("bye")]);
    tails.insert(7, vec![line("first try")]);
    SessionData { record, values, tails }
}

/// Suite init failed on s1: the one case did not run.
pub fn suite_init_failed() -> SessionData {
    let mut record = record(SessionState::Failed, Some("suite init failed"));
    record.cases = vec![case("only", CaseState::NotRun, 0, None, 0)];
    record.stages = vec![
        stage(
            Stage::SuiteInit,
            0,
            0,
            vec![run("s1", 1, RunState::Failed, Some(2), Some("exit code 2"), T0, 500), passed("s2", 2, T0)],
        ),
        stage(Stage::SuiteFinalize, 0, 0, vec![passed("s1", 3, T0 + 600), passed("s2", 4, T0 + 600)]),
    ];
    let mut tails = BTreeMap::new();
    tails.insert(1, vec![line("cannot mount /data")]);
    SessionData { record, values: BTreeMap::new(), tails }
}

/// Panics unless every start tag of `xml` is closed in order (a well-formedness check of
/// the documents these tests make: no comments, CDATA or processing instructions but the
/// declaration).
pub fn assert_balanced(xml: &str) {
    let mut open: Vec<String> = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').map(|e| start + e).expect("a tag is closed");
        let tag = &rest[start + 1..end];
        assert!(!tag.contains('<'), "a `<` inside a tag: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop().as_deref(), Some(name), "closing {name}");
        } else if !tag.starts_with('?') && !tag.starts_with('!') && !tag.ends_with('/') {
            open.push(tag.split_whitespace().next().unwrap_or("").to_string());
        }
        rest = &rest[end + 1..];
    }
    assert!(open.is_empty(), "unclosed: {open:?}");
}
