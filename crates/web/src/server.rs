//! The HTTP server loop of the web port, instead of `axum::serve`, for two limits a public
//! port needs and `axum::serve` does not set: a deadline on reading a request's headers (a
//! client that sends half a request and goes quiet is closed, not kept for ever) and a cap on
//! open connections (more are closed at accept). HTTP/1.1 only, as the dashboard speaks.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tracing::{debug, warn};
use xrdtest_master::throttle::OncePerSecond;

/// How long a client has to send the headers of a request, the first or the next on a
/// kept-alive connection (then the connection is closed).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once, live pages' event streams included.
pub const MAX_CONNECTIONS: usize = 1024;

/// One warning a second at most about refused connections.
static REFUSALS_LOGGED: OncePerSecond = OncePerSecond::new();

/// The limits of [`serve_with`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { header_read_timeout: HEADER_READ_TIMEOUT, max_connections: MAX_CONNECTIONS }
    }
}

/// Serves `app` on every connection `listener` accepts, until the task is dropped.
pub async fn serve<L>(listener: L, app: Router) -> std::io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    serve_with(listener, app, Limits::default()).await
}

/// [`serve`] with other limits.
pub async fn serve_with<L>(mut listener: L, app: Router, limits: Limits) -> std::io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    let open = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (io, peer) = listener.accept().await;
        let Ok(permit) = open.clone().try_acquire_owned() else {
            if REFUSALS_LOGGED.allow() {
                warn!(client = %peer, limit = limits.max_connections, "too many open web connections; closing new ones");
            }
            drop(io);
            continue;
        };
        let service = WithPeer { app: app.clone(), peer };
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
            if let Err(err) = http.serve_connection(TokioIo::new(io), service).await {
                debug!(client = %peer, error = %err, "web connection ended");
            }
            drop(permit);
        });
    }
}

/// The router for one connection: each request carries the client's address, as
/// `into_make_service_with_connect_info` would give it (the login rate limiter reads it).
#[derive(Clone)]
struct WithPeer {
    app: Router,
    peer: SocketAddr,
}

impl hyper::service::Service<hyper::Request<Incoming>> for WithPeer {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = <Router as tower_service::Service<axum::extract::Request>>::Future;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let mut app = self.app.clone();
        tower_service::Service::call(&mut app, request)
    }
}
