//! The session store: every session, its output and its collected logs.
//!
//! sled trees:
//! - `sessions`: session id → [`SessionRecord`] (rewritten as the session progresses);
//! - `summaries`: session id → [`SessionSummary`] (what lists need, small);
//! - `output_index`: stage id ++ chunk number → where that chunk of output lines lies in
//!   the stage's output file, so output is written and read in pieces, never held whole;
//! - `logs`: stage id ++ path → a collected [`LogFile`];
//! - `meta`: counters.
//!
//! Output bytes live in append-only files, `output/<stage id>.out`, beside the sled
//! database: sled 0.34 keeps every value written in memory until its cache evicts it, and
//! under a flood of output that cost more memory than the output itself (measured: 226 MB
//! resident growth for 200 MB written). A resent chunk is appended again and its index
//! entry replaced, so resends never duplicate output.
//!
//! Values are bincode 2 (serde). Keys are big-endian so trees iterate in id order.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use xrdtest_proto::{LogFile, OutputLine, StageId};

use crate::model::{SessionId, SessionRecord, SessionState, SessionSummary};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("store: corrupt value in `{tree}`: {message}")]
    Corrupt { tree: &'static str, message: String },
    #[error("store: cannot encode: {0}")]
    Encode(String),
    #[error("store: {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

#[derive(Clone)]
pub struct Store {
    output_dir: PathBuf,
    db: sled::Db,
    sessions: sled::Tree,
    summaries: sled::Tree,
    output_index: sled::Tree,
    logs: sled::Tree,
    meta: sled::Tree,
}

/// Filters for listing sessions.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub suite: Option<String>,
    pub state: Option<SessionState>,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| StoreError::Encode(e.to_string()))
}

fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(value, _)| value)
        .map_err(|e| StoreError::Corrupt { tree, message: e.to_string() })
}

fn output_key(stage_id: StageId, seq: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&stage_id.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let output_dir = path.join("output");
        std::fs::create_dir_all(&output_dir).map_err(|e| StoreError::Io { path: output_dir.clone(), source: e })?;
        // sled's default page cache is 1 GiB; sessions are written once and read rarely.
        let db = sled::Config::new().path(path).cache_capacity(8 << 20).flush_every_ms(Some(200)).open()?;
        Ok(Store {
            output_dir,
            sessions: db.open_tree("sessions")?,
            summaries: db.open_tree("summaries")?,
            output_index: db.open_tree("output_index")?,
            logs: db.open_tree("logs")?,
            meta: db.open_tree("meta")?,
            db,
        })
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
        self.summaries.insert(key, encode(&record.summary())?)?;
        Ok(())
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
            let (_, bytes) = entry?;
            let summary: SessionSummary = decode("summaries", &bytes)?;
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
            let (_, bytes) = entry?;
            let summary: SessionSummary = decode("summaries", &bytes)?;
            if summary.state.is_final() {
                continue;
            }
            if let Some(mut record) = self.session(summary.id)? {
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

    fn output_file(&self, stage_id: StageId) -> PathBuf {
        self.output_dir.join(format!("{stage_id}.out"))
    }

    /// Stores one chunk of a stage's output. Writing the same chunk again (a resend after a
    /// reconnect) replaces it, so resends never duplicate output.
    pub fn put_output(&self, stage_id: StageId, seq: u64, lines: &[OutputLine]) -> Result<(), StoreError> {
        let value = encode(&lines)?;
        let path = self.output_file(stage_id);
        let io = |source| StoreError::Io { path: path.clone(), source };
        // One connection writes a stage's output, so appends to one file never interleave.
        let mut file = OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
        let offset = file.seek(SeekFrom::End(0)).map_err(io)?;
        file.write_all(&value).map_err(io)?;
        let mut location = [0u8; 12];
        location[..8].copy_from_slice(&offset.to_be_bytes());
        location[8..].copy_from_slice(&(value.len() as u32).to_be_bytes());
        self.output_index.insert(output_key(stage_id, seq), &location)?;
        Ok(())
    }

    fn read_chunk(
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
        handle.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut bytes = vec![0u8; len as usize];
        handle.read_exact(&mut bytes).map_err(io)?;
        decode("output", &bytes)
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
            chunks.push((seq, self.read_chunk(&mut file, stage_id, &location)?));
        }
        Ok(chunks)
    }

    /// The last `n` output lines of a stage (for failure reports), read from the end.
    pub fn output_tail(&self, stage_id: StageId, n: usize) -> Result<Vec<OutputLine>, StoreError> {
        let mut file = None;
        let mut tail: Vec<OutputLine> = Vec::new();
        for entry in self.output_index.range(output_key(stage_id, 0)..=output_key(stage_id, u64::MAX)).rev() {
            let (_, location) = entry?;
            let mut lines = self.read_chunk(&mut file, stage_id, &location)?;
            lines.append(&mut tail);
            tail = lines;
            if tail.len() >= n {
                break;
            }
        }
        let excess = tail.len().saturating_sub(n);
        Ok(tail.split_off(excess))
    }

    pub fn put_log(&self, log: &LogFile) -> Result<(), StoreError> {
        let mut key = log.stage_id.to_be_bytes().to_vec();
        key.extend_from_slice(log.path.as_bytes());
        self.logs.insert(key, encode(log)?)?;
        Ok(())
    }

    pub fn logs(&self, stage_id: StageId) -> Result<Vec<LogFile>, StoreError> {
        self.logs
            .scan_prefix(stage_id.to_be_bytes())
            .map(|entry| {
                let (_, bytes) = entry?;
                decode("logs", &bytes)
            })
            .collect()
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
        }
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
}
