//! Analyzer configuration, including the LLM settings from the seeds' aiConfig.

use nanny_common::{
    Error,
    config::{ServerConfig, ServiceConfig, TelemetryConfig, validate_url},
};
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Everything the analyzer reads at start-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen addresses (defaults: gRPC 50052, HTTP 9092).
    pub server: ServerConfig,
    /// Logging and tracing.
    pub telemetry: TelemetryConfig,
    /// Mutual TLS for the gRPC server and its clients.
    pub tls: nanny_common::tls::TlsConfig,
    /// The LLM provider.
    pub llm: LlmConfig,
    /// The deterministic rules: each can be switched off and tuned.
    pub rules: RulesConfig,
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
    /// `false` runs rules only. Off by default until a provider is wired in.
    pub enabled: bool,
    /// `ollama` or `openai`.
    pub provider: Provider,
    /// Base URL, e.g. `http://ollama:11434`.
    pub endpoint: String,
    /// Model name as the provider knows it.
    pub model: String,
    /// The longest one model call may run (queue time apart), and its
    /// deadline until the server's throughput is measured; past it the
    /// incident is answered by the rules alone.
    pub timeout_secs: u64,
    /// Model calls at once: the server's parallel slots (Ollama's
    /// `OLLAMA_NUM_PARALLEL`, llama.cpp's `--parallel`/`n_parallel`). More
    /// than the server has only moves the queue into the server, where the
    /// wait counts against each call's deadline.
    #[serde(default = "default_parallel")]
    pub parallel: u32,
    /// Most questions waiting for the model; past it the least urgent
    /// incident is answered by the rules alone (`queue_full`).
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: u32,
    /// Largest reply, in tokens.
    pub max_tokens: u32,
    /// Context window asked of the model (Ollama's `num_ctx`); prompts are
    /// budgeted to fit it with room for the reply.
    pub context_tokens: u32,
    /// Sampling temperature, 0–2.
    pub temperature: f64,
    /// Model suggestions below this confidence (0–1) are dropped.
    pub min_confidence: f64,
    /// Most model recommendations per snapshot.
    pub max_recommendations: u32,
    /// Consecutive model failures that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker skips the model (rules only).
    pub breaker_open_secs: u64,
    /// How long a model answer is reused for the same issues; 0 disables.
    pub cache_ttl_secs: u64,
    /// Other models a HealingPolicy may ask for (`spec.ai.model`), served by
    /// the same endpoint; a policy naming any other model is refused.
    #[serde(default)]
    pub allowed_models: Vec<String>,
}

fn default_parallel() -> u32 {
    1
}

fn default_queue_capacity() -> u32 {
    256
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50052, 9092),
            telemetry: TelemetryConfig::default(),
            tls: nanny_common::tls::TlsConfig::default(),
            llm: LlmConfig {
                enabled: false,
                provider: Provider::Ollama,
                endpoint: "http://127.0.0.1:11434".to_owned(),
                model: "smollm2:135m".to_owned(),
                timeout_secs: 30,
                parallel: default_parallel(),
                queue_capacity: default_queue_capacity(),
                max_tokens: 512,
                context_tokens: 4096,
                temperature: 0.1,
                min_confidence: 0.75,
                max_recommendations: 5,
                breaker_failures: 3,
                breaker_open_secs: 60,
                cache_ttl_secs: 300,
                allowed_models: Vec::new(),
            },
            rules: RulesConfig::default(),
        }
    }
}

impl ServiceConfig for Config {
    nanny_common::service_config_sections!();

    const LIST_KEYS: &'static [&'static str] = &["llm.allowed_models", "rules.disabled"];

    fn validate(&self) -> Result<(), Error> {
        let llm = &self.llm;
        validate_url("llm.endpoint", &llm.endpoint)?;
        if llm.model.trim().is_empty() {
            return Err(Error::config("llm.model", "must not be empty"));
        }
        if llm.allowed_models.iter().any(|m| m.trim().is_empty()) {
            return Err(Error::config(
                "llm.allowed_models",
                "must not contain an empty name",
            ));
        }
        if !(1..=600).contains(&llm.timeout_secs) {
            return Err(Error::config(
                "llm.timeout_secs",
                "must be between 1 and 600",
            ));
        }
        if !(1..=64).contains(&llm.parallel) {
            return Err(Error::config("llm.parallel", "must be between 1 and 64"));
        }
        if !(1..=10_000).contains(&llm.queue_capacity) {
            return Err(Error::config(
                "llm.queue_capacity",
                "must be between 1 and 10000",
            ));
        }
        if !(16..=32_768).contains(&llm.max_tokens) {
            return Err(Error::config(
                "llm.max_tokens",
                "must be between 16 and 32768",
            ));
        }
        if !(2048..=131_072).contains(&llm.context_tokens) {
            return Err(Error::config(
                "llm.context_tokens",
                "must be between 2048 and 131072",
            ));
        }
        // The prompt needs room beside the reply inside the context window.
        if llm.max_tokens.saturating_add(1024) > llm.context_tokens {
            return Err(Error::config(
                "llm.context_tokens",
                "must exceed llm.max_tokens by at least 1024",
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
        if !(1..=100).contains(&llm.breaker_failures) {
            return Err(Error::config(
                "llm.breaker_failures",
                "must be between 1 and 100",
            ));
        }
        if !(1..=3600).contains(&llm.breaker_open_secs) {
            return Err(Error::config(
                "llm.breaker_open_secs",
                "must be between 1 and 3600",
            ));
        }
        if llm.cache_ttl_secs > 86_400 {
            return Err(Error::config("llm.cache_ttl_secs", "must be at most 86400"));
        }
        if !(1..=100).contains(&llm.max_recommendations) {
            return Err(Error::config(
                "llm.max_recommendations",
                "must be between 1 and 100",
            ));
        }
        self.rules.validate()
    }
}

/// Section `rules`: one subsection per rule family.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// `crashloop-restart` and `crashloop-rollout-restart`.
    pub crashloop: CrashLoopRule,
    /// `oom-raise-memory-limit`.
    pub oom: OomRule,
    /// `stale-job-delete`.
    pub stale_job: StaleJobRule,
    /// `hpa-raise-max`.
    pub hpa: HpaRule,
    /// `node-not-ready-cordon`, `node-not-ready-drain`, `node-pressure-cordon`.
    pub node: NodeRule,
    /// `pvc-expand`.
    pub pvc: PvcRule,
    /// `report-image-pull`, `report-config-error`, `report-unschedulable`.
    pub report: ReportRule,
    /// `evicted-pods-delete`.
    #[serde(default)]
    pub failed_pods: FailedPodsRule,
    /// `rightsizing-lower-requests` (`report-rightsizing` otherwise).
    #[serde(default)]
    pub rightsizing: RightsizingRule,
    /// The action types the policy in force allows (set per request, never
    /// configured); `None`: no policy narrows them. A rule whose action the
    /// policy does not allow reports instead, where it has a report.
    #[serde(skip)]
    pub allowed_actions: Option<BTreeSet<i32>>,
    /// Rule ids switched off one by one, e.g. `crashloop-rollout-restart`.
    #[serde(default)]
    pub disabled: BTreeSet<String>,
}

/// Section `rules.rightsizing`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RightsizingRule {
    /// Propose lowering an over-provisioned container's requests (a
    /// PatchResources a human always approves) instead of only reporting
    /// them. Off by default: the usage window may miss a rare peak.
    pub propose_patch: bool,
}

/// Section `rules.failed_pods`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedPodsRule {
    /// Off: evicted pods are left alone.
    pub enabled: bool,
    /// The most pods one action deletes, 1–100.
    pub max_pods: u32,
}

impl Default for FailedPodsRule {
    fn default() -> Self {
        Self {
            enabled: true,
            max_pods: 20,
        }
    }
}

/// Section `rules.crashloop`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashLoopRule {
    /// Off: crash loops yield nothing.
    pub enabled: bool,
    /// Restarts a container must have before its pod is restarted.
    pub min_restarts: u32,
    /// Above this share (percent) of a workload's desired replicas crash
    /// looping, one rollout restart replaces the pod restarts.
    pub rollout_percent: u32,
}

impl Default for CrashLoopRule {
    fn default() -> Self {
        Self {
            enabled: true,
            min_restarts: 3,
            rollout_percent: 50,
        }
    }
}

/// Section `rules.oom`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OomRule {
    /// Off: OOM kills yield nothing.
    pub enabled: bool,
    /// The memory limit is multiplied by this, 1–4.
    pub factor: f64,
    /// Never propose a memory limit above this many bytes.
    pub max_memory_bytes: i64,
    /// A container predicted to be OOM-killed (`OOMPredicted`) gets a limit
    /// that holds its working set's trend this many seconds, between a
    /// tenth more than its limit and its limit times `factor`.
    pub predicted_hold_secs: u64,
}

impl Default for OomRule {
    fn default() -> Self {
        Self {
            enabled: true,
            factor: 1.5,
            max_memory_bytes: 8 << 30,
            predicted_hold_secs: 24 * 3600,
        }
    }
}

/// Section `rules.stale_job`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaleJobRule {
    /// Off: completed Jobs are left alone.
    pub enabled: bool,
    /// A completed Job must have finished at least this long ago.
    pub min_age_secs: u64,
}

impl Default for StaleJobRule {
    fn default() -> Self {
        Self {
            enabled: true,
            min_age_secs: 24 * 3600,
        }
    }
}

/// Section `rules.hpa`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HpaRule {
    /// Off: HPAs at max, now or for a rising share of each day, yield nothing.
    pub enabled: bool,
    /// maxReplicas is multiplied by this, 1–4.
    pub factor: f64,
    /// Never propose maxReplicas above this.
    pub max_replicas: i32,
    /// A metric counts as high when its utilisation exceeds the target by
    /// more than this many percentage points.
    pub over_target_percent: i32,
}

impl Default for HpaRule {
    fn default() -> Self {
        Self {
            enabled: true,
            factor: 1.5,
            max_replicas: 100,
            over_target_percent: 0,
        }
    }
}

/// Section `rules.node`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRule {
    /// Off: node conditions and nodes predicted to run out of memory or disk
    /// yield nothing.
    pub enabled: bool,
    /// Also propose draining a NotReady node (pressure only cordons).
    pub drain_not_ready: bool,
    /// With `drain_not_ready`, a schedulable NotReady node gets one plan,
    /// cordon then drain (verified between the steps, the cordon lifted
    /// again when the drain fails), instead of two separate actions. Off by
    /// default: a plan waits for its strictest step's approval, and a drain
    /// usually needs a human, so the cordon would wait too.
    #[serde(default)]
    pub cordon_drain_plan: bool,
    /// Grace period given to evicted pods.
    pub drain_grace_period_secs: i64,
    /// Deadline for the whole drain, 1–3600.
    pub drain_timeout_secs: i64,
    /// A node Nanny cordoned is uncordoned once Ready this long with no
    /// other condition True.
    pub uncordon_after_secs: u64,
}

impl Default for NodeRule {
    fn default() -> Self {
        Self {
            enabled: true,
            drain_not_ready: true,
            cordon_drain_plan: false,
            drain_grace_period_secs: 30,
            drain_timeout_secs: 600,
            uncordon_after_secs: 600,
        }
    }
}

/// Section `rules.pvc`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PvcRule {
    /// Off: full volumes yield nothing.
    pub enabled: bool,
    /// Expand when usage is at least this percentage.
    pub usage_percent: f64,
    /// The capacity is multiplied by this, 1–4.
    pub factor: f64,
    /// Never propose a size above this many bytes.
    pub max_storage_bytes: i64,
    /// A claim predicted full (`PVCPredictedFull`) is sized to hold its
    /// trend this many seconds, at least its capacity times `factor` and
    /// at most twice its capacity (a volume never shrinks back).
    pub predicted_hold_secs: u64,
}

impl Default for PvcRule {
    fn default() -> Self {
        Self {
            enabled: true,
            usage_percent: 85.0,
            factor: 1.5,
            max_storage_bytes: 1 << 40,
            predicted_hold_secs: 3 * 24 * 3600,
        }
    }
}

/// Section `rules.report`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRule {
    /// Off: issues no action can fix are not reported.
    pub enabled: bool,
}

impl Default for ReportRule {
    fn default() -> Self {
        Self { enabled: true }
    }
}

impl RulesConfig {
    fn validate(&self) -> Result<(), Error> {
        if let Some(id) = self
            .disabled
            .iter()
            .find(|id| !crate::catalog::RULES.iter().any(|r| r.id == id.as_str()))
        {
            return Err(Error::config(
                "rules.disabled",
                format!("unknown rule id {id:?}"),
            ));
        }
        let factor = |key: &str, value: f64| {
            if (1.0..=4.0).contains(&value) {
                Ok(())
            } else {
                Err(Error::config(key, "must be between 1 and 4"))
            }
        };
        factor("rules.oom.factor", self.oom.factor)?;
        factor("rules.hpa.factor", self.hpa.factor)?;
        factor("rules.pvc.factor", self.pvc.factor)?;
        if !(1..=100).contains(&self.crashloop.rollout_percent) {
            return Err(Error::config(
                "rules.crashloop.rollout_percent",
                "must be between 1 and 100",
            ));
        }
        if !(1..=crate::validate::MAX_FAILED_PODS).contains(&self.failed_pods.max_pods) {
            return Err(Error::config(
                "rules.failed_pods.max_pods",
                "must be between 1 and 100",
            ));
        }
        if self.oom.max_memory_bytes <= 0 {
            return Err(Error::config(
                "rules.oom.max_memory_bytes",
                "must be positive",
            ));
        }
        if self.hpa.max_replicas <= 0 {
            return Err(Error::config("rules.hpa.max_replicas", "must be positive"));
        }
        if self.pvc.max_storage_bytes <= 0 {
            return Err(Error::config(
                "rules.pvc.max_storage_bytes",
                "must be positive",
            ));
        }
        for (key, hold) in [
            (
                "rules.oom.predicted_hold_secs",
                self.oom.predicted_hold_secs,
            ),
            (
                "rules.pvc.predicted_hold_secs",
                self.pvc.predicted_hold_secs,
            ),
        ] {
            if !(1..=365 * 24 * 3600).contains(&hold) {
                return Err(Error::config(key, "must be between 1 second and a year"));
            }
        }
        if !(0.0..=100.0).contains(&self.pvc.usage_percent) {
            return Err(Error::config(
                "rules.pvc.usage_percent",
                "must be between 0 and 100",
            ));
        }
        if !(1..=3600).contains(&self.node.drain_timeout_secs) {
            return Err(Error::config(
                "rules.node.drain_timeout_secs",
                "must be between 1 and 3600",
            ));
        }
        if self.node.drain_grace_period_secs < 0 {
            return Err(Error::config(
                "rules.node.drain_grace_period_secs",
                "must not be negative",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads with `pairs` and plaintext gRPC (no certificates in unit tests).
    fn load(pairs: &[(&str, &str)]) -> Result<Config, Error> {
        let mut pairs = pairs.to_vec();
        pairs.push(("NANNY_TLS__INSECURE_DEV", "true"));
        nanny_common::config::load_pairs(&pairs)
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

    #[test]
    fn rules_are_switchable_and_bounded() {
        let c = load(&[
            ("NANNY_RULES__OOM__ENABLED", "false"),
            ("NANNY_RULES__CRASHLOOP__MIN_RESTARTS", "7"),
        ])
        .unwrap();
        assert!(!c.rules.oom.enabled);
        assert_eq!(c.rules.crashloop.min_restarts, 7);
        assert!(!c.llm.enabled, "the LLM stays off until asked for");
        let err = load(&[("NANNY_RULES__PVC__FACTOR", "10")]).unwrap_err();
        assert!(err.to_string().contains("rules.pvc.factor"), "{err}");
        assert!(load(&[("NANNY_RULES__HPA__NOPE", "1")]).is_err());
        let err = load(&[("NANNY_LLM__MAX_TOKENS", "4000")]).unwrap_err();
        assert!(err.to_string().contains("llm.context_tokens"), "{err}");
        assert!(
            load(&[
                ("NANNY_LLM__MAX_TOKENS", "4000"),
                ("NANNY_LLM__CONTEXT_TOKENS", "8192")
            ])
            .is_ok()
        );
        assert!(load(&[("NANNY_LLM__CONTEXT_TOKENS", "1024")]).is_err());
    }

    #[test]
    fn lists_come_comma_separated_from_the_environment() {
        let c = load(&[
            ("NANNY_LLM__ALLOWED_MODELS", "qwen2.5:0.5b,llama3.2:1b"),
            ("NANNY_RULES__DISABLED", "pvc-expand,hpa-raise-max"),
        ])
        .unwrap();
        assert_eq!(c.llm.allowed_models, ["qwen2.5:0.5b", "llama3.2:1b"]);
        assert_eq!(
            c.rules.disabled.iter().collect::<Vec<_>>(),
            ["hpa-raise-max", "pvc-expand"]
        );
        let err = load(&[("NANNY_RULES__DISABLED", "pvc-expand,nope")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: rules.disabled: unknown rule id \"nope\""
        );
        let err = load(&[("NANNY_LLM__ALLOWED_MODELS", "a,,b")]).unwrap_err();
        assert!(err.to_string().contains("llm.allowed_models"), "{err}");
    }
}
