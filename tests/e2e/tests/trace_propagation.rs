//! A trace started by one service's client call continues in the service it
//! calls: the coordinator's health probe of the safety gate shows up, in an
//! OTLP receiver, as the parent of the gate's server span.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use nanny_e2e::otlp::{ReceivedSpan, Receiver};
use nanny_test_util::process::{ServiceProcess, cargo_bin};

const SPAN_KIND_SERVER: i32 = 2;
const SPAN_KIND_CLIENT: i32 = 3;

#[tokio::test(flavor = "multi_thread")]
async fn coordinator_client_span_parents_gate_server_span() {
    let receiver = Receiver::start().await.unwrap();
    let telemetry = [
        ("NANNY_TELEMETRY__OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("NANNY_TELEMETRY__OTLP_EXPORT_INTERVAL_MS", "100"),
    ];
    let gate = ServiceProcess::spawn(&cargo_bin("nanny-safety-gate"), &telemetry)
        .await
        .unwrap();
    let gate_url = gate.grpc_url();
    let kubeconfig = unreachable_kubeconfig();
    let kubeconfig_path = kubeconfig.to_str().unwrap();
    let mut env = telemetry.to_vec();
    // Only the gate is real here; the other peers' probes fail fast and are
    // irrelevant to propagation. There is no cluster either: the coordinator
    // starts anyway and only logs that it cannot reach its Lease.
    env.extend([
        ("NANNY_PEERS__SAFETY_GATE", gate_url.as_str()),
        ("NANNY_PEERS__PROBE_INTERVAL_MS", "200"),
        ("NANNY_KUBERNETES__KUBECONFIG", kubeconfig_path),
    ]);
    let coordinator = ServiceProcess::spawn(&cargo_bin("nanny-coordinator"), &env)
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let (client, server) = loop {
        let spans = receiver.spans();
        if let Some(pair) = find_pair(&spans) {
            break pair;
        }
        assert!(
            Instant::now() < deadline,
            "no propagated trace within 20 s; spans received: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(client.trace_id, server.trace_id);
    assert_eq!(server.parent_span_id, client.span_id);
    assert_ne!(client.trace_id, "0".repeat(32));

    gate.terminate().await.unwrap();
    coordinator.terminate().await.unwrap();
    std::fs::remove_file(kubeconfig).unwrap();
}

/// A kubeconfig whose API server nobody listens on (port 1).
fn unreachable_kubeconfig() -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "nanny-trace-propagation-kubeconfig-{}.yaml",
        std::process::id()
    ));
    std::fs::write(
        &path,
        "apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster:
      server: https://127.0.0.1:1
      insecure-skip-tls-verify: true
users:
  - name: nobody
    user:
      token: unused
contexts:
  - name: nowhere
    context:
      cluster: nowhere
      user: nobody
current-context: nowhere
",
    )
    .unwrap();
    path
}

/// A coordinator client span for the gate's probe and the gate's server span
/// parented on it.
fn find_pair(spans: &[ReceivedSpan]) -> Option<(ReceivedSpan, ReceivedSpan)> {
    spans
        .iter()
        .filter(|s| {
            s.service == "nanny-coordinator" && s.kind == SPAN_KIND_CLIENT && s.name == "probe"
        })
        .find_map(|client| {
            spans
                .iter()
                .find(|s| {
                    s.service == "nanny-safety-gate"
                        && s.kind == SPAN_KIND_SERVER
                        && s.name == "grpc.health.v1.Health/Check"
                        && s.parent_span_id == client.span_id
                })
                .map(|server| (client.clone(), server.clone()))
        })
}
