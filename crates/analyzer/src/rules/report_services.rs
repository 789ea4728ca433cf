//! Services that serve nothing, StatefulSets without their governing
//! Service, webhooks whose Service serves nothing, NetworkPolicies that
//! select nothing and Ingresses whose Services or class do not exist:
//! reported with the selector, the pods and what to change.

use std::{collections::HashMap, time::SystemTime};

use nanny_common::{selector::equality_text, snapshot::evidence};
use nanny_proto::v1::{self as pb, IssueKind};

use super::{describe, report_objects::for_secs, report_objects::states_of};
use crate::catalog::{
    REPORT_INGRESS_MISCONFIGURED, REPORT_NETWORK_POLICY_SELECTS_NOTHING,
    REPORT_SERVICE_NO_ENDPOINTS, REPORT_SERVICE_SELECTS_NOTHING, REPORT_STATEFULSET_SERVICE,
    REPORT_WEBHOOK_NO_ENDPOINTS, Rule,
};
use crate::index::SnapshotIndex;

/// Most pod templates named as likely meant.
const HINTS: usize = 3;

/// The rule and explanation of a Service kind, when its object is in the
/// snapshot.
pub(super) fn report_service<'a>(
    kind: IssueKind,
    issue: &pb::Issue,
    index: &SnapshotIndex<'a>,
    now: SystemTime,
) -> Option<(Rule, &'a pb::ObjectRef, String)> {
    let uid = issue.target.as_ref()?.uid.as_str();
    if kind == IssueKind::StatefulsetServiceMissing {
        let w = index.workloads.get(uid)?;
        let r = w.r#ref.as_ref()?;
        return Some((REPORT_STATEFULSET_SERVICE, r, service_missing(w, r)));
    }
    if kind == IssueKind::WebhookNoEndpoints {
        let config = index.webhooks.get(uid)?;
        let r = config.r#ref.as_ref()?;
        return Some((REPORT_WEBHOOK_NO_ENDPOINTS, r, webhook(r, issue)));
    }
    if kind == IssueKind::IngressMisconfigured {
        let ingress = index.ingresses.get(uid)?;
        let r = ingress.r#ref.as_ref()?;
        return Some((REPORT_INGRESS_MISCONFIGURED, r, ingress_text(r, issue)));
    }
    if kind == IssueKind::NetworkPolicySelectsNothing {
        let policy = index.network_policies.get(uid)?;
        let r = policy.r#ref.as_ref()?;
        let since = for_secs(issue.first_seen.as_ref(), now);
        let text = policy_selects_nothing(policy, r, index, &since);
        return Some((REPORT_NETWORK_POLICY_SELECTS_NOTHING, r, text));
    }
    let service = index.services.get(uid)?;
    let r = service.r#ref.as_ref()?;
    let since = for_secs(issue.first_seen.as_ref(), now);
    if kind == IssueKind::ServiceNoReadyEndpoints {
        let text = no_ready_endpoint(service, r, issue, index, &since);
        return Some((REPORT_SERVICE_NO_ENDPOINTS, r, text));
    }
    let text = selects_nothing(service, r, index, &since);
    Some((REPORT_SERVICE_SELECTS_NOTHING, r, text))
}

fn ingress_text(r: &pb::ObjectRef, issue: &pb::Issue) -> String {
    let listed = |name: &str| -> Vec<&str> {
        evidence(issue, name)
            .unwrap_or_default()
            .split(',')
            .filter(|n| !n.is_empty())
            .collect()
    };
    let mut problems = Vec::new();
    let services = listed("missing Services");
    if !services.is_empty() {
        problems.push(format!(
            "sends traffic to Services that do not exist in {} ({}): its controller answers those paths with errors (503 on most)",
            r.namespace,
            services.join(", ")
        ));
    }
    if let Some(class) = evidence(issue, "missing IngressClass").filter(|c| !c.is_empty()) {
        problems.push(format!(
            "names IngressClass {class}, which does not exist: no controller serves it, so none of its hosts is routed"
        ));
    }
    let secrets = listed("TLS Secrets (not judged)");
    let tls = if secrets.is_empty() {
        String::new()
    } else {
        format!(
            " Its TLS Secrets ({}) are not checked, as Nanny never reads Secrets: kubectl get secret -n {} {}.",
            secrets.join(", "),
            r.namespace,
            secrets.join(" ")
        )
    };
    format!(
        "{} {}.{tls} To fix: create what is missing, or correct the Ingress (kubectl get ingressclass; kubectl get svc -n {}); Nanny changes neither.",
        describe(r),
        problems.join(", and "),
        r.namespace
    )
}

fn webhook(r: &pb::ObjectRef, issue: &pb::Issue) -> String {
    let service = evidence(issue, "service").unwrap_or("its Service");
    let state = match (
        evidence(issue, "service state"),
        evidence(issue, "selected pods"),
    ) {
        (Some("missing"), _) => "does not exist".to_owned(),
        (Some("selects no pod"), _) => "selects no pod".to_owned(),
        (_, Some(n)) => format!("has no Ready pod (it selects {n})"),
        _ => "serves nothing".to_owned(),
    };
    let namespace = service.split_once('/').map_or("", |(ns, _)| ns);
    let (outcome, relax) = if evidence(issue, "failure policy") == Some("Ignore") {
        (
            "With failurePolicy Ignore the API server lets every request it covers through unchecked: whatever it enforces or mutates is silently skipped.",
            "",
        )
    } else {
        (
            "With failurePolicy Fail the API server refuses every request it covers (FailedCallingWebhook): creating or changing those objects fails for everyone.",
            " set failurePolicy: Ignore while it is down,",
        )
    };
    format!(
        "{}: webhook {} calls Service {service}, which {state}. {outcome} To fix: bring the webhook's pods back (kubectl get pods -n {namespace}),{relax} or delete the configuration if the webhook was uninstalled; Nanny does none of these.",
        describe(r),
        evidence(issue, "webhook").unwrap_or("?"),
    )
}

fn no_ready_endpoint(
    service: &pb::Service,
    r: &pb::ObjectRef,
    issue: &pb::Issue,
    index: &SnapshotIndex<'_>,
    since: &str,
) -> String {
    let names: Vec<&str> = evidence(issue, "pods")
        .unwrap_or_default()
        .split(',')
        .filter(|n| !n.is_empty())
        .collect();
    let states = states_of(index, |pod| {
        pod.r#ref
            .as_ref()
            .is_some_and(|p| p.namespace == r.namespace && names.contains(&p.name.as_str()))
    });
    let pods = if states.is_empty() {
        String::new()
    } else {
        format!(" Its pods: {}.", states.join("; "))
    };
    let matched = match evidence(issue, "selected pods") {
        Some("1") => "1 pod".to_owned(),
        Some(count) => format!("{count} pods"),
        None => "pods".to_owned(),
    };
    format!(
        "{} has had no ready endpoint{since}: its selector {} matches {matched} and none is Ready, so every connection to it is refused.{pods} Nanny acts on those pods' own issues where a rule can; the Service serves again once one of them is Ready.",
        describe(r),
        equality_text(&service.selector),
    )
}

fn selects_nothing(
    service: &pb::Service,
    r: &pb::ObjectRef,
    index: &SnapshotIndex<'_>,
    since: &str,
) -> String {
    let hint = nearest_templates(&service.selector, r, index);
    format!(
        "{} selects no pod{since}: no pod or pod template in {} carries {}, so it has no endpoints and its clients are refused.{hint} To fix: correct the Service's spec.selector, or the labels of the pods it should serve; Nanny changes neither.",
        describe(r),
        r.namespace,
        equality_text(&service.selector),
    )
}

fn policy_selects_nothing(
    policy: &pb::NetworkPolicy,
    r: &pb::ObjectRef,
    index: &SnapshotIndex<'_>,
    since: &str,
) -> String {
    // The selector's `key=value` terms; set-based terms give no hint.
    let wanted: HashMap<String, String> = policy
        .pod_selector
        .split(',')
        .filter_map(|term| term.split_once('='))
        .filter(|(k, v)| !k.ends_with('!') && !v.starts_with('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let hint = nearest_templates(&wanted, r, index);
    format!(
        "{} selects no pod{since}: no pod or pod template in {} matches {}, so it isolates nothing and allows nothing: the traffic it was written for flows as if it did not exist.{hint} To fix: correct spec.podSelector, or delete the policy if its pods are gone; Nanny changes neither.",
        describe(r),
        r.namespace,
        policy.pod_selector,
    )
}

/// ` The nearest pod templates in shop: Deployment web (app=web).`: pod
/// templates in the namespace that carry any of `wanted`'s keys, nearest
/// first, the likely meant values.
fn nearest_templates(
    wanted: &HashMap<String, String>,
    r: &pb::ObjectRef,
    index: &SnapshotIndex<'_>,
) -> String {
    let mut hints: Vec<(usize, String)> = index
        .workloads
        .values()
        .filter_map(|w| {
            let wr = w.r#ref.as_ref()?;
            let shared: HashMap<&String, &String> = w
                .template_labels
                .iter()
                .filter(|(k, _)| wanted.contains_key(*k))
                .collect();
            let near: usize = shared.iter().map(|(k, v)| nearness(&wanted[*k], v)).sum();
            (wr.namespace == r.namespace && !shared.is_empty()).then(|| {
                (
                    near,
                    format!("{} {} ({})", wr.kind, wr.name, equality_text(shared)),
                )
            })
        })
        .collect();
    hints.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let hints: Vec<String> = hints.into_iter().take(HINTS).map(|(_, h)| h).collect();
    if hints.is_empty() {
        format!(
            " No pod template in {} carries any of its label keys.",
            r.namespace
        )
    } else {
        format!(
            " The nearest pod templates in {}: {}.",
            r.namespace,
            hints.join("; ")
        )
    }
}

/// How near a label value is to the one a selector wants: equal beats
/// any prefix, a longer shared prefix beats a shorter one.
fn nearness(wanted: &str, value: &str) -> usize {
    if wanted == value {
        return 1_000;
    }
    wanted
        .chars()
        .zip(value.chars())
        .take_while(|(a, b)| a == b)
        .count()
}

fn service_missing(w: &pb::Workload, r: &pb::ObjectRef) -> String {
    let selector = if w.template_labels.is_empty() {
        String::new()
    } else {
        format!(
            " selecting its pods ({})",
            equality_text(&w.template_labels)
        )
    };
    format!(
        "{} names governing Service {}, which does not exist in {}: its pods get no stable DNS names ({}-0.{}.{}.svc), so peers that find each other by them fail. Create a headless Service {} (clusterIP: None){selector}, or correct spec.serviceName; Nanny creates neither.",
        describe(r),
        w.service_name,
        r.namespace,
        r.name,
        w.service_name,
        r.namespace,
        w.service_name
    )
}
