//! The Helm chart in cluster tests: helm against the local cluster with a
//! diagnosis on failure, a release uninstalled on drop, and waiting for
//! its Deployments.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use k8s_openapi::api::{apps::v1::Deployment, core::v1::PersistentVolume};
use kube::{Api, Client, api::ListParams};
use nanny_test_util::{
    cluster::{ClusterInfo, eventually},
    tools::HELM,
};

/// The chart's five services (the suffix of each Deployment's name).
pub const SERVICES: [&str; 5] = [
    "collector",
    "analyzer",
    "safety-gate",
    "remediator",
    "coordinator",
];

pub fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../helm/nanny")
}

/// Runs helm against the cluster; panics with its output, and what the
/// API server shows of the release's namespace and the nodes, on failure.
pub fn helm(cluster: &ClusterInfo, ns: &str, args: &[&str]) -> String {
    let output = Command::new(HELM.require().unwrap())
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "helm {args:?} failed:\n{}{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        diagnose(cluster, ns)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Why a release may not be ready: its pods (phase, node, conditions), its
/// claims, its namespace's events and every node's conditions and taints.
pub fn diagnose(cluster: &ClusterInfo, ns: &str) -> String {
    let node_columns = "custom-columns=NAME:.metadata.name,UNSCHEDULABLE:.spec.unschedulable,\
        READY:.status.conditions[?(@.type==\"Ready\")].status,TAINTS:.spec.taints";
    let queries: [&[&str]; 4] = [
        &["get", "pods,pvc,deployments", "-n", ns, "-o", "wide"],
        &[
            "get",
            "pods",
            "-n",
            ns,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}: {.status.conditions}{\"\\n\"}{end}",
        ],
        &["get", "events", "-n", ns, "--sort-by=.lastTimestamp"],
        &["get", "nodes", "-o", node_columns],
    ];
    let mut report = String::new();
    for query in queries {
        let output = Command::new(&cluster.kubectl)
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .args(query)
            .output();
        report.push_str(&format!("$ kubectl {}\n", query.join(" ")));
        match output {
            Ok(o) => {
                report.push_str(&String::from_utf8_lossy(&o.stdout));
                report.push_str(&String::from_utf8_lossy(&o.stderr));
            }
            Err(error) => report.push_str(&format!("cannot run kubectl: {error}\n")),
        }
    }
    report
}

/// Uninstalls the release when dropped, so a failing test leaves no
/// ClusterRole or admission policy behind on the shared cluster, and
/// removes its audit volume ([`audit_volume`]) and that volume's directory.
#[derive(Debug)]
pub struct Release {
    name: String,
    namespace: String,
    helm: PathBuf,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl Release {
    /// Release `name` in `namespace`, to be installed by the caller.
    ///
    /// # Panics
    /// When helm is not built.
    pub fn new(cluster: &ClusterInfo, name: &str, namespace: &str) -> Self {
        Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            helm: HELM.require().unwrap(),
            kubectl: cluster.kubectl.clone(),
            kubeconfig: cluster.kubeconfig.clone(),
        }
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let status = Command::new(&self.helm)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "uninstall",
                &self.name,
                "-n",
                &self.namespace,
                "--wait",
                "--ignore-not-found",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("warning: could not uninstall helm release {}", self.name);
        }
        let _ = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "delete",
                "persistentvolume",
                &format!("{}-audit", self.name),
                "--ignore-not-found",
                // Bound until the claim goes with the test's namespace.
                "--wait=false",
            ])
            .stdout(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(audit_dir(&self.name));
    }
}

/// Waits until `want` Deployments of the release are Available with their
/// newest generation observed and every replica updated.
pub async fn wait_available(client: &Client, ns: &str, release: &str, want: usize) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let selector = format!("app.kubernetes.io/instance={release}");
    eventually(
        "every Deployment Available",
        Duration::from_secs(120),
        || async {
            let list = api.list(&ListParams::default().labels(&selector)).await?;
            let ready = list
                .items
                .iter()
                .filter(|d| {
                    let status = d.status.as_ref();
                    let available = status.and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
                        c.iter()
                            .any(|c| c.type_ == "Available" && c.status == "True")
                    });
                    let current = status.and_then(|s| s.observed_generation)
                        == d.metadata.generation
                        && status.and_then(|s| s.updated_replicas)
                            == d.spec.as_ref().and_then(|s| s.replicas);
                    available && current
                })
                .count();
            Ok((ready == want).then_some(()))
        },
    )
    .await
    .unwrap();
}

/// The host directory of `release`'s audit volume.
pub fn audit_dir(release: &str) -> PathBuf {
    std::env::temp_dir().join(format!("nanny-{release}-audit"))
}

/// Creates the PersistentVolume the release's safety-gate audit claim binds
/// (this cluster has no provisioner): a hostPath at [`audit_dir`], claimed
/// by `<prefix>-safety-gate-audit` in `ns`, kept when released. Returns the
/// directory.
///
/// # Panics
/// When the API server refuses it.
pub async fn audit_volume(client: &Client, release: &str, ns: &str, prefix: &str) -> PathBuf {
    let path = audit_dir(release);
    let volume: PersistentVolume = serde_json::from_value(serde_json::json!({
        "metadata": { "name": format!("{release}-audit"), "labels": { "nanny.ai/test": "true" } },
        "spec": {
            "capacity": { "storage": "1Gi" },
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": { "path": path },
            "claimRef": { "namespace": ns, "name": format!("{prefix}-safety-gate-audit") },
        },
    }))
    .unwrap();
    Api::<PersistentVolume>::all(client.clone())
        .create(&kube::api::PostParams::default(), &volume)
        .await
        .unwrap();
    path
}
