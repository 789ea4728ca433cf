//! The owners charts label while their children stay unlabelled: a
//! suspended CronJob and a Job it owns, a StatefulSet whose claim template
//! made a claim. Protection must follow these links to the child.

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    batch::v1::CronJob,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The label Helm puts on what it installs; protected by default.
pub const HELM: (&str, &str) = ("app.kubernetes.io/managed-by", "Helm");

/// Labels the Deployment `name` as Helm does (on the Deployment only, as
/// many charts do: its pods stay unlabelled).
///
/// # Errors
/// When the API refuses.
pub async fn label_helm(client: &Client, namespace: &str, name: &str) -> anyhow::Result<()> {
    let patch = json!({ "metadata": { "labels": { HELM.0: HELM.1 } } });
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn metadata(name: &str, labels: &[(&str, &str)]) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    json!({ "name": name, "labels": labels })
}

/// A suspended CronJob (it never runs on its own) labelled `labels`.
///
/// # Errors
/// When the API refuses.
pub async fn cron_job(
    client: &Client,
    namespace: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> anyhow::Result<CronJob> {
    let cron_job: CronJob = serde_json::from_value(json!({
        "metadata": metadata(name, labels),
        "spec": {
            "schedule": "0 3 * * *",
            "suspend": true,
            "jobTemplate": { "spec": { "template": { "spec": {
                "restartPolicy": "Never",
                "containers": [{ "name": "app", "image": format!("registry.example/{name}:1") }],
            } } } },
        },
    }))?;
    Ok(Api::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &cron_job)
        .await?)
}

/// A StatefulSet of no replicas labelled `labels`, with one
/// volumeClaimTemplate named `template`: its claims are named
/// `<template>-<name>-<ordinal>`. No replicas, so the StatefulSet
/// controller creates no claim of its own; the test creates the claim.
///
/// # Errors
/// When the API refuses.
pub async fn stateful_set(
    client: &Client,
    namespace: &str,
    name: &str,
    template: &str,
    labels: &[(&str, &str)],
) -> anyhow::Result<StatefulSet> {
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": metadata(name, labels),
        "spec": {
            "replicas": 0,
            "serviceName": name,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "app", "image": format!("registry.example/{name}:1") }] },
            },
            "volumeClaimTemplates": [{
                "metadata": { "name": template },
                "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } },
            }],
        },
    }))?;
    Ok(Api::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &set)
        .await?)
}

/// Makes `owner` the controller of the object `name` in `api`, as the
/// owner's own controller would have.
///
/// # Errors
/// When the API refuses.
pub async fn adopt<K, O>(api: &Api<K>, name: &str, owner: &O) -> anyhow::Result<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    O: Resource<DynamicType = ()>,
{
    let reference = owner
        .controller_owner_ref(&())
        .ok_or_else(|| anyhow::anyhow!("{} has no uid yet", owner.name_any()))?;
    let patch = json!({ "metadata": { "ownerReferences": [reference] } });
    Ok(api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?)
}
