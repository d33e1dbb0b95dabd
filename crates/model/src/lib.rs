//! The data contract of xrdtest: what the master stores, what its API serves and what the
//! `xrdtest` command reads. One definition of each type, so the three cannot drift apart.
//!
//! - [`stage`]: stages and their ids (also carried by the wire protocol).
//! - [`output`]: output lines and collected log files (also wire messages).
//! - [`session`]: session records, their states, list summaries.
//! - [`results`]: values and checks stage runs report.
//! - [`timeline`]: the sync waits and faults of a session's scripts.
//! - [`cleanup`]: what each slave ended at a session's end.
//! - [`api`]: the JSON API's request and response bodies.
//! - [`storage`]: how stored values are encoded, and the store's schema version.
//! - [`v1`]: the stored types of store schema 1, to read and migrate older stores.
//!
//! Compatibility rules, guarded by tests:
//! - stored values are bincode 2 (serde): enum variants are numbered by position and
//!   struct fields by order, so a new variant goes last and a changed struct means a new
//!   schema version with a migration (`tests/golden.rs` pins the bytes of every stored type);
//! - in JSON every state has one spelling, snake_case, the same in answers and in filters.

pub mod api;
pub mod cleanup;
pub mod output;
pub mod results;
pub mod session;
pub mod stage;
pub mod storage;
pub mod timeline;
pub mod v1;

pub use cleanup::SlaveCleanup;
pub use output::{LogFile, OutputLine};
pub use results::{Check, CheckSource, ResultValue, StageValues};
pub use session::*;
pub use stage::{Stage, StageId};
pub use timeline::{FaultRecord, Timeline, WaitRecord};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
