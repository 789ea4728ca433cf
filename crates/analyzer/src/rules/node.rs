//! Sick nodes: cordon under pressure, cordon or drain when NotReady; a
//! cordon Nanny set lifted once the node has been healthy for a while.

use std::collections::BTreeSet;

use nanny_proto::v1::{self as pb, CordonNode, DrainNode, IssueKind, Severity, action::Kind};

use super::{Draft, Drafts, Rules, describe, ref_of};
use crate::catalog::{
    NODE_NOT_READY_CORDON, NODE_NOT_READY_CORDON_DRAIN, NODE_NOT_READY_DRAIN, NODE_PRESSURE_CORDON,
    NODE_PROBLEM_CORDON, NODE_RECOVERED_UNCORDON,
};
use crate::index::SnapshotIndex;

/// The condition an issue on a node reports. A node-problem-detector issue
/// names its condition in its evidence (the collector's own words, one of
/// its known conditions).
fn condition(kind: IssueKind, issue: &pb::Issue) -> &str {
    match kind {
        IssueKind::NodeMemoryPressure => "MemoryPressure",
        IssueKind::NodeDiskPressure => "DiskPressure",
        IssueKind::NodePidPressure => "PIDPressure",
        IssueKind::NodeNetworkUnavailable => "NetworkUnavailable",
        IssueKind::NodeProblem => issue
            .evidence
            .iter()
            .map(|e| e.description.as_str())
            .find(|d| d.chars().all(|c| c.is_ascii_alphanumeric()))
            .unwrap_or("a node problem"),
        _ => "NotReady",
    }
}

impl Rules {
    pub(super) fn node(
        &self,
        kind: IssueKind,
        issue: &pb::Issue,
        target: &pb::ObjectRef,
        index: &SnapshotIndex<'_>,
        drafts: &mut Drafts,
    ) {
        let config = &self.config.node;
        let Some(node) = index.nodes.get(target.uid.as_str()) else {
            return;
        };
        let Some(node_ref) = ref_of(node.r#ref.as_ref()) else {
            return;
        };
        let not_ready = kind == IssueKind::NodeNotReady;
        let condition = condition(kind, issue);
        let fingerprints: BTreeSet<String> = [issue.fingerprint.clone()].into();
        let evidence: BTreeSet<String> = [format!("condition: {condition}")].into();
        let drain = Kind::DrainNode(DrainNode {
            grace_period_seconds: config.drain_grace_period_secs,
            timeout_seconds: config.drain_timeout_secs,
        });
        if not_ready && config.drain_not_ready && config.cordon_drain_plan && !node.unschedulable {
            drafts.add_plan(
                "",
                Draft {
                    rule: NODE_NOT_READY_CORDON_DRAIN,
                    action: Kind::CordonNode(CordonNode {}),
                    target: node_ref.clone(),
                    reason: format!(
                        "{} is not ready: cordon it, then drain it so its pods are replaced elsewhere. Each step is verified before the next; if the drain fails, the cordon is lifted again.",
                        describe(node_ref)
                    ),
                    risk: Severity::Critical,
                    fingerprints,
                    evidence,
                },
                vec![drain],
            );
            return;
        }
        if !node.unschedulable {
            let rule = match kind {
                IssueKind::NodeNotReady => NODE_NOT_READY_CORDON,
                IssueKind::NodeNetworkUnavailable | IssueKind::NodeProblem => NODE_PROBLEM_CORDON,
                _ => NODE_PRESSURE_CORDON,
            };
            drafts.add(
                "",
                Draft {
                    rule,
                    action: Kind::CordonNode(CordonNode {}),
                    target: node_ref.clone(),
                    reason: format!(
                        "{} reports {condition}; stop scheduling onto it.",
                        describe(node_ref)
                    ),
                    risk: Severity::Warning,
                    fingerprints: fingerprints.clone(),
                    evidence: evidence.clone(),
                },
            );
        }
        if not_ready && config.drain_not_ready {
            drafts.add(
                "",
                Draft {
                    rule: NODE_NOT_READY_DRAIN,
                    action: drain,
                    target: node_ref.clone(),
                    reason: format!(
                        "{} is not ready; move its pods elsewhere.",
                        describe(node_ref)
                    ),
                    risk: Severity::Critical,
                    fingerprints,
                    evidence,
                },
            );
        }
    }

    /// A node cordoned by Nanny (its remediator's annotation), Ready for
    /// `uncordon_after_secs` with no other condition True: its cordon is
    /// lifted. A person's cordon, or a node still sick or still predicted to
    /// run out of memory or disk, is left alone.
    pub(super) fn node_recovered(
        &self,
        issue: &pb::Issue,
        target: &pb::ObjectRef,
        index: &SnapshotIndex<'_>,
        now: std::time::SystemTime,
        drafts: &mut Drafts,
    ) {
        let Some(node) = index.nodes.get(target.uid.as_str()) else {
            return;
        };
        let Some(node_ref) = ref_of(node.r#ref.as_ref()).filter(|_| node.cordoned_by_nanny) else {
            return;
        };
        // Healthy since the newest change of any condition: a pressure that
        // cleared a minute ago leaves Ready's own transition weeks old.
        let ready = node
            .conditions
            .iter()
            .any(|c| c.r#type == "Ready" && c.status == "True");
        let ready_for = node
            .conditions
            .iter()
            .filter_map(|c| super::seconds_since(c.last_transition.as_ref(), now))
            .min()
            .filter(|_| ready);
        // A condition True, or (a cordon on a prediction) its memory or
        // disk still predicted to run out: the cordon stays.
        let predicted = index.issues.values().any(|i| {
            [
                IssueKind::NodePredictedExhausted as i32,
                IssueKind::NodeDiskPredictedFull as i32,
            ]
            .contains(&i.kind)
                && i.target.as_ref().is_some_and(|t| t.uid == target.uid)
        });
        let sick = predicted
            || node
                .conditions
                .iter()
                .any(|c| c.r#type != "Ready" && c.status == "True");
        let Some(ready_for) = ready_for.filter(|s| {
            !sick && *s >= 0 && s.unsigned_abs() >= self.config.node.uncordon_after_secs
        }) else {
            return;
        };
        drafts.add(
            "",
            Draft {
                rule: NODE_RECOVERED_UNCORDON,
                action: Kind::UncordonNode(pb::UncordonNode {}),
                target: node_ref.clone(),
                reason: format!(
                    "{} was cordoned by Nanny and has been Ready for {ready_for}s with no other condition True: it can take pods again.",
                    describe(node_ref)
                ),
                risk: Severity::Info,
                fingerprints: [issue.fingerprint.clone()].into(),
                evidence: [format!("ready seconds: {ready_for}")].into(),
            },
        );
    }
}
