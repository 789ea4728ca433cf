//! The model client: Ollama's native chat API or an OpenAI-compatible one,
//! retried within one deadline.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    LlmError,
    prompt::Prompt,
    reply::{MAX_REPLY_BYTES, ModelInfo, ModelReply, Timings, Usage, parse_reply},
};
use crate::config::Provider;

/// The OpenAI-compatible `frequency_penalty` sent with every request.
const FREQUENCY_PENALTY: f64 = 0.5;

/// Retries after a transient failure, within the one deadline.
const RETRIES: u32 = 2;
/// Backoff before retry n is n times this.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// A model client: Ollama's native `/api/chat` or an OpenAI-compatible
/// `/v1/chat/completions`, both with the schema enforced server-side and
/// checked again here.
#[derive(Debug, Clone)]
pub struct ModelClient {
    provider: Provider,
    client: reqwest::Client,
    base: String,
    url: String,
    model: String,
    /// Learnt from the server on the first call, then fixed.
    digest: Arc<OnceLock<String>>,
    max_tokens: u32,
    temperature: f64,
    context_tokens: u32,
    timeout: Duration,
}

/// OpenAI-compatible reply.
#[derive(Debug, Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Usage,
    /// llama.cpp's server adds its timings.
    #[serde(default)]
    timings: Option<LlamaTimings>,
}

/// llama.cpp's `timings`, milliseconds.
#[derive(Debug, Deserialize)]
struct LlamaTimings {
    prompt_ms: f64,
    predicted_ms: f64,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: Message,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    content: Option<String>,
}

/// Ollama `/api/chat` reply (`stream:false`).
#[derive(Debug, Deserialize)]
struct OllamaChat {
    message: Message,
    done_reason: Option<String>,
    #[serde(flatten)]
    usage: Usage,
    /// Nanoseconds.
    #[serde(default)]
    prompt_eval_duration: Option<u64>,
    #[serde(default)]
    eval_duration: Option<u64>,
}

/// Ollama `GET /api/tags`: the local models.
#[derive(Debug, Deserialize)]
struct OllamaTags {
    models: Vec<OllamaTag>,
}

#[derive(Debug, Deserialize)]
struct OllamaTag {
    name: String,
    digest: String,
}

/// Settings of a [`ModelClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Which API the endpoint speaks.
    pub provider: Provider,
    /// Base URL, without `/v1` or `/api`.
    pub endpoint: String,
    /// The model name.
    pub model: String,
    /// Largest reply, tokens.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f64,
    /// Context window to ask for (Ollama's `num_ctx`).
    pub context_tokens: u32,
    /// Per-request deadline.
    pub timeout: Duration,
}

impl ModelClient {
    /// A client for `config`.
    pub fn new(config: ClientConfig) -> Self {
        let base = config.endpoint.trim_end_matches('/');
        let url = match config.provider {
            Provider::Openai => format!("{base}/v1/chat/completions"),
            Provider::Ollama => format!("{base}/api/chat"),
        };
        Self {
            provider: config.provider,
            client: reqwest::Client::new(),
            base: base.to_owned(),
            url,
            model: config.model,
            digest: Arc::default(),
            max_tokens: config.max_tokens,
            temperature: config.temperature,
            context_tokens: config.context_tokens,
            timeout: config.timeout,
        }
    }

    /// The model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The same endpoint and settings with another model (whose digest is
    /// learnt afresh).
    #[must_use]
    pub fn with_model(&self, model: &str) -> Self {
        Self {
            model: model.to_owned(),
            digest: Arc::default(),
            ..self.clone()
        }
    }

    /// `openai` or `ollama`, for the recommendation's source.
    pub fn provider(&self) -> &'static str {
        match self.provider {
            Provider::Openai => "openai",
            Provider::Ollama => "ollama",
        }
    }

    /// Provider, model and, once a call has learnt it, the model digest.
    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            provider: self.provider(),
            model: self.model.clone(),
            digest: self.digest.get().cloned().unwrap_or_default(),
        }
    }

    /// Asks Ollama for the model's digest once; a failure leaves it unknown
    /// (the chat call that follows reports the real problem) and the next
    /// call asks again. OpenAI-compatible servers publish none.
    pub async fn learn_digest(&self) {
        if self.provider != Provider::Ollama || self.digest.get().is_some() {
            return;
        }
        let tags = async {
            let response = self
                .client
                .get(format!("{}/api/tags", self.base))
                .send()
                .await?
                .error_for_status()?;
            response.json::<OllamaTags>().await
        };
        match tags.await {
            Ok(tags) => {
                // `name` without a tag means `name:latest`.
                let wanted = if self.model.contains(':') {
                    self.model.clone()
                } else {
                    format!("{}:latest", self.model)
                };
                if let Some(tag) = tags.models.into_iter().find(|t| t.name == wanted) {
                    let _ = self.digest.set(tag.digest);
                }
            }
            Err(error) => tracing::debug!(%error, "Cannot read the model digest."),
        }
    }

    /// The request body for `prompt`.
    pub fn body(&self, prompt: &Prompt) -> Value {
        let messages = json!([
            { "role": "system", "content": prompt.system },
            { "role": "user", "content": prompt.user },
        ]);
        match self.provider {
            Provider::Openai => json!({
                "model": self.model,
                "messages": messages,
                // Some servers default these to 1.0 when omitted: always send them.
                "temperature": self.temperature,
                "top_p": 1.0,
                // Near-greedy decoding lets a small model loop on one token
                // ("10000…") until the token limit cuts the JSON; a mild
                // penalty breaks the loop (Ollama applies its own
                // repeat_penalty 1.1 by default).
                "frequency_penalty": FREQUENCY_PENALTY,
                "seed": 0,
                "max_tokens": self.max_tokens,
                "stream": false,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": { "name": "nanny_recommendations", "strict": true, "schema": prompt.schema },
                },
            }),
            Provider::Ollama => json!({
                "model": self.model,
                "messages": messages,
                "stream": false,
                "format": prompt.schema,
                // Ollama drops the front of a prompt longer than num_ctx
                // silently: always send it (the prompt is budgeted to fit).
                "options": {
                    "temperature": self.temperature,
                    "seed": 0,
                    "num_ctx": self.context_tokens,
                    "num_predict": self.max_tokens,
                },
                "keep_alive": "10m",
            }),
        }
    }

    /// Sends `prompt` and parses the reply.
    ///
    /// # Errors
    /// [`LlmError`] for transport failures, timeouts, non-2xx answers,
    /// oversized, truncated or malformed replies.
    pub async fn complete(&self, prompt: &Prompt) -> Result<ModelReply, LlmError> {
        self.complete_keeping_raw(prompt, &mut String::new()).await
    }

    /// [`ModelClient::complete`] that also leaves the last assistant message
    /// content received (well-formed or not) in `raw`, for debugging.
    ///
    /// # Errors
    /// As [`ModelClient::complete`].
    pub async fn complete_keeping_raw(
        &self,
        prompt: &Prompt,
        raw: &mut String,
    ) -> Result<ModelReply, LlmError> {
        self.complete_within(prompt, raw, self.timeout).await
    }

    /// [`ModelClient::complete_keeping_raw`] within `deadline` instead of
    /// the configured timeout.
    ///
    /// # Errors
    /// As [`ModelClient::complete`].
    pub async fn complete_within(
        &self,
        prompt: &Prompt,
        raw: &mut String,
        deadline: Duration,
    ) -> Result<ModelReply, LlmError> {
        // One deadline covers the retry too: the caller's latency bound holds.
        tokio::time::timeout(deadline, async {
            let mut attempt = 0;
            self.learn_digest().await;
            loop {
                match self.complete_inner(prompt, raw).await {
                    Err(error) if error.is_transient() && attempt < RETRIES => {
                        attempt += 1;
                        tracing::debug!(%error, attempt, "Retrying the model call.");
                        tokio::time::sleep(RETRY_BACKOFF * attempt).await;
                    }
                    result => return result,
                }
            }
        })
        .await
        .map_err(|_| LlmError::Timeout)?
    }

    async fn complete_inner(
        &self,
        prompt: &Prompt,
        raw: &mut String,
    ) -> Result<ModelReply, LlmError> {
        let mut response = self
            .client
            .post(&self.url)
            .json(&self.body(prompt))
            .send()
            .await
            .map_err(LlmError::Transport)?;
        if !response.status().is_success() {
            return Err(LlmError::Status(response.status().as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|l| l > MAX_REPLY_BYTES as u64)
        {
            return Err(LlmError::Oversized);
        }
        // Read by chunks so a server that streams without end cannot make
        // the analyzer buffer it.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(LlmError::Transport)? {
            if body.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(LlmError::Oversized);
            }
            body.extend_from_slice(&chunk);
        }
        let malformed = |e: serde_json::Error| LlmError::Malformed(e.to_string());
        let (message, finish, usage, timings) = match self.provider {
            Provider::Openai => {
                let completion: Completion = serde_json::from_slice(&body).map_err(malformed)?;
                let timings = completion.timings.map(|t| Timings {
                    prompt_secs: t.prompt_ms / 1e3,
                    generate_secs: t.predicted_ms / 1e3,
                });
                let choice = completion
                    .choices
                    .into_iter()
                    .next()
                    .ok_or_else(|| LlmError::Malformed("no choices".to_owned()))?;
                (
                    choice.message,
                    choice.finish_reason,
                    completion.usage,
                    timings,
                )
            }
            Provider::Ollama => {
                let chat: OllamaChat = serde_json::from_slice(&body).map_err(malformed)?;
                #[expect(clippy::cast_precision_loss, reason = "nanoseconds of one call")]
                let timings = chat
                    .prompt_eval_duration
                    .zip(chat.eval_duration)
                    .map(|(p, e)| Timings {
                        prompt_secs: p as f64 / 1e9,
                        generate_secs: e as f64 / 1e9,
                    });
                (chat.message, chat.done_reason, chat.usage, timings)
            }
        };
        raw.clone_from(message.content.as_ref().unwrap_or(&String::new()));
        match finish.as_deref() {
            // Cut at the token limit: the JSON is incomplete.
            Some("length") => return Err(LlmError::Truncated),
            Some("stop") | None => {}
            Some(other) => {
                return Err(LlmError::Malformed(format!("finish reason {other:?}")));
            }
        }
        let content = message
            .content
            .ok_or_else(|| LlmError::Malformed("no content".to_owned()))?;
        let mut reply = parse_reply(&content)?;
        reply.usage = usage;
        reply.timings = timings;
        reply.raw = content;
        Ok(reply)
    }
}
