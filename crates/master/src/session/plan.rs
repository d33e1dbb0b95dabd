//! A session's plan as plain data: which case instances it runs, with which tags, how
//! often, and the policies the engine applies as it goes (retries, exit-first, a soak
//! bounded by time). Made once when the session is created, from the suite and the
//! options of the run request ([`RunOptions`]); every check of those options happens
//! here, so a bad request creates no session.
//!
//! Stages are [`Template`]s (one per distinct stage: suite init, each instance's init, run
//! and finalize, suite finalize) and [`Step`]s (one per stage record: a template in a
//! repetition and attempt). The initial steps are every pass of the case list (`repeat`),
//! or one pass for a soak (`for`); the engine adds a retry's steps and a soak's next pass
//! as it goes.
//!
//! Tag precedence in a case's stages, lowest first: the suite's `[tags]`, the case's
//! `[tags]`, the session's `--param`s, the instance's matrix values, then the master's and
//! the slave's built-in tags.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use xrdtest_defs::matrix::case_of;
use xrdtest_defs::suite::{MAX_REPEAT, MAX_RETRIES};
use xrdtest_defs::tags::BUILTIN_TAGS;
use xrdtest_defs::units::parse_duration;
use xrdtest_defs::{ScriptSource, Suite};
use xrdtest_proto::Stage;

use crate::model::api::{PlanView, PlannedStageView, RunRequest};
use crate::model::{CaseRecord, RunOptions, StageRecord, StageRun};

/// Where a stage's script comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptRef {
    Suite(ScriptSource),
    CaseFile(PathBuf),
}

/// One distinct stage of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub stage: Stage,
    pub timeout: Duration,
    pub script: ScriptRef,
    /// The instance it belongs to (an index into [`Plan::instances`]).
    pub instance: Option<usize>,
}

/// One case instance of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub case: String,
    pub params: Vec<(String, String)>,
    /// Every tag of its stages but the per-slave ones: the session's, its case's `[tags]`
    /// and its matrix values, merged once.
    pub tags: Arc<BTreeMap<String, String>>,
    /// Its stages' templates, in order (init, run, finalize).
    pub templates: Vec<usize>,
    /// 1 + its retries.
    pub max_attempts: u32,
}

/// One stage record's place in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub template: usize,
    /// Index of its case record in the session record (a case's stage only).
    pub case: Option<usize>,
    pub repetition: u32,
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub templates: Vec<Template>,
    pub instances: Vec<Instance>,
    /// Tags of suite init and finalize: the suite's, the parameters, the master's.
    pub session_tags: Arc<BTreeMap<String, String>>,
    /// Passes over the instances made up front.
    pub repeat: u32,
    /// A soak: passes follow one another until this long has passed since the first stage.
    pub run_for: Option<Duration>,
    pub exit_first: bool,
    /// What was asked, as the record keeps it.
    pub options: RunOptions,
}

/// Why a run request cannot be planned; no session is created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("no case `{name}` in suite `{suite}`; its cases are: {}", known.join(", "))]
    UnknownCase { name: String, suite: String, known: Vec<String> },
    #[error("no instance `{name}` of case `{case}`; its instances are: {}", known.join(", "))]
    UnknownInstance { name: String, case: String, known: Vec<String> },
    #[error("unknown parameter `{key}` for suite `{suite}`; its tags are: {}", if known.is_empty() { "(none)".to_string() } else { known.join(", ") })]
    UnknownParam { key: String, suite: String, known: Vec<String> },
    #[error("{0}")]
    BadOption(String),
}

impl PlanError {
    fn bad(message: impl Into<String>) -> PlanError {
        PlanError::BadOption(message.into())
    }
}

/// Longest a soak (`for`) or a hold (`keep_on_failure`) may be.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most stage runs (stages × slaves) a plan may make up front: beyond, `repeat` or the
/// matrix is too large to keep in a session record.
pub const MAX_PLANNED_RUNS: u64 = 200_000;

/// The options of a run request, checked, with the suite's own fields (`repeat`,
/// `exit_first`) where the request gives none. Scheduled runs use these defaults.
pub fn options_from_request(request: &RunRequest, suite: &Suite) -> Result<RunOptions, PlanError> {
    let duration = |field: &str, text: &Option<String>| -> Result<Option<u64>, PlanError> {
        match text {
            None => Ok(None),
            Some(text) => match parse_duration(text) {
                Ok(d) if d > MAX_DURATION => Err(PlanError::bad(format!(
                    "{field}: {text} is longer than {}",
                    xrdtest_defs::units::format_duration(MAX_DURATION)
                ))),
                Ok(d) if !d.is_zero() => Ok(Some(d.as_millis() as u64)),
                Ok(_) => Err(PlanError::bad(format!("{field}: a duration of zero"))),
                Err(message) => Err(PlanError::bad(format!("{field}: {message}"))),
            },
        }
    };
    let for_ms = duration("for", &request.for_duration)?;
    match request.repeat {
        Some(0) => return Err(PlanError::bad("repeat: at least 1")),
        Some(n) if n > MAX_REPEAT => return Err(PlanError::bad(format!("repeat: {n} is more than {MAX_REPEAT}"))),
        _ => {}
    }
    if let Some(n) = request.retries.filter(|n| *n > MAX_RETRIES) {
        return Err(PlanError::bad(format!("retries: {n} is more than {MAX_RETRIES}")));
    }
    if for_ms.is_some() && request.repeat.is_some() {
        return Err(PlanError::bad("give repeat or for, not both"));
    }
    let keep_on_failure_ms = duration("keep_on_failure", &request.keep_on_failure)?;
    if keep_on_failure_ms.is_some() && suite.cluster.is_none() {
        return Err(PlanError::bad(format!(
            "keep_on_failure: suite `{}` has no cluster to keep (it runs on static slaves)",
            suite.name
        )));
    }
    Ok(RunOptions {
        cases: request.cases.clone(),
        skip: request.skip.clone(),
        params: request.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        repeat: if for_ms.is_some() { 1 } else { request.repeat.unwrap_or(suite.repeat).max(1) },
        for_ms,
        retries: request.retries,
        exit_first: request.exit_first.unwrap_or(suite.exit_first),
        keep_on_failure_ms,
    })
}

/// The options a scheduled run (or any run with an empty request) has.
pub fn default_options(suite: &Suite) -> RunOptions {
    RunOptions { repeat: suite.repeat.max(1), exit_first: suite.exit_first, ..RunOptions::default() }
}

impl Plan {
    /// The plan of a session of `suite` with `options`; `base_tags` are the master's.
    pub fn new(suite: &Suite, options: &RunOptions, base_tags: &BTreeMap<String, String>) -> Result<Plan, PlanError> {
        check_selection(suite, options)?;
        let params = check_params(suite, options)?;
        let mut session_tags = suite.tags.clone();
        session_tags.extend(params.clone());
        session_tags.extend(base_tags.clone());
        let session_tags = Arc::new(session_tags);

        let mut templates = vec![Template {
            stage: Stage::SuiteInit,
            timeout: suite.stage_timeout,
            script: ScriptRef::Suite(suite.initialize.clone()),
            instance: None,
        }];
        let mut instances = Vec::new();
        for case in &suite.tests {
            let timeout = case.effective_timeout(suite);
            for instance in &case.instances {
                if !selected(options, &case.name, &instance.name) {
                    continue;
                }
                let mut tags = suite.tags.clone();
                tags.extend(case.tags.clone());
                tags.extend(params.clone());
                tags.extend(instance.params.iter().cloned());
                tags.extend(base_tags.clone());
                let index = instances.len();
                let mut own = Vec::new();
                let name = instance.name.clone();
                let stages = [
                    Some((Stage::CaseInit { case: name.clone() }, &case.init)),
                    Some((Stage::CaseRun { case: name.clone() }, &case.run)),
                    case.finalize.as_ref().map(|f| (Stage::CaseFinalize { case: name.clone() }, f)),
                ];
                for (stage, path) in stages.into_iter().flatten() {
                    own.push(templates.len());
                    templates.push(Template {
                        stage,
                        timeout,
                        script: ScriptRef::CaseFile(path.clone()),
                        instance: Some(index),
                    });
                }
                instances.push(Instance {
                    name,
                    case: case.name.clone(),
                    params: instance.params.clone(),
                    tags: Arc::new(tags),
                    templates: own,
                    max_attempts: 1 + options.retries.unwrap_or_else(|| case.effective_retries(suite)).min(MAX_RETRIES),
                });
            }
        }
        if let Some(finalize) = &suite.finalize {
            templates.push(Template {
                stage: Stage::SuiteFinalize,
                timeout: suite.stage_timeout,
                script: ScriptRef::Suite(finalize.clone()),
                instance: None,
            });
        }
        let passes = if options.for_ms.is_some() { 1 } else { u64::from(options.repeat.max(1)) };
        let case_stages: u64 = instances.iter().map(|i: &Instance| i.templates.len() as u64).sum();
        let runs = (2 + passes * case_stages) * suite.machines.len().max(1) as u64;
        if runs > MAX_PLANNED_RUNS {
            return Err(PlanError::bad(format!(
                "this plan makes {runs} stage runs ({passes} passes of {case_stages} case stages on {} slaves); \
                 at most {MAX_PLANNED_RUNS}: repeat less, or select fewer cases",
                suite.machines.len()
            )));
        }
        Ok(Plan {
            templates,
            instances,
            session_tags,
            repeat: options.repeat.max(1),
            run_for: options.for_ms.map(Duration::from_millis),
            exit_first: options.exit_first,
            options: options.clone(),
        })
    }

    /// The template of suite finalize, if the suite has one.
    pub fn suite_finalize(&self) -> Option<usize> {
        self.templates.iter().rposition(|t| t.stage == Stage::SuiteFinalize)
    }

    /// The steps and case records a session starts with: suite init, each pass over the
    /// instances (one for a soak), suite finalize.
    pub fn initial(&self) -> (Vec<Step>, Vec<CaseRecord>) {
        let mut steps = vec![Step { template: 0, case: None, repetition: 0, attempt: 0 }];
        let mut cases = Vec::new();
        let passes = if self.run_for.is_some() { 1 } else { self.repeat };
        for repetition in 1..=passes {
            let (pass_steps, pass_cases) = self.pass(repetition, cases.len());
            steps.extend(pass_steps);
            cases.extend(pass_cases);
        }
        if let Some(finalize) = self.suite_finalize() {
            steps.push(Step { template: finalize, case: None, repetition: 0, attempt: 0 });
        }
        (steps, cases)
    }

    /// The steps and case records of pass `repetition` over the instances, whose case
    /// records start at index `first_case`.
    pub fn pass(&self, repetition: u32, first_case: usize) -> (Vec<Step>, Vec<CaseRecord>) {
        let mut steps = Vec::new();
        let mut cases = Vec::new();
        for instance in &self.instances {
            let case = first_case + cases.len();
            cases.push(CaseRecord::pending(&instance.name, &instance.case, instance.params.clone(), repetition));
            steps.extend(self.attempt(instance, case, repetition, 1));
        }
        (steps, cases)
    }

    /// The steps of one attempt of `instance` (its case record at index `case`).
    pub fn attempt(&self, instance: &Instance, case: usize, repetition: u32, attempt: u32) -> Vec<Step> {
        instance.templates.iter().map(|&template| Step { template, case: Some(case), repetition, attempt }).collect()
    }

    /// The stage record of `step`, pending on every one of `slaves`.
    pub fn stage_record(&self, step: &Step, slaves: &[String]) -> StageRecord {
        let template = &self.templates[step.template];
        StageRecord {
            stage: template.stage.clone(),
            timeout_ms: template.timeout.as_millis() as u64,
            skipped: None,
            runs: slaves.iter().map(|slave| StageRun::pending(slave)).collect(),
            repetition: step.repetition,
            attempt: step.attempt,
        }
    }

    /// The tags of a template's stages (before the per-slave ones).
    pub fn tags_of(&self, template: usize) -> &Arc<BTreeMap<String, String>> {
        match self.templates[template].instance {
            Some(instance) => &self.instances[instance].tags,
            None => &self.session_tags,
        }
    }
}

impl Plan {
    /// The plan as `xrdtest plan` shows it: every stage of [`Plan::initial`] in order.
    pub fn view(&self, suite: &Suite) -> PlanView {
        let (steps, _) = self.initial();
        let stages = steps
            .iter()
            .map(|step| {
                let template = &self.templates[step.template];
                let own = self.tags_of(step.template);
                let tags = own
                    .iter()
                    .filter(|(key, value)| self.session_tags.get(*key) != Some(value))
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                PlannedStageView {
                    stage: template.stage.to_string(),
                    kind: template.stage.kind().to_string(),
                    case: template.stage.case().map(str::to_string),
                    repetition: step.repetition,
                    max_attempts: template.instance.map_or(1, |i| self.instances[i].max_attempts),
                    timeout_ms: template.timeout.as_millis() as u64,
                    tags,
                }
            })
            .collect();
        PlanView {
            suite: suite.name.clone(),
            options: self.options.clone(),
            slaves: suite.machines.clone(),
            tags: (*self.session_tags).clone(),
            stages,
            repeats_until_time: self.run_for.is_some(),
        }
    }
}

/// Whether instance `instance` of case `case` is selected: `--case` names a case (every
/// instance) or one instance; `--skip` the same.
fn selected(options: &RunOptions, case: &str, instance: &str) -> bool {
    let names = |list: &[String]| list.iter().any(|name| name == case || name == instance);
    (options.cases.is_empty() || names(&options.cases)) && !names(&options.skip)
}

/// Every name of `--case` and `--skip` is a case of the suite or an instance of one.
fn check_selection(suite: &Suite, options: &RunOptions) -> Result<(), PlanError> {
    for name in options.cases.iter().chain(&options.skip) {
        let Some(case) = suite.tests.iter().find(|case| case.name == case_of(name)) else {
            return Err(PlanError::UnknownCase {
                name: name.clone(),
                suite: suite.name.clone(),
                known: suite.tests.iter().map(|case| case.name.clone()).collect(),
            });
        };
        if name != &case.name && !case.instances.iter().any(|instance| &instance.name == name) {
            return Err(PlanError::UnknownInstance {
                name: name.clone(),
                case: case.name.clone(),
                known: case.instances.iter().map(|instance| instance.name.clone()).collect(),
            });
        }
    }
    Ok(())
}

/// The `--param`s, each a tag the suite knows: its own `[tags]`, a case's `[tags]` or a
/// matrix key. Built-in tags are the framework's.
fn check_params(suite: &Suite, options: &RunOptions) -> Result<BTreeMap<String, String>, PlanError> {
    let mut known: Vec<String> = suite.tags.keys().cloned().collect();
    for case in &suite.tests {
        known.extend(case.tags.keys().cloned());
        for instance in &case.instances {
            known.extend(instance.params.iter().map(|(key, _)| key.clone()));
        }
    }
    known.sort();
    known.dedup();
    let mut params = BTreeMap::new();
    for (key, value) in &options.params {
        if BUILTIN_TAGS.contains(&key.as_str()) {
            return Err(PlanError::bad(format!("parameter `{key}`: `@{key}@` is built in and cannot be overridden")));
        }
        if !known.contains(key) {
            return Err(PlanError::UnknownParam { key: key.clone(), suite: suite.name.clone(), known });
        }
        params.insert(key.clone(), value.clone());
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xrdtest_defs::CaseInstance;

    fn demo() -> Suite {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../suites");
        let report = xrdtest_defs::load_repository(&dir, &dir.join("../clusters"));
        report.repository.suites["ts_demo"].clone()
    }

    /// ts_demo with `checksum` made a 2×2 matrix and a case tag on `write_files`.
    fn with_matrix() -> Suite {
        let mut suite = demo();
        let pairs = |size: &str, mode: &str| {
            vec![("size".to_string(), size.to_string()), ("mode".to_string(), mode.to_string())]
        };
        let checksum = suite.tests.iter_mut().find(|c| c.name == "checksum").unwrap();
        checksum.instances = vec![
            CaseInstance::new("checksum", pairs("1", "sync")),
            CaseInstance::new("checksum", pairs("1", "async")),
            CaseInstance::new("checksum", pairs("64", "sync")),
            CaseInstance::new("checksum", pairs("64", "async")),
        ];
        checksum.retries = Some(2);
        let write = suite.tests.iter_mut().find(|c| c.name == "write_files").unwrap();
        write.tags.insert("files".into(), "3".into());
        suite.tags.insert("files".into(), "1".into());
        suite
    }

    fn options(cases: &[&str], skip: &[&str]) -> RunOptions {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        RunOptions { cases: owned(cases), skip: owned(skip), repeat: 1, ..RunOptions::default() }
    }

    fn instance_names(plan: &Plan) -> Vec<&str> {
        plan.instances.iter().map(|i| i.name.as_str()).collect()
    }

    fn stage_names(plan: &Plan) -> Vec<String> {
        plan.initial().0.iter().map(|s| plan.templates[s.template].stage.to_string()).collect()
    }

    #[test]
    fn the_plan_follows_the_suite() {
        let suite = demo();
        let plan = Plan::new(&suite, &options(&[], &[]), &BTreeMap::new()).unwrap();
        let stages = stage_names(&plan);
        assert_eq!(stages.first().map(String::as_str), Some("suite_init"));
        assert_eq!(stages.last().map(String::as_str), Some("suite_finalize"));
        assert!(stages.contains(&"case_run:fails_on_purpose".to_string()));
        // checksum has no finalize.sh, so no finalize stage.
        assert!(!stages.contains(&"case_finalize:checksum".to_string()));
        let timeout = plan.templates.iter().find(|t| t.stage.case() == Some("fails_on_purpose")).unwrap().timeout;
        assert_eq!(timeout, Duration::from_secs(30));
    }

    #[test]
    fn cases_are_chosen_in_the_suites_order_and_skips_win() {
        let suite = demo();
        let table: [(&[&str], &[&str], &[&str]); 4] = [
            (&[], &[], &["write_files", "checksum", "fails_on_purpose", "list_peers"]),
            (&["list_peers", "write_files"], &[], &["write_files", "list_peers"]),
            (&[], &["fails_on_purpose"], &["write_files", "checksum", "list_peers"]),
            (&["checksum", "write_files"], &["checksum"], &["write_files"]),
        ];
        for (cases, skip, expected) in table {
            let plan = Plan::new(&suite, &options(cases, skip), &BTreeMap::new()).unwrap();
            assert_eq!(instance_names(&plan), expected, "--case {cases:?} --skip {skip:?}");
        }
    }

    #[test]
    fn an_unknown_name_is_an_error_that_lists_the_cases() {
        let err = Plan::new(&demo(), &options(&["checksum"], &["nosuch"]), &BTreeMap::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no case `nosuch` in suite `ts_demo`; its cases are: write_files, checksum, fails_on_purpose, list_peers"
        );
        let err =
            Plan::new(&with_matrix(), &options(&["checksum[size=2,mode=sync]"], &[]), &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().starts_with("no instance `checksum[size=2,mode=sync]` of case `checksum`; its instances are: checksum[size=1,mode=sync], "), "{err}");
    }

    #[test]
    fn a_case_selects_every_instance_and_an_instance_name_one() {
        let suite = with_matrix();
        let all = Plan::new(&suite, &options(&["checksum"], &[]), &BTreeMap::new()).unwrap();
        assert_eq!(
            instance_names(&all),
            [
                "checksum[size=1,mode=sync]",
                "checksum[size=1,mode=async]",
                "checksum[size=64,mode=sync]",
                "checksum[size=64,mode=async]"
            ]
        );
        let one = Plan::new(&suite, &options(&["checksum[size=64,mode=sync]"], &[]), &BTreeMap::new()).unwrap();
        assert_eq!(instance_names(&one), ["checksum[size=64,mode=sync]"]);
        let less =
            Plan::new(&suite, &options(&["checksum"], &["checksum[size=1,mode=async]"]), &BTreeMap::new()).unwrap();
        assert_eq!(instance_names(&less).len(), 3);
        assert_eq!(all.instances[0].max_attempts, 3, "the case's retries");
    }

    #[test]
    fn tags_take_precedence_suite_case_param_matrix_master() {
        let suite = with_matrix();
        let base = BTreeMap::from([("port".to_string(), "20000".to_string())]);
        let mut opts = options(&["write_files", "checksum[size=64,mode=sync]"], &[]);
        opts.params = vec![("size".into(), "7".into())];
        let plan = Plan::new(&suite, &opts, &base).unwrap();
        let write = &plan.instances[0].tags;
        assert_eq!(write.get("files").map(String::as_str), Some("3"), "the case's tag over the suite's");
        assert_eq!(write.get("size").map(String::as_str), Some("7"), "a parameter");
        assert_eq!(write.get("port").map(String::as_str), Some("20000"));
        let checksum = &plan.instances[1].tags;
        assert_eq!(checksum.get("size").map(String::as_str), Some("64"), "the matrix value over the parameter");
        assert_eq!(checksum.get("mode").map(String::as_str), Some("sync"));
        assert_eq!(checksum.get("files").map(String::as_str), Some("1"));
        assert_eq!(plan.session_tags.get("size").map(String::as_str), Some("7"));
    }

    #[test]
    fn unknown_and_built_in_parameters_are_refused() {
        let suite = with_matrix();
        let mut opts = options(&[], &[]);
        opts.params = vec![("nosuch".into(), "1".into())];
        let err = Plan::new(&suite, &opts, &BTreeMap::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown parameter `nosuch` for suite `ts_demo`; its tags are: datadir, files, mode, payload_kib, size"
        );
        opts.params = vec![("port".into(), "1".into())];
        assert!(Plan::new(&suite, &opts, &BTreeMap::new()).unwrap_err().to_string().contains("built in"));
    }

    #[test]
    fn repeats_make_passes_with_their_own_case_records() {
        let suite = demo();
        let mut opts = options(&["write_files", "checksum"], &[]);
        opts.repeat = 3;
        let plan = Plan::new(&suite, &opts, &BTreeMap::new()).unwrap();
        let (steps, cases) = plan.initial();
        assert_eq!(cases.len(), 6);
        assert_eq!(cases.iter().map(|c| c.repetition).collect::<Vec<_>>(), [1, 1, 2, 2, 3, 3]);
        assert_eq!(cases[2].name, "write_files");
        // suite init + 3 × (write_files: 3 stages + checksum: 2) + suite finalize
        assert_eq!(steps.len(), 1 + 3 * 5 + 1);
        assert!(steps.iter().filter_map(|s| s.case).all(|case| case < 6));
        let record = plan.stage_record(&steps[6], &["s1".to_string()]);
        assert_eq!((record.repetition, record.attempt), (2, 1));
        opts.for_ms = Some(1000);
        let soak = Plan::new(&suite, &opts, &BTreeMap::new()).unwrap();
        assert_eq!(soak.initial().1.len(), 2, "a soak starts with one pass");
    }

    #[test]
    fn request_options_are_checked_and_default_to_the_suites_fields() {
        let mut suite = demo();
        suite.repeat = 2;
        suite.exit_first = true;
        let request = RunRequest::default();
        let opts = options_from_request(&request, &suite).unwrap();
        assert_eq!((opts.repeat, opts.exit_first, opts.for_ms), (2, true, None));
        let soak = RunRequest { for_duration: Some("2h".into()), ..RunRequest::default() };
        assert_eq!(options_from_request(&soak, &suite).unwrap().for_ms, Some(7_200_000));
        let both = RunRequest { for_duration: Some("2h".into()), repeat: Some(3), ..RunRequest::default() };
        assert!(options_from_request(&both, &suite).is_err());
        let bad = RunRequest { for_duration: Some("soon".into()), ..RunRequest::default() };
        assert!(options_from_request(&bad, &suite).unwrap_err().to_string().starts_with("for: "));
        let keep = RunRequest { keep_on_failure: Some("10m".into()), ..RunRequest::default() };
        assert!(options_from_request(&keep, &suite).unwrap_err().to_string().contains("no cluster"));
        let zero = RunRequest { repeat: Some(0), ..RunRequest::default() };
        assert!(options_from_request(&zero, &suite).is_err());
        for huge in [
            RunRequest { repeat: Some(4_000_000_000), ..RunRequest::default() },
            RunRequest { retries: Some(u32::MAX), ..RunRequest::default() },
            RunRequest { for_duration: Some("18446744073709551615ms".into()), ..RunRequest::default() },
        ] {
            assert!(options_from_request(&huge, &suite).is_err(), "{huge:?}");
        }
        // Within each limit, but too many stage runs in all: refused before anything is built.
        let opts =
            options_from_request(&RunRequest { repeat: Some(MAX_REPEAT), ..RunRequest::default() }, &suite).unwrap();
        let err = Plan::new(&suite, &opts, &BTreeMap::new()).unwrap_err().to_string();
        assert!(err.contains("stage runs") && err.contains("at most 200000"), "{err}");
    }
}
