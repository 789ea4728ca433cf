//! Shared setup for the cluster-tier tests in `tests/`.
//!
//! These tests need the local cluster: `cargo xtask test` starts it, runs
//! them and stops it. Run alone with `cargo xtask cluster up` first; with
//! `CI=true` a missing cluster fails instead of skipping.

// Test support: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kube::Client;
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

    /// The namespace name.
    pub fn ns(&self) -> &str {
        &self.namespace.name
    }
}
