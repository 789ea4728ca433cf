//! Coordinator errors.

/// What can go wrong while driving the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A resource or message failed validation; nothing is acted on.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// Where, e.g. `spec.action.params.maxReplicas`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The API server refused or failed a call.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A peer service failed a call.
    #[error("{peer}: {status}")]
    Peer {
        /// `collector`, `analyzer`, `safety-gate` or `remediator`.
        peer: &'static str,
        /// The gRPC status.
        status: Box<tonic::Status>,
    },
    /// The resource changed since it was read (resourceVersion precondition).
    #[error("{0} changed meanwhile")]
    Conflict(String),
}

impl Error {
    /// An [`Error::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A peer's failure.
    pub fn peer(peer: &'static str, status: tonic::Status) -> Self {
        Self::Peer {
            peer,
            status: Box::new(status),
        }
    }

    /// Whether a retry may succeed (outages, conflicts), as opposed to a
    /// refusal that will repeat.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Invalid { .. } => false,
            Self::Conflict(_) => true,
            Self::Kube(kube::Error::Api(status)) => {
                status.code == 409 || status.code == 429 || status.code >= 500
            }
            Self::Kube(_) => true,
            Self::Peer { status, .. } => matches!(
                status.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Aborted
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Unknown
                    | tonic::Code::Cancelled
            ),
        }
    }
}
