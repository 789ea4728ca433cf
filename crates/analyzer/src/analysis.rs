//! Analysis: rules over whole snapshots, then validation; the model, when
//! one is enabled, through one [`Scheduler`] per model (see
//! [`crate::consult`]); and the metrics of each. Shared by both of the gRPC
//! service's RPCs.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime},
};

use nanny_proto::v1::{ClusterSnapshot, Issue, ModelExchange, Recommendation, source};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::{
    Config,
    error::Error,
    index::SnapshotIndex,
    llm::{self, Breaker, ClientConfig, ModelClient, Scheduler, SchedulerConfig, SchedulerMetrics},
    rules::Rules,
    settings::Settings,
    validate::Validator,
};

/// Rules, the optional model, validation and their metrics; shared by both RPCs.
#[derive(Debug)]
pub struct Analysis {
    config: Config,
    /// The configuration alone: what the `Analyze` stream applies.
    defaults: Settings,
    pub(crate) validator: Validator,
    /// One scheduler per model a request may ask for; empty with the LLM off.
    pub(crate) models: BTreeMap<String, Scheduler>,
    pub(crate) prompt_chars: usize,
    requests: IntCounterVec,
    recommendations: IntCounterVec,
    pub(crate) explanations: IntCounterVec,
    rules_duration: Histogram,
}

pub(crate) fn action_of(r: &Recommendation) -> &'static str {
    nanny_proto::vocabulary::label_of(r.action.as_ref().and_then(|a| a.kind.as_ref()))
}

/// The action of every step of `r`: its plan's, else its one action.
pub(crate) fn steps_of(r: &Recommendation) -> Vec<&'static str> {
    if r.plan.is_empty() {
        return vec![action_of(r)];
    }
    r.plan
        .iter()
        .map(|step| nanny_proto::vocabulary::label_of(step.kind.as_ref()))
        .collect()
}

pub(crate) fn target_uid(r: &Recommendation) -> &str {
    r.target.as_ref().map_or("", |t| t.uid.as_str())
}

pub(crate) fn rule_id(r: &Recommendation) -> &str {
    match r.source.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(source::Kind::RuleId(id)) => id,
        _ => "",
    }
}

impl Analysis {
    /// Registers the analyzer's metrics in `registry` (see
    /// [`Metrics::register`]) and builds one scheduler per model.
    ///
    /// # Errors
    /// When a metric cannot be registered.
    pub fn new(config: &Config, registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Metrics::register(registry)?;
        let llm_config = &config.llm;
        let mut models = BTreeMap::new();
        if llm_config.enabled {
            let client = ModelClient::new(ClientConfig {
                provider: llm_config.provider,
                endpoint: llm_config.endpoint.clone(),
                model: llm_config.model.clone(),
                max_tokens: llm_config.max_tokens,
                temperature: llm_config.temperature,
                context_tokens: llm_config.context_tokens,
                timeout: Duration::from_secs(llm_config.timeout_secs),
            });
            let scheduler = |client: ModelClient| {
                let model = client.model().to_owned();
                Scheduler::new(
                    client,
                    Breaker::new(
                        llm_config.breaker_failures,
                        Duration::from_secs(llm_config.breaker_open_secs),
                    ),
                    SchedulerConfig {
                        parallel: usize::try_from(llm_config.parallel).unwrap_or(1),
                        capacity: usize::try_from(llm_config.queue_capacity).unwrap_or(1),
                        max_deadline: Duration::from_secs(llm_config.timeout_secs),
                        cache_ttl: Duration::from_secs(llm_config.cache_ttl_secs),
                        max_tokens: llm_config.max_tokens,
                    },
                    metrics.for_model(&model),
                )
            };
            for name in &llm_config.allowed_models {
                models.insert(name.clone(), scheduler(client.with_model(name)));
            }
            models.insert(llm_config.model.clone(), scheduler(client));
        }
        let validator = Validator::new(registry)?;
        Ok(Self {
            config: config.clone(),
            defaults: Settings::from_config(config),
            validator,
            models,
            prompt_chars: llm::prompt_budget(llm_config.context_tokens, llm_config.max_tokens),
            requests: metrics.requests,
            recommendations: metrics.recommendations,
            explanations: metrics.explanations,
            rules_duration: metrics.rules_duration,
        })
    }

    /// The configuration alone, as the `Analyze` stream applies it.
    pub fn defaults(&self) -> &Settings {
        &self.defaults
    }

    /// A policy's settings resolved against the configuration (see
    /// [`Settings::resolve`]); the model fields only matter, and are only
    /// checked, when the model is consulted.
    ///
    /// # Errors
    /// [`Error::InvalidSettings`].
    pub fn settings(
        &self,
        policy: Option<&nanny_proto::v1::AnalysisSettings>,
        with_model: bool,
    ) -> Result<Settings, Error> {
        // Without a model there is nothing to check the model fields against.
        Settings::resolve(&self.config, policy, with_model && !self.models.is_empty())
    }

    /// Validated rule recommendations for `snapshot` at `now`.
    pub fn analyze(
        &self,
        snapshot: &ClusterSnapshot,
        now: SystemTime,
        settings: &Settings,
    ) -> Vec<Recommendation> {
        let start = Instant::now();
        let index = SnapshotIndex::new(snapshot);
        let proposed = Rules::new(settings.rules.clone())
            .with_triggers(settings.triggers.clone())
            .evaluate_indexed(snapshot, &index, now);
        let valid = self
            .validator
            .retain(proposed, &index, &settings.bounds(), now);
        self.rules_duration.observe(start.elapsed().as_secs_f64());
        valid
    }

    pub(crate) fn count_sent(&self, recommendation: &Recommendation) {
        let source = match recommendation.source.as_ref().and_then(|s| s.kind.as_ref()) {
            Some(source::Kind::Model(_)) => "model",
            _ => "rule",
        };
        self.recommendations
            .with_label_values(&[source, action_of(recommendation)])
            .inc();
    }

    pub(crate) fn count_request(&self, rpc: &str, outcome: &str) {
        self.requests.with_label_values(&[rpc, outcome]).inc();
    }
}

/// What consulting the model gave.
#[derive(Debug, Default)]
pub struct ModelAnswer {
    /// The model-only recommendations, or `None` when no model answered
    /// for any incident (disabled, nothing to ask, or failed: rules only).
    pub separate: Option<Vec<Recommendation>>,
    /// With `debug`: the exchange with the model about the most severe
    /// incident.
    pub exchange: Option<ModelExchange>,
    /// The model's outcome per incident asked about.
    pub outcomes: BTreeMap<String, String>,
}

impl ModelAnswer {
    /// No model consulted, for `outcome`.
    pub fn skipped(debug: bool, outcome: &str) -> Self {
        Self {
            separate: None,
            exchange: debug.then(|| ModelExchange {
                outcome: outcome.to_owned(),
                ..ModelExchange::default()
            }),
            outcomes: BTreeMap::new(),
        }
    }
}

/// The analyzer's metrics.
struct Metrics {
    requests: IntCounterVec,
    recommendations: IntCounterVec,
    explanations: IntCounterVec,
    rules_duration: Histogram,
    queue_depth: IntGaugeVec,
    wait: HistogramVec,
    run: HistogramVec,
    calls: IntCounterVec,
    tokens: IntCounterVec,
    degraded: IntGauge,
}

fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: Result<M, prometheus::Error>,
) -> Result<M, prometheus::Error> {
    let metric = metric?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// Buckets of the model's wait and run times, seconds.
const MODEL_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

impl Metrics {
    /// `nanny_analyzer_requests_total{rpc,outcome}`,
    /// `nanny_analyzer_recommendations_total{source,action}`,
    /// `nanny_analyzer_explanations_total{outcome}`,
    /// `nanny_analyzer_rules_duration_seconds`, and per model:
    /// `nanny_analyzer_model_queue_depth{model}`,
    /// `nanny_analyzer_model_wait_seconds{model}`,
    /// `nanny_ai_analysis_duration_seconds{model}` (run time),
    /// `nanny_analyzer_model_calls_total{model,outcome}`,
    /// `nanny_analyzer_model_tokens_total{model,direction}` and
    /// `nanny_analyzer_degraded`. The validator adds
    /// `nanny_analyzer_invalid_recommendations_total{reason}`.
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            registered(registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let histogram = |name: &str, help: &str| {
            registered(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(MODEL_BUCKETS.to_vec()),
                    &["model"],
                ),
            )
        };
        Ok(Self {
            requests: counter(
                "nanny_analyzer_requests_total",
                "Analyses by RPC and outcome (one per unary call, one per stream).",
                &["rpc", "outcome"],
            )?,
            recommendations: counter(
                "nanny_analyzer_recommendations_total",
                "Validated recommendations sent, by source (rule or model) and action.",
                &["source", "action"],
            )?,
            explanations: counter(
                "nanny_analyzer_explanations_total",
                "Model explanations by outcome: attached, or why dropped (missing, bad_citation).",
                &["outcome"],
            )?,
            rules_duration: registered(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "nanny_analyzer_rules_duration_seconds",
                        "Time to run the rules and validation over one snapshot.",
                    )
                    .buckets(vec![
                        0.0001, 0.0005, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5,
                    ]),
                ),
            )?,
            queue_depth: registered(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "nanny_analyzer_model_queue_depth",
                        "Incidents waiting for the model, by model.",
                    ),
                    &["model"],
                ),
            )?,
            wait: histogram(
                "nanny_analyzer_model_wait_seconds",
                "Time an incident waited in the model's queue before its call started, by model.",
            )?,
            run: histogram(
                "nanny_ai_analysis_duration_seconds",
                "Time one model call ran (queue wait excluded), by model.",
            )?,
            calls: counter(
                "nanny_analyzer_model_calls_total",
                "Model questions by model and outcome: ok, cache_hit, joined (asked while queued or running), \
                 superseded (replaced in the queue by newer evidence about its incident), \
                 or why none came (queue_full, breaker_open, timeout, truncated, malformed, ...).",
                &["model", "outcome"],
            )?,
            tokens: counter(
                "nanny_analyzer_model_tokens_total",
                "Tokens of answered model calls, as the server counted them: in (prompt) or out (generated).",
                &["model", "direction"],
            )?,
            degraded: registered(
                registry,
                IntGauge::new(
                    "nanny_analyzer_degraded",
                    "1 while the model server fails and answers are rules only.",
                ),
            )?,
        })
    }

    /// The scheduler metrics of `model`, its series exposed from the start.
    fn for_model(&self, model: &str) -> SchedulerMetrics {
        SchedulerMetrics {
            model: model.to_owned(),
            queue_depth: self.queue_depth.with_label_values(&[model]),
            wait: self.wait.with_label_values(&[model]),
            run: self.run.with_label_values(&[model]),
            calls: self.calls.clone(),
            tokens_in: self.tokens.with_label_values(&[model, "in"]),
            tokens_out: self.tokens.with_label_values(&[model, "out"]),
            degraded: self.degraded.clone(),
        }
    }
}

/// An issue without its timestamps: what decides whether it changed.
pub(crate) fn essence(issue: &Issue) -> Issue {
    Issue {
        first_seen: None,
        last_seen: None,
        ..issue.clone()
    }
}
