//! The audit chain's head, kept outside the log: a ConfigMap the gate
//! rewrites whenever the head moved, at most every
//! `audit.anchor_interval_secs`. A log cut after the last record a
//! HealingAction anchors still shows against it (`nannyctl audit verify
//! --anchor-configmap`). Writing it never holds a decision: a failed write
//! is logged and tried again at the next tick.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;

/// The anchoring task; stopped when dropped (the gate stops serving).
pub struct Task(pub tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Field manager of the gate's writes.
const MANAGER: &str = "nanny-safety-gate";

/// Keeps `namespace/name` at the head `head` reads (the service's audit
/// chain) until the task is dropped.
pub async fn keep(
    client: Client,
    configmap: String,
    every: Duration,
    head: impl Fn() -> Option<(u64, String)>,
) {
    let Some((namespace, name)) = configmap.split_once('/') else {
        return;
    };
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let mut written: Option<(u64, String)> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // An empty log has nothing to anchor yet.
        let Some(head) = head().filter(|(seq, _)| *seq > 0) else {
            continue;
        };
        if written.as_ref() == Some(&head) {
            continue;
        }
        let patch = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": name, "namespace": namespace },
            "data": {
                "seq": head.0.to_string(),
                "hash": head.1,
                "time": prost_types::Timestamp::from(std::time::SystemTime::now()).to_string(),
            },
        });
        match api
            .patch(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(_) => {
                tracing::debug!(seq = head.0, "Audit head anchored.");
                written = Some(head);
            }
            Err(error) => tracing::warn!(
                configmap,
                %error,
                "Could not write the audit head's anchor; trying again."
            ),
        }
    }
}
