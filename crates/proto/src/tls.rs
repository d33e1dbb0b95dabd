//! TLS for the protocol: the master serves with a certificate issued by its own CA; slaves
//! and hypervisors trust exactly that CA.
//!
//! Peers check the master's certificate against the fixed name [`MASTER_TLS_NAME`], not
//! against the host name they dialled: VMs reach the master as `master.<domain>`, lab hosts
//! by whatever name or address they were given, and the private CA issues certificates to
//! nobody but the master, so the name on the certificate says "the master of this CA".

use std::sync::Arc;

use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The DNS name every master certificate carries and every peer verifies.
pub const MASTER_TLS_NAME: &str = "xrdtest-master";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no certificate found in the PEM data")]
    NoCertificate,
    #[error("unreadable certificate PEM: {0}")]
    BadCertificate(String),
    #[error("unreadable private key PEM: {0}")]
    BadKey(String),
    #[error("invalid TLS server name `{0}`")]
    BadServerName(String),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

/// A certificate chain and its private key from PEM.
fn chain_and_key(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey(e.to_string()))?;
    Ok((certificates(cert_chain_pem)?, key))
}

/// The master's TLS server configuration from its certificate chain and key (PEM).
pub fn server_config(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let (chain, key) = chain_and_key(cert_chain_pem, key_pem)?;
    let config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// The master's peer-port configuration: like [`server_config`], and it asks peers for a
/// client certificate of the CA in `ca_pem`. A peer without one still gets through TLS (it
/// comes to enroll); which name a certificate may use is the master's check after TLS.
pub fn peer_server_config(cert_chain_pem: &[u8], key_pem: &[u8], ca_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let (chain, key) = chain_and_key(cert_chain_pem, key_pem)?;
    let provider = Arc::new(default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

fn roots(ca_pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_pem)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// A peer's TLS client configuration that trusts only the CA in `ca_pem`.
pub fn client_config(ca_pem: &[u8]) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Like [`client_config`], presenting the peer's own certificate chain and key.
pub fn client_config_with_identity(
    ca_pem: &[u8],
    cert_chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<ClientConfig>, TlsError> {
    let (chain, key) = chain_and_key(cert_chain_pem, key_pem)?;
    let config = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// Whether the CA certificate that ends `chain_pem` (as the master hands a peer its
/// certificate: the peer's, then the CA's) is one of those in `ca_pem`.
pub fn issued_by_one_of(chain_pem: &[u8], ca_pem: &[u8]) -> bool {
    let (Ok(chain), Ok(cas)) = (certificates(chain_pem), certificates(ca_pem)) else { return false };
    chain.len() >= 2 && chain.last().is_some_and(|issuer| cas.contains(issuer))
}

/// Whether a peer's own certificate can still get it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnCertificate {
    Usable,
    /// Not issued by the CA the peer trusts now (the master was set up anew).
    OtherCa,
    /// Past its end (or before its start): the master's TLS would refuse it.
    Expired,
}

/// Checks a peer's chain against `ca_pem` as the master's TLS will, at this moment.
pub fn check_own_certificate(chain_pem: &[u8], ca_pem: &[u8]) -> OwnCertificate {
    use rustls::CertificateError;
    if !issued_by_one_of(chain_pem, ca_pem) {
        return OwnCertificate::OtherCa;
    }
    let (Ok(chain), Ok(roots)) = (certificates(chain_pem), roots(ca_pem)) else { return OwnCertificate::OtherCa };
    let Ok(verifier) =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(default_provider())).build()
    else {
        return OwnCertificate::Usable;
    };
    match verifier.verify_client_cert(&chain[0], &chain[1..], rustls::pki_types::UnixTime::now()) {
        Err(rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        )) => OwnCertificate::Expired,
        // Anything else is the master's to judge.
        _ => OwnCertificate::Usable,
    }
}

/// The SHA-256 of a certificate's DER bytes, in lower-case hex: how the master knows a
/// peer's certificate.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The name a peer verifies: [`MASTER_TLS_NAME`] unless configured otherwise.
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_string()).map_err(|_| TlsError::BadServerName(name.to_string()))
}
