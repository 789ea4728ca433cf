//! Outcome history: what Nanny's executed actions did, kept in the
//! HealingPolicy's status, and the confidence calibration a HealingAction
//! records from it.
//!
//! One classification, [`Verified::of`], says what a finished action's
//! outcome was; the history, the ladder's "did not help" count and the
//! model's "already tried" evidence all read it.

use k8s_openapi::jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ActionType, HealingAction, Outcome, SourceKind};

/// Most entries a policy's history keeps; past it, the entries whose last
/// attempt is oldest are dropped.
pub const MAX_OUTCOME_ENTRIES: usize = 100;
/// Most attempts an entry keeps, newest first.
pub const MAX_RECENT_ATTEMPTS: usize = 8;

/// The verified outcome of an executed action.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Verified {
    /// Applied, and the problem went away.
    Effective,
    /// Applied, and the problem stayed.
    Ineffective,
    /// Applying it failed, or its verification did.
    Failed,
    /// Undone afterwards.
    RolledBack,
}

impl Verified {
    /// The CR spelling, e.g. `Ineffective`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Effective => "Effective",
            Self::Ineffective => "Ineffective",
            Self::Failed => "Failed",
            Self::RolledBack => "RolledBack",
        }
    }

    /// How `action` ended, once it is finished and something was executed:
    /// a rollback recorded after it wins; a dry run, a refusal or a
    /// budget's block executed nothing (`None`), nor did an action still
    /// under way.
    pub fn of(action: &HealingAction) -> Option<Attempted> {
        let status = action.status.as_ref()?;
        if !action.phase().is_terminal() {
            return None;
        }
        let result = status.result.as_ref()?;
        let time = |at: Option<&str>| at.and_then(|t| t.parse::<Timestamp>().ok());
        let finished = time(result.finished_at.as_deref())
            .or_else(|| time(status.phase_since.as_deref()))
            .unwrap_or(Timestamp::UNIX_EPOCH);
        if let Some(rollback) = status.rollback.as_ref()
            && matches!(rollback.outcome, Outcome::RolledBack | Outcome::Succeeded)
        {
            return Some(Attempted {
                outcome: Self::RolledBack,
                at: time(rollback.finished_at.as_deref()).unwrap_or(finished),
                checked: true,
            });
        }
        let outcome = match result.outcome {
            Outcome::Succeeded => Self::Effective,
            Outcome::Ineffective => Self::Ineffective,
            Outcome::RolledBack => Self::RolledBack,
            Outcome::Failed | Outcome::Unknown => Self::Failed,
            Outcome::DryRun | Outcome::Refused | Outcome::Blocked => return None,
        };
        Some(Attempted {
            outcome,
            at: finished,
            checked: !result.verification.is_empty(),
        })
    }
}

impl std::fmt::Display for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One executed action's verified outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempted {
    /// What it did.
    pub outcome: Verified,
    /// When it finished (or was rolled back).
    pub at: Timestamp,
    /// Whether a verification ran (a failure to apply has none).
    pub checked: bool,
}

impl Attempted {
    /// Whether it ran and did not help: verified ineffective, or failed its
    /// verification. The ladder climbs on these.
    pub fn did_not_help(&self) -> bool {
        self.outcome == Verified::Ineffective || (self.outcome == Verified::Failed && self.checked)
    }
}

/// What one action type did for one issue kind on one workload, proposed
/// by one kind of source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeStats {
    /// The issue kind, e.g. `CRASH_LOOP_BACK_OFF`; `UNKNOWN` for an action
    /// recorded without one.
    #[schemars(length(max = 64))]
    pub issue_kind: String,
    /// The action type.
    pub action: ActionType,
    /// Rule or Model.
    pub source: SourceKind,
    /// The workload's uid (the target's, when it belongs to none).
    #[schemars(length(max = 128))]
    pub workload_uid: String,
    /// `Kind/namespace/name` of the last attempt's target.
    #[schemars(length(max = 320))]
    pub last_target: String,
    /// Verified outcomes counted, all time (since the history began).
    pub effective: u32,
    /// Applied, and the problem stayed.
    pub ineffective: u32,
    /// Applying or verifying failed.
    pub failed: u32,
    /// Undone afterwards.
    pub rolled_back: u32,
    /// The newest attempts, newest first (at most
    /// [`MAX_RECENT_ATTEMPTS`]): which actions were counted, and when.
    #[serde(default)]
    #[schemars(length(max = 8))]
    pub recent: Vec<AttemptRecord>,
}

impl OutcomeStats {
    /// Verified outcomes counted.
    pub fn total(&self) -> u32 {
        self.effective + self.ineffective + self.failed + self.rolled_back
    }

    /// The counter of `outcome`.
    pub fn count_mut(&mut self, outcome: Verified) -> &mut u32 {
        match outcome {
            Verified::Effective => &mut self.effective,
            Verified::Ineffective => &mut self.ineffective,
            Verified::Failed => &mut self.failed,
            Verified::RolledBack => &mut self.rolled_back,
        }
    }
}

/// One counted attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    /// The HealingAction's name.
    #[schemars(length(max = 253))]
    pub action: String,
    /// What it did.
    pub outcome: Verified,
    /// RFC 3339 time it finished (or was rolled back).
    #[schemars(length(max = 64))]
    pub at: String,
}

/// How a HealingAction's confidence was calibrated: the source's own
/// figure moved toward the observed success rate of the issue kind and
/// action under the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Calibration {
    /// The confidence the rule or model stated (0–100).
    #[schemars(range(min = 0, max = 100))]
    pub reported: u32,
    /// Verified effective outcomes of this issue kind and action.
    pub effective: u32,
    /// Verified outcomes of this issue kind and action.
    pub outcomes: u32,
    /// The prior: how many outcomes the stated confidence weighs.
    pub prior_weight: u32,
    /// The history in words, for people: what this action did for this
    /// workload and for this issue kind.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub history: String,
}
