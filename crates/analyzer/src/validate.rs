//! The last check before anything leaves the analyzer: every recommendation,
//! from a rule or a model, must name an object of the snapshot exactly (uid,
//! kind, name, resourceVersion), carry an action that applies to that kind of
//! object, and keep its parameters within the configured bounds. Anything
//! else is dropped and counted by reason — never passed on.

use std::time::SystemTime;

use nanny_proto::{
    v1::{self as pb, Recommendation, action::Kind},
    vocabulary::MAX_PLAN_STEPS,
};
use prometheus::{IntCounterVec, Opts, Registry};

use crate::{config::RulesConfig, index::SnapshotIndex};

/// Why a recommendation was dropped. The label values are a fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// No action, or an action arm this build does not know.
    #[error("no known action")]
    NoAction,
    /// An action the analyzer never proposes (deleting arbitrary objects).
    #[error("action not allowed")]
    ActionNotAllowed,
    /// No source (rule id or model).
    #[error("no source")]
    NoSource,
    /// No target, or a target without uid.
    #[error("no target")]
    NoTarget,
    /// The target uid is not an object of the snapshot.
    #[error("target not in snapshot")]
    TargetNotInSnapshot,
    /// The uid exists but kind, namespace, name or resourceVersion differ.
    #[error("target does not match the snapshot")]
    TargetMismatch,
    /// The action does not apply to that kind of object.
    #[error("action does not apply to the target kind")]
    WrongTargetKind,
    /// A parameter outside its bounds.
    #[error("parameter out of bounds")]
    OutOfBounds,
    /// Confidence above 100.
    #[error("confidence out of range")]
    BadConfidence,
    /// No issue fingerprint, or one the snapshot does not hold.
    #[error("unknown issue")]
    UnknownIssue,
    /// A plan of 1 or more than [`MAX_PLAN_STEPS`] steps, one whose first
    /// step is not the recommendation's action, or one with a report or an
    /// empty step.
    #[error("not a valid plan")]
    BadPlan,
}

impl Invalid {
    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoAction => "no_action",
            Self::ActionNotAllowed => "action_not_allowed",
            Self::NoSource => "no_source",
            Self::NoTarget => "no_target",
            Self::TargetNotInSnapshot => "target_not_in_snapshot",
            Self::TargetMismatch => "target_mismatch",
            Self::WrongTargetKind => "wrong_target_kind",
            Self::OutOfBounds => "out_of_bounds",
            Self::BadConfidence => "bad_confidence",
            Self::UnknownIssue => "unknown_issue",
            Self::BadPlan => "bad_plan",
        }
    }
}

/// Parameter bounds, taken from the rules' ceilings.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// Highest memory limit or request, bytes.
    pub max_memory_bytes: i64,
    /// Highest HPA maxReplicas.
    pub max_replicas: i32,
    /// Largest PVC size, bytes.
    pub max_storage_bytes: i64,
    /// Youngest finished Job that may be deleted, seconds.
    pub min_job_age_secs: i64,
}

impl From<&RulesConfig> for Bounds {
    fn from(config: &RulesConfig) -> Self {
        Self {
            max_memory_bytes: config.oom.max_memory_bytes,
            max_replicas: config.hpa.max_replicas,
            max_storage_bytes: config.pvc.max_storage_bytes,
            min_job_age_secs: i64::try_from(config.stale_job.min_age_secs).unwrap_or(i64::MAX),
        }
    }
}

const ROLLABLE: &[&str] = &["Deployment", "StatefulSet", "DaemonSet"];
const MAX_EXPLANATION: usize = 2000;
const MAX_DRAIN_TIMEOUT_SECS: i64 = 3600;
/// Most failed pods one DeleteFailedPods deletes.
pub const MAX_FAILED_PODS: u32 = 100;

/// Checks one recommendation against the snapshot it claims to be about;
/// a plan's every step as its action.
///
/// # Errors
/// The first [`Invalid`] reason found.
pub fn validate(
    recommendation: &Recommendation,
    index: &SnapshotIndex<'_>,
    bounds: &Bounds,
    now: SystemTime,
) -> Result<(), Invalid> {
    let kind = recommendation
        .action
        .as_ref()
        .and_then(|a| a.kind.as_ref())
        .ok_or(Invalid::NoAction)?;
    if recommendation
        .source
        .as_ref()
        .and_then(|s| s.kind.as_ref())
        .is_none()
    {
        return Err(Invalid::NoSource);
    }
    if recommendation.confidence > 100 {
        return Err(Invalid::BadConfidence);
    }
    if recommendation.issue_fingerprints.is_empty()
        || recommendation
            .issue_fingerprints
            .iter()
            .any(|f| !index.issues.contains_key(f.as_str()))
    {
        return Err(Invalid::UnknownIssue);
    }
    let target = recommendation
        .target
        .as_ref()
        .filter(|t| !t.uid.is_empty())
        .ok_or(Invalid::NoTarget)?;
    let uid = target.uid.as_str();
    let observed = index.object(uid).ok_or(Invalid::TargetNotInSnapshot)?;
    if observed != target {
        return Err(Invalid::TargetMismatch);
    }
    check_action(kind, uid, index, bounds, now)?;
    let plan = &recommendation.plan;
    if plan.is_empty() {
        return Ok(());
    }
    let most = usize::try_from(MAX_PLAN_STEPS).unwrap_or(usize::MAX);
    if !(2..=most).contains(&plan.len()) || plan[0].kind.as_ref() != Some(kind) {
        return Err(Invalid::BadPlan);
    }
    for step in plan {
        match step.kind.as_ref() {
            None | Some(Kind::ReportOnly(_)) => return Err(Invalid::BadPlan),
            Some(step) => check_action(step, uid, index, bounds, now)?,
        }
    }
    Ok(())
}

/// Checks that action `kind` applies to the snapshot's object `uid` with
/// parameters within `bounds`.
#[expect(
    clippy::too_many_lines,
    reason = "one arm per action type, each checking its target kind and parameters"
)]
fn check_action(
    kind: &Kind,
    uid: &str,
    index: &SnapshotIndex<'_>,
    bounds: &Bounds,
    now: SystemTime,
) -> Result<(), Invalid> {
    let bounded = |ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(Invalid::OutOfBounds)
        }
    };
    match kind {
        Kind::RestartPod(_) | Kind::ForceDeletePod(_) => index
            .pods
            .get(uid)
            .map(|_| ())
            .ok_or(Invalid::WrongTargetKind),
        Kind::RolloutRestart(_) => rollable(index, uid).map(|_| ()),
        Kind::PatchResources(patch) => {
            let workload = rollable(index, uid)?;
            check_patch(patch, workload, bounds)
        }
        Kind::ScaleHpa(scale) => {
            let hpa = index.hpas.get(uid).ok_or(Invalid::WrongTargetKind)?;
            let min = scale.min_replicas.unwrap_or(hpa.min_replicas.max(1));
            bounded(
                scale.max_replicas > 0
                    && scale.max_replicas <= bounds.max_replicas
                    && (1..=scale.max_replicas).contains(&min),
            )
        }
        Kind::CordonNode(_) | Kind::UncordonNode(_) => index
            .nodes
            .get(uid)
            .map(|_| ())
            .ok_or(Invalid::WrongTargetKind),
        Kind::DrainNode(drain) => {
            index.nodes.get(uid).ok_or(Invalid::WrongTargetKind)?;
            bounded(
                drain.grace_period_seconds >= 0
                    && (1..=MAX_DRAIN_TIMEOUT_SECS).contains(&drain.timeout_seconds),
            )
        }
        Kind::ExpandPvc(expand) => {
            let pvc = index.pvcs.get(uid).ok_or(Invalid::WrongTargetKind)?;
            let current = pvc.capacity_bytes.max(pvc.requested_bytes);
            bounded(
                expand.new_size_bytes > current
                    && expand.new_size_bytes <= bounds.max_storage_bytes,
            )
        }
        Kind::DeleteJob(delete) => {
            let job = index.jobs.get(uid).ok_or(Invalid::WrongTargetKind)?;
            let now = prost_types::Timestamp::from(now).seconds;
            let age = job.completion_time.as_ref().map(|t| now - t.seconds);
            bounded(
                delete.min_age_seconds >= bounds.min_job_age_secs
                    && job.active == 0
                    && age.is_some_and(|age| age >= delete.min_age_seconds),
            )
        }
        Kind::ResumeCronJob(_) => index
            .workloads
            .get(uid)
            .filter(|w| w.r#ref.as_ref().is_some_and(|r| r.kind == "CronJob"))
            .map(|_| ())
            .ok_or(Invalid::WrongTargetKind),
        Kind::RetriggerJob(_) => {
            // Only a Job that failed is run again.
            let job = index.jobs.get(uid).ok_or(Invalid::WrongTargetKind)?;
            bounded(
                job.conditions
                    .iter()
                    .any(|c| c.r#type == "Failed" && c.status == "True"),
            )
        }
        Kind::RolloutUndo(_) => index
            .workloads
            .get(uid)
            .filter(|w| w.r#ref.as_ref().is_some_and(|r| r.kind == "Deployment"))
            .map(|_| ())
            .ok_or(Invalid::WrongTargetKind),
        Kind::ScaleWorkload(scale) => {
            let workload = rollable(index, uid)?;
            let scalable = workload
                .r#ref
                .as_ref()
                .is_some_and(|r| nanny_proto::vocabulary::SCALABLE.contains(&r.kind.as_str()));
            if !scalable {
                return Err(Invalid::WrongTargetKind);
            }
            bounded(
                scale.replicas > workload.desired_replicas && scale.replicas <= bounds.max_replicas,
            )
        }
        Kind::DeleteFailedPods(delete) => {
            rollable(index, uid)?;
            bounded((1..=MAX_FAILED_PODS).contains(&delete.max_pods))
        }
        Kind::ReportOnly(report) => bounded(
            !report.explanation.trim().is_empty() && report.explanation.len() <= MAX_EXPLANATION,
        ),
        // A model may propose deleting a workload it can see. That is
        // well-formed, so it leaves the analyzer to be refused — and
        // audited — by the safety gate, which never approves deleting
        // StatefulSets; anything else (a namespace, a node, a pod) is not
        // even passed on.
        Kind::DeleteResource(_) => index
            .workloads
            .get(uid)
            .map(|_| ())
            .ok_or(Invalid::ActionNotAllowed),
    }
}

fn rollable<'a>(index: &SnapshotIndex<'a>, uid: &str) -> Result<&'a pb::Workload, Invalid> {
    index
        .workloads
        .get(uid)
        .copied()
        .filter(|w| {
            w.r#ref
                .as_ref()
                .is_some_and(|r| ROLLABLE.contains(&r.kind.as_str()))
        })
        .ok_or(Invalid::WrongTargetKind)
}

fn check_patch(
    patch: &pb::PatchResources,
    workload: &pb::Workload,
    bounds: &Bounds,
) -> Result<(), Invalid> {
    if !workload
        .containers
        .iter()
        .any(|c| c.name == patch.container)
    {
        return Err(Invalid::OutOfBounds);
    }
    let requests = patch.requests.unwrap_or_default();
    let limits = patch.limits.unwrap_or_default();
    let values = [
        requests.cpu_millicores,
        requests.memory_bytes,
        limits.cpu_millicores,
        limits.memory_bytes,
    ];
    let memory_ok = [requests.memory_bytes, limits.memory_bytes]
        .into_iter()
        .flatten()
        .all(|m| m <= bounds.max_memory_bytes);
    let ordered = |r: Option<i64>, l: Option<i64>| match (r, l) {
        (Some(r), Some(l)) => r <= l,
        _ => true,
    };
    let ok = values.iter().any(Option::is_some)
        && values.iter().flatten().all(|v| *v > 0)
        && memory_ok
        && ordered(requests.memory_bytes, limits.memory_bytes)
        && ordered(requests.cpu_millicores, limits.cpu_millicores);
    if ok {
        Ok(())
    } else {
        Err(Invalid::OutOfBounds)
    }
}

/// [`validate`] with `nanny_analyzer_invalid_recommendations_total{reason}`.
#[derive(Debug, Clone)]
pub struct Validator {
    invalid: IntCounterVec,
}

impl Validator {
    /// Registers the counter in `registry`.
    ///
    /// # Errors
    /// When the metric cannot be registered.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let invalid = IntCounterVec::new(
            Opts::new(
                "nanny_analyzer_invalid_recommendations_total",
                "Recommendations dropped before leaving the analyzer, by reason.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(invalid.clone()))?;
        Ok(Self { invalid })
    }

    /// Counts one dropped proposal under `reason` (a fixed label).
    pub fn count(&self, reason: &'static str) {
        self.invalid.with_label_values(&[reason]).inc();
    }

    /// Keeps the recommendations valid within `bounds`; logs and counts
    /// the others.
    pub fn retain(
        &self,
        recommendations: Vec<Recommendation>,
        index: &SnapshotIndex<'_>,
        bounds: &Bounds,
        now: SystemTime,
    ) -> Vec<Recommendation> {
        recommendations
            .into_iter()
            .filter(|r| self.check(r, index, bounds, now).is_ok())
            .collect()
    }

    /// [`validate`], logging and counting a failure.
    ///
    /// # Errors
    /// The [`Invalid`] reason.
    pub fn check(
        &self,
        recommendation: &Recommendation,
        index: &SnapshotIndex<'_>,
        bounds: &Bounds,
        now: SystemTime,
    ) -> Result<(), Invalid> {
        validate(recommendation, index, bounds, now).inspect_err(|reason| {
            self.invalid.with_label_values(&[reason.label()]).inc();
            tracing::warn!(
                %reason,
                recommendation_id = %recommendation.id,
                target_uid = recommendation.target.as_ref().map_or("", |t| t.uid.as_str()),
                "Dropped an invalid recommendation."
            );
        })
    }
}

#[cfg(test)]
mod tests;
