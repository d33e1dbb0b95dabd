//! One POST of a webhook body, and when to try it again. Blocking (ureq): callers run it
//! with `spawn_blocking`.
//!
//! A 2xx answer is delivered. A transport error (refused, reset, timed out), a 5xx, 408 or
//! 429 is tried again after the next delay of [`RETRY_DELAYS`]; any other answer (a 3xx,
//! since redirects are not followed, or a 4xx) is given up at once: asking again would get
//! the same.

use std::time::Duration;

use super::sign::{signature, SIGNATURE_HEADER};

/// Waits between tries: 5 tries in all, over about 81 s.
pub const RETRY_DELAYS: [Duration; 4] =
    [Duration::from_secs(1), Duration::from_secs(4), Duration::from_secs(16), Duration::from_secs(60)];
/// Limit for connecting to the receiver.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit for one whole try, from connecting to the end of the answer.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(30);
/// The header naming the event.
pub const EVENT_HEADER: &str = "X-Xrdtest-Event";
/// The header naming the delivery: the same on every try of one body, so a receiver can
/// drop a repeat of one it already took (a try whose answer was lost).
pub const DELIVERY_HEADER: &str = "X-Xrdtest-Delivery";

/// How one try ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver took it (this status).
    Delivered(u16),
    /// Worth another try: why not this time.
    Retry(String),
    /// Not worth another try.
    GiveUp(String),
}

/// What an HTTP status means for the delivery.
pub fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered(status),
        408 | 429 | 500..=599 => Outcome::Retry(format!("HTTP {status}")),
        _ => Outcome::GiveUp(format!("HTTP {status}")),
    }
}

/// The wait before try `next` (2 for the first retry), or `None` when `tries` are used up.
pub fn delay_before(next: u32, delays: &[Duration]) -> Option<Duration> {
    let index = usize::try_from(next.checked_sub(2)?).ok()?;
    delays.get(index).copied()
}

/// The client every try of one receiver uses: bounded in time, statuses as values, no
/// redirects.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(TRY_TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("xrdtest/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// A body ready to send to one receiver.
pub struct Request<'a> {
    pub url: &'a str,
    pub body: &'a [u8],
    pub secret: Option<&'a str>,
    pub event: &'a str,
    pub delivery: &'a str,
}

/// One try.
pub fn post(agent: &ureq::Agent, request: &Request) -> Outcome {
    let mut builder = agent
        .post(request.url)
        .header("Content-Type", "application/json")
        .header(EVENT_HEADER, request.event)
        .header(DELIVERY_HEADER, request.delivery);
    if let Some(secret) = request.secret {
        builder = builder.header(SIGNATURE_HEADER, signature(secret, request.body));
    }
    match builder.send(request.body) {
        Ok(response) => classify(response.status().as_u16()),
        // Connection refused, reset, DNS, TLS, timeouts: the receiver may be back soon.
        Err(err) => Outcome::Retry(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(classify(200), Outcome::Delivered(200));
        assert_eq!(classify(204), Outcome::Delivered(204));
        for status in [408, 429, 500, 502, 503] {
            assert!(matches!(classify(status), Outcome::Retry(_)), "{status}");
        }
        for status in [301, 400, 401, 403, 404, 410, 422] {
            assert!(matches!(classify(status), Outcome::GiveUp(_)), "{status}");
        }
    }

    #[test]
    fn the_backoff_schedule_is_1_4_16_60_seconds_over_5_tries() {
        let waits: Vec<Option<Duration>> = (2..=6).map(|next| delay_before(next, &RETRY_DELAYS)).collect();
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(waits, [secs(1), secs(4), secs(16), secs(60), None]);
        assert_eq!(delay_before(1, &RETRY_DELAYS), None, "the first try does not wait");
        assert_eq!(delay_before(0, &RETRY_DELAYS), None);
    }
}
