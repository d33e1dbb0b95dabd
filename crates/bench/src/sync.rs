//! Part 7: sync primitives. (a) signal → wait round trips between scripts on two real slave
//! processes, through the real helpers (each call is a short-lived `xrdtest-slave sync`
//! process, as in a user's script); (b) a barrier of 100 simulated slaves on real TLS
//! connections, from the first arrival sent to the last release received.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;
use xrdtest_proto::tls::client_config;
use xrdtest_proto::{FromMaster, StageOutcome, StageResult, SyncCount, SyncOp, SyncReply, SyncRequest, ToMaster};

use crate::fanout::{connect, unix_ms};
use crate::harness::{write_suite, Cluster};

/// Round trips in part (a).
const ROUND_TRIPS: usize = 100;

pub fn round_trips() -> Result<()> {
    println!("\n== 7a. sync: signal -> wait round trips between 2 real slaves ({ROUND_TRIPS}) ==");
    let times = tempfile::tempdir()?;
    let out = times.path().join("ping.ms");
    let script = format!(
        "source \"$XRDTEST_FUNCTIONS\"\nset -e\n\
         if [ \"$XRDTEST_SLAVE\" = slave1 ]; then\n\
           start=$(date +%s%N)\n\
           for i in $(seq {ROUND_TRIPS}); do sync_signal ping.$i 2>/dev/null; sync_wait pong.$i >/dev/null 2>&1; done\n\
           echo $(( ($(date +%s%N) - start) / 1000 )) > '{}'\n\
         else\n\
           for i in $(seq {ROUND_TRIPS}); do sync_wait ping.$i >/dev/null 2>&1; sync_signal pong.$i 2>/dev/null; done\n\
         fi\n",
        out.display()
    );
    let machines = vec!["slave1".to_string(), "slave2".to_string()];
    let cluster =
        Cluster::start(2, "", |defs| write_suite(defs, "ts_sync_ping", &machines, &["ping".into()], &script, false))?;
    cluster.wait_slaves(&machines)?;
    let record = cluster.run("ts_sync_ping")?;
    if record["state"] != "passed" {
        bail!("the ping suite did not pass: {}", record["reason"]);
    }
    let micros: f64 = std::fs::read_to_string(&out).context("the ping script's time")?.trim().parse()?;
    let per_trip = micros / 1000.0 / ROUND_TRIPS as f64;
    // A bare `xrdtest-slave --version` start, to tell process start-up from the sync itself.
    let slave_bin = crate::harness::binary("xrdtest-slave")?;
    let spawn_start = Instant::now();
    for _ in 0..20 {
        std::process::Command::new(&slave_bin).arg("--version").output()?;
    }
    let spawn_ms = spawn_start.elapsed().as_secs_f64() * 1000.0 / 20.0;
    println!(
        "round trip (signal on one slave, its wait on the other, and back): {per_trip:.2} ms; \
         of it, 4 helper processes start at {spawn_ms:.2} ms each"
    );
    Ok(())
}

pub async fn barrier(slaves: usize) -> Result<()> {
    println!("\n== 7b. sync: a barrier of {slaves} simulated slaves ==");
    let names: Vec<String> = (1..=slaves).map(|n| format!("bar{n:04}")).collect();
    let setup_names = names.clone();
    let cluster = tokio::task::spawn_blocking(move || {
        Cluster::start(0, "", |defs| {
            write_suite(defs, "ts_sync_barrier", &setup_names, &["meet".into()], "true\n", false)
        })
    })
    .await??;
    let cluster = Arc::new(cluster);
    let ca = std::fs::read(cluster.state.join("ca.crt")).context("reading the master's CA")?;
    let connector = TlsConnector::from(client_config(&ca)?);
    let address = format!("127.0.0.1:{}", cluster.peer_port);
    let times: Arc<Mutex<(Vec<Instant>, Vec<Instant>)>> = Arc::default();
    let mut tasks = Vec::new();
    for name in &names {
        let conn = connect(&connector, &address, name).await.with_context(|| format!("connecting {name}"))?;
        tasks.push(tokio::spawn(serve(conn, times.clone())));
    }
    let wait_cluster = cluster.clone();
    let wait_names = names.clone();
    tokio::task::spawn_blocking(move || wait_cluster.wait_slaves(&wait_names)).await??;
    let run_cluster = cluster.clone();
    let record = tokio::task::spawn_blocking(move || run_cluster.run("ts_sync_barrier")).await??;
    if record["state"] != "passed" {
        bail!("the barrier suite did not pass: {}", record["reason"]);
    }
    let (sent, released) = times.lock().await.clone();
    if sent.len() != slaves || released.len() != slaves {
        bail!("{} arrivals and {} releases for {slaves} slaves", sent.len(), released.len());
    }
    let first = sent.iter().min().ok_or_else(|| anyhow!("no arrival"))?;
    let last_sent = sent.iter().max().ok_or_else(|| anyhow!("no arrival"))?;
    let last = released.iter().max().ok_or_else(|| anyhow!("no release"))?;
    let first_release = released.iter().min().ok_or_else(|| anyhow!("no release"))?;
    println!(
        "{slaves} arrivals sent over {:.1} ms; from the last arrival to the last release {:.1} ms \
         (first release after {:.1} ms); first arrival to last release {:.1} ms",
        (*last_sent - *first).as_secs_f64() * 1000.0,
        (*last - *last_sent).as_secs_f64() * 1000.0,
        (*first_release - *last_sent).as_secs_f64() * 1000.0,
        (*last - *first).as_secs_f64() * 1000.0,
    );
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// Each case run: arrive at the barrier, finish once released; other stages pass at once.
async fn serve(
    mut conn: xrdtest_proto::Connection<crate::fanout::Stream>,
    times: Arc<Mutex<(Vec<Instant>, Vec<Instant>)>>,
) -> Result<()> {
    let mut running: Option<u64> = None;
    while let Some(message) = conn.recv::<FromMaster>().await? {
        match message {
            FromMaster::RunStage(command) => {
                conn.send(&ToMaster::StageStarted { stage_id: command.stage_id, started_unix_ms: unix_ms() }).await?;
                if matches!(command.stage, xrdtest_proto::Stage::CaseRun { .. }) {
                    running = Some(command.stage_id);
                    let op = SyncOp::Barrier { name: "meet".into(), count: SyncCount::AllSlaves };
                    let request =
                        SyncRequest { stage_id: command.stage_id, request_id: 1, op, timeout_ms: Some(60_000) };
                    times.lock().await.0.push(Instant::now());
                    conn.send(&ToMaster::Sync(request)).await?;
                } else {
                    finish(&mut conn, command.stage_id).await?;
                }
            }
            FromMaster::SyncReply { reply, .. } => {
                times.lock().await.1.push(Instant::now());
                if let SyncReply::Failed { reason } = reply {
                    bail!("barrier failed: {reason}");
                }
                if let Some(stage_id) = running.take() {
                    finish(&mut conn, stage_id).await?;
                }
            }
            FromMaster::Heartbeat(beat) => conn.send(&ToMaster::Heartbeat(beat)).await?,
            FromMaster::Disconnect { .. } => break,
            _ => {}
        }
    }
    Ok(())
}

async fn finish(conn: &mut xrdtest_proto::Connection<crate::fanout::Stream>, stage_id: u64) -> Result<()> {
    let now = unix_ms();
    conn.send(&ToMaster::StageFinished(StageResult {
        stage_id,
        outcome: StageOutcome::Exited { code: 0 },
        started_unix_ms: now,
        ended_unix_ms: now,
        output_bytes: 0,
        dropped_bytes: 0,
        chunks: 0,
        values: Default::default(),
    }))
    .await?;
    Ok(())
}
