//! A limit on how often a warning is logged: a flood of refused connections would otherwise
//! write one line each, and the log would drown what matters.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::now_ms;

/// Says yes at most once a second.
pub struct OncePerSecond(AtomicU64);

impl OncePerSecond {
    pub const fn new() -> OncePerSecond {
        OncePerSecond(AtomicU64::new(0))
    }

    /// True if nothing was allowed in the last second (and then this call counts).
    pub fn allow(&self) -> bool {
        let now = now_ms();
        let last = self.0.load(Ordering::Relaxed);
        // Only the call that logs moves the clock, so a steady flood still logs every second.
        now.saturating_sub(last) >= 1000
            && self.0.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

impl Default for OncePerSecond {
    fn default() -> OncePerSecond {
        OncePerSecond::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_allowed_once_a_second() {
        let limit = OncePerSecond::new();
        assert!(limit.allow());
        assert!(!limit.allow());
        assert!(!limit.allow());
        limit.0.store(now_ms() - 1500, Ordering::Relaxed);
        assert!(limit.allow(), "a second later, after refusals all the while");
        assert!(!limit.allow());
    }
}
