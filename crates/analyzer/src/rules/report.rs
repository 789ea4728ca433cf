//! Issues a person fixes (image pulls, configuration, scheduling):
//! reported with what to look at, never acted on.

use std::collections::BTreeSet;

use nanny_proto::v1::{self as pb, IssueKind, Severity};

use super::{Draft, Drafts, describe, ref_of, report};
use crate::catalog::{REPORT_CONFIG_ERROR, REPORT_IMAGE_PULL, REPORT_UNSCHEDULABLE};
use crate::index::SnapshotIndex;

pub(super) fn report_pod(
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
