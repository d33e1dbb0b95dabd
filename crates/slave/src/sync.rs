//! The stage scripts' sync endpoint: a Unix socket (`$XRDTEST_SYNC`) on which the
//! `xrdtest-slave sync ...` command (behind `sync_signal`, `sync_wait`, `sync_barrier`,
//! `sync_publish`, `sync_subscribe` of functions.sh) asks the session's sync state on the
//! master (docs/sync.md).
//!
//! Local wire: one request and one reply per connection, each a 4-byte big-endian length
//! and a bincode payload. The request names its stage (`$XRDTEST_STAGE_ID`); only a stage
//! this slave is running may ask. The socket is the slave user's alone (mode 0600).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use xrdtest_proto::{FaultOp, StageId, SyncCount, SyncOp, SyncReply};

/// Largest local request or reply (a reply carries up to the master's frame of entries).
const MAX_LOCAL_FRAME: usize = 64 << 20;
/// Longest wait for a client to send its request.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Longest Unix socket path (sun_path is 108 bytes with its NUL; keep a margin).
const MAX_SOCKET_PATH: usize = 100;

/// What a script asks through the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalRequest {
    pub stage_id: StageId,
    pub op: LocalOp,
    pub timeout_ms: Option<u64>,
}

/// A sync call or a fault call (docs/faults.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocalOp {
    Sync(SyncOp),
    Fault(FaultOp),
}

/// Where the socket goes: in the work folder, or, when that path is too long for a Unix
/// socket, in the temporary folder under this process's id.
pub fn socket_path(work_dir: &Path) -> PathBuf {
    let path = work_dir.join("sync.sock");
    if path.as_os_str().len() <= MAX_SOCKET_PATH {
        path
    } else {
        std::env::temp_dir().join(format!("xrdtest-sync-{}.sock", std::process::id()))
    }
}

/// Binds the socket (a stale one left by an earlier run is replaced), owner only.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Reads one length-prefixed bincode value.
pub async fn read_frame<T: DeserializeOwned>(stream: &mut UnixStream) -> Result<T, String> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.map_err(|e| format!("read: {e}"))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_LOCAL_FRAME {
        return Err(format!("a request of {len} bytes, more than {MAX_LOCAL_FRAME}"));
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.map_err(|e| format!("read: {e}"))?;
    decode(&payload)
}

/// Writes one length-prefixed bincode value.
pub async fn write_frame<T: Serialize>(stream: &mut UnixStream, value: &T) -> std::io::Result<()> {
    stream.write_all(&encode(value)).await
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain data of our own types: encoding cannot fail.
    let payload = bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap_or_default();
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend(payload);
    frame
}

fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    let config = bincode::config::standard().with_limit::<MAX_LOCAL_FRAME>();
    bincode::serde::decode_from_slice(payload, config).map(|(value, _)| value).map_err(|e| format!("decode: {e}"))
}

/// Reads a client's request, within [`REQUEST_DEADLINE`].
pub async fn read_request(stream: &mut UnixStream) -> Result<LocalRequest, String> {
    match tokio::time::timeout(REQUEST_DEADLINE, read_frame(stream)).await {
        Ok(request) => request,
        Err(_) => Err("no request within 5 s".into()),
    }
}

/// Resolves once the client hung up (its script ended or was killed) or wrote something it
/// should not have.
pub async fn client_gone(stream: &mut UnixStream) {
    let mut byte = [0u8; 1];
    let _ = stream.read(&mut byte).await;
}

// ---- The client: `xrdtest-slave sync ...` ----

/// The `sync` subcommand's words, as `sync_*` of functions.sh pass them.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SyncCommand {
    /// Add an entry (with an optional one-line VALUE) to signal NAME.
    Signal {
        #[arg(allow_hyphen_values = true)]
        name: String,
        #[arg(allow_hyphen_values = true)]
        value: Option<String>,
    },
    /// Wait until signal NAME has COUNT entries (default 1); print their values, one per line.
    Wait {
        name: String,
        /// A number, `all` (every slave of the session) or `role:ROLE`.
        count: Option<String>,
        /// Give up after this long (`30s`, `2m`); default: when the stage ends.
        #[arg(long, value_name = "D")]
        timeout: Option<String>,
    },
    /// Arrive at barrier NAME; return once COUNT (default: every slave of the session) have.
    Barrier {
        name: String,
        /// A number, `all` or `role:ROLE`.
        #[arg(long, value_name = "N")]
        count: Option<String>,
        #[arg(long, value_name = "D")]
        timeout: Option<String>,
    },
    /// Add VALUE to topic TOPIC.
    Publish {
        #[arg(allow_hyphen_values = true)]
        topic: String,
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Print the first COUNT values (default 1) of topic TOPIC, once there are that many.
    Subscribe {
        topic: String,
        count: Option<String>,
        #[arg(long, value_name = "D")]
        timeout: Option<String>,
    },
}

/// Parses a count: a number of at least 1, `all`, or `role:ROLE`.
pub fn parse_count(text: &str) -> Result<SyncCount, String> {
    if text == "all" {
        return Ok(SyncCount::AllSlaves);
    }
    if let Some(role) = text.strip_prefix("role:") {
        if role.is_empty() {
            return Err("`role:` needs a role name".into());
        }
        return Ok(SyncCount::Role(role.to_string()));
    }
    match text.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(SyncCount::Exactly(n)),
        _ => Err(format!("`{text}` is not a count (a number from 1, `all` or `role:ROLE`)")),
    }
}

fn parse_timeout(text: Option<&str>) -> Result<Option<u64>, String> {
    text.map(|t| xrdtest_defs::units::parse_duration(t).map(|d| d.as_millis() as u64))
        .transpose()
        .map_err(|e| format!("--timeout: {e}"))
}

fn describe_count(count: &SyncCount) -> String {
    match count {
        SyncCount::Exactly(n) => n.to_string(),
        SyncCount::AllSlaves => "all".into(),
        SyncCount::Role(role) => format!("role:{role}"),
    }
}

impl SyncCommand {
    /// The request, and what it is for the stage's output (`wait ready (2)`).
    pub fn request(self, stage_id: StageId) -> Result<(LocalRequest, String), String> {
        let count = |text: Option<String>, default: SyncCount| text.as_deref().map(parse_count).unwrap_or(Ok(default));
        let (op, timeout, what) = match self {
            SyncCommand::Signal { name, value } => {
                let what = format!("signal {name}");
                (SyncOp::Signal { name, value: value.unwrap_or_default() }, None, what)
            }
            SyncCommand::Wait { name, count: n, timeout } => {
                let count = count(n, SyncCount::Exactly(1))?;
                let what = format!("wait {name} ({})", describe_count(&count));
                (SyncOp::Wait { name, count }, timeout, what)
            }
            SyncCommand::Barrier { name, count: n, timeout } => {
                let count = count(n, SyncCount::AllSlaves)?;
                let what = format!("barrier {name} ({})", describe_count(&count));
                (SyncOp::Barrier { name, count }, timeout, what)
            }
            SyncCommand::Publish { topic, value } => {
                let what = format!("publish {topic}");
                (SyncOp::Publish { topic, value }, None, what)
            }
            SyncCommand::Subscribe { topic, count: n, timeout } => {
                let count = count(n, SyncCount::Exactly(1))?;
                let what = format!("subscribe {topic} ({})", describe_count(&count));
                (SyncOp::Subscribe { topic, count }, timeout, what)
            }
        };
        let timeout_ms = parse_timeout(timeout.as_deref())?;
        Ok((LocalRequest { stage_id, op: LocalOp::Sync(op), timeout_ms }, what))
    }

    fn prints_values(&self) -> bool {
        matches!(self, SyncCommand::Wait { .. } | SyncCommand::Subscribe { .. })
    }
}

/// `sync ...` for a program that embeds the slave (the demo): `args` from the word `sync`.
pub fn run_from_args(args: impl IntoIterator<Item = String>) -> i32 {
    #[derive(clap::Parser)]
    #[command(name = "sync", about = "Sync calls of a stage script (docs/sync.md)")]
    struct SyncArgs {
        #[command(subcommand)]
        what: SyncCommand,
    }
    match <SyncArgs as clap::Parser>::try_parse_from(args) {
        Ok(args) => run_client(args.what),
        Err(err) => {
            let _ = err.print();
            if err.use_stderr() {
                2
            } else {
                0
            }
        }
    }
}

/// Runs `xrdtest-slave sync ...` inside a stage: asks, prints, and returns the exit status
/// (0 done, 1 failed, 2 not usable here).
pub fn run_client(command: SyncCommand) -> i32 {
    let prints_values = command.prints_values();
    let (socket, stage_id) = match stage_endpoint() {
        Ok(found) => found,
        Err(err) => {
            eprintln!("sync: {err}");
            return 2;
        }
    };
    let (request, what) = match command.request(stage_id) {
        Ok(request) => request,
        Err(err) => {
            eprintln!("sync: {err}");
            return 2;
        }
    };
    let adds = matches!(request.op, LocalOp::Sync(SyncOp::Signal { .. } | SyncOp::Publish { .. }));
    let reply = match ask(&socket, &request) {
        Ok(reply) => reply,
        Err(err) => {
            eprintln!("sync: {what}: {err}");
            return 1;
        }
    };
    match reply {
        SyncReply::Done { entries, waited_ms } => {
            if prints_values {
                let mut out = std::io::stdout().lock();
                for entry in &entries {
                    let _ = writeln!(out, "{}", entry.value);
                }
                let _ = out.flush();
            }
            if adds {
                eprintln!("sync: {what}");
            } else {
                let from: Vec<&str> = entries.iter().map(|e| e.slave.as_str()).collect();
                eprintln!("sync: {what}: done after {:.1} s, from {}", waited_ms as f64 / 1000.0, from.join(" "));
            }
            0
        }
        SyncReply::Failed { reason } => {
            eprintln!("sync: {what}: failed: {reason}");
            1
        }
    }
}

/// The slave's socket and this stage's id, from the stage's environment.
pub fn stage_endpoint() -> Result<(PathBuf, StageId), String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(socket), Some(stage)) = (env("XRDTEST_SYNC"), env("XRDTEST_STAGE_ID")) else {
        return Err("XRDTEST_SYNC and XRDTEST_STAGE_ID are not set (not run by an xrdtest slave?)".into());
    };
    let stage_id = stage.parse::<StageId>().map_err(|_| format!("XRDTEST_STAGE_ID `{stage}` is not a stage id"))?;
    Ok((PathBuf::from(socket), stage_id))
}

/// One blocking round trip on the socket (the client is a short-lived process).
pub fn ask(socket: &Path, request: &LocalRequest) -> Result<SyncReply, String> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("cannot reach the slave at {}: {e}", socket.display()))?;
    stream.write_all(&encode(request)).map_err(|e| format!("send: {e}"))?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).map_err(|_| "the slave closed the connection without an answer".to_string())?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_LOCAL_FRAME {
        return Err(format!("an answer of {len} bytes"));
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).map_err(|e| format!("read: {e}"))?;
    decode(&payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_and_bad_ones_say_what_is_allowed() {
        assert_eq!(parse_count("3"), Ok(SyncCount::Exactly(3)));
        assert_eq!(parse_count("all"), Ok(SyncCount::AllSlaves));
        assert_eq!(parse_count("role:server"), Ok(SyncCount::Role("server".into())));
        assert!(parse_count("0").unwrap_err().contains("a number from 1"));
        assert!(parse_count("role:").is_err());
        assert!(parse_count("-1").is_err());
    }

    #[test]
    fn commands_become_requests_with_their_defaults() {
        let (request, what) =
            SyncCommand::Barrier { name: "up".into(), count: None, timeout: Some("2s".into()) }.request(7).unwrap();
        let op = LocalOp::Sync(SyncOp::Barrier { name: "up".into(), count: SyncCount::AllSlaves });
        assert_eq!(request, LocalRequest { stage_id: 7, op, timeout_ms: Some(2000) });
        assert_eq!(what, "barrier up (all)");
        let (request, _) = SyncCommand::Wait { name: "x".into(), count: None, timeout: None }.request(7).unwrap();
        assert_eq!(request.op, LocalOp::Sync(SyncOp::Wait { name: "x".into(), count: SyncCount::Exactly(1) }));
        let err =
            SyncCommand::Wait { name: "x".into(), count: None, timeout: Some("soon".into()) }.request(7).unwrap_err();
        assert!(err.starts_with("--timeout:"), "{err}");
    }

    #[test]
    fn a_long_work_folder_puts_the_socket_in_the_temporary_folder() {
        assert_eq!(socket_path(Path::new("/var/lib/xrdtest")), Path::new("/var/lib/xrdtest/sync.sock"));
        let long = PathBuf::from(format!("/{}", "x".repeat(120)));
        assert!(socket_path(&long).starts_with(std::env::temp_dir()));
    }
}
