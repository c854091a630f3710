//! Human-friendly sizes, rates and durations: `5GB`, `4MiB`, `40Gbit`, `100MiB/s`, `200us`.
//!
//! Conventions (the usual ones for networks and disks):
//! - Decimal prefixes `k`/`K`, `M`, `G`, `T` are powers of 1000; binary prefixes `Ki`, `Mi`,
//!   `Gi`, `Ti` are powers of 1024.
//! - A size is bytes: `5GB` = 5·10⁹ bytes, `5GiB` = 5·2³⁰ bytes, `4MiB`, `16KiB`, `123` (bytes),
//!   `123B`.
//! - A rate is bits per second when its unit says `bit`/`bps` (`40Gbit`, `40Gbit/s`, `400Mbps`)
//!   and bytes per second when it says `B/s` (`5GB/s`, `100MiB/s`). A plain number is bytes
//!   per second. Rates are returned in bytes per second.
//! - A duration takes `ns`, `us` (or `µs`), `ms`, `s`; a plain number is seconds.
//!
//! Numbers may have a fractional part (`1.5GB`, `0.2ms`). Units are case-sensitive only where
//! it matters: `b` alone is never accepted (bit vs byte ambiguity), `B` is bytes.

/// Why a size, rate or duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The string is empty or has no leading number.
    #[error("{0:?}: expected a number followed by a unit")]
    NoNumber(String),
    /// The unit suffix is not one this parser knows.
    #[error("{input:?}: unknown unit {unit:?} (expected {expected})")]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The suffix after the number.
        unit: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// The value is negative, not finite, or does not fit in 64 bits.
    #[error("{0:?}: value out of range")]
    OutOfRange(String),
}

/// Splits `"1.5GB"` into `(1.5, "GB")`.
fn split_number(input: &str) -> Result<(f64, &str), UnitError> {
    let trimmed = input.trim();
    let end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(trimmed.len());
    let (num, unit) = trimmed.split_at(end);
    let num: String = num.chars().filter(|&c| c != '_').collect();
    let value: f64 = num
        .parse()
        .map_err(|_| UnitError::NoNumber(input.to_string()))?;
    Ok((value, unit.trim()))
}

/// The multiplier of a prefix (`""`, `k`, `K`, `M`, `G`, `T`, `Ki`, `Mi`, `Gi`, `Ti`).
fn prefix_multiplier(prefix: &str) -> Option<f64> {
    Some(match prefix {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" | "ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    })
}

fn to_u64(input: &str, value: f64) -> Result<u64, UnitError> {
    let rounded = value.round();
    if !rounded.is_finite() || rounded < 0.0 || rounded >= u64::MAX as f64 {
        return Err(UnitError::OutOfRange(input.to_string()));
    }
    Ok(rounded as u64)
}

/// Parses a size in bytes: `5GB`, `5GiB`, `4MiB`, `16KiB`, `123B`, `123`.
///
/// # Errors
/// [`UnitError::NoNumber`] without a leading number, [`UnitError::UnknownUnit`] for a unit that
/// is not a byte unit, [`UnitError::OutOfRange`] when the value does not fit in a `u64`.
pub fn parse_size_bytes(input: &str) -> Result<u64, UnitError> {
    let (value, unit) = split_number(input)?;
    let prefix = unit.strip_suffix('B').unwrap_or(unit);
    // A bare prefix (`4Mi`, `5G`) is accepted as bytes too; only a trailing `b` is rejected.
    let multiplier = prefix_multiplier(prefix).ok_or_else(|| UnitError::UnknownUnit {
        input: input.to_string(),
        unit: unit.to_string(),
        expected: "B, kB, MB, GB, TB, KiB, MiB, GiB, TiB",
    })?;
    to_u64(input, value * multiplier)
}

/// Parses a rate and returns it in bytes per second: `40Gbit`, `400Mbit/s`, `1Gbps`,
/// `5GB/s`, `100MiB/s`, `1000` (bytes per second).
///
/// # Errors
/// [`UnitError::NoNumber`], [`UnitError::UnknownUnit`] (e.g. `5GB` without `/s`, which is a size),
/// [`UnitError::OutOfRange`].
pub fn parse_rate_bytes_per_s(input: &str) -> Result<u64, UnitError> {
    let (value, unit) = split_number(input)?;
    let unknown = || UnitError::UnknownUnit {
        input: input.to_string(),
        unit: unit.to_string(),
        expected: "bit, kbit, Mbit, Gbit (optionally /s or bps), or B/s, MB/s, GB/s, MiB/s, ...",
    };
    if unit.is_empty() {
        return to_u64(input, value);
    }
    let bits_prefix = unit
        .strip_suffix("bit/s")
        .or_else(|| unit.strip_suffix("bit"))
        .or_else(|| unit.strip_suffix("bps"));
    if let Some(prefix) = bits_prefix {
        let multiplier = prefix_multiplier(prefix).ok_or_else(unknown)?;
        return to_u64(input, value * multiplier / 8.0);
    }
    let bytes_prefix = unit
        .strip_suffix("B/s")
        .or_else(|| unit.strip_suffix("Bps"))
        .ok_or_else(unknown)?;
    let multiplier = prefix_multiplier(bytes_prefix).ok_or_else(unknown)?;
    to_u64(input, value * multiplier)
}

/// Parses a duration and returns nanoseconds: `200us`, `200µs`, `1.5ms`, `2s`, `100ns`, `0.5`
/// (seconds).
///
/// # Errors
/// [`UnitError::NoNumber`], [`UnitError::UnknownUnit`], [`UnitError::OutOfRange`].
pub fn parse_duration_ns(input: &str) -> Result<u64, UnitError> {
    let (value, unit) = split_number(input)?;
    let multiplier = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" | "" => 1e9,
        _ => {
            return Err(UnitError::UnknownUnit {
                input: input.to_string(),
                unit: unit.to_string(),
                expected: "ns, us, ms, s",
            })
        }
    };
    to_u64(input, value * multiplier)
}

/// Formats a byte count with a decimal prefix: `5.00 GB`, `512.0 kB`, `12 B`.
pub fn format_bytes(bytes: f64) -> String {
    scaled(bytes, "B")
}

/// Formats a rate given in bytes per second as bits per second: `40.0 Gbit/s`.
pub fn format_rate_bits(rate_bytes_per_s: f64) -> String {
    scaled(rate_bytes_per_s * 8.0, "bit/s")
}

fn scaled(value: f64, unit: &str) -> String {
    const PREFIXES: [(f64, &str); 4] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    for (scale, prefix) in PREFIXES {
        if value.abs() >= scale {
            return format!("{:.2} {prefix}{unit}", value / scale);
        }
    }
    format!("{value:.0} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size_bytes("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_size_bytes("5GiB"), Ok(5 << 30));
        assert_eq!(parse_size_bytes("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size_bytes("16KiB"), Ok(16 << 10));
        assert_eq!(parse_size_bytes("500MB"), Ok(500_000_000));
        assert_eq!(parse_size_bytes("1.5kB"), Ok(1500));
        assert_eq!(parse_size_bytes("123"), Ok(123));
        assert_eq!(parse_size_bytes("123B"), Ok(123));
        assert_eq!(parse_size_bytes(" 1_000 "), Ok(1000));
        assert!(matches!(
            parse_size_bytes("5Gb"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_size_bytes("GB"),
            Err(UnitError::NoNumber(_))
        ));
        assert!(matches!(parse_size_bytes(""), Err(UnitError::NoNumber(_))));
        assert!(matches!(
            parse_size_bytes("99999999999TB"),
            Err(UnitError::OutOfRange(_))
        ));
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate_bytes_per_s("40Gbit"), Ok(5_000_000_000));
        assert_eq!(parse_rate_bytes_per_s("40Gbit/s"), Ok(5_000_000_000));
        assert_eq!(parse_rate_bytes_per_s("40Gbps"), Ok(5_000_000_000));
        assert_eq!(parse_rate_bytes_per_s("400Mbit"), Ok(50_000_000));
        assert_eq!(parse_rate_bytes_per_s("5GB/s"), Ok(5_000_000_000));
        assert_eq!(parse_rate_bytes_per_s("100MiB/s"), Ok(100 << 20));
        assert_eq!(parse_rate_bytes_per_s("8bit"), Ok(1));
        assert_eq!(parse_rate_bytes_per_s("1000"), Ok(1000));
        assert!(matches!(
            parse_rate_bytes_per_s("5GB"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_rate_bytes_per_s("5Xbit"),
            Err(UnitError::UnknownUnit { .. })
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("200us"), Ok(200_000));
        assert_eq!(parse_duration_ns("200µs"), Ok(200_000));
        assert_eq!(parse_duration_ns("1.5ms"), Ok(1_500_000));
        assert_eq!(parse_duration_ns("2s"), Ok(2_000_000_000));
        assert_eq!(parse_duration_ns("0.5"), Ok(500_000_000));
        assert_eq!(parse_duration_ns("7ns"), Ok(7));
        assert!(parse_duration_ns("3h").is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(format_bytes(5e9), "5.00 GB");
        assert_eq!(format_bytes(12.0), "12 B");
        assert_eq!(format_rate_bits(5e9), "40.00 Gbit/s");
    }
}
