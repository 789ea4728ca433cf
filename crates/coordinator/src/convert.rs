//! Conversions between the HealingAction/HealingPolicy resources and the
//! gRPC contract.
//!
//! The recommendation sent to the gate and the remediator is always rebuilt
//! from the HealingAction, never taken from the analyzer's message: a
//! coordinator that resumes after a restart sends exactly what the first one
//! sent, so the remediator's idempotency check sees the same request.

use k8s_openapi::jiff::Timestamp;
pub use nanny_crd::proto::{analysis_settings, gate_policy};
use nanny_crd::{
    ActionParams, ActionSource, ActionSpec, ActionType, HealingActionSpec, Int, MAX_PLAN_STEPS,
    PARAMS, PlanStepRef, ResourceParams, SourceKind, TargetRef,
};
use nanny_proto::v1 as pb;
use pb::action::Kind;

use crate::error::Error;

/// The CRD spelling of an action arm.
pub fn action_type(kind: &Kind) -> ActionType {
    let wire = nanny_proto::vocabulary::action_type(kind);
    // Every arm's type has a CRD variant (the crd crate's vocabulary test).
    ActionType::from_proto(wire).unwrap_or(ActionType::ReportOnly)
}

fn int(value: impl Into<i64>) -> Option<Int> {
    Some(Int(value.into()))
}

fn resource_params(resources: Option<&pb::Resources>) -> Option<ResourceParams> {
    resources.map(|r| ResourceParams {
        cpu_millicores: r.cpu_millicores.and_then(int),
        memory_bytes: r.memory_bytes.and_then(int),
    })
}

/// The action's parameters as the CR writes them.
pub fn params(kind: &Kind) -> ActionParams {
    match kind {
        Kind::ScaleHpa(a) => ActionParams {
            max_replicas: int(a.max_replicas),
            min_replicas: a.min_replicas.and_then(int),
            ..ActionParams::default()
        },
        Kind::DrainNode(a) => ActionParams {
            grace_period_seconds: int(a.grace_period_seconds),
            timeout_seconds: int(a.timeout_seconds),
            ..ActionParams::default()
        },
        Kind::ExpandPvc(a) => ActionParams {
            new_size_bytes: int(a.new_size_bytes),
            ..ActionParams::default()
        },
        Kind::PatchResources(a) => ActionParams {
            container: Some(a.container.clone()),
            requests: resource_params(a.requests.as_ref()),
            limits: resource_params(a.limits.as_ref()),
            ..ActionParams::default()
        },
        Kind::DeleteJob(a) => ActionParams {
            min_age_seconds: int(a.min_age_seconds),
            ..ActionParams::default()
        },
        Kind::ReportOnly(a) => ActionParams {
            explanation: Some(a.explanation.clone()),
            ..ActionParams::default()
        },
        Kind::DeleteFailedPods(a) => ActionParams {
            max_pods: Some(Int(i64::from(a.max_pods))),
            ..ActionParams::default()
        },
        Kind::ScaleWorkload(a) => ActionParams {
            replicas: int(a.replicas),
            ..ActionParams::default()
        },
        Kind::RestartPod(_)
        | Kind::RolloutRestart(_)
        | Kind::CordonNode(_)
        | Kind::UncordonNode(_)
        | Kind::DeleteResource(_)
        | Kind::ForceDeletePod(_)
        | Kind::ResumeCronJob(_)
        | Kind::RolloutUndo(_)
        | Kind::RetriggerJob(_) => ActionParams::default(),
    }
}

/// Reads the CR's parameters back into the typed action. The CRD's rules
/// already refuse a parameter of another type or a missing one; this
/// checks again (defence in depth, and for objects the rules never saw),
/// and that each number fits.
///
/// # Errors
/// [`Error::Invalid`] naming the parameter.
pub fn action(spec: &ActionSpec) -> Result<Kind, Error> {
    let p = &spec.params;
    for name in p.written() {
        let belongs = PARAMS
            .iter()
            .any(|param| param.name == name && param.types.contains(&spec.type_));
        if !belongs {
            return Err(Error::invalid(
                format!("spec.action.params.{name}"),
                format!("is not a parameter of {}", spec.type_.name()),
            ));
        }
    }
    fn fits<T: TryFrom<i64>>(name: &str, value: Option<Int>) -> Result<Option<T>, Error> {
        value
            .map(|v| {
                T::try_from(v.0).map_err(|_| {
                    Error::invalid(
                        format!("spec.action.params.{name}"),
                        format!("{} is out of range", v.0),
                    )
                })
            })
            .transpose()
    }
    fn required<T>(name: &str, value: Option<T>) -> Result<T, Error> {
        value.ok_or_else(|| Error::invalid(format!("spec.action.params.{name}"), "is required"))
    }
    let resources = |prefix: &str, r: Option<ResourceParams>| {
        r.map(|r| {
            Ok::<_, Error>(pb::Resources {
                cpu_millicores: fits(&format!("{prefix}.cpuMillicores"), r.cpu_millicores)?,
                memory_bytes: fits(&format!("{prefix}.memoryBytes"), r.memory_bytes)?,
            })
        })
        .transpose()
    };
    Ok(match spec.type_ {
        ActionType::RestartPod => Kind::RestartPod(pb::RestartPod {}),
        ActionType::RolloutRestart => Kind::RolloutRestart(pb::RolloutRestart {}),
        ActionType::CordonNode => Kind::CordonNode(pb::CordonNode {}),
        ActionType::UncordonNode => Kind::UncordonNode(pb::UncordonNode {}),
        ActionType::DeleteResource => Kind::DeleteResource(pb::DeleteResource {}),
        ActionType::ForceDeletePod => Kind::ForceDeletePod(pb::ForceDeletePod {}),
        ActionType::ResumeCronJob => Kind::ResumeCronJob(pb::ResumeCronJob {}),
        ActionType::RolloutUndo => Kind::RolloutUndo(pb::RolloutUndo {}),
        ActionType::RetriggerJob => Kind::RetriggerJob(pb::RetriggerJob {}),
        ActionType::ScaleWorkload => Kind::ScaleWorkload(pb::ScaleWorkload {
            replicas: required("replicas", fits("replicas", p.replicas)?)?,
        }),
        ActionType::ScaleHpa => Kind::ScaleHpa(pb::ScaleHpa {
            max_replicas: required("maxReplicas", fits("maxReplicas", p.max_replicas)?)?,
            min_replicas: fits("minReplicas", p.min_replicas)?,
        }),
        ActionType::DrainNode => Kind::DrainNode(pb::DrainNode {
            grace_period_seconds: fits("gracePeriodSeconds", p.grace_period_seconds)?
                .unwrap_or_default(),
            timeout_seconds: fits("timeoutSeconds", p.timeout_seconds)?.unwrap_or_default(),
        }),
        ActionType::ExpandPvc => Kind::ExpandPvc(pb::ExpandPvc {
            new_size_bytes: required("newSizeBytes", fits("newSizeBytes", p.new_size_bytes)?)?,
        }),
        ActionType::PatchResources => Kind::PatchResources(pb::PatchResources {
            container: required("container", p.container.clone())?,
            requests: resources("requests", p.requests())?,
            limits: resources("limits", p.limits())?,
        }),
        ActionType::DeleteJob => Kind::DeleteJob(pb::DeleteJob {
            min_age_seconds: fits("minAgeSeconds", p.min_age_seconds)?.unwrap_or_default(),
        }),
        ActionType::ReportOnly => Kind::ReportOnly(pb::ReportOnly {
            explanation: p.explanation.clone().unwrap_or_default(),
        }),
        ActionType::DeleteFailedPods => Kind::DeleteFailedPods(pb::DeleteFailedPods {
            max_pods: required("maxPods", fits("maxPods", p.max_pods)?)?,
        }),
    })
}

fn severity_str(risk: i32) -> &'static str {
    match pb::Severity::try_from(risk) {
        Ok(pb::Severity::Info) => "Info",
        Ok(pb::Severity::Warning) => "Warning",
        Ok(pb::Severity::Critical) => "Critical",
        _ => "",
    }
}

fn severity(risk: &str) -> pb::Severity {
    match risk {
        "Info" => pb::Severity::Info,
        "Warning" => pb::Severity::Warning,
        "Critical" => pb::Severity::Critical,
        _ => pb::Severity::Unspecified,
    }
}

/// The HealingAction spec recording `rec` under `policy_ref`.
///
/// # Errors
/// [`Error::Invalid`] when the recommendation has no action or no target uid:
/// nothing is recorded that could not be acted on exactly.
pub fn spec_from_recommendation(
    policy_ref: &str,
    rec: &pb::Recommendation,
    workload_uid: Option<String>,
) -> Result<HealingActionSpec, Error> {
    let kind = rec
        .action
        .as_ref()
        .and_then(|a| a.kind.as_ref())
        .ok_or_else(|| Error::invalid("recommendation.action", "no action set"))?;
    let target = rec
        .target
        .as_ref()
        .filter(|t| !t.uid.is_empty() && !t.name.is_empty() && !t.kind.is_empty())
        .ok_or_else(|| {
            Error::invalid("recommendation.target", "kind, name and uid are required")
        })?;
    let source = match rec.source.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(pb::source::Kind::RuleId(rule)) => ActionSource {
            kind: SourceKind::Rule,
            name: rule.clone(),
            prompt_version: None,
            provider: None,
            digest: None,
        },
        Some(pb::source::Kind::Model(m)) => ActionSource {
            kind: SourceKind::Model,
            name: m.model.clone(),
            prompt_version: Some(m.prompt_version.clone()),
            provider: Some(m.provider.clone()),
            digest: (!m.digest.is_empty()).then(|| m.digest.clone()),
        },
        None => return Err(Error::invalid("recommendation.source", "no source set")),
    };
    let plan = plan_from_recommendation(rec, kind)?;
    Ok(HealingActionSpec {
        policy_ref: policy_ref.to_owned(),
        target: TargetRef {
            kind: target.kind.clone(),
            namespace: target.namespace.clone(),
            name: target.name.clone(),
            uid: target.uid.clone(),
            resource_version: target.resource_version.clone(),
        },
        action: ActionSpec {
            type_: action_type(kind),
            params: params(kind),
        },
        source,
        confidence: rec.confidence.min(100),
        // Within the CRD's bounds: a model's long explanation is cut, not
        // a reason to lose the action.
        reasoning: cut(&rec.reason, 8192),
        risk: severity_str(rec.risk).to_owned(),
        evidence: rec
            .evidence_refs
            .iter()
            .take(64)
            .map(|e| cut(e, 1024))
            .collect(),
        issue_fingerprints: rec
            .issue_fingerprints
            .iter()
            .take(64)
            .map(|f| cut(f, 256))
            .collect(),
        recommendation_id: rec.id.clone(),
        snapshot_id: rec.snapshot_id.clone(),
        workload_uid,
        issue_kind: None,
        calibration: None,
        plan,
        plan_step: None,
        approval: None,
    })
}

/// The steps of a recommended plan: none for a single action; else 2 to
/// [`MAX_PLAN_STEPS`] actions, the first being the recommendation's own,
/// none of them a report (a plan acts).
fn plan_from_recommendation(
    rec: &pb::Recommendation,
    first: &pb::action::Kind,
) -> Result<Vec<ActionSpec>, Error> {
    if rec.plan.is_empty() {
        return Ok(Vec::new());
    }
    if !(2..=MAX_PLAN_STEPS).contains(&rec.plan.len()) {
        return Err(Error::invalid(
            "recommendation.plan",
            format!("{} steps; a plan has 2 to {MAX_PLAN_STEPS}", rec.plan.len()),
        ));
    }
    rec.plan
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let field = format!("recommendation.plan[{i}]");
            let kind = step
                .kind
                .as_ref()
                .ok_or_else(|| Error::invalid(field.clone(), "no action set"))?;
            if i == 0 && kind != first {
                return Err(Error::invalid(
                    field.clone(),
                    "the first step is not the recommendation's action",
                ));
            }
            if matches!(kind, pb::action::Kind::ReportOnly(_)) {
                return Err(Error::invalid(
                    field.clone(),
                    "a report is not a step of a plan",
                ));
            }
            Ok(ActionSpec {
                type_: action_type(kind),
                params: params(kind),
            })
        })
        .collect()
}

/// The recommendation of step `step` (1-based) of the plan `spec` records:
/// the plan's own with that step's action, its own id (the plan's with
/// `.s<step>`), and which plan it belongs to.
///
/// # Errors
/// [`Error::Invalid`] when there is no such step or its parameters cannot
/// be read back.
pub fn step_recommendation(
    spec: &HealingActionSpec,
    created: Option<Timestamp>,
    step: usize,
) -> Result<pb::Recommendation, Error> {
    let action = spec
        .plan
        .get(step.wrapping_sub(1))
        .ok_or_else(|| Error::invalid("spec.plan", format!("no step {step}")))?;
    let mut step_spec = spec.clone();
    step_spec.action = action.clone();
    step_spec.recommendation_id = step_id(&spec.recommendation_id, step);
    step_spec.plan = Vec::new();
    step_spec.plan_step = Some(PlanStepRef {
        action: String::new(),
        recommendation_id: spec.recommendation_id.clone(),
        step: u32::try_from(step).unwrap_or(u32::MAX),
        steps: u32::try_from(spec.plan.len()).unwrap_or(u32::MAX),
    });
    let mut rec = recommendation(&step_spec, created)?;
    // The whole plan, for the gate to know what its later steps may be.
    rec.plan = spec
        .plan
        .iter()
        .map(|step| {
            Ok(pb::Action {
                kind: Some(self::action(step)?),
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(rec)
}

/// The recommendation id of a plan's step.
pub fn step_id(plan_id: &str, step: usize) -> String {
    format!("{plan_id}.s{step}")
}

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The API version of a target kind, as the remediator expects it.
fn api_version(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps/v1",
        "HorizontalPodAutoscaler" => "autoscaling/v2",
        "Job" | "CronJob" => "batch/v1",
        _ => "v1",
    }
}

/// The recommendation a HealingAction records, rebuilt exactly.
///
/// # Errors
/// [`Error::Invalid`] when the parameters cannot be read back.
pub fn recommendation(
    spec: &HealingActionSpec,
    created: Option<Timestamp>,
) -> Result<pb::Recommendation, Error> {
    let kind = action(&spec.action)?;
    let source = match spec.source.kind {
        SourceKind::Rule => pb::source::Kind::RuleId(spec.source.name.clone()),
        SourceKind::Model => pb::source::Kind::Model(pb::ModelSource {
            provider: spec.source.provider.clone().unwrap_or_default(),
            model: spec.source.name.clone(),
            digest: spec.source.digest.clone().unwrap_or_default(),
            prompt_version: spec.source.prompt_version.clone().unwrap_or_default(),
        }),
    };
    Ok(pb::Recommendation {
        id: spec.recommendation_id.clone(),
        snapshot_id: spec.snapshot_id.clone(),
        issue_fingerprints: spec.issue_fingerprints.clone(),
        action: Some(pb::Action { kind: Some(kind) }),
        target: Some(object_ref(&spec.target)),
        reason: spec.reasoning.clone(),
        risk: severity(&spec.risk) as i32,
        confidence: spec.confidence,
        source: Some(pb::Source { kind: Some(source) }),
        evidence_refs: spec.evidence.clone(),
        created_at: created.map(|t| prost_types::Timestamp {
            seconds: t.as_second(),
            nanos: 0,
        }),
        // Model text for people: the gate decides without it.
        explanation: None,
        incident: String::new(),
        plan: Vec::new(),
        plan_step: spec.plan_step.as_ref().map(|p| pb::PlanStep {
            plan_id: p.recommendation_id.clone(),
            step: p.step,
            steps: p.steps,
        }),
    })
}

/// The proto reference of a CR target.
pub fn object_ref(target: &TargetRef) -> pb::ObjectRef {
    pb::ObjectRef {
        kind: target.kind.clone(),
        api_version: api_version(&target.kind).to_owned(),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        uid: target.uid.clone(),
        resource_version: target.resource_version.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(kind: Kind) {
        let spec = ActionSpec {
            type_: action_type(&kind),
            params: params(&kind),
        };
        assert_eq!(action(&spec).unwrap(), kind);
    }

    #[test]
    fn every_action_survives_the_cr_roundtrip() {
        roundtrip(Kind::RestartPod(pb::RestartPod {}));
        roundtrip(Kind::RolloutRestart(pb::RolloutRestart {}));
        roundtrip(Kind::ScaleHpa(pb::ScaleHpa {
            min_replicas: Some(2),
            max_replicas: 15,
        }));
        roundtrip(Kind::ScaleHpa(pb::ScaleHpa {
            min_replicas: None,
            max_replicas: 3,
        }));
        roundtrip(Kind::CordonNode(pb::CordonNode {}));
        roundtrip(Kind::UncordonNode(pb::UncordonNode {}));
        roundtrip(Kind::DrainNode(pb::DrainNode {
            grace_period_seconds: 30,
            timeout_seconds: 300,
        }));
        roundtrip(Kind::ExpandPvc(pb::ExpandPvc {
            new_size_bytes: 3 << 30,
        }));
        roundtrip(Kind::PatchResources(pb::PatchResources {
            container: "app".into(),
            requests: None,
            limits: Some(pb::Resources {
                cpu_millicores: None,
                memory_bytes: Some(805_306_368),
            }),
        }));
        roundtrip(Kind::DeleteJob(pb::DeleteJob {
            min_age_seconds: 86_400,
        }));
        roundtrip(Kind::DeleteResource(pb::DeleteResource {}));
        roundtrip(Kind::ReportOnly(pb::ReportOnly {
            explanation: "image missing".into(),
        }));
        roundtrip(Kind::ForceDeletePod(pb::ForceDeletePod {}));
        roundtrip(Kind::ScaleWorkload(pb::ScaleWorkload { replicas: 3 }));
        roundtrip(Kind::ResumeCronJob(pb::ResumeCronJob {}));
        roundtrip(Kind::RolloutUndo(pb::RolloutUndo {}));
        roundtrip(Kind::RetriggerJob(pb::RetriggerJob {}));
        roundtrip(Kind::DeleteFailedPods(pb::DeleteFailedPods {
            max_pods: 20,
        }));
    }

    #[test]
    fn malformed_misplaced_and_missing_params_are_refused_by_name() {
        let error = serde_json::from_value::<ActionSpec>(serde_json::json!({
            "type": "ScaleHpa", "params": { "maxReplicas": "lots" },
        }))
        .unwrap_err()
        .to_string();
        assert!(error.contains("\"lots\" is not a whole number"), "{error}");
        let mut spec = ActionSpec {
            type_: ActionType::ScaleHpa,
            params: ActionParams::default(),
        };
        let error = action(&spec).unwrap_err().to_string();
        assert!(error.contains("maxReplicas: is required"), "{error}");
        spec.params.max_replicas = Some(Int(4));
        spec.params.min_age_seconds = Some(Int(60));
        let error = action(&spec).unwrap_err().to_string();
        assert!(
            error.contains("params.minAgeSeconds: is not a parameter of ScaleHpa"),
            "{error}"
        );
        spec.params.min_age_seconds = None;
        spec.params.max_replicas = Some(Int(1 << 40));
        let error = action(&spec).unwrap_err().to_string();
        assert!(
            error.contains("params.maxReplicas: 1099511627776 is out of range"),
            "{error}"
        );
    }

    #[test]
    fn string_params_stored_before_typing_read_the_same() {
        let stored: ActionSpec = serde_json::from_value(serde_json::json!({
            "type": "PatchResources",
            "params": { "container": "app", "limits.memoryBytes": "805306368" },
        }))
        .unwrap();
        assert_eq!(
            action(&stored).unwrap(),
            Kind::PatchResources(pb::PatchResources {
                container: "app".into(),
                requests: None,
                limits: Some(pb::Resources {
                    cpu_millicores: None,
                    memory_bytes: Some(805_306_368),
                }),
            })
        );
        let scale: ActionSpec = serde_json::from_value(serde_json::json!({
            "type": "ScaleHpa", "params": { "maxReplicas": "6" },
        }))
        .unwrap();
        assert_eq!(
            action(&scale).unwrap(),
            Kind::ScaleHpa(pb::ScaleHpa {
                max_replicas: 6,
                min_replicas: None,
            })
        );
    }

    #[test]
    fn recommendations_are_rebuilt_exactly_from_the_cr() {
        let rec = pb::Recommendation {
            id: "rec-1".into(),
            snapshot_id: "snap-1".into(),
            issue_fingerprints: vec!["abcd".into()],
            action: Some(pb::Action {
                kind: Some(Kind::ScaleHpa(pb::ScaleHpa {
                    min_replicas: None,
                    max_replicas: 6,
                })),
            }),
            target: Some(pb::ObjectRef {
                kind: "HorizontalPodAutoscaler".into(),
                api_version: "autoscaling/v2".into(),
                namespace: "shop".into(),
                name: "web".into(),
                uid: "u-1".into(),
                resource_version: "42".into(),
            }),
            reason: "at max".into(),
            risk: pb::Severity::Warning as i32,
            confidence: 100,
            source: Some(pb::Source {
                kind: Some(pb::source::Kind::RuleId("hpa-raise-max".into())),
            }),
            evidence_refs: vec!["issue:abcd".into()],
            created_at: None,
            explanation: None,
            incident: String::new(),
            plan: Vec::new(),
            plan_step: None,
        };
        let spec = spec_from_recommendation("shop/default", &rec, None).unwrap();
        assert_eq!(recommendation(&spec, None).unwrap(), rec);
    }

    #[test]
    fn recommendations_without_action_or_uid_are_not_recorded() {
        let error = spec_from_recommendation("p/q", &pb::Recommendation::default(), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("recommendation.action"), "{error}");
    }

    #[test]
    fn a_plan_is_recorded_step_by_step_and_bad_plans_are_refused() {
        let restart = pb::Action {
            kind: Some(Kind::RolloutRestart(pb::RolloutRestart {})),
        };
        let scale = pb::Action {
            kind: Some(Kind::ScaleWorkload(pb::ScaleWorkload { replicas: 3 })),
        };
        let mut rec = pb::Recommendation {
            id: "rec-9".into(),
            action: Some(scale.clone()),
            target: Some(pb::ObjectRef {
                kind: "Deployment".into(),
                namespace: "shop".into(),
                name: "web".into(),
                uid: "u-9".into(),
                ..pb::ObjectRef::default()
            }),
            source: Some(pb::Source {
                kind: Some(pb::source::Kind::RuleId("plan".into())),
            }),
            plan: vec![scale.clone(), restart.clone()],
            ..pb::Recommendation::default()
        };
        let spec = spec_from_recommendation("shop/default", &rec, None).unwrap();
        assert_eq!(spec.plan.len(), 2);
        assert_eq!(spec.plan[1].type_, ActionType::RolloutRestart);
        let second = step_recommendation(&spec, None, 2).unwrap();
        assert_eq!(second.id, "rec-9.s2");
        assert_eq!(second.action, Some(restart.clone()));
        assert_eq!(
            second.plan_step,
            Some(pb::PlanStep {
                plan_id: "rec-9".into(),
                step: 2,
                steps: 2
            })
        );
        assert!(step_recommendation(&spec, None, 3).is_err());
        assert!(step_recommendation(&spec, None, 0).is_err());

        for (plan, what) in [
            (
                vec![restart.clone(), scale.clone()],
                "is not the recommendation's action",
            ),
            (vec![scale.clone()], "a plan has 2 to 5"),
            (vec![scale.clone(); 6], "a plan has 2 to 5"),
            (
                vec![
                    scale.clone(),
                    pb::Action {
                        kind: Some(Kind::ReportOnly(pb::ReportOnly::default())),
                    },
                ],
                "a report is not a step",
            ),
            (
                vec![scale.clone(), pb::Action { kind: None }],
                "no action set",
            ),
        ] {
            rec.plan = plan;
            let error = spec_from_recommendation("shop/default", &rec, None)
                .unwrap_err()
                .to_string();
            assert!(error.contains(what), "{error}");
        }
    }
}
