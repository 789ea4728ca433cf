//! Validation of an Execute request before anything touches the cluster:
//! the verdict, the action's parameters and the target's kind and scope.

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, StatefulSet},
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::{CronJob, Job},
    core::v1::{Node, PersistentVolumeClaim, Pod},
};
use kube::api::ApiResource;
use nanny_proto::v1::{
    ActionType, Decision, ExecuteRequest, ObjectRef, Resources, RollbackRequest,
    action::Kind as ActionKind,
};
use nanny_proto::vocabulary::{self, Targets};

use crate::{config::Config, error::Error};

/// The kinds of object the remediator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// core/v1 Pod.
    Pod,
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// autoscaling/v2 HorizontalPodAutoscaler.
    Hpa,
    /// core/v1 Node (cluster-scoped).
    Node,
    /// core/v1 PersistentVolumeClaim.
    Pvc,
    /// batch/v1 Job.
    Job,
    /// batch/v1 CronJob.
    CronJob,
}

impl TargetKind {
    /// The kind named in an ObjectRef.
    pub fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            "Pod" => Self::Pod,
            "Deployment" => Self::Deployment,
            "StatefulSet" => Self::StatefulSet,
            "DaemonSet" => Self::DaemonSet,
            "HorizontalPodAutoscaler" => Self::Hpa,
            "Node" => Self::Node,
            "PersistentVolumeClaim" => Self::Pvc,
            "Job" => Self::Job,
            "CronJob" => Self::CronJob,
            _ => return None,
        })
    }

    /// The API resource, for dynamic clients.
    pub fn resource(self) -> ApiResource {
        match self {
            Self::Pod => ApiResource::erase::<Pod>(&()),
            Self::Deployment => ApiResource::erase::<Deployment>(&()),
            Self::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            Self::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
            Self::Hpa => ApiResource::erase::<HorizontalPodAutoscaler>(&()),
            Self::Node => ApiResource::erase::<Node>(&()),
            Self::Pvc => ApiResource::erase::<PersistentVolumeClaim>(&()),
            Self::Job => ApiResource::erase::<Job>(&()),
            Self::CronJob => ApiResource::erase::<CronJob>(&()),
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        self != Self::Node
    }

    /// apiVersions an ObjectRef may name for this kind ("" is always accepted).
    fn api_versions(self) -> &'static [&'static str] {
        match self {
            Self::Pod | Self::Node | Self::Pvc => &["v1"],
            Self::Deployment | Self::StatefulSet | Self::DaemonSet => &["apps/v1"],
            Self::Hpa => &["autoscaling/v2", "autoscaling/v1"],
            Self::Job | Self::CronJob => &["batch/v1"],
        }
    }
}

/// `Kind namespace/name` (or `Kind name` for cluster-scoped objects), for messages.
pub fn describe(target: &ObjectRef) -> String {
    if target.namespace.is_empty() {
        format!("{} {}", target.kind, target.name)
    } else {
        format!("{} {}/{}", target.kind, target.namespace, target.name)
    }
}

/// A request that passed validation.
#[derive(Debug, Clone)]
pub struct Validated {
    /// Idempotency key.
    pub action_id: String,
    /// The recommendation id the verdict approved.
    pub recommendation_id: String,
    /// The action and its parameters.
    pub action: ActionKind,
    /// The action's type, for metrics and records.
    pub action_type: ActionType,
    /// The target as the snapshot saw it.
    pub target: ObjectRef,
    /// The target's kind.
    pub kind: TargetKind,
    /// Only show what would change.
    pub dry_run: bool,
    /// How long to watch the target after acting.
    pub verification_window: Duration,
    /// RestartPod may delete a pod no controller owns (from the signed verdict).
    pub allow_bare_pod_restart: bool,
    /// A human approved the action (from the signed verdict).
    pub human_approved: bool,
}

pub use nanny_proto::vocabulary::action_type;

/// A metric label for an action type: `restart_pod`, `scale_hpa`, ….
pub fn action_label(action: ActionType) -> &'static str {
    vocabulary::of_type(action).label
}

/// Action ids become part of an object name (the action record).
pub fn validate_action_id(action_id: &str) -> Result<(), Error> {
    let valid_chars = action_id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let starts_ends = action_id
        .chars()
        .next()
        .zip(action_id.chars().last())
        .is_some_and(|(a, b)| a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric());
    if action_id.is_empty() || action_id.len() > 200 || !valid_chars || !starts_ends {
        return Err(Error::invalid(
            "action_id",
            format!(
                "{action_id:?} must be 1-200 lowercase letters, digits, '-' or '.', starting and ending alphanumeric (a HealingAction name)"
            ),
        ));
    }
    Ok(())
}

/// Checks everything that can be checked without the cluster.
///
/// # Errors
/// [`Error::InvalidRequest`] or [`Error::Unsupported`] for malformed requests,
/// [`Error::NotApproved`] when the verdict does not approve exactly this
/// recommendation.
#[expect(
    clippy::too_many_lines,
    reason = "every field of the request checked in order; the first refusal wins"
)]
pub fn validate(request: &ExecuteRequest, config: &Config) -> Result<Validated, Error> {
    validate_action_id(&request.action_id)?;
    let recommendation = request
        .recommendation
        .as_ref()
        .ok_or_else(|| Error::invalid("recommendation", "is missing"))?;
    if recommendation.id.is_empty() {
        return Err(Error::invalid("recommendation.id", "is empty"));
    }
    // Free text nothing here acts on, bounded as a HealingAction bounds it:
    // a larger one did not come through the coordinator.
    if recommendation.reason.len() > MAX_REASON_BYTES {
        return Err(Error::invalid(
            "recommendation.reason",
            format!(
                "{} bytes; at most {MAX_REASON_BYTES}",
                recommendation.reason.len()
            ),
        ));
    }
    let action = recommendation
        .action
        .as_ref()
        .and_then(|a| a.kind.clone())
        .ok_or_else(|| {
            Error::invalid(
                "recommendation.action",
                "has no action set (or one this version does not know)",
            )
        })?;
    let target = recommendation
        .target
        .clone()
        .ok_or_else(|| Error::invalid("recommendation.target", "is missing"))?;

    // Defence in depth: the gate's verdict must approve exactly this
    // recommendation, and a dry-run-only verdict only a dry run.
    let verdict = request
        .verdict
        .as_ref()
        .ok_or_else(|| Error::NotApproved("the request carries no verdict".to_owned()))?;
    if verdict.recommendation_id != recommendation.id {
        return Err(Error::NotApproved(format!(
            "the verdict is for recommendation {:?}, not {:?}",
            verdict.recommendation_id, recommendation.id
        )));
    }
    match Decision::try_from(verdict.decision) {
        Ok(Decision::Approved) => {}
        Ok(Decision::DryRunOnly) if request.dry_run => {}
        Ok(Decision::DryRunOnly) => {
            return Err(Error::NotApproved(
                "the verdict allows a dry run only".to_owned(),
            ));
        }
        Ok(other) => {
            return Err(Error::NotApproved(format!(
                "the verdict is {}, not APPROVED",
                other.as_str_name()
            )));
        }
        Err(_) => {
            return Err(Error::NotApproved(format!(
                "the verdict has an unknown decision {}",
                verdict.decision
            )));
        }
    }

    let kind = validate_target(&action, &target)?;
    validate_parameters(&action)?;

    let requested = u64::try_from(request.verification_timeout_seconds).map_err(|_| {
        Error::invalid(
            "verification_timeout_seconds",
            format!("{} is negative", request.verification_timeout_seconds),
        )
    })?;
    let seconds = if requested == 0 {
        config.verification.default_window_secs
    } else {
        requested.min(config.verification.max_window_secs)
    };
    Ok(Validated {
        action_id: request.action_id.clone(),
        recommendation_id: recommendation.id.clone(),
        action_type: action_type(&action),
        action,
        target,
        kind,
        dry_run: request.dry_run,
        verification_window: Duration::from_secs(seconds),
        // From the gate's signed verdict, never from the caller.
        allow_bare_pod_restart: verdict.allow_bare_pod_restart,
        human_approved: verdict.human_approved,
    })
}

/// Checks that the request's verdict is the safety gate's, signed over
/// exactly this recommendation, and not expired.
///
/// # Errors
/// [`Error::Unsigned`] saying why not.
pub fn check_signature(
    request: &ExecuteRequest,
    verifier: &nanny_common::verdict::Verifier,
    now: std::time::SystemTime,
) -> Result<(), Error> {
    let (Some(recommendation), Some(verdict)) = (&request.recommendation, &request.verdict) else {
        return Err(Error::Unsigned(
            nanny_common::verdict::VerdictError::Unsigned.to_string(),
        ));
    };
    verifier
        .verify(recommendation, verdict, now)
        .map_err(|e| Error::Unsigned(e.to_string()))
}

/// Checks that a Rollback carries an APPROVED verdict the gate signed for
/// exactly this action id and target.
///
/// # Errors
/// [`Error::Unsigned`] (`PERMISSION_DENIED`) naming what is wrong.
pub fn check_rollback_signature(
    request: &RollbackRequest,
    verifier: &nanny_common::verdict::Verifier,
    now: std::time::SystemTime,
) -> Result<(), Error> {
    let (Some(target), Some(verdict)) = (&request.target, &request.verdict) else {
        return Err(Error::Unsigned(
            "a rollback needs the target and the safety gate's signed rollback verdict".to_owned(),
        ));
    };
    verifier
        .verify_rollback(&request.action_id, target, verdict, now)
        .map_err(|e| Error::Unsigned(e.to_string()))?;
    if verdict.decision != Decision::Approved as i32 {
        return Err(Error::Unsigned(
            "the rollback verdict does not approve the rollback".to_owned(),
        ));
    }
    Ok(())
}

/// Checks that the target names an object of a kind the action applies to.
///
/// # Errors
/// [`Error::InvalidRequest`] naming the field.
pub fn validate_target(action: &ActionKind, target: &ObjectRef) -> Result<TargetKind, Error> {
    let info = vocabulary::of(action);
    // What the remediator does not execute has no target to check.
    let (Targets::Kinds(allowed), true) = (info.targets, info.executable) else {
        return Err(Error::Unsupported {
            action: info.action_type.as_str_name(),
        });
    };
    let kind = TargetKind::parse(&target.kind)
        .filter(|_| allowed.contains(&target.kind.as_str()))
        .ok_or_else(|| {
            Error::invalid(
                "recommendation.target.kind",
                format!(
                    "{} cannot act on kind {:?} (expected one of {:?})",
                    action_type(action).as_str_name(),
                    target.kind,
                    allowed
                ),
            )
        })?;
    if !target.api_version.is_empty() && !kind.api_versions().contains(&target.api_version.as_str())
    {
        return Err(Error::invalid(
            "recommendation.target.api_version",
            format!(
                "{:?} is not an apiVersion of {}",
                target.api_version, target.kind
            ),
        ));
    }
    if target.name.is_empty() {
        return Err(Error::invalid("recommendation.target.name", "is empty"));
    }
    if let Some(reason) = nanny_common::names::refusal(&target.namespace, &target.name) {
        return Err(Error::invalid("recommendation.target", reason));
    }
    if kind.namespaced() == target.namespace.is_empty() {
        return Err(Error::invalid(
            "recommendation.target.namespace",
            if kind.namespaced() {
                format!("is empty, but {} is namespaced", target.kind)
            } else {
                format!("must be empty: {} is cluster-scoped", target.kind)
            },
        ));
    }
    // The uid pins the exact object the snapshot saw; without it a replaced
    // object could be acted on.
    if target.uid.is_empty() {
        return Err(Error::invalid(
            "recommendation.target.uid",
            "is empty: the snapshot's uid is required",
        ));
    }
    if target.resource_version.is_empty() {
        return Err(Error::invalid(
            "recommendation.target.resource_version",
            "is empty: the snapshot's resourceVersion is required",
        ));
    }
    Ok(kind)
}

/// The longest recommendation reason accepted (a HealingAction's
/// `spec.reasoning` limit).
pub const MAX_REASON_BYTES: usize = 8192;

/// The remediator's own ceilings, whatever a verdict allows: far above any
/// policy's, they stop a forged or broken parameter from doing harm.
pub const HARD_MAX_REPLICAS: i32 = 1000;
/// 64 TiB.
pub const HARD_MAX_STORAGE_BYTES: i64 = 64 << 40;
/// 4 MiB to 1 TiB: a container starved to a byte is as broken as one given
/// a node's worth.
pub const HARD_MEMORY_BYTES: std::ops::RangeInclusive<i64> = (4 << 20)..=(1 << 40);
/// Most failed pods one DeleteFailedPods may delete.
pub const HARD_FAILED_PODS: u32 = 100;
/// 1m to 256 cores.
pub const HARD_CPU_MILLICORES: std::ops::RangeInclusive<i64> = 1..=256_000;

#[expect(
    clippy::too_many_lines,
    reason = "one arm per action type with its hard ceilings"
)]
fn validate_parameters(action: &ActionKind) -> Result<(), Error> {
    match action {
        ActionKind::ScaleHpa(scale) => {
            if !(1..=HARD_MAX_REPLICAS).contains(&scale.max_replicas) {
                return Err(Error::invalid(
                    "recommendation.action.scale_hpa.max_replicas",
                    format!(
                        "{} is not between 1 and the remediator's hard maximum {HARD_MAX_REPLICAS}",
                        scale.max_replicas
                    ),
                ));
            }
            if let Some(min) = scale.min_replicas
                && !(1..=scale.max_replicas).contains(&min)
            {
                return Err(Error::invalid(
                    "recommendation.action.scale_hpa.min_replicas",
                    format!(
                        "{min} is not between 1 and max_replicas {}",
                        scale.max_replicas
                    ),
                ));
            }
        }
        ActionKind::DrainNode(drain) => {
            if drain.timeout_seconds <= 0 || drain.timeout_seconds > 3600 {
                return Err(Error::invalid(
                    "recommendation.action.drain_node.timeout_seconds",
                    format!("{} is not between 1 and 3600", drain.timeout_seconds),
                ));
            }
            if drain.grace_period_seconds < 0 {
                return Err(Error::invalid(
                    "recommendation.action.drain_node.grace_period_seconds",
                    format!("{} is negative", drain.grace_period_seconds),
                ));
            }
        }
        ActionKind::ExpandPvc(expand)
            if !(1..=HARD_MAX_STORAGE_BYTES).contains(&expand.new_size_bytes) =>
        {
            return Err(Error::invalid(
                "recommendation.action.expand_pvc.new_size_bytes",
                format!(
                    "{} is not between 1 and the remediator's hard maximum {HARD_MAX_STORAGE_BYTES}",
                    expand.new_size_bytes
                ),
            ));
        }
        ActionKind::PatchResources(patch) => {
            if patch.container.is_empty() {
                return Err(Error::invalid(
                    "recommendation.action.patch_resources.container",
                    "is empty",
                ));
            }
            let set = |r: &Option<Resources>| {
                r.as_ref()
                    .is_some_and(|r| r.cpu_millicores.is_some() || r.memory_bytes.is_some())
            };
            if !set(&patch.requests) && !set(&patch.limits) {
                return Err(Error::invalid(
                    "recommendation.action.patch_resources",
                    "sets neither requests nor limits",
                ));
            }
            let requests = patch.requests.unwrap_or_default();
            let limits = patch.limits.unwrap_or_default();
            if let (Some(r), Some(l)) = (requests.memory_bytes, limits.memory_bytes)
                && r > l
            {
                return Err(Error::invalid(
                    "recommendation.action.patch_resources.requests.memory_bytes",
                    format!("{r} exceeds the memory limit {l}"),
                ));
            }
            if let (Some(r), Some(l)) = (requests.cpu_millicores, limits.cpu_millicores)
                && r > l
            {
                return Err(Error::invalid(
                    "recommendation.action.patch_resources.requests.cpu_millicores",
                    format!("{r} exceeds the CPU limit {l}"),
                ));
            }
            for (field, value, range) in [
                (
                    "recommendation.action.patch_resources.requests.cpu_millicores",
                    patch.requests.as_ref().and_then(|r| r.cpu_millicores),
                    HARD_CPU_MILLICORES,
                ),
                (
                    "recommendation.action.patch_resources.requests.memory_bytes",
                    patch.requests.as_ref().and_then(|r| r.memory_bytes),
                    HARD_MEMORY_BYTES,
                ),
                (
                    "recommendation.action.patch_resources.limits.cpu_millicores",
                    patch.limits.as_ref().and_then(|r| r.cpu_millicores),
                    HARD_CPU_MILLICORES,
                ),
                (
                    "recommendation.action.patch_resources.limits.memory_bytes",
                    patch.limits.as_ref().and_then(|r| r.memory_bytes),
                    HARD_MEMORY_BYTES,
                ),
            ] {
                if let Some(value) = value
                    && !range.contains(&value)
                {
                    return Err(Error::invalid(
                        field,
                        format!(
                            "{value} is outside the remediator's hard bounds {}..={}",
                            range.start(),
                            range.end()
                        ),
                    ));
                }
            }
        }
        ActionKind::DeleteJob(job) if job.min_age_seconds < 0 => {
            return Err(Error::invalid(
                "recommendation.action.delete_job.min_age_seconds",
                format!("{} is negative", job.min_age_seconds),
            ));
        }
        ActionKind::DeleteFailedPods(delete)
            if !(1..=HARD_FAILED_PODS).contains(&delete.max_pods) =>
        {
            return Err(Error::invalid(
                "recommendation.action.delete_failed_pods.max_pods",
                format!(
                    "{} is outside the remediator's hard bounds 1..={HARD_FAILED_PODS}",
                    delete.max_pods
                ),
            ));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use nanny_proto::v1::{
        Action, CordonNode, DeleteResource, PatchResources, Recommendation, RestartPod, ScaleHpa,
        Verdict,
    };

    use super::*;

    fn request(action: ActionKind, target: ObjectRef, decision: Decision) -> ExecuteRequest {
        ExecuteRequest {
            action_id: "act-1".into(),
            recommendation: Some(Recommendation {
                id: "rec-1".into(),
                action: Some(Action { kind: Some(action) }),
                target: Some(target),
                ..Recommendation::default()
            }),
            verdict: Some(Verdict {
                recommendation_id: "rec-1".into(),
                decision: decision as i32,
                ..Verdict::default()
            }),
            ..ExecuteRequest::default()
        }
    }

    fn pod() -> ObjectRef {
        ObjectRef {
            kind: "Pod".into(),
            namespace: "shop".into(),
            name: "web-1".into(),
            uid: "u1".into(),
            resource_version: "42".into(),
            ..ObjectRef::default()
        }
    }

    fn restart() -> ActionKind {
        ActionKind::RestartPod(RestartPod {})
    }

    #[test]
    fn approved_request_passes_with_the_default_window() {
        let config = Config::default();
        let v = validate(&request(restart(), pod(), Decision::Approved), &config).unwrap();
        assert_eq!(v.kind, TargetKind::Pod);
        assert_eq!(
            v.verification_window,
            Duration::from_secs(config.verification.default_window_secs)
        );
    }

    #[test]
    fn window_is_capped() {
        let config = Config::default();
        let mut r = request(restart(), pod(), Decision::Approved);
        r.verification_timeout_seconds = 1_000_000;
        let v = validate(&r, &config).unwrap();
        assert_eq!(
            v.verification_window.as_secs(),
            config.verification.max_window_secs
        );
        r.verification_timeout_seconds = -1;
        assert!(matches!(
            validate(&r, &config),
            Err(Error::InvalidRequest {
                field: "verification_timeout_seconds",
                ..
            })
        ));
    }

    #[test]
    fn verdicts_other_than_approved_are_refused() {
        let config = Config::default();
        for decision in [
            Decision::Unspecified,
            Decision::NeedsApproval,
            Decision::Denied,
            Decision::DryRunOnly,
        ] {
            let err = validate(&request(restart(), pod(), decision), &config).unwrap_err();
            assert!(err.is_refusal(), "{decision:?}: {err}");
        }
        let mut dry = request(restart(), pod(), Decision::DryRunOnly);
        dry.dry_run = true;
        assert!(validate(&dry, &config).is_ok());
    }

    #[test]
    fn a_verdict_for_another_recommendation_is_refused() {
        let mut r = request(restart(), pod(), Decision::Approved);
        r.verdict.as_mut().unwrap().recommendation_id = "rec-2".into();
        let err = validate(&r, &Config::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"refused: the verdict is for recommendation "rec-2", not "rec-1""#
        );
        r.verdict = None;
        assert!(validate(&r, &Config::default()).unwrap_err().is_refusal());
    }

    #[test]
    fn targets_must_fit_the_action_and_be_pinned() {
        let config = Config::default();
        let err = validate(
            &request(
                ActionKind::CordonNode(CordonNode {}),
                pod(),
                Decision::Approved,
            ),
            &config,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("recommendation.target.kind"),
            "{err}"
        );

        let mut node = pod();
        node.kind = "Node".into();
        let err = validate(
            &request(
                ActionKind::CordonNode(CordonNode {}),
                node,
                Decision::Approved,
            ),
            &config,
        )
        .unwrap_err();
        assert!(err.to_string().contains("cluster-scoped"), "{err}");

        let mut unpinned = pod();
        unpinned.uid.clear();
        let err = validate(&request(restart(), unpinned, Decision::Approved), &config).unwrap_err();
        assert!(
            err.to_string().contains("recommendation.target.uid"),
            "{err}"
        );

        let mut wrong_version = pod();
        wrong_version.api_version = "apps/v1".into();
        assert!(
            validate(
                &request(restart(), wrong_version, Decision::Approved),
                &config
            )
            .is_err()
        );
    }

    #[test]
    fn delete_resource_is_never_executed() {
        let err = validate(
            &request(
                ActionKind::DeleteResource(DeleteResource {}),
                pod(),
                Decision::Approved,
            ),
            &Config::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }));
    }

    #[test]
    fn parameters_are_checked() {
        let mut hpa = pod();
        hpa.kind = "HorizontalPodAutoscaler".into();
        let scale = |min, max| {
            ActionKind::ScaleHpa(ScaleHpa {
                min_replicas: min,
                max_replicas: max,
            })
        };
        let config = Config::default();
        assert!(
            validate(
                &request(scale(Some(2), 5), hpa.clone(), Decision::Approved),
                &config
            )
            .is_ok()
        );
        assert!(
            validate(
                &request(scale(None, 0), hpa.clone(), Decision::Approved),
                &config
            )
            .is_err()
        );
        assert!(
            validate(
                &request(scale(Some(6), 5), hpa, Decision::Approved),
                &config
            )
            .is_err()
        );

        let mut deployment = pod();
        deployment.kind = "Deployment".into();
        let patch = |requests: Resources, limits: Resources| {
            ActionKind::PatchResources(PatchResources {
                container: "app".into(),
                requests: Some(requests),
                limits: Some(limits),
            })
        };
        let mem = |m| Resources {
            memory_bytes: Some(m),
            ..Resources::default()
        };
        let err = validate(
            &request(
                patch(mem(512), mem(256)),
                deployment.clone(),
                Decision::Approved,
            ),
            &config,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("exceeds the memory limit"),
            "{err}"
        );
        assert!(
            validate(
                &request(
                    patch(Resources::default(), Resources::default()),
                    deployment.clone(),
                    Decision::Approved
                ),
                &config
            )
            .is_err()
        );
        assert!(
            validate(
                // Within the remediator's hard bounds (4 MiB and up).
                &request(
                    patch(mem(256 << 20), mem(512 << 20)),
                    deployment,
                    Decision::Approved
                ),
                &config
            )
            .is_ok()
        );
    }

    #[test]
    fn action_ids_are_object_name_safe() {
        assert!(validate_action_id("ha-web-1.x").is_ok());
        for bad in ["", "UPPER", "a/b", "-a", "a-", &"a".repeat(201)] {
            assert!(validate_action_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels_are_snake_case() {
        assert_eq!(action_label(ActionType::ScaleHpa), "scale_hpa");
    }

    #[test]
    fn parameters_beyond_the_hard_bounds_are_refused_whatever_the_verdict() {
        let config = Config::default();
        let hpa = ObjectRef {
            kind: "HorizontalPodAutoscaler".into(),
            ..pod()
        };
        let scale = ActionKind::ScaleHpa(ScaleHpa {
            min_replicas: None,
            max_replicas: i32::MAX,
        });
        let err = validate(&request(scale, hpa, Decision::Approved), &config).unwrap_err();
        assert!(err.to_string().contains("hard maximum"), "{err}");
        let deployment = ObjectRef {
            kind: "Deployment".into(),
            ..pod()
        };
        // A memory limit of one byte: as broken as a node's worth.
        let starve = ActionKind::PatchResources(PatchResources {
            container: "app".into(),
            limits: Some(Resources {
                memory_bytes: Some(1),
                ..Resources::default()
            }),
            ..PatchResources::default()
        });
        let err = validate(&request(starve, deployment, Decision::Approved), &config).unwrap_err();
        assert!(err.to_string().contains("hard bounds"), "{err}");
    }
}
