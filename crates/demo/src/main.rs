//! `xrdtest-demo` (also run as `xrdtest demo`): a master and N slaves on this machine, on
//! embedded defaults, running one suite with live progress. Everything is real (TLS
//! sockets, bash scripts, the sled store); only the processes are one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;
use xrdtest_cli::client::ApiClient;
use xrdtest_cli::commands::{exit_code_of, follow};
use xrdtest_master::config::MasterConfig;
use xrdtest_slave::client::Slave;
use xrdtest_slave::config::SlaveConfig;

/// Run a master and local slaves on embedded defaults (temporary state, a generated secret
/// and CA) and run a suite with live progress; then keep serving the dashboard and API
/// until Ctrl-C, or with --once exit with `xrdtest run --wait`'s exit code.
#[derive(Parser, Debug)]
#[command(name = "xrdtest-demo", version)]
pub struct DemoArgs {
    /// The definitions repository (with suites/ and clusters/); default: the current folder.
    #[arg(long, value_name = "DIR")]
    repo: Option<PathBuf>,
    /// The suite to run.
    #[arg(long, default_value = "ts_demo")]
    suite: String,
    /// How many local slaves to start; they are named slave1, slave2, ...
    #[arg(long, default_value_t = 3)]
    slaves: usize,
    /// Stop everything after the session and exit with `xrdtest run`'s exit code.
    #[arg(long)]
    once: bool,
    /// Port of the API (0: any free port).
    #[arg(long, default_value_t = 20080)]
    web_port: u16,
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buffer = vec![0u8; bytes];
    use std::io::Read;
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buffer)).context("reading /dev/urandom")?;
    Ok(hex::encode(buffer))
}

fn repository(args: &DemoArgs) -> Result<PathBuf> {
    let repo = match &args.repo {
        Some(repo) => repo.clone(),
        None => std::env::current_dir()?,
    };
    if !repo.join("suites").is_dir() {
        bail!("{} has no suites/ folder: run the demo from the xrdtest repository, or give --repo DIR", repo.display());
    }
    Ok(std::fs::canonicalize(&repo)?)
}

fn main() -> ExitCode {
    // The demo's slaves run in this process, so their scripts' sync and fault helpers call it back.
    if std::env::args().nth(1).as_deref() == Some("sync") {
        let code = xrdtest_slave::sync::run_from_args(std::env::args().skip(1));
        return ExitCode::from(code as u8);
    }
    if std::env::args().nth(1).as_deref() == Some("fault") {
        let words: Vec<String> = std::env::args().skip(2).collect();
        return ExitCode::from(xrdtest_slave::fault_command::run(&words) as u8);
    }
    let args = DemoArgs::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    match run(&args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xrdtest-demo: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &DemoArgs) -> Result<ExitCode> {
    let repo = repository(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(demo(args, &repo))
}

async fn demo(args: &DemoArgs, repo: &Path) -> Result<ExitCode> {
    let state = tempfile::Builder::new().prefix("xrdtest-demo-").tempdir()?;
    let secret = random_hex(16)?;
    let token = random_hex(16)?;
    let web_listen = format!("127.0.0.1:{}", args.web_port);
    let config_for = |web: &str| {
        MasterConfig::from_toml(
            &format!(
                "listen = \"127.0.0.1:0\"\nweb_listen = \"{web}\"\nstate_dir = \"{}\"\nsecret = \"{secret}\"\napi_token = \"{token}\"\n\
                 definitions = \"{}\"\nslave_wait = \"20s\"\nreconnect_grace = \"10s\"\n[web]\npassword = \"{token}\"\n",
                state.path().join("master").display(),
                repo.display()
            ),
            Path::new("/"),
        )
        .map_err(anyhow::Error::msg)
    };
    let running = match xrdtest_master_daemon::start(config_for(&web_listen)?).await {
        Ok(running) => running,
        // The usual port is taken (another demo?): any free one will do.
        Err(_) if args.web_port != 0 => xrdtest_master_daemon::start(config_for("127.0.0.1:0")?).await?,
        Err(err) => return Err(err),
    };
    let definitions = running.master.definitions();
    for error in &definitions.errors {
        eprintln!("definition error: {error}");
    }
    if !definitions.repository.suites.contains_key(&args.suite) {
        bail!("no valid suite `{}` in {}", args.suite, repo.join("suites").display());
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut slave_tasks = Vec::new();
    for n in 1..=args.slaves {
        let config = SlaveConfig::from_toml(
            &format!(
                "master = \"{}\"\nname = \"slave{n}\"\nsecret = \"{secret}\"\nca_file = \"{}\"\nwork_dir = \"{}\"\nmax_backoff = \"2s\"\n",
                running.peer_address,
                running.ca_cert_path.display(),
                state.path().join(format!("slave{n}")).display()
            ),
            Path::new("/"),
        )
        .map_err(anyhow::Error::msg)?;
        let slave = Slave::new(config)?;
        let stop = stop_rx.clone();
        slave_tasks.push(tokio::spawn(async move { slave.run(stop).await }));
    }
    let api_url = format!("http://{}", running.web_address);
    println!("xrdtest demo: master on {} (TLS); dashboard and API on {api_url}/", running.peer_address);
    println!("  dashboard password (to run and cancel from the browser): {token}");
    println!("  {} local slaves (slave1..slave{}), state in {}", args.slaves, args.slaves, state.path().display());
    println!("  try: xrdtest --master {api_url} sessions");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while (1..=args.slaves).any(|n| !running.master.peers.is_connected(&format!("slave{n}"))) {
        if tokio::time::Instant::now() > deadline {
            bail!("the local slaves did not connect within 15 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = running.master.submit(&args.suite, xrdtest_model::Trigger::Manual)?;
    let follow_url = api_url.clone();
    let record = tokio::task::spawn_blocking(move || follow(&ApiClient::new(&follow_url, None), id, true)).await??;
    let code = exit_code_of(&record);

    if !args.once {
        println!();
        println!("The master keeps serving: API {api_url}/api/sessions/{id}");
        println!("  run again: xrdtest --master {api_url} --token {token} run {} --wait", args.suite);
        println!("Press Ctrl-C to stop.");
        tokio::signal::ctrl_c().await?;
    }
    let _ = stop_tx.send(true);
    for task in slave_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    }
    xrdtest_master_daemon::shutdown(&running.master, Duration::from_secs(10)).await;
    Ok(ExitCode::from(code))
}
