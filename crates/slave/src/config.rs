//! The slave's configuration file (`slave.toml`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use xrdtest_defs::units::{parse_duration, parse_size};
use xrdtest_proto::identity::IdentityDir;
use xrdtest_proto::peer_config;

use crate::session_scope::CleanupMethod;

#[derive(Debug, Clone)]
pub struct SlaveConfig {
    /// `host:port` of the master.
    pub master: String,
    /// This slave's name; defaults to the machine's host name.
    pub name: String,
    /// The enrollment secret (empty: none; the slave then waits for an operator's approval
    /// unless it holds a certificate).
    pub secret: String,
    /// Where its key and certificate are kept (`<work_dir>/identity` by default).
    pub identity: IdentityDir,
    /// The master's CA certificate (`ca.crt` from its state directory).
    pub ca_file: PathBuf,
    /// The name the master's certificate is checked against.
    pub tls_server_name: String,
    /// Per-session work directories live here.
    pub work_dir: PathBuf,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
    /// Output kept per running stage for resending after a reconnect.
    pub replay_buffer_bytes: u64,
    pub max_frame_bytes: usize,
    /// How a session's leftover processes are found ([`crate::session_scope`]).
    pub session_cleanup: CleanupMethod,
    /// With the master away this long, every session's stages and processes here end.
    pub session_grace: Duration,
    /// A session's work folder is removed this long after it was last changed.
    pub keep_work_dirs: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    master: Option<String>,
    name: Option<String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    identity_dir: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    tls_server_name: Option<String>,
    work_dir: Option<PathBuf>,
    max_backoff: Option<String>,
    replay_buffer: Option<String>,
    max_frame: Option<String>,
    session_cleanup: Option<String>,
    session_grace: Option<String>,
    keep_work_dirs: Option<String>,
}

impl SlaveConfig {
    pub fn load(path: &Path) -> Result<SlaveConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        SlaveConfig::from_toml(&text, path.parent().unwrap_or(Path::new(".")))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_toml(text: &str, base: &Path) -> Result<SlaveConfig, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let master = peer_config::master_address(raw.master)?;
        let secret = peer_config::secret(raw.secret, raw.secret_file, base)?;
        let name = peer_config::peer_name(raw.name, "slave")?;
        let duration = |value: Option<String>, default: Duration, field: &str| match value {
            Some(text) => parse_duration(&text).map_err(|e| format!("`{field}`: {e}")),
            None => Ok(default),
        };
        let max_backoff = duration(raw.max_backoff, Duration::from_secs(30), "max_backoff")?;
        let session_cleanup = match raw.session_cleanup {
            Some(text) => CleanupMethod::parse(&text).map_err(|e| format!("`session_cleanup`: {e}"))?,
            None => CleanupMethod::Auto,
        };
        let size = |value: Option<String>, default: u64, field: &str| match value {
            Some(text) => parse_size(&text).map_err(|e| format!("`{field}`: {e}")),
            None => Ok(default),
        };
        let work_dir = resolve(raw.work_dir.unwrap_or_else(|| "/var/lib/xrdtest-slave".into()));
        Ok(SlaveConfig {
            master,
            name,
            secret,
            identity: peer_config::identity_dir(raw.identity_dir, work_dir.join("identity"), base),
            ca_file: resolve(raw.ca_file.unwrap_or_else(|| "/etc/xrdtest/ca.crt".into())),
            tls_server_name: raw.tls_server_name.unwrap_or_else(|| xrdtest_proto::tls::MASTER_TLS_NAME.into()),
            work_dir,
            max_backoff,
            replay_buffer_bytes: size(raw.replay_buffer, 16 << 20, "replay_buffer")?,
            max_frame_bytes: size(raw.max_frame, xrdtest_proto::DEFAULT_MAX_FRAME_LEN as u64, "max_frame")? as usize,
            session_cleanup,
            session_grace: duration(raw.session_grace, Duration::from_secs(600), "session_grace")?,
            keep_work_dirs: duration(raw.keep_work_dirs, Duration::from_secs(86_400), "keep_work_dirs")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_fields_and_defaults() {
        let config =
            SlaveConfig::from_toml("master = \"m\"\nsecret = \"s\"\nname = \"slave1\"", Path::new("/etc/x")).unwrap();
        assert_eq!(config.master, "m:20000");
        assert_eq!(config.ca_file, PathBuf::from("/etc/xrdtest/ca.crt"));
        assert!(SlaveConfig::from_toml("secret = \"s\"", Path::new("/")).unwrap_err().contains("master"));
        let no_secret = SlaveConfig::from_toml("master = \"m\"\nname = \"s1\"", Path::new("/")).unwrap();
        assert_eq!(no_secret.secret, "", "without a secret the slave asks for approval");
        assert_eq!(no_secret.identity.path(), Path::new("/var/lib/xrdtest-slave/identity"));
        assert!(SlaveConfig::from_toml("master = \"m\"\nsecret = \"s\"\nname = \"a b\"", Path::new("/")).is_err());
        let unnamed = SlaveConfig::from_toml("master = \"m\"\nsecret = \"s\"", Path::new("/")).unwrap();
        assert!(!unnamed.name.is_empty(), "the name defaults to the host name");
        assert_eq!(unnamed.session_cleanup, CleanupMethod::Auto);
        assert_eq!(unnamed.session_grace, Duration::from_secs(600));
        let bad = SlaveConfig::from_toml("master = \"m\"\nsecret = \"s\"\nsession_cleanup = \"pids\"", Path::new("/"));
        assert!(bad.unwrap_err().contains("session_cleanup"));
    }
}
