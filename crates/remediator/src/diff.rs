//! The exact change an action makes, as a unified diff of the object's YAML.

use serde_json::Value;

/// Fields the API server changes on every write; they would only add noise.
const VOLATILE: [&str; 3] = ["managedFields", "resourceVersion", "generation"];

/// The object without its volatile metadata.
pub fn clean(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in VOLATILE {
            meta.remove(key);
        }
    }
    object
}

fn yaml(object: &Value) -> String {
    // serde_yaml serialises any JSON value.
    serde_yaml::to_string(&clean(object)).unwrap_or_default()
}

/// The unified diff from `before` to `after` (`None`: deleted).
pub fn objects(before: &Value, after: Option<&Value>) -> String {
    let old = yaml(before);
    let new = after.map(yaml).unwrap_or_default();
    let name = |v: &Value| {
        let meta = &v["metadata"];
        match meta["namespace"].as_str() {
            Some(ns) => format!(
                "{}/{ns}/{}",
                v["kind"].as_str().unwrap_or(""),
                meta["name"].as_str().unwrap_or("")
            ),
            None => format!(
                "{}/{}",
                v["kind"].as_str().unwrap_or(""),
                meta["name"].as_str().unwrap_or("")
            ),
        }
    };
    let header = name(before);
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("a/{header}"),
            if after.is_some() {
                &header
            } else {
                "/dev/null"
            },
        )
        .to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn diff_shows_only_the_change() {
        let before = json!({ "kind": "Node", "metadata": { "name": "n1", "resourceVersion": "1" }, "spec": { "podCIDR": "10.0.0.0/24" } });
        let after = json!({ "kind": "Node", "metadata": { "name": "n1", "resourceVersion": "2" }, "spec": { "podCIDR": "10.0.0.0/24", "unschedulable": true } });
        let diff = objects(&before, Some(&after));
        assert!(diff.contains("+  unschedulable: true"), "{diff}");
        assert!(!diff.contains("resourceVersion"), "{diff}");
        assert_eq!(
            diff.lines()
                .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
                .count(),
            1,
            "{diff}"
        );
    }

    #[test]
    fn a_delete_removes_every_line() {
        let before = json!({ "kind": "Pod", "metadata": { "name": "p", "namespace": "shop" } });
        let diff = objects(&before, None);
        assert!(diff.contains("+++ /dev/null"), "{diff}");
        assert!(diff.contains("-kind: Pod"), "{diff}");
    }
}
