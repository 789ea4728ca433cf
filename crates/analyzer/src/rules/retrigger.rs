//! Failed Jobs: run again as a new Job where the policy allows it (a human
//! approves), otherwise left to the model as before.

use nanny_proto::v1::{self as pb, ActionType, Severity, action::Kind};
use nanny_proto::vocabulary::{RETRIED_AS, RETRIGGER_OF};

use super::{Draft, Drafts, Rules, describe, ref_of, report::plain};
use crate::catalog::JOB_RETRIGGER;
use crate::index::SnapshotIndex;

impl Rules {
    /// Proposes RetriggerJob for a failed Job when the policy in force names
    /// RetriggerJob (never by default: a Job's run may not be safe to
    /// repeat), the Job is no retry itself and was not run again already, no
    /// controller but a CronJob owns it (an operator decides its own
    /// reruns), its own pod failure policy did not fail it on purpose, and
    /// no later run of its CronJob succeeded.
    pub(super) fn job_failed(
        &self,
        issue: &pb::Issue,
        target: &pb::ObjectRef,
        index: &SnapshotIndex<'_>,
        drafts: &mut Drafts,
    ) {
        let allowed = self
            .config
            .allowed_actions
            .as_ref()
            .is_some_and(|a| a.contains(&(ActionType::RetriggerJob as i32)));
        let Some(job) = index.jobs.get(target.uid.as_str()) else {
            return;
        };
        let Some(job_ref) = ref_of(job.r#ref.as_ref()) else {
            return;
        };
        let owned_elsewhere = job
            .owner
            .as_ref()
            .is_some_and(|o| !o.kind.is_empty() && o.kind != "CronJob");
        let Some(failed) = job
            .conditions
            .iter()
            .find(|c| c.r#type == "Failed" && c.status == "True")
        else {
            return;
        };
        let retried = job.labels.contains_key(RETRIGGER_OF) || job.labels.contains_key(RETRIED_AS);
        if !allowed || owned_elsewhere || retried || failed.reason == "PodFailurePolicy" {
            return;
        }
        let cron_job = job.owner.as_ref().filter(|o| o.kind == "CronJob");
        // A later run of its CronJob succeeded: this run's work is done.
        let superseded = cron_job
            .and_then(|o| index.workloads.get(o.uid.as_str()))
            .and_then(|w| w.cron.as_ref()?.last_successful.as_ref())
            .zip(job.start_time.as_ref())
            .is_some_and(|(success, started)| success.seconds > started.seconds);
        if superseded {
            return;
        }
        let owner = cron_job
            .map(|o| format!(" (of CronJob {})", o.name))
            .unwrap_or_default();
        drafts.add(
            "",
            Draft {
                rule: JOB_RETRIGGER,
                action: Kind::RetriggerJob(pb::RetriggerJob {}),
                target: job_ref.clone(),
                reason: format!(
                    "{}{owner} failed ({}; failed pods: {}). Running it again as a new Job keeps the failed one and its logs; approve only if its work is safe to repeat and the cause was passing.",
                    describe(job_ref),
                    if plain(&failed.reason) {
                        failed.reason.as_str()
                    } else {
                        "no reason given"
                    },
                    job.failed
                ),
                risk: Severity::Warning,
                fingerprints: [issue.fingerprint.clone()].into(),
                evidence: [
                    format!("condition: Failed=True ({})", failed.reason),
                    format!("failed pods: {}", job.failed),
                ]
                .into(),
            },
        );
    }
}
