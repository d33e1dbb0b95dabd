//! Alert mails about finished sessions (XrdTest's `alert_emails`, `alert_success`,
//! `alert_failure`).
//!
//! - [`compose`] (pure) decides which mails a finished session gives and writes them:
//!   see its module for the policies and the mail format.
//! - [`Alerter`] owns a background task with a bounded queue. [`Alerter::session_ended`]
//!   only queues the session record and returns; the task reads the failed stages' last
//!   output lines from the store, composes the mails and sends them with `lettre` (tokio,
//!   rustls with the ring provider), one after the other in queue order. A mail that cannot
//!   be sent is retried up to [`SmtpConfig::attempts`] times, [`SmtpConfig::retry_delay`]
//!   apart, unless the server refused it permanently (an SMTP 5xx answer); then it is
//!   logged and counted failed. Orchestration never waits for mail.

mod compose;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

pub use compose::{applicable_policy, compose, mail_count, AlertSettings, Mail, TAIL_LINES};

use xrdtest_defs::Suite;

use crate::model::SessionRecord;
use crate::store::Store;

/// Default number of tries per mail.
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// Default wait between two tries of a mail.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(10);
/// Default limit for connecting and for each SMTP command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Finished sessions waiting for their mails to be sent; past this, alerts are dropped
/// (logged and counted failed) rather than held without bound.
pub const QUEUE_CAPACITY: usize = 256;

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpTls {
    /// Plain SMTP (usually port 25 to a local relay).
    #[default]
    None,
    /// Plain connect, then STARTTLS, required: a server that does not offer it fails the
    /// send (usually port 587).
    StartTls,
    /// TLS from the first byte, "SMTPS" (usually port 465).
    Tls,
}

/// Something that wants to know when a session has ended (the alert mailer is one); it
/// must return at once. Defined here, beside its one implementation, so that the mailer
/// needs nothing of the master that calls it.
pub trait SessionEndListener: Send + Sync {
    fn session_ended(&self, suite: &Suite, record: &SessionRecord);
    /// Mails sent and given up, for the API, if this listener sends mail.
    fn delivery_counts(&self) -> Option<(u64, u64)> {
        None
    }
}

/// Where and how alert mails are sent. Its `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// With a username, the client authenticates (PLAIN or LOGIN, as the server offers).
    pub username: Option<String>,
    pub password: Option<String>,
    /// The `From:` address (and envelope sender).
    pub from: String,
    /// Base URL of the dashboard; mails link to `{dashboard_url}/sessions/{id}`.
    pub dashboard_url: Option<String>,
    /// Tries per mail (at least one).
    pub attempts: u32,
    pub retry_delay: Duration,
    /// Limit for connecting and for each SMTP command.
    pub timeout: Duration,
    /// PEM certificates trusted for the server besides the Mozilla roots (a private CA).
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("from", &self.from)
            .field("dashboard_url", &self.dashboard_url)
            .field("attempts", &self.attempts)
            .field("retry_delay", &self.retry_delay)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl Default for SmtpConfig {
    fn default() -> SmtpConfig {
        SmtpConfig {
            host: "localhost".into(),
            port: 25,
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "xrdtest@localhost".into(),
            dashboard_url: None,
            attempts: DEFAULT_ATTEMPTS,
            retry_delay: DEFAULT_RETRY_DELAY,
            timeout: DEFAULT_TIMEOUT,
            ca_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alerts: `{address}` is not a valid sender address: {message}")]
    From { address: String, message: String },
    #[error("alerts: cannot read the SMTP CA file {path}: {source}")]
    CaFile { path: PathBuf, source: std::io::Error },
    #[error("alerts: SMTP TLS settings: {0}")]
    Tls(String),
    #[error("alerts: the alerter must be started inside a tokio runtime")]
    NoRuntime,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
}

/// A finished session whose mails are to be composed and sent.
struct Job {
    settings: AlertSettings,
    record: SessionRecord,
}

/// Sends alert mails in the background. Cheap to clone; the sending task ends when the
/// last clone is dropped and the queue is empty.
#[derive(Clone)]
pub struct Alerter {
    jobs: mpsc::Sender<Job>,
    counters: Arc<Counters>,
}

/// What the sending task needs to deliver a mail.
struct Sender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    attempts: u32,
    retry_delay: Duration,
}

fn transport(config: &SmtpConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, AlertError> {
    let tls = match config.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::StartTls => Tls::Required(tls_parameters(config)?),
        SmtpTls::Tls => Tls::Wrapper(tls_parameters(config)?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.as_str())
        .port(config.port)
        .tls(tls)
        .timeout(Some(config.timeout));
    if let Some(username) = &config.username {
        builder = builder.credentials(Credentials::new(username.clone(), config.password.clone().unwrap_or_default()));
    }
    Ok(builder.build())
}

fn tls_parameters(config: &SmtpConfig) -> Result<TlsParameters, AlertError> {
    let mut builder = TlsParameters::builder(config.host.clone());
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|source| AlertError::CaFile { path: path.clone(), source })?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(AlertError::Tls(format!("{}: no PEM certificate in it", path.display())));
        }
        let certificate =
            Certificate::from_pem(&pem).map_err(|e| AlertError::Tls(format!("{}: {e}", path.display())))?;
        builder = builder.add_root_certificate(certificate);
    }
    builder.build_rustls().map_err(|e| AlertError::Tls(e.to_string()))
}

impl Alerter {
    /// Checks `config` and spawns the sending task on the current tokio runtime.
    pub fn start(config: SmtpConfig, store: Store) -> Result<Alerter, AlertError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| AlertError::NoRuntime)?;
        let from: Mailbox = config.from.parse().map_err(|e: lettre::address::AddressError| AlertError::From {
            address: config.from.clone(),
            message: e.to_string(),
        })?;
        if config.username.is_some() && config.tls == SmtpTls::None {
            warn!(host = %config.host, "SMTP credentials are sent without TLS");
        }
        let sender = Sender {
            transport: transport(&config)?,
            from,
            attempts: config.attempts.max(1),
            retry_delay: config.retry_delay,
        };
        let (jobs, queue) = mpsc::channel(QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        let dashboard_url = config.dashboard_url.clone();
        runtime.spawn(send_all(queue, sender, store, dashboard_url, counters.clone()));
        info!(host = %config.host, port = config.port, tls = ?config.tls, "alert mails enabled");
        Ok(Alerter { jobs, counters })
    }

    /// Queues the mails `settings` asks for about the finished session `record`. Returns at
    /// once: output is read, and mails composed and sent, by the background task.
    pub fn session_ended(&self, settings: AlertSettings, record: &SessionRecord) {
        if !record.state.is_final() {
            warn!(session = record.id, state = record.state.as_str(), "no alert for an unfinished session");
            return;
        }
        let count = mail_count(&settings, record) as u64;
        if count == 0 {
            debug!(session = record.id, suite = %record.suite, "no alert mail for this session");
            return;
        }
        let job = Job { settings, record: record.clone() };
        if let Err(err) = self.jobs.try_send(job) {
            let why = match err {
                mpsc::error::TrySendError::Full(_) => "the alert queue is full",
                mpsc::error::TrySendError::Closed(_) => "the alert sender stopped",
            };
            error!(session = record.id, suite = %record.suite, mails = count, "alert mails dropped: {why}");
            self.counters.failed.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// Mails the SMTP server accepted.
    pub fn sent_count(&self) -> u64 {
        self.counters.sent.load(Ordering::Relaxed)
    }

    /// Mails given up on (all tries failed, refused, or dropped from a full queue).
    pub fn failed_count(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }
}

/// The sending task: one finished session after another, its mails in order.
async fn send_all(
    mut queue: mpsc::Receiver<Job>,
    sender: Sender,
    store: Store,
    dashboard_url: Option<String>,
    counters: Arc<Counters>,
) {
    while let Some(Job { settings, record }) = queue.recv().await {
        let store = store.clone();
        let url = dashboard_url.clone();
        let (id, expected) = (record.id, mail_count(&settings, &record) as u64);
        // Reading output tails is file I/O: off the async threads.
        let composed = tokio::task::spawn_blocking(move || {
            let tail = |stage_id| match store.output_tail(stage_id, TAIL_LINES) {
                Ok(lines) => lines.into_iter().map(|l| l.text).collect(),
                Err(err) => vec![format!("(output unavailable: {err})")],
            };
            compose(&settings, &record, url.as_deref(), &tail)
        })
        .await;
        let mails = match composed {
            Ok(mails) => mails,
            Err(err) => {
                error!(session = id, error = %err, "composing alert mails failed");
                counters.failed.fetch_add(expected, Ordering::Relaxed);
                continue;
            }
        };
        for mail in mails {
            let counter = if sender.deliver(id, &mail).await { &counters.sent } else { &counters.failed };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
    debug!("alert sender stopped");
}

impl Sender {
    fn message(&self, mail: &Mail) -> Result<Message, String> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(mail.subject.clone())
            .message_id(None)
            .header(ContentType::TEXT_PLAIN);
        let mut recipients = 0;
        for to in &mail.to {
            match to.parse::<Mailbox>() {
                Ok(mailbox) => {
                    builder = builder.to(mailbox);
                    recipients += 1;
                }
                Err(err) => warn!(address = %to, error = %err, "invalid alert address skipped"),
            }
        }
        if recipients == 0 {
            return Err("no valid recipient".into());
        }
        builder.body(mail.body.clone()).map_err(|e| e.to_string())
    }

    /// Sends one mail, with retries; whether the server accepted it.
    async fn deliver(&self, session: u64, mail: &Mail) -> bool {
        let message = match self.message(mail) {
            Ok(message) => message,
            Err(err) => {
                error!(session, subject = %mail.subject, error = %err, "alert mail not sent");
                return false;
            }
        };
        for attempt in 1..=self.attempts {
            match self.transport.send(message.clone()).await {
                Ok(_) => {
                    info!(session, to = ?mail.to, subject = %mail.subject, attempt, "alert mail sent");
                    return true;
                }
                Err(err) if err.is_permanent() => {
                    error!(session, subject = %mail.subject, error = %err, "alert mail refused by the SMTP server");
                    return false;
                }
                Err(err) if attempt < self.attempts => {
                    warn!(
                        session, subject = %mail.subject, attempt, attempts = self.attempts, error = %err,
                        retry_in = ?self.retry_delay, "alert mail not sent; will retry"
                    );
                    tokio::time::sleep(self.retry_delay).await;
                }
                Err(err) => {
                    error!(session, subject = %mail.subject, attempts = self.attempts, error = %err, "alert mail not sent; giving up");
                }
            }
        }
        false
    }
}

/// Alerts go out when the master reports a session's end.
impl SessionEndListener for Alerter {
    fn session_ended(&self, suite: &xrdtest_defs::Suite, record: &SessionRecord) {
        Alerter::session_ended(self, AlertSettings::from(suite), record);
    }

    fn delivery_counts(&self) -> Option<(u64, u64)> {
        Some((self.sent_count(), self.failed_count()))
    }
}
