//! XrdTest's failure rules, checked in the session record and by marker files the scripts
//! write: a failed suite init skips every case; a failed case init skips that case's run only;
//! a failed run fails its case and the session goes on; suite finalize always runs.

use std::path::Path;
use std::time::Duration;

use xrdtest_e2e::{
    case_state, mark, marked, run_state, stage, stage_names, stage_run, state, summarize, Case, Env, MasterOptions,
    Suite,
};

const SLAVES: [&str; 2] = ["f1", "f2"];

/// A script that marks `label` and then fails with `code` on `slave` only.
fn mark_then_fail_on(marks: &Path, label: &str, slave: &str, code: i32) -> String {
    format!(
        "{}if [ \"$XRDTEST_SLAVE\" = {slave} ]; then echo 'failing on purpose'; exit {code}; fi\n",
        mark(marks, label)
    )
}

/// A case whose three scripts mark `<prefix>_<case>_<stage>`.
fn marking_case(marks: &Path, prefix: &str, name: &str) -> Case {
    Case::new(name)
        .init(mark(marks, &format!("{prefix}_{name}_init")))
        .run(mark(marks, &format!("{prefix}_{name}_run")))
        .finalize(mark(marks, &format!("{prefix}_{name}_finalize")))
}

fn suites(dir: &Path) -> Vec<Suite> {
    let marks = dir.join("marks");
    let init_fails = Suite::new("ts_init_fails", &SLAVES)
        .init(mark_then_fail_on(&marks, "a_suite_init", "f2", 1))
        .finalize(mark(&marks, "a_suite_finalize"))
        .case(marking_case(&marks, "a", "c1"))
        .case(marking_case(&marks, "a", "c2"));
    let case_rules = Suite::new("ts_case_rules", &SLAVES)
        .init(mark(&marks, "b_suite_init"))
        .finalize(mark(&marks, "b_suite_finalize"))
        .case(marking_case(&marks, "b", "bad_init").init(mark_then_fail_on(&marks, "b_bad_init_init", "f1", 1)))
        .case(marking_case(&marks, "b", "bad_run").run(mark_then_fail_on(&marks, "b_bad_run_run", "f2", 2)))
        .case(marking_case(&marks, "b", "good"));
    vec![init_fails, case_rules]
}

#[test]
fn failure_rules_hold() {
    let mut env = Env::build(MasterOptions::default(), suites);
    env.start_slaves(&SLAVES);
    let api = env.api();
    let marks = env.marks();
    // Both at once: they need the same slaves, so the second waits for the first.
    let a = api.run("ts_init_fails");
    let b = api.run("ts_case_rules");

    // (a) suite init fails on one slave: no case runs, suite finalize does, session fails.
    let session = api.wait_final(a, Duration::from_secs(60));
    let view = summarize(&session);
    assert_eq!(state(&session), "failed", "{view}");
    assert!(session["reason"].as_str().unwrap_or("").contains("suite initialization failed"), "{view}");
    assert_eq!(run_state(&session, "suite_init", "f1"), "passed", "{view}");
    assert_eq!(run_state(&session, "suite_init", "f2"), "failed", "{view}");
    assert_eq!(stage_run(&session, "suite_init", "f2")["exit_code"], 1, "{view}");
    for name in stage_names(&session).iter().filter(|n| n.starts_with("case_")) {
        let skipped = stage(&session, name)["skipped"].as_str().unwrap_or("").to_string();
        assert!(skipped.contains("suite initialization failed"), "{name} skipped: `{skipped}`; {view}");
        for slave in SLAVES {
            assert_eq!(run_state(&session, name, slave), "skipped", "{name} on {slave}; {view}");
        }
    }
    for case in ["c1", "c2"] {
        assert_eq!(case_state(&session, case), "not_run", "{view}");
        for stage in ["init", "run", "finalize"] {
            for slave in SLAVES {
                assert!(!marked(&marks, &format!("a_{case}_{stage}"), slave), "{case} {stage} ran on {slave}");
            }
        }
    }
    for slave in SLAVES {
        assert_eq!(run_state(&session, "suite_finalize", slave), "passed", "{view}");
        assert!(marked(&marks, "a_suite_finalize", slave), "suite finalize did not run on {slave}");
    }

    let session = api.wait_final(b, Duration::from_secs(60));
    let view = summarize(&session);
    assert_eq!(state(&session), "failed", "{view}");
    assert_eq!(session["reason"], "failed cases: bad_init, bad_run", "{view}");

    // (b) a case's init fails (on f1): its run is skipped everywhere, its finalize runs.
    assert_eq!(run_state(&session, "case_init:bad_init", "f1"), "failed", "{view}");
    assert_eq!(run_state(&session, "case_init:bad_init", "f2"), "passed", "{view}");
    let skipped = stage(&session, "case_run:bad_init")["skipped"].as_str().unwrap_or("").to_string();
    assert!(skipped.contains("initialization of case bad_init failed"), "skipped: `{skipped}`; {view}");
    for slave in SLAVES {
        assert_eq!(run_state(&session, "case_run:bad_init", slave), "skipped", "{view}");
        assert!(!marked(&marks, "b_bad_init_run", slave), "bad_init's run ran on {slave}");
        assert_eq!(run_state(&session, "case_finalize:bad_init", slave), "passed", "{view}");
        assert!(marked(&marks, "b_bad_init_finalize", slave), "bad_init's finalize did not run on {slave}");
    }
    assert_eq!(case_state(&session, "bad_init"), "failed", "{view}");

    // (c) a case's run fails (on f2): the case fails, its finalize and the next case run.
    assert_eq!(run_state(&session, "case_run:bad_run", "f1"), "passed", "{view}");
    assert_eq!(run_state(&session, "case_run:bad_run", "f2"), "failed", "{view}");
    assert_eq!(stage_run(&session, "case_run:bad_run", "f2")["exit_code"], 2, "{view}");
    assert_eq!(case_state(&session, "bad_run"), "failed", "{view}");
    for slave in SLAVES {
        for stage in ["bad_run_finalize", "good_init", "good_run", "good_finalize"] {
            assert!(marked(&marks, &format!("b_{stage}"), slave), "b_{stage} did not run on {slave}");
        }
        for stage in ["case_init:good", "case_run:good", "case_finalize:good"] {
            assert_eq!(run_state(&session, stage, slave), "passed", "{view}");
        }
    }
    assert_eq!(case_state(&session, "good"), "passed", "{view}");

    // (d) suite finalize ran after the failures.
    for slave in SLAVES {
        assert_eq!(run_state(&session, "suite_finalize", slave), "passed", "{view}");
        assert!(marked(&marks, "b_suite_finalize", slave), "suite finalize did not run on {slave}");
    }
}
