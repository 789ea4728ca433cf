use std::{collections::BTreeMap, sync::Arc};

use nanny_proto::v1::{self as pb, IssueKind};

use super::*;
use crate::{detect::tests::namespaced as reference, store::Entry};

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn insert<T>(
    table: &mut crate::store::Table<T>,
    r: &pb::ObjectRef,
    value: T,
    all: &[(&str, &str)],
) {
    let all: BTreeMap<String, String> = labels(all).into_iter().collect();
    table.insert(
        Arc::from(r.uid.as_str()),
        Entry {
            rev: 1,
            value: Arc::new(value),
            labels: Arc::new(all),
        },
    );
}

/// A pod whose full labels are `all` (the snapshot may carry fewer).
fn pod(tables: &mut Tables, name: &str, ready: bool, all: &[(&str, &str)]) {
    let r = reference("Pod", name);
    let pod = pb::Pod {
        r#ref: Some(r.clone()),
        phase: "Running".to_owned(),
        node_name: "node-1".to_owned(),
        ready,
        ..pb::Pod::default()
    };
    insert(&mut tables.pods, &r, pod, all);
}

fn service(tables: &mut Tables, name: &str, selector: &[(&str, &str)]) -> pb::Service {
    let r = reference("Service", name);
    let service = pb::Service {
        r#ref: Some(r.clone()),
        selector: labels(selector),
        r#type: "ClusterIP".to_owned(),
        ..pb::Service::default()
    };
    insert(&mut tables.services, &r, service.clone(), &[]);
    service
}

fn workload(tables: &mut Tables, kind: &str, name: &str, template: &[(&str, &str)], service: &str) {
    let r = reference(kind, name);
    let w = pb::Workload {
        r#ref: Some(r.clone()),
        template_labels: labels(template),
        service_name: service.to_owned(),
        ..pb::Workload::default()
    };
    insert(&mut tables.workloads, &r, w, &[]);
}

fn found(tables: &Tables) -> Vec<(IssueKind, String)> {
    let mut issues = Vec::new();
    services(tables, &mut issues);
    crate::detect::tests::kinds(&issues)
}

#[test]
fn healthy_services_and_statefulsets_raise_nothing() {
    let mut t = Tables::default();
    // One ready pod of three is enough.
    pod(
        &mut t,
        "api-1",
        true,
        &[("app", "api"), ("pod-template-hash", "x")],
    );
    pod(&mut t, "api-2", false, &[("app", "api")]);
    service(&mut t, "api", &[("app", "api")]);
    // A Deployment scaled to zero: its template carries the selector.
    workload(&mut t, "Deployment", "batch", &[("app", "batch")], "");
    service(&mut t, "batch", &[("app", "batch")]);
    // No selector (endpoints by hand) and ExternalName are not judged.
    service(&mut t, "manual", &[]);
    let mut external = service(&mut t, "external", &[("app", "gone")]);
    external.r#type = "ExternalName".to_owned();
    let r = external.r#ref.clone().unwrap();
    insert(&mut t.services, &r, external, &[]);
    // publishNotReadyAddresses: a scheduled pod is an endpoint.
    pod(&mut t, "peer-0", false, &[("app", "peer")]);
    let mut peers = service(&mut t, "peers", &[("app", "peer")]);
    peers.publish_not_ready = true;
    let r = peers.r#ref.clone().unwrap();
    insert(&mut t.services, &r, peers, &[]);
    // A StatefulSet with its Service, and one naming none.
    workload(&mut t, "StatefulSet", "db", &[("app", "db")], "api");
    workload(&mut t, "StatefulSet", "cache", &[("app", "cache")], "");
    // A Deployment's serviceName-like field is never read.
    workload(&mut t, "Deployment", "web", &[("app", "web")], "nowhere");
    assert_eq!(found(&t), vec![]);
}

#[test]
fn a_selector_nothing_carries_is_an_issue_matching_uses_all_labels() {
    let mut t = Tables::default();
    pod(&mut t, "api-1", true, &[("app", "api"), ("tier", "web")]);
    workload(
        &mut t,
        "Deployment",
        "api",
        &[("app", "api"), ("tier", "web")],
        "",
    );
    service(&mut t, "typo", &[("app", "apii")]);
    // Every key must match: tier=db is on no pod and no template.
    service(&mut t, "half", &[("app", "api"), ("tier", "db")]);
    // Full labels match even when the snapshot would not carry them.
    service(&mut t, "web", &[("tier", "web")]);
    assert_eq!(
        found(&t),
        vec![
            (IssueKind::ServiceSelectsNothing, "half".to_owned()),
            (IssueKind::ServiceSelectsNothing, "typo".to_owned()),
        ]
    );
    let mut issues = Vec::new();
    services(&t, &mut issues);
    let typo = issues
        .iter()
        .find(|i| i.target.as_ref().is_some_and(|r| r.name == "typo"))
        .unwrap();
    assert_eq!(typo.evidence[0].value, "app=apii");
    assert!(
        typo.summary
            .contains("no pod or pod template in shop carries app=apii")
    );
    // Another namespace's pods do not count.
    let mut other = Tables::default();
    let mut elsewhere = reference("Pod", "api-9");
    elsewhere.namespace = "other".to_owned();
    let p = pb::Pod {
        r#ref: Some(elsewhere.clone()),
        ready: true,
        ..pb::Pod::default()
    };
    insert(&mut other.pods, &elsewhere, p, &[("app", "api")]);
    service(&mut other, "api", &[("app", "api")]);
    assert_eq!(
        found(&other),
        vec![(IssueKind::ServiceSelectsNothing, "api".to_owned())]
    );
}

#[test]
fn selected_pods_none_ready_or_all_leaving_mean_no_ready_endpoint() {
    let mut t = Tables::default();
    pod(&mut t, "api-2", false, &[("app", "api")]);
    pod(&mut t, "api-1", false, &[("app", "api")]);
    service(&mut t, "api", &[("app", "api")]);
    // A Ready pod being deleted is no endpoint; finished pods are not pods.
    let r = reference("Pod", "web-1");
    let leaving = pb::Pod {
        r#ref: Some(r.clone()),
        ready: true,
        deletion_deadline: Some(prost_types::Timestamp::default()),
        ..pb::Pod::default()
    };
    insert(&mut t.pods, &r, leaving, &[("app", "web")]);
    let r = reference("Pod", "web-done");
    let done = pb::Pod {
        r#ref: Some(r.clone()),
        phase: "Succeeded".to_owned(),
        ..pb::Pod::default()
    };
    insert(&mut t.pods, &r, done, &[("app", "web")]);
    service(&mut t, "web", &[("app", "web")]);
    assert_eq!(
        found(&t),
        vec![
            (IssueKind::ServiceNoReadyEndpoints, "api".to_owned()),
            (IssueKind::ServiceNoReadyEndpoints, "web".to_owned()),
        ]
    );
    let mut issues = Vec::new();
    services(&t, &mut issues);
    let api = issues
        .iter()
        .find(|i| i.target.as_ref().is_some_and(|r| r.name == "api"))
        .unwrap();
    assert_eq!(api.severity, pb::Severity::Critical as i32);
    let evidence: Vec<(&str, &str)> = api
        .evidence
        .iter()
        .map(|e| (e.description.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(
        evidence,
        vec![
            ("selector", "app=api"),
            ("selected pods", "2"),
            ("pods", "api-1,api-2")
        ]
    );
}

#[test]
fn a_statefulset_naming_a_missing_service_is_an_issue() {
    let mut t = Tables::default();
    workload(&mut t, "StatefulSet", "db", &[("app", "db")], "db-headless");
    // A Service of that name in another namespace does not count.
    let mut r = reference("Service", "db-headless");
    r.namespace = "other".to_owned();
    let s = pb::Service {
        r#ref: Some(r.clone()),
        ..pb::Service::default()
    };
    insert(&mut t.services, &r, s, &[]);
    assert_eq!(
        found(&t),
        vec![(IssueKind::StatefulsetServiceMissing, "db".to_owned())]
    );
    // Once it exists (selector-less is fine), nothing.
    let r = reference("Service", "db-headless");
    let s = pb::Service {
        r#ref: Some(r.clone()),
        headless: true,
        ..pb::Service::default()
    };
    insert(&mut t.services, &r, s, &[]);
    assert_eq!(found(&t), vec![]);
}

fn webhook_config(tables: &mut Tables, calls: &[(&str, &str, &str)]) {
    let r = pb::ObjectRef {
        kind: "ValidatingWebhookConfiguration".to_owned(),
        name: "policy".to_owned(),
        uid: "uid-policy".to_owned(),
        ..pb::ObjectRef::default()
    };
    let config = pb::AdmissionWebhook {
        r#ref: Some(r.clone()),
        calls: calls
            .iter()
            .map(|(name, service, policy)| pb::WebhookCall {
                name: (*name).to_owned(),
                service_namespace: "shop".to_owned(),
                service_name: (*service).to_owned(),
                failure_policy: (*policy).to_owned(),
            })
            .collect(),
    };
    insert(&mut tables.webhooks, &r, config, &[]);
}

#[test]
fn webhooks_whose_service_is_missing_or_serves_nothing_are_issues() {
    let mut t = Tables::default();
    pod(&mut t, "hook-1", true, &[("app", "hook")]);
    service(&mut t, "hook", &[("app", "hook")]);
    pod(&mut t, "down-1", false, &[("app", "down")]);
    service(&mut t, "down", &[("app", "down")]);
    service(&mut t, "manual", &[]);
    webhook_config(
        &mut t,
        &[
            ("served.example.com", "hook", "Fail"),
            ("manual.example.com", "manual", "Fail"),
            ("gone.example.com", "gone", "Fail"),
            ("down.example.com", "down", "Ignore"),
        ],
    );
    let mut issues = Vec::new();
    services(&t, &mut issues);
    let hooks: Vec<(String, i32, Vec<String>)> = issues
        .iter()
        .filter(|i| i.kind == IssueKind::WebhookNoEndpoints as i32)
        .map(|i| {
            (
                i.summary.clone(),
                i.severity,
                i.evidence.iter().map(|e| e.value.clone()).collect(),
            )
        })
        .collect();
    let gone = hooks
        .iter()
        .find(|h| h.0.contains("gone.example.com"))
        .unwrap();
    assert_eq!(gone.1, pb::Severity::Critical as i32);
    assert_eq!(
        gone.2,
        ["gone.example.com", "shop/gone", "missing", "0", "Fail"]
    );
    assert!(
        gone.0
            .contains("the API server refuses every request it covers")
    );
    let down = hooks
        .iter()
        .find(|h| h.0.contains("down.example.com"))
        .unwrap();
    assert_eq!(
        down.1,
        pb::Severity::Warning as i32,
        "Ignore: nothing refused"
    );
    assert_eq!(down.2[2..4], ["no ready endpoint", "1"]);
    // A served webhook and one whose Service has no selector: nothing.
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    // One issue per webhook: distinct fingerprints on one configuration.
    let prints: std::collections::HashSet<&str> = issues
        .iter()
        .filter(|i| i.kind == IssueKind::WebhookNoEndpoints as i32)
        .map(|i| i.fingerprint.as_str())
        .collect();
    assert_eq!(prints.len(), 2);
}

#[test]
fn what_a_scoped_collector_cannot_see_is_not_judged() {
    let mut t = Tables::default();
    service(&mut t, "typo", &[("app", "nothing")]);
    webhook_config(&mut t, &[("gone.example.com", "gone", "Fail")]);
    workload(&mut t, "StatefulSet", "db", &[("app", "db")], "db-headless");
    let mut issues = Vec::new();
    services(&t, &mut issues);
    let kept = |scope: &crate::config::KubernetesConfig| {
        let mut kinds: Vec<i32> = issues
            .iter()
            .filter(|i| judged(i, scope))
            .map(|i| i.kind)
            .collect();
        kinds.sort_unstable();
        kinds
    };
    let all = crate::config::KubernetesConfig::default();
    assert_eq!(kept(&all).len(), 3);
    let labelled = crate::config::KubernetesConfig {
        label_selector: "team=a".to_owned(),
        ..all.clone()
    };
    assert_eq!(
        kept(&labelled),
        [IssueKind::StatefulsetServiceMissing as i32],
        "pods out of a label scope are unseen"
    );
    let other = crate::config::KubernetesConfig {
        namespaces: vec!["other".to_owned()],
        ..all.clone()
    };
    assert!(
        !kept(&other).contains(&(IssueKind::WebhookNoEndpoints as i32)),
        "a Service in a namespace not watched is unseen, not missing"
    );
    let shop = crate::config::KubernetesConfig {
        namespaces: vec!["shop".to_owned()],
        ..all
    };
    assert!(kept(&shop).contains(&(IssueKind::WebhookNoEndpoints as i32)));
}

fn network_policy(tables: &mut Tables, name: &str, selector: &str) {
    let r = reference("NetworkPolicy", name);
    let policy = pb::NetworkPolicy {
        r#ref: Some(r.clone()),
        pod_selector: selector.to_owned(),
        ..pb::NetworkPolicy::default()
    };
    insert(&mut tables.network_policies, &r, policy, &[]);
}

#[test]
fn network_policies_selecting_no_pod_or_template_are_issues() {
    let mut t = Tables::default();
    pod(&mut t, "api-1", false, &[("app", "api"), ("tier", "web")]);
    workload(&mut t, "Deployment", "batch", &[("app", "batch")], "");
    network_policy(&mut t, "api", "app=api");
    network_policy(&mut t, "set", "tier in (web,db)");
    network_policy(&mut t, "idle", "app=batch");
    // Every pod of the namespace, and an unreadable selector: not judged.
    network_policy(&mut t, "all", "");
    network_policy(&mut t, "odd", "app in (");
    network_policy(&mut t, "typo", "app=apii");
    network_policy(&mut t, "absent", "!tier,app=api");
    assert_eq!(
        found(&t)
            .into_iter()
            .filter(|(k, _)| *k == IssueKind::NetworkPolicySelectsNothing)
            .map(|(_, n)| n)
            .collect::<Vec<_>>(),
        ["absent", "typo"]
    );
}

fn ingress(tables: &mut Tables, name: &str, class: &str, legacy: bool, services: &[&str]) {
    let r = reference("Ingress", name);
    let ingress = pb::Ingress {
        r#ref: Some(r.clone()),
        class_name: class.to_owned(),
        legacy_class: legacy,
        backend_services: services.iter().map(|s| (*s).to_owned()).collect(),
        tls_secrets: vec!["web-tls".to_owned()],
    };
    insert(&mut tables.ingresses, &r, ingress, &[]);
}

#[test]
fn ingresses_to_missing_services_or_classes_are_issues() {
    let mut t = Tables::default();
    service(&mut t, "web", &[("app", "web")]);
    service(&mut t, "manual", &[]);
    t.ingress_classes
        .insert(Arc::from("uid-class"), "nginx".to_owned());
    ingress(&mut t, "fine", "nginx", false, &["web", "manual"]);
    ingress(&mut t, "default-class", "", false, &["web"]);
    ingress(&mut t, "legacy", "traefik", true, &["web"]);
    ingress(&mut t, "typo", "nginx", false, &["web", "wbe"]);
    ingress(&mut t, "classless", "nginx-internal", false, &["web"]);
    let mut issues = Vec::new();
    services(&t, &mut issues);
    let mut found: Vec<(String, Vec<String>)> = issues
        .iter()
        .filter(|i| i.kind == IssueKind::IngressMisconfigured as i32)
        .map(|i| {
            (
                i.target.as_ref().unwrap().name.clone(),
                i.evidence.iter().map(|e| e.value.clone()).collect(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (
                "classless".to_owned(),
                vec![
                    String::new(),
                    "nginx-internal".to_owned(),
                    "web-tls".to_owned()
                ]
            ),
            (
                "typo".to_owned(),
                vec!["wbe".to_owned(), String::new(), "web-tls".to_owned()]
            ),
        ]
    );
}

#[test]
fn operators_runtime_labels_jobs_and_owned_objects_are_not_wrong_selectors() {
    let mut t = Tables::default();
    // A StatefulSet's template lacks the role label an operator sets on
    // its pods at run time: a replica Service with no replica now selects
    // it, not nothing.
    workload(&mut t, "StatefulSet", "pg", &[("cluster", "pg")], "pg");
    service(&mut t, "pg", &[("cluster", "pg")]);
    service(&mut t, "pg-repl", &[("cluster", "pg"), ("role", "replica")]);
    // A finished Job's headless Service, and a policy for its pods.
    let r = reference("Job", "index");
    let job = pb::Job {
        r#ref: Some(r.clone()),
        template_labels: labels(&[("job-name", "index")]),
        ..pb::Job::default()
    };
    insert(&mut t.jobs, &r, job, &[]);
    service(&mut t, "index", &[("job-name", "index")]);
    network_policy(&mut t, "index", "job-name=index");
    // Owned by a controller: its labels are the controller's business.
    let mut owned = service(&mut t, "ro", &[("role", "replica")]);
    owned.managed = true;
    let r = owned.r#ref.clone().unwrap();
    insert(&mut t.services, &r, owned, &[]);
    let r = reference("NetworkPolicy", "owned");
    let policy = pb::NetworkPolicy {
        r#ref: Some(r.clone()),
        pod_selector: "role=replica".to_owned(),
        managed: true,
        ..pb::NetworkPolicy::default()
    };
    insert(&mut t.network_policies, &r, policy, &[]);
    // A wrong value of a key the template carries is still a typo.
    service(
        &mut t,
        "pg-typo",
        &[("cluster", "pgg"), ("role", "replica")],
    );
    assert_eq!(
        found(&t),
        vec![(IssueKind::ServiceSelectsNothing, "pg-typo".to_owned())]
    );
}
