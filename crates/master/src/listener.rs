//! Accepts slaves and hypervisors: TLS, handshake, registration, then one task per
//! connection that routes what the peer says and sends what the master queues for it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};
use xrdtest_proto::handshake::ServerHandshake;
use xrdtest_proto::{server_handshake, Connection, FromMaster, Heartbeat, RefusalReason, Role, SyncReply, ToMaster};

use crate::master::Master;
use crate::model::now_ms;
use crate::peer_auth::Verdict;
use crate::peers::{PeerHandle, StageEvent};
use crate::throttle::OncePerSecond;

/// Time a new connection has for TLS and the handshake together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Outgoing messages queued per peer before senders wait.
const OUTGOING_QUEUE: usize = 256;
/// Largest frame of a peer not authenticated yet: a `Hello` is far smaller, and a stranger
/// must not make the master buffer megabytes. Raised to `max_frame_bytes` once welcomed.
pub const PRE_HANDSHAKE_MAX_FRAME: usize = 64 * 1024;
/// Connections in TLS or the handshake at once; more are closed at accept, so a flood of
/// idle strangers cannot use up the master's descriptors and memory.
pub const MAX_UNAUTHENTICATED: usize = 256;

/// Permits of [`MAX_UNAUTHENTICATED`].
static UNAUTHENTICATED: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_UNAUTHENTICATED);
/// One warning a second at most about refused connections.
static REFUSALS_LOGGED: OncePerSecond = OncePerSecond::new();

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// Connections that may be sending a command with a session's slave list at one time.
static LARGE_SENDS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(64);

fn carries_roster(message: &FromMaster) -> bool {
    matches!(message, FromMaster::RunStage(command) if command.slaves.len() > 4096)
}

/// Accepts connections until the listener fails; each connection lives in its own task, so a
/// bad peer ends only its own connection.
pub async fn serve(master: Arc<Master>, listener: TcpListener, acceptor: TlsAcceptor) {
    loop {
        let (tcp, address) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: back off rather than spin.
                warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = UNAUTHENTICATED.try_acquire() else {
            if REFUSALS_LOGGED.allow() {
                warn!(peer = %address, limit = MAX_UNAUTHENTICATED, "too many connections in their handshake; closing new ones");
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let master = master.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            if let Err(reason) = handle_connection(master, tcp, address, acceptor, permit).await {
                info!(peer = %address, %reason, "connection closed");
            }
        });
    }
}

async fn handle_connection(
    master: Arc<Master>,
    tcp: TcpStream,
    address: SocketAddr,
    acceptor: TlsAcceptor,
    unauthenticated: tokio::sync::SemaphorePermit<'static>,
) -> Result<(), String> {
    // The master's own address on this connection: a hypervisor's VMs may reach it there.
    let local_ip = tcp.local_addr().ok().map(|a| a.ip());
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    // The certificate a peer presented (the TLS layer checked it is of this CA); which name it
    // may use is `peer_auth`'s decision.
    let client_cert = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()).map(|c| c.as_ref().to_vec());
    let mut conn = Connection::new(tls, PRE_HANDSHAKE_MAX_FRAME);
    let version = env!("CARGO_PKG_VERSION");
    let handshake = ServerHandshake {
        master_version: version,
        heartbeat_interval: master.config.heartbeat_interval,
        timeout: HANDSHAKE_TIMEOUT,
    };
    let hello = server_handshake(&mut conn, &handshake).await.map_err(|e| {
        warn!(peer = %address, error = %e, "peer refused");
        format!("handshake: {e}")
    })?;
    let certificate = match master.auth.authenticate(&hello, client_cert.as_deref(), address) {
        Verdict::Admit { certificate } => certificate,
        Verdict::HandCertificate { certificate } => {
            info!(peer = %address, name = %hello.name, "handing a peer its certificate; it connects again with it");
            let _ = handshake.hand_certificate(&mut conn, certificate).await;
            return Err("handed its certificate".into());
        }
        Verdict::Refuse { reason, message } => {
            if REFUSALS_LOGGED.allow() {
                warn!(peer = %address, name = %hello.name, role = hello.role.as_str(), ?reason, %message, "peer refused");
            }
            let _ = handshake.refuse(&mut conn, reason, message.clone()).await;
            return Err(format!("refused: {message}"));
        }
    };
    let conn_id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
    let close = Arc::new(tokio::sync::Notify::new());
    let (tx, rx) = mpsc::channel(OUTGOING_QUEUE);
    if let Err(err) = master.peers.register(
        &hello.name,
        hello.role,
        address,
        &hello.software_version,
        hello.restorable,
        PeerHandle { conn_id, tx, master_ip: local_ip.map(|ip| ip.to_canonical()), close: close.clone() },
    ) {
        warn!(peer = %address, name = %hello.name, error = %err, "peer refused");
        let _ = handshake.refuse(&mut conn, RefusalReason::DuplicateName, err.to_string()).await;
        return Err(err.to_string());
    }
    if let Err(err) = handshake.welcome(&mut conn, certificate).await {
        master.peers.unregister(&hello.name, conn_id);
        return Err(format!("welcome: {err}"));
    }
    drop(unauthenticated);
    conn.set_max_frame_len(master.config.max_frame_bytes);
    info!(peer = %address, name = %hello.name, role = hello.role.as_str(), version = %hello.software_version, "peer connected");
    if hello.role == Role::Hypervisor {
        master.clusters.hypervisor_connected(&hello.name, local_ip);
    }
    let result = tokio::select! {
        result = peer_loop(&master, &mut conn, &hello.name, hello.role, rx) => result,
        _ = close.notified() => {
            // Best effort, within a second: the peer learns why before the connection goes.
            let bye = FromMaster::Disconnect { reason: "its certificate was revoked".into() };
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.send(&bye)).await;
            Err("closed by the master: its certificate was revoked".into())
        }
    };
    master.peers.unregister(&hello.name, conn_id);
    // Unless a new connection of the same hypervisor registered in the meantime.
    if hello.role == Role::Hypervisor && !master.peers.is_connected(&hello.name) {
        master.hypervisor_disconnected(&hello.name);
    }
    info!(name = %hello.name, reason = %result.as_ref().err().map(String::as_str).unwrap_or("closed by peer"), "peer disconnected");
    result
}

async fn peer_loop<S>(
    master: &Master,
    conn: &mut Connection<S>,
    name: &str,
    role: Role,
    mut outgoing: mpsc::Receiver<FromMaster>,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let interval = master.config.heartbeat_interval;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = tokio::time::Instant::now();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            incoming = conn.recv::<ToMaster>() => {
                match incoming {
                    Ok(Some(message)) => {
                        last_heard = tokio::time::Instant::now();
                        handle_message(master, conn, name, role, message).await?;
                    }
                    Ok(None) => return Ok(()),
                    Err(err) => return Err(format!("bad frame: {err}")),
                }
            }
            message = outgoing.recv() => {
                match message {
                    Some(message) => {
                        // A command carrying the session's slave list is large with many
                        // slaves; a few at a time, so thousands of them do not all sit in
                        // encode and TLS buffers at once.
                        let _permit = match carries_roster(&message) {
                            true => Some(LARGE_SENDS.acquire().await.map_err(|e| format!("send: {e}"))?),
                            false => None,
                        };
                        send_within(conn, &message, interval * 3).await?;
                        if let FromMaster::Disconnect { reason } = message {
                            return Err(format!("disconnected by the master: {reason}"));
                        }
                    }
                    None => return Err("dropped by the master".into()),
                }
            }
            _ = ticker.tick() => {
                if last_heard.elapsed() > interval * 3 {
                    return Err(format!("no heartbeat for {:?}", last_heard.elapsed()));
                }
                seq += 1;
                send_within(conn, &FromMaster::Heartbeat(Heartbeat { seq, sent_unix_ms: now_ms() }), interval * 3).await?;
            }
        }
    }
}

/// Sends with a deadline: a peer that stops reading ends its own connection (and is then
/// away for its sessions) instead of holding up this task, its heartbeats and its cancels for
/// as long as TCP would wait.
async fn send_within<S>(conn: &mut Connection<S>, message: &FromMaster, limit: Duration) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(limit, conn.send(message)).await {
        Ok(sent) => sent.map_err(|e| format!("send: {e}")),
        Err(_) => Err(format!("send: the peer read nothing for {limit:?}")),
    }
}

async fn handle_message<S>(
    master: &Master,
    conn: &mut Connection<S>,
    name: &str,
    role: Role,
    message: ToMaster,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let slave = name.to_string();
    let send_limit = master.config.heartbeat_interval * 3;
    match message {
        ToMaster::Heartbeat(_) => master.peers.touch(name),
        ToMaster::StageStarted { stage_id, started_unix_ms } => {
            master.peers.route(stage_id, name, StageEvent::Started { slave, unix_ms: started_unix_ms });
        }
        ToMaster::Output(chunk) => {
            // Output goes straight to the store from here, so large output never queues up
            // behind the session; the session only hears how much arrived. A chunk counts
            // as received only once written; one the store refuses fails the session, and
            // the connection stays (closing it would only bring the same chunk back).
            if master.peers.may_write_output(chunk.stage_id, name) {
                let bytes = chunk.lines.iter().map(|l| l.text.len() as u64 + 1).sum();
                match master.store.put_output(chunk.stage_id, chunk.seq, &chunk.lines) {
                    Ok(()) => {
                        master.peers.chunk_written(chunk.stage_id, chunk.seq);
                        master.peers.route(chunk.stage_id, name, StageEvent::Output { slave, bytes });
                    }
                    Err(err) => master.store_refused(chunk.stage_id, name, &err),
                }
            } else {
                debug!(slave = name, stage_id = chunk.stage_id, "output for a stage nobody waits for");
            }
        }
        ToMaster::LogFile(log) => {
            let stage_id = log.stage_id;
            if master.peers.owns(stage_id, name) {
                match master.store.put_log(&log) {
                    Ok(()) => {
                        master.peers.route(stage_id, name, StageEvent::Log { slave, log });
                    }
                    Err(err) => master.store_refused(stage_id, name, &err),
                }
            }
        }
        ToMaster::StageFinished(result) => {
            // The stage's output is on the disk before its end is judged.
            let (store, stage_id) = (master.store.clone(), result.stage_id);
            let synced = tokio::task::spawn_blocking(move || store.sync_output(stage_id)).await;
            match synced {
                Ok(Ok(())) => {}
                Ok(Err(err)) => master.store_refused(stage_id, name, &err),
                Err(err) => warn!(slave = name, stage_id, error = %err, "syncing a stage's output did not finish"),
            }
            master.peers.route(result.stage_id, name, StageEvent::Finished { slave, result });
        }
        ToMaster::Sync(request) => {
            let (stage_id, request_id) = (request.stage_id, request.request_id);
            if !master.peers.route(stage_id, name, StageEvent::Sync { slave, request }) {
                let reason = format!("stage {stage_id} is not running for a session on this slave");
                let reply = FromMaster::SyncReply { request_id, reply: SyncReply::Failed { reason } };
                send_within(conn, &reply, send_limit).await?;
            }
        }
        ToMaster::SyncCancel { stage_id, request_id } => {
            master.peers.route(stage_id, name, StageEvent::SyncCancel { slave, request_id });
        }
        ToMaster::Fault { stage_id, request_id, op } => {
            if !master.peers.route(stage_id, name, StageEvent::Fault { slave, request_id, op }) {
                let reason = format!("stage {stage_id} is not running for a session on this slave");
                let reply = FromMaster::SyncReply { request_id, reply: SyncReply::Failed { reason } };
                send_within(conn, &reply, send_limit).await?;
            }
        }
        ToMaster::FaultDone { fault_id, healed, error, detail } => {
            let event = StageEvent::FaultDone { slave, fault_id, healed, error, detail };
            if !master.peers.route_fault(fault_id, event) {
                debug!(slave = name, fault_id, "an answer about a fault no session has");
            }
        }
        ToMaster::SessionEnded { request_id, cleanup } => {
            if !master.peers.route(request_id, name, StageEvent::SessionEnded { slave, cleanup }) {
                debug!(slave = name, request_id, "a session end nobody waits for");
            }
        }
        ToMaster::Reattach { stages, faults, sessions } => {
            for (stage_id, from_seq) in master.peers.reattach(name, &stages) {
                send_within(conn, &FromMaster::ResumeStage { stage_id, from_seq }, send_limit).await?;
            }
            // Faults of a session that ended (or of a master before a restart) come off;
            // those of a running session are told to it, which heals any it no longer holds
            // (a heal the slave missed while it was away).
            for fault_id in faults {
                let held = StageEvent::FaultDone {
                    slave: name.to_string(),
                    fault_id,
                    healed: false,
                    error: None,
                    detail: String::new(),
                };
                if !master.peers.route_fault(fault_id, held) {
                    info!(slave = name, fault_id, "healing a fault no session has");
                    send_within(conn, &FromMaster::HealFault { fault_id: Some(fault_id) }, send_limit).await?;
                }
            }
            // Sessions that ended while it was away (or before a master restart): what they
            // left there goes now.
            let current = master.peers.session_of(name).map(|id| id.to_string());
            for session_id in sessions.into_iter().filter(|s| Some(s) != current.as_ref()) {
                info!(slave = name, session = %session_id, "ending a session that is over on the slave");
                send_within(conn, &FromMaster::EndSession { request_id: 0, session_id }, send_limit).await?;
            }
        }
        ToMaster::TagRequest { request_id } => {
            let tags = master.base_tags();
            send_within(conn, &FromMaster::TagReply { request_id, tags }, send_limit).await?;
        }
        ToMaster::ClusterState(status) if role == Role::Hypervisor => {
            info!(hypervisor = name, cluster = %status.cluster, state = ?status.state, detail = %status.detail, "cluster state");
            // Only the hypervisor that runs the cluster can end what let its VMs in.
            if master.clusters.cluster_status(name, &status) && status.state == xrdtest_proto::ClusterState::Stopped {
                master.auth.end_cluster(&status.cluster);
            }
        }
        ToMaster::HypervisorState(status) if role == Role::Hypervisor => {
            debug!(hypervisor = name, ?status, "hypervisor state");
            // Clusters it runs that no session or operator here asked for (left from before a
            // master restart): nothing will ever use them, so they go.
            for cluster in master.clusters.hypervisor_status(name, status) {
                warn!(hypervisor = name, cluster = %cluster, "stopping a cluster this master did not start");
                send_within(conn, &FromMaster::StopCluster { cluster }, send_limit).await?;
            }
        }
        ToMaster::ClusterState(_) | ToMaster::HypervisorState(_) => {
            return Err("only hypervisors report clusters".into());
        }
        ToMaster::Disconnect { reason } => {
            return Err(format!("{} left: {reason}", role.as_str()));
        }
    }
    Ok(())
}
