//! Bodies of the JSON API (`docs/api.md`) that the master writes and the CLI reads.
//! Session records and summaries are served as they are stored ([`crate::session`]).

use serde::{Deserialize, Serialize};

use crate::{OutputLine, SessionId, SessionSummary, StageId};

/// `POST /api/suites/{name}/run`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    /// `manual` when a person asked (the CLI says so), else `api`.
    #[serde(default)]
    pub trigger: Option<String>,
    /// Run only these cases (in the suite's order); none: every case.
    #[serde(default)]
    pub cases: Vec<String>,
    /// Leave these cases out.
    #[serde(default)]
    pub skip: Vec<String>,
}

/// The answer to a run request, and to a cancel: the session concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCreated {
    pub session: SessionId,
}

/// `POST /api/sessions/{id}/cancel`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelAccepted {
    pub session: SessionId,
    pub cancelling: bool,
}

/// `GET /api/sessions`: one page of summaries, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionPage {
    /// Sessions matching the filter, on every page.
    pub total: usize,
    pub offset: usize,
    pub sessions: Vec<SessionSummary>,
}

/// `GET /api/stages/{id}/output`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputPage {
    pub stage_id: StageId,
    pub lines: Vec<OutputLine>,
    /// Ask again with `from=next` for more.
    pub next: u64,
}

/// `GET /api/stages/{id}/logs`: one collected log file, as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogView {
    pub path: String,
    pub content: String,
    pub truncated_bytes: u64,
    pub error: Option<String>,
}

/// Every API error: the status code says what kind, this says what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    pub error: String,
}
