//! What the demo (`cargo xtask demo`) and the cluster tests' seed-scenario
//! pipeline share: the actions the seed scenarios need a policy to allow,
//! with their ceilings, and waiting for an app's pods to run.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use serde_json::{Value, json};

use crate::{cluster::eventually, faults};

/// A HealingPolicy's `spec.actions` for the seed scenarios: each action they
/// heal with, and ceilings that leave room for the scenarios' sizes.
pub fn seed_actions() -> Value {
    json!([
        { "type": "RestartPod" },
        { "type": "RolloutRestart" },
        { "type": "PatchResources", "ceilings": { "maxMemory": "2Gi" } },
        { "type": "DeleteJob" },
        { "type": "ScaleHpa", "ceilings": { "maxReplicas": 10 } },
        { "type": "CordonNode" },
        { "type": "ExpandPvc", "ceilings": { "maxStorage": "20Gi" } },
        { "type": "ReportOnly" },
    ])
}

/// Waits up to `wait` until exactly `count` pods of `app` in `namespace`
/// run (and none of them is being deleted).
///
/// # Errors
/// When the wait runs out, with what was seen last.
pub async fn running_pods(
    client: &Client,
    namespace: &str,
    app: &str,
    count: usize,
    wait: Duration,
) -> anyhow::Result<Vec<Pod>> {
    eventually(&format!("{count} running {app} pods"), wait, || async {
        let pods = faults::pods_of(client, namespace, app).await?;
        let running: Vec<Pod> = pods
            .into_iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            })
            .collect();
        Ok((running.len() == count).then_some(running))
    })
    .await
}
