//! A drain takes down every pod on its node: the protections, the
//! disruption cap, the PodDisruptionBudgets and the storm guard apply to
//! each of them, from what the coordinator saw on the node in every
//! namespace.

use std::collections::BTreeMap;

use nanny_proto::v1::{GateLimits, GatePolicy, NodePod, ObjectRef, ReviewContext};

use super::{Gate, Level, Review};

/// Pods named in one reason; the rest are counted.
const NAMED: usize = 5;

/// Checks a drain of `node` against the pods on it.
pub(super) fn drain(
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
    let moving = on_node.pods.iter().filter(|p| !p.stays);
    // Known to be protected, or bare without the policy's leave: they stay.
    // A pod whose owners are unknown here may still go: the remediator
    // reads its owners live and leaves it if protected, so it counts both
    // ways (a reason, and the cap and budgets).
    let (kept, evicted): (Vec<&NodePod>, Vec<&NodePod>) = moving
        .partition(|p| protection(gate, p).is_some() || (p.bare && !policy.allow_bare_pod_restart));
    let protected: Vec<String> = kept
        .iter()
        .filter_map(|p| protection(gate, p).map(|why| format!("{} ({why})", name(p))))
        .collect();
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
    let bare: Vec<String> = kept
        .iter()
        .filter(|p| p.bare && protection(gate, p).is_none())
        .map(|p| name(p))
        .collect();
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

/// Why the pod is protected: its namespace, its labels or its owners', or
/// an owner chain that could not be followed.
fn protection(gate: &Gate, pod: &NodePod) -> Option<String> {
    let protected = &gate.config.protected;
    let namespace = pod.r#ref.as_ref().map_or("", |r| r.namespace.as_str());
    if protected.namespaces.iter().any(|n| n == namespace) {
        return Some(format!("namespace {namespace} is protected"));
    }
    let carried = |labels: &std::collections::HashMap<String, String>| {
        protected.labels.iter().find(|label| {
            label
                .split_once('=')
                .is_some_and(|(k, v)| labels.get(k).is_some_and(|have| have == v))
        })
    };
    if let Some(label) = carried(&pod.labels) {
        return Some(format!("label {label}"));
    }
    if let Some(label) = carried(&pod.owner_labels) {
        return Some(format!("an owner carries {label}"));
    }
    None
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
