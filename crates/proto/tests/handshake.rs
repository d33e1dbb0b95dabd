//! The handshake over real TLS on loopback TCP: welcome, mutual TLS with a peer
//! certificate, and each way of being refused.

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use xrdtest_proto::handshake::ServerHandshake;
use xrdtest_proto::pki::CertificateAuthority;
use xrdtest_proto::tls::{
    client_config, client_config_with_identity, fingerprint, peer_server_config, server_config, server_name,
    MASTER_TLS_NAME,
};
use xrdtest_proto::*;

const SECRET: &str = "correct horse battery staple";
const TIMEOUT: Duration = Duration::from_secs(5);

/// What the test server saw on one connection.
#[derive(Debug)]
enum ServerSaw {
    TlsFailed(String),
    /// The Hello, and the fingerprint of the client certificate if one was presented.
    Welcomed(Hello, Option<String>),
    Refused(HandshakeError),
}

/// A minimal master-side accept loop: TLS, then the handshake. Runs until the test ends.
async fn start_server(ca: &CertificateAuthority) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<ServerSaw>) {
    let issued = ca.issue_server_certificate(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    let acceptor = TlsAcceptor::from(
        peer_server_config(issued.chain_pem.as_bytes(), issued.key_pem.as_bytes(), ca.cert_pem().as_bytes()).unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(err)) => return tx.send(ServerSaw::TlsFailed(err.to_string())).unwrap(),
                    Err(_) => return tx.send(ServerSaw::TlsFailed("timeout".into())).unwrap(),
                };
                let presented = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| fingerprint(c));
                let mut conn = Connection::new(tls, DEFAULT_MAX_FRAME_LEN);
                let config = ServerHandshake {
                    master_version: "test",
                    heartbeat_interval: Duration::from_secs(5),
                    timeout: Duration::from_millis(500),
                };
                match server_handshake(&mut conn, &config).await {
                    Ok(hello) => {
                        config.welcome(&mut conn, Some("CERT".into())).await.unwrap();
                        tx.send(ServerSaw::Welcomed(hello, presented)).unwrap();
                        // Echo heartbeats so the client can prove the channel works.
                        while let Ok(Some(ToMaster::Heartbeat(beat))) = conn.recv::<ToMaster>().await {
                            conn.send(&FromMaster::Heartbeat(beat)).await.unwrap();
                        }
                    }
                    Err(err) => tx.send(ServerSaw::Refused(err)).unwrap(),
                }
            });
        }
    });
    (addr, rx)
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    ca_pem: &str,
) -> std::io::Result<Connection<tokio_rustls::client::TlsStream<TcpStream>>> {
    let connector = TlsConnector::from(client_config(ca_pem.as_bytes()).unwrap());
    let tcp = TcpStream::connect(addr).await?;
    let tls = connector.connect(server_name(MASTER_TLS_NAME).unwrap(), tcp).await?;
    Ok(Connection::new(tls, DEFAULT_MAX_FRAME_LEN))
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<ServerSaw>) -> ServerSaw {
    tokio::time::timeout(TIMEOUT, rx.recv()).await.expect("server reports").expect("server alive")
}

fn test_ca() -> CertificateAuthority {
    CertificateAuthority::generate().unwrap()
}

#[tokio::test]
async fn a_peer_is_welcomed_and_messages_flow() {
    let ca = test_ca();
    let (addr, mut seen) = start_server(&ca).await;
    let mut conn = tls_connect(addr, ca.cert_pem()).await.unwrap();
    let reply = client_handshake(&mut conn, &Hello::enrolling(Role::Slave, "slave1", SECRET), TIMEOUT).await.unwrap();
    assert_eq!(reply.refusal, None);
    assert_eq!(reply.heartbeat_interval_ms, 5000);
    assert_eq!(reply.certificate.as_deref(), Some("CERT"), "the welcome carries what the master issued");
    match next_seen(&mut seen).await {
        ServerSaw::Welcomed(hello, presented) => {
            assert_eq!(hello.name, "slave1");
            assert_eq!(hello.role, Role::Slave);
            assert_eq!(hello.secret, SECRET);
            assert_eq!(hello.enroll_key.as_ref().map(Vec::len), Some(65));
            assert_eq!(presented, None, "no client certificate was presented");
        }
        other => panic!("expected a welcome, got {other:?}"),
    }
    let beat = Heartbeat { seq: 7, sent_unix_ms: 1 };
    conn.send(&ToMaster::Heartbeat(beat)).await.unwrap();
    assert_eq!(conn.recv::<FromMaster>().await.unwrap(), Some(FromMaster::Heartbeat(beat)));
}

#[tokio::test]
async fn a_peer_certificate_reaches_the_master_and_one_of_another_ca_fails_tls() {
    let ca = test_ca();
    let (addr, mut seen) = start_server(&ca).await;
    let dir = tempfile::tempdir().unwrap();
    let identity = xrdtest_proto::identity::IdentityDir::new(dir.path());
    let credentials = identity.load_or_create().unwrap();
    let issued = ca.issue_peer_certificate(&credentials.public_key, "slave1", "slave").unwrap();
    let connect_with = |chain: String| {
        let ca_pem = ca.cert_pem().to_string();
        let key = credentials.key_pem.clone();
        async move {
            let config = client_config_with_identity(ca_pem.as_bytes(), chain.as_bytes(), key.as_bytes()).unwrap();
            let tcp = TcpStream::connect(addr).await.unwrap();
            let tls = TlsConnector::from(config).connect(server_name(MASTER_TLS_NAME).unwrap(), tcp).await?;
            let mut conn = Connection::new(tls, DEFAULT_MAX_FRAME_LEN);
            client_handshake(&mut conn, &Hello::new(Role::Slave, "slave1", ""), TIMEOUT)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
        }
    };
    connect_with(issued.chain_pem.clone()).await.unwrap();
    match next_seen(&mut seen).await {
        ServerSaw::Welcomed(_, presented) => assert_eq!(presented, Some(issued.fingerprint.clone())),
        other => panic!("expected a welcome, got {other:?}"),
    }
    // The same key certified by a stranger's CA: TLS itself refuses it.
    let stranger = test_ca().issue_peer_certificate(&credentials.public_key, "slave1", "slave").unwrap();
    assert!(connect_with(stranger.chain_pem).await.is_err(), "a certificate of another CA gets nowhere");
    assert!(matches!(next_seen(&mut seen).await, ServerSaw::TlsFailed(_)));
}

#[test]
fn a_peer_key_must_be_a_p256_point() {
    let ca = test_ca();
    assert!(ca.issue_peer_certificate(&[4u8; 64], "s", "slave").is_err());
    assert!(ca.issue_peer_certificate(&[], "s", "slave").is_err());
    let issued = ca.issue_peer_certificate(&xrdtest_proto::identity::throwaway_public_key(), "s", "slave").unwrap();
    assert_eq!(issued.fingerprint.len(), 64);
    assert!(issued.chain_pem.ends_with(ca.cert_pem()));
    // A peer tells a certificate of its CA from one of a CA it no longer trusts.
    assert!(xrdtest_proto::tls::issued_by_one_of(issued.chain_pem.as_bytes(), ca.cert_pem().as_bytes()));
    assert!(!xrdtest_proto::tls::issued_by_one_of(issued.chain_pem.as_bytes(), test_ca().cert_pem().as_bytes()));
}

#[tokio::test]
async fn other_protocol_version_is_refused_naming_both_versions() {
    let ca = test_ca();
    let (addr, mut seen) = start_server(&ca).await;
    let mut conn = tls_connect(addr, ca.cert_pem()).await.unwrap();
    let mut hello = Hello::new(Role::Slave, "slave1", SECRET);
    hello.protocol_version = 99;
    match client_handshake(&mut conn, &hello, TIMEOUT).await {
        Err(HandshakeError::Refused { reason: RefusalReason::VersionMismatch, message, .. }) => {
            assert!(message.contains(&format!("master speaks version {PROTOCOL_VERSION}")), "{message}");
            assert!(message.contains("peer speaks version 99"), "{message}");
        }
        other => panic!("expected a version refusal, got {other:?}"),
    }
    assert_master_refused_version(next_seen(&mut seen).await, 99);
}

/// The master's side of a version refusal: the error, and its text, name both versions.
fn assert_master_refused_version(seen: ServerSaw, peer_version: u32) {
    match seen {
        ServerSaw::Refused(error @ HandshakeError::VersionMismatch { master, peer }) => {
            assert_eq!((master, peer), (PROTOCOL_VERSION, peer_version));
            let text = error.to_string();
            assert!(text.contains(&format!("master speaks version {PROTOCOL_VERSION}")), "{text}");
            assert!(text.contains(&format!("peer speaks version {peer_version}")), "{text}");
        }
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_peer_whose_hello_differs_after_the_prefix_is_refused_naming_both_versions() {
    // Other versions' Hellos share only the prefix: after it, bytes this version cannot
    // decode (0xFF is no bincode varint), or nothing at all. The master reads the prefix
    // first, so each is refused by version, not dropped as undecodable.
    let ca = test_ca();
    let (addr, mut seen) = start_server(&ca).await;
    for (version, tail) in [(PROTOCOL_VERSION + 1, vec![0xFF; 16]), (PROTOCOL_VERSION - 1, Vec::new())] {
        let mut conn = tls_connect(addr, ca.cert_pem()).await.unwrap();
        let mut hello = encode_message(&VersionPrefix { magic: MAGIC, protocol_version: version }).unwrap();
        assert!(decode_message::<Hello>(&[&hello[..], &tail[..]].concat()).is_err(), "not a Hello of this version");
        hello.extend_from_slice(&tail);
        conn.send(&RawPayload(hello)).await.unwrap();

        // What the peer receives: its own version's code can read the prefix, naming the
        // master's version; the refusal text names both.
        let reply = tokio::time::timeout(TIMEOUT, conn.recv_frame()).await.unwrap().unwrap().expect("a reply");
        let (prefix, _) = codec::decode_prefix::<VersionPrefix>(&reply).unwrap();
        assert_eq!(prefix, VersionPrefix { magic: MAGIC, protocol_version: PROTOCOL_VERSION });
        let refusal = decode_message::<HelloReply>(&reply).unwrap().refusal.expect("a refusal");
        assert_eq!(refusal.reason, RefusalReason::VersionMismatch);
        assert!(refusal.message.contains(&format!("master speaks version {PROTOCOL_VERSION}")), "{}", refusal.message);
        assert!(refusal.message.contains(&format!("peer speaks version {version}")), "{}", refusal.message);

        assert_master_refused_version(next_seen(&mut seen).await, version);
        // The refusal is the last thing the peer hears.
        let after: Result<Option<FromMaster>, _> = tokio::time::timeout(TIMEOUT, conn.recv()).await.unwrap();
        assert!(matches!(after, Ok(None) | Err(_)), "got {after:?}");
    }
}

#[tokio::test]
async fn a_master_of_another_version_is_detected_by_the_peer() {
    // A fake master answering with version 99 and a body this version cannot parse.
    let (a, b) = tokio::io::duplex(4096);
    tokio::spawn(async move {
        let mut master = Connection::new(a, DEFAULT_MAX_FRAME_LEN);
        let _hello = master.recv_frame().await.unwrap();
        let mut reply = encode_message(&VersionPrefix { magic: MAGIC, protocol_version: 99 }).unwrap();
        reply.extend_from_slice(&[0xFF; 16]);
        master.send(&serde_bytes_passthrough(reply)).await.unwrap();
        tokio::time::sleep(TIMEOUT).await;
    });
    let mut peer = Connection::new(b, DEFAULT_MAX_FRAME_LEN);
    match client_handshake(&mut peer, &Hello::new(Role::Slave, "s", SECRET), TIMEOUT).await {
        Err(error @ HandshakeError::VersionMismatch { master: 99, peer }) => {
            assert_eq!(peer, PROTOCOL_VERSION);
            let text = error.to_string();
            assert!(text.contains("master speaks version 99"), "{text}");
            assert!(text.contains(&format!("peer speaks version {PROTOCOL_VERSION}")), "{text}");
        }
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
}

/// Sends pre-encoded bytes as a frame payload: a tuple struct of raw bytes serializes as
/// the bytes themselves with bincode's serde `serialize_tuple` of u8s.
fn serde_bytes_passthrough(bytes: Vec<u8>) -> RawPayload {
    RawPayload(bytes)
}

struct RawPayload(Vec<u8>);

impl serde::Serialize for RawPayload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut tuple = serializer.serialize_tuple(self.0.len())?;
        for byte in &self.0 {
            tuple.serialize_element(byte)?;
        }
        tuple.end()
    }
}

#[tokio::test]
async fn plain_tcp_to_the_tls_port_is_dropped_and_the_server_keeps_serving() {
    let ca = test_ca();
    let (addr, mut seen) = start_server(&ca).await;
    let mut plain = TcpStream::connect(addr).await.unwrap();
    let hello = encode_message(&Hello::new(Role::Slave, "slave1", SECRET)).unwrap();
    plain.write_all(&(hello.len() as u32).to_be_bytes()).await.unwrap();
    plain.write_all(&hello).await.unwrap();
    // The server answers with at most a TLS alert, then closes; never a protocol reply.
    let mut answer = Vec::new();
    // Either a clean close or a reset ends the read; what matters is that it ends.
    let _ = tokio::time::timeout(TIMEOUT, plain.read_to_end(&mut answer)).await.expect("server closes the connection");
    assert!(!answer.windows(4).any(|w| w == MAGIC), "a plain-TCP peer must learn nothing");
    match next_seen(&mut seen).await {
        ServerSaw::TlsFailed(reason) => assert!(!reason.is_empty()),
        other => panic!("expected a TLS failure, got {other:?}"),
    }

    // The same server still serves a proper peer.
    let mut conn = tls_connect(addr, ca.cert_pem()).await.unwrap();
    client_handshake(&mut conn, &Hello::new(Role::Hypervisor, "hv1", SECRET), TIMEOUT).await.unwrap();
    assert!(matches!(next_seen(&mut seen).await, ServerSaw::Welcomed(..)));
}

#[tokio::test]
async fn a_peer_trusting_another_ca_refuses_the_master() {
    let ca = test_ca();
    let (addr, mut seen) = start_server(&ca).await;
    let other_ca = test_ca();
    let err = tls_connect(addr, other_ca.cert_pem()).await.err().expect("TLS must fail");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    assert!(matches!(next_seen(&mut seen).await, ServerSaw::TlsFailed(_)));
}

#[tokio::test]
async fn silent_peer_and_garbage_are_dropped() {
    let ca = test_ca();
    let (addr, mut seen) = start_server(&ca).await;
    // Completes TLS, then says nothing: the handshake times out.
    let _silent = tls_connect(addr, ca.cert_pem()).await.unwrap();
    assert!(matches!(next_seen(&mut seen).await, ServerSaw::Refused(HandshakeError::Timeout(_))));
    // Sends a frame that is not an xrdtest Hello.
    let mut garbage = tls_connect(addr, ca.cert_pem()).await.unwrap();
    garbage.send(&"GET / HTTP/1.1").await.unwrap();
    assert!(matches!(next_seen(&mut seen).await, ServerSaw::Refused(HandshakeError::NotXrdtest)));
    // Announces a frame larger than the limit.
    let mut huge = tls_connect(addr, ca.cert_pem()).await.unwrap();
    huge.get_mut().write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    huge.get_mut().flush().await.unwrap();
    match next_seen(&mut seen).await {
        ServerSaw::Refused(HandshakeError::Proto(ProtoError::FrameTooLarge { len, .. })) => {
            assert_eq!(len, u32::MAX as usize)
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
}

#[test]
fn the_ca_is_created_once_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let first = CertificateAuthority::load_or_create(dir.path()).unwrap();
    let again = CertificateAuthority::load_or_create(dir.path()).unwrap();
    assert_eq!(first.cert_pem(), again.cert_pem());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("ca.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the CA key is private");
    // A certificate issued after a reload is trusted by peers holding the original ca.crt.
    let issued = again.issue_server_certificate(&[]).unwrap();
    let _ = server_config(issued.chain_pem.as_bytes(), issued.key_pem.as_bytes()).unwrap();
    std::fs::remove_file(dir.path().join("ca.key")).unwrap();
    assert!(CertificateAuthority::load_or_create(dir.path()).is_err(), "half a CA is an error, not a new CA");
}

#[tokio::test]
async fn a_certificate_issued_after_reload_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let original_pem = CertificateAuthority::load_or_create(dir.path()).unwrap().cert_pem().to_string();
    let reloaded = CertificateAuthority::load_or_create(dir.path()).unwrap();
    let (addr, mut seen) = start_server(&reloaded).await;
    let mut conn = tls_connect(addr, &original_pem).await.unwrap();
    client_handshake(&mut conn, &Hello::new(Role::Slave, "slave9", SECRET), TIMEOUT).await.unwrap();
    assert!(matches!(next_seen(&mut seen).await, ServerSaw::Welcomed(..)));
}
