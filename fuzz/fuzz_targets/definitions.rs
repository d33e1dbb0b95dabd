//! Bytes as definition files, loaded the way the master loads a repository
//! (`load_repository_with`: parse and validate every suite, its cases' `case.toml` with
//! their tags, matrices and result thresholds, script sources under a `script_dirs`
//! policy, and clusters with the checks across files), then used the way the master and
//! the slaves use what loaded: schedules' next times, `@tag@` expansion with each case
//! instance's values, roles, `@diskmounts@`, and a cluster sent to a hypervisor.
//!
//! Input: up to three parts split at NUL bytes (never valid in TOML): `suite.toml`,
//! `case.toml` (written for every case the suite lists), `cluster.toml`. The folders are
//! named after the `name` (and `tests`, `cluster`) the parts give, so that real
//! definitions pass the name checks and the fuzzer reaches the checks behind them.
//!
//! Nothing may panic.

#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use xrdtest_defs::tags::{diskmount_commands, expand_tags};
use xrdtest_defs::{load_repository_with, roles_of, Cluster, LoadReport, SourcePolicy, Suite};

/// Folder names the harness falls back on when a part names none usable.
const SUITE_FALLBACK: &str = "ts_fuzz";
const CLUSTER_FALLBACK: &str = "cl_fuzz";
/// Longer names are not folders the harness makes (file systems refuse 256 bytes and up).
const MAX_FOLDER_NAME: usize = 64;
/// Cases the harness makes folders for; more cost time and add no new checks.
const MAX_CASES: usize = 8;

/// The definition files one input stands for.
struct Parts<'a> {
    suite: &'a [u8],
    case: Option<&'a [u8]>,
    cluster: Option<&'a [u8]>,
}

fn split(data: &[u8]) -> Parts<'_> {
    let mut parts = data.splitn(3, |&b| b == 0);
    Parts { suite: parts.next().unwrap_or_default(), case: parts.next(), cluster: parts.next() }
}

/// This process's scratch repository: in memory where `/dev/shm` exists, as each input
/// writes a handful of files.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let dir = base.join(format!("xrdtest-fuzz-defs-{}", std::process::id()));
        let scripts = dir.join("scripts");
        fs::create_dir_all(&scripts).expect("scratch folder");
        fs::write(scripts.join("allowed.sh"), "true\n").expect("scratch script");
        dir
    })
}

/// The top-level string `key` of a TOML text, when it parses and is a usable folder name.
fn folder_name(text: &[u8], key: &str) -> Option<String> {
    let table: toml::Table = std::str::from_utf8(text).ok()?.parse().ok()?;
    table.get(key)?.as_str().filter(|name| usable_folder(name)).map(str::to_string)
}

fn usable_folder(name: &str) -> bool {
    name.len() <= MAX_FOLDER_NAME && xrdtest_defs::suite::is_plain_name(name)
}

/// The usable names of the suite's `tests`, for the case folders the harness makes.
fn case_names(suite: &[u8]) -> Vec<String> {
    let Some(table) = std::str::from_utf8(suite).ok().and_then(|text| text.parse::<toml::Table>().ok()) else {
        return Vec::new();
    };
    let Some(tests) = table.get("tests").and_then(toml::Value::as_array) else { return Vec::new() };
    let names = tests.iter().filter_map(toml::Value::as_str).filter(|name| usable_folder(name));
    names.take(MAX_CASES).map(str::to_string).collect()
}

/// Writes the parts as a repository under `root`: `suites/<name>/` with its scripts and
/// case folders, and `clusters/<name>/cluster.toml`.
fn write_repository(root: &Path, parts: &Parts) -> std::io::Result<()> {
    for sub in ["suites", "clusters"] {
        match fs::remove_dir_all(root.join(sub)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
    }
    let suite_name = folder_name(parts.suite, "name").unwrap_or_else(|| SUITE_FALLBACK.into());
    let suite_dir = root.join("suites").join(&suite_name);
    fs::create_dir_all(&suite_dir)?;
    fs::write(suite_dir.join("suite.toml"), parts.suite)?;
    for script in ["suite_init.sh", "suite_finalize.sh"] {
        fs::write(suite_dir.join(script), "true\n")?;
    }
    for (index, case) in case_names(parts.suite).iter().enumerate() {
        let case_dir = suite_dir.join("tc").join(case);
        fs::create_dir_all(&case_dir)?;
        // Every other case has a finalize script: both shapes of a case folder are checked.
        let scripts: &[&str] =
            if index % 2 == 0 { &["init.sh", "run.sh"] } else { &["init.sh", "run.sh", "finalize.sh"] };
        for script in scripts {
            fs::write(case_dir.join(script), "true\n")?;
        }
        if let Some(case_toml) = parts.case {
            fs::write(case_dir.join("case.toml"), case_toml)?;
        }
    }
    if let Some(cluster_toml) = parts.cluster {
        let name = folder_name(cluster_toml, "name")
            .or_else(|| folder_name(parts.suite, "cluster"))
            .unwrap_or_else(|| CLUSTER_FALLBACK.into());
        let cluster_dir = root.join("clusters").join(name);
        fs::create_dir_all(&cluster_dir)?;
        fs::write(cluster_dir.join("cluster.toml"), cluster_toml)?;
    }
    Ok(())
}

/// The master's policy with one allowed script folder and one plain-http host, so that
/// both sides of each script-source check are reachable.
fn policy(root: &Path) -> SourcePolicy {
    SourcePolicy { script_dirs: vec![root.join("scripts")], http_hosts: vec!["scripts.example".into()] }
}

/// What the master, the scheduler and the slaves do with what loaded.
fn use_report(report: &LoadReport) {
    for error in &report.errors {
        let _ = error.to_string();
    }
    let clusters = &report.repository.clusters;
    for suite in report.repository.suites.values() {
        use_suite(suite, suite.cluster.as_ref().and_then(|name| clusters.get(name)));
    }
    for cluster in clusters.values() {
        use_cluster(cluster);
    }
}

fn use_suite(suite: &Suite, cluster: Option<&Cluster>) {
    if let Some(schedule) = &suite.schedule {
        // As the scheduler does: the next time, and the one after it (missed runs are counted so).
        let now = Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 0).unwrap();
        if let Some(next) = schedule.next_after(&now) {
            let _ = schedule.next_after(&next);
        }
    }
    let _ = xrdtest_defs::units::format_duration(suite.stage_timeout);
    let _ = suite.initialize.describe();
    for machine in &suite.machines {
        let roles = roles_of(suite, cluster, machine);
        let mut tags = suite.tags.clone();
        tags.insert("slavename".into(), machine.clone());
        tags.insert("roles".into(), roles.join(","));
        for case in &suite.tests {
            let _ = (case.effective_timeout(suite), case.effective_retries(suite));
            for instance in &case.instances {
                expand_case_tags(&tags, &case.tags, &instance.params, suite);
            }
        }
    }
}

/// The tags of one stage of a case instance, as the slave expands them in scripts and logs.
fn expand_case_tags(
    suite_tags: &BTreeMap<String, String>,
    case_tags: &BTreeMap<String, String>,
    params: &[(String, String)],
    suite: &Suite,
) {
    let mut tags = suite_tags.clone();
    tags.extend(case_tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    tags.extend(params.iter().cloned());
    let _ = expand_tags("cd @workdir@ && echo @slavename@ @roles@ @mode@ @@ @x", &tags);
    for log in &suite.logs {
        let _ = expand_tags(log, &tags);
    }
    for value in tags.values() {
        let _ = expand_tags(value, &tags);
    }
}

fn use_cluster(cluster: &Cluster) {
    for host in &cluster.hosts {
        let _ = diskmount_commands(&host.disks);
        let _ = (host.short_name(), cluster.network.contains(host.ip), cluster.network.prefix_len());
    }
    // The master sends the cluster to a hypervisor: it must survive the wire unchanged.
    let start = xrdtest_proto::StartCluster {
        cluster: cluster.clone(),
        master_ip: None,
        master_port: 20000,
        requested_by: "fuzz".into(),
        credentials: Default::default(),
    };
    let bytes = xrdtest_proto::encode_message(&start).expect("a loaded cluster encodes");
    let back: xrdtest_proto::StartCluster = xrdtest_proto::decode_message(&bytes).expect("and decodes");
    assert_eq!(back, start, "a cluster changed on the wire");
}

fuzz_target!(|data: &[u8]| {
    let root = scratch();
    let parts = split(data);
    if write_repository(root, &parts).is_err() {
        // A name the file system refuses: not the loader's business.
        return;
    }
    let report = load_repository_with(&root.join("suites"), &root.join("clusters"), &policy(root));
    use_report(&report);
});
