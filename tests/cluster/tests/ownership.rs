//! Protection follows ownership, end to end: charts label their top
//! objects (a Deployment, a CronJob, a StatefulSet) and leave the pods,
//! Jobs, claims and HPA targets under them unlabelled. With all five
//! services running in Auto mode, every action on those children is denied
//! by the gate's `protected-owner` rule, and the API server's audit log
//! shows no eviction, delete or spec change of any of them. A drain is
//! reviewed against every pod on its node, protected ones and budgets
//! named.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::time::Duration;

use k8s_openapi::api::{
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::Job,
    core::v1::{Node, Pod},
    policy::v1::PodDisruptionBudget,
};
use kube::{Api, ResourceExt, api::PostParams};
use nanny_cluster_tests::{
    Fixture,
    pipeline::{self, Harness, MIN_RESTARTS, WAIT, crash_one_pod, restarts},
};
use nanny_crd::{ActionType, HealingAction, Phase};
use nanny_test_util::{
    cluster::eventually,
    faults::{self, HpaAtMax, NodeFault, PodSpec},
    nodes::FakeNode,
    owners,
    scenarios::running_pods,
};
use serde_json::json;

/// Waits for an action of `action_type` on `uid` denied by `protected-owner`.
async fn denied_by_owner(h: &Harness, uid: &str, action_type: ActionType) -> HealingAction {
    let action = h
        .eventually(
            &format!("{action_type:?} on {uid} denied"),
            WAIT,
            || async {
                Ok(h.actions_on(uid).await.into_iter().find(|a| {
                    a.spec.action.type_ == action_type
                        && a.status.as_ref().and_then(|s| s.phase) == Some(Phase::Denied)
                }))
            },
        )
        .await;
    let verdict = action.status.clone().unwrap().verdict.unwrap();
    assert!(
        verdict.matched_rules.iter().any(|r| r == "protected-owner"),
        "{action_type:?}: {verdict:?}"
    );
    action
}

#[tokio::test(flavor = "multi_thread")]
async fn protection_follows_ownership_to_pods_jobs_claims_and_hpa_targets() {
    let Some(fx) = Fixture::new("owners").await else {
        return;
    };
    let client = fx.client.clone();
    let ns = fx.ns().to_owned();

    // Everything is in place, labels included, before Nanny starts: no
    // action can be proposed on an object whose owner is not labelled yet.
    // One of three replicas crash-loops: the analyzer restarts that pod
    // (all of them would make it a rolling restart of the Deployment).
    faults::deployment(&client, &ns, "charted", 3, &PodSpec::default())
        .await
        .unwrap();
    owners::label_helm(&client, &ns, "charted").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let victim = eventually("3 charted pods running", WAIT, || async {
        let running: Vec<Pod> = faults::pods_of(&client, &ns, "charted")
            .await?
            .into_iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .collect();
        Ok((running.len() == 3).then(|| running[0].clone()))
    })
    .await
    .unwrap();
    crash_one_pod(&pods, &victim).await;
    let nightly = owners::cron_job(&client, &ns, "nightly", &[owners::HELM])
        .await
        .unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    faults::completed_job(&client, &ns, "nightly-1", Duration::from_secs(25 * 3600))
        .await
        .unwrap();
    let job = owners::adopt(&jobs, "nightly-1", &nightly).await.unwrap();
    let hpa_params = HpaAtMax {
        min_replicas: 1,
        max_replicas: 3,
        target_cpu_percent: 50,
        current_cpu_percent: 95,
    };
    let hpa = faults::hpa_at_max(&client, &ns, "api", hpa_params)
        .await
        .unwrap();
    owners::label_helm(&client, &ns, "api").await.unwrap();
    owners::stateful_set(&client, &ns, "db", "data", &[owners::HELM])
        .await
        .unwrap();
    let claim = faults::pvc_nearly_full(&client, &ns, "data-db-0", 1 << 30, 970 << 20)
        .await
        .unwrap();
    let pod = eventually("the charted pod crash-looping", WAIT, || async {
        Ok(pods
            .get_opt(&victim.name_any())
            .await?
            .filter(|p| restarts(p) >= MIN_RESTARTS))
    })
    .await
    .unwrap();

    let h = Harness::with_fixture(fx, "Auto", Vec::new()).await;
    let cases = [
        (
            "pod of a Helm-labelled Deployment",
            pod.uid().unwrap(),
            ActionType::RestartPod,
        ),
        (
            "Job of a Helm-labelled CronJob",
            job.uid().unwrap(),
            ActionType::DeleteJob,
        ),
        (
            "HPA of a Helm-labelled Deployment",
            hpa.uid().unwrap(),
            ActionType::ScaleHpa,
        ),
        (
            "claim of a Helm-labelled StatefulSet",
            claim.uid().unwrap(),
            ActionType::ExpandPvc,
        ),
    ];
    for (what, uid, action_type) in &cases {
        denied_by_owner(&h, uid, *action_type).await;
        assert_eq!(h.executions_on(uid).await, 0, "{what}: nothing executed");
        println!("{what} → {action_type:?} denied (protected-owner)");
    }

    // The cluster's own evidence: the objects are as they were, and the API
    // server audited no eviction, delete or spec change of any of them.
    let still = Api::<Pod>::namespaced(h.fx.client.clone(), &ns)
        .get(&pod.name_any())
        .await
        .unwrap();
    assert_eq!(still.uid(), pod.uid(), "the pod was not restarted");
    assert!(jobs.get_opt("nightly-1").await.unwrap().is_some());
    let max = Api::<HorizontalPodAutoscaler>::namespaced(h.fx.client.clone(), &ns)
        .get("api")
        .await
        .unwrap()
        .spec
        .unwrap()
        .max_replicas;
    assert_eq!(max, hpa_params.max_replicas);
    let size = faults::claim_request(&h.fx.client, &ns, "data-db-0")
        .await
        .unwrap();
    assert_eq!(
        size,
        (1_i64 << 30).to_string(),
        "the claim was not expanded"
    );
    let targets = [
        ("pods", pod.name_any()),
        ("jobs", "nightly-1".to_owned()),
        ("horizontalpodautoscalers", "api".to_owned()),
        ("persistentvolumeclaims", "data-db-0".to_owned()),
    ];
    let writes: Vec<_> =
        h.fx.cluster
            .audited_writes_in(&ns)
            .unwrap()
            .into_iter()
            .filter(|w| w.succeeded())
            .filter(|w| {
                targets.iter().any(|(resource, name)| {
                    w.object_ref.resource == *resource && w.object_ref.name == *name
                })
            })
            // What each action would write: an eviction, a delete, a spec
            // patch of the HPA or claim. (The fixtures' own writes are
            // status writes, the crash label on the pod and the adoption
            // of the Job.)
            .filter(|w| match w.object_ref.subresource.as_str() {
                "eviction" => true,
                "" => {
                    w.verb == "delete"
                        || (w.verb == "patch"
                            && matches!(
                                w.object_ref.resource.as_str(),
                                "horizontalpodautoscalers" | "persistentvolumeclaims"
                            ))
                }
                _ => false,
            })
            .collect();
    assert!(writes.is_empty(), "unexpected writes: {writes:#?}");
}

/// A drain is reviewed against every pod on its node, in every namespace:
/// the gate's verdict names the protected pod that stays and the pod whose
/// budget allows no disruption; once a human approves, the protected pod
/// is untouched and the guarded one's budget blocks the drain, which waits
/// (API-server evidence: same uids, no deletion, no cordon).
#[tokio::test(flavor = "multi_thread")]
async fn a_drain_is_reviewed_against_every_pod_on_its_node() {
    let Some(fx) = Fixture::new("drain-review").await else {
        return;
    };
    let client = fx.client.clone();
    let ns = fx.ns().to_owned();
    let node = FakeNode::create(&fx.cluster, &client, &format!("{ns}-n1"))
        .await
        .unwrap();
    node.deployment(&client, &ns, "charted", 1).await.unwrap();
    owners::label_helm(&client, &ns, "charted").await.unwrap();
    node.deployment(&client, &ns, "guarded", 1).await.unwrap();
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    let pdb = serde_json::from_value(json!({ "metadata": { "name": "guarded" },
        "spec": { "minAvailable": 1, "selector": { "matchLabels": { "app": "guarded" } } } }))
    .unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    let charted = running_pods(&client, &ns, "charted", 1, WAIT)
        .await
        .unwrap()[0]
        .clone();
    let guarded = running_pods(&client, &ns, "guarded", 1, WAIT)
        .await
        .unwrap()[0]
        .clone();
    eventually("the budget allows no disruption", WAIT, || async {
        let status = pdbs.get("guarded").await?.status;
        Ok(status.filter(|s| s.observed_generation.is_some() && s.disruptions_allowed == 0))
    })
    .await
    .unwrap();

    // Drains allowed; the cap at 100 % so that the budget, not the cap,
    // is what holds the guarded pod.
    let mut policy = pipeline::policy(&ns, "Auto");
    policy
        .spec
        .actions
        .push(serde_json::from_value(json!({ "type": "DrainNode" })).unwrap());
    policy.spec.limits.max_disruption_percent = 100;
    // A drain gives up waiting on a budget after its timeout: a short one.
    let timeout = (
        "nanny-analyzer",
        "NANNY_RULES__NODE__DRAIN_TIMEOUT_SECS".to_owned(),
        "10".to_owned(),
    );
    let h = Harness::with_policy(fx, &policy, vec![timeout]).await;
    faults::node_fault(&client, &node.name, NodeFault::NotReady)
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let uid = nodes.get(&node.name).await.unwrap().uid().unwrap();
    let pending = eventually("a drain awaiting approval", WAIT, || async {
        Ok(h.actions_on(&uid).await.into_iter().find(|a| {
            a.spec.action.type_ == ActionType::DrainNode
                && a.status.as_ref().and_then(|s| s.phase) == Some(Phase::PendingApproval)
        }))
    })
    .await
    .unwrap();
    let verdict = pending.status.clone().unwrap().verdict.unwrap();
    let reasons = verdict.reasons.join("\n");
    for (rule, pod) in [
        ("drain-skips-protected", &charted),
        ("pdb-blocks", &guarded),
    ] {
        assert!(
            verdict.matched_rules.iter().any(|r| r == rule)
                && reasons.contains(&format!("{ns}/{}", pod.name_any())),
            "{rule} naming {}: {verdict:?}",
            pod.name_any()
        );
    }

    h.approve(&pending).await;
    let name = pending.name_any();
    let blocked = eventually("the drain blocked by the budget", WAIT, || async {
        let status = h.actions.get(&name).await?.status.unwrap_or_default();
        Ok((status.blocked > 0).then_some(()))
    })
    .await;
    if let Err(error) = blocked {
        panic!("{error}\n{}", h.actions_seen().await);
    }
    // A blocked drain writes nothing, not even the cordon; it is tried
    // again under the same verdict.
    assert!(
        !node.cordoned(&client).await.unwrap(),
        "a blocked drain does not cordon"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    for pod in [&charted, &guarded] {
        let still = pods.get(&pod.name_any()).await.unwrap();
        assert_eq!(still.uid(), pod.uid(), "{} stays", pod.name_any());
        assert!(still.metadata.deletion_timestamp.is_none());
    }
    println!(
        "drain of a node with a protected and a budget-guarded pod → both named, both stay, the drain waits"
    );
}
