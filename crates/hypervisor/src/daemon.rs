//! The hypervisor's side of the protocol: the connection to the master, capacity, and the
//! dispatch of `StartCluster` / `StopCluster` to the lifecycle.
//!
//! Clusters outlive connections: a network blip must not kill a running session's VMs.
//! While the link is down, state changes are not sent; every (re)connect begins with a
//! `HypervisorState` holding the latest state of every cluster, so the master catches up.
//!
//! Operations on one cluster queue up: one at a time, in arrival order, so a
//! `StopCluster` that arrives while the cluster is still starting waits for the start to
//! finish and then stops it. Different clusters start and stop concurrently.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};
use xrdtest_defs::units::format_size;
use xrdtest_defs::Cluster;
use xrdtest_proto::client::{Backoff, ConnectError, ConnectSettings, MasterConnection};
use xrdtest_proto::{
    ClusterState, ClusterStatus, Connection, FromMaster, Heartbeat, HypervisorStatus, Role, StartCluster, ToMaster,
};

use crate::config::HypervisorConfig;
use crate::libvirt::Libvirt;
use crate::lifecycle::{self, Settings};

/// The link is dropped when nothing was heard for this many heartbeat intervals.
const SILENT_INTERVALS: u32 = 6;

/// One cluster this hypervisor runs (or ran and failed).
#[derive(Debug, Clone)]
struct ClusterEntry {
    state: ClusterState,
    detail: String,
    /// VMs and memory held for the cluster, from the accepted start until it is stopped or
    /// its start failed. Held from the start (not from when domains run) so that two starts
    /// arriving together cannot both fit into the same room.
    vms: u32,
    memory_bytes: u64,
    /// Its warm state, once the start succeeded ([`Warm`]).
    warm: Warm,
}

/// A running cluster's warm state.
#[derive(Debug, Clone, Default)]
enum Warm {
    /// Nothing to do: warm clusters off, saved already, or restored and confirmed.
    #[default]
    Nothing,
    /// Booted cold: a `SaveCluster` saves it (its definition and the fingerprint its state
    /// must carry).
    ToSave(Cluster, String),
    /// Restored from its saved state, not yet confirmed: a `SaveCluster` (sent once every
    /// slave is connected) confirms that the restore worked. A cluster stopped before that
    /// loses its state, so that a restore whose slaves never came back is not tried again.
    Restored(Cluster),
}

#[derive(Default)]
struct State {
    clusters: BTreeMap<String, ClusterEntry>,
    /// The live connection's outgoing queue, while there is one.
    link: Option<mpsc::UnboundedSender<ToMaster>>,
}

/// The daemon: its configuration, its clusters and its link to the master.
pub struct Hypervisor {
    config: HypervisorConfig,
    settings: Settings,
    state: Mutex<State>,
    /// Per cluster, the end of its latest operation: the next one waits for it, so that
    /// operations on one cluster run one at a time in the order they arrived.
    last_operation: Mutex<BTreeMap<String, oneshot::Receiver<()>>>,
    /// Cleared at shutdown: new starts are refused from then on.
    accepting: AtomicBool,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// States in which a cluster is being made or runs: a repeated start is answered with the
/// current state instead of starting it twice.
fn is_starting_or_active(state: ClusterState) -> bool {
    matches!(
        state,
        ClusterState::Starting
            | ClusterState::CreatingNetwork
            | ClusterState::CopyingImages
            | ClusterState::AttachingDisks
            | ClusterState::CreatingSlaves
            | ClusterState::Active
            | ClusterState::Saving
    )
}

impl Hypervisor {
    pub fn new(config: HypervisorConfig, settings: Settings) -> Arc<Hypervisor> {
        Arc::new(Hypervisor {
            config,
            settings,
            state: Mutex::new(State::default()),
            last_operation: Mutex::new(BTreeMap::new()),
            accepting: AtomicBool::new(true),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the cluster's next place in line, at once (not when a task first runs, which
    /// would let a stop overtake the start sent just before it): returns the end of the
    /// operation before, to wait for, and this operation's own end, to signal (dropping it
    /// signals too, so a crashed operation never blocks the next).
    fn enqueue(&self, cluster: &str) -> (Option<oneshot::Receiver<()>>, oneshot::Sender<()>) {
        let (done, end) = oneshot::channel();
        let mut last = self.last_operation.lock().unwrap_or_else(|p| p.into_inner());
        (last.insert(cluster.to_string(), end), done)
    }

    /// Capacity, use and clusters, as sent in `HypervisorState`.
    pub fn status(&self) -> HypervisorStatus {
        status_of(&self.state(), &self.config, self.settings.domain_type.as_str())
    }

    /// Serves the master, reconnecting with capped backoff, until `shutdown` turns true;
    /// then refuses new starts, stops every cluster it runs, says goodbye and returns.
    pub async fn run(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let (link_stop_tx, link_stop_rx) = watch::channel(false);
        let link = tokio::spawn(self.clone().link_loop(link_stop_rx));
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        info!("shutting down: stopping every cluster");
        self.accepting.store(false, Ordering::SeqCst);
        self.stop_all().await;
        let _ = link_stop_tx.send(true);
        let _ = link.await;
        info!("hypervisor stopped");
    }

    /// Stops every cluster it knows that is not stopped, and waits for all.
    async fn stop_all(self: &Arc<Self>) {
        let clusters: Vec<String> = self.state().clusters.keys().cloned().collect();
        let stops: Vec<JoinHandle<()>> = clusters.into_iter().map(|cluster| self.stop(cluster)).collect();
        for stop in stops {
            let _ = stop.await;
        }
    }

    async fn link_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(self.config.max_backoff);
        loop {
            if *stop.borrow() {
                return;
            }
            match self.connect().await {
                Ok((conn, heartbeat)) => {
                    backoff.reset();
                    info!(master = %self.config.master, name = %self.config.name, "connected to the master");
                    let reason = self.serve(conn, heartbeat, &mut stop).await;
                    self.state().link = None;
                    info!(%reason, "connection to the master ended");
                }
                Err(ConnectError::Refused(reason)) => {
                    warn!(master = %self.config.master, %reason, "the master refused this hypervisor");
                }
                Err(ConnectError::Other(reason)) => {
                    warn!(master = %self.config.master, %reason, retry_in = ?backoff.current(), "cannot reach the master");
                }
            }
            if !backoff.wait(&mut stop).await {
                return;
            }
        }
    }

    async fn connect(&self) -> Result<(MasterConnection, Duration), ConnectError> {
        xrdtest_proto::client::connect(&ConnectSettings {
            master: self.config.master.clone(),
            role: Role::Hypervisor,
            name: self.config.name.clone(),
            secret: self.config.secret.clone(),
            identity: Some(self.config.identity.clone()),
            ca_file: self.config.ca_file.clone(),
            tls_server_name: self.config.tls_server_name.clone(),
            max_frame_bytes: self.config.max_frame_bytes,
        })
        .await
    }

    /// Serves one connection until it ends; returns why it ended.
    async fn serve<S>(
        self: &Arc<Self>,
        mut conn: Connection<S>,
        heartbeat: Duration,
        stop: &mut watch::Receiver<bool>,
    ) -> String
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<ToMaster>();
        {
            // The status goes first into the queue, under the lock, so that every change
            // after it follows it on the wire.
            let mut state = self.state();
            let status = status_of(&state, &self.config, self.settings.domain_type.as_str());
            let _ = tx.send(ToMaster::HypervisorState(status));
            state.link = Some(tx);
        }
        let mut ticker = tokio::time::interval(heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = tokio::time::Instant::now();
        let mut seq = 0;
        loop {
            tokio::select! {
                incoming = conn.recv::<FromMaster>() => match incoming {
                    Ok(Some(message)) => {
                        last_heard = tokio::time::Instant::now();
                        if let Some(reason) = self.handle(message) {
                            return reason;
                        }
                    }
                    Ok(None) => return "closed by the master".into(),
                    Err(err) => return format!("bad frame from the master: {err}"),
                },
                Some(message) = rx.recv() => {
                    if let Err(err) = conn.send(&message).await {
                        return format!("send: {err}");
                    }
                }
                _ = ticker.tick() => {
                    if last_heard.elapsed() > heartbeat * SILENT_INTERVALS {
                        return format!("nothing heard from the master for {:?}", last_heard.elapsed());
                    }
                    seq += 1;
                    let beat = ToMaster::Heartbeat(Heartbeat { seq, sent_unix_ms: unix_ms() });
                    if let Err(err) = conn.send(&beat).await {
                        return format!("send: {err}");
                    }
                }
                _ = stop.changed() => {
                    // The clusters' last states are queued already: send them, then leave.
                    self.state().link = None;
                    while let Ok(message) = rx.try_recv() {
                        let _ = conn.send(&message).await;
                    }
                    let reason = "hypervisor shutting down".to_string();
                    let _ = conn.send(&ToMaster::Disconnect { reason: reason.clone() }).await;
                    return reason;
                }
            }
        }
    }

    /// Handles one message from the master; `Some(reason)` ends the connection.
    pub fn handle(self: &Arc<Self>, message: FromMaster) -> Option<String> {
        match message {
            FromMaster::StartCluster(request) => self.start(request),
            FromMaster::StopCluster { cluster } => {
                self.stop(cluster);
            }
            FromMaster::SaveCluster { cluster } => {
                self.save(cluster);
            }
            FromMaster::Heartbeat(_) => {}
            FromMaster::Disconnect { reason } => return Some(format!("the master disconnected us: {reason}")),
            FromMaster::RunStage(_)
            | FromMaster::CancelStage { .. }
            | FromMaster::TagReply { .. }
            | FromMaster::ResumeStage { .. }
            | FromMaster::SyncReply { .. }
            | FromMaster::ApplyFault(_)
            | FromMaster::HealFault { .. }
            | FromMaster::EndSession { .. } => {
                warn!("the master sent a slave's message to a hypervisor; ignored");
            }
        }
        None
    }

    /// Queues a message on the link; dropped when there is none (the next connection's
    /// `HypervisorState` carries the latest states).
    fn send(&self, state: &State, message: ToMaster) {
        if let Some(link) = &state.link {
            let _ = link.send(message);
        }
    }

    /// Records a cluster's new state and tells the master (the state, then the capacity).
    fn set_state(&self, cluster: &str, new_state: ClusterState, detail: String) {
        info!(cluster, state = ?new_state, %detail, "cluster state");
        let mut state = self.state();
        let held = state.clusters.contains_key(cluster);
        if !held && matches!(new_state, ClusterState::Destroying | ClusterState::Stopped | ClusterState::ErrorStop) {
            // The stop of a cluster this daemon does not hold (an orphan the master asked
            // about, or one already gone): answered, but not listed as one of ours, so the
            // master is not asked again and again to stop it.
            self.send(
                &state,
                ToMaster::ClusterState(ClusterStatus { cluster: cluster.to_string(), state: new_state, detail }),
            );
            return;
        }
        let entry = state.clusters.entry(cluster.to_string()).or_insert_with(|| ClusterEntry {
            state: new_state,
            detail: String::new(),
            vms: 0,
            memory_bytes: 0,
            warm: Warm::Nothing,
        });
        entry.state = new_state;
        entry.detail = detail.clone();
        match new_state {
            // A failed start removed everything it made: nothing is held any more.
            ClusterState::ErrorStart => {
                entry.vms = 0;
                entry.memory_bytes = 0;
            }
            // A stopped cluster is simply gone from the list.
            ClusterState::Stopped => {
                state.clusters.remove(cluster);
            }
            // ErrorStop keeps the hold: VMs may be left running until a later stop works.
            _ => {}
        }
        self.send(
            &state,
            ToMaster::ClusterState(ClusterStatus { cluster: cluster.to_string(), state: new_state, detail }),
        );
        self.send_capacity(&state);
    }

    /// Sends the capacity and the clusters held (`HypervisorState`).
    fn send_capacity(&self, state: &State) {
        let status = status_of(state, &self.config, self.settings.domain_type.as_str());
        self.send(state, ToMaster::HypervisorState(status));
    }

    /// Accepts or refuses a start; an accepted one runs in the background.
    fn start(self: &Arc<Self>, request: StartCluster) {
        let name = request.cluster.name.clone();
        let vms = request.cluster.hosts.len() as u32;
        let memory_bytes: u64 = request.cluster.hosts.iter().map(|h| h.ram_bytes).sum();
        {
            let mut state = self.state();
            let refusal = if !self.accepting.load(Ordering::SeqCst) {
                Some("the hypervisor is shutting down".to_string())
            } else if let Some(entry) = state.clusters.get(&name).filter(|e| is_starting_or_active(e.state)) {
                // Already starting or running: say where it is rather than start it twice.
                let status = ClusterStatus { cluster: name.clone(), state: entry.state, detail: entry.detail.clone() };
                info!(cluster = %name, "start of a cluster that is already starting or running; state re-sent");
                self.send(&state, ToMaster::ClusterState(status));
                self.send_capacity(&state);
                return;
            } else if state.clusters.get(&name).is_some_and(|e| e.state == ClusterState::Destroying) {
                Some("the cluster is being stopped here; start it again once it has stopped".to_string())
            } else {
                self.room_for(&state, &name, vms, memory_bytes).err()
            };
            if let Some(reason) = refusal {
                warn!(cluster = %name, %reason, "start refused");
                // Not recorded: a refused start changes nothing here.
                self.send(
                    &state,
                    ToMaster::ClusterState(ClusterStatus {
                        cluster: name,
                        state: ClusterState::ErrorStart,
                        detail: reason,
                    }),
                );
                // The master counted this cluster in when it chose us: the real figures.
                self.send_capacity(&state);
                return;
            }
            state.clusters.insert(
                name.clone(),
                ClusterEntry {
                    state: ClusterState::Starting,
                    detail: String::new(),
                    vms,
                    memory_bytes,
                    warm: Warm::Nothing,
                },
            );
        }
        self.set_state(&name, ClusterState::Starting, format!("accepted ({} requested it)", request.requested_by));
        self.queued(name, "start", ClusterState::ErrorStart, "", move |libvirt, worker| {
            let report = |state, detail| worker.set_state(&request.cluster.name, state, detail);
            if let Ok(started) = lifecycle::start_cluster(libvirt, &worker.settings, &request, report) {
                let warm = match (started.warm_key, started.restored) {
                    (_, true) => Warm::Restored(request.cluster.clone()),
                    (Some(key), false) => Warm::ToSave(request.cluster.clone(), key),
                    (None, false) => Warm::Nothing,
                };
                if let Some(entry) = worker.state().clusters.get_mut(&request.cluster.name) {
                    entry.warm = warm;
                }
            }
        });
    }

    /// Whether `vms` more VMs and `memory_bytes` more memory fit, counting every other
    /// cluster's hold; `Err` says why not.
    fn room_for(&self, state: &State, cluster: &str, vms: u32, memory_bytes: u64) -> Result<(), String> {
        let others = state.clusters.iter().filter(|(name, _)| name.as_str() != cluster).map(|(_, e)| e);
        let (used_vms, used_memory) = others.fold((0u32, 0u64), |(v, m), e| (v + e.vms, m + e.memory_bytes));
        let free_vms = self.config.vm_limit.saturating_sub(used_vms);
        let free_memory = self.config.memory_limit_bytes.saturating_sub(used_memory);
        if vms > free_vms || memory_bytes > free_memory {
            return Err(format!(
                "not enough room on hypervisor {}: the cluster needs {vms} VMs and {} of memory, {free_vms} VMs and {} \
                 are free (limits: {} VMs, {})",
                self.config.name,
                format_size(memory_bytes),
                format_size(free_memory),
                self.config.vm_limit,
                format_size(self.config.memory_limit_bytes),
            ));
        }
        Ok(())
    }

    /// Saves a running cluster's warm state in the background, after any operation on it
    /// that is under way; answers `Active` at once when there is nothing to save (warm
    /// clusters off, restored from its state, saved already, not running here).
    fn save(self: &Arc<Self>, cluster: String) {
        let (definition, key) = {
            let mut state = self.state();
            let (current, job) = match state.clusters.get_mut(&cluster) {
                Some(entry) if entry.state == ClusterState::Active => {
                    // Taken either way: a restore is confirmed now, a cold start saved once.
                    let job = match std::mem::take(&mut entry.warm) {
                        Warm::ToSave(definition, key) => Some((definition, key)),
                        Warm::Restored(_) | Warm::Nothing => None,
                    };
                    (entry.state, job)
                }
                Some(entry) => (entry.state, None),
                None => (ClusterState::Stopped, None),
            };
            match job {
                Some(job) => job,
                None => {
                    let detail = match current {
                        ClusterState::Active => "nothing to save: warm clusters are off here, the VMs were \
                             restored from their warm state, or it is saved already"
                            .to_string(),
                        ClusterState::Stopped => "not saved: the cluster is not running here".to_string(),
                        other => format!("not saved: the cluster is {other:?} here"),
                    };
                    self.send(&state, ToMaster::ClusterState(ClusterStatus { cluster, state: current, detail }));
                    return;
                }
            }
        };
        let name = cluster.clone();
        self.queued(cluster, "save", ClusterState::Active, "the warm state was not saved: ", move |libvirt, worker| {
            // An operation queued before this one (a stop) may have ended the cluster.
            let active = worker.state().clusters.get(&name).is_some_and(|e| e.state == ClusterState::Active);
            if !active {
                info!(cluster = %name, "the cluster is no longer active here: its warm state is not saved");
                return;
            }
            let report = |state, detail| worker.set_state(&name, state, detail);
            let _ = lifecycle::save_cluster(libvirt, &worker.settings, &definition, &key, report);
        });
    }

    /// Stops a cluster in the background, after any operation on it that is under way.
    fn stop(self: &Arc<Self>, cluster: String) -> JoinHandle<()> {
        let name = cluster.clone();
        self.queued(cluster, "stop", ClusterState::ErrorStop, "", move |libvirt, worker| {
            let unconfirmed = match worker.state().clusters.get(&name).map(|e| &e.warm) {
                Some(Warm::Restored(cluster)) => Some(cluster.clone()),
                _ => None,
            };
            if let Some(state) = unconfirmed.and_then(|c| lifecycle::warm_state_of(libvirt, &worker.settings, &c)) {
                warn!(cluster = %name, step = "warm", "stopped before its restored slaves were all back: the warm state is dropped");
                let _ = state.drop_state();
            }
            let report = |state, detail| worker.set_state(&name, state, detail);
            let _ = lifecycle::stop_cluster(libvirt, &worker.settings, &name, report);
        })
    }

    /// Runs `job` (a lifecycle operation on `cluster`, which reports its own states) on a
    /// blocking thread with a libvirt connection, after any operation on the cluster under
    /// way. A failure the job never got to report (no connection, a crash) is reported as
    /// `failed_state`, its text after `prefix`.
    fn queued(
        self: &Arc<Self>,
        cluster: String,
        what: &'static str,
        failed_state: ClusterState,
        prefix: &'static str,
        job: impl FnOnce(&Libvirt, &Arc<Hypervisor>) + Send + 'static,
    ) -> JoinHandle<()> {
        let me = self.clone();
        let (previous, done) = self.enqueue(&cluster);
        tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            let worker = me.clone();
            let unreported = tokio::task::spawn_blocking(move || match Libvirt::open(&worker.config.libvirt_uri) {
                Ok(libvirt) => {
                    job(&libvirt, &worker);
                    None
                }
                Err(err) => Some(err.to_string()),
            })
            .await
            .unwrap_or_else(|join| Some(format!("the {what} crashed: {join}")));
            if let Some(message) = unreported {
                me.set_state(&cluster, failed_state, format!("{prefix}{message}"));
            }
            let _ = done.send(());
        })
    }
}

fn status_of(state: &State, config: &HypervisorConfig, domain_type: &str) -> HypervisorStatus {
    HypervisorStatus {
        domain_type: domain_type.to_string(),
        memory_limit_bytes: config.memory_limit_bytes,
        memory_used_bytes: state.clusters.values().map(|e| e.memory_bytes).sum(),
        vm_limit: config.vm_limit,
        vms_running: state.clusters.values().map(|e| e.vms).sum(),
        clusters: state
            .clusters
            .iter()
            .map(|(name, e)| ClusterStatus { cluster: name.clone(), state: e.state, detail: e.detail.clone() })
            .collect(),
    }
}
