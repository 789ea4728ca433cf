//! The cluster half of `cargo xtask bench collector` (ignored in the test
//! run; performance is measured, not asserted): `NANNY_BENCH_PODS` pods over
//! the cluster's kwok nodes, then the real collector process's steady-state
//! RSS, time to first complete picture, full-snapshot time and size over
//! gRPC, and detection latency from an API write to the issue arriving at a
//! subscriber (p50/p99).

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{StreamExt as _, stream};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use nanny_cluster_tests::Fixture;
use nanny_proto::v1::{
    GetSnapshotRequest, IssueKind, Scope, WatchRequest, collector_client::CollectorClient,
};
use nanny_test_util::process::{ServiceProcess, cargo_bin};
use prost::Message as _;
use serde_json::json;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn running_pods(pods: &Api<Pod>) -> usize {
    let mut count = 0;
    let mut params = ListParams::default()
        .fields("status.phase=Running")
        .limit(5000);
    loop {
        let page = pods.list_metadata(&params).await.unwrap();
        count += page.items.len();
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return count,
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[tokio::test]
#[ignore = "a benchmark: run by `cargo xtask bench collector`"]
async fn collector_at_scale() {
    let Some(fx) = Fixture::new("bench").await else {
        return;
    };
    let target: usize = env_or("NANNY_BENCH_PODS", 10_000);
    let faults: usize = env_or("NANNY_BENCH_FAULTS", 100);
    let binary = std::env::var("NANNY_BENCH_COLLECTOR")
        .map_or_else(|_| cargo_bin("nanny-collector"), PathBuf::from);
    let nodes: Vec<String> = Api::<Node>::all(fx.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        // kwok's nodes: the real node would try to run them.
        .filter(nanny_test_util::nodes::kwok_managed)
        .filter_map(|n| n.metadata.name)
        .collect();
    let pods: Api<Pod> = Api::namespaced(fx.client.clone(), fx.ns());

    // Bound directly to nodes: the benchmark measures the collector, not the scheduler.
    let started = Instant::now();
    stream::iter(0..target)
        .map(|i| {
            let pods = pods.clone();
            let node = nodes[i % nodes.len()].clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": { "name": format!("load-{i:06}"), "labels": { "app": format!("load-{}", i % 100) } },
                    "spec": {
                        "nodeName": node,
                        "tolerations": [{ "key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule" }],
                        "containers": [{ "name": "app", "image": "registry.example/load:1",
                            "resources": { "requests": { "cpu": "10m", "memory": "16Mi" }, "limits": { "memory": "64Mi" } } }],
                    },
                }))
                .unwrap();
                for _ in 0..5 {
                    if pods.create(&PostParams::default(), &pod).await.is_ok() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                panic!("could not create pod {i}");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let created = started.elapsed();
    loop {
        let running = running_pods(&pods).await;
        if running >= target {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "only {running} of {target} pods Running"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eprintln!(
        "load: {target} pods over {} nodes created in {created:.1?}, all Running after {:.1?}",
        nodes.len(),
        started.elapsed()
    );

    let kubeconfig = fx.cluster.kubeconfig.to_string_lossy().into_owned();
    let mut env = vec![
        ("NANNY_KUBERNETES__KUBECONFIG", kubeconfig.as_str()),
        ("NANNY_PROMETHEUS__URL", fx.cluster.prometheus_url.as_str()),
    ];
    // NANNY_BENCH_BEFORE_TRENDS: a collector built before trends (#23)
    // knows none of their settings; compare against one that way.
    if std::env::var_os("NANNY_BENCH_BEFORE_TRENDS").is_none() {
        env.extend([
            // Trends as in production (one range query per trend query
            // every 5 minutes, the first at start), over a range the
            // cluster's short history fills: 60 samples a series, where
            // the default six hours at five minutes hold 72.
            ("NANNY_PROMETHEUS__TREND_WINDOW_SECS", "1800"),
            ("NANNY_PROMETHEUS__TREND_STEP_SECS", "30"),
            ("NANNY_THRESHOLDS__PVC_FILL_MIN_HISTORY_SECS", "600"),
            ("NANNY_THRESHOLDS__OOM_MIN_HISTORY_SECS", "600"),
            ("NANNY_THRESHOLDS__NODE_EXHAUSTION_MIN_HISTORY_SECS", "600"),
        ]);
    }
    let collector = ServiceProcess::spawn(&binary, &env).await.unwrap();
    let spawned = Instant::now();
    // RSS twice a second over the whole run, not only at two moments: a
    // start-up usage round and the allocator's timing move single samples
    // by tens of MiB.
    let rss_samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn({
        let (pid, samples) = (collector.pid(), rss_samples.clone());
        async move {
            loop {
                if let Ok(kib) = nanny_test_util::process::rss_kib_of(pid) {
                    samples.lock().unwrap().push(kib / 1024);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    let synced = collector
        .wait_serving("nanny.v1.Collector", Duration::from_secs(600))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let rss_mib = collector.rss_kib().unwrap() / 1024;

    let mut client = CollectorClient::new(collector.channel(nanny_common::tls::COORDINATOR));
    let mut full = Vec::new();
    let (mut bytes, mut chunks, mut pods_seen) = (0, 0, 0);
    for _ in 0..5 {
        let t = Instant::now();
        let mut stream = client
            .get_snapshot(GetSnapshotRequest { scope: None })
            .await
            .unwrap()
            .into_inner();
        (bytes, chunks, pods_seen) = (0, 0, 0);
        while let Some(message) = stream.message().await.unwrap() {
            bytes += message.encoded_len();
            chunks += 1;
            pods_seen += message.pods.len();
        }
        full.push(t.elapsed());
    }
    full.sort();
    assert!(pods_seen >= target, "snapshot has {pods_seen} pods");

    // Detection: one pod at a time turns CrashLoopBackOff through its status
    // subresource; the clock runs from just before the write to the issue's
    // arrival on a subscribed stream.
    let mut stream = client
        .watch_snapshots(WatchRequest {
            scope: Some(Scope {
                namespaces: vec![fx.ns().to_owned()],
                label_selector: String::new(),
            }),
            resume_from_generation: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut view = nanny_common::snapshot::SnapshotView::default();
    while !view.push(stream.message().await.unwrap().unwrap()).unwrap() {}
    let mut latencies = Vec::new();
    for i in 0..faults {
        let name = format!("load-{:06}", i * (target / faults).max(1));
        let uid = pods.get(&name).await.unwrap().metadata.uid.unwrap();
        let status = json!({ "status": { "containerStatuses": [{
            "name": "app", "image": "registry.example/load:1", "imageID": "", "ready": false, "restartCount": 5,
            "state": { "waiting": { "reason": "CrashLoopBackOff", "message": "back-off restarting failed container" } },
            "lastState": { "terminated": { "reason": "Error", "exitCode": 1 } },
        }] } });
        let t = Instant::now();
        pods.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&status))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), stream.message())
                .await
                .expect("the issue arrives")
                .unwrap()
                .unwrap();
            if view.push(message).unwrap()
                && view.issues().values().any(|issue| {
                    issue.kind == IssueKind::CrashLoopBackOff as i32
                        && issue.target.as_ref().is_some_and(|t| t.uid == uid)
                })
            {
                latencies.push(t.elapsed());
                break;
            }
        }
    }
    latencies.sort();
    let rss_after_mib = collector.rss_kib().unwrap() / 1024;
    sampler.abort();
    let mut rss = rss_samples.lock().unwrap().clone();
    assert!(!rss.is_empty(), "no RSS sample of the collector was read");
    rss.sort_unstable();
    // Prometheus load: the collector's own count of queries, by name.
    let queries = nanny_test_util::http::counts(
        collector.http_addr,
        "nanny_collector_prometheus_query_duration_seconds_count",
        "query",
    )
    .await
    .unwrap();
    let minutes = spawned.elapsed().as_secs_f64() / 60.0;
    let (trend, instant): (Vec<_>, Vec<_>) = queries
        .iter()
        .partition(|(name, _)| name.starts_with("trend:"));
    let per_minute = |q: &[(&String, &f64)]| q.iter().map(|(_, n)| **n).sum::<f64>() / minutes;
    let trend_secs = nanny_test_util::http::counts(
        collector.http_addr,
        "nanny_collector_prometheus_query_duration_seconds_sum",
        "query",
    )
    .await
    .unwrap();
    println!(
        "Prometheus load over {minutes:.1} min: {:.1} instant queries/min, {:.2} range queries/min          (trend queries {trend:?}, seconds spent {:?})",
        per_minute(&instant),
        per_minute(&trend),
        trend_secs
            .iter()
            .filter(|(name, _)| name.starts_with("trend:"))
            .collect::<Vec<_>>(),
    );
    println!(
        "collector @ {target} pods / {} nodes: ready (full list + first world) {synced:.1?}; steady RSS {rss_mib} MiB \
         ({rss_after_mib} MiB after the detection run); GetSnapshot p50 {:.1?} max {:.1?}, {:.1} MiB in {chunks} chunks; \
         detection over {faults} faults p50 {:.0?} p99 {:.0?} max {:.0?}; RSS over the run: median {} MiB, peak {} MiB ({} samples)",
        nodes.len(),
        percentile(&full, 0.5),
        full[full.len() - 1],
        bytes as f64 / (1024.0 * 1024.0),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
        rss[rss.len() / 2],
        rss[rss.len() - 1],
        rss.len(),
    );
}
