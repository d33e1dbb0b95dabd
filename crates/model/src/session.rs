//! Sessions as the master records them: stored in sled, served as JSON, read by the CLI.

use serde::{Deserialize, Serialize};

use crate::{Stage, StageId};

/// Sessions are numbered from 1 in the order they are created.
pub type SessionId = u64;

/// An enum of states with one spelling each: `as_str`, `parse` and serde's JSON name are
/// the same snake_case word (checked by a test). Variants keep their order: it is their
/// stored number.
macro_rules! named_states {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant,)* }

        impl $name {
            /// Every value, in declaration (and storage) order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The one spelling of this value, in JSON, filters and text.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            pub fn parse(text: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|value| value.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_states! {
    /// What started a session.
    pub enum Trigger {
        /// From the command line or the dashboard, by a user.
        Manual = "manual",
        /// Through the API by a program.
        Api = "api",
        /// By the suite's cron schedule.
        Schedule = "schedule",
    }
}

named_states! {
    pub enum SessionState {
        /// Waiting for a slave another session uses.
        Queued = "queued",
        /// A cluster suite: its cluster is being created on a hypervisor.
        StartingCluster = "starting_cluster",
        /// Has its slaves reserved; waiting for all of them to be connected.
        WaitingSlaves = "waiting_slaves",
        Running = "running",
        Passed = "passed",
        Failed = "failed",
        Cancelled = "cancelled",
        /// The master stopped while the session ran.
        Interrupted = "interrupted",
    }
}

impl SessionState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            SessionState::Passed | SessionState::Failed | SessionState::Cancelled | SessionState::Interrupted
        )
    }
}

named_states! {
    /// One stage on one slave.
    pub enum RunState {
        Pending = "pending",
        Running = "running",
        Passed = "passed",
        /// Non-zero exit, killed by a signal, or could not start.
        Failed = "failed",
        TimedOut = "timed_out",
        Cancelled = "cancelled",
        /// Not run, by the failure rules (for example a case's run after its init failed).
        Skipped = "skipped",
        /// The slave went away and did not come back within the grace period.
        Disconnected = "disconnected",
    }
}

impl RunState {
    pub fn is_final(self) -> bool {
        !matches!(self, RunState::Pending | RunState::Running)
    }
}

named_states! {
    pub enum CaseState {
        Pending = "pending",
        Running = "running",
        Passed = "passed",
        Failed = "failed",
        /// Not run: suite init failed, the session was cancelled first, or exit-first.
        NotRun = "not_run",
        /// Failed, then passed when run again (`retries`): neither passed nor failed.
        Flaky = "flaky",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRun {
    pub slave: String,
    /// Key of this run's output and logs in the store; 0 until the stage is sent.
    pub stage_id: StageId,
    pub state: RunState,
    pub exit_code: Option<i32>,
    pub started_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    pub output_bytes: u64,
    pub dropped_bytes: u64,
    /// Why it failed, in words (timeout, disconnect, signal, spawn error...).
    pub reason: Option<String>,
    /// Paths of the log files collected after it.
    pub logs: Vec<String>,
}

impl StageRun {
    /// A run of a stage on `slave` that has not been sent yet.
    pub fn pending(slave: &str) -> StageRun {
        StageRun {
            slave: slave.to_string(),
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRecord {
    pub stage: Stage,
    pub timeout_ms: u64,
    /// Why the whole stage was skipped, if it was.
    pub skipped: Option<String>,
    pub runs: Vec<StageRun>,
    /// For a case's stage: which pass over the case list (1 unless `repeat` or `for`).
    pub repetition: u32,
    /// For a case's stage: which attempt of its case instance (1 unless `retries`).
    pub attempt: u32,
}

/// One case instance in one pass over the case list, with all its attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRecord {
    /// The instance's name: the case's, or `case[size=64,mode=sync]` for a matrix instance.
    pub name: String,
    pub state: CaseState,
    pub started_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    /// The test case (folder) it is an instance of.
    pub case: String,
    /// Its matrix values, in declared order (empty for a plain case).
    pub params: Vec<(String, String)>,
    /// Which pass over the case list (from 1).
    pub repetition: u32,
    /// Attempts made so far (more than one only with `retries`).
    pub attempts: u32,
}

impl CaseRecord {
    /// A case instance not run yet.
    pub fn pending(name: &str, case: &str, params: Vec<(String, String)>, repetition: u32) -> CaseRecord {
        CaseRecord {
            name: name.to_string(),
            state: CaseState::Pending,
            started_ms: None,
            ended_ms: None,
            case: case.to_string(),
            params,
            repetition,
            attempts: 0,
        }
    }
}

/// How a session was asked to run its suite: the options of `xrdtest run`, the API's run
/// request or the suite's own fields, as they applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOptions {
    /// `--case`: only these cases or instances (none: all).
    pub cases: Vec<String>,
    /// `--skip`: without these.
    pub skip: Vec<String>,
    /// `--param KEY=VALUE`: tags overridden for this session, sorted by key.
    pub params: Vec<(String, String)>,
    /// Passes over the case list (at least 1).
    pub repeat: u32,
    /// `--for`: the case list repeats until this long has passed since the first case.
    pub for_ms: Option<u64>,
    /// `--retries`: for every case, overriding the suite's and cases' own `retries`.
    pub retries: Option<u32>,
    /// After the first failed case, run no more cases.
    pub exit_first: bool,
    /// After a failed session, keep its cluster up this long.
    pub keep_on_failure_ms: Option<u64>,
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
    /// What the session was asked to run.
    pub options: RunOptions,
}

/// The cluster of a cluster session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRun {
    pub name: String,
    /// The hypervisor it was sent to, once one was picked.
    pub hypervisor: Option<String>,
    /// Whether this session started it (and so stops it); false: started by hand before.
    pub started_here: bool,
    pub steps: Vec<ClusterStep>,
}

/// One state a cluster reached, as its hypervisor (or the master) reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStep {
    pub unix_ms: u64,
    /// `creating_network`, `active`, `error_start`... (the protocol's cluster states).
    pub state: String,
    pub detail: String,
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
    /// Case instances that failed, then passed when run again.
    pub cases_flaky: usize,
}

impl StageRecord {
    /// The stage as people read it: `case_run:copy[size=64]`, with `, attempt 2` and
    /// `, pass 3` when it is not the first.
    pub fn label(&self) -> String {
        let mut text = self.stage.to_string();
        let mut extra = Vec::new();
        if self.repetition > 1 {
            extra.push(format!("pass {}", self.repetition));
        }
        if self.attempt > 1 {
            extra.push(format!("attempt {}", self.attempt));
        }
        if !extra.is_empty() {
            text.push_str(&format!(" ({})", extra.join(", ")));
        }
        text
    }
}

impl SessionRecord {
    /// A queued session with no cases or stages yet, made now by `trigger`.
    pub fn queued(id: SessionId, suite: &str, trigger: Trigger, slaves: Vec<String>, created_ms: u64) -> SessionRecord {
        SessionRecord {
            id,
            suite: suite.to_string(),
            trigger,
            definition_hash: String::new(),
            commit: None,
            slaves,
            state: SessionState::Queued,
            reason: None,
            created_ms,
            started_ms: None,
            ended_ms: None,
            cases: Vec::new(),
            stages: Vec::new(),
            cluster: None,
            options: RunOptions::default(),
        }
    }

    /// Passed, but some case instances passed only when run again.
    pub fn is_flaky(&self) -> bool {
        self.state == SessionState::Passed && self.cases.iter().any(|case| case.state == CaseState::Flaky)
    }

    /// The outcome in one word: the state, or `flaky` for a passed session with flaky cases.
    pub fn verdict(&self) -> &'static str {
        if self.is_flaky() {
            "flaky"
        } else {
            self.state.as_str()
        }
    }

    pub fn summary(&self) -> SessionSummary {
        SessionSummary {
            id: self.id,
            suite: self.suite.clone(),
            trigger: self.trigger,
            state: self.state,
            reason: self.reason.clone(),
            created_ms: self.created_ms,
            started_ms: self.started_ms,
            ended_ms: self.ended_ms,
            cases_passed: self.cases.iter().filter(|c| c.state == CaseState::Passed).count(),
            cases_failed: self
                .cases
                .iter()
                .filter(|c| matches!(c.state, CaseState::Failed | CaseState::NotRun))
                .count(),
            cases_total: self.cases.len(),
            cases_flaky: self.cases.iter().filter(|c| c.state == CaseState::Flaky).count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON spelling, the text spelling and the filter spelling are one.
    fn one_spelling<T: Serialize + Copy + std::fmt::Debug>(all: &[T], as_str: fn(T) -> &'static str) {
        for &value in all {
            let json = serde_json::to_value(value).unwrap();
            assert_eq!(json.as_str(), Some(as_str(value)), "{value:?}");
        }
    }

    #[test]
    fn every_state_has_one_spelling() {
        one_spelling(SessionState::ALL, SessionState::as_str);
        one_spelling(RunState::ALL, RunState::as_str);
        one_spelling(CaseState::ALL, CaseState::as_str);
        one_spelling(Trigger::ALL, Trigger::as_str);
        assert_eq!(SessionState::parse("starting_cluster"), Some(SessionState::StartingCluster));
        assert_eq!(SessionState::parse("Running"), None);
        assert_eq!(RunState::parse("timed_out"), Some(RunState::TimedOut));
        let decoded: SessionState = serde_json::from_str("\"waiting_slaves\"").unwrap();
        assert_eq!(decoded, SessionState::WaitingSlaves);
    }
}
