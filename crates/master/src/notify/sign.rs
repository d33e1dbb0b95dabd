//! The signature of a webhook body: `sha256=<lowercase hex HMAC-SHA256 of the exact bytes
//! sent>`, in the `X-Xrdtest-Signature` header, so a receiver that knows the secret can
//! tell the body came from this master and was not changed on the way.

use ring::hmac;

/// The header that carries [`signature`].
pub const SIGNATURE_HEADER: &str = "X-Xrdtest-Signature";

/// `sha256=<hex>` of `body` keyed with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_published_hmac_sha256_vector() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn depends_on_every_byte_and_on_the_secret() {
        let body = br#"{"session":{"id":1}}"#;
        let signed = signature("s3cret", body);
        assert!(signed.starts_with("sha256=") && signed.len() == 7 + 64, "{signed}");
        assert_ne!(signed, signature("s3cret", br#"{"session":{"id":2}}"#));
        assert_ne!(signed, signature("other", body));
        assert_eq!(signed, signature("s3cret", body));
    }
}
