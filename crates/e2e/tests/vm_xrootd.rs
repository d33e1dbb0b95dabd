//! XrdTest's own example, for real: the shipped suite `suites/ts_xrootd_copy` on the shipped
//! cluster `clusters/cluster_example`, exactly as they are in the repository. Of the
//! cluster's eight hosts, the suite uses four (a redirector, two data servers, a client):
//! only those get VMs, booted under QEMU emulation from slave images that carry xrootd
//! (`packaging/vm-image/build --with ...`; the client's image has the client alone). The
//! client copies a file into the cluster and back with sss authentication keyed by the
//! session's shared secret, the checksums agree, a client with another key is refused,
//! xrootd's and cmsd's logs are collected, and nothing is left on the hypervisor.
//!
//! Its own test binary, run after the other VM test (cargo runs test binaries one by one):
//! both use the same network namespace and libvirtd. `scripts/test` builds the images; on
//! CI (`CI` set) a missing prerequisite fails the test instead of skipping it.

use std::path::Path;
use std::time::{Duration, Instant};

use xrdtest_e2e::vm::{
    consoles, libvirt_leftovers, may_run, prerequisites, repo_root, sh, start_hypervisor, vm_master_options,
    wait_hypervisor, HypervisorPlace, Namespace, Sampling, IMAGES,
};
use xrdtest_e2e::{run_state, stage_run, state, summarize, Env, Value};

const HOSTS: [&str; 4] = ["manager1.xrd.test", "ds1.xrd.test", "ds2.xrd.test", "client1.xrd.test"];

/// The xrootd images cluster_example names, or why they are missing.
fn xrootd_images() -> Result<(), String> {
    for (folder, with) in [("xrootd", "xrootd-server xrootd-client"), ("xrootd-client", "xrootd-client")] {
        for file in ["vmlinuz", "xrdtest-slave-initrd.img"] {
            let path = Path::new(IMAGES).join(folder).join(file);
            if !path.is_file() {
                return Err(format!(
                    "{} is missing: run packaging/vm-image/build --out {IMAGES}/{folder} --with {with}",
                    path.display()
                ));
            }
        }
    }
    Ok(())
}

/// Copies a folder of the repository into the test's definitions.
fn copy_from_repo(relative: &str, to: &Path) {
    let from = repo_root().join(relative);
    let output = sh(&format!("cp -r '{}' '{}'", from.display(), to.display()));
    assert!(output.status.success(), "copying {relative}: {}", String::from_utf8_lossy(&output.stderr));
}

/// The domains libvirt has now whose names are hosts of cluster_example.
fn example_domains() -> Vec<String> {
    let output = sh("virsh -c qemu:///system list --all --name");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|name| name.ends_with(".xrd.test"))
        .map(str::to_string)
        .collect()
}

fn steps(session: &Value) -> Vec<(u64, String)> {
    session["cluster"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["unix_ms"].as_u64()?, s["state"].as_str()?.to_string())))
        .collect()
}

#[test]
fn xrdtests_example_suite_passes_on_its_example_cluster() {
    if !may_run("xrdtests_example_suite_passes_on_its_example_cluster", prerequisites().and_then(|()| xrootd_images()))
    {
        return;
    }
    let _namespace = Namespace::up();
    let options = vm_master_options("5m", "6m", "3m");
    let env = Env::build(options, |dir| {
        copy_from_repo("suites/ts_xrootd_copy", &dir.join("definitions/suites"));
        copy_from_repo("clusters/cluster_example", &dir.join("definitions/clusters"));
        Vec::new()
    });
    let hv_dir = env.path().join("hypervisor");
    std::fs::create_dir_all(&hv_dir).expect("hypervisor folder");
    let hypervisor = start_hypervisor(&env.master, &hv_dir, 1, HypervisorPlace::BesideMaster);
    wait_hypervisor(&env.api());
    let api = env.api();

    let hypervisor_log = || xrdtest_e2e::tail(&hypervisor.log(), 60);

    // 1. Cold: the VMs boot; once their slaves are connected, their state is saved.
    let (cold, took) = run_example(&api, &hv_dir, &hypervisor_log);
    let cold_steps = steps(&cold);
    assert!(
        cold_steps.iter().any(|(_, s)| s == "saving"),
        "the first session saves the warm state: {}",
        cold["cluster"]
    );
    let saved = detail_after(&cold, "saving");
    assert!(saved.contains("saved the warm state of 4 VMs"), "{}", cold["cluster"]);
    eprintln!("hypervisor: {saved}");
    report("cold", &cold, took);

    // 2. Warm: the next session restores that state instead of booting, clean (the first
    //    session's disk changes are gone: the copy is made anew), and passes the same way.
    let (warm, took) = run_example(&api, &hv_dir, &hypervisor_log);
    let active = detail_of(&warm, "active");
    assert!(active.contains("4 restored from their warm state"), "the second session restores: {}", warm["cluster"]);
    assert!(!steps(&warm).iter().any(|(_, s)| s == "saving"), "nothing to save again: {}", warm["cluster"]);
    report("warm", &warm, took);
    let ratio = connected_ms(&warm) as f64 / connected_ms(&cold).max(1) as f64;
    eprintln!("warm / cold (start-cluster to all slaves connected): {ratio:.2}");
}

/// The output and logs of every failed run of `session`, for a failure's message.
fn failed_outputs(api: &xrdtest_e2e::Api, session: &Value) -> String {
    let mut out = String::new();
    for stage in session["stages"].as_array().into_iter().flatten() {
        for run in stage["runs"].as_array().into_iter().flatten().filter(|r| r["state"] == "failed") {
            let Some(id) = run["stage_id"].as_u64() else { continue };
            out.push_str(&format!("--- {} on {}:\n{}\n", stage["stage"], run["slave"], api.output(id).join("\n")));
            out.push_str(&format!("logs: {}\n", api.get(&format!("/api/stages/{id}/logs"))));
        }
    }
    out
}

/// The detail of the first step named `state`.
fn detail_of(session: &Value, state: &str) -> String {
    let steps = session["cluster"]["steps"].as_array().cloned().unwrap_or_default();
    steps.iter().find(|s| s["state"] == state).and_then(|s| s["detail"].as_str()).unwrap_or("").to_string()
}

/// The detail of the step right after the first one named `state`.
fn detail_after(session: &Value, state: &str) -> String {
    let steps = session["cluster"]["steps"].as_array().cloned().unwrap_or_default();
    let at = steps.iter().position(|s| s["state"] == state).unwrap_or(usize::MAX);
    steps.get(at.saturating_add(1)).and_then(|s| s["detail"].as_str()).unwrap_or("").to_string()
}

/// Milliseconds from the start sent to the hypervisor to all slaves connected: the first
/// step after the cluster became active is the answer to the warm state request, which the
/// master sends once every slave is connected.
fn connected_ms(session: &Value) -> u64 {
    let steps = steps(session);
    let sent = steps.iter().find(|(_, s)| s == "definition_sent").map(|(ms, _)| *ms).unwrap_or(0);
    let active = steps.iter().position(|(_, s)| s == "active").unwrap_or(usize::MAX);
    steps.get(active.saturating_add(1)).map(|(ms, _)| ms.saturating_sub(sent)).unwrap_or(0)
}

fn report(label: &str, session: &Value, took: Duration) {
    eprintln!(
        "ts_xrootd_copy on 4 VMs, {label}: start-cluster to all slaves connected {} ms, whole session {:.1} s",
        connected_ms(session),
        took.as_secs_f64()
    );
}

/// One session of the example, checked whole: it passed on the suite's four VMs, the
/// client's checks passed, the servers' logs were collected, nothing is left.
fn run_example(api: &xrdtest_e2e::Api, hv_dir: &Path, hypervisor_log: &dyn Fn() -> String) -> (Value, Duration) {
    // The domains are watched while the session runs: the suite's four hosts, no others.
    let started = Instant::now();
    let id = api.run("ts_xrootd_copy");
    let watcher = Sampling::start(Duration::from_millis(500), example_domains);
    let session = api.wait_final(id, Duration::from_secs(1500));
    let took = started.elapsed();
    let mut domains = watcher.stop();
    domains.sort();
    assert_eq!(
        state(&session),
        "passed",
        "{}\n{}\nfailed runs:\n{}\nconsoles:\n{}\nhypervisor log:\n{}",
        summarize(&session),
        session["cluster"],
        failed_outputs(api, &session),
        consoles(hv_dir),
        hypervisor_log()
    );
    let mut wanted: Vec<String> = HOSTS.iter().map(|h| h.to_string()).collect();
    wanted.sort();
    assert_eq!(domains, wanted, "only the suite's four hosts get VMs");
    for stage in ["suite_init", "case_run:copy_to", "case_run:copy_from", "suite_finalize"] {
        for host in HOSTS {
            assert_eq!(run_state(&session, stage, host), "passed", "{stage} on {host}\n{}", summarize(&session));
        }
    }

    // What the client saw: the copy in, the round trip and the refusal, as checks.
    let checks_of = |stage: &str| -> Vec<(String, bool)> {
        let id = stage_run(&session, stage, "client1.xrd.test")["stage_id"].as_u64().expect("stage id");
        let values = api.get(&format!("/api/stages/{id}/values"));
        values["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c["name"].as_str()?.to_string(), c["passed"].as_bool()?)))
            .collect()
    };
    let mut checks = checks_of("case_run:copy_to");
    checks.extend(checks_of("case_run:copy_from"));
    for check in ["copy_to", "checksums_equal", "wrong_key_refused"] {
        assert!(checks.contains(&(check.to_string(), true)), "check {check} did not pass: {checks:?}");
    }
    let copy_from = stage_run(&session, "case_run:copy_from", "client1.xrd.test");
    let output = api.output(copy_from["stage_id"].as_u64().expect("stage id"));
    assert!(output.iter().any(|l| l.contains("sha256 sent")), "{output:?}");
    for line in output.iter().filter(|l| l.contains("sha256") || l.contains("[xrdcp]") && l.contains("Run:")) {
        eprintln!("client1: {line}");
    }
    for (name, passed) in &checks {
        eprintln!("check {name}: {}", if *passed { "pass" } else { "fail" });
    }

    // xrootd's and cmsd's logs of every server, collected after suite init and finalize.
    let finalize_of = |host: &str| stage_run(&session, "suite_finalize", host)["stage_id"].as_u64().expect("stage id");
    for host in ["manager1.xrd.test", "ds1.xrd.test", "ds2.xrd.test"] {
        let logs = api.get(&format!("/api/stages/{}/logs", finalize_of(host)));
        for daemon in ["xrootd", "cmsd"] {
            let path = format!("/var/log/xrootd/{host}/{daemon}.log");
            let log = logs.as_array().into_iter().flatten().find(|l| l["path"] == path.as_str());
            let content = log.and_then(|l| l["content"].as_str()).unwrap_or("");
            assert!(content.contains("initialization completed"), "{path} was not collected whole: {logs}");
        }
    }
    let manager_log = api.get(&format!("/api/stages/{}/logs", finalize_of("manager1.xrd.test")));
    assert!(manager_log.to_string().contains("sss"), "the redirector logs no sss: {manager_log}");

    // Nothing of the cluster is left on the hypervisor.
    assert_eq!(example_domains(), Vec::<String>::new(), "domains left");
    assert_eq!(libvirt_leftovers("cluster_example"), Vec::<String>::new(), "network or volumes left");
    (session, took)
}
