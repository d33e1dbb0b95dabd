//! Garbage on the master's peer port closes only that connection: plain TCP junk, a TLS
//! connection announcing a 4 GiB frame before or after the handshake, an undecodable frame.
//! The master keeps serving the API and its slaves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use xrdtest_e2e::{state, summarize, wait_until, Case, Env, MasterOptions, Suite};
use xrdtest_proto::{
    client_handshake, Connection, Hello, OutputChunk, OutputLine, Role, ToMaster, DEFAULT_MAX_FRAME_LEN,
};

const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// Reads until the other side closes; panics if it does not within [`CLOSE_WITHIN`].
async fn assert_closed<S: AsyncRead + Unpin>(stream: &mut S, what: &str) {
    let mut buffer = [0u8; 4096];
    let drained = tokio::time::timeout(CLOSE_WITHIN, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the master kept the connection open after {what}");
}

async fn tls_connect(peer: SocketAddr, ca: &[u8]) -> TlsStream<TcpStream> {
    let config: Arc<_> = xrdtest_proto::tls::client_config(ca).expect("a TLS client configuration");
    let name = xrdtest_proto::tls::server_name(xrdtest_proto::tls::MASTER_TLS_NAME).expect("the master's name");
    let tcp = TcpStream::connect(peer).await.expect("connect to the peer port");
    TlsConnector::from(config).connect(name, tcp).await.expect("TLS handshake with the master")
}

#[test]
fn malformed_and_oversized_frames_close_only_their_connection() {
    let suite = Suite::new("ts_frames", &["m1"]).case(Case::new("noop"));
    let mut env = Env::new(&[suite], MasterOptions::default());
    env.start_slaves(&["m1"]);
    let api = env.api();
    let m1_since = api.slaves().iter().find(|s| s["name"] == "m1").map(|s| s["connected_ms"].clone());
    let peer = env.master.peer_addr();
    let ca = std::fs::read(env.master.ca_file()).expect("the master's CA");
    let secret = env.master.secret.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");

    // Plain TCP garbage (starting with a huge length) on the TLS port.
    runtime.block_on(async {
        let mut tcp = TcpStream::connect(peer).await.expect("connect");
        tcp.write_all(b"\xff\xff\xff\xffGET / HTTP/1.0\r\n\r\nnot TLS at all").await.expect("write");
        assert_closed(&mut tcp, "plain TCP garbage").await;
    });

    // TLS, then a frame length of 0xFFFFFFFF instead of a Hello.
    runtime.block_on(async {
        let mut tls = tls_connect(peer, &ca).await;
        tls.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await.expect("write");
        tls.flush().await.expect("flush");
        assert_closed(&mut tls, "a 4 GiB frame length before the handshake").await;
    });

    // TLS, then a well-formed 100 KiB frame instead of a Hello: before the handshake the
    // limit is 64 KiB, whatever `max_frame_bytes` says.
    runtime.block_on(async {
        let mut tls = tls_connect(peer, &ca).await;
        let body = vec![7u8; 100 * 1024];
        tls.write_all(&(body.len() as u32).to_be_bytes()).await.expect("write");
        // The master may close as soon as it has read the length: the rest may not get out.
        let _ = tls.write_all(&body).await;
        let _ = tls.flush().await;
        assert_closed(&mut tls, "a 100 KiB frame before the handshake").await;
    });
    let log = env.master.log();
    assert!(log.contains("frame of 102400 bytes is larger than the maximum of 65536 bytes"), "{log}");

    // Once welcomed, a peer may send frames beyond 64 KiB (its output chunks are that big):
    // after a 200 KiB one it is still connected.
    let mut big = runtime.block_on(async {
        let mut conn = Connection::new(tls_connect(peer, &ca).await, DEFAULT_MAX_FRAME_LEN);
        client_handshake(&mut conn, &Hello::enrolling(Role::Slave, "big1", secret.as_str()), Duration::from_secs(10))
            .await
            .expect("the master welcomes a peer with the secret");
        let chunk = ToMaster::Output(OutputChunk {
            stage_id: 999_999,
            seq: 0,
            lines: vec![OutputLine { unix_ms: 0, text: "x".repeat(200 * 1024) }],
        });
        conn.send(&chunk).await.expect("a 200 KiB frame is sent");
        conn
    });
    api.wait_connected(&["big1"], Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    assert!(api.connected("big1"), "a welcomed peer's 200 KiB frame closed its connection:\n{}", env.master.log());
    runtime.block_on(async { big.send(&ToMaster::Disconnect { reason: "done".into() }).await }).expect("send");
    drop(big);

    // A welcomed peer that then sends a 4 GiB frame length, or an undecodable frame.
    for (name, bytes) in
        [("rogue1", vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3]), ("rogue2", vec![0, 0, 0, 5, 0xff, 0xfe, 0xfd, 0xfc, 0xfb])]
    {
        let mut conn = runtime.block_on(async {
            let mut conn = Connection::new(tls_connect(peer, &ca).await, DEFAULT_MAX_FRAME_LEN);
            client_handshake(&mut conn, &Hello::enrolling(Role::Slave, name, secret.as_str()), Duration::from_secs(10))
                .await
                .expect("the master welcomes a peer with the secret");
            conn
        });
        api.wait_connected(&[name], Duration::from_secs(10));
        runtime.block_on(async {
            conn.get_mut().write_all(&bytes).await.expect("write");
            conn.get_mut().flush().await.expect("flush");
            let closed = tokio::time::timeout(CLOSE_WITHIN, async {
                loop {
                    match conn.recv_frame().await {
                        Ok(Some(_)) => continue,
                        Ok(None) | Err(_) => return,
                    }
                }
            })
            .await;
            assert!(closed.is_ok(), "the master kept {name}'s connection open after a bad frame");
        });
        wait_until(Duration::from_secs(10), &format!("{name} to be gone"), || {
            if api.connected(name) {
                Err("still connected".into())
            } else {
                Ok(())
            }
        });
    }
    let log = env.master.log();
    assert!(log.contains("larger than the maximum"), "the master logs the oversized frame:\n{log}");

    // Everything else is untouched.
    assert_eq!(api.get("/api/health")["status"], "ok");
    let m1_now = api.slaves().iter().find(|s| s["name"] == "m1").map(|s| s["connected_ms"].clone());
    assert_eq!(m1_now, m1_since, "m1's connection was not disturbed");
    assert!(env.master.proc().is_running(), "the master is still running");
    let id = api.run("ts_frames");
    let session = api.wait_final(id, Duration::from_secs(30));
    assert_eq!(state(&session), "passed", "{}", summarize(&session));
}

/// A stranger that connects and says nothing, before TLS or after it, is closed at the
/// handshake deadline (10 s each step), not left holding its place.
#[test]
fn a_silent_stranger_is_closed_at_the_handshake_deadline() {
    let suite = Suite::new("ts_silent", &["q1"]).case(Case::new("noop"));
    let env = Env::new(&[suite], MasterOptions::default());
    let peer = env.master.peer_addr();
    let ca = std::fs::read(env.master.ca_file()).expect("the master's CA");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let silent_tcp = async {
            let mut tcp = TcpStream::connect(peer).await.expect("connect");
            let mut byte = [0u8; 1];
            tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut byte)).await.is_ok()
        };
        let silent_tls = async {
            let mut tls = tls_connect(peer, &ca).await;
            let mut byte = [0u8; 1];
            tokio::time::timeout(Duration::from_secs(20), tls.read(&mut byte)).await.is_ok()
        };
        let (tcp_closed, tls_closed) = tokio::join!(silent_tcp, silent_tls);
        assert!(tcp_closed, "a silent TCP connection was kept past the TLS deadline");
        assert!(tls_closed, "a TLS connection without a Hello was kept past the handshake deadline");
    });
    let log = env.master.log();
    assert!(log.contains("TLS handshake timed out"), "{log}");
}

/// Strangers that connect and never finish their handshake hold at most 256 places: the
/// next connection is closed at once; once they go, peers get in again.
#[test]
fn idle_strangers_cannot_fill_the_peer_port() {
    let suite = Suite::new("ts_idle", &["i1"]).case(Case::new("noop"));
    let mut env = Env::new(&[suite], MasterOptions::default());
    let peer = env.master.peer_addr();
    let ca = std::fs::read(env.master.ca_file()).expect("the master's CA");
    let secret = env.master.secret.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let mut idle = Vec::new();
        for _ in 0..256 {
            idle.push(TcpStream::connect(peer).await.expect("connect"));
        }
        // Let the master accept all of them before the one too many.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut extra = TcpStream::connect(peer).await.expect("connect");
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the 257th stranger was not closed at once: {read:?}");
        drop(idle);
        // Their TLS accepts end on EOF; then a real handshake gets in.
        let welcomed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let mut conn = Connection::new(tls_connect(peer, &ca).await, DEFAULT_MAX_FRAME_LEN);
                let hello = Hello::enrolling(Role::Slave, "late", secret.as_str());
                if client_handshake(&mut conn, &hello, Duration::from_secs(5)).await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(welcomed.is_ok(), "no peer got in after the strangers left");
    });
    let log = env.master.log();
    assert!(log.contains("too many connections in their handshake"), "{log}");
    env.start_slaves(&["i1"]);
    let api = env.api();
    let session = api.wait_final(api.run("ts_idle"), Duration::from_secs(30));
    assert_eq!(state(&session), "passed", "{}", summarize(&session));
}
