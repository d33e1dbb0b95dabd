//! The master's configuration file (`master.toml`). Every field is optional except the
//! connection secret; `docs/master-config.md` documents each one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use xrdtest_defs::units::{parse_duration, parse_size};

/// The checked configuration the master runs with.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Where slaves and hypervisors connect (TLS). XrdTest used port 20000.
    pub listen: SocketAddr,
    /// The HTTP JSON API (and later the dashboard).
    pub web_listen: SocketAddr,
    /// sled store, CA and work files.
    pub state_dir: PathBuf,
    /// Shared secret peers present in their handshake.
    pub secret: String,
    /// Token required by write calls of the API (run, cancel). `None`: writes are refused.
    pub api_token: Option<String>,
    /// The definitions repository: `suites_dir` and `clusters_dir` inside it.
    pub suites_dir: PathBuf,
    pub clusters_dir: PathBuf,
    /// How long a session waits for its slaves to connect before it fails.
    pub slave_wait: Duration,
    /// How long a slave that dropped mid-stage may take to come back before the stage fails.
    pub reconnect_grace: Duration,
    pub heartbeat_interval: Duration,
    /// Per stage and slave: output past this is dropped (and counted).
    pub output_limit_bytes: u64,
    /// Per collected log file: only its last this-many bytes are kept.
    pub log_limit_bytes: u64,
    pub max_frame_bytes: usize,
    /// Extra names for the master's TLS certificate (besides `xrdtest-master`).
    pub tls_names: Vec<String>,
    /// The value of `@proto@` in scripts.
    pub proto_tag: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    web_listen: Option<String>,
    state_dir: Option<PathBuf>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
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
    max_frame: Option<String>,
    tls_names: Option<Vec<String>>,
    proto_tag: Option<String>,
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
        let secret = read_secret(raw.secret, raw.secret_file, "secret")?
            .filter(|s| !s.is_empty())
            .ok_or("`secret` (or `secret_file`) is required: the connection secret slaves and hypervisors present")?;
        let api_token = read_secret(raw.api_token, raw.api_token_file, "api_token")?.filter(|s| !s.is_empty());
        let definitions = resolve(raw.definitions.unwrap_or_else(|| DEFAULT_DEFINITIONS.into()));
        let max_frame = size(raw.max_frame, xrdtest_proto::DEFAULT_MAX_FRAME_LEN as u64, "max_frame")?;
        if max_frame > xrdtest_proto::HARD_MAX_FRAME_LEN as u64 || max_frame < 64 * 1024 {
            return Err(format!("`max_frame` must be between 64K and {}", xrdtest_proto::HARD_MAX_FRAME_LEN));
        }
        let heartbeat_interval = duration(raw.heartbeat_interval, Duration::from_secs(5), "heartbeat_interval")?;
        if heartbeat_interval.is_zero() {
            return Err("`heartbeat_interval` must be above zero".into());
        }
        Ok(MasterConfig {
            listen: address(raw.listen, DEFAULT_LISTEN, "listen")?,
            web_listen: address(raw.web_listen, DEFAULT_WEB_LISTEN, "web_listen")?,
            state_dir: resolve(raw.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.into())),
            secret,
            api_token,
            suites_dir: definitions.join(raw.suites_path.unwrap_or_else(|| "suites".into())),
            clusters_dir: definitions.join(raw.clusters_path.unwrap_or_else(|| "clusters".into())),
            slave_wait: duration(raw.slave_wait, Duration::from_secs(300), "slave_wait")?,
            reconnect_grace: duration(raw.reconnect_grace, Duration::from_secs(60), "reconnect_grace")?,
            heartbeat_interval,
            output_limit_bytes: size(raw.output_limit, 64 << 20, "output_limit")?,
            log_limit_bytes: size(raw.log_limit, 1 << 20, "log_limit")?,
            max_frame_bytes: max_frame as usize,
            tls_names: raw.tls_names.unwrap_or_default(),
            proto_tag: raw.proto_tag.unwrap_or_else(|| "xrdtest".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_required_secret() {
        let config = MasterConfig::from_toml("secret = \"s\"", Path::new("/etc/xrdtest")).unwrap();
        assert_eq!(config.listen.port(), 20000);
        assert_eq!(config.reconnect_grace, Duration::from_secs(60));
        assert_eq!(config.suites_dir, PathBuf::from("/var/lib/xrdtest/definitions/suites"));
        assert!(MasterConfig::from_toml("", Path::new("/")).unwrap_err().contains("secret"));
        assert!(MasterConfig::from_toml("secret = \"s\"\nbogus = 1", Path::new("/")).unwrap_err().contains("bogus"));
        let relative =
            MasterConfig::from_toml("secret = \"s\"\ndefinitions = \"defs\"\nstate_dir = \"st\"", Path::new("/etc/x"))
                .unwrap();
        assert_eq!(relative.suites_dir, PathBuf::from("/etc/x/defs/suites"));
        assert_eq!(relative.state_dir, PathBuf::from("/etc/x/st"));
        assert!(MasterConfig::from_toml("secret = \"s\"\nslave_wait = \"soon\"", Path::new("/"))
            .unwrap_err()
            .contains("slave_wait"));
    }
}
