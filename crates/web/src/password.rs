//! The dashboard's password as configured: plain, or an argon2 hash in PHC form
//! (`$argon2id$v=19$m=...`), so that `master.toml` need not hold the password itself.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

fn is_hash(configured: &str) -> bool {
    configured.starts_with("$argon2")
}

/// The parsed hash: a PHC string with an argon2 algorithm, a salt and an output.
fn parse(configured: &str) -> Result<PasswordHash<'_>, String> {
    let hash = PasswordHash::new(configured).map_err(|e| e.to_string())?;
    if argon2::Algorithm::new(hash.algorithm.as_str()).is_err() || hash.salt.is_none() || hash.hash.is_none() {
        return Err(
            "it needs an argon2 algorithm, a salt and a hash (make one with `xrdtest-master --hash-password`)".into()
        );
    }
    Ok(hash)
}

/// Why a configured password cannot be used (a hash that does not parse).
pub fn check(configured: &str) -> Result<(), String> {
    if is_hash(configured) {
        parse(configured).map_err(|e| format!("`web.password` looks like an argon2 hash but is not one: {e}"))?;
    }
    Ok(())
}

/// Whether `given` is the password: against the hash, or compared in constant time.
pub fn matches(configured: &str, given: &str) -> bool {
    if !is_hash(configured) {
        return xrdtest_proto::handshake::secrets_match(configured, given);
    }
    match parse(configured) {
        Ok(hash) => Argon2::default().verify_password(given.as_bytes(), &hash).is_ok(),
        Err(_) => false,
    }
}

/// The argon2id hash (PHC string, random salt) of `password`, for `web.password`.
pub fn hash(password: &str) -> Result<String, String> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| "no random numbers for a salt".to_string())?;
    let salt = SaltString::encode_b64(&bytes).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_hashed_passwords() {
        assert!(matches("pw", "pw") && !matches("pw", "px"));
        let hashed = hash("s3cret pw").unwrap();
        assert!(hashed.starts_with("$argon2id$"), "{hashed}");
        assert_eq!(check(&hashed), Ok(()));
        assert!(matches(&hashed, "s3cret pw"));
        assert!(!matches(&hashed, "s3cret"));
        assert_ne!(hash("s3cret pw").unwrap(), hashed, "a new salt each time");
        assert!(check("$argon2id$broken").is_err());
        assert!(!matches("$argon2id$broken", "$argon2id$broken"), "a broken hash admits nobody");
    }
}
