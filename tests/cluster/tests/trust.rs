//! Trust between services, attacked over the real network stack: the
//! remediator, the gate and the collector run as processes with mutual TLS,
//! and callers without a certificate, with one from another CA, with an
//! expired one, or with the wrong identity are refused. The evidence that
//! nothing happened comes from the API server (the target pod's uid and
//! resourceVersion) and from the gate's audit log on disk, never from the
//! refusing service's reply.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::{path::Path, time::Duration};

use k8s_openapi::api::{
    autoscaling::v2::HorizontalPodAutoscaler,
    core::v1::{ConfigMap, Pod},
};
use kube::{Api, ResourceExt as _, api::ListParams};
use nanny_cluster_tests::Fixture;
use nanny_common::tls::{COORDINATOR, OPERATOR, TlsConfig};
use nanny_proto::{
    service_names,
    v1::{
        Action, ActionType, Decision, ExecuteRequest, GetSnapshotRequest, ObjectRef, Outcome,
        OutcomeReport, Recommendation, RestartPod, ScaleHpa, Verdict, action::Kind as ActionKind,
        collector_client::CollectorClient, remediator_client::RemediatorClient,
        safety_gate_client::SafetyGateClient,
    },
};
use nanny_test_util::{
    cluster::eventually,
    faults, owners,
    pki::{self, Validity},
    process::{ServiceProcess, cargo_bin},
    requests,
};
use tonic::{Code, transport::Channel};

const WAIT: Duration = Duration::from_secs(60);

/// A channel to `addr` with the files in `tls`, expecting the server `peer`.
fn channel_with(addr: std::net::SocketAddr, tls: &TlsConfig, peer: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls.client(peer).unwrap().unwrap().config())
        .unwrap()
        .connect_lazy()
}

/// Plaintext HTTP/2 to a TLS port.
fn plaintext(addr: std::net::SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy()
}

/// The attackers' channels to the service at `addr` named `peer`, each with
/// a label for messages: no TLS, a coordinator certificate from another CA
/// (trusting the real CA, so only the server can be the one refusing), and
/// an expired coordinator certificate from the real CA.
fn forged_channels(
    addr: std::net::SocketAddr,
    peer: &str,
    scratch: &Path,
) -> Vec<(&'static str, Channel)> {
    let other = scratch.join("other-ca");
    pki::write(&other, &[COORDINATOR], &[], Validity::Current).unwrap();
    let expired = scratch.join("expired");
    pki::issue(pki::test_dir(), COORDINATOR, Validity::Expired, &expired).unwrap();
    let foreign = TlsConfig {
        ca: Some(pki::test_dir().join("ca.pem")),
        ..TlsConfig::from_dir(&other, COORDINATOR)
    };
    vec![
        ("plaintext", plaintext(addr)),
        ("another CA", channel_with(addr, &foreign, peer)),
        (
            "expired certificate",
            channel_with(addr, &TlsConfig::from_dir(&expired, COORDINATOR), peer),
        ),
    ]
}

fn scratch(fx: &Fixture) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{}-trust", fx.ns()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An Execute with an APPROVED verdict written by the caller itself.
fn self_approved_restart(pod: &Pod, dry_run: bool) -> ExecuteRequest {
    let target = ObjectRef {
        kind: "Pod".into(),
        api_version: "v1".into(),
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        uid: pod.uid().unwrap_or_default(),
        resource_version: pod.resource_version().unwrap_or_default(),
    };
    ExecuteRequest {
        action_id: "forged-1".into(),
        recommendation: Some(Recommendation {
            id: "rec-forged-1".into(),
            action: Some(Action {
                kind: Some(ActionKind::RestartPod(RestartPod {})),
            }),
            target: Some(target),
            ..Recommendation::default()
        }),
        verdict: Some(Verdict {
            recommendation_id: "rec-forged-1".into(),
            decision: Decision::Approved as i32,
            ..Verdict::default()
        }),
        verification_timeout_seconds: 30,
        dry_run,
        ..ExecuteRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_remediator_refuses_every_caller_but_the_coordinator() {
    let Some(fx) = Fixture::new("trust-rem").await else {
        return;
    };
    faults::crash_loop(&fx.client, fx.ns(), "victim", 1)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(fx.client.clone(), fx.ns());
    let before = running_pod(&fx, "victim").await;
    let remediator = start_remediator(&fx).await;
    let addr = remediator.grpc_addr;

    let mut attackers = forged_channels(addr, "nanny-remediator", &scratch(&fx));
    for identity in [OPERATOR, "nanny-analyzer", "nanny-collector"] {
        attackers.push((identity, remediator.channel(identity)));
    }
    for (who, channel) in attackers {
        let refused = RemediatorClient::new(channel)
            .execute(self_approved_restart(&before, false))
            .await
            .expect_err(who);
        if matches!(who, "plaintext" | "another CA" | "expired certificate") {
            assert_ne!(refused.code(), Code::Ok, "{who}: {refused}");
        } else {
            assert_eq!(refused.code(), Code::PermissionDenied, "{who}: {refused}");
            assert!(
                refused.message().contains("serves only nanny-coordinator"),
                "{who}: {refused}"
            );
        }
    }
    let logs = remediator.logs().join("\n");
    assert!(
        logs.matches("Refused a TLS connection.").count() >= 2,
        "the other CA and the expired certificate are logged:\n{logs}"
    );

    // The API server's evidence: the pod is the same object, unchanged, and
    // the remediator claimed no action record.
    let after = pods.get(&before.name_any()).await.unwrap();
    assert_eq!(after.uid(), before.uid());
    assert_eq!(after.resource_version(), before.resource_version());
    let records = Api::<ConfigMap>::namespaced(fx.client.clone(), fx.ns())
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=nanny-remediator"))
        .await
        .unwrap();
    assert!(records.items.is_empty(), "{:?}", records.items);

    // The control: the coordinator's certificate reaches the handler over the
    // same port (a dry run, so the pod still stays as it is).
    let mut signed = self_approved_restart(&before, true);
    pki::sign(&mut signed);
    let preview = RemediatorClient::new(remediator.channel(COORDINATOR))
        .execute(signed)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(preview.outcome(), Outcome::DryRun, "{preview:?}");
    let after = pods.get(&before.name_any()).await.unwrap();
    assert_eq!(after.resource_version(), before.resource_version());
}

/// The remediator as a process with the admin's kubeconfig (mutual TLS and
/// the gate's public key from the test PKI), SERVING.
async fn start_remediator(fx: &Fixture) -> ServiceProcess {
    let kubeconfig = fx.cluster.kubeconfig.to_string_lossy().into_owned();
    let remediator = ServiceProcess::spawn(
        &cargo_bin("nanny-remediator"),
        &[
            ("NANNY_KUBECONFIG", &kubeconfig),
            ("NANNY_STATE_NAMESPACE", fx.ns()),
        ],
    )
    .await
    .unwrap();
    remediator
        .wait_serving(service_names::REMEDIATOR, WAIT)
        .await
        .unwrap();
    remediator
}

/// A pod of `app`'s Deployment in phase Running.
async fn running_pod(fx: &Fixture, app: &str) -> Pod {
    eventually(&format!("{app} pod running"), WAIT, || async {
        Ok(faults::pods_of(&fx.client, fx.ns(), app)
            .await?
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_remediator_acts_only_on_verdicts_the_gate_signed() {
    let Some(fx) = Fixture::new("trust-sig").await else {
        return;
    };
    faults::crash_loop(&fx.client, fx.ns(), "victim", 1)
        .await
        .unwrap();
    faults::crash_loop(&fx.client, fx.ns(), "bystander", 1)
        .await
        .unwrap();
    let victim = running_pod(&fx, "victim").await;
    let bystander = running_pod(&fx, "bystander").await;
    let remediator = start_remediator(&fx).await;
    let mut client = RemediatorClient::new(remediator.channel(COORDINATOR));
    let now = std::time::SystemTime::now();
    let gate = nanny_common::verdict::Signer::load(
        "signing.key",
        &pki::signing_key(),
        Duration::from_secs(900),
    )
    .unwrap();
    let dir = scratch(&fx);
    pki::write_signing_key(&dir, "impostor").unwrap();
    let impostor = nanny_common::verdict::Signer::load(
        "signing.key",
        &dir.join("impostor-key.pem"),
        Duration::from_secs(900),
    )
    .unwrap();
    let signed_by = |signer: &nanny_common::verdict::Signer, at: std::time::SystemTime| {
        let mut request = self_approved_restart(&victim, false);
        signer.sign(
            request.recommendation.as_ref().unwrap(),
            request.verdict.as_mut().unwrap(),
            at,
        );
        request
    };
    let mut attacks: Vec<(&str, ExecuteRequest)> = vec![
        ("unsigned", self_approved_restart(&victim, false)),
        ("signed by another key", signed_by(&impostor, now)),
        ("expired", signed_by(&gate, now - Duration::from_secs(3600))),
    ];
    // A valid signature over one pod, sent with another pod as the target
    // (a replayed id with a new target).
    let mut retargeted = signed_by(&gate, now);
    retargeted.recommendation = self_approved_restart(&bystander, false).recommendation;
    attacks.push(("another target", retargeted));
    // A DRY_RUN_ONLY verdict promoted to APPROVED after signing.
    let mut promoted = self_approved_restart(&victim, false);
    promoted.verdict.as_mut().unwrap().decision = Decision::DryRunOnly as i32;
    gate.sign(
        promoted.recommendation.as_ref().unwrap(),
        promoted.verdict.as_mut().unwrap(),
        now,
    );
    promoted.verdict.as_mut().unwrap().decision = Decision::Approved as i32;
    attacks.push(("decision changed", promoted));
    for (what, request) in attacks {
        let refused = client.execute(request).await.expect_err(what);
        assert_eq!(refused.code(), Code::PermissionDenied, "{what}: {refused}");
    }

    // The API server's evidence: both pods are the same objects, unchanged,
    // and no action record was claimed.
    let pods: Api<Pod> = Api::namespaced(fx.client.clone(), fx.ns());
    for pod in [&victim, &bystander] {
        let now = pods.get(&pod.name_any()).await.unwrap();
        assert_eq!(now.uid(), pod.uid());
        assert_eq!(now.resource_version(), pod.resource_version());
    }
    let records = Api::<ConfigMap>::namespaced(fx.client.clone(), fx.ns())
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=nanny-remediator"))
        .await
        .unwrap();
    assert!(records.items.is_empty(), "{:?}", records.items);

    // Gate bypassed: a validly signed verdict for a protected target still
    // meets the remediator's own checks. The Deployment alone carries the
    // Helm label, as many charts do; its pod does not.
    faults::crash_loop(&fx.client, fx.ns(), "charted", 1)
        .await
        .unwrap();
    owners::label_helm(&fx.client, fx.ns(), "charted")
        .await
        .unwrap();
    let charted = running_pod(&fx, "charted").await;
    let mut request = self_approved_restart(&charted, false);
    request.action_id = "charted-1".into();
    pki::sign(&mut request);
    let refused = client.execute(request).await.unwrap().into_inner();
    assert_eq!(refused.outcome(), Outcome::Refused, "{refused:?}");
    assert!(
        refused
            .error
            .contains("protected label app.kubernetes.io/managed-by=Helm"),
        "{}",
        refused.error
    );
    let still = pods.get(&charted.name_any()).await.unwrap();
    assert_eq!(still.resource_version(), charted.resource_version());
    // HPA min=max: a signed "raise max" that also forces minReplicas up, with
    // no human behind it, is refused; the HPA is unchanged.
    let hpa = faults::hpa_at_max(
        &fx.client,
        fx.ns(),
        "scaled",
        faults::HpaAtMax {
            min_replicas: 1,
            max_replicas: 3,
            target_cpu_percent: 50,
            current_cpu_percent: 90,
        },
    )
    .await
    .unwrap();
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(fx.client.clone(), fx.ns());
    let hpa = hpas.get(&hpa.name_any()).await.unwrap();
    let mut request = self_approved_restart(&charted, false);
    request.action_id = "scaled-1".into();
    let recommendation = request.recommendation.as_mut().unwrap();
    recommendation.action = Some(Action {
        kind: Some(ActionKind::ScaleHpa(ScaleHpa {
            min_replicas: Some(100),
            max_replicas: 100,
        })),
    });
    recommendation.target = Some(ObjectRef {
        kind: "HorizontalPodAutoscaler".into(),
        api_version: "autoscaling/v2".into(),
        namespace: fx.ns().into(),
        name: hpa.name_any(),
        uid: hpa.uid().unwrap_or_default(),
        resource_version: hpa.resource_version().unwrap_or_default(),
    });
    pki::sign(&mut request);
    let refused = client.execute(request).await.unwrap().into_inner();
    assert_eq!(refused.outcome(), Outcome::Refused, "{refused:?}");
    assert!(
        refused.error.contains("minReplicas 100"),
        "{}",
        refused.error
    );
    assert_eq!(
        hpas.get(&hpa.name_any()).await.unwrap().resource_version(),
        hpa.resource_version()
    );

    // The gate's own signature, on the same request, is obeyed.
    let result = client
        .execute(signed_by(&gate, now))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(result.outcome(), Outcome::Refused, "{result:?}");
    eventually("victim restarted", WAIT, || async {
        Ok(pods
            .get_opt(&victim.name_any())
            .await?
            .is_none_or(|p| p.uid() != victim.uid())
            .then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gate_and_the_collector_serve_only_their_callers() {
    let Some(fx) = Fixture::new("trust-gate").await else {
        return;
    };
    let dir = scratch(&fx);
    let audit = dir.join("audit.jsonl");
    let audit_path = audit.to_string_lossy().into_owned();
    let gate = ServiceProcess::spawn(
        &cargo_bin("nanny-safety-gate"),
        &[("NANNY_AUDIT__PATH", &audit_path)],
    )
    .await
    .unwrap();
    gate.wait_serving(service_names::SAFETY_GATE, WAIT)
        .await
        .unwrap();
    let audited = || {
        std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let before = audited();

    let mut attackers = forged_channels(gate.grpc_addr, "nanny-safety-gate", &dir);
    attackers.push((OPERATOR, gate.channel(OPERATOR)));
    attackers.push(("nanny-remediator", gate.channel("nanny-remediator")));
    for (who, channel) in attackers {
        let mut client = SafetyGateClient::new(channel);
        let review = client
            .review(requests::crashloop_restart(fx.ns(), "web-1"))
            .await
            .expect_err(who);
        assert_ne!(review.code(), Code::Ok, "{who}");
        // A forged SUCCEEDED report would close an open breaker.
        let outcome = client
            .record_outcome(OutcomeReport {
                recommendation_id: "rec-1".into(),
                outcome: Outcome::Succeeded as i32,
                ..OutcomeReport::default()
            })
            .await
            .expect_err(who);
        if !matches!(who, "plaintext" | "another CA" | "expired certificate") {
            assert_eq!(review.code(), Code::PermissionDenied, "{who}: {review}");
            assert_eq!(outcome.code(), Code::PermissionDenied, "{who}: {outcome}");
        }
    }
    assert_eq!(audited(), before, "no refused call reached the audit log");
    // The coordinator is served, and audited.
    let mut coordinator = SafetyGateClient::new(gate.channel(COORDINATOR));
    let request = requests::crashloop_restart(fx.ns(), "web-1");
    let verdict = coordinator
        .review(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verdict.decision(), Decision::Approved, "{verdict:?}");
    assert_eq!(audited(), before + 1);
    // A counted recommendation id reused for another pod is a replay.
    let mut replayed = requests::crashloop_restart(fx.ns(), "web-2");
    replayed.recommendation.as_mut().unwrap().id = verdict.recommendation_id.clone();
    let refused = coordinator.review(replayed).await.unwrap().into_inner();
    assert_eq!(refused.decision(), Decision::Denied, "{refused:?}");
    assert_eq!(
        refused.matched_rules.last().map(String::as_str),
        Some("replayed-id")
    );
    assert!(refused.signature.is_empty(), "a denial is never signed");
    assert_eq!(audited(), before + 2, "and audited");
    let before = before + 1;
    // Even the coordinator's outcomes count only under a verdict the gate
    // issued for that recommendation and target.
    let target = request.recommendation.as_ref().unwrap().target.clone();
    let forged = OutcomeReport {
        recommendation_id: verdict.recommendation_id.clone(),
        target: target.clone(),
        action_type: ActionType::RestartPod as i32,
        outcome: Outcome::Succeeded as i32,
        audit_id: "forged-audit-id".into(),
        ..OutcomeReport::default()
    };
    let refused = coordinator
        .record_outcome(forged.clone())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused}");
    let mut elsewhere = target.clone().unwrap();
    elsewhere.uid = "uid-another-pod".into();
    let refused = coordinator
        .record_outcome(OutcomeReport {
            audit_id: verdict.audit_id.clone(),
            target: Some(elsewhere),
            ..forged.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused}");
    assert_eq!(audited(), before + 1, "refused outcomes are not recorded");
    coordinator
        .record_outcome(OutcomeReport {
            audit_id: verdict.audit_id.clone(),
            ..forged
        })
        .await
        .unwrap();
    assert_eq!(audited(), before + 2);

    // The collector serves the coordinator and operators, not other services.
    let collector = fx.start_collector().await;
    let snapshot = |identity: &str| {
        let mut client = CollectorClient::new(collector.channel(identity));
        async move {
            client
                .get_snapshot(GetSnapshotRequest { scope: None })
                .await
                .map(|_| ())
        }
    };
    let refused = snapshot("nanny-analyzer").await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused}");
    snapshot(OPERATOR).await.unwrap();
    snapshot(COORDINATOR).await.unwrap();
    // Health stays open to every authenticated caller (grpcurl, nannyctl).
    assert!(
        nanny_test_util::process::health_status(collector.channel("nanny-remediator"), "")
            .await
            .is_ok()
    );
}
