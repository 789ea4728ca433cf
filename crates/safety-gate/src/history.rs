//! What happened before this process started: approvals and outcomes from
//! the audit log and from the HealingAction history in the cluster, as
//! entries [`Gate::replay`](crate::Gate::replay) feeds to the limiter.
//!
//! The gate only ever *reads* the cluster: the coordinator writes each
//! HealingAction (verdict and result in its status), and at start-up the gate
//! rebuilds its rate windows, cooldowns and breakers from them. So the limits
//! survive a restart that loses the audit file (an `emptyDir`, a new node).

use std::{collections::HashSet, time::Duration};

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, ListParams},
};
use nanny_crd::{
    ACTION_TYPE_LABEL, ActionType as CrdActionType, Decision as RecordedDecision, HealingAction,
    Outcome, POLICY_LABEL, TARGET_UID_LABEL,
};
use nanny_proto::v1::{ActionType, Decision, GateLimits};

use crate::limits::limit_target;

/// One past approval, or one executed action with its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Past {
    /// When it happened; `None` when unknown or unreadable (replayed as now:
    /// stricter, never looser).
    pub time: Option<std::time::SystemTime>,
    /// `namespace/name` of the policy.
    pub policy: String,
    /// Target namespace ("" for cluster-scoped targets).
    pub namespace: String,
    /// What per-target limits count against: the workload uid when known,
    /// else the target uid.
    pub target: String,
    /// Wire name of the action type, e.g. `ACTION_TYPE_RESTART_POD`.
    pub action: String,
    /// Recommendation id; an approval counts once per id.
    pub recommendation_id: String,
    /// What the id was counted for ([`crate::gate::content_hash`]), when
    /// the record says.
    pub content: Option<String>,
    /// `Some` when the action was executed.
    pub outcome: Option<PastOutcome>,
}

/// How an executed action ended.
#[derive(Debug, Clone, PartialEq)]
pub struct PastOutcome {
    /// Succeeded; anything else executed counts as a failure for the breaker.
    pub succeeded: bool,
    /// Breaker limits in force then (0: the gate's defaults).
    pub limits: GateLimits,
}

fn parse_time(text: &str) -> Option<std::time::SystemTime> {
    text.parse::<prost_types::Timestamp>()
        .ok()
        .and_then(|t| std::time::SystemTime::try_from(t).ok())
}

/// Approvals and outcomes in the gate's own audit log, in log order.
pub fn from_audit(records: &[nanny_common::audit::AuditRecord]) -> Vec<Past> {
    let mut out = Vec::new();
    for record in records {
        let entry = &record.entry;
        let field = |path: &[&str]| {
            path.iter()
                .fold(entry, |v, k| &v[*k])
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        let outcome = match entry["kind"].as_str() {
            Some("verdict") if entry["decision"] == Decision::Approved.as_str_name() => None,
            Some("outcome") => {
                let number = |key: &str| {
                    entry["limits"][key]
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(0)
                };
                Some(PastOutcome {
                    succeeded: entry["succeeded"].as_bool().unwrap_or(false),
                    limits: GateLimits {
                        breaker_failure_threshold: number("breaker_failure_threshold"),
                        breaker_open_seconds: number("breaker_open_seconds"),
                        ..GateLimits::default()
                    },
                })
            }
            _ => continue,
        };
        out.push(Past {
            time: parse_time(&record.time),
            policy: field(&["policy"]),
            namespace: field(&["target", "namespace"]),
            target: field(&["limit_target"]),
            action: field(&["action"]),
            recommendation_id: field(&["recommendation_id"]),
            content: entry["content"].as_str().map(str::to_owned),
            outcome,
        });
    }
    out
}

/// The wire name of a CRD action type.
pub fn wire_action(action: CrdActionType) -> &'static str {
    action.proto().as_str_name()
}

/// What one HealingAction counts for, if anything.
///
/// - A result whose outcome was executed (`Succeeded`, `Ineffective`,
///   `Failed`, `RolledBack` — or one this gate does not know, which counts as
///   failed) is an approval plus that outcome at `finishedAt`.
/// - Otherwise an `Approved` verdict is an approval at `decidedAt`: the gate
///   counted it when it approved, whether or not it ran.
/// - No status or no verdict: the gate never approved it (a proposed action
///   must not put its own target in cooldown before its first review).
///
/// A missing or unreadable time counts as now.
pub fn from_action(action: &HealingAction) -> Option<Past> {
    let spec = &action.spec;
    let status = action.status.as_ref()?;
    let executed = status.result.as_ref().and_then(|result| {
        // Nothing executed (refused, dry run, blocked): nothing counts but
        // the approval. Every other outcome but success counts as failed.
        result.outcome.executed().then(|| {
            (
                result.outcome == Outcome::Succeeded,
                result.finished_at.as_deref(),
            )
        })
    });
    let (time, outcome) = match executed {
        Some((succeeded, finished_at)) => (
            finished_at,
            Some(PastOutcome {
                succeeded,
                limits: GateLimits::default(),
            }),
        ),
        None => {
            let verdict = status.verdict.as_ref()?;
            if verdict.decision != RecordedDecision::Approved {
                return None;
            }
            (verdict.decided_at.as_deref(), None)
        }
    };
    let target = limit_target(spec.workload_uid.as_deref().unwrap_or(""), &spec.target.uid);
    if target.is_empty() {
        return None;
    }
    Some(Past {
        time: time.and_then(parse_time),
        policy: spec.policy_ref.clone(),
        namespace: spec.target.namespace.clone(),
        target: target.to_owned(),
        action: wire_action(spec.action.type_).to_owned(),
        recommendation_id: spec.recommendation_id.clone(),
        content: None,
        outcome,
    })
}

/// A HealingAction that does not parse (a schema this gate does not know):
/// whatever it was, it counts as an approval now from its labels — stricter,
/// never looser. `None` when it has no target label to count against.
fn from_unreadable(object: &DynamicObject) -> Option<Past> {
    let labels = object.metadata.labels.as_ref()?;
    let target = labels.get(TARGET_UID_LABEL).filter(|t| !t.is_empty())?;
    // The label is `namespace.name`; namespaces contain no dots.
    let policy = labels
        .get(POLICY_LABEL)
        .map(|p| p.replacen('.', "/", 1))
        .unwrap_or_default();
    let action = labels
        .get(ACTION_TYPE_LABEL)
        .and_then(|a| serde_json::from_value(serde_json::Value::String(a.clone())).ok())
        .map_or(ActionType::Unspecified.as_str_name(), wire_action);
    let namespace = object.data["spec"]["target"]["namespace"]
        .as_str()
        .unwrap_or_default();
    Some(Past {
        time: None,
        policy,
        namespace: namespace.to_owned(),
        target: target.clone(),
        action: action.to_owned(),
        recommendation_id: object.data["spec"]["recommendationId"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        content: None,
        outcome: None,
    })
}

/// Approvals and outcomes in a list of HealingActions, plus how many of
/// them could not be read.
pub fn from_objects(objects: Vec<DynamicObject>) -> (Vec<Past>, usize) {
    let mut past = Vec::new();
    let mut unreadable = 0;
    for object in objects {
        let parsed = match object.clone().try_parse::<HealingAction>() {
            Ok(action) => from_action(&action),
            Err(error) => {
                unreadable += 1;
                tracing::warn!(
                    %error,
                    namespace = object.metadata.namespace.as_deref().unwrap_or_default(),
                    name = object.metadata.name.as_deref().unwrap_or_default(),
                    "Cannot read a HealingAction; counting it as an approval now."
                );
                from_unreadable(&object)
            }
        };
        past.extend(parsed);
    }
    (past, unreadable)
}

/// The audit log's entries plus the cluster's, without counting an action
/// twice: the audit log has every outcome report, so a cluster entry for a
/// recommendation the log already knows adds nothing.
pub fn merge(audit: Vec<Past>, cluster: Vec<Past>) -> Vec<Past> {
    let known: HashSet<String> = audit
        .iter()
        .map(|p| p.recommendation_id.clone())
        .filter(|id| !id.is_empty())
        .collect();
    let mut merged = audit;
    merged.extend(
        cluster
            .into_iter()
            .filter(|p| !known.contains(&p.recommendation_id)),
    );
    merged
}

/// Lists every HealingAction in the cluster, a page at a time.
///
/// # Errors
/// When the API server cannot be reached or refuses (RBAC).
pub async fn list(client: Client) -> Result<Vec<DynamicObject>, kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client, &ApiResource::erase::<HealingAction>(&()));
    let mut params = ListParams::default().limit(500);
    let mut items = Vec::new();
    loop {
        let page = api.list(&params).await?;
        items.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(items),
        }
    }
}

/// Lists the history until it succeeds, backing off from 200 ms to 30 s
/// between attempts. The gate stays NOT_SERVING meanwhile: serving with
/// empty limits would let a restart reset every cooldown and breaker.
pub async fn list_with_retry(client: Client) -> Vec<DynamicObject> {
    const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
    let mut wait = Duration::from_millis(200);
    loop {
        match tokio::time::timeout(ATTEMPT_TIMEOUT, list(client.clone())).await {
            Ok(Ok(items)) => return items,
            Ok(Err(error)) => tracing::warn!(
                %error,
                retry_in_ms = wait.as_millis(),
                "Cannot list HealingActions; not serving until limits are restored."
            ),
            Err(_) => tracing::warn!(
                retry_in_ms = wait.as_millis(),
                "Listing HealingActions timed out; not serving until limits are restored."
            ),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests;
