//! What a stage leaves behind besides its result: output lines and collected log files.

use serde::{Deserialize, Serialize};

use crate::StageId;

/// One line of a script's output (stderr merged into stdout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputLine {
    /// When the slave read the line.
    pub unix_ms: u64,
    pub text: String,
}

/// A log file collected after a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFile {
    pub stage_id: StageId,
    /// The path after tag expansion.
    pub path: String,
    /// The file's tail, at most the stage's log limit.
    pub content: Vec<u8>,
    /// Bytes cut from the front to keep within the limit.
    pub truncated_bytes: u64,
    /// Why the file could not be read, if it could not.
    pub error: Option<String>,
}
