//! Cost reports: a container requesting far more than its pods used, and a
//! workload doing nothing. Reported with the collector's figures and the
//! command that reclaims them; Nanny never lowers requests or scales a
//! workload down on its own.

use std::collections::BTreeSet;

use nanny_common::{
    quantity::bytes_text,
    snapshot::{RECLAIMABLE_CPU, RECLAIMABLE_MEMORY, evidence, evidence_number},
};
use nanny_proto::v1::{self as pb, IssueKind, Severity, action::Kind};

use super::{Draft, Drafts, describe, report};
use crate::catalog::{REPORT_IDLE, REPORT_RIGHTSIZING, RIGHTSIZING_LOWER_REQUESTS};
use crate::index::SnapshotIndex;

/// `kubectl`'s resource name for a workload kind.
fn resource(kind: &str) -> String {
    kind.to_ascii_lowercase()
}

/// Reports a cost issue; with `propose`, an over-provisioned container's
/// requests are proposed lowered instead (a PatchResources the gate always
/// sends to a human).
pub(super) fn report_cost(
    kind: IssueKind,
    issue: &pb::Issue,
    target: &pb::ObjectRef,
    index: &SnapshotIndex<'_>,
    propose: bool,
    drafts: &mut Drafts,
) {
    let Some(r) = index
        .workloads
        .get(target.uid.as_str())
        .and_then(|w| w.r#ref.as_ref())
    else {
        return;
    };
    let (rule, discriminator, explanation, action, risk) = match kind {
        IssueKind::OverProvisioned => {
            let Some((text, container, requests)) = over_provisioned(issue, r, propose) else {
                return;
            };
            if propose {
                let action = Kind::PatchResources(pb::PatchResources {
                    container: container.to_owned(),
                    requests: Some(requests),
                    limits: None,
                });
                (
                    RIGHTSIZING_LOWER_REQUESTS,
                    container,
                    text,
                    action,
                    Severity::Warning,
                )
            } else {
                (
                    REPORT_RIGHTSIZING,
                    container,
                    text.clone(),
                    report(text),
                    Severity::Info,
                )
            }
        }
        IssueKind::WorkloadIdle => {
            let text = idle(issue, r);
            (REPORT_IDLE, "", text.clone(), report(text), Severity::Info)
        }
        _ => return,
    };
    drafts.add(
        discriminator,
        Draft {
            rule,
            reason: explanation,
            action,
            target: r.clone(),
            risk,
            fingerprints: [issue.fingerprint.clone()].into(),
            evidence: BTreeSet::new(),
        },
    );
}

/// The explanation, the container and the requests that reclaim what the
/// issue found; `None` when its figures do not parse.
#[expect(clippy::cast_precision_loss, reason = "sizes in bytes")]
fn over_provisioned<'i>(
    issue: &'i pb::Issue,
    r: &pb::ObjectRef,
    propose: bool,
) -> Option<(String, &'i str, pb::Resources)> {
    let container = evidence(issue, "container")?;
    let mut lowered = pb::Resources::default();
    let cpu = evidence_number(issue, RECLAIMABLE_CPU)?;
    let memory = evidence_number(issue, RECLAIMABLE_MEMORY)?;
    let mut requests = Vec::new();
    let mut said = Vec::new();
    if cpu > 0 {
        let (request, p95, recommended) = (
            evidence_number(issue, "cpu request millicores")?,
            evidence_number(issue, "cpu p95 millicores")?,
            evidence_number(issue, "cpu recommended millicores")?,
        );
        said.push(format!(
            "requests {request}m CPU where its pods' p95 was {p95}m"
        ));
        requests.push(format!("cpu={recommended}m"));
        lowered.cpu_millicores = Some(recommended).filter(|v| *v > 0);
    }
    if memory > 0 {
        let (request, peak, recommended) = (
            evidence_number(issue, "memory request bytes")?,
            evidence_number(issue, "memory peak bytes")?,
            evidence_number(issue, "memory recommended bytes")?,
        );
        said.push(format!(
            "requests {} of memory where its pods peaked at {}",
            bytes_text(request as f64),
            bytes_text(peak as f64)
        ));
        requests.push(format!("memory={}Mi", recommended >> 20));
        lowered.memory_bytes = Some(recommended).filter(|v| *v > 0);
    }
    if lowered.cpu_millicores.is_none() && lowered.memory_bytes.is_none() {
        return None;
    }
    let replicas = evidence_number(issue, "replicas").unwrap_or_default();
    let how = if propose {
        format!(
            "Proposed: requests of {} for it (its limits stay), for a human to approve; the usage window may miss rare peaks (a month-end job).",
            requests.join(",")
        )
    } else {
        format!(
            "To reclaim it, lower its requests (its limits stay): kubectl -n {} set resources {}/{} -c {container} --requests={}. The usage window may miss rare peaks (a month-end job); Nanny does not change requests on its own.",
            r.namespace,
            resource(&r.kind),
            r.name,
            requests.join(","),
        )
    };
    Some((
        format!(
            "Container {container} of {} {}: {cpu}m CPU and {} reclaimable across its {replicas} pod(s). {how}",
            describe(r),
            said.join(" and "),
            bytes_text(memory as f64),
        ),
        container,
        lowered,
    ))
}

fn idle(issue: &pb::Issue, r: &pb::ObjectRef) -> String {
    let busiest = evidence(issue, "busiest cpu millicores").unwrap_or("0");
    let cpu = evidence_number(issue, "requested cpu millicores").unwrap_or_default();
    #[expect(clippy::cast_precision_loss, reason = "sizes in bytes")]
    let memory =
        bytes_text(evidence_number(issue, "requested memory bytes").unwrap_or_default() as f64);
    let history = evidence_number(issue, "history seconds").unwrap_or_default() / 3600;
    let scale = if r.kind == "DaemonSet" {
        format!("kubectl -n {} delete daemonset/{}", r.namespace, r.name)
    } else {
        format!(
            "kubectl -n {} scale {}/{} --replicas=0",
            r.namespace,
            resource(&r.kind),
            r.name
        )
    };
    format!(
        "{} is idle: its pods used at most {busiest}m CPU in any 5 minutes over {history}h, while holding {cpu}m CPU and {memory} of requests. If nobody needs it, {scale} frees them (scaling to zero keeps its spec); if it only waits for rare work, a Job or a CronJob costs nothing in between. Nanny only reports this.",
        describe(r)
    )
}
