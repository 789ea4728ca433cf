//! A drain takes down every pod on its node: the protections, the
//! disruption cap, the PodDisruptionBudgets and the storm guard apply to
//! each of them, from what the coordinator saw on the node in every
//! namespace.

use std::collections::BTreeMap;

use nanny_proto::v1::{GateLimits, GatePolicy, NodePod, ObjectRef, ReviewContext, action::Kind};

use super::{Gate, Level, Review};

/// Pods named in one reason; the rest are counted.
const NAMED: usize = 5;

/// Checks a drain of `node` against the pods on it.
pub(super) fn drain(
    kind: &Kind,
    node: &ObjectRef,
    context: &ReviewContext,
    policy: &GatePolicy,
    limits: &GateLimits,
    gate: &Gate,
    review: &mut Review,
) {
    let Some(on_node) = &context.node_pods else {
        review.tighten(
            Level::Denied,
            "facts-missing",
            format!(
                "the pods on node {} are unknown: what the drain would take down cannot be checked",
                node.name
            ),
        );
        return;
    };
    // Each pod that would move, with why it is protected, if it is.
    let moving: Vec<(&NodePod, Option<String>)> = on_node
        .pods
        .iter()
        .filter(|p| !p.stays)
        .map(|p| (p, protection(gate, kind, p)))
        .collect();
    let protected: Vec<String> = moving
        .iter()
        .filter_map(|(p, why)| why.as_ref().map(|why| format!("{} ({why})", name(p))))
        .collect();
    // Bare pods stay without the policy's leave.
    let stays_bare = |p: &NodePod| p.bare && !policy.allow_bare_pod_restart;
    let bare: Vec<String> = moving
        .iter()
        .filter(|(p, why)| why.is_none() && stays_bare(p))
        .map(|(p, _)| name(p))
        .collect();
    let evicted: Vec<&NodePod> = moving
        .iter()
        .filter(|(p, why)| why.is_none() && !stays_bare(p))
        .map(|(p, _)| *p)
        .collect();
    // A pod whose owners are unknown here may still go: the remediator
    // reads its owners live and leaves it if protected, so it counts both
    // ways (a reason, and the cap and budgets).
    let unknown: Vec<String> = evicted
        .iter()
        .filter(|p| !p.facts_complete)
        .map(|p| name(p))
        .collect();
    if policy.drain_refuses_protected_pods && !(protected.is_empty() && unknown.is_empty()) {
        review.tighten(
            Level::Denied,
            "drain-protected-pods",
            format!(
                "the policy refuses to drain a node with protected pods, and these are protected or their owners unknown: {}",
                list(&[protected, unknown].concat())
            ),
        );
        return;
    }
    if !protected.is_empty() {
        review.tighten(
            Level::NeedsApproval,
            "drain-skips-protected",
            format!("protected pods stay on the node: {}", list(&protected)),
        );
    }
    if !unknown.is_empty() {
        review.tighten(
            Level::NeedsApproval,
            "drain-owners-unknown",
            format!(
                "the owners of these pods are not in the snapshot; the remediator checks them live and leaves protected ones: {}",
                list(&unknown)
            ),
        );
    }
    if !bare.is_empty() {
        review.tighten(
            Level::NeedsApproval,
            "drain-skips-bare",
            format!(
                "pods no controller would recreate stay on the node (the policy does not allow restarting bare pods): {}",
                list(&bare)
            ),
        );
    }

    let storm = gate.config.storm.max_drain_evictions;
    if evicted.len() > storm as usize {
        review.tighten(
            Level::Denied,
            "storm-guard-drain",
            format!(
                "the drain would evict {} pods at once (over {storm})",
                evicted.len()
            ),
        );
    }
    disruption_cap(&evicted, limits, gate, review);
    let budgets: Vec<String> = evicted
        .iter()
        .filter(|p| p.pdb_disruptions_allowed == Some(0))
        .map(|p| name(p))
        .collect();
    if !budgets.is_empty() {
        review.tighten(
            Level::NeedsApproval,
            "pdb-blocks",
            format!(
                "PodDisruptionBudgets allow no disruption of: {} (their evictions will wait)",
                list(&budgets)
            ),
        );
    }
}

/// Per workload: the replicas down after the drain (those unavailable now
/// plus its ready pods on the node) stay within the cap. A workload whose
/// pods on the node are all down already loses nothing more; a ready bare
/// pod is over any cap, as for a restart.
fn disruption_cap(evicted: &[&NodePod], limits: &GateLimits, gate: &Gate, review: &mut Review) {
    let percent = if limits.max_disruption_percent == 0 {
        gate.config.limits.max_disruption_percent
    } else {
        limits.max_disruption_percent
    };
    let mut workloads: BTreeMap<&str, (&NodePod, i32)> = BTreeMap::new();
    for pod in evicted.iter().filter(|p| p.ready) {
        workloads
            .entry(pod.workload_uid.as_str())
            .or_insert((pod, 0))
            .1 += 1;
    }
    let over: Vec<String> = workloads
        .values()
        .filter_map(|(pod, ready)| {
            let after = i64::from(pod.workload_unavailable) + i64::from(*ready);
            (pod.workload_uid.is_empty()
                || pod.workload_replicas <= 0
                || after * 100 > i64::from(pod.workload_replicas) * i64::from(percent))
            .then(|| {
                format!(
                    "the workload of {}: {after} of {} replicas down",
                    name(pod),
                    pod.workload_replicas
                )
            })
        })
        .collect();
    if !over.is_empty() {
        review.tighten(
            Level::Denied,
            "disruption-cap",
            format!("the drain is over the cap of {percent}%: {}", list(&over)),
        );
    }
}

/// Why the pod is protected, in the gate's words for any target: its
/// namespace, its labels or its owners'.
fn protection(gate: &Gate, kind: &Kind, pod: &NodePod) -> Option<String> {
    let target = pod.r#ref.clone().unwrap_or_default();
    gate.protections(kind, &target, &pod.labels)
        .or_else(|| gate.owner_protection(&pod.owner_labels))
        .and_then(|review| review.reasons.into_iter().next())
}

fn name(pod: &NodePod) -> String {
    pod.r#ref
        .as_ref()
        .map_or_else(|| "?".to_owned(), |r| format!("{}/{}", r.namespace, r.name))
}

fn list(names: &[String]) -> String {
    let mut text = names
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMED {
        text.push_str(&format!(" and {} more", names.len() - NAMED));
    }
    text
}
