//! The input of every report: one session as the store has it.

use std::collections::BTreeMap;

use xrdtest_model::{OutputLine, SessionRecord, StageId, StageValues};

/// A session with the values its runs reported and the last output lines of its failed runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionData {
    pub record: SessionRecord,
    /// By stage id; runs that reported nothing are absent.
    pub values: BTreeMap<StageId, StageValues>,
    /// The last lines of output of each run that did not pass, by stage id (at most
    /// [`TAIL_LINES`] each); others are absent.
    pub tails: BTreeMap<StageId, Vec<OutputLine>>,
}

/// How many last output lines of a failed run a report shows.
pub const TAIL_LINES: usize = 50;
