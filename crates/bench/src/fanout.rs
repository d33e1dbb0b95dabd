//! Part 2: many simulated slaves on real TLS connections, each answering a stage at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use xrdtest_proto::tls::{client_config, server_name, MASTER_TLS_NAME};
use xrdtest_proto::{
    client_handshake, Connection, FromMaster, Hello, Role, StageOutcome, StageResult, ToMaster, DEFAULT_MAX_FRAME_LEN,
};

use crate::harness::{write_suite, Cluster, SECRET};

/// When each simulated slave received each stage.
type Arrivals = Arc<Mutex<BTreeMap<String, Vec<Instant>>>>;

const CASES: usize = 5;

pub async fn run(slaves: usize) -> Result<()> {
    println!("\n== 2. fan-out: {slaves} simulated slaves, {CASES} cases (init, run) ==");
    let names: Vec<String> = (1..=slaves).map(|n| format!("sim{n:05}")).collect();
    let cases: Vec<String> = (0..CASES).map(|n| format!("c{n}")).collect();
    let setup_names = names.clone();
    let cluster = tokio::task::spawn_blocking(move || {
        Cluster::start(0, "", |defs| write_suite(defs, "ts_fanout", &setup_names, &cases, "true\n", false))
    })
    .await??;
    let cluster = Arc::new(cluster);
    let ca = std::fs::read(cluster.state.join("ca.crt")).context("reading the master's CA")?;
    let connector = TlsConnector::from(client_config(&ca)?);
    let address = format!("127.0.0.1:{}", cluster.peer_port);
    let arrivals: Arrivals = Arc::default();

    let connect_start = Instant::now();
    // Handshakes in parallel, a bounded number at a time.
    let gate = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for name in &names {
        let (connector, address, name, arrivals, gate) =
            (connector.clone(), address.clone(), name.clone(), arrivals.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let conn = {
                let _permit = gate.acquire().await?;
                connect(&connector, &address, &name).await.with_context(|| format!("connecting {name}"))?
            };
            serve(conn, arrivals).await
        }));
    }
    let wait_cluster = cluster.clone();
    let wait_names = names.clone();
    tokio::task::spawn_blocking(move || wait_cluster.wait_slaves(&wait_names)).await??;
    println!("{slaves} TLS connections and handshakes in {:.0} ms", connect_start.elapsed().as_secs_f64() * 1000.0);
    let idle = tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        move || cluster.master_memory()
    })
    .await??;

    let run_cluster = cluster.clone();
    let record = tokio::task::spawn_blocking(move || run_cluster.run("ts_fanout")).await??;
    let memory = tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        move || cluster.master_memory()
    })
    .await??;

    // A round: from the first slave receiving stage k to the first receiving stage k+1 —
    // dispatch to all, every answer, the barrier, and the next dispatch.
    let order: Vec<String> = record["stages"]
        .as_array()
        .ok_or_else(|| anyhow!("no stages"))?
        .iter()
        .map(|s| stage_label(&s["stage"]))
        .collect();
    let arrivals = arrivals.lock().map_err(|_| anyhow!("poisoned"))?.clone();
    let firsts: Vec<Instant> =
        order.iter().filter_map(|label| arrivals.get(label).and_then(|v| v.iter().min().copied())).collect();
    let rounds: Vec<f64> = firsts.windows(2).map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0).collect();
    let complete = order.iter().all(|label| arrivals.get(label).is_some_and(|v| v.len() == slaves));
    let mean = rounds.iter().sum::<f64>() / rounds.len().max(1) as f64;
    let worst = rounds.iter().cloned().fold(0.0, f64::max);
    let target = match slaves {
        10_000.. => " (target for 10,000: < 1000 ms)",
        1000.. => " (target for 1000: < 200 ms)",
        _ => "",
    };
    println!(
        "{} stage rounds across {slaves} slaves{}: mean {mean:.1} ms, worst {worst:.1} ms{target}",
        rounds.len(),
        if complete { "" } else { " (SOME SLAVES MISSED STAGES)" }
    );
    let memory_target = if slaves >= 10_000 { "1 GB" } else { "300 MB" };
    println!(
        "master memory: {} MB resident with {slaves} connected slaves idle, peak {} MB (target < {memory_target})",
        idle.rss_kib / 1024,
        memory.peak_kib / 1024
    );
    for task in tasks {
        task.abort();
    }
    Ok(())
}

fn stage_label(stage: &serde_json::Value) -> String {
    match stage {
        serde_json::Value::String(kind) => kind.clone(),
        serde_json::Value::Object(map) => map
            .iter()
            .next()
            .map(|(kind, inner)| format!("{kind}:{}", inner["case"].as_str().unwrap_or("")))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn label_of(stage: &xrdtest_proto::Stage) -> String {
    match stage {
        xrdtest_proto::Stage::SuiteInit => "SuiteInit".into(),
        xrdtest_proto::Stage::SuiteFinalize => "SuiteFinalize".into(),
        xrdtest_proto::Stage::CaseInit { case } => format!("CaseInit:{case}"),
        xrdtest_proto::Stage::CaseRun { case } => format!("CaseRun:{case}"),
        xrdtest_proto::Stage::CaseFinalize { case } => format!("CaseFinalize:{case}"),
    }
}

pub(crate) type Stream = tokio_rustls::client::TlsStream<TcpStream>;

pub(crate) async fn connect(connector: &TlsConnector, address: &str, name: &str) -> Result<Connection<Stream>> {
    let tcp = TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    let tls = connector.connect(server_name(MASTER_TLS_NAME)?, tcp).await?;
    let mut conn = Connection::new(tls, DEFAULT_MAX_FRAME_LEN);
    client_handshake(&mut conn, &Hello::enrolling(Role::Slave, name, SECRET), Duration::from_secs(30)).await?;
    conn.send(&ToMaster::Reattach { stages: Vec::new(), faults: Vec::new(), sessions: Vec::new() }).await?;
    Ok(conn)
}

/// Answers every stage at once, as a slave whose scripts take no time would.
async fn serve(mut conn: Connection<Stream>, arrivals: Arrivals) -> Result<()> {
    while let Some(message) = conn.recv::<FromMaster>().await? {
        match message {
            FromMaster::RunStage(command) => {
                let now = Instant::now();
                if let Ok(mut map) = arrivals.lock() {
                    map.entry(label_of(&command.stage)).or_default().push(now);
                }
                let unix_ms = unix_ms();
                conn.feed(&ToMaster::StageStarted { stage_id: command.stage_id, started_unix_ms: unix_ms }).await?;
                conn.feed(&ToMaster::StageFinished(StageResult {
                    stage_id: command.stage_id,
                    outcome: StageOutcome::Exited { code: 0 },
                    started_unix_ms: unix_ms,
                    ended_unix_ms: unix_ms,
                    output_bytes: 0,
                    dropped_bytes: 0,
                    chunks: 0,
                    values: Default::default(),
                }))
                .await?;
                conn.flush().await?;
            }
            FromMaster::Heartbeat(beat) => conn.send(&ToMaster::Heartbeat(beat)).await?,
            FromMaster::Disconnect { .. } => break,
            _ => {}
        }
    }
    Ok(())
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
