//! Warm clusters: the saved state of a cluster's VMs, taken once their slaves have
//! connected after the first cold boot, that later starts restore instead of booting.
//!
//! One folder per cluster and set of hosts (a session makes VMs for the hosts its suite
//! uses, so two suites of one cluster keep a state each), `<state_dir>/warm/<cluster>/<hosts>/`
//! (`<hosts>` a hash of the host names, listed in its `hosts` file): per host the libvirt save file
//! (`<host>.save`: memory and devices), a copy of each of its volumes as they were at that
//! moment (`<volume>`, so a restored guest finds its disks exactly as it left them: disk
//! changes of the sessions in between are discarded), `key` (the fingerprint of everything
//! the state depends on) and `complete` (written last). A state whose key differs from the
//! start's, or that is incomplete, is dropped. See docs/hypervisor.md, "Warm clusters".

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use xrdtest_defs::Cluster;

const KEY_FILE: &str = "key";
const COMPLETE_FILE: &str = "complete";

/// The fingerprint of what a cluster's saved state depends on: the definition as sent (its
/// hosts, network, disks), the files the guests boot (a kernel and initrd hold the slave;
/// an image volume its disk), `settings` (what of this hypervisor's configuration is in the
/// saved domains: its name in their markers, the domain type, the CA given to the guests,
/// the pool, console and guest folders) and this hypervisor's version (it writes the
/// domain XML). A file is known by its path, size, change time and inode: a rebuilt image
/// is a new file (`packaging/vm-image/build` replaces it atomically).
pub fn fingerprint(cluster: &Cluster, boot_files: &[PathBuf], settings: &[&str]) -> String {
    let mut hasher = DefaultHasher::new();
    format!("{cluster:?}").hash(&mut hasher);
    settings.hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    for file in boot_files {
        file.hash(&mut hasher);
        match std::fs::metadata(file) {
            Ok(meta) => (meta.len(), meta.ctime(), meta.ctime_nsec(), meta.ino()).hash(&mut hasher),
            Err(_) => "missing".hash(&mut hasher),
        }
    }
    format!("{:016x}", hasher.finish())
}

/// The saved state of one cluster.
#[derive(Debug, Clone)]
pub struct WarmState {
    dir: PathBuf,
}

impl WarmState {
    /// The state of `cluster` with these `hosts` (full names).
    pub fn of(warm_dir: &Path, cluster: &str, hosts: &[String]) -> WarmState {
        let mut sorted: Vec<&String> = hosts.iter().collect();
        sorted.sort();
        let mut hasher = DefaultHasher::new();
        sorted.hash(&mut hasher);
        WarmState { dir: warm_dir.join(cluster).join(format!("{:016x}", hasher.finish())) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn save_file(&self, host: &str) -> PathBuf {
        self.dir.join(format!("{host}.save"))
    }

    pub fn volume_copy(&self, volume: &str) -> PathBuf {
        self.dir.join(volume)
    }

    /// Whether a complete state with this `key` is here for every one of `hosts` (with each
    /// of `volumes` copied).
    pub fn usable(&self, key: &str, hosts: &[String], volumes: &[String]) -> bool {
        let key_ok = std::fs::read_to_string(self.dir.join(KEY_FILE)).is_ok_and(|k| k.trim() == key);
        key_ok
            && self.dir.join(COMPLETE_FILE).is_file()
            && hosts.iter().all(|h| self.save_file(h).is_file())
            && volumes.iter().all(|v| self.volume_copy(v).is_file())
    }

    /// Whether anything is here (a state, complete or not).
    pub fn exists(&self) -> bool {
        self.dir.exists()
    }

    /// An empty folder for a new state of `hosts` (what was there is removed). Readable by
    /// this hypervisor's user only: the save files hold the guests' memory, their slaves'
    /// keys included.
    pub fn begin(&self, hosts: &[String]) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        self.drop_state()?;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        std::fs::write(self.dir.join("hosts"), hosts.join("\n") + "\n")
    }

    /// Marks the state complete for `key`.
    pub fn commit(&self, key: &str) -> std::io::Result<()> {
        std::fs::write(self.dir.join(KEY_FILE), format!("{key}\n"))?;
        std::fs::write(self.dir.join(COMPLETE_FILE), b"")
    }

    /// Removes the state; true when there was one.
    pub fn drop_state(&self) -> std::io::Result<bool> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Bytes on disk.
    pub fn size_bytes(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return 0 };
        entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.blocks() * 512).sum()
    }
}

/// Copies `from` to `to` (replaced whole), keeping holes: volumes are sparse.
pub fn copy_sparse(from: &Path, to: &Path) -> std::io::Result<()> {
    let output = std::process::Command::new("cp").arg("--sparse=always").arg("-f").arg(from).arg(to).output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "cp {} {}: {}",
            from.display(),
            to.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_usable_only_complete_and_for_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["a.x".to_string()];
        let state = WarmState::of(dir.path(), "c1", &hosts);
        assert_ne!(state.dir(), WarmState::of(dir.path(), "c1", &["b.x".to_string()]).dir(), "a state per host set");
        let volumes = vec!["xrdtest.c1.a.data.qcow2".to_string()];
        assert!(!state.usable("k1", &hosts, &volumes));
        state.begin(&hosts).unwrap();
        std::fs::write(state.save_file("a.x"), b"mem").unwrap();
        std::fs::write(state.volume_copy(&volumes[0]), b"disk").unwrap();
        assert!(!state.usable("k1", &hosts, &volumes), "not complete yet");
        state.commit("k1").unwrap();
        assert!(state.usable("k1", &hosts, &volumes));
        assert!(!state.usable("k2", &hosts, &volumes), "another key");
        assert!(!state.usable("k1", &["b.x".to_string()], &volumes), "another host");
        assert!(state.drop_state().unwrap());
        assert!(!state.exists());
    }

    #[test]
    fn the_fingerprint_follows_the_boot_files() {
        let dir = tempfile::tempdir().unwrap();
        let initrd = dir.path().join("initrd.img");
        std::fs::write(&initrd, b"one").unwrap();
        let cluster = cluster();
        let first = fingerprint(&cluster, std::slice::from_ref(&initrd), &["qemu"]);
        assert_eq!(first, fingerprint(&cluster, std::slice::from_ref(&initrd), &["qemu"]));
        assert_ne!(first, fingerprint(&cluster, std::slice::from_ref(&initrd), &["kvm"]));
        // Rebuilt as the image builder does: a new file moved into place.
        let new = dir.path().join(".initrd.tmp");
        std::fs::write(&new, b"two").unwrap();
        std::fs::rename(&new, &initrd).unwrap();
        assert_ne!(first, fingerprint(&cluster, std::slice::from_ref(&initrd), &["qemu"]));
        let mut other = cluster.clone();
        other.hosts[0].ram_bytes *= 2;
        assert_ne!(
            fingerprint(&cluster, std::slice::from_ref(&initrd), &["qemu"]),
            fingerprint(&other, std::slice::from_ref(&initrd), &["qemu"])
        );
    }

    fn cluster() -> Cluster {
        use xrdtest_defs::{Boot, Host, Network};
        Cluster {
            name: "c1".into(),
            network: Network {
                name: "c1_net".into(),
                bridge: "br1".into(),
                ip: [10, 1, 0, 1].into(),
                netmask: [255, 255, 255, 0].into(),
                dhcp_start: [10, 1, 0, 100].into(),
                dhcp_end: [10, 1, 0, 200].into(),
                domain: "x".into(),
                lb_alias: None,
                lb_hosts: vec![],
            },
            hosts: vec![Host {
                name: "a.x".into(),
                ip: [10, 1, 0, 10].into(),
                mac: "52:54:00:00:00:01".into(),
                boot: Boot::Kernel { kernel: "/k".into(), initrd: None, cmdline: None },
                arch: "x86_64".into(),
                ram_bytes: 256 << 20,
                vcpus: 1,
                disks: vec![],
                roles: vec![],
            }],
            links: vec![],
        }
    }
}
