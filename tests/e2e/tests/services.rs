//! Every service binary serves gRPC health and reflection that the real
//! grpcurl can use, exposes /metrics, shuts down gracefully on SIGTERM, and
//! the coordinator's readiness follows its peers'.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::{path::Path, process::Output, time::Duration};

use nanny_e2e::API_SERVICES;
use nanny_test_util::{
    http,
    process::{ServiceProcess, cargo_bin},
    tools::GRPCURL,
};
use tonic_health::pb::health_check_response::ServingStatus;

const WAIT: Duration = Duration::from_secs(15);

/// grpcurl as an operator: the test PKI's CA and `operator` certificate.
async fn grpcurl(grpcurl: &Path, args: &[&str]) -> Output {
    let pki = nanny_test_util::pki::test_dir();
    let output = tokio::process::Command::new(grpcurl)
        .arg("-cacert")
        .arg(pki.join("ca.pem"))
        .arg("-cert")
        .arg(pki.join("operator.pem"))
        .arg("-key")
        .arg(pki.join("operator-key.pem"))
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "grpcurl {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What a user debugging `process` with grpcurl sees.
async fn check_with_grpcurl(
    grpcurl_bin: &Path,
    process: &ServiceProcess,
    grpc_service: Option<&str>,
) {
    let addr = process.grpc_addr.to_string();

    // Without a client certificate the port answers nothing, not even reflection.
    let plaintext = tokio::process::Command::new(grpcurl_bin)
        .args(["-plaintext", "-max-time", "5", &addr, "list"])
        .output()
        .await
        .unwrap();
    assert!(
        !plaintext.status.success(),
        "{}: plaintext served",
        process.name
    );

    let listed = stdout(&grpcurl(grpcurl_bin, &[&addr, "list"]).await);
    let listed: Vec<&str> = listed.lines().collect();
    for expected in [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            listed.contains(&expected),
            "{}: {expected} not listed in {listed:?}",
            process.name
        );
    }
    if let Some(service) = grpc_service {
        assert!(
            listed.contains(&service),
            "{}: {service} not listed in {listed:?}",
            process.name
        );
        let methods = stdout(&grpcurl(grpcurl_bin, &[&addr, "list", service]).await);
        assert!(
            methods.lines().count() >= 2,
            "{service} lists no methods: {methods}"
        );
    }

    let described = stdout(
        &grpcurl(
            grpcurl_bin,
            &[&addr, "describe", "nanny.v1.ClusterSnapshot"],
        )
        .await,
    );
    assert!(
        described.contains("nanny.v1.ClusterSnapshot is a message"),
        "{described}"
    );
    assert!(
        described.contains("repeated .nanny.v1.Issue issues"),
        "{described}"
    );

    let request = format!(r#"{{"service":"{}"}}"#, grpc_service.unwrap_or_default());
    let health = grpcurl(
        grpcurl_bin,
        &["-d", &request, &addr, "grpc.health.v1.Health/Check"],
    )
    .await;
    let health: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    assert_eq!(health["status"], "SERVING", "{}", process.name);
}

async fn check_metrics(process: &ServiceProcess) {
    let (status, body) = http::get(process.http_addr, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    let build_info = format!(r#"nanny_build_info{{service="{}",version="#, process.name);
    assert!(
        body.contains(&build_info),
        "{}: no build info in\n{body}",
        process.name
    );
    // grpcurl's health check above was counted by the gRPC metrics layer.
    assert!(
        body.lines()
            .any(|l| l.starts_with("nanny_grpc_server_requests_total")
                && l.contains(r#"method="/grpc.health.v1.Health/Check""#)
                && l.contains(r#"code="0""#)),
        "{}: health check not counted in\n{body}",
        process.name
    );
    assert!(
        body.contains("process_resident_memory_bytes"),
        "{}: no process metrics",
        process.name
    );
    assert_eq!(
        http::get(process.http_addr, "/healthz").await.unwrap().0,
        200
    );
    assert_eq!(
        http::get(process.http_addr, "/readyz").await.unwrap().0,
        200
    );
}

async fn nannyctl_health(
    peers: &[&ServiceProcess],
    coordinator: &ServiceProcess,
) -> (bool, String) {
    let output = tokio::process::Command::new(cargo_bin("nannyctl"))
        .arg("health")
        .envs(nanny_test_util::pki::nannyctl_env())
        .args(["--collector", &peers[0].grpc_url()])
        .args(["--analyzer", &peers[1].grpc_url()])
        .args(["--safety-gate", &peers[2].grpc_url()])
        .args(["--remediator", &peers[3].grpc_url()])
        .args(["--coordinator", &coordinator.grpc_url()])
        .args(["--timeout-ms", "1000"])
        .output()
        .await
        .unwrap();
    (output.status.success(), stdout(&output))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_service_serves_health_reflection_and_metrics_to_real_clients() {
    let grpcurl_bin = GRPCURL.require().unwrap();
    // The collector and the remediator are SERVING only once the Kubernetes
    // API answers, and the coordinator cannot start without it: they get the
    // local cluster.
    let Some(cluster) = nanny_test_util::cluster::ClusterInfo::for_test("services") else {
        return;
    };
    let kubeconfig = cluster.kubeconfig.to_string_lossy().into_owned();

    let mut peers = Vec::new();
    for (binary, grpc_service) in API_SERVICES {
        let env: &[(&str, &str)] = match binary {
            "nanny-collector" => &[("NANNY_KUBERNETES__KUBECONFIG", &kubeconfig)],
            "nanny-remediator" => &[("NANNY_KUBECONFIG", &kubeconfig)],
            _ => &[],
        };
        let process = ServiceProcess::spawn(&cargo_bin(binary), env)
            .await
            .unwrap();
        process.wait_serving(grpc_service, WAIT).await.unwrap();
        check_with_grpcurl(&grpcurl_bin, &process, Some(grpc_service)).await;
        check_metrics(&process).await;
        peers.push(process);
    }

    let urls: Vec<String> = peers.iter().map(ServiceProcess::grpc_url).collect();
    // The coordinator needs the API server too (policies, actions, its
    // Lease); confined to `default`, it never acts on other tests' policies.
    let coordinator = ServiceProcess::spawn(
        &cargo_bin("nanny-coordinator"),
        &[
            ("NANNY_KUBERNETES__KUBECONFIG", &kubeconfig),
            ("NANNY_KUBERNETES__WATCH_NAMESPACE", "default"),
            ("NANNY_KUBERNETES__LEASE_NAMESPACE", "default"),
            ("NANNY_PEERS__COLLECTOR", &urls[0]),
            ("NANNY_PEERS__ANALYZER", &urls[1]),
            ("NANNY_PEERS__SAFETY_GATE", &urls[2]),
            ("NANNY_PEERS__REMEDIATOR", &urls[3]),
            ("NANNY_PEERS__PROBE_INTERVAL_MS", "200"),
        ],
    )
    .await
    .unwrap();
    coordinator.wait_serving("", WAIT).await.unwrap();
    check_with_grpcurl(&grpcurl_bin, &coordinator, None).await;
    check_metrics(&coordinator).await;
    let (_, metrics) = http::get(coordinator.http_addr, "/metrics").await.unwrap();
    assert!(
        metrics.contains(r#"nanny_dependency_up{dependency="safety-gate"} 1"#),
        "{metrics}"
    );

    let (ok, table) = nannyctl_health(&peers.iter().collect::<Vec<_>>(), &coordinator).await;
    assert!(ok, "nannyctl health failed with every service up:\n{table}");
    assert_eq!(
        table.lines().filter(|l| l.ends_with("  SERVING")).count(),
        5,
        "{table}"
    );

    // A peer going away makes the coordinator unready, and nannyctl says which.
    let gate = peers.remove(2);
    let status = gate.terminate().await.unwrap();
    assert!(
        status.success(),
        "safety gate exited with {status} on SIGTERM"
    );
    coordinator
        .wait_status("", ServingStatus::NotServing, WAIT)
        .await
        .unwrap();
    let (_, metrics) = http::get(coordinator.http_addr, "/metrics").await.unwrap();
    assert!(
        metrics.contains(r#"nanny_dependency_up{dependency="safety-gate"} 0"#),
        "{metrics}"
    );
    assert_eq!(
        http::get(coordinator.http_addr, "/readyz").await.unwrap().0,
        503
    );

    let gate_again = ServiceProcess::spawn(&cargo_bin("nanny-safety-gate"), &[])
        .await
        .unwrap();
    let mut with_new_gate: Vec<&ServiceProcess> = peers.iter().collect();
    with_new_gate.insert(2, &gate_again);
    let (ok, table) = nannyctl_health(&with_new_gate, &coordinator).await;
    assert!(
        !ok,
        "nannyctl health must fail while the coordinator is not ready:\n{table}"
    );
    let coordinator_row = table
        .lines()
        .find(|l| l.starts_with("coordinator"))
        .unwrap();
    assert!(coordinator_row.ends_with("NOT_SERVING"), "{table}");

    // Graceful shutdown: every service exits 0 on SIGTERM.
    for process in peers.into_iter().chain([coordinator, gate_again]) {
        let name = process.name.clone();
        let status = process.terminate().await.unwrap();
        assert!(status.success(), "{name} exited with {status} on SIGTERM");
    }
}
