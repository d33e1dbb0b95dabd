//! Which finished sessions a webhook tells of (pure).
//!
//! - `always`: every one; `failure`: those that did not pass (failed, cancelled,
//!   interrupted); `change`: a regression (the suite's previous finished session passed,
//!   this one did not) or a fix (the reverse); `never` (a suite's `notify` only): none.
//! - A suite's `notify` in `suite.toml`, when set, replaces the `on` of every entry for its
//!   sessions.
//! - With no earlier finished session, the suite is taken to have passed before: its first
//!   failure is a regression, its first pass no change.
//!
//! A flaky pass is a pass.

use xrdtest_defs::NotifyPolicy;

use crate::model::SessionState;

/// How a session's verdict differs from the suite's previous finished session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It passed before; now it does not.
    Regression,
    /// It did not pass before; now it does.
    Fix,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Regression => "regression",
            Change::Fix => "fix",
        }
    }
}

fn passed(state: SessionState) -> bool {
    state == SessionState::Passed
}

/// The change from `previous` (the state of the suite's previous finished session, if it
/// has one) to `state`.
pub fn change(state: SessionState, previous: Option<SessionState>) -> Option<Change> {
    match (passed(previous.unwrap_or(SessionState::Passed)), passed(state)) {
        (true, false) => Some(Change::Regression),
        (false, true) => Some(Change::Fix),
        _ => None,
    }
}

/// The policy that applies: the suite's own `notify` when it has one, else the entry's `on`.
pub fn effective(on: NotifyPolicy, suite_notify: Option<NotifyPolicy>) -> NotifyPolicy {
    suite_notify.unwrap_or(on)
}

/// Whether a finished session in `state` with `change` is told of under `policy`.
pub fn wanted(policy: NotifyPolicy, state: SessionState, change: Option<Change>) -> bool {
    match policy {
        NotifyPolicy::Always => true,
        NotifyPolicy::Failure => !passed(state),
        NotifyPolicy::Change => change.is_some(),
        NotifyPolicy::Never => false,
    }
}

/// Whether an entry's `suites` filter lets `suite` through (empty: every suite).
pub fn suite_matches(suites: &[String], suite: &str) -> bool {
    suites.is_empty() || suites.iter().any(|s| s == suite)
}

#[cfg(test)]
mod tests {
    use super::*;
    use NotifyPolicy::{Always, Failure, Never};
    use SessionState::*;

    #[test]
    fn change_both_ways_and_without_a_previous_session() {
        assert_eq!(change(Failed, Some(Passed)), Some(Change::Regression));
        assert_eq!(change(Cancelled, Some(Passed)), Some(Change::Regression));
        assert_eq!(change(Passed, Some(Failed)), Some(Change::Fix));
        assert_eq!(change(Passed, Some(Interrupted)), Some(Change::Fix));
        assert_eq!(change(Failed, Some(Failed)), None, "still failing");
        assert_eq!(change(Failed, Some(Cancelled)), None, "not passing either way");
        assert_eq!(change(Passed, Some(Passed)), None);
        assert_eq!(change(Failed, None), Some(Change::Regression), "a first failure is news");
        assert_eq!(change(Passed, None), None, "a first pass is not");
    }

    #[test]
    fn each_policy() {
        let cases = [
            // policy, state, change, wanted
            (Always, Passed, None, true),
            (Always, Failed, None, true),
            (Failure, Passed, None, false),
            (Failure, Failed, None, true),
            (Failure, Cancelled, None, true),
            (Failure, Interrupted, None, true),
            (NotifyPolicy::Change, Failed, None, false),
            (NotifyPolicy::Change, Failed, Some(Change::Regression), true),
            (NotifyPolicy::Change, Passed, Some(Change::Fix), true),
            (NotifyPolicy::Change, Passed, None, false),
            (Never, Failed, Some(Change::Regression), false),
        ];
        for (policy, state, change, expected) in cases {
            assert_eq!(wanted(policy, state, change), expected, "{policy:?} {state:?} {change:?}");
        }
    }

    #[test]
    fn a_suite_notify_overrides_on_and_filters_match_names() {
        assert_eq!(effective(Failure, None), Failure);
        assert_eq!(effective(Failure, Some(Never)), Never);
        assert_eq!(effective(Always, Some(NotifyPolicy::Change)), NotifyPolicy::Change);
        assert!(suite_matches(&[], "ts_a"));
        assert!(suite_matches(&["ts_a".into(), "ts_b".into()], "ts_b"));
        assert!(!suite_matches(&["ts_a".into()], "ts_ab"));
    }
}
