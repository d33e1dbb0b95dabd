//! The xrdtest master's core: loads definitions, accepts slaves and hypervisors, runs
//! sessions, stores them. It knows nothing of HTTP: the JSON API and the dashboard are
//! `crates/web`, which reaches the core only through [`handle::CoreHandle`], and
//! `crates/master-daemon` (the `xrdtest-master` binary) wires the two together.
//!
//! Starting is two steps, so that the HTTP side can check its own settings in between
//! (before anything listens): [`open`] (state directory, store, CA, the peer listener's TLS
//! configuration), then [`Opened::listen`] (both listeners bound, definitions loaded,
//! background tasks and the peer listener running); the web listener comes back bound but
//! not served.
//!
//! Layout:
//! - [`config`] — `master.toml`.
//! - [`model`] — session records as stored and served.
//! - [`store`] — sled trees for sessions, output chunks and logs.
//! - [`clusters`] — hypervisors, the clusters they run, and which one has room.
//! - [`peers`] — connected slaves and hypervisors; where each stage's messages go.
//! - [`listener`] — TLS accept, handshake, one task per peer connection.
//! - [`peer_auth`] — who may connect under which name: certificates, enrollment, approval.
//! - [`identities`] — the record of enrolled peers (`peers.json`).
//! - [`private_file`] — owner-only files replaced whole (`peers.json`, `tokens.json`).
//! - [`api_tokens`] — API tokens with scopes and ends, kept hashed (`tokens.json`).
//! - [`master`] — shared state and the FIFO session queue.
//! - [`catalog`] — the definitions in service: last good versions, snapshots, origins.
//! - [`watch`] — follows the repositories: inotify for folders, fetches for git.
//! - [`git_repo`] — clone, fetch and move a git checkout (git2).
//! - [`scheduler`] — starts sessions at their cron times.
//! - [`retention`] — prunes finished sessions by age, count per suite and free disk.
//! - [`alerts`] — composes and sends alert mail (lettre).
//! - [`notify`] — webhooks about finished sessions (JSON, Slack, Matrix; signed, retried).
//! - [`metrics`] — the master's counters for monitoring (stage durations).
//! - [`session`] — the plan and failure rules (pure) and the task that drives a session.
//! - [`handle`] — the narrow handle the HTTP side uses: the queries and commands of the API
//!   and the pages, and the types they speak.

/// The data contract (records, states, API bodies), shared with the CLI.
pub use xrdtest_model as model;

pub mod alerts;
pub mod api_tokens;
pub mod catalog;
pub mod cluster_control;
pub mod clusters;
pub mod config;
pub mod disk;
pub mod git_repo;
pub mod handle;
pub mod identities;
pub mod listener;
pub mod master;
pub mod metrics;
pub mod notify;
pub mod peer_auth;
pub mod peers;
pub mod private_file;
pub mod retention;
pub mod scheduler;
pub mod session;
pub mod store;
pub mod throttle;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

pub use handle::CoreHandle;

use config::MasterConfig;
use master::Master;
use model::now_ms;
use store::Store;

/// A core whose store, CA and peer certificate are ready; nothing listens yet.
pub struct Opened {
    config: MasterConfig,
    store: Store,
    peer_tls: Arc<ServerConfig>,
    auth: peer_auth::PeerAuth,
    tokens: api_tokens::TokenStore,
}

/// Creates the state directory, opens the store (sessions unfinished at the last stop are
/// marked interrupted), creates or loads the CA and issues the peer listener's certificate.
pub fn open(config: MasterConfig) -> anyhow::Result<Opened> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create state directory {}", config.state_dir.display()))?;
    let store = Store::open(&config.state_dir.join("store"))
        .context("cannot open the session store")?
        .with_reserve(config.store_reserve_bytes);
    let interrupted = store.mark_unfinished_interrupted(now_ms())?;
    if !interrupted.is_empty() {
        warn!(sessions = ?interrupted, "sessions unfinished at the last stop are marked interrupted");
    }
    let auth = peer_auth::PeerAuth::open(&config)?;
    let ca = auth.ca();
    let issued = ca.issue_server_certificate(&config.tls_names)?;
    let peer_tls = xrdtest_proto::tls::peer_server_config(
        issued.chain_pem.as_bytes(),
        issued.key_pem.as_bytes(),
        ca.cert_pem().as_bytes(),
    )?;
    if config.peer_auth == config::PeerAuthMode::SharedSecret {
        warn!("peer_auth = \"shared-secret\": the secret alone admits any peer under any name (compatibility mode)");
    }
    let tokens = api_tokens::TokenStore::load(&config.state_dir)?;
    Ok(Opened { config, store, peer_tls, auth, tokens })
}

impl Opened {
    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    /// The peer listener's TLS configuration: a certificate from the master's CA for
    /// `xrdtest-master` and `tls_names` (`[web] tls = "ca"` reuses it).
    pub fn peer_tls(&self) -> &Arc<ServerConfig> {
        &self.peer_tls
    }

    /// Binds the peer listener and the web listener, loads the definitions, starts the
    /// alert mailer, the webhooks, the repository watchers, the scheduler and the peer
    /// listener. Returns
    /// once both listeners are bound; the web listener is not served.
    pub async fn listen(self) -> anyhow::Result<Core> {
        let Opened { config, store, peer_tls, auth, tokens } = self;
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
        let master = Master::new(config, store, auth, tokens);
        if let Some(smtp) = &master.config.smtp {
            let alerter = alerts::Alerter::start(smtp.clone(), master.store.clone()).context("alert mail")?;
            master.set_end_listener(Box::new(alerter));
        }
        if !master.config.notify.is_empty() {
            let notifier = notify::Notifier::start(
                master.config.notify.clone(),
                master.config.dashboard_url.clone(),
                master.store.clone(),
            )
            .context("webhooks")?;
            master.set_notifier(notifier);
        }
        master.start_background_tasks();
        let definitions = master.definitions();
        info!(
            suites = definitions.repository.suites.len(),
            clusters = definitions.repository.clusters.len(),
            errors = definitions.errors.len(),
            repos = master.config.repos.len(),
            "definitions loaded"
        );

        tokio::spawn(listener::serve(master.clone(), peer_listener, TlsAcceptor::from(peer_tls)));
        Ok(Core { master, peer_address, web_listener, web_address, ca_cert_path })
    }
}

/// A core that runs: peers are served; the web listener waits for the HTTP side.
pub struct Core {
    pub master: Arc<Master>,
    pub peer_address: SocketAddr,
    /// Bound to `web_listen`, not served yet.
    pub web_listener: TcpListener,
    pub web_address: SocketAddr,
    pub ca_cert_path: PathBuf,
}

impl Core {
    /// What the HTTP side gets to reach the core.
    pub fn handle(&self) -> CoreHandle {
        CoreHandle::new(self.master.clone())
    }
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
    if let Err(err) = master.auth.identities.flush() {
        warn!(error = %err, "cannot write the record of peer identities");
    }
}
