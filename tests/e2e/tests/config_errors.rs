//! A bad config stops a service before it starts, with exit code 2 and one
//! line that names the offending key.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use nanny_test_util::process::cargo_bin;

/// Runs `binary` with `env` (and no inherited NANNY_* variables); returns
/// (exit code, stderr).
fn run(binary: &str, env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    let mut command = Command::new(cargo_bin(binary));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("NANNY_")) {
        command.env_remove(key);
    }
    let output = command
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_one_line_error(binary: &str, env: &[(&str, &str)], key: &str) {
    let (code, stderr) = run(binary, env, &[]);
    assert_eq!(code, Some(2), "{binary} with {env:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{binary}: expected one line, got {stderr:?}"
    );
    assert!(
        lines[0].starts_with(&format!("{binary}: invalid configuration")),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(key),
        "{binary}: {:?} does not name {key}",
        lines[0]
    );
}

#[test]
fn each_service_rejects_its_own_invalid_values() {
    assert_one_line_error(
        "nanny-collector",
        &[("NANNY_SNAPSHOT__MAX_MESSAGE_BYTES", "10")],
        "snapshot.max_message_bytes",
    );
    assert_one_line_error(
        "nanny-analyzer",
        &[("NANNY_LLM__MIN_CONFIDENCE", "1.5")],
        "llm.min_confidence",
    );
    assert_one_line_error(
        "nanny-analyzer",
        &[("NANNY_LLM__PROVIDER", "chatbot")],
        "chatbot",
    );
    assert_one_line_error(
        "nanny-remediator",
        &[("NANNY_SERVER__WORKER_THREADS", "0")],
        "server.worker_threads",
    );
    assert_one_line_error(
        "nanny-coordinator",
        &[("NANNY_PEERS__ANALYZER", "analyzer:50052")],
        "peers.analyzer",
    );
    // A leader that may not miss one renewal would flap.
    assert_one_line_error(
        "nanny-coordinator",
        &[
            ("NANNY_KUBERNETES__LEASE_DURATION_SECS", "3"),
            ("NANNY_KUBERNETES__LEASE_RENEW_SECS", "2"),
        ],
        "kubernetes.lease_duration_secs",
    );
    assert_one_line_error(
        "nanny-safety-gate",
        &[("NANNY_SERVER__GRPC_ADDR", "not-an-address")],
        "server.grpc_addr",
    );
    assert_one_line_error(
        "nanny-safety-gate",
        &[("NANNY_TELEMETRY__LOG_FILTER", "info,[")],
        "telemetry.log_filter",
    );
}

#[test]
fn tls_and_signing_keys_are_required_and_checked() {
    let pki = nanny_test_util::pki::test_dir();
    let file = |name: &str| pki.join(name).display().to_string();
    // TLS is on by default: no certificates, no start.
    assert_one_line_error("nanny-collector", &[], "tls.ca: not set");
    let (ca, cert, key) = (
        file("ca.pem"),
        file("nanny-collector.pem"),
        file("nanny-collector-key.pem"),
    );
    assert_one_line_error(
        "nanny-collector",
        &[
            ("NANNY_TLS__CA", &ca),
            ("NANNY_TLS__CERT", "/nonexistent/cert.pem"),
            ("NANNY_TLS__KEY", &key),
        ],
        "tls.cert: cannot read /nonexistent/cert.pem",
    );
    // A certificate where the key belongs: the wrong kind of file.
    assert_one_line_error(
        "nanny-collector",
        &[
            ("NANNY_TLS__CA", &ca),
            ("NANNY_TLS__CERT", &cert),
            ("NANNY_TLS__KEY", &cert),
        ],
        "tls.key",
    );
    // Another identity's key does not belong to this certificate.
    let other_key = file("nanny-analyzer-key.pem");
    assert_one_line_error(
        "nanny-collector",
        &[
            ("NANNY_TLS__CA", &ca),
            ("NANNY_TLS__CERT", &cert),
            ("NANNY_TLS__KEY", &other_key),
        ],
        "does not belong to tls.cert",
    );
    // The gate signs every actionable verdict: no key, no start; a TLS key
    // is not an Ed25519 signing key.
    let (gate_cert, gate_key) = (
        file("nanny-safety-gate.pem"),
        file("nanny-safety-gate-key.pem"),
    );
    let mut gate = vec![
        ("NANNY_TLS__CA", ca.as_str()),
        ("NANNY_TLS__CERT", gate_cert.as_str()),
        ("NANNY_TLS__KEY", gate_key.as_str()),
    ];
    // Every verdict goes to a persistent audit file, unless explicitly
    // ephemeral.
    assert_one_line_error("nanny-safety-gate", &gate, "audit.path: not set");
    gate.push(("NANNY_AUDIT__EPHEMERAL", "true"));
    assert_one_line_error("nanny-safety-gate", &gate, "signing.key: not set");
    gate.push(("NANNY_SIGNING__KEY", gate_key.as_str()));
    assert_one_line_error(
        "nanny-safety-gate",
        &gate,
        "not a PKCS#8 Ed25519 private key",
    );
}

#[test]
fn config_file_errors_name_the_file_or_key() {
    let dir = std::env::temp_dir().join(format!("nanny-e2e-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // Dropping a protected namespace would weaken the gate: refused.
    let weakened = dir.join("gate.yaml");
    std::fs::write(&weakened, "protected:\n  namespaces: [default]\n").unwrap();
    let (code, stderr) = run(
        "nanny-safety-gate",
        &[],
        &["--config", weakened.to_str().unwrap()],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("protected.namespaces") && stderr.contains("kube-system"),
        "{stderr}"
    );

    let malformed = dir.join("broken.yaml");
    std::fs::write(&malformed, "server: [unclosed\n").unwrap();
    let (code, stderr) = run(
        "nanny-collector",
        &[],
        &["--config", malformed.to_str().unwrap()],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("broken.yaml"), "{stderr}");

    let typo = dir.join("typo.yaml");
    std::fs::write(&typo, "server:\n  grpc_adr: 0.0.0.0:1\n").unwrap();
    let (code, stderr) = run(
        "nanny-remediator",
        &[],
        &["--config", typo.to_str().unwrap()],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("grpc_adr"), "{stderr}");

    let (code, stderr) = run(
        "nanny-analyzer",
        &[("NANNY_CONFIG_FILE", "/nonexistent/analyzer.yaml")],
        &[],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/analyzer.yaml"), "{stderr}");

    // The coordinator cannot run without the API server's address: a missing
    // kubeconfig stops it at start-up, naming the key and the file.
    let tls = nanny_test_util::pki::env("nanny-coordinator");
    let mut env: Vec<(&str, &str)> = tls.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend([
        ("NANNY_KUBERNETES__KUBECONFIG", "/nonexistent/kubeconfig"),
        ("NANNY_SERVER__GRPC_ADDR", "127.0.0.1:0"),
        ("NANNY_SERVER__HTTP_ADDR", "127.0.0.1:0"),
    ]);
    let (code, stderr) = run("nanny-coordinator", &env, &[]);
    assert!(code.is_some_and(|c| c != 0), "{stderr}");
    assert!(
        stderr.contains("kubernetes.kubeconfig") && stderr.contains("/nonexistent/kubeconfig"),
        "{stderr}"
    );
}

#[test]
fn version_and_help_exit_zero() {
    let (code, _) = run("nanny-analyzer", &[], &["--version"]);
    assert_eq!(code, Some(0));
    let (code, stderr) = run("nanny-analyzer", &[], &["--bogus"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--bogus"), "{stderr}");
}
