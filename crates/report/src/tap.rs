//! A session as TAP version 13: a plan, one `ok` / `not ok` line per case instance and
//! pass (`# SKIP` when it did not run, `# flaky` when it passed only when run again), a
//! `not ok` line first for a failed suite init or finalize, and a YAML block under each
//! failure with its reason, its failed stages (with their last lines of output) and the
//! values its runs reported.

use std::fmt::Write as _;

use xrdtest_model::CaseState;

use crate::data::{FailedRun, Instance, SessionData};
use crate::format;

/// The TAP text of a session.
pub fn tap(data: &SessionData) -> String {
    let mut lines = Vec::new();
    let suite_failures = data.failed_suite_runs();
    for kind in ["suite_init", "suite_finalize"] {
        let failed: Vec<FailedRun> = suite_failures.iter().copied().filter(|f| f.stage.stage.kind() == kind).collect();
        if !failed.is_empty() {
            let reason = failed.iter().map(FailedRun::describe).collect::<Vec<_>>().join("; ");
            lines.push((false, kind.to_string(), String::new(), yaml_block(data, &reason, &failed, None)));
        }
    }
    for instance in data.instances() {
        let reason = instance.reason(data.record.reason.as_deref()).unwrap_or_default();
        let entry = match instance.case.state {
            CaseState::Passed => (true, instance.label.clone(), String::new(), String::new()),
            CaseState::Flaky => {
                let directive = format!(" # flaky: passed at attempt {}", instance.last_attempt());
                (true, instance.label.clone(), directive, String::new())
            }
            CaseState::Failed => {
                let failed = instance.failed_runs(instance.last_attempt());
                (false, instance.label.clone(), String::new(), yaml_block(data, &reason, &failed, Some(&instance)))
            }
            CaseState::NotRun | CaseState::Pending | CaseState::Running => {
                (true, instance.label.clone(), format!(" # SKIP {}", escape(&reason)), String::new())
            }
        };
        lines.push(entry);
    }
    let mut out = String::from("TAP version 13\n");
    let _ = writeln!(out, "1..{}", lines.len());
    for (number, (ok, name, directive, block)) in lines.iter().enumerate() {
        let _ = writeln!(out, "{}ok {} - {}{directive}", if *ok { "" } else { "not " }, number + 1, escape(name));
        out.push_str(block);
    }
    out
}

/// A description or directive text on one line: `#` and `\` escaped (TAP's rule), line
/// breaks flattened.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('#', "\\#").replace(['\r', '\n'], " ")
}

/// A YAML string: JSON's double-quoted form, which YAML reads the same, with the line
/// separators YAML would break on escaped too.
fn quoted(text: &str) -> String {
    serde_json::to_string(text)
        .unwrap_or_default()
        .replace('\u{85}', "\\u0085")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// The YAML block of a failure (`  ---` ... `  ...`).
fn yaml_block(data: &SessionData, reason: &str, failed: &[FailedRun], instance: Option<&Instance>) -> String {
    let mut out = String::from("  ---\n");
    let _ = writeln!(out, "  message: {}", quoted(reason));
    out.push_str("  severity: fail\n");
    if let Some(instance) = instance {
        if let Some(ms) = instance.duration_ms() {
            let _ = writeln!(out, "  duration_ms: {ms}");
        }
        let _ = writeln!(out, "  attempts: {}", instance.case.attempts);
    }
    out.push_str("  stages:\n");
    for f in failed {
        let _ = writeln!(out, "    - stage: {}", quoted(&f.stage.label()));
        let _ = writeln!(out, "      slave: {}", quoted(&f.run.slave));
        let _ = writeln!(out, "      state: {}", f.run.state);
        if let Some(code) = f.run.exit_code {
            let _ = writeln!(out, "      exit_code: {code}");
        }
        let _ = writeln!(out, "      reason: {}", quoted(&f.reason()));
        let tail = data.tail_of(f.run);
        if !tail.is_empty() {
            out.push_str("      output_tail:\n");
            for line in tail {
                let _ = writeln!(out, "        - {}", quoted(&format::strip_ansi(&line.text)));
            }
        }
    }
    if let Some(instance) = instance {
        let mut values = String::new();
        let last = instance.last_attempt();
        for (_, stage) in instance.stages.iter().filter(|(_, s)| s.attempt == last) {
            for run in &stage.runs {
                let Some(reported) = data.values_of(run) else { continue };
                for result in &reported.results {
                    let _ = writeln!(
                        values,
                        "    - {{ name: {}, slave: {}, stage: {}, value: {}, unit: {} }}",
                        quoted(&result.name),
                        quoted(&run.slave),
                        quoted(stage.stage.kind()),
                        format::number(result.value),
                        quoted(&result.unit)
                    );
                }
                for check in &reported.checks {
                    let _ = writeln!(
                        values,
                        "    - {{ check: {}, slave: {}, stage: {}, passed: {}, message: {} }}",
                        quoted(&check.name),
                        quoted(&run.slave),
                        quoted(stage.stage.kind()),
                        check.passed,
                        quoted(&check.message)
                    );
                }
            }
        }
        if !values.is_empty() {
            out.push_str("  values:\n");
            out.push_str(&values);
        }
    }
    out.push_str("  ...\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn one_line_per_instance_with_failures_explained() {
        let text = tap(&testdata::mixed());
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with("  ")).collect();
        assert_eq!(
            lines,
            [
                "TAP version 13",
                "1..4",
                "ok 1 - measure",
                "not ok 2 - broken",
                "ok 3 - wobbly # flaky: passed at attempt 2",
                "ok 4 - later # SKIP not run: exit-first",
            ]
        );
        assert!(text.contains(
            "not ok 2 - broken\n  ---\n  message: \"case_run:broken on s1: check `sums` failed: abc != def; \
             case_run:broken on s2: exit code 3\"\n  severity: fail\n  duration_ms: 1500\n  attempts: 1\n  stages:\n    \
             - stage: \"case_run:broken\"\n      slave: \"s1\"\n      state: failed\n      exit_code: 0\n"
        ), "{text}");
        assert!(text.contains("        - \"error: <disk> & red\"\n        - \"bye\"\n"), "{text}");
        assert!(text.contains(
            "  values:\n    - { check: \"sums\", slave: \"s1\", stage: \"case_run\", passed: false, message: \"abc != def\" }\n  ...\n"
        ), "{text}");
    }

    #[test]
    fn a_failed_suite_init_is_a_failed_test() {
        let text = tap(&testdata::suite_init_failed());
        assert!(text.starts_with("TAP version 13\n1..2\nnot ok 1 - suite_init\n  ---\n"), "{text}");
        assert!(text.contains("ok 2 - only # SKIP not run: suite init failed\n"), "{text}");
    }

    #[test]
    fn descriptions_escape_hashes() {
        assert_eq!(escape("a#b\\c\nd"), "a\\#b\\\\c d");
        assert_eq!(quoted("x\u{2028}y\"z"), "\"x\\u2028y\\\"z\"");
    }
}
