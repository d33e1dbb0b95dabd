//! The session store: every session, its output and its collected logs.
//!
//! sled trees:
//! - `sessions`: session id → [`SessionRecord`] (rewritten as the session progresses);
//! - `summaries`: session id → [`SessionSummary`] (what lists need, small);
//! - `output_index`: stage id ++ chunk number → where that chunk of output lines lies in
//!   the stage's output file, so output is written and read in pieces, never held whole;
//! - `logs`: stage id ++ path → a collected [`LogFile`];
//! - `values`: stage id → the [`StageValues`] (results and checks) a stage run reported;
//! - `timelines`: session id → the [`Timeline`] (sync waits and faults) of a session;
//! - `cleanups`: session id → what each slave ended at the session's end ([`SlaveCleanup`]);
//! - `suite_sessions`: suite name ++ 0 ++ session id → () (a suite's sessions, for the
//!   dashboard's result strips, history by suite and trends, without scanning them all);
//! - `state_sessions`: state code ++ session id → () (the sessions in each state: running
//!   and queued ones for the dashboard, failures, history by state);
//! - `meta`: counters, the schema version of the records, and the version of the indexes
//!   (built at open when missing); while a schema migration is under way, where it is.
//!
//! Output bytes live in append-only files, `output/<stage id>.out`, beside the sled
//! database: sled 0.34 keeps every value written in memory until its cache evicts it, and
//! under a flood of output that cost more memory than the output itself (measured: 226 MB
//! resident growth for 200 MB written). A resent chunk is appended again and its index
//! entry replaced, so resends never duplicate output.
//!
//! Values are bincode 2 (serde). Keys are big-endian so trees iterate in id order.
//!
//! A store of an older schema is migrated when it is opened, before anything reads it: every
//! record of the trees whose types changed is decoded with the types the model kept for that
//! schema and written again with today's (`check_schema`). A migration is cut in
//! steps that each commit atomically with a note of how far it got, so one stopped by a
//! crash or an unreadable record goes on where it stopped at the next open, and a build of
//! the old schema refuses the half-migrated store instead of misreading it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionResult, TransactionError, Transactional};
use tracing::warn;
use xrdtest_proto::{LogFile, OutputLine, StageId};

use crate::model::storage::{self, state_code, SCHEMA_VERSION};
use crate::model::{v1, SessionId, SessionRecord, SessionState, SessionSummary, SlaveCleanup, StageValues, Timeline};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("store: corrupt value in `{tree}`: {message}")]
    Corrupt { tree: &'static str, message: String },
    #[error("store: cannot encode: {0}")]
    Encode(String),
    #[error(
        "store: written by a newer xrdtest (schema version {found}; this build reads up to {known}); \
         upgrade xrdtest or restore a backup made before the upgrade"
    )]
    NewerSchema { found: u32, known: u32 },
    #[error("store: {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("disk full: {path}: {detail}")]
    DiskFull { path: PathBuf, detail: String },
}

impl StoreError {
    /// Whether the store's disk is full: refused under the reserve, or a write that failed
    /// for want of space (sled's included).
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::DiskFull { .. } => true,
            StoreError::Io { source, .. } => crate::disk::is_out_of_space(source),
            StoreError::Sled(sled::Error::Io(source)) => crate::disk::is_out_of_space(source),
            _ => false,
        }
    }
}

/// How old the store size the dashboard shows may be.
pub const SIZE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10);

/// Free space output and log files leave on the store's disk by default (`store_reserve`),
/// so that session records can still be written when output fills it.
pub const DEFAULT_RESERVE: u64 = 64 << 20;

#[derive(Clone)]
pub struct Store {
    output_dir: PathBuf,
    /// Output and logs are refused while the disk has less than this free.
    reserve: u64,
    /// The last [`Store::disk_bytes`] and when it was measured.
    measured_size: std::sync::Arc<std::sync::Mutex<Option<(std::time::Instant, u64)>>>,
    db: sled::Db,
    sessions: sled::Tree,
    summaries: sled::Tree,
    output_index: sled::Tree,
    logs: sled::Tree,
    /// What each stage run reported (results and checks), by stage id.
    values: sled::Tree,
    timelines: sled::Tree,
    cleanups: sled::Tree,
    /// Sessions marked `keep`: retention never prunes them.
    kept: sled::Tree,
    suite_sessions: sled::Tree,
    state_sessions: sled::Tree,
    meta: sled::Tree,
}

/// Filters of the history: suite, state, and creation time in `[from_ms, to_ms)`.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub suite: Option<String>,
    pub state: Option<SessionState>,
    pub from_ms: Option<u64>,
    /// Exclusive.
    pub to_ms: Option<u64>,
    /// Only sessions older than this one (exclusive): the next page after a page ending here.
    pub before_id: Option<SessionId>,
    /// Only sessions newer than this one (exclusive): see [`Store::history_newer`].
    pub after_id: Option<SessionId>,
}

/// How many of a suite's sessions before a given one [`Store::previous_finished`] looks at.
/// Only unfinished sessions lie between a session and the previous finished one, so the
/// bound is reached only when more of the suite's sessions than this wait in between.
pub const PREVIOUS_LOOK_BACK: usize = 64;

/// One stored chunk of a stage's output: its number and its lines.
pub type OutputChunkLines = (u64, Vec<OutputLine>);

/// Version of the `suite_sessions` and `state_sessions` indexes; a store without it (made
/// before they existed) has them built from its summaries when opened.
const INDEX_VERSION: u64 = 1;

/// `meta` key present while a schema migration is under way: the schema it migrates from
/// (`schema_version` then already holds the one it migrates to, so that a build of the old
/// schema refuses the store).
const MIGRATING_FROM: &str = "migrating_from";

/// `meta` key of the last key of `tree` the migration under way has rewritten.
fn migrated_until_key(tree: &str) -> String {
    format!("migrated_until/{tree}")
}

/// At most this many records, and about this many bytes of them, are rewritten in one
/// transaction of a migration: what it holds in memory at once.
const MIGRATION_CHUNK_RECORDS: usize = 256;
const MIGRATION_CHUNK_BYTES: usize = 8 << 20;

/// How a migration rewrites one record: the old bytes in, the new bytes out.
type Rewrite = fn(&[u8]) -> Result<Vec<u8>, StoreError>;

/// Schema 1 to 2, `sessions`: a record gained the fields of repeats, retries and matrix
/// instances, and its run options.
fn session_1_to_2(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let old: v1::SessionRecord = decode("sessions", bytes)?;
    encode(&SessionRecord::from(old))
}

/// Schema 1 to 2, `summaries`: a summary gained the count of flaky cases.
fn summary_1_to_2(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let old: v1::SessionSummary = decode("summaries", bytes)?;
    encode(&SessionSummary::from(old))
}

/// Filters for listing sessions.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub suite: Option<String>,
    pub state: Option<SessionState>,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    storage::encode(value).map_err(|e| StoreError::Encode(e.to_string()))
}

fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    storage::decode(bytes).map_err(|e| StoreError::Corrupt { tree, message: e.to_string() })
}

/// A side record (values, timeline, cleanup) that cannot be decoded reads as empty, and is
/// logged: the session it belongs to still shows.
fn readable_or_default<T: DeserializeOwned + Default>(tree: &'static str, id: u64, bytes: &[u8]) -> T {
    decode(tree, bytes).unwrap_or_else(|err| {
        warn!(tree, id, error = %err, "an unreadable record is shown as empty");
        T::default()
    })
}

/// An I/O error of a store file; one for want of space is [`StoreError::DiskFull`].
fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    match crate::disk::is_out_of_space(&source) {
        true => StoreError::DiskFull { path: path.to_path_buf(), detail: source.to_string() },
        false => StoreError::Io { path: path.to_path_buf(), source },
    }
}

/// A stored summary, or, where it cannot be decoded, a marker in its place that says so:
/// one unreadable record never hides the others from a list.
fn readable_summary(id: SessionId, bytes: &[u8]) -> SessionSummary {
    decode("summaries", bytes).unwrap_or_else(|err| {
        warn!(session = id, error = %err, "an unreadable session summary");
        SessionSummary {
            id,
            suite: "?".into(),
            trigger: crate::model::Trigger::Manual,
            state: SessionState::Interrupted,
            reason: Some(format!("this session's record is unreadable ({err})")),
            created_ms: 0,
            started_ms: None,
            ended_ms: None,
            cases_passed: 0,
            cases_failed: 0,
            cases_total: 0,
            cases_flaky: 0,
        }
    })
}

/// The line shown in place of an output chunk that cannot be read.
fn unreadable_chunk(seq: u64, why: &str) -> Vec<OutputLine> {
    vec![OutputLine { unix_ms: 0, text: format!("[xrdtest: output chunk {seq} is unreadable in the store: {why}]") }]
}

fn state_key(state: SessionState, id: SessionId) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = state_code(state);
    key[1..].copy_from_slice(&id.to_be_bytes());
    key
}

/// Suite names never contain a 0 byte, so one suite's prefix is never another's.
fn suite_prefix(suite: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(suite.len() + 9);
    key.extend_from_slice(suite.as_bytes());
    key.push(0);
    key
}

fn suite_key(suite: &str, id: SessionId) -> Vec<u8> {
    let mut key = suite_prefix(suite);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The session id at the end of an index key.
fn id_of_key(key: &[u8]) -> Option<SessionId> {
    let tail = key.len().checked_sub(8).map(|start| &key[start..])?;
    tail.try_into().ok().map(u64::from_be_bytes)
}

fn output_key(stage_id: StageId, seq: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&stage_id.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// How long [`Store::open`] waits for sled's lock held by another handle.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// sled's database in `path`, retried while its lock is held elsewhere.
fn open_db(path: &Path) -> Result<sled::Db, sled::Error> {
    let config = sled::Config::new().path(path).cache_capacity(8 << 20).flush_every_ms(Some(200));
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(err) if err.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

impl Store {
    /// Opens (or creates) the store in `path`. If another handle still holds sled's lock
    /// (a master that is just exiting, a store just dropped whose background threads have
    /// not let go yet), it waits up to [`LOCK_WAIT`] before failing.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let output_dir = path.join("output");
        std::fs::create_dir_all(&output_dir).map_err(|e| StoreError::Io { path: output_dir.clone(), source: e })?;
        // sled's default page cache is 1 GiB; sessions are written once and read rarely.
        let db = open_db(path)?;
        let store = Store {
            output_dir,
            reserve: DEFAULT_RESERVE,
            measured_size: Default::default(),
            sessions: db.open_tree("sessions")?,
            summaries: db.open_tree("summaries")?,
            output_index: db.open_tree("output_index")?,
            logs: db.open_tree("logs")?,
            values: db.open_tree("values")?,
            timelines: db.open_tree("timelines")?,
            cleanups: db.open_tree("cleanups")?,
            kept: db.open_tree("kept")?,
            suite_sessions: db.open_tree("suite_sessions")?,
            state_sessions: db.open_tree("state_sessions")?,
            meta: db.open_tree("meta")?,
            db,
        };
        store.check_schema()?;
        store.build_indexes()?;
        Ok(store)
    }

    /// The store with another free-space reserve for output and logs (`store_reserve`).
    pub fn with_reserve(mut self, bytes: u64) -> Store {
        self.reserve = bytes;
        self
    }

    /// Refuses a write of output or logs while the disk has less than the reserve free:
    /// sled fails for good once a write of its own finds no space, so the bulk stops first.
    fn check_room(&self) -> Result<(), StoreError> {
        match crate::disk::free_bytes(&self.output_dir) {
            Some(free) if free < self.reserve => Err(StoreError::DiskFull {
                path: self.output_dir.clone(),
                detail: format!("{free} bytes free, below the store's reserve of {} (store_reserve)", self.reserve),
            }),
            _ => Ok(()),
        }
    }

    /// The schema version of the records in this store. A store from before versions were
    /// kept holds schema 1 (the encoding did not change when the version was introduced).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(self.meta_u32("schema_version")?.unwrap_or(1))
    }

    /// A `u32` kept in `meta`, if there is one.
    fn meta_u32(&self, key: &str) -> Result<Option<u32>, StoreError> {
        let Some(bytes) = self.meta.get(key)? else { return Ok(None) };
        let bytes: [u8; 4] = bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
            tree: "meta",
            message: format!("{key} is {} bytes, not 4", bytes.len()),
        })?;
        Ok(Some(u32::from_be_bytes(bytes)))
    }

    /// Refuses a store of a newer schema (its records would be misread) and brings an older
    /// one up to [`SCHEMA_VERSION`], schema by schema, before anything reads it. A migration
    /// that stopped half-way (a crash, an unreadable record) goes on where it stopped.
    fn check_schema(&self) -> Result<(), StoreError> {
        let found = self.schema_version()?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { found, known: SCHEMA_VERSION });
        }
        let mut schema = self.meta_u32(MIGRATING_FROM)?.unwrap_or(found);
        while schema < SCHEMA_VERSION {
            // One arm per older schema this build reads: how it becomes the next one
            // (decode with the types the model kept for it, encode with the next ones).
            match schema {
                // Stores from before versions were kept are schema 1.
                1 => self.migrate(
                    1,
                    &[("sessions", &self.sessions, session_1_to_2), ("summaries", &self.summaries, summary_1_to_2)],
                )?,
                // Schema 3 added the `values` tree; no record of schema 2 changed.
                2 => self.migrate(2, &[])?,
                // Schema 4 added the `timelines` tree; no record of schema 3 changed.
                3 => self.migrate(3, &[])?,
                // Schema 5 added the `cleanups` tree; no record of schema 4 changed.
                4 => self.migrate(4, &[])?,
                // Schema 6 added the `kept` tree; no record of schema 5 changed.
                5 => self.migrate(5, &[])?,
                _ => {
                    return Err(StoreError::Corrupt {
                        tree: "meta",
                        message: format!("schema version {schema} was never written by xrdtest"),
                    })
                }
            }
            schema += 1;
        }
        self.meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
        Ok(())
    }

    /// Rewrites every record of `trees` from schema `from` to `from + 1`, and flushes.
    ///
    /// Crash-safe by steps that each commit atomically (sled recovers a prefix of them):
    /// first `schema_version` becomes `from + 1` with [`MIGRATING_FROM`] set (older builds
    /// refuse the store from then on); then each tree is rewritten in chunks, each chunk in
    /// one transaction with the note of the last key it rewrote; last, the notes and
    /// [`MIGRATING_FROM`] go. Started again after any step, it skips what was rewritten, so
    /// no record is decoded twice, with the wrong types.
    fn migrate(&self, from: u32, trees: &[(&'static str, &sled::Tree, Rewrite)]) -> Result<(), StoreError> {
        let to = from + 1;
        let resumed = self.meta.get(MIGRATING_FROM)?.is_some();
        if !resumed {
            let mut begin = sled::Batch::default();
            begin.insert("schema_version", &to.to_be_bytes());
            begin.insert(MIGRATING_FROM, &from.to_be_bytes());
            self.meta.apply_batch(begin)?;
        }
        let mut counts = Vec::new();
        for &(name, tree, rewrite) in trees {
            counts.push(format!("{} {name}", self.rewrite_tree(name, tree, rewrite)?));
        }
        let mut end = sled::Batch::default();
        for &(name, _, _) in trees {
            end.remove(migrated_until_key(name).as_bytes());
        }
        end.remove(MIGRATING_FROM);
        self.meta.apply_batch(end)?;
        self.db.flush()?;
        let what = if resumed { "went on migrating" } else { "migrated" };
        tracing::info!("store: {what} from schema {from} to {to}: rewrote {}", counts.join(", "));
        Ok(())
    }

    /// Rewrites the records of `tree` after the last one a migration already rewrote, chunk
    /// by chunk; returns how many it rewrote.
    fn rewrite_tree(&self, name: &'static str, tree: &sled::Tree, rewrite: Rewrite) -> Result<usize, StoreError> {
        let note = migrated_until_key(name);
        let mut after = self.meta.get(&note)?;
        let mut rewritten = 0;
        loop {
            let entries = match &after {
                Some(key) => tree.range::<sled::IVec, _>((Bound::Excluded(key.clone()), Bound::Unbounded)),
                None => tree.iter(),
            };
            let mut chunk: Vec<(sled::IVec, Vec<u8>)> = Vec::new();
            let mut bytes = 0;
            for entry in entries {
                let (key, value) = entry?;
                let value = rewrite(&value).map_err(|err| match err {
                    StoreError::Corrupt { tree, message } => {
                        let key = id_of_key(&key).map_or_else(|| format!("{:?}", key.as_ref()), |id| id.to_string());
                        StoreError::Corrupt { tree, message: format!("key {key}, migrating: {message}") }
                    }
                    other => other,
                })?;
                bytes += value.len();
                chunk.push((key, value));
                if chunk.len() == MIGRATION_CHUNK_RECORDS || bytes >= MIGRATION_CHUNK_BYTES {
                    break;
                }
            }
            let Some(last) = chunk.last().map(|(key, _)| key.clone()) else { return Ok(rewritten) };
            (tree, &self.meta)
                .transaction(|(tree, meta)| -> ConflictableTransactionResult<(), Infallible> {
                    for (key, value) in &chunk {
                        tree.insert(key.clone(), value.as_slice())?;
                    }
                    meta.insert(note.as_bytes(), last.clone())?;
                    Ok(())
                })
                .map_err(|err| match err {
                    TransactionError::Storage(err) => StoreError::Sled(err),
                    TransactionError::Abort(never) => match never {},
                })?;
            rewritten += chunk.len();
            after = Some(last);
        }
    }

    /// Builds the suite and state indexes of a store written before they existed.
    fn build_indexes(&self) -> Result<(), StoreError> {
        let version = self.meta.get("index_version")?.and_then(|b| b.as_ref().try_into().ok()).map(u64::from_be_bytes);
        if version == Some(INDEX_VERSION) {
            return Ok(());
        }
        self.suite_sessions.clear()?;
        self.state_sessions.clear()?;
        for entry in self.summaries.iter() {
            let (key, bytes) = entry?;
            let Ok(summary) = decode::<SessionSummary>("summaries", &bytes) else {
                warn!(session = ?id_of_key(&key), "an unreadable summary is left out of the indexes");
                continue;
            };
            self.suite_sessions.insert(suite_key(&summary.suite, summary.id), &[])?;
            self.state_sessions.insert(state_key(summary.state, summary.id), &[])?;
        }
        self.meta.insert("index_version", &INDEX_VERSION.to_be_bytes())?;
        Ok(())
    }

    /// Takes `count` consecutive numbers from a counter; returns the first.
    fn take_from_counter(&self, name: &str, count: u64) -> Result<u64, StoreError> {
        let value = self.meta.update_and_fetch(name, |old| {
            let current = old.and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0);
            Some((current + count).to_be_bytes().to_vec())
        })?;
        let last = value.and_then(|b| b.as_ref().try_into().ok()).map(u64::from_be_bytes).unwrap_or(count);
        Ok(last + 1 - count)
    }

    pub fn next_session_id(&self) -> Result<SessionId, StoreError> {
        self.take_from_counter("next_session_id", 1)
    }

    /// `count` consecutive stage ids (one per slave of a stage); returns the first.
    pub fn next_stage_ids(&self, count: u64) -> Result<StageId, StoreError> {
        self.take_from_counter("next_stage_id", count.max(1))
    }

    pub fn put_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let key = record.id.to_be_bytes();
        self.sessions.insert(key, encode(record)?)?;
        let old = self.summaries.insert(key, encode(&record.summary())?)?;
        // One task writes a session's record, so the state it replaces is the one indexed.
        let old_state = old.and_then(|bytes| match decode::<SessionSummary>("summaries", &bytes) {
            Ok(summary) => Some(summary.state),
            // Rewriting an unreadable summary mends it; its stale state key may stay.
            Err(err) => {
                warn!(session = record.id, error = %err, "replacing an unreadable summary");
                None
            }
        });
        if old_state != Some(record.state) {
            if let Some(old_state) = old_state {
                self.state_sessions.remove(state_key(old_state, record.id))?;
            }
            self.state_sessions.insert(state_key(record.state, record.id), &[])?;
        }
        if old_state.is_none() {
            self.suite_sessions.insert(suite_key(&record.suite, record.id), &[])?;
        }
        Ok(())
    }

    /// The list summary of one session.
    pub fn summary(&self, id: SessionId) -> Result<Option<SessionSummary>, StoreError> {
        Ok(self.summaries.get(id.to_be_bytes())?.map(|bytes| readable_summary(id, &bytes)))
    }

    fn summaries_of(&self, ids: impl IntoIterator<Item = SessionId>) -> Result<Vec<SessionSummary>, StoreError> {
        let mut out = Vec::new();
        for id in ids {
            if let Some(summary) = self.summary(id)? {
                out.push(summary);
            }
        }
        Ok(out)
    }

    /// The newest `limit` sessions of `suite`, newest first.
    pub fn suite_recent(&self, suite: &str, limit: usize) -> Result<Vec<SessionSummary>, StoreError> {
        let ids: Vec<SessionId> = self
            .suite_sessions
            .scan_prefix(suite_prefix(suite))
            .rev()
            .take(limit)
            .map(|entry| entry.map(|(key, _)| id_of_key(&key).unwrap_or(0)))
            .collect::<Result<_, _>>()?;
        self.summaries_of(ids)
    }

    /// The suite's previous finished session: the newest session of `suite` older than
    /// `before` whose state is final, found by walking the suite's index newest first over at
    /// most [`PREVIOUS_LOOK_BACK`] of its sessions before `before` (`None` past that, or when
    /// there is none). What webhooks' `change` and comparisons without `a` compare with.
    pub fn previous_finished(&self, suite: &str, before: SessionId) -> Result<Option<SessionSummary>, StoreError> {
        let entries = self.suite_sessions.range(suite_key(suite, 0)..suite_key(suite, before)).rev();
        for entry in entries.take(PREVIOUS_LOOK_BACK) {
            let (key, _) = entry?;
            let Some(id) = id_of_key(&key) else { continue };
            if let Some(summary) = self.summary(id)?.filter(|s| s.state.is_final()) {
                return Ok(Some(summary));
            }
        }
        Ok(None)
    }

    /// The newest `limit` whole records of `suite`, oldest first (for trends).
    pub fn suite_records(&self, suite: &str, limit: usize) -> Result<Vec<SessionRecord>, StoreError> {
        let mut records = Vec::new();
        for entry in self.suite_sessions.scan_prefix(suite_prefix(suite)).rev().take(limit) {
            let (key, _) = entry?;
            if let Some(record) = id_of_key(&key).map(|id| self.session(id)).transpose()?.flatten() {
                records.push(record);
            }
        }
        records.reverse();
        Ok(records)
    }

    /// The newest `limit` sessions in `state`, newest first.
    pub fn in_state(&self, state: SessionState, limit: usize) -> Result<Vec<SessionSummary>, StoreError> {
        let ids: Vec<SessionId> = self
            .state_sessions
            .scan_prefix([state_code(state)])
            .rev()
            .take(limit)
            .map(|entry| entry.map(|(key, _)| id_of_key(&key).unwrap_or(0)))
            .collect::<Result<_, _>>()?;
        self.summaries_of(ids)
    }

    /// The sessions not yet ended (queued, waiting for slaves, running), oldest first.
    pub fn unfinished(&self) -> Result<Vec<SessionSummary>, StoreError> {
        let mut ids = Vec::new();
        for state in
            [SessionState::Queued, SessionState::StartingCluster, SessionState::WaitingSlaves, SessionState::Running]
        {
            for entry in self.state_sessions.scan_prefix([state_code(state)]) {
                let (key, _) = entry?;
                ids.extend(id_of_key(&key));
            }
        }
        ids.sort_unstable();
        self.summaries_of(ids)
    }

    /// How many stored sessions each suite has in each state, by suite name then state in
    /// [`SessionState::ALL`] order (pairs with none are left out). Read from the keys of the
    /// two indexes alone, nothing decoded: one pass over each, sixteen bytes per session in
    /// memory for the time of the call.
    pub fn count_by_suite_and_state(&self) -> Result<Vec<(String, SessionState, u64)>, StoreError> {
        // States by their place in `ALL`, which orders the answer.
        let mut states: Vec<(SessionId, usize)> = Vec::new();
        for (place, &state) in SessionState::ALL.iter().enumerate() {
            for entry in self.state_sessions.scan_prefix([state_code(state)]) {
                let (key, _) = entry?;
                states.extend(id_of_key(&key).map(|id| (id, place)));
            }
        }
        states.sort_unstable_by_key(|(id, _)| *id);
        let mut counts: BTreeMap<(String, usize), u64> = BTreeMap::new();
        for entry in self.suite_sessions.iter() {
            let (key, _) = entry?;
            let (Some(id), Some(suite)) = (id_of_key(&key), key.len().checked_sub(9).map(|end| &key[..end])) else {
                continue;
            };
            let Ok(found) = states.binary_search_by_key(&id, |(id, _)| *id) else { continue };
            let suite = String::from_utf8_lossy(suite).into_owned();
            *counts.entry((suite, states[found].1)).or_insert(0) += 1;
        }
        Ok(counts.into_iter().map(|((suite, place), count)| (suite, SessionState::ALL[place], count)).collect())
    }

    /// The first session id whose session was created at or after `ms` (or one past the
    /// last id). Ids are given in creation order, so creation times grow with them: a
    /// binary search over the ids, a few lookups whatever the number of sessions.
    fn first_id_created_from(&self, ms: u64) -> Result<SessionId, StoreError> {
        let Some((last, _)) = self.summaries.last()? else { return Ok(0) };
        let mut low = 0u64;
        let mut high = id_of_key(&last).unwrap_or(0).saturating_add(1);
        // Invariant: every stored id below `low` was created before `ms`, every one from
        // `high` on at or after it.
        while low < high {
            let middle = low + (high - low) / 2;
            match self.summaries.range(middle.to_be_bytes()..).next().transpose()? {
                None => high = middle,
                Some((key, bytes)) => {
                    let summary = readable_summary(id_of_key(&key).unwrap_or(middle), &bytes);
                    if summary.created_ms < ms {
                        low = id_of_key(&key).unwrap_or(middle).saturating_add(1);
                    } else {
                        high = middle;
                    }
                }
            }
        }
        Ok(low)
    }

    /// The id range `[low, high)` of the sessions `filter` allows.
    fn history_bounds(&self, filter: &HistoryFilter) -> Result<(SessionId, SessionId), StoreError> {
        let mut low = match filter.from_ms {
            Some(ms) => self.first_id_created_from(ms)?,
            None => 0,
        };
        let mut high = match filter.to_ms {
            Some(ms) => self.first_id_created_from(ms)?,
            None => u64::MAX,
        };
        if let Some(after) = filter.after_id {
            low = low.max(after.saturating_add(1));
        }
        if let Some(before) = filter.before_id {
            high = high.min(before);
        }
        Ok((low, high))
    }

    /// The ids matching `filter` in `[low, high)`, newest first or oldest first, read from
    /// the index that fits the filter: nothing is decoded to find them.
    fn history_ids<'a>(
        &'a self,
        filter: &'a HistoryFilter,
        low: SessionId,
        high: SessionId,
        newest_first: bool,
    ) -> impl Iterator<Item = Result<SessionId, StoreError>> + 'a {
        let range: Option<sled::Iter> = (low < high).then(|| match (&filter.suite, filter.state) {
            (Some(suite), _) => self.suite_sessions.range(suite_key(suite, low)..suite_key(suite, high)),
            (None, Some(state)) => self.state_sessions.range(state_key(state, low)..state_key(state, high)),
            (None, None) => self.summaries.range(low.to_be_bytes()..high.to_be_bytes()),
        });
        let entries: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = match range {
            None => Box::new(std::iter::empty()),
            Some(range) if newest_first => Box::new(range.rev()),
            Some(range) => Box::new(range),
        };
        entries.filter_map(move |entry| {
            let id = match entry {
                Ok((key, _)) => id_of_key(&key)?,
                Err(err) => return Some(Err(err.into())),
            };
            // Suite and state together: the suite index walked, the state index asked.
            if let (Some(_), Some(state)) = (&filter.suite, filter.state) {
                match self.state_sessions.contains_key(state_key(state, id)) {
                    Ok(true) => {}
                    Ok(false) => return None,
                    Err(err) => return Some(Err(err.into())),
                }
            }
            Some(Ok(id))
        })
    }

    /// One page of the history, newest first: the sessions matching `filter` after
    /// skipping `offset` of them, at most `limit`, and whether older ones follow. It walks
    /// the index that fits the filter from the newest end and stops as soon as the page is
    /// full, so a page costs what it skips and shows, never a scan of every session; with
    /// `filter.before_id` (the last id of the page before) a next page skips nothing.
    pub fn history(
        &self,
        filter: &HistoryFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<SessionSummary>, bool), StoreError> {
        let (low, high) = self.history_bounds(filter)?;
        let mut ids = Vec::new();
        let mut more = false;
        for id in self.history_ids(filter, low, high, true).skip(offset) {
            let id = id?;
            if ids.len() == limit {
                more = true;
                break;
            }
            ids.push(id);
        }
        Ok((self.summaries_of(ids)?, more))
    }

    /// The page just newer than `filter.after_id` (the first id of the page after it):
    /// at most `limit` sessions, newest first, and whether newer ones still follow.
    pub fn history_newer(
        &self,
        filter: &HistoryFilter,
        limit: usize,
    ) -> Result<(Vec<SessionSummary>, bool), StoreError> {
        let (low, high) = self.history_bounds(filter)?;
        let mut ids = Vec::new();
        let mut more = false;
        for id in self.history_ids(filter, low, high, false) {
            let id = id?;
            if ids.len() == limit {
                more = true;
                break;
            }
            ids.push(id);
        }
        ids.reverse();
        Ok((self.summaries_of(ids)?, more))
    }

    pub fn session(&self, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.sessions.get(id.to_be_bytes())?.map(|bytes| decode("sessions", &bytes)).transpose()
    }

    /// Sessions matching `filter`, newest first: the total count and one page.
    pub fn list(
        &self,
        filter: &SessionFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<SessionSummary>), StoreError> {
        let mut total = 0;
        let mut page = Vec::new();
        for entry in self.summaries.iter().rev() {
            let (key, bytes) = entry?;
            let summary = readable_summary(id_of_key(&key).unwrap_or(0), &bytes);
            if filter.suite.as_ref().is_some_and(|s| *s != summary.suite)
                || filter.state.is_some_and(|s| s != summary.state)
            {
                continue;
            }
            if total >= offset && page.len() < limit {
                page.push(summary);
            }
            total += 1;
        }
        Ok((total, page))
    }

    /// Marks every session that was not finished as interrupted (the master stopped while it
    /// ran or waited). Called once at start-up; returns the ids it marked.
    pub fn mark_unfinished_interrupted(&self, now_ms: u64) -> Result<Vec<SessionId>, StoreError> {
        let mut marked = Vec::new();
        for entry in self.summaries.iter() {
            let (key, bytes) = entry?;
            let summary = readable_summary(id_of_key(&key).unwrap_or(0), &bytes);
            if summary.state.is_final() {
                continue;
            }
            let record = match self.session(summary.id) {
                Ok(record) => record,
                // It must not stop the master's start, nor stay unfinished for ever: its
                // summary ends it, saying why.
                Err(err) => {
                    warn!(session = summary.id, error = %err, "an unfinished session's record is unreadable");
                    self.end_unreadable(summary, now_ms, &err)?;
                    marked.push(id_of_key(&key).unwrap_or(0));
                    None
                }
            };
            if let Some(mut record) = record {
                record.state = SessionState::Interrupted;
                record.reason = Some("the master stopped while this session was unfinished".into());
                record.ended_ms = Some(now_ms);
                for stage in &mut record.stages {
                    for run in &mut stage.runs {
                        if !run.state.is_final() {
                            run.state = crate::model::RunState::Cancelled;
                            run.reason = Some("master stopped".into());
                        }
                    }
                }
                self.put_session(&record)?;
                marked.push(record.id);
            }
        }
        Ok(marked)
    }

    /// Marks an unfinished session whose record cannot be read interrupted, in its summary
    /// and the state index (the record itself stays as found).
    fn end_unreadable(&self, mut summary: SessionSummary, now_ms: u64, err: &StoreError) -> Result<(), StoreError> {
        self.state_sessions.remove(state_key(summary.state, summary.id))?;
        summary.state = SessionState::Interrupted;
        summary.reason =
            Some(format!("the master stopped while this session was unfinished; its record is unreadable ({err})"));
        summary.ended_ms = Some(now_ms);
        self.summaries.insert(summary.id.to_be_bytes(), encode(&summary)?)?;
        self.state_sessions.insert(state_key(summary.state, summary.id), &[])?;
        Ok(())
    }

    fn output_file(&self, stage_id: StageId) -> PathBuf {
        self.output_dir.join(format!("{stage_id}.out"))
    }

    /// Stores one chunk of a stage's output. Writing the same chunk again (a resend after a
    /// reconnect) replaces it, so resends never duplicate output.
    /// Returns once the chunk is in the file and indexed (the chunk counts as received
    /// only then); refused with [`StoreError::DiskFull`] under the reserve.
    pub fn put_output(&self, stage_id: StageId, seq: u64, lines: &[OutputLine]) -> Result<(), StoreError> {
        self.check_room()?;
        let value = encode(&lines)?;
        let path = self.output_file(stage_id);
        let io = |source| io_error(&path, source);
        // One connection writes a stage's output, so appends to one file never interleave.
        let mut file = OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
        let offset = file.seek(SeekFrom::End(0)).map_err(io)?;
        if let Err(err) = file.write_all(&value) {
            // A part written stays unindexed; cutting it off keeps the file to whole chunks.
            let _ = file.set_len(offset);
            return Err(io(err));
        }
        let mut location = [0u8; 12];
        location[..8].copy_from_slice(&offset.to_be_bytes());
        location[8..].copy_from_slice(&(value.len() as u32).to_be_bytes());
        self.output_index.insert(output_key(stage_id, seq), &location)?;
        Ok(())
    }

    /// One chunk's lines; a chunk that cannot be read (a bad location, a short or missing
    /// file, bytes that do not decode) is one marker line instead, so the rest still shows.
    fn read_chunk(&self, file: &mut Option<File>, stage_id: StageId, seq: u64, location: &[u8]) -> Vec<OutputLine> {
        self.try_read_chunk(file, stage_id, location).unwrap_or_else(|err| {
            warn!(stage_id, seq, error = %err, "an unreadable output chunk");
            unreadable_chunk(seq, &err.to_string())
        })
    }

    fn try_read_chunk(
        &self,
        file: &mut Option<File>,
        stage_id: StageId,
        location: &[u8],
    ) -> Result<Vec<OutputLine>, StoreError> {
        let corrupt = || StoreError::Corrupt { tree: "output_index", message: "bad chunk location".into() };
        let offset = u64::from_be_bytes(location.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?);
        let len = u32::from_be_bytes(location.get(8..12).and_then(|b| b.try_into().ok()).ok_or_else(corrupt)?);
        let path = self.output_file(stage_id);
        let io = |source| StoreError::Io { path: path.clone(), source };
        if file.is_none() {
            *file = Some(File::open(&path).map_err(io)?);
        }
        let Some(handle) = file.as_mut() else { return Err(corrupt()) };
        let size = handle.metadata().map_err(io)?.len();
        if offset.checked_add(u64::from(len)).is_none_or(|end| end > size) {
            return Err(StoreError::Corrupt { tree: "output", message: format!("the file ends at byte {size}") });
        }
        handle.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut bytes = vec![0u8; len as usize];
        handle.read_exact(&mut bytes).map_err(io)?;
        decode("output", &bytes)
    }

    /// Puts a stage's output file on the disk (at the stage's end): what was acknowledged
    /// survives a power cut from then on.
    pub fn sync_output(&self, stage_id: StageId) -> Result<(), StoreError> {
        let path = self.output_file(stage_id);
        match File::open(&path) {
            Ok(file) => file.sync_data().map_err(|source| io_error(&path, source)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(io_error(&path, source)),
        }
    }

    /// The output chunks of a stage from chunk `from_seq` on, at most `max_chunks` of them.
    pub fn output(
        &self,
        stage_id: StageId,
        from_seq: u64,
        max_chunks: usize,
    ) -> Result<Vec<(u64, Vec<OutputLine>)>, StoreError> {
        let mut file = None;
        let mut chunks = Vec::new();
        for entry in
            self.output_index.range(output_key(stage_id, from_seq)..=output_key(stage_id, u64::MAX)).take(max_chunks)
        {
            let (key, location) = entry?;
            let seq = u64::from_be_bytes(key[8..16].try_into().unwrap_or([0; 8]));
            chunks.push((seq, self.read_chunk(&mut file, stage_id, seq, &location)));
        }
        Ok(chunks)
    }

    /// The last `n` output lines of a stage (for failure reports), read from the end.
    pub fn output_tail(&self, stage_id: StageId, n: usize) -> Result<Vec<OutputLine>, StoreError> {
        let mut file = None;
        let mut tail: Vec<OutputLine> = Vec::new();
        for entry in self.output_index.range(output_key(stage_id, 0)..=output_key(stage_id, u64::MAX)).rev() {
            let (key, location) = entry?;
            let seq = u64::from_be_bytes(key[8..16].try_into().unwrap_or([0; 8]));
            let mut lines = self.read_chunk(&mut file, stage_id, seq, &location);
            lines.append(&mut tail);
            tail = lines;
            if tail.len() >= n {
                break;
            }
        }
        let excess = tail.len().saturating_sub(n);
        Ok(tail.split_off(excess))
    }

    /// The last chunks of a stage's output holding at least `min_lines` lines (all of
    /// them if it has fewer), oldest first, read from the end; and whether earlier chunks
    /// were left out. For pages that show a long output's end and follow it live.
    pub fn output_tail_chunks(
        &self,
        stage_id: StageId,
        min_lines: usize,
    ) -> Result<(Vec<OutputChunkLines>, bool), StoreError> {
        let mut file = None;
        let mut chunks = Vec::new();
        let mut lines = 0;
        let mut earlier = false;
        for entry in self.output_index.range(output_key(stage_id, 0)..=output_key(stage_id, u64::MAX)).rev() {
            let (key, location) = entry?;
            if lines >= min_lines {
                earlier = true;
                break;
            }
            let seq = u64::from_be_bytes(key[8..16].try_into().unwrap_or([0; 8]));
            let chunk = self.read_chunk(&mut file, stage_id, seq, &location);
            lines += chunk.len();
            chunks.push((seq, chunk));
        }
        chunks.reverse();
        Ok((chunks, earlier))
    }

    /// Refused with [`StoreError::DiskFull`] under the reserve.
    pub fn put_log(&self, log: &LogFile) -> Result<(), StoreError> {
        self.check_room()?;
        let mut key = log.stage_id.to_be_bytes().to_vec();
        key.extend_from_slice(log.path.as_bytes());
        self.logs.insert(key, encode(log)?)?;
        Ok(())
    }

    /// A stage's collected logs; one that cannot be decoded comes with its path and an
    /// error that says so.
    pub fn logs(&self, stage_id: StageId) -> Result<Vec<LogFile>, StoreError> {
        self.logs
            .scan_prefix(stage_id.to_be_bytes())
            .map(|entry| {
                let (key, bytes) = entry?;
                Ok(decode("logs", &bytes).unwrap_or_else(|err| {
                    warn!(stage_id, error = %err, "an unreadable log file");
                    LogFile {
                        stage_id,
                        path: String::from_utf8_lossy(key.get(8..).unwrap_or_default()).into_owned(),
                        content: Vec::new(),
                        truncated_bytes: 0,
                        error: Some(format!("unreadable in the store ({err})")),
                    }
                }))
            })
            .collect()
    }

    /// Keeps what a stage run reported. An empty report is not written (stage ids are never
    /// reused, so there is nothing to replace): most runs report nothing, and this is on
    /// every stage's path.
    pub fn put_values(&self, stage_id: StageId, values: &StageValues) -> Result<(), StoreError> {
        if !values.is_empty() {
            self.values.insert(stage_id.to_be_bytes(), encode(values)?)?;
        }
        Ok(())
    }

    /// What a stage run reported (empty if nothing).
    pub fn values(&self, stage_id: StageId) -> Result<StageValues, StoreError> {
        match self.values.get(stage_id.to_be_bytes())? {
            Some(bytes) => Ok(readable_or_default("values", stage_id, &bytes)),
            None => Ok(StageValues::default()),
        }
    }

    /// What every run of a session reported, by stage id (runs that reported nothing are
    /// left out).
    pub fn session_values(&self, record: &SessionRecord) -> Result<BTreeMap<StageId, StageValues>, StoreError> {
        let mut all = BTreeMap::new();
        for run in record.stages.iter().flat_map(|stage| &stage.runs) {
            if run.stage_id == 0 {
                continue;
            }
            let values = self.values(run.stage_id)?;
            if !values.is_empty() {
                all.insert(run.stage_id, values);
            }
        }
        Ok(all)
    }

    /// Keeps a session's sync waits and faults; an empty timeline is not written.
    pub fn put_timeline(&self, id: SessionId, timeline: &Timeline) -> Result<(), StoreError> {
        if !timeline.is_empty() {
            self.timelines.insert(id.to_be_bytes(), encode(timeline)?)?;
        }
        Ok(())
    }

    /// A session's sync waits and faults (empty if none were kept).
    pub fn timeline(&self, id: SessionId) -> Result<Timeline, StoreError> {
        match self.timelines.get(id.to_be_bytes())? {
            Some(bytes) => Ok(readable_or_default("timelines", id, &bytes)),
            None => Ok(Timeline::default()),
        }
    }

    /// Keeps what each slave ended at a session's end.
    pub fn put_cleanup(&self, id: SessionId, cleanup: &[SlaveCleanup]) -> Result<(), StoreError> {
        if !cleanup.is_empty() {
            self.cleanups.insert(id.to_be_bytes(), encode(&cleanup.to_vec())?)?;
        }
        Ok(())
    }

    /// What each slave ended at a session's end (empty before it ended, or if none answered).
    pub fn cleanup(&self, id: SessionId) -> Result<Vec<SlaveCleanup>, StoreError> {
        match self.cleanups.get(id.to_be_bytes())? {
            Some(bytes) => Ok(readable_or_default("cleanups", id, &bytes)),
            None => Ok(Vec::new()),
        }
    }

    /// Marks a session `keep` (retention never prunes it) or takes the mark off.
    pub fn set_kept(&self, id: SessionId, keep: bool) -> Result<(), StoreError> {
        match keep {
            true => self.kept.insert(id.to_be_bytes(), &[])?,
            false => self.kept.remove(id.to_be_bytes())?,
        };
        Ok(())
    }

    pub fn is_kept(&self, id: SessionId) -> Result<bool, StoreError> {
        Ok(self.kept.contains_key(id.to_be_bytes())?)
    }

    /// Every session's summary, oldest first, with its `keep` mark.
    pub fn all_summaries(&self) -> Result<Vec<(SessionSummary, bool)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.summaries.iter() {
            let (key, bytes) = entry?;
            // Retention leaves unreadable sessions alone: an operator may want to look.
            let Ok(summary) = decode::<SessionSummary>("summaries", &bytes) else { continue };
            out.push((summary, self.kept.contains_key(&key)?));
        }
        Ok(out)
    }

    /// Removes a session and everything of it: its record and indexes, each stage run's
    /// output (file and index), logs and values, its timeline, cleanup and `keep` mark.
    /// Returns the bytes of output files removed.
    pub fn delete_session(&self, id: SessionId) -> Result<u64, StoreError> {
        let key = id.to_be_bytes();
        let mut freed = 0;
        if let Some(record) = self.session(id)? {
            for stage_id in record.stages.iter().flat_map(|s| s.runs.iter().map(|r| r.stage_id)).filter(|&s| s != 0) {
                let path = self.output_file(stage_id);
                if let Ok(meta) = std::fs::metadata(&path) {
                    freed += meta.len();
                }
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(StoreError::Io { path, source }),
                }
                for entry in self.output_index.range(output_key(stage_id, 0)..=output_key(stage_id, u64::MAX)) {
                    self.output_index.remove(entry?.0)?;
                }
                for entry in self.logs.scan_prefix(stage_id.to_be_bytes()) {
                    self.logs.remove(entry?.0)?;
                }
                self.values.remove(stage_id.to_be_bytes())?;
            }
            self.suite_sessions.remove(suite_key(&record.suite, id))?;
            self.state_sessions.remove(state_key(record.state, id))?;
        }
        for tree in [&self.sessions, &self.summaries, &self.timelines, &self.cleanups, &self.kept] {
            tree.remove(key)?;
        }
        Ok(freed)
    }

    /// Bytes the store takes on disk (the database and the output files), measured at most
    /// every [`SIZE_MAX_AGE`]: the dashboard shows it on every render, and a walk of many
    /// output files is not free.
    pub fn disk_bytes(&self) -> u64 {
        let mut measured = self.measured_size.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, bytes)) = *measured {
            if at.elapsed() < SIZE_MAX_AGE {
                return bytes;
            }
        }
        let bytes = self.measure_disk_bytes();
        *measured = Some((std::time::Instant::now(), bytes));
        bytes
    }

    fn measure_disk_bytes(&self) -> u64 {
        fn size(path: &Path) -> u64 {
            let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
            if !meta.is_dir() {
                return meta.len();
            }
            std::fs::read_dir(path).map(|entries| entries.flatten().map(|e| size(&e.path())).sum()).unwrap_or(0)
        }
        self.output_dir.parent().map(size).unwrap_or(0)
    }

    /// Writes everything to disk before returning.
    pub fn flush_now(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SessionState, Trigger};

    fn line(text: &str) -> OutputLine {
        OutputLine { unix_ms: 1, text: text.into() }
    }

    fn record(id: SessionId, suite: &str, state: SessionState) -> SessionRecord {
        SessionRecord {
            id,
            suite: suite.into(),
            trigger: Trigger::Api,
            definition_hash: String::new(),
            commit: None,
            slaves: vec!["s1".into()],
            state,
            reason: None,
            created_ms: id,
            started_ms: None,
            ended_ms: None,
            cases: Vec::new(),
            stages: Vec::new(),
            cluster: None,
            options: crate::model::RunOptions::default(),
        }
    }

    #[test]
    fn a_deleted_session_leaves_nothing_and_others_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (id, stage_id) in [(1, 11), (2, 22)] {
            let mut rec = record(id, "ts", SessionState::Passed);
            let mut run = crate::model::StageRun::pending("s1");
            run.stage_id = stage_id;
            rec.stages.push(crate::model::StageRecord {
                stage: crate::model::Stage::SuiteInit,
                timeout_ms: 1,
                skipped: None,
                runs: vec![run],
                repetition: 1,
                attempt: 1,
            });
            store.put_session(&rec).unwrap();
            store.put_output(stage_id, 0, &[line("out")]).unwrap();
            store
                .put_log(&LogFile {
                    stage_id,
                    path: "/var/log/x".into(),
                    content: b"log".to_vec(),
                    truncated_bytes: 0,
                    error: None,
                })
                .unwrap();
        }
        store.set_kept(2, true).unwrap();
        assert_eq!(
            store.all_summaries().unwrap().iter().map(|(s, k)| (s.id, *k)).collect::<Vec<_>>(),
            [(1, false), (2, true)]
        );
        assert!(store.delete_session(1).unwrap() > 0, "the output file's bytes are counted");
        assert!(store.session(1).unwrap().is_none() && store.summary(1).unwrap().is_none());
        assert!(store.output(11, 0, 10).unwrap().is_empty() && store.logs(11).unwrap().is_empty());
        assert!(!dir.path().join("output/11.out").exists());
        assert!(store.suite_recent("ts", 10).unwrap().iter().all(|s| s.id != 1));
        assert!(store.in_state(SessionState::Passed, 10).unwrap().iter().all(|s| s.id != 1));
        assert_eq!(store.output(22, 0, 10).unwrap().len(), 1, "the other session keeps its output");
        assert!(store.is_kept(2).unwrap());
        assert!(store.disk_bytes() > 0);
    }

    #[test]
    fn sessions_are_counted_by_suite_and_state_as_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.count_by_suite_and_state().unwrap().is_empty());
        for (id, suite, state) in [
            (1, "ts_a", SessionState::Passed),
            (2, "ts_a", SessionState::Failed),
            (3, "ts_ab", SessionState::Passed),
            (4, "ts_a", SessionState::Running),
            (5, "ts_a", SessionState::Passed),
        ] {
            store.put_session(&record(id, suite, state)).unwrap();
        }
        store.put_session(&record(4, "ts_a", SessionState::Failed)).unwrap();
        let counts = store.count_by_suite_and_state().unwrap();
        let expected = [
            ("ts_a".to_string(), SessionState::Passed, 2),
            ("ts_a".to_string(), SessionState::Failed, 2),
            ("ts_ab".to_string(), SessionState::Passed, 1),
        ];
        assert_eq!(counts, expected);
    }

    #[test]
    fn output_chunks_round_trip_resends_replace_and_tail_reads_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_output(7, 0, &[line("a"), line("b")]).unwrap();
        store.put_output(7, 1, &[line("c")]).unwrap();
        store.put_output(7, 1, &[line("c")]).unwrap(); // a resend after a reconnect
        store.put_output(8, 0, &[line("other stage")]).unwrap();
        let chunks = store.output(7, 0, 10).unwrap();
        let texts: Vec<&str> = chunks.iter().flat_map(|(_, l)| l.iter().map(|l| l.text.as_str())).collect();
        assert_eq!(texts, ["a", "b", "c"]);
        assert_eq!(store.output(7, 1, 10).unwrap().len(), 1);
        assert_eq!(store.output(7, 0, 1).unwrap().len(), 1);
        let tail: Vec<String> = store.output_tail(7, 2).unwrap().into_iter().map(|l| l.text).collect();
        assert_eq!(tail, ["b", "c"]);
        assert!(store.output(99, 0, 10).unwrap().is_empty());
    }

    #[test]
    fn a_chunk_cut_short_or_garbled_reads_as_one_marker_and_the_others_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_output(3, 0, &[line("first")]).unwrap();
        store.put_output(3, 1, &[line("second")]).unwrap();
        store.put_output(3, 2, &[line("third")]).unwrap();
        store.sync_output(3).unwrap();
        let path = store.output_file(3);
        let size = std::fs::metadata(&path).unwrap().len();
        // Chunk 0's bytes garbled, the end of chunk 2 cut off.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] = 0xff;
        bytes.truncate(size as usize - 2);
        std::fs::write(&path, &bytes).unwrap();
        let texts: Vec<String> =
            store.output(3, 0, 10).unwrap().into_iter().flat_map(|(_, l)| l.into_iter().map(|l| l.text)).collect();
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert!(texts[0].contains("output chunk 0 is unreadable"), "{texts:?}");
        assert_eq!(texts[1], "second");
        assert!(texts[2].contains("output chunk 2 is unreadable") && texts[2].contains("ends at byte"), "{texts:?}");
        let tail: Vec<String> = store.output_tail(3, 2).unwrap().into_iter().map(|l| l.text).collect();
        assert_eq!(tail[0], "second", "{tail:?}");
        std::fs::remove_file(&path).unwrap();
        let gone = store.output(3, 0, 10).unwrap();
        assert_eq!(gone.len(), 3, "a missing file: each chunk a marker");
        assert!(store.output_tail_chunks(3, 10).unwrap().0.iter().all(|(_, l)| l[0].text.contains("unreadable")));
    }

    #[test]
    fn an_unreadable_record_is_one_marked_item_and_the_store_still_opens_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for id in 1..=3 {
                store.put_session(&record(id, "ts", SessionState::Passed)).unwrap();
            }
            store.put_session(&record(4, "ts", SessionState::Running)).unwrap();
            store.put_values(2, &StageValues::default()).unwrap();
            // Garbage where session 2's summary and record and session 4's record are, and
            // in the side records of session 3.
            store.summaries.insert(2u64.to_be_bytes(), &[0xff, 0xfe, 0xfd][..]).unwrap();
            store.sessions.insert(2u64.to_be_bytes(), &[0xff][..]).unwrap();
            store.sessions.insert(4u64.to_be_bytes(), &[0xff][..]).unwrap();
            store.timelines.insert(3u64.to_be_bytes(), &[0xff][..]).unwrap();
            store.cleanups.insert(3u64.to_be_bytes(), &[0xff][..]).unwrap();
            store.values.insert(77u64.to_be_bytes(), &[0xff][..]).unwrap();
            let mut log_key = 77u64.to_be_bytes().to_vec();
            log_key.extend_from_slice(b"/var/log/x.log");
            store.logs.insert(log_key, &[0xff][..]).unwrap();
            store.meta.remove("index_version").unwrap(); // indexes rebuilt at the next open
            store.flush_now().unwrap();
        }
        let store = Store::open(dir.path()).expect("an unreadable record does not stop the open");
        assert_eq!(store.mark_unfinished_interrupted(9).unwrap(), [4], "ended by its summary");
        assert_eq!(store.summary(4).unwrap().map(|s| s.state), Some(SessionState::Interrupted));
        assert!(store.unfinished().unwrap().is_empty(), "nothing stays unfinished");
        let (total, page) = store.list(&SessionFilter::default(), 0, 10).unwrap();
        assert_eq!(total, 4);
        let marked = page.iter().find(|s| s.id == 2).expect("session 2 is listed");
        assert!(marked.reason.as_deref().unwrap_or("").contains("unreadable"), "{marked:?}");
        let (history, _) = store.history(&HistoryFilter::default(), 0, 10).unwrap();
        assert_eq!(history.iter().map(|s| s.id).collect::<Vec<_>>(), [4, 3, 2, 1], "the marker is in the history");
        let by_suite = HistoryFilter { suite: Some("ts".into()), ..HistoryFilter::default() };
        let ids: Vec<SessionId> = store.history(&by_suite, 0, 10).unwrap().0.iter().map(|s| s.id).collect();
        assert_eq!(ids, [4, 3, 1], "its suite unknown, it is left out of the rebuilt suite index");
        assert!(matches!(store.session(2), Err(StoreError::Corrupt { .. })), "the record itself says it is corrupt");
        assert!(store.session(1).unwrap().is_some(), "the others read");
        assert!(store.timeline(3).unwrap().is_empty() && store.cleanup(3).unwrap().is_empty());
        assert!(store.values(77).unwrap().is_empty());
        let logs = store.logs(77).unwrap();
        assert_eq!(logs[0].path, "/var/log/x.log");
        assert!(logs[0].error.as_deref().unwrap_or("").contains("unreadable"), "{logs:?}");
        assert_eq!(store.all_summaries().unwrap().len(), 3, "retention leaves the unreadable one alone");
        store.put_session(&record(2, "ts", SessionState::Passed)).expect("rewriting mends it");
        assert_eq!(store.summary(2).unwrap().map(|s| s.suite), Some("ts".to_string()));
    }

    #[test]
    fn output_and_logs_are_refused_as_disk_full_under_the_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap().with_reserve(u64::MAX);
        let err = store.put_output(5, 0, &[line("x")]).unwrap_err();
        assert!(err.is_disk_full() && err.to_string().starts_with("disk full: "), "{err}");
        assert!(!store.output_file(5).exists(), "nothing written");
        let log = LogFile { stage_id: 5, path: "/l".into(), content: b"x".to_vec(), truncated_bytes: 0, error: None };
        assert!(store.put_log(&log).unwrap_err().is_disk_full());
        store.put_session(&record(1, "ts", SessionState::Failed)).expect("records are still written");
        let store = store.with_reserve(0);
        store.put_output(5, 0, &[line("x")]).expect("room again: writes go on");
        let no_space = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(io_error(Path::new("/x"), no_space).is_disk_full());
        assert!(!io_error(Path::new("/x"), std::io::Error::other("other")).is_disk_full());
    }

    #[test]
    fn ids_count_up_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.next_session_id().unwrap(), 1);
            assert_eq!(store.next_session_id().unwrap(), 2);
            assert_eq!(store.next_stage_ids(3).unwrap(), 1);
            assert_eq!(store.next_stage_ids(3).unwrap(), 4);
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.next_session_id().unwrap(), 3);
        assert_eq!(store.next_stage_ids(1).unwrap(), 7);
    }

    #[test]
    fn listing_filters_pages_and_unfinished_sessions_become_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_session(&record(1, "a", SessionState::Passed)).unwrap();
        store.put_session(&record(2, "b", SessionState::Running)).unwrap();
        store.put_session(&record(3, "a", SessionState::Failed)).unwrap();
        let (total, page) = store.list(&SessionFilter::default(), 0, 2).unwrap();
        assert_eq!(total, 3);
        assert_eq!(page.iter().map(|s| s.id).collect::<Vec<_>>(), [3, 2], "newest first");
        let (total, page) = store.list(&SessionFilter { suite: Some("a".into()), state: None }, 1, 10).unwrap();
        assert_eq!((total, page[0].id), (2, 1));
        assert_eq!(store.mark_unfinished_interrupted(5).unwrap(), [2]);
        assert_eq!(store.session(2).unwrap().unwrap().state, SessionState::Interrupted);
        assert_eq!(store.session(1).unwrap().unwrap().state, SessionState::Passed);
    }

    fn ids(list: &[SessionSummary]) -> Vec<SessionId> {
        list.iter().map(|s| s.id).collect()
    }

    #[test]
    fn suite_and_state_indexes_follow_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_session(&record(1, "a", SessionState::Queued)).unwrap();
        store.put_session(&record(2, "ab", SessionState::Running)).unwrap();
        store.put_session(&record(3, "a", SessionState::Failed)).unwrap();
        store.put_session(&record(1, "a", SessionState::Running)).unwrap();
        assert_eq!(ids(&store.suite_recent("a", 20).unwrap()), [3, 1], "newest first, `ab` is another suite");
        assert_eq!(ids(&store.suite_recent("a", 1).unwrap()), [3]);
        assert!(store.suite_recent("zz", 20).unwrap().is_empty());
        assert_eq!(ids(&store.unfinished().unwrap()), [1, 2]);
        assert!(store.in_state(SessionState::Queued, 10).unwrap().is_empty(), "old state unindexed");
        store.put_session(&record(1, "a", SessionState::Passed)).unwrap();
        assert_eq!(ids(&store.unfinished().unwrap()), [2]);
        assert_eq!(ids(&store.in_state(SessionState::Failed, 10).unwrap()), [3]);
        let records = store.suite_records("a", 200).unwrap();
        assert_eq!(records.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 3], "oldest first");
        assert_eq!(store.suite_records("a", 1).unwrap()[0].id, 3, "the newest kept");
        assert_eq!(store.summary(2).unwrap().unwrap().suite, "ab");
        assert!(store.summary(9).unwrap().is_none());
    }

    #[test]
    fn the_previous_finished_session_is_the_suites_newest_final_one_before_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let previous = |suite: &str, before: SessionId| store.previous_finished(suite, before).unwrap().map(|s| s.id);
        assert_eq!(previous("a", 10), None, "an empty store");
        for (id, suite, state) in [
            (1, "a", SessionState::Passed),
            (2, "ab", SessionState::Failed),
            (3, "a", SessionState::Failed),
            (4, "a", SessionState::Running),
            (5, "ab", SessionState::Passed),
            (6, "a", SessionState::Queued),
            (7, "a", SessionState::Interrupted),
        ] {
            store.put_session(&record(id, suite, state)).unwrap();
        }
        assert_eq!(previous("a", 6), Some(3), "unfinished ones and another suite's are passed over");
        assert_eq!(previous("a", 3), Some(1), "strictly before");
        assert_eq!(previous("a", 1), None, "the first has none");
        assert_eq!(previous("a", 8), Some(7), "interrupted is final");
        assert_eq!(previous("a", 99), Some(7), "`before` need not exist");
        assert_eq!(previous("ab", 5), Some(2), "`ab` is its own suite, not a prefix of `a`'s");
        assert_eq!(store.previous_finished("a", 6).unwrap().map(|s| s.state), Some(SessionState::Failed));

        // Past the look-back bound of unfinished sessions, none is found.
        let first = 100;
        store.put_session(&record(first, "q", SessionState::Passed)).unwrap();
        let queued = PREVIOUS_LOOK_BACK as SessionId;
        for id in first + 1..=first + queued {
            store.put_session(&record(id, "q", SessionState::Queued)).unwrap();
        }
        assert_eq!(previous("q", first + queued), Some(first), "the last one within the bound");
        assert_eq!(previous("q", first + queued + 1), None, "one more waiting in between: past the bound");
    }

    #[test]
    fn indexes_are_built_for_a_store_written_before_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_session(&record(1, "a", SessionState::Passed)).unwrap();
            store.put_session(&record(2, "b", SessionState::Failed)).unwrap();
            // As an older version left it: no indexes.
            store.suite_sessions.clear().unwrap();
            store.state_sessions.clear().unwrap();
            store.meta.remove("index_version").unwrap();
            store.flush_now().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(ids(&store.suite_recent("b", 20).unwrap()), [2]);
        assert_eq!(ids(&store.in_state(SessionState::Passed, 20).unwrap()), [1]);
    }

    #[test]
    fn history_filters_by_suite_state_and_date_and_pages_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Sessions 1..=30, created at 100 ms steps; suites alternate, every third fails.
        for id in 1..=30u64 {
            let mut r = record(id, if id % 2 == 0 { "even" } else { "odd" }, SessionState::Passed);
            if id % 3 == 0 {
                r.state = SessionState::Failed;
            }
            r.created_ms = id * 100;
            store.put_session(&r).unwrap();
        }
        let all = HistoryFilter::default();
        let (page, more) = store.history(&all, 0, 10).unwrap();
        assert_eq!(ids(&page), (21..=30).rev().collect::<Vec<_>>());
        assert!(more);
        let (page, more) = store.history(&all, 20, 10).unwrap();
        assert_eq!(ids(&page), (1..=10).rev().collect::<Vec<_>>());
        assert!(!more, "exactly the last page");
        assert!(store.history(&all, 30, 10).unwrap().0.is_empty());

        let even = HistoryFilter { suite: Some("even".into()), ..Default::default() };
        assert_eq!(ids(&store.history(&even, 1, 3).unwrap().0), [28, 26, 24]);
        let failed = HistoryFilter { state: Some(SessionState::Failed), ..Default::default() };
        assert_eq!(ids(&store.history(&failed, 0, 100).unwrap().0), [30, 27, 24, 21, 18, 15, 12, 9, 6, 3]);
        let both = HistoryFilter { suite: Some("odd".into()), state: Some(SessionState::Failed), ..Default::default() };
        assert_eq!(ids(&store.history(&both, 0, 100).unwrap().0), [27, 21, 15, 9, 3]);

        // Dates: [from, to) on creation times, 100 ms per id.
        let window = HistoryFilter { from_ms: Some(1000), to_ms: Some(1500), ..Default::default() };
        assert_eq!(ids(&store.history(&window, 0, 100).unwrap().0), [14, 13, 12, 11, 10]);
        let window = HistoryFilter { from_ms: Some(1001), to_ms: Some(1401), ..Default::default() };
        assert_eq!(ids(&store.history(&window, 0, 100).unwrap().0), [14, 13, 12, 11]);
        let window = HistoryFilter { suite: Some("even".into()), from_ms: Some(2500), ..Default::default() };
        assert_eq!(ids(&store.history(&window, 0, 100).unwrap().0), [30, 28, 26]);
        let window = HistoryFilter { state: Some(SessionState::Failed), to_ms: Some(700), ..Default::default() };
        assert_eq!(ids(&store.history(&window, 0, 100).unwrap().0), [6, 3]);
        let empty = HistoryFilter { from_ms: Some(5000), ..Default::default() };
        assert!(store.history(&empty, 0, 10).unwrap().0.is_empty());
        let backwards = HistoryFilter { from_ms: Some(2000), to_ms: Some(1000), ..Default::default() };
        assert!(store.history(&backwards, 0, 10).unwrap().0.is_empty());
    }

    #[test]
    fn history_cursors_page_without_skipping() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for id in 1..=25u64 {
            let state = if id % 2 == 0 { SessionState::Failed } else { SessionState::Passed };
            store.put_session(&record(id, "a", state)).unwrap();
        }
        let older = HistoryFilter { before_id: Some(20), ..Default::default() };
        let (page, more) = store.history(&older, 0, 5).unwrap();
        assert_eq!((ids(&page), more), (vec![19, 18, 17, 16, 15], true));
        let (page, more) = store.history(&HistoryFilter { before_id: Some(3), ..Default::default() }, 0, 5).unwrap();
        assert_eq!((ids(&page), more), (vec![2, 1], false));
        let newer = HistoryFilter { after_id: Some(15), ..Default::default() };
        let (page, more) = store.history_newer(&newer, 5).unwrap();
        assert_eq!((ids(&page), more), (vec![20, 19, 18, 17, 16], true), "the page just above, newest first");
        let (page, more) = store.history_newer(&HistoryFilter { after_id: Some(22), ..Default::default() }, 5).unwrap();
        assert_eq!((ids(&page), more), (vec![25, 24, 23], false));
        // With a state filter and a suite filter, through their indexes.
        let failed = HistoryFilter { state: Some(SessionState::Failed), before_id: Some(10), ..Default::default() };
        assert_eq!(ids(&store.history(&failed, 0, 3).unwrap().0), [8, 6, 4]);
        let failed_a = HistoryFilter {
            suite: Some("a".into()),
            state: Some(SessionState::Failed),
            after_id: Some(10),
            ..Default::default()
        };
        assert_eq!(ids(&store.history_newer(&failed_a, 2).unwrap().0), [14, 12]);
        // Both bounds.
        let window = HistoryFilter { after_id: Some(3), before_id: Some(6), ..Default::default() };
        assert_eq!(ids(&store.history(&window, 0, 10).unwrap().0), [5, 4]);
    }

    #[test]
    fn history_date_search_tolerates_gaps_in_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for id in [2u64, 3, 7, 8, 20] {
            let mut r = record(id, "a", SessionState::Passed);
            r.created_ms = id * 10;
            store.put_session(&r).unwrap();
        }
        for (from, expected) in
            [(0, vec![20, 8, 7, 3, 2]), (31, vec![20, 8, 7]), (80, vec![20, 8]), (81, vec![20]), (201, vec![])]
        {
            let filter = HistoryFilter { from_ms: Some(from), ..Default::default() };
            assert_eq!(ids(&store.history(&filter, 0, 10).unwrap().0), expected, "from {from}");
        }
        let empty = Store::open(&dir.path().join("empty")).unwrap();
        assert!(empty.history(&HistoryFilter { from_ms: Some(1), ..Default::default() }, 0, 10).unwrap().0.is_empty());
    }

    #[test]
    fn output_tail_chunks_reads_enough_lines_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_output(5, 0, &[line("a"), line("b")]).unwrap();
        store.put_output(5, 1, &[line("c")]).unwrap();
        store.put_output(5, 2, &[line("d"), line("e")]).unwrap();
        let (chunks, earlier) = store.output_tail_chunks(5, 3).unwrap();
        assert_eq!(chunks.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), [1, 2]);
        assert!(earlier);
        let (chunks, earlier) = store.output_tail_chunks(5, 100).unwrap();
        assert_eq!(chunks.len(), 3);
        assert!(!earlier);
        assert_eq!(store.output_tail_chunks(6, 10).unwrap(), (Vec::new(), false));
    }

    /// A schema-1 record of `ts_old` with two cases, one run, and three stages.
    fn v1_record(id: SessionId) -> v1::SessionRecord {
        use crate::model::{Stage, StageRun};
        let stage = |stage: Stage| v1::StageRecord {
            stage,
            timeout_ms: 1_000,
            skipped: None,
            runs: vec![StageRun { stage_id: id * 10, ..StageRun::pending("s1") }],
        };
        v1::SessionRecord {
            id,
            suite: "ts_old".into(),
            trigger: Trigger::Manual,
            definition_hash: format!("sha256:{id}"),
            commit: None,
            slaves: vec!["s1".into()],
            state: SessionState::Failed,
            reason: Some(format!("failed cases: b{id}")),
            created_ms: id,
            started_ms: Some(id),
            ended_ms: Some(id + 1),
            cases: vec![
                v1::CaseRecord {
                    name: format!("b{id}"),
                    state: v1::CaseState::Failed,
                    started_ms: Some(id),
                    ended_ms: Some(id + 1),
                },
                v1::CaseRecord { name: "c".into(), state: v1::CaseState::NotRun, started_ms: None, ended_ms: None },
            ],
            stages: vec![
                stage(Stage::SuiteInit),
                stage(Stage::CaseRun { case: format!("b{id}") }),
                stage(Stage::SuiteFinalize),
            ],
            cluster: None,
        }
    }

    fn v1_summary(record: &v1::SessionRecord) -> v1::SessionSummary {
        v1::SessionSummary {
            id: record.id,
            suite: record.suite.clone(),
            trigger: record.trigger,
            state: record.state,
            reason: record.reason.clone(),
            created_ms: record.created_ms,
            started_ms: record.started_ms,
            ended_ms: record.ended_ms,
            cases_passed: 0,
            cases_failed: 2,
            cases_total: 2,
        }
    }

    /// sled opened directly, as the tests write raw bytes. Without a flusher thread, so the
    /// file lock is gone as soon as it is dropped; retried while a just-dropped store's
    /// flusher still holds the lock.
    fn raw_db(path: &Path) -> sled::Db {
        let mut tries = 0;
        loop {
            match sled::Config::new().path(path).flush_every_ms(None).open() {
                Ok(db) => return db,
                Err(_) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(err) => panic!("cannot open {}: {err}", path.display()),
            }
        }
    }

    /// A store as a schema-1 build left it (no schema version kept): `count` sessions.
    fn write_schema_1_store(path: &Path, count: u64) {
        let db = raw_db(path);
        let (sessions, summaries) = (db.open_tree("sessions").unwrap(), db.open_tree("summaries").unwrap());
        for id in 1..=count {
            let record = v1_record(id);
            sessions.insert(id.to_be_bytes(), storage::encode(&record).unwrap()).unwrap();
            summaries.insert(id.to_be_bytes(), storage::encode(&v1_summary(&record)).unwrap()).unwrap();
        }
        db.flush().unwrap();
    }

    /// Every session of a migrated store of [`write_schema_1_store`] reads as its schema-1
    /// record converted, with its summary, and no note of the migration is left.
    fn assert_migrated(store: &Store, count: u64) {
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        for id in 1..=count {
            let record = store.session(id).unwrap().unwrap();
            assert_eq!(record, SessionRecord::from(v1_record(id)), "session {id}");
            assert_eq!(store.summary(id).unwrap().unwrap(), record.summary(), "summary of {id}");
        }
        assert_eq!(store.sessions.len(), count as usize);
        let notes: Vec<String> = store
            .meta
            .iter()
            .keys()
            .map(|key| String::from_utf8_lossy(&key.unwrap()).into_owned())
            .filter(|key| key.starts_with("migrat"))
            .collect();
        assert!(notes.is_empty(), "left in meta: {notes:?}");
    }

    fn meta_u32(path: &Path, key: &str) -> Option<u32> {
        let db = raw_db(path);
        let value = db.open_tree("meta").unwrap().get(key).unwrap();
        value.map(|bytes| u32::from_be_bytes(bytes.as_ref().try_into().unwrap()))
    }

    #[test]
    fn a_store_of_schema_1_is_migrated_in_chunks_once() {
        let dir = tempfile::tempdir().unwrap();
        let count = 2 * MIGRATION_CHUNK_RECORDS as u64 + 7;
        write_schema_1_store(dir.path(), count);
        {
            let store = Store::open(dir.path()).unwrap();
            assert_migrated(&store, count);
            let record = store.session(3).unwrap().unwrap();
            let cases: Vec<(&str, &str, u32, u32)> =
                record.cases.iter().map(|c| (c.name.as_str(), c.case.as_str(), c.repetition, c.attempts)).collect();
            assert_eq!(cases, [("b3", "b3", 1, 1), ("c", "c", 1, 0)]);
            let stages: Vec<(u32, u32)> = record.stages.iter().map(|s| (s.repetition, s.attempt)).collect();
            assert_eq!(stages, [(0, 0), (1, 1), (0, 0)]);
            assert_eq!(record.options.repeat, 1);
            assert_eq!(ids(&store.suite_recent("ts_old", 2).unwrap()), [count, count - 1]);
        }
        // Opened again, nothing is rewritten: the records are today's.
        let store = Store::open(dir.path()).unwrap();
        assert_migrated(&store, count);
    }

    #[test]
    fn a_migration_stopped_half_way_is_refused_by_older_builds_and_goes_on_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let count = 2 * MIGRATION_CHUNK_RECORDS as u64 + 7;
        write_schema_1_store(dir.path(), count);
        // An unreadable record past the first chunk of sessions, and one summary.
        let (bad_session, bad_summary) = (MIGRATION_CHUNK_RECORDS as u64 + 10, 5u64);
        let raw = |tree: &str, id: u64, bytes: Vec<u8>| {
            let db = raw_db(dir.path());
            db.open_tree(tree).unwrap().insert(id.to_be_bytes(), bytes).unwrap();
            db.flush().unwrap();
        };
        raw("sessions", bad_session, vec![0xff; 3]);
        raw("summaries", bad_summary, vec![0xff; 3]);

        let err = Store::open(dir.path()).err().expect("an unreadable record stops the migration").to_string();
        assert!(err.contains("`sessions`") && err.contains(&format!("key {bad_session}")), "{err}");
        // Stopped after the first chunk: marked so that a schema-1 build refuses the store.
        assert_eq!(meta_u32(dir.path(), "schema_version"), Some(2));
        assert_eq!(meta_u32(dir.path(), MIGRATING_FROM), Some(1));
        {
            let db = raw_db(dir.path());
            let until = db.open_tree("meta").unwrap().get(migrated_until_key("sessions")).unwrap().unwrap();
            assert_eq!(until.as_ref(), (MIGRATION_CHUNK_RECORDS as u64).to_be_bytes());
        }

        // Mended, it goes on, and stops at the summary.
        raw("sessions", bad_session, storage::encode(&v1_record(bad_session)).unwrap());
        let err = Store::open(dir.path()).err().expect("the summary stops it again").to_string();
        assert!(err.contains("`summaries`") && err.contains(&format!("key {bad_summary}")), "{err}");
        assert_eq!(meta_u32(dir.path(), MIGRATING_FROM), Some(1));

        // Mended too, it ends; the records rewritten before each stop were not rewritten again.
        raw("summaries", bad_summary, storage::encode(&v1_summary(&v1_record(bad_summary))).unwrap());
        let store = Store::open(dir.path()).unwrap();
        assert_migrated(&store, count);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_migrated(&store, count);
    }

    #[test]
    fn a_store_of_schema_1_with_no_sessions_is_migrated_and_an_unknown_old_schema_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = raw_db(dir.path());
            db.open_tree("meta").unwrap().insert("schema_version", &1u32.to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        assert_migrated(&Store::open(dir.path()).unwrap(), 0);

        let dir = tempfile::tempdir().unwrap();
        {
            let db = raw_db(dir.path());
            db.open_tree("meta").unwrap().insert("schema_version", &0u32.to_be_bytes()).unwrap();
            db.flush().unwrap();
        }
        let err = Store::open(dir.path()).err().expect("schema 0 never existed").to_string();
        assert!(err.contains("schema version 0"), "{err}");
    }
}
