//! Drives one session: waits for its slaves, then runs each planned stage on every slave
//! with a barrier between stages, applying the failure rules, and records everything.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tracing::{info, info_span, warn, Instrument};
use xrdtest_defs::{Cluster, Suite};
use xrdtest_proto::{FromMaster, StageCommand, StageId, StageOutcome};

use crate::master::Master;
use crate::model::{now_ms, CaseState, RunState, SessionId, SessionRecord, SessionState};
use crate::peers::{PeerEvent, StageEvent};
use crate::session::cluster::{bring_up, host_tags, tear_down, ClusterLease};
use crate::session::load_script;
use crate::session::rules::{plan, Decision, Rules, StopRequest};

/// Beyond its own timeout (which the slave enforces), how long the master waits for a
/// connected slave's result before it gives up on it.
const RESULT_MARGIN: Duration = Duration::from_secs(30);
/// After a cancel, how long the master waits for slaves to report their killed stages.
const CANCEL_WAIT: Duration = Duration::from_secs(15);
/// How often a running stage's record is saved while results come in.
const SAVE_EVERY: Duration = Duration::from_millis(250);

/// Tags per slave on top of the session's (a cluster host's `diskmounts`).
type SlaveTags = HashMap<String, BTreeMap<String, String>>;

pub async fn run_session(
    master: Arc<Master>,
    id: SessionId,
    suite: Suite,
    cluster: Option<Cluster>,
    cancel: watch::Receiver<Option<StopRequest>>,
) {
    let span = info_span!("session", session = id, suite = %suite.name);
    run(master, id, suite, cluster, cancel).instrument(span).await
}

async fn run(
    master: Arc<Master>,
    id: SessionId,
    suite: Suite,
    cluster: Option<Cluster>,
    mut cancel: watch::Receiver<Option<StopRequest>>,
) {
    let mut record = match master.store.session(id) {
        Ok(Some(record)) => record,
        other => {
            warn!(error = ?other.err(), "session record missing; not running it");
            return;
        }
    };
    let mut lease: Option<ClusterLease> = None;
    let mut slave_tags = SlaveTags::new();
    let mut slave_wait = master.config.slave_wait;
    let mut not_started: Option<(SessionState, String)> = None;
    if let Some(cluster) = &cluster {
        record.state = SessionState::StartingCluster;
        master.save(&record);
        match bring_up(&master, &mut record, cluster, &mut cancel).await {
            Ok(held) => lease = Some(held),
            Err((held, stop)) => {
                lease = held;
                not_started = Some((stop.final_state(), stop.reason));
            }
        }
        slave_tags = host_tags(cluster, &record.slaves);
        slave_wait = master.config.clusters.slave_wait;
    }
    master.peers.set_session(&record.slaves, Some(id));
    if not_started.is_none() {
        record.state = SessionState::WaitingSlaves;
        master.save(&record);
        not_started = match wait_for_slaves(&master, &record.slaves, slave_wait, &mut cancel).await {
            Ok(()) => None,
            Err(WaitEnd::Missing(names)) => Some((
                SessionState::Failed,
                names.iter().map(|n| format!("slave {n} not connected")).collect::<Vec<_>>().join("; "),
            )),
            Err(WaitEnd::Stopped(stop)) => Some((stop.final_state(), stop.reason)),
        };
    }
    if let Some((state, reason)) = not_started {
        info!(%reason, "session could not start");
        for stage in &mut record.stages {
            stage.skipped = Some(reason.clone());
            for run in &mut stage.runs {
                run.state = RunState::Skipped;
            }
        }
        for case in &mut record.cases {
            case.state = CaseState::NotRun;
        }
        record.reason = Some(reason);
        finish(&master, &suite, record, state, lease).await;
        return;
    }

    let planned = plan(&suite);
    // Scripts are read (and URLs downloaded) once, now, off the async threads.
    let sources: Vec<_> = planned.iter().map(|p| p.script.clone()).collect();
    let scripts: Vec<Result<String, String>> =
        match tokio::task::spawn_blocking(move || sources.iter().map(load_script).collect()).await {
            Ok(scripts) => scripts,
            Err(err) => planned.iter().map(|_| Err(format!("loading scripts failed: {err}"))).collect(),
        };
    record.state = SessionState::Running;
    record.started_ms = Some(now_ms());
    master.save_durably(&record);
    info!(slaves = ?record.slaves, stages = planned.len(), "session running");

    let mut rules = Rules::default();
    for (index, stage_plan) in planned.iter().enumerate() {
        // Marked as seen: a cancel noticed here must not also kill suite finalize later.
        let requested = cancel.borrow_and_update().clone();
        if let Some(stop) = requested {
            rules.stop(stop);
        }
        let case = stage_plan.stage.case().map(str::to_string);
        match rules.decide(&stage_plan.stage) {
            Decision::Skip(reason) => {
                let stage = &mut record.stages[index];
                stage.skipped = Some(reason.clone());
                for run in &mut stage.runs {
                    run.state = RunState::Skipped;
                    run.reason = Some(reason.clone());
                }
            }
            Decision::Run => {
                if let Some(case) = &case {
                    if let Some(case_record) = record.cases.iter_mut().find(|c| &c.name == case) {
                        if case_record.state == CaseState::Pending {
                            case_record.state = CaseState::Running;
                            case_record.started_ms = Some(now_ms());
                        }
                    }
                }
                let passed = match &scripts[index] {
                    Ok(script) => {
                        let context = StageContext { script, suite: &suite, slave_tags: &slave_tags };
                        run_stage(&master, &mut record, index, &context, &mut cancel, &mut rules).await
                    }
                    Err(reason) => {
                        for run in &mut record.stages[index].runs {
                            run.state = RunState::Failed;
                            run.reason = Some(reason.clone());
                        }
                        false
                    }
                };
                info!(stage = %stage_plan.stage, passed, "stage ended");
                rules.record(&stage_plan.stage, passed);
            }
        }
        if let Some(case) = &case {
            let last_of_case = !planned[index + 1..].iter().any(|p| p.stage.case() == Some(case));
            if last_of_case {
                if let Some(case_record) = record.cases.iter_mut().find(|c| &c.name == case) {
                    case_record.state = match (case_record.started_ms, rules.case_failed(case)) {
                        (None, _) => CaseState::NotRun,
                        (Some(_), true) => CaseState::Failed,
                        (Some(_), false) => CaseState::Passed,
                    };
                    case_record.ended_ms = Some(now_ms());
                }
            }
        }
        master.save(&record);
    }

    let (state, reason) = rules.outcome();
    record.reason = reason;
    finish(&master, &suite, record, state, lease).await;
}

/// Ends a session: stops the cluster it started (the record keeps its last live state
/// meanwhile), then records the final state, stores it durably and tells the alert mailer.
async fn finish(
    master: &Arc<Master>,
    suite: &Suite,
    mut record: SessionRecord,
    final_state: SessionState,
    lease: Option<ClusterLease>,
) {
    if let Some(lease) = lease {
        master.save(&record);
        if let Some(problem) = tear_down(master, &mut record, lease).await {
            record.reason = Some(match record.reason.take() {
                Some(reason) => format!("{reason}; {problem}"),
                None => problem,
            });
        }
    }
    record.state = final_state;
    record.ended_ms = Some(now_ms());
    master.save_durably(&record);
    master.peers.set_session(&record.slaves, None);
    info!(state = final_state.as_str(), reason = record.reason.as_deref().unwrap_or(""), "session ended");
    master.session_ended(suite, &record);
}

enum WaitEnd {
    Missing(Vec<String>),
    Stopped(StopRequest),
}

/// Waits until every slave is connected, `wait` passes, or a cancel.
async fn wait_for_slaves(
    master: &Master,
    slaves: &[String],
    wait: Duration,
    cancel: &mut watch::Receiver<Option<StopRequest>>,
) -> Result<(), WaitEnd> {
    let deadline = Instant::now() + wait;
    let mut events = master.peers.subscribe();
    let mut cancel_open = true;
    loop {
        let requested = cancel.borrow().clone();
        if let Some(stop) = requested {
            return Err(WaitEnd::Stopped(stop));
        }
        let missing: Vec<String> = slaves.iter().filter(|s| !master.peers.is_connected(s)).cloned().collect();
        if missing.is_empty() {
            return Ok(());
        }
        tokio::select! {
            _ = sleep_until(deadline) => return Err(WaitEnd::Missing(missing)),
            _ = events.recv() => {}
            changed = cancel.changed(), if cancel_open => cancel_open = changed.is_ok(),
        }
    }
}

/// One slave's run of the current stage, while it is not finished.
struct Pending {
    stage_id: StageId,
    /// The slave reported the stage started (so it holds it).
    started: bool,
}

/// What a stage's commands are made of, besides the record.
struct StageContext<'a> {
    script: &'a str,
    suite: &'a Suite,
    slave_tags: &'a SlaveTags,
}

/// Runs stage `index` on every slave and waits for all of them: the barrier. Returns
/// whether it passed on every slave.
async fn run_stage(
    master: &Arc<Master>,
    record: &mut SessionRecord,
    index: usize,
    context: &StageContext<'_>,
    cancel: &mut watch::Receiver<Option<StopRequest>>,
    rules: &mut Rules,
) -> bool {
    let StageContext { script, suite, slave_tags } = *context;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut peer_events = master.peers.subscribe();
    let stage = record.stages[index].stage.clone();
    let timeout = Duration::from_millis(record.stages[index].timeout_ms);
    let mut tags = suite.tags.clone();
    tags.extend(master.base_tags());
    let session_id = record.id.to_string();
    let slaves = record.slaves.clone();
    let command_for = |stage_id: StageId, slave: &str| {
        let mut tags = tags.clone();
        if let Some(own) = slave_tags.get(slave) {
            tags.extend(own.clone());
        }
        FromMaster::RunStage(StageCommand {
            stage_id,
            session_id: session_id.clone(),
            suite: suite.name.clone(),
            stage: stage.clone(),
            script: script.to_string(),
            tags,
            slaves: slaves.clone(),
            timeout_ms: timeout.as_millis() as u64,
            logs: suite.logs.clone(),
            output_limit_bytes: master.config.output_limit_bytes,
            log_limit_bytes: master.config.log_limit_bytes,
        })
    };

    let mut pending: HashMap<String, Pending> = HashMap::new();
    // Slaves whose connection is down, and since when: usually empty, so the grace timer
    // costs nothing while everyone is connected.
    let mut away: HashMap<String, Instant> = HashMap::new();
    let run_count = record.stages[index].runs.len();
    let first_id = match master.store.next_stage_ids(run_count as u64) {
        Ok(id) => id,
        Err(err) => {
            for run in record.stages[index].runs.iter_mut() {
                run.state = RunState::Failed;
                run.reason = Some(err.to_string());
            }
            return false;
        }
    };
    for (offset, run) in record.stages[index].runs.iter_mut().enumerate() {
        let stage_id = first_id + offset as u64;
        run.stage_id = stage_id;
        run.state = RunState::Running;
        master.peers.add_route(stage_id, &run.slave, events_tx.clone());
        let delivered = match master.peers.handle(&run.slave) {
            Some(handle) => handle.tx.send(command_for(stage_id, &run.slave)).await.is_ok(),
            None => false,
        };
        if !delivered {
            away.insert(run.slave.clone(), Instant::now());
        }
        pending.insert(run.slave.clone(), Pending { stage_id, started: false });
    }
    master.save(record);

    let grace = master.config.reconnect_grace;
    let mut result_deadline = Instant::now() + timeout + RESULT_MARGIN;
    let mut save_tick = tokio::time::interval(SAVE_EVERY);
    let mut dirty = false;
    let mut cancel_open = true;
    let positions: HashMap<String, usize> =
        record.stages[index].runs.iter().enumerate().map(|(i, r)| (r.slave.clone(), i)).collect();
    let run_of = |_: &mut SessionRecord, slave: &str| -> Option<usize> { positions.get(slave).copied() };

    while !pending.is_empty() {
        let next_grace_end = away.values().min().map(|since| *since + grace);
        tokio::select! {
            Some((stage_id, event)) = events.recv() => {
                dirty = true;
                let slave = match &event {
                    StageEvent::Started { slave, .. } | StageEvent::Output { slave, .. } | StageEvent::Log { slave, .. }
                    | StageEvent::Finished { slave, .. } | StageEvent::Resumed { slave } | StageEvent::Lost { slave } => slave.clone(),
                };
                let Some(position) = run_of(record, &slave) else { continue };
                if pending.get(&slave).is_none_or(|p| p.stage_id != stage_id) {
                    continue;
                }
                let run = &mut record.stages[index].runs[position];
                match event {
                    StageEvent::Started { unix_ms, .. } => {
                        run.started_ms = Some(unix_ms);
                        if let Some(p) = pending.get_mut(&slave) { p.started = true; }
                    }
                    StageEvent::Output { bytes, .. } => run.output_bytes += bytes,
                    StageEvent::Log { log, .. } => {
                        if !run.logs.contains(&log.path) {
                            run.logs.push(log.path);
                        }
                    }
                    StageEvent::Finished { result, .. } => {
                        run.started_ms = Some(result.started_unix_ms);
                        run.ended_ms = Some(result.ended_unix_ms);
                        run.output_bytes = result.output_bytes;
                        run.dropped_bytes = result.dropped_bytes;
                        let (state, exit_code, reason) = describe_outcome(&result.outcome);
                        run.state = state;
                        run.exit_code = exit_code;
                        run.reason = reason;
                        pending.remove(&slave);
                        master.peers.remove_route(stage_id);
                    }
                    StageEvent::Resumed { .. } => {
                        info!(slave = %slave, stage = %stage, "slave back; stage goes on");
                        away.remove(&slave);
                    }
                    StageEvent::Lost { .. } => {
                        let not_started = pending.get(&slave).is_some_and(|p| !p.started);
                        let resent = match (not_started, master.peers.handle(&slave)) {
                            (true, Some(handle)) => handle.tx.send(command_for(stage_id, &slave)).await.is_ok(),
                            _ => false,
                        };
                        if resent {
                            away.remove(&slave);
                        } else {
                            run.state = RunState::Failed;
                            run.reason = Some("slave reconnected without this stage (was it restarted?)".into());
                            run.ended_ms = Some(now_ms());
                            pending.remove(&slave);
                            master.peers.remove_route(stage_id);
                        }
                    }
                }
            }
            peer_event = peer_events.recv() => {
                match peer_event {
                    Ok(PeerEvent::Disconnected(name)) => {
                        if pending.contains_key(&name) {
                            warn!(slave = %name, stage = %stage, grace = ?grace, "slave disconnected mid-stage; waiting for it");
                            away.entry(name).or_insert_with(Instant::now);
                        }
                    }
                    Ok(PeerEvent::Connected(_)) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        for name in pending.keys() {
                            if !master.peers.is_connected(name) {
                                away.entry(name.clone()).or_insert_with(Instant::now);
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => {}
                }
            }
            _ = sleep_until(next_grace_end.unwrap_or(result_deadline)), if next_grace_end.is_some() => {
                let now = Instant::now();
                let expired: Vec<String> =
                    away.iter().filter(|(_, since)| **since + grace <= now).map(|(name, _)| name.clone()).collect();
                for slave in expired {
                    away.remove(&slave);
                    if let (Some(p), Some(position)) = (pending.remove(&slave), run_of(record, &slave)) {
                        let run = &mut record.stages[index].runs[position];
                        run.state = RunState::Disconnected;
                        run.reason = Some(format!("slave disconnected (not back within {}s)", grace.as_secs()));
                        run.ended_ms = Some(now_ms());
                        master.peers.remove_route(p.stage_id);
                        warn!(slave = %slave, stage = %stage, "stage failed: slave disconnected");
                    }
                }
                dirty = true;
            }
            _ = sleep_until(result_deadline) => {
                for (slave, p) in pending.drain() {
                    if let Some(handle) = master.peers.handle(&slave) {
                        let _ = handle.tx.try_send(FromMaster::CancelStage { stage_id: p.stage_id, reason: "no result in time".into() });
                    }
                    if let Some(position) = run_of(record, &slave) {
                        let run = &mut record.stages[index].runs[position];
                        run.state = if rules.is_cancelled() { RunState::Cancelled } else { RunState::TimedOut };
                        run.reason = Some("no result from the slave in time".into());
                        run.ended_ms = Some(now_ms());
                    }
                    master.peers.remove_route(p.stage_id);
                }
            }
            changed = cancel.changed(), if cancel_open => {
                cancel_open = changed.is_ok();
                let requested = cancel.borrow().clone();
                if let Some(stop) = requested {
                    let reason = stop.reason.clone();
                    rules.stop(stop);
                    if stage == xrdtest_proto::Stage::SuiteFinalize {
                        // Suite finalize is the cleanup a cancel asks for: let it finish.
                        info!(%reason, "cancel during suite finalize: letting the cleanup finish");
                        continue;
                    }
                    info!(%reason, stage = %stage, "cancelling the running stage");
                    for (slave, p) in &pending {
                        if let Some(handle) = master.peers.handle(slave) {
                            let _ = handle.tx.send(FromMaster::CancelStage { stage_id: p.stage_id, reason: reason.clone() }).await;
                        }
                    }
                    result_deadline = result_deadline.min(Instant::now() + CANCEL_WAIT);
                }
            }
            _ = save_tick.tick() => {
                if dirty {
                    master.save(record);
                    dirty = false;
                }
            }
        }
    }
    master.save(record);
    record.stages[index].runs.iter().all(|run| run.state == RunState::Passed)
}

/// The run state, exit code and reason a stage outcome means.
fn describe_outcome(outcome: &StageOutcome) -> (RunState, Option<i32>, Option<String>) {
    match outcome {
        StageOutcome::Exited { code: 0 } => (RunState::Passed, Some(0), None),
        StageOutcome::Exited { code } => (RunState::Failed, Some(*code), Some(format!("exit code {code}"))),
        StageOutcome::KilledBySignal { signal } => (RunState::Failed, None, Some(format!("killed by signal {signal}"))),
        StageOutcome::TimedOut { after_ms } => (
            RunState::TimedOut,
            None,
            Some(format!(
                "timeout: killed after {}",
                xrdtest_defs::units::format_duration(Duration::from_millis(*after_ms))
            )),
        ),
        StageOutcome::Cancelled { reason } => (RunState::Cancelled, None, Some(format!("cancelled: {reason}"))),
        StageOutcome::Failed { reason } => (RunState::Failed, None, Some(reason.clone())),
    }
}
