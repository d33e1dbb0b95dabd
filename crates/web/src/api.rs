//! The HTTP JSON API (`docs/api.md`). Reads are open; writes (run, cancel) need the API token
//! as `Authorization: Bearer <token>`.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use xrdtest_defs::{DefError, Suite};
use xrdtest_master::api_tokens::{Scope, TokenError};
use xrdtest_master::handle::{
    CancelError, ClusterCommandError, CoreHandle, Origin, RepoStatus, ReserveError, ScheduleStatus, SessionFilter,
    SubmitError,
};
use xrdtest_master::peer_auth::ApprovalError;
use xrdtest_model::api::{
    ApiErrorBody, CancelAccepted, CancelRequest, LogView, OutputPage, PlanView, RunRequest, SessionCreated, SessionPage,
};
use xrdtest_model::{SessionId, SessionState, StageValues, Trigger};
use xrdtest_proto::{LogFile, StageId};

/// The API's routes. With `[web] require_login`, every call but `/api/health` needs a login
/// cookie or the API token (see [`crate::auth::guard_api_reads`]).
pub fn router(core: CoreHandle, auth: std::sync::Arc<crate::auth::AuthState>) -> Router {
    let guard = crate::auth::ApiGuard { auth, core: core.clone() };
    Router::new()
        .route("/api/health", get(health))
        .route("/api/suites", get(suites))
        .route("/api/repos", get(repos))
        .route("/api/suites/{name}/run", post(run_suite))
        .route("/api/suites/{name}/plan", post(plan_suite))
        .route("/api/sessions", get(sessions))
        .route("/api/sessions/{id}", get(session))
        .route("/api/sessions/{id}/cancel", post(cancel_session))
        .route("/api/sessions/{id}/keep", post(keep_session))
        .route("/api/store", get(store_info))
        .route("/api/sessions/{id}/timeline", get(session_timeline))
        .route("/api/sessions/{id}/cleanup", get(session_cleanup))
        .route("/api/stages/{stage_id}/output", get(stage_output))
        .route("/api/stages/{stage_id}/logs", get(stage_logs))
        .route("/api/stages/{stage_id}/values", get(stage_values))
        .route("/api/slaves", get(slaves))
        .route("/api/clusters", get(clusters))
        .route("/api/clusters/{name}/start", post(start_cluster))
        .route("/api/clusters/{name}/stop", post(stop_cluster))
        .route("/api/hypervisors", get(hypervisors))
        .route("/api/peers", get(peer_identities))
        .route("/api/tokens", get(list_tokens).post(create_token))
        .route("/api/tokens/{name}/revoke", post(revoke_token))
        .route("/api/peers/{name}/approve", post(approve_peer))
        .route("/api/peers/{name}/revoke", post(revoke_peer))
        .route("/metrics", get(crate::prometheus::metrics))
        .route("/api/compare", get(compare_sessions))
        .merge(crate::reports::routes())
        .layer(axum::middleware::from_fn_with_state(std::sync::Arc::new(guard), crate::auth::guard_api_reads))
        .with_state(core)
}

/// An API error: a status and a sentence.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ApiErrorBody { error: self.1 })).into_response()
    }
}

/// The error for a state filter no session can have, listing the ones it can.
fn unknown_state(text: &str) -> String {
    let known: Vec<&str> = SessionState::ALL.iter().map(|s| s.as_str()).collect();
    format!("unknown state `{text}`: one of {}", known.join(", "))
}

fn internal(err: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
}

/// Checks that the bearer token of a call may do `needed` (`api_token` of master.toml is an
/// admin token; `xrdtest token create` makes scoped ones).
fn authorize(core: &CoreHandle, headers: &HeaderMap, needed: Scope) -> Result<(), ApiError> {
    if !core.accepts_tokens() {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "write calls are disabled: the master has no api_token configured".into(),
        ));
    }
    let given = crate::auth::bearer_token(headers).unwrap_or("");
    match core.token_scope(given) {
        Some(scope) if scope >= needed => Ok(()),
        Some(scope) => Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("this token's scope is {}; the call needs {}", scope.as_str(), needed.as_str()),
        )),
        None => Err(ApiError(StatusCode::UNAUTHORIZED, "missing, wrong or expired API token".into())),
    }
}

async fn health(State(core): State<CoreHandle>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "running_sessions": core.running_sessions(),
        "alerts": core.alert_counts().map(|(sent, failed)| json!({ "sent": sent, "failed": failed })),
    }))
}

#[derive(Serialize)]
struct SuitesResponse<'a> {
    /// The suites in service (for a broken suite: its last good version).
    suites: Vec<&'a Suite>,
    /// Every definition error, with file, line and field.
    errors: &'a [DefError],
    /// Per suite: the repository and commit it came from.
    origins: &'a std::collections::BTreeMap<String, Origin>,
    /// Per scheduled suite: expression, next run, skipped runs.
    schedules: std::collections::BTreeMap<String, ScheduleStatus>,
    repos: &'a [RepoStatus],
}

async fn suites(State(core): State<CoreHandle>) -> Response {
    let definitions = core.definitions();
    Json(SuitesResponse {
        suites: definitions.repository.suites.values().collect(),
        errors: &definitions.errors,
        origins: &definitions.origins,
        schedules: core.schedules(),
        repos: &definitions.repos,
    })
    .into_response()
}

async fn repos(State(core): State<CoreHandle>) -> Json<serde_json::Value> {
    Json(json!({ "repos": &core.definitions().repos }))
}

async fn run_suite(
    State(core): State<CoreHandle>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Option<Json<RunRequest>>,
) -> Result<(StatusCode, Json<SessionCreated>), ApiError> {
    authorize(&core, &headers, Scope::Run)?;
    let request = body.map(|b| b.0).unwrap_or_default();
    let trigger = match request.trigger.as_deref() {
        Some("manual") => Trigger::Manual,
        Some("api") | None => Trigger::Api,
        Some(other) => {
            return Err(ApiError(StatusCode::BAD_REQUEST, format!("unknown trigger `{other}`: manual or api")))
        }
    };
    match core.submit_request(&name, trigger, &request) {
        Ok(id) => Ok((StatusCode::CREATED, Json(SessionCreated { session: id }))),
        Err(err) => Err(submit_error(err)),
    }
}

/// What a run with this body would do, created nowhere: a read, so no token is needed.
async fn plan_suite(
    State(core): State<CoreHandle>,
    Path(name): Path<String>,
    body: Option<Json<RunRequest>>,
) -> Result<Json<PlanView>, ApiError> {
    let request = body.map(|b| b.0).unwrap_or_default();
    core.plan(&name, &request).map(Json).map_err(submit_error)
}

/// A refused run request: 404 for an unknown suite, 400 for a request that does not fit it.
fn submit_error(err: SubmitError) -> ApiError {
    match err {
        SubmitError::UnknownSuite(name) => ApiError(StatusCode::NOT_FOUND, format!("no valid suite named `{name}`")),
        err @ SubmitError::Plan(_) => ApiError(StatusCode::BAD_REQUEST, err.to_string()),
        err => internal(err),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    suite: Option<String>,
    state: Option<String>,
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

async fn sessions(
    State(core): State<CoreHandle>,
    Query(query): Query<ListQuery>,
) -> Result<Json<SessionPage>, ApiError> {
    let state = match query.state.as_deref() {
        Some(text) => {
            Some(SessionState::parse(text).ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, unknown_state(text)))?)
        }
        None => None,
    };
    let filter = SessionFilter { suite: query.suite, state };
    let limit = query.limit.unwrap_or(50).min(500);
    let (total, page) = core.sessions(&filter, query.offset, limit).map_err(internal)?;
    Ok(Json(SessionPage { total, offset: query.offset, sessions: page }))
}

async fn session(State(core): State<CoreHandle>, Path(id): Path<SessionId>) -> Result<Response, ApiError> {
    match core.session(id).map_err(internal)? {
        Some(record) => {
            let mut value = serde_json::to_value(&record).map_err(internal)?;
            if let Some(object) = value.as_object_mut() {
                object.insert("keep".into(), json!(core.is_kept(id).map_err(internal)?));
            }
            Ok(Json(value).into_response())
        }
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no session {id}"))),
    }
}

/// The sync waits and faults of a session's scripts (kept when the session ends).
async fn session_timeline(State(core): State<CoreHandle>, Path(id): Path<SessionId>) -> Result<Response, ApiError> {
    if core.session(id).map_err(internal)?.is_none() {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no session {id}")));
    }
    Ok(Json(core.timeline(id).map_err(internal)?).into_response())
}

/// What each slave ended at a session's end: leftover processes, the method, problems.
async fn session_cleanup(State(core): State<CoreHandle>, Path(id): Path<SessionId>) -> Result<Response, ApiError> {
    if core.session(id).map_err(internal)?.is_none() {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no session {id}")));
    }
    Ok(Json(core.cleanup(id).map_err(internal)?).into_response())
}

async fn cancel_session(
    State(core): State<CoreHandle>,
    Path(id): Path<SessionId>,
    headers: HeaderMap,
    body: Option<Json<CancelRequest>>,
) -> Result<Json<CancelAccepted>, ApiError> {
    authorize(&core, &headers, Scope::Run)?;
    let reason = body.and_then(|b| b.0.reason).unwrap_or_else(|| "cancelled through the API".into());
    match core.cancel(id, &reason) {
        Ok(()) => Ok(Json(CancelAccepted { session: id, cancelling: true })),
        Err(CancelError::Unknown(id)) => Err(ApiError(StatusCode::NOT_FOUND, format!("no session {id}"))),
        Err(CancelError::Finished(id)) => {
            Err(ApiError(StatusCode::CONFLICT, format!("session {id} has already ended")))
        }
        Err(err) => Err(internal(err)),
    }
}

#[derive(Deserialize)]
struct KeepRequest {
    /// Default true; false takes the mark off.
    keep: Option<bool>,
}

/// Marks a session `keep`: retention never prunes it.
async fn keep_session(
    State(core): State<CoreHandle>,
    Path(id): Path<SessionId>,
    headers: HeaderMap,
    body: Option<Json<KeepRequest>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&core, &headers, Scope::Run)?;
    let keep = body.and_then(|b| b.0.keep).unwrap_or(true);
    match core.set_kept(id, keep).map_err(internal)? {
        true => Ok(Json(json!({ "session": id, "keep": keep }))),
        false => Err(ApiError(StatusCode::NOT_FOUND, format!("no session {id}"))),
    }
}

/// The store's size on disk, the free space beside it, and the retention rules in force.
async fn store_info(State(core): State<CoreHandle>) -> Json<serde_json::Value> {
    let info = core.store_info();
    let r = &info.retention;
    Json(json!({
        "bytes": info.bytes,
        "free_bytes": info.free_bytes,
        "retention": {
            "keep_days": r.keep_days, "keep_per_suite": r.keep_per_suite,
            "min_free_disk_bytes": r.min_free_disk_bytes, "every_s": r.every.as_secs(),
        },
    }))
}

#[derive(Deserialize)]
struct OutputQuery {
    #[serde(default)]
    from: u64,
    max_chunks: Option<usize>,
}

async fn stage_output(
    State(core): State<CoreHandle>,
    Path(stage_id): Path<StageId>,
    Query(query): Query<OutputQuery>,
) -> Result<Json<OutputPage>, ApiError> {
    let chunks = core.output(stage_id, query.from, query.max_chunks.unwrap_or(64).min(1024)).map_err(internal)?;
    let next = chunks.last().map(|(seq, _)| seq + 1).unwrap_or(query.from);
    let lines = chunks.into_iter().flat_map(|(_, lines)| lines).collect();
    Ok(Json(OutputPage { stage_id, lines, next }))
}

async fn stage_logs(
    State(core): State<CoreHandle>,
    Path(stage_id): Path<StageId>,
) -> Result<Json<Vec<LogView>>, ApiError> {
    let logs: Vec<LogFile> = core.logs(stage_id).map_err(internal)?;
    Ok(Json(
        logs.into_iter()
            .map(|log| LogView {
                path: log.path,
                content: String::from_utf8_lossy(&log.content).into_owned(),
                truncated_bytes: log.truncated_bytes,
                error: log.error,
            })
            .collect(),
    ))
}

async fn stage_values(
    State(core): State<CoreHandle>,
    Path(stage_id): Path<StageId>,
) -> Result<Json<StageValues>, ApiError> {
    Ok(Json(core.values(stage_id).map_err(internal)?))
}

#[derive(Deserialize)]
struct CompareQuery {
    a: Option<String>,
    b: Option<String>,
}

/// Session `b` against session `a` (without `a`: the previous finished session of `b`'s
/// suite), judged by the thresholds in service: see `crate::compare`.
async fn compare_sessions(
    State(core): State<CoreHandle>,
    Query(query): Query<CompareQuery>,
) -> Result<Json<xrdtest_report::compare::Comparison>, ApiError> {
    crate::compare::load(&core, query.a.as_deref(), query.b.as_deref())
        .map(Json)
        .map_err(|refusal| ApiError(refusal.status, refusal.message))
}

async fn slaves(State(core): State<CoreHandle>) -> Json<serde_json::Value> {
    Json(json!({ "slaves": core.peers() }))
}

/// What the board knows of a cluster, with the time its hold has left (`held_left_ms`,
/// `null` unless it is held).
fn running_view(entry: xrdtest_master::handle::ClusterEntry, now: u64) -> serde_json::Value {
    let left = entry.held_left_ms(now);
    let mut value = serde_json::to_value(&entry).unwrap_or(serde_json::Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.insert("held_left_ms".into(), json!(left));
    }
    value
}

/// Every defined cluster with what the master knows of it (`running: null` when no
/// hypervisor runs it), and clusters still running that are no longer defined.
async fn clusters(State(core): State<CoreHandle>) -> Json<serde_json::Value> {
    let definitions = core.definitions();
    let now = xrdtest_model::now_ms();
    let mut running: std::collections::BTreeMap<String, _> =
        core.clusters().into_iter().map(|entry| (entry.name.clone(), running_view(entry, now))).collect();
    let mut list: Vec<serde_json::Value> = definitions
        .repository
        .clusters
        .values()
        .map(|cluster| {
            json!({
                "name": cluster.name,
                "defined": true,
                "hosts": cluster.hosts.iter().map(|h| &h.name).collect::<Vec<_>>(),
                "network": cluster.network.name,
                "running": running.remove(&cluster.name),
            })
        })
        .collect();
    list.extend(running.into_iter().map(
        |(name, entry)| json!({ "name": name, "defined": false, "hosts": [], "network": null, "running": entry }),
    ));
    Json(json!({ "clusters": list }))
}

async fn hypervisors(State(core): State<CoreHandle>) -> Json<serde_json::Value> {
    Json(json!({ "hypervisors": core.hypervisors() }))
}

fn cluster_command_error(err: ClusterCommandError) -> ApiError {
    let status = match &err {
        ClusterCommandError::Unknown(_) | ClusterCommandError::NotRunning(_) => StatusCode::NOT_FOUND,
        ClusterCommandError::InUse(..) => StatusCode::CONFLICT,
        ClusterCommandError::Reserve(ReserveError::Busy { .. }) => StatusCode::CONFLICT,
        ClusterCommandError::Reserve(_) | ClusterCommandError::Send(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError(status, err.to_string())
}

/// The peer identities: name, role, state (`enrolled`, `pending`, `revoked`), how and from
/// where, the certificate's fingerprint and end. Never a key or certificate itself.
async fn peer_identities(State(core): State<CoreHandle>) -> Json<serde_json::Value> {
    let peers: Vec<serde_json::Value> = core
        .peer_identities()
        .into_iter()
        .map(|p| {
            json!({
                "name": p.name,
                "role": p.role,
                "state": p.state.as_str(),
                "how": p.how,
                "address": p.address,
                "key": p.key_id(),
                "fingerprint": p.fingerprint,
                "not_after_unix": p.not_after_unix,
                "changed_unix_ms": p.changed_unix_ms,
                "cluster": p.cluster,
            })
        })
        .collect();
    Json(json!({ "peers": peers }))
}

fn approval_error(err: ApprovalError) -> ApiError {
    let status = match &err {
        ApprovalError::Unknown(_) | ApprovalError::NotEnrolled(_) => StatusCode::NOT_FOUND,
        ApprovalError::NotPending { .. } => StatusCode::CONFLICT,
        ApprovalError::Issue(_) | ApprovalError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(status, err.to_string())
}

/// Approves a peer waiting to enroll: it gets its certificate at its next attempt.
async fn approve_peer(
    State(core): State<CoreHandle>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&core, &headers, Scope::Admin)?;
    core.approve_peer(&name).map_err(approval_error)?;
    Ok(Json(json!({ "peer": name, "state": "enrolled" })))
}

/// Revokes a peer: its connection drops, its certificate is refused from now on.
async fn revoke_peer(
    State(core): State<CoreHandle>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&core, &headers, Scope::Admin)?;
    core.revoke_peer(&name).map_err(approval_error)?;
    Ok(Json(json!({ "peer": name, "state": "revoked" })))
}

/// The tokens made with `xrdtest token create`: name, scope, made, ends. Admin only.
async fn list_tokens(State(core): State<CoreHandle>, headers: HeaderMap) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&core, &headers, Scope::Admin)?;
    let tokens: Vec<serde_json::Value> = core
        .tokens()
        .into_iter()
        .map(|t| {
            json!({
                "name": t.name, "scope": t.scope.as_str(),
                "created_unix_ms": t.created_unix_ms, "expires_unix_ms": t.expires_unix_ms,
            })
        })
        .collect();
    Ok(Json(json!({ "tokens": tokens })))
}

#[derive(serde::Deserialize)]
struct NewToken {
    name: String,
    /// `read`, `run` or `admin`.
    scope: String,
    /// Seconds until it ends; none: never.
    expires_in_s: Option<u64>,
}

/// Makes a token and answers it, the only time it is shown. Admin only.
async fn create_token(
    State(core): State<CoreHandle>,
    headers: HeaderMap,
    Json(request): Json<NewToken>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    authorize(&core, &headers, Scope::Admin)?;
    let scope = Scope::parse(&request.scope).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let lifetime = request.expires_in_s.map(|s| s.saturating_mul(1000));
    let (token, record) = core.create_token(&request.name, scope, lifetime).map_err(token_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "name": record.name, "scope": record.scope.as_str(), "token": token,
            "created_unix_ms": record.created_unix_ms, "expires_unix_ms": record.expires_unix_ms,
        })),
    ))
}

async fn revoke_token(
    State(core): State<CoreHandle>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&core, &headers, Scope::Admin)?;
    core.revoke_token(&name).map_err(token_error)?;
    Ok(Json(json!({ "token": name, "state": "revoked" })))
}

fn token_error(err: TokenError) -> ApiError {
    let status = match &err {
        TokenError::Exists(_) => StatusCode::CONFLICT,
        TokenError::Unknown(_) => StatusCode::NOT_FOUND,
        TokenError::BadName | TokenError::Full => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(status, err.to_string())
}

/// Starts a cluster by hand; its states follow on `GET /api/clusters`.
async fn start_cluster(
    State(core): State<CoreHandle>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    authorize(&core, &headers, Scope::Run)?;
    let hypervisor = core.start_cluster_by_hand(&name).await.map_err(cluster_command_error)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "cluster": name, "hypervisor": hypervisor }))))
}

async fn stop_cluster(
    State(core): State<CoreHandle>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    authorize(&core, &headers, Scope::Run)?;
    let hypervisor = core.stop_cluster_by_hand(&name).await.map_err(cluster_command_error)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "cluster": name, "hypervisor": hypervisor }))))
}
