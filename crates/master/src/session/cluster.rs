//! The cluster of a cluster session: started on a hypervisor for the session (or a cluster
//! started by hand is used as it is), followed into the session record step by step, and
//! stopped when the session ends — after a failure or a cancel too, except that a failed
//! session run with `keep_on_failure` leaves it held for a while ([`hold`],
//! [`watch_hold`]) so a person can look.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::TimeZone;
use tokio::sync::{broadcast, watch};
use tokio::time::{sleep_until, Instant};
use tracing::{info, warn};
use xrdtest_defs::tags::diskmount_commands;
use xrdtest_defs::Cluster;
use xrdtest_proto::ClusterState;

use crate::cluster_control::StartError;
use crate::clusters::{cluster_state_name, is_live, HELD};
use crate::clusters::{wait_for_state, ClusterEvent, ClusterOwner};
use crate::model::{now_ms, ClusterRun, ClusterStep, SessionId, SessionRecord};
use crate::session::rules::StopRequest;
use crate::session::SessionHost;

/// A cluster a session holds.
pub struct ClusterLease {
    name: String,
    hypervisor: String,
    /// This session started it, so it stops it.
    started_here: bool,
}

/// A cluster kept up after its session failed (`keep_on_failure`): the master stops it
/// when `until_ms` comes ([`watch_hold`]), unless it is stopped by hand before.
pub struct HeldCluster {
    pub name: String,
    pub hypervisor: String,
    pub session: SessionId,
    pub until_ms: u64,
    /// Subscribed before the hold began, so no step of an early stop is missed.
    events: broadcast::Receiver<ClusterEvent>,
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
            let reason = match (entry.in_use_by, entry.held_for) {
                (Some(id), _) => format!("cluster `{}` is in use by session {id}", cluster.name),
                (None, Some(id)) => format!(
                    "cluster `{}` is held after session {id} failed; stop it (`xrdtest cluster stop {}`) or \
                     wait until the hold ends",
                    cluster.name, cluster.name
                ),
                (None, None) => format!(
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

/// How long a hypervisor may take to save a cluster's warm state before the session goes on
/// without waiting for it.
const SAVE_WAIT: Duration = Duration::from_secs(180);

/// Once every slave of a cluster this session started is connected: asks the hypervisor to
/// save the VMs' state for later sessions (a warm cluster), and waits until it has (the
/// guests pause meanwhile). The hypervisor answers at once when there is nothing to save
/// (the VMs were restored from a saved state, or warm clusters are off there). A failed or
/// slow save is recorded and the session goes on: the cluster is simply cold next time.
pub async fn save_warm_state(
    master: &dyn SessionHost,
    record: &mut SessionRecord,
    lease: &ClusterLease,
    cancel: &mut watch::Receiver<Option<StopRequest>>,
) {
    if !lease.started_here {
        return;
    }
    // A slave that would not start afresh after a restore (an image without xrdtest's
    // runner, such as a full-distro one, or one older than warm clusters) would come back
    // holding a dead connection: such a cluster is never saved.
    let stuck: Vec<&String> = record.slaves.iter().filter(|s| !master.peers().restorable(s)).collect();
    if !stuck.is_empty() {
        let names: Vec<&str> = stuck.iter().map(|s| s.as_str()).collect();
        info!(cluster = %lease.name, slaves = ?names, "not saving a warm state: these slaves do not resume after a restore");
        push_step(
            record,
            "active",
            &format!(
                "no warm state: the slaves of {} do not say they resume after a restore (their image is not xrdtest's \
                 slave initramfs, or older than warm clusters)",
                names.join(", ")
            ),
        );
        return;
    }
    let board = &master.clusters();
    let mut events = board.subscribe();
    if !master.cluster_control().save(&lease.name, &lease.hypervisor).await {
        push_step(record, "active", "the warm state save could not be sent");
        return;
    }
    let deadline = Instant::now() + SAVE_WAIT;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) if event.cluster == lease.name => {
                    push_step(record, cluster_state_name(event.state), &event.detail);
                    master.save(record);
                    if event.state != ClusterState::Saving {
                        info!(cluster = %lease.name, detail = %event.detail, "warm state");
                        return;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            // A stop goes on at once (the session sees it before its first stage); the
            // hypervisor finishes the save before it takes the cluster's stop.
            _ = stop_requested(cancel) => return,
            _ = sleep_until(deadline) => {
                warn!(cluster = %lease.name, "the hypervisor did not finish saving the warm state in time; going on");
                push_step(record, "active", "the warm state save did not finish in time; going on");
                return;
            }
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
    let sent = master.cluster_control().stop(&lease.name, &lease.hypervisor, &note).await;
    let problem = stopped(master, &mut events, &lease.name, &lease.hypervisor, sent, |state, detail| {
        push_step(record, state, detail)
    })
    .await;
    master.save(record);
    problem
}

/// After a stop was sent (`sent`) or not: waits until the cluster has stopped (within the
/// stop timeout), telling `step` each state, and returns the problem if it did not.
async fn stopped(
    master: &dyn SessionHost,
    events: &mut broadcast::Receiver<ClusterEvent>,
    cluster: &str,
    hypervisor: &str,
    sent: bool,
    mut step: impl FnMut(&str, &str),
) -> Option<String> {
    if !sent {
        let problem = format!(
            "cluster `{cluster}` could not be stopped: hypervisor {hypervisor} is not connected (it removes \
             clusters it runs unasked when it reconnects)"
        );
        warn!(cluster, hypervisor, "{problem}");
        step("error_stop", &problem);
        return Some(problem);
    }
    let timeout = master.config().clusters.stop_timeout;
    let board = master.clusters();
    let result = wait_for_state(board, events, cluster, ClusterState::Stopped, timeout, |event| {
        step(cluster_state_name(event.state), &event.detail);
    })
    .await;
    match result {
        Ok(()) => {
            info!(cluster, "cluster stopped");
            None
        }
        Err(failure) => {
            let problem = format!("cluster `{cluster}` was not cleanly stopped: {failure}");
            warn!(cluster, "{problem}");
            Some(problem)
        }
    }
}

/// A time as the master's operators read it: `2025-03-01 14:05:09 +01:00`.
fn local_time(unix_ms: u64) -> String {
    match chrono::Local.timestamp_millis_opt(unix_ms as i64).single() {
        Some(at) => at.format("%Y-%m-%d %H:%M:%S %:z").to_string(),
        None => format!("{unix_ms} (Unix ms)"),
    }
}

/// At the end of a failed session run with `keep_on_failure` (`keep_ms`): keeps the
/// cluster it started up until then instead of stopping it, and records a `held` step.
/// Gives the lease back (to be torn down as usual) when the cluster cannot be held: not
/// started by this session, or no longer up (a cluster in error is stopped now).
pub fn hold(
    master: &dyn SessionHost,
    record: &mut SessionRecord,
    lease: ClusterLease,
    keep_ms: u64,
) -> Result<HeldCluster, ClusterLease> {
    let board = master.clusters();
    if !lease.started_here {
        return Err(lease);
    }
    let until_ms = now_ms().saturating_add(keep_ms);
    let keep = xrdtest_defs::units::format_duration(Duration::from_millis(keep_ms));
    let detail = format!(
        "kept after session {} failed (keep_on_failure {keep}) until {}; `xrdtest cluster stop {}` ends it sooner",
        record.id,
        local_time(until_ms),
        lease.name
    );
    let events = board.subscribe();
    match board.hold(&lease.name, record.id, until_ms, &detail) {
        Ok(()) => {
            info!(session = record.id, cluster = %lease.name, until_ms, keep = %keep, "cluster held after the failure");
            push_step(record, HELD, &detail);
            Ok(HeldCluster { name: lease.name, hypervisor: lease.hypervisor, session: record.id, until_ms, events })
        }
        Err(refusal) => {
            info!(session = record.id, cluster = %lease.name, %refusal, "cluster not held: stopping it");
            push_step(record, "not_held", &format!("keep_on_failure: not held, {refusal}"));
            Err(lease)
        }
    }
}

/// How a hold ended.
enum HoldEnd {
    /// Its time came: the master stops the cluster.
    TimeUp,
    /// It broke meanwhile (its hypervisor left, or reported an error).
    Broken(&'static str),
    /// Someone stopped it by hand (the stop is on its way).
    ByHand,
}

/// Runs while a cluster is held: when the hold's time comes (or the cluster breaks), stops
/// it as its session would have; after a stop by hand, follows that stop. Either way the
/// steps are added to the (ended) session's record and logged. Returns once the cluster
/// has stopped, or could not be.
pub async fn watch_hold(master: &dyn SessionHost, held: HeldCluster) {
    let HeldCluster { name, hypervisor, session, until_ms, mut events } = held;
    let board = master.clusters();
    let deadline = Instant::now() + Duration::from_millis(until_ms.saturating_sub(now_ms()));
    // States of a stop by hand that came in while waiting, for the record.
    let mut steps: Vec<ClusterStep> = Vec::new();
    let end = loop {
        match board.cluster(&name) {
            Some(entry) if entry.held_for == Some(session) => {
                if entry.is_over() {
                    break HoldEnd::Broken(entry.state);
                }
            }
            _ => break HoldEnd::ByHand,
        }
        tokio::select! {
            _ = sleep_until(deadline) => break HoldEnd::TimeUp,
            event = events.recv() => match event {
                Ok(event) if event.cluster == name && !is_live(event.state) => steps.push(ClusterStep {
                    unix_ms: now_ms(),
                    state: cluster_state_name(event.state).to_string(),
                    detail: event.detail,
                }),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                // The master is stopping: the cluster is left to the next start.
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    };
    let note = match end {
        HoldEnd::ByHand => {
            info!(session, cluster = %name, "held cluster stopped by hand");
            None
        }
        HoldEnd::Broken("stopped") => {
            board.end_hold(&name, session);
            Some("the held cluster stopped".to_string())
        }
        HoldEnd::TimeUp | HoldEnd::Broken(_) => {
            let why = match end {
                HoldEnd::Broken(state) => format!("the held cluster is {state}"),
                _ => "the hold's time is up".to_string(),
            };
            // `None`: a stop by hand came first, and is followed below.
            if let Some(hypervisor) = board.end_hold(&name, session) {
                info!(session, cluster = %name, hypervisor = %hypervisor, reason = %why, "hold ended: stopping the cluster");
                let note = format!("{why}: stop sent to {hypervisor}");
                // The mark comes back through `events`, recorded by the wait below.
                if !master.cluster_control().stop(&name, &hypervisor, &note).await {
                    let problem = format!("{why}, but hypervisor {hypervisor} is not connected");
                    board.mark(&name, ClusterState::ErrorStop, &problem);
                }
            }
            Some(why)
        }
    };
    // Nothing to wait for once it has stopped, or its stop failed (the board says why).
    let problem = match board.cluster(&name) {
        Some(entry) if !entry.is_over() => {
            stopped(master, &mut events, &name, &hypervisor, true, |state, detail| {
                steps.push(ClusterStep { unix_ms: now_ms(), state: state.to_string(), detail: detail.to_string() })
            })
            .await
        }
        entry => {
            // Its last states, unless the loop above already saw them.
            while let Ok(event) = events.try_recv() {
                if event.cluster == name && !is_live(event.state) {
                    steps.push(ClusterStep {
                        unix_ms: now_ms(),
                        state: cluster_state_name(event.state).to_string(),
                        detail: event.detail,
                    });
                }
            }
            entry.filter(|e| e.raw_state.is_error()).map(|e| e.detail)
        }
    };
    if let Some(problem) = &problem {
        warn!(session, cluster = %name, %problem, "held cluster not cleanly stopped");
    }
    info!(session, cluster = %name, ended_by = note.as_deref().unwrap_or("a stop by hand"), "cluster hold over");
    add_steps(master, session, steps);
}

/// Adds cluster steps to an ended session's record.
fn add_steps(master: &dyn SessionHost, session: SessionId, steps: Vec<ClusterStep>) {
    match master.store().session(session) {
        Ok(Some(mut record)) => {
            if let Some(run) = record.cluster.as_mut() {
                run.steps.extend(steps);
                master.save_durably(&record);
            }
        }
        Ok(None) => warn!(session, "session record missing: the held cluster's stop is not recorded"),
        Err(err) => warn!(session, error = %err, "cannot read the session: the held cluster's stop is not recorded"),
    }
}
