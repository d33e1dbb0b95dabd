//! API tokens with a scope and an end, made with `xrdtest token create` (docs/api.md,
//! "Tokens"). Only a token's SHA-256 is kept: `tokens.json` in the state directory, mode
//! 0600, written whole on every change. The `api_token` of `master.toml`, if any, is an
//! admin token that never ends.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use xrdtest_proto::handshake::secrets_match;

use crate::model::now_ms;

pub const TOKENS_FILE: &str = "tokens.json";
/// Tokens kept at most.
pub const MAX_TOKENS: usize = 1000;

/// What a token may do; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read everything the API serves (with `require_login`).
    Read,
    /// Also start and cancel runs, start and stop clusters.
    Run,
    /// Also approve and revoke peers, make and revoke tokens.
    Admin,
}

impl Scope {
    pub fn parse(text: &str) -> Result<Scope, String> {
        match text {
            "read" => Ok(Scope::Read),
            "run" => Ok(Scope::Run),
            "admin" => Ok(Scope::Admin),
            other => Err(format!("unknown scope `{other}`: read, run or admin")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Run => "run",
            Scope::Admin => "admin",
        }
    }
}

/// A token as kept: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: String,
    pub scope: Scope,
    /// SHA-256 (hex) of the whole token.
    pub sha256: String,
    pub created_unix_ms: u64,
    /// `None`: it never ends.
    pub expires_unix_ms: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path}: cannot write: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("a token named `{0}` exists: revoke it first or pick another name")]
    Exists(String),
    #[error("no token is named `{0}`")]
    Unknown(String),
    #[error("a token name is 1 to 64 letters, digits, `.`, `-` or `_`")]
    BadName,
    #[error("{MAX_TOKENS} tokens exist: revoke some first")]
    Full,
    #[error("no random numbers for a token")]
    Random,
}

pub struct TokenStore {
    path: PathBuf,
    records: Mutex<Vec<TokenRecord>>,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}

impl TokenStore {
    /// Loads `tokens.json` from `state_dir` (none yet: no tokens). A file that cannot be read
    /// stops the master with its name.
    pub fn load(state_dir: &Path) -> Result<TokenStore, TokenError> {
        let path = state_dir.join(TOKENS_FILE);
        let records = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| TokenError::Unreadable {
                path: path.clone(),
                reason: format!("{e} (restore it from backup, or remove it to drop every token)"),
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(err) => return Err(TokenError::Unreadable { path, reason: err.to_string() }),
        };
        Ok(TokenStore { path, records: Mutex::new(records) })
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Vec<TokenRecord>> {
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The scope of `given`, if it is a token in force.
    pub fn scope_of(&self, given: &str, now_unix_ms: u64) -> Option<Scope> {
        let digest = sha256_hex(given);
        self.records()
            .iter()
            .filter(|r| r.expires_unix_ms.is_none_or(|end| end > now_unix_ms))
            .find(|r| secrets_match(&r.sha256, &digest))
            .map(|r| r.scope)
    }

    pub fn is_empty(&self) -> bool {
        self.records().is_empty()
    }

    pub fn list(&self) -> Vec<TokenRecord> {
        self.records().clone()
    }

    /// Makes a token; returns it (shown once, never kept) and its record.
    pub fn create(
        &self,
        name: &str,
        scope: Scope,
        lifetime_ms: Option<u64>,
    ) -> Result<(String, TokenRecord), TokenError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !valid {
            return Err(TokenError::BadName);
        }
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(|_| TokenError::Random)?;
        let token = format!("xrdt_{}", hex::encode(bytes));
        let now = now_ms();
        let record = TokenRecord {
            name: name.to_string(),
            scope,
            sha256: sha256_hex(&token),
            created_unix_ms: now,
            expires_unix_ms: lifetime_ms.map(|ms| now.saturating_add(ms)),
        };
        let mut records = self.records();
        if records.iter().any(|r| r.name == name) {
            return Err(TokenError::Exists(name.to_string()));
        }
        if records.len() >= MAX_TOKENS {
            return Err(TokenError::Full);
        }
        let mut changed = records.clone();
        changed.push(record.clone());
        self.write(&changed)?;
        *records = changed;
        Ok((token, record))
    }

    pub fn revoke(&self, name: &str) -> Result<(), TokenError> {
        let mut records = self.records();
        if !records.iter().any(|r| r.name == name) {
            return Err(TokenError::Unknown(name.to_string()));
        }
        let changed: Vec<TokenRecord> = records.iter().filter(|r| r.name != name).cloned().collect();
        self.write(&changed)?;
        *records = changed;
        Ok(())
    }

    fn write(&self, records: &[TokenRecord]) -> Result<(), TokenError> {
        let error = |source| TokenError::Write { path: self.path.clone(), source };
        let bytes = serde_json::to_vec_pretty(records).map_err(|e| error(std::io::Error::other(e)))?;
        crate::private_file::replace(&self.path, &bytes).map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_a_scope_an_end_and_only_their_hash_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::load(dir.path()).unwrap();
        let (ci, record) = store.create("ci", Scope::Run, None).unwrap();
        let (short, _) = store.create("short", Scope::Read, Some(1000)).unwrap();
        assert!(ci.starts_with("xrdt_") && ci.len() == 69, "{ci}");
        let file = std::fs::read_to_string(dir.path().join(TOKENS_FILE)).unwrap();
        assert!(!file.contains(&ci) && file.contains(&record.sha256), "only the hash is kept");
        let now = now_ms();
        assert_eq!(store.scope_of(&ci, now), Some(Scope::Run));
        assert_eq!(store.scope_of(&short, now), Some(Scope::Read));
        assert_eq!(store.scope_of(&short, now + 2000), None, "it ended");
        assert_eq!(store.scope_of("xrdt_guess", now), None);
        assert!(matches!(store.create("ci", Scope::Admin, None), Err(TokenError::Exists(_))));
        assert!(matches!(store.create("a b", Scope::Admin, None), Err(TokenError::BadName)));
        // A restart keeps them; a revocation ends one at once.
        let again = TokenStore::load(dir.path()).unwrap();
        assert_eq!(again.scope_of(&ci, now), Some(Scope::Run));
        again.revoke("ci").unwrap();
        assert_eq!(again.scope_of(&ci, now), None);
        assert!(matches!(again.revoke("ci"), Err(TokenError::Unknown(_))));
        assert!(Scope::Admin > Scope::Run && Scope::Run > Scope::Read);
    }
}
