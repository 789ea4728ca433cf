//! The verdicts this gate issued that an action may run under: outcomes
//! and rollback reviews are accepted only for one of them.

use std::collections::{HashMap, VecDeque};

use nanny_proto::v1::{Decision, OutcomeReport};
use tonic::Status;

use super::SafetyGateService;

/// Verdicts this gate issued that an action may run under (APPROVED or
/// NEEDS_APPROVAL), by audit id: an outcome is accepted only for one of
/// them, for its recommendation, target and action, and counted once.
#[derive(Debug, Default)]
pub(super) struct Issued {
    by_id: HashMap<String, IssuedVerdict>,
    /// Oldest first, to bound memory.
    order: VecDeque<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct IssuedVerdict {
    pub(super) recommendation_id: String,
    pub(super) target_uid: String,
    pub(super) action: String,
    /// APPROVED (an action may have written), not NEEDS_APPROVAL.
    pub(super) approved: bool,
    pub(super) reported: bool,
}

/// How many issued verdicts are remembered: far more than the actions a
/// verdict's lifetime can see, at a few hundred bytes each.
const ISSUED_CAPACITY: usize = 100_000;

impl Issued {
    pub(super) fn insert(&mut self, audit_id: String, verdict: IssuedVerdict) {
        if self.by_id.insert(audit_id.clone(), verdict).is_none() {
            self.order.push_back(audit_id);
        }
        while self.order.len() > ISSUED_CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.by_id.remove(&oldest);
            }
        }
    }
}

/// Whether a decision lets an action run (at once, or after a human).
pub(super) fn actionable(decision: &str) -> bool {
    decision == Decision::Approved.as_str_name()
        || decision == Decision::NeedsApproval.as_str_name()
}

impl SafetyGateService {
    /// Remembers the actionable verdicts, and which of them already had an
    /// outcome, from the audit log this gate reopened.
    pub fn remember_issued(&self, records: &[nanny_common::audit::AuditRecord]) {
        let Ok(mut issued) = self.issued.lock() else {
            return;
        };
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        for record in records {
            let entry = &record.entry;
            match entry["kind"].as_str() {
                Some("verdict") if actionable(entry["decision"].as_str().unwrap_or_default()) => {
                    issued.insert(
                        record.audit_id.clone(),
                        IssuedVerdict {
                            recommendation_id: text(&entry["recommendation_id"]),
                            target_uid: text(&entry["target"]["uid"]),
                            action: text(&entry["action"]),
                            approved: entry["decision"] == Decision::Approved.as_str_name(),
                            reported: false,
                        },
                    );
                }
                Some("outcome") => {
                    if let Some(verdict) = entry["verdict_audit_id"]
                        .as_str()
                        .and_then(|id| issued.by_id.get_mut(id))
                    {
                        verdict.reported = true;
                    }
                }
                _ => {}
            }
        }
    }

    /// The verdict this gate issued under `audit_id` for exactly this
    /// recommendation, target and action; `Ok(Err(reason))` when there is
    /// none (`what` names the caller's request in the reason, `only` says
    /// what is accepted).
    pub(super) fn issued_for(
        &self,
        audit_id: &str,
        recommendation_id: &str,
        target_uid: &str,
        action: &str,
        (what, only): (&str, &str),
    ) -> Result<Result<IssuedVerdict, String>, Status> {
        let issued = self
            .issued
            .lock()
            .map_err(|_| Status::unavailable("the gate's verdict index is unavailable"))?;
        let Some(verdict) = issued.by_id.get(audit_id) else {
            return Ok(Err(format!(
                "no verdict with audit id {audit_id:?} let an action run: {only}"
            )));
        };
        if verdict.recommendation_id != recommendation_id
            || verdict.target_uid != target_uid
            || verdict.action != action
        {
            return Ok(Err(format!(
                "the {what} does not match verdict {audit_id:?}: its recommendation, target or action differ"
            )));
        }
        Ok(Ok(verdict.clone()))
    }

    /// Checks that `report` is about a verdict this gate issued for exactly
    /// that recommendation, target and action; `Ok(false)` when its outcome
    /// was already recorded (a retry: accepted, not counted again).
    pub(super) fn check_issued(
        &self,
        report: &OutcomeReport,
        target_uid: &str,
        action: &str,
    ) -> Result<bool, Status> {
        let verdict = self
            .issued_for(
                &report.audit_id,
                &report.recommendation_id,
                target_uid,
                action,
                (
                    "outcome",
                    "outcomes are accepted only for verdicts this gate issued",
                ),
            )?
            .map_err(Status::permission_denied)?;
        Ok(!verdict.reported)
    }

    pub(super) fn mark_reported(&self, audit_id: &str) {
        if let Ok(mut issued) = self.issued.lock()
            && let Some(verdict) = issued.by_id.get_mut(audit_id)
        {
            verdict.reported = true;
        }
    }
}
