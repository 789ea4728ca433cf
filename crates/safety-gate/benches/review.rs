//! `cargo xtask bench gate` (or `cargo bench -p nanny-safety-gate`):
//! review throughput on one core, and `Review` latency over gRPC on loopback.
//! Targets: ≥ 50k reviews/s; p99 ≤ 2 ms.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a benchmark sets up, measures and reports in one place"
)]

use std::time::{Duration, Instant, SystemTime};

use nanny_common::server::Listeners;
use nanny_proto::v1::{
    Action, ActionType, AllowedAction, DeleteJob, GateLimits, GatePolicy, IssueKind, ModelSource,
    ObjectRef, PolicyMode, Recommendation, RestartPod, ReviewContext, ReviewRequest, ScaleHpa,
    Source, action::Kind, safety_gate_client::SafetyGateClient, source,
};
use nanny_safety_gate::{Config, Gate};

/// A realistic mix: crash-loop restarts across many namespaces and pods,
/// HPA raises, old Jobs, model proposals, and protected targets.
fn workload(count: usize) -> Vec<ReviewRequest> {
    let policy = GatePolicy {
        mode: PolicyMode::Auto as i32,
        allowed_actions: [
            ActionType::RestartPod,
            ActionType::ScaleHpa,
            ActionType::DeleteJob,
            ActionType::CordonNode,
        ]
        .iter()
        .map(|t| AllowedAction {
            r#type: *t as i32,
            max_replicas: Some(50),
            ..AllowedAction::default()
        })
        .collect(),
        limits: Some(GateLimits {
            max_actions_per_hour: 1_000_000,
            ..GateLimits::default()
        }),
        ai_min_confidence: 0.75,
        ai_allow_auto_approve: false,
        paused: false,
        allow_bare_pod_restart: false,
        drain_refuses_protected_pods: false,
    };
    let now = SystemTime::now();
    (0..count)
        .map(|i| {
            let namespace = match i % 10 {
                0 => "kube-system".to_owned(),
                _ => format!("team-{}", i % 50),
            };
            let (kind, target_kind, context) = match i % 4 {
                0 | 1 => (
                    Kind::RestartPod(RestartPod {}),
                    "Pod",
                    ReviewContext {
                        target_issue_kinds: vec![IssueKind::CrashLoopBackOff as i32],
                        workload_replicas: 3,
                        facts_complete: true,
                        ..ReviewContext::default()
                    },
                ),
                2 => (
                    Kind::ScaleHpa(ScaleHpa {
                        min_replicas: None,
                        max_replicas: 15,
                    }),
                    "HorizontalPodAutoscaler",
                    ReviewContext {
                        hpa_max_replicas: 10,
                        facts_complete: true,
                        ..ReviewContext::default()
                    },
                ),
                _ => (
                    Kind::DeleteJob(DeleteJob {
                        min_age_seconds: 86_400,
                    }),
                    "Job",
                    ReviewContext {
                        job_finished_at: Some((now - Duration::from_secs(30 * 3600)).into()),
                        facts_complete: true,
                        ..ReviewContext::default()
                    },
                ),
            };
            let source = if i % 7 == 0 {
                source::Kind::Model(ModelSource {
                    provider: "ollama".into(),
                    model: "smollm2".into(),
                    ..ModelSource::default()
                })
            } else {
                source::Kind::RuleId("rule".into())
            };
            ReviewRequest {
                recommendation: Some(Recommendation {
                    id: format!("rec-{i}"),
                    action: Some(Action { kind: Some(kind) }),
                    target: Some(ObjectRef {
                        kind: target_kind.into(),
                        namespace,
                        name: format!("obj-{i}"),
                        uid: format!("uid-{i}"),
                        ..ObjectRef::default()
                    }),
                    confidence: 90,
                    source: Some(Source { kind: Some(source) }),
                    ..Recommendation::default()
                }),
                policy_ref: format!("team-{}/default", i % 50),
                snapshot_taken_at: Some(now.into()),
                policy: Some(policy.clone()),
                context: Some(context),
                human_approval: None,
                policy_generation: 1,
            }
        })
        .collect()
}

fn engine_throughput() {
    let requests = workload(10_000);
    let gate = Gate::new(Config::default());
    let rounds = 50;
    let started = Instant::now();
    let mut approved = 0usize;
    for _ in 0..rounds {
        for request in &requests {
            let review = gate.review(request, SystemTime::now(), tokio::time::Instant::now());
            approved += usize::from(review.level == nanny_safety_gate::gate::Level::Approved);
        }
    }
    let elapsed = started.elapsed();
    let total = rounds * requests.len();
    println!(
        "engine: {total} reviews on one thread in {elapsed:.2?} = {:.0} reviews/s ({approved} approved; target ≥ 50000/s)",
        total as f64 / elapsed.as_secs_f64()
    );
}

async fn grpc_latency() {
    let listeners = Listeners::ephemeral().await.unwrap();
    let addr = listeners.grpc_addr().unwrap();
    // As deployed: every verdict appended to the signed audit file.
    let audit =
        std::env::temp_dir().join(format!("nanny-bench-audit-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&audit);
    let config = Config {
        tls: nanny_test_util::pki::tls("nanny-safety-gate"),
        signing: nanny_safety_gate::config::SigningConfig {
            key: nanny_test_util::pki::signing_key().display().to_string(),
            ..Default::default()
        },
        audit: nanny_safety_gate::config::AuditConfig {
            path: audit.display().to_string(),
            ..Default::default()
        },
        ..Config::default()
    };
    tokio::spawn(nanny_safety_gate::run(
        config,
        listeners,
        std::future::pending(),
    ));
    // Over mutual TLS, as the coordinator calls it.
    let mut client = SafetyGateClient::new(nanny_test_util::pki::channel(
        addr,
        nanny_common::tls::COORDINATOR,
        "nanny-safety-gate",
    ));
    let requests = workload(2_000);
    for request in requests.iter().take(500) {
        client.review(request.clone()).await.unwrap();
    }
    let calls = 10_000;
    let mut latencies = Vec::with_capacity(calls);
    for i in 0..calls {
        let request = requests[i % requests.len()].clone();
        let started = Instant::now();
        client.review(request).await.unwrap();
        latencies.push(started.elapsed());
    }
    let slow = latencies
        .iter()
        .filter(|l| **l > Duration::from_millis(5))
        .count();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "grpc: {calls} sequential Review calls on loopback: p50 {:.3?}  p99 {:.3?}  max {:.3?}, {slow} over 5 ms (target p99 ≤ 2ms)",
        pct(0.50),
        pct(0.99),
        latencies[latencies.len() - 1]
    );
}

fn main() {
    // cargo bench passes --bench; nothing else to parse.
    engine_throughput();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(grpc_latency());
}
