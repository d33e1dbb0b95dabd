//! Alert mail from the real master to a real SMTP server (aiosmtpd) on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use xrdtest_e2e::*;

/// Saves every message as a JSON file: recipients, subject, body.
const SINK: &str = r#"
import email, email.policy, itertools, json, os

class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.numbers = itertools.count()

    @classmethod
    def from_cli(cls, parser, directory):
        return cls(directory)

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        record = {"rcpt_tos": envelope.rcpt_tos, "subject": str(message["subject"]),
                  "body": message.get_content().replace("\r\n", "\n")}
        number = next(self.numbers)
        temporary = os.path.join(self.directory, ".%04d.tmp" % number)
        with open(temporary, "w") as file:
            json.dump(record, file)
        os.rename(temporary, os.path.join(self.directory, "%04d.json" % number))
        return "250 OK"
"#;

struct Smtp {
    child: Child,
    port: u16,
    mails: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Smtp {
    fn start(dir: &Path) -> Smtp {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mails = dir.join("mails");
        std::fs::create_dir_all(&mails).unwrap();
        std::fs::write(dir.join("xrdtest_sink.py"), SINK).unwrap();
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "xrdtest_sink.Sink"])
            .arg(&mails)
            .env("PYTHONPATH", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m aiosmtpd (scripts/test installs aiosmtpd)");
        wait_until(Duration::from_secs(20), "aiosmtpd to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())
        });
        Smtp { child, port, mails }
    }

    fn received(&self) -> Vec<serde_json::Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.mails)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files.iter().map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap()).collect()
    }
}

#[test]
fn a_failed_session_mails_the_suite_and_every_case_and_a_session_that_could_not_start_mails_too() {
    let scratch = tempfile::Builder::new().prefix("xrdtest-e2e-smtp-").tempdir().unwrap();
    let smtp = Smtp::start(scratch.path());
    let options = MasterOptions {
        slave_wait: "1s".into(),
        extra: format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {}\nfrom = \"xrdtest@lab.test\"\ndashboard_url = \"http://dash.lab.test\"\nretry_delay = \"1s\"\n",
            smtp.port
        ),
        ..MasterOptions::default()
    };
    let mut env = Env::build(options, |_| {
        vec![
            Suite::new("ts_mail", &["a1"])
                .extra("alert_emails = [\"ops@lab.test\", \"dev@lab.test\"]\nalert_failure = \"CASE\"")
                .case(Case::new("good"))
                .case(Case::new("bad").run("for i in $(seq 1 80); do echo line $i; done\nexit 7\n")),
            Suite::new("ts_orphan", &["nobody"]).extra("alert_emails = [\"ops@lab.test\"]").case(Case::new("c")),
        ]
    });
    env.start_slaves(&["a1"]);
    let api = env.api();

    let id = api.run("ts_mail");
    assert_eq!(state(&api.wait_final(id, Duration::from_secs(30))), "failed");
    // CASE policy on failure: the suite mail, then one per case.
    let mails = wait_until(Duration::from_secs(20), "three mails", || {
        let mails = smtp.received();
        if mails.len() >= 3 {
            Ok(mails)
        } else {
            Err(format!("{} mails", mails.len()))
        }
    });
    let suite_mail = &mails[0];
    assert_eq!(suite_mail["rcpt_tos"], serde_json::json!(["ops@lab.test", "dev@lab.test"]));
    let subject = suite_mail["subject"].as_str().unwrap();
    assert!(
        subject.contains("ts_mail") && subject.contains(&format!("#{id}")) && subject.contains("FAILED"),
        "{subject}"
    );
    let body = suite_mail["body"].as_str().unwrap();
    assert!(body.contains(&format!("http://dash.lab.test/sessions/{id}")), "{body}");
    assert!(body.contains("exit code 7") && body.contains("a1"), "{body}");
    assert!(
        body.contains("line 80") && body.contains("line 31") && !body.contains("line 30\n"),
        "the last 50 lines:\n{body}"
    );
    let case_subjects: Vec<&str> = mails[1..3].iter().map(|m| m["subject"].as_str().unwrap()).collect();
    assert!(case_subjects.iter().any(|s| s.contains("case good") && s.contains("PASSED")), "{case_subjects:?}");
    assert!(case_subjects.iter().any(|s| s.contains("case bad") && s.contains("FAILED")), "{case_subjects:?}");

    // A session that could not start is a failure and alerts too.
    let orphan = api.run("ts_orphan");
    let record = api.wait_final(orphan, Duration::from_secs(20));
    assert_eq!(state(&record), "failed");
    let mail = wait_until(Duration::from_secs(20), "the could-not-start mail", || {
        smtp.received()
            .into_iter()
            .find(|m| m["subject"].as_str().unwrap_or("").contains("ts_orphan"))
            .ok_or_else(|| "none yet".to_string())
    });
    assert!(mail["subject"].as_str().unwrap().contains("not connected"), "{mail}");
    let health = api.get("/api/health");
    assert!(health["alerts"]["sent"].as_u64().unwrap() >= 4, "{health}");
}
