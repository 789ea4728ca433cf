//! The gate writes every verdict to its hash-chained audit log, and
//! `nannyctl audit verify` detects a single tampered record.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use nanny_proto::v1::{ReviewRequest, safety_gate_client::SafetyGateClient};
use nanny_test_util::process::{ServiceProcess, cargo_bin};

fn verify(path: &std::path::Path) -> (bool, String) {
    let output = Command::new(cargo_bin("nannyctl"))
        .args(["audit", "verify"])
        .arg(path)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn tampering_with_one_audit_record_is_detected() {
    let dir = std::env::temp_dir().join(format!("nanny-e2e-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&path);

    let gate = ServiceProcess::spawn(
        &cargo_bin("nanny-safety-gate"),
        &[("NANNY_AUDIT__PATH", path.to_str().unwrap())],
    )
    .await
    .unwrap();
    let mut client = SafetyGateClient::connect(gate.grpc_url()).await.unwrap();
    let mut audit_ids = Vec::new();
    for _ in 0..3 {
        // An empty request is malformed: DENIED, and audited like any other.
        audit_ids.push(
            client
                .review(ReviewRequest::default())
                .await
                .unwrap()
                .into_inner()
                .audit_id,
        );
    }
    assert!(gate.terminate().await.unwrap().success());

    let (ok, report) = verify(&path);
    assert!(ok, "{report}");
    assert!(report.contains("3 records, chain intact"), "{report}");
    let text = std::fs::read_to_string(&path).unwrap();
    for id in &audit_ids {
        assert!(
            text.contains(id.as_str()),
            "audit id {id} missing from the log"
        );
    }

    // Flip one decision in the middle record.
    let lines: Vec<&str> = text.lines().collect();
    let tampered = lines[1].replace("DECISION_DENIED", "DECISION_APPROVED");
    assert_ne!(tampered, lines[1]);
    std::fs::write(&path, format!("{}\n{tampered}\n{}\n", lines[0], lines[2])).unwrap();
    let (ok, report) = verify(&path);
    assert!(!ok, "tampering went unnoticed: {report}");
    assert!(report.contains("line 2"), "{report}");

    // The gate refuses to extend a broken chain: it does not start.
    let refused = ServiceProcess::spawn(
        &cargo_bin("nanny-safety-gate"),
        &[("NANNY_AUDIT__PATH", path.to_str().unwrap())],
    )
    .await;
    let message = match refused {
        Ok(process) => {
            // It may report its addresses before failing on the audit log.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            process.logs().join("\n")
        }
        Err(error) => error.to_string(),
    };
    assert!(message.contains("line 2"), "{message}");
}
