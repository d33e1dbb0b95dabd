//! Sizes and durations written the way people write them in definitions.

use std::time::Duration;

/// Parses a size: bare bytes (`1048576`) or a number with a binary unit
/// `K`, `M`, `G`, `T` (powers of 1024, as XrdTest's `parseDiskSize`), optionally
/// followed by `B` or `iB` (`20G`, `200MiB`, `512k`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!("`{text}` is not a size: write bytes or a number with K, M, G or T (like 20G)"));
    }
    let number: u64 = digits.parse().map_err(|_| format!("`{text}` is too large to be a size"))?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit.strip_suffix("IB").or_else(|| unit.strip_suffix('B')).unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        other => {
            return Err(format!("`{text}` has unknown size unit `{other}`: use K, M, G or T"));
        }
    };
    number.checked_mul(1u64 << shift).ok_or_else(|| format!("`{text}` is too large to be a size"))
}

/// Formats a byte count with the largest binary unit that divides it exactly.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes != 0 && bytes % (1u64 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Parses a duration: bare seconds (`90`) or numbers with units `ms`, `s`, `m`, `h`, `d`,
/// which may be combined (`1h30m`, `2m 30s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("`{text}` is not a duration: write it like 90s, 10m, 1h30m");
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid());
    }
    if trimmed.chars().all(|c| c.is_ascii_digit()) {
        return trimmed.parse::<u64>().map(Duration::from_secs).map_err(|_| invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let digits_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits_end].parse().map_err(|_| invalid())?;
        rest = &rest[digits_end..];
        let unit_end = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" | "min" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(86400)),
            _ => return Err(invalid()),
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

/// Formats a duration the way [`parse_duration`] reads it back (`1h30m`, `250ms`).
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis % 1000 != 0 {
        return format!("{millis}ms");
    }
    let mut secs = duration.as_secs();
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit_secs, unit) in [(86400, "d"), (3600, "h"), (60, "m"), (1, "s")] {
        if secs >= unit_secs {
            out.push_str(&format!("{}{unit}", secs / unit_secs));
            secs %= unit_secs;
        }
    }
    out
}

/// A duration in microseconds: `250us`, or what [`parse_duration`] reads (`100ms`, `1s`).
pub fn parse_micros(text: &str) -> Result<u64, String> {
    if let Some(us) = text.trim().strip_suffix("us") {
        return us.parse().map_err(|_| format!("`{text}` is not a duration"));
    }
    parse_duration(text).map(|d| d.as_micros() as u64)
}

/// A loss percentage (`1%`, `0.5%`, `0.5`) in parts per million (at least 1).
pub fn parse_loss_ppm(text: &str) -> Result<u32, String> {
    let number = text.trim().strip_suffix('%').unwrap_or(text.trim());
    match number.parse::<f64>() {
        Ok(p) if p.is_finite() && p > 0.0 && p <= 100.0 => Ok((p * 10_000.0).round().max(1.0) as u32),
        _ => Err(format!("loss `{text}`: a percentage above 0 and up to 100 (`1%`, `0.5%`)")),
    }
}

/// A rate in bits per second: `10mbit`, `512kbit`, `1gbit`, `8000bit` (tc's units).
pub fn parse_rate_bps(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let units = [("gbit", 1_000_000_000u64), ("mbit", 1_000_000), ("kbit", 1_000), ("bit", 1)];
    let parsed = units.iter().find_map(|(unit, factor)| {
        let number = lower.strip_suffix(unit)?;
        let n: f64 = number.parse().ok()?;
        (n.is_finite() && n > 0.0).then_some((n * *factor as f64) as u64)
    });
    match parsed {
        Some(bps) if bps >= 8 => Ok(bps),
        _ => Err(format!("rate `{text}`: use e.g. 10mbit, 512kbit, 1gbit or 8000bit")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1048576));
        assert_eq!(parse_size("20G"), Ok(20 << 30));
        assert_eq!(parse_size("200M"), Ok(200 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert!(parse_size("").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("20X").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(format_size(20 << 30), "20G");
        assert_eq!(format_size(1000), "1000");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2m 30s"), Ok(Duration::from_secs(150)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("ten minutes").is_err());
        assert!(parse_duration("10y").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn netem_figures() {
        assert_eq!(parse_micros("250us"), Ok(250));
        assert_eq!(parse_micros("100ms"), Ok(100_000));
        assert_eq!(parse_micros("1s"), Ok(1_000_000));
        assert!(parse_micros("fast").is_err());
        assert_eq!(parse_loss_ppm("1%"), Ok(10_000));
        assert_eq!(parse_loss_ppm("0.5"), Ok(5_000));
        assert_eq!(parse_loss_ppm("0.00001%"), Ok(1), "the smallest loss is kept, not rounded away");
        assert!(parse_loss_ppm("0%").is_err() && parse_loss_ppm("101%").is_err() && parse_loss_ppm("NaN").is_err());
        assert_eq!(parse_rate_bps("10mbit"), Ok(10_000_000));
        assert_eq!(parse_rate_bps("1.5Gbit"), Ok(1_500_000_000));
        assert_eq!(parse_rate_bps("8000bit"), Ok(8000));
        assert!(parse_rate_bps("4bit").is_err() && parse_rate_bps("10mb").is_err());
    }
}
