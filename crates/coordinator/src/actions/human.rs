//! Waiting on a human: an approval or rejection (in the spec or as an
//! annotation, under the requester's own name), re-checked by the gate, or
//! the approval's expiry.

use k8s_openapi::jiff::Timestamp;
use kube::{
    ResourceExt as _,
    api::{Patch, PatchParams},
    runtime::events::EventType,
};
use nanny_crd::{
    APPROVE_ANNOTATION, Decision as RecordedDecision, HumanApproval, HumanDecision, Mode, NotifyOn,
    Phase, REJECT_ANNOTATION,
};
use nanny_proto::v1::Decision;

use super::{
    HUMAN, Next, TARGET_GONE,
    plan::{combined, reviewed_steps},
    records::human_approval,
    step::Step,
};
use crate::error::Error;

impl Step<'_> {
    /// PendingApproval → Approved | Denied | Expired, or keep waiting.
    pub(super) async fn await_human(mut self) -> Result<Next, Error> {
        let approval = match self.action.spec.approval.clone() {
            Some(approval) => approval,
            None => match self.approval_from_annotations().await? {
                Some(approval) => approval,
                None => {
                    self.notify(NotifyOn::PendingApproval);
                    return self.expire_if_due().await;
                }
            },
        };
        if approval.decision == HumanDecision::Reject {
            let reason = format!("rejected by {}: {}", approval.by, approval.comment);
            return self
                .deny(vec![HUMAN.into()], vec![reason], Some(&approval))
                .await;
        }
        // A human said yes: the gate still checks everything a human cannot
        // overrule (protection, limits, storm guard) against today's cluster.
        let Some(policy) = self.policy() else {
            return self
                .deny(
                    vec!["policy-missing".into()],
                    vec!["the HealingPolicy no longer exists".into()],
                    None,
                )
                .await;
        };
        let recs = match self.recommendations() {
            Ok(recs) => recs,
            Err(error) => {
                return self
                    .deny(vec!["invalid-action".into()], vec![error.to_string()], None)
                    .await;
            }
        };
        let human = human_approval(&approval);
        // A plan: every step again, under the one approval.
        let verdicts = match self.ask_gate_all(&policy, &recs, Some(&human)).await {
            Ok(Some(verdicts)) => verdicts,
            Ok(None) => {
                return self
                    .deny(
                        vec![TARGET_GONE.into()],
                        vec!["the target is no longer in the cluster".into()],
                        None,
                    )
                    .await;
            }
            Err(error) => {
                tracing::warn!(%error, "Safety gate unavailable for an approved action; retrying later.");
                return Ok(Next::Wait);
            }
        };
        let (decision, mut record) = combined(&verdicts);
        if !matches!(decision, Decision::Approved | Decision::NeedsApproval)
            || policy.spec.mode != Mode::Auto
        {
            let mut reasons = record.reasons.clone();
            reasons.push(format!(
                "approved by {}, but the safety gate now refuses it",
                approval.by
            ));
            return self.deny(record.matched_rules.clone(), reasons, None).await;
        }
        let mut status = self.status();
        if !self.action.spec.plan.is_empty() {
            status.steps = reviewed_steps(&self.action, &verdicts);
        }
        record.decision = RecordedDecision::Approved;
        record.matched_rules.push(HUMAN.to_owned());
        record
            .reasons
            .push(format!("approved by {} at {}", approval.by, approval.at));
        status.verdict = Some(record);
        let message = format!("approved by {}", approval.by);
        self.write(status, Phase::Approved, "HumanApproved", &message)
            .await?;
        self.event(EventType::Normal, "ActionApproved", &message)
            .await;
        Ok(Next::Now)
    }

    /// Moves an approve/reject annotation into `spec.approval`, so the
    /// record says who decided and when.
    pub(super) async fn approval_from_annotations(
        &mut self,
    ) -> Result<Option<HumanApproval>, Error> {
        let annotations = self.action.annotations();
        let (decision, value) = if let Some(v) = annotations.get(REJECT_ANNOTATION) {
            (HumanDecision::Reject, v.clone())
        } else if let Some(v) = annotations.get(APPROVE_ANNOTATION) {
            (HumanDecision::Approve, v.clone())
        } else {
            return Ok(None);
        };
        let approval = HumanApproval {
            decision,
            by: if value.is_empty() {
                "kubectl annotate".to_owned()
            } else {
                value.clone()
            },
            at: Timestamp::now().to_string(),
            comment: format!(
                "from the {} annotation",
                if decision == HumanDecision::Approve {
                    APPROVE_ANNOTATION
                } else {
                    REJECT_ANNOTATION
                }
            ),
        };
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": self.action.resource_version() },
            "spec": { "approval": approval },
        });
        match self
            .api
            .patch(
                &self.action.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(written) => self.action = written,
            Err(kube::Error::Api(status)) if status.code == 409 => {
                return Err(Error::Conflict(format!(
                    "HealingAction {}",
                    self.action.name_any()
                )));
            }
            Err(error) => return Err(error.into()),
        }
        Ok(Some(approval))
    }

    pub(super) async fn expire_if_due(mut self) -> Result<Next, Error> {
        let due = self
            .status()
            .expires_at
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_some_and(|t| Timestamp::now() >= t);
        if !due {
            return Ok(Next::Wait);
        }
        let status = self.status();
        self.write(
            status,
            Phase::Expired,
            "ApprovalExpired",
            "nobody approved it in time",
        )
        .await?;
        self.event(
            EventType::Normal,
            "ActionExpired",
            "Nobody approved the action in time",
        )
        .await;
        Ok(Next::Now)
    }
}
