//! Shared setup for the cluster-tier tests in `tests/`.
//!
//! These tests need the local cluster: `cargo xtask test` starts it, runs
//! them and stops it. Run alone with `cargo xtask cluster up` first; with
//! `CI=true` a missing cluster fails instead of skipping.

// Test support: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod chart;
pub mod model;
pub mod pipeline;
pub mod receiver;

use std::{path::PathBuf, time::Duration};

use k8s_openapi::api::{
    authentication::v1::TokenRequest, core::v1::ServiceAccount, rbac::v1::ClusterRoleBinding,
};
use kube::Resource;
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    config::AuthInfo,
};
use nanny_crd::HealingAction;
use nanny_proto::v1::{
    Action, Decision, ExecuteRequest, ObjectRef, Recommendation, Verdict,
    action::Kind as ActionKind,
};
use nanny_test_util::cluster::{ClusterInfo, TestNamespace, eventually};
use serde_json::json;

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
    /// real bound token for it from the TokenRequest API, as a pod would get.
    pub async fn service_account_token(&self, name: &str) -> String {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), self.ns());
        let account: ServiceAccount =
            serde_json::from_value(serde_json::json!({ "metadata": { "name": name } })).unwrap();
        accounts
            .create(&PostParams::default(), &account)
            .await
            .unwrap();
        let request: TokenRequest = serde_json::from_value(
            serde_json::json!({ "spec": { "audiences": [], "expirationSeconds": 3600 } }),
        )
        .unwrap();
        accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap()
            .status
            .unwrap()
            .token
    }

    /// Creates ServiceAccount `name` and returns a client that authenticates
    /// with its token — so RBAC and admission see that identity, not the admin.
    pub async fn service_account_client(&self, name: &str) -> Client {
        let token = self.service_account_token(name).await;
        let mut config = self.cluster.config().await.unwrap();
        config.auth_info = AuthInfo {
            token: Some(token.into()),
            ..AuthInfo::default()
        };
        Client::try_from(config).unwrap()
    }

    /// Creates ServiceAccount `name` and writes a kubeconfig file that
    /// authenticates with its token, for a service process to use; `server`
    /// replaces the API server URL (e.g. a proxy in front of it).
    pub async fn service_account_kubeconfig(&self, name: &str, server: Option<&str>) -> PathBuf {
        let token = self.service_account_token(name).await;
        let admin = std::fs::read_to_string(&self.cluster.kubeconfig).unwrap();
        let mut kubeconfig: serde_yaml::Value = serde_yaml::from_str(&admin).unwrap();
        if let Some(server) = server {
            for cluster in kubeconfig["clusters"].as_sequence_mut().unwrap() {
                cluster["cluster"]["server"] = server.into();
            }
        }
        kubeconfig["users"] =
            serde_yaml::from_str(&format!("[{{name: {name}, user: {{token: {token}}}}}]")).unwrap();
        for context in kubeconfig["contexts"].as_sequence_mut().unwrap() {
            context["context"]["user"] = name.into();
        }
        let path = std::env::temp_dir().join(format!("{}-{name}.kubeconfig", self.ns()));
        std::fs::write(&path, serde_yaml::to_string(&kubeconfig).unwrap()).unwrap();
        path
    }

    /// [`Self::service_account_kubeconfig`] for a ServiceAccount bound to
    /// cluster-admin: RBAC refuses it nothing, so whatever is refused, a
    /// service's own checks or an admission policy refused.
    pub async fn cluster_admin_kubeconfig(&self, name: &str) -> PathBuf {
        let ns = self.ns();
        let binding: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": { "name": format!("{ns}-{name}-admin"), "labels": { "nanny.ai/test": "true" } },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin" },
            "subjects": [{ "kind": "ServiceAccount", "name": name, "namespace": ns }],
        }))
        .unwrap();
        Api::<ClusterRoleBinding>::all(self.client.clone())
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();
        self.service_account_kubeconfig(name, None).await
    }

    /// The collector as a process watching this cluster (admin kubeconfig,
    /// the cluster's Prometheus), SERVING.
    ///
    /// # Panics
    /// When it does not start or serve within a minute.
    pub async fn start_collector(&self) -> nanny_test_util::process::ServiceProcess {
        use nanny_test_util::process::{ServiceProcess, cargo_bin};
        let kubeconfig = self.cluster.kubeconfig.to_string_lossy().into_owned();
        let collector = ServiceProcess::spawn(
            &cargo_bin("nanny-collector"),
            &[
                ("NANNY_KUBERNETES__KUBECONFIG", &kubeconfig),
                ("NANNY_PROMETHEUS__URL", &self.cluster.prometheus_url),
            ],
        )
        .await
        .unwrap();
        collector
            .wait_serving("nanny.v1.Collector", Duration::from_secs(60))
            .await
            .unwrap();
        collector
    }

    /// The namespace name.
    pub fn ns(&self) -> &str {
        &self.namespace.name
    }
}

/// Creates a HealingAction under `policy_ref` and writes its status through
/// the status subresource, as the coordinator would.
pub async fn create_action(
    api: &Api<HealingAction>,
    name: &str,
    policy_ref: &str,
    status: serde_json::Value,
) {
    let action: HealingAction = serde_json::from_value(json!({
        "apiVersion": "nanny.ai/v1alpha1",
        "kind": "HealingAction",
        "metadata": { "name": name },
        "spec": {
            "policyRef": policy_ref,
            "target": { "kind": "Pod", "namespace": "shop", "name": format!("{name}-pod"), "uid": "u-1", "resourceVersion": "42" },
            "action": { "type": "PatchResources", "params": { "container": "app", "limits": { "memoryBytes": 805_306_368 } } },
            "source": { "kind": "Rule", "name": "oom-raise-memory" },
            "confidence": 100,
            "reasoning": "OOMKilled 3 times in 10 minutes",
            "recommendationId": format!("rec-{name}"),
            "snapshotId": "snap-1",
        },
    }))
    .unwrap();
    // The CRD was just established: the API may need a moment to serve it.
    eventually("HealingAction created", Duration::from_secs(30), || {
        let api = api.clone();
        let action = action.clone();
        async move { Ok(Some(api.create(&PostParams::default(), &action).await?)) }
    })
    .await
    .unwrap();
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap();
}

/// Applies the ValidatingAdmissionPolicies and bindings in
/// `deploy/admission/<file>`. With `namespace`, each binding is this test's
/// own (`<binding>-<namespace>`) and selects only that namespace, so other
/// tests' writers are not affected.
///
/// # Panics
/// When the file does not parse or the API refuses.
pub async fn install_admission_policy(client: &Client, file: &str, namespace: Option<&str>) {
    use k8s_openapi::api::admissionregistration::v1::{
        ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    };
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../deploy/admission/{file}"));
    let text = std::fs::read_to_string(&path).unwrap();
    let apply = PatchParams::apply("nanny-tests").force();
    for doc in text.split("\n---\n") {
        let kind = serde_yaml::from_str::<serde_json::Value>(doc).unwrap()["kind"].clone();
        if kind == "ValidatingAdmissionPolicy" {
            let policy: ValidatingAdmissionPolicy = serde_yaml::from_str(doc).unwrap();
            let name = policy.metadata.name.clone().unwrap();
            Api::<ValidatingAdmissionPolicy>::all(client.clone())
                .patch(&name, &apply, &Patch::Apply(&policy))
                .await
                .unwrap_or_else(|e| panic!("{file}: policy {name}: {e}"));
            continue;
        }
        let mut binding: ValidatingAdmissionPolicyBinding = serde_yaml::from_str(doc).unwrap();
        if let Some(namespace) = namespace {
            let name = binding.metadata.name.clone().unwrap();
            binding.metadata.name = Some(format!("{name}-{namespace}"));
            binding.spec.as_mut().unwrap().match_resources = Some(
                serde_json::from_value(json!({
                    "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": namespace } },
                }))
                .unwrap(),
            );
        }
        let name = binding.metadata.name.clone().unwrap();
        Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
            .patch(&name, &apply, &Patch::Apply(&binding))
            .await
            .unwrap_or_else(|e| panic!("{file}: binding {name}: {e}"));
    }
}

/// The snapshot's view of `object`: kind, version, namespace, name, uid, resourceVersion.
pub fn object_ref<K: Resource<DynamicType = ()>>(object: &K) -> ObjectRef {
    let meta = object.meta();
    ObjectRef {
        kind: K::kind(&()).into_owned(),
        api_version: K::api_version(&()).into_owned(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        resource_version: meta.resource_version.clone().unwrap_or_default(),
    }
}

/// An Execute with an unsigned APPROVED verdict for exactly this
/// recommendation: what a test signs as the gate would (or not, to attack).
pub fn approved(action_id: &str, action: ActionKind, target: ObjectRef) -> ExecuteRequest {
    let recommendation_id = format!("rec-{action_id}");
    ExecuteRequest {
        action_id: action_id.to_owned(),
        recommendation: Some(Recommendation {
            id: recommendation_id.clone(),
            action: Some(Action { kind: Some(action) }),
            target: Some(target),
            ..Recommendation::default()
        }),
        verdict: Some(Verdict {
            recommendation_id,
            decision: Decision::Approved as i32,
            ..Verdict::default()
        }),
        verification_timeout_seconds: 45,
        ..ExecuteRequest::default()
    }
}

/// Runs `nannyctl audit verify FILE --public-key <test PKI> ARGS…` and
/// returns whether it succeeded and what it printed.
///
/// # Panics
/// When nannyctl cannot be run.
pub fn audit_verify(file: &std::path::Path, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let output = std::process::Command::new(nanny_test_util::process::cargo_bin("nannyctl"))
        .args(["audit", "verify"])
        .arg(file)
        .arg("--public-key")
        .arg(nanny_test_util::pki::verifying_key())
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Creates the object `value` (JSON, as `kubectl create -f` takes it)
/// through `api`.
///
/// # Panics
/// When the API server refuses it.
pub async fn create_json<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).unwrap();
    match api.create(&PostParams::default(), &object).await {
        Ok(created) => created,
        Err(error) => panic!("create {object:?}: {error}"),
    }
}

/// Deletes a cluster-scoped test object when dropped, also while a test
/// unwinds (a webhook configuration left behind would be judged by every
/// later test's collector).
#[derive(Debug)]
pub struct DeleteOnDrop {
    kubectl: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
    kind: &'static str,
    name: String,
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let status = std::process::Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["delete", self.kind, &self.name, "--ignore-not-found"])
            .stdout(std::process::Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("warning: could not delete {} {}", self.kind, self.name);
        }
    }
}

impl DeleteOnDrop {
    /// Deletes `kind` `name` (kubectl's spelling) from `cluster` when dropped.
    pub fn new(cluster: &ClusterInfo, kind: &'static str, name: &str) -> Self {
        Self {
            kubectl: cluster.kubectl.clone(),
            kubeconfig: cluster.kubeconfig.clone(),
            kind,
            name: name.to_owned(),
        }
    }
}

/// Asserts `status` is a report's: closed by the gate (phase Denied, "nothing
/// to execute"), with no result, since nothing ran.
///
/// # Panics
/// When it is anything else.
pub fn assert_closed_as_report(status: &nanny_crd::HealingActionStatus) {
    assert_eq!(status.phase, Some(nanny_crd::Phase::Denied), "{status:?}");
    assert!(status.result.is_none(), "nothing executed: {status:?}");
    assert!(
        status.conditions.iter().any(|c| c
            .message
            .contains("nothing to execute: reported to humans only")),
        "{status:?}"
    );
}
