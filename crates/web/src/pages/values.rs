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

/// The rows of every run of a session, in stage order then slave order.
pub fn session_rows(record: &SessionRecord, values: &BTreeMap<StageId, StageValues>) -> Vec<ValueRow> {
    let mut rows = Vec::new();
    for stage in &record.stages {
        for run in &stage.runs {
            if let Some(reported) = values.get(&run.stage_id) {
                let href = format!("/sessions/{}/stages/{}", record.id, run.stage_id);
                rows.extend(run_rows(&stage.label(), &run.slave, &href, reported));
            }
        }
    }
    rows
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
}
