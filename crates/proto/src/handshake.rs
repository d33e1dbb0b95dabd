//! The first exchange on a connection: the peer says who it is (and, without a
//! certificate, what lets it enroll); the master welcomes or refuses it. Who may connect
//! under which name is the master's decision (`crates/master/src/peer_auth.rs`); this module
//! checks only what any master checks: magic, version and a well-formed name.

use std::time::Duration;

use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::codec::{decode_message, decode_prefix};
use crate::connection::Connection;
use crate::error::ProtoError;
use crate::message::{Hello, HelloReply, Refusal, RefusalReason, VersionPrefix, MAGIC, PROTOCOL_VERSION};

/// Why a handshake did not end in a welcome.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no handshake within {0:?}")]
    Timeout(Duration),
    #[error("connection closed during the handshake")]
    Closed,
    #[error("the other side is not an xrdtest peer (bad magic)")]
    NotXrdtest,
    #[error("protocol version mismatch: master speaks version {master}, peer speaks version {peer}")]
    VersionMismatch { master: u32, peer: u32 },
    #[error("wrong or missing connection secret")]
    BadSecret,
    #[error("invalid peer name `{0}`")]
    InvalidName(String),
    #[error("refused by the master: {message}")]
    Refused {
        reason: RefusalReason,
        message: String,
        /// With [`RefusalReason::UseCertificate`]: the peer's certificate, to connect with.
        certificate: Option<String>,
    },
    #[error(transparent)]
    Proto(#[from] ProtoError),
}

/// What the master puts in its side of the handshake.
#[derive(Debug, Clone)]
pub struct ServerHandshake<'a> {
    pub master_version: &'a str,
    pub heartbeat_interval: Duration,
    /// A peer that has not sent a valid `Hello` by then is dropped.
    pub timeout: Duration,
}

impl ServerHandshake<'_> {
    fn reply(&self, refusal: Option<Refusal>, certificate: Option<String>) -> HelloReply {
        HelloReply {
            magic: MAGIC,
            protocol_version: PROTOCOL_VERSION,
            master_version: self.master_version.to_string(),
            refusal,
            heartbeat_interval_ms: self.heartbeat_interval.as_millis() as u64,
            certificate,
        }
    }

    /// Welcomes a peer that [`server_handshake`] accepted, handing it the certificate it
    /// enrolled for, if any.
    pub async fn welcome<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        certificate: Option<String>,
    ) -> Result<(), ProtoError> {
        conn.send(&self.reply(None, certificate)).await
    }

    /// Refuses a peer with a reason it can log; the caller then closes the connection.
    pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        reason: RefusalReason,
        message: impl Into<String>,
    ) -> Result<(), ProtoError> {
        conn.send(&self.reply(Some(Refusal { reason, message: message.into() }), None)).await
    }

    /// Refuses a peer that asked with its key alone for a name enrolled with that key: it
    /// gets its certificate and must connect again presenting it (proving it holds the key).
    pub async fn hand_certificate<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        conn: &mut Connection<S>,
        certificate: String,
    ) -> Result<(), ProtoError> {
        let refusal = Refusal {
            reason: RefusalReason::UseCertificate,
            message: "connect again with the certificate in this answer".into(),
        };
        conn.send(&self.reply(Some(refusal), Some(certificate))).await
    }
}

/// Master side: reads the peer's `Hello` and checks magic, version and name. On a mismatch
/// it sends the refusal itself and returns the error; on success it returns the `Hello` (the
/// caller checks what only it knows, its credentials and duplicate names, then calls
/// [`ServerHandshake::welcome`] or [`ServerHandshake::refuse`]).
pub async fn server_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    config: &ServerHandshake<'_>,
) -> Result<Hello, HandshakeError> {
    let frame = tokio::time::timeout(config.timeout, conn.recv_frame())
        .await
        .map_err(|_| HandshakeError::Timeout(config.timeout))??
        .ok_or(HandshakeError::Closed)?;
    let (prefix, _) = decode_prefix::<VersionPrefix>(&frame).map_err(|_| HandshakeError::NotXrdtest)?;
    if prefix.magic != MAGIC {
        return Err(HandshakeError::NotXrdtest);
    }
    if prefix.protocol_version != PROTOCOL_VERSION {
        let error = HandshakeError::VersionMismatch { master: PROTOCOL_VERSION, peer: prefix.protocol_version };
        // Best effort: the peer may already be gone.
        let _ = config.refuse(conn, RefusalReason::VersionMismatch, error.to_string()).await;
        return Err(error);
    }
    let hello: Hello = decode_message(&frame)?;
    if !is_valid_peer_name(&hello.name) {
        let error = HandshakeError::InvalidName(hello.name.clone());
        let _ = config.refuse(conn, RefusalReason::InvalidName, error.to_string()).await;
        return Err(error);
    }
    Ok(hello)
}

/// Peer side: sends `hello` and waits for the master's answer.
pub async fn client_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    hello: &Hello,
    timeout: Duration,
) -> Result<HelloReply, HandshakeError> {
    let exchange = async {
        conn.send(hello).await?;
        let frame = conn.recv_frame().await?.ok_or(HandshakeError::Closed)?;
        let (prefix, _) = decode_prefix::<VersionPrefix>(&frame).map_err(|_| HandshakeError::NotXrdtest)?;
        if prefix.magic != MAGIC {
            return Err(HandshakeError::NotXrdtest);
        }
        if prefix.protocol_version != PROTOCOL_VERSION {
            return Err(HandshakeError::VersionMismatch { master: prefix.protocol_version, peer: PROTOCOL_VERSION });
        }
        let reply: HelloReply = decode_message(&frame)?;
        match reply.refusal {
            Some(Refusal { reason, message }) => {
                Err(HandshakeError::Refused { reason, message, certificate: reply.certificate })
            }
            None => Ok(reply),
        }
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| HandshakeError::Timeout(timeout))?
}

/// Compares secrets in constant time. Both are hashed first so that neither their
/// contents nor their lengths show in the timing.
pub fn secrets_match(expected: &str, given: &str) -> bool {
    let digest = |text: &str| ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let equal: bool = digest(expected).as_ref().ct_eq(digest(given).as_ref()).into();
    // An empty configured secret would let an empty one in: never accept that.
    equal && !expected.is_empty()
}

/// Peer names appear in paths, URLs and logs: plain characters only.
pub fn is_valid_peer_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets() {
        assert!(secrets_match("s3cret", "s3cret"));
        assert!(!secrets_match("s3cret", "s3cret "));
        assert!(!secrets_match("s3cret", ""));
        assert!(!secrets_match("", ""));
    }

    #[test]
    fn names() {
        assert!(is_valid_peer_name("slave1"));
        assert!(is_valid_peer_name("ds1.xrd.test"));
        assert!(!is_valid_peer_name(""));
        assert!(!is_valid_peer_name("../x"));
        assert!(!is_valid_peer_name("a b"));
    }
}
