//! Stages are barrier-synchronized: no slave starts stage N+1 before every slave has ended
//! stage N.

use std::collections::BTreeMap;
use std::time::Duration;

use xrdtest_e2e::{stage_names, state, summarize, Case, Env, MasterOptions, Suite};

const SLAVES: [&str; 3] = ["b1", "b2", "b3"];

/// A script that sleeps a random 0-299 ms between a start and an end line in `log`.
fn timed(log: &str, label: &str) -> String {
    format!(
        "echo \"{label} $XRDTEST_SLAVE start $(date +%s%N)\" >> '{log}'\n\
         sleep \"0.$(printf %03d $((RANDOM % 300)))\"\n\
         echo \"{label} $XRDTEST_SLAVE end $(date +%s%N)\" >> '{log}'\n"
    )
}

#[test]
fn no_slave_starts_a_stage_before_every_slave_ended_the_previous_one() {
    let cases = ["c1", "c2", "c3"];
    let mut env = Env::build(MasterOptions::default(), |dir| {
        let log = dir.join("times.log").display().to_string();
        let mut suite =
            Suite::new("ts_barrier", &SLAVES).init(timed(&log, "suite_init")).finalize(timed(&log, "suite_finalize"));
        for case in cases {
            suite = suite.case(
                Case::new(case)
                    .init(timed(&log, &format!("case_init:{case}")))
                    .run(timed(&log, &format!("case_run:{case}")))
                    .finalize(timed(&log, &format!("case_finalize:{case}"))),
            );
        }
        vec![suite]
    });
    let log = env.path().join("times.log");
    env.start_slaves(&SLAVES);
    let api = env.api();
    let id = api.run("ts_barrier");
    let session = api.wait_final(id, Duration::from_secs(60));
    assert_eq!(state(&session), "passed", "{}", summarize(&session));

    // stage -> (starts, ends), in nanoseconds.
    let mut times: BTreeMap<String, (Vec<u128>, Vec<u128>)> = BTreeMap::new();
    let text = std::fs::read_to_string(&log).expect("the scripts wrote their times");
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [stage, slave, what, ns] = words[..] else { panic!("bad line `{line}`") };
        assert!(SLAVES.contains(&slave), "{line}");
        let ns: u128 = ns.parse().unwrap_or_else(|_| panic!("bad time in `{line}`"));
        let entry = times.entry(stage.to_string()).or_default();
        match what {
            "start" => entry.0.push(ns),
            "end" => entry.1.push(ns),
            _ => panic!("bad line `{line}`"),
        }
    }
    let order = stage_names(&session);
    assert_eq!(order.len(), 11, "{order:?}");
    for stage in &order {
        let (starts, ends) = times.get(stage).unwrap_or_else(|| panic!("stage {stage} never ran"));
        assert_eq!((starts.len(), ends.len()), (3, 3), "stage {stage} ran once on each slave");
    }
    for pair in order.windows(2) {
        let last_end = times[&pair[0]].1.iter().max().copied().unwrap_or_default();
        let first_start = times[&pair[1]].0.iter().min().copied().unwrap_or_default();
        assert!(
            first_start > last_end,
            "{} started {} ns before every slave ended {}:\n{text}",
            pair[1],
            last_end - first_start,
            pair[0]
        );
    }
}
