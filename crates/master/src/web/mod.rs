//! The web dashboard: server-rendered pages (askama), live updates by server-sent events,
//! logins for the pages that start and cancel runs, and the files slaves fetch.
//!
//! Layout:
//! - [`auth`] — login with the configured password, signed session cookie, CSRF tokens,
//!   rate-limited wrong passwords.
//! - [`pages`] — every page and the server-sent event streams.
//! - [`files`] — slave-facing downloads: scripts and files of the definitions, the CA.
//! - [`notices`] — what a form's action said, for the page it redirects to.
//! - [`svg`] — the trends chart, drawn on the server.

pub mod auth;
pub mod files;
pub mod notices;
pub mod pages;
pub mod svg;

use std::sync::Arc;

use axum::Router;

use crate::master::Master;

/// What every web handler can reach.
pub struct WebState {
    pub master: Arc<Master>,
    pub auth: auth::AuthState,
    pub notices: notices::Notices,
}

/// The dashboard's routes, ready to be merged with the JSON API.
pub fn router(master: Arc<Master>) -> Router {
    let auth = auth::AuthState::new(&master.config);
    let state = Arc::new(WebState { master, auth, notices: notices::Notices::default() });
    Router::new().merge(auth::routes()).merge(files::routes()).merge(pages::routes()).with_state(state)
}
