//! RBAC is enforced: a ServiceAccount's token is refused a write until a
//! Role allows it.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::api::{
    core::v1::ConfigMap,
    rbac::v1::{Role, RoleBinding},
};
use kube::{Api, api::PostParams};
use nanny_cluster_tests::Fixture;
use nanny_test_util::cluster::eventually;
use serde_json::json;

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

#[tokio::test]
async fn service_account_gets_403_until_a_role_allows_the_write() {
    let Some(fx) = Fixture::new("rbac").await else {
        return;
    };
    let ns = fx.ns();
    // A real bound token from the TokenRequest API, as a pod would get.
    let bot = fx.service_account_client("bot").await;

    let config_map: ConfigMap =
        object(json!({ "metadata": { "name": "settings" }, "data": { "k": "v" } }));
    let as_bot: Api<ConfigMap> = Api::namespaced(bot, ns);
    match as_bot.create(&PostParams::default(), &config_map).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }

    let role: Role = object(json!({
        "metadata": { "name": "configmap-writer" },
        "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"] }],
    }));
    Api::<Role>::namespaced(fx.client.clone(), ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = object(json!({
        "metadata": { "name": "bot-writes-configmaps" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-writer" },
        "subjects": [{ "kind": "ServiceAccount", "name": "bot", "namespace": ns }],
    }));
    Api::<RoleBinding>::namespaced(fx.client.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    // The authorizer's cache picks up the binding within moments.
    let created = eventually(
        "write allowed after RoleBinding",
        Duration::from_secs(20),
        || async {
            Ok(as_bot
                .create(&PostParams::default(), &config_map)
                .await
                .ok())
        },
    )
    .await
    .unwrap();
    assert_eq!(created.data.unwrap()["k"], "v");
    // Still only what the Role grants: reading was never allowed.
    match as_bot.get("settings").await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403),
        other => panic!("expected 403 on get, got {other:?}"),
    }
}
