//! Webhooks about finished sessions (`[[notify]]` in `master.toml`): a JSON POST to each
//! configured receiver whose criteria the session meets.
//!
//! - [`criteria`] (pure): `always`, `failure`, `change`, a suite's `notify` override, the
//!   `suites` filter.
//! - [`payload`] (pure): the bodies, `json` (the session summary), `slack`, `matrix`.
//! - [`sign`]: `X-Xrdtest-Signature: sha256=<HMAC-SHA256 of the body>` with the secret.
//! - [`deliver`]: one POST (ureq, blocking, bounded in time) and the retry schedule.
//!
//! [`Notifier::session_ended`] only queues the record and returns: a dispatcher task reads
//! the suite's previous finished session from the store (for `change`), decides, builds the
//! bodies and hands each to its receiver's own worker, which posts them in order with
//! retries. A slow or dead receiver so delays neither sessions nor the other receivers. Both
//! queues are bounded: when one is full the webhook is dropped, logged and counted failed.
//! Secrets are never logged; logs name the receiver by its URL's host.

pub mod criteria;
pub mod deliver;
pub mod payload;
pub mod sign;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};
use xrdtest_defs::NotifyPolicy;

use crate::model::{SessionId, SessionRecord, SessionState};
use crate::store::Store;
use criteria::{change, effective, suite_matches, wanted};
use deliver::{Outcome, Request};
use payload::{Context, EVENT};

/// Finished sessions waiting for the dispatcher.
pub const QUEUE_CAPACITY: usize = 256;
/// Bodies waiting for one receiver (it may be retrying an earlier one for a minute).
pub const RECEIVER_QUEUE_CAPACITY: usize = 64;

/// The shape of a webhook's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The session summary.
    Json,
    /// Slack incoming webhooks (`text` and `blocks`).
    Slack,
    /// A Matrix `m.room.message` content (`m.text` with HTML).
    Matrix,
}

impl WebhookFormat {
    pub fn parse(text: &str) -> Option<WebhookFormat> {
        match text.trim().to_ascii_lowercase().as_str() {
            "json" => Some(WebhookFormat::Json),
            "slack" => Some(WebhookFormat::Slack),
            "matrix" => Some(WebhookFormat::Matrix),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Matrix => "matrix",
        }
    }
}

/// One `[[notify]]` entry, checked. Its `Debug` hides the secret and the URL's path and
/// query, which are secrets of their own for some services (Slack's webhook URLs).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `http://` or `https://`.
    pub url: String,
    /// The URL's host, what logs name the receiver by.
    pub host: String,
    pub format: WebhookFormat,
    /// Signs every body when set.
    pub secret: Option<String>,
    /// `always`, `failure` or `change` (a suite's `notify` overrides it).
    pub on: NotifyPolicy,
    /// Only these suites; empty: every suite.
    pub suites: Vec<String>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("host", &self.host)
            .field("format", &self.format)
            .field("secret", &self.secret.as_ref().map(|_| "<hidden>"))
            .field("on", &self.on)
            .field("suites", &self.suites)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("webhooks: the notifier must be started inside a tokio runtime")]
    NoRuntime,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn failed(&self, count: u64) {
        self.failed.fetch_add(count, Ordering::Relaxed);
    }
}

/// A finished session to tell of.
struct Job {
    suite_notify: Option<NotifyPolicy>,
    record: SessionRecord,
}

/// One body for one receiver.
struct Delivery {
    session: SessionId,
    suite: String,
    body: Vec<u8>,
    /// `X-Xrdtest-Delivery`: `<session>-<entry index>`.
    id: String,
}

/// A receiver as the dispatcher sees it: its settings and its worker's queue.
struct Receiver {
    index: usize,
    config: Arc<WebhookConfig>,
    queue: mpsc::Sender<Delivery>,
}

/// Sends webhooks in the background. Cheap to clone; the tasks end when the last clone is
/// dropped and the queues are empty.
#[derive(Clone)]
pub struct Notifier {
    jobs: mpsc::Sender<Job>,
    /// The entries, for counting what a full queue drops.
    configs: Arc<Vec<WebhookConfig>>,
    counters: Arc<Counters>,
}

impl Notifier {
    /// Spawns the dispatcher and one worker per receiver on the current tokio runtime.
    /// Links to sessions go under `dashboard_url` when it is known.
    pub fn start(
        webhooks: Vec<WebhookConfig>,
        dashboard_url: Option<String>,
        store: Store,
    ) -> Result<Notifier, NotifyError> {
        Notifier::start_with_delays(webhooks, dashboard_url, store, deliver::RETRY_DELAYS.to_vec())
    }

    /// [`Notifier::start`] with other waits between tries (tests).
    pub fn start_with_delays(
        webhooks: Vec<WebhookConfig>,
        dashboard_url: Option<String>,
        store: Store,
        delays: Vec<Duration>,
    ) -> Result<Notifier, NotifyError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NotifyError::NoRuntime)?;
        let counters = Arc::new(Counters::default());
        let delays = Arc::new(delays);
        let mut receivers = Vec::new();
        for (index, config) in webhooks.iter().enumerate() {
            if config.url.starts_with("http://") && config.secret.is_none() {
                debug!(host = %config.host, "webhook over plain HTTP without a secret");
            }
            let (queue, deliveries) = mpsc::channel(RECEIVER_QUEUE_CAPACITY);
            let config = Arc::new(config.clone());
            runtime.spawn(post_all(deliveries, config.clone(), delays.clone(), counters.clone()));
            info!(host = %config.host, format = config.format.as_str(), on = config.on.as_str(), suites = ?config.suites, "webhook enabled");
            receivers.push(Receiver { index, config, queue });
        }
        let (jobs, queue) = mpsc::channel(QUEUE_CAPACITY);
        runtime.spawn(dispatch(queue, receivers, dashboard_url, store, counters.clone()));
        Ok(Notifier { jobs, configs: Arc::new(webhooks), counters })
    }

    /// Queues the webhooks about the finished session `record` of a suite whose `notify`
    /// is `suite_notify`. Returns at once.
    pub fn session_ended(&self, suite_notify: Option<NotifyPolicy>, record: &SessionRecord) {
        if !record.state.is_final() {
            warn!(session = record.id, state = record.state.as_str(), "no webhook for an unfinished session");
            return;
        }
        let candidates = self
            .configs
            .iter()
            .filter(|c| suite_matches(&c.suites, &record.suite) && effective(c.on, suite_notify) != NotifyPolicy::Never)
            .count() as u64;
        if candidates == 0 {
            debug!(session = record.id, suite = %record.suite, "no webhook for this suite");
            return;
        }
        if let Err(err) = self.jobs.try_send(Job { suite_notify, record: record.clone() }) {
            let why = match err {
                mpsc::error::TrySendError::Full(_) => "the webhook queue is full",
                mpsc::error::TrySendError::Closed(_) => "the webhook dispatcher stopped",
            };
            warn!(session = record.id, suite = %record.suite, webhooks = candidates, "webhooks dropped: {why}");
            self.counters.failed(candidates);
        }
    }

    /// Webhooks a receiver took (a 2xx answer).
    pub fn sent_count(&self) -> u64 {
        self.counters.sent.load(Ordering::Relaxed)
    }

    /// Webhooks given up on: tries used up, refused, or dropped from a full queue.
    pub fn failed_count(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }
}

/// The id and state of the suite's previous finished session ([`Store::previous_finished`]);
/// none found (or the store unreadable), `change` takes the suite as passing before.
fn previous_finished(store: &Store, record: &SessionRecord) -> Option<(SessionId, SessionState)> {
    match store.previous_finished(&record.suite, record.id) {
        Ok(previous) => previous.map(|s| (s.id, s.state)),
        Err(err) => {
            warn!(session = record.id, suite = %record.suite, error = %err, "cannot read the previous session; taking it as passed");
            None
        }
    }
}

/// The dispatcher: one finished session after another, decides and hands out the bodies.
async fn dispatch(
    mut jobs: mpsc::Receiver<Job>,
    receivers: Vec<Receiver>,
    dashboard_url: Option<String>,
    store: Store,
    counters: Arc<Counters>,
) {
    while let Some(Job { suite_notify, record }) = jobs.recv().await {
        let (store, looked_up) = (store.clone(), record.clone());
        // A sled read: off the async threads.
        let previous = tokio::task::spawn_blocking(move || previous_finished(&store, &looked_up)).await.unwrap_or(None);
        let context = Context {
            previous,
            change: change(record.state, previous.map(|(_, state)| state)),
            link: payload::session_link(dashboard_url.as_deref(), record.id),
        };
        for receiver in &receivers {
            let config = &receiver.config;
            let policy = effective(config.on, suite_notify);
            if !suite_matches(&config.suites, &record.suite) || !wanted(policy, record.state, context.change) {
                continue;
            }
            let delivery = Delivery {
                session: record.id,
                suite: record.suite.clone(),
                body: payload::body(config.format, &record, &context),
                id: format!("{}-{}", record.id, receiver.index),
            };
            debug!(session = record.id, suite = %record.suite, host = %config.host, policy = policy.as_str(), change = ?context.change, "webhook queued");
            if let Err(err) = receiver.queue.try_send(delivery) {
                let why = match err {
                    mpsc::error::TrySendError::Full(_) => "its queue is full",
                    mpsc::error::TrySendError::Closed(_) => "its sender stopped",
                };
                warn!(session = record.id, suite = %record.suite, host = %config.host, "webhook dropped: {why}");
                counters.failed(1);
            }
        }
    }
    debug!("webhook dispatcher stopped");
}

/// One receiver's worker: its bodies in order, each tried until delivered or given up.
async fn post_all(
    mut deliveries: mpsc::Receiver<Delivery>,
    config: Arc<WebhookConfig>,
    delays: Arc<Vec<Duration>>,
    counters: Arc<Counters>,
) {
    let agent = deliver::agent();
    while let Some(delivery) = deliveries.recv().await {
        let delivered = deliver_one(&agent, &config, &delays, delivery).await;
        let counter = if delivered { &counters.sent } else { &counters.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    debug!(host = %config.host, "webhook sender stopped");
}

/// Tries one body until it is delivered (true), given up, or out of tries.
async fn deliver_one(
    agent: &ureq::Agent,
    config: &Arc<WebhookConfig>,
    delays: &[Duration],
    delivery: Delivery,
) -> bool {
    let Delivery { session, suite, body, id } = delivery;
    let body = Arc::new(body);
    let tries = delays.len() as u32 + 1;
    let mut attempt = 1;
    loop {
        let (agent, shared, body, id) = (agent.clone(), config.clone(), body.clone(), id.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            let request = Request {
                url: &shared.url,
                body: &body,
                secret: shared.secret.as_deref(),
                event: EVENT,
                delivery: &id,
            };
            deliver::post(&agent, &request)
        })
        .await
        .unwrap_or_else(|err| Outcome::GiveUp(format!("the sending thread failed: {err}")));
        match outcome {
            Outcome::Delivered(status) => {
                info!(session, suite = %suite, host = %config.host, status, attempt, "webhook sent");
                return true;
            }
            Outcome::GiveUp(why) => {
                error!(session, suite = %suite, host = %config.host, attempt, error = %why, "webhook refused; not retried");
                return false;
            }
            Outcome::Retry(why) => match deliver::delay_before(attempt + 1, delays) {
                Some(wait) => {
                    warn!(session, suite = %suite, host = %config.host, attempt, tries, error = %why, retry_in = ?wait, "webhook not sent; will retry");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                None => {
                    error!(session, suite = %suite, host = %config.host, attempt, error = %why, "webhook not sent; giving up");
                    return false;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Trigger;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::Mutex;

    /// A request as the test receiver saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        path: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
    }

    /// An HTTP receiver on loopback answering the statuses of `answers` in turn (then 200);
    /// returns its base URL and what it saw.
    fn receiver(answers: Vec<u16>) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut headers = Vec::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.trim().split_once(':') {
                        headers.push((name.trim().to_string(), value.trim().to_string()));
                    }
                }
                let length = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                record.lock().unwrap().push(Seen { path, headers, body });
                let status = answers.get(n).copied().unwrap_or(200);
                let _ = write!(stream, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        (url, seen)
    }

    fn entry(url: &str, format: WebhookFormat, secret: Option<&str>, on: NotifyPolicy) -> WebhookConfig {
        WebhookConfig {
            url: url.to_string(),
            host: "127.0.0.1".into(),
            format,
            secret: secret.map(str::to_string),
            on,
            suites: Vec::new(),
        }
    }

    fn finished(id: SessionId, state: SessionState) -> SessionRecord {
        let mut record = SessionRecord::queued(id, "ts", Trigger::Api, vec!["a1".into()], id);
        record.state = state;
        record.ended_ms = Some(id + 1);
        record
    }

    async fn wait_for(what: &str, check: impl Fn() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_regression_is_signed_retried_after_a_500_and_counted_and_a_404_is_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_session(&finished(1, SessionState::Passed)).unwrap();
        let failed = finished(2, SessionState::Failed);
        store.put_session(&failed).unwrap();
        let (good, seen) = receiver(vec![500]);
        let (gone, seen_gone) = receiver(vec![404, 404]);
        let (other, seen_other) = receiver(vec![]);
        let mut filtered = entry(&other, WebhookFormat::Slack, None, NotifyPolicy::Always);
        filtered.suites = vec!["ts_other".into()];
        let notifier = Notifier::start_with_delays(
            vec![
                entry(&format!("{good}/hook"), WebhookFormat::Json, Some("k3y"), NotifyPolicy::Change),
                entry(&gone, WebhookFormat::Matrix, None, NotifyPolicy::Failure),
                filtered,
            ],
            Some("http://dash.test/".into()),
            store.clone(),
            vec![Duration::from_millis(20); 4],
        )
        .unwrap();
        notifier.session_ended(None, &failed);
        wait_for("one sent and one failed", || notifier.sent_count() == 1 && notifier.failed_count() == 1).await;

        let requests = seen.lock().unwrap().clone();
        assert_eq!(requests.len(), 2, "the 500 was retried once: {requests:?}");
        let (first, second) = (&requests[0], &requests[1]);
        assert_eq!(first.path, "/hook");
        assert_eq!(first.body, second.body, "a retry sends the same bytes");
        assert_eq!(first.header("X-Xrdtest-Delivery"), Some("2-0"));
        assert_eq!(second.header("X-Xrdtest-Delivery"), Some("2-0"));
        assert_eq!(first.header("X-Xrdtest-Event"), Some("session.finished"));
        assert_eq!(first.header("Content-Type"), Some("application/json"));
        assert_eq!(second.header("X-Xrdtest-Signature"), Some(sign::signature("k3y", &second.body).as_str()));
        let body: serde_json::Value = serde_json::from_slice(&second.body).unwrap();
        assert_eq!(body["change"], "regression");
        assert_eq!(body["previous"], serde_json::json!({ "id": 1, "state": "passed" }));
        assert_eq!(body["session"]["url"], "http://dash.test/sessions/2");

        let refused = seen_gone.lock().unwrap().clone();
        assert_eq!(refused.len(), 1, "a 404 is not retried");
        assert_eq!(refused[0].header("X-Xrdtest-Signature"), None, "no secret, no signature");
        let matrix: serde_json::Value = serde_json::from_slice(&refused[0].body).unwrap();
        assert_eq!(matrix["msgtype"], "m.text");

        // A repeat failure is no change; `failure` still tells; a `never` suite tells nobody.
        let again = finished(3, SessionState::Failed);
        store.put_session(&again).unwrap();
        notifier.session_ended(None, &again);
        wait_for("the second failure on the failure receiver", || seen_gone.lock().unwrap().len() == 2).await;
        notifier.session_ended(Some(NotifyPolicy::Never), &finished(4, SessionState::Failed));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(seen.lock().unwrap().len(), 2, "no change, no webhook on `change`");
        assert_eq!(seen_gone.lock().unwrap().len(), 2, "`never` overrides `failure`");
        assert!(seen_other.lock().unwrap().is_empty(), "the suite filter keeps ts out");
    }
}
