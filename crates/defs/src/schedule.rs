//! Cron schedules for suites, in string form or XrdTest's table form.

use std::str::FromStr;

use chrono::{DateTime, TimeZone};
use serde::{Deserialize, Serialize};

/// A validated cron schedule, kept as its normalized expression
/// (`sec min hour day-of-month month day-of-week [year]`).
///
/// Stored as text so that it travels through the API and the store unchanged; parsing a
/// validated expression again is cheap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub expression: String,
}

/// Fields of XrdTest's table form, most significant first, with the cron position of each.
const TABLE_FIELDS: [&str; 7] = ["year", "month", "day", "day_of_week", "hour", "minute", "second"];

impl Schedule {
    /// Parses a cron expression with seconds (6 or 7 fields). A classic 5-field expression
    /// (no seconds) is accepted too and fires at second 0.
    pub fn parse(expression: &str) -> Result<Schedule, String> {
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let normalized = match fields.len() {
            5 => format!("0 {}", fields.join(" ")),
            6 | 7 => fields.join(" "),
            n => {
                return Err(format!(
                    "`{expression}` has {n} fields; a schedule has 6 (sec min hour day month weekday), \
                     optionally a 7th (year)"
                ))
            }
        };
        cron::Schedule::from_str(&normalized)
            .map_err(|err| format!("`{expression}` is not a valid cron schedule: {err}"))?;
        Ok(Schedule { expression: normalized })
    }

    /// Builds a schedule from XrdTest's table form, such as
    /// `{ second = "30", minute = "08", hour = "*", day = "*", month = "1" }`.
    ///
    /// As in XrdTest's scheduler (APScheduler), a field left out defaults to `*` when it is
    /// more significant than the least significant field given, and to its minimum otherwise;
    /// `day_of_week` and `year` default to `*`.
    pub fn from_table(table: &[(String, String)]) -> Result<Schedule, String> {
        for (key, _) in table {
            if !TABLE_FIELDS.contains(&key.as_str()) {
                return Err(format!("unknown schedule field `{key}`: expected {}", TABLE_FIELDS.join(", ")));
            }
        }
        let given = |name: &str| table.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_string());
        let least_significant_given =
            ["month", "day", "hour", "minute", "second"].iter().rposition(|name| given(name).is_some());
        let field = |position: usize, name: &str, minimum: &str| -> String {
            match given(name) {
                Some(value) => value,
                None if least_significant_given.is_some_and(|least| position < least) => "*".into(),
                None if least_significant_given.is_none() => "*".into(),
                None => minimum.into(),
            }
        };
        let month = field(0, "month", "1");
        let day = field(1, "day", "1");
        let hour = field(2, "hour", "0");
        let minute = field(3, "minute", "0");
        let second = given("second").unwrap_or_else(|| "0".into());
        let day_of_week = given("day_of_week").unwrap_or_else(|| "*".into());
        let mut expression = format!("{second} {minute} {hour} {day} {month} {day_of_week}");
        if let Some(year) = given("year") {
            expression.push(' ');
            expression.push_str(&year);
        }
        Schedule::parse(&expression)
    }

    /// The first time strictly after `after` at which the schedule fires, if any.
    pub fn next_after<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        let schedule = cron::Schedule::from_str(&self.expression).ok()?;
        schedule.after(after).next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn table(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn string_form() {
        let s = Schedule::parse("30 8 * * * *").unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
        assert_eq!(s.next_after(&t0), Some(Utc.with_ymd_and_hms(2026, 1, 1, 10, 8, 30).unwrap()));
        assert!(Schedule::parse("* * *").unwrap_err().contains("3 fields"));
        assert!(Schedule::parse("99 * * * * *").is_err());
        assert_eq!(Schedule::parse("*/5 * * * *").unwrap().expression, "0 */5 * * * *");
    }

    #[test]
    fn table_form_as_in_xrdtest() {
        let s = Schedule::from_table(&table(&[
            ("second", "30"),
            ("minute", "08"),
            ("hour", "*"),
            ("day", "*"),
            ("month", "1"),
        ]))
        .unwrap();
        assert_eq!(s.expression, "30 08 * * 1 *");
        let hourly_at_3 = Schedule::from_table(&table(&[("hour", "3")])).unwrap();
        assert_eq!(hourly_at_3.expression, "0 0 3 * * *");
        assert!(Schedule::from_table(&table(&[("minit", "3")])).unwrap_err().contains("minit"));
    }
}
