//! Everything an Execute or Rollback can end with other than an action result.

use tonic::{Code, Status};

/// Why the remediator did not act (a refusal) or could not answer (an error).
///
/// Refusals ([`Error::is_refusal`]) are answered as an `ActionResult` with
/// outcome `REFUSED`: the caller asked for something the remediator must not
/// do, and nothing was written. Everything else becomes a gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed: a field is missing or out of range.
    #[error("invalid request: {field}: {message}")]
    InvalidRequest {
        /// The request field, e.g. `recommendation.target.uid`.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The action exists in the contract but the remediator never executes it.
    #[error("invalid request: recommendation.action: {action} is not executed by the remediator")]
    Unsupported {
        /// The action type.
        action: &'static str,
    },
    /// The verdict does not approve exactly this recommendation.
    #[error("refused: {0}")]
    NotApproved(String),
    /// The verdict is not the safety gate's: unsigned, expired, signed by an
    /// unknown key or over other content. Answered PERMISSION_DENIED.
    #[error("refused: {0}")]
    Unsigned(String),
    /// The target no longer exists.
    #[error("refused: {target} no longer exists")]
    TargetGone {
        /// `Kind namespace/name`.
        target: String,
    },
    /// The target was deleted and re-created since the snapshot.
    #[error(
        "refused: {target} was replaced since the snapshot (uid {expected} in the snapshot, {found} now)"
    )]
    TargetReplaced {
        /// `Kind namespace/name`.
        target: String,
        /// uid in the recommendation.
        expected: String,
        /// uid in the cluster.
        found: String,
    },
    /// The target's spec or labels changed since the snapshot, or the
    /// snapshot's version can no longer be compared.
    #[error("refused: {target} changed since the snapshot: {what}")]
    TargetChanged {
        /// `Kind namespace/name`.
        target: String,
        /// What changed.
        what: String,
    },
    /// An action-specific precondition does not hold (job not finished,
    /// storage class not expandable, bare pod, shrink…).
    #[error("refused: {target}: {message}")]
    Precondition {
        /// `Kind namespace/name`.
        target: String,
        /// Which precondition failed.
        message: String,
    },
    /// A PodDisruptionBudget refused an eviction (429) and nothing was
    /// written: answered as a BLOCKED result, which the caller may retry.
    #[error("blocked: {target}: {message}")]
    Blocked {
        /// `Kind namespace/name`.
        target: String,
        /// The budget's refusal, as the API server worded it.
        message: String,
    },
    /// The API server refused the write for the remediator's identity
    /// (RBAC or an admission policy), checked by a dry run before anything
    /// was written.
    #[error("refused: not allowed to {verb} {target}: {message}")]
    Forbidden {
        /// What was attempted, e.g. `patch`.
        verb: &'static str,
        /// `Kind namespace/name`.
        target: String,
        /// The API server's message.
        message: String,
    },
    /// The action id was already used for a different recommendation.
    #[error("action id {action_id} was already used for a different recommendation or target")]
    IdempotencyConflict {
        /// The action id.
        action_id: String,
    },
    /// The same action id is executing right now (or was interrupted
    /// mid-action; see its record).
    #[error("action {action_id} is already executing")]
    InProgress {
        /// The action id.
        action_id: String,
    },
    /// Rollback of an action id the remediator never executed.
    #[error("no executed action {action_id} to roll back")]
    UnknownAction {
        /// The action id.
        action_id: String,
    },
    /// The action cannot be undone (a deleted pod or job, a grown volume).
    #[error("action {action_id} cannot be rolled back: {reason}")]
    NotReversible {
        /// The action id.
        action_id: String,
        /// Why.
        reason: String,
    },
    /// The fields a rollback would restore changed since the action: the
    /// later change is kept, nothing is rolled back.
    #[error(
        "refused: action {action_id} cannot be rolled back: {field} changed since the action by {by} (it is {found}, the action left {expected}); nothing was rolled back"
    )]
    ChangedSince {
        /// The action id.
        action_id: String,
        /// The JSON pointer.
        field: String,
        /// What the action wrote.
        expected: String,
        /// What is there now.
        found: String,
        /// The field manager of the latest write.
        by: String,
    },
    /// An action record fails its MAC: not written by this remediator, or
    /// changed since. Refused and logged; never acted on.
    #[error(
        "the record of action {action_id} ({reference}) fails its integrity check: it was not written by this remediator or was changed since; refused"
    )]
    Tampered {
        /// The action id.
        action_id: String,
        /// `configmap/<namespace>/<name>`.
        reference: String,
    },
    /// A Kubernetes call failed for a reason other than the above.
    #[error("failed to {context}: {source}")]
    Kube {
        /// What was being done, e.g. `patch Node n1`.
        context: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The action record could not be read or written; nothing was changed.
    #[error("failed to access the record of action {action_id}: {message}")]
    Store {
        /// The action id.
        action_id: String,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// Whether this is a refusal, answered as a REFUSED result.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::NotApproved(_)
                | Self::TargetGone { .. }
                | Self::TargetReplaced { .. }
                | Self::TargetChanged { .. }
                | Self::Precondition { .. }
                | Self::Forbidden { .. }
        )
    }

    /// A [`Error::Kube`] with context.
    pub fn kube(context: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            context: context.into(),
            source,
        }
    }

    /// An [`Error::InvalidRequest`].
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            field,
            message: message.into(),
        }
    }
}

/// The HTTP status of an API error, if the API server answered.
pub fn api_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let code = match &error {
            Error::InvalidRequest { .. } | Error::Unsupported { .. } => Code::InvalidArgument,
            Error::Unsigned(_) => Code::PermissionDenied,
            Error::NotApproved(_)
            | Error::TargetChanged { .. }
            | Error::Precondition { .. }
            | Error::Blocked { .. }
            | Error::NotReversible { .. }
            | Error::ChangedSince { .. } => Code::FailedPrecondition,
            Error::Tampered { .. } => Code::DataLoss,
            Error::TargetGone { .. } | Error::UnknownAction { .. } => Code::NotFound,
            Error::TargetReplaced { .. } => Code::FailedPrecondition,
            Error::Forbidden { .. } => Code::PermissionDenied,
            Error::IdempotencyConflict { .. } => Code::AlreadyExists,
            // The caller retries later and then gets the recorded result.
            Error::InProgress { .. } => Code::Aborted,
            Error::Kube { source, .. } => match api_code(source) {
                Some(409) => Code::Aborted,
                Some(400 | 422) => Code::InvalidArgument,
                Some(_) => Code::Internal,
                None => Code::Unavailable,
            },
            Error::Store { .. } => Code::Unavailable,
        };
        // Kubernetes client errors can carry request details: the message
        // names what failed, the source stays in the logs.
        let message = match &error {
            Error::Kube { context, source } => match source {
                kube::Error::Api(status) => format!("failed to {context}: {}", status.message),
                _ => format!("failed to {context}: the API server is unreachable"),
            },
            other => other.to_string(),
        };
        // API messages can echo object content: nothing secret leaves.
        Status::new(code, nanny_common::redact::text(&message).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_deliberate() {
        let cases = [
            (
                Error::invalid("action_id", "is empty"),
                Code::InvalidArgument,
            ),
            (
                Error::IdempotencyConflict {
                    action_id: "a".into(),
                },
                Code::AlreadyExists,
            ),
            (
                Error::InProgress {
                    action_id: "a".into(),
                },
                Code::Aborted,
            ),
            (
                Error::Forbidden {
                    verb: "patch",
                    target: "Node n1".into(),
                    message: "no".into(),
                },
                Code::PermissionDenied,
            ),
            (
                Error::Store {
                    action_id: "a".into(),
                    message: "down".into(),
                },
                Code::Unavailable,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(Status::from(error).code(), code);
        }
    }

    #[test]
    fn refusals_are_exactly_the_cases_where_nothing_may_be_done() {
        assert!(Error::NotApproved("x".into()).is_refusal());
        assert!(
            Error::TargetReplaced {
                target: "Pod a/b".into(),
                expected: "1".into(),
                found: "2".into()
            }
            .is_refusal()
        );
        assert!(!Error::invalid("action_id", "is empty").is_refusal());
        assert!(
            !Error::InProgress {
                action_id: "a".into()
            }
            .is_refusal()
        );
    }
}
