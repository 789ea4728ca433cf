//! The remediator against the real API server, running as ServiceAccount
//! `nanny-remediator` bound to exactly the rules in deploy/rbac/remediator.yaml:
//! every action changes real objects, dry runs change nothing, rollbacks
//! restore the previous spec, replays act once, and what RBAC, a PDB or a
//! replaced object forbid is refused with nothing half-applied.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    authentication::v1::TokenRequest,
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::Job,
    core::v1::{ConfigMap, Node, PersistentVolumeClaim, Pod, ServiceAccount},
    rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use nanny_cluster_tests::{Fixture, approved, object_ref as target};
use nanny_common::server::Listeners;
use nanny_proto::v1::{
    ActionResult, CordonNode, Decision, DeleteJob, DrainNode, ExecuteRequest, ExpandPvc, ObjectRef,
    Outcome, PatchResources, Resources, RestartPod, RollbackRequest, RolloutRestart, ScaleHpa,
    UncordonNode, Verdict, VerificationState, action::Kind as ActionKind,
    remediator_client::RemediatorClient,
};
use nanny_remediator::store;
use nanny_test_util::{
    cluster::eventually,
    faults::{self, HpaAtMax, PodSpec},
    nodes::FakeNode,
};
use serde_json::json;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(60);

#[path = "remediator/budgets.rs"]
mod budgets;
#[path = "remediator/integrity.rs"]
mod integrity;
#[path = "remediator/jobs.rs"]
mod jobs;

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

/// The remediator, in-process on ephemeral ports, authenticating as
/// `<ns>:nanny-remediator` with the shipped RBAC (optionally narrowed).
struct Remediator {
    grpc: RemediatorClient<Channel>,
    http_addr: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    cluster_role: String,
    kubectl: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
    /// Recommendation id and target of each action executed, by action id:
    /// what a rollback verdict is signed for.
    executed: std::sync::Mutex<std::collections::HashMap<String, (String, ObjectRef)>>,
}

impl Drop for Remediator {
    fn drop(&mut self) {
        // Cluster-scoped test objects outlive the namespace: delete them.
        let _ = std::process::Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "delete",
                "clusterrolebinding,clusterrole",
                &self.cluster_role,
                "--ignore-not-found",
                "--wait=false",
            ])
            .stdout(std::process::Stdio::null())
            .status();
    }
}

/// A client config authenticating as ServiceAccount `name` in this test's
/// namespace with a bound token, as a pod would.
async fn service_account_config(fx: &Fixture, name: &str) -> kube::Config {
    let accounts: Api<ServiceAccount> = Api::namespaced(fx.client.clone(), fx.ns());
    accounts
        .create(
            &PostParams::default(),
            &object(json!({ "metadata": { "name": name } })),
        )
        .await
        .unwrap();
    let request: TokenRequest =
        object(json!({ "spec": { "audiences": [], "expirationSeconds": 600 } }));
    let token = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap();
    let mut config = fx.cluster.config().await.unwrap();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.status.unwrap().token.into()),
        ..Default::default()
    };
    config
}

fn shipped_rbac() -> (Vec<PolicyRule>, Vec<PolicyRule>) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/rbac/remediator.yaml"
    ))
    .unwrap();
    let mut cluster_rules = None;
    let mut record_rules = None;
    for doc in text.split("\n---\n") {
        let value: serde_json::Value = serde_yaml::from_str(doc).unwrap();
        match value["kind"].as_str() {
            Some("ClusterRole") => {
                cluster_rules = Some(object::<ClusterRole>(value).rules.unwrap())
            }
            Some("Role") => record_rules = Some(object::<Role>(value).rules.unwrap()),
            _ => {}
        }
    }
    (cluster_rules.unwrap(), record_rules.unwrap())
}

impl Remediator {
    async fn start(fx: &Fixture) -> Self {
        Self::start_with(fx, |_| {}).await
    }

    async fn start_with(fx: &Fixture, narrow: impl FnOnce(&mut Vec<PolicyRule>)) -> Self {
        let ns = fx.ns();
        let (mut rules, record_rules) = shipped_rbac();
        narrow(&mut rules);
        let name = format!("{ns}-remediator");
        let labels = json!({ "nanny.ai/test": "true" });
        Api::<ClusterRole>::all(fx.client.clone())
            .create(
                &PostParams::default(),
                &object(json!({ "metadata": { "name": name, "labels": labels }, "rules": rules })),
            )
            .await
            .unwrap();
        let subjects =
            json!([{ "kind": "ServiceAccount", "name": "nanny-remediator", "namespace": ns }]);
        Api::<ClusterRoleBinding>::all(fx.client.clone())
            .create(&PostParams::default(), &object(json!({ "metadata": { "name": name, "labels": labels },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name }, "subjects": subjects })))
            .await
            .unwrap();
        Api::<Role>::namespaced(fx.client.clone(), ns)
            .create(
                &PostParams::default(),
                &object(json!({ "metadata": { "name": "records" }, "rules": record_rules })),
            )
            .await
            .unwrap();
        Api::<RoleBinding>::namespaced(fx.client.clone(), ns)
            .create(&PostParams::default(), &object(json!({ "metadata": { "name": "records" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "records" }, "subjects": subjects })))
            .await
            .unwrap();
        let identity_config = service_account_config(fx, "nanny-remediator").await;
        let identity = Client::try_from(identity_config.clone()).unwrap();
        // The authorizer picks up new bindings within moments.
        let records: Api<ConfigMap> = Api::namespaced(identity.clone(), ns);
        let pods: Api<Pod> = Api::namespaced(identity.clone(), ns);
        eventually(
            "remediator RBAC effective",
            Duration::from_secs(20),
            || async {
                Ok((records.get_opt("probe").await.is_ok()
                    && pods.list(&ListParams::default()).await.is_ok())
                .then_some(()))
            },
        )
        .await
        .unwrap();

        let defaults = nanny_remediator::Config::default();
        let config = nanny_remediator::Config {
            state_namespace: ns.to_owned(),
            verification: nanny_remediator::config::VerificationConfig {
                poll_interval_ms: 100,
                // kwok's crash-loop stage crashes a container 2-5 s after it starts.
                stable_secs: 6,
                ..defaults.verification.clone()
            },
            tls: nanny_test_util::pki::tls("nanny-remediator"),
            verdicts: nanny_remediator::config::VerdictsConfig {
                public_keys: vec![nanny_test_util::pki::verifying_key()],
            },
            records: nanny_remediator::config::RecordsConfig {
                mac_key: Some(nanny_test_util::pki::records_mac_key()),
                ..defaults.records.clone()
            },
            ..defaults
        };
        let listeners = Listeners::ephemeral().await.unwrap();
        let grpc_addr = listeners.grpc_addr().unwrap();
        let http_addr = listeners.http_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(nanny_remediator::serve(
            config,
            identity_config,
            listeners,
            async move {
                let _ = stopped.await;
            },
        ));
        let grpc = RemediatorClient::new(nanny_test_util::pki::channel(
            grpc_addr,
            nanny_common::tls::COORDINATOR,
            "nanny-remediator",
        ));
        Self {
            grpc,
            http_addr,
            _stop: stop,
            cluster_role: name,
            kubectl: fx.cluster.kubectl.clone(),
            kubeconfig: fx.cluster.kubeconfig.clone(),
            executed: std::sync::Mutex::default(),
        }
    }

    /// Sends `request` with its verdict signed by the test PKI's gate key,
    /// as the coordinator forwards the gate's signed verdict.
    async fn execute(&self, mut request: ExecuteRequest) -> Result<ActionResult, tonic::Status> {
        nanny_test_util::pki::sign(&mut request);
        if let Some(rec) = &request.recommendation {
            self.executed.lock().unwrap().insert(
                request.action_id.clone(),
                (rec.id.clone(), rec.target.clone().unwrap_or_default()),
            );
        }
        self.grpc
            .clone()
            .execute(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Rolls back `action_id` with a rollback verdict signed for it.
    async fn rollback(&self, action_id: &str) -> Result<ActionResult, tonic::Status> {
        let (recommendation_id, target) = self
            .executed
            .lock()
            .unwrap()
            .get(action_id)
            .cloned()
            .unwrap_or_default();
        let mut request = RollbackRequest {
            action_id: action_id.to_owned(),
            reason: "test".to_owned(),
            target: Some(target),
            verdict: None,
        };
        nanny_test_util::pki::sign_rollback(&mut request, &recommendation_id);
        self.grpc
            .clone()
            .rollback(request)
            .await
            .map(tonic::Response::into_inner)
    }

    async fn metrics(&self) -> String {
        nanny_test_util::http::get(self.http_addr, "/metrics")
            .await
            .unwrap()
            .1
    }
}

fn dry(mut request: ExecuteRequest) -> ExecuteRequest {
    request.dry_run = true;
    request
}

fn outcome(result: &ActionResult) -> Outcome {
    Outcome::try_from(result.outcome).unwrap()
}

fn verification(result: &ActionResult) -> VerificationState {
    result
        .verification
        .as_ref()
        .map_or(VerificationState::Unspecified, |v| v.state())
}

async fn ready_pod(fx: &Fixture, app: &str) -> Pod {
    eventually(&format!("{app} pod Ready"), WAIT, || async {
        let pods = faults::pods_of(&fx.client, fx.ns(), app).await?;
        Ok(pods.into_iter().find(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        }))
    })
    .await
    .unwrap()
}

async fn rolled_out(fx: &Fixture, name: &str) -> Deployment {
    let deployments: Api<Deployment> = Api::namespaced(fx.client.clone(), fx.ns());
    eventually(&format!("{name} rolled out"), WAIT, || async {
        let d = deployments.get(name).await?;
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let s = d.status.clone().unwrap_or_default();
        Ok((s.observed_generation == d.metadata.generation
            && s.available_replicas.unwrap_or(0) == want
            && s.updated_replicas.unwrap_or(0) == want)
            .then_some(d))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn restart_pod_replaces_it_once_dry_run_changes_nothing_and_metrics_count_it() {
    let Some(fx) = Fixture::new("rem-restart").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    faults::deployment(&fx.client, fx.ns(), "web", 1, &PodSpec::default())
        .await
        .unwrap();
    let pod = ready_pod(&fx, "web").await;
    let pods: Api<Pod> = Api::namespaced(fx.client.clone(), fx.ns());

    let preview = remediator
        .execute(dry(approved(
            "restart-web",
            ActionKind::RestartPod(RestartPod {}),
            target(&pod),
        )))
        .await
        .unwrap();
    assert_eq!(outcome(&preview), Outcome::DryRun, "{preview:?}");
    // An eviction is summarised (kind, name, uid, owner, state), never shown.
    assert!(
        preview.dry_run_diff.starts_with("evict Pod/")
            && preview.dry_run_diff.contains("owned by ReplicaSet")
            && !preview.dry_run_diff.contains("image"),
        "{}",
        preview.dry_run_diff
    );
    assert_eq!(
        pods.get(&pod.name_any()).await.unwrap().uid(),
        pod.uid(),
        "a dry run deletes nothing"
    );

    let request = approved(
        "restart-web",
        ActionKind::RestartPod(RestartPod {}),
        target(&pod),
    );
    let result = remediator.execute(request.clone()).await.unwrap();
    assert_eq!(outcome(&result), Outcome::Succeeded, "{result:?}");
    assert_eq!(verification(&result), VerificationState::Passed);
    assert!(
        result.pre_image_ref.ends_with("/nanny-action-restart-web"),
        "{result:?}"
    );
    assert!(
        pods.get_opt(&pod.name_any())
            .await
            .unwrap()
            .is_none_or(|p| p.uid() != pod.uid())
    );
    let replacement = ready_pod(&fx, "web").await;
    assert_ne!(replacement.uid(), pod.uid());

    // The same Execute again: answered from the record, nothing deleted.
    let again = remediator.execute(request).await.unwrap();
    assert_eq!(again, result);
    assert_eq!(
        pods.get(&replacement.name_any()).await.unwrap().uid(),
        replacement.uid()
    );
    let live: Vec<_> = faults::pods_of(&fx.client, fx.ns(), "web").await.unwrap();
    assert_eq!(
        live.len(),
        1,
        "exactly one pod: {:?}",
        live.iter().map(ResourceExt::name_any).collect::<Vec<_>>()
    );

    let metrics = remediator.metrics().await;
    let line = format!(
        r#"nanny_healing_actions_total{{action_type="restart_pod",namespace="{}",status="succeeded"}} 2"#,
        fx.ns()
    );
    assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
    assert!(metrics.contains(r#"nanny_healing_action_duration_seconds_count{action_type="restart_pod",status="dry_run"} 1"#), "{metrics}");
}

#[tokio::test]
async fn rollout_restart_rolls_out_rolls_back_exactly_and_refuses_a_replaced_deployment() {
    let Some(fx) = Fixture::new("rem-rollout").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    faults::deployment(&fx.client, fx.ns(), "web", 2, &PodSpec::default())
        .await
        .unwrap();
    let before = rolled_out(&fx, "web").await;
    let deployments: Api<Deployment> = Api::namespaced(fx.client.clone(), fx.ns());

    let preview = remediator
        .execute(dry(approved(
            "rollout-web",
            ActionKind::RolloutRestart(RolloutRestart {}),
            target(&before),
        )))
        .await
        .unwrap();
    assert_eq!(outcome(&preview), Outcome::DryRun, "{preview:?}");
    assert!(
        preview
            .dry_run_diff
            .contains("+        kubectl.kubernetes.io/restartedAt:"),
        "{}",
        preview.dry_run_diff
    );
    assert_eq!(
        deployments.get("web").await.unwrap().spec,
        before.spec,
        "a dry run changes nothing"
    );

    let result = remediator
        .execute(approved(
            "rollout-web",
            ActionKind::RolloutRestart(RolloutRestart {}),
            target(&before),
        ))
        .await
        .unwrap();
    assert_eq!(outcome(&result), Outcome::Succeeded, "{result:?}");
    let after = deployments.get("web").await.unwrap();
    let annotations = after
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap_or_default();
    assert!(
        annotations.contains_key("kubectl.kubernetes.io/restartedAt"),
        "{annotations:?}"
    );
    assert!(
        after
            .metadata
            .managed_fields
            .unwrap()
            .iter()
            .any(|f| f.manager.as_deref() == Some("nanny-remediator"))
    );

    let rollback = remediator.rollback("rollout-web").await.unwrap();
    assert_eq!(outcome(&rollback), Outcome::RolledBack, "{rollback:?}");
    assert_eq!(verification(&rollback), VerificationState::Passed);
    assert_eq!(
        deployments.get("web").await.unwrap().spec,
        before.spec,
        "the previous spec, exactly"
    );
    assert_eq!(
        remediator.rollback("rollout-web").await.unwrap(),
        rollback,
        "a second rollback only repeats the answer"
    );

    // Deleted and re-created under the same name between snapshot and execution.
    faults::deployment(&fx.client, fx.ns(), "api", 1, &PodSpec::default())
        .await
        .unwrap();
    let snapshot = deployments.get("api").await.unwrap();
    deployments
        .delete("api", &DeleteParams::default())
        .await
        .unwrap();
    eventually("api gone", WAIT, || async {
        Ok(deployments.get_opt("api").await?.is_none().then_some(()))
    })
    .await
    .unwrap();
    faults::deployment(&fx.client, fx.ns(), "api", 1, &PodSpec::default())
        .await
        .unwrap();
    let refused = remediator
        .execute(approved(
            "rollout-api",
            ActionKind::RolloutRestart(RolloutRestart {}),
            target(&snapshot),
        ))
        .await
        .unwrap();
    assert_eq!(outcome(&refused), Outcome::Refused, "{refused:?}");
    assert!(
        refused.error.contains("was replaced since the snapshot"),
        "{}",
        refused.error
    );
    let new = deployments.get("api").await.unwrap();
    assert!(
        new.spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap_or_default()
            .is_empty(),
        "the new object is untouched"
    );
}

#[tokio::test]
async fn scale_hpa_verifies_against_status_and_rolls_back_both_bounds() {
    let Some(fx) = Fixture::new("rem-hpa").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    let params = HpaAtMax {
        min_replicas: 1,
        max_replicas: 3,
        target_cpu_percent: 50,
        current_cpu_percent: 90,
    };
    let hpa = faults::hpa_at_max(&fx.client, fx.ns(), "web", params)
        .await
        .unwrap();
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(fx.client.clone(), fx.ns());

    // The HPA controller is off in the local cluster: write the status it
    // would write once the new maximum leaves room.
    let admin = hpas.clone();
    let controller = tokio::spawn(async move {
        eventually("maxReplicas raised", WAIT, || async {
            Ok((admin.get("web").await?.spec.unwrap().max_replicas == 6).then_some(()))
        })
        .await
        .unwrap();
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let status = json!({ "status": { "currentReplicas": 3, "desiredReplicas": 5, "conditions": [
            { "type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "lastTransitionTime": now },
            { "type": "ScalingLimited", "status": "False", "reason": "DesiredWithinRange", "lastTransitionTime": now },
        ] } });
        admin
            .patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    });
    let scale = ActionKind::ScaleHpa(ScaleHpa {
        min_replicas: Some(2),
        max_replicas: 6,
    });
    // Raising minReplicas (1 → 2) is a person's call: the gate signs it only
    // after a human approved it.
    let mut request = approved("scale-web", scale, target(&hpa));
    request.verdict.as_mut().unwrap().human_approved = true;
    let result = remediator.execute(request).await.unwrap();
    controller.await.unwrap();
    assert_eq!(outcome(&result), Outcome::Succeeded, "{result:?}");
    let spec = hpas.get("web").await.unwrap().spec.unwrap();
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 6));

    // The same action id for a different recommendation is a conflict, not a second action.
    let other = approved(
        "scale-web",
        ActionKind::ScaleHpa(ScaleHpa {
            min_replicas: None,
            max_replicas: 9,
        }),
        target(&hpa),
    );
    let conflict = remediator.execute(other).await.unwrap_err();
    assert_eq!(conflict.code(), tonic::Code::AlreadyExists, "{conflict:?}");
    assert_eq!(hpas.get("web").await.unwrap().spec.unwrap().max_replicas, 6);

    let rollback = remediator.rollback("scale-web").await.unwrap();
    assert_eq!(outcome(&rollback), Outcome::RolledBack, "{rollback:?}");
    assert_eq!(
        hpas.get("web").await.unwrap().spec,
        hpa.spec,
        "min and max restored exactly"
    );
}

#[tokio::test]
async fn cordon_uncordon_and_rollback_on_a_node_of_our_own() {
    let Some(fx) = Fixture::new("rem-cordon").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    let node = FakeNode::create(&fx.cluster, &fx.client, &format!("{}-n1", fx.ns()))
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(fx.client.clone());
    let before = nodes.get(&node.name).await.unwrap();

    let preview = remediator
        .execute(dry(approved(
            "cordon-n1",
            ActionKind::CordonNode(CordonNode {}),
            target(&before),
        )))
        .await
        .unwrap();
    assert!(
        preview.dry_run_diff.contains("+  unschedulable: true"),
        "{}",
        preview.dry_run_diff
    );
    assert_eq!(nodes.get(&node.name).await.unwrap().spec, before.spec);

    // kwok's heartbeats move the node's resourceVersion on: status churn
    // since the snapshot does not invalidate it, the unchanged spec is checked.
    let result = remediator
        .execute(approved(
            "cordon-n1",
            ActionKind::CordonNode(CordonNode {}),
            target(&before),
        ))
        .await
        .unwrap();
    assert_eq!(outcome(&result), Outcome::Succeeded, "{result:?}");
    let cordoned = nodes.get(&node.name).await.unwrap();
    assert_eq!(cordoned.spec.as_ref().unwrap().unschedulable, Some(true));
    let cordoned_by = |n: &Node| n.annotations().get("nanny.ai/cordoned-by").cloned();
    assert_eq!(cordoned_by(&cordoned).as_deref(), Some("cordon-n1"));

    let rollback = remediator.rollback("cordon-n1").await.unwrap();
    assert_eq!(outcome(&rollback), Outcome::RolledBack, "{rollback:?}");
    // The node lifecycle controller added `node.kubernetes.io/unschedulable`
    // while the node was cordoned and takes it off on its own schedule.
    eventually("node spec as before the cordon", WAIT, || async {
        let spec = nodes.get(&node.name).await?.spec;
        Ok((spec == before.spec).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(cordoned_by(&nodes.get(&node.name).await.unwrap()), None);

    // Uncordon from a cordoned snapshot.
    let cordon_again = remediator
        .execute(approved(
            "cordon-n1-b",
            ActionKind::CordonNode(CordonNode {}),
            target(&nodes.get(&node.name).await.unwrap()),
        ))
        .await
        .unwrap();
    assert_eq!(outcome(&cordon_again), Outcome::Succeeded);
    let snapshot = nodes.get(&node.name).await.unwrap();
    let uncordon = remediator
        .execute(approved(
            "uncordon-n1",
            ActionKind::UncordonNode(UncordonNode {}),
            target(&snapshot),
        ))
        .await
        .unwrap();
    assert_eq!(outcome(&uncordon), Outcome::Succeeded, "{uncordon:?}");
    assert!(!node.cordoned(&fx.client).await.unwrap());
    assert_eq!(cordoned_by(&nodes.get(&node.name).await.unwrap()), None);

    // A spec change since the snapshot (someone else cordoned) is refused.
    let stale = nodes.get(&node.name).await.unwrap();
    nodes
        .patch(
            &node.name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": { "unschedulable": true } })),
        )
        .await
        .unwrap();
    let refused = remediator
        .execute(approved(
            "cordon-stale",
            ActionKind::CordonNode(CordonNode {}),
            target(&stale),
        ))
        .await
        .unwrap();
    assert_eq!(outcome(&refused), Outcome::Refused, "{refused:?}");
    assert!(
        refused.error.contains("its spec changed"),
        "{}",
        refused.error
    );

    // That cordon is a person's: an approved uncordon is refused, and the
    // API server still shows the node cordoned.
    let theirs = remediator
        .execute(approved(
            "uncordon-theirs",
            ActionKind::UncordonNode(UncordonNode {}),
            target(&nodes.get(&node.name).await.unwrap()),
        ))
        .await
        .unwrap();
    assert_eq!(outcome(&theirs), Outcome::Refused, "{theirs:?}");
    assert!(
        theirs.error.contains("Nanny did not cordon it"),
        "{}",
        theirs.error
    );
    assert!(node.cordoned(&fx.client).await.unwrap());
}

/// A Deployment of `replicas` pods that run only on `node`.
async fn pinned_deployment(fx: &Fixture, node: &FakeNode, name: &str) -> Deployment {
    node.deployment(&fx.client, fx.ns(), name, 1).await.unwrap()
}

async fn running_on(fx: &Fixture, app: &str, node: &str) -> Pod {
    let pod = ready_pod(fx, app).await;
    assert_eq!(pod.spec.as_ref().unwrap().node_name.as_deref(), Some(node));
    pod
}

#[tokio::test]
async fn drain_evicts_workload_pods_and_leaves_daemonset_pods() {
    let Some(fx) = Fixture::new("rem-drain").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    let node = FakeNode::create(&fx.cluster, &fx.client, &format!("{}-n1", fx.ns()))
        .await
        .unwrap();
    pinned_deployment(&fx, &node, "web").await;
    let mut spec =
        json!({ "containers": [{ "name": "agent", "image": "registry.example/agent:1" }] });
    node.pin(&mut spec);
    let daemon_set: DaemonSet = object(json!({ "metadata": { "name": "agent" },
        "spec": { "selector": { "matchLabels": { "app": "agent" } }, "template": { "metadata": { "labels": { "app": "agent" } }, "spec": spec } } }));
    Api::<DaemonSet>::namespaced(fx.client.clone(), fx.ns())
        .create(&PostParams::default(), &daemon_set)
        .await
        .unwrap();
    let web = running_on(&fx, "web", &node.name).await;
    let agent = running_on(&fx, "agent", &node.name).await;

    let nodes: Api<Node> = Api::all(fx.client.clone());
    let drain = ActionKind::DrainNode(DrainNode {
        grace_period_seconds: 0,
        timeout_seconds: 30,
    });
    let snapshot = target(&nodes.get(&node.name).await.unwrap());
    let preview = remediator
        .execute(dry(approved("drain-n1", drain.clone(), snapshot.clone())))
        .await
        .unwrap();
    assert_eq!(outcome(&preview), Outcome::DryRun, "{preview:?}");
    assert!(
        preview
            .dry_run_diff
            .contains(&format!("evict Pod {}/{}", fx.ns(), web.name_any())),
        "{}",
        preview.dry_run_diff
    );
    assert!(
        preview.dry_run_diff.contains(&format!(
            "skip Pod {}/{} (DaemonSet pod)",
            fx.ns(),
            agent.name_any()
        )),
        "{}",
        preview.dry_run_diff
    );

    let result = remediator
        .execute(approved("drain-n1", drain, snapshot))
        .await
        .unwrap();
    assert_eq!(outcome(&result), Outcome::Succeeded, "{result:?}");
    let pods: Api<Pod> = Api::namespaced(fx.client.clone(), fx.ns());
    // The eviction is accepted when the drain returns, but kwok may still be
    // deleting the pod: wait for the state, as the cordon test does.
    eventually("web evicted", WAIT, || async {
        Ok(pods
            .get_opt(&web.name_any())
            .await?
            .is_none_or(|p| p.uid() != web.uid())
            .then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(
        pods.get(&agent.name_any()).await.unwrap().uid(),
        agent.uid(),
        "DaemonSet pod left alone"
    );
    assert!(node.cordoned(&fx.client).await.unwrap());
}

#[tokio::test]
async fn an_action_rbac_does_not_allow_is_refused_with_nothing_half_applied() {
    let Some(fx) = Fixture::new("rem-rbac").await else {
        return;
    };
    // Installed without the right to evict: a drain could cordon but never evict.
    let remediator = Remediator::start_with(&fx, |rules| {
        rules.retain(|r| {
            !r.resources
                .as_ref()
                .is_some_and(|res| res.contains(&"pods/eviction".to_owned()))
        })
    })
    .await;
    let node = FakeNode::create(&fx.cluster, &fx.client, &format!("{}-n1", fx.ns()))
        .await
        .unwrap();
    pinned_deployment(&fx, &node, "web").await;
    let web = running_on(&fx, "web", &node.name).await;
    let nodes: Api<Node> = Api::all(fx.client.clone());
    let before = nodes.get(&node.name).await.unwrap();

    let drain = ActionKind::DrainNode(DrainNode {
        grace_period_seconds: 0,
        timeout_seconds: 10,
    });
    let result = remediator
        .execute(approved("drain-n1", drain, target(&before)))
        .await
        .unwrap();
    assert_eq!(outcome(&result), Outcome::Refused, "{result:?}");
    assert!(
        result.error.contains(&format!(
            "not allowed to create eviction of Pod {}/{}",
            fx.ns(),
            web.name_any()
        )),
        "{}",
        result.error
    );
    assert!(result.error.contains("forbidden"), "{}", result.error);
    assert_eq!(
        nodes.get(&node.name).await.unwrap().spec,
        before.spec,
        "not cordoned"
    );
    assert_eq!(
        Api::<Pod>::namespaced(fx.client.clone(), fx.ns())
            .get(&web.name_any())
            .await
            .unwrap()
            .uid(),
        web.uid()
    );
    let records: Api<ConfigMap> = Api::namespaced(fx.client.clone(), fx.ns());
    assert!(
        records
            .get_opt("nanny-action-drain-n1")
            .await
            .unwrap()
            .is_none(),
        "nothing claimed: a retry may act"
    );
}

#[tokio::test]
async fn patch_resources_changes_one_container_and_rolls_back_exactly() {
    let Some(fx) = Fixture::new("rem-resources").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    let spec = PodSpec {
        memory_limit: Some("256Mi".to_owned()),
        ..PodSpec::default()
    };
    faults::deployment(&fx.client, fx.ns(), "web", 1, &spec)
        .await
        .unwrap();
    let before = rolled_out(&fx, "web").await;
    let deployments: Api<Deployment> = Api::namespaced(fx.client.clone(), fx.ns());

    let patch = |container: &str| {
        ActionKind::PatchResources(PatchResources {
            container: container.to_owned(),
            requests: None,
            limits: Some(Resources {
                memory_bytes: Some(512 << 20),
                cpu_millicores: None,
            }),
        })
    };
    let bad = remediator
        .execute(approved("resources-bad", patch("nope"), target(&before)))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(
        bad.message().contains(r#"has no container "nope""#),
        "{}",
        bad.message()
    );

    let result = remediator
        .execute(approved("resources-web", patch("app"), target(&before)))
        .await
        .unwrap();
    assert_eq!(outcome(&result), Outcome::Succeeded, "{result:?}");
    let after = deployments.get("web").await.unwrap();
    let container = &after.spec.unwrap().template.spec.unwrap().containers[0];
    let resources = container.resources.clone().unwrap();
    assert_eq!(resources.limits.unwrap()["memory"].0, "536870912");
    assert_eq!(
        resources.requests.unwrap()["memory"].0,
        "256Mi",
        "requests untouched"
    );

    let rollback = remediator.rollback("resources-web").await.unwrap();
    assert_eq!(outcome(&rollback), Outcome::RolledBack, "{rollback:?}");
    assert_eq!(deployments.get("web").await.unwrap().spec, before.spec);
}

#[tokio::test]
async fn delete_job_deletes_only_finished_jobs_old_enough() {
    let Some(fx) = Fixture::new("rem-job").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    let old = faults::completed_job(&fx.client, fx.ns(), "nightly", Duration::from_secs(7200))
        .await
        .unwrap();
    let fresh = faults::completed_job(&fx.client, fx.ns(), "hourly", Duration::from_secs(60))
        .await
        .unwrap();
    let jobs: Api<Job> = Api::namespaced(fx.client.clone(), fx.ns());
    let delete = || {
        ActionKind::DeleteJob(DeleteJob {
            min_age_seconds: 3600,
        })
    };

    let refused = remediator
        .execute(approved("delete-hourly", delete(), target(&fresh)))
        .await
        .unwrap();
    assert_eq!(outcome(&refused), Outcome::Refused, "{refused:?}");
    assert!(
        refused.error.contains("less than the required 3600s"),
        "{}",
        refused.error
    );
    assert!(jobs.get_opt("hourly").await.unwrap().is_some());

    let result = remediator
        .execute(approved("delete-nightly", delete(), target(&old)))
        .await
        .unwrap();
    assert_eq!(outcome(&result), Outcome::Succeeded, "{result:?}");
    assert!(jobs.get_opt("nightly").await.unwrap().is_none());
    let rollback = remediator.rollback("delete-nightly").await.unwrap_err();
    assert_eq!(
        rollback.code(),
        tonic::Code::FailedPrecondition,
        "{rollback:?}"
    );
}

#[tokio::test]
async fn expand_pvc_grows_never_shrinks() {
    let Some(fx) = Fixture::new("rem-pvc").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    let gib = 1_i64 << 30;
    let claim = faults::pvc_nearly_full(&fx.client, fx.ns(), "data", gib, gib - (1 << 20))
        .await
        .unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(fx.client.clone(), fx.ns());

    let shrink = remediator
        .execute(approved(
            "shrink-data",
            ActionKind::ExpandPvc(ExpandPvc {
                new_size_bytes: gib / 2,
            }),
            target(&claim),
        ))
        .await
        .unwrap();
    assert_eq!(outcome(&shrink), Outcome::Refused, "{shrink:?}");
    assert!(shrink.error.contains("never shrunk"), "{}", shrink.error);

    // No volume plugin resizes in the local cluster: write the capacity the
    // resizer would report once the request grew.
    let admin = claims.clone();
    let resizer = tokio::spawn(async move {
        eventually("request grown", WAIT, || async {
            let c = admin.get("data").await?;
            Ok(
                (c.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0
                    == (2 * gib).to_string())
                .then_some(()),
            )
        })
        .await
        .unwrap();
        let status = json!({ "status": { "capacity": { "storage": (2 * gib).to_string() } } });
        admin
            .patch_status("data", &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    });
    let result = remediator
        .execute(approved(
            "expand-data",
            ActionKind::ExpandPvc(ExpandPvc {
                new_size_bytes: 2 * gib,
            }),
            target(&claim),
        ))
        .await
        .unwrap();
    resizer.await.unwrap();
    assert_eq!(outcome(&result), Outcome::Succeeded, "{result:?}");
    assert_eq!(
        faults::claim_request(&fx.client, fx.ns(), "data")
            .await
            .unwrap(),
        (2 * gib).to_string()
    );
    let _ = Api::<k8s_openapi::api::core::v1::PersistentVolume>::all(fx.client.clone())
        .delete(&format!("{}-data", fx.ns()), &DeleteParams::default())
        .await;
}

#[tokio::test]
async fn restarting_a_pod_whose_template_still_crashes_is_ineffective_and_unapproved_requests_are_refused()
 {
    let Some(fx) = Fixture::new("rem-crash").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    faults::crash_loop(&fx.client, fx.ns(), "web", 1)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(fx.client.clone(), fx.ns());
    let crashing = eventually("web crash-looping", WAIT, || async {
        let pods = faults::pods_of(&fx.client, fx.ns(), "web").await?;
        Ok(pods.into_iter().find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.restart_count >= 1))
        }))
    })
    .await
    .unwrap();

    // Not approved: refused, the pod untouched.
    let mut denied = approved(
        "restart-denied",
        ActionKind::RestartPod(RestartPod {}),
        target(&crashing),
    );
    denied.verdict.as_mut().unwrap().decision = Decision::NeedsApproval as i32;
    let refused = remediator.execute(denied).await.unwrap();
    assert_eq!(outcome(&refused), Outcome::Refused, "{refused:?}");
    assert!(
        refused
            .error
            .contains("DECISION_NEEDS_APPROVAL, not APPROVED"),
        "{}",
        refused.error
    );
    assert_eq!(
        pods.get(&crashing.name_any()).await.unwrap().uid(),
        crashing.uid()
    );

    // The crash loop bumps the pod's resourceVersion every few seconds; only
    // its spec and labels must match the snapshot. The replacement crashes
    // too (the template is unchanged): the restart did not help.
    eventually("resourceVersion moved on", WAIT, || async {
        Ok((pods.get(&crashing.name_any()).await?.resource_version()
            != crashing.resource_version())
        .then_some(()))
    })
    .await
    .unwrap();
    let mut request = approved(
        "restart-crashing",
        ActionKind::RestartPod(RestartPod {}),
        target(&crashing),
    );
    request.verification_timeout_seconds = 15;
    let result = remediator.execute(request).await.unwrap();
    assert_eq!(outcome(&result), Outcome::Ineffective, "{result:?}");
    assert_eq!(verification(&result), VerificationState::Ineffective);
    let message = &result.verification.as_ref().unwrap().message;
    assert!(
        message.starts_with("not effective within 15s: replacement pod")
            && message.contains("CrashLoopBackOff"),
        "{message}"
    );
    assert!(
        pods.get_opt(&crashing.name_any())
            .await
            .unwrap()
            .is_none_or(|p| p.uid() != crashing.uid()),
        "the restart itself happened"
    );
}

/// The test PKI's records MAC key, as the remediator reads it.
fn mac_key() -> Vec<u8> {
    std::fs::read_to_string(nanny_test_util::pki::records_mac_key())
        .unwrap()
        .trim()
        .as_bytes()
        .to_vec()
}

/// A record as the remediator writes it, in `phase`.
fn record(id: &str, phase: store::Phase) -> store::Record {
    store::Record {
        fingerprint: format!("fp-{id}"),
        recommendation_id: format!("rec-{id}"),
        action_type: "ACTION_TYPE_RESTART_POD".into(),
        target: store::TargetRecord {
            kind: "Pod".into(),
            namespace: "shop".into(),
            name: "web-1".into(),
            uid: format!("uid-{id}"),
        },
        summary: store::Summary::default(),
        container: None,
        changes: Vec::new(),
        not_reversible: Some("a deleted pod cannot come back".into()),
        phase,
        instance: "test".into(),
        claimed_at: 0,
    }
}

#[tokio::test]
async fn the_record_sweep_deletes_only_finished_records_older_than_the_cutoff() {
    let Some(fx) = Fixture::new("rem-sweep").await else {
        return;
    };
    let records = store::Store::new(fx.client.clone(), fx.ns(), &mac_key());
    for (id, phase) in [
        ("done", store::Phase::Done),
        ("undone", store::Phase::RolledBack),
        ("running", store::Phase::Executing),
    ] {
        records.claim(id, &record(id, phase)).await.unwrap();
    }
    // Not a record: a ConfigMap of someone else's, and a broken record.
    let maps: Api<ConfigMap> = Api::namespaced(fx.client.clone(), fx.ns());
    for (name, data) in [
        ("app-settings", json!({ "record.json": "{}" })),
        (
            &*format!("{}broken", store::PREFIX),
            json!({ "record.json": "not json" }),
        ),
    ] {
        maps.create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": name }, "data": data })).unwrap(),
        )
        .await
        .unwrap();
    }
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    assert_eq!(
        records.sweep(now - 3600).await.unwrap(),
        0,
        "all younger than the cutoff"
    );
    // Every record is older than a cutoff in the future.
    assert_eq!(records.sweep(now + 60).await.unwrap(), 2);
    assert!(records.get("done").await.unwrap().is_none());
    assert!(records.get("undone").await.unwrap().is_none());
    assert!(
        records.get("running").await.unwrap().is_some(),
        "a claim still executing stays"
    );
    assert!(maps.get_opt("app-settings").await.unwrap().is_some());
    assert!(
        maps.get_opt(&format!("{}broken", store::PREFIX))
            .await
            .unwrap()
            .is_some(),
        "left for a person"
    );
}

async fn failed_pods(fx: &Fixture, app: &str) -> Vec<Pod> {
    faults::failed_pods_of(&fx.client, fx.ns(), app)
        .await
        .unwrap()
}

#[tokio::test]
async fn delete_failed_pods_deletes_only_the_workloads_failed_pods_capped_and_has_no_undo() {
    let Some(fx) = Fixture::new("rem-failed").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    let web = faults::deployment(&fx.client, fx.ns(), "web", 3, &PodSpec::default())
        .await
        .unwrap();
    faults::deployment(&fx.client, fx.ns(), "other", 1, &PodSpec::default())
        .await
        .unwrap();
    rolled_out(&fx, "web").await;
    rolled_out(&fx, "other").await;
    let evicted = faults::evict_pods(&fx.client, fx.ns(), "web", 2)
        .await
        .unwrap();
    let other_evicted = faults::evict_pods(&fx.client, fx.ns(), "other", 1)
        .await
        .unwrap();
    // The replacements run: the workload is whole again.
    rolled_out(&fx, "web").await;
    let running: Vec<String> = faults::pods_of(&fx.client, fx.ns(), "web")
        .await
        .unwrap()
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|p| p.uid().unwrap())
        .collect();
    assert_eq!(running.len(), 3);
    let delete =
        |max_pods| ActionKind::DeleteFailedPods(nanny_proto::v1::DeleteFailedPods { max_pods });
    let uids = |pods: Vec<Pod>| -> Vec<String> { pods.iter().map(|p| p.uid().unwrap()).collect() };

    // A dry run names what it would delete and deletes nothing.
    let dry_run = remediator
        .execute(dry(approved("failed-web-dry", delete(1), target(&web))))
        .await
        .unwrap();
    assert_eq!(outcome(&dry_run), Outcome::DryRun, "{dry_run:?}");
    assert!(
        dry_run.dry_run_diff.contains("(Failed: Evicted)"),
        "{}",
        dry_run.dry_run_diff
    );
    assert!(
        dry_run
            .dry_run_diff
            .contains("leave 1 more failed pods for a later call (at most 1 per call)"),
        "{}",
        dry_run.dry_run_diff
    );
    assert_eq!(failed_pods(&fx, "web").await.len(), 2);

    // One per call: the oldest goes, verified gone.
    let first = remediator
        .execute(approved("failed-web-1", delete(1), target(&web)))
        .await
        .unwrap();
    assert_eq!(outcome(&first), Outcome::Succeeded, "{first:?}");
    assert_eq!(verification(&first), VerificationState::Passed);
    assert_eq!(failed_pods(&fx, "web").await.len(), 1);
    let second = remediator
        .execute(approved("failed-web-2", delete(20), target(&web)))
        .await
        .unwrap();
    assert_eq!(outcome(&second), Outcome::Succeeded, "{second:?}");
    // The API server's evidence: web's failed pods are gone, its running
    // pods are the same ones, another workload's failed pod is untouched.
    let pods: Api<Pod> = Api::namespaced(fx.client.clone(), fx.ns());
    for uid in &evicted {
        let left = pods.list(&ListParams::default()).await.unwrap();
        assert!(
            !left.items.iter().any(|p| p.uid().as_ref() == Some(uid)),
            "{uid}"
        );
    }
    let still_running: Vec<String> = faults::pods_of(&fx.client, fx.ns(), "web")
        .await
        .unwrap()
        .iter()
        .map(|p| p.uid().unwrap())
        .collect();
    assert_eq!(still_running, running);
    assert_eq!(uids(failed_pods(&fx, "other").await), other_evicted);

    // Nothing to undo: the pods had already failed.
    let rollback = remediator.rollback("failed-web-2").await.unwrap_err();
    assert_eq!(
        rollback.code(),
        tonic::Code::FailedPrecondition,
        "{rollback:?}"
    );
    assert!(
        rollback.message().contains("already failed"),
        "{rollback:?}"
    );

    // Nothing left to delete: refused with the reason, nothing written.
    let nothing = remediator
        .execute(approved("failed-web-3", delete(20), target(&web)))
        .await
        .unwrap();
    assert_eq!(outcome(&nothing), Outcome::Refused, "{nothing:?}");
    assert!(
        nothing.error.contains("it has no failed pods to delete"),
        "{}",
        nothing.error
    );
    assert_eq!(uids(failed_pods(&fx, "other").await), other_evicted);

    // A failed pod that is protected itself stays.
    let kept = faults::evict_pods(&fx.client, fx.ns(), "web", 1)
        .await
        .unwrap();
    let kept_pod = failed_pods(&fx, "web").await;
    let patch = json!({ "metadata": { "labels": { "nanny.ai/protected": "true" } } });
    pods.patch(
        &kept_pod[0].name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .unwrap();
    let protected = remediator
        .execute(approved("failed-web-4", delete(20), target(&web)))
        .await
        .unwrap();
    assert_eq!(outcome(&protected), Outcome::Refused, "{protected:?}");
    assert_eq!(uids(failed_pods(&fx, "web").await), kept);
}

/// A pod bound to `node`, deleted with a 1 s grace period (and held by
/// `finalizers`), once its deletion deadline has passed.
async fn stuck_pod(fx: &Fixture, name: &str, node: &str, finalizers: &[&str]) -> Pod {
    let pods: Api<Pod> = Api::namespaced(fx.client.clone(), fx.ns());
    pods.create(
        &PostParams::default(),
        &object(json!({
            "metadata": { "name": name, "finalizers": finalizers },
            "spec": { "nodeName": node, "containers": [{ "name": "app", "image": "registry.example/app:1" }] },
        })),
    )
    .await
    .unwrap();
    pods.delete(
        name,
        &DeleteParams {
            grace_period_seconds: Some(1),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pod = pods.get(name).await.unwrap();
    assert!(pod.metadata.deletion_timestamp.is_some());
    pod
}

#[tokio::test]
async fn force_delete_finishes_only_deletions_no_kubelet_can_confirm_and_has_no_undo() {
    let Some(fx) = Fixture::new("rem-force").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    let node = FakeNode::without_kubelet(&fx.cluster, &fx.client, &format!("{}-gone", fx.ns()))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(fx.client.clone(), fx.ns());
    let force = || ActionKind::ForceDeletePod(nanny_proto::v1::ForceDeletePod {});

    // Held by a finalizer: a force delete would not remove it. Refused.
    let held = stuck_pod(&fx, "held", &node.name, &["nanny.test/block"]).await;
    let refused = remediator
        .execute(approved("force-held", force(), target(&held)))
        .await
        .unwrap();
    assert_eq!(outcome(&refused), Outcome::Refused, "{refused:?}");
    assert!(
        refused
            .error
            .contains("finalizer nanny.test/block holds it"),
        "{}",
        refused.error
    );
    assert!(pods.get_opt("held").await.unwrap().is_some());

    // Not being deleted: nothing to finish. Refused.
    pods.create(
        &PostParams::default(),
        &object(json!({
            "metadata": { "name": "alive" },
            "spec": { "nodeName": node.name, "containers": [{ "name": "app", "image": "registry.example/app:1" }] },
        })),
    )
    .await
    .unwrap();
    let alive = pods.get("alive").await.unwrap();
    let refused = remediator
        .execute(approved("force-alive", force(), target(&alive)))
        .await
        .unwrap();
    assert_eq!(outcome(&refused), Outcome::Refused, "{refused:?}");
    assert!(
        refused.error.contains("it is not being deleted"),
        "{}",
        refused.error
    );
    assert!(
        pods.get("alive")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );

    // Past its grace period on a node no kubelet serves: gone.
    let stuck = stuck_pod(&fx, "stuck", &node.name, &[]).await;
    let dry_run = remediator
        .execute(dry(approved("force-stuck-dry", force(), target(&stuck))))
        .await
        .unwrap();
    assert_eq!(outcome(&dry_run), Outcome::DryRun, "{dry_run:?}");
    assert!(pods.get_opt("stuck").await.unwrap().is_some());
    let result = remediator
        .execute(approved("force-stuck", force(), target(&stuck)))
        .await
        .unwrap();
    assert_eq!(outcome(&result), Outcome::Succeeded, "{result:?}");
    assert_eq!(verification(&result), VerificationState::Passed);
    assert!(pods.get_opt("stuck").await.unwrap().is_none());
    let rollback = remediator.rollback("force-stuck").await.unwrap_err();
    assert_eq!(
        rollback.code(),
        tonic::Code::FailedPrecondition,
        "{rollback:?}"
    );

    // Let the held pod go.
    let patch = json!({ "metadata": { "finalizers": null } });
    pods.patch("held", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn scale_workload_raises_replicas_no_autoscaler_owns_and_rolls_back() {
    let Some(fx) = Fixture::new("rem-scale").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    faults::deployment(&fx.client, fx.ns(), "web", 2, &PodSpec::default())
        .await
        .unwrap();
    let web = rolled_out(&fx, "web").await;
    let scale = |replicas| ActionKind::ScaleWorkload(nanny_proto::v1::ScaleWorkload { replicas });
    let deployments: Api<Deployment> = Api::namespaced(fx.client.clone(), fx.ns());
    let replicas = || async {
        deployments
            .get("web")
            .await
            .unwrap()
            .spec
            .and_then(|s| s.replicas)
    };

    let lower = remediator
        .execute(approved("scale-web-down", scale(2), target(&web)))
        .await
        .unwrap();
    assert_eq!(outcome(&lower), Outcome::Refused, "{lower:?}");
    assert!(lower.error.contains("never lowers them"), "{}", lower.error);

    let result = remediator
        .execute(approved("scale-web", scale(3), target(&web)))
        .await
        .unwrap();
    assert_eq!(outcome(&result), Outcome::Succeeded, "{result:?}");
    assert_eq!(verification(&result), VerificationState::Passed);
    assert_eq!(replicas().await, Some(3));
    assert_eq!(
        rolled_out(&fx, "web")
            .await
            .status
            .unwrap()
            .available_replicas,
        Some(3)
    );

    let rollback = remediator.rollback("scale-web").await.unwrap();
    assert_eq!(outcome(&rollback), Outcome::RolledBack, "{rollback:?}");
    assert_eq!(replicas().await, Some(2));

    // An autoscaler owns the replicas of this one: refused, unchanged.
    faults::deployment(&fx.client, fx.ns(), "api", 1, &PodSpec::default())
        .await
        .unwrap();
    let api = rolled_out(&fx, "api").await;
    Api::<HorizontalPodAutoscaler>::namespaced(fx.client.clone(), fx.ns())
        .create(
            &PostParams::default(),
            &object(json!({
                "metadata": { "name": "api" },
                "spec": { "minReplicas": 1, "maxReplicas": 5,
                          "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "api" } },
            })),
        )
        .await
        .unwrap();
    let refused = remediator
        .execute(approved("scale-api", scale(2), target(&api)))
        .await
        .unwrap();
    assert_eq!(outcome(&refused), Outcome::Refused, "{refused:?}");
    assert!(
        refused.error.contains(&format!(
            "HorizontalPodAutoscaler {}/api scales it",
            fx.ns()
        )),
        "{}",
        refused.error
    );
    assert_eq!(
        deployments
            .get("api")
            .await
            .unwrap()
            .spec
            .and_then(|s| s.replicas),
        Some(1)
    );
}

#[tokio::test]
async fn resume_cron_job_clears_suspend_and_rolls_back() {
    let Some(fx) = Fixture::new("rem-resume").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    let cron_jobs: Api<k8s_openapi::api::batch::v1::CronJob> =
        Api::namespaced(fx.client.clone(), fx.ns());
    let create = |name: &str, suspend: bool| {
        object::<k8s_openapi::api::batch::v1::CronJob>(json!({
            "metadata": { "name": name },
            "spec": { "schedule": "0 3 * * *", "suspend": suspend,
                      "jobTemplate": { "spec": { "template": { "spec": {
                          "restartPolicy": "Never",
                          "containers": [{ "name": "job", "image": "registry.example/job:1" }] } } } } },
        }))
    };
    let paused = cron_jobs
        .create(&PostParams::default(), &create("paused", true))
        .await
        .unwrap();
    let running = cron_jobs
        .create(&PostParams::default(), &create("running", false))
        .await
        .unwrap();
    let resume = || ActionKind::ResumeCronJob(nanny_proto::v1::ResumeCronJob {});
    let suspended = |name: &'static str| {
        let cron_jobs = cron_jobs.clone();
        async move {
            cron_jobs
                .get(name)
                .await
                .unwrap()
                .spec
                .and_then(|s| s.suspend)
        }
    };

    let refused = remediator
        .execute(approved("resume-running", resume(), target(&running)))
        .await
        .unwrap();
    assert_eq!(outcome(&refused), Outcome::Refused, "{refused:?}");
    assert!(
        refused.error.contains("it is not suspended"),
        "{}",
        refused.error
    );

    let result = remediator
        .execute(approved("resume-paused", resume(), target(&paused)))
        .await
        .unwrap();
    assert_eq!(outcome(&result), Outcome::Succeeded, "{result:?}");
    assert_eq!(verification(&result), VerificationState::Passed);
    assert_eq!(suspended("paused").await, Some(false));

    let rollback = remediator.rollback("resume-paused").await.unwrap();
    assert_eq!(outcome(&rollback), Outcome::RolledBack, "{rollback:?}");
    assert_eq!(suspended("paused").await, Some(true));
}

#[tokio::test]
async fn rollout_undo_returns_to_the_previous_revision_and_has_no_undo() {
    let Some(fx) = Fixture::new("rem-undo").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    faults::deployment(&fx.client, fx.ns(), "web", 2, &PodSpec::default())
        .await
        .unwrap();
    let first = rolled_out(&fx, "web").await;
    let image = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .image
            .clone()
            .unwrap()
    };
    let revision1 = image(&first);
    let undo = || ActionKind::RolloutUndo(nanny_proto::v1::RolloutUndo {});

    // Revision 1 has nothing before it: refused, unchanged.
    let refused = remediator
        .execute(approved("undo-first", undo(), target(&first)))
        .await
        .unwrap();
    assert_eq!(outcome(&refused), Outcome::Refused, "{refused:?}");
    assert!(
        refused
            .error
            .contains("it has no earlier revision to roll back to"),
        "{}",
        refused.error
    );

    // Revision 2: a new image and a secret in its environment, on pods
    // that cannot be scheduled: stuck past its progress deadline.
    let deployments: Api<Deployment> = Api::namespaced(fx.client.clone(), fx.ns());
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({ "spec": { "progressDeadlineSeconds": 1, "template": { "spec": {
                "nodeSelector": { "nanny.ai/no-such-node": "true" },
                "containers": [{
                "name": "app", "image": "registry.example/web:broken",
                "env": [{ "name": "TOKEN", "value": "s3cr3t-token" }] }] } } } }),
            ),
        )
        .await
        .unwrap();
    let second = eventually("revision 2 stuck", WAIT, || async {
        let d = deployments.get("web").await?;
        let stuck = d
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "Progressing"
                        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                })
            });
        Ok(stuck.then_some(d))
    })
    .await
    .unwrap();
    assert_eq!(image(&second), "registry.example/web:broken");

    // A dry run shows the images, never the environment, and changes
    // nothing.
    let preview = remediator
        .execute(dry(approved("undo-web", undo(), target(&second))))
        .await
        .unwrap();
    assert_eq!(outcome(&preview), Outcome::DryRun, "{preview:?}");
    assert!(
        preview.dry_run_diff.contains(&revision1)
            && preview.dry_run_diff.contains("registry.example/web:broken"),
        "{}",
        preview.dry_run_diff
    );
    assert!(
        !preview.dry_run_diff.contains("s3cr3t"),
        "{}",
        preview.dry_run_diff
    );
    assert_eq!(
        image(&deployments.get("web").await.unwrap()),
        "registry.example/web:broken"
    );

    let result = remediator
        .execute(approved("undo-web", undo(), target(&second)))
        .await
        .unwrap();
    assert_eq!(outcome(&result), Outcome::Succeeded, "{result:?}");
    assert_eq!(verification(&result), VerificationState::Passed);
    let back = rolled_out(&fx, "web").await;
    assert_eq!(image(&back), revision1);
    let env = &back.spec.unwrap().template.spec.unwrap().containers[0].env;
    assert!(env.as_ref().is_none_or(Vec::is_empty), "{env:?}");

    // Nothing to restore from the record: refused, the Deployment as it is.
    let rollback = remediator.rollback("undo-web").await.unwrap_err();
    assert_eq!(
        rollback.code(),
        tonic::Code::FailedPrecondition,
        "{rollback:?}"
    );
    assert!(
        rollback.message().contains("a second RolloutUndo returns"),
        "{rollback:?}"
    );
    assert_eq!(image(&deployments.get("web").await.unwrap()), revision1);
}
