//! Small text forms every report shares: times, durations, numbers, safe file names.

/// Unix milliseconds as UTC date and time, `2024-05-01T12:34:56Z`.
pub fn iso_utc(unix_ms: u64) -> String {
    let (date, time) = civil(unix_ms);
    format!("{date}T{time}Z")
}

/// Unix milliseconds as UTC, `2024-05-01 12:34:56 UTC`, for people.
pub fn human_utc(unix_ms: u64) -> String {
    let (date, time) = civil(unix_ms);
    format!("{date} {time} UTC")
}

/// Unix milliseconds as the JUnit (Ant) timestamp: `2024-05-01T12:34:56`, in UTC.
pub fn junit_timestamp(unix_ms: u64) -> String {
    let (date, time) = civil(unix_ms);
    format!("{date}T{time}")
}

/// (`YYYY-MM-DD`, `HH:MM:SS`) of a Unix time in UTC (the proleptic Gregorian calendar).
fn civil(unix_ms: u64) -> (String, String) {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    let (year, month, day) = xrdtest_model::civil_from_days(days);
    (format!("{year:04}-{month:02}-{day:02}"), format!("{:02}:{:02}:{:02}", rest / 3600, (rest / 60) % 60, rest % 60))
}

/// Milliseconds as seconds with three decimals (`1.234`): JUnit's `time`.
pub fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// A duration for people: `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub fn human_duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min {:02} s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{} h {:02} min", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// A result's value as text: the shortest form that reads back the same number, in
/// exponent form only when very large or very small (`12.5`, `1000000`, `1e300`).
pub fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude == 0.0 || (1e-6..1e16).contains(&magnitude) {
        format!("{value}")
    } else {
        format!("{value:e}")
    }
}

/// A name made safe as one file or folder name on any system: letters, digits and `. _ -
/// = ,` kept, runs of anything else become one `_`; no leading dot (so never `.` or `..`),
/// never empty, at most 80 bytes (the end of a longer one).
pub fn safe_name(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '=' | ',') {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    // A long name keeps its end: the file name of a log path, the attempt of a label.
    let chars: Vec<char> = out.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(80)..].iter().collect();
    let trimmed = tail.trim_matches('_');
    let mut name: String = trimmed.trim_start_matches('.').to_string();
    if name.len() < trimmed.len() {
        name.insert(0, '_');
    }
    if name.is_empty() {
        name.push('_');
    }
    name
}

/// Output text without terminal control sequences (colours, cursor moves: `ESC [ ... final
/// byte`), for reports people read; the export's `output.txt` keeps them.
pub fn strip_ansi(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\u{1b}') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameter and intermediate bytes, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
        // 2024-02-29 23:59:59.999 UTC, a leap day.
        assert_eq!(iso_utc(1_709_251_199_999), "2024-02-29T23:59:59Z");
        assert_eq!(junit_timestamp(1_709_251_200_000), "2024-03-01T00:00:00");
        assert_eq!(human_utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn durations_and_numbers_read_well() {
        assert_eq!(seconds(1234), "1.234");
        assert_eq!(seconds(5), "0.005");
        assert_eq!(human_duration(850), "850 ms");
        assert_eq!(human_duration(12_345), "12.3 s");
        assert_eq!(human_duration(245_000), "4 min 05 s");
        assert_eq!(human_duration(7_380_000), "2 h 03 min");
        assert_eq!(number(12.5), "12.5");
        assert_eq!(number(1e6), "1000000");
        assert_eq!(number(-3.0), "-3");
        assert_eq!(number(1e300), "1e300");
        assert_eq!(number(2.5e-9), "2.5e-9");
        assert_eq!(number(0.0), "0");
    }

    #[test]
    fn colour_codes_are_stripped() {
        assert_eq!(strip_ansi("plain"), "plain");
        assert_eq!(strip_ansi("\u{1b}[1;31mred\u{1b}[0m and \u{1b}[2Kcleared"), "red and cleared");
        // A lone ESC is not a sequence: kept (the XML escaping replaces it).
        assert_eq!(strip_ansi("a\u{1b}b"), "a\u{1b}b");
    }

    #[test]
    fn safe_names_stay_in_their_folder() {
        assert_eq!(
            safe_name("case_run:copy[mode=sync,size=64] (attempt 2)"),
            "case_run_copy_mode=sync,size=64_attempt_2"
        );
        assert_eq!(safe_name("/var/log/xrootd/slave1/xrootd.log"), "var_log_xrootd_slave1_xrootd.log");
        assert_eq!(safe_name(".."), "_");
        assert_eq!(safe_name("."), "_");
        assert_eq!(safe_name(".hidden"), "_hidden");
        assert_eq!(safe_name(""), "_");
        assert_eq!(safe_name("ünïcode/../x"), "n_code_.._x");
        assert_eq!(safe_name(&"a".repeat(200)).len(), 80);
        let long = format!("/{}/deep/xrootd.log", "d".repeat(100));
        assert!(safe_name(&long).ends_with("d_deep_xrootd.log") && safe_name(&long).len() == 80);
    }
}
