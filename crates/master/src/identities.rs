//! The master's record of its peers' identities: for each name, the role and the key it is
//! enrolled with (or asks with), and the certificate issued for that key. Kept as
//! `peers.json` in the state directory, beside `ca.key`, written whole on every change
//! (a new file renamed over the old one), readable by the master's user only.
//!
//! The peer_auth module decides with it who may connect; operators change it through
//! `xrdtest peers approve|revoke` (the API) and the dashboard.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::model::now_ms;

pub const IDENTITIES_FILE: &str = "peers.json";
/// Requests waiting for an operator at most; more new names are refused without a record, so
/// strangers cannot grow the file without bound.
pub const MAX_PENDING: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityState {
    /// Asked to enroll without a valid secret: waits for `xrdtest peers approve`.
    Pending,
    /// Holds a certificate; only that certificate (or its key) may use the name.
    Enrolled,
    /// Its certificate is refused; the name enrolls again only by an operator's approval.
    Revoked,
}

impl IdentityState {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityState::Pending => "pending",
            IdentityState::Enrolled => "enrolled",
            IdentityState::Revoked => "revoked",
        }
    }
}

/// One name's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerIdentity {
    pub name: String,
    /// `slave` or `hypervisor`.
    pub role: String,
    pub state: IdentityState,
    /// The public key (hex) enrolled, or asking to be.
    pub public_key: String,
    /// SHA-256 (hex) of the certificate in force.
    pub fingerprint: Option<String>,
    /// The certificate chain issued for `public_key`, kept so that a peer approved while it
    /// was away receives it at its next attempt.
    pub certificate: Option<String>,
    pub not_after_unix: Option<i64>,
    /// How it came to this state: "enrollment secret", "approved by an operator", ...
    pub how: String,
    /// The address it last asked or connected from.
    pub address: String,
    pub changed_unix_ms: u64,
    /// Set for a cluster VM enrolled with its token: the record goes when the cluster stops.
    pub cluster: Option<String>,
    /// The certificate this one renewed: still admitted until the new one is first used
    /// (should the welcome that carried the new one have been lost).
    #[serde(default)]
    pub previous_fingerprint: Option<String>,
    /// The name was revoked: only an operator's approval brings it back, however many times
    /// it asks and with whatever secret.
    #[serde(default)]
    pub after_revocation: bool,
}

impl PeerIdentity {
    /// A short name of the key (the first 16 hex digits of its SHA-256) for operators to
    /// compare with what the peer logs.
    pub fn key_id(&self) -> String {
        key_id_of_hex(&self.public_key)
    }
}

/// [`PeerIdentity::key_id`] of a key in hex.
pub fn key_id_of_hex(public_key_hex: &str) -> String {
    let bytes = hex::decode(public_key_hex).unwrap_or_default();
    hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes))[..16].to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum IdentitiesError {
    #[error("{path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path}: cannot write: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// How often changes made with [`Identities::put`] reach the file at most: thousands of
/// peers enrolling at once cost a few writes a second, not one each.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// The record, in memory and on disk.
pub struct Identities {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    records: Mutex<BTreeMap<String, PeerIdentity>>,
    /// Changed since the file was last written.
    dirty: std::sync::atomic::AtomicBool,
    /// One writer of the file at a time.
    writing: Mutex<()>,
}

impl Inner {
    fn records(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PeerIdentity>> {
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes the file as the record is now.
    fn write_now(&self) -> Result<(), IdentitiesError> {
        let _writing = self.writing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.dirty.store(false, std::sync::atomic::Ordering::SeqCst);
        let error = |source| IdentitiesError::Write { path: self.path.clone(), source };
        let bytes = {
            let records = self.records();
            let list: Vec<&PeerIdentity> = records.values().collect();
            serde_json::to_vec_pretty(&list).map_err(|e| error(std::io::Error::other(e)))?
        };
        crate::private_file::replace(&self.path, &bytes).map_err(|e| {
            self.dirty.store(true, std::sync::atomic::Ordering::SeqCst);
            error(e)
        })
    }

    fn flush_if_dirty(&self) {
        if self.dirty.load(std::sync::atomic::Ordering::SeqCst) {
            if let Err(err) = self.write_now() {
                tracing::warn!(error = %err, "cannot write the record of peer identities; trying again");
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.flush_if_dirty();
    }
}

impl Identities {
    /// Loads `peers.json` from `state_dir` (none yet: an empty record). A file that cannot be
    /// read stops the master with its name: starting without it would let any name be
    /// taken again.
    pub fn load(state_dir: &Path) -> Result<Identities, IdentitiesError> {
        let path = state_dir.join(IDENTITIES_FILE);
        let records = match std::fs::read(&path) {
            Ok(bytes) => {
                let list: Vec<PeerIdentity> = serde_json::from_slice(&bytes).map_err(|e| {
                    IdentitiesError::Unreadable { path: path.clone(), reason: format!("{e} (restore it from backup)") }
                })?;
                list.into_iter().map(|record| (record.name.clone(), record)).collect()
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(err) => return Err(IdentitiesError::Unreadable { path, reason: err.to_string() }),
        };
        let inner = std::sync::Arc::new(Inner {
            path,
            records: Mutex::new(records),
            dirty: std::sync::atomic::AtomicBool::new(false),
            writing: Mutex::new(()),
        });
        // Writes what `put` changed, until the record is dropped.
        let weak = std::sync::Arc::downgrade(&inner);
        let _ = std::thread::Builder::new().name("peers.json".into()).spawn(move || loop {
            std::thread::sleep(FLUSH_EVERY);
            match weak.upgrade() {
                Some(inner) => inner.flush_if_dirty(),
                None => return,
            }
        });
        Ok(Identities { inner })
    }

    fn records(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PeerIdentity>> {
        self.inner.records()
    }

    pub fn get(&self, name: &str) -> Option<PeerIdentity> {
        self.records().get(name).cloned()
    }

    pub fn list(&self) -> Vec<PeerIdentity> {
        self.records().values().cloned().collect()
    }

    /// Stores `record` under its name (stamped now); the file follows within
    /// [`FLUSH_EVERY`]. For what a crash may lose: an enrollment lost so is made again (the
    /// peer's certificate is refused, it drops it and enrolls anew).
    pub fn put(&self, mut record: PeerIdentity) {
        record.changed_unix_ms = now_ms();
        self.records().insert(record.name.clone(), record);
        self.inner.dirty.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stores `record` and writes the file before returning: an operator's decision, a
    /// renewal. On a write failure the record is as before.
    pub fn put_now(&self, mut record: PeerIdentity) -> Result<(), IdentitiesError> {
        record.changed_unix_ms = now_ms();
        let name = record.name.clone();
        let old = self.records().insert(name.clone(), record);
        self.inner.write_now().inspect_err(|_| {
            let mut records = self.records();
            match old {
                Some(old) => records.insert(name, old),
                None => records.remove(&name),
            };
        })
    }

    /// Records a new request to enroll, unless [`MAX_PENDING`] wait already; false when it
    /// was not recorded.
    pub fn put_pending(&self, mut record: PeerIdentity) -> bool {
        let mut records = self.records();
        let pending = records.values().filter(|r| r.state == IdentityState::Pending).count();
        if !records.contains_key(&record.name) && pending >= MAX_PENDING {
            return false;
        }
        record.changed_unix_ms = now_ms();
        records.insert(record.name.clone(), record);
        self.inner.dirty.store(true, std::sync::atomic::Ordering::SeqCst);
        true
    }

    /// Removes the records of the VMs of `cluster`; returns their names.
    pub fn remove_cluster(&self, cluster: &str) -> Vec<String> {
        let mut records = self.records();
        let gone: Vec<String> =
            records.values().filter(|r| r.cluster.as_deref() == Some(cluster)).map(|r| r.name.clone()).collect();
        for name in &gone {
            records.remove(name);
        }
        if !gone.is_empty() {
            self.inner.dirty.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        gone
    }

    /// Writes what is not written yet (at shutdown, and in tests).
    pub fn flush(&self) -> Result<(), IdentitiesError> {
        match self.inner.dirty.load(std::sync::atomic::Ordering::SeqCst) {
            true => self.inner.write_now(),
            false => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn record(name: &str, state: IdentityState) -> PeerIdentity {
        PeerIdentity {
            name: name.into(),
            role: "slave".into(),
            state,
            public_key: "04ab".into(),
            fingerprint: None,
            certificate: None,
            not_after_unix: None,
            how: "test".into(),
            address: "127.0.0.1:1".into(),
            changed_unix_ms: 0,
            cluster: None,
            previous_fingerprint: None,
            after_revocation: false,
        }
    }

    #[test]
    fn records_survive_a_reload_and_cluster_vms_go_with_their_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let identities = Identities::load(dir.path()).unwrap();
        identities.put_now(record("s1", IdentityState::Enrolled)).unwrap();
        identities.put(PeerIdentity { cluster: Some("c1".into()), ..record("vm1", IdentityState::Enrolled) });
        identities.flush().unwrap();
        let again = Identities::load(dir.path()).unwrap();
        assert_eq!(again.list().len(), 2);
        assert_eq!(again.remove_cluster("c1"), ["vm1"]);
        // Written by the background flush, without being asked.
        std::thread::sleep(FLUSH_EVERY * 3);
        assert_eq!(Identities::load(dir.path()).unwrap().list().iter().map(|r| &r.name).collect::<Vec<_>>(), ["s1"]);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(IDENTITIES_FILE)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_broken_file_is_named_and_pending_requests_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IDENTITIES_FILE), "[{").unwrap();
        let err = Identities::load(dir.path()).err().unwrap().to_string();
        assert!(err.contains("peers.json"), "{err}");
        std::fs::remove_file(dir.path().join(IDENTITIES_FILE)).unwrap();
        let identities = Identities::load(dir.path()).unwrap();
        for i in 0..MAX_PENDING {
            assert!(identities.put_pending(record(&format!("p{i}"), IdentityState::Pending)));
        }
        assert!(!identities.put_pending(record("one-more", IdentityState::Pending)));
        assert!(identities.put_pending(record("p0", IdentityState::Pending)), "a known name is updated");
    }
}
