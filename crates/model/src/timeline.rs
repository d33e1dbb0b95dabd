//! What happened inside a session's stages besides the scripts' output: the sync waits of
//! its scripts and the faults they injected, for the session's record and timeline. Stored
//! per session in tree `timelines` (schema 4), written when the session ends.

use serde::{Deserialize, Serialize};

use crate::StageId;

/// A session's waits and faults; empty for a session whose scripts used neither.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub waits: Vec<WaitRecord>,
    pub faults: Vec<FaultRecord>,
}

impl Timeline {
    pub fn is_empty(&self) -> bool {
        self.waits.is_empty() && self.faults.is_empty()
    }
}

/// A finished sync wait (`sync_wait`, `sync_barrier`, `sync_subscribe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitRecord {
    pub slave: String,
    pub stage_id: StageId,
    /// What it waited for, as people read it: `barrier up (3)`.
    pub what: String,
    pub started_unix_ms: u64,
    pub ended_unix_ms: u64,
    /// `None`: met; else why not.
    pub failure: Option<String>,
}

/// One fault of the session (`fault_partition`, `fault_netem`, `fault_pause`, `fault_kill`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRecord {
    pub id: u64,
    /// `partition`, `netem`, `pause`, `kill`.
    pub kind: String,
    pub targets: Vec<String>,
    /// The parameters as people read them: `y1 -- y2 y3`, `delay 100ms`, `xrootd`.
    pub params: String,
    /// Who made it: the slave and the stage.
    pub made_by: String,
    pub stage_id: StageId,
    pub started_unix_ms: u64,
    /// When it was healed (or, for a kill, done); `None`: never known to be healed (the
    /// session ended while its targets did not answer).
    pub ended_unix_ms: Option<u64>,
    /// What each target said it did (`slave: detail`), and every error.
    pub details: Vec<String>,
    pub error: Option<String>,
}
