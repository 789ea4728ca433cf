//! Evicted pods left behind: their controller has replaced them; delete
//! them, a capped number per call, one action per workload.

use std::collections::BTreeMap;

use nanny_proto::v1::{self as pb, DeleteFailedPods, Severity, action::Kind};

use super::{Draft, Drafts, ROLLABLE, Rules, describe, ref_of};
use crate::catalog::EVICTED_PODS_DELETE;
use crate::index::SnapshotIndex;

impl Rules {
    /// One DeleteFailedPods per workload with evicted pods, citing every
    /// one of them. A pod no workload owns is left alone: nothing replaced
    /// it, so its record may be all there is.
    pub(super) fn evicted(
        &self,
        issues: &[&pb::Issue],
        index: &SnapshotIndex<'_>,
        drafts: &mut Drafts,
    ) {
        let mut by_workload: BTreeMap<&str, (&pb::ObjectRef, Vec<&pb::Issue>)> = BTreeMap::new();
        for issue in issues {
            let Some(pod) = issue
                .target
                .as_ref()
                .and_then(|t| index.pods.get(t.uid.as_str()))
            else {
                continue;
            };
            let Some(workload) = ref_of(pod.workload.as_ref())
                .and_then(|w| index.workloads.get(w.uid.as_str()))
                .and_then(|w| ref_of(w.r#ref.as_ref()))
                .filter(|w| ROLLABLE.contains(&w.kind.as_str()))
            else {
                continue;
            };
            by_workload
                .entry(workload.uid.as_str())
                .or_insert_with(|| (workload, Vec::new()))
                .1
                .push(issue);
        }
        let most = self.config.failed_pods.max_pods;
        for (workload, evicted) in by_workload.into_values() {
            let count = evicted.len();
            drafts.add(
                "",
                Draft {
                    rule: EVICTED_PODS_DELETE,
                    action: Kind::DeleteFailedPods(DeleteFailedPods { max_pods: most }),
                    target: workload.clone(),
                    reason: format!(
                        "{count} evicted pod{} of {} {} been replaced by its controller and only clutter listings and the pod quota; deleting at most {most} per call.",
                        if count == 1 { "" } else { "s" },
                        describe(workload),
                        if count == 1 { "has" } else { "have" },
                    ),
                    risk: Severity::Info,
                    fingerprints: evicted.iter().map(|i| i.fingerprint.clone()).collect(),
                    evidence: [format!("evicted pods: {count}")].into(),
                },
            );
        }
    }
}
