//! Connected slaves and hypervisors, and where each stage's messages go.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use xrdtest_proto::{FaultOp, FromMaster, HeldStage, LogFile, Role, StageId, StageResult, SyncRequest};

use crate::model::{now_ms, SessionId};

/// Longest wait for room in a peer's outgoing queue.
pub const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How a connection task is reached: its outgoing queue. Bounded so a slow peer slows the
/// sender instead of growing memory.
#[derive(Clone)]
pub struct PeerHandle {
    pub conn_id: u64,
    pub tx: mpsc::Sender<FromMaster>,
    /// The master's own address on this connection (where this peer reaches it).
    pub master_ip: Option<std::net::IpAddr>,
    /// Ends the connection at once, ahead of anything queued (a revoked peer).
    pub close: std::sync::Arc<tokio::sync::Notify>,
}

/// What the API shows about a peer, connected or not.
#[derive(Debug, Clone, Serialize)]
pub struct PeerInfo {
    pub name: String,
    pub role: &'static str,
    pub connected: bool,
    pub address: String,
    pub version: String,
    /// It resumes afresh after its VM is restored from a saved state (warm clusters).
    pub restorable: bool,
    pub connected_ms: u64,
    pub last_seen_ms: u64,
    /// The session it works for, if any.
    pub session: Option<SessionId>,
}

/// Changes in who is connected, for sessions waiting on slaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    Connected(String),
    Disconnected(String),
}

/// What happens to one stage run, routed from its slave's connection to its session.
#[derive(Debug)]
pub enum StageEvent {
    Started {
        slave: String,
        unix_ms: u64,
    },
    Output {
        slave: String,
        bytes: u64,
    },
    Log {
        slave: String,
        log: LogFile,
    },
    Finished {
        slave: String,
        result: StageResult,
    },
    /// The slave reconnected and still holds the stage: it goes on.
    Resumed {
        slave: String,
    },
    /// The slave reconnected without the stage (it restarted): the stage is lost.
    Lost {
        slave: String,
    },
    /// A script of the stage asks the session's sync state.
    Sync {
        slave: String,
        request: SyncRequest,
    },
    /// The script of a sync request went away.
    SyncCancel {
        slave: String,
        request_id: u64,
    },
    /// A script of the stage asks for a fault.
    Fault {
        slave: String,
        request_id: u64,
        op: FaultOp,
    },
    /// A target's answer about a fault (routed by fault id, with stage id 0).
    FaultDone {
        slave: String,
        fault_id: u64,
        healed: bool,
        error: Option<String>,
        detail: String,
    },
    /// A slave's answer to the end of its session (routed by the request's id).
    SessionEnded {
        slave: String,
        cleanup: xrdtest_proto::SessionCleanup,
    },
}

/// Where the messages of one stage id go.
struct Route {
    slave: String,
    events: mpsc::UnboundedSender<(StageId, StageEvent)>,
    /// The next output chunk number expected, for resuming after a reconnect: one past the
    /// last chunk written to the store.
    next_seq: u64,
    /// The store refused this stage's output (its disk is full): the rest is dropped.
    output_refused: bool,
}

#[derive(Default)]
struct Inner {
    connected: HashMap<String, PeerHandle>,
    known: BTreeMap<String, PeerInfo>,
    routes: HashMap<StageId, Route>,
    /// The routed stage ids of each slave, so a reattach costs that slave's stages, not
    /// every stage of every session.
    routes_of: HashMap<String, HashSet<StageId>>,
    /// The session each slave works for, known or not yet connected.
    sessions: HashMap<String, SessionId>,
    /// The session of each active fault, by fault id.
    fault_routes: HashMap<u64, mpsc::UnboundedSender<(StageId, StageEvent)>>,
}

/// The registry of peers and stage routes. Locks are held only for map updates, never
/// across an await.
pub struct Peers {
    inner: Mutex<Inner>,
    events: broadcast::Sender<PeerEvent>,
}

/// Why a peer could not register.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("a {role} named `{name}` is already connected from {address}")]
    Duplicate { role: &'static str, name: String, address: String },
}

impl Default for Peers {
    fn default() -> Self {
        Peers { inner: Mutex::new(Inner::default()), events: broadcast::channel(1024).0 }
    }
}

impl Peers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the registry down with it.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.events.subscribe()
    }

    pub fn register(
        &self,
        name: &str,
        role: Role,
        address: SocketAddr,
        version: &str,
        restorable: bool,
        handle: PeerHandle,
    ) -> Result<(), RegisterError> {
        {
            let mut inner = self.lock();
            if inner.connected.contains_key(name) {
                let address = inner.known.get(name).map(|p| p.address.clone()).unwrap_or_default();
                return Err(RegisterError::Duplicate { role: role.as_str(), name: name.to_string(), address });
            }
            inner.connected.insert(name.to_string(), handle);
            let now = now_ms();
            let session = inner.known.get(name).and_then(|p| p.session);
            inner.known.insert(
                name.to_string(),
                PeerInfo {
                    name: name.to_string(),
                    role: role.as_str(),
                    connected: true,
                    address: address.to_string(),
                    version: version.to_string(),
                    restorable,
                    connected_ms: now,
                    last_seen_ms: now,
                    session,
                },
            );
        }
        let _ = self.events.send(PeerEvent::Connected(name.to_string()));
        Ok(())
    }

    /// Whether `name`, as it last connected, resumes afresh after a restore of its VM.
    pub fn restorable(&self, name: &str) -> bool {
        self.lock().known.get(name).is_some_and(|p| p.restorable)
    }

    /// Removes a connection, unless a newer one of the same name replaced it already.
    pub fn unregister(&self, name: &str, conn_id: u64) {
        {
            let mut inner = self.lock();
            if inner.connected.get(name).is_none_or(|h| h.conn_id != conn_id) {
                return;
            }
            inner.connected.remove(name);
            if let Some(info) = inner.known.get_mut(name) {
                info.connected = false;
                info.last_seen_ms = now_ms();
            }
        }
        let _ = self.events.send(PeerEvent::Disconnected(name.to_string()));
    }

    pub fn touch(&self, name: &str) {
        if let Some(info) = self.lock().known.get_mut(name) {
            info.last_seen_ms = now_ms();
        }
    }

    pub fn is_connected(&self, name: &str) -> bool {
        self.lock().connected.contains_key(name)
    }

    pub fn handle(&self, name: &str) -> Option<PeerHandle> {
        self.lock().connected.get(name).cloned()
    }

    /// The id of a peer's current connection, if it is connected.
    pub fn conn_id(&self, name: &str) -> Option<u64> {
        self.lock().connected.get(name).map(|handle| handle.conn_id)
    }

    /// Ends a connected peer's connection at once; false when it is not connected.
    pub fn close(&self, name: &str) -> bool {
        self.handle(name).map(|handle| handle.close.notify_one()).is_some()
    }

    /// Queues a message for a connected peer if its queue has room now; false otherwise.
    pub fn try_send(&self, name: &str, message: FromMaster) -> bool {
        self.handle(name).is_some_and(|handle| handle.tx.try_send(message).is_ok())
    }

    /// Queues a message for a connected peer; false if it is not connected or its queue
    /// stays full for [`SEND_TIMEOUT`] (a connection stuck writing never hangs the sender).
    pub async fn send(&self, name: &str, message: FromMaster) -> bool {
        let Some(handle) = self.handle(name) else { return false };
        matches!(tokio::time::timeout(SEND_TIMEOUT, handle.tx.send(message)).await, Ok(Ok(())))
    }

    pub fn set_session(&self, names: &[String], session: Option<SessionId>) {
        let mut inner = self.lock();
        for name in names {
            match session {
                Some(id) => inner.sessions.insert(name.clone(), id),
                None => inner.sessions.remove(name),
            };
            if let Some(info) = inner.known.get_mut(name) {
                info.session = session;
            }
        }
    }

    /// The session `name` works for now, if any.
    pub fn session_of(&self, name: &str) -> Option<SessionId> {
        self.lock().sessions.get(name).copied()
    }

    pub fn list(&self) -> Vec<PeerInfo> {
        self.lock().known.values().cloned().collect()
    }

    /// Routes the messages of `stage_id` from `slave` to a session.
    pub fn add_route(&self, stage_id: StageId, slave: &str, events: mpsc::UnboundedSender<(StageId, StageEvent)>) {
        let mut inner = self.lock();
        inner.routes_of.entry(slave.to_string()).or_default().insert(stage_id);
        if let Some(old) = inner
            .routes
            .insert(stage_id, Route { slave: slave.to_string(), events, next_seq: 0, output_refused: false })
        {
            if old.slave != slave {
                remove_from(&mut inner.routes_of, &old.slave, stage_id);
            }
        }
    }

    pub fn remove_route(&self, stage_id: StageId) {
        let mut inner = self.lock();
        if let Some(route) = inner.routes.remove(&stage_id) {
            remove_from(&mut inner.routes_of, &route.slave, stage_id);
        }
    }

    /// Delivers a stage event if `slave` owns `stage_id`; false when nobody waits for it.
    pub fn route(&self, stage_id: StageId, slave: &str, event: StageEvent) -> bool {
        let inner = self.lock();
        match inner.routes.get(&stage_id) {
            Some(route) if route.slave == slave => route.events.send((stage_id, event)).is_ok(),
            _ => false,
        }
    }

    /// Routes the answers about fault `fault_id` to a session.
    pub fn add_fault_route(&self, fault_id: u64, events: mpsc::UnboundedSender<(StageId, StageEvent)>) {
        self.lock().fault_routes.insert(fault_id, events);
    }

    pub fn remove_fault_route(&self, fault_id: u64) {
        self.lock().fault_routes.remove(&fault_id);
    }

    /// Delivers a fault answer to its session; false when no session has that fault.
    pub fn route_fault(&self, fault_id: u64, event: StageEvent) -> bool {
        self.lock().fault_routes.get(&fault_id).is_some_and(|events| events.send((0, event)).is_ok())
    }

    /// Whether a session still has fault `fault_id`.
    pub fn knows_fault(&self, fault_id: u64) -> bool {
        self.lock().fault_routes.contains_key(&fault_id)
    }

    /// The master's address as a connected peer reaches it.
    pub fn master_address_for(&self, name: &str) -> Option<std::net::IpAddr> {
        self.lock().connected.get(name).and_then(|handle| handle.master_ip)
    }

    /// The address a connected peer connected from.
    pub fn address_of(&self, name: &str) -> Option<SocketAddr> {
        let inner = self.lock();
        if !inner.connected.contains_key(name) {
            return None;
        }
        inner.known.get(name).and_then(|p| p.address.parse().ok())
    }

    /// Whether `slave` runs `stage_id` for a session that still waits for it.
    pub fn owns(&self, stage_id: StageId, slave: &str) -> bool {
        self.lock().routes.get(&stage_id).is_some_and(|route| route.slave == slave)
    }

    /// Whether `slave` may write output for `stage_id` (it runs it, and the store has not
    /// refused its output).
    pub fn may_write_output(&self, stage_id: StageId, slave: &str) -> bool {
        self.lock().routes.get(&stage_id).is_some_and(|route| route.slave == slave && !route.output_refused)
    }

    /// Records chunk `seq` as received, once it is in the store: a reconnected slave resends
    /// from the first chunk not written.
    pub fn chunk_written(&self, stage_id: StageId, seq: u64) {
        if let Some(route) = self.lock().routes.get_mut(&stage_id) {
            route.next_seq = route.next_seq.max(seq + 1);
        }
    }

    /// Drops the rest of a stage's output (the store refused it).
    pub fn refuse_output(&self, stage_id: StageId) {
        if let Some(route) = self.lock().routes.get_mut(&stage_id) {
            route.output_refused = true;
        }
    }

    /// A reconnected slave's held stages: for each, where to resume (or `None`: forget it).
    /// Stages the master still routes to this slave but that it no longer holds are lost.
    pub fn reattach(&self, slave: &str, held: &[HeldStage]) -> Vec<(StageId, Option<u64>)> {
        let inner = self.lock();
        let mut answers = Vec::new();
        for stage in held {
            match inner.routes.get(&stage.stage_id) {
                Some(route) if route.slave == slave => {
                    let _ = route.events.send((stage.stage_id, StageEvent::Resumed { slave: slave.to_string() }));
                    answers.push((stage.stage_id, Some(route.next_seq)));
                }
                _ => answers.push((stage.stage_id, None)),
            }
        }
        let held: HashSet<StageId> = held.iter().map(|h| h.stage_id).collect();
        for stage_id in inner.routes_of.get(slave).into_iter().flatten().filter(|id| !held.contains(id)) {
            if let Some(route) = inner.routes.get(stage_id) {
                let _ = route.events.send((*stage_id, StageEvent::Lost { slave: slave.to_string() }));
            }
        }
        answers
    }
}

fn remove_from(routes_of: &mut HashMap<String, HashSet<StageId>>, slave: &str, stage_id: StageId) {
    if let Some(ids) = routes_of.get_mut(slave) {
        ids.remove(&stage_id);
        if ids.is_empty() {
            routes_of.remove(slave);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(stage_id: StageId) -> HeldStage {
        HeldStage { stage_id, chunks: 0, finished: false }
    }

    fn drain(events: &mut mpsc::UnboundedReceiver<(StageId, StageEvent)>) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok((id, event)) = events.try_recv() {
            seen.push(format!("{id}:{event:?}"));
        }
        seen
    }

    #[test]
    fn stage_messages_reach_their_session_only_from_the_slave_that_runs_them() {
        let peers = Peers::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        peers.add_route(1, "s1", tx);
        assert!(peers.route(1, "s1", StageEvent::Resumed { slave: "s1".into() }));
        assert!(!peers.route(1, "s2", StageEvent::Resumed { slave: "s2".into() }), "not s2's stage");
        assert!(!peers.route(2, "s1", StageEvent::Resumed { slave: "s1".into() }), "no such route");
        assert_eq!(drain(&mut rx).len(), 1);
        assert!(peers.may_write_output(1, "s1") && !peers.may_write_output(1, "s2"));
        peers.refuse_output(1);
        assert!(!peers.may_write_output(1, "s1"), "refused output stays refused");
        peers.remove_route(1);
        assert!(!peers.owns(1, "s1"));
        assert!(peers.lock().routes_of.is_empty(), "no index entry outlives its route");
    }

    #[test]
    fn a_reattach_resumes_held_stages_forgets_unknown_ones_and_loses_the_rest() {
        let peers = Peers::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        peers.add_route(10, "s1", tx.clone());
        peers.add_route(11, "s1", tx.clone());
        peers.add_route(12, "s2", tx);
        assert!(peers.may_write_output(10, "s1"));
        peers.chunk_written(10, 6);
        let answers = peers.reattach("s1", &[held(10), held(99), held(12)]);
        // 10: resume after the last chunk received; 99 and 12 (not s1's): forget.
        assert_eq!(answers, [(10, Some(7)), (99, None), (12, None)]);
        let mut seen = drain(&mut rx);
        seen.sort();
        assert_eq!(seen, [r#"10:Resumed { slave: "s1" }"#, r#"11:Lost { slave: "s1" }"#]);
    }
}
