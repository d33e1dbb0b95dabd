//! The xrdtest master: loads definitions, accepts slaves, runs sessions, stores them, serves
//! the API.
//!
//! Layout:
//! - [`config`] — `master.toml`.
//! - [`model`] — session records as stored and served.
//! - [`store`] — sled trees for sessions, output chunks and logs.
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

pub mod alerts;
pub mod api;
pub mod catalog;
pub mod config;
pub mod git_repo;
pub mod listener;
pub mod master;
pub mod model;
pub mod peers;
pub mod scheduler;
pub mod session;
pub mod store;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};
use xrdtest_proto::pki::CertificateAuthority;

use config::MasterConfig;
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

    let peer_listener =
        TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let web_listener = TcpListener::bind(config.web_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.web_listen))?;
    let peer_address = peer_listener.local_addr()?;
    let web_address = web_listener.local_addr()?;
    let ca_cert_path = config.state_dir.join(xrdtest_proto::pki::CA_CERT_FILE);
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
    let app = api::router(master.clone());
    tokio::spawn(async move {
        if let Err(err) = axum::serve(web_listener, app).await {
            warn!(error = %err, "HTTP server stopped");
        }
    });
    info!(peers = %peer_address, web = %web_address, ca = %ca_cert_path.display(), "master listening");
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
