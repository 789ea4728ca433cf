//! The model's reply: parsed, bounded, and turned into recommendations
//! whose target and parameters come from the snapshot and the rules'
//! configuration, never from the model.

use nanny_proto::v1::{
    Action, ClusterSnapshot, CordonNode, DeleteJob, DeleteResource, DrainNode, ExpandPvc,
    ModelSource, ObjectRef, Recommendation, ReportOnly, RestartPod, RolloutRestart, ScaleHpa,
    Severity, Source, action::Kind, source,
};
use nanny_proto::vocabulary;
use serde::Deserialize;

use super::{LlmError, PROMPT_VERSION};
use crate::{
    index::SnapshotIndex,
    settings::{MODEL_ACTIONS, Settings},
};

/// Largest reply body accepted, bytes.
pub const MAX_REPLY_BYTES: usize = 256 * 1024;

/// Whether `action` is one the schema never offers but that a model (one
/// serving without schema enforcement, or a compromised one) may still
/// name: a well-formed proposal the safety gate refuses — and audits — so it
/// is passed on rather than silently dropped.
fn passed_to_gate(action: &str) -> bool {
    vocabulary::by_label(action).is_some_and(|a| a.model == vocabulary::ModelUse::PassedToGate)
}

/// The reply the schema asks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelReply {
    /// The root-cause hypothesis (empty: the model gave none).
    #[serde(default)]
    pub hypothesis: String,
    /// Ids of the evidence items the hypothesis rests on.
    #[serde(default)]
    pub cited: Vec<String>,
    /// The risk of acting, in the model's words.
    #[serde(default)]
    pub risk: String,
    /// Asked only where the rules already act: whether their actions fit
    /// the hypothesis.
    #[serde(default)]
    pub agrees: Option<bool>,
    /// The proposals.
    pub recommendations: Vec<ModelItem>,
    /// What the call cost; from the response envelope, never the model.
    #[serde(skip)]
    pub usage: Usage,
    /// How long the server spent on each phase, when it says.
    #[serde(skip)]
    pub timings: Option<Timings>,
    /// The assistant message content verbatim, for debugging.
    #[serde(skip)]
    pub raw: String,
}

/// Tokens one model call used, as the server counted them (0 when it did
/// not say).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    /// Prompt tokens evaluated (Ollama `prompt_eval_count`, OpenAI
    /// `usage.prompt_tokens`).
    #[serde(default, alias = "prompt_eval_count")]
    pub prompt_tokens: u64,
    /// Tokens generated (Ollama `eval_count`, OpenAI
    /// `usage.completion_tokens`).
    #[serde(default, alias = "eval_count")]
    pub completion_tokens: u64,
}

/// Seconds the server spent evaluating the prompt and generating, as it
/// reported them (Ollama's `prompt_eval_duration`/`eval_duration`,
/// llama.cpp's `timings`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timings {
    /// Prompt evaluation (prefill).
    pub prompt_secs: f64,
    /// Generation.
    pub generate_secs: f64,
}

/// One proposal as the model wrote it; every field is untrusted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelItem {
    /// One of [`MODEL_ACTIONS`], or garbage.
    pub action: String,
    /// A uid from the schema's enum, or garbage.
    pub target_uid: String,
    /// The issue it addresses.
    pub issue_fingerprint: String,
    /// 0–100.
    pub confidence: i64,
    /// Free text, shown to people only.
    pub reason: String,
    /// The actions to take after `action`, in order, on the same target:
    /// a plan, each step run only once the one before it succeeded. Empty
    /// (or `null`, or absent): `action` alone.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub then: Vec<String>,
}

/// A list the schema lets the model leave `null`, read as empty.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// Parses the assistant message content.
///
/// # Errors
/// [`LlmError::Malformed`] when it is not the schema's JSON.
pub fn parse_reply(content: &str) -> Result<ModelReply, LlmError> {
    serde_json::from_str(content).map_err(|e| LlmError::Malformed(e.to_string()))
}

/// A proposal the analyzer refused to turn into a recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Not one of [`MODEL_ACTIONS`].
    UnknownAction,
    /// An action the policy does not allow (not in the request's schema).
    NotAllowed,
    /// The uid is no object of the snapshot.
    TargetNotInSnapshot,
    /// The action does not apply to the target, or no parameter fits.
    NotApplicable,
    /// Below `llm.min_confidence`, or outside 0–100.
    LowConfidence,
    /// A plan the contract does not allow: more than
    /// [`vocabulary::MAX_PLAN_STEPS`] steps, a report as a step, or a step
    /// twice.
    BadPlan,
}

impl Rejected {
    /// The metric label (shared with the validator's reasons).
    pub fn label(self) -> &'static str {
        match self {
            Self::UnknownAction => "unknown_action",
            Self::NotAllowed => "action_not_in_policy",
            Self::TargetNotInSnapshot => "target_not_in_snapshot",
            Self::NotApplicable => "wrong_target_kind",
            Self::LowConfidence => "low_confidence",
            Self::BadPlan => "bad_plan",
        }
    }
}

/// Who made a model recommendation.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// `openai` or `ollama`.
    pub provider: &'static str,
    /// The model name.
    pub model: String,
    /// The model's content digest (Ollama's `/api/tags`); empty when the
    /// server does not tell or has not been asked yet.
    pub digest: String,
}

fn scaled(value: i64, factor: f64) -> i64 {
    // Object sizes and replica counts, far below 2^53.
    (value as f64 * factor).ceil() as i64
}

/// Whether `settings` lets the model propose `action` (or it is one the
/// gate refuses and audits).
fn allowed(action: &str, settings: &Settings) -> Result<(), Rejected> {
    if passed_to_gate(action) {
        // Refused and audited by the gate, whatever the policy allows.
        Ok(())
    } else if !MODEL_ACTIONS.contains(&action) {
        Err(Rejected::UnknownAction)
    } else if !settings.model.actions.contains(&action) {
        Err(Rejected::NotAllowed)
    } else {
        Ok(())
    }
}

/// The action `action` names on `target` (an object of the snapshot), its
/// parameters from the rules' configuration, never from the model.
fn kind_of(
    action: &str,
    target: &ObjectRef,
    index: &SnapshotIndex<'_>,
    settings: &Settings,
    reason: &str,
) -> Result<Kind, Rejected> {
    if !vocabulary::by_label(action).is_some_and(|a| a.accepts(&target.kind)) {
        return Err(Rejected::NotApplicable);
    }
    let uid = target.uid.as_str();
    let rules = &settings.rules;
    Ok(match action {
        "restart_pod" => Kind::RestartPod(RestartPod {}),
        "rollout_restart" => Kind::RolloutRestart(RolloutRestart {}),
        "cordon_node" => Kind::CordonNode(CordonNode {}),
        "drain_node" => Kind::DrainNode(DrainNode {
            grace_period_seconds: rules.node.drain_grace_period_secs,
            timeout_seconds: rules.node.drain_timeout_secs,
        }),
        "delete_job" => Kind::DeleteJob(DeleteJob {
            min_age_seconds: i64::try_from(rules.stale_job.min_age_secs).unwrap_or(i64::MAX),
        }),
        "scale_hpa" => {
            let hpa = index.hpas.get(uid).ok_or(Rejected::NotApplicable)?;
            let max = i32::try_from(scaled(i64::from(hpa.max_replicas), rules.hpa.factor))
                .unwrap_or(i32::MAX)
                .max(hpa.max_replicas.saturating_add(1))
                .min(rules.hpa.max_replicas);
            Kind::ScaleHpa(ScaleHpa {
                min_replicas: None,
                max_replicas: max,
            })
        }
        "expand_pvc" => {
            let pvc = index.pvcs.get(uid).ok_or(Rejected::NotApplicable)?;
            let size = scaled(
                pvc.capacity_bytes.max(pvc.requested_bytes),
                rules.pvc.factor,
            )
            .min(rules.pvc.max_storage_bytes);
            Kind::ExpandPvc(ExpandPvc {
                new_size_bytes: size,
            })
        }
        // Not offered in the schema; a model that proposes it anyway is
        // passed on for the gate to refuse and audit (see validate.rs).
        "delete_resource" if index.workloads.contains_key(uid) => {
            Kind::DeleteResource(DeleteResource {})
        }
        "report_only" => Kind::ReportOnly(ReportOnly {
            explanation: format!("Model suggestion for a person to review: {reason}"),
        }),
        _ => return Err(Rejected::NotApplicable),
    })
}

/// The steps of the plan `item` proposes (none for one action): its
/// action, then each of `then`, every one allowed, applicable to the
/// target and built as [`kind_of`] builds it; no report, no step twice, at
/// most [`vocabulary::MAX_PLAN_STEPS`].
fn plan_of(
    item: &ModelItem,
    first: &Kind,
    target: &ObjectRef,
    index: &SnapshotIndex<'_>,
    settings: &Settings,
) -> Result<Vec<Action>, Rejected> {
    if item.then.is_empty() {
        return Ok(Vec::new());
    }
    // The length first: the model may have written thousands.
    let most = usize::try_from(vocabulary::MAX_PLAN_STEPS).unwrap_or(usize::MAX);
    if item.then.len() >= most {
        return Err(Rejected::BadPlan);
    }
    let labels: Vec<&str> = std::iter::once(item.action.as_str())
        .chain(item.then.iter().map(String::as_str))
        .collect();
    let repeated = labels
        .iter()
        .enumerate()
        .any(|(i, label)| labels[..i].contains(label));
    if repeated || labels.contains(&"report_only") {
        return Err(Rejected::BadPlan);
    }
    let mut plan = vec![Action {
        kind: Some(first.clone()),
    }];
    for label in &labels[1..] {
        allowed(label, settings)?;
        plan.push(Action {
            kind: Some(kind_of(label, target, index, settings, "")?),
        });
    }
    Ok(plan)
}

/// Turns one proposal into a recommendation whose target is the snapshot's
/// own ref and whose parameters come from the request's rule settings,
/// never from the model; with `then`, a plan of those steps on the same
/// target.
///
/// # Errors
/// The [`Rejected`] reason.
pub fn to_recommendation(
    item: &ModelItem,
    snapshot: &ClusterSnapshot,
    index: &SnapshotIndex<'_>,
    settings: &Settings,
    info: &ModelInfo,
) -> Result<Recommendation, Rejected> {
    let action = item.action.as_str();
    allowed(action, settings)?;
    let confidence = u32::try_from(item.confidence)
        .ok()
        .filter(|c| *c <= 100)
        .ok_or(Rejected::LowConfidence)?;
    if f64::from(confidence) < settings.model.min_confidence * 100.0 {
        return Err(Rejected::LowConfidence);
    }
    let target = index
        .object(&item.target_uid)
        .ok_or(Rejected::TargetNotInSnapshot)?;
    let uid = target.uid.as_str();
    // Model text is for people only, and bounded.
    let reason: String = item.reason.chars().take(300).collect();
    let kind = kind_of(action, target, index, settings, &reason)?;
    let plan = plan_of(item, &kind, target, index, settings)?;
    // A plan's id names every step, as built: it is another proposal than
    // its first step alone.
    let actions = if plan.is_empty() {
        action.to_owned()
    } else {
        plan.iter()
            .map(|step| vocabulary::label_of(step.kind.as_ref()))
            .collect::<Vec<_>>()
            .join("+")
    };
    Ok(Recommendation {
        id: format!("model-{}-{actions}-{uid}", snapshot.id),
        snapshot_id: snapshot.id.clone(),
        issue_fingerprints: vec![item.issue_fingerprint.clone()],
        action: Some(Action { kind: Some(kind) }),
        target: Some(target.clone()),
        reason,
        risk: Severity::Warning as i32,
        confidence,
        source: Some(Source {
            kind: Some(source::Kind::Model(ModelSource {
                provider: info.provider.to_owned(),
                model: info.model.clone(),
                digest: info.digest.clone(),
                prompt_version: PROMPT_VERSION.to_owned(),
            })),
        }),
        evidence_refs: vec![format!("issue:{}", item.issue_fingerprint)],
        created_at: None,
        explanation: None,
        // Set when merged with its incident's rule recommendations.
        incident: String::new(),
        plan,
        plan_step: None,
    })
}
