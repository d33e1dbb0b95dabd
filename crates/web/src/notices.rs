//! What a form's action said, kept briefly for the page it redirects to: `POST
//! /clusters/{name}/start` answers `303 /clusters?notice=<id>` and the clusters page shows
//! notice `<id>`. Ids are random, so a link cannot make the page show text of its author's
//! choosing, and only the one who pressed the button knows the id. Held in memory: at most
//! [`KEPT`] notices, each for [`LIFETIME`].

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

/// Most notices kept at once; the oldest go first.
pub const KEPT: usize = 256;
/// How long a notice can be shown (reloading the page shows it again until then).
pub const LIFETIME: Duration = Duration::from_secs(600);
/// Longest text kept.
const MAX_TEXT: usize = 4000;

/// The outcome of an action on one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The cluster it is about (the page shows it in that cluster's card).
    pub cluster: String,
    /// Whether the action was done (else `text` says why not).
    pub ok: bool,
    /// What happened, in a few words (`Not started:`), shown in bold before `text`.
    pub headline: String,
    pub text: String,
}

pub struct Notices {
    kept: Mutex<VecDeque<(String, Instant, Notice)>>,
    rng: SystemRandom,
}

impl Default for Notices {
    fn default() -> Self {
        Notices { kept: Mutex::new(VecDeque::new()), rng: SystemRandom::new() }
    }
}

impl Notices {
    /// Keeps `notice` and returns its id; `None` if the system has no random numbers.
    pub fn put(&self, mut notice: Notice) -> Option<String> {
        let mut bytes = [0u8; 16];
        self.rng.fill(&mut bytes).ok()?;
        let id = hex::encode(bytes);
        if notice.text.len() > MAX_TEXT {
            let mut end = MAX_TEXT;
            while !notice.text.is_char_boundary(end) {
                end -= 1;
            }
            notice.text.truncate(end);
            notice.text.push('…');
        }
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        kept.retain(|(_, at, _)| now.duration_since(*at) < LIFETIME);
        while kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back((id.clone(), now, notice));
        Some(id)
    }

    /// The notice of `id`, while it is kept.
    pub fn get(&self, id: &str) -> Option<Notice> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter().find(|(key, at, _)| key == id && at.elapsed() < LIFETIME).map(|(_, _, notice)| notice.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(text: &str) -> Notice {
        Notice { cluster: "c1".into(), ok: false, headline: "Not started:".into(), text: text.into() }
    }

    #[test]
    fn notices_are_found_by_their_random_id_only() {
        let notices = Notices::default();
        let id = notices.put(notice("no room")).expect("an id");
        assert_eq!(id.len(), 32);
        assert_eq!(notices.get(&id), Some(notice("no room")));
        assert_eq!(notices.get("0123"), None);
        assert_ne!(notices.put(notice("again")), Some(id));
    }

    #[test]
    fn old_notices_make_room_and_long_texts_are_cut() {
        let notices = Notices::default();
        let first = notices.put(notice("first")).expect("an id");
        for _ in 0..KEPT {
            notices.put(notice("more"));
        }
        assert_eq!(notices.get(&first), None);
        let long = notices.put(notice(&"é".repeat(MAX_TEXT))).expect("an id");
        let text = notices.get(&long).expect("kept").text;
        assert!(text.len() <= MAX_TEXT + '…'.len_utf8() && text.ends_with('…'));
    }
}
