//! The stored types of store schema 1, kept to read stores written before schema 2, and
//! how each becomes today's type (the master's store migrates with them when it opens an
//! older store: decode with these, convert, encode with today's).
//!
//! Only the types whose encoding changed in schema 2 are here, field for field and variant
//! for variant as schema 1 had them; the ones that did not change ([`Stage`], [`StageRun`],
//! [`ClusterRun`], [`Trigger`], [`SessionState`], output lines and logs) are today's. Never
//! edit them: their bytes are pinned by `tests/golden/schema1.txt`.
//!
//! What schema 2 added, and what a schema-1 value gets for it:
//! - [`crate::CaseState::Flaky`], last: nothing (schema 1 had no retries);
//! - `StageRecord.repetition` and `.attempt`: 1 and 1 for a case's stage, 0 and 0 for suite
//!   init and finalize (schema 1 ran each case once);
//! - `CaseRecord.case`: its name (schema 1 had no matrix instances), `.params`: none,
//!   `.repetition`: 1, `.attempts`: 1 if it ever started, else 0;
//! - `SessionRecord.options`: one pass, no selection, nothing else set (the selection of
//!   schema 1 sessions was not recorded);
//! - `SessionSummary.cases_flaky`: 0.

use serde::{Deserialize, Serialize};

use crate::{ClusterRun, SessionId, SessionState, Stage, StageRun, Trigger};

/// A case's state in schema 1: as today's, without `Flaky`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    Pending,
    Running,
    Passed,
    Failed,
    /// Not run: suite init failed or the session was cancelled first.
    NotRun,
}

impl CaseState {
    /// Every value, in declaration (and storage) order.
    pub const ALL: &'static [CaseState] =
        &[CaseState::Pending, CaseState::Running, CaseState::Passed, CaseState::Failed, CaseState::NotRun];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRecord {
    pub stage: Stage,
    pub timeout_ms: u64,
    /// Why the whole stage was skipped, if it was.
    pub skipped: Option<String>,
    pub runs: Vec<StageRun>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRecord {
    pub name: String,
    pub state: CaseState,
    pub started_ms: Option<u64>,
    pub ended_ms: Option<u64>,
}

/// A session, complete but for output and log contents (stored beside it, by stage id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: SessionId,
    pub suite: String,
    pub trigger: Trigger,
    /// Hash of the suite definition and its scripts as the session ran them.
    pub definition_hash: String,
    /// The commit of a git definitions repository, when there is one.
    pub commit: Option<String>,
    pub slaves: Vec<String>,
    pub state: SessionState,
    /// Why the session failed, was cancelled or could not start.
    pub reason: Option<String>,
    pub created_ms: u64,
    pub started_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    pub cases: Vec<CaseRecord>,
    pub stages: Vec<StageRecord>,
    /// For a suite with a cluster: where it ran and each step of its life.
    pub cluster: Option<ClusterRun>,
}

/// The part of a session that lists show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    pub id: SessionId,
    pub suite: String,
    pub trigger: Trigger,
    pub state: SessionState,
    pub reason: Option<String>,
    pub created_ms: u64,
    pub started_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    pub cases_passed: usize,
    pub cases_failed: usize,
    pub cases_total: usize,
}

impl From<CaseState> for crate::CaseState {
    fn from(state: CaseState) -> crate::CaseState {
        match state {
            CaseState::Pending => crate::CaseState::Pending,
            CaseState::Running => crate::CaseState::Running,
            CaseState::Passed => crate::CaseState::Passed,
            CaseState::Failed => crate::CaseState::Failed,
            CaseState::NotRun => crate::CaseState::NotRun,
        }
    }
}

impl From<StageRecord> for crate::StageRecord {
    fn from(old: StageRecord) -> crate::StageRecord {
        // Schema 1 ran each case once: its stages are the first attempt of the first pass.
        let (repetition, attempt) = if old.stage.case().is_some() { (1, 1) } else { (0, 0) };
        crate::StageRecord {
            stage: old.stage,
            timeout_ms: old.timeout_ms,
            skipped: old.skipped,
            runs: old.runs,
            repetition,
            attempt,
        }
    }
}

impl From<CaseRecord> for crate::CaseRecord {
    fn from(old: CaseRecord) -> crate::CaseRecord {
        let attempts = u32::from(old.started_ms.is_some());
        crate::CaseRecord {
            case: old.name.clone(),
            name: old.name,
            state: old.state.into(),
            started_ms: old.started_ms,
            ended_ms: old.ended_ms,
            params: Vec::new(),
            repetition: 1,
            attempts,
        }
    }
}

impl From<SessionRecord> for crate::SessionRecord {
    fn from(old: SessionRecord) -> crate::SessionRecord {
        crate::SessionRecord {
            id: old.id,
            suite: old.suite,
            trigger: old.trigger,
            definition_hash: old.definition_hash,
            commit: old.commit,
            slaves: old.slaves,
            state: old.state,
            reason: old.reason,
            created_ms: old.created_ms,
            started_ms: old.started_ms,
            ended_ms: old.ended_ms,
            cases: old.cases.into_iter().map(Into::into).collect(),
            stages: old.stages.into_iter().map(Into::into).collect(),
            cluster: old.cluster,
            options: crate::RunOptions { repeat: 1, ..Default::default() },
        }
    }
}

impl From<SessionSummary> for crate::SessionSummary {
    fn from(old: SessionSummary) -> crate::SessionSummary {
        crate::SessionSummary {
            id: old.id,
            suite: old.suite,
            trigger: old.trigger,
            state: old.state,
            reason: old.reason,
            created_ms: old.created_ms,
            started_ms: old.started_ms,
            ended_ms: old.ended_ms,
            cases_passed: old.cases_passed,
            cases_failed: old.cases_failed,
            cases_total: old.cases_total,
            cases_flaky: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{decode, encode};

    fn old_session() -> SessionRecord {
        let case_stage = |stage: Stage| StageRecord {
            stage,
            timeout_ms: 60_000,
            skipped: None,
            runs: vec![StageRun { stage_id: 9, ..StageRun::pending("slave1") }],
        };
        SessionRecord {
            id: 4,
            suite: "ts_demo".into(),
            trigger: Trigger::Api,
            definition_hash: "sha256:00".into(),
            commit: None,
            slaves: vec!["slave1".into()],
            state: SessionState::Failed,
            reason: Some("failed cases: b".into()),
            created_ms: 10,
            started_ms: Some(11),
            ended_ms: Some(20),
            cases: vec![
                CaseRecord { name: "a".into(), state: CaseState::Passed, started_ms: Some(12), ended_ms: Some(13) },
                CaseRecord { name: "b".into(), state: CaseState::Failed, started_ms: Some(13), ended_ms: Some(19) },
                CaseRecord { name: "c".into(), state: CaseState::NotRun, started_ms: None, ended_ms: None },
            ],
            stages: vec![
                case_stage(Stage::SuiteInit),
                case_stage(Stage::CaseInit { case: "a".into() }),
                case_stage(Stage::CaseRun { case: "a".into() }),
                case_stage(Stage::CaseFinalize { case: "a".into() }),
                case_stage(Stage::SuiteFinalize),
            ],
            cluster: None,
        }
    }

    #[test]
    fn a_schema_1_session_becomes_a_first_pass_of_plain_cases_run_once() {
        let old = old_session();
        let new = crate::SessionRecord::from(old.clone());
        let cases: Vec<(&str, &str, crate::CaseState, u32, u32)> =
            new.cases.iter().map(|c| (c.name.as_str(), c.case.as_str(), c.state, c.repetition, c.attempts)).collect();
        assert_eq!(
            cases,
            [
                ("a", "a", crate::CaseState::Passed, 1, 1),
                ("b", "b", crate::CaseState::Failed, 1, 1),
                ("c", "c", crate::CaseState::NotRun, 1, 0),
            ]
        );
        assert!(new.cases.iter().all(|c| c.params.is_empty()));
        let stages: Vec<(String, u32, u32)> =
            new.stages.iter().map(|s| (s.stage.to_string(), s.repetition, s.attempt)).collect();
        assert_eq!(
            stages,
            [
                ("suite_init".to_string(), 0, 0),
                ("case_init:a".to_string(), 1, 1),
                ("case_run:a".to_string(), 1, 1),
                ("case_finalize:a".to_string(), 1, 1),
                ("suite_finalize".to_string(), 0, 0),
            ]
        );
        assert_eq!(new.options, crate::RunOptions { repeat: 1, ..Default::default() });
        for (new, old) in new.stages.iter().zip(&old.stages) {
            assert_eq!(
                (&new.stage, new.timeout_ms, &new.skipped, &new.runs),
                (&old.stage, old.timeout_ms, &old.skipped, &old.runs)
            );
        }
    }

    #[test]
    fn a_converted_summary_is_the_summary_of_the_converted_session() {
        let old = old_session();
        let old_summary = SessionSummary {
            id: old.id,
            suite: old.suite.clone(),
            trigger: old.trigger,
            state: old.state,
            reason: old.reason.clone(),
            created_ms: old.created_ms,
            started_ms: old.started_ms,
            ended_ms: old.ended_ms,
            cases_passed: 1,
            cases_failed: 2,
            cases_total: 3,
        };
        let new = crate::SessionRecord::from(old);
        assert_eq!(crate::SessionSummary::from(old_summary), new.summary());
    }

    #[test]
    fn every_case_state_of_schema_1_keeps_its_position() {
        for (position, &state) in CaseState::ALL.iter().enumerate() {
            let new = crate::CaseState::from(state);
            assert_eq!(crate::CaseState::ALL[position], new);
            assert_eq!(encode(&state).unwrap(), encode(&new).unwrap());
            assert_eq!(decode::<CaseState>(&encode(&new).unwrap()).unwrap(), state);
        }
    }
}
