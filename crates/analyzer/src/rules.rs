//! The deterministic rules: from a snapshot's issues to typed
//! recommendations, each pinned to an object of the snapshot by uid and
//! resourceVersion.
//!
//! Rules read only structured fields (kinds, counts, sizes, refs). Free text
//! that came from the cluster — event messages, summaries, annotations — is
//! never an input, so no pod name or event text can steer an action.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::SystemTime,
};

use nanny_proto::v1::{
    self as pb, Action, ClusterSnapshot, IssueKind, Recommendation, ReportOnly, Severity, Source,
    action::Kind, source,
};
use sha2::{Digest as _, Sha256};

use crate::{config::RulesConfig, index::SnapshotIndex};

mod crashloop;
mod cron;
mod failed_pods;
mod hpa;
mod node;
mod oom;
mod predict;
mod pvc;
mod report;
mod report_cost;
mod report_objects;
mod report_services;
mod retrigger;
mod rollout;
mod stale_job;

use self::{report::report_pod, report_objects::report_object};

pub use crate::catalog::*;

/// Workload kinds that support rollout restarts and template patches.
const ROLLABLE: &[&str] = nanny_proto::vocabulary::WORKLOAD_KINDS;

const MIB: i64 = 1 << 20;

/// The rules engine: a pure function of the config, the snapshot and the time.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    config: RulesConfig,
    /// Issue kinds analysed; `None` = all.
    triggers: Option<BTreeSet<i32>>,
}

/// A recommendation being built; merged with others for the same target and
/// action before it is stamped.
struct Draft {
    rule: Rule,
    action: Kind,
    target: pb::ObjectRef,
    reason: String,
    risk: Severity,
    fingerprints: BTreeSet<String>,
    evidence: BTreeSet<String>,
}

/// Drafts keyed by (rule, target uid, discriminator) so that several issues
/// asking for the same action yield one recommendation citing all of them.
/// The second map holds the later steps of the drafts that are plans.
#[derive(Default)]
struct Drafts(
    BTreeMap<(&'static str, String, String), Draft>,
    BTreeMap<(&'static str, String, String), Vec<Kind>>,
);

impl Drafts {
    /// A draft's key: its rule, its target's uid and `discriminator`.
    fn key(discriminator: &str, draft: &Draft) -> (&'static str, String, String) {
        (
            draft.rule.id,
            draft.target.uid.clone(),
            discriminator.to_owned(),
        )
    }

    fn add(&mut self, discriminator: &str, draft: Draft) {
        let key = Self::key(discriminator, &draft);
        match self.0.get_mut(&key) {
            Some(existing) => {
                existing.fingerprints.extend(draft.fingerprints);
                existing.evidence.extend(draft.evidence);
            }
            None => {
                self.0.insert(key, draft);
            }
        }
    }

    /// As [`Self::add`]; merged into a draft already there, its reason (and
    /// a report's explanation) is added when it says something else: two
    /// predictions on one node, one cordon explaining both.
    fn add_explained(&mut self, discriminator: &str, draft: Draft) {
        let key = Self::key(discriminator, &draft);
        if let Some(existing) = self.0.get_mut(&key)
            && !existing.reason.contains(&draft.reason)
        {
            existing.reason.push(' ');
            existing.reason.push_str(&draft.reason);
            if let Kind::ReportOnly(report) = &mut existing.action {
                report.explanation.clone_from(&existing.reason);
            }
        }
        self.add(discriminator, draft);
    }

    /// A plan: `draft`'s action first, then `then`, in order, on its target.
    fn add_plan(&mut self, discriminator: &str, draft: Draft, then: Vec<Kind>) {
        let key = Self::key(discriminator, &draft);
        self.1.insert(key, then);
        self.add(discriminator, draft);
    }
}

/// A memory limit of `bytes` for `container`, requests unchanged.
fn memory_limit(container: &str, bytes: i64) -> Kind {
    Kind::PatchResources(pb::PatchResources {
        container: container.to_owned(),
        requests: None,
        limits: Some(pb::Resources {
            cpu_millicores: None,
            memory_bytes: Some(bytes),
        }),
    })
}

fn report(explanation: String) -> Kind {
    Kind::ReportOnly(ReportOnly { explanation })
}

fn scaled(value: i64, factor: f64) -> i64 {
    // Values are object sizes and replica counts, far below 2^53.
    (value as f64 * factor).ceil() as i64
}

/// `value` rounded up to a multiple of `unit`; both positive.
fn round_up(value: i64, unit: i64) -> i64 {
    value.saturating_add(unit - 1) / unit * unit
}

fn seconds_since(then: Option<&prost_types::Timestamp>, now: SystemTime) -> Option<i64> {
    let now = prost_types::Timestamp::from(now);
    then.map(|t| now.seconds - t.seconds)
}

fn ref_of(reference: Option<&pb::ObjectRef>) -> Option<&pb::ObjectRef> {
    reference.filter(|r| !r.uid.is_empty())
}

/// `Kind namespace/name`, or `Kind name` for a cluster-scoped object.
pub(crate) fn describe(r: &pb::ObjectRef) -> String {
    if r.namespace.is_empty() {
        format!("{} {}", r.kind, r.name)
    } else {
        format!("{} {}/{}", r.kind, r.namespace, r.name)
    }
}

fn is_oom(container: &pb::ContainerStatus) -> bool {
    container.state_reason == "OOMKilled"
        || container
            .last_termination
            .as_ref()
            .is_some_and(|t| t.reason == "OOMKilled")
}

/// Kinds about a pod that a person fixes: reported (a pod stuck
/// terminating may be force-deleted instead).
const POD_REPORTS: &[IssueKind] = &[
    IssueKind::ImagePullBackOff,
    IssueKind::CreateContainerConfigError,
    IssueKind::Unschedulable,
    IssueKind::CreateContainerError,
    IssueKind::RunContainerError,
    IssueKind::PodStuckTerminating,
    IssueKind::InitContainerFailing,
    IssueKind::LivenessProbeFailing,
    IssueKind::StartupProbeFailing,
    IssueKind::VolumeMountFailing,
    IssueKind::PodSandboxFailing,
    IssueKind::SchedulingGated,
    IssueKind::ContainerRestarting,
];

/// Kinds about other objects that a person fixes: reported (a budget one
/// more replica frees may be scaled instead).
const OBJECT_REPORTS: &[IssueKind] = &[
    IssueKind::PvcPending,
    IssueKind::PvcLost,
    IssueKind::NamespaceStuckTerminating,
    IssueKind::DeploymentUnavailable,
    IssueKind::PdbBlockingDisruptions,
    IssueKind::ReplicaFailure,
    IssueKind::StatefulsetNotProgressing,
    IssueKind::DaemonsetUnavailable,
    IssueKind::ServiceNoReadyEndpoints,
    IssueKind::ServiceSelectsNothing,
    IssueKind::StatefulsetServiceMissing,
    IssueKind::WebhookNoEndpoints,
    IssueKind::NetworkPolicySelectsNothing,
    IssueKind::IngressMisconfigured,
    IssueKind::PvReleased,
    IssueKind::PvFailed,
    IssueKind::HpaUnableToScale,
    IssueKind::HpaTargetWithoutRequests,
    IssueKind::TlsCertificateExpiring,
];

/// Kinds about what is ahead: predicted failures and cost.
const AHEAD: &[IssueKind] = &[
    IssueKind::PvcPredictedFull,
    IssueKind::OomPredicted,
    IssueKind::OverProvisioned,
    IssueKind::WorkloadIdle,
    IssueKind::NodePredictedExhausted,
    IssueKind::HpaAtMaxRising,
    IssueKind::NodeDiskPredictedFull,
];

impl Rules {
    /// Rules with `config`.
    pub fn new(config: RulesConfig) -> Self {
        Self {
            config,
            triggers: None,
        }
    }

    /// Only issues of these kinds are analysed (a policy's triggers).
    #[must_use]
    pub fn with_triggers(mut self, triggers: Option<BTreeSet<i32>>) -> Self {
        self.triggers = triggers;
        self
    }

    /// Every recommendation the rules make for `snapshot` at `now`, in a
    /// deterministic order. Issues whose target is not in the snapshot, and
    /// issue kinds no rule covers, yield nothing.
    pub fn evaluate(&self, snapshot: &ClusterSnapshot, now: SystemTime) -> Vec<Recommendation> {
        let index = SnapshotIndex::new(snapshot);
        self.evaluate_indexed(snapshot, &index, now)
    }

    /// [`Rules::evaluate`] over an index the caller already built.
    pub fn evaluate_indexed(
        &self,
        snapshot: &ClusterSnapshot,
        index: &SnapshotIndex<'_>,
        now: SystemTime,
    ) -> Vec<Recommendation> {
        let mut drafts = Drafts::default();
        let mut crashloops: Vec<&pb::Issue> = Vec::new();
        let mut evicted: Vec<&pb::Issue> = Vec::new();
        for issue in &snapshot.issues {
            let Some(target) = ref_of(issue.target.as_ref()) else {
                continue;
            };
            if self
                .triggers
                .as_ref()
                .is_some_and(|t| !t.contains(&issue.kind))
            {
                continue;
            }
            match IssueKind::try_from(issue.kind) {
                Ok(IssueKind::CrashLoopBackOff) if self.config.crashloop.enabled => {
                    crashloops.push(issue);
                }
                Ok(IssueKind::Evicted) if self.config.failed_pods.enabled => {
                    evicted.push(issue);
                }
                Ok(IssueKind::OomKilled) if self.config.oom.enabled => {
                    self.oom(issue, target, index, &mut drafts);
                }
                Ok(IssueKind::JobCompletedStale) if self.config.stale_job.enabled => {
                    self.stale_job(issue, target, index, now, &mut drafts);
                }
                Ok(IssueKind::JobFailed) => self.job_failed(issue, target, index, &mut drafts),
                Ok(IssueKind::RolloutStuck) => {
                    self.rollout_stuck(issue, target, index, &mut drafts)
                }
                Ok(IssueKind::HpaAtMax) if self.config.hpa.enabled => {
                    self.hpa(issue, target, index, &mut drafts);
                }
                Ok(
                    kind @ (IssueKind::NodeNotReady
                    | IssueKind::NodeMemoryPressure
                    | IssueKind::NodeDiskPressure
                    | IssueKind::NodePidPressure
                    | IssueKind::NodeNetworkUnavailable
                    | IssueKind::NodeProblem),
                ) if self.config.node.enabled => {
                    self.node(kind, issue, target, index, &mut drafts);
                }
                Ok(IssueKind::NodeCordoned) if self.config.node.enabled => {
                    self.node_recovered(issue, target, index, now, &mut drafts);
                }
                Ok(IssueKind::PvcNearlyFull) if self.config.pvc.enabled => {
                    self.pvc(issue, target, index, &mut drafts);
                }
                Ok(kind) if AHEAD.contains(&kind) => {
                    self.ahead(kind, issue, target, index, &mut drafts);
                }
                Ok(kind) if POD_REPORTS.contains(&kind) && self.config.report.enabled => {
                    report_pod(kind, issue, target, index, now, &mut drafts);
                }
                Ok(kind) if OBJECT_REPORTS.contains(&kind) && self.config.report.enabled => {
                    report_object(kind, issue, target, index, now, &mut drafts);
                }
                Ok(
                    kind @ (IssueKind::CronjobSuspended
                    | IssueKind::CronjobMissedSchedule
                    | IssueKind::CronjobInvalidSchedule),
                ) if self.config.report.enabled => {
                    self.cron_job(kind, issue, target, index, now, &mut drafts);
                }
                // Kinds without a rule (and kinds this build does not know)
                // are left to the model and to people.
                _ => {}
            }
        }
        self.crashloops(&crashloops, index, &mut drafts);
        self.evicted(&evicted, index, &mut drafts);
        if !self.config.disabled.is_empty() {
            drafts
                .0
                .retain(|(rule, _, _), _| !self.config.disabled.contains(*rule));
        }
        stamp(snapshot, drafts, now)
    }
}

/// A recommendation id: stable for the same snapshot, rule, target and
/// action parameters, distinct otherwise.
fn recommendation_id(snapshot_id: &str, key: &(&'static str, String, String)) -> String {
    let digest = Sha256::digest(format!("{snapshot_id}/{}/{}/{}", key.0, key.1, key.2));
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", key.0)
}

fn stamp(snapshot: &ClusterSnapshot, drafts: Drafts, now: SystemTime) -> Vec<Recommendation> {
    let Drafts(drafts, mut plans) = drafts;
    drafts
        .into_iter()
        .map(|(key, draft)| {
            let plan = plans.remove(&key).map_or_else(Vec::new, |then| {
                std::iter::once(draft.action.clone())
                    .chain(then)
                    .map(|kind| Action { kind: Some(kind) })
                    .collect()
            });
            let mut evidence_refs: Vec<String> = draft
                .fingerprints
                .iter()
                .map(|f| format!("issue:{f}"))
                .collect();
            evidence_refs.extend(draft.evidence);
            Recommendation {
                id: recommendation_id(&snapshot.id, &key),
                snapshot_id: snapshot.id.clone(),
                issue_fingerprints: draft.fingerprints.into_iter().collect(),
                action: Some(Action {
                    kind: Some(draft.action),
                }),
                target: Some(draft.target),
                reason: draft.reason,
                risk: draft.risk as i32,
                // Rules are deterministic: full confidence, by contract.
                confidence: 100,
                source: Some(Source {
                    kind: Some(source::Kind::RuleId(draft.rule.id.to_owned())),
                }),
                evidence_refs,
                created_at: Some(now.into()),
                explanation: None,
                // Set when the analyzer correlates the snapshot's incidents.
                incident: String::new(),
                plan,
                plan_step: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod predict_tests;
#[cfg(test)]
mod report_tests;
#[cfg(test)]
pub(crate) mod tests;
