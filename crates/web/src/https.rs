//! HTTPS for the dashboard: its TLS configuration from `[web] tls` ([`tls_config`]), and
//! [`TlsListener`]: TLS handshakes run in their own tasks (a slow or silent client holds up
//! nobody), and finished connections are handed to axum.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::debug;
use xrdtest_master::handle::{WebConfig, WebTls};

/// The dashboard's TLS configuration from `[web] tls`: `ca` reuses the peer listener's
/// certificate (issued by the master's CA for `xrdtest-master` and `tls_names`).
pub fn tls_config(
    web: &WebConfig,
    peer_tls: &Arc<tokio_rustls::rustls::ServerConfig>,
) -> anyhow::Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>> {
    let base = match &web.tls {
        WebTls::None => return Ok(None),
        WebTls::Ca => peer_tls.clone(),
        WebTls::Files { cert_file, key_file } => {
            let read = |path: &std::path::Path| {
                std::fs::read(path).with_context(|| format!("[web] cannot read {}", path.display()))
            };
            xrdtest_proto::tls::server_config(&read(cert_file)?, &read(key_file)?)
                .with_context(|| format!("[web] {} and {}", cert_file.display(), key_file.display()))?
        }
    };
    let mut web = (*base).clone();
    web.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(web)))
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once; more connections are closed at accept (the open
/// connections that finished theirs are capped by the server loop, `server.rs`).
pub const MAX_HANDSHAKES: usize = 256;

pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: std::io::Result<SocketAddr>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<tokio_rustls::rustls::ServerConfig>) -> TlsListener {
        let local = listener.local_addr();
        let acceptor = TlsAcceptor::from(config);
        let (sender, ready) = mpsc::channel(64);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let (stream, address) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        debug!(error = %err, "HTTPS accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    debug!(client = %address, limit = MAX_HANDSHAKES, "too many HTTPS handshakes at once; closing");
                    drop(stream);
                    continue;
                };
                let (acceptor, handed) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    drop(permit);
                    match handshake {
                        Ok(Ok(tls)) => {
                            let _ = handed.send((tls, address)).await;
                        }
                        Ok(Err(err)) => debug!(client = %address, error = %err, "HTTPS handshake failed"),
                        Err(_) => debug!(client = %address, "HTTPS handshake timed out"),
                    }
                });
                if sender.is_closed() {
                    return;
                }
            }
        });
        TlsListener { ready, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept task never ends while this listener exists.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.local {
            Ok(address) => Ok(*address),
            Err(err) => Err(std::io::Error::new(err.kind(), err.to_string())),
        }
    }
}
