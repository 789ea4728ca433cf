//! The gate over real gRPC on loopback: unary and streaming reviews, outcome
//! reports feeding the breaker, and the verdict metrics.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::SystemTime;

use nanny_common::server::Listeners;
use nanny_proto::v1::{
    ActionType, Decision, GateLimits, Outcome, OutcomeReport, ReviewRequest, RollbackReview,
    safety_gate_client::SafetyGateClient,
};
use nanny_safety_gate::Config;
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;

fn restart(namespace: &str, name: &str) -> ReviewRequest {
    nanny_test_util::requests::crashloop_restart(namespace, name)
}

async fn start() -> (
    SafetyGateClient<Channel>,
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
) {
    let listeners = Listeners::ephemeral().await.unwrap();
    let grpc = listeners.grpc_addr().unwrap();
    let http = listeners.http_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = Config {
        tls: nanny_test_util::pki::tls("nanny-safety-gate"),
        signing: nanny_safety_gate::config::SigningConfig {
            key: nanny_test_util::pki::signing_key().display().to_string(),
            ..Default::default()
        },
        ..Config::default()
    };
    tokio::spawn(nanny_safety_gate::run(config, listeners, async move {
        let _ = stopped.await;
    }));
    let client = SafetyGateClient::new(nanny_test_util::pki::channel(
        grpc,
        nanny_common::tls::COORDINATOR,
        "nanny-safety-gate",
    ));
    (client, http, stop)
}

#[tokio::test]
async fn unary_and_streaming_reviews_decide_with_rule_ids() {
    let (mut client, http, _stop) = start().await;

    let verdict = client
        .review(restart("shop", "web-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict.decision(), Decision::Approved);
    assert_eq!(verdict.matched_rules, ["auto-restart-crashloop"]);
    assert_eq!(verdict.recommendation_id, "rec-web-1");
    assert!(!verdict.audit_id.is_empty());

    let verdict = client
        .review(restart("kube-system", "coredns"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict.decision(), Decision::Denied);
    assert_eq!(verdict.matched_rules, ["protected-namespace"]);

    let verdict = client
        .review(ReviewRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict.decision(), Decision::Denied);

    let requests = vec![
        restart("blog", "a"),
        restart("monitoring", "b"),
        restart("blog", "c"),
    ];
    let mut verdicts = client
        .review_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(verdict) = verdicts.next().await {
        let verdict = verdict.unwrap();
        let decision = verdict.decision();
        seen.push((verdict.recommendation_id, decision));
    }
    assert_eq!(
        seen,
        [
            ("rec-a".to_owned(), Decision::Approved),
            ("rec-b".to_owned(), Decision::Denied),
            ("rec-c".to_owned(), Decision::Approved)
        ]
    );

    let (status, metrics) = nanny_test_util::http::get(http, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"nanny_safety_verdicts_total{decision="DECISION_DENIED",rule="protected-namespace"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn failed_outcomes_reported_over_grpc_open_the_breaker() {
    let (mut client, _http, _stop) = start().await;
    let request = restart("shop", "flaky");
    let target = request.recommendation.as_ref().unwrap().target.clone();
    // An outcome counts only under a verdict the gate issued.
    let approved = client.review(request.clone()).await.unwrap().into_inner();
    assert_eq!(approved.decision(), Decision::Approved);
    // Signed, for exactly this recommendation, as the remediator checks.
    let verifier = nanny_common::verdict::Verifier::load(
        "verdicts.public_keys",
        &[nanny_test_util::pki::verifying_key()],
    )
    .unwrap();
    let recommendation = request.recommendation.as_ref().unwrap();
    verifier
        .verify(recommendation, &approved, SystemTime::now())
        .unwrap();
    let mut elsewhere = recommendation.clone();
    elsewhere.target.as_mut().unwrap().uid = "uid-elsewhere".into();
    assert!(
        verifier
            .verify(&elsewhere, &approved, SystemTime::now())
            .is_err()
    );
    let report = OutcomeReport {
        recommendation_id: "rec-flaky".into(),
        target: target.clone(),
        action_type: ActionType::RestartPod as i32,
        outcome: Outcome::Ineffective as i32,
        finished_at: Some(SystemTime::now().into()),
        audit_id: approved.audit_id.clone(),
        // The policy's breaker opens at the first failure.
        limits: Some(GateLimits {
            breaker_failure_threshold: 1,
            ..GateLimits::default()
        }),
        ..OutcomeReport::default()
    };
    // Forged: an audit id the gate never issued, or another target under a
    // real one. Neither counts.
    for forged in [
        OutcomeReport {
            audit_id: "made-up".into(),
            ..report.clone()
        },
        OutcomeReport {
            target: restart("shop", "other").recommendation.unwrap().target,
            ..report.clone()
        },
    ] {
        let refused = client.record_outcome(forged).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
    }
    let still = client.review(request.clone()).await.unwrap().into_inner();
    assert_eq!(
        still.decision(),
        Decision::Approved,
        "no forged outcome counted"
    );
    client.record_outcome(report).await.unwrap();
    let verdict = client.review(request).await.unwrap().into_inner();
    assert_eq!(verdict.decision(), Decision::Denied);
    assert_eq!(
        verdict.matched_rules.last().map(String::as_str),
        Some("circuit-open")
    );

    let bad = client
        .record_outcome(OutcomeReport::default())
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn rollbacks_are_signed_only_for_actions_the_gate_approved() {
    let (mut client, _http, _stop) = start().await;
    let request = restart("shop", "undo-me");
    let recommendation = request.recommendation.clone().unwrap();
    let target = recommendation.target.clone().unwrap();
    let approved = client.review(request).await.unwrap().into_inner();
    assert_eq!(approved.decision(), Decision::Approved);
    let denied = client
        .review(restart("kube-system", "coredns"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(denied.decision(), Decision::Denied);
    let review = RollbackReview {
        action_id: "restart-undo-me".into(),
        audit_id: approved.audit_id.clone(),
        recommendation_id: recommendation.id.clone(),
        target: Some(target.clone()),
        action_type: ActionType::RestartPod as i32,
        policy_ref: "shop/default".into(),
        reason: "verification failed".into(),
    };
    let verifier = nanny_common::verdict::Verifier::load(
        "verdicts.public_keys",
        &[nanny_test_util::pki::verifying_key()],
    )
    .unwrap();
    let signed = client
        .review_rollback(review.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(signed.decision(), Decision::Approved, "{signed:?}");
    assert_eq!(signed.matched_rules, ["rollback-of-approved"]);
    verifier
        .verify_rollback(&review.action_id, &target, &signed, SystemTime::now())
        .unwrap();
    // Another action id under the same verdict: the signature does not hold.
    assert!(
        verifier
            .verify_rollback("another", &target, &signed, SystemTime::now())
            .is_err()
    );
    // Forged: an audit id the gate never issued, a denied verdict, another
    // target or another action type under a real one.
    let other = restart("shop", "other").recommendation.unwrap().target;
    for forged in [
        RollbackReview {
            audit_id: "made-up".into(),
            ..review.clone()
        },
        RollbackReview {
            audit_id: denied.audit_id.clone(),
            ..review.clone()
        },
        RollbackReview {
            target: other,
            ..review.clone()
        },
        RollbackReview {
            action_type: ActionType::DrainNode as i32,
            ..review.clone()
        },
    ] {
        let verdict = client.review_rollback(forged).await.unwrap().into_inner();
        assert_eq!(verdict.decision(), Decision::Denied, "{verdict:?}");
        assert!(verdict.signature.is_empty(), "a refusal is never signed");
    }
    let bad = client
        .review_rollback(RollbackReview::default())
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
}
