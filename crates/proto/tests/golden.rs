//! Golden bytes: one fixed sample of every message and of every enum variant inside one,
//! encoded exactly as the codec puts it on the wire, pinned per protocol version in
//! `tests/golden/v{N}.txt` (one `name hex` line per sample).
//!
//! The fixture of the current [`PROTOCOL_VERSION`] must match exactly, so a message change
//! without a version bump fails here. `XRDTEST_BLESS=1` writes the fixture of a version
//! that has none and never rewrites one. Older fixtures stay as history: only their version
//! prefix is still checked, since every version must be able to read it.
//!
//! Never edit a sample: its bytes are pinned. A new variant gets a new sample. The fixture
//! machinery (reading, blessing, the failure message) is `xrdtest-golden`, shared with the
//! store's golden test in `crates/model`.

use std::collections::{BTreeMap, BTreeSet};

use bytes::BytesMut;
use serde::{Serialize, Serializer};
use tokio_util::codec::Encoder;
use xrdtest_defs::{Boot, Cluster, Disk, Host, Link, Network};
use xrdtest_golden::{hex, unhex, Fixtures, Samples};
use xrdtest_proto::*;

/// A sample of any message that travels in a frame.
enum Message {
    Prefix(VersionPrefix),
    Hello(Hello),
    HelloReply(HelloReply),
    FromMaster(FromMaster),
    ToMaster(ToMaster),
}

// Serializes as the message itself, so the codec encodes a sample exactly as it would the
// message.
impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Message::Prefix(m) => m.serialize(serializer),
            Message::Hello(m) => m.serialize(serializer),
            Message::HelloReply(m) => m.serialize(serializer),
            Message::FromMaster(m) => m.serialize(serializer),
            Message::ToMaster(m) => m.serialize(serializer),
        }
    }
}

fn hello(role: Role) -> Hello {
    // Not `Hello::new`: the software version must not leak into the pinned bytes.
    Hello {
        magic: MAGIC,
        protocol_version: PROTOCOL_VERSION,
        role,
        name: "slave1.xrd.test".into(),
        secret: "s3cret".into(),
        software_version: "0.1.0".into(),
        enroll_key: Some(vec![4; 65]),
        restorable: true,
    }
}

fn hello_reply(refusal: Option<RefusalReason>) -> HelloReply {
    HelloReply {
        magic: MAGIC,
        protocol_version: PROTOCOL_VERSION,
        master_version: "0.1.0".into(),
        refusal: refusal.map(|reason| Refusal { reason, message: "refused".into() }),
        heartbeat_interval_ms: 5000,
        certificate: None,
    }
}

fn tags() -> BTreeMap<String, String> {
    [("datadir", "/data"), ("port", "20000")].into_iter().map(|(k, v)| (k.into(), v.into())).collect()
}

fn run_stage(stage: Stage) -> FromMaster {
    FromMaster::RunStage(StageCommand {
        stage_id: 300,
        session_id: "20261121-0001".into(),
        suite: "ts_demo".into(),
        stage,
        script: "#!/bin/bash\necho @slavename@ ü\n".into(),
        tags: tags(),
        slaves: std::sync::Arc::new("slave1 slave2".into()),
        files: vec![xrdtest_proto::SessionFile {
            name: "session_secret".into(),
            mode: 0o600,
            contents: b"ab\n".to_vec(),
        }],
        timeout_ms: 600_000,
        logs: vec!["/var/log/@slavename@.log".into()],
        output_limit_bytes: 64 << 20,
        log_limit_bytes: 1 << 20,
    })
}

fn host(name: &str, last_octet: u8, boot: Boot) -> Host {
    Host {
        name: name.into(),
        ip: [10, 77, 0, last_octet].into(),
        mac: format!("52:54:00:00:00:{last_octet:02x}"),
        boot,
        arch: "x86_64".into(),
        ram_bytes: 256 << 20,
        vcpus: 1,
        roles: vec!["server".into()],
        disks: vec![Disk {
            name: "data".into(),
            size_bytes: 64 << 20,
            device: "vdb".into(),
            mount_point: "/data".into(),
        }],
    }
}

fn cluster() -> Cluster {
    Cluster {
        name: "cluster_pair".into(),
        network: Network {
            name: "cluster_pair_net".into(),
            bridge: "virbr_pair".into(),
            ip: [10, 77, 0, 1].into(),
            netmask: [255, 255, 255, 0].into(),
            dhcp_start: [10, 77, 0, 100].into(),
            dhcp_end: [10, 77, 0, 200].into(),
            domain: "pair.test".into(),
            lb_alias: Some("lb.pair.test".into()),
            lb_hosts: vec!["server.pair.test".into()],
        },
        // One host per way of booting.
        hosts: vec![
            host("server.pair.test", 10, Boot::Image { volume: "slc7.qcow2".into() }),
            host(
                "client.pair.test",
                11,
                Boot::Kernel { kernel: "/k".into(), initrd: Some("/i".into()), cmdline: None },
            ),
        ],
        links: vec![Link {
            a: vec!["server.pair.test".into()],
            b: vec!["client.pair.test".into()],
            delay_us: 50_000,
            jitter_us: 5_000,
            loss_ppm: 10_000,
            rate_bps: 10_000_000,
        }],
    }
}

fn stage_finished(outcome: StageOutcome) -> ToMaster {
    ToMaster::StageFinished(StageResult {
        stage_id: 300,
        outcome,
        started_unix_ms: 1_763_000_000_000,
        ended_unix_ms: 1_763_000_001_000,
        output_bytes: 1234,
        dropped_bytes: 0,
        chunks: 3,
        values: StageValues::default(),
    })
}

/// A passed stage that reported a result and a failed check.
fn stage_finished_with_values() -> ToMaster {
    let ToMaster::StageFinished(mut result) = stage_finished(StageOutcome::Exited { code: 0 }) else { unreachable!() };
    result.values = StageValues {
        results: vec![xrdtest_model::ResultValue { name: "latency_ms".into(), value: 12.5, unit: "ms".into() }],
        checks: vec![xrdtest_model::Check {
            name: "sums_equal".into(),
            passed: false,
            message: "abc != def".into(),
            source: xrdtest_model::CheckSource::Script,
        }],
    };
    ToMaster::StageFinished(result)
}

fn cluster_state(state: ClusterState) -> ToMaster {
    ToMaster::ClusterState(ClusterStatus { cluster: "cluster_pair".into(), state, detail: "progress".into() })
}

fn apply(action: FaultAction) -> FromMaster {
    FromMaster::ApplyFault(ApplyFault { fault_id: 3, action, deadman_ms: 60_000 })
}

fn fault(op: FaultOp) -> ToMaster {
    ToMaster::Fault { stage_id: 300, request_id: 6, op }
}

fn sync(op: SyncOp) -> ToMaster {
    ToMaster::Sync(SyncRequest { stage_id: 300, request_id: 5, op, timeout_ms: Some(5000) })
}

/// Every sample, by name.
fn samples() -> Vec<(&'static str, Message)> {
    use Message::{FromMaster as M, ToMaster as T};
    vec![
        ("version_prefix", Message::Prefix(VersionPrefix { magic: MAGIC, protocol_version: PROTOCOL_VERSION })),
        ("hello_slave", Message::Hello(hello(Role::Slave))),
        ("hello_hypervisor", Message::Hello(hello(Role::Hypervisor))),
        ("hello_reply_welcome", Message::HelloReply(hello_reply(None))),
        ("hello_reply_version_mismatch", Message::HelloReply(hello_reply(Some(RefusalReason::VersionMismatch)))),
        ("hello_reply_bad_secret", Message::HelloReply(hello_reply(Some(RefusalReason::BadSecret)))),
        ("hello_reply_duplicate_name", Message::HelloReply(hello_reply(Some(RefusalReason::DuplicateName)))),
        ("hello_reply_invalid_name", Message::HelloReply(hello_reply(Some(RefusalReason::InvalidName)))),
        ("hello_reply_shutting_down", Message::HelloReply(hello_reply(Some(RefusalReason::ShuttingDown)))),
        ("hello_reply_awaiting_approval", Message::HelloReply(hello_reply(Some(RefusalReason::AwaitingApproval)))),
        ("hello_reply_certificate_refused", Message::HelloReply(hello_reply(Some(RefusalReason::CertificateRefused)))),
        ("hello_reply_name_taken", Message::HelloReply(hello_reply(Some(RefusalReason::NameTaken)))),
        (
            "hello_reply_use_certificate",
            Message::HelloReply(HelloReply {
                certificate: Some("-----BEGIN CERTIFICATE-----\n".into()),
                ..hello_reply(Some(RefusalReason::UseCertificate))
            }),
        ),
        (
            "hello_reply_welcome_certificate",
            Message::HelloReply(HelloReply {
                certificate: Some("-----BEGIN CERTIFICATE-----\n".into()),
                ..hello_reply(None)
            }),
        ),
        ("run_stage_suite_init", M(run_stage(Stage::SuiteInit))),
        ("run_stage_case_init", M(run_stage(Stage::CaseInit { case: "copy_to".into() }))),
        ("run_stage_case_run", M(run_stage(Stage::CaseRun { case: "copy_to".into() }))),
        ("run_stage_case_finalize", M(run_stage(Stage::CaseFinalize { case: "copy_to".into() }))),
        ("run_stage_suite_finalize", M(run_stage(Stage::SuiteFinalize))),
        ("cancel_stage", M(FromMaster::CancelStage { stage_id: 300, reason: "cancelled by alice".into() })),
        ("tag_reply", M(FromMaster::TagReply { request_id: 3, tags: tags() })),
        ("resume_stage_from", M(FromMaster::ResumeStage { stage_id: 300, from_seq: Some(12) })),
        ("resume_stage_forget", M(FromMaster::ResumeStage { stage_id: 300, from_seq: None })),
        (
            "start_cluster",
            M(FromMaster::StartCluster(StartCluster {
                cluster: cluster(),
                master_ip: Some([10, 77, 0, 1].into()),
                master_port: 20000,
                requested_by: "manual".into(),
                credentials: GuestCredentials([("vm1".to_string(), "vm-token".to_string())].into_iter().collect()),
            })),
        ),
        ("stop_cluster", M(FromMaster::StopCluster { cluster: "cluster_pair".into() })),
        ("save_cluster", M(FromMaster::SaveCluster { cluster: "cluster_pair".into() })),
        ("from_master_heartbeat", M(FromMaster::Heartbeat(Heartbeat { seq: 7, sent_unix_ms: 1_763_000_000_000 }))),
        ("from_master_disconnect", M(FromMaster::Disconnect { reason: "master shutting down".into() })),
        ("stage_started", T(ToMaster::StageStarted { stage_id: 300, started_unix_ms: 1_763_000_000_000 })),
        (
            "output",
            T(ToMaster::Output(OutputChunk {
                stage_id: 300,
                seq: 2,
                lines: vec![
                    OutputLine { unix_ms: 1_763_000_000_001, text: "hello".into() },
                    OutputLine { unix_ms: 1_763_000_000_002, text: String::new() },
                ],
            })),
        ),
        (
            "log_file",
            T(ToMaster::LogFile(LogFile {
                stage_id: 300,
                path: "/var/log/slave1.log".into(),
                content: vec![0, 1, 2, 255],
                truncated_bytes: 10,
                error: None,
            })),
        ),
        (
            "log_file_unreadable",
            T(ToMaster::LogFile(LogFile {
                stage_id: 300,
                path: "/nope".into(),
                content: Vec::new(),
                truncated_bytes: 0,
                error: Some("No such file or directory".into()),
            })),
        ),
        ("stage_finished_exited", T(stage_finished(StageOutcome::Exited { code: -1 }))),
        ("stage_finished_killed_by_signal", T(stage_finished(StageOutcome::KilledBySignal { signal: 9 }))),
        ("stage_finished_timed_out", T(stage_finished(StageOutcome::TimedOut { after_ms: 600_000 }))),
        ("stage_finished_cancelled", T(stage_finished(StageOutcome::Cancelled { reason: "cancel".into() }))),
        ("stage_finished_failed", T(stage_finished(StageOutcome::Failed { reason: "bash not found".into() }))),
        ("stage_finished_with_values", T(stage_finished_with_values())),
        ("tag_request", T(ToMaster::TagRequest { request_id: 42 })),
        (
            "reattach",
            T(ToMaster::Reattach {
                stages: vec![HeldStage { stage_id: 300, chunks: 17, finished: true }],
                faults: vec![3],
                sessions: vec!["12".into()],
            }),
        ),
        ("cluster_state_defined", T(cluster_state(ClusterState::Defined))),
        ("cluster_state_definition_sent", T(cluster_state(ClusterState::DefinitionSent))),
        ("cluster_state_starting", T(cluster_state(ClusterState::Starting))),
        ("cluster_state_creating_network", T(cluster_state(ClusterState::CreatingNetwork))),
        ("cluster_state_creating_slaves", T(cluster_state(ClusterState::CreatingSlaves))),
        ("cluster_state_copying_images", T(cluster_state(ClusterState::CopyingImages))),
        ("cluster_state_attaching_disks", T(cluster_state(ClusterState::AttachingDisks))),
        ("cluster_state_waiting_slaves", T(cluster_state(ClusterState::WaitingSlaves))),
        ("cluster_state_active", T(cluster_state(ClusterState::Active))),
        ("cluster_state_saving", T(cluster_state(ClusterState::Saving))),
        ("cluster_state_stop_command_sent", T(cluster_state(ClusterState::StopCommandSent))),
        ("cluster_state_destroying", T(cluster_state(ClusterState::Destroying))),
        ("cluster_state_stopped", T(cluster_state(ClusterState::Stopped))),
        ("cluster_state_error_start", T(cluster_state(ClusterState::ErrorStart))),
        ("cluster_state_error_stop", T(cluster_state(ClusterState::ErrorStop))),
        ("cluster_state_error", T(cluster_state(ClusterState::Error))),
        (
            "hypervisor_state",
            T(ToMaster::HypervisorState(HypervisorStatus {
                domain_type: "qemu".into(),
                memory_limit_bytes: 8 << 30,
                memory_used_bytes: 1 << 30,
                vm_limit: 8,
                vms_running: 2,
                clusters: vec![ClusterStatus {
                    cluster: "cluster_pair".into(),
                    state: ClusterState::Active,
                    detail: String::new(),
                }],
            })),
        ),
        ("to_master_heartbeat", T(ToMaster::Heartbeat(Heartbeat { seq: 8, sent_unix_ms: 1_763_000_000_500 }))),
        ("to_master_disconnect", T(ToMaster::Disconnect { reason: "slave shutting down".into() })),
        ("sync_signal", T(sync(SyncOp::Signal { name: "ready".into(), value: "10.0.0.2:1094".into() }))),
        ("sync_wait_exactly", T(sync(SyncOp::Wait { name: "ready".into(), count: SyncCount::Exactly(3) }))),
        ("sync_barrier_all_slaves", T(sync(SyncOp::Barrier { name: "up".into(), count: SyncCount::AllSlaves }))),
        ("sync_publish", T(sync(SyncOp::Publish { topic: "leader".into(), value: "slave2".into() }))),
        (
            "sync_subscribe_role",
            T(sync(SyncOp::Subscribe { topic: "leader".into(), count: SyncCount::Role("server".into()) })),
        ),
        ("sync_cancel", T(ToMaster::SyncCancel { stage_id: 300, request_id: 5 })),
        (
            "sync_reply_done",
            M(FromMaster::SyncReply {
                request_id: 5,
                reply: SyncReply::Done {
                    entries: vec![SyncEntry { slave: "slave1.xrd.test".into(), value: "x".into() }],
                    waited_ms: 1200,
                },
            }),
        ),
        (
            "apply_fault_partition",
            M(apply(FaultAction::Partition { peers: vec![[10, 77, 0, 2].into(), "fd00::3".parse().unwrap()] })),
        ),
        (
            "apply_fault_netem",
            M(apply(FaultAction::Netem {
                delay_us: 100_000,
                jitter_us: 10_000,
                loss_ppm: 10_000,
                rate_bps: 10_000_000,
                peers: vec![[10, 77, 0, 11].into()],
            })),
        ),
        ("apply_fault_pause", M(apply(FaultAction::Pause { pattern: "xrootd -n data1".into() }))),
        ("apply_fault_kill", M(apply(FaultAction::Kill { pattern: "cmsd".into(), signal: 9 }))),
        ("heal_fault", M(FromMaster::HealFault { fault_id: Some(3) })),
        ("heal_fault_all", M(FromMaster::HealFault { fault_id: None })),
        ("end_session", M(FromMaster::EndSession { request_id: 9, session_id: "12".into() })),
        (
            "session_ended",
            T(ToMaster::SessionEnded {
                request_id: 9,
                cleanup: SessionCleanup {
                    method: "cgroup".into(),
                    processes_ended: 2,
                    problem: Some("1 process would not die".into()),
                },
            }),
        ),
        (
            "fault_partition_until_stage",
            T(fault(FaultOp::Partition {
                a: vec!["slave1.xrd.test".into()],
                b: vec!["role:server".into()],
                until: FaultUntil::Stage,
            })),
        ),
        (
            "fault_netem_until_case",
            T(fault(FaultOp::Netem {
                targets: vec!["role:client".into()],
                delay_us: 100_000,
                jitter_us: 0,
                loss_ppm: 0,
                rate_bps: 0,
                until: FaultUntil::Case,
            })),
        ),
        (
            "fault_pause_until_session",
            T(fault(FaultOp::Pause {
                targets: vec!["slave2.xrd.test".into()],
                pattern: "xrootd".into(),
                until: FaultUntil::Session,
            })),
        ),
        ("fault_resume", T(fault(FaultOp::Resume { pattern: Some("xrootd".into()) }))),
        (
            "fault_kill",
            T(fault(FaultOp::Kill { targets: vec!["slave2.xrd.test".into()], pattern: "cmsd".into(), signal: 15 })),
        ),
        ("fault_heal", T(fault(FaultOp::Heal))),
        (
            "fault_done",
            T(ToMaster::FaultDone {
                fault_id: 3,
                healed: false,
                error: Some("nft not found".into()),
                detail: "paused 2 processes".into(),
            }),
        ),
        (
            "sync_reply_failed",
            M(FromMaster::SyncReply {
                request_id: 5,
                reply: SyncReply::Failed { reason: "timed out after 5 s".into() },
            }),
        ),
    ]
}

// Which sample holds each variant. No wildcard arms: a new variant does not compile until it
// is listed here, and `every_variant_is_in_the_sample_named_for_it` checks that sample.

fn role_sample(role: Role) -> &'static str {
    match role {
        Role::Slave => "hello_slave",
        Role::Hypervisor => "hello_hypervisor",
    }
}

fn refusal_sample(reason: RefusalReason) -> &'static str {
    match reason {
        RefusalReason::VersionMismatch => "hello_reply_version_mismatch",
        RefusalReason::BadSecret => "hello_reply_bad_secret",
        RefusalReason::DuplicateName => "hello_reply_duplicate_name",
        RefusalReason::InvalidName => "hello_reply_invalid_name",
        RefusalReason::ShuttingDown => "hello_reply_shutting_down",
        RefusalReason::AwaitingApproval => "hello_reply_awaiting_approval",
        RefusalReason::CertificateRefused => "hello_reply_certificate_refused",
        RefusalReason::NameTaken => "hello_reply_name_taken",
        RefusalReason::UseCertificate => "hello_reply_use_certificate",
    }
}

fn stage_sample(stage: &Stage) -> &'static str {
    match stage {
        Stage::SuiteInit => "run_stage_suite_init",
        Stage::CaseInit { .. } => "run_stage_case_init",
        Stage::CaseRun { .. } => "run_stage_case_run",
        Stage::CaseFinalize { .. } => "run_stage_case_finalize",
        Stage::SuiteFinalize => "run_stage_suite_finalize",
    }
}

fn boot_sample(boot: &Boot) -> &'static str {
    match boot {
        Boot::Image { .. } | Boot::Kernel { .. } => "start_cluster",
    }
}

fn from_master_sample(message: &FromMaster) -> &'static str {
    match message {
        FromMaster::RunStage(_) => "run_stage_suite_init",
        FromMaster::CancelStage { .. } => "cancel_stage",
        FromMaster::TagReply { .. } => "tag_reply",
        FromMaster::ResumeStage { .. } => "resume_stage_from",
        FromMaster::StartCluster(_) => "start_cluster",
        FromMaster::StopCluster { .. } => "stop_cluster",
        FromMaster::SaveCluster { .. } => "save_cluster",
        FromMaster::Heartbeat(_) => "from_master_heartbeat",
        FromMaster::Disconnect { .. } => "from_master_disconnect",
        FromMaster::SyncReply { .. } => "sync_reply_done",
        FromMaster::ApplyFault(_) => "apply_fault_partition",
        FromMaster::HealFault { .. } => "heal_fault",
        FromMaster::EndSession { .. } => "end_session",
    }
}

fn outcome_sample(outcome: &StageOutcome) -> &'static str {
    match outcome {
        StageOutcome::Exited { .. } => "stage_finished_exited",
        StageOutcome::KilledBySignal { .. } => "stage_finished_killed_by_signal",
        StageOutcome::TimedOut { .. } => "stage_finished_timed_out",
        StageOutcome::Cancelled { .. } => "stage_finished_cancelled",
        StageOutcome::Failed { .. } => "stage_finished_failed",
    }
}

fn sync_op_sample(op: &SyncOp) -> &'static str {
    match op {
        SyncOp::Signal { .. } => "sync_signal",
        SyncOp::Wait { .. } => "sync_wait_exactly",
        SyncOp::Barrier { .. } => "sync_barrier_all_slaves",
        SyncOp::Publish { .. } => "sync_publish",
        SyncOp::Subscribe { .. } => "sync_subscribe_role",
    }
}

fn sync_count_sample(count: &SyncCount) -> &'static str {
    match count {
        SyncCount::Exactly(_) => "sync_wait_exactly",
        SyncCount::AllSlaves => "sync_barrier_all_slaves",
        SyncCount::Role(_) => "sync_subscribe_role",
    }
}

fn fault_action_sample(action: &FaultAction) -> &'static str {
    match action {
        FaultAction::Partition { .. } => "apply_fault_partition",
        FaultAction::Netem { .. } => "apply_fault_netem",
        FaultAction::Pause { .. } => "apply_fault_pause",
        FaultAction::Kill { .. } => "apply_fault_kill",
    }
}

fn fault_op_sample(op: &FaultOp) -> &'static str {
    match op {
        FaultOp::Partition { .. } => "fault_partition_until_stage",
        FaultOp::Netem { .. } => "fault_netem_until_case",
        FaultOp::Pause { .. } => "fault_pause_until_session",
        FaultOp::Resume { .. } => "fault_resume",
        FaultOp::Kill { .. } => "fault_kill",
        FaultOp::Heal => "fault_heal",
    }
}

fn fault_until_sample(until: FaultUntil) -> &'static str {
    match until {
        FaultUntil::Stage => "fault_partition_until_stage",
        FaultUntil::Case => "fault_netem_until_case",
        FaultUntil::Session => "fault_pause_until_session",
    }
}

fn sync_reply_sample(reply: &SyncReply) -> &'static str {
    match reply {
        SyncReply::Done { .. } => "sync_reply_done",
        SyncReply::Failed { .. } => "sync_reply_failed",
    }
}

fn cluster_state_sample(state: ClusterState) -> &'static str {
    match state {
        ClusterState::Defined => "cluster_state_defined",
        ClusterState::DefinitionSent => "cluster_state_definition_sent",
        ClusterState::Starting => "cluster_state_starting",
        ClusterState::CreatingNetwork => "cluster_state_creating_network",
        ClusterState::CreatingSlaves => "cluster_state_creating_slaves",
        ClusterState::CopyingImages => "cluster_state_copying_images",
        ClusterState::AttachingDisks => "cluster_state_attaching_disks",
        ClusterState::WaitingSlaves => "cluster_state_waiting_slaves",
        ClusterState::Active => "cluster_state_active",
        ClusterState::Saving => "cluster_state_saving",
        ClusterState::StopCommandSent => "cluster_state_stop_command_sent",
        ClusterState::Destroying => "cluster_state_destroying",
        ClusterState::Stopped => "cluster_state_stopped",
        ClusterState::ErrorStart => "cluster_state_error_start",
        ClusterState::ErrorStop => "cluster_state_error_stop",
        ClusterState::Error => "cluster_state_error",
    }
}

fn to_master_sample(message: &ToMaster) -> &'static str {
    match message {
        ToMaster::StageStarted { .. } => "stage_started",
        ToMaster::Output(_) => "output",
        ToMaster::LogFile(_) => "log_file",
        ToMaster::StageFinished(_) => "stage_finished_exited",
        ToMaster::TagRequest { .. } => "tag_request",
        ToMaster::Reattach { .. } => "reattach",
        ToMaster::ClusterState(_) => "cluster_state_defined",
        ToMaster::HypervisorState(_) => "hypervisor_state",
        ToMaster::Heartbeat(_) => "to_master_heartbeat",
        ToMaster::Disconnect { .. } => "to_master_disconnect",
        ToMaster::Sync(_) => "sync_signal",
        ToMaster::SyncCancel { .. } => "sync_cancel",
        ToMaster::Fault { .. } => "fault_partition_until_stage",
        ToMaster::FaultDone { .. } => "fault_done",
        ToMaster::SessionEnded { .. } => "session_ended",
    }
}

/// The samples named as holders of the variants found in `message`.
fn holders(message: &Message) -> Vec<&'static str> {
    match message {
        Message::Prefix(_) => Vec::new(),
        Message::Hello(hello) => vec![role_sample(hello.role)],
        Message::HelloReply(reply) => reply.refusal.iter().map(|refusal| refusal_sample(refusal.reason)).collect(),
        Message::FromMaster(message) => {
            let mut found = vec![from_master_sample(message)];
            match message {
                FromMaster::RunStage(command) => found.push(stage_sample(&command.stage)),
                FromMaster::StartCluster(start) => {
                    found.extend(start.cluster.hosts.iter().map(|h| boot_sample(&h.boot)))
                }
                FromMaster::SyncReply { reply, .. } => found.push(sync_reply_sample(reply)),
                FromMaster::ApplyFault(apply) => found.push(fault_action_sample(&apply.action)),
                _ => {}
            }
            found
        }
        Message::ToMaster(message) => {
            let mut found = vec![to_master_sample(message)];
            match message {
                ToMaster::StageFinished(result) => found.push(outcome_sample(&result.outcome)),
                ToMaster::ClusterState(status) => found.push(cluster_state_sample(status.state)),
                ToMaster::HypervisorState(status) => {
                    found.extend(status.clusters.iter().map(|c| cluster_state_sample(c.state)))
                }
                ToMaster::Sync(request) => {
                    found.push(sync_op_sample(&request.op));
                    match &request.op {
                        SyncOp::Wait { count, .. }
                        | SyncOp::Barrier { count, .. }
                        | SyncOp::Subscribe { count, .. } => found.push(sync_count_sample(count)),
                        SyncOp::Signal { .. } | SyncOp::Publish { .. } => {}
                    }
                }
                ToMaster::Fault { op, .. } => {
                    found.push(fault_op_sample(op));
                    match op {
                        FaultOp::Partition { until, .. }
                        | FaultOp::Netem { until, .. }
                        | FaultOp::Pause { until, .. } => found.push(fault_until_sample(*until)),
                        FaultOp::Resume { .. } | FaultOp::Kill { .. } | FaultOp::Heal => {}
                    }
                }
                _ => {}
            }
            found
        }
    }
}

/// Name → payload in hex, exactly as `encode_message` (the codec's encoding) makes it.
fn golden() -> Samples {
    samples().iter().map(|(name, message)| (name.to_string(), hex(&encode_message(message).unwrap()))).collect()
}

const FIXTURES: Fixtures = Fixtures {
    crate_dir: env!("CARGO_MANIFEST_DIR"),
    dir: "tests/golden",
    prefix: "v",
    what: "protocol version",
    hex_of: "bincode payload",
    constant: "PROTOCOL_VERSION",
    constant_in: "crates/proto/src/message.rs",
    test: "cargo test -p xrdtest-proto --test golden",
    subject: "the messages",
    harm: "A peer of version {N} would misread them.",
    also: "",
};

#[test]
fn the_messages_match_the_golden_bytes_of_this_protocol_version() {
    let now = golden();
    if FIXTURES.read(PROTOCOL_VERSION).is_none() {
        assert_prefix_rule("the new fixture", PROTOCOL_VERSION, &now);
    }
    FIXTURES.check(PROTOCOL_VERSION, &now);
}

#[test]
fn every_variant_is_in_the_sample_named_for_it() {
    let samples = samples();
    let names: BTreeSet<&str> = samples.iter().map(|(name, _)| *name).collect();
    assert_eq!(names.len(), samples.len(), "sample names are unique");
    for name in &names {
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "bad name {name}");
    }
    let mut named = BTreeSet::new();
    let mut confirmed = BTreeSet::new();
    for (name, message) in &samples {
        for holder in holders(message) {
            named.insert(holder);
            if holder == *name {
                confirmed.insert(holder);
            }
        }
    }
    let wrong: Vec<_> = named.difference(&confirmed).collect();
    assert!(wrong.is_empty(), "named as holding a variant they do not hold (or missing): {wrong:?}");
}

#[test]
fn the_golden_bytes_are_the_frames_the_codec_sends() {
    let mut codec = FrameCodec::new(HARD_MAX_FRAME_LEN);
    for (name, message) in samples() {
        let payload = encode_message(&message).unwrap();
        let mut frame = BytesMut::new();
        codec.encode(&message, &mut frame).unwrap();
        assert_eq!(frame[..4], (payload.len() as u32).to_be_bytes(), "{name}: length prefix");
        assert_eq!(frame[4..], payload[..], "{name}: payload");
    }
}

/// The prefix rule across history: the handshake samples of every pinned version still
/// begin with a version prefix this version decodes, naming that version.
#[test]
fn every_pinned_version_starts_its_handshake_with_a_readable_prefix() {
    for version in FIXTURES.versions() {
        assert!(version <= PROTOCOL_VERSION, "v{version}.txt is newer than PROTOCOL_VERSION {PROTOCOL_VERSION}");
        let pinned = FIXTURES.read(version).unwrap();
        assert_prefix_rule(&format!("v{version}.txt"), version, &pinned);
    }
}

/// The handshake samples (`hello*`) of `version` begin with its `VersionPrefix`.
fn assert_prefix_rule(label: &str, version: u32, golden: &Samples) {
    let handshake: Vec<_> = golden.iter().filter(|(name, _)| name.starts_with("hello")).collect();
    assert!(!handshake.is_empty(), "{label} has no handshake samples");
    for (name, hex) in handshake {
        let prefix = codec::decode_prefix::<VersionPrefix>(&unhex(hex)).map(|(prefix, _)| prefix);
        assert!(
            matches!(prefix, Ok(p) if p == VersionPrefix { magic: MAGIC, protocol_version: version }),
            "{label}: {name} does not begin with magic and protocol version {version} (got {prefix:?}): Hello and \
             HelloReply must, in every version, or peers of other versions cannot be told so"
        );
    }
}
