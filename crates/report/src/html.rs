//! A session as one self-contained HTML page (`report.html` of an export): inline CSS, no
//! script, no font, image or link off the export folder, so it opens from disk with no
//! server and shows the same in ten years. Links point at the export's own files by
//! relative path ([`crate::export::Layout`]) and at anchors in the page.
//!
//! It shows the verdict, suite, session, times, run options and parameters; the suite
//! stages; per case instance its state, attempts, duration, each stage run per slave, its
//! checks and results; and each failed run's reason with its last lines of output.

use std::fmt::Write as _;

use xrdtest_model::{CaseState, RunOptions, RunState, SessionRecord, StageRecord};

use crate::data::{duration, run_failed, FailedRun, Instance, SessionData};
use crate::export::{Layout, NOTES_FILE};
use crate::format::{human_duration, human_utc, number, strip_ansi};
use crate::xml::attr as esc;

const STYLE: &str = r#"
:root { --ink: #1f2328; --muted: #656d76; --line: #d0d7de; --soft: #f6f8fa; --bg: #ffffff;
  --pass: #1a7f37; --pass-bg: #dafbe1; --fail: #cf222e; --fail-bg: #ffebe9;
  --flaky: #9a6700; --flaky-bg: #fff8c5; --skip: #57606a; --skip-bg: #eaeef2;
  --run: #0969da; --run-bg: #ddf4ff; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: var(--ink); background: var(--bg); }
main { max-width: 1200px; margin: 0 auto; }
h1 { font-size: 24px; margin: 0; }
h2 { font-size: 18px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 0 0 8px; display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
h4 { font-size: 14px; margin: 12px 0 4px; }
a { color: var(--run); }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 12.5px; }
.head { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
.muted { color: var(--muted); }
.reason { margin: 10px 0 0; padding: 8px 12px; border-left: 4px solid var(--fail); background: var(--fail-bg); }
.reason.flaky { border-color: var(--flaky); background: var(--flaky-bg); }
.facts { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 0 32px; margin: 16px 0 0; }
.facts dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; overflow-wrap: anywhere; }
.files { margin: 12px 0 0; }
.files a { margin-right: 12px; }
.counts { display: flex; gap: 8px; flex-wrap: wrap; margin: 8px 0; }
.st { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; white-space: nowrap;
  background: var(--skip-bg); color: var(--skip); }
.big { font-size: 14px; padding: 3px 12px; }
.st-passed { background: var(--pass-bg); color: var(--pass); }
.st-failed, .st-timed_out, .st-disconnected, .st-interrupted { background: var(--fail-bg); color: var(--fail); }
.st-flaky { background: var(--flaky-bg); color: var(--flaky); }
.st-running, .st-pending, .st-queued, .st-starting_cluster, .st-waiting_slaves { background: var(--run-bg); color: var(--run); }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; }
th, td { text-align: left; vertical-align: top; padding: 5px 10px; border-bottom: 1px solid var(--line); }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.scroll { overflow-x: auto; }
.case { border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; margin: 14px 0; }
.case.failed { border-left: 4px solid var(--fail); }
.case.flaky { border-left: 4px solid var(--flaky); }
.run small { display: block; color: var(--muted); }
.run a { font-size: 12px; margin-right: 6px; }
.failure { margin: 10px 0; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; margin: 4px 0;
  overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere; max-height: 420px; }
footer { margin: 36px 0 0; color: var(--muted); font-size: 12px; }
@media print { .case { break-inside: avoid; } pre { max-height: none; } }
"#;

/// The page of a session, for its export folder.
pub fn html(data: &SessionData) -> String {
    let record = &data.record;
    let layout = Layout::of(record);
    let instances = data.instances();
    let slaves = slave_columns(record);
    let mut out = String::new();
    let verdict = record.verdict();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} #{} {} · xrdtest report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        esc(&record.suite),
        record.id,
        verdict
    );

    // The verdict and the facts.
    let _ = writeln!(
        out,
        "<div class=\"head\"><h1>{} <span class=\"muted\">· session #{}</span></h1> \
         <span id=\"verdict\" class=\"st big st-{verdict}\">{verdict}</span></div>",
        esc(&record.suite),
        record.id
    );
    if let Some(reason) = &record.reason {
        let class = if verdict == "flaky" { "reason flaky" } else { "reason" };
        let _ = writeln!(out, "<p id=\"session-reason\" class=\"{class}\">{}</p>", esc(reason));
    }
    let time = |ms: Option<u64>| ms.map(human_utc).unwrap_or_else(|| "—".into());
    let took = duration(record.started_ms, record.ended_ms).map(human_duration).unwrap_or_else(|| "—".into());
    out.push_str("<div class=\"facts\">\n<dl>\n");
    fact(&mut out, "Suite", &esc(&record.suite));
    fact(&mut out, "Session", &record.id.to_string());
    fact(&mut out, "Verdict", &format!("{verdict} <span class=\"muted\">(state {})</span>", record.state));
    fact(&mut out, "Started by", record.trigger.as_str());
    fact(&mut out, "Slaves", &esc(&record.slaves.join(", ")));
    out.push_str("</dl>\n<dl>\n");
    fact(&mut out, "Created", &time(Some(record.created_ms)));
    fact(&mut out, "Started", &time(record.started_ms));
    fact(&mut out, "Ended", &time(record.ended_ms));
    fact(&mut out, "Duration", &took);
    fact(&mut out, "Definition", &format!("<span class=\"mono\">{}</span>", esc(&record.definition_hash)));
    if let Some(commit) = &record.commit {
        fact(&mut out, "Commit", &format!("<span class=\"mono\">{}</span>", esc(commit)));
    }
    if let Some(cluster) = &record.cluster {
        let on = cluster.hypervisor.as_deref().map(|h| format!(" on {}", esc(h))).unwrap_or_default();
        fact(&mut out, "Cluster", &format!("{}{on}", esc(&cluster.name)));
    }
    out.push_str("</dl>\n</div>\n");
    let _ = writeln!(
        out,
        "<p class=\"files\">Files: <a href=\"report.json\">report.json</a><a href=\"junit.xml\">junit.xml</a>\
         <a href=\"results.csv\">results.csv</a><a href=\"{NOTES_FILE}\">{NOTES_FILE}</a></p>"
    );

    options_section(&mut out, &record.options);
    summary_section(&mut out, data, &instances);
    suite_section(&mut out, data, &layout, &slaves);
    for (number, instance) in instances.iter().enumerate() {
        instance_section(&mut out, data, &layout, &slaves, number, instance);
    }
    let _ = writeln!(
        out,
        "<footer>Made by xrdtest {} from session {} as stored by its master. Times are UTC. Stage output \
         and logs are in <code>stages/</code>; <a href=\"{NOTES_FILE}\">{NOTES_FILE}</a> says whether any was \
         cut.</footer>\n</main>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION"),
        record.id
    );
    out
}

fn fact(out: &mut String, name: &str, value_html: &str) {
    let _ = writeln!(out, "<dt>{name}</dt><dd>{value_html}</dd>");
}

fn badge(state: &str) -> String {
    let label = state.replace('_', " ");
    format!("<span class=\"st st-{state}\">{label}</span>")
}

/// The slaves as columns: the session's, then any other a run names.
fn slave_columns(record: &SessionRecord) -> Vec<String> {
    let mut slaves = record.slaves.clone();
    for run in record.stages.iter().flat_map(|stage| &stage.runs) {
        if !slaves.contains(&run.slave) {
            slaves.push(run.slave.clone());
        }
    }
    slaves
}

fn options_section(out: &mut String, options: &RunOptions) {
    let list = |items: &[String], none: &str| match items.is_empty() {
        true => format!("<span class=\"muted\">{none}</span>"),
        false => items.iter().map(|i| format!("<code>{}</code>", esc(i))).collect::<Vec<_>>().join(" "),
    };
    let params: Vec<String> = options.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    out.push_str("<h2>Run options</h2>\n<div class=\"facts\"><dl id=\"options\">\n");
    fact(out, "Parameters", &list(&params, "none"));
    fact(out, "Cases", &list(&options.cases, "all"));
    fact(out, "Left out", &list(&options.skip, "none"));
    out.push_str("</dl>\n<dl>\n");
    let passes = match options.for_ms {
        Some(ms) => format!("repeated for {}", human_duration(ms)),
        None => options.repeat.max(1).to_string(),
    };
    fact(out, "Passes", &passes);
    let retries = options.retries.map(|r| r.to_string()).unwrap_or_else(|| "the suite's and cases' own".into());
    fact(out, "Retries", &retries);
    fact(out, "Exit first", if options.exit_first { "yes" } else { "no" });
    if let Some(ms) = options.keep_on_failure_ms {
        fact(out, "Keep the cluster after a failure", &human_duration(ms));
    }
    out.push_str("</dl></div>\n");
}

fn summary_section(out: &mut String, data: &SessionData, instances: &[Instance]) {
    let count = |state: CaseState| instances.iter().filter(|i| i.case.state == state).count();
    let _ = writeln!(out, "<h2>Case instances</h2>\n<div class=\"counts\" id=\"counts\">");
    let _ = write!(out, "<span class=\"st\">{} in all</span>", instances.len());
    for state in [CaseState::Passed, CaseState::Failed, CaseState::Flaky, CaseState::NotRun] {
        let n = count(state);
        if n > 0 {
            let _ = write!(out, "<span class=\"st st-{state}\">{n} {}</span>", state.as_str().replace('_', " "));
        }
    }
    out.push_str("</div>\n");
    if instances.is_empty() {
        out.push_str("<p class=\"muted\">This session has no case instances.</p>\n");
        return;
    }
    out.push_str(
        "<div class=\"scroll\"><table id=\"cases\">\n<thead><tr><th class=\"num\">#</th><th>Instance</th><th>State</th>\
         <th class=\"num\">Attempts</th><th class=\"num\">Duration</th><th>Checks</th><th class=\"num\">Results</th></tr></thead>\n<tbody>\n",
    );
    for (number, instance) in instances.iter().enumerate() {
        let last = instance.last_attempt();
        let (mut checks, mut failed_checks, mut results) = (0, 0, 0);
        for (_, stage) in instance.stages.iter().filter(|(_, s)| s.attempt == last) {
            for values in stage.runs.iter().filter_map(|run| data.values_of(run)) {
                checks += values.checks.len();
                failed_checks += values.failed_checks().count();
                results += values.results.len();
            }
        }
        let checks = match (checks, failed_checks) {
            (0, _) => "—".to_string(),
            (n, 0) => format!("{n} passed"),
            (n, f) => format!("<b>{f} failed</b> of {n}"),
        };
        let _ = writeln!(
            out,
            "<tr data-instance=\"{}\"><td class=\"num\">{}</td><td><a href=\"#case-{}\">{}</a></td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{checks}</td><td class=\"num\">{}</td></tr>",
            esc(&instance.label),
            number + 1,
            number + 1,
            esc(&instance.label),
            badge(instance.case.state.as_str()),
            instance.case.attempts,
            instance.duration_ms().map(human_duration).unwrap_or_else(|| "—".into()),
            if results == 0 { "—".to_string() } else { results.to_string() },
        );
    }
    out.push_str("</tbody></table></div>\n");
}

/// The grid of some stages: one row per stage, one column per slave.
fn stage_table(out: &mut String, layout: &Layout, slaves: &[String], stages: &[(usize, &StageRecord)]) {
    out.push_str("<div class=\"scroll\"><table class=\"stages\">\n<thead><tr><th>Stage</th>");
    for slave in slaves {
        let _ = write!(out, "<th>{}</th>", esc(slave));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for &(index, stage) in stages {
        let _ = write!(out, "<tr><th scope=\"row\">{}", esc(&stage.label()));
        if let Some(skipped) = &stage.skipped {
            let _ = write!(out, "<small class=\"muted\"> skipped: {}</small>", esc(skipped));
        }
        out.push_str("</th>");
        for slave in slaves {
            let Some((run_index, run)) = stage.runs.iter().enumerate().find(|(_, run)| &run.slave == slave) else {
                out.push_str("<td class=\"muted\">—</td>");
                continue;
            };
            let _ = write!(out, "<td class=\"run\">{}", badge(run.state.as_str()));
            let mut detail = Vec::new();
            if let Some(ms) = duration(run.started_ms, run.ended_ms) {
                detail.push(human_duration(ms));
            }
            if let Some(code) = run.exit_code.filter(|&code| code != 0 || run.state != RunState::Passed) {
                detail.push(format!("exit {code}"));
            }
            if !detail.is_empty() {
                let _ = write!(out, "<small>{}</small>", detail.join(" · "));
            }
            if let Some(path) = layout.output(index, run_index) {
                let _ = write!(out, "<a href=\"{}\">output</a>", esc(&path));
            }
            for (log_index, log) in run.logs.iter().enumerate() {
                if let Some(path) = layout.log(index, run_index, log_index) {
                    let _ = write!(out, "<a href=\"{}\" title=\"{}\">log</a>", esc(path), esc(log));
                }
            }
            out.push_str("</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
}

fn failures(out: &mut String, data: &SessionData, layout: &Layout, failed: &[FailedRun]) {
    for f in failed {
        let run_index = f.stage.runs.iter().position(|run| std::ptr::eq(run, f.run)).unwrap_or(0);
        let _ = write!(
            out,
            "<div class=\"failure\"><h4>{} on {}: {}</h4>",
            esc(&f.stage.label()),
            esc(&f.run.slave),
            esc(&f.reason())
        );
        let tail = data.tail_of(f.run);
        if tail.is_empty() {
            out.push_str("<p class=\"muted\">No output.</p>");
        } else {
            let text: Vec<_> = tail.iter().map(|line| strip_ansi(&line.text)).collect();
            let _ = write!(out, "<pre>{}</pre>", esc(&text.join("\n")));
        }
        if let Some(path) = layout.output(f.index, run_index) {
            let _ = write!(
                out,
                "<small class=\"muted\">last {} lines · <a href=\"{}\">whole output</a></small>",
                tail.len(),
                esc(&path)
            );
        }
        out.push_str("</div>\n");
    }
}

fn suite_section(out: &mut String, data: &SessionData, layout: &Layout, slaves: &[String]) {
    let stages = data.suite_stages();
    if stages.is_empty() {
        return;
    }
    out.push_str("<h2>Suite stages</h2>\n<section class=\"case\" id=\"suite-stages\">\n");
    stage_table(out, layout, slaves, &stages);
    values_tables(out, data, &stages);
    failures(out, data, layout, &data.failed_suite_runs());
    out.push_str("</section>\n");
}

/// The checks and results of some stages' runs, as two tables.
fn values_tables(out: &mut String, data: &SessionData, stages: &[(usize, &StageRecord)]) {
    let mut checks = String::new();
    let mut results = String::new();
    for (_, stage) in stages {
        for run in &stage.runs {
            let Some(values) = data.values_of(run) else { continue };
            for check in &values.checks {
                let verdict = if check.passed { badge("passed") } else { badge("failed") };
                let source = match check.source {
                    xrdtest_model::CheckSource::Script => "script",
                    xrdtest_model::CheckSource::Threshold => "threshold",
                };
                let _ = writeln!(
                    checks,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{verdict}</td><td>{}</td><td class=\"muted\">{source}</td></tr>",
                    esc(&check.name),
                    esc(&run.slave),
                    esc(&stage.label()),
                    esc(&check.message)
                );
            }
            for result in &values.results {
                let _ = writeln!(
                    results,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                    esc(&result.name),
                    esc(&run.slave),
                    esc(&stage.label()),
                    number(result.value),
                    esc(&result.unit)
                );
            }
        }
    }
    if !checks.is_empty() {
        let _ = write!(
            out,
            "<h4>Checks</h4><div class=\"scroll\"><table class=\"checks\"><thead><tr><th>Check</th><th>Slave</th>\
             <th>Stage</th><th>Verdict</th><th>Message</th><th>From</th></tr></thead><tbody>\n{checks}</tbody></table></div>\n"
        );
    }
    if !results.is_empty() {
        let _ = write!(
            out,
            "<h4>Results</h4><div class=\"scroll\"><table class=\"results\"><thead><tr><th>Result</th><th>Slave</th>\
             <th>Stage</th><th class=\"num\">Value</th><th>Unit</th></tr></thead><tbody>\n{results}</tbody></table></div>\n"
        );
    }
}

fn instance_section(
    out: &mut String,
    data: &SessionData,
    layout: &Layout,
    slaves: &[String],
    number: usize,
    instance: &Instance,
) {
    let case = instance.case;
    let state = case.state.as_str();
    let _ = writeln!(
        out,
        "<section class=\"case {state}\" id=\"case-{}\" data-instance=\"{}\">\n<h3>{} {}<span class=\"muted\">{}</span></h3>",
        number + 1,
        esc(&instance.label),
        esc(&instance.label),
        badge(state),
        esc(&instance_facts(instance))
    );
    if let Some(reason) = instance.reason(data.record.reason.as_deref()) {
        let _ = writeln!(out, "<p class=\"reason\">{}</p>", esc(&reason));
    }
    if instance.stages.is_empty() {
        out.push_str("<p class=\"muted\">No stage of it was run.</p>\n");
    } else {
        stage_table(out, layout, slaves, &instance.stages);
    }
    values_tables(out, data, &instance.stages);
    // Every failed run, earlier attempts (a flaky instance's) included.
    let failed: Vec<FailedRun> = instance
        .stages
        .iter()
        .flat_map(|&(index, stage)| {
            stage.runs.iter().filter(|run| run_failed(run)).map(move |run| FailedRun { index, stage, run })
        })
        .collect();
    if !failed.is_empty() {
        out.push_str("<h4>Failures</h4>\n");
        failures(out, data, layout, &failed);
    }
    out.push_str("</section>\n");
}

/// `2 attempts · 3.4 s · size=64`.
fn instance_facts(instance: &Instance) -> String {
    let case = instance.case;
    let mut facts = Vec::new();
    if case.attempts > 1 {
        facts.push(format!("{} attempts", case.attempts));
    }
    if let Some(ms) = instance.duration_ms() {
        facts.push(human_duration(ms));
    }
    if case.case != case.name {
        facts.push(format!("case {}", case.case));
    }
    match facts.is_empty() {
        true => String::new(),
        false => format!(" {}", facts.join(" · ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    #[test]
    fn the_page_shows_the_session_and_links_only_its_folder() {
        let page = html(&testdata::mixed());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("<title>ts_x #42 failed · xrdtest report</title>"), "{page}");
        assert!(page.contains("<span id=\"verdict\" class=\"st big st-failed\">failed</span>"));
        assert!(page.contains("<code>size=64</code>"), "parameters shown");
        assert!(page.contains("2023-11-14 22:13:20 UTC"));
        // Checks, results and a failure with its tail (escaped, the ESC replaced).
        assert!(page.contains("<td><code>latency_ms</code></td><td>s1</td><td>case_run:measure</td><td class=\"num\">12.5</td><td>ms</td>"), "{page}");
        assert!(page.contains("<td>abc != def</td>"));
        assert!(page.contains("<pre>error: &lt;disk&gt; &amp; red&#10;bye</pre>"), "{page}");
        assert!(page.contains("<a href=\"stages/003-case_run_broken/s2/output.txt\">whole output</a>"), "{page}");
        assert!(page.contains("<b>1 failed</b> of 1"), "{page}");
        // The flaky instance shows its failed first attempt.
        assert!(page.contains("<h4>case_run:wobbly on s1: exit code 1</h4>"), "{page}");
        assert!(page.contains("No stage of it was run.") || page.contains("case_run:later"));
        // Self-contained: no script, no style sheet or image from elsewhere, only relative links.
        for forbidden in ["<script", "<link", "<img", "<iframe", "@import", "url(", "http://", "https://", "src="] {
            assert!(!page.contains(forbidden), "{forbidden}");
        }
        for href in page.split("href=\"").skip(1) {
            let target = &href[..href.find('"').unwrap_or(0)];
            assert!(
                target.starts_with('#')
                    || (!target.contains(':') && !target.starts_with('/') && !target.contains("..")),
                "{target}"
            );
        }
    }

    #[test]
    fn every_linked_file_is_in_the_export() {
        let data = testdata::mixed();
        let page = html(&data);
        let files: Vec<String> = crate::export::files(&data).into_iter().map(|f| f.path).collect();
        for href in page.split("href=\"").skip(1) {
            let target = &href[..href.find('"').unwrap_or(0)];
            if let Some(anchor) = target.strip_prefix('#') {
                assert!(page.contains(&format!("id=\"{anchor}\"")), "{target}");
            } else {
                assert!(files.iter().any(|f| f == target), "{target} is not in the export");
            }
        }
    }

    #[test]
    fn a_failed_suite_init_is_shown_with_its_output() {
        let page = html(&testdata::suite_init_failed());
        assert!(page.contains("<h4>suite_init on s1: exit code 2</h4><pre>cannot mount /data</pre>"), "{page}");
        assert!(page.contains("not run: suite init failed"));
    }
}
