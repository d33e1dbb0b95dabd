//! Alert mails through a real SMTP server: `python3 -m aiosmtpd` on loopback (installed by
//! `scripts/test`), with a small handler that writes every message it accepts to a JSON
//! file. Covers each policy (SUITE, CASE, NONE) for each outcome (passed, failed, could not
//! start), the output excerpt of failed stages, retries, STARTTLS and SMTPS.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xrdtest_defs::AlertPolicy;
use xrdtest_master::alerts::{AlertError, AlertSettings, Alerter, SmtpConfig, SmtpTls};
use xrdtest_master::model::{
    CaseRecord, CaseState, RunState, SessionRecord, SessionState, StageRecord, StageRun, Trigger,
};
use xrdtest_master::store::Store;
use xrdtest_proto::{OutputLine, Stage, StageId};

const SINK: &str = r#"
import email, email.policy, itertools, json, os

class Sink:
    """Writes each accepted message to DIR/NNNN.json (atomically)."""

    def __init__(self, directory):
        self.directory = directory
        self.numbers = itertools.count()

    @classmethod
    def from_cli(cls, parser, directory):
        return cls(directory)

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(message["from"]),
            "to": str(message["to"]),
            "subject": str(message["subject"]),
            "body": message.get_content().replace("\r\n", "\n"),
            "tls": session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
        }
        number = next(self.numbers)
        temporary = os.path.join(self.directory, ".%04d.tmp" % number)
        with open(temporary, "w") as file:
            json.dump(record, file)
        os.rename(temporary, os.path.join(self.directory, "%04d.json" % number))
        return "250 OK"
"#;

/// A received mail, as the sink saw it.
#[derive(Debug, serde::Deserialize)]
struct Received {
    mail_from: String,
    rcpt_tos: Vec<String>,
    from: String,
    to: String,
    subject: String,
    body: String,
    tls: bool,
}

enum ServerTls {
    None,
    StartTls,
    Smtps,
}

/// `python3 -m aiosmtpd` on 127.0.0.1, killed on drop.
struct SmtpServer {
    child: Child,
    port: u16,
    mails: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    fn start(port: u16, tls: ServerTls, cert: Option<&TestCertificate>) -> SmtpServer {
        let check = Command::new("python3").args(["-c", "import aiosmtpd"]).status();
        assert!(
            check.is_ok_and(|s| s.success()),
            "these tests need python3 with aiosmtpd: run scripts/test (it installs it) or `pip install aiosmtpd`"
        );
        let dir = tempfile::tempdir().unwrap();
        let mails = dir.path().join("mails");
        std::fs::create_dir(&mails).unwrap();
        std::fs::write(dir.path().join("xrdtest_sink.py"), SINK).unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut command = Command::new("python3");
        command
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "xrdtest_sink.Sink"])
            .env("PYTHONPATH", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        match tls {
            ServerTls::None => {}
            ServerTls::StartTls => {
                let cert = cert.expect("STARTTLS needs a certificate");
                command.arg("--tlscert").arg(&cert.chain).arg("--tlskey").arg(&cert.key);
            }
            ServerTls::Smtps => {
                let cert = cert.expect("SMTPS needs a certificate");
                command.arg("--smtpscert").arg(&cert.chain).arg("--smtpskey").arg(&cert.key);
            }
        }
        // Handler arguments come after the options.
        command.arg(&mails);
        let mut child = command.spawn().expect("cannot run python3");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                panic!("aiosmtpd exited ({status}):\n{log}");
            }
            assert!(Instant::now() < deadline, "aiosmtpd did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        SmtpServer { child, port, mails, _dir: dir }
    }

    /// Waits until `count` mails have arrived; returns them in arrival order.
    async fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&self.mails)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            if files.len() >= count {
                files.sort();
                return files.iter().map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()).collect();
            }
            assert!(Instant::now() < deadline, "only {} of {count} mails arrived", files.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server certificate for 127.0.0.1 from a fresh private CA, as files.
struct TestCertificate {
    ca: PathBuf,
    chain: PathBuf,
    key: PathBuf,
    _dir: tempfile::TempDir,
}

fn test_certificate() -> TestCertificate {
    let dir = tempfile::tempdir().unwrap();
    let ca = xrdtest_proto::pki::CertificateAuthority::generate().unwrap();
    let issued = ca.issue_server_certificate(&["127.0.0.1".to_string()]).unwrap();
    let paths = (dir.path().join("ca.pem"), dir.path().join("chain.pem"), dir.path().join("key.pem"));
    std::fs::write(&paths.0, ca.cert_pem()).unwrap();
    std::fs::write(&paths.1, &issued.chain_pem).unwrap();
    std::fs::write(&paths.2, &issued.key_pem).unwrap();
    TestCertificate { ca: paths.0, chain: paths.1, key: paths.2, _dir: dir }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn smtp(port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: "xrdtest <xrdtest@master.example.org>".into(),
        dashboard_url: Some("https://xrdtest.example.org/".into()),
        attempts: 3,
        retry_delay: Duration::from_millis(200),
        timeout: Duration::from_secs(10),
        ca_file: None,
    }
}

fn settings(on_success: AlertPolicy, on_failure: AlertPolicy) -> AlertSettings {
    AlertSettings { emails: vec!["ops@example.org".into(), "dev@example.org".into()], on_success, on_failure }
}

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

/// Writes `count` output lines for `stage_id`, in chunks of 7.
fn write_output(store: &Store, stage_id: StageId, count: usize) {
    let lines: Vec<OutputLine> = (1..=count)
        .map(|i| OutputLine { unix_ms: 1_000 + i as u64, text: format!("stage {stage_id} line {i}") })
        .collect();
    for (seq, chunk) in lines.chunks(7).enumerate() {
        store.put_output(stage_id, seq as u64, chunk).unwrap();
    }
}

fn run(slave: &str, stage_id: StageId, state: RunState, exit_code: Option<i32>) -> StageRun {
    StageRun {
        slave: slave.into(),
        stage_id,
        state,
        exit_code,
        started_ms: Some(1_700_000_001_000),
        ended_ms: Some(1_700_000_002_000),
        output_bytes: 100,
        dropped_bytes: 0,
        reason: None,
        logs: Vec::new(),
    }
}

fn case(name: &str, state: CaseState) -> CaseRecord {
    let ran = matches!(state, CaseState::Passed | CaseState::Failed);
    CaseRecord {
        state,
        started_ms: ran.then_some(1_700_000_001_000),
        ended_ms: ran.then_some(1_700_000_003_000),
        attempts: u32::from(ran),
        ..CaseRecord::pending(name, name, Vec::new(), 1)
    }
}

fn stage(stage: Stage, runs: Vec<StageRun>) -> StageRecord {
    StageRecord { stage, timeout_ms: 60_000, skipped: None, runs, repetition: 1, attempt: 1 }
}

fn base(id: u64, state: SessionState) -> SessionRecord {
    SessionRecord {
        id,
        suite: "ts_demo".into(),
        trigger: Trigger::Manual,
        definition_hash: "hash".into(),
        commit: Some("4f2a9c1".into()),
        slaves: vec!["slave1".into(), "slave2".into()],
        state,
        reason: None,
        created_ms: 1_700_000_000_000,
        started_ms: Some(1_700_000_000_500),
        ended_ms: Some(1_700_000_010_000),
        cases: Vec::new(),
        stages: Vec::new(),
        cluster: None,
        options: Default::default(),
    }
}

fn passed(id: u64) -> SessionRecord {
    let mut record = base(id, SessionState::Passed);
    record.cases = vec![case("basic", CaseState::Passed), case("upload", CaseState::Passed)];
    record.stages = vec![
        stage(Stage::CaseRun { case: "basic".into() }, vec![run("slave1", 1, RunState::Passed, Some(0))]),
        stage(Stage::CaseRun { case: "upload".into() }, vec![run("slave1", 2, RunState::Passed, Some(0))]),
    ];
    record
}

/// Case `basic` passes, `fails_on_purpose` fails on slave2 (exit 3; stage 12 has 120 output
/// lines), `hangs` times out on slave1 (stage 13), `skipped` never runs.
fn failed(id: u64) -> SessionRecord {
    let mut record = base(id, SessionState::Failed);
    record.reason = Some("failed cases: fails_on_purpose, hangs".into());
    record.cases = vec![
        case("basic", CaseState::Passed),
        case("fails_on_purpose", CaseState::Failed),
        case("hangs", CaseState::Failed),
        case("skipped", CaseState::NotRun),
    ];
    let mut timed_out = run("slave1", 13, RunState::TimedOut, None);
    timed_out.reason = Some("killed after 60s".into());
    record.stages = vec![
        stage(Stage::CaseRun { case: "basic".into() }, vec![run("slave1", 10, RunState::Passed, Some(0))]),
        stage(
            Stage::CaseRun { case: "fails_on_purpose".into() },
            vec![run("slave1", 11, RunState::Passed, Some(0)), run("slave2", 12, RunState::Failed, Some(3))],
        ),
        stage(Stage::CaseRun { case: "hangs".into() }, vec![timed_out]),
    ];
    record
}

fn could_not_start(id: u64) -> SessionRecord {
    let mut record = base(id, SessionState::Failed);
    record.reason = Some("slave slave2 not connected".into());
    record.started_ms = None;
    record.cases = vec![case("basic", CaseState::NotRun)];
    record
}

async fn wait_counts(alerter: &Alerter, sent: u64, failed: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while (alerter.sent_count(), alerter.failed_count()) != (sent, failed) {
        assert!(
            Instant::now() < deadline,
            "counts: sent {} failed {}, expected {sent} and {failed}",
            alerter.sent_count(),
            alerter.failed_count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_addressed(mail: &Received) {
    assert_eq!(mail.rcpt_tos, ["ops@example.org", "dev@example.org"]);
    assert_eq!(mail.mail_from, "xrdtest@master.example.org");
    assert_eq!(mail.from, "xrdtest <xrdtest@master.example.org>");
    assert_eq!(mail.to, "ops@example.org, dev@example.org");
}

/// Asserts that `body` quotes exactly lines 71..=120 of stage 12 (the last 50 of 120).
fn assert_last_50_lines_of_stage_12(body: &str) {
    let quoted: Vec<&str> = body.lines().filter(|l| l.starts_with("  | stage 12 ")).collect();
    let expected: Vec<String> = (71..=120).map(|i| format!("  | stage 12 line {i}")).collect();
    assert_eq!(quoted, expected, "{body}");
    assert!(body.contains("* case_run:fails_on_purpose on slave2: exit code 3\n  Output (last 50 lines):\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_policy_sends_one_mail_for_each_outcome() {
    let server = SmtpServer::start(free_port(), ServerTls::None, None);
    let (_dir, store) = temp_store();
    write_output(&store, 12, 120);
    write_output(&store, 13, 3);
    let alerter = Alerter::start(smtp(server.port), store).unwrap();
    let suite = settings(AlertPolicy::Suite, AlertPolicy::Suite);
    alerter.session_ended(suite.clone(), &passed(1));
    alerter.session_ended(suite.clone(), &failed(2));
    alerter.session_ended(suite, &could_not_start(3));
    let mails = server.wait_for(3).await;
    wait_counts(&alerter, 3, 0).await;
    for mail in &mails {
        assert_addressed(mail);
        assert!(!mail.tls);
    }

    assert_eq!(mails[0].subject, "[xrdtest] ts_demo #1 PASSED (2 of 2 cases passed)");
    let body = &mails[0].body;
    for line in [
        "Suite:    ts_demo\n",
        "Session:  #1\n",
        "State:    PASSED\n",
        "Trigger:  manual\n",
        "Commit:   4f2a9c1\n",
        "Link:     https://xrdtest.example.org/sessions/1\n",
        "Cases (2 passed, 0 failed):\n  CASE    STATE   DURATION\n  basic   passed  2.0s\n  upload  passed  2.0s\n",
    ] {
        assert!(body.contains(line), "missing {line:?} in:\n{body}");
    }
    assert!(!body.contains("Failures"));

    assert_eq!(mails[1].subject, "[xrdtest] ts_demo #2 FAILED (2 of 4 cases failed, 1 not run)");
    let body = &mails[1].body;
    for line in [
        "State:    FAILED\n",
        "Reason:   failed cases: fails_on_purpose, hangs\n",
        "Link:     https://xrdtest.example.org/sessions/2\n",
        "  CASE              STATE    DURATION\n",
        "  basic             passed   2.0s\n",
        "  fails_on_purpose  FAILED   2.0s\n",
        "  hangs             FAILED   2.0s\n",
        "  skipped           not run  -\n",
        "Failures (2):\n",
        "* case_run:hangs on slave1: timed out after 1m00s (killed after 60s)\n  Output (3 lines):\n  | stage 13 line 1\n",
    ] {
        assert!(body.contains(line), "missing {line:?} in:\n{body}");
    }
    assert_last_50_lines_of_stage_12(body);
    assert!(!body.contains("stage 11 line"), "passed runs quote no output");

    assert_eq!(mails[2].subject, "[xrdtest] ts_demo #3 FAILED (could not start: slave slave2 not connected)");
    let body = &mails[2].body;
    for line in ["State:    FAILED (could not start)\n", "Reason:   slave slave2 not connected\n", "Started:  never\n"]
    {
        assert!(body.contains(line), "missing {line:?} in:\n{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_policy_sends_the_suite_mail_then_one_per_case_that_ran() {
    let server = SmtpServer::start(free_port(), ServerTls::None, None);
    let (_dir, store) = temp_store();
    write_output(&store, 12, 120);
    let mut config = smtp(server.port);
    config.dashboard_url = None;
    let alerter = Alerter::start(config, store).unwrap();
    let case = settings(AlertPolicy::Case, AlertPolicy::Case);
    alerter.session_ended(case.clone(), &failed(7));
    alerter.session_ended(case.clone(), &passed(8));
    alerter.session_ended(case, &could_not_start(9));
    let mails = server.wait_for(8).await;
    wait_counts(&alerter, 8, 0).await;
    let subjects: Vec<&str> = mails.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "[xrdtest] ts_demo #7 FAILED (2 of 4 cases failed, 1 not run)",
            "[xrdtest] ts_demo #7 case basic PASSED",
            "[xrdtest] ts_demo #7 case fails_on_purpose FAILED",
            "[xrdtest] ts_demo #7 case hangs FAILED",
            "[xrdtest] ts_demo #8 PASSED (2 of 2 cases passed)",
            "[xrdtest] ts_demo #8 case basic PASSED",
            "[xrdtest] ts_demo #8 case upload PASSED",
            // A session that could not start ran no case: only the suite's mail.
            "[xrdtest] ts_demo #9 FAILED (could not start: slave slave2 not connected)",
        ]
    );
    for mail in &mails {
        assert_addressed(mail);
        assert!(!mail.body.contains("Link:"), "no dashboard URL, no link:\n{}", mail.body);
    }
    let fails = &mails[2].body;
    for line in [
        "Case:     fails_on_purpose\n",
        "State:    FAILED\n",
        "Session:  #7 (failed)\n",
        "Stages:\n  STAGE     SLAVE   STATE   EXIT  DURATION\n  case_run  slave1  passed  0     1.0s\n  case_run  slave2  failed  3     1.0s\n",
        "Failures (1):\n",
    ] {
        assert!(fails.contains(line), "missing {line:?} in:\n{fails}");
    }
    assert_last_50_lines_of_stage_12(fails);
    assert!(!fails.contains("stage 13"), "only this case's failures");
    assert!(!mails[1].body.contains("Failures"), "{}", mails[1].body);
    assert!(mails[3].body.contains("* case_run:hangs on slave1: timed out after 1m00s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_policy_sends_nothing() {
    let server = SmtpServer::start(free_port(), ServerTls::None, None);
    let (_dir, store) = temp_store();
    let alerter = Alerter::start(smtp(server.port), store).unwrap();
    let none = settings(AlertPolicy::None, AlertPolicy::None);
    alerter.session_ended(none.clone(), &passed(1));
    alerter.session_ended(none.clone(), &failed(2));
    alerter.session_ended(none, &could_not_start(3));
    // SUITE on success only: failures send nothing, and nobody to tell sends nothing.
    let success_only = settings(AlertPolicy::Suite, AlertPolicy::None);
    alerter.session_ended(success_only.clone(), &failed(4));
    alerter.session_ended(success_only.clone(), &could_not_start(5));
    let nobody = AlertSettings { emails: Vec::new(), ..settings(AlertPolicy::Case, AlertPolicy::Case) };
    alerter.session_ended(nobody, &failed(6));
    // Mails go out in queue order: once this marker arrived, nothing else is coming.
    alerter.session_ended(success_only, &passed(99));
    let mails = server.wait_for(1).await;
    wait_counts(&alerter, 1, 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mails_after = server.wait_for(1).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails_after.len(), 1);
    assert_eq!(mails[0].subject, "[xrdtest] ts_demo #99 PASSED (2 of 2 cases passed)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_is_retried_then_counted_failed_without_blocking_the_caller() {
    // Nothing listens on this port: every connection is refused.
    let port = free_port();
    let (_dir, store) = temp_store();
    write_output(&store, 12, 120);
    let mut config = smtp(port);
    config.retry_delay = Duration::from_millis(300);
    let alerter = Alerter::start(config, store).unwrap();
    let began = Instant::now();
    alerter.session_ended(settings(AlertPolicy::Suite, AlertPolicy::Suite), &failed(1));
    let returned = began.elapsed();
    // Far below one retry delay: the caller never waits for delivery (bound loose for loaded CI).
    assert!(returned < Duration::from_millis(250), "session_ended took {returned:?}");
    wait_counts(&alerter, 0, 1).await;
    let gave_up = began.elapsed();
    assert!(gave_up >= Duration::from_millis(600), "3 attempts are 2 delays of 300 ms apart; took {gave_up:?}");

    // A server that accepts and hangs up at once: count the attempts exactly.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let (_dir2, store2) = temp_store();
    let mut config = smtp(address.port());
    config.attempts = 4;
    config.retry_delay = Duration::from_millis(100);
    let alerter = Alerter::start(config, store2).unwrap();
    alerter.session_ended(settings(AlertPolicy::Suite, AlertPolicy::Suite), &passed(2));
    wait_counts(&alerter, 0, 1).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 4, "one connection per attempt");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 4, "no attempt after giving up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_goes_out_once_the_server_is_back() {
    let port = free_port();
    let (_dir, store) = temp_store();
    let mut config = smtp(port);
    config.attempts = 10;
    config.retry_delay = Duration::from_millis(500);
    let alerter = Alerter::start(config, store).unwrap();
    alerter.session_ended(settings(AlertPolicy::Suite, AlertPolicy::Suite), &passed(5));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!((alerter.sent_count(), alerter.failed_count()), (0, 0), "first attempt failed, retry pending");
    let server = SmtpServer::start(port, ServerTls::None, None);
    let mails = server.wait_for(1).await;
    assert_eq!(mails[0].subject, "[xrdtest] ts_demo #5 PASSED (2 of 2 cases passed)");
    wait_counts(&alerter, 1, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_smtps_with_a_private_ca() {
    let cert = test_certificate();
    let starttls = SmtpServer::start(free_port(), ServerTls::StartTls, Some(&cert));
    let smtps = SmtpServer::start(free_port(), ServerTls::Smtps, Some(&cert));
    let plain = SmtpServer::start(free_port(), ServerTls::None, None);
    let suite = settings(AlertPolicy::Suite, AlertPolicy::Suite);

    for (server, tls) in [(&starttls, SmtpTls::StartTls), (&smtps, SmtpTls::Tls)] {
        let (_dir, store) = temp_store();
        let mut config = smtp(server.port);
        config.tls = tls;
        config.ca_file = Some(cert.ca.clone());
        let alerter = Alerter::start(config, store).unwrap();
        alerter.session_ended(suite.clone(), &passed(1));
        let mails = server.wait_for(1).await;
        wait_counts(&alerter, 1, 0).await;
        assert!(mails[0].tls, "{tls:?}: the server saw TLS");
        assert_addressed(&mails[0]);
    }

    // Without the private CA, the server's certificate is not trusted: nothing is sent.
    let (_dir, store) = temp_store();
    let mut config = smtp(starttls.port);
    config.tls = SmtpTls::StartTls;
    config.attempts = 1;
    let alerter = Alerter::start(config, store).unwrap();
    alerter.session_ended(suite.clone(), &passed(2));
    wait_counts(&alerter, 0, 1).await;

    // STARTTLS is required: a server that does not offer it gets no mail in clear text.
    let (_dir, store) = temp_store();
    let mut config = smtp(plain.port);
    config.tls = SmtpTls::StartTls;
    config.ca_file = Some(cert.ca.clone());
    config.attempts = 1;
    let alerter = Alerter::start(config, store).unwrap();
    alerter.session_ended(suite, &passed(3));
    wait_counts(&alerter, 0, 1).await;
    assert_eq!(starttls.wait_for(0).await.len(), 1);
    assert_eq!(plain.wait_for(0).await.len(), 0);
}

#[test]
fn start_checks_its_settings_and_needs_a_runtime() {
    let (_dir, store) = temp_store();
    assert!(matches!(Alerter::start(smtp(25), store.clone()), Err(AlertError::NoRuntime)));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _guard = runtime.enter();
    let mut config = smtp(25);
    config.from = "not an address".into();
    assert!(matches!(Alerter::start(config, store.clone()), Err(AlertError::From { .. })));
    let mut config = smtp(25);
    config.tls = SmtpTls::Tls;
    config.ca_file = Some(Path::new("/nonexistent/ca.pem").to_path_buf());
    assert!(matches!(Alerter::start(config, store.clone()), Err(AlertError::CaFile { .. })));
    let not_pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_pem.path(), "not a certificate").unwrap();
    let mut config = smtp(25);
    config.tls = SmtpTls::StartTls;
    config.ca_file = Some(not_pem.path().to_path_buf());
    assert!(matches!(Alerter::start(config, store), Err(AlertError::Tls(_))));
    let mut config = smtp(25);
    config.username = Some("alerts".into());
    config.password = Some("s3cret".into());
    let shown = format!("{config:?}");
    assert!(!shown.contains("s3cret") && shown.contains("<hidden>"), "{shown}");
}
