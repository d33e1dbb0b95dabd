//! The history of the results a suite's case instances reported (`result NAME VALUE [UNIT]`):
//! per (instance, result), one point per session, pass and slave, for the trends page's
//! charts and its `metrics.csv` downloads.
//!
//! Built in one pass over the records and their values (read once per record by the
//! caller), whatever the number of results: a page of a hundred sessions with hundreds of
//! values each makes no store read per chart.

use std::collections::{BTreeMap, HashMap};

use xrdtest_model::{SessionId, SessionRecord, StageId, StageValues};

use xrdtest_report::csv::push_record;

/// One value of one result, as one run on one slave reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    pub session: SessionId,
    /// Which pass over the case list (1 unless the session repeated its cases).
    pub pass: u32,
    pub slave: String,
    pub value: f64,
    pub unit: String,
    /// The run's threshold check of this result (`results.NAME`); `None` when it had none.
    pub passed: Option<bool>,
    /// When the run that reported it ended, else when its session did.
    pub ended_ms: Option<u64>,
}

/// One result of one case instance across sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricHistory {
    pub instance: String,
    /// The test case (folder) the instance belongs to, whose thresholds apply.
    pub case: String,
    pub result: String,
    /// In session order, then pass, then slave.
    pub points: Vec<MetricPoint>,
}

impl MetricHistory {
    /// The newest unit given (a unit may be added to a script later); empty when none.
    pub fn unit(&self) -> &str {
        self.points.iter().rev().map(|p| p.unit.as_str()).find(|u| !u.is_empty()).unwrap_or("")
    }

    /// The slaves that reported it, sorted: one line each.
    pub fn slaves(&self) -> Vec<&str> {
        let mut slaves: Vec<&str> = self.points.iter().map(|p| p.slave.as_str()).collect();
        slaves.sort_unstable();
        slaves.dedup();
        slaves
    }

    /// Whether some run's check of it failed.
    pub fn any_failed(&self) -> bool {
        self.points.iter().any(|p| p.passed == Some(false))
    }
}

/// The prefix of the check a threshold makes of a result (`results.latency_ms`).
const THRESHOLD_CHECK: &str = "results.";

/// Every (instance, result) history of `sessions` (oldest first, each with what its runs
/// reported by stage id): instances in `preferred` order (the current definition's), then in
/// the order they first appear; results by name. With `only`, just that (instance, result).
///
/// Of the stages of an instance and pass (init, run, finalize, every attempt) on one slave,
/// the last report counts, as it does for baselines.
pub fn histories<'a>(
    sessions: impl IntoIterator<Item = (&'a SessionRecord, &'a BTreeMap<StageId, StageValues>)>,
    preferred: &[String],
    only: Option<(&str, &str)>,
) -> Vec<MetricHistory> {
    // (instance, result) → its case and its points by (session, pass, slave).
    type Points = BTreeMap<(SessionId, u32, String), MetricPoint>;
    let mut found: HashMap<(String, String), (String, Points)> = HashMap::new();
    let mut instance_order: Vec<String> = preferred.to_vec();
    for (record, values) in sessions {
        let cases: HashMap<(&str, u32), &str> =
            record.cases.iter().map(|c| ((c.name.as_str(), c.repetition), c.case.as_str())).collect();
        for stage in &record.stages {
            let Some(instance) = stage.stage.case() else { continue };
            if only.is_some_and(|(wanted, _)| wanted != instance) {
                continue;
            }
            for run in stage.runs.iter().filter(|run| run.stage_id != 0) {
                let Some(reported) = values.get(&run.stage_id) else { continue };
                let checks: HashMap<&str, bool> = reported
                    .checks
                    .iter()
                    .filter_map(|c| c.name.strip_prefix(THRESHOLD_CHECK).map(|name| (name, c.passed)))
                    .collect();
                for result in &reported.results {
                    if only.is_some_and(|(_, wanted)| wanted != result.name) {
                        continue;
                    }
                    if !instance_order.iter().any(|known| known == instance) {
                        instance_order.push(instance.to_string());
                    }
                    let case = cases.get(&(instance, stage.repetition)).copied().unwrap_or(instance);
                    let (_, points) = found
                        .entry((instance.to_string(), result.name.clone()))
                        .or_insert_with(|| (case.to_string(), Points::new()));
                    points.insert(
                        (record.id, stage.repetition, run.slave.clone()),
                        MetricPoint {
                            session: record.id,
                            pass: stage.repetition,
                            slave: run.slave.clone(),
                            value: result.value,
                            unit: result.unit.clone(),
                            passed: checks.get(result.name.as_str()).copied(),
                            ended_ms: run.ended_ms.or(record.ended_ms),
                        },
                    );
                }
            }
        }
    }
    let rank: HashMap<&str, usize> = instance_order.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let mut all: Vec<MetricHistory> = found
        .into_iter()
        .map(|((instance, result), (case, points))| MetricHistory {
            instance,
            case,
            result,
            points: points.into_values().collect(),
        })
        .collect();
    all.sort_by(|x, y| {
        let rank_of = |h: &MetricHistory| rank.get(h.instance.as_str()).copied().unwrap_or(usize::MAX);
        rank_of(x).cmp(&rank_of(y)).then_with(|| x.result.cmp(&y.result))
    });
    all
}

/// The CSV header of a history.
pub const CSV_HEADER: [&str; 7] = ["session", "ended_ms", "ended", "slave", "value", "unit", "passed"];

/// A history as CSV (RFC 4180): `session,ended_ms,ended,slave,value,unit,passed`, one
/// record per point; `ended` in UTC (RFC 3339), `passed` `true`/`false`, empty with no check.
pub fn csv(history: &MetricHistory) -> String {
    let mut out = String::new();
    push_record(&mut out, &CSV_HEADER);
    for point in &history.points {
        let ended_ms = point.ended_ms.map(|ms| ms.to_string()).unwrap_or_default();
        let ended = point.ended_ms.map(utc).unwrap_or_default();
        let passed = point.passed.map(|p| p.to_string()).unwrap_or_default();
        push_record(
            &mut out,
            &[
                &point.session.to_string(),
                &ended_ms,
                &ended,
                &point.slave,
                &point.value.to_string(),
                &point.unit,
                &passed,
            ],
        );
    }
    out
}

/// `2025-03-01T14:05:09.123Z`.
fn utc(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|at| at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use xrdtest_model::{
        CaseRecord, Check, CheckSource, ResultValue, SessionState, Stage, StageRecord, StageRun, Trigger,
    };

    /// A value: instance, pass, slave, result, value, unit, its check.
    type Reported<'a> = (&'a str, u32, &'a str, &'a str, f64, &'a str, Option<bool>);

    /// A session whose case instances' run stages reported `values`, one stage per
    /// (instance, pass), one run per slave.
    fn session(id: SessionId, values: &[Reported]) -> (SessionRecord, BTreeMap<StageId, StageValues>) {
        let mut record = SessionRecord::queued(id, "s", Trigger::Api, Vec::new(), id);
        record.state = SessionState::Passed;
        record.ended_ms = Some(1_700_000_000_000 + id);
        let mut stored = BTreeMap::new();
        let mut next = id * 1000;
        for &(instance, pass, slave, name, value, unit, passed) in values {
            if !record.cases.iter().any(|c| c.name == instance && c.repetition == pass) {
                let case = instance.split('[').next().unwrap_or(instance);
                record.cases.push(CaseRecord::pending(instance, case, Vec::new(), pass));
            }
            let stage = Stage::CaseRun { case: instance.into() };
            let at = match record.stages.iter().position(|s| s.stage == stage && s.repetition == pass) {
                Some(at) => at,
                None => {
                    record.stages.push(StageRecord {
                        stage,
                        timeout_ms: 1,
                        skipped: None,
                        runs: Vec::new(),
                        repetition: pass,
                        attempt: 1,
                    });
                    record.stages.len() - 1
                }
            };
            let runs = &mut record.stages[at].runs;
            let stage_id = match runs.iter().find(|r| r.slave == slave) {
                Some(run) => run.stage_id,
                None => {
                    next += 1;
                    runs.push(StageRun { stage_id: next, ended_ms: Some(next), ..StageRun::pending(slave) });
                    next
                }
            };
            let entry: &mut StageValues = stored.entry(stage_id).or_default();
            entry.put_result(ResultValue { name: name.into(), value, unit: unit.into() });
            if let Some(passed) = passed {
                entry.put_check(Check {
                    name: format!("results.{name}"),
                    passed,
                    message: String::new(),
                    source: CheckSource::Threshold,
                });
            }
        }
        (record, stored)
    }

    fn all(sessions: &[(SessionRecord, BTreeMap<StageId, StageValues>)], preferred: &[&str]) -> Vec<MetricHistory> {
        let preferred: Vec<String> = preferred.iter().map(|s| s.to_string()).collect();
        histories(sessions.iter().map(|(r, v)| (r, v)), &preferred, None)
    }

    #[test]
    fn one_history_per_instance_and_result_in_definition_order() {
        let sessions = [
            session(1, &[("b", 1, "s2", "lat", 3.0, "ms", Some(true)), ("old", 1, "s1", "x", 1.0, "", None)]),
            session(2, &[("a", 1, "s1", "rate", 9.0, "MB/s", None), ("b", 1, "s1", "lat", 5.0, "ms", Some(false))]),
            session(3, &[("b", 1, "s1", "lat", 4.0, "ms", None), ("b", 1, "s1", "err", 0.0, "", None)]),
        ];
        let histories = all(&sessions, &["a", "b", "gone"]);
        let keys: Vec<(&str, &str)> = histories.iter().map(|h| (h.instance.as_str(), h.result.as_str())).collect();
        assert_eq!(keys, [("a", "rate"), ("b", "err"), ("b", "lat"), ("old", "x")]);
        let lat = &histories[2];
        let points: Vec<(SessionId, &str, f64, Option<bool>)> =
            lat.points.iter().map(|p| (p.session, p.slave.as_str(), p.value, p.passed)).collect();
        assert_eq!(points, [(1, "s2", 3.0, Some(true)), (2, "s1", 5.0, Some(false)), (3, "s1", 4.0, None)]);
        assert_eq!((lat.unit(), lat.slaves(), lat.any_failed()), ("ms", vec!["s1", "s2"], true));
        assert_eq!(histories[0].case, "a");
    }

    #[test]
    fn passes_are_points_of_their_own_and_only_filters() {
        let sessions = [session(
            1,
            &[
                ("t[size=1]", 1, "s1", "lat", 1.0, "ms", None),
                ("t[size=1]", 2, "s1", "lat", 2.0, "ms", None),
                ("t[size=2]", 1, "s1", "lat", 7.0, "ms", None),
            ],
        )];
        let history = all(&sessions, &[]);
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].case, "t");
        assert_eq!(history[0].points.iter().map(|p| (p.pass, p.value)).collect::<Vec<_>>(), [(1, 1.0), (2, 2.0)]);
        let only = histories(sessions.iter().map(|(r, v)| (r, v)), &[], Some(("t[size=2]", "lat")));
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].points[0].value, 7.0);
        assert!(histories(sessions.iter().map(|(r, v)| (r, v)), &[], Some(("t[size=2]", "nope"))).is_empty());
    }

    #[test]
    fn csv_has_its_header_one_record_per_point_and_quotes_what_needs_it() {
        let sessions = [
            session(4, &[("c", 1, "slave,\"one\"", "lat", 12.5, "ms", Some(false))]),
            session(5, &[("c", 1, "s2", "lat", -0.25, "", None)]),
        ];
        let history = &all(&sessions, &[])[0];
        let text = csv(history);
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], "session,ended_ms,ended,slave,value,unit,passed");
        assert_eq!(lines[1], "4,4001,1970-01-01T00:00:04.001Z,\"slave,\"\"one\"\"\",12.5,ms,false");
        assert_eq!(lines[2], "5,5001,1970-01-01T00:00:05.001Z,s2,-0.25,,");
        assert_eq!(lines[3], "", "every record ends with CRLF");
        assert_eq!(lines.len(), 4);
    }
}
