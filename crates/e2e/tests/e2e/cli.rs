//! Exit codes of `xrdtest run SUITE --wait`: 0 passed, 1 failed, 3 cancelled, 4 could not
//! start, 2 an error of the command itself.

use std::path::Path;
use std::time::Duration;

use xrdtest_e2e::{
    code, describe, mark, marked, run_command, run_state, state, summarize, wait_until, Case, Env, MasterOptions, Proc,
    ScriptReaper, Suite,
};

fn suites(dir: &Path) -> Vec<Suite> {
    let marks = dir.join("marks");
    let pids = dir.join("pids").display().to_string();
    vec![
        Suite::new("ts_pass", &["c1"]).case(Case::new("ok")),
        Suite::new("ts_fail", &["c1"]).case(Case::new("broken").run("echo 'this case fails'; exit 1\n")),
        Suite::new("ts_long", &["c1"])
            .finalize(mark(&marks, "long_suite_finalize"))
            .case(Case::new("long").run(format!("echo $$ >> '{pids}'\nsleep 30\n")))
            .case(Case::new("later").run(mark(&marks, "later_run"))),
        Suite::new("ts_ghost", &["ghost"]).case(Case::new("never")),
    ]
}

#[test]
fn run_wait_exit_codes() {
    let options = MasterOptions { slave_wait: "1s".into(), ..MasterOptions::default() };
    let mut env = Env::build(options, suites);
    let pids_file = env.path().join("pids");
    let _reaper = ScriptReaper(pids_file);
    env.start_slaves(&["c1"]);
    let master = &env.master;
    let limit = Duration::from_secs(40);
    let run = |suite: &str| run_command(master.cli(&["run", suite, "--wait"]), limit);

    // ts_ghost needs a slave that never connects, so it runs beside the others.
    std::thread::scope(|scope| {
        let ghost = scope.spawn(|| run("ts_ghost"));
        let unknown = scope.spawn(|| run("ts_nosuch"));
        let passed = run("ts_pass");
        assert_eq!(code(&passed), Some(0), "{}", describe(&passed));
        let failed = run("ts_fail");
        assert_eq!(code(&failed), Some(1), "{}", describe(&failed));
        assert!(String::from_utf8_lossy(&failed.stdout).contains("this case fails"), "{}", describe(&failed));
        let ghost = ghost.join().expect("the ghost run");
        assert_eq!(code(&ghost), Some(4), "{}", describe(&ghost));
        assert!(String::from_utf8_lossy(&ghost.stdout).contains("slave ghost not connected"), "{}", describe(&ghost));
        let unknown = unknown.join().expect("the unknown-suite run");
        assert_eq!(code(&unknown), Some(2), "{}", describe(&unknown));
        assert!(String::from_utf8_lossy(&unknown.stderr).contains("ts_nosuch"), "{}", describe(&unknown));
    });

    // Cancelled while its run sleeps.
    let mut long =
        Proc::spawn("xrdtest run ts_long", master.cli(&["run", "ts_long", "--wait"]), &env.path().join("cli-long.log"));
    let api = env.api();
    let id = wait_until(Duration::from_secs(20), "the ts_long session", || {
        let list = api.get("/api/sessions?suite=ts_long");
        list["sessions"][0]["id"].as_u64().ok_or_else(|| list.to_string())
    });
    api.wait_stage_started(id, "case_run:long", "c1", Duration::from_secs(20));
    let cancel = run_command(master.cli(&["cancel", &id.to_string()]), limit);
    assert_eq!(code(&cancel), Some(0), "{}", describe(&cancel));
    let status = long.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(3), "xrdtest run ts_long --wait:\n{}", long.log());
    let session = api.session(id);
    let view = summarize(&session);
    assert_eq!(state(&session), "cancelled", "{view}");
    assert_eq!(run_state(&session, "case_run:long", "c1"), "cancelled", "{view}");
    assert_eq!(run_state(&session, "case_init:later", "c1"), "skipped", "{view}");
    assert_eq!(run_state(&session, "suite_finalize", "c1"), "passed", "{view}");
    let marks = env.marks();
    assert!(!marked(&marks, "later_run", "c1"), "a case ran after the cancel");
    assert!(marked(&marks, "long_suite_finalize", "c1"), "suite finalize did not run after the cancel");
}

/// `xrdtest run SUITE --case NAME --skip NAME`: only the chosen cases run, suite init and
/// finalize always; an unknown name is refused with the suite's cases and makes no session.
#[test]
fn run_selects_cases() {
    let select_suites = |dir: &Path| {
        let marks = dir.join("marks");
        vec![Suite::new("ts_pick", &["p1"])
            .init(mark(&marks, "pick_suite_init"))
            .finalize(mark(&marks, "pick_suite_finalize"))
            .case(Case::new("first").run(mark(&marks, "first_run")))
            .case(Case::new("second").run(mark(&marks, "second_run")))
            .case(Case::new("third").run(mark(&marks, "third_run")))]
    };
    let mut env = Env::build(MasterOptions::default(), select_suites);
    env.start_slaves(&["p1"]);
    let master = &env.master;
    let limit = Duration::from_secs(40);
    let api = env.api();

    let unknown = run_command(master.cli(&["run", "ts_pick", "--case", "first", "--skip", "fourth", "--wait"]), limit);
    assert_eq!(code(&unknown), Some(2), "{}", describe(&unknown));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("no case `fourth` in suite `ts_pick`") && stderr.contains("first, second, third"),
        "{stderr}"
    );
    assert_eq!(api.get("/api/sessions")["total"], 0, "a refused selection creates no session");

    let picked = run_command(master.cli(&["run", "ts_pick", "--case", "third", "--case", "first", "--wait"]), limit);
    assert_eq!(code(&picked), Some(0), "{}", describe(&picked));
    let id = api.get("/api/sessions?suite=ts_pick")["sessions"][0]["id"].as_u64().expect("the session");
    let session = api.session(id);
    let cases: Vec<&str> = session["cases"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(cases, ["first", "third"], "{}", summarize(&session));
    let marks = env.marks();
    for (name, ran) in [
        ("pick_suite_init", true),
        ("first_run", true),
        ("second_run", false),
        ("third_run", true),
        ("pick_suite_finalize", true),
    ] {
        assert_eq!(marked(&marks, name, "p1"), ran, "{name}");
    }

    let skipped = run_command(master.cli(&["run", "ts_pick", "--skip", "first", "--skip", "third", "--wait"]), limit);
    assert_eq!(code(&skipped), Some(0), "{}", describe(&skipped));
    assert!(marked(&env.marks(), "second_run", "p1"), "--skip leaves the other cases in");
}
