//! Sizes, rates and durations as people read them in tables and progress lines.

/// `512 B`, `1.5 KiB`, `8.0 MiB`, `1.00 GiB`: binary units, because file sizes on disk
/// and transfer figures elsewhere in Highway (benchmarks, `ls -lh`) use them.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    // Gigabytes and up get two decimals: a 1.00 GiB file and a 1.04 GiB one differ
    // by 40 MiB, which one decimal would hide.
    if unit >= 2 {
        format!("{value:.2} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `6.1 MiB/s`; `-` when nothing moved yet.
pub fn human_rate(bytes_per_second: u64) -> String {
    if bytes_per_second == 0 {
        return "-".to_string();
    }
    format!("{}/s", human_bytes(bytes_per_second))
}

/// `850ms`, `12.4s`, `7m05s`, `3h12m`.
pub fn short_duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// Whole milliseconds of `d`, saturating.
pub fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Average rate of `bytes` moved in `ms` milliseconds, in bytes per second.
pub fn average_rate(bytes: u64, ms: u64) -> u64 {
    if ms == 0 {
        return 0;
    }
    u64::try_from(u128::from(bytes) * 1000 / u128::from(ms)).unwrap_or(u64::MAX)
}

/// Parses a rate such as `8MiB`, `8MiB/s`, `500k`, `1.5 MB/s` or `1000000` (bytes per
/// second). `K`/`M`/`G` and `KiB`/`MiB`/`GiB` are powers of 1024, `KB`/`MB`/`GB` of 1000,
/// case-insensitively, as in `curl --limit-rate` for the short forms.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let body = trimmed.strip_suffix("/s").unwrap_or(trimmed).trim_end();
    let split = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, unit) = body.split_at(split);
    if number.is_empty() {
        return Err(format!(
            "{text:?} is not a rate: write e.g. 8MiB, 500KiB/s or 1000000"
        ));
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: write e.g. 8MiB, 500KiB/s or 1000000"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a rate: write e.g. 8MiB, 500KiB/s or 1000000"))?;
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!(
            "{text:?} is out of range: give at least 1 byte per second"
        ));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_short() {
        assert_eq!(short_duration(0), "0ms");
        assert_eq!(short_duration(999), "999ms");
        assert_eq!(short_duration(12_400), "12.4s");
        assert_eq!(short_duration(425_000), "7m05s");
        assert_eq!(short_duration(11_520_000), "3h12m");
    }

    #[test]
    fn sizes_use_binary_units_with_enough_decimals() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(8 * 1024 * 1024), "8.0 MiB");
        assert_eq!(human_bytes(1 << 30), "1.00 GiB");
        assert_eq!(human_bytes(u64::MAX), "16384.00 PiB");
    }

    #[test]
    fn rates_show_a_dash_until_bytes_move() {
        assert_eq!(human_rate(0), "-");
        assert_eq!(human_rate(3 * 1024 * 1024), "3.0 MiB/s");
        assert_eq!(average_rate(8 << 20, 2000), 4 << 20);
        assert_eq!(average_rate(1, 0), 0);
    }

    #[test]
    fn rates_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_rate("8MiB"), Ok(8 << 20));
        assert_eq!(parse_rate("8MiB/s"), Ok(8 << 20));
        assert_eq!(parse_rate("500k"), Ok(500 << 10));
        assert_eq!(parse_rate("1.5 MB/s"), Ok(1_500_000));
        assert_eq!(parse_rate("1000000"), Ok(1_000_000));
        assert_eq!(parse_rate("2g"), Ok(2 << 30));
        for bad in ["", "fast", "8 parsecs", "0", "-5M", "1e400"] {
            let err = parse_rate(bad).unwrap_err();
            assert!(
                err.contains("e.g.") || err.contains("at least"),
                "{bad}: {err}"
            );
        }
    }
}
