//! The hypervisors page: each hypervisor's connection, capacity (VMs and memory, used and
//! limit) and the clusters it runs; and the one-line summary the dashboard shows.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use xrdtest_master::handle::{cluster_state_name, ClusterEntry, HypervisorEntry};
use xrdtest_model::now_ms;
use xrdtest_proto::{ClusterState, HypervisorStatus};

use super::infra::{peer_rows, PeerRow};
use super::live::infra_version;
use super::{check_reader, format, page, Nav};
use crate::auth::Viewer;
use crate::WebState;

/// A bar of used against limit.
pub struct Gauge {
    pub used: String,
    pub limit: String,
    pub percent: u64,
    /// 90 % or more.
    pub high: bool,
}

fn gauge(used: u64, limit: u64, show: impl Fn(u64) -> String) -> Gauge {
    let percent = format::percent(used, limit);
    Gauge { used: show(used), limit: show(limit), percent, high: percent >= 90 }
}

/// A cluster on a hypervisor.
pub struct HostedCluster {
    pub name: String,
    pub cls: &'static str,
    pub label: String,
    pub state: String,
    pub detail: String,
    /// The hypervisor runs it but this master did not start it there: it is being stopped.
    pub foreign: bool,
}

/// What a hypervisor said of itself: kind of guests, capacity.
pub struct Report {
    pub domain_type: String,
    pub vms: Gauge,
    pub memory: Gauge,
}

pub struct HypervisorView {
    pub name: String,
    pub connected: bool,
    pub report: Option<Report>,
    pub clusters: Vec<HostedCluster>,
    pub master_ip: String,
    /// The peer connection, when the master still lists it.
    pub peer: Option<PeerRow>,
}

/// The clusters on `hypervisor`: those the master sent there and that are not over, then
/// those the hypervisor reports that the master does not know there.
pub fn hosted_clusters(
    hypervisor: &str,
    status: Option<&HypervisorStatus>,
    board: &[ClusterEntry],
) -> Vec<HostedCluster> {
    let mut list: Vec<HostedCluster> = board
        .iter()
        .filter(|entry| entry.hypervisor == hypervisor && !entry.is_over())
        .map(|entry| {
            let (cls, label) = format::cluster_state(entry.state);
            HostedCluster {
                name: entry.name.clone(),
                cls,
                label,
                state: entry.state.to_string(),
                detail: entry.detail.clone(),
                foreign: false,
            }
        })
        .collect();
    let reported = status.map(|s| s.clusters.as_slice()).unwrap_or_default();
    for cluster in reported.iter().filter(|c| c.state != ClusterState::Stopped) {
        if list.iter().any(|known| known.name == cluster.cluster) {
            continue;
        }
        let state = cluster_state_name(cluster.state);
        let (cls, label) = format::cluster_state(state);
        list.push(HostedCluster {
            name: cluster.cluster.clone(),
            cls,
            label,
            state: state.to_string(),
            detail: cluster.detail.clone(),
            foreign: true,
        });
    }
    list
}

fn report(status: &HypervisorStatus) -> Report {
    Report {
        domain_type: status.domain_type.clone(),
        vms: gauge(status.vms_running.into(), status.vm_limit.into(), |n| n.to_string()),
        memory: gauge(status.memory_used_bytes, status.memory_limit_bytes, format::bytes),
    }
}

/// Every hypervisor the cluster board or the peer list knows, connected ones first.
pub fn hypervisor_views(state: &WebState) -> Vec<HypervisorView> {
    let core = &state.core;
    let board = core.clusters();
    let (_, peers) = peer_rows(core, now_ms());
    let mut peers: BTreeMap<String, PeerRow> = peers.into_iter().map(|p| (p.name.clone(), p)).collect();
    let mut views: Vec<HypervisorView> = core
        .hypervisors()
        .into_iter()
        .map(|entry: HypervisorEntry| HypervisorView {
            // What an away hypervisor reported last may be gone: only the master's view counts.
            clusters: hosted_clusters(&entry.name, entry.status.as_ref().filter(|_| entry.connected), &board),
            report: entry.status.as_ref().map(report),
            master_ip: entry.master_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            peer: peers.remove(&entry.name),
            connected: entry.connected,
            name: entry.name,
        })
        .collect();
    // Listed as peers but not (yet) on the board.
    views.extend(peers.into_values().map(|peer| HypervisorView {
        name: peer.name.clone(),
        connected: peer.connected,
        report: None,
        clusters: hosted_clusters(&peer.name, None, &board),
        master_ip: String::new(),
        peer: Some(peer),
    }));
    views.sort_by(|a, b| b.connected.cmp(&a.connected).then_with(|| a.name.cmp(&b.name)));
    views
}

/// `2 clusters · 3/16 VMs`, for the dashboard (the VMs of connected hypervisors only).
pub fn summary(view: &HypervisorView) -> String {
    let clusters = match view.clusters.len() {
        1 => "1 cluster".to_string(),
        n => format!("{n} clusters"),
    };
    match view.report.as_ref().filter(|_| view.connected) {
        Some(report) => format!("{clusters} · {}/{} VMs", report.vms.used, report.vms.limit),
        None => clusters,
    }
}

#[derive(Template)]
#[template(path = "hypervisors.html")]
struct HypervisorsPage {
    nav: Nav,
    hypervisors: Vec<HypervisorView>,
    clusters: usize,
    /// What a hypervisor's `master` setting should say.
    master_setting: String,
    version: String,
}

pub async fn hypervisors_page(State(state): State<Arc<WebState>>, viewer: Viewer, uri: Uri) -> Response {
    if let Err(response) = check_reader(&state, &viewer, &uri) {
        return response;
    }
    page(&HypervisorsPage {
        nav: Nav::new(&state, &viewer, &uri, "hypervisors", "Hypervisors"),
        hypervisors: hypervisor_views(&state),
        clusters: state.core.definitions().repository.clusters.len(),
        master_setting: super::clusters::master_setting(&state.core),
        version: infra_version(&state.core),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use xrdtest_proto::ClusterStatus;

    #[test]
    fn clusters_the_master_does_not_know_are_marked() {
        let status = HypervisorStatus {
            domain_type: "qemu".into(),
            memory_limit_bytes: 4 << 30,
            memory_used_bytes: 1 << 30,
            vm_limit: 4,
            vms_running: 1,
            clusters: vec![
                ClusterStatus { cluster: "old".into(), state: ClusterState::Active, detail: String::new() },
                ClusterStatus { cluster: "gone".into(), state: ClusterState::Stopped, detail: String::new() },
            ],
        };
        let list = hosted_clusters("hv", Some(&status), &[]);
        assert_eq!(list.len(), 1, "stopped clusters are not listed");
        assert!(list[0].foreign && list[0].name == "old" && list[0].cls == "passed");
        let report = report(&status);
        assert_eq!((report.vms.percent, report.memory.percent, report.memory.high), (25, 25, false));
        assert_eq!(report.memory.limit, "4.0 GiB");
    }
}
