//! The input of every report: one session as the store has it, and the views of it the
//! reports share (its case instances with their stages, failed runs, result columns).

use std::collections::{BTreeMap, BTreeSet};

use xrdtest_model::{CaseRecord, OutputLine, RunState, SessionRecord, StageId, StageRecord, StageRun, StageValues};

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

/// A stage run that did not pass (failed, timed out, lost, cancelled), with its stage.
#[derive(Debug, Clone, Copy)]
pub struct FailedRun<'a> {
    /// Its stage's place in `SessionRecord::stages`.
    pub index: usize,
    pub stage: &'a StageRecord,
    pub run: &'a StageRun,
}

impl FailedRun<'_> {
    /// `case_run:copy (attempt 2) on slave1: exit code 1`.
    pub fn describe(&self) -> String {
        format!("{} on {}: {}", self.stage.label(), self.run.slave, self.reason())
    }

    /// The run's reason, or its state when it has none.
    pub fn reason(&self) -> String {
        self.run.reason.clone().unwrap_or_else(|| self.run.state.as_str().to_string())
    }
}

/// Whether a run ended without passing by itself: failed, timed out, lost or cancelled.
/// Skipped runs were not run (the rules decided), pending and running ones have not ended.
pub fn run_failed(run: &StageRun) -> bool {
    matches!(run.state, RunState::Failed | RunState::TimedOut | RunState::Disconnected | RunState::Cancelled)
}

/// One case instance in one pass, with its stages of every attempt.
#[derive(Debug, Clone)]
pub struct Instance<'a> {
    pub case: &'a CaseRecord,
    /// Its stages in the record's order, with their place in `SessionRecord::stages`.
    pub stages: Vec<(usize, &'a StageRecord)>,
    /// The name reports give it: the instance's, with ` (pass N)` when the session made
    /// more than one pass.
    pub label: String,
}

impl<'a> Instance<'a> {
    /// The attempt that counts: the last one that has stages.
    pub fn last_attempt(&self) -> u32 {
        self.stages.iter().map(|(_, stage)| stage.attempt).max().unwrap_or(self.case.attempts.max(1))
    }

    /// The runs of `attempt` that did not pass.
    pub fn failed_runs(&self, attempt: u32) -> Vec<FailedRun<'a>> {
        self.stages
            .iter()
            .filter(|(_, stage)| stage.attempt == attempt)
            .flat_map(|&(index, stage)| {
                stage.runs.iter().filter(|run| run_failed(run)).map(move |run| FailedRun { index, stage, run })
            })
            .collect()
    }

    /// The attempts before the last one in which some run did not pass (a flaky
    /// instance's failures), in order.
    pub fn failed_attempts(&self) -> Vec<u32> {
        let last = self.last_attempt();
        let attempts: BTreeSet<u32> = self.stages.iter().map(|(_, stage)| stage.attempt).collect();
        attempts.into_iter().filter(|&a| a < last && !self.failed_runs(a).is_empty()).collect()
    }

    pub fn duration_ms(&self) -> Option<u64> {
        duration(self.case.started_ms, self.case.ended_ms)
    }
}

/// `end - start` when both are known.
pub fn duration(start: Option<u64>, end: Option<u64>) -> Option<u64> {
    Some(end?.saturating_sub(start?))
}

/// A result column of the CSV: a result name with its unit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResultColumn {
    pub name: String,
    pub unit: String,
}

impl ResultColumn {
    /// `result:latency_ms[ms]`, or `result:ops` without a unit.
    pub fn header(&self) -> String {
        match self.unit.is_empty() {
            true => format!("result:{}", self.name),
            false => format!("result:{}[{}]", self.name, self.unit),
        }
    }
}

impl SessionData {
    /// What a run reported, if it reported anything.
    pub fn values_of(&self, run: &StageRun) -> Option<&StageValues> {
        match run.stage_id {
            0 => None,
            id => self.values.get(&id),
        }
    }

    /// The last output lines of a run that did not pass (empty for others).
    pub fn tail_of(&self, run: &StageRun) -> &[OutputLine] {
        match run.stage_id {
            0 => &[],
            id => self.tails.get(&id).map(Vec::as_slice).unwrap_or(&[]),
        }
    }

    /// The number of passes over the case list.
    pub fn passes(&self) -> u32 {
        self.record.cases.iter().map(|case| case.repetition).max().unwrap_or(1)
    }

    /// Every case instance of every pass, in the record's order, with its stages.
    pub fn instances(&self) -> Vec<Instance<'_>> {
        let passes = self.passes();
        self.record
            .cases
            .iter()
            .map(|case| Instance {
                case,
                stages: self
                    .record
                    .stages
                    .iter()
                    .enumerate()
                    .filter(|(_, stage)| {
                        stage.stage.case() == Some(case.name.as_str()) && stage.repetition == case.repetition
                    })
                    .collect(),
                label: match passes > 1 {
                    true => format!("{} (pass {})", case.name, case.repetition),
                    false => case.name.clone(),
                },
            })
            .collect()
    }

    /// Suite init and suite finalize, with their place in the record.
    pub fn suite_stages(&self) -> Vec<(usize, &StageRecord)> {
        self.record.stages.iter().enumerate().filter(|(_, stage)| stage.stage.case().is_none()).collect()
    }

    /// The runs of suite stages that did not pass.
    pub fn failed_suite_runs(&self) -> Vec<FailedRun<'_>> {
        self.suite_stages()
            .into_iter()
            .flat_map(|(index, stage)| {
                stage.runs.iter().filter(|run| run_failed(run)).map(move |run| FailedRun { index, stage, run })
            })
            .collect()
    }

    /// Every (result name, unit) any run of the session reported, sorted.
    pub fn result_columns(&self) -> Vec<ResultColumn> {
        let columns: BTreeSet<ResultColumn> = self
            .values
            .values()
            .flat_map(|values| &values.results)
            .map(|result| ResultColumn { name: result.name.clone(), unit: result.unit.clone() })
            .collect();
        columns.into_iter().collect()
    }
}

impl Instance<'_> {
    /// Why the instance did not pass, in one line; `None` when it passed (or was flaky).
    /// A failure names each failed run of the attempt that counts; not run gives the
    /// session's reason (suite init failed, cancelled, exit-first).
    pub fn reason(&self, session_reason: Option<&str>) -> Option<String> {
        use xrdtest_model::CaseState;
        let with_session = |word: &str| match session_reason {
            Some(reason) => format!("{word}: {reason}"),
            None => word.to_string(),
        };
        match self.case.state {
            CaseState::Passed | CaseState::Flaky => None,
            CaseState::Failed => {
                let failed: Vec<String> =
                    self.failed_runs(self.last_attempt()).iter().map(FailedRun::describe).collect();
                Some(match failed.is_empty() {
                    true => with_session("failed"),
                    false => failed.join("; "),
                })
            }
            CaseState::NotRun => Some(with_session("not run")),
            CaseState::Pending => Some("not run yet: the session has not reached it".into()),
            CaseState::Running => Some("still running".into()),
        }
    }
}
