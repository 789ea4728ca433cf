//! Errors of the analyzer's RPCs.

use nanny_common::snapshot::StreamError;

/// What a request to the analyzer can get wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `AnalyzeSnapshot` without a snapshot.
    #[error("the request carries no snapshot")]
    MissingSnapshot,
    /// `AnalyzeSnapshot` with a DELTA or one chunk of a larger snapshot.
    #[error("AnalyzeSnapshot needs one whole FULL snapshot (got kind {kind}, {count} chunks)")]
    NotWhole {
        /// The snapshot kind as sent.
        kind: i32,
        /// Its chunk count.
        count: u32,
    },
    /// An `Analyze` stream message that cannot apply; the client should
    /// resubscribe with a FULL snapshot.
    #[error("snapshot stream cannot apply: {0}")]
    Stream(#[from] StreamError),
    /// A policy's analysis settings out of range or unknown to the analyzer.
    #[error("{field}: {reason}")]
    InvalidSettings {
        /// The field, e.g. `settings.rules.oom_memory_factor`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// The metric label for this error.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::MissingSnapshot | Self::NotWhole { .. } => "invalid_argument",
            Self::InvalidSettings { .. } => "invalid_settings",
            Self::Stream(StreamError::Base { .. }) => "failed_precondition",
            Self::Stream(_) => "invalid_argument",
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        // The messages name only what the client sent, never internals.
        match &error {
            Error::MissingSnapshot | Error::NotWhole { .. } | Error::InvalidSettings { .. } => {
                tonic::Status::invalid_argument(error.to_string())
            }
            // The stream is out of step with the collector: resubscribe.
            Error::Stream(StreamError::Base { .. }) => {
                tonic::Status::failed_precondition(error.to_string())
            }
            Error::Stream(_) => tonic::Status::invalid_argument(error.to_string()),
        }
    }
}
