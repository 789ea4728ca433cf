//! One eval case: a cluster picture (a `nanny.v1.ClusterSnapshot` in proto3
//! JSON, with the issues the collector detected), the policy in force and
//! the expected outcome. Every problem with a case file is an error naming
//! the file and the field; nothing is skipped.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use k8s_openapi::jiff;
use nanny_crd::HealingPolicySpec;
use nanny_proto::{
    json::CLUSTER_SNAPSHOT,
    v1::{ClusterSnapshot, ObjectRef},
};
use serde::Deserialize;
use serde_json::Value;

/// The answers a case may expect: the action types, or `None` (do nothing).
pub const ACTIONS: [&str; 12] = [
    "None",
    "RestartPod",
    "RolloutRestart",
    "ScaleHpa",
    "CordonNode",
    "UncordonNode",
    "DrainNode",
    "ExpandPvc",
    "PatchResources",
    "DeleteJob",
    "DeleteResource",
    "ReportOnly",
];

/// The gate's decision classes a case may expect (`None`: no action).
pub const DECISIONS: [&str; 5] = ["None", "Approved", "NeedsApproval", "DryRunOnly", "Denied"];

/// A case file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CaseFile {
    name: String,
    category: String,
    rule_covered: bool,
    description: String,
    /// A partial HealingPolicy spec merged over the eval's default policy.
    #[serde(default)]
    policy: Value,
    snapshot: Value,
    expected: Expected,
}

/// What a case expects.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expected {
    /// An action type name, or `None`.
    pub action: String,
    /// The object acted on; absent for `None`.
    #[serde(default)]
    pub target: Option<Target>,
    /// Other answers a person would accept.
    #[serde(default)]
    pub alternatives: Vec<Answer>,
    /// Words the answer's text should name (e.g. a missing ConfigMap key).
    #[serde(default)]
    pub mentions: Vec<String>,
    /// The gate's decision on the expected action under the case's policy.
    pub decision: String,
}

/// One acceptable answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub action: String,
    pub target: Target,
}

/// An object, by kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
    pub name: String,
}

impl Target {
    /// Whether `r` names this object.
    pub fn is(&self, r: &ObjectRef) -> bool {
        self.kind == r.kind && self.namespace == r.namespace && self.name == r.name
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A loaded, validated case.
#[derive(Debug, Clone)]
pub struct Case {
    pub path: PathBuf,
    pub name: String,
    pub category: String,
    pub rule_covered: bool,
    pub description: String,
    pub spec: HealingPolicySpec,
    /// The snapshot's JSON, its times as written.
    snapshot: Value,
    pub expected: Expected,
}

impl Case {
    /// The snapshot with every time moved by the same amount so that
    /// `takenAt` is `now`: "a Job completed two days ago" stays true
    /// whenever the eval runs.
    ///
    /// # Errors
    /// When a moved time is out of range.
    pub fn snapshot_at(&self, now: jiff::Timestamp, id: &str) -> anyhow::Result<ClusterSnapshot> {
        let taken: jiff::Timestamp = self.snapshot["takenAt"]
            .as_str()
            .unwrap_or_default()
            .parse()?;
        let shift = now.duration_since(taken);
        let mut value = self.snapshot.clone();
        shift_times(&mut value, shift)?;
        value["id"] = Value::String(id.to_owned());
        nanny_proto::json::from_json(&value.to_string(), CLUSTER_SNAPSHOT)
    }
}

/// Moves every RFC 3339 time in `value` by `shift`.
fn shift_times(value: &mut Value, shift: jiff::SignedDuration) -> anyhow::Result<()> {
    match value {
        Value::String(text) => {
            if let Ok(time) = text.parse::<jiff::Timestamp>() {
                *text = time.checked_add(shift)?.to_string();
            }
        }
        Value::Array(items) => {
            for item in items {
                shift_times(item, shift)?;
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                shift_times(item, shift)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `patch` merged over `base` (JSON merge patch: objects merge, anything
/// else replaces).
fn merged(base: &Value, patch: &Value) -> Value {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            let mut out = base.clone();
            for (key, value) in patch {
                let next = out
                    .get(key)
                    .map_or_else(|| value.clone(), |b| merged(b, value));
                out.insert(key.clone(), next);
            }
            Value::Object(out)
        }
        (_, Value::Null) => base.clone(),
        (_, patch) => patch.clone(),
    }
}

/// Every object `snapshot` carries, as refs.
fn objects(snapshot: &ClusterSnapshot) -> impl Iterator<Item = &ObjectRef> {
    let pods = snapshot.pods.iter().filter_map(|p| p.r#ref.as_ref());
    let nodes = snapshot.nodes.iter().filter_map(|n| n.r#ref.as_ref());
    let workloads = snapshot.workloads.iter().filter_map(|w| w.r#ref.as_ref());
    let jobs = snapshot.jobs.iter().filter_map(|j| j.r#ref.as_ref());
    let hpas = snapshot.hpas.iter().filter_map(|h| h.r#ref.as_ref());
    let pvcs = snapshot.pvcs.iter().filter_map(|p| p.r#ref.as_ref());
    pods.chain(nodes)
        .chain(workloads)
        .chain(jobs)
        .chain(hpas)
        .chain(pvcs)
}

/// Checks what serde cannot: known names, a target where an action is
/// expected and none where none is, and targets the snapshot holds.
fn validate(file: &CaseFile, stem: &str, snapshot: &ClusterSnapshot) -> anyhow::Result<()> {
    if file.name != stem {
        bail!("name: {:?} differs from the file name {stem:?}", file.name);
    }
    if file.category.trim().is_empty() {
        bail!("category: empty");
    }
    let expected = &file.expected;
    let answers = std::iter::once((
        "expected",
        expected.action.as_str(),
        expected.target.as_ref(),
    ))
    .chain(
        expected
            .alternatives
            .iter()
            .map(|a| ("expected.alternatives", a.action.as_str(), Some(&a.target))),
    );
    for (field, action, target) in answers {
        if !ACTIONS.contains(&action) {
            bail!("{field}.action: {action:?} is not one of {ACTIONS:?}");
        }
        match (action, target) {
            ("None", Some(_)) => bail!("{field}.target: given for action None"),
            ("None", None) => {}
            (_, None) => bail!("{field}.target: missing for action {action}"),
            (_, Some(target)) => {
                if !objects(snapshot).any(|r| target.is(r)) {
                    bail!("{field}.target: the snapshot has no {target}");
                }
            }
        }
    }
    if !DECISIONS.contains(&expected.decision.as_str()) {
        bail!(
            "expected.decision: {:?} is not one of {DECISIONS:?}",
            expected.decision
        );
    }
    if (expected.action == "None") != (expected.decision == "None") {
        bail!("expected.decision: None goes with action None, and only with it");
    }
    Ok(())
}

/// Loads one case file over the default `policy`.
///
/// # Errors
/// Naming the file and the field: malformed JSON, an unknown or missing
/// field, a snapshot that is not a `ClusterSnapshot`, a policy the CRD
/// would refuse, or an expectation that does not fit the snapshot.
pub fn load(path: &Path, policy: &Value) -> anyhow::Result<Case> {
    let at = || path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", at()))?;
    let file: CaseFile = serde_json::from_str(&text).with_context(at)?;
    if file.snapshot["takenAt"].as_str().is_none() {
        bail!(
            "{}: snapshot.takenAt: missing (the times are moved from it)",
            at()
        );
    }
    let snapshot: ClusterSnapshot =
        nanny_proto::json::from_json(&file.snapshot.to_string(), CLUSTER_SNAPSHOT)
            .with_context(|| format!("{}: snapshot", at()))?;
    let spec: HealingPolicySpec = serde_json::from_value(merged(policy, &file.policy))
        .with_context(|| format!("{}: policy", at()))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    validate(&file, &stem, &snapshot).with_context(at)?;
    Ok(Case {
        path: path.to_owned(),
        name: file.name,
        category: file.category,
        rule_covered: file.rule_covered,
        description: file.description,
        spec,
        snapshot: file.snapshot,
        expected: file.expected,
    })
}

/// Every `*.json` case in `dir`, by name, over the default policy file.
///
/// # Errors
/// The first case (or policy file) that does not load, by path and field;
/// an empty directory.
pub fn load_all(dir: &Path, policy_file: &Path) -> anyhow::Result<Vec<Case>> {
    let text = std::fs::read_to_string(policy_file)
        .with_context(|| format!("reading {}", policy_file.display()))?;
    let policy: Value =
        serde_json::from_str(&text).with_context(|| policy_file.display().to_string())?;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("{}: no case files (*.json)", dir.display());
    }
    paths.iter().map(|p| load(p, &policy)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, case: &Value) -> PathBuf {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(case).unwrap()).unwrap();
        path
    }

    fn case() -> Value {
        serde_json::json!({
            "name": "one",
            "category": "crash-loop",
            "ruleCovered": true,
            "description": "d",
            "snapshot": {
                "id": "one", "takenAt": "2026-11-30T12:00:00Z",
                "pods": [{ "ref": { "kind": "Pod", "namespace": "shop", "name": "web-1", "uid": "u1" },
                           "createdAt": "2026-11-29T12:00:00Z" }],
            },
            "expected": {
                "action": "RestartPod",
                "target": { "kind": "Pod", "namespace": "shop", "name": "web-1" },
                "decision": "Approved",
            },
        })
    }

    fn policy() -> Value {
        serde_json::json!({ "mode": "Auto" })
    }

    /// A fresh directory of this test's own.
    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nanny-eval-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_case_loads_and_its_times_move_to_now() {
        let dir = scratch("loads");
        let path = write(&dir, "one", &case());
        let loaded = load(&path, &policy()).unwrap();
        assert_eq!(loaded.expected.action, "RestartPod");
        let now: jiff::Timestamp = "2026-12-03T12:00:00Z".parse().unwrap();
        let snapshot = loaded.snapshot_at(now, "rules-one").unwrap();
        assert_eq!(snapshot.id, "rules-one");
        assert_eq!(snapshot.taken_at.unwrap().seconds, now.as_second());
        // A day before takenAt stays a day before now.
        assert_eq!(
            snapshot.pods[0].created_at.unwrap().seconds,
            now.as_second() - 86_400
        );
    }

    #[test]
    fn malformed_cases_fail_naming_the_file_and_the_field() {
        let dir = scratch("malformed");
        let error = |name: &str, case: Value| {
            let path = write(&dir, name, &case);
            format!("{:#}", load(&path, &policy()).unwrap_err())
        };
        let mut c = case();
        c["expected"].as_object_mut().unwrap().remove("decision");
        let e = error("one", c);
        assert!(e.contains("one.json") && e.contains("decision"), "{e}");
        let mut c = case();
        c["snapshot"]["podz"] = serde_json::json!([]);
        let e = error("one", c);
        assert!(e.contains("snapshot") && e.contains("podz"), "{e}");
        let mut c = case();
        c["expected"]["target"]["name"] = "web-2".into();
        let e = error("one", c);
        assert!(e.contains("expected.target") && e.contains("web-2"), "{e}");
        let mut c = case();
        c["expected"]["action"] = "Reboot".into();
        let e = error("one", c);
        assert!(e.contains("expected.action") && e.contains("Reboot"), "{e}");
        let e = error("two", case());
        assert!(e.contains("name") && e.contains("two"), "{e}");
        let mut c = case();
        c["policy"] = serde_json::json!({ "mode": "Sometimes" });
        let e = error("one", c);
        assert!(e.contains("policy") && e.contains("Sometimes"), "{e}");
        let mut c = case();
        c["expected"]["decision"] = "None".into();
        let e = error("one", c);
        assert!(e.contains("expected.decision"), "{e}");
    }
}
