//! HPAs pinned at their maximum: raise the maximum within the ceiling. HPAs
//! unable to scale, or scaling on a utilization nothing requests: reported
//! with what to fix.

use std::time::SystemTime;

use nanny_common::snapshot::evidence;
use nanny_proto::v1::{self as pb, ScaleHpa, Severity, action::Kind};

use super::{
    Draft, Drafts, Rules, describe, ref_of, report,
    report::{plain, quoted},
    report_objects::for_secs,
    scaled,
};
use crate::catalog::HPA_RAISE_MAX;
use crate::config::HpaRule;
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
        let action = raise_max(hpa_ref, max, config);
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

/// `max` of the HPA `hpa_ref` raised by the rule's factor (by one at
/// least), within its ceiling; a report when it is at the ceiling already.
pub(super) fn raise_max(hpa_ref: &pb::ObjectRef, max: i32, config: &HpaRule) -> Kind {
    let raised = i32::try_from(scaled(i64::from(max), config.factor))
        .unwrap_or(i32::MAX)
        .max(max.saturating_add(1));
    let proposed = raised.min(config.max_replicas);
    if proposed <= max {
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
    }
}

/// An HPA the controller says cannot scale: its condition, the controller's
/// words and what to check for that reason.
pub(super) fn unable(
    hpa: &pb::HorizontalPodAutoscaler,
    r: &pb::ObjectRef,
    issue: &pb::Issue,
    now: SystemTime,
) -> String {
    // The condition the collector judged (its evidence names it): not a
    // Backoff or ScalingDisabled one beside it.
    let judged = evidence(issue, "condition")
        .and_then(|c| c.split_once('='))
        .map(|(type_, _)| type_);
    let failing = hpa.conditions.iter().find(|c| {
        c.status == "False"
            && matches!(c.r#type.as_str(), "AbleToScale" | "ScalingActive")
            && judged.is_none_or(|t| t == c.r#type)
    });
    let (condition, reason, said, since) = failing.map_or_else(
        || (String::new(), "", String::new(), String::new()),
        |c| {
            let reason = if plain(&c.reason) {
                c.reason.as_str()
            } else {
                ""
            };
            (
                format!(": {}=False ({reason})", c.r#type),
                reason,
                quoted(c.message.as_ref())
                    .map(|m| format!(" The HPA controller says {m}."))
                    .unwrap_or_default(),
                for_secs(c.last_transition.as_ref(), now),
            )
        },
    );
    let scale_target = evidence(issue, "scale target").unwrap_or("its scale target");
    let advice = match reason {
        r if r.starts_with("FailedGet") && r.ends_with("Metric") => format!(
            "Its metrics cannot be read: check that the metrics API serving them is up (kubectl get apiservice v1beta1.metrics.k8s.io for cpu and memory, served by metrics-server; custom.metrics.k8s.io and external.metrics.k8s.io for the others) and that {scale_target}'s pods are running and named by their metrics."
        ),
        "InvalidMetricSourceType" | "InvalidSelector" => {
            "Its spec cannot be used as written: correct the metric source or the scale target's selector.".to_owned()
        }
        "FailedGetScale" => format!(
            "Its scale target cannot be read: check that {scale_target} exists and that scaleTargetRef names it (kind, apiVersion and name)."
        ),
        "FailedUpdateScale" => {
            "Writing its target's scale failed: check what refuses the write (an admission webhook, a quota, the controller's permissions on the scale subresource).".to_owned()
        }
        _ => format!(
            "Read its conditions and events (kubectl describe hpa -n {} {}).",
            r.namespace, r.name
        ),
    };
    format!(
        "{} has been unable to scale {scale_target}{since}{condition}.{said} It keeps its replicas at {} (min {}, max {}) whatever the load. {advice} Nanny changes nothing.",
        describe(r),
        hpa.current_replicas,
        hpa.min_replicas,
        hpa.max_replicas
    )
}

/// An HPA scaling on a utilization its target's containers do not request.
pub(super) fn without_requests(
    hpa: &pb::HorizontalPodAutoscaler,
    r: &pb::ObjectRef,
    issue: &pb::Issue,
) -> String {
    let resource = evidence(issue, "resource").unwrap_or("the resource");
    let containers = evidence(issue, "containers without a request").unwrap_or("some containers");
    let scale_target = evidence(issue, "scale target").unwrap_or("its scale target");
    let wanted = hpa
        .metrics
        .iter()
        .find(|m| m.name == resource)
        .and_then(|m| m.target_utilization_percent)
        .map(|p| format!(" (target {p}%)"))
        .unwrap_or_default();
    format!(
        "{} scales {scale_target} on {resource} utilization{wanted}, but its pods' containers {containers} request no {resource}: utilization is usage divided by the request, so the HPA cannot compute it and does not scale on it. Set resources.requests.{resource} on every container of the pod template (a LimitRange default in the namespace also works), or scale on an AverageValue target, which needs no request. Nanny changes neither.",
        describe(r)
    )
}
