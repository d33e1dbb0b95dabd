//! A suite's trends: each case instance's duration and result across its latest sessions
//! (one point per pass of a repeated session), then one chart per result each instance
//! reported (per slave, with the case's bounds; at most [`MAX_CHARTS`], the rest named),
//! each downloadable as CSV (`/trends/{suite}/metrics.csv?instance=I&result=R`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use xrdtest_defs::{Suite, Threshold};
use xrdtest_model::{CaseState, SessionRecord, StageId, StageValues};

use super::{check_reader, error_page, format, page, store_error, Nav};
use crate::auth::Viewer;
use crate::result_history::{self, MetricHistory};
use crate::security::{mark, Kind};
use crate::svg::metric::metric_svg;
use crate::svg::{series_colour, trends_svg, CaseSeries, TrendPoint, TrendResult};
use crate::{escape, WebState};

/// The chart covers at most this many of the latest sessions.
pub const TREND_SESSIONS: usize = 200;
/// Past this many values on the page, result charts mark only failed points (the lines
/// carry the rest), so that a suite with hundreds of results keeps a light page.
const PAGE_DOTS: usize = 6_000;
/// Past this many values in one chart, it marks only its failed points.
const CHART_DOTS: usize = 400;
/// The page draws at most this many result charts, the first in case order (the
/// definition's instances, then older ones; results by name); it names the others.
pub const MAX_CHARTS: usize = 200;
/// Of the charts left out, at most this many are listed by name with their CSV link.
pub const MAX_LISTED: usize = 1_000;

/// One series per case instance (by its recorded name), in the order `preferred` gives (the
/// current definition's instances), then any other in the order it first appears.
pub fn case_series(records: &[SessionRecord], preferred: &[String]) -> Vec<CaseSeries> {
    let mut order: Vec<String> = preferred.to_vec();
    for record in records {
        for case in &record.cases {
            if !order.contains(&case.name) {
                order.push(case.name.clone());
            }
        }
    }
    let mut series: Vec<CaseSeries> =
        order.iter().map(|name| CaseSeries { name: name.clone(), points: Vec::new() }).collect();
    let index: HashMap<&str, usize> = order.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    for record in records {
        for case in &record.cases {
            let Some(&at) = index.get(case.name.as_str()) else { continue };
            let result = match case.state {
                CaseState::Passed => TrendResult::Passed,
                CaseState::Flaky => TrendResult::Flaky,
                CaseState::Failed => TrendResult::Failed,
                CaseState::NotRun => TrendResult::NotRun,
                CaseState::Pending | CaseState::Running => TrendResult::Unfinished,
            };
            let duration_ms = match (case.started_ms, case.ended_ms, result) {
                (Some(start), Some(end), TrendResult::Passed | TrendResult::Failed | TrendResult::Flaky) => {
                    Some(end.saturating_sub(start))
                }
                _ => None,
            };
            series[at].points.push(TrendPoint { session: record.id, pass: case.repetition, duration_ms, result });
        }
    }
    series.retain(|s| !s.points.is_empty());
    series
}

pub struct LegendRow {
    pub name: String,
    pub colour: &'static str,
    pub runs: usize,
    pub passed: usize,
    pub failed: usize,
    pub flaky: usize,
    /// Passed out of passed, failed and flaky (a flaky run is not a pass).
    pub rate: String,
    pub median: String,
    pub last: String,
    pub last_cls: &'static str,
}

fn legend(series: &[CaseSeries]) -> Vec<LegendRow> {
    series
        .iter()
        .enumerate()
        .map(|(index, case)| {
            let passed = case.points.iter().filter(|p| p.result == TrendResult::Passed).count();
            let failed = case.points.iter().filter(|p| p.result == TrendResult::Failed).count();
            let flaky = case.points.iter().filter(|p| p.result == TrendResult::Flaky).count();
            let mut durations: Vec<u64> = case.points.iter().filter_map(|p| p.duration_ms).collect();
            durations.sort_unstable();
            let last = case.points.last();
            LegendRow {
                name: case.name.clone(),
                colour: series_colour(index),
                runs: case.points.len(),
                passed,
                failed,
                flaky,
                rate: (passed * 100)
                    .checked_div(passed + failed + flaky)
                    .map(|rate| format!("{rate}%"))
                    .unwrap_or_default(),
                median: durations.get(durations.len() / 2).map(|ms| format::duration(*ms)).unwrap_or_default(),
                last: last.map(|p| p.result.label()).unwrap_or_default().to_string(),
                last_cls: match last.map(|p| p.result) {
                    Some(TrendResult::Passed) => "passed",
                    Some(TrendResult::Failed) => "failed",
                    Some(TrendResult::Flaky) => "flaky",
                    Some(TrendResult::Unfinished) => "running",
                    _ => "skipped",
                },
            }
        })
        .collect()
}

/// One result chart of the page.
pub struct MetricCard {
    pub instance: String,
    pub result: String,
    pub unit: String,
    pub svg: String,
    pub csv_href: String,
    pub values: usize,
    pub failed: usize,
    /// The newest value with its unit.
    pub last: String,
}

/// The `[results.NAME]` thresholds of the suite's cases in service, by case.
fn case_thresholds(definition: Option<&Suite>) -> HashMap<&str, &BTreeMap<String, Threshold>> {
    definition.into_iter().flat_map(|s| &s.tests).map(|case| (case.name.as_str(), &case.results)).collect()
}

/// A result history the page does not draw: its names and its CSV link.
pub struct LeftOut {
    pub instance: String,
    pub result: String,
    pub csv_href: String,
}

/// The page's result charts: the first [`MAX_CHARTS`] histories drawn, the rest left out
/// (counted; the first [`MAX_LISTED`] of them named).
pub struct MetricCards {
    pub drawn: Vec<MetricCard>,
    pub left_out: Vec<LeftOut>,
    pub left_out_count: usize,
}

fn csv_href(suite: &str, history: &MetricHistory) -> String {
    format!(
        "/trends/{}/metrics.csv?instance={}&result={}",
        escape::url_component(suite),
        escape::url_component(&history.instance),
        escape::url_component(&history.result)
    )
}

fn metric_cards(suite: &str, histories: &[MetricHistory], definition: Option<&Suite>) -> MetricCards {
    let thresholds = case_thresholds(definition);
    let (drawn, rest) = histories.split_at(histories.len().min(MAX_CHARTS));
    let total: usize = drawn.iter().map(|h| h.points.len()).sum();
    let left_out = rest
        .iter()
        .take(MAX_LISTED)
        .map(|history| LeftOut {
            instance: history.instance.clone(),
            result: history.result.clone(),
            csv_href: csv_href(suite, history),
        })
        .collect();
    let drawn = drawn
        .iter()
        .map(|history| {
            let threshold = thresholds.get(history.case.as_str()).and_then(|t| t.get(&history.result));
            let dots = total <= PAGE_DOTS && history.points.len() <= CHART_DOTS;
            let unit = history.unit().to_string();
            MetricCard {
                svg: metric_svg(history, threshold, dots),
                csv_href: csv_href(suite, history),
                values: history.points.len(),
                failed: history.points.iter().filter(|p| p.passed == Some(false)).count(),
                last: history
                    .points
                    .last()
                    .map(|p| if p.unit.is_empty() { p.value.to_string() } else { format!("{} {}", p.value, p.unit) })
                    .unwrap_or_default(),
                instance: history.instance.clone(),
                result: history.result.clone(),
                unit,
            }
        })
        .collect();
    MetricCards { drawn, left_out, left_out_count: rest.len() }
}

/// What every run of each record reported: one store read per run, once per request.
fn values_of(state: &WebState, records: &[SessionRecord]) -> Result<Vec<BTreeMap<StageId, StageValues>>, String> {
    records.iter().map(|record| state.core.session_values(record).map_err(|err| err.to_string())).collect()
}

#[derive(Template)]
#[template(path = "trends.html")]
struct TrendsPage {
    nav: Nav,
    suite: String,
    svg: String,
    legend: Vec<LegendRow>,
    sessions: usize,
    first: String,
    last: String,
    capped: bool,
    metrics: MetricCards,
    /// The newest session, whose `report.json` holds every value it got.
    newest: u64,
    max_charts: usize,
}

pub async fn trends_page(
    State(state): State<Arc<WebState>>,
    viewer: Viewer,
    uri: Uri,
    Path(suite): Path<String>,
) -> Response {
    if let Err(response) = check_reader(&state, &viewer, &uri) {
        return response;
    }
    let records = match state.core.suite_records(&suite, TREND_SESSIONS) {
        Ok(records) => records,
        Err(err) => return store_error(&state, &viewer, &uri, err),
    };
    let definitions = state.core.definitions();
    let definition = definitions.repository.suites.get(&suite);
    if records.is_empty() && definition.is_none() {
        return error_page(&state, &viewer, &uri, StatusCode::NOT_FOUND, format!("There is no suite `{suite}`."));
    }
    let preferred: Vec<String> = definition
        .map(|s| s.tests.iter().flat_map(|t| t.instances.iter().map(|i| i.name.clone())).collect())
        .unwrap_or_default();
    let series = case_series(&records, &preferred);
    let values = match values_of(&state, &records) {
        Ok(values) => values,
        Err(err) => return store_error(&state, &viewer, &uri, err),
    };
    let histories = result_history::histories(records.iter().zip(&values), &preferred, None);
    page(&TrendsPage {
        nav: Nav::new(&state, &viewer, &uri, "suites", format!("Trends · {suite}")),
        svg: trends_svg(&series),
        legend: legend(&series),
        sessions: records.len(),
        first: records.first().map(|r| format::time(r.created_ms)).unwrap_or_default(),
        last: records.last().map(|r| format::time(r.created_ms)).unwrap_or_default(),
        capped: records.len() == TREND_SESSIONS,
        metrics: metric_cards(&suite, &histories, definition),
        newest: records.last().map(|r| r.id).unwrap_or_default(),
        max_charts: MAX_CHARTS,
        suite,
    })
}

/// The query of `metrics.csv`: which instance's which result.
#[derive(serde::Deserialize)]
pub struct MetricQuery {
    instance: Option<String>,
    result: Option<String>,
}

/// A file name's part of a name: letters, digits, `.`, `-` and `_` kept, the rest `_`.
fn file_part(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect()
}

/// `GET /trends/{suite}/metrics.csv?instance=I&result=R`: the history of one result of one
/// case instance over the page's sessions, as CSV.
pub async fn metrics_csv(
    State(state): State<Arc<WebState>>,
    viewer: Viewer,
    uri: Uri,
    Path(suite): Path<String>,
    Query(query): Query<MetricQuery>,
) -> Response {
    if let Err(response) = check_reader(&state, &viewer, &uri) {
        return response;
    }
    let (Some(instance), Some(result)) = (query.instance.as_deref(), query.result.as_deref()) else {
        let message = "Say which values: `?instance=INSTANCE&result=NAME` (the trends page links each chart's).";
        return error_page(&state, &viewer, &uri, StatusCode::BAD_REQUEST, message);
    };
    let records = match state.core.suite_records(&suite, TREND_SESSIONS) {
        Ok(records) => records,
        Err(err) => return store_error(&state, &viewer, &uri, err),
    };
    if records.is_empty() && !state.core.definitions().repository.suites.contains_key(&suite) {
        return error_page(&state, &viewer, &uri, StatusCode::NOT_FOUND, format!("There is no suite `{suite}`."));
    }
    let values = match values_of(&state, &records) {
        Ok(values) => values,
        Err(err) => return store_error(&state, &viewer, &uri, err),
    };
    let Some(history) = result_history::histories(records.iter().zip(&values), &[], Some((instance, result))).pop()
    else {
        let message =
            format!("No value of `{result}` from `{instance}` in the last {} sessions of {suite}.", records.len());
        return error_page(&state, &viewer, &uri, StatusCode::NOT_FOUND, message);
    };
    let name = format!("{}-{}-{}.csv", file_part(&suite), file_part(instance), file_part(result));
    let mut response = result_history::csv(&history).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(CONTENT_DISPOSITION, value);
    }
    mark(response, Kind::Download)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xrdtest_model::{CaseRecord, SessionState, Trigger};

    type CaseSpec<'a> = (&'a str, CaseState, Option<(u64, u64)>);

    fn record(id: u64, cases: &[CaseSpec]) -> SessionRecord {
        SessionRecord {
            state: SessionState::Passed,
            cases: cases
                .iter()
                .map(|(name, state, times)| CaseRecord {
                    state: *state,
                    started_ms: times.map(|t| t.0),
                    ended_ms: times.map(|t| t.1),
                    ..CaseRecord::pending(name, name, Vec::new(), 1)
                })
                .collect(),
            ..SessionRecord::queued(id, "s", Trigger::Api, Vec::new(), id)
        }
    }

    #[test]
    fn series_follow_the_definition_then_older_cases() {
        let records = [
            record(1, &[("old", CaseState::Passed, Some((0, 10))), ("a", CaseState::Failed, Some((0, 30)))]),
            record(2, &[("a", CaseState::Passed, Some((5, 25))), ("b", CaseState::NotRun, None)]),
            record(3, &[("a", CaseState::Running, Some((5, 6)))]),
        ];
        let series = case_series(&records, &["b".into(), "a".into(), "gone".into()]);
        let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["b", "a", "old"], "cases without points are left out");
        assert_eq!(
            series[1].points,
            [
                TrendPoint { session: 1, pass: 1, duration_ms: Some(30), result: TrendResult::Failed },
                TrendPoint { session: 2, pass: 1, duration_ms: Some(20), result: TrendResult::Passed },
                TrendPoint { session: 3, pass: 1, duration_ms: None, result: TrendResult::Unfinished },
            ]
        );
        let rows = legend(&series);
        assert_eq!((rows[1].runs, rows[1].passed, rows[1].failed, rows[1].rate.as_str()), (3, 1, 1, "50%"));
        assert_eq!(rows[0].rate, "", "never ran");
    }

    fn history(instance: &str, result: &str, points: usize) -> MetricHistory {
        let point = |session| crate::result_history::MetricPoint {
            session,
            pass: 1,
            slave: "s1".into(),
            value: 1.0,
            unit: "ms".into(),
            passed: None,
            ended_ms: None,
        };
        MetricHistory {
            instance: instance.into(),
            case: instance.into(),
            result: result.into(),
            points: (1..=points as u64).map(point).collect(),
        }
    }

    #[test]
    fn result_charts_are_capped_in_order_and_the_rest_named_with_their_csv() {
        let histories: Vec<MetricHistory> =
            (0..MAX_CHARTS + 5).map(|i| history(&format!("c{}", i / 100), &format!("r{:02}", i % 100), 1)).collect();
        let cards = metric_cards("ts", &histories, None);
        assert_eq!((cards.drawn.len(), cards.left_out_count, cards.left_out.len()), (MAX_CHARTS, 5, 5));
        assert_eq!((cards.drawn[0].instance.as_str(), cards.drawn[0].result.as_str()), ("c0", "r00"));
        let first_out = &cards.left_out[0];
        assert_eq!((first_out.instance.as_str(), first_out.result.as_str()), ("c2", "r00"), "the first past the cap");
        assert_eq!(first_out.csv_href, "/trends/ts/metrics.csv?instance=c2&result=r00");

        // Under the cap nothing is left out; far past it, the listing stops at MAX_LISTED.
        let cards = metric_cards("ts", &histories[..3], None);
        assert_eq!((cards.drawn.len(), cards.left_out_count), (3, 0));
        let many: Vec<MetricHistory> =
            (0..MAX_CHARTS + MAX_LISTED + 7).map(|i| history("c", &format!("r{i:05}"), 0)).collect();
        let cards = metric_cards("ts", &many, None);
        assert_eq!((cards.left_out_count, cards.left_out.len()), (MAX_LISTED + 7, MAX_LISTED));
    }

    #[test]
    fn the_dot_budget_counts_only_the_charts_drawn() {
        // 200 drawn charts of 10 values are within the page's budget; the 100 left out, of
        // 100 values each, would take the page past it.
        let histories: Vec<MetricHistory> = (0..MAX_CHARTS + 100)
            .map(|i| history("c", &format!("r{i:03}"), if i < MAX_CHARTS { 10 } else { 100 }))
            .collect();
        assert!(histories.iter().map(|h| h.points.len()).sum::<usize>() > PAGE_DOTS);
        let cards = metric_cards("ts", &histories, None);
        assert_eq!(cards.left_out_count, 100);
        assert!(cards.drawn.iter().all(|c| c.svg.contains("class=\"point\"")), "the drawn charts keep their dots");
    }

    #[test]
    fn flaky_cases_are_their_own_result_with_a_duration() {
        let records = [
            record(1, &[("a", CaseState::Flaky, Some((0, 40)))]),
            record(2, &[("a", CaseState::Passed, Some((0, 10)))]),
        ];
        let series = case_series(&records, &[]);
        assert_eq!(
            series[0].points[0],
            TrendPoint { session: 1, pass: 1, duration_ms: Some(40), result: TrendResult::Flaky }
        );
        let rows = legend(&series);
        assert_eq!((rows[0].passed, rows[0].flaky, rows[0].failed, rows[0].rate.as_str()), (1, 1, 0, "50%"));
        let records = [record(3, &[("a", CaseState::Flaky, Some((0, 40)))])];
        assert_eq!(legend(&case_series(&records, &[]))[0].last_cls, "flaky");
    }
}
