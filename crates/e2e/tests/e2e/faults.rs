//! Faults with real binaries on real network-namespace hosts (docs/faults.md): a partition
//! that blocks TCP between two slaves while it holds and not after `fault_heal`, one that
//! heals by itself before the next stage, a pause seen by the paused host (`ps` state T)
//! and lifted by `fault_resume`, and the dead-man heal: a master killed while a fault holds
//! leaves no rule behind once its reconnect grace has passed.

use std::time::{Duration, Instant};

use xrdtest_e2e::netns::Hosts;
use xrdtest_e2e::{state, summarize, wait_until, Case, Env, MasterOptions, SlaveConfig, Suite};

const PORT: u16 = 18080;

/// Whether this machine can make the hosts and the rules; on CI it must.
fn can_run(test: &str) -> bool {
    let missing = ["ip", "nft", "python3", "ps"]
        .iter()
        .filter(|tool| {
            !std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|t| t.to_string())
        .collect::<Vec<_>>();
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root && missing.is_empty() {
        return true;
    }
    let why = format!("needs root and {missing:?} (scripts/test installs them)");
    if std::env::var_os("CI").is_some() {
        panic!("{test} cannot run on CI: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// A master in the hub and one slave per host, each in its namespace.
fn start(hosts: &Hosts, suites: Vec<Suite>, names: &[&str]) -> Env {
    let options = MasterOptions {
        netns: Some((hosts.hub(), hosts.web_ip())),
        reconnect_grace: "3s".into(),
        ..MasterOptions::default()
    };
    let mut env = Env::build(options, |_| suites);
    for name in names {
        let mut config = SlaveConfig::new(name, &env.master);
        config.master = format!("{}:{}", hosts.hub_ip(), env.master.peer_addr().port());
        config.netns = Some(hosts.netns(name));
        env.start_slave_with(&config);
    }
    env
}

fn xrdtest_tables(hosts: &Hosts, name: &str) -> String {
    let output = hosts.exec(name, "nft list tables");
    String::from_utf8_lossy(&output.stdout).lines().filter(|l| l.contains("xrdtest_f")).collect::<Vec<_>>().join(", ")
}

/// fc listens on PORT while fa, in `body`, checks what reaches it. Signals last the whole
/// session, so each use names its own (`step`).
fn listener_and_checker(step: &str, fc_ip: &str, body: &str) -> String {
    format!(
        "source \"$XRDTEST_FUNCTIONS\"\n\
         set -euo pipefail\n\
         if [ \"$XRDTEST_SLAVE\" = fc ]; then\n\
           python3 -m http.server {PORT} --bind {fc_ip} >/dev/null 2>&1 & srv=$!\n\
           wait_for_port {fc_ip} {PORT} --timeout 10s\n\
           sync_signal {step}_listening\n\
           sync_wait {step}_checked --timeout 60s\n\
           kill $srv\n\
         else\n\
           sync_wait {step}_listening --timeout 30s\n\
           {body}\
           sync_signal {step}_checked\n\
         fi\n"
    )
}

#[test]
fn partitions_block_tcp_until_healed_and_pauses_stop_processes() {
    if !can_run("partitions_block_tcp_until_healed_and_pauses_stop_processes") {
        return;
    }
    let hosts = Hosts::up("xfa", 61, &["fa", "fc"]);
    let fc_ip = hosts.ip("fc");
    let partition = listener_and_checker(
        "partition",
        &fc_ip,
        &format!(
            "wait_for_port {fc_ip} {PORT} --timeout 5s\n\
             fault_partition fa -- fc\n\
             nft list tables | grep xrdtest_f\n\
             if wait_for_port {fc_ip} {PORT} --timeout 1500ms; then\n\
               check partition_blocks fail 'reached fc through the partition'\n\
             else\n\
               check partition_blocks pass\n\
             fi\n\
             fault_heal\n\
             if nft list tables | grep -q xrdtest_f; then check healed_rules_gone fail; fi\n\
             wait_for_port {fc_ip} {PORT} --timeout 5s\n"
        ),
    );
    // Made in run and never healed by the script: gone before the case's finalize.
    let left_on = "source \"$XRDTEST_FUNCTIONS\"\n\
                   if [ \"$XRDTEST_SLAVE\" = fa ]; then fault_partition role:client -- role:server; fi\n";
    let after = listener_and_checker(
        "after",
        &fc_ip,
        &format!(
            "if nft list tables | grep -q xrdtest_f; then check auto_healed fail 'a rule is left'; fi\n\
             wait_for_port {fc_ip} {PORT} --timeout 5s\n"
        ),
    );
    let pause = "source \"$XRDTEST_FUNCTIONS\"\n\
                 set -euo pipefail\n\
                 if [ \"$XRDTEST_SLAVE\" = fc ]; then\n\
                   sleep 4321 & pid=$!\n\
                   sync_signal sleeper\n\
                   sync_wait paused --timeout 30s\n\
                   st=$(ps -o stat= -p $pid)\n\
                   if [[ $st == T* ]]; then check paused pass; else check paused fail \"state $st\"; fi\n\
                   sync_signal seen\n\
                   sync_wait resumed --timeout 30s\n\
                   st=$(ps -o stat= -p $pid)\n\
                   if [[ $st != T* ]]; then check resumed pass; else check resumed fail \"state $st\"; fi\n\
                   kill $pid\n\
                 else\n\
                   sync_wait sleeper --timeout 30s\n\
                   fault_pause --on fc 'sleep 4321'\n\
                   sync_signal paused\n\
                   sync_wait seen --timeout 30s\n\
                   fault_resume\n\
                   sync_signal resumed\n\
                 fi\n";
    let suite = Suite::new("ts_faults", &["fa", "fc"])
        .extra("[roles]\nclient = [\"fa\"]\nserver = [\"fc\"]\n")
        .case(Case::new("partition").run(partition))
        .case(Case::new("heals_itself").run(left_on).finalize(after))
        .case(Case::new("pause").run(pause));
    let env = start(&hosts, vec![suite], &["fa", "fc"]);
    let api = env.api();

    let id = api.run("ts_faults");
    let session = api.wait_final(id, Duration::from_secs(180));
    if state(&session) != "passed" {
        let failed: Vec<String> = ["case_finalize:heals_itself", "case_run:partition", "case_run:pause"]
            .iter()
            .flat_map(|stage| ["fa", "fc"].map(|slave| (stage, slave)))
            .filter(|(stage, slave)| xrdtest_e2e::run_state(&session, stage, slave) != "passed")
            .map(|(stage, slave)| {
                let run = xrdtest_e2e::stage_run(&session, stage, slave);
                format!("{stage} on {slave}:\n{}", api.output(run["stage_id"].as_u64().unwrap_or(0)).join("\n"))
            })
            .collect();
        panic!("{}\n{}", summarize(&session), failed.join("\n"));
    }
    let made = api.run_output(&session, "CaseRun", "fa");
    assert!(made.contains("fault: partition fa -- fc: done"), "{made}");
    assert!(made.contains("table inet xrdtest_f"), "the rule was there while it held: {made}");
    assert!(made.contains("not reachable after"), "the partition blocked the connect: {made}");
    assert!(made.contains("fault: heal: done"), "{made}");
    for name in ["fa", "fc"] {
        assert_eq!(xrdtest_tables(&hosts, name), "", "the session's end leaves no rule on {name}");
    }

    // Every fault is in the session's record, healed, with its targets and parameters.
    let timeline = api.get(&format!("/api/sessions/{id}/timeline"));
    let faults = timeline["faults"].as_array().cloned().unwrap_or_default();
    let described: Vec<String> = faults
        .iter()
        .map(|f| {
            format!("{} {} [{}]", f["kind"].as_str().unwrap_or("?"), f["params"].as_str().unwrap_or("?"), f["targets"])
        })
        .collect();
    assert_eq!(
        described,
        [
            "partition fa -- fc [[\"fa\",\"fc\"]]",
            "partition fa -- fc [[\"fa\",\"fc\"]]",
            "pause fc: sleep 4321 [[\"fc\"]]"
        ],
        "{timeline}"
    );
    for fault in &faults {
        let (started, ended) = (fault["started_unix_ms"].as_u64().unwrap_or(0), fault["ended_unix_ms"].as_u64());
        assert!(ended.is_some_and(|ended| ended >= started && started > 0), "healed: {fault}");
        assert!(fault["error"].is_null(), "{fault}");
    }
    let waits = timeline["waits"].as_array().map(Vec::len).unwrap_or(0);
    assert!(waits >= 8, "the sync waits are kept too: {timeline}");
    // The session page draws them: a fault window per target, a wait mark per wait.
    let page = api.get(&format!("/sessions/{id}"));
    let page = page.as_str().unwrap_or_default();
    assert_eq!(page.matches("class=\"tl-fault\"").count(), 5, "2 + 2 + 1 fault windows");
    assert_eq!(page.matches("class=\"tl-wait\"").count(), waits);
    assert!(
        page.contains(" partition: fa -- fc (") && page.contains(" pause: fc: sleep 4321 ("),
        "fault tooltips: {page}"
    );
    assert!(page.contains("<table id=\"faults\">"), "{page}");
}

#[test]
fn a_fault_heals_itself_when_the_master_is_gone() {
    if !can_run("a_fault_heals_itself_when_the_master_is_gone") {
        return;
    }
    let hosts = Hosts::up("xfb", 62, &["fa", "fc"]);
    let hold = "source \"$XRDTEST_FUNCTIONS\"\n\
                if [ \"$XRDTEST_SLAVE\" = fa ]; then fault_partition fa --until session; fi\n\
                sleep 120\n";
    let suite = Suite::new("ts_fault_deadman", &["fa", "fc"]).case(Case::new("hold").run(hold));
    let mut env = start(&hosts, vec![suite], &["fa", "fc"]);
    let api = env.api();
    api.run("ts_fault_deadman");
    wait_until(Duration::from_secs(60), "the partition on both hosts", || {
        let (a, c) = (xrdtest_tables(&hosts, "fa"), xrdtest_tables(&hosts, "fc"));
        if !a.is_empty() && !c.is_empty() {
            Ok(())
        } else {
            Err(format!("fa: [{a}], fc: [{c}]"))
        }
    });
    env.master.kill();
    let killed = Instant::now();
    wait_until(Duration::from_secs(20), "the dead-man heal on both hosts", || {
        let (a, c) = (xrdtest_tables(&hosts, "fa"), xrdtest_tables(&hosts, "fc"));
        if a.is_empty() && c.is_empty() {
            Ok(())
        } else {
            Err(format!("fa: [{a}], fc: [{c}]"))
        }
    });
    // Not before the dead-man time (the master's reconnect grace, 3 s).
    assert!(killed.elapsed() >= Duration::from_millis(2500), "healed after {:?}", killed.elapsed());
    for slave in &env.slaves {
        let log = slave.log();
        assert!(log.contains("the master is away past the dead-man time"), "{}: {log}", slave.name);
    }
}

/// Needs no namespaces: two slaves on one host share its address, so a partition between
/// them cannot be made. The script ignores the failure and exits 0; its stage fails anyway,
/// with the reason as a failed check, and nothing was applied on either side.
#[test]
fn a_fault_that_cannot_be_made_fails_its_stage() {
    let run = "source \"$XRDTEST_FUNCTIONS\"\n\
               if [ \"$XRDTEST_SLAVE\" = q1 ]; then fault_partition q1 -- q2 || echo \"status $?\"; fi\n\
               exit 0\n";
    let mut env = Env::new(
        &[Suite::new("ts_fault_refused", &["q1", "q2"]).case(Case::new("share").run(run))],
        MasterOptions::default(),
    );
    env.start_slaves(&["q1", "q2"]);
    let api = env.api();
    let id = api.run("ts_fault_refused");
    let session = api.wait_final(id, Duration::from_secs(60));
    assert_eq!(state(&session), "failed", "{}", summarize(&session));
    let output = api.run_output(&session, "CaseRun", "q1");
    assert!(output.contains("share the address 127.0.0.1: a partition between them cannot be made"), "{output}");
    assert!(output.contains("status 1"), "{output}");
    let run = xrdtest_e2e::stage_run(&session, "case_run:share", "q1");
    assert_eq!(run["state"], "failed", "{run}");
    let values = api.get(&format!("/api/stages/{}/values", run["stage_id"]));
    let check = &values["checks"][0];
    assert_eq!((check["name"].as_str(), check["passed"].as_bool()), (Some("fault:partition"), Some(false)), "{values}");
    assert!(check["message"].as_str().is_some_and(|m| m.contains("cannot be made")), "{values}");
    let timeline = api.get(&format!("/api/sessions/{id}/timeline"));
    assert_eq!(timeline["faults"].as_array().map(Vec::len), Some(0), "refused before anything was applied: {timeline}");
}
