//! One request's effective settings: the analyzer's configuration tuned by
//! the HealingPolicy's [`AnalysisSettings`] (sent by the coordinator).
//!
//! A policy can tune a rule within the bounds the configuration file has
//! (restart threshold, rollout share, factors, usage threshold), switch rules
//! off, narrow the issues analysed, lower a ceiling, raise the stale-Job age,
//! pick one of the models the analyzer was configured to allow and add
//! instructions per scenario. It can never raise a ceiling above the
//! analyzer's own, lower the stale-Job age below it, switch on drains the
//! configuration switched off, offer the model an action the policy does not
//! allow, or name a model the operator did not list. Anything out of range fails the request with the field's
//! name: a half-understood policy is not analysed.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::LazyLock,
};

use nanny_proto::v1::{ActionType, AnalysisSettings, IssueKind, RuleOverrides};
use nanny_proto::vocabulary;

use crate::{
    catalog::RULES,
    config::{Config, RulesConfig},
    error::Error,
    validate::Bounds,
};

/// The scenarios custom prompts are keyed by, with the issue kinds each
/// covers; `general` applies to every prompt.
pub const SCENARIOS: &[(&str, &[IssueKind])] = &[
    ("general", &[]),
    (
        "crashAnalysis",
        &[
            IssueKind::CrashLoopBackOff,
            IssueKind::HighRestartRate,
            IssueKind::ReadinessFailing,
            IssueKind::RolloutStuck,
            IssueKind::DeploymentUnavailable,
            IssueKind::ReplicaFailure,
            IssueKind::LivenessProbeFailing,
            IssueKind::StartupProbeFailing,
            IssueKind::ContainerRestarting,
            IssueKind::StatefulsetNotProgressing,
            IssueKind::DaemonsetUnavailable,
            IssueKind::ServiceNoReadyEndpoints,
        ],
    ),
    (
        "memoryAnalysis",
        &[
            IssueKind::OomKilled,
            IssueKind::MemoryPressure,
            IssueKind::OomPredicted,
        ],
    ),
    (
        "performanceAnalysis",
        &[
            IssueKind::CpuThrottling,
            IssueKind::HpaAtMax,
            IssueKind::HpaAtMaxRising,
            IssueKind::HpaUnableToScale,
            IssueKind::HpaTargetWithoutRequests,
            IssueKind::OverProvisioned,
            IssueKind::WorkloadIdle,
        ],
    ),
    (
        "nodeAnalysis",
        &[
            IssueKind::NodeNotReady,
            IssueKind::NodeMemoryPressure,
            IssueKind::NodeDiskPressure,
            IssueKind::NodePidPressure,
            IssueKind::NodeCordoned,
            IssueKind::NodeNetworkUnavailable,
            IssueKind::NodeProblem,
            IssueKind::NodePredictedExhausted,
            IssueKind::NodeDiskPredictedFull,
            IssueKind::Evicted,
            IssueKind::PodStuckTerminating,
            IssueKind::PdbBlockingDisruptions,
        ],
    ),
    (
        "storageAnalysis",
        &[
            IssueKind::PvcNearlyFull,
            IssueKind::PvcPredictedFull,
            IssueKind::PvcPending,
            IssueKind::PvcLost,
            IssueKind::VolumeMountFailing,
            IssueKind::PvReleased,
            IssueKind::PvFailed,
        ],
    ),
    (
        "jobAnalysis",
        &[
            IssueKind::JobFailed,
            IssueKind::JobCompletedStale,
            IssueKind::CronjobSuspended,
            IssueKind::CronjobMissedSchedule,
            IssueKind::CronjobInvalidSchedule,
        ],
    ),
    (
        "configAnalysis",
        &[
            IssueKind::ImagePullBackOff,
            IssueKind::CreateContainerConfigError,
            IssueKind::Unschedulable,
            IssueKind::CreateContainerError,
            IssueKind::RunContainerError,
            IssueKind::InitContainerFailing,
            IssueKind::TlsCertificateExpiring,
            IssueKind::NamespaceStuckTerminating,
            IssueKind::PodSandboxFailing,
            IssueKind::SchedulingGated,
            IssueKind::ServiceSelectsNothing,
            IssueKind::StatefulsetServiceMissing,
            IssueKind::WebhookNoEndpoints,
            IssueKind::NetworkPolicySelectsNothing,
            IssueKind::IngressMisconfigured,
        ],
    ),
];

/// Longest custom prompt (a policy's `ai.prompts` entry), characters.
pub const MAX_GUIDANCE_CHARS: usize = 2000;

/// The actions a model may pick (the vocabulary's `ModelUse::Offered`,
/// `report_only` last). Each needs no parameter from the model: the
/// analyzer derives them from the rules' configuration.
pub static MODEL_ACTIONS: LazyLock<Vec<&'static str>> = LazyLock::new(vocabulary::model_labels);

/// The model's action name of an action type, if a model may propose it.
fn model_action(t: ActionType) -> Option<&'static str> {
    vocabulary::info(t)
        .filter(|a| a.model == vocabulary::ModelUse::Offered)
        .map(|a| a.label)
}

/// What the model path uses for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSettings {
    /// The model asked, one the analyzer was configured to allow.
    pub model: String,
    /// Proposals below this confidence (0–1) are dropped.
    pub min_confidence: f64,
    /// Most proposals taken from one reply.
    pub max_recommendations: u32,
    /// The action names the schema offers, always ending with `report_only`.
    pub actions: Vec<&'static str>,
    /// Extra instructions by scenario name.
    pub guidance: BTreeMap<&'static str, String>,
}

/// One request's effective settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The rules' configuration with the policy's overrides and ceilings.
    pub rules: RulesConfig,
    /// Issue kinds analysed; `None` = all.
    pub triggers: Option<BTreeSet<i32>>,
    /// The model path's settings.
    pub model: ModelSettings,
}

fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::InvalidSettings {
        field: format!("settings.{field}"),
        reason: reason.into(),
    }
}

/// Sets `into` to `value` when there is one within `range`.
fn set<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    value: Option<T>,
    range: std::ops::RangeInclusive<T>,
    into: &mut T,
) -> Result<(), Error> {
    match value {
        Some(v) if range.contains(&v) => *into = v,
        Some(_) => {
            return Err(invalid(
                field,
                format!("must be between {} and {}", range.start(), range.end()),
            ));
        }
        None => {}
    }
    Ok(())
}

impl Settings {
    /// The parameter bounds the validator enforces: the rules' own ceilings
    /// and stale-Job age, policy overrides included.
    pub fn bounds(&self) -> Bounds {
        Bounds::from(&self.rules)
    }

    /// The analyzer's configuration alone (no policy).
    pub fn from_config(config: &Config) -> Self {
        Self {
            rules: config.rules.clone(),
            triggers: None,
            model: ModelSettings {
                model: config.llm.model.clone(),
                min_confidence: config.llm.min_confidence,
                max_recommendations: config.llm.max_recommendations,
                actions: MODEL_ACTIONS.to_vec(),
                guidance: BTreeMap::new(),
            },
        }
    }

    /// `config` tuned by `policy`. The model fields are checked only when
    /// `with_model`: a policy whose model settings are wrong still gets its
    /// rules.
    ///
    /// # Errors
    /// [`Error::InvalidSettings`] naming the first field out of range.
    pub fn resolve(
        config: &Config,
        policy: Option<&AnalysisSettings>,
        with_model: bool,
    ) -> Result<Self, Error> {
        let mut settings = Self::from_config(config);
        let Some(policy) = policy else {
            return Ok(settings);
        };
        if let Some(overrides) = &policy.rules {
            apply_overrides(&mut settings.rules, overrides)?;
        }
        settings.apply_ceilings(policy);
        settings.rules.allowed_actions =
            Some(policy.allowed_actions.iter().map(|a| a.r#type).collect());
        if !policy.triggers.is_empty() {
            settings.triggers = Some(policy.triggers.iter().copied().collect());
        }
        settings.model.actions = policy
            .allowed_actions
            .iter()
            .filter_map(|a| ActionType::try_from(a.r#type).ok().and_then(model_action))
            .chain(["report_only"])
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if with_model {
            settings.model.apply(config, policy)?;
        }
        Ok(settings)
    }

    /// Lowers the rules' ceilings (and so the validator's bounds) to the
    /// policy's; a policy ceiling above the analyzer's own changes nothing.
    fn apply_ceilings(&mut self, policy: &AnalysisSettings) {
        let rules = &mut self.rules;
        for allowed in &policy.allowed_actions {
            match ActionType::try_from(allowed.r#type) {
                Ok(ActionType::PatchResources) => {
                    if let Some(max) = allowed.max_memory_bytes {
                        rules.oom.max_memory_bytes = rules.oom.max_memory_bytes.min(max);
                    }
                }
                Ok(ActionType::ScaleHpa) => {
                    if let Some(max) = allowed.max_replicas {
                        rules.hpa.max_replicas = rules.hpa.max_replicas.min(max);
                    }
                }
                Ok(ActionType::ExpandPvc) => {
                    if let Some(max) = allowed.max_storage_bytes {
                        rules.pvc.max_storage_bytes = rules.pvc.max_storage_bytes.min(max);
                    }
                }
                _ => {}
            }
        }
    }
}

fn apply_overrides(rules: &mut RulesConfig, o: &RuleOverrides) -> Result<(), Error> {
    for id in &o.disabled {
        if !RULES.iter().any(|r| r.id == id) {
            let known: Vec<&str> = RULES.iter().map(|r| r.id).collect();
            return Err(invalid(
                "rules.disabled",
                format!("unknown rule id {id:?} (known: {})", known.join(", ")),
            ));
        }
        rules.disabled.insert(id.clone());
    }
    set(
        "rules.crashloop_min_restarts",
        o.crashloop_min_restarts,
        1..=1000,
        &mut rules.crashloop.min_restarts,
    )?;
    set(
        "rules.crashloop_rollout_percent",
        o.crashloop_rollout_percent,
        1..=100,
        &mut rules.crashloop.rollout_percent,
    )?;
    set(
        "rules.oom_memory_factor",
        o.oom_memory_factor,
        1.0..=4.0,
        &mut rules.oom.factor,
    )?;
    set(
        "rules.hpa_max_replicas_factor",
        o.hpa_max_replicas_factor,
        1.0..=4.0,
        &mut rules.hpa.factor,
    )?;
    set(
        "rules.pvc_expand_factor",
        o.pvc_expand_factor,
        1.0..=4.0,
        &mut rules.pvc.factor,
    )?;
    // A floor a policy may raise, never lower below the configuration's.
    let floor = rules.stale_job.min_age_secs;
    set(
        "rules.stale_job_min_age_seconds",
        o.stale_job_min_age_seconds,
        floor..=floor.max(31_536_000),
        &mut rules.stale_job.min_age_secs,
    )?;
    set(
        "rules.pvc_usage_percent",
        o.pvc_usage_percent,
        1.0..=100.0,
        &mut rules.pvc.usage_percent,
    )?;
    // A policy may switch drains off, never on against the configuration.
    if let Some(drain) = o.drain_not_ready {
        rules.node.drain_not_ready &= drain;
    }
    Ok(())
}

impl ModelSettings {
    fn apply(&mut self, config: &Config, policy: &AnalysisSettings) -> Result<(), Error> {
        let llm = &config.llm;
        if !policy.model.is_empty() {
            if policy.model != llm.model && !llm.allowed_models.contains(&policy.model) {
                return Err(invalid(
                    "model",
                    format!(
                        "{:?} is neither llm.model ({:?}) nor one of llm.allowed_models {:?}",
                        policy.model, llm.model, llm.allowed_models
                    ),
                ));
            }
            self.model.clone_from(&policy.model);
        }
        set(
            "min_confidence",
            policy.min_confidence,
            0.0..=1.0,
            &mut self.min_confidence,
        )?;
        set(
            "max_recommendations",
            policy.max_recommendations,
            1..=100,
            &mut self.max_recommendations,
        )?;
        for (scenario, text) in &policy.prompts {
            let Some((name, _)) = SCENARIOS.iter().find(|(name, _)| name == scenario) else {
                let known: Vec<&str> = SCENARIOS.iter().map(|(n, _)| *n).collect();
                return Err(invalid(
                    "prompts",
                    format!(
                        "unknown scenario {scenario:?} (known: {})",
                        known.join(", ")
                    ),
                ));
            };
            if text.chars().count() > MAX_GUIDANCE_CHARS {
                return Err(invalid(
                    &format!("prompts[{scenario}]"),
                    format!("longer than {MAX_GUIDANCE_CHARS} characters"),
                ));
            }
            if !text.trim().is_empty() {
                self.guidance.insert(name, text.trim().to_owned());
            }
        }
        Ok(())
    }

    /// The guidance for a prompt about issues of `kinds`: `general` first,
    /// then each scenario with an issue in the prompt, in [`SCENARIOS`] order.
    pub fn guidance_for(&self, kinds: &BTreeSet<i32>) -> Vec<(&'static str, &str)> {
        SCENARIOS
            .iter()
            .filter(|(name, covered)| {
                *name == "general" || covered.iter().any(|k| kinds.contains(&(*k as i32)))
            })
            .filter_map(|(name, _)| self.guidance.get(name).map(|t| (*name, t.as_str())))
            .collect()
    }
}

#[cfg(test)]
mod tests;
