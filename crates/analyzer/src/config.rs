//! Analyzer configuration, including the LLM settings from the seeds' aiConfig.

use nanny_common::{
    Error,
    config::{ServerConfig, ServiceConfig, TelemetryConfig, validate_url},
};
use serde::{Deserialize, Serialize};

/// Everything the analyzer reads at start-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen addresses (defaults: gRPC 50052, HTTP 9092).
    pub server: ServerConfig,
    /// Logging and tracing.
    pub telemetry: TelemetryConfig,
    /// The LLM provider.
    pub llm: LlmConfig,
}

/// Which API the LLM endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Ollama's native `/api/chat`.
    Ollama,
    /// Any OpenAI-compatible `/v1/chat/completions` (vLLM, llama.cpp server, OpenAI).
    Openai,
}

/// Section `llm`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// `false` runs rules only.
    pub enabled: bool,
    /// `ollama` or `openai`.
    pub provider: Provider,
    /// Base URL, e.g. `http://ollama:11434`.
    pub endpoint: String,
    /// Model name as the provider knows it.
    pub model: String,
    /// Per-request deadline; past it the analyzer answers with rules only.
    pub timeout_secs: u64,
    /// Largest reply, in tokens.
    pub max_tokens: u32,
    /// Sampling temperature, 0–2.
    pub temperature: f64,
    /// Model suggestions below this confidence (0–1) are dropped.
    pub min_confidence: f64,
    /// Most model recommendations per snapshot.
    pub max_recommendations: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50052, 9092),
            telemetry: TelemetryConfig::default(),
            llm: LlmConfig {
                enabled: true,
                provider: Provider::Ollama,
                endpoint: "http://127.0.0.1:11434".to_owned(),
                model: "smollm2:135m".to_owned(),
                timeout_secs: 30,
                max_tokens: 512,
                temperature: 0.1,
                min_confidence: 0.75,
                max_recommendations: 5,
            },
        }
    }
}

impl ServiceConfig for Config {
    nanny_common::service_config_sections!();

    fn validate(&self) -> Result<(), Error> {
        let llm = &self.llm;
        validate_url("llm.endpoint", &llm.endpoint)?;
        if llm.model.trim().is_empty() {
            return Err(Error::config("llm.model", "must not be empty"));
        }
        if !(1..=600).contains(&llm.timeout_secs) {
            return Err(Error::config(
                "llm.timeout_secs",
                "must be between 1 and 600",
            ));
        }
        if !(16..=32_768).contains(&llm.max_tokens) {
            return Err(Error::config(
                "llm.max_tokens",
                "must be between 16 and 32768",
            ));
        }
        if !(0.0..=2.0).contains(&llm.temperature) {
            return Err(Error::config("llm.temperature", "must be between 0 and 2"));
        }
        if !(0.0..=1.0).contains(&llm.min_confidence) {
            return Err(Error::config(
                "llm.min_confidence",
                "must be between 0 and 1",
            ));
        }
        if !(1..=100).contains(&llm.max_recommendations) {
            return Err(Error::config(
                "llm.max_recommendations",
                "must be between 1 and 100",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, Error> {
        nanny_common::config::load(
            None,
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn defaults_follow_the_seeds() {
        let c = load(&[]).unwrap();
        assert_eq!(c.llm.provider, Provider::Ollama);
        assert_eq!(c.llm.timeout_secs, 30);
        assert!((c.llm.min_confidence - 0.75).abs() < f64::EPSILON);
    }

    #[test]
    fn provider_and_bounds_are_checked() {
        assert_eq!(
            load(&[("NANNY_LLM__PROVIDER", "openai")])
                .unwrap()
                .llm
                .provider,
            Provider::Openai
        );
        assert!(
            load(&[("NANNY_LLM__PROVIDER", "gpt")])
                .unwrap_err()
                .to_string()
                .contains("gpt")
        );
        let err = load(&[("NANNY_LLM__MIN_CONFIDENCE", "1.5")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: llm.min_confidence: must be between 0 and 1"
        );
        assert!(
            load(&[("NANNY_LLM__ENDPOINT", "ollama:11434")])
                .unwrap_err()
                .to_string()
                .contains("llm.endpoint")
        );
    }
}
