//! The suites page: definition state, schedule, last results, each case's flaky rate, run
//! now, and the run form (cases to tick, parameters, repeat, retries, exit-first).

use std::collections::{BTreeMap, HashMap};
use std::path::Path as FsPath;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use xrdtest_defs::{DefError, Suite};
use xrdtest_master::handle::{RepoConfig, SubmitError};
use xrdtest_model::api::RunRequest;
use xrdtest_model::{now_ms, CaseState, SessionId, SessionRecord, Trigger};

use super::format;
use super::{check_reader, error_page, page, see_other, store_error, Nav};
use crate::auth::{require_writer, Viewer};
use crate::WebState;

/// How many of each suite's latest sessions the strip shows.
pub const STRIP_LENGTH: usize = 20;
/// Each case's flaky rate is counted over this many of the suite's latest finished sessions.
pub const FLAKY_WINDOW: usize = 30;

/// A definition error as a table row.
pub struct ErrorRow {
    /// Relative to its repository's root when it lies inside one.
    pub file: String,
    pub line: String,
    pub field: String,
    pub message: String,
}

/// Which definition a file belongs to.
#[derive(Debug, PartialEq, Eq)]
pub enum Owner {
    Suite(String),
    Cluster(String),
    Other,
}

/// The suite or cluster whose folder holds `file`, and the file shown relative to its
/// repository's root.
pub fn locate_error(repos: &[RepoConfig], error: &DefError) -> (Owner, ErrorRow) {
    let mut owner = Owner::Other;
    let mut file = error.file.display().to_string();
    let first_part = |dir: &FsPath| {
        error
            .file
            .strip_prefix(dir)
            .ok()
            .and_then(|rest| rest.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
    };
    for repo in repos {
        if let Some(name) = first_part(&repo.suites_dir()) {
            owner = Owner::Suite(name);
        } else if let Some(name) = first_part(&repo.clusters_dir()) {
            owner = Owner::Cluster(name);
        } else {
            continue;
        }
        if let Ok(relative) = error.file.strip_prefix(repo.root()) {
            file = relative.display().to_string();
        }
        break;
    }
    let row = ErrorRow {
        file,
        line: error.line.map(|l| l.to_string()).unwrap_or_default(),
        field: error.field.clone(),
        message: error.message.clone(),
    };
    (owner, row)
}

/// One cell of the results strip.
pub struct ResultCell {
    pub id: SessionId,
    pub cls: &'static str,
    pub title: String,
}

pub struct SuiteRow {
    pub name: String,
    pub description: String,
    /// Served (valid now, or in its last good version).
    pub in_service: bool,
    pub errors: Vec<ErrorRow>,
    pub origin: String,
    pub machines: String,
    pub cluster: String,
    pub cases: usize,
    pub schedule: String,
    pub next_run: String,
    pub next_run_relative: String,
    pub skipped_runs: u64,
    /// Oldest first, so the newest is on the right.
    pub results: Vec<ResultCell>,
    /// Its session queued or running now.
    pub unfinished: Option<SessionId>,
    /// The run form's tick boxes, in the suite's order.
    pub choices: Vec<CaseChoice>,
    /// The tags a parameter may set, for the form's hint.
    pub tag_keys: String,
    /// The suite's own `repeat`, `retries` and `exit_first`: the form's defaults.
    pub repeat: u32,
    pub retries: u32,
    pub exit_first: bool,
    /// Each case instance's flaky rate over the latest finished sessions.
    pub rates: Vec<CaseRate>,
    /// `the last 30 finished sessions`: what the rates cover.
    pub rate_window: String,
    /// Instances that were flaky at least once in them.
    pub flaky_instances: usize,
    /// `2 flaky cases`.
    pub flaky_note: String,
}

/// A case in the run form: one tick box, or one per matrix instance.
pub struct CaseChoice {
    pub name: String,
    /// Its matrix instances; empty for a case without a matrix.
    pub instances: Vec<InstanceChoice>,
}

pub struct InstanceChoice {
    /// `case[size=64,mode=sync]`: the value the form sends.
    pub name: String,
    /// `size=64, mode=sync`: what the box says.
    pub values: String,
}

fn case_choices(suite: &Suite) -> Vec<CaseChoice> {
    suite
        .tests
        .iter()
        .map(|case| {
            let plain = case.instances.len() == 1 && case.instances[0].params.is_empty();
            CaseChoice {
                name: case.name.clone(),
                instances: if plain {
                    Vec::new()
                } else {
                    case.instances
                        .iter()
                        .map(|instance| InstanceChoice {
                            name: instance.name.clone(),
                            values: instance
                                .params
                                .iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect::<Vec<_>>()
                                .join(", "),
                        })
                        .collect()
                },
            }
        })
        .collect()
}

/// Every tag of the suite a parameter may set: its `[tags]`, its cases' and matrix keys.
fn tag_keys(suite: &Suite) -> String {
    let mut keys: Vec<&str> = suite.tags.keys().map(String::as_str).collect();
    for case in &suite.tests {
        keys.extend(case.tags.keys().map(String::as_str));
        for instance in &case.instances {
            keys.extend(instance.params.iter().map(|(key, _)| key.as_str()));
        }
    }
    keys.sort_unstable();
    keys.dedup();
    keys.join(", ")
}

/// One case instance's flaky rate: `flaky 2/30`.
pub struct CaseRate {
    pub name: String,
    pub flaky: usize,
    /// Its case records in the sessions counted (one per pass).
    pub runs: usize,
    pub text: String,
}

/// The flaky rate of every case instance in `records` (finished sessions of one suite):
/// its flaky case records out of all of its case records. In the order `preferred` gives
/// (the definition's instances), then any other in the order it first appears.
pub fn case_rates(records: &[SessionRecord], preferred: &[String]) -> Vec<CaseRate> {
    let mut order: Vec<String> = preferred.to_vec();
    let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
    for case in records.iter().flat_map(|record| &record.cases) {
        let entry = counts.entry(case.name.clone()).or_insert_with(|| {
            if !preferred.contains(&case.name) {
                order.push(case.name.clone());
            }
            (0, 0)
        });
        entry.1 += 1;
        if case.state == CaseState::Flaky {
            entry.0 += 1;
        }
    }
    order
        .into_iter()
        .map(|name| {
            let (flaky, runs) = counts.get(&name).copied().unwrap_or((0, 0));
            let text = if runs == 0 { "not run".to_string() } else { format!("flaky {flaky}/{runs}") };
            CaseRate { name, flaky, runs, text }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "suites.html")]
struct SuitesPage {
    nav: Nav,
    suites: Vec<SuiteRow>,
    other_errors: Vec<ErrorRow>,
    repo_problems: Vec<(String, String)>,
    scheduler_enabled: bool,
}

pub async fn suites_page(State(state): State<Arc<WebState>>, viewer: Viewer, uri: Uri) -> Response {
    if let Err(response) = check_reader(&state, &viewer, &uri) {
        return response;
    }
    let core = &state.core;
    let definitions = core.definitions();
    let schedules = core.schedules();
    let now = now_ms();

    let mut errors: BTreeMap<String, Vec<ErrorRow>> = BTreeMap::new();
    let mut other_errors = Vec::new();
    for error in &definitions.errors {
        match locate_error(core.repos(), error) {
            (Owner::Suite(name), row) => errors.entry(name).or_default().push(row),
            (Owner::Cluster(_), _) => {} // on the clusters page
            (Owner::Other, row) => other_errors.push(row),
        }
    }
    let mut names: Vec<String> = definitions.repository.suites.keys().cloned().collect();
    names.extend(errors.keys().filter(|name| !definitions.repository.suites.contains_key(*name)).cloned());
    names.sort();

    // Unfinished sessions per suite: the flaky window reads that many more records, so that
    // it holds FLAKY_WINDOW finished ones when there are.
    let mut unfinished: HashMap<String, usize> = HashMap::new();
    match core.unfinished_sessions() {
        Ok(found) => found.into_iter().for_each(|s| *unfinished.entry(s.suite).or_default() += 1),
        Err(err) => return store_error(&state, &viewer, &uri, err),
    }

    let mut suites = Vec::new();
    for name in names {
        let suite = definitions.repository.suites.get(&name);
        let recent = match core.suite_recent(&name, STRIP_LENGTH) {
            Ok(recent) => recent,
            Err(err) => return store_error(&state, &viewer, &uri, err),
        };
        let results = recent
            .iter()
            .rev()
            .map(|summary| {
                let (_, label) = format::session_state(summary.state);
                let when = format::time(summary.created_ms);
                let flaky = if summary.state.is_final() && summary.cases_flaky > 0 {
                    format!(" ({})", format::flaky_cases(summary.cases_flaky))
                } else {
                    String::new()
                };
                ResultCell {
                    id: summary.id,
                    cls: format::session_cls(summary.state, summary.cases_flaky),
                    title: format!("#{} {label}{flaky}, {when}", summary.id),
                }
            })
            .collect();
        let window = FLAKY_WINDOW + unfinished.get(&name).copied().unwrap_or(0);
        let mut finished = match core.suite_records(&name, window) {
            Ok(records) => records,
            Err(err) => return store_error(&state, &viewer, &uri, err),
        };
        finished.retain(|record| record.state.is_final());
        let finished = &finished[finished.len().saturating_sub(FLAKY_WINDOW)..];
        let preferred: Vec<String> = suite
            .map(|s| s.tests.iter().flat_map(|case| case.instances.iter().map(|i| i.name.clone())).collect())
            .unwrap_or_default();
        let rates = if finished.is_empty() { Vec::new() } else { case_rates(finished, &preferred) };
        let schedule = schedules.get(&name);
        let next_run_ms = schedule.and_then(|s| s.next_run_ms);
        suites.push(SuiteRow {
            description: suite.and_then(|s| s.description.clone()).unwrap_or_default(),
            in_service: suite.is_some(),
            errors: errors.remove(&name).unwrap_or_default(),
            origin: match definitions.origins.get(&name) {
                Some(origin) => match &origin.commit {
                    Some(commit) => format!("{} @ {}", origin.repo, format::short(commit)),
                    None => origin.repo.clone(),
                },
                None => String::new(),
            },
            machines: suite.map(|s| s.machines.join(", ")).unwrap_or_default(),
            cluster: suite.and_then(|s| s.cluster.clone()).unwrap_or_default(),
            cases: suite.map(|s| s.tests.len()).unwrap_or(0),
            schedule: suite
                .and_then(|s| s.schedule.as_ref())
                .map(|s| s.expression.clone())
                .or_else(|| schedule.map(|s| s.expression.clone()))
                .unwrap_or_default(),
            next_run: next_run_ms.map(|ms| format::time(ms.max(0) as u64)).unwrap_or_default(),
            next_run_relative: next_run_ms.map(|ms| format::relative(ms, now)).unwrap_or_default(),
            skipped_runs: schedule.map(|s| s.skipped_runs).unwrap_or(0),
            results,
            unfinished: core.unfinished_session_of(&name),
            choices: suite.map(case_choices).unwrap_or_default(),
            tag_keys: suite.map(tag_keys).unwrap_or_default(),
            repeat: suite.map(|s| s.repeat.max(1)).unwrap_or(1),
            retries: suite.map(|s| s.retries).unwrap_or(0),
            exit_first: suite.is_some_and(|s| s.exit_first),
            rate_window: match finished.len() {
                1 => "the last finished session".to_string(),
                n => format!("the last {n} finished sessions"),
            },
            flaky_instances: rates.iter().filter(|rate| rate.flaky > 0).count(),
            flaky_note: format::flaky_cases(rates.iter().filter(|rate| rate.flaky > 0).count()),
            rates,
            name,
        });
    }
    let repo_problems = definitions
        .repos
        .iter()
        .filter_map(|repo| repo.last_error.as_ref().map(|e| (repo.name.clone(), e.clone())))
        .collect();
    page(&SuitesPage {
        nav: Nav::new(&state, &viewer, &uri, "suites", "Suites"),
        suites,
        other_errors,
        repo_problems,
        scheduler_enabled: core.scheduler_enabled(),
    })
}

/// What the run form sends. "Run now" sends only `csrf`: every case with the suite's own
/// settings. The run form also sends `form=options`, a `case` per ticked box (an instance
/// name), and `params` (`KEY=VALUE` lines), `repeat`, `for`, `retries`, `exit_first`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RunForm {
    pub csrf: String,
    /// The run form, not "Run now": its tick boxes and fields count.
    pub options: bool,
    pub cases: Vec<String>,
    pub params: String,
    pub repeat: String,
    pub run_for: String,
    pub retries: String,
    pub exit_first: bool,
}

impl RunForm {
    /// The form from its fields as sent (`case` is repeated); unknown fields are ignored.
    pub fn from_fields(fields: &[(String, String)]) -> RunForm {
        let mut form = RunForm::default();
        for (key, value) in fields {
            match key.as_str() {
                "csrf" => form.csrf = value.clone(),
                "form" => form.options = value == "options",
                "case" => form.cases.push(value.clone()),
                "params" => form.params = value.clone(),
                "repeat" => form.repeat = value.clone(),
                "for" => form.run_for = value.clone(),
                "retries" => form.retries = value.clone(),
                "exit_first" => form.exit_first = !value.is_empty(),
                _ => {}
            }
        }
        form
    }

    /// The run request the form asks for; `suite` (its definition, when there is one)
    /// tells whether every case is ticked. `Err` says what is wrong with the form.
    pub fn request(&self, suite: Option<&Suite>) -> Result<RunRequest, String> {
        if !self.options {
            return Ok(RunRequest::default());
        }
        if self.cases.is_empty() {
            return Err("Tick at least one case to run.".into());
        }
        let whole = |field: &str, text: &str| -> Result<Option<u32>, String> {
            match text.trim() {
                "" => Ok(None),
                text => text.parse().map(Some).map_err(|_| format!("{field}: `{text}` is not a whole number.")),
            }
        };
        Ok(RunRequest {
            trigger: None,
            cases: selection(&self.cases, suite),
            skip: Vec::new(),
            params: parse_params(&self.params)?,
            repeat: whole("Repeat", &self.repeat)?,
            for_duration: Some(self.run_for.trim().to_string()).filter(|text| !text.is_empty()),
            retries: whole("Retries", &self.retries)?,
            exit_first: Some(self.exit_first),
            keep_on_failure: None,
        })
    }
}

/// The `--case` list of the ticked instance names: empty when every instance of the suite
/// is ticked; a case's name when all of its instances are; else the instances, in the
/// suite's order. Names the suite does not know follow as they are (the plan refuses them
/// with a message).
fn selection(ticked: &[String], suite: Option<&Suite>) -> Vec<String> {
    let Some(suite) = suite else {
        let mut names = ticked.to_vec();
        names.dedup();
        return names;
    };
    let is_ticked = |name: &str| ticked.iter().any(|t| t == name);
    let mut names = Vec::new();
    let mut everything = true;
    for case in &suite.tests {
        let all = case.instances.iter().all(|i| is_ticked(&i.name)) || is_ticked(&case.name);
        if all {
            names.push(case.name.clone());
        } else {
            everything = false;
            names.extend(case.instances.iter().filter(|i| is_ticked(&i.name)).map(|i| i.name.clone()));
        }
    }
    let known =
        |name: &String| suite.tests.iter().any(|c| &c.name == name || c.instances.iter().any(|i| &i.name == name));
    let mut unknown: Vec<String> = ticked.iter().filter(|name| !known(name)).cloned().collect();
    unknown.dedup();
    if everything && unknown.is_empty() {
        return Vec::new();
    }
    names.extend(unknown);
    names
}

/// `KEY=VALUE` lines (blank lines skipped; spaces around key and value trimmed).
fn parse_params(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut params = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=').map(|(k, v)| (k.trim(), v.trim())).filter(|(k, _)| !k.is_empty())
        else {
            return Err(format!("Parameters, line {}: `{line}` is not KEY=VALUE.", number + 1));
        };
        if params.insert(key.to_string(), value.to_string()).is_some() {
            return Err(format!("Parameters: `{key}` is given twice."));
        }
    }
    Ok(params)
}

pub async fn run_now(
    State(state): State<Arc<WebState>>,
    viewer: Viewer,
    uri: Uri,
    Path(name): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let form = RunForm::from_fields(&fields);
    if let Err(response) = require_writer(&viewer, &form.csrf) {
        return response;
    }
    let definitions = state.core.definitions();
    let request = match form.request(definitions.repository.suites.get(&name)) {
        Ok(request) => request,
        Err(message) => return error_page(&state, &viewer, &uri, StatusCode::BAD_REQUEST, message),
    };
    match state.core.submit_request(&name, Trigger::Manual, &request) {
        Ok(id) => see_other(&format!("/sessions/{id}")),
        Err(SubmitError::UnknownSuite(name)) => error_page(
            &state,
            &viewer,
            &uri,
            StatusCode::NOT_FOUND,
            format!("There is no valid suite named `{name}` to run."),
        ),
        Err(SubmitError::UnknownCluster(name)) => error_page(
            &state,
            &viewer,
            &uri,
            StatusCode::NOT_FOUND,
            format!("The suite's cluster `{name}` has no valid definition."),
        ),
        Err(SubmitError::Plan(err)) => error_page(&state, &viewer, &uri, StatusCode::BAD_REQUEST, format!("{err}.")),
        Err(SubmitError::Store(err)) => store_error(&state, &viewer, &uri, err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use xrdtest_defs::CaseInstance;
    use xrdtest_master::handle::RepoSource;
    use xrdtest_model::{CaseRecord, SessionState};

    /// ts_demo with `checksum` made a matrix of two sizes.
    fn suite() -> Suite {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../suites");
        let report = xrdtest_defs::load_repository(&dir, &dir.join("../clusters"));
        let mut suite = report.repository.suites["ts_demo"].clone();
        let checksum = suite.tests.iter_mut().find(|c| c.name == "checksum").unwrap();
        checksum.instances = ["1", "64"]
            .iter()
            .map(|size| CaseInstance::new("checksum", vec![("size".to_string(), size.to_string())]))
            .collect();
        suite
    }

    fn form(fields: &[(&str, &str)]) -> RunForm {
        let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        RunForm::from_fields(&fields)
    }

    const ALL: [(&str, &str); 5] = [
        ("case", "write_files"),
        ("case", "checksum[size=1]"),
        ("case", "checksum[size=64]"),
        ("case", "fails_on_purpose"),
        ("case", "list_peers"),
    ];

    #[test]
    fn run_now_alone_runs_everything_with_the_suites_settings() {
        let suite = suite();
        let request = form(&[("csrf", "t")]).request(Some(&suite)).unwrap();
        assert_eq!(request, RunRequest::default());
        let mut fields = vec![("csrf", "t"), ("form", "options")];
        fields.extend(ALL);
        let request = form(&fields).request(Some(&suite)).unwrap();
        assert!(request.cases.is_empty(), "every box ticked: every case");
        assert_eq!((request.repeat, request.retries, request.exit_first), (None, None, Some(false)));
        assert!(request.params.is_empty() && request.for_duration.is_none());
    }

    #[test]
    fn ticked_boxes_select_cases_and_instances_in_the_suites_order() {
        let suite = suite();
        let pick = |fields: &[(&str, &str)]| {
            let mut all = vec![("form", "options")];
            all.extend_from_slice(fields);
            form(&all).request(Some(&suite)).unwrap().cases
        };
        assert_eq!(pick(&[("case", "list_peers"), ("case", "write_files")]), ["write_files", "list_peers"]);
        assert_eq!(pick(&[("case", "checksum[size=64]")]), ["checksum[size=64]"]);
        assert_eq!(pick(&[("case", "checksum[size=64]"), ("case", "checksum[size=1]")]), ["checksum"]);
        assert_eq!(pick(&[("case", "write_files"), ("case", "gone")]), ["write_files", "gone"], "the plan says no");
        let none = form(&[("form", "options")]).request(Some(&suite)).unwrap_err();
        assert_eq!(none, "Tick at least one case to run.");
    }

    #[test]
    fn fields_become_options_and_bad_ones_are_named() {
        let suite = suite();
        let request = form(&[
            ("form", "options"),
            ("case", "write_files"),
            ("params", " payload_kib = 64 \r\n\r\ndatadir=/tmp/a=b\n"),
            ("repeat", "3"),
            ("retries", " 2 "),
            ("exit_first", "on"),
            ("for", ""),
        ])
        .request(Some(&suite))
        .unwrap();
        assert_eq!(
            request.params,
            BTreeMap::from([("payload_kib".into(), "64".into()), ("datadir".into(), "/tmp/a=b".into())])
        );
        assert_eq!((request.repeat, request.retries, request.exit_first), (Some(3), Some(2), Some(true)));
        let bad = |fields: &[(&str, &str)]| {
            let mut all = vec![("form", "options"), ("case", "write_files")];
            all.extend_from_slice(fields);
            form(&all).request(Some(&suite)).unwrap_err()
        };
        assert_eq!(bad(&[("params", "a=1\nnonsense")]), "Parameters, line 2: `nonsense` is not KEY=VALUE.");
        assert_eq!(bad(&[("params", "=1")]), "Parameters, line 1: `=1` is not KEY=VALUE.");
        assert_eq!(bad(&[("params", "a=1\na=2")]), "Parameters: `a` is given twice.");
        assert_eq!(bad(&[("repeat", "two")]), "Repeat: `two` is not a whole number.");
        assert_eq!(bad(&[("retries", "-1")]), "Retries: `-1` is not a whole number.");
    }

    #[test]
    fn the_form_lists_matrix_instances_and_the_tags_to_set() {
        let suite = suite();
        let choices = case_choices(&suite);
        assert_eq!(choices.len(), 4);
        assert!(choices[0].instances.is_empty(), "a plain case is one box");
        let sizes: Vec<(&str, &str)> =
            choices[1].instances.iter().map(|i| (i.name.as_str(), i.values.as_str())).collect();
        assert_eq!(sizes, [("checksum[size=1]", "size=1"), ("checksum[size=64]", "size=64")]);
        assert_eq!(tag_keys(&suite), "datadir, payload_kib, size");
    }

    #[test]
    fn flaky_rates_count_case_records_of_each_instance() {
        let record = |states: &[(&str, CaseState)]| SessionRecord {
            state: SessionState::Passed,
            cases: states
                .iter()
                .map(|(name, state)| CaseRecord { state: *state, ..CaseRecord::pending(name, name, Vec::new(), 1) })
                .collect(),
            ..SessionRecord::queued(1, "s", Trigger::Api, Vec::new(), 0)
        };
        let records = [
            record(&[("a", CaseState::Flaky), ("old", CaseState::Passed)]),
            // Two passes: two records of `a`.
            record(&[("a", CaseState::Passed), ("a", CaseState::Flaky)]),
            record(&[("a", CaseState::Failed)]),
        ];
        let rates = case_rates(&records, &["b".into(), "a".into()]);
        let rows: Vec<(&str, usize, usize, &str)> =
            rates.iter().map(|r| (r.name.as_str(), r.flaky, r.runs, r.text.as_str())).collect();
        assert_eq!(rows, [("b", 0, 0, "not run"), ("a", 2, 4, "flaky 2/4"), ("old", 0, 1, "flaky 0/1")]);
    }

    #[test]
    fn errors_are_attributed_to_their_suite_or_cluster() {
        let repos = vec![RepoConfig {
            name: "main".into(),
            source: RepoSource::Localfs { path: PathBuf::from("/defs") },
            suites_path: PathBuf::from("suites"),
            clusters_path: PathBuf::from("clusters"),
        }];
        let error = |file: &str| DefError::new(file, Some(3), "tests", "no such case");
        let (owner, row) = locate_error(&repos, &error("/defs/suites/ts_a/suite.toml"));
        assert_eq!(owner, Owner::Suite("ts_a".into()));
        assert_eq!(
            (row.file.as_str(), row.line.as_str(), row.field.as_str()),
            ("suites/ts_a/suite.toml", "3", "tests")
        );
        let (owner, _) = locate_error(&repos, &error("/defs/suites/ts_b/tc/x/init.sh"));
        assert_eq!(owner, Owner::Suite("ts_b".into()));
        let (owner, row) = locate_error(&repos, &error("/defs/clusters/c1/cluster.toml"));
        assert_eq!((owner, row.file.as_str()), (Owner::Cluster("c1".into()), "clusters/c1/cluster.toml"));
        let (owner, row) = locate_error(&repos, &error("/elsewhere/x.toml"));
        assert_eq!((owner, row.file.as_str()), (Owner::Other, "/elsewhere/x.toml"));
    }
}
