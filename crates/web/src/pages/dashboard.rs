//! The dashboard: who is connected, what runs, what waits, what comes next, what failed.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use serde::Serialize;
use xrdtest_master::handle::{CoreHandle, StoreError};
use xrdtest_model::{now_ms, SessionId, SessionState};

use super::hypervisors::{hypervisor_views, summary};
use super::infra::{peer_rows, PeerRow};
use super::sessions::{current_stage, flaky_count, progress, summary_row, SummaryRow};
use super::{check_reader, format, page, store_error, Nav};
use crate::auth::Viewer;
use crate::WebState;

/// How many failures, flaky sessions and next runs the dashboard lists.
const LATEST: usize = 10;
/// Flaky sessions are looked for among this many of the latest passed ones.
const FLAKY_LOOKBACK: usize = 50;

/// A session not yet ended; also sent live.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveRow {
    pub id: SessionId,
    pub suite: String,
    pub cls: &'static str,
    pub label: &'static str,
    pub done: usize,
    pub total: usize,
    pub percent: usize,
    pub current: String,
    /// Running for, or waiting for.
    pub since: String,
    /// Case instances that passed only when run again, so far.
    pub flaky: usize,
}

/// The unfinished sessions, oldest first: those under way (running or waiting for their
/// slaves) and those queued; and every id in one string, so the live page can tell when
/// the set changed.
pub fn active_sessions(core: &CoreHandle) -> Result<(Vec<ActiveRow>, Vec<ActiveRow>, String), StoreError> {
    let now = now_ms();
    let mut running = Vec::new();
    let mut queued = Vec::new();
    let mut ids = Vec::new();
    for summary in core.unfinished_sessions()? {
        let (cls, label) = format::session_state(summary.state);
        ids.push(summary.id.to_string());
        let mut row = ActiveRow {
            id: summary.id,
            suite: summary.suite.clone(),
            cls,
            label,
            done: 0,
            total: 0,
            percent: 0,
            current: String::new(),
            since: String::new(),
            flaky: summary.cases_flaky,
        };
        if summary.state == SessionState::Queued {
            row.since = format::duration(now.saturating_sub(summary.created_ms));
            queued.push(row);
            continue;
        }
        if let Some(record) = core.session(summary.id)? {
            let (done, total) = progress(&record);
            row.done = done;
            row.total = total;
            row.percent = (done * 100).checked_div(total).unwrap_or(0);
            row.current = match (summary.state, record.cluster.as_ref().and_then(|c| c.steps.last())) {
                (SessionState::StartingCluster, Some(step)) => {
                    format!("cluster: {}", format::cluster_state(&step.state).1)
                }
                _ => current_stage(&record),
            };
            row.since = format::span(record.started_ms.or(Some(record.created_ms)), None, now);
            row.flaky = flaky_count(&record);
        }
        running.push(row);
    }
    Ok((running, queued, ids.join(",")))
}

/// A hypervisor's line: connected or away, its clusters and VMs.
pub struct HypervisorLine {
    pub name: String,
    pub connected: bool,
    pub summary: String,
    pub address: String,
}

pub struct NextRun {
    pub suite: String,
    pub expression: String,
    pub at: String,
    pub relative: String,
    pub skipped_runs: u64,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    nav: Nav,
    slaves: Vec<PeerRow>,
    slaves_connected: usize,
    hypervisors: Vec<HypervisorLine>,
    hypervisors_connected: usize,
    running: Vec<ActiveRow>,
    queued: Vec<ActiveRow>,
    active_ids: String,
    next_runs: Vec<NextRun>,
    scheduler_enabled: bool,
    failures: Vec<SummaryRow>,
    /// Passed sessions with flaky cases, newest first.
    flaky: Vec<SummaryRow>,
    flaky_lookback: usize,
    /// The store's size, the free space beside it, and what retention keeps.
    store: String,
}

/// `store 12.3 MiB, 40.0 GiB free; retention: 30 days, the last 50 per suite`.
fn store_line(info: &xrdtest_master::handle::StoreInfo) -> String {
    let free = info.free_bytes.map(|b| format!(", {} free", format::bytes(b))).unwrap_or_default();
    let r = &info.retention;
    let mut rules = Vec::new();
    if let Some(days) = r.keep_days {
        rules.push(format!("{days} days"));
    }
    if let Some(n) = r.keep_per_suite {
        rules.push(format!("the last {n} per suite"));
    }
    if let Some(floor) = r.min_free_disk_bytes {
        rules.push(format!("at least {} free", format::bytes(floor)));
    }
    let rules = if rules.is_empty() { "every session is kept".to_string() } else { rules.join(", ") };
    format!("store {}{free}; retention: {rules}", format::bytes(info.bytes))
}

pub async fn dashboard_page(State(state): State<Arc<WebState>>, viewer: Viewer, uri: Uri) -> Response {
    if let Err(response) = check_reader(&state, &viewer, &uri) {
        return response;
    }
    let core = &state.core;
    let now = now_ms();
    let (running, queued, active_ids) = match active_sessions(core) {
        Ok(found) => found,
        Err(err) => return store_error(&state, &viewer, &uri, err),
    };
    let failures = match core.sessions_in_state(SessionState::Failed, LATEST) {
        Ok(found) => found.iter().map(|s| summary_row(s, now)).collect(),
        Err(err) => return store_error(&state, &viewer, &uri, err),
    };
    let flaky = match core.sessions_in_state(SessionState::Passed, FLAKY_LOOKBACK) {
        Ok(found) => found.iter().filter(|s| s.cases_flaky > 0).take(LATEST).map(|s| summary_row(s, now)).collect(),
        Err(err) => return store_error(&state, &viewer, &uri, err),
    };
    let (slaves, _) = peer_rows(core, now);
    let hypervisors: Vec<HypervisorLine> = hypervisor_views(&state)
        .iter()
        .map(|view| HypervisorLine {
            name: view.name.clone(),
            connected: view.connected,
            summary: summary(view),
            address: view.peer.as_ref().map(|p| p.address.clone()).unwrap_or_default(),
        })
        .collect();
    let mut next_runs: Vec<(i64, NextRun)> = core
        .schedules()
        .into_iter()
        .filter_map(|(suite, status)| {
            let at = status.next_run_ms?;
            Some((
                at,
                NextRun {
                    suite,
                    expression: status.expression,
                    at: format::time(at.max(0) as u64),
                    relative: format::relative(at, now),
                    skipped_runs: status.skipped_runs,
                },
            ))
        })
        .collect();
    next_runs.sort_by_key(|(at, _)| *at);
    page(&DashboardPage {
        nav: Nav::new(&state, &viewer, &uri, "dashboard", "Dashboard"),
        store: store_line(&state.core.store_info()),
        slaves_connected: slaves.iter().filter(|s| s.connected).count(),
        slaves,
        hypervisors_connected: hypervisors.iter().filter(|h| h.connected).count(),
        hypervisors,
        running,
        queued,
        active_ids,
        next_runs: next_runs.into_iter().take(LATEST).map(|(_, run)| run).collect(),
        scheduler_enabled: core.scheduler_enabled(),
        failures,
        flaky,
        flaky_lookback: FLAKY_LOOKBACK,
    })
}
