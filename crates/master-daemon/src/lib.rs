//! The xrdtest master as one program: the core (`xrdtest-master`: definitions, sessions,
//! store, peers, clusters, alerts, scheduler) and its HTTP side (`xrdtest-web`: JSON API,
//! dashboard), wired together. The `xrdtest-master` binary (`main.rs`) and the in-process
//! users (the demo, tests) start a master with [`start`] and stop it with [`shutdown`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tracing::{info, warn};
use xrdtest_master::config::MasterConfig;
use xrdtest_master::master::Master;

/// A master that is listening: its addresses, and the handle to stop it.
pub struct RunningMaster {
    pub master: Arc<Master>,
    pub peer_address: SocketAddr,
    pub web_address: SocketAddr,
    pub ca_cert_path: PathBuf,
}

/// Opens the store, creates or loads the CA, loads the definitions and starts listening
/// for peers and for HTTP. Returns once both listeners are bound.
pub async fn start(config: MasterConfig) -> anyhow::Result<RunningMaster> {
    let opened = xrdtest_master::open(config)?;
    // The web's own settings are checked before anything listens.
    let web = &opened.config().web;
    let web_tls = xrdtest_web::tls_config(web, opened.peer_tls())?;
    xrdtest_web::auth::cookie_key(&web.cookie_key_file).context("web cookie key")?;
    if let Some(password) = &web.password {
        xrdtest_web::password::check(password).map_err(anyhow::Error::msg)?;
    }

    let core = opened.listen().await?;
    let scheme = if web_tls.is_some() { "https" } else { "http" };
    let served = xrdtest_web::serve(core.handle(), core.web_listener, web_tls);
    tokio::spawn(async move {
        if let Err(err) = served.await {
            warn!(error = %err, "HTTP server stopped");
        }
    });
    let (peer_address, web_address, ca_cert_path) = (core.peer_address, core.web_address, core.ca_cert_path);
    info!(peers = %peer_address, web = %format!("{scheme}://{web_address}"), ca = %ca_cert_path.display(), "master listening");
    Ok(RunningMaster { master: core.master, peer_address, web_address, ca_cert_path })
}

/// Stops cleanly: cancels running sessions (their suite finalize still runs) for up to
/// `grace`, then flushes the store.
pub async fn shutdown(master: &Master, grace: std::time::Duration) {
    xrdtest_master::shutdown(master, grace).await;
}
