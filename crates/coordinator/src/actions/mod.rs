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

mod execute;
mod explain;
mod human;
mod plan;
mod records;
mod step;
#[cfg(test)]
mod step_tests;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, ResourceExt as _,
    api::{Patch, PatchParams, PostParams},
    runtime::{controller::Action, reflector::ObjectRef},
};
use nanny_common::client::TracedChannel;
use nanny_crd::{
    ACTION_TYPE_LABEL, ActionType, HealingAction, HealingPolicy, OPEN_LABEL, POLICY_LABEL, Phase,
    SEEN_COUNT_ANNOTATION, TARGET_UID_LABEL,
};
use nanny_proto::v1::{
    self as pb, ClusterSnapshot, remediator_client::RemediatorClient,
    safety_gate_client::SafetyGateClient,
};
use prometheus::{GaugeVec, IntCounterVec, Opts, Registry};
use sha2::{Digest as _, Sha256};

use self::{records::rollback_requested, step::Step};
use crate::{
    context, convert,
    error::Error,
    history,
    ladder::{self, Climb},
    notify::Notifier,
    shared::Context,
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

/// Steps one reconcile takes at most; a step that keeps saying "again"
/// would be a bug, and the next reconcile picks up from where it stopped.
const MAX_STEPS: usize = 32;

/// What a step leaves to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Step again at once: the action moved on.
    Now,
    /// Nothing until the action changes (a human, another writer) or the
    /// sweep comes round (an expiry, a quiet incident).
    Wait,
    /// Step again after this long: a peer was unavailable, or a blocked
    /// eviction's next turn.
    After(Duration),
}

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
    /// The client, stores, snapshots, recorder, settings and leadership.
    ctx: Context,
    gate: SafetyGateClient<TracedChannel>,
    remediator: RemediatorClient<TracedChannel>,
    /// Actions this process created that the watch may not show yet, by
    /// dedup key; cleared when the store catches up.
    created: Mutex<HashMap<DedupKey, (String, String)>>,
    /// Model explanations waiting for their action's next reconcile, by
    /// namespace and name (see [`Driver::explain`]).
    explanations: Mutex<HashMap<(String, String), nanny_crd::ExplanationRecord>>,
    /// The actions (target uid, action type) of each incident, by policy
    /// and incident fingerprint (see [`Driver::note_incident`]).
    incidents: Mutex<IncidentActions>,
    proposals: IntCounterVec,
    transitions: IntCounterVec,
    escalations: IntCounterVec,
    effectiveness: GaugeVec,
    notifier: Notifier,
}

/// What makes two recommendations "the same action": policy, target uid
/// and [`dedup_kind`].
type DedupKey = (String, String, String);

/// The action type, and for a report the issue kind too: a claim reported
/// Pending and then Lost gets both reports, a second Pending report is the
/// same one.
fn dedup_kind(spec: &nanny_crd::HealingActionSpec) -> String {
    let name = spec.action.type_.name();
    match (&spec.action.type_, &spec.issue_kind) {
        (ActionType::ReportOnly, Some(issue)) => format!("{name}/{issue}"),
        _ => name.to_owned(),
    }
}

/// (policy, incident) → the (target uid, action type) of its actions.
type IncidentActions = HashMap<(String, String), std::collections::BTreeSet<(String, String)>>;

impl Driver {
    /// A driver calling the gate and remediator over these channels.
    ///
    /// # Errors
    /// When metrics cannot be registered.
    pub fn new(ctx: &Context, registry: &Registry) -> Result<Self, nanny_common::Error> {
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
        let effectiveness = GaugeVec::new(
            Opts::new(
                "nanny_action_effectiveness_ratio",
                "Share of executed actions verified effective, by issue kind and action type, from the policies' outcome history.",
            ),
            &["issue_kind", "action"],
        )?;
        registry.register(Box::new(effectiveness.clone()))?;
        let notifier = Notifier::new(ctx.client.clone(), registry)?;
        Ok(Self {
            inner: Arc::new(Inner {
                ctx: ctx.clone(),
                gate: SafetyGateClient::new(ctx.peers.gate.clone()),
                remediator: RemediatorClient::new(ctx.peers.remediator.clone()),
                created: Mutex::new(HashMap::new()),
                explanations: Mutex::new(HashMap::new()),
                incidents: Mutex::new(HashMap::new()),
                proposals,
                transitions,
                escalations,
                effectiveness,
                notifier,
            }),
        })
    }

    /// Records one recommendation under `policy` — or, when an open action
    /// for the same target and action type exists (or a finished one is
    /// still within the policy's cooldown), notes it there instead. The
    /// controller drives what the watch then shows.
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

    #[expect(
        clippy::too_many_lines,
        reason = "dedup, ladder, creation and the record of what was created are one critical section"
    )]
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
                &self.inner.ctx.actions.state(),
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
            dedup_kind(&spec),
        );
        let namespace = policy.namespace().unwrap_or_default();
        let cooldown = Duration::from_secs(u64::from(policy.spec.limits.cooldown_seconds));
        if let Some(existing) = self.existing(&dedup, cooldown) {
            if let Existing::Open(ns, name) = existing {
                self.note_proposed_again(&ns, &name).await;
                return Ok("deduplicated");
            }
            return Ok("cooling-down");
        }

        // Calibrated only for an action that will be created: a proposal an
        // open or cooling-down action absorbs needs no history.
        if spec.action.type_ != ActionType::ReportOnly {
            let history = self.history(&policy_ref);
            let workload = spec
                .workload_uid
                .clone()
                .unwrap_or_else(|| spec.target.uid.clone());
            let issue = spec.issue_kind.as_deref().unwrap_or(history::UNKNOWN_ISSUE);
            let (confidence, calibration) = history::calibrate(
                &history,
                (issue, spec.action.type_, &workload),
                spec.confidence,
                Timestamp::now(),
            );
            spec.confidence = confidence;
            spec.calibration = Some(calibration);
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
        let api: Api<HealingAction> = Api::namespaced(self.inner.ctx.client.clone(), &namespace);
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
        Ok("created")
    }

    /// An open action for `dedup`, or a finished one still cooling down.
    fn existing(&self, dedup: &DedupKey, cooldown: Duration) -> Option<Existing> {
        let (policy_ref, uid, action_type) = dedup;
        // An open plan stands for every action type among its steps: a
        // separate proposal of a later step waits for the plan.
        let matches = |a: &HealingAction| {
            a.spec.policy_ref == *policy_ref
                && a.spec.target.uid == *uid
                && (dedup_kind(&a.spec) == *action_type
                    || a.spec.plan.iter().any(|s| s.type_.name() == action_type))
        };
        let mut cooling = false;
        for action in self.inner.ctx.actions.state() {
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
                .ctx
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
        let action = self
            .inner
            .ctx
            .actions
            .get(&ObjectRef::new(name).within(namespace));
        // A step that calls a peer (review, execution) writes with the
        // resourceVersion it read: an annotation written meanwhile would only
        // make that write conflict. Note only actions that wait on a human.
        let waiting = action
            .as_ref()
            .is_some_and(|a| matches!(a.phase(), Phase::PendingApproval | Phase::Escalated));
        if !waiting {
            return;
        }
        let now = Timestamp::now();
        let fresh = action
            .as_ref()
            .and_then(|a| a.annotations().get(LAST_PROPOSED).cloned())
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_some_and(|t| now.duration_since(t).unsigned_abs() < Duration::from_secs(60));
        if fresh {
            return;
        }
        let api: Api<HealingAction> = Api::namespaced(self.inner.ctx.client.clone(), namespace);
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

    /// Reconciles one HealingAction (kube-runtime's `Controller` calls
    /// this, at most once at a time per action and `max_in_flight` at a
    /// time in all): steps it while each step moves it on, then says when
    /// to look again. Only the leader drives actions; a replica that
    /// becomes leader reconciles every action (see [`crate::controller`]).
    ///
    /// # Errors
    /// A step's error; [`Driver::error_policy`] decides when to retry.
    pub async fn reconcile(
        action: Arc<HealingAction>,
        driver: Arc<Driver>,
    ) -> Result<Action, Error> {
        let sweep = driver.inner.ctx.config.sweep();
        if !*driver.inner.ctx.leader.borrow() {
            return Ok(Action::await_change());
        }
        // No step of this action runs now: a status write cannot collide.
        driver.flush_explanation(&action).await;
        if !Self::needs_driving(&action) {
            return Ok(Action::await_change());
        }
        // A policy missing from a half-listed store would read as deleted.
        if !driver.inner.ctx.stores_ready().await {
            return Ok(Action::requeue(sweep));
        }
        let namespace = action.namespace().unwrap_or_default();
        Ok(match driver.drive(&namespace, &action.name_any()).await? {
            Next::Now | Next::Wait => Action::requeue(sweep),
            Next::After(wait) => Action::requeue(wait),
        })
    }

    /// When to try again after a failed reconcile: at the next sweep, or
    /// sooner when the action changes (a conflict is a change the watch
    /// brings back at once).
    pub fn error_policy(action: Arc<HealingAction>, error: &Error, driver: Arc<Driver>) -> Action {
        let name = action.name_any();
        if let Error::Conflict(what) = error {
            tracing::debug!(action = %name, "{what} changed meanwhile; the watch brings it back.");
        } else {
            tracing::warn!(%error, action = %name, "Driving the HealingAction stopped; it resumes on its next change or sweep.");
        }
        Action::requeue(driver.inner.ctx.config.sweep())
    }

    /// Whether an action needs driving: not finished, or a rollback asked for.
    pub fn needs_driving(action: &HealingAction) -> bool {
        let status = action.status.clone().unwrap_or_default();
        let phase = status.phase.unwrap_or(Phase::Proposed);
        !phase.is_terminal()
            || (rollback_requested(action).is_some()
                && status.rollback.is_none()
                && matches!(phase, Phase::Succeeded | Phase::Failed))
            // A failed plan rolls back the steps that ran.
            || (phase == Phase::Failed
                && !action.spec.plan.is_empty()
                && status.rollback.is_none())
            || action.labels().get(OPEN_LABEL).is_some_and(|v| v == "true")
    }

    /// Steps the action while each step moves it on (at most
    /// [`MAX_STEPS`] at once); returns what the last step left to do. Each
    /// step starts from the action as the API server has it now.
    async fn drive(&self, namespace: &str, name: &str) -> Result<Next, Error> {
        let api: Api<HealingAction> = Api::namespaced(self.inner.ctx.client.clone(), namespace);
        for _ in 0..MAX_STEPS {
            let Some(action) = api.get_opt(name).await? else {
                return Ok(Next::Wait);
            };
            let phase = action.phase();
            let step = Step {
                driver: self,
                api: &api,
                action,
            };
            let next = match phase {
                Phase::Proposed if ladder::is_escalation(&step.action) => step.escalate().await?,
                Phase::Proposed => step.review().await?,
                Phase::Escalated => step.escalated().await?,
                Phase::PendingApproval => step.await_human().await?,
                Phase::Approved | Phase::Executing | Phase::Verifying
                    if !step.action.spec.plan.is_empty() =>
                {
                    step.run_plan().await?
                }
                Phase::Approved | Phase::Executing | Phase::Verifying => step.execute().await?,
                Phase::Succeeded | Phase::Failed if !step.action.spec.plan.is_empty() => {
                    step.finish_plan().await?
                }
                Phase::Succeeded | Phase::Failed => step.finish_or_roll_back().await?,
                Phase::Denied
                | Phase::RolledBack
                | Phase::Expired
                | Phase::Recorded
                | Phase::Resolved => step.close().await?,
            };
            if next != Next::Now {
                return Ok(next);
            }
        }
        Ok(Next::Wait)
    }

    /// Exports the effectiveness ratios (see [`history::effectiveness`]),
    /// replacing the last ones.
    pub fn export_effectiveness(&self, ratios: &BTreeMap<(String, ActionType), f64>) {
        let gauge = &self.inner.effectiveness;
        // Series whose key is gone are removed; the others are set in place,
        // so a scrape never sees them missing.
        for family in prometheus::core::Collector::collect(gauge) {
            for metric in family.get_metric() {
                let labels: BTreeMap<&str, &str> = metric
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                let (Some(issue), Some(action)) = (labels.get("issue_kind"), labels.get("action"))
                else {
                    continue;
                };
                if !ratios
                    .keys()
                    .any(|(i, a)| i == issue && a.name() == *action)
                {
                    let _ = gauge.remove_label_values(&[issue, action]);
                }
            }
        }
        for ((issue, action), ratio) in ratios {
            gauge.with_label_values(&[issue, action.name()]).set(*ratio);
        }
    }

    /// The outcome history of `policy_ref` as of now: its status's, with
    /// the actions the status has not counted yet.
    pub(crate) fn history(&self, policy_ref: &str) -> Vec<nanny_crd::OutcomeStats> {
        let old = self
            .policy(policy_ref)
            .and_then(|p| p.status.as_ref().map(|s| s.outcomes.clone()))
            .unwrap_or_default();
        let actions = self.inner.ctx.actions.state();
        history::merge(
            &old,
            actions
                .iter()
                .filter(|a| a.spec.policy_ref == policy_ref)
                .map(AsRef::as_ref),
        )
    }

    fn policy(&self, policy_ref: &str) -> Option<Arc<HealingPolicy>> {
        let (ns, name) = policy_ref.split_once('/')?;
        self.inner
            .ctx
            .policies
            .get(&ObjectRef::new(name).within(ns))
    }
}

enum Existing {
    Open(String, String),
    CoolingDown,
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
    find(snapshot, &target.uid).is_some()
}

/// The reference of the object with `uid` in the snapshot.
fn find<'a>(snapshot: &'a ClusterSnapshot, uid: &str) -> Option<&'a pb::ObjectRef> {
    let of = |r: &'a Option<pb::ObjectRef>| r.as_ref().filter(|r| r.uid == uid);
    None.or_else(|| snapshot.pods.iter().find_map(|o| of(&o.r#ref)))
        .or_else(|| snapshot.nodes.iter().find_map(|o| of(&o.r#ref)))
        .or_else(|| snapshot.workloads.iter().find_map(|o| of(&o.r#ref)))
        .or_else(|| snapshot.jobs.iter().find_map(|o| of(&o.r#ref)))
        .or_else(|| snapshot.hpas.iter().find_map(|o| of(&o.r#ref)))
        .or_else(|| snapshot.pvcs.iter().find_map(|o| of(&o.r#ref)))
        .or_else(|| snapshot.pdbs.iter().find_map(|o| of(&o.r#ref)))
        .or_else(|| snapshot.namespaces.iter().find_map(|o| of(&o.r#ref)))
        .or_else(|| snapshot.services.iter().find_map(|o| of(&o.r#ref)))
        .or_else(|| snapshot.webhooks.iter().find_map(|o| of(&o.r#ref)))
        .or_else(|| snapshot.network_policies.iter().find_map(|o| of(&o.r#ref)))
        .or_else(|| snapshot.ingresses.iter().find_map(|o| of(&o.r#ref)))
        .or_else(|| snapshot.volumes.iter().find_map(|o| of(&o.r#ref)))
        .or_else(|| snapshot.tls_certificates.iter().find_map(|o| of(&o.r#ref)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_of_different_issues_on_one_target_are_different_actions() {
        let spec = |action: &str, issue: Option<&str>| -> nanny_crd::HealingActionSpec {
            serde_json::from_value(serde_json::json!({
                "policyRef": "shop/default",
                "target": { "kind": "PersistentVolumeClaim", "namespace": "shop", "name": "data", "uid": "u1" },
                "action": { "type": action },
                "source": { "kind": "Rule", "name": "r" },
                "confidence": 100, "reasoning": "r",
                "recommendationId": "rec-1", "snapshotId": "snap-1",
                "issueKind": issue,
            }))
            .unwrap()
        };
        let pending = dedup_kind(&spec("ReportOnly", Some("PVC_PENDING")));
        assert_eq!(pending, "ReportOnly/PVC_PENDING");
        assert_ne!(pending, dedup_kind(&spec("ReportOnly", Some("PVC_LOST"))));
        assert_eq!(dedup_kind(&spec("ReportOnly", None)), "ReportOnly");
        // Other actions stay one per target and type, whatever the issue.
        assert_eq!(
            dedup_kind(&spec("ExpandPvc", Some("PVC_NEARLY_FULL"))),
            "ExpandPvc"
        );
    }

    #[test]
    fn a_failed_plan_is_driven_until_its_steps_are_rolled_back() {
        let mut plan: HealingAction = serde_json::from_value(serde_json::json!({
            "apiVersion": "nanny.ai/v1alpha1", "kind": "HealingAction",
            "metadata": { "name": "web-plan", "namespace": "shop" },
            "spec": {
                "policyRef": "shop/default",
                "target": { "kind": "Deployment", "namespace": "shop", "name": "web", "uid": "u1" },
                "action": { "type": "ScaleWorkload", "params": { "replicas": 2 } },
                "plan": [
                    { "type": "ScaleWorkload", "params": { "replicas": 2 } },
                    { "type": "RolloutRestart" },
                ],
                "source": { "kind": "Rule", "name": "r" },
                "confidence": 100, "reasoning": "r",
                "recommendationId": "rec-1", "snapshotId": "snap-1",
            },
            "status": { "phase": "Failed" },
        }))
        .unwrap();
        // No open label (written by hand): driven all the same.
        assert!(Driver::needs_driving(&plan));
        plan.status.as_mut().unwrap().rollback = Some(nanny_crd::ResultRecord {
            outcome: nanny_crd::Outcome::RolledBack,
            dry_run_diff: String::new(),
            pre_image_ref: String::new(),
            verification: String::new(),
            error: String::new(),
            finished_at: None,
        });
        assert!(!Driver::needs_driving(&plan), "rolled back: done");
        // A single failed action without a rollback asked for is done.
        plan.spec.plan.clear();
        plan.status.as_mut().unwrap().rollback = None;
        assert!(!Driver::needs_driving(&plan));
    }

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
