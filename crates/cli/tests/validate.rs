//! `xrdtest validate` as a user runs it: the real binary on real folders.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn xrdtest(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xrdtest")).args(args).current_dir(cwd).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn shipped_examples_validate_with_both_forms() {
    let root = repo_root();
    let (code, stdout, stderr) = xrdtest(&["validate", "suites", "clusters"], &root);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("ok: 4 of 4 suites and 2 of 2 clusters valid"), "{stderr}");
    let (code, _, _) = xrdtest(&["validate", "."], &root);
    assert_eq!(code, 0);
    let (code, stdout, _) = xrdtest(&["validate", "--json"], &root);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["suites"][0], "ts_demo");
}

#[test]
fn broken_definitions_name_file_line_field_and_problem_and_exit_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suites/ts_broken");
    std::fs::create_dir_all(suite.join("tc/only")).unwrap();
    std::fs::write(suite.join("tc/only/init.sh"), "true\n").unwrap();
    std::fs::write(
        suite.join("suite.toml"),
        "name = \"ts_other\"\nmachines = [\"s1\"]\ntests = [\"only\"]\ninitialize = \"file://nope.sh\"\nalert_failure = \"LOUD\"\nschedule = \"61 * * * * *\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) = xrdtest(&["validate", "--json", dir.path().to_str().unwrap()], dir.path());
    assert_eq!(code, 1, "{stdout}{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["valid"], false);
    let errors = json["errors"].as_array().unwrap();
    let find = |field: &str| {
        errors.iter().find(|e| e["field"] == field).unwrap_or_else(|| panic!("no error for {field}: {stdout}"))
    };
    assert_eq!(find("name")["line"], 1);
    assert!(find("name")["message"].as_str().unwrap().contains("must equal its folder name `ts_broken`"));
    assert!(find("tests[0]")["message"].as_str().unwrap().contains("run.sh is missing"));
    assert_eq!(find("initialize")["line"], 4);
    assert_eq!(find("alert_failure")["line"], 5);
    assert_eq!(find("schedule")["line"], 6);
    assert!(find("name")["file"].as_str().unwrap().ends_with("suites/ts_broken/suite.toml"));

    let (code, stdout, stderr) = xrdtest(&["validate", dir.path().to_str().unwrap()], dir.path());
    assert_eq!(code, 1);
    assert!(stdout.contains("suite.toml:5: field `alert_failure`: unknown alert policy `LOUD`"), "{stdout}");
    assert!(stderr.contains("5 errors"), "{stderr}");
}

#[test]
fn a_folder_without_suites_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = xrdtest(&["validate", dir.path().to_str().unwrap()], dir.path());
    assert_eq!(code, 2);
    assert!(stderr.contains("has no suites/ folder"), "{stderr}");
}
