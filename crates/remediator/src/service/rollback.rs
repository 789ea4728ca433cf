//! Rollback: an executed action undone from its record, under the gate's
//! signed word, never over a later change.

use std::time::{Duration, SystemTime};

use kube::api::{Patch, PatchParams};
use nanny_proto::v1::{ActionResult, Outcome, RollbackRequest, Verification, VerificationState};

use super::{CONFLICT_RETRIES, RemediatorService};
use crate::{
    actions::{refusal_or_error, to_value},
    diff,
    diff::str_at,
    error::{Error, api_code},
    request::{self, TargetKind},
    store::Phase,
    undo,
    verify::{self, Check},
};

impl RemediatorService {
    /// Rolls back an executed action from its record.
    ///
    /// # Errors
    /// [`Error::UnknownAction`], [`Error::NotReversible`], outages.
    #[expect(
        clippy::too_many_lines,
        reason = "signature, record MAC, live state, then restore: one sequence that refuses before any write"
    )]
    pub async fn rollback_request(&self, request: &RollbackRequest) -> Result<ActionResult, Error> {
        let started = SystemTime::now();
        request::validate_action_id(&request.action_id)?;
        request::check_rollback_signature(request, &self.verifier, started)?;
        let unknown = || Error::UnknownAction {
            action_id: request.action_id.clone(),
        };
        let mut stored = self
            .store
            .get(&request.action_id)
            .await?
            .ok_or_else(unknown)?;
        if let Some(done) = &stored.rollback {
            // Rolled back before: answer the same again.
            return Ok(done.clone());
        }
        if stored.record.phase != Phase::Done {
            return Err(Error::InProgress {
                action_id: request.action_id.clone(),
            });
        }
        let record = stored.record.clone();
        // The signature covers the request's target and the verdict its
        // recommendation: both must be what this record acted on.
        let signed = request.target.clone().unwrap_or_default();
        let signed_for = request
            .verdict
            .as_ref()
            .map(|v| v.recommendation_id.as_str())
            .unwrap_or_default();
        if (
            signed.kind.as_str(),
            signed.namespace.as_str(),
            signed.name.as_str(),
            signed.uid.as_str(),
            signed_for,
        ) != (
            record.target.kind.as_str(),
            record.target.namespace.as_str(),
            record.target.name.as_str(),
            record.target.uid.as_str(),
            record.recommendation_id.as_str(),
        ) {
            return Err(Error::Unsigned(format!(
                "the rollback verdict is for {} {}/{} (uid {}, recommendation {signed_for}), not what action {} acted on",
                signed.kind, signed.namespace, signed.name, signed.uid, request.action_id
            )));
        }
        // Derived from the action type and the recorded values; a record
        // naming any other field is refused here.
        let (strategic, undo_patch) = undo::patch(&request.action_id, &record)?;
        let kind = TargetKind::parse(&record.target.kind).ok_or_else(unknown)?;
        let target = format!(
            "{} {}",
            record.target.kind,
            if record.target.namespace.is_empty() {
                record.target.name.clone()
            } else {
                format!("{}/{}", record.target.namespace, record.target.name)
            }
        );
        let fields: Vec<String> = record.changes.iter().map(|c| c.pointer.clone()).collect();
        let api = self.exec.api(kind, &record.target.namespace);
        let mut attempt = 0;
        let (before, after) = loop {
            let current = match api.get_opt(&record.target.name).await {
                Ok(Some(object)) => to_value(&object)?,
                Ok(None) => return Err(Error::TargetGone { target }),
                Err(error) => return Err(refusal_or_error(error, "get", &target)),
            };
            if str_at(&current, "/metadata/uid") != record.target.uid {
                return Err(Error::TargetReplaced {
                    target,
                    expected: record.target.uid.clone(),
                    found: str_at(&current, "/metadata/uid").to_owned(),
                });
            }
            // Never overwrite a later change: the fields must still hold
            // what the action wrote. The patch carries the resourceVersion
            // read here, so nothing can change in between either.
            undo::unchanged_since(&request.action_id, &record, &current)?;
            let mut patch = undo_patch.clone();
            patch["metadata"]["resourceVersion"] =
                serde_json::json!(str_at(&current, "/metadata/resourceVersion"));
            let params = PatchParams {
                field_manager: Some(self.config.field_manager.clone()),
                ..PatchParams::default()
            };
            let patch = if strategic {
                Patch::Strategic(&patch)
            } else {
                Patch::Merge(&patch)
            };
            match api.patch(&record.target.name, &params, &patch).await {
                Ok(after) => break (current, to_value(&after)?),
                Err(error) if api_code(&error) == Some(409) && attempt < CONFLICT_RETRIES => {
                    attempt += 1
                }
                Err(error) => return Err(refusal_or_error(error, "patch", &target)),
            }
        };
        let exec = self.exec.clone();
        let name = record.target.name.clone();
        let namespace = record.target.namespace.clone();
        let (state, message) = verify::watch(
            Duration::from_secs(self.config.verification.default_window_secs.min(30)),
            Duration::from_millis(self.config.verification.poll_interval_ms),
            || {
                let api = exec.api(kind, &namespace);
                let name = name.clone();
                let record = record.clone();
                async move {
                    match api.get_opt(&name).await {
                        Ok(Some(object)) => match to_value(&object) {
                            Ok(object) => undo::restored(&record, &object),
                            Err(error) => Check::Pending(error.to_string()),
                        },
                        Ok(None) => Check::Failed("the target was deleted".to_owned()),
                        Err(error) => Check::Pending(error.to_string()),
                    }
                }
            },
        )
        .await;
        let result = ActionResult {
            action_id: request.action_id.clone(),
            outcome: if state == VerificationState::Passed {
                Outcome::RolledBack
            } else {
                Outcome::Failed
            } as i32,
            dry_run_diff: diff::fields(&before, &after, &fields),
            pre_image_ref: self.store.reference(&request.action_id),
            verification: Some(Verification {
                state: state as i32,
                message,
            }),
            error: String::new(),
            started_at: Some(started.into()),
            finished_at: Some(SystemTime::now().into()),
        };
        tracing::info!(action_id = %request.action_id, reason = %request.reason, %target, "Action rolled back.");
        stored.record.phase = Phase::RolledBack;
        stored.rollback = Some(result.clone());
        self.store.update(&request.action_id, &mut stored).await?;
        Ok(result)
    }
}
