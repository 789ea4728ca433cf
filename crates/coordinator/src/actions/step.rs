//! One step of one action: the phases up to execution, and the Events and
//! status writes every phase shares.

use std::{sync::Arc, time::Duration};

use k8s_openapi::{api::core::v1::ObjectReference, jiff::Timestamp};
use kube::{
    Api, Resource as _, ResourceExt as _,
    api::{Patch, PatchParams, PostParams},
    runtime::events::{Event, EventType},
};
use nanny_crd::{
    Condition, Decision as RecordedDecision, HealingAction, HealingActionStatus, HealingPolicy,
    HumanApproval, Mode, NotifyOn, OPEN_LABEL, Phase, RESOLVE_ANNOTATION,
};
use nanny_proto::v1::{self as pb, Decision, ReviewRequest, Verdict};

use super::{
    Driver, GATE_UNAVAILABLE, HUMAN, Inner, LAST_PROPOSED, Next, TARGET_GONE, contains,
    plan::{combined, reviewed_steps},
    records::no_verdict,
};
use crate::{context, convert, error::Error, snapshots::fetch_whole};

/// One step of one action.
pub(super) struct Step<'a> {
    pub(super) driver: &'a Driver,
    pub(super) api: &'a Api<HealingAction>,
    pub(super) action: HealingAction,
}

impl Step<'_> {
    pub(super) fn inner(&self) -> &Inner {
        &self.driver.inner
    }

    pub(super) fn status(&self) -> HealingActionStatus {
        self.action.status.clone().unwrap_or_default()
    }

    /// Tells the policy's sinks, once, that the action reached `on`.
    pub(super) fn notify(&self, on: NotifyOn) {
        if let Some(policy) = self.policy() {
            self.inner().notifier.once(&policy, &self.action, on);
        }
    }

    /// Writes `status` with the resourceVersion read: a concurrent change
    /// (a human, another replica) wins and this step is retried from it.
    pub(super) async fn write(
        &mut self,
        mut status: HealingActionStatus,
        phase: Phase,
        reason: &str,
        message: &str,
    ) -> Result<(), Error> {
        let now = Timestamp::now().to_string();
        if status.phase != Some(phase) {
            status.phase_since = Some(now.clone());
            status.conditions.push(Condition {
                type_: phase.as_str().to_owned(),
                status: "True".to_owned(),
                reason: reason.to_owned(),
                message: message.to_owned(),
                last_transition_time: now,
            });
            // Keep the timeline readable and the object small.
            let excess = status.conditions.len().saturating_sub(16);
            status.conditions.drain(..excess);
        }
        status.phase = Some(phase);
        let mut object = self.action.clone();
        object.status = Some(status);
        let name = self.action.name_any();
        match self
            .api
            .replace_status(&name, &PostParams::default(), &object)
            .await
        {
            Ok(written) => {
                self.inner()
                    .transitions
                    .with_label_values(&[phase.as_str()])
                    .inc();
                self.action = written;
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Err(Error::Conflict(format!("HealingAction {name}")))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The action's policy, only when the action lives in the policy's
    /// namespace: an action created elsewhere never borrows another
    /// namespace's policy.
    pub(super) fn policy(&self) -> Option<Arc<HealingPolicy>> {
        self.in_policy_namespace()
            .then(|| self.driver.policy(&self.action.spec.policy_ref))
            .flatten()
    }

    pub(super) fn in_policy_namespace(&self) -> bool {
        self.action
            .spec
            .policy_ref
            .split_once('/')
            .is_some_and(|(ns, _)| Some(ns) == self.action.namespace().as_deref())
    }

    /// The recommendation as recorded.
    pub(super) fn recommendation(&self) -> Result<pb::Recommendation, Error> {
        convert::recommendation(
            &self.action.spec,
            self.action.meta().creation_timestamp.as_ref().map(|t| t.0),
        )
    }

    /// Proposed → Denied | PendingApproval | Approved | Recorded.
    /// A new escalation: the incident is handed to a human, once. Nothing
    /// is executed, so there is nothing for the gate to review; what was
    /// tried is in the spec's reasoning, and the Event and metric say so.
    pub(super) async fn escalate(mut self) -> Result<Next, Error> {
        let message = self.action.spec.reasoning.clone();
        self.write(self.status(), Phase::Escalated, "Escalated", &message)
            .await?;
        self.notify(NotifyOn::Escalated);
        self.inner()
            .escalations
            .with_label_values(&["ladder"])
            .inc();
        self.event(EventType::Warning, "Escalated", &message).await;
        Ok(Next::Wait)
    }

    /// An open escalation: resolved by a human (annotation
    /// `nanny.ai/resolve`), or once its incident has been quiet for the
    /// ladder's `quietSeconds`.
    pub(super) async fn escalated(mut self) -> Result<Next, Error> {
        // Sent once; a restart or a failed sink is caught up here.
        self.notify(NotifyOn::Escalated);
        let resolved = self.action.annotations().get(RESOLVE_ANNOTATION).cloned();
        let quiet = self.policy().map_or(Duration::from_secs(1800), |p| {
            Duration::from_secs(u64::from(p.spec.ladder.quiet_seconds))
        });
        let last_seen = self
            .action
            .annotations()
            .get(LAST_PROPOSED)
            .cloned()
            .or_else(|| self.status().phase_since)
            .and_then(|t| t.parse::<Timestamp>().ok());
        let message = match (resolved, last_seen) {
            (Some(reason), _) => format!("resolved by a human: {reason}"),
            (None, Some(seen)) if Timestamp::now().duration_since(seen).unsigned_abs() > quiet => {
                format!(
                    "the incident has been quiet for {}s",
                    Timestamp::now().duration_since(seen).as_secs()
                )
            }
            _ => return Ok(Next::Wait),
        };
        self.write(self.status(), Phase::Resolved, "Resolved", &message)
            .await?;
        self.event(EventType::Normal, "Resolved", &message).await;
        Ok(Next::Now)
    }

    #[expect(
        clippy::too_many_lines,
        reason = "the review phase: each verdict maps to its next phase in one match"
    )]
    pub(super) async fn review(mut self) -> Result<Next, Error> {
        if !self.in_policy_namespace() {
            let reason = format!(
                "a HealingAction in namespace {} names HealingPolicy {}: an action lives in its policy's namespace",
                self.action.namespace().unwrap_or_default(),
                self.action.spec.policy_ref
            );
            return self
                .deny(vec!["policy-elsewhere".into()], vec![reason], None)
                .await;
        }
        let Some(policy) = self.policy() else {
            let reason = format!(
                "HealingPolicy {} no longer exists",
                self.action.spec.policy_ref
            );
            return self
                .deny(vec!["policy-missing".into()], vec![reason], None)
                .await;
        };
        if self.snapshot_predates_action().await {
            return Ok(Next::After(Duration::from_secs(1)));
        }
        let recs = match self.recommendations() {
            Ok(recs) => recs,
            Err(error) => {
                return self
                    .deny(vec!["invalid-action".into()], vec![error.to_string()], None)
                    .await;
            }
        };
        // A plan's step shares the plan's human approval; one that claims
        // a plan not holding it is refused.
        let human = match self.plan_approval().await? {
            Ok(human) => human,
            Err(reason) => {
                return self
                    .deny(vec!["plan-mismatch".into()], vec![reason], None)
                    .await;
            }
        };
        let verdicts = match self.ask_gate_all(&policy, &recs, human.as_ref()).await {
            Ok(Some(verdicts)) => verdicts,
            Ok(None) => {
                return self
                    .deny(
                        vec![TARGET_GONE.into()],
                        vec!["the target is no longer in the cluster snapshot".into()],
                        None,
                    )
                    .await;
            }
            Err(error) => {
                return self
                    .deny(
                        vec![GATE_UNAVAILABLE.into()],
                        vec![format!(
                            "no verdict from the safety gate, treated as DENIED: {error}"
                        )],
                        None,
                    )
                    .await;
            }
        };
        let (decision, mut record) = combined(&verdicts);
        if let (Some(human), Decision::Approved) = (&human, decision) {
            record.matched_rules.push(HUMAN.to_owned());
            record.reasons.push(format!(
                "approved by {} with the plan it is a step of",
                human.by
            ));
        }
        let mut status = self.status();
        let reasons = record.reasons.join("; ");
        status.verdict = Some(record);
        if !self.action.spec.plan.is_empty() {
            status.steps = reviewed_steps(&self.action, &verdicts);
        }
        match (decision, policy.spec.mode) {
            (Decision::Denied | Decision::Unspecified, _) => {
                self.write(status, Phase::Denied, "GateDenied", &reasons)
                    .await?;
                self.event(
                    EventType::Warning,
                    "ActionDenied",
                    &format!("Denied: {reasons}"),
                )
                .await;
                Ok(Next::Now)
            }
            (_, Mode::Monitor) => {
                self.write(status, Phase::Recorded, "MonitorMode", &reasons)
                    .await?;
                self.event(
                    EventType::Normal,
                    "ActionRecorded",
                    &format!("Monitor mode, not executed: {reasons}"),
                )
                .await;
                Ok(Next::Now)
            }
            (_, Mode::DryRun) | (Decision::DryRunOnly, Mode::Auto) => {
                status.result = Some(self.dry_run_all(&policy, &verdicts).await);
                self.write(status, Phase::Recorded, "DryRun", &reasons)
                    .await?;
                self.event(
                    EventType::Normal,
                    "ActionRecorded",
                    "Dry run only; the diff is in the HealingAction status",
                )
                .await;
                Ok(Next::Now)
            }
            (Decision::NeedsApproval, Mode::Auto) => {
                let ttl = i64::from(policy.spec.approval_ttl_seconds);
                status.expires_at = Timestamp::now()
                    .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(ttl))
                    .ok()
                    .map(|t| t.to_string());
                self.write(status, Phase::PendingApproval, "NeedsApproval", &reasons)
                    .await?;
                let name = self.action.name_any();
                let ns = self.action.namespace().unwrap_or_default();
                self.event(
                    EventType::Normal,
                    "ActionNeedsApproval",
                    &format!("Approve with: nannyctl approve {name} -n {ns}"),
                )
                .await;
                Ok(Next::Wait)
            }
            (Decision::Approved, Mode::Auto) => {
                self.write(status, Phase::Approved, "GateApproved", &reasons)
                    .await?;
                Ok(Next::Now)
            }
        }
    }

    /// The latest snapshot of the action's policy, waiting a little for a
    /// first one.
    pub(super) async fn latest_snapshot(&self) -> Option<Arc<pb::ClusterSnapshot>> {
        self.inner()
            .ctx
            .snapshots
            .wait_latest(
                &self.action.spec.policy_ref,
                self.inner().ctx.config.snapshot_wait(),
            )
            .await
    }

    /// Whether the latest snapshot of the policy does not show the target
    /// and was taken before this action was created, while the action is
    /// less than a minute old: an action written by hand may name an object
    /// no snapshot has shown yet, and is reviewed against the next one
    /// rather than denied as gone. (Both times are in whole seconds: a
    /// snapshot of the same second counts as before.)
    async fn snapshot_predates_action(&self) -> bool {
        let Some(created) = self.action.meta().creation_timestamp.as_ref() else {
            return false;
        };
        if Timestamp::now().duration_since(created.0).as_secs() > 60 {
            return false;
        }
        self.latest_snapshot().await.is_some_and(|s| {
            s.taken_at
                .is_some_and(|t| t.seconds <= created.0.as_second())
                && !contains(&s, &convert::object_ref(&self.action.spec.target))
        })
    }

    /// The gate's verdict on `rec` against the latest snapshot of the
    /// policy; `None` when the target is gone from it. `human`: a person
    /// approved it (a re-review, which the gate signs as APPROVED when
    /// nothing a human cannot overrule refuses it).
    pub(super) async fn ask_gate(
        &self,
        policy: &HealingPolicy,
        rec: &pb::Recommendation,
        human: Option<pb::HumanApproval>,
    ) -> Result<Option<Verdict>, Error> {
        let target = rec.target.clone().unwrap_or_default();
        let Some(snapshot) = self.latest_snapshot().await else {
            return Err(Error::invalid(
                "snapshot",
                "no snapshot of the policy's scope yet",
            ));
        };
        if !contains(&snapshot, &target) {
            return Ok(None);
        }
        let mut review_context = context::review_context(&snapshot, &target);
        if matches!(
            rec.action.as_ref().and_then(|a| a.kind.as_ref()),
            Some(pb::action::Kind::DrainNode(_))
        ) {
            // What runs on the node, in every namespace; no answer, no
            // review (a transient error: the step is retried).
            let whole = fetch_whole(
                self.inner().ctx.peers.collector.clone(),
                self.inner().ctx.config.snapshot_wait(),
            )
            .await?;
            review_context.node_pods = Some(context::node_pods(&whole, &target.name));
        }
        let request = ReviewRequest {
            recommendation: Some(rec.clone()),
            policy_ref: self.action.spec.policy_ref.clone(),
            snapshot_taken_at: snapshot.taken_at,
            policy: Some(convert::gate_policy(&policy.spec)),
            context: Some(review_context),
            human_approval: human,
            policy_generation: policy.metadata.generation.unwrap_or_default(),
        };
        let mut wait = Duration::from_millis(200);
        let deadline = tokio::time::Instant::now() + self.inner().ctx.config.review_retry_for();
        loop {
            match self.inner().gate.clone().review(request.clone()).await {
                Ok(verdict) => return Ok(Some(verdict.into_inner())),
                Err(status) => {
                    let error = Error::peer("safety-gate", status);
                    if !error.is_transient() || tokio::time::Instant::now() + wait > deadline {
                        return Err(error);
                    }
                    tracing::debug!(%error, "Safety gate unavailable; retrying.");
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
    }

    pub(super) async fn deny(
        mut self,
        rules: Vec<String>,
        reasons: Vec<String>,
        human: Option<&HumanApproval>,
    ) -> Result<Next, Error> {
        let mut status = self.status();
        let message = reasons.join("; ");
        let mut record = status.verdict.clone().unwrap_or_else(no_verdict);
        record.decision = RecordedDecision::Denied;
        // A denial is never signed: drop what an earlier verdict carried.
        record.signature = None;
        record.key_id.clear();
        record.expires_at = None;
        record.matched_rules.extend(rules);
        record.reasons.extend(reasons);
        record.decided_at = Some(Timestamp::now().to_string());
        status.verdict = Some(record);
        let reason = if human.is_some() {
            "Rejected"
        } else {
            "Denied"
        };
        self.write(status, Phase::Denied, reason, &message).await?;
        self.event(
            EventType::Warning,
            "ActionDenied",
            &format!("Denied: {message}"),
        )
        .await;
        Ok(Next::Now)
    }

    /// A finished action: marks it closed for `kubectl get -l nanny.ai/open`.
    pub(super) async fn close(self) -> Result<Next, Error> {
        if self
            .action
            .labels()
            .get(OPEN_LABEL)
            .is_some_and(|v| v == "false")
        {
            return Ok(Next::Wait);
        }
        let patch = serde_json::json!({ "metadata": { "labels": { OPEN_LABEL: "false" } } });
        self.api
            .patch(
                &self.action.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await?;
        Ok(Next::Wait)
    }

    /// An Event on the target object and on the HealingAction itself.
    pub(super) async fn event(&self, type_: EventType, reason: &str, note: &str) {
        let spec = &self.action.spec;
        let target = ObjectReference {
            api_version: Some(convert::object_ref(&spec.target).api_version),
            kind: Some(spec.target.kind.clone()),
            name: Some(spec.target.name.clone()),
            namespace: (!spec.target.namespace.is_empty()).then(|| spec.target.namespace.clone()),
            uid: Some(spec.target.uid.clone()),
            ..ObjectReference::default()
        };
        let note = format!(
            "{note} [HealingAction {}/{}, {}]",
            self.action.namespace().unwrap_or_default(),
            self.action.name_any(),
            spec.action.type_.name()
        );
        let mut note = note;
        if note.len() > 1000 {
            let mut end = 1000;
            while !note.is_char_boundary(end) {
                end -= 1;
            }
            note.truncate(end);
        }
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: spec.action.type_.name().to_owned(),
            secondary: None,
        };
        for reference in [target, self.action.object_ref(&())] {
            if let Err(error) = self.inner().ctx.recorder.publish(&event, &reference).await {
                tracing::debug!(%error, "Cannot publish an Event.");
            }
        }
    }
}
