//! Credentials for the service under test (XrdTest's getSignedCertificate and
//! getSSSKeytable): per session, a CA of the session signs a host certificate for each
//! slave, and one random secret is shared by all of them. Stage scripts reach them through
//! the tags `@hostcert@`, `@hostkey@`, `@cacert@` and `@session_secret_file@` (paths on the
//! slave, which fills those tags in itself).
//!
//! Made only for a session whose scripts use one of the tags (tags are expanded in the
//! stage scripts alone, so no other file could ask for them): a suite without them pays
//! nothing, however many slaves it has. Made in memory and never stored; the slaves remove
//! their copies when the session ends.

use std::collections::BTreeMap;

use xrdtest_proto::pki::{PkiError, SessionAuthority};
use xrdtest_proto::SessionFile;

/// File names in the session's `credentials` folder on each slave (what the slave's tags
/// point at).
pub const HOST_CERT_FILE: &str = "hostcert.pem";
pub const HOST_KEY_FILE: &str = "hostkey.pem";
pub const CA_CERT_FILE: &str = "cacert.pem";
pub const SECRET_FILE: &str = "session_secret";

/// Which credentials a session's scripts ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wanted {
    pub certificates: bool,
    pub secret: bool,
}

impl Wanted {
    /// What `scripts` (the stage scripts as written) use.
    pub fn by<'a>(scripts: impl IntoIterator<Item = &'a str>) -> Wanted {
        let mut wanted = Wanted::default();
        for script in scripts {
            wanted.certificates |= ["@hostcert@", "@hostkey@", "@cacert@"].iter().any(|tag| script.contains(tag));
            wanted.secret |= script.contains("@session_secret_file@");
        }
        wanted
    }

    pub fn any(self) -> bool {
        self.certificates || self.secret
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("the session's certificates: {0}")]
    Pki(#[from] PkiError),
    #[error("no random numbers for the session secret")]
    Random,
}

/// Each slave's files for session `session`: what `wanted` asks for.
pub fn session_files(
    session: &str,
    slaves: &[String],
    wanted: Wanted,
) -> Result<BTreeMap<String, Vec<SessionFile>>, CredentialError> {
    let mut files: BTreeMap<String, Vec<SessionFile>> = slaves.iter().map(|s| (s.clone(), Vec::new())).collect();
    if wanted.certificates {
        let authority = SessionAuthority::generate(session)?;
        for (slave, list) in files.iter_mut() {
            let host = authority.issue_host(slave)?;
            list.push(file(HOST_CERT_FILE, 0o644, host.cert_pem.into_bytes()));
            list.push(file(HOST_KEY_FILE, 0o600, host.key_pem.into_bytes()));
            list.push(file(CA_CERT_FILE, 0o644, authority.cert_pem().as_bytes().to_vec()));
        }
    }
    if wanted.secret {
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| CredentialError::Random)?;
        // Hex text: shell tools read it as it is (an sss keytab's key is hex too).
        let mut text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        text.push('\n');
        for list in files.values_mut() {
            list.push(file(SECRET_FILE, 0o600, text.clone().into_bytes()));
        }
    }
    Ok(files)
}

fn file(name: &str, mode: u32, contents: Vec<u8>) -> SessionFile {
    SessionFile { name: name.to_string(), mode, contents }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tags_in_scripts_ask_for_credentials() {
        assert_eq!(Wanted::by(["echo @slavename@", "true"]), Wanted::default());
        assert_eq!(Wanted::by(["cp @hostkey@ /x"]), Wanted { certificates: true, secret: false });
        assert_eq!(Wanted::by(["a", "cat @session_secret_file@"]), Wanted { certificates: false, secret: true });
        assert!(Wanted::by(["@cacert@ @session_secret_file@"]).any());
    }

    #[test]
    fn every_slave_gets_its_own_certificate_and_key_and_the_same_ca_and_secret() {
        let slaves = vec!["ds1.xrd.test".to_string(), "ds2.xrd.test".to_string()];
        let files = session_files("42", &slaves, Wanted { certificates: true, secret: true }).expect("files");
        let get = |slave: &str, name: &str| {
            files[slave].iter().find(|f| f.name == name).map(|f| (f.mode, f.contents.clone())).expect(name)
        };
        assert_ne!(get("ds1.xrd.test", HOST_CERT_FILE), get("ds2.xrd.test", HOST_CERT_FILE));
        assert_ne!(get("ds1.xrd.test", HOST_KEY_FILE), get("ds2.xrd.test", HOST_KEY_FILE));
        assert_eq!(get("ds1.xrd.test", CA_CERT_FILE), get("ds2.xrd.test", CA_CERT_FILE));
        assert_eq!(get("ds1.xrd.test", SECRET_FILE), get("ds2.xrd.test", SECRET_FILE));
        assert_eq!(get("ds1.xrd.test", HOST_KEY_FILE).0, 0o600);
        assert_eq!(get("ds1.xrd.test", SECRET_FILE).0, 0o600);
        let secret = String::from_utf8(get("ds1.xrd.test", SECRET_FILE).1).expect("text");
        assert_eq!(secret.trim_end().len(), 64);
        assert!(secret.trim_end().chars().all(|c| c.is_ascii_hexdigit()));
        let key = String::from_utf8(get("ds2.xrd.test", HOST_KEY_FILE).1).expect("text");
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");

        let again = session_files("43", &slaves, Wanted { certificates: false, secret: true }).expect("files");
        assert_eq!(again["ds1.xrd.test"].len(), 1, "only the secret");
        assert_ne!(again["ds1.xrd.test"][0].contents, get("ds1.xrd.test", SECRET_FILE).1, "a new secret each session");
    }
}
