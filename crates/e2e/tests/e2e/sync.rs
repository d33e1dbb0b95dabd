//! Sync primitives for stage scripts with real binaries (docs/sync.md): a signal given in
//! suite init and waited for in that stage and in a later one, a barrier across three
//! slaves ordered by timestamps, publish/subscribe, a wait that fails as soon as its peer's
//! stage failed, and a wait's own timeout. Every wait is said in the stage's output.

use std::time::{Duration, Instant};

use xrdtest_e2e::{state, summarize, Case, Env, MasterOptions, Suite};

const SLAVES: [&str; 3] = ["y1", "y2", "y3"];

/// A line of the script that appends `label SLAVE NANOSECONDS` to `log`.
fn stamp(log: &str, label: &str) -> String {
    format!("echo \"{label} $XRDTEST_SLAVE $(date +%s%N)\" >> '{log}'\n")
}

/// `label slave` → nanoseconds, from the log the scripts wrote.
fn times(log: &std::path::Path) -> std::collections::BTreeMap<(String, String), u128> {
    let text = std::fs::read_to_string(log).expect("the scripts wrote their times");
    text.lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let [label, slave, ns] = words[..] else { panic!("bad line `{line}`") };
            ((label.to_string(), slave.to_string()), ns.parse().unwrap_or_else(|_| panic!("bad time in `{line}`")))
        })
        .collect()
}

#[test]
fn signals_barriers_and_topics_order_the_slaves_of_a_session() {
    let mut env = Env::build(MasterOptions::default(), |dir| {
        let log = dir.join("sync.log").display().to_string();
        let init = format!(
            "source \"$XRDTEST_FUNCTIONS\"\n\
             if [ \"$XRDTEST_SLAVE\" = y1 ]; then\n\
               sleep 1\n\
               {signal_at}\
               sync_signal ready \"addr-of-$XRDTEST_SLAVE\"\n\
             else\n\
               got=$(sync_wait ready)\n\
               {woke_at}\
               [ \"$got\" = addr-of-y1 ] || {{ echo \"wrong value: $got\"; exit 1; }}\n\
             fi\n",
            signal_at = stamp(&log, "signalled"),
            woke_at = stamp(&log, "woke"),
        );
        let run = format!(
            "source \"$XRDTEST_FUNCTIONS\"\n\
             set -e\n\
             # A signal of suite init is still there in a later stage.\n\
             [ \"$(sync_wait ready 1 --timeout 10s)\" = addr-of-y1 ]\n\
             # Arrivals 0.6 s apart, counted from y1's (the slaves' stages start at slightly\n\
             # different times).\n\
             case \"$XRDTEST_SLAVE\" in\n\
               y1) sync_signal y1_in ;;\n\
               y2) sync_wait y1_in >/dev/null; sleep 0.6 ;;\n\
               y3) sync_wait y1_in >/dev/null; sleep 1.2 ;;\n\
             esac\n\
             {arrived}\
             sync_barrier up\n\
             {left}\
             if [ \"$XRDTEST_SLAVE\" = y2 ]; then sync_publish leader y2; fi\n\
             leader=$(sync_subscribe leader)\n\
             [ \"$leader\" = y2 ] || {{ echo \"wrong leader: $leader\"; exit 1; }}\n\
             # A barrier used again counts a new round.\n\
             sync_barrier up --count 3 --timeout 20s\n\
             # Roles: in the environment, as a tag, and as a count.\n\
             echo \"roles: [$XRDTEST_ROLES] [@roles@]\"\n\
             if [[ \" $XRDTEST_ROLES \" == *\" worker \"* ]]; then sync_barrier workers --count role:worker --timeout 10s; fi\n",
            arrived = stamp(&log, "arrived"),
            left = stamp(&log, "left"),
        );
        vec![Suite::new("ts_sync", &SLAVES)
            .extra("[roles]\nworker = [\"y2\", \"y3\"]\nleader = [\"y2\"]\n")
            .init(init)
            .case(Case::new("rendezvous").run(run))]
    });
    let log = env.path().join("sync.log");
    env.start_slaves(&SLAVES);
    let api = env.api();
    let id = api.run("ts_sync");
    let session = api.wait_final(id, Duration::from_secs(90));
    assert_eq!(state(&session), "passed", "{}", summarize(&session));

    let t = times(&log);
    let at = |label: &str, slave: &str| t[&(label.to_string(), slave.to_string())];
    for waiter in ["y2", "y3"] {
        assert!(at("woke", waiter) >= at("signalled", "y1"), "{waiter} woke before y1 signalled: {t:?}");
    }
    let last_arrival = SLAVES.iter().map(|s| at("arrived", s)).max().unwrap();
    for slave in SLAVES {
        assert!(at("left", slave) >= last_arrival, "{slave} left the barrier before the last arrival: {t:?}");
    }
    assert!(
        at("left", "y1") - at("arrived", "y1") >= 1_000_000_000,
        "y1 came first and waited about 1.2 s for y3: {t:?}"
    );

    let waited = api.run_output(&session, "SuiteInit", "y3");
    assert!(waited.contains("sync: wait ready (1): done after"), "{waited}");
    assert!(waited.contains("from y1"), "{waited}");
    let barrier = api.run_output(&session, "CaseRun", "y1");
    assert!(barrier.contains("sync: barrier up (all): done after 1."), "{barrier}");
    assert!(barrier.contains("from y1 y2 y3"), "{barrier}");
    let published = api.run_output(&session, "CaseRun", "y2");
    assert!(published.contains("sync: publish leader"), "{published}");
    assert!(published.contains("roles: [leader worker] [leader worker]"), "{published}");
    assert!(published.contains("sync: barrier workers (role:worker): done after"), "{published}");
    // In the order they arrived.
    assert!(published.contains("from y2 y3") || published.contains("from y3 y2"), "{published}");
    let y1 = api.run_output(&session, "CaseRun", "y1");
    assert!(y1.contains("roles: [] []") && !y1.contains("barrier workers"), "{y1}");
}

#[test]
fn a_wait_fails_fast_when_its_peer_fails_and_at_its_own_timeout() {
    let mut env = Env::new(
        &[
            Suite::new("ts_sync_fail", &["z1", "z2"]).case(Case::new("peer_fails").run(
                "source \"$XRDTEST_FUNCTIONS\"\n\
                 if [ \"$XRDTEST_SLAVE\" = z1 ]; then echo 'z1 gives up'; exit 3; fi\n\
                 sync_wait never_given --timeout 120s\n",
            )),
            Suite::new("ts_sync_timeout", &["z1", "z2"]).case(Case::new("too_slow").run(
                "source \"$XRDTEST_FUNCTIONS\"\n\
                 if [ \"$XRDTEST_SLAVE\" = z1 ]; then sleep 4; sync_signal late; exit 0; fi\n\
                 sync_wait late --timeout 1s\n",
            )),
        ],
        MasterOptions::default(),
    );
    env.start_slaves(&["z1", "z2"]);
    let api = env.api();

    let started = Instant::now();
    let id = api.run("ts_sync_fail");
    let session = api.wait_final(id, Duration::from_secs(150));
    let took = started.elapsed();
    assert_eq!(state(&session), "failed", "{}", summarize(&session));
    assert!(took < Duration::from_secs(60), "the wait did not fail fast: {took:?}");
    let text = api.run_output(&session, "CaseRun", "z2");
    assert!(
        text.contains(
            "sync: wait never_given (1): failed: signal never_given (1): cannot be met, 0 of 1 and no other slave of the session is running a stage"
        ),
        "{text}"
    );

    let id = api.run("ts_sync_timeout");
    let session = api.wait_final(id, Duration::from_secs(60));
    assert_eq!(state(&session), "failed", "{}", summarize(&session));
    let text = api.run_output(&session, "CaseRun", "z2");
    assert!(text.contains("timed out after 1.0 s with 0 of 1"), "{text}");
}
