//! `suites/<name>/suite.toml` and its test cases in `tc/<case>/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::DefError;
use crate::matrix::{case_instances, check_tags, scalar_text, CaseInstance, Node};
use crate::roles::check_role_name;
use crate::schedule::Schedule;
use crate::script::{ScriptSource, SourcePolicy};
use crate::source::{Checker, SourceFile};
use crate::thresholds::{check_results, RawResults, Threshold};
use crate::units::parse_duration;

/// Most passes a session may make over its case list (`repeat`).
pub const MAX_REPEAT: u32 = 10_000;
/// Most retries of a failed case instance (`retries`).
pub const MAX_RETRIES: u32 = 100;

/// Stage timeout when neither the suite nor the case gives one.
pub const DEFAULT_STAGE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A checked suite definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suite {
    pub name: String,
    pub description: Option<String>,
    /// The suite's folder.
    pub dir: PathBuf,
    /// Static slaves by name; with `cluster`, the subset of its hosts to use (empty: all).
    pub machines: Vec<String>,
    /// The cluster the hypervisor creates for this suite, if any.
    pub cluster: Option<String>,
    /// Test cases, in the order they run.
    pub tests: Vec<TestCase>,
    pub schedule: Option<Schedule>,
    pub initialize: ScriptSource,
    pub finalize: Option<ScriptSource>,
    /// Log files collected from each slave after every stage (tags allowed).
    pub logs: Vec<String>,
    pub alert_emails: Vec<String>,
    pub alert_success: AlertPolicy,
    pub alert_failure: AlertPolicy,
    pub stage_timeout: Duration,
    /// User-defined `@tags@`.
    pub tags: BTreeMap<String, String>,
    /// Passes over the case list a session makes (at least 1).
    pub repeat: u32,
    /// How many more times a failed case instance is run (its case's `retries` wins).
    pub retries: u32,
    /// After the first failed case, run no more cases (suite finalize still runs).
    pub exit_first: bool,
    /// When webhooks (`[[notify]]` of `master.toml`) tell of this suite's sessions,
    /// overriding each entry's `on`; `None`: each entry's own `on` applies.
    pub notify: Option<NotifyPolicy>,
    /// `[roles]`: role name → the machines that have it (with a cluster, full host names).
    /// Cluster hosts' own `roles` add to these (see [`crate::roles::roles_of`]).
    pub roles: BTreeMap<String, Vec<String>>,
}

/// One test case: `tc/<name>/` with `init.sh`, `run.sh` and optional `finalize.sh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCase {
    pub name: String,
    pub description: Option<String>,
    pub init: PathBuf,
    pub run: PathBuf,
    pub finalize: Option<PathBuf>,
    /// Overrides the suite's stage timeout for this case's stages.
    pub stage_timeout: Option<Duration>,
    /// `[tags]` of `case.toml`: over the suite's tags in this case's stages.
    pub tags: BTreeMap<String, String>,
    /// Overrides the suite's `retries` for this case.
    pub retries: Option<u32>,
    /// Its instances, in order: one per `[matrix]` combination or `[[parametrize]]` entry,
    /// or the case itself alone.
    pub instances: Vec<CaseInstance>,
    /// `[results.NAME]` of `case.toml`: bounds on the values its stages report.
    pub results: BTreeMap<String, Threshold>,
}

impl TestCase {
    /// The timeout that applies to this case's stages in `suite`.
    pub fn effective_timeout(&self, suite: &Suite) -> Duration {
        self.stage_timeout.unwrap_or(suite.stage_timeout)
    }

    /// How many more times a failed instance of this case runs in `suite`.
    pub fn effective_retries(&self, suite: &Suite) -> u32 {
        self.retries.unwrap_or(suite.retries)
    }
}

/// How much mail a suite's outcome sends (XrdTest's policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertPolicy {
    /// One mail with the final state of the session.
    Suite,
    /// A mail per test case, and the suite's mail too.
    Case,
    /// No mail.
    None,
}

impl AlertPolicy {
    pub fn parse(text: &str) -> Result<AlertPolicy, String> {
        match text.trim().to_ascii_uppercase().as_str() {
            "SUITE" => Ok(AlertPolicy::Suite),
            "CASE" => Ok(AlertPolicy::Case),
            "NONE" => Ok(AlertPolicy::None),
            _ => Err(format!("unknown alert policy `{text}`: expected SUITE, CASE or NONE")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertPolicy::Suite => "SUITE",
            AlertPolicy::Case => "CASE",
            AlertPolicy::None => "NONE",
        }
    }
}

/// When a finished session is worth a webhook (suite.toml `notify`, master.toml `on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyPolicy {
    /// Every finished session.
    Always,
    /// Sessions that did not pass: failed, cancelled, interrupted.
    Failure,
    /// A regression or a fix: the verdict (passed or not) differs from the suite's
    /// previous finished session.
    Change,
    /// None (only as a suite's `notify`).
    Never,
}

impl NotifyPolicy {
    pub fn parse(text: &str) -> Result<NotifyPolicy, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "always" => Ok(NotifyPolicy::Always),
            "failure" => Ok(NotifyPolicy::Failure),
            "change" => Ok(NotifyPolicy::Change),
            "never" => Ok(NotifyPolicy::Never),
            _ => Err(format!("unknown notify policy `{text}`: expected always, failure, change or never")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyPolicy::Always => "always",
            NotifyPolicy::Failure => "failure",
            NotifyPolicy::Change => "change",
            NotifyPolicy::Never => "never",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    name: Option<Spanned<String>>,
    description: Option<String>,
    machines: Option<Spanned<Vec<Spanned<String>>>>,
    cluster: Option<Spanned<String>>,
    tests: Option<Spanned<Vec<Spanned<String>>>>,
    schedule: Option<Spanned<toml::Value>>,
    initialize: Option<Spanned<String>>,
    finalize: Option<Spanned<String>>,
    logs: Option<Vec<Spanned<String>>>,
    alert_emails: Option<Vec<Spanned<String>>>,
    alert_success: Option<Spanned<String>>,
    alert_failure: Option<Spanned<String>>,
    stage_timeout: Option<Spanned<toml::Value>>,
    tags: Option<BTreeMap<String, Spanned<toml::Value>>>,
    repeat: Option<Spanned<toml::Value>>,
    retries: Option<Spanned<toml::Value>>,
    exit_first: Option<Spanned<toml::Value>>,
    notify: Option<Spanned<toml::Value>>,
    roles: Option<BTreeMap<String, Spanned<Vec<Spanned<String>>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    description: Option<String>,
    stage_timeout: Option<Spanned<toml::Value>>,
    retries: Option<Spanned<toml::Value>>,
    tags: Option<BTreeMap<String, Spanned<toml::Value>>>,
    matrix: Option<Spanned<Node>>,
    parametrize: Option<Spanned<Node>>,
    results: Option<RawResults>,
}

/// Loads and checks `suite.toml` in `dir` and the test cases it names. Checks against
/// clusters happen in [`crate::repository`]. Every problem found is returned.
pub fn load_suite(dir: &Path) -> Result<Suite, Vec<DefError>> {
    load_suite_with(dir, &SourcePolicy::default())
}

/// [`load_suite`] with `file://` scripts checked against `policy`.
pub fn load_suite_with(dir: &Path, policy: &SourcePolicy) -> Result<Suite, Vec<DefError>> {
    let path = dir.join("suite.toml");
    let src = SourceFile::read(&path).map_err(|e| vec![e])?;
    let raw: RawSuite = src.parse().map_err(|e| vec![e])?;
    let folder = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut check = Checker::new(&src);
    let suite = check_suite(&mut check, &raw, dir, &folder, policy);
    match suite {
        Some(suite) if check.errors.is_empty() => Ok(suite),
        _ => Err(check.errors),
    }
}

fn check_suite(check: &mut Checker, raw: &RawSuite, dir: &Path, folder: &str, policy: &SourcePolicy) -> Option<Suite> {
    let name = match &raw.name {
        Some(name) if name.get_ref() != folder => {
            check.at(name, "name", format!("suite name `{}` must equal its folder name `{folder}`", name.get_ref()));
            None
        }
        Some(name) if !is_plain_name(name.get_ref()) => {
            check.at(name, "name", "use letters, digits, `_`, `-` and `.` only");
            None
        }
        Some(name) => Some(name.get_ref().clone()),
        None => {
            check.missing("name", "is required");
            None
        }
    };

    let machines = match &raw.machines {
        Some(list) => {
            let mut seen = BTreeSet::new();
            let mut names = Vec::new();
            for (i, machine) in list.get_ref().iter().enumerate() {
                let text = machine.get_ref().trim();
                if !is_plain_name(text) {
                    check.at(machine, &format!("machines[{i}]"), format!("`{text}` is not a machine name"));
                } else if !seen.insert(text.to_ascii_lowercase()) {
                    check.at(machine, &format!("machines[{i}]"), format!("`{text}` is listed twice"));
                } else {
                    names.push(text.to_string());
                }
            }
            if list.get_ref().is_empty() && raw.cluster.is_none() {
                check.at(list, "machines", "lists no machine: name the slaves to run on");
            }
            names
        }
        None => Vec::new(),
    };
    let cluster = raw.cluster.as_ref().and_then(|c| {
        if is_plain_name(c.get_ref()) {
            Some(c.get_ref().clone())
        } else {
            check.at(c, "cluster", format!("`{}` is not a cluster name", c.get_ref()));
            None
        }
    });
    if raw.machines.is_none() && raw.cluster.is_none() {
        check.missing("machines", "give `machines` (static slaves) or `cluster` (a cluster the hypervisor creates)");
    }

    let mut tests = Vec::new();
    match &raw.tests {
        Some(list) if list.get_ref().is_empty() => check.at(list, "tests", "lists no test case"),
        Some(list) => {
            let mut seen = BTreeSet::new();
            for (i, case) in list.get_ref().iter().enumerate() {
                let field = format!("tests[{i}]");
                let case_name = case.get_ref();
                if !is_plain_name(case_name) {
                    check.at(case, &field, format!("`{case_name}` is not a test case name"));
                    continue;
                }
                if !seen.insert(case_name.clone()) {
                    check.at(case, &field, format!("`{case_name}` is listed twice"));
                    continue;
                }
                match load_case(dir, case_name) {
                    Ok(test) => tests.push(test),
                    Err(problems) => {
                        for problem in problems {
                            match problem {
                                CaseProblem::InSuite(message) => check.at(case, &field, message),
                                CaseProblem::InCaseFile(error) => check.errors.push(error),
                            }
                        }
                    }
                }
            }
        }
        None => check.missing("tests", "is required: the test cases to run, in order"),
    }

    let schedule = raw.schedule.as_ref().and_then(|value| {
        let parsed = match value.get_ref() {
            toml::Value::String(text) => Schedule::parse(text),
            toml::Value::Table(table) => table
                .iter()
                .map(|(k, v)| {
                    scalar_text(v)
                        .map(|v| (k.clone(), v))
                        .ok_or_else(|| format!("schedule field `{k}` must be a string or number"))
                })
                .collect::<Result<Vec<_>, _>>()
                .and_then(|pairs| Schedule::from_table(&pairs)),
            other => Err(format!("expected a cron string or a table, found {}", other.type_str())),
        };
        parsed.map_err(|message| check.at(value, "schedule", message)).ok()
    });

    let script = |value: &Spanned<String>, field: &str, check: &mut Checker| -> Option<ScriptSource> {
        match ScriptSource::parse(value.get_ref(), dir) {
            Ok(ScriptSource::File(path)) => match policy.check_file(value.get_ref(), &path, dir) {
                Ok(()) if !path.is_file() => {
                    check.at(value, field, format!("script file {} is not a file", path.display()));
                    None
                }
                Ok(()) => Some(ScriptSource::File(path)),
                Err(message) => {
                    check.at(value, field, message);
                    None
                }
            },
            Ok(ScriptSource::Url(url)) => match policy.check_url(&url) {
                Ok(()) => Some(ScriptSource::Url(url)),
                Err(message) => {
                    check.at(value, field, message);
                    None
                }
            },
            Ok(source) => Some(source),
            Err(message) => {
                check.at(value, field, message);
                None
            }
        }
    };
    let initialize = match &raw.initialize {
        Some(value) => script(value, "initialize", check),
        None => {
            check.missing("initialize", "is required: the suite initialization script");
            None
        }
    };
    let finalize = match &raw.finalize {
        Some(value) => script(value, "finalize", check).map(Some),
        None => Some(None),
    };

    let mut logs = Vec::new();
    for (i, log) in raw.logs.iter().flatten().enumerate() {
        // A leading tag (`@datadir@/x.log`) is expanded on the slave to an absolute path.
        if log.get_ref().starts_with('/') || log.get_ref().starts_with('@') {
            logs.push(log.get_ref().clone());
        } else {
            check.at(
                log,
                &format!("logs[{i}]"),
                format!("`{}` must be an absolute path (or start with a tag)", log.get_ref()),
            );
        }
    }
    let mut alert_emails = Vec::new();
    for (i, email) in raw.alert_emails.iter().flatten().enumerate() {
        if is_email(email.get_ref()) {
            alert_emails.push(email.get_ref().trim().to_string());
        } else {
            check.at(email, &format!("alert_emails[{i}]"), format!("`{}` is not an email address", email.get_ref()));
        }
    }
    let mut policy = |value: &Option<Spanned<String>>, field: &str, default: AlertPolicy| match value {
        Some(v) => AlertPolicy::parse(v.get_ref()).map_err(|message| check.at(v, field, message)).ok(),
        None => Some(default),
    };
    let alert_success = policy(&raw.alert_success, "alert_success", AlertPolicy::Suite);
    let alert_failure = policy(&raw.alert_failure, "alert_failure", AlertPolicy::Case);
    let stage_timeout = match &raw.stage_timeout {
        Some(value) => timeout_value(value).map_err(|message| check.at(value, "stage_timeout", message)).ok(),
        None => Some(DEFAULT_STAGE_TIMEOUT),
    };
    let tags = check_tags(check, raw.tags.as_ref());
    let repeat = match &raw.repeat {
        Some(value) => count_value(value, 1, MAX_REPEAT)
            .map_err(|message| check.at(value, "repeat", format!("{message}: a session makes at least one pass")))
            .ok(),
        None => Some(1),
    };
    let retries = match &raw.retries {
        Some(value) => count_value(value, 0, MAX_RETRIES).map_err(|message| check.at(value, "retries", message)).ok(),
        None => Some(0),
    };
    let exit_first = match &raw.exit_first {
        Some(value) => bool_value(value).map_err(|message| check.at(value, "exit_first", message)).ok(),
        None => Some(false),
    };
    let notify = match &raw.notify {
        Some(value) => notify_value(value).map(Some).map_err(|message| check.at(value, "notify", message)).ok(),
        None => Some(None),
    };

    let roles = check_suite_roles(check, raw.roles.as_ref(), &machines, raw.cluster.is_some());

    Some(Suite {
        name: name?,
        description: raw.description.clone(),
        dir: dir.to_path_buf(),
        machines,
        cluster: match &raw.cluster {
            Some(_) => Some(cluster?),
            None => None,
        },
        tests,
        schedule: match &raw.schedule {
            Some(_) => Some(schedule?),
            None => None,
        },
        initialize: initialize?,
        finalize: finalize?,
        logs,
        alert_emails,
        alert_success: alert_success?,
        alert_failure: alert_failure?,
        stage_timeout: stage_timeout?,
        tags,
        repeat: repeat?,
        retries: retries?,
        exit_first: exit_first?,
        notify: notify?,
        roles: roles?,
    })
}

/// `[roles]`: each key a role name, each value the machines with that role, none twice.
/// Without a cluster they must be among `machines`; with one, the repository checks them
/// against the cluster's hosts.
fn check_suite_roles(
    check: &mut Checker,
    raw: Option<&BTreeMap<String, Spanned<Vec<Spanned<String>>>>>,
    machines: &[String],
    has_cluster: bool,
) -> Option<BTreeMap<String, Vec<String>>> {
    let mut roles = BTreeMap::new();
    let mut ok = true;
    for (role, list) in raw.into_iter().flatten() {
        let field = format!("roles.{role}");
        if let Err(message) = check_role_name(role) {
            check.at(list, &field, message);
            ok = false;
            continue;
        }
        let mut members: Vec<String> = Vec::new();
        for (i, machine) in list.get_ref().iter().enumerate() {
            let name = machine.get_ref().trim();
            let field = format!("roles.{role}[{i}]");
            if !is_plain_name(name) {
                check.at(machine, &field, format!("`{name}` is not a machine name"));
                ok = false;
            } else if members.iter().any(|m| m.eq_ignore_ascii_case(name)) {
                check.at(machine, &field, format!("`{name}` is listed twice"));
                ok = false;
            } else if !has_cluster && !machines.iter().any(|m| m == name) {
                check.at(machine, &field, format!("`{name}` is not one of the suite's `machines`"));
                ok = false;
            } else {
                members.push(name.to_string());
            }
        }
        roles.insert(role.clone(), members);
    }
    ok.then_some(roles)
}

/// Why a test case could not be loaded: a problem to show on the suite's `tests` entry,
/// or an error inside the case's own `case.toml`.
enum CaseProblem {
    InSuite(String),
    InCaseFile(DefError),
}

fn load_case(suite_dir: &Path, name: &str) -> Result<TestCase, Vec<CaseProblem>> {
    let dir = suite_dir.join("tc").join(name);
    if !dir.is_dir() {
        return Err(vec![CaseProblem::InSuite(format!("test case folder {} does not exist", dir.display()))]);
    }
    let mut problems = Vec::new();
    for script in ["init.sh", "run.sh", "finalize.sh"] {
        let path = dir.join(script);
        if !path.is_file() {
            if script != "finalize.sh" {
                problems.push(CaseProblem::InSuite(format!("{} is missing", path.display())));
            }
        } else if let Err(message) =
            SourcePolicy::default().check_file(&format!("file://tc/{name}/{script}"), &path, suite_dir)
        {
            problems.push(CaseProblem::InSuite(message));
        }
    }
    let case_file = dir.join("case.toml");
    let mut description = None;
    let mut stage_timeout = None;
    let mut tags = BTreeMap::new();
    let mut retries = None;
    let mut results = BTreeMap::new();
    let mut instances = Some(vec![CaseInstance::plain(name)]);
    if case_file.exists() {
        let parsed = SourceFile::read(&case_file).and_then(|src| Ok((src.parse::<RawCase>()?, src)));
        match parsed {
            Ok((raw, src)) => {
                let mut check = Checker::new(&src);
                description = raw.description;
                if let Some(value) = &raw.stage_timeout {
                    stage_timeout =
                        timeout_value(value).map_err(|message| check.at(value, "stage_timeout", message)).ok();
                }
                if let Some(value) = &raw.retries {
                    retries =
                        count_value(value, 0, MAX_RETRIES).map_err(|message| check.at(value, "retries", message)).ok();
                }
                tags = check_tags(&mut check, raw.tags.as_ref());
                results = check_results(&mut check, raw.results.as_ref());
                instances = case_instances(&mut check, name, raw.matrix.as_ref(), raw.parametrize.as_ref());
                problems.extend(check.errors.into_iter().map(CaseProblem::InCaseFile));
            }
            Err(error) => problems.push(CaseProblem::InCaseFile(error)),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let finalize = dir.join("finalize.sh");
    Ok(TestCase {
        name: name.to_string(),
        description,
        init: dir.join("init.sh"),
        run: dir.join("run.sh"),
        finalize: finalize.is_file().then_some(finalize),
        stage_timeout,
        tags,
        retries,
        instances: instances.unwrap_or_default(),
        results,
    })
}

/// A timeout: a duration string (`10m`) or whole seconds; never zero.
fn timeout_value(value: &Spanned<toml::Value>) -> Result<Duration, String> {
    let duration = match value.get_ref() {
        toml::Value::String(text) => parse_duration(text)?,
        toml::Value::Integer(n) if *n > 0 => Duration::from_secs(*n as u64),
        toml::Value::Integer(n) => return Err(format!("{n} is not a positive number of seconds")),
        other => return Err(format!("expected a duration like \"10m\", found {}", other.type_str())),
    };
    if duration.is_zero() {
        return Err("a timeout of zero would fail every stage".into());
    }
    Ok(duration)
}

/// A count such as `repeat` or `retries`: a whole number, at least `min`.
fn count_value(value: &Spanned<toml::Value>, min: u32, max: u32) -> Result<u32, String> {
    match value.get_ref() {
        toml::Value::Integer(n) if *n < 0 => Err(format!("{n} is negative")),
        toml::Value::Integer(n) if *n < i64::from(min) => Err(format!("{n} is less than {min}")),
        toml::Value::Integer(n) if *n > i64::from(max) => Err(format!("{n} is too large (at most {max})")),
        toml::Value::Integer(n) => u32::try_from(*n).map_err(|_| format!("{n} is too large (at most {max})")),
        other => Err(format!("expected a whole number, found {}", other.type_str())),
    }
}

/// A suite's `notify`: a policy name (a wrong type is named with the field, not left to serde).
fn notify_value(value: &Spanned<toml::Value>) -> Result<NotifyPolicy, String> {
    match value.get_ref() {
        toml::Value::String(text) => NotifyPolicy::parse(text),
        other => Err(format!("expected \"always\", \"failure\", \"change\" or \"never\", found {}", other.type_str())),
    }
}

fn bool_value(value: &Spanned<toml::Value>) -> Result<bool, String> {
    match value.get_ref() {
        toml::Value::Boolean(b) => Ok(*b),
        other => Err(format!("expected true or false, found {}", other.type_str())),
    }
}

/// Names of suites, cases, machines and clusters: used in paths and URLs, so kept plain.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A deliberately loose check (the mailer has the final word): `local@domain.tld`.
fn is_email(text: &str) -> bool {
    let text = text.trim();
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !text.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert_eq!(AlertPolicy::parse("suite"), Ok(AlertPolicy::Suite));
        assert_eq!(AlertPolicy::parse("CASE"), Ok(AlertPolicy::Case));
        assert!(AlertPolicy::parse("SOMETIMES").is_err());
    }

    #[test]
    fn notify_policies() {
        assert_eq!(NotifyPolicy::parse("change"), Ok(NotifyPolicy::Change));
        assert_eq!(NotifyPolicy::parse(" Never "), Ok(NotifyPolicy::Never));
        for policy in [NotifyPolicy::Always, NotifyPolicy::Failure, NotifyPolicy::Change, NotifyPolicy::Never] {
            assert_eq!(NotifyPolicy::parse(policy.as_str()), Ok(policy));
        }
        assert!(NotifyPolicy::parse("sometimes").unwrap_err().contains("always, failure, change or never"));
    }

    #[test]
    fn emails() {
        assert!(is_email("ops@example.org"));
        assert!(!is_email("ops@example"));
        assert!(!is_email("ops example.org"));
        assert!(!is_email("@example.org"));
        assert!(!is_email("a@b@c.org"));
    }

    #[test]
    fn plain_names() {
        assert!(is_plain_name("ts_demo"));
        assert!(is_plain_name("slave1.xrd.test"));
        assert!(!is_plain_name("../etc"));
        assert!(!is_plain_name("a/b"));
        assert!(!is_plain_name(""));
    }
}
