//! A stage of a session and its id.

use serde::{Deserialize, Serialize};

/// Identifies one stage on one slave; unique within a master's lifetime and store.
pub type StageId = u64;

/// A stage of a session, as XrdTest defined them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Stage {
    SuiteInit,
    CaseInit { case: String },
    CaseRun { case: String },
    CaseFinalize { case: String },
    SuiteFinalize,
}

impl Stage {
    /// `suite_init`, `case_init`, ...: the value of `XRDTEST_STAGE`.
    pub fn kind(&self) -> &'static str {
        match self {
            Stage::SuiteInit => "suite_init",
            Stage::CaseInit { .. } => "case_init",
            Stage::CaseRun { .. } => "case_run",
            Stage::CaseFinalize { .. } => "case_finalize",
            Stage::SuiteFinalize => "suite_finalize",
        }
    }

    /// The test case this stage belongs to, if any.
    pub fn case(&self) -> Option<&str> {
        match self {
            Stage::CaseInit { case } | Stage::CaseRun { case } | Stage::CaseFinalize { case } => Some(case),
            Stage::SuiteInit | Stage::SuiteFinalize => None,
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.case() {
            Some(case) => write!(f, "{}:{case}", self.kind()),
            None => f.write_str(self.kind()),
        }
    }
}
