//! `xrdtest-slave`: the slave daemon.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;
use xrdtest_slave::client::Slave;
use xrdtest_slave::config::SlaveConfig;

/// The xrdtest slave: connects to a master and runs the stage scripts it is sent, with
/// @tag@ expansion, streaming their output back and collecting the log files asked for.
///
/// It reconnects forever (with capped backoff) when the master goes away; a stage that is
/// running then goes on, and its output is resent when the connection is back.
/// Logs go to stderr; set RUST_LOG to change the level.
#[derive(Parser, Debug)]
#[command(name = "xrdtest-slave", version)]
struct Args {
    /// The configuration file (see docs/slave-config.md).
    #[arg(short, long, value_name = "FILE", default_value = "/etc/xrdtest/slave.toml")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = SlaveConfig::load(&args.config).map_err(anyhow::Error::msg)?;
    let slave = Slave::new(config).context("cannot prepare the work directory")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        let _ = stop_tx.send(true);
    });
    slave.run(stop_rx).await;
    Ok(())
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
