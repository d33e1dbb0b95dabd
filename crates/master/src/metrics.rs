//! The master's own measurements for monitoring (`GET /metrics`): atomic counters, read
//! without a lock.
//!
//! Stage durations are observed once per session, when it ends, from its final record: every
//! run on a slave that started and ended, by stage kind. So the histogram covers the runs of
//! sessions ended since the master started; a scrape while a session ends may see some of
//! its runs counted and not the others yet (each run is added on its own).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::SessionRecord;

/// The stage kinds, in the order they run (`Stage::kind`).
pub const STAGE_KINDS: [&str; 5] = ["suite_init", "case_init", "case_run", "case_finalize", "suite_finalize"];

/// Upper bounds (seconds) of the stage-duration buckets, from a quick init to an hours-long
/// soak; `+Inf` follows.
pub const DURATION_BUCKETS: [f64; 13] =
    [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

/// One histogram: a count per bucket (not cumulative; the last one past every bound) and the
/// sum in milliseconds.
struct Histogram {
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_ms: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram { buckets: std::array::from_fn(|_| AtomicU64::new(0)), sum_ms: AtomicU64::new(0) }
    }
}

impl Histogram {
    fn observe(&self, ms: u64) {
        let seconds = ms as f64 / 1000.0;
        let index = DURATION_BUCKETS.iter().position(|&bound| seconds <= bound).unwrap_or(DURATION_BUCKETS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(DURATION_BUCKETS.len());
        for (bound, count) in DURATION_BUCKETS.iter().zip(&self.buckets) {
            cumulative += count.load(Ordering::Relaxed);
            buckets.push((*bound, cumulative));
        }
        let count = cumulative + self.buckets[DURATION_BUCKETS.len()].load(Ordering::Relaxed);
        HistogramSnapshot { buckets, count, sum_seconds: self.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0 }
    }
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations at or below it)`, cumulative, without `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
    pub sum_seconds: f64,
}

/// The master's measurements.
#[derive(Default)]
pub struct MasterMetrics {
    stage_durations: [Histogram; STAGE_KINDS.len()],
}

impl MasterMetrics {
    /// Observes the runs of a session that has ended.
    pub fn session_ended(&self, record: &SessionRecord) {
        for stage in &record.stages {
            let Some(kind) = STAGE_KINDS.iter().position(|k| *k == stage.stage.kind()) else { continue };
            for run in &stage.runs {
                if let (Some(started), Some(ended)) = (run.started_ms, run.ended_ms) {
                    self.stage_durations[kind].observe(ended.saturating_sub(started));
                }
            }
        }
    }

    /// The stage-duration histogram of each kind, in [`STAGE_KINDS`] order.
    pub fn stage_durations(&self) -> Vec<(&'static str, HistogramSnapshot)> {
        STAGE_KINDS.iter().zip(&self.stage_durations).map(|(kind, h)| (*kind, h.snapshot())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Stage, StageRecord, StageRun, Trigger};

    fn run(started: Option<u64>, ended: Option<u64>) -> StageRun {
        StageRun { started_ms: started, ended_ms: ended, ..StageRun::pending("a1") }
    }

    fn stage(stage: Stage, runs: Vec<StageRun>) -> StageRecord {
        StageRecord { stage, timeout_ms: 1000, skipped: None, runs, repetition: 1, attempt: 1 }
    }

    #[test]
    fn runs_are_observed_by_kind_into_cumulative_buckets() {
        let metrics = MasterMetrics::default();
        let mut record = SessionRecord::queued(1, "ts", Trigger::Api, vec!["a1".into(), "a2".into()], 0);
        record.stages = vec![
            stage(Stage::SuiteInit, vec![run(Some(0), Some(100)), run(Some(0), Some(700))]),
            stage(Stage::CaseRun { case: "c".into() }, vec![run(Some(1000), Some(8_000_000)), run(Some(5), None)]),
            // Skipped: never started.
            stage(Stage::CaseFinalize { case: "c".into() }, vec![run(None, None)]),
        ];
        metrics.session_ended(&record);
        let all = metrics.stage_durations();
        assert_eq!(all.iter().map(|(k, _)| *k).collect::<Vec<_>>(), STAGE_KINDS);
        let init = &all[0].1;
        assert_eq!(init.count, 2);
        assert_eq!(init.buckets[0], (0.1, 1), "100 ms is at the 0.1 s bound");
        assert_eq!(init.buckets[1], (0.5, 1));
        assert_eq!(init.buckets[2], (1.0, 2));
        assert_eq!(init.buckets.last(), Some(&(3600.0, 2)));
        assert!((init.sum_seconds - 0.8).abs() < 1e-9);
        let case_run = &all[2].1;
        assert_eq!((case_run.count, case_run.buckets.last().map(|b| b.1)), (1, Some(0)), "7999 s is past every bound");
        assert_eq!(all[3].1.count, 0, "a run that never started is not observed");
        metrics.session_ended(&record);
        assert_eq!(metrics.stage_durations()[0].1.count, 4);
    }
}
