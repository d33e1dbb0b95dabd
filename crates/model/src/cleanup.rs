//! What the end of a session left behind on each slave: how many of its processes were
//! still alive and ended then (docs/clean-slate.md). Stored per session in tree `cleanups`
//! (schema 5), written when the session ends.

use serde::{Deserialize, Serialize};

/// One slave's end of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaveCleanup {
    pub slave: String,
    /// How the slave finds a session's processes: `cgroup` or `environ`; empty when it
    /// never answered.
    pub method: String,
    /// Processes of the session still alive at its end, and ended then.
    pub processes_ended: u32,
    /// What went wrong: the slave's own words, or that it did not answer.
    pub problem: Option<String>,
}
