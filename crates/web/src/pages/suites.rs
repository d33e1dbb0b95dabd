//! The suites page: definition state, schedule, last results, run now.

use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use xrdtest_defs::DefError;
use xrdtest_master::handle::{RepoConfig, SubmitError};
use xrdtest_model::{now_ms, SessionId, Trigger};

use super::format;
use super::{check_reader, error_page, page, see_other, store_error, CsrfForm, Nav};
use crate::auth::{require_writer, Viewer};
use crate::WebState;

/// How many of each suite's latest sessions the strip shows.
pub const STRIP_LENGTH: usize = 20;

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
                let (cls, label) = format::session_state(summary.state);
                let when = format::time(summary.created_ms);
                ResultCell { id: summary.id, cls, title: format!("#{} {label}, {when}", summary.id) }
            })
            .collect();
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

pub async fn run_now(
    State(state): State<Arc<WebState>>,
    viewer: Viewer,
    uri: Uri,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(response) = require_writer(&viewer, &form.csrf) {
        return response;
    }
    match state.core.submit(&name, Trigger::Manual) {
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
        Err(SubmitError::UnknownCase(err)) => {
            error_page(&state, &viewer, &uri, StatusCode::BAD_REQUEST, format!("{err}."))
        }
        Err(SubmitError::Store(err)) => store_error(&state, &viewer, &uri, err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use xrdtest_master::handle::RepoSource;

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
