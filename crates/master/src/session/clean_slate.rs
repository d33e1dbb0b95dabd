//! The end of a session on its slaves: each is told to end every process the session left
//! there (docs/clean-slate.md), and says how many it ended; the answers go into the store.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tracing::{info, warn};
use xrdtest_proto::{FromMaster, StageId};

use crate::model::{SessionId, SlaveCleanup};
use crate::peers::{PeerEvent, StageEvent};
use crate::session::SessionHost;

/// How long the master waits for the slaves' answers (a slave waits up to 5 s for killed
/// processes to be gone, and sweeps /proc).
pub const CLEANUP_WAIT: Duration = Duration::from_secs(15);

/// Tells each slave of session `id` that it is over and collects their answers, for at most
/// [`CLEANUP_WAIT`]; a slave not connected or not answering has its `problem` say so (its
/// leftovers go when it reconnects, or when it has been away for its `session_grace`).
/// Other events that still arrive are dropped: the session is over.
pub async fn end_on_slaves(
    master: &dyn SessionHost,
    id: SessionId,
    slaves: &[String],
    events: &mut mpsc::UnboundedReceiver<(StageId, StageEvent)>,
    events_tx: &mpsc::UnboundedSender<(StageId, StageEvent)>,
) -> Vec<SlaveCleanup> {
    let mut answers: BTreeMap<String, SlaveCleanup> = BTreeMap::new();
    let first_id = match master.store().next_stage_ids(slaves.len() as u64) {
        Ok(first) => first,
        Err(err) => {
            warn!(error = %err, "cannot end the session on its slaves");
            return Vec::new();
        }
    };
    // Subscribed before the first send, so no reconnect in between is missed.
    let mut peer_events = master.peers().subscribe();
    let mut waiting: BTreeMap<StageId, String> = BTreeMap::new();
    // Slaves away at the end: told if they come back while others are still waited for.
    let mut away: BTreeMap<String, StageId> = BTreeMap::new();
    for (offset, slave) in slaves.iter().enumerate() {
        let request_id = first_id + offset as u64;
        master.peers().add_route(request_id, slave, events_tx.clone());
        let message = FromMaster::EndSession { request_id, session_id: id.to_string() };
        if master.peers().send(slave, message).await {
            waiting.insert(request_id, slave.clone());
        } else {
            away.insert(slave.clone(), request_id);
        }
    }
    let deadline = Instant::now() + CLEANUP_WAIT;
    while !waiting.is_empty() {
        tokio::select! {
            received = events.recv() => match received {
                Some((request_id, StageEvent::SessionEnded { slave, cleanup })) => {
                    if waiting.remove(&request_id).is_some() {
                        master.peers().remove_route(request_id);
                        if let Some(problem) = &cleanup.problem {
                            warn!(slave, ended = cleanup.processes_ended, %problem, "session ended on the slave, not cleanly");
                        } else if cleanup.processes_ended > 0 {
                            info!(slave, ended = cleanup.processes_ended, method = %cleanup.method, "ended processes the session left");
                        }
                        let answer = SlaveCleanup {
                            slave: slave.clone(),
                            method: cleanup.method,
                            processes_ended: cleanup.processes_ended,
                            problem: cleanup.problem,
                        };
                        answers.insert(slave, answer);
                    }
                }
                Some(_) => {}
                None => break,
            },
            // A slave back while the session ends lists it as its current one, which its
            // reattach leaves alone: the end (maybe lost with the old connection) goes again.
            peer_event = peer_events.recv() => {
                if let Ok(PeerEvent::Connected(name)) = peer_event {
                    let request_id = away
                        .get(&name)
                        .copied()
                        .or_else(|| waiting.iter().find(|(_, slave)| **slave == name).map(|(id, _)| *id));
                    if let Some(request_id) = request_id {
                        let message = FromMaster::EndSession { request_id, session_id: id.to_string() };
                        if master.peers().send(&name, message).await && away.remove(&name).is_some() {
                            waiting.insert(request_id, name);
                        }
                    }
                }
            }
            _ = sleep_until(deadline) => break,
        }
    }
    for (slave, request_id) in away {
        master.peers().remove_route(request_id);
        answers.insert(slave.clone(), unanswered(&slave, "not connected at the session's end"));
    }
    for (request_id, slave) in waiting {
        master.peers().remove_route(request_id);
        let why = format!("no answer within {} s", CLEANUP_WAIT.as_secs());
        answers.insert(slave.clone(), unanswered(&slave, &why));
    }
    slaves.iter().filter_map(|slave| answers.remove(slave)).collect()
}

fn unanswered(slave: &str, why: &str) -> SlaveCleanup {
    SlaveCleanup { slave: slave.to_string(), method: String::new(), processes_ended: 0, problem: Some(why.to_string()) }
}
