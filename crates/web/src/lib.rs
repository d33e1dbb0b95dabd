//! The master's HTTP side: the JSON API and the web dashboard (server-rendered pages with
//! askama, live updates by server-sent events, logins for the pages that start and cancel
//! runs, and the files slaves fetch), on `web_listen`, over HTTP or HTTPS.
//!
//! It reaches the core only through [`CoreHandle`] (queries and commands) and names the
//! core's types only through `xrdtest_master::handle`.
//!
//! Layout:
//! - [`api`] — the HTTP JSON API (`docs/api.md`); writes need the API token.
//! - [`auth`] — login with the configured password, signed session cookie, CSRF tokens,
//!   rate-limited wrong passwords.
//! - [`pages`] — every page and the server-sent event streams.
//! - [`files`] — slave-facing downloads: scripts and files of the definitions, the CA.
//! - [`notices`] — what a form's action said, for the page it redirects to.
//! - [`security`] — the security headers of each kind of response, set by one middleware.
//! - [`escape`] — HTML escaping and percent-encoding for what is built outside templates.
//! - [`svg`] — the trends charts (durations, and each result's values), drawn on the server.
//! - [`result_history`] — each result's values across a suite's sessions, and as CSV.
//! - [`compare`] — two sessions loaded and compared, for the API and the page.
//! - [`csv`] — RFC 4180 CSV text.
//! - [`https`] — the dashboard's TLS configuration and the listener that serves it.
//! - [`prometheus`] — `GET /metrics`, the master's state in Prometheus' text format.
//! - [`reports`] — a session's reports (JSON, JUnit, CSV, TAP) and its export, streamed.

pub mod api;
pub mod auth;
pub mod compare;
pub mod escape;
pub mod files;
pub mod https;
pub mod notices;
pub mod pages;
pub mod password;
pub mod prometheus;
pub mod reports;
pub mod result_history;
pub mod security;
pub mod server;
pub mod svg;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use xrdtest_master::handle::CoreHandle;

pub use https::tls_config;

/// What every web handler can reach.
pub struct WebState {
    pub core: CoreHandle,
    pub auth: Arc<auth::AuthState>,
    pub notices: notices::Notices,
}

/// The JSON API and the dashboard on one router, sharing one login state (a logout ends the
/// session for both).
pub fn router(handle: CoreHandle) -> Router {
    let auth = Arc::new(auth::AuthState::new(handle.web_settings()));
    let hosts = Arc::new(security::HostCheck::new(&handle.web_settings().allowed_hosts, handle.web_listen()));
    api::router(handle.clone(), auth.clone())
        .merge(dashboard(handle, auth))
        .layer(axum::middleware::from_fn_with_state(hosts, security::check_host))
}

/// The dashboard's routes, ready to be merged with the JSON API.
pub fn dashboard(handle: CoreHandle, auth: Arc<auth::AuthState>) -> Router {
    let state = Arc::new(WebState { core: handle, auth, notices: notices::Notices::default() });
    Router::new()
        .merge(auth::routes())
        .merge(files::routes())
        .merge(pages::routes())
        .with_state(state)
        .layer(axum::middleware::map_response(security::write_headers))
}

/// Serves [`router`] on `listener` (bound to `web_listen`), over HTTPS when `tls` is given
/// (see [`tls_config`]). The router is built at once; the future runs until the server
/// fails.
pub fn serve(
    handle: CoreHandle,
    listener: TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
    let app = router(handle);
    async move {
        match tls {
            None => server::serve(listener, app).await,
            Some(tls) => server::serve(https::TlsListener::new(listener, tls), app).await,
        }
    }
}
