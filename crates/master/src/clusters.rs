//! Clusters on hypervisors: which hypervisor runs which cluster and in what state, which
//! hypervisor has room for a new one, and the start and stop a session (or an operator)
//! drives. The hypervisors do the libvirt work; this is the master's bookkeeping.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::{sleep_until, Instant};
use xrdtest_defs::Cluster;
use xrdtest_proto::{ClusterState, ClusterStatus, FromMaster, GuestCredentials, HypervisorStatus, StartCluster};

use crate::model::{now_ms, ClusterStep, SessionId};

/// Steps kept per cluster for the API and the dashboard.
const HISTORY_KEPT: usize = 64;

/// Who a running cluster belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterOwner {
    /// Started by a session for itself; stopped when it ends.
    Session(SessionId),
    /// Started by hand; stays until stopped by hand.
    Manual,
}

/// What the master knows of one cluster it sent to a hypervisor.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterEntry {
    pub name: String,
    pub hypervisor: String,
    /// `creating_network`, `active`, `stopped`, `error_start`...
    pub state: &'static str,
    #[serde(skip)]
    pub raw_state: ClusterState,
    pub detail: String,
    pub owner: ClusterOwner,
    /// The session running on it now, if any (a manual cluster may host sessions).
    pub in_use_by: Option<SessionId>,
    pub since_ms: u64,
    pub updated_ms: u64,
    pub steps: Vec<ClusterStep>,
    /// A stop was sent: later reports of the start going on do not make it usable again.
    pub stop_requested: bool,
    /// Kept up after this session failed (`keep_on_failure`), so a person can look: no
    /// session uses it and `state` reads `held` until the hold ends.
    pub held_for: Option<SessionId>,
    /// When the hold ends (Unix ms) and the master stops the cluster.
    pub held_until_ms: Option<u64>,
}

impl ClusterEntry {
    /// Whether it is gone or broken: nothing runs there and a new start may replace it.
    pub fn is_over(&self) -> bool {
        matches!(self.raw_state, ClusterState::Stopped) || self.raw_state.is_error()
    }

    /// Whether a session may run on it now or once it is active: not over, no stop asked.
    pub fn is_usable(&self) -> bool {
        !self.is_over() && !self.stop_requested && is_live(self.raw_state) && self.held_for.is_none()
    }

    /// How long the hold has left at `now_ms` (0 once it is due); `None`: not held.
    pub fn held_left_ms(&self, now_ms: u64) -> Option<u64> {
        self.held_for.and(self.held_until_ms).map(|until| until.saturating_sub(now_ms))
    }
}

/// What the board says of a cluster's state: `held` while a hold lasts and the cluster is
/// up (or coming up), else the hypervisor's state.
fn shown_state(raw: ClusterState, held: bool) -> &'static str {
    if held && is_live(raw) {
        HELD
    } else {
        cluster_state_name(raw)
    }
}

/// The state name of a cluster kept up after its session failed.
pub const HELD: &str = "held";

/// A state in which the cluster exists or is being made (not stopping, stopped or broken).
pub fn is_live(state: ClusterState) -> bool {
    use ClusterState as C;
    matches!(
        state,
        C::Defined
            | C::DefinitionSent
            | C::Starting
            | C::CreatingNetwork
            | C::CopyingImages
            | C::AttachingDisks
            | C::CreatingSlaves
            | C::WaitingSlaves
            | C::Active
            | C::Saving
    )
}

/// A connected hypervisor and what it last reported.
#[derive(Debug, Clone, Serialize)]
pub struct HypervisorEntry {
    pub name: String,
    pub connected: bool,
    /// The master's address on this hypervisor's connection, if it is not a loopback one.
    pub master_ip: Option<IpAddr>,
    pub status: Option<HypervisorStatus>,
    pub updated_ms: u64,
}

impl HypervisorEntry {
    fn free_vms(&self) -> u32 {
        self.status.as_ref().map_or(0, |s| s.vm_limit.saturating_sub(s.vms_running))
    }

    fn free_memory(&self) -> u64 {
        self.status.as_ref().map_or(0, |s| s.memory_limit_bytes.saturating_sub(s.memory_used_bytes))
    }
}

/// A cluster changed state.
#[derive(Debug, Clone)]
pub struct ClusterEvent {
    pub cluster: String,
    pub state: ClusterState,
    pub detail: String,
}

#[derive(Default)]
struct Inner {
    hypervisors: BTreeMap<String, HypervisorEntry>,
    clusters: BTreeMap<String, ClusterEntry>,
}

/// The master's view of hypervisors and clusters. Locks are held for map updates only.
pub struct ClusterBoard {
    inner: Mutex<Inner>,
    events: broadcast::Sender<ClusterEvent>,
}

impl Default for ClusterBoard {
    fn default() -> Self {
        ClusterBoard { inner: Mutex::new(Inner::default()), events: broadcast::channel(1024).0 }
    }
}

/// Why a cluster cannot be stopped by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRefusal {
    NotRunning,
    InUse(SessionId),
}

/// A stop by hand that may go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopClaim {
    pub hypervisor: String,
    /// It was held after this session failed: the stop ends the hold early.
    pub ended_hold_of: Option<SessionId>,
}

/// Why a cluster cannot be held after its session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoldRefusal {
    #[error("the cluster is no longer on the board")]
    Gone,
    #[error("the cluster was not started by this session")]
    NotOwn,
    #[error("the cluster is {0}, not up")]
    NotUp(&'static str),
}

/// Why a cluster cannot be started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReserveError {
    #[error("cluster `{cluster}` is already {state} on {hypervisor}")]
    Busy { cluster: String, state: &'static str, hypervisor: String },
    #[error("no hypervisor is connected")]
    NoHypervisor,
    #[error("no connected hypervisor has room for cluster `{cluster}` ({vms} VMs, {memory_mib} MiB): {details}")]
    NoRoom { cluster: String, vms: usize, memory_mib: u64, details: String },
}

impl ClusterBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.events.subscribe()
    }

    pub fn cluster(&self, name: &str) -> Option<ClusterEntry> {
        self.lock().clusters.get(name).cloned()
    }

    pub fn clusters(&self) -> Vec<ClusterEntry> {
        self.lock().clusters.values().cloned().collect()
    }

    pub fn hypervisors(&self) -> Vec<HypervisorEntry> {
        self.lock().hypervisors.values().cloned().collect()
    }

    pub fn hypervisor_connected(&self, name: &str, master_ip: Option<IpAddr>) {
        let master_ip = master_ip.filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
        self.lock().hypervisors.insert(
            name.to_string(),
            HypervisorEntry { name: name.to_string(), connected: true, master_ip, status: None, updated_ms: now_ms() },
        );
    }

    /// Records a hypervisor's report. Returns the clusters it runs that the master does not
    /// know as running there (left from before a master restart, or stopped meanwhile):
    /// the caller asks the hypervisor to stop them.
    pub fn hypervisor_status(&self, name: &str, status: HypervisorStatus) -> Vec<String> {
        let mut inner = self.lock();
        let unknown = status
            .clusters
            .iter()
            // Only clusters that exist or are being made: one that is stopping, stopped or
            // broken is not asked about again (that would answer with more reports).
            .filter(|c| is_live(c.state))
            .filter(|c| inner.clusters.get(&c.cluster).is_none_or(|e| e.hypervisor != name || e.is_over()))
            .map(|c| c.cluster.clone())
            .collect();
        if let Some(entry) = inner.hypervisors.get_mut(name) {
            entry.status = Some(status);
            entry.updated_ms = now_ms();
        }
        unknown
    }

    /// A hypervisor went away: every cluster it ran that is not over is now in error.
    /// Returns the sessions that were using them.
    pub fn hypervisor_gone(&self, name: &str) -> Vec<(String, Option<SessionId>)> {
        let detail = format!("hypervisor {name} disconnected");
        let mut affected = Vec::new();
        {
            let mut inner = self.lock();
            if let Some(entry) = inner.hypervisors.get_mut(name) {
                entry.connected = false;
                entry.updated_ms = now_ms();
            }
            for entry in inner.clusters.values_mut().filter(|e| e.hypervisor == name && !e.is_over()) {
                record_step(entry, ClusterState::Error, &detail);
                affected.push((entry.name.clone(), entry.in_use_by));
            }
        }
        for (cluster, _) in &affected {
            let _ = self.events.send(ClusterEvent {
                cluster: cluster.clone(),
                state: ClusterState::Error,
                detail: detail.clone(),
            });
        }
        affected
    }

    /// A state reported by `hypervisor` for one of its clusters. Reports about a cluster
    /// the master placed elsewhere are ignored.
    /// Records a state a hypervisor reports for a cluster; false (nothing recorded) when the
    /// board does not have the cluster on that hypervisor.
    pub fn cluster_status(&self, hypervisor: &str, status: &ClusterStatus) -> bool {
        {
            let mut inner = self.lock();
            let Some(entry) = inner.clusters.get_mut(&status.cluster) else { return false };
            if entry.hypervisor != hypervisor {
                return false;
            }
            record_step(entry, status.state, &status.detail);
        }
        let _ = self.events.send(ClusterEvent {
            cluster: status.cluster.clone(),
            state: status.state,
            detail: status.detail.clone(),
        });
        true
    }

    /// Picks a hypervisor for `cluster` and records the cluster as sent there. Returns the
    /// hypervisor's name and the master address for the cluster's network.
    pub fn reserve(&self, cluster: &Cluster, owner: ClusterOwner) -> Result<(String, Option<IpAddr>), ReserveError> {
        let mut inner = self.lock();
        // A held cluster stays until its hold ends, even broken: the master stops it then.
        if let Some(entry) = inner.clusters.get(&cluster.name).filter(|e| !e.is_over() || e.held_for.is_some()) {
            return Err(ReserveError::Busy {
                cluster: cluster.name.clone(),
                state: entry.state,
                hypervisor: entry.hypervisor.clone(),
            });
        }
        let vms = cluster.hosts.len();
        let memory: u64 = cluster.hosts.iter().map(|h| h.ram_bytes).sum();
        let connected: Vec<&HypervisorEntry> = inner.hypervisors.values().filter(|h| h.connected).collect();
        if connected.is_empty() {
            return Err(ReserveError::NoHypervisor);
        }
        let chosen = connected
            .iter()
            .filter(|h| h.free_vms() as usize >= vms && h.free_memory() >= memory)
            .max_by_key(|h| (h.free_memory(), std::cmp::Reverse(h.name.clone())))
            .map(|h| (h.name.clone(), h.master_ip));
        let Some((hypervisor, master_ip)) = chosen else {
            let details = connected
                .iter()
                .map(|h| match &h.status {
                    Some(_) => format!("{} has {} VMs and {} MiB free", h.name, h.free_vms(), h.free_memory() >> 20),
                    None => format!("{} has not reported its capacity yet", h.name),
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(ReserveError::NoRoom { cluster: cluster.name.clone(), vms, memory_mib: memory >> 20, details });
        };
        let now = now_ms();
        let mut entry = ClusterEntry {
            name: cluster.name.clone(),
            hypervisor: hypervisor.clone(),
            state: cluster_state_name(ClusterState::DefinitionSent),
            raw_state: ClusterState::DefinitionSent,
            detail: String::new(),
            owner,
            in_use_by: match owner {
                ClusterOwner::Session(id) => Some(id),
                ClusterOwner::Manual => None,
            },
            since_ms: now,
            updated_ms: now,
            steps: Vec::new(),
            stop_requested: false,
            held_for: None,
            held_until_ms: None,
        };
        record_step(&mut entry, ClusterState::DefinitionSent, &format!("sent to {hypervisor}"));
        // Capacity is counted now, so two clusters reserved at once do not both fit in one gap.
        if let Some(status) = inner.hypervisors.get_mut(&hypervisor).and_then(|h| h.status.as_mut()) {
            status.vms_running += vms as u32;
            status.memory_used_bytes += memory;
        }
        inner.clusters.insert(cluster.name.clone(), entry);
        Ok((hypervisor, master_ip))
    }

    /// For a stop by hand: refuses a cluster that is not running or that a session uses,
    /// else marks the stop as asked (so no session takes it any more), ends its hold if it
    /// is held, and returns its hypervisor.
    pub fn claim_stop(&self, cluster: &str) -> Result<StopClaim, StopRefusal> {
        let mut inner = self.lock();
        let entry = inner.clusters.get_mut(cluster).ok_or(StopRefusal::NotRunning)?;
        if let Some(id) = entry.in_use_by {
            return Err(StopRefusal::InUse(id));
        }
        if entry.raw_state == ClusterState::Stopped {
            return Err(StopRefusal::NotRunning);
        }
        entry.stop_requested = true;
        let ended_hold_of = take_hold(entry);
        Ok(StopClaim { hypervisor: entry.hypervisor.clone(), ended_hold_of })
    }

    /// Keeps the cluster session `id` started up after the session, until `until_ms`: no
    /// session uses it meanwhile and it shows as `held`. Refused unless the cluster is the
    /// session's own and up or coming up (a broken one is stopped as usual).
    pub fn hold(&self, cluster: &str, id: SessionId, until_ms: u64, detail: &str) -> Result<(), HoldRefusal> {
        let raw_state = {
            let mut inner = self.lock();
            let entry = inner.clusters.get_mut(cluster).ok_or(HoldRefusal::Gone)?;
            if entry.owner != ClusterOwner::Session(id) {
                return Err(HoldRefusal::NotOwn);
            }
            if !entry.is_usable() {
                return Err(HoldRefusal::NotUp(entry.state));
            }
            entry.in_use_by = None;
            entry.held_for = Some(id);
            entry.held_until_ms = Some(until_ms);
            push_named_step(entry, HELD, detail);
            entry.raw_state
        };
        // Live views redraw; the state itself has not changed on the hypervisor.
        let _ =
            self.events.send(ClusterEvent { cluster: cluster.to_string(), state: raw_state, detail: detail.into() });
        Ok(())
    }

    /// Ends the hold of session `id` on `cluster` (its time is up, or the cluster broke)
    /// and marks the stop as asked; returns the hypervisor to send the stop to. `None`: the
    /// hold had already ended (a stop by hand took it).
    pub fn end_hold(&self, cluster: &str, id: SessionId) -> Option<String> {
        let mut inner = self.lock();
        let entry = inner.clusters.get_mut(cluster)?;
        if entry.held_for != Some(id) {
            return None;
        }
        take_hold(entry);
        entry.stop_requested = true;
        Some(entry.hypervisor.clone())
    }

    /// Takes a cluster started by hand for session `id`, if it is usable and free: checked
    /// and taken under one lock, so a stop by hand cannot slip in between.
    pub fn lease_manual(&self, cluster: &str, id: SessionId) -> Option<ClusterEntry> {
        let mut inner = self.lock();
        let entry = inner.clusters.get_mut(cluster)?;
        if entry.owner != ClusterOwner::Manual || entry.in_use_by.is_some() || !entry.is_usable() {
            return None;
        }
        entry.in_use_by = Some(id);
        Some(entry.clone())
    }

    /// Marks a manual cluster as used by a session (or free again with `None`).
    pub fn set_in_use(&self, cluster: &str, session: Option<SessionId>) {
        if let Some(entry) = self.lock().clusters.get_mut(cluster) {
            entry.in_use_by = session;
        }
    }

    /// Records a state the master itself decided (a timeout, a failed send).
    pub fn mark(&self, cluster: &str, state: ClusterState, detail: &str) {
        {
            let mut inner = self.lock();
            let Some(entry) = inner.clusters.get_mut(cluster) else { return };
            if state == ClusterState::StopCommandSent {
                entry.stop_requested = true;
            }
            record_step(entry, state, detail);
        }
        let _ = self.events.send(ClusterEvent { cluster: cluster.to_string(), state, detail: detail.to_string() });
    }
}

fn record_step(entry: &mut ClusterEntry, state: ClusterState, detail: &str) {
    entry.raw_state = state;
    push_named_step(entry, cluster_state_name(state), detail);
    entry.state = shown_state(state, entry.held_for.is_some());
}

/// Adds a step named `name` to the history and makes it the entry's current detail.
fn push_named_step(entry: &mut ClusterEntry, name: &'static str, detail: &str) {
    let now = now_ms();
    entry.state = name;
    entry.detail = detail.to_string();
    entry.updated_ms = now;
    if entry.steps.len() >= HISTORY_KEPT {
        entry.steps.remove(0);
    }
    entry.steps.push(ClusterStep { unix_ms: now, state: name.to_string(), detail: detail.to_string() });
}

/// Clears a hold (the state shows the hypervisor's again); returns whose it was.
fn take_hold(entry: &mut ClusterEntry) -> Option<SessionId> {
    let held_for = entry.held_for.take();
    entry.held_until_ms = None;
    entry.state = shown_state(entry.raw_state, false);
    held_for
}

/// The `StartCluster` message for `cluster`.
pub fn start_message(
    cluster: &Cluster,
    master_ip: Option<IpAddr>,
    master_port: u16,
    requested_by: String,
    credentials: GuestCredentials,
) -> FromMaster {
    FromMaster::StartCluster(StartCluster {
        cluster: cluster.clone(),
        master_ip,
        master_port,
        requested_by,
        credentials,
    })
}

/// How waiting for a cluster state ended, when it did not reach the wanted one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitFailure {
    /// The cluster reached an error state (the detail says why).
    Error(String),
    TimedOut(String),
}

impl std::fmt::Display for WaitFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitFailure::Error(text) | WaitFailure::TimedOut(text) => f.write_str(text),
        }
    }
}

/// Waits until `cluster` reaches `wanted` (or an error state, or `timeout`), calling
/// `on_step` for every state on the way. Subscribe (`events`) before sending the command
/// that causes the states, so none is missed.
pub async fn wait_for_state(
    board: &ClusterBoard,
    events: &mut broadcast::Receiver<ClusterEvent>,
    cluster: &str,
    wanted: ClusterState,
    timeout: Duration,
    mut on_step: impl FnMut(&ClusterEvent),
) -> Result<(), WaitFailure> {
    let deadline = Instant::now() + timeout;
    // The state may already be there (a manual cluster, or a report that came first).
    if let Some(entry) = board.cluster(cluster) {
        if entry.raw_state == wanted {
            return Ok(());
        }
    }
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) if event.cluster == cluster => {
                    on_step(&event);
                    if event.state == wanted {
                        return Ok(());
                    }
                    if event.state.is_error() {
                        return Err(WaitFailure::Error(event.detail));
                    }
                    if wanted == ClusterState::Active && !is_live(event.state) {
                        return Err(WaitFailure::Error(format!("the cluster is being stopped ({})", event.detail)));
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Some(entry) = board.cluster(cluster) {
                        if entry.raw_state == wanted {
                            return Ok(());
                        }
                        if entry.raw_state.is_error() {
                            return Err(WaitFailure::Error(entry.detail));
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(WaitFailure::Error("the master is stopping".into()));
                }
            },
            _ = sleep_until(deadline) => {
                let state = board.cluster(cluster).map(|e| e.state).unwrap_or("unknown");
                return Err(WaitFailure::TimedOut(format!(
                    "cluster `{cluster}` did not become {} within {} (last state: {state})",
                    cluster_state_name(wanted),
                    xrdtest_defs::units::format_duration(timeout)
                )));
            }
        }
    }
}

/// The API's name of a cluster state.
pub fn cluster_state_name(state: ClusterState) -> &'static str {
    use ClusterState as C;
    match state {
        C::Defined => "defined",
        C::DefinitionSent => "definition_sent",
        C::Starting => "starting",
        C::CreatingNetwork => "creating_network",
        C::CreatingSlaves => "creating_slaves",
        C::CopyingImages => "copying_images",
        C::AttachingDisks => "attaching_disks",
        C::WaitingSlaves => "waiting_slaves",
        C::Active => "active",
        C::Saving => "saving",
        C::StopCommandSent => "stop_command_sent",
        C::Destroying => "destroying",
        C::Stopped => "stopped",
        C::ErrorStart => "error_start",
        C::ErrorStop => "error_stop",
        C::Error => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str, hosts: usize, ram_mib: u64) -> Cluster {
        let text = format!(
            "name = \"{name}\"\n[network]\nbridge = \"br_{name}\"\nip = \"10.1.0.1\"\nnetmask = \"255.255.255.0\"\n\
             dhcp_range = [\"10.1.0.100\", \"10.1.0.200\"]\n[defaults]\nkernel = \"/k\"\nram = \"{ram_mib}M\"\n{}",
            (0..hosts).map(|i| format!("[[hosts]]\nname = \"h{i}\"\nip = \"10.1.0.{}\"\n", 10 + i)).collect::<String>()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let folder = dir.path().join("clusters").join(name);
        std::fs::create_dir_all(&folder).expect("cluster folder");
        std::fs::write(folder.join("cluster.toml"), text).expect("cluster file");
        std::fs::create_dir_all(dir.path().join("suites")).expect("suites folder");
        let report = xrdtest_defs::load_repository(&dir.path().join("suites"), &dir.path().join("clusters"));
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        report.repository.clusters.get(name).cloned().expect("cluster loads")
    }

    fn status(vm_limit: u32, vms_running: u32, memory_limit_mib: u64, used_mib: u64) -> HypervisorStatus {
        HypervisorStatus {
            domain_type: "qemu".into(),
            memory_limit_bytes: memory_limit_mib << 20,
            memory_used_bytes: used_mib << 20,
            vm_limit,
            vms_running,
            clusters: Vec::new(),
        }
    }

    #[test]
    fn picks_the_hypervisor_with_room_and_most_free_memory() {
        let board = ClusterBoard::default();
        assert_eq!(board.reserve(&cluster("c1", 2, 256), ClusterOwner::Manual), Err(ReserveError::NoHypervisor));
        board.hypervisor_connected("small", Some("127.0.0.1".parse().unwrap()));
        board.hypervisor_connected("big", Some("192.0.2.7".parse().unwrap()));
        board.hypervisor_connected("full", None);
        board.hypervisor_status("small", status(4, 0, 1024, 0));
        board.hypervisor_status("big", status(4, 1, 4096, 1024));
        board.hypervisor_status("full", status(2, 2, 8192, 0));
        let (name, ip) = board.reserve(&cluster("c1", 2, 256), ClusterOwner::Session(7)).expect("room");
        assert_eq!(name, "big");
        assert_eq!(ip, Some("192.0.2.7".parse().unwrap()));
        // The reservation is counted: `big` now has 1 VM free, so 2 more go to `small`.
        let (name, ip) = board.reserve(&cluster("c2", 2, 256), ClusterOwner::Manual).expect("room");
        assert_eq!(name, "small");
        assert_eq!(ip, None, "a loopback address is no use inside a VM network");
        match board.reserve(&cluster("c3", 3, 256), ClusterOwner::Manual) {
            Err(ReserveError::NoRoom { details, .. }) => {
                assert!(details.contains("big has 1 VMs"), "{details}");
                assert!(details.contains("full has 0 VMs"), "{details}");
            }
            other => panic!("expected NoRoom, got {other:?}"),
        }
    }

    #[test]
    fn a_running_cluster_is_not_started_twice_but_an_ended_one_is() {
        let board = ClusterBoard::default();
        board.hypervisor_connected("hv", None);
        board.hypervisor_status("hv", status(16, 0, 16384, 0));
        let c = cluster("c1", 1, 128);
        board.reserve(&c, ClusterOwner::Manual).expect("first start");
        assert!(matches!(board.reserve(&c, ClusterOwner::Manual), Err(ReserveError::Busy { .. })));
        board.cluster_status(
            "hv",
            &ClusterStatus { cluster: "c1".into(), state: ClusterState::ErrorStart, detail: "no image".into() },
        );
        board.reserve(&c, ClusterOwner::Manual).expect("an errored cluster may be started again");
    }

    #[test]
    fn reports_from_the_wrong_hypervisor_are_ignored_and_unknown_clusters_are_returned() {
        let board = ClusterBoard::default();
        board.hypervisor_connected("hv1", None);
        board.hypervisor_connected("hv2", None);
        board.hypervisor_status("hv1", status(16, 0, 16384, 0));
        board.reserve(&cluster("c1", 1, 128), ClusterOwner::Manual).expect("start");
        board.cluster_status(
            "hv2",
            &ClusterStatus { cluster: "c1".into(), state: ClusterState::Active, detail: String::new() },
        );
        assert_eq!(board.cluster("c1").unwrap().state, "definition_sent");
        let mut report = status(16, 2, 16384, 256);
        report.clusters = vec![
            ClusterStatus { cluster: "c1".into(), state: ClusterState::Active, detail: String::new() },
            ClusterStatus { cluster: "old".into(), state: ClusterState::Active, detail: String::new() },
        ];
        assert_eq!(board.hypervisor_status("hv1", report), vec!["old".to_string()]);
    }

    #[test]
    fn a_cluster_being_stopped_by_hand_is_not_leased_and_a_leased_one_is_not_stopped() {
        let board = ClusterBoard::default();
        board.hypervisor_connected("hv", None);
        board.hypervisor_status("hv", status(16, 0, 16384, 0));
        board.reserve(&cluster("c1", 1, 128), ClusterOwner::Manual).expect("start");
        let active = ClusterStatus { cluster: "c1".into(), state: ClusterState::Active, detail: String::new() };
        board.cluster_status("hv", &active);
        assert!(board.lease_manual("c1", 5).is_some());
        assert_eq!(board.lease_manual("c1", 6).map(|e| e.name), None, "one session at a time");
        assert_eq!(board.claim_stop("c1"), Err(StopRefusal::InUse(5)));
        board.set_in_use("c1", None);
        assert_eq!(board.claim_stop("c1"), Ok(StopClaim { hypervisor: "hv".into(), ended_hold_of: None }));
        // The start's late report of `active` does not make it usable again.
        board.cluster_status("hv", &active);
        assert!(board.lease_manual("c1", 7).is_none());
        assert_eq!(board.claim_stop("nope"), Err(StopRefusal::NotRunning));
    }

    fn active(board: &ClusterBoard, name: &str) {
        board.cluster_status(
            "hv",
            &ClusterStatus { cluster: name.into(), state: ClusterState::Active, detail: String::new() },
        );
    }

    /// A board whose hypervisor `hv` runs cluster `c1`, active, for session 4.
    fn active_for_session_4() -> (ClusterBoard, Cluster) {
        let board = ClusterBoard::default();
        board.hypervisor_connected("hv", None);
        board.hypervisor_status("hv", status(16, 0, 16384, 0));
        let c = cluster("c1", 1, 128);
        board.reserve(&c, ClusterOwner::Session(4)).expect("start");
        active(&board, "c1");
        (board, c)
    }

    #[test]
    fn a_held_cluster_shows_held_stays_taken_and_a_stop_by_hand_ends_the_hold() {
        let (board, c) = active_for_session_4();
        assert_eq!(board.hold("c1", 5, 1_000, "kept"), Err(HoldRefusal::NotOwn));
        assert_eq!(board.hold("nope", 4, 1_000, "kept"), Err(HoldRefusal::Gone));
        board.hold("c1", 4, 90_000, "kept until later").expect("held");
        let entry = board.cluster("c1").unwrap();
        assert_eq!((entry.state, entry.raw_state, entry.in_use_by), (HELD, ClusterState::Active, None));
        assert_eq!(
            (entry.held_for, entry.held_until_ms, entry.held_left_ms(60_000)),
            (Some(4), Some(90_000), Some(30_000))
        );
        assert_eq!(entry.held_left_ms(100_000), Some(0));
        assert_eq!(entry.steps.last().map(|s| (s.state.as_str(), s.detail.as_str())), Some((HELD, "kept until later")));
        assert!(!entry.is_usable());
        // Nobody starts it again meanwhile, and a repeated report keeps it held.
        assert!(matches!(board.reserve(&c, ClusterOwner::Manual), Err(ReserveError::Busy { state: HELD, .. })));
        active(&board, "c1");
        assert_eq!(board.cluster("c1").unwrap().state, HELD);
        // A stop by hand is allowed and ends the hold.
        assert_eq!(board.claim_stop("c1"), Ok(StopClaim { hypervisor: "hv".into(), ended_hold_of: Some(4) }));
        let entry = board.cluster("c1").unwrap();
        assert_eq!((entry.state, entry.held_for, entry.held_until_ms), ("active", None, None));
        assert_eq!(board.end_hold("c1", 4), None, "the stop by hand took the hold first");
    }

    #[test]
    fn a_hold_ends_once_and_a_broken_cluster_is_not_held_but_stays_taken_while_held() {
        let (board, c) = active_for_session_4();
        board.hold("c1", 4, 90_000, "kept").expect("held");
        // The hypervisor leaves: the cluster is in error, still held (the hold's watcher
        // ends it) and not started again in between.
        assert_eq!(board.hypervisor_gone("hv"), vec![("c1".to_string(), None)]);
        assert_eq!(board.cluster("c1").unwrap().state, "error");
        assert!(matches!(board.reserve(&c, ClusterOwner::Manual), Err(ReserveError::Busy { .. })));
        assert_eq!(board.end_hold("c1", 5), None, "another session's hold");
        assert_eq!(board.end_hold("c1", 4), Some("hv".to_string()));
        assert_eq!(board.end_hold("c1", 4), None, "ended once");
        let entry = board.cluster("c1").unwrap();
        assert!(entry.stop_requested && entry.held_for.is_none());
        // A cluster in error is not held.
        board.hypervisor_connected("hv", None);
        board.hypervisor_status("hv", status(16, 0, 16384, 0));
        board.reserve(&c, ClusterOwner::Session(6)).expect("started again once over and no longer held");
        board.cluster_status(
            "hv",
            &ClusterStatus { cluster: "c1".into(), state: ClusterState::ErrorStart, detail: "no image".into() },
        );
        assert_eq!(board.hold("c1", 6, 90_000, "kept"), Err(HoldRefusal::NotUp("error_start")));
    }

    #[test]
    fn only_live_clusters_of_a_report_are_to_be_stopped() {
        let board = ClusterBoard::default();
        board.hypervisor_connected("hv", None);
        let mut report = status(16, 2, 16384, 256);
        report.clusters = [
            ("old_active", ClusterState::Active),
            ("old_starting", ClusterState::CreatingNetwork),
            ("stopping", ClusterState::Destroying),
            ("broken", ClusterState::ErrorStop),
            ("failed", ClusterState::ErrorStart),
        ]
        .into_iter()
        .map(|(name, state)| ClusterStatus { cluster: name.into(), state, detail: String::new() })
        .collect();
        assert_eq!(board.hypervisor_status("hv", report), vec!["old_active".to_string(), "old_starting".to_string()]);
    }

    #[tokio::test]
    async fn a_hypervisor_that_leaves_fails_its_clusters_and_their_waiters() {
        let board = ClusterBoard::default();
        board.hypervisor_connected("hv", None);
        board.hypervisor_status("hv", status(16, 0, 16384, 0));
        board.reserve(&cluster("c1", 1, 128), ClusterOwner::Session(3)).expect("start");
        let mut events = board.subscribe();
        assert_eq!(board.hypervisor_gone("hv"), vec![("c1".to_string(), Some(3))]);
        let mut seen = Vec::new();
        let result = wait_for_state(&board, &mut events, "c1", ClusterState::Active, Duration::from_secs(5), |e| {
            seen.push(e.state)
        })
        .await;
        assert_eq!(result, Err(WaitFailure::Error("hypervisor hv disconnected".into())));
        assert_eq!(seen, vec![ClusterState::Error]);
        assert!(board.hypervisors().iter().all(|h| !h.connected));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_times_out_with_the_last_state() {
        let board = ClusterBoard::default();
        board.hypervisor_connected("hv", None);
        board.hypervisor_status("hv", status(16, 0, 16384, 0));
        board.reserve(&cluster("c1", 1, 128), ClusterOwner::Manual).expect("start");
        let mut events = board.subscribe();
        let result =
            wait_for_state(&board, &mut events, "c1", ClusterState::Active, Duration::from_secs(60), |_| {}).await;
        match result {
            Err(WaitFailure::TimedOut(text)) => {
                assert!(text.contains("did not become active within 1m"), "{text}");
                assert!(text.contains("last state: definition_sent"), "{text}");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
}
