//! A session's reports with real binaries: a suite whose scripts report values and checks
//! through the shell library (one case passing with values, one failing by a check while
//! exiting 0, one flaky by `retries`, a matrix) on two slaves; then its JUnit XML through
//! `xrdtest run --wait --junit` and `xrdtest report`, read by a maintained JUnit parser
//! (junitparser) and validated against a JUnit schema (the Jenkins xunit plugin's
//! junit-10.xsd, from pytest's source distribution on PyPI: `scripts/fetch-junit-xsd`) with
//! xmlschema; its CSV read by Python's csv module; TAP and JSON; and its export unpacked by
//! `xrdtest export` and opened from disk in headless Chromium (screenshot in
//! `target/screenshots/`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use xrdtest_e2e::{code, describe, run_command, stage_run, Browser, Case, Env, MasterOptions, Suite};

const LIMIT: Duration = Duration::from_secs(120);

fn suites(dir: &Path) -> Vec<Suite> {
    let marks = dir.join("marks");
    let app_log = format!("{}/app-@slavename@.log", marks.display());
    vec![Suite::new("ts_reports", &["r1", "r2"])
        .extra(&format!("logs = [\"{app_log}\"]"))
        .init(format!("echo \"suite init on $XRDTEST_SLAVE\" | tee -a '{app_log}'\n"))
        .case(Case::new("measure").run(
            "source \"$XRDTEST_FUNCTIONS\"\n\
             if [ \"$XRDTEST_SLAVE\" = r1 ]; then result latency_ms 12.5 ms; else result latency_ms 14 ms; fi\n\
             result throughput 80 MB/s\n\
             check reply_ok pass \"answered in time\"\n\
             echo \"measured on $XRDTEST_SLAVE\"\n",
        ))
        .case(Case::new("mismatch").run(
            "source \"$XRDTEST_FUNCTIONS\"\n\
             printf 'comparing <sums> & \"digests\"\\n'\n\
             printf 'bell \\a and colour \\033[31mred\\033[0m\\n'\n\
             if [ \"$XRDTEST_SLAVE\" = r2 ]; then check sums_equal fail \"abc != def\"; else check sums_equal pass; fi\n\
             exit 0\n",
        ))
        .case(Case::new("wobbly").extra("retries = 1").run(format!(
            "m='{}/wobbly.'\"$XRDTEST_SLAVE\"\n\
             if [ ! -e \"$m\" ]; then touch \"$m\"; echo 'first attempt fails'; exit 1; fi\n\
             echo 'second attempt passes'\n",
            marks.display()
        )))
        .case(
            Case::new("sized")
                .extra("[matrix]\nmode = [\"fast\"]\nsize = [1, 64]")
                .run("source \"$XRDTEST_FUNCTIONS\"\nresult bytes @size@\n"),
        )]
}

/// `target/<dir>`, beside the binaries (target/debug/deps/e2e-… → target).
fn target_dir(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.ancestors().nth(3).expect("target folder").join(name)
}

/// The JUnit schema, fetched from PyPI by the script `scripts/test` runs when missing.
fn junit_xsd() -> PathBuf {
    let path = std::env::var_os("XRDTEST_JUNIT_XSD")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir("test-data").join("junit-10.xsd"));
    if !path.is_file() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fetch-junit-xsd");
        let fetched = run_command(
            {
                let mut command = Command::new(script);
                command.arg(&path);
                command
            },
            Duration::from_secs(300),
        );
        assert!(fetched.status.success(), "scripts/fetch-junit-xsd: {}", describe(&fetched));
    }
    path
}

/// Runs a Python program (the test's own) with arguments; its stdout as JSON.
fn python(dir: &Path, name: &str, source: &str, args: &[&Path]) -> Value {
    let program = dir.join(name);
    std::fs::write(&program, source).expect("the Python program");
    let mut command = Command::new("python3");
    command.arg(&program).args(args);
    let ran = run_command(command, Duration::from_secs(60));
    assert!(
        ran.status.success(),
        "python3 {name} (scripts/test installs junitparser and xmlschema): {}",
        describe(&ran)
    );
    serde_json::from_slice(&ran.stdout).unwrap_or_else(|e| panic!("{name} printed no JSON ({e}): {}", describe(&ran)))
}

/// Reads a JUnit file with junitparser (its xunit2 flavour knows flakyFailure) and validates
/// it against the XSD with xmlschema.
const READ_JUNIT: &str = r#"
import json, sys
import xmlschema
from junitparser.xunit2 import JUnitXml

xml_path, xsd_path = sys.argv[1], sys.argv[2]
schema = xmlschema.XMLSchema(xsd_path)
errors = [str(error) for error in schema.iter_errors(xml_path)]
suites = []
for suite in JUnitXml.fromfile(xml_path):
    cases = []
    for case in suite:
        cases.append({
            "classname": case.classname,
            "name": case.name,
            "time": case.time,
            "results": [{"kind": type(r).__name__, "message": r.message, "type": r.type, "text": r.text}
                        for r in case.result],
            "flaky": [{"message": f.message, "type": f.type, "system_out": f.system_out}
                      for f in case.flaky_failures()],
            "system_out": case.system_out,
        })
    suites.append({
        "name": suite.name, "tests": suite.tests, "failures": suite.failures, "errors": suite.errors,
        "skipped": suite.skipped, "time": suite.time, "timestamp": suite.timestamp,
        "properties": {p.name: p.value for p in suite.properties()},
        "cases": cases,
    })
print(json.dumps({"schema_errors": errors, "suites": suites}))
"#;

/// Reads a CSV file with Python's csv module: the header and the rows.
const READ_CSV: &str = r#"
import csv, json, sys
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f, strict=True))
print(json.dumps({"header": rows[0], "rows": [dict(zip(rows[0], row)) for row in rows[1:]],
                  "widths": sorted({len(row) for row in rows})}))
"#;

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

#[test]
fn a_real_session_as_junit_csv_tap_json_and_an_export_opened_in_a_browser() {
    let mut env = Env::build(MasterOptions::default(), suites);
    env.start_slaves(&["r1", "r2"]);
    let dir = env.path().to_path_buf();
    let api = env.api();

    // The CI way: run, wait, and write the JUnit report even though the session failed.
    let junit_file = dir.join("ci/reports/junit.xml");
    let junit_arg = junit_file.display().to_string();
    let ran = run_command(env.master.cli(&["run", "ts_reports", "--wait", "--junit", &junit_arg]), LIMIT);
    assert_eq!(code(&ran), Some(1), "the session fails (a failed check): {}", describe(&ran));
    assert!(String::from_utf8_lossy(&ran.stderr).contains("JUnit report written to"), "{}", describe(&ran));
    let id = api.get("/api/sessions?suite=ts_reports")["sessions"][0]["id"].as_u64().expect("the session");
    let session = api.session(id);
    let values = api.get(&format!("/api/stages/{}/values", stage_run(&session, "case_run:measure", "r1")["stage_id"]));
    assert!(
        values["results"].as_array().is_some_and(|r| !r.is_empty()),
        "the master stores the values scripts report: {values}"
    );

    let again = dir.join("again.xml");
    let report = run_command(
        env.master.cli(&["report", &id.to_string(), "--format", "junit", "-o", &again.display().to_string()]),
        LIMIT,
    );
    assert_eq!(code(&report), Some(0), "{}", describe(&report));
    let junit = std::fs::read_to_string(&junit_file).expect("run --junit wrote the file");
    assert_eq!(std::fs::read_to_string(&again).expect("report -o wrote the file"), junit, "the same report twice");
    println!("----- junit.xml of session {id} -----\n{junit}");

    // JUnit, as a maintained parser reads it and as the schema allows it.
    let xsd = junit_xsd();
    let parsed = python(&dir, "read_junit.py", READ_JUNIT, &[&junit_file, &xsd]);
    assert_eq!(parsed["schema_errors"], serde_json::json!([]), "valid under junit-10.xsd:\n{junit}");
    let suite = &parsed["suites"][0];
    assert_eq!(parsed["suites"].as_array().map(Vec::len), Some(1));
    assert_eq!(suite["name"], "ts_reports");
    assert_eq!(suite["properties"]["session"], id.to_string());
    assert_eq!(suite["properties"]["suite"], "ts_reports");
    assert!(!text(&suite["properties"]["definition_hash"]).is_empty(), "{suite}");
    let cases = suite["cases"].as_array().expect("testcases");
    let names: Vec<(&str, &str)> = cases.iter().map(|c| (text(&c["classname"]), text(&c["name"]))).collect();
    assert_eq!(
        names,
        [
            ("ts_reports", "measure"),
            ("ts_reports.measure", "check:reply_ok@r1"),
            ("ts_reports.measure", "check:reply_ok@r2"),
            ("ts_reports", "mismatch"),
            ("ts_reports.mismatch", "check:sums_equal@r1"),
            ("ts_reports.mismatch", "check:sums_equal@r2"),
            ("ts_reports", "wobbly"),
            ("ts_reports", "sized[mode=fast,size=1]"),
            ("ts_reports", "sized[mode=fast,size=64]"),
        ],
        "{junit}"
    );
    assert_eq!(
        (suite["tests"].as_u64(), suite["failures"].as_u64(), suite["errors"].as_u64()),
        (Some(9), Some(2), Some(0))
    );
    assert_eq!(suite["skipped"].as_u64(), Some(0));
    let case = |name: &str| cases.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no testcase {name}"));
    let failure = &case("mismatch")["results"][0];
    assert_eq!(failure["kind"], "Failure");
    assert_eq!(failure["message"], "case_run:mismatch on r2: check `sums_equal` failed: abc != def");
    let out = text(&case("mismatch")["system_out"]);
    assert!(out.contains("==> case_run:mismatch on r2: last 2 lines of output <=="), "{out}");
    assert!(out.contains("comparing <sums> & \"digests\""), "escaped and read back: {out}");
    assert!(out.contains("bell \u{FFFD} and colour red"), "BEL replaced, colours stripped: {out}");
    assert_eq!(case("check:sums_equal@r2")["results"][0]["message"], "check `sums_equal` failed: abc != def");
    assert_eq!(case("check:sums_equal@r1")["results"], serde_json::json!([]));
    assert_eq!(case("measure")["results"], serde_json::json!([]));
    let wobbly = case("wobbly");
    assert_eq!(wobbly["results"], serde_json::json!([]), "flaky passes");
    let flaky = wobbly["flaky"].as_array().expect("flaky failures");
    assert_eq!(flaky.len(), 1, "one per failed attempt: {wobbly}");
    assert_eq!(
        flaky[0]["message"],
        "attempt 1: case_run:wobbly on r1: exit code 1; case_run:wobbly on r2: exit code 1"
    );
    assert_eq!(flaky[0]["type"], "failed");
    assert!(text(&flaky[0]["system_out"]).contains("first attempt fails"), "{wobbly}");
    assert!(case("measure")["time"].as_f64().is_some_and(|t| t > 0.0));

    // CSV, as Python's csv module reads it.
    let csv_file = dir.join("results.csv");
    let report = run_command(
        env.master.cli(&["report", &id.to_string(), "--format", "csv", "-o", &csv_file.display().to_string()]),
        LIMIT,
    );
    assert_eq!(code(&report), Some(0), "{}", describe(&report));
    let table = python(&dir, "read_csv.py", READ_CSV, &[&csv_file]);
    let header: Vec<&str> = table["header"].as_array().expect("a header").iter().map(text).collect();
    assert_eq!(header[..13], xrdtest_report_columns());
    assert_eq!(header[13..], ["result:bytes", "result:latency_ms[ms]", "result:throughput[MB/s]"]);
    assert_eq!(table["widths"], serde_json::json!([16]), "every row has every column");
    let rows = table["rows"].as_array().expect("rows");
    let row = |instance: &str, stage: &str, slave: &str, attempt: &str| {
        rows.iter()
            .find(|r| {
                r["instance"] == instance && r["stage"] == stage && r["slave"] == slave && r["attempt"] == attempt
            })
            .unwrap_or_else(|| panic!("no row {instance} {stage} {slave} {attempt}: {rows:?}"))
    };
    let measured = row("measure", "case_run", "r1", "1");
    assert_eq!((text(&measured["result:latency_ms[ms]"]), text(&measured["result:throughput[MB/s]"])), ("12.5", "80"));
    assert_eq!(row("measure", "case_run", "r2", "1")["result:latency_ms[ms]"], "14");
    assert_eq!(row("sized[mode=fast,size=64]", "case_run", "r2", "1")["result:bytes"], "64");
    assert_eq!(row("sized[mode=fast,size=64]", "case_run", "r2", "1")["case"], "sized");
    let mismatch = row("mismatch", "case_run", "r2", "1");
    assert_eq!((text(&mismatch["state"]), text(&mismatch["exit_code"])), ("failed", "0"));
    assert_eq!(mismatch["reason"], "check `sums_equal` failed: abc != def");
    assert_eq!(row("wobbly", "case_run", "r1", "1")["state"], "failed");
    assert_eq!(row("wobbly", "case_run", "r1", "2")["state"], "passed");
    let suite_init = row("", "suite_init", "r1", "");
    assert_eq!((text(&suite_init["pass"]), text(&suite_init["state"])), ("", "passed"));

    // TAP and JSON to stdout.
    let tap = run_command(env.master.cli(&["report", &id.to_string(), "--format", "tap"]), LIMIT);
    assert_eq!(code(&tap), Some(0), "{}", describe(&tap));
    let tap = String::from_utf8_lossy(&tap.stdout).into_owned();
    assert!(tap.starts_with("TAP version 13\n1..5\nok 1 - measure\nnot ok 2 - mismatch\n  ---\n"), "{tap}");
    assert!(tap.contains("\nok 3 - wobbly # flaky: passed at attempt 2\n"), "{tap}");
    assert!(tap.contains("\nok 5 - sized[mode=fast,size=64]\n"), "{tap}");
    let json = run_command(env.master.cli(&["report", &id.to_string()]), LIMIT);
    assert_eq!(code(&json), Some(0), "{}", describe(&json));
    let json: Value = serde_json::from_slice(&json.stdout).expect("report.json is JSON");
    assert_eq!((json["format"].as_str(), json["version"].as_u64()), (Some("xrdtest-report"), Some(1)));
    assert_eq!(json["session"]["id"], id);
    assert_eq!(json["cases"][0]["results"][0]["value"], 12.5);
    assert_eq!(json["cases"][2]["state"], "flaky");

    // Unknown sessions: a JSON 404 from the API, exit 2 from the CLI.
    for file in ["report.json", "junit.xml", "results.csv", "report.tap", "export.tar.gz"] {
        let (status, answer) = api.request("GET", &format!("/api/sessions/999999/{file}"), None).expect("an answer");
        assert_eq!((status, answer["error"].as_str()), (404, Some("no session 999999")), "{file}");
    }
    let missing = run_command(env.master.cli(&["report", "999999", "--format", "junit"]), LIMIT);
    assert_eq!(code(&missing), Some(2), "{}", describe(&missing));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404 no session 999999"), "{}", describe(&missing));

    // Each answer says what it is; the export comes as a file to save.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    for (file, content_type, disposition) in [
        ("report.json", "application/json", None),
        ("junit.xml", "application/xml; charset=utf-8", None),
        ("results.csv", "text/csv; charset=utf-8; header=present", None),
        ("report.tap", "text/plain; charset=utf-8", None),
        ("export.tar.gz", "application/gzip", Some(format!("attachment; filename=\"xrdtest-session-{id}.tar.gz\""))),
    ] {
        let url = format!("{}/api/sessions/{id}/{file}", env.master.url());
        let response = agent.get(&url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        assert_eq!(response.status().as_u16(), 200, "{file}");
        assert_eq!(header("content-type").as_deref(), Some(content_type), "{file}");
        assert_eq!(header("content-disposition"), disposition, "{file}");
    }

    // The session page links them.
    let (status, page) = api.request("GET", &format!("/sessions/{id}"), None).expect("the session page");
    assert_eq!(status, 200);
    for file in ["report.json", "junit.xml", "results.csv", "report.tap", "export.tar.gz"] {
        assert!(text(&page).contains(&format!("href=\"/api/sessions/{id}/{file}\"")), "a link to {file}");
    }

    // The export, unpacked by the CLI.
    let export_dir = dir.join("export/session");
    let exported = run_command(env.master.cli(&["export", &id.to_string(), &export_dir.display().to_string()]), LIMIT);
    assert_eq!(code(&exported), Some(0), "{}", describe(&exported));
    let listing = String::from_utf8_lossy(&exported.stdout).into_owned();
    assert!(listing.contains("report.html") && listing.contains("open "), "{listing}");
    for file in ["report.html", "report.json", "junit.xml", "results.csv", "export-notes.txt"] {
        assert!(export_dir.join(file).is_file(), "{file} in the export:\n{listing}");
    }
    assert_eq!(std::fs::read_to_string(export_dir.join("junit.xml")).expect("junit.xml"), junit);
    let notes = std::fs::read_to_string(export_dir.join("export-notes.txt")).expect("notes");
    assert!(notes.contains("Nothing was cut or left out."), "{notes}");
    let stage_dir = |label: &str| {
        std::fs::read_dir(export_dir.join("stages"))
            .expect("the stages folder")
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .find(|path| path.file_name().is_some_and(|n| n.to_string_lossy().ends_with(&format!("-{label}"))))
            .unwrap_or_else(|| panic!("no stage folder *-{label}:\n{listing}"))
    };
    let output = std::fs::read_to_string(stage_dir("case_run_mismatch").join("r2/output.txt"))
        .unwrap_or_else(|e| panic!("the mismatch output ({e}):\n{listing}"));
    assert!(output.contains("comparing <sums> & \"digests\"\n"), "{output}");
    assert!(output.contains("\u{1b}[31mred"), "output.txt keeps the bytes as printed: {output:?}");
    let logs: Vec<PathBuf> = std::fs::read_dir(export_dir.join("stages/001-suite_init/r1/logs"))
        .unwrap_or_else(|e| panic!("the collected logs of suite init ({e}):\n{listing}"))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(logs[0].display().to_string().ends_with("_marks_app-r1.log"), "{logs:?}");
    let log = std::fs::read_to_string(&logs[0]).expect("the log");
    assert!(log.contains("suite init on r1"), "{log}");

    // The page, from disk, in a real browser.
    if !Browser::available() {
        assert!(std::env::var_os("CI").is_none(), "Chromium and chromedriver must be installed in CI");
        eprintln!("SKIPPED the browser part: chromium/chromedriver not installed (scripts/test installs them)");
        return;
    }
    let browser = Browser::start(&dir, 1280, 2600);
    let page = export_dir.join("report.html").canonicalize().expect("the page's path");
    browser.goto(&format!("file://{}", page.display()));
    let verdict = browser.wait_for("#verdict", Duration::from_secs(10));
    assert_eq!(browser.text(&verdict), "failed");
    let body = browser.script("return document.body.innerText;");
    let body = text(&body);
    for needle in [
        "ts_reports",
        &format!("session #{id}"),
        "mismatch",
        "sized[mode=fast,size=64]",
        "abc != def",
        "12.5",
        "MB/s",
        "first attempt fails",
        "comparing <sums> & \"digests\"",
    ] {
        assert!(body.contains(needle), "`{needle}` on the page:\n{body}");
    }
    let rows = browser.find_all("#cases tbody tr");
    assert_eq!(rows.len(), 5, "one row per case instance");
    // Nothing was fetched: no style sheet, font, image or script from anywhere.
    let fetched = browser.script("return performance.getEntriesByType('resource').length;");
    assert_eq!(fetched, 0, "the page loads nothing");
    // Its links lead to files of the export.
    let links = browser.script(
        "return Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))\
         .filter(h => !h.startsWith('#'));",
    );
    for link in links.as_array().into_iter().flatten().map(text) {
        assert!(export_dir.join(link).is_file(), "the link {link} leads to a file of the export");
    }
    let shot = dir.join("report.png");
    browser.screenshot(&shot);
    let kept = target_dir("screenshots").join("reports-export.png");
    browser.screenshot(&kept);
    browser.script("window.scrollTo(0, document.body.scrollHeight); return 0;");
    let end = target_dir("screenshots").join("reports-export-end.png");
    browser.screenshot(&end);
    println!("screenshots of the export's report.html: {} and {}", kept.display(), end.display());
}

/// The CSV's fixed columns, as the report crate defines them.
fn xrdtest_report_columns() -> [&'static str; 13] {
    [
        "session",
        "suite",
        "instance",
        "case",
        "pass",
        "attempt",
        "stage",
        "slave",
        "state",
        "start_ms",
        "duration_ms",
        "exit_code",
        "reason",
    ]
}
