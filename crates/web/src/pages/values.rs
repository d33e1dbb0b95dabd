//! What stage runs reported, as table rows: the session page lists every run's results and
//! checks, the stage page one run's.

use std::collections::BTreeMap;

use xrdtest_model::{CheckSource, SessionRecord, StageId, StageValues};

/// One result or check of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueRow {
    /// The stage's label (`case_run:copy (attempt 2)`).
    pub stage: String,
    pub slave: String,
    /// Link to the run's page.
    pub href: String,
    pub name: String,
    /// The number with its unit, or `pass` / `fail`.
    pub value: String,
    /// `result`, `passed` or `failed`: the CSS class of the value.
    pub cls: &'static str,
    /// A check's message; for a threshold's check, its figures.
    pub message: String,
    /// `script` or `threshold` for a check; empty for a result.
    pub source: &'static str,
}

/// The rows of one run: its results, then its checks, in the order reported.
pub fn run_rows(stage: &str, slave: &str, href: &str, values: &StageValues) -> Vec<ValueRow> {
    let row = |name: &str, value: String, cls, message: &str, source| ValueRow {
        stage: stage.to_string(),
        slave: slave.to_string(),
        href: href.to_string(),
        name: name.to_string(),
        value,
        cls,
        message: message.to_string(),
        source,
    };
    let results = values.results.iter().map(|result| {
        let value = match result.unit.is_empty() {
            true => result.value.to_string(),
            false => format!("{} {}", result.value, result.unit),
        };
        row(&result.name, value, "result", "", "")
    });
    let checks = values.checks.iter().map(|check| {
        let (value, cls) = if check.passed { ("pass", "passed") } else { ("fail", "failed") };
        let source = match check.source {
            CheckSource::Script => "script",
            CheckSource::Threshold => "threshold",
        };
        row(&check.name, value.to_string(), cls, &check.message, source)
    });
    results.chain(checks).collect()
}

/// Most rows the session page lists; the rest are in the reports (`report.json`, CSV).
pub const MAX_SESSION_ROWS: usize = 2000;

/// The rows of every run of a session, in stage order then slave order, at most
/// [`MAX_SESSION_ROWS`]; and how many there are in all.
pub fn session_rows(record: &SessionRecord, values: &BTreeMap<StageId, StageValues>) -> (Vec<ValueRow>, usize) {
    let mut rows = Vec::new();
    let mut total = 0;
    for stage in &record.stages {
        for run in &stage.runs {
            if let Some(reported) = values.get(&run.stage_id) {
                total += reported.results.len() + reported.checks.len();
                if rows.len() < MAX_SESSION_ROWS {
                    let href = format!("/sessions/{}/stages/{}", record.id, run.stage_id);
                    rows.extend(run_rows(&stage.label(), &run.slave, &href, reported));
                }
            }
        }
    }
    rows.truncate(MAX_SESSION_ROWS);
    (rows, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xrdtest_model::{Check, ResultValue};

    #[test]
    fn results_come_before_checks_with_their_units_and_verdicts() {
        let values = StageValues {
            results: vec![
                ResultValue { name: "latency".into(), value: 12.5, unit: "ms".into() },
                ResultValue { name: "n".into(), value: 3.0, unit: String::new() },
            ],
            checks: vec![Check {
                name: "results.latency".into(),
                passed: false,
                message: "latency = 12.5 ms: above max 10 ms".into(),
                source: CheckSource::Threshold,
            }],
        };
        let rows = run_rows("case_run:c", "s1", "/x", &values);
        let shown: Vec<(&str, &str, &str, &str)> =
            rows.iter().map(|r| (r.name.as_str(), r.value.as_str(), r.cls, r.source)).collect();
        assert_eq!(
            shown,
            [
                ("latency", "12.5 ms", "result", ""),
                ("n", "3", "result", ""),
                ("results.latency", "fail", "failed", "threshold")
            ]
        );
        assert_eq!(rows[2].message, "latency = 12.5 ms: above max 10 ms");
    }

    #[test]
    fn a_session_lists_at_most_its_cap_and_counts_all() {
        use xrdtest_model::{Stage, StageRecord, StageRun, Trigger};
        let mut record = SessionRecord::queued(1, "ts", Trigger::Manual, vec!["s1".into()], 0);
        let mut values = BTreeMap::new();
        for id in 1..=3u64 {
            let mut run = StageRun::pending("s1");
            run.stage_id = id;
            record.stages.push(StageRecord {
                stage: Stage::CaseRun { case: format!("c{id}") },
                timeout_ms: 1,
                skipped: None,
                runs: vec![run],
                repetition: 1,
                attempt: 1,
            });
            let results =
                (0..900).map(|i| ResultValue { name: format!("r{i}"), value: 1.0, unit: String::new() }).collect();
            values.insert(id, StageValues { results, checks: Vec::new() });
        }
        let (rows, total) = session_rows(&record, &values);
        assert_eq!((rows.len(), total), (MAX_SESSION_ROWS, 2700));
    }
}
