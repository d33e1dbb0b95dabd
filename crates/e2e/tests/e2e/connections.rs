//! Connections that break: a slave killed mid-stage, a connection cut and restored within
//! the grace period, and an idle connection kept alive by heartbeats.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use xrdtest_e2e::{
    mark, marked, run_state, stage_run, state, summarize, wait_until, Case, Env, MasterOptions, ScriptReaper,
    SlaveConfig, Suite,
};

fn killed_suite(dir: &Path) -> Vec<Suite> {
    let marks = dir.join("marks");
    let pids = dir.join("pids").display().to_string();
    let run = format!(
        "{}if [ \"$XRDTEST_SLAVE\" = k2 ]; then echo $$ >> '{pids}'; sleep 30; else sleep 0.5; fi\n",
        mark(&marks, "long_started")
    );
    vec![Suite::new("ts_killed", &["k1", "k2", "k3"])
        .finalize(mark(&marks, "suite_finalize"))
        .case(Case::new("long").run(run))]
}

#[test]
fn a_slave_killed_mid_stage_fails_that_stage_after_the_grace_period() {
    let options = MasterOptions { reconnect_grace: "2s".into(), ..MasterOptions::default() };
    let mut env = Env::build(options, killed_suite);
    let _reaper = ScriptReaper(env.path().join("pids"));
    env.start_slaves(&["k1", "k2", "k3"]);
    let api = env.api();
    let id = api.run("ts_killed");
    api.wait_stage_started(id, "case_run:long", "k2", Duration::from_secs(30));
    let marks = env.marks();
    wait_until(Duration::from_secs(10), "k2's run to start", || {
        if marked(&marks, "long_started", "k2") {
            Ok(())
        } else {
            Err("no marker".into())
        }
    });
    env.slave("k2").kill();
    let killed_at = Instant::now();

    let session = api.wait_final(id, Duration::from_secs(40));
    let ended_after = killed_at.elapsed();
    let view = summarize(&session);
    let run = stage_run(&session, "case_run:long", "k2");
    assert_eq!(run["state"], "disconnected", "{view}");
    assert!(run["reason"].as_str().unwrap_or("").contains("disconnected"), "{run}");
    for slave in ["k1", "k3"] {
        assert_eq!(run_state(&session, "case_run:long", slave), "passed", "{view}");
        assert_eq!(run_state(&session, "suite_finalize", slave), "passed", "{view}");
        assert!(marked(&marks, "suite_finalize", slave), "suite finalize did not run on {slave}");
    }
    assert_eq!(run_state(&session, "suite_finalize", "k2"), "disconnected", "{view}");
    assert_eq!(state(&session), "failed", "{view}");
    // Two grace periods (the run, then suite finalize), not the 30 s the script sleeps.
    assert!(ended_after < Duration::from_secs(20), "the session ended {ended_after:?} after the kill");
    // Stored and listed.
    let list = api.get("/api/sessions?suite=ts_killed");
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["sessions"][0]["id"], id, "{list}");
    assert_eq!(list["sessions"][0]["state"], "failed", "{list}");
}

#[test]
fn a_slave_restarted_mid_stage_loses_that_stage_at_once() {
    // A long grace: the stage must fail because the slave came back without it, not because
    // the grace ran out.
    let options = MasterOptions { reconnect_grace: "30s".into(), ..MasterOptions::default() };
    let mut env = Env::build(options, |dir| {
        let marks = dir.join("marks");
        let pids = dir.join("pids").display().to_string();
        vec![Suite::new("ts_lost", &["l1"])
            .finalize(mark(&marks, "suite_finalize"))
            .case(Case::new("long").run(format!("echo $$ >> '{pids}'\nsleep 30\n")))]
    });
    let _reaper = ScriptReaper(env.path().join("pids"));
    env.start_slaves(&["l1"]);
    let api = env.api();
    let id = api.run("ts_lost");
    api.wait_stage_started(id, "case_run:long", "l1", Duration::from_secs(30));
    env.slave("l1").kill();
    let killed_at = Instant::now();
    env.start_slave("l1");

    let session = api.wait_final(id, Duration::from_secs(25));
    let view = summarize(&session);
    assert!(killed_at.elapsed() < Duration::from_secs(20), "the master waited for the grace period: {view}");
    let run = stage_run(&session, "case_run:long", "l1");
    assert_eq!(run["state"], "failed", "{view}");
    assert!(run["reason"].as_str().unwrap_or("").contains("without this stage"), "{run}");
    assert_eq!(run_state(&session, "suite_finalize", "l1"), "passed", "{view}");
    assert!(marked(&env.marks(), "suite_finalize", "l1"), "suite finalize did not run on the restarted slave");
    assert_eq!(state(&session), "failed", "{view}");
}

/// One proxied connection: its relay task, and the switch that silences it.
struct Relay {
    task: JoinHandle<()>,
    silence: Option<oneshot::Sender<()>>,
}

/// A TCP proxy between slaves and the master whose connections can be cut (both sides
/// closed, as when a process dies) or silenced (the slave's side closed, the master's side
/// left open and mute, as when a network path dies without a FIN reaching the master).
/// The soak (`soak.rs`) cuts its slaves' connections with it too.
pub(crate) struct Proxy {
    pub(crate) address: SocketAddr,
    accepted: Arc<AtomicUsize>,
    relays: Arc<Mutex<Vec<Relay>>>,
    runtime: tokio::runtime::Runtime,
}

impl Proxy {
    pub(crate) fn start(target: SocketAddr) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).expect("the proxy listens");
        let address = listener.local_addr().expect("the proxy's address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let relays: Arc<Mutex<Vec<Relay>>> = Arc::default();
        let (count, list) = (accepted.clone(), relays.clone());
        runtime.spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (silence, silenced) = oneshot::channel::<()>();
                let task = tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        Ok(()) = silenced => {
                            drop(inbound);
                            // Never write to the master again; swallow what it sends until it
                            // gives up on this connection.
                            let mut buffer = [0u8; 4096];
                            while let Ok(n) = outbound.read(&mut buffer).await {
                                if n == 0 {
                                    break;
                                }
                            }
                        }
                    }
                });
                list.lock().unwrap_or_else(|p| p.into_inner()).push(Relay { task, silence: Some(silence) });
            }
        });
        Proxy { address, accepted, relays, runtime }
    }

    fn live(&self) -> usize {
        self.relays.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|r| !r.task.is_finished()).count()
    }

    /// Closes every proxied connection (both sides); returns how many were open.
    pub(crate) fn cut(&self) -> usize {
        let relays: Vec<Relay> = self.relays.lock().unwrap_or_else(|p| p.into_inner()).drain(..).collect();
        let live = relays.iter().filter(|r| !r.task.is_finished()).count();
        for relay in &relays {
            relay.task.abort();
        }
        // Aborted tasks drop their sockets on the runtime: wait for that.
        self.runtime.block_on(async {
            for relay in relays {
                let _ = relay.task.await;
            }
        });
        live
    }

    /// Closes the slaves' side of every connection and leaves the master's side open and
    /// mute; returns how many were open.
    fn silence(&self) -> usize {
        let mut relays = self.relays.lock().unwrap_or_else(|p| p.into_inner());
        let live = relays.iter().filter(|r| !r.task.is_finished()).count();
        for relay in relays.iter_mut() {
            if let Some(silence) = relay.silence.take() {
                let _ = silence.send(());
            }
        }
        live
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// How the test breaks the slave's connection mid-stage.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Break {
    /// Both sides closed: each side notices at once.
    Cut,
    /// The master's side stays open and mute: the master must notice by heartbeats.
    Silence,
}

/// Runs a stage printing `lines` lines a quarter second apart on a slave connected through a
/// proxy, breaks the connection once mid-stage, and checks that the slave came back, the
/// stage passed and its output is complete.
fn break_connection_mid_stage(how: Break, options: MasterOptions, lines: usize) {
    let script = format!("for i in $(seq 1 {lines}); do echo \"line $i\"; sleep 0.25; done\n");
    let suite = Suite::new("ts_cut", &["p1"]).case(Case::new("stream").run(script));
    let mut env = Env::new(&[suite], options);
    let proxy = Proxy::start(env.master.peer_addr());
    let mut config = SlaveConfig::new("p1", &env.master);
    config.master = proxy.address.to_string();
    env.start_slave_with(&config);
    let api = env.api();
    api.wait_connected(&["p1"], Duration::from_secs(20));

    let id = api.run("ts_cut");
    let session = api.wait_stage_started(id, "case_run:stream", "p1", Duration::from_secs(30));
    let stage_id = stage_run(&session, "case_run:stream", "p1")["stage_id"].as_u64().expect("a stage id");
    wait_until(Duration::from_secs(10), "some output before the break", || {
        let lines = api.output(stage_id);
        if lines.len() >= 3 {
            Ok(())
        } else {
            Err(format!("{lines:?}"))
        }
    });
    let broken = match how {
        Break::Cut => proxy.cut(),
        Break::Silence => proxy.silence(),
    };
    assert_eq!(broken, 1, "one live connection was broken");
    env.slave("p1").wait_log("connection to the master ended", Duration::from_secs(10));
    if how == Break::Silence {
        env.master.proc().wait_log("no heartbeat", Duration::from_secs(15));
    }
    env.slave("p1").wait_log("resuming stage after reconnect", Duration::from_secs(15));

    let session = api.wait_final(id, Duration::from_secs(40));
    let view = summarize(&session);
    assert_eq!(run_state(&session, "case_run:stream", "p1"), "passed", "{view}");
    assert_eq!(state(&session), "passed", "{view}");
    let expected: Vec<String> = (1..=lines).map(|i| format!("line {i}")).collect();
    assert_eq!(api.output(stage_id), expected, "every line once, in order");
    assert!(proxy.accepted() >= 2, "the slave reconnected through the proxy");
    assert_eq!(proxy.live(), 1, "one connection left");
    assert!(api.connected("p1"));
}

#[test]
fn a_connection_cut_and_restored_within_the_grace_period_loses_nothing() {
    let options = MasterOptions { reconnect_grace: "20s".into(), ..MasterOptions::default() };
    break_connection_mid_stage(Break::Cut, options, 16);
}

#[test]
fn a_connection_dead_without_a_word_is_dropped_by_heartbeats_and_the_stage_goes_on() {
    // The slave is refused as `already connected` until the master drops the mute
    // connection (three heartbeat intervals of silence), then resumes.
    let options = MasterOptions {
        reconnect_grace: "20s".into(),
        heartbeat_interval: Some("1s".into()),
        ..MasterOptions::default()
    };
    break_connection_mid_stage(Break::Silence, options, 24);
}

#[test]
fn an_idle_slave_stays_connected_with_a_short_heartbeat_interval() {
    let options = MasterOptions { heartbeat_interval: Some("1s".into()), ..MasterOptions::default() };
    // The run stage prints nothing for 4.5 s: only heartbeats keep the connection alive.
    let suite = Suite::new("ts_idle", &["h1"]).case(Case::new("quiet").run("sleep 4.5\n"));
    let mut env = Env::new(&[suite], options);
    env.start_slaves(&["h1"]);
    let api = env.api();
    let connected_ms = |api: &xrdtest_e2e::Api| {
        api.slaves().iter().find(|s| s["name"] == "h1").map(|s| s["connected_ms"].clone()).expect("h1 is listed")
    };
    let before = connected_ms(&api);
    let id = api.run("ts_idle");
    let session = api.wait_final(id, Duration::from_secs(30));
    assert_eq!(state(&session), "passed", "{}", summarize(&session));
    let master_log = env.master.log();
    assert!(!master_log.contains("no heartbeat"), "the master dropped the slave:\n{master_log}");
    assert_eq!(connected_ms(&api), before, "the slave's connection was replaced");
    assert_eq!(env.slave("h1").log().matches("connected to the master").count(), 1, "the slave reconnected");
}
