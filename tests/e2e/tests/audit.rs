//! The gate writes every verdict to its signed, hash-chained audit log, and
//! `nannyctl audit verify` detects a tampered record, a re-signed or
//! unsigned rewrite, and a cut tail (against the anchors verdicts carry).

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::process::Command;

use nanny_proto::v1::{Decision, ReviewRequest, safety_gate_client::SafetyGateClient};
use nanny_test_util::process::{ServiceProcess, cargo_bin};

/// `nannyctl audit verify` with the test PKI's gate key and `anchors`.
fn verify_with(path: &std::path::Path, anchors: &[String]) -> (bool, String) {
    let mut command = Command::new(cargo_bin("nannyctl"));
    command
        .args(["audit", "verify"])
        .arg(path)
        .arg("--public-key")
        .arg(nanny_test_util::pki::verifying_key());
    for anchor in anchors {
        command.args(["--anchor", anchor]);
    }
    let output = command.output().unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn verify(path: &std::path::Path) -> (bool, String) {
    verify_with(path, &[])
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
    let mut client = SafetyGateClient::new(gate.channel(nanny_common::tls::COORDINATOR));
    let mut audit_ids = Vec::new();
    let mut anchors = Vec::new();
    for _ in 0..3 {
        // An empty request is malformed: DENIED, and audited like any other.
        let verdict = client
            .review(ReviewRequest::default())
            .await
            .unwrap()
            .into_inner();
        audit_ids.push(verdict.audit_id);
        // The anchor a HealingAction keeps of its verdict.
        anchors.push(format!("{}:{}", verdict.audit_seq, verdict.audit_hash));
    }
    assert_eq!(anchors.len(), 3);
    assert!(anchors[2].starts_with("3:"), "{anchors:?}");
    assert!(gate.terminate().await.unwrap().success());

    let (ok, report) = verify_with(&path, &anchors);
    assert!(ok, "{report}");
    assert!(
        report.contains("3 records, chain intact and signed by")
            && report.contains("3 anchors hold"),
        "{report}"
    );
    let text = std::fs::read_to_string(&path).unwrap();

    // The last record cut off: an intact chain, but shorter than its anchor.
    let cut: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, &cut).unwrap();
    let (ok, _) = verify(&path);
    assert!(ok, "alone, a cut tail looks intact");
    let (ok, report) = verify_with(&path, &anchors[2..]);
    assert!(!ok, "a cut tail went unnoticed: {report}");
    assert!(
        report.contains("truncated")
            && report.contains("anchors record 3, but the log ends at record 2"),
        "{report}"
    );
    // Every record re-hashed after an edit, as one without the gate's key
    // would: each signature fails (and stripping them is no way out).
    let rehashed: String = text
        .lines()
        .map(|line| {
            let mut record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["signature"] = serde_json::json!("00");
            format!("{record}\n")
        })
        .collect();
    std::fs::write(&path, &rehashed).unwrap();
    let (ok, report) = verify(&path);
    assert!(
        !ok && report.contains("not signed by a trusted gate key"),
        "{report}"
    );
    std::fs::write(&path, &text).unwrap();
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

#[tokio::test(flavor = "multi_thread")]
async fn limits_survive_a_killed_gate() {
    let dir = std::env::temp_dir().join(format!("nanny-e2e-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&path);
    let env = [("NANNY_AUDIT__PATH", path.to_str().unwrap())];
    let decide = |verdict: nanny_proto::v1::Verdict| {
        (
            verdict.decision(),
            verdict.matched_rules.last().cloned().unwrap_or_default(),
        )
    };
    let restart = nanny_test_util::requests::crashloop_restart;

    let gate = ServiceProcess::spawn(&cargo_bin("nanny-safety-gate"), &env)
        .await
        .unwrap();
    let mut client = SafetyGateClient::new(gate.channel(nanny_common::tls::COORDINATOR));
    // The namespace allows 5 actions an hour by default.
    for i in 0..5 {
        let verdict = client
            .review(restart("shop", &format!("web-{i}")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(verdict.decision(), Decision::Approved, "{verdict:?}");
    }
    let verdict = client
        .review(restart("shop", "web-5"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        decide(verdict),
        (Decision::Denied, "rate-limit-namespace".to_owned())
    );
    // A failed restart of one pod, under a policy whose breaker opens at
    // the first failure, opens its breaker. The outcome names the verdict
    // it ran under: the gate counts no other.
    let flaky = restart("blog", "flaky");
    let approved = client.review(flaky.clone()).await.unwrap().into_inner();
    assert_eq!(approved.decision(), Decision::Approved, "{approved:?}");
    let report = nanny_proto::v1::OutcomeReport {
        recommendation_id: "rec-flaky".into(),
        target: flaky.recommendation.as_ref().unwrap().target.clone(),
        action_type: nanny_proto::v1::ActionType::RestartPod as i32,
        outcome: nanny_proto::v1::Outcome::Failed as i32,
        audit_id: approved.audit_id,
        limits: Some(nanny_proto::v1::GateLimits {
            breaker_failure_threshold: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    client.record_outcome(report).await.unwrap();
    // Each record says exactly what was decided on, under which policy
    // version.
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        first["entry"]["parameters"], "RestartPod(RestartPod)",
        "{first}"
    );
    assert_eq!(first["entry"]["policy_generation"], 1, "{first}");
    assert!(first["entry"]["approved_by"].is_null(), "{first}");
    gate.kill().await.unwrap();

    // A new gate on the same audit log enforces the same window.
    let gate = ServiceProcess::spawn(&cargo_bin("nanny-safety-gate"), &env)
        .await
        .unwrap();
    let mut client = SafetyGateClient::new(gate.channel(nanny_common::tls::COORDINATOR));
    let verdict = client
        .review(restart("shop", "web-5"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        decide(verdict),
        (Decision::Denied, "rate-limit-namespace".to_owned())
    );
    // The same pod, proposed again (a new recommendation), is in its
    // cooldown, too. (Re-reviewing the very same recommendation keeps its
    // approval: it already holds its slot.)
    let mut again = restart("shop", "web-0");
    again.recommendation.as_mut().unwrap().id = "rec-web-0-again".into();
    let verdict = client.review(again).await.unwrap().into_inner();
    assert_eq!(decide(verdict), (Decision::Denied, "cooldown".to_owned()));
    let verdict = client.review(flaky).await.unwrap().into_inner();
    assert_eq!(
        decide(verdict),
        (Decision::Denied, "circuit-open".to_owned())
    );
    // Other namespaces were never limited. (A recommendation of its own: an
    // id counted for shop/web-0 is never reused for another target.)
    let mut blog = restart("blog", "web-0");
    blog.recommendation.as_mut().unwrap().id = "rec-blog-web-0".into();
    let verdict = client.review(blog).await.unwrap().into_inner();
    assert_eq!(verdict.decision(), Decision::Approved, "{verdict:?}");
    assert!(gate.terminate().await.unwrap().success());
}
