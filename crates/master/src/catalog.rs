//! The definitions in service: every repository's suites and clusters, the last good
//! version of each, and what changed at each reload.
//!
//! Reload rules: a definition that fails validation keeps its last good version in
//! service, and its errors are shown; a definition whose folder is gone is removed (a
//! removed suite is no longer scheduled); a new or changed valid one replaces the old.
//!
//! A suite is served from a snapshot of its folder (`state_dir/snapshots/...`), not from
//! the repository itself, so that a later edit, a broken push or a moved git checkout
//! never changes the scripts of the version in service, nor of a session that runs it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{watch, Notify};

use serde::Serialize;
use tracing::{info, warn};
use xrdtest_defs::{load_repository_with, Cluster, DefError, Repository, ScriptSource, SourcePolicy, Suite};

use crate::config::{RepoConfig, RepoSource};
use crate::model::now_ms;

/// The definitions in service, shared by everything that reads them (sessions, the
/// scheduler, the web) and the watchers that reload them. Reads take a snapshot (an `Arc`),
/// never a lock held across work.
pub struct DefinitionsService {
    catalog: Mutex<Catalog>,
    /// The merged definitions in service, rebuilt after every reload.
    current: RwLock<Arc<Definitions>>,
    /// Counts reloads that changed something; the scheduler watches it.
    version: watch::Sender<u64>,
    /// Wakes the git fetch loops before their next poll (SIGHUP).
    fetch_now: Notify,
    /// Snapshot folders the last pruning pass found unused: the next pass removes those
    /// still unused, so a version just replaced stays for one pass (a session being made
    /// from it at that moment still finds its scripts).
    unused_last_pass: Mutex<HashSet<PathBuf>>,
}

impl DefinitionsService {
    pub fn new(repos: &[RepoConfig], snapshots_dir: PathBuf, policy: SourcePolicy) -> DefinitionsService {
        let mut catalog = Catalog::new(repos, snapshots_dir);
        catalog.policy = policy;
        let current = RwLock::new(Arc::new(catalog.definitions()));
        DefinitionsService {
            catalog: Mutex::new(catalog),
            current,
            version: watch::channel(0).0,
            fetch_now: Notify::new(),
            unused_last_pass: Mutex::new(HashSet::new()),
        }
    }

    /// Removes the suite snapshots (`state_dir/snapshots/<repo>/<suite>-<hash>`) that no
    /// suite in service and none of `in_use` (the suite folders of sessions waiting or
    /// running) lies in, and that the pass before found unused too. Returns how many went.
    /// Holds the catalog while it looks, so no reload makes a snapshot meanwhile.
    pub fn prune_snapshots(&self, in_use: &[PathBuf]) -> Result<usize, String> {
        let catalog = self.catalog();
        let mut used: HashSet<PathBuf> =
            catalog.suite_dirs().filter_map(|dir| dir.parent().map(Path::to_path_buf)).collect();
        used.extend(in_use.iter().filter_map(|dir| dir.parent().map(Path::to_path_buf)));
        let unused: HashSet<PathBuf> =
            snapshot_roots(&catalog.snapshots_dir)?.into_iter().filter(|root| !used.contains(root)).collect();
        let mut last_pass = self.unused_last_pass.lock().unwrap_or_else(|p| p.into_inner());
        let mut removed = 0;
        for root in unused.intersection(&last_pass) {
            match std::fs::remove_dir_all(root) {
                Ok(()) => removed += 1,
                Err(err) => warn!(snapshot = %root.display(), error = %err, "retention: cannot remove a snapshot"),
            }
        }
        *last_pass = unused.into_iter().filter(|root| root.exists()).collect();
        Ok(removed)
    }

    /// The definitions in service: shared, not copied, so pages and the scheduler can read
    /// them on every request cheaply.
    pub fn snapshot(&self) -> Arc<Definitions> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn catalog(&self) -> std::sync::MutexGuard<'_, Catalog> {
        self.catalog.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reloads one repository from disk (at `commit`, for git) and puts the result in service.
    pub fn reload_repo(&self, repo: &str, commit: Option<String>) -> ReloadSummary {
        let (summary, definitions) = {
            let mut catalog = self.catalog();
            let summary = catalog.reload(repo, commit);
            (summary, catalog.definitions())
        };
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(definitions);
        self.version.send_modify(|v| *v += 1);
        summary
    }

    /// Records (or clears) why a repository could not be fetched or watched.
    pub fn set_repo_error(&self, repo: &str, error: Option<String>) {
        let definitions = {
            let mut catalog = self.catalog();
            catalog.set_error(repo, error);
            catalog.definitions()
        };
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(definitions);
    }

    /// Changes whenever the definitions in service may have changed.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Asks every git repository's loop to fetch now instead of at its next poll. A loop
    /// that is fetching at this moment is not interrupted: it just did.
    pub fn fetch_git_now(&self) {
        self.fetch_now.notify_waiters();
    }

    /// Waits until [`DefinitionsService::fetch_git_now`] is called.
    pub async fn git_fetch_requested(&self) {
        self.fetch_now.notified().await;
    }
}

/// Where a served suite came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub repo: String,
    /// The git commit it was loaded from, for git repositories.
    pub commit: Option<String>,
}

/// A repository's state, for the API.
#[derive(Debug, Clone, Serialize)]
pub struct RepoStatus {
    pub name: String,
    pub kind: &'static str,
    pub root: String,
    pub commit: Option<String>,
    pub last_load_ms: Option<u64>,
    /// Why the last fetch or watch failed, if it did (the last good version still serves).
    pub last_error: Option<String>,
    pub suites: usize,
    pub clusters: usize,
}

/// The merged view the master serves.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    pub repository: Repository,
    pub errors: Vec<DefError>,
    pub origins: BTreeMap<String, Origin>,
    pub repos: Vec<RepoStatus>,
}

/// What one reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    /// Broken now, still served in their last good version.
    pub kept_last_good: Vec<String>,
    pub errors: usize,
}

impl ReloadSummary {
    pub fn changed(&self) -> bool {
        !(self.added.is_empty() && self.updated.is_empty() && self.removed.is_empty())
    }
}

struct RepoEntry {
    config: RepoConfig,
    commit: Option<String>,
    last_load_ms: Option<u64>,
    last_error: Option<String>,
    errors: Vec<DefError>,
    suites: BTreeMap<String, (Suite, Option<String>)>,
    clusters: BTreeMap<String, Cluster>,
}

pub struct Catalog {
    snapshots_dir: PathBuf,
    /// Where `file://` scripts may come from.
    policy: SourcePolicy,
    repos: Vec<RepoEntry>,
}

impl Catalog {
    pub fn new(repos: &[RepoConfig], snapshots_dir: PathBuf) -> Catalog {
        Catalog {
            snapshots_dir,
            policy: SourcePolicy::default(),
            repos: repos
                .iter()
                .map(|config| RepoEntry {
                    config: config.clone(),
                    commit: None,
                    last_load_ms: None,
                    last_error: None,
                    errors: Vec::new(),
                    suites: BTreeMap::new(),
                    clusters: BTreeMap::new(),
                })
                .collect(),
        }
    }

    /// The folders of every suite version the catalog keeps (in service or not).
    fn suite_dirs(&self) -> impl Iterator<Item = &Path> + '_ {
        self.repos.iter().flat_map(|entry| entry.suites.values().map(|(suite, _)| suite.dir.as_path()))
    }

    fn entry(&mut self, repo: &str) -> Option<&mut RepoEntry> {
        self.repos.iter_mut().find(|r| r.config.name == repo)
    }

    /// Records a fetch or watch failure of a repository (`None` clears it).
    pub fn set_error(&mut self, repo: &str, error: Option<String>) {
        if let Some(entry) = self.entry(repo) {
            entry.last_error = error;
        }
    }

    /// Reloads one repository from disk (its checkout at `commit`, for git).
    pub fn reload(&mut self, repo: &str, commit: Option<String>) -> ReloadSummary {
        let snapshots_dir = self.snapshots_dir.clone();
        let policy = self.policy.clone();
        let Some(entry) = self.entry(repo) else { return ReloadSummary::default() };
        let suites_dir = entry.config.suites_dir();
        let clusters_dir = entry.config.clusters_dir();
        let report = load_repository_with(&suites_dir, &clusters_dir, &policy);
        let mut summary = ReloadSummary { errors: report.errors.len(), ..ReloadSummary::default() };

        let mut suites = BTreeMap::new();
        for name in folder_names(&suites_dir) {
            match report.repository.suites.get(&name) {
                Some(suite) => match snapshot_suite(&snapshots_dir.join(repo), suite) {
                    Ok(snapshot) => {
                        let old = entry.suites.get(&name).map(|(s, _)| s);
                        match old {
                            None => summary.added.push(name.clone()),
                            Some(old) if *old != snapshot => summary.updated.push(name.clone()),
                            Some(_) => {}
                        }
                        let origin_commit = match old {
                            Some(old) if *old == snapshot => entry.suites.get(&name).and_then(|(_, c)| c.clone()),
                            _ => commit.clone(),
                        };
                        suites.insert(name, (snapshot, origin_commit));
                    }
                    Err(err) => {
                        warn!(repo, suite = %name, error = %err, "cannot snapshot suite; keeping the version in service");
                        if let Some(old) = entry.suites.get(&name) {
                            suites.insert(name, old.clone());
                        }
                    }
                },
                None => {
                    if let Some(old) = entry.suites.get(&name) {
                        summary.kept_last_good.push(name.clone());
                        suites.insert(name, old.clone());
                    }
                }
            }
        }
        summary.removed.extend(entry.suites.keys().filter(|name| !suites.contains_key(*name)).cloned());

        let mut clusters = BTreeMap::new();
        for name in folder_names(&clusters_dir) {
            match report.repository.clusters.get(&name) {
                Some(cluster) => {
                    match entry.clusters.get(&name) {
                        None => summary.added.push(format!("cluster {name}")),
                        Some(old) if old != cluster => summary.updated.push(format!("cluster {name}")),
                        Some(_) => {}
                    }
                    clusters.insert(name, cluster.clone());
                }
                None => {
                    if let Some(old) = entry.clusters.get(&name) {
                        summary.kept_last_good.push(format!("cluster {name}"));
                        clusters.insert(name, old.clone());
                    }
                }
            }
        }
        summary
            .removed
            .extend(entry.clusters.keys().filter(|name| !clusters.contains_key(*name)).map(|n| format!("cluster {n}")));

        entry.suites = suites;
        entry.clusters = clusters;
        entry.errors = report.errors;
        entry.commit = commit;
        entry.last_load_ms = Some(now_ms());
        for error in &entry.errors {
            warn!(repo, %error, "invalid definition");
        }
        if summary.changed() || !summary.kept_last_good.is_empty() {
            info!(
                repo,
                added = ?summary.added,
                updated = ?summary.updated,
                removed = ?summary.removed,
                kept_last_good = ?summary.kept_last_good,
                errors = summary.errors,
                "definitions reloaded"
            );
        }
        summary
    }

    /// Every repository merged, in configuration order. A suite or cluster name defined in
    /// two repositories is served from the first and reported in the second.
    pub fn definitions(&self) -> Definitions {
        let mut merged = Definitions::default();
        let mut cluster_repo: BTreeMap<String, String> = BTreeMap::new();
        for entry in &self.repos {
            let name = &entry.config.name;
            for (suite_name, (suite, commit)) in &entry.suites {
                if let Some(first) = merged.origins.get(suite_name) {
                    merged.errors.push(DefError::new(
                        suite.dir.join("suite.toml"),
                        None,
                        "name",
                        format!(
                            "suite `{suite_name}` is defined in repository `{}` and in repository `{name}`; the one in `{}` is used",
                            first.repo, first.repo
                        ),
                    ));
                    continue;
                }
                merged.origins.insert(suite_name.clone(), Origin { repo: name.clone(), commit: commit.clone() });
                merged.repository.suites.insert(suite_name.clone(), suite.clone());
            }
            for (cluster_name, cluster) in &entry.clusters {
                if let Some(first) = cluster_repo.get(cluster_name) {
                    merged.errors.push(DefError::new(
                        entry.config.clusters_dir().join(cluster_name).join("cluster.toml"),
                        None,
                        "name",
                        format!(
                            "cluster `{cluster_name}` is defined in repository `{first}` and in repository `{name}`; the one in `{first}` is used"
                        ),
                    ));
                    continue;
                }
                cluster_repo.insert(cluster_name.clone(), name.clone());
                merged.repository.clusters.insert(cluster_name.clone(), cluster.clone());
            }
            merged.errors.extend(entry.errors.iter().cloned());
            merged.repos.push(RepoStatus {
                name: name.clone(),
                kind: match entry.config.source {
                    RepoSource::Localfs { .. } => "localfs",
                    RepoSource::Git(_) => "git",
                },
                root: entry.config.root().display().to_string(),
                commit: entry.commit.clone(),
                last_load_ms: entry.last_load_ms,
                last_error: entry.last_error.clone(),
                suites: entry.suites.len(),
                clusters: entry.clusters.len(),
            });
        }
        merged
    }
}

/// The definition folders in `dir` (what exists, valid or not).
fn folder_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// Every snapshot folder, `<snapshots>/<repo>/<suite>-<hash>`, but those being made.
fn snapshot_roots(snapshots: &Path) -> Result<Vec<PathBuf>, String> {
    let list = |dir: &Path| -> Result<Vec<PathBuf>, String> {
        match std::fs::read_dir(dir) {
            Ok(entries) => Ok(entries
                .flatten()
                .filter(|e| {
                    e.file_type().is_ok_and(|t| t.is_dir()) && !e.file_name().to_string_lossy().starts_with('.')
                })
                .map(|e| e.path())
                .collect()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(err) => Err(format!("{}: {err}", dir.display())),
        }
    };
    let mut roots = Vec::new();
    for repo in list(snapshots)? {
        roots.extend(list(&repo)?);
    }
    Ok(roots)
}

/// Copies a suite's folder into a content-addressed snapshot (once per content) and returns
/// the suite with its paths pointing there.
fn snapshot_suite(snapshots: &Path, suite: &Suite) -> Result<Suite, String> {
    let hash = hash_folder(&suite.dir)?;
    let root = snapshots.join(format!("{}-{}", suite.name, &hash[..16]));
    let target = root.join(&suite.name);
    if !target.is_dir() {
        let staging = snapshots.join(format!(".staging-{}-{}", suite.name, std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        copy_folder(&suite.dir, &staging.join(&suite.name))
            .map_err(|e| format!("copying {}: {e}", suite.dir.display()))?;
        std::fs::create_dir_all(snapshots).map_err(|e| e.to_string())?;
        std::fs::rename(&staging, &root).map_err(|e| format!("placing snapshot {}: {e}", root.display()))?;
    }
    Ok(rebase_suite(suite, &suite.dir, &target))
}

/// SHA-256 over the relative paths and contents of every file in a folder, in sorted order.
fn hash_folder(dir: &Path) -> Result<String, String> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    files.sort();
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for relative in files {
        let bytes = std::fs::read(dir.join(&relative)).map_err(|e| format!("reading {}: {e}", relative.display()))?;
        context.update(relative.to_string_lossy().as_bytes());
        context.update(&(bytes.len() as u64).to_be_bytes());
        context.update(&bytes);
    }
    Ok(hex::encode(context.finish()))
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_files(root, &path, out)?;
        } else if kind.is_file() {
            if let Ok(relative) = path.strip_prefix(root) {
                out.push(relative.to_path_buf());
            }
        }
    }
    Ok(())
}

fn copy_folder(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_folder(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The suite with every path under `from` moved under `to`.
fn rebase_suite(suite: &Suite, from: &Path, to: &Path) -> Suite {
    let move_path = |path: &Path| match path.strip_prefix(from) {
        Ok(relative) => to.join(relative),
        Err(_) => path.to_path_buf(),
    };
    let move_source = |source: &ScriptSource| match source {
        ScriptSource::File(path) => ScriptSource::File(move_path(path)),
        other => other.clone(),
    };
    let mut rebased = suite.clone();
    rebased.dir = to.to_path_buf();
    rebased.initialize = move_source(&suite.initialize);
    rebased.finalize = suite.finalize.as_ref().map(move_source);
    for case in &mut rebased.tests {
        case.init = move_path(&case.init);
        case.run = move_path(&case.run);
        case.finalize = case.finalize.as_deref().map(move_path);
    }
    rebased
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn suite_toml(name: &str, extra: &str) -> String {
        format!("name = \"{name}\"\nmachines = [\"s1\"]\ntests = [\"c\"]\ninitialize = \"file://init.sh\"\n{extra}")
    }

    fn repo(root: &Path, name: &str) -> RepoConfig {
        RepoConfig {
            name: name.into(),
            source: RepoSource::Localfs { path: root.to_path_buf() },
            suites_path: "suites".into(),
            clusters_path: "clusters".into(),
        }
    }

    fn add_suite(root: &Path, name: &str, init: &str) {
        write(&root.join(format!("suites/{name}/suite.toml")), &suite_toml(name, ""));
        write(&root.join(format!("suites/{name}/init.sh")), init);
        write(&root.join(format!("suites/{name}/tc/c/init.sh")), "true\n");
        write(&root.join(format!("suites/{name}/tc/c/run.sh")), "true\n");
    }

    #[test]
    fn snapshots_nothing_uses_go_at_the_second_pass_and_those_in_use_stay() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        add_suite(&root, "ts_a", "echo v1\n");
        add_suite(&root, "ts_b", "echo b1\n");
        let service = DefinitionsService::new(&[repo(&root, "main")], dir.path().join("snap"), SourcePolicy::default());
        service.reload_repo("main", None);
        let a1 = service.snapshot().repository.suites["ts_a"].dir.clone();
        let b1 = service.snapshot().repository.suites["ts_b"].dir.clone();
        write(&root.join("suites/ts_a/init.sh"), "echo v2\n");
        write(&root.join("suites/ts_b/init.sh"), "echo b2\n");
        service.reload_repo("main", None);
        let a2 = service.snapshot().repository.suites["ts_a"].dir.clone();
        assert_ne!(a1, a2, "a new version, a new snapshot");
        // b1 is what a running session runs from.
        assert_eq!(service.prune_snapshots(std::slice::from_ref(&b1)).unwrap(), 0, "the first pass only notes");
        assert!(a1.is_dir());
        assert_eq!(service.prune_snapshots(std::slice::from_ref(&b1)).unwrap(), 1);
        assert!(!a1.exists(), "the replaced version went");
        assert!(a2.is_dir() && b1.is_dir(), "the one in service and the one in use stay");
        // The session ended: b1 goes two passes later, the versions in service never.
        assert_eq!(service.prune_snapshots(&[]).unwrap(), 0);
        assert_eq!(service.prune_snapshots(&[]).unwrap(), 1);
        assert!(!b1.exists());
        let in_service: Vec<PathBuf> = service.snapshot().repository.suites.values().map(|s| s.dir.clone()).collect();
        assert!(in_service.iter().all(|d| d.is_dir()), "{in_service:?}");
        let ScriptSource::File(init) = &service.snapshot().repository.suites["ts_a"].initialize else { panic!() };
        assert_eq!(std::fs::read_to_string(init).unwrap(), "echo v2\n");
    }

    #[test]
    fn last_good_version_serves_while_broken_and_snapshots_keep_old_scripts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        add_suite(&root, "ts_a", "echo v1\n");
        let mut catalog = Catalog::new(&[repo(&root, "main")], dir.path().join("snap"));
        let summary = catalog.reload("main", None);
        assert_eq!(summary.added, ["ts_a"]);
        let v1 = catalog.definitions().repository.suites["ts_a"].clone();
        assert!(v1.dir.starts_with(dir.path().join("snap")), "served from a snapshot");

        // Break the definition and change the script: v1 keeps serving, with v1's script.
        write(&root.join("suites/ts_a/suite.toml"), "name = \"ts_a\"\nbogus = 1\n");
        write(&root.join("suites/ts_a/init.sh"), "echo v2\n");
        let summary = catalog.reload("main", None);
        assert_eq!(summary.kept_last_good, ["ts_a"]);
        let definitions = catalog.definitions();
        assert_eq!(definitions.repository.suites["ts_a"], v1);
        assert!(definitions.errors.iter().any(|e| e.field == "bogus"));
        let ScriptSource::File(init) = &definitions.repository.suites["ts_a"].initialize else { panic!() };
        assert_eq!(std::fs::read_to_string(init).unwrap(), "echo v1\n");

        // Fixed: v2 serves; an unchanged reload changes nothing.
        write(&root.join("suites/ts_a/suite.toml"), &suite_toml("ts_a", ""));
        assert_eq!(catalog.reload("main", None).updated, ["ts_a"]);
        assert!(!catalog.reload("main", None).changed());

        // Deleted: removed.
        std::fs::remove_dir_all(root.join("suites/ts_a")).unwrap();
        assert_eq!(catalog.reload("main", None).removed, ["ts_a"]);
        assert!(catalog.definitions().repository.suites.is_empty());
    }

    #[test]
    fn a_name_in_two_repositories_is_served_from_the_first_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        add_suite(&dir.path().join("one"), "ts_x", "true\n");
        add_suite(&dir.path().join("two"), "ts_x", "true\n");
        let mut catalog = Catalog::new(
            &[repo(&dir.path().join("one"), "one"), repo(&dir.path().join("two"), "two")],
            dir.path().join("s"),
        );
        catalog.reload("one", Some("abc".into()));
        catalog.reload("two", None);
        let definitions = catalog.definitions();
        assert_eq!(definitions.origins["ts_x"], Origin { repo: "one".into(), commit: Some("abc".into()) });
        let error = definitions
            .errors
            .iter()
            .find(|e| e.message.contains("defined in repository `one` and in repository `two`"));
        assert!(error.is_some(), "{:?}", definitions.errors);
        assert_eq!(definitions.repos.len(), 2);
    }
}
