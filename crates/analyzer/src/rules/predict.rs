//! Predicted issues: act before the failure, sized to the trend the
//! collector fitted, and say "predicted, not yet failed". A claim predicted
//! full is expanded to hold its trend, and a container predicted to be
//! OOM-killed gets a limit that holds its working set's trend: both need a
//! human's approval (the gate's levels for ExpandPvc and PatchResources). A
//! node predicted to run out of memory or disk is cordoned, also with a
//! human's approval (every node operation). An HPA at its maximum for a rising
//! share of each day gets a higher maximum, which the gate approves within
//! the ceiling as for one pinned there now.
//!
//! The trend is input from the snapshot like any other: a trend that is not
//! finite, not rising, or whose R² is not a fraction yields nothing (how
//! straight a trend must be is the collector's threshold), and no size is
//! ever negative, below the current one or above the configured ceilings.

use nanny_common::quantity::{bytes_text, duration_text};
use nanny_proto::v1::{self as pb, CordonNode, ExpandPvc, Severity, action::Kind};

use super::{
    Draft, Drafts, MIB, ROLLABLE, Rules, describe, memory_limit, ref_of, report, round_up, scaled,
};
use crate::catalog::{
    HPA_PREDICTED_RAISE_MAX, NODE_PREDICTED_CORDON, OOM_PREDICTED_RAISE_MEMORY,
    PVC_PREDICTED_EXPAND,
};
use crate::index::SnapshotIndex;

/// The issue's trend, when it is one a prediction can stand on.
fn trend(issue: &pb::Issue) -> Option<&pb::Trend> {
    issue.trend.as_ref().filter(|t| {
        [t.slope_per_hour, t.r_squared, t.current, t.ceiling]
            .iter()
            .all(|v| v.is_finite())
            && t.slope_per_hour > 0.0
            && t.current >= 0.0
            && t.ceiling > 0.0
            && (0.0..=1.0).contains(&t.r_squared)
            && t.seconds_to_ceiling >= 0
    })
}

/// `current` plus `hold_secs` of growth, clamped to `[low, high]` and
/// rounded up to a MiB without passing `high`; never negative.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    reason = "sizes in bytes, clamped to i64 bounds the config already holds; `as` saturates"
)]
fn hold(trend: &pb::Trend, hold_secs: u64, low: i64, high: i64) -> i64 {
    let wanted = trend.current + trend.slope_per_hour * hold_secs as f64 / 3600.0;
    let (low, high) = (low.max(0), high.max(low).max(0));
    let bytes = (wanted.ceil() as i64).clamp(low, high);
    round_up(bytes, MIB).min((high / MIB * MIB).max(low))
}

/// The explanation's first sentence: what is predicted and from what.
fn predicted(what: &str, trend: &pb::Trend) -> String {
    #[expect(clippy::cast_precision_loss, reason = "spans of seconds")]
    let (eta, history) = (
        duration_text(trend.seconds_to_ceiling as f64),
        duration_text(trend.history_seconds as f64),
    );
    format!(
        "{what} in {eta}: it grew {}/h over {history} (R² {:.2}), now {} of {}. Predicted, not yet failed.",
        bytes_text(trend.slope_per_hour),
        trend.r_squared,
        bytes_text(trend.current),
        bytes_text(trend.ceiling),
    )
}

fn trend_evidence(trend: &pb::Trend) -> [String; 4] {
    [
        format!("trend: {}", trend.series),
        format!("growth per hour: {:.0}", trend.slope_per_hour),
        format!("fit R squared: {:.3}", trend.r_squared),
        format!("seconds until the ceiling: {}", trend.seconds_to_ceiling),
    ]
}

/// How long `proposed` bytes hold the trend.
#[expect(clippy::cast_precision_loss, reason = "sizes in bytes")]
fn holds(what: &str, trend: &pb::Trend, proposed: i64) -> String {
    format!(
        "{what} of {} holds the trend for about {} more.",
        bytes_text(proposed as f64),
        duration_text((proposed as f64 - trend.current).max(0.0) / trend.slope_per_hour * 3600.0)
    )
}

/// The Deployment, StatefulSet or DaemonSet owning `pod`, and the memory
/// limit its template gives `container`.
fn owner_limit<'a>(
    index: &SnapshotIndex<'a>,
    pod: &pb::Pod,
    container: &str,
) -> Option<(&'a pb::ObjectRef, i64)> {
    let workload = index
        .workloads
        .get(ref_of(pod.workload.as_ref())?.uid.as_str())?;
    let workload_ref =
        ref_of(workload.r#ref.as_ref()).filter(|r| ROLLABLE.contains(&r.kind.as_str()))?;
    let limit = workload
        .containers
        .iter()
        .find(|c| c.name == container)?
        .limits?
        .memory_bytes
        .filter(|l| *l > 0)?;
    Some((workload_ref, limit))
}

/// A node whose working set is predicted to reach its allocatable memory,
/// or whose filesystem its allocatable ephemeral storage (`disk`):
/// cordoned (the gate asks a human for every node operation) so no new pod
/// lands there meanwhile; one cordoned already is reported.
fn node_predicted(
    issue: &pb::Issue,
    target: &pb::ObjectRef,
    index: &SnapshotIndex<'_>,
    disk: bool,
    drafts: &mut Drafts,
) {
    let (Some(trend), Some(node)) = (trend(issue), index.nodes.get(target.uid.as_str())) else {
        return;
    };
    let Some(node_ref) = ref_of(node.r#ref.as_ref()) else {
        return;
    };
    let (what, find) = if disk {
        (
            "bytes used on its filesystem are predicted to reach its allocatable ephemeral storage",
            "Find what fills it (logs, images, emptyDir volumes): once it gets there the kubelet evicts pods under DiskPressure.",
        )
    } else {
        (
            "working set is predicted to reach its allocatable memory",
            "Find what grows on it: once it gets there the kubelet evicts pods, or the kernel kills them.",
        )
    };
    let reason = predicted(&format!("{}'s {what}", describe(node_ref)), trend);
    let (action, reason) = if node.unschedulable {
        let text = format!("{reason} It is cordoned already. {find}");
        (report(text.clone()), text)
    } else {
        (
            Kind::CordonNode(CordonNode {}),
            format!("{reason} Cordon it so no new pods land there. {find}"),
        )
    };
    drafts.add_explained(
        "",
        Draft {
            rule: NODE_PREDICTED_CORDON,
            action,
            target: node_ref.clone(),
            reason,
            risk: Severity::Warning,
            fingerprints: [issue.fingerprint.clone()].into(),
            evidence: trend_evidence(trend).into(),
        },
    );
}

impl Rules {
    /// Predicted failures and cost.
    pub(super) fn ahead(
        &self,
        kind: pb::IssueKind,
        issue: &pb::Issue,
        target: &pb::ObjectRef,
        index: &SnapshotIndex<'_>,
        drafts: &mut Drafts,
    ) {
        match kind {
            pb::IssueKind::PvcPredictedFull if self.config.pvc.enabled => {
                self.pvc_predicted(issue, target, index, drafts);
            }
            pb::IssueKind::OomPredicted if self.config.oom.enabled => {
                self.oom_predicted(issue, target, index, drafts);
            }
            pb::IssueKind::NodePredictedExhausted | pb::IssueKind::NodeDiskPredictedFull
                if self.config.node.enabled =>
            {
                let disk = kind == pb::IssueKind::NodeDiskPredictedFull;
                node_predicted(issue, target, index, disk, drafts);
            }
            pb::IssueKind::HpaAtMaxRising if self.config.hpa.enabled => {
                self.hpa_predicted(issue, target, index, drafts);
            }
            pb::IssueKind::OverProvisioned | pb::IssueKind::WorkloadIdle
                if self.config.report.enabled =>
            {
                let propose = self.config.rightsizing.propose_patch
                    && self
                        .config
                        .allowed_actions
                        .as_ref()
                        .is_none_or(|a| a.contains(&(pb::ActionType::PatchResources as i32)));
                super::report_cost::report_cost(kind, issue, target, index, propose, drafts);
            }
            _ => {}
        }
    }

    /// An HPA at its maximum for a rising share of each day: its maximum
    /// raised, as for one pinned there now, before the next peak.
    fn hpa_predicted(
        &self,
        issue: &pb::Issue,
        target: &pb::ObjectRef,
        index: &SnapshotIndex<'_>,
        drafts: &mut Drafts,
    ) {
        let (Some(trend), Some(hpa)) = (trend(issue), index.hpas.get(target.uid.as_str())) else {
            return;
        };
        let Some(hpa_ref) = ref_of(hpa.r#ref.as_ref()).filter(|_| hpa.max_replicas > 0) else {
            return;
        };
        let max = hpa.max_replicas;
        #[expect(clippy::cast_precision_loss, reason = "spans of seconds")]
        let reason = format!(
            "{} was at its maximum of {max} replicas for {:.0}% of the last day, a share rising {:.1} points a day over {} days (R² {:.2}): at this pace it is pinned there all day in {}. Predicted, not yet failed.",
            describe(hpa_ref),
            trend.current * 100.0,
            trend.slope_per_hour * 24.0 * 100.0,
            trend.samples,
            trend.r_squared,
            duration_text(trend.seconds_to_ceiling as f64),
        );
        let action = super::hpa::raise_max(hpa_ref, max, &self.config.hpa);
        let reason = match &action {
            Kind::ScaleHpa(scale) => format!(
                "{reason} A maximum of {} gives it room before the next peak.",
                scale.max_replicas
            ),
            _ => reason,
        };
        drafts.add(
            "",
            Draft {
                rule: HPA_PREDICTED_RAISE_MAX,
                action,
                target: hpa_ref.clone(),
                reason,
                risk: Severity::Info,
                fingerprints: [issue.fingerprint.clone()].into(),
                evidence: [
                    format!("trend: {}", trend.series),
                    format!("max replicas: {max}"),
                    format!("share of the last day at max: {:.3}", trend.current),
                    format!("fit R squared: {:.3}", trend.r_squared),
                ]
                .into(),
            },
        );
    }

    pub(super) fn pvc_predicted(
        &self,
        issue: &pb::Issue,
        target: &pb::ObjectRef,
        index: &SnapshotIndex<'_>,
        drafts: &mut Drafts,
    ) {
        let config = &self.config.pvc;
        let (Some(trend), Some(pvc)) = (trend(issue), index.pvcs.get(target.uid.as_str())) else {
            return;
        };
        let Some(pvc_ref) = ref_of(pvc.r#ref.as_ref()) else {
            return;
        };
        let capacity = pvc.capacity_bytes;
        if capacity <= 0 {
            return;
        }
        let reason = predicted(
            &format!("{} is predicted to fill", describe(pvc_ref)),
            trend,
        );
        let proposed = hold(
            trend,
            config.predicted_hold_secs,
            scaled(capacity, config.factor),
            capacity.saturating_mul(2),
        )
        .min(config.max_storage_bytes);
        let action = if !pvc.expandable {
            report(format!(
                "{reason} Its storage class does not allow expansion; move the data, clean up, or find what writes it."
            ))
        } else if proposed <= capacity {
            report(format!(
                "{reason} It is already at the ceiling of {}.",
                bytes_text(config.max_storage_bytes as f64)
            ))
        } else {
            Kind::ExpandPvc(ExpandPvc {
                new_size_bytes: proposed,
            })
        };
        let reason = match action {
            Kind::ExpandPvc(_) => format!("{reason} {}", holds("A size", trend, proposed)),
            _ => reason,
        };
        drafts.add(
            "",
            Draft {
                rule: PVC_PREDICTED_EXPAND,
                action,
                target: pvc_ref.clone(),
                reason,
                risk: Severity::Warning,
                fingerprints: [issue.fingerprint.clone()].into(),
                evidence: trend_evidence(trend)
                    .into_iter()
                    .chain([format!("capacity bytes: {capacity}")])
                    .collect(),
            },
        );
    }

    pub(super) fn oom_predicted(
        &self,
        issue: &pb::Issue,
        target: &pb::ObjectRef,
        index: &SnapshotIndex<'_>,
        drafts: &mut Drafts,
    ) {
        let config = &self.config.oom;
        let (Some(trend), Some(pod)) = (trend(issue), index.pods.get(target.uid.as_str())) else {
            return;
        };
        let Some(pod_ref) = ref_of(pod.r#ref.as_ref()) else {
            return;
        };
        // The issue names its container; the pod must have it.
        let Some(name) = nanny_common::snapshot::evidence(issue, "container")
            .filter(|name| pod.containers.iter().any(|c| c.name == *name))
        else {
            return;
        };
        let reason = predicted(
            &format!(
                "Container {name} of {} is predicted to reach its memory limit",
                describe(pod_ref)
            ),
            trend,
        );
        let Some((workload_ref, limit)) = owner_limit(index, pod, name) else {
            drafts.add(
                name,
                Draft {
                    rule: OOM_PREDICTED_RAISE_MEMORY,
                    action: report(format!(
                        "{reason} Its owning Deployment, StatefulSet or DaemonSet with that limit is not in the snapshot; raise the limit where the pod is defined, and look for a leak."
                    )),
                    target: pod_ref.clone(),
                    reason: reason.clone(),
                    risk: Severity::Info,
                    fingerprints: [issue.fingerprint.clone()].into(),
                    evidence: trend_evidence(trend).into(),
                },
            );
            return;
        };
        let proposed = hold(
            trend,
            config.predicted_hold_secs,
            scaled(limit, 1.1),
            scaled(limit, config.factor),
        )
        .min(config.max_memory_bytes);
        let leak = "A steady rise that does not level off suggests a memory leak: a higher limit buys time, the fix is in the application.";
        let (action, reason) = if proposed <= limit {
            let text = format!(
                "{reason} Its limit is already at the ceiling of {}; it needs a person. {leak}",
                bytes_text(config.max_memory_bytes as f64)
            );
            (report(text.clone()), text)
        } else {
            let text = format!("{reason} {} {leak}", holds("A limit", trend, proposed));
            (memory_limit(name, proposed), text)
        };
        drafts.add(
            name,
            Draft {
                rule: OOM_PREDICTED_RAISE_MEMORY,
                action,
                target: workload_ref.clone(),
                reason,
                risk: Severity::Warning,
                fingerprints: [issue.fingerprint.clone()].into(),
                evidence: trend_evidence(trend)
                    .into_iter()
                    .chain([format!("memory limit bytes: {limit}")])
                    .collect(),
            },
        );
    }
}
