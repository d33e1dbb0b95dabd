//! A slave's or hypervisor's own identity: its private key and the certificate the master's
//! CA issued for it, kept in its identity folder (`peer.key`, `peer.crt`).
//!
//! A peer without a certificate makes a key (P-256), sends its public half in the
//! handshake, and saves the certificate the master hands back; from then on it connects
//! with mutual TLS. The key is kept while enrollment waits for an operator, so an approval
//! matches the key that asked. See `docs/peer-identity.md`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const KEY_FILE: &str = "peer.key";
pub const CERT_FILE: &str = "peer.crt";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a usable private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
}

/// What a peer holds: its key, and its certificate once it has one.
#[derive(Clone)]
pub struct Credentials {
    pub key_pem: String,
    /// The uncompressed P-256 public key, as the master certifies it.
    pub public_key: Vec<u8>,
    pub cert_pem: Option<String>,
}

// Written by hand so that the key never reaches a log line.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("has_certificate", &self.cert_pem.is_some()).finish()
    }
}

/// The identity folder of one peer.
#[derive(Debug, Clone)]
pub struct IdentityDir {
    dir: PathBuf,
}

impl IdentityDir {
    pub fn new(dir: impl Into<PathBuf>) -> IdentityDir {
        IdentityDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The key and certificate; a new key (and no certificate) when there is no key yet.
    pub fn load_or_create(&self) -> Result<Credentials, IdentityError> {
        let key_path = self.dir.join(KEY_FILE);
        let key_pem = match fs::read_to_string(&key_path) {
            Ok(pem) => pem,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => self.create_key(&key_path)?,
            Err(source) => return Err(IdentityError::Io { path: key_path, source }),
        };
        let key = rcgen::KeyPair::from_pem(&key_pem)
            .map_err(|e| IdentityError::BadKey { path: key_path.clone(), reason: e.to_string() })?;
        if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(IdentityError::BadKey { path: key_path, reason: "not a P-256 key".into() });
        }
        let cert_path = self.dir.join(CERT_FILE);
        let cert_pem = match fs::read_to_string(&cert_path) {
            Ok(pem) if !pem.trim().is_empty() => Some(pem),
            Ok(_) => None,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(IdentityError::Io { path: cert_path, source }),
        };
        Ok(Credentials { public_key: key.public_key_raw().to_vec(), key_pem, cert_pem })
    }

    fn create_key(&self, key_path: &Path) -> Result<String, IdentityError> {
        create_private_dir(&self.dir).map_err(io(&self.dir))?;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| IdentityError::BadKey { path: key_path.to_path_buf(), reason: e.to_string() })?;
        let pem = key.serialize_pem();
        write_private(key_path, pem.as_bytes()).map_err(io(key_path))?;
        Ok(pem)
    }

    /// Keeps the certificate the master issued (replacing an older one).
    pub fn save_certificate(&self, chain_pem: &str) -> Result<(), IdentityError> {
        let path = self.dir.join(CERT_FILE);
        let temp = self.dir.join(format!("{CERT_FILE}.new"));
        let _ = fs::remove_file(&temp);
        write_private(&temp, chain_pem.as_bytes()).map_err(io(&temp))?;
        fs::rename(&temp, &path).map_err(io(&path))
    }

    /// Drops the certificate only (it expired): the next connection asks with the same key.
    pub fn forget_certificate(&self) -> Result<(), IdentityError> {
        remove_if_present(&self.dir.join(CERT_FILE))
    }

    /// Drops key and certificate (the master refused them): the next connection enrolls
    /// with a new key.
    pub fn forget(&self) -> Result<(), IdentityError> {
        remove_if_present(&self.dir.join(CERT_FILE))?;
        remove_if_present(&self.dir.join(KEY_FILE))
    }
}

fn remove_if_present(path: &Path) -> Result<(), IdentityError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(IdentityError::Io { path: path.to_path_buf(), source }),
    }
}

/// A fresh public key whose private half is thrown away: for tools and tests that speak the
/// handshake by hand and only need this one connection (the certificate they get is useless).
pub fn throwaway_public_key() -> Vec<u8> {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map(|key| key.public_key_raw().to_vec())
        .unwrap_or_default()
}

/// The error of an I/O step on `path`.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError {
    let path = path.to_path_buf();
    move |source| IdentityError::Io { path, source }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Writes a new file that only its owner may read (created so, never widened afterwards),
/// and syncs it.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_kept_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let identity = IdentityDir::new(dir.path().join("identity"));
        let first = identity.load_or_create().unwrap();
        assert_eq!(first.public_key.len(), 65);
        assert!(first.cert_pem.is_none());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(dir.path().join("identity").join(KEY_FILE)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let again = identity.load_or_create().unwrap();
        assert_eq!(again.public_key, first.public_key, "the same key while enrollment waits");
        identity.save_certificate("CERT").unwrap();
        identity.save_certificate("CERT2").unwrap();
        assert_eq!(identity.load_or_create().unwrap().cert_pem.as_deref(), Some("CERT2"));
        identity.forget().unwrap();
        let fresh = identity.load_or_create().unwrap();
        assert!(fresh.cert_pem.is_none());
        assert_ne!(fresh.public_key, first.public_key);
    }
}
