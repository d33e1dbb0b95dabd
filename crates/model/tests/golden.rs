//! Golden bytes of the store: one fixed sample of every type the master's store keeps, and
//! of every enum variant inside one, encoded as the store encodes it ([`storage::encode`]),
//! pinned per schema version in `tests/golden/schema{N}.txt` (one `name hex` line each):
//! [`SessionRecord`] (tree `sessions`), [`SessionSummary`] (`summaries`), [`LogFile`]
//! (`logs`), a `Vec<OutputLine>` (one chunk of an `output/<stage id>.out` file), and the
//! [`state_code`] of every [`SessionState`] (first byte of the `state_sessions` keys).
//!
//! These are the bytes of stores already on disk, and a store outlives the build that wrote
//! it: a mismatch is never mended by blessing again. Bump [`SCHEMA_VERSION`], copy the types
//! as they were into a `v{N}` module of this crate, add a step to `check_schema` in
//! `crates/master/src/store.rs` that rewrites old records (decode with `v{N}`, encode with
//! today's types), then write `schema{N+1}.txt` with
//! `XRDTEST_BLESS=1 cargo test -p xrdtest-model --test golden` and keep `schema{N}.txt`,
//! with a test that its samples decode with the kept types (N goes into `OLDER_SCHEMAS`;
//! the test of schema 1 shows how). A variant added last leaves old
//! bytes readable but still needs the bump, so that an older build refuses the store instead
//! of meeting a variant it does not know; its migration step is empty. A changed state code
//! needs a step that rebuilds the `state_sessions` index.
//!
//! Not pinned here: the key layouts (big-endian ids, suite name ++ 0 ++ id, output index
//! values), private to the store; `crates/master/tests/old_store.rs` opens a real store of
//! an older build. Integers wider than a byte are variable-length, so widening one (`u32`
//! to `u64`) leaves the bytes alone; old stores read the same.
//!
//! Never edit a sample: its bytes are pinned. A new variant gets a new sample. The fixture
//! machinery is `xrdtest-golden`, shared with the protocol's golden test.

use std::collections::{BTreeMap, BTreeSet};

use xrdtest_golden::{hex, unhex, Fixtures, Samples};
use xrdtest_model::storage::{self, state_code, SCHEMA_VERSION};
use xrdtest_model::*;

/// A sample of any value the store writes. A few dozen of them, built once per test: the size
/// of a record beside a state code does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
enum Sample {
    Record(SessionRecord),
    Summary(SessionSummary),
    Log(LogFile),
    Output(Vec<OutputLine>),
    /// Tree `values`: what a stage run reported (schema 3).
    Values(StageValues),
    /// Tree `timelines`: a session's sync waits and faults (schema 4).
    Timeline(Timeline),
    /// Tree `cleanups`: what each slave ended at a session's end (schema 5).
    Cleanup(Vec<SlaveCleanup>),
    /// Stored as its [`state_code`], one byte.
    StateCode(SessionState),
}

impl Sample {
    /// The bytes the store writes for it.
    fn encode(&self) -> Vec<u8> {
        match self {
            Sample::Record(record) => storage::encode(record),
            Sample::Summary(summary) => storage::encode(summary),
            Sample::Log(log) => storage::encode(log),
            Sample::Output(lines) => storage::encode(lines),
            Sample::Values(values) => storage::encode(values),
            Sample::Timeline(timeline) => storage::encode(timeline),
            Sample::Cleanup(cleanup) => storage::encode(cleanup),
            Sample::StateCode(state) => Ok(vec![state_code(*state)]),
        }
        .unwrap()
    }

    /// `bytes` read as the store reads a value of this sample's type.
    fn decode_like(&self, bytes: &[u8]) -> Result<Sample, String> {
        let error = |e: storage::CodecError| e.to_string();
        Ok(match self {
            Sample::Record(_) => Sample::Record(storage::decode(bytes).map_err(error)?),
            Sample::Summary(_) => Sample::Summary(storage::decode(bytes).map_err(error)?),
            Sample::Log(_) => Sample::Log(storage::decode(bytes).map_err(error)?),
            Sample::Output(_) => Sample::Output(storage::decode(bytes).map_err(error)?),
            Sample::Values(_) => Sample::Values(storage::decode(bytes).map_err(error)?),
            Sample::Timeline(_) => Sample::Timeline(storage::decode(bytes).map_err(error)?),
            Sample::Cleanup(_) => Sample::Cleanup(storage::decode(bytes).map_err(error)?),
            Sample::StateCode(_) => {
                let [code] = bytes else { return Err(format!("{} bytes, not one", bytes.len())) };
                let state = SessionState::ALL.iter().find(|state| state_code(**state) == *code);
                Sample::StateCode(*state.ok_or_else(|| format!("no state has code {code}"))?)
            }
        })
    }
}

const T0: u64 = 1_763_000_000_000;

/// A plain case run in the first pass, once if it started: what schema 1 recorded (a
/// schema-1 sample migrates to the sample of its name made with these helpers).
fn case(name: &str, state: CaseState, started_ms: Option<u64>, ended_ms: Option<u64>) -> CaseRecord {
    CaseRecord {
        name: name.into(),
        state,
        started_ms,
        ended_ms,
        case: name.into(),
        params: Vec::new(),
        repetition: 1,
        attempts: u32::from(started_ms.is_some()),
    }
}

/// A stage of the first pass and the first attempt (suite stages: 0 and 0).
fn first_pass(stage: Stage, skipped: Option<String>, runs: Vec<StageRun>) -> StageRecord {
    let (repetition, attempt) = if stage.case().is_some() { (1, 1) } else { (0, 0) };
    StageRecord { stage, timeout_ms: 600_000, skipped, runs, repetition, attempt }
}

/// A run not sent yet.
fn pending(slave: &str) -> StageRun {
    StageRun {
        slave: slave.into(),
        stage_id: 0,
        state: RunState::Pending,
        exit_code: None,
        started_ms: None,
        ended_ms: None,
        output_bytes: 0,
        dropped_bytes: 0,
        reason: None,
        logs: Vec::new(),
    }
}

/// A run that ended: with an exit code or a reason, its output and a collected log.
fn ended(slave: &str, stage_id: StageId, state: RunState, exit_code: Option<i32>, reason: Option<&str>) -> StageRun {
    StageRun {
        slave: slave.into(),
        stage_id,
        state,
        exit_code,
        started_ms: Some(T0 + 1_000),
        ended_ms: Some(T0 + 2_500),
        output_bytes: 1234,
        dropped_bytes: 0,
        reason: reason.map(Into::into),
        logs: vec![format!("/var/log/{slave}.log")],
    }
}

fn stage(stage: Stage, runs: Vec<StageRun>) -> StageRecord {
    first_pass(stage, None, runs)
}

fn skipped(stage: Stage, why: &str, slaves: &[&str]) -> StageRecord {
    let runs = slaves.iter().map(|slave| StageRun { state: RunState::Skipped, ..pending(slave) }).collect();
    first_pass(stage, Some(why.into()), runs)
}

fn case_run(case: &str) -> Stage {
    Stage::CaseRun { case: case.into() }
}

/// A session of `ts_demo` on two slaves, created at `T0`, not started, with no cases yet,
/// run with no options (one pass over every case).
fn session(id: SessionId, state: SessionState, trigger: Trigger) -> SessionRecord {
    SessionRecord {
        id,
        suite: "ts_demo".into(),
        trigger,
        definition_hash: "sha256:5f2b0c9e".into(),
        commit: None,
        slaves: vec!["slave1".into(), "slave2".into()],
        state,
        reason: None,
        created_ms: T0,
        started_ms: None,
        ended_ms: None,
        cases: Vec::new(),
        stages: Vec::new(),
        cluster: None,
        options: RunOptions { repeat: 1, ..Default::default() },
    }
}

fn cluster_step(after_ms: u64, state: &str, detail: &str) -> ClusterStep {
    ClusterStep { unix_ms: T0 + after_ms, state: state.into(), detail: detail.into() }
}

fn session_samples() -> Vec<(&'static str, SessionRecord)> {
    use SessionState as S;
    let slaves = ["slave1", "slave2"];
    let waiting_stages = || {
        vec![
            stage(Stage::SuiteInit, slaves.iter().map(|slave| pending(slave)).collect()),
            stage(case_run("copy_to"), vec![pending("slave1")]),
        ]
    };
    vec![
        (
            "session_queued",
            SessionRecord {
                cases: vec![case("copy_to", CaseState::Pending, None, None)],
                stages: waiting_stages(),
                ..session(1, S::Queued, Trigger::Manual)
            },
        ),
        (
            "session_starting_cluster",
            SessionRecord {
                suite: "ts_xrootd_copy".into(),
                slaves: vec!["server.pair.test".into(), "client.pair.test".into()],
                cases: vec![case("copy_to", CaseState::Pending, None, None)],
                stages: waiting_stages(),
                cluster: Some(ClusterRun {
                    name: "cluster_pair".into(),
                    hypervisor: Some("hv1.xrd.test".into()),
                    started_here: true,
                    steps: vec![
                        cluster_step(10, "definition_sent", ""),
                        cluster_step(20, "creating_network", "virbr_pair ü"),
                    ],
                }),
                ..session(2, S::StartingCluster, Trigger::Manual)
            },
        ),
        (
            "session_waiting_slaves",
            SessionRecord {
                cases: vec![case("copy_to", CaseState::Pending, None, None)],
                stages: waiting_stages(),
                ..session(3, S::WaitingSlaves, Trigger::Manual)
            },
        ),
        (
            "session_running",
            SessionRecord {
                started_ms: Some(T0 + 500),
                cases: vec![
                    case("copy_to", CaseState::Passed, Some(T0 + 3_000), Some(T0 + 4_000)),
                    case("copy_from", CaseState::Running, Some(T0 + 4_000), None),
                    case("checksum", CaseState::Pending, None, None),
                ],
                stages: vec![
                    stage(
                        Stage::SuiteInit,
                        vec![
                            ended("slave1", 300, RunState::Passed, Some(0), None),
                            ended("slave2", 301, RunState::Passed, Some(0), None),
                        ],
                    ),
                    stage(
                        case_run("copy_from"),
                        vec![StageRun {
                            stage_id: 302,
                            state: RunState::Running,
                            started_ms: Some(T0 + 4_000),
                            output_bytes: 17,
                            ..pending("slave1")
                        }],
                    ),
                ],
                ..session(4, S::Running, Trigger::Api)
            },
        ),
        (
            "session_passed",
            SessionRecord {
                commit: Some("929a4c6f0e1d2c3b4a5968778695a4b3c2d1e0f9".into()),
                started_ms: Some(T0 + 500),
                ended_ms: Some(T0 + 9_000),
                cases: vec![case("copy_to", CaseState::Passed, Some(T0 + 1_000), Some(T0 + 8_000))],
                // Every kind of stage, in a session's order.
                stages: vec![
                    stage(Stage::SuiteInit, vec![ended("slave1", 400, RunState::Passed, Some(0), None)]),
                    stage(
                        Stage::CaseInit { case: "copy_to".into() },
                        vec![ended("slave1", 401, RunState::Passed, Some(0), None)],
                    ),
                    stage(
                        case_run("copy_to"),
                        vec![StageRun {
                            output_bytes: 64 << 20,
                            dropped_bytes: 4096,
                            ..ended("slave1", 402, RunState::Passed, Some(0), None)
                        }],
                    ),
                    stage(
                        Stage::CaseFinalize { case: "copy_to".into() },
                        vec![ended("slave1", 403, RunState::Passed, Some(0), None)],
                    ),
                    stage(Stage::SuiteFinalize, vec![ended("slave1", 404, RunState::Passed, Some(0), None)]),
                ],
                ..session(5, S::Passed, Trigger::Schedule)
            },
        ),
        (
            "session_failed",
            SessionRecord {
                reason: Some("failed cases: copy_to, copy_from".into()),
                started_ms: Some(T0 + 500),
                ended_ms: Some(T0 + 700_000),
                cases: vec![
                    case("copy_to", CaseState::Failed, Some(T0 + 1_000), Some(T0 + 2_000)),
                    case("copy_from", CaseState::Failed, Some(T0 + 2_000), Some(T0 + 700_000)),
                ],
                stages: vec![
                    stage(
                        Stage::CaseInit { case: "copy_to".into() },
                        vec![
                            ended("slave1", 500, RunState::Failed, Some(-1), Some("exit code -1")),
                            ended("slave2", 501, RunState::Disconnected, None, Some("slave2 did not come back")),
                        ],
                    ),
                    skipped(case_run("copy_to"), "its case init failed", &slaves),
                    stage(
                        case_run("copy_from"),
                        vec![ended("slave1", 502, RunState::TimedOut, None, Some("timed out after 600 s"))],
                    ),
                ],
                ..session(6, S::Failed, Trigger::Manual)
            },
        ),
        (
            "session_cancelled",
            SessionRecord {
                reason: Some("cancelled by alice".into()),
                started_ms: Some(T0 + 500),
                ended_ms: Some(T0 + 3_000),
                cases: vec![
                    case("copy_to", CaseState::Failed, Some(T0 + 1_000), Some(T0 + 3_000)),
                    case("copy_from", CaseState::NotRun, None, None),
                ],
                stages: vec![
                    stage(
                        case_run("copy_to"),
                        vec![ended("slave1", 600, RunState::Cancelled, None, Some("cancelled by alice"))],
                    ),
                    skipped(case_run("copy_from"), "the session was cancelled", &["slave1"]),
                ],
                ..session(7, S::Cancelled, Trigger::Manual)
            },
        ),
        (
            "session_interrupted",
            SessionRecord {
                suite: "ts_xrootd_copy".into(),
                reason: Some("the master stopped while it ran".into()),
                started_ms: Some(T0 + 500),
                ended_ms: Some(T0 + 1_000),
                cases: vec![case("copy_to", CaseState::NotRun, None, None)],
                stages: vec![skipped(Stage::SuiteInit, "the master stopped", &slaves)],
                // A cluster started by hand before, on no known hypervisor, with no steps.
                cluster: Some(ClusterRun {
                    name: "cluster_pair".into(),
                    hypervisor: None,
                    started_here: false,
                    steps: Vec::new(),
                }),
                ..session(8, S::Interrupted, Trigger::Manual)
            },
        ),
        (
            "session_flaky",
            SessionRecord {
                suite: "ts_matrix".into(),
                slaves: vec!["slave1".into()],
                started_ms: Some(T0 + 500),
                ended_ms: Some(T0 + 20_000),
                // One matrix instance, run twice over (`repeat`); in the first pass it failed,
                // then passed when run again (`retries`).
                cases: vec![
                    instance(1, 2, CaseState::Flaky, T0 + 1_000, T0 + 9_000),
                    instance(2, 1, CaseState::Passed, T0 + 9_000, T0 + 19_000),
                ],
                stages: vec![
                    stage(Stage::SuiteInit, vec![ended("slave1", 700, RunState::Passed, Some(0), None)]),
                    stage(
                        case_run(INSTANCE),
                        vec![ended("slave1", 701, RunState::Failed, Some(1), Some("exit code 1"))],
                    ),
                    StageRecord {
                        attempt: 2,
                        ..stage(case_run(INSTANCE), vec![ended("slave1", 702, RunState::Passed, Some(0), None)])
                    },
                    StageRecord {
                        repetition: 2,
                        ..stage(case_run(INSTANCE), vec![ended("slave1", 703, RunState::Passed, Some(0), None)])
                    },
                    stage(Stage::SuiteFinalize, vec![ended("slave1", 704, RunState::Passed, Some(0), None)]),
                ],
                // Every option given.
                options: RunOptions {
                    cases: vec!["copy".into()],
                    skip: vec!["checksum".into(), "copy[size=1,mode=async]".into()],
                    params: vec![("XRD_LOGLEVEL".into(), "Dump".into()), ("size".into(), "64".into())],
                    repeat: 2,
                    for_ms: Some(7_200_000),
                    retries: Some(1),
                    exit_first: true,
                    keep_on_failure_ms: Some(1_800_000),
                },
                ..session(9, S::Passed, Trigger::Api)
            },
        ),
    ]
}

/// The matrix instance of the sample `session_flaky`.
const INSTANCE: &str = "copy[size=64,mode=sync]";

/// The instance [`INSTANCE`] of case `copy` in pass `repetition`, after `attempts`.
fn instance(repetition: u32, attempts: u32, state: CaseState, started_ms: u64, ended_ms: u64) -> CaseRecord {
    CaseRecord {
        case: "copy".into(),
        params: vec![("size".into(), "64".into()), ("mode".into(), "sync".into())],
        repetition,
        attempts,
        ..case(INSTANCE, state, Some(started_ms), Some(ended_ms))
    }
}

/// Every sample, by name.
fn samples() -> Vec<(&'static str, Sample)> {
    let mut samples: Vec<(&'static str, Sample)> =
        session_samples().into_iter().map(|(name, record)| (name, Sample::Record(record))).collect();
    samples.extend([
        (
            "summary_queued",
            Sample::Summary(SessionSummary {
                id: 1,
                suite: "ts_demo".into(),
                trigger: Trigger::Manual,
                state: SessionState::Queued,
                reason: None,
                created_ms: T0,
                started_ms: None,
                ended_ms: None,
                cases_passed: 0,
                cases_failed: 0,
                cases_total: 1,
                cases_flaky: 0,
            }),
        ),
        (
            "summary_failed",
            Sample::Summary(SessionSummary {
                id: 300,
                suite: "ts_demo".into(),
                trigger: Trigger::Schedule,
                state: SessionState::Failed,
                reason: Some("failed cases: copy_to".into()),
                created_ms: T0,
                started_ms: Some(T0 + 500),
                ended_ms: Some(T0 + 9_000),
                cases_passed: 260,
                cases_failed: 1,
                cases_total: 261,
                cases_flaky: 0,
            }),
        ),
        (
            "summary_flaky",
            Sample::Summary(SessionSummary {
                id: 9,
                suite: "ts_matrix".into(),
                trigger: Trigger::Api,
                state: SessionState::Passed,
                reason: None,
                created_ms: T0,
                started_ms: Some(T0 + 500),
                ended_ms: Some(T0 + 20_000),
                cases_passed: 1,
                cases_failed: 0,
                cases_total: 2,
                cases_flaky: 1,
            }),
        ),
        (
            "log_file",
            Sample::Log(LogFile {
                stage_id: 300,
                path: "/var/log/slave1.log".into(),
                content: vec![0, 1, 2, 255],
                truncated_bytes: 10,
                error: None,
            }),
        ),
        (
            "log_file_unreadable",
            Sample::Log(LogFile {
                stage_id: 301,
                path: "/nope".into(),
                content: Vec::new(),
                truncated_bytes: 0,
                error: Some("No such file or directory".into()),
            }),
        ),
        (
            "output_chunk",
            Sample::Output(vec![
                OutputLine { unix_ms: T0 + 1, text: "hello ü".into() },
                OutputLine { unix_ms: T0 + 2, text: String::new() },
            ]),
        ),
        ("values_empty", Sample::Values(StageValues::default())),
        (
            "values_script_and_threshold",
            Sample::Values(StageValues {
                results: vec![
                    ResultValue { name: "latency_ms".into(), value: 12.5, unit: "ms".into() },
                    ResultValue { name: "files".into(), value: -3.0, unit: String::new() },
                ],
                checks: vec![
                    Check {
                        name: "sums_equal".into(),
                        passed: true,
                        message: String::new(),
                        source: CheckSource::Script,
                    },
                    Check {
                        name: "results.latency_ms".into(),
                        passed: false,
                        message: "latency_ms = 12.5 ms, above max 10 ms".into(),
                        source: CheckSource::Threshold,
                    },
                ],
            }),
        ),
        ("timeline_empty", Sample::Timeline(Timeline::default())),
        (
            "cleanup",
            Sample::Cleanup(vec![
                SlaveCleanup { slave: "y1".into(), method: "cgroup".into(), processes_ended: 3, problem: None },
                SlaveCleanup {
                    slave: "y2".into(),
                    method: String::new(),
                    processes_ended: 0,
                    problem: Some("no answer within 15 s".into()),
                },
            ]),
        ),
        (
            "timeline_waits_and_faults",
            Sample::Timeline(Timeline {
                waits: vec![
                    WaitRecord {
                        slave: "y1".into(),
                        stage_id: 41,
                        what: "barrier up (3)".into(),
                        started_unix_ms: T0 + 1_100,
                        ended_unix_ms: T0 + 2_300,
                        failure: None,
                    },
                    WaitRecord {
                        slave: "y2".into(),
                        stage_id: 42,
                        what: "wait ready (1)".into(),
                        started_unix_ms: T0 + 1_200,
                        ended_unix_ms: T0 + 2_200,
                        failure: Some("timed out after 1.0 s with 0 of 1".into()),
                    },
                ],
                faults: vec![
                    FaultRecord {
                        id: 77,
                        kind: "partition".into(),
                        targets: vec!["y1".into(), "y2".into()],
                        params: "y1 -- y2".into(),
                        made_by: "y1".into(),
                        stage_id: 41,
                        started_unix_ms: T0 + 1_300,
                        ended_unix_ms: Some(T0 + 2_400),
                        details: vec!["y1: dropping all traffic to and from 10.0.0.2".into()],
                        error: None,
                    },
                    FaultRecord {
                        id: 78,
                        kind: "netem".into(),
                        targets: vec!["y2".into()],
                        params: "y2: delay 100ms".into(),
                        made_by: "y2".into(),
                        stage_id: 42,
                        started_unix_ms: T0 + 1_400,
                        ended_unix_ms: None,
                        details: Vec::new(),
                        error: Some("y2: no netem".into()),
                    },
                ],
            }),
        ),
    ]);
    samples.extend(SessionState::ALL.iter().map(|&state| (state_code_sample(state), Sample::StateCode(state))));
    samples
}

/// Every check source; no wildcard, so a new one does not compile until it is here.
fn every_check_source() -> Vec<CheckSource> {
    let all = [CheckSource::Script, CheckSource::Threshold];
    for source in all {
        match source {
            CheckSource::Script | CheckSource::Threshold => {}
        }
    }
    all.to_vec()
}

// Which sample holds each variant. No wildcard arms: a new variant does not compile until it
// is listed here, and `every_variant_is_in_the_sample_named_for_it` checks that sample.

fn session_state_sample(state: SessionState) -> &'static str {
    match state {
        SessionState::Queued => "session_queued",
        SessionState::StartingCluster => "session_starting_cluster",
        SessionState::WaitingSlaves => "session_waiting_slaves",
        SessionState::Running => "session_running",
        SessionState::Passed => "session_passed",
        SessionState::Failed => "session_failed",
        SessionState::Cancelled => "session_cancelled",
        SessionState::Interrupted => "session_interrupted",
    }
}

fn state_code_sample(state: SessionState) -> &'static str {
    match state {
        SessionState::Queued => "state_code_queued",
        SessionState::StartingCluster => "state_code_starting_cluster",
        SessionState::WaitingSlaves => "state_code_waiting_slaves",
        SessionState::Running => "state_code_running",
        SessionState::Passed => "state_code_passed",
        SessionState::Failed => "state_code_failed",
        SessionState::Cancelled => "state_code_cancelled",
        SessionState::Interrupted => "state_code_interrupted",
    }
}

fn trigger_sample(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::Manual => "session_queued",
        Trigger::Api => "session_running",
        Trigger::Schedule => "session_passed",
    }
}

fn run_state_sample(state: RunState) -> &'static str {
    match state {
        RunState::Pending => "session_queued",
        RunState::Running => "session_running",
        RunState::Passed => "session_passed",
        RunState::Failed => "session_failed",
        RunState::TimedOut => "session_failed",
        RunState::Cancelled => "session_cancelled",
        RunState::Skipped => "session_failed",
        RunState::Disconnected => "session_failed",
    }
}

fn case_state_sample(state: CaseState) -> &'static str {
    match state {
        CaseState::Pending => "session_queued",
        CaseState::Running => "session_running",
        CaseState::Passed => "session_passed",
        CaseState::Failed => "session_failed",
        CaseState::NotRun => "session_cancelled",
        CaseState::Flaky => "session_flaky",
    }
}

/// A new stage goes here and into [`every_stage`] (stages have no `ALL`).
fn stage_sample(stage: &Stage) -> &'static str {
    match stage {
        Stage::SuiteInit => "session_passed",
        Stage::CaseInit { .. } => "session_passed",
        Stage::CaseRun { .. } => "session_passed",
        Stage::CaseFinalize { .. } => "session_passed",
        Stage::SuiteFinalize => "session_passed",
    }
}

fn every_stage() -> Vec<Stage> {
    let case = String::from("copy_to");
    vec![
        Stage::SuiteInit,
        Stage::CaseInit { case: case.clone() },
        Stage::CaseRun { case: case.clone() },
        Stage::CaseFinalize { case },
        Stage::SuiteFinalize,
    ]
}

/// `Some` or `None`, for [`held`].
fn some<T>(option: &Option<T>) -> &'static str {
    if option.is_some() {
        "Some"
    } else {
        "None"
    }
}

/// `Some` for a list with items, `None` for an empty one, for [`held`].
fn filled<T>(list: &[T]) -> &'static str {
    if list.is_empty() {
        "None"
    } else {
        "Some"
    }
}

/// `Type.field beyond default` when `beyond` holds, for [`held`]: a field whose value in old
/// records (0, 1, false, another field's) is not all a sample should pin.
fn beyond(field: &str, beyond: bool) -> Option<String> {
    beyond.then(|| format!("{field} beyond default"))
}

/// What `sample` holds: each enum value as `Type::Variant`, each `Option` field (and some
/// lists) as `Type.field Some` or `Type.field None`, each field of [`BEYOND_DEFAULT`] as
/// `Type.field beyond default` when it is.
fn held(sample: &Sample) -> BTreeSet<String> {
    let mut held = BTreeSet::new();
    match sample {
        Sample::Record(r) => {
            held.insert(format!("Trigger::{:?}", r.trigger));
            held.insert(format!("SessionState::{:?}", r.state));
            held.insert(format!("SessionRecord.commit {}", some(&r.commit)));
            held.insert(format!("SessionRecord.reason {}", some(&r.reason)));
            held.insert(format!("SessionRecord.started_ms {}", some(&r.started_ms)));
            held.insert(format!("SessionRecord.ended_ms {}", some(&r.ended_ms)));
            held.insert(format!("SessionRecord.cluster {}", some(&r.cluster)));
            let options = &r.options;
            held.insert(format!("RunOptions.cases {}", filled(&options.cases)));
            held.insert(format!("RunOptions.skip {}", filled(&options.skip)));
            held.insert(format!("RunOptions.params {}", filled(&options.params)));
            held.insert(format!("RunOptions.for_ms {}", some(&options.for_ms)));
            held.insert(format!("RunOptions.retries {}", some(&options.retries)));
            held.insert(format!("RunOptions.keep_on_failure_ms {}", some(&options.keep_on_failure_ms)));
            held.extend(beyond("RunOptions.repeat", options.repeat > 1));
            held.extend(beyond("RunOptions.exit_first", options.exit_first));
            for c in &r.cases {
                held.insert(format!("CaseState::{:?}", c.state));
                held.insert(format!("CaseRecord.started_ms {}", some(&c.started_ms)));
                held.insert(format!("CaseRecord.ended_ms {}", some(&c.ended_ms)));
                held.insert(format!("CaseRecord.params {}", filled(&c.params)));
                held.extend(beyond("CaseRecord.case", c.case != c.name));
                held.extend(beyond("CaseRecord.repetition", c.repetition > 1));
                held.extend(beyond("CaseRecord.attempts", c.attempts > 1));
            }
            for s in &r.stages {
                held.insert(format!("Stage::{}", s.stage.kind()));
                held.insert(format!("StageRecord.skipped {}", some(&s.skipped)));
                held.extend(beyond("StageRecord.repetition", s.repetition > 1));
                held.extend(beyond("StageRecord.attempt", s.attempt > 1));
                for run in &s.runs {
                    held.insert(format!("RunState::{:?}", run.state));
                    held.insert(format!("StageRun.exit_code {}", some(&run.exit_code)));
                    held.insert(format!("StageRun.started_ms {}", some(&run.started_ms)));
                    held.insert(format!("StageRun.ended_ms {}", some(&run.ended_ms)));
                    held.insert(format!("StageRun.reason {}", some(&run.reason)));
                }
            }
            if let Some(cluster) = &r.cluster {
                held.insert(format!("ClusterRun.hypervisor {}", some(&cluster.hypervisor)));
                held.insert(format!("ClusterRun.steps {}", if cluster.steps.is_empty() { "None" } else { "Some" }));
            }
        }
        Sample::Summary(s) => {
            held.insert(format!("Trigger::{:?}", s.trigger));
            held.insert(format!("SessionState::{:?}", s.state));
            held.insert(format!("SessionSummary.reason {}", some(&s.reason)));
            held.insert(format!("SessionSummary.started_ms {}", some(&s.started_ms)));
            held.insert(format!("SessionSummary.ended_ms {}", some(&s.ended_ms)));
            held.extend(beyond("SessionSummary.cases_flaky", s.cases_flaky > 0));
        }
        Sample::Log(log) => {
            held.insert(format!("LogFile.error {}", some(&log.error)));
        }
        Sample::Output(_) => {}
        Sample::Values(values) => {
            for check in &values.checks {
                held.insert(format!("CheckSource::{:?}", check.source));
            }
        }
        Sample::Timeline(timeline) => {
            for wait in &timeline.waits {
                held.insert(format!("WaitRecord.failure {}", some(&wait.failure)));
            }
            for fault in &timeline.faults {
                held.insert(format!("FaultRecord.ended_unix_ms {}", some(&fault.ended_unix_ms)));
                held.insert(format!("FaultRecord.error {}", some(&fault.error)));
            }
        }
        Sample::Cleanup(cleanup) => {
            for slave in cleanup {
                held.insert(format!("SlaveCleanup.problem {}", some(&slave.problem)));
            }
        }
        Sample::StateCode(state) => {
            held.insert(format!("state_code(SessionState::{state:?})"));
        }
    }
    held
}

/// Name → stored bytes in hex.
fn golden() -> Samples {
    samples().iter().map(|(name, sample)| (name.to_string(), hex(&sample.encode()))).collect()
}

const FIXTURES: Fixtures = Fixtures {
    crate_dir: env!("CARGO_MANIFEST_DIR"),
    dir: "tests/golden",
    prefix: "schema",
    what: "store schema",
    hex_of: "stored value (state codes: their key byte)",
    constant: "SCHEMA_VERSION",
    constant_in: "crates/model/src/storage.rs",
    test: "cargo test -p xrdtest-model --test golden",
    subject: "the stored types",
    harm: "Stores on disk, written as schema {N}, would be misread.",
    also: "copy the types as schema {N} had them into a `v{N}` module of crates/model (to read old stores), \
           add a migration step from schema {N} to `check_schema` in crates/master/src/store.rs (decode with \
           `v{N}`, encode with today's types; empty if only variants were added last), ",
};

#[test]
fn the_stored_types_match_the_golden_bytes_of_this_schema() {
    FIXTURES.check(SCHEMA_VERSION, &golden());
}

/// The fixture is readable, not only bytes: each pinned sample, decoded as the store
/// decodes it with today's types, is the sample again.
#[test]
fn the_pinned_samples_of_this_schema_decode_to_the_samples() {
    // Missing while a new schema is being blessed: the test above says so otherwise.
    let Some(pinned) = FIXTURES.read(SCHEMA_VERSION) else { return };
    let mut decoded = 0;
    for (name, sample) in samples() {
        // A sample not pinned yet is reported by the test above.
        let Some(hex) = pinned.get(name) else { continue };
        let bytes = unhex(hex);
        match sample.decode_like(&bytes) {
            Ok(read) => assert_eq!(read, sample, "{name}: the pinned bytes read as another value"),
            Err(err) => panic!("{name}: the pinned bytes do not decode with today's types: {err}"),
        }
        assert_eq!(sample.encode(), bytes, "{name}: reads back, but is not written so");
        decoded += 1;
    }
    assert!(decoded > 0, "no sample of {} is pinned", FIXTURES.path(SCHEMA_VERSION).display());
}

#[test]
fn every_variant_is_in_the_sample_named_for_it() {
    let samples = samples();
    let names: BTreeSet<&str> = samples.iter().map(|(name, _)| *name).collect();
    assert_eq!(names.len(), samples.len(), "sample names are unique");
    for name in &names {
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "bad name {name}");
    }
    let mut wanted: Vec<(&str, String)> = Vec::new();
    for &state in SessionState::ALL {
        wanted.push((session_state_sample(state), format!("SessionState::{state:?}")));
        wanted.push((state_code_sample(state), format!("state_code(SessionState::{state:?})")));
    }
    wanted.extend(Trigger::ALL.iter().map(|&t| (trigger_sample(t), format!("Trigger::{t:?}"))));
    wanted.extend(RunState::ALL.iter().map(|&s| (run_state_sample(s), format!("RunState::{s:?}"))));
    wanted.extend(CaseState::ALL.iter().map(|&s| (case_state_sample(s), format!("CaseState::{s:?}"))));
    wanted.extend(every_stage().iter().map(|s| (stage_sample(s), format!("Stage::{}", s.kind()))));
    wanted.extend(every_check_source().iter().map(|s| ("values_script_and_threshold", format!("CheckSource::{s:?}"))));
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(name, what)| !samples.iter().any(|(n, sample)| n == name && held(sample).contains(what)))
        .map(|(name, what)| format!("{what} (named: {name})"))
        .collect();
    assert!(missing.is_empty(), "not in the sample named as holding them: {missing:?}");
}

/// Fields that old records fill with one value (0, 1, false, another field's), pinned by a
/// sample where they are not: the first pass and attempt alone would not show a field order.
const BEYOND_DEFAULT: &[&str] = &[
    "RunOptions.repeat",
    "RunOptions.exit_first",
    "CaseRecord.case",
    "CaseRecord.repetition",
    "CaseRecord.attempts",
    "StageRecord.repetition",
    "StageRecord.attempt",
    "SessionSummary.cases_flaky",
];

#[test]
fn the_flaky_summary_is_the_summary_of_the_flaky_session() {
    let samples: BTreeMap<&str, Sample> = samples().into_iter().collect();
    let (Some(Sample::Record(record)), Some(Sample::Summary(summary))) =
        (samples.get("session_flaky"), samples.get("summary_flaky"))
    else {
        panic!("session_flaky is a record and summary_flaky a summary")
    };
    assert_eq!(record.summary(), *summary);
}

#[test]
fn every_field_old_records_fill_alike_is_pinned_beyond_that() {
    let held: BTreeSet<String> = samples().iter().flat_map(|(_, sample)| held(sample)).collect();
    let missing: Vec<&str> =
        BEYOND_DEFAULT.iter().copied().filter(|field| !held.contains(&format!("{field} beyond default"))).collect();
    assert!(missing.is_empty(), "no sample pins these beyond their default: {missing:?}");
}

/// Both ways of every `Option` field (and of cluster steps, matrix values and the lists of
/// run options) are pinned: `None` and `Some`.
#[test]
fn every_option_field_is_pinned_set_and_unset() {
    let held: BTreeSet<String> = samples().iter().flat_map(|(_, sample)| held(sample)).collect();
    let mut lonely = Vec::new();
    for what in &held {
        let other = match what.rsplit_once(' ') {
            Some((field, "Some")) => format!("{field} None"),
            Some((field, "None")) => format!("{field} Some"),
            _ => continue,
        };
        if !held.contains(&other) {
            lonely.push(what.as_str());
        }
    }
    assert!(lonely.is_empty(), "only one way pinned: {lonely:?}");
    assert!(held.contains("ClusterRun.steps Some") && held.contains("SessionRecord.cluster None"));
}

// Older schemas: their fixtures are kept, and read with the types this crate kept for them,
// as the store reads an older store when it migrates it.

/// The schemas before [`SCHEMA_VERSION`], each with a fixture and a test reading it below.
const OLDER_SCHEMAS: &[u32] = &[1, 2, 3, 4, 5];

#[test]
fn the_fixture_of_every_older_schema_is_kept_and_read() {
    let older: Vec<u32> = FIXTURES.versions().into_iter().filter(|&version| version < SCHEMA_VERSION).collect();
    assert_eq!(older, (1..SCHEMA_VERSION).collect::<Vec<_>>(), "the fixture of an older schema is gone");
    assert_eq!(older, OLDER_SCHEMAS, "an older schema without a test reading its fixture with its kept types");
}

/// Each sample of schema 1 decodes with the types of [`v1`] (or, for the types schema 2 left
/// alone, today's), is written so again, and migrates to today's sample of its name: the
/// samples of schema 1, migrated, are those of today with the same names (the helpers above
/// make the values a schema-1 record migrates to; later samples pin what schema 1 lacked).
#[test]
fn the_pinned_samples_of_schema_1_decode_with_the_v1_types_and_migrate_to_todays() {
    let pinned = FIXTURES.read(1).expect("tests/golden/schema1.txt is kept");
    let today: BTreeMap<&str, Sample> = samples().into_iter().collect();
    let mut case_states = BTreeSet::new();
    for (name, hex) in &pinned {
        let bytes = unhex(hex);
        let sample = today.get(name.as_str()).unwrap_or_else(|| panic!("{name}: no sample of this name today"));
        match sample {
            Sample::Record(now) => {
                let old: v1::SessionRecord = storage::decode(&bytes)
                    .unwrap_or_else(|err| panic!("{name}: does not decode with the v1 types: {err}"));
                assert_eq!(
                    storage::encode(&old).unwrap(),
                    bytes,
                    "{name}: reads with the v1 types, but is not written so"
                );
                case_states.extend(old.cases.iter().map(|case| format!("{:?}", case.state)));
                assert_eq!(SessionRecord::from(old), *now, "{name}: migrates to another value than today's sample");
            }
            Sample::Summary(now) => {
                let old: v1::SessionSummary = storage::decode(&bytes)
                    .unwrap_or_else(|err| panic!("{name}: does not decode with the v1 types: {err}"));
                assert_eq!(
                    storage::encode(&old).unwrap(),
                    bytes,
                    "{name}: reads with the v1 types, but is not written so"
                );
                assert_eq!(SessionSummary::from(old), *now, "{name}: migrates to another value than today's sample");
            }
            // Unchanged by schema 2 (values: added by schema 3, so never pinned by schema 1):
            // today's types read them as they are.
            Sample::Log(_)
            | Sample::Output(_)
            | Sample::Values(_)
            | Sample::Timeline(_)
            | Sample::Cleanup(_)
            | Sample::StateCode(_) => {
                assert_eq!(sample.decode_like(&bytes).as_ref(), Ok(sample), "{name}: reads as another value");
                assert_eq!(sample.encode(), bytes, "{name}: reads back, but is not written so");
            }
        }
    }
    let every: BTreeSet<String> = v1::CaseState::ALL.iter().map(|state| format!("{state:?}")).collect();
    assert_eq!(case_states, every, "every case state of schema 1 is pinned");
}

/// Schema 3 only added the `values` tree, schema 4 the `timelines` tree, schema 5 the
/// `cleanups` tree and schema 6 the `kept` tree (empty values): each sample of schemas 2 to 5
/// reads with today's types as today's sample of its name, and is written so again.
#[test]
fn the_pinned_samples_of_schemas_2_to_5_read_as_todays() {
    for schema in [2, 3, 4, 5] {
        let pinned = FIXTURES.read(schema).unwrap_or_else(|| panic!("tests/golden/schema{schema}.txt is kept"));
        let today: BTreeMap<&str, Sample> = samples().into_iter().collect();
        for (name, hex) in &pinned {
            let bytes = unhex(hex);
            let sample = today.get(name.as_str()).unwrap_or_else(|| panic!("{name}: no sample of this name today"));
            assert_eq!(
                sample.decode_like(&bytes).as_ref(),
                Ok(sample),
                "schema {schema}, {name}: reads as another value"
            );
            assert_eq!(sample.encode(), bytes, "schema {schema}, {name}: reads back, but is not written so");
        }
    }
}
