//! The flags of every batch command: `--threads`, and the resource limits
//! `--max-duration` and `--max-bytes` of everything that decodes untrusted
//! files.

use refrain::decode::DecodeLimits;

/// Worker threads and resource limits, flattened into each batch
/// command's flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BatchArgs {
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Refuse inputs longer than this: seconds, or with a unit (`90m`, `4h`).
    /// Default 4h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_duration: Option<f64>,
    /// Refuse files larger than this: bytes, or with a unit (`500M`, `2G`,
    /// powers of 1024). Default 2G.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_bytes: Option<u64>,
}

impl BatchArgs {
    /// The limits, the library's defaults where no flag was given.
    pub fn limits(&self) -> DecodeLimits {
        let d = DecodeLimits::default();
        DecodeLimits {
            max_duration_s: self.max_duration.unwrap_or(d.max_duration_s),
            max_bytes: self.max_bytes.unwrap_or(d.max_bytes),
        }
    }
}

fn split_unit(s: &str) -> (&str, &str) {
    let i = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    (s[..i].trim(), s[i..].trim())
}

/// `7200`, `7200s`, `120m`, `2h`, `1.5h` → seconds.
pub fn parse_duration(s: &str) -> Result<f64, String> {
    let (num, unit) = split_unit(s);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (for example 600, 90m, 4h)"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (use s, m or h)")),
    };
    let secs = v * scale;
    if secs.is_finite() && secs > 0.0 {
        Ok(secs)
    } else {
        Err(format!("{s:?}: the duration must be positive"))
    }
}

/// `1000000`, `500K`, `500M`, `2G` (powers of 1024) → bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, unit) = split_unit(s);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (for example 500M, 2G)"))?;
    let scale = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0f64.powi(4),
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (use K, M, G or T)")),
    };
    let bytes = v * scale;
    if bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64 {
        Ok(bytes as u64)
    } else {
        Err(format!("{s:?}: the size must be at least one byte"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse_with_units() {
        assert_eq!(parse_duration("600"), Ok(600.0));
        assert_eq!(parse_duration("90m"), Ok(5400.0));
        assert_eq!(parse_duration("1.5h"), Ok(5400.0));
        assert_eq!(parse_duration("30s"), Ok(30.0));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-3").is_err());
        assert!(parse_duration("3 days").is_err());
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
    }
}
