//! Rollbacks restore only what Nanny changed.
//!
//! A record holds the before and after values of the fields its action
//! changed, nothing else. The undo is derived here from the action type and
//! those values; it is never a stored patch. Each field must be one the
//! action type may change ([`allowed`]), so a record that names any other
//! field (an image, a securityContext, a ServiceAccount) is refused even if
//! it passed its MAC. Before restoring, the live values must still be the
//! ones the action left: a later change by anyone is never overwritten.

use serde_json::{Value, json};

use crate::{
    actions::RESTARTED_AT,
    diff,
    error::Error,
    store::{FieldChange, Record},
    verify::Check,
};

/// The annotation RolloutRestart writes, as a JSON pointer.
fn restarted_at_pointer() -> String {
    format!(
        "/spec/template/metadata/annotations/{}",
        RESTARTED_AT.replace('/', "~1")
    )
}

/// Whether action type `action` (e.g. `ACTION_TYPE_SCALE_HPA`) may change
/// the field at `pointer`.
pub fn allowed(action: &str, pointer: &str) -> bool {
    match action {
        "ACTION_TYPE_ROLLOUT_RESTART" => pointer == restarted_at_pointer(),
        "ACTION_TYPE_SCALE_HPA" => matches!(pointer, "/spec/maxReplicas" | "/spec/minReplicas"),
        "ACTION_TYPE_CORDON_NODE" | "ACTION_TYPE_UNCORDON_NODE" | "ACTION_TYPE_DRAIN_NODE" => {
            pointer == "/spec/unschedulable" || pointer == crate::actions::CORDONED_BY_POINTER
        }
        "ACTION_TYPE_EXPAND_PVC" => pointer == "/spec/resources/requests/storage",
        "ACTION_TYPE_SCALE_WORKLOAD" => pointer == "/spec/replicas",
        "ACTION_TYPE_RESUME_CRON_JOB" => pointer == "/spec/suspend",
        "ACTION_TYPE_PATCH_RESOURCES" => container_resource(pointer).is_some(),
        _ => false,
    }
}

/// `(index, section, resource)` of a container resource pointer
/// `/spec/template/spec/containers/N/resources/{requests,limits}/{cpu,memory}`.
fn container_resource(pointer: &str) -> Option<(usize, &str, &str)> {
    let rest = pointer.strip_prefix("/spec/template/spec/containers/")?;
    let mut parts = rest.split('/');
    let index = parts.next()?.parse().ok()?;
    let (Some("resources"), Some(section), Some(resource), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (matches!(section, "requests" | "limits") && matches!(resource, "cpu" | "memory"))
        .then_some((index, section, resource))
}

/// The changes of `fields` from `before` to `after` (values as the API
/// server stored them).
pub fn changes(fields: &[String], before: &Value, after: &Value) -> Vec<FieldChange> {
    fields
        .iter()
        .map(|pointer| FieldChange {
            pointer: pointer.clone(),
            before: before.pointer(pointer).cloned().unwrap_or(Value::Null),
            after: after.pointer(pointer).cloned().unwrap_or(Value::Null),
        })
        .collect()
}

/// A patch that restores a record's before values: `(strategic, patch)`.
///
/// # Errors
/// [`Error::NotReversible`] when the record has nothing to restore or names
/// a field its action type never changes.
pub fn patch(action_id: &str, record: &Record) -> Result<(bool, Value), Error> {
    let refuse = |reason: String| Error::NotReversible {
        action_id: action_id.to_owned(),
        reason,
    };
    if let Some(reason) = &record.not_reversible {
        return Err(refuse(reason.clone()));
    }
    if record.changes.is_empty() {
        return Err(refuse("the action changed no field to restore".to_owned()));
    }
    if let Some(change) = record
        .changes
        .iter()
        .find(|c| !allowed(&record.action_type, &c.pointer))
    {
        return Err(refuse(format!(
            "its record names {}, which {} never changes; refusing the record",
            change.pointer, record.action_type
        )));
    }
    if record.action_type == "ACTION_TYPE_PATCH_RESOURCES" {
        let container = record
            .container
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| refuse("its record names no container".to_owned()))?;
        let mut resources = json!({});
        for change in &record.changes {
            if let Some((_, section, resource)) = container_resource(&change.pointer) {
                resources[section][resource] = change.before.clone();
            }
        }
        // Strategic: containers merge by name, so only this container's
        // resources change.
        let patch = json!({ "spec": { "template": { "spec": { "containers": [
            { "name": container, "resources": resources }
        ] } } } });
        return Ok((true, patch));
    }
    let mut patch = json!({});
    for change in &record.changes {
        diff::set(&mut patch, &change.pointer, change.before.clone());
    }
    Ok((false, patch))
}

/// Checks the live object still holds what the action left, so restoring
/// overwrites no later change.
///
/// # Errors
/// [`Error::ChangedSince`] naming the field and who changed it last.
pub fn unchanged_since(action_id: &str, record: &Record, live: &Value) -> Result<(), Error> {
    let Some(change) = record
        .changes
        .iter()
        .find(|c| value_at(live, record, &c.pointer) != c.after)
    else {
        return Ok(());
    };
    Err(Error::ChangedSince {
        action_id: action_id.to_owned(),
        field: change.pointer.clone(),
        expected: change.after.to_string(),
        found: value_at(live, record, &change.pointer).to_string(),
        by: last_writer(live, &change.pointer),
    })
}

/// The value at `pointer`, following a PatchResources container by name (a
/// container added before it moves its index).
fn value_at(object: &Value, record: &Record, pointer: &str) -> Value {
    if let (Some((index, section, resource)), Some(name)) =
        (container_resource(pointer), record.container.as_deref())
    {
        let containers = object
            .pointer("/spec/template/spec/containers")
            .and_then(Value::as_array);
        let by_name = containers.and_then(|cs| cs.iter().find(|c| c["name"] == name));
        let container = by_name.or_else(|| containers.and_then(|cs| cs.get(index)));
        return container
            .and_then(|c| c.pointer(&format!("/resources/{section}/{resource}")))
            .cloned()
            .unwrap_or(Value::Null);
    }
    object.pointer(pointer).cloned().unwrap_or(Value::Null)
}

/// Who changed `pointer` last: the manager that owns the field now, from
/// managedFields. A removed field has no owner, and its remover's entry may
/// be gone with it: then that is what is said.
fn last_writer(object: &Value, pointer: &str) -> String {
    let entries = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let owns = |entry: &&Value| {
        diff::segments(pointer)
            .try_fold(&entry["fieldsV1"], |at, part| at.get(format!("f:{part}")))
            .is_some()
    };
    entries
        .iter()
        .filter(owns)
        .max_by(|a, b| {
            a["time"]
                .as_str()
                .unwrap_or_default()
                .cmp(b["time"].as_str().unwrap_or_default())
        })
        .and_then(|e| e["manager"].as_str())
        .map_or_else(
            || "another writer (a removed field has no owner in managedFields)".to_owned(),
            str::to_owned,
        )
}

/// Whether `object` holds a record's before values again.
pub fn restored(record: &Record, object: &Value) -> Check {
    let wrong: Vec<String> = record
        .changes
        .iter()
        .filter_map(|c| {
            let found = value_at(object, record, &c.pointer);
            (found != c.before).then(|| format!("{} is {found} instead of {}", c.pointer, c.before))
        })
        .collect();
    if wrong.is_empty() {
        Check::Passed("the values before the action are restored".to_owned())
    } else {
        Check::Pending(wrong.join("; "))
    }
}

#[cfg(test)]
mod tests;
