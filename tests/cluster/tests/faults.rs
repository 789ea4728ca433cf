//! Every injected fault shows in the API (and Prometheus) exactly as a real
//! cluster would show it.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use k8s_openapi::{
    api::{
        autoscaling::v2::HorizontalPodAutoscaler,
        core::v1::{ContainerStatus, Node, Pod},
    },
    jiff::Timestamp,
};
use kube::{Api, api::ListParams};
use nanny_cluster_tests::Fixture;
use nanny_test_util::{
    cluster::{eventually, node_condition},
    faults::{self, HpaAtMax, NodeFault},
};

const WAIT: Duration = Duration::from_secs(60);

fn first_container(pod: &Pod) -> Option<ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()
        .cloned()
}

fn waiting_reason(status: &ContainerStatus) -> Option<String> {
    status.state.as_ref()?.waiting.as_ref()?.reason.clone()
}

/// The first pod of `app` whose first container satisfies `check`.
async fn pod_where(
    fx: &Fixture,
    app: &str,
    what: &str,
    check: impl Fn(&ContainerStatus) -> bool,
) -> ContainerStatus {
    eventually(what, WAIT, || async {
        let pods = faults::pods_of(&fx.client, fx.ns(), app).await?;
        Ok(pods.iter().filter_map(first_container).find(|c| check(c)))
    })
    .await
    .unwrap()
}

/// The value of the first series `query` returns, once Prometheus has scraped it.
async fn prometheus_value(fx: &Fixture, query: &str) -> f64 {
    eventually(
        &format!("{query} in Prometheus"),
        Duration::from_secs(90),
        || async {
            let series = faults::prometheus_query(&fx.cluster.prometheus_url, query).await?;
            Ok(series.first().map(|(_, v)| *v))
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn crash_loop_restart_count_keeps_rising() {
    let Some(fx) = Fixture::new("crashloop").await else {
        return;
    };
    faults::crash_loop(&fx.client, fx.ns(), "web", 1)
        .await
        .unwrap();
    let first = pod_where(&fx, "web", "CrashLoopBackOff", |c| {
        waiting_reason(c).as_deref() == Some("CrashLoopBackOff") && c.restart_count >= 1
    })
    .await;
    let terminated = first
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .unwrap();
    assert_eq!(terminated.reason.as_deref(), Some("Error"));
    assert_eq!(terminated.exit_code, 1);
    let later = pod_where(&fx, "web", "restartCount rising", |c| {
        c.restart_count > first.restart_count
    })
    .await;
    assert_eq!(waiting_reason(&later).as_deref(), Some("CrashLoopBackOff"));
}

#[tokio::test]
async fn oom_killed_shows_reason_and_exit_137() {
    let Some(fx) = Fixture::new("oom").await else {
        return;
    };
    faults::oom_killed(&fx.client, fx.ns(), "api", "256Mi")
        .await
        .unwrap();
    let status = pod_where(&fx, "api", "OOMKilled", |c| {
        c.last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.reason.as_deref())
            == Some("OOMKilled")
    })
    .await;
    let terminated = status.last_state.unwrap().terminated.unwrap();
    assert_eq!(terminated.exit_code, 137);
}

#[tokio::test]
async fn image_pull_backoff_keeps_the_pod_pending() {
    let Some(fx) = Fixture::new("imagepull").await else {
        return;
    };
    faults::image_pull_backoff(&fx.client, fx.ns(), "worker")
        .await
        .unwrap();
    pod_where(&fx, "worker", "ImagePullBackOff", |c| {
        waiting_reason(c).as_deref() == Some("ImagePullBackOff")
    })
    .await;
    let pods = faults::pods_of(&fx.client, fx.ns(), "worker")
        .await
        .unwrap();
    assert_eq!(
        pods[0].status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
}

#[tokio::test]
async fn unschedulable_pod_is_marked_by_the_real_scheduler() {
    let Some(fx) = Fixture::new("unsched").await else {
        return;
    };
    faults::unschedulable(&fx.client, fx.ns(), "big")
        .await
        .unwrap();
    eventually("PodScheduled=False/Unschedulable", WAIT, || async {
        let pods = faults::pods_of(&fx.client, fx.ns(), "big").await?;
        Ok(pods
            .iter()
            .find(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c.type_ == "PodScheduled"
                                && c.status == "False"
                                && c.reason.as_deref() == Some("Unschedulable")
                        })
                    })
            })
            .cloned())
    })
    .await
    .unwrap();
}

/// Node faults share the cluster's nodes, so one test walks through them in turn.
#[tokio::test]
async fn node_faults_set_conditions_and_clear() {
    let Some(fx) = Fixture::new("nodes").await else {
        return;
    };
    let nodes: Api<Node> = Api::all(fx.client.clone());
    let names: Vec<String> = nodes
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        // kwok's faults: the real node's conditions are its kubelet's.
        .filter(|n| nanny_test_util::nodes::kwok_managed(n))
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    assert!(names.len() >= 3, "need 3 kwok nodes, have {names:?}");

    for (node, fault) in names.iter().zip([
        NodeFault::NotReady,
        NodeFault::MemoryPressure,
        NodeFault::DiskPressure,
    ]) {
        faults::node_fault(&fx.client, node, fault).await.unwrap();
        let (condition, status) = fault.condition();
        eventually(&format!("{node} {condition}={status}"), WAIT, || async {
            Ok(nodes
                .get(node)
                .await
                .ok()
                .filter(|n| node_condition(n, condition).as_deref() == Some(status)))
        })
        .await
        .unwrap();
        if fault != NodeFault::NotReady {
            let n = nodes.get(node).await.unwrap();
            assert_eq!(
                node_condition(&n, "Ready").as_deref(),
                Some("True"),
                "pressure keeps {node} Ready"
            );
        }
    }
    for node in names.iter().take(3) {
        faults::clear_node_fault(&fx.client, node).await.unwrap();
    }
    for node in names.iter().take(3) {
        eventually(
            &format!("{node} healthy again"),
            Duration::from_secs(90),
            || async {
                Ok(nodes.get(node).await.ok().filter(|n| {
                    node_condition(n, "Ready").as_deref() == Some("True")
                        && node_condition(n, "MemoryPressure").as_deref() != Some("True")
                        && node_condition(n, "DiskPressure").as_deref() != Some("True")
                }))
            },
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn jobs_complete_with_a_backdated_time_or_fail() {
    let Some(fx) = Fixture::new("jobs").await else {
        return;
    };
    let done = faults::completed_job(
        &fx.client,
        fx.ns(),
        "nightly",
        Duration::from_secs(25 * 3600),
    )
    .await
    .unwrap();
    assert!(faults::job_condition(&done, "Complete"));
    let completed = done.status.unwrap().completion_time.unwrap().0;
    let age = Timestamp::now().duration_since(completed);
    assert!(
        age.as_secs() > 24 * 3600,
        "completionTime is only {age:?} old"
    );

    let failed = faults::failed_job(&fx.client, fx.ns(), "broken")
        .await
        .unwrap();
    assert!(faults::job_condition(&failed, "Failed"));
    assert!(failed.status.unwrap().failed.unwrap_or(0) >= 1);
}

#[tokio::test]
async fn hpa_at_max_stays_at_max_with_high_utilisation() {
    let Some(fx) = Fixture::new("hpa").await else {
        return;
    };
    let params = HpaAtMax {
        min_replicas: 2,
        max_replicas: 4,
        target_cpu_percent: 70,
        current_cpu_percent: 95,
    };
    faults::hpa_at_max(&fx.client, fx.ns(), "frontend", params)
        .await
        .unwrap();
    // Nothing in the cluster rewrites the status: it still says "at max" later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let hpa = Api::<HorizontalPodAutoscaler>::namespaced(fx.client.clone(), fx.ns())
        .get("frontend")
        .await
        .unwrap();
    let status = hpa.status.unwrap();
    assert_eq!(status.current_replicas, Some(4));
    assert_eq!(hpa.spec.unwrap().max_replicas, 4);
    let cpu = status.current_metrics.unwrap()[0]
        .resource
        .clone()
        .unwrap()
        .current
        .average_utilization
        .unwrap();
    assert!(cpu > 70, "utilisation {cpu} should be over target");
}

#[tokio::test]
async fn nearly_full_pvc_usage_reaches_prometheus() {
    let Some(fx) = Fixture::new("pvc").await else {
        return;
    };
    let capacity: i64 = 10 * 1024 * 1024 * 1024;
    let used: i64 = capacity / 100 * 93;
    let claim = faults::pvc_nearly_full(&fx.client, fx.ns(), "data", capacity, used)
        .await
        .unwrap();
    assert_eq!(claim.status.unwrap().phase.as_deref(), Some("Bound"));
    let query = format!(
        r#"kubelet_volume_stats_used_bytes{{namespace="{}",persistentvolumeclaim="data"}}"#,
        fx.ns()
    );
    let value = prometheus_value(&fx, &query).await;
    assert!((value - used as f64).abs() < 1.0, "{value} != {used}");
}

#[tokio::test]
async fn pod_memory_usage_reaches_prometheus() {
    let Some(fx) = Fixture::new("usage").await else {
        return;
    };
    faults::with_usage(&fx.client, fx.ns(), "cache", "250m", "300Mi")
        .await
        .unwrap();
    let query = format!(r#"pod_memory_working_set_bytes{{namespace="{}"}}"#, fx.ns());
    let value = prometheus_value(&fx, &query).await;
    assert_eq!(value, 300.0 * 1024.0 * 1024.0);
}
