//! `keep_on_failure`: a cluster suite's session fails and its cluster stays up, `held`,
//! until its time is up (the master then stops it by itself) or someone stops it
//! (`xrdtest cluster stop`, the dashboard's Stop). The hypervisor is simulated on a real TLS
//! connection and notes when each command arrives, so the test sees that no stop comes
//! before the hold's time; the cluster's "VMs" are slaves on loopback with the hosts' names.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use xrdtest_e2e::*;
use xrdtest_proto::client::{connect, ConnectSettings, MasterConnection};
use xrdtest_proto::{ClusterState, ClusterStatus, FromMaster, Heartbeat, HypervisorStatus, Role, ToMaster};

const CLUSTER: &str = "cluster_pair";
const HOSTS: [&str; 2] = ["server.pair.test", "client.pair.test"];
use crate::browser::PASSWORD;

/// What the simulated hypervisor was told, and when (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Told {
    Start(String),
    Stop(String),
}

type Journal = Arc<Mutex<Vec<(u64, Told)>>>;

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A hypervisor without libvirt: answers `StartCluster` and `StopCluster` with the states a
/// real one reports (a moment apart) and its capacity after each change, and writes every
/// command in its journal. Like a real one, it keeps its clusters when the master goes
/// away, connects again and reports them. Stops when dropped.
struct SimHypervisor {
    journal: Journal,
    stop: Option<mpsc::UnboundedSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn report(clusters: &[String]) -> ToMaster {
    ToMaster::HypervisorState(HypervisorStatus {
        domain_type: "qemu".into(),
        memory_limit_bytes: 8 << 30,
        memory_used_bytes: clusters.len() as u64 * (512 << 20),
        vm_limit: 8,
        vms_running: clusters.len() as u32 * 2,
        clusters: clusters
            .iter()
            .map(|name| ClusterStatus { cluster: name.clone(), state: ClusterState::Active, detail: String::new() })
            .collect(),
    })
}

fn states(cluster: &str, states: &[ClusterState]) -> Vec<ToMaster> {
    states
        .iter()
        .map(|&state| ToMaster::ClusterState(ClusterStatus { cluster: cluster.into(), state, detail: String::new() }))
        .collect()
}

/// Serves one connection; `false` once the test drops the hypervisor, `true` when the
/// connection ended (the master went away): connect again.
async fn serve(
    mut conn: MasterConnection,
    heartbeat: Duration,
    stop: &mut mpsc::UnboundedReceiver<()>,
    journal: &Journal,
    running: &mut Vec<String>,
) -> bool {
    use ClusterState::*;
    let mut beat = tokio::time::interval(heartbeat);
    let mut seq = 0;
    // Every connection begins with a report, naming the clusters it runs.
    if conn.send(&report(running)).await.is_err() {
        return true;
    }
    loop {
        let replies = tokio::select! {
            _ = stop.recv() => return false,
            message = conn.recv::<FromMaster>() => match message {
                Ok(Some(FromMaster::StartCluster(start))) => {
                    let name = start.cluster.name.clone();
                    journal.lock().unwrap().push((now_ms(), Told::Start(name.clone())));
                    running.push(name.clone());
                    states(&name, &[CreatingNetwork, CreatingSlaves, Active])
                }
                Ok(Some(FromMaster::StopCluster { cluster })) => {
                    journal.lock().unwrap().push((now_ms(), Told::Stop(cluster.clone())));
                    running.retain(|name| *name != cluster);
                    states(&cluster, &[Destroying, Stopped])
                }
                Ok(Some(_)) => Vec::new(),
                _ => return true,
            },
            _ = beat.tick() => {
                seq += 1;
                vec![ToMaster::Heartbeat(Heartbeat { seq, sent_unix_ms: 0 })]
            }
        };
        for reply in replies {
            let state_change = matches!(reply, ToMaster::ClusterState(_));
            if conn.send(&reply).await.is_err() {
                return true;
            }
            if state_change {
                if conn.send(&report(running)).await.is_err() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl SimHypervisor {
    /// Connects as `hv-held` and waits until the master has its first report.
    fn start(env: &Env) -> SimHypervisor {
        let settings = ConnectSettings {
            master: env.master.peer_addr().to_string(),
            role: Role::Hypervisor,
            name: "hv-held".into(),
            secret: env.master.secret.clone(),
            identity: Some(xrdtest_proto::identity::IdentityDir::new(env.path().join("identity-hv-held"))),
            ca_file: env.master.ca_file(),
            tls_server_name: xrdtest_proto::tls::MASTER_TLS_NAME.into(),
            max_frame_bytes: xrdtest_proto::DEFAULT_MAX_FRAME_LEN,
        };
        let journal = Journal::default();
        let (stop, stopped) = mpsc::unbounded_channel();
        let kept = journal.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(async move {
                let mut stopped = stopped;
                // What it runs outlives connections, as with a real hypervisor.
                let mut running = Vec::new();
                loop {
                    if let Ok((conn, heartbeat)) = connect(&settings).await {
                        if !serve(conn, heartbeat, &mut stopped, &kept, &mut running).await {
                            return;
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        _ = stopped.recv() => return,
                    }
                }
            });
        });
        let api = env.api();
        wait_until(Duration::from_secs(15), "the hypervisor's first report", || {
            let list = api.get("/api/hypervisors");
            let reported = list["hypervisors"].as_array().into_iter().flatten().any(|h| h["status"].is_object());
            if reported {
                Ok(())
            } else {
                Err(list.to_string())
            }
        });
        SimHypervisor { journal, stop: Some(stop), thread: Some(thread) }
    }

    fn told(&self) -> Vec<(u64, Told)> {
        self.journal.lock().unwrap().clone()
    }

    fn stops(&self) -> Vec<u64> {
        self.told().into_iter().filter(|(_, told)| matches!(told, Told::Stop(_))).map(|(at, _)| at).collect()
    }
}

impl Drop for SimHypervisor {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The shipped two-host cluster, and a suite on it whose case fails the first time on
/// each slave and passes after (so a later session of it passes).
fn definitions(options: MasterOptions) -> Env {
    Env::build(options, |dir| {
        let cluster = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clusters").join(CLUSTER);
        let target = dir.join("definitions/clusters").join(CLUSTER);
        std::fs::create_dir_all(&target).expect("cluster folder");
        std::fs::copy(cluster.join("cluster.toml"), target.join("cluster.toml")).expect("cluster.toml");
        let marks = dir.join("marks").display().to_string();
        let run = format!(
            "m='{marks}/failed.'\"$XRDTEST_SLAVE\"\nif [ -e \"$m\" ]; then echo 'passes now'; exit 0; fi\n\
             touch \"$m\"; echo 'fails on purpose'; exit 1\n"
        );
        vec![Suite::new("ts_held", &HOSTS).extra(&format!("cluster = \"{CLUSTER}\"")).case(Case::new("look").run(run))]
    })
}

/// A world with the suite, its "VMs" connected and the simulated hypervisor.
fn held_env(options: MasterOptions) -> (Env, SimHypervisor) {
    let mut env = definitions(options);
    env.start_slaves(&HOSTS);
    let hypervisor = SimHypervisor::start(&env);
    (env, hypervisor)
}

/// The board's part of `GET /api/clusters` for the cluster.
fn running(api: &Api) -> Value {
    let list = api.get("/api/clusters");
    list["clusters"]
        .as_array()
        .and_then(|clusters| clusters.iter().find(|c| c["name"] == CLUSTER))
        .map(|c| c["running"].clone())
        .unwrap_or_else(|| panic!("no {CLUSTER} in {list}"))
}

fn wait_cluster(api: &Api, state: &str, timeout: Duration) -> Value {
    wait_until(timeout, &format!("{CLUSTER} {state}"), || {
        let running = running(api);
        if running["state"] == state {
            Ok(running)
        } else {
            Err(running.to_string())
        }
    })
}

fn run_held(api: &Api, keep: &str) -> u64 {
    let body = json!({ "trigger": "api", "keep_on_failure": keep });
    match api.post("/api/suites/ts_held/run", &body) {
        (201, answer) => answer["session"].as_u64().unwrap_or_else(|| panic!("no session id in {answer}")),
        (status, answer) => panic!("run ts_held: {status} {answer}"),
    }
}

/// The states of a session's cluster steps, in order.
fn step_states(session: &Value) -> Vec<String> {
    session["cluster"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["state"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn step<'a>(session: &'a Value, state: &str) -> &'a Value {
    session["cluster"]["steps"]
        .as_array()
        .and_then(|steps| steps.iter().rev().find(|s| s["state"] == state))
        .unwrap_or_else(|| panic!("no {state} step in {:?}", step_states(session)))
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The line of `xrdtest clusters` about the cluster.
fn clusters_line(env: &Env) -> String {
    let output = run_command(env.master.cli(&["clusters"]), Duration::from_secs(20));
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    text.lines().find(|l| l.starts_with(CLUSTER)).map(str::to_string).unwrap_or_else(|| panic!("{text}"))
}

#[test]
fn a_held_cluster_stops_by_itself_when_its_time_is_up() {
    let (mut env, hypervisor) = held_env(MasterOptions::default());
    let api = env.api();
    let keep = Duration::from_secs(6);
    let id = run_held(&api, "6s");
    let session = api.wait_final(id, Duration::from_secs(60));
    // The session ended as usual, failed, while its cluster stays up.
    assert_eq!(state(&session), "failed", "{}", summarize(&session));
    let ended = session["ended_ms"].as_u64().expect("ended_ms");
    let held = running(&api);
    assert_eq!(held["state"], "held", "{held}");
    assert_eq!(held["held_for"], id, "{held}");
    assert!(held["in_use_by"].is_null(), "no session uses it: {held}");
    let until = held["held_until_ms"].as_u64().unwrap_or_else(|| panic!("held_until_ms: {held}"));
    let left = held["held_left_ms"].as_u64().unwrap_or_else(|| panic!("held_left_ms: {held}"));
    assert!(until >= ended && until <= ended + keep.as_millis() as u64 + 1000, "until {until}, ended {ended}");
    assert!(left > 0 && left <= keep.as_millis() as u64, "{left} ms left");
    assert!(held["detail"].as_str().unwrap_or("").contains(&format!("session {id} failed")), "{held}");
    assert_eq!(step_states(&session).last().map(String::as_str), Some("held"), "{:?}", step_states(&session));
    assert!(step(&session, "held")["detail"].as_str().unwrap_or("").contains("keep_on_failure 6s"), "{session}");

    // `xrdtest clusters` says so, with the time left.
    let line = clusters_line(&env);
    assert!(line.contains("held ") && line.contains("s left"), "{line}");
    assert!(line.contains(&format!("held ({id})")), "{line}");

    // A second session of the suite waits in the queue while the cluster is held.
    let second = api.run("ts_held");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(state(&api.session(second)), "queued", "{}", summarize(&api.session(second)));
    assert!(hypervisor.stops().is_empty(), "no stop during the hold: {:?}", hypervisor.told());
    assert_eq!(running(&api)["state"], "held");

    // Its time comes: the master stops it by itself, not before.
    let stopped = wait_cluster(&api, "stopped", keep + Duration::from_secs(20));
    assert!(stopped["held_for"].is_null() && stopped["held_until_ms"].is_null(), "{stopped}");
    let stops = hypervisor.stops();
    assert!(!stops.is_empty(), "{:?}", hypervisor.told());
    // Both clocks are this machine's; the master rounds to the millisecond.
    assert!(stops[0] + 5 >= until, "stop at {} before the hold's end {until}", stops[0]);
    let session = api.session(id);
    let steps = step_states(&session);
    let held_at = steps.iter().position(|s| s == "held").expect("held step");
    assert_eq!(&steps[held_at..], ["held", "stop_command_sent", "destroying", "stopped"], "{steps:?}");
    let sent = step(&session, "stop_command_sent")["detail"].as_str().unwrap_or("").to_string();
    assert!(sent.contains("time is up") && sent.contains("hv-held"), "{sent}");
    assert_eq!(state(&session), "failed", "the record keeps its final state");
    let log = env.master.proc().wait_log("cluster hold over", Duration::from_secs(10));
    assert!(log.contains(CLUSTER) && log.contains(&format!("session={id}")), "{log}");
    let log = env.master.log();
    assert!(log.contains("hold ended: stopping the cluster"), "{}", tail(&log, 20));

    // Then the waiting session gets the cluster: started again, passed, stopped after.
    let done = api.wait_final(second, Duration::from_secs(60));
    assert_eq!(state(&done), "passed", "{}", summarize(&done));
    assert_eq!(step_states(&done).last().map(String::as_str), Some("stopped"), "{:?}", step_states(&done));
    let told: Vec<Told> = hypervisor.told().into_iter().map(|(_, told)| told).collect();
    let (start, stop) = (Told::Start(CLUSTER.into()), Told::Stop(CLUSTER.into()));
    assert_eq!(told, [start.clone(), stop.clone(), start, stop]);
}

#[test]
fn a_held_cluster_is_stopped_early_by_hand() {
    let (env, hypervisor) = held_env(MasterOptions::default());
    let api = env.api();
    // Through the CLI: the run fails (exit 1) and its cluster is held for an hour.
    let output =
        run_command(env.master.cli(&["run", "ts_held", "--keep-on-failure", "1h", "--wait"]), Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let held = running(&api);
    assert_eq!(held["state"], "held", "{held}");
    let id = held["held_for"].as_u64().unwrap_or_else(|| panic!("held_for: {held}"));
    assert!(held["held_left_ms"].as_u64().is_some_and(|left| left > 3_500_000), "{held}");
    let line = clusters_line(&env);
    assert!(line.contains("held 59m") || line.contains("held 1h00m"), "{line}");

    // The clusters page shows the hold with its time left.
    let page = match api.request("GET", "/clusters", None) {
        Ok((200, Value::String(html))) => html,
        other => panic!("GET /clusters: {other:?}"),
    };
    assert!(page.contains("data-state=\"held\""), "{page}");
    assert!(page.contains("class=\"muted held-left\"") && page.contains("stops in 59 min"), "{page}");
    assert!(page.contains("class=\"cluster-held\"") && page.contains(&format!("session #{id}</a> failed")), "{page}");

    // Stopped by hand long before its time.
    let output = run_command(env.master.cli(&["cluster", "stop", CLUSTER, "--wait"]), Duration::from_secs(30));
    assert!(output.status.success(), "{output:?}");
    assert!(stdout(&output).contains("stop sent to hv-held"), "{}", stdout(&output));
    let stopped = wait_cluster(&api, "stopped", Duration::from_secs(20));
    assert!(stopped["held_for"].is_null(), "{stopped}");
    assert_eq!(hypervisor.stops().len(), 1, "{:?}", hypervisor.told());
    let session = api.wait_session(id, Duration::from_secs(20), "the stop recorded", |s| {
        step_states(s).last().map(String::as_str) == Some("stopped")
    });
    let sent = step(&session, "stop_command_sent")["detail"].as_str().unwrap_or("").to_string();
    assert!(sent.contains("by hand") && sent.contains(&format!("hold after session {id}")), "{sent}");
    // A second stop is refused: nothing runs.
    let output = run_command(env.master.cli(&["cluster", "stop", CLUSTER]), Duration::from_secs(20));
    assert!(!output.status.success(), "{output:?}");
    assert_eq!(hypervisor.stops().len(), 1, "{:?}", hypervisor.told());
}

#[test]
fn a_held_cluster_is_stopped_from_the_dashboard() {
    if !Browser::available() {
        assert!(std::env::var_os("CI").is_none(), "Chromium and chromedriver must be installed in CI");
        eprintln!("SKIPPED: chromium/chromedriver not installed (scripts/test installs them)");
        return;
    }
    let options = MasterOptions { extra: format!("[web]\npassword = \"{PASSWORD}\"\n"), ..MasterOptions::default() };
    let (env, hypervisor) = held_env(options);
    let api = env.api();
    let id = run_held(&api, "30m");
    assert_eq!(state(&api.wait_final(id, Duration::from_secs(60))), "failed");
    wait_cluster(&api, "held", Duration::from_secs(5));
    let base = env.master.url();
    let browser = Browser::start(env.path(), 1366, 900);
    crate::browser::log_in(&browser, &base, None);
    browser.goto(&format!("{base}/clusters#cluster-{CLUSTER}"));
    browser.wait_for(&format!("#cluster-{CLUSTER} .cluster-state[data-state=held]"), Duration::from_secs(10));
    let left = browser.wait_for(&format!("#cluster-{CLUSTER} .held-left"), Duration::from_secs(5));
    assert!(browser.text(&left).contains("stops in 29 min"), "{}", browser.text(&left));
    let shots =
        std::env::current_exe().expect("test executable").ancestors().nth(3).expect("target").join("screenshots");
    browser.screenshot(&shots.join("30-clusters-held.png"));
    let stop = browser.wait_for(&format!("button.cluster-stop[data-cluster={CLUSTER}]"), Duration::from_secs(5));
    assert_eq!(browser.text(&stop), "Stop now");
    browser.click(&stop);
    browser.wait_for(&format!("#cluster-{CLUSTER} .cluster-state[data-state=stopped]"), Duration::from_secs(30));
    assert_eq!(hypervisor.stops().len(), 1, "{:?}", hypervisor.told());
    assert!(running(&api)["held_for"].is_null());
}

#[test]
fn a_master_restart_ends_the_hold_and_the_cluster_is_stopped() {
    let (mut env, hypervisor) = held_env(MasterOptions::default());
    let id = run_held(&env.api(), "1h");
    assert_eq!(state(&env.api().wait_final(id, Duration::from_secs(60))), "failed");
    wait_cluster(&env.api(), "held", Duration::from_secs(5));
    assert!(hypervisor.stops().is_empty());
    // The hold lives in the master's memory: a new master knows nothing of it, and stops
    // the cluster its hypervisor reports, as any cluster it did not start.
    env.master.restart();
    let api = env.api();
    wait_until(Duration::from_secs(30), "the reported cluster stopped", || {
        let stops = hypervisor.stops();
        if stops.is_empty() {
            Err(format!("{:?}", hypervisor.told()))
        } else {
            Ok(())
        }
    });
    assert!(
        env.master.log().contains("stopping a cluster this master did not start"),
        "{}",
        tail(&env.master.log(), 20)
    );
    assert!(running(&api).is_null(), "{}", running(&api));
    let session = api.session(id);
    assert_eq!(state(&session), "failed");
    assert_eq!(step_states(&session).last().map(String::as_str), Some("held"), "{:?}", step_states(&session));
}
