//! The master's shared state and its session queue.
//!
//! Sessions whose slaves are disjoint run at the same time; a session that needs a slave
//! another one holds waits in FIFO order, and a later session never overtakes an earlier
//! one for the same slave.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};
use tracing::{error, info, warn};
use xrdtest_defs::{Cluster, Suite};
use xrdtest_proto::StageId;

pub use crate::alerts::SessionEndListener;
use crate::api_tokens::TokenStore;
use crate::catalog::{Definitions, DefinitionsService};
use crate::cluster_control::{ClusterControl, StartError};
use crate::clusters::{ClusterBoard, ClusterOwner, ReserveError, StopRefusal};
use crate::config::MasterConfig;
use crate::metrics::MasterMetrics;
use crate::model::api::RunRequest;
use crate::model::{now_ms, CaseState, RunOptions, SessionId, SessionRecord, SessionState, Trigger};
use crate::notify::Notifier;
use crate::peer_auth::PeerAuth;
use crate::peers::Peers;
use crate::scheduler::{ScheduleBoard, Starter};
use crate::session::cluster::{new_run, watch_hold};
use crate::session::plan::{default_options, options_from_request, Plan, PlanError};
use crate::session::rules::StopRequest;
use crate::session::runner::run_session;
use crate::session::SessionHost;
use crate::store::{Store, StoreError};

/// A session ready to be created: what a run request resolved to.
pub struct Planned {
    pub suite: Suite,
    pub plan: Plan,
    /// The suite's cluster as defined now.
    pub cluster: Option<Cluster>,
    /// The commit of the definitions, from a git repository.
    pub commit: Option<String>,
}

struct Queued {
    id: SessionId,
    suite: Suite,
    plan: Plan,
    /// The suite's cluster as defined when the session was created.
    cluster: Option<Cluster>,
    /// What the session holds while it runs: its slaves, and `cluster:<name>` for a
    /// cluster suite (two sessions never share a cluster).
    resources: Vec<String>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Queued>,
    busy: HashSet<String>,
    /// Cancel switches of the sessions that run, and their suites.
    running: HashMap<SessionId, (watch::Sender<Option<StopRequest>>, String)>,
    /// The suite folder (a snapshot) each running session runs from.
    running_dirs: HashMap<SessionId, PathBuf>,
}

impl Queue {
    /// Takes, in FIFO order, every waiting session whose resources are free and not wanted
    /// by an earlier waiting one (a later session never overtakes an earlier one for the
    /// same slave), and marks their resources busy. One pass: linear in waiting sessions
    /// times the resources each needs.
    fn take_runnable(&mut self) -> Vec<Queued> {
        let mut runnable = Vec::new();
        let mut wanted: HashSet<String> = HashSet::new();
        let mut still_waiting = VecDeque::with_capacity(self.waiting.len());
        for queued in self.waiting.drain(..) {
            if queued.resources.iter().all(|r| !self.busy.contains(r) && !wanted.contains(r)) {
                self.busy.extend(queued.resources.iter().cloned());
                runnable.push(queued);
            } else {
                wanted.extend(queued.resources.iter().cloned());
                still_waiting.push_back(queued);
            }
        }
        self.waiting = still_waiting;
        runnable
    }

    /// A session ended: its resources are free again, but for `kept` (the cluster it left
    /// held), which stays taken until [`Queue::free`].
    fn release(&mut self, id: SessionId, resources: &[String], kept: Option<&str>) {
        self.running.remove(&id);
        self.running_dirs.remove(&id);
        for resource in resources.iter().filter(|r| Some(r.as_str()) != kept) {
            self.busy.remove(resource);
        }
    }

    /// A resource kept after its session (a held cluster) is free again.
    fn free(&mut self, resource: &str) {
        self.busy.remove(resource);
    }
}

/// The queue's name of a cluster: a resource two sessions never share.
fn cluster_resource(cluster: &str) -> String {
    format!("cluster:{cluster}")
}

/// Why a session could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("no valid suite named `{0}`")]
    UnknownSuite(String),
    #[error("no valid cluster named `{0}`")]
    UnknownCluster(String),
    /// The run request does not fit the suite (an unknown case or parameter, a bad
    /// option): nothing was created.
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Why a cluster could not be started or stopped by hand.
#[derive(Debug, thiserror::Error)]
pub enum ClusterCommandError {
    #[error("no valid cluster named `{0}`")]
    Unknown(String),
    #[error("cluster `{0}` is not running")]
    NotRunning(String),
    #[error("cluster `{0}` is in use by session {1}; cancel the session instead")]
    InUse(String, SessionId),
    #[error(transparent)]
    Reserve(#[from] ReserveError),
    #[error("{0}")]
    Send(String),
}

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no session {0}")]
    Unknown(SessionId),
    #[error("session {0} has already ended")]
    Finished(SessionId),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

pub struct Master {
    pub config: MasterConfig,
    pub store: Store,
    /// Who may connect under which name; the record of enrolled peers.
    pub auth: PeerAuth,
    /// API tokens made with `xrdtest token create`.
    pub tokens: TokenStore,
    pub peers: Peers,
    /// Hypervisors and the clusters they run.
    pub clusters: ClusterBoard,
    /// The definitions in service and their reloads.
    pub defs: Arc<DefinitionsService>,
    /// Next runs and skip counts of scheduled suites.
    pub schedules: Arc<ScheduleBoard>,
    /// Told when a session ends (the alert mailer, when SMTP is configured).
    end_listener: Mutex<Option<Box<dyn SessionEndListener>>>,
    /// Sends webhooks when a session ends, when `[[notify]]` entries are configured.
    notifier: std::sync::OnceLock<Notifier>,
    /// Stage durations of the sessions ended since the start, for `/metrics`.
    pub metrics: MasterMetrics,
    queue: Mutex<Queue>,
    /// Ids of sessions whose record changed, for live views.
    updates: broadcast::Sender<SessionId>,
}

impl Master {
    pub fn new(config: MasterConfig, store: Store, auth: PeerAuth, tokens: TokenStore) -> Arc<Master> {
        let defs = Arc::new(DefinitionsService::new(
            &config.repos,
            config.state_dir.join("snapshots"),
            xrdtest_defs::SourcePolicy {
                script_dirs: config.script_dirs.clone(),
                http_hosts: config.http_script_hosts.clone(),
            },
        ));
        Arc::new(Master {
            config,
            store,
            auth,
            tokens,
            peers: Peers::default(),
            clusters: ClusterBoard::default(),
            defs,
            schedules: Default::default(),
            end_listener: Mutex::new(None),
            notifier: std::sync::OnceLock::new(),
            metrics: MasterMetrics::default(),
            queue: Mutex::new(Queue::default()),
            updates: broadcast::channel(4096).0,
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The definitions in service (a shared snapshot).
    pub fn definitions(&self) -> Arc<Definitions> {
        self.defs.snapshot()
    }

    /// Removes the suite snapshots nothing uses any more (retention's pass).
    pub fn prune_snapshots(&self) -> Result<usize, String> {
        let in_use: Vec<PathBuf> = {
            let queue = self.queue();
            queue.waiting.iter().map(|q| q.suite.dir.clone()).chain(queue.running_dirs.values().cloned()).collect()
        };
        self.defs.prune_snapshots(&in_use)
    }

    /// Starts the watchers of the definitions' repositories (local ones are loaded before
    /// this returns) and, unless disabled, the scheduler.
    pub fn start_background_tasks(self: &Arc<Self>) {
        crate::watch::start(&self.defs, &self.config.repos);
        let master = Arc::downgrade(self);
        let prune_snapshots = move || master.upgrade().map_or(Ok(0), |master| master.prune_snapshots());
        crate::retention::start(
            self.store.clone(),
            self.config.retention.clone(),
            self.config.state_dir.join("store"),
            prune_snapshots,
        );
        if !self.config.scheduler_enabled {
            info!("scheduler disabled: suites run only when started by hand or through the API");
            return;
        }
        let (submitter, asker) = (Arc::downgrade(self), Arc::downgrade(self));
        let starter = Starter {
            unfinished_session_of: Box::new(move |suite| asker.upgrade()?.unfinished_session_of(suite)),
            submit: Box::new(move |suite| match submitter.upgrade() {
                Some(master) => master.submit(suite, Trigger::Schedule).map_err(|e| e.to_string()),
                None => Err("the master is stopping".into()),
            }),
        };
        tokio::spawn(crate::scheduler::run(self.defs.clone(), self.store.clone(), self.schedules.clone(), starter));
    }

    pub fn set_end_listener(&self, listener: Box<dyn SessionEndListener>) {
        *self.end_listener.lock().unwrap_or_else(|p| p.into_inner()) = Some(listener);
    }

    /// Sets the webhook sender (once, at start).
    pub fn set_notifier(&self, notifier: Notifier) {
        if self.notifier.set(notifier).is_err() {
            warn!("a second webhook sender was not installed");
        }
    }

    /// Called once when a session reaches its final state (alerts, webhooks and the stage
    /// durations of `/metrics` go out from here).
    pub fn session_ended(&self, suite: &Suite, record: &SessionRecord) {
        self.metrics.session_ended(record);
        if let Some(notifier) = self.notifier.get() {
            notifier.session_ended(suite.notify, record);
        }
        if let Some(listener) = self.end_listener.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            listener.session_ended(suite, record);
        }
    }

    /// Alert mails sent and given up so far, when SMTP is configured.
    pub fn alert_counts(&self) -> Option<(u64, u64)> {
        self.end_listener.lock().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|l| l.delivery_counts())
    }

    /// Webhooks sent and given up so far, when `[[notify]]` entries are configured.
    pub fn webhook_counts(&self) -> Option<(u64, u64)> {
        self.notifier.get().map(|n| (n.sent_count(), n.failed_count()))
    }

    /// The queued or running session of `suite`, if there is one.
    pub fn unfinished_session_of(&self, suite: &str) -> Option<SessionId> {
        let queue = self.queue();
        queue
            .waiting
            .iter()
            .find(|q| q.suite.name == suite)
            .map(|q| q.id)
            .or_else(|| queue.running.iter().find(|(_, (_, name))| name == suite).map(|(id, _)| *id))
    }

    pub fn subscribe_updates(&self) -> broadcast::Receiver<SessionId> {
        self.updates.subscribe()
    }

    /// Stores a session record and tells live views it changed.
    pub fn save(&self, record: &SessionRecord) {
        if let Err(err) = self.store.put_session(record) {
            warn!(session = record.id, error = %err, "cannot store session");
        }
        let _ = self.updates.send(record.id);
    }

    /// Stores a session record and waits until it is on disk: for the few moments a crash
    /// must not lose (a session created, started, ended). Progress in between is flushed by
    /// sled within 200 ms.
    pub fn save_durably(&self, record: &SessionRecord) {
        self.save(record);
        if let Err(err) = self.store.flush_now() {
            warn!(session = record.id, error = %err, "cannot flush the store");
        }
    }

    /// Tags every stage gets from the master: `@port@`, `@proto@`.
    pub fn base_tags(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("port".to_string(), self.config.listen.port().to_string()),
            ("proto".to_string(), self.config.proto_tag.clone()),
        ])
    }

    /// Creates a session of `suite_name` with the suite's own options (as a schedule
    /// does) and queues it. Returns at once with its id.
    pub fn submit(self: &Arc<Self>, suite_name: &str, trigger: Trigger) -> Result<SessionId, SubmitError> {
        let planned = self.plan_with(suite_name, |suite| Ok(default_options(suite)))?;
        self.enqueue(planned, trigger)
    }

    /// Creates a session of `suite_name` as `request` asks (cases, parameters, repeats...)
    /// and queues it. A request that does not fit the suite creates nothing.
    pub fn submit_request(
        self: &Arc<Self>,
        suite_name: &str,
        trigger: Trigger,
        request: &RunRequest,
    ) -> Result<SessionId, SubmitError> {
        let planned = self.plan_request(suite_name, request)?;
        self.enqueue(planned, trigger)
    }

    /// What a session of `suite_name` with `request` would run, without creating it.
    pub fn plan_request(&self, suite_name: &str, request: &RunRequest) -> Result<Planned, SubmitError> {
        self.plan_with(suite_name, |suite| options_from_request(request, suite))
    }

    /// The suite, its cluster and the plan, all of one snapshot of the definitions.
    fn plan_with(
        &self,
        suite_name: &str,
        options: impl FnOnce(&Suite) -> Result<RunOptions, PlanError>,
    ) -> Result<Planned, SubmitError> {
        let definitions = self.definitions();
        let suite = definitions
            .repository
            .suites
            .get(suite_name)
            .cloned()
            .ok_or_else(|| SubmitError::UnknownSuite(suite_name.to_string()))?;
        let options = options(&suite)?;
        let plan = Plan::new(&suite, &options, &self.base_tags())?;
        let cluster = match &suite.cluster {
            Some(name) => Some(
                definitions
                    .repository
                    .clusters
                    .get(name)
                    // Only the hosts the suite uses get a VM.
                    .map(|cluster| cluster.with_hosts(&suite.machines))
                    .ok_or_else(|| SubmitError::UnknownCluster(name.clone()))?,
            ),
            None => None,
        };
        let commit = definitions.origins.get(suite_name).and_then(|o| o.commit.clone());
        Ok(Planned { suite, plan, cluster, commit })
    }

    fn enqueue(self: &Arc<Self>, planned: Planned, trigger: Trigger) -> Result<SessionId, SubmitError> {
        let Planned { suite, plan, cluster, commit } = planned;
        let id = self.store.next_session_id()?;
        let slaves = suite.machines.clone();
        let mut record = new_record(id, &suite, &plan, trigger, slaves.clone());
        record.commit = commit;
        info!(session = id, suite = %suite.name, trigger = ?record.trigger, "session created");
        self.save_durably(&record);
        let mut resources = slaves;
        if let Some(cluster) = &cluster {
            resources.push(format!("cluster:{}", cluster.name));
        }
        self.queue().waiting.push_back(Queued { id, suite, plan, cluster, resources });
        self.start_what_can_run();
        Ok(id)
    }

    /// Starts, in FIFO order, every queued session whose slaves are free and not wanted by
    /// an earlier queued session.
    fn start_what_can_run(self: &Arc<Self>) {
        let mut to_start = Vec::new();
        {
            let mut queue = self.queue();
            for queued in queue.take_runnable() {
                let (cancel_tx, cancel_rx) = watch::channel(None);
                queue.running.insert(queued.id, (cancel_tx, queued.suite.name.clone()));
                queue.running_dirs.insert(queued.id, queued.suite.dir.clone());
                to_start.push((queued, cancel_rx));
            }
        }
        for (queued, cancel) in to_start {
            let master = self.clone();
            tokio::spawn(async move {
                let held =
                    run_session(master.clone(), queued.id, queued.suite, queued.plan, queued.cluster, cancel).await;
                let kept = held.as_ref().map(|held| cluster_resource(&held.name));
                master.release(queued.id, &queued.resources, kept.as_deref());
                if let (Some(held), Some(kept)) = (held, kept) {
                    // Sessions that need the cluster wait in the queue until it has stopped.
                    watch_hold(&*master, held).await;
                    master.queue().free(&kept);
                    master.start_what_can_run();
                }
            });
        }
    }

    fn release(self: &Arc<Self>, id: SessionId, resources: &[String], kept: Option<&str>) {
        self.queue().release(id, resources, kept);
        self.start_what_can_run();
    }

    /// Cancels a queued or running session. A running one kills its current stage, runs
    /// suite finalize for cleanup, and ends `cancelled`.
    pub fn cancel(&self, id: SessionId, reason: &str) -> Result<(), CancelError> {
        let mut queue = self.queue();
        if let Some((cancel, _)) = queue.running.get(&id) {
            request_stop(cancel, StopRequest::cancel(reason));
            return Ok(());
        }
        if let Some(position) = queue.waiting.iter().position(|q| q.id == id) {
            let queued = queue.waiting.remove(position);
            drop(queue);
            if let Some(mut record) = self.store.session(id)? {
                record.state = SessionState::Cancelled;
                record.reason = Some(reason.to_string());
                record.ended_ms = Some(now_ms());
                for case in &mut record.cases {
                    case.state = CaseState::NotRun;
                }
                self.save_durably(&record);
                if let Some(queued) = queued {
                    self.session_ended(&queued.suite, &record);
                }
            }
            return Ok(());
        }
        match self.store.session(id)? {
            Some(_) => Err(CancelError::Finished(id)),
            None => Err(CancelError::Unknown(id)),
        }
    }

    /// Cancels every running session (the master is stopping).
    pub fn cancel_all(&self, reason: &str) {
        let queue = self.queue();
        for (cancel, _) in queue.running.values() {
            request_stop(cancel, StopRequest::cancel(reason));
        }
    }

    /// Fails a running session: it skips what is left but suite finalize and ends `failed`
    /// with `reason` (its cluster's hypervisor went away).
    pub fn abort(&self, id: SessionId, reason: &str) {
        if let Some((cancel, _)) = self.queue().running.get(&id) {
            request_stop(cancel, StopRequest::abort(reason));
        }
    }

    /// The store refused what `slave` sent for `stage_id` (its disk is full, or it failed):
    /// the rest of that stage's output is dropped and the slave's session fails, saying why.
    pub fn store_refused(&self, stage_id: StageId, slave: &str, err: &StoreError) {
        self.peers.refuse_output(stage_id);
        error!(slave, stage_id, disk_full = err.is_disk_full(), error = %err, "the store refused a stage's output");
        if let Some(id) = self.peers.session_of(slave) {
            self.abort(id, &format!("what {slave} sent for stage {stage_id} could not be stored: {err}"));
        }
    }

    /// A hypervisor's connection ended: its clusters are in error, their sessions fail.
    pub fn hypervisor_disconnected(&self, name: &str) {
        for (cluster, session) in self.clusters.hypervisor_gone(name) {
            warn!(hypervisor = name, cluster = %cluster, session = ?session, "hypervisor left with a cluster");
            if let Some(id) = session {
                self.abort(id, &format!("hypervisor {name} disconnected while running cluster `{cluster}`"));
            }
        }
    }

    /// An operator approves a peer waiting to enroll.
    pub fn approve_peer(&self, name: &str) -> Result<(), crate::peer_auth::ApprovalError> {
        self.auth.approve(name)
    }

    /// An operator revokes a peer: its certificate is refused from now on and its connection,
    /// if any, drops at once.
    pub fn revoke_peer(&self, name: &str) -> Result<(), crate::peer_auth::ApprovalError> {
        self.auth.revoke(name)?;
        if self.peers.close(name) {
            info!(peer = name, "connection of a revoked peer dropped");
        }
        Ok(())
    }

    /// How clusters are started and stopped, for sessions and by hand alike.
    pub fn cluster_control(&self) -> ClusterControl<'_> {
        ClusterControl {
            board: &self.clusters,
            peers: &self.peers,
            auth: &self.auth,
            master_address: self.config.clusters.master_address,
            master_port: self.config.listen.port(),
        }
    }

    /// Starts a cluster by hand (XrdTest's activateCluster); it stays until stopped by hand.
    /// Returns the hypervisor it was sent to; the states follow on the cluster board.
    pub async fn start_cluster_by_hand(&self, name: &str) -> Result<String, ClusterCommandError> {
        let cluster = self
            .definitions()
            .repository
            .clusters
            .get(name)
            .cloned()
            .ok_or_else(|| ClusterCommandError::Unknown(name.to_string()))?;
        let sent = self.cluster_control().start(&cluster, ClusterOwner::Manual, "manual".into()).await.map_err(
            |err| match err {
                StartError::Reserve(reserve) => ClusterCommandError::Reserve(reserve),
                not_sent @ StartError::NotSent { .. } => ClusterCommandError::Send(not_sent.to_string()),
            },
        )?;
        info!(cluster = name, hypervisor = %sent.hypervisor, "cluster started by hand");
        Ok(sent.hypervisor)
    }

    /// Stops a cluster by hand: one started by hand, or one held after its session failed
    /// (the hold ends now). A cluster a session uses is refused: cancel the session.
    pub async fn stop_cluster_by_hand(&self, name: &str) -> Result<String, ClusterCommandError> {
        // Checked and marked under one lock: no session can take the cluster in between.
        let claim = self.clusters.claim_stop(name).map_err(|refusal| match refusal {
            StopRefusal::NotRunning => ClusterCommandError::NotRunning(name.to_string()),
            StopRefusal::InUse(id) => ClusterCommandError::InUse(name.to_string(), id),
        })?;
        let hypervisor = claim.hypervisor;
        let note = match claim.ended_hold_of {
            Some(id) => format!("stop sent to {hypervisor} by hand, ending the hold after session {id}"),
            None => format!("stop sent to {hypervisor} by hand"),
        };
        if !self.cluster_control().stop(name, &hypervisor, &note).await {
            let reason = format!("hypervisor {hypervisor} is not connected");
            self.clusters.mark(name, xrdtest_proto::ClusterState::ErrorStop, &reason);
            return Err(ClusterCommandError::Send(reason));
        }
        info!(cluster = name, hypervisor = %hypervisor, session = ?claim.ended_hold_of, "cluster stopped by hand");
        Ok(hypervisor)
    }

    pub fn running_sessions(&self) -> usize {
        self.queue().running.len()
    }

    /// Sessions waiting in the queue for their slaves or cluster.
    pub fn queued_sessions(&self) -> usize {
        self.queue().waiting.len()
    }
}

impl SessionHost for Master {
    fn config(&self) -> &MasterConfig {
        &self.config
    }

    fn store(&self) -> &Store {
        &self.store
    }

    fn peers(&self) -> &Peers {
        &self.peers
    }

    fn clusters(&self) -> &ClusterBoard {
        &self.clusters
    }

    fn cluster_control(&self) -> ClusterControl<'_> {
        Master::cluster_control(self)
    }

    fn base_tags(&self) -> BTreeMap<String, String> {
        Master::base_tags(self)
    }

    fn save(&self, record: &SessionRecord) {
        Master::save(self, record)
    }

    fn save_durably(&self, record: &SessionRecord) {
        Master::save_durably(self, record)
    }

    fn session_ended(&self, suite: &Suite, record: &SessionRecord) {
        Master::session_ended(self, suite, record)
    }
}

/// Asks a running session to stop. Only the first request counts: a session already
/// stopping keeps its reason, and its suite finalize (the cleanup) is not killed.
fn request_stop(cancel: &watch::Sender<Option<StopRequest>>, request: StopRequest) {
    cancel.send_if_modified(|current| {
        if current.is_some() {
            return false;
        }
        *current = Some(request);
        true
    });
}

/// A new session record with the plan's first stages and cases pending.
fn new_record(id: SessionId, suite: &Suite, plan: &Plan, trigger: Trigger, slaves: Vec<String>) -> SessionRecord {
    let (steps, cases) = plan.initial();
    let stages = steps.iter().map(|step| plan.stage_record(step, &slaves)).collect();
    SessionRecord {
        definition_hash: crate::session::definition_hash(suite, plan),
        cases,
        stages,
        cluster: suite.cluster.as_deref().map(new_run),
        options: plan.options.clone(),
        ..SessionRecord::queued(id, &suite.name, trigger, slaves, now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(id: SessionId, resources: &[&str]) -> Queued {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../suites");
        let report = xrdtest_defs::load_repository(&dir, &dir.join("../clusters"));
        let suite = report.repository.suites["ts_demo"].clone();
        let plan = Plan::new(&suite, &default_options(&suite), &BTreeMap::new()).unwrap();
        Queued { id, suite, plan, cluster: None, resources: resources.iter().map(|r| r.to_string()).collect() }
    }

    fn ids(sessions: &[Queued]) -> Vec<SessionId> {
        sessions.iter().map(|q| q.id).collect()
    }

    #[test]
    fn sessions_on_disjoint_slaves_run_together_and_an_earlier_one_is_never_overtaken() {
        let mut queue = Queue::default();
        queue.waiting.extend([
            queued(1, &["a", "b"]),
            queued(2, &["c"]),
            queued(3, &["b", "d"]),
            // d is wanted by 3, which waits for b: 4 must not take d before it.
            queued(4, &["d"]),
            queued(5, &["e"]),
        ]);
        assert_eq!(ids(&queue.take_runnable()), [1, 2, 5]);
        assert_eq!(queue.waiting.iter().map(|q| q.id).collect::<Vec<_>>(), [3, 4]);
        assert!(queue.take_runnable().is_empty(), "nothing freed yet");
        for freed in ["a", "b"] {
            queue.busy.remove(freed);
        }
        assert_eq!(ids(&queue.take_runnable()), [3]);
        queue.busy.remove("d");
        queue.busy.remove("b");
        assert_eq!(ids(&queue.take_runnable()), [4]);
        assert!(queue.waiting.is_empty());
    }

    #[test]
    fn a_held_cluster_stays_taken_after_its_session_and_its_slaves_are_free() {
        let mut queue = Queue::default();
        let pair = cluster_resource("pair");
        queue.waiting.extend([queued(1, &["h1", &pair])]);
        assert_eq!(ids(&queue.take_runnable()), [1]);
        queue.waiting.extend([queued(2, &["h1", &pair]), queued(3, &["h1"])]);
        queue.release(1, &["h1".to_string(), pair.clone()], Some(&pair));
        // 2 waits for the held cluster; 3 may not overtake it for h1 either.
        assert!(queue.take_runnable().is_empty());
        assert!(queue.busy.contains(&pair) && !queue.busy.contains("h1"));
        queue.free(&pair);
        assert_eq!(ids(&queue.take_runnable()), [2]);
        queue.release(2, &["h1".to_string(), pair.clone()], None);
        assert!(queue.busy.is_empty());
        assert_eq!(ids(&queue.take_runnable()), [3]);
    }

    #[test]
    fn a_cluster_is_a_resource_two_sessions_never_share() {
        let mut queue = Queue::default();
        queue.waiting.extend([queued(1, &["h1.x", "cluster:c"]), queued(2, &["cluster:c"])]);
        assert_eq!(ids(&queue.take_runnable()), [1]);
        queue.busy.clear();
        assert_eq!(ids(&queue.take_runnable()), [2]);
    }
}
