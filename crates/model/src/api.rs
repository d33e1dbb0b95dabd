//! Bodies of the JSON API (`docs/api.md`) that the master writes and the CLI reads.
//! Session records and summaries are served as they are stored ([`crate::session`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{OutputLine, RunOptions, SessionId, SessionSummary, StageId};

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
    /// Tags overridden for this session only (`--param KEY=VALUE`).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Passes over the case list; default: the suite's `repeat` (1).
    #[serde(default)]
    pub repeat: Option<u32>,
    /// Repeat the case list until this long has passed (`"2h"`), finishing the case in
    /// progress.
    #[serde(default, rename = "for")]
    pub for_duration: Option<String>,
    /// Run a failed case instance again up to this many times; default: the case's or
    /// suite's `retries`.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Run no more cases after the first failed one; default: the suite's `exit_first`.
    #[serde(default)]
    pub exit_first: Option<bool>,
    /// A cluster suite: after a failed session, keep its cluster up this long (`"30m"`).
    #[serde(default)]
    pub keep_on_failure: Option<String>,
}

/// `POST /api/suites/{name}/plan` (same body as a run): what a session would run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanView {
    pub suite: String,
    pub options: RunOptions,
    /// The slaves each stage runs on.
    pub slaves: Vec<String>,
    /// Tags every stage gets, before the case's own (suite tags, parameters, the
    /// master's). Per slave, `@slavename@` (and a cluster host's `@diskmounts@`) are added.
    pub tags: BTreeMap<String, String>,
    pub stages: Vec<PlannedStageView>,
    /// With `for`: the case stages listed are one pass; more follow while time is left.
    pub repeats_until_time: bool,
}

/// One stage of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStageView {
    /// `suite_init`, `case_init:write_files`, `case_run:copy[size=64]`...
    pub stage: String,
    pub kind: String,
    /// The case instance, for a case's stage.
    pub case: Option<String>,
    pub repetition: u32,
    /// Most attempts its case instance may take (1 + retries).
    pub max_attempts: u32,
    pub timeout_ms: u64,
    /// Tags of this stage beyond [`PlanView::tags`] (the case's `[tags]`, matrix values).
    pub tags: BTreeMap<String, String>,
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
