//! Fake nodes of a test's own, for node actions (cordon, drain) that must
//! not disturb the shared cluster's nodes or other tests' pods.

use std::{path::PathBuf, time::Duration};

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Node};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

use crate::cluster::{ClusterInfo, eventually, node_is_ready};

/// Taint key on every [`FakeNode`]; only pods that tolerate it (see
/// [`FakeNode::pin`]) land there.
pub const TEST_NODE_TAINT: &str = "nanny.ai/test-node";

/// A kwok-managed node that only pinned pods use, deleted when dropped.
#[derive(Debug)]
pub struct FakeNode {
    /// The node name.
    pub name: String,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl FakeNode {
    /// Creates node `name` (kwok manages every node: it turns Ready and runs
    /// the pods bound to it), tainted so that only pinned pods schedule there.
    ///
    /// # Errors
    /// When the API refuses.
    pub async fn create(
        cluster: &ClusterInfo,
        client: &Client,
        name: &str,
    ) -> anyhow::Result<Self> {
        let node: Node = serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "annotations": { KWOK_ANNOTATION: "fake" },
                "labels": { "type": "kwok", "nanny.ai/test": "true", "kubernetes.io/hostname": name },
            },
            "spec": { "taints": [{ "key": TEST_NODE_TAINT, "value": name, "effect": "NoSchedule" }] },
        }))?;
        Api::<Node>::all(client.clone())
            .create(&PostParams::default(), &node)
            .await?;
        let status = json!({ "status": {
            "allocatable": { "cpu": "32", "memory": "256Gi", "ephemeral-storage": "200Gi", "pods": "110" },
            "capacity": { "cpu": "32", "memory": "256Gi", "ephemeral-storage": "200Gi", "pods": "110" },
        } });
        let nodes: Api<Node> = Api::all(client.clone());
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        // Deleted on drop from here on, also when it never settles.
        let node = Self {
            name: name.to_owned(),
            kubectl: cluster.kubectl.clone(),
            kubeconfig: cluster.kubeconfig.clone(),
        };
        // Settled: kwok reports Ready and the controller-manager has lifted
        // its not-ready taint (a spec change a test snapshot taken earlier
        // would see as a foreign change).
        eventually(
            &format!("node {name} Ready and settled"),
            Duration::from_secs(60),
            || async {
                let node = nodes.get(name).await?;
                let spec = node.spec.clone().unwrap_or_default();
                let tainted = spec
                    .taints
                    .unwrap_or_default()
                    .iter()
                    .any(|t| t.key.starts_with("node.kubernetes.io/"));
                Ok((node_is_ready(&node) && !tainted).then_some(()))
            },
        )
        .await?;
        // kwok's first status (its defaults: 1Ti of memory) may land after
        // the one above when it is busy: written again once it has settled,
        // which kwok's heartbeats keep.
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        Ok(node)
    }

    /// Creates node `name` that no kubelet serves (kwok manages only
    /// annotated nodes): it never turns Ready, and a pod bound to it is
    /// never confirmed stopped once deleted, as on a machine that is gone.
    ///
    /// # Errors
    /// When the API refuses.
    pub async fn without_kubelet(
        cluster: &ClusterInfo,
        client: &Client,
        name: &str,
    ) -> anyhow::Result<Self> {
        let node: Node = serde_json::from_value(json!({
            "metadata": { "name": name, "labels": { "nanny.ai/test": "true" } },
            "spec": { "taints": [{ "key": TEST_NODE_TAINT, "value": name, "effect": "NoSchedule" }] },
        }))?;
        Api::<Node>::all(client.clone())
            .create(&PostParams::default(), &node)
            .await?;
        Ok(Self {
            name: name.to_owned(),
            kubectl: cluster.kubectl.clone(),
            kubeconfig: cluster.kubeconfig.clone(),
        })
    }

    /// Adds what a pod template needs to run on this node (and only there).
    pub fn pin(&self, pod_spec: &mut serde_json::Value) {
        pod_spec["nodeSelector"] = json!({ "kubernetes.io/hostname": self.name });
        pod_spec["tolerations"] =
            json!([{ "key": TEST_NODE_TAINT, "operator": "Exists", "effect": "NoSchedule" }]);
    }

    /// Whether the API server shows this node cordoned
    /// (`spec.unschedulable`).
    ///
    /// # Errors
    /// When the node cannot be read.
    pub async fn cordoned(&self, client: &Client) -> anyhow::Result<bool> {
        let node = Api::<Node>::all(client.clone()).get(&self.name).await?;
        Ok(node.spec.and_then(|s| s.unschedulable).unwrap_or(false))
    }

    /// Creates Deployment `namespace/name` (label `app=name`) with
    /// `replicas` pods, all pinned to this node.
    ///
    /// # Errors
    /// When the API server refuses it.
    pub async fn deployment(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
        replicas: i32,
    ) -> anyhow::Result<Deployment> {
        let mut spec =
            json!({ "containers": [{ "name": "app", "image": "registry.example/app:1" }] });
        self.pin(&mut spec);
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": name } },
                      "template": { "metadata": { "labels": { "app": name } }, "spec": spec } },
        }))?;
        Ok(Api::<Deployment>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &deployment)
            .await?)
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        // Synchronous and runtime-free, so it also runs while a test unwinds.
        let status = std::process::Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "delete",
                "node",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .stdout(std::process::Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("warning: could not delete test node {}", self.name);
        }
    }
}

/// The annotation kwok manages its nodes by (the real node has none).
pub const KWOK_ANNOTATION: &str = "kwok.x-k8s.io/node";

/// Whether kwok simulates `node` (and not a real kubelet).
pub fn kwok_managed(node: &k8s_openapi::api::core::v1::Node) -> bool {
    node.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(KWOK_ANNOTATION))
}
