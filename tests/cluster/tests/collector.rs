//! The collector against the real cluster, running as its own ServiceAccount
//! with the read-only ClusterRole from `deploy/rbac/collector.yaml`: every
//! injected fault becomes the right issue within 2 s of the API change and
//! resolves when cleared; planted secrets never leave it; a Prometheus
//! outage and a dropped watch are survived.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{Node, Pod, Secret},
    rbac::v1::{ClusterRole, ClusterRoleBinding},
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use nanny_cluster_tests::Fixture;
use nanny_common::snapshot::SnapshotView;
use nanny_proto::v1::{
    ClusterSnapshot, GetSnapshotRequest, IssueKind, Scope, WatchRequest,
    collector_client::CollectorClient,
};
use nanny_test_util::{
    cluster::eventually,
    faults::{self, HpaAtMax, NodeFault},
    nodes::FakeNode,
    process::{ServiceProcess, cargo_bin},
};
use prost::Message as _;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(60);
/// The issue's target: an issue reaches a subscriber within this long of
/// the API change that causes it.
const DETECTION: Duration = Duration::from_secs(2);

/// The collector's identity for one test; its ClusterRoleBinding is
/// deleted on drop (also when the test panics).
struct Identity {
    kubeconfig: std::path::PathBuf,
    binding: String,
    kubectl: std::path::PathBuf,
    admin: std::path::PathBuf,
}

impl Drop for Identity {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.admin)
            .args([
                "delete",
                "clusterrolebinding",
                &self.binding,
                "--ignore-not-found",
            ])
            .stdout(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

/// Binds `nanny-collector` (the committed ClusterRole) to a new
/// ServiceAccount and returns a kubeconfig for it.
async fn collector_identity(fx: &Fixture, server: Option<&str>) -> Identity {
    let role: ClusterRole = serde_yaml::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/rbac/collector.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    let roles: Api<ClusterRole> = Api::all(fx.client.clone());
    roles
        .patch(
            "nanny-collector",
            &PatchParams::apply("nanny-tests").force(),
            &Patch::Apply(&role),
        )
        .await
        .unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": { "name": format!("{}-collector", fx.ns()), "labels": { "nanny.ai/test": "true" } },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "nanny-collector" },
        "subjects": [{ "kind": "ServiceAccount", "name": "nanny-collector", "namespace": fx.ns() }],
    }))
    .unwrap();
    Api::<ClusterRoleBinding>::all(fx.client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    Identity {
        kubeconfig: fx
            .service_account_kubeconfig("nanny-collector", server)
            .await,
        binding: format!("{}-collector", fx.ns()),
        kubectl: fx.cluster.kubectl.clone(),
        admin: fx.cluster.kubeconfig.clone(),
    }
}

async fn start_collector(kubeconfig: &std::path::Path, prometheus: &str) -> ServiceProcess {
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    let process = ServiceProcess::spawn(
        &cargo_bin("nanny-collector"),
        &[
            ("NANNY_KUBERNETES__KUBECONFIG", &kubeconfig),
            ("NANNY_PROMETHEUS__URL", prometheus),
            ("NANNY_PROMETHEUS__INTERVAL_SECS", "1"),
            ("NANNY_PROMETHEUS__TIMEOUT_SECS", "2"),
            ("NANNY_THRESHOLDS__UNSCHEDULABLE_SECS", "0"),
            ("NANNY_SNAPSHOT__DEBOUNCE_MS", "100"),
        ],
    )
    .await
    .unwrap();
    if let Err(error) = process
        .wait_serving("nanny.v1.Collector", Duration::from_secs(60))
        .await
    {
        panic!(
            "collector never became ready: {error}\n{}",
            process.logs().join("\n")
        );
    }
    process
}

/// What a subscriber has seen: the view, and when each issue first arrived.
#[derive(Default)]
struct Seen {
    view: SnapshotView,
    /// (issue kind, target name — the workload for pod issues) → arrival.
    arrived: HashMap<(IssueKind, String), Instant>,
    snapshots: u64,
}

type Shared = Arc<Mutex<Seen>>;

/// Subscribes to `namespace` and records everything in the background.
async fn subscribe(process: &ServiceProcess, namespace: &str) -> Shared {
    let mut client = CollectorClient::new(process.channel(nanny_common::tls::COORDINATOR));
    let mut stream = client
        .watch_snapshots(WatchRequest {
            scope: Some(Scope {
                namespaces: vec![namespace.to_owned()],
                label_selector: String::new(),
            }),
            resume_from_generation: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let seen: Shared = Arc::default();
    let recorder = seen.clone();
    tokio::spawn(async move {
        while let Ok(Some(message)) = stream.message().await {
            let mut seen = recorder.lock().unwrap();
            if !seen.view.push(message).unwrap() {
                continue;
            }
            seen.snapshots += 1;
            let now = Instant::now();
            let keys: Vec<(IssueKind, String)> = seen
                .view
                .issues()
                .values()
                .map(|issue| issue_key(&seen.view, issue))
                .collect();
            for key in keys {
                seen.arrived.entry(key).or_insert(now);
            }
        }
    });
    seen
}

/// An issue's kind and the name it is recorded under: the workload's for
/// pod issues (pods of a Deployment have generated names), else the target's.
fn issue_key(view: &SnapshotView, issue: &nanny_proto::v1::Issue) -> (IssueKind, String) {
    let target = issue.target.clone().unwrap_or_default();
    let name = view
        .pods()
        .get(&target.uid)
        .and_then(|p| p.workload.as_ref())
        .map_or(target.name, |w| w.name.clone());
    (IssueKind::try_from(issue.kind).unwrap(), name)
}

fn open(seen: &Shared, kind: IssueKind, name: &str) -> bool {
    let seen = seen.lock().unwrap();
    seen.view
        .issues()
        .values()
        .any(|issue| issue_key(&seen.view, issue) == (kind, name.to_owned()))
}

/// Polls the API every 50 ms until `check` holds and returns when it did.
async fn api_shows(what: &str, check: impl AsyncFn() -> bool) -> Instant {
    let deadline = Instant::now() + WAIT;
    loop {
        if check().await {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "the API never showed {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts the issue arrived within [`DETECTION`] of `api_at`.
async fn arrives(seen: &Shared, kind: IssueKind, name: &str, api_at: Instant) -> Duration {
    let key = (kind, name.to_owned());
    let arrived = eventually(&format!("{kind:?} on {name}"), WAIT, || async {
        Ok(seen.lock().unwrap().arrived.get(&key).copied())
    })
    .await
    .unwrap();
    let latency = arrived.saturating_duration_since(api_at);
    assert!(
        latency <= DETECTION,
        "{kind:?} on {name} arrived {latency:?} after the API showed it"
    );
    latency
}

async fn first_pod_where(fx: &Fixture, app: &str, check: impl Fn(&Pod) -> bool) -> bool {
    faults::pods_of(&fx.client, fx.ns(), app)
        .await
        .is_ok_and(|pods| pods.iter().any(check))
}

fn waiting(pod: &Pod, reason: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref())
                    == Some(reason)
            })
        })
}

fn last_terminated(pod: &Pod, reason: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .and_then(|t| t.reason.as_deref())
                    == Some(reason)
            })
        })
}

#[tokio::test]
async fn every_fault_becomes_the_right_issue_within_two_seconds_and_resolves() {
    let Some(fx) = Fixture::new("collector-faults").await else {
        return;
    };
    let identity = collector_identity(&fx, None).await;
    let collector = start_collector(&identity.kubeconfig, &fx.cluster.prometheus_url).await;
    let seen = subscribe(&collector, fx.ns()).await;
    let ns = fx.ns().to_owned();
    let c = &fx.client;

    faults::crash_loop(c, &ns, "crash", 1).await.unwrap();
    faults::oom_killed(c, &ns, "oom", "64Mi").await.unwrap();
    faults::image_pull_backoff(c, &ns, "pull").await.unwrap();
    faults::unschedulable(c, &ns, "pending").await.unwrap();
    let mut latencies = Vec::new();

    let at = api_shows("crash loop", async || {
        first_pod_where(&fx, "crash", |p| waiting(p, "CrashLoopBackOff")).await
    })
    .await;
    latencies.push(arrives(&seen, IssueKind::CrashLoopBackOff, "crash", at).await);
    let at = api_shows("OOM kill", async || {
        first_pod_where(&fx, "oom", |p| last_terminated(p, "OOMKilled")).await
    })
    .await;
    latencies.push(arrives(&seen, IssueKind::OomKilled, "oom", at).await);
    let at = api_shows("image pull back-off", async || {
        first_pod_where(&fx, "pull", |p| {
            waiting(p, "ImagePullBackOff") || waiting(p, "ErrImagePull")
        })
        .await
    })
    .await;
    latencies.push(arrives(&seen, IssueKind::ImagePullBackOff, "pull", at).await);
    let at = api_shows("unschedulable", async || {
        first_pod_where(&fx, "pending", |p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "PodScheduled" && c.status == "False")
                })
        })
        .await
    })
    .await;
    latencies.push(arrives(&seen, IssueKind::Unschedulable, "pending", at).await);

    faults::failed_job(c, &ns, "failed").await.unwrap();
    let jobs: Api<Job> = Api::namespaced(c.clone(), &ns);
    let at = api_shows("failed job", async || {
        jobs.get("failed")
            .await
            .is_ok_and(|j| faults::job_condition(&j, "Failed"))
    })
    .await;
    latencies.push(arrives(&seen, IssueKind::JobFailed, "failed", at).await);

    faults::completed_job(c, &ns, "old", Duration::from_secs(25 * 3600))
        .await
        .unwrap();
    let at = Instant::now();
    latencies.push(arrives(&seen, IssueKind::JobCompletedStale, "old", at).await);

    let hpa = HpaAtMax {
        min_replicas: 1,
        max_replicas: 2,
        target_cpu_percent: 50,
        current_cpu_percent: 90,
    };
    faults::hpa_at_max(c, &ns, "busy", hpa).await.unwrap();
    let at = Instant::now();
    latencies.push(arrives(&seen, IssueKind::HpaAtMax, "busy", at).await);

    // A node of this test's own, so the fault disturbs no other test.
    let fake = FakeNode::create(&fx.cluster, c, &format!("{ns}-node"))
        .await
        .unwrap();
    let node = fake.name.clone();
    faults::node_fault(c, &node, NodeFault::NotReady)
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(c.clone());
    let at = api_shows("node NotReady", async || {
        nodes.get(&node).await.is_ok_and(|n| {
            nanny_test_util::cluster::node_condition(&n, "Ready").as_deref() == Some("False")
        })
    })
    .await;
    latencies.push(arrives(&seen, IssueKind::NodeNotReady, &node, at).await);

    // Usage comes through Prometheus (scraped every 5 s): no 2 s bound, but it must arrive.
    faults::pvc_nearly_full(c, &ns, "data", 1 << 30, 1_000_000_000)
        .await
        .unwrap();
    eventually("PVC nearly full issue", Duration::from_secs(90), || async {
        Ok(open(&seen, IssueKind::PvcNearlyFull, "data").then_some(()))
    })
    .await
    .unwrap();

    latencies.sort();
    eprintln!("detection latencies after the API change: {latencies:?}");

    // Clearing each fault resolves its issue.
    faults::clear_workload_fault(c, &ns, "crash").await.unwrap();
    faults::clear_node_fault(c, &node).await.unwrap();
    jobs.delete("failed", &DeleteParams::background())
        .await
        .unwrap();
    for (kind, name) in [
        (IssueKind::CrashLoopBackOff, "crash"),
        (IssueKind::NodeNotReady, node.as_str()),
        (IssueKind::JobFailed, "failed"),
    ] {
        eventually(
            &format!("{kind:?} on {name} resolved"),
            Duration::from_secs(90),
            || async { Ok((!open(&seen, kind, name)).then_some(())) },
        )
        .await
        .unwrap();
    }
    assert!(
        open(&seen, IssueKind::OomKilled, "oom"),
        "uncleared faults stay open"
    );
}

#[tokio::test]
async fn planted_secrets_never_appear_in_any_snapshot() {
    let Some(fx) = Fixture::new("collector-secrets").await else {
        return;
    };
    const PLANTED: &str = "nanny-planted-c2VjcmV0";
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "db", "annotations": { "note": PLANTED } },
        "stringData": { "password": PLANTED },
    }))
    .unwrap();
    Api::<Secret>::namespaced(fx.client.clone(), fx.ns())
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": "leaky",
            "labels": { "app": "leaky" },
            "annotations": { "example.com/api-token": PLANTED, "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z" },
        },
        "spec": {
            "tolerations": [{ "key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule" }],
            "containers": [{
                "name": "app", "image": "registry.example/leaky:1",
                "args": [format!("--token={PLANTED}")],
                "env": [
                    { "name": "API_TOKEN", "value": PLANTED },
                    { "name": "DB_PASSWORD", "valueFrom": { "secretKeyRef": { "name": "db", "key": "password" } } },
                ],
            }],
        },
    }))
    .unwrap();
    Api::<Pod>::namespaced(fx.client.clone(), fx.ns())
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();

    let identity = collector_identity(&fx, None).await;
    let collector = start_collector(&identity.kubeconfig, &fx.cluster.prometheus_url).await;
    let seen = subscribe(&collector, fx.ns()).await;
    let client = CollectorClient::new(collector.channel(nanny_common::tls::COORDINATOR));
    let bytes = eventually("the planted pod in a snapshot", WAIT, || async {
        let mut stream = client
            .clone()
            .get_snapshot(GetSnapshotRequest { scope: None })
            .await?
            .into_inner();
        let mut bytes = Vec::new();
        let mut found = false;
        while let Some(message) = stream.message().await? {
            found |= message.pods.iter().any(|p| {
                p.r#ref.as_ref().is_some_and(|r| r.name == "leaky")
                    && p.annotations
                        .contains_key("kubectl.kubernetes.io/restartedAt")
            });
            message.encode(&mut bytes)?;
        }
        Ok(found.then_some(bytes))
    })
    .await
    .unwrap();
    let needle = PLANTED.as_bytes();
    assert!(
        !bytes.windows(needle.len()).any(|w| w == needle),
        "a planted secret appears in a GetSnapshot message"
    );
    // The streamed, scoped view is just as clean.
    eventually("a streamed snapshot", WAIT, || async {
        Ok((seen.lock().unwrap().snapshots > 0).then_some(()))
    })
    .await
    .unwrap();
    let streamed: ClusterSnapshot = seen.lock().unwrap().view.snapshot();
    let streamed = streamed.encode_to_vec();
    assert!(!streamed.windows(needle.len()).any(|w| w == needle));
    assert!(
        streamed.windows(5).any(|w| w == b"leaky"),
        "the pod itself is there"
    );
}

/// A private Prometheus scraping the same kwok targets, which this test
/// may stop and restart without disturbing other tests.
struct PrivatePrometheus {
    child: tokio::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl PrivatePrometheus {
    async fn start(port: u16, dir: &std::path::Path) -> Self {
        // The cluster's own scrape config: the same kwok targets.
        let config = nanny_test_util::cluster::state_dir().join("prometheus.yml");
        let child = tokio::process::Command::new("/usr/bin/prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        eventually("private Prometheus up", WAIT, || async {
            Ok(faults::prometheus_query(&url, "up")
                .await
                .ok()
                .filter(|s| !s.is_empty()))
        })
        .await
        .unwrap();
        Self {
            child,
            port,
            dir: dir.to_owned(),
        }
    }

    async fn stop(mut self) -> (u16, std::path::PathBuf) {
        self.child.kill().await.unwrap();
        (self.port, self.dir.clone())
    }
}

#[tokio::test]
async fn a_prometheus_outage_marks_snapshots_stale_and_metrics_return() {
    let Some(fx) = Fixture::new("collector-prometheus").await else {
        return;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("{}-prometheus", fx.ns()));
    let prometheus = PrivatePrometheus::start(port, &dir).await;
    faults::with_usage(&fx.client, fx.ns(), "hungry", "250m", "300Mi")
        .await
        .unwrap();
    let identity = collector_identity(&fx, None).await;
    let collector =
        start_collector(&identity.kubeconfig, &format!("http://127.0.0.1:{port}")).await;
    let seen = subscribe(&collector, fx.ns()).await;

    let memory = |seen: &Shared| -> Option<i64> {
        let seen = seen.lock().unwrap();
        seen.view
            .pods()
            .values()
            .find(|p| p.workload.as_ref().is_some_and(|w| w.name == "hungry"))
            .and_then(|p| p.containers.first()?.usage?.memory_bytes)
    };
    let stale = |seen: &Shared| seen.lock().unwrap().view.metrics_stale_since().is_some();
    let usage = eventually("usage from Prometheus", Duration::from_secs(90), || async {
        Ok(memory(&seen).filter(|_| !stale(&seen)))
    })
    .await
    .unwrap();
    assert_eq!(usage, 300 * 1024 * 1024);

    let (port, dir) = prometheus.stop().await;
    eventually("snapshots marked stale", WAIT, || async {
        Ok(stale(&seen).then_some(()))
    })
    .await
    .unwrap();
    // Snapshots keep flowing while Prometheus is down, with the last good values.
    faults::crash_loop(&fx.client, fx.ns(), "still-watched", 1)
        .await
        .unwrap();
    eventually("an issue while Prometheus is down", WAIT, || async {
        Ok(open(&seen, IssueKind::CrashLoopBackOff, "still-watched").then_some(()))
    })
    .await
    .unwrap();
    assert!(stale(&seen));
    assert_eq!(memory(&seen), Some(usage), "last good values are kept");
    let (status, body) = nanny_test_util::http::get(collector.http_addr, "/metrics")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("nanny_collector_metrics_degraded 1"),
        "{body}"
    );

    let _prometheus = PrivatePrometheus::start(port, &dir).await;
    eventually("metrics back", Duration::from_secs(90), || async {
        Ok((!stale(&seen) && memory(&seen).is_some()).then_some(()))
    })
    .await
    .unwrap();
    let (_, body) = nanny_test_util::http::get(collector.http_addr, "/metrics")
        .await
        .unwrap();
    assert!(
        body.contains("nanny_collector_metrics_degraded 0"),
        "{body}"
    );
}

/// A TCP proxy in front of the API server whose connections can be cut,
/// as an apiserver restart or a network drop cuts every watch.
struct CuttableProxy {
    addr: SocketAddr,
    open: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl CuttableProxy {
    async fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream.trim_start_matches("https://").parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (gate, tasks) = (open.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !gate.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: connection refused, as a restarting apiserver does
                }
                tasks.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Self {
            addr,
            open,
            connections,
        }
    }

    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn after_a_dropped_watch_the_next_snapshot_is_complete_and_correct() {
    let Some(fx) = Fixture::new("collector-rewatch").await else {
        return;
    };
    let proxy = CuttableProxy::start(&fx.cluster.apiserver_url).await;
    let identity = collector_identity(&fx, Some(&format!("https://{}", proxy.addr))).await;
    let collector = start_collector(&identity.kubeconfig, &fx.cluster.prometheus_url).await;
    let seen = subscribe(&collector, fx.ns()).await;
    faults::crash_loop(&fx.client, fx.ns(), "before", 2)
        .await
        .unwrap();
    eventually("the first workload seen", WAIT, || async {
        Ok(open(&seen, IssueKind::CrashLoopBackOff, "before").then_some(()))
    })
    .await
    .unwrap();

    // While every connection is down, the cluster changes underneath.
    proxy.cut();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(fx.client.clone(), fx.ns());
    deployments
        .delete("before", &DeleteParams::foreground())
        .await
        .unwrap();
    faults::image_pull_backoff(&fx.client, fx.ns(), "after")
        .await
        .unwrap();
    eventually("the old pods gone", WAIT, || async {
        Ok(faults::pods_of(&fx.client, fx.ns(), "before")
            .await?
            .is_empty()
            .then_some(()))
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.restore();

    let pods: Api<Pod> = Api::namespaced(fx.client.clone(), fx.ns());
    eventually(
        "the view equals the API after recovery",
        Duration::from_secs(90),
        || async {
            let actual: std::collections::BTreeSet<String> = pods
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter_map(|p| p.metadata.uid)
                .collect();
            let seen = seen.lock().unwrap();
            let viewed: std::collections::BTreeSet<String> =
                seen.view.pods().keys().cloned().collect();
            let pull_seen = seen
                .view
                .issues()
                .values()
                .any(|i| i.kind == IssueKind::ImagePullBackOff as i32);
            let crash_gone = !seen
                .view
                .issues()
                .values()
                .any(|i| i.kind == IssueKind::CrashLoopBackOff as i32);
            Ok((viewed == actual && pull_seen && crash_gone).then_some(()))
        },
    )
    .await
    .unwrap();

    // A new subscriber's FULL snapshot agrees with the streamed view.
    let fresh = subscribe(&collector, fx.ns()).await;
    eventually("a fresh full snapshot", WAIT, || async {
        Ok((fresh.lock().unwrap().snapshots > 0).then_some(()))
    })
    .await
    .unwrap();
    let a: Vec<String> = fresh.lock().unwrap().view.pods().keys().cloned().collect();
    let b: Vec<String> = seen.lock().unwrap().view.pods().keys().cloned().collect();
    assert_eq!(a, b);
    let (_, body) = nanny_test_util::http::get(collector.http_addr, "/metrics")
        .await
        .unwrap();
    assert!(
        body.contains("nanny_collector_watch_errors_total"),
        "watch errors are counted"
    );
}
