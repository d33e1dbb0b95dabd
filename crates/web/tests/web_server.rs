//! The web port's server loop over real sockets: a client that sends half a request and goes
//! quiet is closed at the header deadline; past the connection cap new connections are
//! closed at once; the client's address reaches the handlers; normal requests work.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use xrdtest_web::server::{serve_with, Limits};

async fn start(limits: Limits) -> SocketAddr {
    let app = Router::new()
        .route("/", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { format!("hello {}", peer.ip()) }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_with(listener, app, limits));
    addr
}

/// Reads until the server closes; the time it took, or None if it stayed open past `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => continue,
            }
        }
    })
    .await
    .ok()
}

async fn get_root(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    reply
}

#[tokio::test]
async fn half_a_request_is_closed_at_the_header_deadline() {
    let addr = start(Limits { header_read_timeout: Duration::from_millis(300), max_connections: 16 }).await;
    let reply = get_root(addr).await;
    assert!(reply.starts_with("HTTP/1.1 200") && reply.ends_with("hello 127.0.0.1"), "{reply}");

    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let took = closed_within(&mut slow, Duration::from_secs(5)).await.expect("the half request was kept open");
    assert!(took >= Duration::from_millis(250), "closed before the deadline: {took:?}");
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_room_comes_back() {
    let addr = start(Limits { header_read_timeout: Duration::from_secs(30), max_connections: 4 }).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut extra, Duration::from_secs(2)).await.is_some(), "the 5th connection was kept");
    drop(idle);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reply = get_root(addr).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}
