//! HPAs that cannot scale: the controller says so (AbleToScale or
//! ScalingActive False, e.g. no metrics API, a target that does not exist)
//! for the HPA threshold, or they scale on a resource's utilization that
//! their target's pods do not request (the utilization has no denominator,
//! and the HPA controller refuses to compute it). And HPAs at their maximum
//! for a rising share of each day: pinned there all day before long.

use std::collections::HashMap;

use nanny_common::quantity::duration_text;
use nanny_proto::v1::{self as pb, IssueKind, Severity};

use super::{for_at_least, issue, predict::predicted_issue};
use crate::{
    config::Thresholds,
    prom::{MetricsRound, TrendSeries},
    store::Tables,
};

/// How a daily share's fit is named in evidence.
const SHARE_QUERY: &str = "hpa_at_max_share";

/// HPAs at their maximum for a share of each day that rises steadily
/// (`thresholds.hpa_share_*`, fitted across `prometheus.hpa_share_days`):
/// predicted to be pinned there all day. One at its maximum with a metric
/// over target right now has `HPAAtMax` instead.
#[expect(
    clippy::cast_possible_truncation,
    reason = "finite spans of seconds and small percentages"
)]
pub(super) fn hpas_rising(
    tables: &Tables,
    metrics: &MetricsRound,
    t: &Thresholds,
    issues: &mut Vec<pb::Issue>,
) {
    let shares: HashMap<(&str, &str), &TrendSeries> = metrics
        .history
        .hpa_shares
        .iter()
        .filter_map(|s| {
            let ns = s.labels.get("namespace")?;
            let name = s.labels.get("horizontalpodautoscaler")?;
            Some(((ns.as_str(), name.as_str()), s))
        })
        .collect();
    if shares.is_empty() {
        return;
    }
    for entry in tables.hpas.values() {
        let hpa = entry.value.as_ref();
        let Some(target) = hpa.r#ref.as_ref() else {
            continue;
        };
        let at_max = super::fingerprint(IssueKind::HpaAtMax, &target.uid, "");
        if hpa.max_replicas <= 0 || issues.iter().any(|i| i.fingerprint == at_max) {
            continue;
        }
        let Some(series) = shares.get(&(target.namespace.as_str(), target.name.as_str())) else {
            continue;
        };
        let fit = &series.fit;
        // Percentage points a day, and of the last day.
        let (rise, share) = (fit.slope_per_sec * 86_400.0 * 100.0, fit.current * 100.0);
        if fit.r_squared < t.hpa_share_min_r_squared
            || rise < t.hpa_share_rise_percent_per_day
            || rise <= 0.0
            || share < t.hpa_share_min_percent
        {
            continue;
        }
        let all_day_secs = (100.0 - share).max(0.0) / rise * 86_400.0;
        let trend = pb::Trend {
            series: series.name(SHARE_QUERY),
            slope_per_hour: fit.slope_per_sec * 3600.0,
            r_squared: fit.r_squared,
            current: fit.current.min(1.0),
            ceiling: 1.0,
            seconds_to_ceiling: all_day_secs.ceil() as i64,
            history_seconds: fit.history_secs.round() as i64,
            samples: u32::try_from(fit.samples).unwrap_or(u32::MAX),
        };
        let summary = format!(
            "HPA {}/{} was at its maximum of {} replicas for {share:.0}% of the last day, a share rising {rise:.1} points a day over {} days (R² {:.2}): at this pace it is pinned there all day in {}. Predicted, not yet failed.",
            target.namespace,
            target.name,
            hpa.max_replicas,
            fit.samples,
            fit.r_squared,
            duration_text(all_day_secs),
        );
        let extra = vec![
            ("max replicas", hpa.max_replicas.to_string()),
            ("percent of the last day at max", format!("{share:.1}")),
            ("rise in percent points per day", format!("{rise:.2}")),
        ];
        issues.push(predicted_issue(
            IssueKind::HpaAtMaxRising,
            target,
            "",
            trend,
            summary,
            extra,
        ));
    }
}

/// HPAs unable to scale, or scaling on a utilization nothing requests.
pub(super) fn hpas_unable(tables: &Tables, t: &Thresholds, now: i64, issues: &mut Vec<pb::Issue>) {
    // The live pods of what HPAs scale, by (kind, namespace, name): no pass
    // over the pods in a cluster without HPAs, and no index of the others.
    fn key(r: &pb::ObjectRef) -> (&str, &str, &str) {
        (&r.kind, &r.namespace, &r.name)
    }
    let mut pods_of: HashMap<(&str, &str, &str), Vec<&pb::Pod>> = tables
        .hpas
        .values()
        .filter_map(|e| e.value.scale_target.as_ref().map(|s| (key(s), Vec::new())))
        .collect();
    if !pods_of.is_empty() {
        for entry in tables.pods.values() {
            let pod = entry.value.as_ref();
            // The HPA controller counts neither finished nor deleted pods.
            let live = matches!(pod.phase.as_str(), "Running" | "Pending");
            if let (true, None, Some(w)) = (live, &pod.deletion_deadline, &pod.workload)
                && let Some(pods) = pods_of.get_mut(&key(w))
            {
                pods.push(pod);
            }
        }
    }
    for entry in tables.hpas.values() {
        let hpa = entry.value.as_ref();
        let Some(target) = hpa.r#ref.as_ref() else {
            continue;
        };
        let pods = hpa.scale_target.as_ref().and_then(|s| pods_of.get(&key(s)));
        let before = issues.len();
        if let Some(pods) = pods {
            without_requests(hpa, target, pods, issues);
        }
        // The missing request is the precise cause of the controller's
        // ScalingActive=False (FailedGetResourceMetric): said once.
        if issues.len() == before {
            unable(hpa, target, t, now, issues);
        }
    }
}

/// The first condition saying the HPA cannot scale, held the threshold.
fn unable(
    hpa: &pb::HorizontalPodAutoscaler,
    target: &pb::ObjectRef,
    t: &Thresholds,
    now: i64,
    issues: &mut Vec<pb::Issue>,
) {
    let failing = hpa.conditions.iter().find(|c| {
        c.status == "False"
            && match c.r#type.as_str() {
                // Old controllers said AbleToScale=False while only waiting
                // out a stabilization window (BackoffBoth, ...).
                "AbleToScale" => !c.reason.starts_with("Backoff"),
                // ScalingDisabled: its target is scaled to zero on purpose.
                "ScalingActive" => c.reason != "ScalingDisabled",
                _ => false,
            }
    });
    let Some(c) = failing else {
        return;
    };
    let Some(secs) = for_at_least(c.last_transition.as_ref(), now, t.hpa_unable_secs) else {
        return;
    };
    let scale_target = scale_target(hpa);
    issues.push(issue(
        IssueKind::HpaUnableToScale,
        Severity::Warning,
        target,
        "",
        format!(
            "HPA {}/{} has been unable to scale {scale_target} for {secs}s ({}=False, {}).",
            target.namespace, target.name, c.r#type, c.reason
        ),
        vec![
            ("condition", format!("{}=False ({})", c.r#type, c.reason)),
            ("scale target", scale_target),
            ("unable seconds", secs.to_string()),
            (
                "replicas (current/min/max)",
                format!(
                    "{}/{}/{}",
                    hpa.current_replicas, hpa.min_replicas, hpa.max_replicas
                ),
            ),
        ],
    ));
}

/// One issue per resource the HPA scales on by utilization that a
/// container of its target's pods does not request (a limit alone counts:
/// the API server defaults the request to it, so pods carry it).
fn without_requests(
    hpa: &pb::HorizontalPodAutoscaler,
    target: &pb::ObjectRef,
    pods: &[&pb::Pod],
    issues: &mut Vec<pb::Issue>,
) {
    for metric in &hpa.metrics {
        if metric.target_utilization_percent.is_none() {
            continue;
        }
        let requested = |c: &pb::ContainerStatus| {
            let r = c.requests.as_ref();
            match metric.name.as_str() {
                "cpu" => r.and_then(|r| r.cpu_millicores).is_some(),
                "memory" => r.and_then(|r| r.memory_bytes).is_some(),
                // Only cpu and memory are carried; nothing to judge.
                _ => true,
            }
        };
        let mut missing: Vec<&str> = pods
            .iter()
            .flat_map(|p| &p.containers)
            .filter(|c| !requested(c))
            .map(|c| c.name.as_str())
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            continue;
        }
        let scale_target = scale_target(hpa);
        issues.push(issue(
            IssueKind::HpaTargetWithoutRequests,
            Severity::Warning,
            target,
            &metric.name,
            format!(
                "HPA {}/{} scales {scale_target} on {} utilization, but its pods' containers {} request no {}: the utilization cannot be computed.",
                target.namespace,
                target.name,
                metric.name,
                missing.join(", "),
                metric.name
            ),
            vec![
                ("resource", metric.name.clone()),
                ("scale target", scale_target),
                ("containers without a request", missing.join(", ")),
                (
                    "target utilization percent",
                    metric.target_utilization_percent.unwrap_or_default().to_string(),
                ),
            ],
        ));
    }
}

/// `Deployment shop/web`: what the HPA scales.
fn scale_target(hpa: &pb::HorizontalPodAutoscaler) -> String {
    hpa.scale_target.as_ref().map_or_else(String::new, |s| {
        format!("{} {}/{}", s.kind, s.namespace, s.name)
    })
}

#[cfg(test)]
mod tests;
