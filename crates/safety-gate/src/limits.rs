//! Stateful limits: rate limits, per-target cooldowns and circuit breakers.
//!
//! Time is `tokio::time::Instant`, so tests drive it with `tokio::time::pause()`.
//! State is in memory; at start-up it is rebuilt from the audit log and the
//! HealingAction history (see [`crate::history`]).

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use nanny_proto::{v1::PlanStep, vocabulary::MAX_PLAN_STEPS};
use tokio::time::Instant;

const HOUR: Duration = Duration::from_secs(3600);

/// Effective limits for one review (policy values with defaults applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Actions per hour across the whole cluster (gate config).
    pub global_per_hour: u32,
    /// Actions per hour under one policy.
    pub policy_per_hour: u32,
    /// Actions per hour in one namespace.
    pub namespace_per_hour: u32,
    /// Actions per hour on one target.
    pub target_per_hour: u32,
    /// Quiet time on a target after an action.
    pub cooldown: Duration,
    /// Consecutive failures that open a breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker denies before allowing one trial.
    pub breaker_open_for: Duration,
}

/// Identifies what one approval counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys<'a> {
    /// namespace/name of the policy.
    pub policy: &'a str,
    /// Target namespace ("" for cluster-scoped).
    pub namespace: &'a str,
    /// Target uid.
    pub target: &'a str,
    /// Action type name.
    pub action: &'a str,
}

/// What a recommendation id was counted for. An id counts once per
/// content: reused for another target, action or parameters it is a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// Limit target and action: all a replayed history entry may know.
    pub scope: String,
    /// Target uid, action and parameters, hashed; `None` when unknown.
    pub exact: Option<String>,
}

impl Content {
    /// The content of an approval under `keys`, with the exact hash when known.
    pub fn new(keys: &Keys<'_>, exact: Option<String>) -> Self {
        Self {
            scope: format!("{}|{}", keys.target, keys.action),
            exact,
        }
    }

    /// Whether `other` is the same content, as far as both are known.
    pub fn matches(&self, other: &Content) -> bool {
        self.scope == other.scope
            && match (&self.exact, &other.exact) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// Why the limiter refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Gate rule id.
    pub rule: &'static str,
    /// Human-readable reason.
    pub reason: String,
    /// When the limit will let the same proposal through; zero when that
    /// depends on something else (a trial action still running).
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial is allowed; `trial_out` while it runs.
    HalfOpen {
        trial_out: bool,
    },
}

/// The breaker's state, for reporting and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Actions allowed.
    Closed,
    /// Actions denied until the open period ends.
    Open,
    /// One trial action allowed.
    HalfOpen,
}

/// All stateful limits.
#[derive(Debug, Default)]
pub struct Limiter {
    global: VecDeque<Instant>,
    by_policy: HashMap<String, VecDeque<Instant>>,
    by_namespace: HashMap<String, VecDeque<Instant>>,
    by_target: HashMap<String, VecDeque<Instant>>,
    last_action: HashMap<String, Instant>,
    breakers: HashMap<(String, String), Breaker>,
    /// Recommendations that already took a slot, so an approval and its
    /// reported outcome count once — and what each was counted for.
    counted: HashMap<String, (Instant, Content)>,
    /// Plans whose first step passed the limits, by plan id: the limit
    /// target and step count it passed for, and when.
    plans: HashMap<String, PlanSlot>,
}

/// A plan whose first step passed the limits: what its later steps may be.
#[derive(Debug, Clone)]
struct PlanSlot {
    /// The limit target it passed on.
    target: String,
    /// Each step's content (target uid, action, parameters), hashed, in
    /// order: a later step is covered only as exactly what the plan held.
    steps: Vec<String>,
    /// The later steps already covered: each once.
    used: std::collections::BTreeSet<u32>,
    /// When its first step last passed.
    at: Instant,
}

/// A plan reference the gate can count: an id, and 2 to
/// [`MAX_PLAN_STEPS`] steps.
fn valid_plan(plan: &PlanStep) -> bool {
    !plan.plan_id.is_empty() && (2..=MAX_PLAN_STEPS).contains(&plan.steps)
}

fn prune(window: &mut VecDeque<Instant>, now: Instant) -> usize {
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= HOUR)
    {
        window.pop_front();
    }
    window.len()
}

fn count(map: &mut HashMap<String, VecDeque<Instant>>, key: &str, now: Instant) -> usize {
    map.get_mut(key).map_or(0, |w| prune(w, now))
}

impl Limiter {
    /// Checks every limit for an action about to be approved; `Ok` means it may run.
    ///
    /// # Errors
    /// The first limit that refuses.
    pub fn check(&mut self, keys: &Keys<'_>, limits: &Limits, now: Instant) -> Result<(), Refusal> {
        self.check_breaker(keys, limits, now)?;
        self.check_rates(keys, limits, now)
    }

    /// The circuit breaker alone: it applies even to a recommendation that
    /// already holds its rate slot (failures since then still count).
    ///
    /// # Errors
    /// When the breaker is open, or its half-open trial is out.
    pub fn check_breaker(
        &mut self,
        keys: &Keys<'_>,
        limits: &Limits,
        now: Instant,
    ) -> Result<(), Refusal> {
        let breaker_key = (keys.target.to_owned(), keys.action.to_owned());
        match self.breakers.get(&breaker_key).copied() {
            Some(Breaker::Open { until }) if now < until => {
                return Err(Refusal {
                    retry_after: until.duration_since(now),
                    rule: "circuit-open",
                    reason: format!(
                        "{} on this target failed {} times in a row; retry allowed in {}s",
                        keys.action,
                        limits.breaker_threshold,
                        until.duration_since(now).as_secs()
                    ),
                });
            }
            Some(Breaker::Open { .. }) => {
                self.breakers
                    .insert(breaker_key.clone(), Breaker::HalfOpen { trial_out: false });
            }
            Some(Breaker::HalfOpen { trial_out: true }) => {
                return Err(Refusal {
                    retry_after: Duration::ZERO,
                    rule: "circuit-half-open",
                    reason: "a trial action on this target is still running".to_owned(),
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn check_rates(
        &mut self,
        keys: &Keys<'_>,
        limits: &Limits,
        now: Instant,
    ) -> Result<(), Refusal> {
        if let Some(last) = self.last_action.get(keys.target)
            && now.duration_since(*last) < limits.cooldown
        {
            return Err(Refusal {
                retry_after: limits.cooldown - now.duration_since(*last),
                rule: "cooldown",
                reason: format!(
                    "target acted on {}s ago; cooldown is {}s",
                    now.duration_since(*last).as_secs(),
                    limits.cooldown.as_secs()
                ),
            });
        }
        // A full window frees a slot when its oldest action leaves it.
        let over =
            |window: Option<&VecDeque<Instant>>, max: u32, rule: &'static str, scope: &str| {
                let used = window.map_or(0, VecDeque::len);
                (used >= max as usize).then(|| Refusal {
                    rule,
                    reason: format!("{used} actions in the last hour {scope}; limit is {max}"),
                    retry_after: window
                        .and_then(VecDeque::front)
                        .map_or(Duration::ZERO, |oldest| {
                            HOUR.saturating_sub(now.duration_since(*oldest))
                        }),
                })
            };
        prune(&mut self.global, now);
        for (map, key) in [
            (&mut self.by_policy, keys.policy),
            (&mut self.by_namespace, keys.namespace),
            (&mut self.by_target, keys.target),
        ] {
            count(map, key, now);
        }
        if let Some(refusal) = over(
            Some(&self.global),
            limits.global_per_hour,
            "rate-limit-global",
            "cluster-wide",
        )
        .or_else(|| {
            over(
                self.by_policy.get(keys.policy),
                limits.policy_per_hour,
                "rate-limit-policy",
                "under this policy",
            )
        })
        .or_else(|| {
            over(
                self.by_namespace.get(keys.namespace),
                limits.namespace_per_hour,
                "rate-limit-namespace",
                "in this namespace",
            )
        })
        .or_else(|| {
            over(
                self.by_target.get(keys.target),
                limits.target_per_hour,
                "rate-limit-target",
                "on this target",
            )
        }) {
            return Err(refusal);
        }
        Ok(())
    }

    /// Notes that the first step of a plan passed the limits on `target`,
    /// with each of its steps' content (`steps`, hashed as [`Content`]'s
    /// exact hash, the first being this step's): its later steps count as
    /// part of it (see [`Self::plan_step`]). Each pass renews the note.
    pub fn record_plan(&mut self, plan: &PlanStep, target: &str, steps: Vec<String>, now: Instant) {
        self.plans
            .retain(|_, slot| now.duration_since(slot.at) < HOUR);
        if plan.step == 1
            && valid_plan(plan)
            && steps.len() == usize::try_from(plan.steps).unwrap_or(0)
        {
            self.plans.insert(
                plan.plan_id.clone(),
                PlanSlot {
                    target: target.to_owned(),
                    steps,
                    used: std::collections::BTreeSet::new(),
                    at: now,
                },
            );
        }
    }

    /// A later step of a plan whose first step passed the limits within
    /// the hour, on the same target, holding exactly the content the plan
    /// named for that step, and not covered before, takes no slot of its
    /// own and waits out no cooldown (the plan is one action): it is
    /// recorded as counted under `recommendation_id`, and only the breaker
    /// is checked (`Some`). `None`: not such a step; the usual limits apply.
    pub fn plan_step(
        &mut self,
        plan: &PlanStep,
        keys: &Keys<'_>,
        limits: &Limits,
        now: Instant,
        recommendation_id: &str,
        content: Content,
    ) -> Option<Result<(), Refusal>> {
        let index = usize::try_from(plan.step).ok()?.checked_sub(1)?;
        let slot = self.plans.get_mut(&plan.plan_id)?;
        let covered = plan.step >= 2
            && valid_plan(plan)
            && slot.target == keys.target
            && slot.steps.len() == usize::try_from(plan.steps).unwrap_or(0)
            && content.exact.as_ref() == slot.steps.get(index)
            && now.duration_since(slot.at) < HOUR
            && !slot.used.contains(&plan.step);
        if !covered {
            return None;
        }
        slot.used.insert(plan.step);
        if !recommendation_id.is_empty() {
            self.counted
                .entry(recommendation_id.to_owned())
                .or_insert((now, content));
        }
        Some(self.check_breaker(keys, limits, now))
    }

    /// What `recommendation_id` took its slot for, if it did (approved
    /// within the hour).
    pub fn counted(&self, recommendation_id: &str) -> Option<&Content> {
        if recommendation_id.is_empty() {
            return None;
        }
        self.counted
            .get(recommendation_id)
            .map(|(_, content)| content)
    }

    /// Records an approved or executed action: it counts against every limit
    /// from now on — once per recommendation id.
    pub fn record_approval(
        &mut self,
        keys: &Keys<'_>,
        now: Instant,
        recommendation_id: &str,
        content: Content,
    ) {
        self.counted
            .retain(|_, (at, _)| now.duration_since(*at) < HOUR);
        if !recommendation_id.is_empty() {
            if self.counted.contains_key(recommendation_id) {
                return;
            }
            self.counted
                .insert(recommendation_id.to_owned(), (now, content));
        }
        self.global.push_back(now);
        self.by_policy
            .entry(keys.policy.to_owned())
            .or_default()
            .push_back(now);
        self.by_namespace
            .entry(keys.namespace.to_owned())
            .or_default()
            .push_back(now);
        self.by_target
            .entry(keys.target.to_owned())
            .or_default()
            .push_back(now);
        self.last_action.insert(keys.target.to_owned(), now);
        let key = (keys.target.to_owned(), keys.action.to_owned());
        // An approval past the open period is the trial (also when replayed,
        // where no check moved the breaker to half-open first).
        match self.breakers.get(&key) {
            Some(Breaker::HalfOpen { .. }) => {
                self.breakers
                    .insert(key, Breaker::HalfOpen { trial_out: true });
            }
            Some(Breaker::Open { until }) if now >= *until => {
                self.breakers
                    .insert(key, Breaker::HalfOpen { trial_out: true });
            }
            _ => {}
        }
    }

    /// Records how an executed action ended; failures drive the breaker.
    pub fn record_outcome(
        &mut self,
        target: &str,
        action: &str,
        succeeded: bool,
        limits: &Limits,
        now: Instant,
    ) {
        let key = (target.to_owned(), action.to_owned());
        let state = self
            .breakers
            .get(&key)
            .copied()
            .unwrap_or(Breaker::Closed { failures: 0 });
        let next = match (state, succeeded) {
            (_, true) => Breaker::Closed { failures: 0 },
            (Breaker::Closed { failures }, false) if failures + 1 >= limits.breaker_threshold => {
                Breaker::Open {
                    until: now + limits.breaker_open_for,
                }
            }
            (Breaker::Closed { failures }, false) => Breaker::Closed {
                failures: failures + 1,
            },
            // A failed trial re-opens for a full period.
            (Breaker::HalfOpen { .. } | Breaker::Open { .. }, false) => Breaker::Open {
                until: now + limits.breaker_open_for,
            },
        };
        self.breakers.insert(key, next);
    }

    /// The breaker state for a target and action type.
    pub fn breaker(&self, target: &str, action: &str, now: Instant) -> BreakerState {
        match self.breakers.get(&(target.to_owned(), action.to_owned())) {
            None | Some(Breaker::Closed { .. }) => BreakerState::Closed,
            Some(Breaker::Open { until }) if now < *until => BreakerState::Open,
            Some(Breaker::Open { .. } | Breaker::HalfOpen { .. }) => BreakerState::HalfOpen,
        }
    }
}

/// What per-target limits count against: the owning workload when known, so a
/// pod recreated with a new uid stays the same target.
pub(crate) fn limit_target<'a>(workload_uid: &'a str, target_uid: &'a str) -> &'a str {
    if workload_uid.is_empty() {
        target_uid
    } else {
        workload_uid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            global_per_hour: 100,
            policy_per_hour: 100,
            namespace_per_hour: 3,
            target_per_hour: 100,
            cooldown: Duration::from_secs(0),
            breaker_threshold: 3,
            breaker_open_for: Duration::from_secs(600),
        }
    }

    fn keys(target: &str) -> Keys<'_> {
        Keys {
            policy: "shop/default",
            namespace: "shop",
            target,
            action: "RestartPod",
        }
    }

    fn approve(limiter: &mut Limiter, target: &str, limits: &Limits) -> Result<(), Refusal> {
        let now = Instant::now();
        limiter.check(&keys(target), limits, now)?;
        limiter.record_approval(&keys(target), now, "", Content::new(&keys(target), None));
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn namespace_rate_limit_slides_over_an_hour() {
        let mut limiter = Limiter::default();
        let limits = limits();
        for target in ["a", "b", "c"] {
            approve(&mut limiter, target, &limits).unwrap();
        }
        assert_eq!(
            approve(&mut limiter, "d", &limits).unwrap_err().rule,
            "rate-limit-namespace"
        );
        tokio::time::advance(Duration::from_secs(3599)).await;
        let refusal = approve(&mut limiter, "d", &limits).unwrap_err();
        assert_eq!(refusal.rule, "rate-limit-namespace");
        assert_eq!(
            refusal.retry_after,
            Duration::from_secs(1),
            "when the oldest action leaves the window"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        approve(&mut limiter, "d", &limits).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn cooldown_blocks_the_same_target_only() {
        let mut limiter = Limiter::default();
        let limits = Limits {
            cooldown: Duration::from_secs(300),
            ..limits()
        };
        approve(&mut limiter, "a", &limits).unwrap();
        tokio::time::advance(Duration::from_secs(299)).await;
        let refusal = approve(&mut limiter, "a", &limits).unwrap_err();
        assert_eq!(
            (refusal.rule, refusal.retry_after),
            ("cooldown", Duration::from_secs(1))
        );
        approve(&mut limiter, "b", &limits).unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        approve(&mut limiter, "a", &limits).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_half_opens_and_closes() {
        let mut limiter = Limiter::default();
        let limits = Limits {
            namespace_per_hour: 100,
            ..limits()
        };
        for _ in 0..3 {
            approve(&mut limiter, "a", &limits).unwrap();
            limiter.record_outcome("a", "RestartPod", false, &limits, Instant::now());
        }
        assert_eq!(
            limiter.breaker("a", "RestartPod", Instant::now()),
            BreakerState::Open
        );
        assert_eq!(
            approve(&mut limiter, "a", &limits).unwrap_err().rule,
            "circuit-open"
        );
        // Other action types on the same target are not affected.
        limiter
            .check(
                &Keys {
                    action: "RolloutRestart",
                    ..keys("a")
                },
                &limits,
                Instant::now(),
            )
            .unwrap();

        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(
            limiter.breaker("a", "RestartPod", Instant::now()),
            BreakerState::HalfOpen
        );
        approve(&mut limiter, "a", &limits).unwrap();
        // Only one trial at a time.
        assert_eq!(
            approve(&mut limiter, "a", &limits).unwrap_err().rule,
            "circuit-half-open"
        );
        // A failed trial re-opens…
        limiter.record_outcome("a", "RestartPod", false, &limits, Instant::now());
        assert_eq!(
            limiter.breaker("a", "RestartPod", Instant::now()),
            BreakerState::Open
        );
        tokio::time::advance(Duration::from_secs(600)).await;
        // …a successful one closes.
        approve(&mut limiter, "a", &limits).unwrap();
        limiter.record_outcome("a", "RestartPod", true, &limits, Instant::now());
        assert_eq!(
            limiter.breaker("a", "RestartPod", Instant::now()),
            BreakerState::Closed
        );
        approve(&mut limiter, "a", &limits).unwrap();
    }
}
