//! The local cluster started by `cargo xtask cluster up`, as tests see it.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::{
    Api, Client, Config,
    api::{ListParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde::{Deserialize, Serialize};

use crate::tools::cache_dir;

/// Where `cargo xtask cluster up` keeps the cluster's state (kwokctl's work dir).
pub fn state_dir() -> PathBuf {
    cache_dir().join("cluster")
}

/// What `cluster up` wrote about the running cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// Admin kubeconfig (client certificate in `system:masters`).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub apiserver_url: String,
    /// Prometheus base URL.
    pub prometheus_url: String,
    /// kwok controller base URL (emulated kubelet metrics).
    pub kwok_url: String,
    /// kubectl matching the control plane.
    pub kubectl: PathBuf,
    /// Number of fake nodes started.
    pub nodes: u32,
    /// The API server's audit log (JSON lines, one event per write): the
    /// evidence security tests count writes from.
    #[serde(default)]
    pub audit_log: PathBuf,
    /// The real node's name, when `up` started one (see
    /// [`crate::real_node`]).
    #[serde(default)]
    pub real_node: Option<String>,
}

/// One write the API server's audit log records (Metadata level).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AuditedWrite {
    /// `create`, `update`, `patch`, `delete`…
    pub verb: String,
    /// Who asked.
    pub user: AuditUser,
    /// What it was about.
    pub object_ref: AuditObject,
    /// The API server's answer.
    pub response_status: AuditStatus,
    /// The request URI (carries `dryRun`).
    #[serde(rename = "requestURI")]
    pub request_uri: String,
}

/// `user` of an audit event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AuditUser {
    /// The authenticated user name.
    pub username: String,
}

/// `objectRef` of an audit event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AuditObject {
    /// e.g. `pods`.
    pub resource: String,
    /// e.g. `eviction`.
    pub subresource: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    /// Object name.
    pub name: String,
}

/// `responseStatus` of an audit event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AuditStatus {
    /// HTTP status code.
    pub code: u16,
}

impl AuditedWrite {
    /// Whether the write took effect: answered 2xx and not a dry run.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.response_status.code) && !self.request_uri.contains("dryRun=")
    }
}

impl ClusterInfo {
    /// Every write the API server audited so far, `username`'s only.
    ///
    /// # Errors
    /// When the audit log cannot be read.
    pub fn audited_writes(&self, username: &str) -> anyhow::Result<Vec<AuditedWrite>> {
        self.audited(username, |write| write.user.username == username)
    }

    /// The writes of `username` that took effect ([`AuditedWrite::succeeded`]):
    /// what an attack must leave at zero.
    ///
    /// # Errors
    /// When the audit log cannot be read.
    pub fn effective_writes(&self, username: &str) -> anyhow::Result<Vec<AuditedWrite>> {
        let mut writes = self.audited_writes(username)?;
        writes.retain(AuditedWrite::succeeded);
        Ok(writes)
    }

    /// Every write the API server audited so far in `namespace`, whoever
    /// made it (the test stack's services share one identity).
    ///
    /// # Errors
    /// When the audit log cannot be read.
    pub fn audited_writes_in(&self, namespace: &str) -> anyhow::Result<Vec<AuditedWrite>> {
        self.audited(namespace, |write| write.object_ref.namespace == namespace)
    }

    fn audited(
        &self,
        mentions: &str,
        keep: impl Fn(&AuditedWrite) -> bool,
    ) -> anyhow::Result<Vec<AuditedWrite>> {
        let text = std::fs::read_to_string(&self.audit_log)
            .with_context(|| format!("reading {}", self.audit_log.display()))?;
        Ok(text
            .lines()
            .filter(|line| line.contains(mentions))
            .filter_map(|line| serde_json::from_str::<AuditedWrite>(line).ok())
            .filter(keep)
            .collect())
    }

    /// The state file's path.
    pub fn path() -> PathBuf {
        state_dir().join("nanny-cluster.json")
    }

    /// Reads the state file, if a cluster was started.
    ///
    /// # Errors
    /// When the file exists but cannot be parsed.
    pub fn load() -> anyhow::Result<Option<Self>> {
        let path = Self::path();
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)?;
        Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?,
        ))
    }

    /// The running cluster for a cluster test. With `CI=true` a missing
    /// cluster fails the test; elsewhere the test is skipped with a notice
    /// (run `cargo xtask test`, or `cargo xtask cluster up` first).
    ///
    /// # Panics
    /// Under CI when no cluster is running, or when the state file is corrupt.
    pub fn for_test(test: &str) -> Option<Self> {
        match Self::load().expect("reading the cluster state file") {
            Some(info) => Some(info),
            None if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!(
                    "{test}: no local cluster is running (CI=true never skips); `cargo xtask test` starts one"
                )
            }
            None => {
                eprintln!(
                    "SKIPPED {test}: no local cluster; run `cargo xtask cluster up` or `cargo xtask test`"
                );
                None
            }
        }
    }

    /// An admin client.
    ///
    /// # Errors
    /// When the kubeconfig cannot be read.
    pub async fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::try_from(self.config().await?)?)
    }

    /// The admin client config, for deriving other identities.
    ///
    /// # Errors
    /// When the kubeconfig cannot be read.
    pub async fn config(&self) -> anyhow::Result<Config> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        Ok(Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?)
    }
}

/// Polls until `want` nodes report Ready=True; returns the time it took.
///
/// # Errors
/// When `timeout` passes first.
pub async fn wait_nodes_ready(
    client: &Client,
    want: usize,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        let ready = match nodes.list(&ListParams::default()).await {
            Ok(list) => list.items.iter().filter(|n| node_is_ready(n)).count(),
            Err(_) => 0,
        };
        if ready >= want {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "only {ready} of {want} nodes Ready after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether a node's Ready condition is True.
pub fn node_is_ready(node: &Node) -> bool {
    node_condition(node, "Ready").as_deref() == Some("True")
}

/// The status of one node condition.
pub fn node_condition(node: &Node, type_: &str) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

/// A namespace of its own for one test, deleted when dropped (also when the
/// test panics).
#[derive(Debug)]
pub struct TestNamespace {
    /// The namespace name.
    pub name: String,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl TestNamespace {
    /// Creates `nanny-test-<prefix>-<unique>`, labelled `nanny.ai/test=true`.
    ///
    /// # Errors
    /// When the API refuses.
    pub async fn create(
        cluster: &ClusterInfo,
        client: &Client,
        prefix: &str,
    ) -> anyhow::Result<Self> {
        let unique = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos()
        );
        let name = format!(
            "nanny-test-{prefix}-{}",
            &unique[unique.len().saturating_sub(8)..]
        );
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"nanny.ai/test": "true"}}
        }))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        Ok(Self {
            name,
            kubectl: cluster.kubectl.clone(),
            kubeconfig: cluster.kubeconfig.clone(),
        })
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Synchronous and runtime-free, so it also runs while a test unwinds.
        delete_namespace(&self.kubectl, &self.kubeconfig, &self.name);
    }
}

fn delete_namespace(kubectl: &Path, kubeconfig: &Path, name: &str) {
    let status = std::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "delete",
            "namespace",
            name,
            "--wait=false",
            "--ignore-not-found",
        ])
        .stdout(std::process::Stdio::null())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("warning: could not delete test namespace {name}");
    }
}

/// Polls `check` every 200 ms until it returns `Some`, or fails after `timeout`
/// with `what` and the last value seen.
///
/// # Errors
/// When `timeout` passes first.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let started = Instant::now();
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if started.elapsed() > timeout {
            anyhow::bail!("{what}: not true within {timeout:?} (last error: {last_error:?})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Applies the committed CRDs in `deploy/crds/` (server-side, forced: the
/// chart may have created them first) and waits until both are Established.
///
/// # Errors
/// When a file cannot be read or the API refuses.
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds");
    for file in [
        "healingpolicies.nanny.ai.yaml",
        "healingactions.nanny.ai.yaml",
    ] {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(
            &name,
            &PatchParams::apply("nanny-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying {name}"))?;
        eventually(
            &format!("{name} Established"),
            Duration::from_secs(30),
            || {
                let crds = crds.clone();
                let name = name.clone();
                async move {
                    let established = crds
                        .get(&name)
                        .await?
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    Ok(established.then_some(()))
                }
            },
        )
        .await?;
    }
    Ok(())
}
