//! Kubernetes quantities for the sizes the remediator compares (storage).

/// A quantity (`10Gi`, `500M`, `1073741824`, `1e9`) in base units; `None`
/// when malformed. Fractions are rounded up, so a size is never understated.
pub fn parse(text: &str) -> Option<i128> {
    let base = nanny_common::quantity::parse(text)?.ceil();
    // Finite (the shared parser refuses anything else) and far within i128.
    Some(base as i128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_quantities() {
        assert_eq!(parse("1Gi"), Some(1 << 30));
        assert_eq!(parse("500M"), Some(500_000_000));
        assert_eq!(parse("1073741824"), Some(1 << 30));
        assert_eq!(parse("1e3"), Some(1000));
        assert_eq!(parse("1.5Ki"), Some(1536));
        assert_eq!(parse("100m"), Some(1));
        assert_eq!(parse("ten"), None);
        assert_eq!(parse("1Zi"), None);
    }
}
