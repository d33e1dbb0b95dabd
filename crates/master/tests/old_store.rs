//! A store written by an older build opens with this one and shows every session in full.
//!
//! `fixtures/store-schema1.tar.gz` is a real sled store made by the master of commit
//! 929a4c6 (before the store had a schema version), with three local slaves: ts_demo failed
//! by its failing case (1, 4), ts_demo cancelled mid-run (2), ts_xrootd_copy with no
//! hypervisor (3), and a one-slave suite killed mid-run with SIGKILL (5), so one session was
//! still `running` when the store was last written.
//!
//! Opening it migrates it to today's schema: each record is rewritten as the model's
//! conversions from the kept schema-1 types (`model::v1`) make it.

use std::path::Path;
use std::process::Command;

use xrdtest_master::model::storage::SCHEMA_VERSION;
use xrdtest_master::model::{CaseState, RunOptions, RunState, SessionRecord, SessionState, Stage, Trigger};
use xrdtest_master::store::Store;

fn unpack_fixture(into: &Path) -> std::path::PathBuf {
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-schema1.tar.gz");
    let status = Command::new("tar").arg("xzf").arg(&archive).arg("-C").arg(into).status().unwrap();
    assert!(status.success(), "tar could not unpack {}", archive.display());
    into.join("store")
}

/// The `schema_version` kept in the store's `meta` tree, read without opening it as a store.
/// Retries `open` while sled's lock is still held by a handle just dropped (its background
/// threads let go of it a moment later).
fn retrying<T, E: std::fmt::Display>(open: impl Fn() -> Result<T, E>) -> T {
    for _ in 0..100 {
        match open() {
            Err(err) if err.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            Err(err) => panic!("cannot open the store: {err}"),
            Ok(value) => return value,
        }
    }
    panic!("the store stayed locked");
}

fn kept_schema_version(path: &Path) -> Option<u32> {
    let db = retrying(|| sled::open(path));
    let value = db.open_tree("meta").unwrap().get("schema_version").unwrap();
    value.map(|bytes| u32::from_be_bytes(bytes.as_ref().try_into().unwrap()))
}

/// What a schema-1 record holds for the fields schema 2 added: plain cases (the instance is
/// the case), each run once in the first pass, and the run options of a plain run.
fn assert_migrated_from_schema_1(record: &SessionRecord) {
    let id = record.id;
    for case in &record.cases {
        assert_eq!(case.case, case.name, "session {id}: a case of schema 1 is its own instance");
        assert!(case.params.is_empty(), "session {id}, {}: no matrix values", case.name);
        assert_eq!(case.repetition, 1, "session {id}, {}", case.name);
        assert_eq!(case.attempts, u32::from(case.started_ms.is_some()), "session {id}, {}", case.name);
        assert_ne!(case.state, CaseState::Flaky, "session {id}, {}", case.name);
    }
    for stage in &record.stages {
        let first_pass = if stage.stage.case().is_some() { (1, 1) } else { (0, 0) };
        assert_eq!((stage.repetition, stage.attempt), first_pass, "session {id}, {}", stage.stage);
    }
    assert_eq!(record.options, RunOptions { repeat: 1, ..Default::default() }, "session {id}");
}

#[test]
fn a_store_of_schema_1_opens_and_every_session_reads_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let path = unpack_fixture(dir.path());
    // Written before the store kept a schema version: schema 1.
    assert_eq!(kept_schema_version(&path), None);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);

    let (total, summaries) = store.list(&Default::default(), 0, 100).unwrap();
    assert_eq!(total, 5);
    let states: Vec<(u64, &str, SessionState)> =
        summaries.iter().rev().map(|s| (s.id, s.suite.as_str(), s.state)).collect();
    assert_eq!(
        states,
        [
            (1, "ts_demo", SessionState::Failed),
            (2, "ts_demo", SessionState::Cancelled),
            (3, "ts_xrootd_copy", SessionState::Failed),
            (4, "ts_demo", SessionState::Failed),
            (5, "ts_long", SessionState::Running),
        ]
    );

    let first = store.session(1).unwrap().unwrap();
    assert_eq!(first.trigger, Trigger::Manual);
    assert_eq!(first.reason.as_deref(), Some("failed cases: fails_on_purpose"));
    assert_eq!(first.slaves, ["slave1", "slave2", "slave3"]);
    let case_states: Vec<(&str, &str, CaseState, u32, u32)> =
        first.cases.iter().map(|c| (c.name.as_str(), c.case.as_str(), c.state, c.repetition, c.attempts)).collect();
    assert_eq!(
        case_states,
        [
            ("write_files", "write_files", CaseState::Passed, 1, 1),
            ("checksum", "checksum", CaseState::Passed, 1, 1),
            ("fails_on_purpose", "fails_on_purpose", CaseState::Failed, 1, 1),
            ("list_peers", "list_peers", CaseState::Passed, 1, 1),
        ]
    );
    assert_eq!(first.stages.first().map(|s| (&s.stage, s.repetition, s.attempt)), Some((&Stage::SuiteInit, 0, 0)));
    assert_eq!(first.stages.last().map(|s| (&s.stage, s.repetition, s.attempt)), Some((&Stage::SuiteFinalize, 0, 0)));
    let case_run = first.stages.iter().find(|s| s.stage == Stage::CaseRun { case: "checksum".into() });
    assert_eq!(case_run.map(|s| (s.repetition, s.attempt, s.label())), Some((1, 1, "case_run:checksum".into())));

    let cancelled = store.session(2).unwrap().unwrap();
    assert_eq!(cancelled.reason.as_deref(), Some("fixture: cancelled on purpose"));
    let cluster = store.session(3).unwrap().unwrap();
    assert_eq!(cluster.reason.as_deref(), Some("no hypervisor is connected"));
    assert!(cluster.cluster.is_some(), "the cluster part of a cluster session survives");

    // Every run's output is there to the byte, and every collected log.
    let mut runs_with_output = 0;
    let mut logs_seen = 0;
    let mut records = Vec::new();
    for id in 1..=5 {
        let record = store.session(id).unwrap().unwrap();
        assert_migrated_from_schema_1(&record);
        assert_eq!(record.summary(), store.summary(id).unwrap().unwrap(), "summary of {id}");
        for run in record.stages.iter().flat_map(|stage| &stage.runs).filter(|run| run.stage_id != 0) {
            let lines: Vec<_> =
                store.output(run.stage_id, 0, usize::MAX).unwrap().into_iter().flat_map(|c| c.1).collect();
            let bytes: u64 = lines.iter().map(|line| line.text.len() as u64 + 1).sum();
            if run.state.is_final() {
                assert_eq!(bytes, run.output_bytes, "session {id}, stage id {}", run.stage_id);
            }
            runs_with_output += usize::from(bytes > 0);
            let logs = store.logs(run.stage_id).unwrap();
            for path in &run.logs {
                assert!(logs.iter().any(|log| &log.path == path), "log {path} of stage id {}", run.stage_id);
                logs_seen += 1;
            }
        }
        records.push(record);
    }
    assert!(runs_with_output > 20, "{runs_with_output} runs with output");
    assert!(logs_seen > 10, "{logs_seen} logs");

    // The session the old master left running is ended as the master does at start-up.
    assert_eq!(store.mark_unfinished_interrupted(1).unwrap(), [5]);
    let interrupted = store.session(5).unwrap().unwrap();
    assert_eq!(interrupted.state, SessionState::Interrupted);
    assert!(interrupted.stages.iter().flat_map(|s| &s.runs).all(|run| run.state != RunState::Running));
    records[4] = interrupted;

    // Opened again, the migrated store reads the same, and is not migrated again.
    drop(store);
    assert_eq!(kept_schema_version(&path), Some(SCHEMA_VERSION));
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    for record in &records {
        assert_eq!(store.session(record.id).unwrap().as_ref(), Some(record), "session {} reopened", record.id);
        assert_eq!(store.summary(record.id).unwrap(), Some(record.summary()), "summary of {} reopened", record.id);
    }
    assert_eq!(store.list(&Default::default(), 0, 100).unwrap().0, 5);
}

#[test]
fn a_store_of_a_newer_schema_is_refused_with_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = unpack_fixture(dir.path());
    {
        let db = sled::open(&path).unwrap();
        db.open_tree("meta").unwrap().insert("schema_version", &(SCHEMA_VERSION + 1).to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(&path).err().expect("a newer store must be refused").to_string();
    assert!(err.contains(&format!("schema version {}", SCHEMA_VERSION + 1)), "{err}");
    assert!(err.contains(&format!("reads up to {SCHEMA_VERSION}")), "{err}");
}
