//! Rollouts stuck past their progress deadline: rolled back to the
//! previous revision once a human approves, where there is one.

use nanny_proto::v1::{self as pb, Severity, action::Kind};

use super::{Draft, Drafts, Rules, describe, ref_of};
use crate::catalog::ROLLOUT_STUCK_UNDO;
use crate::index::SnapshotIndex;

/// The revision the Deployment controller stamps on a Deployment.
const REVISION: &str = "deployment.kubernetes.io/revision";

impl Rules {
    pub(super) fn rollout_stuck(
        &self,
        issue: &pb::Issue,
        target: &pb::ObjectRef,
        index: &SnapshotIndex<'_>,
        drafts: &mut Drafts,
    ) {
        let Some(workload) = index.workloads.get(target.uid.as_str()) else {
            return;
        };
        let Some(r) = ref_of(workload.r#ref.as_ref()).filter(|r| r.kind == "Deployment") else {
            return;
        };
        // Revision 1 has nothing before it: left to the model and people.
        let Some(revision) = workload
            .annotations
            .get(REVISION)
            .and_then(|r| r.parse::<u64>().ok())
            .filter(|r| *r >= 2)
        else {
            return;
        };
        drafts.add(
            "",
            Draft {
                rule: ROLLOUT_STUCK_UNDO,
                action: Kind::RolloutUndo(pb::RolloutUndo {}),
                target: r.clone(),
                reason: format!(
                    "{} is stuck rolling out revision {revision}: {} of {} replicas updated and {} available past its progress deadline. Rolling back gives its pods the previous revision's template again; approve once the new revision is known to be the fault (its pods' reports say why they fail).",
                    describe(r),
                    workload.updated_replicas,
                    workload.desired_replicas,
                    workload.available_replicas,
                ),
                risk: Severity::Warning,
                fingerprints: [issue.fingerprint.clone()].into(),
                evidence: [format!("revision: {revision}")].into(),
            },
        );
    }
}
