use k8s_openapi::jiff::Timestamp;
use nanny_crd::{ActionType, HealingAction, MAX_RECENT_ATTEMPTS, OutcomeStats, SourceKind};

use super::*;

fn now() -> Timestamp {
    "2026-12-03T12:00:00Z"
        .parse()
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A finished `RestartPod` for a crash loop on workload `workload`,
/// `ago` seconds ago, with `outcome`; `rollback` adds a rollback record.
fn finished(name: &str, workload: &str, ago: u64, outcome: &str, rollback: bool) -> HealingAction {
    let at = (now() - Duration::from_secs(ago)).to_string();
    let mut status = serde_json::json!({
        "phase": if outcome == "Succeeded" { "Succeeded" } else { "Failed" },
        "phaseSince": at,
        "result": { "outcome": outcome, "dryRunDiff": "", "preImageRef": "",
                    "verification": if outcome == "Failed" { "" } else { "checked" },
                    "error": "", "finishedAt": at },
    });
    if rollback {
        status["phase"] = serde_json::json!("RolledBack");
        status["rollback"] = serde_json::json!({
            "outcome": "RolledBack", "dryRunDiff": "", "preImageRef": "", "verification": "",
            "error": "", "finishedAt": (now() - Duration::from_secs(ago / 2)).to_string(),
        });
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "nanny.ai/v1alpha1", "kind": "HealingAction",
        "metadata": { "name": name, "namespace": "shop", "creationTimestamp": at },
        "spec": {
            "policyRef": "shop/p",
            "target": { "kind": "Pod", "namespace": "shop", "name": format!("{workload}-pod"), "uid": name },
            "action": { "type": "RestartPod" },
            "source": { "kind": "Rule", "name": "crashloop-restart" },
            "confidence": 100, "reasoning": "", "recommendationId": name,
            "snapshotId": "s", "workloadUid": workload, "issueKind": "CRASH_LOOP_BACK_OFF",
        },
        "status": status,
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn counts(e: &OutcomeStats) -> (u32, u32, u32, u32) {
    (e.effective, e.ineffective, e.failed, e.rolled_back)
}

#[test]
fn each_executed_action_is_counted_once_per_issue_action_source_and_workload() {
    let actions = [
        finished("a1", "web", 500, "Succeeded", false),
        finished("a2", "web", 400, "Ineffective", false),
        finished("a3", "web", 300, "Failed", false),
        finished("b1", "api", 200, "Succeeded", false),
        // Nothing executed: not counted.
        finished("c1", "web", 100, "DryRun", false),
        finished("c2", "web", 100, "Refused", false),
    ];
    let history = merge(&[], &actions);
    assert_eq!(history.len(), 2, "{history:#?}");
    let web = history.iter().find(|e| e.workload_uid == "web").unwrap();
    assert_eq!(counts(web), (1, 1, 1, 0));
    assert_eq!(web.source, SourceKind::Rule);
    assert_eq!(web.last_target, "Pod/shop/web-pod");
    assert_eq!(
        web.recent
            .iter()
            .map(|r| r.action.as_str())
            .collect::<Vec<_>>(),
        ["a3", "a2", "a1"],
        "newest first"
    );
    // Merging again counts nothing twice: the history is a fixed point.
    assert_eq!(merge(&history, &actions), history);
    // Still under way: not counted.
    let mut running = finished("a4", "web", 10, "Succeeded", false);
    running.status.as_mut().unwrap().phase = Some(nanny_crd::Phase::Verifying);
    assert_eq!(merge(&history, [&running]), history);
}

#[test]
fn the_counts_outlive_deleted_actions_and_a_rollback_moves_one() {
    let first = [
        finished("a1", "web", 500, "Succeeded", false),
        finished("a2", "web", 400, "Succeeded", false),
    ];
    let history = merge(&[], &first);
    // Retention deleted both; a third ran.
    let later = merge(
        &history,
        [&finished("a3", "web", 100, "Ineffective", false)],
    );
    assert_eq!(counts(&later[0]), (2, 1, 0, 0));
    // a2 was rolled back by a human afterwards.
    let rolled = merge(&later, [&finished("a2", "web", 400, "Succeeded", true)]);
    assert_eq!(counts(&rolled[0]), (1, 1, 0, 1));
}

#[test]
fn an_entry_keeps_its_newest_attempts_and_never_recounts_one_pushed_out() {
    let actions: Vec<HealingAction> = (0..12u64)
        .map(|i| {
            finished(
                &format!("a{i:02}"),
                "web",
                1000 - i * 10,
                "Succeeded",
                false,
            )
        })
        .collect();
    let history = merge(&[], &actions);
    assert_eq!(history[0].effective, 12);
    assert_eq!(history[0].recent.len(), MAX_RECENT_ATTEMPTS);
    assert_eq!(history[0].recent[0].action, "a11");
    // The oldest are still listed (not deleted yet): counted already.
    assert_eq!(merge(&history, &actions), history);
}

#[test]
fn a_lost_history_is_rebuilt_from_the_actions_kept() {
    let actions = [
        finished("a1", "web", 500, "Succeeded", false),
        finished("a2", "web", 400, "Ineffective", false),
    ];
    let history = merge(&[], &actions);
    // The status was deleted: the next merge starts from nothing.
    assert_eq!(merge(&[], &actions), history);
}

#[test]
fn the_history_is_bounded_by_dropping_the_least_recent_entries() {
    let actions: Vec<HealingAction> = (0..(nanny_crd::MAX_OUTCOME_ENTRIES as u64 + 5))
        .map(|i| {
            finished(
                &format!("a{i}"),
                &format!("w{i}"),
                10_000 - i,
                "Succeeded",
                false,
            )
        })
        .collect();
    let history = merge(&[], &actions);
    assert_eq!(history.len(), nanny_crd::MAX_OUTCOME_ENTRIES);
    assert!(
        !history.iter().any(|e| e.workload_uid == "w0"),
        "the entry with the oldest attempt went first"
    );
}

#[test]
fn calibration_moves_the_stated_confidence_toward_the_observed_rate() {
    let none = calibrate(
        &[],
        ("CRASH_LOOP_BACK_OFF", ActionType::RestartPod, "web"),
        80,
        now(),
    );
    assert_eq!(none.0, 80, "no outcomes: the stated figure");
    assert_eq!((none.1.outcomes, none.1.prior_weight), (0, PRIOR_WEIGHT));
    assert!(
        none.1.history.contains("no verified outcome"),
        "{}",
        none.1.history
    );

    let failing = merge(
        &[],
        &[
            finished("a1", "web", 500, "Ineffective", false),
            finished("a2", "api", 400, "Ineffective", false),
            finished("a3", "api", 300, "Ineffective", false),
            finished("a4", "api", 200, "Ineffective", false),
        ],
    );
    // A rule's 100 weighs 4; four failures: (4·100 + 0) / 8.
    let (rule, calibration) = calibrate(
        &failing,
        ("CRASH_LOOP_BACK_OFF", ActionType::RestartPod, "web"),
        100,
        now(),
    );
    assert_eq!(rule, 50);
    assert_eq!((calibration.effective, calibration.outcomes), (0, 4));
    // A model's low figure rises with success: (4·40 + 4·100) / 8.
    let working = merge(
        &[],
        &[
            finished("a1", "web", 500, "Succeeded", false),
            finished("a2", "api", 400, "Succeeded", false),
            finished("a3", "api", 300, "Succeeded", false),
            finished("a4", "api", 200, "Succeeded", false),
        ],
    );
    let pair = ("CRASH_LOOP_BACK_OFF", ActionType::RestartPod, "web");
    assert_eq!(calibrate(&working, pair, 40, now()).0, 70);
    // Another issue kind's or action's outcomes do not count.
    assert_eq!(
        calibrate(
            &working,
            ("OOM_KILLED", ActionType::RestartPod, "web"),
            40,
            now()
        )
        .0,
        40
    );
    assert_eq!(
        calibrate(
            &working,
            ("CRASH_LOOP_BACK_OFF", ActionType::RolloutRestart, "web"),
            40,
            now()
        )
        .0,
        40
    );
}

#[test]
fn the_explanation_counts_this_workloads_recent_attempts_and_the_streak() {
    let history = merge(
        &[],
        &[
            finished("a1", "web", 4000, "Succeeded", false),
            finished("a2", "web", 3000, "Succeeded", false),
            finished("a3", "web", 2000, "Ineffective", false),
            finished("a4", "web", 1000, "Ineffective", false),
            // Older than the window: in the counts, not in "the last 7 days".
            finished("a0", "web", 8 * 24 * 3600, "Succeeded", false),
            finished("b1", "api", 500, "Succeeded", false),
        ],
    );
    let text = describe(
        &history,
        ("CRASH_LOOP_BACK_OFF", ActionType::RestartPod, "web"),
        now(),
    );
    assert_eq!(
        text,
        "RestartPod fixed this workload 2 of 4 times in the last 7 days; the last 2 did not. \
         For CRASH_LOOP_BACK_OFF under this policy it was effective 4 of 6 times."
    );
    assert_eq!(
        recent_counts(&history, ActionType::RestartPod, "web", now()),
        (4, 2)
    );
    let ratio = effectiveness(&history);
    assert_eq!(
        ratio.get(&("CRASH_LOOP_BACK_OFF".to_owned(), ActionType::RestartPod)),
        Some(&(4.0 / 6.0))
    );
}
