//! Starts sessions at the times of each suite's cron schedule.
//!
//! - Times are the master's local time (as XrdTest's scheduler used).
//! - A suite whose previous session is still queued or running at its next time is skipped
//!   for that time, and the skip is logged and counted.
//! - Runs missed while the master was down are not replayed; the master logs them at start.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Local, TimeZone};
use serde::Serialize;
use tracing::{info, warn};

use crate::catalog::DefinitionsService;
use crate::model::{SessionId, SessionState, Trigger};
use crate::store::{SessionFilter, Store};

/// A woken scheduler fires every suite due within this margin, so timer jitter never makes
/// it sleep again for a run that is already due.
const DUE_MARGIN_MS: i64 = 20;

/// What the API shows about a suite's schedule.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScheduleStatus {
    pub expression: String,
    /// Unix ms of the next run, if the schedule has one.
    pub next_run_ms: Option<i64>,
    /// Runs skipped because the previous session was still queued or running.
    pub skipped_runs: u64,
    pub last_fired_ms: Option<i64>,
}

/// Shared view of every scheduled suite, kept by the scheduler task.
#[derive(Default)]
pub struct ScheduleBoard {
    suites: Mutex<BTreeMap<String, ScheduleStatus>>,
}

impl ScheduleBoard {
    pub fn snapshot(&self) -> BTreeMap<String, ScheduleStatus> {
        self.suites.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut BTreeMap<String, ScheduleStatus>)) {
        f(&mut self.suites.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// How the scheduler starts sessions: the session queue's two calls it needs, as plain
/// functions (so the scheduler knows nothing of the rest of the master).
pub struct Starter {
    /// The queued or running session of a suite, if there is one.
    pub unfinished_session_of: SuiteQuery<Option<SessionId>>,
    /// Creates and queues a scheduled session of a suite.
    pub submit: SuiteQuery<Result<SessionId, String>>,
}

/// A function of a suite's name.
pub type SuiteQuery<T> = Box<dyn Fn(&str) -> T + Send + Sync>;

/// Runs until the master stops: fires each suite at its times.
pub async fn run(defs: Arc<DefinitionsService>, store: Store, board: Arc<ScheduleBoard>, starter: Starter) {
    let board = &*board;
    log_missed_runs(&defs, &store);
    let mut changes = defs.watch();
    loop {
        let now = Local::now();
        let definitions = defs.snapshot();
        let mut next: Vec<(DateTime<Local>, String)> = Vec::new();
        let mut statuses = BTreeMap::new();
        for suite in definitions.repository.suites.values() {
            let Some(schedule) = &suite.schedule else { continue };
            let next_run = schedule.next_after(&now);
            if let Some(at) = next_run {
                next.push((at, suite.name.clone()));
            }
            statuses.insert(suite.name.clone(), (schedule.expression.clone(), next_run.map(|t| t.timestamp_millis())));
        }
        // Keep the counters of suites still scheduled; forget the ones that are gone.
        board.update(|suites| {
            suites.retain(|name, _| statuses.contains_key(name));
            for (name, (expression, next_run_ms)) in statuses {
                let status = suites.entry(name).or_default();
                status.expression = expression;
                status.next_run_ms = next_run_ms;
            }
        });
        let Some(earliest) = next.iter().map(|(at, _)| *at).min() else {
            // Nothing scheduled: wait for the definitions to change.
            if changes.changed().await.is_err() {
                return;
            }
            continue;
        };
        let wait = (earliest - Local::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {
                let now = Local::now();
                for (at, suite) in next.iter().filter(|(at, _)| (*at - now).num_milliseconds() <= DUE_MARGIN_MS) {
                    fire(&starter, board, suite, *at);
                }
                // Never compute the next time from before the one just fired.
                let fired_until = next.iter().map(|(at, _)| *at).filter(|at| (*at - now).num_milliseconds() <= DUE_MARGIN_MS).max();
                if let Some(until) = fired_until {
                    let remaining = (until - Local::now()).to_std().unwrap_or_default();
                    tokio::time::sleep(remaining + std::time::Duration::from_millis(1)).await;
                }
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

fn fire(starter: &Starter, board: &ScheduleBoard, suite: &str, at: DateTime<Local>) {
    board.update(|suites| {
        if let Some(status) = suites.get_mut(suite) {
            status.last_fired_ms = Some(at.timestamp_millis());
        }
    });
    if let Some(previous) = (starter.unfinished_session_of)(suite) {
        board.update(|suites| {
            if let Some(status) = suites.get_mut(suite) {
                status.skipped_runs += 1;
            }
        });
        warn!(suite, previous_session = previous, at = %at, "scheduled run skipped: the previous session is still queued or running");
        return;
    }
    match (starter.submit)(suite) {
        Ok(id) => info!(suite, session = id, at = %at, "scheduled session started"),
        Err(err) => warn!(suite, error = %err, "scheduled session could not be created"),
    }
}

/// Logs, per scheduled suite, how many runs fell between its last scheduled session and
/// now: the master was down then, and they are not replayed.
fn log_missed_runs(defs: &DefinitionsService, store: &Store) {
    let now = Local::now();
    for suite in defs.snapshot().repository.suites.values() {
        let Some(schedule) = &suite.schedule else { continue };
        let filter = SessionFilter { suite: Some(suite.name.clone()), state: None };
        let Ok((_, sessions)) = store.list(&filter, 0, 50) else { continue };
        let Some(last) = sessions.iter().find(|s| s.trigger == Trigger::Schedule && s.state != SessionState::Queued)
        else {
            continue;
        };
        let Some(mut at) = Local.timestamp_millis_opt(last.created_ms as i64).single() else { continue };
        let mut missed = 0u32;
        while let Some(next) = schedule.next_after(&at) {
            if next >= now || missed >= 10_000 {
                break;
            }
            missed += 1;
            at = next;
        }
        if missed > 0 {
            warn!(suite = %suite.name, missed, "scheduled runs missed while the master was down; they are not replayed");
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use xrdtest_defs::Schedule;

    #[test]
    fn next_run_crosses_month_and_year_boundaries() {
        let every_month_first = Schedule::parse("0 0 0 1 * *").unwrap();
        let end_of_january = Utc.with_ymd_and_hms(2027, 1, 31, 23, 59, 59).unwrap();
        assert_eq!(
            every_month_first.next_after(&end_of_january),
            Some(Utc.with_ymd_and_hms(2027, 2, 1, 0, 0, 0).unwrap())
        );
        let new_year = Schedule::parse("30 0 0 1 1 *").unwrap();
        let december = Utc.with_ymd_and_hms(2026, 12, 31, 12, 0, 0).unwrap();
        assert_eq!(new_year.next_after(&december), Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 30).unwrap()));
        let leap_day = Schedule::parse("0 0 12 29 2 *").unwrap();
        let after_2024 = Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap();
        assert_eq!(leap_day.next_after(&after_2024), Some(Utc.with_ymd_and_hms(2028, 2, 29, 12, 0, 0).unwrap()));
        let every_second = Schedule::parse("* * * * * *").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
        assert_eq!(every_second.next_after(&t), Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()));
    }
}
