//! A session's faults (Jepsen's nemesis; docs/faults.md): what its scripts asked for
//! (`fault_partition`, `fault_netem`, `fault_pause`, `fault_resume`, `fault_kill`,
//! `fault_heal`), resolved to target slaves, applied by each target on its own host, and
//! healed: at the end of the stage that made the fault (or of its case, or of the session),
//! when a script asks, and at the session's end. Plain data: the runner feeds it requests,
//! the targets' answers and the clock, and sends what it returns.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::engine::Now;
use xrdtest_proto::{ApplyFault, FaultAction, FaultOp, FaultUntil, FromMaster, StageId, SyncReply};

pub use xrdtest_model::FaultRecord;

/// How long a target has to answer an apply or a heal before it counts as failed.
pub const ANSWER_WITHIN_MS: u64 = 15_000;
/// Most faults one session may make.
pub const MAX_FAULTS: usize = 1000;

/// Something for the runner to do.
#[derive(Debug, Clone, PartialEq)]
// Short-lived, a few per fault call: boxing the message would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Out {
    Send { slave: String, message: FromMaster },
    Reply { slave: String, request_id: u64, reply: SyncReply },
}

/// Where in the session a request was made, and what the runner knows of its slaves.
pub struct Context<'a> {
    pub stage_id: StageId,
    /// The stage record's index, and its case instance (`None` outside a case).
    pub stage_index: usize,
    pub case: Option<&'a str>,
    /// A connected slave's address, as the master sees it.
    pub address: &'a dyn Fn(&str) -> Option<IpAddr>,
    /// The master's address as a connected slave reaches it.
    pub master_address: &'a dyn Fn(&str) -> Option<IpAddr>,
    /// The dead-man time each target heals by itself after.
    pub deadman_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Applying,
    Active,
    Healing,
    Done,
}

#[derive(Debug)]
struct Fault {
    record: FaultRecord,
    phase: Phase,
    until: FaultUntil,
    stage_index: usize,
    case: Option<String>,
    is_kill: bool,
    is_pause: Option<String>,
    /// Targets that applied it (and must heal it).
    applied: BTreeSet<String>,
    /// Targets whose answer to the current step is due, with its deadline.
    pending: BTreeSet<String>,
    deadline_mono_ms: u64,
    errors: Vec<String>,
    /// The script waiting for the apply to finish.
    caller: Option<(String, u64)>,
}

/// A script waiting for heals to finish.
#[derive(Debug)]
struct HealWaiter {
    slave: String,
    request_id: u64,
    faults: BTreeSet<u64>,
    /// The heals among them that failed, with why.
    errors: Vec<String>,
}

/// The faults of one session.
#[derive(Debug, Default)]
pub struct FaultBoard {
    roles: BTreeMap<String, Vec<String>>,
    faults: Vec<Fault>,
    heal_waiters: Vec<HealWaiter>,
    /// The fault each (slave, request id) made, so a request sent again after a reconnect
    /// is not applied twice.
    made: std::collections::HashMap<(String, u64), u64>,
    /// The heal and resume calls taken, by (slave, request id), for the same reason.
    heals_asked: std::collections::HashSet<(String, u64)>,
}

impl FaultBoard {
    pub fn new(roles: BTreeMap<String, Vec<String>>) -> FaultBoard {
        FaultBoard { roles, ..FaultBoard::default() }
    }

    /// Takes a script's fault call. `new_id` gives a fresh fault id (unique in the store).
    pub fn request(
        &mut self,
        slave: &str,
        request_id: u64,
        op: FaultOp,
        context: &Context<'_>,
        mut new_id: impl FnMut() -> Result<u64, String>,
        now: Now,
    ) -> Vec<Out> {
        let refuse = |reason: String| {
            vec![Out::Reply { slave: slave.to_string(), request_id, reply: SyncReply::Failed { reason } }]
        };
        if matches!(op, FaultOp::Heal | FaultOp::Resume { .. }) {
            // Sent again after a reconnect: still waiting, or done; never a second heal,
            // which would also heal what was made since.
            let key = (slave.to_string(), request_id);
            if self.heal_waiters.iter().any(|w| w.slave == slave && w.request_id == request_id) {
                return Vec::new();
            }
            if !self.heals_asked.insert(key) {
                return vec![done(slave, request_id)];
            }
            let pattern = match &op {
                FaultOp::Resume { pattern } => Some(pattern.clone()),
                _ => None,
            };
            let chosen: Vec<usize> = (0..self.faults.len())
                .filter(|&i| {
                    let fault = &self.faults[i];
                    // Heal: every active fault but the cluster's links; resume: the
                    // pauses (of that pattern).
                    fault.phase == Phase::Active
                        && fault.record.kind != "link"
                        && match &pattern {
                            None => true,
                            Some(None) => fault.is_pause.is_some(),
                            Some(Some(wanted)) => fault.is_pause.as_deref() == Some(wanted.as_str()),
                        }
                })
                .collect();
            let mut out = Vec::new();
            let ids: BTreeSet<u64> = chosen.iter().map(|&i| self.faults[i].record.id).collect();
            for index in chosen {
                out.extend(self.start_heal(index, now));
            }
            if ids.is_empty() {
                out.push(done(slave, request_id));
            } else {
                self.heal_waiters.push(HealWaiter {
                    slave: slave.to_string(),
                    request_id,
                    faults: ids,
                    errors: Vec::new(),
                });
            }
            return out;
        }
        if let Some(id) = self.made.get(&(slave.to_string(), request_id)) {
            let Some(fault) = self.faults.iter().find(|f| f.record.id == *id) else { return Vec::new() };
            return match (&fault.caller, &fault.record.error) {
                (Some(_), _) => Vec::new(), // still being applied; the answer comes then
                (None, Some(reason)) => refuse(reason.clone()),
                (None, None) => vec![done(slave, request_id)],
            };
        }
        if self.faults.len() >= MAX_FAULTS {
            return refuse(format!("this session made {MAX_FAULTS} faults already"));
        }
        let plan = match self.plan(op, context) {
            Ok(plan) => plan,
            Err(reason) => return refuse(reason),
        };
        let id = match new_id() {
            Ok(id) => id,
            Err(reason) => return refuse(format!("cannot number the fault: {reason}")),
        };
        self.made.insert((slave.to_string(), request_id), id);
        let made =
            Made { id, by: slave, stage_id: context.stage_id, stage_index: context.stage_index, case: context.case };
        self.start(made, plan, Some((slave.to_string(), request_id)), context.deadman_ms, now)
    }

    /// Applies a cluster's `[[links]]` for the whole session (made by `cluster`, before
    /// its first stage); `Err` when a fault id cannot be had.
    pub fn make_links(
        &mut self,
        links: Vec<LinkPlan>,
        deadman_ms: u64,
        mut new_id: impl FnMut() -> Result<u64, String>,
        now: Now,
    ) -> Result<(Vec<u64>, Vec<Out>), String> {
        let mut ids = Vec::new();
        let mut out = Vec::new();
        for link in links {
            let id = new_id().map_err(|reason| format!("cannot number the link: {reason}"))?;
            let plan = Plan {
                kind: "link",
                params: link.params,
                actions: link.actions,
                until: FaultUntil::Session,
                pause_pattern: None,
            };
            let made = Made { id, by: "cluster", stage_id: 0, stage_index: 0, case: None };
            out.extend(self.start(made, plan, None, deadman_ms, now));
            ids.push(id);
        }
        Ok((ids, out))
    }

    /// Why these faults could not be applied, if any could not.
    pub fn errors_of(&self, ids: &[u64]) -> Vec<String> {
        self.faults.iter().filter(|f| ids.contains(&f.record.id)).filter_map(|f| f.record.error.clone()).collect()
    }

    /// Records a new fault and sends it to its targets.
    fn start(
        &mut self,
        made: Made<'_>,
        plan: Plan,
        caller: Option<(String, u64)>,
        deadman_ms: u64,
        now: Now,
    ) -> Vec<Out> {
        let mut out = Vec::new();
        for (target, action) in &plan.actions {
            let apply = ApplyFault { fault_id: made.id, action: action.clone(), deadman_ms };
            out.push(Out::Send { slave: target.clone(), message: FromMaster::ApplyFault(apply) });
        }
        let mut targets: Vec<String> = Vec::new();
        for (target, _) in &plan.actions {
            if !targets.contains(target) {
                targets.push(target.clone());
            }
        }
        self.faults.push(Fault {
            record: FaultRecord {
                id: made.id,
                kind: plan.kind.into(),
                targets: targets.clone(),
                params: plan.params,
                made_by: made.by.to_string(),
                stage_id: made.stage_id,
                started_unix_ms: now.unix_ms,
                ended_unix_ms: None,
                details: Vec::new(),
                error: None,
            },
            phase: Phase::Applying,
            until: plan.until,
            stage_index: made.stage_index,
            case: made.case.map(str::to_string),
            is_kill: plan.kind == "kill",
            is_pause: plan.pause_pattern,
            applied: BTreeSet::new(),
            pending: targets.into_iter().collect(),
            deadline_mono_ms: now.mono_ms + ANSWER_WITHIN_MS,
            errors: Vec::new(),
            caller,
        });
        out
    }

    /// A target's answer to an apply (`healed` false) or a heal (`healed` true).
    pub fn answer(
        &mut self,
        slave: &str,
        fault_id: u64,
        healed: bool,
        error: Option<String>,
        detail: String,
        now: Now,
    ) -> Vec<Out> {
        let Some(index) = self.faults.iter().position(|f| f.record.id == fault_id) else { return Vec::new() };
        let fault = &mut self.faults[index];
        let expected = if healed { Phase::Healing } else { Phase::Applying };
        if fault.phase != expected || !fault.pending.remove(slave) {
            // The slave holds a fault it should not: applied after its answer was given up
            // on, or its heal missed while it was away (it says so when it is back).
            let holds_it = !healed && error.is_none();
            let should_hold = fault.phase == Phase::Active && fault.applied.contains(slave);
            if holds_it && !should_hold && !fault.is_kill {
                let message = FromMaster::HealFault { fault_id: Some(fault_id) };
                return vec![Out::Send { slave: slave.to_string(), message }];
            }
            return Vec::new();
        }
        match error {
            Some(error) => fault.errors.push(format!("{slave}: {error}")),
            None => {
                if !healed {
                    fault.applied.insert(slave.to_string());
                }
                if !detail.is_empty() {
                    fault.record.details.push(format!("{slave}: {detail}"));
                }
            }
        }
        if fault.pending.is_empty() {
            self.step_done(index, now)
        } else {
            Vec::new()
        }
    }

    /// Heals what is due before stage `stage_index` (of case `case`) starts: faults made for
    /// their stage in another stage, for their case in another case.
    pub fn heal_before(&mut self, stage_index: usize, case: Option<&str>, now: Now) -> Vec<Out> {
        let due: Vec<usize> = (0..self.faults.len())
            .filter(|&i| {
                let fault = &self.faults[i];
                fault.phase == Phase::Active
                    && match fault.until {
                        FaultUntil::Stage => fault.stage_index != stage_index,
                        FaultUntil::Case => fault.case.is_none() || fault.case.as_deref() != case,
                        FaultUntil::Session => false,
                    }
            })
            .collect();
        due.into_iter().flat_map(|i| self.start_heal(i, now)).collect()
    }

    /// Heals every active fault (the session ends, or is cancelled).
    pub fn heal_all(&mut self, now: Now) -> Vec<Out> {
        let active: Vec<usize> = (0..self.faults.len()).filter(|&i| self.faults[i].phase == Phase::Active).collect();
        active.into_iter().flat_map(|i| self.start_heal(i, now)).collect()
    }

    /// Whether answers are still due (the runner waits for heals before a stage starts).
    pub fn busy(&self) -> bool {
        self.faults.iter().any(|f| matches!(f.phase, Phase::Applying | Phase::Healing))
    }

    /// Counts the answers past their deadline as failed.
    pub fn tick(&mut self, now: Now) -> Vec<Out> {
        let late: Vec<usize> = (0..self.faults.len())
            .filter(|&i| {
                let fault = &self.faults[i];
                matches!(fault.phase, Phase::Applying | Phase::Healing) && fault.deadline_mono_ms <= now.mono_ms
            })
            .collect();
        let mut out = Vec::new();
        for index in late {
            let fault = &mut self.faults[index];
            let waited = ANSWER_WITHIN_MS / 1000;
            for slave in std::mem::take(&mut fault.pending) {
                fault.errors.push(format!("{slave}: no answer within {waited} s"));
            }
            out.extend(self.step_done(index, now));
        }
        out
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.faults
            .iter()
            .filter(|f| matches!(f.phase, Phase::Applying | Phase::Healing))
            .map(|f| f.deadline_mono_ms)
            .min()
    }

    /// Whether fault `fault_id` is one of this session's, not yet healed everywhere.
    pub fn holds(&self, fault_id: u64) -> bool {
        self.faults.iter().any(|f| f.record.id == fault_id && f.phase != Phase::Done)
    }

    /// Every fault of the session so far, oldest first.
    pub fn records(&self) -> Vec<FaultRecord> {
        self.faults.iter().map(|f| f.record.clone()).collect()
    }

    fn start_heal(&mut self, index: usize, now: Now) -> Vec<Out> {
        let fault = &mut self.faults[index];
        fault.phase = Phase::Healing;
        fault.pending = fault.applied.clone();
        fault.deadline_mono_ms = now.mono_ms + ANSWER_WITHIN_MS;
        if fault.pending.is_empty() {
            return self.step_done(index, now);
        }
        let id = fault.record.id;
        fault
            .pending
            .iter()
            .map(|slave| Out::Send { slave: slave.clone(), message: FromMaster::HealFault { fault_id: Some(id) } })
            .collect()
    }

    /// Every target answered the current step (or is late).
    fn step_done(&mut self, index: usize, now: Now) -> Vec<Out> {
        let fault = &mut self.faults[index];
        let mut out = Vec::new();
        match fault.phase {
            Phase::Applying => {
                let caller = fault.caller.take();
                if !fault.errors.is_empty() {
                    let reason = format!("{} failed: {}", fault.record.kind, fault.errors.join("; "));
                    fault.record.error = Some(reason.clone());
                    if let Some((slave, request_id)) = caller {
                        out.push(Out::Reply { slave, request_id, reply: SyncReply::Failed { reason } });
                    }
                    // What some targets applied comes off again.
                    out.extend(self.start_heal(index, now));
                    return out;
                }
                if fault.is_kill {
                    fault.phase = Phase::Done;
                    fault.record.ended_unix_ms = Some(now.unix_ms);
                } else {
                    fault.phase = Phase::Active;
                }
                if let Some((slave, request_id)) = caller {
                    out.push(done(&slave, request_id));
                }
            }
            Phase::Healing => {
                fault.phase = Phase::Done;
                fault.record.ended_unix_ms = Some(now.unix_ms);
                if !fault.errors.is_empty() && fault.record.error.is_none() {
                    fault.record.error = Some(format!("heal failed: {}", fault.errors.join("; ")));
                }
                let id = fault.record.id;
                let heal_error = fault.record.error.clone();
                for waiter in &mut self.heal_waiters {
                    if waiter.faults.remove(&id) {
                        waiter.errors.extend(heal_error.clone());
                    }
                }
                let (finished, waiting): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut self.heal_waiters).into_iter().partition(|w| w.faults.is_empty());
                self.heal_waiters = waiting;
                for waiter in finished {
                    out.push(if waiter.errors.is_empty() {
                        done(&waiter.slave, waiter.request_id)
                    } else {
                        Out::Reply {
                            slave: waiter.slave,
                            request_id: waiter.request_id,
                            reply: SyncReply::Failed { reason: waiter.errors.join("; ") },
                        }
                    });
                }
            }
            Phase::Active | Phase::Done => {}
        }
        out
    }

    /// The targets, actions and description of a fault call.
    fn plan(&self, op: FaultOp, context: &Context<'_>) -> Result<Plan, String> {
        match op {
            FaultOp::Partition { a, b, until } => {
                let a = self.resolve(&a)?;
                // `*` alone on the far side: every other slave of the session.
                let b = if b == ["*"] {
                    self.roles.keys().filter(|s| !a.contains(s)).cloned().collect()
                } else {
                    self.resolve(&b)?
                };
                if b.is_empty() {
                    return Err("no slave is left on the other side of the partition".into());
                }
                if let Some(both) = a.iter().find(|s| b.contains(s)) {
                    return Err(format!("slave {both} is on both sides of the partition"));
                }
                let address =
                    |slave: &String| (context.address)(slave).ok_or_else(|| format!("slave {slave} is not connected"));
                let a_ips = a.iter().map(address).collect::<Result<Vec<_>, _>>()?;
                let b_ips = b.iter().map(address).collect::<Result<Vec<_>, _>>()?;
                for (slave, ip) in a.iter().zip(&a_ips) {
                    if let Some(other) = b.iter().zip(&b_ips).find(|(_, other)| *other == ip) {
                        return Err(format!(
                            "slaves {slave} and {} share the address {ip}: a partition between them cannot be made",
                            other.0
                        ));
                    }
                }
                // A side that has the master's address would cut the other from the master.
                for (side, peers, other) in [(&a, &b_ips, &b), (&b, &a_ips, &a)] {
                    for slave in side {
                        if let Some(ip) = (context.master_address)(slave).filter(|ip| peers.contains(ip)) {
                            let owner =
                                other.iter().zip(peers.iter()).find(|(_, p)| **p == ip).map(|(s, _)| s.as_str());
                            return Err(format!(
                                "slave {} has the master's address {ip}: the partition would cut {slave} from the master",
                                owner.unwrap_or("?")
                            ));
                        }
                    }
                }
                let mut actions: Vec<(String, FaultAction)> = Vec::new();
                for slave in &a {
                    actions.push((slave.clone(), FaultAction::Partition { peers: dedup(&b_ips) }));
                }
                for slave in &b {
                    actions.push((slave.clone(), FaultAction::Partition { peers: dedup(&a_ips) }));
                }
                let params = format!("{} -- {}", a.join(" "), b.join(" "));
                Ok(Plan { kind: "partition", params, actions, until, pause_pattern: None })
            }
            FaultOp::Netem { targets, delay_us, jitter_us, loss_ppm, rate_bps, until } => {
                let targets = self.resolve(&targets)?;
                if delay_us == 0 && jitter_us == 0 && loss_ppm == 0 && rate_bps == 0 {
                    return Err("netem needs at least one of delay, loss or rate".into());
                }
                let action = FaultAction::Netem { delay_us, jitter_us, loss_ppm, rate_bps, peers: Vec::new() };
                let params = describe_netem(delay_us, jitter_us, loss_ppm, rate_bps);
                let params = format!("{}: {params}", targets.join(" "));
                let actions = targets.into_iter().map(|t| (t, action.clone())).collect();
                Ok(Plan { kind: "netem", params, actions, until, pause_pattern: None })
            }
            FaultOp::Pause { targets, pattern, until } => {
                check_pattern(&pattern)?;
                let targets = self.resolve(&targets)?;
                let params = format!("{}: {pattern}", targets.join(" "));
                let action = FaultAction::Pause { pattern: pattern.clone() };
                let actions = targets.into_iter().map(|t| (t, action.clone())).collect();
                Ok(Plan { kind: "pause", params, actions, until, pause_pattern: Some(pattern) })
            }
            FaultOp::Kill { targets, pattern, signal } => {
                check_pattern(&pattern)?;
                if !(1..=64).contains(&signal) {
                    return Err(format!("signal {signal} is not a signal number (1 to 64)"));
                }
                let targets = self.resolve(&targets)?;
                let params = format!("{}: {pattern} (signal {signal})", targets.join(" "));
                let action = FaultAction::Kill { pattern, signal };
                let actions = targets.into_iter().map(|t| (t, action.clone())).collect();
                Ok(Plan { kind: "kill", params, actions, until: FaultUntil::Stage, pause_pattern: None })
            }
            FaultOp::Resume { .. } | FaultOp::Heal => Err("not a fault to make".into()),
        }
    }

    /// Slave names, `role:NAME` and `*` (every slave) to the session's slaves, in the order given, once each.
    fn resolve(&self, targets: &[String]) -> Result<Vec<String>, String> {
        if targets.is_empty() {
            return Err("no target given".into());
        }
        let mut resolved: Vec<String> = Vec::new();
        for target in targets {
            let found: Vec<String> = match target.strip_prefix("role:") {
                None if target == "*" => self.roles.keys().cloned().collect(),
                Some(role) => {
                    let slaves: Vec<String> = self
                        .roles
                        .iter()
                        .filter(|(_, roles)| roles.iter().any(|r| r == role))
                        .map(|(s, _)| s.clone())
                        .collect();
                    if slaves.is_empty() {
                        return Err(format!("no slave of the session has the role `{role}`"));
                    }
                    slaves
                }
                None if self.roles.contains_key(target) => vec![target.clone()],
                None => return Err(format!("`{target}` is not a slave of this session (nor `role:NAME`)")),
            };
            for slave in found {
                if !resolved.contains(&slave) {
                    resolved.push(slave);
                }
            }
        }
        Ok(resolved)
    }
}

/// Who made a fault, and where.
struct Made<'a> {
    id: u64,
    by: &'a str,
    stage_id: StageId,
    stage_index: usize,
    case: Option<&'a str>,
}

/// One cluster link as faults: what each target applies, and how it reads.
#[derive(Debug, Clone)]
pub struct LinkPlan {
    pub actions: Vec<(String, FaultAction)>,
    pub params: String,
}

/// The faults of a cluster's `[[links]]` on the slaves of a session: each host of one side
/// shapes its traffic towards the other side's addresses. Hosts not in the session are
/// left out (as targets; their addresses still count as peers).
pub fn link_plans(cluster: &xrdtest_defs::Cluster, slaves: &[String]) -> Vec<LinkPlan> {
    let address = |name: &String| cluster.hosts.iter().find(|h| h.name == *name).map(|h| IpAddr::V4(h.ip));
    let mut plans = Vec::new();
    for link in &cluster.links {
        let mut actions = Vec::new();
        for (from, to) in [(&link.a, &link.b), (&link.b, &link.a)] {
            let peers: Vec<IpAddr> = to.iter().filter_map(address).collect();
            // No host of the other side has a VM (a session of some of the cluster's hosts):
            // nothing to shape. An empty list would mean all of the host's traffic.
            if peers.is_empty() {
                continue;
            }
            for host in from.iter().filter(|h| slaves.contains(h)) {
                let action = FaultAction::Netem {
                    delay_us: link.delay_us,
                    jitter_us: link.jitter_us,
                    loss_ppm: link.loss_ppm,
                    rate_bps: link.rate_bps,
                    peers: peers.clone(),
                };
                actions.push((host.clone(), action));
            }
        }
        if actions.is_empty() {
            continue;
        }
        let figures = describe_netem(link.delay_us, link.jitter_us, link.loss_ppm, link.rate_bps);
        plans.push(LinkPlan { actions, params: format!("{} -- {}: {figures}", link.a.join(" "), link.b.join(" ")) });
    }
    plans
}

struct Plan {
    kind: &'static str,
    params: String,
    actions: Vec<(String, FaultAction)>,
    until: FaultUntil,
    pause_pattern: Option<String>,
}

fn done(slave: &str, request_id: u64) -> Out {
    Out::Reply { slave: slave.to_string(), request_id, reply: SyncReply::Done { entries: Vec::new(), waited_ms: 0 } }
}

fn dedup(ips: &[IpAddr]) -> Vec<IpAddr> {
    let mut seen = Vec::new();
    for ip in ips {
        if !seen.contains(ip) {
            seen.push(*ip);
        }
    }
    seen
}

fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("an empty pattern would match every process".into());
    }
    if pattern.len() > 512 || pattern.contains(['\n', '\0']) {
        return Err("a pattern is one line of at most 512 bytes".into());
    }
    Ok(())
}

/// `delay 100ms jitter 10ms loss 1% rate 10mbit`, the parts that are set.
pub fn describe_netem(delay_us: u64, jitter_us: u64, loss_ppm: u32, rate_bps: u64) -> String {
    let mut parts = Vec::new();
    let ms = |us: u64| {
        if us % 1000 == 0 {
            format!("{}ms", us / 1000)
        } else {
            format!("{:.3}ms", us as f64 / 1000.0)
        }
    };
    if delay_us > 0 {
        parts.push(format!("delay {}", ms(delay_us)));
    }
    if jitter_us > 0 {
        parts.push(format!("jitter {}", ms(jitter_us)));
    }
    if loss_ppm > 0 {
        parts.push(format!("loss {}%", loss_ppm as f64 / 10_000.0));
    }
    if rate_bps > 0 {
        parts.push(format!("rate {}kbit", rate_bps / 1000));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_links_shape_each_side_towards_the_other_for_the_whole_session() {
        // The shipped cluster_pair, with a link.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let pair = std::fs::read_to_string(root.join("clusters/cluster_pair/cluster.toml")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("clusters/cluster_pair")).unwrap();
        std::fs::create_dir_all(dir.path().join("suites")).unwrap();
        let link = "\n[[links]]\na = \"role:server\"\nb = \"client\"\ndelay = \"20ms\"\n";
        std::fs::write(dir.path().join("clusters/cluster_pair/cluster.toml"), format!("{pair}{link}")).unwrap();
        let report = xrdtest_defs::load_repository(&dir.path().join("suites"), &dir.path().join("clusters"));
        let cluster = &report.repository.clusters["cluster_pair"];
        let slaves = ["server.pair.test".to_string(), "client.pair.test".to_string()];
        let plans = link_plans(cluster, &slaves);
        assert_eq!(plans.len(), 1);
        assert_eq!(plans[0].params, "server.pair.test -- client.pair.test: delay 20ms");
        let towards = |peer: [u8; 4]| FaultAction::Netem {
            delay_us: 20_000,
            jitter_us: 0,
            loss_ppm: 0,
            rate_bps: 0,
            peers: vec![peer.into()],
        };
        assert_eq!(
            plans[0].actions,
            [
                ("server.pair.test".to_string(), towards([10, 77, 0, 11])),
                ("client.pair.test".to_string(), towards([10, 77, 0, 10]))
            ]
        );
        assert!(link_plans(cluster, &slaves[..1]).iter().all(|p| p.actions.len() == 1), "only the session's slaves");
        // A session of the server alone, on a cluster made of its hosts only: the link has
        // nobody on its other side, so nothing is shaped (not all of the server's traffic).
        let alone = cluster.with_hosts(&slaves[..1]);
        assert!(link_plans(&alone, &slaves[..1]).is_empty(), "{:?}", link_plans(&alone, &slaves[..1]).len());

        let mut faults = FaultBoard::new(slaves.iter().map(|s| (s.clone(), Vec::new())).collect());
        let (ids, out) = faults.make_links(plans, 3000, || Ok(40), at(0)).unwrap();
        assert_eq!((ids, sends(&out).len()), (vec![40], 2));
        for slave in &slaves {
            faults.answer(slave, 40, false, None, "shaped".into(), at(1));
        }
        assert!(faults.holds(40) && faults.errors_of(&[40]).is_empty());
        // A script's heal leaves the cluster's links alone; the session's end heals them.
        let out = faults.request("client.pair.test", 1, FaultOp::Heal, &context(2, None), || Ok(99), at(2));
        assert_eq!(replies(&out), ["client.pair.test#1 done"]);
        assert!(faults.heal_before(7, Some("x"), at(3)).is_empty());
        assert_eq!(sends(&faults.heal_all(at(4))).len(), 2);
        assert_eq!(faults.records()[0].made_by, "cluster");
    }

    fn board() -> FaultBoard {
        let roles = [("a", vec!["server"]), ("b", vec!["server"]), ("c", vec!["client"])];
        FaultBoard::new(roles.iter().map(|(s, r)| (s.to_string(), r.iter().map(|x| x.to_string()).collect())).collect())
    }

    fn at(mono_ms: u64) -> Now {
        Now { mono_ms, unix_ms: 5_000_000 + mono_ms }
    }

    fn ip(slave: &str) -> Option<IpAddr> {
        match slave {
            "a" => Some([10, 0, 0, 1].into()),
            "b" => Some([10, 0, 0, 2].into()),
            "c" => Some([10, 0, 0, 3].into()),
            _ => None,
        }
    }

    fn context(stage_index: usize, case: Option<&str>) -> Context<'_> {
        Context {
            stage_id: 40 + stage_index as u64,
            stage_index,
            case,
            address: &ip,
            master_address: &|_| Some([10, 0, 0, 100].into()),
            deadman_ms: 30_000,
        }
    }

    fn partition(until: FaultUntil) -> FaultOp {
        FaultOp::Partition { a: vec!["c".into()], b: vec!["role:server".into()], until }
    }

    fn sends(out: &[Out]) -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                Out::Send { slave, message: FromMaster::ApplyFault(a) } => {
                    Some(format!("{slave} apply {:?}", a.action))
                }
                Out::Send { slave, message: FromMaster::HealFault { fault_id } } => {
                    Some(format!("{slave} heal {fault_id:?}"))
                }
                _ => None,
            })
            .collect()
    }

    fn replies(out: &[Out]) -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                Out::Reply { slave, request_id, reply: SyncReply::Done { .. } } => {
                    Some(format!("{slave}#{request_id} done"))
                }
                Out::Reply { slave, request_id, reply: SyncReply::Failed { reason } } => {
                    Some(format!("{slave}#{request_id} failed: {reason}"))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_partition_goes_to_both_sides_and_the_caller_hears_once_all_applied_it() {
        let mut faults = board();
        let out = faults.request("c", 1, partition(FaultUntil::Stage), &context(2, Some("x")), || Ok(7), at(0));
        assert_eq!(
            sends(&out),
            [
                "c apply Partition { peers: [10.0.0.1, 10.0.0.2] }",
                "a apply Partition { peers: [10.0.0.3] }",
                "b apply Partition { peers: [10.0.0.3] }",
            ]
        );
        assert!(replies(&out).is_empty());
        assert!(faults.busy());
        assert!(faults.answer("a", 7, false, None, "dropping".into(), at(5)).is_empty());
        assert!(faults.answer("b", 7, false, None, "dropping".into(), at(6)).is_empty());
        let out = faults.answer("c", 7, false, None, "dropping".into(), at(7));
        assert_eq!(replies(&out), ["c#1 done"]);
        assert!(!faults.busy());
        assert!(faults.holds(7));
        // The next stage heals it, and it is done once every side healed.
        assert!(faults.heal_before(2, Some("x"), at(8)).is_empty(), "same stage: not yet");
        let out = faults.heal_before(3, Some("x"), at(10));
        assert_eq!(sends(&out), ["a heal Some(7)", "b heal Some(7)", "c heal Some(7)"]);
        for slave in ["a", "b", "c"] {
            faults.answer(slave, 7, true, None, String::new(), at(12));
        }
        assert!(!faults.holds(7));
        // Back after a reconnect still holding it (its heal was lost): healed again.
        let out = faults.answer("b", 7, false, None, String::new(), at(13));
        assert_eq!(sends(&out), ["b heal Some(7)"]);
        let record = &faults.records()[0];
        assert_eq!((record.kind.as_str(), record.params.as_str()), ("partition", "c -- a b"));
        assert_eq!((record.started_unix_ms, record.ended_unix_ms), (5_000_000, Some(5_000_012)));
        assert_eq!(record.details.len(), 3);
    }

    #[test]
    fn a_target_that_cannot_apply_fails_the_call_and_the_others_heal() {
        let mut faults = board();
        faults.request("c", 1, partition(FaultUntil::Stage), &context(2, None), || Ok(7), at(0));
        faults.answer("a", 7, false, None, String::new(), at(1));
        faults.answer("b", 7, false, Some("nft: Operation not permitted".into()), String::new(), at(1));
        let out = faults.answer("c", 7, false, None, String::new(), at(2));
        assert_eq!(replies(&out), ["c#1 failed: partition failed: b: nft: Operation not permitted"]);
        assert_eq!(sends(&out), ["a heal Some(7)", "c heal Some(7)"], "only those that applied it");
        assert_eq!(faults.next_deadline(), Some(2 + ANSWER_WITHIN_MS), "the heals are awaited");
        faults.answer("a", 7, true, None, String::new(), at(3));
        faults.answer("c", 7, true, None, String::new(), at(3));
        assert!(!faults.busy());
        // A silent target counts as failed at the deadline.
        faults.request("c", 2, partition(FaultUntil::Stage), &context(2, None), || Ok(8), at(100));
        faults.answer("a", 8, false, None, String::new(), at(101));
        faults.answer("b", 8, false, None, String::new(), at(101));
        assert_eq!(faults.next_deadline(), Some(100 + ANSWER_WITHIN_MS));
        let out = faults.tick(at(100 + ANSWER_WITHIN_MS));
        assert_eq!(replies(&out), ["c#2 failed: partition failed: c: no answer within 15 s"]);
    }

    #[test]
    fn until_case_and_session_outlive_their_stage() {
        let mut faults = board();
        let pause = |until| FaultOp::Pause { targets: vec!["a".into()], pattern: "xrootd".into(), until };
        faults.request("a", 1, pause(FaultUntil::Case), &context(2, Some("x")), || Ok(1), at(0));
        faults.request("a", 2, pause(FaultUntil::Session), &context(2, Some("x")), || Ok(2), at(0));
        faults.answer("a", 1, false, None, String::new(), at(1));
        faults.answer("a", 2, false, None, String::new(), at(1));
        assert!(faults.heal_before(3, Some("x"), at(2)).is_empty(), "same case");
        assert_eq!(sends(&faults.heal_before(4, Some("y"), at(3))), ["a heal Some(1)"]);
        faults.answer("a", 1, true, None, String::new(), at(4));
        assert!(faults.heal_before(9, None, at(5)).is_empty(), "the session's stays");
        assert_eq!(sends(&faults.heal_all(at(6))), ["a heal Some(2)"]);
    }

    #[test]
    fn a_heal_call_fails_when_any_of_its_heals_failed() {
        let mut faults = board();
        let pause = |pattern: &str| FaultOp::Pause {
            targets: vec!["a".into()],
            pattern: pattern.into(),
            until: FaultUntil::Stage,
        };
        faults.request("c", 1, pause("x"), &context(2, None), || Ok(1), at(0));
        faults.request("c", 2, pause("y"), &context(2, None), || Ok(2), at(0));
        faults.answer("a", 1, false, None, String::new(), at(1));
        faults.answer("a", 2, false, None, String::new(), at(1));
        faults.request("c", 3, FaultOp::Heal, &context(2, None), || Ok(99), at(2));
        assert!(faults.answer("a", 1, true, Some("pid 7: EPERM".into()), String::new(), at(3)).is_empty());
        let out = faults.answer("a", 2, true, None, String::new(), at(3));
        assert_eq!(replies(&out), ["c#3 failed: heal failed: a: pid 7: EPERM"], "the first failure is not lost");
    }

    #[test]
    fn resume_and_heal_answer_once_their_faults_are_healed() {
        let mut faults = board();
        let pause = |pattern: &str| FaultOp::Pause {
            targets: vec!["role:server".into()],
            pattern: pattern.into(),
            until: FaultUntil::Stage,
        };
        faults.request("c", 1, pause("xrootd"), &context(2, None), || Ok(1), at(0));
        faults.request("c", 2, pause("cmsd"), &context(2, None), || Ok(2), at(0));
        for (slave, id) in [("a", 1), ("b", 1), ("a", 2), ("b", 2)] {
            faults.answer(slave, id, false, None, String::new(), at(1));
        }
        let out = faults.request(
            "c",
            3,
            FaultOp::Resume { pattern: Some("cmsd".into()) },
            &context(2, None),
            || Ok(99),
            at(2),
        );
        assert_eq!(sends(&out), ["a heal Some(2)", "b heal Some(2)"]);
        faults.answer("a", 2, true, None, String::new(), at(3));
        assert_eq!(replies(&faults.answer("b", 2, true, None, String::new(), at(3))), ["c#3 done"]);
        let out = faults.request("c", 4, FaultOp::Heal, &context(2, None), || Ok(99), at(4));
        assert_eq!(sends(&out), ["a heal Some(1)", "b heal Some(1)"]);
        let again = faults.request("c", 4, FaultOp::Heal, &context(2, None), || Ok(99), at(4));
        assert!(again.is_empty(), "sent again while its heals are awaited: {again:?}");
        faults.answer("a", 1, true, None, String::new(), at(4));
        assert_eq!(replies(&faults.answer("b", 1, true, None, String::new(), at(4))), ["c#4 done"]);
        // A fault made since, then the same heal sent again after a reconnect: not healed.
        faults.request("c", 6, pause("xrootd"), &context(2, None), || Ok(7), at(5));
        faults.answer("a", 7, false, None, String::new(), at(5));
        faults.answer("b", 7, false, None, String::new(), at(5));
        let again = faults.request("c", 4, FaultOp::Heal, &context(2, None), || Ok(99), at(6));
        assert_eq!(replies(&again), ["c#4 done"]);
        assert!(sends(&again).is_empty() && faults.holds(7), "the later fault stays");
        let out = faults.request("c", 5, FaultOp::Heal, &context(2, None), || Ok(99), at(7));
        assert_eq!(sends(&out), ["a heal Some(7)", "b heal Some(7)"], "a new heal call heals it");
        faults.answer("a", 7, true, None, String::new(), at(8));
        faults.answer("b", 7, true, None, String::new(), at(8));
        let out = faults.request("c", 8, FaultOp::Heal, &context(2, None), || Ok(99), at(9));
        assert_eq!(replies(&out), ["c#8 done"], "nothing active left to heal");
    }

    #[test]
    fn a_request_sent_again_after_a_reconnect_is_applied_once() {
        let mut faults = board();
        let pause = FaultOp::Pause { targets: vec!["a".into()], pattern: "x".into(), until: FaultUntil::Stage };
        assert_eq!(sends(&faults.request("c", 1, pause.clone(), &context(0, None), || Ok(1), at(0))).len(), 1);
        assert!(faults.request("c", 1, pause.clone(), &context(0, None), || Ok(2), at(1)).is_empty());
        faults.answer("a", 1, false, None, String::new(), at(2));
        assert_eq!(replies(&faults.request("c", 1, pause, &context(0, None), || Ok(3), at(3))), ["c#1 done"]);
        assert_eq!(faults.records().len(), 1);
    }

    #[test]
    fn bad_calls_are_refused_with_the_reason() {
        let mut faults = board();
        let mut refused = |op: FaultOp| {
            let out = faults.request("c", 1, op, &context(0, None), || Ok(1), at(0));
            replies(&out).join("")
        };
        assert_eq!(
            refused(FaultOp::Partition {
                a: vec!["a".into()],
                b: vec!["role:server".into()],
                until: FaultUntil::Stage
            }),
            "c#1 failed: slave a is on both sides of the partition"
        );
        assert_eq!(
            refused(FaultOp::Pause { targets: vec!["zz".into()], pattern: "x".into(), until: FaultUntil::Stage }),
            "c#1 failed: `zz` is not a slave of this session (nor `role:NAME`)"
        );
        assert_eq!(
            refused(FaultOp::Kill { targets: vec!["role:db".into()], pattern: "x".into(), signal: 9 }),
            "c#1 failed: no slave of the session has the role `db`"
        );
        assert_eq!(
            refused(FaultOp::Kill { targets: vec!["a".into()], pattern: String::new(), signal: 9 }),
            "c#1 failed: an empty pattern would match every process"
        );
        let same = |_: &str| Some(IpAddr::from([127, 0, 0, 1]));
        let none = |_: &str| None;
        let context =
            Context { stage_id: 1, stage_index: 0, case: None, address: &same, master_address: &none, deadman_ms: 1 };
        let out = faults.request("c", 1, partition(FaultUntil::Stage), &context, || Ok(1), at(0));
        assert_eq!(
            replies(&out),
            ["c#1 failed: slaves c and a share the address 127.0.0.1: a partition between them cannot be made"]
        );
        // b runs on the master's host: cutting c from b would cut c from the master.
        let master_at_b = |_: &str| Some(IpAddr::from([10, 0, 0, 2]));
        let context = Context {
            stage_id: 1,
            stage_index: 0,
            case: None,
            address: &ip,
            master_address: &master_at_b,
            deadman_ms: 1,
        };
        let out = faults.request("c", 2, partition(FaultUntil::Stage), &context, || Ok(1), at(0));
        assert_eq!(
            replies(&out),
            ["c#2 failed: slave b has the master's address 10.0.0.2: the partition would cut c from the master"]
        );
        assert_eq!(
            describe_netem(100_000, 10_000, 10_000, 10_000_000),
            "delay 100ms jitter 10ms loss 1% rate 10000kbit"
        );
    }
}
