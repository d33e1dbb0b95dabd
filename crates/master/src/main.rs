//! `xrdtest-master`: the master daemon.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use xrdtest_master::config::MasterConfig;

/// The xrdtest master: accepts slaves and hypervisors, runs test suites as sessions of
/// barrier-synchronized stages, stores every session, and serves a JSON API.
///
/// Logs go to stderr (the journal, under systemd); set RUST_LOG to change the level.
/// SIGTERM or SIGINT stops it cleanly: running sessions are cancelled (their suite finalize
/// still runs, for up to 30 s) and the store is flushed.
#[derive(Parser, Debug)]
#[command(name = "xrdtest-master", version)]
struct Args {
    /// The configuration file (see docs/master-config.md).
    #[arg(short, long, value_name = "FILE", default_value = "/etc/xrdtest/master.toml")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = MasterConfig::load(&args.config)?;
    let running = xrdtest_master::start(config).await.context("master failed to start")?;
    wait_for_stop_signal().await.context("waiting for a signal")?;
    tracing::info!("stopping: cancelling running sessions");
    xrdtest_master::shutdown(&running.master, Duration::from_secs(30)).await;
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM (systemd, `kill`): either stops the master cleanly.
async fn wait_for_stop_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => Ok(()),
        result = tokio::signal::ctrl_c() => result,
    }
}
