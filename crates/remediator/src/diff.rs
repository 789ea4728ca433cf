//! The exact change an action makes, as a unified diff of YAML: only the
//! fields the action changes, never the object. A Pod or Deployment carries
//! env values, args and annotations that may be secrets; none of them is a
//! field an action changes, so none of them can appear here. Whatever is
//! shown still passes through [`nanny_common::redact`].

use serde_json::{Map, Value};

use crate::store::Summary;

/// `object` reduced to its identity (kind, namespace, name) and the values
/// at `fields` (JSON pointers): what a diff may show.
pub fn project(object: &Value, fields: &[String]) -> Value {
    let mut out = Value::Object(Map::new());
    for pointer in ["/kind", "/metadata/namespace", "/metadata/name"]
        .into_iter()
        .chain(fields.iter().map(String::as_str))
    {
        if let Some(value) = object.pointer(pointer) {
            set(&mut out, pointer, value.clone());
        }
    }
    out
}

/// The unescaped segments of a JSON pointer (`~1` is `/`, `~0` is `~`).
pub fn segments(pointer: &str) -> impl Iterator<Item = String> + '_ {
    pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
}

/// Sets `value` at `pointer` in `target`, creating objects on the way
/// (array indices become object keys: for a projection or a merge patch).
pub fn set(target: &mut Value, pointer: &str, value: Value) {
    let mut at = target;
    let mut parts = segments(pointer).peekable();
    while let Some(part) = parts.next() {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        let Value::Object(map) = at else { return };
        if parts.peek().is_none() {
            map.insert(part, value);
            return;
        }
        at = map.entry(part).or_insert_with(|| Value::Object(Map::new()));
    }
}

fn yaml(object: &Value) -> String {
    // serde_yaml serialises any JSON value.
    serde_yaml::to_string(object).unwrap_or_default()
}

fn header(object: &Value) -> String {
    let kind = str_at(object, "/kind");
    let name = str_at(object, "/metadata/name");
    match object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        Some(ns) => format!("{kind}/{ns}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

/// The unified diff of `fields` from `before` to `after`.
pub fn fields(before: &Value, after: &Value, fields: &[String]) -> String {
    let old = project(before, fields);
    let new = project(after, fields);
    let header = header(&old);
    let text = similar::TextDiff::from_lines(&yaml(&old), &yaml(&new))
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{header}"), &header)
        .to_string();
    nanny_common::redact::text(&text).into_owned()
}

/// What a delete removes, as a summary: kind, name, uid, owner and state.
pub fn deleted(object: &Value, summary: &Summary) -> String {
    let mut text = format!(
        "delete {} (uid {})\n",
        header(object),
        str_at(object, "/metadata/uid")
    );
    if let Some(owner) = &summary.owner {
        text.push_str(&format!(
            "  owned by {} {} (uid {})\n",
            owner.kind, owner.name, owner.uid
        ));
    }
    if !summary.state.is_empty() {
        text.push_str(&format!("  state: {}\n", summary.state));
    }
    nanny_common::redact::text(&text).into_owned()
}

/// The string at `pointer`, or "".
pub fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::TargetRecord;

    fn pod() -> Value {
        json!({
            "kind": "Pod",
            "metadata": {
                "name": "web-1", "namespace": "shop", "uid": "u1", "resourceVersion": "3",
                "annotations": { "kubectl.kubernetes.io/last-applied-configuration": "{\"password\":\"hunter2\"}" },
            },
            "spec": { "containers": [{
                "name": "web",
                "args": ["--db-url=postgres://app:hunter2@db/shop"],
                "env": [{ "name": "STRIPE_KEY", "value": "sk_live_0123456789abcdef" }],
                "resources": { "limits": { "memory": "64Mi" } },
            }] },
        })
    }

    #[test]
    fn a_diff_shows_only_the_changed_fields() {
        let before = pod();
        let mut after = pod();
        after["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("128Mi");
        after["metadata"]["resourceVersion"] = json!("4");
        let diff = fields(
            &before,
            &after,
            &["/spec/containers/0/resources/limits/memory".to_owned()],
        );
        assert!(diff.contains("-          memory: 64Mi"), "{diff}");
        assert!(diff.contains("+          memory: 128Mi"), "{diff}");
        for leak in [
            "hunter2",
            "sk_live",
            "STRIPE",
            "args",
            "last-applied",
            "resourceVersion",
        ] {
            assert!(!diff.contains(leak), "{leak} in {diff}");
        }
    }

    #[test]
    fn a_delete_is_summarised_not_shown() {
        let summary = Summary {
            owner: Some(TargetRecord {
                kind: "ReplicaSet".into(),
                namespace: "shop".into(),
                name: "web-abc".into(),
                uid: "rs1".into(),
            }),
            state: "Running".into(),
        };
        let text = deleted(&pod(), &summary);
        assert_eq!(
            text,
            "delete Pod/shop/web-1 (uid u1)\n  owned by ReplicaSet web-abc (uid rs1)\n  state: Running\n"
        );
    }

    #[test]
    fn a_projection_keeps_absent_fields_absent() {
        let projected = project(&pod(), &["/spec/unschedulable".to_owned()]);
        assert_eq!(
            projected,
            json!({ "kind": "Pod", "metadata": { "name": "web-1", "namespace": "shop" } })
        );
    }
}
