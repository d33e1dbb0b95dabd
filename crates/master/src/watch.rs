//! Keeps the definitions in service up to date with their repositories: a local folder is
//! watched with inotify (changes debounced), a git remote is fetched every poll interval.
//! Failures are logged, shown in the API, and retried; the last good version serves.

use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::catalog::DefinitionsService;
use crate::config::{GitSettings, RepoConfig, RepoSource};
use crate::git_repo::{GitCheckout, GitCredentials, GitRepoConfig, SyncOutcome};

/// Quiet time after the last file event before a reload: editors write in bursts.
const DEBOUNCE: Duration = Duration::from_millis(500);
/// A burst of events longer than this reloads anyway.
const DEBOUNCE_MAX: Duration = Duration::from_secs(5);
/// How often a missing or unwatchable folder is tried again.
const RETRY: Duration = Duration::from_secs(10);

/// Loads every local repository now, then watches all repositories in the background.
pub fn start(defs: &Arc<DefinitionsService>, repos: &[RepoConfig]) {
    for repo in repos {
        match &repo.source {
            RepoSource::Localfs { .. } => {
                defs.reload_repo(&repo.name, None);
                tokio::spawn(watch_folder(defs.clone(), repo.clone()));
            }
            RepoSource::Git(git) => {
                tokio::spawn(follow_git(defs.clone(), repo.clone(), git.clone()));
            }
        }
    }
}

/// Reloads a local repository whenever files in its suites or clusters folder change.
/// Only those two folders are watched: a repository root can hold much else (a build
/// tree, say) whose churn must not cause reloads.
async fn watch_folder(defs: Arc<DefinitionsService>, repo: RepoConfig) {
    loop {
        let (tx, mut events) = mpsc::unbounded_channel::<()>();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.send(());
            }
        });
        let mut watcher = match watcher {
            Ok(watcher) => watcher,
            Err(err) => {
                warn!(repo = %repo.name, error = %err, "cannot create a file watcher");
                defs.set_repo_error(&repo.name, Some(format!("cannot watch: {err}")));
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let folders = [repo.suites_dir(), repo.clusters_dir()];
        let mut watched = Vec::new();
        let mut failures = Vec::new();
        for folder in folders.iter().filter(|f| f.is_dir()) {
            match watcher.watch(folder, RecursiveMode::Recursive) {
                Ok(()) => watched.push(folder.clone()),
                Err(err) => failures.push(format!("cannot watch {}: {err}", folder.display())),
            }
        }
        if watched.is_empty() || !failures.is_empty() {
            let reason = if failures.is_empty() {
                format!("{} does not exist", folders[0].display())
            } else {
                failures.join("; ")
            };
            warn!(repo = %repo.name, %reason, "cannot watch the definitions; retrying");
            defs.set_repo_error(&repo.name, Some(reason));
            tokio::time::sleep(RETRY).await;
            defs.reload_repo(&repo.name, None);
            continue;
        }
        defs.set_repo_error(&repo.name, None);
        info!(repo = %repo.name, folders = ?watched, "watching definitions");
        // The folders may have changed between the first load and the watch.
        defs.reload_repo(&repo.name, None);
        while events.recv().await.is_some() {
            let burst_end = tokio::time::Instant::now() + DEBOUNCE_MAX;
            loop {
                match tokio::time::timeout(DEBOUNCE, events.recv()).await {
                    Ok(Some(())) if tokio::time::Instant::now() < burst_end => continue,
                    _ => break,
                }
            }
            defs.reload_repo(&repo.name, None);
            if watched.iter().any(|folder| !folder.is_dir()) {
                break; // A watched folder itself went away: watch again once it is back.
            }
        }
        drop(watcher);
        tokio::time::sleep(RETRY).await;
    }
}

fn git_config(repo: &RepoConfig, git: &GitSettings) -> GitRepoConfig {
    let credentials = match (&git.ssh_key, &git.https_token) {
        (Some(key), _) => GitCredentials::SshKey {
            private_key: key.clone(),
            public_key: git.ssh_public_key.clone(),
            passphrase: git.ssh_passphrase.clone(),
            username: git.username.clone(),
        },
        (None, Some(token)) => GitCredentials::HttpsToken { username: git.username.clone(), token: token.clone() },
        (None, None) => GitCredentials::None,
    };
    GitRepoConfig {
        name: repo.name.clone(),
        url: git.url.clone(),
        branch: git.branch.clone(),
        checkout: git.checkout.clone(),
        credentials,
    }
}

/// Clones a git repository, then fetches it every poll interval; reloads when it moved.
async fn follow_git(defs: Arc<DefinitionsService>, repo: RepoConfig, git: GitSettings) {
    let config = git_config(&repo, &git);
    let mut checkout: Option<GitCheckout> = None;
    loop {
        let step = match checkout.take() {
            None => {
                let config = config.clone();
                tokio::task::spawn_blocking(move || GitCheckout::open_or_clone(config)).await
            }
            Some(mut existing) => {
                let synced = tokio::task::spawn_blocking(move || {
                    let result = existing.sync();
                    (existing, result)
                })
                .await;
                match synced {
                    // A failed fetch keeps the checkout (and its last good definitions).
                    Ok((existing, Err(err))) => {
                        checkout = Some(existing);
                        Ok(Err(err))
                    }
                    Ok((existing, Ok(outcome))) => Ok(Ok((existing, outcome))),
                    Err(join) => Err(join),
                }
            }
        };
        match step {
            Ok(Ok((opened, outcome))) => {
                defs.set_repo_error(&repo.name, None);
                match outcome {
                    SyncOutcome::Unchanged { commit } => {
                        if defs.snapshot().repos.iter().any(|r| r.name == repo.name && r.last_load_ms.is_none()) {
                            defs.reload_repo(&repo.name, Some(commit));
                        }
                    }
                    SyncOutcome::Moved { from, to, forced, changed_paths } => {
                        info!(
                            repo = %repo.name,
                            from = from.as_deref().unwrap_or("-"),
                            to = %to,
                            forced,
                            changed = changed_paths.len(),
                            "git repository moved"
                        );
                        defs.reload_repo(&repo.name, Some(to));
                    }
                }
                checkout = Some(opened);
            }
            // The definitions loaded before keep serving; the next poll tries again.
            Ok(Err(err)) => {
                warn!(repo = %repo.name, error = %err, retry_in = ?git.poll_interval, "git repository not updated; the last good version serves");
                defs.set_repo_error(&repo.name, Some(err.to_string()));
            }
            Err(join) => {
                warn!(repo = %repo.name, error = %join, "git task failed");
                defs.set_repo_error(&repo.name, Some(format!("git task failed: {join}")));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(git.poll_interval) => {}
            _ = defs.git_fetch_requested() => info!(repo = %repo.name, "fetching now, as asked (SIGHUP)"),
        }
    }
}
