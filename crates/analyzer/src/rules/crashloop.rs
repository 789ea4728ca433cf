//! Crash loops: restart the pod, then roll its workload when several
//! replicas loop at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nanny_proto::v1::{self as pb, RestartPod, RolloutRestart, Severity, action::Kind};

use super::{Draft, Drafts, ROLLABLE, Rules, describe, is_oom, ref_of, report};
use crate::catalog::{CRASHLOOP_RESTART, CRASHLOOP_ROLLOUT};
use crate::index::SnapshotIndex;

impl Rules {
    #[expect(
        clippy::too_many_lines,
        reason = "one rule: its thresholds, the grouping per workload and its two drafts (restart, rollout) read together"
    )]
    pub(super) fn crashloops(
        &self,
        issues: &[&pb::Issue],
        index: &SnapshotIndex<'_>,
        drafts: &mut Drafts,
    ) {
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
}
