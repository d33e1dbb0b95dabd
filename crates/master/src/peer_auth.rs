//! Who may connect under which name and role (`docs/peer-identity.md`).
//!
//! A peer with a client certificate of the master's CA is admitted when the record
//! ([`Identities`]) has that very certificate enrolled for its name and role. A peer without
//! one sends a public key and something that lets it enroll: the enrollment secret (when
//! `enroll = "secret"`), or the token its hypervisor gave the VM. It then receives a
//! certificate for that key. Without either, its request waits for an operator
//! (`xrdtest peers approve NAME`). In `peer_auth = "shared-secret"` (the compatibility
//! mode) the secret alone admits any name, as before certificates.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use tracing::{info, warn};
use xrdtest_proto::handshake::secrets_match;
use xrdtest_proto::pki::{check_peer_public_key, CertificateAuthority, PEER_RENEW_DAYS};
use xrdtest_proto::{GuestCredentials, Hello, RefusalReason};

use crate::config::{EnrollMode, MasterConfig, PeerAuthMode};
use crate::identities::{Identities, IdentitiesError, IdentityState, PeerIdentity};

/// What the master answers a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Welcome, with the certificate to hand it when one was issued or renewed.
    Admit {
        certificate: Option<String>,
    },
    /// Not admitted on this connection: it gets its certificate and connects again with it.
    HandCertificate {
        certificate: String,
    },
    Refuse {
        reason: RefusalReason,
        message: String,
    },
}

/// Why an operator's request could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("no peer named `{0}` asked to enroll")]
    Unknown(String),
    #[error("`{name}` is {state}, not waiting for approval")]
    NotPending { name: String, state: &'static str },
    #[error("`{0}` is not enrolled")]
    NotEnrolled(String),
    #[error("issuing the certificate: {0}")]
    Issue(String),
    #[error(transparent)]
    Store(#[from] IdentitiesError),
}

/// A VM's enrollment token and the cluster it belongs to.
#[derive(Debug, Clone)]
struct Grant {
    token: String,
    cluster: String,
}

pub struct PeerAuth {
    ca: CertificateAuthority,
    pub identities: Identities,
    secret: Option<String>,
    enroll: EnrollMode,
    mode: PeerAuthMode,
    /// Per VM name, while its cluster runs.
    grants: Mutex<HashMap<String, Grant>>,
}

/// How an operator's approval is recorded (and told from enrollments by secret or token).
const APPROVED: &str = "approved by an operator";

fn refuse(reason: RefusalReason, message: impl Into<String>) -> Verdict {
    Verdict::Refuse { reason, message: message.into() }
}

fn unix_now() -> i64 {
    (crate::model::now_ms() / 1000) as i64
}

/// Why the CA or the record of identities cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("certificate authority: {0}")]
    Ca(#[from] xrdtest_proto::pki::PkiError),
    #[error(transparent)]
    Identities(#[from] IdentitiesError),
}

impl PeerAuth {
    /// The CA (made on the first start) and the record of identities of the state
    /// directory, with the configuration's secret and modes.
    pub fn open(config: &MasterConfig) -> Result<PeerAuth, OpenError> {
        let ca = CertificateAuthority::load_or_create(&config.state_dir)?;
        let identities = Identities::load(&config.state_dir)?;
        Ok(PeerAuth::new(ca, identities, config.secret.clone(), config.enroll, config.peer_auth))
    }

    pub fn new(
        ca: CertificateAuthority,
        identities: Identities,
        secret: Option<String>,
        enroll: EnrollMode,
        mode: PeerAuthMode,
    ) -> PeerAuth {
        PeerAuth { ca, identities, secret: secret.filter(|s| !s.is_empty()), enroll, mode, grants: Mutex::default() }
    }

    /// The master's certificate authority.
    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    fn secret_matches(&self, given: &str) -> bool {
        self.secret.as_deref().is_some_and(|secret| secrets_match(secret, given))
    }

    fn grants(&self) -> std::sync::MutexGuard<'_, HashMap<String, Grant>> {
        self.grants.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Decides on a peer that said `hello` from `address`, presenting `client_cert` (DER)
    /// if it had one.
    pub fn authenticate(&self, hello: &Hello, client_cert: Option<&[u8]>, address: SocketAddr) -> Verdict {
        let role = hello.role.as_str();
        let name = hello.name.as_str();
        if let Some(der) = client_cert {
            return self.by_certificate(name, role, der, address);
        }
        if self.mode == PeerAuthMode::SharedSecret && self.secret_matches(&hello.secret) {
            // Compatibility: the secret admits, as before certificates. A peer that sends a
            // key gets enrolled too, ready for the day the mode is switched off.
            let certificate = match &hello.enroll_key {
                Some(key) if self.identities.get(name).is_none() => self
                    .enroll(name, role, key, "enrollment secret (shared-secret mode)", address, None)
                    .map_err(|err| warn!(peer = name, error = %err, "cannot enroll a peer in shared-secret mode"))
                    .ok(),
                _ => None,
            };
            return Verdict::Admit { certificate };
        }
        let Some(key) = &hello.enroll_key else {
            return refuse(
                RefusalReason::BadSecret,
                "this master admits peers by certificate: give the peer an identity folder so that it can enroll",
            );
        };
        if let Err(problem) = check_peer_public_key(key) {
            return refuse(RefusalReason::BadSecret, format!("cannot enroll: {problem}"));
        }
        let key_hex = hex::encode(key);
        let existing = self.identities.get(name);
        // A VM's token, when its hypervisor gave it one for this name (slaves only).
        let grant =
            self.grants().get(name).cloned().filter(|g| role == "slave" && secrets_match(&g.token, &hello.secret));
        if let Some(record) = existing.as_ref().filter(|r| r.state == IdentityState::Enrolled) {
            if record.public_key == key_hex && record.role == role {
                // Approved while it waited, or it lost the certificate of an earlier
                // welcome, or that one expired. A public key proves nothing: it gets its
                // certificate (a new one for the same key if that one has expired: only
                // then, so asking again and again never replaces a certificate in use), and
                // gets in only by presenting it (which needs the private key).
                if record.not_after_unix.is_some_and(|end| end <= unix_now()) {
                    return match self.reissue(record.clone(), name, role, address) {
                        Ok(certificate) => Verdict::HandCertificate { certificate },
                        Err(err) => {
                            refuse(RefusalReason::CertificateRefused, format!("cannot issue a certificate: {err}"))
                        }
                    };
                }
                return match &record.certificate {
                    Some(certificate) => Verdict::HandCertificate { certificate: certificate.clone() },
                    None => refuse(RefusalReason::CertificateRefused, format!("`{name}` has no certificate on record")),
                };
            }
            // A VM of a cluster started again takes its name back with its new token.
            if record.cluster.is_none() || grant.is_none() {
                return refuse(
                    RefusalReason::NameTaken,
                    format!(
                        "{} `{name}` is enrolled with another key; if this machine was reinstalled, an operator runs \
                         `xrdtest peers revoke {name}` and then approves it",
                        record.role
                    ),
                );
            }
        }
        let after_revocation =
            existing.as_ref().is_some_and(|r| r.state == IdentityState::Revoked || r.after_revocation);
        if let Some(grant) = grant {
            let how = format!("token of cluster {}", grant.cluster);
            return match self.enroll(name, role, key, &how, address, Some(grant.cluster.clone())) {
                Ok(certificate) => Verdict::Admit { certificate: Some(certificate) },
                Err(err) => refuse(RefusalReason::BadSecret, format!("cannot enroll: {err}")),
            };
        }
        if !after_revocation && self.enroll == EnrollMode::Secret && self.secret_matches(&hello.secret) {
            return match self.enroll(name, role, key, "enrollment secret", address, None) {
                Ok(certificate) => Verdict::Admit { certificate: Some(certificate) },
                Err(err) => refuse(RefusalReason::BadSecret, format!("cannot enroll: {err}")),
            };
        }
        self.wait_for_approval(name, role, key_hex, address, after_revocation, existing.as_ref(), &hello.secret)
    }

    fn by_certificate(&self, name: &str, role: &str, der: &[u8], address: SocketAddr) -> Verdict {
        let fingerprint = xrdtest_proto::tls::fingerprint(der);
        let record = self.identities.get(name);
        let current = |r: &PeerIdentity| r.fingerprint.as_deref() == Some(fingerprint.as_str());
        let previous = |r: &PeerIdentity| r.previous_fingerprint.as_deref() == Some(fingerprint.as_str());
        let problem = match &record {
            None => format!("no {role} `{name}` is enrolled"),
            Some(r) if r.state == IdentityState::Revoked => format!("the certificate of `{name}` is revoked"),
            Some(r) if !current(r) && !previous(r) => format!("this certificate is not the one enrolled for `{name}`"),
            Some(r) if r.role != role => format!("`{name}` is enrolled as a {}, not a {role}", r.role),
            Some(r) if r.state != IdentityState::Enrolled => format!("`{name}` is {}", r.state.as_str()),
            Some(_) => String::new(),
        };
        let Some(mut record) = record.filter(|_| problem.is_empty()) else {
            return refuse(RefusalReason::CertificateRefused, problem);
        };
        if previous(&record) {
            // Renewed, but the new certificate never arrived: it gets it again.
            return Verdict::Admit { certificate: record.certificate.clone() };
        }
        if record.previous_fingerprint.is_some() {
            // The renewed certificate is in use: the old one is done.
            record.previous_fingerprint = None;
            self.identities.put(record.clone());
        }
        // Renewed for the same key when it runs out soon: peers never need a hand for it.
        if !expiring(&record) {
            return Verdict::Admit { certificate: None };
        }
        match self.reissue(record, name, role, address) {
            Ok(certificate) => {
                info!(peer = name, role, "certificate renewed");
                Verdict::Admit { certificate: Some(certificate) }
            }
            Err(err) => {
                warn!(peer = name, error = %err, "cannot renew a certificate");
                Verdict::Admit { certificate: None }
            }
        }
    }

    /// A new certificate for an enrolled peer's key, on record at once (the old one stays
    /// valid until the new one is first used): a peer holding a certificate the master
    /// forgot would be locked out.
    fn reissue(&self, record: PeerIdentity, name: &str, role: &str, address: SocketAddr) -> Result<String, String> {
        let key = hex::decode(&record.public_key).map_err(|e| e.to_string())?;
        let issued = self.ca.issue_peer_certificate(&key, name, role).map_err(|e| e.to_string())?;
        let update = PeerIdentity {
            previous_fingerprint: record.fingerprint.clone(),
            fingerprint: Some(issued.fingerprint),
            certificate: Some(issued.chain_pem.clone()),
            not_after_unix: Some(issued.not_after_unix),
            address: address.to_string(),
            ..record
        };
        self.identities.put_now(update).map_err(|e| e.to_string())?;
        Ok(issued.chain_pem)
    }

    #[allow(clippy::too_many_arguments)]
    fn wait_for_approval(
        &self,
        name: &str,
        role: &str,
        key_hex: String,
        address: SocketAddr,
        after_revocation: bool,
        existing: Option<&PeerIdentity>,
        secret: &str,
    ) -> Verdict {
        let key_id = crate::identities::key_id_of_hex(&key_hex);
        match existing.filter(|r| r.state == IdentityState::Pending) {
            Some(waiting) if waiting.public_key == key_hex && waiting.role == role => {}
            // One request per name: a second key does not silently take the place of the
            // one the operator may be about to approve.
            Some(waiting) => {
                return refuse(
                    RefusalReason::AwaitingApproval,
                    format!(
                        "another key ({}) already waits for approval as `{name}`; this one is {key_id}. An operator \
                         approves the right one, or revokes the name to let a new request in",
                        waiting.key_id()
                    ),
                )
            }
            None => {
                let record = PeerIdentity {
                    name: name.to_string(),
                    role: role.to_string(),
                    state: IdentityState::Pending,
                    public_key: key_hex,
                    fingerprint: None,
                    certificate: None,
                    not_after_unix: None,
                    how: match after_revocation {
                        true => "asked again after a revocation".into(),
                        false => "asked to enroll".into(),
                    },
                    address: address.to_string(),
                    changed_unix_ms: 0,
                    // A cluster VM's name stays its cluster's: the request goes with it.
                    cluster: existing.and_then(|r| r.cluster.clone()),
                    previous_fingerprint: None,
                    after_revocation,
                };
                if !self.identities.put_pending(record) {
                    return refuse(RefusalReason::AwaitingApproval, "too many peers wait for approval");
                }
                info!(peer = name, role, %address, key = %key_id, "a peer asks to enroll; waiting for an operator");
            }
        }
        let why = match (after_revocation, secret.is_empty(), self.enroll) {
            (true, _, _) => format!("`{name}` was revoked"),
            (false, true, _) => "no enrollment secret was given".to_string(),
            (false, false, EnrollMode::Secret) => "the enrollment secret (or the VM's token) is not valid".to_string(),
            (false, false, EnrollMode::Approve) => "this master enrolls by approval only".to_string(),
        };
        refuse(
            RefusalReason::AwaitingApproval,
            format!(
                "{why}: waiting for an operator to run `xrdtest peers approve {name}` (or approve it on the dashboard); \
                 this peer's key is {key_id}"
            ),
        )
    }

    /// Issues a certificate for `key` and records the name as enrolled with it.
    fn enroll(
        &self,
        name: &str,
        role: &str,
        key: &[u8],
        how: &str,
        address: SocketAddr,
        cluster: Option<String>,
    ) -> Result<String, ApprovalError> {
        let issued =
            self.ca.issue_peer_certificate(key, name, role).map_err(|e| ApprovalError::Issue(e.to_string()))?;
        let record = PeerIdentity {
            name: name.to_string(),
            role: role.to_string(),
            state: IdentityState::Enrolled,
            public_key: hex::encode(key),
            fingerprint: Some(issued.fingerprint),
            certificate: Some(issued.chain_pem.clone()),
            not_after_unix: Some(issued.not_after_unix),
            how: how.to_string(),
            address: address.to_string(),
            changed_unix_ms: 0,
            cluster,
            previous_fingerprint: None,
            after_revocation: false,
        };
        // An operator's approval is written at once; an enrollment by secret or token within
        // a moment (one lost by a crash is made again: the peer's certificate is refused, it
        // drops it and enrolls anew).
        match self.enroll_is_durable(how) {
            true => self.identities.put_now(record)?,
            false => self.identities.put(record),
        }
        info!(peer = name, role, how, "certificate issued");
        Ok(issued.chain_pem)
    }

    fn enroll_is_durable(&self, how: &str) -> bool {
        how == APPROVED
    }

    /// An operator approves a waiting request: its key gets a certificate, which the peer
    /// receives at its next attempt.
    pub fn approve(&self, name: &str) -> Result<(), ApprovalError> {
        let record = self.identities.get(name).ok_or_else(|| ApprovalError::Unknown(name.to_string()))?;
        if record.state != IdentityState::Pending {
            return Err(ApprovalError::NotPending { name: name.to_string(), state: record.state.as_str() });
        }
        let key =
            hex::decode(&record.public_key).map_err(|_| ApprovalError::Issue("a stored key is not hex".into()))?;
        let address = record.address.parse().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        self.enroll(name, &record.role, &key, APPROVED, address, None).map(|_| ())
    }

    /// An operator revokes a name: its certificate is refused from now on (the caller drops
    /// its connection), a VM's token for it ends, and it enrolls again only by approval.
    pub fn revoke(&self, name: &str) -> Result<(), ApprovalError> {
        let record = self.identities.get(name).ok_or_else(|| ApprovalError::NotEnrolled(name.to_string()))?;
        self.grants().remove(name);
        self.identities.put_now(PeerIdentity {
            state: IdentityState::Revoked,
            certificate: None,
            previous_fingerprint: None,
            after_revocation: true,
            how: "revoked by an operator".into(),
            ..record
        })?;
        warn!(peer = name, "peer revoked");
        Ok(())
    }

    /// Tokens for the VMs of a cluster about to start (each replaces an older one of the
    /// same name).
    pub fn grant_cluster(&self, cluster: &str, hosts: impl IntoIterator<Item = String>) -> GuestCredentials {
        let rng = ring::rand::SystemRandom::new();
        let mut credentials = GuestCredentials::default();
        let mut grants = self.grants();
        for host in hosts {
            let mut bytes = [0u8; 32];
            if ring::rand::SecureRandom::fill(&rng, &mut bytes).is_err() {
                continue;
            }
            let token = format!("vm-{}", hex::encode(bytes));
            grants.insert(host.clone(), Grant { token: token.clone(), cluster: cluster.to_string() });
            credentials.0.insert(host, token);
        }
        credentials
    }

    /// The cluster stopped: its tokens and its VMs' identities go.
    pub fn end_cluster(&self, cluster: &str) {
        self.grants().retain(|_, grant| grant.cluster != cluster);
        let names = self.identities.remove_cluster(cluster);
        if !names.is_empty() {
            info!(cluster, vms = ?names, "identities of the cluster's VMs removed");
        }
    }
}

/// Whether a peer's certificate on record runs out within [`PEER_RENEW_DAYS`] (or has).
fn expiring(record: &PeerIdentity) -> bool {
    record.not_after_unix.is_some_and(|end| end - unix_now() < PEER_RENEW_DAYS * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xrdtest_proto::Role;

    const SECRET: &str = "enroll-me";

    fn auth(dir: &std::path::Path, enroll: EnrollMode, mode: PeerAuthMode) -> PeerAuth {
        let ca = CertificateAuthority::load_or_create(dir).unwrap();
        PeerAuth::new(ca, Identities::load(dir).unwrap(), Some(SECRET.into()), enroll, mode)
    }

    fn address() -> SocketAddr {
        "192.0.2.7:40000".parse().unwrap()
    }

    fn hello(name: &str, secret: &str, key: Option<&[u8]>) -> Hello {
        Hello { enroll_key: key.map(<[u8]>::to_vec), ..Hello::new(Role::Slave, name, secret) }
    }

    /// The DER of the first certificate of a PEM chain.
    fn der(chain: &str) -> Vec<u8> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        tokio_rustls::rustls::pki_types::CertificateDer::pem_slice_iter(chain.as_bytes())
            .next()
            .unwrap()
            .unwrap()
            .to_vec()
    }

    fn admitted(verdict: Verdict) -> Option<String> {
        match verdict {
            Verdict::Admit { certificate } => certificate,
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    fn handed(verdict: Verdict) -> String {
        match verdict {
            Verdict::HandCertificate { certificate } => certificate,
            other => panic!("expected its certificate handed, not a welcome, got {other:?}"),
        }
    }

    fn refused(verdict: Verdict) -> (RefusalReason, String) {
        match verdict {
            Verdict::Refuse { reason, message } => (reason, message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_secret_enrolls_a_new_name_once_and_then_only_its_certificate_uses_it() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path(), EnrollMode::Secret, PeerAuthMode::Certificate);
        let key = xrdtest_proto::identity::throwaway_public_key();
        let chain = admitted(auth.authenticate(&hello("s1", SECRET, Some(&key)), None, address())).unwrap();
        assert_eq!(auth.identities.get("s1").unwrap().state, IdentityState::Enrolled);
        // Its certificate admits it, without any secret.
        assert_eq!(admitted(auth.authenticate(&hello("s1", "", None), Some(&der(&chain)), address())), None);
        // Not under another name, nor as another role.
        let (reason, message) = refused(auth.authenticate(&hello("s2", "", None), Some(&der(&chain)), address()));
        assert_eq!(reason, RefusalReason::CertificateRefused, "{message}");
        let hypervisor = Hello { role: Role::Hypervisor, ..hello("s1", "", None) };
        assert_eq!(
            refused(auth.authenticate(&hypervisor, Some(&der(&chain)), address())).0,
            RefusalReason::CertificateRefused
        );
        // The secret with another key cannot take the name.
        let other = xrdtest_proto::identity::throwaway_public_key();
        let (reason, message) = refused(auth.authenticate(&hello("s1", SECRET, Some(&other)), None, address()));
        assert_eq!(reason, RefusalReason::NameTaken);
        assert!(message.contains("xrdtest peers revoke s1"), "{message}");
        // The secret alone (no key) admits nobody.
        assert_eq!(refused(auth.authenticate(&hello("s3", SECRET, None), None, address())).0, RefusalReason::BadSecret);
    }

    #[test]
    fn without_the_secret_a_request_waits_for_approval_and_revocation_needs_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path(), EnrollMode::Approve, PeerAuthMode::Certificate);
        let key = xrdtest_proto::identity::throwaway_public_key();
        // In approve mode even the right secret only asks.
        let (reason, message) = refused(auth.authenticate(&hello("s1", SECRET, Some(&key)), None, address()));
        assert_eq!(reason, RefusalReason::AwaitingApproval);
        assert!(message.contains("xrdtest peers approve s1"), "{message}");
        let pending = auth.identities.get("s1").unwrap();
        assert_eq!((pending.state, pending.address.as_str()), (IdentityState::Pending, "192.0.2.7:40000"));
        auth.approve("s1").unwrap();
        assert!(matches!(auth.approve("s1"), Err(ApprovalError::NotPending { .. })));
        // The next attempt with the same key receives the certificate, and gets in only by
        // presenting it: a public key proves nothing.
        let chain = handed(auth.authenticate(&hello("s1", "", Some(&key)), None, address()));
        handed(auth.authenticate(&hello("s1", SECRET, Some(&key)), None, address()));
        admitted(auth.authenticate(&hello("s1", "", None), Some(&der(&chain)), address()));
        auth.revoke("s1").unwrap();
        let (reason, message) = refused(auth.authenticate(&hello("s1", "", None), Some(&der(&chain)), address()));
        assert_eq!(reason, RefusalReason::CertificateRefused);
        assert!(message.contains("revoked"), "{message}");
        assert!(matches!(auth.approve("nobody"), Err(ApprovalError::Unknown(_))));
    }

    #[test]
    fn a_revoked_name_does_not_come_back_with_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path(), EnrollMode::Secret, PeerAuthMode::Certificate);
        let key = xrdtest_proto::identity::throwaway_public_key();
        admitted(auth.authenticate(&hello("s1", SECRET, Some(&key)), None, address()));
        auth.revoke("s1").unwrap();
        let fresh = xrdtest_proto::identity::throwaway_public_key();
        let (reason, message) = refused(auth.authenticate(&hello("s1", SECRET, Some(&fresh)), None, address()));
        assert_eq!(reason, RefusalReason::AwaitingApproval);
        assert!(message.contains("was revoked"), "{message}");
        // However many times it asks, the secret does not bring it back.
        for _ in 0..3 {
            let (reason, _) = refused(auth.authenticate(&hello("s1", SECRET, Some(&fresh)), None, address()));
            assert_eq!(reason, RefusalReason::AwaitingApproval);
        }
        auth.approve("s1").unwrap();
        handed(auth.authenticate(&hello("s1", "", Some(&fresh)), None, address()));
        // The record survives a restart of the master.
        let reloaded = Identities::load(dir.path()).unwrap().get("s1").unwrap();
        assert_eq!((reloaded.state, reloaded.how.as_str()), (IdentityState::Enrolled, "approved by an operator"));
    }

    #[test]
    fn a_second_key_does_not_take_the_place_of_a_waiting_one() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path(), EnrollMode::Approve, PeerAuthMode::Certificate);
        let first = xrdtest_proto::identity::throwaway_public_key();
        let second = xrdtest_proto::identity::throwaway_public_key();
        let (_, message) = refused(auth.authenticate(&hello("s1", "", Some(&first)), None, address()));
        let first_id = auth.identities.get("s1").unwrap().key_id();
        assert!(message.contains(&first_id), "the peer is told its key id: {message}");
        let (reason, message) = refused(auth.authenticate(&hello("s1", "", Some(&second)), None, address()));
        assert_eq!(reason, RefusalReason::AwaitingApproval);
        assert!(message.contains("another key") && message.contains(&first_id), "{message}");
        assert_eq!(auth.identities.get("s1").unwrap().key_id(), first_id, "the first request stays");
        auth.approve("s1").unwrap();
        handed(auth.authenticate(&hello("s1", "", Some(&first)), None, address()));
        assert_eq!(
            refused(auth.authenticate(&hello("s1", "", Some(&second)), None, address())).0,
            RefusalReason::NameTaken
        );
    }

    #[test]
    fn an_expired_certificate_is_replaced_for_the_same_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path(), EnrollMode::Approve, PeerAuthMode::Certificate);
        let key = xrdtest_proto::identity::throwaway_public_key();
        let ca_pem = auth.ca().cert_pem().to_string();
        refused(auth.authenticate(&hello("s1", "", Some(&key)), None, address()));
        auth.approve("s1").unwrap();
        // As if 825 days had passed: the certificate on record (and the peer's) ran out.
        let expired = auth.ca().issue_peer_certificate_valid(&key, "s1", "slave", -30, -1).unwrap();
        let mut record = auth.identities.get("s1").unwrap();
        record.certificate = Some(expired.chain_pem.clone());
        record.fingerprint = Some(expired.fingerprint.clone());
        record.not_after_unix = Some(expired.not_after_unix);
        auth.identities.put(record);
        use xrdtest_proto::tls::{check_own_certificate, OwnCertificate};
        assert_eq!(check_own_certificate(expired.chain_pem.as_bytes(), ca_pem.as_bytes()), OwnCertificate::Expired);
        // The peer drops it and asks with its key, without the secret: a new one, at once.
        let fresh = handed(auth.authenticate(&hello("s1", "", Some(&key)), None, address()));
        assert_ne!(fresh, expired.chain_pem);
        assert_eq!(check_own_certificate(fresh.as_bytes(), ca_pem.as_bytes()), OwnCertificate::Usable);
        // Asking again hands the same one: a key alone never replaces a certificate in use.
        assert_eq!(handed(auth.authenticate(&hello("s1", "", Some(&key)), None, address())), fresh);
        assert_eq!(admitted(auth.authenticate(&hello("s1", "", None), Some(&der(&fresh)), address())), None);
        let other_ca = xrdtest_proto::pki::CertificateAuthority::generate().unwrap();
        assert_eq!(check_own_certificate(fresh.as_bytes(), other_ca.cert_pem().as_bytes()), OwnCertificate::OtherCa);
    }

    #[test]
    fn a_renewed_certificate_does_not_lock_its_peer_out() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path(), EnrollMode::Secret, PeerAuthMode::Certificate);
        let key = xrdtest_proto::identity::throwaway_public_key();
        let old = admitted(auth.authenticate(&hello("s1", SECRET, Some(&key)), None, address())).unwrap();
        // Make it run out soon, as if 800 days had passed.
        let mut record = auth.identities.get("s1").unwrap();
        record.not_after_unix = Some(unix_now() + 86_400);
        auth.identities.put(record);
        let renewed = admitted(auth.authenticate(&hello("s1", "", None), Some(&der(&old)), address())).unwrap();
        assert_ne!(renewed, old);
        // The welcome with the new one was lost: the old one still gets in, and gets it again.
        assert_eq!(
            admitted(auth.authenticate(&hello("s1", "", None), Some(&der(&old)), address())),
            Some(renewed.clone())
        );
        // Once the new one is used, the old one is done.
        assert_eq!(admitted(auth.authenticate(&hello("s1", "", None), Some(&der(&renewed)), address())), None);
        assert_eq!(
            refused(auth.authenticate(&hello("s1", "", None), Some(&der(&old)), address())).0,
            RefusalReason::CertificateRefused
        );
    }

    #[test]
    fn a_vm_enrolls_with_its_own_token_which_goes_with_its_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path(), EnrollMode::Approve, PeerAuthMode::Certificate);
        let credentials = auth.grant_cluster("c1", ["vm1".to_string(), "vm2".to_string()]);
        let (vm1, vm2) = (&credentials.0["vm1"], &credentials.0["vm2"]);
        assert_ne!(vm1, vm2);
        assert!(!format!("{credentials:?}").contains(vm1.as_str()), "tokens stay out of logs");
        let key = xrdtest_proto::identity::throwaway_public_key();
        // One VM's token is not another's.
        assert_eq!(
            refused(auth.authenticate(&hello("vm1", vm2, Some(&key)), None, address())).0,
            RefusalReason::AwaitingApproval
        );
        assert!(admitted(auth.authenticate(&hello("vm1", vm1, Some(&key)), None, address())).is_some());
        assert_eq!(auth.identities.get("vm1").unwrap().cluster.as_deref(), Some("c1"));
        // The cluster started again: its new VM takes the name back with its new token.
        let again = auth.grant_cluster("c1", ["vm1".to_string()]);
        let new_key = xrdtest_proto::identity::throwaway_public_key();
        assert!(admitted(auth.authenticate(&hello("vm1", &again.0["vm1"], Some(&new_key)), None, address())).is_some());
        // Revoked, its token ends too: it does not come back with it.
        auth.revoke("vm1").unwrap();
        let third_key = xrdtest_proto::identity::throwaway_public_key();
        assert_eq!(
            refused(auth.authenticate(&hello("vm1", &again.0["vm1"], Some(&third_key)), None, address())).0,
            RefusalReason::AwaitingApproval
        );
        auth.end_cluster("c1");
        assert!(auth.identities.get("vm1").is_none());
        assert_eq!(
            refused(auth.authenticate(&hello("vm1", &again.0["vm1"], Some(&new_key)), None, address())).0,
            RefusalReason::AwaitingApproval,
            "the token ended with the cluster"
        );
    }

    #[test]
    fn the_shared_secret_mode_admits_by_the_secret_alone() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path(), EnrollMode::Secret, PeerAuthMode::SharedSecret);
        assert_eq!(admitted(auth.authenticate(&hello("old", SECRET, None), None, address())), None);
        let key = xrdtest_proto::identity::throwaway_public_key();
        assert!(admitted(auth.authenticate(&hello("new", SECRET, Some(&key)), None, address())).is_some());
        assert_eq!(
            refused(auth.authenticate(&hello("old", "wrong", None), None, address())).0,
            RefusalReason::BadSecret
        );
    }
}
