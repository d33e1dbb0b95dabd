//! How the pages show times, durations and states: small pure functions.

use chrono::{Local, NaiveDate, TimeZone};

use xrdtest_model::{CaseState, RunState, SessionState};

/// `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`: the reports' form, one implementation.
pub use xrdtest_report::format::human_duration as duration;

/// How long something took, or has taken so far; empty when it has not started.
pub fn span(started: Option<u64>, ended: Option<u64>, now: u64) -> String {
    match (started, ended) {
        (Some(start), Some(end)) => duration(end.saturating_sub(start)),
        (Some(start), None) => duration(now.saturating_sub(start)),
        _ => String::new(),
    }
}

/// Local date and time, to the second: `2025-03-01 14:05:09`.
pub fn time(ms: u64) -> String {
    match Local.timestamp_millis_opt(ms as i64).single() {
        Some(at) => at.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => String::new(),
    }
}

pub fn time_opt(ms: Option<u64>) -> String {
    ms.map(time).unwrap_or_default()
}

/// Local time of day with milliseconds, for output lines: `14:05:09.123`.
pub fn clock(ms: u64) -> String {
    match Local.timestamp_millis_opt(ms as i64).single() {
        Some(at) => at.format("%H:%M:%S%.3f").to_string(),
        None => String::new(),
    }
}

/// `in 5 min`, `3 h ago`, `just now`.
pub fn relative(ms: i64, now: u64) -> String {
    let delta = ms - now as i64;
    let amount = delta.unsigned_abs();
    if amount < 5_000 {
        return "just now".into();
    }
    let text = if amount < 60_000 {
        format!("{} s", amount / 1000)
    } else if amount < 3_600_000 {
        format!("{} min", amount / 60_000)
    } else if amount < 172_800_000 {
        format!("{} h", amount / 3_600_000)
    } else {
        format!("{} days", amount / 86_400_000)
    };
    if delta > 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// A `YYYY-MM-DD` date: the Unix ms of its local midnight, and of the next day's.
pub fn parse_day(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("`{text}` is not a date: use YYYY-MM-DD");
    let day = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| bad())?;
    let start = |day: NaiveDate| {
        let midnight = day.and_hms_opt(0, 0, 0)?;
        // A midnight that daylight saving skips: the first instant of that day.
        Local.from_local_datetime(&midnight).earliest().map(|t| t.timestamp_millis().max(0) as u64)
    };
    let next = day.succ_opt().ok_or_else(bad)?;
    Ok((start(day).ok_or_else(bad)?, start(next).ok_or_else(bad)?))
}

/// The CSS class suffix (`state-...`) and the words of a stage run's state.
pub fn run_state(state: RunState) -> (&'static str, &'static str) {
    match state {
        RunState::Pending => ("pending", "pending"),
        RunState::Running => ("running", "running"),
        RunState::Passed => ("passed", "passed"),
        RunState::Failed => ("failed", "failed"),
        RunState::TimedOut => ("timedout", "timed out"),
        RunState::Cancelled => ("cancelled", "cancelled"),
        RunState::Skipped => ("skipped", "skipped"),
        RunState::Disconnected => ("disconnected", "disconnected"),
    }
}

pub fn session_state(state: SessionState) -> (&'static str, &'static str) {
    match state {
        SessionState::Queued => ("queued", "queued"),
        SessionState::StartingCluster => ("waiting", "starting cluster"),
        SessionState::WaitingSlaves => ("waiting", "waiting for slaves"),
        SessionState::Running => ("running", "running"),
        SessionState::Passed => ("passed", "passed"),
        SessionState::Failed => ("failed", "failed"),
        SessionState::Cancelled => ("cancelled", "cancelled"),
        SessionState::Interrupted => ("interrupted", "interrupted"),
    }
}

pub fn case_state(state: CaseState) -> (&'static str, &'static str) {
    match state {
        CaseState::Pending => ("pending", "pending"),
        CaseState::Running => ("running", "running"),
        CaseState::Passed => ("passed", "passed"),
        CaseState::Failed => ("failed", "failed"),
        CaseState::NotRun => ("skipped", "not run"),
        CaseState::Flaky => ("flaky", "flaky"),
    }
}

/// `1 flaky case`, `3 flaky cases`.
pub fn flaky_cases(count: usize) -> String {
    if count == 1 {
        "1 flaky case".to_string()
    } else {
        format!("{count} flaky cases")
    }
}

/// The CSS class suffix (`state-...`) of a session in a results strip: `flaky` for a
/// passed session with flaky cases, else its state's.
pub fn session_cls(state: SessionState, cases_flaky: usize) -> &'static str {
    if state == SessionState::Passed && cases_flaky > 0 {
        "flaky"
    } else {
        session_state(state).0
    }
}

/// The CSS class suffix and the words of a cluster state as the API names it
/// (`creating_network`, `error_start`...). Session records also hold steps of the master's
/// own (`kept`): any other name is shown as it is, in grey.
pub fn cluster_state(name: &str) -> (&'static str, String) {
    let cls = match name {
        "active" => "passed",
        "error_start" | "error_stop" | "error" => "failed",
        "stopped" | "defined" | "kept" => "skipped",
        "definition_sent" | "starting" | "creating_network" | "copying_images" | "attaching_disks"
        | "creating_slaves" | "waiting_slaves" | "saving" | "stop_command_sent" | "destroying" => "waiting",
        _ => "skipped",
    };
    let label = match name {
        "error_start" => "start failed".to_string(),
        "error_stop" => "stop failed".to_string(),
        "stop_command_sent" => "stop sent".to_string(),
        "kept" => "left running".to_string(),
        other => other.replace('_', " "),
    };
    (cls, label)
}

/// How full something is, in whole percent (0 when the limit is 0), at most 100.
pub fn percent(used: u64, limit: u64) -> u64 {
    (used.saturating_mul(100)).checked_div(limit).unwrap_or(0).min(100)
}

/// The first characters of a commit or hash.
pub fn short(hash: &str) -> String {
    hash.chars().take(10).collect()
}

/// A size in bytes: `512 B`, `1.5 KiB`, `2.0 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_345), "12.3 s");
        assert_eq!(duration(245_000), "4 min 05 s");
        assert_eq!(duration(7_380_000), "2 h 03 min");
        assert_eq!(span(Some(1000), Some(3000), 0), "2.0 s");
        assert_eq!(span(Some(1000), None, 1500), "500 ms");
        assert_eq!(span(None, None, 5), "");
    }

    #[test]
    fn relative_times_say_past_or_future() {
        assert_eq!(relative(1_000_000, 1_000_000), "just now");
        assert_eq!(relative(1_000_000 + 300_000, 1_000_000), "in 5 min");
        assert_eq!(relative(0, 3 * 86_400_000), "3 days ago");
        assert_eq!(relative(0, 3 * 3_600_000), "3 h ago");
    }

    #[test]
    fn days_are_local_and_checked() {
        let (start, end) = parse_day("2024-06-01").unwrap();
        assert!(end > start && end - start >= 23 * 3_600_000 && end - start <= 25 * 3_600_000);
        assert_eq!(time(start), "2024-06-01 00:00:00");
        assert!(parse_day("2024-13-01").is_err());
        assert!(parse_day("yesterday").unwrap_err().contains("YYYY-MM-DD"));
    }

    #[test]
    fn cluster_states_have_colours_and_words() {
        assert_eq!(cluster_state("active"), ("passed", "active".to_string()));
        assert_eq!(cluster_state("creating_network"), ("waiting", "creating network".to_string()));
        assert_eq!(cluster_state("error_start"), ("failed", "start failed".to_string()));
        assert_eq!(cluster_state("kept"), ("skipped", "left running".to_string()));
        assert_eq!(cluster_state("something_new"), ("skipped", "something new".to_string()));
        assert_eq!((percent(3, 16), percent(5, 0), percent(20, 16)), (18, 0, 100));
    }

    #[test]
    fn sizes_and_hashes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(short("0123456789abcdef"), "0123456789");
    }

    #[test]
    fn flaky_sessions_have_their_own_look() {
        assert_eq!(flaky_cases(1), "1 flaky case");
        assert_eq!(flaky_cases(3), "3 flaky cases");
        assert_eq!(session_cls(SessionState::Passed, 2), "flaky");
        assert_eq!(session_cls(SessionState::Passed, 0), "passed");
        assert_eq!(session_cls(SessionState::Failed, 2), "failed", "a failed session stays failed");
        assert_eq!(case_state(CaseState::Flaky), ("flaky", "flaky"));
    }
}
