//! Issues a person fixes (image pulls, configuration, scheduling):
//! reported with what to look at, never acted on.

use std::{collections::BTreeSet, time::SystemTime};

use nanny_proto::v1::{self as pb, IssueKind, Severity, action::Kind};

use super::{Draft, Drafts, describe, ref_of, report};
use crate::catalog::{
    REPORT_CONFIG_ERROR, REPORT_IMAGE_PULL, REPORT_INIT_FAILING, REPORT_PROBE_FAILING,
    REPORT_RESTARTING, REPORT_RUNTIME_ERROR, REPORT_SANDBOX, REPORT_SCHEDULING_GATED,
    REPORT_STUCK_TERMINATING, REPORT_UNSCHEDULABLE, REPORT_VOLUME_MOUNT, STUCK_POD_FORCE_DELETE,
};
use crate::index::SnapshotIndex;

pub(super) fn report_pod(
    kind: IssueKind,
    issue: &pb::Issue,
    target: &pb::ObjectRef,
    index: &SnapshotIndex<'_>,
    now: SystemTime,
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
        IssueKind::CreateContainerError | IssueKind::RunContainerError => {
            (REPORT_RUNTIME_ERROR, runtime_error(pod, pod_ref))
        }
        IssueKind::InitContainerFailing => (REPORT_INIT_FAILING, init_failing(pod, pod_ref)),
        IssueKind::LivenessProbeFailing | IssueKind::StartupProbeFailing => {
            (REPORT_PROBE_FAILING, probe_failing(kind, pod_ref, index))
        }
        IssueKind::VolumeMountFailing => (REPORT_VOLUME_MOUNT, volume_mount(pod_ref, index)),
        IssueKind::PodSandboxFailing => (REPORT_SANDBOX, sandbox(pod, pod_ref, index)),
        IssueKind::SchedulingGated => (REPORT_SCHEDULING_GATED, gated(pod, pod_ref)),
        IssueKind::ContainerRestarting => (REPORT_RESTARTING, restarting(pod, pod_ref)),
        IssueKind::PodStuckTerminating => {
            let explanation = stuck_terminating(pod, pod_ref, index, now);
            if pod.finalizers.is_empty() && node_ready(pod, index) != Some(true) {
                // No finalizer, and no kubelet that could confirm: a force
                // delete finishes it, once a human approves.
                drafts.add(
                    "",
                    Draft {
                        rule: STUCK_POD_FORCE_DELETE,
                        reason: explanation,
                        action: Kind::ForceDeletePod(pb::ForceDeletePod {}),
                        target: pod_ref.clone(),
                        risk: Severity::Warning,
                        fingerprints: [issue.fingerprint.clone()].into(),
                        evidence: [format!("node: {}", pod.node_name)].into(),
                    },
                );
                return;
            }
            (REPORT_STUCK_TERMINATING, explanation)
        }
        _ => (REPORT_UNSCHEDULABLE, unschedulable(pod, pod_ref)),
    };
    add_report(drafts, rule, issue, pod_ref, explanation);
}

/// One ReportOnly draft about `target` citing `issue`.
pub(super) fn add_report(
    drafts: &mut Drafts,
    rule: crate::catalog::Rule,
    issue: &pb::Issue,
    target: &pb::ObjectRef,
    explanation: String,
) {
    drafts.add(
        "",
        Draft {
            rule,
            reason: explanation.clone(),
            action: report(explanation),
            target: target.clone(),
            risk: Severity::Info,
            fingerprints: [issue.fingerprint.clone()].into(),
            evidence: BTreeSet::new(),
        },
    );
}

/// A container the runtime refused to create or start: the runtime's
/// words (masked and cut by the collector), quoted.
fn runtime_error(pod: &pb::Pod, pod_ref: &pb::ObjectRef) -> String {
    let what = describe(pod_ref);
    let failing: Vec<String> = pod
        .containers
        .iter()
        .filter(|c| {
            c.state == "waiting"
                && matches!(
                    c.state_reason.as_str(),
                    "CreateContainerError" | "RunContainerError"
                )
        })
        .map(|c| {
            let verb = if c.state_reason == "RunContainerError" {
                "start"
            } else {
                "create"
            };
            match quoted(c.state_message.as_ref()) {
                Some(said) => format!(
                    "the runtime cannot {verb} container {} (image {}): it says {said}",
                    c.name, c.image
                ),
                None => format!(
                    "the runtime cannot {verb} container {} (image {}, {})",
                    c.name, c.image, c.state_reason
                ),
            }
        })
        .collect();
    let reasons = if failing.is_empty() {
        "the runtime cannot create or start one of its containers".to_owned()
    } else {
        failing.join("; ")
    };
    format!(
        "{what}: {reasons}. Check the container's command and arguments, working directory, mounts and security context against its image; every start fails the same way until the spec is fixed."
    )
}

/// Whether the pod's node is Ready; `None` when the snapshot has no such
/// node (gone), `Some(true)` also for a pod bound to no node (nothing to
/// force).
fn node_ready(pod: &pb::Pod, index: &SnapshotIndex<'_>) -> Option<bool> {
    if pod.node_name.is_empty() {
        return Some(true);
    }
    index
        .nodes
        .values()
        .find(|n| n.r#ref.as_ref().is_some_and(|r| r.name == pod.node_name))
        .map(|n| {
            n.conditions
                .iter()
                .any(|c| c.r#type == "Ready" && c.status == "True")
        })
}

/// Why a deleted pod is still there: its finalizers, or a node that
/// cannot confirm its containers stopped.
fn stuck_terminating(
    pod: &pb::Pod,
    pod_ref: &pb::ObjectRef,
    index: &SnapshotIndex<'_>,
    now: SystemTime,
) -> String {
    let what = describe(pod_ref);
    let past = super::seconds_since(pod.deletion_deadline.as_ref(), now)
        .filter(|s| *s >= 0)
        .map(|s| format!(" {s}s after its grace period ended"))
        .unwrap_or_default();
    let finalizers: Vec<&str> = pod
        .finalizers
        .iter()
        .map(String::as_str)
        .filter(|f| plain(f))
        .collect();
    let node_ready = node_ready(pod, index);
    let mut why = Vec::new();
    if !finalizers.is_empty() {
        why.push(format!(
            "finalizer {} is still set: the controller that owns it must finish its cleanup and remove it (remove it by hand only once that cleanup is known done)",
            finalizers.join(", ")
        ));
    }
    match (pod.node_name.as_str(), node_ready) {
        ("", _) => {}
        (node, None) => why.push(format!(
            "its node {node} is gone, so no kubelet will confirm the containers stopped: force-delete the pod (kubectl delete pod --force --grace-period=0) once the machine is known off"
        )),
        (node, Some(false)) => why.push(format!(
            "its node {node} is not ready, so its kubelet cannot confirm the containers stopped: force-delete the pod only once the node is known down, or its containers may still run beside the replacement"
        )),
        (node, Some(true)) if finalizers.is_empty() => why.push(format!(
            "the kubelet on node {node} has not confirmed its containers stopped: look at the kubelet's and the runtime's logs on that node"
        )),
        _ => {}
    }
    if why.is_empty() {
        why.push("nothing in the snapshot says why".to_owned());
    }
    format!("{what} is still there{past}: {}.", why.join("; "))
}

/// The kubelet's or scheduler's words, quoted: they are the cluster's
/// text, not ours (masked and cut by the collector).
pub(super) fn quoted(message: Option<&pb::UntrustedText>) -> Option<String> {
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
pub(super) fn plain(name: &str) -> bool {
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

/// Which init containers fail and how: the last exit, or the kubelet's
/// words for a spec it cannot run.
fn init_failing(pod: &pb::Pod, pod_ref: &pb::ObjectRef) -> String {
    let what = describe(pod_ref);
    let failing: Vec<String> = pod
        .init_containers
        .iter()
        .filter(|c| {
            c.state != "running" && !c.state_reason.is_empty() && c.state_reason != "Completed"
        })
        .map(|c| {
            let mut line = format!("init container {} ({}", c.name, c.state_reason);
            if let Some(l) = c.last_termination.as_ref().filter(|l| l.exit_code != 0) {
                line.push_str(&format!("; last exit code {}, {}", l.exit_code, l.reason));
            }
            line.push(')');
            if let Some(said) = quoted(c.state_message.as_ref()) {
                line.push_str(&format!(", the kubelet says {said}"));
            }
            line
        })
        .collect();
    let failing = if failing.is_empty() {
        "an init container keeps failing".to_owned()
    } else {
        failing.join("; ")
    };
    format!(
        "{what} cannot start: {failing}. Its main containers wait until every init container succeeds; read the init container's logs (kubectl logs {} -n {} -c NAME --previous) and fix what it waits for or runs. A restart runs it the same way.",
        pod_ref.name, pod_ref.namespace
    )
}

/// The kubelet's newest warning about the pod among `reasons`, quoted;
/// `None` when the snapshot holds none (pruned meanwhile).
fn kubelet_said(
    pod_ref: &pb::ObjectRef,
    index: &SnapshotIndex<'_>,
    reasons: &[&str],
) -> Option<String> {
    let event = index.latest_warning_of(&pod_ref.uid, reasons)?;
    let said = quoted(event.message.as_ref())?;
    Some(format!("{said} ({} times)", event.count.max(1)))
}

fn probe_failing(kind: IssueKind, pod_ref: &pb::ObjectRef, index: &SnapshotIndex<'_>) -> String {
    let what = describe(pod_ref);
    let said = kubelet_said(pod_ref, index, &["Unhealthy"])
        .map(|s| format!(" The kubelet says {s}."))
        .unwrap_or_default();
    let (name, ns) = (&pod_ref.name, &pod_ref.namespace);
    let advice = if kind == IssueKind::StartupProbeFailing {
        format!(
            "its startup probe fails, so the kubelet kills the container before it ever serves.{said} If the application needs longer to start, raise the probe's failureThreshold × periodSeconds; otherwise check the probe's path, port and command against what the application serves"
        )
    } else {
        format!(
            "its liveness probe fails, so the kubelet kills and restarts the container each time it fails failureThreshold times.{said} Check the probe's path, port, command and timeoutSeconds against what the application serves, and whether the application hangs (its logs before the restart: kubectl logs {name} -n {ns} --previous)"
        )
    };
    format!("{what}: {advice}. A restart by Nanny would do what the kubelet already does.")
}

fn volume_mount(pod_ref: &pb::ObjectRef, index: &SnapshotIndex<'_>) -> String {
    let what = describe(pod_ref);
    let event = index.latest_warning_of(&pod_ref.uid, &["FailedMount", "FailedAttachVolume"]);
    // `MountVolume.SetUp failed for volume "creds" : secret "db" not found`
    let missing = event
        .and_then(|e| e.message.as_ref())
        .and_then(|m| m.text.split_once(" : "))
        .and_then(|(_, cause)| missing_reference(&pod_ref.namespace, cause))
        .map(|m| format!(" {m}: create it or correct the volume in the pod's workload."))
        .unwrap_or_default();
    let said = kubelet_said(pod_ref, index, &["FailedMount", "FailedAttachVolume"])
        .map(|s| format!(" The kubelet says {s}."))
        .unwrap_or_default();
    format!(
        "{what} cannot start: the kubelet cannot mount its volumes.{said}{missing} A missing Secret, ConfigMap or claim must be created or the reference corrected; a volume attached to another node must be released there. The pod starts by itself once its volumes mount; a restart would wait the same way."
    )
}

fn sandbox(pod: &pb::Pod, pod_ref: &pb::ObjectRef, index: &SnapshotIndex<'_>) -> String {
    let what = describe(pod_ref);
    let said = kubelet_said(pod_ref, index, &["FailedCreatePodSandBox"])
        .map(|s| format!(" The kubelet says {s}."))
        .unwrap_or_default();
    format!(
        "{what} cannot start: the container runtime on node {} cannot create its sandbox.{said} Check the pod's RuntimeClass against the runtimes the node's container runtime has, and the node's network plugin (CNI); every other pod on that node may fail the same way.",
        pod.node_name
    )
}

fn gated(pod: &pb::Pod, pod_ref: &pb::ObjectRef) -> String {
    let gates: Vec<&str> = pod
        .scheduling_gates
        .iter()
        .map(String::as_str)
        .filter(|g| plain(g))
        .collect();
    let gates = if gates.is_empty() {
        "its scheduling gates".to_owned()
    } else {
        format!("its scheduling gates ({})", gates.join(", "))
    };
    format!(
        "{} is not scheduled: it waits for {gates} to be removed. The controller that added a gate (a job queue such as Kueue, a quota or admission manager) removes it; check that controller is running and why it holds the pod. Nanny does not remove another controller's gate.",
        describe(pod_ref)
    )
}

fn restarting(pod: &pb::Pod, pod_ref: &pb::ObjectRef) -> String {
    let what = describe(pod_ref);
    let lines: Vec<String> = pod
        .containers
        .iter()
        .filter_map(|c| {
            let last = c.last_termination.as_ref().filter(|l| l.exit_code != 0)?;
            (c.state == "running").then(|| {
                format!(
                    "container {} restarted {} times, last exit code {} ({})",
                    c.name, c.restart_count, last.exit_code, last.reason
                )
            })
        })
        .collect();
    let lines = if lines.is_empty() {
        "a container keeps exiting in error".to_owned()
    } else {
        lines.join("; ")
    };
    format!(
        "{what}: {lines}. It is crashing before the kubelet backs off; its logs before the last restart say why (kubectl logs {} -n {} -c NAME --previous). A restart would end the same way.",
        pod_ref.name, pod_ref.namespace
    )
}
