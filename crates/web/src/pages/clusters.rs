//! The clusters page: each cluster's definition and what the master knows of it on a
//! hypervisor (state, owner, steps), with Start and Stop for logged-in users; and the step
//! list the session page shows for a cluster suite.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use xrdtest_defs::{Boot, Cluster};
use xrdtest_master::handle::{ClusterCommandError, ClusterEntry, ClusterOwner, CoreHandle};
use xrdtest_model::{now_ms, ClusterStep, SessionId};

use super::live::infra_version;
use super::suites::{locate_error, ErrorRow, Owner};
use super::{check_reader, error_page, format, page, see_other, CsrfForm, Nav};
use crate::auth::{require_writer, Viewer};
use crate::notices::Notice;
use crate::WebState;

/// Steps a cluster's card lists: the newest ones.
pub const STEPS_SHOWN: usize = 12;

/// One state a cluster went through; also sent live to the session page.
#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    /// Time of day, `14:05:09`.
    pub time: String,
    /// Date and time, for the tooltip.
    pub at: String,
    pub cls: &'static str,
    pub label: String,
    /// The API's name of the state.
    pub state: String,
    pub detail: String,
}

/// The colour class and words of a cluster state, `held` included.
fn state_look(state: &str) -> (&'static str, String) {
    match state {
        "held" => ("waiting", "held".to_string()),
        "not_held" => ("skipped", "not held".to_string()),
        other => format::cluster_state(other),
    }
}

pub fn step_views(steps: &[ClusterStep]) -> Vec<StepView> {
    steps
        .iter()
        .map(|step| {
            let (cls, label) = state_look(&step.state);
            let at = format::time(step.unix_ms);
            StepView {
                time: at.split(' ').nth(1).unwrap_or_default().to_string(),
                at,
                cls,
                label,
                state: step.state.clone(),
                detail: step.detail.clone(),
            }
        })
        .collect()
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

/// A cluster's definition as the page shows it.
pub struct DefinitionView {
    pub network: String,
    pub bridge: String,
    pub address: String,
    pub dhcp: String,
    pub domain: String,
    pub lb: String,
    /// `8 VMs, 7.5 GiB`: what a hypervisor needs free to start it.
    pub size: String,
    pub hosts: Vec<HostView>,
}

/// What the master knows of the cluster on a hypervisor.
pub struct LiveView {
    pub state: &'static str,
    pub cls: &'static str,
    pub label: String,
    pub hypervisor: String,
    /// The session that started it; `None`: started by hand.
    pub owner: Option<SessionId>,
    pub in_use_by: Option<SessionId>,
    pub detail: String,
    /// An error state: the detail is the hypervisor's (libvirt's) or the master's reason.
    pub failed: bool,
    /// Stopped or failed: nothing runs and it may be started again.
    pub over: bool,
    pub since: String,
    pub updated: String,
    pub updated_relative: String,
    pub steps: Vec<StepView>,
    pub earlier_steps: usize,
    /// Kept up after its session failed (`keep_on_failure`), until a time.
    pub held: Option<HeldView>,
}

/// A hold: whose, and until when.
pub struct HeldView {
    pub session: SessionId,
    pub until_ms: u64,
    /// Local date and time it ends.
    pub until: String,
    /// `in 4 min`.
    pub left: String,
}

pub struct ClusterView {
    pub name: String,
    /// `None`: not defined now (invalid, or running but removed from the definitions).
    pub definition: Option<DefinitionView>,
    pub suites: Vec<String>,
    pub errors: Vec<ErrorRow>,
    pub live: Option<LiveView>,
    pub can_start: bool,
    pub can_stop: bool,
    /// Running for this session: stopping it means cancelling the session.
    pub blocked_by: Option<SessionId>,
    pub notice: Option<Notice>,
}

impl ClusterView {
    /// Neither defined nor invalid: a cluster still running after its definition went away.
    pub fn retired(&self) -> bool {
        self.definition.is_none() && self.errors.is_empty()
    }

    /// Kept up after its session failed: Stop ends the hold.
    pub fn held(&self) -> bool {
        self.live.as_ref().is_some_and(|l| l.held.is_some())
    }
}

fn host_view(host: &xrdtest_defs::Host) -> HostView {
    HostView {
        name: host.name.clone(),
        ip: host.ip.to_string(),
        mac: host.mac.clone(),
        boot: match &host.boot {
            Boot::Image { volume } => format!("image {volume}"),
            Boot::Kernel { kernel, .. } => format!("kernel {kernel}"),
        },
        arch: host.arch.clone(),
        ram: format::bytes(host.ram_bytes),
        vcpus: host.vcpus,
        disks: host
            .disks
            .iter()
            .map(|d| format!("{} {} on {}", d.device, format::bytes(d.size_bytes), d.mount_point))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn definition_view(cluster: &Cluster) -> DefinitionView {
    let net = &cluster.network;
    let ram: u64 = cluster.hosts.iter().map(|h| h.ram_bytes).sum();
    DefinitionView {
        network: net.name.clone(),
        bridge: net.bridge.clone(),
        address: format!("{}/{}", net.ip, net.prefix_len()),
        dhcp: format!("{} – {}", net.dhcp_start, net.dhcp_end),
        domain: net.domain.clone(),
        lb: match &net.lb_alias {
            Some(alias) => format!("{alias} → {}", net.lb_hosts.join(", ")),
            None => String::new(),
        },
        size: format!("{} VMs, {} RAM", cluster.hosts.len(), format::bytes(ram)),
        hosts: cluster.hosts.iter().map(host_view).collect(),
    }
}

pub fn live_view(entry: &ClusterEntry, now: u64) -> LiveView {
    let (cls, label) = state_look(entry.state);
    let earlier_steps = entry.steps.len().saturating_sub(STEPS_SHOWN);
    LiveView {
        state: entry.state,
        cls,
        label,
        hypervisor: entry.hypervisor.clone(),
        owner: match entry.owner {
            ClusterOwner::Session(id) => Some(id),
            ClusterOwner::Manual => None,
        },
        in_use_by: entry.in_use_by,
        detail: entry.detail.clone(),
        failed: entry.raw_state.is_error(),
        over: entry.is_over(),
        since: format::time(entry.since_ms),
        updated: format::time(entry.updated_ms),
        updated_relative: format::relative(entry.updated_ms as i64, now),
        steps: step_views(&entry.steps[earlier_steps..]),
        earlier_steps,
        held: entry.held_for.zip(entry.held_until_ms).map(|(session, until_ms)| HeldView {
            session,
            until_ms,
            until: format::time(until_ms),
            left: format::relative(until_ms.max(now) as i64, now),
        }),
    }
}

/// Every cluster the page lists, by name: defined, invalid, or still on a hypervisor.
fn cluster_views(core: &CoreHandle, notice: Option<&Notice>) -> Vec<ClusterView> {
    let definitions = core.definitions();
    let mut errors: BTreeMap<String, Vec<ErrorRow>> = BTreeMap::new();
    for error in &definitions.errors {
        if let (Owner::Cluster(name), row) = locate_error(core.repos(), error) {
            errors.entry(name).or_default().push(row);
        }
    }
    let mut live: BTreeMap<String, ClusterEntry> =
        core.clusters().into_iter().map(|entry| (entry.name.clone(), entry)).collect();
    let mut names: Vec<String> = definitions.repository.clusters.keys().cloned().collect();
    names.extend(errors.keys().cloned());
    names.extend(live.keys().cloned());
    names.sort();
    names.dedup();
    let now = now_ms();
    names
        .into_iter()
        .map(|name| {
            let definition = definitions.repository.clusters.get(&name).map(definition_view);
            let live = live.remove(&name).map(|entry| live_view(&entry, now));
            let running = live.as_ref().is_some_and(|l| !l.over);
            ClusterView {
                suites: definitions
                    .repository
                    .suites
                    .values()
                    .filter(|s| s.cluster.as_deref() == Some(name.as_str()))
                    .map(|s| s.name.clone())
                    .collect(),
                errors: errors.remove(&name).unwrap_or_default(),
                can_start: definition.is_some() && !running,
                can_stop: running && live.as_ref().is_some_and(|l| l.in_use_by.is_none()),
                blocked_by: live.as_ref().filter(|_| running).and_then(|l| l.in_use_by),
                notice: notice.filter(|n| n.cluster == name).cloned(),
                definition,
                live,
                name,
            }
        })
        .collect()
}

/// What a hypervisor's `master` setting should say, for the "how to add one" hint. The peer
/// port is the configured one (`0`, any free port, is shown as a placeholder: the port bound
/// is in the master's start-up log).
pub fn master_setting(core: &CoreHandle) -> String {
    match core.peer_port() {
        0 => "<this host>:<its peer port>".into(),
        port => format!("<this host>:{port}"),
    }
}

/// A connected hypervisor, for the page's summary.
pub struct HypervisorBrief {
    pub name: String,
    pub free: String,
}

/// The connected hypervisors with the room they have.
fn connected_hypervisors(core: &CoreHandle) -> Vec<HypervisorBrief> {
    let free = |s: &xrdtest_proto::HypervisorStatus| {
        format!(
            "{} of {} VMs, {} of {} free",
            s.vm_limit.saturating_sub(s.vms_running),
            s.vm_limit,
            format::bytes(s.memory_limit_bytes.saturating_sub(s.memory_used_bytes)),
            format::bytes(s.memory_limit_bytes)
        )
    };
    core.hypervisors()
        .into_iter()
        .filter(|h| h.connected)
        .map(|h| HypervisorBrief {
            free: h.status.as_ref().map(free).unwrap_or_else(|| "capacity not reported yet".into()),
            name: h.name,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "clusters.html")]
struct ClustersPage {
    nav: Nav,
    clusters: Vec<ClusterView>,
    hypervisors: Vec<HypervisorBrief>,
    /// A notice about a cluster the page does not list.
    other_notice: Option<Notice>,
    /// What a hypervisor's `master` setting should say.
    master_setting: String,
    version: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NoticeQuery {
    notice: String,
}

pub async fn clusters_page(
    State(state): State<Arc<WebState>>,
    viewer: Viewer,
    uri: Uri,
    Query(query): Query<NoticeQuery>,
) -> Response {
    if let Err(response) = check_reader(&state, &viewer, &uri) {
        return response;
    }
    let core = &state.core;
    let notice = state.notices.get(query.notice.trim());
    let clusters = cluster_views(core, notice.as_ref());
    let other_notice = notice.filter(|n| !clusters.iter().any(|c| c.name == n.cluster));
    page(&ClustersPage {
        nav: Nav::new(&state, &viewer, &uri, "clusters", "Clusters"),
        clusters,
        hypervisors: connected_hypervisors(core),
        other_notice,
        master_setting: master_setting(core),
        version: infra_version(core),
    })
}

#[derive(Clone, Copy)]
enum Command {
    Start,
    Stop,
}

/// `POST /clusters/{name}/start` and `/clusters/{name}/stop`.
pub async fn command(
    State(state): State<Arc<WebState>>,
    viewer: Viewer,
    uri: Uri,
    Path((name, action)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(response) = require_writer(&viewer, &form.csrf) {
        return response;
    }
    let (command, result) = match action.as_str() {
        "start" => (Command::Start, state.core.start_cluster_by_hand(&name).await),
        "stop" => (Command::Stop, state.core.stop_cluster_by_hand(&name).await),
        _ => {
            let message = format!("A cluster can be started or stopped, not `{action}`.");
            return error_page(&state, &viewer, &uri, StatusCode::NOT_FOUND, message);
        }
    };
    answer(&state, &viewer, &uri, &name, command, result)
}

/// Back to the clusters page, at the cluster's card, with what happened.
fn answer(
    state: &WebState,
    viewer: &Viewer,
    uri: &Uri,
    name: &str,
    command: Command,
    result: Result<String, ClusterCommandError>,
) -> Response {
    let (ok, headline, text) = match (command, result) {
        (_, Err(ClusterCommandError::Unknown(_))) => {
            let message = format!("There is no valid cluster named `{name}`.");
            return error_page(state, viewer, uri, StatusCode::NOT_FOUND, message);
        }
        (Command::Start, Ok(hypervisor)) => {
            (true, "Start sent", format!("to hypervisor {hypervisor}: the steps below follow its progress."))
        }
        (Command::Stop, Ok(hypervisor)) => (true, "Stop sent", format!("to hypervisor {hypervisor}.")),
        (Command::Start, Err(err)) => (false, "Not started:", format!("{err}.")),
        (Command::Stop, Err(err)) => (false, "Not stopped:", format!("{err}.")),
    };
    let notice = Notice { cluster: name.to_string(), ok, headline: headline.to_string(), text };
    match state.notices.put(notice) {
        Some(id) => see_other(&format!("/clusters?notice={id}#cluster-{}", crate::escape::url_component(name))),
        None => see_other("/clusters"),
    }
}
