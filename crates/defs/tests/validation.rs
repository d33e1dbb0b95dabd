//! Validation of a definitions repository, end to end through `load_repository`.
//!
//! Every test builds a small repository in a temporary folder, loads it, and checks that
//! each problem is reported with its file, its line (where the parser knows it), its field
//! and a message that says what is wrong; and that valid definitions load and invalid ones
//! are left out of the repository.

use std::fs;
use std::path::{Path, PathBuf};

mod common;

use common::{dump, expect_error, expect_error_count, write_file, Repo};
use xrdtest_defs::{load_repository, Boot, DefError, LoadReport};

// ---------------------------------------------------------------------------------------
// Fixture helpers
// ---------------------------------------------------------------------------------------

/// Writes `suites/<name>/suite.toml`.
fn write_suite(root: &Path, name: &str, toml: &str) -> PathBuf {
    let path = root.join("suites").join(name).join("suite.toml");
    write_file(&path, toml);
    path
}

/// Writes a file in a suite's folder (a `file://` script, say).
fn write_suite_file(root: &Path, suite: &str, rel: &str, text: &str) -> PathBuf {
    let path = root.join("suites").join(suite).join(rel);
    write_file(&path, text);
    path
}

/// Creates `suites/<suite>/tc/<case>/`, with `init.sh` and `run.sh` as asked.
fn write_case(root: &Path, suite: &str, case: &str, with_init: bool, with_run: bool) -> PathBuf {
    let dir = root.join("suites").join(suite).join("tc").join(case);
    fs::create_dir_all(&dir).unwrap();
    if with_init {
        write_file(&dir.join("init.sh"), "#!/bin/sh\ntrue\n");
    }
    if with_run {
        write_file(&dir.join("run.sh"), "#!/bin/sh\ntrue\n");
    }
    dir
}

/// Writes `suites/<suite>/tc/<case>/case.toml`.
fn write_case_toml(root: &Path, suite: &str, case: &str, toml: &str) -> PathBuf {
    let path = root.join("suites").join(suite).join("tc").join(case).join("case.toml");
    write_file(&path, toml);
    path
}

/// Writes `clusters/<name>/cluster.toml`.
fn write_cluster(root: &Path, name: &str, toml: &str) -> PathBuf {
    let path = root.join("clusters").join(name).join("cluster.toml");
    write_file(&path, toml);
    path
}

/// A valid suite `name` on static machines with complete test cases `cases`.
fn valid_static_suite(root: &Path, name: &str, cases: &[&str]) {
    let tests = cases.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
    write_suite(
        root,
        name,
        &format!("name = \"{name}\"\nmachines = [\"slave1\"]\ntests = [{tests}]\ninitialize = \"echo init\"\n"),
    );
    for case in cases {
        write_case(root, name, case, true, true);
    }
}

/// The text of a valid cluster `name` on 10.<octet>.0.0/24 with two hosts `<prefix>1`
/// and `<prefix>2` (in the default domain xrd.test).
fn valid_cluster_toml(name: &str, octet: u8, prefix: &str) -> String {
    format!(
        r#"name = "{name}"
[network]
bridge = "br_{name}"
ip = "10.{octet}.0.1"
netmask = "255.255.255.0"
dhcp_range = ["10.{octet}.0.100", "10.{octet}.0.200"]
[defaults]
boot_image = "slave.img"
[[hosts]]
name = "{prefix}1"
ip = "10.{octet}.0.10"
[[hosts]]
name = "{prefix}2"
ip = "10.{octet}.0.11"
"#
    )
}

#[track_caller]
fn expect_valid(report: &LoadReport) {
    assert!(report.is_valid(), "expected no errors, found:\n{}", dump(&report.errors));
}

// ---------------------------------------------------------------------------------------
// The shipped examples
// ---------------------------------------------------------------------------------------

#[test]
fn shipped_examples_are_valid() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let report = load_repository(&repo.join("suites"), &repo.join("clusters"));
    expect_valid(&report);
    assert!(report.suites_seen >= 2, "suites seen: {}", report.suites_seen);
    assert!(report.clusters_seen >= 2, "clusters seen: {}", report.clusters_seen);
    assert_eq!(report.repository.suites.len(), report.suites_seen);
    assert_eq!(report.repository.clusters.len(), report.clusters_seen);
    assert!(report.repository.suites.contains_key("ts_demo"));
    assert!(report.repository.suites.contains_key("ts_xrootd_copy"));
    assert!(report.repository.clusters.contains_key("cluster_example"));
    assert!(report.repository.clusters.contains_key("cluster_pair"));
}

// ---------------------------------------------------------------------------------------
// Suites
// ---------------------------------------------------------------------------------------

#[test]
fn every_error_in_one_suite_file_is_reported() {
    let repo = Repo::new();
    let root = &repo.root;
    let file = write_suite(
        root,
        "ts_broken",
        r#"name = "ts_broken"
machines = ["slave1"]
tests = ["present", "absent"]
schedule = "0 61 * * * *"
initialize = "file://missing_init.sh"
finalize = "https://exa mple.org/finalize.sh"
alert_success = "SOMETIMES"
alert_failure = "CASE"
stage_timeout = "ten minutes"
logs = ["relative/x.log"]
alert_emails = ["not-an-email"]
"#,
    );
    write_case(root, "ts_broken", "present", true, true);
    let report = repo.load();

    let f = "ts_broken/suite.toml";
    let missing_case = expect_error(&report, f, Some(3), "tests[1]", "does not exist");
    assert!(missing_case.message.contains("tc/absent"), "{missing_case}");
    expect_error(&report, f, Some(4), "schedule", "not a valid cron schedule");
    let script = expect_error(&report, f, Some(5), "initialize", "does not exist");
    assert!(script.message.contains("missing_init.sh"), "{script}");
    expect_error(&report, f, Some(6), "finalize", "not a valid URL");
    expect_error(&report, f, Some(7), "alert_success", "unknown alert policy `SOMETIMES`");
    expect_error(&report, f, Some(9), "stage_timeout", "not a duration");
    expect_error(&report, f, Some(10), "logs[0]", "absolute path");
    expect_error(&report, f, Some(11), "alert_emails[0]", "not an email address");
    expect_error_count(&report, 8);
    assert!(report.errors.iter().all(|e| e.file == file), "{}", dump(&report.errors));
    assert!(report.repository.suites.is_empty());
    assert_eq!(report.suites_seen, 1);
}

#[test]
fn errors_are_listed_in_file_order_with_display_form() {
    let repo = Repo::new();
    write_suite(
        &repo.root,
        "ts_a",
        "name = \"ts_a\"\nmachines = [\"s1\"]\ntests = [\"nope\"]\ninitialize = \"echo\"\nalert_failure = \"LOUD\"\n",
    );
    let report = repo.load();
    expect_error_count(&report, 2);
    assert_eq!(report.errors[0].field, "tests[0]");
    assert_eq!(report.errors[1].field, "alert_failure");
    let shown = report.errors[1].to_string();
    assert!(shown.contains("ts_a/suite.toml:5: field `alert_failure`: unknown alert policy `LOUD`"), "{shown}");
}

#[test]
fn suite_notify_is_a_known_policy_and_defaults_to_none() {
    let repo = Repo::new();
    let base = "machines = [\"s1\"]\ntests = [\"c\"]\ninitialize = \"echo\"\n";
    for (name, line) in
        [("ts_loud", "notify = \"sometimes\""), ("ts_typed", "notify = true"), ("ts_fix", "notify = \"change\"")]
    {
        write_suite(&repo.root, name, &format!("name = \"{name}\"\n{base}{line}\n"));
        write_case(&repo.root, name, "c", true, true);
    }
    valid_static_suite(&repo.root, "ts_plain", &["c"]);
    let report = repo.load();
    let error = expect_error(&report, "ts_loud/suite.toml", Some(5), "notify", "unknown notify policy `sometimes`");
    assert!(error.message.contains("always, failure, change or never"), "{error}");
    assert!(error.to_string().contains("ts_loud/suite.toml:5: field `notify`"), "{error}");
    expect_error(&report, "ts_typed/suite.toml", Some(5), "notify", "found boolean");
    expect_error_count(&report, 2);
    let suites = &report.repository.suites;
    assert_eq!(suites["ts_fix"].notify, Some(xrdtest_defs::NotifyPolicy::Change));
    assert_eq!(suites["ts_plain"].notify, None);
    assert!(!suites.contains_key("ts_loud") && !suites.contains_key("ts_typed"));
}

#[test]
fn suite_name_must_match_its_folder() {
    let repo = Repo::new();
    write_suite(
        &repo.root,
        "ts_folder",
        "# a comment\nname = \"ts_other\"\nmachines = [\"s1\"]\ntests = [\"c\"]\ninitialize = \"echo\"\n",
    );
    write_case(&repo.root, "ts_folder", "c", true, true);
    let report = repo.load();
    let error = expect_error(&report, "ts_folder/suite.toml", Some(2), "name", "must equal its folder name");
    assert!(error.message.contains("ts_other") && error.message.contains("ts_folder"), "{error}");
    expect_error_count(&report, 1);
    assert!(report.repository.suites.is_empty());
}

#[test]
fn suite_mandatory_fields_are_reported_together() {
    let repo = Repo::new();
    write_suite(&repo.root, "ts_empty", "description = \"nothing else\"\n");
    let report = repo.load();
    let f = "ts_empty/suite.toml";
    expect_error(&report, f, None, "name", "required");
    expect_error(&report, f, None, "tests", "required");
    expect_error(&report, f, None, "initialize", "required");
    expect_error(&report, f, None, "machines", "`cluster`");
    expect_error_count(&report, 4);
    assert!(report.repository.suites.is_empty());
}

#[test]
fn suite_empty_lists_are_reported() {
    let repo = Repo::new();
    write_suite(&repo.root, "ts_lists", "name = \"ts_lists\"\nmachines = []\ntests = []\ninitialize = \"echo\"\n");
    let report = repo.load();
    let f = "ts_lists/suite.toml";
    expect_error(&report, f, Some(2), "machines", "lists no machine");
    expect_error(&report, f, Some(3), "tests", "lists no test case");
    expect_error_count(&report, 2);
}

#[test]
fn suite_without_suite_toml_is_reported() {
    let repo = Repo::new();
    fs::create_dir_all(repo.root.join("suites/ts_nofile")).unwrap();
    let report = repo.load();
    expect_error(&report, "ts_nofile/suite.toml", None, "", "cannot read file");
    expect_error_count(&report, 1);
    assert_eq!(report.suites_seen, 1);
}

#[test]
fn unknown_suite_field_is_named_with_its_line() {
    let repo = Repo::new();
    write_suite(
        &repo.root,
        "ts_typo",
        "name = \"ts_typo\"\nmachines = [\"s1\"]\ntests = [\"c\"]\nintialize = \"echo\"\n",
    );
    write_case(&repo.root, "ts_typo", "c", true, true);
    let report = repo.load();
    expect_error(&report, "ts_typo/suite.toml", Some(4), "intialize", "unknown field `intialize`");
    expect_error_count(&report, 1);
}

#[test]
fn suite_toml_syntax_error_has_a_line() {
    let repo = Repo::new();
    write_suite(&repo.root, "ts_syntax", "name = \"ts_syntax\"\nmachines = [\"s1\"\ntests = [\"c\"]\n");
    let report = repo.load();
    expect_error_count(&report, 1);
    let error = &report.errors[0];
    assert!(error.file.ends_with("ts_syntax/suite.toml"), "{error}");
    let line = error.line.expect("a syntax error has a line");
    assert!((2..=3).contains(&line), "{error}");
    assert!(!error.message.is_empty());
}

#[test]
fn suite_toml_wrong_type_has_line_and_field() {
    let repo = Repo::new();
    write_suite(
        &repo.root,
        "ts_type",
        "name = \"ts_type\"\nmachines = \"s1\"\ntests = [\"c\"]\ninitialize = \"echo\"\n",
    );
    let report = repo.load();
    expect_error_count(&report, 1);
    let error = &report.errors[0];
    assert!(error.file.ends_with("ts_type/suite.toml"), "{error}");
    assert_eq!(error.line, Some(2), "{error}");
}

#[test]
fn case_folder_must_have_init_and_run() {
    let repo = Repo::new();
    let root = &repo.root;
    write_suite(
        root,
        "ts_cases",
        "name = \"ts_cases\"\nmachines = [\"s1\"]\ntests = [\n  \"ok\",\n  \"no_init\",\n  \"no_run\",\n  \"empty\",\n]\ninitialize = \"echo\"\n",
    );
    write_case(root, "ts_cases", "ok", true, true);
    write_case(root, "ts_cases", "no_init", false, true);
    write_case(root, "ts_cases", "no_run", true, false);
    write_case(root, "ts_cases", "empty", false, false);
    let report = repo.load();
    let f = "ts_cases/suite.toml";
    let e = expect_error(&report, f, Some(5), "tests[1]", "is missing");
    assert!(e.message.contains("tc/no_init/init.sh"), "{e}");
    let e = expect_error(&report, f, Some(6), "tests[2]", "is missing");
    assert!(e.message.contains("tc/no_run/run.sh"), "{e}");
    let empty: Vec<&DefError> = report.errors.iter().filter(|e| e.field == "tests[3]").collect();
    assert_eq!(empty.len(), 2, "both scripts of `empty` are missing:\n{}", dump(&report.errors));
    assert!(empty.iter().all(|e| e.line == Some(7)));
    assert!(empty.iter().any(|e| e.message.contains("tc/empty/init.sh")));
    assert!(empty.iter().any(|e| e.message.contains("tc/empty/run.sh")));
    expect_error_count(&report, 4);
    assert!(report.repository.suites.is_empty());
}

#[test]
fn case_toml_bad_stage_timeout_is_reported_in_case_file() {
    let repo = Repo::new();
    let root = &repo.root;
    valid_static_suite(root, "ts_ct", &["slow", "zero", "good"]);
    write_case_toml(root, "ts_ct", "slow", "description = \"slow\"\nstage_timeout = \"5 fortnights\"\n");
    write_case_toml(root, "ts_ct", "zero", "stage_timeout = 0\n");
    write_case_toml(root, "ts_ct", "good", "stage_timeout = \"90s\"\n");
    let report = repo.load();
    expect_error(&report, "tc/slow/case.toml", Some(2), "stage_timeout", "not a duration");
    expect_error(&report, "tc/zero/case.toml", Some(1), "stage_timeout", "not a positive number");
    expect_error_count(&report, 2);
    assert!(report.repository.suites.is_empty());
}

#[test]
fn case_toml_is_optional_and_its_timeout_is_used() {
    let repo = Repo::new();
    let root = &repo.root;
    valid_static_suite(root, "ts_ct", &["good", "plain"]);
    write_case_toml(root, "ts_ct", "good", "description = \"good\"\nstage_timeout = \"1h30m\"\n");
    write_suite_file(root, "ts_ct", "tc/plain/finalize.sh", "true\n");
    let report = repo.load();
    expect_valid(&report);
    let suite = &report.repository.suites["ts_ct"];
    let good = &suite.tests[0];
    assert_eq!(good.name, "good");
    assert_eq!(good.description.as_deref(), Some("good"));
    assert_eq!(good.effective_timeout(suite).as_secs(), 5400);
    assert!(good.finalize.is_none());
    let plain = &suite.tests[1];
    assert_eq!(plain.effective_timeout(suite), xrdtest_defs::suite::DEFAULT_STAGE_TIMEOUT);
    assert!(plain.finalize.as_ref().is_some_and(|p| p.ends_with("tc/plain/finalize.sh")));
}

#[test]
fn case_toml_unknown_field_is_reported() {
    let repo = Repo::new();
    valid_static_suite(&repo.root, "ts_ct", &["c"]);
    write_case_toml(&repo.root, "ts_ct", "c", "description = \"x\"\ntimeout = \"1m\"\n");
    let report = repo.load();
    expect_error(&report, "tc/c/case.toml", Some(2), "timeout", "unknown field `timeout`");
    expect_error_count(&report, 1);
}

#[test]
fn file_scripts_must_exist_and_urls_must_parse() {
    let repo = Repo::new();
    let root = &repo.root;
    write_suite(
        root,
        "ts_scripts",
        r#"name = "ts_scripts"
machines = ["s1"]
tests = ["c"]
initialize = "file://init.sh"
finalize = "file:///nonexistent/xrdtest/finalize.sh"
"#,
    );
    write_suite_file(root, "ts_scripts", "init.sh", "true\n");
    write_case(root, "ts_scripts", "c", true, true);
    let report = repo.load();
    let e = expect_error(&report, "ts_scripts/suite.toml", Some(5), "finalize", "does not exist");
    assert!(e.message.contains("/nonexistent/xrdtest/finalize.sh"), "{e}");
    expect_error_count(&report, 1);

    // Fixed: the script exists, and a URL with a host parses.
    write_suite(
        root,
        "ts_scripts",
        "name = \"ts_scripts\"\nmachines = [\"s1\"]\ntests = [\"c\"]\ninitialize = \"file://init.sh\"\nfinalize = \"https://example.org/fin.sh\"\n",
    );
    let report = repo.load();
    expect_valid(&report);
    let suite = &report.repository.suites["ts_scripts"];
    assert_eq!(suite.initialize, xrdtest_defs::ScriptSource::File(root.join("suites/ts_scripts/init.sh")));
    assert_eq!(suite.finalize, Some(xrdtest_defs::ScriptSource::Url("https://example.org/fin.sh".into())));

    // A URL without a host, and an empty `file://`.
    write_suite(
        root,
        "ts_scripts",
        "name = \"ts_scripts\"\nmachines = [\"s1\"]\ntests = [\"c\"]\ninitialize = \"file://\"\nfinalize = \"http://\"\n",
    );
    let report = repo.load();
    expect_error(&report, "ts_scripts/suite.toml", Some(4), "initialize", "names no file");
    expect_error(&report, "ts_scripts/suite.toml", Some(5), "finalize", "http://");
    expect_error_count(&report, 2);
}

/// A suite cannot read the master's own files: `file:///etc/hostname`, `..` and a symlink
/// out of the repository are each refused with the file and the field; a case script that
/// is a symlink out is refused too.
#[test]
fn file_scripts_cannot_leave_the_repository() {
    let repo = Repo::new();
    let root = &repo.root;
    write_file(&root.join("secret.key"), "secret\n");
    write_suite(
        root,
        "ts_escape",
        r#"name = "ts_escape"
machines = ["s1"]
tests = ["c"]
initialize = "file:///etc/hostname"
finalize = "file://../../secret.key"
"#,
    );
    write_case(root, "ts_escape", "c", true, true);
    let report = repo.load();
    let e = expect_error(&report, "ts_escape/suite.toml", Some(4), "initialize", "absolute script paths are refused");
    assert!(e.message.contains("script_dirs"), "{e}");
    expect_error(&report, "ts_escape/suite.toml", Some(5), "finalize", "`..`");
    expect_error_count(&report, 2);

    std::os::unix::fs::symlink("/etc/hostname", root.join("suites/ts_escape/link.sh")).unwrap();
    write_suite(
        root,
        "ts_escape",
        "name = \"ts_escape\"\nmachines = [\"s1\"]\ntests = [\"c\"]\ninitialize = \"file://link.sh\"\n",
    );
    let report = repo.load();
    expect_error(&report, "ts_escape/suite.toml", Some(4), "initialize", "symlink");
    expect_error_count(&report, 1);

    write_suite(
        root,
        "ts_escape",
        "name = \"ts_escape\"\nmachines = [\"s1\"]\ntests = [\"c\"]\ninitialize = \"true\"\n",
    );
    let run = root.join("suites/ts_escape/tc/c/run.sh");
    fs::remove_file(&run).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", &run).unwrap();
    let report = repo.load();
    assert!(
        report.errors.iter().any(|e| e.message.contains("symlink")),
        "a case script linked out of the repository is refused: {:?}",
        report.errors
    );
}

// ---------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------

#[test]
fn schedule_string_and_table_forms_are_accepted() {
    let repo = Repo::new();
    let root = &repo.root;
    write_suite(
        root,
        "ts_string",
        "name = \"ts_string\"\nmachines = [\"s1\"]\ntests = [\"c\"]\ninitialize = \"echo\"\nschedule = \"0 30 6 * * *\"\n",
    );
    write_case(root, "ts_string", "c", true, true);
    write_suite(
        root,
        "ts_five",
        "name = \"ts_five\"\nmachines = [\"s1\"]\ntests = [\"c\"]\ninitialize = \"echo\"\nschedule = \"*/5 * * * *\"\n",
    );
    write_case(root, "ts_five", "c", true, true);
    write_suite(
        root,
        "ts_table",
        "name = \"ts_table\"\nmachines = [\"s1\"]\ntests = [\"c\"]\ninitialize = \"echo\"\n\
         schedule = { second = \"30\", minute = \"08\", hour = \"*\", day = \"*\", month = \"1\" }\n",
    );
    write_case(root, "ts_table", "c", true, true);
    write_suite(
        root,
        "ts_subtable",
        "name = \"ts_subtable\"\nmachines = [\"s1\"]\ntests = [\"c\"]\ninitialize = \"echo\"\n\n[schedule]\nhour = 3\n",
    );
    write_case(root, "ts_subtable", "c", true, true);
    let report = repo.load();
    expect_valid(&report);
    let expr = |name: &str| report.repository.suites[name].schedule.as_ref().unwrap().expression.clone();
    assert_eq!(expr("ts_string"), "0 30 6 * * *");
    assert_eq!(expr("ts_five"), "0 */5 * * * *");
    assert_eq!(expr("ts_table"), "30 08 * * 1 *");
    assert_eq!(expr("ts_subtable"), "0 0 3 * * *");
}

#[test]
fn invalid_schedules_are_rejected() {
    let repo = Repo::new();
    let root = &repo.root;
    let cases = [
        ("ts_range", "schedule = \"0 0 25 * * *\"", "not a valid cron schedule"),
        ("ts_fields", "schedule = \"* * *\"", "3 fields"),
        ("ts_word", "schedule = \"daily\"", "1 fields"),
        ("ts_tkey", "schedule = { minit = \"3\" }", "unknown schedule field `minit`"),
        ("ts_tval", "schedule = { hour = \"99\" }", "not a valid cron schedule"),
        ("ts_ttype", "schedule = { hour = [1, 2] }", "must be a string or number"),
        ("ts_type", "schedule = 42", "expected a cron string or a table"),
    ];
    for (name, line, _) in cases {
        write_suite(
            root,
            name,
            &format!("name = \"{name}\"\nmachines = [\"s1\"]\ntests = [\"c\"]\ninitialize = \"echo\"\n{line}\n"),
        );
        write_case(root, name, "c", true, true);
    }
    let report = repo.load();
    for (name, _, message) in cases {
        expect_error(&report, &format!("{name}/suite.toml"), Some(5), "schedule", message);
    }
    expect_error_count(&report, cases.len());
    assert!(report.repository.suites.is_empty());
}

// ---------------------------------------------------------------------------------------
// Clusters
// ---------------------------------------------------------------------------------------

#[test]
fn valid_cluster_loads_with_defaults_applied() {
    let repo = Repo::new();
    write_cluster(&repo.root, "c1", &valid_cluster_toml("c1", 1, "h"));
    let report = repo.load();
    expect_valid(&report);
    let cluster = &report.repository.clusters["c1"];
    assert_eq!(cluster.network.name, "c1_net");
    assert_eq!(cluster.network.domain, "xrd.test");
    assert_eq!(cluster.hosts.len(), 2);
    assert_eq!(cluster.hosts[0].name, "h1.xrd.test");
    assert_eq!(cluster.hosts[0].boot, Boot::Image { volume: "slave.img".into() });
    assert!(cluster.hosts[0].mac.starts_with("52:54:00:"));
    assert_ne!(cluster.hosts[0].mac, cluster.hosts[1].mac);
}

/// XrdTest's `cache_boot_image` is refused where it is written, in [defaults] or a host,
/// with what to do instead; the rest of the cluster is still checked.
#[test]
fn cache_boot_image_is_refused_with_what_to_do_instead() {
    let repo = Repo::new();
    let text = valid_cluster_toml("c1", 1, "h")
        .replace("boot_image = \"slave.img\"\n", "boot_image = \"slave.img\"\ncache_boot_image = true\n")
        .replace("ip = \"10.1.0.11\"\n", "ip = \"10.1.0.11\"\ncache_boot_image = false\n");
    write_cluster(&repo.root, "c1", &text);
    let report = repo.load();
    let defaults = expect_error(&report, "c1/cluster.toml", Some(9), "defaults.cache_boot_image", "remove it");
    assert!(defaults.message.contains("copy-on-write overlay"), "{defaults}");
    expect_error(&report, "c1/cluster.toml", Some(16), "hosts[1].cache_boot_image", "not part of xrdtest's format");
    expect_error_count(&report, 2);
    assert!(report.repository.clusters.is_empty());
}

#[test]
fn cluster_name_must_match_its_folder() {
    let repo = Repo::new();
    let text = valid_cluster_toml("c_other", 1, "h");
    write_cluster(&repo.root, "c_folder", &text);
    let report = repo.load();
    let e = expect_error(&report, "c_folder/cluster.toml", Some(1), "name", "must equal its folder name");
    assert!(e.message.contains("c_other") && e.message.contains("c_folder"), "{e}");
    expect_error_count(&report, 1);
    assert!(report.repository.clusters.is_empty());
}

#[test]
fn cluster_name_mismatch_does_not_hide_host_errors() {
    let repo = Repo::new();
    write_cluster(
        &repo.root,
        "c_folder",
        r#"name = "c_other"
[network]
bridge = "br_c"
ip = "10.1.0.1"
netmask = "255.255.255.0"
dhcp_range = ["10.1.0.100", "10.1.0.200"]
[[hosts]]
name = "h1"
ip = "10.2.0.10"
boot_image = "slave.img"
"#,
    );
    let report = repo.load();
    let f = "c_folder/cluster.toml";
    expect_error(&report, f, Some(1), "name", "must equal its folder name");
    expect_error(&report, f, Some(9), "hosts[0].ip", "outside the network");
    expect_error_count(&report, 2);
}

#[test]
fn cluster_mandatory_fields_are_reported_together() {
    let repo = Repo::new();
    write_cluster(&repo.root, "c_empty", "# nothing but a comment\n");
    let report = repo.load();
    let f = "c_empty/cluster.toml";
    expect_error(&report, f, None, "name", "required");
    expect_error(&report, f, None, "network", "required");
    expect_error(&report, f, None, "hosts", "at least one");
    expect_error_count(&report, 3);

    write_cluster(
        &repo.root,
        "c_empty",
        "name = \"c_empty\"\n[network]\ndomain = \"x.test\"\n[[hosts]]\narch = \"x86_64\"\n",
    );
    let report = repo.load();
    expect_error(&report, f, None, "network.bridge", "required");
    expect_error(&report, f, None, "network.ip", "required");
    expect_error(&report, f, None, "network.netmask", "required");
    expect_error(&report, f, None, "network.dhcp_range", "required");
    expect_error_count(&report, 4);
}

#[test]
fn cluster_host_mandatory_fields_are_reported() {
    let repo = Repo::new();
    write_cluster(
        &repo.root,
        "c1",
        r#"name = "c1"
[network]
bridge = "br_c1"
ip = "10.1.0.1"
netmask = "255.255.255.0"
dhcp_range = ["10.1.0.100", "10.1.0.200"]

[[hosts]]
arch = "x86_64"
"#,
    );
    let report = repo.load();
    let f = "c1/cluster.toml";
    // A missing field of a `[[hosts]]` entry is reported at the entry's header.
    expect_error(&report, f, Some(8), "hosts[0].name", "required");
    expect_error(&report, f, Some(8), "hosts[0].ip", "required");
    expect_error(&report, f, Some(8), "hosts[0].boot_image", "no boot method");
    expect_error_count(&report, 3);
}

#[test]
fn unknown_cluster_field_is_named_with_its_line() {
    let repo = Repo::new();
    let text = valid_cluster_toml("c1", 1, "h").replace("ip = \"10.1.0.11\"", "ip = \"10.1.0.11\"\nrma = \"1G\"");
    write_cluster(&repo.root, "c1", &text);
    let report = repo.load();
    expect_error(&report, "c1/cluster.toml", Some(15), "rma", "unknown field `rma`");
    expect_error_count(&report, 1);
}

#[test]
fn cluster_toml_syntax_error_has_a_line() {
    let repo = Repo::new();
    write_cluster(&repo.root, "c1", "name = \"c1\"\n[network]\nip = 10.1.0.1\n");
    let report = repo.load();
    expect_error_count(&report, 1);
    let error = &report.errors[0];
    assert!(error.file.ends_with("c1/cluster.toml"), "{error}");
    assert_eq!(error.line, Some(3), "{error}");
}

#[test]
fn host_ip_outside_network_is_rejected() {
    let repo = Repo::new();
    let text = valid_cluster_toml("c1", 1, "h").replace("ip = \"10.1.0.11\"", "ip = \"10.9.0.11\"");
    write_cluster(&repo.root, "c1", &text);
    let report = repo.load();
    let e = expect_error(&report, "c1/cluster.toml", Some(14), "hosts[1].ip", "outside the network");
    assert!(e.message.contains("10.9.0.11") && e.message.contains("10.1.0.1/24"), "{e}");
    expect_error_count(&report, 1);
    assert!(report.repository.clusters.is_empty());
}

#[test]
fn host_ip_equal_to_bridge_or_network_or_broadcast_is_rejected() {
    let repo = Repo::new();
    write_cluster(
        &repo.root,
        "c1",
        r#"name = "c1"
[network]
bridge = "br_c1"
ip = "10.1.0.1"
netmask = "255.255.255.0"
dhcp_range = ["10.1.0.100", "10.1.0.200"]
[defaults]
boot_image = "slave.img"
[[hosts]]
name = "gw"
ip = "10.1.0.1"
[[hosts]]
name = "net"
ip = "10.1.0.0"
[[hosts]]
name = "bcast"
ip = "10.1.0.255"
[[hosts]]
name = "notip"
ip = "10.1.0.300"
"#,
    );
    let report = repo.load();
    let f = "c1/cluster.toml";
    expect_error(&report, f, Some(11), "hosts[0].ip", "bridge's own address");
    expect_error(&report, f, Some(14), "hosts[1].ip", "network or broadcast address");
    expect_error(&report, f, Some(17), "hosts[2].ip", "network or broadcast address");
    expect_error(&report, f, Some(20), "hosts[3].ip", "not an IPv4 address");
    expect_error_count(&report, 4);
}

#[test]
fn host_ip_inside_dhcp_range_is_accepted() {
    // Static DHCP reservations: a host's address may lie inside the range.
    let repo = Repo::new();
    let text = valid_cluster_toml("c1", 1, "h")
        .replace("ip = \"10.1.0.10\"", "ip = \"10.1.0.100\"")
        .replace("ip = \"10.1.0.11\"", "ip = \"10.1.0.150\"");
    write_cluster(&repo.root, "c1", &text);
    let report = repo.load();
    expect_valid(&report);
    let cluster = &report.repository.clusters["c1"];
    assert_eq!(cluster.hosts[0].ip.to_string(), "10.1.0.100");
    assert_eq!(cluster.hosts[1].ip.to_string(), "10.1.0.150");
    assert_eq!(cluster.network.dhcp_start.to_string(), "10.1.0.100");
}

#[test]
fn duplicate_names_ips_and_macs_within_a_cluster_are_rejected() {
    let repo = Repo::new();
    write_cluster(
        &repo.root,
        "c1",
        r#"name = "c1"
[network]
bridge = "br_c1"
ip = "10.1.0.1"
netmask = "255.255.255.0"
dhcp_range = ["10.1.0.100", "10.1.0.200"]
[defaults]
boot_image = "slave.img"
[[hosts]]
name = "h1"
ip = "10.1.0.10"
mac = "52:54:00:00:00:01"
[[hosts]]
name = "h1.xrd.test"
ip = "10.1.0.11"
mac = "52:54:00:00:00:02"
[[hosts]]
name = "h3"
ip = "10.1.0.10"
mac = "52:54:00:00:00:03"
[[hosts]]
name = "h4"
ip = "10.1.0.14"
mac = "52-54-00-00-00-01"
"#,
    );
    let report = repo.load();
    let f = "c1/cluster.toml";
    let e = expect_error(&report, f, Some(14), "hosts[1].name", "also the name of hosts[0]");
    assert!(e.message.contains("h1.xrd.test"), "{e}");
    let e = expect_error(&report, f, Some(19), "hosts[2].ip", "also the address of hosts[0]");
    assert!(e.message.contains("10.1.0.10"), "{e}");
    let e = expect_error(&report, f, Some(24), "hosts[3].mac", "also the MAC of hosts[0]");
    assert!(e.message.contains("52:54:00:00:00:01"), "{e}");
    expect_error_count(&report, 3);
    assert!(report.repository.clusters.is_empty());
}

#[test]
fn duplicates_across_clusters_name_the_other_cluster() {
    let repo = Repo::new();
    let root = &repo.root;
    // c_a sorts first and keeps its place; c_b reuses a host name, an address and a MAC.
    write_cluster(
        root,
        "c_a",
        r#"name = "c_a"
[network]
bridge = "br_a"
ip = "10.1.0.1"
netmask = "255.255.0.0"
dhcp_range = ["10.1.0.100", "10.1.0.200"]
[defaults]
boot_image = "slave.img"
[[hosts]]
name = "shared"
ip = "10.1.0.10"
mac = "52:54:00:00:00:01"
[[hosts]]
name = "a2"
ip = "10.1.0.11"
mac = "52:54:00:00:00:02"
"#,
    );
    write_cluster(
        root,
        "c_b",
        r#"name = "c_b"
[network]
bridge = "br_b"
ip = "10.1.1.1"
netmask = "255.255.0.0"
dhcp_range = ["10.1.1.100", "10.1.1.200"]
[defaults]
boot_image = "slave.img"
[[hosts]]
name = "shared"
ip = "10.1.1.10"
mac = "52:54:00:00:00:10"
[[hosts]]
name = "b2"
ip = "10.1.0.11"
mac = "52:54:00:00:00:11"
[[hosts]]
name = "b3"
ip = "10.1.1.12"
mac = "52:54:00:00:00:02"
"#,
    );
    write_cluster(root, "c_c", &valid_cluster_toml("c_c", 3, "c"));
    let report = repo.load();
    let f = "c_b/cluster.toml";
    let e = expect_error(&report, f, Some(10), "hosts[0].name", "also used by cluster `c_a`");
    assert!(e.message.contains("shared.xrd.test"), "{e}");
    let e = expect_error(&report, f, Some(15), "hosts[1].ip", "also used by cluster `c_a`");
    assert!(e.message.contains("10.1.0.11"), "{e}");
    let e = expect_error(&report, f, Some(20), "hosts[2].mac", "also used by cluster `c_a`");
    assert!(e.message.contains("52:54:00:00:00:02"), "{e}");
    expect_error_count(&report, 3);
    let clusters: Vec<&str> = report.repository.clusters.keys().map(String::as_str).collect();
    assert_eq!(clusters, ["c_a", "c_c"]);
}

#[test]
fn network_name_and_bridge_clash_across_clusters() {
    let repo = Repo::new();
    let root = &repo.root;
    write_cluster(root, "c_a", &valid_cluster_toml("c_a", 1, "a"));
    let text =
        valid_cluster_toml("c_b", 2, "b").replace("bridge = \"br_c_b\"", "name = \"c_a_net\"\nbridge = \"br_c_a\"");
    write_cluster(root, "c_b", &text);
    let report = repo.load();
    let f = "c_b/cluster.toml";
    expect_error(&report, f, Some(3), "network.name", "also used by cluster `c_a`");
    expect_error(&report, f, Some(4), "network.bridge", "also used by cluster `c_a`");
    expect_error_count(&report, 2);
}

#[test]
fn clash_on_a_default_value_is_reported_at_its_table() {
    // c_a names its network `c_b_net`, which is the name c_b's network takes by default:
    // the clash is on a field c_b does not write, so it is reported at c_b's [network].
    let repo = Repo::new();
    let root = &repo.root;
    let text =
        valid_cluster_toml("c_a", 1, "a").replace("bridge = \"br_c_a\"", "name = \"c_b_net\"\nbridge = \"br_c_a\"");
    write_cluster(root, "c_a", &text);
    write_cluster(root, "c_b", &valid_cluster_toml("c_b", 2, "b"));
    let report = repo.load();
    let e = expect_error(&report, "c_b/cluster.toml", Some(2), "network.name", "also used by cluster `c_a`");
    assert!(e.message.contains("c_b_net"), "{e}");
    expect_error_count(&report, 1);
    assert_eq!(report.repository.clusters.keys().collect::<Vec<_>>(), ["c_a"]);
}

#[test]
fn bad_netmasks_are_rejected() {
    let repo = Repo::new();
    let root = &repo.root;
    for (name, mask, message) in [
        ("c_holes", "255.0.255.0", "not a usable netmask"),
        ("c_slash31", "255.255.255.254", "not a usable netmask"),
        ("c_slash4", "240.0.0.0", "not a usable netmask"),
        ("c_text", "255.255.255", "not an IPv4 address"),
    ] {
        let text = valid_cluster_toml(name, 1, "h").replace("255.255.255.0", mask);
        // One cluster at a time: each is removed after its check.
        write_cluster(root, name, &text);
        let report = load_repository(&root.join("suites"), &root.join("clusters"));
        expect_error(&report, &format!("{name}/cluster.toml"), Some(5), "network.netmask", message);
        expect_error_count(&report, 1);
        fs::remove_dir_all(root.join("clusters").join(name)).unwrap();
    }
}

#[test]
fn bad_network_does_not_hide_host_errors() {
    let repo = Repo::new();
    write_cluster(
        &repo.root,
        "c1",
        r#"name = "c1"
[network]
bridge = "a_bridge_name_too_long"
ip = "10.1.0.1"
netmask = "255.255.255.0"
dhcp_range = ["10.1.0.100", "10.1.0.200"]
[[hosts]]
name = "h1"
ip = "10.1.0.10"
boot_image = "slave.img"
ram = "20X"
"#,
    );
    let report = repo.load();
    let f = "c1/cluster.toml";
    expect_error(&report, f, Some(3), "network.bridge", "not a usable bridge name");
    expect_error(&report, f, Some(11), "hosts[0].ram", "unknown size unit");
    expect_error_count(&report, 2);
}

#[test]
fn dhcp_range_must_be_ordered_and_inside_the_network() {
    let repo = Repo::new();
    let root = &repo.root;
    for (name, range, n, messages) in [
        (
            "c_rev",
            r#"["10.1.0.200", "10.1.0.100"]"#,
            1,
            &["first address 10.1.0.200 is after last address 10.1.0.100"][..],
        ),
        ("c_out", r#"["10.1.0.100", "10.2.0.200"]"#, 1, &["`10.2.0.200` is not a host address of 10.1.0.1/24"][..]),
        (
            "c_bcast",
            r#"["10.1.0.0", "10.1.0.255"]"#,
            2,
            &["`10.1.0.0` is not a host address", "`10.1.0.255` is not a host address"][..],
        ),
        ("c_one", r#"["10.1.0.100"]"#, 1, &["give two addresses"][..]),
        ("c_bad", r#"["10.1.0.100", "ten"]"#, 1, &["`ten` is not an IPv4 address"][..]),
    ] {
        let text = valid_cluster_toml(name, 1, "h").replace(r#"["10.1.0.100", "10.1.0.200"]"#, range);
        write_cluster(root, name, &text);
        let report = load_repository(&root.join("suites"), &root.join("clusters"));
        expect_error_count(&report, n);
        for message in messages {
            assert!(
                report.errors.iter().any(|e| e.field == "network.dhcp_range"
                    && e.line == Some(6)
                    && e.file.ends_with(format!("{name}/cluster.toml"))
                    && e.message.contains(message)),
                "{name}: expected {message:?} at line 6; errors:\n{}",
                dump(&report.errors)
            );
        }
        fs::remove_dir_all(root.join("clusters").join(name)).unwrap();
    }
}

#[test]
fn sizes_must_parse_and_ram_must_be_large_enough() {
    let repo = Repo::new();
    write_cluster(
        &repo.root,
        "c1",
        r#"name = "c1"
[network]
bridge = "br_c1"
ip = "10.1.0.1"
netmask = "255.255.255.0"
dhcp_range = ["10.1.0.100", "10.1.0.200"]
[defaults]
boot_image = "slave.img"
[[hosts]]
name = "h1"
ip = "10.1.0.10"
ram = 1048576
[[hosts]]
name = "h2"
ip = "10.1.0.11"
ram = "1G"
disks = [{ name = "d1", size = "20X", device = "vdb", mount_point = "/data" }]
[[hosts]]
name = "h3"
ip = "10.1.0.12"
ram = "lots"
[[hosts]]
name = "h4"
ip = "10.1.0.13"
ram = -5
"#,
    );
    let report = repo.load();
    let f = "c1/cluster.toml";
    expect_error(&report, f, Some(12), "hosts[0].ram", "below the 64M minimum");
    expect_error(&report, f, Some(17), "hosts[1].disks[0].size", "unknown size unit `X`");
    expect_error(&report, f, Some(21), "hosts[2].ram", "is not a size");
    expect_error(&report, f, Some(25), "hosts[3].ram", "not a positive size");
    expect_error_count(&report, 4);
}

#[test]
fn sizes_with_units_are_parsed() {
    let repo = Repo::new();
    let text = valid_cluster_toml("c1", 1, "h").replace(
        "boot_image = \"slave.img\"",
        "boot_image = \"slave.img\"\nram = \"512M\"\ndisks = [{ name = \"d\", size = \"2GiB\", device = \"vdb\", mount_point = \"/d\" }]",
    );
    write_cluster(&repo.root, "c1", &text);
    let report = repo.load();
    expect_valid(&report);
    let host = &report.repository.clusters["c1"].hosts[1];
    assert_eq!(host.ram_bytes, 512 << 20);
    assert_eq!(host.disks[0].size_bytes, 2 << 30);
}

#[test]
fn bad_macs_are_rejected() {
    let repo = Repo::new();
    let text = valid_cluster_toml("c1", 1, "h")
        .replace("ip = \"10.1.0.10\"", "ip = \"10.1.0.10\"\nmac = \"52:54:00:12:34\"")
        .replace("ip = \"10.1.0.11\"", "ip = \"10.1.0.11\"\nmac = \"01:00:5e:00:00:01\"");
    write_cluster(&repo.root, "c1", &text);
    let report = repo.load();
    let f = "c1/cluster.toml";
    expect_error(&report, f, Some(12), "hosts[0].mac", "not a MAC address");
    expect_error(&report, f, Some(16), "hosts[1].mac", "multicast");
    expect_error_count(&report, 2);
}

#[test]
fn links_name_hosts_or_roles_and_give_a_condition() {
    let repo = Repo::new();
    let base = valid_cluster_toml("c1", 1, "h").replace("name = \"h1\"", "name = \"h1\"\nroles = [\"server\"]");
    let good = format!("{base}[[links]]\na = \"role:server\"\nb = [\"h2\"]\ndelay = \"50ms\"\njitter = \"5ms\"\nloss = \"0.5%\"\nrate = \"10mbit\"\n");
    write_cluster(&repo.root, "c1", &good);
    let report = repo.load();
    expect_valid(&report);
    let link = &report.repository.clusters["c1"].links[0];
    assert_eq!(
        (link.a.as_slice(), link.b.as_slice()),
        (&["h1.xrd.test".to_string()][..], &["h2.xrd.test".to_string()][..])
    );
    assert_eq!((link.delay_us, link.jitter_us, link.loss_ppm, link.rate_bps), (50_000, 5_000, 5_000, 10_000_000));

    let bad = format!(
        "{base}[[links]]\na = \"h9\"\nb = \"h2\"\ndelay = \"50ms\"\n\
         [[links]]\na = \"h1\"\nb = \"role:db\"\ndelay = \"soon\"\n\
         [[links]]\na = \"h1\"\nb = \"h2\"\n\
         [[links]]\na = \"h1\"\nb = [\"h2\", \"h1\"]\nloss = \"200%\"\n"
    );
    write_cluster(&repo.root, "c1", &bad);
    let report = repo.load();
    let f = "c1/cluster.toml";
    expect_error(&report, f, Some(17), "links[0].a", "`h9` is not a host of the cluster, nor a role one has");
    expect_error(&report, f, Some(22), "links[1].b", "`role:db` is not a host");
    expect_error(&report, f, Some(23), "links[1].delay", "not a duration");
    expect_error(&report, f, Some(24), "links[2]", "gives no condition");
    expect_error(&report, f, Some(27), "links[3].b", "host h1.xrd.test is on both sides of the link");
    expect_error(&report, f, Some(30), "links[3].loss", "a percentage above 0 and up to 100");
    expect_error_count(&report, 6);
}

#[test]
fn lb_hosts_must_be_hosts_of_the_cluster() {
    let repo = Repo::new();
    let text = valid_cluster_toml("c1", 1, "h").replace(
        "dhcp_range = [\"10.1.0.100\", \"10.1.0.200\"]",
        "dhcp_range = [\"10.1.0.100\", \"10.1.0.200\"]\nlb_alias = \"lb.xrd.test\"\nlb_hosts = [\"h1\", \"h9.xrd.test\"]",
    );
    write_cluster(&repo.root, "c1", &text);
    let report = repo.load();
    let e = expect_error(&report, "c1/cluster.toml", Some(8), "network.lb_hosts", "not a host of this cluster");
    assert!(e.message.contains("h9.xrd.test"), "{e}");
    expect_error_count(&report, 1);

    // Fixed, short names are qualified.
    let text = text.replace("\"h9.xrd.test\"", "\"h2.xrd.test\"");
    write_cluster(&repo.root, "c1", &text);
    let report = repo.load();
    expect_valid(&report);
    assert_eq!(report.repository.clusters["c1"].network.lb_hosts, ["h1.xrd.test", "h2.xrd.test"]);
}

#[test]
fn lb_alias_and_lb_hosts_go_together() {
    let repo = Repo::new();
    let text = valid_cluster_toml("c1", 1, "h").replace(
        "dhcp_range = [\"10.1.0.100\", \"10.1.0.200\"]",
        "dhcp_range = [\"10.1.0.100\", \"10.1.0.200\"]\nlb_hosts = [\"h1\"]",
    );
    write_cluster(&repo.root, "c1", &text);
    let report = repo.load();
    expect_error(&report, "c1/cluster.toml", Some(7), "network.lb_hosts", "needs lb_alias");
    expect_error_count(&report, 1);
}

#[test]
fn boot_image_and_kernel_are_exclusive() {
    let repo = Repo::new();
    write_cluster(
        &repo.root,
        "c1",
        r#"name = "c1"
[network]
bridge = "br_c1"
ip = "10.1.0.1"
netmask = "255.255.255.0"
dhcp_range = ["10.1.0.100", "10.1.0.200"]
[[hosts]]
name = "h1"
ip = "10.1.0.10"
boot_image = "slave.img"
kernel = "/boot/vmlinuz"
[[hosts]]
name = "h2"
ip = "10.1.0.11"
kernel = "boot/vmlinuz"
[[hosts]]
name = "h3"
ip = "10.1.0.12"
kernel = "/boot/vmlinuz"
initrd = "/boot/initrd.img"
"#,
    );
    let report = repo.load();
    let f = "c1/cluster.toml";
    expect_error(&report, f, Some(10), "hosts[0].boot_image", "not both");
    expect_error(&report, f, Some(15), "hosts[1].kernel", "absolute path");
    expect_error_count(&report, 2);
}

#[test]
fn defaults_may_not_name_a_host() {
    let repo = Repo::new();
    let text = valid_cluster_toml("c1", 1, "h")
        .replace("boot_image = \"slave.img\"", "boot_image = \"slave.img\"\nip = \"10.1.0.50\"");
    write_cluster(&repo.root, "c1", &text);
    let report = repo.load();
    expect_error(&report, "c1/cluster.toml", Some(9), "defaults.ip", "not to [defaults]");
    expect_error_count(&report, 1);
}

// ---------------------------------------------------------------------------------------
// Suites against clusters
// ---------------------------------------------------------------------------------------

fn cluster_suite_toml(name: &str, cluster: &str, machines: &str) -> String {
    format!(
        "name = \"{name}\"\ncluster = \"{cluster}\"\nmachines = {machines}\ntests = [\"c\"]\ninitialize = \"echo\"\n"
    )
}

#[test]
fn suite_cluster_must_exist() {
    let repo = Repo::new();
    write_suite(&repo.root, "ts_c", &cluster_suite_toml("ts_c", "c_missing", "[]"));
    write_case(&repo.root, "ts_c", "c", true, true);
    let report = repo.load();
    let e = expect_error(&report, "ts_c/suite.toml", Some(2), "cluster", "no cluster `c_missing`");
    assert!(e.message.contains("clusters"), "{e}");
    expect_error_count(&report, 1);
    assert!(report.repository.suites.is_empty());
}

#[test]
fn suite_cluster_without_clusters_folder_is_reported() {
    let repo = Repo::new();
    fs::remove_dir_all(repo.root.join("clusters")).unwrap();
    valid_static_suite(&repo.root, "ts_static", &["c"]);
    write_suite(&repo.root, "ts_c", &cluster_suite_toml("ts_c", "c1", "[]"));
    write_case(&repo.root, "ts_c", "c", true, true);
    let report = repo.load();
    expect_error(&report, "ts_c/suite.toml", Some(2), "cluster", "no cluster `c1`");
    expect_error_count(&report, 1);
    assert!(report.repository.suites.contains_key("ts_static"));
}

#[test]
fn suite_on_a_broken_cluster_is_reported() {
    let repo = Repo::new();
    let text = valid_cluster_toml("c1", 1, "h").replace("10.1.0.11", "10.9.0.11");
    write_cluster(&repo.root, "c1", &text);
    write_suite(&repo.root, "ts_c", &cluster_suite_toml("ts_c", "c1", "[\"h1\"]"));
    write_case(&repo.root, "ts_c", "c", true, true);
    let report = repo.load();
    expect_error(&report, "c1/cluster.toml", Some(14), "hosts[1].ip", "outside the network");
    expect_error(&report, "ts_c/suite.toml", Some(2), "cluster", "has errors of its own");
    expect_error_count(&report, 2);
}

#[test]
fn suite_machines_must_be_hosts_of_its_cluster() {
    let repo = Repo::new();
    write_cluster(&repo.root, "c1", &valid_cluster_toml("c1", 1, "h"));
    write_suite(
        &repo.root,
        "ts_c",
        "name = \"ts_c\"\ncluster = \"c1\"\nmachines = [\n  \"h1\",\n  \"h7\",\n  \"h2.other.test\",\n]\ntests = [\"c\"]\ninitialize = \"echo\"\n",
    );
    write_case(&repo.root, "ts_c", "c", true, true);
    let report = repo.load();
    let f = "ts_c/suite.toml";
    let e = expect_error(&report, f, Some(5), "machines[1]", "not a host of cluster `c1`");
    assert!(e.message.contains("h7"), "{e}");
    expect_error(&report, f, Some(6), "machines[2]", "not a host of cluster `c1`");
    expect_error_count(&report, 2);
    assert!(report.repository.suites.is_empty());
    assert!(report.repository.clusters.contains_key("c1"));
}

#[test]
fn suite_machines_are_resolved_to_full_host_names() {
    let repo = Repo::new();
    write_cluster(&repo.root, "c1", &valid_cluster_toml("c1", 1, "h"));
    write_suite(&repo.root, "ts_c", &cluster_suite_toml("ts_c", "c1", "[\"h1\", \"H2.xrd.test\"]"));
    write_case(&repo.root, "ts_c", "c", true, true);
    write_suite(&repo.root, "ts_all", &cluster_suite_toml("ts_all", "c1", "[]"));
    write_case(&repo.root, "ts_all", "c", true, true);
    let report = repo.load();
    expect_valid(&report);
    let suite = &report.repository.suites["ts_c"];
    assert_eq!(suite.cluster.as_deref(), Some("c1"));
    assert_eq!(suite.machines, ["h1.xrd.test", "h2.xrd.test"]);
    // An empty list with a cluster means every host of it.
    let hosts: Vec<&str> = report.repository.clusters["c1"].hosts.iter().map(|h| h.name.as_str()).collect();
    assert!(hosts.len() >= 2, "{hosts:?}");
    assert_eq!(report.repository.suites["ts_all"].machines, hosts);
}

#[test]
fn cluster_suite_may_leave_out_machines() {
    let repo = Repo::new();
    write_cluster(&repo.root, "c1", &valid_cluster_toml("c1", 1, "h"));
    write_suite(&repo.root, "ts_c", "name = \"ts_c\"\ncluster = \"c1\"\ntests = [\"c\"]\ninitialize = \"echo\"\n");
    write_case(&repo.root, "ts_c", "c", true, true);
    let report = repo.load();
    expect_valid(&report);
    let suite = &report.repository.suites["ts_c"];
    assert_eq!(suite.cluster.as_deref(), Some("c1"));
    // Documented as every host: it runs on all of them, never on none.
    let hosts: Vec<&str> = report.repository.clusters["c1"].hosts.iter().map(|h| h.name.as_str()).collect();
    assert!(!hosts.is_empty());
    assert_eq!(suite.machines, hosts);
}

#[test]
fn static_machines_are_kept_as_written() {
    let repo = Repo::new();
    write_suite(
        &repo.root,
        "ts_s",
        "name = \"ts_s\"\nmachines = [\"slave1\", \"slave2.example.org\"]\ntests = [\"c\"]\ninitialize = \"echo\"\n",
    );
    write_case(&repo.root, "ts_s", "c", true, true);
    let report = repo.load();
    expect_valid(&report);
    assert_eq!(report.repository.suites["ts_s"].machines, ["slave1", "slave2.example.org"]);
}

// ---------------------------------------------------------------------------------------
// Partial loading
// ---------------------------------------------------------------------------------------

#[test]
fn invalid_definitions_are_left_out_and_valid_ones_remain() {
    let repo = Repo::new();
    let root = &repo.root;
    write_cluster(root, "c_good", &valid_cluster_toml("c_good", 1, "g"));
    write_cluster(root, "c_bad", &valid_cluster_toml("c_bad", 2, "b").replace("255.255.255.0", "255.0.255.0"));
    valid_static_suite(root, "ts_good", &["c"]);
    write_suite(root, "ts_on_good", &cluster_suite_toml("ts_on_good", "c_good", "[\"g1\"]"));
    write_case(root, "ts_on_good", "c", true, true);
    write_suite(root, "ts_on_bad", &cluster_suite_toml("ts_on_bad", "c_bad", "[\"b1\"]"));
    write_case(root, "ts_on_bad", "c", true, true);
    write_suite(
        root,
        "ts_bad",
        "name = \"ts_bad\"\nmachines = [\"s1\"]\ntests = [\"c\"]\ninitialize = \"echo\"\nalert_success = \"ALWAYS\"\n",
    );
    write_case(root, "ts_bad", "c", true, true);
    // Not definitions: a file and a hidden folder are skipped.
    write_file(&root.join("suites/README.md"), "# suites\n");
    write_file(&root.join("suites/.hidden/suite.toml"), "garbage = \n");
    let report = repo.load();
    expect_error(&report, "c_bad/cluster.toml", Some(5), "network.netmask", "not a usable netmask");
    expect_error(&report, "ts_on_bad/suite.toml", Some(2), "cluster", "has errors of its own");
    expect_error(&report, "ts_bad/suite.toml", Some(5), "alert_success", "unknown alert policy");
    expect_error_count(&report, 3);
    assert!(!report.is_valid());
    assert_eq!(report.suites_seen, 4);
    assert_eq!(report.clusters_seen, 2);
    let suites: Vec<&str> = report.repository.suites.keys().map(String::as_str).collect();
    assert_eq!(suites, ["ts_good", "ts_on_good"]);
    let clusters: Vec<&str> = report.repository.clusters.keys().map(String::as_str).collect();
    assert_eq!(clusters, ["c_good"]);
    assert_eq!(report.repository.suites["ts_on_good"].machines, ["g1.xrd.test"]);
}

#[test]
fn missing_suites_folder_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let report = load_repository(&tmp.path().join("suites"), &tmp.path().join("clusters"));
    expect_error_count(&report, 1);
    assert!(report.errors[0].file.ends_with("suites"));
    assert!(report.errors[0].message.contains("cannot read definitions folder"));
    assert!(!report.is_valid());
}

/// Disk names and mount points go into shell commands (`@diskmounts@`), volume names and
/// QEMU serials; cluster names into volume prefixes. Anything else is refused by name.
#[test]
fn disk_names_mount_points_and_cluster_names_are_safe_words() {
    let repo = Repo::new();
    let text = valid_cluster_toml("c_disks", 41, "d").replace(
        "boot_image = \"slave.img\"\n",
        "boot_image = \"slave.img\"\ndisks = [\n  { name = \"x'; rm -rf /\", size = \"1G\", device = \"vdb\", mount_point = \"/data\" },\n  \
         { name = \"ok\", size = \"1G\", device = \"vdc\", mount_point = \"/mnt/x'; reboot; '\" },\n  \
         { name = \"a_name_longer_than_twenty\", size = \"1G\", device = \"vdd\", mount_point = \"/e\" },\n  \
         { name = \"dev\", size = \"1G\", device = \"€ab\", mount_point = \"/f\" },\n]\n",
    );
    let f = write_cluster(&repo.root, "c_disks", &text);
    write_cluster(&repo.root, "c.dotted", &valid_cluster_toml("c.dotted", 42, "e"));
    let report = repo.load();
    let f = f.to_str().unwrap().to_string();
    let f = f.rsplit("clusters/").next().unwrap();
    expect_error(&report, f, Some(10), "hosts[0].disks[0].name", "letters, digits, `_` and `-` only (at most 20)");
    expect_error(&report, f, Some(11), "hosts[0].disks[1].mount_point", "letters, digits, `/`, `_`, `-` and `.` only");
    expect_error(&report, f, Some(12), "hosts[0].disks[2].name", "at most 20");
    expect_error(&report, f, Some(13), "hosts[0].disks[3].device", "is not a disk device name");
    expect_error(&report, "c.dotted/cluster.toml", Some(1), "name", "`_` and `-` only");
    assert!(report.repository.clusters.is_empty(), "{:?}", report.repository.clusters.keys());
}
