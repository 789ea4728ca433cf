//! HPAs pinned at their maximum: raise the maximum within the ceiling.

use nanny_proto::v1::{self as pb, ScaleHpa, Severity, action::Kind};

use super::{Draft, Drafts, Rules, describe, ref_of, report, scaled};
use crate::catalog::HPA_RAISE_MAX;
use crate::index::SnapshotIndex;

impl Rules {
    pub(super) fn hpa(
        &self,
        issue: &pb::Issue,
        target: &pb::ObjectRef,
        index: &SnapshotIndex<'_>,
        drafts: &mut Drafts,
    ) {
        let config = &self.config.hpa;
        let Some(hpa) = index.hpas.get(target.uid.as_str()) else {
            return;
        };
        let Some(hpa_ref) = ref_of(hpa.r#ref.as_ref()) else {
            return;
        };
        if hpa.max_replicas <= 0 || hpa.current_replicas < hpa.max_replicas {
            return;
        }
        let Some((name, current, wanted)) = hpa.metrics.iter().find_map(|m| {
            match (m.current_utilization_percent, m.target_utilization_percent) {
                (Some(current), Some(wanted))
                    if current > wanted.saturating_add(config.over_target_percent) =>
                {
                    Some((m.name.as_str(), current, wanted))
                }
                _ => None,
            }
        }) else {
            return;
        };
        let max = hpa.max_replicas;
        let raised = i32::try_from(scaled(i64::from(max), config.factor))
            .unwrap_or(i32::MAX)
            .max(max.saturating_add(1));
        let proposed = raised.min(config.max_replicas);
        let action = if proposed <= max {
            report(format!(
                "{} is at its maximum of {max} replicas, already at the ceiling of {}; it needs capacity planning.",
                describe(hpa_ref),
                config.max_replicas
            ))
        } else {
            Kind::ScaleHpa(ScaleHpa {
                min_replicas: None,
                max_replicas: proposed,
            })
        };
        drafts.add(
            "",
            Draft {
                rule: HPA_RAISE_MAX,
                action,
                target: hpa_ref.clone(),
                reason: format!(
                    "{} is at its maximum of {max} replicas with {name} at {current}% (target {wanted}%).",
                    describe(hpa_ref)
                ),
                risk: Severity::Info,
                fingerprints: [issue.fingerprint.clone()].into(),
                evidence: [
                    format!("max replicas: {max}"),
                    format!("{name} utilisation percent: {current}/{wanted}"),
                ]
                .into(),
            },
        );
    }
}
