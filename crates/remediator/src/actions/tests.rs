use std::time::{Duration, SystemTime};

use nanny_proto::v1::{
    ActionType, CordonNode, DeleteFailedPods, DeleteJob, DrainNode, ExpandPvc, ForceDeletePod,
    ObjectRef, PatchResources, Resources, RestartPod, ResumeCronJob, RetriggerJob, RolloutUndo,
    ScaleHpa, ScaleWorkload, UncordonNode, action::Kind as ActionKind,
};
use serde_json::json;

use super::*;
use crate::request::TargetKind;

fn validated(action: ActionKind, kind: TargetKind) -> Validated {
    Validated {
        action_id: "a1".into(),
        recommendation_id: "r1".into(),
        action_type: ActionType::Unspecified,
        action,
        target: ObjectRef {
            kind: "X".into(),
            namespace: "shop".into(),
            name: "web".into(),
            uid: "u1".into(),
            resource_version: "7".into(),
            ..ObjectRef::default()
        },
        kind,
        dry_run: false,
        verification_window: Duration::from_secs(5),
        allow_bare_pod_restart: false,
        human_approved: false,
    }
}

fn owned_pod() -> Value {
    json!({ "metadata": { "name": "web-1", "resourceVersion": "9",
        "ownerReferences": [{ "kind": "ReplicaSet", "uid": "rs1", "controller": true, "name": "web-abc", "apiVersion": "apps/v1" }] } })
}

#[test]
fn restart_refuses_bare_pods_unless_allowed() {
    let mut v = validated(ActionKind::RestartPod(RestartPod {}), TargetKind::Pod);
    let bare = json!({ "metadata": { "name": "p", "resourceVersion": "9" } });
    let err = plan(&v, &bare, &Facts::default()).unwrap_err();
    assert!(err.to_string().contains("no controller"), "{err}");
    v.allow_bare_pod_restart = true;
    assert!(plan(&v, &bare, &Facts::default()).is_ok());
    let p = plan(
        &validated(ActionKind::RestartPod(RestartPod {}), TargetKind::Pod),
        &owned_pod(),
        &Facts::default(),
    )
    .unwrap();
    // Evicted, not deleted: the pod's PodDisruptionBudget decides.
    assert_eq!(p.write, Write::Evict);
    assert!(p.fields.is_empty());
    assert_eq!(
        p.not_reversible,
        Some("an evicted pod cannot be brought back")
    );
}

#[test]
fn patches_carry_the_read_resource_version_and_name_the_fields_they_change() {
    let node = json!({ "metadata": { "name": "n1", "resourceVersion": "12" }, "spec": {} });
    let p = plan(
        &validated(ActionKind::CordonNode(CordonNode {}), TargetKind::Node),
        &node,
        &Facts::default(),
    )
    .unwrap();
    // The cordon says it is Nanny's (the action's id), for a later uncordon.
    assert_eq!(
        p.write,
        Write::Merge(json!({
            "metadata": { "resourceVersion": "12", "annotations": { "nanny.ai/cordoned-by": "a1" } },
            "spec": { "unschedulable": true },
        }))
    );
    assert_eq!(p.fields, ["/spec/unschedulable", CORDONED_BY_POINTER]);
    assert!(
        p.fields
            .iter()
            .all(|f| crate::undo::allowed("ACTION_TYPE_CORDON_NODE", f))
    );
    assert_eq!(p.not_reversible, None);
}

#[test]
fn only_a_cordon_nanny_set_is_lifted_and_only_from_a_healthy_node() {
    let owned = |manager: &str| {
        json!([{ "manager": manager, "operation": "Update",
                 "fieldsV1": { "f:spec": { "f:unschedulable": {} } } }])
    };
    let ours = Facts {
        field_manager: "nanny-remediator".into(),
        ..Facts::default()
    };
    let node = |cordoned_by: Option<&str>, conditions: Value| {
        let mut n = json!({ "metadata": { "name": "n1", "resourceVersion": "12",
                                          "managedFields": owned("nanny-remediator") },
                            "spec": { "unschedulable": true },
                            "status": { "conditions": conditions } });
        if let Some(id) = cordoned_by {
            n["metadata"]["annotations"] = json!({ "nanny.ai/cordoned-by": id });
        }
        n
    };
    let condition = |t: &str, s: &str| json!({ "type": t, "status": s });
    let healthy = json!([
        condition("Ready", "True"),
        condition("MemoryPressure", "False")
    ]);
    let v = validated(ActionKind::UncordonNode(UncordonNode {}), TargetKind::Node);
    let p = plan(&v, &node(Some("cordon-1"), healthy.clone()), &ours).unwrap();
    assert_eq!(
        p.write,
        Write::Merge(json!({
            "metadata": { "resourceVersion": "12", "annotations": { "nanny.ai/cordoned-by": null } },
            "spec": { "unschedulable": null },
        }))
    );
    // A person's cordon, a node not Ready, a node with a problem: refused.
    let person = plan(&v, &node(None, healthy.clone()), &ours).unwrap_err();
    assert!(
        person.to_string().contains("Nanny did not cordon it"),
        "{person}"
    );
    // Nanny's annotation left behind by a person's uncordon, then their own
    // cordon: kubectl owns spec.unschedulable now.
    let mut recordoned = node(Some("cordon-1"), healthy);
    recordoned["metadata"]["managedFields"] = owned("kubectl-cordon");
    let err = plan(&v, &recordoned, &ours).unwrap_err();
    assert!(
        err.to_string()
            .contains("Nanny did not set its current cordon"),
        "{err}"
    );
    let down = node(Some("c"), json!([condition("Ready", "Unknown")]));
    let err = plan(&v, &down, &ours).unwrap_err();
    assert!(err.to_string().contains("it is not Ready"), "{err}");
    let sick = node(
        Some("c"),
        json!([
            condition("Ready", "True"),
            condition("KernelDeadlock", "True")
        ]),
    );
    let err = plan(&v, &sick, &ours).unwrap_err();
    assert!(
        err.to_string().contains("it reports KernelDeadlock"),
        "{err}"
    );
    // Cordoning a node a person cordoned adds no claim to it.
    let cordon = validated(ActionKind::CordonNode(CordonNode {}), TargetKind::Node);
    let p = plan(&cordon, &node(None, json!([])), &Facts::default()).unwrap();
    assert_eq!(p.fields, ["/spec/unschedulable"]);
}

#[test]
fn scale_hpa_changes_only_the_bounds_it_sets() {
    let hpa = json!({ "metadata": { "resourceVersion": "3" }, "spec": { "minReplicas": 2, "maxReplicas": 5 } });
    let action = ActionKind::ScaleHpa(ScaleHpa {
        min_replicas: None,
        max_replicas: 8,
    });
    let p = plan(&validated(action, TargetKind::Hpa), &hpa, &Facts::default()).unwrap();
    assert_eq!(p.fields, ["/spec/maxReplicas"]);
    let both = ActionKind::ScaleHpa(ScaleHpa {
        min_replicas: Some(2),
        max_replicas: 8,
    });
    let p = plan(&validated(both, TargetKind::Hpa), &hpa, &Facts::default()).unwrap();
    assert_eq!(p.fields, ["/spec/maxReplicas", "/spec/minReplicas"]);
    let below_min = ActionKind::ScaleHpa(ScaleHpa {
        min_replicas: None,
        max_replicas: 1,
    });
    assert!(
        plan(
            &validated(below_min, TargetKind::Hpa),
            &hpa,
            &Facts::default()
        )
        .is_err()
    );
}

#[test]
fn patch_resources_merges_one_container_by_name() {
    let deployment = json!({ "metadata": { "resourceVersion": "4" }, "spec": { "template": { "spec": { "containers": [
        { "name": "sidecar", "resources": {} },
        { "name": "app", "resources": { "limits": { "memory": "256Mi" }, "requests": { "memory": "256Mi" } } },
    ] } } } });
    let action = ActionKind::PatchResources(PatchResources {
        container: "app".into(),
        requests: None,
        limits: Some(Resources {
            memory_bytes: Some(512 << 20),
            cpu_millicores: Some(500),
        }),
    });
    let p = plan(
        &validated(action, TargetKind::Deployment),
        &deployment,
        &Facts::default(),
    )
    .unwrap();
    let Write::Strategic(patch) = &p.write else {
        panic!("{:?}", p.write)
    };
    assert_eq!(
        patch["spec"]["template"]["spec"]["containers"],
        json!([{ "name": "app", "resources": { "limits": { "cpu": "500m", "memory": "536870912" } } }])
    );
    assert_eq!(p.container.as_deref(), Some("app"));
    assert_eq!(
        p.fields,
        [
            "/spec/template/spec/containers/1/resources/limits/cpu",
            "/spec/template/spec/containers/1/resources/limits/memory"
        ]
    );
    assert!(
        p.fields
            .iter()
            .all(|f| crate::undo::allowed("ACTION_TYPE_PATCH_RESOURCES", f))
    );
    assert!(
        p.shown_fields()
            .contains(&"/spec/template/spec/containers/1/name".to_owned())
    );

    let missing = ActionKind::PatchResources(PatchResources {
        container: "nope".into(),
        requests: Some(Resources {
            memory_bytes: Some(1),
            cpu_millicores: None,
        }),
        limits: None,
    });
    let err = plan(
        &validated(missing, TargetKind::Deployment),
        &deployment,
        &Facts::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains(r#"has no container "nope" (it has ["sidecar", "app"])"#),
        "{err}"
    );
}

#[test]
fn expand_pvc_never_shrinks_and_needs_an_expandable_class() {
    let claim = json!({ "metadata": { "resourceVersion": "1" }, "spec": { "storageClassName": "fast", "resources": { "requests": { "storage": "1Gi" } } } });
    let grow = |bytes| {
        validated(
            ActionKind::ExpandPvc(ExpandPvc {
                new_size_bytes: bytes,
            }),
            TargetKind::Pvc,
        )
    };
    let expandable = Facts {
        expandable: Some(true),
        ..Facts::default()
    };
    assert!(plan(&grow(2 << 30), &claim, &expandable).is_ok());
    let err = plan(&grow(1 << 30), &claim, &expandable).unwrap_err();
    assert!(err.to_string().contains("never shrunk"), "{err}");
    assert!(plan(&grow(512 << 20), &claim, &expandable).is_err());
    let err = plan(
        &grow(2 << 30),
        &claim,
        &Facts {
            expandable: Some(false),
            ..Facts::default()
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("does not allow volume expansion"),
        "{err}"
    );
}

#[test]
fn delete_job_needs_a_finished_job_old_enough() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let finished = |ago: u64| {
        let t = k8s_openapi::jiff::Timestamp::try_from(now - Duration::from_secs(ago))
            .unwrap()
            .to_string();
        json!({ "metadata": { "resourceVersion": "1" }, "status": { "completionTime": t,
            "conditions": [{ "type": "Complete", "status": "True", "lastTransitionTime": t }] } })
    };
    let v = validated(
        ActionKind::DeleteJob(DeleteJob {
            min_age_seconds: 3600,
        }),
        TargetKind::Job,
    );
    let facts = Facts {
        now: Some(now),
        ..Facts::default()
    };
    let p = plan(&v, &finished(7200), &facts).unwrap();
    assert_eq!(
        p.write,
        Write::Delete {
            background: true,
            pin_version: true,
            force: false,
        }
    );
    let err = plan(&v, &finished(60), &facts).unwrap_err();
    assert!(
        err.to_string()
            .contains("finished 60s ago, less than the required 3600s"),
        "{err}"
    );
    let running = json!({ "metadata": { "resourceVersion": "1" }, "status": { "active": 1 } });
    assert!(plan(&v, &running, &facts).is_err());
}

#[test]
fn drain_skips_daemonset_mirror_finished_and_bare_pods() {
    let pod = |name: &str, extra: Value| {
        let mut p = json!({ "metadata": { "name": name, "namespace": "shop", "uid": format!("uid-{name}") }, "status": { "phase": "Running" } });
        if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                if k == "metadata" {
                    for (mk, mv) in v.as_object().unwrap() {
                        p["metadata"]
                            .as_object_mut()
                            .unwrap()
                            .insert(mk.clone(), mv.clone());
                    }
                } else {
                    p.insert(k.clone(), v.clone());
                }
            }
        }
        p
    };
    let facts = Facts {
        pods_on_node: vec![
            pod(
                "web",
                json!({ "metadata": { "ownerReferences": [{ "kind": "ReplicaSet", "uid": "rs", "controller": true }] } }),
            ),
            pod(
                "agent",
                json!({ "metadata": { "ownerReferences": [{ "kind": "DaemonSet", "uid": "ds", "controller": true }] } }),
            ),
            pod(
                "static",
                json!({ "metadata": { "annotations": { "kubernetes.io/config.mirror": "abc" } } }),
            ),
            pod("done", json!({ "status": { "phase": "Succeeded" } })),
            pod("debug", json!({})),
        ],
        ..Facts::default()
    };
    let started = tokio::time::Instant::now();
    let facts = Facts {
        started: Some(started),
        ..facts
    };
    let node = json!({ "metadata": { "name": "n1", "resourceVersion": "5" }, "spec": {} });
    let v = validated(
        ActionKind::DrainNode(DrainNode {
            grace_period_seconds: 0,
            timeout_seconds: 30,
        }),
        TargetKind::Node,
    );
    let p = plan(&v, &node, &facts).unwrap();
    let Write::Drain {
        evict,
        skipped,
        grace_seconds,
        deadline,
        ..
    } = p.write
    else {
        panic!()
    };
    let evicted = |name: &str| ("shop".to_owned(), name.to_owned(), format!("uid-{name}"));
    assert_eq!(evict, vec![evicted("web")]);
    assert_eq!(skipped.len(), 4, "{skipped:?}");
    assert!(skipped.iter().any(|s| s.contains("DaemonSet pod")));
    assert!(skipped.iter().any(|s| s.contains("mirror pod")));
    assert!(
        skipped.contains(&"Pod shop/debug (no controller would recreate it)".to_owned()),
        "{skipped:?}"
    );
    assert_eq!(grace_seconds, None);
    assert_eq!(deadline, started + Duration::from_secs(30));
    // Under a verdict that allows restarting bare pods, it goes too.
    let v = Validated {
        allow_bare_pod_restart: true,
        ..v
    };
    let Write::Drain { evict, .. } = plan(&v, &node, &facts).unwrap().write else {
        panic!()
    };
    assert_eq!(evict, vec![evicted("web"), evicted("debug")]);
}

#[test]
fn taints_the_node_controller_adds_are_not_a_change_a_human_must_see() {
    let sick = serde_json::json!({ "spec": { "podCIDR": "10.0.0.0/24" } });
    let tainted = serde_json::json!({ "spec": { "podCIDR": "10.0.0.0/24", "taints": [
        { "key": "node.kubernetes.io/not-ready", "effect": "NoSchedule" },
        { "key": "node.kubernetes.io/not-ready", "effect": "NoExecute" },
    ] } });
    assert_eq!(
        super::without_controller_taints(tainted),
        super::without_controller_taints(sick.clone())
    );
    // A taint someone else set is a change.
    let other = serde_json::json!({ "spec": { "podCIDR": "10.0.0.0/24", "taints": [
        { "key": "dedicated", "value": "gpu", "effect": "NoSchedule" },
    ] } });
    assert_ne!(
        super::without_controller_taints(other),
        super::without_controller_taints(sick)
    );
}

#[test]
fn only_a_human_approved_verdict_raises_hpa_min_replicas() {
    let hpa = json!({ "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": "web", "resourceVersion": "9" },
        "spec": { "minReplicas": 2, "maxReplicas": 10 } });
    let scale = |min| {
        ActionKind::ScaleHpa(ScaleHpa {
            min_replicas: min,
            max_replicas: 100,
        })
    };
    let mut v = validated(scale(Some(100)), TargetKind::Hpa);
    let err = plan(&v, &hpa, &Facts::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("minReplicas 100 is above the current 2"),
        "{err}"
    );
    v.human_approved = true;
    assert!(plan(&v, &hpa, &Facts::default()).is_ok());
    // Keeping or lowering it, or leaving it out, needs no human.
    for min in [Some(2), Some(1), None] {
        let v = validated(scale(min), TargetKind::Hpa);
        assert!(plan(&v, &hpa, &Facts::default()).is_ok(), "{min:?}");
    }
}

#[test]
fn protection_follows_the_owner_chain() {
    let protected = nanny_common::protect::ProtectedResources::default();
    let v = validated(ActionKind::RestartPod(RestartPod {}), TargetKind::Pod);
    let mut facts = Facts::default();
    assert_eq!(
        protection_refusal(&protected, &v, &owned_pod(), &facts),
        None
    );
    facts.owners = vec![
        json!({ "kind": "ReplicaSet", "metadata": { "namespace": "shop", "name": "web-abc" } }),
        json!({ "kind": "Deployment", "metadata": { "namespace": "shop", "name": "web",
            "labels": { "nanny.ai/protected": "true" } } }),
    ];
    let reason = protection_refusal(&protected, &v, &owned_pod(), &facts).unwrap();
    assert!(reason.contains("Deployment shop/web"), "{reason}");
}

#[test]
fn delete_failed_pods_deletes_only_failed_pods_up_to_the_cap_and_cannot_be_undone() {
    let v = validated(
        ActionKind::DeleteFailedPods(DeleteFailedPods { max_pods: 2 }),
        TargetKind::Deployment,
    );
    let deployment = json!({ "metadata": { "name": "web", "uid": "u1", "resourceVersion": "7" } });
    let err = plan(&v, &deployment, &Facts::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "refused: X shop/web: it has no failed pods to delete"
    );
    let pod = |name: &str, phase: &str, reason: &str| {
        json!({ "metadata": { "name": name, "namespace": "shop", "uid": format!("uid-{name}") },
                "status": { "phase": phase, "reason": reason } })
    };
    let facts = Facts {
        failed_pods: vec![
            pod("web-1", "Failed", "Evicted"),
            // Listed as Failed but no longer: never deleted.
            pod("web-2", "Running", ""),
            pod("web-3", "Failed", ""),
            pod("web-4", "Failed", "Evicted"),
        ],
        ..Facts::default()
    };
    let p = plan(&v, &deployment, &facts).unwrap();
    let Write::DeletePods { pods, shown } = &p.write else {
        panic!("{p:?}");
    };
    assert_eq!(
        pods,
        &[
            (
                "shop".to_owned(),
                "web-1".to_owned(),
                "uid-web-1".to_owned()
            ),
            (
                "shop".to_owned(),
                "web-3".to_owned(),
                "uid-web-3".to_owned()
            ),
        ]
    );
    assert_eq!(
        shown,
        &[
            "delete Pod shop/web-1 (Failed: Evicted)",
            "delete Pod shop/web-3 (Failed)",
            "leave 1 more failed pods for a later call (at most 2 per call)",
        ]
    );
    assert!(p.fields.is_empty());
    assert!(
        p.not_reversible
            .is_some_and(|why| why.contains("already failed"))
    );
}

#[test]
fn force_delete_finishes_only_a_deletion_no_kubelet_can_confirm() {
    let v = validated(
        ActionKind::ForceDeletePod(ForceDeletePod {}),
        TargetKind::Pod,
    );
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let pod = |deadline: Option<&str>, finalizers: &[&str]| {
        let mut pod = json!({ "metadata": { "name": "web-1", "resourceVersion": "9",
            "finalizers": finalizers }, "spec": { "nodeName": "n1" } });
        if let Some(deadline) = deadline {
            pod["metadata"]["deletionTimestamp"] = json!(deadline);
        }
        pod
    };
    let facts = |node: PodNode| Facts {
        now: Some(now),
        pod_node: node,
        ..Facts::default()
    };
    let past = "2027-01-15T08:00:00Z";
    let refused =
        |current: &Value, node: PodNode| plan(&v, current, &facts(node)).unwrap_err().to_string();
    assert!(refused(&pod(None, &[]), PodNode::Gone).contains("it is not being deleted"));
    assert!(
        refused(&pod(Some("2027-01-15T08:00:01Z"), &[]), PodNode::Gone)
            .contains("its grace period has not ended")
    );
    assert!(
        refused(&pod(Some(past), &["example.com/block"]), PodNode::Gone)
            .contains("finalizer example.com/block holds it")
    );
    assert!(refused(&pod(Some(past), &[]), PodNode::Ready).contains("its node n1 is Ready"));
    assert!(refused(&pod(Some(past), &[]), PodNode::Unknown).contains("bound to no node"));
    for node in [PodNode::Gone, PodNode::NotReady] {
        let p = plan(&v, &pod(Some(past), &[]), &facts(node)).unwrap();
        assert_eq!(
            p.write,
            Write::Delete {
                background: false,
                pin_version: true,
                force: true
            }
        );
        assert!(p.not_reversible.is_some());
    }
}

#[test]
fn scale_workload_only_raises_replicas_no_autoscaler_owns() {
    let v = validated(
        ActionKind::ScaleWorkload(ScaleWorkload { replicas: 3 }),
        TargetKind::Deployment,
    );
    let deployment = |replicas: i64| json!({ "metadata": { "name": "web", "resourceVersion": "7" }, "spec": { "replicas": replicas } });
    let p = plan(&v, &deployment(2), &Facts::default()).unwrap();
    assert_eq!(
        p.write,
        Write::Merge(json!({ "metadata": { "resourceVersion": "7" }, "spec": { "replicas": 3 } }))
    );
    assert_eq!(p.fields, ["/spec/replicas"]);
    assert_eq!(p.not_reversible, None);
    assert!(crate::undo::allowed(
        "ACTION_TYPE_SCALE_WORKLOAD",
        "/spec/replicas"
    ));
    assert!(!crate::undo::allowed(
        "ACTION_TYPE_SCALE_WORKLOAD",
        "/spec/template"
    ));
    let err = plan(&v, &deployment(3), &Facts::default()).unwrap_err();
    assert!(err.to_string().contains("never lowers them"), "{err}");
    let autoscaled = Facts {
        scaled_by: Some("HorizontalPodAutoscaler shop/web".into()),
        ..Facts::default()
    };
    let err = plan(&v, &deployment(2), &autoscaled).unwrap_err();
    assert!(
        err.to_string()
            .contains("HorizontalPodAutoscaler shop/web scales it"),
        "{err}"
    );
}

#[test]
fn resume_clears_suspend_on_a_suspended_cronjob_only() {
    let v = validated(
        ActionKind::ResumeCronJob(ResumeCronJob {}),
        TargetKind::CronJob,
    );
    let cron = |suspend: bool| json!({ "metadata": { "name": "nightly", "resourceVersion": "4" }, "spec": { "suspend": suspend } });
    let p = plan(&v, &cron(true), &Facts::default()).unwrap();
    assert_eq!(
        p.write,
        Write::Merge(
            json!({ "metadata": { "resourceVersion": "4" }, "spec": { "suspend": false } })
        )
    );
    assert_eq!(p.fields, ["/spec/suspend"]);
    assert!(crate::undo::allowed(
        "ACTION_TYPE_RESUME_CRON_JOB",
        "/spec/suspend"
    ));
    let err = plan(&v, &cron(false), &Facts::default()).unwrap_err();
    assert!(err.to_string().contains("it is not suspended"), "{err}");
}

fn template(image: &str, env: Option<&str>) -> Value {
    let mut container = json!({ "name": "app", "image": image });
    if let Some(value) = env {
        container["env"] = json!([{ "name": "TOKEN", "value": value }]);
    }
    json!({ "metadata": { "labels": { "app": "web" } }, "spec": { "containers": [container] } })
}

#[test]
fn rollout_undo_takes_the_previous_revisions_template_and_cannot_be_restored() {
    let v = validated(
        ActionKind::RolloutUndo(RolloutUndo {}),
        TargetKind::Deployment,
    );
    let revision = |n: u64| json!({ "deployment.kubernetes.io/revision": n.to_string() });
    // Revision 3 added an env var and a new image; revision 2 had neither.
    let deployment = json!({
        "metadata": { "name": "web", "resourceVersion": "9", "annotations": revision(3) },
        "spec": { "template": template("shop/web:3", Some("s3cr3t")) },
        "status": { "conditions": [{ "type": "Progressing", "status": "False",
                                     "reason": "ProgressDeadlineExceeded" }] },
    });
    let mut previous = template("shop/web:2", None);
    previous["metadata"]["labels"]["pod-template-hash"] = json!("abc123");
    let facts = Facts {
        previous_revision: Some(json!({
            "metadata": { "name": "web-abc123", "annotations": revision(2) },
            "spec": { "template": previous },
        })),
        ..Facts::default()
    };
    let p = plan(&v, &deployment, &facts).unwrap();
    // The containers list is replaced whole: the env var goes, the image
    // is revision 2's, and the ReplicaSet's hash label is not copied.
    assert_eq!(
        p.write,
        Write::Merge(json!({
            "metadata": { "resourceVersion": "9" },
            "spec": { "template": { "spec": { "containers": [{ "name": "app", "image": "shop/web:2" }] } } },
        }))
    );
    // The diff shows images only; nothing is kept to restore.
    assert_eq!(p.fields, ["/spec/template/spec/containers/0/image"]);
    assert!(p.not_reversible.is_some());

    // No earlier revision, or already on it: refused, with the reason.
    let err = plan(&v, &deployment, &Facts::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("it has no earlier revision to roll back to (it is at revision 3"),
        "{err}"
    );
    let same = Facts {
        previous_revision: Some(json!({
            "metadata": { "annotations": revision(2) },
            "spec": { "template": template("shop/web:3", Some("s3cr3t")) },
        })),
        ..Facts::default()
    };
    let err = plan(&v, &deployment, &same).unwrap_err();
    assert!(err.to_string().contains("already is revision 2's"), "{err}");
    // A rollout that is not stuck (a newer one, a fix, in progress).
    let mut moving = deployment.clone();
    moving["status"] = json!({ "conditions": [{ "type": "Progressing", "status": "True",
                                                "reason": "ReplicaSetUpdated" }] });
    let err = plan(&v, &moving, &facts).unwrap_err();
    assert!(err.to_string().contains("is not stuck"), "{err}");
}

#[test]
fn a_merge_patch_removes_what_the_target_lacks_and_keeps_what_is_equal() {
    let from = json!({ "a": 1, "b": { "c": 2, "d": 3 }, "e": [1, 2], "f": "x" });
    let to = json!({ "a": 1, "b": { "c": 2, "g": 4 }, "e": [1] });
    let patch = plan::merge_patch(&from, &to);
    assert_eq!(
        patch,
        json!({ "b": { "d": null, "g": 4 }, "e": [1], "f": null })
    );
}

/// A Job as the API server returns it: its generated selector and labels,
/// `condition` True.
fn job(condition: &str, owner: Option<&str>, labels: Value) -> Value {
    let uid_labels = json!({ "controller-uid": "j1", "batch.kubernetes.io/controller-uid": "j1",
                             "job-name": "web", "batch.kubernetes.io/job-name": "web" });
    let mut job = json!({
        "metadata": { "name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": "7",
                      "labels": labels },
        "spec": {
            "backoffLimit": 2,
            "selector": { "matchLabels": { "batch.kubernetes.io/controller-uid": "j1" } },
            "template": { "metadata": { "labels": uid_labels },
                          "spec": { "restartPolicy": "Never", "containers": [{
                              "name": "migrate", "image": "registry.example/migrate:3",
                              "env": [{ "name": "DB_PASSWORD", "value": "hunter2" }] }] } },
        },
        "status": { "conditions": [{ "type": condition, "status": "True", "reason": "BackoffLimitExceeded" }] },
    });
    if let Some(kind) = owner {
        job["metadata"]["ownerReferences"] = json!([{ "apiVersion": "batch/v1", "kind": kind,
            "name": "nightly", "uid": "c1", "controller": true }]);
    }
    job
}

#[test]
fn retrigger_creates_a_retry_of_a_failed_job_with_its_spec_and_no_undo() {
    let v = validated(ActionKind::RetriggerJob(RetriggerJob {}), TargetKind::Job);
    let failed = job(
        "Failed",
        Some("CronJob"),
        json!({ "team": "data", "job-name": "web" }),
    );
    let p = plan(&v, &failed, &Facts::default()).unwrap();
    let Write::Create {
        object,
        shown,
        mark,
    } = &p.write
    else {
        panic!("{:?}", p.write);
    };
    assert_eq!(object["metadata"]["name"], "web-retry");
    assert_eq!(object["metadata"]["namespace"], "shop");
    // Its own labels, without the generated ones, and the retry marker.
    assert_eq!(
        object["metadata"]["labels"],
        json!({ "team": "data", RETRIGGER_OF: "web" })
    );
    assert_eq!(object["metadata"]["annotations"][RETRIGGERED_BY], "a1");
    // Standalone: no CronJob counts it among its runs or prunes it.
    assert!(
        object.pointer("/metadata/ownerReferences").is_none(),
        "{object}"
    );
    // The failed Job is marked first, at the version read.
    assert_eq!(
        mark,
        &json!({ "metadata": { "resourceVersion": "7",
            "labels": { RETRIED_AS: "web-retry" }, "annotations": { RETRIGGERED_BY: "a1" } } })
    );
    // The Job controller generates a new selector and pod labels.
    assert!(object.pointer("/spec/selector").is_none(), "{object}");
    assert_eq!(
        object.pointer("/spec/template/metadata/labels"),
        Some(&json!({}))
    );
    assert_eq!(object["spec"]["backoffLimit"], 2);
    assert_eq!(
        object["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/migrate:3"
    );
    // The diff names the retry and its images, never the spec's values.
    assert_eq!(
        shown,
        &[
            "create Job shop/web-retry: Job shop/web run again with its spec",
            "  container migrate: image registry.example/migrate:3",
        ]
    );
    assert!(!shown.concat().contains("hunter2"));
    assert!(p.fields.is_empty());
    assert!(
        p.not_reversible
            .is_some_and(|why| why.contains("a Job's run cannot be taken back"))
    );
}

#[test]
fn retrigger_refuses_jobs_that_did_not_fail_retries_and_jobs_an_operator_runs() {
    let v = validated(ActionKind::RetriggerJob(RetriggerJob {}), TargetKind::Job);
    let refusal = |job: &Value| plan(&v, job, &Facts::default()).unwrap_err().to_string();
    assert!(
        refusal(&job("Complete", None, json!({}))).contains("it has not failed"),
        "{}",
        refusal(&job("Complete", None, json!({})))
    );
    let retry = job("Failed", None, json!({ RETRIGGER_OF: "nightly" }));
    assert!(
        refusal(&retry).contains("it is itself Nanny's retry of Job nightly"),
        "{}",
        refusal(&retry)
    );
    let operated = job("Failed", Some("Workflow"), json!({}));
    assert!(
        refusal(&operated).contains("its controller, a Workflow, decides whether it runs again"),
        "{}",
        refusal(&operated)
    );
    let mut manual = job("Failed", None, json!({}));
    manual["spec"]["manualSelector"] = json!(true);
    assert!(
        refusal(&manual).contains("manualSelector"),
        "{}",
        refusal(&manual)
    );
    let mut external = job("Failed", None, json!({}));
    external["spec"]["managedBy"] = json!("kueue.x-k8s.io/multikueue");
    assert!(
        refusal(&external).contains("kueue.x-k8s.io/multikueue runs it"),
        "{}",
        refusal(&external)
    );
    // Run again once: another action's mark refuses, this action's own (a
    // resumed run) does not.
    let mut marked = job("Failed", None, json!({ RETRIED_AS: "web-retry" }));
    marked["metadata"]["annotations"] = json!({ RETRIGGERED_BY: "other" });
    assert!(
        refusal(&marked).contains("it was run again once already, as Job web-retry"),
        "{}",
        refusal(&marked)
    );
    marked["metadata"]["annotations"] = json!({ RETRIGGERED_BY: "a1" });
    assert!(plan(&v, &marked, &Facts::default()).is_ok());
    // A CronJob that forbids concurrent runs while one is active.
    let cron = |policy: &str, active: bool| {
        json!({ "kind": "CronJob", "metadata": { "name": "nightly" },
                "spec": { "concurrencyPolicy": policy },
                "status": { "active": if active { json!([{ "name": "nightly-2" }]) } else { json!([]) } } })
    };
    let of_cron = job("Failed", Some("CronJob"), json!({}));
    let facts = |policy: &str, active: bool| Facts {
        owners: vec![cron(policy, active)],
        ..Facts::default()
    };
    let err = plan(&v, &of_cron, &facts("Forbid", true)).unwrap_err();
    assert!(
        err.to_string()
            .contains("its CronJob nightly runs a Job now and its concurrencyPolicy is Forbid"),
        "{err}"
    );
    assert!(plan(&v, &of_cron, &facts("Forbid", false)).is_ok());
    assert!(plan(&v, &of_cron, &facts("Allow", true)).is_ok());
}

#[test]
fn a_retry_name_fits_a_job_name() {
    assert_eq!(retry_name("nightly"), "nightly-retry");
    // Too long: cut, with a hash of the whole, so long names never collide.
    let a = format!("{}-28012345", "j".repeat(50));
    let b = format!("{}-28012346", "j".repeat(50));
    assert!(retry_name(&a).len() <= 63 && retry_name(&a).ends_with("-retry"));
    assert_ne!(retry_name(&a), retry_name(&b));
    // Never a name ending in a dot or a hyphen before the hash.
    let dotted = format!("{}.{}", "j".repeat(47), "k".repeat(20));
    assert!(
        !retry_name(&dotted).contains(".-"),
        "{}",
        retry_name(&dotted)
    );
}
