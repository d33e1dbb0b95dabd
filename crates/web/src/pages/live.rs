//! Server-sent event streams that keep pages current without reloading them.
//!
//! - `/sessions/{id}/events`: event `session` (JSON [`SessionUpdate`]) at once, then on
//!   every change of the session's record (at most five a second, and every few seconds
//!   for the running clocks); event `end` after the final state, then the stream ends.
//! - `/stages/{stage_id}/events?from=SEQ&session=ID`: event `lines` (JSON list of
//!   `{t, x}`; its event id is the next chunk number, so a reconnecting browser resumes
//!   where it was through `Last-Event-ID`), `state` (JSON [`RunView`]) when the run's state
//!   changes, `logs` (JSON list of [`LogView`]) and `end` once the run is final and all of
//!   its output was sent. The store is read every 250 ms.
//! - `/dashboard/events`: event `sessions` (JSON `{ids, rows}`: the unfinished sessions
//!   with their progress) at once and when sessions change; `peers` when a slave or
//!   hypervisor connects or leaves.
//! - `/clusters/events`: event `board` (data: [`infra_version`]) at once and whenever
//!   that changes: a cluster's state, a hypervisor's report or connection. The clusters and
//!   hypervisors pages carry the version they show and reload when it differs.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::{self, error::RecvError};
use xrdtest_master::handle::{ClusterEvent, CoreHandle, PeerEvent};
use xrdtest_model::{now_ms, SessionId};
use xrdtest_proto::StageId;

use super::dashboard::{active_sessions, ActiveRow};
use super::sessions::{find_run, line_views, log_views, run_view, session_update, RunView};
use super::{check_reader, error_page, store_error};
use crate::auth::Viewer;
use crate::WebState;

/// Output chunks read per event.
const CHUNKS_PER_EVENT: usize = 64;
/// How often a cell page's stream looks for new output.
const OUTPUT_POLL: Duration = Duration::from_millis(250);
/// Changes closer together than this are sent as one.
const COALESCE: Duration = Duration::from_millis(200);
/// Running clocks are refreshed at least this often.
const REFRESH: Duration = Duration::from_secs(5);

/// A stream of events made by `step`: each call gives the events to send and the next
/// state, or `None` for the state to end the stream after those events.
fn event_stream<S, F, Fut>(initial: S, step: F) -> impl Stream<Item = Result<Event, Infallible>> + Send
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Option<(Vec<Event>, Option<S>)>> + Send,
{
    futures_util::stream::unfold((Some(initial), VecDeque::new()), move |(mut state, mut queue)| async move {
        loop {
            if let Some(event) = queue.pop_front() {
                return Some((Ok(event), (state, queue)));
            }
            let (events, next) = step(state.take()?).await?;
            queue.extend(events);
            state = next;
        }
    })
}

fn sse(stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    let mut response = Sse::new(stream).keep_alive(KeepAlive::default()).into_response();
    // Proxies must not buffer the stream.
    response.headers_mut().insert("x-accel-buffering", axum::http::HeaderValue::from_static("no"));
    response
}

fn json_event(name: &str, data: &impl Serialize) -> Option<Event> {
    Event::default().event(name).json_data(data).ok()
}

fn end_event() -> Event {
    Event::default().event("end").data("end")
}

/// Waits until `id` changes (true), or `timeout` passes (true too), or the master is gone.
async fn wait_for_change(
    updates: &mut broadcast::Receiver<SessionId>,
    id: Option<SessionId>,
    timeout: Duration,
) -> bool {
    let changed = async {
        loop {
            match updates.recv().await {
                Ok(changed) if id.is_none_or(|id| id == changed) => return true,
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => return true,
                Err(RecvError::Closed) => return false,
            }
        }
    };
    tokio::time::timeout(timeout, changed).await.unwrap_or(true)
}

/// Lets a burst of changes settle, then forgets them (the record read next has them all).
async fn coalesce(updates: &mut broadcast::Receiver<SessionId>) {
    tokio::time::sleep(COALESCE).await;
    while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = updates.try_recv() {}
}

struct SessionWatch {
    core: CoreHandle,
    id: SessionId,
    updates: broadcast::Receiver<SessionId>,
    first: bool,
}

async fn session_step(mut watch: SessionWatch) -> Option<(Vec<Event>, Option<SessionWatch>)> {
    if !watch.first {
        if !wait_for_change(&mut watch.updates, Some(watch.id), REFRESH).await {
            return None;
        }
        coalesce(&mut watch.updates).await;
    }
    watch.first = false;
    let record = watch.core.session(watch.id).ok()??;
    let event = json_event("session", &session_update(&record, now_ms()))?;
    if record.state.is_final() {
        Some((vec![event, end_event()], None))
    } else {
        Some((vec![event], Some(watch)))
    }
}

pub async fn session_events(
    State(state): State<Arc<WebState>>,
    viewer: Viewer,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    if let Err(response) = check_reader(&state, &viewer, &uri) {
        return response;
    }
    // Subscribe before reading, so no change between the two is missed.
    let updates = state.core.subscribe_updates();
    let id = match id.parse::<SessionId>().ok().map(|id| (id, state.core.session(id))) {
        Some((id, Ok(Some(_)))) => id,
        Some((_, Err(err))) => return store_error(&state, &viewer, &uri, err),
        _ => return error_page(&state, &viewer, &uri, StatusCode::NOT_FOUND, format!("There is no session `{id}`.")),
    };
    let watch = SessionWatch { core: state.core.clone(), id, updates, first: true };
    sse(event_stream(watch, session_step))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct StageQuery {
    from: Option<u64>,
    session: Option<SessionId>,
}

struct StageWatch {
    core: CoreHandle,
    stage_id: StageId,
    session: Option<SessionId>,
    next_seq: u64,
    last_state: Option<RunView>,
    /// Read again at once: the last read was a full batch.
    hurry: bool,
}

impl StageWatch {
    /// The next batch of output as a `lines` event, if there is any.
    fn read_lines(&mut self) -> Option<Option<Event>> {
        let chunks = self.core.output(self.stage_id, self.next_seq, CHUNKS_PER_EVENT).ok()?;
        self.hurry = chunks.len() == CHUNKS_PER_EVENT;
        let Some((last, _)) = chunks.last() else { return Some(None) };
        self.next_seq = last + 1;
        let lines = line_views(chunks.into_iter().flat_map(|(_, lines)| lines));
        Some(json_event("lines", &lines).map(|event| event.id(self.next_seq.to_string())))
    }
}

async fn stage_step(mut watch: StageWatch) -> Option<(Vec<Event>, Option<StageWatch>)> {
    if !watch.hurry {
        tokio::time::sleep(OUTPUT_POLL).await;
    }
    let mut events: Vec<Event> = watch.read_lines()?.into_iter().collect();
    if watch.hurry {
        return Some((events, Some(watch)));
    }
    let run = match watch.session {
        Some(id) => {
            let record = watch.core.session(id).ok()??;
            find_run(&record, watch.stage_id).map(|(_, run)| (run_view(run, now_ms()), run.state.is_final()))
        }
        None => None,
    };
    let Some((view, is_final)) = run else {
        // No session to follow: what is stored now is all this stream sends.
        events.push(end_event());
        return Some((events, None));
    };
    if watch.last_state.as_ref() != Some(&view) {
        events.extend(json_event("state", &view));
        watch.last_state = Some(view);
    }
    if !is_final {
        return Some((events, Some(watch)));
    }
    // Final: the output came before the result, so it is all stored; send the rest.
    loop {
        match watch.read_lines()? {
            Some(event) => events.push(event),
            None => break,
        }
        if !watch.hurry {
            break;
        }
    }
    let logs = log_views(watch.core.logs(watch.stage_id).ok()?);
    events.extend(json_event("logs", &logs));
    events.push(end_event());
    Some((events, None))
}

pub async fn stage_events(
    State(state): State<Arc<WebState>>,
    viewer: Viewer,
    uri: Uri,
    headers: HeaderMap,
    Path(stage_id): Path<String>,
    Query(query): Query<StageQuery>,
) -> Response {
    if let Err(response) = check_reader(&state, &viewer, &uri) {
        return response;
    }
    let Ok(stage_id) = stage_id.parse::<StageId>() else {
        return error_page(&state, &viewer, &uri, StatusCode::NOT_FOUND, format!("There is no stage `{stage_id}`."));
    };
    // A reconnecting browser says which chunk comes next.
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let watch = StageWatch {
        core: state.core.clone(),
        stage_id,
        session: query.session,
        next_seq: resume.or(query.from).unwrap_or(0),
        last_state: None,
        hurry: true,
    };
    sse(event_stream(watch, stage_step))
}

#[derive(Serialize)]
struct DashboardUpdate {
    ids: String,
    rows: Vec<ActiveRow>,
}

struct DashboardWatch {
    core: CoreHandle,
    updates: broadcast::Receiver<SessionId>,
    peers: broadcast::Receiver<PeerEvent>,
    first: bool,
}

async fn dashboard_step(mut watch: DashboardWatch) -> Option<(Vec<Event>, Option<DashboardWatch>)> {
    if !watch.first {
        tokio::select! {
            open = wait_for_change(&mut watch.updates, None, REFRESH) => {
                if !open {
                    return None;
                }
                coalesce(&mut watch.updates).await;
            }
            peer = watch.peers.recv() => {
                if let Err(RecvError::Closed) = peer {
                    return None;
                }
                // Slaves often come in groups: one event for the group.
                tokio::time::sleep(Duration::from_millis(300)).await;
                while watch.peers.try_recv().is_ok() {}
                return Some((vec![Event::default().event("peers").data("changed")], Some(watch)));
            }
        }
    }
    watch.first = false;
    let (mut running, queued, ids) = active_sessions(&watch.core).ok()?;
    running.extend(queued);
    let event = json_event("sessions", &DashboardUpdate { ids, rows: running })?;
    Some((vec![event], Some(watch)))
}

pub async fn dashboard_events(State(state): State<Arc<WebState>>, viewer: Viewer, uri: Uri) -> Response {
    if let Err(response) = check_reader(&state, &viewer, &uri) {
        return response;
    }
    let watch = DashboardWatch {
        core: state.core.clone(),
        updates: state.core.subscribe_updates(),
        peers: state.core.subscribe_peers(),
        first: true,
    };
    sse(event_stream(watch, dashboard_step))
}

/// A fingerprint of what the clusters and hypervisors pages show: changes when a cluster
/// changes state, owner or user, or a hypervisor connects, leaves or reports other figures
/// (not with the time alone).
pub fn infra_version(core: &CoreHandle) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    for entry in core.clusters() {
        (&entry.name, &entry.hypervisor, entry.state, &entry.detail, entry.in_use_by, entry.steps.len())
            .hash(&mut hasher);
        serde_json::to_string(&entry.owner).unwrap_or_default().hash(&mut hasher);
    }
    for entry in core.hypervisors() {
        (&entry.name, entry.connected).hash(&mut hasher);
        serde_json::to_string(&entry.status).unwrap_or_default().hash(&mut hasher);
    }
    let mut peers: Vec<(String, bool)> =
        core.peers().into_iter().filter(|p| p.role == "hypervisor").map(|p| (p.name, p.connected)).collect();
    peers.sort();
    peers.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

struct InfraWatch {
    core: CoreHandle,
    clusters: broadcast::Receiver<ClusterEvent>,
    peers: broadcast::Receiver<PeerEvent>,
    /// The version last sent; `None` before the first event.
    sent: Option<String>,
}

impl InfraWatch {
    /// Waits for a cluster or peer event, or [`REFRESH`] (hypervisor reports come without
    /// one); `false` when the master is gone.
    async fn wait(&mut self) -> bool {
        let open = tokio::select! {
            event = self.clusters.recv() => !matches!(event, Err(RecvError::Closed)),
            event = self.peers.recv() => !matches!(event, Err(RecvError::Closed)),
            _ = tokio::time::sleep(REFRESH) => true,
        };
        if open {
            tokio::time::sleep(COALESCE).await;
            while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = self.clusters.try_recv() {}
            while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = self.peers.try_recv() {}
        }
        open
    }
}

async fn infra_step(mut watch: InfraWatch) -> Option<(Vec<Event>, Option<InfraWatch>)> {
    if watch.sent.is_some() && !watch.wait().await {
        return None;
    }
    let version = infra_version(&watch.core);
    if watch.sent.as_ref() == Some(&version) {
        return Some((Vec::new(), Some(watch)));
    }
    let event = Event::default().event("board").data(&version);
    watch.sent = Some(version);
    Some((vec![event], Some(watch)))
}

pub async fn infra_events(State(state): State<Arc<WebState>>, viewer: Viewer, uri: Uri) -> Response {
    if let Err(response) = check_reader(&state, &viewer, &uri) {
        return response;
    }
    let watch = InfraWatch {
        core: state.core.clone(),
        clusters: state.core.subscribe_clusters(),
        peers: state.core.subscribe_peers(),
        sent: None,
    };
    sse(event_stream(watch, infra_step))
}
