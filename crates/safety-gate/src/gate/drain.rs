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
    let sorted = Sorted::of(kind, &on_node.pods, policy, gate);
    if policy.drain_refuses_protected_pods
        && !(sorted.protected.is_empty() && sorted.unknown.is_empty())
    {
        review.tighten(
            Level::Denied,
            "drain-protected-pods",
            format!(
                "the policy refuses to drain a node with protected pods, and these are protected or their owners unknown: {}",
                list(&[sorted.protected, sorted.unknown].concat())
            ),
        );
        return;
    }
    sorted.name_what_stays(review);
    evictions(&sorted.evicted, limits, gate, review);
}

/// The pods a drain would move, sorted by what happens to them.
struct Sorted<'a> {
    /// Protected (namespace, labels, owners): they stay, named with why.
    protected: Vec<String>,
    /// Bare pods the policy does not let go: they stay.
    bare: Vec<String>,
    /// Evicted; among them, those whose owners the snapshot lacks.
    evicted: Vec<&'a NodePod>,
    unknown: Vec<String>,
}

impl<'a> Sorted<'a> {
    fn of(kind: &Kind, pods: &'a [NodePod], policy: &GatePolicy, gate: &Gate) -> Self {
        let mut sorted = Sorted {
            protected: Vec::new(),
            bare: Vec::new(),
            evicted: Vec::new(),
            unknown: Vec::new(),
        };
        for pod in pods.iter().filter(|p| !p.stays) {
            if let Some(why) = protection(gate, kind, pod) {
                sorted.protected.push(format!("{} ({why})", name(pod)));
            } else if pod.bare && !policy.allow_bare_pod_restart {
                sorted.bare.push(name(pod));
            } else {
                // Owners unknown here: it may still go (the remediator reads
                // them live and leaves it if protected), so it counts both
                // ways, a reason and the cap and budgets.
                if !pod.facts_complete {
                    sorted.unknown.push(name(pod));
                }
                sorted.evicted.push(pod);
            }
        }
        sorted
    }

    /// Names, for the human who approves, what stays and why.
    fn name_what_stays(&self, review: &mut Review) {
        for (names, rule, what) in [
            (
                &self.protected,
                "drain-skips-protected",
                "protected pods stay on the node",
            ),
            (
                &self.unknown,
                "drain-owners-unknown",
                "the owners of these pods are not in the snapshot; the remediator checks them live and leaves protected ones",
            ),
            (
                &self.bare,
                "drain-skips-bare",
                "pods no controller would recreate stay on the node (the policy does not allow restarting bare pods)",
            ),
        ] {
            if !names.is_empty() {
                review.tighten(
                    Level::NeedsApproval,
                    rule,
                    format!("{what}: {}", list(names)),
                );
            }
        }
    }
}

/// The storm guard, the disruption cap and the budgets, on the pods the
/// drain evicts.
fn evictions(evicted: &[&NodePod], limits: &GateLimits, gate: &Gate, review: &mut Review) {
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
    disruption_cap(evicted, limits, gate, review);
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
