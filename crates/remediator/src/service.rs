//! The `nanny.v1.Remediator` gRPC service: Execute and Rollback.

mod rollback;

use std::time::{Duration, SystemTime};

use nanny_proto::v1::{
    ActionResult, ExecuteRequest, Outcome, RollbackRequest, Verification, VerificationState,
    remediator_server::Remediator,
};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::{
    actions::{self, Executor, Plan},
    config::Config,
    diff,
    error::{Error, api_code},
    request::{self, Validated, action_label, describe},
    store::{Phase, Record, Store, Stored, TargetRecord},
    undo,
    verify::{self},
};

/// How often a write that lost an optimistic-concurrency race (the target
/// changed between read and write) is re-planned from a fresh read.
const CONFLICT_RETRIES: usize = 5;

/// Executes and rolls back actions.
#[derive(Debug, Clone)]
pub struct RemediatorService {
    exec: Executor,
    store: Store,
    config: Config,
    /// Identifies this process in the records it claims.
    instance: String,
    actions: IntCounterVec,
    duration: HistogramVec,
    /// The safety gate's public keys: no signature, no action.
    verifier: nanny_common::verdict::Verifier,
}

impl RemediatorService {
    /// Registers `nanny_healing_actions_total{action_type,namespace,status}`
    /// and `nanny_healing_action_duration_seconds{action_type,status}`.
    ///
    /// # Errors
    /// When a metric cannot be registered.
    pub fn new(
        client: kube::Client,
        config: Config,
        registry: &Registry,
        verifier: nanny_common::verdict::Verifier,
        mac_key: &[u8],
    ) -> Result<Self, prometheus::Error> {
        let actions = IntCounterVec::new(
            Opts::new(
                "nanny_healing_actions_total",
                "Execute and Rollback requests answered, by action type, target namespace and outcome.",
            ),
            &["action_type", "namespace", "status"],
        )?;
        registry.register(Box::new(actions.clone()))?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "nanny_healing_action_duration_seconds",
                "Time from request to result, verification included.",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
            ]),
            &["action_type", "status"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self {
            instance: instance_id(),
            exec: Executor::new(client.clone(), &config.field_manager),
            store: Store::new(client, &config.state_namespace, mac_key),
            config,
            actions,
            duration,
            verifier,
        })
    }

    fn record_metrics(
        &self,
        action: &str,
        namespace: &str,
        status: &str,
        started: std::time::Instant,
    ) {
        self.actions
            .with_label_values(&[action, namespace, status])
            .inc();
        self.duration
            .with_label_values(&[action, status])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Executes one request; refusals come back as REFUSED results.
    ///
    /// # Errors
    /// Malformed requests, conflicts and outages (see [`Error`]).
    pub async fn execute_request(&self, request: &ExecuteRequest) -> Result<ActionResult, Error> {
        let started = SystemTime::now();
        let refused = |error: Error| ActionResult {
            action_id: request.action_id.clone(),
            outcome: Outcome::Refused as i32,
            error: nanny_common::redact::text(&error.to_string()).into_owned(),
            started_at: Some(started.into()),
            finished_at: Some(SystemTime::now().into()),
            ..ActionResult::default()
        };
        match self.execute_validated(request, started).await {
            Ok(result) => Ok(result),
            Err(error @ Error::Blocked { .. }) => {
                tracing::info!(%error, action_id = %request.action_id, "Action blocked by a PodDisruptionBudget; nothing was written.");
                Ok(ActionResult {
                    outcome: Outcome::Blocked as i32,
                    ..refused(error)
                })
            }
            Err(error) if error.is_refusal() => {
                tracing::warn!(%error, action_id = %request.action_id, "Action refused.");
                Ok(refused(error))
            }
            Err(error) => Err(error),
        }
    }

    async fn execute_validated(
        &self,
        request: &ExecuteRequest,
        started: SystemTime,
    ) -> Result<ActionResult, Error> {
        // The gate's signature first: nothing else of a request is trusted
        // before it, not even for a replayed action id.
        request::check_signature(request, &self.verifier, SystemTime::now())?;
        let v = request::validate(request, &self.config)?;
        let fingerprint = fingerprint(request);
        if !v.dry_run
            && let Some(stored) = self.store.get(&v.action_id).await?
        {
            if self.interrupted(&stored) && stored.record.fingerprint == fingerprint {
                return self.resume_interrupted(&v, &fingerprint, stored).await;
            }
            return replay(&v, &fingerprint, stored);
        }
        // The server-side dry run first, always: RBAC, admission and schema
        // refuse here, before anything is written or claimed.
        let (current, plan, preview) = self.prepare(&v).await?;
        let result = |outcome: Outcome, diff: String, error: String| {
            finished(&v.action_id, started, outcome, diff, error)
        };
        // (A budget that refuses an eviction already ended the dry run
        // with Error::Blocked: nothing is claimed, and a retry may act.)
        if v.dry_run {
            return Ok(result(Outcome::DryRun, preview.diff, String::new()));
        }

        let mut claim = record(&v, &fingerprint, &current, &plan, None);
        claim.instance.clone_from(&self.instance);
        let stored = self.store.claim(&v.action_id, &claim).await?;
        self.act(&v, &fingerprint, stored, current, plan, started)
            .await
    }

    /// Whether a record is a run another process claimed and never finished.
    fn interrupted(&self, stored: &Stored) -> bool {
        let age = crate::unix_now().saturating_sub(stored.record.claimed_at);
        stored.record.phase == Phase::Executing
            && stored.record.instance != self.instance
            && u64::try_from(age).unwrap_or(0) >= self.config.verification.stale_claim_secs
    }

    /// Finishes a run a dead remediator left claimed. Whether its write
    /// happened is read from the target: unchanged since the snapshot means
    /// it did not (act now); changed or gone means it did (verify it, never
    /// act again).
    async fn resume_interrupted(
        &self,
        v: &Validated,
        fingerprint: &str,
        mut stored: Stored,
    ) -> Result<ActionResult, Error> {
        let started = SystemTime::now();
        tracing::warn!(action_id = %v.action_id, previous = %stored.record.instance, "Resuming an execution a previous remediator left unfinished.");
        match self.prepare(v).await {
            Ok((current, plan, _)) => {
                // Take the claim over; a concurrent taker makes this fail.
                stored.record = record(v, fingerprint, &current, &plan, None);
                stored.record.instance.clone_from(&self.instance);
                self.store.update(&v.action_id, &mut stored).await?;
                self.act(v, fingerprint, stored, current, plan, started)
                    .await
            }
            // The budget still refuses: the pod is there, so the run it
            // interrupted evicted nothing.
            Err(error @ Error::Blocked { .. }) => {
                self.release(v).await;
                Err(error)
            }
            Err(error) if error.is_refusal() => {
                stored.record.instance.clone_from(&self.instance);
                let claimed = SystemTime::UNIX_EPOCH
                    + Duration::from_secs(u64::try_from(stored.record.claimed_at).unwrap_or(0));
                let result = self
                    .verify_applied(v, &stored, claimed, started, None)
                    .await;
                self.finish(v, stored, result).await
            }
            Err(error) => Err(error),
        }
    }

    /// Applies a claimed plan, verifies it and stores the result.
    async fn act(
        &self,
        v: &Validated,
        fingerprint: &str,
        mut stored: Stored,
        mut current: serde_json::Value,
        mut plan: Plan,
        started: SystemTime,
    ) -> Result<ActionResult, Error> {
        let v = v.clone();
        let result = |outcome: Outcome, diff: String, error: String| {
            finished(&v.action_id, started, outcome, diff, error)
        };
        let mut attempt = 0;
        let applied = loop {
            match self.exec.apply(&v, &current, &plan, false).await {
                Err(Error::Kube { source, .. })
                    if api_code(&source) == Some(409) && attempt < CONFLICT_RETRIES =>
                {
                    attempt += 1;
                    tracing::debug!(action_id = %v.action_id, attempt, "Target changed between read and write; re-reading.");
                    match self.prepare(&v).await {
                        Ok((reread, replanned, _)) => (current, plan) = (reread, replanned),
                        Err(error) => {
                            self.release(&v).await;
                            return Err(error);
                        }
                    }
                }
                Err(error) => {
                    // Every action's only write failed: nothing changed.
                    self.release(&v).await;
                    return Err(error);
                }
                Ok(applied) => break applied,
            }
        };
        let instance = std::mem::take(&mut stored.record.instance);
        stored.record = record(&v, fingerprint, &current, &plan, applied.after.as_ref());
        stored.record.instance = instance;
        tracing::info!(action_id = %v.action_id, target = %describe(&v.target), action = %action_label(v.action_type), "Action applied.");

        let outcome_result = if let Some(reason) = applied.failed {
            result(Outcome::Failed, String::new(), reason)
        } else {
            let evicted: Option<Vec<String>> = match &plan.write {
                actions::Write::Drain { evict: pods, .. }
                | actions::Write::DeletePods { pods, .. } => {
                    Some(pods.iter().map(|(_, _, uid)| uid.clone()).collect())
                }
                _ => None,
            };
            self.verify_applied(&v, &stored, started, started, evicted.as_deref())
                .await
        };
        self.finish(&v, stored, outcome_result).await
    }

    /// Watches an applied action's target until the verification decides.
    async fn verify_applied(
        &self,
        v: &Validated,
        stored: &Stored,
        applied_at: SystemTime,
        started: SystemTime,
        evicted: Option<&[String]>,
    ) -> ActionResult {
        let owner_uid = stored.record.summary.owner.as_ref().map(|o| o.uid.clone());
        let exec = self.exec.clone();
        let stable = Duration::from_secs(self.config.verification.stable_secs)
            .min(v.verification_window / 2);
        let (state, message) = verify::watch(
            v.verification_window,
            Duration::from_millis(self.config.verification.poll_interval_ms),
            || verify::check(&exec, v, owner_uid.as_deref(), applied_at, stable, evicted),
        )
        .await;
        let outcome = match state {
            VerificationState::Passed => Outcome::Succeeded,
            VerificationState::Failed => Outcome::Failed,
            _ => Outcome::Ineffective,
        };
        ActionResult {
            verification: Some(Verification {
                state: state as i32,
                message,
            }),
            ..finished(&v.action_id, started, outcome, String::new(), String::new())
        }
    }

    /// Stores the final result; replays answer with it from now on.
    async fn finish(
        &self,
        v: &Validated,
        mut stored: Stored,
        mut outcome_result: ActionResult,
    ) -> Result<ActionResult, Error> {
        outcome_result.pre_image_ref = self.store.reference(&v.action_id);
        stored.record.phase = Phase::Done;
        stored.result = Some(outcome_result.clone());
        self.store.update(&v.action_id, &mut stored).await?;
        Ok(outcome_result)
    }

    /// Reads the target under its preconditions, plans the action and
    /// dry-runs it; a write race (409, e.g. a node's heartbeat landing between
    /// read and write) re-reads and re-checks.
    async fn prepare(
        &self,
        v: &Validated,
    ) -> Result<(serde_json::Value, Plan, actions::Applied), Error> {
        let mut attempt = 0;
        loop {
            let current = self.exec.fetch_target(v).await?;
            let plan = self.plan(v, &current).await?;
            match self.exec.apply(v, &current, &plan, true).await {
                Err(Error::Kube { source, .. })
                    if api_code(&source) == Some(409) && attempt < CONFLICT_RETRIES =>
                {
                    attempt += 1;
                }
                Err(error) => return Err(error),
                Ok(preview) => return Ok((current, plan, preview)),
            }
        }
    }

    async fn plan(&self, v: &Validated, current: &serde_json::Value) -> Result<Plan, Error> {
        let mut facts = self.exec.facts(v, current).await?;
        // Defence in depth: protection is checked again on the live object
        // and its owners, whatever the signed verdict says.
        if let Some(reason) =
            actions::protection_refusal(&self.config.protected, v, current, &facts)
        {
            return Err(Error::NotApproved(format!("protected: {reason}")));
        }
        // A drain leaves protected pods in place: the pod, its namespace or
        // an owner (a Helm-labelled Deployment) protects it.
        for pod in &facts.pods_on_node {
            if actions::drain_skip_reason(pod).is_some() {
                continue;
            }
            let mut pod = pod.clone();
            pod["kind"] = serde_json::json!("Pod");
            let owners = self.exec.owners(&pod).await?;
            let chain: Vec<&serde_json::Value> = std::iter::once(&pod).chain(&owners).collect();
            if let Some(reason) = self.config.protected.refusal(&chain) {
                let uid = diff::str_at(&pod, "/metadata/uid").to_owned();
                facts.protected_pods.insert(uid, reason);
            }
        }
        // DeleteFailedPods leaves a failed pod that is protected itself (its
        // labels or namespace); its owners are the target's, checked above.
        let protected = &self.config.protected;
        facts.failed_pods.retain(|pod| {
            let mut pod = pod.clone();
            pod["kind"] = serde_json::json!("Pod");
            protected.refusal(&[&pod]).is_none()
        });
        actions::plan(v, current, &facts)
    }

    async fn release(&self, v: &Validated) {
        if let Err(error) = self.store.release(&v.action_id).await {
            tracing::error!(%error, action_id = %v.action_id, "Cannot release the claim of an action that wrote nothing; retries will report it in progress.");
        }
    }
}

fn fingerprint(request: &ExecuteRequest) -> String {
    let recommendation = request.recommendation.as_ref();
    let mut hash = Sha256::new();
    hash.update(recommendation.map(|r| r.id.as_bytes()).unwrap_or_default());
    hash.update([0]);
    hash.update(
        recommendation
            .and_then(|r| r.action.as_ref())
            .map(|a| a.encode_to_vec())
            .unwrap_or_default(),
    );
    hash.update([0]);
    hash.update(
        recommendation
            .and_then(|r| r.target.as_ref())
            .map(|t| t.uid.as_bytes())
            .unwrap_or_default(),
    );
    format!("{:x}", hash.finalize())
}

/// The answer to an Execute whose action id has a record already.
fn replay(v: &Validated, fingerprint: &str, stored: Stored) -> Result<ActionResult, Error> {
    if stored.record.fingerprint != fingerprint {
        return Err(Error::IdempotencyConflict {
            action_id: v.action_id.clone(),
        });
    }
    match (stored.record.phase, stored.result) {
        (Phase::Done | Phase::RolledBack, Some(result)) => {
            tracing::info!(action_id = %v.action_id, "Replayed Execute answered from the record; nothing done again.");
            Ok(result)
        }
        _ => Err(Error::InProgress {
            action_id: v.action_id.clone(),
        }),
    }
}

/// The record of `v`'s action on `current`: the changed fields' values
/// before, and after as `after` (the API server's answer to the write; none
/// before the write), never the object.
fn record(
    v: &Validated,
    fingerprint: &str,
    current: &serde_json::Value,
    plan: &Plan,
    after: Option<&serde_json::Value>,
) -> Record {
    Record {
        fingerprint: fingerprint.to_owned(),
        recommendation_id: v.recommendation_id.clone(),
        action_type: v.action_type.as_str_name().to_owned(),
        target: TargetRecord {
            kind: v.target.kind.clone(),
            namespace: v.target.namespace.clone(),
            name: v.target.name.clone(),
            uid: v.target.uid.clone(),
        },
        summary: actions::summary(current),
        container: plan.container.clone(),
        changes: undo::changes(
            &plan.fields,
            current,
            after.unwrap_or(&serde_json::Value::Null),
        ),
        not_reversible: plan.not_reversible.map(str::to_owned),
        phase: Phase::Executing,
        instance: String::new(),
        claimed_at: crate::unix_now(),
    }
}

/// The result of a run that started at `started` and ends now (no record
/// reference or verification yet: the callers add those).
fn finished(
    action_id: &str,
    started: SystemTime,
    outcome: Outcome,
    dry_run_diff: String,
    error: String,
) -> ActionResult {
    ActionResult {
        action_id: action_id.to_owned(),
        outcome: outcome as i32,
        dry_run_diff,
        error,
        started_at: Some(started.into()),
        finished_at: Some(SystemTime::now().into()),
        ..ActionResult::default()
    }
}

/// A process-unique id for the records this remediator claims.
fn instance_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos:x}", std::process::id())
}

fn status_label(result: &Result<ActionResult, Error>) -> &'static str {
    match result {
        Ok(r) => match Outcome::try_from(r.outcome) {
            Ok(Outcome::Succeeded) => "succeeded",
            Ok(Outcome::DryRun) => "dry_run",
            Ok(Outcome::Ineffective) => "ineffective",
            Ok(Outcome::Failed) => "failed",
            Ok(Outcome::Refused) => "refused",
            Ok(Outcome::RolledBack) => "rolled_back",
            Ok(Outcome::Blocked) => "blocked",
            _ => "unknown",
        },
        Err(_) => "error",
    }
}

#[tonic::async_trait]
impl Remediator for RemediatorService {
    #[tracing::instrument(skip_all, fields(action_id = %request.get_ref().action_id))]
    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<ActionResult>, Status> {
        let started = std::time::Instant::now();
        let request = request.into_inner();
        // The work runs in its own task: a caller that disconnects (or dies)
        // mid-verification must not cancel it halfway — the record would
        // stay claimed and every retry would be told "already executing".
        // The finished result is stored, and the retry is answered from it.
        let service = self.clone();
        let work = request.clone();
        let span = tracing::Span::current();
        let result =
            tokio::spawn(async move { service.execute_request(&work).await }.instrument(span))
                .await
                .unwrap_or_else(|error| {
                    Err(Error::Store {
                        action_id: request.action_id.clone(),
                        message: format!("the execution task failed: {error}"),
                    })
                });
        let recommendation = request.recommendation.as_ref();
        let action = recommendation
            .and_then(|r| r.action.as_ref())
            .and_then(|a| a.kind.as_ref())
            .map_or_else(
                || "unknown".to_owned(),
                |k| action_label(request::action_type(k)).to_owned(),
            );
        let namespace = recommendation
            .and_then(|r| r.target.as_ref())
            .map_or("", |t| t.namespace.as_str());
        self.record_metrics(&action, namespace, status_label(&result), started);
        if let Err(error) = &result {
            tracing::warn!(%error, "Execute failed.");
        }
        result.map(Response::new).map_err(Status::from)
    }

    #[tracing::instrument(skip_all, fields(action_id = %request.get_ref().action_id))]
    async fn rollback(
        &self,
        request: Request<RollbackRequest>,
    ) -> Result<Response<ActionResult>, Status> {
        let started = std::time::Instant::now();
        let request = request.into_inner();
        let result = match self.rollback_request(&request).await {
            Err(error) if error.is_refusal() => Ok(ActionResult {
                action_id: request.action_id.clone(),
                outcome: Outcome::Refused as i32,
                error: error.to_string(),
                ..ActionResult::default()
            }),
            other => other,
        };
        let namespace = request.target.as_ref().map_or("", |t| t.namespace.as_str());
        self.record_metrics("rollback", namespace, status_label(&result), started);
        if let Err(error) = &result {
            tracing::warn!(%error, "Rollback failed.");
        }
        result.map(Response::new).map_err(Status::from)
    }
}
