//! The cluster of a cluster session: started on a hypervisor for the session (or a cluster
//! started by hand is used as it is), followed into the session record step by step, and
//! stopped when the session ends — after a failure or a cancel too.

use std::collections::{BTreeMap, HashMap};

use tokio::sync::watch;
use tracing::{info, warn};
use xrdtest_defs::tags::diskmount_commands;
use xrdtest_defs::Cluster;
use xrdtest_proto::ClusterState;

use crate::cluster_control::StartError;
use crate::clusters::cluster_state_name;
use crate::clusters::{wait_for_state, ClusterEvent, ClusterOwner};
use crate::model::{now_ms, ClusterRun, ClusterStep, SessionRecord};
use crate::session::rules::StopRequest;
use crate::session::SessionHost;

/// A cluster a session holds.
pub struct ClusterLease {
    name: String,
    hypervisor: String,
    /// This session started it, so it stops it.
    started_here: bool,
}

/// Per slave, the tags only a cluster host has: `diskmounts`, the commands that format and
/// mount its extra disks.
pub fn host_tags(cluster: &Cluster, slaves: &[String]) -> HashMap<String, BTreeMap<String, String>> {
    cluster
        .hosts
        .iter()
        .filter(|host| slaves.contains(&host.name))
        .map(|host| (host.name.clone(), BTreeMap::from([("diskmounts".to_string(), diskmount_commands(&host.disks))])))
        .collect()
}

/// A fresh cluster part of a session record.
pub fn new_run(name: &str) -> ClusterRun {
    ClusterRun { name: name.to_string(), hypervisor: None, started_here: false, steps: Vec::new() }
}

fn push_step(record: &mut SessionRecord, state: &str, detail: &str) {
    if let Some(run) = record.cluster.as_mut() {
        run.steps.push(ClusterStep { unix_ms: now_ms(), state: state.to_string(), detail: detail.to_string() });
    }
}

/// Waits for the first stop request on `cancel` (never returns if none comes).
async fn stop_requested(cancel: &mut watch::Receiver<Option<StopRequest>>) -> StopRequest {
    loop {
        if let Some(stop) = cancel.borrow_and_update().clone() {
            return stop;
        }
        if cancel.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Starts the session's cluster (or takes the one started by hand) and waits until it is
/// active. On failure, returns why and the lease to tear down, if a start was sent.
pub async fn bring_up(
    master: &dyn SessionHost,
    record: &mut SessionRecord,
    cluster: &Cluster,
    cancel: &mut watch::Receiver<Option<StopRequest>>,
) -> Result<ClusterLease, (Option<ClusterLease>, StopRequest)> {
    let board = &master.clusters();
    let mut events = board.subscribe();
    let leased = board.lease_manual(&cluster.name, record.id);
    let lease = match leased.or_else(|| board.cluster(&cluster.name).filter(|e| !e.is_over())) {
        Some(entry) if entry.in_use_by == Some(record.id) => {
            info!(cluster = %cluster.name, hypervisor = %entry.hypervisor, "using the cluster started by hand");
            push_step(record, entry.state, &format!("started by hand on {}", entry.hypervisor));
            ClusterLease { name: cluster.name.clone(), hypervisor: entry.hypervisor, started_here: false }
        }
        Some(entry) => {
            let reason = match entry.in_use_by {
                Some(id) => format!("cluster `{}` is in use by session {id}", cluster.name),
                None => format!(
                    "cluster `{}` is being stopped ({}); try again once it has stopped",
                    cluster.name, entry.state
                ),
            };
            return Err((None, StopRequest::abort(reason)));
        }
        None => {
            let started =
                master.cluster_control().start(cluster, ClusterOwner::Session(record.id), record.id.to_string()).await;
            let hypervisor = match &started {
                Ok(sent) => sent.hypervisor.clone(),
                Err(StartError::NotSent { hypervisor }) => hypervisor.clone(),
                Err(err @ StartError::Reserve(_)) => return Err((None, StopRequest::abort(err.to_string()))),
            };
            if let Some(run) = record.cluster.as_mut() {
                run.hypervisor = Some(hypervisor.clone());
                run.started_here = true;
            }
            let lease = ClusterLease { name: cluster.name.clone(), hypervisor: hypervisor.clone(), started_here: true };
            if let Err(err) = started {
                return Err((Some(lease), StopRequest::abort(err.to_string())));
            }
            push_step(record, cluster_state_name(ClusterState::DefinitionSent), &format!("sent to {hypervisor}"));
            lease
        }
    };
    if let Some(run) = record.cluster.as_mut() {
        run.hypervisor = Some(lease.hypervisor.clone());
    }
    master.save(record);

    let timeout = master.config().clusters.start_timeout;
    let outcome = {
        let mut on_step = |event: &ClusterEvent| {
            info!(cluster = %event.cluster, state = cluster_state_name(event.state), detail = %event.detail, "cluster step");
            push_step(record, cluster_state_name(event.state), &event.detail);
            master.save(record);
        };
        tokio::select! {
            result = wait_for_state(board, &mut events, &cluster.name, ClusterState::Active, timeout, &mut on_step) => {
                result.map_err(|failure| StopRequest::abort(format!("cluster `{}` did not start: {failure}", cluster.name)))
            }
            stop = stop_requested(cancel) => Err(stop),
        }
    };
    match outcome {
        Ok(()) => Ok(lease),
        Err(stop) => {
            if stop.failure {
                board.mark(&cluster.name, ClusterState::ErrorStart, &stop.reason);
            }
            Err((Some(lease), stop))
        }
    }
}

/// Stops the cluster if this session started it (a cluster started by hand stays), and
/// records how that went. Returns a problem worth adding to the session's reason.
pub async fn tear_down(master: &dyn SessionHost, record: &mut SessionRecord, lease: ClusterLease) -> Option<String> {
    let board = &master.clusters();
    // Whatever happens below, this session no longer uses the cluster: a stop that times
    // out must not leave it claimed by a session that has ended.
    board.set_in_use(&lease.name, None);
    if !lease.started_here {
        push_step(record, "kept", "started by hand: left running");
        return None;
    }
    let mut events = board.subscribe();
    // The mark comes back through `events` and is recorded by the wait below.
    let note = format!("stop sent to {}", lease.hypervisor);
    if !master.cluster_control().stop(&lease.name, &lease.hypervisor, &note).await {
        let problem = format!(
            "cluster `{}` could not be stopped: hypervisor {} is not connected (it removes clusters it \
             runs unasked when it reconnects)",
            lease.name, lease.hypervisor
        );
        warn!(cluster = %lease.name, hypervisor = %lease.hypervisor, "{problem}");
        push_step(record, "error_stop", &problem);
        return Some(problem);
    }
    let timeout = master.config().clusters.stop_timeout;
    let result = wait_for_state(board, &mut events, &lease.name, ClusterState::Stopped, timeout, |event| {
        push_step(record, cluster_state_name(event.state), &event.detail);
    })
    .await;
    master.save(record);
    match result {
        Ok(()) => {
            info!(cluster = %lease.name, "cluster stopped");
            None
        }
        Err(failure) => {
            let problem = format!("cluster `{}` was not cleanly stopped: {failure}", lease.name);
            warn!(cluster = %lease.name, "{problem}");
            Some(problem)
        }
    }
}
