//! Two stored sessions compared ([`xrdtest_report::compare`]), each result judged by the
//! thresholds of the definitions in service: what `GET /api/compare` answers and the
//! `/compare` page shows.
//!
//! `a` is the session compared against (usually the older one), `b` the one looked at.
//! Without `a`, `b` is compared with the previous finished session of its suite.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use xrdtest_master::handle::{CoreHandle, PREVIOUS_LOOK_BACK};
use xrdtest_model::{SessionId, SessionRecord};
use xrdtest_report::compare::{compare, CaseThresholds, Comparison};
use xrdtest_report::SessionData;

/// Why there is no comparison: the status to answer and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal { status, message: message.into() }
    }

    fn store(err: impl std::fmt::Display) -> Refusal {
        Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the session store could not be read: {err}"))
    }
}

/// A session id given as `?name=text`.
fn parse_id(name: &str, text: &str) -> Result<SessionId, Refusal> {
    text.trim().trim_start_matches('#').parse().map_err(|_| {
        Refusal::new(StatusCode::BAD_REQUEST, format!("`{name}={text}`: a session id is a number, like `{name}=42`"))
    })
}

fn record(core: &CoreHandle, id: SessionId) -> Result<SessionRecord, Refusal> {
    core.session(id)
        .map_err(Refusal::store)?
        .ok_or_else(|| Refusal::new(StatusCode::NOT_FOUND, format!("no session {id}")))
}

/// The newest finished session of `b`'s suite older than `b` (the store's
/// [`CoreHandle::previous_finished`], with its look-back bound).
fn previous(core: &CoreHandle, b: &SessionRecord) -> Result<SessionRecord, Refusal> {
    match core.previous_finished(&b.suite, b.id).map_err(Refusal::store)? {
        Some(summary) => record(core, summary.id),
        None => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            format!(
                "session {} of {} has no earlier finished session to compare with (among the \
                 {PREVIOUS_LOOK_BACK} sessions of its suite before it): give `a=ID`",
                b.id, b.suite
            ),
        )),
    }
}

/// The `[results.NAME]` thresholds of the cases of `suites` in the definitions in service
/// (a later suite's win for a case both have).
fn thresholds(core: &CoreHandle, suites: &[&str]) -> CaseThresholds {
    let definitions = core.definitions();
    let mut all = CaseThresholds::new();
    for suite in suites {
        for case in definitions.repository.suites.get(*suite).into_iter().flat_map(|s| &s.tests) {
            if !case.results.is_empty() {
                all.insert(case.name.clone(), case.results.clone());
            }
        }
    }
    all
}

fn data(core: &CoreHandle, record: SessionRecord) -> Result<SessionData, Refusal> {
    let values = core.session_values(&record).map_err(Refusal::store)?;
    // A comparison shows no output: the tails stay empty.
    Ok(SessionData { record, values, tails: BTreeMap::new() })
}

/// A query value that says something.
fn given(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|t| !t.is_empty())
}

/// Compares session `b` with session `a` (given as the query's texts); without `a`, with
/// the previous finished session of `b`'s suite.
pub fn load(core: &CoreHandle, a: Option<&str>, b: Option<&str>) -> Result<Comparison, Refusal> {
    let Some(b_text) = given(b) else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "say which sessions to compare: `?a=ID&b=ID` (b against a; without a, b against the previous \
             finished session of its suite)",
        ));
    };
    let b = record(core, parse_id("b", b_text)?)?;
    let a = match given(a) {
        Some(text) => record(core, parse_id("a", text)?)?,
        None => previous(core, &b)?,
    };
    let thresholds = thresholds(core, &[&a.suite, &b.suite]);
    let (a, b) = (data(core, a)?, data(core, b)?);
    Ok(compare(&a, &b, Some(&thresholds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_numbers_and_the_refusal_says_how_to_write_one() {
        assert_eq!(parse_id("a", " 42 "), Ok(42));
        assert_eq!(parse_id("a", "#7"), Ok(7));
        let refusal = parse_id("b", "latest").unwrap_err();
        assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
        assert!(refusal.message.contains("`b=latest`") && refusal.message.contains("b=42"), "{}", refusal.message);
    }
}
