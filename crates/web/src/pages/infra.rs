//! Peers (slaves and hypervisors as connections) and the slaves page. Clusters and
//! hypervisors have their own pages: `clusters.rs`, `hypervisors.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use xrdtest_master::handle::CoreHandle;
use xrdtest_model::{now_ms, SessionId};

use super::{check_reader, format, page, Nav};
use crate::auth::Viewer;
use crate::WebState;

/// A slave or hypervisor, connected or known from before.
pub struct PeerRow {
    pub name: String,
    pub connected: bool,
    /// `state-<cls>`: `connected`, `busy` or `offline`.
    pub cls: &'static str,
    pub label: String,
    pub session: Option<SessionId>,
    pub address: String,
    pub version: String,
    pub last_seen: String,
    pub last_seen_relative: String,
    pub connected_since: String,
}

/// The known slaves and hypervisors, connected ones first, each sorted by name.
pub fn peer_rows(core: &CoreHandle, now: u64) -> (Vec<PeerRow>, Vec<PeerRow>) {
    let mut slaves = Vec::new();
    let mut hypervisors = Vec::new();
    for peer in core.peers() {
        let (cls, label) = match (peer.connected, peer.session) {
            (true, Some(id)) => ("busy", format!("busy: session {id}")),
            (true, None) => ("idle", "connected, idle".to_string()),
            (false, _) => ("offline", "disconnected".to_string()),
        };
        let row = PeerRow {
            connected: peer.connected,
            cls,
            label,
            session: peer.session,
            address: peer.address,
            version: peer.version,
            last_seen: format::time(peer.last_seen_ms),
            last_seen_relative: if peer.connected && now.saturating_sub(peer.last_seen_ms) < 60_000 {
                "now".into()
            } else {
                format::relative(peer.last_seen_ms as i64, now)
            },
            connected_since: format::time(peer.connected_ms),
            name: peer.name,
        };
        if peer.role == "hypervisor" {
            hypervisors.push(row);
        } else {
            slaves.push(row);
        }
    }
    for list in [&mut slaves, &mut hypervisors] {
        list.sort_by(|a, b| b.connected.cmp(&a.connected).then_with(|| a.name.cmp(&b.name)));
    }
    (slaves, hypervisors)
}

/// A machine suites name that has never connected.
pub struct Expected {
    pub name: String,
    pub suites: String,
}

/// A slave's or hypervisor's identity, for the slaves page's "Who may connect" table.
pub struct IdentityRow {
    pub name: String,
    pub role: String,
    /// `enrolled`, `pending` or `revoked`.
    pub state: &'static str,
    pub how: String,
    pub address: String,
    pub changed: String,
    pub fingerprint: String,
    /// The key's short id, as the peer logs it when it asks.
    pub key: String,
}

fn identity_rows(core: &CoreHandle) -> Vec<IdentityRow> {
    let mut rows: Vec<IdentityRow> = core
        .peer_identities()
        .into_iter()
        .map(|p| IdentityRow {
            key: p.key_id(),
            state: p.state.as_str(),
            role: p.role,
            how: p.how,
            address: p.address,
            changed: format::time(p.changed_unix_ms),
            fingerprint: p.fingerprint.map(|f| f.chars().take(16).collect()).unwrap_or_default(),
            name: p.name,
        })
        .collect();
    let order = |state: &str| match state {
        "pending" => 0,
        "enrolled" => 1,
        _ => 2,
    };
    rows.sort_by(|a, b| order(a.state).cmp(&order(b.state)).then_with(|| a.name.cmp(&b.name)));
    rows
}

#[derive(Template)]
#[template(path = "slaves.html")]
struct SlavesPage {
    nav: Nav,
    slaves: Vec<PeerRow>,
    expected: Vec<Expected>,
    identities: Vec<IdentityRow>,
}

#[derive(serde::Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /peers/{name}/approve|revoke`: an operator's decision, then back to the slaves page.
pub async fn peer_decision(
    State(state): State<Arc<WebState>>,
    viewer: Viewer,
    uri: Uri,
    axum::extract::Path((name, action)): axum::extract::Path<(String, String)>,
    axum::extract::Form(form): axum::extract::Form<CsrfForm>,
) -> Response {
    if let Err(response) = crate::auth::require_writer(&viewer, &form.csrf) {
        return response;
    }
    let result = match action.as_str() {
        "approve" => state.core.approve_peer(&name),
        "revoke" => state.core.revoke_peer(&name),
        _ => {
            let message = format!("A peer can be approved or revoked, not `{action}`.");
            return super::error_page(&state, &viewer, &uri, axum::http::StatusCode::NOT_FOUND, message);
        }
    };
    match result {
        Ok(()) => super::see_other(&format!("/slaves#identity-{}", crate::escape::url_component(&name))),
        Err(err) => super::error_page(&state, &viewer, &uri, axum::http::StatusCode::CONFLICT, err.to_string()),
    }
}

pub async fn slaves(State(state): State<Arc<WebState>>, viewer: Viewer, uri: Uri) -> Response {
    if let Err(response) = check_reader(&state, &viewer, &uri) {
        return response;
    }
    let (slaves, _) = peer_rows(&state.core, now_ms());
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for suite in state.core.definitions().repository.suites.values() {
        if suite.cluster.is_some() {
            continue; // their slaves are the cluster's VMs
        }
        for machine in &suite.machines {
            if !slaves.iter().any(|s| s.name == *machine) {
                expected.entry(machine.clone()).or_default().push(suite.name.clone());
            }
        }
    }
    page(&SlavesPage {
        nav: Nav::new(&state, &viewer, &uri, "slaves", "Slaves"),
        slaves,
        expected: expected.into_iter().map(|(name, suites)| Expected { name, suites: suites.join(", ") }).collect(),
        identities: identity_rows(&state.core),
    })
}
