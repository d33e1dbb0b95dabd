//! `[results.NAME]` tables of `case.toml`: the bounds a reported value must keep.
//!
//! ```toml
//! [results.latency_ms]
//! max = 100           # fails above
//! regress_pct = 10    # fails more than 10 % worse than the median of the last passing sessions
//! baseline = 5        # how many of them (default 5)
//! better = "lower"    # which way is worse; default: from min/max, else either way
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::source::Checker;

/// Default number of passing sessions whose median is the baseline of `regress_pct`.
pub const DEFAULT_BASELINE: u32 = 5;
/// Most sessions a baseline may span.
pub const MAX_BASELINE: u32 = 100;

/// Which way a value gets worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Latencies, durations, errors: a rise is a regression.
    Lower,
    /// Throughputs, rates: a fall is a regression.
    Higher,
    /// Either way past `regress_pct` counts.
    Either,
}

impl Better {
    pub fn as_str(self) -> &'static str {
        match self {
            Better::Lower => "lower",
            Better::Higher => "higher",
            Better::Either => "either",
        }
    }
}

/// The bounds of one result of a case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Threshold {
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Fails when the value is more than this many percent worse than the baseline.
    pub regress_pct: Option<f64>,
    /// How many of the last passing sessions' values the baseline is the median of.
    pub baseline: u32,
    pub better: Better,
}

// Every number is finite (checked when read), so bitwise equality is value equality.
impl PartialEq for Threshold {
    fn eq(&self, other: &Threshold) -> bool {
        let bits = |v: Option<f64>| v.map(f64::to_bits);
        bits(self.min) == bits(other.min)
            && bits(self.max) == bits(other.max)
            && bits(self.regress_pct) == bits(other.regress_pct)
            && self.baseline == other.baseline
            && self.better == other.better
    }
}

impl Eq for Threshold {}

pub(crate) type RawResults = BTreeMap<String, Spanned<BTreeMap<String, Spanned<toml::Value>>>>;

/// Reads the `[results]` tables, reporting each problem at its field.
pub(crate) fn check_results(check: &mut Checker, raw: Option<&RawResults>) -> BTreeMap<String, Threshold> {
    let mut thresholds = BTreeMap::new();
    for (name, table) in raw.into_iter().flatten() {
        let base = format!("results.{name}");
        if let Err(why) = xrdtest_model::results::check_name(name) {
            check.at(table, &base, format!("not a result name: {why}"));
            continue;
        }
        let mut threshold =
            Threshold { min: None, max: None, regress_pct: None, baseline: DEFAULT_BASELINE, better: Better::Either };
        let mut better = None;
        let mut ok = true;
        for (field, value) in table.get_ref() {
            let path = format!("{base}.{field}");
            let result = match field.as_str() {
                "min" => number(value).map(|n| threshold.min = Some(n)),
                "max" => number(value).map(|n| threshold.max = Some(n)),
                "regress_pct" => number(value).and_then(|n| match n > 0.0 {
                    true => {
                        threshold.regress_pct = Some(n);
                        Ok(())
                    }
                    false => Err(format!("{n} is not a positive percentage")),
                }),
                "baseline" => match value.get_ref() {
                    toml::Value::Integer(n) if (1..=i64::from(MAX_BASELINE)).contains(n) => {
                        threshold.baseline = *n as u32;
                        Ok(())
                    }
                    toml::Value::Integer(n) => Err(format!("{n} sessions: give 1 to {MAX_BASELINE}")),
                    other => Err(format!("expected a number of sessions, found {}", other.type_str())),
                },
                "better" => match value.get_ref().as_str() {
                    Some("lower") => {
                        better = Some(Better::Lower);
                        Ok(())
                    }
                    Some("higher") => {
                        better = Some(Better::Higher);
                        Ok(())
                    }
                    Some("either") => {
                        better = Some(Better::Either);
                        Ok(())
                    }
                    _ => Err("expected \"lower\", \"higher\" or \"either\"".to_string()),
                },
                other => Err(format!(
                    "unknown field `{other}`: a result's table takes min, max, regress_pct, baseline and better"
                )),
            };
            if let Err(message) = result {
                check.at(value, &path, message);
                ok = false;
            }
        }
        if let (Some(min), Some(max)) = (threshold.min, threshold.max) {
            if min > max {
                check.at(table, &base, format!("min {min} is above max {max}: no value could pass"));
                ok = false;
            }
        }
        if ok && threshold.min.is_none() && threshold.max.is_none() && threshold.regress_pct.is_none() {
            check.at(table, &base, "sets no bound: give min, max or regress_pct");
            ok = false;
        }
        // A bound says which way is bad: below `min` means higher is better, above `max` lower.
        threshold.better = better.unwrap_or(match (threshold.min, threshold.max) {
            (Some(_), None) => Better::Higher,
            (None, Some(_)) => Better::Lower,
            _ => Better::Either,
        });
        if ok {
            thresholds.insert(name.clone(), threshold);
        }
    }
    thresholds
}

fn number(value: &Spanned<toml::Value>) -> Result<f64, String> {
    let n = match value.get_ref() {
        toml::Value::Integer(n) => *n as f64,
        toml::Value::Float(f) => *f,
        other => return Err(format!("expected a number, found {}", other.type_str())),
    };
    match n.is_finite() {
        true => Ok(n),
        false => Err(format!("{n} is not a finite number")),
    }
}
