//! Values and checks from scripts with real binaries: `result` and `check` of the shell
//! library on two slaves, a failed check failing a stage whose script exited 0, a bad line
//! reported in the output, and a case's thresholds: `max`, and `regress_pct` against the
//! median of the suite's earlier passing sessions.

use std::time::Duration;

use serde_json::Value;
use xrdtest_e2e::{code, describe, run_command, summarize, Api, Case, Env, MasterOptions, Suite};

const LIMIT: Duration = Duration::from_secs(60);

fn suites() -> Vec<Suite> {
    vec![
        Suite::new("ts_values", &["v1", "v2"]).extra("[tags]\nlatency = \"10\"").case(
            Case::new("measure")
                .run(
                    "source \"$XRDTEST_FUNCTIONS\"\n\
                     result latency_ms @latency@ ms\n\
                     result ops 100\n\
                     check up pass \"listening\"\n",
                )
                .extra("[results.latency_ms]\nmax = 1000\nregress_pct = 50\nbaseline = 3"),
        ),
        Suite::new("ts_checks", &["v1"]).case(Case::new("sums").run(
            "source \"$XRDTEST_FUNCTIONS\"\n\
                 set -e\n\
                 check sums_equal fail \"abc != def\"\n\
                 echo 'still running after the failed check'\n\
                 echo 'result bad NaN' >> \"$XRDTEST_RESULTS\"\n\
                 exit 0\n",
        )),
    ]
}

/// Runs `suite` with `params` to its end through the CLI; the session's JSON.
fn run(env: &Env, suite: &str, params: &[&str], expect_code: i32) -> Value {
    let mut args = vec!["run", suite, "--wait"];
    for param in params {
        args.extend(["--param", param]);
    }
    let ran = run_command(env.master.cli(&args), LIMIT);
    assert_eq!(code(&ran), Some(expect_code), "{}", describe(&ran));
    let api = env.api();
    let id = api.get(&format!("/api/sessions?suite={suite}"))["sessions"][0]["id"].as_u64().expect("the session");
    api.session(id)
}

/// The run of `stage` (label) on `slave`.
fn run_of<'a>(session: &'a Value, stage: &str, slave: &str) -> &'a Value {
    session["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| stage_label(s) == stage)
        .flat_map(|s| s["runs"].as_array().into_iter().flatten())
        .find(|r| r["slave"] == slave)
        .unwrap_or_else(|| panic!("no run of {stage} on {slave}: {}", summarize(session)))
}

fn stage_label(stage: &Value) -> String {
    let kind = stage["stage"].as_object().and_then(|o| o.keys().next().cloned());
    match (kind, &stage["stage"]) {
        (Some(kind), value) => format!("{kind}:{}", value[&kind]["case"].as_str().unwrap_or("")),
        (None, value) => value.as_str().unwrap_or("").to_string(),
    }
}

fn values(api: &Api, run: &Value) -> Value {
    api.get(&format!("/api/stages/{}/values", run["stage_id"]))
}

fn check<'a>(values: &'a Value, name: &str) -> &'a Value {
    values["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {values}"))
}

#[test]
fn values_checks_and_thresholds_from_real_scripts() {
    let mut env = Env::new(&suites(), MasterOptions::default());
    env.start_slaves(&["v1", "v2"]);
    let api = env.api();

    // A failed check fails the stage although the script exited 0 and went on after it.
    let session = run(&env, "ts_checks", &[], 1);
    assert_eq!(session["state"], "failed", "{}", summarize(&session));
    let sums = run_of(&session, "CaseRun:sums", "v1");
    assert_eq!(sums["state"], "failed");
    assert_eq!(sums["exit_code"], 0);
    assert_eq!(sums["reason"], "check `sums_equal` failed: abc != def", "{sums}");
    let reported = values(&api, sums);
    assert_eq!(check(&reported, "sums_equal")["source"], "script");
    assert_eq!(reported["results"], serde_json::json!([]), "the NaN line is not a value");
    let output = api.get(&format!("/api/stages/{}/output", sums["stage_id"]));
    let text = output.to_string();
    assert!(text.contains("still running after the failed check"), "{text}");
    assert!(text.contains("[xrdtest: results file: line 2: result `bad`: NaN is not a finite number]"), "{text}");

    // First session: no baseline yet; values on both slaves.
    let first = run(&env, "ts_values", &[], 0);
    for slave in ["v1", "v2"] {
        let measured = values(&api, run_of(&first, "CaseRun:measure", slave));
        assert_eq!(
            measured["results"],
            serde_json::json!([
                {"name": "latency_ms", "value": 10.0, "unit": "ms"},
                {"name": "ops", "value": 100.0, "unit": ""},
            ])
        );
        let threshold = check(&measured, "results.latency_ms");
        assert_eq!(threshold["passed"], true);
        assert_eq!(threshold["source"], "threshold");
        let message = threshold["message"].as_str().unwrap_or("");
        assert!(message.contains("within max 1000 ms") && message.contains("no baseline yet"), "{message}");
        assert_eq!(check(&measured, "up")["message"], "listening");
    }

    // Within 50 % of the baseline: passes, and names the baseline.
    let second = run(&env, "ts_values", &["latency=12"], 0);
    let measured = values(&api, run_of(&second, "CaseRun:measure", "v1"));
    let message = check(&measured, "results.latency_ms")["message"].as_str().unwrap_or("").to_string();
    assert!(message.contains("20.0% above the value 10 ms of the last passing session"), "{message}");

    // Three times the median of the two passing sessions (10, 12 → 11): a regression.
    let third = run(&env, "ts_values", &["latency=33"], 1);
    assert_eq!(third["state"], "failed", "{}", summarize(&third));
    for slave in ["v1", "v2"] {
        let measure = run_of(&third, "CaseRun:measure", slave);
        assert_eq!((measure["state"].as_str(), measure["exit_code"].as_i64()), (Some("failed"), Some(0)));
        let reason = measure["reason"].as_str().unwrap_or("");
        assert!(
            reason.contains(
                "check `results.latency_ms` failed: latency_ms = 33 ms: within max 1000 ms; \
                 200.0% above the median 11 ms of the last 2 passing sessions (regress_pct 50)"
            ),
            "{reason}"
        );
    }

    // The failed session is no baseline: the next one compares with 10 and 12 again; above
    // `max` fails whatever the baseline.
    let fourth = run(&env, "ts_values", &["latency=1500"], 1);
    let reason = run_of(&fourth, "CaseRun:measure", "v2")["reason"].as_str().unwrap_or("").to_string();
    assert!(reason.contains("latency_ms = 1500 ms: above max 1000 ms"), "{reason}");
    assert!(reason.contains("of the last 2 passing sessions"), "{reason}");
}
