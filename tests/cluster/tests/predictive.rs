//! Predictive healing (#23): trends fitted to a real Prometheus's range
//! queries, acted on before anything fails.
//!
//! The series are written with two hours of known history into a real
//! Prometheus (Prometheus' own backfilling: `promtool tsdb
//! create-blocks-from openmetrics`), for real objects of the cluster:
//! - a Deployment's container whose working set grows 150 MiB/h toward its
//!   512 MiB limit: `OOMPredicted`, a limit sized to the trend proposed for
//!   a human, with the leak hypothesis, nothing changed;
//! - a claim of 1 GiB filling 50 MiB/h, with a quarter hour missing from
//!   its series: `PVCPredictedFull`, expanded once a human approves, while
//!   40% full;
//! - a node of 256 GiB allocatable whose working set grows 15 GiB/h:
//!   `NodePredictedExhausted`, cordoned once a human approves;
//! - a node of 200 GiB allocatable ephemeral storage whose filesystem
//!   fills 20 GiB/h (cAdvisor's root cgroup usage): `NodeDiskPredictedFull`,
//!   cordoned once a human approves;
//! - an HPA at its maximum for a share of each day rising 2 points a day
//!   over two weeks (kube-state-metrics' series): `HPAAtMaxRising`, its
//!   maximum raised from 4 to 6;
//! - a container flat with spikes, and one that restarted 70 minutes ago
//!   after a steep rise and has grown slowly since: nothing raised, the
//!   restart logged with the series' name (fitted since the restart).
//!
//! Prometheus itself picks the series worth fetching (a steady rise over
//! the last hour, judged once at the range's end), so the noisy container's
//! range is never fetched.
//!
//! The five services run as processes with their real defaults, but for the
//! trend range and step (a three-hour window a minute apart) and the
//! collector's Prometheus (the backfilled one).

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use k8s_openapi::api::{
    apps::v1::Deployment,
    autoscaling::v2::HorizontalPodAutoscaler,
    core::v1::{Node, PersistentVolumeClaim},
};
use kube::{Api, ResourceExt};
use nanny_cluster_tests::{
    Fixture,
    pipeline::{Harness, WAIT, policy, says},
};
use nanny_crd::{ActionType, Phase};
use nanny_test_util::{
    backfill::{self, Series, minutes},
    cluster::eventually,
    faults::{self, PodSpec},
    nodes::FakeNode,
};

const MIB: f64 = 1_048_576.0;
/// Minutes a day.
const DAY: i64 = 1440;
const GIB: f64 = 1024.0 * MIB;

fn env() -> Vec<(&'static str, String, String)> {
    [
        ("TREND_WINDOW_SECS", "10800"),
        ("TREND_STEP_SECS", "60"),
        ("TREND_INTERVAL_SECS", "5"),
    ]
    .into_iter()
    .map(|(key, value)| {
        (
            "nanny-collector",
            format!("NANNY_PROMETHEUS__{key}"),
            value.to_owned(),
        )
    })
    .collect()
}

/// The one pod of Deployment `app` with a 512 MiB limit, once it runs.
async fn pod_of(fx: &Fixture, app: &str) -> (String, String) {
    let spec = PodSpec {
        memory_limit: Some("512Mi".to_owned()),
        ..PodSpec::default()
    };
    faults::deployment(&fx.client, fx.ns(), app, 1, &spec)
        .await
        .unwrap();
    let pod = eventually(&format!("{app}'s pod"), WAIT, || async {
        Ok(faults::pods_of(&fx.client, fx.ns(), app).await?.pop())
    })
    .await
    .unwrap();
    let uid = Api::<Deployment>::namespaced(fx.client.clone(), fx.ns())
        .get(app)
        .await
        .unwrap()
        .uid()
        .unwrap();
    (pod.name_any(), uid)
}

fn working_set(ns: &str, pod: &str, samples: Vec<(i64, f64)>) -> Series {
    Series {
        name: "container_memory_working_set_bytes",
        labels: vec![
            ("namespace", ns.to_owned()),
            ("pod", pod.to_owned()),
            ("container", "app".to_owned()),
        ],
        samples,
    }
}

#[tokio::test]
async fn trends_predict_a_fill_and_an_oom_before_they_happen_and_noise_raises_nothing() {
    let Some(mut fx) = Fixture::new("predictive").await else {
        return;
    };
    let ns = fx.ns().to_owned();
    let client = fx.client.clone();
    let (leaky, leaky_uid) = pod_of(&fx, "leaky").await;
    let (noisy, noisy_uid) = pod_of(&fx, "noisy").await;
    // An HPA (at most 4 replicas) not at its maximum now.
    let cpu = PodSpec {
        cpu_request: Some("100m".to_owned()),
        ..PodSpec::default()
    };
    let peaky_uid = faults::hpa_on_cpu(&client, &ns, "peaky", &cpu, false)
        .await
        .unwrap()
        .uid()
        .unwrap();
    let (restarted, restarted_uid) = pod_of(&fx, "restarted").await;
    let claim = faults::pvc_nearly_full(&client, &ns, "data", 1 << 30, 400 << 20)
        .await
        .unwrap();
    let claim_uid = claim.uid().unwrap();
    // A node of the test's own, 256 GiB allocatable.
    let node = FakeNode::create(&fx.cluster, &client, &format!("{ns}-full"))
        .await
        .unwrap();
    let full = Api::<Node>::all(client.clone())
        .get(&node.name)
        .await
        .unwrap();
    let allocatable = full
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get("memory"))
        .map(|q| q.0.clone());
    assert_eq!(
        allocatable.as_deref(),
        Some("256Gi"),
        "the node's allocatable memory"
    );
    let node_uid = full.uid().unwrap();
    // Another, whose disk fills.
    let disk = FakeNode::create(&fx.cluster, &client, &format!("{ns}-disk"))
        .await
        .unwrap();
    let disk_uid = Api::<Node>::all(client.clone())
        .get(&disk.name)
        .await
        .unwrap()
        .uid()
        .unwrap();

    // Two hours of history, ending now.
    let end = k8s_openapi::jiff::Timestamp::now().as_second();
    let hpa_labels = vec![
        ("namespace", ns.clone()),
        ("horizontalpodautoscaler", "peaky".to_owned()),
    ];
    let claim_labels = vec![
        ("namespace", ns.clone()),
        ("persistentvolumeclaim", "data".to_owned()),
    ];
    #[expect(clippy::cast_precision_loss, reason = "minutes")]
    let series = vec![
        // 100 MiB growing 2.5 MiB a minute: 400 MiB now, 512 MiB in 45 minutes.
        working_set(
            &ns,
            &leaky,
            minutes(end, 120, |m| Some((100.0 + 2.5 * m as f64) * MIB)),
        ),
        // 200 MiB with a spike to 480 MiB every 13 minutes.
        working_set(
            &ns,
            &noisy,
            minutes(end, 120, |m| {
                Some(if m % 13 == 0 { 480.0 } else { 200.0 } * MIB)
            }),
        ),
        // A steep rise (it would reach the limit within the hour), a restart
        // 70 minutes ago, a slow rise since (30 MiB/h from 50 MiB: the limit
        // is 14 hours away): fitted since the restart only, nothing raised.
        working_set(
            &ns,
            &restarted,
            minutes(end, 120, |m| {
                Some(
                    if m < 50 {
                        300.0 + 4.0 * m as f64
                    } else {
                        50.0 + 0.5 * (m - 50) as f64
                    } * MIB,
                )
            }),
        ),
        // 300 MiB growing 50 MiB/h, a quarter hour missing: 400 MiB of 1
        // GiB now, full in about 12.5 hours.
        Series {
            name: "kubelet_volume_stats_used_bytes",
            labels: claim_labels.clone(),
            samples: minutes(end, 120, |m| {
                (!(60..75).contains(&m)).then(|| (300.0 + m as f64 * 50.0 / 60.0) * MIB)
            }),
        },
        // The node's working set: 150 GiB growing 15 GiB/h, 180 GiB now,
        // its 256 GiB allocatable in about 5 hours.
        Series {
            name: "node_memory_working_set_bytes",
            labels: vec![("node", node.name.clone())],
            samples: minutes(end, 120, |m| Some((150.0 + m as f64 / 4.0) * GIB)),
        },
        // The other node's filesystem: 100 GiB filling 20 GiB/h, 140 GiB
        // now, its 200 GiB allocatable ephemeral storage in 3 hours.
        Series {
            name: "container_fs_usage_bytes",
            labels: vec![
                ("id", "/".to_owned()),
                ("device", "/dev/vda1".to_owned()),
                ("node", disk.name.clone()),
            ],
            samples: minutes(end, 120, |m| Some((100.0 + m as f64 / 3.0) * GIB)),
        },
        // Two weeks of the HPA's replicas, a sample every 5 minutes: at its
        // maximum for 4% of the first day and 2 points more each day, 30%
        // of the last (kube-state-metrics' series).
        Series {
            name: "kube_horizontalpodautoscaler_status_current_replicas",
            labels: hpa_labels.clone(),
            samples: minutes(end, 14 * DAY, |m| {
                let (day, minute) = (m / DAY, m % DAY);
                let share = 0.04 + 0.02 * day as f64;
                (m % 5 == 0).then_some(if (minute as f64) < share * DAY as f64 {
                    4.0
                } else {
                    2.0
                })
            }),
        },
        Series {
            name: "kube_horizontalpodautoscaler_spec_max_replicas",
            labels: hpa_labels,
            samples: minutes(end, 14 * DAY, |m| (m % 5 == 0).then_some(4.0)),
        },
        Series {
            name: "kubelet_volume_stats_capacity_bytes",
            labels: claim_labels,
            samples: minutes(end, 120, |_| Some(1024.0 * MIB)),
        },
    ];
    let prometheus = backfill::start(
        &std::env::temp_dir().join(format!("{ns}-prometheus")),
        &series,
    )
    .await
    .unwrap();
    fx.cluster.prometheus_url = prometheus.url.clone();
    let policy = policy(&ns, "Auto");
    let h = Harness::with_policy(fx, &policy, env()).await;

    // The predicted OOM: a limit sized to the trend, for a human.
    let oom = h.wait_phase(&leaky_uid, Phase::PendingApproval).await;
    assert_eq!(oom.spec.issue_kind.as_deref(), Some("OOM_PREDICTED"));
    assert_eq!(oom.spec.action.type_, ActionType::PatchResources);
    let limit = oom
        .spec
        .action
        .params
        .limits()
        .and_then(|l| l.memory_bytes)
        .map(|b| b.0);
    let reasoning = &oom.spec.reasoning;
    says(
        reasoning,
        &[
            "predicted to reach its memory limit",
            "Predicted, not yet failed",
            "memory leak",
            "holds the trend",
        ],
    );
    // The working set grows 150 MiB/h: a day of it is far past the
    // ceiling of the limit times 1.5 (768 MiB).
    assert_eq!(limit, Some(768 << 20), "{:?}", oom.spec.action);
    println!("OOMPredicted → a limit of {limit:?} bytes proposed: {reasoning}");
    assert_eq!(
        faults::memory_limit(
            &Api::<Deployment>::namespaced(client.clone(), &ns)
                .get("leaky")
                .await
                .unwrap()
        )
        .as_deref(),
        Some("512Mi"),
        "nothing changed before the approval"
    );

    // The predicted fill: expanded once a human approves, 40% full.
    let fill = h.wait_phase(&claim_uid, Phase::PendingApproval).await;
    assert_eq!(fill.spec.issue_kind.as_deref(), Some("PVC_PREDICTED_FULL"));
    assert!(
        fill.spec.reasoning.contains("predicted to fill"),
        "{}",
        fill.spec.reasoning
    );
    println!("PVCPredictedFull: {}", fill.spec.reasoning);
    let resizer = faults::volume_resizer(client.clone(), ns.clone(), "data".to_owned());
    let done = h.approve_and_wait(&claim_uid, ActionType::ExpandPvc).await;
    resizer.abort();
    let size = faults::claim_request(&client, &ns, "data").await.unwrap();
    assert_eq!(
        size, "2147483648",
        "expanded to hold the trend, at most twice: {done:?}"
    );
    let capacity = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .get("data")
        .await
        .unwrap()
        .status
        .and_then(|s| s.capacity)
        .and_then(|mut c| c.remove("storage"))
        .map(|q| q.0);
    println!("PVCPredictedFull → expanded to {size} (capacity {capacity:?}) after approval");

    // The node predicted to run out of memory: cordoned once a human
    // approves.
    let cordon = h.wait_phase(&node_uid, Phase::PendingApproval).await;
    assert_eq!(
        cordon.spec.issue_kind.as_deref(),
        Some("NODE_PREDICTED_EXHAUSTED")
    );
    says(
        &cordon.spec.reasoning,
        &[
            "predicted to reach its allocatable memory in 5.",
            "of 256 GiB",
            "Predicted, not yet failed",
        ],
    );
    assert!(
        !node.cordoned(&client).await.unwrap(),
        "nothing changed before the approval"
    );
    h.approve_and_wait(&node_uid, ActionType::CordonNode).await;
    assert!(node.cordoned(&client).await.unwrap());
    println!(
        "NodePredictedExhausted → cordoned after approval: {}",
        cordon.spec.reasoning
    );

    // The node predicted to fill its disk: cordoned by the same rule once
    // a human approves.
    let cordon = h.wait_phase(&disk_uid, Phase::PendingApproval).await;
    assert_eq!(
        cordon.spec.issue_kind.as_deref(),
        Some("NODE_DISK_PREDICTED_FULL")
    );
    says(
        &cordon.spec.reasoning,
        &[
            "bytes used on its filesystem are predicted to reach its allocatable ephemeral storage in ",
            "of 200 GiB",
            "Predicted, not yet failed",
            "DiskPressure",
        ],
    );
    assert!(
        !disk.cordoned(&client).await.unwrap(),
        "nothing changed before the approval"
    );
    h.approve_and_wait(&disk_uid, ActionType::CordonNode).await;
    assert!(disk.cordoned(&client).await.unwrap());
    println!(
        "NodeDiskPredictedFull → cordoned after approval: {}",
        cordon.spec.reasoning
    );

    // The HPA at its maximum for a rising share of each day: its maximum
    // raised before the next peak (auto-approved, as every raise within the
    // ceiling).
    let raised = h.wait_phase(&peaky_uid, Phase::Succeeded).await;
    assert_eq!(raised.spec.issue_kind.as_deref(), Some("HPA_AT_MAX_RISING"));
    assert_eq!(raised.spec.action.type_, ActionType::ScaleHpa);
    says(
        &raised.spec.reasoning,
        &[
            "at its maximum of 4 replicas for 30% of the last day",
            "rising 2.0 points a day over 14 days",
            "Predicted, not yet failed",
            "A maximum of 6 gives it room",
        ],
    );
    let max = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &ns)
        .get("peaky")
        .await
        .unwrap()
        .spec
        .unwrap()
        .max_replicas;
    assert_eq!(max, 6, "the API server's HPA");
    println!(
        "HPAAtMaxRising → maxReplicas 4 → 6: {}",
        raised.spec.reasoning
    );

    // Noise and a restart raise nothing; the restart and the gap are logged
    // with the series' names.
    for (what, uid) in [("noisy", &noisy_uid), ("restarted", &restarted_uid)] {
        let actions = h.actions_on(uid).await;
        assert!(actions.is_empty(), "{what}: {actions:?}");
    }
    // JSON lines: their quotes escaped.
    let logs = h
        .stack
        .get("nanny-collector")
        .logs()
        .join("\n")
        .replace("\\\"", "\"");
    for name in [
        format!(
            "container_memory_bytes{{container=\"app\",namespace=\"{ns}\",pod=\"{restarted}\"}} (1 reset(s)"
        ),
        format!("pvc_used_bytes{{namespace=\"{ns}\",persistentvolumeclaim=\"data\"}}"),
    ] {
        assert!(logs.contains(&name), "{name} not logged:\n{logs}");
    }
    drop(prometheus);
}
