//! Certificates rotate without a restart: a server serves new connections
//! with the certificate written over its old one, a client presents the one
//! written over its own, and a rotation to a bad certificate (here: expired)
//! takes effect just as fast — proof that the new files, not the old ones in
//! memory, are in use.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, time::Duration};

use nanny_common::tls::{COORDINATOR, TlsConfig};
use nanny_proto::{service_names, v1::safety_gate_client::SafetyGateClient};
use nanny_test_util::{
    cluster::eventually,
    pki::{self, Validity},
    process::{ServiceProcess, cargo_bin, health_status},
    requests,
};

const WAIT: Duration = Duration::from_secs(30);

/// Writes a certificate of `identity` from the test CA, valid or expired,
/// over the files `dir` holds for it (`NAME.pem`, `NAME-key.pem`).
fn rotate(dir: &Path, identity: &str, validity: Validity) {
    let fresh = dir.join(format!("fresh-{}", rand_suffix()));
    pki::issue(pki::test_dir(), identity, validity, &fresh).unwrap();
    for file in [format!("{identity}.pem"), format!("{identity}-key.pem")] {
        // Write then rename: the reader never sees half a file.
        let staged = dir.join(format!(".{file}"));
        std::fs::copy(fresh.join(&file), &staged).unwrap();
        std::fs::rename(&staged, dir.join(&file)).unwrap();
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A copy of the test PKI's files for `identity` in a directory of its own.
fn own_copy(name: &str, identity: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nanny-rotation-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for file in [
        "ca.pem".to_owned(),
        format!("{identity}.pem"),
        format!("{identity}-key.pem"),
    ] {
        std::fs::copy(pki::test_dir().join(&file), dir.join(&file)).unwrap();
    }
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn server_and_client_certificates_rotate_without_a_restart() {
    let gate_dir = own_copy("gate", "nanny-safety-gate");
    let files = TlsConfig::from_dir(&gate_dir, "nanny-safety-gate");
    let path = |p: Option<std::path::PathBuf>| p.unwrap().display().to_string();
    let (ca, cert, key) = (path(files.ca), path(files.cert), path(files.key));
    let gate = ServiceProcess::spawn(
        &cargo_bin("nanny-safety-gate"),
        &[
            ("NANNY_TLS__CA", &ca),
            ("NANNY_TLS__CERT", &cert),
            ("NANNY_TLS__KEY", &key),
            ("NANNY_TLS__RELOAD_INTERVAL_SECS", "1"),
        ],
    )
    .await
    .unwrap();
    gate.wait_serving(service_names::SAFETY_GATE, WAIT)
        .await
        .unwrap();
    // A new connection each time: what a rotation affects.
    let fresh_health = || health_status(gate.channel(COORDINATOR), "");

    // The server's certificate expires on disk: new connections see it.
    rotate(&gate_dir, "nanny-safety-gate", Validity::Expired);
    eventually(
        "the server presents the rotated (expired) certificate",
        WAIT,
        || async { Ok(fresh_health().await.is_err().then_some(())) },
    )
    .await
    .unwrap();
    // And a valid one again, still without a restart.
    rotate(&gate_dir, "nanny-safety-gate", Validity::Current);
    eventually(
        "the server presents the renewed certificate",
        WAIT,
        || async { Ok(fresh_health().await.is_ok().then_some(())) },
    )
    .await
    .unwrap();
    let logs = gate.logs().join("\n");
    assert!(
        logs.matches("Reloaded the TLS certificate").count() >= 2,
        "{logs}"
    );

    // The client side: one long-lived channel, as the coordinator holds.
    let client_dir = own_copy("client", COORDINATOR);
    let tls = TlsConfig::from_dir(&client_dir, COORDINATOR)
        .client("nanny-safety-gate")
        .unwrap();
    let channel = nanny_common::client::channel(
        "peers.safety_gate",
        &gate.grpc_url(),
        Duration::from_secs(5),
        tls.as_ref(),
    )
    .unwrap();
    let mut client = SafetyGateClient::new(channel);
    let review = requests::crashloop_restart("shop", "web-1");
    client.review(review.clone()).await.unwrap();
    // Its certificate expires on disk: the channel is rebuilt with it, and
    // the gate refuses the new connection.
    rotate(&client_dir, COORDINATOR, Validity::Expired);
    eventually(
        "the client presents the rotated (expired) certificate",
        WAIT,
        || {
            let (mut client, review) = (client.clone(), review.clone());
            async move { Ok(client.review(review).await.is_err().then_some(())) }
        },
    )
    .await
    .unwrap();
    rotate(&client_dir, COORDINATOR, Validity::Current);
    eventually("the client presents the renewed certificate", WAIT, || {
        let (mut client, review) = (client.clone(), review.clone());
        async move { Ok(client.review(review).await.is_ok().then_some(())) }
    })
    .await
    .unwrap();
}
