//! Sessions on disjoint slaves run at the same time; a session that needs a busy slave
//! queues, in FIFO order, and never overtakes an earlier one for a slave.

use std::time::Duration;

use xrdtest_e2e::{stage_run, state, summarize, Case, Env, MasterOptions, Suite, Value};

fn ms(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("not a time: {value}"))
}

#[test]
fn sessions_on_disjoint_slaves_run_at_the_same_time() {
    let suites = [
        Suite::new("ts_left", &["x1"]).case(Case::new("work").run("sleep 2\n")),
        Suite::new("ts_right", &["x2"]).case(Case::new("work").run("sleep 2\n")),
    ];
    let mut env = Env::new(&suites, MasterOptions::default());
    env.start_slaves(&["x1", "x2"]);
    let api = env.api();
    let left = api.run("ts_left");
    let right = api.run("ts_right");
    let left = api.wait_final(left, Duration::from_secs(30));
    let right = api.wait_final(right, Duration::from_secs(30));
    assert_eq!(state(&left), "passed", "{}", summarize(&left));
    assert_eq!(state(&right), "passed", "{}", summarize(&right));
    let l = stage_run(&left, "case_run:work", "x1");
    let r = stage_run(&right, "case_run:work", "x2");
    let (l_start, l_end, r_start, r_end) =
        (ms(&l["started_ms"]), ms(&l["ended_ms"]), ms(&r["started_ms"]), ms(&r["ended_ms"]));
    assert!(
        l_start < r_end && r_start < l_end,
        "the two runs did not overlap: left {l_start}..{l_end}, right {r_start}..{r_end}"
    );
}

#[test]
fn a_session_needing_a_busy_slave_queues_in_fifo_order() {
    let suites = [
        Suite::new("ts_first", &["q1"]).case(Case::new("work").run("sleep 2\n")),
        Suite::new("ts_both", &["q1", "q2"]).case(Case::new("work").run("sleep 1\n")),
        Suite::new("ts_second", &["q2"]).case(Case::new("work")),
        Suite::new("ts_third", &["q1"]).case(Case::new("work")),
    ];
    let mut env = Env::new(&suites, MasterOptions::default());
    env.start_slaves(&["q1", "q2"]);
    let api = env.api();
    let first = api.run("ts_first");
    api.wait_stage_started(first, "case_run:work", "q1", Duration::from_secs(20));
    // Needs q1 (busy).
    let both = api.run("ts_both");
    // q2 is free, but the earlier `both` waits for it.
    let second = api.run("ts_second");
    // Needs q1, like `both` before it.
    let third = api.run("ts_third");
    for (id, name) in [(both, "both"), (second, "second"), (third, "third")] {
        let session = api.session(id);
        assert_eq!(state(&session), "queued", "{name} while first runs: {}", summarize(&session));
    }
    assert_eq!(state(&api.session(first)), "running", "first still runs while the others were seen queued");

    let [first, both, second, third] =
        [first, both, second, third].map(|id| api.wait_final(id, Duration::from_secs(40)));
    for session in [&first, &both, &second, &third] {
        assert_eq!(state(session), "passed", "{}", summarize(session));
    }
    let started = |s: &Value| ms(&s["started_ms"]);
    let ended = |s: &Value| ms(&s["ended_ms"]);
    assert!(started(&both) >= ended(&first), "both started before first ended");
    assert!(started(&second) >= ended(&both), "second overtook the earlier session waiting for q2");
    assert!(started(&third) >= ended(&both), "third overtook the earlier session waiting for q1");
}
