//! `xrdtest compare A B`: session B against session A as the master compares them
//! (`GET /api/compare`), as tables (regressions first) or, with `--json`, the API's answer.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::Value;
use xrdtest_report::compare::{Change, Comparison, ResultComparison};
use xrdtest_report::format::human_duration;

use crate::client::ApiClient;

/// The options of `xrdtest compare`.
#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    /// The session compared against: usually the older one ("before").
    pub a: u64,
    /// The session looked at ("after").
    pub b: u64,
    /// Exit 1 when B regressed: a case instance passing in A failed or did not run in B,
    /// or a result got worse than in A by more than its threshold's `regress_pct`.
    #[arg(long)]
    pub fail_on_regression: bool,
}

/// Whether B regressed against A, as `--fail-on-regression` means it.
pub fn regressed(comparison: &Comparison) -> bool {
    comparison.counts.regressions > 0 || comparison.cases.iter().any(|case| case.past_regress_pct())
}

pub fn run(api: &ApiClient, args: &CompareArgs, json_output: bool) -> Result<ExitCode> {
    let answer: Value = api.get(&format!("/api/compare?a={}&b={}", args.a, args.b))?;
    let comparison: Comparison =
        serde_json::from_value(answer.clone()).context("/api/compare: an answer this version cannot read")?;
    if json_output {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", format_comparison(&comparison));
    }
    Ok(match args.fail_on_regression && regressed(&comparison) {
        true => ExitCode::from(1),
        false => ExitCode::SUCCESS,
    })
}

/// `+25.0%`, `-3.2%`.
fn percent(pct: f64) -> String {
    format!("{pct:+.1}%")
}

/// A number with its unit, or `-`.
fn value(number: Option<f64>, unit: &str) -> String {
    match (number, unit.is_empty()) {
        (None, _) => "-".into(),
        (Some(n), true) => n.to_string(),
        (Some(n), false) => format!("{n} {unit}"),
    }
}

/// What a result's change means: `worse`, `better`, `new`... (empty: not judged).
fn verdict(result: &ResultComparison) -> String {
    let direction = result.better.map(|b| format!(" ({} is better)", b.as_str())).unwrap_or_default();
    match (result.a, result.b, result.delta) {
        (None, Some(_), _) => "new".into(),
        (Some(_), None, _) => "gone".into(),
        _ if result.past_regress_pct => format!("WORSE past regress_pct{direction}"),
        _ if result.worse => format!("worse{direction}"),
        (_, _, Some(delta)) if delta != 0.0 && result.better.is_some() => format!("better{direction}"),
        _ => String::new(),
    }
}

/// Rows as left-aligned columns, two spaces apart, the last column unpadded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[index]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The comparison as people read it: the two sessions, the counts, the cases (regressions
/// first, as the master ordered them), then every result with its delta.
pub fn format_comparison(comparison: &Comparison) -> String {
    let (a, b) = (&comparison.a, &comparison.b);
    let counts = &comparison.counts;
    let mut out = String::new();
    let _ =
        writeln!(out, "Session {} ({}, {}) against {} ({}, {})", b.id, b.suite, b.verdict, a.id, a.suite, a.verdict);
    let _ = writeln!(
        out,
        "{} regressions, {} fixed, {} still failing, {} new, {} gone, {} unchanged; {} results worse",
        counts.regressions,
        counts.fixed,
        counts.still_failing,
        counts.new,
        counts.gone,
        counts.unchanged,
        counts.worse_results
    );
    if comparison.cases.is_empty() {
        out.push_str("\nNeither session has case instances.\n");
        return out;
    }
    let repeated = comparison.cases.iter().any(|c| c.pass > 1);
    let instance = |name: &str, pass: u32| match repeated {
        true => format!("{name} (pass {pass})"),
        false => name.to_string(),
    };
    let state = |s: Option<xrdtest_model::CaseState>| s.map(|s| s.as_str().to_string()).unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = comparison
        .cases
        .iter()
        .map(|case| {
            let signed = |ms: i64| format!("{}{}", if ms < 0 { "-" } else { "+" }, human_duration(ms.unsigned_abs()));
            let delta = match (case.duration_delta_ms, case.duration_delta_pct) {
                (Some(ms), Some(pct)) => format!("{} ({})", signed(ms), percent(pct)),
                (Some(ms), None) => signed(ms),
                _ => String::new(),
            };
            let change = match case.change {
                Change::Regression => "REGRESSION".to_string(),
                other => other.label().to_string(),
            };
            vec![
                change,
                instance(&case.instance, case.pass),
                state(case.state_a),
                state(case.state_b),
                case.duration_a_ms.map(human_duration).unwrap_or_else(|| "-".into()),
                case.duration_b_ms.map(human_duration).unwrap_or_else(|| "-".into()),
                delta,
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(&["CHANGE", "INSTANCE", "A", "B", "DURATION A", "DURATION B", "DELTA"], &rows));

    let results: Vec<Vec<String>> = comparison
        .cases
        .iter()
        .flat_map(|case| {
            case.results.iter().map(move |r| {
                let delta = match r.delta {
                    Some(d) if r.unit.is_empty() => format!("{d:+}"),
                    Some(d) => format!("{d:+} {}", r.unit),
                    None => String::new(),
                };
                vec![
                    instance(&case.instance, case.pass),
                    r.name.clone(),
                    r.slave.clone(),
                    value(r.a, &r.unit),
                    value(r.b, &r.unit),
                    delta,
                    r.delta_pct.map(percent).unwrap_or_default(),
                    verdict(r),
                ]
            })
        })
        .collect();
    if !results.is_empty() {
        out.push('\n');
        out.push_str(&table(&["INSTANCE", "RESULT", "SLAVE", "A", "B", "DELTA", "DELTA %", ""], &results));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use xrdtest_defs::Better;
    use xrdtest_model::{CaseState, SessionState};
    use xrdtest_report::compare::{CaseComparison, Counts, SessionSide};

    fn side(id: u64, verdict: &str) -> SessionSide {
        SessionSide {
            id,
            suite: "ts".into(),
            state: SessionState::Passed,
            verdict: verdict.into(),
            created_ms: 0,
            started_ms: None,
            ended_ms: None,
            commit: None,
            definition_hash: String::new(),
        }
    }

    fn comparison(regressions: usize, past_regress_pct: bool) -> Comparison {
        let result = ResultComparison {
            name: "latency_ms".into(),
            slave: "s1".into(),
            unit: "ms".into(),
            a: Some(10.0),
            b: Some(12.5),
            delta: Some(2.5),
            delta_pct: Some(25.0),
            better: Some(Better::Lower),
            worse: true,
            past_regress_pct,
        };
        let case = |name: &str, change, a, b| CaseComparison {
            instance: name.into(),
            case: name.into(),
            pass: 1,
            state_a: a,
            state_b: b,
            change,
            duration_a_ms: Some(1000),
            duration_b_ms: Some(1500),
            duration_delta_ms: Some(500),
            duration_delta_pct: Some(50.0),
            results: Vec::new(),
        };
        let mut cases = Vec::new();
        if regressions > 0 {
            cases.push(case("broke", Change::Regression, Some(CaseState::Passed), Some(CaseState::Failed)));
        }
        let mut slower = case("slow", Change::Unchanged, Some(CaseState::Passed), Some(CaseState::Passed));
        slower.results.push(result);
        cases.push(slower);
        Comparison {
            a: side(1, "passed"),
            b: side(2, "failed"),
            counts: Counts { regressions, unchanged: 1, worse_results: 1, ..Counts::default() },
            cases,
        }
    }

    #[test]
    fn the_tables_put_regressions_first_with_deltas_and_verdicts() {
        let text = format_comparison(&comparison(1, false));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Session 2 (ts, failed) against 1 (ts, passed)");
        assert!(lines[1].starts_with("1 regressions, 0 fixed") && lines[1].ends_with("1 results worse"), "{text}");
        assert!(lines[3].starts_with("CHANGE ") && lines[3].contains("DURATION A"), "{text}");
        assert!(
            lines[4].starts_with("REGRESSION  broke") && lines[4].contains("passed") && lines[4].contains("failed")
        );
        assert!(lines[4].ends_with("+500 ms (+50.0%)"), "{text}");
        assert!(lines[5].starts_with("unchanged   slow"), "{text}");
        let result = lines.iter().find(|l| l.starts_with("slow  ")).expect("a result row");
        for part in ["latency_ms", "10 ms", "12.5 ms", "+2.5 ms", "+25.0%", "worse (lower is better)"] {
            assert!(result.contains(part), "{part} in {result}");
        }
    }

    #[test]
    fn a_regression_is_a_regressed_case_or_a_result_past_its_regress_pct() {
        assert!(regressed(&comparison(1, false)));
        assert!(!regressed(&comparison(0, false)), "worse within regress_pct is no regression");
        assert!(regressed(&comparison(0, true)));
        assert!(format_comparison(&comparison(0, true)).contains("WORSE past regress_pct"));
    }

    #[test]
    fn columns_line_up_and_the_last_is_not_padded() {
        let text = table(&["A", "LONGER"], &[vec!["wide cell".into(), "x".into()], vec!["b".into(), String::new()]]);
        assert_eq!(text, "A          LONGER\nwide cell  x\nb\n");
    }
}
