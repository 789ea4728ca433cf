//! Issues a person fixes (image pulls, configuration, scheduling):
//! reported with what to look at, never acted on.

use std::collections::BTreeSet;

use nanny_proto::v1::{self as pb, IssueKind, Severity};

use super::{Draft, Drafts, describe, ref_of, report};
use crate::catalog::{REPORT_CONFIG_ERROR, REPORT_IMAGE_PULL, REPORT_UNSCHEDULABLE};
use crate::index::SnapshotIndex;

pub(super) fn report_pod(
    kind: IssueKind,
    issue: &pb::Issue,
    target: &pb::ObjectRef,
    index: &SnapshotIndex<'_>,
    drafts: &mut Drafts,
) {
    let Some(pod) = index.pods.get(target.uid.as_str()) else {
        return;
    };
    let Some(pod_ref) = ref_of(pod.r#ref.as_ref()) else {
        return;
    };
    let (rule, explanation) = match kind {
        IssueKind::ImagePullBackOff => (REPORT_IMAGE_PULL, image_pull(pod, pod_ref)),
        IssueKind::CreateContainerConfigError => (REPORT_CONFIG_ERROR, config_error(pod, pod_ref)),
        _ => (REPORT_UNSCHEDULABLE, unschedulable(pod, pod_ref)),
    };
    drafts.add(
        "",
        Draft {
            rule,
            reason: explanation.clone(),
            action: report(explanation),
            target: pod_ref.clone(),
            risk: Severity::Info,
            fingerprints: [issue.fingerprint.clone()].into(),
            evidence: BTreeSet::new(),
        },
    );
}

/// The kubelet's or scheduler's words, quoted: they are the cluster's
/// text, not ours (masked and cut by the collector).
fn quoted(message: Option<&pb::UntrustedText>) -> Option<String> {
    let message = message?;
    let text: String = message
        .text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    (!text.is_empty()).then(|| format!("\"{text}{}\"", if message.truncated { "…" } else { "" }))
}

fn image_pull(pod: &pb::Pod, pod_ref: &pb::ObjectRef) -> String {
    let what = describe(pod_ref);
    let failing: Vec<String> = pod
        .containers
        .iter()
        .filter(|c| matches!(c.state_reason.as_str(), "ImagePullBackOff" | "ErrImagePull"))
        .map(|c| {
            let mut line = format!(
                "container {} cannot pull image {} ({})",
                c.name, c.image, c.state_reason
            );
            if let Some(said) = quoted(c.state_message.as_ref()) {
                line.push_str(&format!("; the kubelet says {said}"));
            }
            line
        })
        .collect();
    if failing.is_empty() {
        return format!(
            "{what} cannot pull its image: check the image name and tag, the pull secret and the registry. A restart would pull the same image again."
        );
    }
    format!(
        "{what}: {}. Check that the image name and tag exist in the registry, the pod's pull secret, and that the node reaches the registry. A restart would pull the same image again.",
        failing.join("; ")
    )
}

/// What a CreateContainerConfigError is about, from the kubelet's message:
/// a missing key of a ConfigMap or Secret, or a missing ConfigMap or
/// Secret.
/// Names and keys are the API server's (DNS labels, config keys): anything
/// else is not read as one.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
}

fn missing_reference(namespace: &str, message: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix("couldn't find key ") {
        let (key, rest) = rest.split_once(" in ")?;
        let (kind, object) = rest.split_once(' ')?;
        let object = object.split_whitespace().next()?;
        return (matches!(kind, "ConfigMap" | "Secret") && plain(key) && plain(object))
            .then(|| format!("{kind} {object} has no key {key}"));
    }
    for (prefix, kind) in [("configmap \"", "ConfigMap"), ("secret \"", "Secret")] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let (name, rest) = rest.split_once('"')?;
            return (plain(name) && rest.trim_start().starts_with("not found"))
                .then(|| format!("{kind} {namespace}/{name} does not exist"));
        }
    }
    None
}

fn config_error(pod: &pb::Pod, pod_ref: &pb::ObjectRef) -> String {
    let what = describe(pod_ref);
    let failing: Vec<String> = pod
        .containers
        .iter()
        .filter(|c| c.state_reason == "CreateContainerConfigError")
        .map(|c| {
            let message = c
                .state_message
                .as_ref()
                .map(|m| m.text.as_str())
                .unwrap_or_default();
            match missing_reference(&pod_ref.namespace, message) {
                Some(missing) => format!("{missing}, referenced by container {}", c.name),
                None => match quoted(c.state_message.as_ref()) {
                    Some(said) => {
                        format!("container {} cannot start: the kubelet says {said}", c.name)
                    }
                    None => format!(
                        "container {} references a ConfigMap, Secret or key that does not exist",
                        c.name
                    ),
                },
            }
        })
        .collect();
    if failing.is_empty() {
        return format!(
            "{what} cannot start: it references a ConfigMap, Secret or key that does not exist. A restart would read the same configuration."
        );
    }
    format!(
        "{}. Create it or correct the reference in {what}'s workload; a restart would read the same configuration.",
        failing.join("; ")
    )
}

fn unschedulable(pod: &pb::Pod, pod_ref: &pb::ObjectRef) -> String {
    let what = describe(pod_ref);
    let said = quoted(pod.unschedulable_message.as_ref())
        .map(|m| format!(" The scheduler says {m}."))
        .unwrap_or_default();
    format!(
        "{what} cannot be scheduled.{said} Add capacity or relax its requests, affinity, taints or topology constraints. A restart would land in the same place."
    )
}
