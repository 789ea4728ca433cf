//! The life of a HealingAction: recorded, reviewed, approved (by the gate or
//! a human), executed, verified, rolled back.
//!
//! All state is in the resource. Each step reads the HealingAction, does at
//! most one outside call, and writes the result with the resourceVersion it
//! read, so a replica that lost the lease (or a stale copy of this one)
//! cannot overwrite a newer step. A coordinator killed at any point resumes
//! from the phase it finds: Proposed is reviewed again (reviews have no side
//! effects until an action executes), Executing calls the remediator again
//! with the same action id, and the remediator answers with the stored result
//! instead of acting twice.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::{api::core::v1::ObjectReference, jiff::Timestamp};
use kube::{
    Api, Client, Resource as _, ResourceExt as _,
    api::{Patch, PatchParams, PostParams},
    runtime::{
        events::{Event, EventType, Recorder},
        reflector::{ObjectRef, Store},
    },
};
use nanny_common::client::TracedChannel;
use nanny_crd::{
    ACTION_TYPE_LABEL, APPROVE_ANNOTATION, Condition, Decision as RecordedDecision, HealingAction,
    HealingActionStatus, HealingPolicy, HumanApproval, HumanDecision, Mode, NotifyOn, OPEN_LABEL,
    Outcome, POLICY_LABEL, Phase, REJECT_ANNOTATION, RESOLVE_ANNOTATION, ROLLBACK_ANNOTATION,
    ResultRecord, SEEN_COUNT_ANNOTATION, TARGET_UID_LABEL, VerdictRecord,
};
use nanny_proto::v1::{
    self as pb, ClusterSnapshot, Decision, ExecuteRequest, OutcomeReport, ReviewRequest,
    RollbackRequest, RollbackReview, Verdict, remediator_client::RemediatorClient,
    safety_gate_client::SafetyGateClient,
};
use prometheus::{IntCounterVec, Opts, Registry};
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use crate::{
    config::ActionsConfig,
    context, convert,
    error::Error,
    ladder::{self, Climb},
    notify::Notifier,
    snapshots::Snapshots,
};

/// Gate rule id the coordinator records when the gate could not answer.
pub const GATE_UNAVAILABLE: &str = "gate-unavailable";
/// Rule id recorded when the target left the cluster before review.
const TARGET_GONE: &str = "target-gone";
/// Rule id recorded for a human's approval or rejection.
const HUMAN: &str = "human-decision";
/// How long past its verification window an action may stay "in progress"
/// at the remediator before the coordinator stops waiting for it.
const IN_PROGRESS_GRACE: Duration = Duration::from_secs(120);
/// Annotation: RFC 3339 time the analyzer last proposed an open action again.
const LAST_PROPOSED: &str = "nanny.ai/last-proposed";

/// Drives HealingActions; cheap to clone.
#[derive(Clone)]
pub struct Driver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

struct Inner {
    client: Client,
    gate: SafetyGateClient<TracedChannel>,
    remediator: RemediatorClient<TracedChannel>,
    policies: Store<HealingPolicy>,
    actions: Store<HealingAction>,
    snapshots: Snapshots,
    recorder: Recorder,
    config: ActionsConfig,
    /// Actions a task is driving right now (namespace, name).
    in_flight: Mutex<HashSet<(String, String)>>,
    /// Actions this process created that the watch may not show yet, by
    /// dedup key; cleared when the store catches up.
    created: Mutex<HashMap<DedupKey, (String, String)>>,
    limit: Semaphore,
    proposals: IntCounterVec,
    transitions: IntCounterVec,
    escalations: IntCounterVec,
    notifier: Notifier,
}

/// What makes two recommendations "the same action": policy, target uid
/// and action type.
type DedupKey = (String, String, String);

impl Driver {
    /// A driver calling the gate and remediator over these channels.
    ///
    /// # Errors
    /// When metrics cannot be registered.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        gate: TracedChannel,
        remediator: TracedChannel,
        policies: Store<HealingPolicy>,
        actions: Store<HealingAction>,
        snapshots: Snapshots,
        recorder: Recorder,
        config: ActionsConfig,
        registry: &Registry,
    ) -> Result<Self, nanny_common::Error> {
        let proposals = IntCounterVec::new(
            Opts::new(
                "nanny_coordinator_recommendations_total",
                "Recommendations received, by what became of them.",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(proposals.clone()))?;
        let transitions = IntCounterVec::new(
            Opts::new(
                "nanny_coordinator_action_transitions_total",
                "HealingAction phase changes written, by new phase.",
            ),
            &["phase"],
        )?;
        registry.register(Box::new(transitions.clone()))?;
        let escalations = IntCounterVec::new(
            Opts::new(
                "nanny_escalations_total",
                "Actions handed to a human because the automatic remedy could not proceed, by reason.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(escalations.clone()))?;
        let notifier = Notifier::new(client.clone(), registry)?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                gate: SafetyGateClient::new(gate),
                remediator: RemediatorClient::new(remediator),
                policies,
                actions,
                snapshots,
                recorder,
                limit: Semaphore::new(config.max_in_flight),
                config,
                in_flight: Mutex::new(HashSet::new()),
                created: Mutex::new(HashMap::new()),
                proposals,
                transitions,
                escalations,
                notifier,
            }),
        })
    }

    /// Records one recommendation under `policy` — or, when an open action
    /// for the same target and action type exists (or a finished one is
    /// still within the policy's cooldown), notes it there instead — and
    /// starts driving it.
    pub async fn propose(
        &self,
        policy: &HealingPolicy,
        rec: &pb::Recommendation,
        snapshot: &ClusterSnapshot,
    ) {
        let outcome = match self.try_propose(policy, rec, snapshot).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(%error, recommendation = %rec.id, "Cannot record the recommendation.");
                if matches!(error, Error::Invalid { .. }) {
                    "invalid"
                } else {
                    "error"
                }
            }
        };
        self.inner.proposals.with_label_values(&[outcome]).inc();
    }

    async fn try_propose(
        &self,
        policy: &HealingPolicy,
        rec: &pb::Recommendation,
        snapshot: &ClusterSnapshot,
    ) -> Result<&'static str, Error> {
        let policy_ref = key(policy);
        if policy.spec.paused {
            return Ok("paused");
        }
        if !triggered(&policy.spec.triggers, rec, snapshot) {
            return Ok("not-triggered");
        }
        let workload_uid = |rec: &pb::Recommendation| {
            let target = rec.target.clone().unwrap_or_default();
            Some(context::review_context(snapshot, &target).workload_uid).filter(|u| !u.is_empty())
        };
        let mut spec = convert::spec_from_recommendation(&policy_ref, rec, workload_uid(rec))?;
        let incident = ladder::Incident::of_recommendation(
            &policy_ref,
            rec,
            snapshot,
            spec.workload_uid.as_deref(),
        );
        if let Some(incident) = &incident {
            let replaced = match ladder::climb(
                &self.inner.actions.state(),
                incident,
                spec.action.type_,
                &policy.spec.ladder,
                Duration::from_secs(u64::from(policy.spec.limits.cooldown_seconds)),
                Timestamp::now(),
            ) {
                Climb::Propose => None,
                Climb::Escalated { namespace, name } => {
                    self.note_proposed_again(&namespace, &name).await;
                    return Ok("escalated");
                }
                Climb::Open { namespace, name } => {
                    self.note_proposed_again(&namespace, &name).await;
                    return Ok("deduplicated");
                }
                Climb::CoolingDown => return Ok("cooling-down"),
                Climb::Next { action, why } => {
                    ladder::next_recommendation(rec, action, &why, snapshot)
                        .or_else(|| ladder::escalation(rec, &why, snapshot))
                }
                Climb::Escalate { tried } => ladder::escalation(rec, &tried, snapshot),
            };
            if let Some(next) = replaced {
                spec = convert::spec_from_recommendation(&policy_ref, &next, workload_uid(&next))?;
            }
            spec.issue_kind = Some(incident.issue.clone());
        }
        let action_type = spec.action.type_.name();
        let dedup: DedupKey = (
            policy_ref.clone(),
            spec.target.uid.clone(),
            action_type.to_owned(),
        );
        let namespace = policy.namespace().unwrap_or_default();
        let cooldown = Duration::from_secs(u64::from(policy.spec.limits.cooldown_seconds));
        if let Some(existing) = self.existing(&dedup, cooldown) {
            if let Existing::Open(ns, name) = existing {
                self.note_proposed_again(&ns, &name).await;
                self.resume(&ns, &name);
                return Ok("deduplicated");
            }
            return Ok("cooling-down");
        }

        let name = action_name(
            &spec.target.name,
            action_type,
            &policy_ref,
            &spec.recommendation_id,
        );
        let labels = BTreeMap::from([
            (POLICY_LABEL.to_owned(), label_value(&policy_ref)),
            (TARGET_UID_LABEL.to_owned(), label_value(&spec.target.uid)),
            (ACTION_TYPE_LABEL.to_owned(), action_type.to_owned()),
            (OPEN_LABEL.to_owned(), "true".to_owned()),
        ]);
        let mut action = HealingAction::new(&name, spec);
        action.metadata.namespace = Some(namespace.clone());
        action.metadata.labels = Some(labels);
        let api: Api<HealingAction> = Api::namespaced(self.inner.client.clone(), &namespace);
        match api.create(&PostParams::default(), &action).await {
            Ok(_) => {}
            // Created before a restart, or by this process a moment ago.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(error.into()),
        }
        if let Ok(mut created) = self.inner.created.lock() {
            created.insert(dedup, (namespace.clone(), name.clone()));
        }
        tracing::info!(action = %name, %namespace, recommendation = %rec.id, "HealingAction proposed.");
        self.resume(&namespace, &name);
        Ok("created")
    }

    /// An open action for `dedup`, or a finished one still cooling down.
    fn existing(&self, dedup: &DedupKey, cooldown: Duration) -> Option<Existing> {
        let (policy_ref, uid, action_type) = dedup;
        let matches = |a: &HealingAction| {
            a.spec.policy_ref == *policy_ref
                && a.spec.target.uid == *uid
                && a.spec.action.type_.name() == action_type
        };
        let mut cooling = false;
        for action in self.inner.actions.state() {
            if !matches(&action) {
                continue;
            }
            let status = action.status.clone().unwrap_or_default();
            let phase = status.phase.unwrap_or(Phase::Proposed);
            if !phase.is_terminal() {
                return Some(Existing::Open(
                    action.namespace().unwrap_or_default(),
                    action.name_any(),
                ));
            }
            // A denial because the gate was down is retried at once.
            let transient = status
                .verdict
                .as_ref()
                .is_some_and(|v| v.matched_rules.iter().any(|r| r == GATE_UNAVAILABLE));
            let recent = status
                .phase_since
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .is_none_or(|t| Timestamp::now().duration_since(t).unsigned_abs() < cooldown);
            cooling |= recent && !transient;
        }
        // Created by this process but not yet seen by the watch. A poisoned
        // lock fails closed: the proposal waits as if cooling down rather
        // than risk a second action for the same target.
        let Ok(mut created) = self.inner.created.lock() else {
            return Some(Existing::CoolingDown);
        };
        if let Some((ns, name)) = created.get(dedup).cloned() {
            let seen = self
                .inner
                .actions
                .get(&ObjectRef::new(&name).within(&ns))
                .is_some();
            if seen {
                created.remove(dedup);
            } else {
                return Some(Existing::Open(ns, name));
            }
        }
        cooling.then_some(Existing::CoolingDown)
    }

    async fn note_proposed_again(&self, namespace: &str, name: &str) {
        // A step in progress writes with the resourceVersion it read: an
        // annotation written now would only make that write conflict.
        // A poisoned lock counts as driving: nothing is written.
        let driving = self.inner.in_flight.lock().map_or(true, |f| {
            f.contains(&(namespace.to_owned(), name.to_owned()))
        });
        if driving {
            return;
        }
        let action = self
            .inner
            .actions
            .get(&ObjectRef::new(name).within(namespace));
        let now = Timestamp::now();
        let fresh = action
            .as_ref()
            .and_then(|a| a.annotations().get(LAST_PROPOSED).cloned())
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_some_and(|t| now.duration_since(t).unsigned_abs() < Duration::from_secs(60));
        if fresh {
            return;
        }
        let api: Api<HealingAction> = Api::namespaced(self.inner.client.clone(), namespace);
        let mut annotations = serde_json::json!({ LAST_PROPOSED: now.to_string() });
        // An open escalation counts the detections it stands for (noted at
        // most once a minute, as above).
        if let Some(action) = action.as_ref().filter(|a| ladder::is_escalation(a)) {
            let seen = action
                .annotations()
                .get(SEEN_COUNT_ANNOTATION)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            annotations[SEEN_COUNT_ANNOTATION] = serde_json::json!((seen + 1).to_string());
        }
        let patch = serde_json::json!({ "metadata": { "annotations": annotations } });
        if let Err(error) = api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            tracing::debug!(%error, action = name, "Cannot note a repeated proposal.");
        }
    }

    /// Starts driving an action unless a task already does.
    pub fn resume(&self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        let Ok(mut in_flight) = self.inner.in_flight.lock() else {
            return;
        };
        if !in_flight.insert(key.clone()) {
            return;
        }
        drop(in_flight);
        let driver = self.clone();
        tokio::spawn(async move {
            let _permit = driver.inner.limit.acquire().await;
            let result = driver.drive(&key.0, &key.1).await;
            if let Ok(mut in_flight) = driver.inner.in_flight.lock() {
                in_flight.remove(&key);
            }
            match result {
                Ok(()) => {}
                Err(Error::Conflict(what)) => {
                    tracing::debug!(action = %key.1, "{what} changed meanwhile; the watch brings it back.");
                }
                Err(error) => {
                    tracing::warn!(%error, action = %key.1, "Driving the HealingAction stopped; it resumes on its next change or sweep.");
                }
            }
        });
    }

    /// Whether an action needs driving: not finished, or a rollback asked for.
    pub fn needs_driving(action: &HealingAction) -> bool {
        let status = action.status.clone().unwrap_or_default();
        let phase = status.phase.unwrap_or(Phase::Proposed);
        !phase.is_terminal()
            || (rollback_requested(action).is_some()
                && status.rollback.is_none()
                && matches!(phase, Phase::Succeeded | Phase::Failed))
            || action.labels().get(OPEN_LABEL).is_some_and(|v| v == "true")
    }

    /// Steps the action until it finishes or waits for a human.
    async fn drive(&self, namespace: &str, name: &str) -> Result<(), Error> {
        let api: Api<HealingAction> = Api::namespaced(self.inner.client.clone(), namespace);
        for _ in 0..32 {
            let Some(action) = api.get_opt(name).await? else {
                return Ok(());
            };
            let phase = action.phase();
            let step = Step {
                driver: self,
                api: &api,
                action,
            };
            let more = match phase {
                Phase::Proposed if ladder::is_escalation(&step.action) => step.escalate().await?,
                Phase::Proposed => step.review().await?,
                Phase::Escalated => step.escalated().await?,
                Phase::PendingApproval => step.await_human().await?,
                Phase::Approved | Phase::Executing | Phase::Verifying => step.execute().await?,
                Phase::Succeeded | Phase::Failed => step.finish_or_roll_back().await?,
                Phase::Denied
                | Phase::RolledBack
                | Phase::Expired
                | Phase::Recorded
                | Phase::Resolved => step.close().await?,
            };
            if !more {
                return Ok(());
            }
        }
        Ok(())
    }

    fn policy(&self, policy_ref: &str) -> Option<Arc<HealingPolicy>> {
        let (ns, name) = policy_ref.split_once('/')?;
        self.inner.policies.get(&ObjectRef::new(name).within(ns))
    }
}

enum Existing {
    Open(String, String),
    CoolingDown,
}

/// One step of one action.
struct Step<'a> {
    driver: &'a Driver,
    api: &'a Api<HealingAction>,
    action: HealingAction,
}

impl Step<'_> {
    fn inner(&self) -> &Inner {
        &self.driver.inner
    }

    fn status(&self) -> HealingActionStatus {
        self.action.status.clone().unwrap_or_default()
    }

    /// Tells the policy's sinks, once, that the action reached `on`.
    fn notify(&self, on: NotifyOn) {
        if let Some(policy) = self.policy() {
            self.inner().notifier.once(&policy, &self.action, on);
        }
    }

    /// Writes `status` with the resourceVersion read: a concurrent change
    /// (a human, another replica) wins and this step is retried from it.
    async fn write(
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
    fn policy(&self) -> Option<Arc<HealingPolicy>> {
        self.in_policy_namespace()
            .then(|| self.driver.policy(&self.action.spec.policy_ref))
            .flatten()
    }

    fn in_policy_namespace(&self) -> bool {
        self.action
            .spec
            .policy_ref
            .split_once('/')
            .is_some_and(|(ns, _)| Some(ns) == self.action.namespace().as_deref())
    }

    /// The recommendation as recorded.
    fn recommendation(&self) -> Result<pb::Recommendation, Error> {
        convert::recommendation(
            &self.action.spec,
            self.action.meta().creation_timestamp.as_ref().map(|t| t.0),
        )
    }

    /// Proposed → Denied | PendingApproval | Approved | Recorded.
    /// A new escalation: the incident is handed to a human, once. Nothing
    /// is executed, so there is nothing for the gate to review; what was
    /// tried is in the spec's reasoning, and the Event and metric say so.
    async fn escalate(mut self) -> Result<bool, Error> {
        let message = self.action.spec.reasoning.clone();
        self.write(self.status(), Phase::Escalated, "Escalated", &message)
            .await?;
        self.notify(NotifyOn::Escalated);
        self.inner()
            .escalations
            .with_label_values(&["ladder"])
            .inc();
        self.event(EventType::Warning, "Escalated", &message).await;
        Ok(false)
    }

    /// An open escalation: resolved by a human (annotation
    /// `nanny.ai/resolve`), or once its incident has been quiet for the
    /// ladder's `quietSeconds`.
    async fn escalated(mut self) -> Result<bool, Error> {
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
            _ => return Ok(false),
        };
        self.write(self.status(), Phase::Resolved, "Resolved", &message)
            .await?;
        self.event(EventType::Normal, "Resolved", &message).await;
        Ok(true)
    }

    async fn review(mut self) -> Result<bool, Error> {
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
        let rec = match self.recommendation() {
            Ok(rec) => rec,
            Err(error) => {
                return self
                    .deny(vec!["invalid-action".into()], vec![error.to_string()], None)
                    .await;
            }
        };
        let verdict = match self.ask_gate(&policy, &rec, None).await {
            Ok(Some(verdict)) => verdict,
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
        let decision = Decision::try_from(verdict.decision).unwrap_or(Decision::Unspecified);
        let mut status = self.status();
        status.verdict = Some(verdict_record(&verdict));
        let reasons = verdict.reasons.join("; ");
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
                Ok(true)
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
                Ok(true)
            }
            (_, Mode::DryRun) | (Decision::DryRunOnly, Mode::Auto) => {
                let result = self.dry_run(&policy, &rec, &verdict).await;
                status.result = Some(result);
                self.write(status, Phase::Recorded, "DryRun", &reasons)
                    .await?;
                self.event(
                    EventType::Normal,
                    "ActionRecorded",
                    "Dry run only; the diff is in the HealingAction status",
                )
                .await;
                Ok(true)
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
                Ok(false)
            }
            (Decision::Approved, Mode::Auto) => {
                self.write(status, Phase::Approved, "GateApproved", &reasons)
                    .await?;
                Ok(true)
            }
        }
    }

    /// The gate's verdict on `rec` against the latest snapshot of the policy;
    /// `None` when the target is gone from it.
    /// The gate's verdict on `rec` against today's snapshot; `human`: a
    /// person approved it (a re-review, which the gate signs as APPROVED
    /// when nothing a human cannot overrule refuses it).
    async fn ask_gate(
        &self,
        policy: &HealingPolicy,
        rec: &pb::Recommendation,
        human: Option<pb::HumanApproval>,
    ) -> Result<Option<Verdict>, Error> {
        let target = rec.target.clone().unwrap_or_default();
        let Some(snapshot) = self
            .inner()
            .snapshots
            .wait_latest(
                &self.action.spec.policy_ref,
                self.inner().config.snapshot_wait(),
            )
            .await
        else {
            return Err(Error::invalid(
                "snapshot",
                "no snapshot of the policy's scope yet",
            ));
        };
        if !contains(&snapshot, &target) {
            return Ok(None);
        }
        let request = ReviewRequest {
            recommendation: Some(rec.clone()),
            policy_ref: self.action.spec.policy_ref.clone(),
            snapshot_taken_at: snapshot.taken_at,
            policy: Some(convert::gate_policy(&policy.spec)),
            context: Some(context::review_context(&snapshot, &target)),
            human_approval: human,
            policy_generation: policy.metadata.generation.unwrap_or_default(),
        };
        let mut wait = Duration::from_millis(200);
        let deadline = tokio::time::Instant::now() + self.inner().config.review_retry_for();
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

    async fn deny(
        mut self,
        rules: Vec<String>,
        reasons: Vec<String>,
        human: Option<&HumanApproval>,
    ) -> Result<bool, Error> {
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
        Ok(true)
    }

    /// PendingApproval → Approved | Denied | Expired, or keep waiting.
    async fn await_human(mut self) -> Result<bool, Error> {
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
        let rec = self.recommendation()?;
        let human = pb::HumanApproval {
            by: approval.by.clone(),
            at: approval
                .at
                .parse::<Timestamp>()
                .ok()
                .map(|t| prost_types::Timestamp {
                    seconds: t.as_second(),
                    nanos: t.subsec_nanosecond(),
                }),
        };
        let verdict = match self.ask_gate(&policy, &rec, Some(human)).await {
            Ok(Some(verdict)) => verdict,
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
                return Ok(false);
            }
        };
        let decision = Decision::try_from(verdict.decision).unwrap_or(Decision::Unspecified);
        if !matches!(decision, Decision::Approved | Decision::NeedsApproval)
            || policy.spec.mode != Mode::Auto
        {
            let mut reasons = verdict.reasons.clone();
            reasons.push(format!(
                "approved by {}, but the safety gate now refuses it",
                approval.by
            ));
            return self
                .deny(verdict.matched_rules.clone(), reasons, None)
                .await;
        }
        let mut status = self.status();
        let mut record = verdict_record(&verdict);
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
        Ok(true)
    }

    /// Moves an approve/reject annotation into `spec.approval`, so the
    /// record says who decided and when.
    async fn approval_from_annotations(&mut self) -> Result<Option<HumanApproval>, Error> {
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

    async fn expire_if_due(mut self) -> Result<bool, Error> {
        let due = self
            .status()
            .expires_at
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_some_and(|t| Timestamp::now() >= t);
        if !due {
            return Ok(false);
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
        Ok(true)
    }

    /// Approved | Executing → Succeeded | Failed (then rollback).
    async fn execute(mut self) -> Result<bool, Error> {
        let Some(policy) = self.policy() else {
            let mut status = self.status();
            status.result = Some(failed("the HealingPolicy no longer exists; not executed"));
            self.write(status, Phase::Failed, "PolicyMissing", "not executed")
                .await?;
            return Ok(true);
        };
        let mut status = self.status();
        // After a blocked try the action waits its turn; the sweep brings
        // it back.
        if status
            .retry_at
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_some_and(|at| Timestamp::now() < at)
        {
            return Ok(false);
        }
        // Tries a budget answered are no unanswered attempts.
        if status.attempts.saturating_sub(status.blocked) >= self.inner().config.max_attempts {
            status.result = Some(failed(&format!(
                "the remediator did not answer after {} attempts",
                status.attempts
            )));
            self.write(status, Phase::Failed, "RemediatorUnavailable", "gave up")
                .await?;
            return Ok(true);
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
        // spending attempts.
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
            tokio::time::sleep(self.inner().config.retry_backoff()).await;
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
                    tokio::time::sleep(self.inner().config.retry_backoff()).await;
                    return Ok(true);
                }
                let mut status = self.status();
                status.result = Some(failed(&error.to_string()));
                self.write(status, Phase::Failed, "ExecuteFailed", &error.to_string())
                    .await?;
                self.event(EventType::Warning, "ActionFailed", &error.to_string())
                    .await;
                return Ok(true);
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
        Ok(true)
    }

    /// A PodDisruptionBudget refused the eviction and nothing was written:
    /// the action waits and tries again under the same verdict; when the
    /// tries or the verdict run out, it fails and a human decides. Never a
    /// delete instead.
    async fn blocked(
        mut self,
        policy: &HealingPolicy,
        rec: &pb::Recommendation,
        result: &pb::ActionResult,
    ) -> Result<bool, Error> {
        let config = &self.inner().config;
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
            return Ok(false);
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
        Ok(true)
    }

    /// Tells the gate how the action ended (its limits and breakers count it).
    async fn report_outcome(
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

    async fn dry_run(
        &self,
        policy: &HealingPolicy,
        rec: &pb::Recommendation,
        verdict: &Verdict,
    ) -> ResultRecord {
        let request = ExecuteRequest {
            action_id: self.action.name_any(),
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
    async fn finish_or_roll_back(mut self) -> Result<bool, Error> {
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
                    tokio::time::sleep(self.inner().config.retry_backoff()).await;
                    return Ok(true);
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
                    tokio::time::sleep(self.inner().config.retry_backoff()).await;
                    return Ok(true);
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
        Ok(true)
    }

    /// A rollback the gate refused or the remediator could not carry out:
    /// recorded with `message`, the phase kept.
    async fn rollback_failed(mut self, record: ResultRecord, message: &str) -> Result<bool, Error> {
        let mut status = self.status();
        status.rollback = Some(record);
        let phase = status.phase.unwrap_or(Phase::Failed);
        self.write(status, phase, "RollbackFailed", message).await?;
        self.event(EventType::Warning, "RollbackFailed", message)
            .await;
        Ok(true)
    }

    /// A finished action: marks it closed for `kubectl get -l nanny.ai/open`.
    async fn close(self) -> Result<bool, Error> {
        if self
            .action
            .labels()
            .get(OPEN_LABEL)
            .is_some_and(|v| v == "false")
        {
            return Ok(false);
        }
        let patch = serde_json::json!({ "metadata": { "labels": { OPEN_LABEL: "false" } } });
        self.api
            .patch(
                &self.action.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await?;
        Ok(false)
    }

    /// An Event on the target object and on the HealingAction itself.
    async fn event(&self, type_: EventType, reason: &str, note: &str) {
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
            if let Err(error) = self.inner().recorder.publish(&event, &reference).await {
                tracing::debug!(%error, "Cannot publish an Event.");
            }
        }
    }
}

/// `namespace/name` of a policy.
pub fn key(policy: &HealingPolicy) -> String {
    format!(
        "{}/{}",
        policy.namespace().unwrap_or_default(),
        policy.name_any()
    )
}

/// A label value from a free string: `/` becomes `.`, cut to 63 characters.
fn label_value(value: &str) -> String {
    let mut v: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '.'
            }
        })
        .take(63)
        .collect();
    while v.ends_with(['-', '_', '.']) {
        v.pop();
    }
    v
}

/// A readable, deterministic name: `<target>-<action>-<hash>`.
fn action_name(
    target: &str,
    action_type: &str,
    policy_ref: &str,
    recommendation_id: &str,
) -> String {
    let digest = Sha256::digest(format!("{policy_ref}\n{recommendation_id}"));
    let hash: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    let suffix = format!("{}-{hash}", action_type.to_ascii_lowercase());
    // A DNS label: 63 characters at most, the target shortened to fit.
    let room = 63usize.saturating_sub(suffix.len() + 1);
    let target: String = target
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(room)
        .collect();
    match target.trim_matches('-') {
        "" => suffix,
        target => format!("{target}-{suffix}"),
    }
}

/// Whether the policy's triggers (issue kinds; empty = all) cover `rec`.
fn triggered(triggers: &[String], rec: &pb::Recommendation, snapshot: &ClusterSnapshot) -> bool {
    if triggers.is_empty() {
        return true;
    }
    let wanted: HashSet<i32> = triggers
        .iter()
        .map(|t| nanny_crd::proto::issue_kind(t) as i32)
        .collect();
    snapshot
        .issues
        .iter()
        .filter(|i| rec.issue_fingerprints.contains(&i.fingerprint))
        .any(|i| wanted.contains(&i.kind))
}

fn contains(snapshot: &ClusterSnapshot, target: &pb::ObjectRef) -> bool {
    let uid = Some(target.uid.as_str());
    let has = |r: &Option<pb::ObjectRef>| r.as_ref().map(|r| r.uid.as_str()) == uid;
    snapshot.pods.iter().any(|o| has(&o.r#ref))
        || snapshot.nodes.iter().any(|o| has(&o.r#ref))
        || snapshot.workloads.iter().any(|o| has(&o.r#ref))
        || snapshot.jobs.iter().any(|o| has(&o.r#ref))
        || snapshot.hpas.iter().any(|o| has(&o.r#ref))
        || snapshot.pvcs.iter().any(|o| has(&o.r#ref))
}

fn rollback_requested(action: &HealingAction) -> Option<String> {
    action.annotations().get(ROLLBACK_ANNOTATION).cloned()
}

/// An empty record, filled in by whoever decides.
fn no_verdict() -> VerdictRecord {
    VerdictRecord::default()
}

fn verdict_record(verdict: &Verdict) -> VerdictRecord {
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
fn verdict_from_record(
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

fn result_record(result: &pb::ActionResult) -> ResultRecord {
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

fn failed(error: &str) -> ResultRecord {
    ResultRecord {
        outcome: Outcome::Failed,
        dry_run_diff: String::new(),
        pre_image_ref: String::new(),
        verification: String::new(),
        error: error.to_owned(),
        finished_at: Some(Timestamp::now().to_string()),
    }
}

fn record_message(record: &ResultRecord) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_readable_valid_and_deterministic() {
        let name = action_name("Web-7f9c_x", "RestartPod", "shop/default", "rec-1");
        assert_eq!(
            name,
            action_name("Web-7f9c_x", "RestartPod", "shop/default", "rec-1")
        );
        assert!(name.starts_with("web-7f9c-x-restartpod-"), "{name}");
        assert_ne!(
            name,
            action_name("Web-7f9c_x", "RestartPod", "shop/default", "rec-2")
        );
        assert_eq!(label_value("shop/default"), "shop.default");
        // The longest target with the longest action name still makes a
        // DNS label; a target with no usable character still makes a name.
        let dns_label = |name: &str| {
            name.len() <= 63
                && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && name.ends_with(|c: char| c.is_ascii_alphanumeric())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        let longest = nanny_proto::vocabulary::ACTIONS
            .iter()
            .map(|a| a.name)
            .max_by_key(|n| n.len())
            .unwrap();
        let long = action_name(&"a".repeat(253), longest, "shop/default", "rec-1");
        assert!(dns_label(&long), "{long} ({} characters)", long.len());
        assert!(long.starts_with("aaaa"), "{long}");
        let symbols = action_name("___", "RestartPod", "shop/default", "rec-1");
        assert!(dns_label(&symbols), "{symbols}");
    }

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
    fn triggers_match_issue_kinds_in_either_spelling() {
        let snapshot = ClusterSnapshot {
            issues: vec![pb::Issue {
                fingerprint: "f1".into(),
                kind: pb::IssueKind::OomKilled as i32,
                ..pb::Issue::default()
            }],
            ..ClusterSnapshot::default()
        };
        let rec = pb::Recommendation {
            issue_fingerprints: vec!["f1".into()],
            ..pb::Recommendation::default()
        };
        assert!(triggered(&[], &rec, &snapshot));
        assert!(triggered(&["OOMKilled".into()], &rec, &snapshot));
        assert!(triggered(
            &["ISSUE_KIND_OOM_KILLED".into()],
            &rec,
            &snapshot
        ));
        assert!(!triggered(&["CrashLoopBackOff".into()], &rec, &snapshot));
    }
}
