//! How the master's store encodes what it keeps, and the version of that encoding.
//!
//! Values are bincode 2 through serde, standard configuration. bincode writes neither
//! field names nor variant names: a struct is its fields in order, an enum its variant's
//! position. So a field added, removed or moved, or a variant inserted anywhere but last,
//! changes what old bytes mean. Such a change needs a new [`SCHEMA_VERSION`], the old types
//! kept beside the new ones, and a migration in the store that rewrites old records. The
//! golden test `crates/model/tests/golden.rs` pins the bytes of every stored type, and the
//! [`state_code`]s, in `crates/model/tests/golden/schema{N}.txt`, and fails until that is
//! done; the note at its top says how to bump.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::SessionState;

/// The schema of stored records this build writes. A store without a version was written
/// before versions were kept, by the same encoding as version 1.
///
/// - 1: the first ([`crate::v1`] keeps its types);
/// - 2: case instances with their test case, matrix values, pass and attempts; stages with
///   their pass and attempt; the run options of a session; `CaseState::Flaky`; flaky
///   cases counted in summaries;
/// - 3: what stage runs reported ([`crate::results::StageValues`]) in tree `values`, by stage id.
///   Nothing older changed: the migration from 2 rewrites nothing.
/// - 4: the sync waits and faults of a session ([`crate::timeline::Timeline`]) in tree
///   `timelines`, by session id. The migration from 3 rewrites nothing.
/// - 5: what each slave ended at a session's end ([`crate::cleanup::SlaveCleanup`]) in tree
///   `cleanups`, by session id. The migration from 4 rewrites nothing.
/// - 6: the sessions marked `keep` (never pruned) in tree `kept`, by session id, with empty
///   values. The migration from 5 rewrites nothing.
pub const SCHEMA_VERSION: u32 = 6;

/// A value that could not be encoded or decoded, in bincode's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| CodecError(e.to_string()))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(value, _)| value)
        .map_err(|e| CodecError(e.to_string()))
}

/// The first byte of a key of the store's index of sessions by state. Not the variant's
/// position: `StartingCluster` was added after the index existed, with the next free code.
pub fn state_code(state: SessionState) -> u8 {
    match state {
        SessionState::Queued => 0,
        SessionState::WaitingSlaves => 1,
        SessionState::Running => 2,
        SessionState::Passed => 3,
        SessionState::Failed => 4,
        SessionState::Cancelled => 5,
        SessionState::Interrupted => 6,
        SessionState::StartingCluster => 7,
    }
}
