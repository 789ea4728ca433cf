//! CronJobs: resumed after a long suspension where the policy allows it
//! (reported otherwise), missed runs reported with their likely cause, and
//! schedules that never fire reported.

use std::time::SystemTime;

use nanny_proto::v1::{self as pb, ActionType, IssueKind, Severity, action::Kind};

use super::{
    Draft, Drafts, Rules, describe,
    report::{add_report, plain, quoted},
    seconds_since,
};
use crate::catalog::{
    CRONJOB_RESUME, REPORT_CRONJOB_INVALID, REPORT_CRONJOB_MISSED, REPORT_CRONJOB_SUSPENDED,
};
use crate::index::SnapshotIndex;

impl Rules {
    pub(super) fn cron_job(
        &self,
        kind: IssueKind,
        issue: &pb::Issue,
        target: &pb::ObjectRef,
        index: &SnapshotIndex<'_>,
        now: SystemTime,
        drafts: &mut Drafts,
    ) {
        let Some(workload) = index.workloads.get(target.uid.as_str()) else {
            return;
        };
        let (Some(r), Some(cron)) = (workload.r#ref.as_ref(), workload.cron.as_ref()) else {
            return;
        };
        let last = cron.last_schedule.as_ref().or(workload.created_at.as_ref());
        let idle = seconds_since(last, now)
            .filter(|s| *s >= 0)
            .map_or_else(String::new, |s| format!(" for {}h", s / 3600));
        if kind == IssueKind::CronjobSuspended {
            let allowed = self
                .config
                .allowed_actions
                .as_ref()
                .is_none_or(|a| a.contains(&(ActionType::ResumeCronJob as i32)));
            let what = format!(
                "{} is suspended and has not run{idle} (schedule {:?}).",
                describe(r),
                cron.schedule
            );
            if allowed {
                drafts.add(
                    "",
                    Draft {
                        rule: CRONJOB_RESUME,
                        action: Kind::ResumeCronJob(pb::ResumeCronJob {}),
                        target: r.clone(),
                        reason: format!(
                            "{what} Resuming it runs it on its schedule again; approve only if the pause is over."
                        ),
                        risk: Severity::Info,
                        fingerprints: [issue.fingerprint.clone()].into(),
                        evidence: [format!("schedule: {}", cron.schedule)].into(),
                    },
                );
            } else {
                add_report(
                    drafts,
                    REPORT_CRONJOB_SUSPENDED,
                    issue,
                    r,
                    format!(
                        "{what} If the pause is over, clear spec.suspend (kubectl patch cronjob {} -n {} -p '{{\"spec\":{{\"suspend\":false}}}}'); a policy that allows ResumeCronJob lets Nanny propose it.",
                        r.name, r.namespace
                    ),
                );
            }
            return;
        }
        if kind == IssueKind::CronjobInvalidSchedule {
            add_report(
                drafts,
                REPORT_CRONJOB_INVALID,
                issue,
                r,
                format!(
                    "{} never runs: its schedule {:?} names no time that exists (a day the month never has, such as 30 February), so the CronJob controller never starts a Job. Correct spec.schedule to the time meant.",
                    describe(r),
                    cron.schedule
                ),
            );
            return;
        }
        add_report(
            drafts,
            REPORT_CRONJOB_MISSED,
            issue,
            r,
            missed(workload, cron, r, index, &idle),
        );
    }
}

fn missed(
    workload: &pb::Workload,
    cron: &pb::CronSchedule,
    r: &pb::ObjectRef,
    index: &SnapshotIndex<'_>,
    idle: &str,
) -> String {
    let active = workload.ready_replicas;
    let cause = if cron.concurrency_policy == "Forbid" && active > 0 {
        format!(
            "its concurrencyPolicy is Forbid and {active} of its Jobs still runs, so every later run is skipped: find why that Job does not finish"
        )
    } else if let Some(deadline) = cron.starting_deadline_seconds {
        format!(
            "a run that cannot start within its startingDeadlineSeconds ({deadline}s) is skipped: raise the deadline, or find what delays the controller"
        )
    } else {
        "the CronJob controller (kube-controller-manager) may be down or lagging: check its health and logs".to_owned()
    };
    let warning = index
        .latest_warning(&r.uid)
        .filter(|e| plain(&e.reason))
        .and_then(|e| {
            quoted(e.message.as_ref())
                .map(|said| format!(" The newest warning about it: {} {said}.", e.reason))
        })
        .unwrap_or_default();
    format!(
        "{} has not run{idle} although its schedule {:?} named a time since: {cause}.{warning}",
        describe(r),
        cron.schedule
    )
}
