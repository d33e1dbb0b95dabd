//! `xrdtest-slave`: the slave daemon.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::sync::watch;
use tracing::{info, warn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use xrdtest_proto::systemd::Notifier;
use xrdtest_slave::client::Slave;
use xrdtest_slave::config::SlaveConfig;

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
}

fn main() -> anyhow::Result<()> {
    // Read and removed before any thread exists: the stage scripts this daemon runs must
    // not inherit $NOTIFY_SOCKET.
    let notifier = Notifier::from_env_removing();
    let (notifier, notifier_error) = match notifier {
        Ok(notifier) => (Arc::new(notifier), None),
        Err(err) => (Arc::new(Notifier::disabled()), Some(err)),
    };
    // Each layer filters for itself: RUST_LOG chooses what is logged, whatever it says
    // the status line still sees the connection events.
    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(log_filter),
        )
        .with(status::ConnectionStatus::new(notifier.clone()).with_filter(status::ConnectionStatus::filter()))
        .init();
    if let Some(err) = notifier_error {
        warn!(error = %err, "cannot use $NOTIFY_SOCKET; systemd will not be told of readiness");
    }
    let args = Args::parse();
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
    let slave = Slave::new(config).context("cannot prepare the work directory")?;
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

/// Mirrors the connection's state into systemd's status line (`systemctl status`).
///
/// The client reports its connection only in its log events, so this layer reads them:
/// it recognises the four events `xrdtest_slave::client::Slave::run` logs about the
/// master (by their messages) and turns them into `STATUS=` lines. Should those messages
/// change, the status line merely stays at its last value.
mod status {
    use std::fmt::Write;
    use std::sync::Arc;

    use tracing::field::{Field, Visit};
    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::Layer;
    use xrdtest_proto::systemd::Notifier;

    /// The module whose events say how the connection goes.
    const CLIENT_TARGET: &str = "xrdtest_slave::client";

    pub struct ConnectionStatus {
        notifier: Arc<Notifier>,
    }

    impl ConnectionStatus {
        pub fn new(notifier: Arc<Notifier>) -> ConnectionStatus {
            ConnectionStatus { notifier }
        }

        /// The events this layer reads: the client's, at info and above.
        pub fn filter() -> Targets {
            Targets::new().with_target(CLIENT_TARGET, Level::INFO)
        }
    }

    /// The fields of one event that make a status line.
    #[derive(Default)]
    struct Fields {
        message: String,
        master: String,
        reason: String,
    }

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            let slot = match field.name() {
                "message" => &mut self.message,
                "master" => &mut self.master,
                "reason" => &mut self.reason,
                _ => return,
            };
            let _ = write!(slot, "{value:?}");
        }

        fn record_str(&mut self, field: &Field, value: &str) {
            self.record_debug(field, &format_args!("{value}"));
        }
    }

    /// The status line for a client event, if it is one about the connection.
    fn status_line(fields: &Fields) -> Option<String> {
        let Fields { message, master, reason } = fields;
        match message.as_str() {
            "connected to the master" => Some(format!("connected to the master at {master}")),
            "connection to the master ended" => Some(format!("reconnecting: connection lost ({reason})")),
            "cannot reach the master" => Some(format!("waiting for the master at {master}: {reason}")),
            "the master refused this slave" => Some(format!("refused by the master at {master}: {reason}")),
            _ => None,
        }
    }

    impl<S: Subscriber> Layer<S> for ConnectionStatus {
        fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
            if !self.notifier.is_enabled() {
                return;
            }
            let mut fields = Fields::default();
            event.record(&mut fields);
            if let Some(line) = status_line(&fields) {
                // No logging here: this runs inside the logger.
                let _ = self.notifier.status(&line);
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn connection_events_become_status_lines() {
            let fields = |message: &str| Fields {
                message: message.into(),
                master: "m:20000".into(),
                reason: "connect: refused".into(),
            };
            assert_eq!(status_line(&fields("connected to the master")).unwrap(), "connected to the master at m:20000");
            assert_eq!(
                status_line(&fields("cannot reach the master")).unwrap(),
                "waiting for the master at m:20000: connect: refused"
            );
            assert!(status_line(&fields("stage starting")).is_none());
        }
    }
}
