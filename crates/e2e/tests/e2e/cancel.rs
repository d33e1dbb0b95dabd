//! Cancelling a session: the running stage is killed, the remaining stages are skipped, and
//! suite finalize still runs to its end, even if the session is cancelled again meanwhile.

use std::path::Path;
use std::time::Duration;

use xrdtest_e2e::{
    json, mark, marked, run_state, send_signal, state, summarize, wait_until, Case, Env, MasterOptions, ScriptReaper,
    Suite,
};

fn suites(dir: &Path) -> Vec<Suite> {
    let marks = dir.join("marks");
    let pids = dir.join("pids").display().to_string();
    vec![Suite::new("ts_cancel", &["z1"])
        .finalize(format!("{}sleep 1.5\n{}", mark(&marks, "finalize_started"), mark(&marks, "finalize_ended")))
        .case(Case::new("long").run(format!("echo $$ >> '{pids}'\nsleep 30\n")))
        .case(Case::new("later").run(mark(&marks, "later_run")))]
}

#[test]
fn a_second_cancel_does_not_kill_suite_finalize() {
    let mut env = Env::build(MasterOptions::default(), suites);
    let _reaper = ScriptReaper(env.path().join("pids"));
    env.start_slaves(&["z1"]);
    let api = env.api();
    let marks = env.marks();
    let id = api.run("ts_cancel");
    api.wait_stage_started(id, "case_run:long", "z1", Duration::from_secs(20));
    let cancel = |reason: &str| api.post(&format!("/api/sessions/{id}/cancel"), &json!({ "reason": reason }));
    let (status, answer) = cancel("first cancel");
    assert_eq!(status, 200, "{answer}");
    api.wait_stage_started(id, "suite_finalize", "z1", Duration::from_secs(20));
    wait_until(Duration::from_secs(10), "suite finalize to begin", || {
        if marked(&marks, "finalize_started", "z1") {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    // Cancelled again (or the master stopping) while suite finalize cleans up.
    let (status, answer) = cancel("second cancel");
    assert_eq!(status, 200, "{answer}");

    let session = api.wait_final(id, Duration::from_secs(30));
    let view = summarize(&session);
    assert_eq!(state(&session), "cancelled", "{view}");
    assert_eq!(session["reason"], "first cancel", "{view}");
    assert_eq!(run_state(&session, "case_run:long", "z1"), "cancelled", "{view}");
    assert_eq!(run_state(&session, "case_run:later", "z1"), "skipped", "{view}");
    assert!(!marked(&marks, "later_run", "z1"), "a case ran after the cancel");
    assert_eq!(run_state(&session, "suite_finalize", "z1"), "passed", "{view}");
    assert!(marked(&marks, "finalize_ended", "z1"), "suite finalize was killed");
}

/// A slave that stops reading (SIGSTOP: it reads nothing, answers nothing) freezes neither
/// its session nor the cancel: the session ends `cancelled` once the slave is past its
/// heartbeats and the grace period, and the other slave is free for the next session.
#[test]
fn a_stopped_slave_freezes_neither_its_session_nor_the_cancel() {
    let pids_of = |dir: &Path| dir.join("pids").display().to_string();
    let mut env = Env::build(
        MasterOptions {
            heartbeat_interval: Some("1s".into()),
            reconnect_grace: "2s".into(),
            ..MasterOptions::default()
        },
        |dir| {
            let pids = pids_of(dir);
            vec![
                Suite::new("ts_frozen", &["f1", "f2"])
                    .case(Case::new("long").run(format!("echo $$ >> '{pids}'\nsleep 60\n"))),
                Suite::new("ts_after", &["f2"]).case(Case::new("quick").run("echo fine\n")),
            ]
        },
    );
    let _reaper = ScriptReaper(env.path().join("pids"));
    env.start_slaves(&["f1", "f2"]);
    let api = env.api();
    let id = api.run("ts_frozen");
    api.wait_stage_started(id, "case_run:long", "f1", Duration::from_secs(20));
    api.wait_stage_started(id, "case_run:long", "f2", Duration::from_secs(20));
    let stopped = env.slave("f1").pid();
    send_signal(stopped, "STOP");
    let (status, answer) = api.post(&format!("/api/sessions/{id}/cancel"), &json!({ "reason": "stop it" }));
    assert_eq!(status, 200, "{answer}");
    // Three missed heartbeats (3 s), the grace period (2 s) and suite finalize on f2.
    let session = api.wait_final(id, Duration::from_secs(30));
    send_signal(stopped, "CONT");
    let view = summarize(&session);
    assert_eq!(state(&session), "cancelled", "{view}");
    assert_eq!(run_state(&session, "case_run:long", "f2"), "cancelled", "{view}");
    let after = api.wait_final(api.run("ts_after"), Duration::from_secs(30));
    assert_eq!(state(&after), "passed", "f2 is free again: {}", summarize(&after));
}
