//! The remediator's own state under attack: rollbacks without the gate's
//! signed word, forged, tampered and copied action records, rollbacks that
//! would overwrite a later change, and secrets planted in a workload that
//! must appear in nothing the remediator writes or answers. "Unchanged" is
//! the API server's resourceVersion, not the remediator's reply.

use kube::api::ObjectMeta;
use nanny_common::redact::canaries;
use nanny_remediator::actions;

use super::*;

/// The remediator's field manager, and a person's.
const HUMAN: &str = "kubectl-edit";

/// Patches `name` as a person would, with their own field manager.
async fn human_patch<K>(api: &Api<K>, name: &str, patch: serde_json::Value)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PatchParams {
        field_manager: Some(HUMAN.to_owned()),
        ..PatchParams::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// A rollback refused because `HUMAN` changed the field since the action
/// (a removed field has no owner left to name).
fn assert_kept_later_change(result: Result<ActionResult, tonic::Status>) {
    let by = [HUMAN, "another writer"];
    let refused = result.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("changed since the action by ")
            && by.iter().any(|b| refused.message().contains(b))
            && refused.message().contains("nothing was rolled back"),
        "{}",
        refused.message()
    );
}

/// A short verification window: these tests are about the rollback.
pub(crate) fn quick(mut request: ExecuteRequest) -> ExecuteRequest {
    request.verification_timeout_seconds = 2;
    request
}

#[tokio::test]
async fn rollbacks_never_overwrite_a_later_change_for_any_reversible_action() {
    let Some(fx) = Fixture::new("rem-later").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    let deployments: Api<Deployment> = Api::namespaced(fx.client.clone(), fx.ns());
    let spec = PodSpec {
        memory_limit: Some("256Mi".to_owned()),
        ..PodSpec::default()
    };
    faults::deployment(&fx.client, fx.ns(), "web", 1, &spec)
        .await
        .unwrap();
    let memory = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap()["memory"]
            .0
            .clone()
    };
    let restarted_at = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(actions::RESTARTED_AT).cloned())
    };

    // PatchResources: 256Mi → 512Mi; a person sets 1Gi.
    let before = rolled_out(&fx, "web").await;
    let action = ActionKind::PatchResources(PatchResources {
        container: "app".into(),
        requests: None,
        limits: Some(Resources {
            memory_bytes: Some(512 << 20),
            cpu_millicores: None,
        }),
    });
    let result = remediator
        .execute(quick(approved("later-resources", action, target(&before))))
        .await
        .unwrap();
    assert_ne!(outcome(&result), Outcome::Refused, "{result:?}");
    let set = |memory: &str| {
        json!({ "spec": { "template": { "spec": { "containers": [
            { "name": "app", "resources": { "limits": { "memory": memory } } }
        ] } } } })
    };
    // A merge patch replaces the container list: use the strategic one.
    let human = PatchParams {
        field_manager: Some(HUMAN.to_owned()),
        ..PatchParams::default()
    };
    deployments
        .patch("web", &human, &Patch::Strategic(set("1Gi")))
        .await
        .unwrap();
    assert_kept_later_change(remediator.rollback("later-resources").await);
    assert_eq!(memory(&deployments.get("web").await.unwrap()), "1Gi");
    // Back to what the action left: the rollback restores the value before.
    deployments
        .patch("web", &human, &Patch::Strategic(set("536870912")))
        .await
        .unwrap();
    let rollback = remediator.rollback("later-resources").await.unwrap();
    assert_eq!(outcome(&rollback), Outcome::RolledBack, "{rollback:?}");
    assert_eq!(memory(&deployments.get("web").await.unwrap()), "256Mi");

    // RolloutRestart: a person restarts again after Nanny did.
    let before = rolled_out(&fx, "web").await;
    let result = remediator
        .execute(quick(approved(
            "later-restart",
            ActionKind::RolloutRestart(RolloutRestart {}),
            target(&before),
        )))
        .await
        .unwrap();
    assert_ne!(outcome(&result), Outcome::Refused, "{result:?}");
    let stamp = restarted_at(&deployments.get("web").await.unwrap()).unwrap();
    let annotate = |value: &str| json!({ "spec": { "template": { "metadata": { "annotations": { actions::RESTARTED_AT: value } } } } });
    human_patch(&deployments, "web", annotate("2030-01-01T00:00:00Z")).await;
    assert_kept_later_change(remediator.rollback("later-restart").await);
    assert_eq!(
        restarted_at(&deployments.get("web").await.unwrap()).as_deref(),
        Some("2030-01-01T00:00:00Z")
    );
    human_patch(&deployments, "web", annotate(&stamp)).await;
    let rollback = remediator.rollback("later-restart").await.unwrap();
    assert_eq!(outcome(&rollback), Outcome::RolledBack, "{rollback:?}");
    assert_eq!(
        restarted_at(&deployments.get("web").await.unwrap()),
        restarted_at(&before)
    );

    // ScaleHpa: max 3 → 6; a person sets 8.
    let params = HpaAtMax {
        min_replicas: 1,
        max_replicas: 3,
        target_cpu_percent: 50,
        current_cpu_percent: 90,
    };
    let hpa = faults::hpa_at_max(&fx.client, fx.ns(), "api", params)
        .await
        .unwrap();
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(fx.client.clone(), fx.ns());
    let scale = ActionKind::ScaleHpa(ScaleHpa {
        min_replicas: None,
        max_replicas: 6,
    });
    let result = remediator
        .execute(quick(approved("later-scale", scale, target(&hpa))))
        .await
        .unwrap();
    assert_ne!(outcome(&result), Outcome::Refused, "{result:?}");
    let max = |h: HorizontalPodAutoscaler| h.spec.unwrap().max_replicas;
    human_patch(&hpas, "api", json!({ "spec": { "maxReplicas": 8 } })).await;
    assert_kept_later_change(remediator.rollback("later-scale").await);
    assert_eq!(max(hpas.get("api").await.unwrap()), 8);
    human_patch(&hpas, "api", json!({ "spec": { "maxReplicas": 6 } })).await;
    let rollback = remediator.rollback("later-scale").await.unwrap();
    assert_eq!(outcome(&rollback), Outcome::RolledBack, "{rollback:?}");
    assert_eq!(max(hpas.get("api").await.unwrap()), 3);

    // CordonNode, UncordonNode and DrainNode on a node of our own: a person
    // flips the cordon after Nanny did.
    let node = FakeNode::create(&fx.cluster, &fx.client, &format!("{}-n1", fx.ns()))
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(fx.client.clone());
    let cordoned = |value: bool| json!({ "spec": { "unschedulable": if value { json!(true) } else { json!(null) } } });
    let unschedulable = || async { node.cordoned(&fx.client).await.unwrap() };
    let drain = ActionKind::DrainNode(DrainNode {
        grace_period_seconds: 0,
        timeout_seconds: 10,
    });
    for (id, action, cordoned_before) in [
        ("later-cordon", ActionKind::CordonNode(CordonNode {}), false),
        (
            "later-uncordon",
            ActionKind::UncordonNode(UncordonNode {}),
            true,
        ),
        ("later-drain", drain, false),
    ] {
        human_patch(&nodes, &node.name, cordoned(false)).await;
        if cordoned_before {
            // Nanny lifts only its own cordon: Nanny cordons first.
            let earlier = remediator
                .execute(quick(approved(
                    "earlier-cordon",
                    ActionKind::CordonNode(CordonNode {}),
                    target(&nodes.get(&node.name).await.unwrap()),
                )))
                .await
                .unwrap();
            assert_eq!(outcome(&earlier), Outcome::Succeeded, "{earlier:?}");
        }
        let snapshot = nodes.get(&node.name).await.unwrap();
        let result = remediator
            .execute(quick(approved(id, action, target(&snapshot))))
            .await
            .unwrap();
        assert_ne!(outcome(&result), Outcome::Refused, "{id}: {result:?}");
        let left = unschedulable().await;
        assert_eq!(left, !cordoned_before, "{id}");
        human_patch(&nodes, &node.name, cordoned(!left)).await;
        assert_kept_later_change(remediator.rollback(id).await);
        assert_eq!(
            unschedulable().await,
            !left,
            "{id}: the person's cordon kept"
        );
        human_patch(&nodes, &node.name, cordoned(left)).await;
        let rollback = remediator.rollback(id).await.unwrap();
        assert_eq!(
            outcome(&rollback),
            Outcome::RolledBack,
            "{id}: {rollback:?}"
        );
        assert_eq!(unschedulable().await, cordoned_before, "{id}: restored");
    }
}

/// Sends a rollback of `action_id` on `target` signed by `key` (the test
/// PKI's gate key, or another), for recommendation `rec-<signed_for>`.
async fn rollback_signed(
    remediator: &Remediator,
    action_id: &str,
    target: ObjectRef,
    signed_for: &str,
    key: Option<&std::path::Path>,
) -> Result<ActionResult, tonic::Status> {
    let mut request = RollbackRequest {
        action_id: action_id.to_owned(),
        reason: "attack".to_owned(),
        target: Some(target),
        verdict: None,
    };
    match key {
        None => nanny_test_util::pki::sign_rollback(&mut request, &format!("rec-{signed_for}")),
        Some(key) => {
            let signer = nanny_common::verdict::Signer::load("signing.key", key, WAIT).unwrap();
            let mut verdict = Verdict {
                recommendation_id: format!("rec-{signed_for}"),
                decision: Decision::Approved as i32,
                ..Verdict::default()
            };
            signer.sign_rollback(
                action_id,
                request.target.as_ref().unwrap(),
                &mut verdict,
                std::time::SystemTime::now(),
            );
            request.verdict = Some(verdict);
        }
    }
    remediator
        .grpc
        .clone()
        .rollback(request)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn unsigned_forged_tampered_and_copied_rollbacks_change_nothing() {
    let Some(fx) = Fixture::new("rem-forged").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    let deployments: Api<Deployment> = Api::namespaced(fx.client.clone(), fx.ns());
    let maps: Api<ConfigMap> = Api::namespaced(fx.client.clone(), fx.ns());
    let spec = PodSpec {
        memory_limit: Some("256Mi".to_owned()),
        ..PodSpec::default()
    };
    faults::deployment(&fx.client, fx.ns(), "web", 1, &spec)
        .await
        .unwrap();
    let before = rolled_out(&fx, "web").await;
    let action = ActionKind::PatchResources(PatchResources {
        container: "app".into(),
        requests: None,
        limits: Some(Resources {
            memory_bytes: Some(512 << 20),
            cpu_millicores: None,
        }),
    });
    let result = remediator
        .execute(quick(approved("resources-web", action, target(&before))))
        .await
        .unwrap();
    assert_ne!(outcome(&result), Outcome::Refused, "{result:?}");
    // Settled, so that only a write can move it: generation counts spec
    // writes (status churn from the rollout does not).
    let acted = rolled_out(&fx, "web").await;
    let written = (acted.metadata.generation, acted.spec.clone());
    let web = target(&acted);
    let genuine = maps
        .get(&format!("{}resources-web", store::PREFIX))
        .await
        .unwrap();

    let impostor = nanny_test_util::pki::test_dir().join("impostor-rollback");
    std::fs::create_dir_all(&impostor).unwrap();
    nanny_test_util::pki::write_signing_key(&impostor, "impostor").unwrap();
    let impostor_key = impostor.join("impostor-key.pem");
    let mut elsewhere = web.clone();
    elsewhere.uid = "uid-of-something-else".into();

    let unsigned = remediator
        .grpc
        .clone()
        .rollback(RollbackRequest {
            action_id: "resources-web".into(),
            reason: "attack".into(),
            target: Some(web.clone()),
            verdict: None,
        })
        .await
        .map(tonic::Response::into_inner);
    let signature_attacks = [
        ("unsigned", unsigned, tonic::Code::PermissionDenied),
        (
            "signed for another action",
            rollback_signed(&remediator, "resources-web", web.clone(), "other", None).await,
            tonic::Code::PermissionDenied,
        ),
        (
            "signed by another key",
            rollback_signed(
                &remediator,
                "resources-web",
                web.clone(),
                "resources-web",
                Some(&impostor_key),
            )
            .await,
            tonic::Code::PermissionDenied,
        ),
        (
            "signed for another target",
            rollback_signed(
                &remediator,
                "resources-web",
                elsewhere,
                "resources-web",
                None,
            )
            .await,
            tonic::Code::PermissionDenied,
        ),
    ];
    for (attack, result, code) in signature_attacks {
        let refused = result.unwrap_err();
        assert_eq!(refused.code(), code, "{attack}: {refused:?}");
        let now = deployments.get("web").await.unwrap();
        assert!(
            (now.metadata.generation, now.spec) == written,
            "{attack}: the API server shows a write"
        );
    }

    // The records an attacker with ConfigMap access writes: one with no
    // MAC, one MAC'd with another key, a genuine one edited, and a genuine
    // one copied under another action id. Each rolls back an image change.
    let mut evil = record("forged", store::Phase::Done);
    evil.action_type = "ACTION_TYPE_ROLLOUT_RESTART".into();
    evil.target = store::TargetRecord {
        kind: "Deployment".into(),
        namespace: fx.ns().into(),
        name: "web".into(),
        uid: web.uid.clone(),
    };
    evil.recommendation_id = "rec-forged".into();
    evil.not_reversible = None;
    evil.changes = vec![store::FieldChange {
        pointer: "/spec/template/spec/containers/0/image".into(),
        before: json!("attacker.example/miner:latest"),
        after: json!(null),
    }];
    maps.create(
        &PostParams::default(),
        &object(json!({
            "metadata": { "name": format!("{}forged", store::PREFIX) },
            "data": { "record.json": serde_json::to_string(&evil).unwrap() },
        })),
    )
    .await
    .unwrap();
    let mut other_key = evil.clone();
    other_key.recommendation_id = "rec-other-key".into();
    store::Store::new(fx.client.clone(), fx.ns(), &[7u8; 32])
        .claim("other-key", &other_key)
        .await
        .unwrap();
    let mut tampered = genuine.clone();
    tampered.metadata = ObjectMeta {
        name: Some(format!("{}tampered", store::PREFIX)),
        ..ObjectMeta::default()
    };
    let mut copied = tampered.clone();
    copied.metadata.name = Some(format!("{}copied", store::PREFIX));
    maps.create(&PostParams::default(), &copied).await.unwrap();
    let text = genuine.data.as_ref().unwrap()["record.json"].clone();
    let edited = text.replace("\"before\":\"256Mi\"", "\"before\":\"1Ti\"");
    assert_ne!(edited, text, "the edit must change the record: {text}");
    tampered
        .data
        .as_mut()
        .unwrap()
        .insert("record.json".into(), edited);
    tampered.metadata.name = Some(format!("{}resources-web", store::PREFIX));
    tampered.metadata.resource_version = genuine.metadata.resource_version.clone();
    maps.replace(
        &format!("{}resources-web", store::PREFIX),
        &PostParams::default(),
        &tampered,
    )
    .await
    .unwrap();
    // And one MAC'd with the remediator's own key (as if the key leaked),
    // still naming a field its action type never changes.
    let mut leaked = evil.clone();
    leaked.recommendation_id = "rec-leaked".into();
    store::Store::new(fx.client.clone(), fx.ns(), &mac_key())
        .claim("leaked", &leaked)
        .await
        .unwrap();

    let record_attacks = [
        (
            "forged record",
            rollback_signed(&remediator, "forged", web.clone(), "forged", None).await,
            tonic::Code::DataLoss,
        ),
        (
            "record MAC'd with another key",
            rollback_signed(&remediator, "other-key", web.clone(), "other-key", None).await,
            tonic::Code::DataLoss,
        ),
        (
            "tampered record",
            rollback_signed(
                &remediator,
                "resources-web",
                web.clone(),
                "resources-web",
                None,
            )
            .await,
            tonic::Code::DataLoss,
        ),
        (
            "copied record",
            rollback_signed(&remediator, "copied", web.clone(), "resources-web", None).await,
            tonic::Code::DataLoss,
        ),
        (
            "MAC'd record naming an image",
            rollback_signed(&remediator, "leaked", web.clone(), "leaked", None).await,
            tonic::Code::FailedPrecondition,
        ),
    ];
    for (attack, result, code) in record_attacks {
        let refused = result.unwrap_err();
        assert_eq!(refused.code(), code, "{attack}: {refused:?}");
        let now = deployments.get("web").await.unwrap();
        assert!(
            (now.metadata.generation, now.spec) == written,
            "{attack}: the API server shows a write"
        );
    }
    // A tampered record is also refused for an Execute replay.
    let replay = remediator
        .execute(quick(approved(
            "resources-web",
            ActionKind::PatchResources(PatchResources {
                container: "app".into(),
                requests: None,
                limits: Some(Resources {
                    memory_bytes: Some(512 << 20),
                    cpu_millicores: None,
                }),
            }),
            target(&before),
        )))
        .await
        .unwrap_err();
    assert_eq!(replay.code(), tonic::Code::DataLoss, "{replay:?}");

    // The genuine record back: the genuine rollback works.
    let mut restored = genuine.clone();
    restored.metadata.resource_version = None;
    maps.replace(
        &format!("{}resources-web", store::PREFIX),
        &PostParams::default(),
        &restored,
    )
    .await
    .unwrap();
    let rollback = remediator.rollback("resources-web").await.unwrap();
    assert_eq!(outcome(&rollback), Outcome::RolledBack, "{rollback:?}");
    assert_eq!(
        deployments
            .get("web")
            .await
            .unwrap()
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .image,
        before.spec.unwrap().template.spec.unwrap().containers[0].image,
        "the image was never touched"
    );
}

#[tokio::test]
async fn no_planted_secret_leaves_the_remediator() {
    let Some(fx) = Fixture::new("rem-canary").await else {
        return;
    };
    let remediator = Remediator::start(&fx).await;
    let deployments: Api<Deployment> = Api::namespaced(fx.client.clone(), fx.ns());
    let planted = canaries::planted();
    let spec = PodSpec {
        memory_limit: Some("256Mi".to_owned()),
        annotations: vec![(
            "kubectl.kubernetes.io/last-applied-configuration",
            planted.clone(),
        )],
        ..PodSpec::default()
    };
    faults::deployment(&fx.client, fx.ns(), "vault", 1, &spec)
        .await
        .unwrap();
    // Secrets where real workloads keep them: args, env, annotations.
    let secrets = json!({
        "metadata": { "annotations": { "deploy.example/config": planted } },
        "spec": { "template": { "spec": { "containers": [{
            "name": "app",
            "args": [format!("--db-url=postgres://app:{}@db:5432/shop", canaries::DB_PASSWORD), planted],
            "env": [
                { "name": "STRIPE_KEY", "value": canaries::STRIPE },
                { "name": "SESSION_TOKEN", "value": canaries::JWT },
                { "name": "AWS_ACCESS_KEY_ID", "value": canaries::AWS_KEY },
            ],
        }] } } },
    });
    deployments
        .patch(
            "vault",
            &PatchParams::default(),
            &Patch::Strategic(&secrets),
        )
        .await
        .unwrap();
    let before = rolled_out(&fx, "vault").await;
    let stored = serde_json::to_string(&before).unwrap();
    for canary in canaries::ALL {
        assert!(stored.contains(canary), "{canary} was planted");
    }

    let mut replies = Vec::new();
    let resources = ActionKind::PatchResources(PatchResources {
        container: "app".into(),
        requests: None,
        limits: Some(Resources {
            memory_bytes: Some(512 << 20),
            cpu_millicores: None,
        }),
    });
    for request in [
        dry(approved("vault-dry", resources.clone(), target(&before))),
        quick(approved("vault-resources", resources, target(&before))),
    ] {
        replies.push(format!("{:?}", remediator.execute(request).await));
    }
    replies.push(format!(
        "{:?}",
        remediator.rollback("vault-resources").await
    ));
    let after = rolled_out(&fx, "vault").await;
    let restart = quick(approved(
        "vault-restart",
        ActionKind::RolloutRestart(RolloutRestart {}),
        target(&after),
    ));
    replies.push(format!("{:?}", remediator.execute(dry(restart)).await));
    let pod = ready_pod(&fx, "vault").await;
    for request in [
        dry(approved(
            "vault-pod-dry",
            ActionKind::RestartPod(RestartPod {}),
            target(&pod),
        )),
        quick(approved(
            "vault-pod",
            ActionKind::RestartPod(RestartPod {}),
            target(&pod),
        )),
    ] {
        replies.push(format!("{:?}", remediator.execute(request).await));
    }
    assert!(
        replies.iter().any(|r| r.contains("memory: 512Mi")
            || r.contains("memory: \\\"536870912\\\"")
            || r.contains("536870912")),
        "the replies show the change: {replies:#?}"
    );
    assert!(
        replies.iter().any(|r| r.contains("evict Pod/")),
        "a delete is summarised: {replies:#?}"
    );

    // Everything the remediator wrote or answered: replies, its records
    // (binary parts decoded), the namespace's Events, its metrics.
    let mut produced = replies.join("\n");
    let maps: Api<ConfigMap> = Api::namespaced(fx.client.clone(), fx.ns());
    let records = maps.list(&ListParams::default()).await.unwrap();
    let mut seen = 0;
    for map in records
        .items
        .iter()
        .filter(|m| m.name_any().starts_with(store::PREFIX))
    {
        seen += 1;
        produced.push_str(&serde_json::to_string(&map.data).unwrap());
        for bytes in map.binary_data.iter().flat_map(|b| b.values()) {
            produced.push_str(&String::from_utf8_lossy(&bytes.0));
        }
    }
    assert!(seen >= 2, "the records were read");
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(fx.client.clone(), fx.ns());
    produced.push_str(
        &serde_json::to_string(&events.list(&ListParams::default()).await.unwrap().items).unwrap(),
    );
    produced.push_str(&remediator.metrics().await);
    for canary in canaries::ALL {
        assert!(
            !produced.contains(canary),
            "{canary} leaked into what the remediator produced"
        );
    }
    println!(
        "canaries: {} planted, 0 found in {} bytes of replies, records, events and metrics",
        canaries::ALL.len(),
        produced.len()
    );
}
