//! The session store: every session, its output and its collected logs, in sled.
//!
//! Trees:
//! - `sessions`: session id → [`SessionRecord`] (rewritten as the session progresses);
//! - `summaries`: session id → [`SessionSummary`] (what lists need, small);
//! - `output`: stage id ++ chunk number → a chunk of output lines, so output is written
//!   and read in pieces, never held whole;
//! - `logs`: stage id ++ path → a collected [`LogFile`];
//! - `meta`: counters.
//!
//! Values are bincode 2 (serde). Keys are big-endian so trees iterate in id order.

use std::path::Path;

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
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    sessions: sled::Tree,
    summaries: sled::Tree,
    output: sled::Tree,
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
        let db = sled::Config::new().path(path).flush_every_ms(Some(200)).open()?;
        Ok(Store {
            sessions: db.open_tree("sessions")?,
            summaries: db.open_tree("summaries")?,
            output: db.open_tree("output")?,
            logs: db.open_tree("logs")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    fn next_counter(&self, name: &str) -> Result<u64, StoreError> {
        let value = self.meta.update_and_fetch(name, |old| {
            let current = old.and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0);
            Some((current + 1).to_be_bytes().to_vec())
        })?;
        Ok(value.and_then(|b| b.as_ref().try_into().ok()).map(u64::from_be_bytes).unwrap_or(1))
    }

    pub fn next_session_id(&self) -> Result<SessionId, StoreError> {
        self.next_counter("next_session_id")
    }

    pub fn next_stage_id(&self) -> Result<StageId, StoreError> {
        self.next_counter("next_stage_id")
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

    /// Stores one chunk of a stage's output. Writing the same chunk again (a resend after a
    /// reconnect) replaces it, so resends never duplicate output.
    pub fn put_output(&self, stage_id: StageId, seq: u64, lines: &[OutputLine]) -> Result<(), StoreError> {
        self.output.insert(output_key(stage_id, seq), encode(&lines)?)?;
        Ok(())
    }

    /// The output chunks of a stage from chunk `from_seq` on, at most `max_chunks` of them.
    pub fn output(
        &self,
        stage_id: StageId,
        from_seq: u64,
        max_chunks: usize,
    ) -> Result<Vec<(u64, Vec<OutputLine>)>, StoreError> {
        let mut chunks = Vec::new();
        for entry in self.output.range(output_key(stage_id, from_seq)..=output_key(stage_id, u64::MAX)).take(max_chunks)
        {
            let (key, bytes) = entry?;
            let seq = u64::from_be_bytes(key[8..16].try_into().unwrap_or([0; 8]));
            chunks.push((seq, decode("output", &bytes)?));
        }
        Ok(chunks)
    }

    /// The last `n` output lines of a stage (for failure reports), read from the end.
    pub fn output_tail(&self, stage_id: StageId, n: usize) -> Result<Vec<OutputLine>, StoreError> {
        let mut tail: Vec<OutputLine> = Vec::new();
        for entry in self.output.range(output_key(stage_id, 0)..=output_key(stage_id, u64::MAX)).rev() {
            let (_, bytes) = entry?;
            let mut lines: Vec<OutputLine> = decode("output", &bytes)?;
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

    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }
}
