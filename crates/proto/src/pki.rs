//! The master's own certificate authority (feature `ca`, used by the master only).
//!
//! Made with rcgen on the master's first start and kept in its state directory as
//! `ca.crt` and `ca.key`. Every start issues a fresh server certificate from it for
//! [`MASTER_TLS_NAME`] plus the names the operator lists. Peers are given `ca.crt`.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::tls::MASTER_TLS_NAME;

/// A new CA is valid this long (an existing one keeps its own dates).
pub const CA_VALID_DAYS: i64 = 10 * 365;
/// A server certificate is valid this long; a fresh one is issued at every master start.
pub const SERVER_VALID_DAYS: i64 = 825;
/// A peer's certificate is valid this long; the master hands a connecting peer a new one for
/// the same key when less than [`PEER_RENEW_DAYS`] are left.
pub const PEER_VALID_DAYS: i64 = 825;
pub const PEER_RENEW_DAYS: i64 = 60;

pub const CA_CERT_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the peer's key: {0}")]
    BadPeerKey(String),
    #[error("{0} exists but {1} does not: restore both from backup, or remove the other to make a new CA")]
    HalfPresent(PathBuf, PathBuf),
}

/// A CA certificate and its signing key.
pub struct CertificateAuthority {
    cert_pem: String,
    key: KeyPair,
}

/// A certificate issued by the CA, with its private key.
pub struct IssuedCertificate {
    /// The certificate followed by the CA certificate.
    pub chain_pem: String,
    pub key_pem: String,
}

/// The CA's subject and usages: the same on creation and every reload, so the issuer
/// rebuilt from them matches the stored certificate.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "xrdtest master CA");
    name.push(DnType::OrganizationName, "xrdtest");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.to_path_buf(), source }
}

impl CertificateAuthority {
    /// A new CA with a fresh key, valid from yesterday for [`CA_VALID_DAYS`].
    pub fn generate() -> Result<CertificateAuthority, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params();
        set_validity(&mut params, -1, CA_VALID_DAYS);
        let cert = params.self_signed(&key)?;
        Ok(CertificateAuthority { cert_pem: cert.pem(), key })
    }

    /// Loads `ca.crt` and `ca.key` from `dir`, or creates them when neither exists. The key
    /// file is written readable by its owner only.
    pub fn load_or_create(dir: &Path) -> Result<CertificateAuthority, PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let cert_pem = fs::read_to_string(&cert_path).map_err(io_error(&cert_path))?;
                let key_pem = fs::read_to_string(&key_path).map_err(io_error(&key_path))?;
                Ok(CertificateAuthority { cert_pem, key: KeyPair::from_pem(&key_pem)? })
            }
            (false, false) => {
                fs::create_dir_all(dir).map_err(io_error(dir))?;
                let ca = CertificateAuthority::generate()?;
                write_private(&key_path, ca.key.serialize_pem().as_bytes())?;
                fs::write(&cert_path, ca.cert_pem.as_bytes()).map_err(io_error(&cert_path))?;
                Ok(ca)
            }
            (true, false) => Err(PkiError::HalfPresent(cert_path, key_path)),
            (false, true) => Err(PkiError::HalfPresent(key_path, cert_path)),
        }
    }

    /// The CA certificate, for peers to trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for [`MASTER_TLS_NAME`] and `extra_names` (host names or IP
    /// addresses), with a fresh key.
    pub fn issue_server_certificate(&self, extra_names: &[String]) -> Result<IssuedCertificate, PkiError> {
        let mut names = vec![MASTER_TLS_NAME.to_string()];
        names.extend(extra_names.iter().filter(|n| n.as_str() != MASTER_TLS_NAME).cloned());
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, MASTER_TLS_NAME);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        // From yesterday: a peer whose clock is a little behind still accepts it.
        set_validity(&mut params, -1, SERVER_VALID_DAYS);
        let key = KeyPair::generate()?;
        let issuer = Issuer::new(ca_params(), &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(IssuedCertificate { chain_pem: format!("{}{}", cert.pem(), self.cert_pem), key_pem: key.serialize_pem() })
    }
}

/// A public key a peer sent to enroll: an uncompressed P-256 point, as
/// `KeyPair::public_key_raw` gives it for the keys [`crate::identity`] makes.
struct PeerPublicKey<'a>(&'a [u8]);

impl rcgen::PublicKeyData for PeerPublicKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// A certificate issued to a peer for its own key.
pub struct PeerCertificate {
    /// The certificate followed by the CA certificate.
    pub chain_pem: String,
    /// [`crate::tls::fingerprint`] of the certificate itself: what the master records.
    pub fingerprint: String,
    pub not_after_unix: i64,
}

/// Why a peer's public key cannot be certified.
pub fn check_peer_public_key(key: &[u8]) -> Result<(), String> {
    // SEC 1 uncompressed form: 0x04, then x and y of 32 bytes each.
    if key.len() != 65 || key[0] != 4 {
        return Err(format!("not an uncompressed P-256 public key ({} bytes)", key.len()));
    }
    Ok(())
}

impl CertificateAuthority {
    /// A client certificate for a slave or hypervisor: common name `name`, organizational
    /// unit `role`, for client authentication only, valid from yesterday for
    /// [`PEER_VALID_DAYS`].
    pub fn issue_peer_certificate(
        &self,
        public_key: &[u8],
        name: &str,
        role: &str,
    ) -> Result<PeerCertificate, PkiError> {
        self.issue_peer_certificate_valid(public_key, name, role, -1, PEER_VALID_DAYS)
    }

    /// A peer certificate valid from midnight UTC `from_days` days from today to midnight
    /// `to_days` days from today (negative: in the past).
    pub fn issue_peer_certificate_valid(
        &self,
        public_key: &[u8],
        name: &str,
        role: &str,
        from_days: i64,
        to_days: i64,
    ) -> Result<PeerCertificate, PkiError> {
        check_peer_public_key(public_key).map_err(PkiError::BadPeerKey)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.distinguished_name.push(DnType::OrganizationalUnitName, role);
        params.distinguished_name.push(DnType::OrganizationName, "xrdtest");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        set_validity(&mut params, from_days, to_days);
        let not_after_unix = params.not_after.unix_timestamp();
        let issuer = Issuer::new(ca_params(), &self.key);
        let cert = params.signed_by(&PeerPublicKey(public_key), &issuer)?;
        Ok(PeerCertificate {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            fingerprint: crate::tls::fingerprint(cert.der()),
            not_after_unix,
        })
    }
}

/// A random positive 128-bit serial number: two certificates of one CA never share one.
fn random_serial() -> Result<rcgen::SerialNumber, PkiError> {
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
        .map_err(|_| PkiError::BadPeerKey("no random numbers for a serial".into()))?;
    serial[0] &= 0x7f;
    Ok(rcgen::SerialNumber::from_slice(&serial))
}

/// Sets a certificate's validity: from midnight UTC `from_days` days from today to
/// midnight UTC `to_days` days from today (rcgen's default would be 1975 to 4096).
fn set_validity(params: &mut CertificateParams, from_days: i64, to_days: i64) {
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_secs() / 86_400) as i64)
        .unwrap_or(0);
    let date = |days: i64| {
        let (year, month, day) = xrdtest_model::civil_from_days(today + days);
        rcgen::date_time_ymd(year as i32, month, day)
    };
    params.not_before = date(from_days);
    params.not_after = date(to_days);
}

/// Writes a file that only its owner may read (created so, never widened afterwards).
fn write_private(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    crate::identity::write_private(path, contents).map_err(io_error(path))
}

/// A session's own CA and the credentials it gives each host for the service under test
/// (XrdTest's getSignedCertificate): made in memory when the session starts, never stored.
/// The CA has nothing to do with the master's: it signs for the software being tested.
pub struct SessionAuthority {
    cert_pem: String,
    key: KeyPair,
    label: String,
}

/// A host's certificate from a [`SessionAuthority`], with its private key.
pub struct HostCredential {
    /// The host's certificate alone (the CA is given separately).
    pub cert_pem: String,
    /// PKCS#8 PEM.
    pub key_pem: String,
}

/// A session credential is valid this long from yesterday: any session ends well before.
pub const SESSION_VALID_DAYS: i64 = 30;

fn session_ca_params(label: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, format!("xrdtest session {label} CA"));
    name.push(DnType::OrganizationName, "xrdtest");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

impl SessionAuthority {
    /// A fresh CA (P-256) for the session `label` names.
    pub fn generate(label: &str) -> Result<SessionAuthority, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = session_ca_params(label);
        set_validity(&mut params, -1, SESSION_VALID_DAYS);
        let cert = params.self_signed(&key)?;
        Ok(SessionAuthority { cert_pem: cert.pem(), key, label: label.to_string() })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A host certificate for `fqdn` with a fresh key: common name and first DNS name the
    /// FQDN, then its short name; for TLS servers and clients alike (xrootd's TLS and GSI
    /// use one host certificate both ways).
    pub fn issue_host(&self, fqdn: &str) -> Result<HostCredential, PkiError> {
        let mut names = vec![fqdn.to_string()];
        if let Some(short) = fqdn.split('.').next().filter(|s| *s != fqdn && !s.is_empty()) {
            names.push(short.to_string());
        }
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::OrganizationName, "xrdtest");
        params.distinguished_name.push(DnType::CommonName, fqdn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        set_validity(&mut params, -1, SESSION_VALID_DAYS);
        let key = KeyPair::generate()?;
        let issuer = Issuer::new(session_ca_params(&self.label), &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(HostCredential { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}
