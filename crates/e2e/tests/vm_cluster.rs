//! Cluster sessions for real: a real `libvirtd` inside a network namespace this test
//! creates, the real master and hypervisor in that namespace, and a two-host cluster of
//! VMs booting the slave image (`packaging/vm-image`) under QEMU software emulation.
//!
//! Its own test binary, so it never runs beside the loopback tests (VMs under emulation
//! take both cores for a while). `scripts/test` installs libvirt and builds the image
//! first; on CI (`CI` set) a missing prerequisite fails the test instead of skipping it.

use std::path::Path;
use std::time::Duration;

use xrdtest_e2e::vm::{
    consoles, libvirt_leftovers, may_run, prerequisites, qemu_command_lines, repo_root, start_hypervisor,
    vm_master_options, wait_hypervisor, HypervisorPlace, Namespace, Sampling, NS_IP,
};
use xrdtest_e2e::{run_command, run_state, state, summarize, wait_until, Case, Env, Suite};

fn cluster_pair(dir: &Path) {
    let folder = dir.join("cluster_pair");
    std::fs::create_dir_all(&folder).expect("cluster folder");
    std::fs::copy(repo_root().join("clusters/cluster_pair/cluster.toml"), folder.join("cluster.toml"))
        .expect("clusters/cluster_pair/cluster.toml");
}

/// cluster_pair again on a network of its own, with a `[[links]]` entry: 20 ms more each
/// way between its server and its client.
fn cluster_link(dir: &Path) {
    let folder = dir.join("cluster_link");
    std::fs::create_dir_all(&folder).expect("cluster folder");
    let pair = std::fs::read_to_string(repo_root().join("clusters/cluster_pair/cluster.toml")).expect("cluster_pair");
    let text = pair
        .replace("name = \"cluster_pair\"", "name = \"cluster_link\"")
        .replace("virbr_pair", "virbr_link")
        .replace("10.77.0.", "10.79.0.")
        .replace("pair.test", "link.test")
        .replace("52:54:00:00:00:", "52:54:00:00:01:");
    let links = "\n[[links]]\na = \"role:server\"\nb = \"client\"\ndelay = \"20ms\"\n";
    std::fs::write(folder.join("cluster.toml"), format!("{text}{links}")).expect("cluster.toml");
}

/// The client's connect round trip to the server holds the link's delay both ways.
fn link_suite() -> Suite {
    Suite::new("ts_vm_link", &["server", "client"])
        .extra("cluster = \"cluster_link\"")
        .stage_timeout("3m")
        .init("if [ \"$XRDTEST_SLAVE\" = server.link.test ]; then busybox httpd -p 8080 -h /tmp; fi\n")
        .case(Case::new("delayed").run(
            "source \"$XRDTEST_FUNCTIONS\"\n\
             set -e\n\
             if [ \"$XRDTEST_SLAVE\" = client.link.test ]; then\n\
               server=$(getent hosts server.link.test | awk '{print $1}')\n\
               best=999999\n\
               for i in 1 2 3 4 5; do\n\
                 t0=${EPOCHREALTIME/./}; exec 3<>/dev/tcp/$server/8080; t1=${EPOCHREALTIME/./}; exec 3>&-\n\
                 (( (t1 - t0) / 1000 < best )) && best=$(( (t1 - t0) / 1000 ))\n\
               done\n\
               echo \"rtt over the link: $best ms\"\n\
               result link_rtt_ms $best ms\n\
               if (( best >= 38 && best <= 200 )); then check link_delay pass; else check link_delay fail \"$best ms\"; fi\n\
               tc class show dev eth0\n\
             fi\n",
        ))
        .finalize("pkill -f 'httpd -p 8080' || true\n")
}

/// A one-host cluster whose boot image does not exist in the pool.
fn cluster_broken(dir: &Path) {
    let folder = dir.join("cluster_broken");
    std::fs::create_dir_all(&folder).expect("cluster folder");
    std::fs::write(
        folder.join("cluster.toml"),
        "name = \"cluster_broken\"\n[network]\nbridge = \"virbr_broken\"\nip = \"10.78.0.1\"\n\
         netmask = \"255.255.255.0\"\ndhcp_range = [\"10.78.0.100\", \"10.78.0.200\"]\ndomain = \"broken.test\"\n\
         [defaults]\nboot_image = \"does-not-exist.qcow2\"\nram = \"128M\"\n\
         [[hosts]]\nname = \"lone\"\nip = \"10.78.0.10\"\n",
    )
    .expect("cluster.toml");
}

/// One host serves a file from its extra disk (mounted by `@diskmounts@`), the other
/// fetches it by host name across the virtual network.
fn pair_suite() -> Suite {
    Suite::new("ts_vm_pair", &["server", "client"])
        .extra("cluster = \"cluster_pair\"")
        .stage_timeout("3m")
        .init(
            "set -e\n@diskmounts@\n\
             if [ \"$XRDTEST_SLAVE\" = server.pair.test ]; then\n\
               mountpoint /data\n\
               awk '$2 == \"/data\" { print \"mounted:\", $1, $3, $4 }' /proc/mounts | grep 'mounted: /dev/vda ext4'\n\
               echo \"hello from $(hostname) via @slavename@\" > /data/hello.txt\n\
               busybox httpd -p 8080 -h /data\n\
             fi\n",
        )
        .case(Case::new("fetch").run(
            "set -e\n\
             if [ \"$XRDTEST_SLAVE\" = client.pair.test ]; then\n\
               for i in $(seq 1 50); do wget -q -O /tmp/hello.txt http://server.pair.test:8080/hello.txt && break; sleep 0.2; done\n\
               cat /tmp/hello.txt\n\
               grep -q 'hello from server.pair.test via server.pair.test' /tmp/hello.txt\n\
             fi\n",
        ))
        .case(Case::new("netem").run(NETEM_CASE))
        .finalize("pkill -f 'httpd -p 8080' || true\n")
}

/// The client measures its TCP connect round trip to the server's address (the best of 5), then with
/// a netem delay of 100 ms on itself (named by its cluster role), then healed; the checks
/// fail the stage unless the delay added about 100 ms and the heal took it away.
const NETEM_CASE: &str = "source \"$XRDTEST_FUNCTIONS\"\n\
     set -e\n\
     [ \"@roles@\" = \"$XRDTEST_ROLES\" ] && echo \"roles: @roles@\"\n\
     if [ \"$XRDTEST_SLAVE\" = client.pair.test ]; then\n\
       # By address: a name looked up at each connect would add the DNS round trip.\n\
       server=$(getent hosts server.pair.test | awk '{print $1}')\n\
       rtt() {\n\
         local best=999999 t0 t1 i\n\
         for i in 1 2 3 4 5; do\n\
           t0=${EPOCHREALTIME/./}; exec 3<>/dev/tcp/$server/8080; t1=${EPOCHREALTIME/./}; exec 3>&-\n\
           (( (t1 - t0) / 1000 < best )) && best=$(( (t1 - t0) / 1000 ))\n\
         done\n\
         echo $best\n\
       }\n\
       base=$(rtt); echo \"rtt before: $base ms\"\n\
       fault_netem role:client delay 100ms\n\
       tc qdisc show dev eth0\n\
       slow=$(rtt); echo \"rtt with netem: $slow ms\"\n\
       fault_heal\n\
       after=$(rtt); echo \"rtt healed: $after ms\"\n\
       result rtt_before_ms $base ms; result rtt_netem_ms $slow ms; result rtt_healed_ms $after ms\n\
       if (( slow - base >= 80 && slow - base <= 250 )); then check netem_adds_delay pass\n\
       else check netem_adds_delay fail \"before $base ms, with netem $slow ms\"; fi\n\
       if (( after - base <= 60 )); then check heal_removes_delay pass\n\
       else check heal_removes_delay fail \"before $base ms, healed $after ms\"; fi\n\
     fi\n";

fn broken_suite() -> Suite {
    Suite::new("ts_vm_broken", &["lone"]).extra("cluster = \"cluster_broken\"").case(Case::new("never"))
}

fn cluster_step_names(session: &xrdtest_e2e::Value) -> Vec<String> {
    session["cluster"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["state"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_cluster_of_vms_runs_a_suite_and_vanishes() {
    if !may_run("a_cluster_of_vms_runs_a_suite_and_vanishes", prerequisites()) {
        return;
    }
    let _namespace = Namespace::up();
    let options = vm_master_options("3m", "4m", "2m");
    let env = Env::build(options, |dir| {
        let clusters = dir.join("definitions/clusters");
        cluster_pair(&clusters);
        cluster_broken(&clusters);
        cluster_link(&clusters);
        vec![pair_suite(), broken_suite(), link_suite()]
    });
    let hv_dir = env.path().join("hypervisor");
    std::fs::create_dir_all(&hv_dir).expect("hypervisor folder");
    let mut hypervisor = start_hypervisor(&env.master, &hv_dir, 1, HypervisorPlace::BesideMaster);
    wait_hypervisor(&env.api());
    let api = env.api();
    let hypervisors = api.get("/api/hypervisors");
    assert_eq!(
        hypervisors["hypervisors"][0]["status"]["domain_type"], "qemu",
        "KVM does not work on these machines: the probe must fall back to emulation"
    );

    // 1. A boot image that does not exist: the session fails with libvirt's words for it,
    //    and nothing of the cluster is left.
    let id = api.run("ts_vm_broken");
    let session = api.wait_final(id, Duration::from_secs(180));
    let reason = session["reason"].as_str().unwrap_or("").to_string();
    assert_eq!(state(&session), "failed", "{}", summarize(&session));
    assert!(reason.contains("does-not-exist.qcow2"), "the reason names the missing image: {reason}");
    assert!(cluster_step_names(&session).contains(&"error_start".to_string()), "{}", session["cluster"]);
    assert!(cluster_step_names(&session).contains(&"stopped".to_string()), "{}", session["cluster"]);
    assert_eq!(libvirt_leftovers("broken"), Vec::<String>::new());

    // 2. Two VMs: the session passes; afterwards no domain, network or volume remains.
    //    While they run, QEMU's command lines are watched: each VM's slave.toml (with its
    //    token) comes from a file fw_cfg entry, so neither the enrollment secret nor a token
    //    is ever on them.
    let id = api.run("ts_vm_pair");
    let secret = env.master.secret.clone();
    let watcher = Sampling::start(Duration::from_millis(200), qemu_command_lines);
    let session = api.wait_final(id, Duration::from_secs(420));
    let command_lines = watcher.stop();
    assert!(!command_lines.is_empty(), "no QEMU process was seen while the session ran");
    for line in &command_lines {
        assert!(!line.contains(&secret), "the enrollment secret is on QEMU's command line: {line}");
        assert!(!line.contains("secret ="), "a slave.toml is inline on QEMU's command line: {line}");
        assert!(line.contains("opt/org.xrdtest/slave.toml,file="), "no file fw_cfg entry: {line}");
    }
    let guests = hv_dir.join("state/guests/cluster_pair");
    assert!(!guests.exists(), "the VMs' configurations outlived the cluster: {}", guests.display());
    let peers = api.get("/api/peers");
    assert!(
        peers["peers"].as_array().into_iter().flatten().all(|p| p["cluster"] != "cluster_pair"),
        "the VMs' identities outlived the cluster: {peers}"
    );
    assert_eq!(
        state(&session),
        "passed",
        "{}\n{}\nconsoles:\n{}\nhypervisor log:\n{}",
        summarize(&session),
        session["cluster"],
        consoles(&hv_dir),
        xrdtest_e2e::tail(&hypervisor.log(), 60)
    );
    for stage in ["suite_init", "case_run:fetch", "case_run:netem", "suite_finalize"] {
        for slave in ["server.pair.test", "client.pair.test"] {
            assert_eq!(run_state(&session, stage, slave), "passed", "{stage} on {slave}");
        }
    }
    let steps = cluster_step_names(&session);
    for wanted in ["creating_network", "copying_images", "attaching_disks", "creating_slaves", "active", "stopped"] {
        assert!(steps.contains(&wanted.to_string()), "cluster steps {steps:?} lack {wanted}");
    }
    let fetched = api.output(
        xrdtest_e2e::stage_run(&session, "case_run:fetch", "client.pair.test")["stage_id"].as_u64().expect("stage id"),
    );
    assert!(fetched.iter().any(|l| l.contains("hello from server.pair.test")), "{fetched:?}");
    let netem = api.output(
        xrdtest_e2e::stage_run(&session, "case_run:netem", "client.pair.test")["stage_id"].as_u64().expect("stage id"),
    );
    assert!(netem.iter().any(|l| l.contains("roles: client")), "{netem:?}");
    assert!(netem.iter().any(|l| l.contains("qdisc netem 1: root")), "{netem:?}");
    eprintln!(
        "netem in the VM: {}",
        netem.iter().filter(|l| l.contains("rtt ")).cloned().collect::<Vec<_>>().join("; ")
    );
    assert_eq!(libvirt_leftovers("pair"), Vec::<String>::new());

    // 2a. A cluster with [[links]]: held for the session (measured by the client), recorded
    //     as a fault of the cluster, healed at its end.
    let id = api.run("ts_vm_link");
    let session = api.wait_final(id, Duration::from_secs(420));
    assert_eq!(state(&session), "passed", "{}\nconsoles:\n{}", summarize(&session), consoles(&hv_dir));
    let measured = api.output(
        xrdtest_e2e::stage_run(&session, "case_run:delayed", "client.link.test")["stage_id"]
            .as_u64()
            .expect("stage id"),
    );
    let timeline = api.get(&format!("/api/sessions/{id}/timeline"));
    let links: Vec<&xrdtest_e2e::Value> =
        timeline["faults"].as_array().into_iter().flatten().filter(|f| f["kind"] == "link").collect();
    assert_eq!(links.len(), 1, "{timeline}");
    assert_eq!(links[0]["params"], "server.link.test -- client.link.test: delay 20ms", "{timeline}");
    assert_eq!(links[0]["made_by"], "cluster", "{timeline}");
    assert!(links[0]["ended_unix_ms"].as_u64().is_some() && links[0]["error"].is_null(), "healed: {timeline}");
    eprintln!(
        "link in the VMs: {}",
        measured.iter().filter(|l| l.contains("rtt ")).cloned().collect::<Vec<_>>().join("; ")
    );
    assert_eq!(libvirt_leftovers("link"), Vec::<String>::new());

    // 2b. By hand, with the CLI: `cluster start --wait` brings the cluster up; a session of
    //     its suite uses it and leaves it running; `cluster stop --wait` removes it.
    let output = run_command(env.master.cli(&["cluster", "start", "cluster_pair", "--wait"]), Duration::from_secs(240));
    let printed = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{printed}{}", String::from_utf8_lossy(&output.stderr));
    assert!(printed.contains("active"), "{printed}");
    let listed = run_command(env.master.cli(&["clusters"]), Duration::from_secs(30));
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(
        listed.lines().any(|l| l.contains("cluster_pair") && l.contains("active") && l.contains("by hand")),
        "{listed}"
    );
    let id = api.run("ts_vm_pair");
    let session = api.wait_final(id, Duration::from_secs(420));
    assert_eq!(state(&session), "passed", "{}\n{}", summarize(&session), session["cluster"]);
    assert_eq!(session["cluster"]["started_here"], false, "{}", session["cluster"]);
    assert!(!libvirt_leftovers("pair").is_empty(), "a cluster started by hand stays after the session");
    let output = run_command(env.master.cli(&["cluster", "stop", "cluster_pair", "--wait"]), Duration::from_secs(240));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(libvirt_leftovers("pair"), Vec::<String>::new());

    // 3. A cancel while the VMs boot: the session ends cancelled and its cluster is removed.
    let id = api.run("ts_vm_pair");
    api.wait_session(id, Duration::from_secs(180), "the cluster active", |s| {
        cluster_step_names(s).contains(&"active".to_string())
    });
    assert_eq!(api.cancel(id).0, 200);
    let session = api.wait_final(id, Duration::from_secs(180));
    assert_eq!(state(&session), "cancelled", "{}", summarize(&session));
    assert!(cluster_step_names(&session).contains(&"stopped".to_string()), "{}", session["cluster"]);
    assert_eq!(libvirt_leftovers("pair"), Vec::<String>::new());

    // 4. The hypervisor dies while the cluster runs: the session fails with that reason;
    //    restarted, the hypervisor finds what it owned by its markers and removes it.
    let id = api.run("ts_vm_pair");
    api.wait_session(id, Duration::from_secs(180), "the cluster active", |s| {
        cluster_step_names(s).contains(&"active".to_string())
    });
    hypervisor.kill();
    let session = api.wait_final(id, Duration::from_secs(120));
    assert_eq!(state(&session), "failed", "{}", summarize(&session));
    let reason = session["reason"].as_str().unwrap_or("");
    assert!(reason.contains("hypervisor hv-e2e disconnected"), "{reason}");
    assert!(!libvirt_leftovers("pair").is_empty(), "the killed hypervisor cannot have cleaned up");
    // Restarted outside the namespace, as a hypervisor on another host would be.
    let _hypervisor = start_hypervisor(&env.master, &hv_dir, 2, HypervisorPlace::Elsewhere);
    wait_hypervisor(&env.api());
    wait_until(Duration::from_secs(120), "the restarted hypervisor removed what it owned", || {
        let left = libvirt_leftovers("pair");
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });

    // 5. From there, the master's address on the hypervisor's connection is what the VMs
    //    are told (`master.pair.test` → the veth address, not the bridge): they reach it.
    let hypervisors = api.get("/api/hypervisors");
    assert_eq!(hypervisors["hypervisors"][0]["master_ip"], NS_IP, "{hypervisors}");
    let id = api.run("ts_vm_pair");
    let session = api.wait_final(id, Duration::from_secs(420));
    assert_eq!(
        state(&session),
        "passed",
        "{}\n{}\nconsoles:\n{}",
        summarize(&session),
        session["cluster"],
        consoles(&hv_dir)
    );
    assert_eq!(libvirt_leftovers("pair"), Vec::<String>::new());
}
