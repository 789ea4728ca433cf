//! Issues about objects other than pods that a person fixes (claims,
//! namespaces, Deployments below their minimum, disruption budgets):
//! reported with what the snapshot shows and what to change, never acted on.

use std::{collections::BTreeMap, time::SystemTime};

use nanny_common::{selector::Selector, snapshot::evidence};
use nanny_proto::v1::{self as pb, IssueKind, Severity, action::Kind};

use super::{
    Draft, Drafts, describe, hpa,
    report::{add_report, plain, quoted},
    report_services::report_service,
    seconds_since,
};
use crate::catalog::{
    PDB_SCALE_UP, REPORT_CERTIFICATE, REPORT_DEPLOYMENT_UNAVAILABLE, REPORT_HPA,
    REPORT_NAMESPACE_TERMINATING, REPORT_PDB_BLOCKING, REPORT_PVC_LOST, REPORT_PVC_PENDING,
    REPORT_REPLICA_FAILURE, REPORT_VOLUME, REPORT_WORKLOAD_SHORT,
};
use crate::index::SnapshotIndex;

pub(super) fn report_object(
    kind: IssueKind,
    issue: &pb::Issue,
    target: &pb::ObjectRef,
    index: &SnapshotIndex<'_>,
    now: SystemTime,
    drafts: &mut Drafts,
) {
    let uid = target.uid.as_str();
    let found = match kind {
        IssueKind::PvcPending => index.pvcs.get(uid).and_then(|pvc| {
            let r = pvc.r#ref.as_ref()?;
            Some((REPORT_PVC_PENDING, r, pvc_pending(pvc, r, index, now)))
        }),
        IssueKind::PvcLost => index.pvcs.get(uid).and_then(|pvc| {
            let r = pvc.r#ref.as_ref()?;
            Some((REPORT_PVC_LOST, r, pvc_lost(pvc, r)))
        }),
        IssueKind::PvReleased | IssueKind::PvFailed => index.volumes.get(uid).and_then(|v| {
            let r = v.r#ref.as_ref()?;
            Some((REPORT_VOLUME, r, volume(v, r, now)))
        }),
        IssueKind::NamespaceStuckTerminating => index.namespaces.get(uid).and_then(|ns| {
            let r = ns.r#ref.as_ref()?;
            Some((REPORT_NAMESPACE_TERMINATING, r, namespace(ns, r, now)))
        }),
        IssueKind::ReplicaFailure => index.workloads.get(uid).and_then(|w| {
            let r = w.r#ref.as_ref()?;
            Some((REPORT_REPLICA_FAILURE, r, replica_failure(w, r)))
        }),
        IssueKind::DeploymentUnavailable => index.workloads.get(uid).and_then(|w| {
            let r = w.r#ref.as_ref()?;
            Some((REPORT_DEPLOYMENT_UNAVAILABLE, r, unavailable(w, r, index)))
        }),
        IssueKind::StatefulsetNotProgressing | IssueKind::DaemonsetUnavailable => {
            index.workloads.get(uid).and_then(|w| {
                let r = w.r#ref.as_ref()?;
                Some((REPORT_WORKLOAD_SHORT, r, short(w, r, index, now)))
            })
        }
        IssueKind::ServiceNoReadyEndpoints
        | IssueKind::ServiceSelectsNothing
        | IssueKind::StatefulsetServiceMissing
        | IssueKind::WebhookNoEndpoints
        | IssueKind::NetworkPolicySelectsNothing
        | IssueKind::IngressMisconfigured => report_service(kind, issue, index, now),
        IssueKind::HpaUnableToScale => index.hpas.get(uid).and_then(|h| {
            let r = h.r#ref.as_ref()?;
            Some((REPORT_HPA, r, hpa::unable(h, r, issue, now)))
        }),
        IssueKind::HpaTargetWithoutRequests => index.hpas.get(uid).and_then(|h| {
            let r = h.r#ref.as_ref()?;
            Some((REPORT_HPA, r, hpa::without_requests(h, r, issue)))
        }),
        IssueKind::TlsCertificateExpiring => index.tls_certificates.get(uid).and_then(|c| {
            let r = c.r#ref.as_ref()?;
            Some((REPORT_CERTIFICATE, r, certificate(c, r, issue, index)))
        }),
        IssueKind::PdbBlockingDisruptions => index.pdbs.get(uid).and_then(|pdb| {
            let r = pdb.r#ref.as_ref()?;
            if let Some((workload, replicas)) = one_more_replica(pdb, r, index) {
                add_scale(drafts, issue, pdb, r, workload, replicas);
                return None;
            }
            Some((REPORT_PDB_BLOCKING, r, pdb_blocking(pdb, r)))
        }),
        _ => None,
    };
    if let Some((rule, target, explanation)) = found {
        add_report(drafts, rule, issue, target, explanation);
    }
}

/// ` for 400s`, when the time is known.
pub(super) fn for_secs(since: Option<&prost_types::Timestamp>, now: SystemTime) -> String {
    seconds_since(since, now)
        .filter(|s| *s >= 0)
        .map(|s| format!(" for {s}s"))
        .unwrap_or_default()
}

/// ` The newest warning about it: ProvisioningFailed "…".`, when there is one.
fn newest_warning(index: &SnapshotIndex<'_>, uid: &str) -> String {
    index
        .latest_warning(uid)
        .filter(|e| plain(&e.reason))
        .map(|e| {
            let said = quoted(e.message.as_ref()).unwrap_or_default();
            format!(" The newest warning about it: {} {said}.", e.reason)
        })
        .unwrap_or_default()
}

fn pvc_pending(
    pvc: &pb::PersistentVolumeClaim,
    r: &pb::ObjectRef,
    index: &SnapshotIndex<'_>,
    now: SystemTime,
) -> String {
    let class = if pvc.storage_class.is_empty() {
        "it names no StorageClass, so only a PersistentVolume without a class can bind it (or set a default class)".to_owned()
    } else {
        format!(
            "check that StorageClass {} exists and its provisioner runs, or that a PersistentVolume of that class with at least {} bytes is Available",
            pvc.storage_class, pvc.requested_bytes
        )
    };
    format!(
        "{} has been Pending{}: no volume is bound to it, and pods using it cannot start.{} To fix: {class}.",
        describe(r),
        for_secs(pvc.created_at.as_ref(), now),
        newest_warning(index, &r.uid)
    )
}

fn pvc_lost(pvc: &pb::PersistentVolumeClaim, r: &pb::ObjectRef) -> String {
    let volume = if pvc.volume_name.is_empty() {
        "its PersistentVolume".to_owned()
    } else {
        format!("its PersistentVolume {}", pvc.volume_name)
    };
    format!(
        "{} is Lost: {volume} is gone, and its data with it unless the storage behind it was kept. Pods using the claim cannot start. Restore the volume from a backup and bind it again, or delete and recreate the claim (its data is lost); Nanny does neither.",
        describe(r)
    )
}

/// A volume Released for long, or Failed: what it holds and what to do.
fn volume(v: &pb::PersistentVolume, r: &pb::ObjectRef, now: SystemTime) -> String {
    let claim = v.claim.as_ref().map_or_else(
        || "its claim".to_owned(),
        |c| format!("its claim {}/{}", c.namespace, c.name),
    );
    if v.phase == "Failed" {
        let said = quoted(v.message.as_ref())
            .map(|m| format!(" The PV controller says {m}."))
            .unwrap_or_default();
        return format!(
            "{} failed{}: reclaiming it after {claim} went (reclaim policy {}) did not work, so its storage may still exist outside the cluster.{said} Check the storage behind it, delete what is left there by hand if its data is not needed, then delete the PersistentVolume; Nanny does neither.",
            describe(r),
            for_secs(v.phase_since.as_ref(), now),
            v.reclaim_policy
        );
    }
    let since = for_secs(v.phase_since.as_ref(), now);
    if v.reclaim_policy != "Retain" {
        return format!(
            "{} has been Released{since}: {claim} is gone and its reclaim policy {} should have removed it, so its reclamation is stuck (a provisioner that fails or does not run, or a finalizer holding it); the storage behind it may still exist. Look at its events (kubectl describe pv {}) and its provisioner's logs; Nanny deletes nothing.",
            describe(r),
            v.reclaim_policy,
            r.name
        );
    }
    format!(
        "{} has been Released{since}: {claim} is gone, its data is kept (reclaim policy Retain) and paid for, and no claim can bind it while it names the old one. If its data is needed, point spec.claimRef at the one claim that should have it (kubectl patch pv {} -p '{{\"spec\":{{\"claimRef\":{{\"namespace\":\"NS\",\"name\":\"CLAIM\",\"uid\":null,\"resourceVersion\":null}}}}}}'); never just remove claimRef, which lets any matching claim in any namespace take it. If not, delete it and the storage behind it. Nanny does neither.",
        describe(r),
        r.name
    )
}

/// A certificate expiring or expired: when, for what, who serves it, and
/// how to renew it.
fn certificate(
    c: &pb::TlsCertificate,
    r: &pb::ObjectRef,
    issue: &pb::Issue,
    index: &SnapshotIndex<'_>,
) -> String {
    let not_after = evidence(issue, "not after").unwrap_or("its expiry date");
    let left: i64 = evidence(issue, "seconds left")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let when = if left <= 0 {
        format!("expired at {not_after}: clients refuse it now")
    } else {
        format!("expires at {not_after}, in {}h", left / 3600)
    };
    let names = if c.dns_names.is_empty() {
        c.subject.clone()
    } else {
        c.dns_names.join(", ")
    };
    let issuer = if c.issuer.is_empty() {
        String::new()
    } else {
        format!(", issued by {}", c.issuer)
    };
    let mut served: Vec<String> = index
        .ingresses
        .values()
        .filter_map(|i| i.r#ref.as_ref().filter(|_| i.tls_secrets.contains(&r.name)))
        .filter(|i| i.namespace == r.namespace)
        .map(|i| format!("Ingress {}/{}", i.namespace, i.name))
        .collect();
    served.sort();
    let serving = if served.is_empty() {
        String::new()
    } else {
        format!(" {} serves it.", served.join(", "))
    };
    format!(
        "The certificate in Secret {}/{} (for {names}{issuer}) {when}.{serving} Renew it: if cert-manager issues it, look at its Certificate and issuer (kubectl describe certificate -n {}); if not, write the renewed certificate and key into the Secret (kubectl create secret tls {} --cert=FILE --key=FILE -n {} --dry-run=client -o yaml | kubectl apply -f -). Nanny never writes Secrets.",
        r.namespace, r.name, r.namespace, r.name, r.namespace
    )
}

fn namespace(ns: &pb::Namespace, r: &pb::ObjectRef, now: SystemTime) -> String {
    let held: Vec<String> = ns
        .blocked_by
        .iter()
        .filter_map(|m| quoted(Some(m)))
        .collect();
    let why = if held.is_empty() {
        " Nothing in its status says why: list what is left in it (kubectl api-resources --verbs=list --namespaced -o name | xargs -n1 kubectl get -n NAMESPACE) and look for finalizers and unavailable APIs.".to_owned()
    } else {
        format!(
            " The namespace controller says {}. Whatever owns those finalizers must finish (remove them by hand only once their cleanup is known done); an unavailable aggregated API must come back or be removed.",
            held.join("; ")
        )
    };
    format!(
        "Namespace {} has been terminating{}.{why}",
        r.name,
        for_secs(ns.deletion_requested.as_ref(), now)
    )
}

/// What a workload's pods are waiting in, e.g. `2 pods waiting in
/// CrashLoopBackOff (container api)`.
fn pod_states(workload_uid: &str, index: &SnapshotIndex<'_>) -> Vec<String> {
    states_of(index, |pod| {
        pod.workload.as_ref().is_some_and(|w| w.uid == workload_uid)
    })
}

/// What the pods `of` picks are waiting in, e.g. `2 pods waiting in
/// CrashLoopBackOff (container api); 1 pod Pending`; ready pods are left out.
pub(super) fn states_of(index: &SnapshotIndex<'_>, of: impl Fn(&pb::Pod) -> bool) -> Vec<String> {
    let mut states: BTreeMap<String, (usize, Vec<&str>)> = BTreeMap::new();
    for pod in index.pods.values() {
        if !of(pod) {
            continue;
        }
        let waiting = pod
            .containers
            .iter()
            .find(|c| c.state == "waiting" && plain(&c.state_reason));
        let key = match waiting {
            Some(c) => format!("waiting in {}", c.state_reason),
            None if pod.phase == "Pending" => "Pending".to_owned(),
            None if !pod.ready => "running but not ready".to_owned(),
            None => continue,
        };
        let entry = states.entry(key).or_default();
        entry.0 += 1;
        if let Some(c) = waiting
            && !entry.1.contains(&c.name.as_str())
        {
            entry.1.push(&c.name);
        }
    }
    states
        .into_iter()
        .map(|(state, (count, containers))| {
            let pods = if count == 1 { "pod" } else { "pods" };
            if containers.is_empty() {
                format!("{count} {pods} {state}")
            } else {
                format!(
                    "{count} {pods} {state} (container {})",
                    containers.join(", ")
                )
            }
        })
        .collect()
}

fn unavailable(w: &pb::Workload, r: &pb::ObjectRef, index: &SnapshotIndex<'_>) -> String {
    let states = pod_states(&r.uid, index);
    let pods = if states.is_empty() {
        " None of its pods in the snapshot shows why: look at its ReplicaSet's events (quota, admission, a missing ServiceAccount).".to_owned()
    } else {
        format!(
            " Its pods: {}. Nanny acts on those pods' own issues where a rule can; what they need is in their reports.",
            states.join("; ")
        )
    };
    format!(
        "{} has {} of {} replicas available, below its minimum: its users are not served.{pods}",
        describe(r),
        w.available_replicas,
        w.desired_replicas
    )
}

/// Why a StatefulSet or DaemonSet is short of its pods, from its pods.
fn short(
    w: &pb::Workload,
    r: &pb::ObjectRef,
    index: &SnapshotIndex<'_>,
    now: SystemTime,
) -> String {
    let states = pod_states(&r.uid, index);
    let since = for_secs(w.short_since.as_ref(), now);
    let numbers = if r.kind == "DaemonSet" {
        let misscheduled = if w.misscheduled > 0 {
            format!(
                ", and {} running on nodes it should not run on (their labels or taints changed)",
                w.misscheduled
            )
        } else {
            String::new()
        };
        format!(
            "has {} of {} pods available{since}{misscheduled}",
            w.available_replicas, w.desired_replicas
        )
    } else {
        format!(
            "has {} of {} pods ready{since}: with its default ordered pod management it creates and updates its pods one at a time, so one pod that never becomes ready holds the rest",
            w.ready_replicas, w.desired_replicas
        )
    };
    let pods = if states.is_empty() {
        " None of its pods in the snapshot shows why: look at its events (quota, admission, a missing ServiceAccount or governing Service) and its nodes.".to_owned()
    } else {
        format!(
            " Its pods: {}. What those pods need is in their own reports.",
            states.join("; ")
        )
    };
    format!("{} {numbers}.{pods}", describe(r))
}

fn pdb_blocking(pdb: &pb::PodDisruptionBudget, r: &pb::ObjectRef) -> String {
    let budget = match (pdb.min_available.as_str(), pdb.max_unavailable.as_str()) {
        ("", "") => "its budget".to_owned(),
        (min, "") => format!("minAvailable {min}"),
        (_, max) => format!("maxUnavailable {max}"),
    };
    let healthy = format!(
        "{} of {} pods healthy, {} required",
        pdb.current_healthy, pdb.expected_pods, pdb.desired_healthy
    );
    if pdb.current_healthy < pdb.desired_healthy {
        format!(
            "{} allows no disruption ({budget}; {healthy}): its pods are unhealthy, so every drain and eviction of them waits. Fix the unhealthy pods; the budget then allows disruptions again.",
            describe(r)
        )
    } else {
        format!(
            "{} allows no disruption even with every pod healthy ({budget}; {healthy}): every drain of a node running these pods waits for ever. Allow at least one: raise the replicas above the minimum, lower minAvailable, or set maxUnavailable to 1 or more.",
            describe(r)
        )
    }
}

/// The workload a budget's numbers hold and the replica count that lets it
/// allow one disruption: only for `minAvailable: N` (a number, not a
/// percentage, which scales with the replicas) over healthy pods that all
/// belong to one Deployment or StatefulSet no HPA scales.
fn one_more_replica<'a>(
    pdb: &pb::PodDisruptionBudget,
    r: &pb::ObjectRef,
    index: &SnapshotIndex<'a>,
) -> Option<(&'a pb::ObjectRef, i32)> {
    let min: i32 = pdb.min_available.parse().ok()?;
    if !pdb.max_unavailable.is_empty() || pdb.current_healthy < pdb.desired_healthy {
        return None;
    }
    let selector = Selector::parse(&pdb.selector).ok()?;
    let mut workloads = index
        .pods
        .values()
        .filter(|p| p.r#ref.as_ref().is_some_and(|p| p.namespace == r.namespace))
        .filter(|p| selector.matches(&p.labels))
        .map(|p| p.workload.as_ref().map(|w| w.uid.as_str()));
    let first = workloads.next()??;
    if !workloads.all(|w| w == Some(first)) {
        return None;
    }
    let workload = index.workloads.get(first)?;
    let workload_ref = workload
        .r#ref
        .as_ref()
        .filter(|w| nanny_proto::vocabulary::SCALABLE.contains(&w.kind.as_str()))?;
    // An HPA names its target by kind and name (the collector adds the
    // HPA's namespace); no uid.
    let autoscaled = index.hpas.values().any(|h| {
        h.scale_target.as_ref().is_some_and(|t| {
            t.kind == workload_ref.kind
                && t.name == workload_ref.name
                && t.namespace == workload_ref.namespace
        })
    });
    let wanted = min.checked_add(1)?;
    (!autoscaled && wanted > workload.desired_replicas).then_some((workload_ref, wanted))
}

fn add_scale(
    drafts: &mut Drafts,
    issue: &pb::Issue,
    pdb: &pb::PodDisruptionBudget,
    r: &pb::ObjectRef,
    workload: &pb::ObjectRef,
    replicas: i32,
) {
    drafts.add(
        "",
        Draft {
            rule: PDB_SCALE_UP,
            action: Kind::ScaleWorkload(pb::ScaleWorkload { replicas }),
            target: workload.clone(),
            reason: format!(
                "{} allows no disruption: minAvailable {} equals the {} healthy pods of {}, so every drain of their nodes waits for ever. One more replica ({replicas}) lets one pod be disrupted at a time; lowering minAvailable would too, and is the owner's call.",
                describe(r),
                pdb.min_available,
                pdb.current_healthy,
                describe(workload)
            ),
            risk: Severity::Warning,
            fingerprints: [issue.fingerprint.clone()].into(),
            evidence: [format!("budget: {}", describe(r))].into(),
        },
    );
}

fn replica_failure(w: &pb::Workload, r: &pb::ObjectRef) -> String {
    let condition = w
        .conditions
        .iter()
        .find(|c| c.r#type == "ReplicaFailure" && c.status == "True");
    let said = condition
        .and_then(|c| quoted(c.message.as_ref()))
        .map(|m| format!(" The ReplicaSet controller says {m}."))
        .unwrap_or_default();
    format!(
        "{} cannot create its pods ({}).{said} Pods refused at creation are refused again on every retry: raise or free the namespace's ResourceQuota, create the ServiceAccount the pod template names, or fix what the admission webhook or policy objects to.",
        describe(r),
        condition.map_or("FailedCreate", |c| c.reason.as_str())
    )
}
