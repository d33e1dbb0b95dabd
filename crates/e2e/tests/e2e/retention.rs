//! Retention for real: `[retention]` in master.toml prunes finished sessions in the
//! background, with their output files, and spares the ones marked keep.

use std::time::Duration;

use serde_json::json;
use xrdtest_e2e::{state, summarize, wait_until, Case, Env, MasterOptions, Suite};

#[test]
fn the_last_n_per_suite_stay_and_a_kept_session_is_never_pruned() {
    let suite = Suite::new("ts_keep", &["r1"]).case(Case::new("talk").run("seq 1 2000\n"));
    let options =
        MasterOptions { extra: "[retention]\nkeep_per_suite = 2\nevery = \"1s\"\n".into(), ..MasterOptions::default() };
    let mut env = Env::new(&[suite], options);
    env.start_slaves(&["r1"]);
    let api = env.api();
    let first = api.run("ts_keep");
    let session = api.wait_final(first, Duration::from_secs(30));
    assert_eq!(state(&session), "passed", "{}", summarize(&session));
    let (status, answer) = api.post(&format!("/api/sessions/{first}/keep"), &json!({ "keep": true }));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(api.get(&format!("/api/sessions/{first}"))["keep"], true);
    let mut ids = vec![first];
    let mut output_file = None;
    for _ in 0..3 {
        let id = api.run("ts_keep");
        let session = api.wait_final(id, Duration::from_secs(30));
        ids.push(id);
        if ids.len() == 2 {
            // Its case_run's output, while it is still among the newest two.
            let stage_id = session["stages"][2]["runs"][0]["stage_id"].as_u64().expect("a stage id");
            let path = env.master.state_dir().join(format!("store/output/{stage_id}.out"));
            assert!(path.is_file(), "{} before pruning", path.display());
            output_file = Some(path);
        }
    }
    let second = ids[1];
    let output_file = output_file.expect("the second session's output file");
    wait_until(Duration::from_secs(20), "the second session pruned", || {
        let listed = api.get("/api/sessions?suite=ts_keep&limit=50");
        let left: Vec<u64> =
            listed["sessions"].as_array().into_iter().flatten().filter_map(|s| s["id"].as_u64()).collect();
        if left.contains(&second) {
            Err(format!("{left:?}"))
        } else {
            Ok(())
        }
    });
    let listed = api.get("/api/sessions?suite=ts_keep&limit=50");
    let mut left: Vec<u64> =
        listed["sessions"].as_array().into_iter().flatten().filter_map(|s| s["id"].as_u64()).collect();
    left.sort_unstable();
    assert_eq!(left, [first, ids[2], ids[3]], "the kept one and the newest two stay");
    assert!(!output_file.exists(), "the pruned session's output file is gone");
    let (status, _) = api.post(&format!("/api/sessions/{second}/keep"), &json!({}));
    assert_eq!(status, 404, "a pruned session is gone for the API too");
    let store = api.get("/api/store");
    assert!(store["bytes"].as_u64().unwrap_or(0) > 0, "{store}");
    assert_eq!(store["retention"]["keep_per_suite"], 2, "{store}");
    assert!(env.master.log().contains("retention: sessions pruned"), "the master logs what it pruned");
}
