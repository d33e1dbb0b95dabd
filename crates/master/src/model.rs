//! What the master records about sessions: stored in sled and served as JSON.

use serde::{Deserialize, Serialize};
use xrdtest_proto::{Stage, StageId};

/// Sessions are numbered from 1 in the order they are created.
pub type SessionId = u64;

/// What started a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    /// From the command line or the dashboard, by a user.
    Manual,
    /// Through the API by a program.
    Api,
    /// By the suite's cron schedule.
    Schedule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionState {
    /// Waiting for a slave another session uses.
    Queued,
    /// A cluster suite: its cluster is being created on a hypervisor.
    StartingCluster,
    /// Has its slaves reserved; waiting for all of them to be connected.
    WaitingSlaves,
    Running,
    Passed,
    Failed,
    Cancelled,
    /// The master stopped while the session ran.
    Interrupted,
}

impl SessionState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            SessionState::Passed | SessionState::Failed | SessionState::Cancelled | SessionState::Interrupted
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Queued => "queued",
            SessionState::StartingCluster => "starting_cluster",
            SessionState::WaitingSlaves => "waiting_slaves",
            SessionState::Running => "running",
            SessionState::Passed => "passed",
            SessionState::Failed => "failed",
            SessionState::Cancelled => "cancelled",
            SessionState::Interrupted => "interrupted",
        }
    }

    /// Every state, in the order of a session's life.
    pub const ALL: [SessionState; 8] = [
        SessionState::Queued,
        SessionState::StartingCluster,
        SessionState::WaitingSlaves,
        SessionState::Running,
        SessionState::Passed,
        SessionState::Failed,
        SessionState::Cancelled,
        SessionState::Interrupted,
    ];

    pub fn parse(text: &str) -> Option<SessionState> {
        SessionState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One stage on one slave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    Pending,
    Running,
    Passed,
    /// Non-zero exit, killed by a signal, or could not start.
    Failed,
    TimedOut,
    Cancelled,
    /// Not run, by the failure rules (for example a case's run after its init failed).
    Skipped,
    /// The slave went away and did not come back within the grace period.
    Disconnected,
}

impl RunState {
    pub fn is_final(self) -> bool {
        !matches!(self, RunState::Pending | RunState::Running)
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRecord {
    pub stage: Stage,
    pub timeout_ms: u64,
    /// Why the whole stage was skipped, if it was.
    pub skipped: Option<String>,
    pub runs: Vec<StageRun>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaseState {
    Pending,
    Running,
    Passed,
    Failed,
    /// Not run: suite init failed or the session was cancelled first.
    NotRun,
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
    /// `creating_network`, `active`, `error_start`... (see `cluster_state_name`).
    pub state: String,
    pub detail: String,
}

/// The API's name of a cluster state.
pub fn cluster_state_name(state: xrdtest_proto::ClusterState) -> &'static str {
    use xrdtest_proto::ClusterState as C;
    match state {
        C::Defined => "defined",
        C::DefinitionSent => "definition_sent",
        C::Starting => "starting",
        C::CreatingNetwork => "creating_network",
        C::CreatingSlaves => "creating_slaves",
        C::CopyingImages => "copying_images",
        C::AttachingDisks => "attaching_disks",
        C::WaitingSlaves => "waiting_slaves",
        C::Active => "active",
        C::StopCommandSent => "stop_command_sent",
        C::Destroying => "destroying",
        C::Stopped => "stopped",
        C::ErrorStart => "error_start",
        C::ErrorStop => "error_stop",
        C::Error => "error",
    }
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

impl SessionRecord {
    pub fn summary(&self) -> SessionSummary {
        SessionSummary {
            id: self.id,
            suite: self.suite.clone(),
            trigger: self.trigger.clone(),
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
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
