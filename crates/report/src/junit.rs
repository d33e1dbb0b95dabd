//! A session as JUnit XML, as Jenkins, GitLab and Maven Surefire read it (and valid under
//! the Jenkins xunit plugin's `junit-10.xsd`):
//!
//! - `<testsuites>` with one `<testsuite>` for the session: `name` = suite, `timestamp`
//!   (UTC, Ant's form), `time`, counts, and `<properties>` (session, suite, commit,
//!   definition_hash, each parameter as `param.KEY`);
//! - one `<testcase>` per case instance and pass (`classname` = suite, `name` = instance,
//!   with ` (pass N)` when repeated): `<failure>` when it failed (the message names each failed
//!   stage, the body lists them, `<system-out>` holds their last lines of output),
//!   `<skipped>` when it did not run, one `<flakyFailure>` per failed attempt when flaky;
//! - each check its own `<testcase>` (`classname` = `suite.instance`, `name` =
//!   `check:NAME@slave`), from the attempt that counts;
//! - `suite_init` / `suite_finalize` testcases when those failed.

use std::fmt::Write as _;

use xrdtest_model::{CaseState, Check, StageRecord, StageRun};

use crate::data::{duration, FailedRun, Instance, SessionData};
use crate::format;
use crate::xml::{attr, text};

/// Longest `message` attribute; the body has the whole text.
const MAX_MESSAGE_CHARS: usize = 1000;

/// One `<testcase>` before it is written.
struct TestCase {
    classname: String,
    name: String,
    time_ms: u64,
    outcome: Outcome,
    /// `<flakyFailure>`s: message, type, output.
    flaky: Vec<(String, String, String)>,
    system_out: String,
}

enum Outcome {
    Passed,
    Failed { message: String, kind: String, body: String },
    Skipped { message: String },
}

/// The JUnit XML document of a session.
pub fn junit(data: &SessionData) -> String {
    let record = &data.record;
    let mut cases = Vec::new();
    let suite_failures = data.failed_suite_runs();
    for kind in ["suite_init", "suite_finalize"] {
        let failed: Vec<FailedRun> = suite_failures.iter().copied().filter(|f| f.stage.stage.kind() == kind).collect();
        if let Some(first) = failed.first() {
            cases.push(TestCase {
                classname: record.suite.clone(),
                name: kind.to_string(),
                time_ms: stage_time(first.stage),
                outcome: failure(&failed),
                flaky: Vec::new(),
                system_out: output_of(data, &failed),
            });
        }
    }
    for instance in data.instances() {
        cases.push(instance_case(data, &instance));
        cases.extend(check_cases(data, &instance));
    }
    // Checks of the suite stages, which belong to no instance.
    for (_, stage) in data.suite_stages() {
        for run in &stage.runs {
            for check in data.values_of(run).map(|v| v.checks.as_slice()).unwrap_or(&[]) {
                cases.push(check_case(&format!("{}.{}", record.suite, stage.stage.kind()), check, run, stage));
            }
        }
    }

    let failures = cases.iter().filter(|c| matches!(c.outcome, Outcome::Failed { .. })).count();
    let skipped = cases.iter().filter(|c| matches!(c.outcome, Outcome::Skipped { .. })).count();
    let time = format::seconds(duration(record.started_ms, record.ended_ms).unwrap_or(0));
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"xrdtest\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{time}\">",
        cases.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" id=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" \
         time=\"{time}\" timestamp=\"{}\">",
        attr(&record.suite),
        record.id,
        cases.len(),
        format::junit_timestamp(record.started_ms.unwrap_or(record.created_ms)),
    );
    out.push_str("    <properties>\n");
    let mut properties = vec![
        ("session".to_string(), record.id.to_string()),
        ("suite".to_string(), record.suite.clone()),
        ("verdict".to_string(), record.verdict().to_string()),
    ];
    if let Some(commit) = &record.commit {
        properties.push(("commit".into(), commit.clone()));
    }
    properties.push(("definition_hash".into(), record.definition_hash.clone()));
    properties.extend(record.options.params.iter().map(|(key, value)| (format!("param.{key}"), value.clone())));
    for (name, value) in properties {
        let _ = writeln!(out, "      <property name=\"{}\" value=\"{}\"/>", attr(&name), attr(&value));
    }
    out.push_str("    </properties>\n");
    for case in &cases {
        write_case(&mut out, case);
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

fn write_case(out: &mut String, case: &TestCase) {
    let _ = write!(
        out,
        "    <testcase classname=\"{}\" name=\"{}\" time=\"{}\"",
        attr(&case.classname),
        attr(&case.name),
        format::seconds(case.time_ms)
    );
    if matches!(case.outcome, Outcome::Passed) && case.flaky.is_empty() && case.system_out.is_empty() {
        out.push_str("/>\n");
        return;
    }
    out.push_str(">\n");
    match &case.outcome {
        Outcome::Passed => {}
        Outcome::Failed { message, kind, body } => {
            let _ = writeln!(
                out,
                "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                attr(&cut(message)),
                attr(kind),
                text(body)
            );
        }
        Outcome::Skipped { message } => {
            let _ = writeln!(out, "      <skipped message=\"{}\"/>", attr(&cut(message)));
        }
    }
    for (message, kind, output) in &case.flaky {
        let _ = write!(out, "      <flakyFailure message=\"{}\" type=\"{}\">", attr(&cut(message)), attr(kind));
        if !output.is_empty() {
            let _ = write!(out, "<system-out>{}</system-out>", text(output));
        }
        out.push_str("</flakyFailure>\n");
    }
    if !case.system_out.is_empty() {
        let _ = writeln!(out, "      <system-out>{}</system-out>", text(&case.system_out));
    }
    out.push_str("    </testcase>\n");
}

/// A message attribute of reasonable length, cut on a character boundary.
fn cut(message: &str) -> String {
    match message.chars().count() > MAX_MESSAGE_CHARS {
        true => format!("{}…", message.chars().take(MAX_MESSAGE_CHARS).collect::<String>()),
        false => message.to_string(),
    }
}

fn instance_case(data: &SessionData, instance: &Instance) -> TestCase {
    let record = &data.record;
    let last = instance.last_attempt();
    let failed = instance.failed_runs(last);
    let outcome = match instance.case.state {
        CaseState::Passed | CaseState::Flaky => Outcome::Passed,
        CaseState::Failed if !failed.is_empty() => failure(&failed),
        CaseState::Failed => Outcome::Failed {
            message: instance.reason(record.reason.as_deref()).unwrap_or_default(),
            kind: "failed".into(),
            body: String::new(),
        },
        CaseState::NotRun | CaseState::Pending | CaseState::Running => {
            Outcome::Skipped { message: instance.reason(record.reason.as_deref()).unwrap_or_default() }
        }
    };
    let flaky = match instance.case.state {
        CaseState::Flaky => instance
            .failed_attempts()
            .into_iter()
            .map(|attempt| {
                let runs = instance.failed_runs(attempt);
                let message = format!("attempt {attempt}: {}", describe_all(&runs));
                (message, kind_of(&runs), output_of(data, &runs))
            })
            .collect(),
        _ => Vec::new(),
    };
    let system_out = match instance.case.state {
        CaseState::Failed => output_of(data, &failed),
        _ => String::new(),
    };
    TestCase {
        classname: record.suite.clone(),
        name: instance.label.clone(),
        time_ms: instance.duration_ms().unwrap_or(0),
        outcome,
        flaky,
        system_out,
    }
}

/// The `<failure>` of failed runs: the message names each one, the body has one line each.
fn failure(failed: &[FailedRun]) -> Outcome {
    let body: Vec<String> = failed
        .iter()
        .map(|f| {
            let exit = f.run.exit_code.map(|code| format!(", exit code {code}")).unwrap_or_default();
            format!("{} on {}: {} ({}{exit})", f.stage.label(), f.run.slave, f.reason(), f.run.state)
        })
        .collect();
    Outcome::Failed { message: describe_all(failed), kind: kind_of(failed), body: body.join("\n") }
}

fn describe_all(failed: &[FailedRun]) -> String {
    failed.iter().map(FailedRun::describe).collect::<Vec<_>>().join("; ")
}

/// The failure's `type`: the state of the first failed run (`failed`, `timed_out`...).
fn kind_of(failed: &[FailedRun]) -> String {
    failed.first().map(|f| f.run.state.as_str()).unwrap_or("failed").to_string()
}

/// The last output lines of failed runs, each under a line naming the run.
fn output_of(data: &SessionData, failed: &[FailedRun]) -> String {
    let mut out = String::new();
    for f in failed {
        let tail = data.tail_of(f.run);
        let _ = writeln!(out, "==> {} on {}: last {} lines of output <==", f.stage.label(), f.run.slave, tail.len());
        for line in tail {
            out.push_str(&format::strip_ansi(&line.text));
            out.push('\n');
        }
    }
    out
}

fn stage_time(stage: &StageRecord) -> u64 {
    let start = stage.runs.iter().filter_map(|r| r.started_ms).min();
    let end = stage.runs.iter().filter_map(|r| r.ended_ms).max();
    duration(start, end).unwrap_or(0)
}

/// A testcase per check of the instance's attempt that counts.
fn check_cases(data: &SessionData, instance: &Instance) -> Vec<TestCase> {
    let last = instance.last_attempt();
    let classname = format!("{}.{}", data.record.suite, instance.label);
    let mut cases: Vec<(TestCase, &'static str)> = Vec::new();
    for (_, stage) in instance.stages.iter().filter(|(_, stage)| stage.attempt == last) {
        for run in &stage.runs {
            for check in data.values_of(run).map(|v| v.checks.as_slice()).unwrap_or(&[]) {
                cases.push((check_case(&classname, check, run, stage), stage.stage.kind()));
            }
        }
    }
    // The same check reported by two stages of the attempt (init and run) would give two
    // testcases of one name: the stage tells them apart.
    let names: Vec<String> = cases.iter().map(|(case, _)| case.name.clone()).collect();
    cases
        .into_iter()
        .enumerate()
        .map(|(index, (mut case, kind))| {
            if names.iter().filter(|name| **name == names[index]).count() > 1 {
                case.name.push_str(&format!(" ({kind})"));
            }
            case
        })
        .collect()
}

fn check_case(classname: &str, check: &Check, run: &StageRun, stage: &StageRecord) -> TestCase {
    let outcome = match check.passed {
        true => Outcome::Passed,
        false => Outcome::Failed {
            message: match check.message.is_empty() {
                true => format!("check `{}` failed", check.name),
                false => format!("check `{}` failed: {}", check.name, check.message),
            },
            kind: format!("check.{}", source_name(check)),
            body: format!("{} on {}: {}", stage.label(), run.slave, check.message),
        },
    };
    TestCase {
        classname: classname.to_string(),
        name: format!("check:{}@{}", check.name, run.slave),
        time_ms: 0,
        outcome,
        flaky: Vec::new(),
        system_out: String::new(),
    }
}

fn source_name(check: &Check) -> &'static str {
    match check.source {
        xrdtest_model::CheckSource::Script => "script",
        xrdtest_model::CheckSource::Threshold => "threshold",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn a_session_with_every_kind_of_case() {
        let xml = junit(&testdata::mixed());
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"xrdtest\""), "{xml}");
        // Counts: 4 instances + 3 checks; 1 instance and 1 check failed, 1 skipped.
        assert!(xml.contains("tests=\"7\" failures=\"2\" errors=\"0\" skipped=\"1\""), "{xml}");
        assert!(xml.contains("<property name=\"session\" value=\"42\"/>"), "{xml}");
        assert!(xml.contains("<property name=\"commit\" value=\"abc123\"/>"), "{xml}");
        assert!(xml.contains("<property name=\"param.size\" value=\"64\"/>"), "{xml}");
        assert!(xml.contains("timestamp=\"2023-11-14T22:13:20\""), "{xml}");
        assert!(xml.contains("<testcase classname=\"ts_x\" name=\"measure\" time=\"2.000\"/>"), "{xml}");
        // The failed instance: message, type, body and the output tail.
        let broken = section(&xml, "name=\"broken\"");
        assert!(
            broken.contains(
                "<failure message=\"case_run:broken on s1: check `sums` failed: abc != def; case_run:broken on s2: \
                 exit code 3\" type=\"failed\">case_run:broken on s1: check `sums` failed: abc != def (failed, exit \
                 code 0)\ncase_run:broken on s2: exit code 3 (failed, exit code 3)</failure>"
            ),
            "{broken}"
        );
        assert!(
            broken.contains(
                "<system-out>==&gt; case_run:broken on s1: last 1 lines of output &lt;==\nsums differ\n\
                 ==&gt; case_run:broken on s2: last 2 lines of output &lt;==\nerror: &lt;disk&gt; &amp; red\nbye\n\
                 </system-out>"
            ),
            "{broken}"
        );
        // The flaky one passes with one flakyFailure for its failed first attempt.
        let flaky = section(&xml, "name=\"wobbly\"");
        assert!(!flaky.contains("<failure"), "{flaky}");
        assert_eq!(flaky.matches("<flakyFailure ").count(), 1, "{flaky}");
        assert!(flaky.contains("<flakyFailure message=\"attempt 1: case_run:wobbly on s1: exit code 1\" type=\"failed\"><system-out>==&gt; case_run:wobbly on s1: last 1 lines of output &lt;==\nfirst try\n</system-out></flakyFailure>"), "{flaky}");
        // Not run.
        assert!(xml.contains("<testcase classname=\"ts_x\" name=\"later\" time=\"0.000\">\n      <skipped message=\"not run: exit-first\"/>"), "{xml}");
        // Checks are testcases of their own.
        assert!(xml.contains("<testcase classname=\"ts_x.measure\" name=\"check:reply@s1\" time=\"0.000\"/>"), "{xml}");
        assert!(xml.contains("<testcase classname=\"ts_x.measure\" name=\"check:reply@s2\" time=\"0.000\"/>"), "{xml}");
        assert!(
            xml.contains(
                "<testcase classname=\"ts_x.broken\" name=\"check:sums@s1\" time=\"0.000\">\n      <failure \
                 message=\"check `sums` failed: abc != def\" type=\"check.script\">"
            ),
            "{xml}"
        );
        // Passed suite stages make no testcase.
        assert!(!xml.contains("name=\"suite_init\""));
    }

    fn section<'a>(xml: &'a str, start: &str) -> &'a str {
        let from = xml.find(start).expect("the testcase");
        let end = xml[from..].find("</testcase>").map(|e| from + e).unwrap_or(xml.len());
        &xml[from..end]
    }

    #[test]
    fn suite_init_failure_is_a_testcase_and_cases_are_skipped() {
        let xml = junit(&testdata::suite_init_failed());
        assert!(xml.contains("<testcase classname=\"ts_x\" name=\"suite_init\" time=\"0.500\">\n      <failure message=\"suite_init on s1: exit code 2\""), "{xml}");
        assert!(xml.contains("<skipped message=\"not run: suite init failed\"/>"), "{xml}");
        assert!(xml.contains("tests=\"2\" failures=\"1\" errors=\"0\" skipped=\"1\""), "{xml}");
    }

    #[test]
    fn the_document_is_well_formed_whatever_the_scripts_printed() {
        let mut data = testdata::mixed();
        data.record.suite = "ts_<\"&'>".into();
        data.record.options.params.push(("k\u{1}".into(), "v\n\u{0}".into()));
        let bell = xrdtest_model::OutputLine { unix_ms: 0, text: "\u{7}bell ]]> \u{0}nul \u{FFFF}".into() };
        data.tails.insert(6, vec![bell]);
        let xml = junit(&data);
        assert!(xml.contains("\u{FFFD}bell ]]&gt; \u{FFFD}nul \u{FFFD}\n</system-out>"), "{xml}");
        assert!(xml.contains("name=\"ts_&lt;&quot;&amp;&#39;&gt;\""), "{xml}");
        assert!(xml.contains("<property name=\"param.k\u{FFFD}\" value=\"v&#10;\u{FFFD}\"/>"), "{xml}");
        assert!(xml.chars().all(crate::xml::allowed), "only characters XML 1.0 allows");
        testdata::assert_balanced(&xml);
    }
}
