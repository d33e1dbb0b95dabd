//! Two sessions side by side: per case instance, the state change and the duration and
//! result deltas, regressions first.
//!
//! One pure function, [`compare`], whose answer the API serves (`GET /api/compare`), the
//! dashboard shows (`/compare`) and `xrdtest compare` prints. Which way a result is better
//! comes from the cases' `[results.NAME]` thresholds the caller passes (the definitions in
//! service): without one, a change is shown but never judged worse.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use xrdtest_defs::{Better, Threshold};
use xrdtest_model::{CaseRecord, CaseState, SessionId, SessionRecord, SessionState};

use crate::SessionData;

/// Thresholds by test case (its folder name, `CaseRecord::case`), then by result name: the
/// `TestCase::results` of the definitions in service.
pub type CaseThresholds = BTreeMap<String, BTreeMap<String, Threshold>>;

/// Session B against session A (A is the older one, usually).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub a: SessionSide,
    pub b: SessionSide,
    pub counts: Counts,
    /// Regressions first, then the instances whose results got worse, then the rest (still
    /// failing, fixed, new, gone, unfinished, unchanged). In the first two groups, instances
    /// with a result past its `regress_pct` first, then by the largest % worse; ties, and the
    /// other groups, in B's order.
    pub cases: Vec<CaseComparison>,
}

/// What a comparison says of each session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSide {
    pub id: SessionId,
    pub suite: String,
    pub state: SessionState,
    /// The state, or `flaky` for a passed session with flaky cases.
    pub verdict: String,
    pub created_ms: u64,
    pub started_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    pub commit: Option<String>,
    pub definition_hash: String,
}

impl SessionSide {
    fn of(record: &SessionRecord) -> SessionSide {
        SessionSide {
            id: record.id,
            suite: record.suite.clone(),
            state: record.state,
            verdict: record.verdict().to_string(),
            created_ms: record.created_ms,
            started_ms: record.started_ms,
            ended_ms: record.ended_ms,
            commit: record.commit.clone(),
            definition_hash: record.definition_hash.clone(),
        }
    }
}

/// How many case instances changed in each way, and how many results got worse.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub regressions: usize,
    pub fixed: usize,
    pub still_failing: usize,
    pub new: usize,
    pub gone: usize,
    pub unfinished: usize,
    pub unchanged: usize,
    /// (result, slave) pairs worse in B than in A, by their threshold's `better`.
    pub worse_results: usize,
}

/// How a case instance's outcome went from A to B. Passed and flaky count as passing;
/// failed and not run as failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Passing in A, failing in B.
    Regression,
    /// Failing in A, passing in B.
    Fixed,
    StillFailing,
    /// Only in B.
    New,
    /// Only in A.
    Gone,
    /// Pending or running in either: not judged yet.
    Unfinished,
    /// Passing in both.
    Unchanged,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Regression => "regression",
            Change::Fixed => "fixed",
            Change::StillFailing => "still_failing",
            Change::New => "new",
            Change::Gone => "gone",
            Change::Unfinished => "unfinished",
            Change::Unchanged => "unchanged",
        }
    }

    /// Its words for people: `passed → failed` is a `regression`, and so on.
    pub fn label(self) -> &'static str {
        match self {
            Change::StillFailing => "still failing",
            other => other.as_str(),
        }
    }

    /// Place among the cases that neither regressed nor got worse.
    fn rank(self) -> u8 {
        match self {
            Change::Regression => 0,
            Change::StillFailing => 1,
            Change::Fixed => 2,
            Change::New => 3,
            Change::Gone => 4,
            Change::Unfinished => 5,
            Change::Unchanged => 6,
        }
    }

    fn of(a: Option<CaseState>, b: Option<CaseState>) -> Change {
        match (a.map(passing), b.map(passing)) {
            (None, _) => Change::New,
            (_, None) => Change::Gone,
            (Some(Some(true)), Some(Some(false))) => Change::Regression,
            (Some(Some(false)), Some(Some(true))) => Change::Fixed,
            (Some(Some(false)), Some(Some(false))) => Change::StillFailing,
            (Some(Some(true)), Some(Some(true))) => Change::Unchanged,
            _ => Change::Unfinished,
        }
    }
}

/// Passing (`Some(true)`), failing (`Some(false)`) or not ended (`None`).
fn passing(state: CaseState) -> Option<bool> {
    match state {
        CaseState::Passed | CaseState::Flaky => Some(true),
        CaseState::Failed | CaseState::NotRun => Some(false),
        CaseState::Pending | CaseState::Running => None,
    }
}

/// One case instance in one pass, in A and in B.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseComparison {
    /// The instance's name (`copy[size=64]`).
    pub instance: String,
    /// Its test case (folder).
    pub case: String,
    /// Which pass over the case list (1 unless repeated).
    pub pass: u32,
    pub state_a: Option<CaseState>,
    pub state_b: Option<CaseState>,
    pub change: Change,
    /// From its start to its end, when it ran to an end.
    pub duration_a_ms: Option<u64>,
    pub duration_b_ms: Option<u64>,
    /// B − A.
    pub duration_delta_ms: Option<i64>,
    /// B − A in % of A; `None` when A is 0 or missing.
    pub duration_delta_pct: Option<f64>,
    /// Per (result, slave): worse ones first, then by name and slave.
    pub results: Vec<ResultComparison>,
}

impl CaseComparison {
    /// The largest % by which one of its results got worse (infinite for a result worse
    /// than an A of 0), if any did.
    pub fn worst_pct(&self) -> Option<f64> {
        self.results.iter().filter(|r| r.worse).map(ResultComparison::worse_by).reduce(f64::max)
    }

    /// Whether a result got worse by more than its threshold's `regress_pct`.
    pub fn past_regress_pct(&self) -> bool {
        self.results.iter().any(|r| r.past_regress_pct)
    }
}

/// One result of one case instance on one slave, in A and in B.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultComparison {
    pub name: String,
    pub slave: String,
    /// B's unit, or A's when B has none.
    pub unit: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// B − A.
    pub delta: Option<f64>,
    /// B − A in % of |A|; `None` when A is 0 or missing.
    pub delta_pct: Option<f64>,
    /// Which way is better, from the case's threshold; `None`: none, so never `worse`.
    pub better: Option<Better>,
    /// B is worse than A in the threshold's direction (`either`: any change).
    pub worse: bool,
    /// Worse by more than the threshold's `regress_pct`.
    pub past_regress_pct: bool,
}

impl ResultComparison {
    /// How much worse, in %, for ordering: infinite when A is 0.
    fn worse_by(&self) -> f64 {
        self.delta_pct.map(f64::abs).unwrap_or(f64::INFINITY)
    }
}

/// A value a run reported: the number and its unit.
type Reported = (f64, String);
/// Per (instance, pass): the last value of each (result, slave).
type ReportedByInstance<'a> = HashMap<(&'a str, u32), BTreeMap<(String, String), Reported>>;

/// The last value each (result, slave) reported in the stages of each (instance, pass):
/// init, run and finalize of every attempt, the latest one counting.
fn reported(data: &SessionData) -> ReportedByInstance<'_> {
    let mut all = ReportedByInstance::new();
    for stage in &data.record.stages {
        let Some(instance) = stage.stage.case() else { continue };
        for run in &stage.runs {
            let Some(values) = data.values.get(&run.stage_id).filter(|_| run.stage_id != 0) else { continue };
            let slot = all.entry((instance, stage.repetition)).or_default();
            for result in &values.results {
                slot.insert((result.name.clone(), run.slave.clone()), (result.value, result.unit.clone()));
            }
        }
    }
    all
}

/// From start to end, for a case that ran to an end.
fn duration(case: &CaseRecord) -> Option<u64> {
    match (case.state, case.started_ms, case.ended_ms) {
        (CaseState::Passed | CaseState::Failed | CaseState::Flaky, Some(start), Some(end)) => {
            Some(end.saturating_sub(start))
        }
        _ => None,
    }
}

/// `delta` in % of `base`; `None` for a base of 0.
fn percent(delta: f64, base: f64) -> Option<f64> {
    (base != 0.0).then(|| delta / base.abs() * 100.0).filter(|pct| pct.is_finite())
}

fn compare_result(
    (name, slave): (String, String),
    a: Option<&Reported>,
    b: Option<&Reported>,
    threshold: Option<&Threshold>,
) -> ResultComparison {
    let unit = b.or(a).map(|(_, unit)| unit.clone()).unwrap_or_default();
    let (a, b) = (a.map(|r| r.0), b.map(|r| r.0));
    let delta = a.zip(b).map(|(a, b)| b - a).filter(|d| d.is_finite());
    let delta_pct = a.zip(delta).and_then(|(a, delta)| percent(delta, a));
    let better = threshold.map(|t| t.better);
    let worse = match (better, delta) {
        (Some(Better::Lower), Some(delta)) => delta > 0.0,
        (Some(Better::Higher), Some(delta)) => delta < 0.0,
        (Some(Better::Either), Some(delta)) => delta != 0.0,
        _ => false,
    };
    let past_regress_pct = worse
        && threshold
            .and_then(|t| t.regress_pct)
            .is_some_and(|limit| delta_pct.map(f64::abs).unwrap_or(f64::INFINITY) > limit);
    ResultComparison { name, slave, unit, a, b, delta, delta_pct, better, worse, past_regress_pct }
}

/// Compares session B with session A, judging results by `thresholds` (none: no result is
/// worse, changes are still shown).
pub fn compare(a: &SessionData, b: &SessionData, thresholds: Option<&CaseThresholds>) -> Comparison {
    let values_a = reported(a);
    let values_b = reported(b);
    let cases_a: HashMap<(&str, u32), &CaseRecord> =
        a.record.cases.iter().map(|c| ((c.name.as_str(), c.repetition), c)).collect();
    // B's instances in its order, then those only A has, in A's order.
    let mut keys: Vec<(&CaseRecord, Option<&CaseRecord>, Option<&CaseRecord>)> = Vec::new();
    for case in &b.record.cases {
        keys.push((case, cases_a.get(&(case.name.as_str(), case.repetition)).copied(), Some(case)));
    }
    let in_b: std::collections::HashSet<(&str, u32)> =
        b.record.cases.iter().map(|c| (c.name.as_str(), c.repetition)).collect();
    for case in &a.record.cases {
        if !in_b.contains(&(case.name.as_str(), case.repetition)) {
            keys.push((case, Some(case), None));
        }
    }

    let empty = BTreeMap::new();
    let mut cases: Vec<CaseComparison> = keys
        .into_iter()
        .map(|(case, in_a, in_b)| {
            let key = (case.name.as_str(), case.repetition);
            let reported_a = values_a.get(&key).unwrap_or(&empty);
            let reported_b = values_b.get(&key).unwrap_or(&empty);
            let case_thresholds = thresholds.and_then(|t| t.get(&case.case));
            let mut names: Vec<&(String, String)> = reported_a.keys().chain(reported_b.keys()).collect();
            names.sort();
            names.dedup();
            let mut results: Vec<ResultComparison> = names
                .into_iter()
                .map(|pair| {
                    let threshold = case_thresholds.and_then(|t| t.get(&pair.0));
                    compare_result(pair.clone(), reported_a.get(pair), reported_b.get(pair), threshold)
                })
                .collect();
            // Worse ones first, most first; the rest keep name and slave order (stable sort).
            results.sort_by(|x, y| {
                y.worse.cmp(&x.worse).then(y.past_regress_pct.cmp(&x.past_regress_pct)).then(if x.worse {
                    y.worse_by().total_cmp(&x.worse_by())
                } else {
                    std::cmp::Ordering::Equal
                })
            });
            let duration_a_ms = in_a.and_then(duration);
            let duration_b_ms = in_b.and_then(duration);
            let duration_delta_ms = duration_a_ms.zip(duration_b_ms).map(|(a, b)| b as i64 - a as i64);
            CaseComparison {
                instance: case.name.clone(),
                case: case.case.clone(),
                pass: case.repetition,
                state_a: in_a.map(|c| c.state),
                state_b: in_b.map(|c| c.state),
                change: Change::of(in_a.map(|c| c.state), in_b.map(|c| c.state)),
                duration_a_ms,
                duration_b_ms,
                duration_delta_ms,
                duration_delta_pct: duration_a_ms
                    .zip(duration_delta_ms)
                    .and_then(|(a, delta)| percent(delta as f64, a as f64)),
                results,
            }
        })
        .collect();
    order(&mut cases);

    let mut counts = Counts::default();
    for case in &cases {
        *match case.change {
            Change::Regression => &mut counts.regressions,
            Change::Fixed => &mut counts.fixed,
            Change::StillFailing => &mut counts.still_failing,
            Change::New => &mut counts.new,
            Change::Gone => &mut counts.gone,
            Change::Unfinished => &mut counts.unfinished,
            Change::Unchanged => &mut counts.unchanged,
        } += 1;
        counts.worse_results += case.results.iter().filter(|r| r.worse).count();
    }
    Comparison { a: SessionSide::of(&a.record), b: SessionSide::of(&b.record), counts, cases }
}

/// Regressions, then worse results, then the rest by kind of change; in each of the first
/// two, past `regress_pct` first, then the largest % worse. A stable sort: ties keep B's order.
fn order(cases: &mut [CaseComparison]) {
    let group = |case: &CaseComparison| match (case.change, case.worst_pct()) {
        (Change::Regression, _) => 0,
        (_, Some(_)) => 1,
        _ => 2,
    };
    cases.sort_by(|x, y| {
        group(x)
            .cmp(&group(y))
            .then(y.past_regress_pct().cmp(&x.past_regress_pct()))
            .then(y.worst_pct().unwrap_or(-1.0).total_cmp(&x.worst_pct().unwrap_or(-1.0)))
            .then(x.change.rank().cmp(&y.change.rank()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use xrdtest_model::{ResultValue, Stage, StageRecord, StageRun, StageValues, Trigger};

    /// A case instance: name, state and duration in ms.
    type Spec<'a> = (&'a str, CaseState, Option<u64>);
    /// A value a case's run reported: instance, slave, result, value.
    type Value<'a> = (&'a str, &'a str, &'a str, f64);

    /// A session of suite `s` with these instances (pass 1, case = the part before `[`), each
    /// with a run stage on s1 and s2 reporting `values` in ms.
    fn session(id: SessionId, cases: &[Spec], values: &[Value]) -> SessionData {
        let mut record = SessionRecord::queued(id, "s", Trigger::Api, vec!["s1".into(), "s2".into()], id);
        record.state = SessionState::Passed;
        let mut data = BTreeMap::new();
        let mut next_id = id * 100;
        for (name, state, ms) in cases {
            let case = name.split('[').next().unwrap_or(name);
            record.cases.push(CaseRecord {
                state: *state,
                started_ms: ms.map(|_| 1000),
                ended_ms: ms.map(|ms| 1000 + ms),
                attempts: 1,
                ..CaseRecord::pending(name, case, Vec::new(), 1)
            });
            let mut runs = Vec::new();
            for slave in ["s1", "s2"] {
                next_id += 1;
                let mut run = StageRun::pending(slave);
                run.stage_id = next_id;
                let mut reported = StageValues::default();
                for (_, _, result, value) in values.iter().filter(|v| v.0 == *name && v.1 == slave) {
                    reported.put_result(ResultValue { name: result.to_string(), value: *value, unit: "ms".into() });
                }
                if !reported.is_empty() {
                    data.insert(next_id, reported);
                }
                runs.push(run);
            }
            record.stages.push(StageRecord {
                stage: Stage::CaseRun { case: name.to_string() },
                timeout_ms: 1000,
                skipped: None,
                runs,
                repetition: 1,
                attempt: 1,
            });
        }
        SessionData { record, values: data, tails: BTreeMap::new() }
    }

    fn threshold(better: Better, regress_pct: Option<f64>) -> Threshold {
        Threshold { min: None, max: None, regress_pct, baseline: 5, better }
    }

    fn thresholds(entries: &[(&str, &str, Threshold)]) -> CaseThresholds {
        let mut all = CaseThresholds::new();
        for (case, name, threshold) in entries {
            all.entry(case.to_string()).or_default().insert(name.to_string(), threshold.clone());
        }
        all
    }

    fn instances(comparison: &Comparison) -> Vec<(&str, Change)> {
        comparison.cases.iter().map(|c| (c.instance.as_str(), c.change)).collect()
    }

    #[test]
    fn every_kind_of_change_is_named_and_regressions_come_first() {
        use CaseState::*;
        let a = session(
            1,
            &[
                ("ok", Passed, Some(10)),
                ("fixed", Failed, Some(10)),
                ("gone", Passed, Some(10)),
                ("broke", Passed, Some(10)),
                ("still", NotRun, None),
                ("skipped_now", Flaky, Some(10)),
                ("running", Passed, Some(10)),
            ],
            &[],
        );
        let b = session(
            2,
            &[
                ("ok", Flaky, Some(10)),
                ("fixed", Passed, Some(10)),
                ("new", Failed, Some(10)),
                ("broke", Failed, Some(10)),
                ("still", Failed, Some(10)),
                ("skipped_now", NotRun, None),
                ("running", Running, None),
            ],
            &[],
        );
        let comparison = compare(&a, &b, None);
        assert_eq!(
            instances(&comparison),
            [
                ("broke", Change::Regression),
                ("skipped_now", Change::Regression),
                ("still", Change::StillFailing),
                ("fixed", Change::Fixed),
                ("new", Change::New),
                ("gone", Change::Gone),
                ("running", Change::Unfinished),
                ("ok", Change::Unchanged),
            ]
        );
        let counts = &comparison.counts;
        assert_eq!(
            (counts.regressions, counts.fixed, counts.still_failing, counts.new, counts.gone, counts.unfinished),
            (2, 1, 1, 1, 1, 1)
        );
        assert_eq!(counts.unchanged, 1);
        let gone = &comparison.cases[5];
        assert_eq!((gone.state_a, gone.state_b), (Some(Passed), None));
        assert_eq!((comparison.a.id, comparison.b.id), (1, 2));
    }

    #[test]
    fn durations_and_values_have_deltas_in_units_and_percent() {
        let a =
            session(1, &[("c", CaseState::Passed, Some(2000))], &[("c", "s1", "lat", 10.0), ("c", "s2", "zero", 0.0)]);
        let b = session(
            2,
            &[("c", CaseState::Passed, Some(1500))],
            &[("c", "s1", "lat", 12.5), ("c", "s2", "zero", 3.0), ("c", "s1", "fresh", 1.0)],
        );
        let comparison = compare(&a, &b, None);
        let case = &comparison.cases[0];
        assert_eq!(
            (case.duration_a_ms, case.duration_b_ms, case.duration_delta_ms),
            (Some(2000), Some(1500), Some(-500))
        );
        assert_eq!(case.duration_delta_pct, Some(-25.0));
        let by = |name: &str| case.results.iter().find(|r| r.name == name).unwrap();
        let lat = by("lat");
        assert_eq!((lat.slave.as_str(), lat.unit.as_str(), lat.a, lat.b), ("s1", "ms", Some(10.0), Some(12.5)));
        assert_eq!((lat.delta, lat.delta_pct), (Some(2.5), Some(25.0)));
        assert!(!lat.worse && lat.better.is_none(), "no threshold: no direction");
        let zero = by("zero");
        assert_eq!((zero.delta, zero.delta_pct), (Some(3.0), None), "no % of 0");
        let fresh = by("fresh");
        assert_eq!((fresh.a, fresh.b, fresh.delta, fresh.delta_pct), (None, Some(1.0), None, None));
        assert_eq!(comparison.counts.worse_results, 0);
    }

    #[test]
    fn worse_follows_each_thresholds_direction() {
        let values_a = [("c", "s1", "lat", 100.0), ("c", "s1", "rate", 100.0), ("c", "s1", "size", 100.0)];
        let values_b = [("c", "s1", "lat", 90.0), ("c", "s1", "rate", 90.0), ("c", "s1", "size", 90.0)];
        let a = session(1, &[("c", CaseState::Passed, Some(1))], &values_a);
        let b = session(2, &[("c", CaseState::Passed, Some(1))], &values_b);
        let limits = thresholds(&[
            ("c", "lat", threshold(Better::Lower, None)),
            ("c", "rate", threshold(Better::Higher, Some(5.0))),
            ("c", "size", threshold(Better::Either, Some(20.0))),
        ]);
        let comparison = compare(&a, &b, Some(&limits));
        let results = &comparison.cases[0].results;
        let judged: Vec<(&str, bool, bool)> =
            results.iter().map(|r| (r.name.as_str(), r.worse, r.past_regress_pct)).collect();
        // rate fell 10 % (past its 5 %), size changed 10 % (within its 20 %), lat fell: better.
        assert_eq!(judged, [("rate", true, true), ("size", true, false), ("lat", false, false)]);
        assert_eq!(results[0].delta_pct, Some(-10.0));
        assert_eq!(comparison.counts.worse_results, 2);
    }

    #[test]
    fn cases_with_worse_results_follow_regressions_by_the_largest_percent() {
        let lower = threshold(Better::Lower, None);
        let limits = thresholds(&[("a", "t", lower.clone()), ("b", "t", lower.clone()), ("z", "t", lower)]);
        let spec = |name| (name, CaseState::Passed, Some(10));
        let a = session(
            1,
            &[spec("a"), spec("b"), spec("c"), spec("z"), ("r", CaseState::Passed, Some(1))],
            &[("a", "s1", "t", 10.0), ("b", "s2", "t", 10.0), ("z", "s1", "t", 0.0)],
        );
        let b = session(
            2,
            &[spec("c"), spec("a"), spec("b"), spec("z"), ("r", CaseState::Failed, Some(1))],
            &[("a", "s1", "t", 11.0), ("b", "s2", "t", 15.0), ("z", "s1", "t", 0.0)],
        );
        let comparison = compare(&a, &b, Some(&limits));
        // r regressed; b is 50 % worse, a 10 %; z did not change; c reported nothing.
        assert_eq!(
            instances(&comparison),
            [
                ("r", Change::Regression),
                ("b", Change::Unchanged),
                ("a", Change::Unchanged),
                ("c", Change::Unchanged),
                ("z", Change::Unchanged),
            ]
        );
        assert_eq!(comparison.cases[1].worst_pct(), Some(50.0));
    }

    #[test]
    fn regressions_with_worse_results_lead_their_group_and_the_rest_keep_bs_order() {
        let lower = threshold(Better::Lower, Some(20.0));
        let limits = thresholds(&[("p", "t", lower.clone()), ("q", "t", lower)]);
        let (passed, failed) = (CaseState::Passed, CaseState::Failed);
        let a = session(
            1,
            &[("n", passed, Some(1)), ("q", passed, Some(1)), ("p", passed, Some(1)), ("m", passed, Some(1))],
            &[("p", "s1", "t", 10.0), ("q", "s1", "t", 10.0)],
        );
        let b = session(
            2,
            &[("n", failed, Some(1)), ("q", failed, Some(1)), ("p", failed, Some(1)), ("m", failed, Some(1))],
            &[("p", "s1", "t", 11.0), ("q", "s1", "t", 30.0)],
        );
        let comparison = compare(&a, &b, Some(&limits));
        // q is past regress_pct (+200 %), p only worse (+10 %); n and m keep B's order.
        let regression = Change::Regression;
        assert_eq!(
            instances(&comparison),
            [("q", regression), ("p", regression), ("n", regression), ("m", regression)]
        );
    }

    #[test]
    fn a_result_worse_than_zero_ranks_above_any_percent_and_passes_are_matched() {
        let limits = thresholds(&[("c", "errors", threshold(Better::Lower, Some(10.0)))]);
        let mut a = session(1, &[("c", CaseState::Passed, Some(1))], &[("c", "s1", "errors", 0.0)]);
        let mut b = session(2, &[("c", CaseState::Passed, Some(1))], &[("c", "s1", "errors", 2.0)]);
        // A second pass of the same instance that regressed; matched with A's second pass.
        for (data, state) in [(&mut a, CaseState::Passed), (&mut b, CaseState::Failed)] {
            data.record.cases.push(CaseRecord { state, ..CaseRecord::pending("c", "c", Vec::new(), 2) });
        }
        let comparison = compare(&a, &b, Some(&limits));
        let order: Vec<(u32, Change)> = comparison.cases.iter().map(|c| (c.pass, c.change)).collect();
        assert_eq!(order, [(2, Change::Regression), (1, Change::Unchanged)]);
        let errors = &comparison.cases[1].results[0];
        assert!(errors.worse && errors.past_regress_pct, "{errors:?}");
        assert_eq!(comparison.cases[1].worst_pct(), Some(f64::INFINITY));
        assert!(comparison.cases[0].results.is_empty(), "pass 2 reported nothing");
    }

    #[test]
    fn the_last_report_of_an_instance_counts_and_the_answer_is_json() {
        let mut a = session(1, &[("c", CaseState::Flaky, Some(5))], &[("c", "s1", "lat", 50.0)]);
        // A retry's run reported later: its value counts.
        let mut retry = a.record.stages[0].clone();
        retry.attempt = 2;
        retry.runs[0].stage_id = 999;
        a.record.stages.push(retry);
        a.values.insert(
            999,
            StageValues {
                results: vec![ResultValue { name: "lat".into(), value: 20.0, unit: "ms".into() }],
                checks: Vec::new(),
            },
        );
        let b = session(2, &[("c", CaseState::Passed, Some(5))], &[("c", "s1", "lat", 20.0)]);
        let comparison = compare(&a, &b, None);
        assert_eq!(comparison.cases[0].results[0].delta, Some(0.0));
        let json = serde_json::to_value(&comparison).unwrap();
        assert_eq!(json["cases"][0]["change"], "unchanged");
        assert_eq!(json["cases"][0]["state_a"], "flaky");
        assert_eq!(json["a"]["verdict"], "flaky");
        let back: Comparison = serde_json::from_value(json).unwrap();
        assert_eq!(back, comparison);
    }
}
