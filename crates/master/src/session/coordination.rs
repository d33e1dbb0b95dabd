//! The I/O of a session's coordination inside stages: its sync board ([`super::sync`]) and
//! its faults ([`super::faults`]). The runner hands it the sync and fault messages of the
//! session's slaves; it answers them, sends the faults to their targets, and heals faults
//! when they are due, waiting for the targets before the next stage starts.

use std::collections::{BTreeMap, VecDeque};

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tracing::{info, warn};
use xrdtest_proto::{FromMaster, StageId};

use crate::peers::StageEvent;
use crate::session::engine::{Engine, Now};
use crate::session::faults::{self, Context, FaultBoard, FaultRecord};
use crate::session::sync::{self, SyncBoard, WaitRecord};
use crate::session::SessionHost;

type Events = mpsc::UnboundedReceiver<(StageId, StageEvent)>;
/// The session's clock: its `Now` and tokio's instant of the same moment.
pub type Clock<'a> = dyn Fn() -> (Now, Instant) + Sync + 'a;
type EventsTx = mpsc::UnboundedSender<(StageId, StageEvent)>;

/// The session's sync state and faults.
pub struct Coordination {
    sync: SyncBoard,
    faults: FaultBoard,
    events_tx: EventsTx,
    /// Events that came while heals were awaited, for the runner to take next.
    deferred: VecDeque<(StageId, StageEvent)>,
    /// Fault ids routed to this session (unrouted at its end).
    routed: Vec<u64>,
}

impl Coordination {
    /// `reply_budget`: the most bytes of sync entries one reply may carry.
    pub fn new(roles: BTreeMap<String, Vec<String>>, reply_budget: usize, events_tx: EventsTx) -> Coordination {
        Coordination {
            sync: SyncBoard::new(roles.clone()).with_reply_budget(reply_budget),
            faults: FaultBoard::new(roles),
            events_tx,
            deferred: VecDeque::new(),
            routed: Vec::new(),
        }
    }

    /// An event that came while heals were awaited, if any.
    pub fn next_deferred(&mut self) -> Option<(StageId, StageEvent)> {
        self.deferred.pop_front()
    }

    /// Takes the event if it is a sync or fault message (answering it), else gives it back.
    /// A finished stage's waits are dropped on the way.
    pub async fn take(
        &mut self,
        master: &dyn SessionHost,
        engine: &Engine,
        stage_id: StageId,
        event: StageEvent,
        now: Now,
    ) -> Option<StageEvent> {
        match event {
            StageEvent::Sync { slave, request } => {
                let replies = self.sync.request(&slave, request, now);
                send_sync_replies(master, replies).await;
                None
            }
            StageEvent::SyncCancel { slave, request_id } => {
                self.sync.cancel(&slave, request_id, now);
                None
            }
            StageEvent::Fault { slave, request_id, op } => {
                let index = engine.current_index().unwrap_or(0);
                let case = case_of(engine, index);
                info!(slave, stage_id, ?op, "fault asked for");
                // The context borrows non-Send closures: it ends before the awaits below.
                let out = {
                    // IPv4 peers of a dual-stack listener show as ::ffff:a.b.c.d; rules need a.b.c.d.
                    let address = |slave: &str| master.peers().address_of(slave).map(|a| a.ip().to_canonical());
                    let master_address = |slave: &str| master.peers().master_address_for(slave);
                    let context = Context {
                        stage_id,
                        stage_index: index,
                        case: case.as_deref(),
                        address: &address,
                        master_address: &master_address,
                        deadman_ms: master.config().reconnect_grace.as_millis() as u64,
                    };
                    let new_id = || master.store().next_stage_ids(1).map_err(|e| e.to_string());
                    self.faults.request(&slave, request_id, op, &context, new_id, now)
                };
                self.perform(master, out).await;
                None
            }
            StageEvent::FaultDone { slave, fault_id, healed, error, detail } => {
                if let Some(error) = &error {
                    warn!(slave, fault_id, healed, %error, "a fault could not be applied or healed");
                }
                let out = self.faults.answer(&slave, fault_id, healed, error, detail, now);
                self.perform(master, out).await;
                None
            }
            StageEvent::Finished { ref result, .. } => {
                self.sync.stage_ended(result.stage_id, now);
                Some(event)
            }
            other => Some(other),
        }
    }

    /// After every event: fails the waits no running stage can meet.
    pub async fn after_event(&mut self, master: &dyn SessionHost, engine: &Engine, now: Now) {
        let stranded = self.sync.fail_unmeetable(|slave| engine.running_stage_id(slave).is_some(), now);
        send_sync_replies(master, stranded).await;
    }

    pub fn next_deadline(&self) -> Option<u64> {
        [self.sync.next_deadline(), self.faults.next_deadline()].into_iter().flatten().min()
    }

    pub async fn tick(&mut self, master: &dyn SessionHost, now: Now) {
        send_sync_replies(master, self.sync.tick(now)).await;
        let out = self.faults.tick(now);
        self.perform(master, out).await;
    }

    /// Before the first stage: applies the cluster's links and waits for their targets;
    /// `Err` says why one could not be applied (the session then fails).
    pub async fn apply_links(
        &mut self,
        master: &dyn SessionHost,
        links: Vec<faults::LinkPlan>,
        events: &mut Events,
        clock: &Clock<'_>,
    ) -> Result<(), String> {
        if links.is_empty() {
            return Ok(());
        }
        let deadman_ms = master.config().reconnect_grace.as_millis() as u64;
        let new_id = || master.store().next_stage_ids(1).map_err(|e| e.to_string());
        let (ids, out) = self.faults.make_links(links, deadman_ms, new_id, clock().0)?;
        info!(links = ids.len(), "applying the cluster's links");
        self.perform(master, out).await;
        self.settle(master, events, clock).await;
        let errors = self.faults.errors_of(&ids);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("the cluster's links could not be applied: {}", errors.join("; ")))
        }
    }

    /// Before stage `index` starts: heals what is due, and waits for its targets.
    pub async fn before_stage(
        &mut self,
        master: &dyn SessionHost,
        engine: &Engine,
        index: usize,
        events: &mut Events,
        clock: &Clock<'_>,
    ) {
        let case = case_of(engine, index);
        // A fault still being applied is healed once it is in place, not left behind.
        self.settle(master, events, clock).await;
        let out = self.faults.heal_before(index, case.as_deref(), clock().0);
        self.perform(master, out).await;
        self.settle(master, events, clock).await;
    }

    /// At the session's end: heals every fault, waits for the targets, and unroutes.
    pub async fn at_end(
        &mut self,
        master: &dyn SessionHost,
        events: &mut Events,
        clock: &Clock<'_>,
    ) -> (Vec<WaitRecord>, Vec<FaultRecord>) {
        self.settle(master, events, clock).await;
        let out = self.faults.heal_all(clock().0);
        self.perform(master, out).await;
        self.settle(master, events, clock).await;
        for fault_id in self.routed.drain(..) {
            master.peers().remove_fault_route(fault_id);
        }
        (self.sync.records().to_vec(), self.faults.records())
    }

    /// Waits until no fault awaits an answer (each has a deadline), keeping other events.
    async fn settle(&mut self, master: &dyn SessionHost, events: &mut Events, clock: &Clock<'_>) {
        while self.faults.busy() {
            let (now, instant_now) = clock();
            let deadline = self
                .faults
                .next_deadline()
                .map(|ms| instant_now + std::time::Duration::from_millis(ms.saturating_sub(now.mono_ms)));
            tokio::select! {
                received = events.recv() => match received {
                    Some((_, StageEvent::FaultDone { slave, fault_id, healed, error, detail })) => {
                        if let Some(error) = &error {
                            warn!(slave, fault_id, healed, %error, "a fault could not be applied or healed");
                        }
                        let out = self.faults.answer(&slave, fault_id, healed, error, detail, clock().0);
                        self.perform(master, out).await;
                    }
                    Some(other) => self.deferred.push_back(other),
                    None => return,
                },
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)) => {
                    let out = self.faults.tick(clock().0);
                    self.perform(master, out).await;
                }
            }
        }
    }

    async fn perform(&mut self, master: &dyn SessionHost, out: Vec<faults::Out>) {
        for item in out {
            match item {
                faults::Out::Send { slave, message } => {
                    if let FromMaster::ApplyFault(apply) = &message {
                        if !self.routed.contains(&apply.fault_id) {
                            master.peers().add_fault_route(apply.fault_id, self.events_tx.clone());
                            self.routed.push(apply.fault_id);
                        }
                    }
                    // Not delivered: its answer never comes, and the deadline fails it.
                    if !master.peers().send(&slave, message).await {
                        warn!(slave, "cannot send a fault command");
                    }
                }
                faults::Out::Reply { slave, request_id, reply } => {
                    send_sync_replies(master, vec![sync::Reply { slave, request_id, reply }]).await;
                }
            }
        }
    }
}

/// The case instance stage `index` belongs to (`None` for suite init and finalize).
fn case_of(engine: &Engine, index: usize) -> Option<String> {
    let plan = engine.plan();
    let template = plan.templates.get(engine.template_of(index))?;
    template.instance.map(|i| plan.instances[i].name.clone())
}

/// Sends the answers of sync and fault requests; one a slave misses (it is away) it gets
/// again when it asks again after reconnecting.
async fn send_sync_replies(master: &dyn SessionHost, replies: Vec<sync::Reply>) {
    for sync::Reply { slave, request_id, reply } in replies {
        if !master.peers().send(&slave, FromMaster::SyncReply { request_id, reply }).await {
            warn!(slave, request_id, "cannot send a sync reply; the slave asks again when it is back");
        }
    }
}
