//! Results on the dashboard against a real master in this process: the trends page's chart
//! per (instance, result) with the case's bounds and failed checks, its CSV downloads, the
//! comparison of two sessions as JSON (`/api/compare`) and as a page, and the history's
//! links to it. Records and values are put into the store directly, as the runner would.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::{Client, Reply};
use xrdtest_master::master::Master;
use xrdtest_master::model::{
    CaseRecord, CaseState, Check, CheckSource, ResultValue, RunState, SessionRecord, SessionState, StageRecord,
    StageRun, StageValues, Trigger,
};
use xrdtest_proto::Stage;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `ts_vals`: `tc_lat` bounds `latency_ms` (1 to 100, lower is better, 10 % regression),
/// `tc_rate` and `tc_other` have no thresholds.
fn definitions(root: &Path) {
    let suite = root.join("suites/ts_vals");
    write(
        &suite.join("suite.toml"),
        "name = \"ts_vals\"\nmachines = [\"s1\", \"s2\"]\ntests = [\"tc_lat\", \"tc_rate\", \"tc_other\"]\n\
         initialize = \"echo init\"\n",
    );
    for case in ["tc_lat", "tc_rate", "tc_other"] {
        write(&suite.join(format!("tc/{case}/init.sh")), "echo init\n");
        write(&suite.join(format!("tc/{case}/run.sh")), "echo run\n");
    }
    write(
        &suite.join("tc/tc_lat/case.toml"),
        "[results.latency_ms]\nmin = 1\nmax = 100\nregress_pct = 10\nbetter = \"lower\"\n",
    );
}

type Running = common::TestMaster;

async fn start() -> Running {
    common::start_master("", definitions).await
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    tokio::task::block_in_place(|| Client::http(addr).request("GET", path, &[], None))
}

/// A value a run reported: name, value, unit, the threshold check's verdict.
type Value<'a> = (&'a str, f64, &'a str, Option<bool>);

/// What one case instance did in a session: its name, state, and per slave the values its
/// run reported.
struct Instance<'a> {
    name: &'a str,
    state: CaseState,
    values: Vec<(&'a str, Vec<Value<'a>>)>,
}

fn instance<'a>(name: &'a str, state: CaseState) -> Instance<'a> {
    Instance { name, state, values: Vec::new() }
}

impl<'a> Instance<'a> {
    fn on(mut self, slave: &'a str, values: &[Value<'a>]) -> Instance<'a> {
        self.values.push((slave, values.to_vec()));
        self
    }
}

/// A finished `ts_vals` session with these instances (a run stage each, on the slaves that
/// reported values), stored with its values.
fn store(master: &Master, state: SessionState, instances: &[Instance]) -> SessionRecord {
    let id = master.store.next_session_id().unwrap();
    let mut record = SessionRecord::queued(id, "ts_vals", Trigger::Api, vec!["s1".into(), "s2".into()], id);
    record.state = state;
    record.started_ms = Some(1_700_000_000_000 + id * 60_000);
    record.ended_ms = Some(1_700_000_030_000 + id * 60_000);
    for instance in instances {
        let case = instance.name.split('[').next().unwrap_or(instance.name);
        record.cases.push(CaseRecord {
            state: instance.state,
            started_ms: Some(1_700_000_000_000),
            ended_ms: Some(1_700_000_000_000 + 1000 * id),
            attempts: 1,
            ..CaseRecord::pending(instance.name, case, Vec::new(), 1)
        });
        let mut runs = Vec::new();
        for (slave, values) in &instance.values {
            let stage_id = master.store.next_stage_ids(1).unwrap();
            let mut reported = StageValues::default();
            for (name, value, unit, passed) in values {
                reported.put_result(ResultValue { name: name.to_string(), value: *value, unit: unit.to_string() });
                if let Some(passed) = passed {
                    reported.put_check(Check {
                        name: format!("results.{name}"),
                        passed: *passed,
                        message: String::new(),
                        source: CheckSource::Threshold,
                    });
                }
            }
            master.store.put_values(stage_id, &reported).unwrap();
            runs.push(StageRun {
                stage_id,
                state: RunState::Passed,
                exit_code: Some(0),
                started_ms: Some(1_700_000_000_000),
                ended_ms: Some(1_700_000_000_000 + id),
                ..StageRun::pending(slave)
            });
        }
        record.stages.push(StageRecord {
            stage: Stage::CaseRun { case: instance.name.into() },
            timeout_ms: 60_000,
            skipped: None,
            runs,
            repetition: 1,
            attempt: 1,
        });
    }
    master.store.put_session(&record).unwrap();
    record
}

const HOSTILE_INSTANCE: &str = "tc_x[mode=\"><img src=x onerror=alert(1)>]";
const HOSTILE_SLAVE: &str = "s<script>,\"3\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trends_chart_each_result_with_its_bounds_and_failed_checks_and_serve_it_as_csv() {
    let m = start().await;
    for (lat_s2, passed_s2) in [(20.0, true), (150.0, false), (30.0, true)] {
        store(
            &m.master,
            SessionState::Passed,
            &[
                instance("tc_lat", CaseState::Passed)
                    .on("s1", &[("latency_ms", 12.5, "ms", Some(true))])
                    .on("s2", &[("latency_ms", lat_s2, "ms", Some(passed_s2))]),
                instance("tc_rate", CaseState::Passed).on("s1", &[("throughput", 80.0, "MB/s", None)]),
                instance(HOSTILE_INSTANCE, CaseState::Passed).on(HOSTILE_SLAVE, &[("x", 1.0, "<u>", None)]),
            ],
        );
    }
    let page = get(m.web, "/trends/ts_vals").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let text = page.text();
    assert_eq!(text.matches("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"metric\"").count(), 3, "{text}");
    // In the definition's order, then the instance only the records know.
    let lat = text.find("data-result=\"latency_ms\"").unwrap();
    let rate = text.find("data-result=\"throughput\"").unwrap();
    let hostile = text.find("data-result=\"x\"").unwrap();
    assert!(lat < rate && rate < hostile);
    assert!(text.contains(">latency_ms (ms)<"), "the unit on the axis");
    assert!(text.contains("class=\"threshold threshold-max\" data-value=\"100\""));
    assert!(text.contains(">max 100 ms<") && text.contains(">min 1 ms<"));
    assert_eq!(text.matches("class=\"point check-failed\"").count(), 1);
    assert!(text.contains("session #2 on s2: 150 ms, check failed"), "{text}");
    assert!(!text[rate..hostile].contains("class=\"threshold"), "tc_rate has no bounds");
    assert!(text[rate..hostile].contains(">throughput (MB/s)<"));
    assert!(!text.contains("<img src=x") && !text.contains("<script>") && !text.contains("<u>"), "escaped");
    assert!(text.contains("href=\"/trends/ts_vals/metrics.csv?instance=tc_lat&#38;result=latency_ms\""), "{text}");

    // The CSV of one chart: a download, with a record per session and slave.
    let csv = get(m.web, "/trends/ts_vals/metrics.csv?instance=tc_lat&result=latency_ms").await;
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(csv.header("content-disposition"), Some("attachment; filename=\"ts_vals-tc_lat-latency_ms.csv\""));
    assert_eq!(csv.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(csv.header("content-security-policy"), Some("default-src 'none'; sandbox"));
    let lines: Vec<&str> = csv.text().split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "session,ended_ms,ended,slave,value,unit,passed");
    assert_eq!(lines.len(), 7, "{lines:?}");
    assert!(lines[1].starts_with("1,") && lines[1].ends_with(",s1,12.5,ms,true"), "{}", lines[1]);
    assert!(lines[4].starts_with("2,") && lines[4].ends_with(",s2,150,ms,false"), "{}", lines[4]);

    // A hostile instance's chart links a CSV that finds it; its slave is quoted.
    let href = format!(
        "/trends/ts_vals/metrics.csv?instance={}&result=x",
        HOSTILE_INSTANCE.bytes().map(|b| format!("%{b:02X}")).collect::<String>()
    );
    let csv = get(m.web, &href).await;
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert!(csv.text().contains(",\"s<script>,\"\"3\"\"\",1,<u>,\r\n"), "{}", csv.text());
    assert!(csv.header("content-disposition").unwrap().contains("ts_vals-tc_x_mode"), "a safe file name");

    for (path, status) in [
        ("/trends/ts_vals/metrics.csv", 400),
        ("/trends/ts_vals/metrics.csv?instance=tc_lat", 400),
        ("/trends/ts_vals/metrics.csv?instance=tc_lat&result=nope", 404),
        ("/trends/no_such_suite/metrics.csv?instance=a&result=b", 404),
    ] {
        let reply = get(m.web, path).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.text());
        assert!(reply.text().contains("id=\"error-message\""), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suite_without_results_says_how_to_report_them() {
    let m = start().await;
    store(&m.master, SessionState::Passed, &[instance("tc_lat", CaseState::Passed).on("s1", &[])]);
    let page = get(m.web, "/trends/ts_vals").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("id=\"no-results\""), "{}", page.text());
    assert!(!page.text().contains("class=\"metric\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_compare_as_json_and_as_a_page_with_regressions_first() {
    let m = start().await;
    let a = store(
        &m.master,
        SessionState::Failed,
        &[
            instance("tc_lat", CaseState::Passed).on("s1", &[("latency_ms", 10.0, "ms", Some(true))]),
            instance("tc_rate", CaseState::Passed).on("s1", &[("throughput", 80.0, "MB/s", None)]),
            instance("tc_other", CaseState::Failed),
        ],
    );
    let b = store(
        &m.master,
        SessionState::Failed,
        &[
            instance("tc_lat", CaseState::Passed).on("s1", &[("latency_ms", 20.0, "ms", Some(true))]),
            instance("tc_rate", CaseState::Failed).on("s1", &[("throughput", 60.0, "MB/s", None)]),
            instance("tc_other", CaseState::Passed),
        ],
    );

    let reply = get(m.web, &format!("/api/compare?a={}&b={}", a.id, b.id)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!((json["a"]["id"].as_u64(), json["b"]["id"].as_u64()), (Some(a.id), Some(b.id)));
    let order: Vec<(&str, &str)> = json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["instance"].as_str().unwrap(), c["change"].as_str().unwrap()))
        .collect();
    assert_eq!(order, [("tc_rate", "regression"), ("tc_lat", "unchanged"), ("tc_other", "fixed")]);
    let latency = &json["cases"][1]["results"][0];
    assert_eq!(latency["name"], "latency_ms");
    assert_eq!(
        (latency["a"].as_f64(), latency["b"].as_f64(), latency["delta_pct"].as_f64()),
        (Some(10.0), Some(20.0), Some(100.0))
    );
    assert_eq!(
        (&latency["better"], &latency["worse"], &latency["past_regress_pct"]),
        (&"lower".into(), &true.into(), &true.into())
    );
    let throughput = &json["cases"][0]["results"][0];
    assert_eq!(
        (&throughput["better"], &throughput["worse"]),
        (&serde_json::Value::Null, &false.into()),
        "no threshold"
    );
    assert_eq!(json["counts"]["regressions"], 1);
    assert_eq!(json["counts"]["fixed"], 1);
    assert_eq!(json["cases"][1]["duration_delta_ms"], 1000);

    // Without a: the previous finished session of b's suite.
    let reply = get(m.web, &format!("/api/compare?b={}", b.id)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["a"]["id"].as_u64(), Some(a.id));

    for (path, status, says) in [
        ("/api/compare".to_string(), 400, "?a=ID&b=ID".to_string()),
        (format!("/api/compare?a=x&b={}", b.id), 400, "`a=x`".to_string()),
        (format!("/api/compare?a=999&b={}", b.id), 404, "no session 999".to_string()),
        (format!("/api/compare?b={}", a.id), 404, "no earlier finished session".to_string()),
    ] {
        let reply = get(m.web, &path).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.text());
        let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert!(json["error"].as_str().unwrap().contains(&says), "{path}: {json}");
    }

    // The page: the same order, worse values marked, the API and CLI named.
    let page = get(m.web, &format!("/compare?a={}&b={}", a.id, b.id)).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let text = page.text();
    let regression = text.find("data-instance=\"tc_rate\" data-change=\"regression\"").expect("tc_rate regressed");
    let unchanged = text.find("data-instance=\"tc_lat\" data-change=\"unchanged\"").expect("tc_lat");
    assert!(regression < unchanged);
    assert!(text.contains("class=\"result-row worse\" data-instance=\"tc_lat\" data-result=\"latency_ms\""), "{text}");
    assert!(text.contains(">+10 ms<") && text.contains(">+100.0%<"), "{text}");
    assert!(text.contains(&format!("xrdtest compare {} {}", a.id, b.id)));
    assert!(text.contains("data-count=\"regressions\"><b class=\"problem\">1</b>"), "{text}");

    // The form alone, and refusals in the page's look.
    let page = get(m.web, "/compare").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("id=\"compare-form\"") && !page.text().contains("id=\"compare-cases\""));
    let page = get(m.web, "/compare?b=zzz").await;
    assert_eq!(page.status, 400);
    assert!(page.text().contains("id=\"compare-error\"") && page.text().contains("id=\"compare-form\""));
    let page = get(m.web, "/compare?a=1&b=999").await;
    assert_eq!(page.status, 404);

    // The history links each session to its comparison with the previous one.
    let page = get(m.web, "/sessions").await;
    assert!(
        page.text().contains(&format!("class=\"compare-previous\" href=\"/compare?b={}\"", b.id)),
        "{}",
        page.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trends_page_stays_fast_with_a_hundred_sessions_of_hundreds_of_values() {
    let m = start().await;
    let names: Vec<String> = (0..50).map(|i| format!("result_{i:02}")).collect();
    for session in 0..100u64 {
        let values: Vec<Value> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                (name.as_str(), (session * 7 + i as u64) as f64 % 97.0, "ms", (i == 0).then_some(session % 10 != 3))
            })
            .collect();
        let instances: Vec<Instance> = ["tc_lat", "tc_rate", "tc_other"]
            .into_iter()
            .map(|name| instance(name, CaseState::Passed).on("s1", &values).on("s2", &values))
            .collect();
        store(&m.master, SessionState::Passed, &instances);
    }
    m.master.store.flush_now().unwrap();
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let page = get(m.web, "/trends/ts_vals").await;
        times.push(started.elapsed());
        assert_eq!(page.status, 200);
        size = page.body.len();
        assert_eq!(page.text().matches("class=\"metric\"").count(), 150);
        // 30,000 values: the charts mark their failed points only.
        assert_eq!(page.text().matches("class=\"point\"").count(), 0);
        assert_eq!(page.text().matches("class=\"point check-failed\"").count(), 3 * 2 * 10);
    }
    times.sort();
    println!("/trends/ts_vals with 100 sessions × 300 values: median {:.2?}, {} KiB", times[2], size / 1024);
    assert!(times[2] < std::time::Duration::from_secs(5), "{times:?}");
    // What docs/results.md promises for this page.
    assert!(size < 1 << 20, "{size} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_200_result_charts_the_page_names_the_rest_with_their_csv() {
    let m = start().await;
    // 3 instances × 70 results: 210 charts, 10 past the cap.
    let names: Vec<String> = (0..70).map(|i| format!("r{i:02}")).collect();
    let values: Vec<Value> = names.iter().map(|name| (name.as_str(), 1.0, "ms", None)).collect();
    let instances: Vec<Instance> = ["tc_lat", "tc_rate", "tc_other"]
        .into_iter()
        .map(|name| instance(name, CaseState::Passed).on("s1", &values))
        .collect();
    let session = store(&m.master, SessionState::Passed, &instances);
    let page = get(m.web, "/trends/ts_vals").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let text = page.text();
    assert_eq!(text.matches("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"metric\"").count(), 200);
    // In case order: the definition's last instance loses its last ten results.
    assert!(text.contains("data-instance=\"tc_other\" data-result=\"r59\""), "the 200th is drawn");
    let left_out = &text[text.find("id=\"charts-left-out\"").expect("the charts left out are named")..];
    assert!(left_out.starts_with("id=\"charts-left-out\" data-count=\"10\""), "{left_out}");
    assert!(left_out.contains("10 more result charts left out"), "{left_out}");
    assert!(left_out.contains(&format!("href=\"/api/sessions/{}/report.json\"", session.id)), "{left_out}");
    assert_eq!(left_out.matches("<li>").count(), 10);
    assert!(!text.contains("data-instance=\"tc_other\" data-result=\"r60\""), "r60 is not drawn");
    let href = "/trends/ts_vals/metrics.csv?instance=tc_other&#38;result=r69";
    assert!(left_out.contains(href), "{left_out}");
    let csv = get(m.web, &href.replace("&#38;", "&")).await;
    assert_eq!(csv.status, 200, "{}", csv.text());
    assert!(csv.text().ends_with(",s1,1,ms,\r\n"), "{}", csv.text());

    // Within the cap, no such note.
    let m = start().await;
    store(&m.master, SessionState::Passed, &[instance("tc_lat", CaseState::Passed).on("s1", &values)]);
    let page = get(m.web, "/trends/ts_vals").await;
    assert_eq!(page.text().matches("class=\"metric\"").count(), 70);
    assert!(!page.text().contains("charts-left-out"));
}
