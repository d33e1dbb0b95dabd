//! `xrdtest-master`: the master daemon.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;
use xrdtest_master::config::{MasterConfig, RepoSource};
use xrdtest_master::master::Master;
use xrdtest_proto::systemd::Notifier;

/// The xrdtest master: accepts slaves and hypervisors, runs test suites as sessions of
/// barrier-synchronized stages, stores every session, and serves a JSON API.
///
/// Logs go to stderr (the journal, under systemd); set RUST_LOG to change the level.
/// SIGTERM or SIGINT stops it cleanly: running sessions are cancelled (their suite finalize
/// still runs, for up to 30 s) and the store is flushed. SIGHUP reloads the definitions of
/// every local-folder repository and makes every git repository fetch now; other
/// configuration changes need a restart. Under systemd (Type=notify) it reports readiness
/// once both listeners are bound.
#[derive(Parser, Debug)]
#[command(name = "xrdtest-master", version)]
struct Args {
    /// The configuration file (see docs/master-config.md).
    #[arg(short, long, value_name = "FILE", default_value = "/etc/xrdtest/master.toml")]
    config: PathBuf,
    /// Read a password from standard input (one line), print its argon2id hash for
    /// `[web] password` in master.toml, and exit.
    #[arg(long)]
    hash_password: bool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        // Colours for a terminal only: the journal would store the escape codes.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    if args.hash_password {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
        let password = line.trim_end_matches(['\n', '\r']);
        anyhow::ensure!(!password.is_empty(), "no password on standard input");
        println!("{}", xrdtest_web::password::hash(password).map_err(anyhow::Error::msg)?);
        return Ok(());
    }
    // Read (and drop from the environment) before the runtime's threads exist.
    let notifier = Notifier::from_env_removing().unwrap_or_else(|err| {
        warn!(error = %err, "cannot use $NOTIFY_SOCKET; systemd will not be told of readiness");
        Notifier::disabled()
    });
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(args, notifier))
}

async fn run(args: Args, notifier: Notifier) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let config = MasterConfig::load(&args.config)?;
    // Installed before readiness: from then on, systemd may send them at any time.
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let running = xrdtest_master_daemon::start(config).await.context("master failed to start")?;
    let serving = format!("serving: peers on {}, API on {}", running.peer_address, running.web_address);
    tell_systemd(notifier.ready(&serving));
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                tell_systemd(notifier.reloading("reloading definitions (SIGHUP)"));
                let summary = reload_definitions(&running.master).await;
                tell_systemd(notifier.ready(&format!("{serving}; {summary}")));
            }
        }
    }
    info!("stopping: cancelling running sessions");
    tell_systemd(notifier.stopping("stopping: cancelling running sessions, flushing the store"));
    xrdtest_master_daemon::shutdown(&running.master, Duration::from_secs(30)).await;
    Ok(())
}

/// SIGHUP: reloads every local-folder repository from disk now (as the inotify watch
/// would; useful where inotify misses changes, as on NFS), and wakes every git repository's
/// fetch loop to fetch now (the loop owns its checkout, so it does the work). The
/// configuration file is not read again. Returns a status line.
async fn reload_definitions(master: &Arc<Master>) -> String {
    let master = master.clone();
    let reloaded = tokio::task::spawn_blocking(move || {
        let mut reloaded = 0;
        for repo in &master.config.repos {
            match &repo.source {
                RepoSource::Localfs { .. } => {
                    let summary = master.defs.reload_repo(&repo.name, None);
                    info!(
                        repo = %repo.name,
                        added = summary.added.len(),
                        updated = summary.updated.len(),
                        removed = summary.removed.len(),
                        errors = summary.errors,
                        "SIGHUP: definitions reloaded"
                    );
                    reloaded += 1;
                }
                RepoSource::Git(_) => {
                    info!(repo = %repo.name, "SIGHUP: asking the git repository's loop to fetch now");
                }
            }
        }
        master.defs.fetch_git_now();
        reloaded
    })
    .await;
    match reloaded {
        Ok(count) => format!("definitions of {count} local folder repositories reloaded by SIGHUP"),
        Err(err) => {
            warn!(error = %err, "SIGHUP: reload failed");
            format!("reload at SIGHUP failed: {err}")
        }
    }
}

/// A notification systemd did not get is worth a warning, never a stop.
fn tell_systemd(sent: std::io::Result<()>) {
    if let Err(err) = sent {
        warn!(error = %err, "cannot notify systemd");
    }
}
