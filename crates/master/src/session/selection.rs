//! Which cases of a suite a session runs (`xrdtest run SUITE --case NAME --skip NAME`):
//! the named cases, in the suite's order, less the skipped ones. Suite init and finalize
//! always run. Plain functions, applied to the session's copy of the suite before its
//! plan is made.

use xrdtest_defs::Suite;

/// The cases asked for: none named means all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub cases: Vec<String>,
    pub skip: Vec<String>,
}

/// A case name that is not one of the suite's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no case `{name}` in suite `{suite}`; its cases are: {}", known.join(", "))]
pub struct UnknownCase {
    pub name: String,
    pub suite: String,
    pub known: Vec<String>,
}

impl Selection {
    pub fn is_all(&self) -> bool {
        self.cases.is_empty() && self.skip.is_empty()
    }

    /// Keeps only the selected cases of `suite`; an unknown name changes nothing and is
    /// an error naming it and the suite's cases.
    pub fn apply(&self, suite: &mut Suite) -> Result<(), UnknownCase> {
        let known: Vec<String> = suite.tests.iter().map(|case| case.name.clone()).collect();
        if let Some(name) = self.cases.iter().chain(&self.skip).find(|name| !known.contains(name)) {
            return Err(UnknownCase { name: name.clone(), suite: suite.name.clone(), known });
        }
        suite.tests.retain(|case| {
            (self.cases.is_empty() || self.cases.contains(&case.name)) && !self.skip.contains(&case.name)
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Suite {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../suites");
        let report = xrdtest_defs::load_repository(&dir, &dir.join("../clusters"));
        report.repository.suites["ts_demo"].clone()
    }

    fn names(suite: &Suite) -> Vec<&str> {
        suite.tests.iter().map(|case| case.name.as_str()).collect()
    }

    fn select(cases: &[&str], skip: &[&str]) -> Selection {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        Selection { cases: owned(cases), skip: owned(skip) }
    }

    #[test]
    fn cases_are_chosen_in_the_suites_order_and_skips_win() {
        let all = demo();
        assert_eq!(names(&all), ["write_files", "checksum", "fails_on_purpose", "list_peers"]);
        let table: [(&[&str], &[&str], &[&str]); 4] = [
            (&[], &[], &["write_files", "checksum", "fails_on_purpose", "list_peers"]),
            (&["list_peers", "write_files"], &[], &["write_files", "list_peers"]),
            (&[], &["fails_on_purpose"], &["write_files", "checksum", "list_peers"]),
            (&["checksum", "write_files"], &["checksum"], &["write_files"]),
        ];
        for (cases, skip, expected) in table {
            let mut suite = all.clone();
            select(cases, skip).apply(&mut suite).unwrap();
            assert_eq!(names(&suite), expected, "--case {cases:?} --skip {skip:?}");
        }
        assert!(Selection::default().is_all() && !select(&["checksum"], &[]).is_all());
    }

    #[test]
    fn an_unknown_name_is_an_error_that_lists_the_cases_and_changes_nothing() {
        let mut suite = demo();
        let err = select(&["checksum"], &["nosuch"]).apply(&mut suite).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no case `nosuch` in suite `ts_demo`; its cases are: write_files, checksum, fails_on_purpose, list_peers"
        );
        assert_eq!(names(&suite).len(), 4);
    }
}
