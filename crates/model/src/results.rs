//! Values and checks a stage reports: the measured numbers (`result NAME VALUE [UNIT]`) and
//! named sub-results (`check NAME pass|fail [MESSAGE]`) of one stage run on one slave, plus
//! the checks the master adds for thresholds. Stored beside the session record by stage id,
//! as output and logs are; sent by the slave with the stage's result.
//!
//! The rules for names, numbers and sizes are here, once: the slave applies them to what a
//! script wrote, the master again to what arrives over the network.

use serde::{Deserialize, Serialize};

/// Longest name of a result or check, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest unit (`ms`, `MB/s`, `%`), in bytes.
pub const MAX_UNIT_BYTES: usize = 16;
/// Longest check message, in bytes; longer ones are cut.
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// Most results plus checks of one stage run; the rest are dropped (and reported).
pub const MAX_ENTRIES: usize = 1000;
/// Most bytes of a results file the slave reads.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// The check a run gets when failed checks were dropped at [`MAX_ENTRIES`]: a failure is
/// never lost to the cap.
pub const DROPPED_CHECKS: &str = "xrdtest.dropped_checks";
/// How many failed checks a run's reason names (the rest are counted); all are in the values.
const REASON_CHECKS: usize = 5;
/// How much of each failed check's message a run's reason keeps.
const REASON_MESSAGE_BYTES: usize = 200;

/// A measured number of a stage run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultValue {
    pub name: String,
    /// Always finite.
    pub value: f64,
    /// Empty when none was given.
    pub unit: String,
}

// Values are finite (checked on the way in), so bitwise equality is number equality but for
// 0.0 and -0.0, which is fine for records.
impl PartialEq for ResultValue {
    fn eq(&self, other: &ResultValue) -> bool {
        self.name == other.name && self.value.to_bits() == other.value.to_bits() && self.unit == other.unit
    }
}

impl Eq for ResultValue {}

/// Where a check came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckSource {
    /// `check NAME pass|fail` in a script.
    Script,
    /// A `[results.NAME]` threshold of the case, applied by the master.
    Threshold,
}

/// A named sub-result of a stage run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// Empty when none was given.
    pub message: String,
    pub source: CheckSource,
}

/// What one stage run on one slave reported besides its exit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageValues {
    /// In the order first reported; a name reported again keeps its place, with the last value.
    pub results: Vec<ResultValue>,
    /// In the order first reported; a name reported again keeps its place, with the last verdict.
    pub checks: Vec<Check>,
}

impl StageValues {
    pub fn is_empty(&self) -> bool {
        self.results.is_empty() && self.checks.is_empty()
    }

    pub fn result(&self, name: &str) -> Option<&ResultValue> {
        self.results.iter().find(|r| r.name == name)
    }

    pub fn failed_checks(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }

    fn entries(&self) -> usize {
        self.results.len() + self.checks.len()
    }

    /// Adds or replaces a result. False (and nothing added) when the entry cap is reached.
    pub fn put_result(&mut self, result: ResultValue) -> bool {
        if let Some(old) = self.results.iter_mut().find(|r| r.name == result.name) {
            *old = result;
            return true;
        }
        if self.entries() >= MAX_ENTRIES {
            return false;
        }
        self.results.push(result);
        true
    }

    /// Adds or replaces a check. False (and nothing added) when the entry cap is reached.
    pub fn put_check(&mut self, check: Check) -> bool {
        if let Some(old) = self.checks.iter_mut().find(|c| c.name == check.name) {
            *old = check;
            return true;
        }
        if self.entries() >= MAX_ENTRIES {
            return false;
        }
        self.checks.push(check);
        true
    }

    /// Adds or replaces a check past the entry cap: for the master's own checks (thresholds,
    /// [`DROPPED_CHECKS`]), whose number the definitions bound, so that no cap hides them.
    pub fn force_check(&mut self, check: Check) {
        match self.checks.iter_mut().find(|c| c.name == check.name) {
            Some(old) => *old = check,
            None => self.checks.push(check),
        }
    }

    /// Records that `count` failed checks were dropped at the cap, as a failed check.
    fn note_dropped_failures(&mut self, count: usize) {
        if count > 0 {
            self.force_check(Check {
                name: DROPPED_CHECKS.into(),
                passed: false,
                message: format!("{count} failed checks past the cap of {MAX_ENTRIES} values were dropped"),
                source: CheckSource::Script,
            });
        }
    }

    /// The failed checks in words, for a run's reason: "check `x` failed: why; check `y`
    /// failed", the first few with their messages cut, then how many more.
    pub fn failure_reason(&self) -> Option<String> {
        let failed: Vec<&Check> = self.failed_checks().collect();
        if failed.is_empty() {
            return None;
        }
        let mut parts: Vec<String> = failed
            .iter()
            .take(REASON_CHECKS)
            .map(|c| match c.message.is_empty() {
                true => format!("check `{}` failed", c.name),
                false if c.message.len() > REASON_MESSAGE_BYTES => {
                    format!("check `{}` failed: {}…", c.name, cut(&c.message, REASON_MESSAGE_BYTES))
                }
                false => format!("check `{}` failed: {}", c.name, c.message),
            })
            .collect();
        if failed.len() > REASON_CHECKS {
            parts.push(format!("and {} more failed checks", failed.len() - REASON_CHECKS));
        }
        Some(parts.join("; "))
    }

    /// The same values with everything that breaks the rules dropped or cut, and what was
    /// wrong in words: the master's check of what a slave sent.
    pub fn sanitized(self) -> (StageValues, Vec<String>) {
        let mut clean = StageValues::default();
        let mut problems = Vec::new();
        for result in self.results {
            match check_name(&result.name).and(check_number(result.value)).and(check_unit(&result.unit)) {
                Ok(()) if clean.put_result(result.clone()) => {}
                Ok(()) => problems.push(format!("result `{}` dropped: more than {MAX_ENTRIES} values", result.name)),
                Err(why) => problems.push(format!("result dropped: {why}")),
            }
        }
        let mut dropped_failures = 0;
        for mut check in self.checks {
            match check_name(&check.name) {
                Ok(()) if check.name == DROPPED_CHECKS => {
                    // The slave's own note of failures it dropped: past the cap, as there.
                    check.message = cut_message(&check.message);
                    check.source = CheckSource::Script;
                    clean.force_check(check);
                }
                Ok(()) => {
                    check.message = cut_message(&check.message);
                    // A slave reports its script's checks only; the master adds the rest.
                    check.source = CheckSource::Script;
                    let (name, passed) = (check.name.clone(), check.passed);
                    if !clean.put_check(check) {
                        problems.push(format!("check `{name}` dropped: more than {MAX_ENTRIES} values"));
                        dropped_failures += usize::from(!passed);
                    }
                }
                Err(why) => problems.push(format!("check dropped: {why}")),
            }
        }
        clean.note_dropped_failures(dropped_failures);
        (clean, problems)
    }
}

/// One line of a results file, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Result(ResultValue),
    Check(Check),
}

/// Names: 1 to 64 bytes of letters, digits, `_`, `.`, `-`, `:` and `/`, starting with a
/// letter, digit or `_`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("name `{}…` is longer than {MAX_NAME_BYTES} bytes", cut(name, 32)));
    }
    let first_ok = name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    let all_ok = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':' | b'/'));
    if !first_ok || !all_ok {
        return Err(format!(
            "name `{}`: use letters, digits, `_`, `.`, `-`, `:` and `/`, starting with a letter, digit or `_`",
            cut(name, MAX_NAME_BYTES)
        ));
    }
    Ok(())
}

fn check_number(value: f64) -> Result<(), String> {
    match value.is_finite() {
        true => Ok(()),
        false => Err(format!("{value} is not a finite number")),
    }
}

/// Units: up to 16 bytes of printable ASCII with no spaces (`ms`, `MB/s`, `%`, `req/s`).
pub fn check_unit(unit: &str) -> Result<(), String> {
    if unit.len() > MAX_UNIT_BYTES {
        return Err(format!("unit `{}…` is longer than {MAX_UNIT_BYTES} bytes", cut(unit, 16)));
    }
    if !unit.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("unit `{}`: printable characters without spaces only", cut(unit, MAX_UNIT_BYTES)));
    }
    Ok(())
}

/// A message cut to [`MAX_MESSAGE_BYTES`] on a character boundary, with control characters
/// (newlines, tabs) turned into spaces.
pub fn cut_message(message: &str) -> String {
    let flat: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let trimmed = flat.trim();
    match trimmed.len() > MAX_MESSAGE_BYTES {
        true => format!("{}…", cut(trimmed, MAX_MESSAGE_BYTES - 3)),
        false => trimmed.to_string(),
    }
}

fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Parses one line of a results file:
/// `result NAME VALUE [UNIT]` or `check NAME pass|fail [MESSAGE...]`, words separated by
/// spaces or tabs. A blank line or one starting with `#` is `Ok(None)`.
pub fn parse_line(line: &str) -> Result<Option<Entry>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (kind, rest) = split_word(line);
    let (name, rest) = split_word(rest);
    match kind {
        "result" => {
            let (value, rest) = split_word(rest);
            let (unit, rest) = split_word(rest);
            if !rest.is_empty() {
                return Err(format!("result `{name}`: expected `result NAME VALUE [UNIT]`, found more after the unit"));
            }
            check_name(name)?;
            if value.is_empty() {
                return Err(format!("result `{name}` has no value"));
            }
            let number: f64 =
                value.parse().map_err(|_| format!("result `{name}`: `{}` is not a number", cut(value, 40)))?;
            check_number(number).map_err(|why| format!("result `{name}`: {why}"))?;
            check_unit(unit).map_err(|why| format!("result `{name}`: {why}"))?;
            Ok(Some(Entry::Result(ResultValue { name: name.to_string(), value: number, unit: unit.to_string() })))
        }
        "check" => {
            let (verdict, message) = split_word(rest);
            check_name(name)?;
            let passed = match verdict {
                "pass" => true,
                "fail" => false,
                "" => return Err(format!("check `{name}` has no verdict (pass or fail)")),
                other => return Err(format!("check `{name}`: `{}` is neither pass nor fail", cut(other, 40))),
            };
            Ok(Some(Entry::Check(Check {
                name: name.to_string(),
                passed,
                message: cut_message(message),
                source: CheckSource::Script,
            })))
        }
        other => Err(format!("`{}` is neither `result` nor `check`", cut(other, 40))),
    }
}

/// The first word of `text` and the rest with its leading blanks removed.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start_matches([' ', '\t']);
    match text.find([' ', '\t']) {
        Some(end) => (&text[..end], text[end..].trim_start_matches([' ', '\t'])),
        None => (text, ""),
    }
}

/// Reads a whole results file's text (at most [`MAX_FILE_BYTES`] of it, `truncated` when
/// there was more): the values, and each bad line as `line N: why` (never more than 20, then a
/// count).
pub fn parse_file(text: &str, truncated: bool) -> (StageValues, Vec<String>) {
    const MAX_PROBLEMS: usize = 20;
    let mut values = StageValues::default();
    let mut problems = Vec::new();
    let mut more_problems = 0usize;
    let mut note = |problems: &mut Vec<String>, text: String| {
        if problems.len() < MAX_PROBLEMS {
            problems.push(text);
        } else {
            more_problems += 1;
        }
    };
    let mut dropped_failures = 0;
    let mut lines: Vec<&str> = text.split('\n').collect();
    if truncated {
        // The last line was cut by the size limit: it is not read.
        lines.pop();
    }
    for (number, line) in lines.into_iter().enumerate() {
        match parse_line(line) {
            Ok(None) => {}
            Ok(Some(Entry::Result(result))) => {
                let name = result.name.clone();
                if !values.put_result(result) {
                    note(
                        &mut problems,
                        format!("line {}: result `{name}` dropped: more than {MAX_ENTRIES} values", number + 1),
                    );
                }
            }
            Ok(Some(Entry::Check(check))) => {
                let (name, passed) = (check.name.clone(), check.passed);
                if !values.put_check(check) {
                    dropped_failures += usize::from(!passed);
                    note(
                        &mut problems,
                        format!("line {}: check `{name}` dropped: more than {MAX_ENTRIES} values", number + 1),
                    );
                }
            }
            Err(why) => note(&mut problems, format!("line {}: {why}", number + 1)),
        }
    }
    values.note_dropped_failures(dropped_failures);
    if more_problems > 0 {
        problems.push(format!("{more_problems} more bad lines"));
    }
    if truncated {
        problems.push(format!("the file is larger than {MAX_FILE_BYTES} bytes; the rest is not read"));
    }
    (values, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, value: f64, unit: &str) -> Entry {
        Entry::Result(ResultValue { name: name.into(), value, unit: unit.into() })
    }

    #[test]
    fn lines_of_both_kinds_parse() {
        assert_eq!(parse_line("result latency 12.5 ms").unwrap(), Some(result("latency", 12.5, "ms")));
        assert_eq!(parse_line("result\tops\t-3e2").unwrap(), Some(result("ops", -300.0, "")));
        assert_eq!(parse_line("  # a comment").unwrap(), None);
        assert_eq!(parse_line("").unwrap(), None);
        let Some(Entry::Check(check)) = parse_line("check copy.equal fail sums differ:\tabc != def").unwrap() else {
            panic!("not a check")
        };
        assert_eq!(
            (check.name.as_str(), check.passed, check.message.as_str()),
            ("copy.equal", false, "sums differ: abc != def")
        );
        let Some(Entry::Check(check)) = parse_line("check up pass").unwrap() else { panic!("not a check") };
        assert!(check.passed && check.message.is_empty());
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let why = |line: &str| parse_line(line).unwrap_err();
        assert!(why("result x NaN").contains("not a finite number"), "{}", why("result x NaN"));
        assert!(why("result x inf").contains("not a finite number"));
        assert!(why("result x twelve").contains("`twelve` is not a number"));
        assert!(why("result x").contains("has no value"));
        assert!(why("result x 1 ms extra").contains("found more"));
        assert!(why("result bad$name 1").contains("use letters"));
        assert!(why("result -x 1").contains("starting with"));
        assert!(why(&format!("result {} 1", "n".repeat(65))).contains("longer than 64"));
        assert!(why(&format!("result x 1 {}", "u".repeat(17))).contains("longer than 16"));
        assert!(why("check x maybe").contains("neither pass nor fail"));
        assert!(why("check x").contains("no verdict"));
        assert!(why("metric x 1").contains("neither `result` nor `check`"));
    }

    #[test]
    fn a_file_keeps_last_values_caps_entries_and_counts_problems() {
        let mut text = String::from("result a 1\nresult b 2 ms\nresult a 3\ncheck c pass\ncheck c fail late\n");
        for i in 0..30 {
            text.push_str(&format!("junk {i}\n"));
        }
        let (values, problems) = parse_file(&text, false);
        assert_eq!(
            values.results.iter().map(|r| (r.name.as_str(), r.value)).collect::<Vec<_>>(),
            [("a", 3.0), ("b", 2.0)]
        );
        assert_eq!(values.checks.len(), 1);
        assert_eq!(values.failure_reason().unwrap(), "check `c` failed: late");
        assert_eq!(problems.len(), 21);
        assert!(problems[0].starts_with("line 6: "), "{problems:?}");
        assert_eq!(problems[20], "10 more bad lines");

        let many: String = (0..MAX_ENTRIES + 5).map(|i| format!("result r{i} {i}\n")).collect();
        let (values, problems) = parse_file(&many, false);
        assert_eq!(values.results.len(), MAX_ENTRIES);
        assert_eq!(problems.len(), 5);

        let mut late: String = (0..MAX_ENTRIES).map(|i| format!("result r{i} {i}\n")).collect();
        late.push_str("check late fail too late\ncheck fine pass\n");
        let (values, _) = parse_file(&late, false);
        assert_eq!(values.checks.len(), 1, "only the note of the dropped failure is past the cap");
        assert_eq!(values.checks[0].name, DROPPED_CHECKS);
        assert!(!values.checks[0].passed);
        assert!(values.failure_reason().unwrap().contains("1 failed checks past the cap"));

        let (values, problems) = parse_file("result a 1\nresult b 2", true);
        assert_eq!(values.results.len(), 1);
        assert!(problems[0].contains("larger than"));
    }

    #[test]
    fn sanitizing_drops_what_a_slave_should_not_have_sent() {
        let values = StageValues {
            results: vec![
                ResultValue { name: "ok".into(), value: 1.0, unit: "ms".into() },
                ResultValue { name: "nan".into(), value: f64::NAN, unit: String::new() },
                ResultValue { name: "sp ace".into(), value: 1.0, unit: String::new() },
            ],
            checks: vec![Check {
                name: "c".into(),
                passed: false,
                message: "x".repeat(5000),
                source: CheckSource::Script,
            }],
        };
        let mut forged = values.clone();
        forged.checks[0].source = CheckSource::Threshold;
        let (clean, problems) = values.sanitized();
        assert_eq!(clean.results.len(), 1);
        assert_eq!(problems.len(), 2);
        assert!(clean.checks[0].message.len() <= MAX_MESSAGE_BYTES + 3);
        assert_eq!(
            forged.sanitized().0.checks[0].source,
            CheckSource::Script,
            "a slave cannot claim a threshold's check"
        );
    }

    #[test]
    fn a_reason_names_a_few_failed_checks_briefly() {
        let mut values = StageValues::default();
        for i in 0..8 {
            values.put_check(Check {
                name: format!("c{i}"),
                passed: false,
                message: "m".repeat(1000),
                source: CheckSource::Script,
            });
        }
        let reason = values.failure_reason().unwrap();
        assert!(reason.len() < 1500, "{} bytes", reason.len());
        assert!(reason.starts_with("check `c0` failed: mmm"));
        assert!(reason.ends_with("; and 3 more failed checks"), "{reason}");
        let mut full = StageValues::default();
        for i in 0..MAX_ENTRIES {
            full.put_result(ResultValue { name: format!("r{i}"), value: 1.0, unit: String::new() });
        }
        full.force_check(Check {
            name: "results.r1".into(),
            passed: false,
            message: String::new(),
            source: CheckSource::Threshold,
        });
        assert_eq!(full.checks.len(), 1, "the master's own checks pass the cap");
    }
}
