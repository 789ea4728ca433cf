//! Multi-step plans: a HealingAction whose `spec.plan` lists up to
//! [`MAX_PLAN_STEPS`] actions on its target.
//!
//! The gate reviews every step when the plan is proposed; the plan's level
//! is the strictest of its steps' (a human approves the whole plan once).
//! Each step then runs as its own HealingAction (`spec.planStep` names the
//! plan): reviewed by the gate against the cluster as it is when that step
//! starts, executed and verified by the remediator like any action. The
//! next step starts only once the step before it succeeded. The first step
//! that does not succeed stops the plan, and the steps that ran are rolled
//! back, last first, each under the gate's signed word. The plan's status
//! shows every step's phase.

use std::collections::BTreeMap;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::OwnerReference, jiff::Timestamp};
use kube::{
    Resource as _, ResourceExt as _,
    api::{Patch, PatchParams, PostParams},
    runtime::events::EventType,
};
use nanny_crd::{
    ACTION_TYPE_LABEL, Decision as RecordedDecision, HealingAction, HealingActionStatus,
    HealingPolicy, HumanDecision, MAX_PLAN_STEPS, OPEN_LABEL, Outcome, PLAN_LABEL, POLICY_LABEL,
    Phase, PlanStepRef, PlanStepStatus, ROLLBACK_ANNOTATION, ResultRecord, TARGET_UID_LABEL,
    TargetRef, VerdictRecord,
};
use nanny_proto::v1::{self as pb, Decision, Verdict};

use super::{
    Next, action_name, find, label_value,
    records::{human_approval, rollback_requested, verdict_record},
    step::Step,
};
use crate::{convert, error::Error};

/// How long a plan waits for a snapshot taken after its last step
/// finished before it gives up on the next step.
const SNAPSHOT_PATIENCE_SECS: i64 = 600;

/// How often a plan looks at its running step.
const POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// The decision of a set of verdicts (one per step) and its record: a single
/// action's own; a plan's the strictest of its steps', with every step's
/// reasons. A plan's record carries no signature: the plan itself is never
/// executed, its steps are, each under its own verdict.
pub(super) fn combined(verdicts: &[(pb::Recommendation, Verdict)]) -> (Decision, VerdictRecord) {
    let decision_of = |v: &Verdict| Decision::try_from(v.decision).unwrap_or(Decision::Unspecified);
    let Some((_, strictest)) = verdicts
        .iter()
        .max_by_key(|(_, v)| RecordedDecision::from_proto(v.decision))
    else {
        return (Decision::Denied, super::records::no_verdict());
    };
    let decision = decision_of(strictest);
    let mut record = verdict_record(strictest);
    if verdicts.len() == 1 {
        return (decision, record);
    }
    record.signature = None;
    record.key_id.clear();
    record.expires_at = None;
    record.matched_rules = Vec::new();
    record.reasons = Vec::new();
    for (step, (rec, verdict)) in verdicts.iter().enumerate() {
        for rule in &verdict.matched_rules {
            if !record.matched_rules.contains(rule) {
                record.matched_rules.push(rule.clone());
            }
        }
        let action = rec
            .action
            .as_ref()
            .and_then(|a| a.kind.as_ref())
            .map_or("?", |k| {
                nanny_proto::vocabulary::action_type(k).as_str_name()
            });
        record.reasons.push(format!(
            "step {} ({action}): {}: {}",
            step + 1,
            RecordedDecision::from_proto(verdict.decision),
            verdict.reasons.join("; ")
        ));
    }
    (decision, record)
}

/// A plan's steps as the whole-plan review left them.
pub(super) fn reviewed_steps(
    action: &HealingAction,
    verdicts: &[(pb::Recommendation, Verdict)],
) -> Vec<PlanStepStatus> {
    action
        .spec
        .plan
        .iter()
        .enumerate()
        .map(|(i, step)| PlanStepStatus {
            step: u32::try_from(i + 1).unwrap_or(u32::MAX),
            type_: step.type_,
            decision: verdicts
                .get(i)
                .map(|(_, v)| RecordedDecision::from_proto(v.decision)),
            healing_action: String::new(),
            phase: None,
            rollback: None,
            message: String::new(),
        })
        .collect()
}

impl Step<'_> {
    /// What the gate reviews for this action: its recommendation, or one
    /// per step of its plan.
    ///
    /// # Errors
    /// [`Error::Invalid`] when a step cannot be read back exactly or the
    /// plan is too long.
    pub(super) fn recommendations(&self) -> Result<Vec<pb::Recommendation>, Error> {
        let spec = &self.action.spec;
        if spec.plan.is_empty() {
            return Ok(vec![self.recommendation()?]);
        }
        if !(2..=MAX_PLAN_STEPS).contains(&spec.plan.len()) {
            return Err(Error::invalid(
                "spec.plan",
                format!(
                    "{} steps; a plan has 2 to {MAX_PLAN_STEPS}",
                    spec.plan.len()
                ),
            ));
        }
        if spec.plan_step.is_some() {
            return Err(Error::invalid(
                "spec.planStep",
                "a plan is not a step of another plan",
            ));
        }
        if spec.plan[0] != spec.action {
            return Err(Error::invalid(
                "spec.plan[0]",
                "the first step is not spec.action",
            ));
        }
        let created = self.action.meta().creation_timestamp.as_ref().map(|t| t.0);
        (1..=spec.plan.len())
            .map(|step| convert::step_recommendation(spec, created, step))
            .collect()
    }

    /// The gate's verdict on each of `recs`, in order; `None` when the
    /// target is gone.
    pub(super) async fn ask_gate_all(
        &self,
        policy: &HealingPolicy,
        recs: &[pb::Recommendation],
        human: Option<&pb::HumanApproval>,
    ) -> Result<Option<Vec<(pb::Recommendation, Verdict)>>, Error> {
        let mut verdicts = Vec::with_capacity(recs.len());
        for rec in recs {
            match self.ask_gate(policy, rec, human.cloned()).await? {
                Some(verdict) => verdicts.push((rec.clone(), verdict)),
                None => return Ok(None),
            }
        }
        Ok(Some(verdicts))
    }

    /// A plan step's share of its plan's human approval: the approval of
    /// the plan (in this namespace) that holds exactly this step (same
    /// policy, target, recommendation id, this action at this position),
    /// owns this HealingAction under the step's own name, is running, and
    /// has reached this step (every step before it succeeded, this one
    /// started as this HealingAction). `Ok(Ok(None))` for an action that is
    /// no step, or a plan the gate approved without a human.
    ///
    /// # Errors
    /// The API server's error reading the plan (the review is retried);
    /// `Ok(Err(why))` when the action claims a plan that does not hold it
    /// (it is denied).
    pub(super) async fn plan_approval(
        &self,
    ) -> Result<Result<Option<pb::HumanApproval>, String>, Error> {
        let Some(step) = &self.action.spec.plan_step else {
            return Ok(Ok(None));
        };
        let Some(plan) = self.api.get_opt(&step.action).await? else {
            return Ok(Err(format!("its plan {} does not exist", step.action)));
        };
        let spec = &self.action.spec;
        let index = usize::try_from(step.step).unwrap_or(0).wrapping_sub(1);
        let name = self.action.name_any();
        let holds = plan.spec.policy_ref == spec.policy_ref
            && same_object(&plan.spec.target, &spec.target)
            && plan.spec.recommendation_id == step.recommendation_id
            && plan.spec.plan.get(index) == Some(&spec.action)
            && plan.spec.plan.len() == usize::try_from(step.steps).unwrap_or(0)
            && spec.recommendation_id == convert::step_id(&step.recommendation_id, index + 1)
            && name == step_name(&plan, index + 1)
            && owned_by(&self.action, &plan);
        if !holds {
            return Ok(Err(format!(
                "plan {} does not hold this HealingAction as its step {}",
                step.action, step.step
            )));
        }
        if !matches!(
            plan.phase(),
            Phase::Approved | Phase::Executing | Phase::Verifying
        ) {
            return Ok(Err(format!(
                "plan {} is {}, not running",
                step.action,
                plan.phase()
            )));
        }
        let steps = plan.status.clone().unwrap_or_default().steps;
        let reached = steps.len() == plan.spec.plan.len()
            && steps[..index.min(steps.len())]
                .iter()
                .all(|s| s.phase == Some(Phase::Succeeded))
            && steps.get(index).is_some_and(|s| s.healing_action == name);
        if !reached {
            return Ok(Err(format!(
                "plan {} has not reached its step {} as this HealingAction",
                step.action, step.step
            )));
        }
        Ok(Ok(plan
            .spec
            .approval
            .filter(|a| a.decision == HumanDecision::Approve)
            .map(|a| human_approval(&a))))
    }

    /// Approved | Executing: starts the next step, or follows the running
    /// one; Succeeded once every step did, Failed at the first that did not.
    pub(super) async fn run_plan(mut self) -> Result<Next, Error> {
        let mut status = self.status();
        if status.steps.len() != self.action.spec.plan.len() {
            status.steps = reviewed_steps(&self.action, &[]);
        }
        let steps = status.steps.len();
        for index in 0..steps {
            let entry = &status.steps[index];
            if entry.phase == Some(Phase::Succeeded) {
                continue;
            }
            let name = step_name(&self.action, index + 1);
            let Some(child) = self.api.get_opt(&name).await? else {
                return self.start_step(status, index, name).await;
            };
            if !owned_by(&child, &self.action) || child.spec.plan_step.is_none() {
                let message = format!(
                    "step {} of {steps}: HealingAction {name} exists but is not this plan's; the plan stops",
                    index + 1
                );
                return self.stop(status, "StepNotOwned", &message).await;
            }
            let phase = child.phase();
            let entry = &mut status.steps[index];
            let changed = entry.phase != Some(phase) || entry.healing_action != name;
            entry.healing_action = name.clone();
            entry.phase = Some(phase);
            entry.message = child_message(&child);
            if phase == Phase::Succeeded {
                let message = format!("step {} of {steps} succeeded", index + 1);
                self.write(status, Phase::Executing, "StepSucceeded", &message)
                    .await?;
                self.event(EventType::Normal, "PlanStepSucceeded", &message)
                    .await;
                return Ok(Next::Now);
            }
            if phase.is_terminal() {
                let message = format!(
                    "step {} of {steps} ({}) ended {phase}: {}; the plan stops and the steps that ran are rolled back",
                    index + 1,
                    entry.type_.name(),
                    entry.message
                );
                return self.stop(status, "StepFailed", &message).await;
            }
            if changed {
                let message = format!("step {} of {steps}: {phase}", index + 1);
                self.write(status, Phase::Executing, "StepProgress", &message)
                    .await?;
                if phase == Phase::PendingApproval {
                    let ns = self.action.namespace().unwrap_or_default();
                    self.event(
                        EventType::Normal,
                        "PlanStepNeedsApproval",
                        &format!(
                            "{message}: the gate wants a human for this step now; approve with: nannyctl approve {name} -n {ns}"
                        ),
                    )
                    .await;
                }
            }
            return Ok(Next::After(POLL));
        }
        let message = format!("all {steps} steps succeeded, each verified");
        status.result = Some(plan_record(Outcome::Succeeded, &message));
        self.write(status, Phase::Succeeded, "PlanSucceeded", &message)
            .await?;
        self.event(EventType::Normal, "ActionSucceeded", &message)
            .await;
        Ok(Next::Now)
    }

    /// The plan stops at a step: Failed with `message` (then its steps
    /// that ran are rolled back).
    async fn stop(
        mut self,
        mut status: HealingActionStatus,
        reason: &str,
        message: &str,
    ) -> Result<Next, Error> {
        status.result = Some(plan_record(Outcome::Failed, message));
        self.write(status, Phase::Failed, reason, message).await?;
        self.event(EventType::Warning, "ActionFailed", message)
            .await;
        Ok(Next::Now)
    }

    /// Starts step `index + 1`: its HealingAction's name is written into
    /// the plan's status first (a step's review checks it there), then the
    /// HealingAction is created, once a snapshot shows what the step
    /// before it left. A step whose HealingAction went missing after it
    /// was seen running is not started again: the plan stops.
    async fn start_step(
        mut self,
        mut status: HealingActionStatus,
        index: usize,
        name: String,
    ) -> Result<Next, Error> {
        let steps = status.steps.len();
        let entry = &mut status.steps[index];
        let seen_running = entry.phase.is_some_and(|p| p != Phase::Proposed);
        if entry.healing_action == name && seen_running {
            let message = format!(
                "step {} of {steps}: its HealingAction {name} is gone; the plan stops",
                index + 1
            );
            return self.stop(status, "StepGone", &message).await;
        }
        if entry.healing_action != name {
            entry.healing_action = name;
            entry.phase = Some(Phase::Proposed);
            let message = format!(
                "step {} of {steps} ({}) starting",
                index + 1,
                entry.type_.name()
            );
            entry.message = message.clone();
            self.write(status, Phase::Executing, "StepStarted", &message)
                .await?;
            return Ok(Next::Now);
        }
        match self.step_target(index, &status).await? {
            StepTarget::Ready(target) => {
                self.create_step(index + 1, &name, target).await?;
                Ok(Next::After(POLL))
            }
            StepTarget::Wait => Ok(Next::After(POLL)),
            StepTarget::Gone(why) => {
                let message = format!("step {} of {steps}: {why}; the plan stops", index + 1);
                self.stop(status, "StepGone", &message).await
            }
        }
    }

    /// Succeeded | Failed: a failed plan rolls back every step that ran,
    /// last first; a succeeded one does when a human asks. Each step is
    /// rolled back by its own HealingAction (the gate signs each), and the
    /// next only once the one after it is done.
    pub(super) async fn finish_plan(mut self) -> Result<Next, Error> {
        let mut status = self.status();
        if status.rollback.is_some() {
            return self.close().await;
        }
        let reason = match (rollback_requested(&self.action), status.phase) {
            (Some(reason), _) => format!("requested: {reason}"),
            (None, Some(Phase::Failed)) => {
                format!("plan {} failed at a step", self.action.name_any())
            }
            _ => return self.close().await,
        };
        let Some((undone, failure)) = self.unwind(&mut status, &reason).await? else {
            return Ok(Next::After(POLL));
        };
        // A failed rollback stops the unwinding: the steps before it stay
        // as they are, under the one that could not be undone, for a human.
        let (phase, outcome, message, good) = match failure {
            None if undone > 0 => (
                Phase::RolledBack,
                Outcome::RolledBack,
                format!("every step that ran was rolled back, last first ({reason})"),
                true,
            ),
            None => (
                status.phase.unwrap_or(Phase::Failed),
                Outcome::Refused,
                format!("no step changed anything; nothing to roll back ({reason})"),
                true,
            ),
            Some(why) => (
                status.phase.unwrap_or(Phase::Failed),
                Outcome::Failed,
                format!(
                    "rolling back the plan stopped: {why}; the steps before it are left as they are for a human ({reason})"
                ),
                false,
            ),
        };
        status.rollback = Some(plan_record(outcome, &message));
        self.write(status, phase, "PlanRolledBack", &message)
            .await?;
        let (kind, event) = if good {
            (EventType::Normal, "ActionRolledBack")
        } else {
            (EventType::Warning, "RollbackFailed")
        };
        self.event(kind, event, &message).await;
        Ok(Next::Now)
    }

    /// Rolls the plan's steps back, last first, one at a time: `None`
    /// while one is being rolled back (or its own driver is still at it);
    /// then how many were undone, and why the unwinding stopped, if it did.
    async fn unwind(
        &self,
        status: &mut HealingActionStatus,
        reason: &str,
    ) -> Result<Option<(usize, Option<String>)>, Error> {
        let mut undone = 0;
        let mut failure = None;
        for index in (0..status.steps.len()).rev() {
            let name = status.steps[index].healing_action.clone();
            if name.is_empty() {
                continue;
            }
            let Some(child) = self.api.get_opt(&name).await? else {
                failure = Some(format!("step {}: its HealingAction is gone", index + 1));
                break;
            };
            let child_status = child.status.clone().unwrap_or_default();
            let result = child_status.result.as_ref();
            if !result.is_some_and(|r| r.outcome.executed()) {
                // Denied, refused, expired: it changed nothing.
                continue;
            }
            if result.is_some_and(|r| r.pre_image_ref.is_empty()) {
                failure = Some(format!(
                    "step {} ({}) changed the cluster and cannot be undone",
                    index + 1,
                    child.spec.action.type_.name()
                ));
                break;
            }
            match &child_status.rollback {
                Some(record) if record.outcome == Outcome::RolledBack => {
                    status.steps[index].rollback = Some(record.outcome);
                    undone += 1;
                }
                Some(record) => {
                    status.steps[index].rollback = Some(record.outcome);
                    failure = Some(format!(
                        "step {}: {}",
                        index + 1,
                        super::records::record_message(record)
                    ));
                    break;
                }
                // The step's own driver is still at it (a rollback of its
                // own after a failed verification, or its close): asked
                // only once it is done, so it never rolls back twice.
                None if child.labels().get(OPEN_LABEL).is_some_and(|v| v == "true") => {
                    return Ok(None);
                }
                None => {
                    if rollback_requested(&child).is_none() {
                        self.request_rollback(&name, reason, index + 1).await?;
                    }
                    return Ok(None);
                }
            }
        }
        Ok(Some((undone, failure)))
    }

    /// Asks the step's HealingAction to roll back (the annotation a human
    /// would set); its own driver asks the gate and the remediator.
    async fn request_rollback(&self, name: &str, reason: &str, step: usize) -> Result<(), Error> {
        let value = format!("step {step} of {}: {reason}", self.action.name_any());
        let patch = serde_json::json!({
            "metadata": { "annotations": { ROLLBACK_ANNOTATION: value } }
        });
        self.api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(())
    }

    /// The target step `index + 1` is pinned to: the plan's own for the
    /// first; for a later one, the object as the first snapshot taken after
    /// the step before it finished shows it (its resourceVersion then), so
    /// the step acts on what the steps before it left and nothing else.
    /// An object gone from the snapshot keeps the plan's reference: the
    /// gate then denies the step.
    async fn step_target(
        &self,
        index: usize,
        status: &HealingActionStatus,
    ) -> Result<StepTarget, Error> {
        let mut target = self.action.spec.target.clone();
        let Some(before) = index.checked_sub(1).and_then(|i| status.steps.get(i)) else {
            return Ok(StepTarget::Ready(target));
        };
        let Some(step) = self.api.get_opt(&before.healing_action).await? else {
            return Ok(StepTarget::Gone(format!(
                "the HealingAction of the step before it, {}, is gone",
                before.healing_action
            )));
        };
        let step = step.status.unwrap_or_default();
        let Some(finished) = step
            .result
            .and_then(|r| r.finished_at)
            .or(step.phase_since)
            .and_then(|t| t.parse::<Timestamp>().ok())
        else {
            return Ok(StepTarget::Gone(
                "the step before it records no time it finished".to_owned(),
            ));
        };
        let waited = Timestamp::now().as_second() - finished.as_second();
        let snapshot = self
            .latest_snapshot()
            .await
            .filter(|s| s.taken_at.is_some_and(|t| t.seconds > finished.as_second()));
        let Some(snapshot) = snapshot else {
            if waited > SNAPSHOT_PATIENCE_SECS {
                return Ok(StepTarget::Gone(format!(
                    "no snapshot of the policy's scope came in the {SNAPSHOT_PATIENCE_SECS}s since the step before it finished"
                )));
            }
            return Ok(StepTarget::Wait);
        };
        if let Some(seen) = find(&snapshot, &target.uid) {
            target.resource_version.clone_from(&seen.resource_version);
        }
        Ok(StepTarget::Ready(target))
    }

    /// Creates step `step`'s HealingAction: the plan's spec with the step's
    /// action on `target`, its own recommendation id and `planStep`, owned
    /// by the plan.
    async fn create_step(&self, step: usize, name: &str, target: TargetRef) -> Result<(), Error> {
        let plan = &self.action.spec;
        let action = plan
            .plan
            .get(step.wrapping_sub(1))
            .cloned()
            .ok_or_else(|| Error::invalid("spec.plan", format!("no step {step}")))?;
        let mut spec = plan.clone();
        spec.action = action;
        spec.target = target;
        spec.plan = Vec::new();
        spec.approval = None;
        spec.recommendation_id = convert::step_id(&plan.recommendation_id, step);
        spec.plan_step = Some(PlanStepRef {
            action: self.action.name_any(),
            recommendation_id: plan.recommendation_id.clone(),
            step: u32::try_from(step).unwrap_or(u32::MAX),
            steps: u32::try_from(plan.plan.len()).unwrap_or(u32::MAX),
        });
        let labels = BTreeMap::from([
            (POLICY_LABEL.to_owned(), label_value(&spec.policy_ref)),
            (TARGET_UID_LABEL.to_owned(), label_value(&spec.target.uid)),
            (
                ACTION_TYPE_LABEL.to_owned(),
                spec.action.type_.name().to_owned(),
            ),
            (OPEN_LABEL.to_owned(), "true".to_owned()),
            (PLAN_LABEL.to_owned(), label_value(&self.action.name_any())),
        ]);
        let mut child = HealingAction::new(name, spec);
        child.metadata.namespace = self.action.namespace();
        child.metadata.labels = Some(labels);
        child.metadata.owner_references = Some(vec![OwnerReference {
            api_version: HealingAction::api_version(&()).into_owned(),
            kind: HealingAction::kind(&()).into_owned(),
            name: self.action.name_any(),
            uid: self.action.uid().unwrap_or_default(),
            ..OwnerReference::default()
        }]);
        match self.api.create(&PostParams::default(), &child).await {
            // Created before a restart: the same step, carry on with it.
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

/// Whether two references name the same object (a later step is pinned to
/// a newer resourceVersion of the plan's target).
fn same_object(a: &TargetRef, b: &TargetRef) -> bool {
    (&a.kind, &a.namespace, &a.name, &a.uid) == (&b.kind, &b.namespace, &b.name, &b.uid)
}

/// A plan's own result: how its steps ended, in words (an error unless it
/// succeeded or was rolled back).
fn plan_record(outcome: Outcome, message: &str) -> ResultRecord {
    let good = matches!(outcome, Outcome::Succeeded | Outcome::RolledBack);
    ResultRecord {
        outcome,
        dry_run_diff: String::new(),
        pre_image_ref: String::new(),
        verification: if good {
            message.to_owned()
        } else {
            String::new()
        },
        error: if good {
            String::new()
        } else {
            message.to_owned()
        },
        finished_at: Some(Timestamp::now().to_string()),
    }
}

/// Where a plan's next step stands before its HealingAction is created.
enum StepTarget {
    /// Pinned to this reference.
    Ready(TargetRef),
    /// No snapshot after the step before it yet.
    Wait,
    /// The step cannot start: why.
    Gone(String),
}

/// The name of step `step`'s HealingAction of `plan`: deterministic, so a
/// coordinator that restarts finds the step it started, and the remediator
/// (whose records are keyed by it) never runs one step twice.
fn step_name(plan: &HealingAction, step: usize) -> String {
    let spec = &plan.spec;
    let action = spec
        .plan
        .get(step.wrapping_sub(1))
        .map_or("step", |a| a.type_.name());
    action_name(
        &spec.target.name,
        action,
        &spec.policy_ref,
        &convert::step_id(&spec.recommendation_id, step),
    )
}

/// Whether `child` names `plan` (by uid) among its owners.
fn owned_by(child: &HealingAction, plan: &HealingAction) -> bool {
    let uid = plan.uid();
    child
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == uid.as_ref() && o.kind == "HealingAction")
}

/// A step's last word: its result's, or its verdict's reasons.
fn child_message(child: &HealingAction) -> String {
    let status = child.status.clone().unwrap_or_default();
    let message = status
        .result
        .as_ref()
        .map(super::records::record_message)
        .filter(|m| !m.is_empty())
        .or_else(|| status.verdict.map(|v| v.reasons.join("; ")))
        .unwrap_or_default();
    message.chars().take(512).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(decision: Decision, rule: &str) -> (pb::Recommendation, Verdict) {
        (
            pb::Recommendation {
                action: Some(pb::Action {
                    kind: Some(pb::action::Kind::RolloutRestart(pb::RolloutRestart {})),
                }),
                ..pb::Recommendation::default()
            },
            Verdict {
                decision: decision as i32,
                matched_rules: vec![rule.to_owned()],
                reasons: vec![format!("because {rule}")],
                signature: vec![1, 2, 3],
                audit_id: rule.to_owned(),
                ..Verdict::default()
            },
        )
    }

    #[test]
    fn a_plan_is_as_strict_as_its_strictest_step_and_never_signed() {
        let (decision, record) = combined(&[
            verdict(Decision::Approved, "a"),
            verdict(Decision::NeedsApproval, "b"),
            verdict(Decision::Approved, "c"),
        ]);
        assert_eq!(decision, Decision::NeedsApproval);
        assert_eq!(record.decision, RecordedDecision::NeedsApproval);
        assert_eq!(record.audit_id, "b", "the deciding step's audit record");
        assert!(record.signature.is_none());
        assert_eq!(record.matched_rules, ["a", "b", "c"]);
        assert_eq!(record.reasons.len(), 3);
        assert!(
            record.reasons[1].starts_with("step 2 (ACTION_TYPE_ROLLOUT_RESTART): NeedsApproval")
        );

        let (decision, _) = combined(&[
            verdict(Decision::Approved, "a"),
            verdict(Decision::Unspecified, "b"),
        ]);
        assert_eq!(
            decision,
            Decision::Unspecified,
            "an unknown decision denies the plan"
        );
        let (decision, _) = combined(&[
            verdict(Decision::DryRunOnly, "a"),
            verdict(Decision::Denied, "b"),
        ]);
        assert_eq!(decision, Decision::Denied);
        let (decision, record) = combined(&[verdict(Decision::Approved, "a")]);
        assert_eq!(decision, Decision::Approved);
        assert!(
            record.signature.is_some(),
            "a single action keeps its signed verdict"
        );
        let (decision, _) = combined(&[]);
        assert_eq!(decision, Decision::Denied, "no verdict, no action");
    }
}
