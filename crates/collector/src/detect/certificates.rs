//! TLS Secrets whose certificate expires within the threshold, or has
//! expired (read only where the collector reads TLS Secrets).

use nanny_proto::v1::{self as pb, IssueKind, Severity};

use super::issue;
use crate::{config::Thresholds, store::Tables};

/// One issue per certificate expiring within `certificate_expiry_days`, or
/// within a third of its lifetime when that is shorter: a short-lived
/// certificate (a day, a week) renewed automatically is never "expiring"
/// for most of its life, and a renewer works in its last third.
pub(super) fn expiring(tables: &Tables, t: &Thresholds, now: i64, issues: &mut Vec<pb::Issue>) {
    let threshold =
        i64::try_from(t.certificate_expiry_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
    for entry in tables.tls_certificates.values() {
        let cert = entry.value.as_ref();
        // A certificate that could not be read has no date to judge.
        let (Some(target), Some(not_after)) = (cert.r#ref.as_ref(), cert.not_after.as_ref()) else {
            continue;
        };
        let lifetime = cert
            .not_before
            .as_ref()
            .map_or(i64::MAX, |b| not_after.seconds.saturating_sub(b.seconds));
        let left = not_after.seconds.saturating_sub(now);
        if left >= threshold.min(lifetime / 3) {
            continue;
        }
        let (severity, when) = if left <= 0 {
            (Severity::Critical, format!("expired {}", not_after))
        } else {
            (
                Severity::Warning,
                format!("expires {not_after}, in {}", days(left)),
            )
        };
        issues.push(issue(
            IssueKind::TlsCertificateExpiring,
            severity,
            target,
            "",
            format!(
                "The certificate in Secret {}/{} ({}) {when}.",
                target.namespace,
                target.name,
                if cert.subject.is_empty() {
                    cert.dns_names.join(", ")
                } else {
                    cert.subject.clone()
                }
            ),
            vec![
                ("not after", not_after.to_string()),
                ("seconds left", left.to_string()),
                ("dns names", cert.dns_names.join(", ")),
                ("issuer", cert.issuer.clone()),
            ],
        ));
    }
}

/// `5 days`, `1 day`, `3 hours`.
fn days(seconds: i64) -> String {
    match seconds / 86_400 {
        0 if seconds < 7200 => "1 hour".to_owned(),
        0 => format!("{} hours", seconds / 3600),
        1 => "1 day".to_owned(),
        n => format!("{n} days"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::detect::tests::entry;

    const NOW: i64 = 1_800_000_000;

    fn certificate(name: &str, days_left: i64) -> pb::TlsCertificate {
        pb::TlsCertificate {
            r#ref: Some(pb::ObjectRef {
                kind: "Secret".into(),
                namespace: "shop".into(),
                name: name.into(),
                uid: format!("uid-{name}"),
                ..pb::ObjectRef::default()
            }),
            not_after: Some(prost_types::Timestamp {
                seconds: NOW + days_left * 86_400,
                nanos: 0,
            }),
            subject: "shop.example".into(),
            dns_names: vec!["shop.example".into()],
            issuer: "Shop CA".into(),
            ..pb::TlsCertificate::default()
        }
    }

    fn run(certificates: Vec<pb::TlsCertificate>) -> Vec<pb::Issue> {
        let mut tables = Tables::default();
        for c in certificates {
            let uid = c.r#ref.as_ref().map(|r| r.uid.clone()).unwrap_or_default();
            tables
                .tls_certificates
                .insert(Arc::from(uid.as_str()), entry(c));
        }
        let mut issues = Vec::new();
        expiring(&tables, &Thresholds::default(), NOW, &mut issues);
        issues.sort_by(|a, b| a.summary.cmp(&b.summary));
        issues
    }

    #[test]
    fn certificates_expiring_within_the_threshold_or_expired_are_issues() {
        let unreadable = pb::TlsCertificate {
            not_after: None,
            error: "tls.crt is not PEM".into(),
            ..certificate("broken", 0)
        };
        let issues = run(vec![
            certificate("soon", 5),
            certificate("gone", -2),
            certificate("fine", 90),
            certificate("edge", 14),
            unreadable,
            // Three days long, a day left: renewed in its last third, fine.
            pb::TlsCertificate {
                not_before: Some(prost_types::Timestamp {
                    seconds: NOW - 2 * 86_400,
                    nanos: 0,
                }),
                ..certificate("short", 1)
            },
        ]);
        let summaries: Vec<&str> = issues.iter().map(|i| i.summary.as_str()).collect();
        assert_eq!(
            summaries,
            [
                "The certificate in Secret shop/gone (shop.example) expired 2027-01-13T08:00:00Z.",
                "The certificate in Secret shop/soon (shop.example) expires 2027-01-20T08:00:00Z, in 5 days.",
            ]
        );
        assert_eq!(issues[0].severity, Severity::Critical as i32);
        assert_eq!(issues[1].severity, Severity::Warning as i32);
        assert_eq!(
            nanny_common::snapshot::evidence(&issues[1], "seconds left"),
            Some("432000")
        );
        assert_eq!(
            nanny_common::snapshot::evidence(&issues[1], "issuer"),
            Some("Shop CA")
        );
    }
}
