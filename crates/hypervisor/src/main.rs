//! `xrdtest-hypervisor`: the hypervisor daemon.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio::sync::watch;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;
use xrdtest_hypervisor::config::HypervisorConfig;
use xrdtest_hypervisor::daemon::Hypervisor;
use xrdtest_hypervisor::domain_type;
use xrdtest_hypervisor::libvirt::Libvirt;
use xrdtest_hypervisor::lifecycle::{self, Settings};
use xrdtest_proto::systemd::Notifier;

/// The xrdtest hypervisor: connects to a master and, when a suite needs its cluster,
/// creates the cluster's libvirt network and virtual machines (copy-on-write overlays of a
/// boot image, or a directly booted kernel, plus empty disks), and removes them again when
/// the master says so. Each VM's slave learns its configuration through QEMU fw_cfg.
///
/// It only ever touches libvirt objects it marked as its own. At start it removes what an
/// earlier run left behind; on SIGTERM or SIGINT it stops every cluster it runs and exits.
/// It reconnects to the master forever (with capped backoff); clusters keep running while
/// the master is away. Logs go to stderr; set RUST_LOG to change the level. Under systemd
/// (Type=notify) it reports ready once libvirt and its pool are prepared; SIGHUP is ignored.
#[derive(Parser, Debug)]
#[command(name = "xrdtest-hypervisor", version)]
struct Args {
    /// The configuration file (see docs/hypervisor-config.md).
    #[arg(short, long, value_name = "FILE", default_value = "/etc/xrdtest/hypervisor.toml")]
    config: PathBuf,
    /// Check the configuration and libvirt, print the domain type it would use and the
    /// storage pool, and exit without changing anything.
    #[arg(long)]
    check: bool,
}

fn main() -> anyhow::Result<()> {
    // Read (and hide from child processes) systemd's notify socket before any thread starts:
    // changing the environment is only safe while the process has one thread.
    let (notifier, notifier_error) = match Notifier::from_env_removing() {
        Ok(notifier) => (notifier, None),
        Err(err) => (Notifier::disabled(), Some(err)),
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Some(err) = notifier_error {
        warn!(error = %err, "NOTIFY_SOCKET is set but unusable; systemd will not hear that we are ready");
    }
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve(args, notifier))
}

async fn serve(args: Args, notifier: Notifier) -> anyhow::Result<()> {
    let config = HypervisorConfig::load(&args.config)?;
    // The KVM probe takes up to two seconds of a blocked thread.
    let choice = config.domain_type;
    let decision = tokio::task::spawn_blocking(move || domain_type::decide(choice)).await?;
    info!(domain_type = decision.domain_type.as_str(), reason = %decision.reason, "domain type chosen");
    if args.check {
        return check(&config, &decision).await;
    }
    let ca_text = std::fs::read_to_string(&config.ca_file)
        .with_context(|| format!("cannot read the master's CA certificate `ca_file` {}", config.ca_file.display()))?;
    let ca_pem = xrdtest_hypervisor::xml::guest_ca_pem(&ca_text)
        .with_context(|| format!("`ca_file` {} holds no PEM certificate", config.ca_file.display()))?;
    let settings = Settings {
        hypervisor: config.name.clone(),
        domain_type: decision.domain_type,
        pool: config.pool.clone(),
        pool_dir: config.pool_dir.clone(),
        console_dir: config.console_dir.clone(),
        guest_dir: config.guest_dir.clone(),
        kernel_dirs: config.kernel_dirs.clone(),
        warm_dir: config.warm_dir.clone(),
        ca_pem,
        shutdown_wait: config.shutdown_wait,
    };
    prepare(&config, &settings).await?;
    let ready = format!(
        "libvirt {}, domain type {}; connecting to the master at {}",
        config.libvirt_uri,
        decision.domain_type.as_str(),
        config.master
    );
    if let Err(err) = notifier.ready(&ready) {
        warn!(error = %err, "cannot tell systemd we are ready");
    }

    let hypervisor = Hypervisor::new(config, settings);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(ignore_hangups());
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        info!("stop signal received; a second one exits at once, leaving the clusters behind");
        let _ = notifier.stopping("stopping: removing the clusters");
        let _ = stop_tx.send(true);
        wait_for_stop_signal().await;
        warn!("second stop signal: exiting without stopping the clusters");
        std::process::exit(1);
    });
    hypervisor.run(stop_rx).await;
    Ok(())
}

/// Opens libvirt, makes sure the pool and the console directory exist, and removes what an
/// earlier run of this hypervisor left behind.
async fn prepare(config: &HypervisorConfig, settings: &Settings) -> anyhow::Result<()> {
    let uri = config.libvirt_uri.clone();
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let libvirt = Libvirt::open(&uri)?;
        info!(uri = %uri, versions = %libvirt.versions()?, "libvirt opened");
        libvirt.ensure_pool(&settings.pool, &settings.pool_dir)?;
        if libvirt.is_local() {
            std::fs::create_dir_all(&settings.console_dir).with_context(|| {
                format!("cannot create the console directory `console_dir` {}", settings.console_dir.display())
            })?;
        }
        match lifecycle::cleanup_orphans(&libvirt, &settings, &[]) {
            Ok(clusters) if clusters.is_empty() => {}
            Ok(clusters) => info!(clusters = %clusters.join(" "), "removed clusters an earlier run left behind"),
            // Not fatal: what is left does not stop new clusters of other names.
            Err(err) => warn!(error = %err, "could not remove everything an earlier run left behind"),
        }
        Ok(())
    })
    .await?
}

/// `--check`: reports what the daemon would use, changing nothing.
async fn check(config: &HypervisorConfig, decision: &domain_type::Decision) -> anyhow::Result<()> {
    println!("configuration: ok (name {}, master {})", config.name, config.master);
    println!("domain type: {} ({})", decision.domain_type.as_str(), decision.reason);
    let uri = config.libvirt_uri.clone();
    let pool = config.pool.clone();
    let (versions, pool_state) = tokio::task::spawn_blocking(move || -> anyhow::Result<(String, String)> {
        let libvirt = Libvirt::open(&uri)?;
        let versions = libvirt.versions()?;
        let pool_state = match libvirt.pool(&pool)? {
            Some(handle) => format!("exists, {} volumes", handle.volume_names()?.len()),
            None => "does not exist yet (created at start)".to_string(),
        };
        Ok((versions, pool_state))
    })
    .await??;
    println!("libvirt: {} at {}", versions, config.libvirt_uri);
    println!("storage pool: {} at {}: {pool_state}", config.pool, config.pool_dir.display());
    match std::fs::metadata(&config.ca_file) {
        Ok(_) => println!("CA certificate: {}", config.ca_file.display()),
        Err(err) => println!("CA certificate: {}: {err} (needed to connect)", config.ca_file.display()),
    }
    Ok(())
}

/// SIGHUP would kill the daemon (and orphan its clusters) by default; there is nothing to
/// reload, so it is only logged.
async fn ignore_hangups() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else { return };
    while hangups.recv().await.is_some() {
        info!("SIGHUP: nothing to reload; restart the hypervisor to apply configuration changes");
    }
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
