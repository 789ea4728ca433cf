//! Multi-step plans (#23), through the whole pipeline against the real API
//! server:
//! - a 3-step plan on a Deployment (scale to 2, raise its memory limit,
//!   rollout restart) needs a human (its strictest step does), runs step by
//!   step once approved, each step its own HealingAction reviewed by the
//!   gate as it starts and verified before the next, and ends Succeeded
//!   with all three changes on the API server;
//! - a 2-step plan whose second step fails verification (a CPU request no
//!   node can hold: the rollout never completes) stops there, and both
//!   steps are rolled back, last first: the API server shows the
//!   Deployment as it was;
//! - the analyzer's own plan for a NotReady node (cordon, then drain; rule
//!   `node-not-ready-cordon-drain`, switched on in its configuration) is
//!   approved once and carried out step by step;
//! - a model's plan (a stand-in model server over HTTP, proposing cordon
//!   then drain for a NotReady node no rule acts on) is recorded as a plan
//!   of the model, waits for the same approval and runs the same way; a
//!   model's plan hiding a deletion behind a rollout restart is denied
//!   whole, and the API server shows the StatefulSet untouched.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::Node,
};
use kube::{Api, ResourceExt, api::PostParams};
use nanny_cluster_tests::{
    Fixture, model,
    pipeline::{Harness, WAIT, policy},
};
use nanny_crd::{ActionType, HealingAction, Outcome, PLAN_LABEL, Phase, SourceKind};
use nanny_test_util::{
    faults::{self, NodeFault, PodSpec},
    nodes::FakeNode,
};
use serde_json::{Value, json};

/// Held while a test's fake node is NotReady: two at once would trip the
/// gate's storm guard (too many unhealthy nodes), which refuses every node
/// action.
static SICK_NODE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A plan HealingAction on Deployment `name`, as the coordinator records
/// one from the analyzer: every step in `spec.plan`, the first also
/// `spec.action`.
async fn propose_plan(h: &Harness, name: &str, steps: &[Value]) -> HealingAction {
    let deployments: Api<Deployment> = Api::namespaced(h.fx.client.clone(), h.fx.ns());
    let deployment = deployments.get(name).await.unwrap();
    let plan: HealingAction = serde_json::from_value(json!({
        "apiVersion": "nanny.ai/v1alpha1",
        "kind": "HealingAction",
        "metadata": { "name": format!("{name}-plan") },
        "spec": {
            "policyRef": format!("{}/default", h.fx.ns()),
            "target": {
                "kind": "Deployment", "namespace": h.fx.ns(), "name": name,
                "uid": deployment.uid().unwrap(),
                "resourceVersion": deployment.resource_version().unwrap(),
            },
            "action": steps[0],
            "plan": steps,
            "source": { "kind": "Rule", "name": "test-plan" },
            "confidence": 100,
            "reasoning": "a plan of several steps",
            "recommendationId": format!("rec-{name}-plan"),
            "snapshotId": "snap-1",
        },
    }))
    .unwrap();
    h.actions
        .create(&PostParams::default(), &plan)
        .await
        .unwrap()
}

/// Waits for HealingAction `name` to reach `phase`.
async fn wait_for(h: &Harness, name: &str, phase: Phase) -> HealingAction {
    h.eventually(&format!("{name} {phase}"), WAIT * 2, || async {
        let action = h.actions.get(name).await?;
        Ok((action.phase() == phase).then_some(action))
    })
    .await
}

/// The plan's step HealingActions, by step.
async fn steps_of(h: &Harness, plan: &str) -> Vec<HealingAction> {
    let mut steps: Vec<HealingAction> = h
        .actions
        .list(&kube::api::ListParams::default().labels(&format!("{PLAN_LABEL}={plan}")))
        .await
        .unwrap()
        .items;
    steps.sort_by_key(|s| s.spec.plan_step.as_ref().map(|p| p.step));
    steps
}

fn container(d: &Deployment) -> k8s_openapi::api::core::v1::Container {
    d.spec.clone().unwrap().template.spec.unwrap().containers[0].clone()
}

fn resource(d: &Deployment, section: &str, name: &str) -> Option<String> {
    let resources = container(d).resources.unwrap_or_default();
    let map = if section == "limits" {
        resources.limits
    } else {
        resources.requests
    };
    map.and_then(|m| m.get(name).map(|q| q.0.clone()))
}

#[tokio::test(flavor = "multi_thread")]
async fn plans_run_step_by_step_and_roll_back_what_ran_when_a_step_fails() {
    let Some(fx) = Fixture::new("plans").await else {
        return;
    };
    let ns = fx.ns().to_owned();
    let mut policy = policy(&ns, "Auto");
    let mut actions = nanny_test_util::scenarios::seed_actions();
    actions.as_array_mut().unwrap().extend([
        json!({ "type": "ScaleWorkload" }),
        json!({ "type": "DrainNode" }),
    ]);
    policy.spec.actions = serde_json::from_value(actions).unwrap();
    let env = vec![(
        "nanny-analyzer",
        "NANNY_RULES__NODE__CORDON_DRAIN_PLAN".to_owned(),
        "true".to_owned(),
    )];
    let h = Harness::with_policy(fx, &policy, env).await;
    let client = &h.fx.client;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let app = |memory: &str, cpu: &str| PodSpec {
        memory_limit: Some(memory.to_owned()),
        cpu_request: Some(cpu.to_owned()),
        ..PodSpec::default()
    };

    let three_steps = async {
        faults::deployment(client, &ns, "steady", 1, &app("256Mi", "100m"))
            .await
            .unwrap();
        h.running_pods("steady", 1).await;
        let plan = propose_plan(
            &h,
            "steady",
            &[
                json!({ "type": "ScaleWorkload", "params": { "replicas": 2 } }),
                json!({ "type": "PatchResources", "params": { "container": "app", "limits": { "memoryBytes": 402_653_184 } } }),
                json!({ "type": "RolloutRestart" }),
            ],
        )
        .await;
        // Scaling and patching need a human: so does the whole plan, once.
        let pending = wait_for(&h, &plan.name_any(), Phase::PendingApproval).await;
        let steps = pending.status.clone().unwrap().steps;
        assert_eq!(steps.len(), 3, "{steps:?}");
        assert!(
            steps
                .iter()
                .all(|s| s.decision == Some(nanny_crd::Decision::NeedsApproval)),
            "every step reviewed: {steps:?}"
        );
        assert!(
            steps_of(&h, "steady-plan").await.is_empty(),
            "nothing ran yet"
        );
        h.approve(&pending).await;
        let done = wait_for(&h, "steady-plan", Phase::Succeeded).await;
        let status = done.status.unwrap();
        assert!(
            status
                .steps
                .iter()
                .all(|s| s.phase == Some(Phase::Succeeded)),
            "{:?}",
            status.steps
        );
        // Each step was its own action, approved with the plan and verified.
        let steps = steps_of(&h, "steady-plan").await;
        let types: Vec<ActionType> = steps.iter().map(|s| s.spec.action.type_).collect();
        assert_eq!(
            types,
            [
                ActionType::ScaleWorkload,
                ActionType::PatchResources,
                ActionType::RolloutRestart
            ]
        );
        for step in &steps {
            let status = step.status.clone().unwrap();
            assert_eq!(status.phase, Some(Phase::Succeeded), "{status:?}");
            assert_eq!(status.result.unwrap().outcome, Outcome::Succeeded);
            let verdict = status.verdict.unwrap();
            assert!(verdict.human_approved, "{verdict:?}");
            assert!(
                verdict.signature.is_some(),
                "each step under its own signed verdict"
            );
        }
        // The API server's own evidence: all three changes.
        let d = deployments.get("steady").await.unwrap();
        assert_eq!(d.spec.as_ref().unwrap().replicas, Some(2));
        assert_eq!(
            resource(&d, "limits", "memory").as_deref(),
            Some("402653184")
        );
        assert!(
            d.spec
                .clone()
                .unwrap()
                .template
                .metadata
                .unwrap()
                .annotations
                .unwrap_or_default()
                .contains_key("kubectl.kubernetes.io/restartedAt"),
            "rolled out again"
        );
        println!("3-step plan approved once → scaled, limit raised, restarted; each step verified");

        // Attack: a HealingAction that claims to be a step of the approved
        // plan, with an action the plan does not hold (a 2 GiB limit), to
        // borrow its human approval. Denied before the gate is asked; the
        // API server's Deployment keeps the plan's limit.
        let mut forged = serde_json::to_value(&done.spec).unwrap();
        forged["action"] = json!({ "type": "PatchResources", "params": { "container": "app", "limits": { "memoryBytes": 2_147_483_648_i64 } } });
        forged.as_object_mut().unwrap().remove("plan");
        forged.as_object_mut().unwrap().remove("approval");
        forged["recommendationId"] = json!("rec-steady-plan.s2");
        forged["planStep"] = json!({ "action": "steady-plan", "recommendationId": "rec-steady-plan", "step": 2, "steps": 3 });
        let forged: HealingAction = serde_json::from_value(json!({
            "apiVersion": "nanny.ai/v1alpha1",
            "kind": "HealingAction",
            "metadata": { "name": "steady-forged-step" },
            "spec": forged,
        }))
        .unwrap();
        h.actions
            .create(&PostParams::default(), &forged)
            .await
            .unwrap();
        let denied = wait_for(&h, "steady-forged-step", Phase::Denied).await;
        let verdict = denied.status.unwrap().verdict.unwrap();
        assert!(
            verdict.matched_rules.iter().any(|r| r == "plan-mismatch"),
            "{verdict:?}"
        );
        assert!(!verdict.human_approved);
        let d = deployments.get("steady").await.unwrap();
        assert_eq!(
            resource(&d, "limits", "memory").as_deref(),
            Some("402653184"),
            "the forged step changed nothing"
        );
        println!("a forged step of the plan → denied (plan-mismatch), the Deployment unchanged");
    };

    let rolled_back = async {
        faults::deployment(client, &ns, "fragile", 1, &app("256Mi", "100m"))
            .await
            .unwrap();
        h.running_pods("fragile", 1).await;
        let plan = propose_plan(
            &h,
            "fragile",
            &[
                json!({ "type": "ScaleWorkload", "params": { "replicas": 2 } }),
                // No node holds 200 cores: the rollout never completes and
                // the step fails its verification.
                json!({ "type": "PatchResources", "params": { "container": "app", "requests": { "cpuMillicores": 200_000 } } }),
            ],
        )
        .await;
        let pending = wait_for(&h, &plan.name_any(), Phase::PendingApproval).await;
        h.approve(&pending).await;
        let done = wait_for(&h, "fragile-plan", Phase::RolledBack).await;
        let status = done.status.unwrap();
        assert_eq!(
            status.steps[0].phase,
            Some(Phase::Succeeded),
            "{:?}",
            status.steps
        );
        assert!(
            matches!(
                status.steps[1].phase,
                Some(Phase::Failed | Phase::RolledBack)
            ),
            "{:?}",
            status.steps
        );
        assert!(
            status
                .steps
                .iter()
                .all(|s| s.rollback == Some(Outcome::RolledBack)),
            "both steps undone: {:?}",
            status.steps
        );
        assert_eq!(status.rollback.unwrap().outcome, Outcome::RolledBack);
        let steps = steps_of(&h, "fragile-plan").await;
        assert_eq!(steps.len(), 2, "the plan stopped at its second step");
        // The API server's own evidence: the Deployment as it was.
        let d = deployments.get("fragile").await.unwrap();
        assert_eq!(d.spec.as_ref().unwrap().replicas, Some(1), "scaled back");
        assert_eq!(
            resource(&d, "requests", "cpu").as_deref(),
            Some("100m"),
            "the request restored"
        );
        println!("2-step plan, step 2 failed verification → both steps rolled back, last first");
    };

    let node_plan = async {
        let sick = SICK_NODE.lock().await;
        let node = FakeNode::create(&h.fx.cluster, client, &format!("{ns}-sick"))
            .await
            .unwrap();
        faults::node_fault(client, &node.name, NodeFault::NotReady)
            .await
            .unwrap();
        let nodes: Api<Node> = Api::all(client.clone());
        let uid = nodes.get(&node.name).await.unwrap().uid().unwrap();
        let plan = h
            .eventually("the analyzer's cordon-then-drain plan", WAIT, || async {
                Ok(h.actions_on(&uid)
                    .await
                    .into_iter()
                    .find(|a| a.spec.plan.len() == 2 && a.phase() == Phase::PendingApproval))
            })
            .await;
        assert_eq!(plan.spec.source.name, "node-not-ready-cordon-drain");
        assert_eq!(
            plan.spec.plan.iter().map(|s| s.type_).collect::<Vec<_>>(),
            [ActionType::CordonNode, ActionType::DrainNode]
        );
        h.approve(&plan).await;
        wait_for(&h, &plan.name_any(), Phase::Succeeded).await;
        assert!(
            node.cordoned(client).await.unwrap(),
            "cordoned, then drained"
        );
        println!("node NotReady → the analyzer's plan: cordoned, then drained, after one approval");
        (node, sick)
    };

    let (_, _, (node, sick)) = tokio::join!(three_steps, rolled_back, node_plan);
    drop(node);
    drop(sick);
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// A stand-in model server that answers every incident with a plan on the
/// first object of its incident it knows: cordon then drain for `node`, a
/// rollout restart then a deletion for the StatefulSet `set` (never
/// offered: the untrusted-model case the gate must refuse). It cites the
/// first issue the request's schema offers.
async fn planning_model(node: String, set: String) -> (String, model::Requests) {
    model::serve(move |request| {
        let offered = model::offered(request, "target_uid");
        let fingerprint = model::offered(request, "issue_fingerprint")
            .first()
            .map(|f| (*f).to_owned())
            .unwrap_or_default();
        let proposal = |action: &str, uid: &str, then: &[&str]| {
            json!({
                "action": action, "target_uid": uid, "then": then,
                "issue_fingerprint": fingerprint, "confidence": 95,
                "reason": "Act in steps.",
            })
        };
        let proposals: Vec<Value> = if offered.contains(&node.as_str()) {
            vec![proposal("cordon_node", &node, &["drain_node"])]
        } else if offered.contains(&set.as_str()) {
            vec![proposal("rollout_restart", &set, &["delete_resource"])]
        } else {
            Vec::new()
        };
        json!({
            "hypothesis": "The node stopped reporting, so its pods need another home.",
            "cited": [],
            "risk": "Draining moves every pod.",
            "recommendations": proposals,
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_models_plan_runs_like_a_rules_plan_and_one_hiding_a_deletion_is_denied_whole() {
    let Some(fx) = Fixture::new("plans-model").await else {
        return;
    };
    let ns = fx.ns().to_owned();
    let client = fx.client.clone();
    // Both objects exist before the model does: it needs their uids.
    let node = FakeNode::create(&fx.cluster, &client, &format!("{ns}-lost"))
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let node_uid = nodes.get(&node.name).await.unwrap().uid().unwrap();
    // A crash-looping StatefulSet: a rollout restart applies to it; a
    // deletion never does.
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let db = faults::crash_looping_statefulset(&client, &ns, "db")
        .await
        .unwrap();
    let db_uid = db.uid().unwrap();
    let (url, requests) = planning_model(node_uid.clone(), db_uid.clone()).await;
    let mut policy = policy(&ns, "Auto");
    let mut actions = nanny_test_util::scenarios::seed_actions();
    actions
        .as_array_mut()
        .unwrap()
        .push(json!({ "type": "DrainNode" }));
    policy.spec.actions = serde_json::from_value(actions).unwrap();
    let llm = |k: &str, v: &str| ("nanny-analyzer", k.to_owned(), v.to_owned());
    let env = vec![
        llm("NANNY_LLM__ENABLED", "true"),
        llm("NANNY_LLM__PROVIDER", "openai"),
        llm("NANNY_LLM__ENDPOINT", &url),
        llm("NANNY_LLM__MODEL", "stand-in"),
        // No rule acts on either incident, so the model is asked for
        // proposals.
        llm(
            "NANNY_RULES__DISABLED",
            "node-not-ready-cordon,node-not-ready-drain,crashloop-restart,crashloop-rollout-restart",
        ),
    ];
    let h = Harness::with_policy(fx, &policy, env).await;
    let sick = SICK_NODE.lock().await;
    faults::node_fault(&client, &node.name, NodeFault::NotReady)
        .await
        .unwrap();

    // The model's plan for the node: recorded as the model's, both steps,
    // waiting for a human as the drain does.
    let plan = h
        .eventually("the model's cordon-then-drain plan", WAIT, || async {
            Ok(h.actions_on(&node_uid)
                .await
                .into_iter()
                .find(|a| a.spec.plan.len() == 2 && a.phase() == Phase::PendingApproval))
        })
        .await;
    assert_eq!(plan.spec.source.kind, SourceKind::Model);
    assert_eq!(
        plan.spec.plan.iter().map(|s| s.type_).collect::<Vec<_>>(),
        [ActionType::CordonNode, ActionType::DrainNode]
    );
    assert!(
        !node.cordoned(&client).await.unwrap(),
        "nothing runs before the approval"
    );
    h.approve(&plan).await;
    let done = wait_for(&h, &plan.name_any(), Phase::Succeeded).await;
    assert!(
        done.status
            .unwrap()
            .steps
            .iter()
            .all(|s| s.phase == Some(Phase::Succeeded))
    );
    assert!(
        node.cordoned(&client).await.unwrap(),
        "cordoned, then drained"
    );
    let steps = steps_of(&h, &plan.name_any()).await;
    assert_eq!(steps.len(), 2, "each step its own HealingAction");
    // The request offered the later steps: the policy's acting actions.
    let offered_steps = requests.lock().unwrap().iter().any(|r| {
        model::schema(r)["properties"]["recommendations"]["items"]["properties"]["then"]["items"]
            ["enum"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("drain_node")) && !e.contains(&json!("report_only")))
    });
    assert!(offered_steps, "the schema offers then");
    println!("the model's plan for a NotReady node → approved once, cordoned then drained");

    // Attack: the model hides a deletion behind a rollout restart. The
    // gate reviews every step: the plan is denied whole, no step runs.
    let denied = h
        .eventually("the model's plan with a deletion denied", WAIT, || async {
            Ok(h.actions_on(&db_uid)
                .await
                .into_iter()
                .find(|a| a.spec.plan.len() == 2 && a.phase() == Phase::Denied))
        })
        .await;
    assert_eq!(denied.spec.source.kind, SourceKind::Model);
    assert_eq!(
        denied.spec.plan.iter().map(|s| s.type_).collect::<Vec<_>>(),
        [ActionType::RolloutRestart, ActionType::DeleteResource]
    );
    let verdict = denied.status.clone().unwrap().verdict.unwrap();
    assert!(
        verdict
            .matched_rules
            .iter()
            .any(|r| r.contains("never-delete")),
        "denied for its deletion: {verdict:?}"
    );
    assert!(
        steps_of(&h, &denied.name_any()).await.is_empty(),
        "no step ran"
    );
    // The API server's own evidence: the StatefulSet is there, never
    // restarted.
    let now = sets.get("db").await.unwrap();
    assert_eq!(now.uid(), Some(db_uid));
    assert_eq!(now.metadata.generation, db.metadata.generation);
    assert_eq!(now.spec, db.spec, "neither restarted nor deleted");
    println!("a model's plan hiding a deletion → denied whole, the StatefulSet untouched");
    drop(node);
    drop(sick);
    tokio::time::sleep(Duration::from_millis(100)).await;
}
