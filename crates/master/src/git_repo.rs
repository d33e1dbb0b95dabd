//! Definitions repositories that follow a git branch.
//!
//! A [`GitCheckout`] is a working tree at a configured path that mirrors one branch of a
//! remote. [`GitCheckout::open_or_clone`] clones on first start (or reopens the checkout a
//! previous run left), and [`GitCheckout::sync`] fetches the branch and, when it moved,
//! hard-resets the working tree to it: files deleted upstream disappear, local edits and
//! untracked files are discarded (ignored files are kept), and a force-push is followed.
//!
//! Everything here blocks (libgit2 does network and disk I/O); the master calls it through
//! `spawn_blocking`. A failed fetch changes nothing on disk, so the last good checkout keeps
//! serving until the next successful sync.
//!
//! Credentials come from the configuration only (no credential helpers, no agent): an SSH
//! key file or an HTTPS token. libgit2 calls the credentials callback again each time the
//! server rejects what it offered; [`CredentialState`] offers each secret once per fetch and
//! then gives up with a clear authentication error instead of looping. Tokens, passphrases and
//! passwords embedded in URLs never appear in errors or logs.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use git2::build::CheckoutBuilder;
use git2::{
    AutotagOption, Cred, CredentialType, ErrorCode, FetchOptions, Oid, ProxyOptions, RemoteCallbacks, Repository,
    RepositoryInitOptions,
};
use tracing::{debug, info, warn};

/// The name of the remote a checkout follows.
const REMOTE: &str = "origin";

/// How many times one fetch may ask for credentials before it is abandoned (a username
/// request, the secret, and some slack for transports that ask twice).
const MAX_CREDENTIAL_CALLS: u32 = 4;

/// How a repository authenticates to its remote.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum GitCredentials {
    /// No credentials: public or local remotes. A remote that asks for some fails with an
    /// authentication error.
    #[default]
    None,
    /// An SSH key pair (for `ssh://` and `user@host:path` URLs).
    SshKey {
        private_key: PathBuf,
        /// The public key; libssh2 derives it from the private key when absent.
        public_key: Option<PathBuf>,
        passphrase: Option<String>,
        /// Defaults to the URL's user, else `git`.
        username: Option<String>,
    },
    /// An HTTPS access token, sent as the password of basic authentication.
    HttpsToken {
        /// Defaults to the URL's user, else `x-access-token`.
        username: Option<String>,
        token: String,
    },
}

impl fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitCredentials::None => f.write_str("None"),
            GitCredentials::SshKey { private_key, public_key, passphrase, username } => f
                .debug_struct("SshKey")
                .field("private_key", private_key)
                .field("public_key", public_key)
                .field("passphrase", &passphrase.as_ref().map(|_| "<redacted>"))
                .field("username", username)
                .finish(),
            GitCredentials::HttpsToken { username, token: _ } => {
                f.debug_struct("HttpsToken").field("username", username).field("token", &"<redacted>").finish()
            }
        }
    }
}

/// One definitions repository to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRepoConfig {
    /// Names the repository in logs and errors.
    pub name: String,
    /// The remote: `https://…`, `ssh://…`, `user@host:path`, `file://…` or a local path.
    pub url: String,
    /// The branch to follow (a short name such as `main`).
    pub branch: String,
    /// The working tree the master reads definitions from.
    pub checkout: PathBuf,
    pub credentials: GitCredentials,
}

/// Which network operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitOperation {
    Clone,
    Fetch,
}

impl fmt::Display for GitOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GitOperation::Clone => "clone",
            GitOperation::Fetch => "fetch",
        })
    }
}

/// Why a clone, fetch or checkout failed. `url` is always shown with any password removed,
/// and `message` never contains a configured secret.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git repository {repo}: invalid configuration: {message}")]
    Config { repo: String, message: String },
    #[error("git repository {repo} ({url}): {operation} failed: {message}")]
    Transport { repo: String, url: String, operation: GitOperation, message: String },
    #[error("git repository {repo} ({url}): {operation} failed: authentication failed: {message}")]
    Auth { repo: String, url: String, operation: GitOperation, message: String },
    #[error("git repository {repo} ({url}): {operation} failed: branch {branch:?} does not exist on the remote")]
    BranchMissing { repo: String, url: String, operation: GitOperation, branch: String },
    #[error("git repository {repo} ({url}): cannot check out commit {commit} into {}: {message}", path.display())]
    Checkout { repo: String, url: String, path: PathBuf, commit: String, message: String },
    #[error(
        "git repository {repo} ({url}): {} is not an empty folder nor a git checkout ({reason}); \
         it is left untouched: empty or remove it, or configure another checkout path",
        path.display()
    )]
    NotACheckout { repo: String, url: String, path: PathBuf, reason: String },
    #[error(
        "git repository {repo} ({url}): the checkout at {} follows {found:?}, not the configured URL; \
         it is left untouched: remove it to clone anew, or fix the URL",
        path.display()
    )]
    OriginMismatch { repo: String, url: String, path: PathBuf, found: String },
    #[error("git repository {repo} ({url}): {what} in {}: {message}", path.display())]
    Local { repo: String, url: String, path: PathBuf, what: String, message: String },
}

/// What a clone or sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The branch has not moved; the working tree was left as it is.
    Unchanged { commit: String },
    /// The working tree now holds `to`.
    Moved {
        /// The commit the working tree held before; `None` on the first clone.
        from: Option<String>,
        to: String,
        /// `to` does not descend from `from` (history was rewritten, e.g. a force-push).
        forced: bool,
        /// Paths, relative to the checkout, that differ between `from` and `to` (added,
        /// modified or deleted), sorted; every file of `to` on the first clone.
        changed_paths: Vec<PathBuf>,
    },
}

impl SyncOutcome {
    /// The commit the working tree is at after the operation.
    pub fn commit(&self) -> &str {
        match self {
            SyncOutcome::Unchanged { commit } => commit,
            SyncOutcome::Moved { to, .. } => to,
        }
    }

    pub fn is_moved(&self) -> bool {
        matches!(self, SyncOutcome::Moved { .. })
    }
}

/// A working tree that follows one branch of a remote.
pub struct GitCheckout {
    config: GitRepoConfig,
    repo: Repository,
}

impl fmt::Debug for GitCheckout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitCheckout")
            .field("name", &self.config.name)
            .field("url", &redact_url(&self.config.url))
            .field("branch", &self.config.branch)
            .field("checkout", &self.config.checkout)
            .finish()
    }
}

impl GitCheckout {
    /// Opens the checkout at `config.checkout` and syncs it, or clones into it when the
    /// folder is missing or empty.
    ///
    /// An existing folder must be a non-bare git checkout whose `origin` is `config.url`;
    /// anything else is an error and the folder is left untouched. When reopening succeeds
    /// but the fetch that follows fails (network, auth, branch gone), the failure is logged
    /// and the last good checkout is returned as `Unchanged`; the next [`sync`](Self::sync)
    /// retries and reports it. A failed first clone removes what it wrote.
    pub fn open_or_clone(config: GitRepoConfig) -> Result<(GitCheckout, SyncOutcome), GitError> {
        validate(&config)?;
        let path = config.checkout.clone();
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                let empty = std::fs::read_dir(&path)
                    .map_err(|err| local(&config, &path, "cannot read the checkout folder", err))?
                    .next()
                    .is_none();
                if empty {
                    Self::clone_into(config, false)
                } else {
                    Self::reopen(config)
                }
            }
            Ok(_) => Err(GitError::NotACheckout {
                repo: config.name.clone(),
                url: redact_url(&config.url),
                path,
                reason: "it is not a folder".into(),
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Self::clone_into(config, true),
            Err(err) => Err(local(&config, &path, "cannot inspect the checkout folder", err)),
        }
    }

    /// The commit the working tree is at (hex), if any.
    pub fn commit(&self) -> Option<String> {
        head_commit(&self.repo).map(|oid| oid.to_string())
    }

    /// The configuration this checkout follows.
    pub fn config(&self) -> &GitRepoConfig {
        &self.config
    }

    /// Fetches the branch (a force refspec, so rewritten history is followed) and, if it
    /// moved, hard-resets the working tree to it. On error nothing in the working tree has
    /// changed, except for a failed checkout, which the next sync retries.
    pub fn sync(&mut self) -> Result<SyncOutcome, GitError> {
        self.sync_as(GitOperation::Fetch)
    }

    fn reopen(config: GitRepoConfig) -> Result<(GitCheckout, SyncOutcome), GitError> {
        let path = config.checkout.clone();
        let not_a_checkout = |reason: String| GitError::NotACheckout {
            repo: config.name.clone(),
            url: redact_url(&config.url),
            path: path.clone(),
            reason,
        };
        let repo = match Repository::open(&path) {
            Ok(repo) => repo,
            Err(err) => return Err(not_a_checkout(format!("not a git repository: {}", err.message()))),
        };
        if repo.is_bare() {
            return Err(not_a_checkout("it is a bare repository".into()));
        }
        let same_root = match (repo.workdir().map(std::fs::canonicalize), std::fs::canonicalize(&path)) {
            (Some(Ok(workdir)), Ok(wanted)) => workdir == wanted,
            _ => false,
        };
        if !same_root {
            return Err(not_a_checkout("it is not the top folder of a git working tree".into()));
        }
        let found = match repo.find_remote(REMOTE) {
            Ok(remote) => remote.url().map(str::to_owned).unwrap_or_default(),
            Err(_) => return Err(not_a_checkout(format!("it has no remote named {REMOTE}"))),
        };
        if !same_url(&found, &config.url) {
            return Err(GitError::OriginMismatch {
                repo: config.name.clone(),
                url: redact_url(&config.url),
                path,
                found: redact_url(&found),
            });
        }
        let mut checkout = GitCheckout { config, repo };
        match checkout.sync_as(GitOperation::Fetch) {
            Ok(outcome) => Ok((checkout, outcome)),
            Err(err) => match checkout.commit() {
                Some(commit) => {
                    warn!(
                        repo = %checkout.config.name,
                        error = %err,
                        commit = %commit,
                        "cannot sync the git repository; serving the checkout left by the last run"
                    );
                    Ok((checkout, SyncOutcome::Unchanged { commit }))
                }
                None => Err(err),
            },
        }
    }

    fn clone_into(config: GitRepoConfig, created: bool) -> Result<(GitCheckout, SyncOutcome), GitError> {
        let path = config.checkout.clone();
        let mut options = RepositoryInitOptions::new();
        options.no_reinit(true).mkdir(true).mkpath(true).initial_head(&config.branch).origin_url(&config.url);
        let repo = match Repository::init_opts(&path, &options) {
            Ok(repo) => repo,
            Err(err) => {
                remove_clone_leftovers(&path, created);
                return Err(local(&config, &path, "cannot create the git repository", err.message()));
            }
        };
        let mut checkout = GitCheckout { config, repo };
        match checkout.sync_as(GitOperation::Clone) {
            Ok(outcome) => {
                info!(repo = %checkout.config.name, commit = %outcome.commit(), path = %path.display(), "git repository cloned");
                Ok((checkout, outcome))
            }
            Err(err) => {
                drop(checkout);
                remove_clone_leftovers(&path, created);
                Err(err)
            }
        }
    }

    fn sync_as(&mut self, operation: GitOperation) -> Result<SyncOutcome, GitError> {
        let target = self.fetch(operation)?;
        let from = head_commit(&self.repo);
        if from == Some(target) {
            debug!(repo = %self.config.name, commit = %target, "git branch unchanged");
            return Ok(SyncOutcome::Unchanged { commit: target.to_string() });
        }
        let (changed_paths, forced) = self.compare(from, target)?;
        self.move_to(target)?;
        let outcome =
            SyncOutcome::Moved { from: from.map(|oid| oid.to_string()), to: target.to_string(), forced, changed_paths };
        if operation == GitOperation::Fetch {
            info!(
                repo = %self.config.name,
                from = ?from.map(|oid| oid.to_string()),
                to = %target,
                forced,
                "git branch moved; checkout updated"
            );
        }
        Ok(outcome)
    }

    /// Fetches the branch into `refs/remotes/origin/<branch>` and returns the commit the
    /// remote advertises for it.
    fn fetch(&self, operation: GitOperation) -> Result<Oid, GitError> {
        let config = &self.config;
        let branch_ref = format!("refs/heads/{}", config.branch);
        let refspec = format!("+{branch_ref}:refs/remotes/{REMOTE}/{}", config.branch);
        let state = RefCell::new(CredentialState::new(&config.credentials));
        let transport_error = |err: git2::Error| {
            let failure = state.borrow().failure.clone();
            classify(config, operation, err, failure)
        };
        let mut remote = self.repo.find_remote(REMOTE).map_err(&transport_error)?;
        {
            let mut callbacks = RemoteCallbacks::new();
            callbacks.credentials(|url, username, allowed| state.borrow_mut().provide(url, username, allowed));
            let mut proxy = ProxyOptions::new();
            proxy.auto();
            let mut options = FetchOptions::new();
            options.remote_callbacks(callbacks).proxy_options(proxy).download_tags(AutotagOption::None);
            remote.fetch(&[refspec.as_str()], Some(&mut options), None).map_err(&transport_error)?;
        }
        let advertised = remote.list().map_err(&transport_error)?;
        let Some(head) = advertised.iter().find(|head| head.name() == branch_ref) else {
            return Err(GitError::BranchMissing {
                repo: config.name.clone(),
                url: redact_url(&config.url),
                operation,
                branch: config.branch.clone(),
            });
        };
        let target = head.oid();
        if self.repo.find_commit(target).is_err() {
            return Err(GitError::Transport {
                repo: config.name.clone(),
                url: redact_url(&config.url),
                operation,
                message: format!(
                    "the remote's branch {} points at {target}, which is not a commit that was fetched",
                    config.branch
                ),
            });
        }
        Ok(target)
    }

    /// The paths that differ between the two commits, and whether `to` rewrote history.
    fn compare(&self, from: Option<Oid>, to: Oid) -> Result<(Vec<PathBuf>, bool), GitError> {
        let repo = &self.repo;
        let failed = |what: &str, err: git2::Error| local(&self.config, &self.config.checkout, what, err.message());
        let new_tree =
            repo.find_commit(to).and_then(|c| c.tree()).map_err(|err| failed("cannot read the new commit", err))?;
        let old_tree = from.and_then(|oid| repo.find_commit(oid).and_then(|c| c.tree()).ok());
        let forced = match from {
            None => false,
            Some(old) => !repo.graph_descendant_of(to, old).unwrap_or(false),
        };
        let diff = repo
            .diff_tree_to_tree(old_tree.as_ref(), Some(&new_tree), None)
            .map_err(|err| failed("cannot compare the old and new commits", err))?;
        let mut paths = BTreeSet::new();
        for delta in diff.deltas() {
            paths.extend(delta.old_file().path().map(Path::to_path_buf));
            paths.extend(delta.new_file().path().map(Path::to_path_buf));
        }
        Ok((paths.into_iter().collect(), forced))
    }

    /// Makes the working tree, the index, the local branch and HEAD all `to`.
    fn move_to(&self, to: Oid) -> Result<(), GitError> {
        let repo = &self.repo;
        let failed = |err: git2::Error| GitError::Checkout {
            repo: self.config.name.clone(),
            url: redact_url(&self.config.url),
            path: self.config.checkout.clone(),
            commit: to.to_string(),
            message: err.message().to_owned(),
        };
        let commit = repo.find_commit(to).map_err(failed)?;
        let tree = commit.tree().map_err(failed)?;
        // The baseline is HEAD's tree, the one the working tree holds now: files it has and
        // `to` lacks are removed. `force` discards local edits, `remove_untracked` files
        // added by hand (ignored files stay).
        let mut checkout = CheckoutBuilder::new();
        checkout.force().remove_untracked(true);
        repo.checkout_tree(tree.as_object(), Some(&mut checkout)).map_err(failed)?;
        let branch_ref = format!("refs/heads/{}", self.config.branch);
        repo.reference(&branch_ref, to, true, "xrdtest: follow the remote branch").map_err(failed)?;
        repo.set_head(&branch_ref).map_err(failed)?;
        let mut index = repo.index().map_err(failed)?;
        index.read_tree(&tree).map_err(failed)?;
        index.write().map_err(failed)?;
        let _ = repo.cleanup_state();
        Ok(())
    }
}

fn validate(config: &GitRepoConfig) -> Result<(), GitError> {
    let invalid = |message: String| GitError::Config { repo: config.name.clone(), message };
    if config.url.trim().is_empty() {
        return Err(invalid("the URL is empty".into()));
    }
    if config.branch.is_empty()
        || config.branch.starts_with("refs/")
        || !git2::Reference::is_valid_name(&format!("refs/heads/{}", config.branch))
    {
        return Err(invalid(format!("{:?} is not a valid branch name", config.branch)));
    }
    if config.checkout.as_os_str().is_empty() {
        return Err(invalid("the checkout path is empty".into()));
    }
    match &config.credentials {
        GitCredentials::HttpsToken { token, .. } if token.is_empty() => Err(invalid("the HTTPS token is empty".into())),
        GitCredentials::SshKey { private_key, .. } if private_key.as_os_str().is_empty() => {
            Err(invalid("the SSH private key path is empty".into()))
        }
        _ => Ok(()),
    }
}

fn head_commit(repo: &Repository) -> Option<Oid> {
    repo.head().ok()?.peel_to_commit().ok().map(|commit| commit.id())
}

fn local(config: &GitRepoConfig, path: &Path, what: &str, err: impl fmt::Display) -> GitError {
    GitError::Local {
        repo: config.name.clone(),
        url: redact_url(&config.url),
        path: path.to_path_buf(),
        what: what.to_owned(),
        message: scrub(&err.to_string(), config),
    }
}

/// Turns a failed network operation into an error, as an authentication error when the
/// credentials callback gave up or libgit2 says so.
fn classify(config: &GitRepoConfig, operation: GitOperation, err: git2::Error, failure: Option<String>) -> GitError {
    let repo = config.name.clone();
    let url = redact_url(&config.url);
    let message = scrub(err.message(), config);
    if let Some(failure) = failure {
        return GitError::Auth { repo, url, operation, message: scrub(&failure, config) };
    }
    if err.code() == ErrorCode::Auth {
        return GitError::Auth { repo, url, operation, message };
    }
    if err.code() == ErrorCode::Certificate && err.class() == git2::ErrorClass::Ssh {
        let message = format!(
            "{message} (the server's SSH host key must be in ~/.ssh/known_hosts of the user the master runs as)"
        );
        return GitError::Transport { repo, url, operation, message };
    }
    GitError::Transport { repo, url, operation, message }
}

/// Removes what a failed first clone wrote into a folder that was missing or empty.
fn remove_clone_leftovers(path: &Path, created: bool) {
    let result = if created {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::read_dir(path).and_then(|entries| {
            for entry in entries {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    std::fs::remove_dir_all(entry.path())?;
                } else {
                    std::fs::remove_file(entry.path())?;
                }
            }
            Ok(())
        })
    };
    if let Err(err) = result {
        if err.kind() != std::io::ErrorKind::NotFound {
            warn!(path = %path.display(), error = %err, "cannot remove what a failed clone left");
        }
    }
}

/// Whether two remote URLs name the same remote (ignoring a trailing slash).
fn same_url(a: &str, b: &str) -> bool {
    a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/')
}

/// The URL with the password of its user info, if any, replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let Some(at) = authority.rfind('@') else { return url.to_owned() };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else { return url.to_owned() };
    format!("{}{}:***{}", &url[..authority_start], &userinfo[..colon], &url[authority_start + at..])
}

/// Removes configured secrets (the token, the key passphrase, a password in the URL) from a
/// message.
fn scrub(message: &str, config: &GitRepoConfig) -> String {
    let mut secrets: Vec<&str> = Vec::new();
    match &config.credentials {
        GitCredentials::HttpsToken { token, .. } => secrets.push(token),
        GitCredentials::SshKey { passphrase: Some(passphrase), .. } => secrets.push(passphrase),
        _ => {}
    }
    if let Some(password) = url_password(&config.url) {
        secrets.push(password);
    }
    let mut message = message.replace(&config.url, &redact_url(&config.url));
    for secret in secrets.into_iter().filter(|secret| !secret.is_empty()) {
        message = message.replace(secret, "***");
    }
    message
}

fn url_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    Some(&userinfo[userinfo.find(':')? + 1..])
}

/// Answers libgit2's credential requests during one fetch: each secret is offered once, and
/// a request after that (the server rejected it) or past [`MAX_CREDENTIAL_CALLS`] fails,
/// recording why in `failure`.
pub(crate) struct CredentialState<'a> {
    credentials: &'a GitCredentials,
    calls: u32,
    offered_secret: bool,
    pub(crate) failure: Option<String>,
}

impl<'a> CredentialState<'a> {
    pub(crate) fn new(credentials: &'a GitCredentials) -> Self {
        CredentialState { credentials, calls: 0, offered_secret: false, failure: None }
    }

    pub(crate) fn provide(
        &mut self,
        _url: &str,
        username_from_url: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        self.calls += 1;
        if self.calls > MAX_CREDENTIAL_CALLS {
            return self.fail(format!("gave up after {MAX_CREDENTIAL_CALLS} credential requests"));
        }
        match self.credentials {
            GitCredentials::None => self.fail(format!(
                "the remote asks for credentials ({}) but none are configured",
                describe_allowed(allowed)
            )),
            GitCredentials::SshKey { private_key, public_key, passphrase, username } => {
                let user = username.as_deref().or(username_from_url).unwrap_or("git");
                if allowed.contains(CredentialType::SSH_KEY) {
                    if self.offered_secret {
                        return self.fail(format!(
                            "the remote rejected the SSH key {} for user {user}",
                            private_key.display()
                        ));
                    }
                    if !private_key.is_file() {
                        return self
                            .fail(format!("the SSH private key {} is not a readable file", private_key.display()));
                    }
                    self.offered_secret = true;
                    Cred::ssh_key(user, public_key.as_deref(), private_key, passphrase.as_deref())
                } else if allowed.contains(CredentialType::USERNAME) {
                    Cred::username(user)
                } else {
                    self.fail(format!("an SSH key is configured but the remote asks for {}", describe_allowed(allowed)))
                }
            }
            GitCredentials::HttpsToken { username, token } => {
                let user = username.as_deref().or(username_from_url).unwrap_or("x-access-token");
                if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                    if self.offered_secret {
                        return self.fail(format!("the remote rejected the token for user {user}"));
                    }
                    self.offered_secret = true;
                    Cred::userpass_plaintext(user, token)
                } else if allowed.contains(CredentialType::USERNAME) {
                    Cred::username(user)
                } else {
                    self.fail(format!(
                        "an HTTPS token is configured but the remote asks for {}",
                        describe_allowed(allowed)
                    ))
                }
            }
        }
    }

    fn fail(&mut self, message: String) -> Result<Cred, git2::Error> {
        let error = git2::Error::from_str(&message);
        self.failure = Some(message);
        Err(error)
    }
}

fn describe_allowed(allowed: CredentialType) -> String {
    let names = [
        (CredentialType::USER_PASS_PLAINTEXT, "user name and password"),
        (CredentialType::SSH_KEY, "SSH key"),
        (CredentialType::SSH_MEMORY, "SSH key in memory"),
        (CredentialType::SSH_CUSTOM, "custom SSH signature"),
        (CredentialType::DEFAULT, "default credentials"),
        (CredentialType::SSH_INTERACTIVE, "interactive SSH"),
        (CredentialType::USERNAME, "user name"),
    ];
    let found: Vec<&str> = names.iter().filter(|(flag, _)| allowed.contains(*flag)).map(|(_, name)| *name).collect();
    if found.is_empty() {
        "nothing known".to_owned()
    } else {
        found.join(" or ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(username: Option<&str>) -> GitCredentials {
        GitCredentials::HttpsToken { username: username.map(str::to_owned), token: "s3cr3t-token".into() }
    }

    #[test]
    fn https_token_is_offered_once_then_the_callback_gives_up() {
        let credentials = token(None);
        let mut state = CredentialState::new(&credentials);
        let cred = state.provide("https://example.invalid/r.git", None, CredentialType::USER_PASS_PLAINTEXT).unwrap();
        assert!(cred.has_username());
        assert_eq!(cred.credtype(), CredentialType::USER_PASS_PLAINTEXT.bits());
        assert!(state.failure.is_none());
        // libgit2 asks again when the server rejected the token: no loop, a clear failure.
        let err = state
            .provide("https://example.invalid/r.git", None, CredentialType::USER_PASS_PLAINTEXT)
            .err()
            .expect("the callback refused");
        assert!(err.message().contains("rejected the token for user x-access-token"), "{}", err.message());
        assert!(!err.message().contains("s3cr3t"));
        assert_eq!(state.failure.as_deref(), Some(err.message()));
    }

    #[test]
    fn https_token_user_comes_from_config_then_url_then_default() {
        for (configured, from_url, expected) in
            [(Some("bot"), Some("alice"), "bot"), (None, Some("alice"), "alice"), (None, None, "x-access-token")]
        {
            let credentials = token(configured);
            let mut state = CredentialState::new(&credentials);
            state.provide("https://h/r", from_url, CredentialType::USER_PASS_PLAINTEXT).unwrap();
            let err = state
                .provide("https://h/r", from_url, CredentialType::USER_PASS_PLAINTEXT)
                .err()
                .expect("the callback refused");
            assert!(err.message().ends_with(&format!("for user {expected}")), "{}", err.message());
        }
    }

    #[test]
    fn https_token_answers_a_username_request_and_refuses_ssh() {
        let credentials = token(Some("bot"));
        let mut state = CredentialState::new(&credentials);
        let cred = state.provide("https://h/r", None, CredentialType::USERNAME).unwrap();
        assert_eq!(cred.credtype(), CredentialType::USERNAME.bits());
        let err = state.provide("ssh://h/r", None, CredentialType::SSH_KEY).err().expect("the callback refused");
        assert!(
            err.message().contains("HTTPS token is configured but the remote asks for SSH key"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn the_number_of_requests_is_bounded() {
        let credentials = token(None);
        let mut state = CredentialState::new(&credentials);
        let mut errors = 0;
        for _ in 0..100 {
            if state.provide("https://h/r", None, CredentialType::USERNAME).is_err() {
                errors += 1;
            }
        }
        assert_eq!(errors, 100 - MAX_CREDENTIAL_CALLS);
        assert!(state.failure.unwrap().contains("gave up"));
    }

    #[test]
    fn no_credentials_fail_at_once() {
        let credentials = GitCredentials::None;
        let mut state = CredentialState::new(&credentials);
        let err = state
            .provide("https://h/r", None, CredentialType::USER_PASS_PLAINTEXT | CredentialType::DEFAULT)
            .err()
            .expect("the callback refused");
        assert!(err.message().contains("none are configured"), "{}", err.message());
        assert!(err.message().contains("user name and password or default credentials"), "{}", err.message());
    }

    #[test]
    fn ssh_key_username_then_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, "not really a key").unwrap();
        let credentials = GitCredentials::SshKey {
            private_key: key.clone(),
            public_key: None,
            passphrase: Some("pass".into()),
            username: None,
        };
        let mut state = CredentialState::new(&credentials);
        let cred = state.provide("ssh://h/r", None, CredentialType::USERNAME).unwrap();
        assert_eq!(cred.credtype(), CredentialType::USERNAME.bits());
        let cred = state.provide("ssh://git@h/r", Some("deploy"), CredentialType::SSH_KEY).unwrap();
        assert_eq!(cred.credtype(), CredentialType::SSH_KEY.bits());
        let err = state
            .provide("ssh://deploy@h/r", Some("deploy"), CredentialType::SSH_KEY)
            .err()
            .expect("the callback refused");
        assert!(err.message().contains("rejected the SSH key"), "{}", err.message());
        assert!(err.message().ends_with("for user deploy"), "{}", err.message());
    }

    #[test]
    fn ssh_key_missing_file_is_reported() {
        let credentials = GitCredentials::SshKey {
            private_key: "/nonexistent/id_rsa".into(),
            public_key: None,
            passphrase: None,
            username: Some("git".into()),
        };
        let mut state = CredentialState::new(&credentials);
        let err = state.provide("ssh://h/r", None, CredentialType::SSH_KEY).err().expect("the callback refused");
        assert!(err.message().contains("/nonexistent/id_rsa is not a readable file"), "{}", err.message());
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(redact_url("https://bot:tok@example.org/a/b.git"), "https://bot:***@example.org/a/b.git");
        assert_eq!(redact_url("https://bot@example.org/a.git"), "https://bot@example.org/a.git");
        assert_eq!(redact_url("https://example.org/a@b.git"), "https://example.org/a@b.git");
        assert_eq!(redact_url("git@example.org:a/b.git"), "git@example.org:a/b.git");
        assert_eq!(redact_url("/srv/git/defs.git"), "/srv/git/defs.git");
        assert_eq!(url_password("https://bot:tok@example.org/x"), Some("tok"));
        assert_eq!(url_password("https://example.org/x"), None);
    }

    #[test]
    fn secrets_are_scrubbed_and_debug_redacts() {
        let config = GitRepoConfig {
            name: "defs".into(),
            url: "https://bot:urlpass@example.org/defs.git".into(),
            branch: "main".into(),
            checkout: "/tmp/x".into(),
            credentials: token(None),
        };
        let scrubbed = scrub("failed for https://bot:urlpass@example.org/defs.git with s3cr3t-token", &config);
        assert_eq!(scrubbed, "failed for https://bot:***@example.org/defs.git with ***");
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cr3t") && debug.contains("<redacted>"), "{debug}");
        let err = classify(&config, GitOperation::Fetch, git2::Error::from_str("urlpass s3cr3t-token"), None);
        let shown = err.to_string();
        assert!(!shown.contains("urlpass") && !shown.contains("s3cr3t"), "{shown}");
        assert!(
            shown.starts_with("git repository defs (https://bot:***@example.org/defs.git): fetch failed"),
            "{shown}"
        );
    }

    #[test]
    fn invalid_branch_names_are_configuration_errors() {
        for branch in ["", "a..b", "refs/heads/main", "bad name", "x~1"] {
            let config = GitRepoConfig {
                name: "defs".into(),
                url: "/srv/defs.git".into(),
                branch: branch.into(),
                checkout: "/tmp/x".into(),
                credentials: GitCredentials::None,
            };
            assert!(matches!(validate(&config), Err(GitError::Config { .. })), "{branch:?}");
        }
    }

    #[test]
    fn a_checkout_can_move_to_a_blocking_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<GitCheckout>();
        assert_send::<GitError>();
    }
}
