//! `cargo xtask bench collector` (or `cargo bench -p nanny-collector`): the
//! in-process half of the collector's targets — detection, and building and
//! encoding a full snapshot, for 10k and 100k pods with 500 issues — plus
//! the memory the projections take. Targets: full 10k-pod snapshot built
//! and encoded ≤ 50 ms. The cluster half (RSS of the real process, detection
//! latency through the API) is `tests/cluster/tests/collector_bench.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a benchmark sets up, measures and reports in one place"
)]

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use nanny_collector::{
    config::Thresholds,
    detect,
    prom::MetricsRound,
    snapshot::{IssueEntry, ScopeFilter, Subscriber, World, chunk},
    store::{Item, Store},
};
use nanny_proto::v1 as pb;
use prost::Message;

// The same allocator as the collector binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn reference(kind: &str, namespace: &str, name: &str, uid: String) -> pb::ObjectRef {
    pb::ObjectRef {
        kind: kind.to_owned(),
        api_version: if kind == "Pod" { "v1" } else { "apps/v1" }.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid,
        resource_version: "123456".to_owned(),
    }
}

fn uid(kind: &str, i: usize) -> String {
    format!("{kind:0>8}-{i:04x}-4000-8000-{i:012x}")
}

/// A store shaped like a real cluster: `pods` pods in 100 Deployments over
/// `nodes` nodes, `issues` of them crash-looping.
fn cluster(pods: usize, nodes: usize, issues: usize) -> Store {
    let mut store = Store::default();
    for n in 0..nodes {
        let name = format!("node-{n:04}");
        store.apply(Item::Node(
            Arc::from(uid("node", n).as_str()),
            pb::Node {
                r#ref: Some(reference("Node", "", &name, uid("node", n))),
                conditions: ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"]
                    .iter()
                    .map(|t| pb::Condition {
                        r#type: (*t).to_owned(),
                        status: if *t == "Ready" { "True" } else { "False" }.to_owned(),
                        reason: "KubeletReady".to_owned(),
                        last_transition: Some(prost_types::Timestamp {
                            seconds: 1_700_000_000,
                            nanos: 0,
                        }),
                        message: None,
                    })
                    .collect(),
                kubelet_version: "v1.34.2".to_owned(),
                ..pb::Node::default()
            },
        ));
    }
    for d in 0..100 {
        let namespace = format!("team-{:02}", d % 20);
        let name = format!("service-{d:03}");
        store.apply(Item::Workload(
            Arc::from(uid("rs", d).as_str()),
            pb::Workload {
                r#ref: Some(reference(
                    "ReplicaSet",
                    &namespace,
                    &format!("{name}-7d9f8c"),
                    uid("rs", d),
                )),
                owner: Some(reference("Deployment", &namespace, &name, uid("deploy", d))),
                ..pb::Workload::default()
            },
            Arc::default(),
            false,
        ));
    }
    let resources = |cpu, memory| {
        Some(pb::Resources {
            cpu_millicores: Some(cpu),
            memory_bytes: Some(memory),
        })
    };
    for p in 0..pods {
        let d = p % 100;
        let namespace = format!("team-{:02}", d % 20);
        let name = format!("service-{d:03}-7d9f8c-{p:05x}");
        let crash =
            p % (pods / issues.max(1)).max(1) == 0 && p / (pods / issues.max(1)).max(1) < issues;
        let labels: BTreeMap<String, String> = [
            ("app".to_owned(), format!("service-{d:03}")),
            ("pod-template-hash".to_owned(), "7d9f8c".to_owned()),
        ]
        .into();
        store.apply(Item::Pod(
            Arc::from(uid("pod", p).as_str()),
            pb::Pod {
                r#ref: Some(reference("Pod", &namespace, &name, uid("pod", p))),
                owner: Some(reference(
                    "ReplicaSet",
                    &namespace,
                    &format!("service-{d:03}-7d9f8c"),
                    uid("rs", d),
                )),
                node_name: format!("node-{:04}", p % nodes),
                phase: "Running".to_owned(),
                ready: !crash,
                containers: vec![pb::ContainerStatus {
                    name: "app".to_owned(),
                    ready: !crash,
                    restart_count: if crash { 7 } else { 0 },
                    state: if crash { "waiting" } else { "running" }.to_owned(),
                    state_reason: if crash { "CrashLoopBackOff" } else { "" }.to_owned(),
                    last_termination: crash.then(|| pb::Termination {
                        reason: "Error".to_owned(),
                        exit_code: 1,
                        finished_at: None,
                    }),
                    requests: resources(100, 128 << 20),
                    limits: resources(500, 256 << 20),
                    usage: resources(42, 100 << 20),
                    image: "registry.example/shop/app:1.4.2".to_owned(),
                    state_message: None,
                    running_since: None,
                }],
                created_at: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                ready_since: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                ..pb::Pod::default()
            },
            Arc::new(labels),
        ));
    }
    store
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn bench(pods: usize, nodes: usize, issues: usize) {
    let before = rss_kib();
    let started = Instant::now();
    let store = cluster(pods, nodes, issues);
    let load = started.elapsed();
    let store_mib = rss_kib().saturating_sub(before) as f64 / 1024.0;

    let metrics = Arc::new(MetricsRound::default());
    let thresholds = Thresholds::default();
    let now = 1_800_000_000;
    let (mut detect_ms, mut full_ms, mut size, mut chunks) = (Vec::new(), Vec::new(), 0, 0);
    let mut found = 0;
    for _ in 0..7 {
        // What the publisher does per batch of changes.
        let t = Instant::now();
        let tables = store.tables();
        let detected = detect::detect(&tables, &metrics, &thresholds, now);
        detect_ms.push(t.elapsed().as_secs_f64() * 1e3);
        found = detected.len();
        let world = World {
            generation: 1,
            tables,
            issues: detected
                .into_iter()
                .map(|issue| IssueEntry {
                    issue: Arc::new(issue),
                    content: 0,
                })
                .collect(),
            metrics: metrics.clone(),
            ..World::default()
        };
        // What a new subscriber (or GetSnapshot) costs: build, chunk, encode.
        let t = Instant::now();
        let snapshot = Subscriber::new(ScopeFilter::default())
            .next(&world, true)
            .unwrap();
        let t1 = t.elapsed();
        let messages = chunk(snapshot, 1024 * 1024);
        let t2 = t.elapsed();
        let encoded: Vec<Vec<u8>> = messages.iter().map(Message::encode_to_vec).collect();
        if std::env::var_os("NANNY_BENCH_PHASES").is_some() {
            eprintln!(
                "next {t1:?} chunk {:?} encode {:?}",
                t2 - t1,
                t.elapsed() - t2
            );
        }
        full_ms.push(t.elapsed().as_secs_f64() * 1e3);
        size = encoded.iter().map(Vec::len).sum::<usize>();
        chunks = encoded.len();
    }
    assert_eq!(found, issues, "every planted issue is detected");
    println!(
        "{pods:>6} pods, {nodes:>4} nodes, {found} issues: store {store_mib:>6.1} MiB (loaded in {load:.2?}); \
         tables+detection p50 {:>6.2} ms; full snapshot build+chunk+encode p50 {:>6.2} ms; \
         {:.1} MiB in {chunks} chunks ({} B/pod)",
        median(detect_ms),
        median(full_ms),
        size as f64 / (1024.0 * 1024.0),
        size / pods.max(1),
    );
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep it quick then.
    if !std::env::args().any(|a| a == "--bench") {
        bench(1_000, 10, 50);
        return;
    }
    println!("collector snapshot bench (target: 10k-pod full snapshot build+encode <= 50 ms)");
    bench(10_000, 100, 500);
    bench(100_000, 1_000, 500);
}
