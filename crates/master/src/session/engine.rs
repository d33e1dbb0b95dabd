//! The session engine: a running session as plain data and functions.
//!
//! It owns the session record and the plan. The runner (the I/O shell) feeds it what
//! happens ([`Event`]s: a stage sent, started, finished on a slave; a disconnect, a
//! reconnect; a cancel; time passing) and carries out what it returns ([`Action`]s: run a
//! stage on these slaves, cancel a run, forget a route, save, finish). No tokio, no
//! sockets: every rule here is tested by feeding events in `tests` below.
//!
//! Rules, beside XrdTest's failure rules ([`super::rules`]):
//! - the barrier: a stage starts on no slave until every run of the one before has ended;
//! - a stage that would run on no slave fails; it never passes;
//! - a slave whose connection drops keeps its run for the grace period: back in time with
//!   the stage, the run goes on; back without it, the run is sent again if it had not
//!   started, else it fails; not back, the run is `disconnected`;
//! - a connected slave has the stage's timeout plus a margin to report; then the run is
//!   `timed_out` (or `cancelled` when the session is stopping);
//! - a cancel or abort kills the running stage (never suite finalize: it is the cleanup)
//!   and gives the slaves a short while to report before their runs are ended;
//! - a case attempt that failed is run again, init to finalize, while its instance has
//!   attempts left; one that passes after a failed one makes the instance `flaky`;
//! - a soak (`for`): before suite finalize, another pass over the instances is added while
//!   time is left; once it is up, instances not begun are dropped (the one in progress
//!   finishes).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tracing::{info, warn};
use xrdtest_proto::{Stage, StageId, StageOutcome, StageResult};

use crate::model::{CaseState, RunState, SessionRecord, SessionState};
use crate::session::plan::{Plan, Step};
use crate::session::rules::{AttemptKey, Decision, Rules, StopRequest};

/// Times the engine enforces besides each stage's own timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a slave that disconnected mid-stage may take to come back.
    pub reconnect_grace: Duration,
    /// Beyond a stage's timeout (which the slave enforces), how long the master waits for
    /// a connected slave's result.
    pub result_margin: Duration,
    /// After a cancel, how long the slaves have to report their killed runs.
    pub cancel_wait: Duration,
}

/// Now, in both clocks: `mono_ms` (never goes back; deadlines) and `unix_ms` (records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono_ms: u64,
    pub unix_ms: u64,
}

/// What happened, as far as the engine cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The runner tried to send the current stage to `slave` under `stage_id`.
    Sent {
        slave: String,
        stage_id: StageId,
        delivered: bool,
    },
    /// The current stage could not be sent to anyone (no stage ids): it fails everywhere.
    StageNotSent {
        reason: String,
    },
    Started {
        slave: String,
        stage_id: StageId,
        unix_ms: u64,
    },
    Output {
        slave: String,
        stage_id: StageId,
        bytes: u64,
    },
    Log {
        slave: String,
        stage_id: StageId,
        path: String,
    },
    Finished {
        slave: String,
        result: StageResult,
    },
    /// The slave's connection dropped.
    Disconnected {
        slave: String,
    },
    /// The slave reconnected and still holds the stage.
    Resumed {
        slave: String,
        stage_id: StageId,
    },
    /// The slave reconnected without the stage (it restarted).
    Lost {
        slave: String,
        stage_id: StageId,
    },
    /// A resend asked for by [`Action::Resend`] could not be delivered.
    ResendFailed {
        slave: String,
        stage_id: StageId,
    },
    /// A cancel (ends `cancelled`) or an abort (ends `failed`); only the first counts.
    Stop(StopRequest),
}

/// What the runner must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send stage `index` of the plan to each of `slaves` under a fresh stage id each, and
    /// report each attempt with [`Event::Sent`].
    Run { index: usize, slaves: Vec<String> },
    /// Send the same stage again (the slave came back without it before it started).
    Resend { index: usize, slave: String, stage_id: StageId },
    /// Ask a slave to kill a run.
    Cancel { slave: String, stage_id: StageId, reason: String },
    /// Nobody waits for this stage id's messages any more.
    Forget { stage_id: StageId },
    /// Store the record now (before the end). Between, the runner stores it at its own
    /// pace when [`Engine::take_dirty`] says it changed: rewriting the whole record at every
    /// stage boundary cost more than anything else the master does per stage.
    Save,
    /// The session is over (the record holds the final stages and cases; the runner sets
    /// the final state once the cluster, if any, is stopped).
    Finish { state: SessionState, reason: Option<String> },
}

/// One slave's run of the current stage, until it ends.
#[derive(Debug, Clone)]
struct Pending {
    /// 0 until the runner reports the stage sent.
    stage_id: StageId,
    /// The slave reported the stage started (so a slave back without it lost it).
    started: bool,
    /// The run's position in the stage record.
    position: usize,
}

/// The stage that runs now.
#[derive(Debug, Clone)]
struct Current {
    index: usize,
    pending: HashMap<String, Pending>,
    /// Slaves away (connection down, or never reached), and since when.
    away: Away,
    result_deadline: u64,
    /// The stage's timeout and the result margin, in ms.
    result_wait: u64,
}

/// Slaves away, by name and by the time they left, so that the earliest and the expired
/// are found without looking at every one (a whole rack can drop at once).
#[derive(Debug, Clone, Default)]
struct Away {
    since: HashMap<String, u64>,
    by_time: BTreeSet<(u64, String)>,
}

impl Away {
    /// Notes `slave` away from `mono_ms`, unless it is away already (the first time counts).
    fn insert(&mut self, slave: &str, mono_ms: u64) {
        if !self.since.contains_key(slave) {
            self.since.insert(slave.to_string(), mono_ms);
            self.by_time.insert((mono_ms, slave.to_string()));
        }
    }

    fn remove(&mut self, slave: &str) {
        if let Some(since) = self.since.remove(slave) {
            self.by_time.remove(&(since, slave.to_string()));
        }
    }

    fn earliest(&self) -> Option<u64> {
        self.by_time.first().map(|(since, _)| *since)
    }

    /// The slaves away since `mono_ms` or before.
    fn until(&self, mono_ms: u64) -> Vec<String> {
        self.by_time.range(..(mono_ms.saturating_add(1), String::new())).map(|(_, slave)| slave.clone()).collect()
    }
}

pub struct Engine {
    record: SessionRecord,
    plan: Plan,
    /// One per stage record, in the same order.
    steps: Vec<Step>,
    /// Per template: why its script could not be read (the stage fails without running).
    script_errors: Vec<Option<String>>,
    /// A soak's end (mono ms), fixed when the session starts.
    soak_end: Option<u64>,
    /// A stage was sent in the soak's current pass (a pass that sends none ends the soak:
    /// passes whose stages all fail without running would follow each other at once).
    soak_pass_sent: bool,
    limits: Limits,
    rules: Rules,
    /// The next stage to consider once the current one ends.
    cursor: usize,
    current: Option<Current>,
    finished: bool,
    /// The record changed since the runner last took it for saving.
    dirty: bool,
}

impl Engine {
    /// An engine for `record`, made from `plan` (its stages and cases are the plan's
    /// [`Plan::initial`] ones, with a run per slave of the session). `script_errors` has
    /// one entry per template of the plan.
    pub fn new(record: SessionRecord, plan: Plan, script_errors: Vec<Option<String>>, limits: Limits) -> Engine {
        let (steps, _) = plan.initial();
        debug_assert_eq!(steps.len(), record.stages.len(), "the record was made from this plan");
        Engine {
            record,
            rules: Rules::new(plan.exit_first),
            plan,
            steps,
            script_errors,
            soak_end: None,
            soak_pass_sent: false,
            limits,
            cursor: 0,
            current: None,
            finished: false,
            dirty: false,
        }
    }

    pub fn record(&self) -> &SessionRecord {
        &self.record
    }

    pub fn into_record(self) -> SessionRecord {
        self.record
    }

    /// Whether the record changed since the last call (for the runner's periodic save).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The template of stage record `index` (its script and tags).
    pub fn template_of(&self, index: usize) -> usize {
        self.steps[index].template
    }

    /// The plan the engine follows.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The index of the stage record that runs now, if one does.
    pub fn current_index(&self) -> Option<usize> {
        self.current.as_ref().map(|current| current.index)
    }

    /// The stage id of `slave`'s run of the current stage, if it still runs.
    pub fn running_stage_id(&self, slave: &str) -> Option<StageId> {
        self.current.as_ref()?.pending.get(slave).map(|p| p.stage_id).filter(|id| *id != 0)
    }

    /// The earliest moment (mono ms) at which [`Engine::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<u64> {
        let current = self.current.as_ref()?;
        let grace = self.limits.reconnect_grace.as_millis() as u64;
        let grace_end = current.away.earliest().map(|since| since + grace);
        Some(grace_end.map_or(current.result_deadline, |end| end.min(current.result_deadline)))
    }

    /// Begins the session: the first stage that runs.
    pub fn start(&mut self, now: Now) -> Vec<Action> {
        let mut actions = Vec::new();
        self.soak_end = self.plan.run_for.map(|d| now.mono_ms.saturating_add(d.as_millis() as u64));
        self.advance(now, &mut actions);
        actions
    }

    pub fn handle(&mut self, event: Event, now: Now) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.finished {
            return actions;
        }
        match event {
            Event::Stop(request) => self.stop(request, now, &mut actions),
            Event::StageNotSent { reason } => {
                if let Some(current) = self.current.as_mut() {
                    let index = current.index;
                    for (_, pending) in current.pending.drain() {
                        let run = &mut self.record.stages[index].runs[pending.position];
                        run.state = RunState::Failed;
                        run.reason = Some(reason.clone());
                    }
                }
            }
            Event::Sent { slave, stage_id, delivered } => {
                let Some(current) = self.current.as_mut() else { return actions };
                let Some(pending) = current.pending.get_mut(&slave) else { return actions };
                pending.stage_id = stage_id;
                let run = &mut self.record.stages[current.index].runs[pending.position];
                run.stage_id = stage_id;
                run.state = RunState::Running;
                if !delivered {
                    current.away.insert(&slave, now.mono_ms);
                }
                // The clock for results starts once the stage went to every slave: slow
                // sends to some must not eat into the others' margin.
                if current.pending.values().all(|p| p.stage_id != 0) {
                    current.result_deadline = current.result_deadline.max(now.mono_ms + current.result_wait);
                }
            }
            Event::Disconnected { slave } => {
                if let Some(current) = self.current.as_mut() {
                    if current.pending.contains_key(&slave) {
                        let grace = self.limits.reconnect_grace;
                        warn!(slave = %slave, stage = %self.record.stages[current.index].stage, ?grace, "slave disconnected mid-stage; waiting for it");
                        current.away.insert(&slave, now.mono_ms);
                    }
                }
            }
            Event::Started { slave, stage_id, unix_ms } => {
                if let Some((index, position, _)) = self.run_of(&slave, stage_id) {
                    if let Some(pending) = self.current.as_mut().and_then(|c| c.pending.get_mut(&slave)) {
                        pending.started = true;
                    }
                    self.record.stages[index].runs[position].started_ms = Some(unix_ms);
                }
            }
            Event::Output { slave, stage_id, bytes } => {
                if let Some((index, position, _)) = self.run_of(&slave, stage_id) {
                    self.record.stages[index].runs[position].output_bytes += bytes;
                }
            }
            Event::Log { slave, stage_id, path } => {
                if let Some((index, position, _)) = self.run_of(&slave, stage_id) {
                    let logs = &mut self.record.stages[index].runs[position].logs;
                    if !logs.contains(&path) {
                        logs.push(path);
                    }
                }
            }
            Event::Finished { slave, result } => {
                if self.run_of(&slave, result.stage_id).is_some() {
                    let (state, exit_code, reason) = judge_run(&result);
                    let stage_id = result.stage_id;
                    self.end_run(&slave, now, |run| {
                        run.started_ms = Some(result.started_unix_ms);
                        run.ended_ms = Some(result.ended_unix_ms);
                        run.output_bytes = result.output_bytes;
                        run.dropped_bytes = result.dropped_bytes;
                        run.state = state;
                        run.exit_code = exit_code;
                        run.reason = reason;
                    });
                    actions.push(Action::Forget { stage_id });
                }
            }
            Event::Resumed { slave, stage_id } => {
                if self.run_of(&slave, stage_id).is_some() {
                    info!(slave = %slave, "slave back; stage goes on");
                    if let Some(current) = self.current.as_mut() {
                        current.away.remove(&slave);
                    }
                }
            }
            Event::Lost { slave, stage_id } => {
                let Some((index, _, started)) = self.run_of(&slave, stage_id) else { return actions };
                if started {
                    self.lose(&slave, stage_id, now, &mut actions);
                } else {
                    if let Some(current) = self.current.as_mut() {
                        current.away.remove(&slave);
                    }
                    actions.push(Action::Resend { index, slave, stage_id });
                }
            }
            Event::ResendFailed { slave, stage_id } => {
                if self.run_of(&slave, stage_id).is_some() {
                    self.lose(&slave, stage_id, now, &mut actions);
                }
            }
        }
        self.dirty = true;
        self.end_stage_if_done(now, &mut actions);
        actions
    }

    /// Applies the deadlines that have passed by `now`.
    pub fn tick(&mut self, now: Now) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(current) = self.current.as_mut() else { return actions };
        let grace = self.limits.reconnect_grace;
        // Away since `cutoff` or before: away for the whole grace period.
        let expired = match now.mono_ms.checked_sub(grace.as_millis() as u64) {
            Some(cutoff) => current.away.until(cutoff),
            None => Vec::new(),
        };
        for slave in expired {
            if let Some(current) = self.current.as_mut() {
                current.away.remove(&slave);
            }
            let Some(stage_id) = self.current.as_ref().and_then(|c| c.pending.get(&slave)).map(|p| p.stage_id) else {
                continue;
            };
            warn!(slave = %slave, "stage failed: slave disconnected");
            self.end_run(&slave, now, |run| {
                run.state = RunState::Disconnected;
                run.reason = Some(format!("slave disconnected (not back within {}s)", grace.as_secs()));
            });
            actions.push(Action::Forget { stage_id });
            self.dirty = true;
        }
        let overdue = self.current.as_ref().is_some_and(|c| c.result_deadline <= now.mono_ms);
        if overdue {
            let stopping = self.rules.is_cancelled();
            let slaves: Vec<(String, StageId)> = self
                .current
                .as_ref()
                .map(|c| c.pending.iter().map(|(slave, p)| (slave.clone(), p.stage_id)).collect())
                .unwrap_or_default();
            for (slave, stage_id) in slaves {
                actions.push(Action::Cancel { slave: slave.clone(), stage_id, reason: "no result in time".into() });
                self.end_run(&slave, now, |run| {
                    run.state = if stopping { RunState::Cancelled } else { RunState::TimedOut };
                    run.reason = Some("no result from the slave in time".into());
                });
                actions.push(Action::Forget { stage_id });
            }
            self.dirty = true;
        }
        self.end_stage_if_done(now, &mut actions);
        actions
    }

    /// The current stage's index, and the position of `slave`'s run in it and whether it
    /// started, if `stage_id` is that run (messages of older runs are ignored).
    fn run_of(&self, slave: &str, stage_id: StageId) -> Option<(usize, usize, bool)> {
        let current = self.current.as_ref()?;
        let pending = current.pending.get(slave)?;
        (stage_id != 0 && pending.stage_id == stage_id).then_some((current.index, pending.position, pending.started))
    }

    /// Ends `slave`'s run of the current stage: `fill` sets its outcome; the end time is
    /// `now` unless `fill` set one.
    fn end_run(&mut self, slave: &str, now: Now, fill: impl FnOnce(&mut crate::model::StageRun)) {
        let Some(current) = self.current.as_mut() else { return };
        let Some(pending) = current.pending.remove(slave) else { return };
        current.away.remove(slave);
        let run = &mut self.record.stages[current.index].runs[pending.position];
        run.ended_ms = None;
        fill(run);
        run.ended_ms.get_or_insert(now.unix_ms);
    }

    /// A slave came back without a run that had started, or a resend failed.
    fn lose(&mut self, slave: &str, stage_id: StageId, now: Now, actions: &mut Vec<Action>) {
        self.end_run(slave, now, |run| {
            run.state = RunState::Failed;
            run.reason = Some("slave reconnected without this stage (was it restarted?)".into());
        });
        actions.push(Action::Forget { stage_id });
    }

    fn stop(&mut self, request: StopRequest, now: Now, actions: &mut Vec<Action>) {
        if self.rules.is_cancelled() {
            return;
        }
        let reason = request.reason.clone();
        self.rules.stop(request);
        let Some(current) = self.current.as_mut() else { return };
        if self.record.stages[current.index].stage == Stage::SuiteFinalize {
            info!(%reason, "stop during suite finalize: letting the cleanup finish");
            return;
        }
        info!(%reason, stage = %self.record.stages[current.index].stage, "cancelling the running stage");
        // Runs not sent yet (stage id 0) have nothing to kill.
        for (slave, pending) in current.pending.iter().filter(|(_, p)| p.stage_id != 0) {
            actions.push(Action::Cancel { slave: slave.clone(), stage_id: pending.stage_id, reason: reason.clone() });
        }
        let wait = now.mono_ms + self.limits.cancel_wait.as_millis() as u64;
        current.result_deadline = current.result_deadline.min(wait);
    }

    /// When every run of the current stage has ended: the barrier opens.
    fn end_stage_if_done(&mut self, now: Now, actions: &mut Vec<Action>) {
        let done = self.current.as_ref().is_some_and(|c| c.pending.is_empty());
        if !done {
            return;
        }
        let Some(current) = self.current.take() else { return };
        let index = current.index;
        let stage = &self.record.stages[index];
        let passed = !stage.runs.is_empty() && stage.runs.iter().all(|run| run.state == RunState::Passed);
        info!(stage = %stage.stage, passed, "stage ended");
        let stage = stage.stage.clone();
        self.rules.record(&stage, self.attempt_key(index), passed);
        self.close_case_if_last(index, now);
        self.dirty = true;
        self.cursor = index + 1;
        self.advance(now, actions);
    }

    /// Moves on to the next stage that runs, skipping (and recording) those the rules
    /// skip; finishes the session after the last.
    fn advance(&mut self, now: Now, actions: &mut Vec<Action>) {
        loop {
            self.follow_soak(now);
            if self.cursor >= self.steps.len() {
                break;
            }
            let index = self.cursor;
            let step = self.steps[index];
            let template = &self.plan.templates[step.template];
            let stage = template.stage.clone();
            let timeout = template.timeout;
            match self.rules.decide(&stage, self.attempt_key(index)) {
                Decision::Skip(reason) => {
                    let stage = &mut self.record.stages[index];
                    stage.skipped = Some(reason.clone());
                    for run in &mut stage.runs {
                        run.state = RunState::Skipped;
                        run.reason = Some(reason.clone());
                    }
                }
                Decision::Run => {
                    self.open_case(index, now);
                    let failure = match (&self.script_errors[step.template], self.record.stages[index].runs.is_empty())
                    {
                        (Some(error), _) => Some(error.clone()),
                        // The invariant: a stage with nobody to run it fails, never passes.
                        (None, true) => Some("no slave to run this stage on".to_string()),
                        (None, false) => None,
                    };
                    match failure {
                        None => {
                            self.begin(index, timeout, now, actions);
                            return;
                        }
                        Some(reason) => {
                            let record = &mut self.record.stages[index];
                            if record.runs.is_empty() {
                                record.skipped = Some(reason.clone());
                            }
                            for run in &mut record.runs {
                                run.state = RunState::Failed;
                                run.reason = Some(reason.clone());
                            }
                            warn!(stage = %stage, %reason, "stage failed without running");
                            self.rules.record(&stage, self.attempt_key(index), false);
                        }
                    }
                }
            }
            self.close_case_if_last(index, now);
            self.cursor += 1;
        }
        if !self.finished {
            self.finished = true;
            let (state, reason) = self.rules.outcome();
            actions.push(Action::Save);
            actions.push(Action::Finish { state, reason });
        }
    }

    /// A soak at the cursor: at the end of a pass, the next one is added while time is
    /// left; at the start of an instance once time is up, the rest of the pass is dropped.
    fn follow_soak(&mut self, now: Now) {
        let Some(end) = self.soak_end else { return };
        let next = self.steps.get(self.cursor);
        let at_case = next.and_then(|step| step.case.map(|case| (case, step.attempt)));
        let end_of_pass = self.cursor > 0 && next.is_none_or(|step| Some(step.template) == self.plan.suite_finalize());
        match at_case {
            Some((case, 1)) if now.mono_ms >= end && !self.case_begun(case) => {
                let rest = self.steps[self.cursor..].iter().take_while(|step| step.case.is_some()).count();
                self.steps.drain(self.cursor..self.cursor + rest);
                self.record.stages.drain(self.cursor..self.cursor + rest);
                self.record.cases.truncate(case);
                info!(cases = self.record.cases.len(), "soak time is up: no more cases");
                self.soak_end = None;
            }
            Some(_) => {}
            None if end_of_pass && !self.soak_pass_sent => {
                warn!("soak stopped: its last pass sent no stage to any slave");
                self.soak_end = None;
            }
            None if end_of_pass
                && now.mono_ms < end
                && !self.rules.cases_stopped()
                && !self.plan.instances.is_empty() =>
            {
                self.soak_pass_sent = false;
                let repetition = self.record.cases.last().map_or(1, |case| case.repetition + 1);
                let (steps, cases) = self.plan.pass(repetition, self.record.cases.len());
                let stages: Vec<_> =
                    steps.iter().map(|step| self.plan.stage_record(step, &self.record.slaves)).collect();
                info!(repetition, "soak: another pass over the cases");
                self.steps.splice(self.cursor..self.cursor, steps);
                self.record.stages.splice(self.cursor..self.cursor, stages);
                self.record.cases.extend(cases);
            }
            None => {}
        }
    }

    /// Whether case record `case` has had a stage run (a retry of it is not a new start).
    fn case_begun(&self, case: usize) -> bool {
        self.record.cases.get(case).is_some_and(|c| c.started_ms.is_some())
    }

    /// The case attempt stage record `index` belongs to, for a case's stage.
    fn attempt_key(&self, index: usize) -> Option<AttemptKey> {
        let step = &self.steps[index];
        step.case.map(|case| (case, step.attempt))
    }

    /// Starts stage `index` on every slave of its record.
    fn begin(&mut self, index: usize, timeout: Duration, now: Now, actions: &mut Vec<Action>) {
        let runs = &self.record.stages[index].runs;
        let pending = runs
            .iter()
            .enumerate()
            .map(|(position, run)| (run.slave.clone(), Pending { stage_id: 0, started: false, position }))
            .collect();
        let slaves = runs.iter().map(|run| run.slave.clone()).collect();
        let result_wait = (timeout + self.limits.result_margin).as_millis() as u64;
        self.current = Some(Current {
            index,
            pending,
            away: Away::default(),
            result_deadline: now.mono_ms + result_wait,
            result_wait,
        });
        actions.push(Action::Run { index, slaves });
        self.soak_pass_sent |= self.steps[index].case.is_some();
        self.dirty = true;
    }

    /// A case's first stage that runs marks the case running; each attempt is counted.
    fn open_case(&mut self, index: usize, now: Now) {
        let step = self.steps[index];
        let Some(case) = step.case.and_then(|case| self.record.cases.get_mut(case)) else { return };
        if case.state == CaseState::Pending {
            case.state = CaseState::Running;
            case.started_ms = Some(now.unix_ms);
        }
        case.attempts = case.attempts.max(step.attempt);
    }

    /// After the last stage of a case attempt (run or skipped): another attempt if it
    /// failed and may be retried, else the case's final state.
    fn close_case_if_last(&mut self, index: usize, now: Now) {
        let step = self.steps[index];
        let Some((case, attempt)) = self.attempt_key(index) else { return };
        if self.steps.get(index + 1).is_some_and(|next| next.case == step.case && next.attempt == attempt) {
            return;
        }
        let failed = self.rules.attempt_failed((case, attempt));
        let Some(instance) = self.plan.templates[step.template].instance.map(|i| &self.plan.instances[i]) else {
            return;
        };
        if failed && attempt < instance.max_attempts && !self.rules.cases_stopped() {
            let retry = self.plan.attempt(instance, case, step.repetition, attempt + 1);
            let stages: Vec<_> = retry.iter().map(|step| self.plan.stage_record(step, &self.record.slaves)).collect();
            info!(case = %instance.name, attempt = attempt + 1, of = instance.max_attempts, "case failed: running it again");
            self.steps.splice(index + 1..index + 1, retry);
            self.record.stages.splice(index + 1..index + 1, stages);
            return;
        }
        let name = instance.name.clone();
        let Some(record) = self.record.cases.get_mut(case) else { return };
        record.state = match (record.started_ms, failed) {
            (None, _) => CaseState::NotRun,
            (Some(_), true) => CaseState::Failed,
            (Some(_), false) if attempt > 1 => CaseState::Flaky,
            (Some(_), false) => CaseState::Passed,
        };
        record.ended_ms = Some(now.unix_ms);
        let state = record.state;
        self.rules.case_ended(&name, state == CaseState::Failed, state == CaseState::Flaky);
    }
}

/// The run state, exit code and reason of a finished run: its outcome, failed by any failed
/// check (a script's `check NAME fail` or a threshold) even when the script exited 0.
pub fn judge_run(result: &StageResult) -> (RunState, Option<i32>, Option<String>) {
    let (state, exit_code, reason) = describe_outcome(&result.outcome);
    match result.values.failure_reason() {
        None => (state, exit_code, reason),
        Some(checks) => {
            let state = if state == RunState::Passed { RunState::Failed } else { state };
            let reason = match reason {
                Some(reason) => format!("{reason}; {checks}"),
                None => checks,
            };
            (state, exit_code, Some(reason))
        }
    }
}

/// The run state, exit code and reason a stage outcome means.
pub fn describe_outcome(outcome: &StageOutcome) -> (RunState, Option<i32>, Option<String>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use std::sync::Arc;

    use xrdtest_defs::ScriptSource;

    use crate::model::{RunOptions, Trigger};
    use crate::session::plan::{Instance, ScriptRef, Template};

    const GRACE: u64 = 10_000;
    const MARGIN: u64 = 30_000;
    const CANCEL_WAIT: u64 = 15_000;
    const TIMEOUT: u64 = 60_000;

    fn limits() -> Limits {
        Limits {
            reconnect_grace: Duration::from_millis(GRACE),
            result_margin: Duration::from_millis(MARGIN),
            cancel_wait: Duration::from_millis(CANCEL_WAIT),
        }
    }

    fn at(ms: u64) -> Now {
        Now { mono_ms: ms, unix_ms: 1_000_000 + ms }
    }

    /// `si`, `sf`, and `init:a`, `run:a`, `fin:a` for cases.
    fn stage(text: &str) -> Stage {
        match text.split_once(':') {
            None if text == "si" => Stage::SuiteInit,
            None => Stage::SuiteFinalize,
            Some(("init", case)) => Stage::CaseInit { case: case.into() },
            Some(("run", case)) => Stage::CaseRun { case: case.into() },
            Some((_, case)) => Stage::CaseFinalize { case: case.into() },
        }
    }

    fn name(stage: &Stage) -> String {
        match stage {
            Stage::SuiteInit => "si".into(),
            Stage::SuiteFinalize => "sf".into(),
            Stage::CaseInit { case } => format!("init:{case}"),
            Stage::CaseRun { case } => format!("run:{case}"),
            Stage::CaseFinalize { case } => format!("fin:{case}"),
        }
    }

    /// A plan of `stages` (each case's stages in a row; `si` first, `sf` last), with
    /// `retries` for every case.
    fn plan_of(stages: &[&str], retries: u32) -> Plan {
        let mut templates = Vec::new();
        let mut instances: Vec<Instance> = Vec::new();
        for text in stages {
            let stage = stage(text);
            let instance = stage.case().map(|case| match instances.iter().position(|i| i.name == case) {
                Some(index) => index,
                None => {
                    instances.push(Instance {
                        name: case.to_string(),
                        case: case.to_string(),
                        params: Vec::new(),
                        tags: Arc::default(),
                        templates: Vec::new(),
                        max_attempts: 1 + retries,
                    });
                    instances.len() - 1
                }
            });
            if let Some(index) = instance {
                instances[index].templates.push(templates.len());
            }
            templates.push(Template {
                stage,
                timeout: Duration::from_millis(TIMEOUT),
                script: ScriptRef::Suite(ScriptSource::Inline(String::new())),
                instance,
            });
        }
        Plan {
            templates,
            instances,
            session_tags: Arc::default(),
            repeat: 1,
            run_for: None,
            exit_first: false,
            options: RunOptions::default(),
        }
    }

    fn engine_of(plan: Plan, slaves: &[&str]) -> Engine {
        let slaves: Vec<String> = slaves.iter().map(|s| s.to_string()).collect();
        let (steps, cases) = plan.initial();
        let record = SessionRecord {
            id: 7,
            suite: "ts".into(),
            trigger: Trigger::Api,
            definition_hash: String::new(),
            commit: None,
            state: SessionState::Running,
            reason: None,
            created_ms: 0,
            started_ms: Some(0),
            ended_ms: None,
            cases,
            stages: steps.iter().map(|step| plan.stage_record(step, &slaves)).collect(),
            cluster: None,
            options: plan.options.clone(),
            slaves,
        };
        let errors = vec![None; plan.templates.len()];
        Engine::new(record, plan, errors, limits())
    }

    fn engine(stages: &[&str], slaves: &[&str]) -> Engine {
        engine_of(plan_of(stages, 0), slaves)
    }

    fn result(stage_id: StageId, outcome: StageOutcome) -> StageResult {
        StageResult {
            stage_id,
            outcome,
            started_unix_ms: 5,
            ended_unix_ms: 6,
            output_bytes: 0,
            dropped_bytes: 0,
            chunks: 0,
            values: Default::default(),
        }
    }

    fn exited(code: i32) -> StageOutcome {
        StageOutcome::Exited { code }
    }

    /// A runner on paper: gives stage ids from 1 and delivers every stage; remembers what
    /// the engine asked for.
    struct Paper {
        engine: Engine,
        next_id: StageId,
        /// Slave → stage id of its current run.
        ids: BTreeMap<String, StageId>,
        /// Every stage sent, in order, with its slaves.
        ran: Vec<(String, Vec<String>)>,
        cancels: Vec<(String, String)>,
        resends: Vec<String>,
        forgotten: Vec<StageId>,
        finish: Option<(SessionState, Option<String>)>,
    }

    impl Paper {
        fn new(engine: Engine) -> Paper {
            Paper {
                engine,
                next_id: 1,
                ids: BTreeMap::new(),
                ran: Vec::new(),
                cancels: Vec::new(),
                resends: Vec::new(),
                forgotten: Vec::new(),
                finish: None,
            }
        }

        fn start(stages: &[&str], slaves: &[&str]) -> Paper {
            Paper::begin(engine(stages, slaves))
        }

        fn begin(engine: Engine) -> Paper {
            let mut paper = Paper::new(engine);
            let actions = paper.engine.start(at(0));
            paper.carry_out(actions, 0, &[]);
            paper
        }

        /// Carries out actions; `unreachable` slaves are not delivered to.
        fn carry_out(&mut self, actions: Vec<Action>, now: u64, unreachable: &[&str]) {
            let mut todo: std::collections::VecDeque<Action> = actions.into();
            while let Some(action) = todo.pop_front() {
                let mut events = Vec::new();
                match action {
                    Action::Run { index, slaves } => {
                        self.ran.push((name(&self.engine.record().stages[index].stage), slaves.clone()));
                        for slave in slaves {
                            let stage_id = self.next_id;
                            self.next_id += 1;
                            self.ids.insert(slave.clone(), stage_id);
                            let delivered = !unreachable.contains(&slave.as_str());
                            events.push(Event::Sent { slave, stage_id, delivered });
                        }
                    }
                    Action::Resend { slave, .. } => self.resends.push(slave),
                    Action::Cancel { slave, reason, .. } => self.cancels.push((slave, reason)),
                    Action::Forget { stage_id } => self.forgotten.push(stage_id),
                    Action::Save => {}
                    Action::Finish { state, reason } => {
                        assert!(self.finish.is_none(), "finished twice");
                        self.finish = Some((state, reason));
                    }
                }
                for event in events {
                    todo.extend(self.engine.handle(event, at(now)));
                }
            }
        }

        fn send(&mut self, event: Event, now: u64) {
            let actions = self.engine.handle(event, at(now));
            self.carry_out(actions, now, &[]);
        }

        fn tick(&mut self, now: u64) {
            let actions = self.engine.tick(at(now));
            self.carry_out(actions, now, &[]);
        }

        fn id(&self, slave: &str) -> StageId {
            self.ids[slave]
        }

        fn finish(&mut self, slave: &str, outcome: StageOutcome, now: u64) {
            let stage_id = self.id(slave);
            self.send(Event::Finished { slave: slave.into(), result: result(stage_id, outcome) }, now);
        }

        /// Finishes the current stage on every slave, `code` for each.
        fn finish_all(&mut self, codes: &[(&str, i32)], now: u64) {
            for (slave, code) in codes {
                self.finish(slave, exited(*code), now);
            }
        }

        fn run_state(&self, stage_name: &str, slave: &str) -> RunState {
            let stage = self.engine.record().stages.iter().find(|s| name(&s.stage) == stage_name).unwrap();
            stage.runs.iter().find(|r| r.slave == slave).unwrap().state
        }

        fn ran(&self) -> Vec<&str> {
            self.ran.iter().map(|(stage, _)| stage.as_str()).collect()
        }

        fn state(&self) -> Option<SessionState> {
            self.finish.as_ref().map(|f| f.0)
        }
    }

    /// Drives a whole session where `fails` lists the (stage, slave) runs that exit 1;
    /// returns the stages that ran and the end.
    fn whole(stages: &[&str], slaves: &[&str], fails: &[(&str, &str)]) -> Paper {
        let mut paper = Paper::start(stages, slaves);
        let mut now = 0;
        while paper.finish.is_none() {
            now += 100;
            let current = paper.ran.last().cloned().unwrap();
            for slave in &current.1 {
                let code = i32::from(fails.contains(&(current.0.as_str(), slave.as_str())));
                paper.finish(slave, exited(code), now);
            }
            assert!(paper.ran.len() <= stages.len(), "a stage ran twice");
        }
        paper
    }

    const CASES: [&str; 8] = ["si", "init:a", "run:a", "fin:a", "init:b", "run:b", "fin:b", "sf"];

    #[test]
    fn the_failure_rules_decide_what_runs() {
        use SessionState::{Failed, Passed};
        // What happens, the runs that fail, the stages that run, the end.
        type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str], SessionState, Option<&'a str>);
        let table: [Row; 6] = [
            ("all pass", &[], &CASES, Passed, None),
            (
                "suite init fails on one slave: no case runs, suite finalize does",
                &[("si", "s2")],
                &["si", "sf"],
                Failed,
                Some("suite initialization failed"),
            ),
            (
                "a case init fails: its run is skipped, its finalize and the next case run",
                &[("init:a", "s1")],
                &["si", "init:a", "fin:a", "init:b", "run:b", "fin:b", "sf"],
                Failed,
                Some("failed cases: a"),
            ),
            ("a case run fails: the next case goes on", &[("run:a", "s1")], &CASES, Failed, Some("failed cases: a")),
            ("a case finalize fails: the case fails", &[("fin:b", "s2")], &CASES, Failed, Some("failed cases: b")),
            ("suite finalize fails", &[("sf", "s1")], &CASES, Failed, Some("suite finalization failed")),
        ];
        for (what, fails, ran, state, reason) in table {
            let paper = whole(&CASES, &["s1", "s2"], fails);
            assert_eq!(paper.ran(), ran, "{what}");
            assert_eq!(paper.finish, Some((state, reason.map(str::to_string))), "{what}");
        }
    }

    #[test]
    fn case_states_follow_their_stages() {
        let paper = whole(&CASES, &["s1"], &[("run:b", "s1")]);
        let cases: Vec<(&str, CaseState)> =
            paper.engine.record().cases.iter().map(|c| (c.name.as_str(), c.state)).collect();
        assert_eq!(cases, [("a", CaseState::Passed), ("b", CaseState::Failed)]);
        let paper = whole(&CASES, &["s1"], &[("si", "s1")]);
        assert!(paper.engine.record().cases.iter().all(|c| c.state == CaseState::NotRun));
        assert_eq!(paper.run_state("run:a", "s1"), RunState::Skipped);
    }

    #[test]
    fn no_stage_starts_before_every_slave_ended_the_one_before() {
        let mut paper = Paper::start(&["si", "init:a", "run:a", "sf"], &["s1", "s2", "s3"]);
        assert_eq!(paper.ran, [("si".to_string(), vec!["s1".into(), "s2".into(), "s3".into()])]);
        paper.finish_all(&[("s1", 0), ("s3", 0)], 10);
        assert_eq!(paper.ran(), ["si"], "s2 still runs suite init");
        // A stale message (an older stage id) does not count as s2's result.
        paper.send(Event::Finished { slave: "s2".into(), result: result(999, exited(0)) }, 11);
        assert_eq!(paper.ran(), ["si"]);
        paper.finish_all(&[("s2", 0)], 12);
        assert_eq!(paper.ran(), ["si", "init:a"]);
        paper.finish_all(&[("s1", 0), ("s2", 0), ("s3", 0)], 20);
        paper.finish_all(&[("s1", 0), ("s2", 0), ("s3", 0)], 30);
        paper.finish_all(&[("s1", 0), ("s2", 0), ("s3", 0)], 40);
        assert_eq!(paper.ran(), ["si", "init:a", "run:a", "sf"]);
        assert_eq!(paper.state(), Some(SessionState::Passed));
        assert_eq!(paper.forgotten.len(), 12, "every route is dropped once");
    }

    #[test]
    fn a_stage_on_no_slave_fails_and_never_passes() {
        let mut paper = Paper::start(&["si", "init:a", "run:a", "sf"], &[]);
        assert!(paper.ran.is_empty(), "nothing is sent");
        let (state, reason) = paper.finish.take().unwrap();
        assert_eq!(state, SessionState::Failed);
        assert_eq!(reason.as_deref(), Some("suite initialization failed; suite finalization failed"));
        let record = paper.engine.record();
        assert_eq!(record.stages[0].skipped.as_deref(), Some("no slave to run this stage on"));
    }

    #[test]
    fn a_script_that_could_not_be_read_fails_its_stage_without_sending_it() {
        let mut engine = engine(&["si", "init:a", "run:a", "sf"], &["s1"]);
        engine.script_errors[2] = Some("cannot read script run.sh".into());
        let mut paper = Paper::new(engine);
        let actions = paper.engine.start(at(0));
        paper.carry_out(actions, 0, &[]);
        paper.finish_all(&[("s1", 0)], 1);
        paper.finish_all(&[("s1", 0)], 2);
        assert_eq!(paper.ran(), ["si", "init:a", "sf"], "run:a is never sent");
        assert_eq!(paper.run_state("run:a", "s1"), RunState::Failed);
        paper.finish_all(&[("s1", 0)], 3);
        assert_eq!(paper.finish, Some((SessionState::Failed, Some("failed cases: a".into()))));
    }

    #[test]
    fn a_slave_back_within_the_grace_period_goes_on() {
        let mut paper = Paper::start(&["si", "sf"], &["s1", "s2"]);
        paper.send(Event::Started { slave: "s1".into(), stage_id: paper.id("s1"), unix_ms: 1 }, 1);
        paper.send(Event::Disconnected { slave: "s1".into() }, 100);
        assert_eq!(paper.engine.next_deadline(), Some(100 + GRACE));
        paper.send(Event::Resumed { slave: "s1".into(), stage_id: paper.id("s1") }, 200);
        assert_eq!(paper.engine.next_deadline(), Some(TIMEOUT + MARGIN), "only the result deadline is left");
        paper.tick(100 + GRACE);
        paper.finish_all(&[("s1", 0), ("s2", 0)], 300);
        assert_eq!(paper.run_state("si", "s1"), RunState::Passed);
    }

    #[test]
    fn a_slave_not_back_within_the_grace_period_is_disconnected() {
        let mut paper = Paper::start(&["si", "init:a", "run:a", "sf"], &["s1", "s2"]);
        paper.send(Event::Disconnected { slave: "s2".into() }, 100);
        paper.finish_all(&[("s1", 0)], 150);
        paper.tick(100 + GRACE - 1);
        assert_eq!(paper.run_state("si", "s2"), RunState::Running, "still within the grace period");
        paper.tick(100 + GRACE);
        assert_eq!(paper.run_state("si", "s2"), RunState::Disconnected);
        let record = paper.engine.record();
        assert_eq!(record.stages[0].runs[1].reason.as_deref(), Some("slave disconnected (not back within 10s)"));
        assert_eq!(paper.ran(), ["si", "sf"], "suite init failed: only suite finalize follows");
    }

    #[test]
    fn a_stage_never_delivered_counts_as_a_disconnect() {
        let mut paper = Paper::new(engine(&["si", "sf"], &["s1", "s2"]));
        let actions = paper.engine.start(at(0));
        paper.carry_out(actions, 0, &["s2"]);
        paper.finish_all(&[("s1", 0)], 10);
        paper.tick(GRACE);
        assert_eq!(paper.run_state("si", "s2"), RunState::Disconnected);
    }

    #[test]
    fn a_slave_back_without_its_stage_gets_it_again_unless_it_had_started() {
        let mut paper = Paper::start(&["si", "sf"], &["s1", "s2"]);
        // s1 had not started it: it is sent again, and the run goes on.
        paper.send(Event::Disconnected { slave: "s1".into() }, 10);
        paper.send(Event::Lost { slave: "s1".into(), stage_id: paper.id("s1") }, 20);
        assert_eq!(paper.resends, ["s1"]);
        assert_eq!(paper.run_state("si", "s1"), RunState::Running);
        // s2 had started it: the run is lost.
        paper.send(Event::Started { slave: "s2".into(), stage_id: paper.id("s2"), unix_ms: 1 }, 30);
        paper.send(Event::Lost { slave: "s2".into(), stage_id: paper.id("s2") }, 40);
        assert_eq!(paper.run_state("si", "s2"), RunState::Failed);
        // A resend that could not be delivered loses the run too.
        paper.send(Event::ResendFailed { slave: "s1".into(), stage_id: paper.id("s1") }, 50);
        assert_eq!(paper.run_state("si", "s1"), RunState::Failed);
        assert_eq!(paper.ran(), ["si", "sf"]);
    }

    #[test]
    fn a_connected_slave_silent_past_timeout_and_margin_times_out() {
        let mut paper = Paper::start(&["si", "sf"], &["s1", "s2"]);
        paper.finish_all(&[("s1", 0)], 10);
        assert_eq!(paper.engine.next_deadline(), Some(TIMEOUT + MARGIN));
        paper.tick(TIMEOUT + MARGIN);
        assert_eq!(paper.run_state("si", "s2"), RunState::TimedOut);
        assert_eq!(paper.cancels, [("s2".to_string(), "no result in time".to_string())]);
        assert_eq!(paper.ran(), ["si", "sf"]);
    }

    #[test]
    fn a_cancel_kills_the_running_stage_and_skips_all_but_suite_finalize() {
        let plan = ["si", "init:a", "run:a", "fin:a", "init:b", "run:b", "sf"];
        for cancel_in in ["si", "init:a", "run:a", "fin:a"] {
            let mut paper = Paper::start(&plan, &["s1", "s2"]);
            let mut now = 0;
            while paper.ran.last().unwrap().0 != cancel_in {
                now += 10;
                paper.finish_all(&[("s1", 0), ("s2", 0)], now);
            }
            paper.send(Event::Stop(StopRequest::cancel("by alice")), now + 1);
            assert_eq!(paper.cancels.len(), 2, "{cancel_in}: both runs are killed");
            assert!(paper.cancels.iter().all(|(_, reason)| reason == "by alice"));
            let cancelled = StageOutcome::Cancelled { reason: "by alice".into() };
            paper.finish("s1", cancelled.clone(), now + 2);
            paper.finish("s2", cancelled, now + 2);
            assert_eq!(paper.ran.last().unwrap().0, "sf", "{cancel_in}: straight to suite finalize");
            assert_eq!(paper.run_state("run:b", "s1"), RunState::Skipped, "{cancel_in}");
            paper.finish_all(&[("s1", 0), ("s2", 0)], now + 3);
            assert_eq!(paper.finish, Some((SessionState::Cancelled, Some("by alice".into()))), "{cancel_in}");
        }
    }

    #[test]
    fn a_cancel_during_suite_finalize_lets_the_cleanup_finish() {
        let mut paper = Paper::start(&["si", "sf"], &["s1"]);
        paper.finish_all(&[("s1", 0)], 10);
        paper.send(Event::Stop(StopRequest::cancel("by bob")), 20);
        assert!(paper.cancels.is_empty(), "suite finalize is not killed");
        assert_eq!(paper.engine.next_deadline(), Some(10 + TIMEOUT + MARGIN), "nor hurried");
        paper.finish_all(&[("s1", 0)], 30);
        assert_eq!(paper.run_state("sf", "s1"), RunState::Passed);
        assert_eq!(paper.state(), Some(SessionState::Cancelled));
    }

    #[test]
    fn a_stop_before_the_first_stage_skips_straight_to_suite_finalize() {
        let mut paper = Paper::new(engine(&["si", "init:a", "run:a", "sf"], &["s1"]));
        let early = paper.engine.handle(Event::Stop(StopRequest::cancel("while scripts loaded")), at(0));
        assert!(early.is_empty(), "nothing runs yet, so nothing is cancelled: {early:?}");
        let actions = paper.engine.start(at(1));
        paper.carry_out(actions, 1, &[]);
        assert_eq!(paper.ran(), ["sf"]);
        assert_eq!(paper.run_state("si", "s1"), RunState::Skipped);
        paper.finish_all(&[("s1", 0)], 2);
        assert_eq!(paper.finish, Some((SessionState::Cancelled, Some("while scripts loaded".into()))));
        assert!(paper.engine.record().cases.iter().all(|c| c.state == CaseState::NotRun));
    }

    #[test]
    fn the_result_clock_starts_once_the_stage_went_to_every_slave() {
        let mut paper = Paper::new(engine(&["si", "sf"], &["s1", "s2"]));
        let actions = paper.engine.start(at(0));
        // The runner reports each send when it is done: s2's took 8 s.
        let mut todo = actions;
        todo.retain(|a| !matches!(a, Action::Run { .. }));
        paper.carry_out(todo, 0, &[]);
        paper.send(Event::Sent { slave: "s1".into(), stage_id: 1, delivered: true }, 0);
        paper.send(Event::Sent { slave: "s2".into(), stage_id: 2, delivered: true }, 8_000);
        assert_eq!(paper.engine.next_deadline(), Some(8_000 + TIMEOUT + MARGIN));
    }

    #[test]
    fn slaves_that_do_not_report_a_cancel_are_ended_after_the_cancel_wait() {
        let mut paper = Paper::start(&["si", "init:a", "sf"], &["s1"]);
        paper.send(Event::Stop(StopRequest::cancel("by carol")), 100);
        assert_eq!(paper.engine.next_deadline(), Some(100 + CANCEL_WAIT));
        paper.tick(100 + CANCEL_WAIT);
        assert_eq!(paper.run_state("si", "s1"), RunState::Cancelled);
        assert_eq!(paper.ran(), ["si", "sf"]);
    }

    #[test]
    fn an_abort_fails_the_session_and_only_the_first_stop_counts() {
        let mut paper = Paper::start(&["si", "init:a", "sf"], &["s1"]);
        paper.send(Event::Stop(StopRequest::abort("hypervisor hv1 disconnected")), 5);
        paper.send(Event::Stop(StopRequest::cancel("too late")), 6);
        assert_eq!(paper.cancels.len(), 1);
        paper.finish("s1", StageOutcome::Cancelled { reason: "x".into() }, 7);
        paper.finish_all(&[("s1", 0)], 8);
        assert_eq!(paper.finish, Some((SessionState::Failed, Some("hypervisor hv1 disconnected".into()))));
    }

    /// Drives a whole session, each stage taking `step_ms`; `fails(stage, slave, attempt)`
    /// says which runs exit 1. Returns the paper and the attempt of each stage that ran.
    fn drive_all(engine: Engine, step_ms: u64, fails: impl Fn(&str, &str, u32) -> bool) -> (Paper, Vec<String>) {
        let mut paper = Paper::begin(engine);
        let mut now = 0;
        let mut ran = Vec::new();
        while paper.finish.is_none() {
            now += step_ms;
            let index = paper.engine.current.as_ref().map(|c| c.index).expect("a stage runs");
            let record = &paper.engine.record().stages[index];
            let (label, attempt) = (name(&record.stage), record.attempt);
            ran.push(if attempt > 1 { format!("{label}#{attempt}") } else { label.clone() });
            let slaves = paper.ran.last().cloned().unwrap().1;
            for slave in &slaves {
                let code = i32::from(fails(&label, slave, attempt));
                paper.finish(slave, exited(code), now);
            }
            assert!(ran.len() < 1000, "the session never ends");
        }
        (paper, ran)
    }

    fn case_states(paper: &Paper) -> Vec<(String, CaseState, u32)> {
        paper.engine.record().cases.iter().map(|c| (c.name.clone(), c.state, c.attempts)).collect()
    }

    #[test]
    fn a_case_that_fails_then_passes_on_a_retry_is_flaky_and_both_attempts_are_kept() {
        let engine = engine_of(plan_of(&CASES, 2), &["s1", "s2"]);
        let (paper, ran) =
            drive_all(engine, 100, |stage, slave, attempt| stage == "run:a" && slave == "s2" && attempt == 1);
        assert_eq!(
            ran,
            ["si", "init:a", "run:a", "fin:a", "init:a#2", "run:a#2", "fin:a#2", "init:b", "run:b", "fin:b", "sf"]
        );
        assert_eq!(paper.finish, Some((SessionState::Passed, Some("flaky cases: a".into()))));
        assert_eq!(case_states(&paper), [("a".into(), CaseState::Flaky, 2), ("b".into(), CaseState::Passed, 1)]);
        let record = paper.engine.record();
        let runs: Vec<(String, u32)> = record.stages.iter().map(|s| (name(&s.stage), s.attempt)).collect();
        assert_eq!(
            runs[2..8],
            [
                ("run:a".into(), 1),
                ("fin:a".into(), 1),
                ("init:a".into(), 2),
                ("run:a".into(), 2),
                ("fin:a".into(), 2),
                ("init:b".into(), 1)
            ]
        );
        assert_eq!(record.stages[2].runs[1].state, RunState::Failed, "the failed attempt is kept");
        assert!(record.stages.iter().all(|s| s.runs.iter().all(|r| r.state.is_final())));
        assert_eq!(record.summary().cases_flaky, 1);
    }

    #[test]
    fn a_case_that_fails_every_attempt_fails_after_its_retries() {
        let engine = engine_of(plan_of(&["si", "init:a", "run:a", "sf"], 2), &["s1"]);
        let (paper, ran) = drive_all(engine, 100, |stage, _, _| stage == "init:a");
        assert_eq!(ran, ["si", "init:a", "init:a#2", "init:a#3", "sf"], "a failed init skips its run each time");
        assert_eq!(case_states(&paper), [("a".into(), CaseState::Failed, 3)]);
        assert_eq!(paper.finish, Some((SessionState::Failed, Some("failed cases: a".into()))));
    }

    #[test]
    fn exit_first_runs_no_case_after_the_first_failed_one_and_no_retry_follows_a_stop() {
        let mut plan = plan_of(&CASES, 0);
        plan.exit_first = true;
        let (paper, ran) = drive_all(engine_of(plan, &["s1"]), 100, |stage, _, _| stage == "run:a");
        assert_eq!(ran, ["si", "init:a", "run:a", "fin:a", "sf"]);
        assert_eq!(case_states(&paper), [("a".into(), CaseState::Failed, 1), ("b".into(), CaseState::NotRun, 0)]);
        assert_eq!(paper.engine.record().stages[4].skipped.as_deref(), Some("exit-first: case a failed"));
        // Cancelled during a failing attempt: no retry.
        let mut paper = Paper::begin(engine_of(plan_of(&["si", "init:a", "run:a", "sf"], 3), &["s1"]));
        paper.finish_all(&[("s1", 0)], 1);
        paper.send(Event::Stop(StopRequest::cancel("by bob")), 2);
        paper.finish("s1", StageOutcome::Cancelled { reason: "by bob".into() }, 3);
        paper.finish_all(&[("s1", 0)], 4);
        assert_eq!(paper.ran(), ["si", "init:a", "sf"]);
        assert_eq!(paper.state(), Some(SessionState::Cancelled));
    }

    #[test]
    fn repeats_run_the_case_list_over_with_a_case_record_per_pass() {
        let mut plan = plan_of(&["si", "init:a", "run:a", "init:b", "run:b", "sf"], 0);
        plan.repeat = 3;
        let (paper, ran) = drive_all(engine_of(plan, &["s1"]), 100, |stage, _, _| stage == "run:b");
        assert_eq!(ran.len(), 1 + 3 * 4 + 1);
        let cases = &paper.engine.record().cases;
        assert_eq!(
            cases.iter().map(|c| (c.name.as_str(), c.repetition)).collect::<Vec<_>>(),
            [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("b", 3)]
        );
        assert_eq!(paper.finish, Some((SessionState::Failed, Some("failed cases: b".into()))));
        assert_eq!(paper.engine.record().stages[5].label(), "case_init:a (pass 2)");
    }

    #[test]
    fn a_soak_adds_passes_until_its_time_is_up_and_finishes_the_case_in_progress() {
        let mut plan = plan_of(&["si", "init:a", "run:a", "init:b", "run:b", "sf"], 0);
        plan.run_for = Some(Duration::from_millis(1_000));
        // Each stage takes 150 ms: pass 1 ends at 750, time is left, so pass 2 is added; its
        // `a` runs 750..1050 (the time is up meanwhile, and `a` finishes); `b` of pass 2 would
        // begin after the time is up, so it is dropped.
        let (paper, ran) = drive_all(engine_of(plan, &["s1"]), 150, |_, _, _| false);
        assert_eq!(ran, ["si", "init:a", "run:a", "init:b", "run:b", "init:a", "run:a", "sf"]);
        let record = paper.engine.record();
        assert_eq!(
            record.cases.iter().map(|c| (c.name.as_str(), c.repetition)).collect::<Vec<_>>(),
            [("a", 1), ("b", 1), ("a", 2)]
        );
        assert!(record.cases.iter().all(|c| c.state == CaseState::Passed));
        assert_eq!(record.stages.len(), ran.len(), "no pending stage is left in the record");
        assert_eq!(paper.state(), Some(SessionState::Passed));
        // A soak whose stages cannot run stops instead of spinning.
        let mut plan = plan_of(&["si", "init:a", "sf"], 0);
        plan.run_for = Some(Duration::from_secs(3600));
        let mut engine = engine_of(plan, &["s1"]);
        engine.script_errors[1] = Some("cannot read script init.sh".into());
        let (paper, ran) = drive_all(engine, 100, |_, _, _| false);
        assert_eq!(ran, ["si", "sf"]);
        assert_eq!(paper.engine.record().cases.len(), 1, "the soak stops after its first pass sent nothing");
    }

    #[test]
    fn output_logs_and_results_are_recorded_on_the_run() {
        let mut paper = Paper::start(&["si", "sf"], &["s1"]);
        let id = paper.id("s1");
        paper.send(Event::Started { slave: "s1".into(), stage_id: id, unix_ms: 42 }, 1);
        paper.send(Event::Output { slave: "s1".into(), stage_id: id, bytes: 10 }, 2);
        paper.send(Event::Log { slave: "s1".into(), stage_id: id, path: "/var/log/x".into() }, 3);
        paper.send(Event::Log { slave: "s1".into(), stage_id: id, path: "/var/log/x".into() }, 3);
        assert!(paper.engine.take_dirty());
        assert!(!paper.engine.take_dirty());
        let run = &paper.engine.record().stages[0].runs[0];
        assert_eq!((run.started_ms, run.output_bytes, run.logs.len()), (Some(42), 10, 1));
        paper.finish("s1", StageOutcome::Exited { code: 3 }, 4);
        let run = &paper.engine.record().stages[0].runs[0];
        assert_eq!((run.state, run.exit_code, run.reason.as_deref()), (RunState::Failed, Some(3), Some("exit code 3")));
    }

    #[test]
    fn outcomes_are_described_in_words() {
        assert_eq!(describe_outcome(&exited(0)), (RunState::Passed, Some(0), None));
        let (state, _, reason) = describe_outcome(&StageOutcome::KilledBySignal { signal: 9 });
        assert_eq!((state, reason.as_deref()), (RunState::Failed, Some("killed by signal 9")));
        let (state, _, reason) = describe_outcome(&StageOutcome::TimedOut { after_ms: 2000 });
        assert_eq!(state, RunState::TimedOut);
        assert!(reason.unwrap().starts_with("timeout: killed after"));
    }

    #[test]
    fn a_failed_check_fails_a_run_that_exited_0() {
        use crate::model::{Check, CheckSource};
        let check = |name: &str, passed: bool, message: &str| Check {
            name: name.into(),
            passed,
            message: message.into(),
            source: CheckSource::Script,
        };
        let mut finished = result(1, exited(0));
        finished.values.checks = vec![check("up", true, ""), check("sums", false, "abc != def"), check("n", false, "")];
        assert_eq!(
            judge_run(&finished),
            (RunState::Failed, Some(0), Some("check `sums` failed: abc != def; check `n` failed".into()))
        );
        let mut failed = result(1, exited(3));
        failed.values.checks = vec![check("sums", false, "")];
        assert_eq!(judge_run(&failed), (RunState::Failed, Some(3), Some("exit code 3; check `sums` failed".into())));
        let mut passed = result(1, exited(0));
        passed.values.checks = vec![check("up", true, "fine")];
        assert_eq!(judge_run(&passed), (RunState::Passed, Some(0), None));
    }
}
