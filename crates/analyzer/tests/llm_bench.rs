//! `cargo xtask bench llm`: N concurrent incidents across N policies,
//! against the real llama.cpp server and real Ollama, each with
//! SmolLM2-135M, through the analyzer over gRPC.
//!
//! Policy `i` sees incidents `i` and `i+1` (mod N), so every incident is
//! asked about by two policies at once: the scheduler must ask the model
//! once. Each incident is a crash-looping Deployment of its own namespace.
//! Targets (issue #19): ≥ 95 % of incidents answered `ok`, ≤ 1 model call
//! per incident, p95 incident → explanation ≤ 90 s.
//!
//! `NANNY_BENCH_INCIDENTS` (default 20), `NANNY_BENCH_SERVERS` (default
//! `llama,ollama`), `NANNY_BENCH_PARALLEL` (the analyzer's `llm.parallel`,
//! default 1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
#![allow(
    clippy::too_many_lines,
    clippy::cast_precision_loss,
    reason = "a benchmark is one scenario read top to bottom; its figures are small counts"
)]

mod support;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use nanny_analyzer::{Config, config::Provider};
use nanny_proto::v1::{
    self as pb, AnalyzeSnapshotRequest, ClusterSnapshot, IssueKind, SnapshotKind,
};
use nanny_test_util::stats::percentile;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn obj(kind: &str, namespace: &str, name: &str) -> pb::ObjectRef {
    pb::ObjectRef {
        kind: kind.into(),
        api_version: if kind == "Pod" { "" } else { "apps/v1" }.into(),
        namespace: namespace.into(),
        name: name.into(),
        uid: format!("uid-{kind}-{namespace}-{name}"),
        resource_version: "1".into(),
    }
}

/// Incident `i`: Deployment `app-i` in `ns-i`, its pod crash-looping.
fn incident(i: usize, s: &mut ClusterSnapshot) {
    let ns = format!("ns-{i}");
    let app = obj("Deployment", &ns, &format!("app-{i}"));
    let pod = obj("Pod", &ns, &format!("app-{i}-7f9c-x{i}"));
    s.workloads.push(pb::Workload {
        r#ref: Some(app.clone()),
        desired_replicas: 2,
        ready_replicas: 1,
        ..pb::Workload::default()
    });
    s.pods.push(pb::Pod {
        r#ref: Some(pod.clone()),
        owner: Some(obj("ReplicaSet", &ns, &format!("app-{i}-7f9c"))),
        workload: Some(app),
        node_name: format!("node-{}", i % 3),
        phase: "Running".into(),
        containers: vec![pb::ContainerStatus {
            name: "app".into(),
            restart_count: 6,
            state: "waiting".into(),
            state_reason: "CrashLoopBackOff".into(),
            last_termination: Some(pb::Termination {
                reason: "Error".into(),
                exit_code: 1,
                finished_at: None,
            }),
            ..pb::ContainerStatus::default()
        }],
        ..pb::Pod::default()
    });
    s.events.push(pb::Event {
        involved: Some(pod.clone()),
        reason: "BackOff".into(),
        r#type: "Warning".into(),
        count: 6,
        message: Some(pb::UntrustedText {
            text: "Back-off restarting failed container app".into(),
            truncated: false,
        }),
        ..pb::Event::default()
    });
    s.issues.push(pb::Issue {
        fingerprint: format!("fp-{i}"),
        kind: IssueKind::CrashLoopBackOff as i32,
        severity: pb::Severity::Warning as i32,
        target: Some(pod),
        summary: format!("Pod app-{i} is crash-looping (6 restarts, last exit code 1)"),
        ..pb::Issue::default()
    });
}

fn snapshot(id: &str, incidents: &[usize]) -> ClusterSnapshot {
    let mut s = ClusterSnapshot {
        id: id.into(),
        kind: SnapshotKind::Full as i32,
        generation: 1,
        chunk_count: 1,
        ..ClusterSnapshot::default()
    };
    for i in incidents {
        incident(*i, &mut s);
    }
    s
}

/// Sum of the series of `name` whose labels contain every one of `labels`.
fn sum(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    support::metric(metrics, name, labels).unwrap_or_default()
}

/// Outcomes that are calls the server received.
const CALLS: [&str; 7] = [
    "ok",
    "timeout",
    "truncated",
    "malformed",
    "status",
    "transport",
    "oversized",
];

async fn bench(name: &str, provider: Provider, url: &str, model: &str, n: usize, parallel: u32) {
    let mut config = Config::default();
    config.llm.enabled = true;
    config.llm.provider = provider;
    config.llm.endpoint = url.to_owned();
    config.llm.model = model.to_owned();
    config.llm.timeout_secs = 120;
    config.llm.parallel = parallel;
    let support::Analyzer {
        client,
        http,
        stop: _stop,
    } = support::start(config).await;
    // A warm server, as in a running cluster (the model loaded, its
    // prompt prefix cached): one incident outside the measured set.
    let warm = client
        .clone()
        .analyze_snapshot(AnalyzeSnapshotRequest {
            snapshot: Some(snapshot("warm", &[n + 1])),
            policy_ref: "warm/p".into(),
            ..AnalyzeSnapshotRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    println!("{name}: warm-up outcome {:?}", warm.incident_outcomes);
    let (_, before) = nanny_test_util::http::get(http, "/metrics").await.unwrap();
    let start = Instant::now();
    let requests: Vec<_> = (0..n)
        .map(|p| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let response = client
                    .analyze_snapshot(AnalyzeSnapshotRequest {
                        snapshot: Some(snapshot(&format!("s-{p}"), &[p, (p + 1) % n])),
                        policy_ref: format!("ns-{p}/policy"),
                        debug: true,
                        ..AnalyzeSnapshotRequest::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                (start.elapsed(), response)
            })
        })
        .collect();
    // Per incident: its best outcome and when its explanation first came.
    let mut outcome: BTreeMap<String, String> = BTreeMap::new();
    let mut explained: BTreeMap<String, Duration> = BTreeMap::new();
    let mut requests_done = Vec::new();
    let mut failed_reply = None;
    let mut sample = None;
    for request in requests {
        let (elapsed, response) = request.await.unwrap();
        requests_done.push(elapsed);
        if let Some(e) = response.exchange.as_ref().filter(|e| e.outcome == "ok") {
            sample.get_or_insert_with(|| e.raw_reply.chars().take(600).collect::<String>());
        }
        if let Some(e) = response
            .exchange
            .as_ref()
            .filter(|e| !matches!(e.outcome.as_str(), "ok" | "cache_hit"))
        {
            failed_reply.get_or_insert_with(|| {
                format!(
                    "{}: {:?}",
                    e.outcome,
                    e.raw_reply.chars().take(1200).collect::<String>()
                )
            });
        }
        for (incident, result) in &response.incident_outcomes {
            let best = outcome
                .entry(incident.clone())
                .or_insert_with(|| result.clone());
            if matches!(result.as_str(), "ok" | "cache_hit") {
                result.clone_into(best);
            }
        }
        for r in &response.recommendations {
            if let Some(e) = &r.explanation {
                let at = explained.entry(e.incident.clone()).or_insert(elapsed);
                *at = (*at).min(elapsed);
            }
        }
    }
    let wall = start.elapsed();
    let (_, after) = nanny_test_util::http::get(http, "/metrics").await.unwrap();
    let delta =
        |metric: &str, labels: &[&str]| sum(&after, metric, labels) - sum(&before, metric, labels);
    let calls: f64 = CALLS
        .iter()
        .map(|o| {
            delta(
                "nanny_analyzer_model_calls_total",
                &[&format!("outcome=\"{o}\"")],
            )
        })
        .sum();
    let ok_calls = delta("nanny_analyzer_model_calls_total", &["outcome=\"ok\""]);
    let joined = delta("nanny_analyzer_model_calls_total", &["outcome=\"joined\""]);
    let answered = outcome
        .values()
        .filter(|o| matches!(o.as_str(), "ok" | "cache_hit"))
        .count();
    let mut times: Vec<Duration> = explained.values().copied().collect();
    times.sort();
    requests_done.sort();
    let run = delta("nanny_ai_analysis_duration_seconds_sum", &[]);
    let wait = delta("nanny_analyzer_model_wait_seconds_sum", &[]);
    let tokens_in = delta("nanny_analyzer_model_tokens_total", &["direction=\"in\""]);
    let tokens_out = delta("nanny_analyzer_model_tokens_total", &["direction=\"out\""]);
    let per_call = |v: f64| if calls > 0.0 { v / calls } else { 0.0 };
    let explanations: Vec<String> = ["attached", "missing", "bad_citation"]
        .iter()
        .map(|o| {
            format!(
                "{o} {}",
                delta(
                    "nanny_analyzer_explanations_total",
                    &[&format!("outcome=\"{o}\"")]
                )
            )
        })
        .collect();
    let mut failures: BTreeMap<&str, usize> = BTreeMap::new();
    for o in outcome
        .values()
        .filter(|o| !matches!(o.as_str(), "ok" | "cache_hit"))
    {
        *failures.entry(o.as_str()).or_default() += 1;
    }
    println!(
        "{name} (llm.parallel {parallel}): {n} incidents across {n} policies (each asked by 2), wall {wall:.1?}\n\
         \x20 answered ok: {answered}/{} ({:.0} %), failures {failures:?} (target ≥ 95 %)\n\
         \x20 model calls: {calls} ({ok_calls} ok), {:.2} per incident, {joined} asks joined a running or queued call (target ≤ 1)\n\
         \x20 explained: {}/{n} (explanations {}); incident → explanation p50 {:.1?}, p95 {:.1?}, max {:.1?} (target p95 ≤ 90 s)\n\
         \x20 per call: run {:.2} s, queue wait {:.2} s, {:.0} prompt and {:.0} generated tokens",
        outcome.len(),
        100.0 * answered as f64 / outcome.len().max(1) as f64,
        calls / n as f64,
        times.len(),
        explanations.join(", "),
        percentile(&times, 0.5),
        percentile(&times, 0.95),
        times.last().copied().unwrap_or_default(),
        per_call(run),
        per_call(wait),
        per_call(tokens_in),
        per_call(tokens_out),
    );
    if let Some(reply) = failed_reply {
        println!("  a failed reply, for what bounds it: {reply}");
    }
    if let Some(e) = sample {
        println!("  a reply: {e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark of real model servers: cargo xtask bench llm"]
async fn llm_bench() {
    let n: usize = env("NANNY_BENCH_INCIDENTS", "20").parse().unwrap();
    let parallel: u32 = env("NANNY_BENCH_PARALLEL", "1").parse().unwrap();
    assert!(n >= 2, "NANNY_BENCH_INCIDENTS must be at least 2");
    for server in env("NANNY_BENCH_SERVERS", "llama,ollama").split(',') {
        match server {
            "llama" => {
                let Some(llama) = nanny_test_util::llm::LlamaServer::for_test("bench llm").await
                else {
                    continue;
                };
                bench(
                    "llama.cpp server",
                    Provider::Openai,
                    &llama.url,
                    "smollm2:135m",
                    n,
                    parallel,
                )
                .await;
            }
            "ollama" => {
                let Some(ollama) =
                    nanny_test_util::ollama::OllamaServer::for_test("bench llm").await
                else {
                    continue;
                };
                bench(
                    "Ollama",
                    Provider::Ollama,
                    &ollama.url,
                    nanny_test_util::ollama::MODEL,
                    n,
                    parallel,
                )
                .await;
            }
            other => panic!("NANNY_BENCH_SERVERS: unknown server {other:?} (llama, ollama)"),
        }
    }
}
