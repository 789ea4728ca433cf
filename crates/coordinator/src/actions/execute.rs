//! Execution: Approved → Executing → Verifying → Succeeded | Failed, PDB
//! blocks, dry runs, outcomes reported to the gate, and rollbacks.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::{ResourceExt as _, runtime::events::EventType};
use nanny_crd::{HealingPolicy, Outcome, Phase, ResultRecord};
use nanny_proto::v1::{
    self as pb, ExecuteRequest, OutcomeReport, RollbackRequest, RollbackReview, Verdict,
};

use super::{
    IN_PROGRESS_GRACE, Next,
    records::{
        failed, no_verdict, record_message, result_record, rollback_requested, verdict_from_record,
    },
    step::Step,
};
use crate::{convert, error::Error};

impl Step<'_> {
    /// Approved | Executing → Succeeded | Failed (then rollback).
    #[expect(
        clippy::too_many_lines,
        reason = "the execution phase: the request, its result record and the outcome report stay together, so a resumed step repeats exactly the same request"
    )]
    pub(super) async fn execute(mut self) -> Result<Next, Error> {
        let Some(policy) = self.policy() else {
            let mut status = self.status();
            status.result = Some(failed("the HealingPolicy no longer exists; not executed"));
            self.write(status, Phase::Failed, "PolicyMissing", "not executed")
                .await?;
            return Ok(Next::Now);
        };
        let mut status = self.status();
        // After a blocked try the action waits its turn.
        let turn = status
            .retry_at
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map(|at| at.duration_since(Timestamp::now()))
            .and_then(|left| Duration::try_from(left).ok())
            .filter(|left| !left.is_zero());
        if let Some(left) = turn {
            return Ok(Next::After(left));
        }
        // Tries a budget answered are no unanswered attempts.
        if status.attempts.saturating_sub(status.blocked) >= self.inner().ctx.config.max_attempts {
            status.result = Some(failed(&format!(
                "the remediator did not answer after {} attempts",
                status.attempts
            )));
            self.write(status, Phase::Failed, "RemediatorUnavailable", "gave up")
                .await?;
            return Ok(Next::Now);
        }
        // Count the attempt before making it, so a crash loop cannot retry forever.
        status.attempts += 1;
        status.retry_at = None;
        self.write(
            status,
            Phase::Executing,
            "Executing",
            "the remediator is acting",
        )
        .await?;
        let rec = self.recommendation()?;
        let record = self.status().verdict.unwrap_or_else(no_verdict);
        let request = ExecuteRequest {
            action_id: self.action.name_any(),
            recommendation: Some(rec.clone()),
            verdict: Some(verdict_from_record(
                &record,
                &rec.id,
                &self.action.spec.policy_ref,
            )),
            dry_run: false,
            verification_timeout_seconds: i64::from(policy.spec.verification_timeout_seconds),
            ..ExecuteRequest::default()
        };
        // ABORTED: the remediator is still running this action id (a call
        // made before a restart of ours): wait for its result rather than
        // spending attempts. The one wait inside a step: the attempt is
        // already counted, and a requeue would count another; it holds one
        // of the controller's `max_in_flight` slots, only after a restart.
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(u64::from(policy.spec.verification_timeout_seconds))
            + IN_PROGRESS_GRACE;
        let mut call = self
            .inner()
            .remediator
            .clone()
            .execute(request.clone())
            .await;
        while let Err(status) = &call
            && status.code() == tonic::Code::Aborted
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(self.inner().ctx.config.retry_backoff()).await;
            call = self
                .inner()
                .remediator
                .clone()
                .execute(request.clone())
                .await;
        }
        let result = match call {
            Ok(result) => result.into_inner(),
            Err(status) => {
                let error = Error::peer("remediator", status);
                if error.is_transient() {
                    tracing::warn!(%error, action = %self.action.name_any(), "Remediator unavailable; the execution is retried with the same action id.");
                    return Ok(Next::After(self.inner().ctx.config.retry_backoff()));
                }
                let mut status = self.status();
                status.result = Some(failed(&error.to_string()));
                self.write(status, Phase::Failed, "ExecuteFailed", &error.to_string())
                    .await?;
                self.event(EventType::Warning, "ActionFailed", &error.to_string())
                    .await;
                return Ok(Next::Now);
            }
        };
        let outcome = pb::Outcome::try_from(result.outcome).unwrap_or(pb::Outcome::Unspecified);
        if outcome == pb::Outcome::Blocked {
            return self.blocked(&policy, &rec, &result).await;
        }
        let (phase, reason) = match outcome {
            pb::Outcome::Succeeded => (Phase::Succeeded, "Verified"),
            pb::Outcome::Ineffective => (Phase::Failed, "Ineffective"),
            pb::Outcome::Refused => (Phase::Failed, "Refused"),
            _ => (Phase::Failed, "Failed"),
        };
        let mut status = self.status();
        let record = result_record(&result);
        let message = record_message(&record);
        status.result = Some(record);
        self.write(status, phase, reason, &message).await?;
        let (event_type, event_reason) = if phase == Phase::Succeeded {
            (EventType::Normal, "ActionSucceeded")
        } else {
            (EventType::Warning, "ActionFailed")
        };
        self.event(event_type, event_reason, &message).await;
        self.report_outcome(&policy, &rec, outcome, result.finished_at)
            .await;
        Ok(Next::Now)
    }

    /// A PodDisruptionBudget refused the eviction and nothing was written:
    /// the action waits and tries again under the same verdict; when the
    /// tries or the verdict run out, it fails and a human decides. Never a
    /// delete instead.
    pub(super) async fn blocked(
        mut self,
        policy: &HealingPolicy,
        rec: &pb::Recommendation,
        result: &pb::ActionResult,
    ) -> Result<Next, Error> {
        let config = &self.inner().ctx.config;
        let (retry_secs, tries) = (config.blocked_retry_secs, config.blocked_tries);
        let mut status = self.status();
        status.blocked += 1;
        let next = Timestamp::now()
            + Duration::from_secs(retry_secs)
                .try_into()
                .unwrap_or(k8s_openapi::jiff::SignedDuration::MAX);
        let verdict_ends = status
            .verdict
            .as_ref()
            .and_then(|v| v.expires_at.as_deref())
            .and_then(|t| t.parse::<Timestamp>().ok());
        if status.blocked < tries && verdict_ends.is_none_or(|end| next < end) {
            let message = format!(
                "blocked (try {} of {tries}; nothing was written); next try at {next}: {}",
                status.blocked, result.error
            );
            status.retry_at = Some(next.to_string());
            let first = status.blocked == 1;
            self.write(status, Phase::Approved, "DisruptionBudgetBlocked", &message)
                .await?;
            if first {
                self.event(EventType::Warning, "EvictionBlocked", &message)
                    .await;
            }
            return Ok(Next::Wait);
        }
        let message = format!(
            "a PodDisruptionBudget refused all {} tries and nothing was written; a human must decide (make room in the budget and propose again, or act by hand): {}",
            status.blocked, result.error
        );
        status.retry_at = None;
        status.result = Some(ResultRecord {
            error: message.clone(),
            ..result_record(result)
        });
        self.write(status, Phase::Failed, "DisruptionBudgetBlocked", &message)
            .await?;
        self.inner()
            .escalations
            .with_label_values(&["disruption-budget"])
            .inc();
        self.event(EventType::Warning, "Escalated", &message).await;
        self.report_outcome(policy, rec, pb::Outcome::Blocked, result.finished_at)
            .await;
        Ok(Next::Now)
    }

    /// Tells the gate how the action ended (its limits and breakers count it).
    pub(super) async fn report_outcome(
        &self,
        policy: &HealingPolicy,
        rec: &pb::Recommendation,
        outcome: pb::Outcome,
        finished_at: Option<prost_types::Timestamp>,
    ) {
        let report = OutcomeReport {
            recommendation_id: rec.id.clone(),
            target: rec.target.clone(),
            action_type: self.action.spec.action.type_.proto() as i32,
            outcome: outcome as i32,
            finished_at,
            workload_uid: self.action.spec.workload_uid.clone().unwrap_or_default(),
            policy_ref: self.action.spec.policy_ref.clone(),
            limits: convert::gate_policy(&policy.spec).limits,
            // The gate counts an outcome only for a verdict it issued.
            audit_id: self
                .status()
                .verdict
                .map(|v| v.audit_id)
                .unwrap_or_default(),
        };
        if let Err(status) = self.inner().gate.clone().record_outcome(report).await {
            tracing::warn!(code = ?status.code(), message = status.message(), "Cannot report the outcome to the safety gate; it rebuilds its limits from the HealingActions on restart.");
        }
    }

    /// The dry run of the action, or of every step of its plan (each
    /// against the cluster as it is now, before any step ran), their diffs
    /// one after the other.
    pub(super) async fn dry_run_all(
        &self,
        policy: &HealingPolicy,
        verdicts: &[(pb::Recommendation, Verdict)],
    ) -> ResultRecord {
        if let [(rec, verdict)] = verdicts {
            return self
                .dry_run(policy, rec, verdict, &self.action.name_any())
                .await;
        }
        let mut all: Option<ResultRecord> = None;
        for (step, (rec, verdict)) in verdicts.iter().enumerate() {
            let action_id = format!("{}-s{}", self.action.name_any(), step + 1);
            let record = self.dry_run(policy, rec, verdict, &action_id).await;
            // The first step's record is the base; every step adds its diff
            // and error, and an outcome other than a dry run.
            let all = all.get_or_insert_with(|| ResultRecord {
                dry_run_diff: String::new(),
                error: String::new(),
                ..record.clone()
            });
            all.dry_run_diff
                .push_str(&format!("# step {} ({})\n", step + 1, rec.id));
            all.dry_run_diff.push_str(&record.dry_run_diff);
            if !record.error.is_empty() {
                all.error
                    .push_str(&format!("step {}: {}; ", step + 1, record.error));
            }
            if record.outcome != Outcome::DryRun {
                all.outcome = record.outcome;
            }
        }
        all.unwrap_or_else(|| failed("dry run: no step"))
    }

    async fn dry_run(
        &self,
        policy: &HealingPolicy,
        rec: &pb::Recommendation,
        verdict: &Verdict,
        action_id: &str,
    ) -> ResultRecord {
        let request = ExecuteRequest {
            action_id: action_id.to_owned(),
            recommendation: Some(rec.clone()),
            verdict: Some(verdict.clone()),
            dry_run: true,
            verification_timeout_seconds: i64::from(policy.spec.verification_timeout_seconds),
            ..ExecuteRequest::default()
        };
        match self.inner().remediator.clone().execute(request).await {
            Ok(result) => result_record(&result.into_inner()),
            Err(status) => failed(&format!("dry run: {}", Error::peer("remediator", status))),
        }
    }

    /// Succeeded | Failed: roll back on failure when the policy says so, or
    /// when a human asks; then close.
    #[expect(
        clippy::too_many_lines,
        reason = "the rollback decision, the gate's word and the remediator's call are one sequence"
    )]
    pub(super) async fn finish_or_roll_back(mut self) -> Result<Next, Error> {
        let status = self.status();
        if status.rollback.is_some() {
            return self.close().await;
        }
        let policy = self.policy();
        let pre_image = status
            .result
            .as_ref()
            .is_some_and(|r| !r.pre_image_ref.is_empty());
        let automatic = status.phase == Some(Phase::Failed)
            && pre_image
            && policy.as_ref().is_some_and(|p| p.spec.rollback_on_failure)
            && status
                .result
                .as_ref()
                .is_some_and(|r| matches!(r.outcome, Outcome::Ineffective | Outcome::Failed));
        let reason = match rollback_requested(&self.action) {
            Some(reason) => format!("requested: {reason}"),
            None if automatic => "verification failed".to_owned(),
            None => return self.close().await,
        };
        let target = convert::object_ref(&self.action.spec.target);
        // The remediator rolls back only under the gate's signed word.
        let review = RollbackReview {
            action_id: self.action.name_any(),
            audit_id: status
                .verdict
                .as_ref()
                .map(|v| v.audit_id.clone())
                .unwrap_or_default(),
            recommendation_id: self.action.spec.recommendation_id.clone(),
            target: Some(target.clone()),
            action_type: self.action.spec.action.type_.proto() as i32,
            policy_ref: self.action.spec.policy_ref.clone(),
            reason: reason.clone(),
        };
        let verdict = match self.inner().gate.clone().review_rollback(review).await {
            Ok(verdict) => verdict.into_inner(),
            Err(status) => {
                let error = Error::peer("safety-gate", status);
                if error.is_transient() {
                    return Ok(Next::After(self.inner().ctx.config.retry_backoff()));
                }
                let message = format!("the safety gate refused the rollback: {error}");
                return self.rollback_failed(failed(&message), &message).await;
            }
        };
        if verdict.decision != pb::Decision::Approved as i32 {
            let message = format!(
                "the safety gate refused the rollback: {}",
                verdict.reasons.join("; ")
            );
            return self.rollback_failed(failed(&message), &message).await;
        }
        let request = RollbackRequest {
            action_id: self.action.name_any(),
            reason: reason.clone(),
            target: Some(target),
            verdict: Some(verdict),
        };
        let (record, rolled_back) = match self.inner().remediator.clone().rollback(request).await {
            Ok(result) => {
                let result = result.into_inner();
                let rolled_back = result.outcome == pb::Outcome::RolledBack as i32;
                (result_record(&result), rolled_back)
            }
            Err(status) => {
                let error = Error::peer("remediator", status);
                if error.is_transient() {
                    return Ok(Next::After(self.inner().ctx.config.retry_backoff()));
                }
                (failed(&error.to_string()), false)
            }
        };
        if !rolled_back {
            let message = record_message(&record);
            return self.rollback_failed(record, &message).await;
        }
        let mut status = self.status();
        status.rollback = Some(record);
        self.write(status, Phase::RolledBack, "RolledBack", &reason)
            .await?;
        self.event(EventType::Normal, "ActionRolledBack", &reason)
            .await;
        Ok(Next::Now)
    }

    /// A rollback the gate refused or the remediator could not carry out:
    /// recorded with `message`, the phase kept.
    pub(super) async fn rollback_failed(
        mut self,
        record: ResultRecord,
        message: &str,
    ) -> Result<Next, Error> {
        let mut status = self.status();
        status.rollback = Some(record);
        let phase = status.phase.unwrap_or(Phase::Failed);
        self.write(status, phase, "RollbackFailed", message).await?;
        self.event(EventType::Warning, "RollbackFailed", message)
            .await;
        Ok(Next::Now)
    }
}
