//! Every page of the dashboard, server-rendered with askama (`crates/web/templates/`), and
//! the server-sent event streams that keep the live ones current.
//!
//! Pages (all call [`require_reader`] first):
//! - `/` dashboard: slaves and hypervisors, running sessions with their progress, the queue,
//!   the next scheduled runs, the latest failures; live through `/dashboard/events`.
//! - `/suites`: every suite with its definition state (or errors with file and field), its
//!   schedule, its last 20 results, and a run-now button.
//! - `/sessions`: the history, filtered by suite, state and dates, paginated.
//! - `/sessions/{id}`: the grid of stages × slaves; live through `/sessions/{id}/events`.
//! - `/sessions/{id}/stages/{stage_id}`: one cell's output and logs; live through
//!   `/stages/{stage_id}/events?from=SEQ&session=ID`.
//! - `/trends/{suite}`: each case's duration and result across sessions, as an SVG chart,
//!   and a chart per reported result; `/trends/{suite}/metrics.csv?instance=I&result=R`
//!   downloads one result's values.
//! - `/compare?a=ID&b=ID`: session B against session A, regressions first.
//! - `/clusters`: each cluster's definition and its state on a hypervisor, with its steps;
//!   `/hypervisors`: each hypervisor's capacity and clusters. Both reload themselves when
//!   `/clusters/events` says the board changed.
//! - `/slaves`.
//!
//! Write actions are HTML forms with the hidden `csrf` field, checked by [`require_writer`]:
//! `POST /suites/{name}/run` (303 to the new session), `POST /sessions/{id}/cancel` (303
//! back to the session), `POST /clusters/{name}/start|stop` (303 back to the clusters page
//! with a notice saying what was done or why not, see `notices.rs`), `POST
//! /peers/{name}/approve|revoke` (303 back to the slaves page).
//!
//! No page scans every session: lists come from the store's indexes, newest first, and
//! stop when they have what they show (see `store.rs`).

mod clusters;
mod compare;
mod dashboard;
mod format;
mod hypervisors;
mod infra;
mod live;
mod sessions;
mod suites;
mod trends;
mod values;

use std::sync::Arc;

use askama::Template;
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tracing::warn;

use crate::auth::{login_url, require_reader, Viewer};
use crate::security::{mark, Kind};
use crate::WebState;

pub fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/", get(dashboard::dashboard_page))
        .route("/dashboard/events", get(live::dashboard_events))
        .route("/suites", get(suites::suites_page))
        .route("/suites/{name}/run", post(suites::run_now))
        .route("/sessions", get(sessions::history))
        .route("/sessions/{id}", get(sessions::session_page))
        .route("/sessions/{id}/cancel", post(sessions::cancel))
        .route("/sessions/{id}/keep", post(sessions::keep))
        .route("/sessions/{id}/events", get(live::session_events))
        .route("/sessions/{id}/stages/{stage_id}", get(sessions::stage_page))
        .route("/stages/{stage_id}/events", get(live::stage_events))
        .route("/trends/{suite}", get(trends::trends_page))
        .route("/trends/{suite}/metrics.csv", get(trends::metrics_csv))
        .route("/compare", get(compare::compare_page))
        .route("/clusters", get(clusters::clusters_page))
        .route("/clusters/events", get(live::infra_events))
        .route("/clusters/{name}/{action}", post(clusters::command))
        .route("/hypervisors", get(hypervisors::hypervisors_page))
        .route("/slaves", get(infra::slaves))
        .route("/peers/{name}/{action}", post(infra::peer_decision))
}

/// What the base template needs: the top navigation, the viewer's login, the version.
pub struct Nav {
    /// Which navigation entry is the current page.
    pub active: &'static str,
    pub title: String,
    pub version: &'static str,
    pub logged_in: bool,
    /// A password is configured: logging in (and so writing) is possible.
    pub logins_enabled: bool,
    /// The hidden `csrf` field of every form.
    pub csrf: String,
    /// `/login?next=<this page>`.
    pub login_href: String,
}

impl Nav {
    pub fn new(state: &WebState, viewer: &Viewer, uri: &Uri, active: &'static str, title: impl Into<String>) -> Nav {
        Nav {
            active,
            title: title.into(),
            version: env!("CARGO_PKG_VERSION"),
            logged_in: viewer.logged_in,
            logins_enabled: state.auth.logins_enabled(),
            csrf: viewer.csrf.clone(),
            login_href: login_url(path_of(uri)),
        }
    }
}

/// The request's path and query, for redirects back to it.
pub fn path_of(uri: &Uri) -> &str {
    uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
}

/// `Err` is the login redirect when reading needs a login.
#[allow(clippy::result_large_err)]
pub fn check_reader(state: &WebState, viewer: &Viewer, uri: &Uri) -> Result<(), Response> {
    require_reader(viewer, state, path_of(uri))
}

/// A rendered page with `status`; a template error is logged and answered 500.
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => {
            let policy = crate::security::page_policy(&html);
            let mut response = (status, Html(html)).into_response();
            // Pages show live state: never from a cache.
            response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            if let Ok(value) = HeaderValue::from_str(&policy) {
                response.headers_mut().insert(axum::http::header::CONTENT_SECURITY_POLICY, value);
            }
            mark(response, Kind::Page)
        }
        Err(err) => {
            warn!(error = %err, "cannot render a page");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered\n").into_response()
        }
    }
}

pub fn page(template: &impl Template) -> Response {
    render(StatusCode::OK, template)
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    nav: Nav,
    status: u16,
    heading: &'static str,
    message: String,
}

/// An error page in the dashboard's look.
pub fn error_page(
    state: &WebState,
    viewer: &Viewer,
    uri: &Uri,
    status: StatusCode,
    message: impl Into<String>,
) -> Response {
    let heading = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_REQUEST => "Bad request",
        StatusCode::CONFLICT => "Conflict",
        _ => "Error",
    };
    let template = ErrorPage {
        nav: Nav::new(state, viewer, uri, "", heading),
        status: status.as_u16(),
        heading,
        message: message.into(),
    };
    render(status, &template)
}

/// A store failure, logged and shown as a 500 page.
pub fn store_error(state: &WebState, viewer: &Viewer, uri: &Uri, err: impl std::fmt::Display) -> Response {
    warn!(error = %err, path = %uri, "store read failed");
    error_page(
        state,
        viewer,
        uri,
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("The session store could not be read: {err}"),
    )
}

/// `303 See Other` to `location` (after a form).
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(axum::http::header::LOCATION, value);
    }
    response
}

/// The form every write action sends: only its CSRF token.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
pub struct CsrfForm {
    pub csrf: String,
}
