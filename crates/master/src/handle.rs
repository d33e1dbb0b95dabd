//! The narrow way in for the HTTP side (`crates/web`): the queries its API and pages make
//! and the commands they give, over the shared [`Master`], and the vocabulary they speak
//! (re-exported here, so the web names the core only through this module).
//!
//! Everything is a thin call to the master's own methods or to its store, peers, cluster
//! board and schedules: no state of its own, cheap to clone (one `Arc`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::broadcast;
use xrdtest_proto::{LogFile, StageId};

use crate::master::Master;
use crate::model::api::{PlanView, RunRequest};
use crate::model::{
    RunState, SessionId, SessionRecord, SessionState, SessionSummary, SlaveCleanup, StageValues, Timeline, Trigger,
};
use xrdtest_report::data::{SessionData, TAIL_LINES};

pub use crate::catalog::{Definitions, Origin, RepoStatus};
pub use crate::clusters::{
    cluster_state_name, ClusterEntry, ClusterEvent, ClusterOwner, HypervisorEntry, ReserveError,
};
pub use crate::config::{RepoConfig, RepoSource, WebConfig, WebTls};
pub use crate::master::{CancelError, ClusterCommandError, SubmitError};
pub use crate::metrics::{HistogramSnapshot, DURATION_BUCKETS, STAGE_KINDS};
pub use crate::peers::{PeerEvent, PeerInfo};
pub use crate::scheduler::ScheduleStatus;
pub use crate::session::plan::PlanError;
pub use crate::store::{HistoryFilter, OutputChunkLines, SessionFilter, StoreError, PREVIOUS_LOOK_BACK};

/// What the dashboard and `GET /api/store` say of the store.
#[derive(Debug, Clone)]
pub struct StoreInfo {
    pub bytes: u64,
    pub free_bytes: Option<u64>,
    pub retention: crate::retention::RetentionConfig,
}

/// The core as the API and the dashboard see it.
#[derive(Clone)]
pub struct CoreHandle {
    master: Arc<Master>,
}

impl CoreHandle {
    pub fn new(master: Arc<Master>) -> CoreHandle {
        CoreHandle { master }
    }

    // --- Settings from `master.toml` -------------------------------------------------------

    /// The token write calls of the API need; `None`: API writes are refused.
    pub fn api_token(&self) -> Option<&str> {
        self.master.config.api_token.as_deref()
    }

    /// What a bearer token may do: `api_token` of `master.toml` is an admin token; the
    /// others are those of `xrdtest token create`, while in force.
    pub fn token_scope(&self, given: &str) -> Option<crate::api_tokens::Scope> {
        if self.api_token().is_some_and(|expected| xrdtest_proto::handshake::secrets_match(expected, given)) {
            return Some(crate::api_tokens::Scope::Admin);
        }
        self.master.tokens.scope_of(given, crate::model::now_ms())
    }

    /// Whether any bearer token can be in force: `api_token`, or one made with `xrdtest token
    /// create`.
    pub fn accepts_tokens(&self) -> bool {
        self.api_token().is_some() || !self.master.tokens.is_empty()
    }

    /// The tokens made with `xrdtest token create` (their hashes, never the tokens).
    pub fn tokens(&self) -> Vec<crate::api_tokens::TokenRecord> {
        self.master.tokens.list()
    }

    /// Makes a token; returns it (shown once) and its record.
    pub fn create_token(
        &self,
        name: &str,
        scope: crate::api_tokens::Scope,
        lifetime_ms: Option<u64>,
    ) -> Result<(String, crate::api_tokens::TokenRecord), crate::api_tokens::TokenError> {
        self.master.tokens.create(name, scope, lifetime_ms)
    }

    pub fn revoke_token(&self, name: &str) -> Result<(), crate::api_tokens::TokenError> {
        self.master.tokens.revoke(name)
    }

    /// The `[web]` section: password, logins, cookie key, TLS.
    pub fn web_settings(&self) -> &WebConfig {
        &self.master.config.web
    }

    /// Where the web listener is bound.
    pub fn web_listen(&self) -> std::net::SocketAddr {
        self.master.config.web_listen
    }

    /// The definitions repositories, as configured.
    pub fn repos(&self) -> &[RepoConfig] {
        &self.master.config.repos
    }

    /// The master's CA certificate (`state_dir/ca.crt`), which slaves fetch.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.master.config.state_dir.join(xrdtest_proto::pki::CA_CERT_FILE)
    }

    /// The port slaves and hypervisors connect to (the bound one once the core started).
    pub fn peer_port(&self) -> u16 {
        self.master.config.listen.port()
    }

    /// Whether suites' schedules start sessions.
    pub fn scheduler_enabled(&self) -> bool {
        self.master.config.scheduler_enabled
    }

    // --- Sessions ----------------------------------------------------------------------------

    pub fn session(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.master.store.session(id)
    }

    /// Sessions matching `filter`, newest first: the total count and one page.
    pub fn sessions(
        &self,
        filter: &SessionFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<SessionSummary>), StoreError> {
        self.master.store.list(filter, offset, limit)
    }

    /// One history page, newest first, and whether older sessions follow.
    pub fn history(
        &self,
        filter: &HistoryFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<SessionSummary>, bool), StoreError> {
        self.master.store.history(filter, offset, limit)
    }

    /// The history page just newer than `filter.after_id`, and whether newer ones follow.
    pub fn history_newer(
        &self,
        filter: &HistoryFilter,
        limit: usize,
    ) -> Result<(Vec<SessionSummary>, bool), StoreError> {
        self.master.store.history_newer(filter, limit)
    }

    /// Queued and running sessions, oldest first.
    pub fn unfinished_sessions(&self) -> Result<Vec<SessionSummary>, StoreError> {
        self.master.store.unfinished()
    }

    /// The latest sessions in `state`, newest first.
    pub fn sessions_in_state(&self, state: SessionState, limit: usize) -> Result<Vec<SessionSummary>, StoreError> {
        self.master.store.in_state(state, limit)
    }

    /// A suite's latest sessions, newest first.
    pub fn suite_recent(&self, suite: &str, limit: usize) -> Result<Vec<SessionSummary>, StoreError> {
        self.master.store.suite_recent(suite, limit)
    }

    /// The suite's newest finished session older than `before`, within the store's
    /// look-back bound ([`crate::store::Store::previous_finished`]).
    pub fn previous_finished(&self, suite: &str, before: SessionId) -> Result<Option<SessionSummary>, StoreError> {
        self.master.store.previous_finished(suite, before)
    }

    /// A suite's latest session records, oldest first (for trends).
    pub fn suite_records(&self, suite: &str, limit: usize) -> Result<Vec<SessionRecord>, StoreError> {
        self.master.store.suite_records(suite, limit)
    }

    /// The suite's session that is queued or running now.
    pub fn unfinished_session_of(&self, suite: &str) -> Option<SessionId> {
        self.master.unfinished_session_of(suite)
    }

    // --- Output and logs ---------------------------------------------------------------------

    /// A stage's output chunks from chunk `from_seq` on, at most `max_chunks`.
    pub fn output(
        &self,
        stage_id: StageId,
        from_seq: u64,
        max_chunks: usize,
    ) -> Result<Vec<OutputChunkLines>, StoreError> {
        self.master.store.output(stage_id, from_seq, max_chunks)
    }

    /// A stage's last chunks holding at least `min_lines` lines, and whether earlier ones
    /// were left out.
    pub fn output_tail_chunks(
        &self,
        stage_id: StageId,
        min_lines: usize,
    ) -> Result<(Vec<OutputChunkLines>, bool), StoreError> {
        self.master.store.output_tail_chunks(stage_id, min_lines)
    }

    /// The log files collected for a stage.
    pub fn logs(&self, stage_id: StageId) -> Result<Vec<LogFile>, StoreError> {
        self.master.store.logs(stage_id)
    }

    /// What a stage run reported: its results and checks (empty if nothing).
    pub fn values(&self, stage_id: StageId) -> Result<StageValues, StoreError> {
        self.master.store.values(stage_id)
    }

    /// The sync waits and faults of a session (empty if none were kept).
    pub fn timeline(&self, id: SessionId) -> Result<Timeline, StoreError> {
        self.master.store.timeline(id)
    }

    /// What each slave ended at a session's end (empty before it ended).
    pub fn cleanup(&self, id: SessionId) -> Result<Vec<SlaveCleanup>, StoreError> {
        self.master.store.cleanup(id)
    }

    /// What every run of a session reported, by stage id.
    pub fn session_values(&self, record: &SessionRecord) -> Result<BTreeMap<StageId, StageValues>, StoreError> {
        self.master.store.session_values(record)
    }

    /// A session as the reports read it: its record, what its runs reported, and the last
    /// output lines of each run that did not pass (reads the store: call it off the async
    /// threads).
    pub fn session_data(&self, id: SessionId) -> Result<Option<SessionData>, StoreError> {
        let Some(record) = self.master.store.session(id)? else { return Ok(None) };
        let values = self.master.store.session_values(&record)?;
        let mut tails = BTreeMap::new();
        for run in record.stages.iter().flat_map(|stage| &stage.runs) {
            if run.stage_id != 0 && run.state != RunState::Passed {
                tails.insert(run.stage_id, self.master.store.output_tail(run.stage_id, TAIL_LINES)?);
            }
        }
        Ok(Some(SessionData { record, values, tails }))
    }

    // --- Definitions and schedules -----------------------------------------------------------

    /// The definitions in service (a shared snapshot).
    pub fn definitions(&self) -> Arc<Definitions> {
        self.master.definitions()
    }

    /// Per scheduled suite: expression, next run, skipped runs.
    pub fn schedules(&self) -> BTreeMap<String, ScheduleStatus> {
        self.master.schedules.snapshot()
    }

    // --- Peers, clusters, hypervisors --------------------------------------------------------

    /// Known slaves and hypervisors (as connections), connected or not.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.master.peers.list()
    }

    /// The cluster board: every cluster sent to a hypervisor, with its state and steps.
    pub fn clusters(&self) -> Vec<ClusterEntry> {
        self.master.clusters.clusters()
    }

    /// Hypervisors with what they last reported.
    pub fn hypervisors(&self) -> Vec<HypervisorEntry> {
        self.master.clusters.hypervisors()
    }

    // --- Health ------------------------------------------------------------------------------

    /// Sessions running now.
    pub fn running_sessions(&self) -> usize {
        self.master.running_sessions()
    }

    /// Alert mails sent and given up, when SMTP is configured.
    pub fn alert_counts(&self) -> Option<(u64, u64)> {
        self.master.alert_counts()
    }

    /// Webhooks sent and given up, when `[[notify]]` entries are configured.
    pub fn webhook_counts(&self) -> Option<(u64, u64)> {
        self.master.webhook_counts()
    }

    /// Sessions waiting in the queue.
    pub fn queued_sessions(&self) -> usize {
        self.master.queued_sessions()
    }

    /// Stored sessions by suite and state, `(suite, state, count)` sorted by suite (reads
    /// the store's indexes: call it off the async threads).
    pub fn session_counts(&self) -> Result<Vec<(String, SessionState, u64)>, StoreError> {
        self.master.store.count_by_suite_and_state()
    }

    /// Per stage kind, the durations of the stage runs of sessions ended since the start.
    pub fn stage_durations(&self) -> Vec<(&'static str, HistogramSnapshot)> {
        self.master.metrics.stage_durations()
    }

    // --- Live updates ------------------------------------------------------------------------

    /// Ids of sessions whose record changed.
    pub fn subscribe_updates(&self) -> broadcast::Receiver<SessionId> {
        self.master.subscribe_updates()
    }

    /// Slaves and hypervisors connecting and leaving.
    pub fn subscribe_peers(&self) -> broadcast::Receiver<PeerEvent> {
        self.master.peers.subscribe()
    }

    /// Clusters changing state.
    pub fn subscribe_clusters(&self) -> broadcast::Receiver<ClusterEvent> {
        self.master.clusters.subscribe()
    }

    // --- Commands ----------------------------------------------------------------------------

    /// Creates a session of `suite` and queues it.
    pub fn submit(&self, suite: &str, trigger: Trigger) -> Result<SessionId, SubmitError> {
        self.master.submit(suite, trigger)
    }

    /// Creates a session of a suite as a run request asks (`--case`, `--param`,
    /// `--repeat`...). A request that does not fit the suite creates nothing.
    pub fn submit_request(
        &self,
        suite: &str,
        trigger: Trigger,
        request: &RunRequest,
    ) -> Result<SessionId, SubmitError> {
        self.master.submit_request(suite, trigger, request)
    }

    /// What a session of a suite with this request would run (`xrdtest plan`).
    pub fn plan(&self, suite: &str, request: &RunRequest) -> Result<PlanView, SubmitError> {
        let planned = self.master.plan_request(suite, request)?;
        Ok(planned.plan.view(&planned.suite))
    }

    /// Cancels a queued or running session.
    pub fn cancel(&self, id: SessionId, reason: &str) -> Result<(), CancelError> {
        self.master.cancel(id, reason)
    }

    /// Marks a session `keep` (retention never prunes it) or takes the mark off; false when
    /// there is no such session.
    pub fn set_kept(&self, id: SessionId, keep: bool) -> Result<bool, StoreError> {
        if self.master.store.summary(id)?.is_none() {
            return Ok(false);
        }
        self.master.store.set_kept(id, keep)?;
        Ok(true)
    }

    pub fn is_kept(&self, id: SessionId) -> Result<bool, StoreError> {
        self.master.store.is_kept(id)
    }

    /// The store's size on disk, the free space beside it, and the retention rules.
    pub fn store_info(&self) -> StoreInfo {
        let folder = self.master.config.state_dir.join("store");
        StoreInfo {
            bytes: self.master.store.disk_bytes(),
            free_bytes: crate::disk::free_bytes(&folder),
            retention: self.master.config.retention.clone(),
        }
    }

    /// Starts a cluster by hand; returns the hypervisor it was sent to.
    pub async fn start_cluster_by_hand(&self, name: &str) -> Result<String, ClusterCommandError> {
        self.master.start_cluster_by_hand(name).await
    }

    /// Stops a cluster started by hand; returns the hypervisor the stop was sent to.
    pub async fn stop_cluster_by_hand(&self, name: &str) -> Result<String, ClusterCommandError> {
        self.master.stop_cluster_by_hand(name).await
    }

    /// Every peer identity the master knows: enrolled, waiting for approval, revoked.
    pub fn peer_identities(&self) -> Vec<crate::identities::PeerIdentity> {
        self.master.auth.identities.list()
    }

    /// Approves a peer waiting to enroll.
    pub fn approve_peer(&self, name: &str) -> Result<(), crate::peer_auth::ApprovalError> {
        self.master.approve_peer(name)
    }

    /// Revokes a peer; its connection drops at once.
    pub fn revoke_peer(&self, name: &str) -> Result<(), crate::peer_auth::ApprovalError> {
        self.master.revoke_peer(name)
    }
}
