//! The API server refuses the remediator's identity on protected resources
//! (deploy/admission/protected-resources.yaml) and on what protected owners
//! own (deploy/admission/protected-owners.yaml), while its RBAC allows the
//! write; and it keeps HealingActions to what the coordinator recorded and a
//! human decided under their own name (deploy/admission/healing-actions.yaml
//! and the CRD's own rules).

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::Deployment,
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::Job,
    core::v1::{Node, PersistentVolumeClaim, Pod},
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, EvictParams, Patch, PatchParams, PostParams},
};
use nanny_cluster_tests::{Fixture, install_admission_policy};
use nanny_crd::HealingAction;
use nanny_test_util::{
    cluster::eventually,
    faults::{self, PodSpec},
    nodes::FakeNode,
    owners,
    scenarios::running_pods,
};
use serde_json::json;

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

/// A client acting as `<ns>:nanny-remediator`, allowed by RBAC to patch
/// Deployments, Nodes, claims and HPAs anywhere, and to evict and delete
/// pods and delete Jobs.
async fn remediator_identity(fx: &Fixture) -> Client {
    let ns = fx.ns();
    let name = format!("{ns}-remediator");
    Api::<ClusterRole>::all(fx.client.clone())
        .create(
            &PostParams::default(),
            &object(json!({
                "metadata": { "name": name, "labels": { "nanny.ai/test": "true" } },
                "rules": [
                    { "apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"] },
                    { "apiGroups": [""], "resources": ["nodes", "persistentvolumeclaims"], "verbs": ["get", "patch"] },
                    { "apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"] },
                    { "apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"] },
                    { "apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "delete"] },
                    { "apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["get", "patch"] },
                ],
            })),
        )
        .await
        .unwrap();
    Api::<ClusterRoleBinding>::all(fx.client.clone())
        .create(
            &PostParams::default(),
            &object(json!({
                "metadata": { "name": name, "labels": { "nanny.ai/test": "true" } },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name },
                "subjects": [{ "kind": "ServiceAccount", "name": "nanny-remediator", "namespace": ns }],
            })),
        )
        .await
        .unwrap();
    fx.service_account_client("nanny-remediator").await
}

async fn restart_annotation(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Deployment, kube::Error> {
    let patch = json!({ "spec": { "template": { "metadata": { "annotations": { "nanny.ai/restartedAt": "now" } } } } });
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

fn assert_refused_by_policy(result: Result<Deployment, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert!(
                status.message.contains("nanny-protected-resources"),
                "{what}: {status:?}"
            );
        }
        other => panic!("{what}: expected the admission policy to refuse, got {other:?}"),
    }
}

#[tokio::test]
async fn remediator_identity_cannot_touch_protected_resources() {
    let Some(fx) = Fixture::new("admission").await else {
        return;
    };
    install_admission_policy(&fx.client, "protected-resources.yaml", None).await;
    let remediator = remediator_identity(&fx).await;

    let system_name = format!("{}-victim", fx.ns());
    faults::deployment(
        &fx.client,
        "kube-system",
        &system_name,
        0,
        &PodSpec::default(),
    )
    .await
    .unwrap();
    faults::deployment(&fx.client, fx.ns(), "plain", 0, &PodSpec::default())
        .await
        .unwrap();
    faults::deployment(&fx.client, fx.ns(), "guarded", 0, &PodSpec::default())
        .await
        .unwrap();
    let label = json!({ "metadata": { "labels": { "nanny.ai/protected": "true" } } });
    Api::<Deployment>::namespaced(fx.client.clone(), fx.ns())
        .patch("guarded", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();

    // RBAC allows the write, and the policy lets unprotected objects through
    // (waiting until RBAC and the policy are both in effect).
    eventually("RBAC effective", Duration::from_secs(20), || async {
        Ok(restart_annotation(&remediator, fx.ns(), "plain").await.ok())
    })
    .await
    .unwrap();
    let refused = eventually(
        "policy effective in kube-system",
        Duration::from_secs(30),
        || async {
            Ok(
                match restart_annotation(&remediator, "kube-system", &system_name).await {
                    Err(kube::Error::Api(status))
                        if status.message.contains("nanny-protected-resources") =>
                    {
                        Some(status)
                    }
                    _ => None,
                },
            )
        },
    )
    .await
    .unwrap();
    assert_eq!(refused.code, 403, "{refused:?}");

    assert_refused_by_policy(
        restart_annotation(&remediator, fx.ns(), "guarded").await,
        "protected label",
    );
    // Removing the label in the same write does not get around it.
    let unlabel = json!({ "metadata": { "labels": { "nanny.ai/protected": null } } });
    let result = Api::<Deployment>::namespaced(remediator.clone(), fx.ns())
        .patch("guarded", &PatchParams::default(), &Patch::Merge(&unlabel))
        .await;
    assert_refused_by_policy(result, "label removal");
    // The admin is not affected.
    restart_annotation(&fx.client, "kube-system", &system_name)
        .await
        .unwrap();
    // Cluster-scoped writes have no namespace; the policy lets an
    // unprotected one (a cordon) through rather than failing closed on it.
    let node = FakeNode::create(&fx.cluster, &fx.client, &format!("{}-n1", fx.ns()))
        .await
        .unwrap();
    let cordon = json!({ "spec": { "unschedulable": true } });
    Api::<Node>::all(remediator.clone())
        .patch(&node.name, &PatchParams::default(), &Patch::Merge(&cordon))
        .await
        .unwrap();

    let cleanup = DeleteParams::default();
    let _ = Api::<Deployment>::namespaced(fx.client.clone(), "kube-system")
        .delete(&system_name, &cleanup)
        .await;
    let name = format!("{}-remediator", fx.ns());
    let _ = Api::<ClusterRoleBinding>::all(fx.client.clone())
        .delete(&name, &cleanup)
        .await;
    let _ = Api::<ClusterRole>::all(fx.client.clone())
        .delete(&name, &cleanup)
        .await;
}

/// Whether `result` is the API server's refusal by `policy`.
fn refused_by<T: std::fmt::Debug>(result: &Result<T, kube::Error>, policy: &str) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 403 && status.message.contains(policy))
}

#[tokio::test]
async fn remediator_identity_cannot_touch_what_protected_owners_own() {
    let Some(fx) = Fixture::new("admission-owners").await else {
        return;
    };
    install_admission_policy(&fx.client, "protected-owners.yaml", None).await;
    let remediator = remediator_identity(&fx).await;
    let (client, ns) = (fx.client.clone(), fx.ns().to_owned());

    // Charts label the top object only: none of the children below carries
    // a protected label of its own.
    for name in ["charted", "plain"] {
        faults::deployment(&client, &ns, name, 1, &PodSpec::default())
            .await
            .unwrap();
    }
    owners::label_helm(&client, &ns, "charted").await.unwrap();
    owners::cron_job(&client, &ns, "nightly", &[owners::HELM])
        .await
        .unwrap();
    owners::stateful_set(&client, &ns, "db", "data", &[owners::HELM])
        .await
        .unwrap();
    for job in ["nightly-29000000", "adhoc-1"] {
        faults::completed_job(&client, &ns, job, Duration::from_secs(3600))
            .await
            .unwrap();
    }
    for claim in ["data-db-0", "scratch"] {
        faults::pvc_nearly_full(&client, &ns, claim, 1 << 30, 1 << 29)
            .await
            .unwrap();
    }
    let hpa = json!({ "metadata": { "name": "charted" }, "spec": {
        "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "charted" },
        "minReplicas": 1, "maxReplicas": 3 } });
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
    hpas.create(&PostParams::default(), &object(hpa))
        .await
        .unwrap();
    let charted = running_pods(&client, &ns, "charted", 1, Duration::from_secs(60))
        .await
        .unwrap()[0]
        .clone();
    let plain = running_pods(&client, &ns, "plain", 1, Duration::from_secs(60))
        .await
        .unwrap()[0]
        .clone();

    let pods: Api<Pod> = Api::namespaced(remediator.clone(), &ns);
    let evict = |name: String, dry_run: bool| {
        let pods = pods.clone();
        async move {
            let params = EvictParams {
                delete_options: Some(DeleteParams {
                    dry_run,
                    ..DeleteParams::default()
                }),
                post_options: PostParams {
                    dry_run,
                    ..PostParams::default()
                },
            };
            pods.evict(&name, &params).await
        }
    };
    // The policy in effect once the API server's parameter cache has seen
    // the owner's label (dry runs pass admission too, and change nothing:
    // an eviction let through before would take the pod); then the
    // protected Deployment's pod is refused a real eviction.
    eventually(
        "the owners policy in effect",
        Duration::from_secs(30),
        || async {
            let result = evict(charted.name_any(), true).await;
            Ok(refused_by(&result, "nanny-protected-deployments").then_some(()))
        },
    )
    .await
    .unwrap();
    let result = evict(charted.name_any(), false).await;
    assert!(
        refused_by(&result, "nanny-protected-deployments"),
        "{result:?}"
    );
    let result = pods
        .delete(&charted.name_any(), &DeleteParams::default())
        .await;
    assert!(
        refused_by(&result, "nanny-protected-deployments"),
        "{result:?}"
    );
    // An unprotected owner's pod may go (dry run: nothing changes).
    evict(plain.name_any(), true).await.unwrap();

    let jobs: Api<Job> = Api::namespaced(remediator.clone(), &ns);
    let result = jobs
        .delete("nightly-29000000", &DeleteParams::default())
        .await;
    assert!(
        refused_by(&result, "nanny-protected-cronjobs"),
        "{result:?}"
    );
    jobs.delete(
        "adhoc-1",
        &DeleteParams {
            dry_run: true,
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();

    let grow = json!({ "spec": { "resources": { "requests": { "storage": "2Gi" } } } });
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(remediator.clone(), &ns);
    let result = claims
        .patch("data-db-0", &PatchParams::default(), &Patch::Merge(&grow))
        .await;
    assert!(
        refused_by(&result, "nanny-protected-statefulsets"),
        "{result:?}"
    );
    claims
        .patch(
            "scratch",
            &PatchParams::default().dry_run(),
            &Patch::Merge(&grow),
        )
        .await
        .unwrap();

    let raise = json!({ "spec": { "maxReplicas": 6 } });
    let result = Api::<HorizontalPodAutoscaler>::namespaced(remediator.clone(), &ns)
        .patch("charted", &PatchParams::default(), &Patch::Merge(&raise))
        .await;
    assert!(
        refused_by(&result, "nanny-protected-deployments"),
        "{result:?}"
    );

    // The API server's own evidence: every protected child is as it was.
    let still = Api::<Pod>::namespaced(client.clone(), &ns)
        .get(&charted.name_any())
        .await
        .unwrap();
    assert_eq!(still.uid(), charted.uid());
    assert!(still.metadata.deletion_timestamp.is_none());
    assert!(
        Api::<Job>::namespaced(client.clone(), &ns)
            .get_opt("nightly-29000000")
            .await
            .unwrap()
            .is_some()
    );
    let size = faults::claim_request(&client, &ns, "data-db-0")
        .await
        .unwrap();
    assert_eq!(size, (1_i64 << 30).to_string());
    assert_eq!(
        hpas.get("charted")
            .await
            .unwrap()
            .spec
            .unwrap()
            .max_replicas,
        3
    );

    let cleanup = DeleteParams::default();
    let name = format!("{ns}-remediator");
    let _ = Api::<ClusterRoleBinding>::all(client.clone())
        .delete(&name, &cleanup)
        .await;
    let _ = Api::<ClusterRole>::all(client.clone())
        .delete(&name, &cleanup)
        .await;
}

/// A HealingAction as the coordinator writes it, under `policy_ref`.
fn healing_action(name: &str, policy_ref: &str) -> HealingAction {
    object(json!({
        "apiVersion": "nanny.ai/v1alpha1",
        "kind": "HealingAction",
        "metadata": { "name": name },
        "spec": {
            "policyRef": policy_ref,
            "target": { "kind": "Deployment", "namespace": "shop", "name": "web", "uid": "uid-web" },
            "action": { "type": "ScaleHpa", "params": { "maxReplicas": "6" } },
            "source": { "kind": "Rule", "name": "hpa-raise-max" },
            "confidence": 100,
            "reasoning": "pinned at max",
            "recommendationId": format!("rec-{name}"),
            "snapshotId": "snap-1",
        },
    }))
}

fn refused(result: Result<HealingAction, kube::Error>, says: &str, what: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert!(
                status.code == 403 || status.code == 422,
                "{what}: {status:?}"
            );
            assert!(status.message.contains(says), "{what}: {}", status.message);
        }
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn healing_actions_are_written_by_the_coordinator_and_approved_under_a_real_name() {
    let Some(fx) = Fixture::new("admission-ha").await else {
        return;
    };
    let ns = fx.ns().to_owned();
    nanny_test_util::cluster::install_crds(&fx.client)
        .await
        .unwrap();
    // Both may write HealingActions as far as RBAC goes: the policy and the
    // CRD make the difference.
    Api::<Role>::namespaced(fx.client.clone(), &ns)
        .create(
            &PostParams::default(),
            &object(json!({
                "metadata": { "name": "healing-actions" },
                "rules": [{ "apiGroups": ["nanny.ai"], "resources": ["healingactions"],
                            "verbs": ["get", "list", "create", "update", "patch"] }],
            })),
        )
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(fx.client.clone(), &ns)
        .create(
            &PostParams::default(),
            &object(json!({
                "metadata": { "name": "healing-actions" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "healing-actions" },
                "subjects": [
                    { "kind": "ServiceAccount", "name": "nanny-coordinator", "namespace": ns },
                    { "kind": "ServiceAccount", "name": "alice", "namespace": ns },
                ],
            })),
        )
        .await
        .unwrap();
    install_admission_policy(&fx.client, "healing-actions.yaml", Some(&ns)).await;
    let coordinator = fx.service_account_client("nanny-coordinator").await;
    let alice = fx.service_account_client("alice").await;
    let alice_name = format!("system:serviceaccount:{ns}:alice");
    let as_alice: Api<HealingAction> = Api::namespaced(alice.clone(), &ns);
    let as_coordinator: Api<HealingAction> = Api::namespaced(coordinator.clone(), &ns);
    let as_admin: Api<HealingAction> = Api::namespaced(fx.client.clone(), &ns);
    let policy_ref = format!("{ns}/default");
    let create = PostParams::default();

    // Forged: anyone but the coordinator creating one. The policy takes a
    // moment to apply: a dry run (which runs admission) waits for it.
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually("the policy in effect", Duration::from_secs(30), || async {
        Ok(
            match as_alice
                .create(&dry, &healing_action("probe", &policy_ref))
                .await
            {
                Err(kube::Error::Api(s)) if s.message.contains("only the Nanny coordinator") => {
                    Some(())
                }
                Ok(_) | Err(_) => None,
            },
        )
    })
    .await
    .unwrap();
    refused(
        as_alice
            .create(&create, &healing_action("forged", &policy_ref))
            .await,
        "only the Nanny coordinator creates HealingActions",
        "a HealingAction created by someone else",
    );
    // Another namespace's policy, even from the coordinator.
    refused(
        as_coordinator
            .create(&create, &healing_action("elsewhere", "kube-system/default"))
            .await,
        "lives in its HealingPolicy's namespace",
        "a policy of another namespace",
    );
    let created = as_coordinator
        .create(&create, &healing_action("scale-web", &policy_ref))
        .await
        .unwrap();
    let version = created.metadata.resource_version.clone();

    // The spec is fixed once recorded, whoever asks: a new target, action
    // or source is refused by the CRD itself.
    let merge = |patch: serde_json::Value| Patch::Merge(patch);
    for (what, patch) in [
        (
            "another target",
            json!({ "spec": { "target": { "name": "db", "uid": "uid-db" } } }),
        ),
        (
            "other parameters",
            json!({ "spec": { "action": { "params": { "maxReplicas": "2147483647" } } } }),
        ),
        (
            "a rule's name",
            json!({ "spec": { "source": { "kind": "Rule", "name": "trusted" }, "confidence": 100 } }),
        ),
        (
            "added evidence",
            json!({ "spec": { "workloadUid": "uid-other" } }),
        ),
    ] {
        for api in [&as_alice, &as_admin] {
            refused(
                api.patch("scale-web", &PatchParams::default(), &merge(patch.clone()))
                    .await,
                "immutable after creation",
                what,
            );
        }
    }
    // An approval in someone else's name, or a look-alike of one's own.
    let approval = |by: &str, decision: &str| json!({ "spec": { "approval": { "decision": decision, "by": by, "at": "2026-12-02T10:00:00Z" } } });
    let lookalike = alice_name.replace("alice", "\u{0430}lice");
    for by in [
        "admin",
        "system:serviceaccount:kube-system:nanny-coordinator",
        lookalike.as_str(),
        " ",
    ] {
        refused(
            as_alice
                .patch(
                    "scale-web",
                    &PatchParams::default(),
                    &merge(approval(by, "Approve")),
                )
                .await,
            "spec.approval.by must be who decides",
            by,
        );
    }
    assert_eq!(
        as_admin
            .get("scale-web")
            .await
            .unwrap()
            .metadata
            .resource_version,
        version,
        "the API server shows no write"
    );
    // Her own name is accepted, once.
    as_alice
        .patch(
            "scale-web",
            &PatchParams::default(),
            &merge(approval(&alice_name, "Approve")),
        )
        .await
        .unwrap();
    refused(
        as_alice
            .patch(
                "scale-web",
                &PatchParams::default(),
                &merge(approval(&alice_name, "Reject")),
            )
            .await,
        "decided once",
        "a second decision",
    );

    // The annotation path: its value is the annotator's own name, and the
    // coordinator may copy only that into spec.approval.
    as_coordinator
        .create(&create, &healing_action("restart-web", &policy_ref))
        .await
        .unwrap();
    let annotate =
        |value: &str| json!({ "metadata": { "annotations": { "nanny.ai/approve": value } } });
    refused(
        as_alice
            .patch(
                "restart-web",
                &PatchParams::default(),
                &merge(annotate("admin")),
            )
            .await,
        "must be your own user name",
        "an annotation in another's name",
    );
    as_alice
        .patch(
            "restart-web",
            &PatchParams::default(),
            &merge(annotate(&alice_name)),
        )
        .await
        .unwrap();
    refused(
        as_coordinator
            .patch(
                "restart-web",
                &PatchParams::default(),
                &merge(approval("admin", "Approve")),
            )
            .await,
        "spec.approval.by must be who decides",
        "the coordinator naming someone else",
    );
    let approved = as_coordinator
        .patch(
            "restart-web",
            &PatchParams::default(),
            &merge(approval(&alice_name, "Approve")),
        )
        .await
        .unwrap();
    assert_eq!(approved.spec.approval.unwrap().by, alice_name);
    assert_eq!(
        as_admin
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        2,
        "no forged action exists"
    );
}
