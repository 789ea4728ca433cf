//! `HealingAction`: one proposed action and its life.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use nanny_proto::v1 as pb;

use crate::{ActionType, Condition};

/// One recommendation recorded as a durable, auditable state machine.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "nanny.ai",
    version = "v1alpha1",
    kind = "HealingAction",
    plural = "healingactions",
    shortname = "ha",
    namespaced,
    status = "HealingActionStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action.type"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.target.name"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
// What was proposed is fixed once recorded: only a human's decision is added
// later, once. (The policy's namespace and who may write it are checked by
// the chart's ValidatingAdmissionPolicy, which sees metadata and the user.)
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.policyRef == oldSelf.policyRef && self.target == oldSelf.target && self.action == oldSelf.action && self.source == oldSelf.source && self.confidence == oldSelf.confidence && self.reasoning == oldSelf.reasoning && self.recommendationId == oldSelf.recommendationId && self.snapshotId == oldSelf.snapshotId && has(self.risk) == has(oldSelf.risk) && (!has(self.risk) || self.risk == oldSelf.risk) && has(self.evidence) == has(oldSelf.evidence) && (!has(self.evidence) || self.evidence == oldSelf.evidence) && has(self.issueFingerprints) == has(oldSelf.issueFingerprints) && (!has(self.issueFingerprints) || self.issueFingerprints == oldSelf.issueFingerprints) && has(self.workloadUid) == has(oldSelf.workloadUid) && (!has(self.workloadUid) || self.workloadUid == oldSelf.workloadUid) && has(self.issueKind) == has(oldSelf.issueKind) && (!has(self.issueKind) || self.issueKind == oldSelf.issueKind) && has(self.calibration) == has(oldSelf.calibration) && (!has(self.calibration) || self.calibration == oldSelf.calibration) && has(self.plan) == has(oldSelf.plan) && (!has(self.plan) || self.plan == oldSelf.plan) && has(self.planStep) == has(oldSelf.planStep) && (!has(self.planStep) || self.planStep == oldSelf.planStep)",
        "message": "the spec of a HealingAction is immutable after creation, except spec.approval"
    },
    {
        "rule": "!has(oldSelf.approval) || (has(self.approval) && self.approval == oldSelf.approval)",
        "message": "spec.approval is decided once"
    },
    {
        "rule": "!has(self.plan) || (size(self.plan) >= 2 && self.plan[0].type == self.action.type && !has(self.planStep))",
        "message": "spec.plan lists at least two steps, the first being spec.action, and a plan is not a step of another"
    }
]))]
pub struct HealingActionSpec {
    /// `namespace/name` of the HealingPolicy that produced it; the action
    /// lives in the policy's namespace.
    #[schemars(length(min = 3, max = 317))]
    pub policy_ref: String,
    /// The exact object, pinned by uid.
    pub target: TargetRef,
    /// What to do.
    pub action: ActionSpec,
    /// Rule or model that proposed it.
    pub source: ActionSource,
    /// 0–100; untrusted when the source is a model.
    #[schemars(range(min = 0, max = 100))]
    pub confidence: u32,
    /// Why, in words.
    #[schemars(length(max = 8192))]
    pub reasoning: String,
    /// Risk of the action as the analyzer saw it: `Info`, `Warning` or `Critical`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 16))]
    pub risk: String,
    /// Evidence references (issue fingerprints, metric queries).
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(max = 1024)))]
    pub evidence: Vec<String>,
    /// Fingerprints of the issues this addresses.
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    pub issue_fingerprints: Vec<String>,
    /// Recommendation id, from the analyzer.
    #[schemars(length(max = 256))]
    pub recommendation_id: String,
    /// Snapshot id the recommendation was made from.
    #[schemars(length(max = 256))]
    pub snapshot_id: String,
    /// uid of the workload that owns the target (the Deployment of a pod);
    /// cooldowns and rate limits count against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub workload_uid: Option<String>,
    /// The kind of the issue it addresses (e.g. `CrashLoopBackOff`): with
    /// the workload, the incident whose ladder it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub issue_kind: Option<String>,
    /// How `confidence` was calibrated from the policy's outcome history;
    /// absent on actions recorded before there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::Calibration>,
    /// A multi-step plan: every step in order, the first being `action`,
    /// all on `target`. The coordinator runs each step as its own
    /// HealingAction (reviewed by the gate against the cluster as it is
    /// when the step starts, executed and verified), stops at the first
    /// step that fails and rolls back the steps that ran, last first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub plan: Vec<ActionSpec>,
    /// Set on the HealingAction of one step of a plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_step: Option<PlanStepRef>,
    /// A human's decision, when one was needed. Set it by patching the CR,
    /// annotating it ([`APPROVE_ANNOTATION`] / [`REJECT_ANNOTATION`]) or with
    /// `nannyctl approve|reject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<HumanApproval>,
}

/// Most steps a plan may hold.
pub const MAX_PLAN_STEPS: usize = nanny_proto::vocabulary::MAX_PLAN_STEPS as usize;

/// Label on the HealingAction of a plan's step: the plan's HealingAction name.
pub const PLAN_LABEL: &str = "nanny.ai/plan";

/// Which plan a step's HealingAction belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanStepRef {
    /// The plan's HealingAction (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub action: String,
    /// The plan's recommendation id.
    #[schemars(length(max = 256))]
    pub recommendation_id: String,
    /// 1-based.
    #[schemars(range(min = 1, max = 5))]
    pub step: u32,
    /// How many steps the plan has.
    #[schemars(range(min = 2, max = 5))]
    pub steps: u32,
}

/// One step of a plan, as its plan's status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanStepStatus {
    /// 1-based.
    pub step: u32,
    /// The step's action type.
    #[serde(rename = "type")]
    pub type_: ActionType,
    /// The gate's decision on this step when it reviewed the whole plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The step's own HealingAction, once the step started.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub healing_action: String,
    /// The step's HealingAction's phase, as last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// How rolling the step back ended, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Outcome>,
    /// What happened, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Annotation a human sets (any value: who, or a comment) to approve.
pub const APPROVE_ANNOTATION: &str = "nanny.ai/approve";
/// Annotation a human sets (any value: the reason) to reject.
pub const REJECT_ANNOTATION: &str = "nanny.ai/reject";
/// Annotation a human sets (any value: the reason) to resolve an open
/// escalation; the incident's ladder starts again from its first rung.
pub const RESOLVE_ANNOTATION: &str = "nanny.ai/resolve";
/// Annotation: how many times an open escalation's incident was detected
/// again (each would have been a new action).
pub const SEEN_COUNT_ANNOTATION: &str = "nanny.ai/seen-count";
/// Annotation a human sets (value: the reason) to roll a succeeded or failed
/// action back; the coordinator asks the remediator and records the result.
pub const ROLLBACK_ANNOTATION: &str = "nanny.ai/rollback";
/// Label: `namespace.name` of the policy (`/` is not allowed in label values).
pub const POLICY_LABEL: &str = "nanny.ai/policy";
/// Label: the target's uid.
pub const TARGET_UID_LABEL: &str = "nanny.ai/target-uid";
/// Label: the action type, e.g. `RestartPod`.
pub const ACTION_TYPE_LABEL: &str = "nanny.ai/action-type";
/// Label: `"true"` while the action is not terminal, `"false"` after; the
/// coordinator finds open actions for deduplication by it.
pub const OPEN_LABEL: &str = "nanny.ai/open";

/// A Kubernetes object pinned by uid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// e.g. `Pod`, `Deployment`, `Node`.
    #[schemars(length(max = 63))]
    pub kind: String,
    /// Empty for cluster-scoped objects.
    #[serde(default)]
    #[schemars(length(max = 63))]
    pub namespace: String,
    /// Object name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The uid observed; the action is refused if the object was replaced.
    #[schemars(length(min = 1, max = 128))]
    pub uid: String,
    /// The resourceVersion observed.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub resource_version: String,
}

/// An action type and its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::params::add_rules)]
pub struct ActionSpec {
    /// The action type.
    #[serde(rename = "type")]
    pub type_: ActionType,
    /// The type's parameters, e.g. `maxReplicas: 15` for ScaleHpa; each
    /// type accepts only its own.
    #[serde(default)]
    pub params: crate::ActionParams,
}

/// Who proposed the action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionSource {
    /// `Rule` or `Model`.
    pub kind: SourceKind,
    /// Rule id, or model name.
    #[schemars(length(max = 253))]
    pub name: String,
    /// Prompt version, for model sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub prompt_version: Option<String>,
    /// Model provider (`ollama`, `openai`), for model sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub provider: Option<String>,
    /// Model digest where the provider reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub digest: Option<String>,
}

/// Rule or model.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum SourceKind {
    /// A deterministic analyzer rule.
    Rule,
    /// An LLM.
    Model,
}

/// A human's decision on an action that needed approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HumanApproval {
    /// `Approve` or `Reject`.
    pub decision: HumanDecision,
    /// Who decided: the user the API server authenticated (the chart's
    /// admission policy refuses any other name).
    #[schemars(length(min = 1, max = 256))]
    pub by: String,
    /// RFC 3339 time of the decision.
    #[schemars(length(max = 64))]
    pub at: String,
    /// Optional comment.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub comment: String,
}

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HumanDecision {
    /// Go ahead.
    Approve,
    /// Do not act.
    Reject,
}

/// The phases of a HealingAction.
///
/// Proposed → PendingApproval → Approved → Executing → Verifying →
/// Succeeded | Failed | Denied | RolledBack | Expired.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Phase {
    /// Recorded, not yet reviewed.
    Proposed,
    /// The gate wants a human.
    PendingApproval,
    /// Approved by the gate or a human.
    Approved,
    /// The remediator is acting.
    Executing,
    /// Acted; watching whether it helped.
    Verifying,
    /// Acted and helped.
    Succeeded,
    /// Acting failed or did not help.
    Failed,
    /// The gate or a human said no.
    Denied,
    /// Undone after failing verification.
    RolledBack,
    /// Nobody approved it in time.
    Expired,
    /// Monitor or DryRun mode: what would have happened is recorded (with
    /// the dry-run diff in DryRun mode); nothing was executed.
    Recorded,
    /// An escalation: the ladder's actions did not help and a human is
    /// asked. Open until a human resolves it (annotation
    /// `nanny.ai/resolve`) or the incident is quiet for the ladder's
    /// `quietSeconds`; no action is proposed for the incident meanwhile.
    Escalated,
    /// An escalation that was resolved.
    Resolved,
}

impl HealingAction {
    /// The action's phase; `Proposed` until the coordinator first writes
    /// its status.
    pub fn phase(&self) -> Phase {
        self.status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or(Phase::Proposed)
    }
}

impl Phase {
    /// Whether the action's life is over.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded
                | Self::Failed
                | Self::Denied
                | Self::RolledBack
                | Self::Expired
                | Self::Recorded
                | Self::Resolved
        )
    }

    /// The phase as its CRD spelling, e.g. `PendingApproval`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proposed => "Proposed",
            Self::PendingApproval => "PendingApproval",
            Self::Approved => "Approved",
            Self::Executing => "Executing",
            Self::Verifying => "Verifying",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Denied => "Denied",
            Self::RolledBack => "RolledBack",
            Self::Expired => "Expired",
            Self::Recorded => "Recorded",
            Self::Escalated => "Escalated",
            Self::Resolved => "Resolved",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a HealingAction is in its life.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealingActionStatus {
    /// Current phase; absent until the coordinator first writes status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The gate's verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<VerdictRecord>,
    /// What the remediator reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultRecord>,
    /// RFC 3339 time the current phase was entered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_since: Option<String>,
    /// PendingApproval: RFC 3339 time after which the action expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Execution attempts so far (each Execute call, retries included).
    #[serde(default)]
    pub attempts: u32,
    /// Tries a PodDisruptionBudget refused (nothing was written each
    /// time). The action waits and tries again, then is escalated to a
    /// human.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub blocked: u32,
    /// After a blocked try: RFC 3339 time of the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
    /// A rollback a human asked for, and how it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<ResultRecord>,
    /// The model's explanation of the incident behind the action, attached
    /// when it answers (the action never waits for it). Model output: for
    /// people, never read by any decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<ExplanationRecord>,
    /// A plan's steps and how far each got.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<PlanStepStatus>,
    /// Conditions with timestamps of each transition.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// The gate's decision, as recorded: the contract's `Decision` in the CR's
/// spelling.
// Ordered (derived) from the least strict to the strictest: a plan's
// decision is its strictest step's.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum Decision {
    /// Go ahead.
    Approved,
    /// A human approves first.
    NeedsApproval,
    /// Only a dry run.
    DryRunOnly,
    /// No. Also what a record without a decision reads as, and what any
    /// spelling this build does not know reads as: fail closed.
    #[default]
    #[serde(other)]
    Denied,
}

impl Decision {
    /// The record of a contract decision; anything but the three that let
    /// something happen is `Denied`.
    pub fn from_proto(decision: i32) -> Self {
        match pb::Decision::try_from(decision) {
            Ok(pb::Decision::Approved) => Self::Approved,
            Ok(pb::Decision::NeedsApproval) => Self::NeedsApproval,
            Ok(pb::Decision::DryRunOnly) => Self::DryRunOnly,
            _ => Self::Denied,
        }
    }

    /// The contract's value.
    pub fn proto(self) -> pb::Decision {
        match self {
            Self::Approved => pb::Decision::Approved,
            Self::NeedsApproval => pb::Decision::NeedsApproval,
            Self::DryRunOnly => pb::Decision::DryRunOnly,
            Self::Denied => pb::Decision::Denied,
        }
    }

    /// The CR spelling, e.g. `NeedsApproval`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "Approved",
            Self::NeedsApproval => "NeedsApproval",
            Self::DryRunOnly => "DryRunOnly",
            Self::Denied => "Denied",
        }
    }
}

/// How an execution (or a rollback) ended, as recorded: the contract's
/// `Outcome` in the CR's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Outcome {
    /// Applied and verified.
    Succeeded,
    /// Only a dry run; nothing changed.
    DryRun,
    /// Applied, but the problem stayed.
    Ineffective,
    /// Applying or verifying failed.
    Failed,
    /// The remediator refused (verdict, protection, validation).
    Refused,
    /// Undone.
    RolledBack,
    /// A PodDisruptionBudget refused; nothing was written.
    Blocked,
    /// An outcome this build does not know (a newer remediator's, or any
    /// other spelling): counted as a failure wherever it matters.
    #[serde(other)]
    Unknown,
}

impl Outcome {
    /// The record of a contract outcome.
    pub fn from_proto(outcome: i32) -> Self {
        match pb::Outcome::try_from(outcome) {
            Ok(pb::Outcome::Succeeded) => Self::Succeeded,
            Ok(pb::Outcome::DryRun) => Self::DryRun,
            Ok(pb::Outcome::Ineffective) => Self::Ineffective,
            Ok(pb::Outcome::Failed) => Self::Failed,
            Ok(pb::Outcome::Refused) => Self::Refused,
            Ok(pb::Outcome::RolledBack) => Self::RolledBack,
            Ok(pb::Outcome::Blocked) => Self::Blocked,
            _ => Self::Unknown,
        }
    }

    /// The CR spelling, e.g. `Ineffective`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "Succeeded",
            Self::DryRun => "DryRun",
            Self::Ineffective => "Ineffective",
            Self::Failed => "Failed",
            Self::Refused => "Refused",
            Self::RolledBack => "RolledBack",
            Self::Blocked => "Blocked",
            Self::Unknown => "Unknown",
        }
    }

    /// Whether something was executed: not a dry run, a refusal or a
    /// budget's block.
    pub fn executed(self) -> bool {
        !matches!(self, Self::DryRun | Self::Refused | Self::Blocked)
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The gate's verdict, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerdictRecord {
    /// The gate's (or a human's, re-checked by the gate) decision.
    pub decision: Decision,
    /// Gate rule ids that decided.
    #[serde(default)]
    pub matched_rules: Vec<String>,
    /// Human-readable reasons.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Audit record id.
    #[serde(default)]
    pub audit_id: String,
    /// RFC 3339 time of the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// The gate's Ed25519 signature over the verdict (base64), passed to the
    /// remediator exactly as the gate gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub signature: Option<k8s_openapi::ByteString>,
    /// Which gate key signed it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_id: String,
    /// RFC 3339 time after which the remediator refuses the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Signed with the verdict: RestartPod may delete a pod no controller owns.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_bare_pod_restart: bool,
    /// Signed with the verdict: a human approved it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub human_approved: bool,
    /// Position of the verdict's record in the gate's audit log: with
    /// `auditHash`, an anchor outside the log that shows a later
    /// truncation or rewrite (`nannyctl audit verify --anchors-from-cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_seq: Option<u64>,
    /// Hash of the verdict's audit record.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub audit_hash: String,
    /// Denied by a limit that passes (cooldown, rate limit, open breaker):
    /// RFC 3339 time from which the same proposal could pass. Until then
    /// the coordinator proposes no such action for the incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
}

/// A model's explanation, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExplanationRecord {
    /// The incident's fingerprint.
    #[schemars(length(max = 64))]
    pub incident: String,
    /// The root-cause hypothesis, in the model's words.
    #[schemars(length(max = 1024))]
    pub hypothesis: String,
    /// The risk of the action, in the model's words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub risk: String,
    /// The evidence cited, `id: description = value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(max = 512)))]
    pub cited_evidence: Vec<String>,
    /// `provider/model`, and the model digest when the provider tells it.
    #[schemars(length(max = 256))]
    pub model: String,
    /// The prompt template's version.
    #[schemars(length(max = 64))]
    pub prompt_version: String,
    /// What the model thought of this action: `Agrees`, `Disagrees`,
    /// `Silent` (it proposed nothing for the target) or `ModelOnly` (the
    /// action is its own proposal).
    #[schemars(length(max = 16))]
    pub agreement: String,
    /// RFC 3339 time it was attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// The remediator's report, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultRecord {
    /// How it ended.
    pub outcome: Outcome,
    /// The change a dry run would make.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dry_run_diff: String,
    /// Where the pre-image is kept.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pre_image_ref: String,
    /// Verification summary.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub verification: String,
    /// Error, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// RFC 3339 time the remediator finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero(n: &u32) -> bool {
    *n == 0
}
