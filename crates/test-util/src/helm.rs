//! What the committed Helm renders share with the test that checks them.

/// What a certificate or key the chart generates reads as in the committed
/// renders under `deploy/rendered/`.
pub const GENERATED: &str = "<generated at install>";

/// Helm generates a new CA and new certificates at every `helm template`
/// (there is no cluster to look the existing ones up in): their PEM data
/// would make every render differ, so it is replaced by [`GENERATED`].
pub fn without_generated_keys(manifests: &str) -> String {
    manifests
        .split_inclusive('\n')
        .map(|line| {
            let trimmed = line.trim_start();
            let generated = [
                "ca.crt: ",
                "tls.crt: ",
                "tls.key: ",
                "signing-key.pem: ",
                "gate.pem: ",
                "mac.key: ",
            ]
            .iter()
            .any(|key| trimmed.starts_with(key) && trimmed.len() > 100);
            if generated {
                let indent = &line[..line.len() - trimmed.len()];
                let key = trimmed.split(':').next().unwrap_or_default();
                format!("{indent}{key}: {GENERATED:?}\n")
            } else {
                line.to_owned()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_generated_pem_data_is_replaced() {
        let long = "QUJD".repeat(40);
        let text = format!("data:\n  tls.crt: {long}\n  tls.key: short\n  other: {long}\n");
        assert_eq!(
            without_generated_keys(&text),
            format!(
                "data:\n  tls.crt: \"<generated at install>\"\n  tls.key: short\n  other: {long}\n"
            )
        );
    }
}
