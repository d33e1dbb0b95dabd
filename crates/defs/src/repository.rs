//! Loading a whole definitions repository: every suite, every cluster, and the checks
//! that span files (XrdTest's `validateAgainstSystem`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cluster::{load_cluster, qualify, Cluster};
use crate::error::DefError;
use crate::script::SourcePolicy;
use crate::source::SourceFile;
use crate::suite::{load_suite_with, Suite};

/// The valid definitions of a repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    pub suites: BTreeMap<String, Suite>,
    pub clusters: BTreeMap<String, Cluster>,
}

/// What loading found: the valid definitions and every error, in file order.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub repository: Repository,
    pub errors: Vec<DefError>,
    /// Folders that were read, for a summary (`3 suites, 2 clusters`).
    pub suites_seen: usize,
    pub clusters_seen: usize,
}

impl LoadReport {
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Loads every `suites_dir/<name>/suite.toml` and `clusters_dir/<name>/cluster.toml`.
///
/// A definition with errors is left out of [`LoadReport::repository`]; so is a cluster
/// that clashes with another (the one that sorts first keeps its place) and a suite whose
/// cluster is missing or broken. A missing `clusters_dir` is no error when no suite needs
/// a cluster.
pub fn load_repository(suites_dir: &Path, clusters_dir: &Path) -> LoadReport {
    load_repository_with(suites_dir, clusters_dir, &SourcePolicy::default())
}

/// [`load_repository`] with `file://` scripts checked against `policy` (the master's
/// `script_dirs`).
pub fn load_repository_with(suites_dir: &Path, clusters_dir: &Path, policy: &SourcePolicy) -> LoadReport {
    let mut report = LoadReport::default();
    let cluster_dirs = definition_dirs(clusters_dir, false, &mut report.errors);
    report.clusters_seen = cluster_dirs.len();
    for dir in cluster_dirs {
        match load_cluster(&dir) {
            Ok(cluster) => match clash_with_others(&cluster, &report.repository.clusters, &dir) {
                Some(errors) => report.errors.extend(errors),
                None => {
                    report.repository.clusters.insert(cluster.name.clone(), cluster);
                }
            },
            Err(errors) => report.errors.extend(errors),
        }
    }
    let suite_dirs = definition_dirs(suites_dir, true, &mut report.errors);
    report.suites_seen = suite_dirs.len();
    for dir in suite_dirs {
        match load_suite_with(&dir, policy)
            .and_then(|suite| check_suite_cluster(suite, &report.repository.clusters, clusters_dir))
        {
            Ok(suite) => {
                report.repository.suites.insert(suite.name.clone(), suite);
            }
            Err(errors) => report.errors.extend(errors),
        }
    }
    report
}

/// The definition folders in `root`, sorted; files and hidden entries are skipped.
fn definition_dirs(root: &Path, required: bool, errors: &mut Vec<DefError>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(err) if !required && err.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(err) => {
            errors.push(DefError::new(root, None, "", format!("cannot read definitions folder: {err}")));
            return Vec::new();
        }
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Errors when `cluster` reuses a network, bridge, host name, address or MAC of an already
/// accepted cluster: two such clusters cannot both be active. `None` when it is clear.
fn clash_with_others(cluster: &Cluster, others: &BTreeMap<String, Cluster>, dir: &Path) -> Option<Vec<DefError>> {
    let file = dir.join("cluster.toml");
    let mut errors = Vec::new();
    for other in others.values() {
        let mut clash = |field: &str, what: String| {
            errors.push(DefError::new(&file, None, field, format!("{what} is also used by cluster `{}`", other.name)));
        };
        if cluster.network.name == other.network.name {
            clash("network.name", format!("network name `{}`", cluster.network.name));
        }
        if cluster.network.bridge == other.network.bridge {
            clash("network.bridge", format!("bridge `{}`", cluster.network.bridge));
        }
        for (index, host) in cluster.hosts.iter().enumerate() {
            for theirs in &other.hosts {
                if host.name == theirs.name {
                    clash(&format!("hosts[{index}].name"), format!("host name `{}`", host.name));
                }
                if host.ip == theirs.ip {
                    clash(&format!("hosts[{index}].ip"), format!("address `{}` (host {} there)", host.ip, theirs.name));
                }
                if host.mac == theirs.mac {
                    clash(&format!("hosts[{index}].mac"), format!("MAC `{}` (host {} there)", host.mac, theirs.name));
                }
            }
        }
    }
    with_lines(&file, &mut errors);
    (!errors.is_empty()).then_some(errors)
}

/// Errors of checks across files are found after parsing: give them the lines of their fields.
fn with_lines(file: &Path, errors: &mut [DefError]) {
    if errors.iter().all(|e| e.line.is_some()) {
        return;
    }
    let Ok(src) = SourceFile::read(file) else { return };
    for error in errors.iter_mut().filter(|e| e.line.is_none() && !e.field.is_empty()) {
        error.line = src.line_of_field(&error.field);
    }
}

/// A suite's cluster must exist and be valid, and its machines must be hosts of it
/// (named in full or by their first label). Machines are rewritten to full host names;
/// a cluster suite that names none runs on every host of its cluster.
fn check_suite_cluster(
    mut suite: Suite,
    clusters: &BTreeMap<String, Cluster>,
    clusters_dir: &Path,
) -> Result<Suite, Vec<DefError>> {
    let Some(cluster_name) = suite.cluster.clone() else { return Ok(suite) };
    let file = suite.dir.join("suite.toml");
    let Some(cluster) = clusters.get(&cluster_name) else {
        let message = if clusters_dir.join(&cluster_name).join("cluster.toml").is_file() {
            format!("cluster `{cluster_name}` has errors of its own (see them above)")
        } else {
            format!("no cluster `{cluster_name}` in {}", clusters_dir.display())
        };
        let mut errors = vec![DefError::new(&file, None, "cluster", message)];
        with_lines(&file, &mut errors);
        return Err(errors);
    };
    let mut errors = Vec::new();
    // Each name to the full name of a host of the cluster, or an error on `field[index]`.
    let mut qualify_all = |names: &mut Vec<String>, field: &str| {
        for (index, machine) in names.iter_mut().enumerate() {
            let full = qualify(machine, &cluster.network.domain);
            if cluster.hosts.iter().any(|h| h.name == full) {
                *machine = full;
            } else {
                errors.push(DefError::new(
                    &file,
                    None,
                    format!("{field}[{index}]"),
                    format!("`{machine}` is not a host of cluster `{cluster_name}`"),
                ));
            }
        }
    };
    let mut resolved = suite.machines.clone();
    qualify_all(&mut resolved, "machines");
    for (role, members) in suite.roles.iter_mut() {
        qualify_all(members, &format!("roles.{role}"));
    }
    if !errors.is_empty() {
        with_lines(&file, &mut errors);
        return Err(errors);
    }
    if suite.machines.is_empty() {
        resolved = cluster.hosts.iter().map(|host| host.name.clone()).collect();
    }
    suite.machines = resolved;
    Ok(suite)
}
