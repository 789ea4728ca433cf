//! OOM kills: raise the container's memory limit on its workload.

use std::collections::BTreeSet;

use nanny_proto::v1::{self as pb, Severity};

use super::{
    Draft, Drafts, MIB, ROLLABLE, Rules, describe, is_oom, memory_limit, ref_of, report, round_up,
    scaled,
};
use crate::catalog::OOM_RAISE_MEMORY;
use crate::index::SnapshotIndex;

impl Rules {
    #[expect(
        clippy::too_many_lines,
        reason = "one rule: its evidence, the new limit's arithmetic and its ceiling read together"
    )]
    pub(super) fn oom(
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
                memory_limit(name, proposed)
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
}
