//! The local cluster's real node (`cargo xtask cluster up`): a kubelet
//! with containerd next to the kwok nodes. Pods run there only when they
//! ask: [`place`] adds the toleration and node selector.

use serde_json::{Value, json};

/// The node's name.
pub const NODE_NAME: &str = "nanny-real";
/// The label the node carries, with value `real`.
pub const LABEL: &str = "nanny.ai/node";
/// The taint (value `true`, effect `NoSchedule`) that keeps every other
/// pod off the node.
pub const TAINT_KEY: &str = "nanny.ai/real-node";
/// The pause image the node's containerd runs sandboxes with.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// The model server (Ollama with the local model in `/models`), as `cargo
/// xtask images` builds it; `helm/nanny/ci/real-node-values.yaml` runs it.
pub const OLLAMA_IMAGE: &str = "nanny.local/ollama-smollm2:0.11.4";

/// The fault app (`crates/fault-app`), as `cargo xtask images` builds it.
pub const FAULT_IMAGE: &str = concat!("nanny.local/nanny-fault:", env!("CARGO_PKG_VERSION"));

/// `pod_spec` (JSON) made to run on the real node: its toleration and node
/// selector added.
pub fn place(mut pod_spec: Value) -> Value {
    pod_spec["nodeSelector"] = json!({ LABEL: "real" });
    pod_spec["tolerations"] = json!([
        { "key": TAINT_KEY, "operator": "Equal", "value": "true", "effect": "NoSchedule" }
    ]);
    pod_spec
}

/// Creates a one-replica Deployment `name` on the real node running the
/// fault app with `args` (see `crates/fault-app`), with `memory_limit`
/// (request and limit) if given.
///
/// # Errors
/// When the API refuses.
pub async fn fault_deployment(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    args: &[&str],
    memory_limit: Option<&str>,
) -> anyhow::Result<k8s_openapi::api::apps::v1::Deployment> {
    let mut container = json!({ "args": args });
    if let Some(limit) = memory_limit {
        container["resources"] =
            json!({ "limits": { "memory": limit }, "requests": { "memory": limit } });
    }
    fault_deployment_of(client, namespace, name, container).await
}

/// Creates a one-replica Deployment `name` on the real node running
/// `container` (JSON; named `app` and pulled only when absent unless it
/// says otherwise): the fault app with probes, a missing image or
/// configuration, requests that do not fit.
///
/// # Errors
/// When the API refuses.
pub async fn fault_deployment_of(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    container: Value,
) -> anyhow::Result<k8s_openapi::api::apps::v1::Deployment> {
    fault_deployment_with(client, namespace, name, container, None).await
}

/// [`fault_deployment_of`] with `init`, when given, as its one init
/// container (the fault app, named `init`).
///
/// # Errors
/// When the API refuses.
pub async fn fault_deployment_with(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    container: Value,
    init: Option<&[&str]>,
) -> anyhow::Result<k8s_openapi::api::apps::v1::Deployment> {
    let pod = init.map_or_else(
        || json!({}),
        |args| {
            json!({ "initContainers": [{
                "name": "init", "image": FAULT_IMAGE, "imagePullPolicy": "IfNotPresent", "args": args,
            }] })
        },
    );
    fault_deployment_pod(client, namespace, name, container, pod).await
}

/// [`fault_deployment_of`] with the pod spec's fields in `pod` (volumes,
/// a RuntimeClass, init containers) added.
///
/// # Errors
/// When the API refuses.
pub async fn fault_deployment_pod(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    mut container: Value,
    pod: Value,
) -> anyhow::Result<k8s_openapi::api::apps::v1::Deployment> {
    for (key, default) in [
        ("name", json!("app")),
        ("image", json!(FAULT_IMAGE)),
        ("imagePullPolicy", json!("IfNotPresent")),
    ] {
        if container.get(key).is_none() {
            container[key] = default;
        }
    }
    let mut spec = json!({
        "containers": [container],
        // The app does not handle SIGTERM (as PID 1 it is ignored).
        "terminationGracePeriodSeconds": 1,
    });
    if let Value::Object(fields) = pod {
        for (key, value) in fields {
            spec[key] = value;
        }
    }
    let template = json!({ "metadata": { "labels": { "app": name } }, "spec": place(spec) });
    crate::faults::deployment_of(client, namespace, name, 1, template).await
}
