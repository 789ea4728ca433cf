//! The issue kinds added for breadth (#22), each made real against the API
//! server and its controllers, and followed through the whole pipeline (the
//! five services as processes): detected, reported in a ReportOnly
//! HealingAction that says what to fix, closed by the gate with nothing
//! executed, and the object left as it was.
//!
//! - a claim whose StorageClass does not exist (the PV controller's own
//!   `ProvisioningFailed` quoted);
//! - a claim whose bound volume was deleted (the PV controller marks it
//!   Lost);
//! - a namespace held Terminating by an object's finalizer (the namespace
//!   controller's message quoted);
//! - a pod deleted while a finalizer holds it;
//! - a Deployment with no replica available (its pods cannot be
//!   scheduled);
//! - a PodDisruptionBudget that allows no disruption with every pod healthy;
//! - a Deployment whose pods the API server refuses (a ServiceAccount that
//!   does not exist: the ReplicaSet controller's message quoted);
//! - a node reporting NetworkUnavailable and node-problem-detector's
//!   KernelDeadlock (its cordon proposed for a human, approved; once the
//!   node recovers, Nanny lifts its own cordon automatically);
//! - a pod held by a scheduling gate (the gate named);
//! - a CronJob whose schedule names 30 February (it never runs);
//! - a StatefulSet whose pod cannot be scheduled, and a DaemonSet whose pod
//!   sits on a node no kubelet serves (each with what its pods show);
//! - a container running again two minutes after exiting 1, its third
//!   restart (its status written as a kubelet would, on a node no kubelet
//!   serves);
//! - a Service whose selector matches nothing (the pod template meant
//!   named), a Service whose only pod cannot be scheduled (no ready
//!   endpoint), and the StatefulSet above naming a governing Service that
//!   does not exist;
//! - a NetworkPolicy whose pod selector has a typo;
//! - a volume (Retain) whose claim was deleted, Released by the PV
//!   controller, and one (Delete) whose reclamation the PV controller
//!   cannot do, Failed;
//! - an Ingress sending one path to a Service that does not exist, of an
//!   IngressClass that does not exist;
//! - a ValidatingWebhookConfiguration whose webhook calls a Service that
//!   does not exist (failurePolicy Ignore, and a namespace selector
//!   nothing matches, so no request of any other test is touched);
//! - a TLS Secret (the Ingress's) whose certificate expires in five days,
//!   read by a collector that reads TLS Secrets;
//! - an HPA whose controller cannot read its metrics (its status written
//!   as the HPA controller writes it with no metrics API, which the local
//!   cluster lacks, so it runs no HPA controller), and an HPA on cpu
//!   utilization whose target's pods request no cpu (the real pods
//!   judged);
//!
//! and the ones acted on: a Deployment's evicted pods, deleted automatically
//! (DeleteFailedPods) while its running pods stay; a pod stuck terminating
//! on a node no kubelet serves, force-deleted once a human approves
//! (ForceDeletePod); a budget whose minimum equals its Deployment's
//! replicas, given one more replica once a human approves (ScaleWorkload);
//! a rollout stuck past its deadline, rolled back to its previous revision
//! once a human approves (RolloutUndo); a Job failed past its deadline
//! (its node was missing), run again as a new Job once a human approves and
//! the node is there (RetriggerJob).
//!
//! The runtime errors (CreateContainerError, RunContainerError) need a
//! real runtime: the kubelet shows RunContainerError only until its
//! back-off turns it into CrashLoopBackOff, so they are unit-tested on the
//! kubelet's own messages. The kubelet's warnings (liveness and startup
//! probes, volumes it cannot mount, a sandbox it cannot create) are real on
//! the real node (`chart_real_node.rs`).

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use k8s_openapi::api::{
    admissionregistration::v1::ValidatingWebhookConfiguration,
    apps::v1::{DaemonSet, Deployment, StatefulSet},
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::CronJob,
    core::v1::{ConfigMap, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Service},
    networking::v1::{Ingress, NetworkPolicy},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use nanny_cluster_tests::{
    DeleteOnDrop, Fixture, create_json,
    pipeline::{Harness, WAIT, policy},
};
use nanny_crd::{ActionType, HealingAction, Phase};
use nanny_test_util::{
    cluster::eventually,
    faults::{self, PodSpec},
    nodes::FakeNode,
};
use serde_json::json;

/// The collector raises every new kind as soon as its condition holds.
fn thresholds() -> Vec<(&'static str, String, String)> {
    [
        "PVC_PENDING_SECS",
        "POD_TERMINATING_SECS",
        "NAMESPACE_TERMINATING_SECS",
        "DEPLOYMENT_UNAVAILABLE_SECS",
        "PDB_BLOCKING_SECS",
        "CRONJOB_SUSPENDED_SECS",
        "SCHEDULING_GATED_SECS",
        "DAEMONSET_UNAVAILABLE_SECS",
        "SERVICE_SECS",
        "PV_RELEASED_SECS",
        "PV_FAILED_SECS",
        "HPA_UNABLE_SECS",
    ]
    .into_iter()
    .map(|key| {
        (
            "nanny-collector",
            format!("NANNY_THRESHOLDS__{key}"),
            "0".to_owned(),
        )
    })
    .chain([
        (
            "nanny-analyzer",
            "NANNY_RULES__NODE__UNCORDON_AFTER_SECS".to_owned(),
            // Past the policy's 1 s cooldown after the cordon.
            "3".to_owned(),
        ),
        (
            "nanny-collector",
            "NANNY_KUBERNETES__TLS_SECRETS".to_owned(),
            "true".to_owned(),
        ),
        (
            "nanny-collector",
            "NANNY_THRESHOLDS__STATEFULSET_STUCK_SECS".to_owned(),
            // A StatefulSet is short from its creation; its pod appears a
            // moment later, and the report names what the pod waits in.
            "10".to_owned(),
        ),
    ])
    .collect()
}

/// A node no kubelet serves, reporting Ready with NetworkUnavailable and
/// KernelDeadlock True (what a broken CNI and node-problem-detector write).
async fn sick_node(
    cluster: &nanny_test_util::cluster::ClusterInfo,
    client: &Client,
    name: &str,
) -> FakeNode {
    let node = FakeNode::without_kubelet(cluster, client, name)
        .await
        .unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let condition = |type_: &str, status: &str, reason: &str| {
        json!({ "type": type_, "status": status, "reason": reason,
                "lastHeartbeatTime": now, "lastTransitionTime": now })
    };
    let status = json!({ "status": { "conditions": [
        condition("Ready", "True", "KubeletReady"),
        condition("NetworkUnavailable", "True", "NoRouteCreated"),
        condition("KernelDeadlock", "True", "DockerHung"),
    ] } });
    Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    node
}

/// The sick node healthy again: Ready, its network and kernel fine (what
/// the kubelet and node-problem-detector write once it recovers).
async fn recover(client: &Client, name: &str) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let condition = |type_: &str, status: &str, reason: &str| {
        json!({ "type": type_, "status": status, "reason": reason,
                "lastHeartbeatTime": now, "lastTransitionTime": now })
    };
    let status = json!({ "status": { "conditions": [
        condition("Ready", "True", "KubeletReady"),
        condition("NetworkUnavailable", "False", "RouteCreated"),
        condition("KernelDeadlock", "False", "KernelHasNoDeadlock"),
    ] } });
    Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// A namespace an object's finalizer holds Terminating, once the namespace
/// controller has said so (its report quotes the controller).
async fn held_namespace(client: &Client, name: &str) -> Namespace {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let held = create_json(&namespaces, json!({ "metadata": { "name": name } })).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), name);
    create_json(
        &maps,
        json!({ "metadata": { "name": "held", "finalizers": ["nanny.test/block"] } }),
    )
    .await;
    namespaces
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the namespace controller naming the finalizer",
        WAIT,
        || async {
            let ns = namespaces.get(name).await?;
            let conditions = ns.status.and_then(|s| s.conditions).unwrap_or_default();
            Ok(conditions
                .iter()
                .any(|c| {
                    c.type_ == "NamespaceFinalizersRemaining"
                        && c.status == "True"
                        && c.message
                            .as_deref()
                            .is_some_and(|m| m.contains("nanny.test/block"))
                })
                .then_some(()))
        },
    )
    .await
    .unwrap();
    held
}

async fn clear_finalizers<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({ "metadata": { "finalizers": null } });
    // Gone already is fine: this is cleanup.
    let _ = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
}

/// The ReportOnly action about `uid` for `issue`, once the gate closed it:
/// its explanation contains every one of `words`, and nothing ran.
async fn reported(h: &Harness, uid: &str, issue: &str, words: &[&str]) -> HealingAction {
    let closed = eventually(&format!("{issue} on {uid} reported"), WAIT, || async {
        Ok(h.actions_on(uid).await.into_iter().find(|a| {
            a.spec.action.type_ == ActionType::ReportOnly
                && a.spec.issue_kind.as_deref() == Some(issue)
                && a.status.as_ref().and_then(|s| s.phase).is_some()
        }))
    })
    .await;
    let closed = match closed {
        Ok(action) => action,
        Err(error) => panic!("{error}\n{}", h.actions_seen().await),
    };
    let reasoning = &closed.spec.reasoning;
    for word in words {
        assert!(
            reasoning.contains(word),
            "{issue}: {word:?} not in {reasoning:?}"
        );
    }
    assert_eq!(
        closed.spec.action.params.explanation.as_deref(),
        Some(reasoning.as_str()),
        "the report carries the same words"
    );
    let status = closed.status.clone().unwrap();
    if closed.spec.target.kind == "PersistentVolume" {
        // A protected kind: the gate refuses before it looks at the action,
        // even a report; the words stay in the HealingAction.
        assert_eq!(status.phase, Some(Phase::Denied), "{status:?}");
        assert!(status.result.is_none(), "nothing executed: {status:?}");
        assert!(
            status
                .conditions
                .iter()
                .any(|c| c.message == "kind PersistentVolume is protected"),
            "{status:?}"
        );
    } else {
        nanny_cluster_tests::assert_closed_as_report(&status);
    }
    assert_eq!(h.executions_on(uid).await, 0, "{issue}: nothing executed");
    println!("{issue}: {reasoning}");
    closed
}

/// A claim bound to a volume of its own, which is then deleted.
async fn lost_claim(client: &Client, ns: &str, claims: &Api<PersistentVolumeClaim>) -> String {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let volume = format!("{ns}-lost");
    let class = format!("{ns}-manual");
    create_json(
        &volumes,
        json!({
            "metadata": { "name": volume },
            "spec": {
                "capacity": { "storage": "1Gi" },
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": class,
                "hostPath": { "path": format!("/tmp/{volume}") },
                "claimRef": { "namespace": ns, "name": "lost" },
            },
        }),
    )
    .await;
    create_json(
        claims,
        json!({
            "metadata": { "name": "lost" },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": class,
                "volumeName": volume,
                "resources": { "requests": { "storage": "1Gi" } },
            },
        }),
    )
    .await;
    eventually("the claim bound", WAIT, || async {
        let claim = claims.get("lost").await?;
        Ok((claim.status.and_then(|s| s.phase).as_deref() == Some("Bound")).then_some(()))
    })
    .await
    .unwrap();
    // A bound volume is kept by its protection finalizer: lifting it is
    // what losing the disk behind a claim looks like to the cluster.
    volumes
        .delete(&volume, &DeleteParams::default())
        .await
        .unwrap();
    clear_finalizers(&volumes, &volume).await;
    eventually("the claim Lost", WAIT, || async {
        let claim = claims.get("lost").await?;
        Ok((claim.status.and_then(|s| s.phase).as_deref() == Some("Lost")).then_some(()))
    })
    .await
    .unwrap();
    volume
}

/// A volume bound to claim `name`, then the claim deleted: the PV
/// controller releases it (`Retain`) or tries to reclaim it (`Delete`).
async fn unclaimed_volume(
    client: &Client,
    ns: &str,
    claims: &Api<PersistentVolumeClaim>,
    name: &str,
    policy: &str,
    phase: &str,
) -> PersistentVolume {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let volume = format!("{ns}-{name}");
    let class = format!("{ns}-manual");
    create_json(
        &volumes,
        json!({
            "metadata": { "name": volume },
            "spec": {
                "capacity": { "storage": "1Gi" },
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": policy,
                "storageClassName": class,
                // NFS: the PV controller has no deleter for it, so a
                // Delete policy fails (a hostPath under /tmp it deletes).
                "nfs": { "server": "nfs.nanny.test", "path": format!("/exports/{volume}") },
                "claimRef": { "namespace": ns, "name": name },
            },
        }),
    )
    .await;
    create_json(
        claims,
        json!({
            "metadata": { "name": name },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": class,
                "volumeName": volume,
                "resources": { "requests": { "storage": "1Gi" } },
            },
        }),
    )
    .await;
    eventually("the claim bound", WAIT, || async {
        let claim = claims.get(name).await?;
        Ok((claim.status.and_then(|s| s.phase).as_deref() == Some("Bound")).then_some(()))
    })
    .await
    .unwrap();
    claims.delete(name, &DeleteParams::default()).await.unwrap();
    eventually(&format!("the volume {phase}"), WAIT, || async {
        let v = volumes.get(&volume).await?;
        let now = v.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase);
        Ok(now.then_some(v))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn new_kinds_are_detected_on_real_objects_and_reported_with_what_to_fix() {
    let Some(fx) = Fixture::new("breadth").await else {
        return;
    };
    let client = fx.client.clone();
    let fx_cluster = fx.cluster.clone();
    let ns = fx.ns().to_owned();
    // A second namespace in the policy's scope, to be stuck terminating.
    let held_ns = format!("{ns}-held");
    let mut policy = policy(&ns, "Auto");
    // A node's cordon and its lifting follow each other within seconds.
    policy.spec.limits.cooldown_seconds = 1;
    policy.spec.scope.namespaces.push(held_ns.clone());
    for action in [
        "DeleteFailedPods",
        "ForceDeletePod",
        "ScaleWorkload",
        "ResumeCronJob",
        "RolloutUndo",
        "UncordonNode",
        "RetriggerJob",
    ] {
        policy
            .spec
            .actions
            .push(serde_json::from_value(json!({ "type": action })).unwrap());
    }
    let held = held_namespace(&client, &held_ns).await;
    let sick = sick_node(&fx_cluster, &client, &format!("{ns}-sick")).await;
    let sick_uid = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .get(&sick.name)
        .await
        .unwrap()
        .uid()
        .unwrap();
    // Evicted pods of a Deployment, replaced by its ReplicaSet, before Nanny
    // starts: it sees both at once and deletes them in one action.
    let evicting = faults::deployment(&client, &ns, "evicting", 3, &PodSpec::default())
        .await
        .unwrap();
    let evicted = faults::evict_pods(&client, &ns, "evicting", 2)
        .await
        .unwrap();
    // A Job whose node is not there yet: past its deadline the Job
    // controller fails it; the node arrives before a human approves its run.
    let batch_node = format!("{ns}-batch");
    faults::pinned_job(&client, &ns, "nightly", &batch_node, Some(30))
        .await
        .unwrap();
    // The Job that waits for the same node, to see the scheduler place pods
    // there before the retry's.
    faults::pinned_job(&client, &ns, "waiting", &batch_node, None)
        .await
        .unwrap();
    let h = Harness::with_policy(fx, &policy, thresholds()).await;

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let held_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &held_ns);

    // A claim of a class that does not exist.
    let pending = create_json(
        &claims,
        json!({
            "metadata": { "name": "pending" },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "no-such-class",
                "resources": { "requests": { "storage": "1Gi" } },
            },
        }),
    )
    .await;
    // A claim whose volume goes.
    let volume = lost_claim(&client, &ns, &claims).await;
    let lost = claims.get("lost").await.unwrap();
    // A pod a finalizer holds after its deletion (unscheduled, so only the
    // API server and its finalizer decide).
    let stuck = create_json(
        &pods,
        json!({
            "metadata": { "name": "stuck", "finalizers": ["nanny.test/block"] },
            "spec": {
                "nodeSelector": { "nanny.ai/no-such-node": "true" },
                "containers": [{ "name": "app", "image": "registry.example/stuck:1" }],
            },
        }),
    )
    .await;
    pods.delete("stuck", &DeleteParams::default())
        .await
        .unwrap();
    // A Deployment none of whose pods can be scheduled.
    let nowhere = faults::unschedulable(&client, &ns, "nowhere")
        .await
        .unwrap();
    // A budget that allows nothing over two healthy pods.
    let guarded = faults::deployment(&client, &ns, "guarded", 2, &PodSpec::default())
        .await
        .unwrap();
    // Budgets are judged over healthy pods: the pods run first.
    nanny_test_util::scenarios::running_pods(&client, &ns, "guarded", 2, WAIT)
        .await
        .unwrap();
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    let strict = create_json(
        &budgets,
        json!({
            "metadata": { "name": "strict" },
            "spec": { "minAvailable": "100%", "selector": { "matchLabels": { "app": "guarded" } } },
        }),
    )
    .await;

    // A budget of minAvailable 2 over a Deployment of 2.
    let budgeted = faults::deployment(&client, &ns, "budgeted", 2, &PodSpec::default())
        .await
        .unwrap();
    nanny_test_util::scenarios::running_pods(&client, &ns, "budgeted", 2, WAIT)
        .await
        .unwrap();
    create_json(
        &budgets,
        json!({
            "metadata": { "name": "budgeted" },
            "spec": { "minAvailable": 2, "selector": { "matchLabels": { "app": "budgeted" } } },
        }),
    )
    .await;

    // A Deployment whose pods name a ServiceAccount that does not exist.
    let refused = faults::deployment_of(
        &client,
        &ns,
        "unaccounted",
        1,
        json!({
            "metadata": { "labels": { "app": "unaccounted" } },
            "spec": { "serviceAccountName": "missing-sa",
                      "containers": [{ "name": "app", "image": "registry.example/app:1" }] },
        }),
    )
    .await
    .unwrap();

    // A suspended CronJob (suspended and idle past the threshold, 0 here).
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), &ns);
    let paused = create_json(
        &cron_jobs,
        json!({
            "metadata": { "name": "paused" },
            "spec": { "schedule": "0 3 * * *", "suspend": true,
                      "jobTemplate": { "spec": { "template": { "spec": {
                          "restartPolicy": "Never",
                          "containers": [{ "name": "job", "image": "registry.example/job:1" }] } } } } },
        }),
    )
    .await;

    // A pod deleted on a node no kubelet serves: never confirmed stopped.
    let gone = FakeNode::without_kubelet(&fx_cluster, &client, &format!("{ns}-gone"))
        .await
        .unwrap();
    create_json(
        &pods,
        json!({
            "metadata": { "name": "orphan" },
            "spec": { "nodeName": gone.name,
                      "containers": [{ "name": "app", "image": "registry.example/orphan:1" }] },
        }),
    )
    .await;
    pods.delete(
        "orphan",
        &DeleteParams {
            grace_period_seconds: Some(1),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    let orphan = pods.get("orphan").await.unwrap();

    // A rollout stuck on a revision whose pods cannot be scheduled, past
    // its progress deadline, while revision 1 still serves.
    let rolling = faults::deployment(&client, &ns, "rolling", 1, &PodSpec::default())
        .await
        .unwrap();
    nanny_test_util::scenarios::running_pods(&client, &ns, "rolling", 1, WAIT)
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments
        .patch(
            "rolling",
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "spec": { "progressDeadlineSeconds": 1, "template": { "spec": {
                "nodeSelector": { "nanny.ai/no-such-node": "true" } } } } }),
            ),
        )
        .await
        .unwrap();

    // A pod held by a scheduling gate nobody removes.
    let gated = create_json(
        &pods,
        json!({
            "metadata": { "name": "gated" },
            "spec": { "schedulingGates": [{ "name": "nanny.test/hold" }],
                      "containers": [{ "name": "app", "image": "registry.example/gated:1" }] },
        }),
    )
    .await;
    // A CronJob for 30 February.
    let never = create_json(
        &cron_jobs,
        json!({
            "metadata": { "name": "never" },
            "spec": { "schedule": "0 0 30 2 *",
                      "jobTemplate": { "spec": { "template": { "spec": {
                          "restartPolicy": "Never",
                          "containers": [{ "name": "job", "image": "registry.example/job:1" }] } } } } },
        }),
    )
    .await;
    // A StatefulSet whose one pod cannot be scheduled.
    let stateful = create_json(
        &Api::<StatefulSet>::namespaced(client.clone(), &ns),
        json!({
            "metadata": { "name": "stateful" },
            "spec": { "serviceName": "stateful", "replicas": 1,
                      "selector": { "matchLabels": { "app": "stateful" } },
                      "template": { "metadata": { "labels": { "app": "stateful" } }, "spec": {
                          "nodeSelector": { "nanny.ai/no-such-node": "true" },
                          "containers": [{ "name": "db", "image": "registry.example/db:1" }] } } },
        }),
    )
    .await;
    // A DaemonSet for the node no kubelet serves: its pod never runs.
    let agent = create_json(
        &Api::<DaemonSet>::namespaced(client.clone(), &ns),
        json!({
            "metadata": { "name": "agent" },
            "spec": { "selector": { "matchLabels": { "app": "agent" } },
                      "template": { "metadata": { "labels": { "app": "agent" } }, "spec": {
                          "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                              "nodeSelectorTerms": [{ "matchFields": [
                                  { "key": "metadata.name", "operator": "In", "values": [gone.name] }] }] } } },
                          "tolerations": [{ "operator": "Exists" }],
                          "containers": [{ "name": "agent", "image": "registry.example/agent:1" }] } } },
        }),
    )
    .await;
    // A container that exited 1 and runs again, three restarts in: what a
    // kubelet writes before its back-off starts.
    let restarting = create_json(
        &pods,
        json!({
            "metadata": { "name": "restarting" },
            "spec": { "nodeName": gone.name,
                      "containers": [{ "name": "app", "image": "registry.example/app:1" }] },
        }),
    )
    .await;
    // Exited 1 two minutes ago, running again since: no crash loop.
    let now = k8s_openapi::jiff::Timestamp::now();
    let ago = |secs: i64| (now - k8s_openapi::jiff::SignedDuration::from_secs(secs)).to_string();
    pods.patch_status(
        "restarting",
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": {
            "phase": "Running",
            "containerStatuses": [{
                "name": "app", "image": "registry.example/app:1", "imageID": "",
                "ready": true, "started": true, "restartCount": 3,
                "state": { "running": { "startedAt": ago(115) } },
                "lastState": { "terminated": {
                    "exitCode": 1, "reason": "Error", "startedAt": ago(600), "finishedAt": ago(120) } },
            }],
        } })),
    )
    .await
    .unwrap();

    // A Service with a typo in its selector, and one over the Deployment
    // whose pod cannot be scheduled.
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let typo = create_json(
        &services,
        json!({ "metadata": { "name": "typo" },
                "spec": { "selector": { "app": "guardedd" }, "ports": [{ "port": 80 }] } }),
    )
    .await;
    let unserved = create_json(
        &services,
        json!({ "metadata": { "name": "unserved" },
                "spec": { "selector": { "app": "nowhere" }, "ports": [{ "port": 80 }] } }),
    )
    .await;

    // A NetworkPolicy whose selector has a typo.
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    let fenced = create_json(
        &policies,
        json!({ "metadata": { "name": "fenced" },
                "spec": { "podSelector": { "matchLabels": { "app": "guardedd" } },
                          "policyTypes": ["Ingress"] } }),
    )
    .await;
    // An Ingress to a missing Service, of a missing class.
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &ns);
    let front = create_json(
        &ingresses,
        json!({ "metadata": { "name": "front" },
                "spec": { "ingressClassName": format!("{ns}-no-such-class"),
                          "tls": [{ "hosts": ["shop.example"], "secretName": "front-tls" }],
                          "rules": [{ "host": "shop.example", "http": { "paths": [
                              { "path": "/", "pathType": "Prefix",
                                "backend": { "service": { "name": "unserved", "port": { "number": 80 } } } },
                              { "path": "/api", "pathType": "Prefix",
                                "backend": { "service": { "name": "no-such-api", "port": { "number": 80 } } } },
                          ] } }] } }),
    )
    .await;
    // The Ingress's certificate, five days from expiry.
    let front_tls = faults::tls_secret(&client, &ns, "front-tls", "shop.example", 5)
        .await
        .unwrap();
    // A volume released, and one whose reclamation fails.
    let _released_cleanup =
        DeleteOnDrop::new(&fx_cluster, "persistentvolume", &format!("{ns}-released"));
    let _failed_cleanup =
        DeleteOnDrop::new(&fx_cluster, "persistentvolume", &format!("{ns}-reclaimed"));
    let released = unclaimed_volume(&client, &ns, &claims, "released", "Retain", "Released").await;
    let failed = unclaimed_volume(&client, &ns, &claims, "reclaimed", "Delete", "Failed").await;
    // An HPA the controller cannot feed (no metrics API), and one whose
    // target's container requests no cpu.
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
    let metered = PodSpec {
        cpu_request: Some("100m".to_owned()),
        ..PodSpec::default()
    };
    let blind = faults::hpa_on_cpu(&client, &ns, "blind", &metered, true)
        .await
        .unwrap();
    let unmetered = faults::hpa_on_cpu(&client, &ns, "unmetered", &PodSpec::default(), false)
        .await
        .unwrap();
    // A webhook calling a Service that does not exist.
    let hooks: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let hook_name = format!("{ns}-hooks");
    let _hook_cleanup =
        DeleteOnDrop::new(&fx_cluster, "validatingwebhookconfiguration", &hook_name);
    let hook = create_json(
        &hooks,
        json!({
            "metadata": { "name": hook_name },
            "webhooks": [{
                "name": "check.nanny.test",
                "clientConfig": { "service": { "namespace": ns, "name": "no-such-webhook" } },
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "namespaceSelector": { "matchLabels": { "nanny.test/never": "true" } },
                "rules": [{ "apiGroups": [""], "apiVersions": ["v1"],
                            "operations": ["CREATE"], "resources": ["configmaps"] }],
            }],
        }),
    )
    .await;

    reported(
        &h,
        &pending.uid().unwrap(),
        "PVC_PENDING",
        &[
            &format!("PersistentVolumeClaim {ns}/pending has been Pending"),
            "ProvisioningFailed",
            "storageclass.storage.k8s.io \"no-such-class\" not found",
            "check that StorageClass no-such-class exists",
        ],
    )
    .await;
    reported(
        &h,
        &lost.uid().unwrap(),
        "PVC_LOST",
        &[&format!(
            "PersistentVolumeClaim {ns}/lost is Lost: its PersistentVolume {volume} is gone"
        )],
    )
    .await;
    reported(
        &h,
        &held.uid().unwrap(),
        "NAMESPACE_STUCK_TERMINATING",
        &[
            &format!("Namespace {held_ns} has been terminating"),
            "The namespace controller says",
            "nanny.test/block",
        ],
    )
    .await;
    reported(
        &h,
        &stuck.uid().unwrap(),
        "POD_STUCK_TERMINATING",
        &[
            &format!("Pod {ns}/stuck is still there"),
            "finalizer nanny.test/block is still set",
        ],
    )
    .await;
    reported(
        &h,
        &nowhere.uid().unwrap(),
        "DEPLOYMENT_UNAVAILABLE",
        &[
            &format!("Deployment {ns}/nowhere has 0 of 1 replicas available"),
            "1 pod Pending",
        ],
    )
    .await;
    reported(
        &h,
        &strict.uid().unwrap(),
        "PDB_BLOCKING_DISRUPTIONS",
        &[
            &format!(
                "PodDisruptionBudget {ns}/strict allows no disruption even with every pod healthy"
            ),
            "minAvailable 100%; 2 of 2 pods healthy",
        ],
    )
    .await;

    reported(
        &h,
        &refused.uid().unwrap(),
        "REPLICA_FAILURE",
        &[
            &format!("Deployment {ns}/unaccounted cannot create its pods (FailedCreate)"),
            "The ReplicaSet controller says",
            "serviceaccount \"missing-sa\" not found",
        ],
    )
    .await;
    reported(
        &h,
        &gated.uid().unwrap(),
        "SCHEDULING_GATED",
        &[&format!(
            "Pod {ns}/gated is not scheduled: it waits for its scheduling gates (nanny.test/hold) to be removed"
        )],
    )
    .await;
    reported(
        &h,
        &never.uid().unwrap(),
        "CRONJOB_INVALID_SCHEDULE",
        &[&format!(
            "CronJob {ns}/never never runs: its schedule \"0 0 30 2 *\" names no time that exists"
        )],
    )
    .await;
    reported(
        &h,
        &stateful.uid().unwrap(),
        "STATEFULSET_NOT_PROGRESSING",
        &[
            &format!("StatefulSet {ns}/stateful has 0 of 1 pods ready"),
            "1 pod Pending",
        ],
    )
    .await;
    reported(
        &h,
        &stateful.uid().unwrap(),
        "STATEFULSET_SERVICE_MISSING",
        &[
            &format!(
                "StatefulSet {ns}/stateful names governing Service stateful, which does not exist in {ns}"
            ),
            "Create a headless Service stateful (clusterIP: None) selecting its pods (app=stateful)",
        ],
    )
    .await;
    reported(
        &h,
        &typo.uid().unwrap(),
        "SERVICE_SELECTS_NOTHING",
        &[
            &format!("Service {ns}/typo selects no pod"),
            &format!("no pod or pod template in {ns} carries app=guardedd"),
            &format!("The nearest pod templates in {ns}: Deployment guarded (app=guarded);"),
        ],
    )
    .await;
    reported(
        &h,
        &unserved.uid().unwrap(),
        "SERVICE_NO_READY_ENDPOINTS",
        &[
            &format!("Service {ns}/unserved has had no ready endpoint"),
            "its selector app=nowhere matches 1 pod and none is Ready",
            "Its pods: 1 pod Pending.",
        ],
    )
    .await;
    reported(
        &h,
        &released.uid().unwrap(),
        "PV_RELEASED",
        &[
            &format!("PersistentVolume {ns}-released has been Released for"),
            &format!("its claim {ns}/released is gone, its data is kept (reclaim policy Retain)"),
            &format!("kubectl patch pv {ns}-released -p"),
        ],
    )
    .await;
    reported(
        &h,
        &failed.uid().unwrap(),
        "PV_FAILED",
        &[
            &format!("PersistentVolume {ns}-reclaimed failed"),
            "(reclaim policy Delete) did not work",
            "The PV controller says",
        ],
    )
    .await;
    reported(
        &h,
        &front_tls.uid().unwrap(),
        "TLS_CERTIFICATE_EXPIRING",
        &[
            &format!("The certificate in Secret {ns}/front-tls (for shop.example, issued by Nanny Test CA) expires at "),
            &format!("Ingress {ns}/front serves it."),
            &format!("kubectl create secret tls front-tls --cert=FILE --key=FILE -n {ns}"),
        ],
    )
    .await;
    reported(
        &h,
        &blind.uid().unwrap(),
        "HPA_UNABLE_TO_SCALE",
        &[
            &format!(
                "HorizontalPodAutoscaler {ns}/blind has been unable to scale Deployment {ns}/blind"
            ),
            "ScalingActive=False (FailedGetResourceMetric)",
            "The HPA controller says \"the HPA was unable to compute the replica count",
            "kubectl get apiservice v1beta1.metrics.k8s.io",
        ],
    )
    .await;
    reported(
        &h,
        &unmetered.uid().unwrap(),
        "HPA_TARGET_WITHOUT_REQUESTS",
        &[
            &format!("HorizontalPodAutoscaler {ns}/unmetered scales Deployment {ns}/unmetered on cpu utilization (target 60%), but its pods' containers app request no cpu"),
            "Set resources.requests.cpu on every container of the pod template",
        ],
    )
    .await;
    reported(
        &h,
        &front.uid().unwrap(),
        "INGRESS_MISCONFIGURED",
        &[
            &format!(
                "Ingress {ns}/front sends traffic to Services that do not exist in {ns} (no-such-api)"
            ),
            &format!("names IngressClass {ns}-no-such-class, which does not exist"),
            "Its TLS Secrets (front-tls) are not checked",
        ],
    )
    .await;
    reported(
        &h,
        &fenced.uid().unwrap(),
        "NETWORK_POLICY_SELECTS_NOTHING",
        &[
            &format!("NetworkPolicy {ns}/fenced selects no pod"),
            &format!("no pod or pod template in {ns} matches app=guardedd"),
            &format!("The nearest pod templates in {ns}: Deployment guarded (app=guarded);"),
        ],
    )
    .await;
    reported(
        &h,
        &hook.uid().unwrap(),
        "WEBHOOK_NO_ENDPOINTS",
        &[
            &format!(
                "ValidatingWebhookConfiguration {hook_name}: webhook check.nanny.test calls Service {ns}/no-such-webhook, which does not exist."
            ),
            "With failurePolicy Ignore the API server lets every request it covers through unchecked",
        ],
    )
    .await;
    let unchanged = hooks.get(&hook_name).await.unwrap();
    assert_eq!(
        unchanged.metadata.resource_version,
        hook.metadata.resource_version
    );
    hooks
        .delete(&hook_name, &DeleteParams::default())
        .await
        .unwrap();
    reported(
        &h,
        &agent.uid().unwrap(),
        "DAEMONSET_UNAVAILABLE",
        &[&format!("DaemonSet {ns}/agent has 0 of 1 pods available")],
    )
    .await;
    reported(
        &h,
        &restarting.uid().unwrap(),
        "CONTAINER_RESTARTING",
        &[
            "container app restarted 3 times, last exit code 1 (Error)",
            &format!("kubectl logs restarting -n {ns} -c NAME --previous"),
        ],
    )
    .await;
    // The sick node: its cordon waits for a human.
    let cordon = h.wait_phase(&sick_uid, Phase::PendingApproval).await;
    assert_eq!(cordon.spec.action.type_, ActionType::CordonNode);
    assert!(
        ["NetworkUnavailable", "KernelDeadlock"]
            .iter()
            .any(|c| cordon.spec.reasoning.contains(&format!("reports {c}"))),
        "{}",
        cordon.spec.reasoning
    );
    println!(
        "NODE_PROBLEM: {} → CordonNode, awaiting a human",
        cordon.spec.reasoning
    );
    // Approved and done, the node recovers: Nanny lifts its own cordon,
    // automatically.
    h.approve(&cordon).await;
    h.wait_phase(&sick_uid, Phase::Succeeded).await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let claimed = nodes.get(&sick.name).await.unwrap();
    assert_eq!(
        claimed.annotations().get("nanny.ai/cordoned-by"),
        Some(&cordon.metadata.name.clone().unwrap()),
        "the cordon names its action"
    );
    recover(&client, &sick.name).await;
    let lifted = eventually("Nanny's cordon lifted", WAIT, || async {
        Ok(h.actions_on(&sick_uid).await.into_iter().find(|a| {
            a.spec.action.type_ == ActionType::UncordonNode
                && a.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded)
        }))
    })
    .await;
    let lifted = match lifted {
        Ok(action) => action,
        Err(error) => panic!("{error}\n{}", h.actions_seen().await),
    };
    assert!(lifted.spec.approval.is_none(), "auto-approved: {lifted:?}");
    let node = nodes.get(&sick.name).await.unwrap();
    assert_eq!(node.spec.and_then(|s| s.unschedulable), None);
    assert_eq!(
        node.metadata
            .annotations
            .and_then(|a| a.get("nanny.ai/cordoned-by").cloned()),
        None
    );
    println!(
        "NODE_CORDONED: {} → UncordonNode, automatic",
        lifted.spec.reasoning
    );

    // The evicted pods deleted, automatically, through the Deployment.
    let deleted = h
        .wait_phase(&evicting.uid().unwrap(), Phase::Succeeded)
        .await;
    assert_eq!(deleted.spec.action.type_, ActionType::DeleteFailedPods);
    assert_eq!(deleted.spec.issue_kind.as_deref(), Some("EVICTED"));
    let left: Vec<String> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|p| p.uid())
        .collect();
    for uid in &evicted {
        assert!(!left.contains(uid), "evicted pod {uid} still there");
    }
    assert!(
        faults::failed_pods_of(&client, &ns, "evicting")
            .await
            .unwrap()
            .is_empty()
    );
    println!(
        "EVICTED: {} → DeleteFailedPods, {:?}",
        deleted.spec.reasoning,
        deleted
            .status
            .and_then(|s| s.result)
            .map(|r| r.verification)
    );

    // The tight budget: one more replica once a human approves, and the
    // budget then allows a disruption.
    let scaled = h
        .approve_and_wait(&budgeted.uid().unwrap(), ActionType::ScaleWorkload)
        .await;
    assert_eq!(scaled.spec.action.params.replicas, Some(nanny_crd::Int(3)));
    assert_eq!(
        deployments
            .get("budgeted")
            .await
            .unwrap()
            .spec
            .and_then(|s| s.replicas),
        Some(3)
    );
    eventually("the budget allows a disruption", WAIT, || async {
        let budget = budgets.get("budgeted").await?;
        Ok((budget.status.map_or(0, |s| s.disruptions_allowed) == 1).then_some(()))
    })
    .await
    .unwrap();
    println!(
        "PDB_BLOCKING_DISRUPTIONS: {} → ScaleWorkload 3, approved",
        scaled.spec.reasoning
    );

    // The stuck rollout: rolled back to revision 1 once a human approves.
    let undone = h
        .approve_and_wait(&rolling.uid().unwrap(), ActionType::RolloutUndo)
        .await;
    assert_eq!(undone.spec.issue_kind.as_deref(), Some("ROLLOUT_STUCK"));
    assert!(
        undone.spec.reasoning.contains(&format!(
            "Deployment {ns}/rolling is stuck rolling out revision 2"
        )),
        "{}",
        undone.spec.reasoning
    );
    let template = deployments
        .get("rolling")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    assert_eq!(template.node_selector, None, "revision 1's template again");
    nanny_test_util::scenarios::running_pods(&client, &ns, "rolling", 1, WAIT)
        .await
        .unwrap();
    println!(
        "ROLLOUT_STUCK: {} → RolloutUndo, approved",
        undone.spec.reasoning
    );

    // The failed Job: run again once a human approves, now that its node is
    // there; the failed Job stays.
    let nightly = faults::job_reaches(&client, &ns, "nightly", "Failed")
        .await
        .unwrap();
    let _batch = FakeNode::create(&fx_cluster, &client, &batch_node)
        .await
        .unwrap();
    faults::job_reaches(&client, &ns, "waiting", "Complete")
        .await
        .unwrap();
    let retried = h
        .approve_and_wait(&nightly.uid().unwrap(), ActionType::RetriggerJob)
        .await;
    assert!(
        retried
            .spec
            .reasoning
            .contains(&format!("Job {ns}/nightly failed (DeadlineExceeded")),
        "{}",
        retried.spec.reasoning
    );
    let retry = faults::job_reaches(&client, &ns, "nightly-retry", "Complete")
        .await
        .unwrap();
    assert_eq!(
        retry
            .labels()
            .get(nanny_proto::vocabulary::RETRIGGER_OF)
            .map(String::as_str),
        Some("nightly")
    );
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &ns);
    assert_eq!(jobs.get("nightly").await.unwrap().uid(), nightly.uid());
    println!(
        "JOB_FAILED: {} → RetriggerJob, approved",
        retried.spec.reasoning
    );

    // The paused CronJob: resumed once a human approves.
    let resumed = h
        .approve_and_wait(&paused.uid().unwrap(), ActionType::ResumeCronJob)
        .await;
    assert_eq!(
        cron_jobs
            .get("paused")
            .await
            .unwrap()
            .spec
            .and_then(|s| s.suspend),
        Some(false)
    );
    println!(
        "CRONJOB_SUSPENDED: {} → ResumeCronJob, approved",
        resumed.spec.reasoning
    );

    // The orphan: a force delete waits for a human, then it is gone.
    let forced = h
        .approve_and_wait(&orphan.uid().unwrap(), ActionType::ForceDeletePod)
        .await;
    assert!(
        forced
            .spec
            .reasoning
            .contains(&format!("its node {} is not ready", gone.name))
            || forced
                .spec
                .reasoning
                .contains(&format!("its node {} is gone", gone.name)),
        "{}",
        forced.spec.reasoning
    );
    assert!(pods.get_opt("orphan").await.unwrap().is_none());
    println!(
        "POD_STUCK_TERMINATING: {} → ForceDeletePod, approved",
        forced.spec.reasoning
    );

    // Nothing was changed: the API server still holds every object as the
    // faults left it.
    let pod = pods.get("stuck").await.unwrap();
    assert!(pod.metadata.deletion_timestamp.is_some());
    assert_eq!(pod.finalizers(), ["nanny.test/block"]);
    let ns_now = namespaces.get(&held_ns).await.unwrap();
    assert_eq!(
        ns_now.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    for (name, generation) in [
        ("nowhere", nowhere.metadata.generation),
        ("guarded", guarded.metadata.generation),
    ] {
        assert_eq!(
            deployments.get(name).await.unwrap().metadata.generation,
            generation,
            "{name} unchanged"
        );
    }
    assert_eq!(
        budgets.get("strict").await.unwrap().metadata.generation,
        strict.metadata.generation
    );
    assert_eq!(
        policies
            .get("fenced")
            .await
            .unwrap()
            .metadata
            .resource_version,
        fenced.metadata.resource_version
    );
    for hpa in [&blind, &unmetered] {
        let name = hpa.metadata.name.as_deref().unwrap();
        assert_eq!(
            hpas.get(name).await.unwrap().metadata.resource_version,
            hpa.metadata.resource_version,
            "{name} unchanged"
        );
    }
    let front_now = ingresses.get("front").await.unwrap();
    assert_eq!(
        front_now.metadata.resource_version,
        front.metadata.resource_version
    );
    for service in [&typo, &unserved] {
        let name = service.metadata.name.as_deref().unwrap();
        assert_eq!(
            services.get(name).await.unwrap().metadata.resource_version,
            service.metadata.resource_version,
            "{name} unchanged"
        );
    }

    // Let the held objects go.
    clear_finalizers(&pods, "stuck").await;
    clear_finalizers(&held_maps, "held").await;
    eventually("the held namespace gone", WAIT, || async {
        Ok(namespaces.get_opt(&held_ns).await?.is_none().then_some(()))
    })
    .await
    .unwrap();
}
