//! Shared test data: one value of every message variant.

#![allow(dead_code)]

use std::collections::BTreeMap;

use xrdtest_defs::{Boot, Cluster, Disk, Host, Network};
use xrdtest_proto::*;

pub fn sample_cluster() -> Cluster {
    Cluster {
        name: "cluster_pair".into(),
        network: Network {
            name: "cluster_pair_net".into(),
            bridge: "virbr_pair".into(),
            ip: "10.77.0.1".parse().unwrap(),
            netmask: "255.255.255.0".parse().unwrap(),
            dhcp_start: "10.77.0.100".parse().unwrap(),
            dhcp_end: "10.77.0.200".parse().unwrap(),
            domain: "pair.test".into(),
            lb_alias: Some("lb.pair.test".into()),
            lb_hosts: vec!["server.pair.test".into()],
        },
        hosts: vec![Host {
            name: "server.pair.test".into(),
            ip: "10.77.0.10".parse().unwrap(),
            mac: "52:54:00:00:00:01".into(),
            boot: Boot::Kernel { kernel: "/k".into(), initrd: Some("/i".into()), cmdline: None },
            arch: "x86_64".into(),
            ram_bytes: 256 << 20,
            vcpus: 1,
            roles: Vec::new(),
            disks: vec![Disk {
                name: "data".into(),
                size_bytes: 64 << 20,
                device: "vda".into(),
                mount_point: "/data".into(),
            }],
        }],
        links: Vec::new(),
    }
}

pub fn sample_tags() -> BTreeMap<String, String> {
    [("datadir".to_string(), "/data".to_string()), ("port".to_string(), "20000".to_string())].into_iter().collect()
}

pub fn all_from_master() -> Vec<FromMaster> {
    let stages = [
        Stage::SuiteInit,
        Stage::CaseInit { case: "copy_to".into() },
        Stage::CaseRun { case: "copy_to".into() },
        Stage::CaseFinalize { case: "copy_to".into() },
        Stage::SuiteFinalize,
    ];
    let mut out: Vec<FromMaster> = stages
        .into_iter()
        .enumerate()
        .map(|(i, stage)| {
            FromMaster::RunStage(StageCommand {
                stage_id: i as u64 + 1,
                session_id: "20261121-0001".into(),
                suite: "ts_demo".into(),
                stage,
                script: "#!/bin/bash\necho @slavename@ ünïcode\n".into(),
                tags: sample_tags(),
                slaves: std::sync::Arc::new("slave1 slave2".into()),
                files: if i == 0 {
                    vec![xrdtest_proto::SessionFile {
                        name: "hostkey.pem".into(),
                        mode: 0o600,
                        contents: b"key\n".to_vec(),
                    }]
                } else {
                    Vec::new()
                },
                timeout_ms: 600_000,
                logs: vec!["/var/log/@slavename@.log".into()],
                output_limit_bytes: 64 << 20,
                log_limit_bytes: 1 << 20,
            })
        })
        .collect();
    out.extend([
        FromMaster::CancelStage { stage_id: 7, reason: "cancelled by alice".into() },
        FromMaster::TagReply { request_id: 3, tags: sample_tags() },
        FromMaster::ResumeStage { stage_id: 9, from_seq: Some(12) },
        FromMaster::ResumeStage { stage_id: 9, from_seq: None },
        FromMaster::StartCluster(StartCluster {
            cluster: sample_cluster(),
            master_ip: Some("10.77.0.1".parse().unwrap()),
            master_port: 20000,
            requested_by: "manual".into(),
            credentials: GuestCredentials([("vm1".to_string(), "vm-token".to_string())].into_iter().collect()),
        }),
        FromMaster::StopCluster { cluster: "cluster_pair".into() },
        FromMaster::Heartbeat(Heartbeat { seq: u64::MAX, sent_unix_ms: 1_763_000_000_000 }),
        FromMaster::Disconnect { reason: "master shutting down".into() },
        FromMaster::EndSession { request_id: 7, session_id: "4".into() },
    ]);
    out
}

pub fn all_to_master() -> Vec<ToMaster> {
    let outcomes = [
        StageOutcome::Exited { code: 0 },
        StageOutcome::Exited { code: -1 },
        StageOutcome::KilledBySignal { signal: 9 },
        StageOutcome::TimedOut { after_ms: 600_000 },
        StageOutcome::Cancelled { reason: "cancel".into() },
        StageOutcome::Failed { reason: "bash not found".into() },
    ];
    let mut out: Vec<ToMaster> = outcomes
        .into_iter()
        .map(|outcome| {
            ToMaster::StageFinished(StageResult {
                stage_id: 1,
                outcome,
                started_unix_ms: 1,
                ended_unix_ms: 2,
                output_bytes: 3,
                dropped_bytes: 4,
                chunks: 5,
                values: StageValues::default(),
            })
        })
        .collect();
    let states = [
        ClusterState::Defined,
        ClusterState::DefinitionSent,
        ClusterState::Starting,
        ClusterState::CreatingNetwork,
        ClusterState::CreatingSlaves,
        ClusterState::CopyingImages,
        ClusterState::AttachingDisks,
        ClusterState::WaitingSlaves,
        ClusterState::Active,
        ClusterState::StopCommandSent,
        ClusterState::Destroying,
        ClusterState::Stopped,
        ClusterState::ErrorStart,
        ClusterState::ErrorStop,
        ClusterState::Error,
    ];
    out.extend(states.into_iter().map(|state| {
        ToMaster::ClusterState(ClusterStatus { cluster: "c".into(), state, detail: "libvirt: no such volume".into() })
    }));
    out.extend([
        ToMaster::StageStarted { stage_id: 1, started_unix_ms: 1_763_000_000_000 },
        ToMaster::Output(OutputChunk {
            stage_id: 1,
            seq: 0,
            lines: vec![
                OutputLine { unix_ms: 1, text: "hello".into() },
                OutputLine { unix_ms: 2, text: String::new() },
            ],
        }),
        ToMaster::LogFile(LogFile {
            stage_id: 1,
            path: "/var/log/x.log".into(),
            content: vec![0, 1, 2, 255],
            truncated_bytes: 10,
            error: None,
        }),
        ToMaster::LogFile(LogFile {
            stage_id: 1,
            path: "/nope".into(),
            content: Vec::new(),
            truncated_bytes: 0,
            error: Some("No such file or directory".into()),
        }),
        ToMaster::TagRequest { request_id: 42 },
        ToMaster::Reattach {
            stages: vec![HeldStage { stage_id: 4, chunks: 17, finished: true }],
            faults: vec![9],
            sessions: vec!["4".into()],
        },
        ToMaster::HypervisorState(HypervisorStatus {
            domain_type: "qemu".into(),
            memory_limit_bytes: 8 << 30,
            memory_used_bytes: 1 << 30,
            vm_limit: 8,
            vms_running: 2,
            clusters: vec![ClusterStatus { cluster: "c".into(), state: ClusterState::Active, detail: String::new() }],
        }),
        ToMaster::Heartbeat(Heartbeat { seq: 0, sent_unix_ms: 0 }),
        ToMaster::Disconnect { reason: "slave shutting down".into() },
        ToMaster::SessionEnded {
            request_id: 7,
            cleanup: SessionCleanup { method: "environ".into(), processes_ended: 3, problem: None },
        },
    ]);
    out
}

pub fn sample_hello_reply() -> HelloReply {
    HelloReply {
        magic: MAGIC,
        protocol_version: PROTOCOL_VERSION,
        master_version: "0.1.0".into(),
        refusal: Some(Refusal { reason: RefusalReason::DuplicateName, message: "slave1 is already connected".into() }),
        heartbeat_interval_ms: 5000,
        certificate: Some("-----BEGIN CERTIFICATE-----\n".into()),
    }
}
