//! Webhooks (`[[notify]]`) from the real master to an HTTP receiver the test runs on
//! loopback, and `/metrics` read by Prometheus' own text parser (`prometheus-client`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xrdtest_e2e::*;

const SECRET: &str = "e2e-webhook-secret";

/// One POST as the receiver saw it.
#[derive(Debug, Clone)]
struct Hook {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    at: Instant,
}

impl Hook {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} sent no JSON ({e}): {:?}", self.path, self.body))
    }
}

/// An HTTP receiver: one request per connection, recorded; the first POST to `/json` gets
/// a 500 (the master must try it again), every other one a 204.
struct Receiver {
    url: String,
    hooks: Arc<Mutex<Vec<Hook>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let hooks = Arc::new(Mutex::new(Vec::new()));
        let seen = hooks.clone();
        std::thread::spawn(move || {
            let mut failed_once = false;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(hook) = read_request(&mut stream) else { continue };
                let status = if hook.path == "/json" && !failed_once {
                    failed_once = true;
                    "500 Internal Server Error"
                } else {
                    "204 No Content"
                };
                seen.lock().unwrap().push(hook);
                let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        Receiver { url, hooks }
    }

    /// The requests to `path` so far, in arrival order.
    fn to(&self, path: &str) -> Vec<Hook> {
        self.hooks.lock().unwrap().iter().filter(|h| h.path == path).cloned().collect()
    }

    /// Waits until `path` has had `count` requests; returns them.
    fn wait(&self, path: &str, count: usize) -> Vec<Hook> {
        wait_until(Duration::from_secs(30), &format!("{count} webhooks to {path}"), || {
            let hooks = self.to(path);
            if hooks.len() >= count {
                Ok(hooks)
            } else {
                Err(format!("{} so far: {:?}", hooks.len(), hooks.iter().map(|h| h.json()).collect::<Vec<_>>()))
            }
        })
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Hook> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
            break;
        }
        let (name, value) = line.trim().split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Hook { path, headers, body, at: Instant::now() })
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body`, computed here independently of the master.
fn expected_signature(body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The exposition parsed by `prometheus_client.parser`: family → (type, samples as
/// `(name, labels, value)`).
type Families = BTreeMap<String, (String, Vec<(String, BTreeMap<String, String>, f64)>)>;

const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = [family.type, [[s.name, s.labels, s.value] for s in family.samples]]
print(json.dumps(families))
"#;

fn parse_exposition(text: &str) -> Families {
    let mut child = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test installs prometheus-client)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("the exposition to the parser");
    let output = child.wait_with_output().expect("the parser's answer");
    assert!(output.status.success(), "prometheus_client refused the exposition:\n{}\n{text}", describe(&output));
    serde_json::from_slice(&output.stdout).expect("the parser's JSON")
}

/// The value of the one sample `name` with these labels.
fn sample(families: &Families, family: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (_, samples) = families.get(family).unwrap_or_else(|| panic!("no family {family} in {families:?}"));
    let found: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, value)| *value)
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?} in {samples:?}");
    found[0]
}

#[test]
fn webhooks_are_signed_retried_shaped_and_filtered_and_metrics_parse() {
    let receiver = Receiver::start();
    let url = &receiver.url;
    let options = MasterOptions {
        extra: format!(
            "dashboard_url = \"http://dash.lab.test/\"\n\
             [[notify]]\nurl = \"{url}/json\"\nsecret = \"{SECRET}\"\non = \"always\"\nsuites = [\"ts_hooks\"]\n\
             [[notify]]\nurl = \"{url}/slack\"\nformat = \"slack\"\n\
             [[notify]]\nurl = \"{url}/matrix\"\nformat = \"matrix\"\non = \"always\"\nsuites = [\"ts_hooks\"]\n\
             [[notify]]\nurl = \"{url}/change\"\non = \"change\"\n"
        ),
        ..MasterOptions::default()
    };
    let mut env = Env::build(options, |dir| {
        let flag = dir.join("pass");
        vec![
            Suite::new("ts_hooks", &["h1", "h2"])
                .case(Case::new("flip").run(format!("test -f '{}' || exit 3\n", flag.display()))),
            Suite::new("ts_quiet", &["h2"]).extra("notify = \"never\"").case(Case::new("bad").run("exit 1\n")),
        ]
    });
    let flag = env.path().join("pass");
    env.start_slaves(&["h1", "h2"]);
    let api = env.api();
    let run = |suite: &str, expected: &str| {
        let id = api.run(suite);
        let record = api.wait_final(id, Duration::from_secs(30));
        assert_eq!(state(&record), expected, "{}", summarize(&record));
        id
    };

    // A `never` suite first: had it sent anything, it would come before what follows.
    run("ts_quiet", "failed");
    let s1 = run("ts_hooks", "failed");
    std::fs::write(&flag, "").unwrap();
    let s2 = run("ts_hooks", "passed");
    let s3 = run("ts_hooks", "passed");
    std::fs::remove_file(&flag).unwrap();
    let s4 = run("ts_hooks", "failed");

    // `json`, `always`, signed: every ts_hooks session, the first one twice (500, then 204).
    let json = receiver.wait("/json", 5);
    let (refused, retried) = (&json[0], &json[1]);
    assert_eq!(refused.body, retried.body, "a retry sends the same bytes");
    assert_eq!(refused.header("X-Xrdtest-Delivery"), retried.header("X-Xrdtest-Delivery"));
    let waited = retried.at - refused.at;
    assert!(waited >= Duration::from_millis(900), "retried after {waited:?}; the first wait is 1 s");
    for hook in &json {
        assert_eq!(hook.header("X-Xrdtest-Signature"), Some(expected_signature(&hook.body).as_str()), "{hook:?}");
        assert_eq!(hook.header("X-Xrdtest-Event"), Some("session.finished"));
        assert_eq!(hook.header("Content-Type"), Some("application/json"));
    }
    let bodies: Vec<Value> = json[1..].iter().map(Hook::json).collect();
    let ids: Vec<u64> = bodies.iter().map(|b| b["session"]["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [s1, s2, s3, s4]);
    let first = &bodies[0];
    assert_eq!(first["format"], "xrdtest-webhook");
    assert_eq!(first["version"], 1);
    assert_eq!(first["event"], "session.finished");
    let session = &first["session"];
    assert_eq!(session["suite"], "ts_hooks");
    assert_eq!((session["state"].as_str(), session["verdict"].as_str()), (Some("failed"), Some("failed")));
    assert_eq!(session["passed"], false);
    assert!(session["reason"].as_str().is_some_and(|r| r.contains("flip")), "{session}");
    assert_eq!(session["cases"], json!({ "total": 1, "passed": 0, "failed": 1, "not_run": 0, "flaky": 0 }));
    assert_eq!(session["failed_cases"], json!(["flip"]));
    assert_eq!(session["url"], format!("http://dash.lab.test/sessions/{s1}"));
    assert_eq!(session["slaves"], json!(["h1", "h2"]));
    assert!(session["commit"].is_null(), "a local folder has no commit");
    let record = api.session(s1);
    assert_eq!(session["ended_ms"], record["ended_ms"]);
    assert_eq!(session["started_ms"], record["started_ms"]);
    assert_eq!(
        session["duration_ms"].as_u64(),
        Some(record["ended_ms"].as_u64().unwrap() - record["started_ms"].as_u64().unwrap())
    );
    assert!(first["previous"].is_null(), "the suite's first session: {first}");
    assert_eq!(first["change"], "regression");
    assert_eq!(bodies[1]["previous"], json!({ "id": s1, "state": "failed" }));
    assert_eq!(bodies[1]["change"], "fix");
    assert_eq!(bodies[1]["session"]["passed"], true);
    assert!(bodies[2]["change"].is_null(), "a pass after a pass: {}", bodies[2]);
    assert_eq!(bodies[3]["change"], "regression");

    // `change` (every suite, default json, unsigned): the regression, the fix, not the
    // repeat, the regression again; ts_quiet's `never` overrides it.
    let change = receiver.wait("/change", 3);
    let changed: Vec<(u64, String)> = change
        .iter()
        .map(|h| (h.json()["session"]["id"].as_u64().unwrap(), h.json()["change"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(changed, [(s1, "regression".into()), (s2, "fix".into()), (s4, "regression".into())]);
    assert!(change.iter().all(|h| h.header("X-Xrdtest-Signature").is_none()), "no secret, no signature");

    // `slack`, default `failure`, every suite: the two failures of ts_hooks, not ts_quiet's.
    let slack = receiver.wait("/slack", 2);
    let message = slack[0].json();
    let keys: Vec<&String> = message.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["blocks", "text"], "{message}");
    assert_eq!(message["text"], format!("ts_hooks #{s1} failed (regression)"));
    assert_eq!(message["blocks"][0]["type"], "section");
    assert_eq!(message["blocks"][0]["text"]["type"], "mrkdwn");
    let text = message["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(text.contains(&format!("<http://dash.lab.test/sessions/{s1}|#{s1}>")) && text.contains("`flip`"), "{text}");
    assert_eq!(message["blocks"][1]["type"], "context");
    assert_eq!(slack[1].json()["text"], format!("ts_hooks #{s4} failed (regression)"));

    // `matrix`, `always`: an m.text message with its HTML twin.
    let matrix = receiver.wait("/matrix", 4);
    let fix = matrix[1].json();
    assert_eq!(fix["msgtype"], "m.text");
    assert_eq!(fix["format"], "org.matrix.custom.html");
    assert!(fix["body"].as_str().unwrap().starts_with(&format!("ts_hooks #{s2} passed (fixed)")), "{fix}");
    let html = fix["formatted_body"].as_str().unwrap();
    assert!(html.contains(&format!("<a href=\"http://dash.lab.test/sessions/{s2}\">#{s2}</a>")), "{html}");

    // Nothing else came: ts_quiet told nobody.
    let all = receiver.hooks.lock().unwrap().clone();
    assert!(all.iter().all(|h| h.json().to_string().contains("ts_hooks")), "{all:?}");

    // `/metrics`, parsed by Prometheus' client library. The counters move when the master
    // has read each answer: wait for the last one.
    let delivered = 4 + 3 + 2 + 4;
    let families = wait_until(Duration::from_secs(20), "every webhook counted", || {
        let (status, text) = api.request("GET", "/metrics", None).map_err(|e| e.to_string())?;
        let text = text.as_str().map(str::to_string).ok_or_else(|| format!("{status}: {text}"))?;
        let families = parse_exposition(&text);
        match sample(&families, "xrdtest_webhooks_sent", "xrdtest_webhooks_sent_total", &[]) {
            sent if sent as usize == delivered => Ok(families),
            sent => Err(format!("{sent} sent")),
        }
    });
    assert_eq!(families["xrdtest_webhooks_sent"].0, "counter");
    assert_eq!(sample(&families, "xrdtest_webhooks_failed", "xrdtest_webhooks_failed_total", &[]), 0.0);
    assert_eq!(sample(&families, "xrdtest_alert_mails_sent", "xrdtest_alert_mails_sent_total", &[]), 0.0);
    let sessions = |suite: &str, state: &str| {
        sample(&families, "xrdtest_sessions", "xrdtest_sessions", &[("suite", suite), ("state", state)])
    };
    assert_eq!(families["xrdtest_sessions"].0, "gauge");
    assert_eq!((sessions("ts_hooks", "failed"), sessions("ts_hooks", "passed")), (2.0, 2.0));
    assert_eq!((sessions("ts_quiet", "failed"), sessions("ts_quiet", "passed")), (1.0, 0.0));
    assert_eq!(sessions("ts_hooks", "running"), 0.0);
    assert_eq!(families["xrdtest_stage_duration_seconds"].0, "histogram");
    // Every stage kind ran on each slave of each session: ts_hooks 4 × 2, ts_quiet 1.
    for stage in ["suite_init", "case_init", "case_run"] {
        let name = "xrdtest_stage_duration_seconds";
        let count = sample(&families, name, &format!("{name}_count"), &[("stage", stage)]);
        assert_eq!(count, 9.0, "{stage}");
        assert_eq!(sample(&families, name, &format!("{name}_bucket"), &[("stage", stage), ("le", "+Inf")]), count);
        assert!(sample(&families, name, &format!("{name}_sum"), &[("stage", stage)]) >= 0.0);
    }
    let gauge = |name: &str| sample(&families, name, name, &[]);
    assert_eq!(gauge("xrdtest_slaves_connected"), 2.0);
    assert_eq!(gauge("xrdtest_hypervisors_connected"), 0.0);
    assert_eq!((gauge("xrdtest_sessions_queued"), gauge("xrdtest_sessions_running")), (0.0, 0.0));
    let log = env.master.log();
    assert!(!log.contains(SECRET), "the secret stays out of the log");
    assert!(log.contains("webhook not sent; will retry"), "the retry is logged");
}
