//! The stages of a session and XrdTest's failure rules, as plain data and functions.
//!
//! - suite init fails on any slave: no case runs; suite finalize still runs (cleanup);
//! - a case's init fails: its run is skipped, its finalize runs, the next case goes on;
//! - a case's run or finalize fails: the case fails, the next goes on;
//! - cancel: every stage left is skipped except suite finalize.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use xrdtest_defs::{ScriptSource, Suite};
use xrdtest_proto::Stage;

use crate::model::SessionState;

/// Where a stage's script comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptRef {
    Suite(ScriptSource),
    CaseFile(PathBuf),
}

/// One stage of the plan, before it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStage {
    pub stage: Stage,
    pub timeout: Duration,
    pub script: ScriptRef,
}

/// The stages of a session of `suite`, in order. A case without `finalize.sh` and a suite
/// without `finalize` have no finalize stage.
pub fn plan(suite: &Suite) -> Vec<PlannedStage> {
    let mut stages = vec![PlannedStage {
        stage: Stage::SuiteInit,
        timeout: suite.stage_timeout,
        script: ScriptRef::Suite(suite.initialize.clone()),
    }];
    for case in &suite.tests {
        let timeout = case.effective_timeout(suite);
        stages.push(PlannedStage {
            stage: Stage::CaseInit { case: case.name.clone() },
            timeout,
            script: ScriptRef::CaseFile(case.init.clone()),
        });
        stages.push(PlannedStage {
            stage: Stage::CaseRun { case: case.name.clone() },
            timeout,
            script: ScriptRef::CaseFile(case.run.clone()),
        });
        if let Some(finalize) = &case.finalize {
            stages.push(PlannedStage {
                stage: Stage::CaseFinalize { case: case.name.clone() },
                timeout,
                script: ScriptRef::CaseFile(finalize.clone()),
            });
        }
    }
    if let Some(finalize) = &suite.finalize {
        stages.push(PlannedStage {
            stage: Stage::SuiteFinalize,
            timeout: suite.stage_timeout,
            script: ScriptRef::Suite(finalize.clone()),
        });
    }
    stages
}

/// Whether a stage runs, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Run,
    Skip(String),
}

/// What has happened so far in a session, as far as the rules care.
#[derive(Debug, Default, Clone)]
pub struct Rules {
    suite_init_failed: bool,
    failed_case_inits: BTreeSet<String>,
    failed_cases: BTreeSet<String>,
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
    pub fn decide(&self, stage: &Stage) -> Decision {
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
        if let Stage::CaseRun { case } = stage {
            if self.failed_case_inits.contains(case) {
                return Decision::Skip(format!("initialization of case {case} failed"));
            }
        }
        Decision::Run
    }

    /// Records that `stage` ended, `passed` on every slave or not.
    pub fn record(&mut self, stage: &Stage, passed: bool) {
        if passed {
            return;
        }
        match stage {
            Stage::SuiteInit => self.suite_init_failed = true,
            Stage::CaseInit { case } => {
                self.failed_case_inits.insert(case.clone());
                self.failed_cases.insert(case.clone());
            }
            Stage::CaseRun { case } | Stage::CaseFinalize { case } => {
                self.failed_cases.insert(case.clone());
            }
            Stage::SuiteFinalize => self.suite_finalize_failed = true,
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

    pub fn case_failed(&self, case: &str) -> bool {
        self.failed_cases.contains(case)
    }

    /// Whether a case never ran (suite init failed, or cancelled before it began).
    pub fn suite_init_failed(&self) -> bool {
        self.suite_init_failed
    }

    /// The session's final state and, unless it passed, why.
    pub fn outcome(&self) -> (SessionState, Option<String>) {
        if let Some(stop) = &self.cancelled {
            return (stop.final_state(), Some(stop.reason.clone()));
        }
        let mut reasons = Vec::new();
        if self.suite_init_failed {
            reasons.push("suite initialization failed".to_string());
        }
        if !self.failed_cases.is_empty() {
            let names: Vec<&str> = self.failed_cases.iter().map(String::as_str).collect();
            reasons.push(format!("failed cases: {}", names.join(", ")));
        }
        if self.suite_finalize_failed {
            reasons.push("suite finalization failed".to_string());
        }
        if reasons.is_empty() {
            (SessionState::Passed, None)
        } else {
            (SessionState::Failed, Some(reasons.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(kind: fn(String) -> Stage, name: &str) -> Stage {
        kind(name.to_string())
    }
    fn init(name: &str) -> Stage {
        case(|case| Stage::CaseInit { case }, name)
    }
    fn run(name: &str) -> Stage {
        case(|case| Stage::CaseRun { case }, name)
    }
    fn fin(name: &str) -> Stage {
        case(|case| Stage::CaseFinalize { case }, name)
    }

    #[test]
    fn everything_runs_when_everything_passes() {
        let mut rules = Rules::default();
        for stage in [Stage::SuiteInit, init("a"), run("a"), fin("a"), Stage::SuiteFinalize] {
            assert_eq!(rules.decide(&stage), Decision::Run);
            rules.record(&stage, true);
        }
        assert_eq!(rules.outcome(), (SessionState::Passed, None));
    }

    #[test]
    fn failed_suite_init_skips_every_case_but_runs_suite_finalize() {
        let mut rules = Rules::default();
        rules.record(&Stage::SuiteInit, false);
        for stage in [init("a"), run("a"), fin("a")] {
            assert!(matches!(rules.decide(&stage), Decision::Skip(r) if r.contains("suite initialization")));
        }
        assert_eq!(rules.decide(&Stage::SuiteFinalize), Decision::Run);
        assert_eq!(rules.outcome().0, SessionState::Failed);
    }

    #[test]
    fn failed_case_init_skips_its_run_only() {
        let mut rules = Rules::default();
        rules.record(&init("a"), false);
        assert!(matches!(rules.decide(&run("a")), Decision::Skip(_)));
        assert_eq!(rules.decide(&fin("a")), Decision::Run);
        assert_eq!(rules.decide(&init("b")), Decision::Run);
        assert_eq!(rules.decide(&run("b")), Decision::Run);
        let (state, reason) = rules.outcome();
        assert_eq!(state, SessionState::Failed);
        assert_eq!(reason.unwrap(), "failed cases: a");
    }

    #[test]
    fn failed_run_or_finalize_fails_the_case_and_goes_on() {
        let mut rules = Rules::default();
        rules.record(&run("a"), false);
        rules.record(&fin("b"), false);
        assert_eq!(rules.decide(&init("c")), Decision::Run);
        assert!(rules.case_failed("a") && rules.case_failed("b") && !rules.case_failed("c"));
        assert_eq!(rules.outcome().1.unwrap(), "failed cases: a, b");
    }

    #[test]
    fn cancel_skips_all_but_suite_finalize() {
        let mut rules = Rules::default();
        rules.cancel("by alice");
        rules.cancel("second cancel is ignored");
        assert!(matches!(rules.decide(&init("a")), Decision::Skip(r) if r.contains("by alice")));
        assert_eq!(rules.decide(&Stage::SuiteFinalize), Decision::Run);
        assert_eq!(rules.outcome(), (SessionState::Cancelled, Some("by alice".into())));
    }

    #[test]
    fn abort_fails_the_session_and_first_stop_wins() {
        let mut rules = Rules::default();
        rules.stop(StopRequest::abort("hypervisor hv1 disconnected"));
        rules.cancel("a later cancel is ignored");
        assert!(
            matches!(rules.decide(&init("a")), Decision::Skip(r) if r == "session aborted: hypervisor hv1 disconnected")
        );
        assert_eq!(rules.decide(&Stage::SuiteFinalize), Decision::Run);
        assert_eq!(rules.outcome(), (SessionState::Failed, Some("hypervisor hv1 disconnected".into())));
    }

    #[test]
    fn plan_follows_the_suite() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../suites");
        let report = xrdtest_defs::load_repository(&dir, &dir.join("../clusters"));
        let suite = &report.repository.suites["ts_demo"];
        let stages: Vec<String> = plan(suite).iter().map(|p| p.stage.to_string()).collect();
        assert_eq!(stages.first().map(String::as_str), Some("suite_init"));
        assert_eq!(stages.last().map(String::as_str), Some("suite_finalize"));
        assert!(stages.contains(&"case_run:fails_on_purpose".to_string()));
        // checksum has no finalize.sh, so no finalize stage.
        assert!(!stages.contains(&"case_finalize:checksum".to_string()));
        let timeout = plan(suite).iter().find(|p| p.stage.case() == Some("fails_on_purpose")).unwrap().timeout;
        assert_eq!(timeout, Duration::from_secs(30));
    }
}
