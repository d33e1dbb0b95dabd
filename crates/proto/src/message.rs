//! Every message of the protocol.
//!
//! XrdTest's messages map onto these as follows: `hello` is [`Hello`]/[`HelloReply`];
//! `test_suite_init`, `test_case_init`, `test_case_run`, `test_case_finalize` and
//! `test_suite_finalize` are one [`FromMaster::RunStage`] whose [`Stage`] says which;
//! `test_case_stage_result` is [`ToMaster::StageFinished`], with output streamed before it
//! in [`ToMaster::Output`] chunks and logs in [`ToMaster::LogFile`]; `tag_request` /
//! `tag_reply`, `start_cluster` / `stop_cluster`, `cluster_state`, `hypervisor_state` and
//! `disconnect` keep their names. Heartbeats, cancel and reattach after a network blip are
//! new.
//!
//! Compatibility rule: [`Hello`] and [`HelloReply`] begin with the magic and the protocol
//! version in every version of the protocol, so any two versions can at least tell each
//! other that they differ. Everything else may change when [`PROTOCOL_VERSION`] does.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use xrdtest_defs::Cluster;
// Shared with the store and the API: one definition, so the wire and the records agree.
pub use xrdtest_model::{LogFile, OutputLine, Stage, StageId, StageValues};

/// Raised whenever any message changes shape; `tests/golden.rs` fails until it is, and
/// `tests/golden/v{N}.txt` pins each version's bytes (docs/protocol.md, "Versioning").
pub const PROTOCOL_VERSION: u32 = 8;

/// First bytes of every handshake frame: tells an xrdtest peer from anything else.
pub const MAGIC: [u8; 4] = *b"XRDT";

/// The fixed start of [`Hello`] and [`HelloReply`], decodable whatever follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionPrefix {
    pub magic: [u8; 4],
    pub protocol_version: u32,
}

/// What kind of peer connects to the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Slave,
    Hypervisor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Slave => "slave",
            Role::Hypervisor => "hypervisor",
        }
    }
}

/// The first frame a slave or hypervisor sends.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: [u8; 4],
    pub protocol_version: u32,
    pub role: Role,
    /// The peer's name: a slave's is usually its FQDN; unique among connected peers.
    pub name: String,
    /// What lets a peer without a certificate enroll: the master's enrollment secret, or a
    /// one-time token a hypervisor gave its VM. Empty when the peer has none (it then waits
    /// for an operator's approval, or holds a certificate and needs nothing else).
    pub secret: String,
    /// The peer's software version, for display.
    pub software_version: String,
    /// When the peer connects without a certificate: the public key (a P-256 point,
    /// uncompressed) it wants a certificate for. See `docs/peer-identity.md`.
    pub enroll_key: Option<Vec<u8>>,
    /// The slave resumes afresh after its VM is restored from a saved state (the slave VM
    /// image's runner says so with [`RESTORABLE_ENV`]`=1`): a warm cluster may save it.
    pub restorable: bool,
}

/// Set to `1` in a slave's environment by a runner that restarts it after its VM is
/// restored from a saved state (packaging/vm-image's `xrdtest-slave-run`).
pub const RESTORABLE_ENV: &str = "XRDTEST_RESTORABLE";

impl Hello {
    pub fn new(role: Role, name: impl Into<String>, secret: impl Into<String>) -> Hello {
        Hello {
            magic: MAGIC,
            protocol_version: PROTOCOL_VERSION,
            role,
            name: name.into(),
            secret: secret.into(),
            software_version: env!("CARGO_PKG_VERSION").to_string(),
            enroll_key: None,
            restorable: false,
        }
    }
}

impl Hello {
    /// A `Hello` that asks to enroll with a throwaway key (see
    /// [`crate::identity::throwaway_public_key`]).
    pub fn enrolling(role: Role, name: impl Into<String>, secret: impl Into<String>) -> Hello {
        Hello { enroll_key: Some(crate::identity::throwaway_public_key()), ..Hello::new(role, name, secret) }
    }
}

// Written by hand so that the secret never reaches a log line.
impl std::fmt::Debug for Hello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hello")
            .field("protocol_version", &self.protocol_version)
            .field("role", &self.role)
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("software_version", &self.software_version)
            .field("enrolling", &self.enroll_key.is_some())
            .finish()
    }
}

/// The master's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloReply {
    pub magic: [u8; 4],
    pub protocol_version: u32,
    pub master_version: String,
    /// `None` when the peer is welcome.
    pub refusal: Option<Refusal>,
    /// How often each side sends [`Heartbeat`]s; a peer silent for three is gone.
    pub heartbeat_interval_ms: u64,
    /// The certificate (PEM, then the CA's) issued for [`Hello::enroll_key`]: the peer keeps
    /// it and from then on connects with it.
    pub certificate: Option<String>,
}

/// Why the master refused a peer; the connection closes after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub reason: RefusalReason,
    /// A sentence for the peer's log.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalReason {
    VersionMismatch,
    BadSecret,
    DuplicateName,
    InvalidName,
    ShuttingDown,
    /// The peer asked to enroll without a valid secret; an operator must approve it.
    AwaitingApproval,
    /// Its certificate is revoked, unknown, or for another name or role: it should drop it
    /// and enroll again.
    CertificateRefused,
    /// The name is enrolled by another key (or revoked): only an operator can free it.
    NameTaken,
    /// The name is enrolled with the key the peer sent: the reply carries its certificate,
    /// and the peer connects again presenting it.
    UseCertificate,
}

/// Run one stage's script on a slave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageCommand {
    pub stage_id: StageId,
    pub session_id: String,
    pub suite: String,
    pub stage: Stage,
    /// The script as written; the slave expands `@tags@` in it.
    pub script: String,
    /// Tag values from the master: the suite's `[tags]`, `port`, `proto`. The slave adds
    /// `slavename` and `diskmounts` itself.
    pub tags: BTreeMap<String, String>,
    /// The session's slaves, space-separated, as `XRDTEST_SLAVES` gives them: in the first
    /// command of a session on each connection only, empty after that (the slave keeps
    /// it), so a command's size does not grow with the number of slaves. One string,
    /// shared by the commands queued for many slaves, encodes as a copy of its bytes.
    pub slaves: std::sync::Arc<String>,
    /// The session's files for this slave (its host certificate and key, the session CA,
    /// the shared secret: docs/protocol.md), sent like `slaves`: with the first command of
    /// a session on each connection, empty after that. The slave writes them into the
    /// session's work folder before it runs the stage, and removes them when the session ends.
    pub files: Vec<SessionFile>,
    pub timeout_ms: u64,
    /// Log files to collect after the stage (tags allowed).
    pub logs: Vec<String>,
    /// Output past this many bytes is counted and dropped.
    pub output_limit_bytes: u64,
    /// Each collected log file is cut to its last this-many bytes.
    pub log_limit_bytes: u64,
}

/// A file the master gives a slave for one session.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFile {
    /// A plain file name (no folder): where it lands in the session's `credentials` folder,
    /// and what the slave checks before writing it.
    pub name: String,
    /// Permission bits (0o600 for keys and secrets).
    pub mode: u32,
    pub contents: Vec<u8>,
}

impl std::fmt::Debug for SessionFile {
    /// Never the contents: they are keys and secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionFile({}, {:o}, {} bytes)", self.name, self.mode, self.contents.len())
    }
}

/// Start a cluster on a hypervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartCluster {
    pub cluster: Cluster,
    /// The address `master.<domain>` resolves to inside the cluster's network; `None`: the
    /// network's bridge address (the master runs on the hypervisor host).
    pub master_ip: Option<IpAddr>,
    pub master_port: u16,
    /// Who asked: a session id, or `manual`.
    pub requested_by: String,
    /// Per host name: a token that lets that one VM enroll, valid while the cluster runs.
    pub credentials: GuestCredentials,
}

/// Enrollment tokens by host name; its `Debug` shows the names only, never a token.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GuestCredentials(pub BTreeMap<String, String>);

impl std::fmt::Debug for GuestCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Heartbeat, sent by each side every [`HelloReply::heartbeat_interval_ms`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub seq: u64,
    pub sent_unix_ms: u64,
}

/// Messages from the master to a slave or hypervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromMaster {
    RunStage(StageCommand),
    /// Kill the stage's whole process group and report it cancelled.
    CancelStage {
        stage_id: StageId,
        reason: String,
    },
    /// Answer to [`ToMaster::TagRequest`].
    TagReply {
        request_id: u64,
        tags: BTreeMap<String, String>,
    },
    /// Answer to [`ToMaster::Reattach`]: go on sending this stage from chunk `from_seq`,
    /// or, with `None`, the master no longer wants it: kill it and forget it.
    ResumeStage {
        stage_id: StageId,
        from_seq: Option<u64>,
    },
    StartCluster(StartCluster),
    StopCluster {
        cluster: String,
    },
    /// Every host's slave of a cluster this hypervisor started cold is connected: save each
    /// VM's state now, so that later sessions restore it instead of booting (a warm cluster).
    /// Answered with `Saving`, then `Active` (also at once when there is nothing to save).
    SaveCluster {
        cluster: String,
    },
    Heartbeat(Heartbeat),
    /// The master is going away or drops this peer; reconnecting later is fine.
    Disconnect {
        reason: String,
    },
    /// Answer to [`ToMaster::Sync`] or [`ToMaster::Fault`] (sent again if the slave asks
    /// again after a reconnect).
    SyncReply {
        request_id: u64,
        reply: SyncReply,
    },
    /// Apply a fault on this slave's own host, in rules xrdtest owns (docs/faults.md).
    ApplyFault(ApplyFault),
    /// Undo fault `fault_id` here; `None`: every fault this slave holds.
    HealFault {
        fault_id: Option<u64>,
    },
    /// Session `session_id` is over: end every process its stages left on this slave and
    /// answer with [`ToMaster::SessionEnded`] (`request_id` 0: nobody waits for the answer).
    EndSession {
        request_id: u64,
        session_id: String,
    },
}

/// A fault for one slave to apply on its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyFault {
    /// From the store's id counter, so unique across master restarts (a reconnecting slave's
    /// list of held faults relies on it); names the slave's rules (`xrdtest_f<id>`).
    pub fault_id: u64,
    pub action: FaultAction,
    /// Heal it here by itself once the master has been unreachable this long (the dead-man
    /// timer: a fault never outlives a lost master).
    pub deadman_ms: u64,
}

/// What a slave does to its own host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultAction {
    /// Drop every packet to and from these addresses (both directions).
    Partition { peers: Vec<IpAddr> },
    /// Shape this host's outgoing traffic (to `peers` only, when there are any): added
    /// delay and jitter, loss in parts per million, a rate limit in bits per second (0: none).
    Netem { delay_us: u64, jitter_us: u64, loss_ppm: u32, rate_bps: u64, peers: Vec<IpAddr> },
    /// SIGSTOP the processes whose command line matches (pgrep -f), SIGCONT at the heal.
    Pause { pattern: String },
    /// Send `signal` to the processes whose command line matches; nothing to heal.
    Kill { pattern: String, signal: i32 },
}

/// A stage script's fault call (`fault_*` of functions.sh), for the master to resolve and
/// send to its targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultOp {
    /// Cut `a` from `b` both ways (slave names or `role:NAME`).
    Partition {
        a: Vec<String>,
        b: Vec<String>,
        until: FaultUntil,
    },
    Netem {
        targets: Vec<String>,
        delay_us: u64,
        jitter_us: u64,
        loss_ppm: u32,
        rate_bps: u64,
        until: FaultUntil,
    },
    Pause {
        targets: Vec<String>,
        pattern: String,
        until: FaultUntil,
    },
    /// Heal the pauses (of `pattern`, or all) this session made.
    Resume {
        pattern: Option<String>,
    },
    Kill {
        targets: Vec<String>,
        pattern: String,
        signal: i32,
    },
    /// Heal every fault of the session now.
    Heal,
}

/// When a fault heals by itself at the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultUntil {
    /// The end of the stage that made it (the default).
    Stage,
    /// The end of the case (its finalize), or of suite init / finalize outside a case.
    Case,
    Session,
}

/// How many of something a sync wait needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncCount {
    Exactly(u32),
    /// One per slave of the session.
    AllSlaves,
    /// One per slave of the session that has this role.
    Role(String),
}

/// What a stage script asks of the session's sync state (docs/sync.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncOp {
    /// Add an entry to signal `name`.
    Signal { name: String, value: String },
    /// Return once signal `name` has `count` entries, with them.
    Wait { name: String, count: SyncCount },
    /// Arrive at barrier `name` and return once `count` have arrived in this round.
    Barrier { name: String, count: SyncCount },
    /// Add a value to topic `topic`.
    Publish { topic: String, value: String },
    /// Return the first `count` values of topic `topic`, once there are that many.
    Subscribe { topic: String, count: SyncCount },
}

/// One sync request of a running stage. `request_id` is unique per slave process, so a
/// request sent again after a reconnect is recognised and applied once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub stage_id: StageId,
    pub request_id: u64,
    pub op: SyncOp,
    /// Give up after this long; `None`: when the stage ends.
    pub timeout_ms: Option<u64>,
}

/// One entry of a signal or topic: the slave that gave it and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncEntry {
    pub slave: String,
    pub value: String,
}

/// How a sync request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncReply {
    /// Done: the entries waited for (empty for a signal, publish or barrier's arrivals'
    /// values), after `waited_ms` on the master.
    Done { entries: Vec<SyncEntry>, waited_ms: u64 },
    /// It cannot be met, timed out or was refused: why, for the stage's output.
    Failed { reason: String },
}

/// A batch of output lines of one stage, numbered so a resend after a reconnect is exact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputChunk {
    pub stage_id: StageId,
    pub seq: u64,
    pub lines: Vec<OutputLine>,
}

/// How a stage's script ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StageOutcome {
    Exited {
        code: i32,
    },
    KilledBySignal {
        signal: i32,
    },
    TimedOut {
        after_ms: u64,
    },
    Cancelled {
        reason: String,
    },
    /// The script could not run at all (spawn failed, work directory unusable...).
    Failed {
        reason: String,
    },
}

impl StageOutcome {
    pub fn passed(&self) -> bool {
        matches!(self, StageOutcome::Exited { code: 0 })
    }
}

/// The end of a stage on a slave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageResult {
    pub stage_id: StageId,
    pub outcome: StageOutcome,
    pub started_unix_ms: u64,
    pub ended_unix_ms: u64,
    /// Output bytes sent, and bytes dropped past the stage's output limit.
    pub output_bytes: u64,
    pub dropped_bytes: u64,
    /// Number of output chunks sent; the master checks it has them all.
    pub chunks: u64,
    /// Results and checks the script reported (`$XRDTEST_RESULTS`), checked by the slave.
    pub values: StageValues,
}

/// A stage a reconnecting slave still holds, running or finished but not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldStage {
    pub stage_id: StageId,
    /// Chunks produced so far.
    pub chunks: u64,
    pub finished: bool,
}

/// XrdTest's cluster states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterState {
    Defined,
    DefinitionSent,
    Starting,
    CreatingNetwork,
    CreatingSlaves,
    CopyingImages,
    AttachingDisks,
    WaitingSlaves,
    Active,
    /// Saving the VMs' states for later sessions (they pause for it).
    Saving,
    StopCommandSent,
    Destroying,
    Stopped,
    ErrorStart,
    ErrorStop,
    Error,
}

impl ClusterState {
    pub fn is_error(self) -> bool {
        matches!(self, ClusterState::ErrorStart | ClusterState::ErrorStop | ClusterState::Error)
    }
}

/// A cluster's state as a hypervisor reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub cluster: String,
    pub state: ClusterState,
    /// Progress or the libvirt error text.
    pub detail: String,
}

/// A hypervisor's capacity and what it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HypervisorStatus {
    /// `kvm` or `qemu`.
    pub domain_type: String,
    pub memory_limit_bytes: u64,
    pub memory_used_bytes: u64,
    pub vm_limit: u32,
    pub vms_running: u32,
    pub clusters: Vec<ClusterStatus>,
}

/// Messages from a slave or hypervisor to the master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToMaster {
    StageStarted {
        stage_id: StageId,
        started_unix_ms: u64,
    },
    Output(OutputChunk),
    LogFile(LogFile),
    StageFinished(StageResult),
    /// Ask for the tags of this slave (XrdTest's `tag_request`).
    TagRequest {
        request_id: u64,
    },
    /// Sent right after the handshake of a reconnect: the stages this slave still holds,
    /// the faults it still applies (the master heals those it no longer knows), and the
    /// sessions whose processes it still keeps (the master ends those that are over).
    Reattach {
        stages: Vec<HeldStage>,
        faults: Vec<u64>,
        sessions: Vec<String>,
    },
    ClusterState(ClusterStatus),
    HypervisorState(HypervisorStatus),
    Heartbeat(Heartbeat),
    Disconnect {
        reason: String,
    },
    /// A stage script's sync call ([`SyncOp`]).
    Sync(SyncRequest),
    /// The script that made request `request_id` is gone (it ended or was killed): drop it.
    SyncCancel {
        stage_id: StageId,
        request_id: u64,
    },
    /// A stage script's fault call; answered with [`FromMaster::SyncReply`].
    Fault {
        stage_id: StageId,
        request_id: u64,
        op: FaultOp,
    },
    /// How [`FromMaster::ApplyFault`] or [`FromMaster::HealFault`] went on this slave.
    FaultDone {
        fault_id: u64,
        healed: bool,
        /// `None`: done; else why not (no `nft`, no permission...).
        error: Option<String>,
        /// What was done, for the session's record (`paused 2 processes`).
        detail: String,
    },
    /// Answer to [`FromMaster::EndSession`].
    SessionEnded {
        request_id: u64,
        cleanup: SessionCleanup,
    },
}

/// What a slave did at the end of a session (docs/clean-slate.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCleanup {
    /// How it finds a session's processes: `cgroup` or `environ`.
    pub method: String,
    /// Processes of the session still alive at its end, and ended then.
    pub processes_ended: u32,
    /// What went wrong, if anything did (a process that would not die, no permission...).
    pub problem: Option<String>,
}
