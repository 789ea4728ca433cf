//! Analysis: rules over whole snapshots, then the model when one is
//! enabled (with its reply cache and breaker), then validation; and the
//! metrics of each. Shared by both of the gRPC service's RPCs.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant, SystemTime},
};

use nanny_proto::v1::{ClusterSnapshot, Issue, ModelExchange, Recommendation, source};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use crate::{
    Config,
    error::Error,
    index::SnapshotIndex,
    llm::{self, Breaker, ClientConfig, ModelClient, ModelInfo, PROMPT_VERSION},
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
    validator: Validator,
    /// One client per model a request may ask for; empty with the LLM off.
    models: BTreeMap<String, Model>,
    cache: ReplyCache,
    cache_lookups: IntCounterVec,
    prompt_chars: usize,
    requests: IntCounterVec,
    recommendations: IntCounterVec,
    model_calls: IntCounterVec,
    model_tokens: IntCounterVec,
    degraded: IntGauge,
    rules_duration: Histogram,
    ai_duration: HistogramVec,
}

fn action_of(r: &Recommendation) -> &'static str {
    nanny_proto::vocabulary::label_of(r.action.as_ref().and_then(|a| a.kind.as_ref()))
}

fn target_uid(r: &Recommendation) -> &str {
    r.target.as_ref().map_or("", |t| t.uid.as_str())
}

fn rule_id(r: &Recommendation) -> &str {
    match r.source.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(source::Kind::RuleId(id)) => id,
        _ => "",
    }
}

impl Analysis {
    /// Registers the analyzer's metrics in `registry`:
    /// `nanny_analyzer_requests_total{rpc,outcome}`,
    /// `nanny_analyzer_recommendations_total{source,action}`,
    /// `nanny_analyzer_model_calls_total{outcome}`,
    /// `nanny_analyzer_model_tokens_total{direction}`, `nanny_analyzer_degraded`,
    /// `nanny_analyzer_rules_duration_seconds`,
    /// `nanny_ai_analysis_duration_seconds{model}` and
    /// `nanny_analyzer_invalid_recommendations_total{reason}`.
    ///
    /// # Errors
    /// When a metric cannot be registered.
    #[expect(
        clippy::too_many_lines,
        reason = "registers the analyzer's metrics, one short block each"
    )]
    pub fn new(config: &Config, registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "nanny_analyzer_requests_total",
                "Analyses by RPC and outcome (one per unary call, one per stream).",
            ),
            &["rpc", "outcome"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        let recommendations = IntCounterVec::new(
            Opts::new(
                "nanny_analyzer_recommendations_total",
                "Validated recommendations sent, by source (rule or model) and action.",
            ),
            &["source", "action"],
        )?;
        registry.register(Box::new(recommendations.clone()))?;
        let model_calls = IntCounterVec::new(
            Opts::new(
                "nanny_analyzer_model_calls_total",
                "Model calls by outcome (ok, or the failure: timeout, truncated, malformed, ...).",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(model_calls.clone()))?;
        let model_tokens = IntCounterVec::new(
            Opts::new(
                "nanny_analyzer_model_tokens_total",
                "Tokens of answered model calls, as the server counted them: in (prompt) or out (generated).",
            ),
            &["direction"],
        )?;
        registry.register(Box::new(model_tokens.clone()))?;
        let cache_lookups = IntCounterVec::new(
            Opts::new(
                "nanny_analyzer_model_cache_total",
                "Model answer cache lookups, by result (hit or miss).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(cache_lookups.clone()))?;
        let degraded = IntGauge::new(
            "nanny_analyzer_degraded",
            "1 while the enabled model fails and answers are rules only.",
        )?;
        registry.register(Box::new(degraded.clone()))?;
        let rules_duration = Histogram::with_opts(
            HistogramOpts::new(
                "nanny_analyzer_rules_duration_seconds",
                "Time to run the rules and validation over one snapshot.",
            )
            .buckets(vec![
                0.0001, 0.0005, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5,
            ]),
        )?;
        registry.register(Box::new(rules_duration.clone()))?;
        let ai_duration = HistogramVec::new(
            HistogramOpts::new(
                "nanny_ai_analysis_duration_seconds",
                "Time the LLM took to analyse one snapshot, by model.",
            )
            .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            &["model"],
        )?;
        registry.register(Box::new(ai_duration.clone()))?;
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
            let model = |client: ModelClient| Model {
                client,
                breaker: Breaker::new(
                    llm_config.breaker_failures,
                    Duration::from_secs(llm_config.breaker_open_secs),
                ),
            };
            for name in &llm_config.allowed_models {
                models.insert(name.clone(), model(client.with_model(name)));
            }
            models.insert(llm_config.model.clone(), model(client));
            // Expose the series from the start for the configured model.
            ai_duration.with_label_values(&[llm_config.model.as_str()]);
        }
        let validator = Validator::new(registry)?;
        Ok(Self {
            config: config.clone(),
            defaults: Settings::from_config(config),
            validator,
            models,
            cache: ReplyCache::new(Duration::from_secs(llm_config.cache_ttl_secs)),
            cache_lookups,
            prompt_chars: llm::prompt_budget(llm_config.context_tokens, llm_config.max_tokens),
            requests,
            recommendations,
            model_calls,
            model_tokens,
            degraded,
            rules_duration,
            ai_duration,
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

    /// Asks the model, when one is enabled, and merges its validated answer
    /// with `rules` (the rule recommendations for the same snapshot):
    /// agreement adds the model's confirmation to the rule recommendation,
    /// a model-only proposal is marked novel, a different action on a target
    /// a rule already covers is kept and marked as a disagreement on both.
    /// With `debug`, the answer carries the exchange with the model.
    #[expect(
        clippy::too_many_lines,
        reason = "one pass over the model's answer: call, parse, validate, merge with the rules' recommendations and count each outcome"
    )]
    pub async fn consult_model(
        &self,
        snapshot: &ClusterSnapshot,
        rules: &mut [Recommendation],
        now: SystemTime,
        settings: &Settings,
        debug: bool,
    ) -> ModelAnswer {
        let Some(Model {
            client: model,
            breaker,
        }) = self.models.get(&settings.model.model)
        else {
            return ModelAnswer::skipped(debug, "disabled");
        };
        let mut exchange = debug.then(|| ModelExchange {
            provider: model.provider().to_owned(),
            model: model.model().to_owned(),
            prompt_version: PROMPT_VERSION.to_owned(),
            ..ModelExchange::default()
        });
        let index = SnapshotIndex::new(snapshot);
        let Some(prompt) = llm::build_prompt(snapshot, &index, settings, self.prompt_chars) else {
            return ModelAnswer::ended(exchange, "no_prompt", String::new());
        };
        if let Some(e) = exchange.as_mut() {
            e.system_prompt.clone_from(&prompt.system);
            e.user_prompt.clone_from(&prompt.user);
            e.response_schema = prompt.schema.to_string();
        }
        let cached = self
            .cache
            .get(&prompt.cache_key(&model.info()), Instant::now());
        self.cache_lookups
            .with_label_values(&[if cached.is_some() { "hit" } else { "miss" }])
            .inc();
        let (reply, outcome) = match cached {
            Some(reply) => (reply, "cache_hit"),
            None => match self.call_model(model, breaker, &prompt).await {
                Ok(reply) => (reply, "ok"),
                Err(failure) => {
                    if let Some(e) = exchange.as_mut() {
                        e.raw_reply = failure.raw;
                    }
                    return ModelAnswer::ended(exchange, failure.outcome, failure.error);
                }
            },
        };
        // After the call: the first one learns the model's digest.
        let info = model.info();
        if let Some(e) = exchange.as_mut() {
            e.outcome = outcome.to_owned();
            e.raw_reply.clone_from(&reply.raw);
            e.prompt_tokens = reply.usage.prompt_tokens;
            e.completion_tokens = reply.usage.completion_tokens;
        }
        let limit = usize::try_from(settings.model.max_recommendations).unwrap_or(usize::MAX);
        let bounds = settings.bounds();
        let mut valid = Vec::new();
        for (n, item) in reply.recommendations.iter().enumerate() {
            let checked = if n >= limit {
                Err("over_max_recommendations")
            } else if prompt
                .fingerprints
                .binary_search(&item.issue_fingerprint)
                .is_err()
            {
                // Only the issues the prompt offered (the policy's triggers).
                self.validator.count("issue_not_in_prompt");
                Err("issue_not_in_prompt")
            } else {
                llm::to_recommendation(item, snapshot, &index, settings, &info)
                    .map_err(|rejected| {
                        self.validator.count(rejected.label());
                        rejected.label()
                    })
                    .and_then(|mut recommendation| {
                        recommendation.created_at = Some(now.into());
                        self.validator
                            .check(&recommendation, &index, &bounds, now)
                            .map_err(|invalid| invalid.label())?;
                        Ok(recommendation)
                    })
            };
            match checked {
                Ok(recommendation) => valid.push(recommendation),
                Err(reason) => {
                    if let Some(e) = exchange.as_mut() {
                        e.rejected.push(format!(
                            "#{n} {} on {}: {reason}",
                            item.action, item.target_uid
                        ));
                    }
                }
            }
        }
        ModelAnswer {
            separate: Some(merge(rules, valid, &info)),
            exchange,
        }
    }

    /// Calls the model unless its breaker is open; caches a good answer.
    async fn call_model(
        &self,
        model: &ModelClient,
        breaker: &Breaker,
        prompt: &llm::Prompt,
    ) -> Result<llm::ModelReply, CallFailure> {
        if !breaker.allow(Instant::now()) {
            self.model_calls.with_label_values(&["breaker_open"]).inc();
            return Err(CallFailure {
                outcome: "breaker_open",
                error: "the model failed repeatedly; rules only until the breaker half-opens"
                    .to_owned(),
                raw: String::new(),
            });
        }
        let start = Instant::now();
        let mut raw = String::new();
        let reply = model.complete_keeping_raw(prompt, &mut raw).await;
        self.ai_duration
            .with_label_values(&[model.model()])
            .observe(start.elapsed().as_secs_f64());
        let open = breaker.record(reply.is_ok(), Instant::now());
        // Degraded while failing; health stays SERVING (rules still answer).
        self.degraded.set(i64::from(reply.is_err()));
        match reply {
            Ok(reply) => {
                self.model_calls.with_label_values(&["ok"]).inc();
                self.model_tokens
                    .with_label_values(&["in"])
                    .inc_by(reply.usage.prompt_tokens);
                self.model_tokens
                    .with_label_values(&["out"])
                    .inc_by(reply.usage.completion_tokens);
                // Keyed with the digest this call may just have learnt.
                let key = prompt.cache_key(&model.info());
                self.cache.put(key, reply.clone(), Instant::now());
                Ok(reply)
            }
            Err(error) => {
                tracing::warn!(%error, breaker_open = open, "The model failed; answering with rules only.");
                self.model_calls.with_label_values(&[error.label()]).inc();
                Err(CallFailure {
                    outcome: error.label(),
                    error: error.to_string(),
                    raw,
                })
            }
        }
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

/// One model a request may ask for, with its own circuit breaker: a model
/// the server cannot serve opens only its own.
#[derive(Debug)]
struct Model {
    client: ModelClient,
    breaker: Breaker,
}

/// Why a model call gave nothing.
struct CallFailure {
    outcome: &'static str,
    error: String,
    raw: String,
}

/// What consulting the model gave.
#[derive(Debug, Default)]
pub struct ModelAnswer {
    /// The model-only recommendations, or `None` when no model answered
    /// (disabled, nothing to ask, or failed: rules only).
    pub separate: Option<Vec<Recommendation>>,
    /// With `debug`: the exchange with the model.
    pub exchange: Option<ModelExchange>,
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
        }
    }

    fn ended(exchange: Option<ModelExchange>, outcome: &str, error: String) -> Self {
        Self {
            separate: None,
            exchange: exchange.map(|e| ModelExchange {
                outcome: outcome.to_owned(),
                error,
                ..e
            }),
        }
    }
}

/// Model answers by [`llm::Prompt::cache_key`], each kept for the TTL.
#[derive(Debug)]
struct ReplyCache {
    ttl: Duration,
    entries: std::sync::Mutex<HashMap<String, (Instant, llm::ModelReply)>>,
}

/// Most answers kept; issues churn slowly, so this is many snapshots' worth.
const CACHE_ENTRIES: usize = 1024;

impl ReplyCache {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &str, now: Instant) -> Option<llm::ModelReply> {
        // A poisoned lock (a panic mid-update) fails closed: no cached reply.
        let Ok(entries) = self.entries.lock() else {
            return None;
        };
        entries
            .get(key)
            .filter(|(at, _)| now.duration_since(*at) < self.ttl)
            .map(|(_, reply)| reply.clone())
    }

    fn put(&self, key: String, reply: llm::ModelReply, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= CACHE_ENTRIES {
            entries.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
            if entries.len() >= CACHE_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (now, reply));
    }
}

/// Merges validated model recommendations into the rule ones; returns those
/// that stay separate.
fn merge(
    rules: &mut [Recommendation],
    model: Vec<Recommendation>,
    info: &ModelInfo,
) -> Vec<Recommendation> {
    let mut separate = Vec::new();
    for mut candidate in model {
        let same_target: Vec<usize> = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| target_uid(r) == target_uid(&candidate))
            .map(|(i, _)| i)
            .collect();
        if let Some(agreeing) = same_target
            .iter()
            .find(|i| action_of(&rules[**i]) == action_of(&candidate))
        {
            rules[*agreeing].evidence_refs.push(format!(
                "model:{} agrees (confidence {})",
                info.model, candidate.confidence
            ));
            continue;
        }
        if same_target.is_empty() {
            candidate
                .evidence_refs
                .push("novel: no rule proposed an action for this target".to_owned());
        } else {
            for i in &same_target {
                let rule = rule_id(&rules[*i]).to_owned();
                candidate
                    .evidence_refs
                    .push(format!("disagrees-with-rule:{rule}"));
                rules[*i]
                    .evidence_refs
                    .push(format!("model:{} disagrees", info.model));
            }
        }
        separate.push(candidate);
    }
    separate
}

/// An issue without its timestamps: what decides whether it changed.
pub(crate) fn essence(issue: &Issue) -> Issue {
    Issue {
        first_seen: None,
        last_seen: None,
        ..issue.clone()
    }
}
