//! The step machine against a fake API server (tower-test, in the style of
//! controller-rs's `fixtures.rs`) and in-process gate and remediator: every
//! phase transition, and what conflict, gone and forbidden answers do.
//!
//! The fake keeps one HealingAction the way the API server would: GET
//! returns it, a status PUT with the resourceVersion it holds replaces it
//! (any other is a 409), a merge PATCH merges metadata. Events are accepted
//! and counted. Every request is recorded, so a test asserts what was
//! written, not what a step said.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{Method, Request, Response};
use kube::{
    Client, ResourceExt as _,
    client::Body,
    runtime::{
        controller::Action,
        events::{Recorder, Reporter},
        reflector::{self, store::Writer},
        watcher,
    },
};
use nanny_crd::{HealingAction, HealingPolicy, Phase};
use nanny_proto::v1::{
    self as pb, ActionResult, ExecuteRequest, OutcomeReport, RecordOutcomeResponse, ReviewRequest,
    RollbackRequest, RollbackReview, Verdict,
    remediator_server::{Remediator, RemediatorServer},
    safety_gate_server::{SafetyGate, SafetyGateServer},
};
use serde_json::{Value, json};
use tokio::sync::watch;
use tonic::{Status, Streaming};

use super::{Driver, Next};
use crate::{config::ActionsConfig, shared, snapshots::Snapshots};

const NS: &str = "shop";
const NAME: &str = "web-1-restartpod-0123456789";
const PATH: &str =
    "/apis/nanny.ai/v1alpha1/namespaces/shop/healingactions/web-1-restartpod-0123456789";

/// A recorded request: method, path and JSON body (`null` when none).
type Seen = (Method, String, Value);

/// Overrides for the fake: `(method, path suffix) → status code`.
type Faults = Vec<(Method, &'static str, u16)>;

#[derive(Default)]
struct ApiState {
    action: Option<Value>,
    seen: Vec<Seen>,
}

/// Serves the fake API server on `handle` until the client is dropped.
fn fake_api(action: Option<Value>, faults: Faults) -> (Client, Arc<Mutex<ApiState>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let state = Arc::new(Mutex::new(ApiState {
        action,
        seen: Vec::new(),
    }));
    let shared = state.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let path = parts.uri.path().to_owned();
            let (code, reply) = answer(&shared, &faults, &parts.method, &path, body);
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, "default"), state)
}

fn status(code: u16, reason: &str) -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": reason, "reason": reason, "code": code })
}

fn answer(
    state: &Mutex<ApiState>,
    faults: &Faults,
    method: &Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let mut state = state.lock().unwrap();
    state
        .seen
        .push((method.clone(), path.to_owned(), body.clone()));
    if let Some((_, _, code)) = faults
        .iter()
        .find(|(m, suffix, _)| m == method && path.ends_with(suffix))
    {
        return (*code, status(*code, "Injected"));
    }
    if path.contains("/events") {
        return (201, body);
    }
    let version = |a: &Value| {
        a["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    match (method.clone(), path.strip_prefix(PATH)) {
        (Method::GET, Some("")) => match &state.action {
            Some(action) => (200, action.clone()),
            None => (404, status(404, "NotFound")),
        },
        (Method::PUT, Some("/status")) => {
            let Some(current) = state.action.clone() else {
                return (404, status(404, "NotFound"));
            };
            if version(&body) != version(&current) {
                return (409, status(409, "Conflict"));
            }
            let mut next = current;
            next["status"] = body["status"].clone();
            next["metadata"]["resourceVersion"] = json!((version(&next) + 1).to_string());
            state.action = Some(next.clone());
            (200, next)
        }
        (Method::PATCH, Some("")) => {
            let Some(mut next) = state.action.clone() else {
                return (404, status(404, "NotFound"));
            };
            for field in ["labels", "annotations"] {
                if let Some(map) = body["metadata"][field].as_object() {
                    for (k, v) in map {
                        next["metadata"][field][k] = v.clone();
                    }
                }
            }
            next["metadata"]["resourceVersion"] = json!((version(&next) + 1).to_string());
            state.action = Some(next.clone());
            (200, next)
        }
        _ => (404, status(404, "NotFound")),
    }
}

/// What the in-process gate answers to a review.
#[derive(Clone)]
struct Gate(pb::Decision);

#[tonic::async_trait]
impl SafetyGate for Gate {
    async fn review(
        &self,
        request: tonic::Request<ReviewRequest>,
    ) -> Result<tonic::Response<Verdict>, Status> {
        let request = request.into_inner();
        Ok(tonic::Response::new(Verdict {
            recommendation_id: request.recommendation.unwrap_or_default().id,
            decision: self.0 as i32,
            matched_rules: vec!["test-rule".into()],
            reasons: vec!["as the test says".into()],
            audit_id: "audit-1".into(),
            ..Verdict::default()
        }))
    }

    type ReviewStreamStream = tokio_stream::Empty<Result<Verdict, Status>>;

    async fn review_stream(
        &self,
        _: tonic::Request<Streaming<ReviewRequest>>,
    ) -> Result<tonic::Response<Self::ReviewStreamStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn record_outcome(
        &self,
        _: tonic::Request<OutcomeReport>,
    ) -> Result<tonic::Response<RecordOutcomeResponse>, Status> {
        Ok(tonic::Response::new(RecordOutcomeResponse::default()))
    }

    async fn review_rollback(
        &self,
        request: tonic::Request<RollbackReview>,
    ) -> Result<tonic::Response<Verdict>, Status> {
        Ok(tonic::Response::new(Verdict {
            recommendation_id: request.into_inner().recommendation_id,
            decision: self.0 as i32,
            reasons: vec!["as the test says".into()],
            ..Verdict::default()
        }))
    }
}

/// What the in-process remediator answers to an execution.
#[derive(Clone)]
struct Remedy(pb::Outcome);

#[tonic::async_trait]
impl Remediator for Remedy {
    async fn execute(
        &self,
        request: tonic::Request<ExecuteRequest>,
    ) -> Result<tonic::Response<ActionResult>, Status> {
        let request = request.into_inner();
        Ok(tonic::Response::new(ActionResult {
            action_id: request.action_id,
            outcome: if request.dry_run {
                pb::Outcome::DryRun
            } else {
                self.0
            } as i32,
            dry_run_diff: "- replicas: 1".into(),
            ..ActionResult::default()
        }))
    }

    async fn rollback(
        &self,
        request: tonic::Request<RollbackRequest>,
    ) -> Result<tonic::Response<ActionResult>, Status> {
        // Only under the gate's approved word, as the real one checks.
        let request = request.into_inner();
        if request.verdict.map(|v| v.decision) != Some(pb::Decision::Approved as i32) {
            return Err(Status::permission_denied("no approved rollback verdict"));
        }
        Ok(tonic::Response::new(ActionResult {
            action_id: request.action_id,
            outcome: pb::Outcome::RolledBack as i32,
            ..ActionResult::default()
        }))
    }
}

/// Serves the gate and the remediator on one local port.
async fn peers(gate: Gate, remedy: Remedy) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SafetyGateServer::new(gate))
            .add_service(RemediatorServer::new(remedy))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

fn policy(mode: &str) -> HealingPolicy {
    serde_json::from_value(json!({
        "apiVersion": "nanny.ai/v1alpha1", "kind": "HealingPolicy",
        "metadata": { "name": "default", "namespace": NS, "generation": 1 },
        "spec": { "mode": mode },
    }))
    .unwrap()
}

/// A RestartPod action on pod shop/web-1 in `phase` (none: just recorded).
fn action(phase: Option<&str>, status: Value) -> Value {
    let mut action = json!({
        "apiVersion": "nanny.ai/v1alpha1", "kind": "HealingAction",
        "metadata": { "name": NAME, "namespace": NS, "resourceVersion": "1",
                      "labels": { "nanny.ai/open": "true" } },
        "spec": {
            "policyRef": "shop/default",
            "target": { "kind": "Pod", "namespace": NS, "name": "web-1", "uid": "uid-web-1" },
            "action": { "type": "RestartPod" },
            "source": { "kind": "Rule", "name": "crash-loop-restart" },
            "confidence": 100, "reasoning": "crash-looping",
            "recommendationId": "rec-1", "snapshotId": "snap-1",
        },
    });
    if let Some(phase) = phase {
        let mut status = status;
        status["phase"] = json!(phase);
        action["status"] = status;
    }
    action
}

struct Fixture {
    driver: Arc<Driver>,
    api: Arc<Mutex<ApiState>>,
    _writers: (Writer<HealingPolicy>, Writer<HealingAction>),
}

impl Fixture {
    /// A leading driver over the fake API server, with `policy` in its store
    /// and a snapshot that holds the target.
    async fn new(action: Option<Value>, policy: Option<HealingPolicy>, faults: Faults) -> Self {
        Self::with(
            action,
            policy,
            faults,
            true,
            (Gate(pb::Decision::Approved), Remedy(pb::Outcome::Succeeded)),
        )
        .await
    }

    /// A leading driver whose gate decides `gate` and whose remediator
    /// ends executions as `remedy`.
    async fn answering(
        action: Value,
        policy: HealingPolicy,
        gate: pb::Decision,
        remedy: pb::Outcome,
    ) -> Self {
        Self::with(
            Some(action),
            Some(policy),
            vec![],
            true,
            (Gate(gate), Remedy(remedy)),
        )
        .await
    }

    async fn with(
        action: Option<Value>,
        policy: Option<HealingPolicy>,
        faults: Faults,
        leading: bool,
        (gate, remedy): (Gate, Remedy),
    ) -> Self {
        let (client, api) = fake_api(action.clone(), faults);
        let (policies, mut policy_writer) = reflector::store::<HealingPolicy>();
        let (actions, mut action_writer) = reflector::store::<HealingAction>();
        if let Some(p) = policy {
            policy_writer.apply_watcher_event(&watcher::Event::InitApply(p));
        }
        policy_writer.apply_watcher_event(&watcher::Event::InitDone);
        if let Some(a) = action {
            action_writer.apply_watcher_event(&watcher::Event::InitApply(
                serde_json::from_value(a).unwrap(),
            ));
        }
        action_writer.apply_watcher_event(&watcher::Event::InitDone);
        let addr = peers(gate, remedy).await;
        let channel = |key: &str| {
            nanny_common::client::channel(
                key,
                &format!("http://{addr}"),
                Duration::from_secs(5),
                None,
            )
            .unwrap()
        };
        let snapshots = Snapshots::default();
        snapshots.publish(
            "shop/default",
            Arc::new(pb::ClusterSnapshot {
                id: "snap-2".into(),
                pods: vec![pb::Pod {
                    r#ref: Some(pb::ObjectRef {
                        kind: "Pod".into(),
                        namespace: NS.into(),
                        name: "web-1".into(),
                        uid: "uid-web-1".into(),
                        ..pb::ObjectRef::default()
                    }),
                    ..pb::Pod::default()
                }],
                ..pb::ClusterSnapshot::default()
            }),
        );
        let config = ActionsConfig {
            retry_backoff_ms: 10,
            review_retry_secs: 1,
            snapshot_wait_secs: 1,
            ..crate::Config::default().actions
        };
        let ctx = shared::Context {
            client: client.clone(),
            peers: shared::Peers {
                collector: channel("peers.collector"),
                analyzer: channel("peers.analyzer"),
                analyzer_replicas: replicas(),
                gate: channel("peers.safety_gate"),
                remediator: channel("peers.remediator"),
            },
            policies,
            actions,
            snapshots,
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "test".into(),
                    instance: None,
                },
            ),
            config,
            leader: watch::channel(leading).1,
        };
        let driver = Driver::new(&ctx, &prometheus::Registry::new()).unwrap();
        Self {
            driver: Arc::new(driver),
            api,
            _writers: (policy_writer, action_writer),
        }
    }

    async fn drive(&self) -> Result<Next, crate::error::Error> {
        self.driver.drive(NS, NAME).await
    }

    async fn reconcile(&self) -> Result<Action, crate::error::Error> {
        let current = self.api.lock().unwrap().action.clone().unwrap();
        Driver::reconcile(
            Arc::new(serde_json::from_value(current).unwrap()),
            self.driver.clone(),
        )
        .await
    }

    /// The phases the status writes went through, in order.
    fn phases(&self) -> Vec<String> {
        self.writes()
            .iter()
            .filter(|(_, path, _)| path.ends_with("/status"))
            .map(|(_, _, body)| body["status"]["phase"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    /// Requests that change the action (status PUTs and PATCHes).
    fn writes(&self) -> Vec<Seen> {
        self.api
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|(m, path, _)| *m != Method::GET && path.starts_with(PATH))
            .cloned()
            .collect()
    }

    fn stored(&self) -> HealingAction {
        serde_json::from_value(self.api.lock().unwrap().action.clone().unwrap()).unwrap()
    }
}

#[tokio::test]
async fn approved_by_the_gate_it_is_executed_verified_and_closed() {
    let fx = Fixture::new(
        Some(action(None, Value::Null)),
        Some(policy("Auto")),
        vec![],
    )
    .await;
    assert_eq!(fx.drive().await.unwrap(), Next::Wait);
    assert_eq!(fx.phases(), ["Approved", "Executing", "Succeeded"]);
    let stored = fx.stored();
    assert_eq!(stored.phase(), Phase::Succeeded);
    assert_eq!(stored.labels()["nanny.ai/open"], "false", "closed");
    let status = stored.status.unwrap();
    assert_eq!(status.attempts, 1);
    assert_eq!(
        status.verdict.unwrap().decision,
        nanny_crd::Decision::Approved
    );
    assert_eq!(
        status.result.unwrap().outcome,
        nanny_crd::Outcome::Succeeded
    );
}

#[tokio::test]
async fn a_gate_that_wants_a_human_leaves_it_pending_with_an_expiry() {
    let fx = Fixture::answering(
        action(None, Value::Null),
        policy("Auto"),
        pb::Decision::NeedsApproval,
        pb::Outcome::Succeeded,
    )
    .await;
    assert_eq!(fx.drive().await.unwrap(), Next::Wait);
    assert_eq!(fx.phases(), ["PendingApproval"]);
    assert!(fx.stored().status.unwrap().expires_at.is_some());
}

#[tokio::test]
async fn a_denial_is_recorded_and_closed() {
    let fx = Fixture::answering(
        action(None, Value::Null),
        policy("Auto"),
        pb::Decision::Denied,
        pb::Outcome::Succeeded,
    )
    .await;
    assert_eq!(fx.drive().await.unwrap(), Next::Wait);
    assert_eq!(fx.phases(), ["Denied"]);
    assert_eq!(fx.stored().labels()["nanny.ai/open"], "false");
}

#[tokio::test]
async fn dry_run_and_monitor_modes_record_without_executing() {
    for (mode, diff) in [("DryRun", "- replicas: 1"), ("Monitor", "")] {
        let fx = Fixture::new(Some(action(None, Value::Null)), Some(policy(mode)), vec![]).await;
        assert_eq!(fx.drive().await.unwrap(), Next::Wait, "{mode}");
        assert_eq!(fx.phases(), ["Recorded"], "{mode}");
        let status = fx.stored().status.unwrap();
        assert_eq!(status.attempts, 0, "{mode}: nothing executed");
        assert_eq!(
            status.result.map(|r| r.dry_run_diff).unwrap_or_default(),
            diff,
            "{mode}"
        );
    }
}

#[tokio::test]
async fn an_action_whose_policy_is_gone_is_denied_without_asking_the_gate() {
    let fx = Fixture::new(Some(action(None, Value::Null)), None, vec![]).await;
    assert_eq!(fx.drive().await.unwrap(), Next::Wait);
    assert_eq!(fx.phases(), ["Denied"]);
    let verdict = fx.stored().status.unwrap().verdict.unwrap();
    assert_eq!(verdict.matched_rules, ["policy-missing"]);
}

#[tokio::test]
async fn an_unanswered_approval_expires_when_due_and_waits_before() {
    let later = json!({ "expiresAt": "2999-01-01T00:00:00Z" });
    let fx = Fixture::new(
        Some(action(Some("PendingApproval"), later)),
        Some(policy("Auto")),
        vec![],
    )
    .await;
    assert_eq!(fx.drive().await.unwrap(), Next::Wait);
    assert!(fx.writes().is_empty(), "nothing written before the expiry");

    let past = json!({ "expiresAt": "2020-01-01T00:00:00Z" });
    let fx = Fixture::new(
        Some(action(Some("PendingApproval"), past)),
        Some(policy("Auto")),
        vec![],
    )
    .await;
    assert_eq!(fx.drive().await.unwrap(), Next::Wait);
    assert_eq!(fx.phases(), ["Expired"]);
}

#[tokio::test]
async fn an_open_escalation_is_resolved_by_a_human() {
    let mut escalation = action(Some("Escalated"), json!({}));
    escalation["spec"]["action"]["type"] = json!("ReportOnly");
    escalation["spec"]["source"]["name"] = json!(crate::ladder::SOURCE);
    let fx = Fixture::new(Some(escalation.clone()), Some(policy("Auto")), vec![]).await;
    assert_eq!(fx.drive().await.unwrap(), Next::Wait);
    assert!(
        fx.phases().is_empty(),
        "open until a human or quiet resolves it"
    );

    escalation["metadata"]["annotations"] = json!({ "nanny.ai/resolve": "fixed the config" });
    let fx = Fixture::new(Some(escalation), Some(policy("Auto")), vec![]).await;
    assert_eq!(fx.drive().await.unwrap(), Next::Wait);
    assert_eq!(fx.phases(), ["Resolved"]);
}

#[tokio::test]
async fn a_blocked_action_waits_its_turn_without_writing() {
    let blocked = json!({ "retryAt": "2999-01-01T00:00:00Z", "blocked": 1, "attempts": 1 });
    let fx = Fixture::new(
        Some(action(Some("Executing"), blocked)),
        Some(policy("Auto")),
        vec![],
    )
    .await;
    let Next::After(wait) = fx.drive().await.unwrap() else {
        panic!("a blocked action waits for its retryAt");
    };
    assert!(wait > Duration::from_secs(3600), "{wait:?}");
    assert!(fx.writes().is_empty());
}

#[tokio::test]
async fn a_conflicting_write_is_an_error_the_watch_retries() {
    let fx = Fixture::new(
        Some(action(None, Value::Null)),
        Some(policy("Auto")),
        vec![(Method::PUT, "/status", 409)],
    )
    .await;
    let error = fx.drive().await.unwrap_err();
    assert!(matches!(error, crate::error::Error::Conflict(_)), "{error}");
    assert!(fx.stored().status.is_none(), "nothing was stored");
    let retry = Driver::error_policy(Arc::new(fx.stored()), &error, fx.driver.clone());
    assert_eq!(retry, Action::requeue(Duration::from_secs(5)));
}

#[tokio::test]
async fn a_forbidden_or_gone_write_fails_the_reconcile_and_changes_nothing() {
    for code in [403, 404] {
        let fx = Fixture::new(
            Some(action(None, Value::Null)),
            Some(policy("Auto")),
            vec![(Method::PUT, "/status", code)],
        )
        .await;
        let error = fx.reconcile().await.unwrap_err();
        assert!(
            matches!(&error, crate::error::Error::Kube(kube::Error::Api(s)) if s.code == code),
            "{code}: {error}"
        );
        assert!(fx.stored().status.is_none(), "{code}");
        let retry = Driver::error_policy(Arc::new(fx.stored()), &error, fx.driver.clone());
        assert_eq!(retry, Action::requeue(Duration::from_secs(5)), "{code}");
    }
}

#[tokio::test]
async fn a_deleted_action_is_left_alone() {
    let fx = Fixture::new(None, Some(policy("Auto")), vec![]).await;
    assert_eq!(fx.drive().await.unwrap(), Next::Wait);
    assert!(fx.writes().is_empty());
}

#[tokio::test]
async fn only_the_leader_drives_and_finished_actions_wait_for_a_change() {
    let fx = Fixture::with(
        Some(action(None, Value::Null)),
        Some(policy("Auto")),
        vec![],
        false,
        (Gate(pb::Decision::Approved), Remedy(pb::Outcome::Succeeded)),
    )
    .await;
    assert_eq!(fx.reconcile().await.unwrap(), Action::await_change());
    assert!(fx.writes().is_empty(), "a standby writes nothing");

    let mut done = action(Some("Succeeded"), json!({}));
    done["metadata"]["labels"]["nanny.ai/open"] = json!("false");
    let fx = Fixture::new(Some(done), Some(policy("Auto")), vec![]).await;
    assert_eq!(fx.reconcile().await.unwrap(), Action::await_change());
    assert!(fx.writes().is_empty());

    // A step that leaves nothing to do now asks to be looked at again at
    // the next sweep.
    let fx = Fixture::new(
        Some(action(None, Value::Null)),
        Some(policy("Auto")),
        vec![],
    )
    .await;
    assert_eq!(
        fx.reconcile().await.unwrap(),
        Action::requeue(Duration::from_secs(5))
    );
}

#[tokio::test]
async fn an_ineffective_restart_fails_and_is_closed_without_a_pre_image() {
    let fx = Fixture::answering(
        action(None, Value::Null),
        policy("Auto"),
        pb::Decision::Approved,
        pb::Outcome::Ineffective,
    )
    .await;
    assert_eq!(fx.drive().await.unwrap(), Next::Wait);
    assert_eq!(fx.phases(), ["Approved", "Executing", "Failed"]);
    let status = fx.stored().status.unwrap();
    assert_eq!(
        status.result.unwrap().outcome,
        nanny_crd::Outcome::Ineffective
    );
    assert!(status.rollback.is_none(), "nothing to roll back to");
}

/// A Failed action whose remedy did not help, with a pre-image, under a
/// policy that rolls back on failure.
fn failed_with_pre_image() -> Value {
    action(
        Some("Failed"),
        json!({
            "attempts": 1,
            "verdict": { "decision": "Approved", "auditId": "audit-1" },
            "result": { "outcome": "Ineffective", "preImageRef": "nanny-system/pre-1",
                        "verification": "still crash-looping" },
        }),
    )
}

fn rolling_back_policy() -> HealingPolicy {
    let mut policy = policy("Auto");
    policy.spec.rollback_on_failure = true;
    policy
}

#[tokio::test]
async fn a_failed_action_is_rolled_back_under_the_gates_word_and_closed() {
    let fx = Fixture::new(
        Some(failed_with_pre_image()),
        Some(rolling_back_policy()),
        vec![],
    )
    .await;
    assert_eq!(fx.drive().await.unwrap(), Next::Wait);
    assert_eq!(fx.phases(), ["RolledBack"]);
    let stored = fx.stored();
    assert_eq!(stored.labels()["nanny.ai/open"], "false", "closed");
    let rollback = stored.status.unwrap().rollback.unwrap();
    assert_eq!(rollback.outcome, nanny_crd::Outcome::RolledBack);
}

#[tokio::test]
async fn a_rollback_the_gate_refuses_is_recorded_and_the_phase_kept() {
    let fx = Fixture::answering(
        failed_with_pre_image(),
        rolling_back_policy(),
        pb::Decision::Denied,
        pb::Outcome::Succeeded,
    )
    .await;
    assert_eq!(fx.drive().await.unwrap(), Next::Wait);
    assert_eq!(fx.phases(), ["Failed"], "the phase stays Failed");
    let rollback = fx.stored().status.unwrap().rollback.unwrap();
    assert_eq!(rollback.outcome, nanny_crd::Outcome::Failed);
    assert!(
        rollback
            .error
            .contains("the safety gate refused the rollback"),
        "{rollback:?}"
    );
}

/// One analyzer replica nobody calls: steps never analyze.
fn replicas() -> nanny_common::client::Replicas {
    nanny_common::client::Replicas::new(
        "peers.analyzer",
        "http://127.0.0.1:1",
        &[],
        Duration::from_secs(1),
        None,
    )
    .unwrap()
}
