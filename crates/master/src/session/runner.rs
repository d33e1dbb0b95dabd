//! Drives one session: has its cluster started (for a cluster suite), waits for its slaves,
//! then feeds the session engine ([`super::engine`]) until it finishes, and records the
//! end. Everything here is I/O; every decision is the engine's.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tracing::{info, info_span, warn, Instrument};
use xrdtest_defs::{Cluster, Suite};
use xrdtest_proto::{FromMaster, SessionFile, StageCommand, StageId, StageResult};

use crate::model::{now_ms, CaseState, RunState, SessionId, SessionRecord, SessionState, Timeline};
use crate::peers::{PeerEvent, StageEvent};
use crate::session::clean_slate::end_on_slaves;
use crate::session::cluster::{bring_up, hold, host_tags, save_warm_state, tear_down, ClusterLease, HeldCluster};
use crate::session::coordination::Coordination;
use crate::session::credentials::{session_files, Wanted};
use crate::session::engine::{Action, Engine, Event, Limits, Now};
use crate::session::faults::{link_plans, LinkPlan};
use crate::session::load_script;
use crate::session::plan::Plan;
use crate::session::rules::StopRequest;
use crate::session::thresholds::{self, Baselines};
use crate::session::SessionHost;
use crate::store::Store;

/// Beyond its own timeout (which the slave enforces), how long the master waits for a
/// connected slave's result before it gives up on it.
const RESULT_MARGIN: Duration = Duration::from_secs(30);
/// After a cancel, how long the master waits for slaves to report their killed stages.
const CANCEL_WAIT: Duration = Duration::from_secs(15);
/// How often a running stage's record is saved while results come in.
const SAVE_EVERY: Duration = Duration::from_millis(250);

/// Tags per slave on top of the session's (a cluster host's `diskmounts`).
type SlaveTags = HashMap<String, BTreeMap<String, String>>;

/// Runs a session to its end. Returns the cluster it left held (a failed session run with
/// `keep_on_failure`), which the caller keeps taken until [`super::cluster::watch_hold`]
/// returns.
pub async fn run_session(
    master: Arc<dyn SessionHost>,
    id: SessionId,
    suite: Suite,
    plan: Plan,
    cluster: Option<Cluster>,
    cancel: watch::Receiver<Option<StopRequest>>,
) -> Option<HeldCluster> {
    let span = info_span!("session", session = id, suite = %suite.name);
    run(master, id, suite, plan, cluster, cancel).instrument(span).await
}

async fn run(
    master: Arc<dyn SessionHost>,
    id: SessionId,
    suite: Suite,
    plan: Plan,
    cluster: Option<Cluster>,
    mut cancel: watch::Receiver<Option<StopRequest>>,
) -> Option<HeldCluster> {
    let master: &dyn SessionHost = &*master;
    let mut record = match master.store().session(id) {
        Ok(Some(record)) => record,
        other => {
            warn!(error = ?other.err(), "session record missing; not running it");
            return None;
        }
    };
    let mut lease: Option<ClusterLease> = None;
    let mut slave_tags = SlaveTags::new();
    let mut slave_wait = master.config().slave_wait;
    let mut not_started: Option<(SessionState, String)> = None;
    if let Some(cluster) = &cluster {
        record.state = SessionState::StartingCluster;
        master.save(&record);
        match bring_up(master, &mut record, cluster, &mut cancel).await {
            Ok(held) => lease = Some(held),
            Err((held, stop)) => {
                lease = held;
                not_started = Some((stop.final_state(), stop.reason));
            }
        }
        slave_tags = host_tags(cluster, &record.slaves);
        slave_wait = master.config().clusters.slave_wait;
    }
    master.peers().set_session(&record.slaves, Some(id));
    if not_started.is_none() {
        record.state = SessionState::WaitingSlaves;
        master.save(&record);
        not_started = match wait_for_slaves(master, &record.slaves, slave_wait, &mut cancel).await {
            Ok(()) => None,
            Err(WaitEnd::Missing(names)) => Some((
                SessionState::Failed,
                names.iter().map(|n| format!("slave {n} not connected")).collect::<Vec<_>>().join("; "),
            )),
            Err(WaitEnd::Stopped(stop)) => Some((stop.final_state(), stop.reason)),
        };
        if let (None, Some(lease)) = (&not_started, &lease) {
            save_warm_state(master, &mut record, lease, &mut cancel).await;
        }
    }
    if let Some((state, reason)) = not_started {
        info!(%reason, "session could not start");
        mark_not_started(&mut record, reason);
        return finish(master, &suite, record, state, lease).await;
    }

    // Scripts are read (and URLs downloaded) once per template, now, off the async threads.
    let sources: Vec<_> = plan.templates.iter().map(|t| t.script.clone()).collect();
    let count = sources.len();
    let scripts: Vec<Result<String, String>> =
        match tokio::task::spawn_blocking(move || sources.iter().map(load_script).collect()).await {
            Ok(scripts) => scripts,
            Err(err) => (0..count).map(|_| Err(format!("loading scripts failed: {err}"))).collect(),
        };
    record.state = SessionState::Running;
    record.started_ms = Some(now_ms());
    master.save_durably(&record);
    info!(slaves = ?record.slaves, stages = record.stages.len(), instances = plan.instances.len(), "session running");

    let limits = Limits {
        reconnect_grace: master.config().reconnect_grace,
        result_margin: RESULT_MARGIN,
        cancel_wait: CANCEL_WAIT,
    };
    let script_errors = scripts.iter().map(|script| script.clone().err()).collect();
    let scripts: Vec<String> = scripts.into_iter().map(Result::unwrap_or_default).collect();
    let tags: Vec<_> = (0..plan.templates.len()).map(|template| plan.tags_of(template).clone()).collect();
    // Each slave's roles, for sync counts and fault targets, and as its `@roles@` tag.
    let roles: BTreeMap<String, Vec<String>> = record
        .slaves
        .iter()
        .map(|slave| (slave.clone(), xrdtest_defs::roles_of(&suite, cluster.as_ref(), slave)))
        .collect();
    for (slave, list) in &roles {
        slave_tags.entry(slave.clone()).or_default().insert("roles".into(), list.join(" "));
    }
    // Credentials for the service under test, if the scripts use their tags.
    let wanted = Wanted::by(scripts.iter().map(String::as_str));
    let mut files = BTreeMap::new();
    if wanted.any() {
        let (session, slaves) = (record.id.to_string(), record.slaves.clone());
        let made = match tokio::task::spawn_blocking(move || session_files(&session, &slaves, wanted)).await {
            Ok(made) => made.map_err(|err| err.to_string()),
            Err(err) => Err(format!("making the session's credentials failed: {err}")),
        };
        match made {
            Ok(made) => files = made,
            Err(reason) => {
                warn!(%reason, "session could not start");
                mark_not_started(&mut record, reason);
                return finish(master, &suite, record, SessionState::Failed, lease).await;
            }
        }
        info!(certificates = wanted.certificates, secret = wanted.secret, "session credentials made");
    }
    let context = StageContext {
        files,
        scripts: &scripts,
        tags: &tags,
        suite: &suite,
        slave_tags: &slave_tags,
        roster: Arc::new(record.slaves.join(" ")),
        roles,
        links: cluster.as_ref().map(|c| link_plans(c, &record.slaves)).unwrap_or_default(),
    };
    let engine = Engine::new(record, plan, script_errors, limits);
    let (mut record, state, reason) = drive(master, engine, &context, &mut cancel).await;
    record.reason = reason;
    finish(master, &suite, record, state, lease).await
}

/// Marks every stage of a session that cannot start as skipped for `reason`.
fn mark_not_started(record: &mut SessionRecord, reason: String) {
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
}

/// Ends a session: stops the cluster it started (the record keeps its last live state
/// meanwhile), then records the final state, stores it durably and tells the alert mailer.
/// A failed session run with `keep_on_failure` does not stop its cluster: it leaves it
/// held, and returns it (the session ends at once, as any other).
async fn finish(
    master: &dyn SessionHost,
    suite: &Suite,
    mut record: SessionRecord,
    final_state: SessionState,
    lease: Option<ClusterLease>,
) -> Option<HeldCluster> {
    let mut held = None;
    if let Some(lease) = lease {
        master.save(&record);
        let keep_ms = record.options.keep_on_failure_ms.filter(|_| final_state == SessionState::Failed);
        let to_stop = match keep_ms {
            Some(keep_ms) => match hold(master, &mut record, lease, keep_ms) {
                Ok(cluster) => {
                    held = Some(cluster);
                    None
                }
                Err(lease) => Some(lease),
            },
            None => Some(lease),
        };
        if let Some(lease) = to_stop {
            if let Some(problem) = tear_down(master, &mut record, lease).await {
                record.reason = Some(match record.reason.take() {
                    Some(reason) => format!("{reason}; {problem}"),
                    None => problem,
                });
            }
        }
    }
    record.state = final_state;
    record.ended_ms = Some(now_ms());
    master.save_durably(&record);
    master.peers().set_session(&record.slaves, None);
    info!(
        state = final_state.as_str(),
        reason = record.reason.as_deref().unwrap_or(""),
        cluster_held = held.is_some(),
        "session ended"
    );
    master.session_ended(suite, &record);
    held
}

enum WaitEnd {
    Missing(Vec<String>),
    Stopped(StopRequest),
}

/// Waits until every slave is connected, `wait` passes, or a cancel.
async fn wait_for_slaves(
    master: &dyn SessionHost,
    slaves: &[String],
    wait: Duration,
    cancel: &mut watch::Receiver<Option<StopRequest>>,
) -> Result<(), WaitEnd> {
    let deadline = Instant::now() + wait;
    let mut events = master.peers().subscribe();
    let mut cancel_open = true;
    loop {
        let requested = cancel.borrow().clone();
        if let Some(stop) = requested {
            return Err(WaitEnd::Stopped(stop));
        }
        let missing: Vec<String> = slaves.iter().filter(|s| !master.peers().is_connected(s)).cloned().collect();
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

/// What stage commands are made of, besides the record.
struct StageContext<'a> {
    /// The script of each template of the plan (empty where it could not be read: the
    /// engine fails that stage without sending it).
    scripts: &'a [String],
    /// The tags of each template, merged once per session ([`Plan::tags_of`]).
    tags: &'a [Arc<BTreeMap<String, String>>],
    suite: &'a Suite,
    slave_tags: &'a SlaveTags,
    /// The session's slaves, shared by every command that carries them.
    roster: Arc<String>,
    /// Each slave of the session with its roles (for sync counts by role).
    roles: BTreeMap<String, Vec<String>>,
    /// The cluster's `[[links]]` as faults on the session's slaves.
    links: Vec<LinkPlan>,
    /// Each slave's session files (credentials), sent with the roster.
    files: BTreeMap<String, Vec<SessionFile>>,
}

impl StageContext<'_> {
    /// The command of stage record `index` (of template `template`) for `slave`;
    /// `with_roster`: with the list of the session's slaves, which each connection gets
    /// once (the slave keeps it).
    fn command(
        &self,
        &Sending { record, index, template }: &Sending<'_>,
        stage_id: StageId,
        slave: &str,
        with_roster: bool,
        master: &dyn SessionHost,
    ) -> FromMaster {
        let stage = &record.stages[index];
        let mut tags = (*self.tags[template]).clone();
        if let Some(own) = self.slave_tags.get(slave) {
            tags.extend(own.clone());
        }
        FromMaster::RunStage(StageCommand {
            stage_id,
            session_id: record.id.to_string(),
            suite: self.suite.name.clone(),
            stage: stage.stage.clone(),
            script: self.scripts[template].clone(),
            tags,
            slaves: if with_roster { self.roster.clone() } else { Arc::default() },
            files: if with_roster { self.files.get(slave).cloned().unwrap_or_default() } else { Vec::new() },
            timeout_ms: stage.timeout_ms,
            logs: self.suite.logs.clone(),
            output_limit_bytes: master.config().output_limit_bytes,
            log_limit_bytes: master.config().log_limit_bytes,
        })
    }
}

/// The engine's two clocks, from one start.
struct Clock(Instant);

impl Clock {
    fn now(&self) -> Now {
        Now { mono_ms: self.0.elapsed().as_millis() as u64, unix_ms: now_ms() }
    }

    fn instant(&self, mono_ms: u64) -> Instant {
        self.0 + Duration::from_millis(mono_ms)
    }
}

/// The I/O shell around the engine: carries out its actions and feeds it what the slaves,
/// the peer registry, the clock and the cancel switch say, until it finishes. Returns the
/// record and the session's outcome.
async fn drive(
    master: &dyn SessionHost,
    mut engine: Engine,
    context: &StageContext<'_>,
    cancel: &mut watch::Receiver<Option<StopRequest>>,
) -> (SessionRecord, SessionState, Option<String>) {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut peer_events = master.peers().subscribe();
    let clock = Clock(Instant::now());
    // A stop that came while the scripts loaded counts before the first stage is chosen
    // (suite init is skipped). Marked as seen: a stop is handled once, so it never also
    // kills suite finalize.
    let requested = cancel.borrow_and_update().clone();
    let stopped = requested.is_some();
    if let Some(stop) = requested {
        engine.handle(Event::Stop(stop), clock.now());
    }
    // Half a frame: the reply's other fields and encoding fit in the rest.
    let reply_budget = master.config().max_frame_bytes / 2;
    let mut coordination = Coordination::new(context.roles.clone(), reply_budget, events_tx.clone());
    let now = || (clock.now(), Instant::now());
    if !stopped {
        // A cluster's [[links]] hold from before suite init to the session's end.
        if let Err(reason) = coordination.apply_links(master, context.links.clone(), &mut events, &now).await {
            warn!(%reason, "the session cannot run");
            engine.handle(Event::Stop(StopRequest::abort(reason)), clock.now());
        }
    }
    let mut todo: VecDeque<Action> = engine.start(clock.now()).into();
    let mut save_tick = tokio::time::interval(SAVE_EVERY);
    let (mut cancel_open, mut peers_open) = (true, true);
    let mut rosters = Rosters::default();
    let mut baselines = Baselines::start(master.store(), context.suite, engine.record().id);
    loop {
        while let Some(action) = todo.pop_front() {
            let answers = match action {
                Action::Finish { state, reason } => {
                    let (waits, faults) = coordination.at_end(master, &mut events, &now).await;
                    let id = engine.record().id;
                    if let Err(err) = master.store().put_timeline(id, &Timeline { waits, faults }) {
                        warn!(error = %err, "cannot store the session's waits and faults");
                    }
                    let slaves = engine.record().slaves.clone();
                    let cleanup = end_on_slaves(master, id, &slaves, &mut events, &events_tx).await;
                    // From now on a slave that reattaches with this session has it ended.
                    master.peers().set_session(&slaves, None);
                    if let Err(err) = master.store().put_cleanup(id, &cleanup) {
                        warn!(error = %err, "cannot store what the session's end ended on its slaves");
                    }
                    return (engine.into_record(), state, reason);
                }
                Action::Save => {
                    master.save(engine.record());
                    Vec::new()
                }
                Action::Run { index, slaves } => {
                    coordination.before_stage(master, &engine, index, &mut events, &now).await;
                    let stage = Sending { record: engine.record(), index, template: engine.template_of(index) };
                    send_stage(master, stage, &slaves, context, &mut rosters, &events_tx).await
                }
                Action::Resend { index, slave, stage_id } => {
                    let stage = Sending { record: engine.record(), index, template: engine.template_of(index) };
                    let command = context.command(&stage, stage_id, &slave, true, master);
                    if master.peers().send(&slave, command).await {
                        Vec::new()
                    } else {
                        vec![Event::ResendFailed { slave, stage_id }]
                    }
                }
                Action::Cancel { slave, stage_id, reason } => {
                    // Never waits: the slaves that need cancelling are often the stuck ones.
                    master.peers().try_send(&slave, FromMaster::CancelStage { stage_id, reason });
                    Vec::new()
                }
                Action::Forget { stage_id } => {
                    master.peers().remove_route(stage_id);
                    Vec::new()
                }
            };
            for event in answers {
                todo.extend(engine.handle(event, clock.now()));
            }
        }
        // Whoever waits for what no running stage can give fails now, not at its timeout.
        coordination.after_event(master, &engine, clock.now()).await;
        if let Some((stage_id, event)) = coordination.next_deferred() {
            todo.extend(
                handle_stage_event(
                    master,
                    &mut engine,
                    context,
                    &baselines,
                    &mut coordination,
                    stage_id,
                    event,
                    &clock,
                )
                .await,
            );
            continue;
        }
        let deadline = [engine.next_deadline(), coordination.next_deadline()].into_iter().flatten().min();
        let deadline = deadline.map(|ms| clock.instant(ms));
        tokio::select! {
            Some((stage_id, event)) = events.recv() => {
                if matches!(event, StageEvent::Finished { .. }) {
                    baselines.ready().await;
                }
                todo.extend(handle_stage_event(master, &mut engine, context, &baselines, &mut coordination, stage_id, event, &clock).await);
            }
            peer_event = peer_events.recv(), if peers_open => {
                let gone: Vec<String> = match peer_event {
                    Ok(PeerEvent::Disconnected(name)) => vec![name],
                    Ok(PeerEvent::Connected(_)) => Vec::new(),
                    // Missed some: whoever runs a stage and is not connected is away.
                    Err(broadcast::error::RecvError::Lagged(_)) => engine
                        .record()
                        .slaves
                        .iter()
                        .filter(|slave| engine.running_stage_id(slave).is_some() && !master.peers().is_connected(slave))
                        .cloned()
                        .collect(),
                    Err(broadcast::error::RecvError::Closed) => {
                        peers_open = false;
                        Vec::new()
                    }
                };
                for slave in gone {
                    todo.extend(engine.handle(Event::Disconnected { slave }, clock.now()));
                }
            }
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                coordination.tick(master, clock.now()).await;
                todo.extend(engine.tick(clock.now()));
            }
            changed = cancel.changed(), if cancel_open => {
                cancel_open = changed.is_ok();
                let requested = cancel.borrow().clone();
                if let Some(stop) = requested {
                    todo.extend(engine.handle(Event::Stop(stop), clock.now()));
                }
            }
            _ = save_tick.tick() => {
                if engine.take_dirty() {
                    master.save(engine.record());
                }
            }
        }
    }
}

/// One event of a stage: a sync or fault message goes to the coordination, a finished
/// run's values are judged, and the rest goes to the engine; returns the engine's actions.
#[allow(clippy::too_many_arguments)]
async fn handle_stage_event(
    master: &dyn SessionHost,
    engine: &mut Engine,
    context: &StageContext<'_>,
    baselines: &Baselines,
    coordination: &mut Coordination,
    stage_id: StageId,
    event: StageEvent,
    clock: &Clock,
) -> Vec<Action> {
    let Some(event) = coordination.take(master, engine, stage_id, event, clock.now()).await else {
        return Vec::new();
    };
    let event = match event {
        StageEvent::Finished { slave, mut result } => {
            judge_values(master.store(), engine, context.suite, baselines, &slave, &mut result);
            StageEvent::Finished { slave, result }
        }
        other => other,
    };
    match stage_event(stage_id, event) {
        Some(event) => engine.handle(event, clock.now()),
        None => Vec::new(),
    }
}

/// Checks what a slave reported with a finished run again (a peer is not trusted), adds the
/// checks of its case's thresholds, and stores the values, before the engine judges the run.
/// A result for a run that is no longer waited for is left alone (the engine ignores it).
fn judge_values(
    store: &Store,
    engine: &Engine,
    suite: &Suite,
    baselines: &Baselines,
    slave: &str,
    result: &mut StageResult,
) {
    let stage_id = result.stage_id;
    let Some(index) = engine.current_index().filter(|_| engine.running_stage_id(slave) == Some(stage_id)) else {
        return;
    };
    let (values, problems) = std::mem::take(&mut result.values).sanitized();
    for problem in problems {
        warn!(slave, stage_id, %problem, "slave sent a value against the rules; dropped");
    }
    result.values = values;
    let plan = engine.plan();
    let instance = plan.templates[engine.template_of(index)].instance.map(|i| &plan.instances[i]);
    if let Some(instance) = instance {
        if let Some(case) = suite.tests.iter().find(|case| case.name == instance.case) {
            thresholds::apply(&case.results, &mut result.values, |name| {
                baselines.history(&case.name, &instance.name, slave, name)
            });
        }
    }
    if let Err(err) = store.put_values(stage_id, &result.values) {
        warn!(slave, stage_id, error = %err, "cannot store the stage's values");
    }
}

/// The stage to send: record `index`, made from plan template `template`.
struct Sending<'a> {
    record: &'a SessionRecord,
    index: usize,
    template: usize,
}

/// Sends stage `index` to each slave under a fresh stage id, with its route set up first
/// so that no early message is lost; reports each attempt.
async fn send_stage(
    master: &dyn SessionHost,
    stage: Sending<'_>,
    slaves: &[String],
    context: &StageContext<'_>,
    rosters: &mut Rosters,
    events: &mpsc::UnboundedSender<(StageId, StageEvent)>,
) -> Vec<Event> {
    let first_id = match master.store().next_stage_ids(slaves.len() as u64) {
        Ok(id) => id,
        Err(err) => return vec![Event::StageNotSent { reason: err.to_string() }],
    };
    let mut sent = Vec::with_capacity(slaves.len());
    for (offset, slave) in slaves.iter().enumerate() {
        let stage_id = first_id + offset as u64;
        master.peers().add_route(stage_id, slave, events.clone());
        let connection = master.peers().conn_id(slave);
        let with_roster = rosters.needs(slave, connection);
        let command = context.command(&stage, stage_id, slave, with_roster, master);
        let delivered = master.peers().send(slave, command).await;
        if delivered {
            rosters.delivered(slave, connection);
        }
        sent.push(Event::Sent { slave: slave.clone(), stage_id, delivered });
    }
    sent
}

/// Which connection of each slave has the session's slave list: sent once per connection,
/// so a stage command stays the same size however many slaves the session has.
#[derive(Default)]
struct Rosters(HashMap<String, u64>);

impl Rosters {
    /// Whether a command to `slave` on connection `conn_id` must carry the list.
    fn needs(&self, slave: &str, conn_id: Option<u64>) -> bool {
        conn_id.is_none() || self.0.get(slave) != conn_id.as_ref()
    }

    /// A command with the list reached `slave`'s queue on `conn_id`.
    fn delivered(&mut self, slave: &str, conn_id: Option<u64>) {
        if let Some(conn_id) = conn_id {
            self.0.insert(slave.to_string(), conn_id);
        }
    }
}

/// A routed message of a stage, as an engine event.
fn stage_event(stage_id: StageId, event: StageEvent) -> Option<Event> {
    Some(match event {
        StageEvent::Started { slave, unix_ms } => Event::Started { slave, stage_id, unix_ms },
        StageEvent::Output { slave, bytes } => Event::Output { slave, stage_id, bytes },
        StageEvent::Log { slave, log } => Event::Log { slave, stage_id, path: log.path },
        StageEvent::Finished { slave, result } => Event::Finished { slave, result },
        StageEvent::Resumed { slave } => Event::Resumed { slave, stage_id },
        StageEvent::Lost { slave } => Event::Lost { slave, stage_id },
        // The session's coordination takes these; the engine has no part in them.
        StageEvent::Sync { .. }
        | StageEvent::SyncCancel { .. }
        | StageEvent::Fault { .. }
        | StageEvent::FaultDone { .. }
        | StageEvent::SessionEnded { .. } => return None,
    })
}
