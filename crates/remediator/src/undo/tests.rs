use serde_json::json;

use super::*;
use crate::store::{Phase, Summary, TargetRecord};

fn record(action_type: &str, changes: Vec<FieldChange>) -> Record {
    Record {
        fingerprint: "f".into(),
        recommendation_id: "rec-1".into(),
        action_type: action_type.into(),
        target: TargetRecord {
            kind: "Deployment".into(),
            namespace: "shop".into(),
            name: "web".into(),
            uid: "u1".into(),
        },
        summary: Summary::default(),
        container: None,
        changes,
        not_reversible: None,
        phase: Phase::Done,
        instance: String::new(),
        claimed_at: 0,
    }
}

fn change(pointer: &str, before: Value, after: Value) -> FieldChange {
    FieldChange {
        pointer: pointer.into(),
        before,
        after,
    }
}

#[test]
fn each_action_type_restores_only_its_own_fields() {
    let scale = record(
        "ACTION_TYPE_SCALE_HPA",
        vec![change("/spec/maxReplicas", json!(5), json!(10))],
    );
    assert_eq!(
        patch("a", &scale).unwrap(),
        (false, json!({ "spec": { "maxReplicas": 5 } }))
    );
    let cordon = record(
        "ACTION_TYPE_CORDON_NODE",
        vec![change("/spec/unschedulable", Value::Null, json!(true))],
    );
    assert_eq!(
        patch("a", &cordon).unwrap(),
        (false, json!({ "spec": { "unschedulable": null } }))
    );
    let restart = record(
        "ACTION_TYPE_ROLLOUT_RESTART",
        vec![change(
            "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt",
            Value::Null,
            json!("2026-12-02T10:00:00Z"),
        )],
    );
    assert_eq!(
        patch("a", &restart).unwrap(),
        (
            false,
            json!({ "spec": { "template": { "metadata": { "annotations": { "kubectl.kubernetes.io/restartedAt": null } } } } })
        )
    );
    let mut resources = record(
        "ACTION_TYPE_PATCH_RESOURCES",
        vec![change(
            "/spec/template/spec/containers/1/resources/limits/memory",
            json!("64Mi"),
            json!("128Mi"),
        )],
    );
    resources.container = Some("web".into());
    assert_eq!(
        patch("a", &resources).unwrap(),
        (
            true,
            json!({ "spec": { "template": { "spec": { "containers": [
                { "name": "web", "resources": { "limits": { "memory": "64Mi" } } }
            ] } } } })
        )
    );
}

#[test]
fn a_record_naming_any_other_field_is_refused() {
    for (action, pointer, value) in [
        (
            "ACTION_TYPE_ROLLOUT_RESTART",
            "/spec/template/spec/containers/0/image",
            json!("evil:latest"),
        ),
        (
            "ACTION_TYPE_PATCH_RESOURCES",
            "/spec/template/spec/containers/0/securityContext/privileged",
            json!(true),
        ),
        (
            "ACTION_TYPE_SCALE_HPA",
            "/spec/template/spec/serviceAccountName",
            json!("admin"),
        ),
        ("ACTION_TYPE_CORDON_NODE", "/spec/hostPID", json!(true)),
        (
            "ACTION_TYPE_RESTART_POD",
            "/spec/unschedulable",
            json!(true),
        ),
        ("ACTION_TYPE_BOGUS", "/spec/maxReplicas", json!(1)),
    ] {
        let mut forged = record(action, vec![change(pointer, value, Value::Null)]);
        forged.container = Some("web".into());
        let error = patch("forged", &forged).unwrap_err();
        assert!(
            matches!(error, Error::NotReversible { .. }),
            "{action} {pointer}: {error}"
        );
    }
}

#[test]
fn nothing_to_restore_and_irreversible_actions_are_refused() {
    let empty = record("ACTION_TYPE_SCALE_HPA", vec![]);
    assert!(matches!(
        patch("a", &empty),
        Err(Error::NotReversible { .. })
    ));
    let mut expand = record(
        "ACTION_TYPE_EXPAND_PVC",
        vec![change(
            "/spec/resources/requests/storage",
            json!("1Gi"),
            json!("2Gi"),
        )],
    );
    expand.not_reversible = Some("volumes are never shrunk".into());
    let error = patch("a", &expand).unwrap_err();
    assert!(error.to_string().contains("never shrunk"), "{error}");
    let mut no_container = record(
        "ACTION_TYPE_PATCH_RESOURCES",
        vec![change(
            "/spec/template/spec/containers/0/resources/limits/cpu",
            json!("1"),
            json!("2"),
        )],
    );
    no_container.container = None;
    assert!(patch("a", &no_container).is_err());
}

#[test]
fn a_later_change_is_named_and_kept() {
    let scale = record(
        "ACTION_TYPE_SCALE_HPA",
        vec![change("/spec/maxReplicas", json!(5), json!(10))],
    );
    let untouched = json!({ "spec": { "maxReplicas": 10 } });
    assert!(unchanged_since("a", &scale, &untouched).is_ok());
    let edited = json!({
        "metadata": { "managedFields": [
            { "manager": "nanny-remediator", "operation": "Update", "time": "2026-12-02T10:00:00Z",
              "fieldsV1": { "f:spec": { "f:minReplicas": {} } } },
            { "manager": "kubectl-edit", "operation": "Update", "time": "2026-12-02T11:00:00Z",
              "fieldsV1": { "f:spec": { "f:maxReplicas": {} } } },
            { "manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
              "time": "2026-12-02T12:00:00Z", "fieldsV1": { "f:status": {} } },
        ] },
        "spec": { "maxReplicas": 12 },
    });
    let error = unchanged_since("a", &scale, &edited).unwrap_err();
    assert_eq!(
        error.to_string(),
        "refused: action a cannot be rolled back: /spec/maxReplicas changed since the action by kubectl-edit (it is 12, the action left 10); nothing was rolled back"
    );
}

#[test]
fn a_removed_field_has_no_owner_to_name() {
    let cordon = record(
        "ACTION_TYPE_CORDON_NODE",
        vec![change("/spec/unschedulable", Value::Null, json!(true))],
    );
    let uncordoned = json!({
        "metadata": { "managedFields": [
            { "manager": "kubectl-edit", "operation": "Update", "time": "2026-12-02T11:00:00Z",
              "fieldsV1": { "f:metadata": {} } },
            { "manager": "kubelet", "operation": "Update", "subresource": "status",
              "time": "2026-12-02T12:00:00Z", "fieldsV1": { "f:status": {} } },
        ] },
        "spec": {},
    });
    let error = unchanged_since("a", &cordon, &uncordoned).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("changed since the action by another writer (a removed field has no owner"),
        "{error}"
    );
}

#[test]
fn container_fields_follow_the_container_by_name() {
    let mut resources = record(
        "ACTION_TYPE_PATCH_RESOURCES",
        vec![change(
            "/spec/template/spec/containers/0/resources/limits/memory",
            json!("64Mi"),
            json!("128Mi"),
        )],
    );
    resources.container = Some("web".into());
    // A sidecar was added in front of it since: still the same container.
    let moved = json!({ "spec": { "template": { "spec": { "containers": [
        { "name": "sidecar", "resources": { "limits": { "memory": "32Mi" } } },
        { "name": "web", "resources": { "limits": { "memory": "128Mi" } } },
    ] } } } });
    assert!(unchanged_since("a", &resources, &moved).is_ok());
    let back = json!({ "spec": { "template": { "spec": { "containers": [
        { "name": "sidecar", "resources": { "limits": { "memory": "32Mi" } } },
        { "name": "web", "resources": { "limits": { "memory": "64Mi" } } },
    ] } } } });
    assert!(matches!(restored(&resources, &back), Check::Passed(_)));
    assert!(matches!(restored(&resources, &moved), Check::Pending(_)));
}

#[test]
fn absent_compares_as_null() {
    let cordon = record(
        "ACTION_TYPE_CORDON_NODE",
        vec![change("/spec/unschedulable", Value::Null, json!(true))],
    );
    assert!(matches!(
        restored(&cordon, &json!({ "spec": {} })),
        Check::Passed(_)
    ));
    assert!(matches!(
        restored(&cordon, &json!({ "spec": { "unschedulable": true } })),
        Check::Pending(_)
    ));
}
