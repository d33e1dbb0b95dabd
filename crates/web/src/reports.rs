//! A session's reports over HTTP (`docs/api.md`, formats in `docs/results.md`): JSON,
//! JUnit XML, CSV and TAP made whole, and the export folder streamed as a .tar.gz while it
//! is written, so a session with much output never sits in memory. At most
//! [`EXPORTS_AT_ONCE`] exports are written at once; more are refused with 503 and
//! `Retry-After`. Reads, open as the rest of `/api/sessions` is.

use std::io::{self, Write};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use xrdtest_master::handle::CoreHandle;
use xrdtest_model::api::ApiErrorBody;
use xrdtest_model::{LogFile, OutputLine, SessionId, StageId};
use xrdtest_report::export::{self, ExportSource, Limits};
use xrdtest_report::SessionData;

/// Exports written at once. Each holds a blocking thread while it runs and, in memory, the
/// session's data and one file of the folder (see [`Limits`]).
pub const EXPORTS_AT_ONCE: usize = 4;

/// What a refused export's `Retry-After` says, in seconds.
pub const EXPORT_RETRY_SECONDS: u32 = 5;

pub fn routes() -> Router<CoreHandle> {
    // One gate per router: the exports of this server.
    let exports = Arc::new(Semaphore::new(EXPORTS_AT_ONCE));
    Router::new()
        .route("/api/sessions/{id}/report.json", get(report_json))
        .route("/api/sessions/{id}/junit.xml", get(junit_xml))
        .route("/api/sessions/{id}/results.csv", get(results_csv))
        .route("/api/sessions/{id}/report.tap", get(report_tap))
        .route(
            "/api/sessions/{id}/export.tar.gz",
            get(move |core: State<CoreHandle>, id: Path<SessionId>| export_tar_gz(core, id, Arc::clone(&exports))),
        )
}

/// A refusal, as the rest of the API words them: `{"error": "..."}`.
struct ReportError(StatusCode, String);

impl IntoResponse for ReportError {
    fn into_response(self) -> Response {
        (self.0, Json(ApiErrorBody { error: self.1 })).into_response()
    }
}

/// The refusal of an export beyond [`EXPORTS_AT_ONCE`]: 503, to be asked again in
/// [`EXPORT_RETRY_SECONDS`].
fn exports_busy() -> Response {
    let error = format!("{EXPORTS_AT_ONCE} exports are being written; try again in {EXPORT_RETRY_SECONDS} s");
    let mut response = ReportError(StatusCode::SERVICE_UNAVAILABLE, error).into_response();
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(EXPORT_RETRY_SECONDS));
    response
}

/// Reads a session and makes one report of it, both off the async threads (the store
/// reads files; a big session's report takes a while to write).
async fn render(
    core: CoreHandle,
    id: SessionId,
    format: fn(&SessionData) -> String,
) -> Result<(SessionData, String), ReportError> {
    let made = tokio::task::spawn_blocking(move || {
        core.session_data(id).map(|data| {
            data.map(|data| {
                let text = format(&data);
                (data, text)
            })
        })
    })
    .await;
    match made {
        Ok(Ok(Some(made))) => Ok(made),
        Ok(Ok(None)) => Err(ReportError(StatusCode::NOT_FOUND, format!("no session {id}"))),
        Ok(Err(err)) => Err(ReportError(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())),
        Err(err) => Err(ReportError(StatusCode::INTERNAL_SERVER_ERROR, format!("report of session {id}: {err}"))),
    }
}

async fn text_report(
    core: CoreHandle,
    id: SessionId,
    format: fn(&SessionData) -> String,
    content_type: &'static str,
) -> Result<Response, ReportError> {
    let (_, text) = render(core, id, format).await?;
    Ok(([(CONTENT_TYPE, content_type)], text).into_response())
}

async fn report_json(State(core): State<CoreHandle>, Path(id): Path<SessionId>) -> Result<Response, ReportError> {
    text_report(core, id, xrdtest_report::json, "application/json").await
}

async fn junit_xml(State(core): State<CoreHandle>, Path(id): Path<SessionId>) -> Result<Response, ReportError> {
    text_report(core, id, xrdtest_report::junit, "application/xml; charset=utf-8").await
}

async fn results_csv(State(core): State<CoreHandle>, Path(id): Path<SessionId>) -> Result<Response, ReportError> {
    text_report(core, id, xrdtest_report::csv, "text/csv; charset=utf-8; header=present").await
}

async fn report_tap(State(core): State<CoreHandle>, Path(id): Path<SessionId>) -> Result<Response, ReportError> {
    text_report(core, id, xrdtest_report::tap, "text/plain; charset=utf-8").await
}

/// The export, written by a blocking task into a channel the response body reads: at most
/// a few buffers are held at once, and a client that goes away stops the writing. One of
/// `gate`'s permits is held from before the session is read until both the writer and the
/// response body are done; with none left, the answer is [`exports_busy`].
async fn export_tar_gz(
    State(core): State<CoreHandle>,
    Path(id): Path<SessionId>,
    gate: Arc<Semaphore>,
) -> Result<Response, ReportError> {
    let Ok(permit) = gate.try_acquire_owned() else {
        tracing::info!(session = id, at_once = EXPORTS_AT_ONCE, "export refused: too many being written");
        return Ok(exports_busy());
    };
    let permit = Arc::new(permit);
    // The record first, so that an unknown session is a 404 and not a broken download.
    let (data, _) = render(core.clone(), id, |_| String::new()).await?;
    let file_name = format!("{}.tar.gz", export::folder_name(&data.record));
    let (sender, receiver) = mpsc::channel::<io::Result<Bytes>>(4);
    let writer_permit = Arc::clone(&permit);
    tokio::task::spawn_blocking(move || {
        let _permit: Arc<OwnedSemaphorePermit> = writer_permit;
        let mut source = StoreSource { core, logs: None };
        let writer = ChannelWriter { sender: sender.clone(), buffer: Vec::with_capacity(CHUNK_BYTES) };
        match export::write_tar_gz(&data, &mut source, Limits::default(), writer) {
            Ok(written) => tracing::info!(
                session = id,
                files = written.files,
                bytes = written.bytes,
                cut = written.cut.len(),
                problems = written.problems.len(),
                "export sent"
            ),
            Err(err) => {
                tracing::warn!(session = id, error = %err, "export stopped");
                // The writer fails when the client has gone; anything else (tar refusing a
                // path) ends the body with an error: a broken download, not a short archive
                // that looks whole.
                let _ = sender.blocking_send(Err(io::Error::other(err.to_string())));
            }
        }
    });
    // The body keeps the permit too: it is dropped when the body ends or the client leaves.
    let body = futures_util::stream::unfold((receiver, permit), |(mut receiver, permit)| async move {
        receiver.recv().await.map(|item| (item, (receiver, permit)))
    });
    Ok((
        [
            (CONTENT_TYPE, "application/gzip".to_string()),
            (CONTENT_DISPOSITION, format!("attachment; filename=\"{file_name}\"")),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// How many bytes the export writer gathers before handing them to the response.
const CHUNK_BYTES: usize = 64 * 1024;

/// A `Write` into the response's channel, a chunk at a time (blocking: it runs on a
/// blocking thread). A closed channel (the client left) is a broken pipe.
struct ChannelWriter {
    sender: mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES)));
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client closed the download"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        // The archive's last bytes (gzip's trailer) when nobody flushed after them.
        let _ = self.send();
    }
}

/// Output and logs from the store, through the core's handle: output a page of chunks at a
/// time; the logs of the last stage asked for are read at once (the store reads a stage's
/// logs together, and they are asked for in a row) and kept until each is handed out.
struct StoreSource {
    core: CoreHandle,
    logs: Option<(StageId, Vec<LogFile>)>,
}

impl StoreSource {
    /// The kept log of `stage_id` at `path`, moved out (not copied).
    fn take_log(&mut self, stage_id: StageId, path: &str) -> Option<LogFile> {
        let (kept, logs) = self.logs.as_mut()?;
        if *kept != stage_id {
            return None;
        }
        let index = logs.iter().position(|log| log.path == path)?;
        Some(logs.swap_remove(index))
    }
}

/// Output chunks read per page (a chunk is what the slave sent at once, a few KiB).
const PAGE_CHUNKS: usize = 64;

impl ExportSource for StoreSource {
    fn output(&mut self, stage_id: StageId, from: u64) -> Result<(Vec<OutputLine>, u64), String> {
        let chunks = self.core.output(stage_id, from, PAGE_CHUNKS).map_err(|err| err.to_string())?;
        let next = chunks.last().map(|(seq, _)| seq + 1).unwrap_or(from);
        Ok((chunks.into_iter().flat_map(|(_, lines)| lines).collect(), next))
    }

    fn log(&mut self, stage_id: StageId, path: &str) -> Result<Option<LogFile>, String> {
        if let Some(log) = self.take_log(stage_id, path) {
            return Ok(Some(log));
        }
        // Not kept (another stage's, one asked for again, or one not stored): read them anew.
        self.logs = None;
        let logs = self.core.logs(stage_id).map_err(|err| err.to_string())?;
        self.logs = Some((stage_id, logs));
        Ok(self.take_log(stage_id, path))
    }
}
