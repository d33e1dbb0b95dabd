//! Session plans with real binaries: parameters reaching scripts, a matrix and a range
//! sweep expanding into instances with their own tags, repeats, a soak bounded by time, a
//! flaky case (a counter file makes it fail once), exit-first, the suite's own fields, and
//! `xrdtest plan`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use xrdtest_e2e::{code, describe, mark, marked, run_command, summarize, Case, Env, MasterOptions, Suite};

/// A line a script appends to `<dir>/<file>`: the case instance and the tags named.
fn record_line(dir: &Path, file: &str, tags: &[&str]) -> String {
    let values: Vec<String> = tags.iter().map(|t| format!("{t}=@{t}@")).collect();
    format!("echo \"$XRDTEST_CASE {}\" >> '{}/{file}'\n", values.join(" "), dir.display())
}

fn lines(dir: &Path, file: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(file)).unwrap_or_default().lines().map(str::to_string).collect()
}

fn cases(session: &Value) -> Vec<(String, String, u64, u64)> {
    session["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_string(),
                c["state"].as_str().unwrap_or("").to_string(),
                c["repetition"].as_u64().unwrap_or(0),
                c["attempts"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn plan_suites(dir: &Path) -> Vec<Suite> {
    let marks = dir.join("marks");
    let counter = marks.join("flaky.count");
    vec![
        Suite::new("ts_matrix", &["p1"])
            .extra("[tags]\ngreeting = \"hello\"")
            .case(
                Case::new("greet")
                    .run(record_line(&marks, "greet.log", &["greeting", "size"]))
                    .extra("[tags]\nsize = \"none\""),
            )
            .case(
                Case::new("copy")
                    .run(record_line(&marks, "copy.log", &["greeting", "size", "mode"]))
                    .extra("[matrix]\nmode = [\"sync\", \"async\"]\nsize = [1, 64, 1024]"),
            )
            .case(
                Case::new("sweep")
                    .run(record_line(&marks, "sweep.log", &["size"]))
                    .extra("[matrix]\nsize = { from = 1, to = 1000, samples = 4, scale = \"log\" }"),
            ),
        Suite::new("ts_flaky", &["p1"]).finalize(mark(&marks, "flaky_suite_finalize")).case(Case::new("steady")).case(
            Case::new("wobbly").run(format!(
                "n=$(( $(cat '{c}' 2>/dev/null || echo 0) + 1 )); echo $n > '{c}'\n\
                 echo \"attempt $n\"\n[ $n -ge 2 ]\n",
                c = counter.display()
            )),
        ),
        Suite::new("ts_first", &["p1"])
            .finalize(mark(&marks, "first_suite_finalize"))
            .case(Case::new("one").run(mark(&marks, "one_run")))
            .case(Case::new("two").run("echo 'two fails'; exit 1\n"))
            .case(Case::new("three").run(mark(&marks, "three_run"))),
        Suite::new("ts_loop", &["p1"])
            .extra("repeat = 2\nretries = 1")
            .case(Case::new("tick").run(format!("echo tick >> '{}/loop.log'\nsleep 0.4\n", marks.display()))),
    ]
}

/// Parameters, case tags and a 2×3 matrix and a range sweep, as the scripts see them.
#[test]
fn parameters_and_matrices_reach_the_scripts() {
    let mut env = Env::build(MasterOptions::default(), plan_suites);
    env.start_slaves(&["p1"]);
    let master = &env.master;
    let api = env.api();
    let limit = Duration::from_secs(60);

    let unknown = run_command(master.cli(&["run", "ts_matrix", "--param", "colour=red", "--wait"]), limit);
    assert_eq!(code(&unknown), Some(2), "{}", describe(&unknown));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("unknown parameter `colour`") && stderr.contains("greeting, mode, size"), "{stderr}");
    let instance = run_command(master.cli(&["run", "ts_matrix", "--case", "copy[size=2,mode=sync]"]), limit);
    assert_eq!(code(&instance), Some(2), "{}", describe(&instance));
    assert!(
        String::from_utf8_lossy(&instance.stderr).contains("its instances are: copy[mode=sync,size=1]"),
        "{}",
        describe(&instance)
    );
    assert_eq!(api.get("/api/sessions")["total"], 0, "refused requests create no session");

    let ran = run_command(master.cli(&["run", "ts_matrix", "--param", "greeting=bonjour", "--wait"]), limit);
    assert_eq!(code(&ran), Some(0), "{}", describe(&ran));
    let id = api.get("/api/sessions?suite=ts_matrix")["sessions"][0]["id"].as_u64().expect("the session");
    let session = api.session(id);
    let names: Vec<String> = cases(&session).into_iter().map(|c| c.0).collect();
    assert_eq!(
        names,
        [
            "greet",
            "copy[mode=sync,size=1]",
            "copy[mode=sync,size=64]",
            "copy[mode=sync,size=1024]",
            "copy[mode=async,size=1]",
            "copy[mode=async,size=64]",
            "copy[mode=async,size=1024]",
            "sweep[size=1]",
            "sweep[size=10]",
            "sweep[size=100]",
            "sweep[size=1000]",
        ],
        "{}",
        summarize(&session)
    );
    assert_eq!(session["options"]["params"], serde_json::json!([["greeting", "bonjour"]]));
    let marks = env.marks();
    assert_eq!(lines(&marks, "greet.log"), ["greet greeting=bonjour size=none"], "the case's tag, the parameter");
    assert_eq!(
        lines(&marks, "copy.log"),
        [
            "copy[mode=sync,size=1] greeting=bonjour size=1 mode=sync",
            "copy[mode=sync,size=64] greeting=bonjour size=64 mode=sync",
            "copy[mode=sync,size=1024] greeting=bonjour size=1024 mode=sync",
            "copy[mode=async,size=1] greeting=bonjour size=1 mode=async",
            "copy[mode=async,size=64] greeting=bonjour size=64 mode=async",
            "copy[mode=async,size=1024] greeting=bonjour size=1024 mode=async",
        ],
        "one run per instance, in declared order, each with its values as tags"
    );
    assert_eq!(
        lines(&marks, "sweep.log"),
        ["sweep[size=1] size=1", "sweep[size=10] size=10", "sweep[size=100] size=100", "sweep[size=1000] size=1000"]
    );

    // One instance, by its name; the plan shows what would run without running it.
    let one = run_command(master.cli(&["run", "ts_matrix", "--case", "copy[mode=async,size=64]", "--wait"]), limit);
    assert_eq!(code(&one), Some(0), "{}", describe(&one));
    assert_eq!(lines(&marks, "copy.log").len(), 7);
    let sessions_before = api.get("/api/sessions")["total"].clone();
    let plan = run_command(master.cli(&["plan", "ts_matrix", "--case", "copy", "--retries", "2"]), limit);
    assert_eq!(code(&plan), Some(0), "{}", describe(&plan));
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("case_run:copy[mode=async,size=1024]") && text.contains("≤3"), "{text}");
    assert!(text.contains("slaves: p1"), "{text}");
    let json = run_command(master.cli(&["--json", "plan", "ts_matrix", "--case", "sweep"]), limit);
    let view: Value = serde_json::from_slice(&json.stdout).expect("plan JSON");
    let stages: Vec<&str> = view["stages"].as_array().unwrap().iter().filter_map(|s| s["stage"].as_str()).collect();
    assert_eq!(stages.len(), 1 + 4 * 2, "{stages:?}");
    assert_eq!(view["stages"][2]["tags"]["size"], "1");
    assert_eq!(api.get("/api/sessions")["total"], sessions_before, "a plan creates no session");
}

/// A case that fails once and passes when run again is flaky: the session passes, the CLI
/// prints FLAKY and exits 0, and both attempts are stored and readable. Exit-first stops
/// after the first failed case; suite finalize still runs.
#[test]
fn retries_make_a_flaky_case_and_exit_first_stops_early() {
    let mut env = Env::build(MasterOptions::default(), plan_suites);
    env.start_slaves(&["p1"]);
    let master = &env.master;
    let api = env.api();
    let limit = Duration::from_secs(60);

    let flaky = run_command(master.cli(&["run", "ts_flaky", "--retries", "2", "--wait"]), limit);
    assert_eq!(code(&flaky), Some(0), "{}", describe(&flaky));
    let stdout = String::from_utf8_lossy(&flaky.stdout);
    assert!(stdout.contains(": FLAKY") && stdout.contains("flaky cases: wobbly"), "{stdout}");
    let id = api.get("/api/sessions?suite=ts_flaky")["sessions"][0]["id"].as_u64().expect("the session");
    let session = api.session(id);
    assert_eq!(session["state"], "passed", "{}", summarize(&session));
    assert_eq!(
        cases(&session),
        [("steady".into(), "passed".into(), 1, 1), ("wobbly".into(), "flaky".into(), 1, 2)],
        "{}",
        summarize(&session)
    );
    let runs: Vec<(u64, String, u64)> = session["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["stage"]["CaseRun"]["case"] == "wobbly")
        .map(|s| {
            (
                s["attempt"].as_u64().unwrap(),
                s["runs"][0]["state"].as_str().unwrap().to_string(),
                s["runs"][0]["stage_id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(runs.iter().map(|r| (r.0, r.1.as_str())).collect::<Vec<_>>(), [(1, "failed"), (2, "passed")]);
    for (attempt, _, stage_id) in &runs {
        let output = api.get(&format!("/api/stages/{stage_id}/output"));
        let text: Vec<&str> = output["lines"].as_array().unwrap().iter().filter_map(|l| l["text"].as_str()).collect();
        assert_eq!(text, [format!("attempt {attempt}")], "attempt {attempt}'s output is kept");
    }
    let summary = &api.get("/api/sessions?suite=ts_flaky")["sessions"][0];
    assert_eq!(summary["cases_flaky"], 1);

    let first = run_command(master.cli(&["run", "ts_first", "--exit-first", "--wait"]), limit);
    assert_eq!(code(&first), Some(1), "{}", describe(&first));
    let id = api.get("/api/sessions?suite=ts_first")["sessions"][0]["id"].as_u64().expect("the session");
    let session = api.session(id);
    let states: Vec<String> = cases(&session).into_iter().map(|c| c.1).collect();
    assert_eq!(states, ["passed", "failed", "not_run"], "{}", summarize(&session));
    assert!(session["reason"].as_str().unwrap_or("").contains("exit-first"), "{}", summarize(&session));
    let marks = env.marks();
    assert!(marked(&marks, "one_run", "p1") && !marked(&marks, "three_run", "p1"));
    assert!(marked(&marks, "first_suite_finalize", "p1"), "suite finalize runs after exit-first");
}

/// `--repeat`, a soak bounded by time, and the suite's own `repeat` and `retries` for a
/// run that gives none (as a schedule's).
#[test]
fn repeats_and_a_soak_bounded_by_time() {
    let mut env = Env::build(MasterOptions::default(), plan_suites);
    env.start_slaves(&["p1"]);
    let master = &env.master;
    let api = env.api();
    let limit = Duration::from_secs(60);
    let marks = env.marks();

    let repeated = run_command(master.cli(&["run", "ts_first", "--case", "one", "--repeat", "3", "--wait"]), limit);
    assert_eq!(code(&repeated), Some(0), "{}", describe(&repeated));
    let id = api.get("/api/sessions?suite=ts_first")["sessions"][0]["id"].as_u64().expect("the session");
    let passes: Vec<u64> = cases(&api.session(id)).into_iter().map(|c| c.2).collect();
    assert_eq!(passes, [1, 2, 3]);
    assert_eq!(std::fs::read_to_string(marks.join("one_run.p1")).unwrap().lines().count(), 3);

    // The suite says repeat = 2 and retries = 1: an empty API request gets both.
    let (status, created) = api.post("/api/suites/ts_loop/run", &serde_json::json!({}));
    assert_eq!(status, 201, "{created}");
    let id = created["session"].as_u64().unwrap();
    let session = api.wait_session(id, limit, "ts_loop ends", |s| s["ended_ms"].is_u64());
    assert_eq!(session["options"]["repeat"], 2);
    assert_eq!(cases(&session).len(), 2, "{}", summarize(&session));

    // A soak of 2 s of a 0.4 s case: several passes, then it stops.
    let before = lines(&marks, "loop.log").len();
    let started = Instant::now();
    let soak = run_command(master.cli(&["run", "ts_loop", "--for", "2s", "--wait"]), limit);
    let took = started.elapsed();
    assert_eq!(code(&soak), Some(0), "{}", describe(&soak));
    let ticks = lines(&marks, "loop.log").len() - before;
    assert!(ticks >= 3, "{ticks} passes in a 2 s soak");
    assert!(took < Duration::from_secs(15), "the soak took {took:?}");
    let id = api.get("/api/sessions?suite=ts_loop")["sessions"][0]["id"].as_u64().expect("the session");
    let session = api.session(id);
    assert_eq!(cases(&session).len(), ticks, "{}", summarize(&session));
    assert_eq!(session["options"]["for_ms"], 2000);
    let bad = run_command(master.cli(&["run", "ts_loop", "--for", "soon"]), limit);
    assert_eq!(code(&bad), Some(2), "{}", describe(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("for: "), "{}", describe(&bad));
}
