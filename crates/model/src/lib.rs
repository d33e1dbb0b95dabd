//! The data contract of xrdtest: what the master stores, what its API serves and what the
//! `xrdtest` command reads. One definition of each type, so the three cannot drift apart.
//!
//! - [`stage`]: stages and their ids (also carried by the wire protocol).
//! - [`output`]: output lines and collected log files (also wire messages).
//! - [`session`]: session records, their states, list summaries.
//! - [`results`]: values and checks stage runs report.
//! - [`timeline`]: the sync waits and faults of a session's scripts.
//! - [`cleanup`]: what each slave ended at a session's end.
//! - [`api`]: the JSON API's request and response bodies.
//! - [`storage`]: how stored values are encoded, and the store's schema version.
//! - [`v1`]: the stored types of store schema 1, to read and migrate older stores.
//!
//! Compatibility rules, guarded by tests:
//! - stored values are bincode 2 (serde): enum variants are numbered by position and
//!   struct fields by order, so a new variant goes last and a changed struct means a new
//!   schema version with a migration (`tests/golden.rs` pins the bytes of every stored type);
//! - in JSON every state has one spelling, snake_case, the same in answers and in filters.

pub mod api;
pub mod cleanup;
pub mod output;
pub mod results;
pub mod session;
pub mod stage;
pub mod storage;
pub mod timeline;
pub mod v1;

pub use cleanup::SlaveCleanup;
pub use output::{LogFile, OutputLine};
pub use results::{Check, CheckSource, ResultValue, StageValues};
pub use session::*;
pub use stage::{Stage, StageId};
pub use timeline::{FaultRecord, Timeline, WaitRecord};

/// The calendar date (year, month, day; proleptic Gregorian) of a day number since
/// 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn day_numbers_become_calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_790), (2026, 12, 3));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
