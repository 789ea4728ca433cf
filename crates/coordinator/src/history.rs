//! The outcome history of a policy: every executed action's verified
//! outcome, counted per (issue kind, action type, source, workload) in the
//! HealingPolicy's status.
//!
//! Why the policy's status and not a resource of its own: the policy is
//! the scope every count is read in (its incidents, its ladder, its
//! proposals), only the coordinator writes a status subresource, the
//! history is deleted with the policy, and no new kind or RBAC rule is
//! needed. It is bounded ([`MAX_OUTCOME_ENTRIES`] entries of at most
//! [`MAX_RECENT_ATTEMPTS`] attempts, some 100 KiB at most).
//!
//! The history is merged, not recomputed: HealingActions are deleted by
//! retention, and the counts outlive them. Each entry keeps its newest
//! attempts by name, so an action is counted once; an action older than
//! every attempt an entry keeps was counted before it was pushed out.
//! When the history is lost (the status deleted or edited away) the merge
//! from nothing rebuilds it from the HealingActions still kept.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use nanny_crd::{
    ActionType, AttemptRecord, Calibration, HealingAction, MAX_OUTCOME_ENTRIES,
    MAX_RECENT_ATTEMPTS, OutcomeStats, Verified,
};

/// How many outcomes a stated confidence weighs against observed ones: the
/// prior. With 4, four verified outcomes move a confidence halfway to the
/// observed success rate.
pub const PRIOR_WEIGHT: u32 = 4;
/// The window the explanations count recent attempts in.
pub const WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// The issue kind of an action recorded without one.
pub const UNKNOWN_ISSUE: &str = "UNKNOWN";

/// The entry key of an action: issue kind, action type, source and
/// workload (the target's uid when it belongs to none).
fn key(action: &HealingAction) -> (String, ActionType, nanny_crd::SourceKind, String) {
    let spec = &action.spec;
    (
        spec.issue_kind
            .clone()
            .unwrap_or_else(|| UNKNOWN_ISSUE.to_owned()),
        spec.action.type_,
        spec.source.kind,
        spec.workload_uid
            .clone()
            .unwrap_or_else(|| spec.target.uid.clone()),
    )
}

fn parse(at: &str) -> Option<Timestamp> {
    at.parse().ok()
}

/// `old` with the verified outcomes of `actions` counted in: each action
/// once, a later rollback moving its count. Report-only actions change
/// nothing and are not counted, nor are plans (their steps are). Bounded, and sorted by key so an unchanged
/// history writes nothing.
pub fn merge<'a>(
    old: &[OutcomeStats],
    actions: impl IntoIterator<Item = &'a HealingAction>,
) -> Vec<OutcomeStats> {
    let mut entries: BTreeMap<_, OutcomeStats> = old
        .iter()
        .map(|e| {
            (
                (
                    e.issue_kind.clone(),
                    e.action,
                    e.source,
                    e.workload_uid.clone(),
                ),
                e.clone(),
            )
        })
        .collect();
    let mut finished: Vec<_> = actions
        .into_iter()
        .filter(|a| a.spec.action.type_ != ActionType::ReportOnly)
        // A plan's steps count each as their own action; the plan itself
        // would count its first step twice.
        .filter(|a| a.spec.plan.is_empty())
        .filter_map(|a| Some((Verified::of(a)?, a)))
        .collect();
    // Oldest first: what an entry keeps ends as the newest.
    finished.sort_by_key(|(attempted, a)| (attempted.at, a.name_any()));
    for (attempted, action) in finished {
        let key = key(action);
        let entry = entries.entry(key.clone()).or_insert_with(|| OutcomeStats {
            issue_kind: key.0,
            action: key.1,
            source: key.2,
            workload_uid: key.3,
            last_target: String::new(),
            effective: 0,
            ineffective: 0,
            failed: 0,
            rolled_back: 0,
            recent: Vec::new(),
        });
        count(entry, action, attempted);
    }
    // Over the bound: the entries whose newest attempt is oldest go; the
    // map keeps the rest in key order.
    let excess = entries.len().saturating_sub(MAX_OUTCOME_ENTRIES);
    if excess > 0 {
        let newest = |e: &OutcomeStats| e.recent.first().and_then(|r| parse(&r.at));
        let mut by_age: Vec<_> = entries
            .iter()
            .map(|(k, e)| (newest(e), k.clone()))
            .collect();
        // Oldest first; among equals, the later key first.
        by_age.sort_by(|(a, ka), (b, kb)| a.cmp(b).then_with(|| kb.cmp(ka)));
        for (_, key) in by_age.into_iter().take(excess) {
            entries.remove(&key);
        }
    }
    entries.into_values().collect()
}

/// Counts one action's outcome into its entry, unless it was counted.
fn count(entry: &mut OutcomeStats, action: &HealingAction, attempted: nanny_crd::Attempted) {
    let name = action.name_any();
    let at = attempted.at.to_string();
    if let Some(seen) = entry.recent.iter().position(|r| r.action == name) {
        let before = entry.recent[seen].outcome;
        if before != attempted.outcome {
            // Rolled back since it was counted.
            let old = entry.count_mut(before);
            *old = old.saturating_sub(1);
            *entry.count_mut(attempted.outcome) += 1;
            entry.recent[seen].outcome = attempted.outcome;
            entry.recent[seen].at = at;
        }
        return;
    }
    let oldest_kept = entry.recent.last().and_then(|r| parse(&r.at));
    if entry.recent.len() >= MAX_RECENT_ATTEMPTS && oldest_kept.is_some_and(|o| attempted.at < o) {
        // Counted before, and pushed out by newer attempts since.
        return;
    }
    *entry.count_mut(attempted.outcome) += 1;
    entry.recent.push(AttemptRecord {
        action: name,
        outcome: attempted.outcome,
        at,
    });
    entry
        .recent
        .sort_by_key(|r| std::cmp::Reverse((parse(&r.at), r.action.clone())));
    entry.recent.truncate(MAX_RECENT_ATTEMPTS);
    if entry
        .recent
        .first()
        .is_some_and(|r| r.action == action.name_any())
    {
        let t = &action.spec.target;
        entry.last_target = format!("{}/{}/{}", t.kind, t.namespace, t.name);
    }
}

/// The confidence to record for a proposal of `action` for `issue` on
/// `workload`, from the `reported` one and the policy's history: the
/// reported figure counts as [`PRIOR_WEIGHT`] outcomes, the verified
/// outcomes of the issue kind and action (every workload, every source)
/// as one each, effective ones as 100. With no outcomes it is the
/// reported figure.
pub fn calibrate(
    history: &[OutcomeStats],
    (issue, action, workload): (&str, ActionType, &str),
    reported: u32,
    now: Timestamp,
) -> (u32, Calibration) {
    let (effective, outcomes) = pair_counts(history, issue, action);
    let reported = reported.min(100);
    let weighted = u64::from(PRIOR_WEIGHT) * u64::from(reported) + 100 * u64::from(effective);
    let weight = u64::from(PRIOR_WEIGHT) + u64::from(outcomes);
    // Rounded to the nearest whole percent.
    let confidence = u32::try_from((weighted * 2 + weight) / (weight * 2))
        .unwrap_or(100)
        .min(100);
    let calibration = Calibration {
        reported,
        effective,
        outcomes,
        prior_weight: PRIOR_WEIGHT,
        history: describe(history, (issue, action, workload), now),
    };
    (confidence, calibration)
}

/// The history in words: what `action` did for this workload (its recent
/// attempts in the last [`WINDOW`], and whether the last ones helped) and
/// for this issue kind under the policy.
pub fn describe(
    history: &[OutcomeStats],
    (issue, action, workload): (&str, ActionType, &str),
    now: Timestamp,
) -> String {
    let (recent, saturated) = recent_attempts(history, action, workload, now);
    let name = action.name();
    let mut text = if recent.is_empty() {
        format!("{name} has no verified outcome on this workload in the last 7 days.")
    } else {
        let helped = recent.iter().filter(|v| **v == Verified::Effective).count();
        let streak = recent
            .iter()
            .take_while(|v| **v != Verified::Effective)
            .count();
        let times = if saturated {
            format!("{helped} of its last {} times", recent.len())
        } else {
            format!("{helped} of {} times in the last 7 days", recent.len())
        };
        let last = match streak {
            0 => String::new(),
            n if n == recent.len() => String::new(),
            1 => "; the last one did not".to_owned(),
            n => format!("; the last {n} did not"),
        };
        format!("{name} fixed this workload {times}{last}.")
    };
    let (effective, outcomes) = pair_counts(history, issue, action);
    if outcomes > 0 {
        text.push_str(&format!(
            " For {issue} under this policy it was effective {effective} of {outcomes} times."
        ));
    }
    text
}

/// The effective and all verified outcomes of `action` for `issue` under
/// the policy: every workload, every source.
fn pair_counts(history: &[OutcomeStats], issue: &str, action: ActionType) -> (u32, u32) {
    history
        .iter()
        .filter(|e| e.issue_kind == issue && e.action == action)
        .fold((0, 0), |(eff, all), e| (eff + e.effective, all + e.total()))
}

/// `action`'s verified outcomes on `workload` in the last [`WINDOW`], newest
/// first, from every entry (issue kind, source) that holds it; and whether
/// an entry's kept attempts all fall inside the window (older ones in it
/// may have been pushed out).
fn recent_attempts(
    history: &[OutcomeStats],
    action: ActionType,
    workload: &str,
    now: Timestamp,
) -> (Vec<Verified>, bool) {
    let since = now - WINDOW;
    let mut attempts: Vec<(Timestamp, Verified)> = Vec::new();
    let mut saturated = false;
    for entry in history
        .iter()
        .filter(|e| e.action == action && e.workload_uid == workload)
    {
        let inside: Vec<_> = entry
            .recent
            .iter()
            .filter_map(|r| Some((parse(&r.at)?, r.outcome)))
            .filter(|(at, _)| *at >= since)
            .collect();
        saturated |= inside.len() >= MAX_RECENT_ATTEMPTS;
        attempts.extend(inside);
    }
    attempts.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    (attempts.into_iter().map(|(_, v)| v).collect(), saturated)
}

/// Verified outcomes of `action` on `workload` in the last [`WINDOW`], and
/// how many were effective: the counts the model's "already tried"
/// evidence carries.
pub fn recent_counts(
    history: &[OutcomeStats],
    action: ActionType,
    workload: &str,
    now: Timestamp,
) -> (u32, u32) {
    let (recent, _) = recent_attempts(history, action, workload, now);
    let all = u32::try_from(recent.len()).unwrap_or(u32::MAX);
    let effective = recent.iter().filter(|v| **v == Verified::Effective).count();
    (all, u32::try_from(effective).unwrap_or(u32::MAX))
}

/// The share of verified outcomes that were effective, per (issue kind,
/// action type), over every policy's history.
pub fn effectiveness<'a>(
    histories: impl IntoIterator<Item = &'a OutcomeStats>,
) -> BTreeMap<(String, ActionType), f64> {
    let mut counts: BTreeMap<(String, ActionType), (u32, u32)> = BTreeMap::new();
    for entry in histories {
        let c = counts
            .entry((entry.issue_kind.clone(), entry.action))
            .or_default();
        c.0 += entry.effective;
        c.1 += entry.total();
    }
    counts
        .into_iter()
        .filter(|(_, (_, all))| *all > 0)
        .map(|(key, (eff, all))| (key, f64::from(eff) / f64::from(all)))
        .collect()
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
