//! Kinds must not cry wolf: a healthy namespace of more than 1,000 mixed
//! objects (Deployments with their ReplicaSets and pods, StatefulSets with
//! their governing Services, DaemonSets, Services (one over a Deployment
//! scaled to zero, one without a selector, one ExternalName), HPAs (one
//! over pods whose container sets only a cpu limit, one over a Deployment
//! scaled to zero), disruption budgets, bound claims and their volumes,
//! CronJobs, ConfigMaps, Secrets (one a TLS Secret valid for a year), RBAC,
//! network policies, a webhook whose Service serves, an Ingress of an
//! existing class to existing Services), left to settle, then watched by
//! the real collector reading TLS Secrets, with every time threshold at
//! zero (the strictest it can be) and its Prometheus rounds running: the
//! false-positive count is the number of issues it raises, and it must be 0.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::{collections::BTreeMap, future::Future, pin::Pin, time::Duration};

use futures::{StreamExt as _, stream};
use k8s_openapi::api::{
    admissionregistration::v1::ValidatingWebhookConfiguration,
    apps::v1::{DaemonSet, Deployment, StatefulSet},
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::CronJob,
    core::v1::{
        ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
    },
    networking::v1::{Ingress, IngressClass, NetworkPolicy},
    policy::v1::PodDisruptionBudget,
    rbac::v1::{Role, RoleBinding},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use nanny_cluster_tests::{DeleteOnDrop, Fixture, create_json};
use nanny_common::snapshot::SnapshotView;
use nanny_proto::v1::{GetSnapshotRequest, Scope, collector_client::CollectorClient};
use nanny_test_util::{
    cluster::eventually,
    faults,
    process::{ServiceProcess, cargo_bin},
};
use serde_json::{Value, json};

/// The pods of `limited`, the HPA target whose container sets only a cpu
/// limit.
const LIMITED_PODS: usize = 1;
const DEPLOYMENTS: usize = 24;
const REPLICAS: usize = 8;
const STATEFULSETS: usize = 5;
/// DaemonSets on the three kwok nodes (the real node's taint keeps them off).
const DAEMONSETS: usize = 3;
const KWOK_NODES: usize = 3;
const CLAIMS: usize = 40;
const SETTLE: Duration = Duration::from_secs(180);

type Create = Pin<Box<dyn Future<Output = ()> + Send>>;

fn each<K>(api: &Api<K>, count: usize, object: impl Fn(usize) -> Value) -> Vec<Create>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    (0..count)
        .map(|i| {
            let api = api.clone();
            let value = object(i);
            Box::pin(async move {
                create_json(&api, value).await;
            }) as Create
        })
        .collect()
}

fn app_template(app: &str) -> Value {
    json!({
        "metadata": { "labels": { "app": app } },
        "spec": { "containers": [{
            "name": "app",
            "image": format!("registry.example/{app}:1"),
            "resources": { "requests": { "cpu": "10m", "memory": "16Mi" },
                           "limits": { "memory": "64Mi" } },
        }] },
    })
}

/// Every object of the healthy namespace (and its volumes), created 16 at a
/// time.
async fn populate(client: &Client, ns: &str) {
    let c = client.clone();
    let mut creates: Vec<Create> = Vec::new();
    creates.extend(each(
        &Api::<Deployment>::namespaced(c.clone(), ns),
        DEPLOYMENTS,
        |i| {
            json!({
                "metadata": { "name": format!("web-{i}") },
                "spec": { "replicas": REPLICAS,
                          "selector": { "matchLabels": { "app": format!("web-{i}") } },
                          "template": app_template(&format!("web-{i}")) },
            })
        },
    ));
    creates.extend(each(
        &Api::<Service>::namespaced(c.clone(), ns),
        DEPLOYMENTS,
        |i| {
            json!({
                "metadata": { "name": format!("web-{i}") },
                "spec": { "selector": { "app": format!("web-{i}") },
                          "ports": [{ "port": 80, "targetPort": 8080 }] },
            })
        },
    ));
    creates.extend(each(
        &Api::<Service>::namespaced(c.clone(), ns),
        STATEFULSETS,
        |i| {
            json!({
                "metadata": { "name": format!("db-{i}") },
                "spec": { "clusterIP": "None", "selector": { "app": format!("db-{i}") },
                          "ports": [{ "port": 5432 }] },
            })
        },
    ));
    // A Deployment scaled to zero and its Service: it selects a pod
    // template, not nothing. A Service without a selector (its endpoints
    // kept by hand) and an ExternalName Service are not judged.
    creates.extend(each(
        &Api::<Deployment>::namespaced(c.clone(), ns),
        1,
        |_| {
            json!({
                "metadata": { "name": "idle" },
                "spec": { "replicas": 0,
                          "selector": { "matchLabels": { "app": "idle" } },
                          "template": app_template("idle") },
            })
        },
    ));
    creates.extend(each(&Api::<Service>::namespaced(c.clone(), ns), 3, |i| {
        let spec = match i {
            0 => json!({ "selector": { "app": "idle" }, "ports": [{ "port": 80 }] }),
            1 => json!({ "ports": [{ "port": 80 }] }),
            _ => json!({ "type": "ExternalName", "externalName": "db.example.com",
                         "selector": { "app": "elsewhere" } }),
        };
        let name = ["idle", "manual", "external"][i];
        json!({ "metadata": { "name": name }, "spec": spec })
    }));
    creates.extend(each(
        &Api::<StatefulSet>::namespaced(c.clone(), ns),
        STATEFULSETS,
        |i| {
            json!({
                "metadata": { "name": format!("db-{i}") },
                "spec": { "replicas": 4, "serviceName": format!("db-{i}"),
                          "selector": { "matchLabels": { "app": format!("db-{i}") } },
                          "template": app_template(&format!("db-{i}")) },
            })
        },
    ));
    creates.extend(each(
        &Api::<HorizontalPodAutoscaler>::namespaced(c.clone(), ns),
        DEPLOYMENTS,
        |i| {
            json!({
                "metadata": { "name": format!("web-{i}") },
                "spec": { "minReplicas": REPLICAS, "maxReplicas": 20,
                          "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment",
                                              "name": format!("web-{i}") },
                          "metrics": [{ "type": "Resource", "resource": { "name": "cpu",
                              "target": { "type": "Utilization", "averageUtilization": 70 } } }] },
            })
        },
    ));
    creates.extend(each(
        &Api::<PodDisruptionBudget>::namespaced(c.clone(), ns),
        DEPLOYMENTS,
        |i| {
            json!({
                "metadata": { "name": format!("web-{i}") },
                "spec": { "maxUnavailable": 1,
                          "selector": { "matchLabels": { "app": format!("web-{i}") } } },
            })
        },
    ));
    let class = format!("{ns}-static");
    creates.extend(each(
        &Api::<PersistentVolume>::all(c.clone()),
        CLAIMS,
        |i| {
            json!({
                "metadata": { "name": format!("{ns}-{i}") },
                "spec": { "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"],
                          "persistentVolumeReclaimPolicy": "Retain", "storageClassName": class,
                          "hostPath": { "path": format!("/tmp/{ns}-{i}") },
                          "claimRef": { "namespace": ns, "name": format!("data-{i}") } },
            })
        },
    ));
    creates.extend(each(
        &Api::<PersistentVolumeClaim>::namespaced(c.clone(), ns),
        CLAIMS,
        |i| {
            json!({
                "metadata": { "name": format!("data-{i}") },
                "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": class,
                          "volumeName": format!("{ns}-{i}"),
                          "resources": { "requests": { "storage": "1Gi" } } },
            })
        },
    ));
    creates.extend(each(
        &Api::<DaemonSet>::namespaced(c.clone(), ns),
        DAEMONSETS,
        |i| {
            let mut template = app_template(&format!("agent-{i}"));
            template["spec"]["nodeSelector"] = json!({ "type": "kwok" });
            json!({
                "metadata": { "name": format!("agent-{i}") },
                "spec": { "selector": { "matchLabels": { "app": format!("agent-{i}") } },
                          "template": template },
            })
        },
    ));
    creates.extend(each(&Api::<CronJob>::namespaced(c.clone(), ns), 20, |i| {
        json!({
            "metadata": { "name": format!("nightly-{i}") },
            "spec": { "schedule": "0 3 * * *", "jobTemplate": { "spec": { "template": {
                "spec": { "restartPolicy": "OnFailure", "containers": [{
                    "name": "job", "image": "registry.example/job:1" }] } } } } },
        })
    }));
    creates.extend(each(
        &Api::<ServiceAccount>::namespaced(c.clone(), ns),
        30,
        |i| json!({ "metadata": { "name": format!("sa-{i}") } }),
    ));
    creates.extend(each(&Api::<Role>::namespaced(c.clone(), ns), 20, |i| {
        json!({
            "metadata": { "name": format!("reader-{i}") },
            "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"] }],
        })
    }));
    creates.extend(each(
        &Api::<RoleBinding>::namespaced(c.clone(), ns),
        20,
        |i| {
            json!({
                "metadata": { "name": format!("reader-{i}") },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                             "name": format!("reader-{i}") },
                "subjects": [{ "kind": "ServiceAccount", "name": format!("sa-{i}"),
                               "namespace": ns }],
            })
        },
    ));
    creates.extend(each(
        &Api::<NetworkPolicy>::namespaced(c.clone(), ns),
        10,
        |i| {
            json!({
                "metadata": { "name": format!("web-{i}") },
                "spec": { "podSelector": { "matchLabels": { "app": format!("web-{i}") } },
                          "ingress": [{ "from": [{ "podSelector": {} }] }] },
            })
        },
    ));
    creates.extend(each(
        &Api::<ConfigMap>::namespaced(c.clone(), ns),
        250,
        |i| json!({ "metadata": { "name": format!("settings-{i}") }, "data": { "level": "info" } }),
    ));
    creates.extend(each(
        &Api::<Secret>::namespaced(c.clone(), ns),
        200,
        |i| json!({ "metadata": { "name": format!("token-{i}") }, "stringData": { "token": "x" } }),
    ));
    stream::iter(creates)
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

async fn count<K>(api: Api<K>) -> usize
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list_metadata(&ListParams::default())
        .await
        .unwrap()
        .items
        .len()
}

/// How many objects of each kind the namespace holds (and its volumes).
async fn objects(client: &Client, ns: &str) -> BTreeMap<&'static str, usize> {
    use k8s_openapi::api::{
        apps::v1::{ControllerRevision, ReplicaSet},
        core::v1::Endpoints,
        discovery::v1::EndpointSlice,
    };
    let c = client.clone();
    let volumes = Api::<PersistentVolume>::all(c.clone())
        .list_metadata(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|v| {
            v.metadata
                .name
                .as_deref()
                .is_some_and(|name| name.starts_with(ns))
        })
        .count();
    BTreeMap::from([
        (
            "Deployment",
            count(Api::<Deployment>::namespaced(c.clone(), ns)).await,
        ),
        (
            "ReplicaSet",
            count(Api::<ReplicaSet>::namespaced(c.clone(), ns)).await,
        ),
        ("Pod", count(Api::<Pod>::namespaced(c.clone(), ns)).await),
        (
            "StatefulSet",
            count(Api::<StatefulSet>::namespaced(c.clone(), ns)).await,
        ),
        (
            "DaemonSet",
            count(Api::<DaemonSet>::namespaced(c.clone(), ns)).await,
        ),
        (
            "ControllerRevision",
            count(Api::<ControllerRevision>::namespaced(c.clone(), ns)).await,
        ),
        (
            "Service",
            count(Api::<Service>::namespaced(c.clone(), ns)).await,
        ),
        (
            "Endpoints",
            count(Api::<Endpoints>::namespaced(c.clone(), ns)).await,
        ),
        (
            "EndpointSlice",
            count(Api::<EndpointSlice>::namespaced(c.clone(), ns)).await,
        ),
        (
            "HorizontalPodAutoscaler",
            count(Api::<HorizontalPodAutoscaler>::namespaced(c.clone(), ns)).await,
        ),
        (
            "PodDisruptionBudget",
            count(Api::<PodDisruptionBudget>::namespaced(c.clone(), ns)).await,
        ),
        ("PersistentVolume", volumes),
        (
            "PersistentVolumeClaim",
            count(Api::<PersistentVolumeClaim>::namespaced(c.clone(), ns)).await,
        ),
        (
            "CronJob",
            count(Api::<CronJob>::namespaced(c.clone(), ns)).await,
        ),
        (
            "ServiceAccount",
            count(Api::<ServiceAccount>::namespaced(c.clone(), ns)).await,
        ),
        ("Role", count(Api::<Role>::namespaced(c.clone(), ns)).await),
        (
            "RoleBinding",
            count(Api::<RoleBinding>::namespaced(c.clone(), ns)).await,
        ),
        (
            "NetworkPolicy",
            count(Api::<NetworkPolicy>::namespaced(c.clone(), ns)).await,
        ),
        (
            "ConfigMap",
            count(Api::<ConfigMap>::namespaced(c.clone(), ns)).await,
        ),
        (
            "Secret",
            count(Api::<Secret>::namespaced(c.clone(), ns)).await,
        ),
    ])
}

/// Waits until every pod runs and is ready, every Deployment and
/// StatefulSet says so in its own status, every claim is bound and every
/// budget allows a disruption: the namespace is healthy, by its
/// controllers' own account (they lag the pods on a loaded machine).
async fn settled(client: &Client, ns: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let daemons: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    eventually("every workload available", SETTLE, || async {
        let available = deployments
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|d| {
                let status = d.status.clone().unwrap_or_default();
                status.observed_generation == d.metadata.generation
                    && status.available_replicas == Some(i32::try_from(REPLICAS).unwrap_or(0))
                    && status
                        .conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_ == "Available" && c.status == "True")
            })
            .count();
        let ready_sets = sets
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|s| s.status.as_ref().and_then(|s| s.ready_replicas) == Some(4))
            .count();
        let kwok_nodes = i32::try_from(KWOK_NODES).unwrap_or(0);
        let available_daemons = daemons
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|d| {
                d.status.as_ref().is_some_and(|s| {
                    s.desired_number_scheduled == kwok_nodes
                        && s.number_available == Some(kwok_nodes)
                })
            })
            .count();
        Ok((available == DEPLOYMENTS
            && ready_sets == STATEFULSETS
            && available_daemons == DAEMONSETS)
            .then_some(()))
    })
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let want = DEPLOYMENTS * REPLICAS + STATEFULSETS * 4 + DAEMONSETS * KWOK_NODES + LIMITED_PODS;
    eventually("the namespace settled", SETTLE, || async {
        let ready = pods
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|p| {
                p.status.as_ref().is_some_and(|s| {
                    s.phase.as_deref() == Some("Running")
                        && s.conditions
                            .iter()
                            .flatten()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        let bound = claims
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
            .count();
        let allowing = budgets
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|b| {
                b.status
                    .as_ref()
                    .is_some_and(|s| s.disruptions_allowed >= 1)
            })
            .count();
        Ok((ready == want && bound == CLAIMS && allowing == DEPLOYMENTS).then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_cluster_of_a_thousand_mixed_objects_raises_no_issue() {
    let Some(fx) = Fixture::new("healthy").await else {
        return;
    };
    let client = fx.client.clone();
    let ns = fx.ns().to_owned();
    populate(&client, &ns).await;
    // An HPA over pods whose container sets only a cpu limit (the API server
    // defaults the request to it), and one over the Deployment scaled to
    // zero, its status what the HPA controller writes then (scaling off on
    // purpose).
    let limited = faults::PodSpec {
        cpu_limit: Some("200m".to_owned()),
        ..faults::PodSpec::default()
    };
    faults::hpa_on_cpu(&client, &ns, "limited", &limited, false)
        .await
        .unwrap();
    // A certificate valid for a year.
    faults::tls_secret(&client, &ns, "front-tls", "shop.example", 365)
        .await
        .unwrap();
    let hpas = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &ns);
    create_json(
        &hpas,
        json!({ "metadata": { "name": "idle" },
                "spec": { "minReplicas": 1, "maxReplicas": 3,
                          "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "idle" },
                          "metrics": [{ "type": "Resource", "resource": { "name": "cpu",
                              "target": { "type": "Utilization", "averageUtilization": 70 } } }] } }),
    )
    .await;
    hpas.patch_status(
        "idle",
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": { "currentReplicas": 0, "desiredReplicas": 0,
            "conditions": [{ "type": "ScalingActive", "status": "False", "reason": "ScalingDisabled",
                             "message": "scaling is disabled since the replica count of the target is zero",
                             "lastTransitionTime": "2026-01-01T00:00:00Z" }] } })),
    )
    .await
    .unwrap();

    settled(&client, &ns).await;
    let objects = objects(&client, &ns).await;
    let total: usize = objects.values().sum();
    println!("healthy namespace: {total} objects {objects:?}");
    assert!(total >= 1000, "{objects:?}");

    // A webhook whose Service serves (failurePolicy Ignore and a namespace
    // selector nothing matches: no request of another test reaches it).
    let hook = format!("{ns}-hooks");
    let _hook_cleanup = DeleteOnDrop::new(&fx.cluster, "validatingwebhookconfiguration", &hook);
    create_json(
        &Api::<ValidatingWebhookConfiguration>::all(client.clone()),
        json!({
            "metadata": { "name": hook },
            "webhooks": [{
                "name": "check.nanny.test",
                "clientConfig": { "service": { "namespace": ns, "name": "web-0" } },
                "failurePolicy": "Ignore", "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "namespaceSelector": { "matchLabels": { "nanny.test/never": "true" } },
                "rules": [{ "apiGroups": [""], "apiVersions": ["v1"],
                            "operations": ["CREATE"], "resources": ["configmaps"] }],
            }],
        }),
    )
    .await;

    // An Ingress of an existing class, to existing Services.
    let class = format!("{ns}-class");
    let _class_cleanup = DeleteOnDrop::new(&fx.cluster, "ingressclass", &class);
    create_json(
        &Api::<IngressClass>::all(client.clone()),
        json!({ "metadata": { "name": class },
                "spec": { "controller": "nanny.test/none" } }),
    )
    .await;
    create_json(
        &Api::<Ingress>::namespaced(client.clone(), &ns),
        json!({ "metadata": { "name": "front" },
                "spec": { "ingressClassName": class,
                          "defaultBackend": { "service": { "name": "web-1", "port": { "number": 80 } } },
                          "rules": [{ "http": { "paths": [
                              { "path": "/", "pathType": "Prefix",
                                "backend": { "service": { "name": "web-0", "port": { "number": 80 } } } },
                          ] } }] } }),
    )
    .await;

    // The collector, with every time threshold at zero.
    let kubeconfig = fx.cluster.kubeconfig.to_string_lossy().into_owned();
    let mut env = vec![
        ("NANNY_KUBERNETES__KUBECONFIG", kubeconfig.as_str()),
        ("NANNY_PROMETHEUS__URL", fx.cluster.prometheus_url.as_str()),
        ("NANNY_PROMETHEUS__INTERVAL_SECS", "1"),
        ("NANNY_PROMETHEUS__TIMEOUT_SECS", "2"),
    ];
    for key in [
        "NANNY_THRESHOLDS__UNSCHEDULABLE_SECS",
        "NANNY_THRESHOLDS__READINESS_FAILING_SECS",
        "NANNY_THRESHOLDS__POD_TERMINATING_SECS",
        "NANNY_THRESHOLDS__PVC_PENDING_SECS",
        "NANNY_THRESHOLDS__NAMESPACE_TERMINATING_SECS",
        "NANNY_THRESHOLDS__DEPLOYMENT_UNAVAILABLE_SECS",
        "NANNY_THRESHOLDS__PDB_BLOCKING_SECS",
        "NANNY_THRESHOLDS__SCHEDULING_GATED_SECS",
        "NANNY_THRESHOLDS__RESTARTING_RUNNING_SECS",
        "NANNY_THRESHOLDS__POD_START_FAILING_SECS",
        "NANNY_THRESHOLDS__STATEFULSET_STUCK_SECS",
        "NANNY_THRESHOLDS__DAEMONSET_UNAVAILABLE_SECS",
        "NANNY_THRESHOLDS__SERVICE_SECS",
        "NANNY_THRESHOLDS__PV_RELEASED_SECS",
        "NANNY_THRESHOLDS__PV_FAILED_SECS",
        "NANNY_THRESHOLDS__HPA_UNABLE_SECS",
    ] {
        env.push((key, "0"));
    }
    // TLS Secrets read, their certificates judged.
    env.push(("NANNY_KUBERNETES__TLS_SECRETS", "true"));
    // One restart, one failed probe: the strictest counts.
    env.push(("NANNY_THRESHOLDS__RESTARTING_RESTARTS", "1"));
    env.push(("NANNY_THRESHOLDS__PROBE_FAILURES", "1"));
    let collector = ServiceProcess::spawn(&cargo_bin("nanny-collector"), &env)
        .await
        .unwrap();
    collector
        .wait_serving("nanny.v1.Collector", Duration::from_secs(60))
        .await
        .unwrap();
    let mut grpc = CollectorClient::new(collector.channel(nanny_common::tls::COORDINATOR));
    // Snapshots over 10 s, the last ones after several Prometheus rounds.
    let mut raised = BTreeMap::new();
    let mut last = SnapshotView::default();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut stream = grpc
            .get_snapshot(GetSnapshotRequest {
                scope: Some(Scope {
                    namespaces: vec![ns.clone()],
                    label_selector: String::new(),
                }),
            })
            .await
            .unwrap()
            .into_inner();
        let mut view = SnapshotView::default();
        while let Some(message) = stream.message().await.unwrap() {
            view.push(message).unwrap();
        }
        for issue in view.issues().values() {
            raised.insert(issue.fingerprint.clone(), issue.clone());
        }
        last = view;
    }
    assert_eq!(
        last.pods().len(),
        DEPLOYMENTS * REPLICAS + STATEFULSETS * 4 + DAEMONSETS * KWOK_NODES + LIMITED_PODS,
        "the collector saw every pod"
    );
    let snapshot = last.snapshot();
    assert!(
        !snapshot.metrics.is_empty() && snapshot.metrics_stale_since.is_none(),
        "Prometheus rounds ran"
    );
    println!(
        "false positives: {} issues over {total} objects and {} nodes",
        raised.len(),
        last.nodes().len()
    );
    assert!(
        raised.is_empty(),
        "a healthy cluster raised issues: {:#?}",
        raised.values().collect::<Vec<_>>()
    );

    collector.kill().await.unwrap();
    // The volumes are cluster-scoped: they go with the test.
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    for i in 0..CLAIMS {
        let _ = volumes
            .delete(&format!("{ns}-{i}"), &DeleteParams::default())
            .await;
    }
}
