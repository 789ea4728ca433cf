//! Kubernetes object names, checked before anything is decided on them: a
//! protected namespace spelled with a capital, a trailing space, a zero-width
//! character or a Cyrillic look-alike is no name the API server would
//! accept, so the gate and the remediator refuse it instead of comparing it
//! with the protected list and finding no match.

/// Whether `name` is a DNS-1123 label (a namespace): 1-63 characters of
/// `a-z`, `0-9` and `-`, starting and ending with a letter or digit.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Whether `name` is a DNS-1123 subdomain (most object names): at most 253
/// characters, dot-separated DNS labels.
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// Why `namespace`/`name` cannot name an object, if it cannot. An empty
/// namespace is a cluster-scoped object.
pub fn refusal(namespace: &str, name: &str) -> Option<String> {
    if !namespace.is_empty() && !is_dns_label(namespace) {
        return Some(format!(
            "namespace {namespace:?} is not a valid namespace name (a DNS-1123 label)"
        ));
    }
    if !is_dns_subdomain(name) {
        return Some(format!(
            "name {name:?} is not a valid object name (a DNS-1123 subdomain)"
        ));
    }
    None
}

/// The (volumeClaimTemplate, StatefulSet) name pairs that could have made
/// the claim `claim`: a StatefulSet names its claims
/// `<template>-<statefulset>-<ordinal>` and sets no owner reference on them
/// (unless a retention policy asks it to), so the name is the only link.
/// Every split at a `-` is a candidate; the caller keeps the one whose
/// StatefulSet exists and has that template.
pub fn claim_template_candidates(claim: &str) -> Vec<(&str, &str)> {
    let Some((stem, ordinal)) = claim.rsplit_once('-') else {
        return Vec::new();
    };
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return Vec::new();
    }
    stem.match_indices('-')
        .map(|(at, _)| (&stem[..at], &stem[at + 1..]))
        .filter(|(template, set)| !template.is_empty() && !set.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_and_invalid_names_are_refused() {
        assert_eq!(refusal("kube-system", "coredns-7d8f"), None);
        assert_eq!(refusal("", "node-1.example.com"), None);
        for namespace in [
            "Kube-System",
            " kube-system",
            "kube-system ",
            "kube-system\n",
            "kube\u{200b}-system",
            "kube-\u{0455}ystem",
            "kube_system",
            "kube-system.",
            "-kube",
            "ｋｕｂｅ",
        ] {
            assert!(refusal(namespace, "x").is_some(), "{namespace:?}");
        }
        for name in [
            "",
            "Victim",
            "victim\u{200b}",
            "../victim",
            "victim/status",
            "vic tim",
            "-victim",
            "a..b",
            &"v".repeat(254),
        ] {
            assert!(refusal("shop", name).is_some(), "{name:?}");
        }
    }

    #[test]
    fn a_claim_name_splits_into_every_template_and_statefulset_pair() {
        assert_eq!(
            claim_template_candidates("data-web-db-0"),
            vec![("data", "web-db"), ("data-web", "db")]
        );
        assert_eq!(
            claim_template_candidates("data-db-12"),
            vec![("data", "db")]
        );
        for claim in [
            "data-db",
            "data-db-",
            "db-0",
            "data-db-x1",
            "-db-0",
            "data--0",
        ] {
            assert!(
                claim_template_candidates(claim).is_empty(),
                "{claim:?} names no StatefulSet claim"
            );
        }
    }
}
