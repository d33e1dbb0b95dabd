//! Results end to end: a suite whose scripts report values (`result latency_ms 12.5 ms`)
//! runs twice on real slaves; the second run's latency on one slave breaks the case's
//! `max`. The trends page and its CSV, `GET /api/compare` (without `a`: the previous
//! finished session) and `xrdtest compare` (regressions first, exit 1 with
//! `--fail-on-regression`) are checked always. With Chromium and chromedriver installed
//! (always in CI), a real headless Chromium also checks that the trends page draws the
//! latency chart with its unit, its `max` line and the failed point, and that the compare
//! page puts the regression first. Screenshots go to `target/screenshots/` (`19-…` to `24-…`).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use xrdtest_e2e::*;

const SUITE: &str = "ts_results";

fn screenshots() -> PathBuf {
    // target/debug/deps/e2e-… → target/screenshots
    let exe = std::env::current_exe().expect("test executable");
    exe.ancestors().nth(3).expect("target folder").join("screenshots")
}

/// A run script reporting, per slave and session (counted in `marks`), the values of
/// `table` (`slave session value` lines) as `NAME`, in `unit`.
fn reporting(marks: &std::path::Path, counter: &str, name: &str, unit: &str, table: &[(&str, u32, f64)]) -> String {
    let mut script = format!(
        "source \"$XRDTEST_FUNCTIONS\"\n\
         count='{dir}/{counter}.'\"$XRDTEST_SLAVE\"\n\
         n=$(( $(cat \"$count\" 2>/dev/null || echo 0) + 1 ))\necho $n > \"$count\"\n\
         case \"$XRDTEST_SLAVE:$n\" in\n",
        dir = marks.display()
    );
    for (slave, session, value) in table {
        script.push_str(&format!("  {slave}:{session}) result {name} {value} {unit} ;;\n"));
    }
    script.push_str("esac\necho \"reported $name for session $n\"\n");
    script
}

fn suite(dir: &std::path::Path) -> Vec<Suite> {
    let marks = dir.join("marks");
    let latency = reporting(
        &marks,
        "lat",
        "latency_ms",
        "ms",
        &[("slave1", 1, 12.5), ("slave2", 1, 20.0), ("slave1", 2, 14.0), ("slave2", 2, 150.0)],
    );
    let throughput = reporting(
        &marks,
        "rate",
        "throughput",
        "MB/s",
        &[("slave1", 1, 80.0), ("slave2", 1, 90.0), ("slave1", 2, 70.0), ("slave2", 2, 91.0)],
    );
    vec![Suite::new(SUITE, &["slave1", "slave2"])
        .case(
            Case::new("tc_latency").run(latency).extra("[results.latency_ms]\nmin = 1\nmax = 100\nbetter = \"lower\""),
        )
        .case(Case::new("tc_throughput").run(throughput).extra("[results.throughput]\nmin = 50\nregress_pct = 20"))]
}

/// The values a session's case run stages reported, as `(case, slave, name, value)`.
fn reported(env: &Env, session: &Value) -> Vec<(String, String, String, f64)> {
    let mut all = Vec::new();
    for stage in session["stages"].as_array().into_iter().flatten() {
        let name = stage_name(&stage["stage"]);
        let Some(case) = name.strip_prefix("case_run:") else { continue };
        for run in stage["runs"].as_array().into_iter().flatten() {
            let values = env.api().get(&format!("/api/stages/{}/values", run["stage_id"]));
            for result in values["results"].as_array().into_iter().flatten() {
                all.push((
                    case.to_string(),
                    run["slave"].as_str().unwrap_or_default().to_string(),
                    result["name"].as_str().unwrap_or_default().to_string(),
                    result["value"].as_f64().unwrap_or(f64::NAN),
                ));
            }
        }
    }
    all
}

#[test]
fn reported_values_show_on_the_trends_and_compare_pages_and_in_xrdtest_compare() {
    let mut env = Env::build(MasterOptions::default(), suite);
    env.start_slaves(&["slave1", "slave2"]);
    let api = env.api();

    let base = env.master.url();
    let shots = screenshots();
    // Only the page checks need a browser; in CI there must be one.
    let browser = match Browser::available() {
        true => Some(Browser::start(env.path(), 1366, 1000)),
        false => {
            assert!(std::env::var_os("CI").is_none(), "Chromium and chromedriver must be installed in CI");
            eprintln!("SKIPPING the browser checks: chromium/chromedriver not installed (scripts/test installs them)");
            None
        }
    };

    let first = api.run(SUITE);
    let first_record = api.wait_final(first, Duration::from_secs(60));
    assert_eq!(state(&first_record), "passed", "{}", summarize(&first_record));
    // One session: each chart is one centred point per slave, no line.
    if let Some(browser) = &browser {
        browser.goto(&format!("{base}/trends/{SUITE}"));
        browser.wait_for("svg.metric[data-result=\"latency_ms\"]", Duration::from_secs(10));
        let one = browser.script(
            "const svg = document.querySelector('svg.metric[data-result=\"latency_ms\"]');\n\
             return { points: svg.querySelectorAll('a.point').length, lines: svg.querySelectorAll('polyline').length };",
        );
        assert_eq!(one, serde_json::json!({ "points": 2, "lines": 0 }));
        browser.script("document.getElementById('results').scrollIntoView(); return true;");
        browser.screenshot(&shots.join("19-trends-one-session.png"));
    }
    // With one finished session, there is nothing earlier to compare it with.
    let (status, answer) = api.request("GET", &format!("/api/compare?b={first}"), None).expect("/api/compare answers");
    assert_eq!(status, 404, "{answer}");

    let second = api.run(SUITE);
    let second_record = api.wait_final(second, Duration::from_secs(60));
    assert_eq!(state(&second_record), "failed", "{}", summarize(&second_record));
    assert_eq!(case_state(&second_record, "tc_latency"), "failed", "150 ms is above max 100");
    assert_eq!(case_state(&second_record, "tc_throughput"), "passed", "70 is within 20 % of 80");

    let values = reported(&env, &second_record);
    assert!(
        values.contains(&("tc_latency".into(), "slave2".into(), "latency_ms".into(), 150.0)),
        "the values reached the store: {values:?}"
    );

    // The trends page as served: a chart per (instance, result), the failed point, the
    // `max` line, and the CSV link under each chart.
    let (status, page) = api.request("GET", &format!("/trends/{SUITE}"), None).expect("the trends page answers");
    let page = page.as_str().unwrap_or_default().to_string();
    assert_eq!(status, 200, "{page}");
    assert_eq!(page.matches("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"metric\"").count(), 2, "{page}");
    assert!(page.contains(">latency_ms (ms)<") && page.contains(">max 100 ms<"), "{page}");
    assert_eq!(page.matches("class=\"point check-failed\"").count(), 1, "{page}");
    let csv_link = format!("/trends/{SUITE}/metrics.csv?instance=tc_latency&result=latency_ms");
    assert!(page.contains(&csv_link.replace('&', "&#38;")), "{page}");

    if let Some(browser) = &browser {
        // The trends page: the latency chart with its unit, its max line and the failed point.
        browser.goto(&format!("{base}/trends/{SUITE}"));
        let chart = browser.wait_for("svg.metric[data-result=\"latency_ms\"]", Duration::from_secs(10));
        assert_eq!(browser.attribute(&chart, "data-unit").as_deref(), Some("ms"));
        let facts = browser.script(
            "const svg = document.querySelector('svg.metric[data-result=\"latency_ms\"]');\n\
             const box = svg.getBoundingClientRect();\n\
             return {\n\
               width: box.width, height: box.height,\n\
               title: svg.querySelector('.axis-title').textContent,\n\
               max: (svg.querySelector('.threshold-max text') || {}).textContent || null,\n\
               min: (svg.querySelector('.threshold-min text') || {}).textContent || null,\n\
               failed: svg.querySelectorAll('a.point.check-failed').length,\n\
               points: svg.querySelectorAll('a.point').length,\n\
               lines: svg.querySelectorAll('polyline').length,\n\
               legend: Array.from(svg.querySelectorAll('.legend-entry text')).map(t => t.textContent),\n\
               charts: document.querySelectorAll('svg.metric').length,\n\
               csv: document.querySelector('figure.metric-card a.csv').getAttribute('href')\n\
             };",
        );
        assert!(facts["width"].as_f64().unwrap_or(0.0) > 300.0, "the chart is drawn: {facts}");
        assert_eq!(facts["title"], "latency_ms (ms)", "{facts}");
        assert_eq!(facts["max"], "max 100 ms", "{facts}");
        assert_eq!(facts["min"], "min 1 ms", "{facts}");
        assert_eq!(facts["failed"], 1, "{facts}");
        assert_eq!(facts["points"], 4, "two sessions on two slaves: {facts}");
        assert_eq!(facts["lines"], 2, "a line per slave: {facts}");
        assert_eq!(facts["legend"], serde_json::json!(["slave1", "slave2", "check failed"]), "{facts}");
        assert_eq!(facts["charts"], 2, "{facts}");
        assert_eq!(facts["csv"], csv_link.as_str(), "the first chart's CSV link: {facts}");
        browser.screenshot(&shots.join("20-trends-top.png"));
        browser.script("document.getElementById('results').scrollIntoView(); return true;");
        browser.screenshot(&shots.join("21-trends-results.png"));
    }

    // Its CSV link answers the two sessions' values.
    let (status, csv) = api.request("GET", &csv_link, None).expect("the CSV link answers");
    assert_eq!(status, 200, "{csv_link}: {csv}");
    let csv = csv.as_str().unwrap_or_default().to_string();
    assert!(csv.starts_with("session,ended_ms,ended,slave,value,unit,passed\r\n"), "{csv}");
    assert!(csv.contains(&format!("\r\n{second},")) && csv.contains(",slave2,150,ms,false\r\n"), "{csv}");

    // The API, without `a`: the second session against the previous finished one.
    let json = api.get(&format!("/api/compare?b={second}"));
    assert_eq!((json["a"]["id"].as_u64(), json["b"]["id"].as_u64()), (Some(first), Some(second)), "{json}");
    assert_eq!(json["cases"][0]["instance"], "tc_latency", "{json}");
    assert_eq!(json["cases"][0]["change"], "regression", "{json}");
    assert_eq!(json["counts"]["regressions"], 1, "{json}");

    if let Some(browser) = &browser {
        // From the history, compare the second session with the previous one.
        browser.goto(&format!("{base}/sessions"));
        let link =
            browser.wait_for(&format!("tr[data-session=\"{second}\"] a.compare-previous"), Duration::from_secs(10));
        browser.click(&link);
        browser.wait_for("table#compare-cases", Duration::from_secs(10));
        let facts = browser.script(
            "return {\n\
               heading: document.querySelector('h1').textContent,\n\
               changes: Array.from(document.querySelectorAll('tr.case-row')).map(r => [r.dataset.instance, r.dataset.change]),\n\
               worse: Array.from(document.querySelectorAll('tr.result-row.worse')).map(r => [r.dataset.result, r.dataset.slave]),\n\
               regressions: document.querySelector('[data-count=regressions] b').textContent\n\
             };",
        );
        assert!(
            facts["heading"].as_str().unwrap_or_default().contains(&format!("#{first} → #{second}")),
            "compared with the previous session: {facts}"
        );
        assert_eq!(
            facts["changes"],
            serde_json::json!([["tc_latency", "regression"], ["tc_throughput", "unchanged"]]),
            "{facts}"
        );
        let worse = facts["worse"].as_array().cloned().unwrap_or_default();
        assert!(worse.contains(&serde_json::json!(["latency_ms", "slave2"])), "{facts}");
        assert!(worse.contains(&serde_json::json!(["throughput", "slave1"])), "80 → 70, higher is better: {facts}");
        assert_eq!(facts["regressions"], "1");
        browser.screenshot(&shots.join("22-compare.png"));
        browser.set_size(390, 844);
        browser.screenshot(&shots.join("23-compare-phone.png"));
        browser.goto(&format!("{base}/trends/{SUITE}"));
        browser.wait_for("svg.metric", Duration::from_secs(10));
        browser.script("document.getElementById('results').scrollIntoView(); return true;");
        browser.screenshot(&shots.join("24-trends-results-phone.png"));
    }

    // The command line: the same comparison, regressions first; the exit code on request.
    let output =
        run_command(env.master.cli(&["compare", &first.to_string(), &second.to_string()]), Duration::from_secs(20));
    assert_eq!(code(&output), Some(0), "{}", describe(&output));
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let regression = text.find("REGRESSION  tc_latency").unwrap_or_else(|| panic!("{text}"));
    assert!(text[regression..].contains("tc_throughput"), "regressions first: {text}");
    assert!(text.contains("+130 ms") && text.contains("+650.0%"), "{text}");
    let output = run_command(
        env.master.cli(&["compare", &first.to_string(), &second.to_string(), "--fail-on-regression"]),
        Duration::from_secs(20),
    );
    assert_eq!(code(&output), Some(1), "{}", describe(&output));
    // The other way round B passed where A failed: a fix, no regression, exit 0.
    let output = run_command(
        env.master.cli(&["compare", &second.to_string(), &first.to_string(), "--fail-on-regression"]),
        Duration::from_secs(20),
    );
    assert_eq!(code(&output), Some(0), "{}", describe(&output));
    let output = run_command(
        env.master.cli(&["--json", "compare", &first.to_string(), &second.to_string()]),
        Duration::from_secs(20),
    );
    assert_eq!(code(&output), Some(0), "{}", describe(&output));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&output)));
    assert_eq!(json["cases"][0]["change"], "regression", "{json}");
    let output = run_command(env.master.cli(&["compare", "1", "999"]), Duration::from_secs(20));
    assert_eq!(code(&output), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no session 999"), "{}", describe(&output));
}
