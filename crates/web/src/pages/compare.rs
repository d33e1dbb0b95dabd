//! `/compare?a=ID&b=ID`: session B against session A, per case instance (state change,
//! duration delta) and per result and slave (values and deltas), regressions first. The
//! same comparison as `GET /api/compare` (see `crate::compare`), in the dashboard's look.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use xrdtest_model::CaseState;
use xrdtest_report::compare::{CaseComparison, Change, Comparison, ResultComparison, SessionSide};
use xrdtest_report::format::human_duration;

use super::{check_reader, format, render, Nav};
use crate::auth::Viewer;
use crate::WebState;

#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct CompareQuery {
    a: String,
    b: String,
}

/// A session as the page's header shows it.
pub struct SideView {
    /// `A` or `B`.
    pub name: &'static str,
    pub id: u64,
    pub suite: String,
    pub cls: &'static str,
    pub label: String,
    pub created: String,
    pub duration: String,
    pub commit: String,
}

fn side(name: &'static str, side: &SessionSide) -> SideView {
    let (cls, label) = format::session_state(side.state);
    let flaky = side.verdict == "flaky";
    SideView {
        name,
        id: side.id,
        suite: side.suite.clone(),
        cls: if flaky { "flaky" } else { cls },
        label: if flaky { "flaky".to_string() } else { label.to_string() },
        created: format::time(side.created_ms),
        duration: format::span(side.started_ms, side.ended_ms, xrdtest_model::now_ms()),
        commit: side.commit.as_deref().map(format::short).unwrap_or_default(),
    }
}

/// A case state as a badge: its class and words; empty when the side has no such instance.
fn state_badge(state: Option<CaseState>) -> (&'static str, &'static str) {
    state.map(format::case_state).unwrap_or(("", ""))
}

fn change_cls(change: Change) -> &'static str {
    match change {
        Change::Regression | Change::StillFailing => "failed",
        Change::Fixed => "passed",
        Change::New => "running",
        Change::Gone => "skipped",
        Change::Unfinished => "pending",
        Change::Unchanged => "",
    }
}

pub struct CaseRow {
    pub instance: String,
    pub pass: u32,
    pub a_cls: &'static str,
    pub a_label: &'static str,
    pub b_cls: &'static str,
    pub b_label: &'static str,
    pub change: &'static str,
    pub change_label: &'static str,
    pub change_cls: &'static str,
    pub duration_a: String,
    pub duration_b: String,
    pub delta: String,
    pub worse: usize,
}

/// `+1.5 s (+25.0%)`, `−200 ms`; empty without both sides.
fn duration_delta(case: &CaseComparison) -> String {
    let Some(delta) = case.duration_delta_ms else { return String::new() };
    let sign = if delta < 0 { "−" } else { "+" };
    let text = format!("{sign}{}", human_duration(delta.unsigned_abs()));
    match case.duration_delta_pct {
        Some(pct) => format!("{text} ({})", percent(pct)),
        None => text,
    }
}

/// `+25.0%`, `−3.2%`.
fn percent(pct: f64) -> String {
    match pct < 0.0 {
        true => format!("−{:.1}%", -pct),
        false => format!("+{pct:.1}%"),
    }
}

fn case_row(case: &CaseComparison) -> CaseRow {
    let (a_cls, a_label) = state_badge(case.state_a);
    let (b_cls, b_label) = state_badge(case.state_b);
    CaseRow {
        instance: case.instance.clone(),
        pass: case.pass,
        a_cls,
        a_label,
        b_cls,
        b_label,
        change: case.change.as_str(),
        change_label: case.change.label(),
        change_cls: change_cls(case.change),
        duration_a: case.duration_a_ms.map(human_duration).unwrap_or_default(),
        duration_b: case.duration_b_ms.map(human_duration).unwrap_or_default(),
        delta: duration_delta(case),
        worse: case.results.iter().filter(|r| r.worse).count(),
    }
}

pub struct ResultRow {
    pub instance: String,
    pub pass: u32,
    pub name: String,
    pub slave: String,
    pub a: String,
    pub b: String,
    pub delta: String,
    pub pct: String,
    /// `worse`, `better` or empty (no change, or no direction known).
    pub cls: &'static str,
    pub note: String,
}

/// A number with its unit; empty when absent.
fn value(number: Option<f64>, unit: &str) -> String {
    match (number, unit.is_empty()) {
        (None, _) => String::new(),
        (Some(n), true) => n.to_string(),
        (Some(n), false) => format!("{n} {unit}"),
    }
}

fn result_row(case: &CaseComparison, result: &ResultComparison) -> ResultRow {
    let delta = result.delta.map(|d| if d > 0.0 { format!("+{d}") } else { d.to_string().replacen('-', "−", 1) });
    let cls = match (result.worse, result.better, result.delta) {
        (true, _, _) => "worse",
        (false, Some(_), Some(d)) if d != 0.0 => "better",
        _ => "",
    };
    let note = match (result.a, result.b, result.better) {
        (None, Some(_), _) => "new".to_string(),
        (Some(_), None, _) => "gone".to_string(),
        _ if result.past_regress_pct => "past regress_pct".to_string(),
        (_, _, Some(better)) => format!("{} is better", better.as_str()),
        _ => String::new(),
    };
    ResultRow {
        instance: case.instance.clone(),
        pass: case.pass,
        name: result.name.clone(),
        slave: result.slave.clone(),
        a: value(result.a, &result.unit),
        b: value(result.b, &result.unit),
        delta: delta
            .map(|d| if result.unit.is_empty() { d } else { format!("{d} {}", result.unit) })
            .unwrap_or_default(),
        pct: result.delta_pct.map(percent).unwrap_or_default(),
        cls,
        note,
    }
}

#[derive(Template)]
#[template(path = "compare.html")]
struct ComparePage {
    nav: Nav,
    a_text: String,
    b_text: String,
    error: String,
    /// A comparison is shown (else the form alone, with `error`).
    shown: bool,
    /// A, then B.
    sides: Vec<SideView>,
    a_id: u64,
    b_id: u64,
    suite: String,
    same_suite: bool,
    counts: xrdtest_report::compare::Counts,
    cases: Vec<CaseRow>,
    results: Vec<ResultRow>,
    repeated: bool,
}

impl ComparePage {
    fn new(nav: Nav, query: &CompareQuery) -> ComparePage {
        ComparePage {
            nav,
            a_text: query.a.trim().to_string(),
            b_text: query.b.trim().to_string(),
            error: String::new(),
            shown: false,
            sides: Vec::new(),
            a_id: 0,
            b_id: 0,
            suite: String::new(),
            same_suite: true,
            counts: Default::default(),
            cases: Vec::new(),
            results: Vec::new(),
            repeated: false,
        }
    }

    fn with(mut self, comparison: &Comparison) -> ComparePage {
        self.shown = true;
        self.a_text = comparison.a.id.to_string();
        self.b_text = comparison.b.id.to_string();
        self.same_suite = comparison.a.suite == comparison.b.suite;
        self.sides = vec![side("A", &comparison.a), side("B", &comparison.b)];
        (self.a_id, self.b_id, self.suite) = (comparison.a.id, comparison.b.id, comparison.b.suite.clone());
        self.counts = comparison.counts.clone();
        self.repeated = comparison.cases.iter().any(|c| c.pass > 1);
        self.cases = comparison.cases.iter().map(case_row).collect();
        self.results =
            comparison.cases.iter().flat_map(|case| case.results.iter().map(move |r| result_row(case, r))).collect();
        self
    }
}

pub async fn compare_page(
    State(state): State<Arc<WebState>>,
    viewer: Viewer,
    uri: Uri,
    Query(query): Query<CompareQuery>,
) -> Response {
    if let Err(response) = check_reader(&state, &viewer, &uri) {
        return response;
    }
    let nav = |title: String| Nav::new(&state, &viewer, &uri, "sessions", title);
    // No sessions asked for yet: the form alone.
    if query.a.trim().is_empty() && query.b.trim().is_empty() {
        return render(StatusCode::OK, &ComparePage::new(nav("Compare".into()), &query));
    }
    match crate::compare::load(&state.core, Some(&query.a), Some(&query.b)) {
        Ok(comparison) => {
            let title = format!("Compare #{} → #{}", comparison.a.id, comparison.b.id);
            render(StatusCode::OK, &ComparePage::new(nav(title), &query).with(&comparison))
        }
        Err(refusal) => {
            let mut page = ComparePage::new(nav("Compare".into()), &query);
            page.error = refusal.message;
            render(refusal.status, &page)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xrdtest_defs::Better;

    fn result(a: Option<f64>, b: Option<f64>, better: Option<Better>, worse: bool) -> ResultComparison {
        let delta = a.zip(b).map(|(a, b)| b - a);
        ResultComparison {
            name: "lat".into(),
            slave: "s1".into(),
            unit: "ms".into(),
            a,
            b,
            delta,
            delta_pct: a.zip(delta).map(|(a, d)| d / a * 100.0),
            better,
            worse,
            past_regress_pct: false,
        }
    }

    fn case() -> CaseComparison {
        CaseComparison {
            instance: "c".into(),
            case: "c".into(),
            pass: 1,
            state_a: Some(CaseState::Passed),
            state_b: None,
            change: Change::Gone,
            duration_a_ms: Some(2000),
            duration_b_ms: Some(1500),
            duration_delta_ms: Some(-500),
            duration_delta_pct: Some(-25.0),
            results: Vec::new(),
        }
    }

    #[test]
    fn deltas_read_with_signs_units_and_a_direction() {
        let row = result_row(&case(), &result(Some(10.0), Some(12.5), Some(Better::Lower), true));
        assert_eq!((row.a.as_str(), row.b.as_str(), row.delta.as_str()), ("10 ms", "12.5 ms", "+2.5 ms"));
        assert_eq!((row.pct.as_str(), row.cls, row.note.as_str()), ("+25.0%", "worse", "lower is better"));
        let row = result_row(&case(), &result(Some(10.0), Some(8.0), Some(Better::Lower), false));
        assert_eq!((row.delta.as_str(), row.pct.as_str(), row.cls), ("−2 ms", "−20.0%", "better"));
        let row = result_row(&case(), &result(Some(10.0), Some(8.0), None, false));
        assert_eq!(row.cls, "", "no threshold: no judgement");
        let row = result_row(&case(), &result(None, Some(8.0), None, false));
        assert_eq!((row.a.as_str(), row.delta.as_str(), row.note.as_str()), ("", "", "new"));
        let case_row = case_row(&case());
        assert_eq!(case_row.delta, "−500 ms (−25.0%)");
        assert_eq!((case_row.a_label, case_row.b_label, case_row.change_cls), ("passed", "", "skipped"));
    }
}
