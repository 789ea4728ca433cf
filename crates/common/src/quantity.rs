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
}
