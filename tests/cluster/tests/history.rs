//! Outcome history: actions with known outcomes are counted in the
//! policy's status, the next proposal's confidence and explanation move
//! with them, the effectiveness ratio is exported, and the history is
//! rebuilt from the HealingActions when its status is deleted.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, ResourceExt as _,
    api::{Patch, PatchParams},
};
use nanny_cluster_tests::{
    Fixture,
    pipeline::{Harness, WAIT, crash_one_pod, restarts_ladder_policy},
};
use nanny_crd::{ActionType, HealingAction, HealingPolicy, OutcomeStats, Phase};
use nanny_test_util::{
    cluster::eventually,
    faults::{self, PodSpec},
};

const ISSUE: &str = "CRASH_LOOP_BACK_OFF";

/// The policy's outcome history, once it holds what `ready` accepts.
async fn history_when(
    h: &Harness,
    what: &str,
    ready: impl Fn(&[OutcomeStats]) -> bool,
) -> Vec<OutcomeStats> {
    let policies: Api<HealingPolicy> = Api::namespaced(h.fx.client.clone(), h.fx.ns());
    h.eventually(what, WAIT, || async {
        let outcomes = policies
            .get("default")
            .await?
            .status
            .map(|s| s.outcomes)
            .unwrap_or_default();
        Ok(ready(&outcomes).then_some(outcomes))
    })
    .await
}

/// The entry of `workload`'s crash-loop restarts.
fn restarts_of<'a>(history: &'a [OutcomeStats], workload: &str) -> Option<&'a OutcomeStats> {
    history.iter().find(|e| {
        e.workload_uid == workload && e.issue_kind == ISSUE && e.action == ActionType::RestartPod
    })
}

/// The restart proposed for `pod`, once its phase is `phase`.
async fn restart_of(h: &Harness, pod: &Pod, phase: Phase) -> HealingAction {
    let action = h.wait_phase(&pod.uid().unwrap(), phase).await;
    assert_eq!(action.spec.action.type_, ActionType::RestartPod);
    action
}

#[tokio::test(flavor = "multi_thread")]
async fn outcomes_are_counted_move_confidence_and_explanations_and_are_rebuilt_when_lost() {
    let Some(fx) = Fixture::new("history").await else {
        return;
    };
    // The ladder stops a workload after two restarts that did not help;
    // the gate asks a human below the policy's 75 %.
    let policy = restarts_ladder_policy(fx.ns());
    let h = Harness::with_policy(fx, &policy, Vec::new()).await;
    let (client, ns) = (&h.fx.client, h.fx.ns());

    // 1. A template that crashes: two restarts, both ineffective. The first
    //    has no history (the rule's 100 %); the second is calibrated by
    //    the first's failure: (4 · 100 + 0) / 5 = 80 %.
    let stubborn = faults::crash_loop(client, ns, "stubborn", 1)
        .await
        .unwrap()
        .uid()
        .unwrap();
    let history = history_when(&h, "two ineffective restarts counted", |history| {
        restarts_of(history, &stubborn).is_some_and(|e| e.ineffective == 2)
    })
    .await;
    let entry = restarts_of(&history, &stubborn).unwrap();
    assert_eq!(
        (
            entry.effective,
            entry.failed,
            entry.rolled_back,
            entry.recent.len()
        ),
        (0, 0, 0, 2),
        "{entry:#?}"
    );
    let mut confidences: Vec<(u32, u32)> = h
        .actions
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|a| {
            a.spec.workload_uid.as_deref() == Some(stubborn.as_str())
                && a.spec.action.type_ == ActionType::RestartPod
        })
        .map(|a| {
            let c = a.spec.calibration.as_ref().expect("a calibration recorded");
            (c.outcomes, a.spec.confidence)
        })
        .collect();
    confidences.sort_unstable();
    assert_eq!(
        confidences,
        [(0, 100), (1, 80)],
        "{}",
        h.actions_seen().await
    );

    // 2. A healthy workload's pod crashes: its restart is proposed at
    //    (4 · 100 + 0) / 6 = 67 %, so the gate wants a human, and the
    //    action says why from the history.
    faults::deployment(client, ns, "flaky", 1, &PodSpec::default())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let victim = h.running_pods("flaky", 1).await.remove(0);
    crash_one_pod(&pods, &victim).await;
    let pending = restart_of(&h, &victim, Phase::PendingApproval).await;
    let calibration = pending.spec.calibration.clone().unwrap();
    assert_eq!(pending.spec.confidence, 67, "{calibration:?}");
    assert_eq!(
        (
            calibration.reported,
            calibration.effective,
            calibration.outcomes,
            calibration.prior_weight
        ),
        (100, 0, 2, 4)
    );
    assert_eq!(
        calibration.history,
        format!(
            "RestartPod has no verified outcome on this workload in the last 7 days. \
             For {ISSUE} under this policy it was effective 0 of 2 times."
        )
    );
    let reasons = pending.status.as_ref().unwrap().verdict.as_ref().unwrap();
    assert!(
        reasons.matched_rules.iter().any(|r| r == "low-confidence"),
        "the calibrated confidence is below the policy's 0.75: {reasons:?}"
    );
    // A human approves it; the restart helps.
    h.approve(&pending).await;
    restart_of(&h, &victim, Phase::Succeeded).await;
    let flaky = pending.spec.workload_uid.clone().unwrap();
    let history = history_when(&h, "the effective restart counted", |history| {
        restarts_of(history, &flaky).is_some_and(|e| e.effective == 1)
    })
    .await;
    assert_eq!(
        restarts_of(&history, &stubborn).map(|e| (e.effective, e.ineffective)),
        Some((0, 2))
    );
    assert_eq!(
        restarts_of(&history, &flaky).map(|e| (e.total(), e.last_target.clone())),
        Some((1, format!("Pod/{ns}/{}", victim.name_any())))
    );

    // 3. Its replacement crashes too: the next restart cites this
    //    workload's success, and its confidence rose with it:
    //    (4 · 100 + 100) / 7 = 71 %.
    let replacement = eventually("the replacement pod", WAIT, || async {
        Ok(h.running_pods("flaky", 1)
            .await
            .into_iter()
            .find(|p| p.uid() != victim.uid()))
    })
    .await
    .unwrap();
    crash_one_pod(&pods, &replacement).await;
    let next = restart_of(&h, &replacement, Phase::PendingApproval).await;
    assert_eq!(next.spec.confidence, 71);
    assert_eq!(
        next.spec.calibration.as_ref().unwrap().history,
        format!(
            "RestartPod fixed this workload 1 of 1 times in the last 7 days. \
             For {ISSUE} under this policy it was effective 1 of 3 times."
        )
    );

    // 4. The effectiveness ratio per issue kind and action.
    let coordinator = &h.stack.services["nanny-coordinator"];
    let ratios = nanny_test_util::http::counts(
        coordinator.http_addr,
        "nanny_action_effectiveness_ratio",
        "action",
    )
    .await
    .unwrap();
    let ratio = ratios.get("RestartPod").copied().unwrap_or_default();
    assert!((ratio - 1.0 / 3.0).abs() < 1e-9, "{ratios:?}");

    // 5. The history is lost (its status deleted): it is rebuilt from the
    //    HealingActions, exactly.
    // (Compared on this test's workloads: a NotReady node another test
    // makes is in every policy's scope.)
    let ours = |history: &[OutcomeStats]| -> Vec<OutcomeStats> {
        history
            .iter()
            .filter(|e| e.workload_uid == stubborn || e.workload_uid == flaky)
            .cloned()
            .collect()
    };
    let before = ours(&history_when(&h, "the history", |_| true).await);
    let policies: Api<HealingPolicy> = Api::namespaced(client.clone(), ns);
    policies
        .patch_status(
            "default",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": { "outcomes": null } })),
        )
        .await
        .unwrap();
    let deleted = policies.get_status("default").await.unwrap();
    let gone = deleted.status.map(|s| s.outcomes).unwrap_or_default();
    // (The coordinator may have rewritten it already.)
    assert!(gone.is_empty() || ours(&gone) == before, "{gone:#?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rebuilt = history_when(&h, "the history rebuilt", |history| {
        ours(history).len() == before.len()
    })
    .await;
    assert_eq!(ours(&rebuilt), before);
    println!(
        "history: stubborn 0/2, flaky 1/1; confidences 100 → 80 → 67 (needs a human) → 71; ratio {ratio:.3}; rebuilt after deletion"
    );
}
