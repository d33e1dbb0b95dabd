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
    tokio::signal::ctrl_c().await.context("waiting for a signal")?;
    tracing::info!("stopping: cancelling running sessions");
    xrdtest_master::shutdown(&running.master, Duration::from_secs(30)).await;
    Ok(())
}
