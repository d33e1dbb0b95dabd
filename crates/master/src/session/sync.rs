//! A session's sync state: the signals, barriers and topics its stage scripts share
//! (`sync_signal`, `sync_wait`, `sync_barrier`, `sync_publish`, `sync_subscribe`;
//! docs/sync.md). Plain data: the runner feeds it requests, the clock and which slaves are
//! running a stage, and sends the replies it returns.
//!
//! A wait never hangs a session: it ends when met, at its timeout, when its stage ends, or
//! as soon as no other slave of the session is running a stage (nobody is left who could
//! give what it waits for: the next stage cannot start before this one ends).

use std::collections::{BTreeMap, HashMap};

use super::engine::Now;
use xrdtest_proto::{StageId, SyncCount, SyncEntry, SyncOp, SyncReply, SyncRequest};

pub use xrdtest_model::WaitRecord;

/// Longest signal, barrier or topic name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest value, in bytes (one line).
pub const MAX_VALUE_BYTES: usize = 4096;
/// Most entries one signal or topic holds.
pub const MAX_ENTRIES: usize = 10_000;
/// Most value bytes a session's sync state holds in all.
pub const MAX_SESSION_BYTES: usize = 16 << 20;
/// Most waits recorded for the session's timeline.
pub const MAX_RECORDS: usize = 10_000;
/// Most waits open at once in a session.
pub const MAX_OPEN_WAITS: usize = 10_000;
/// What an entry costs against [`MAX_SESSION_BYTES`] besides its value and slave name, so
/// that empty values are not free.
const ENTRY_OVERHEAD: usize = 64;
/// The default of [`SyncBoard::with_reply_budget`]: half the default frame.
const DEFAULT_REPLY_BUDGET: usize = xrdtest_proto::DEFAULT_MAX_FRAME_LEN / 2;

/// The three kinds of shared state; a name in one is unrelated to the same name in another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Space {
    Signal,
    Barrier,
    Topic,
}

impl Space {
    fn noun(self) -> &'static str {
        match self {
            Space::Signal => "signal",
            Space::Barrier => "barrier",
            Space::Topic => "topic",
        }
    }
}

/// A reply to send to a slave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub slave: String,
    pub request_id: u64,
    pub reply: SyncReply,
}

#[derive(Debug)]
struct Waiter {
    slave: String,
    stage_id: StageId,
    request_id: u64,
    space: Space,
    name: String,
    /// Entries needed in all (for a barrier: up to the end of the caller's round).
    needed: usize,
    /// For a barrier, its size: the entries returned are the caller's round's.
    round: Option<usize>,
    started: Now,
    deadline_mono_ms: Option<u64>,
}

impl Waiter {
    fn what(&self) -> String {
        match self.round {
            Some(size) => format!("barrier {} ({size})", self.name),
            None => format!("{} {} ({})", self.space.noun(), self.name, self.needed),
        }
    }
}

/// The sync state of one session.
#[derive(Debug, Default)]
pub struct SyncBoard {
    /// The session's slaves and their roles.
    roles: BTreeMap<String, Vec<String>>,
    entries: HashMap<(Space, String), Vec<SyncEntry>>,
    bytes: usize,
    /// Requests that added an entry, by (slave, request id): how many entries were there
    /// once it was added, so a request sent again after a reconnect is applied once.
    applied: HashMap<(String, u64), usize>,
    waiters: Vec<Waiter>,
    records: Vec<WaitRecord>,
    /// The most bytes of entries one reply may carry (it must fit in a frame).
    reply_budget: usize,
}

impl SyncBoard {
    /// A board for a session of these slaves, each with its roles.
    pub fn new(roles: BTreeMap<String, Vec<String>>) -> SyncBoard {
        SyncBoard { roles, reply_budget: DEFAULT_REPLY_BUDGET, ..SyncBoard::default() }
    }

    /// At most `bytes` of entries per reply: a wait whose entries are more fails, instead
    /// of a reply too large for its frame (which would close the slave's connection).
    pub fn with_reply_budget(mut self, bytes: usize) -> SyncBoard {
        self.reply_budget = bytes;
        self
    }

    /// Takes one request of `slave`; returns the replies it makes due (its own, and those of
    /// the waits it completes).
    pub fn request(&mut self, slave: &str, request: SyncRequest, now: Now) -> Vec<Reply> {
        let SyncRequest { stage_id, request_id, op, timeout_ms } = request;
        if self.waiters.iter().any(|w| w.slave == slave && w.request_id == request_id) {
            return Vec::new(); // sent again after a reconnect; still waiting
        }
        let refuse =
            |reason: String| vec![Reply { slave: slave.to_string(), request_id, reply: SyncReply::Failed { reason } }];
        let (space, name, wait) = match op {
            SyncOp::Signal { name, value } => (Space::Signal, name, Wanted::Add(value, None)),
            SyncOp::Publish { topic, value } => (Space::Topic, topic, Wanted::Add(value, None)),
            SyncOp::Barrier { name, count } => (Space::Barrier, name, Wanted::Add(String::new(), Some(count))),
            SyncOp::Wait { name, count } => (Space::Signal, name, Wanted::Entries(count)),
            SyncOp::Subscribe { topic, count } => (Space::Topic, topic, Wanted::Entries(count)),
        };
        if let Err(reason) = check_name(&name) {
            return refuse(format!("{} name: {reason}", space.noun()));
        }
        let key = (space, name.clone());
        let mut replies = Vec::new();
        let (needed, round) = match wait {
            Wanted::Add(value, barrier) => {
                let size = match barrier.map(|count| self.count(&count)).transpose() {
                    Ok(size) => size,
                    Err(reason) => return refuse(reason),
                };
                let after = match self.applied.get(&(slave.to_string(), request_id)) {
                    Some(after) => *after,
                    None => match self.add(&key, slave, value) {
                        Ok(after) => {
                            self.applied.insert((slave.to_string(), request_id), after);
                            after
                        }
                        Err(reason) => return refuse(reason),
                    },
                };
                replies = self.wake(&key, now);
                match size {
                    // A barrier of size n: the k-th arrival (from 1) is in round (k-1)/n and
                    // waits for the round's last.
                    Some(size) => (size * after.div_ceil(size), Some(size)),
                    None => {
                        replies.push(done(slave, request_id, Vec::new(), 0));
                        return replies;
                    }
                }
            }
            Wanted::Entries(count) => match self.count(&count) {
                Ok(needed) => (needed, None),
                Err(reason) => return refuse(reason),
            },
        };
        if self.waiters.len() >= MAX_OPEN_WAITS {
            return refuse(format!("the session has {MAX_OPEN_WAITS} waits open already"));
        }
        let waiter = Waiter {
            slave: slave.to_string(),
            stage_id,
            request_id,
            space,
            name,
            needed,
            round,
            started: now,
            deadline_mono_ms: timeout_ms.map(|ms| now.mono_ms.saturating_add(ms)),
        };
        if let Some(reply) = self.try_complete(&waiter, now) {
            replies.push(reply);
        } else {
            self.waiters.push(waiter);
        }
        replies
    }

    /// Replies to the waits whose timeout has passed.
    pub fn tick(&mut self, now: Now) -> Vec<Reply> {
        let due = |w: &Waiter| w.deadline_mono_ms.is_some_and(|deadline| deadline <= now.mono_ms);
        let mut replies = Vec::new();
        for waiter in extract(&mut self.waiters, due) {
            let have = self.have(waiter.space, &waiter.name);
            let waited = now.mono_ms.saturating_sub(waiter.started.mono_ms);
            let reason =
                format!("{}: timed out after {} with {have} of {}", waiter.what(), seconds(waited), waiter.needed);
            replies.push(self.fail(waiter, reason, now));
        }
        replies
    }

    /// The earliest timeout of a wait (mono ms).
    pub fn next_deadline(&self) -> Option<u64> {
        self.waiters.iter().filter_map(|w| w.deadline_mono_ms).min()
    }

    /// Fails the waits nobody is left to meet: no slave but the waiter's own is running a
    /// stage. `running` says whether a slave runs one now.
    pub fn fail_unmeetable(&mut self, running: impl Fn(&str) -> bool, now: Now) -> Vec<Reply> {
        if self.waiters.is_empty() {
            return Vec::new();
        }
        // Runs after every event: two running slaves can always still give something, so
        // looking further is not needed.
        let running: Vec<&String> = self.roles.keys().filter(|slave| running(slave)).take(2).collect();
        if running.len() > 1 {
            return Vec::new();
        }
        let stranded = |w: &Waiter| running.iter().all(|slave| **slave == w.slave);
        let stranded = extract(&mut self.waiters, stranded);
        let mut replies = Vec::new();
        for waiter in stranded {
            let have = self.have(waiter.space, &waiter.name);
            let reason = format!(
                "{}: cannot be met, {have} of {} and no other slave of the session is running a stage",
                waiter.what(),
                waiter.needed
            );
            replies.push(self.fail(waiter, reason, now));
        }
        replies
    }

    /// Drops the waits of a stage that ended (its scripts are gone; the slave tells them).
    pub fn stage_ended(&mut self, stage_id: StageId, now: Now) {
        for waiter in extract(&mut self.waiters, |w| w.stage_id == stage_id) {
            let _ = self.fail(waiter, "its stage ended".into(), now);
        }
    }

    /// Drops one wait whose script went away.
    pub fn cancel(&mut self, slave: &str, request_id: u64, now: Now) {
        for waiter in extract(&mut self.waiters, |w| w.slave == slave && w.request_id == request_id) {
            let _ = self.fail(waiter, "its script went away".into(), now);
        }
    }

    /// Waits still open.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// The finished waits, oldest first (the first [`MAX_RECORDS`]).
    pub fn records(&self) -> &[WaitRecord] {
        &self.records
    }

    fn count(&self, count: &SyncCount) -> Result<usize, String> {
        match count {
            SyncCount::Exactly(0) => Err("a count must be at least 1".into()),
            SyncCount::Exactly(n) => Ok(*n as usize),
            SyncCount::AllSlaves => Ok(self.roles.len()),
            SyncCount::Role(role) => match self.roles.values().filter(|roles| roles.contains(role)).count() {
                0 => Err(format!("no slave of the session has the role `{role}`")),
                n => Ok(n),
            },
        }
    }

    fn have(&self, space: Space, name: &str) -> usize {
        self.entries.get(&(space, name.to_string())).map_or(0, Vec::len)
    }

    /// Adds an entry; returns how many there are with it.
    fn add(&mut self, key: &(Space, String), slave: &str, value: String) -> Result<usize, String> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(format!("the value is {} bytes, more than {MAX_VALUE_BYTES}", value.len()));
        }
        if value.contains(['\n', '\r', '\0']) {
            return Err("the value must be one line".into());
        }
        let cost = value.len() + slave.len() + ENTRY_OVERHEAD;
        if self.bytes + cost > MAX_SESSION_BYTES {
            return Err(format!("the session's sync values are full ({MAX_SESSION_BYTES} bytes)"));
        }
        let list = self.entries.entry(key.clone()).or_default();
        if list.len() >= MAX_ENTRIES {
            return Err(format!("{} {} is full ({MAX_ENTRIES} entries)", key.0.noun(), key.1));
        }
        self.bytes += cost;
        list.push(SyncEntry { slave: slave.to_string(), value });
        Ok(list.len())
    }

    /// Completes the waits on `key` that are met now.
    fn wake(&mut self, key: &(Space, String), now: Now) -> Vec<Reply> {
        let have = self.entries.get(key).map_or(0, Vec::len);
        let met = |w: &Waiter| w.space == key.0 && w.name == key.1 && w.needed <= have;
        let met = extract(&mut self.waiters, met);
        met.iter().filter_map(|waiter| self.try_complete(waiter, now)).collect()
    }

    /// The reply of a wait that is met now, recorded.
    fn try_complete(&mut self, waiter: &Waiter, now: Now) -> Option<Reply> {
        let list = self.entries.get(&(waiter.space, waiter.name.clone()))?;
        if list.len() < waiter.needed {
            return None;
        }
        let from = waiter.round.map_or(0, |size| waiter.needed - size);
        let entries = list[from..waiter.needed].to_vec();
        let waited = now.mono_ms.saturating_sub(waiter.started.mono_ms);
        let bytes: usize = entries.iter().map(|e| e.value.len() + e.slave.len() + 16).sum();
        if bytes > self.reply_budget {
            let reason = format!(
                "its {} entries are {bytes} bytes, more than one reply carries ({}): wait for fewer",
                entries.len(),
                self.reply_budget
            );
            self.record(waiter, Some(reason.clone()), now);
            let reply = SyncReply::Failed { reason };
            return Some(Reply { slave: waiter.slave.clone(), request_id: waiter.request_id, reply });
        }
        self.record(waiter, None, now);
        Some(done(&waiter.slave, waiter.request_id, entries, waited))
    }

    fn fail(&mut self, waiter: Waiter, reason: String, now: Now) -> Reply {
        self.record(&waiter, Some(reason.clone()), now);
        Reply { slave: waiter.slave, request_id: waiter.request_id, reply: SyncReply::Failed { reason } }
    }

    fn record(&mut self, waiter: &Waiter, failure: Option<String>, now: Now) {
        if self.records.len() < MAX_RECORDS {
            self.records.push(WaitRecord {
                slave: waiter.slave.clone(),
                stage_id: waiter.stage_id,
                what: waiter.what(),
                started_unix_ms: waiter.started.unix_ms,
                ended_unix_ms: now.unix_ms,
                failure,
            });
        }
    }
}

/// What a request wants of the board.
enum Wanted {
    /// Add this value (a signal, a publish; a barrier's arrival, then wait for its round).
    Add(String, Option<SyncCount>),
    /// Wait for this many entries.
    Entries(SyncCount),
}

fn done(slave: &str, request_id: u64, entries: Vec<SyncEntry>, waited_ms: u64) -> Reply {
    Reply { slave: slave.to_string(), request_id, reply: SyncReply::Done { entries, waited_ms } }
}

/// Removes and returns the waiters that match, keeping the order of the rest.
fn extract(waiters: &mut Vec<Waiter>, matches: impl Fn(&Waiter) -> bool) -> Vec<Waiter> {
    let (taken, kept): (Vec<_>, Vec<_>) = std::mem::take(waiters).into_iter().partition(|w| matches(w));
    *waiters = kept;
    taken
}

/// The rules of a sync name: 1 to [`MAX_NAME_BYTES`] bytes, printable, no spaces.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("{} bytes, more than {MAX_NAME_BYTES}", name.len()));
    }
    if let Some(bad) = name.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("`{}` has the character {bad:?}", name.escape_debug()));
    }
    Ok(())
}

fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(slaves: &[(&str, &[&str])]) -> SyncBoard {
        SyncBoard::new(
            slaves
                .iter()
                .map(|(name, roles)| (name.to_string(), roles.iter().map(|r| r.to_string()).collect()))
                .collect(),
        )
    }

    fn at(mono_ms: u64) -> Now {
        Now { mono_ms, unix_ms: 1_000_000 + mono_ms }
    }

    fn req(stage_id: StageId, request_id: u64, op: SyncOp) -> SyncRequest {
        SyncRequest { stage_id, request_id, op, timeout_ms: None }
    }

    fn signal(name: &str, value: &str) -> SyncOp {
        SyncOp::Signal { name: name.into(), value: value.into() }
    }

    fn wait(name: &str, count: u32) -> SyncOp {
        SyncOp::Wait { name: name.into(), count: SyncCount::Exactly(count) }
    }

    fn values(reply: &Reply) -> Vec<String> {
        match &reply.reply {
            SyncReply::Done { entries, .. } => entries.iter().map(|e| format!("{}={}", e.slave, e.value)).collect(),
            SyncReply::Failed { reason } => panic!("failed: {reason}"),
        }
    }

    fn failure(reply: &Reply) -> &str {
        match &reply.reply {
            SyncReply::Failed { reason } => reason,
            SyncReply::Done { .. } => panic!("done, not failed"),
        }
    }

    #[test]
    fn a_wait_returns_once_its_count_of_signals_exist_with_their_values() {
        let mut b = board(&[("a", &[]), ("b", &[]), ("c", &[])]);
        assert!(b.request("a", req(1, 1, wait("ready", 2)), at(0)).is_empty());
        let r = b.request("b", req(2, 1, signal("ready", "10.0.0.2")), at(100));
        assert_eq!(r.len(), 1, "only b's own ack: a needs two");
        assert_eq!(r[0].slave, "b");
        let r = b.request("c", req(3, 1, signal("ready", "10.0.0.3")), at(300));
        assert_eq!(r.len(), 2);
        let to_a = r.iter().find(|r| r.slave == "a").unwrap();
        assert_eq!(values(to_a), ["b=10.0.0.2", "c=10.0.0.3"]);
        assert_eq!(
            to_a.reply,
            SyncReply::Done {
                entries: vec![
                    SyncEntry { slave: "b".into(), value: "10.0.0.2".into() },
                    SyncEntry { slave: "c".into(), value: "10.0.0.3".into() }
                ],
                waited_ms: 300
            }
        );
        // Later waits are met at once: state lives for the session.
        let r = b.request("a", req(9, 2, wait("ready", 1)), at(5000));
        assert_eq!(values(&r[0]), ["b=10.0.0.2"]);
        assert_eq!(b.records().len(), 2);
        assert_eq!(b.records()[0].what, "signal ready (2)");
    }

    #[test]
    fn a_barrier_releases_everyone_of_its_round_and_can_be_used_again() {
        let mut b = board(&[("a", &[]), ("b", &[]), ("c", &[])]);
        let barrier = || SyncOp::Barrier { name: "up".into(), count: SyncCount::AllSlaves };
        assert!(b.request("a", req(1, 1, barrier()), at(0)).is_empty());
        assert!(b.request("b", req(2, 1, barrier()), at(10)).is_empty());
        let r = b.request("c", req(3, 1, barrier()), at(20));
        let mut released: Vec<&str> = r.iter().map(|r| r.slave.as_str()).collect();
        released.sort();
        assert_eq!(released, ["a", "b", "c"]);
        assert_eq!(b.waiting(), 0);
        // Round two: the fourth arrival waits for the sixth, not for the first three.
        assert!(b.request("a", req(4, 2, barrier()), at(30)).is_empty());
        assert!(b.request("b", req(5, 2, barrier()), at(40)).is_empty());
        assert_eq!(b.request("c", req(6, 2, barrier()), at(50)).len(), 3);
    }

    #[test]
    fn a_request_sent_again_after_a_reconnect_counts_once() {
        let mut b = board(&[("a", &[]), ("b", &[])]);
        b.request("a", req(1, 7, signal("go", "")), at(0));
        b.request("a", req(1, 7, signal("go", "")), at(5));
        let r = b.request("b", req(2, 1, wait("go", 2)), at(10));
        assert!(r.is_empty(), "one entry, not two");
        assert!(b.request("b", req(2, 1, wait("go", 2)), at(20)).is_empty(), "a repeated wait is not doubled");
        assert_eq!(b.waiting(), 1);
        // A barrier arrival sent again keeps its round.
        let barrier = || SyncOp::Barrier { name: "x".into(), count: SyncCount::Exactly(2) };
        assert!(b.request("a", req(1, 8, barrier()), at(30)).is_empty());
        b.cancel("a", 8, at(31));
        assert!(b.request("a", req(1, 8, barrier()), at(32)).is_empty(), "re-sent: same arrival, still waiting");
        assert_eq!(b.request("b", req(2, 9, barrier()), at(40)).len(), 2);
    }

    #[test]
    fn a_wait_times_out_with_the_figures() {
        let mut b = board(&[("a", &[]), ("b", &[])]);
        let mut request = req(1, 1, wait("never", 3));
        request.timeout_ms = Some(2000);
        b.request("b", req(2, 1, signal("never", "")), at(0));
        assert!(b.request("a", request, at(0)).is_empty());
        assert_eq!(b.next_deadline(), Some(2000));
        assert!(b.tick(at(1999)).is_empty());
        let r = b.tick(at(2000));
        assert_eq!(failure(&r[0]), "signal never (3): timed out after 2.0 s with 1 of 3");
        assert_eq!(b.next_deadline(), None);
        assert_eq!(b.records()[0].failure.as_deref(), Some("signal never (3): timed out after 2.0 s with 1 of 3"));
    }

    #[test]
    fn a_wait_fails_as_soon_as_no_other_slave_runs_a_stage() {
        let mut b = board(&[("a", &[]), ("b", &[]), ("c", &[])]);
        b.request("a", req(1, 1, wait("ready", 1)), at(0));
        assert!(b.fail_unmeetable(|s| s == "a" || s == "c", at(10)).is_empty(), "c may still signal");
        let r = b.fail_unmeetable(|s| s == "a", at(20));
        assert_eq!(r[0].slave, "a");
        assert_eq!(
            failure(&r[0]),
            "signal ready (1): cannot be met, 0 of 1 and no other slave of the session is running a stage"
        );
        assert_eq!(b.waiting(), 0);
    }

    #[test]
    fn counts_by_role_and_their_errors() {
        let mut b = board(&[("a", &["server"]), ("b", &["server", "client"]), ("c", &["client"])]);
        let by_role = |role: &str| SyncOp::Wait { name: "up".into(), count: SyncCount::Role(role.into()) };
        b.request("a", req(1, 1, signal("up", "a")), at(0));
        assert!(b.request("c", req(3, 1, by_role("server")), at(0)).is_empty(), "two servers, one signal");
        let r = b.request("b", req(2, 1, signal("up", "b")), at(1));
        assert_eq!(r.len(), 2);
        let r = b.request("c", req(3, 2, by_role("nobody")), at(2));
        assert_eq!(failure(&r[0]), "no slave of the session has the role `nobody`");
        let r = b.request("c", req(3, 3, wait("up", 0)), at(2));
        assert_eq!(failure(&r[0]), "a count must be at least 1");
    }

    #[test]
    fn bad_names_values_and_full_signals_are_refused_with_the_reason() {
        let mut b = board(&[("a", &[])]);
        let r = b.request("a", req(1, 1, signal("has space", "")), at(0));
        assert!(failure(&r[0]).starts_with("signal name: `has space` has the character ' '"), "{r:?}");
        let r = b.request("a", req(1, 2, signal("x", "two\nlines")), at(0));
        assert_eq!(failure(&r[0]), "the value must be one line");
        let r = b.request("a", req(1, 3, signal("x", &"v".repeat(MAX_VALUE_BYTES + 1))), at(0));
        assert!(failure(&r[0]).contains("more than 4096"));
        for id in 0..MAX_ENTRIES as u64 {
            b.request("a", req(1, 100 + id, signal("many", "")), at(0));
        }
        let r = b.request("a", req(1, 99, signal("many", "")), at(0));
        assert_eq!(failure(&r[0]), "signal many is full (10000 entries)");
    }

    #[test]
    fn a_wait_for_more_than_one_reply_carries_fails_and_open_waits_are_capped() {
        let mut b = board(&[("a", &[]), ("b", &[])]).with_reply_budget(10_000);
        for id in 0..4 {
            b.request("a", req(1, id, signal("big", &"v".repeat(3000))), at(0));
        }
        let r = b.request("b", req(2, 1, wait("big", 3)), at(0));
        assert_eq!(values(&r[0]).len(), 3, "3 × 3 kB fit");
        let r = b.request("b", req(2, 2, wait("big", 4)), at(0));
        assert_eq!(
            failure(&r[0]),
            "its 4 entries are 12068 bytes, more than one reply carries (10000): wait for fewer"
        );
        for id in 0..MAX_OPEN_WAITS as u64 {
            assert!(b.request("b", req(2, 100 + id, wait("never", 1)), at(0)).is_empty());
        }
        let r = b.request("b", req(2, 99, wait("never", 1)), at(0));
        assert_eq!(failure(&r[0]), "the session has 10000 waits open already");
    }

    #[test]
    fn waits_of_an_ended_stage_are_dropped_and_spaces_are_apart() {
        let mut b = board(&[("a", &[]), ("b", &[])]);
        b.request("a", req(1, 1, wait("x", 1)), at(0));
        b.request("a", req(1, 2, SyncOp::Subscribe { topic: "x".into(), count: SyncCount::Exactly(1) }), at(0));
        let r = b.request("b", req(2, 1, SyncOp::Publish { topic: "x".into(), value: "leader".into() }), at(5));
        assert_eq!(r.len(), 2, "the subscriber, not the signal waiter");
        assert_eq!(b.waiting(), 1);
        b.stage_ended(1, at(6));
        assert_eq!(b.waiting(), 0);
        assert_eq!(b.records().last().unwrap().failure.as_deref(), Some("its stage ended"));
    }
}
