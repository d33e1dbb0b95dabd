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
}
