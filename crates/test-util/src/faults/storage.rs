//! Storage faults: a claim nearly full on an expandable StorageClass, and
//! the volume resizer the local cluster lacks.

use std::time::Duration;

use super::*;

/// The StorageClass nearly-full claims use: no provisioner, expansion allowed.
pub const EXPANDABLE_STORAGE_CLASS: &str = "nanny-test-expandable";

/// The storage claim `namespace/name` requests now, as the API server
/// shows it (e.g. `1073741824` or `2Gi`).
///
/// # Errors
/// When the claim cannot be read or requests no storage.
pub async fn claim_request(client: &Client, namespace: &str, name: &str) -> anyhow::Result<String> {
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
        .get(name)
        .await?;
    claim
        .spec
        .and_then(|s| s.resources)
        .and_then(|r| r.requests)
        .and_then(|mut r| r.remove("storage"))
        .map(|q| q.0)
        .ok_or_else(|| anyhow::anyhow!("claim {namespace}/{name} requests no storage"))
}

/// A bound PVC of `capacity_bytes` with `used_bytes` in use, as the kubelet
/// volume metrics report it (through a pod mounting the claim).
///
/// # Errors
/// When the API refuses or the claim does not bind within a minute.
pub async fn pvc_nearly_full(
    client: &Client,
    namespace: &str,
    name: &str,
    capacity_bytes: i64,
    used_bytes: i64,
) -> anyhow::Result<PersistentVolumeClaim> {
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": { "name": EXPANDABLE_STORAGE_CLASS },
        "provisioner": "kubernetes.io/no-provisioner",
        "allowVolumeExpansion": true,
        "volumeBindingMode": "Immediate",
    }))?;
    match Api::<StorageClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => return Err(error.into()),
    }
    let volume_name = format!("{namespace}-{name}");
    let volume: PersistentVolume = serde_json::from_value(json!({
        "metadata": { "name": volume_name, "labels": { "nanny.ai/test": "true" } },
        "spec": {
            "capacity": { "storage": capacity_bytes.to_string() },
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": EXPANDABLE_STORAGE_CLASS,
            "persistentVolumeReclaimPolicy": "Delete",
            // Under /tmp the PV controller's hostPath deleter reclaims it
            // once its claim goes; elsewhere it fails, and the volume would
            // stay behind Failed (an issue of its own, PVFailed).
            "hostPath": { "path": format!("/tmp/nanny-test/{volume_name}") },
            "claimRef": { "namespace": namespace, "name": name },
        },
    }))?;
    Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &volume)
        .await?;
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": EXPANDABLE_STORAGE_CLASS,
            "volumeName": volume_name,
            "resources": { "requests": { "storage": capacity_bytes.to_string() } },
        },
    }))?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    claims.create(&PostParams::default(), &claim).await?;

    let spec = PodSpec {
        annotations: vec![
            ("nanny.ai/pvc", name.to_owned()),
            ("nanny.ai/pvc-used-bytes", used_bytes.to_string()),
            ("nanny.ai/pvc-capacity-bytes", capacity_bytes.to_string()),
        ],
        ..PodSpec::default()
    };
    let user = format!("{name}-user");
    let mut template = pod_template(&user, &spec);
    template["spec"]["volumes"] =
        json!([{ "name": "data", "persistentVolumeClaim": { "claimName": name } }]);
    template["spec"]["containers"][0]["volumeMounts"] =
        json!([{ "name": "data", "mountPath": "/data" }]);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": user, "labels": template["metadata"]["labels"], "annotations": template["metadata"]["annotations"] },
        "spec": template["spec"],
    }))?;
    Api::<Pod>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &pod)
        .await?;

    eventually(&format!("pvc {name} Bound"), SETTLE, || async {
        Ok(claims
            .get(name)
            .await
            .ok()
            .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")))
    })
    .await
}

/// Plays the volume resizer the local cluster lacks: once `name`'s
/// requested size exceeds its capacity, the capacity follows. Runs until
/// aborted.
pub fn volume_resizer(
    client: Client,
    namespace: String,
    name: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client, &namespace);
        loop {
            if let Ok(claim) = claims.get(&name).await {
                let requested = claim
                    .spec
                    .as_ref()
                    .and_then(|s| s.resources.as_ref())
                    .and_then(|r| r.requests.as_ref())
                    .and_then(|r| r.get("storage"))
                    .map(|q| q.0.clone());
                let capacity = claim
                    .status
                    .as_ref()
                    .and_then(|s| s.capacity.as_ref())
                    .and_then(|c| c.get("storage"))
                    .map(|q| q.0.clone());
                if let Some(requested) = requested
                    && Some(&requested) != capacity.as_ref()
                {
                    let status = json!({ "status": { "capacity": { "storage": requested } } });
                    let _ = claims
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}
