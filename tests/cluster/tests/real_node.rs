//! The real node: a kubelet with containerd runs real containers, and
//! Nanny heals their real failures — a crash loop with the kubelet's own
//! back-off, and a kernel OOM kill — with the API server's evidence. It
//! also acts before one: a real container whose working set grows, as the
//! real kubelet measures it and the cluster's Prometheus scrapes it, is
//! predicted to be OOM-killed while it still runs; and the built-in query
//! for a node's filesystem reads the real kubelet's cAdvisor series.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ContainerStatus, Node, Pod},
};
use kube::{Api, ResourceExt as _, api::LogParams};
use nanny_cluster_tests::{
    Fixture,
    pipeline::{Harness, policy, restarts_ladder_policy, says},
};
use nanny_crd::{ActionType, HealingAction, Phase};
use nanny_test_util::{
    cluster::{eventually, node_is_ready},
    faults,
    real_node::{self, LABEL, NODE_NAME, TAINT_KEY},
};

/// Real back-off and real containers take their time.
const REAL: Duration = Duration::from_secs(180);

/// The first container status of `app`'s pod on the real node that
/// `accept` accepts, with the pod.
async fn container_when(
    h: &Harness,
    app: &str,
    what: &str,
    accept: impl Fn(&ContainerStatus) -> bool,
) -> (Pod, ContainerStatus) {
    h.eventually(what, REAL, || async {
        faults::container_status_of(&h.fx.client, h.fx.ns(), app, &accept).await
    })
    .await
}

fn last_exit(status: &ContainerStatus) -> Option<(i32, String)> {
    let terminated = status.last_state.as_ref()?.terminated.as_ref()?;
    Some((
        terminated.exit_code,
        terminated.reason.clone().unwrap_or_default(),
    ))
}

/// The action of `action_type` on `uid` once `done` accepts it.
async fn action_when(
    h: &Harness,
    uid: &str,
    action_type: ActionType,
    done: impl Fn(&HealingAction) -> bool,
) -> HealingAction {
    h.eventually(&format!("a {action_type:?} on {uid}"), REAL, || async {
        Ok(h.actions_on(uid)
            .await
            .into_iter()
            .find(|a| a.spec.action.type_ == action_type && done(a)))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn real_crash_loops_and_oom_kills_on_the_real_node_are_healed() {
    let Some(fx) = Fixture::new("real-node").await else {
        return;
    };
    assert_eq!(
        fx.cluster.real_node.as_deref(),
        Some(NODE_NAME),
        "`cargo xtask cluster up` starts the real node (unless --no-real-node)"
    );
    // The node: a real kubelet's, Ready, labelled and tainted; kwok's
    // annotation is absent, so kwok leaves it alone.
    let node = Api::<Node>::all(fx.client.clone())
        .get(NODE_NAME)
        .await
        .unwrap();
    assert!(node_is_ready(&node), "{:?}", node.status);
    let info = node.status.as_ref().unwrap().node_info.as_ref().unwrap();
    assert!(
        info.container_runtime_version.starts_with("containerd://"),
        "{info:?}"
    );
    assert_eq!(node.labels().get(LABEL).map(String::as_str), Some("real"));
    assert!(
        node.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| t
                .iter()
                .any(|t| t.key == TAINT_KEY && t.effect == "NoSchedule")),
        "{:?}",
        node.spec
    );
    assert!(!node.annotations().contains_key("kwok.x-k8s.io/node"));

    // Nanny's five services (as processes) under an Auto policy: crash
    // loops restarted from two restarts on, an OOM kill's memory raise
    // asked of a human.
    let mut policy = restarts_ladder_policy(fx.ns());
    policy.spec.rules.crashloop_min_restarts = Some(2);
    // Memory ×4 after an OOM kill, judged over 30 s (a real rollout).
    policy.spec.rules.oom_memory_factor = Some(4.0);
    policy.spec.verification_timeout_seconds = 30;
    let h = Harness::with_policy(fx, &policy, Vec::new()).await;
    let (client, ns) = (&h.fx.client, h.fx.ns());
    // The fault app: exits 1 after a second; holds 48 MiB, which does not
    // fit in 32 MiB and does in four times that.
    real_node::fault_deployment(
        client,
        ns,
        "crasher",
        &["--mode", "exit", "--exit-code", "1", "--after", "1"],
        None,
    )
    .await
    .unwrap();
    real_node::fault_deployment(
        client,
        ns,
        "hog",
        &["--mode", "memory", "--mib", "48"],
        Some("32Mi"),
    )
    .await
    .unwrap();

    // 1. A real crash loop: exit 1, the kubelet's own back-off.
    let (crashing, status) = container_when(&h, "crasher", "a real CrashLoopBackOff", |s| {
        s.state
            .as_ref()
            .and_then(|st| st.waiting.as_ref())
            .is_some_and(|w| w.reason.as_deref() == Some("CrashLoopBackOff"))
            && s.restart_count >= 1
    })
    .await;
    assert_eq!(last_exit(&status), Some((1, "Error".to_owned())));
    assert_eq!(
        crashing.spec.as_ref().unwrap().node_name.as_deref(),
        Some(NODE_NAME)
    );
    let waiting = status.state.unwrap().waiting.unwrap();
    assert!(
        waiting
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("back-off ")),
        "the kubelet's back-off message: {waiting:?}"
    );
    // Nanny restarts the crashing pod: the real pod is gone and the
    // ReplicaSet's replacement runs (and crashes) on the real node.
    let restart = action_when(&h, &crashing.uid().unwrap(), ActionType::RestartPod, |a| {
        a.status.as_ref().and_then(|s| s.result.as_ref()).is_some()
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually("the restarted pod gone", REAL, || async {
        Ok(pods
            .get_opt(&crashing.name_any())
            .await?
            .is_none_or(|p| p.uid() != crashing.uid())
            .then_some(()))
    })
    .await
    .unwrap();
    let (replacement, _) = container_when(&h, "crasher", "the replacement ran", |s| {
        last_exit(s).is_some_and(|(code, _)| code == 1)
    })
    .await;
    assert_ne!(replacement.uid(), crashing.uid());
    // What the real container printed, through the API server and kubelet.
    eventually("the crashed container's log", REAL, || async {
        for pod in faults::pods_of(client, ns, "crasher").await? {
            let params = LogParams {
                previous: true,
                ..LogParams::default()
            };
            if let Ok(log) = pods.logs(&pod.name_any(), &params).await
                && log.contains("nanny-fault: exiting with 1")
            {
                return Ok(Some(()));
            }
        }
        Ok(None)
    })
    .await
    .unwrap();
    let result = restart.status.unwrap().result.unwrap();
    assert!(result.outcome.executed(), "{result:?}");

    // 2. A real OOM kill: the kernel ends the container (exit 137).
    let (hog, status) = container_when(&h, "hog", "a real OOM kill", |s| {
        last_exit(s).is_some_and(|(_, reason)| reason == "OOMKilled")
    })
    .await;
    assert_eq!(last_exit(&status), Some((137, "OOMKilled".to_owned())));
    // Nanny proposes a higher limit on the Deployment; a human approves;
    // the real node runs the new pod with it.
    let hog_deployment = Api::<Deployment>::namespaced(client.clone(), ns)
        .get("hog")
        .await
        .unwrap();
    let workload = hog_deployment.uid().unwrap();
    let uid_of_target = |a: &HealingAction| a.spec.target.uid.clone();
    let pending = eventually("a memory raise waiting for a human", REAL, || async {
        Ok(h.actions
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .find(|a| {
                a.spec.action.type_ == ActionType::PatchResources
                    && (a.spec.workload_uid.as_deref() == Some(workload.as_str())
                        || a.spec.target.uid == workload
                        || a.spec.target.uid == hog.uid().unwrap())
                    && a.status.as_ref().and_then(|s| s.phase) == Some(Phase::PendingApproval)
            }))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    h.approve(&pending).await;
    // Verified on the real rollout: the new pod stays up.
    action_when(
        &h,
        &uid_of_target(&pending),
        ActionType::PatchResources,
        |a| a.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded),
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let limit = h
        .eventually("the raised limit on the Deployment", REAL, || async {
            Ok(faults::memory_limit(&deployments.get("hog").await?).filter(|l| l != "32Mi"))
        })
        .await;
    eventually(
        "a pod with the raised limit on the real node",
        REAL,
        || async {
            Ok(faults::pods_of(client, ns, "hog")
                .await?
                .into_iter()
                .find(|p| {
                    p.spec.as_ref().is_some_and(|s| {
                        s.node_name.as_deref() == Some(NODE_NAME)
                            && s.containers[0]
                                .resources
                                .as_ref()
                                .and_then(|r| r.limits.as_ref())
                                .and_then(|l| l.get("memory"))
                                .is_some_and(|q| q.0 == limit)
                    }) && p
                        .status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.ready))
                }))
        },
    )
    .await
    .unwrap();
    println!(
        "real node: crash loop (exit 1, kubelet back-off) restarted by Nanny ({}); OOM kill (137) → memory limit 32Mi → {limit}, approved, verified, Ready",
        result.outcome
    );
}

/// A real container whose working set grows 1 MiB a second toward its
/// 512 MiB limit, measured by the real kubelet and scraped by the
/// cluster's Prometheus: `OOMPredicted` before the kernel kills it, a limit
/// sized to the trend proposed for a human, nothing changed until the
/// approval, then the real rollout with the raised limit.
#[tokio::test(flavor = "multi_thread")]
async fn a_real_container_growing_toward_its_limit_is_predicted_before_it_is_killed() {
    let Some(fx) = Fixture::new("real-leak").await else {
        return;
    };
    assert_eq!(fx.cluster.real_node.as_deref(), Some(NODE_NAME));
    // Minutes, not hours: a ten-minute trend window 5 s a step (the scrape
    // interval), judged on two minutes of history.
    let env = [
        ("PROMETHEUS__TREND_WINDOW_SECS", "600"),
        ("PROMETHEUS__TREND_STEP_SECS", "5"),
        ("PROMETHEUS__TREND_INTERVAL_SECS", "5"),
        ("THRESHOLDS__OOM_MIN_HISTORY_SECS", "120"),
        ("THRESHOLDS__PVC_FILL_MIN_HISTORY_SECS", "120"),
        ("THRESHOLDS__NODE_EXHAUSTION_MIN_HISTORY_SECS", "120"),
    ]
    .into_iter()
    .map(|(key, value)| ("nanny-collector", format!("NANNY_{key}"), value.to_owned()))
    .collect();
    let policy = policy(fx.ns(), "Auto");
    let h = Harness::with_policy(fx, &policy, env).await;
    let (client, ns) = (&h.fx.client, h.fx.ns());
    // The built-in node_fs_used_bytes finds the real node's filesystem in
    // its kubelet's cAdvisor series: used bytes within its ephemeral
    // storage, the ceiling NodeDiskPredictedFull is judged against.
    let (_, query) = nanny_collector::config::BUILTIN_QUERIES
        .iter()
        .find(|(name, _)| *name == "node_fs_used_bytes")
        .unwrap();
    let capacity = Api::<Node>::all(client.clone())
        .get(NODE_NAME)
        .await
        .unwrap()
        .status
        .and_then(|s| s.capacity)
        .and_then(|c| c.get("ephemeral-storage").cloned())
        .and_then(|q| nanny_common::quantity::parse(&q.0))
        .expect("the real node's ephemeral storage");
    let used = eventually("the real node's filesystem in Prometheus", REAL, || async {
        let found = faults::prometheus_query(&h.fx.cluster.prometheus_url, query).await?;
        Ok(found
            .into_iter()
            .find(|(labels, _)| labels["node"] == NODE_NAME)
            .map(|(_, used)| used))
    })
    .await
    .unwrap();
    assert!(used > 0.0 && used <= capacity, "{used} of {capacity}");
    real_node::fault_deployment(
        client,
        ns,
        "leak",
        &["--mode", "memory", "--mib", "16", "--grow-mib-per-sec", "1"],
        Some("512Mi"),
    )
    .await
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let workload = deployments.get("leak").await.unwrap().uid().unwrap();

    // Predicted from the real series, for a human.
    let pending = action_when(&h, &workload, ActionType::PatchResources, |a| {
        a.status.as_ref().and_then(|s| s.phase) == Some(Phase::PendingApproval)
    })
    .await;
    assert_eq!(pending.spec.issue_kind.as_deref(), Some("OOM_PREDICTED"));
    says(
        &pending.spec.reasoning,
        &[
            "predicted to reach its memory limit in",
            "of 512 MiB",
            "Predicted, not yet failed",
            "memory leak",
        ],
    );
    // Before the failure: the API server shows the container running,
    // never killed, and the Deployment's limit untouched.
    let (pod, status) = container_when(&h, "leak", "the growing container", |_| true).await;
    assert_eq!(
        pod.spec.as_ref().unwrap().node_name.as_deref(),
        Some(NODE_NAME)
    );
    assert_eq!(status.restart_count, 0, "{status:?}");
    assert!(
        status
            .last_state
            .as_ref()
            .is_none_or(|s| s.terminated.is_none()),
        "{status:?}"
    );
    assert_eq!(
        faults::memory_limit(&deployments.get("leak").await.unwrap()).as_deref(),
        Some("512Mi"),
        "nothing changed before the approval"
    );
    // Growing 3.5 GiB an hour: a day of it is far past the ceiling of the
    // limit times 1.5.
    let limit = pending
        .spec
        .action
        .params
        .limits()
        .and_then(|l| l.memory_bytes)
        .map(|b| b.0);
    assert_eq!(limit, Some(768 << 20), "{:?}", pending.spec.action);
    println!("real node: OOMPredicted: {}", pending.spec.reasoning);

    // Approved: the real rollout runs the pod with the raised limit.
    h.approve(&pending).await;
    action_when(&h, &workload, ActionType::PatchResources, |a| {
        a.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded)
    })
    .await;
    assert_eq!(
        faults::memory_limit(&deployments.get("leak").await.unwrap()).as_deref(),
        Some("805306368"),
    );
    // The leak goes on; the test stops it before the kernel does.
    deployments
        .delete("leak", &Default::default())
        .await
        .unwrap();
}
