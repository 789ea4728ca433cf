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

/// How often a plan looks at its running step.
const POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// How strict a decision is: approved < needs approval < dry run < denied.
fn strictness(decision: Decision) -> u8 {
    match decision {
        Decision::Approved => 0,
        Decision::NeedsApproval => 1,
        Decision::DryRunOnly => 2,
        Decision::Denied | Decision::Unspecified => 3,
    }
}

/// The decision of a set of verdicts (one per step) and its record: a single
/// action's own; a plan's the strictest of its steps', with every step's
/// reasons. A plan's record carries no signature: the plan itself is never
/// executed, its steps are, each under its own verdict.
pub(super) fn combined(verdicts: &[(pb::Recommendation, Verdict)]) -> (Decision, VerdictRecord) {
    let decision_of = |v: &Verdict| Decision::try_from(v.decision).unwrap_or(Decision::Unspecified);
    let Some((_, strictest)) = verdicts
        .iter()
        .max_by_key(|(_, v)| strictness(decision_of(v)))
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
    /// policy, target, recommendation id, and this action at this
    /// position) and is running. `Ok(None)` for an action that is no step,
    /// or a plan the gate approved without a human.
    ///
    /// # Errors
    /// Why the action claims a plan that does not hold it (it is denied).
    pub(super) async fn plan_approval(&self) -> Result<Option<pb::HumanApproval>, String> {
        let Some(step) = &self.action.spec.plan_step else {
            return Ok(None);
        };
        let plan = match self.api.get_opt(&step.action).await {
            Ok(Some(plan)) => plan,
            Ok(None) => return Err(format!("its plan {} does not exist", step.action)),
            Err(error) => return Err(format!("its plan {} cannot be read: {error}", step.action)),
        };
        let spec = &self.action.spec;
        let holds = plan.spec.policy_ref == spec.policy_ref
            && same_object(&plan.spec.target, &spec.target)
            && plan.spec.recommendation_id == step.recommendation_id
            && usize::try_from(step.step)
                .ok()
                .and_then(|i| plan.spec.plan.get(i.wrapping_sub(1)))
                == Some(&spec.action)
            && plan.spec.plan.len() == usize::try_from(step.steps).unwrap_or(0)
            && spec.recommendation_id
                == convert::step_id(&step.recommendation_id, step.step as usize);
        if !holds {
            return Err(format!(
                "plan {} does not hold this action as its step {}",
                step.action, step.step
            ));
        }
        if !matches!(
            plan.phase(),
            Phase::Approved | Phase::Executing | Phase::Verifying
        ) {
            return Err(format!(
                "plan {} is {}, not running",
                step.action,
                plan.phase()
            ));
        }
        Ok(plan
            .spec
            .approval
            .filter(|a| a.decision == HumanDecision::Approve)
            .map(|a| human_approval(&a)))
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
            let name = self.step_name(index + 1);
            let Some(child) = self.api.get_opt(&name).await? else {
                let Some(target) = self.step_target(index, &status).await? else {
                    return Ok(Next::After(POLL));
                };
                self.create_step(index + 1, &name, target).await?;
                let entry = &mut status.steps[index];
                entry.healing_action = name;
                entry.phase = Some(Phase::Proposed);
                let message = format!(
                    "step {} of {steps} ({}) started",
                    index + 1,
                    entry.type_.name()
                );
                entry.message = message.clone();
                self.write(status, Phase::Executing, "StepStarted", &message)
                    .await?;
                return Ok(Next::After(POLL));
            };
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
                status.result = Some(plan_record(Outcome::Failed, &message));
                self.write(status, Phase::Failed, "StepFailed", &message)
                    .await?;
                self.event(EventType::Warning, "ActionFailed", &message)
                    .await;
                return Ok(Next::Now);
            }
            if changed {
                let message = format!("step {} of {steps}: {phase}", index + 1);
                self.write(status, Phase::Executing, "StepProgress", &message)
                    .await?;
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
        let mut failures = Vec::new();
        for index in (0..status.steps.len()).rev() {
            let name = status.steps[index].healing_action.clone();
            if name.is_empty() {
                continue;
            }
            let Some(child) = self.api.get_opt(&name).await? else {
                failures.push(format!("step {}: its HealingAction is gone", index + 1));
                continue;
            };
            let child_status = child.status.clone().unwrap_or_default();
            // Only what changed something, and left a pre-image to undo it
            // from, can be rolled back.
            let undoable = child_status
                .result
                .as_ref()
                .is_some_and(|r| r.outcome.executed() && !r.pre_image_ref.is_empty());
            if !undoable
                || !matches!(
                    child.phase(),
                    Phase::Succeeded | Phase::Failed | Phase::RolledBack
                )
            {
                continue;
            }
            match &child_status.rollback {
                Some(record) => {
                    status.steps[index].rollback = Some(record.outcome);
                    if record.outcome != Outcome::RolledBack {
                        failures.push(format!(
                            "step {}: {}",
                            index + 1,
                            super::records::record_message(record)
                        ));
                    }
                }
                None => {
                    if rollback_requested(&child).is_none() {
                        self.request_rollback(&name, &reason, index + 1).await?;
                    }
                    return Ok(Next::After(POLL));
                }
            }
        }
        let (phase, outcome, message) = if failures.is_empty() {
            (
                Phase::RolledBack,
                Outcome::RolledBack,
                format!("every step that ran was rolled back ({reason})"),
            )
        } else {
            (
                status.phase.unwrap_or(Phase::Failed),
                Outcome::Failed,
                format!("rolling back the plan failed: {}", failures.join("; ")),
            )
        };
        status.rollback = Some(plan_record(outcome, &message));
        self.write(status, phase, "PlanRolledBack", &message)
            .await?;
        let kind = if failures.is_empty() {
            (EventType::Normal, "ActionRolledBack")
        } else {
            (EventType::Warning, "RollbackFailed")
        };
        self.event(kind.0, kind.1, &message).await;
        Ok(Next::Now)
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

    /// The name of step `step`'s HealingAction: deterministic, so a
    /// coordinator that restarts finds the step it started.
    fn step_name(&self, step: usize) -> String {
        let spec = &self.action.spec;
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

    /// The target step `index + 1` is pinned to: the plan's own for the
    /// first; for a later one, the object as the first snapshot taken after
    /// the step before it finished shows it (its resourceVersion then), so
    /// the step acts on what the steps before it left and nothing else.
    /// `None` while no such snapshot has come. An object gone from the
    /// snapshot keeps the plan's reference: the gate then denies the step.
    async fn step_target(
        &self,
        index: usize,
        status: &HealingActionStatus,
    ) -> Result<Option<TargetRef>, Error> {
        let mut target = self.action.spec.target.clone();
        let Some(before) = index.checked_sub(1).and_then(|i| status.steps.get(i)) else {
            return Ok(Some(target));
        };
        let finished = match self.api.get_opt(&before.healing_action).await? {
            Some(step) => step
                .status
                .and_then(|s| s.result)
                .and_then(|r| r.finished_at)
                .and_then(|t| t.parse::<Timestamp>().ok()),
            None => None,
        }
        .unwrap_or_else(Timestamp::now);
        let Some(snapshot) = self.latest_snapshot().await else {
            return Ok(None);
        };
        let taken = snapshot.taken_at.map_or(i64::MIN, |t| t.seconds);
        if taken <= finished.as_second() {
            return Ok(None);
        }
        if let Some(seen) = find(&snapshot, &target.uid) {
            target.resource_version.clone_from(&seen.resource_version);
        }
        Ok(Some(target))
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
