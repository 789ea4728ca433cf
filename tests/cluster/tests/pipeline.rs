//! The whole pipeline end to end: all five services as processes against
//! the real API server, a HealingPolicy, and injected faults. Each seed
//! scenario is healed (or correctly refused) through HealingActions.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use k8s_openapi::api::{
    apps::v1::Deployment,
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::Job,
    core::v1::{Node, PersistentVolumeClaim, Pod},
};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use nanny_cluster_tests::Fixture;
use nanny_crd::{ActionType, HealingAction, HealingPolicy, Phase};
use nanny_test_util::{
    cluster::{eventually, install_crds},
    faults::{self, HpaAtMax, NodeFault, PodSpec},
    nodes::FakeNode,
    stack::{Options, Stack},
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

struct Harness {
    fx: Fixture,
    stack: Stack,
    actions: Api<HealingAction>,
}

fn policy(ns: &str, mode: &str) -> HealingPolicy {
    serde_json::from_value(json!({
        "apiVersion": "nanny.ai/v1alpha1",
        "kind": "HealingPolicy",
        "metadata": { "name": "default", "namespace": ns },
        "spec": {
            "mode": mode,
            "scope": { "namespaces": [ns, "kube-system"] },
            "actions": [
                { "type": "RestartPod" },
                { "type": "RolloutRestart" },
                { "type": "PatchResources", "ceilings": { "maxMemory": "2Gi" } },
                { "type": "DeleteJob" },
                { "type": "ScaleHpa", "ceilings": { "maxReplicas": 10 } },
                { "type": "CordonNode" },
                { "type": "ExpandPvc", "ceilings": { "maxStorage": "20Gi" } },
                { "type": "ReportOnly" },
            ],
            "limits": { "maxActionsPerHour": 100, "cooldownSeconds": 120, "maxDisruptionPercent": 50 },
            "ai": { "enabled": false, "minConfidence": 0.75, "maxRecommendations": 5 },
            "verificationTimeoutSeconds": 30,
        },
    }))
    .unwrap()
}

impl Harness {
    async fn start(test: &str, mode: &str) -> Option<Self> {
        let fx = Fixture::new(test).await?;
        install_crds(&fx.client).await.unwrap();
        let policies: Api<HealingPolicy> = Api::namespaced(fx.client.clone(), fx.ns());
        policies
            .create(&PostParams::default(), &policy(fx.ns(), mode))
            .await
            .unwrap();
        let audit = std::env::temp_dir().join(format!("{}-audit.jsonl", fx.ns()));
        let stack = Stack::start(Options {
            kubeconfig: fx.cluster.kubeconfig.clone(),
            prometheus_url: fx.cluster.prometheus_url.clone(),
            namespace: fx.ns().to_owned(),
            audit_path: audit,
            extra_env: Vec::new(),
        })
        .await
        .unwrap();
        let actions = Api::namespaced(fx.client.clone(), fx.ns());
        Some(Self { fx, stack, actions })
    }

    /// Every HealingAction on the object with `uid`.
    async fn actions_on(&self, uid: &str) -> Vec<HealingAction> {
        self.actions
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|a| a.spec.target.uid == uid)
            .collect()
    }

    /// Waits for the (single) action on `uid` to reach `phase`.
    async fn wait_phase(&self, uid: &str, phase: Phase) -> HealingAction {
        let result = eventually(&format!("an action on {uid} in {phase}"), WAIT, || async {
            let actions = self.actions_on(uid).await;
            Ok(actions
                .into_iter()
                .find(|a| a.status.as_ref().and_then(|s| s.phase) == Some(phase)))
        })
        .await;
        match result {
            Ok(action) => action,
            Err(error) => panic!(
                "{error}\nactions: {:#?}\n{}",
                self.actions.list(&Default::default()).await.unwrap().items,
                self.stack.logs()
            ),
        }
    }

    async fn running_pods(&self, app: &str, count: usize) -> Vec<Pod> {
        eventually(&format!("{count} running {app} pods"), WAIT, || async {
            let pods = faults::pods_of(&self.fx.client, self.fx.ns(), app).await?;
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
        .unwrap()
    }
}

impl Harness {
    /// Approves the action as `nannyctl approve` does: `spec.approval`.
    async fn approve(&self, action: &HealingAction) {
        let patch = json!({ "spec": { "approval": {
            "decision": "Approve", "by": "pipeline-test", "at": k8s_openapi::jiff::Timestamp::now().to_string(),
        } } });
        self.actions
            .patch(
                &action.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
            .unwrap();
    }

    /// Waits for an action on `uid` awaiting approval, approves it, and
    /// waits for it to succeed.
    async fn approve_and_wait(&self, uid: &str, action_type: ActionType) -> HealingAction {
        let pending = self.wait_phase(uid, Phase::PendingApproval).await;
        assert_eq!(pending.spec.action.type_, action_type);
        self.approve(&pending).await;
        self.wait_phase(uid, Phase::Succeeded).await
    }
}

/// Marks a running pod as crash-looping (kwok's stage selects the label):
/// its replacement, built from the unchanged template, is healthy.
async fn crash_one_pod(pods: &Api<Pod>, pod: &Pod) {
    pods.patch(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": { faults::FAULT_LABEL: "crash-loop" } } })),
    )
    .await
    .unwrap();
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| {
            cs.iter().map(|c| c.restart_count).max().unwrap_or(0)
        })
}

/// The analyzer's crash-loop rule acts from this many restarts on.
const MIN_RESTARTS: i32 = 3;

/// Crash loop → the pod is restarted automatically. Returns the time from
/// the crash loop reaching the rule's threshold in the API to the pod's
/// deletion.
async fn crash_loop_restarted(h: &Harness, app: &str) -> Duration {
    let pods: Api<Pod> = Api::namespaced(h.fx.client.clone(), h.fx.ns());
    faults::deployment(&h.fx.client, h.fx.ns(), app, 3, &PodSpec::default())
        .await
        .unwrap();
    let victim = h.running_pods(app, 3).await.remove(0);
    let uid = victim.uid().unwrap();
    crash_one_pod(&pods, &victim).await;
    let mut visible = None;
    let deadline = Instant::now() + WAIT;
    loop {
        let pod = pods.get_opt(&victim.name_any()).await.unwrap();
        let Some(pod) = pod.filter(|p| {
            p.uid().as_deref() == Some(&uid) && p.metadata.deletion_timestamp.is_none()
        }) else {
            break;
        };
        if visible.is_none() && restarts(&pod) >= MIN_RESTARTS {
            visible = Some(Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "the crash-looping pod was not replaced\n{}",
            h.stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let healed = visible
        .expect("the crash loop was seen before the restart")
        .elapsed();
    let action = h.wait_phase(&uid, Phase::Succeeded).await;
    assert_eq!(action.spec.action.type_, ActionType::RestartPod);
    assert_eq!(action.status.unwrap().attempts, 1, "executed once");
    assert_eq!(
        h.actions_on(&uid).await.len(),
        1,
        "one action, not duplicated"
    );
    healed
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_scenarios_are_healed_end_to_end_in_auto_mode() {
    let Some(h) = Harness::start("pipeline-auto", "Auto").await else {
        return;
    };
    let client = &h.fx.client;
    let ns = h.fx.ns();

    let crash = async {
        let healed = crash_loop_restarted(&h, "web").await;
        println!("crash loop → pod restarted {healed:.1?} after the threshold");
    };

    let oom = async {
        // The app needs 200Mi; it is OOM-killed until its limit allows that.
        faults::oom_killed(client, ns, "hungry", "128Mi")
            .await
            .unwrap();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let uid = deployments.get("hungry").await.unwrap().uid().unwrap();
        let app = tokio::spawn({
            let (client, ns) = (client.clone(), ns.to_owned());
            async move {
                let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
                loop {
                    let d = deployments.get("hungry").await.unwrap();
                    let limit = d.spec.unwrap().template.spec.unwrap().containers[0]
                        .resources
                        .clone()
                        .unwrap()
                        .limits
                        .unwrap_or_default()
                        .get("memory")
                        .map(|q| q.0.clone())
                        .unwrap_or_default();
                    if limit != "128Mi" {
                        faults::clear_workload_fault(&client, &ns, "hungry")
                            .await
                            .unwrap();
                        return limit;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        let action = h.approve_and_wait(&uid, ActionType::PatchResources).await;
        assert_eq!(
            action
                .spec
                .action
                .params
                .get("limits.memoryBytes")
                .map(String::as_str),
            Some("201326592")
        );
        assert_eq!(
            app.await.unwrap(),
            "201326592",
            "the limit was raised ×1.5 (192Mi, in bytes)"
        );
        println!("OOM → memory limit raised after approval");
    };

    let stale_job = async {
        let job =
            faults::completed_job(client, ns, "nightly-report", Duration::from_secs(25 * 3600))
                .await
                .unwrap();
        let uid = job.uid().unwrap();
        h.wait_phase(&uid, Phase::Succeeded).await;
        let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
        eventually("the stale Job deleted", WAIT, || async {
            Ok(jobs
                .get_opt("nightly-report")
                .await?
                .is_none()
                .then_some(()))
        })
        .await
        .unwrap();
        println!("completed Job older than 24h → deleted");
    };

    let hpa = async {
        let params = HpaAtMax {
            min_replicas: 1,
            max_replicas: 3,
            target_cpu_percent: 50,
            current_cpu_percent: 95,
        };
        let uid = faults::hpa_at_max(client, ns, "api", params)
            .await
            .unwrap()
            .uid()
            .unwrap();
        let controller = faults::hpa_controller(client.clone(), ns.to_owned(), "api".to_owned(), 4);
        let action = h.wait_phase(&uid, Phase::Succeeded).await;
        controller.abort();
        assert_eq!(action.spec.action.type_, ActionType::ScaleHpa);
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
        let max = hpas.get("api").await.unwrap().spec.unwrap().max_replicas;
        assert!(
            (4..=10).contains(&max),
            "maxReplicas raised within the ceiling: {max}"
        );
        println!("HPA at max → maxReplicas 3 → {max}");
    };

    let node = async {
        let node = FakeNode::create(&h.fx.cluster, client, &format!("{ns}-sick"))
            .await
            .unwrap();
        faults::node_fault(client, &node.name, NodeFault::NotReady)
            .await
            .unwrap();
        let nodes: Api<Node> = Api::all(client.clone());
        let uid = nodes.get(&node.name).await.unwrap().uid().unwrap();
        let action = eventually("a cordon awaiting approval", WAIT, || async {
            Ok(h.actions_on(&uid).await.into_iter().find(|a| {
                a.spec.action.type_ == ActionType::CordonNode
                    && a.status.as_ref().and_then(|s| s.phase) == Some(Phase::PendingApproval)
            }))
        })
        .await
        .unwrap();
        h.approve(&action).await;
        eventually("the node cordoned", WAIT, || async {
            Ok(nodes
                .get(&node.name)
                .await?
                .spec
                .and_then(|s| s.unschedulable)
                .unwrap_or(false)
                .then_some(()))
        })
        .await
        .unwrap();
        println!("node NotReady → cordoned after approval");
        node
    };

    let pvc = async {
        let claim = faults::pvc_nearly_full(client, ns, "data", 1 << 30, 970 << 20)
            .await
            .unwrap();
        let uid = claim.uid().unwrap();
        let resizer = faults::volume_resizer(client.clone(), ns.to_owned(), "data".to_owned());
        h.approve_and_wait(&uid, ActionType::ExpandPvc).await;
        resizer.abort();
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        let size = claims
            .get("data")
            .await
            .unwrap()
            .spec
            .unwrap()
            .resources
            .unwrap()
            .requests
            .unwrap()["storage"]
            .0
            .clone();
        assert_ne!(size, "1Gi", "the claim was expanded");
        println!("PVC nearly full → expanded to {size} after approval");
    };

    let protected = async {
        // A fault in kube-system: proposed, denied by the gate, audited, untouched.
        let name = format!("{ns}-sys");
        faults::crash_loop(client, "kube-system", &name, 1)
            .await
            .unwrap();
        let pods = eventually("the kube-system pod crash-looping", WAIT, || async {
            let pods = faults::pods_of(client, "kube-system", &name).await?;
            Ok(pods.into_iter().find(|p| restarts(p) >= MIN_RESTARTS))
        })
        .await
        .unwrap();
        let deployment_uid = Api::<Deployment>::namespaced(client.clone(), "kube-system")
            .get(&name)
            .await
            .unwrap()
            .uid()
            .unwrap();
        let pod_uid = pods.uid().unwrap();
        let denied = eventually("the kube-system action denied", WAIT, || async {
            let mut all = h.actions_on(&pod_uid).await;
            all.extend(h.actions_on(&deployment_uid).await);
            Ok(all
                .into_iter()
                .find(|a| a.status.as_ref().and_then(|s| s.phase) == Some(Phase::Denied)))
        })
        .await
        .unwrap();
        let verdict = denied.status.clone().unwrap().verdict.unwrap();
        assert!(
            verdict
                .matched_rules
                .iter()
                .any(|r| r.contains("protected")),
            "{verdict:?}"
        );
        let audit = std::fs::read_to_string(std::env::temp_dir().join(format!("{ns}-audit.jsonl")))
            .unwrap();
        assert!(
            audit.contains(&denied.spec.recommendation_id),
            "the denial is in the audit log"
        );
        let still = Api::<Pod>::namespaced(client.clone(), "kube-system")
            .get_opt(&pods.name_any())
            .await
            .unwrap();
        assert!(still.is_some(), "nothing in kube-system was touched");
        Api::<Deployment>::namespaced(client.clone(), "kube-system")
            .delete(&name, &Default::default())
            .await
            .unwrap();
        println!(
            "fault in kube-system → denied ({}) and audited",
            verdict.matched_rules.join(",")
        );
    };

    let (_, _, _, _, node, _, _) = tokio::join!(crash, oom, stale_job, hpa, node, pvc, protected);
    drop(node);
}

/// Monitor and DryRun record what would happen and change nothing.
async fn records_without_changing_anything(test: &str, mode: &str) {
    let Some(h) = Harness::start(test, mode).await else {
        return;
    };
    let pods: Api<Pod> = Api::namespaced(h.fx.client.clone(), h.fx.ns());
    faults::deployment(&h.fx.client, h.fx.ns(), "web", 3, &PodSpec::default())
        .await
        .unwrap();
    let victim = h.running_pods("web", 3).await.remove(0);
    let uid = victim.uid().unwrap();
    crash_one_pod(&pods, &victim).await;
    faults::oom_killed(&h.fx.client, h.fx.ns(), "hungry", "128Mi")
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(h.fx.client.clone(), h.fx.ns());
    let hungry = deployments.get("hungry").await.unwrap();

    let restart = h.wait_phase(&uid, Phase::Recorded).await;
    let patch = h.wait_phase(&hungry.uid().unwrap(), Phase::Recorded).await;
    for action in [&restart, &patch] {
        let status = action.status.clone().unwrap();
        let diff = status
            .result
            .as_ref()
            .map(|r| r.dry_run_diff.clone())
            .unwrap_or_default();
        if mode == "DryRun" {
            assert!(!diff.is_empty(), "DryRun stores the diff: {status:?}");
        } else {
            assert!(diff.is_empty(), "Monitor does not even dry-run: {status:?}");
        }
    }
    // Give an executor every chance to act, then check nothing changed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pod = pods.get(&victim.name_any()).await.unwrap();
    assert_eq!(pod.uid(), Some(uid), "the pod was not restarted");
    let now = deployments.get("hungry").await.unwrap();
    assert_eq!(now.spec, hungry.spec, "the Deployment was not changed");
    assert_eq!(now.metadata.generation, hungry.metadata.generation);
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_mode_records_and_changes_nothing() {
    records_without_changing_anything("pipeline-monitor", "Monitor").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_mode_stores_diffs_and_changes_nothing() {
    records_without_changing_anything("pipeline-dryrun", "DryRun").await;
}
