//! Kubernetes resource quantities (`100m`, `256Mi`, `1.5`, `1e3`), parsed
//! once here so no service carries its own parser.

/// A quantity in base units (cores, bytes); `None` when malformed.
pub fn parse(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0_f64.powi(2),
        "Gi" => 1024.0_f64.powi(3),
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        exponent => {
            let e: i32 = exponent.strip_prefix(['e', 'E'])?.parse().ok()?;
            10.0_f64.powi(e)
        }
    };
    let value = number * factor;
    value.is_finite().then_some(value)
}

/// Bytes as people read them: `512 MiB`, `1.5 GiB`, `900 B`.
pub fn bytes_text(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes;
    let mut unit = "B";
    for next in UNITS {
        if value.abs() < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    if unit == "B" || (value - value.round()).abs() < 0.05 {
        format!("{value:.0} {unit}")
    } else {
        format!("{value:.1} {unit}")
    }
}

/// A span of seconds as people read it: `45m`, `2.8h`, `3.0d`.
pub fn duration_text(secs: f64) -> String {
    if secs < 3600.0 {
        format!("{:.0}m", (secs / 60.0).max(1.0))
    } else if secs < 48.0 * 3600.0 {
        format!("{:.1}h", secs / 3600.0)
    } else {
        format!("{:.1}d", secs / 86400.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_like_kubernetes() {
        let cases = [
            ("100m", 0.1),
            ("2", 2.0),
            ("1.5", 1.5),
            ("256Mi", 268_435_456.0),
            ("1Gi", 1_073_741_824.0),
            ("1k", 1000.0),
            ("1e3", 1000.0),
            ("500n", 5e-7),
        ];
        for (text, expected) in cases {
            let value = parse(text).expect(text);
            assert!((value - expected).abs() < 1e-9, "{text}: {value}");
        }
        for bad in ["", "abc", "1Zi", "--1"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn bytes_and_durations_read_as_people_write_them() {
        assert_eq!(bytes_text(900.0), "900 B");
        assert_eq!(bytes_text(512.0 * 1024.0 * 1024.0), "512 MiB");
        assert_eq!(bytes_text(1.5 * 1024.0 * 1024.0 * 1024.0), "1.5 GiB");
        assert_eq!(duration_text(20.0), "1m");
        assert_eq!(duration_text(45.0 * 60.0), "45m");
        assert_eq!(duration_text(2.8 * 3600.0), "2.8h");
        assert_eq!(duration_text(3.0 * 86400.0), "3.0d");
    }
}
