//! A session as CSV (`results.csv`, RFC 4180: comma-separated, CRLF line ends, fields with
//! a comma, quote, CR or LF quoted and their quotes doubled), header first. One row per stage
//! run: case instance × pass × attempt × slave × stage, suite stages too (with an empty
//! instance, pass and attempt); then one column per result seen in the session,
//! `result:NAME[UNIT]`, sorted, empty where that run did not report it.

use std::borrow::Cow;

use xrdtest_model::CaseRecord;

use crate::data::{duration, SessionData};
use crate::format;

/// The fixed columns, before the result columns.
pub const COLUMNS: [&str; 13] = [
    "session",
    "suite",
    "instance",
    "case",
    "pass",
    "attempt",
    "stage",
    "slave",
    "state",
    "start_ms",
    "duration_ms",
    "exit_code",
    "reason",
];

/// One field, quoted when it needs to be (RFC 4180: a comma, a quote, CR or LF).
pub fn field(text: &str) -> Cow<'_, str> {
    match text.contains([',', '"', '\r', '\n']) {
        true => Cow::Owned(format!("\"{}\"", text.replace('"', "\"\""))),
        false => Cow::Borrowed(text),
    }
}

/// Appends one record, its CRLF included. The web layer's CSV downloads use it too.
pub fn push_record<S: AsRef<str>>(out: &mut String, fields: &[S]) {
    for (index, text) in fields.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&field(text.as_ref()));
    }
    out.push_str("\r\n");
}

/// The CSV text of a session.
pub fn csv(data: &SessionData) -> String {
    let record = &data.record;
    let columns = data.result_columns();
    let mut out = String::new();
    let header: Vec<String> =
        COLUMNS.iter().map(|c| c.to_string()).chain(columns.iter().map(|column| column.header())).collect();
    push_record(&mut out, &header);
    let optional = |value: Option<String>| value.unwrap_or_default();
    for stage in &record.stages {
        let instance = stage.stage.case();
        // The test case (folder) of an instance, from its record in this pass.
        let case: Option<&CaseRecord> =
            instance.and_then(|name| record.cases.iter().find(|c| c.name == name && c.repetition == stage.repetition));
        for run in &stage.runs {
            let mut row = vec![
                record.id.to_string(),
                record.suite.clone(),
                instance.unwrap_or("").to_string(),
                case.map(|c| c.case.clone()).or(instance.map(str::to_string)).unwrap_or_default(),
                optional(instance.map(|_| stage.repetition.to_string())),
                optional(instance.map(|_| stage.attempt.to_string())),
                stage.stage.kind().to_string(),
                run.slave.clone(),
                run.state.as_str().to_string(),
                optional(run.started_ms.map(|ms| ms.to_string())),
                optional(duration(run.started_ms, run.ended_ms).map(|ms| ms.to_string())),
                optional(run.exit_code.map(|code| code.to_string())),
                run.reason.clone().or_else(|| stage.skipped.clone()).unwrap_or_default(),
            ];
            let values = data.values_of(run);
            for column in &columns {
                let value = values
                    .and_then(|v| v.results.iter().find(|r| r.name == column.name && r.unit == column.unit))
                    .map(|r| format::number(r.value));
                row.push(value.unwrap_or_default());
            }
            push_record(&mut out, &row);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;
    use xrdtest_model::{RunState, Stage};

    /// A small RFC 4180 reader, to check what a reader gets back.
    fn parse(text: &str) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        let mut row = Vec::new();
        let mut field = String::new();
        let mut chars = text.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') if field.is_empty() => quoted = true,
                (false, ',') => row.push(std::mem::take(&mut field)),
                (false, '\r') if chars.peek() == Some(&'\n') => {
                    chars.next();
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                (false, c) => field.push(c),
            }
        }
        assert!(field.is_empty() && row.is_empty(), "the last record ends with CRLF");
        rows
    }

    #[test]
    fn one_row_per_run_with_result_columns() {
        let text = csv(&testdata::mixed());
        assert!(text.ends_with("\r\n") && !text.contains("\r\n\r\n"));
        let rows = parse(&text);
        assert_eq!(
            rows[0],
            [
                "session",
                "suite",
                "instance",
                "case",
                "pass",
                "attempt",
                "stage",
                "slave",
                "state",
                "start_ms",
                "duration_ms",
                "exit_code",
                "reason",
                "result:latency_ms[ms]",
                "result:ops"
            ]
        );
        // 7 stages × 2 slaves.
        assert_eq!(rows.len(), 1 + 14);
        assert!(rows.iter().all(|row| row.len() == 15), "every row has every column");
        assert_eq!(rows[1][..9], ["42", "ts_x", "", "", "", "", "suite_init", "s1", "passed"]);
        let measure_s1 = &rows[3];
        assert_eq!(measure_s1[2..9], ["measure", "measure", "1", "1", "case_run", "s1", "passed"]);
        assert_eq!(measure_s1[10], "100");
        assert_eq!(measure_s1[13..], ["12.5", "1000"]);
        assert_eq!(rows[4][13..], ["14", ""]);
        assert_eq!(rows[5][12], "check `sums` failed: abc != def");
        let wobbly: Vec<(&str, &str, &str)> =
            rows.iter().filter(|r| r[2] == "wobbly").map(|r| (r[5].as_str(), r[7].as_str(), r[8].as_str())).collect();
        assert_eq!(
            wobbly,
            [("1", "s1", "failed"), ("1", "s2", "passed"), ("2", "s1", "passed"), ("2", "s2", "passed")]
        );
        assert_eq!(rows[11][8..], ["skipped", "", "", "", "exit-first", "", ""]);
    }

    #[test]
    fn fields_with_commas_quotes_and_newlines_are_quoted() {
        let mut data = testdata::mixed();
        data.record.suite = "ts \"quoted\", really".into();
        let name = "copy[mode=sync,size=64]";
        data.record.cases[0].name = name.into();
        data.record.cases[0].case = "copy".into();
        data.record.stages[1].stage = Stage::CaseRun { case: name.into() };
        data.record.stages[1].runs[0].reason = Some("two\nlines\r\nhere".into());
        data.record.stages[1].runs[0].state = RunState::Failed;
        let text = csv(&data);
        assert!(text.contains("\"ts \"\"quoted\"\", really\",\"copy[mode=sync,size=64]\",copy,"), "{text}");
        let rows = parse(&text);
        assert_eq!(rows[3][1], "ts \"quoted\", really");
        assert_eq!(rows[3][2], name);
        assert_eq!(rows[3][3], "copy");
        assert_eq!(rows[3][12], "two\nlines\r\nhere");
        assert!(rows.iter().all(|row| row.len() == 15));
    }
}
