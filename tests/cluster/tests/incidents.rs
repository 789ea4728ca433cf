//! The model at cluster scale (issue #19): ten HealingPolicies, each over a
//! namespace of its own with an HPA pinned at its maximum, two analyzer
//! replicas and the real local model (llama.cpp, SmolLM2-135M). The
//! coordinator routes each incident to the replica that owns its
//! fingerprint, so although ten policies ask about their pictures again and
//! again, each incident is answered once cluster-wide; the rules act at
//! once and every action gets the model's explanation afterwards, read
//! back from the API server.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use kube::{Api, api::PostParams};
use nanny_cluster_tests::{
    Fixture,
    pipeline::{Harness, policy},
};
use nanny_crd::{HealingAction, HealingPolicy, Phase, SourceKind};
use nanny_test_util::{
    cluster::{TestNamespace, eventually},
    faults::{self, HpaAtMax},
    llm::LlamaServer,
};

const POLICIES: usize = 10;

/// Model calls of one analyzer by outcome, from its /metrics.
async fn model_calls(analyzer: SocketAddr) -> BTreeMap<String, f64> {
    nanny_test_util::http::counts(analyzer, "nanny_analyzer_model_calls_total", "outcome")
        .await
        .unwrap()
}

/// The policy `p{n}` over namespace `scope` alone, recording what it would
/// do (DryRun: the HPA stays as it is, so its evidence does too).
fn scoped_policy(owner_ns: &str, n: usize, scope: &str) -> HealingPolicy {
    let mut p = policy(owner_ns, "DryRun");
    p.metadata.name = Some(format!("p{n}"));
    p.spec.scope.namespaces = vec![scope.to_owned()];
    p
}

/// The value, or a panic showing the test's HealingActions.
async fn or_show_actions<T, E: std::fmt::Display>(h: &Harness, result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{e}\n{}", h.actions_seen().await),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_policies_on_two_analyzer_replicas_ask_each_incident_once() {
    let Some(fx) = Fixture::new("incidents").await else {
        return;
    };
    let Some(model) = LlamaServer::for_test("incidents").await else {
        return;
    };
    let ns = fx.ns().to_owned();
    let mut scopes = Vec::new();
    for n in 0..POLICIES {
        scopes.push(
            TestNamespace::create(&fx.cluster, &fx.client, &format!("incidents-{n}"))
                .await
                .unwrap(),
        );
    }
    let llm = |k: &str, v: &str| ("nanny-analyzer", k.to_owned(), v.to_owned());
    let mut h = Harness::with_policy(
        fx,
        &scoped_policy(&ns, 0, &scopes[0].name),
        vec![
            llm("NANNY_LLM__ENABLED", "true"),
            llm("NANNY_LLM__PROVIDER", "openai"),
            llm("NANNY_LLM__ENDPOINT", &model.url),
            llm("NANNY_LLM__MODEL", "smollm2:135m"),
        ],
    )
    .await;
    // A second analyzer replica, and the coordinator told of both (as a
    // headless Service's DNS name would list them in Kubernetes).
    let second = h.stack.spawn_replica("nanny-analyzer", &[]).await.unwrap();
    let replicas = format!(
        "{},{}",
        h.stack.get("nanny-analyzer").grpc_url(),
        second.grpc_url()
    );
    h.stack.set_env(
        "nanny-coordinator",
        "NANNY_PEERS__ANALYZER_REPLICAS",
        &replicas,
    );
    h.stack.kill_and_restart("nanny-coordinator").await.unwrap();
    let policies: Api<HealingPolicy> = Api::namespaced(h.fx.client.clone(), &ns);
    for (n, scope) in scopes.iter().enumerate().skip(1) {
        policies
            .create(&PostParams::default(), &scoped_policy(&ns, n, &scope.name))
            .await
            .unwrap();
    }

    // One HPA at its maximum per namespace: an incident each, on which the
    // HPA rule acts.
    let faulted = Instant::now();
    let hpa = HpaAtMax {
        min_replicas: 1,
        max_replicas: 2,
        target_cpu_percent: 50,
        current_cpu_percent: 95,
    };
    for scope in &scopes {
        faults::hpa_at_max(&h.fx.client, &scope.name, "busy", hpa)
            .await
            .unwrap();
    }

    // Every policy's rule action is recorded without waiting for the model.
    let recorded = eventually(
        "a recorded rule action per policy",
        Duration::from_secs(90),
        || async {
            let actions = h.actions.list(&Default::default()).await?.items;
            let recorded: Vec<HealingAction> = actions
                .into_iter()
                .filter(|a| {
                    a.spec.source.kind == SourceKind::Rule
                        && a.status.as_ref().and_then(|s| s.phase) == Some(Phase::Recorded)
                })
                .collect();
            Ok((recorded.len() >= POLICIES).then_some(recorded))
        },
    )
    .await;
    let recorded = or_show_actions(&h, recorded).await;
    println!(
        "{} rule actions recorded {:.1?} after the faults",
        recorded.len(),
        faulted.elapsed()
    );

    // Then the model's explanation on each, one incident per policy.
    let explained = eventually(
        "an explanation on every policy's action",
        Duration::from_secs(300),
        || async {
            let actions = h.actions.list(&Default::default()).await?.items;
            let mut incidents: BTreeMap<String, String> = BTreeMap::new();
            for action in actions {
                let explanation = action.status.and_then(|s| s.explanation);
                if let Some(e) = explanation {
                    incidents.insert(action.spec.policy_ref.clone(), e.incident);
                }
            }
            Ok((incidents.len() == POLICIES).then_some(incidents))
        },
    )
    .await;
    let explained = or_show_actions(&h, explained).await;
    println!(
        "every policy's action explained {:.1?} after the faults",
        faulted.elapsed()
    );
    let mut distinct: Vec<&String> = explained.values().collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), POLICIES, "one incident per policy");

    // Each incident was answered once cluster-wide, though ten policies
    // kept asking: an incident is only ever asked on the replica that owns
    // it, whose cache answers the repeats.
    let first = model_calls(h.stack.get("nanny-analyzer").http_addr).await;
    let other = model_calls(second.http_addr).await;
    println!("model calls by outcome: replica 1 {first:?}, replica 2 {other:?}");
    let ok = first.get("ok").copied().unwrap_or(0.0) + other.get("ok").copied().unwrap_or(0.0);
    #[allow(clippy::cast_precision_loss)]
    let incidents = POLICIES as f64;
    assert!(
        (ok - incidents).abs() < f64::EPSILON,
        "{ok} answered calls for {POLICIES} incidents"
    );
    let repeats = first.get("cache_hit").copied().unwrap_or(0.0)
        + first.get("joined").copied().unwrap_or(0.0)
        + other.get("cache_hit").copied().unwrap_or(0.0)
        + other.get("joined").copied().unwrap_or(0.0);
    println!("repeated questions answered from a replica's cache or queue: {repeats}");
    drop(scopes);
}
