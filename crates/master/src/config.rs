//! The master's configuration file (`master.toml`). Every field is optional except the
//! connection secret; `docs/master-config.md` documents each one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use xrdtest_defs::units::{parse_duration, parse_size};

use crate::alerts::{SmtpConfig, SmtpTls};
use crate::notify::{WebhookConfig, WebhookFormat};
use xrdtest_defs::NotifyPolicy;

/// Where the web dashboard's cookie-signing key is kept, inside `state_dir`, by default.
pub const DEFAULT_COOKIE_KEY_FILE: &str = "web-cookie.key";

/// The checked configuration the master runs with.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Where slaves and hypervisors connect (TLS). XrdTest used port 20000.
    pub listen: SocketAddr,
    /// The HTTP JSON API (and later the dashboard).
    pub web_listen: SocketAddr,
    /// sled store, CA and work files.
    pub state_dir: PathBuf,
    /// The enrollment secret: a peer that presents it (and a key) is enrolled
    /// (`enroll = "secret"`); in `peer_auth = "shared-secret"` it admits by itself. `None`
    /// only with `enroll = "approve"`.
    pub secret: Option<String>,
    /// How a peer without a certificate gets one (`enroll`).
    pub enroll: EnrollMode,
    /// `peer_auth`: certificates (the default), or the shared-secret compatibility mode.
    pub peer_auth: PeerAuthMode,
    /// Token required by write calls of the API (run, cancel). `None`: writes are refused.
    pub api_token: Option<String>,
    /// Where definitions come from (XrdTest's `test-repos`); watched for changes.
    pub repos: Vec<RepoConfig>,
    /// Folders outside the repositories that `file:///` scripts may name (none by default:
    /// absolute script paths are refused).
    pub script_dirs: Vec<PathBuf>,
    /// Hosts `http://` (not https) scripts may come from (none by default).
    pub http_script_hosts: Vec<String>,
    /// Whether suites' schedules start sessions (XrdTest's `[scheduler] enabled`).
    pub scheduler_enabled: bool,
    /// Which finished sessions are pruned (`[retention]`); off unless set.
    pub retention: RetentionConfig,
    /// Where alert mails go out; `None`: no mail.
    pub smtp: Option<SmtpConfig>,
    /// Webhooks about finished sessions (`[[notify]]`), in file order.
    pub notify: Vec<WebhookConfig>,
    /// Base URL of the dashboard for links to sessions (webhooks, and mails unless
    /// `smtp.dashboard_url` says otherwise): the top-level `dashboard_url`, else
    /// `smtp.dashboard_url`. No trailing `/`.
    pub dashboard_url: Option<String>,
    /// How long a session waits for its slaves to connect before it fails.
    pub slave_wait: Duration,
    /// How long a slave that dropped mid-stage may take to come back before the stage fails.
    pub reconnect_grace: Duration,
    pub heartbeat_interval: Duration,
    /// Per stage and slave: output past this is dropped (and counted).
    pub output_limit_bytes: u64,
    /// Per collected log file: only its last this-many bytes are kept.
    pub log_limit_bytes: u64,
    /// Output and logs are refused while the store's disk has less than this free, so
    /// session records can always be written (`store_reserve`).
    pub store_reserve_bytes: u64,
    pub max_frame_bytes: usize,
    /// Extra names for the master's TLS certificate (besides `xrdtest-master`).
    pub tls_names: Vec<String>,
    /// The value of `@proto@` in scripts.
    pub proto_tag: String,
    /// The dashboard's logins and HTTPS (`[web]`).
    pub web: WebConfig,
    /// Cluster sessions on hypervisors (`[clusters]`).
    pub clusters: ClustersConfig,
}

/// `[retention]` (the retention task applies it); every rule is off unless set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionConfig {
    pub keep_days: Option<u64>,
    pub keep_per_suite: Option<usize>,
    pub min_free_disk_bytes: Option<u64>,
    /// How often the task looks (default 1h).
    pub every: Duration,
}

impl RetentionConfig {
    pub fn is_on(&self) -> bool {
        self.keep_days.is_some() || self.keep_per_suite.is_some() || self.min_free_disk_bytes.is_some()
    }
}

/// `enroll`: how a new slave or hypervisor gets its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollMode {
    /// With the enrollment secret, at once; without it, by an operator's approval.
    Secret,
    /// Only by an operator's approval (`xrdtest peers approve NAME`).
    Approve,
}

/// `peer_auth`: what admits a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAuthMode {
    /// Its certificate, bound to its name and role.
    Certificate,
    /// Compatibility mode: the secret alone admits any name, as before certificates.
    SharedSecret,
}

/// How the master drives clusters on hypervisors (`[clusters]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClustersConfig {
    /// From StartCluster sent to `Active` reported.
    pub start_timeout: Duration,
    /// From `Active` to every host's slave connected: VMs boot slowly under emulation.
    pub slave_wait: Duration,
    /// From StopCluster sent to `Stopped` reported.
    pub stop_timeout: Duration,
    /// The address `master.<domain>` resolves to inside cluster networks. `None`: the
    /// master's address on the hypervisor's connection, or the bridge address when that is
    /// a loopback address (master and hypervisor on one host).
    pub master_address: Option<std::net::IpAddr>,
}

/// The dashboard's access rules and transport (`[web]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// The login password (XrdTest's `suite_run_pass`). `None`: nobody can log in, and the
    /// dashboard refuses every write action (start, cancel).
    pub password: Option<String>,
    /// Whether reading the pages needs a login too. The slave-facing files (`/files/...`,
    /// `/ca.crt`) never do.
    pub require_login: bool,
    /// The key that signs session cookies: created (32 random bytes, mode 0600) when missing,
    /// reused afterwards, so logins survive a restart.
    pub cookie_key_file: PathBuf,
    /// How long a login lasts.
    pub session_lifetime: Duration,
    pub tls: WebTls,
    /// Host names (or addresses) the dashboard answers to besides loopback ones
    /// (`[web] allowed_hosts`); empty: any, unless `web_listen` is a loopback address.
    pub allowed_hosts: Vec<String>,
}

/// Whether and how `web_listen` speaks HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebTls {
    /// Plain HTTP.
    None,
    /// A certificate issued at every start by the master's CA, for `xrdtest-master` and
    /// `tls_names`.
    Ca,
    /// A certificate chain and key from PEM files.
    Files { cert_file: PathBuf, key_file: PathBuf },
}

/// One definitions repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoConfig {
    /// Unique among the repositories; shown in the API and logs.
    pub name: String,
    pub source: RepoSource,
    /// The suites and clusters folders, relative to the repository's root.
    pub suites_path: PathBuf,
    pub clusters_path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoSource {
    /// A folder on the master's disk, watched with inotify.
    Localfs { path: PathBuf },
    /// A git remote, cloned into `checkout` and fetched every `poll_interval`.
    Git(GitSettings),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSettings {
    pub url: String,
    pub branch: String,
    pub checkout: PathBuf,
    pub poll_interval: Duration,
    pub ssh_key: Option<PathBuf>,
    pub ssh_public_key: Option<PathBuf>,
    pub ssh_passphrase: Option<String>,
    pub username: Option<String>,
    pub https_token: Option<String>,
}

impl RepoConfig {
    /// The folder the repository's files are in (the checkout, for git).
    pub fn root(&self) -> &Path {
        match &self.source {
            RepoSource::Localfs { path } => path,
            RepoSource::Git(git) => &git.checkout,
        }
    }

    pub fn suites_dir(&self) -> PathBuf {
        self.root().join(&self.suites_path)
    }

    pub fn clusters_dir(&self) -> PathBuf {
        self.root().join(&self.clusters_path)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepo {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    path: Option<PathBuf>,
    url: Option<String>,
    branch: Option<String>,
    checkout: Option<PathBuf>,
    poll_interval: Option<String>,
    suites_path: Option<PathBuf>,
    clusters_path: Option<PathBuf>,
    ssh_key: Option<PathBuf>,
    ssh_public_key: Option<PathBuf>,
    ssh_passphrase: Option<String>,
    ssh_passphrase_file: Option<PathBuf>,
    username: Option<String>,
    https_token: Option<String>,
    https_token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawScheduler {
    enabled: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    keep_days: Option<u64>,
    keep_per_suite: Option<usize>,
    min_free_disk: Option<String>,
    every: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: Option<String>,
    port: Option<u16>,
    tls: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    from: Option<String>,
    dashboard_url: Option<String>,
    attempts: Option<u32>,
    retry_delay: Option<String>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    url: Option<String>,
    format: Option<String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    on: Option<String>,
    suites: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    password: Option<String>,
    password_file: Option<PathBuf>,
    require_login: Option<bool>,
    cookie_key_file: Option<PathBuf>,
    session_lifetime: Option<String>,
    tls: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    allowed_hosts: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawClusters {
    start_timeout: Option<String>,
    slave_wait: Option<String>,
    stop_timeout: Option<String>,
    master_address: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    repos: Option<Vec<RawRepo>>,
    script_dirs: Option<Vec<PathBuf>>,
    http_script_hosts: Option<Vec<String>>,
    clusters: Option<RawClusters>,
    scheduler: Option<RawScheduler>,
    retention: Option<RawRetention>,
    smtp: Option<RawSmtp>,
    notify: Option<Vec<RawNotify>>,
    web: Option<RawWeb>,
    listen: Option<String>,
    web_listen: Option<String>,
    state_dir: Option<PathBuf>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    enroll: Option<String>,
    peer_auth: Option<String>,
    api_token: Option<String>,
    api_token_file: Option<PathBuf>,
    definitions: Option<PathBuf>,
    suites_path: Option<PathBuf>,
    clusters_path: Option<PathBuf>,
    slave_wait: Option<String>,
    reconnect_grace: Option<String>,
    heartbeat_interval: Option<String>,
    output_limit: Option<String>,
    log_limit: Option<String>,
    store_reserve: Option<String>,
    max_frame: Option<String>,
    tls_names: Option<Vec<String>>,
    proto_tag: Option<String>,
    dashboard_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

pub const DEFAULT_LISTEN: &str = "0.0.0.0:20000";
pub const DEFAULT_WEB_LISTEN: &str = "127.0.0.1:20080";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/xrdtest";
pub const DEFAULT_DEFINITIONS: &str = "/var/lib/xrdtest/definitions";

impl MasterConfig {
    /// Reads and checks a configuration file. Relative paths in it are relative to the file.
    pub fn load(path: &Path) -> Result<MasterConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read: {e}")))?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        MasterConfig::from_raw(raw, base).map_err(invalid)
    }

    /// A configuration from TOML text, relative paths taken from `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<MasterConfig, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        MasterConfig::from_raw(raw, base)
    }

    fn from_raw(raw: RawConfig, base: &Path) -> Result<MasterConfig, String> {
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let address = |value: Option<String>, default: &str, field: &str| -> Result<SocketAddr, String> {
            let text = value.unwrap_or_else(|| default.to_string());
            text.parse().map_err(|_| format!("`{field}`: `{text}` is not an address:port"))
        };
        let duration = |value: Option<String>, default: Duration, field: &str| -> Result<Duration, String> {
            match value {
                Some(text) => parse_duration(&text).map_err(|e| format!("`{field}`: {e}")),
                None => Ok(default),
            }
        };
        let size = |value: Option<String>, default: u64, field: &str| -> Result<u64, String> {
            match value {
                Some(text) => parse_size(&text).map_err(|e| format!("`{field}`: {e}")),
                None => Ok(default),
            }
        };
        let read_secret =
            |inline: Option<String>, file: Option<PathBuf>, field: &str| -> Result<Option<String>, String> {
                match (inline, file) {
                    (Some(_), Some(_)) => Err(format!("give `{field}` or `{field}_file`, not both")),
                    (Some(value), None) => Ok(Some(value)),
                    (None, Some(file)) => {
                        let file = resolve(file);
                        std::fs::read_to_string(&file)
                            .map(|s| Some(s.trim().to_string()))
                            .map_err(|e| format!("`{field}_file` {}: {e}", file.display()))
                    }
                    (None, None) => Ok(None),
                }
            };
        let secret = read_secret(raw.secret, raw.secret_file, "secret")?.filter(|s| !s.is_empty());
        let enroll = match raw.enroll.as_deref().unwrap_or("secret") {
            "secret" => EnrollMode::Secret,
            "approve" => EnrollMode::Approve,
            other => return Err(format!("`enroll`: unknown mode `{other}`: secret or approve")),
        };
        let peer_auth = match raw.peer_auth.as_deref().unwrap_or("certificate") {
            "certificate" => PeerAuthMode::Certificate,
            "shared-secret" => PeerAuthMode::SharedSecret,
            other => return Err(format!("`peer_auth`: unknown mode `{other}`: certificate or shared-secret")),
        };
        if secret.is_none() && (enroll == EnrollMode::Secret || peer_auth == PeerAuthMode::SharedSecret) {
            return Err("`secret` (or `secret_file`) is required: the enrollment secret new slaves and hypervisors \
                        present (or set `enroll = \"approve\"` to enroll each one by hand)"
                .into());
        }
        let api_token = read_secret(raw.api_token, raw.api_token_file, "api_token")?.filter(|s| !s.is_empty());
        let state_dir = resolve(raw.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into()));
        let repos = match raw.repos {
            Some(repos) => {
                if raw.definitions.is_some() || raw.suites_path.is_some() || raw.clusters_path.is_some() {
                    return Err("give either `definitions` (one local folder) or [[repos]], not both".into());
                }
                let mut checked: Vec<RepoConfig> = Vec::new();
                for (index, repo) in repos.into_iter().enumerate() {
                    let repo = repo_config(repo, index, &state_dir, &resolve, &read_secret, &duration)?;
                    if let Some(first) = checked.iter().position(|r| r.name == repo.name) {
                        return Err(format!("repos[{first}] and repos[{index}] are both named `{}`", repo.name));
                    }
                    checked.push(repo);
                }
                checked
            }
            None => vec![RepoConfig {
                name: "default".into(),
                source: RepoSource::Localfs {
                    path: resolve(raw.definitions.unwrap_or_else(|| DEFAULT_DEFINITIONS.into())),
                },
                suites_path: raw.suites_path.unwrap_or_else(|| "suites".into()),
                clusters_path: raw.clusters_path.unwrap_or_else(|| "clusters".into()),
            }],
        };
        let dashboard_url = match raw.dashboard_url {
            Some(url) => Some(base_url(&url).map_err(|e| format!("`dashboard_url`: {e}"))?),
            None => None,
        };
        let mut smtp = match raw.smtp {
            Some(smtp) => Some(smtp_settings(smtp, &resolve, &read_secret, &duration)?),
            None => None,
        };
        if let Some(smtp) = smtp.as_mut() {
            smtp.dashboard_url = smtp.dashboard_url.take().or_else(|| dashboard_url.clone());
        }
        let dashboard_url = dashboard_url.or_else(|| smtp.as_ref().and_then(|s| s.dashboard_url.clone()));
        let notify = raw
            .notify
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(index, entry)| webhook_config(entry, index, &read_secret))
            .collect::<Result<Vec<_>, _>>()?;
        let max_frame = size(raw.max_frame, xrdtest_proto::DEFAULT_MAX_FRAME_LEN as u64, "max_frame")?;
        if max_frame > xrdtest_proto::HARD_MAX_FRAME_LEN as u64 || max_frame < 64 * 1024 {
            return Err(format!("`max_frame` must be between 64K and {}", xrdtest_proto::HARD_MAX_FRAME_LEN));
        }
        let web = web_settings(raw.web.unwrap_or_default(), &state_dir, &resolve, &read_secret, &duration)?;
        let heartbeat_interval = duration(raw.heartbeat_interval, Duration::from_secs(5), "heartbeat_interval")?;
        if heartbeat_interval.is_zero() {
            return Err("`heartbeat_interval` must be above zero".into());
        }
        let raw_retention = raw.retention.unwrap_or_default();
        let retention = RetentionConfig {
            keep_days: raw_retention.keep_days,
            keep_per_suite: raw_retention.keep_per_suite,
            min_free_disk_bytes: match raw_retention.min_free_disk {
                Some(text) => Some(parse_size(&text).map_err(|e| format!("`retention.min_free_disk`: {e}"))?),
                None => None,
            },
            every: duration(raw_retention.every, Duration::from_secs(3600), "retention.every")?,
        };
        if retention.keep_days == Some(0) || retention.keep_per_suite == Some(0) {
            return Err("`retention.keep_days` and `retention.keep_per_suite` must be at least 1 (leave them out to keep everything)".into());
        }
        if retention.every < Duration::from_secs(1) {
            return Err("`retention.every` must be at least 1s".into());
        }
        let raw_clusters = raw.clusters.unwrap_or_default();
        let clusters = ClustersConfig {
            start_timeout: duration(raw_clusters.start_timeout, Duration::from_secs(600), "clusters.start_timeout")?,
            slave_wait: duration(raw_clusters.slave_wait, Duration::from_secs(300), "clusters.slave_wait")?,
            stop_timeout: duration(raw_clusters.stop_timeout, Duration::from_secs(300), "clusters.stop_timeout")?,
            master_address: match raw_clusters.master_address {
                Some(text) => Some(
                    text.parse().map_err(|_| format!("`clusters.master_address`: `{text}` is not an IP address"))?,
                ),
                None => None,
            },
        };
        Ok(MasterConfig {
            clusters,
            listen: address(raw.listen, DEFAULT_LISTEN, "listen")?,
            web_listen: address(raw.web_listen, DEFAULT_WEB_LISTEN, "web_listen")?,
            state_dir,
            secret,
            enroll,
            peer_auth,
            api_token,
            repos,
            script_dirs: raw.script_dirs.unwrap_or_default().into_iter().map(resolve).collect(),
            http_script_hosts: raw.http_script_hosts.unwrap_or_default(),
            scheduler_enabled: raw.scheduler.and_then(|s| s.enabled).unwrap_or(true),
            retention,
            smtp,
            notify,
            dashboard_url,
            slave_wait: duration(raw.slave_wait, Duration::from_secs(300), "slave_wait")?,
            reconnect_grace: duration(raw.reconnect_grace, Duration::from_secs(60), "reconnect_grace")?,
            heartbeat_interval,
            output_limit_bytes: size(raw.output_limit, 64 << 20, "output_limit")?,
            log_limit_bytes: size(raw.log_limit, 1 << 20, "log_limit")?,
            store_reserve_bytes: size(raw.store_reserve, crate::store::DEFAULT_RESERVE, "store_reserve")?,
            max_frame_bytes: max_frame as usize,
            tls_names: raw.tls_names.unwrap_or_default(),
            proto_tag: raw.proto_tag.unwrap_or_else(|| "xrdtest".into()),
            web,
        })
    }
}

type Resolve<'a> = dyn Fn(PathBuf) -> PathBuf + 'a;
type ReadSecret<'a> = dyn Fn(Option<String>, Option<PathBuf>, &str) -> Result<Option<String>, String> + 'a;
type ReadDuration<'a> = dyn Fn(Option<String>, Duration, &str) -> Result<Duration, String> + 'a;

fn repo_config(
    raw: RawRepo,
    index: usize,
    state_dir: &Path,
    resolve: &Resolve,
    read_secret: &ReadSecret,
    duration: &ReadDuration,
) -> Result<RepoConfig, String> {
    let field = |name: &str| format!("repos[{index}].{name}");
    let name = raw.name.ok_or_else(|| format!("`{}` is required", field("name")))?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
        return Err(format!("`{}`: `{name}` is not a plain name", field("name")));
    }
    let source = match raw.kind.as_deref() {
        Some("localfs") => {
            let path = raw.path.ok_or_else(|| format!("`{}` is required for a localfs repository", field("path")))?;
            for (value, key) in
                [(raw.url.is_some(), "url"), (raw.branch.is_some(), "branch"), (raw.checkout.is_some(), "checkout")]
            {
                if value {
                    return Err(format!("`{}` belongs to git repositories", field(key)));
                }
            }
            RepoSource::Localfs { path: resolve(path) }
        }
        Some("git") => {
            let url = raw.url.ok_or_else(|| format!("`{}` is required for a git repository", field("url")))?;
            if raw.path.is_some() {
                return Err(format!(
                    "`{}` belongs to localfs repositories; a git repository has `checkout`",
                    field("path")
                ));
            }
            let https_token = read_secret(raw.https_token, raw.https_token_file, &field("https_token"))?;
            let ssh_passphrase = read_secret(raw.ssh_passphrase, raw.ssh_passphrase_file, &field("ssh_passphrase"))?;
            if https_token.is_some() && raw.ssh_key.is_some() {
                return Err(format!("give `{}` or `{}`, not both", field("ssh_key"), field("https_token")));
            }
            RepoSource::Git(GitSettings {
                url,
                branch: raw.branch.unwrap_or_else(|| "main".into()),
                checkout: raw.checkout.map(resolve).unwrap_or_else(|| state_dir.join("repos").join(&name)),
                poll_interval: duration(raw.poll_interval, Duration::from_secs(60), &field("poll_interval"))?,
                ssh_key: raw.ssh_key.map(resolve),
                ssh_public_key: raw.ssh_public_key.map(resolve),
                ssh_passphrase,
                username: raw.username,
                https_token,
            })
        }
        Some(other) => return Err(format!("`{}`: unknown repository type `{other}`: localfs or git", field("type"))),
        None => return Err(format!("`{}` is required: localfs or git", field("type"))),
    };
    Ok(RepoConfig {
        name,
        source,
        suites_path: raw.suites_path.unwrap_or_else(|| "suites".into()),
        clusters_path: raw.clusters_path.unwrap_or_else(|| "clusters".into()),
    })
}

fn smtp_settings(
    raw: RawSmtp,
    resolve: &Resolve,
    read_secret: &ReadSecret,
    duration: &ReadDuration,
) -> Result<SmtpConfig, String> {
    let tls = match raw.tls.as_deref().unwrap_or("none").to_ascii_lowercase().as_str() {
        "none" => SmtpTls::None,
        "starttls" => SmtpTls::StartTls,
        "tls" => SmtpTls::Tls,
        other => return Err(format!("`smtp.tls`: unknown mode `{other}`: none, starttls or tls")),
    };
    let default_port = match tls {
        SmtpTls::None => 25,
        SmtpTls::StartTls => 587,
        SmtpTls::Tls => 465,
    };
    let from = raw.from.ok_or("`smtp.from` is required: the address alert mails come from")?;
    if !from.contains('@') {
        return Err(format!("`smtp.from`: `{from}` is not an email address"));
    }
    Ok(SmtpConfig {
        host: raw.host.unwrap_or_else(|| "localhost".into()),
        port: raw.port.unwrap_or(default_port),
        tls,
        username: raw.username,
        password: read_secret(raw.password, raw.password_file, "smtp.password")?,
        from,
        dashboard_url: raw.dashboard_url.map(|u| u.trim_end_matches('/').to_string()),
        attempts: raw.attempts.unwrap_or(3).max(1),
        retry_delay: duration(raw.retry_delay, Duration::from_secs(10), "smtp.retry_delay")?,
        ca_file: raw.ca_file.map(resolve),
        ..SmtpConfig::default()
    })
}

/// A base URL (`http(s)://host[:port][/path]`), without its trailing `/`.
fn base_url(text: &str) -> Result<String, String> {
    let trimmed = text.trim().trim_end_matches('/');
    http_url_host(trimmed)?;
    Ok(trimmed.to_string())
}

/// The host of an absolute `http://` or `https://` URL.
fn http_url_host(text: &str) -> Result<String, String> {
    let uri: ureq::http::Uri = text.parse().map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("`{text}` is not an http:// or https:// URL"));
    }
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(host.to_string()),
        _ => Err(format!("`{text}` has no host")),
    }
}

/// One `[[notify]]` entry.
fn webhook_config(raw: RawNotify, index: usize, read_secret: &ReadSecret) -> Result<WebhookConfig, String> {
    let field = |name: &str| format!("notify[{index}].{name}");
    let url = raw.url.ok_or_else(|| format!("`{}` is required: where the webhook is POSTed", field("url")))?;
    let host = http_url_host(url.trim()).map_err(|e| format!("`{}`: {e}", field("url")))?;
    let format = match raw.format.as_deref() {
        None => WebhookFormat::Json,
        Some(text) => WebhookFormat::parse(text)
            .ok_or_else(|| format!("`{}`: unknown format `{text}`: json, slack or matrix", field("format")))?,
    };
    let on = match raw.on.as_deref() {
        None => NotifyPolicy::Failure,
        Some(text) => match NotifyPolicy::parse(text) {
            Ok(policy @ (NotifyPolicy::Always | NotifyPolicy::Failure | NotifyPolicy::Change)) => policy,
            _ => return Err(format!("`{}`: unknown criterion `{text}`: always, failure or change", field("on"))),
        },
    };
    let secret = read_secret(raw.secret, raw.secret_file, &field("secret"))?;
    if secret.as_deref() == Some("") {
        return Err(format!("`{}` is empty: leave it out to send unsigned webhooks", field("secret")));
    }
    let suites = raw.suites.unwrap_or_default();
    if let Some((i, bad)) = suites.iter().enumerate().find(|(_, s)| !xrdtest_defs::suite::is_plain_name(s)) {
        return Err(format!("`{}`: `{bad}` is not a suite name", field(&format!("suites[{i}]"))));
    }
    Ok(WebhookConfig { url: url.trim().to_string(), host, format, secret, on, suites })
}

fn web_settings(
    raw: RawWeb,
    state_dir: &Path,
    resolve: &Resolve,
    read_secret: &ReadSecret,
    duration: &ReadDuration,
) -> Result<WebConfig, String> {
    let password = read_secret(raw.password, raw.password_file, "web.password")?.filter(|p| !p.is_empty());
    let require_login = raw.require_login.unwrap_or(false);
    if require_login && password.is_none() {
        return Err("`web.require_login` needs `web.password` (or `web.password_file`): nobody could log in".into());
    }
    let session_lifetime = duration(raw.session_lifetime, Duration::from_secs(12 * 3600), "web.session_lifetime")?;
    if session_lifetime < Duration::from_secs(60) || session_lifetime > Duration::from_secs(366 * 24 * 3600) {
        return Err("`web.session_lifetime` must be between 1m and 366d".into());
    }
    let tls = match raw.tls.as_deref().unwrap_or("none").to_ascii_lowercase().as_str() {
        "none" | "ca" if raw.cert_file.is_some() || raw.key_file.is_some() => {
            return Err("`web.cert_file` and `web.key_file` belong to `web.tls = \"files\"`".into())
        }
        "none" => WebTls::None,
        "ca" => WebTls::Ca,
        "files" => match (raw.cert_file, raw.key_file) {
            (Some(cert_file), Some(key_file)) => {
                WebTls::Files { cert_file: resolve(cert_file), key_file: resolve(key_file) }
            }
            _ => return Err("`web.tls = \"files\"` needs `web.cert_file` and `web.key_file`".into()),
        },
        other => return Err(format!("`web.tls`: unknown mode `{other}`: none, ca or files")),
    };
    Ok(WebConfig {
        password,
        require_login,
        cookie_key_file: raw.cookie_key_file.map(resolve).unwrap_or_else(|| state_dir.join(DEFAULT_COOKIE_KEY_FILE)),
        session_lifetime,
        tls,
        allowed_hosts: raw.allowed_hosts.unwrap_or_default().into_iter().map(|h| h.to_ascii_lowercase()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_required_secret() {
        let config = MasterConfig::from_toml("secret = \"s\"", Path::new("/etc/xrdtest")).unwrap();
        assert_eq!(config.listen.port(), 20000);
        assert_eq!(config.reconnect_grace, Duration::from_secs(60));
        assert_eq!(config.repos[0].suites_dir(), PathBuf::from("/var/lib/xrdtest/definitions/suites"));
        assert!(config.scheduler_enabled);
        assert!(config.smtp.is_none());
        assert!(config.notify.is_empty() && config.dashboard_url.is_none());
        assert!(MasterConfig::from_toml("", Path::new("/")).unwrap_err().contains("secret"));
        assert!(MasterConfig::from_toml("secret = \"s\"\nbogus = 1", Path::new("/")).unwrap_err().contains("bogus"));
        let relative =
            MasterConfig::from_toml("secret = \"s\"\ndefinitions = \"defs\"\nstate_dir = \"st\"", Path::new("/etc/x"))
                .unwrap();
        assert_eq!(relative.repos[0].suites_dir(), PathBuf::from("/etc/x/defs/suites"));
        assert_eq!(relative.state_dir, PathBuf::from("/etc/x/st"));
        assert!(MasterConfig::from_toml("secret = \"s\"\nslave_wait = \"soon\"", Path::new("/"))
            .unwrap_err()
            .contains("slave_wait"));
    }

    #[test]
    fn notify_entries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hook.secret"), "s3cret\n").unwrap();
        let config = MasterConfig::from_toml(
            "secret = \"s\"\ndashboard_url = \"https://dash.example.org/\"\n\
             [[notify]]\nurl = \"https://hooks.example.org/x?a=1\"\n\
             [[notify]]\nurl = \"http://127.0.0.1:9/hook\"\nformat = \"Slack\"\nsecret_file = \"hook.secret\"\n\
             on = \"change\"\nsuites = [\"ts_a\", \"ts_b\"]\n",
            dir.path(),
        )
        .unwrap();
        assert_eq!(config.dashboard_url.as_deref(), Some("https://dash.example.org"));
        let [first, second] = &config.notify[..] else { panic!("{:?}", config.notify) };
        assert_eq!(
            (first.host.as_str(), first.format, first.on, first.secret.as_deref(), first.suites.len()),
            ("hooks.example.org", WebhookFormat::Json, NotifyPolicy::Failure, None, 0)
        );
        assert_eq!(
            (second.host.as_str(), second.format, second.on, second.secret.as_deref()),
            ("127.0.0.1", WebhookFormat::Slack, NotifyPolicy::Change, Some("s3cret"))
        );
        assert_eq!(second.suites, ["ts_a", "ts_b"]);
        assert!(!format!("{second:?}").contains("s3cret"), "the secret stays out of logs");
        assert!(!format!("{first:?}").contains("/x?a=1"), "so does the URL's path: {first:?}");

        let error = |entry: &str| {
            MasterConfig::from_toml(&format!("secret = \"s\"\n[[notify]]\n{entry}"), dir.path()).unwrap_err()
        };
        assert!(error("format = \"json\"").contains("`notify[0].url` is required"));
        assert!(error("url = \"ftp://x.org/\"").contains("`notify[0].url`: `ftp://x.org/` is not an http"));
        assert!(error("url = \"not a url\"").contains("`notify[0].url`"));
        assert!(error("url = \"/relative\"").contains("`notify[0].url`"));
        assert!(error("url = \"http://h/\"\nformat = \"xml\"").contains("`notify[0].format`: unknown format `xml`"));
        assert!(error("url = \"http://h/\"\non = \"never\"").contains("`notify[0].on`: unknown criterion `never`"));
        assert!(error("url = \"http://h/\"\non = \"often\"").contains("always, failure or change"));
        assert!(error("url = \"http://h/\"\nsecret = \"a\"\nsecret_file = \"f\"").contains("not both"));
        assert!(error("url = \"http://h/\"\nsecret_file = \"/nonexistent/s\"").contains("`notify[0].secret_file`"));
        assert!(error("url = \"http://h/\"\nsecret = \"\"").contains("`notify[0].secret` is empty"));
        assert!(error("url = \"http://h/\"\nsuites = [\"ok\", \"../x\"]").contains("`notify[0].suites[1]`"));
        assert!(error("url = \"http://h/\"\nbogus = 1").contains("bogus"));
        let second_bad = MasterConfig::from_toml(
            "secret = \"s\"\n[[notify]]\nurl = \"http://h/\"\n[[notify]]\nurl = \"http://h/\"\non = \"x\"",
            dir.path(),
        )
        .unwrap_err();
        assert!(second_bad.contains("`notify[1].on`"), "{second_bad}");
        assert!(MasterConfig::from_toml("secret = \"s\"\ndashboard_url = \"dash\"", dir.path())
            .unwrap_err()
            .contains("`dashboard_url`"));
    }

    #[test]
    fn dashboard_url_serves_mails_and_webhooks() {
        let base = Path::new("/");
        let smtp = "[smtp]\nfrom = \"x@lab.test\"\n";
        let top =
            MasterConfig::from_toml(&format!("secret = \"s\"\ndashboard_url = \"http://d/\"\n{smtp}"), base).unwrap();
        assert_eq!(top.smtp.unwrap().dashboard_url.as_deref(), Some("http://d"));
        let mail_only =
            MasterConfig::from_toml(&format!("secret = \"s\"\n{smtp}dashboard_url = \"http://m\""), base).unwrap();
        assert_eq!(mail_only.dashboard_url.as_deref(), Some("http://m"), "the mail's URL serves webhooks too");
        let both = MasterConfig::from_toml(
            &format!("secret = \"s\"\ndashboard_url = \"http://d\"\n{smtp}dashboard_url = \"http://m\""),
            base,
        )
        .unwrap();
        assert_eq!(both.dashboard_url.as_deref(), Some("http://d"));
        assert_eq!(both.smtp.unwrap().dashboard_url.as_deref(), Some("http://m"));
    }

    #[test]
    fn web_section() {
        let base = Path::new("/etc/x");
        let config = MasterConfig::from_toml("secret = \"s\"\nstate_dir = \"/st\"", base).unwrap();
        assert_eq!(
            config.web,
            WebConfig {
                password: None,
                require_login: false,
                cookie_key_file: PathBuf::from("/st/web-cookie.key"),
                session_lifetime: Duration::from_secs(12 * 3600),
                tls: WebTls::None,
                allowed_hosts: Vec::new(),
            }
        );
        let config = MasterConfig::from_toml(
            "secret = \"s\"\n[web]\npassword = \"pw\"\nrequire_login = true\ncookie_key_file = \"k\"\n\
             session_lifetime = \"2h\"\ntls = \"files\"\ncert_file = \"c.pem\"\nkey_file = \"/k.pem\"",
            base,
        )
        .unwrap();
        assert_eq!(config.web.password.as_deref(), Some("pw"));
        assert!(config.web.require_login);
        assert_eq!(config.web.cookie_key_file, PathBuf::from("/etc/x/k"));
        assert_eq!(config.web.session_lifetime, Duration::from_secs(7200));
        assert_eq!(
            config.web.tls,
            WebTls::Files { cert_file: PathBuf::from("/etc/x/c.pem"), key_file: PathBuf::from("/k.pem") }
        );
        let ca = MasterConfig::from_toml("secret = \"s\"\n[web]\ntls = \"CA\"\npassword = \"\"", base).unwrap();
        assert_eq!(ca.web.tls, WebTls::Ca);
        assert_eq!(ca.web.password, None, "an empty password is no password");
        let error = |text: &str| MasterConfig::from_toml(&format!("secret = \"s\"\n[web]\n{text}"), base).unwrap_err();
        assert!(error("require_login = true").contains("web.password"));
        assert!(error("password = \"a\"\npassword_file = \"f\"").contains("not both"));
        assert!(error("password_file = \"/nonexistent/pw\"").contains("web.password_file"));
        assert!(error("tls = \"files\"\ncert_file = \"c\"").contains("key_file"));
        assert!(error("tls = \"ca\"\ncert_file = \"c\"").contains("belong to"));
        assert!(error("cert_file = \"c\"\nkey_file = \"k\"").contains("belong to"));
        assert!(error("tls = \"yes\"").contains("none, ca or files"));
        assert!(error("session_lifetime = \"10s\"").contains("session_lifetime"));
        assert!(error("session_lifetime = \"forever\"").contains("session_lifetime"));
        assert!(error("bogus = 1").contains("bogus"));
    }
}
