//! The master killed mid-session and started again on the same state: the session it ran is
//! `Interrupted`, the history is still there, and work goes on.

use std::path::Path;
use std::time::Duration;

use xrdtest_e2e::{
    mark, marked, pid_alive, read_pids, run_state, send_signal, state, summarize, wait_until, Case, Env, MasterOptions,
    ScriptReaper, Suite,
};

fn suites(dir: &Path) -> Vec<Suite> {
    let pids = dir.join("pids").display().to_string();
    vec![
        Suite::new("ts_quick", &["r1"]).case(Case::new("noop")),
        Suite::new("ts_long", &["r1"])
            .case(Case::new("long").run(format!("echo $$ >> '{pids}'\necho started\nsleep 30\n"))),
    ]
}

#[test]
fn a_master_killed_mid_session_marks_it_interrupted_and_keeps_history() {
    let mut env = Env::build(MasterOptions::default(), suites);
    let pids_file = env.path().join("pids");
    let _reaper = ScriptReaper(pids_file.clone());
    env.start_slaves(&["r1"]);
    let api = env.api();
    let first = api.run("ts_quick");
    let done = api.wait_final(first, Duration::from_secs(30));
    assert_eq!(state(&done), "passed", "{}", summarize(&done));

    let second = api.run("ts_long");
    api.wait_stage_started(second, "case_run:long", "r1", Duration::from_secs(30));
    let script = wait_until(Duration::from_secs(10), "the long script's pid", || {
        read_pids(&pids_file).first().copied().ok_or_else(|| "no pid yet".to_string())
    });
    env.master.kill();
    env.master.restart();

    let api = env.api();
    let interrupted = api.session(second);
    assert_eq!(state(&interrupted), "interrupted", "{}", summarize(&interrupted));
    assert!(interrupted["reason"].as_str().unwrap_or("").contains("master stopped"), "{interrupted}");
    assert!(!interrupted["ended_ms"].is_null());
    let kept = api.session(first);
    assert_eq!(kept, done, "the finished session is unchanged");
    let list = api.get("/api/sessions");
    let ids: Vec<u64> = list["sessions"].as_array().into_iter().flatten().filter_map(|s| s["id"].as_u64()).collect();
    assert_eq!(ids, vec![second, first], "{list}");

    // The slave comes back; the master no longer wants the stage it still runs: killed.
    api.wait_connected(&["r1"], Duration::from_secs(20));
    wait_until(Duration::from_secs(10), "the interrupted stage's script to be killed", || {
        if pid_alive(script) {
            Err(format!("{script} still runs"))
        } else {
            Ok(())
        }
    });
    // And new sessions run, numbered after the old ones.
    let third = api.run("ts_quick");
    assert!(third > second, "session ids go on: {third} after {second}");
    let session = api.wait_final(third, Duration::from_secs(30));
    assert_eq!(state(&session), "passed", "{}", summarize(&session));
}

fn stop_suites(dir: &Path) -> Vec<Suite> {
    let marks = dir.join("marks");
    let pids = dir.join("pids").display().to_string();
    vec![Suite::new("ts_stop", &["r2"])
        .finalize(format!("sleep 0.5\n{}", mark(&marks, "suite_finalize")))
        .case(Case::new("long").run(format!("echo $$ >> '{pids}'\nsleep 30\n")))]
}

#[test]
fn a_master_stopped_with_sigterm_cancels_its_sessions_cleanly() {
    let mut env = Env::build(MasterOptions::default(), stop_suites);
    let pids_file = env.path().join("pids");
    let _reaper = ScriptReaper(pids_file.clone());
    env.start_slaves(&["r2"]);
    let api = env.api();
    let id = api.run("ts_stop");
    api.wait_stage_started(id, "case_run:long", "r2", Duration::from_secs(30));
    let script = wait_until(Duration::from_secs(10), "the long script's pid", || {
        read_pids(&pids_file).first().copied().ok_or_else(|| "no pid yet".to_string())
    });

    // systemd and `kill` stop daemons with SIGTERM.
    send_signal(env.master.proc().pid(), "TERM");
    let status = env.master.proc().wait_exit(Duration::from_secs(40));
    assert!(status.success(), "the master exited with {status}:\n{}", env.master.log());
    assert!(marked(&env.marks(), "suite_finalize", "r2"), "suite finalize did not run before the master stopped");
    assert!(!pid_alive(script), "the running stage was not killed");

    env.master.restart();
    let session = env.api().session(id);
    let view = summarize(&session);
    assert_eq!(state(&session), "cancelled", "{view}");
    assert!(session["reason"].as_str().unwrap_or("").contains("shutting down"), "{view}");
    assert_eq!(run_state(&session, "case_run:long", "r2"), "cancelled", "{view}");
    assert_eq!(run_state(&session, "suite_finalize", "r2"), "passed", "{view}");
}
