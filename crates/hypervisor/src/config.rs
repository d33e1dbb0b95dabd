//! The hypervisor's configuration file (`hypervisor.toml`); reference in
//! `docs/hypervisor-config.md`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use xrdtest_defs::units::{parse_duration, parse_size};
use xrdtest_proto::identity::IdentityDir;
use xrdtest_proto::peer_config;

/// Port of the master when `master` names none (XrdTest's default).
/// Share of the host's RAM the cluster VMs may use when `memory_limit` is not set: the rest
/// is left to the host, libvirt, QEMU's own overhead and the master if it runs here.
const DEFAULT_MEMORY_SHARE_PERCENT: u64 = 75;

/// Which libvirt domain type the VMs get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainTypeChoice {
    /// `kvm` when a tiny guest really runs under `/dev/kvm`, `qemu` otherwise.
    Auto,
    Kvm,
    Qemu,
}

/// Where `packaging/vm-image/build` puts its kernel and initramfs.
pub const DEFAULT_KERNEL_DIR: &str = "/var/lib/xrdtest/images";

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct HypervisorConfig {
    /// `host:port` of the master.
    pub master: String,
    /// This hypervisor's name at the master; also written into its ownership markers.
    pub name: String,
    /// The enrollment secret (empty: none, wait for an operator's approval). VMs never get
    /// it: each gets a token of its own from the master.
    pub secret: String,
    /// Where the hypervisor keeps its key and certificate (`<state_dir>/identity`).
    pub identity: IdentityDir,
    /// Each VM's own `slave.toml` (`<state_dir>/guests`).
    pub guest_dir: PathBuf,
    /// Warm clusters' saved states (`<state_dir>/warm`); `None`: `warm_clusters = false`.
    pub warm_dir: Option<PathBuf>,
    /// The folders clusters' `kernel` and `initrd` may come from.
    pub kernel_dirs: Vec<PathBuf>,
    /// The master's CA certificate; the VMs' slaves get it too.
    pub ca_file: PathBuf,
    pub tls_server_name: String,
    pub libvirt_uri: String,
    /// Storage pool for boot images, overlays and disks.
    pub pool: String,
    /// Where the pool is created (as a `dir` pool) when it does not exist.
    pub pool_dir: PathBuf,
    pub domain_type: DomainTypeChoice,
    /// Memory all cluster VMs together may use.
    pub memory_limit_bytes: u64,
    /// VMs that may run at once.
    pub vm_limit: u32,
    /// Each VM's serial console goes to `<console_dir>/<domain>.log`.
    pub console_dir: PathBuf,
    /// How long guests get to power off after an ACPI shutdown before they are destroyed.
    pub shutdown_wait: Duration,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
    pub max_frame_bytes: usize,
}

/// A configuration problem, naming the file and (inside `message`) the field.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ConfigError {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    master: Option<String>,
    name: Option<String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    identity_dir: Option<PathBuf>,
    kernel_dirs: Option<Vec<PathBuf>>,
    ca_file: Option<PathBuf>,
    tls_server_name: Option<String>,
    libvirt_uri: Option<String>,
    pool: Option<String>,
    pool_dir: Option<PathBuf>,
    domain_type: Option<String>,
    memory_limit: Option<String>,
    vm_limit: Option<i64>,
    console_dir: Option<PathBuf>,
    shutdown_wait: Option<String>,
    warm_clusters: Option<bool>,
    max_backoff: Option<String>,
    max_frame: Option<String>,
}

impl HypervisorConfig {
    /// Reads and checks the file; relative paths in it are relative to its folder.
    pub fn load(path: &Path) -> Result<HypervisorConfig, ConfigError> {
        let error = |message: String| ConfigError { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
        HypervisorConfig::from_toml(&text, path.parent().unwrap_or(Path::new("."))).map_err(error)
    }

    /// Checks a configuration's text; `base` resolves relative paths.
    pub fn from_toml(text: &str, base: &Path) -> Result<HypervisorConfig, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let master = peer_config::master_address(raw.master)?;
        let secret = peer_config::secret(raw.secret, raw.secret_file, base)?;
        let name = peer_config::peer_name(raw.name, "hypervisor")?;
        let pool = raw.pool.unwrap_or_else(|| "xrdtest".into());
        if pool.is_empty() || pool.contains(['/', '<', '>', '&', '\'', '"']) {
            return Err(format!("`pool`: `{pool}` is not a usable storage pool name"));
        }
        let domain_type = match raw.domain_type.as_deref() {
            None | Some("auto") => DomainTypeChoice::Auto,
            Some("kvm") => DomainTypeChoice::Kvm,
            Some("qemu") => DomainTypeChoice::Qemu,
            Some(other) => return Err(format!("`domain_type`: `{other}` is not one of auto, kvm, qemu")),
        };
        let memory_limit_bytes = match raw.memory_limit {
            Some(text) => parse_size(&text).map_err(|e| format!("`memory_limit`: {e}"))?,
            None => {
                host_memory_bytes()
                    .ok_or("`memory_limit` is not set and the host's memory cannot be read from /proc/meminfo")?
                    / 100
                    * DEFAULT_MEMORY_SHARE_PERCENT
            }
        };
        let vm_limit = match raw.vm_limit {
            None => 16,
            Some(n) if (1..=i64::from(u32::MAX)).contains(&n) => n as u32,
            Some(n) => return Err(format!("`vm_limit`: {n} is not a positive number of VMs")),
        };
        let duration = |value: Option<String>, default: Duration, field: &str| match value {
            Some(text) => parse_duration(&text).map_err(|e| format!("`{field}`: {e}")),
            None => Ok(default),
        };
        let max_frame_bytes = match raw.max_frame {
            Some(text) => parse_size(&text).map_err(|e| format!("`max_frame`: {e}"))?,
            None => xrdtest_proto::DEFAULT_MAX_FRAME_LEN as u64,
        };
        if max_frame_bytes > xrdtest_proto::HARD_MAX_FRAME_LEN as u64 {
            return Err(format!("`max_frame`: at most {} bytes", xrdtest_proto::HARD_MAX_FRAME_LEN));
        }
        let state_dir = resolve(raw.state_dir.unwrap_or_else(|| "/var/lib/xrdtest-hypervisor".into()));
        Ok(HypervisorConfig {
            master,
            name,
            secret,
            identity: peer_config::identity_dir(raw.identity_dir, state_dir.join("identity"), base),
            guest_dir: state_dir.join("guests"),
            warm_dir: raw.warm_clusters.unwrap_or(true).then(|| state_dir.join("warm")),
            kernel_dirs: raw
                .kernel_dirs
                .unwrap_or_else(|| vec![DEFAULT_KERNEL_DIR.into()])
                .into_iter()
                .map(&resolve)
                .collect(),
            ca_file: resolve(raw.ca_file.unwrap_or_else(|| "/etc/xrdtest/ca.crt".into())),
            tls_server_name: raw.tls_server_name.unwrap_or_else(|| xrdtest_proto::tls::MASTER_TLS_NAME.into()),
            libvirt_uri: raw.libvirt_uri.unwrap_or_else(|| "qemu:///system".into()),
            pool,
            pool_dir: resolve(raw.pool_dir.unwrap_or_else(|| "/var/lib/xrdtest/pool".into())),
            domain_type,
            memory_limit_bytes,
            vm_limit,
            console_dir: resolve(raw.console_dir.unwrap_or_else(|| "/var/log/xrdtest/consoles".into())),
            shutdown_wait: duration(raw.shutdown_wait, Duration::from_secs(10), "shutdown_wait")?,
            max_backoff: duration(raw.max_backoff, Duration::from_secs(30), "max_backoff")?
                .max(Duration::from_millis(250)),
            max_frame_bytes: max_frame_bytes as usize,
        })
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn host_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&text)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.trim_start_matches("MemTotal:").trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "master = \"m\"\nsecret = \"s\"\nname = \"hv1\"\nmemory_limit = \"8G\"\n";

    #[test]
    fn defaults() {
        let config = HypervisorConfig::from_toml(MINIMAL, Path::new("/etc/xrdtest")).unwrap();
        assert_eq!(config.master, "m:20000");
        assert_eq!(config.name, "hv1");
        assert_eq!(config.ca_file, PathBuf::from("/etc/xrdtest/ca.crt"));
        assert_eq!(config.tls_server_name, "xrdtest-master");
        assert_eq!(config.libvirt_uri, "qemu:///system");
        assert_eq!(config.pool, "xrdtest");
        assert_eq!(config.pool_dir, PathBuf::from("/var/lib/xrdtest/pool"));
        assert_eq!(config.domain_type, DomainTypeChoice::Auto);
        assert_eq!(config.memory_limit_bytes, 8 << 30);
        assert_eq!(config.vm_limit, 16);
        assert_eq!(config.console_dir, PathBuf::from("/var/log/xrdtest/consoles"));
        assert_eq!(config.shutdown_wait, Duration::from_secs(10));
        assert_eq!(config.max_backoff, Duration::from_secs(30));
        assert_eq!(config.max_frame_bytes, 4 << 20);
    }

    #[test]
    fn memory_limit_defaults_to_three_quarters_of_the_host() {
        let config = HypervisorConfig::from_toml("master = \"m:1\"\nsecret = \"s\"", Path::new("/")).unwrap();
        let total = host_memory_bytes().unwrap();
        assert_eq!(config.memory_limit_bytes, total / 100 * 75);
        assert!(!config.name.is_empty(), "the name defaults to the host name");
        assert_eq!(parse_mem_total("MemFree: 1 kB\nMemTotal:       24576 kB\n"), Some(24576 * 1024));
    }

    #[test]
    fn every_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
        let text = r#"
            master = "master.lab:20001"
            name = "hv-a.lab"
            secret_file = "secret"
            ca_file = "ca.crt"
            tls_server_name = "other"
            libvirt_uri = "test:///default"
            pool = "p"
            pool_dir = "/srv/pool"
            domain_type = "qemu"
            memory_limit = "12G"
            vm_limit = 4
            console_dir = "consoles"
            shutdown_wait = "1m"
            max_backoff = "5s"
            max_frame = "1M"
        "#;
        let config = HypervisorConfig::from_toml(text, dir.path()).unwrap();
        assert_eq!(config.master, "master.lab:20001");
        assert_eq!(config.secret, "s3cret");
        assert_eq!(config.ca_file, dir.path().join("ca.crt"));
        assert_eq!(config.console_dir, dir.path().join("consoles"));
        assert_eq!(config.domain_type, DomainTypeChoice::Qemu);
        assert_eq!(config.vm_limit, 4);
        assert_eq!(config.shutdown_wait, Duration::from_secs(60));
        assert_eq!(config.max_frame_bytes, 1 << 20);
    }

    #[test]
    fn errors_name_the_field() {
        let err = |extra: &str| HypervisorConfig::from_toml(&format!("{MINIMAL}{extra}"), Path::new("/")).unwrap_err();
        assert!(err("colour = \"red\"").contains("colour"), "{}", err("colour = \"red\""));
        assert!(err("domain_type = \"xen\"").contains("`domain_type`"));
        assert!(err("vm_limit = 0").contains("`vm_limit`"));
        assert!(err("shutdown_wait = \"soon\"").contains("`shutdown_wait`"));
        assert!(err("max_frame = \"1T\"").contains("`max_frame`"));
        assert!(err("secret_file = \"/x\"").contains("not both"));
        assert!(HypervisorConfig::from_toml("secret = \"s\"", Path::new("/")).unwrap_err().contains("`master`"));
        let no_secret = HypervisorConfig::from_toml("master = \"m\"\nname = \"hv1\"", Path::new("/")).unwrap();
        assert_eq!(no_secret.secret, "", "without a secret it waits for approval");
        assert_eq!(no_secret.identity.path(), Path::new("/var/lib/xrdtest-hypervisor/identity"));
        assert_eq!(no_secret.guest_dir, Path::new("/var/lib/xrdtest-hypervisor/guests"));
        let bad_name = HypervisorConfig::from_toml("master = \"m\"\nsecret = \"s\"\nname = \"a b\"", Path::new("/"));
        assert!(bad_name.unwrap_err().contains("`name`"));
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hypervisor.toml");
        std::fs::write(&path, "master = \"m\"\nsecret = \"s\"\nvm_limit = -1\n").unwrap();
        let message = HypervisorConfig::load(&path).unwrap_err().to_string();
        assert!(message.starts_with(&path.display().to_string()), "{message}");
        assert!(message.contains("`vm_limit`"), "{message}");
    }
}
