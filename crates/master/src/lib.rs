//! The xrdtest master: loads definitions, accepts slaves, runs sessions, stores them, serves
//! the API.
//!
//! Layout:
//! - [`config`] — `master.toml`.
//! - [`model`] — session records as stored and served.
//! - [`store`] — sled trees for sessions, output chunks and logs.
//! - [`clusters`] — hypervisors, the clusters they run, and which one has room.
//! - [`peers`] — connected slaves and hypervisors; where each stage's messages go.
//! - [`listener`] — TLS accept, handshake, one task per peer connection.
//! - [`master`] — shared state and the FIFO session queue.
//! - [`catalog`] — the definitions in service: last good versions, snapshots, origins.
//! - [`watch`] — follows the repositories: inotify for folders, fetches for git.
//! - [`git_repo`] — clone, fetch and move a git checkout (git2).
//! - [`scheduler`] — starts sessions at their cron times.
//! - [`alerts`] — composes and sends alert mail (lettre).
//! - [`session`] — the plan and failure rules (pure) and the task that drives a session.
//! - [`api`] — the HTTP JSON API.
//! - [`web`] — the dashboard: pages, logins, the files slaves fetch (HTTP or HTTPS).

/// The data contract (records, states, API bodies), shared with the CLI.
pub use xrdtest_model as model;

pub mod alerts;
pub mod api;
pub mod catalog;
pub mod clusters;
pub mod config;
pub mod git_repo;
pub mod listener;
pub mod master;
pub mod peers;
pub mod scheduler;
pub mod session;
pub mod store;
pub mod watch;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};
use xrdtest_proto::pki::CertificateAuthority;

use config::{MasterConfig, WebTls};
use master::Master;
use model::now_ms;
use store::Store;

/// A master that is listening: its addresses, and the handle to stop it.
pub struct RunningMaster {
    pub master: Arc<Master>,
    pub peer_address: SocketAddr,
    pub web_address: SocketAddr,
    pub ca_cert_path: std::path::PathBuf,
}

/// Opens the store, creates or loads the CA, loads the definitions and starts listening
/// for peers and for HTTP. Returns once both listeners are bound.
pub async fn start(config: MasterConfig) -> anyhow::Result<RunningMaster> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create state directory {}", config.state_dir.display()))?;
    let store = Store::open(&config.state_dir.join("store")).context("cannot open the session store")?;
    let interrupted = store.mark_unfinished_interrupted(now_ms())?;
    if !interrupted.is_empty() {
        warn!(sessions = ?interrupted, "sessions unfinished at the last stop are marked interrupted");
    }
    let ca = CertificateAuthority::load_or_create(&config.state_dir).context("certificate authority")?;
    let issued = ca.issue_server_certificate(&config.tls_names)?;
    let tls = xrdtest_proto::tls::server_config(issued.chain_pem.as_bytes(), issued.key_pem.as_bytes())?;
    let web_tls = web_tls_config(&config, &tls)?;
    web::auth::cookie_key(&config.web.cookie_key_file).context("web cookie key")?;

    let peer_listener =
        TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let web_listener = TcpListener::bind(config.web_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.web_listen))?;
    let peer_address = peer_listener.local_addr()?;
    let web_address = web_listener.local_addr()?;
    let ca_cert_path = config.state_dir.join(xrdtest_proto::pki::CA_CERT_FILE);
    // From here on the configuration names the bound addresses, so a port 0 (any free one)
    // becomes the real port in `@port@` and in what cluster VMs are told to connect to.
    let mut config = config;
    config.listen = peer_address;
    config.web_listen = web_address;
    let master = Master::new(config, store);
    if let Some(smtp) = &master.config.smtp {
        let alerter = alerts::Alerter::start(smtp.clone(), master.store.clone()).context("alert mail")?;
        master.set_end_listener(Box::new(alerter));
    }
    watch::start(&master);
    let definitions = master.definitions();
    info!(
        suites = definitions.repository.suites.len(),
        clusters = definitions.repository.clusters.len(),
        errors = definitions.errors.len(),
        repos = master.config.repos.len(),
        "definitions loaded"
    );
    tokio::spawn(scheduler::run(master.clone()));

    tokio::spawn(listener::serve(master.clone(), peer_listener, TlsAcceptor::from(tls)));
    // The client's address is recorded for the login rate limiter (`ConnectInfo<SocketAddr>`).
    let app = api::router(master.clone())
        .merge(web::router(master.clone()))
        .into_make_service_with_connect_info::<SocketAddr>();
    let scheme = if web_tls.is_some() { "https" } else { "http" };
    tokio::spawn(async move {
        let served = match web_tls {
            None => axum::serve(web_listener, app).await,
            // `tap_io` only so that axum records the peer address of this listener type too.
            Some(tls) => axum::serve(https::TlsListener::new(web_listener, tls).tap_io(|_| {}), app).await,
        };
        if let Err(err) = served {
            warn!(error = %err, "HTTP server stopped");
        }
    });
    info!(peers = %peer_address, web = %format!("{scheme}://{web_address}"), ca = %ca_cert_path.display(), "master listening");
    Ok(RunningMaster { master, peer_address, web_address, ca_cert_path })
}

/// Stops cleanly: cancels running sessions (their suite finalize still runs) for up to
/// `grace`, then flushes the store.
pub async fn shutdown(master: &Master, grace: std::time::Duration) {
    master.cancel_all("the master is shutting down");
    let deadline = tokio::time::Instant::now() + grace;
    while master.running_sessions() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if let Err(err) = master.store.flush().await {
        warn!(error = %err, "store flush failed");
    }
}

/// The dashboard's TLS configuration from `[web] tls`: `ca` reuses the peer listener's
/// certificate (issued by the master's CA for `xrdtest-master` and `tls_names`).
fn web_tls_config(
    config: &MasterConfig,
    peer_tls: &Arc<tokio_rustls::rustls::ServerConfig>,
) -> anyhow::Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>> {
    let base = match &config.web.tls {
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

/// HTTPS for the dashboard: TLS handshakes run in their own tasks (a slow or silent client
/// holds up nobody), and finished connections are handed to axum.
mod https {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio_rustls::server::TlsStream;
    use tokio_rustls::TlsAcceptor;
    use tracing::debug;

    const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    pub struct TlsListener {
        ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
        local: std::io::Result<SocketAddr>,
    }

    impl TlsListener {
        pub fn new(listener: TcpListener, config: Arc<tokio_rustls::rustls::ServerConfig>) -> TlsListener {
            let local = listener.local_addr();
            let acceptor = TlsAcceptor::from(config);
            let (sender, ready) = mpsc::channel(64);
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
                    let (acceptor, handed) = (acceptor.clone(), sender.clone());
                    tokio::spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
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
}
