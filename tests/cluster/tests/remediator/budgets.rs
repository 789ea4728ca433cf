//! PodDisruptionBudgets decide every eviction the remediator makes. A
//! budget's 429 is BLOCKED (nothing was written, the caller may try again),
//! never FAILED and never a delete instead; the budget's
//! `unhealthyPodEvictionPolicy` is the user's choice and is honoured.

use std::time::Instant;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use super::*;

/// A budget over `app` with `min_available`, once the disruption
/// controller has computed its status to `healthy` current pods.
async fn budget(fx: &Fixture, app: &str, min_available: i32, healthy: i32) {
    let pdb: PodDisruptionBudget = object(json!({ "metadata": { "name": app },
        "spec": { "minAvailable": min_available, "selector": { "matchLabels": { "app": app } } } }));
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(fx.client.clone(), fx.ns());
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    settled(&pdbs, app, healthy).await;
}

async fn settled(pdbs: &Api<PodDisruptionBudget>, app: &str, healthy: i32) {
    eventually("PDB status computed", WAIT, || async {
        let pdb = pdbs.get(app).await?;
        let generation = pdb.metadata.generation;
        Ok(pdb.status.filter(|s| {
            s.observed_generation == generation
                && s.current_healthy == healthy
                && s.disruptions_allowed == 0
        }))
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn restarting_an_unhealthy_pod_is_blocked_by_its_budget_unless_the_budget_allows_unhealthy_evictions()
 {
    let Some(fx) = Fixture::new("rem-budget").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    faults::deployment(&fx.client, fx.ns(), "guarded", 2, &PodSpec::default())
        .await
        .unwrap();
    rolled_out(&fx, "guarded").await;
    let pods: Api<Pod> = Api::namespaced(fx.client.clone(), fx.ns());
    let victim = ready_pod(&fx, "guarded").await;
    pods.patch(
        &victim.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": { faults::FAULT_LABEL: "crash-loop" } } })),
    )
    .await
    .unwrap();
    // Both replicas must stay up; one crash-loops: no disruption allowed.
    budget(&fx, "guarded", 2, 1).await;
    // As the snapshot shows it now: labelled and crash-looping.
    let victim = pods.get(&victim.name_any()).await.unwrap();

    let restart = |id: &str| approved(id, ActionKind::RestartPod(RestartPod {}), target(&victim));
    let result = remediator.execute(restart("restart-1")).await.unwrap();
    assert_eq!(outcome(&result), Outcome::Blocked, "{result:?}");
    assert!(
        result
            .error
            .contains("The disruption budget guarded needs 2 healthy pods"),
        "the budget is named: {}",
        result.error
    );
    let still = pods.get(&victim.name_any()).await.unwrap();
    assert_eq!(still.uid(), victim.uid(), "not deleted instead");
    assert!(still.metadata.deletion_timestamp.is_none());
    // Nothing was claimed: the same action may try again later.
    let again = remediator.execute(restart("restart-1")).await.unwrap();
    assert_eq!(outcome(&again), Outcome::Blocked, "{again:?}");
    assert!(remediator.metrics().await.contains(&format!(
        r#"nanny_healing_actions_total{{action_type="restart_pod",namespace="{}",status="blocked"}} 2"#,
        fx.ns()
    )));

    // The user's choice: unhealthy pods may always go.
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(fx.client.clone(), fx.ns());
    pdbs.patch(
        "guarded",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "unhealthyPodEvictionPolicy": "AlwaysAllow" } })),
    )
    .await
    .unwrap();
    settled(&pdbs, "guarded", 1).await;
    let result = remediator.execute(restart("restart-2")).await.unwrap();
    assert_eq!(outcome(&result), Outcome::Succeeded, "{result:?}");
    eventually("the crash-looping pod evicted", WAIT, || async {
        Ok(pods
            .get_opt(&victim.name_any())
            .await?
            .is_none_or(|p| p.uid() != victim.uid())
            .then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn drain_a_pdb_refuses_is_blocked_within_its_deadline_and_evicts_nothing() {
    let Some(fx) = Fixture::new("rem-pdb").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    let node = FakeNode::create(&fx.cluster, &fx.client, &format!("{}-n1", fx.ns()))
        .await
        .unwrap();
    pinned_deployment(&fx, &node, "guarded").await;
    pinned_deployment(&fx, &node, "free").await;
    let guarded = running_on(&fx, "guarded", &node.name).await;
    let free = running_on(&fx, "free", &node.name).await;
    let pdb: PodDisruptionBudget = object(json!({ "metadata": { "name": "guarded" },
        "spec": { "minAvailable": 1, "selector": { "matchLabels": { "app": "guarded" } } } }));
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(fx.client.clone(), fx.ns());
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    eventually("PDB status computed", WAIT, || async {
        let status = pdbs.get("guarded").await?.status;
        Ok(status.filter(|s| {
            s.observed_generation.is_some() && s.current_healthy == 1 && s.disruptions_allowed == 0
        }))
    })
    .await
    .unwrap();

    let nodes: Api<Node> = Api::all(fx.client.clone());
    let drain = ActionKind::DrainNode(DrainNode {
        grace_period_seconds: 0,
        timeout_seconds: 3,
    });
    let started = Instant::now();
    let result = remediator
        .execute(approved(
            "drain-n1",
            drain,
            target(&nodes.get(&node.name).await.unwrap()),
        ))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(outcome(&result), Outcome::Blocked, "{result:?}");
    assert!(
        result.error.contains(&format!(
            "eviction of Pod {}/{}",
            fx.ns(),
            guarded.name_any()
        )),
        "{}",
        result.error
    );
    assert!(
        result
            .error
            .contains("The disruption budget guarded needs 1 healthy pods"),
        "the budget is named: {}",
        result.error
    );
    assert!(
        result.error.contains("nothing was evicted"),
        "{}",
        result.error
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "deadline 3s, took {took:?}"
    );

    let pods: Api<Pod> = Api::namespaced(fx.client.clone(), fx.ns());
    for pod in [&guarded, &free] {
        let now = pods.get(&pod.name_any()).await.unwrap();
        assert_eq!(now.uid(), pod.uid());
        assert!(
            now.metadata.deletion_timestamp.is_none(),
            "{} was evicted",
            pod.name_any()
        );
    }
    assert_ne!(
        nodes
            .get(&node.name)
            .await
            .unwrap()
            .spec
            .unwrap()
            .unschedulable,
        Some(true),
        "not cordoned either"
    );
}
