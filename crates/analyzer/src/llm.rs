//! The model path: a prompt built from one incident's issues and evidence,
//! a JSON schema built per request (the explanation, an enum of the
//! evidence it may cite, of the actions the model may pick and of the
//! incident's objects it may target), the Ollama and OpenAI-compatible
//! providers, the scheduler every call goes through, and the conversion of
//! its reply into recommendations.
//!
//! Everything from the cluster enters the prompt JSON-encoded inside a
//! fenced data block, and everything from the model is untrusted: the reply
//! only picks from the enums, the analyzer computes every parameter itself,
//! copies the target ref from the snapshot, and the validator checks the
//! result like any rule output.
//!
//! - [`prompt`]: the prompt and the reply schema;
//! - [`client`]: the two providers, with retries within one deadline;
//! - [`breaker`]: the circuit breaker over model calls;
//! - [`scheduler`]: one queue per model: priority, deduplication, cache,
//!   deadlines from measured throughput;
//! - [`reply`]: the reply, parsed and turned into recommendations.

mod breaker;
mod client;
mod prompt;
mod reply;
mod scheduler;

pub use self::{breaker::*, client::*, prompt::*, reply::*, scheduler::*};

/// The prompt template's version: sent with every model recommendation and
/// explanation, and part of the answer cache's keys. `nanny-v2`: one
/// incident per prompt, with numbered evidence and an explanation;
/// `nanny-v3`: a proposal may be a plan (`then`: its later steps).
pub const PROMPT_VERSION: &str = "nanny-v3";

/// Why a model call produced nothing.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// Connection refused, reset, DNS, or the request could not be built.
    #[error("the model endpoint cannot be reached: {0}")]
    Transport(#[source] reqwest::Error),
    /// The per-request deadline passed.
    #[error("the model did not answer in time")]
    Timeout,
    /// A non-2xx answer.
    #[error("the model endpoint answered HTTP {0}")]
    Status(u16),
    /// More than [`MAX_REPLY_BYTES`].
    #[error("the reply exceeds {MAX_REPLY_BYTES} bytes")]
    Oversized,
    /// Generation stopped at the token limit: the JSON is cut.
    #[error("the reply was cut at the token limit")]
    Truncated,
    /// Not the JSON the schema asks for.
    #[error("the reply is malformed: {0}")]
    Malformed(String),
}

impl LlmError {
    /// Worth retrying: the server was unreachable, overloaded or failing;
    /// a bad reply would come back bad again.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Status(code) => *code == 429 || *code >= 500,
            _ => false,
        }
    }

    /// The metric label for this error.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Transport(_) => "transport",
            Self::Timeout => "timeout",
            Self::Status(_) => "status",
            Self::Oversized => "oversized",
            Self::Truncated => "truncated",
            Self::Malformed(_) => "malformed",
        }
    }
}

#[cfg(test)]
mod scheduler_tests;
#[cfg(test)]
mod tests;
