//! What the definitions tests share: a temporary repository and checks of a load report's
//! errors (file, line, field, message).

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use xrdtest_defs::{load_repository, DefError, LoadReport};

/// A temporary repository with `suites/` and `clusters/` folders.
pub struct Repo {
    _tmp: TempDir,
    pub root: PathBuf,
}

impl Repo {
    pub fn new() -> Repo {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().to_path_buf();
        fs::create_dir_all(root.join("suites")).unwrap();
        fs::create_dir_all(root.join("clusters")).unwrap();
        Repo { _tmp: tmp, root }
    }

    pub fn load(&self) -> LoadReport {
        load_repository(&self.root.join("suites"), &self.root.join("clusters"))
    }
}

pub fn write_file(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

pub fn dump(errors: &[DefError]) -> String {
    if errors.is_empty() {
        return "  (no errors)".into();
    }
    errors.iter().map(|e| format!("  {e}   [line {:?}, field {:?}]", e.line, e.field)).collect::<Vec<_>>().join("\n")
}

/// The one error whose file ends with `file` and whose field is `field`; it must be at
/// `line` and its message must contain `message`.
#[track_caller]
pub fn expect_error<'a>(
    report: &'a LoadReport,
    file: &str,
    line: Option<usize>,
    field: &str,
    message: &str,
) -> &'a DefError {
    let matching: Vec<&DefError> =
        report.errors.iter().filter(|e| e.file.ends_with(file) && e.field == field).collect();
    assert!(
        matching.len() == 1,
        "expected exactly one error in `{file}` on field `{field}`, found {}; all errors:\n{}",
        matching.len(),
        dump(&report.errors)
    );
    let error = matching[0];
    assert_eq!(error.line, line, "line of {error}; all errors:\n{}", dump(&report.errors));
    assert!(
        error.message.contains(message),
        "message of {error} should contain {message:?}; all errors:\n{}",
        dump(&report.errors)
    );
    error
}

/// Asserts the report holds exactly `n` errors.
#[track_caller]
pub fn expect_error_count(report: &LoadReport, n: usize) {
    assert_eq!(report.errors.len(), n, "errors:\n{}", dump(&report.errors));
}
