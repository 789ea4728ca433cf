//! The parts of a HealingPolicy the services enforce, in the gRPC contract's
//! terms: the safety gate's [`pb::GatePolicy`] and the analyzer's
//! [`pb::AnalysisSettings`]. Shared by the coordinator and nannyctl, so a
//! policy means the same thing wherever it is read.

use nanny_proto::v1 as pb;

use crate::{AllowedAction, Approval, DrainProtectedPods, HealingPolicySpec, Mode};

/// The parts of a HealingPolicy the gate enforces.
pub fn gate_policy(spec: &HealingPolicySpec) -> pb::GatePolicy {
    pb::GatePolicy {
        mode: match spec.mode {
            Mode::Monitor => pb::PolicyMode::Monitor,
            Mode::DryRun => pb::PolicyMode::DryRun,
            Mode::Auto => pb::PolicyMode::Auto,
        } as i32,
        allowed_actions: spec.actions.iter().map(allowed_action).collect(),
        limits: Some(pb::GateLimits {
            max_actions_per_hour: spec.limits.max_actions_per_hour,
            cooldown_seconds: spec.limits.cooldown_seconds,
            max_disruption_percent: spec.limits.max_disruption_percent,
            max_actions_per_namespace_per_hour: spec.limits.max_actions_per_namespace_per_hour,
            max_actions_per_target_per_hour: spec.limits.max_actions_per_target_per_hour,
            breaker_failure_threshold: spec.limits.breaker_failure_threshold,
            breaker_open_seconds: spec.limits.breaker_open_seconds,
        }),
        ai_min_confidence: spec.ai.min_confidence,
        ai_allow_auto_approve: spec.ai.allow_auto_approve,
        paused: spec.paused,
        allow_bare_pod_restart: spec.allow_bare_pod_restart,
        drain_refuses_protected_pods: spec.drain_protected_pods == DrainProtectedPods::Refuse,
    }
}

fn allowed_action(a: &AllowedAction) -> pb::AllowedAction {
    let ceilings = a.ceilings.clone().unwrap_or_default();
    // An unparsable ceiling becomes 0, which the gate treats as "nothing
    // allowed" for the parameter: stricter, never looser.
    #[allow(clippy::cast_possible_truncation)]
    let bytes =
        |q: Option<String>| q.map(|q| nanny_common::quantity::parse(&q).map_or(0, |v| v as i64));
    pb::AllowedAction {
        r#type: a.type_.proto() as i32,
        approval: match a.approval {
            None => pb::ApprovalOverride::Unspecified,
            Some(Approval::Auto) => pb::ApprovalOverride::Auto,
            Some(Approval::Manual) => pb::ApprovalOverride::Manual,
        } as i32,
        max_replicas: ceilings.max_replicas,
        max_memory_bytes: bytes(ceilings.max_memory),
        max_storage_bytes: bytes(ceilings.max_storage),
    }
}

/// `trigger` (`CrashLoopBackOff`, `crash_loop_back_off` or
/// `ISSUE_KIND_CRASH_LOOP_BACK_OFF`) as an issue kind; `Unspecified` for a
/// name no kind has, which matches no issue: an unknown trigger narrows the
/// policy, never widens it to every issue.
pub fn issue_kind(trigger: &str) -> pb::IssueKind {
    let normal = |s: &str| {
        s.trim_start_matches("ISSUE_KIND_")
            .replace('_', "")
            .to_ascii_lowercase()
    };
    let wanted = normal(trigger);
    (1..)
        .map_while(|n| pb::IssueKind::try_from(n).ok())
        .find(|k| normal(k.as_str_name()) == wanted)
        .unwrap_or(pb::IssueKind::Unspecified)
}

/// What the analyzer applies for a HealingPolicy: its model settings, its
/// allowed actions with ceilings, its triggers and its rule overrides.
pub fn analysis_settings(spec: &HealingPolicySpec) -> pb::AnalysisSettings {
    let rules = &spec.rules;
    pb::AnalysisSettings {
        model: spec.ai.model.clone().unwrap_or_default(),
        min_confidence: Some(spec.ai.min_confidence),
        max_recommendations: Some(spec.ai.max_recommendations),
        prompts: spec
            .ai
            .prompts
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        allowed_actions: spec.actions.iter().map(allowed_action).collect(),
        triggers: spec.triggers.iter().map(|t| issue_kind(t) as i32).collect(),
        rules: Some(pb::RuleOverrides {
            disabled: rules.disabled.clone(),
            crashloop_min_restarts: rules.crashloop_min_restarts,
            crashloop_rollout_percent: rules.crashloop_rollout_percent,
            oom_memory_factor: rules.oom_memory_factor,
            hpa_max_replicas_factor: rules.hpa_max_replicas_factor,
            stale_job_min_age_seconds: rules.stale_job_min_age_seconds,
            pvc_usage_percent: rules.pvc_usage_percent,
            pvc_expand_factor: rules.pvc_expand_factor,
            drain_not_ready: rules.drain_not_ready,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_map_to_issue_kinds_in_any_spelling_and_unknown_ones_match_nothing() {
        assert_eq!(
            issue_kind("CrashLoopBackOff"),
            pb::IssueKind::CrashLoopBackOff
        );
        assert_eq!(
            issue_kind("ISSUE_KIND_OOM_KILLED"),
            pb::IssueKind::OomKilled
        );
        assert_eq!(issue_kind("pvc_nearly_full"), pb::IssueKind::PvcNearlyFull);
        assert_eq!(issue_kind("Sunburn"), pb::IssueKind::Unspecified);
    }

    #[test]
    fn a_policy_becomes_analysis_settings() {
        let spec: HealingPolicySpec = serde_json::from_value(serde_json::json!({
            "mode": "Auto",
            "triggers": ["OOMKilled", "Sunburn"],
            "actions": [{ "type": "PatchResources", "ceilings": { "maxMemory": "2Gi" } }],
            "ai": {
                "enabled": true, "model": "tiny", "minConfidence": 0.9,
                "maxRecommendations": 2,
                "prompts": { "memoryAnalysis": "Think about JVM heaps." }
            },
            "rules": { "disabled": ["crashloop-restart"], "oomMemoryFactor": 2.0 }
        }))
        .unwrap();
        let settings = analysis_settings(&spec);
        assert_eq!(settings.model, "tiny");
        assert_eq!(settings.min_confidence, Some(0.9));
        assert_eq!(settings.max_recommendations, Some(2));
        assert_eq!(settings.prompts["memoryAnalysis"], "Think about JVM heaps.");
        assert_eq!(
            settings.triggers,
            [
                pb::IssueKind::OomKilled as i32,
                pb::IssueKind::Unspecified as i32
            ]
        );
        assert_eq!(settings.allowed_actions[0].max_memory_bytes, Some(2 << 30));
        let rules = settings.rules.unwrap();
        assert_eq!(rules.disabled, ["crashloop-restart"]);
        assert_eq!(rules.oom_memory_factor, Some(2.0));
        assert_eq!(rules.crashloop_min_restarts, None);
    }
}
