//! A stage past its timeout is killed with everything it started in the background.

use std::path::Path;
use std::time::Duration;

use xrdtest_e2e::{
    case_state, mark, marked, pid_alive, read_pids, run_state, stage_run, state, summarize, wait_until, Case, Env,
    MasterOptions, ScriptReaper, Suite,
};

fn suites(dir: &Path) -> Vec<Suite> {
    let marks = dir.join("marks");
    let pids = dir.join("pids").display().to_string();
    let hang = format!(
        "echo $$ >> '{pids}'\n\
         sleep 1000 &\n\
         echo $! >> '{pids}'\n\
         ( sleep 1000; echo never ) &\n\
         echo $! >> '{pids}'\n\
         echo 'children started'\n\
         sleep 1000\n"
    );
    vec![Suite::new("ts_timeout", &["t1"])
        .finalize(mark(&marks, "suite_finalize"))
        .case(Case::new("hang").run(hang).finalize(mark(&marks, "hang_finalize")).stage_timeout("2s"))
        .case(Case::new("after").run(mark(&marks, "after_run")))]
}

#[test]
fn a_stage_past_its_timeout_is_killed_with_its_children() {
    let mut env = Env::build(MasterOptions::default(), suites);
    env.start_slaves(&["t1"]);
    let api = env.api();
    let pids_file = env.path().join("pids");
    let id = api.run("ts_timeout");
    let _reaper = ScriptReaper(pids_file.clone());

    let session = api.wait_final(id, Duration::from_secs(60));
    let view = summarize(&session);
    let run = stage_run(&session, "case_run:hang", "t1");
    assert_eq!(run["state"], "timed_out", "{view}");
    assert!(run["reason"].as_str().unwrap_or("").contains("timeout"), "{run}");
    let took = run["ended_ms"].as_u64().unwrap_or(0).saturating_sub(run["started_ms"].as_u64().unwrap_or(0));
    assert!((1900..15000).contains(&took), "the run took {took} ms with a 2 s timeout");
    assert_eq!(xrdtest_e2e::stage(&session, "case_run:hang")["timeout_ms"], 2000, "case.toml's stage_timeout applies");
    assert_eq!(case_state(&session, "hang"), "failed", "{view}");
    // The session went on: the case's finalize, the next case, suite finalize.
    assert_eq!(run_state(&session, "case_finalize:hang", "t1"), "passed", "{view}");
    assert_eq!(run_state(&session, "case_run:after", "t1"), "passed", "{view}");
    assert_eq!(case_state(&session, "after"), "passed", "{view}");
    let marks = env.marks();
    for label in ["hang_finalize", "after_run", "suite_finalize"] {
        assert!(marked(&marks, label, "t1"), "{label} did not run");
    }
    assert_eq!(state(&session), "failed", "{view}");

    let pids = read_pids(&pids_file);
    assert_eq!(pids.len(), 3, "bash and its two background children recorded their pids: {pids:?}");
    wait_until(Duration::from_secs(5), "the timed-out script and its children to be gone", || {
        let alive: Vec<u32> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
        if alive.is_empty() {
            Ok(())
        } else {
            Err(format!("still alive: {alive:?}"))
        }
    });
}
