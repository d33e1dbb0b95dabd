//! The slave's side of the protocol.
//!
//! Stages run in their own tasks and outlive connections: when the connection drops, a
//! running script goes on and its output is kept in a bounded replay buffer. After a
//! reconnect the slave lists the stages it holds (`Reattach`); the master answers, for each,
//! from which output chunk to resend (`ResumeStage`), or to forget it. Everything for one
//! stage goes out in order through the connection's single queue, so a stage's result never
//! overtakes its output.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tracing::{debug, info, warn};
use xrdtest_defs::tags::expand_tags;
use xrdtest_proto::client::{Backoff, ConnectError, ConnectSettings, MasterConnection};
use xrdtest_proto::{
    Connection, FromMaster, Heartbeat, HeldStage, OutputChunk, Role, StageCommand, StageId, StageResult, SyncReply,
    SyncRequest, ToMaster,
};

use crate::config::SlaveConfig;
use crate::executor::{run_stage, unix_ms, ExecEvent, StageSpec};
use crate::faults::Faults;
use crate::logs::collect_logs;
use crate::session_files;
use crate::session_scope::{sweep_work_dirs, SessionScopes};
use crate::sync;

/// Bytes of output that may wait in a connection's queue before stages pause.
const LINK_CREDIT: usize = 8 << 20;
/// Finished stages kept for resending if the master missed their end.
const FINISHED_KEPT: usize = 8;
/// How often old session work folders are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// One message queued on a connection, with the credit it holds.
struct Outgoing {
    message: ToMaster,
    credit: u32,
}

/// The live connection, while there is one.
struct Link {
    tx: mpsc::UnboundedSender<Outgoing>,
    credit: Arc<Semaphore>,
}

/// A stage this slave holds: running, or finished but maybe not yet received.
struct HeldStageState {
    /// Recent output chunks, for resending (oldest dropped past the replay limit).
    buffer: VecDeque<OutputChunk>,
    buffered_bytes: u64,
    next_seq: u64,
    /// Whether new messages go straight to the link (false between a reconnect and the
    /// master's `ResumeStage`).
    live: bool,
    /// Logs and the result, once the stage ended.
    ending: Option<Vec<ToMaster>>,
    /// The `StageStarted` message, resent if the master missed it.
    started: Option<ToMaster>,
    cancel: Option<oneshot::Sender<String>>,
}

#[derive(Default)]
struct State {
    stages: BTreeMap<StageId, HeldStageState>,
    link: Option<Link>,
    /// The slaves of recent sessions, newest last: the master sends a session's list once
    /// per connection, not with every stage (with thousands of slaves it would be most of
    /// every command).
    rosters: VecDeque<(String, Arc<String>)>,
    /// Sync requests of running stages' scripts sent to the master and not yet answered,
    /// by request id; sent again after a reconnect.
    sync_pending: HashMap<u64, PendingSync>,
    next_sync_request: u64,
    /// Raised at every connect, so a dead-man timer knows whether the master came back.
    link_generation: u64,
    /// The dead-man time of the faults applied here (the largest asked).
    deadman_ms: u64,
}

struct PendingSync {
    stage_id: StageId,
    /// What went to the master (`Sync` or `Fault`), sent again after a reconnect.
    message: ToMaster,
    reply: oneshot::Sender<SyncReply>,
}

/// Sessions whose slave lists are kept.
const ROSTERS_KEPT: usize = 8;

impl State {
    /// The session's slaves: the command's list when it carries one (kept for later
    /// stages), else the one kept from an earlier stage of the session.
    fn roster(&mut self, session_id: &str, sent: &Arc<String>) -> Option<Arc<String>> {
        if !sent.is_empty() {
            let roster = sent.clone();
            self.rosters.retain(|(id, _)| id != session_id);
            self.rosters.push_back((session_id.to_string(), roster.clone()));
            while self.rosters.len() > ROSTERS_KEPT {
                self.rosters.pop_front();
            }
            return Some(roster);
        }
        self.rosters.iter().rev().find(|(id, _)| id == session_id).map(|(_, roster)| roster.clone())
    }
}

/// Told of every change of the connection to the master, as a line for people (the
/// daemon shows it as its systemd status). Must return at once.
pub type ConnectionListener = Box<dyn Fn(&str) + Send + Sync>;

/// The slave: its configuration and the stages it holds.
pub struct Slave {
    config: SlaveConfig,
    functions: std::path::PathBuf,
    state: Mutex<State>,
    connection_listener: Mutex<Option<ConnectionListener>>,
    /// The scripts' sync socket, once bound ([`crate::sync`]).
    sync_socket: Mutex<Option<std::path::PathBuf>>,
    /// The faults this host applies for the master ([`crate::faults`]).
    faults: Arc<Faults>,
    /// Each session's processes, ended with it ([`crate::session_scope`]).
    scopes: Arc<SessionScopes>,
}

fn chunk_bytes(chunk: &OutputChunk) -> u64 {
    chunk.lines.iter().map(|l| l.text.len() as u64 + 16).sum()
}

impl Slave {
    pub fn new(config: SlaveConfig) -> std::io::Result<Arc<Slave>> {
        std::fs::create_dir_all(&config.work_dir)?;
        let functions = crate::functions::install(&config.work_dir)?;
        let (scopes, how) = SessionScopes::detect(&config.name, &config.work_dir, config.session_cleanup)
            .map_err(std::io::Error::other)?;
        info!(method = scopes.method(), "finding each session's processes by {how}");
        Ok(Arc::new(Slave {
            scopes: Arc::new(scopes),
            functions,
            state: Mutex::new(State::default()),
            connection_listener: Mutex::new(None),
            sync_socket: Mutex::new(None),
            faults: Arc::new(Faults::new(PathBuf::from(current_exe()), config.master.clone())),
            config,
        }))
    }

    /// Sets who hears about the connection (see [`ConnectionListener`]).
    pub fn on_connection_change(&self, listener: ConnectionListener) {
        *self.connection_listener.lock().unwrap_or_else(|p| p.into_inner()) = Some(listener);
    }

    fn connection_changed(&self, line: String) {
        if let Some(listener) = self.connection_listener.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            listener(&line);
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connects, serves, and reconnects with capped backoff until `shutdown` turns true.
    pub async fn run(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        self.open_sync_socket();
        self.end_stale_sessions().await;
        self.sweep_work_dirs_periodically();
        let mut backoff = Backoff::new(self.config.max_backoff);
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.connect().await {
                Ok((conn, heartbeat)) => {
                    backoff.reset();
                    info!(master = %self.config.master, name = %self.config.name, "connected to the master");
                    self.connection_changed(format!("connected to the master at {}", self.config.master));
                    let reason = self.serve(conn, heartbeat, &mut shutdown).await;
                    self.state().link = None;
                    self.arm_deadman();
                    self.arm_session_grace();
                    info!(%reason, "connection to the master ended");
                    self.connection_changed(format!("reconnecting: connection lost ({reason})"));
                }
                Err(ConnectError::Refused(reason)) => {
                    warn!(master = %self.config.master, %reason, "the master refused this slave");
                    self.connection_changed(format!("refused by the master at {}: {reason}", self.config.master));
                }
                Err(ConnectError::Other(reason)) => {
                    warn!(master = %self.config.master, %reason, retry_in = ?backoff.current(), "cannot reach the master");
                    self.connection_changed(format!("waiting for the master at {}: {reason}", self.config.master));
                }
            }
            if !backoff.wait(&mut shutdown).await {
                break;
            }
        }
        self.stop_all_stages("the slave is shutting down").await;
        self.heal_all_faults("the slave is shutting down").await;
    }

    /// Connects and completes the handshake; returns the connection and the heartbeat
    /// interval the master asked for.
    async fn connect(&self) -> Result<(MasterConnection, Duration), ConnectError> {
        xrdtest_proto::client::connect(&ConnectSettings {
            master: self.config.master.clone(),
            role: Role::Slave,
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
        shutdown: &mut watch::Receiver<bool>,
    ) -> String
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
        let credit = Arc::new(Semaphore::new(LINK_CREDIT));
        let held: Vec<HeldStage> = {
            let mut state = self.state();
            for stage in state.stages.values_mut() {
                stage.live = false;
            }
            state.link = Some(Link { tx: tx.clone(), credit: credit.clone() });
            state.link_generation += 1;
            state
                .stages
                .iter()
                .map(|(id, s)| HeldStage { stage_id: *id, chunks: s.next_seq, finished: s.ending.is_some() })
                .collect()
        };
        // Always sent, even empty: it tells the master which of its stages this slave lost.
        let faults = self.faults.held();
        let sessions = self.scopes.sessions();
        if let Err(err) = conn.send(&ToMaster::Reattach { stages: held, faults, sessions }).await {
            return format!("send: {err}");
        }
        // Requests the master may not have had or answered; it applies each once.
        let pending: Vec<ToMaster> = self.state().sync_pending.values().map(|p| p.message.clone()).collect();
        for message in pending {
            if let Err(err) = conn.send(&message).await {
                return format!("send: {err}");
            }
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
                Some(outgoing) = rx.recv() => {
                    let result = conn.send(&outgoing.message).await;
                    credit.add_permits(outgoing.credit as usize);
                    if let Err(err) = result {
                        return format!("send: {err}");
                    }
                }
                _ = ticker.tick() => {
                    if last_heard.elapsed() > heartbeat * 6 {
                        return format!("nothing heard from the master for {:?}", last_heard.elapsed());
                    }
                    seq += 1;
                    if let Err(err) = conn.send(&ToMaster::Heartbeat(Heartbeat { seq, sent_unix_ms: unix_ms() })).await {
                        return format!("send: {err}");
                    }
                }
                _ = shutdown.changed() => {
                    self.stop_all_stages("the slave is shutting down").await;
                    // Let the killed stages' results go out before saying goodbye.
                    while let Ok(outgoing) = rx.try_recv() {
                        let _ = conn.send(&outgoing.message).await;
                    }
                    let _ = conn.send(&ToMaster::Disconnect { reason: "slave shutting down".into() }).await;
                    return "shutting down".into();
                }
            }
        }
    }

    /// Handles one message from the master; `Some(reason)` ends the connection.
    fn handle(self: &Arc<Self>, message: FromMaster) -> Option<String> {
        match message {
            FromMaster::RunStage(command) => self.start_stage(command),
            FromMaster::CancelStage { stage_id, reason } => {
                if let Some(cancel) = self.state().stages.get_mut(&stage_id).and_then(|s| s.cancel.take()) {
                    info!(stage_id, %reason, "cancelling stage");
                    let _ = cancel.send(reason);
                }
            }
            FromMaster::ResumeStage { stage_id, from_seq } => self.resume(stage_id, from_seq),
            FromMaster::ApplyFault(apply) => self.apply_fault(apply),
            FromMaster::HealFault { fault_id } => self.heal_fault(fault_id),
            FromMaster::EndSession { request_id, session_id } => self.end_session(request_id, session_id),
            FromMaster::SyncReply { request_id, reply } => {
                if let Some(pending) = self.state().sync_pending.remove(&request_id) {
                    let _ = pending.reply.send(reply);
                }
            }
            FromMaster::Heartbeat(_) | FromMaster::TagReply { .. } => {}
            FromMaster::StartCluster(_) | FromMaster::StopCluster { .. } | FromMaster::SaveCluster { .. } => {
                warn!("the master sent a cluster command to a slave; ignored");
            }
            FromMaster::Disconnect { reason } => return Some(format!("the master disconnected us: {reason}")),
        }
        None
    }

    /// Resends a held stage's output from chunk `from_seq`, and its end if it ended; with
    /// `None`, the master no longer wants the stage: kill and forget it.
    fn resume(&self, stage_id: StageId, from_seq: Option<u64>) {
        let mut state = self.state();
        let Some(from_seq) = from_seq else {
            if let Some(mut stage) = state.stages.remove(&stage_id) {
                if let Some(cancel) = stage.cancel.take() {
                    let _ = cancel.send("the master no longer wants this stage".into());
                }
            }
            return;
        };
        let State { stages, link, .. } = &mut *state;
        let (Some(stage), Some(link)) = (stages.get_mut(&stage_id), link.as_ref()) else { return };
        let mut resend: Vec<ToMaster> = Vec::new();
        if from_seq == 0 {
            resend.extend(stage.started.clone());
        }
        let oldest = stage.buffer.front().map(|c| c.seq).unwrap_or(stage.next_seq);
        if from_seq < oldest {
            warn!(stage_id, lost_chunks = oldest - from_seq, "output older than the replay buffer is lost");
        }
        resend.extend(stage.buffer.iter().filter(|c| c.seq >= from_seq).cloned().map(ToMaster::Output));
        resend.extend(stage.ending.iter().flatten().cloned());
        info!(stage_id, from_seq, messages = resend.len(), "resuming stage after reconnect");
        for message in resend {
            let _ = link.tx.send(Outgoing { message, credit: 0 });
        }
        stage.live = true;
    }

    fn start_stage(self: &Arc<Self>, command: StageCommand) {
        let stage_id = command.stage_id;
        let (cancel_tx, cancel_rx) = oneshot::channel();
        {
            let mut state = self.state();
            if state.stages.contains_key(&stage_id) {
                debug!(stage_id, "stage already held; ignoring the repeat");
                return;
            }
            // The master sends a new stage only after the barrier, so it has the ends of the
            // stages this slave finished before: keep just a few, for safety.
            let finished: Vec<StageId> =
                state.stages.iter().filter(|(_, s)| s.ending.is_some()).map(|(id, _)| *id).collect();
            for id in finished.iter().take(finished.len().saturating_sub(FINISHED_KEPT)) {
                state.stages.remove(id);
            }
            state.stages.insert(
                stage_id,
                HeldStageState {
                    buffer: VecDeque::new(),
                    buffered_bytes: 0,
                    next_seq: 0,
                    live: true,
                    ending: None,
                    started: None,
                    cancel: Some(cancel_tx),
                },
            );
        }
        let slave = self.clone();
        tokio::spawn(async move { slave.execute(command, cancel_rx).await });
    }

    /// Runs one stage and reports everything about it.
    async fn execute(self: Arc<Self>, command: StageCommand, cancel: oneshot::Receiver<String>) {
        let stage_id = command.stage_id;
        let mut tags = command.tags.clone();
        tags.insert("slavename".into(), self.config.name.clone());
        tags.entry("diskmounts".into()).or_default();
        tags.entry("roles".into()).or_default();
        let work_dir = self.session_work_dir(&command.session_id);
        session_files::add_tags(&mut tags, &work_dir);
        let roster = self.state().roster(&command.session_id, &command.slaves);
        let slaves = match roster {
            Some(roster) => roster.to_string(),
            None => {
                // Only if the list was lost between connections; the master resends it on
                // every new connection, so this is a bug worth a warning, not a failure.
                warn!(session = %command.session_id, "no slave list for this session; XRDTEST_SLAVES names this slave only");
                self.config.name.clone()
            }
        };
        let env = vec![
            ("XRDTEST_SESSION".to_string(), command.session_id.clone()),
            ("XRDTEST_SUITE".to_string(), command.suite.clone()),
            ("XRDTEST_CASE".to_string(), command.stage.case().unwrap_or("").to_string()),
            ("XRDTEST_STAGE".to_string(), command.stage.kind().to_string()),
            ("XRDTEST_SLAVE".to_string(), self.config.name.clone()),
            ("XRDTEST_SLAVES".to_string(), slaves),
            ("XRDTEST_WORKDIR".to_string(), work_dir.display().to_string()),
            ("XRDTEST_FUNCTIONS".to_string(), self.functions.display().to_string()),
            ("XRDTEST_STAGE_ID".to_string(), stage_id.to_string()),
            ("XRDTEST_SYNC".to_string(), self.sync_socket_path()),
            ("XRDTEST_SLAVE_BIN".to_string(), current_exe()),
            // The master sends each slave's roles as its `roles` tag.
            ("XRDTEST_ROLES".to_string(), tags.get("roles").cloned().unwrap_or_default()),
        ];
        let placement = self.scopes.place(&command.session_id);
        let mut env = env;
        env.push(placement.marker);
        let spec = StageSpec {
            stage_id,
            script: expand_tags(&command.script, &tags),
            env,
            cgroup_procs: placement.cgroup_procs,
            work_dir,
            files: command.files.clone(),
            timeout: Duration::from_millis(command.timeout_ms),
            output_limit_bytes: command.output_limit_bytes,
        };
        info!(stage_id, session = %command.session_id, stage = %command.stage, "stage starting");
        let (events_tx, mut events) = mpsc::channel(16);
        let runner = tokio::spawn(run_stage(spec, events_tx, cancel));
        let mut chunks = 0u64;
        while let Some(event) = events.recv().await {
            match event {
                ExecEvent::Started { unix_ms, .. } => {
                    let message = ToMaster::StageStarted { stage_id, started_unix_ms: unix_ms };
                    if let Some(stage) = self.state().stages.get_mut(&stage_id) {
                        stage.started = Some(message.clone());
                    }
                    self.emit(stage_id, message, 0).await;
                }
                ExecEvent::Output(lines) => {
                    let chunk = OutputChunk { stage_id, seq: chunks, lines };
                    chunks += 1;
                    self.emit_chunk(chunk).await;
                }
                ExecEvent::Finished(summary) => {
                    // Logs are read before the result goes out, so the master has them when
                    // the barrier opens.
                    let log_limit = command.log_limit_bytes.min(self.config.max_frame_bytes as u64 / 2);
                    let paths: Vec<String> = command.logs.iter().map(|p| expand_tags(p, &tags)).collect();
                    let mut ending: Vec<ToMaster> =
                        collect_logs(stage_id, &paths, log_limit).await.into_iter().map(ToMaster::LogFile).collect();
                    ending.push(ToMaster::StageFinished(StageResult {
                        stage_id,
                        outcome: summary.outcome.clone(),
                        started_unix_ms: summary.started_unix_ms,
                        ended_unix_ms: summary.ended_unix_ms,
                        output_bytes: summary.output_bytes,
                        dropped_bytes: summary.dropped_bytes,
                        chunks,
                        values: summary.values.clone(),
                    }));
                    info!(stage_id, outcome = ?summary.outcome, "stage finished");
                    let link = {
                        let mut state = self.state();
                        // Scripts of this stage still waiting (in the background) hear that
                        // it ended; the master drops their waits itself.
                        state.sync_pending.retain(|_, pending| pending.stage_id != stage_id);
                        let link_tx = state.link.as_ref().map(|l| l.tx.clone());
                        match state.stages.get_mut(&stage_id) {
                            Some(stage) => {
                                stage.ending = Some(ending.clone());
                                stage.cancel = None;
                                if stage.live {
                                    link_tx
                                } else {
                                    None
                                }
                            }
                            None => None,
                        }
                    };
                    if let Some(tx) = link {
                        for message in ending {
                            let _ = tx.send(Outgoing { message, credit: 0 });
                        }
                    }
                }
            }
        }
        let _ = runner.await;
    }

    /// Buffers a chunk for replay and sends it when the stage is live.
    async fn emit_chunk(&self, chunk: OutputChunk) {
        let bytes = chunk_bytes(&chunk);
        {
            let mut state = self.state();
            let limit = self.config.replay_buffer_bytes;
            if let Some(stage) = state.stages.get_mut(&chunk.stage_id) {
                stage.next_seq = chunk.seq + 1;
                stage.buffer.push_back(chunk.clone());
                stage.buffered_bytes += bytes;
                while stage.buffered_bytes > limit && stage.buffer.len() > 1 {
                    if let Some(old) = stage.buffer.pop_front() {
                        stage.buffered_bytes -= chunk_bytes(&old);
                    }
                }
            }
        }
        self.emit(chunk.stage_id, ToMaster::Output(chunk), bytes.min(LINK_CREDIT as u64) as u32).await;
    }

    /// Sends a message of a stage on the link if the stage is live, waiting for credit so
    /// a fast script cannot queue unbounded output behind a slow network.
    async fn emit(&self, stage_id: StageId, message: ToMaster, credit: u32) {
        let semaphore = {
            let state = self.state();
            match (&state.link, state.stages.get(&stage_id)) {
                (Some(link), Some(stage)) if stage.live => Some(link.credit.clone()),
                _ => None,
            }
        };
        let Some(semaphore) = semaphore else { return };
        let held = match semaphore.acquire_many(credit).await {
            Ok(permit) => {
                permit.forget();
                credit
            }
            Err(_) => 0,
        };
        let state = self.state();
        if let (Some(link), Some(stage)) = (&state.link, state.stages.get(&stage_id)) {
            if stage.live && Arc::ptr_eq(&link.credit, &semaphore) {
                let _ = link.tx.send(Outgoing { message, credit: held });
                return;
            }
        }
        // The link changed while we waited: give the credit back; the replay buffer has it.
        semaphore.add_permits(held as usize);
    }

    fn sync_socket_path(&self) -> String {
        let socket = self.sync_socket.lock().unwrap_or_else(|p| p.into_inner());
        socket.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
    }

    /// Binds the scripts' sync socket and serves it; without it, the sync helpers say so.
    fn open_sync_socket(self: &Arc<Self>) {
        let path = sync::socket_path(&self.config.work_dir);
        let listener = match sync::bind(&path) {
            Ok(listener) => listener,
            Err(err) => {
                warn!(socket = %path.display(), error = %err, "cannot open the sync socket; stage scripts cannot use sync_*");
                return;
            }
        };
        debug!(socket = %path.display(), "sync socket ready");
        *self.sync_socket.lock().unwrap_or_else(|p| p.into_inner()) = Some(path);
        let slave = self.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let slave = slave.clone();
                        tokio::spawn(async move { slave.serve_sync_client(stream).await });
                    }
                    Err(err) => {
                        warn!(error = %err, "sync socket accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }

    /// One script's sync call: checks its stage runs here, asks the master, answers.
    async fn serve_sync_client(&self, mut stream: tokio::net::UnixStream) {
        let request = match sync::read_request(&mut stream).await {
            Ok(request) => request,
            Err(err) => {
                debug!(error = %err, "bad sync request");
                return;
            }
        };
        let (stage_id, timeout_ms) = (request.stage_id, request.timeout_ms);
        let (reply_tx, reply_rx) = oneshot::channel();
        let registered = {
            let mut state = self.state();
            let running = state.stages.get(&stage_id).is_some_and(|s| s.ending.is_none());
            if running {
                state.next_sync_request += 1;
                let request_id = state.next_sync_request;
                let message = match request.op {
                    sync::LocalOp::Sync(op) => ToMaster::Sync(SyncRequest { stage_id, request_id, op, timeout_ms }),
                    sync::LocalOp::Fault(op) => ToMaster::Fault { stage_id, request_id, op },
                };
                if let Some(link) = &state.link {
                    let _ = link.tx.send(Outgoing { message: message.clone(), credit: 0 });
                }
                state.sync_pending.insert(request_id, PendingSync { stage_id, message, reply: reply_tx });
                Some(request_id)
            } else {
                None
            }
        };
        let Some(request_id) = registered else {
            let reason = format!("stage {stage_id} is not running on this slave");
            let _ = sync::write_frame(&mut stream, &SyncReply::Failed { reason }).await;
            return;
        };
        // The master times the wait; this only guards against a master that never answers.
        let local_limit = timeout_ms.map(|ms| Duration::from_millis(ms) + Duration::from_secs(30));
        let reply = tokio::select! {
            reply = reply_rx => reply.unwrap_or_else(|_| SyncReply::Failed { reason: "the stage ended".into() }),
            _ = sync::client_gone(&mut stream) => {
                self.drop_sync_request(stage_id, request_id);
                return;
            }
            _ = tokio::time::sleep(local_limit.unwrap_or(Duration::MAX)), if local_limit.is_some() => {
                self.drop_sync_request(stage_id, request_id);
                SyncReply::Failed { reason: "no answer from the master in time".into() }
            }
        };
        let _ = sync::write_frame(&mut stream, &reply).await;
    }

    /// Forgets a sync request whose script went away, and tells the master.
    fn drop_sync_request(&self, stage_id: StageId, request_id: u64) {
        let state = &mut *self.state();
        if state.sync_pending.remove(&request_id).is_some() {
            if let Some(link) = &state.link {
                let _ = link.tx.send(Outgoing { message: ToMaster::SyncCancel { stage_id, request_id }, credit: 0 });
            }
        }
    }

    /// Applies a fault off the async threads (it runs nft, tc, pgrep) and says how it went.
    fn apply_fault(self: &Arc<Self>, apply: xrdtest_proto::ApplyFault) {
        {
            let mut state = self.state();
            state.deadman_ms = state.deadman_ms.max(apply.deadman_ms);
        }
        let slave = self.clone();
        tokio::spawn(async move {
            let faults = slave.faults.clone();
            let (fault_id, action) = (apply.fault_id, apply.action);
            let result = tokio::task::spawn_blocking(move || faults.apply(fault_id, &action))
                .await
                .unwrap_or_else(|err| Err(format!("the fault task failed: {err}")));
            match &result {
                Ok(detail) => info!(fault_id, %detail, "fault applied"),
                Err(error) => warn!(fault_id, %error, "fault not applied"),
            }
            slave.send_fault_done(fault_id, false, result);
        });
    }

    /// Heals one fault (or all) and says how it went, per fault.
    fn heal_fault(self: &Arc<Self>, fault_id: Option<u64>) {
        let slave = self.clone();
        tokio::spawn(async move {
            for (id, result) in slave.heal_logged(fault_id).await {
                slave.send_fault_done(id, true, result);
            }
        });
    }

    /// Heals one fault (or, with `None`, all) off the async threads, logging each outcome.
    async fn heal_logged(&self, fault_id: Option<u64>) -> Vec<(u64, Result<String, String>)> {
        let faults = self.faults.clone();
        let results = tokio::task::spawn_blocking(move || match fault_id {
            Some(id) => vec![(id, faults.heal(id))],
            None => faults.heal_all(),
        })
        .await
        .unwrap_or_default();
        for (id, result) in &results {
            match result {
                Ok(detail) => info!(fault_id = id, %detail, "fault healed"),
                Err(error) => warn!(fault_id = id, %error, "fault not healed"),
            }
        }
        results
    }

    fn send_fault_done(&self, fault_id: u64, healed: bool, result: Result<String, String>) {
        let (error, detail) = match result {
            Ok(detail) => (None, detail),
            Err(error) => (Some(error), String::new()),
        };
        if let Some(link) = &self.state().link {
            let message = ToMaster::FaultDone { fault_id, healed, error, detail };
            let _ = link.tx.send(Outgoing { message, credit: 0 });
        }
    }

    /// Ends what session `session_id` left here and answers the master (unless `request_id`
    /// is 0); then removes the work folders that are old enough.
    fn end_session(self: &Arc<Self>, request_id: u64, session_id: String) {
        let slave = self.clone();
        tokio::spawn(async move {
            let scopes = slave.scopes.clone();
            let id = session_id.clone();
            let work_dir = slave.session_work_dir(&session_id);
            let cleanup = match tokio::task::spawn_blocking(move || {
                let cleanup = scopes.end(&id);
                // After the processes: none of them reads the credentials any more.
                if let Err(err) = session_files::remove(&work_dir) {
                    warn!(session = %id, error = %err, "cannot remove the session's credentials");
                }
                cleanup
            })
            .await
            {
                Ok(cleanup) => cleanup,
                Err(err) => xrdtest_proto::SessionCleanup {
                    method: slave.scopes.method().into(),
                    processes_ended: 0,
                    problem: Some(format!("the cleanup task failed: {err}")),
                },
            };
            match &cleanup.problem {
                None => {
                    info!(session = %session_id, ended = cleanup.processes_ended, method = %cleanup.method, "session ended here")
                }
                Some(problem) => {
                    warn!(session = %session_id, ended = cleanup.processes_ended, %problem, "session ended here, not cleanly")
                }
            }
            if request_id != 0 {
                if let Some(link) = &slave.state().link {
                    let message = ToMaster::SessionEnded { request_id, cleanup };
                    let _ = link.tx.send(Outgoing { message, credit: 0 });
                }
            }
            slave.sweep_work_dirs().await;
        });
    }

    /// Ends what sessions of an earlier run of this slave left (it crashed or was restarted:
    /// the master has lost those stages).
    async fn end_stale_sessions(&self) {
        let scopes = self.scopes.clone();
        if let Ok(cleanup) = tokio::task::spawn_blocking(move || scopes.end_stale()).await {
            if cleanup.processes_ended > 0 || cleanup.problem.is_some() {
                warn!(
                    ended = cleanup.processes_ended,
                    problem = cleanup.problem.as_deref().unwrap_or(""),
                    "ended the processes sessions of an earlier run left"
                );
            }
        }
    }

    /// Where the sessions' work folders are.
    fn sessions_dir(&self) -> PathBuf {
        self.config.work_dir.join("sessions")
    }

    /// A session's work folder (its scripts' cwd, `XRDTEST_WORKDIR`).
    fn session_work_dir(&self, session: &str) -> PathBuf {
        self.sessions_dir().join(session)
    }

    async fn sweep_work_dirs(&self) {
        let dir = self.sessions_dir();
        let (keep, scopes) = (self.config.keep_work_dirs, self.scopes.clone());
        let is_active = move |name: &str| scopes.sessions().iter().any(|s| s == name);
        let removed = tokio::task::spawn_blocking(move || sweep_work_dirs(&dir, keep, &is_active)).await.unwrap_or(0);
        if removed > 0 {
            info!(removed, keep = ?self.config.keep_work_dirs, "removed old session work folders");
        }
    }

    fn sweep_work_dirs_periodically(self: &Arc<Self>) {
        let slave = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(SWEEP_EVERY);
            loop {
                ticker.tick().await;
                let Some(slave) = slave.upgrade() else { break };
                slave.sweep_work_dirs().await;
            }
        });
    }

    /// With the master away past `session_grace`, it has long given up on this slave's
    /// stages: they are stopped and every session's processes ended.
    fn arm_session_grace(self: &Arc<Self>) {
        let generation = self.state().link_generation;
        let slave = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(slave.config.session_grace).await;
            let away = {
                let state = slave.state();
                state.link.is_none() && state.link_generation == generation
            };
            if !away {
                return;
            }
            slave.stop_all_stages("the master is away past the session grace period").await;
            let scopes = slave.scopes.clone();
            if let Ok(ended) = tokio::task::spawn_blocking(move || scopes.end_all()).await {
                for (session, cleanup) in ended {
                    warn!(%session, ended = cleanup.processes_ended, "the master is away past session_grace; ended the session's processes");
                }
            }
        });
    }

    /// The dead-man timer: with faults applied, a master away longer than their dead-man
    /// time has them healed here, so a fault never outlives the session that made it.
    fn arm_deadman(self: &Arc<Self>) {
        let (generation, deadman_ms) = {
            let state = self.state();
            (state.link_generation, state.deadman_ms)
        };
        // Armed even with nothing held: an apply still running when the link dropped is
        // held by the time the timer fires.
        let slave = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(deadman_ms)).await;
            // Back and gone again since: the timer of that loss decides.
            let away = {
                let state = slave.state();
                state.link.is_none() && state.link_generation == generation
            };
            if away {
                slave.heal_all_faults("the master is away past the dead-man time").await;
            }
        });
    }

    /// Heals every fault held, after any apply still running (see [`Faults::heal_all`]).
    async fn heal_all_faults(&self, why: &str) {
        let results = self.heal_logged(None).await;
        if !results.is_empty() {
            warn!(reason = why, faults = results.len(), "healed every fault applied here");
        }
    }

    /// Kills every running stage and waits for them to end.
    async fn stop_all_stages(&self, reason: &str) {
        let cancels: Vec<oneshot::Sender<String>> =
            self.state().stages.values_mut().filter_map(|s| s.cancel.take()).collect();
        if cancels.is_empty() {
            return;
        }
        info!(stages = cancels.len(), "stopping running stages");
        for cancel in cancels {
            let _ = cancel.send(reason.to_string());
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if self.state().stages.values().all(|s| s.ending.is_some()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// This program, for `XRDTEST_SLAVE_BIN`: the sync helpers run `$XRDTEST_SLAVE_BIN sync ...`
/// (every binary that embeds the slave answers that subcommand).
fn current_exe() -> String {
    std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "xrdtest-slave".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &str) -> Arc<String> {
        Arc::new(list.to_string())
    }

    #[test]
    fn a_sessions_slave_list_is_kept_for_its_later_stages() {
        let mut state = State::default();
        let roster = state.roster("7", &names("a b")).unwrap();
        assert_eq!(*roster, "a b");
        assert_eq!(*state.roster("7", &Arc::default()).unwrap(), "a b", "a later stage sends none");
        assert!(state.roster("8", &Arc::default()).is_none(), "another session's list is not this one's");
        assert_eq!(*state.roster("7", &names("a")).unwrap(), "a", "a list sent again replaces it");
        for session in 0..ROSTERS_KEPT {
            state.roster(&format!("s{session}"), &names("x"));
        }
        assert!(state.roster("7", &Arc::default()).is_none(), "only the newest sessions are kept");
        assert_eq!(state.rosters.len(), ROSTERS_KEPT);
    }
}
