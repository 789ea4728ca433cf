//! The safety gate killed mid-window and restarted *without* its audit log
//! keeps enforcing the same limits: at start-up it rebuilds them from the
//! HealingAction history in the cluster, reading as ServiceAccount
//! `nanny-safety-gate` with exactly the rules in deploy/rbac/safety-gate.yaml
//! — and while it cannot read them it stays NOT_SERVING.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::PathBuf, time::Duration};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::{
    Api, Client,
    api::{
        ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    },
    config::{KubeConfigOptions, Kubeconfig},
};
use nanny_cluster_tests::Fixture;
use nanny_proto::{
    service_names,
    v1::{
        ActionType, Decision, GateLimits, Outcome, OutcomeReport, ReviewRequest, Verdict,
        safety_gate_client::SafetyGateClient,
    },
};
use nanny_test_util::{
    cluster::{eventually, install_crds},
    process::{ServiceProcess, cargo_bin},
    requests::crashloop_restart,
};
use serde_json::json;
use tonic::{Code, transport::Channel};

const WAIT: Duration = Duration::from_secs(30);

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

fn healing_actions() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("nanny.ai", "v1alpha1", "HealingAction"),
        "healingactions",
    )
}

/// ServiceAccount `nanny-safety-gate` in the test namespace, bound to the
/// shipped ClusterRole's rules; removes its cluster-scoped objects on drop.
struct GateIdentity {
    kubeconfig: PathBuf,
    cluster_role: String,
    kubectl: PathBuf,
    admin: PathBuf,
}

impl Drop for GateIdentity {
    fn drop(&mut self) {
        // Cluster-scoped test objects outlive the namespace: delete them.
        let _ = std::process::Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.admin)
            .args([
                "delete",
                "clusterrolebinding,clusterrole",
                &self.cluster_role,
                "--ignore-not-found",
                "--wait=false",
            ])
            .stdout(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

async fn kubeconfig_client(path: &std::path::Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

async fn gate_identity(fx: &Fixture) -> GateIdentity {
    let ns = fx.ns();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/rbac/safety-gate.yaml"
    ))
    .unwrap();
    let rules = text
        .split("\n---\n")
        .map(|doc| serde_yaml::from_str::<serde_json::Value>(doc).unwrap())
        .find(|doc| doc["kind"] == "ClusterRole")
        .map(|doc| object::<ClusterRole>(doc).rules.unwrap())
        .unwrap();
    let name = format!("{ns}-safety-gate");
    let labels = json!({ "nanny.ai/test": "true" });
    Api::<ClusterRole>::all(fx.client.clone())
        .create(
            &PostParams::default(),
            &object(json!({ "metadata": { "name": name, "labels": labels }, "rules": rules })),
        )
        .await
        .unwrap();
    Api::<ClusterRoleBinding>::all(fx.client.clone())
        .create(
            &PostParams::default(),
            &object(json!({
                "metadata": { "name": name, "labels": labels },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name },
                "subjects": [{ "kind": "ServiceAccount", "name": "nanny-safety-gate", "namespace": ns }],
            })),
        )
        .await
        .unwrap();
    let identity = GateIdentity {
        kubeconfig: fx
            .service_account_kubeconfig("nanny-safety-gate", None)
            .await,
        cluster_role: name,
        kubectl: fx.cluster.kubectl.clone(),
        admin: fx.cluster.kubeconfig.clone(),
    };
    // The authorizer picks up new bindings within moments.
    let client = kubeconfig_client(&identity.kubeconfig).await;
    let actions: Api<DynamicObject> = Api::all_with(client.clone(), &healing_actions());
    eventually("gate RBAC effective", WAIT, || async {
        Ok(actions
            .list(&ListParams::default().limit(1))
            .await
            .ok()
            .map(|_| ()))
    })
    .await
    .unwrap();
    // Least privilege: the gate's identity reads, it never writes.
    let mine: Api<DynamicObject> = Api::namespaced_with(client, ns, &healing_actions());
    let refused = mine
        .create(
            &PostParams::default(),
            &object(
                json!({ "apiVersion": "nanny.ai/v1alpha1", "kind": "HealingAction",
                "metadata": { "name": "forged" }, "spec": {} }),
            ),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, kube::Error::Api(status) if status.code == 403),
        "{refused}"
    );
    identity
}

async fn start_gate(env: &[(&str, &str)]) -> (ServiceProcess, SafetyGateClient<Channel>) {
    let gate = ServiceProcess::spawn(&cargo_bin("nanny-safety-gate"), env)
        .await
        .unwrap();
    gate.wait_serving(service_names::SAFETY_GATE, WAIT)
        .await
        .unwrap();
    let client = SafetyGateClient::new(gate.channel(nanny_common::tls::COORDINATOR));
    (gate, client)
}

async fn review(client: &mut SafetyGateClient<Channel>, request: ReviewRequest) -> Verdict {
    client.review(request).await.unwrap().into_inner()
}

fn decided(verdict: &Verdict) -> (Decision, &str) {
    (
        verdict.decision(),
        verdict.matched_rules.last().map_or("", String::as_str),
    )
}

/// What the coordinator records for an approved review: the HealingAction,
/// then its status (verdict and, once executed, the result).
async fn record_action(
    admin: &Client,
    request: &ReviewRequest,
    verdict: &Verdict,
    result: Option<&str>,
) {
    let recommendation = request.recommendation.as_ref().unwrap();
    let target = recommendation.target.as_ref().unwrap();
    let (policy_ns, policy_name) = request.policy_ref.split_once('/').unwrap();
    let name = format!("ha-{}", target.name);
    let actions: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), &target.namespace, &healing_actions());
    actions
        .create(
            &PostParams::default(),
            &object(json!({
                "apiVersion": "nanny.ai/v1alpha1",
                "kind": "HealingAction",
                "metadata": {
                    "name": name,
                    "labels": {
                        "nanny.ai/policy": format!("{policy_ns}.{policy_name}"),
                        "nanny.ai/target-uid": target.uid,
                        "nanny.ai/action-type": "RestartPod",
                        "nanny.ai/open": if result.is_some() { "false" } else { "true" },
                    },
                },
                "spec": {
                    "policyRef": request.policy_ref,
                    "target": { "kind": target.kind, "namespace": target.namespace,
                                "name": target.name, "uid": target.uid },
                    "action": { "type": "RestartPod" },
                    "source": { "kind": "Rule", "name": "crashloop-restart" },
                    "confidence": recommendation.confidence,
                    "reasoning": "the pod is crash-looping",
                    "recommendationId": recommendation.id,
                    "snapshotId": "snapshot-1",
                },
            })),
        )
        .await
        .unwrap();
    let decided_at = verdict.decided_at.unwrap_or_default();
    let decided_at = k8s_openapi::jiff::Timestamp::new(decided_at.seconds, decided_at.nanos)
        .unwrap()
        .to_string();
    let mut status = json!({
        "phase": "Approved",
        "verdict": {
            "decision": "Approved",
            "matchedRules": verdict.matched_rules,
            "auditId": verdict.audit_id,
            "decidedAt": decided_at,
        },
    });
    if let Some(outcome) = result {
        status["phase"] = json!(outcome);
        status["result"] = json!({
            "outcome": outcome,
            "finishedAt": k8s_openapi::jiff::Timestamp::now().to_string(),
        });
    }
    actions
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .unwrap();
}

/// Requests under policy `<ns>/tight`, which allows two actions an hour.
fn tight(ns: &str, name: &str) -> ReviewRequest {
    let mut request = crashloop_restart(ns, name);
    request.policy_ref = format!("{ns}/tight");
    if let Some(policy) = request.policy.as_mut() {
        policy.limits = Some(GateLimits {
            max_actions_per_hour: 2,
            ..GateLimits::default()
        });
    }
    request
}

/// A new proposal for the same target. It needs its own recommendation id:
/// the gate lets the same id reviewed again keep the approval it holds (a
/// caller retrying after a lost write), so only a new one meets the cooldown.
fn proposed_again(request: &ReviewRequest, round: u32) -> ReviewRequest {
    let mut again = request.clone();
    if let Some(recommendation) = again.recommendation.as_mut() {
        recommendation.id = format!("{}-again-{round}", recommendation.id);
    }
    again
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_gate_without_its_audit_log_keeps_cooldowns_and_rate_limits() {
    let Some(fx) = Fixture::new("gate-restart").await else {
        return;
    };
    let ns = fx.ns().to_owned();
    install_crds(&fx.client).await.unwrap();
    let identity = gate_identity(&fx).await;
    let kubeconfig = identity.kubeconfig.to_string_lossy().into_owned();
    let audit_dir = std::env::temp_dir().join(format!("{ns}-audit"));
    std::fs::create_dir_all(&audit_dir).unwrap();
    let audit = audit_dir.join("audit.jsonl").to_string_lossy().into_owned();
    let cluster_env = [
        ("NANNY_KUBERNETES__ENABLED", "true"),
        ("NANNY_KUBERNETES__KUBECONFIG", kubeconfig.as_str()),
    ];
    let mut first_env = cluster_env.to_vec();
    first_env.push(("NANNY_AUDIT__PATH", audit.as_str()));

    let (gate, mut client) = start_gate(&first_env).await;
    // Restart pod `web`; the remediator reports it done.
    let web = crashloop_restart(&ns, "web");
    let verdict = review(&mut client, web.clone()).await;
    assert_eq!(verdict.decision(), Decision::Approved, "{verdict:?}");
    client
        .record_outcome(OutcomeReport {
            recommendation_id: verdict.recommendation_id.clone(),
            audit_id: verdict.audit_id.clone(),
            policy_ref: web.policy_ref.clone(),
            target: web.recommendation.as_ref().unwrap().target.clone(),
            action_type: ActionType::RestartPod as i32,
            outcome: Outcome::Succeeded as i32,
            ..OutcomeReport::default()
        })
        .await
        .unwrap();
    record_action(&fx.client, &web, &verdict, Some("Succeeded")).await;
    // The same pod again: in its cooldown.
    let again = review(&mut client, proposed_again(&web, 1)).await;
    assert_eq!(decided(&again), (Decision::Denied, "cooldown"));
    // Policy `tight` spends its two actions an hour (approved, not yet run).
    for name in ["api-0", "api-1"] {
        let request = tight(&ns, name);
        let verdict = review(&mut client, request.clone()).await;
        assert_eq!(verdict.decision(), Decision::Approved, "{verdict:?}");
        record_action(&fx.client, &request, &verdict, None).await;
    }
    let over = review(&mut client, tight(&ns, "api-2")).await;
    assert_eq!(decided(&over), (Decision::Denied, "rate-limit-policy"));

    // kill -9, and the audit log is gone with the pod's emptyDir.
    gate.kill().await.unwrap();
    std::fs::remove_dir_all(&audit_dir).unwrap();

    let (gate, mut client) = start_gate(&cluster_env).await;
    let restarted = review(&mut client, proposed_again(&web, 2)).await;
    assert_eq!(
        decided(&restarted),
        (Decision::Denied, "cooldown"),
        "{restarted:?}\n{}",
        gate.logs().join("\n")
    );
    let over = review(&mut client, tight(&ns, "api-2")).await;
    assert_eq!(decided(&over), (Decision::Denied, "rate-limit-policy"));
    // Control: a target nobody acted on is approved.
    let fresh = review(&mut client, crashloop_restart(&ns, "other")).await;
    assert_eq!(fresh.decision(), Decision::Approved, "{fresh:?}");
    assert!(
        gate.logs().iter().any(
            |l| l.contains("Restored limits from the audit log and the HealingAction history.")
        ),
        "{}",
        gate.logs().join("\n")
    );
    assert!(gate.terminate().await.unwrap().success());
    drop(identity);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gate_that_cannot_read_its_history_stays_not_serving() {
    let Some(fx) = Fixture::new("gate-unreachable").await else {
        return;
    };
    // The admin kubeconfig, pointed at a port nothing listens on.
    let text = std::fs::read_to_string(&fx.cluster.kubeconfig).unwrap();
    let mut kubeconfig: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    for cluster in kubeconfig["clusters"].as_sequence_mut().unwrap() {
        cluster["cluster"]["server"] = "https://127.0.0.1:9".into();
    }
    let path = std::env::temp_dir().join(format!("{}-unreachable.kubeconfig", fx.ns()));
    std::fs::write(&path, serde_yaml::to_string(&kubeconfig).unwrap()).unwrap();
    let path_text = path.to_string_lossy().into_owned();

    let gate = ServiceProcess::spawn(
        &cargo_bin("nanny-safety-gate"),
        &[
            ("NANNY_KUBERNETES__ENABLED", "true"),
            ("NANNY_KUBERNETES__KUBECONFIG", path_text.as_str()),
        ],
    )
    .await
    .unwrap();
    // Several retries' worth of time: never serving, and no verdicts.
    assert!(
        gate.wait_serving(service_names::SAFETY_GATE, Duration::from_secs(3))
            .await
            .is_err(),
        "served without its history"
    );
    let mut client = SafetyGateClient::new(gate.channel(nanny_common::tls::COORDINATOR));
    let refused = client
        .review(crashloop_restart(fx.ns(), "web"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        gate.logs()
            .iter()
            .any(|l| l.contains("Cannot list HealingActions")),
        "{}",
        gate.logs().join("\n")
    );
    assert!(gate.terminate().await.unwrap().success());
    let _ = std::fs::remove_file(path);
}

/// The gate keeps its audit chain's head in a ConfigMap (the one write
/// deploy/rbac/safety-gate.yaml grants it): a log cut after the last record
/// any HealingAction anchors still shows as truncated against it.
#[tokio::test]
async fn the_gate_anchors_its_audit_head_where_a_cut_tail_shows() {
    let Some(fx) = Fixture::new("gate-anchor").await else {
        return;
    };
    let ns = fx.ns().to_owned();
    let identity = gate_identity(&fx).await;
    // The Role, its binding and the ConfigMap as shipped, in this namespace.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/rbac/safety-gate.yaml"
    ))
    .unwrap();
    for doc in text.split("\n---\n") {
        let mut doc = serde_yaml::from_str::<serde_json::Value>(doc).unwrap();
        doc["metadata"]["namespace"] = json!(ns);
        if doc["kind"] == "RoleBinding" {
            doc["subjects"][0]["namespace"] = json!(ns);
        }
        let kind = doc["kind"].as_str().unwrap().to_owned();
        let resource = match kind.as_str() {
            "Role" => ("rbac.authorization.k8s.io", "v1", "roles"),
            "RoleBinding" => ("rbac.authorization.k8s.io", "v1", "rolebindings"),
            "ConfigMap" => ("", "v1", "configmaps"),
            _ => continue,
        };
        let api: Api<DynamicObject> = Api::namespaced_with(
            fx.client.clone(),
            &ns,
            &ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(resource.0, resource.1, &kind),
                resource.2,
            ),
        );
        api.create(&PostParams::default(), &object(doc))
            .await
            .unwrap();
    }
    let kubeconfig = identity.kubeconfig.to_string_lossy().into_owned();
    let audit_dir = std::env::temp_dir().join(format!("{ns}-anchor"));
    std::fs::create_dir_all(&audit_dir).unwrap();
    let audit = audit_dir.join("audit.jsonl");
    let audit_path = audit.to_string_lossy().into_owned();
    let configmap = format!("{ns}/nanny-audit-anchor");
    let env = [
        ("NANNY_AUDIT__PATH", audit_path.as_str()),
        ("NANNY_AUDIT__ANCHOR_CONFIGMAP", configmap.as_str()),
        ("NANNY_AUDIT__ANCHOR_INTERVAL_SECS", "1"),
        ("NANNY_KUBERNETES__KUBECONFIG", kubeconfig.as_str()),
    ];
    let (_gate, mut client) = start_gate(&env).await;
    for name in ["web", "api", "db"] {
        review(&mut client, crashloop_restart(&ns, name)).await;
    }
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(fx.client.clone(), &ns);
    eventually("the head anchored at record 3", WAIT, || async {
        let data = configmaps.get("nanny-audit-anchor").await?.data;
        Ok(data.filter(|d| d.get("seq").map(String::as_str) == Some("3")))
    })
    .await
    .unwrap();

    let verify = |file: &std::path::Path| {
        let args = ["--anchor-configmap", &configmap, "--kubeconfig"].map(std::ffi::OsStr::new);
        let kubeconfig = fx.cluster.kubeconfig.as_os_str();
        nanny_cluster_tests::audit_verify(file, &[&args[..], &[kubeconfig]].concat())
    };
    let (ok, report) = verify(&audit);
    assert!(ok && report.contains("1 anchors hold"), "{report}");
    // No HealingAction anchors these records: only the ConfigMap shows the
    // cut.
    let cut = audit_dir.join("cut.jsonl");
    let kept: Vec<String> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .take(2)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&cut, kept.concat()).unwrap();
    let (ok, report) = verify(&cut);
    assert!(
        !ok && report.contains("truncated") && report.contains("ConfigMap"),
        "{report}"
    );
    println!("audit head anchor: {}", report.trim());
}
