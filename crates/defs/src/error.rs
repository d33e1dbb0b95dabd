//! A single problem found in a definition file.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One problem in one definition file: where it is, which field, and what is wrong.
///
/// Serializable so the master can show it in its API and dashboard as it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct DefError {
    /// The file the problem is in (or the folder, when a file is missing).
    pub file: PathBuf,
    /// 1-based line, where the parser knows it.
    pub line: Option<usize>,
    /// Dotted field path such as `network.dhcp_range` or `hosts[2].ip`; empty for the whole file.
    pub field: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl DefError {
    pub fn new(
        file: impl Into<PathBuf>,
        line: Option<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        DefError { file: file.into(), line, field: field.into(), message: message.into() }
    }
}

impl fmt::Display for DefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": field `{}`: {}", self.field, self.message)
        }
    }
}
