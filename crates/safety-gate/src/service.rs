//! The `nanny.v1.SafetyGate` gRPC service over [`Gate`].

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use nanny_proto::v1::{
    ActionType, Decision, Outcome, OutcomeReport, RecordOutcomeResponse, ReviewRequest,
    RollbackReview, Verdict, safety_gate_server::SafetyGate,
};
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::{sync::mpsc, time::Instant};
use tokio_stream::{StreamExt as _, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use nanny_common::audit::{Anchor, AuditLog};

use crate::{
    gate::{Gate, Level},
    limits::limit_target,
};

/// Serves reviews; every verdict is logged as an audit event and, when
/// configured, appended to the hash-chained audit log.
#[derive(Debug)]
pub struct SafetyGateService {
    gate: Arc<Gate>,
    verdicts: IntCounterVec,
    audit_seq: Arc<AtomicU64>,
    audit_log: Option<Arc<Mutex<AuditLog>>>,
    /// True while limits are restored at start-up: until then every RPC is
    /// UNAVAILABLE (callers treat that as DENIED) instead of being decided
    /// with empty limits.
    restoring: Arc<AtomicBool>,
    /// The verdicts an action may have run under, by audit id.
    issued: Arc<Mutex<Issued>>,
    /// Signs every APPROVED and DRY_RUN_ONLY verdict.
    signer: Arc<nanny_common::verdict::Signer>,
}

mod issued;

use issued::{Issued, IssuedVerdict, actionable};

/// The gate while its limits are being restored; see
/// [`SafetyGateService::start_restoring`].
#[derive(Debug)]
pub struct Restoring {
    gate: Arc<Gate>,
    flag: Arc<AtomicBool>,
}

impl Restoring {
    /// The gate to replay history into.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Limits are restored: the service starts answering.
    pub fn finish(self) {
        self.flag.store(false, Ordering::Release);
    }
}

impl SafetyGateService {
    /// Registers `nanny_safety_verdicts_total{decision,rule}` in `registry`.
    ///
    /// # Errors
    /// When the metric cannot be registered.
    pub fn new(
        gate: Gate,
        registry: &Registry,
        audit_log: Option<AuditLog>,
        signer: Arc<nanny_common::verdict::Signer>,
    ) -> Result<Self, prometheus::Error> {
        let verdicts = IntCounterVec::new(
            Opts::new(
                "nanny_safety_verdicts_total",
                "Verdicts by decision and the first rule that decided.",
            ),
            &["decision", "rule"],
        )?;
        registry.register(Box::new(verdicts.clone()))?;
        Ok(Self {
            gate: Arc::new(gate),
            verdicts,
            audit_seq: Arc::new(AtomicU64::new(0)),
            audit_log: audit_log.map(|log| Arc::new(Mutex::new(log))),
            restoring: Arc::new(AtomicBool::new(false)),
            issued: Arc::new(Mutex::new(Issued::default())),
            signer,
        })
    }

    /// Reads where the audit chain stands (last position and hash);
    /// `None` without an audit file, or when its lock is poisoned.
    pub fn audit_head(&self) -> impl Fn() -> Option<(u64, String)> + Send + 'static {
        let log = self.audit_log.clone();
        move || log.as_ref()?.lock().ok().map(|log| log.head())
    }

    /// Refuses every RPC with UNAVAILABLE until the returned handle's
    /// [`Restoring::finish`]: the gate must not decide with limits it has
    /// not restored yet.
    pub fn start_restoring(&self) -> Restoring {
        self.restoring.store(true, Ordering::Release);
        Restoring {
            gate: self.gate.clone(),
            flag: self.restoring.clone(),
        }
    }

    fn check_restored(&self) -> Result<(), Status> {
        if self.restoring.load(Ordering::Acquire) {
            return Err(Status::unavailable(
                "the gate is restoring its limits from the cluster",
            ));
        }
        Ok(())
    }

    /// Reviews one request and writes its audit record.
    #[expect(
        clippy::too_many_lines,
        reason = "reviews, signs, audits and counts one verdict: the audit record must hold exactly what is returned"
    )]
    pub fn verdict(&self, request: &ReviewRequest) -> Verdict {
        let now = SystemTime::now();
        let mut review = self.gate.review(request, now, Instant::now());
        let nanos = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let audit_id = format!(
            "{nanos:x}-{:x}",
            self.audit_seq.fetch_add(1, Ordering::Relaxed)
        );
        let recommendation = request.recommendation.as_ref();
        let target = recommendation.and_then(|r| r.target.as_ref());
        let anchor = match self.append_audit(request, &review, &audit_id, now) {
            Ok(anchor) => anchor,
            Err(error) => {
                // No decision without its audit record.
                tracing::error!(%error, audit_id, "Cannot write the audit record; denying.");
                review.level = Level::Denied;
                review.matched_rules.push("audit-unavailable");
                review
                    .reasons
                    .push("the audit log cannot be written".to_owned());
                None
            }
        };
        let decision = review.level.decision();
        if actionable(decision.as_str_name())
            && let (Some(recommendation), Some(target)) = (recommendation, target)
            && let Ok(mut issued) = self.issued.lock()
        {
            issued.insert(
                audit_id.clone(),
                IssuedVerdict {
                    recommendation_id: recommendation.id.clone(),
                    target_uid: target.uid.clone(),
                    action: recommendation
                        .action
                        .as_ref()
                        .and_then(|a| a.kind.as_ref())
                        .map_or("UNKNOWN", |k| crate::gate::action_type(k).as_str_name())
                        .to_owned(),
                    approved: decision == Decision::Approved,
                    reported: false,
                },
            );
        }
        tracing::info!(
            target: "audit",
            audit_id,
            recommendation_id = recommendation.map_or("", |r| r.id.as_str()),
            policy = %request.policy_ref,
            target_kind = target.map_or("", |t| t.kind.as_str()),
            target_namespace = target.map_or("", |t| t.namespace.as_str()),
            target_name = target.map_or("", |t| t.name.as_str()),
            target_uid = target.map_or("", |t| t.uid.as_str()),
            decision = decision.as_str_name(),
            rules = ?review.matched_rules,
            reasons = ?review.reasons,
            "Verdict."
        );
        // The deciding rule is the last one that raised the level; rule ids
        // are a fixed set, so the label stays low-cardinality.
        let rule = review.matched_rules.last().copied().unwrap_or("none");
        self.verdicts
            .with_label_values(&[decision.as_str_name(), rule])
            .inc();
        let mut verdict = Verdict {
            recommendation_id: recommendation.map(|r| r.id.clone()).unwrap_or_default(),
            decision: decision as i32,
            matched_rules: review
                .matched_rules
                .iter()
                .map(|r| (*r).to_owned())
                .collect(),
            reasons: review.reasons,
            policy_ref: request.policy_ref.clone(),
            audit_id,
            decided_at: Some(now.into()),
            retry_after_seconds: review
                .retry_after
                .filter(|_| decision == Decision::Denied)
                .map_or(0, |d| u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX)),
            audit_seq: anchor.as_ref().map_or(0, |a| a.seq),
            audit_hash: anchor.map(|a| a.hash).unwrap_or_default(),
            ..Verdict::default()
        };
        // Only what the remediator may act on is signed; it refuses the rest.
        if matches!(decision, Decision::Approved | Decision::DryRunOnly)
            && let Some(recommendation) = recommendation
        {
            verdict.allow_bare_pod_restart = request
                .policy
                .as_ref()
                .is_some_and(|p| p.allow_bare_pod_restart);
            verdict.human_approved = verdict.matched_rules.iter().any(|r| r == "human-approved");
            self.signer.sign(recommendation, &mut verdict, now);
        }
        verdict
    }
}

impl SafetyGateService {
    /// Decides a rollback: APPROVED and signed only for an action that ran
    /// under an APPROVED verdict this gate issued, for exactly that
    /// recommendation, target and action. A rollback restores what Nanny
    /// changed, so it is not rate-limited and a paused policy does not stop
    /// it; it is audited like any verdict.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` for a request without a target uid or action id,
    /// `UNAVAILABLE` when the audit log cannot be written.
    #[expect(
        clippy::too_many_lines,
        reason = "the checks, signature and audit of one rollback verdict, in the order they refuse"
    )]
    pub fn rollback_verdict(&self, review: &RollbackReview) -> Result<Verdict, Status> {
        let target = review
            .target
            .as_ref()
            .filter(|t| !t.uid.is_empty())
            .ok_or_else(|| Status::invalid_argument("rollback review needs a target with a uid"))?;
        if review.action_id.is_empty() {
            return Err(Status::invalid_argument(
                "rollback review needs an action_id",
            ));
        }
        let action = ActionType::try_from(review.action_type).unwrap_or(ActionType::Unspecified);
        let refusal = match self.issued_for(
            &review.audit_id,
            &review.recommendation_id,
            &target.uid,
            action.as_str_name(),
            (
                "rollback",
                "only actions this gate approved are rolled back",
            ),
        )? {
            Err(reason) => Some(reason),
            Ok(verdict) if !verdict.approved => Some(format!(
                "verdict {:?} did not approve an action",
                review.audit_id
            )),
            Ok(_) => None,
        };
        let now = SystemTime::now();
        let audit_id = format!(
            "rollback-{:x}-{:x}",
            now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
            self.audit_seq.fetch_add(1, Ordering::Relaxed)
        );
        let (decision, rule, reason) = match refusal {
            None => (
                Decision::Approved,
                "rollback-of-approved",
                review.reason.clone(),
            ),
            Some(reason) => (Decision::Denied, "rollback-unknown-action", reason),
        };
        let mut anchor = None;
        if let Some(log) = &self.audit_log {
            let entry = serde_json::json!({
                "kind": "rollback",
                "action_id": review.action_id,
                "verdict_audit_id": review.audit_id,
                "recommendation_id": review.recommendation_id,
                "policy": review.policy_ref,
                "target": { "kind": target.kind, "namespace": target.namespace, "name": target.name, "uid": target.uid },
                "action": action.as_str_name(),
                "decision": decision.as_str_name(),
                "rules": [rule],
                "reasons": [reason],
            });
            anchor = self.append(log, now, &audit_id, entry).map_err(|error| {
                tracing::error!(%error, "Cannot write the rollback to the audit log; denying.");
                Status::unavailable("the rollback verdict could not be recorded durably")
            })?;
        }
        tracing::info!(
            target: "audit",
            audit_id,
            action_id = %review.action_id,
            verdict_audit_id = %review.audit_id,
            target_uid = %target.uid,
            decision = decision.as_str_name(),
            rule,
            %reason,
            "Rollback verdict."
        );
        self.verdicts
            .with_label_values(&[decision.as_str_name(), rule])
            .inc();
        let mut verdict = Verdict {
            recommendation_id: review.recommendation_id.clone(),
            decision: decision as i32,
            matched_rules: vec![rule.to_owned()],
            reasons: vec![reason],
            policy_ref: review.policy_ref.clone(),
            audit_id,
            decided_at: Some(now.into()),
            audit_seq: anchor.as_ref().map_or(0, |a| a.seq),
            audit_hash: anchor.map(|a| a.hash).unwrap_or_default(),
            ..Verdict::default()
        };
        if decision == Decision::Approved {
            self.signer
                .sign_rollback(&review.action_id, target, &mut verdict, now);
        }
        Ok(verdict)
    }

    fn append_audit(
        &self,
        request: &ReviewRequest,
        review: &crate::gate::Review,
        audit_id: &str,
        now: SystemTime,
    ) -> Result<Option<Anchor>, nanny_common::audit::AuditError> {
        let Some(log) = &self.audit_log else {
            return Ok(None);
        };
        let recommendation = request.recommendation.as_ref();
        let target = recommendation.and_then(|r| r.target.as_ref());
        let action = recommendation
            .and_then(|r| r.action.as_ref())
            .and_then(|a| a.kind.as_ref())
            .map_or("UNKNOWN", |k| crate::gate::action_type(k).as_str_name());
        let entry = serde_json::json!({
            "kind": "verdict",
            "recommendation_id": recommendation.map_or("", |r| r.id.as_str()),
            "policy": request.policy_ref,
            "target": {
                "kind": target.map_or("", |t| t.kind.as_str()),
                "namespace": target.map_or("", |t| t.namespace.as_str()),
                "name": target.map_or("", |t| t.name.as_str()),
                "uid": target.map_or("", |t| t.uid.as_str()),
            },
            "limit_target": limit_target(
                request.context.as_ref().map_or("", |c| c.workload_uid.as_str()),
                target.map_or("", |t| t.uid.as_str()),
            ),
            "action": action,
            // What exactly was decided on, and under which policy version.
            "parameters": recommendation
                .and_then(|r| r.action.as_ref())
                .and_then(|a| a.kind.as_ref())
                .map(|k| format!("{k:?}")),
            "policy_generation": request.policy_generation,
            "approved_by": request.human_approval.as_ref().map(|h| h.by.as_str()),
            "content": target.map(|t| crate::gate::content_hash(t, recommendation.and_then(|r| r.action.as_ref()))),
            "decision": review.level.decision().as_str_name(),
            "rules": review.matched_rules,
            "reasons": review.reasons,
        });
        self.append(log, now, audit_id, entry)
    }

    fn append(
        &self,
        log: &Mutex<AuditLog>,
        now: SystemTime,
        audit_id: &str,
        entry: serde_json::Value,
    ) -> Result<Option<Anchor>, nanny_common::audit::AuditError> {
        let time = prost_types::Timestamp::from(now).to_string();
        // A poisoned lock means a writer panicked mid-append: fail closed.
        let mut log = log
            .lock()
            .map_err(|_| nanny_common::audit::AuditError::Io {
                path: std::path::PathBuf::from(&self.gate.config().audit.path),
                source: std::io::Error::other("audit log lock poisoned"),
            })?;
        log.append(time, audit_id.to_owned(), entry).map(Some)
    }
}

#[tonic::async_trait]
impl SafetyGate for SafetyGateService {
    type ReviewStreamStream = ReceiverStream<Result<Verdict, Status>>;

    #[tracing::instrument(skip_all)]
    async fn review(&self, request: Request<ReviewRequest>) -> Result<Response<Verdict>, Status> {
        self.check_restored()?;
        Ok(Response::new(self.verdict(&request.into_inner())))
    }

    #[tracing::instrument(skip_all)]
    async fn review_stream(
        &self,
        request: Request<Streaming<ReviewRequest>>,
    ) -> Result<Response<Self::ReviewStreamStream>, Status> {
        // Restoring happens once, at start-up: a stream opened after it is
        // never decided with unrestored limits.
        self.check_restored()?;
        let mut requests = request.into_inner();
        // Small buffer: a slow reader slows the reviews, it never piles them up.
        let (tx, rx) = mpsc::channel(16);
        let service = Self {
            gate: self.gate.clone(),
            verdicts: self.verdicts.clone(),
            audit_seq: self.audit_seq.clone(),
            audit_log: self.audit_log.clone(),
            restoring: self.restoring.clone(),
            issued: self.issued.clone(),
            signer: self.signer.clone(),
        };
        tokio::spawn(async move {
            while let Some(next) = requests.next().await {
                let message = match next {
                    Ok(request) => Ok(service.verdict(&request)),
                    // A broken client stream ends the reviews.
                    Err(status) => Err(status),
                };
                let stop = message.is_err();
                // A failed send means the client left: stop reviewing.
                if tx.send(message).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    #[tracing::instrument(skip_all)]
    async fn record_outcome(
        &self,
        request: Request<OutcomeReport>,
    ) -> Result<Response<RecordOutcomeResponse>, Status> {
        // Recorded now and replayed from the cluster later, an outcome
        // would count twice against the breaker: the caller retries.
        self.check_restored()?;
        let report = request.into_inner();
        let target = report.target.as_ref().filter(|t| !t.uid.is_empty());
        let Some(target) = target else {
            return Err(Status::invalid_argument(
                "outcome report needs a target with a uid",
            ));
        };
        let action = ActionType::try_from(report.action_type)
            .ok()
            .filter(|a| *a != ActionType::Unspecified)
            .ok_or_else(|| Status::invalid_argument("outcome report has an unknown action type"))?;
        if !self.check_issued(&report, &target.uid, action.as_str_name())? {
            tracing::info!(audit_id = %report.audit_id, "Outcome already recorded; not counted again.");
            return Ok(Response::new(RecordOutcomeResponse {}));
        }
        let succeeded = match Outcome::try_from(report.outcome) {
            Ok(Outcome::Succeeded) => true,
            Ok(Outcome::Failed | Outcome::Ineffective | Outcome::RolledBack) => false,
            // Nothing was executed: nothing for the breaker to learn.
            Ok(Outcome::DryRun | Outcome::Refused | Outcome::Blocked) => {
                return Ok(Response::new(RecordOutcomeResponse {}));
            }
            Ok(Outcome::Unspecified) | Err(_) => {
                return Err(Status::invalid_argument(
                    "outcome report has an unknown outcome",
                ));
            }
        };
        self.gate.record_outcome(&report, succeeded, Instant::now());
        if let Some(log) = &self.audit_log {
            // Outcomes are audited too, so breakers survive a restart.
            let entry = serde_json::json!({
                "kind": "outcome",
                "verdict_audit_id": report.audit_id,
                "recommendation_id": report.recommendation_id,
                "policy": report.policy_ref,
                "target": { "kind": target.kind, "namespace": target.namespace, "name": target.name, "uid": target.uid },
                "limit_target": limit_target(&report.workload_uid, &target.uid),
                "action": action.as_str_name(),
                "succeeded": succeeded,
                "limits": report.limits.map(|l| serde_json::json!({
                    "breaker_failure_threshold": l.breaker_failure_threshold,
                    "breaker_open_seconds": l.breaker_open_seconds,
                })),
            });
            let audit_id = format!("outcome-{}", self.audit_seq.fetch_add(1, Ordering::Relaxed));
            if let Err(error) = self.append(log, SystemTime::now(), &audit_id, entry) {
                tracing::error!(%error, "Cannot write the outcome to the audit log.");
                return Err(Status::unavailable(
                    "the outcome could not be recorded durably",
                ));
            }
        }
        self.mark_reported(&report.audit_id);
        Ok(Response::new(RecordOutcomeResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn review_rollback(
        &self,
        request: Request<RollbackReview>,
    ) -> Result<Response<Verdict>, Status> {
        self.check_restored()?;
        self.rollback_verdict(&request.into_inner())
            .map(Response::new)
    }
}
