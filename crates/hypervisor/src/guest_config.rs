//! Each VM's own `slave.toml`, with the enrollment token the master granted that VM alone.
//!
//! On a local libvirt it is a file, `<guest_dir>/<cluster>/<host>.toml`, readable by its
//! owner only, that the domain names in a file fw_cfg entry: QEMU's command line then holds
//! its path, never the token. libvirt hands the file to the QEMU user for the domain's run
//! (its DAC driver labels fw_cfg files like disks), so the folders are only traversable
//! (0711) for that user. With a remote libvirt no file of this host can reach QEMU, and the
//! configuration goes inline as before; the token is then visible on that host's command
//! line, valid only for that VM's name and only while its cluster runs.

use std::io::Write;
use std::path::{Path, PathBuf};

/// How a domain receives its slave configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestConfig {
    /// The configuration itself, in the domain XML (remote libvirt).
    Inline(String),
    /// A file on this host, named in the domain XML.
    File(PathBuf),
}

fn cluster_dir(guest_dir: &Path, cluster: &str) -> PathBuf {
    guest_dir.join(cluster)
}

/// Writes the configuration of `host` of `cluster` (replacing an older one).
pub fn write(guest_dir: &Path, cluster: &str, host: &str, slave_toml: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = cluster_dir(guest_dir, cluster);
    std::fs::DirBuilder::new().recursive(true).mode(0o711).create(&dir)?;
    let path = dir.join(format!("{host}.toml"));
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
    file.write_all(slave_toml.as_bytes())?;
    Ok(path)
}

/// Removes the configurations of `cluster`; true when there were some.
pub fn remove(guest_dir: &Path, cluster: &str) -> std::io::Result<bool> {
    match std::fs::remove_dir_all(cluster_dir(guest_dir, cluster)) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

/// The clusters that have configurations here (for the start-up clean-up).
pub fn clusters(guest_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(guest_dir) else { return Vec::new() };
    entries.flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_private_and_go_with_their_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let guests = dir.path().join("guests");
        let path = write(&guests, "c1", "vm1.xrd.test", "secret = \"vm-1\"\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret = \"vm-1\"\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o711);
        write(&guests, "c1", "vm1.xrd.test", "secret = \"vm-2\"\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret = \"vm-2\"\n");
        assert_eq!(clusters(&guests), ["c1"]);
        assert!(remove(&guests, "c1").unwrap());
        assert!(!remove(&guests, "c1").unwrap());
        assert!(clusters(&guests).is_empty());
    }
}
