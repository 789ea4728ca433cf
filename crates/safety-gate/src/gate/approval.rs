//! Per action kind: which targets fit, the parameter ceilings, the
//! seeds' default approval level, and the disruption checks for actions
//! that take a serving replica down.

use std::time::{Duration, SystemTime};

use nanny_proto::v1::{IssueKind, ObjectRef, action::Kind};
use nanny_proto::vocabulary;

use super::{Gate, Level, Review, action_type};

/// Built-in ceilings used when a policy sets none.
const DEFAULT_MAX_REPLICAS: i32 = 100;
const DEFAULT_MAX_MEMORY_BYTES: i64 = 64 << 30;
const DEFAULT_MAX_STORAGE_BYTES: i64 = 16 << 40;
const JOB_MIN_AGE: Duration = Duration::from_secs(24 * 3600);
/// Most failed pods one DeleteFailedPods may delete.
const MAX_FAILED_PODS: u32 = 100;

/// Whether the action fits the target's kind and scope.
pub(super) fn check_target_kind(kind: &Kind, target: &ObjectRef) -> Result<(), String> {
    if !vocabulary::of(kind).accepts(&target.kind) {
        return Err(format!(
            "{} cannot target a {}",
            action_type(kind).as_str_name(),
            target.kind
        ));
    }
    let cluster_scoped = vocabulary::CLUSTER_SCOPED.contains(&target.kind.as_str());
    if cluster_scoped != target.namespace.is_empty() {
        return Err(format!(
            "{} {} has the wrong scope (namespace {:?})",
            target.kind, target.name, target.namespace
        ));
    }
    Ok(())
}

/// The seeds' approval level for the action, after checking its parameters
/// against the ceilings. `Err` is a final denial.
#[expect(
    clippy::too_many_lines,
    reason = "one arm per action type: the seeds' approval table"
)]
pub(super) fn default_level(
    kind: &Kind,
    context: &nanny_proto::v1::ReviewContext,
    allowed: &nanny_proto::v1::AllowedAction,
    now: SystemTime,
) -> Result<Review, Review> {
    let needs = |rule, reason: &str| Ok(Review::start(Level::NeedsApproval, rule, reason));
    let auto = |rule, reason: &str| Ok(Review::start(Level::Approved, rule, reason));
    match kind {
        Kind::RestartPod(_) => {
            if context
                .target_issue_kinds
                .contains(&(IssueKind::CrashLoopBackOff as i32))
            {
                auto(
                    "auto-restart-crashloop",
                    "restarting a pod in CrashLoopBackOff is auto-approved",
                )
            } else {
                needs(
                    "restart-needs-human",
                    "the pod is not crash-looping; restarting it needs a human",
                )
            }
        }
        Kind::RolloutRestart(_) => needs(
            "workload-wide-needs-human",
            "a rollout restart touches every replica",
        ),
        Kind::ScaleHpa(scale) => {
            let ceiling = allowed.max_replicas.unwrap_or(DEFAULT_MAX_REPLICAS);
            if scale.max_replicas < 1 || scale.max_replicas > ceiling {
                return Err(Review::denied(
                    "parameter-out-of-bounds",
                    format!("maxReplicas {} outside 1..={ceiling}", scale.max_replicas),
                ));
            }
            if scale
                .min_replicas
                .is_some_and(|min| min < 1 || min > scale.max_replicas)
            {
                return Err(Review::denied(
                    "parameter-out-of-bounds",
                    "minReplicas outside 1..=maxReplicas",
                ));
            }
            // "Raise max" is the only HPA change auto-approval covers: a
            // minReplicas above the current one (or against an unknown one)
            // forces replicas up and needs a human.
            let raises_min = scale
                .min_replicas
                .is_some_and(|min| context.hpa_min_replicas < 1 || min > context.hpa_min_replicas);
            if raises_min {
                needs(
                    "hpa-min-needs-human",
                    "raising minReplicas (or setting it against an unknown current value) needs a human",
                )
            } else if context.hpa_max_replicas > 0 && scale.max_replicas > context.hpa_max_replicas
            {
                auto(
                    "auto-raise-hpa-max",
                    "raising an HPA's maxReplicas within the ceiling is auto-approved",
                )
            } else {
                needs(
                    "hpa-change-needs-human",
                    "lowering or keeping maxReplicas (or an unknown current value) needs a human",
                )
            }
        }
        Kind::UncordonNode(_) if context.node_cordoned_by_nanny => auto(
            "auto-uncordon-own-cordon",
            "lifting a cordon Nanny itself set, from a node healthy again, is auto-approved",
        ),
        Kind::CordonNode(_) | Kind::UncordonNode(_) => {
            needs("node-needs-human", "node operations need a human")
        }
        Kind::DrainNode(drain) => {
            if !(1..=3600).contains(&drain.timeout_seconds)
                || !(0..=3600).contains(&drain.grace_period_seconds)
            {
                return Err(Review::denied(
                    "parameter-out-of-bounds",
                    "drain timeout or grace period out of bounds",
                ));
            }
            needs("node-needs-human", "node operations need a human")
        }
        Kind::ExpandPvc(expand) => {
            let ceiling = allowed
                .max_storage_bytes
                .unwrap_or(DEFAULT_MAX_STORAGE_BYTES);
            if expand.new_size_bytes <= 0 || expand.new_size_bytes > ceiling {
                return Err(Review::denied(
                    "parameter-out-of-bounds",
                    format!("new size outside 1..={ceiling} bytes"),
                ));
            }
            if context.pvc_capacity_bytes <= 0
                || expand.new_size_bytes <= context.pvc_capacity_bytes
            {
                return Err(Review::denied(
                    "never-shrink-pvc",
                    "a PVC is only ever grown from a known size",
                ));
            }
            needs("pvc-needs-human", "PVC modifications need a human")
        }
        Kind::PatchResources(patch) => {
            if patch.container.is_empty() {
                return Err(Review::denied(
                    "parameter-out-of-bounds",
                    "no container named",
                ));
            }
            let ceiling = allowed.max_memory_bytes.unwrap_or(DEFAULT_MAX_MEMORY_BYTES);
            for resources in [&patch.requests, &patch.limits].into_iter().flatten() {
                if resources
                    .memory_bytes
                    .is_some_and(|m| m <= 0 || m > ceiling)
                    || resources
                        .cpu_millicores
                        .is_some_and(|c| c <= 0 || c > 256_000)
                {
                    return Err(Review::denied(
                        "parameter-out-of-bounds",
                        format!("resources outside (0, {ceiling}] bytes / 256 cores"),
                    ));
                }
            }
            needs(
                "resources-need-human",
                "changing resources restarts the workload; a human approves",
            )
        }
        Kind::DeleteJob(delete) => {
            let finished = context
                .job_finished_at
                .and_then(|t| SystemTime::try_from(t).ok());
            let min_age = JOB_MIN_AGE.max(Duration::from_secs(
                u64::try_from(delete.min_age_seconds).unwrap_or(0),
            ));
            match finished.and_then(|f| now.duration_since(f).ok()) {
                Some(age) if age >= min_age => auto(
                    "auto-delete-old-job",
                    "deleting a Job finished over 24h ago is auto-approved",
                ),
                Some(_) => Err(Review::denied(
                    "job-too-recent",
                    "the Job finished less than 24h ago",
                )),
                None => Err(Review::denied(
                    "job-age-unknown",
                    "when the Job finished is unknown",
                )),
            }
        }
        Kind::DeleteResource(_) => needs("delete-needs-human", "deleting an object needs a human"),
        Kind::ScaleWorkload(scale) => {
            let ceiling = allowed.max_replicas.unwrap_or(DEFAULT_MAX_REPLICAS);
            if scale.replicas < 1 || scale.replicas > ceiling {
                return Err(Review::denied(
                    "parameter-out-of-bounds",
                    format!("replicas {} outside 1..={ceiling}", scale.replicas),
                ));
            }
            if context.workload_replicas < 1 || scale.replicas <= context.workload_replicas {
                return Err(Review::denied(
                    "scale-only-up",
                    "ScaleWorkload only raises a known replica count; fewer replicas is a person's or an HPA's call",
                ));
            }
            needs(
                "scale-needs-human",
                "changing a workload's replicas needs a human",
            )
        }
        Kind::RolloutUndo(_) => needs(
            "rollout-undo-needs-human",
            "rolling a Deployment back replaces every pod with the previous revision's; a human decides the new one is the fault",
        ),
        Kind::RetriggerJob(_) => needs(
            "retrigger-needs-human",
            "running a Job again repeats whatever it does (a migration, a payment run, a mail-out); a human decides it is safe to repeat",
        ),
        Kind::ResumeCronJob(_) => needs(
            "resume-needs-human",
            "a CronJob is suspended on purpose more often than not; a human resumes it",
        ),
        Kind::ForceDeletePod(_) => needs(
            "force-delete-needs-human",
            "a force delete skips the kubelet's confirmation that the containers stopped; a human approves",
        ),
        Kind::DeleteFailedPods(delete) => {
            if !(1..=MAX_FAILED_PODS).contains(&delete.max_pods) {
                return Err(Review::denied(
                    "parameter-out-of-bounds",
                    format!("max_pods {} outside 1..={MAX_FAILED_PODS}", delete.max_pods),
                ));
            }
            // The remediator deletes only pods in phase Failed whose
            // controller is the target: they no longer run, and their
            // controller has replaced them.
            auto(
                "auto-delete-failed-pods",
                "deleting a workload's failed pods, a capped number per call, is auto-approved",
            )
        }
        Kind::ReportOnly(_) => Err(Review::denied(
            "report-only",
            "nothing to execute: reported to humans only",
        )),
    }
}

/// Disruption cap and PodDisruptionBudgets for actions that take down a
/// serving replica.
pub(super) fn disruption(
    kind: &Kind,
    context: &nanny_proto::v1::ReviewContext,
    limits: &nanny_proto::v1::GateLimits,
    gate: &Gate,
    review: &mut Review,
) {
    let crash_looping = context
        .target_issue_kinds
        .contains(&(IssueKind::CrashLoopBackOff as i32));
    match kind {
        // Restarting a pod that is already down takes nothing away.
        Kind::RestartPod(_) if !crash_looping => {
            let percent = if limits.max_disruption_percent == 0 {
                gate.config.limits.max_disruption_percent
            } else {
                limits.max_disruption_percent
            };
            let after = i64::from(context.workload_unavailable) + 1;
            if context.workload_replicas <= 0
                || after * 100 > i64::from(context.workload_replicas) * i64::from(percent)
            {
                review.tighten(
                    Level::Denied,
                    "disruption-cap",
                    format!(
                        "{after} of {} replicas would be down (cap {percent}%)",
                        context.workload_replicas
                    ),
                );
            }
            if context.pdb_disruptions_allowed == Some(0) {
                review.tighten(
                    Level::Denied,
                    "pdb-blocks",
                    "the PodDisruptionBudget allows no disruption",
                );
            }
        }
        _ => {}
    }
}
