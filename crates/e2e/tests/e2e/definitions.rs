//! Watched local definitions and the cron scheduler, through the real master.

use std::time::Duration;

use xrdtest_e2e::*;

fn suites_dir(env: &Env) -> std::path::PathBuf {
    env.path().join("definitions/suites")
}

/// The suites the master serves, and its definition errors.
fn served(env: &Env) -> (Vec<String>, Vec<serde_json::Value>) {
    let answer = env.api().get("/api/suites");
    let names = answer["suites"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str().map(String::from))
        .collect();
    (names, answer["errors"].as_array().cloned().unwrap_or_default())
}

#[test]
fn editing_a_local_suite_reloads_it_and_a_broken_one_keeps_serving_its_last_good_version() {
    let mut env = Env::build(MasterOptions::default(), |dir| {
        let marks = dir.join("marks");
        vec![Suite::new("ts_edit", &["w1"]).case(Case::new("c").run(format!("echo v1 > {}/version\n", marks.display())))]
    });
    env.start_slaves(&["w1"]);
    let api = env.api();
    let marks = env.marks();
    let run_and_read = |api: &Api| {
        let id = api.run("ts_edit");
        let session = api.wait_final(id, Duration::from_secs(30));
        assert_eq!(state(&session), "passed", "{}", summarize(&session));
        std::fs::read_to_string(marks.join("version")).unwrap_or_default()
    };
    assert_eq!(run_and_read(&api), "v1\n");

    // Several quick writes: one debounced reload serves the new script.
    let run_sh = suites_dir(&env).join("ts_edit/tc/c/run.sh");
    let reloads_before = env.master.log().matches("definitions reloaded").count();
    for n in 0..5 {
        std::fs::write(&run_sh, format!("# edit {n}\necho v2 > {}/version\n", marks.display())).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_until(Duration::from_secs(10), "the edit to be reloaded", || {
        let reloads = env.master.log().matches("definitions reloaded").count();
        if reloads > reloads_before {
            Ok(reloads)
        } else {
            Err(format!("{reloads} reloads"))
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    let reloads = env.master.log().matches("definitions reloaded").count() - reloads_before;
    assert!(reloads <= 2, "a burst of 5 writes reloaded {reloads} times: not debounced");
    assert_eq!(run_and_read(&api), "v2\n");

    // Broken: the error shows with file and field, and the last good version still runs.
    let suite_toml = suites_dir(&env).join("ts_edit/suite.toml");
    let good = std::fs::read_to_string(&suite_toml).unwrap();
    std::fs::write(&suite_toml, format!("{good}alert_failure = \"LOUD\"\n")).unwrap();
    std::fs::write(&run_sh, format!("echo v3 > {}/version\n", marks.display())).unwrap();
    let errors = wait_until(Duration::from_secs(10), "the error to show", || {
        let (_, errors) = served(&env);
        if errors.iter().any(|e| e["field"] == "alert_failure") {
            Ok(errors)
        } else {
            Err(format!("{errors:?}"))
        }
    });
    let error = errors.iter().find(|e| e["field"] == "alert_failure").unwrap();
    assert!(error["file"].as_str().unwrap().ends_with("ts_edit/suite.toml"), "{error}");
    assert!(error["message"].as_str().unwrap().contains("LOUD"), "{error}");
    assert!(served(&env).0.contains(&"ts_edit".to_string()), "the last good version keeps serving");
    assert_eq!(run_and_read(&api), "v2\n", "the last good version runs, with its own scripts");

    // Deleted: no longer served.
    std::fs::remove_dir_all(suites_dir(&env).join("ts_edit")).unwrap();
    wait_until(Duration::from_secs(10), "the deleted suite to go", || {
        let (names, _) = served(&env);
        if names.is_empty() {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });
}

#[test]
fn schedules_fire_on_their_seconds_and_overlapping_runs_are_skipped_and_counted() {
    let mut env = Env::build(MasterOptions::default(), |_| {
        vec![
            Suite::new("ts_even", &["k1"]).schedule("*/2 * * * * *").case(Case::new("c")),
            Suite::new("ts_slow", &["k2"]).schedule("* * * * * *").case(Case::new("c").run("sleep 2.5\n")),
        ]
    });
    env.start_slaves(&["k1", "k2"]);
    let api = env.api();
    let schedules = api.get("/api/suites")["schedules"].clone();
    let next = schedules["ts_even"]["next_run_ms"].as_i64().expect("a next run");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(next > now - 100 && next <= now + 2100, "next run {next} vs now {now}");
    assert_eq!(next % 2000, 0, "an even second");

    let sessions = wait_until(Duration::from_secs(15), "three scheduled runs of ts_even", || {
        let list = api.get("/api/sessions?suite=ts_even&limit=50");
        let sessions = list["sessions"].as_array().cloned().unwrap_or_default();
        if sessions.len() >= 3 {
            Ok(sessions)
        } else {
            Err(format!("{} sessions", sessions.len()))
        }
    });
    for session in &sessions {
        assert_eq!(session["trigger"], "schedule");
        let created = session["created_ms"].as_u64().unwrap();
        // Fired at the even second: in the first half of the 2 s period (loose for loaded CI).
        assert!(
            created % 2000 < 1000,
            "session {} created at {created} (ms into the 2 s period: {})",
            session["id"],
            created % 2000
        );
    }

    // ts_slow wants a run every second but takes 2.5 s: runs are skipped, counted, and
    // its sessions never overlap.
    let skipped = wait_until(Duration::from_secs(15), "skipped runs of ts_slow", || {
        let skipped = api.get("/api/suites")["schedules"]["ts_slow"]["skipped_runs"].as_u64().unwrap_or(0);
        if skipped >= 2 {
            Ok(skipped)
        } else {
            Err(format!("{skipped} skipped"))
        }
    });
    assert!(skipped >= 2);
    assert!(env.master.log().contains("scheduled run skipped"));
    let slow = api.get("/api/sessions?suite=ts_slow&limit=50")["sessions"].as_array().cloned().unwrap_or_default();
    let mut intervals: Vec<(u64, u64)> = slow
        .iter()
        .filter_map(|s| Some((s["created_ms"].as_u64()?, s["ended_ms"].as_u64().unwrap_or(u64::MAX))))
        .collect();
    intervals.sort();
    for pair in intervals.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "ts_slow sessions overlap: {pair:?}");
    }
}
