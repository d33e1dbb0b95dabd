//! Repetition, retries and case instances: `repeat`, `retries` and `exit_first` in
//! suite.toml, and `retries`, `[tags]`, `[matrix]` and `[[parametrize]]` in case.toml,
//! loaded end to end through `load_repository` from temporary folders.

mod common;

use common::{dump, expect_error_count, write_file, Repo};
use xrdtest_defs::{DefError, LoadReport, Suite};

impl Repo {
    /// A suite `name` on a static slave with complete cases `cases`; `extra` is appended
    /// to its suite.toml (its first line is line 5).
    fn suite(&self, name: &str, cases: &[&str], extra: &str) {
        let tests = cases.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
        write_file(
            &self.root.join("suites").join(name).join("suite.toml"),
            &format!(
                "name = \"{name}\"\nmachines = [\"slave1\"]\ntests = [{tests}]\ninitialize = \"echo init\"\n{extra}"
            ),
        );
        for case in cases {
            let dir = self.root.join("suites").join(name).join("tc").join(case);
            write_file(&dir.join("init.sh"), "#!/bin/sh\ntrue\n");
            write_file(&dir.join("run.sh"), "#!/bin/sh\ntrue\n");
        }
    }

    /// Writes `suites/<suite>/tc/<case>/case.toml`.
    fn case_toml(&self, suite: &str, case: &str, toml: &str) {
        write_file(&self.root.join("suites").join(suite).join("tc").join(case).join("case.toml"), toml);
    }

    /// One suite `ts` with one case `c` whose case.toml is `toml`.
    fn one_case(toml: &str) -> Repo {
        let repo = Repo::new();
        repo.suite("ts", &["c"], "");
        repo.case_toml("ts", "c", toml);
        repo
    }
}

/// The one error in a file ending with `file` on `field`, at `line`, whose message holds `message`.
#[track_caller]
fn expect_error<'a>(report: &'a LoadReport, file: &str, line: usize, field: &str, message: &str) -> &'a DefError {
    common::expect_error(report, file, Some(line), field, message)
}

#[track_caller]
fn expect_count(report: &LoadReport, n: usize) {
    expect_error_count(report, n);
}

#[track_caller]
fn valid_suite<'a>(report: &'a LoadReport, name: &str) -> &'a Suite {
    assert!(report.is_valid(), "expected no errors, found:\n{}", dump(&report.errors));
    &report.repository.suites[name]
}

/// The instance names of case `case` of suite `ts`.
#[track_caller]
fn instance_names(report: &LoadReport, case: &str) -> Vec<String> {
    let suite = valid_suite(report, "ts");
    let case = suite.tests.iter().find(|c| c.name == case).expect("case");
    case.instances.iter().map(|i| i.name.clone()).collect()
}

const CASE: &str = "ts/tc/c/case.toml";

// ---------------------------------------------------------------------------------------
// suite.toml: repeat, retries, exit_first
// ---------------------------------------------------------------------------------------

#[test]
fn suite_repeat_retries_and_exit_first_are_loaded() {
    let repo = Repo::new();
    repo.suite("ts_set", &["c"], "repeat = 3\nretries = 2\nexit_first = true\n");
    repo.suite("ts_default", &["c"], "");
    repo.suite("ts_zero", &["c"], "repeat = 1\nretries = 0\nexit_first = false\n");
    let report = repo.load();
    let suite = valid_suite(&report, "ts_set");
    assert_eq!((suite.repeat, suite.retries, suite.exit_first), (3, 2, true));
    let suite = &report.repository.suites["ts_default"];
    assert_eq!((suite.repeat, suite.retries, suite.exit_first), (1, 0, false));
    let suite = &report.repository.suites["ts_zero"];
    assert_eq!((suite.repeat, suite.retries, suite.exit_first), (1, 0, false));
}

#[test]
fn suite_repeat_retries_and_exit_first_are_checked() {
    let repo = Repo::new();
    repo.suite("ts_a", &["c"], "repeat = 0\nretries = -1\nexit_first = \"yes\"\n");
    repo.suite("ts_b", &["c"], "# b\nrepeat = \"3\"\nretries = 1.5\nexit_first = 1\n");
    repo.suite("ts_c", &["c"], "repeat = 4294967296\nretries = 4294967295\n");
    let report = repo.load();
    let e = expect_error(&report, "ts_a/suite.toml", 5, "repeat", "0 is less than 1");
    assert!(e.message.contains("at least one pass"), "{e}");
    expect_error(&report, "ts_a/suite.toml", 6, "retries", "-1 is negative");
    expect_error(&report, "ts_a/suite.toml", 7, "exit_first", "expected true or false, found string");
    expect_error(&report, "ts_b/suite.toml", 6, "repeat", "expected a whole number, found string");
    expect_error(&report, "ts_b/suite.toml", 7, "retries", "expected a whole number, found float");
    expect_error(&report, "ts_b/suite.toml", 8, "exit_first", "expected true or false, found integer");
    expect_error(&report, "ts_c/suite.toml", 5, "repeat", "too large (at most 10000)");
    expect_error(&report, "ts_c/suite.toml", 6, "retries", "too large (at most 100)");
    expect_count(&report, 8);
    assert!(report.repository.suites.is_empty());
    let shown = report.errors[0].to_string();
    assert!(
        shown.ends_with("ts_a/suite.toml:5: field `repeat`: 0 is less than 1: a session makes at least one pass"),
        "{shown}"
    );
}

// ---------------------------------------------------------------------------------------
// case.toml: retries and [tags]
// ---------------------------------------------------------------------------------------

#[test]
fn case_retries_and_tags_are_loaded() {
    let repo = Repo::new();
    repo.suite("ts", &["flaky", "plain"], "retries = 1\n[tags]\nsize = \"1\"\nmode = \"sync\"\n");
    repo.case_toml("ts", "flaky", "retries = 3\n[tags]\nsize = 64\nratio = 0.5\nfast = true\nname = \"x\"\n");
    let report = repo.load();
    let suite = valid_suite(&report, "ts");
    let flaky = &suite.tests[0];
    assert_eq!(flaky.retries, Some(3));
    assert_eq!(flaky.effective_retries(suite), 3);
    let tags: Vec<(&str, &str)> = flaky.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(tags, [("fast", "true"), ("name", "x"), ("ratio", "0.5"), ("size", "64")]);
    assert_eq!(flaky.instances.len(), 1);
    assert_eq!(flaky.instances[0].name, "flaky");
    assert!(flaky.instances[0].params.is_empty());
    let plain = &suite.tests[1];
    assert_eq!(plain.retries, None);
    assert_eq!(plain.effective_retries(suite), 1);
    assert!(plain.tags.is_empty());
    assert_eq!(plain.instances.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["plain"]);
    assert_eq!(suite.tags["size"], "1");
}

#[test]
fn case_retries_and_tags_are_checked() {
    let report = Repo::one_case(
        "description = \"d\"\nretries = -2\n[tags]\n\"bad-name\" = \"x\"\nport = 1\nlist = [1]\ngood = \"ok\"\n",
    )
    .load();
    expect_error(&report, CASE, 2, "retries", "-2 is negative");
    expect_error(&report, CASE, 4, "tags.bad-name", "not a tag name");
    expect_error(&report, CASE, 5, "tags.port", "built in");
    expect_error(&report, CASE, 6, "tags.list", "string, number or boolean");
    expect_count(&report, 4);
    assert!(report.repository.suites.is_empty());
    let report = Repo::one_case("retries = \"two\"\n").load();
    expect_error(&report, CASE, 1, "retries", "expected a whole number, found string");
    expect_count(&report, 1);
}

// ---------------------------------------------------------------------------------------
// [results.NAME]
// ---------------------------------------------------------------------------------------

#[test]
fn result_thresholds_are_loaded_with_their_direction() {
    use xrdtest_defs::Better;
    let report = Repo::one_case(
        "[results.latency_ms]\nmax = 100\nregress_pct = 10\n\
         [results.throughput]\nmin = 5.5\nregress_pct = 20\nbaseline = 3\n\
         [results.rtt]\nregress_pct = 15\n\
         [results.both]\nmin = 1\nmax = 2\nbetter = \"higher\"\n",
    )
    .load();
    let suite = valid_suite(&report, "ts");
    let results = &suite.tests[0].results;
    let latency = &results["latency_ms"];
    assert_eq!((latency.max, latency.min, latency.regress_pct), (Some(100.0), None, Some(10.0)));
    assert_eq!((latency.better, latency.baseline), (Better::Lower, 5));
    let throughput = &results["throughput"];
    assert_eq!((throughput.min, throughput.better, throughput.baseline), (Some(5.5), Better::Higher, 3));
    assert_eq!(results["rtt"].better, Better::Either);
    assert_eq!(results["both"].better, Better::Higher);
}

#[test]
fn result_thresholds_are_checked_field_by_field() {
    let report = Repo::one_case(
        "[results.a]\nmax = \"fast\"\n\
         [results.b]\nregress_pct = -5\n\
         [results.c]\nmin = 3\nmax = 1\n\
         [results.d]\nbaseline = 0\nmax = 1\n\
         [results.e]\nbetter = \"up\"\nmax = 1\n\
         [results.f]\nmaximum = 1\n\
         [results.g]\n\
         [results.\"bad name\"]\nmax = 1\n",
    )
    .load();
    expect_error(&report, CASE, 2, "results.a.max", "expected a number, found string");
    expect_error(&report, CASE, 4, "results.b.regress_pct", "not a positive percentage");
    expect_error(&report, CASE, 5, "results.c", "no value could pass");
    expect_error(&report, CASE, 9, "results.d.baseline", "give 1 to 100");
    expect_error(&report, CASE, 12, "results.e.better", "\"lower\", \"higher\" or \"either\"");
    expect_error(&report, CASE, 15, "results.f.maximum", "unknown field `maximum`");
    expect_error(&report, CASE, 16, "results.g", "sets no bound");
    expect_error(&report, CASE, 17, "results.bad name", "not a result name");
    expect_count(&report, 8);
}

// ---------------------------------------------------------------------------------------
// [matrix]
// ---------------------------------------------------------------------------------------

#[test]
fn matrix_expands_in_declared_order_first_key_slowest() {
    let report = Repo::one_case("[matrix]\nsize = [1, 64, 1024]\nmode = [\"sync\", \"async\"]\n").load();
    assert_eq!(
        instance_names(&report, "c"),
        [
            "c[size=1,mode=sync]",
            "c[size=1,mode=async]",
            "c[size=64,mode=sync]",
            "c[size=64,mode=async]",
            "c[size=1024,mode=sync]",
            "c[size=1024,mode=async]",
        ]
    );
    let case = &report.repository.suites["ts"].tests[0];
    let params: Vec<(&str, &str)> = case.instances[3].params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(params, [("size", "64"), ("mode", "async")]);
}

#[test]
fn matrix_keys_keep_the_file_order_not_the_sorted_order() {
    // `zeta` sorts after `alpha`, yet is written first: it varies slowest.
    let report = Repo::one_case("[matrix]\nzeta = [\"z1\", \"z2\"]\nalpha = [\"a1\", \"a2\"]\nmid = [0]\n").load();
    assert_eq!(
        instance_names(&report, "c"),
        [
            "c[zeta=z1,alpha=a1,mid=0]",
            "c[zeta=z1,alpha=a2,mid=0]",
            "c[zeta=z2,alpha=a1,mid=0]",
            "c[zeta=z2,alpha=a2,mid=0]"
        ]
    );
    // The inline form keeps its order too; values keep the order of their list.
    let report = Repo::one_case("matrix = { b = [3, 1, 2], a = [true, false] }\n").load();
    assert_eq!(
        instance_names(&report, "c"),
        ["c[b=3,a=true]", "c[b=3,a=false]", "c[b=1,a=true]", "c[b=1,a=false]", "c[b=2,a=true]", "c[b=2,a=false]"]
    );
}

#[test]
fn matrix_values_may_be_strings_integers_floats_and_booleans() {
    let report =
        Repo::one_case("[matrix]\nv = [\"s\", -3, 0.25, 1.0, true, \"a/b.c_d-e\", \"@tag@\", \"ünï\"]\n").load();
    assert_eq!(
        instance_names(&report, "c"),
        ["c[v=s]", "c[v=-3]", "c[v=0.25]", "c[v=1]", "c[v=true]", "c[v=a/b.c_d-e]", "c[v=@tag@]", "c[v=ünï]"]
    );
}

#[test]
fn matrix_ranges_give_exact_values() {
    let report = Repo::one_case(
        r#"[matrix]
size = { from = 1, to = 1024, samples = 5, scale = "log" }
threads = { from = 0, to = 100, samples = 5 }
"#,
    )
    .load();
    let names = instance_names(&report, "c");
    assert_eq!(names.len(), 25);
    let case = &report.repository.suites["ts"].tests[0];
    let sizes: Vec<&str> = case.instances.iter().step_by(5).map(|i| i.params[0].1.as_str()).collect();
    assert_eq!(sizes, ["1", "6", "32", "181", "1024"]);
    let threads: Vec<&str> = case.instances[..5].iter().map(|i| i.params[1].1.as_str()).collect();
    assert_eq!(threads, ["0", "25", "50", "75", "100"]);
    assert_eq!(names[0], "c[size=1,threads=0]");
    assert_eq!(names[24], "c[size=1024,threads=100]");

    let report =
        Repo::one_case("[matrix]\nratio = { scale = \"linear\", from = 0.0, to = 1.0, samples = 5 }\nmode = [\"a\"]\n")
            .load();
    assert_eq!(
        instance_names(&report, "c"),
        [
            "c[ratio=0,mode=a]",
            "c[ratio=0.25,mode=a]",
            "c[ratio=0.5,mode=a]",
            "c[ratio=0.75,mode=a]",
            "c[ratio=1,mode=a]"
        ]
    );
    let report = Repo::one_case("[matrix]\nf = { from = 0.001, to = 1, samples = 4, scale = \"log\" }\n").load();
    assert_eq!(instance_names(&report, "c"), ["c[f=0.001]", "c[f=0.01]", "c[f=0.1]", "c[f=1]"]);
}

#[test]
fn matrix_range_rounding_duplicates_are_removed_in_order() {
    // 2^(k/2) for k = 0..6: 1, 1.41, 2, 2.83, 4, 5.66, 8.
    let report = Repo::one_case("[matrix]\nn = { from = 1, to = 8, samples = 7, scale = \"log\" }\n").load();
    assert_eq!(instance_names(&report, "c"), ["c[n=1]", "c[n=2]", "c[n=3]", "c[n=4]", "c[n=6]", "c[n=8]"]);
    // 1, 1.5, 2, 2.5, 3: halves round away from zero.
    let report = Repo::one_case("[matrix]\nn = { from = 1, to = 3, samples = 5 }\n").load();
    assert_eq!(instance_names(&report, "c"), ["c[n=1]", "c[n=2]", "c[n=3]"]);
    // A descending sweep.
    let report = Repo::one_case("[matrix]\nn = { from = 10, to = 0, samples = 3 }\n").load();
    assert_eq!(instance_names(&report, "c"), ["c[n=10]", "c[n=5]", "c[n=0]"]);
}

#[test]
fn matrix_range_errors_name_their_field() {
    let report = Repo::one_case(
        r#"[matrix]
a = { from = 1, to = 10, samples = 1 }
b = { from = 1, to = 10, samples = "5" }
c = { from = 1, to = 10, samples = 3, scale = "cubic" }
d = { from = 0, to = 10, samples = 3, scale = "log" }
e = { from = 1, samples = 3 }
f = { from = 1, to = 10, samples = 3, step = 2 }
g = { from = "1", to = 10, samples = 3 }
h = { from = 1, to = -5, samples = 3, scale = "log" }
i = { from = 1, to = 10, samples = 1001 }
j = { from = nan, to = 10, samples = 3 }
k = { from = -1, to = 10, samples = 0, scale = "log" }
"#,
    )
    .load();
    expect_error(&report, CASE, 2, "matrix.a.samples", "samples = 1: a range has at least 2");
    expect_error(&report, CASE, 3, "matrix.b.samples", "expected a whole number, found string");
    expect_error(&report, CASE, 4, "matrix.c.scale", "unknown scale `cubic`");
    expect_error(&report, CASE, 5, "matrix.d.from", "log scale needs both ends greater than 0");
    expect_error(&report, CASE, 6, "matrix.e.to", "is required");
    expect_error(&report, CASE, 7, "matrix.f.step", "unknown field `step`");
    expect_error(&report, CASE, 8, "matrix.g.from", "expected a number, found string");
    expect_error(&report, CASE, 9, "matrix.h.to", "greater than 0");
    expect_error(&report, CASE, 10, "matrix.i.samples", "samples = 1001: a case has at most 1000");
    expect_error(&report, CASE, 11, "matrix.j.from", "not a finite number");
    // Every problem of one range is reported, not only the first.
    expect_error(&report, CASE, 12, "matrix.k.from", "greater than 0");
    expect_error(&report, CASE, 12, "matrix.k.samples", "at least 2");
    expect_count(&report, 12);
    assert!(report.repository.suites.is_empty());
}

#[test]
fn matrix_values_that_break_instance_names_are_refused() {
    let report = Repo::one_case(
        r#"description = "bad values"
[matrix]
size = [
  1,
  64,
  "a b",
  "x,y",
  "",
  "k=v",
  "[x]",
  "tab	here",
  [1, 2],
  { a = 1 },
  1979-05-27,
]
"#,
    )
    .load();
    let e = expect_error(&report, CASE, 6, "matrix.size[2]", "cannot be part of an instance name");
    assert!(e.message.contains("`a b`") && e.message.contains("whitespace"), "{e}");
    expect_error(&report, CASE, 7, "matrix.size[3]", "`,`");
    expect_error(&report, CASE, 8, "matrix.size[4]", "empty value");
    expect_error(&report, CASE, 9, "matrix.size[5]", "`=`");
    expect_error(&report, CASE, 10, "matrix.size[6]", "`[`");
    expect_error(&report, CASE, 11, "matrix.size[7]", "whitespace");
    expect_error(&report, CASE, 12, "matrix.size[8]", "string, number or boolean, found array");
    expect_error(&report, CASE, 13, "matrix.size[9]", "found table");
    expect_error(&report, CASE, 14, "matrix.size[10]", "found datetime");
    expect_count(&report, 9);
    let shown = report.errors.iter().find(|e| e.field == "matrix.size[3]").unwrap().to_string();
    assert!(
        shown.contains("ts/tc/c/case.toml:7: field `matrix.size[3]`: `x,y` cannot be part of an instance name"),
        "{shown}"
    );
}

#[test]
fn matrix_keys_lists_and_shapes_are_checked() {
    let report = Repo::one_case(
        r#"[matrix]
"bad-key" = [1]
slavename = ["a"]
empty = []
single = "sync"
dup = [1, 2, "1"]
ok = [1]
"#,
    )
    .load();
    expect_error(&report, CASE, 2, "matrix.bad-key", "not a tag name");
    expect_error(&report, CASE, 3, "matrix.slavename", "`@slavename@` is built in");
    expect_error(&report, CASE, 4, "matrix.empty", "the list is empty");
    expect_error(&report, CASE, 5, "matrix.single", "expected a list of values (`[1, 64]`) or a range");
    expect_error(&report, CASE, 6, "matrix.dup[2]", "`1` is listed twice (as matrix.dup[0] too)");
    expect_count(&report, 5);

    let report = Repo::one_case("description = \"x\"\n[matrix]\n").load();
    expect_error(&report, CASE, 2, "matrix", "gives no key");
    expect_count(&report, 1);
    let report = Repo::one_case("matrix = [1, 2]\n").load();
    expect_error(&report, CASE, 1, "matrix", "expected a table");
    expect_count(&report, 1);
}

#[test]
fn matrix_instances_are_capped() {
    let report = Repo::one_case(
        "[matrix]\na = { from = 1, to = 11, samples = 11 }\nb = { from = 1, to = 10, samples = 10 }\nc = { from = 1, to = 10, samples = 10 }\n",
    )
    .load();
    let e = expect_error(&report, CASE, 1, "matrix", "makes 1100 instances; a case has at most 1000");
    assert!(e.message.contains("11 a × 10 b × 10 c"), "{e}");
    expect_count(&report, 1);
    let report = Repo::one_case(
        "[matrix]\na = { from = 1, to = 10, samples = 10 }\nb = { from = 1, to = 10, samples = 10 }\nc = { from = 1, to = 10, samples = 10 }\n",
    )
    .load();
    assert_eq!(instance_names(&report, "c").len(), 1000);
    // A product too large to count still names itself.
    let keys: String = (0..70).map(|i| format!("k{i} = [1, 2]\n")).collect();
    let report = Repo::one_case(&format!("[matrix]\n{keys}")).load();
    expect_error(&report, CASE, 1, "matrix", "more than 2^64 instances");
}

// ---------------------------------------------------------------------------------------
// [[parametrize]]
// ---------------------------------------------------------------------------------------

#[test]
fn parametrize_lists_instances_in_order() {
    let report = Repo::one_case(
        r#"[[parametrize]]
size = 64
mode = "sync"

[[parametrize]]
mode = "async"
size = 1

[[parametrize]]
size = 1024
"#,
    )
    .load();
    assert_eq!(instance_names(&report, "c"), ["c[size=64,mode=sync]", "c[mode=async,size=1]", "c[size=1024]"]);
    let case = &report.repository.suites["ts"].tests[0];
    let params: Vec<(&str, &str)> = case.instances[1].params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(params, [("mode", "async"), ("size", "1")]);
    // The inline array form.
    let report = Repo::one_case("parametrize = [{ b = 2, a = 1.5 }, { b = true }]\n").load();
    assert_eq!(instance_names(&report, "c"), ["c[b=2,a=1.5]", "c[b=true]"]);
}

#[test]
fn parametrize_errors_name_the_entry_and_key() {
    let report = Repo::one_case(
        r#"[[parametrize]]
size = 1
mode = "sync"

[[parametrize]]
size = 2
mode = "a b"

[[parametrize]]
mode = "sync"
size = 1

[[parametrize]]

[[parametrize]]
port = 1
"x.y" = 2
size = [1]

[[parametrize]]
size = 1
mode = "sync"
"#,
    )
    .load();
    expect_error(&report, CASE, 7, "parametrize[1].mode", "`a b` cannot be part of an instance name");
    expect_error(&report, CASE, 13, "parametrize[3]", "gives no value");
    expect_error(&report, CASE, 16, "parametrize[4].port", "built in");
    expect_error(&report, CASE, 17, "parametrize[4].x.y", "not a tag name");
    expect_error(&report, CASE, 18, "parametrize[4].size", "found array");
    expect_error(&report, CASE, 20, "parametrize[5]", "instance `c[size=1,mode=sync]` is the same as parametrize[0]");
    expect_count(&report, 6);
    // Another key order is another instance name, not a duplicate.
    assert!(report.errors.iter().all(|e| e.field != "parametrize[2]"), "{}", dump(&report.errors));
}

#[test]
fn parametrize_shapes_and_cap_are_checked() {
    let report = Repo::one_case("parametrize = []\n").load();
    expect_error(&report, CASE, 1, "parametrize", "lists no combination");
    expect_count(&report, 1);
    let report = Repo::one_case("[parametrize]\nsize = 1\n").load();
    expect_error(&report, CASE, 1, "parametrize", "expected an array of tables");
    expect_count(&report, 1);
    let report = Repo::one_case("parametrize = [{ a = 1 }, 2]\n").load();
    expect_error(&report, CASE, 1, "parametrize[1]", "expected a table of values, found integer");
    expect_count(&report, 1);
    let entries: String = (0..1001).map(|i| format!("{{ n = {i} }}, ")).collect();
    let report = Repo::one_case(&format!("# many\nparametrize = [{entries}]\n")).load();
    expect_error(&report, CASE, 2, "parametrize", "makes 1001 instances; a case has at most 1000");
    expect_count(&report, 1);
    let entries: String = (0..1000).map(|i| format!("{{ n = {i} }}, ")).collect();
    let report = Repo::one_case(&format!("parametrize = [{entries}]\n")).load();
    assert_eq!(instance_names(&report, "c").len(), 1000);
}

#[test]
fn matrix_and_parametrize_are_exclusive() {
    let report = Repo::one_case("[matrix]\nsize = [1]\n\n[[parametrize]]\nsize = 2\n").load();
    expect_error(&report, CASE, 4, "parametrize", "either a [matrix] or [[parametrize]] entries, not both");
    expect_count(&report, 1);
    assert!(report.repository.suites.is_empty());
}

#[test]
fn unknown_case_fields_are_still_refused() {
    let report = Repo::one_case("[matrix]\nsize = [1]\n[params]\nx = 1\n").load();
    expect_error(&report, CASE, 3, "params", "unknown field `params`");
    expect_count(&report, 1);
}

#[test]
fn matrix_cases_sit_beside_plain_cases() {
    let repo = Repo::new();
    repo.suite("ts", &["plain", "m", "p"], "repeat = 2\n[tags]\nsize = 8\n");
    repo.case_toml("ts", "m", "stage_timeout = \"5m\"\n[tags]\nmode = \"sync\"\n[matrix]\nsize = [1, 2]\n");
    repo.case_toml("ts", "p", "[[parametrize]]\nmode = \"async\"\n");
    let report = repo.load();
    assert_eq!(instance_names(&report, "plain"), ["plain"]);
    assert_eq!(instance_names(&report, "m"), ["m[size=1]", "m[size=2]"]);
    assert_eq!(instance_names(&report, "p"), ["p[mode=async]"]);
    let suite = &report.repository.suites["ts"];
    assert_eq!(suite.repeat, 2);
    assert_eq!(suite.tests[1].tags["mode"], "sync");
    assert_eq!(suite.tests[1].effective_timeout(suite).as_secs(), 300);
}
