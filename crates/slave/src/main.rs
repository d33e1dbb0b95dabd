//! `xrdtest-slave`: the slave daemon.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::sync::watch;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;
use xrdtest_proto::systemd::Notifier;
use xrdtest_slave::client::Slave;
use xrdtest_slave::config::SlaveConfig;
use xrdtest_slave::sync::{run_client, SyncCommand};

/// The xrdtest slave: connects to a master and runs the stage scripts it is sent, with
/// @tag@ expansion, streaming their output back and collecting the log files asked for.
///
/// It reconnects forever (with capped backoff) when the master goes away; a stage that is
/// running then goes on, and its output is resent when the connection is back.
/// Logs go to stderr; set RUST_LOG to change the level. SIGTERM or SIGINT stops it (running
/// stages are killed). SIGHUP reloads nothing: `ca_file` is read again at every connect
/// anyway, and other changes need a restart. Under systemd (Type=notify) it reports
/// readiness once its configuration and work directory are ready, and shows whether it is
/// connected in its status line.
#[derive(Parser, Debug)]
#[command(name = "xrdtest-slave", version)]
struct Args {
    /// The configuration file (see docs/slave-config.md).
    #[arg(short, long, value_name = "FILE", default_value = "/etc/xrdtest/slave.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Inside a stage script: signal, wait, barrier, publish or subscribe through the
    /// session's sync state (what `sync_*` of functions.sh run; see docs/sync.md).
    Sync {
        #[command(subcommand)]
        what: SyncCommand,
    },
    /// Inside a stage script: partition, shape, pause or kill the session's slaves, or heal
    /// (what `fault_*` of functions.sh run; `fault --help` and docs/faults.md tell how).
    #[command(disable_help_flag = true)]
    Fault {
        /// The fault's words: `partition A -- B`, `netem T delay 100ms`, `pause PATTERN`...
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        words: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    // Parsed first: `sync` and `fault` are short-lived clients inside a stage, not the daemon.
    let args = Args::parse();
    match args.command {
        Some(Command::Sync { what }) => std::process::exit(run_client(what)),
        Some(Command::Fault { words }) => std::process::exit(xrdtest_slave::fault_command::run(&words)),
        None => {}
    }
    // Read and removed before any thread exists: the stage scripts this daemon runs must
    // not inherit $NOTIFY_SOCKET.
    let notifier = Notifier::from_env_removing();
    let (notifier, notifier_error) = match notifier {
        Ok(notifier) => (Arc::new(notifier), None),
        Err(err) => (Arc::new(Notifier::disabled()), Some(err)),
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Some(err) = notifier_error {
        warn!(error = %err, "cannot use $NOTIFY_SOCKET; systemd will not be told of readiness");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(args, notifier))
}

async fn run(args: Args, notifier: Arc<Notifier>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let config = SlaveConfig::load(&args.config).map_err(anyhow::Error::msg)?;
    let master = config.master.clone();
    let slave = Slave::new(config).context("cannot prepare the slave (its work directory, its session cleanup)")?;
    // systemd's status line (`systemctl status`) says whether the slave is connected.
    let status_notifier = notifier.clone();
    slave.on_connection_change(Box::new(move |line| {
        let _ = status_notifier.status(line);
    }));
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    // Without a handler, SIGHUP would end the slave and every running stage with it.
    let mut hangup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let signals_notifier = notifier.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
                _ = hangup.recv() => {
                    info!("SIGHUP: nothing to reload (ca_file is read at every connect; other changes need a restart)");
                }
            }
        }
        info!("stopping: killing running stages");
        tell_systemd(signals_notifier.stopping("stopping: killing running stages"));
        let _ = stop_tx.send(true);
    });
    // Ready now, not at the first connection: a master that is down must not hold up the
    // boot of every test machine. The status line says whether it is connected.
    tell_systemd(notifier.ready(&format!("connecting to the master at {master}")));
    slave.run(stop_rx).await;
    Ok(())
}

/// A notification systemd did not get is worth a warning, never a stop.
fn tell_systemd(sent: std::io::Result<()>) {
    if let Err(err) = sent {
        warn!(error = %err, "cannot notify systemd");
    }
}
