//! The master's judgement of what a stage run reported: the checks that a case's
//! `[results.NAME]` thresholds add (docs/results.md, "Thresholds"), and the baselines of
//! `regress_pct` read from the suite's earlier passing sessions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use xrdtest_defs::thresholds::MAX_BASELINE;
use xrdtest_defs::{Better, Suite, Threshold};

use crate::model::{Check, CheckSource, ResultValue, RunState, SessionId, SessionState, StageValues};
use crate::store::{Store, StoreError};

/// How many of the suite's newest sessions are looked at for baselines: more than any
/// baseline needs (at most 100 passing sessions), allowing for failed ones in between.
const SESSIONS_SCANNED: usize = 300;

/// Adds one check per threshold whose result `values` holds.
pub fn apply(
    thresholds: &BTreeMap<String, Threshold>,
    values: &mut StageValues,
    mut baseline: impl FnMut(&str) -> Vec<f64>,
) {
    for (name, threshold) in thresholds {
        let Some(result) = values.result(name).cloned() else { continue };
        let check = judge(name, threshold, &result, &baseline(name));
        // Past the entry cap too: a threshold's verdict is never dropped.
        values.force_check(check);
    }
}

/// The check of `result` against `threshold`; `history` holds the result's values in the
/// last passing sessions, newest first.
pub fn judge(name: &str, threshold: &Threshold, result: &ResultValue, history: &[f64]) -> Check {
    let value = result.value;
    let unit = |n: f64| match result.unit.is_empty() {
        true => number(n),
        false => format!("{} {}", number(n), result.unit),
    };
    let mut passed = true;
    let mut parts = Vec::new();
    if let Some(max) = threshold.max {
        let over = value > max;
        passed &= !over;
        parts.push(format!("{} max {}", if over { "above" } else { "within" }, unit(max)));
    }
    if let Some(min) = threshold.min {
        let under = value < min;
        passed &= !under;
        parts.push(format!("{} min {}", if under { "below" } else { "within" }, unit(min)));
    }
    if let Some(pct) = threshold.regress_pct {
        let count = (threshold.baseline as usize).min(history.len());
        match median(&history[..count]) {
            None => parts.push("no baseline yet (no earlier passing session reported it)".into()),
            Some(0.0) => parts.push(format!("the median of the last {count} passing sessions is 0: no percentage")),
            Some(median) => {
                let change = (value - median) / median.abs() * 100.0;
                let worse = match threshold.better {
                    Better::Lower => change > pct,
                    Better::Higher => -change > pct,
                    Better::Either => change.abs() > pct,
                };
                passed &= !worse;
                let direction = if change >= 0.0 { "above" } else { "below" };
                let baseline = match count {
                    1 => format!("the value {} of the last passing session", unit(median)),
                    _ => format!("the median {} of the last {count} passing sessions", unit(median)),
                };
                parts.push(format!("{:.1}% {direction} {baseline} (regress_pct {})", change.abs(), number(pct)));
            }
        }
    }
    Check {
        name: format!("results.{name}"),
        passed,
        message: format!("{name} = {}: {}", unit(value), parts.join("; ")),
        source: CheckSource::Threshold,
    }
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(match sorted.len() % 2 {
        1 => sorted[middle],
        _ => (sorted[middle - 1] + sorted[middle]) / 2.0,
    })
}

/// A number as people write it: `100`, `12.5`, `0.0012`; at most 4 decimals.
fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        return format!("{n:.0}");
    }
    let text = format!("{n:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// What a baseline is looked up by: case instance, slave, result name.
type Key = (String, String, String);

/// The values earlier passing sessions of a suite reported, for the results that have a
/// `regress_pct`. Read from the store once per session, on a blocking thread started with
/// the session (reading a few hundred records takes tens of milliseconds: not on the async
/// threads), so that it is usually done before the first case reports anything.
pub struct Baselines {
    /// Result names with a `regress_pct`, by test case.
    wanted: BTreeMap<String, BTreeSet<String>>,
    state: Loading,
}

enum Loading {
    Nothing,
    Running(tokio::task::JoinHandle<HashMap<Key, Vec<f64>>>),
    /// Newest first.
    Done(HashMap<Key, Vec<f64>>),
}

impl Baselines {
    /// Starts reading the baselines of session `session` of `suite`, if any of its cases has
    /// a `regress_pct`.
    pub fn start(store: &Store, suite: &Suite, session: SessionId) -> Baselines {
        let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for case in &suite.tests {
            for (name, threshold) in &case.results {
                if threshold.regress_pct.is_some() {
                    wanted.entry(case.name.clone()).or_default().insert(name.clone());
                }
            }
        }
        if wanted.is_empty() {
            return Baselines { wanted, state: Loading::Nothing };
        }
        let needed = suite
            .tests
            .iter()
            .flat_map(|case| case.results.values())
            .filter(|threshold| threshold.regress_pct.is_some())
            .map(|threshold| threshold.baseline as usize)
            .max()
            .unwrap_or(1);
        let (store, suite_name, names) = (store.clone(), suite.name.clone(), wanted.clone());
        let task = tokio::task::spawn_blocking(move || {
            load(&store, &suite_name, session, &names, needed).unwrap_or_else(|err| {
                tracing::warn!(error = %err, "cannot read baselines; regress_pct checks have none");
                HashMap::new()
            })
        });
        Baselines { wanted, state: Loading::Running(task) }
    }

    /// Waits for the read to end, if it still runs.
    pub async fn ready(&mut self) {
        if let Loading::Running(task) = &mut self.state {
            let loaded = task.await.unwrap_or_else(|err| {
                tracing::warn!(error = %err, "reading baselines failed; regress_pct checks have none");
                HashMap::new()
            });
            self.state = Loading::Done(loaded);
        }
    }

    /// The values of `result` reported by `instance` (of test case `case`) on `slave`,
    /// newest session first; empty without a `regress_pct` for it or before [`Self::ready`].
    pub fn history(&self, case: &str, instance: &str, slave: &str, result: &str) -> Vec<f64> {
        if !self.wanted.get(case).is_some_and(|names| names.contains(result)) {
            return Vec::new();
        }
        let Loading::Done(loaded) = &self.state else { return Vec::new() };
        let key = (instance.to_string(), slave.to_string(), result.to_string());
        loaded.get(&key).cloned().unwrap_or_default()
    }
}

/// The values of the results in `wanted` (by test case) in the passing sessions of `suite`
/// before `before`, newest session first; within a session, its last report of each. Reads
/// one record at a time, newest first, and stops once `needed` passing sessions are read and
/// every value seen has `needed` sessions of history (or at [`MAX_BASELINE`] passing
/// sessions, or [`SESSIONS_SCANNED`] sessions in all).
fn load(
    store: &Store,
    suite: &str,
    before: SessionId,
    wanted: &BTreeMap<String, BTreeSet<String>>,
    needed: usize,
) -> Result<HashMap<Key, Vec<f64>>, StoreError> {
    let mut history: HashMap<Key, Vec<f64>> = HashMap::new();
    let mut passing = 0usize;
    for summary in store.suite_recent(suite, SESSIONS_SCANNED)? {
        if summary.id >= before || summary.state != SessionState::Passed {
            continue;
        }
        let Some(record) = store.session(summary.id)? else { continue };
        let mut this_session: HashMap<Key, f64> = HashMap::new();
        for stage in &record.stages {
            let Some(instance) = stage.stage.case() else { continue };
            let Some(case) = record.cases.iter().find(|c| c.name == instance).map(|c| c.case.as_str()) else {
                continue;
            };
            let Some(names) = wanted.get(case) else { continue };
            for run in stage.runs.iter().filter(|run| run.state == RunState::Passed && run.stage_id != 0) {
                let values = store.values(run.stage_id)?;
                for result in values.results.iter().filter(|r| names.contains(&r.name)) {
                    // Later stages of the session come later: the last report wins.
                    this_session.insert((instance.to_string(), run.slave.clone(), result.name.clone()), result.value);
                }
            }
        }
        for (key, value) in this_session {
            history.entry(key).or_default().push(value);
        }
        passing += 1;
        let enough = passing >= needed && history.values().all(|values| values.len() >= needed);
        if enough || passing >= MAX_BASELINE as usize {
            break;
        }
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threshold(min: Option<f64>, max: Option<f64>, regress_pct: Option<f64>, better: Better) -> Threshold {
        Threshold { min, max, regress_pct, baseline: 3, better }
    }

    fn value(v: f64, unit: &str) -> ResultValue {
        ResultValue { name: "latency".into(), value: v, unit: unit.into() }
    }

    #[test]
    fn bounds_pass_and_fail_with_the_figures() {
        let t = threshold(Some(1.0), Some(100.0), None, Better::Lower);
        let check = judge("latency", &t, &value(153.0, "ms"), &[]);
        assert!(!check.passed);
        assert_eq!(check.name, "results.latency");
        assert_eq!(check.source, CheckSource::Threshold);
        assert_eq!(check.message, "latency = 153 ms: above max 100 ms; within min 1 ms");
        let check = judge("latency", &t, &value(0.5, "ms"), &[]);
        assert_eq!(
            (check.passed, check.message.as_str()),
            (false, "latency = 0.5 ms: within max 100 ms; below min 1 ms")
        );
        assert!(judge("latency", &t, &value(12.25, ""), &[]).passed);
    }

    #[test]
    fn regressions_follow_the_better_direction_over_the_median() {
        let lower = threshold(None, None, Some(10.0), Better::Lower);
        // Median of the newest 3: 100, 110, 90 → 100; the 4th value is not part of it.
        let history = [100.0, 110.0, 90.0, 5000.0];
        let check = judge("latency", &lower, &value(115.0, "ms"), &history);
        assert!(!check.passed);
        assert_eq!(
            check.message,
            "latency = 115 ms: 15.0% above the median 100 ms of the last 3 passing sessions (regress_pct 10)"
        );
        assert!(judge("latency", &lower, &value(50.0, "ms"), &history).passed);
        let higher = threshold(None, None, Some(10.0), Better::Higher);
        assert!(judge("latency", &higher, &value(115.0, "ms"), &history).passed);
        assert!(!judge("latency", &higher, &value(85.0, "ms"), &history).passed);
        let either = threshold(None, None, Some(10.0), Better::Either);
        assert!(!judge("latency", &either, &value(85.0, "ms"), &history).passed);
        assert!(!judge("latency", &either, &value(115.0, "ms"), &history).passed);
        assert!(judge("latency", &either, &value(105.0, "ms"), &history).passed);
        let one = judge("latency", &lower, &value(115.0, "ms"), &[100.0]);
        assert!(one.message.contains("15.0% above the value 100 ms of the last passing session"), "{}", one.message);
    }

    #[test]
    fn without_a_baseline_the_check_passes_and_says_so() {
        let t = threshold(None, None, Some(10.0), Better::Lower);
        let check = judge("latency", &t, &value(1e6, ""), &[]);
        assert!(check.passed);
        assert!(check.message.contains("no baseline yet"), "{}", check.message);
        let zero = judge("latency", &t, &value(3.0, ""), &[0.0, 0.0]);
        assert!(zero.passed && zero.message.contains("is 0"), "{}", zero.message);
    }

    #[test]
    fn apply_adds_checks_only_for_reported_results() {
        let mut thresholds = BTreeMap::new();
        thresholds.insert("latency".to_string(), threshold(None, Some(10.0), None, Better::Lower));
        thresholds.insert("missing".to_string(), threshold(None, Some(10.0), None, Better::Lower));
        let mut values = StageValues { results: vec![value(12.0, "ms")], checks: Vec::new() };
        apply(&thresholds, &mut values, |_| Vec::new());
        assert_eq!(values.checks.len(), 1);
        assert_eq!(
            values.failure_reason().unwrap(),
            "check `results.latency` failed: latency = 12 ms: above max 10 ms"
        );
    }

    #[test]
    fn a_threshold_check_is_added_past_the_entry_cap() {
        let mut thresholds = BTreeMap::new();
        thresholds.insert("latency".to_string(), threshold(None, Some(100.0), None, Better::Lower));
        let mut values = StageValues::default();
        for i in 0..crate::model::results::MAX_ENTRIES - 1 {
            values.put_result(ResultValue { name: format!("r{i}"), value: 1.0, unit: String::new() });
        }
        values.put_result(value(5000.0, "ms"));
        apply(&thresholds, &mut values, |_| Vec::new());
        assert!(values.failure_reason().is_some_and(|reason| reason.contains("above max 100 ms")));
    }

    /// A stored session of suite `ts` with one run of case `c` on slave `s1` reporting
    /// `latency` (none if `value` is None).
    fn stored(store: &Store, id: SessionId, state: SessionState, value: Option<f64>) {
        use crate::model::{CaseRecord, Stage, StageRecord, StageRun, Trigger};
        let mut record = crate::model::SessionRecord::queued(id, "ts", Trigger::Manual, vec!["s1".into()], 0);
        record.state = state;
        record.cases.push(CaseRecord::pending("c", "c", Vec::new(), 1));
        let mut run = StageRun::pending("s1");
        run.stage_id = id * 10;
        run.state = RunState::Passed;
        if let Some(value) = value {
            let values = StageValues { results: vec![self::value(value, "ms")], checks: Vec::new() };
            store.put_values(run.stage_id, &values).unwrap();
        }
        let stage = Stage::CaseRun { case: "c".into() };
        record.stages.push(StageRecord {
            stage,
            timeout_ms: 1,
            skipped: None,
            runs: vec![run],
            repetition: 1,
            attempt: 1,
        });
        store.put_session(&record).unwrap();
    }

    fn suite_with(dir: &std::path::Path, case_toml: &str) -> Suite {
        let tc = dir.join("ts/tc/c");
        std::fs::create_dir_all(&tc).unwrap();
        std::fs::write(tc.join("init.sh"), "true\n").unwrap();
        std::fs::write(tc.join("run.sh"), "true\n").unwrap();
        std::fs::write(tc.join("case.toml"), case_toml).unwrap();
        std::fs::write(
            dir.join("ts/suite.toml"),
            "name = \"ts\"\nmachines = [\"s1\"]\ntests = [\"c\"]\ninitialize = \"true\"\n",
        )
        .unwrap();
        xrdtest_defs::suite::load_suite(&dir.join("ts")).unwrap()
    }

    #[tokio::test]
    async fn baselines_are_the_newest_passing_sessions_before_this_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let suite = suite_with(dir.path(), "[results.latency]\nregress_pct = 10\nbaseline = 2\n");
        stored(&store, 1, SessionState::Passed, Some(1.0));
        stored(&store, 2, SessionState::Passed, Some(2.0));
        stored(&store, 3, SessionState::Failed, Some(300.0));
        stored(&store, 4, SessionState::Passed, None);
        stored(&store, 5, SessionState::Passed, Some(5.0));
        stored(&store, 6, SessionState::Passed, Some(6.0));
        // Session 6 is the one running: 5, then the passing ones before, newest first, never
        // the failed one; reading stops once 2 sessions of history are there.
        let mut baselines = Baselines::start(&store, &suite, 6);
        baselines.ready().await;
        assert_eq!(baselines.history("c", "c", "s1", "latency"), [5.0, 2.0]);
        assert!(baselines.history("c", "c", "s2", "latency").is_empty());
        assert!(baselines.history("c", "c", "s1", "other").is_empty(), "no regress_pct for it");

        let plain = suite_with(dir.path(), "[results.latency]\nmax = 10\n");
        let mut none = Baselines::start(&store, &plain, 7);
        none.ready().await;
        assert!(none.history("c", "c", "s1", "latency").is_empty(), "nothing read without a regress_pct");
    }

    #[test]
    fn numbers_read_as_written() {
        assert_eq!(number(100.0), "100");
        assert_eq!(number(12.5), "12.5");
        assert_eq!(number(1.0 / 3.0), "0.3333");
        assert_eq!(number(-2.0), "-2");
    }
}
