//! The dashboard in a real headless Chromium: log in, press run on ts_demo, watch the
//! session page turn every cell to its final state without reloading, open a failed cell's
//! output; start and stop clusters on a simulated hypervisor (a real TLS peer) and watch
//! the clusters, hypervisors and session pages follow. Screenshots (laptop and phone) go to
//! `target/screenshots/` as test artifacts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use xrdtest_e2e::*;
use xrdtest_proto::client::{connect, ConnectSettings, MasterConnection};
use xrdtest_proto::{ClusterState, ClusterStatus, FromMaster, Heartbeat, HypervisorStatus, Role, ToMaster};

pub(crate) const PASSWORD: &str = "lab-password";

fn screenshots() -> PathBuf {
    // target/debug/deps/e2e-… → target/screenshots
    let exe = std::env::current_exe().expect("test executable");
    exe.ancestors().nth(3).expect("target folder").join("screenshots")
}

/// Copies the shipped ts_demo suite into the test's definitions.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A master with a login password and the definitions `suites` writes; `None` (the test
/// skips) without Chromium. CI installs it (scripts/test); a developer machine without it
/// skips loudly.
fn browser_env(suites: impl FnOnce(&std::path::Path) -> Vec<Suite>) -> Option<Env> {
    if !Browser::available() {
        assert!(std::env::var_os("CI").is_none(), "Chromium and chromedriver must be installed in CI");
        eprintln!("SKIPPED: chromium/chromedriver not installed (scripts/test installs them)");
        return None;
    }
    let options = MasterOptions { extra: format!("[web]\npassword = \"{PASSWORD}\"\n"), ..MasterOptions::default() };
    Some(Env::build(options, suites))
}

/// Logs in with [`PASSWORD`] (screenshotting the form when asked).
pub(crate) fn log_in(browser: &Browser, base: &str, shot: Option<&std::path::Path>) {
    browser.goto(&format!("{base}/login"));
    let password = browser.wait_for("input[name=password]", Duration::from_secs(10));
    browser.type_into(&password, PASSWORD);
    if let Some(path) = shot {
        browser.screenshot(path);
    }
    let submit = browser.wait_for("form button[type=submit], form input[type=submit]", Duration::from_secs(5));
    browser.click(&submit);
    wait_until(Duration::from_secs(10), "the login to land", || {
        let url = browser.url();
        if url.contains("/login") {
            Err(url)
        } else {
            Ok(())
        }
    });
}

#[test]
fn run_ts_demo_from_the_dashboard_and_watch_it_live() {
    let Some(mut env) = browser_env(|dir| {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../suites/ts_demo");
        copy_dir(&repo, &dir.join("definitions/suites/ts_demo"));
        Vec::new()
    }) else {
        return;
    };
    env.start_slaves(&["slave1", "slave2", "slave3"]);
    let base = env.master.url();
    let shots = screenshots();
    let browser = Browser::start(env.path(), 1366, 900);
    log_in(&browser, &base, Some(&shots.join("01-login.png")));

    // The suites page, and run now.
    browser.goto(&format!("{base}/suites"));
    let run = browser.wait_for("button.run-now[data-suite=ts_demo]", Duration::from_secs(10));
    browser.screenshot(&shots.join("02-suites.png"));
    browser.click(&run);
    let session_url = wait_until(Duration::from_secs(10), "the session page", || {
        let url = browser.url();
        if url.contains("/sessions/") {
            Ok(url)
        } else {
            Err(url)
        }
    });
    browser.wait_for("table#grid td.cell", Duration::from_secs(10));
    // A marker in the page: if the page reloads, it is gone.
    browser.script("window.__xrdtest_marker = 'kept'; return true;");
    browser.screenshot(&shots.join("03-session-running.png"));

    // Every cell reaches a final state, live.
    let final_states =
        ["state-passed", "state-failed", "state-timedout", "state-cancelled", "state-skipped", "state-disconnected"];
    let cells = wait_until(Duration::from_secs(60), "every cell final", || {
        let cells = browser.find_all("table#grid td.cell");
        let classes: Vec<String> = cells.iter().map(|c| browser.attribute(c, "class").unwrap_or_default()).collect();
        let pending = classes.iter().filter(|c| !final_states.iter().any(|f| c.contains(f))).count();
        if !cells.is_empty() && pending == 0 {
            Ok(classes)
        } else {
            Err(format!("{pending} of {} cells not final", cells.len()))
        }
    });
    assert_eq!(
        browser.script("return window.__xrdtest_marker || null;"),
        serde_json::json!("kept"),
        "the page reloaded"
    );
    assert_eq!(browser.url(), session_url);
    assert!(cells.iter().any(|c| c.contains("state-failed")), "fails_on_purpose shows as failed");
    assert!(cells.iter().filter(|c| c.contains("state-passed")).count() > 20, "{cells:?}");
    browser.screenshot(&shots.join("04-session-done.png"));

    // Loaded again once the session has ended: the timeline draws every stage run, and the
    // sync waits of list_peers (a subscribe and a barrier on each of the 3 slaves).
    browser.goto(&session_url);
    browser.wait_for("section#timeline svg.timeline", Duration::from_secs(10));
    let runs = browser.find_all("svg.timeline rect.tl-run").len();
    let waits = browser.find_all("svg.timeline rect.tl-wait").len();
    assert!(runs > 20, "{runs} stage runs drawn");
    assert_eq!(waits, 6, "two waits on each of the three slaves");
    let drawn = browser.script(
        "const r = document.querySelector('svg.timeline rect.tl-wait').getBoundingClientRect(); return r.width > 0 && r.height > 0;",
    );
    assert_eq!(drawn, serde_json::json!(true), "the wait marks are laid out, not empty");
    browser.script("document.querySelector('section#timeline').scrollIntoView(); return true;");
    browser.screenshot(&shots.join("04b-session-timeline.png"));
    browser.set_size(390, 844);
    browser.screenshot(&shots.join("05-session-phone.png"));
    browser.set_size(1366, 900);

    // Open a failed cell: its output is there.
    let failed = browser.wait_for("table#grid td.cell.state-failed a", Duration::from_secs(5));
    browser.click(&failed);
    let output = browser.wait_for("#output", Duration::from_secs(10));
    let text = wait_until(Duration::from_secs(10), "the failed stage's output", || {
        let text = browser.text(&output);
        if text.contains("fails on purpose") {
            Ok(text)
        } else {
            Err(text)
        }
    });
    assert!(text.contains("never-written.txt"), "{text}");
    browser.screenshot(&shots.join("06-failed-cell.png"));

    // The other pages render in the browser too.
    for (name, path) in
        [("07-dashboard", "/"), ("08-history", "/sessions"), ("09-trends", "/trends/ts_demo"), ("10-slaves", "/slaves")]
    {
        browser.goto(&format!("{base}{path}"));
        browser.wait_for("body", Duration::from_secs(10));
        browser.screenshot(&shots.join(format!("{name}.png")));
    }
    browser.set_size(390, 844);
    browser.goto(&format!("{base}/"));
    browser.screenshot(&shots.join("11-dashboard-phone.png"));
}

/// What the test tells its simulated hypervisor.
enum Control {
    /// Report every VM as in use (true) or the real count again (false).
    Full(bool),
}

/// A hypervisor without libvirt on a real TLS connection: it answers `StartCluster` and
/// `StopCluster` with the states a real one reports, a moment apart so pages show the
/// progress, and reports its capacity after each change. Clusters named in `broken` fail
/// to start with a long libvirt-like error. Stops when dropped.
struct FakeHypervisor {
    control: mpsc::UnboundedSender<Control>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const VM_LIMIT: u32 = 16;
const MEMORY_LIMIT: u64 = 24 << 30;
const STEP_PAUSE: Duration = Duration::from_millis(400);
const LIBVIRT_ERROR: &str = "virDomainCreateWithFlags failed: internal error: process exited while connecting to \
    monitor: 2025-03-01T14:05:09.123456Z qemu-system-x86_64: -blockdev {\"driver\":\"file\",\"filename\":\
    \"/var/lib/xrdtest/pool/xrdtest.cluster_example.metamanager1.boot.qcow2\",\"node-name\":\"libvirt-2-storage\"}: \
    Could not open backing file /var/lib/xrdtest/pool/slc6_testslave_ref.img: No such file or directory";

/// The simulated hypervisor's clusters: VMs and memory of each.
struct Lab {
    clusters: BTreeMap<String, (u32, u64)>,
    full: bool,
    broken: Vec<String>,
}

impl Lab {
    fn report(&self) -> ToMaster {
        let vms: u32 = self.clusters.values().map(|(vms, _)| vms).sum();
        ToMaster::HypervisorState(HypervisorStatus {
            domain_type: "qemu".into(),
            memory_limit_bytes: MEMORY_LIMIT,
            memory_used_bytes: self.clusters.values().map(|(_, memory)| memory).sum(),
            vm_limit: VM_LIMIT,
            vms_running: if self.full { VM_LIMIT } else { vms },
            clusters: self
                .clusters
                .keys()
                .map(|name| ClusterStatus { cluster: name.clone(), state: ClusterState::Active, detail: String::new() })
                .collect(),
        })
    }
}

fn cluster_state(cluster: &str, state: ClusterState, detail: &str) -> ToMaster {
    ToMaster::ClusterState(ClusterStatus { cluster: cluster.into(), state, detail: detail.into() })
}

/// The states of one start or stop, in order.
fn answer(lab: &mut Lab, command: FromMaster) -> Vec<ToMaster> {
    use ClusterState::*;
    match command {
        FromMaster::StartCluster(start) => {
            let name = start.cluster.name.clone();
            if lab.broken.contains(&name) {
                return vec![
                    cluster_state(&name, CreatingNetwork, ""),
                    cluster_state(&name, ErrorStart, LIBVIRT_ERROR),
                ];
            }
            let memory = start.cluster.hosts.iter().map(|h| h.ram_bytes).sum();
            lab.clusters.insert(name.clone(), (start.cluster.hosts.len() as u32, memory));
            [CreatingNetwork, CopyingImages, AttachingDisks, CreatingSlaves, Active]
                .into_iter()
                .map(|state| cluster_state(&name, state, ""))
                .collect()
        }
        FromMaster::StopCluster { cluster } => {
            lab.clusters.remove(&cluster);
            vec![cluster_state(&cluster, Destroying, ""), cluster_state(&cluster, Stopped, "")]
        }
        _ => Vec::new(),
    }
}

async fn serve(
    mut conn: MasterConnection,
    heartbeat: Duration,
    mut control: mpsc::UnboundedReceiver<Control>,
    mut lab: Lab,
) {
    let mut beat = tokio::time::interval(heartbeat);
    let mut seq = 0;
    if conn.send(&lab.report()).await.is_err() {
        return;
    }
    loop {
        let replies = tokio::select! {
            command = control.recv() => match command {
                Some(Control::Full(full)) => {
                    lab.full = full;
                    vec![lab.report()]
                }
                None => return,
            },
            message = conn.recv::<FromMaster>() => match message {
                Ok(Some(command)) => answer(&mut lab, command),
                _ => return,
            },
            _ = beat.tick() => {
                seq += 1;
                vec![ToMaster::Heartbeat(Heartbeat { seq, sent_unix_ms: 0 })]
            }
        };
        for reply in replies {
            let state_change = matches!(reply, ToMaster::ClusterState(_));
            if conn.send(&reply).await.is_err() {
                return;
            }
            if state_change {
                if conn.send(&lab.report()).await.is_err() {
                    return;
                }
                tokio::time::sleep(STEP_PAUSE).await;
            }
        }
    }
}

impl FakeHypervisor {
    fn start(env: &Env, name: &str, broken: &[&str]) -> FakeHypervisor {
        let settings = ConnectSettings {
            master: env.master.peer_addr().to_string(),
            role: Role::Hypervisor,
            name: name.into(),
            secret: env.master.secret.clone(),
            identity: Some(xrdtest_proto::identity::IdentityDir::new(env.path().join(format!("identity-{name}")))),
            ca_file: env.master.ca_file(),
            tls_server_name: xrdtest_proto::tls::MASTER_TLS_NAME.into(),
            max_frame_bytes: xrdtest_proto::DEFAULT_MAX_FRAME_LEN,
        };
        let lab =
            Lab { clusters: BTreeMap::new(), full: false, broken: broken.iter().map(|b| b.to_string()).collect() };
        let (control, commands) = mpsc::unbounded_channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(async move {
                let (conn, heartbeat) = connect(&settings).await.expect("the master welcomes the hypervisor");
                serve(conn, heartbeat, commands, lab).await;
            });
        });
        FakeHypervisor { control, thread: Some(thread) }
    }

    fn set_full(&self, full: bool) {
        self.control.send(Control::Full(full)).expect("the hypervisor runs");
    }
}

impl Drop for FakeHypervisor {
    fn drop(&mut self) {
        let (closed, _) = mpsc::unbounded_channel();
        self.control = closed;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits until the master has the hypervisor's report of `vms` VMs in use.
fn wait_vms_running(api: &Api, vms: u32) {
    wait_until(Duration::from_secs(15), &format!("{vms} VMs reported"), || {
        let list = api.get("/api/hypervisors");
        if list["hypervisors"][0]["status"]["vms_running"] == vms {
            Ok(())
        } else {
            Err(list.to_string())
        }
    });
}

/// Clicks the button `css` and waits until the page (reloaded live, or after the form's
/// redirect) shows `ready`.
fn press_and_wait(browser: &Browser, css: &str, ready: &str) {
    let button = browser.wait_for(css, Duration::from_secs(10));
    browser.click(&button);
    browser.wait_for(ready, Duration::from_secs(30));
}

#[test]
fn clusters_and_hypervisors_follow_a_simulated_hypervisor() {
    let Some(mut env) = browser_env(|dir| {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clusters");
        for cluster in ["cluster_pair", "cluster_example"] {
            copy_dir(&repo.join(cluster), &dir.join("definitions/clusters").join(cluster));
        }
        vec![Suite::new("ts_pair", &["server", "client"])
            .extra("cluster = \"cluster_pair\"")
            .case(Case::new("hello").run("echo \"hello from $XRDTEST_SLAVE\"\n"))]
    }) else {
        return;
    };
    // The cluster's "VMs": slaves on loopback with the hosts' names.
    env.start_slaves(&["server.pair.test", "client.pair.test"]);
    let api = env.api();
    let hypervisor = FakeHypervisor::start(&env, "hv-lab", &["cluster_example"]);
    wait_until(Duration::from_secs(15), "hv-lab's first report", || {
        let list = api.get("/api/hypervisors");
        let reported = list["hypervisors"].as_array().into_iter().flatten().any(|h| h["status"].is_object());
        if reported {
            Ok(())
        } else {
            Err(list.to_string())
        }
    });
    let base = env.master.url();
    let shots = screenshots();
    let browser = Browser::start(env.path(), 1366, 900);
    log_in(&browser, &base, None);

    // Start both clusters from the page: one comes up, one fails with libvirt's error.
    browser.goto(&format!("{base}/clusters"));
    browser.wait_for("#hypervisor-summary", Duration::from_secs(10));
    browser.screenshot(&shots.join("20-clusters-ready.png"));
    press_and_wait(
        &browser,
        "button.cluster-start[data-cluster=cluster_pair]",
        "#cluster-cluster_pair .cluster-state[data-state=active]",
    );
    press_and_wait(
        &browser,
        "button.cluster-start[data-cluster=cluster_example]",
        "#cluster-cluster_example .cluster-state[data-state=error_start]",
    );
    let error = browser.wait_for("#cluster-cluster_example pre.detail", Duration::from_secs(5));
    assert!(browser.text(&error).contains("Could not open backing file"), "{}", browser.text(&error));
    // A refusal: the hypervisor is full now.
    hypervisor.set_full(true);
    wait_vms_running(&api, VM_LIMIT);
    press_and_wait(
        &browser,
        "button.cluster-start[data-cluster=cluster_example]",
        "#cluster-cluster_example .errors.action-notice",
    );
    let notice = browser.wait_for("#cluster-cluster_example .errors.action-notice", Duration::from_secs(5));
    assert!(browser.text(&notice).contains("no connected hypervisor has room"), "{}", browser.text(&notice));
    browser.screenshot(&shots.join("21-clusters-refused.png"));
    hypervisor.set_full(false);
    wait_vms_running(&api, 2);
    browser.goto(&format!("{base}/clusters#cluster-cluster_pair"));
    browser.wait_for("#cluster-cluster_pair button.cluster-stop", Duration::from_secs(10));
    browser.screenshot(&shots.join("22-clusters-active.png"));
    browser.set_size(390, 844);
    browser.screenshot(&shots.join("23-clusters-phone.png"));
    browser.goto(&format!("{base}/clusters#cluster-cluster_example"));
    browser.wait_for("#cluster-cluster_example pre.detail", Duration::from_secs(10));
    browser.screenshot(&shots.join("24-clusters-error-phone.png"));

    // The hypervisor with its capacity and clusters.
    browser.set_size(1366, 900);
    browser.goto(&format!("{base}/hypervisors"));
    let row =
        browser.wait_for("#hypervisor-hv-lab tr.hosted-cluster[data-cluster=cluster_pair]", Duration::from_secs(10));
    assert!(browser.text(&row).contains("active"), "{}", browser.text(&row));
    let vms = browser.wait_for("#hypervisor-hv-lab .vms", Duration::from_secs(5));
    assert!(browser.text(&vms).contains("2 / 16 VMs"), "{}", browser.text(&vms));
    browser.screenshot(&shots.join("25-hypervisors.png"));
    browser.set_size(390, 844);
    browser.screenshot(&shots.join("26-hypervisors-phone.png"));
    browser.set_size(1366, 900);

    // Stop the pair by hand; then a session starts it for itself and stops it after.
    browser.goto(&format!("{base}/clusters"));
    press_and_wait(
        &browser,
        "button.cluster-stop[data-cluster=cluster_pair]",
        "#cluster-cluster_pair .cluster-state[data-state=stopped]",
    );
    let id = api.run("ts_pair");
    browser.goto(&format!("{base}/sessions/{id}"));
    browser.wait_for("#cluster-panel", Duration::from_secs(10));
    browser.script("window.__xrdtest_marker = 'kept'; return true;");
    wait_until(Duration::from_secs(60), "the session to pass, live", || {
        let badge = browser.find_all("#session-state.state-passed");
        let stopped = browser.find_all("#cluster-steps tr.step[data-state=stopped]");
        if !badge.is_empty() && !stopped.is_empty() {
            Ok(())
        } else {
            Err(format!("{} steps", browser.find_all("#cluster-steps tr.step").len()))
        }
    });
    assert_eq!(
        browser.script("return window.__xrdtest_marker || null;"),
        serde_json::json!("kept"),
        "the page reloaded"
    );
    let hypervisor_link = browser.wait_for("#cluster-hypervisor", Duration::from_secs(5));
    assert_eq!(browser.text(&hypervisor_link), "hv-lab");
    browser.screenshot(&shots.join("27-session-cluster.png"));
    browser.set_size(390, 844);
    browser.screenshot(&shots.join("28-session-cluster-phone.png"));
    browser.set_size(1366, 900);
    browser.goto(&format!("{base}/"));
    browser.wait_for("#hypervisors td.hypervisor-load", Duration::from_secs(10));
    browser.screenshot(&shots.join("29-dashboard-hypervisors.png"));
    drop(hypervisor);
}

/// The Slaves page's "Who may connect" table: a slave without the secret shows as pending,
/// Approve lets it in, Revoke cuts it off, all in a real browser.
#[test]
fn a_waiting_slave_is_approved_and_revoked_on_the_dashboard() {
    let Some(mut env) = browser_env(|_| Vec::new()) else {
        return;
    };
    let mut config = SlaveConfig::new("lab7", &env.master);
    config.secret = String::new();
    env.start_slave_with(&config).wait_log("waiting for an operator", Duration::from_secs(20));
    let base = env.master.url();
    let shots = screenshots();
    let browser = Browser::start(env.path(), 1366, 900);
    log_in(&browser, &base, None);
    browser.goto(&format!("{base}/slaves"));
    browser.wait_for("#identity-lab7[data-state=pending]", Duration::from_secs(10));
    browser.screenshot(&shots.join("40-peer-pending.png"));
    press_and_wait(&browser, "button.peer-approve[data-peer=lab7]", "#identity-lab7[data-state=enrolled]");
    env.slave("lab7").wait_log("connected to the master", Duration::from_secs(20));
    browser.goto(&format!("{base}/slaves"));
    browser.wait_for("tr.peer[data-peer=lab7]", Duration::from_secs(10));
    browser.screenshot(&shots.join("41-peer-enrolled.png"));
    press_and_wait(
        &browser,
        "button.peer-revoke[data-peer=lab7]",
        "#identity-lab7[data-state=revoked], #identity-lab7[data-state=pending]",
    );
    let api = env.api();
    wait_until(Duration::from_secs(10), "lab7 disconnected", || {
        match api.slaves().iter().find(|s| s["name"] == "lab7") {
            Some(s) if s["connected"] == true => Err("still connected".to_string()),
            _ => Ok(()),
        }
    });
    browser.screenshot(&shots.join("42-peer-revoked.png"));
}
