//! `HealingPolicy`: scope, mode, allowed actions and limits.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ActionType, Condition};

/// What Nanny watches in a part of the cluster and how far it may go there.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "nanny.ai",
    version = "v1alpha1",
    kind = "HealingPolicy",
    plural = "healingpolicies",
    shortname = "hp",
    namespaced,
    status = "HealingPolicyStatus",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Paused","type":"boolean","jsonPath":".spec.paused"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HealingPolicySpec {
    /// Which namespaces and labels the policy covers.
    #[serde(default)]
    pub scope: PolicyScope,
    /// How far Nanny may go: report, dry-run, or act.
    pub mode: Mode,
    /// Issue kinds that trigger analysis; empty means all.
    #[serde(default)]
    pub triggers: Vec<String>,
    /// Actions the policy allows, with approval overrides and ceilings.
    #[serde(default)]
    pub actions: Vec<AllowedAction>,
    /// Rate limits, cooldowns and disruption caps.
    #[serde(default)]
    pub limits: Limits,
    /// LLM analysis settings.
    #[serde(default)]
    pub ai: AiSettings,
    /// Rule switches and parameters for this policy; unset fields keep the
    /// analyzer's configuration.
    #[serde(default, skip_serializing_if = "RuleOverrides::is_empty")]
    pub rules: RuleOverrides,
    /// How long to watch a target after acting before judging the action.
    #[serde(default = "default_verification_timeout")]
    #[schemars(range(min = 10, max = 3600))]
    pub verification_timeout_seconds: u32,
    /// Unapproved actions expire after this long.
    #[serde(default = "default_approval_ttl")]
    #[schemars(range(min = 60, max = 604_800))]
    pub approval_ttl_seconds: u32,
    /// Roll an action back when its verification fails.
    #[serde(default = "default_true")]
    pub rollback_on_failure: bool,
    /// RestartPod may delete a pod that no controller owns (nothing
    /// recreates it).
    #[serde(default)]
    pub allow_bare_pod_restart: bool,
    /// What a drain does about protected pods on its node (a protected
    /// namespace or label, or a protected owner): `Skip` drains around them
    /// and leaves them in place; `Refuse` refuses the drain.
    #[serde(default)]
    pub drain_protected_pods: DrainProtectedPods,
    /// Stops all new actions while true.
    #[serde(default)]
    pub paused: bool,
    /// What to try next when an action does not help, and when to hand the
    /// incident to a human instead.
    #[serde(default)]
    pub ladder: crate::Ladder,
    /// Who is told when an action waits for a human or an incident is
    /// escalated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<crate::Notifications>,
}

/// See [`HealingPolicySpec::drain_protected_pods`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DrainProtectedPods {
    /// Drain around them: they are never evicted.
    #[default]
    Skip,
    /// Refuse to drain the node.
    Refuse,
}

fn default_true() -> bool {
    true
}

fn default_verification_timeout() -> u32 {
    300
}

fn default_approval_ttl() -> u32 {
    86_400
}

/// The part of the cluster a policy covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyScope {
    /// Namespaces; empty means all (protected ones are still never acted on).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// A label selector string, e.g. `app.kubernetes.io/part-of=shop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
}

/// The seeds' phases 1–3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Mode {
    /// Detect and report only.
    Monitor,
    /// Additionally dry-run every approved action and record the diff.
    DryRun,
    /// Execute approved actions.
    Auto,
}

/// One allowed action type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedAction {
    /// The action type.
    #[serde(rename = "type")]
    pub type_: ActionType,
    /// Override the default approval level; can only make it stricter for never-actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// Parameter ceilings for this action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceilings: Option<Ceilings>,
}

/// Approval level for an action type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Approval {
    /// Execute without a human when the gate approves.
    Auto,
    /// Wait for a human.
    Manual,
}

/// Upper bounds on action parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ceilings {
    /// Highest maxReplicas an HPA may be raised to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10_000))]
    pub max_replicas: Option<i32>,
    /// Highest memory limit, as a Kubernetes quantity (e.g. `4Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<String>,
    /// Largest PVC size, as a Kubernetes quantity (e.g. `500Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_storage: Option<String>,
}

/// Rate limits, cooldowns and disruption caps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Most actions per hour under this policy.
    #[schemars(range(min = 0, max = 10_000))]
    pub max_actions_per_hour: u32,
    /// Quiet time per target after an action.
    #[schemars(range(min = 0, max = 86_400))]
    pub cooldown_seconds: u32,
    /// Most of a workload's replicas disrupted at once, in percent.
    #[schemars(range(min = 1, max = 100))]
    pub max_disruption_percent: u32,
    /// Most actions per hour in one namespace; 0 uses the gate's default.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10_000))]
    pub max_actions_per_namespace_per_hour: u32,
    /// Most actions per hour on one target; 0 uses the gate's default.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1_000))]
    pub max_actions_per_target_per_hour: u32,
    /// Consecutive failed or ineffective actions on a target that open its
    /// circuit breaker; 0 uses the gate's default.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub breaker_failure_threshold: u32,
    /// How long an open breaker denies before one trial; 0 uses the gate's default.
    #[serde(default)]
    #[schemars(range(min = 0, max = 86_400))]
    pub breaker_open_seconds: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_actions_per_hour: 10,
            cooldown_seconds: 300,
            max_disruption_percent: 25,
            max_actions_per_namespace_per_hour: 0,
            max_actions_per_target_per_hour: 0,
            breaker_failure_threshold: 0,
            breaker_open_seconds: 0,
        }
    }
}

/// LLM analysis settings (the seeds' aiConfig).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AiSettings {
    /// Whether the LLM is consulted at all.
    pub enabled: bool,
    /// Model override; empty uses the analyzer's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Model recommendations below this confidence are dropped.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_confidence: f64,
    /// Most model recommendations per snapshot.
    #[schemars(range(min = 1, max = 100))]
    pub max_recommendations: u32,
    /// Whether a recommendation only the model made may ever be auto-approved.
    #[serde(default)]
    pub allow_auto_approve: bool,
    /// Extra instructions for the model by scenario: `memoryAnalysis`,
    /// `performanceAnalysis`, `crashAnalysis`, `nodeAnalysis`,
    /// `storageAnalysis`, `jobAnalysis`, `configAnalysis`, or `general`
    /// (always); at most 2000 characters each.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 8,
        "additionalProperties" = { "type": "string", "maxLength": 2000 },
        "x-kubernetes-validations" = [{
            "rule": "self.all(k, k in ['general', 'crashAnalysis', 'memoryAnalysis', 'performanceAnalysis', 'nodeAnalysis', 'storageAnalysis', 'jobAnalysis', 'configAnalysis'])",
            "message": "prompts are keyed by scenario: general, crashAnalysis, memoryAnalysis, performanceAnalysis, nodeAnalysis, storageAnalysis, jobAnalysis or configAnalysis"
        }]
    ))]
    pub prompts: BTreeMap<String, String>,
}

impl Default for AiSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            model: None,
            min_confidence: 0.75,
            max_recommendations: 5,
            allow_auto_approve: false,
            prompts: BTreeMap::new(),
        }
    }
}

/// Per-policy rule tuning, within the bounds the analyzer enforces.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleOverrides {
    /// Rule ids switched off, e.g. `crashloop-restart`, `pvc-expand`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(length(max = 64)),
        extend("x-kubernetes-validations" = [{
            "rule": "self.all(id, id in ['crashloop-restart', 'crashloop-rollout-restart', 'oom-raise-memory-limit', 'stale-job-delete', 'hpa-raise-max', 'node-not-ready-cordon', 'node-not-ready-drain', 'node-not-ready-cordon-drain', 'node-pressure-cordon', 'pvc-expand', 'report-image-pull', 'report-config-error', 'report-unschedulable', 'report-runtime-error', 'report-stuck-terminating', 'report-pvc-pending', 'report-pvc-lost', 'report-namespace-terminating', 'report-deployment-unavailable', 'report-pdb-blocking', 'evicted-pods-delete', 'stuck-pod-force-delete', 'pdb-scale-up', 'cronjob-resume', 'report-cronjob-suspended', 'report-cronjob-missed', 'report-replica-failure', 'node-problem-cordon', 'report-init-failing', 'report-probe-failing', 'report-volume-mount', 'report-sandbox', 'report-scheduling-gated', 'report-restarting', 'report-cronjob-invalid', 'report-workload-short', 'rollout-stuck-undo', 'node-recovered-uncordon', 'report-service-no-endpoints', 'report-service-selects-nothing', 'report-statefulset-service', 'report-webhook-no-endpoints', 'report-network-policy-selects-nothing', 'report-ingress-misconfigured', 'report-volume', 'report-hpa', 'job-failed-retrigger', 'report-certificate', 'pvc-predicted-expand', 'oom-predicted-raise-memory-limit', 'report-rightsizing', 'report-idle', 'rightsizing-lower-requests', 'node-predicted-cordon', 'hpa-predicted-raise-max'])",
            "message": "unknown rule id; the analyzer's rules are crashloop-restart, crashloop-rollout-restart, oom-raise-memory-limit, stale-job-delete, hpa-raise-max, node-not-ready-cordon, node-not-ready-drain, node-not-ready-cordon-drain, node-pressure-cordon, pvc-expand, report-image-pull, report-config-error, report-unschedulable, report-runtime-error, report-stuck-terminating, report-pvc-pending, report-pvc-lost, report-namespace-terminating, report-deployment-unavailable, report-pdb-blocking, evicted-pods-delete, stuck-pod-force-delete, pdb-scale-up, cronjob-resume, report-cronjob-suspended, report-cronjob-missed, report-replica-failure, node-problem-cordon, report-init-failing, report-probe-failing, report-volume-mount, report-sandbox, report-scheduling-gated, report-restarting, report-cronjob-invalid, report-workload-short, rollout-stuck-undo, node-recovered-uncordon, report-service-no-endpoints, report-service-selects-nothing, report-statefulset-service, report-webhook-no-endpoints, report-network-policy-selects-nothing, report-ingress-misconfigured, report-volume, report-hpa, job-failed-retrigger, report-certificate, pvc-predicted-expand, oom-predicted-raise-memory-limit, report-rightsizing, report-idle, rightsizing-lower-requests, node-predicted-cordon and hpa-predicted-raise-max"
        }])
    )]
    pub disabled: Vec<String>,
    /// Restarts a container must have before its pod is restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub crashloop_min_restarts: Option<u32>,
    /// Share of a workload's replicas crash looping, in percent, above which
    /// one rollout restart replaces the pod restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub crashloop_rollout_percent: Option<u32>,
    /// Factor applied to the memory limit after an OOM kill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 4.0))]
    pub oom_memory_factor: Option<f64>,
    /// Factor applied to an HPA's maxReplicas when it is at max.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 4.0))]
    pub hpa_max_replicas_factor: Option<f64>,
    /// A completed Job must have finished at least this long ago; at least
    /// the analyzer's own `rules.stale_job.min_age_secs` (default 86400),
    /// which a policy may raise but not lower.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 31_536_000))]
    pub stale_job_min_age_seconds: Option<u64>,
    /// Expand a volume at this usage percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 100.0))]
    pub pvc_usage_percent: Option<f64>,
    /// Factor applied to a volume's capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 4.0))]
    pub pvc_expand_factor: Option<f64>,
    /// Also propose draining a NotReady node (pressure only cordons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_not_ready: Option<bool>,
}

impl RuleOverrides {
    /// Nothing overridden.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What the coordinator reports about a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealingPolicyStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// HealingActions under this policy, by phase.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub actions_by_phase: BTreeMap<String, u32>,
    /// RFC 3339 time of the last action change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<String>,
    /// e.g. `Ready`, `Degraded` (analyzer running rules-only).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// What executed actions did, per issue kind, action type, source and
    /// workload (at most [`crate::MAX_OUTCOME_ENTRIES`]): kept across
    /// action retention and coordinator restarts; rebuilt from the
    /// HealingActions still kept when lost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub outcomes: Vec<crate::OutcomeStats>,
}
