//! Shared setup for the cluster-tier tests in `tests/`.
//!
//! These tests need the local cluster: `cargo xtask test` starts it, runs
//! them and stops it. Run alone with `cargo xtask cluster up` first; with
//! `CI=true` a missing cluster fails instead of skipping.

// Test support: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::{authentication::v1::TokenRequest, core::v1::ServiceAccount};
use kube::{Api, Client, api::PostParams, config::AuthInfo};
use nanny_test_util::cluster::{ClusterInfo, TestNamespace};

/// A test's view of the cluster: admin client and its own namespace.
#[allow(missing_debug_implementations)] // kube::Client has no Debug
pub struct Fixture {
    /// What `cluster up` recorded.
    pub cluster: ClusterInfo,
    /// Admin client.
    pub client: Client,
    /// This test's namespace (deleted on drop).
    pub namespace: TestNamespace,
}

impl Fixture {
    /// The fixture, or `None` (skip) when no cluster runs outside CI.
    pub async fn new(test: &str) -> Option<Self> {
        let cluster = ClusterInfo::for_test(test)?;
        let client = cluster.client().await.expect("admin client");
        let namespace = TestNamespace::create(&cluster, &client, test)
            .await
            .expect("test namespace");
        Some(Self {
            cluster,
            client,
            namespace,
        })
    }

    /// Creates ServiceAccount `name` in this test's namespace and returns a
    /// client that authenticates with a real bound token from the
    /// TokenRequest API, as a pod would — so RBAC and admission see that
    /// identity, not the admin.
    pub async fn service_account_client(&self, name: &str) -> Client {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), self.ns());
        let account: ServiceAccount =
            serde_json::from_value(serde_json::json!({ "metadata": { "name": name } })).unwrap();
        accounts
            .create(&PostParams::default(), &account)
            .await
            .unwrap();
        let request: TokenRequest = serde_json::from_value(
            serde_json::json!({ "spec": { "audiences": [], "expirationSeconds": 600 } }),
        )
        .unwrap();
        let token = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap();
        let mut config = self.cluster.config().await.unwrap();
        config.auth_info = AuthInfo {
            token: Some(token.status.unwrap().token.into()),
            ..AuthInfo::default()
        };
        Client::try_from(config).unwrap()
    }

    /// The namespace name.
    pub fn ns(&self) -> &str {
        &self.namespace.name
    }
}
