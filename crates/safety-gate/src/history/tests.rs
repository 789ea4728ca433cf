// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use nanny_proto::v1::Decision;
use nanny_test_util::requests::crashloop_restart;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::*;
use crate::{Config, Gate};

fn rfc3339(time: SystemTime) -> String {
    prost_types::Timestamp::from(time).to_string()
}

/// A HealingAction as the coordinator writes it, for pod `name` in `shop`.
fn action(name: &str, status: Value) -> Value {
    json!({
        "apiVersion": "nanny.ai/v1alpha1",
        "kind": "HealingAction",
        "metadata": {
            "name": format!("ha-{name}"),
            "namespace": "shop",
            "labels": {
                "nanny.ai/policy": "shop.default",
                "nanny.ai/target-uid": format!("uid-shop-{name}"),
                "nanny.ai/action-type": "RestartPod",
                "nanny.ai/open": "false",
            },
        },
        "spec": {
            "policyRef": "shop/default",
            "target": { "kind": "Pod", "namespace": "shop", "name": name, "uid": format!("uid-shop-{name}") },
            "action": { "type": "RestartPod" },
            "source": { "kind": "Rule", "name": "crashloop-restart" },
            "confidence": 100,
            "reasoning": "crash-looping",
            "recommendationId": format!("rec-{name}"),
            "snapshotId": "snap-1",
        },
        "status": status,
    })
}

fn typed(value: Value) -> HealingAction {
    serde_json::from_value(value).unwrap()
}

fn executed(outcome: &str, finished_at: &str) -> Value {
    json!({
        "phase": "Succeeded",
        "verdict": { "decision": "Approved", "decidedAt": finished_at },
        "result": { "outcome": outcome, "finishedAt": finished_at },
    })
}

#[test]
fn executed_outcomes_count_as_approval_and_outcome_at_finished_at() {
    let now = SystemTime::now();
    let finished = rfc3339(now - Duration::from_secs(60));
    for (outcome, succeeded) in [
        ("Succeeded", true),
        ("Ineffective", false),
        ("Failed", false),
        ("RolledBack", false),
        // Unknown to this gate: executed and failed, the stricter reading.
        ("Exploded", false),
    ] {
        let past = from_action(&typed(action("web", executed(outcome, &finished)))).unwrap();
        assert_eq!(
            past,
            Past {
                time: parse_time(&finished),
                policy: "shop/default".into(),
                namespace: "shop".into(),
                target: "uid-shop-web".into(),
                action: "ACTION_TYPE_RESTART_POD".into(),
                recommendation_id: "rec-web".into(),
                content: None,
                outcome: Some(PastOutcome {
                    succeeded,
                    limits: GateLimits::default(),
                }),
            },
            "{outcome}"
        );
    }
}

#[test]
fn limits_count_against_the_workload_when_known() {
    let mut value = action(
        "web-7d9f-abcde",
        executed("Succeeded", "2026-01-01T00:00:00Z"),
    );
    value["spec"]["workloadUid"] = json!("uid-deployment-web");
    let past = from_action(&typed(value)).unwrap();
    assert_eq!(past.target, "uid-deployment-web");
}

#[test]
fn only_approvals_and_executions_count() {
    let decided = "2026-01-01T00:00:00Z";
    let verdict =
        |decision: &str| json!({ "verdict": { "decision": decision, "decidedAt": decided } });
    // Approved, not executed (yet, or refused by the remediator): the gate
    // counted it when it approved.
    let approved = from_action(&typed(action("a", verdict("Approved")))).unwrap();
    assert_eq!(approved.outcome, None);
    assert_eq!(approved.time, parse_time(decided));
    let mut refused = verdict("Approved");
    refused["result"] = json!({ "outcome": "Refused", "finishedAt": "2026-01-01T00:01:00Z" });
    let refused = from_action(&typed(action("a", refused))).unwrap();
    assert_eq!((refused.outcome, refused.time), (None, parse_time(decided)));
    // Nothing the gate approved: nothing to count.
    for decision in ["NeedsApproval", "DryRunOnly", "Denied"] {
        assert_eq!(
            from_action(&typed(action("a", verdict(decision)))),
            None,
            "{decision}"
        );
    }
    let mut dry_run = verdict("DryRunOnly");
    dry_run["result"] = json!({ "outcome": "DryRun" });
    assert_eq!(from_action(&typed(action("a", dry_run))), None);
    // Proposed, not reviewed yet: must not put its own target in cooldown.
    let mut proposed = action("a", Value::Null);
    proposed.as_object_mut().unwrap().remove("status");
    assert_eq!(from_action(&typed(proposed)), None);
    assert_eq!(
        from_action(&typed(action("a", json!({ "phase": "Proposed" })))),
        None
    );
}

#[test]
fn missing_or_bad_times_count_as_now() {
    let mut no_time = executed("Failed", "x");
    no_time["result"]
        .as_object_mut()
        .unwrap()
        .remove("finishedAt");
    let bad_time = executed("Failed", "yesterday-ish");
    let no_decided = json!({ "verdict": { "decision": "Approved" } });
    for status in [no_time, bad_time, no_decided] {
        let past = from_action(&typed(action("a", status.clone()))).unwrap();
        assert_eq!(past.time, None, "{status}");
    }
}

#[test]
fn unreadable_actions_count_by_their_labels_as_approvals_now() {
    let readable = action("ok", executed("Succeeded", "2026-01-01T00:00:00Z"));
    let mut unknown_type = action("new", json!({}));
    unknown_type["spec"]["action"]["type"] = json!("Teleport");
    let mut unlabelled = action("anon", json!({}));
    unlabelled["spec"]["confidence"] = json!("high");
    unlabelled["metadata"]["labels"] = json!({});
    let objects = [readable, unknown_type, unlabelled]
        .into_iter()
        .map(|v| serde_json::from_value::<DynamicObject>(v).unwrap())
        .collect();
    let (past, unreadable) = from_objects(objects);
    assert_eq!(unreadable, 2);
    assert_eq!(past.len(), 2, "{past:?}");
    assert_eq!(
        past[1],
        Past {
            time: None,
            policy: "shop/default".into(),
            namespace: "shop".into(),
            target: "uid-shop-new".into(),
            action: "ACTION_TYPE_RESTART_POD".into(),
            recommendation_id: "rec-new".into(),
            content: None,
            outcome: None,
        }
    );
}

#[test]
fn merge_drops_cluster_entries_the_audit_log_already_has() {
    let entry = |id: &str, succeeded: bool| Past {
        time: None,
        policy: "shop/default".into(),
        namespace: "shop".into(),
        target: format!("uid-{id}"),
        action: "ACTION_TYPE_RESTART_POD".into(),
        recommendation_id: id.into(),
        content: None,
        outcome: Some(PastOutcome {
            succeeded,
            limits: GateLimits::default(),
        }),
    };
    let merged = merge(
        vec![entry("a", false), entry("a", false)],
        vec![entry("a", false), entry("b", true), entry("", true)],
    );
    let ids: Vec<&str> = merged
        .iter()
        .map(|p| p.recommendation_id.as_str())
        .collect();
    assert_eq!(ids, ["a", "a", "b", ""]);
}

fn decide(gate: &Gate, namespace: &str, name: &str, now: SystemTime) -> (Decision, &'static str) {
    // A new recommendation on the target: the history's own ids already
    // hold their slots.
    let mut request = crashloop_restart(namespace, name);
    if let Some(rec) = request.recommendation.as_mut() {
        rec.id = format!("new-rec-{name}");
    }
    let review = gate.review(&request, now, Instant::now());
    (
        review.level.decision(),
        review.matched_rules.last().copied().unwrap_or(""),
    )
}

#[tokio::test(start_paused = true)]
async fn a_fresh_gate_enforces_cooldowns_and_breakers_from_the_history() {
    let now = SystemTime::now();
    let ago = |secs: u64| rfc3339(now - Duration::from_secs(secs));
    let mut history = vec![
        // Acted on a minute ago: in its 300 s cooldown.
        action("web-0", executed("Succeeded", &ago(60))),
        // Acted on ten minutes ago: free again.
        action("web-1", executed("Succeeded", &ago(600))),
        // Approved with an unreadable time: counts as now.
        action(
            "web-2",
            json!({ "verdict": { "decision": "Approved", "decidedAt": "soon" } }),
        ),
        // Outside the horizon: forgotten.
        action("web-3", executed("Failed", &ago(6 * 3600))),
    ];
    // Three failed restarts of one pod in `ops`, each past its cooldown:
    // the breaker opens.
    for (i, secs) in [1500, 1000, 500].into_iter().enumerate() {
        let mut failed = action("flaky", executed("Failed", &ago(secs)));
        failed["spec"]["recommendationId"] = json!(format!("rec-flaky-{i}"));
        failed["spec"]["policyRef"] = json!("ops/default");
        failed["spec"]["target"]["namespace"] = json!("ops");
        failed["spec"]["target"]["uid"] = json!("uid-ops-flaky");
        history.push(failed);
    }
    let (past, unreadable) = from_objects(
        history
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect(),
    );
    assert_eq!(unreadable, 0);
    let gate = Gate::new(Config::default());
    assert_eq!(gate.replay(&past, now, Instant::now()), 6);

    assert_eq!(
        decide(&gate, "shop", "web-0", now),
        (Decision::Denied, "cooldown")
    );
    assert_eq!(
        decide(&gate, "shop", "web-2", now),
        (Decision::Denied, "cooldown")
    );
    assert_eq!(
        decide(&gate, "ops", "flaky", now),
        (Decision::Denied, "circuit-open")
    );
    // web-0, web-1 and web-2 hold three of the namespace's five slots an
    // hour; a new recommendation on web-1 (past its cooldown) takes the
    // fourth, web-9 the fifth.
    assert_eq!(decide(&gate, "shop", "web-1", now).0, Decision::Approved);
    assert_eq!(decide(&gate, "shop", "web-9", now).0, Decision::Approved);
    assert_eq!(
        decide(&gate, "shop", "web-8", now),
        (Decision::Denied, "rate-limit-namespace")
    );
    // Other namespaces were never limited.
    assert_eq!(decide(&gate, "blog", "web-0", now).0, Decision::Approved);
}
