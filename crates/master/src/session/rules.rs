//! XrdTest's failure rules, as plain data and functions.
//!
//! - suite init fails on any slave: no case runs; suite finalize still runs (cleanup);
//! - a case's init fails: its run is skipped, its finalize runs, the next case goes on;
//! - a case's run or finalize fails: the case fails, the next goes on;
//! - exit-first: once a case instance has ended failed, no more case stages run;
//! - cancel: every stage left is skipped except suite finalize.
//!
//! Case rules are per attempt of a case instance ([`AttemptKey`]): a retry starts clean.

use std::collections::BTreeSet;

use xrdtest_proto::Stage;

use crate::model::SessionState;

/// Whether a stage runs, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Run,
    Skip(String),
}

/// One attempt of one case instance: its case record's index and the attempt number.
pub type AttemptKey = (usize, u32);

/// What has happened so far in a session, as far as the rules care.
#[derive(Debug, Default, Clone)]
pub struct Rules {
    suite_init_failed: bool,
    failed_inits: BTreeSet<AttemptKey>,
    failed_attempts: BTreeSet<AttemptKey>,
    /// Case instances that ended failed (after their last attempt), in order, once each.
    failed_cases: Vec<String>,
    /// Case instances that failed, then passed on a later attempt.
    flaky_cases: Vec<String>,
    /// With exit-first: the first case instance that ended failed stops the rest.
    exit_first: bool,
    first_failure: Option<String>,
    suite_finalize_failed: bool,
    cancelled: Option<StopRequest>,
}

/// Why a session must stop early: a cancel (by a user, or the master stopping) ends it
/// `cancelled`; an abort (its cluster's hypervisor went away) ends it `failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopRequest {
    pub reason: String,
    pub failure: bool,
}

impl StopRequest {
    pub fn cancel(reason: impl Into<String>) -> StopRequest {
        StopRequest { reason: reason.into(), failure: false }
    }

    pub fn abort(reason: impl Into<String>) -> StopRequest {
        StopRequest { reason: reason.into(), failure: true }
    }

    /// The final state a session stopped this way ends in.
    pub fn final_state(&self) -> SessionState {
        if self.failure {
            SessionState::Failed
        } else {
            SessionState::Cancelled
        }
    }
}

impl Rules {
    /// Rules for a session that stops after its first failed case when `exit_first`.
    pub fn new(exit_first: bool) -> Rules {
        Rules { exit_first, ..Rules::default() }
    }

    /// Whether `stage` (of case attempt `attempt`, for a case's stage) runs.
    pub fn decide(&self, stage: &Stage, attempt: Option<AttemptKey>) -> Decision {
        if *stage == Stage::SuiteFinalize {
            return Decision::Run;
        }
        if let Some(stop) = &self.cancelled {
            let how = if stop.failure { "aborted" } else { "cancelled" };
            return Decision::Skip(format!("session {how}: {}", stop.reason));
        }
        if self.suite_init_failed {
            return Decision::Skip("suite initialization failed".into());
        }
        if let (Some(failed), Some(_)) = (&self.first_failure, stage.case()) {
            return Decision::Skip(format!("exit-first: case {failed} failed"));
        }
        if let (Stage::CaseRun { case }, Some(key)) = (stage, attempt) {
            if self.failed_inits.contains(&key) {
                return Decision::Skip(format!("initialization of case {case} failed"));
            }
        }
        Decision::Run
    }

    /// Records that `stage` ended, `passed` on every slave or not.
    pub fn record(&mut self, stage: &Stage, attempt: Option<AttemptKey>, passed: bool) {
        if passed {
            return;
        }
        match (stage, attempt) {
            (Stage::SuiteInit, _) => self.suite_init_failed = true,
            (Stage::SuiteFinalize, _) => self.suite_finalize_failed = true,
            (Stage::CaseInit { .. }, Some(key)) => {
                self.failed_inits.insert(key);
                self.failed_attempts.insert(key);
            }
            (_, Some(key)) => {
                self.failed_attempts.insert(key);
            }
            (_, None) => {}
        }
    }

    /// Whether an attempt of a case instance failed (in any of its stages).
    pub fn attempt_failed(&self, attempt: AttemptKey) -> bool {
        self.failed_attempts.contains(&attempt)
    }

    /// Records how a case instance ended, after its last attempt: `failed` or, when it
    /// failed before and passed now, `flaky`.
    pub fn case_ended(&mut self, name: &str, failed: bool, flaky: bool) {
        let list = if failed {
            if self.exit_first && self.first_failure.is_none() {
                self.first_failure = Some(name.to_string());
            }
            &mut self.failed_cases
        } else if flaky {
            &mut self.flaky_cases
        } else {
            return;
        };
        if !list.iter().any(|known| known == name) {
            list.push(name.to_string());
        }
    }

    pub fn cancel(&mut self, reason: impl Into<String>) {
        self.stop(StopRequest::cancel(reason));
    }

    /// Records a cancel or an abort; only the first one counts.
    pub fn stop(&mut self, request: StopRequest) {
        self.cancelled.get_or_insert(request);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.is_some()
    }

    /// Whether no more case stage may run (a retry or a soak's next pass would be skipped).
    pub fn cases_stopped(&self) -> bool {
        self.cancelled.is_some() || self.suite_init_failed || self.first_failure.is_some()
    }

    /// The session's final state and, unless it passed cleanly, why: a session whose only
    /// problems are flaky cases passes, and says so.
    pub fn outcome(&self) -> (SessionState, Option<String>) {
        if let Some(stop) = &self.cancelled {
            return (stop.final_state(), Some(stop.reason.clone()));
        }
        let mut reasons = Vec::new();
        if self.suite_init_failed {
            reasons.push("suite initialization failed".to_string());
        }
        if !self.failed_cases.is_empty() {
            reasons.push(format!("failed cases: {}", self.failed_cases.join(", ")));
        }
        if let Some(first) = &self.first_failure {
            reasons.push(format!("exit-first: no case ran after {first} failed"));
        }
        if self.suite_finalize_failed {
            reasons.push("suite finalization failed".to_string());
        }
        let flaky = (!self.flaky_cases.is_empty()).then(|| format!("flaky cases: {}", self.flaky_cases.join(", ")));
        if reasons.is_empty() {
            (SessionState::Passed, flaky)
        } else {
            reasons.extend(flaky);
            (SessionState::Failed, Some(reasons.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init(name: &str) -> Stage {
        Stage::CaseInit { case: name.to_string() }
    }
    fn run(name: &str) -> Stage {
        Stage::CaseRun { case: name.to_string() }
    }
    fn fin(name: &str) -> Stage {
        Stage::CaseFinalize { case: name.to_string() }
    }
    const A: Option<AttemptKey> = Some((0, 1));
    const B: Option<AttemptKey> = Some((1, 1));

    #[test]
    fn everything_runs_when_everything_passes() {
        let mut rules = Rules::default();
        for (stage, key) in
            [(Stage::SuiteInit, None), (init("a"), A), (run("a"), A), (fin("a"), A), (Stage::SuiteFinalize, None)]
        {
            assert_eq!(rules.decide(&stage, key), Decision::Run);
            rules.record(&stage, key, true);
        }
        assert_eq!(rules.outcome(), (SessionState::Passed, None));
    }

    #[test]
    fn failed_suite_init_skips_every_case_but_runs_suite_finalize() {
        let mut rules = Rules::default();
        rules.record(&Stage::SuiteInit, None, false);
        for stage in [init("a"), run("a"), fin("a")] {
            assert!(matches!(rules.decide(&stage, A), Decision::Skip(r) if r.contains("suite initialization")));
        }
        assert_eq!(rules.decide(&Stage::SuiteFinalize, None), Decision::Run);
        assert!(rules.cases_stopped());
        assert_eq!(rules.outcome().0, SessionState::Failed);
    }

    #[test]
    fn failed_case_init_skips_its_run_only() {
        let mut rules = Rules::default();
        rules.record(&init("a"), A, false);
        assert!(matches!(rules.decide(&run("a"), A), Decision::Skip(_)));
        assert_eq!(rules.decide(&run("a"), Some((0, 2))), Decision::Run, "a retry runs again");
        assert_eq!(rules.decide(&fin("a"), A), Decision::Run);
        assert_eq!(rules.decide(&init("b"), B), Decision::Run);
        assert_eq!(rules.decide(&run("b"), B), Decision::Run);
        assert!(rules.attempt_failed((0, 1)) && !rules.attempt_failed((0, 2)));
        rules.case_ended("a", true, false);
        let (state, reason) = rules.outcome();
        assert_eq!(state, SessionState::Failed);
        assert_eq!(reason.unwrap(), "failed cases: a");
    }

    #[test]
    fn failed_run_or_finalize_fails_the_case_and_goes_on() {
        let mut rules = Rules::default();
        rules.record(&run("a"), A, false);
        rules.record(&fin("b"), B, false);
        assert_eq!(rules.decide(&init("c"), Some((2, 1))), Decision::Run);
        assert!(rules.attempt_failed((0, 1)) && rules.attempt_failed((1, 1)) && !rules.attempt_failed((2, 1)));
        rules.case_ended("a", true, false);
        rules.case_ended("b", true, false);
        rules.case_ended("a", true, false);
        assert_eq!(rules.outcome().1.unwrap(), "failed cases: a, b");
    }

    #[test]
    fn flaky_cases_pass_the_session_and_say_so() {
        let mut rules = Rules::default();
        rules.case_ended("a", false, true);
        rules.case_ended("b", false, false);
        assert_eq!(rules.outcome(), (SessionState::Passed, Some("flaky cases: a".into())));
        rules.case_ended("c", true, false);
        assert_eq!(rules.outcome(), (SessionState::Failed, Some("failed cases: c; flaky cases: a".into())));
    }

    #[test]
    fn exit_first_skips_every_case_after_the_first_failed_one() {
        let mut rules = Rules::new(true);
        rules.record(&run("a"), A, false);
        assert_eq!(rules.decide(&fin("a"), A), Decision::Run, "the failed case's own finalize still runs");
        rules.case_ended("a", true, false);
        assert!(matches!(rules.decide(&init("b"), B), Decision::Skip(r) if r == "exit-first: case a failed"));
        assert_eq!(rules.decide(&Stage::SuiteFinalize, None), Decision::Run);
        assert!(rules.cases_stopped());
        assert_eq!(rules.outcome().1.unwrap(), "failed cases: a; exit-first: no case ran after a failed");
        let mut without = Rules::new(false);
        without.case_ended("a", true, false);
        assert_eq!(without.decide(&init("b"), B), Decision::Run);
    }

    #[test]
    fn cancel_skips_all_but_suite_finalize() {
        let mut rules = Rules::default();
        rules.cancel("by alice");
        rules.cancel("second cancel is ignored");
        assert!(matches!(rules.decide(&init("a"), A), Decision::Skip(r) if r.contains("by alice")));
        assert_eq!(rules.decide(&Stage::SuiteFinalize, None), Decision::Run);
        assert_eq!(rules.outcome(), (SessionState::Cancelled, Some("by alice".into())));
    }

    #[test]
    fn abort_fails_the_session_and_first_stop_wins() {
        let mut rules = Rules::default();
        rules.stop(StopRequest::abort("hypervisor hv1 disconnected"));
        rules.cancel("a later cancel is ignored");
        assert!(
            matches!(rules.decide(&init("a"), A), Decision::Skip(r) if r == "session aborted: hypervisor hv1 disconnected")
        );
        assert_eq!(rules.decide(&Stage::SuiteFinalize, None), Decision::Run);
        assert_eq!(rules.outcome(), (SessionState::Failed, Some("hypervisor hv1 disconnected".into())));
    }
}
