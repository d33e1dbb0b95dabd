//! Runs one stage's script: `bash <file>` in its own process group, stdout and stderr merged
//! into one pipe, output streamed as timestamped lines, timeout / cancel / output cap enforced.
//!
//! Behaviour in detail:
//!
//! - The script is written to `<work_dir>/.xrdtest-stage-<id>.sh` (mode 0600; removed after
//!   the stage) and run as `bash <file>` with `work_dir` as cwd, stdin from `/dev/null`, the
//!   inherited environment plus [`StageSpec::env`], in a new process group whose id is the
//!   pid of bash.
//! - stdout and stderr are the write end of the same pipe, so their relative order is the
//!   order in which the script wrote them. Lines are split on `\n`, converted from UTF-8
//!   lossily, stamped with the time they were read; a final line without a newline is still
//!   emitted; a line longer than [`MAX_LINE_BYTES`] is emitted in pieces of at most that size
//!   (cut on a UTF-8 character boundary when possible).
//! - Byte accounting is on the raw bytes read from the pipe: a line costs its length plus 1
//!   for its newline (a piece of a long line or a final line without newline costs just its
//!   length). `output_bytes + dropped_bytes` is everything the script wrote that was read
//!   before the stage finished. The first line that would take `output_bytes` past
//!   [`StageSpec::output_limit_bytes`] is dropped, a single marker line is emitted (not
//!   counted), and everything after it is only counted in `dropped_bytes` while the pipe is
//!   still drained, so the script never blocks.
//! - Lines are batched into [`ExecEvent::Output`]: a batch is sent once it holds about
//!   [`BATCH_BYTES`], [`BATCH_INTERVAL`] after its first line, and at the end. A full events
//!   channel applies back-pressure: reading pauses (and so, once the pipe is full, does the
//!   script) but the timeout and cancel keep working. If the receiver is gone, the pipe is
//!   still drained, the stage still runs to its end (or timeout/cancel) and the summary is
//!   still returned.
//! - Timeout and cancel: SIGTERM to the whole process group, then SIGKILL to it after
//!   [`KILL_GRACE`] unless the group has no live member by then (zombies waiting for a lazy
//!   init do not count; the stage ends as soon as that is so). Background children die
//!   with it (unless they left the group, e.g. with `setsid`). The outcome is
//!   [`StageOutcome::TimedOut`] (with the elapsed time since the spawn) or
//!   [`StageOutcome::Cancelled`], whatever exit status bash then reports. Timeout and cancel
//!   are ignored once bash has exited. A dropped cancel sender means "no cancel".
//! - Normal exit: the process group is NOT killed, so daemons a script starts in the
//!   background survive into later stages. Such a child often still holds the pipe's write
//!   end; the executor therefore does not wait for EOF once bash has exited: it keeps reading
//!   until EOF, or until the pipe has been quiet for [`DRAIN_IDLE`], or at most
//!   [`DRAIN_MAX`] after the exit, then finishes. If the pipe is still open then, a detached
//!   task keeps reading and discarding from it until EOF, so a background child that writes
//!   to its inherited stdout later does not die of SIGPIPE.
//! - If the `run_stage` future is dropped before bash has exited (or while the group is
//!   being killed), the whole process group is killed with SIGKILL.
//! - With [`StageSpec::cgroup_procs`], bash joins the session's cgroup before it runs the
//!   script, so everything it starts stays there ([`crate::session_scope`]).
//! - Spawn failures (work_dir not creatable, script not writable, bash not found) give
//!   [`StageOutcome::Failed`] with the OS error text, and no `Started` event.
//! - Results: the script's environment has `XRDTEST_RESULTS`, the path of an empty file
//!   (`<work_dir>/.xrdtest-results-<id>`, see [`crate::results`]) for `result` and `check`
//!   lines. Once bash has exited it is read and removed; its bad lines become output lines
//!   (not counted towards the limit) and the values go into [`ExecSummary::values`].
//! - Every path sends exactly one [`ExecEvent::Started`] (if bash was spawned) before any
//!   [`ExecEvent::Output`], and exactly one [`ExecEvent::Finished`] last, carrying the same
//!   summary that is returned.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use xrdtest_proto::message::{OutputLine, StageOutcome, StageValues};

use crate::results;

/// A line with no newline for this many bytes is emitted in pieces of at most this size.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// An output batch is sent once it holds about this many bytes of text.
pub const BATCH_BYTES: usize = 64 * 1024;
/// An output batch is sent at the latest this long after its first line was read.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(50);
/// After bash has exited, reading stops once the pipe has been quiet this long.
pub const DRAIN_IDLE: Duration = Duration::from_millis(200);
/// After bash has exited, reading stops at the latest this long after the exit.
pub const DRAIN_MAX: Duration = Duration::from_secs(5);
/// On timeout or cancel, time between SIGTERM and SIGKILL to the process group.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// Per-line bookkeeping cost counted towards [`BATCH_BYTES`], so that a flood of empty lines
/// is batched sensibly too.
const LINE_OVERHEAD: usize = 16;
/// Size of the read buffer.
const READ_BUF: usize = 256 * 1024;
/// Size requested for the pipe (Linux only; failure is harmless).
#[cfg(target_os = "linux")]
const PIPE_SIZE: libc::c_int = 1024 * 1024;
/// How many events may wait for a channel slot before reading pauses.
const OUTBOX_MAX: usize = 2;
/// Poll interval for "is the process group gone" while in the kill grace period.
const GROUP_POLL: Duration = Duration::from_millis(50);

/// One stage to run.
#[derive(Debug, Clone)]
pub struct StageSpec {
    pub stage_id: u64,
    /// The script, already `@tag@`-expanded by the caller.
    pub script: String,
    /// `XRDTEST_*` variables, added to the inherited environment.
    pub env: Vec<(String, String)>,
    /// Created if missing; the script runs with it as cwd.
    pub work_dir: PathBuf,
    /// The session's files the master sent with this stage, written before it runs.
    pub files: Vec<xrdtest_proto::SessionFile>,
    pub timeout: Duration,
    /// Output past this is counted and dropped (one marker line says so).
    pub output_limit_bytes: u64,
    /// The session cgroup's `cgroup.procs`: bash writes itself into it before it starts
    /// (see [`crate::session_scope`]); `None`: no cgroup.
    pub cgroup_procs: Option<std::ffi::CString>,
}

/// What [`run_stage`] reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// bash was spawned; `pid` is also the process group id.
    Started { unix_ms: u64, pid: u32 },
    /// Batched lines, in order.
    Output(Vec<OutputLine>),
    /// Always the last event.
    Finished(ExecSummary),
}

/// How a stage ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSummary {
    pub outcome: StageOutcome,
    pub started_unix_ms: u64,
    pub ended_unix_ms: u64,
    /// Bytes of output kept (line text + 1 per newline), not counting the limit marker.
    pub output_bytes: u64,
    /// Bytes of output dropped past the output limit.
    pub dropped_bytes: u64,
    /// What the script reported in its results file.
    pub values: StageValues,
}

/// The marker line emitted once when the output limit is reached.
pub fn limit_marker(limit: u64) -> String {
    format!("[xrdtest: output limit of {limit} bytes reached; the rest is dropped]")
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Runs one stage's script to its end; see the module documentation.
pub async fn run_stage(
    spec: StageSpec,
    events: mpsc::Sender<ExecEvent>,
    cancel: oneshot::Receiver<String>,
) -> ExecSummary {
    let script_path = spec.work_dir.join(format!(".xrdtest-stage-{}.sh", spec.stage_id));
    let spawned = match spawn(&spec, &script_path).await {
        Ok(spawned) => spawned,
        Err(reason) => {
            remove_script(&script_path).await;
            let now = unix_ms();
            let summary = ExecSummary {
                outcome: StageOutcome::Failed { reason },
                started_unix_ms: now,
                ended_unix_ms: now,
                output_bytes: 0,
                dropped_bytes: 0,
                values: StageValues::default(),
            };
            let _ = events.send(ExecEvent::Finished(summary.clone())).await;
            return summary;
        }
    };
    let results_path = results::path_for(&spec.work_dir, spec.stage_id);
    let summary = supervise(spawned, &spec, &results_path, events.clone(), cancel).await;
    remove_script(&script_path).await;
    let _ = events.send(ExecEvent::Finished(summary.clone())).await;
    summary
}

struct Spawned {
    child: tokio::process::Child,
    pid: u32,
    reader: pipe::Receiver,
    started_unix_ms: u64,
    started: Instant,
}

async fn remove_script(path: &Path) {
    let _ = tokio::fs::remove_file(path).await;
}

async fn spawn(spec: &StageSpec, script_path: &Path) -> Result<Spawned, String> {
    tokio::fs::create_dir_all(&spec.work_dir)
        .await
        .map_err(|e| format!("cannot create work directory {}: {e}", spec.work_dir.display()))?;
    crate::session_files::write(&spec.work_dir, &spec.files)?;
    write_script(script_path, &spec.script)
        .await
        .map_err(|e| format!("cannot write script {}: {e}", script_path.display()))?;
    let results_path = results::path_for(&spec.work_dir, spec.stage_id);
    results::create(&results_path)
        .map_err(|e| format!("cannot create results file {}: {e}", results_path.display()))?;
    let spawned = spawn_bash(spec, script_path, &results_path);
    if spawned.is_err() {
        let _ = std::fs::remove_file(&results_path);
    }
    spawned
}

/// Starts bash on the script, its output into a fresh pipe, in a process group of its own.
fn spawn_bash(spec: &StageSpec, script_path: &Path, results_path: &Path) -> Result<Spawned, String> {
    let (reader, writer) = cloexec_pipe().map_err(|e| format!("cannot create output pipe: {e}"))?;
    let writer2 = writer.try_clone().map_err(|e| format!("cannot duplicate output pipe: {e}"))?;
    let reader = pipe::Receiver::from_owned_fd(reader).map_err(|e| format!("cannot set up output pipe: {e}"))?;

    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg(script_path)
        .current_dir(&spec.work_dir)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("XRDTEST_RESULTS", results_path)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        .process_group(0)
        .kill_on_drop(false);
    if let Some(procs) = spec.cgroup_procs.clone() {
        // SAFETY: the closure makes only async-signal-safe calls (open, write, close). A
        // failure is ignored: the environment marker still finds the stage's processes.
        unsafe {
            cmd.pre_exec(move || {
                let _ = crate::session_scope::join_cgroup(&procs);
                Ok(())
            });
        }
    }
    let spawn_result = cmd.spawn();
    // The command holds the parent's copies of the pipe's write end: close them now, or the
    // pipe would never reach EOF.
    drop(cmd);
    let child = spawn_result.map_err(|e| format!("cannot run bash: {e}"))?;
    let started = Instant::now();
    let started_unix_ms = unix_ms();
    let pid = child.id().ok_or_else(|| "bash exited before its pid was known".to_string())?;
    Ok(Spawned { child, pid, reader, started_unix_ms, started })
}

async fn write_script(path: &Path, script: &str) -> io::Result<()> {
    let path = path.to_owned();
    let script = script.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
        f.write_all(script.as_bytes())?;
        f.flush()
    })
    .await
    .map_err(io::Error::other)?
}

/// A pipe whose both ends are close-on-exec (the child's stdout/stderr get it via dup2,
/// which clears the flag), so no other concurrently spawned process inherits the write end.
fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, both fds are open and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // A bigger pipe means fewer wake-ups for chatty scripts; failure is harmless.
        // SAFETY: r is an open pipe fd.
        unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    }
    Ok((r, w))
}

fn signal_group(pgid: u32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: killpg has no memory-safety preconditions.
    if unsafe { libc::killpg(pgid as libc::pid_t, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether the process group still has live members. Zombies do not count: where init
/// reaps orphans lazily (some containers), a killed group would otherwise look alive for
/// seconds. Without a readable `/proc`, any member, zombie or not, counts.
fn group_exists(pgid: u32) -> bool {
    match signal_group(pgid, 0) {
        Ok(()) => {}
        Err(e) => return e.raw_os_error() != Some(libc::ESRCH),
    }
    #[cfg(target_os = "linux")]
    if let Some(live) = live_group_member_in_proc(pgid) {
        return live;
    }
    true
}

/// Scans `/proc` for a member of the process group that is not a zombie; `None` if `/proc`
/// cannot be read.
#[cfg(target_os = "linux")]
fn live_group_member_in_proc(pgid: u32) -> Option<bool> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<u32>().ok());
        if pgrp == Some(pgid) && !matches!(state, Some("Z") | Some("X")) {
            return Some(true);
        }
    }
    Some(false)
}

/// Kills the process group with SIGKILL when dropped while armed: covers the `run_stage`
/// future being dropped mid-stage.
struct GroupGuard {
    pgid: u32,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = signal_group(self.pgid, libc::SIGKILL);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// Not killing.
    None,
    /// SIGTERM sent; SIGKILL at this instant unless the group is gone first.
    TermSent { kill_at: Instant },
    /// Kill sequence over (SIGKILL sent, or group gone after SIGTERM).
    Done,
}

/// Splits the pipe's bytes into lines, enforces the output cap and accumulates a batch.
struct LineSplitter {
    pending: Vec<u8>,
    batch: Vec<OutputLine>,
    batch_bytes: usize,
    /// When the current batch's first line was read.
    batch_since: Option<Instant>,
    limit: u64,
    capped: bool,
    output_bytes: u64,
    dropped_bytes: u64,
}

impl LineSplitter {
    fn new(limit: u64) -> LineSplitter {
        LineSplitter {
            pending: Vec::new(),
            batch: Vec::new(),
            batch_bytes: 0,
            batch_since: None,
            limit,
            capped: false,
            output_bytes: 0,
            dropped_bytes: 0,
        }
    }

    fn feed(&mut self, mut data: &[u8], ts: u64) {
        while !data.is_empty() {
            if self.capped {
                // Nothing after the cap is looked at, only counted.
                self.dropped_bytes += (self.pending.len() + data.len()) as u64;
                self.pending.clear();
                return;
            }
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    if self.pending.is_empty() {
                        self.text(&data[..i], true, ts);
                    } else {
                        let mut line = std::mem::take(&mut self.pending);
                        line.extend_from_slice(&data[..i]);
                        self.text(&line, true, ts);
                        line.clear();
                        if self.pending.is_empty() {
                            self.pending = line; // keep the allocation
                        }
                    }
                    data = &data[i + 1..];
                }
                None => {
                    self.pending.extend_from_slice(data);
                    while self.pending.len() > MAX_LINE_BYTES && !self.capped {
                        let cut = utf8_cut(&self.pending, MAX_LINE_BYTES);
                        let piece: Vec<u8> = self.pending.drain(..cut).collect();
                        self.line(&piece, false, ts);
                    }
                    if self.capped {
                        self.dropped_bytes += self.pending.len() as u64;
                        self.pending.clear();
                    }
                    return;
                }
            }
        }
    }

    /// Emits the unterminated last line, if any.
    fn finish(&mut self, ts: u64) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.text(&rest, false, ts);
        }
    }

    /// A complete line (or the final unterminated one), split into pieces if too long.
    fn text(&mut self, mut bytes: &[u8], newline: bool, ts: u64) {
        while bytes.len() > MAX_LINE_BYTES {
            let cut = utf8_cut(bytes, MAX_LINE_BYTES);
            self.line(&bytes[..cut], false, ts);
            bytes = &bytes[cut..];
        }
        self.line(bytes, newline, ts);
    }

    fn line(&mut self, bytes: &[u8], newline: bool, ts: u64) {
        let cost = bytes.len() as u64 + u64::from(newline);
        if self.capped {
            self.dropped_bytes += cost;
            return;
        }
        if self.output_bytes + cost > self.limit {
            self.capped = true;
            self.dropped_bytes += cost;
            self.push(limit_marker(self.limit), ts);
            return;
        }
        self.output_bytes += cost;
        self.push(String::from_utf8_lossy(bytes).into_owned(), ts);
    }

    fn push(&mut self, text: String, ts: u64) {
        if self.batch.is_empty() {
            self.batch_since = Some(Instant::now());
        }
        self.batch_bytes += text.len() + LINE_OVERHEAD;
        self.batch.push(OutputLine { unix_ms: ts, text });
    }

    fn take_batch(&mut self) -> Option<Vec<OutputLine>> {
        if self.batch.is_empty() {
            return None;
        }
        self.batch_bytes = 0;
        self.batch_since = None;
        Some(std::mem::take(&mut self.batch))
    }
}

/// Where to cut `bytes` (longer than `max`) to get at most `max` bytes without splitting a
/// UTF-8 character, if there is one ending within the last 3 bytes before `max`.
fn utf8_cut(bytes: &[u8], max: usize) -> usize {
    let mut cut = max;
    while cut > max - 3 && cut < bytes.len() && (bytes[cut] & 0xC0) == 0x80 {
        cut -= 1;
    }
    if (bytes[cut] & 0xC0) == 0x80 {
        max // not UTF-8 anyway
    } else {
        cut
    }
}

/// Events waiting for a slot in the events channel.
struct Outbox {
    tx: mpsc::Sender<ExecEvent>,
    queue: VecDeque<ExecEvent>,
    /// False once the receiver is gone: events are discarded from then on.
    alive: bool,
}

impl Outbox {
    fn push(&mut self, event: ExecEvent) {
        if self.alive {
            self.queue.push_back(event);
        }
    }

    fn full(&self) -> bool {
        self.queue.len() >= OUTBOX_MAX
    }

    /// Sends everything left, waiting for slots as needed.
    async fn flush_all(&mut self) {
        while let Some(event) = self.queue.pop_front() {
            if self.alive && self.tx.send(event).await.is_err() {
                self.alive = false;
            }
        }
    }
}

async fn reserve(tx: &mpsc::Sender<ExecEvent>) -> Result<mpsc::Permit<'_, ExecEvent>, mpsc::error::SendError<()>> {
    tx.reserve().await
}

async fn wait_cancel(cancel: &mut oneshot::Receiver<String>) -> Option<String> {
    cancel.await.ok()
}

async fn supervise(
    spawned: Spawned,
    spec: &StageSpec,
    results_path: &Path,
    events: mpsc::Sender<ExecEvent>,
    mut cancel: oneshot::Receiver<String>,
) -> ExecSummary {
    let Spawned { mut child, pid, reader, started_unix_ms, started } = spawned;
    let mut guard = GroupGuard { pgid: pid, armed: true };
    let mut reader = Some(reader);
    let mut outbox = Outbox { tx: events, queue: VecDeque::new(), alive: true };
    outbox.push(ExecEvent::Started { unix_ms: started_unix_ms, pid });

    let mut lines = LineSplitter::new(spec.output_limit_bytes);
    let mut buf = vec![0u8; READ_BUF];

    let mut status: Option<ExitStatus> = None;
    let mut wait_error: Option<io::Error> = None;
    let mut exited_at: Option<Instant> = None;
    let mut last_data = started;
    let mut cancel_live = true;
    let mut outcome_override: Option<StageOutcome> = None;
    let mut kill = Kill::None;
    let mut next_group_poll: Option<Instant> = None;

    // A timeout too large for an Instant means "practically never".
    let deadline =
        started.checked_add(spec.timeout).unwrap_or_else(|| started + Duration::from_secs(100 * 365 * 86_400));
    let timeout_sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(timeout_sleep);
    let kill_sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(kill_sleep);
    let flush_sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(flush_sleep);
    let drain_sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(drain_sleep);

    loop {
        let exited = exited_at.is_some();
        let term_pending = matches!(kill, Kill::TermSent { .. });
        if exited && reader.is_none() && !term_pending {
            break;
        }

        // Move a due batch into the outbox.
        if let Some(since) = lines.batch_since {
            if lines.batch_bytes >= BATCH_BYTES || since.elapsed() >= BATCH_INTERVAL {
                if let Some(batch) = lines.take_batch() {
                    outbox.push(ExecEvent::Output(batch));
                }
            }
        }

        let can_read = reader.is_some() && !outbox.full();
        let can_send = outbox.alive && !outbox.queue.is_empty();
        if let Some(since) = lines.batch_since {
            rearm(flush_sleep.as_mut(), since + BATCH_INTERVAL);
        }
        if let Some(at) = exited_at {
            rearm(drain_sleep.as_mut(), (last_data.max(at) + DRAIN_IDLE).min(at + DRAIN_MAX));
        }
        if let Kill::TermSent { kill_at } = kill {
            // Once bash is gone, poll for the rest of the group every GROUP_POLL.
            let at = match next_group_poll {
                Some(poll) if exited => poll.min(kill_at),
                _ => kill_at,
            };
            rearm(kill_sleep.as_mut(), at);
        }

        tokio::select! {
            biased;

            res = child.wait(), if !exited => {
                exited_at = Some(Instant::now());
                next_group_poll = exited_at;
                match res {
                    Ok(s) => status = Some(s),
                    Err(e) => wait_error = Some(e),
                }
                if kill == Kill::None {
                    // Normal exit: background children may live on.
                    guard.armed = false;
                }
            }

            reason = wait_cancel(&mut cancel), if cancel_live && !exited && kill == Kill::None => {
                cancel_live = false;
                if let Some(reason) = reason {
                    tracing::info!(stage_id = spec.stage_id, %reason, "cancelling stage");
                    outcome_override = Some(StageOutcome::Cancelled { reason });
                    kill = start_kill(pid);
                }
            }

            _ = &mut timeout_sleep, if !exited && kill == Kill::None => {
                let after_ms = started.elapsed().as_millis() as u64;
                tracing::info!(stage_id = spec.stage_id, after_ms, "stage timed out");
                outcome_override = Some(StageOutcome::TimedOut { after_ms });
                kill = start_kill(pid);
            }

            _ = &mut kill_sleep, if term_pending => {
                if let Kill::TermSent { kill_at } = kill {
                    if Instant::now() >= kill_at {
                        if !exited || group_exists(pid) {
                            let _ = signal_group(pid, libc::SIGKILL);
                        }
                        kill = Kill::Done;
                    } else if exited && !group_exists(pid) {
                        kill = Kill::Done;
                    } else {
                        next_group_poll = Some(Instant::now() + GROUP_POLL);
                    }
                }
            }

            permit = reserve(&outbox.tx), if can_send => {
                match permit {
                    Ok(permit) => {
                        if let Some(event) = outbox.queue.pop_front() {
                            permit.send(event);
                        }
                    }
                    Err(_) => {
                        outbox.alive = false;
                        outbox.queue.clear();
                    }
                }
            }

            res = read_some(&mut reader, &mut buf), if can_read => {
                match res {
                    Ok(0) => reader = None,
                    Ok(n) => {
                        let now = Instant::now();
                        last_data = now;
                        lines.feed(&buf[..n], unix_ms());
                        if exited_at.is_some_and(|at| now >= at + DRAIN_MAX) {
                            stop_reading(&mut reader, spec.stage_id);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        tracing::warn!(stage_id = spec.stage_id, error = %e, "reading stage output failed");
                        reader = None;
                    }
                }
            }

            _ = &mut flush_sleep, if lines.batch_since.is_some() => {
                // The batch is moved to the outbox at the top of the loop.
            }

            _ = &mut drain_sleep, if exited && can_read => {
                stop_reading(&mut reader, spec.stage_id);
            }
        }
    }
    guard.armed = false;

    let ended = unix_ms();
    lines.finish(ended);
    let path = results_path.to_owned();
    let (values, problems) = tokio::task::spawn_blocking(move || results::collect(&path))
        .await
        .unwrap_or_else(|e| (StageValues::default(), vec![format!("[xrdtest: reading the results file failed: {e}]")]));
    for problem in problems {
        lines.push(problem, ended);
    }
    if let Some(batch) = lines.take_batch() {
        outbox.push(ExecEvent::Output(batch));
    }
    outbox.flush_all().await;

    let outcome = match (outcome_override, status, wait_error) {
        (Some(o), _, _) => o,
        (None, Some(s), _) => match (s.code(), s.signal()) {
            (Some(code), _) => StageOutcome::Exited { code },
            (None, Some(signal)) => StageOutcome::KilledBySignal { signal },
            (None, None) => StageOutcome::Failed { reason: format!("unexpected exit status {s}") },
        },
        (None, None, Some(e)) => StageOutcome::Failed { reason: format!("waiting for bash failed: {e}") },
        (None, None, None) => StageOutcome::Failed { reason: "bash exit status unknown".to_string() },
    };
    ExecSummary {
        outcome,
        started_unix_ms,
        ended_unix_ms: ended,
        output_bytes: lines.output_bytes,
        dropped_bytes: lines.dropped_bytes,
        values,
    }
}

/// Moves a timer only if its deadline changes (a reset costs a timer-wheel update).
fn rearm(sleep: std::pin::Pin<&mut tokio::time::Sleep>, at: Instant) {
    if sleep.deadline() != at {
        sleep.reset(at);
    }
}

fn start_kill(pgid: u32) -> Kill {
    if let Err(e) = signal_group(pgid, libc::SIGTERM) {
        tracing::debug!(pgid, error = %e, "SIGTERM to process group failed");
    }
    Kill::TermSent { kill_at: Instant::now() + KILL_GRACE }
}

async fn read_some(reader: &mut Option<pipe::Receiver>, buf: &mut [u8]) -> io::Result<usize> {
    match reader {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Stops reading the stage's output: bash has exited but something (a background child)
/// still holds the pipe. The pipe is drained and discarded in a detached task until EOF, so
/// that child does not get SIGPIPE when it writes.
fn stop_reading(reader: &mut Option<pipe::Receiver>, stage_id: u64) {
    let Some(mut r) = reader.take() else { return };
    tracing::debug!(stage_id, "stage finished while its output pipe is still open; discarding the rest");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut discarded: u64 = 0;
        loop {
            match r.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => discarded += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        tracing::debug!(stage_id, discarded, "late output of stage discarded");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &LineSplitter) -> Vec<String> {
        s.batch.iter().map(|l| l.text.clone()).collect()
    }

    #[test]
    fn splits_lines_across_reads() {
        let mut s = LineSplitter::new(u64::MAX);
        s.feed(b"ab", 1);
        s.feed(b"c\nde\n\nf", 2);
        s.finish(3);
        assert_eq!(texts(&s), ["abc", "de", "", "f"]);
        assert_eq!(s.output_bytes, 9);
    }

    #[test]
    fn long_line_in_pieces() {
        let mut s = LineSplitter::new(u64::MAX);
        let data = vec![b'x'; MAX_LINE_BYTES * 2 + 10];
        for chunk in data.chunks(1000) {
            s.feed(chunk, 1);
        }
        s.feed(b"\n", 1);
        let lens: Vec<usize> = s.batch.iter().map(|l| l.text.len()).collect();
        assert_eq!(lens, [MAX_LINE_BYTES, MAX_LINE_BYTES, 10]);
        assert_eq!(s.output_bytes, data.len() as u64 + 1);
    }

    #[test]
    fn long_line_cut_on_char_boundary() {
        let mut s = LineSplitter::new(u64::MAX);
        let mut data = vec![b'x'; MAX_LINE_BYTES - 1];
        data.extend_from_slice("é".as_bytes()); // straddles the cut
        data.extend_from_slice(b"yz\n");
        s.feed(&data, 1);
        assert_eq!(s.batch.len(), 2);
        assert_eq!(s.batch[0].text.len(), MAX_LINE_BYTES - 1);
        assert_eq!(s.batch[1].text, "éyz");
    }

    #[test]
    fn cap_counts_and_marks_once() {
        let mut s = LineSplitter::new(7);
        s.feed(b"abc\ndef\nghi\njkl\n", 1);
        s.finish(2);
        assert_eq!(texts(&s), ["abc".to_string(), limit_marker(7)]);
        assert_eq!(s.output_bytes, 4);
        assert_eq!(s.dropped_bytes, 12);
    }
}
