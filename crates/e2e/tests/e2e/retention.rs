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

/// The snapshot folders of the master's definitions (`state_dir/snapshots/<repo>/<suite>-<hash>`).
fn snapshot_folders(state_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let list = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()
    };
    let mut folders: Vec<_> = list(&state_dir.join("snapshots")).iter().flat_map(|repo| list(repo)).collect();
    folders.sort();
    folders
}

#[test]
fn a_replaced_suite_versions_snapshot_is_pruned_and_the_one_in_service_stays() {
    let suite = Suite::new("ts_snap", &["n1"]).case(Case::new("talk").run("echo version one\n"));
    let options =
        MasterOptions { extra: "[retention]\nkeep_days = 365\nevery = \"1s\"\n".into(), ..MasterOptions::default() };
    let mut env = Env::new(&[suite], options);
    env.start_slaves(&["n1"]);
    let api = env.api();
    let first = api.run("ts_snap");
    assert_eq!(state(&api.wait_final(first, Duration::from_secs(30))), "passed");
    let state_dir = env.master.state_dir();
    let before = snapshot_folders(&state_dir);
    assert_eq!(before.len(), 1, "{before:?}");

    let run_script = env.path().join("definitions/suites/ts_snap/tc/talk/run.sh");
    std::fs::write(&run_script, "echo version two\n").expect("edit the suite");
    wait_until(Duration::from_secs(30), "the old snapshot pruned and the new one made", || {
        let now = snapshot_folders(&state_dir);
        match now.len() == 1 && now != before {
            true => Ok(()),
            false => Err(format!("{now:?}")),
        }
    });
    let second = api.run("ts_snap");
    let session = api.wait_final(second, Duration::from_secs(30));
    assert_eq!(state(&session), "passed", "{}", summarize(&session));
    assert_eq!(api.run_output(&session, "CaseRun", "n1"), "version two");
    assert_eq!(api.run_output(&api.get(&format!("/api/sessions/{first}")), "CaseRun", "n1"), "version one");
    assert!(env.master.log().contains("unused definition snapshots removed"), "the master logs it");
}
