//! Clusters, hypervisors and slaves.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use xrdtest_defs::Boot;

use super::suites::{locate_error, ErrorRow, Owner};
use super::{check_reader, format, page, Nav};
use crate::master::Master;
use crate::model::{now_ms, SessionId};
use crate::web::auth::Viewer;
use crate::web::WebState;

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
pub fn peer_rows(master: &Master, now: u64) -> (Vec<PeerRow>, Vec<PeerRow>) {
    let mut slaves = Vec::new();
    let mut hypervisors = Vec::new();
    for peer in master.peers.list() {
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

pub struct HostView {
    pub name: String,
    pub ip: String,
    pub mac: String,
    pub boot: String,
    pub arch: String,
    pub ram: String,
    pub vcpus: u32,
    pub disks: String,
}

pub struct ClusterView {
    pub name: String,
    pub in_service: bool,
    pub network: String,
    pub bridge: String,
    pub address: String,
    pub dhcp: String,
    pub domain: String,
    pub lb: String,
    pub suites: Vec<String>,
    pub hosts: Vec<HostView>,
    pub errors: Vec<ErrorRow>,
}

#[derive(Template)]
#[template(path = "clusters.html")]
struct ClustersPage {
    nav: Nav,
    clusters: Vec<ClusterView>,
    hypervisors_connected: usize,
}

pub async fn clusters(State(state): State<Arc<WebState>>, viewer: Viewer, uri: Uri) -> Response {
    if let Err(response) = check_reader(&state, &viewer, &uri) {
        return response;
    }
    let master = &state.master;
    let definitions = master.definitions();
    let mut errors: BTreeMap<String, Vec<ErrorRow>> = BTreeMap::new();
    for error in &definitions.errors {
        if let (Owner::Cluster(name), row) = locate_error(&master.config.repos, error) {
            errors.entry(name).or_default().push(row);
        }
    }
    let mut names: Vec<String> = definitions.repository.clusters.keys().cloned().collect();
    names.extend(errors.keys().filter(|n| !definitions.repository.clusters.contains_key(*n)).cloned());
    names.sort();
    let clusters = names
        .into_iter()
        .map(|name| {
            let suites = definitions
                .repository
                .suites
                .values()
                .filter(|s| s.cluster.as_deref() == Some(name.as_str()))
                .map(|s| s.name.clone())
                .collect();
            let errors = errors.remove(&name).unwrap_or_default();
            match definitions.repository.clusters.get(&name) {
                Some(cluster) => {
                    let net = &cluster.network;
                    ClusterView {
                        in_service: true,
                        network: net.name.clone(),
                        bridge: net.bridge.clone(),
                        address: format!("{}/{}", net.ip, net.prefix_len()),
                        dhcp: format!("{} – {}", net.dhcp_start, net.dhcp_end),
                        domain: net.domain.clone(),
                        lb: match &net.lb_alias {
                            Some(alias) => format!("{alias} → {}", net.lb_hosts.join(", ")),
                            None => String::new(),
                        },
                        suites,
                        hosts: cluster
                            .hosts
                            .iter()
                            .map(|host| HostView {
                                name: host.name.clone(),
                                ip: host.ip.to_string(),
                                mac: host.mac.clone(),
                                boot: match &host.boot {
                                    Boot::Image { volume, cache } => {
                                        format!("image {volume}{}", if *cache { " (cached)" } else { "" })
                                    }
                                    Boot::Kernel { kernel, .. } => format!("kernel {kernel}"),
                                },
                                arch: host.arch.clone(),
                                ram: format::bytes(host.ram_bytes),
                                vcpus: host.vcpus,
                                disks: host
                                    .disks
                                    .iter()
                                    .map(|d| {
                                        format!("{} {} on {}", d.device, format::bytes(d.size_bytes), d.mount_point)
                                    })
                                    .collect::<Vec<_>>()
                                    .join(", "),
                            })
                            .collect(),
                        errors,
                        name,
                    }
                }
                None => ClusterView {
                    name,
                    in_service: false,
                    network: String::new(),
                    bridge: String::new(),
                    address: String::new(),
                    dhcp: String::new(),
                    domain: String::new(),
                    lb: String::new(),
                    suites,
                    hosts: Vec::new(),
                    errors,
                },
            }
        })
        .collect();
    let hypervisors_connected = master.peers.list().iter().filter(|p| p.role == "hypervisor" && p.connected).count();
    page(&ClustersPage {
        nav: Nav::new(&state, &viewer, &uri, "clusters", "Clusters"),
        clusters,
        hypervisors_connected,
    })
}

#[derive(Template)]
#[template(path = "hypervisors.html")]
struct HypervisorsPage {
    nav: Nav,
    hypervisors: Vec<PeerRow>,
    clusters: usize,
}

pub async fn hypervisors(State(state): State<Arc<WebState>>, viewer: Viewer, uri: Uri) -> Response {
    if let Err(response) = check_reader(&state, &viewer, &uri) {
        return response;
    }
    let (_, hypervisors) = peer_rows(&state.master, now_ms());
    page(&HypervisorsPage {
        nav: Nav::new(&state, &viewer, &uri, "hypervisors", "Hypervisors"),
        hypervisors,
        clusters: state.master.definitions().repository.clusters.len(),
    })
}

/// A machine suites name that has never connected.
pub struct Expected {
    pub name: String,
    pub suites: String,
}

#[derive(Template)]
#[template(path = "slaves.html")]
struct SlavesPage {
    nav: Nav,
    slaves: Vec<PeerRow>,
    expected: Vec<Expected>,
}

pub async fn slaves(State(state): State<Arc<WebState>>, viewer: Viewer, uri: Uri) -> Response {
    if let Err(response) = check_reader(&state, &viewer, &uri) {
        return response;
    }
    let (slaves, _) = peer_rows(&state.master, now_ms());
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for suite in state.master.definitions().repository.suites.values() {
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
    })
}
