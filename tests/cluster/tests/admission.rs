//! The API server refuses the remediator's identity on protected resources
//! (deploy/admission/protected-resources.yaml), while its RBAC allows the write.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::{
    admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding},
    apps::v1::Deployment,
    core::v1::Node,
    rbac::v1::{ClusterRole, ClusterRoleBinding},
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use nanny_cluster_tests::Fixture;
use nanny_test_util::{
    cluster::eventually,
    faults::{self, PodSpec},
    nodes::FakeNode,
};
use serde_json::json;

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

async fn install_policy(client: &Client) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/admission/protected-resources.yaml"
    ))
    .unwrap();
    let mut docs = text.split("\n---\n");
    let policy: ValidatingAdmissionPolicy = serde_yaml::from_str(docs.next().unwrap()).unwrap();
    let binding: ValidatingAdmissionPolicyBinding =
        serde_yaml::from_str(docs.next().unwrap()).unwrap();
    let apply = PatchParams::apply("nanny-tests").force();
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .patch("nanny-protected-resources", &apply, &Patch::Apply(&policy))
        .await
        .unwrap();
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .patch("nanny-protected-resources", &apply, &Patch::Apply(&binding))
        .await
        .unwrap();
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
    install_policy(&fx.client).await;
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
