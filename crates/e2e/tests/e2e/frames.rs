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
use xrdtest_proto::{client_handshake, Connection, Hello, Role, DEFAULT_MAX_FRAME_LEN};

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

    // A welcomed peer that then sends a 4 GiB frame length, or an undecodable frame.
    for (name, bytes) in
        [("rogue1", vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3]), ("rogue2", vec![0, 0, 0, 5, 0xff, 0xfe, 0xfd, 0xfc, 0xfb])]
    {
        let mut conn = runtime.block_on(async {
            let mut conn = Connection::new(tls_connect(peer, &ca).await, DEFAULT_MAX_FRAME_LEN);
            client_handshake(&mut conn, &Hello::new(Role::Slave, name, secret.as_str()), Duration::from_secs(10))
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
