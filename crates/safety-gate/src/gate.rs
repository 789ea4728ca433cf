//! The decision procedure. Every check either leaves the level as it is or
//! makes it stricter; anything the gate cannot fully validate is DENIED.
//!
//! Order: shape → policy present → snapshot age → protections and
//! never-actions (no policy can lift them) → parameters → policy allow-list
//! and approval level → model confidence → storm guard → disruption and
//! PDBs → mode → stateful limits.

use std::{
    sync::Mutex,
    time::{Duration, SystemTime},
};

use nanny_proto::v1::{
    Action, ActionType, Decision, ObjectRef, OutcomeReport, ReviewRequest, action::Kind,
};
use nanny_proto::vocabulary;
use tokio::time::Instant;

use crate::{
    config::Config,
    history::Past,
    limits::{Content, Keys, Limiter, Limits, limit_target},
};

/// How far a recommendation may go, strictest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Execute without a human.
    Approved,
    /// Execute after a human approves.
    NeedsApproval,
    /// Only dry-run.
    DryRunOnly,
    /// Do not act.
    Denied,
}

impl Level {
    /// The wire decision.
    pub fn decision(self) -> Decision {
        match self {
            Self::Approved => Decision::Approved,
            Self::NeedsApproval => Decision::NeedsApproval,
            Self::DryRunOnly => Decision::DryRunOnly,
            Self::Denied => Decision::Denied,
        }
    }
}

/// The outcome of one review: level plus the rules that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// Final level.
    pub level: Level,
    /// Rule ids that raised the level (or confirmed the default).
    pub matched_rules: Vec<&'static str>,
    /// One human-readable reason per rule.
    pub reasons: Vec<String>,
    /// A denial by a limit that passes (cooldown, rate limit, open
    /// breaker): how long until the same proposal could pass.
    pub retry_after: Option<Duration>,
}

impl Review {
    fn start(level: Level, rule: &'static str, reason: impl Into<String>) -> Self {
        Self {
            level,
            matched_rules: vec![rule],
            reasons: vec![reason.into()],
            retry_after: None,
        }
    }

    /// Raises the level to at least `level`, recording why.
    fn tighten(&mut self, level: Level, rule: &'static str, reason: impl Into<String>) {
        self.level = self.level.max(level);
        self.matched_rules.push(rule);
        self.reasons.push(reason.into());
    }

    fn denied(rule: &'static str, reason: impl Into<String>) -> Self {
        Self::start(Level::Denied, rule, reason)
    }

    /// Denied by a limit that passes: the caller may propose again later.
    fn limited(&mut self, refusal: crate::limits::Refusal) {
        self.tighten(Level::Denied, refusal.rule, refusal.reason);
        if !refusal.retry_after.is_zero() {
            self.retry_after = Some(
                self.retry_after
                    .unwrap_or_default()
                    .max(refusal.retry_after),
            );
        }
    }
}

/// Clock skew tolerated on snapshot timestamps from the future.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);

/// Kinds whose modification is never allowed.
const RBAC_KINDS: [&str; 4] = ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"];
/// The only kinds DeleteResource may ever name; everything else (StatefulSets,
/// PersistentVolumes, Namespaces, CRDs, Nodes, unknown or ill-cased kinds) is
/// never deleted.
const DELETABLE_KINDS: [&str; 6] = [
    "Pod",
    "Job",
    "CronJob",
    "ReplicaSet",
    "Deployment",
    "DaemonSet",
];
pub use nanny_proto::vocabulary::action_type;

/// The gate: immutable config plus the limiter's state.
#[derive(Debug)]
pub struct Gate {
    config: Config,
    limiter: Mutex<Limiter>,
}

/// The content hash of each step of `plan` on `target`; none unless the
/// first is `first` (the step under review).
fn plan_contents(plan: &[Action], target: &ObjectRef, first: &Content) -> Vec<String> {
    let steps: Vec<String> = plan
        .iter()
        .map(|step| content_hash(target, Some(step)))
        .collect();
    if steps.first() == first.exact.as_ref() {
        steps
    } else {
        Vec::new()
    }
}

/// The exact content a recommendation id is counted for: target uid and
/// the action with its parameters, hashed (hex SHA-256).
pub fn content_hash(target: &ObjectRef, action: Option<&Action>) -> String {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(target.uid.as_bytes());
    hasher.update([0]);
    hasher.update(
        action
            .map(prost::Message::encode_to_vec)
            .unwrap_or_default(),
    );
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Gate {
    /// A gate with empty limiter state.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            limiter: Mutex::new(Limiter::default()),
        }
    }

    /// The gate's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Reviews one request at wall-clock `now` and monotonic `instant`.
    /// An APPROVED result is counted against the limits.
    pub fn review(&self, request: &ReviewRequest, now: SystemTime, instant: Instant) -> Review {
        let mut review = self.review_stateless(request, now);
        if review.level <= Level::NeedsApproval {
            self.apply_limits(request, &mut review, instant);
        }
        // A human's yes turns "needs approval" into approved, after every
        // check a human cannot overrule; it never lifts a denial or a
        // dry-run-only policy. Its slot is taken when the outcome is reported.
        if review.level == Level::NeedsApproval
            && let Some(human) = request.human_approval.as_ref().filter(|h| !h.by.is_empty())
        {
            review.level = Level::Approved;
            review.matched_rules.push("human-approved");
            review.reasons.push(format!("approved by {}", human.by));
        }
        review
    }

    /// Replays approvals and outcomes from the audit log, so that rate
    /// limits, cooldowns and breakers survive a restart. Records whose time
    /// cannot be placed on this process's clock count as happening now —
    /// stricter, never looser. Returns how many records were replayed.
    pub fn restore(
        &self,
        records: &[nanny_common::audit::AuditRecord],
        now: SystemTime,
        instant: Instant,
    ) -> usize {
        self.replay(&crate::history::from_audit(records), now, instant)
    }

    /// How far back history still matters: the rate window or the cooldown,
    /// whichever is longer, plus a breaker's open period.
    pub fn horizon(&self) -> Duration {
        let defaults = &self.config.limits;
        Duration::from_secs(
            3600u64.max(u64::from(defaults.cooldown_seconds))
                + u64::from(defaults.breaker_open_seconds),
        )
    }

    /// Replays past approvals and outcomes (from the audit log, the
    /// HealingAction history, or both merged) in time order. Entries whose
    /// time is unknown count as happening now — stricter, never looser;
    /// entries older than [`Gate::horizon`] are skipped. Returns how many
    /// were replayed.
    pub fn replay(&self, past: &[Past], now: SystemTime, instant: Instant) -> usize {
        let horizon = self.horizon();
        let mut ordered: Vec<&Past> = past.iter().collect();
        // Stable: entries at the same time keep their order (the audit log's).
        ordered.sort_by_key(|p| p.time.unwrap_or(now));
        let Ok(mut limiter) = self.limiter.lock() else {
            return 0;
        };
        let mut replayed = 0;
        for entry in ordered {
            let age = entry
                .time
                .map(|t| now.duration_since(t).unwrap_or_default());
            if age.is_some_and(|age| age > horizon) {
                continue;
            }
            let at = age
                .and_then(|age| instant.checked_sub(age))
                .unwrap_or(instant);
            let keys = Keys {
                policy: &entry.policy,
                namespace: &entry.namespace,
                target: &entry.target,
                action: &entry.action,
            };
            let content = Content::new(&keys, entry.content.clone());
            limiter.record_approval(&keys, at, &entry.recommendation_id, content);
            if let Some(outcome) = &entry.outcome {
                let limits = self.effective_limits(Some(&outcome.limits));
                limiter.record_outcome(
                    &entry.target,
                    &entry.action,
                    outcome.succeeded,
                    &limits,
                    at,
                );
            }
            replayed += 1;
        }
        replayed
    }

    /// Records how an executed action ended: the action takes its rate slot
    /// (once, also when a human approved it) and its outcome drives the breaker.
    pub fn record_outcome(&self, report: &OutcomeReport, succeeded: bool, instant: Instant) {
        let Some(target) = &report.target else { return };
        let limits = self.effective_limits(report.limits.as_ref());
        let action = ActionType::try_from(report.action_type)
            .unwrap_or(ActionType::Unspecified)
            .as_str_name();
        let key = limit_target(&report.workload_uid, &target.uid);
        if let Ok(mut limiter) = self.limiter.lock() {
            let keys = Keys {
                policy: &report.policy_ref,
                namespace: &target.namespace,
                target: key,
                action,
            };
            // The report carries no parameters: its content is the scope.
            let content = Content::new(&keys, None);
            limiter.record_approval(&keys, instant, &report.recommendation_id, content);
            limiter.record_outcome(key, action, succeeded, &limits, instant);
        }
    }

    fn effective_limits(&self, policy: Option<&nanny_proto::v1::GateLimits>) -> Limits {
        let d = &self.config.limits;
        let or = |value: u32, default: u32| if value == 0 { default } else { value };
        let p = policy.cloned().unwrap_or_default();
        Limits {
            global_per_hour: d.global_actions_per_hour,
            policy_per_hour: or(p.max_actions_per_hour, d.actions_per_hour),
            namespace_per_hour: or(
                p.max_actions_per_namespace_per_hour,
                d.actions_per_namespace_per_hour,
            ),
            target_per_hour: or(
                p.max_actions_per_target_per_hour,
                d.actions_per_target_per_hour,
            ),
            cooldown: Duration::from_secs(u64::from(or(p.cooldown_seconds, d.cooldown_seconds))),
            breaker_threshold: or(p.breaker_failure_threshold, d.breaker_failure_threshold),
            breaker_open_for: Duration::from_secs(u64::from(or(
                p.breaker_open_seconds,
                d.breaker_open_seconds,
            ))),
        }
    }

    fn apply_limits(&self, request: &ReviewRequest, review: &mut Review, instant: Instant) {
        // review_stateless only lets complete requests through.
        let (Some(recommendation), Some(policy)) = (&request.recommendation, &request.policy)
        else {
            review.tighten(Level::Denied, "malformed", "incomplete request");
            return;
        };
        let (Some(target), Some(kind)) = (
            &recommendation.target,
            recommendation.action.as_ref().and_then(|a| a.kind.as_ref()),
        ) else {
            review.tighten(Level::Denied, "malformed", "incomplete request");
            return;
        };
        let limits = self.effective_limits(policy.limits.as_ref());
        let workload_uid = request
            .context
            .as_ref()
            .map_or("", |c| c.workload_uid.as_str());
        let keys = Keys {
            policy: &request.policy_ref,
            namespace: &target.namespace,
            target: limit_target(workload_uid, &target.uid),
            action: action_type(kind).as_str_name(),
        };
        let Ok(mut limiter) = self.limiter.lock() else {
            review.tighten(Level::Denied, "internal-error", "limiter state unavailable");
            return;
        };
        let content = Content::new(
            &keys,
            Some(content_hash(target, recommendation.action.as_ref())),
        );
        // A recommendation reviewed again (a caller that crashed or lost a
        // write before recording the verdict) already holds its slot: its
        // own approval must not count against it. Its breaker still does.
        // The slot is the id's only for the content it was counted for: the
        // same id with another target, action or parameters is a replay.
        match limiter.counted(&recommendation.id) {
            Some(counted) if counted.matches(&content) => {
                if let Err(refusal) = limiter.check_breaker(&keys, &limits, instant) {
                    review.limited(refusal);
                }
                return;
            }
            Some(_) => {
                review.tighten(
                    Level::Denied,
                    "replayed-id",
                    format!(
                        "recommendation id {:?} was already counted for another target, action or parameters",
                        recommendation.id
                    ),
                );
                return;
            }
            None => {}
        }
        // A plan's later step rides on its first step's slot.
        if let Some(plan) = &recommendation.plan_step
            && let Some(checked) = limiter.plan_step(
                plan,
                &keys,
                &limits,
                instant,
                &recommendation.id,
                content.clone(),
            )
        {
            if let Err(refusal) = checked {
                review.limited(refusal);
            }
            return;
        }
        let checked = limiter.check(&keys, &limits, instant);
        if let (Ok(()), Some(plan)) = (&checked, &recommendation.plan_step) {
            let steps = plan_contents(&recommendation.plan, target, &content);
            limiter.record_plan(plan, keys.target, steps, instant);
        }
        match checked {
            Err(refusal) => review.limited(refusal),
            // Only autonomous approvals of single actions take a slot now;
            // a human approval, or a plan's step (reviewed with the whole
            // plan before it runs), takes one when its execution is
            // reported (record_outcome).
            Ok(()) if review.level == Level::Approved && recommendation.plan_step.is_none() => {
                limiter.record_approval(&keys, instant, &recommendation.id, content);
            }
            Ok(()) => {}
        }
    }

    /// Everything but the stateful limits: a pure function of config,
    /// request and wall-clock time.
    pub fn review_stateless(&self, request: &ReviewRequest, now: SystemTime) -> Review {
        let (recommendation, kind, target, source) = match shape(request) {
            Ok(shape) => shape,
            Err(review) => return review,
        };
        let Some(policy) = &request.policy else {
            return Review::denied(
                "no-policy",
                "no HealingPolicy in force for this recommendation",
            );
        };
        let Some(context) = &request.context else {
            return Review::denied(
                "malformed",
                "no review context: protections cannot be checked",
            );
        };
        if let Some(review) = self.stale(request, now) {
            return review;
        }
        if let Some(review) = self
            .protections(kind, target, &context.target_labels)
            .or_else(|| self.owner_protection(&context.owner_labels))
        {
            return review;
        }
        // Only report-only actions touch nothing; every other one needs to
        // know that nothing the target belongs to is protected.
        if !context.facts_complete && !matches!(kind, Kind::ReportOnly(_)) {
            return Review::denied(
                "facts-missing",
                format!(
                    "the snapshot does not show {} {} and every object it belongs to: whether it is protected is unknown",
                    target.kind, target.name
                ),
            );
        }
        if !(0.0..=1.0).contains(&policy.ai_min_confidence) {
            return Review::denied(
                "malformed",
                "policy minimum confidence is not a number between 0 and 1",
            );
        }
        let allowed = match allowed_entry(policy, kind, &request.policy_ref) {
            Ok(allowed) => allowed,
            Err(review) => return review,
        };

        let mut review = match default_level(kind, context, allowed, now) {
            Ok(review) => review,
            Err(review) => return review,
        };
        if let Err(review) = policy_override(&mut review, allowed, kind) {
            return review;
        }

        untrusted_model(&mut review, recommendation, source, policy);

        self.storm_guard(kind, context, &mut review);
        // The disruption cap, budgets and a drain's pods concern the actions
        // the vocabulary says take running pods down.
        if vocabulary::of(kind).disruptive {
            let limits = policy.limits.unwrap_or_default();
            disruption(kind, context, &limits, self, &mut review);
            if let Kind::DrainNode(_) = kind {
                drain::drain(kind, target, context, policy, &limits, self, &mut review);
            }
        }

        if let Err(review) = mode(&mut review, policy) {
            return review;
        }
        review
    }

    fn stale(&self, request: &ReviewRequest, now: SystemTime) -> Option<Review> {
        let Some(taken) = request
            .snapshot_taken_at
            .and_then(|t| SystemTime::try_from(t).ok())
        else {
            return Some(Review::denied(
                "stale-snapshot",
                "snapshot time missing or invalid",
            ));
        };
        let max_age = Duration::from_secs(self.config.max_snapshot_age_secs);
        match now.duration_since(taken) {
            Ok(age) if age > max_age => Some(Review::denied(
                "stale-snapshot",
                format!(
                    "snapshot is {}s old; the limit is {}s",
                    age.as_secs(),
                    max_age.as_secs()
                ),
            )),
            Err(ahead) if ahead.duration() > MAX_CLOCK_SKEW => Some(Review::denied(
                "stale-snapshot",
                "snapshot time is in the future",
            )),
            _ => None,
        }
    }

    /// A protected label on one of the target's owners protects the target.
    fn owner_protection(
        &self,
        owner_labels: &std::collections::HashMap<String, String>,
    ) -> Option<Review> {
        self.config.protected.labels.iter().find_map(|label| {
            let (key, value) = label.split_once('=')?;
            owner_labels.get(key).is_some_and(|v| v == value).then(|| {
                Review::denied(
                    "protected-owner",
                    format!("an owner of the target carries the protected label {label}"),
                )
            })
        })
    }

    fn protections(
        &self,
        kind: &Kind,
        target: &ObjectRef,
        labels: &std::collections::HashMap<String, String>,
    ) -> Option<Review> {
        let protected = &self.config.protected;
        if protected.namespaces.contains(&target.namespace) {
            return Some(Review::denied(
                "protected-namespace",
                format!("namespace {} is protected", target.namespace),
            ));
        }
        if protected
            .kinds
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&target.kind))
        {
            return Some(Review::denied(
                "protected-kind",
                format!("kind {} is protected", target.kind),
            ));
        }
        for label in &protected.labels {
            if let Some((key, value)) = label.split_once('=')
                && labels.get(key).is_some_and(|v| v == value)
            {
                return Some(Review::denied(
                    "protected-label",
                    format!("target carries the protected label {label}"),
                ));
            }
        }
        if RBAC_KINDS
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&target.kind))
        {
            return Some(Review::denied(
                "never-modify-rbac",
                "RBAC objects are never modified",
            ));
        }
        if matches!(kind, Kind::DeleteResource(_))
            && !DELETABLE_KINDS.contains(&target.kind.as_str())
        {
            return Some(Review::denied(
                "never-delete",
                format!(
                    "{} objects are never deleted (deletable: {})",
                    target.kind,
                    DELETABLE_KINDS.join(", ")
                ),
            ));
        }
        None
    }

    fn storm_guard(
        &self,
        kind: &Kind,
        context: &nanny_proto::v1::ReviewContext,
        review: &mut Review,
    ) {
        let storm = &self.config.storm;
        let node_action = vocabulary::of(kind).on_nodes();
        if node_action && context.nodes_total == 0 {
            // Without a node count the storm guard cannot judge: fail closed.
            review.tighten(
                Level::Denied,
                "storm-guard-nodes",
                "node health of the cluster is unknown: no node actions",
            );
        } else if node_action
            && u64::from(context.nodes_unhealthy) * 100
                > u64::from(context.nodes_total) * u64::from(storm.max_unhealthy_node_percent)
        {
            review.tighten(
                Level::Denied,
                "storm-guard-nodes",
                format!(
                    "{} of {} nodes are unhealthy (over {}%): no node actions",
                    context.nodes_unhealthy, context.nodes_total, storm.max_unhealthy_node_percent
                ),
            );
        }
        if context.open_issues > storm.max_open_issues {
            review.tighten(
                Level::NeedsApproval,
                "storm-guard-issues",
                format!(
                    "{} open issues (over {}): autonomous actions paused",
                    context.open_issues, storm.max_open_issues
                ),
            );
        }
    }
}

mod approval;

mod drain;

mod stages;

use self::approval::{default_level, disruption};
use self::stages::{allowed_entry, mode, policy_override, shape, untrusted_model};

#[cfg(test)]
mod tests;
