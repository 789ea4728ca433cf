//! The API server refuses the remediator's identity on protected resources
//! (deploy/admission/protected-resources.yaml), while its RBAC allows the
//! write; and it keeps HealingActions to what the coordinator recorded and a
//! human decided under their own name (deploy/admission/healing-actions.yaml
//! and the CRD's own rules).

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::Node,
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use nanny_cluster_tests::{Fixture, install_admission_policy};
use nanny_crd::HealingAction;
use nanny_test_util::{
    cluster::eventually,
    faults::{self, PodSpec},
    nodes::FakeNode,
};
use serde_json::json;

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

/// A client acting as `<ns>:nanny-remediator`, allowed by RBAC to patch
/// Deployments anywhere and Nodes.
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
                    { "apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"] },
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
