//! The deterministic rules: from a snapshot's issues to typed
//! recommendations, each pinned to an object of the snapshot by uid and
//! resourceVersion.
//!
//! Rules read only structured fields (kinds, counts, sizes, refs). Free text
//! that came from the cluster — event messages, summaries, annotations — is
//! never an input, so no pod name or event text can steer an action.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::SystemTime,
};

use nanny_proto::v1::{
    self as pb, Action, ClusterSnapshot, CordonNode, DeleteJob, DrainNode, ExpandPvc, IssueKind,
    PatchResources, Recommendation, ReportOnly, Resources, RestartPod, RolloutRestart, ScaleHpa,
    Severity, Source, action::Kind, source,
};
use sha2::{Digest as _, Sha256};

use crate::{config::RulesConfig, index::SnapshotIndex};

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
#[derive(Default)]
struct Drafts(BTreeMap<(&'static str, String, String), Draft>);

impl Drafts {
    fn add(&mut self, discriminator: &str, draft: Draft) {
        let key = (
            draft.rule.id,
            draft.target.uid.clone(),
            discriminator.to_owned(),
        );
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

fn describe(r: &pb::ObjectRef) -> String {
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
                Ok(IssueKind::OomKilled) if self.config.oom.enabled => {
                    self.oom(issue, target, index, &mut drafts);
                }
                Ok(IssueKind::JobCompletedStale) if self.config.stale_job.enabled => {
                    self.stale_job(issue, target, index, now, &mut drafts);
                }
                Ok(IssueKind::HpaAtMax) if self.config.hpa.enabled => {
                    self.hpa(issue, target, index, &mut drafts);
                }
                Ok(
                    kind @ (IssueKind::NodeNotReady
                    | IssueKind::NodeMemoryPressure
                    | IssueKind::NodeDiskPressure
                    | IssueKind::NodePidPressure),
                ) if self.config.node.enabled => {
                    self.node(kind, issue, target, index, &mut drafts);
                }
                Ok(IssueKind::PvcNearlyFull) if self.config.pvc.enabled => {
                    self.pvc(issue, target, index, &mut drafts);
                }
                Ok(
                    kind @ (IssueKind::ImagePullBackOff
                    | IssueKind::CreateContainerConfigError
                    | IssueKind::Unschedulable),
                ) if self.config.report.enabled => {
                    report_pod(kind, issue, target, index, &mut drafts);
                }
                // Kinds without a rule (and kinds this build does not know)
                // are left to the model and to people.
                _ => {}
            }
        }
        self.crashloops(&crashloops, index, &mut drafts);
        if !self.config.disabled.is_empty() {
            drafts
                .0
                .retain(|(rule, _, _), _| !self.config.disabled.contains(*rule));
        }
        stamp(snapshot, drafts, now)
    }

    fn crashloops(&self, issues: &[&pb::Issue], index: &SnapshotIndex<'_>, drafts: &mut Drafts) {
        let config = &self.config.crashloop;
        // Eligible pods by uid, with their fingerprints and highest restart count.
        let mut pods: BTreeMap<&str, (&pb::Pod, BTreeSet<String>, u32)> = BTreeMap::new();
        for issue in issues {
            let Some(pod) = issue
                .target
                .as_ref()
                .and_then(|t| index.pods.get(t.uid.as_str()))
            else {
                continue;
            };
            let looping: Vec<&pb::ContainerStatus> = pod
                .containers
                .iter()
                .filter(|c| c.state_reason == "CrashLoopBackOff")
                .collect();
            // Memory is the OOM rule's business: a restart would not fix it.
            if looping.is_empty() || looping.iter().any(|c| is_oom(c)) {
                continue;
            }
            let restarts = looping.iter().map(|c| c.restart_count).max().unwrap_or(0);
            if restarts < config.min_restarts {
                continue;
            }
            let Some(pod_ref) = ref_of(pod.r#ref.as_ref()) else {
                continue;
            };
            let entry = pods
                .entry(pod_ref.uid.as_str())
                .or_insert_with(|| (pod, BTreeSet::new(), restarts));
            entry.1.insert(issue.fingerprint.clone());
        }

        // Group by workload to decide between pod restarts and one rollout.
        let mut by_workload: HashMap<&str, Vec<&str>> = HashMap::new();
        for (uid, (pod, _, _)) in &pods {
            if let Some(w) = ref_of(pod.workload.as_ref()) {
                by_workload.entry(w.uid.as_str()).or_default().push(uid);
            }
        }
        let mut rolled: BTreeSet<&str> = BTreeSet::new();
        for (workload_uid, members) in &by_workload {
            let Some(workload) = index.workloads.get(workload_uid) else {
                continue;
            };
            let Some(target) = ref_of(workload.r#ref.as_ref()) else {
                continue;
            };
            let desired = i64::from(workload.desired_replicas.max(0));
            let affected = members.len() as i64;
            // With the rollout rule switched off, each pod is restarted.
            let most = desired > 0
                && affected * 100 > desired * i64::from(config.rollout_percent)
                && ROLLABLE.contains(&target.kind.as_str())
                && !self.config.disabled.contains(CRASHLOOP_ROLLOUT.id);
            if !most {
                continue;
            }
            let mut fingerprints = BTreeSet::new();
            for uid in members {
                if let Some((_, f, _)) = pods.get(uid) {
                    fingerprints.extend(f.iter().cloned());
                }
                rolled.insert(uid);
            }
            drafts.add(
                "",
                Draft {
                    rule: CRASHLOOP_ROLLOUT,
                    action: Kind::RolloutRestart(RolloutRestart {}),
                    target: target.clone(),
                    reason: format!(
                        "{affected} of {desired} replicas of {} are crash-looping; a rolling restart replaces them in order.",
                        describe(target)
                    ),
                    risk: Severity::Warning,
                    fingerprints,
                    evidence: [format!("crash-looping replicas: {affected}/{desired}")].into(),
                },
            );
        }

        for (uid, (pod, fingerprints, restarts)) in pods {
            if rolled.contains(uid) {
                continue;
            }
            let Some(target) = ref_of(pod.r#ref.as_ref()) else {
                continue;
            };
            let evidence = [format!("restart count: {restarts}")].into();
            // Deleting a pod no controller owns removes it for good.
            let action = if ref_of(pod.owner.as_ref()).is_none() {
                report(format!(
                    "{} is crash-looping ({restarts} restarts) but no controller owns it, so deleting it would not bring it back; restart it by hand.",
                    describe(target)
                ))
            } else {
                Kind::RestartPod(RestartPod {})
            };
            drafts.add(
                "",
                Draft {
                    rule: CRASHLOOP_RESTART,
                    reason: format!(
                        "{} is crash-looping ({restarts} restarts) for a reason other than memory.",
                        describe(target)
                    ),
                    action,
                    target: target.clone(),
                    risk: Severity::Info,
                    fingerprints,
                    evidence,
                },
            );
        }
    }

    fn oom(
        &self,
        issue: &pb::Issue,
        target: &pb::ObjectRef,
        index: &SnapshotIndex<'_>,
        drafts: &mut Drafts,
    ) {
        let config = &self.config.oom;
        let Some(pod) = index.pods.get(target.uid.as_str()) else {
            return;
        };
        let Some(pod_ref) = ref_of(pod.r#ref.as_ref()) else {
            return;
        };
        let fingerprints: BTreeSet<String> = [issue.fingerprint.clone()].into();
        let workload = ref_of(pod.workload.as_ref())
            .and_then(|w| index.workloads.get(w.uid.as_str()))
            .filter(|w| {
                w.r#ref
                    .as_ref()
                    .is_some_and(|r| ROLLABLE.contains(&r.kind.as_str()))
            });
        for container in pod.containers.iter().filter(|c| is_oom(c)) {
            let name = container.name.as_str();
            let Some((workload, workload_ref)) =
                workload.and_then(|w| ref_of(w.r#ref.as_ref()).map(|r| (w, r)))
            else {
                drafts.add(
                    name,
                    Draft {
                        rule: OOM_RAISE_MEMORY,
                        action: report(format!(
                            "Container {name} of {} was OOM-killed, but its owning Deployment, StatefulSet or DaemonSet is not in the snapshot; raise its memory limit where the pod is defined.",
                            describe(pod_ref)
                        )),
                        target: pod_ref.clone(),
                        reason: format!("{} was OOM-killed.", describe(pod_ref)),
                        risk: Severity::Info,
                        fingerprints: fingerprints.clone(),
                        evidence: BTreeSet::new(),
                    },
                );
                continue;
            };
            let limit = workload
                .containers
                .iter()
                .find(|c| c.name == name)
                .and_then(|c| c.limits.and_then(|l| l.memory_bytes))
                .filter(|l| *l > 0);
            let reason = format!(
                "Container {name} of {} was killed for exceeding its memory limit.",
                describe(pod_ref)
            );
            let Some(limit) = limit else {
                drafts.add(
                    name,
                    Draft {
                        rule: OOM_RAISE_MEMORY,
                        action: report(format!(
                            "Container {name} of {} has no memory limit, so the kill came from node memory pressure; set requests and a limit.",
                            describe(workload_ref)
                        )),
                        target: workload_ref.clone(),
                        reason,
                        risk: Severity::Info,
                        fingerprints: fingerprints.clone(),
                        evidence: BTreeSet::new(),
                    },
                );
                continue;
            };
            let wanted = round_up(scaled(limit, config.factor), MIB);
            let proposed = wanted.min(config.max_memory_bytes);
            let evidence: BTreeSet<String> = [format!("memory limit bytes: {limit}")].into();
            let action = if proposed <= limit {
                report(format!(
                    "Container {name} of {} is OOM-killed at a memory limit of {limit} bytes, already at the ceiling of {} bytes; it needs a person.",
                    describe(workload_ref),
                    config.max_memory_bytes
                ))
            } else {
                Kind::PatchResources(PatchResources {
                    container: name.to_owned(),
                    requests: None,
                    limits: Some(Resources {
                        cpu_millicores: None,
                        memory_bytes: Some(proposed),
                    }),
                })
            };
            drafts.add(
                name,
                Draft {
                    rule: OOM_RAISE_MEMORY,
                    action,
                    target: workload_ref.clone(),
                    reason,
                    risk: Severity::Warning,
                    fingerprints: fingerprints.clone(),
                    evidence,
                },
            );
        }
    }

    fn stale_job(
        &self,
        issue: &pb::Issue,
        target: &pb::ObjectRef,
        index: &SnapshotIndex<'_>,
        now: SystemTime,
        drafts: &mut Drafts,
    ) {
        let min_age = i64::try_from(self.config.stale_job.min_age_secs).unwrap_or(i64::MAX);
        let Some(job) = index.jobs.get(target.uid.as_str()) else {
            return;
        };
        let Some(job_ref) = ref_of(job.r#ref.as_ref()) else {
            return;
        };
        let complete = job
            .conditions
            .iter()
            .any(|c| c.r#type == "Complete" && c.status == "True");
        let Some(age) = seconds_since(job.completion_time.as_ref(), now) else {
            return;
        };
        if !complete || job.active > 0 || age < min_age {
            return;
        }
        drafts.add(
            "",
            Draft {
                rule: STALE_JOB_DELETE,
                action: Kind::DeleteJob(DeleteJob {
                    min_age_seconds: min_age,
                }),
                target: job_ref.clone(),
                reason: format!(
                    "{} completed {}h ago and is still there.",
                    describe(job_ref),
                    age / 3600
                ),
                risk: Severity::Info,
                fingerprints: [issue.fingerprint.clone()].into(),
                evidence: [format!("completed seconds ago: {age}")].into(),
            },
        );
    }

    fn hpa(
        &self,
        issue: &pb::Issue,
        target: &pb::ObjectRef,
        index: &SnapshotIndex<'_>,
        drafts: &mut Drafts,
    ) {
        let config = &self.config.hpa;
        let Some(hpa) = index.hpas.get(target.uid.as_str()) else {
            return;
        };
        let Some(hpa_ref) = ref_of(hpa.r#ref.as_ref()) else {
            return;
        };
        if hpa.max_replicas <= 0 || hpa.current_replicas < hpa.max_replicas {
            return;
        }
        let Some((name, current, wanted)) = hpa.metrics.iter().find_map(|m| {
            match (m.current_utilization_percent, m.target_utilization_percent) {
                (Some(current), Some(wanted))
                    if current > wanted.saturating_add(config.over_target_percent) =>
                {
                    Some((m.name.as_str(), current, wanted))
                }
                _ => None,
            }
        }) else {
            return;
        };
        let max = hpa.max_replicas;
        let raised = i32::try_from(scaled(i64::from(max), config.factor))
            .unwrap_or(i32::MAX)
            .max(max.saturating_add(1));
        let proposed = raised.min(config.max_replicas);
        let action = if proposed <= max {
            report(format!(
                "{} is at its maximum of {max} replicas, already at the ceiling of {}; it needs capacity planning.",
                describe(hpa_ref),
                config.max_replicas
            ))
        } else {
            Kind::ScaleHpa(ScaleHpa {
                min_replicas: None,
                max_replicas: proposed,
            })
        };
        drafts.add(
            "",
            Draft {
                rule: HPA_RAISE_MAX,
                action,
                target: hpa_ref.clone(),
                reason: format!(
                    "{} is at its maximum of {max} replicas with {name} at {current}% (target {wanted}%).",
                    describe(hpa_ref)
                ),
                risk: Severity::Info,
                fingerprints: [issue.fingerprint.clone()].into(),
                evidence: [
                    format!("max replicas: {max}"),
                    format!("{name} utilisation percent: {current}/{wanted}"),
                ]
                .into(),
            },
        );
    }

    fn node(
        &self,
        kind: IssueKind,
        issue: &pb::Issue,
        target: &pb::ObjectRef,
        index: &SnapshotIndex<'_>,
        drafts: &mut Drafts,
    ) {
        let config = &self.config.node;
        let Some(node) = index.nodes.get(target.uid.as_str()) else {
            return;
        };
        let Some(node_ref) = ref_of(node.r#ref.as_ref()) else {
            return;
        };
        let not_ready = kind == IssueKind::NodeNotReady;
        let condition = match kind {
            IssueKind::NodeMemoryPressure => "MemoryPressure",
            IssueKind::NodeDiskPressure => "DiskPressure",
            IssueKind::NodePidPressure => "PIDPressure",
            _ => "NotReady",
        };
        let fingerprints: BTreeSet<String> = [issue.fingerprint.clone()].into();
        let evidence: BTreeSet<String> = [format!("condition: {condition}")].into();
        if !node.unschedulable {
            let rule = if not_ready {
                NODE_NOT_READY_CORDON
            } else {
                NODE_PRESSURE_CORDON
            };
            drafts.add(
                "",
                Draft {
                    rule,
                    action: Kind::CordonNode(CordonNode {}),
                    target: node_ref.clone(),
                    reason: format!(
                        "{} reports {condition}; stop scheduling onto it.",
                        describe(node_ref)
                    ),
                    risk: Severity::Warning,
                    fingerprints: fingerprints.clone(),
                    evidence: evidence.clone(),
                },
            );
        }
        if not_ready && config.drain_not_ready {
            drafts.add(
                "",
                Draft {
                    rule: NODE_NOT_READY_DRAIN,
                    action: Kind::DrainNode(DrainNode {
                        grace_period_seconds: config.drain_grace_period_secs,
                        timeout_seconds: config.drain_timeout_secs,
                    }),
                    target: node_ref.clone(),
                    reason: format!(
                        "{} is not ready; move its pods elsewhere.",
                        describe(node_ref)
                    ),
                    risk: Severity::Critical,
                    fingerprints,
                    evidence,
                },
            );
        }
    }

    fn pvc(
        &self,
        issue: &pb::Issue,
        target: &pb::ObjectRef,
        index: &SnapshotIndex<'_>,
        drafts: &mut Drafts,
    ) {
        let config = &self.config.pvc;
        let Some(pvc) = index.pvcs.get(target.uid.as_str()) else {
            return;
        };
        let Some(pvc_ref) = ref_of(pvc.r#ref.as_ref()) else {
            return;
        };
        let Some(percent) = pvc.usage_percent.filter(|p| *p >= config.usage_percent) else {
            return;
        };
        let capacity = if pvc.capacity_bytes > 0 {
            pvc.capacity_bytes
        } else {
            pvc.requested_bytes
        };
        if capacity <= 0 {
            return;
        }
        let proposed = round_up(scaled(capacity, config.factor), MIB).min(config.max_storage_bytes);
        let action = if !pvc.expandable {
            report(format!(
                "{} is {percent:.0}% full and its storage class does not allow expansion; move the data or clean up.",
                describe(pvc_ref)
            ))
        } else if proposed <= capacity {
            report(format!(
                "{} is {percent:.0}% full at {capacity} bytes, already at the ceiling of {} bytes.",
                describe(pvc_ref),
                config.max_storage_bytes
            ))
        } else {
            Kind::ExpandPvc(ExpandPvc {
                new_size_bytes: proposed,
            })
        };
        drafts.add(
            "",
            Draft {
                rule: PVC_EXPAND,
                action,
                target: pvc_ref.clone(),
                reason: format!("{} is {percent:.0}% full.", describe(pvc_ref)),
                risk: Severity::Warning,
                fingerprints: [issue.fingerprint.clone()].into(),
                evidence: [
                    format!("usage percent: {percent:.1}"),
                    format!("capacity bytes: {capacity}"),
                ]
                .into(),
            },
        );
    }
}

fn report_pod(
    kind: IssueKind,
    issue: &pb::Issue,
    target: &pb::ObjectRef,
    index: &SnapshotIndex<'_>,
    drafts: &mut Drafts,
) {
    let Some(pod_ref) = index
        .pods
        .get(target.uid.as_str())
        .and_then(|p| ref_of(p.r#ref.as_ref()))
    else {
        return;
    };
    let what = describe(pod_ref);
    let (rule, explanation) = match kind {
        IssueKind::ImagePullBackOff => (
            REPORT_IMAGE_PULL,
            format!(
                "{what} cannot pull its image: check the image name and tag, the pull secret and the registry. A restart would pull the same image again."
            ),
        ),
        IssueKind::CreateContainerConfigError => (
            REPORT_CONFIG_ERROR,
            format!(
                "{what} cannot start: it references a ConfigMap, Secret or key that does not exist. A restart would read the same configuration."
            ),
        ),
        _ => (
            REPORT_UNSCHEDULABLE,
            format!(
                "{what} cannot be scheduled: add capacity or relax its requests, affinity, taints or topology constraints. A restart would land in the same place."
            ),
        ),
    };
    drafts.add(
        "",
        Draft {
            rule,
            reason: explanation.clone(),
            action: report(explanation),
            target: pod_ref.clone(),
            risk: Severity::Info,
            fingerprints: [issue.fingerprint.clone()].into(),
            evidence: BTreeSet::new(),
        },
    );
}

/// A recommendation id: stable for the same snapshot, rule, target and
/// action parameters, distinct otherwise.
fn recommendation_id(snapshot_id: &str, key: &(&'static str, String, String)) -> String {
    let digest = Sha256::digest(format!("{snapshot_id}/{}/{}/{}", key.0, key.1, key.2));
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", key.0)
}

fn stamp(snapshot: &ClusterSnapshot, drafts: Drafts, now: SystemTime) -> Vec<Recommendation> {
    drafts
        .0
        .into_iter()
        .map(|(key, draft)| {
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
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
