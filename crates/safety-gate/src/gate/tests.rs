//! Unit and property tests of the decision procedure.
#![allow(
    clippy::too_many_lines,
    reason = "a test walks one case table or scenario top to bottom"
)]

use std::{collections::HashMap, time::Duration};

use nanny_proto::v1::{
    AllowedAction, ApprovalOverride, CordonNode, DeleteJob, DeleteResource, ExpandPvc, GateLimits,
    GatePolicy, IssueKind, ModelSource, NodePod, NodePods, ObjectRef, OutcomeReport, PlanStep,
    PolicyMode, Recommendation, ReportOnly, RestartPod, ReviewContext, ScaleHpa, Source, source,
};
use proptest::{prelude::*, strategy::ValueTree as _};

use super::*;

const ALL_TYPES: [ActionType; 17] = [
    ActionType::RestartPod,
    ActionType::RolloutRestart,
    ActionType::ScaleHpa,
    ActionType::CordonNode,
    ActionType::UncordonNode,
    ActionType::DrainNode,
    ActionType::ExpandPvc,
    ActionType::PatchResources,
    ActionType::DeleteJob,
    ActionType::DeleteResource,
    ActionType::ReportOnly,
    ActionType::DeleteFailedPods,
    ActionType::ForceDeletePod,
    ActionType::ScaleWorkload,
    ActionType::ResumeCronJob,
    ActionType::RolloutUndo,
    ActionType::RetriggerJob,
];

fn gate() -> Gate {
    Gate::new(Config::default())
}

fn target(kind: &str, namespace: &str, name: &str) -> ObjectRef {
    ObjectRef {
        kind: kind.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid: format!("uid-{namespace}-{name}"),
        ..ObjectRef::default()
    }
}

fn policy(mode: PolicyMode) -> GatePolicy {
    GatePolicy {
        mode: mode as i32,
        allowed_actions: ALL_TYPES
            .iter()
            .map(|t| AllowedAction {
                r#type: *t as i32,
                ..AllowedAction::default()
            })
            .collect(),
        limits: Some(GateLimits::default()),
        ai_min_confidence: 0.75,
        ai_allow_auto_approve: false,
        paused: false,
        allow_bare_pod_restart: false,
        drain_refuses_protected_pods: false,
    }
}

fn rule_source() -> Option<Source> {
    Some(Source {
        kind: Some(source::Kind::RuleId("test-rule".to_owned())),
    })
}

fn request(kind: Kind, target: ObjectRef) -> ReviewRequest {
    ReviewRequest {
        recommendation: Some(Recommendation {
            id: format!("rec-{}-{}", target.namespace, target.name),
            action: Some(Action { kind: Some(kind) }),
            target: Some(target),
            confidence: 100,
            source: rule_source(),
            ..Recommendation::default()
        }),
        policy_ref: "shop/default".to_owned(),
        snapshot_taken_at: Some(SystemTime::now().into()),
        policy: Some(policy(PolicyMode::Auto)),
        context: Some(ReviewContext {
            target_issue_kinds: vec![IssueKind::CrashLoopBackOff as i32],
            workload_replicas: 4,
            nodes_total: 3,
            facts_complete: true,
            ..ReviewContext::default()
        }),
        human_approval: None,
        policy_generation: 1,
    }
}

fn crashloop_restart() -> ReviewRequest {
    request(
        Kind::RestartPod(RestartPod {}),
        target("Pod", "shop", "web-1"),
    )
}

fn level(request: &ReviewRequest) -> (Level, Vec<&'static str>) {
    let review = gate().review_stateless(request, SystemTime::now());
    (review.level, review.matched_rules)
}

fn rec(request: &mut ReviewRequest) -> &mut Recommendation {
    request.recommendation.as_mut().unwrap()
}

fn ctx(request: &mut ReviewRequest) -> &mut ReviewContext {
    request.context.as_mut().unwrap()
}

#[test]
fn crash_looping_pod_restart_is_auto_approved() {
    let (level, rules) = level(&crashloop_restart());
    assert_eq!(level, Level::Approved, "{rules:?}");
    assert_eq!(rules, ["auto-restart-crashloop"]);
}

#[test]
fn healthy_pod_restart_needs_a_human_and_respects_the_disruption_cap() {
    let mut r = crashloop_restart();
    ctx(&mut r).target_issue_kinds.clear();
    assert_eq!(level(&r).0, Level::NeedsApproval);
    ctx(&mut r).workload_replicas = 2;
    let (level, rules) = level(&r);
    assert_eq!(level, Level::Denied);
    assert!(rules.contains(&"disruption-cap"), "{rules:?}");
}

#[test]
fn protections_hold_whatever_the_policy_says() {
    let mut auto_everything = policy(PolicyMode::Auto);
    for allowed in &mut auto_everything.allowed_actions {
        allowed.approval = ApprovalOverride::Auto as i32;
    }
    let mut r = request(
        Kind::RestartPod(RestartPod {}),
        target("Pod", "kube-system", "coredns-1"),
    );
    r.policy = Some(auto_everything.clone());
    assert_eq!(level(&r), (Level::Denied, vec!["protected-namespace"]));

    let mut r = crashloop_restart();
    r.policy = Some(auto_everything.clone());
    ctx(&mut r).target_labels =
        HashMap::from([("nanny.ai/protected".to_owned(), "true".to_owned())]);
    assert_eq!(level(&r), (Level::Denied, vec!["protected-label"]));

    // Labelled on its Deployment only, as many charts do: still protected.
    let mut r = crashloop_restart();
    r.policy = Some(auto_everything.clone());
    ctx(&mut r).owner_labels =
        HashMap::from([("app.kubernetes.io/managed-by".to_owned(), "Helm".to_owned())]);
    assert_eq!(level(&r), (Level::Denied, vec!["protected-owner"]));

    // A missing fact is never "not protected": every kind an action touches
    // is refused when the snapshot could not show it and its owners; a
    // report touches nothing.
    for (kind, target_kind, namespace) in [
        (Kind::RestartPod(RestartPod {}), "Pod", "shop"),
        (Kind::CordonNode(CordonNode {}), "Node", ""),
        (
            Kind::DeleteJob(DeleteJob { min_age_seconds: 0 }),
            "Job",
            "shop",
        ),
        (
            Kind::ExpandPvc(ExpandPvc {
                new_size_bytes: 2 << 30,
            }),
            "PersistentVolumeClaim",
            "shop",
        ),
    ] {
        let mut r = request(kind, target(target_kind, namespace, "x"));
        r.policy = Some(auto_everything.clone());
        ctx(&mut r).facts_complete = false;
        assert_eq!(
            level(&r),
            (Level::Denied, vec!["facts-missing"]),
            "{target_kind}"
        );
    }
    let mut r = request(
        Kind::ReportOnly(ReportOnly::default()),
        target("Pod", "shop", "x"),
    );
    r.policy = Some(auto_everything.clone());
    ctx(&mut r).facts_complete = false;
    assert_ne!(level(&r).1, vec!["facts-missing"]);

    let mut r = request(
        Kind::DeleteResource(DeleteResource {}),
        target("StatefulSet", "shop", "db"),
    );
    r.policy = Some(auto_everything.clone());
    assert_eq!(level(&r), (Level::Denied, vec!["never-delete"]));

    let mut r = request(
        Kind::DeleteResource(DeleteResource {}),
        target("ClusterRole", "", "admin"),
    );
    r.policy = Some(auto_everything.clone());
    assert_eq!(level(&r), (Level::Denied, vec!["never-modify-rbac"]));

    let mut r = request(
        Kind::DeleteResource(DeleteResource {}),
        target("PersistentVolume", "", "pv-1"),
    );
    r.policy = Some(auto_everything);
    assert_eq!(level(&r), (Level::Denied, vec!["protected-kind"]));
}

#[test]
fn malformed_requests_are_denied() {
    let mut r = crashloop_restart();
    rec(&mut r).action = Some(Action { kind: None });
    assert_eq!(level(&r).1, ["unknown-action"]);
    let mut r = crashloop_restart();
    rec(&mut r).target.as_mut().unwrap().uid.clear();
    assert_eq!(level(&r).1, ["missing-target-uid"]);
    let mut r = crashloop_restart();
    rec(&mut r).confidence = 101;
    assert_eq!(level(&r).1, ["malformed"]);
    let mut r = crashloop_restart();
    rec(&mut r).source = None;
    assert_eq!(level(&r).1, ["malformed"]);
    let mut r = crashloop_restart();
    r.policy = None;
    assert_eq!(level(&r).1, ["no-policy"]);
    let r = request(
        Kind::RestartPod(RestartPod {}),
        target("Deployment", "shop", "web"),
    );
    assert_eq!(level(&r).1, ["target-kind-mismatch"]);
    assert_eq!(level(&ReviewRequest::default()).0, Level::Denied);
}

#[test]
fn stale_or_future_snapshots_are_denied() {
    let mut r = crashloop_restart();
    r.snapshot_taken_at = Some((SystemTime::now() - Duration::from_secs(121)).into());
    assert_eq!(level(&r).1, ["stale-snapshot"]);
    r.snapshot_taken_at = Some((SystemTime::now() + Duration::from_secs(120)).into());
    assert_eq!(level(&r).1, ["stale-snapshot"]);
    r.snapshot_taken_at = None;
    assert_eq!(level(&r).1, ["stale-snapshot"]);
}

#[test]
fn actions_outside_the_allow_list_are_denied() {
    let mut r = crashloop_restart();
    r.policy
        .as_mut()
        .unwrap()
        .allowed_actions
        .retain(|a| a.r#type != ActionType::RestartPod as i32);
    assert_eq!(level(&r).1, ["action-not-allowed"]);
}

#[test]
fn hpa_max_may_rise_within_the_ceiling_only() {
    let mut r = request(
        Kind::ScaleHpa(ScaleHpa {
            min_replicas: None,
            max_replicas: 15,
        }),
        target("HorizontalPodAutoscaler", "shop", "web"),
    );
    ctx(&mut r).hpa_max_replicas = 10;
    assert_eq!(level(&r).0, Level::Approved);
    r.policy.as_mut().unwrap().allowed_actions[2].max_replicas = Some(12);
    assert_eq!(level(&r).1, ["parameter-out-of-bounds"]);
    let mut r = request(
        Kind::ScaleHpa(ScaleHpa {
            min_replicas: None,
            max_replicas: 5,
        }),
        target("HorizontalPodAutoscaler", "shop", "web"),
    );
    ctx(&mut r).hpa_max_replicas = 10;
    assert_eq!(level(&r).0, Level::NeedsApproval);
}

#[test]
fn raising_hpa_min_replicas_is_never_auto_approved() {
    // min=max=100 against a current max of 10 was once approved as "raise max".
    let mut r = request(
        Kind::ScaleHpa(ScaleHpa {
            min_replicas: Some(15),
            max_replicas: 15,
        }),
        target("HorizontalPodAutoscaler", "shop", "web"),
    );
    ctx(&mut r).hpa_max_replicas = 10;
    assert_eq!(level(&r).1, ["hpa-min-needs-human"], "current min unknown");
    ctx(&mut r).hpa_min_replicas = 2;
    assert_eq!(level(&r).1, ["hpa-min-needs-human"], "15 > current 2");
    let mut r = request(
        Kind::ScaleHpa(ScaleHpa {
            min_replicas: Some(2),
            max_replicas: 15,
        }),
        target("HorizontalPodAutoscaler", "shop", "web"),
    );
    ctx(&mut r).hpa_max_replicas = 10;
    ctx(&mut r).hpa_min_replicas = 2;
    assert_eq!(level(&r).0, Level::Approved, "min kept, max raised");
}

#[test]
fn a_human_approval_lifts_needs_approval_and_nothing_else() {
    let gate = gate();
    let (now, instant) = (SystemTime::now(), Instant::now());
    let human = Some(nanny_proto::v1::HumanApproval {
        by: "alice".into(),
        at: Some(now.into()),
    });
    let mut cordon = request(Kind::CordonNode(CordonNode {}), target("Node", "", "n1"));
    assert_eq!(
        gate.review(&cordon, now, instant).level,
        Level::NeedsApproval
    );
    cordon.human_approval = human.clone();
    let review = gate.review(&cordon, now, instant);
    assert_eq!(review.level, Level::Approved);
    assert_eq!(review.matched_rules.last(), Some(&"human-approved"));
    // An anonymous approval is none.
    cordon.human_approval = Some(nanny_proto::v1::HumanApproval::default());
    assert_eq!(
        gate.review(&cordon, now, instant).level,
        Level::NeedsApproval
    );
    // A protected target stays denied whoever approves.
    let mut protected = request(
        Kind::RestartPod(RestartPod {}),
        target("Pod", "kube-system", "dns"),
    );
    protected.human_approval = human;
    assert_eq!(gate.review(&protected, now, instant).level, Level::Denied);
}

#[test]
fn a_recommendation_id_counts_for_one_content_only() {
    let gate = gate();
    let now = SystemTime::now();
    let instant = Instant::now();
    let first = crashloop_restart();
    assert_eq!(gate.review(&first, now, instant).level, Level::Approved);
    // Re-reviewing the same recommendation keeps its slot.
    assert_eq!(gate.review(&first, now, instant).level, Level::Approved);
    // Six other pods under the same id: each a replay, none approved.
    for i in 2..8 {
        let mut other = crashloop_restart();
        rec(&mut other).target = Some(target("Pod", "shop", &format!("web-{i}")));
        let review = gate.review(&other, now, instant);
        assert_eq!(review.level, Level::Denied);
        assert_eq!(review.matched_rules.last(), Some(&"replayed-id"));
    }
    // The same target with other parameters is a replay too.
    let scale = |max_replicas| {
        let mut r = request(
            Kind::ScaleHpa(ScaleHpa {
                min_replicas: None,
                max_replicas,
            }),
            target("HorizontalPodAutoscaler", "shop", "web"),
        );
        ctx(&mut r).hpa_max_replicas = 10;
        r
    };
    assert_eq!(gate.review(&scale(12), now, instant).level, Level::Approved);
    let review = gate.review(&scale(20), now, instant);
    assert_eq!(review.matched_rules.last(), Some(&"replayed-id"));
}

#[test]
fn pvcs_only_grow_and_need_a_human() {
    let mut r = request(
        Kind::ExpandPvc(ExpandPvc {
            new_size_bytes: 15 << 30,
        }),
        target("PersistentVolumeClaim", "shop", "data"),
    );
    ctx(&mut r).pvc_capacity_bytes = 10 << 30;
    assert_eq!(level(&r).0, Level::NeedsApproval);
    ctx(&mut r).pvc_capacity_bytes = 20 << 30;
    assert_eq!(level(&r).1, ["never-shrink-pvc"]);
}

#[test]
fn only_jobs_finished_over_a_day_ago_are_deleted_automatically() {
    let mut r = request(
        Kind::DeleteJob(DeleteJob {
            min_age_seconds: 86_400,
        }),
        target("Job", "shop", "nightly"),
    );
    ctx(&mut r).job_finished_at = Some((SystemTime::now() - Duration::from_secs(25 * 3600)).into());
    assert_eq!(level(&r).0, Level::Approved);
    ctx(&mut r).job_finished_at = Some((SystemTime::now() - Duration::from_secs(2 * 3600)).into());
    assert_eq!(level(&r).1, ["job-too-recent"]);
    ctx(&mut r).job_finished_at = None;
    assert_eq!(level(&r).1, ["job-age-unknown"]);
}

#[test]
fn a_workloads_failed_pods_are_deleted_automatically_within_the_cap() {
    let delete = |max_pods| {
        request(
            Kind::DeleteFailedPods(nanny_proto::v1::DeleteFailedPods { max_pods }),
            target("Deployment", "shop", "web"),
        )
    };
    assert_eq!(
        level(&delete(20)),
        (Level::Approved, vec!["auto-delete-failed-pods"])
    );
    for out_of_bounds in [0, 101] {
        assert_eq!(level(&delete(out_of_bounds)).1, ["parameter-out-of-bounds"]);
    }
    // Pods are deleted through their workload only.
    let mut on_a_pod = delete(20);
    rec(&mut on_a_pod).target = Some(target("Pod", "shop", "web-1"));
    assert_eq!(level(&on_a_pod).0, Level::Denied);
}

#[test]
fn a_workload_is_only_scaled_up_within_the_ceiling_by_a_human() {
    let scale = |replicas, current| {
        let mut r = request(
            Kind::ScaleWorkload(nanny_proto::v1::ScaleWorkload { replicas }),
            target("Deployment", "shop", "web"),
        );
        ctx(&mut r).workload_replicas = current;
        r
    };
    assert_eq!(
        level(&scale(3, 2)),
        (Level::NeedsApproval, vec!["scale-needs-human"])
    );
    assert_eq!(level(&scale(2, 2)).1, ["scale-only-up"]);
    assert_eq!(level(&scale(3, 0)).1, ["scale-only-up"]);
    assert_eq!(level(&scale(101, 2)).1, ["parameter-out-of-bounds"]);
}

#[test]
fn only_nannys_own_cordon_is_lifted_automatically() {
    let mut r = request(
        Kind::UncordonNode(nanny_proto::v1::UncordonNode {}),
        target("Node", "", "n1"),
    );
    assert_eq!(
        level(&r),
        (Level::NeedsApproval, vec!["node-needs-human"]),
        "a person's cordon"
    );
    ctx(&mut r).node_cordoned_by_nanny = true;
    assert_eq!(
        level(&r),
        (Level::Approved, vec!["auto-uncordon-own-cordon"])
    );
}

#[test]
fn a_rollout_is_rolled_back_only_by_a_human_and_only_on_a_deployment() {
    let undo = |kind: &str| {
        request(
            Kind::RolloutUndo(nanny_proto::v1::RolloutUndo {}),
            target(kind, "shop", "web"),
        )
    };
    assert_eq!(
        level(&undo("Deployment")),
        (Level::NeedsApproval, vec!["rollout-undo-needs-human"])
    );
    for other in ["StatefulSet", "Pod"] {
        assert_eq!(level(&undo(other)).0, Level::Denied, "{other}");
    }
}

#[test]
fn a_job_is_run_again_only_by_a_human_and_only_as_a_job() {
    let retrigger = |kind: &str| {
        request(
            Kind::RetriggerJob(nanny_proto::v1::RetriggerJob {}),
            target(kind, "batch", "nightly"),
        )
    };
    assert_eq!(
        level(&retrigger("Job")),
        (Level::NeedsApproval, vec!["retrigger-needs-human"])
    );
    for other in ["CronJob", "Pod"] {
        assert_eq!(level(&retrigger(other)).0, Level::Denied, "{other}");
    }
}

#[test]
fn model_confidence_lowers_but_never_raises() {
    let model = Some(Source {
        kind: Some(source::Kind::Model(ModelSource {
            provider: "ollama".into(),
            model: "smollm2".into(),
            ..Default::default()
        })),
    });
    let mut r = crashloop_restart();
    rec(&mut r).source = model;
    rec(&mut r).confidence = 90;
    assert_eq!(
        level(&r),
        (
            Level::NeedsApproval,
            vec!["auto-restart-crashloop", "model-needs-human"]
        )
    );
    r.policy.as_mut().unwrap().ai_allow_auto_approve = true;
    assert_eq!(level(&r).0, Level::Approved);
    rec(&mut r).confidence = 50;
    assert_eq!(level(&r).0, Level::Denied);
    // A node action stays at needs-approval even at full confidence.
    let mut r = request(
        Kind::CordonNode(CordonNode {}),
        target("Node", "", "node-1"),
    );
    rec(&mut r).confidence = 100;
    assert_eq!(level(&r).0, Level::NeedsApproval);
}

fn drain(pods: Vec<NodePod>) -> ReviewRequest {
    let mut r = request(
        Kind::DrainNode(nanny_proto::v1::DrainNode {
            grace_period_seconds: 30,
            timeout_seconds: 300,
        }),
        target("Node", "", "node-1"),
    );
    ctx(&mut r).node_pods = Some(NodePods { pods });
    r
}

/// A ready pod of a 4-replica workload `app` in `namespace`, all of whose
/// owners are known.
fn node_pod(namespace: &str, name: &str, app: &str) -> NodePod {
    NodePod {
        r#ref: Some(target("Pod", namespace, name)),
        labels: HashMap::from([("app".to_owned(), app.to_owned())]),
        facts_complete: true,
        ready: true,
        workload_uid: format!("uid-{app}"),
        workload_replicas: 4,
        ..NodePod::default()
    }
}

fn reasons(request: &ReviewRequest) -> (Level, Vec<&'static str>, String) {
    let review = gate().review_stateless(request, SystemTime::now());
    (
        review.level,
        review.matched_rules,
        review.reasons.join("\n"),
    )
}

#[test]
fn a_drain_is_checked_against_every_pod_on_its_node() {
    // Unknown pods: refused.
    let mut unknown = drain(Vec::new());
    ctx(&mut unknown).node_pods = None;
    let (level, rules, _) = reasons(&unknown);
    assert_eq!(
        (level, rules.last()),
        (Level::Denied, Some(&"facts-missing"))
    );

    // One pod of a 4-replica workload: a human decides.
    let plain = drain(vec![node_pod("shop", "web-1", "web")]);
    assert_eq!(reasons(&plain).0, Level::NeedsApproval);

    // Protected pods stay and are named; DaemonSet pods are not counted.
    let mut helm = node_pod("shop", "db-0", "db");
    helm.owner_labels =
        HashMap::from([("app.kubernetes.io/managed-by".to_owned(), "Helm".to_owned())]);
    let mut daemon = node_pod("shop", "agent-x", "agent");
    daemon.stays = true;
    daemon.workload_replicas = 1;
    let mut mixed = drain(vec![
        node_pod("shop", "web-1", "web"),
        node_pod("kube-system", "dns-1", "dns"),
        helm,
        daemon,
    ]);
    let (level, rules, text) = reasons(&mixed);
    assert_eq!(level, Level::NeedsApproval, "{rules:?}");
    assert!(rules.contains(&"drain-skips-protected"), "{rules:?}");
    assert!(
        text.contains("kube-system/dns-1 (namespace kube-system is protected)")
            && text.contains(
                "shop/db-0 (an owner of the target carries the protected label app.kubernetes.io/managed-by=Helm)"
            ),
        "{text}"
    );
    // ... or refuse the drain, as the policy says.
    mixed.policy.as_mut().unwrap().drain_refuses_protected_pods = true;
    let (level, rules, _) = reasons(&mixed);
    assert_eq!(
        (level, rules.last()),
        (Level::Denied, Some(&"drain-protected-pods"))
    );

    // Owners unknown: named; refused under a refusing policy.
    let mut orphan = node_pod("shop", "odd-1", "odd");
    orphan.facts_complete = false;
    let mut r = drain(vec![orphan]);
    assert!(reasons(&r).1.contains(&"drain-owners-unknown"));
    r.policy.as_mut().unwrap().drain_refuses_protected_pods = true;
    assert_eq!(reasons(&r).0, Level::Denied);

    // Bare pods stay unless the policy allows restarting them.
    let mut bare = node_pod("shop", "debug", "");
    bare.bare = true;
    bare.workload_uid.clear();
    let mut r = drain(vec![bare]);
    let (level, rules, _) = reasons(&r);
    assert_eq!(level, Level::NeedsApproval);
    assert!(rules.contains(&"drain-skips-bare"), "{rules:?}");
    r.policy.as_mut().unwrap().allow_bare_pod_restart = true;
    // Allowed: it is evicted, and with no workload it counts over the cap.
    assert!(reasons(&r).1.contains(&"disruption-cap"));

    // The cap counts the workload's ready pods on the node; pods already
    // down take nothing more away.
    let web = |i: usize| node_pod("shop", &format!("web-{i}"), "web");
    let (level, rules, text) = reasons(&drain((0..3).map(web).collect()));
    assert_eq!(
        (level, rules.last()),
        (Level::Denied, Some(&"disruption-cap"))
    );
    assert!(text.contains("3 of 4 replicas down"), "{text}");
    let down: Vec<NodePod> = (0..3)
        .map(|i| NodePod {
            ready: false,
            workload_unavailable: 3,
            ..web(i)
        })
        .collect();
    assert_eq!(reasons(&drain(down)).0, Level::NeedsApproval);

    // A budget at zero is named; the eviction will wait on it.
    let mut guarded = node_pod("shop", "pay-1", "pay");
    guarded.pdb_disruptions_allowed = Some(0);
    let (level, rules, text) = reasons(&drain(vec![guarded]));
    assert_eq!(level, Level::NeedsApproval);
    assert!(
        rules.contains(&"pdb-blocks") && text.contains("shop/pay-1"),
        "{text}"
    );

    // Storm guard: too many evictions at once.
    let many: Vec<NodePod> = (0..31)
        .map(|i| NodePod {
            workload_replicas: 1000,
            ..node_pod("shop", &format!("p-{i}"), "big")
        })
        .collect();
    assert!(reasons(&drain(many)).1.contains(&"storm-guard-drain"));
}

#[test]
fn a_policy_cannot_auto_approve_a_drain() {
    let mut r = drain(Vec::new());
    for allowed in &mut r.policy.as_mut().unwrap().allowed_actions {
        allowed.approval = ApprovalOverride::Auto as i32;
    }
    let (level, rules) = level(&r);
    assert_eq!(level, Level::NeedsApproval, "{rules:?}");
    assert!(rules.contains(&"drain-needs-human"), "{rules:?}");
    // A cordon under the same policy is the policy's call.
    let mut cordon = r.clone();
    rec(&mut cordon).action = Some(Action {
        kind: Some(Kind::CordonNode(CordonNode {})),
    });
    assert_eq!(self::level(&cordon).0, Level::Approved);
}

#[test]
fn storm_guard_stops_node_actions_and_autonomy() {
    let mut r = request(
        Kind::CordonNode(CordonNode {}),
        target("Node", "", "node-1"),
    );
    ctx(&mut r).nodes_unhealthy = 2;
    assert!(level(&r).1.contains(&"storm-guard-nodes"));
    assert_eq!(level(&r).0, Level::Denied);
    let mut r = crashloop_restart();
    ctx(&mut r).open_issues = 51;
    assert_eq!(
        level(&r),
        (
            Level::NeedsApproval,
            vec!["auto-restart-crashloop", "storm-guard-issues"]
        )
    );
}

#[test]
fn modes_and_pause() {
    let mut r = crashloop_restart();
    r.policy.as_mut().unwrap().mode = PolicyMode::DryRun as i32;
    assert_eq!(level(&r).0, Level::DryRunOnly);
    r.policy.as_mut().unwrap().mode = PolicyMode::Monitor as i32;
    assert_eq!(level(&r).0, Level::DryRunOnly);
    r.policy.as_mut().unwrap().mode = PolicyMode::Unspecified as i32;
    assert_eq!(level(&r).1, ["unknown-mode"]);
    let mut r = crashloop_restart();
    r.policy.as_mut().unwrap().paused = true;
    assert_eq!(level(&r).0, Level::Denied);
}

#[test]
fn manual_override_makes_auto_actions_wait_for_a_human() {
    let mut r = crashloop_restart();
    r.policy.as_mut().unwrap().allowed_actions[0].approval = ApprovalOverride::Manual as i32;
    assert_eq!(level(&r).0, Level::NeedsApproval);
}

#[tokio::test(start_paused = true)]
async fn approvals_count_against_the_namespace_rate_limit() {
    let gate = gate();
    for i in 0..5 {
        let r = request(
            Kind::RestartPod(RestartPod {}),
            target("Pod", "shop", &format!("web-{i}")),
        );
        assert_eq!(
            gate.review(&r, SystemTime::now(), Instant::now()).level,
            Level::Approved
        );
    }
    let r = request(
        Kind::RestartPod(RestartPod {}),
        target("Pod", "shop", "web-5"),
    );
    let review = gate.review(&r, SystemTime::now(), Instant::now());
    assert_eq!(review.level, Level::Denied);
    assert_eq!(review.matched_rules.last(), Some(&"rate-limit-namespace"));
    // Another namespace is unaffected.
    let r = request(
        Kind::RestartPod(RestartPod {}),
        target("Pod", "blog", "web-0"),
    );
    assert_eq!(
        gate.review(&r, SystemTime::now(), Instant::now()).level,
        Level::Approved
    );
    tokio::time::advance(Duration::from_secs(3600)).await;
    let r = request(
        Kind::RestartPod(RestartPod {}),
        target("Pod", "shop", "web-5"),
    );
    assert_eq!(
        gate.review(&r, SystemTime::now(), Instant::now()).level,
        Level::Approved
    );
}

#[tokio::test(start_paused = true)]
async fn failed_outcomes_open_the_breaker_for_that_target() {
    let gate = gate();
    let r = crashloop_restart();
    for _ in 0..3 {
        let report = OutcomeReport {
            recommendation_id: "rec-earlier".into(),
            target: r.recommendation.as_ref().unwrap().target.clone(),
            action_type: ActionType::RestartPod as i32,
            ..OutcomeReport::default()
        };
        gate.record_outcome(&report, false, Instant::now());
    }
    let review = gate.review(&r, SystemTime::now(), Instant::now());
    assert_eq!(
        (review.level, review.matched_rules.last().copied()),
        (Level::Denied, Some("circuit-open"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_recreated_pod_of_the_same_workload_is_still_in_cooldown() {
    let gate = gate();
    let mut first = crashloop_restart();
    ctx(&mut first).workload_uid = "deploy-web".into();
    assert_eq!(
        gate.review(&first, SystemTime::now(), Instant::now()).level,
        Level::Approved
    );
    // The replacement pod has a new uid and name, but the same owner.
    let mut second = request(
        Kind::RestartPod(RestartPod {}),
        target("Pod", "shop", "web-2"),
    );
    ctx(&mut second).workload_uid = "deploy-web".into();
    let review = gate.review(&second, SystemTime::now(), Instant::now());
    assert_eq!(
        (review.level, review.matched_rules.last().copied()),
        (Level::Denied, Some("cooldown"))
    );
}

#[tokio::test(start_paused = true)]
async fn reviewing_the_same_recommendation_again_keeps_its_approval() {
    // A caller that crashed (or lost its write) after the first verdict asks
    // again: the recommendation already holds its slot, so its own approval
    // must not put it in cooldown. A new recommendation on the target is.
    let gate = gate();
    let first = crashloop_restart();
    for _ in 0..2 {
        let review = gate.review(&first, SystemTime::now(), Instant::now());
        assert_eq!(review.level, Level::Approved, "{:?}", review.matched_rules);
    }
    let mut again = crashloop_restart();
    rec(&mut again).id = "rec-proposed-again".into();
    let review = gate.review(&again, SystemTime::now(), Instant::now());
    assert_eq!(review.matched_rules.last(), Some(&"cooldown"));
}

#[tokio::test(start_paused = true)]
async fn a_plans_later_steps_ride_on_its_first_steps_slot_and_nothing_else_does() {
    let gate = gate();
    let restart = || Action {
        kind: Some(Kind::RestartPod(RestartPod {})),
    };
    let step = |n: u32, id: &str, steps: u32, pod: &str| {
        let mut r = request(Kind::RestartPod(RestartPod {}), target("Pod", "shop", pod));
        rec(&mut r).id = format!("{id}.s{n}");
        rec(&mut r).plan_step = Some(PlanStep {
            plan_id: id.to_owned(),
            step: n,
            steps,
        });
        rec(&mut r).plan = (0..steps).map(|_| restart()).collect();
        r
    };
    let review = |r: &ReviewRequest| {
        let review = gate.review(r, SystemTime::now(), Instant::now());
        (review.level, review.matched_rules.last().copied())
    };
    let executed = |id: &str, pod: &str| {
        let report = OutcomeReport {
            recommendation_id: id.into(),
            target: Some(target("Pod", "shop", pod)),
            action_type: ActionType::RestartPod as i32,
            policy_ref: "shop/default".into(),
            ..OutcomeReport::default()
        };
        gate.record_outcome(&report, true, Instant::now());
    };
    // A step 2 before its plan's first step passed: the usual cooldown
    // (after an action on the target).
    assert_eq!(review(&crashloop_restart()).0, Level::Approved);
    assert_eq!(
        review(&step(2, "plan-early", 2, "web-1")),
        (Level::Denied, Some("cooldown"))
    );
    // Step 1 of a plan on another target passes the limits (its slot is
    // taken when it has run); its later steps pass the cooldown it
    // started, each once, and take no slot.
    assert_eq!(review(&step(1, "plan-a", 3, "web-2")).0, Level::Approved);
    executed("plan-a.s1", "web-2");
    assert_eq!(review(&step(2, "plan-a", 3, "web-2")).0, Level::Approved);
    assert_eq!(review(&step(3, "plan-a", 3, "web-2")).0, Level::Approved);
    // What the plan does not hold is refused: its step 2 again under
    // another id, another target under the plan's id, another step count,
    // a step past the last, another plan.
    for (i, mut forged) in [
        step(2, "plan-a", 3, "web-2"),
        step(2, "plan-a", 3, "web-1"),
        step(2, "plan-a", 4, "web-2"),
        step(4, "plan-a", 3, "web-2"),
        step(2, "plan-b", 3, "web-2"),
    ]
    .into_iter()
    .enumerate()
    {
        rec(&mut forged).id = format!("forged-{i}");
        assert_eq!(
            review(&forged),
            (Level::Denied, Some("cooldown")),
            "{forged:?}"
        );
    }
    // The plan's own step under its id for another target is a replay.
    assert_eq!(
        review(&step(2, "plan-a", 3, "web-1")),
        (Level::Denied, Some("replayed-id"))
    );
    // A step 2 other than the one its plan named is not covered.
    let mut first = step(1, "plan-c", 2, "web-3");
    rec(&mut first).plan[1] = Action {
        kind: Some(Kind::DeleteResource(DeleteResource {})),
    };
    assert_eq!(review(&first).0, Level::Approved);
    executed("plan-c.s1", "web-3");
    assert_eq!(
        review(&step(2, "plan-c", 2, "web-3")),
        (Level::Denied, Some("cooldown"))
    );
    // A new recommendation on the plan's target is in its cooldown.
    let mut again = request(
        Kind::RestartPod(RestartPod {}),
        target("Pod", "shop", "web-2"),
    );
    rec(&mut again).id = "rec-after-the-plan".into();
    assert_eq!(review(&again), (Level::Denied, Some("cooldown")));
}

#[tokio::test(start_paused = true)]
async fn an_executed_human_approval_takes_a_slot_once() {
    let gate = gate();
    let report = OutcomeReport {
        recommendation_id: "rec-human".into(),
        target: Some(target("Pod", "shop", "web-1")),
        action_type: ActionType::RestartPod as i32,
        policy_ref: "shop/default".into(),
        ..OutcomeReport::default()
    };
    gate.record_outcome(&report, true, Instant::now());
    let review = gate.review(&crashloop_restart(), SystemTime::now(), Instant::now());
    assert_eq!(review.matched_rules.last(), Some(&"cooldown"));
}

#[test]
fn incomplete_or_odd_policies_and_contexts_fail_closed() {
    let mut r = crashloop_restart();
    r.context = None;
    assert_eq!(level(&r).0, Level::Denied);
    let mut r = crashloop_restart();
    r.policy.as_mut().unwrap().ai_min_confidence = f64::NAN;
    assert_eq!(level(&r).1, ["malformed"]);
    let mut r = crashloop_restart();
    let duplicate = AllowedAction {
        r#type: ActionType::RestartPod as i32,
        approval: ApprovalOverride::Manual as i32,
        ..AllowedAction::default()
    };
    r.policy.as_mut().unwrap().allowed_actions.push(duplicate);
    assert_eq!(level(&r).1, ["malformed"]);
    let mut r = request(
        Kind::CordonNode(CordonNode {}),
        target("Node", "", "node-1"),
    );
    ctx(&mut r).nodes_total = 0;
    assert_eq!(level(&r).0, Level::Denied);
    for kind in ["persistentvolume", "ValidatingAdmissionPolicy", "Secret"] {
        let r = request(
            Kind::DeleteResource(DeleteResource {}),
            target(kind, "", "x"),
        );
        assert_eq!(level(&r).0, Level::Denied, "{kind}");
    }
}

#[tokio::test(start_paused = true)]
async fn restore_replays_approvals_and_counts_unplaceable_times_as_now() {
    let now = SystemTime::now();
    let record = |seq: u64, time: String, name: &str| nanny_common::audit::AuditRecord {
        seq,
        prev_hash: String::new(),
        time,
        audit_id: format!("a{seq}"),
        entry: serde_json::json!({
            "kind": "verdict", "decision": "DECISION_APPROVED", "policy": "shop/default",
            "recommendation_id": format!("rec-{name}"), "limit_target": format!("uid-shop-{name}"),
            "action": "ACTION_TYPE_RESTART_POD", "target": { "namespace": "shop", "uid": format!("uid-shop-{name}") },
        }),
        hash: String::new(),
        signature: String::new(),
        key_id: String::new(),
    };
    let at = |age: u64| prost_types::Timestamp::from(now - Duration::from_secs(age)).to_string();
    let records = [
        record(1, at(7200), "old"),       // outside the window: ignored
        record(2, at(60), "web-1"),       // in cooldown
        record(3, "garbage".into(), "x"), // unplaceable: counts as now
        record(4, at(10), "y"),
        record(5, at(5), "z"),
    ];
    let gate = gate();
    assert_eq!(gate.restore(&records, now, Instant::now()), 4);
    let review = gate.review(&crashloop_restart(), now, Instant::now());
    assert_eq!(review.matched_rules.last(), Some(&"cooldown"));
    // Four of the namespace's five slots are taken: one more fits, then none.
    let r = request(Kind::RestartPod(RestartPod {}), target("Pod", "shop", "a"));
    assert_eq!(gate.review(&r, now, Instant::now()).level, Level::Approved);
    let r = request(Kind::RestartPod(RestartPod {}), target("Pod", "shop", "b"));
    assert_eq!(
        gate.review(&r, now, Instant::now()).matched_rules.last(),
        Some(&"rate-limit-namespace")
    );
}

// ---- properties -------------------------------------------------------------

const NAMESPACES: [&str; 5] = ["shop", "blog", "kube-system", "monitoring", "cert-manager"];
const KINDS: [&str; 12] = [
    "Pod",
    "Deployment",
    "StatefulSet",
    "Node",
    "Job",
    "HorizontalPodAutoscaler",
    "PersistentVolumeClaim",
    "PersistentVolume",
    "ClusterRole",
    "RoleBinding",
    "CustomResourceDefinition",
    "Namespace",
];

fn any_kind() -> impl Strategy<Value = Option<Kind>> {
    prop_oneof![
        Just(None),
        Just(Some(Kind::RestartPod(RestartPod {}))),
        Just(Some(Kind::RolloutRestart(
            nanny_proto::v1::RolloutRestart {}
        ))),
        (-5i32..200).prop_map(|m| Some(Kind::ScaleHpa(ScaleHpa {
            min_replicas: None,
            max_replicas: m
        }))),
        Just(Some(Kind::CordonNode(CordonNode {}))),
        Just(Some(Kind::UncordonNode(nanny_proto::v1::UncordonNode {}))),
        (-10i64..5000, -10i64..5000).prop_map(|(g, t)| Some(Kind::DrainNode(
            nanny_proto::v1::DrainNode {
                grace_period_seconds: g,
                timeout_seconds: t
            }
        ))),
        (-1i64..(40i64 << 40)).prop_map(|n| Some(Kind::ExpandPvc(ExpandPvc { new_size_bytes: n }))),
        Just(Some(Kind::PatchResources(
            nanny_proto::v1::PatchResources {
                container: "app".into(),
                ..Default::default()
            }
        ))),
        (0i64..200_000).prop_map(|a| Some(Kind::DeleteJob(DeleteJob { min_age_seconds: a }))),
        Just(Some(Kind::DeleteResource(DeleteResource {}))),
        (0u32..150).prop_map(
            |m| Some(Kind::DeleteFailedPods(nanny_proto::v1::DeleteFailedPods {
                max_pods: m
            }))
        ),
        Just(Some(Kind::ForceDeletePod(
            nanny_proto::v1::ForceDeletePod {}
        ))),
        (-5i32..200).prop_map(
            |r| Some(Kind::ScaleWorkload(nanny_proto::v1::ScaleWorkload {
                replicas: r
            }))
        ),
        Just(Some(Kind::ResumeCronJob(nanny_proto::v1::ResumeCronJob {}))),
        Just(Some(Kind::RolloutUndo(nanny_proto::v1::RolloutUndo {}))),
        Just(Some(Kind::RetriggerJob(nanny_proto::v1::RetriggerJob {}))),
        Just(Some(Kind::ReportOnly(
            nanny_proto::v1::ReportOnly::default()
        ))),
    ]
}

/// A target kind the action fits (mostly), so that generated requests reach
/// the deeper rules instead of stopping at the shape checks.
fn target_kind_for(kind: Option<&Kind>, fits: bool, pick: usize) -> &'static str {
    let targets = kind.map(|k| vocabulary::of(k).targets);
    let choices: &[&'static str] = match targets {
        Some(vocabulary::Targets::Kinds(kinds)) if fits => kinds,
        _ => &KINDS,
    };
    choices[pick % choices.len()]
}

prop_compose! {
    fn any_request()(
        kind in any_kind(),
        fits in prop::bool::weighted(0.85),
        pick in 0usize..1000,
        namespace in prop_oneof![3 => Just("shop"), 3 => Just("blog"), 1 => proptest::sample::select(&NAMESPACES[2..5])],
        has_uid in prop::bool::weighted(0.9),
        protected_label in prop::bool::weighted(0.2),
        confidence in prop_oneof![4 => Just(100u32), 1 => 0u32..150],
        source in prop_oneof![8 => Just(1u8), 1 => Just(2u8), 1 => Just(0u8)],
        mode in prop_oneof![7 => Just(PolicyMode::Auto as i32), 3 => 0i32..5],
        overrides in proptest::collection::vec(0i32..4, ALL_TYPES.len()),
        allowed in proptest::collection::vec(prop::bool::weighted(0.9), ALL_TYPES.len()),
        allow_auto in any::<bool>(),
        min_confidence in 0.0f64..1.0,
        crashloop in any::<bool>(),
        replicas in -1i32..10,
        unavailable in 0i32..10,
        hpa_max in 0i32..50,
        pvc in -1i64..(20i64 << 40),
        age_secs in proptest::option::of(0u64..(5 * 86_400)),
        snapshot_age in prop_oneof![9 => 0u64..60, 1 => 0u64..300],
    ) -> ReviewRequest {
        let target_kind = target_kind_for(kind.as_ref(), fits, pick);
        let cluster_scoped = matches!(
            target_kind,
            "Node" | "Namespace" | "PersistentVolume" | "ClusterRole" | "CustomResourceDefinition"
        );
        let namespace = if cluster_scoped { "" } else { namespace };
        let mut labels = HashMap::new();
        if protected_label {
            labels.insert("app.kubernetes.io/managed-by".to_owned(), "Helm".to_owned());
        }
        let source = match source {
            0 => None,
            1 => rule_source(),
            _ => Some(Source { kind: Some(source::Kind::Model(ModelSource::default())) }),
        };
        let issue_kinds = if crashloop { vec![IssueKind::CrashLoopBackOff as i32] } else { Vec::new() };
        let now = SystemTime::now();
        ReviewRequest {
            recommendation: Some(Recommendation {
                id: "rec".into(),
                action: Some(Action { kind }),
                target: Some(ObjectRef {
                    kind: target_kind.into(),
                    namespace: namespace.into(),
                    name: "x".into(),
                    uid: if has_uid { "u".into() } else { String::new() },
                    ..Default::default()
                }),
                confidence,
                source,
                ..Default::default()
            }),
            policy_ref: "p".into(),
            snapshot_taken_at: Some((now - Duration::from_secs(snapshot_age)).into()),
            policy: Some(GatePolicy {
                mode,
                allowed_actions: ALL_TYPES
                    .iter()
                    .zip(overrides.iter().zip(&allowed))
                    .filter(|(_, (_, a))| **a)
                    .map(|(t, (o, _))| AllowedAction { r#type: *t as i32, approval: *o, ..Default::default() })
                    .collect(),
                limits: None,
                ai_min_confidence: min_confidence,
                ai_allow_auto_approve: allow_auto,
                paused: false,
                allow_bare_pod_restart: false,
                drain_refuses_protected_pods: false,
            }),
            context: Some(ReviewContext {
                target_labels: labels,
                target_issue_kinds: issue_kinds,
                workload_replicas: replicas,
                workload_unavailable: unavailable,
                hpa_max_replicas: hpa_max,
                pvc_capacity_bytes: pvc,
                job_finished_at: age_secs.map(|a| (now - Duration::from_secs(a)).into()),
                nodes_total: 3,
                facts_complete: true,
                ..Default::default()
            }),
            human_approval: None,
            policy_generation: 1,
        }
    }
}

/// The generator must reach permissive verdicts, or the properties below
/// prove nothing: most unprotected, well-formed requests get past the gate.
#[test]
fn generator_reaches_permissive_verdicts() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut permissive, mut protected) = (0, 0);
    for _ in 0..2000 {
        let r = any_request().new_tree(&mut runner).unwrap().current();
        if is_protected(&r) {
            protected += 1;
        } else if gate().review_stateless(&r, SystemTime::now()).level <= Level::NeedsApproval {
            permissive += 1;
        }
    }
    assert!(
        permissive > 200 && protected > 200,
        "permissive {permissive}, protected {protected}"
    );
}

fn is_protected(r: &ReviewRequest) -> bool {
    let rec = r.recommendation.as_ref().unwrap();
    let t = rec.target.as_ref().unwrap();
    let protected = Config::default().protected;
    let delete = matches!(
        rec.action.as_ref().and_then(|a| a.kind.as_ref()),
        Some(Kind::DeleteResource(_))
    );
    protected.namespaces.contains(&t.namespace)
        || protected.kinds.contains(&t.kind)
        || r.context
            .as_ref()
            .unwrap()
            .target_labels
            .get("app.kubernetes.io/managed-by")
            .is_some_and(|v| v == "Helm")
        || RBAC_KINDS.contains(&t.kind.as_str())
        || (delete && !DELETABLE_KINDS.contains(&t.kind.as_str()))
}

fn is_malformed(r: &ReviewRequest) -> bool {
    let rec = r.recommendation.as_ref().unwrap();
    rec.action.as_ref().and_then(|a| a.kind.as_ref()).is_none()
        || rec.target.as_ref().unwrap().uid.is_empty()
        || rec.confidence > 100
        || rec.source.is_none()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn protected_and_never_actions_are_always_denied(r in any_request()) {
        let review = gate().review_stateless(&r, SystemTime::now());
        if is_protected(&r) {
            prop_assert_eq!(review.level, Level::Denied, "{:?}", review);
        }
    }

    #[test]
    fn malformed_input_is_always_denied(r in any_request()) {
        let review = gate().review_stateless(&r, SystemTime::now());
        if is_malformed(&r) {
            prop_assert_eq!(review.level, Level::Denied, "{:?}", review);
        }
    }

    #[test]
    fn nothing_is_auto_approved_outside_auto_mode_or_for_an_unchecked_model(r in any_request()) {
        let review = gate().review_stateless(&r, SystemTime::now());
        let policy = r.policy.as_ref().unwrap();
        let model = matches!(
            r.recommendation.as_ref().unwrap().source.as_ref().and_then(|s| s.kind.as_ref()),
            Some(source::Kind::Model(_))
        );
        if policy.mode != PolicyMode::Auto as i32 || (model && !policy.ai_allow_auto_approve) {
            prop_assert_ne!(review.level, Level::Approved, "{:?}", review);
        }
    }

    #[test]
    fn every_decision_names_its_rules(r in any_request()) {
        let review = gate().review_stateless(&r, SystemTime::now());
        prop_assert!(!review.matched_rules.is_empty());
        prop_assert_eq!(review.matched_rules.len(), review.reasons.len());
    }
}
