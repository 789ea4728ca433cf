//! Claims nearly full: grow them within the ceiling.

use nanny_proto::v1::{self as pb, ExpandPvc, Severity, action::Kind};

use super::{Draft, Drafts, MIB, Rules, describe, ref_of, report, round_up, scaled};
use crate::catalog::PVC_EXPAND;
use crate::index::SnapshotIndex;

impl Rules {
    pub(super) fn pvc(
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
