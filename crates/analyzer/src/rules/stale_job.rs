//! Finished Jobs left behind: delete them once old enough.

use std::time::SystemTime;

use nanny_proto::v1::{self as pb, DeleteJob, Severity, action::Kind};

use super::{Draft, Drafts, Rules, describe, ref_of, seconds_since};
use crate::catalog::STALE_JOB_DELETE;
use crate::index::SnapshotIndex;

impl Rules {
    pub(super) fn stale_job(
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
}
