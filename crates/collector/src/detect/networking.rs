//! Networking that reaches nothing: a Service whose selector no pod or pod
//! template carries, or whose selected pods are none of them Ready; a
//! StatefulSet whose governing Service does not exist; an admission webhook
//! whose Service is missing or serves nothing; a NetworkPolicy selecting
//! no pod; an Ingress whose Services or class do not exist. Nothing in
//! these objects says since when, so the publisher holds them for
//! `service_secs` before it reports them ([`HELD`]).

use std::collections::{HashMap, HashSet};

use nanny_common::selector::{Selector, equality_text};
use nanny_proto::v1::{self as pb, IssueKind, Severity};

use super::issue;
use crate::store::{Labels, Tables};

/// Kinds judged from the objects as they are, reported once their condition
/// has held the Service threshold (an HPA's target without requests, too:
/// its Deployment and HPA may be applied a moment apart).
pub const HELD: &[IssueKind] = &[
    IssueKind::HpaTargetWithoutRequests,
    IssueKind::ServiceNoReadyEndpoints,
    IssueKind::ServiceSelectsNothing,
    IssueKind::StatefulsetServiceMissing,
    IssueKind::WebhookNoEndpoints,
    IssueKind::NetworkPolicySelectsNothing,
    IssueKind::IngressMisconfigured,
];

/// Kinds judged by matching a selector (a Service's, a policy's) against
/// pods: a label scope hides pods it may select, so a scoped collector does
/// not judge them.
const SELECTOR_KINDS: &[IssueKind] = &[
    IssueKind::ServiceNoReadyEndpoints,
    IssueKind::ServiceSelectsNothing,
    IssueKind::WebhookNoEndpoints,
    IssueKind::NetworkPolicySelectsNothing,
];

/// Whether a collector watching `scope` sees enough to judge `issue`: a
/// label scope hides pods a Service may select, and a webhook's Service in
/// a namespace not watched is unseen, not missing.
pub fn judged(issue: &pb::Issue, scope: &crate::config::KubernetesConfig) -> bool {
    let selector_kind = SELECTOR_KINDS.iter().any(|k| *k as i32 == issue.kind);
    if selector_kind && !scope.label_selector.is_empty() {
        return false;
    }
    if issue.kind != IssueKind::WebhookNoEndpoints as i32 || scope.namespaces.is_empty() {
        return true;
    }
    let namespace = nanny_common::snapshot::evidence(issue, "service")
        .and_then(|service| service.split_once('/'))
        .map(|(ns, _)| ns);
    namespace.is_some_and(|ns| scope.namespaces.iter().any(|n| n == ns))
}

/// Most selected pods named in an issue's evidence.
const NAMED_PODS: usize = 20;

fn selects(selector: &HashMap<String, String>, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A pod template the selector may mean: it carries at least one of the
/// selector's keys, and every one it carries has the wanted value. A key it
/// lacks may be set on its pods at run time (an operator's role label), so
/// only a wrong value is a wrong selector.
fn selects_template(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    let mut shared = selector
        .iter()
        .filter_map(|(k, v)| Some((labels.get(k)?, v)))
        .peekable();
    shared.peek().is_some() && shared.all(|(have, want)| have == want)
}

/// An endpoint the Service would route to: Ready and not terminating
/// (or, for `publishNotReadyAddresses`, any running pod).
fn serves(pod: &pb::Pod, service: &pb::Service) -> bool {
    if pod.deletion_deadline.is_some() {
        return false;
    }
    if service.publish_not_ready {
        return !pod.node_name.is_empty();
    }
    pod.ready
}

/// Every Service and StatefulSet issue in `tables`.
pub fn services(tables: &Tables, issues: &mut Vec<pb::Issue>) {
    let mut pods: PodsByNamespace<'_> = HashMap::new();
    for entry in tables.pods.values() {
        let pod = &entry.value;
        let Some(r) = pod.r#ref.as_ref() else {
            continue;
        };
        // A finished pod is never an endpoint again.
        if matches!(pod.phase.as_str(), "Succeeded" | "Failed") {
            continue;
        }
        pods.entry(r.namespace.as_str())
            .or_default()
            .push((pod, &entry.labels));
    }
    // Every Service by namespace and name, with how it serves when that
    // is judged.
    let mut names: HashMap<(&str, &str), Serving> = HashMap::new();
    for entry in tables.services.values() {
        let service = &entry.value;
        let Some(target) = service.r#ref.as_ref() else {
            continue;
        };
        let key = (target.namespace.as_str(), target.name.as_str());
        if service.selector.is_empty() || service.r#type == "ExternalName" {
            names.insert(key, Serving::NotJudged);
            continue;
        }
        let selected: Vec<&pb::Pod> = pods
            .get(target.namespace.as_str())
            .into_iter()
            .flatten()
            .filter(|(_, labels)| selects(&service.selector, labels))
            .map(|(pod, _)| *pod)
            .collect();
        if selected.is_empty() {
            names.insert(key, Serving::Nothing);
            // An operator's Service selects pods by labels it sets at run
            // time, which may have no pod now (a single-instance replica
            // Service).
            if !service.managed {
                selects_nothing(tables, service, target, issues);
            }
        } else if !selected.iter().any(|p| serves(p, service)) {
            names.insert(key, Serving::Unready(selected.len()));
            no_ready_endpoint(service, target, &selected, issues);
        } else {
            names.insert(key, Serving::Ready);
        }
    }
    webhooks(tables, &names, issues);
    ingresses(tables, &names, issues);
    network_policies(tables, &pods, issues);
    for entry in tables.workloads.values() {
        let w = &entry.value;
        let Some(target) = w.r#ref.as_ref() else {
            continue;
        };
        if target.kind != "StatefulSet" || w.service_name.is_empty() {
            continue;
        }
        if names.contains_key(&(target.namespace.as_str(), w.service_name.as_str())) {
            continue;
        }
        issues.push(issue(
            IssueKind::StatefulsetServiceMissing,
            Severity::Warning,
            target,
            "",
            format!(
                "StatefulSet {}/{} names governing Service {}, which does not exist: its pods get no stable DNS names.",
                target.namespace, target.name, w.service_name
            ),
            vec![("governing Service", w.service_name.clone())],
        ));
    }
}

/// Ingresses sending traffic to Services that do not exist, or naming an
/// IngressClass that does not exist (no controller serves them). A class
/// from the legacy annotation is not judged: controllers read it without an
/// IngressClass object. TLS Secrets are named, never judged: Nanny does not
/// read Secrets.
fn ingresses(
    tables: &Tables,
    services: &HashMap<(&str, &str), Serving>,
    issues: &mut Vec<pb::Issue>,
) {
    let classes: HashSet<&str> = tables
        .ingress_classes
        .values()
        .map(String::as_str)
        .collect();
    for entry in tables.ingresses.values() {
        let ingress = &entry.value;
        let Some(target) = ingress.r#ref.as_ref() else {
            continue;
        };
        let ns = target.namespace.as_str();
        let missing: Vec<&str> = ingress
            .backend_services
            .iter()
            .map(String::as_str)
            .filter(|name| !services.contains_key(&(ns, *name)))
            .collect();
        let class_missing = !ingress.class_name.is_empty()
            && !ingress.legacy_class
            && !classes.contains(ingress.class_name.as_str());
        if missing.is_empty() && !class_missing {
            continue;
        }
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!(
                "sends traffic to Services that do not exist ({})",
                missing.join(", ")
            ));
        }
        if class_missing {
            problems.push(format!(
                "names IngressClass {}, which does not exist",
                ingress.class_name
            ));
        }
        issues.push(issue(
            IssueKind::IngressMisconfigured,
            Severity::Warning,
            target,
            "",
            format!("Ingress {ns}/{} {}.", target.name, problems.join(" and ")),
            vec![
                ("missing Services", missing.join(",")),
                (
                    "missing IngressClass",
                    if class_missing {
                        ingress.class_name.clone()
                    } else {
                        String::new()
                    },
                ),
                ("TLS Secrets (not judged)", ingress.tls_secrets.join(",")),
            ],
        ));
    }
}

/// Pods by namespace, with all their labels.
type PodsByNamespace<'a> = HashMap<&'a str, Vec<(&'a pb::Pod, &'a Labels)>>;

/// Whether a pod template of a workload or Job in `namespace` carries
/// labels `matches` accepts (a workload scaled to zero, a finished or held
/// Job, or pods still being created, are selected, not nothing).
fn templated(
    tables: &Tables,
    namespace: &str,
    matches: impl Fn(&HashMap<String, String>) -> bool,
) -> bool {
    let in_namespace = |r: Option<&pb::ObjectRef>| r.is_some_and(|r| r.namespace == namespace);
    tables
        .workloads
        .values()
        .any(|e| in_namespace(e.value.r#ref.as_ref()) && matches(&e.value.template_labels))
        || tables
            .jobs
            .values()
            .any(|e| in_namespace(e.value.r#ref.as_ref()) && matches(&e.value.template_labels))
}

/// NetworkPolicies whose pod selector matches no pod and no pod template:
/// they isolate nothing and allow nothing, most often a label typo. An
/// empty selector (every pod of the namespace) is not judged.
fn network_policies(tables: &Tables, pods: &PodsByNamespace<'_>, issues: &mut Vec<pb::Issue>) {
    for entry in tables.network_policies.values() {
        let policy = &entry.value;
        let Some(target) = policy.r#ref.as_ref() else {
            continue;
        };
        // An unreadable selector is not judged rather than misjudged.
        let Ok(selector) = Selector::parse(&policy.pod_selector) else {
            continue;
        };
        // An operator's policy selects pods by labels it sets at run time.
        if selector.is_empty() || policy.managed {
            continue;
        }
        let ns = target.namespace.as_str();
        let selects_pod = pods
            .get(ns)
            .into_iter()
            .flatten()
            .any(|(_, labels)| selector.matches(&***labels));
        if selects_pod || templated(tables, ns, |l| selector.matches(l)) {
            continue;
        }
        issues.push(issue(
            IssueKind::NetworkPolicySelectsNothing,
            Severity::Warning,
            target,
            "",
            format!(
                "NetworkPolicy {ns}/{} selects no pod: no pod or pod template in {ns} matches {}, so it isolates and allows nothing.",
                target.name, policy.pod_selector
            ),
            vec![("pod selector", policy.pod_selector.clone())],
        ));
    }
}

/// How a Service serves, as far as the collector judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serving {
    /// Without a selector, or ExternalName: its endpoints are someone
    /// else's.
    NotJudged,
    /// Its selector matches no pod.
    Nothing,
    /// It selects this many pods, none Ready.
    Unready(usize),
    /// At least one selected pod is an endpoint.
    Ready,
}

/// Webhooks whose Service is missing or serves nothing: with failurePolicy
/// Fail the API server refuses every request they cover (FailedCallingWebhook),
/// with Ignore it lets them through unchecked.
fn webhooks(
    tables: &Tables,
    services: &HashMap<(&str, &str), Serving>,
    issues: &mut Vec<pb::Issue>,
) {
    for entry in tables.webhooks.values() {
        let config = &entry.value;
        let Some(target) = config.r#ref.as_ref() else {
            continue;
        };
        for call in &config.calls {
            let key = (call.service_namespace.as_str(), call.service_name.as_str());
            let (state, selected) = match services.get(&key) {
                None => ("missing", 0),
                Some(Serving::Nothing) => ("selects no pod", 0),
                Some(Serving::Unready(n)) => ("no ready endpoint", *n),
                Some(Serving::NotJudged | Serving::Ready) => continue,
            };
            let fails = call.failure_policy != "Ignore";
            let service = format!("{}/{}", call.service_namespace, call.service_name);
            let outcome = if fails {
                "the API server refuses every request it covers"
            } else {
                "the API server lets every request it covers through unchecked"
            };
            issues.push(issue(
                IssueKind::WebhookNoEndpoints,
                if fails {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                target,
                &call.name,
                format!(
                    "{} {}: webhook {} calls Service {service} ({state}); with failurePolicy {} {outcome}.",
                    target.kind, target.name, call.name, call.failure_policy
                ),
                vec![
                    ("webhook", call.name.clone()),
                    ("service", service),
                    ("service state", state.to_owned()),
                    ("selected pods", selected.to_string()),
                    ("failure policy", call.failure_policy.clone()),
                ],
            ));
        }
    }
}

/// A selector no pod carries, unless a workload's pod template carries it
/// (a workload scaled to zero, or one whose pods are still being created,
/// is not a wrong selector).
fn selects_nothing(
    tables: &Tables,
    service: &pb::Service,
    target: &pb::ObjectRef,
    issues: &mut Vec<pb::Issue>,
) {
    if templated(tables, &target.namespace, |l| {
        selects_template(&service.selector, l)
    }) {
        return;
    }
    let selector = equality_text(&service.selector);
    issues.push(issue(
        IssueKind::ServiceSelectsNothing,
        Severity::Warning,
        target,
        "",
        format!(
            "Service {}/{} selects no pod: no pod or pod template in {} carries {selector}.",
            target.namespace, target.name, target.namespace
        ),
        vec![("selector", selector)],
    ));
}

fn no_ready_endpoint(
    service: &pb::Service,
    target: &pb::ObjectRef,
    selected: &[&pb::Pod],
    issues: &mut Vec<pb::Issue>,
) {
    let mut names: Vec<&str> = selected
        .iter()
        .filter_map(|p| p.r#ref.as_ref().map(|r| r.name.as_str()))
        .collect();
    names.sort_unstable();
    names.truncate(NAMED_PODS);
    issues.push(issue(
        IssueKind::ServiceNoReadyEndpoints,
        Severity::Critical,
        target,
        "",
        format!(
            "Service {}/{} has no ready endpoint: none of the {} pods it selects is Ready, so its clients are refused.",
            target.namespace,
            target.name,
            selected.len()
        ),
        vec![
            ("selector", equality_text(&service.selector)),
            ("selected pods", selected.len().to_string()),
            ("pods", names.join(",")),
        ],
    ));
}

#[cfg(test)]
mod tests;
