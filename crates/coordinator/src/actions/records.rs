//! The records a HealingAction keeps of its verdict and result, and the
//! verdict the remediator is shown, rebuilt from them.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use nanny_crd::{
    Decision as RecordedDecision, HealingAction, Outcome, ROLLBACK_ANNOTATION, ResultRecord,
    VerdictRecord,
};
use nanny_proto::v1::{self as pb, Verdict};

pub(super) fn rollback_requested(action: &HealingAction) -> Option<String> {
    action.annotations().get(ROLLBACK_ANNOTATION).cloned()
}

/// An empty record, filled in by whoever decides.
pub(super) fn no_verdict() -> VerdictRecord {
    VerdictRecord::default()
}

pub(super) fn verdict_record(verdict: &Verdict) -> VerdictRecord {
    VerdictRecord {
        decision: RecordedDecision::from_proto(verdict.decision),
        matched_rules: verdict.matched_rules.clone(),
        reasons: verdict.reasons.clone(),
        audit_id: verdict.audit_id.clone(),
        decided_at: Some(
            verdict
                .decided_at
                .and_then(|t| Timestamp::new(t.seconds, t.nanos).ok())
                .unwrap_or_else(Timestamp::now)
                .to_string(),
        ),
        signature: (!verdict.signature.is_empty())
            .then(|| k8s_openapi::ByteString(verdict.signature.clone())),
        key_id: verdict.key_id.clone(),
        expires_at: verdict
            .expires_at
            .and_then(|t| Timestamp::new(t.seconds, t.nanos).ok())
            .map(|t| t.to_string()),
        allow_bare_pod_restart: verdict.allow_bare_pod_restart,
        human_approved: verdict.human_approved,
        audit_seq: (verdict.audit_seq > 0).then_some(verdict.audit_seq),
        audit_hash: verdict.audit_hash.clone(),
        retry_at: (verdict.retry_after_seconds > 0).then(|| {
            (Timestamp::now() + Duration::from_secs(u64::from(verdict.retry_after_seconds)))
                .to_string()
        }),
    }
}

/// The verdict the remediator is shown, rebuilt from the record: only a
/// recorded `Approved` (by the gate, or by a human and re-checked by the
/// gate) becomes APPROVED.
pub(super) fn verdict_from_record(
    record: &VerdictRecord,
    recommendation_id: &str,
    policy_ref: &str,
) -> Verdict {
    let decision = record.decision.proto();
    Verdict {
        recommendation_id: recommendation_id.to_owned(),
        decision: decision as i32,
        matched_rules: record.matched_rules.clone(),
        reasons: record.reasons.clone(),
        policy_ref: policy_ref.to_owned(),
        audit_id: record.audit_id.clone(),
        decided_at: None,
        // The gate's signature, passed on untouched: the remediator checks it
        // covers exactly this recommendation, decision and expiry.
        signature: record
            .signature
            .as_ref()
            .map(|s| s.0.clone())
            .unwrap_or_default(),
        key_id: record.key_id.clone(),
        expires_at: record
            .expires_at
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map(|t| prost_types::Timestamp {
                seconds: t.as_second(),
                nanos: t.subsec_nanosecond(),
            }),
        allow_bare_pod_restart: record.allow_bare_pod_restart,
        human_approved: record.human_approved,
        audit_seq: record.audit_seq.unwrap_or_default(),
        audit_hash: record.audit_hash.clone(),
        // Advisory, for the proposer; the remediator has no use for it.
        retry_after_seconds: 0,
    }
}

pub(super) fn result_record(result: &pb::ActionResult) -> ResultRecord {
    ResultRecord {
        outcome: Outcome::from_proto(result.outcome),
        dry_run_diff: result.dry_run_diff.clone(),
        pre_image_ref: result.pre_image_ref.clone(),
        verification: result
            .verification
            .as_ref()
            .map(|v| {
                let state =
                    pb::VerificationState::try_from(v.state).map_or("UNKNOWN", |s| s.as_str_name());
                format!(
                    "{}: {}",
                    state.trim_start_matches("VERIFICATION_STATE_"),
                    v.message
                )
            })
            .unwrap_or_default(),
        error: result.error.clone(),
        finished_at: result
            .finished_at
            .and_then(|t| Timestamp::new(t.seconds, t.nanos).ok())
            .map(|t| t.to_string()),
    }
}

pub(super) fn failed(error: &str) -> ResultRecord {
    ResultRecord {
        outcome: Outcome::Failed,
        dry_run_diff: String::new(),
        pre_image_ref: String::new(),
        verification: String::new(),
        error: error.to_owned(),
        finished_at: Some(Timestamp::now().to_string()),
    }
}

pub(super) fn record_message(record: &ResultRecord) -> String {
    [
        record.outcome.as_str(),
        record.verification.as_str(),
        record.error.as_str(),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join(": ")
}

/// Most recent actions a model question carries.
const TRIED: usize = 32;

impl super::Driver {
    /// What Nanny did recently under `policy_ref`, newest first, for the
    /// model's evidence: the actions that ran (with their outcome) or that
    /// the gate or a human refused. Actions still under way, waiting, or
    /// only recorded (Monitor, DryRun) tried nothing yet: listing their
    /// every phase would have the model asked again at each step.
    pub fn tried(&self, policy_ref: &str) -> Vec<pb::TriedAction> {
        let history = self.history(policy_ref);
        let now = Timestamp::now();
        let mut actions: Vec<_> = self
            .inner
            .ctx
            .actions
            .state()
            .into_iter()
            .filter(|a| a.spec.policy_ref == policy_ref)
            .collect();
        actions.sort_by_key(|a| std::cmp::Reverse(a.creation_timestamp().map(|t| t.0)));
        actions
            .iter()
            .filter_map(|a| Some((a, tried_outcome(a)?)))
            .take(TRIED)
            .map(|(a, outcome)| {
                let workload = a.spec.workload_uid.as_deref().unwrap_or(&a.spec.target.uid);
                let (outcomes_7d, effective_7d) =
                    crate::history::recent_counts(&history, a.spec.action.type_, workload, now);
                pb::TriedAction {
                    target_uid: a.spec.target.uid.clone(),
                    workload_uid: a.spec.workload_uid.clone().unwrap_or_default(),
                    action: a.spec.action.type_.name().to_owned(),
                    outcome: outcome.to_owned(),
                    outcomes_7d,
                    effective_7d,
                }
            })
            .collect()
    }
}

/// How a tried action ended: its result's outcome once it ran (not a dry
/// run), or `Denied`; `None` for one that tried nothing (yet).
fn tried_outcome(action: &HealingAction) -> Option<&'static str> {
    let status = action.status.as_ref()?;
    match status.result.as_ref().map(|r| r.outcome) {
        Some(Outcome::DryRun) | None => {
            (action.phase() == nanny_crd::Phase::Denied).then_some("Denied")
        }
        Some(outcome) => Some(outcome.as_str()),
    }
}

/// A recorded human approval as the gate's contract carries it.
pub(super) fn human_approval(
    approval: &nanny_crd::HumanApproval,
) -> nanny_proto::v1::HumanApproval {
    nanny_proto::v1::HumanApproval {
        by: approval.by.clone(),
        at: approval
            .at
            .parse::<k8s_openapi::jiff::Timestamp>()
            .ok()
            .map(|t| prost_types::Timestamp {
                seconds: t.as_second(),
                nanos: t.subsec_nanosecond(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use nanny_proto::v1::Decision;

    use super::*;

    #[test]
    fn only_a_recorded_approval_becomes_an_approved_verdict() {
        // Records as stored in the CR, spelled as any coordinator wrote them.
        let record = |decision: &str| -> VerdictRecord {
            serde_json::from_value(serde_json::json!({
                "decision": decision, "matchedRules": [], "reasons": [], "auditId": "a1",
            }))
            .unwrap()
        };
        let verdict = verdict_from_record(&record("NeedsApproval"), "r", "p/q");
        assert_eq!(verdict.decision, Decision::NeedsApproval as i32);
        assert_eq!(
            verdict_from_record(&record("Approved"), "r", "p/q").decision,
            Decision::Approved as i32
        );
        assert_eq!(
            verdict_from_record(&record("garbage"), "r", "p/q").decision,
            Decision::Denied as i32
        );
    }

    #[test]
    fn only_actions_that_ran_or_were_refused_count_as_tried() {
        let action = |status: serde_json::Value| -> HealingAction {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "nanny.ai/v1alpha1", "kind": "HealingAction",
                "metadata": { "name": "a", "namespace": "shop" },
                "spec": {
                    "policyRef": "shop/default",
                    "target": { "kind": "Pod", "namespace": "shop", "name": "web-1", "uid": "p1" },
                    "action": { "type": "RestartPod" },
                    "source": { "kind": "Rule", "name": "crashloop-restart" },
                    "confidence": 100, "reasoning": "r", "recommendationId": "r", "snapshotId": "s",
                },
                "status": status,
            }))
            .unwrap()
        };
        let result = |outcome: &str| serde_json::json!({ "phase": "Succeeded", "result": { "outcome": outcome } });
        assert_eq!(
            tried_outcome(&action(result("Ineffective"))),
            Some("Ineffective")
        );
        assert_eq!(
            tried_outcome(&action(result("Succeeded"))),
            Some("Succeeded")
        );
        assert_eq!(
            tried_outcome(&action(serde_json::json!({ "phase": "Denied" }))),
            Some("Denied")
        );
        // Tried nothing: a dry run, a waiting or a running action.
        assert_eq!(tried_outcome(&action(result("DryRun"))), None);
        for phase in ["Proposed", "PendingApproval", "Executing", "Recorded"] {
            assert_eq!(
                tried_outcome(&action(serde_json::json!({ "phase": phase }))),
                None,
                "{phase}"
            );
        }
    }
}
