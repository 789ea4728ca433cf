//! The whole pipeline end to end: all five services as processes against
//! the real API server, a HealingPolicy, and injected faults. Each seed
//! scenario is healed (or correctly refused) through HealingActions.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::Deployment,
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::Job,
    core::v1::{Node, Pod},
    policy::v1::PodDisruptionBudget,
};
use kube::{Api, ResourceExt};
use nanny_cluster_tests::{
    Fixture, create_action, model,
    pipeline::{
        Harness, MIN_RESTARTS, WAIT, crash_loop_restarted, crash_one_pod, policy, restarts,
        restarts_ladder_policy,
    },
};
use nanny_crd::{ActionType, HealingAction, Phase};
use nanny_test_util::{
    cluster::eventually,
    faults::{self, HpaAtMax, NodeFault, PodSpec},
    nodes::FakeNode,
};

#[tokio::test(flavor = "multi_thread")]
async fn seed_scenarios_are_healed_end_to_end_in_auto_mode() {
    let Some(h) = Harness::start("pipeline-auto", "Auto").await else {
        return;
    };
    let client = &h.fx.client;
    let ns = h.fx.ns();

    let crash = async {
        let healed = crash_loop_restarted(&h, "web").await;
        println!("crash loop → pod restarted {healed:.1?} after the threshold");
    };

    let oom = async {
        // The app needs 200Mi; it is OOM-killed until its limit allows that.
        faults::oom_killed(client, ns, "hungry", "128Mi")
            .await
            .unwrap();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let uid = deployments.get("hungry").await.unwrap().uid().unwrap();
        let app = tokio::spawn({
            let (client, ns) = (client.clone(), ns.to_owned());
            async move {
                let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
                loop {
                    let d = deployments.get("hungry").await.unwrap();
                    let limit = d.spec.unwrap().template.spec.unwrap().containers[0]
                        .resources
                        .clone()
                        .unwrap()
                        .limits
                        .unwrap_or_default()
                        .get("memory")
                        .map(|q| q.0.clone())
                        .unwrap_or_default();
                    if limit != "128Mi" {
                        faults::clear_workload_fault(&client, &ns, "hungry")
                            .await
                            .unwrap();
                        return limit;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        let action = h.approve_and_wait(&uid, ActionType::PatchResources).await;
        assert_eq!(
            action
                .spec
                .action
                .params
                .limits()
                .and_then(|l| l.memory_bytes),
            Some(nanny_crd::Int(201_326_592))
        );
        assert_eq!(
            app.await.unwrap(),
            "201326592",
            "the limit was raised ×1.5 (192Mi, in bytes)"
        );
        println!("OOM → memory limit raised after approval");
    };

    let stale_job = async {
        let job =
            faults::completed_job(client, ns, "nightly-report", Duration::from_secs(25 * 3600))
                .await
                .unwrap();
        let uid = job.uid().unwrap();
        h.wait_phase(&uid, Phase::Succeeded).await;
        let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
        eventually("the stale Job deleted", WAIT, || async {
            Ok(jobs
                .get_opt("nightly-report")
                .await?
                .is_none()
                .then_some(()))
        })
        .await
        .unwrap();
        println!("completed Job older than 24h → deleted");
    };

    let hpa = async {
        let params = HpaAtMax {
            min_replicas: 1,
            max_replicas: 3,
            target_cpu_percent: 50,
            current_cpu_percent: 95,
        };
        let uid = faults::hpa_at_max(client, ns, "api", params)
            .await
            .unwrap()
            .uid()
            .unwrap();
        let controller = faults::hpa_controller(client.clone(), ns.to_owned(), "api".to_owned(), 4);
        let action = h.wait_phase(&uid, Phase::Succeeded).await;
        controller.abort();
        assert_eq!(action.spec.action.type_, ActionType::ScaleHpa);
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
        let max = hpas.get("api").await.unwrap().spec.unwrap().max_replicas;
        assert!(
            (4..=10).contains(&max),
            "maxReplicas raised within the ceiling: {max}"
        );
        println!("HPA at max → maxReplicas 3 → {max}");
    };

    let node = async {
        let node = FakeNode::create(&h.fx.cluster, client, &format!("{ns}-sick"))
            .await
            .unwrap();
        faults::node_fault(client, &node.name, NodeFault::NotReady)
            .await
            .unwrap();
        let nodes: Api<Node> = Api::all(client.clone());
        let uid = nodes.get(&node.name).await.unwrap().uid().unwrap();
        let action = eventually("a cordon awaiting approval", WAIT, || async {
            Ok(h.actions_on(&uid).await.into_iter().find(|a| {
                a.spec.action.type_ == ActionType::CordonNode
                    && a.status.as_ref().and_then(|s| s.phase) == Some(Phase::PendingApproval)
            }))
        })
        .await
        .unwrap();
        // Approved the kubectl way: `kubectl annotate healingaction … nanny.ai/approve=<who>`.
        h.actions
            .patch(
                &action.name_any(),
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(serde_json::json!({
                    "metadata": { "annotations": { "nanny.ai/approve": "oncall-via-kubectl" } }
                })),
            )
            .await
            .unwrap();
        eventually("the node cordoned", WAIT, || async {
            Ok(node.cordoned(client).await?.then_some(()))
        })
        .await
        .unwrap();
        println!("node NotReady → cordoned after approval");
        node
    };

    let pvc = async {
        let claim = faults::pvc_nearly_full(client, ns, "data", 1 << 30, 970 << 20)
            .await
            .unwrap();
        let uid = claim.uid().unwrap();
        let resizer = faults::volume_resizer(client.clone(), ns.to_owned(), "data".to_owned());
        h.approve_and_wait(&uid, ActionType::ExpandPvc).await;
        resizer.abort();
        let size = faults::claim_request(client, ns, "data").await.unwrap();
        assert_ne!(size, "1Gi", "the claim was expanded");
        println!("PVC nearly full → expanded to {size} after approval");
    };

    let protected = async {
        // A fault in kube-system: proposed, denied by the gate, audited, untouched.
        let name = format!("{ns}-sys");
        let system: Api<Deployment> = Api::namespaced(client.clone(), "kube-system");
        // Earlier runs that failed halfway may have left theirs.
        for old in system.list(&Default::default()).await.unwrap().items {
            if old.name_any().starts_with("nanny-test-") {
                system
                    .delete(&old.name_any(), &Default::default())
                    .await
                    .unwrap();
            }
        }
        faults::crash_loop(client, "kube-system", &name, 1)
            .await
            .unwrap();
        let pods = eventually("the kube-system pod crash-looping", WAIT, || async {
            let pods = faults::pods_of(client, "kube-system", &name).await?;
            Ok(pods.into_iter().find(|p| restarts(p) >= MIN_RESTARTS))
        })
        .await
        .unwrap();
        let deployment_uid = system.get(&name).await.unwrap().uid().unwrap();
        let pod_uid = pods.uid().unwrap();
        let denied = h.denied_on(&[&pod_uid, &deployment_uid]).await;
        let still = Api::<Pod>::namespaced(client.clone(), "kube-system")
            .get_opt(&pods.name_any())
            .await
            .unwrap();
        system.delete(&name, &Default::default()).await.unwrap();
        assert!(still.is_some(), "nothing in kube-system was touched");
        let verdict = denied.status.clone().unwrap().verdict.unwrap();
        assert!(
            verdict
                .matched_rules
                .iter()
                .any(|r| r.contains("protected")),
            "{verdict:?}"
        );
        let audit = std::fs::read_to_string(std::env::temp_dir().join(format!("{ns}-audit.jsonl")))
            .unwrap();
        assert!(
            audit.contains(&denied.spec.recommendation_id),
            "the denial is in the audit log"
        );
        println!(
            "fault in kube-system → denied ({}) and audited",
            verdict.matched_rules.join(",")
        );
    };

    let stubborn = async {
        // Raising the limit does not help this one: verification fails and
        // the policy rolls the change back.
        faults::oom_killed(client, ns, "stubborn", "128Mi")
            .await
            .unwrap();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let uid = deployments.get("stubborn").await.unwrap().uid().unwrap();
        let pending = h.wait_phase(&uid, Phase::PendingApproval).await;
        h.approve(&pending).await;
        let action = h.wait_phase(&uid, Phase::RolledBack).await;
        let status = action.status.unwrap();
        assert!(
            status
                .rollback
                .is_some_and(|r| r.outcome == nanny_crd::Outcome::RolledBack)
        );
        let limit = deployments
            .get("stubborn")
            .await
            .unwrap()
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .resources
            .clone()
            .unwrap()
            .limits
            .unwrap()["memory"]
            .0
            .clone();
        assert_eq!(limit, "128Mi", "the limit was restored");
        println!("OOM not fixed by more memory → verification failed → rolled back");
    };

    let (_, _, _, _, node, _, _, _) =
        tokio::join!(crash, oom, stale_job, hpa, node, pvc, protected, stubborn);
    drop(node);

    // The policy's status counts its actions; the analyzer runs rules-only.
    let policies: Api<nanny_crd::HealingPolicy> = Api::namespaced(client.clone(), ns);
    let status = eventually("the policy status", WAIT, || async {
        let status = policies.get("default").await?.status.unwrap_or_default();
        Ok((status
            .actions_by_phase
            .get("Succeeded")
            .copied()
            .unwrap_or(0)
            >= 6)
            .then_some(status))
    })
    .await
    .unwrap();
    let condition = |t: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.status.clone())
    };
    assert_eq!(condition("Ready").as_deref(), Some("True"), "{status:?}");
    assert_eq!(
        condition("Degraded").as_deref(),
        Some("True"),
        "rules-only: {status:?}"
    );
    assert!(status.last_activity.is_some());
    // Events on the target objects say what happened.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), ns);
    let events = events.list(&Default::default()).await.unwrap().items;
    assert!(
        events
            .iter()
            .any(|e| e.involved_object.name.as_deref() == Some("api")
                && e.reason.as_deref() == Some("ActionSucceeded")),
        "an Event on the HPA"
    );

    // Every HealingAction anchors its verdict's record: the gate's log
    // holds each, and a copy cut short is caught against them.
    let audit = std::env::temp_dir().join(format!("{ns}-audit.jsonl"));
    let verify = |file: &std::path::Path| {
        let args = ["--anchors-from-cluster", "-n", ns, "--kubeconfig"].map(std::ffi::OsStr::new);
        let kubeconfig = h.fx.cluster.kubeconfig.as_os_str();
        nanny_cluster_tests::audit_verify(file, &[&args[..], &[kubeconfig]].concat())
    };
    let (ok, report) = verify(&audit);
    assert!(ok && report.contains("anchors hold"), "{report}");
    let cut = audit.with_extension("cut.jsonl");
    let first = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    std::fs::write(&cut, first + "\n").unwrap();
    let (ok, report) = verify(&cut);
    assert!(!ok && report.contains("truncated"), "{report}");
    println!("audit log: {}", report.trim());
}

/// Monitor and DryRun record what would happen and change nothing. With
/// `oom_factor`, the policy overrides the OOM rule's factor: the recorded
/// patch shows the analyzer applied the policy's setting.
async fn records_without_changing_anything(test: &str, mode: &str, oom_factor: Option<f64>) {
    let Some(fx) = Fixture::new(test).await else {
        return;
    };
    let mut policy = policy(fx.ns(), mode);
    policy.spec.rules.oom_memory_factor = oom_factor;
    let h = Harness::with_policy(fx, &policy, Vec::new()).await;
    let pods: Api<Pod> = Api::namespaced(h.fx.client.clone(), h.fx.ns());
    faults::deployment(&h.fx.client, h.fx.ns(), "web", 3, &PodSpec::default())
        .await
        .unwrap();
    let victim = h.running_pods("web", 3).await.remove(0);
    let uid = victim.uid().unwrap();
    crash_one_pod(&pods, &victim).await;
    faults::oom_killed(&h.fx.client, h.fx.ns(), "hungry", "128Mi")
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(h.fx.client.clone(), h.fx.ns());
    let hungry = deployments.get("hungry").await.unwrap();

    let restart = h.wait_phase(&uid, Phase::Recorded).await;
    let patch = h.wait_phase(&hungry.uid().unwrap(), Phase::Recorded).await;
    for action in [&restart, &patch] {
        let status = action.status.clone().unwrap();
        let diff = status
            .result
            .as_ref()
            .map(|r| r.dry_run_diff.clone())
            .unwrap_or_default();
        if mode == "DryRun" {
            assert!(!diff.is_empty(), "DryRun stores the diff: {status:?}");
        } else {
            assert!(diff.is_empty(), "Monitor does not even dry-run: {status:?}");
        }
    }
    // 128Mi × the policy's factor, or × the analyzer's 1.5.
    let expected = (128_f64 * oom_factor.unwrap_or(1.5)) as i64 * (1 << 20);
    assert_eq!(
        patch
            .spec
            .action
            .params
            .limits()
            .and_then(|l| l.memory_bytes),
        Some(nanny_crd::Int(expected)),
        "{:?}",
        patch.spec.action
    );
    // Give an executor every chance to act, then check nothing changed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pod = pods.get(&victim.name_any()).await.unwrap();
    assert_eq!(pod.uid(), Some(uid), "the pod was not restarted");
    let now = deployments.get("hungry").await.unwrap();
    assert_eq!(now.spec, hungry.spec, "the Deployment was not changed");
    assert_eq!(now.metadata.generation, hungry.metadata.generation);
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_mode_records_and_changes_nothing() {
    records_without_changing_anything("pipeline-monitor", "Monitor", Some(2.0)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_mode_stores_diffs_and_changes_nothing() {
    records_without_changing_anything("pipeline-dryrun", "DryRun", None).await;
}

/// The hypothesis the stand-in model gives for every incident.
const HYPOTHESIS: &str = "The db image tag does not exist; the container never starts.";

/// A stand-in model server that explains each incident with
/// [`HYPOTHESIS`], citing the first evidence id offered, says it agrees
/// with the rules' actions, and — with `delete` — proposes deleting that
/// uid, citing the first issue the request's schema offers: the
/// untrusted-LLM case the gate must refuse.
async fn stand_in_model(delete: Option<String>) -> (String, model::Requests) {
    model::serve(move |request| {
        let fingerprint = model::offered(request, "issue_fingerprint")
            .first()
            .map(|f| (*f).to_owned())
            .unwrap_or_default();
        let evidence = model::citable(request).first().map(|e| (*e).to_owned());
        let proposals: Vec<serde_json::Value> = delete
            .iter()
            .map(|uid| {
                serde_json::json!({
                    "action": "delete_resource",
                    "target_uid": uid,
                    "issue_fingerprint": fingerprint,
                    "confidence": 97,
                    "reason": "The StatefulSet is broken; delete it.",
                })
            })
            .collect();
        serde_json::json!({
            "hypothesis": HYPOTHESIS,
            "cited": [evidence],
            "risk": "Deleting a StatefulSet loses its data.",
            "agrees": true,
            "recommendations": proposals,
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_llm_proposing_to_delete_a_statefulset_is_denied_and_audited() {
    // The StatefulSet exists before the model does: the model needs its uid.
    let Some(fx) = Fixture::new("pipeline-llm-delete").await else {
        return;
    };
    let sets: Api<k8s_openapi::api::apps::v1::StatefulSet> =
        Api::namespaced(fx.client.clone(), fx.ns());
    let set = faults::crash_looping_statefulset(&fx.client, fx.ns(), "db")
        .await
        .unwrap();
    let uid = set.uid().unwrap();
    let (model, requests) = stand_in_model(Some(uid.clone())).await;
    let ns = fx.ns().to_owned();
    let llm = |k: &str, v: &str| ("nanny-analyzer", k.to_owned(), v.to_owned());
    // The policy's guidance for crash loops must reach the model.
    let mut policy = policy(fx.ns(), "Auto");
    policy.spec.ai.prompts.insert(
        "crashAnalysis".to_owned(),
        "Check the image tag before anything else.".to_owned(),
    );
    let h = Harness::with_policy(
        fx,
        &policy,
        vec![
            llm("NANNY_LLM__ENABLED", "true"),
            llm("NANNY_LLM__PROVIDER", "openai"),
            llm("NANNY_LLM__ENDPOINT", &model),
            llm("NANNY_LLM__MODEL", "stand-in"),
            // No rule acts on the crash loop, so the model is asked for
            // proposals rather than whether it agrees.
            llm("NANNY_RULES__DISABLED", "crashloop-restart"),
        ],
    )
    .await;
    let denied = eventually("the deletion denied", WAIT, || async {
        Ok(h.actions_on(&uid).await.into_iter().find(|a| {
            a.spec.action.type_ == ActionType::DeleteResource
                && a.status.as_ref().and_then(|s| s.phase) == Some(Phase::Denied)
        }))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", h.stack.logs()));
    assert_eq!(denied.spec.source.kind, nanny_crd::SourceKind::Model);
    let verdict = denied.status.clone().unwrap().verdict.unwrap();
    assert!(
        verdict.matched_rules.iter().any(|r| r.contains("never")),
        "denied as a never-action: {verdict:?}"
    );
    let audit =
        std::fs::read_to_string(std::env::temp_dir().join(format!("{ns}-audit.jsonl"))).unwrap();
    assert!(audit.contains(&denied.spec.recommendation_id), "audited");
    assert!(
        sets.get_opt("db").await.unwrap().is_some(),
        "the StatefulSet still exists"
    );
    // What the coordinator sent for this policy shaped the model's request:
    // its guidance in the system prompt, its allowed actions as the enum.
    let requests = requests.lock().unwrap().clone();
    let request = requests.last().expect("the model was asked");
    let system = request["messages"][0]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(
        system.ends_with(
            "Operator guidance (crashAnalysis): Check the image tag before anything else."
        ),
        "{system}"
    );
    let actions = request["response_format"]["json_schema"]["schema"]["properties"]
        ["recommendations"]["items"]["properties"]["action"]["enum"]
        .clone();
    assert_eq!(
        actions,
        serde_json::json!([
            "cordon_node",
            "delete_job",
            "expand_pvc",
            "report_only",
            "restart_pod",
            "rollout_restart",
            "scale_hpa"
        ]),
        "the policy's actions, without drain_node"
    );
    // The model's explanation reaches its proposal after the fact, read
    // back from the API server.
    let explained = |a: &HealingAction| a.status.as_ref().and_then(|s| s.explanation.clone());
    let own = match eventually("the model's explanation on its proposal", WAIT, || async {
        Ok(h.actions_on(&uid).await.iter().find_map(explained))
    })
    .await
    {
        Ok(own) => own,
        Err(e) => panic!("{e}\n{}", h.actions_seen().await),
    };
    assert_eq!(own.hypothesis, HYPOTHESIS);
    assert_eq!(own.agreement, "ModelOnly");
    assert_eq!(own.prompt_version, "nanny-v3");
    assert_eq!(own.model, "openai/stand-in");
    assert!(
        own.cited_evidence
            .first()
            .is_some_and(|c| c.starts_with("e1: ")),
        "{own:?}"
    );
    println!(
        "LLM proposing to delete a StatefulSet → denied ({}) and audited; its explanation attached (incident {})",
        verdict.matched_rules.join(","),
        own.incident
    );
}

/// Where the rules act, the model is asked only whether it agrees: the
/// rules' action runs without waiting for it, and the model's explanation
/// and agreement are attached to it afterwards, read back from the API
/// server. An action that waits for a human is notified with the
/// explanation, marked as model output.
#[tokio::test(flavor = "multi_thread")]
async fn the_rules_act_and_the_models_explanation_follows() {
    let Some(fx) = Fixture::new("pipeline-llm-explain").await else {
        return;
    };
    let (model, requests) = stand_in_model(None).await;
    let llm = |k: &str, v: &str| ("nanny-analyzer", k.to_owned(), v.to_owned());
    let ns = fx.ns().to_owned();
    let (receiver, received) = nanny_cluster_tests::receiver::start().await;
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": nanny_crd::NOTIFICATIONS_SECRET },
        "stringData": { "hook": format!("{receiver}/webhook") },
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(fx.client.clone(), &ns)
        .create(&Default::default(), &secret)
        .await
        .unwrap();
    let mut policy = policy(&ns, "Auto");
    policy.spec.notifications = Some(
        serde_json::from_value(
            serde_json::json!({ "sinks": [{ "type": "Webhook", "urlKey": "hook" }] }),
        )
        .unwrap(),
    );
    // Pod restarts (no rolling restart for a single replica): they run, and
    // do not help, as the template crashes.
    policy.spec.rules.crashloop_rollout_percent = Some(100);
    faults::crash_loop(&fx.client, &ns, "web", 1).await.unwrap();
    // A memory limit raise waits for a human: it is notified.
    faults::oom_killed(&fx.client, &ns, "hungry", "128Mi")
        .await
        .unwrap();
    let h = Harness::with_policy(
        fx,
        &policy,
        vec![
            llm("NANNY_LLM__ENABLED", "true"),
            llm("NANNY_LLM__PROVIDER", "openai"),
            llm("NANNY_LLM__ENDPOINT", &model),
            llm("NANNY_LLM__MODEL", "stand-in"),
        ],
    )
    .await;
    let actions: Api<HealingAction> = Api::namespaced(h.fx.client.clone(), &ns);
    let explained = eventually("the explanation on the rules' action", WAIT, || async {
        Ok(actions
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|a| a.spec.source.kind == nanny_crd::SourceKind::Rule)
            .find_map(|a| {
                let status = a.status?;
                Some((status.explanation?, status.phase))
            }))
    })
    .await;
    let (explanation, phase) = match explained {
        Ok(found) => found,
        Err(e) => panic!("{e}\n{}", h.actions_seen().await),
    };
    assert_eq!(explanation.hypothesis, HYPOTHESIS);
    assert_eq!(explanation.agreement, "Agrees");
    assert!(explanation.incident.starts_with("inc-"));
    // Once the rules acted, the model was asked whether it agrees with
    // their action (named in the data), not for proposals of its own.
    let asked_so_far = requests.lock().unwrap().clone();
    let asked = asked_so_far
        .iter()
        .find(|r| {
            r["response_format"]["json_schema"]["schema"]["properties"]["agrees"]["type"]
                == "boolean"
        })
        .unwrap_or_else(|| panic!("asked whether it agrees: {asked_so_far:#?}"));
    let schema = &asked["response_format"]["json_schema"]["schema"];
    assert_eq!(schema["properties"]["recommendations"]["maxItems"], 0);
    let user = asked["messages"][1]["content"].as_str().unwrap_or_default();
    assert!(user.contains("rule_actions"), "{user}");
    println!(
        "rules acted ({phase:?}); the model's explanation attached afterwards, agreement {}",
        explanation.agreement
    );

    // The PatchResources waiting for approval was notified with its
    // explanation, marked as model output.
    let notified = eventually("the approval notification", WAIT, || async {
        Ok(received
            .lock()
            .unwrap()
            .iter()
            .find(|(_, m)| m["action"] == "PatchResources")
            .map(|(_, m)| m.clone()))
    })
    .await
    .unwrap();
    // Once the restart has run and the pods still crash, the model is
    // asked again, told what Nanny already tried and how it ended.
    let told = eventually("a question naming the restart tried", WAIT, || async {
        Ok(requests.lock().unwrap().iter().find_map(|r| {
            let user = r["messages"][1]["content"].as_str().unwrap_or_default();
            (user.contains("Nanny already tried") && user.contains("RestartPod: "))
                .then(|| user.to_owned())
        }))
    })
    .await;
    if let Err(e) = told {
        panic!("{e}\n{}", h.actions_seen().await);
    }
    let model_part = &notified["modelExplanation"];
    assert_eq!(model_part["untrustedModelOutput"], true, "{notified}");
    assert_eq!(model_part["hypothesis"], HYPOTHESIS, "{notified}");
    assert!(
        model_part["incident"]
            .as_str()
            .is_some_and(|i| i.starts_with("inc-")),
        "{notified}"
    );
}

/// The coordinator's sweep: an unapproved action past its `expiresAt`
/// expires, and a finished one past `actions.retention_secs` (30 days by
/// default) is deleted, while recent and open ones stay.
#[tokio::test(flavor = "multi_thread")]
async fn unapproved_actions_expire_and_old_finished_ones_are_deleted() {
    let sweep_often = (
        "nanny-coordinator",
        "NANNY_ACTIONS__RETENTION_SWEEP_SECS".to_owned(),
        "1".to_owned(),
    );
    let Some(h) = Harness::start_with("pipeline-retention", "Auto", vec![sweep_often]).await else {
        return;
    };
    let policy_ref = format!("{}/default", h.fx.ns());
    let ago = |days: i64| {
        (k8s_openapi::jiff::Timestamp::now()
            - k8s_openapi::jiff::SignedDuration::from_hours(24 * days))
        .to_string()
    };
    let in_a_day = (k8s_openapi::jiff::Timestamp::now()
        + k8s_openapi::jiff::SignedDuration::from_hours(24))
    .to_string();
    let pending = |expires: &str| {
        serde_json::json!({
            "phase": "PendingApproval", "phaseSince": ago(0), "expiresAt": expires,
            "verdict": { "decision": "NeedsApproval", "matchedRules": ["approval.patch-resources"],
                         "reasons": ["PatchResources needs a human"], "auditId": "audit-1" },
        })
    };
    for (name, status) in [
        (
            "old-done",
            serde_json::json!({ "phase": "Succeeded", "phaseSince": ago(40) }),
        ),
        (
            "new-done",
            serde_json::json!({ "phase": "Succeeded", "phaseSince": ago(1) }),
        ),
        ("overdue", pending(&ago(1))),
        ("waiting", pending(&in_a_day)),
    ] {
        create_action(&h.actions, name, &policy_ref, status).await;
    }
    // An action that borrows another namespace's policy is never driven
    // under it (the chart's admission policy refuses creating one; the
    // coordinator checks too).
    create_action(
        &h.actions,
        "borrowed",
        "kube-system/default",
        serde_json::json!({ "phase": "Proposed", "phaseSince": ago(0) }),
    )
    .await;
    let phase = |a: &nanny_crd::HealingAction| a.status.as_ref().and_then(|s| s.phase);
    eventually("the sweep expired and deleted", WAIT, || async {
        let overdue = h.actions.get("overdue").await?;
        let gone = h.actions.get_opt("old-done").await?.is_none();
        Ok((gone && phase(&overdue) == Some(Phase::Expired)).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", h.stack.logs()));
    assert_eq!(
        phase(&h.actions.get("new-done").await.unwrap()),
        Some(Phase::Succeeded),
        "finished a day ago: kept"
    );
    assert_eq!(
        phase(&h.actions.get("waiting").await.unwrap()),
        Some(Phase::PendingApproval),
        "still within its approval window"
    );
    let borrowed = eventually("the borrowed policy refused", WAIT, || async {
        let action = h.actions.get("borrowed").await?;
        Ok((phase(&action) == Some(Phase::Denied)).then_some(action))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", h.stack.logs()));
    // (The test writes the Proposed status after creating it: the
    // coordinator may have denied it once already.)
    let verdict = borrowed.status.unwrap().verdict.unwrap();
    assert!(
        !verdict.matched_rules.is_empty()
            && verdict
                .matched_rules
                .iter()
                .all(|r| r == "policy-elsewhere"),
        "{verdict:?}"
    );
}

/// A crash-looping replica under a budget that allows no disruption, and
/// one under a budget that lets unhealthy pods go (the user's choice,
/// `unhealthyPodEvictionPolicy: AlwaysAllow`).
async fn guarded(h: &Harness, app: &str, unhealthy_policy: &str) -> Pod {
    let (client, ns) = (&h.fx.client, h.fx.ns());
    faults::deployment(client, ns, app, 3, &PodSpec::default())
        .await
        .unwrap();
    let victim = h.running_pods(app, 3).await.remove(0);
    let pdb: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
        "metadata": { "name": app },
        "spec": { "minAvailable": 3, "selector": { "matchLabels": { "app": app } },
                  "unhealthyPodEvictionPolicy": unhealthy_policy },
    }))
    .unwrap();
    Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
        .create(&Default::default(), &pdb)
        .await
        .unwrap();
    crash_one_pod(&Api::namespaced(client.clone(), ns), &victim).await;
    victim
}

#[tokio::test(flavor = "multi_thread")]
async fn a_budget_that_refuses_blocks_the_restart_then_escalates_and_one_that_allows_lets_it_proceed()
 {
    let fast = |key: &str, value: &str| ("nanny-coordinator", key.to_owned(), value.to_owned());
    let Some(h) = Harness::start_with(
        "pipeline-budgets",
        "Auto",
        vec![
            fast("NANNY_ACTIONS__BLOCKED_RETRY_SECS", "2"),
            fast("NANNY_ACTIONS__BLOCKED_TRIES", "3"),
        ],
    )
    .await
    else {
        return;
    };
    let (client, ns) = (&h.fx.client, h.fx.ns());
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let (strict, lenient) = tokio::join!(
        guarded(&h, "strict", "IfHealthyBudget"),
        guarded(&h, "lenient", "AlwaysAllow")
    );

    // AlwaysAllow: the budget lets the unhealthy pod go; it is restarted.
    let action = h
        .wait_phase(&lenient.uid().unwrap(), Phase::Succeeded)
        .await;
    assert_eq!(action.spec.action.type_, ActionType::RestartPod);
    println!("crash loop under an AlwaysAllow budget → restarted");

    // IfHealthyBudget at zero: blocked, tried again, then a human decides.
    let uid = strict.uid().unwrap();
    let action = h.wait_phase(&uid, Phase::Failed).await;
    let status = action.status.clone().unwrap();
    assert_eq!(action.spec.action.type_, ActionType::RestartPod);
    assert_eq!(status.blocked, 3, "{status:?}");
    let result = status.result.unwrap();
    assert_eq!(result.outcome, nanny_crd::Outcome::Blocked, "{result:?}");
    assert!(
        result
            .error
            .contains("The disruption budget strict needs 3 healthy pods")
            && result.error.contains("a human must decide"),
        "{}",
        result.error
    );
    assert!(
        status
            .conditions
            .iter()
            .filter(|c| c.reason == "DisruptionBudgetBlocked")
            .count()
            >= 3,
        "each blocked try is on the timeline: {:?}",
        status.conditions
    );
    let still = pods.get(&strict.name_any()).await.unwrap();
    assert_eq!(still.uid(), strict.uid(), "never deleted instead");
    assert!(still.metadata.deletion_timestamp.is_none());
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), ns);
    eventually("an Escalated Event on the pod", WAIT, || async {
        Ok(events
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .find(|e| {
                e.involved_object.uid.as_deref() == Some(uid.as_str())
                    && e.reason.as_deref() == Some("Escalated")
            }))
    })
    .await
    .unwrap();
    let coordinator = &h.stack.services["nanny-coordinator"];
    let (_, metrics) = nanny_test_util::http::get(coordinator.http_addr, "/metrics")
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"nanny_escalations_total{reason="disruption-budget"} 1"#),
        "{metrics}"
    );
    // The API server's evidence: every eviction of the pod was refused.
    let evictions: Vec<_> =
        h.fx.cluster
            .audited_writes_in(ns)
            .unwrap()
            .into_iter()
            .filter(|w| w.object_ref.name == strict.name_any())
            .filter(|w| w.object_ref.subresource == "eviction" || w.verb == "delete")
            .collect();
    assert!(
        evictions.iter().any(|w| w.response_status.code == 429),
        "{evictions:#?}"
    );
    assert!(
        evictions.iter().all(|w| !w.succeeded()),
        "no eviction or delete went through: {evictions:#?}"
    );
    println!(
        "crash loop under a budget at zero → blocked {} times → escalated",
        status.blocked
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_loop_restarts_cannot_fix_climbs_the_ladder_to_one_escalation_without_churn() {
    let Some(fx) = Fixture::new("pipeline-ladder").await else {
        return;
    };
    // Every sink format, to a real local receiver, with the URLs in the
    // Secret the coordinator may read.
    let (receiver, received) = nanny_cluster_tests::receiver::start().await;
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": nanny_crd::NOTIFICATIONS_SECRET },
        "stringData": {
            "hook": format!("{receiver}/webhook"),
            "slack": format!("{receiver}/slack"),
            "am": format!("{receiver}/alertmanager"),
        },
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(fx.client.clone(), fx.ns())
        .create(&Default::default(), &secret)
        .await
        .unwrap();
    let mut policy = restarts_ladder_policy(fx.ns());
    policy.spec.notifications = Some(
        serde_json::from_value(serde_json::json!({ "sinks": [
            { "type": "Webhook", "urlKey": "hook" },
            { "type": "Slack", "urlKey": "slack" },
            { "type": "Alertmanager", "urlKey": "am" },
        ] }))
        .unwrap(),
    );
    let mut h = Harness::with_policy(fx, &policy, Vec::new()).await;
    // A memory limit raise waits for a human: one message per sink. (Not a
    // node: a NotReady node is in every test's scope and trips the storm
    // guard of the tests running beside this one.)
    faults::oom_killed(&h.fx.client, h.fx.ns(), "hungry", "128Mi")
        .await
        .unwrap();
    let (client, ns) = (&h.fx.client, h.fx.ns());
    // Its template crashes: every restart brings back a crashing pod.
    let deployment = faults::crash_loop(client, ns, "stubborn", 1).await.unwrap();
    let workload = deployment.uid().unwrap();
    let of_workload = || async {
        h.actions
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|a| {
                a.spec.workload_uid.as_deref() == Some(workload.as_str())
                    || a.spec.target.uid == workload
            })
            .collect::<Vec<_>>()
    };
    let escalation = h
        .eventually("an escalation", Duration::from_secs(240), || async {
            Ok(of_workload()
                .await
                .into_iter()
                .find(|a| a.status.as_ref().and_then(|s| s.phase) == Some(Phase::Escalated)))
        })
        .await;
    assert_eq!(escalation.spec.action.type_, ActionType::ReportOnly);
    assert_eq!(
        escalation.spec.target.uid, workload,
        "escalated on the Deployment"
    );
    assert_eq!(
        escalation.spec.issue_kind.as_deref(),
        Some("CRASH_LOOP_BACK_OFF")
    );
    let evidence = &escalation.spec.reasoning;
    assert!(
        evidence.contains("a human must decide")
            && evidence.matches("- RestartPod: ").count() == 2
            && evidence.contains("Ineffective"),
        "{evidence}"
    );

    // No churn: while it is open, detections only update it.
    tokio::time::sleep(Duration::from_secs(40)).await;
    let actions = of_workload().await;
    let summary: Vec<String> = actions
        .iter()
        .map(|a| {
            format!(
                "{:?} {:?}",
                a.spec.action.type_,
                a.status.as_ref().and_then(|s| s.phase)
            )
        })
        .collect();
    let restarts = actions
        .iter()
        .filter(|a| a.spec.action.type_ == ActionType::RestartPod)
        .count();
    assert_eq!(
        (restarts, actions.len()),
        (2, 3),
        "exactly the ladder's two restarts and one escalation: {summary:?}"
    );
    let escalation = h.actions.get(&escalation.name_any()).await.unwrap();
    assert!(
        escalation
            .annotations()
            .get(nanny_crd::SEEN_COUNT_ANNOTATION)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n >= 1),
        "the repeated detections are counted on it: {:?}",
        escalation.annotations()
    );
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), ns);
    let warned = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .any(|e| {
            e.involved_object.uid.as_deref() == Some(workload.as_str())
                && e.reason.as_deref() == Some("Escalated")
                && e.type_.as_deref() == Some("Warning")
        });
    assert!(warned, "a Warning Event on the Deployment");
    let coordinator = &h.stack.services["nanny-coordinator"];
    let (_, metrics) = nanny_test_util::http::get(coordinator.http_addr, "/metrics")
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"nanny_escalations_total{reason="ladder"} 1"#),
        "{metrics}"
    );

    // Exactly one message per sink for the approval and the escalation,
    // also after the coordinator restarts.
    // Counted per action: nodes are in every policy's scope, so another
    // test's NotReady node may be reported here too.
    let messages = |path: &str, event: &str| {
        let workload = if event == "Escalated" {
            "stubborn"
        } else {
            "hungry"
        };
        received
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, body)| {
                p == path
                    && match path {
                        "/webhook" => {
                            body["event"] == event
                                && body["target"]
                                    .as_str()
                                    .is_some_and(|t| t.ends_with(&format!("/{workload}")))
                        }
                        "/alertmanager" => {
                            let labels = &body["alerts"][0]["labels"];
                            labels["alertname"] == format!("Nanny{event}")
                                && labels["healingaction"]
                                    .as_str()
                                    .is_some_and(|n| n.starts_with(&format!("{workload}-")))
                        }
                        _ => body["text"].as_str().is_some_and(|t| {
                            t.contains(&format!("/{workload} "))
                                && t.contains(if event == "Escalated" {
                                    "Escalated"
                                } else {
                                    "waits for approval"
                                })
                        }),
                    }
            })
            .count()
    };
    let all_once = || {
        ["/webhook", "/slack", "/alertmanager"]
            .iter()
            .all(|path| messages(path, "PendingApproval") == 1 && messages(path, "Escalated") == 1)
    };
    eventually("one message per sink and moment", WAIT, || async {
        Ok(all_once().then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:#?}", received.lock().unwrap()));
    let pending = received
        .lock()
        .unwrap()
        .iter()
        .find(|(p, b)| {
            p == "/webhook"
                && b["event"] == "PendingApproval"
                && b["target"].as_str().is_some_and(|t| t.ends_with("/hungry"))
        })
        .map(|(_, b)| b.clone())
        .unwrap();
    assert_eq!(pending["action"], "PatchResources", "{pending}");
    assert!(
        pending["command"]
            .as_str()
            .is_some_and(|c| c.starts_with(&format!("nannyctl approve -n {ns} "))),
        "{pending}"
    );
    h.stack.kill_and_restart("nanny-coordinator").await.unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(
        all_once(),
        "nothing sent twice across the restart: {:#?}",
        received.lock().unwrap()
    );

    // A human resolves it: the ladder starts again from its first rung.
    h.actions
        .patch(
            &escalation.name_any(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({
                "metadata": { "annotations": { nanny_crd::RESOLVE_ANNOTATION: "fixed the image" } }
            })),
        )
        .await
        .unwrap();
    h.wait_phase(&workload, Phase::Resolved).await;
    eventually("a new restart after the resolution", WAIT, || async {
        Ok((of_workload()
            .await
            .iter()
            .filter(|a| a.spec.action.type_ == ActionType::RestartPod)
            .count()
            > 2)
        .then_some(()))
    })
    .await
    .unwrap();
    println!(
        "crash loop restarts cannot fix → 2 restarts → 1 escalation, no churn → resolved; one notification per sink and moment across a restart"
    );
}
