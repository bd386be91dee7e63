//! Durations and data sizes written as upstream's configuration writes them
//! (airlift's `Duration` and `DataSize`): `500ms`, `10s`, `5m`, `1h`;
//! `1024B`, `512kB`, `20GB` (binary multiples, as airlift's).

use std::time::Duration;

fn split_number(text: &str) -> Option<(f64, &str)> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let value: f64 = text[..end].parse().ok()?;
    value
        .is_finite()
        .then_some((value, text[end..].trim_start()))
}

/// `500ms`, `1.5s`, `5m`, `1h`, `2d`; a bare number is milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("'{text}' is not a duration such as 500ms, 10s, 5m or 1h");
    let (value, unit) = split_number(text).ok_or_else(bad)?;
    let ms_per_unit = match unit {
        "" | "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(bad()),
    };
    let ms = value * ms_per_unit;
    if ms > u64::MAX as f64 / 2.0 {
        return Err(bad());
    }
    Ok(Duration::from_millis(ms.round() as u64))
}

pub use resource_groups::succinct_duration;

/// `1024`, `1024B`, `512kB`, `20GB`, `1.5TB` (multiples of 1024).
pub fn parse_data_size(text: &str) -> Result<u64, String> {
    let bad = || format!("'{text}' is not a data size such as 512MB or 20GB");
    let (value, unit) = split_number(text).ok_or_else(bad)?;
    let shift = match unit {
        "" | "B" => 0,
        "kB" | "KB" => 10,
        "MB" => 20,
        "GB" => 30,
        "TB" => 40,
        "PB" => 50,
        _ => return Err(bad()),
    };
    let bytes = value * (1u64 << shift) as f64;
    if bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        for bad in ["", "s", "5 minutes", "-1s", "1e9d", "NaNs"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn succinct_durations() {
        let cases = [
            (Duration::from_secs(300), "5.00m"),
            (Duration::from_secs(30), "30.00s"),
            (Duration::from_secs(3600), "1.00h"),
            (Duration::from_secs(5400), "1.50h"),
            (Duration::from_secs(2 * 86_400), "2.00d"),
            (Duration::from_millis(250), "250.00ms"),
            (Duration::from_micros(1), "1.00us"),
            (Duration::ZERO, "0.00ns"),
        ];
        for (d, text) in cases {
            assert_eq!(succinct_duration(d), text, "{d:?}");
        }
    }

    #[test]
    fn data_sizes() {
        assert_eq!(parse_data_size("20GB"), Ok(20 << 30));
        assert_eq!(parse_data_size("512kB"), Ok(512 << 10));
        assert_eq!(parse_data_size("1.5MB"), Ok(3 << 19));
        assert_eq!(parse_data_size("100"), Ok(100));
        for bad in ["", "GB", "20 gigabytes", "-5MB", "99999999PB"] {
            assert!(parse_data_size(bad).is_err(), "{bad}");
        }
    }
}
