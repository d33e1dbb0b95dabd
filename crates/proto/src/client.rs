//! A peer's way in: TCP, TLS (trusting the master's CA) and the handshake, as slaves and
//! hypervisors both do it.

use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

use crate::identity::IdentityDir;
use crate::{client_handshake, Connection, HandshakeError, Hello, HelloReply, RefusalReason, Role, RESTORABLE_ENV};

/// How long each of connect, TLS and handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Heartbeat interval when the master announces none.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
/// Never heartbeat more often than this, whatever the master announces.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

/// The TLS connection a peer holds to the master.
pub type MasterConnection = Connection<tokio_rustls::client::TlsStream<TcpStream>>;

/// Who connects, and to where.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    /// `host:port` of the master.
    pub master: String,
    pub role: Role,
    pub name: String,
    /// The enrollment secret or token; empty when there is none (or no need).
    pub secret: String,
    /// Where the peer keeps its key and certificate. `None`: connect with the secret alone,
    /// which only a master in shared-secret compatibility mode accepts.
    pub identity: Option<IdentityDir>,
    pub ca_file: PathBuf,
    pub tls_server_name: String,
    pub max_frame_bytes: usize,
}

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The master answered and said no (no valid credential, awaiting approval, duplicate
    /// name, other version).
    #[error("{0}")]
    Refused(String),
    /// Anything else: unreachable, TLS failure, timeout. Worth retrying.
    #[error("{0}")]
    Other(String),
}

/// The heartbeat interval the master announced in its welcome: the master drops a peer it
/// has not heard from for three of them, so the peer must send at least that often.
pub fn heartbeat_interval(reply: &HelloReply) -> Duration {
    match reply.heartbeat_interval_ms {
        0 => DEFAULT_HEARTBEAT,
        ms => Duration::from_millis(ms).max(MIN_HEARTBEAT),
    }
}

/// Connects and completes the handshake; returns the connection and the heartbeat interval
/// the master asked for.
pub async fn connect(settings: &ConnectSettings) -> Result<(MasterConnection, Duration), ConnectError> {
    let ca = std::fs::read(&settings.ca_file)
        .map_err(|e| ConnectError::Other(format!("cannot read CA file {}: {e}", settings.ca_file.display())))?;
    let credentials = match &settings.identity {
        Some(dir) => Some(credentials_for(dir, &ca).map_err(|e| ConnectError::Other(e.to_string()))?),
        None => None,
    };
    let certificate = credentials.as_ref().and_then(|c| c.cert_pem.as_ref());
    let tls = match (&credentials, certificate) {
        (Some(credentials), Some(cert)) => {
            crate::tls::client_config_with_identity(&ca, cert.as_bytes(), credentials.key_pem.as_bytes())
        }
        _ => crate::tls::client_config(&ca),
    }
    .map_err(|e| ConnectError::Other(e.to_string()))?;
    let server_name =
        crate::tls::server_name(&settings.tls_server_name).map_err(|e| ConnectError::Other(e.to_string()))?;
    let tcp = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(&settings.master))
        .await
        .map_err(|_| ConnectError::Other("connect timed out".into()))?
        .map_err(|e| ConnectError::Other(format!("connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsConnector::from(tls).connect(server_name, tcp))
        .await
        .map_err(|_| ConnectError::Other("TLS handshake timed out".into()))?
        .map_err(|e| ConnectError::Other(format!("TLS: {e}")))?;
    let mut conn = Connection::new(stream, settings.max_frame_bytes);
    let mut hello = Hello::new(settings.role, settings.name.clone(), settings.secret.clone());
    if certificate.is_none() {
        hello.enroll_key = credentials.as_ref().map(|c| c.public_key.clone());
    }
    hello.restorable = settings.role == Role::Slave && std::env::var_os(RESTORABLE_ENV).is_some_and(|v| v == "1");
    match client_handshake(&mut conn, &hello, HANDSHAKE_TIMEOUT).await {
        Ok(reply) => {
            if let (Some(dir), Some(cert)) = (&settings.identity, &reply.certificate) {
                dir.save_certificate(cert).map_err(|e| ConnectError::Other(format!("keeping the certificate: {e}")))?;
                tracing::info!(identity = %dir.path().display(), renewed = certificate.is_some(), "certificate from the master saved");
            }
            Ok((conn, heartbeat_interval(&reply)))
        }
        Err(HandshakeError::Refused { reason: RefusalReason::UseCertificate, certificate: Some(cert), .. }) => {
            // Approved while it waited (or the certificate of an earlier welcome was lost):
            // kept, and the next attempt presents it.
            let Some(dir) = &settings.identity else {
                return Err(ConnectError::Other("the master sent a certificate, but this peer keeps none".into()));
            };
            dir.save_certificate(&cert).map_err(|e| ConnectError::Other(format!("keeping the certificate: {e}")))?;
            tracing::info!(identity = %dir.path().display(), "certificate from the master saved; connecting with it");
            Err(ConnectError::Other("received its certificate; connecting again with it".into()))
        }
        Err(HandshakeError::Refused { reason: RefusalReason::CertificateRefused, message, .. }) => {
            // Revoked or unknown: with a new key, the next attempt asks to enroll again
            // (which the master may leave to an operator).
            if let Some(dir) = &settings.identity {
                dir.forget().map_err(|e| ConnectError::Other(e.to_string()))?;
            }
            Err(ConnectError::Refused(format!("{message}; the certificate was dropped, the next attempt enrolls anew")))
        }
        Err(err @ (HandshakeError::Refused { .. } | HandshakeError::VersionMismatch { .. })) => {
            Err(ConnectError::Refused(err.to_string()))
        }
        Err(err) => Err(ConnectError::Other(err.to_string())),
    }
}

/// The peer's key and certificate. A certificate issued by another CA than the one it now
/// trusts (the master was set up anew) would only fail every TLS handshake: it is dropped
/// with its key, and the peer enrolls again. An expired one is dropped alone: the master
/// knows the key and hands a new certificate for it.
fn credentials_for(
    dir: &IdentityDir,
    ca_pem: &[u8],
) -> Result<crate::identity::Credentials, crate::identity::IdentityError> {
    let credentials = dir.load_or_create()?;
    let Some(chain) = &credentials.cert_pem else { return Ok(credentials) };
    match crate::tls::check_own_certificate(chain.as_bytes(), ca_pem) {
        crate::tls::OwnCertificate::Usable => return Ok(credentials),
        crate::tls::OwnCertificate::Expired => {
            // The key is still the enrolled one: the master hands a new certificate for it.
            tracing::warn!(
                identity = %dir.path().display(),
                "the certificate is out of its validity period: it is dropped, and the master is asked for a new one for the same key"
            );
            dir.forget_certificate()?;
            return dir.load_or_create();
        }
        crate::tls::OwnCertificate::OtherCa => {}
    }
    tracing::warn!(
        identity = %dir.path().display(),
        "the certificate was issued by another CA than ca_file's (the master's CA changed): it is dropped, this peer enrolls anew"
    );
    dir.forget()?;
    dir.load_or_create()
}

/// The wait between reconnection attempts: 250 ms, doubling up to a cap, back to 250 ms
/// after a connection that worked.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);

    pub fn new(max: Duration) -> Backoff {
        Backoff { next: Backoff::FIRST, max }
    }

    /// How long the next wait will be.
    pub fn current(&self) -> Duration {
        self.next
    }

    /// A connection worked: the next failure waits the shortest time again.
    pub fn reset(&mut self) {
        self.next = Backoff::FIRST;
    }

    /// Waits the current time (or until `stop` turns true) and doubles it for the next
    /// time. Returns false, at once, when `stop` is or turns true.
    pub async fn wait(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        if *stop.borrow() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(self.next) => {}
            _ = stop.changed() => {}
        }
        self.next = (self.next * 2).min(self.max);
        !*stop.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_its_cap_resets_and_ends_on_stop() {
        let (stop_tx, mut stop) = watch::channel(false);
        let mut backoff = Backoff::new(Duration::from_secs(1));
        let mut waits = Vec::new();
        for _ in 0..4 {
            waits.push(backoff.current());
            assert!(backoff.wait(&mut stop).await);
        }
        assert_eq!(waits, [250, 500, 1000, 1000].map(Duration::from_millis));
        backoff.reset();
        assert_eq!(backoff.current(), Duration::from_millis(250));
        stop_tx.send(true).unwrap();
        assert!(!backoff.wait(&mut stop).await);
    }

    #[test]
    fn an_expired_certificate_is_dropped_and_the_key_kept_a_foreign_one_drops_both() {
        let dir = tempfile::tempdir().unwrap();
        let identity = IdentityDir::new(dir.path().join("identity"));
        let first = identity.load_or_create().unwrap();
        let ca = crate::pki::CertificateAuthority::generate().unwrap();
        let ca_pem = ca.cert_pem().as_bytes();
        let expired = ca.issue_peer_certificate_valid(&first.public_key, "s1", "slave", -30, -1).unwrap();
        identity.save_certificate(&expired.chain_pem).unwrap();
        let after = credentials_for(&identity, ca_pem).unwrap();
        assert!(after.cert_pem.is_none(), "the expired certificate is dropped");
        assert_eq!(after.public_key, first.public_key, "the key stays: the master knows it");

        let valid = ca.issue_peer_certificate(&first.public_key, "s1", "slave").unwrap();
        identity.save_certificate(&valid.chain_pem).unwrap();
        assert_eq!(credentials_for(&identity, ca_pem).unwrap().cert_pem, Some(valid.chain_pem.clone()));
        let other = crate::pki::CertificateAuthority::generate().unwrap();
        let anew = credentials_for(&identity, other.cert_pem().as_bytes()).unwrap();
        assert!(anew.cert_pem.is_none() && anew.public_key != first.public_key, "another CA's: both go");
    }
}
