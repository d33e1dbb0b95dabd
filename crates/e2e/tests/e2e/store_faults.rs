//! The store under faults, for real: a master whose store fills a small disk (a tmpfs of
//! its own) fails that session with "disk full" and keeps serving, and output damaged on
//! disk reads as marked chunks after a restart while everything else still shows.

use std::fs;
use std::time::Duration;

use xrdtest_e2e::{stage_run, state, summarize, Case, Env, MasterOptions, Suite};

/// A run that prints about 16 MB: more than the 12 MiB disk holds.
const FLOOD: &str = "yes 'xrdtest fills the disk of the store with this line of output....' | head -c 16000000\n";

#[test]
fn a_full_disk_fails_the_session_with_disk_full_and_the_master_keeps_serving() {
    let suites = [
        Suite::new("ts_flood", &["d1"]).case(Case::new("flood").run(FLOOD)),
        Suite::new("ts_small", &["d1"]).case(Case::new("talk").run("seq 1 500\n")),
    ];
    let options = MasterOptions {
        store_tmpfs: Some("12m".into()),
        extra: "store_reserve = \"4MiB\"\n".into(),
        ..MasterOptions::default()
    };
    let mut env = Env::new(&suites, options);
    env.start_slaves(&["d1"]);
    let api = env.api();

    let flood = api.run("ts_flood");
    let session = api.wait_final(flood, Duration::from_secs(120));
    assert_eq!(state(&session), "failed", "{}", summarize(&session));
    let reason = session["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("disk full") && reason.contains("d1"), "the session says why: {}", summarize(&session));
    assert!(
        !env.master.log().contains("peer disconnected"),
        "the slave's connection stays (no reconnect loop):\n{}",
        env.master.log()
    );
    assert_eq!(api.get("/api/sessions?suite=ts_flood")["sessions"][0]["id"], flood, "the master still serves");

    // Still full: the next session fails the same way, and does not hang.
    let small = api.run("ts_small");
    let session = api.wait_final(small, Duration::from_secs(60));
    assert_eq!(state(&session), "failed", "{}", summarize(&session));
    assert!(session["reason"].as_str().unwrap_or_default().contains("disk full"), "{}", summarize(&session));

    // An operator frees the space: sessions pass again, without a restart.
    let flood_stage = stage_run(&api.get(&format!("/api/sessions/{flood}")), "case_run:flood", "d1")["stage_id"]
        .as_u64()
        .expect("the flood's stage id");
    let store = env.master.state_dir().join("store");
    let flood_file = env.master.seen_by_master(&store.join(format!("output/{flood_stage}.out")));
    fs::remove_file(&flood_file).unwrap_or_else(|e| panic!("{}: {e}", flood_file.display()));
    let again = api.run("ts_small");
    let session = api.wait_final(again, Duration::from_secs(60));
    assert_eq!(state(&session), "passed", "{}", summarize(&session));
    let lines = api.run_output(&session, "CaseRun", "d1");
    let expected: Vec<String> = (1..=500).map(|n| n.to_string()).collect();
    assert_eq!(lines, expected.join("\n"), "every line of the session after the space came back");

    // The flood's removed output reads as marked chunks; its page still shows.
    let flood_output = api.output(flood_stage);
    assert!(
        !flood_output.is_empty() && flood_output.iter().all(|l| l.contains("is unreadable in the store")),
        "{:?}",
        flood_output.first()
    );
    let (status, _) = api.request("GET", &format!("/sessions/{flood}"), None).expect("the session page");
    assert_eq!(status, 200);
}

#[test]
fn output_damaged_on_disk_reads_as_marked_chunks_and_the_master_starts_again() {
    // Five pauses make five chunks at least (the slave sends what it has every 50 ms).
    let run = "for i in 1 2 3 4 5; do seq $((i * 1000 - 999)) $((i * 1000)); sleep 0.4; done\n";
    let suites = [Suite::new("ts_damaged", &["c1"]).case(Case::new("count").run(run))];
    let mut env = Env::new(&suites, MasterOptions::default());
    env.start_slaves(&["c1"]);
    let api = env.api();
    let first = api.run("ts_damaged");
    let damaged = api.wait_final(first, Duration::from_secs(60));
    assert_eq!(state(&damaged), "passed", "{}", summarize(&damaged));
    let second = api.run("ts_damaged");
    let intact = api.wait_final(second, Duration::from_secs(60));
    assert_eq!(state(&intact), "passed", "{}", summarize(&intact));

    env.master.kill();
    let stage_id = stage_run(&damaged, "case_run:count", "c1")["stage_id"].as_u64().expect("a stage id");
    let file = env.master.state_dir().join(format!("store/output/{stage_id}.out"));
    let bytes = fs::read(&file).expect("the output file");
    fs::write(&file, &bytes[..bytes.len() / 2]).expect("cut the file in half");
    env.master.restart();

    let api = env.api();
    let lines = api.output(stage_id);
    let first_marker = lines.iter().position(|l| l.contains("is unreadable in the store")).expect("a marked chunk");
    assert!(first_marker > 0, "the chunks before the damage read: {lines:?}");
    let expected: Vec<String> = (1..=first_marker).map(|n| n.to_string()).collect();
    assert_eq!(lines[..first_marker], expected[..], "the readable chunks are whole and in order");
    assert!(lines[first_marker..].iter().all(|l| l.contains("unreadable")), "past the cut, only markers");
    assert_eq!(api.get(&format!("/api/sessions/{first}"))["state"], "passed", "the damaged session's record reads");
    let whole = api.run_output(&intact, "CaseRun", "c1");
    let expected: Vec<String> = (1..=5000).map(|n| n.to_string()).collect();
    assert_eq!(whole, expected.join("\n"), "the other session is untouched");
}
