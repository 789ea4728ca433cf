//! PodDisruptionBudgets decide every eviction the remediator makes. A
//! budget's 429 is BLOCKED (nothing was written, the caller may try again),
//! never FAILED and never a delete instead; the budget's
//! `unhealthyPodEvictionPolicy` is the user's choice and is honoured.

use std::time::Instant;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use nanny_test_util::owners;

use super::{integrity::quick, *};

#[tokio::test]
async fn a_restart_is_an_eviction_its_pod_disruption_budget_decides() {
    let Some(fx) = Fixture::new("rem-pdb-restart").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    // Both replicas crash-loop; the budget wants both available, and by
    // default counts only healthy pods as evictable within it.
    faults::crash_loop(&fx.client, fx.ns(), "looping", 2)
        .await
        .unwrap();
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(fx.client.clone(), fx.ns());
    pdbs.create(
        &PostParams::default(),
        &object(json!({ "metadata": { "name": "looping" },
            "spec": { "minAvailable": 2, "selector": { "matchLabels": { "app": "looping" } } } })),
    )
    .await
    .unwrap();
    eventually("PDB status computed", WAIT, || async {
        let status = pdbs.get("looping").await?.status;
        Ok(status.filter(|s| s.observed_generation.is_some() && s.disruptions_allowed == 0))
    })
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(fx.client.clone(), fx.ns());
    let pod = eventually("a looping pod running", WAIT, || async {
        Ok(faults::pods_of(&fx.client, fx.ns(), "looping")
            .await?
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")))
    })
    .await
    .unwrap();

    let restart = || {
        quick(approved(
            "restart-looping",
            ActionKind::RestartPod(RestartPod {}),
            target(&pod),
        ))
    };
    // Blocked, not failed: nothing was written or claimed, so the same
    // action may try again; the budget is named.
    for _ in 0..2 {
        let blocked = remediator.execute(restart()).await.unwrap();
        assert_eq!(outcome(&blocked), Outcome::Blocked, "{blocked:?}");
        assert!(
            blocked
                .error
                .contains("The disruption budget looping needs 2 healthy pods"),
            "{}",
            blocked.error
        );
    }
    assert!(remediator.metrics().await.contains(&format!(
        r#"nanny_healing_actions_total{{action_type="restart_pod",namespace="{}",status="blocked"}} 2"#,
        fx.ns()
    )));
    let same = pods.get(&pod.name_any()).await.unwrap();
    assert_eq!(
        same.resource_version(),
        pod.resource_version(),
        "the API server shows the pod untouched"
    );

    // The user's choice: unhealthy pods may go whatever the budget says.
    pdbs.patch(
        "looping",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "unhealthyPodEvictionPolicy": "AlwaysAllow" } })),
    )
    .await
    .unwrap();
    // kwok's crash loop has the container Ready for moments between
    // crashes: the budget lets it go while it is not.
    let evicted = eventually("evicted as unhealthy", WAIT, || async {
        let result = remediator.execute(restart()).await?;
        Ok((outcome(&result) != Outcome::Blocked).then_some(result))
    })
    .await
    .unwrap();
    assert!(
        evicted.dry_run_diff.is_empty() || !evicted.dry_run_diff.contains("image"),
        "{}",
        evicted.dry_run_diff
    );
    eventually("the looping pod evicted", WAIT, || async {
        Ok(pods
            .get_opt(&pod.name_any())
            .await?
            .is_none_or(|p| p.uid() != pod.uid() || p.metadata.deletion_timestamp.is_some())
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
    assert!(
        !node.cordoned(&fx.client).await.unwrap(),
        "not cordoned either"
    );
}

#[tokio::test]
async fn a_drain_leaves_protected_pods_in_place_and_evicts_guarded_ones_through_their_budget() {
    let Some(fx) = Fixture::new("rem-drain-guarded").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    let node = FakeNode::create(&fx.cluster, &fx.client, &format!("{}-n1", fx.ns()))
        .await
        .unwrap();
    // Helm labelled the Deployment only: its pod is protected through it.
    pinned_deployment(&fx, &node, "charted").await;
    owners::label_helm(&fx.client, fx.ns(), "charted")
        .await
        .unwrap();
    // A budget that allows one disruption decides this one's eviction.
    pinned_deployment(&fx, &node, "guarded").await;
    let pdb: PodDisruptionBudget = object(json!({ "metadata": { "name": "guarded" },
        "spec": { "maxUnavailable": 1, "selector": { "matchLabels": { "app": "guarded" } } } }));
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(fx.client.clone(), fx.ns());
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    let charted = running_on(&fx, "charted", &node.name).await;
    let guarded = running_on(&fx, "guarded", &node.name).await;
    eventually("PDB status computed", WAIT, || async {
        let status = pdbs.get("guarded").await?.status;
        Ok(status.filter(|s| s.observed_generation.is_some() && s.disruptions_allowed == 1))
    })
    .await
    .unwrap();

    let nodes: Api<Node> = Api::all(fx.client.clone());
    let drain = ActionKind::DrainNode(DrainNode {
        grace_period_seconds: 0,
        timeout_seconds: 30,
    });
    let request = approved(
        "drain-guarded",
        drain,
        target(&nodes.get(&node.name).await.unwrap()),
    );
    let preview = remediator.execute(dry(request.clone())).await.unwrap();
    assert_eq!(outcome(&preview), Outcome::DryRun, "{preview:?}");
    assert!(
        preview.dry_run_diff.contains(&format!(
            "skip Pod {}/{} (protected: Deployment {}/charted carries protected label app.kubernetes.io/managed-by=Helm)",
            fx.ns(),
            charted.name_any(),
            fx.ns()
        )) && preview
            .dry_run_diff
            .contains(&format!("evict Pod {}/{}", fx.ns(), guarded.name_any())),
        "{}",
        preview.dry_run_diff
    );
    let result = remediator.execute(request).await.unwrap();
    assert_eq!(outcome(&result), Outcome::Succeeded, "{result:?}");
    let pods: Api<Pod> = Api::namespaced(fx.client.clone(), fx.ns());
    eventually("guarded evicted", WAIT, || async {
        Ok(pods
            .get_opt(&guarded.name_any())
            .await?
            .is_none_or(|p| p.uid() != guarded.uid())
            .then_some(()))
    })
    .await
    .unwrap();
    let still = pods.get(&charted.name_any()).await.unwrap();
    assert_eq!(still.uid(), charted.uid(), "the protected pod stays");
    assert!(still.metadata.deletion_timestamp.is_none());
    // The API server's evidence: the guarded pod went through the Eviction
    // API (its budget decided), the protected one saw no eviction at all.
    let writes = fx.cluster.audited_writes_in(fx.ns()).unwrap();
    assert!(
        writes
            .iter()
            .any(|w| w.object_ref.name == guarded.name_any()
                && w.object_ref.subresource == "eviction"
                && w.succeeded()),
        "{writes:#?}"
    );
    assert!(
        !writes
            .iter()
            .any(|w| w.object_ref.name == charted.name_any()
                && (w.object_ref.subresource == "eviction" || w.verb == "delete")),
        "{writes:#?}"
    );
}
