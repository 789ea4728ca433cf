//! Planning: one function per action kind turns a validated request and
//! the target as read into the exact write ([`Plan`]), or a precondition
//! error when the action must not run on this object.

use std::time::{Duration, SystemTime};

use nanny_proto::v1::{
    DeleteFailedPods, DeleteJob, DrainNode, ExpandPvc, ObjectRef, PatchResources, ScaleHpa,
    ScaleWorkload, action::Kind as ActionKind,
};
use serde_json::{Value, json};

use sha2::{Digest as _, Sha256};

use super::{
    CORDONED_BY, CORDONED_BY_POINTER, Facts, Plan, PodNode, RESTARTED_AT, RETRIED_AS, RETRIGGER_OF,
    RETRIGGERED_BY, Write, condition, controller, drain_skip_reason, job_finished_at, quantities,
    revision,
};
use crate::{
    diff::str_at,
    error::Error,
    quantity,
    request::{Validated, describe},
};

/// What every plan reads: the request, the target as read, and the facts
/// gathered around it.
struct Input<'a> {
    v: &'a Validated,
    current: &'a Value,
    facts: &'a Facts,
    target: String,
}

impl Input<'_> {
    /// `patch` with the resourceVersion read. Every patch carries it (and
    /// it was checked against the snapshot): the API server refuses it if
    /// anything changed in between, so the recorded before values are
    /// exactly what was overwritten.
    fn with_version(&self, mut patch: Value) -> Value {
        patch["metadata"]["resourceVersion"] =
            json!(str_at(self.current, "/metadata/resourceVersion"));
        patch
    }

    fn precondition(&self, message: impl Into<String>) -> Error {
        Error::Precondition {
            target: self.target.clone(),
            message: message.into(),
        }
    }

    fn now(&self) -> SystemTime {
        self.facts.now.unwrap_or_else(SystemTime::now)
    }
}

/// Plans `v`'s action on the target read as `current`.
///
/// # Errors
/// [`Error::Precondition`] when the action must not run on this object.
pub fn plan(v: &Validated, current: &Value, facts: &Facts) -> Result<Plan, Error> {
    let input = Input {
        v,
        current,
        facts,
        target: describe(&v.target),
    };
    match &v.action {
        ActionKind::RestartPod(_) => restart_pod(&input),
        ActionKind::RolloutRestart(_) => Ok(rollout_restart(&input)),
        ActionKind::ScaleHpa(scale) => scale_hpa(&input, scale),
        ActionKind::CordonNode(_) => Ok(cordon(&input)),
        ActionKind::UncordonNode(_) => uncordon(&input),
        ActionKind::DrainNode(drain) => Ok(drain_node(&input, drain)),
        ActionKind::ExpandPvc(expand) => expand_pvc(&input, expand),
        ActionKind::PatchResources(patch) => patch_resources(&input, patch),
        ActionKind::DeleteJob(job) => delete_job(&input, job),
        ActionKind::DeleteFailedPods(delete) => delete_failed_pods(&input, delete),
        ActionKind::ForceDeletePod(_) => force_delete_pod(&input),
        ActionKind::ScaleWorkload(scale) => scale_workload(&input, scale),
        ActionKind::ResumeCronJob(_) => resume_cron_job(&input),
        ActionKind::RolloutUndo(_) => rollout_undo(&input),
        ActionKind::RetriggerJob(_) => retrigger_job(&input),
        ActionKind::DeleteResource(_) | ActionKind::ReportOnly(_) => Err(Error::Unsupported {
            action: crate::request::action_type(&v.action).as_str_name(),
        }),
    }
}

fn restart_pod(input: &Input<'_>) -> Result<Plan, Error> {
    if controller(input.current).is_none() && !input.v.allow_bare_pod_restart {
        return Err(input.precondition(
            "the pod has no controller to recreate it, and the policy does not allow restarting bare pods",
        ));
    }
    if input
        .current
        .pointer("/metadata/deletionTimestamp")
        .is_some()
    {
        return Err(input.precondition("the pod is already being deleted"));
    }
    Ok(Plan::irreversible(
        Write::Evict,
        "an evicted pod cannot be brought back",
    ))
}

fn rollout_restart(input: &Input<'_>) -> Plan {
    let stamp = k8s_openapi::jiff::Timestamp::try_from(input.now())
        .map(|t| {
            t.round(k8s_openapi::jiff::Unit::Second)
                .unwrap_or(t)
                .to_string()
        })
        .unwrap_or_default();
    let pointer = format!(
        "/spec/template/metadata/annotations/{}",
        RESTARTED_AT.replace('/', "~1")
    );
    let patch = json!({ "spec": { "template": { "metadata": { "annotations": { RESTARTED_AT: stamp } } } } });
    Plan::new(Write::Merge(input.with_version(patch)), vec![pointer])
}

fn scale_hpa(
    input: &Input<'_>,
    ScaleHpa {
        min_replicas,
        max_replicas,
    }: &ScaleHpa,
) -> Result<Plan, Error> {
    let mut patch = json!({ "spec": { "maxReplicas": max_replicas } });
    let mut pointers = vec!["/spec/maxReplicas".to_owned()];
    let current_min = input
        .current
        .pointer("/spec/minReplicas")
        .and_then(Value::as_i64);
    // Forcing replicas up is a person's call: only a verdict a human
    // approved may raise minReplicas (or set it when unknown).
    if let Some(min) = min_replicas
        && !input.v.human_approved
        && current_min.is_none_or(|current| i64::from(*min) > current)
    {
        return Err(input.precondition(format!(
            "minReplicas {min} is above the current {} and no human approved it",
            current_min.map_or_else(|| "(unset)".to_owned(), |m| m.to_string())
        )));
    }
    if let Some(min) = min_replicas {
        patch["spec"]["minReplicas"] = json!(min);
        pointers.push("/spec/minReplicas".to_owned());
    } else if current_min.is_some_and(|min| min > i64::from(*max_replicas)) {
        return Err(input.precondition(format!(
            "maxReplicas {max_replicas} would be below the current minReplicas"
        )));
    }
    Ok(Plan::new(Write::Merge(input.with_version(patch)), pointers))
}

/// The cordon patch: `spec.unschedulable`, and the annotation that says
/// Nanny set it (naming the action) unless the node was cordoned already
/// (a person's cordon stays theirs).
fn cordon_patch(input: &Input<'_>) -> (Value, Vec<String>) {
    let mut fields = vec!["/spec/unschedulable".to_owned()];
    let mut patch = json!({ "spec": { "unschedulable": true } });
    let cordoned = input
        .current
        .pointer("/spec/unschedulable")
        .and_then(Value::as_bool)
        == Some(true);
    if !cordoned {
        patch["metadata"] = json!({ "annotations": { CORDONED_BY: input.v.action_id } });
        fields.push(CORDONED_BY_POINTER.to_owned());
    }
    (patch, fields)
}

fn cordon(input: &Input<'_>) -> Plan {
    let (patch, fields) = cordon_patch(input);
    Plan::new(Write::Merge(input.with_version(patch)), fields)
}

/// Lifts only a cordon Nanny set (its annotation), and only from a node
/// that is healthy now: Ready, and no other condition True (pressure,
/// NetworkUnavailable, node-problem-detector's problems).
fn uncordon(input: &Input<'_>) -> Result<Plan, Error> {
    if input.current.pointer(CORDONED_BY_POINTER).is_none() {
        return Err(input.precondition(format!(
            "Nanny did not cordon it (it carries no {CORDONED_BY} annotation): a cordon a person set is theirs to lift"
        )));
    }
    // The annotation outlives a person's `kubectl uncordon`; who set the
    // cordon now is who owns spec.unschedulable.
    if !owns_unschedulable(input.current, &input.facts.field_manager) {
        return Err(input.precondition(format!(
            "Nanny did not set its current cordon (spec.unschedulable is not {}'s): a cordon a person set is theirs to lift",
            if input.facts.field_manager.is_empty() {
                "the remediator"
            } else {
                input.facts.field_manager.as_str()
            }
        )));
    }
    let conditions = input
        .current
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let ready = conditions
        .iter()
        .any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True");
    let problems: Vec<&str> = conditions
        .iter()
        .filter(|c| str_at(c, "/type") != "Ready" && str_at(c, "/status") == "True")
        .map(|c| str_at(c, "/type"))
        .collect();
    if !ready || !problems.is_empty() {
        let why = if ready {
            format!("it reports {}", problems.join(", "))
        } else {
            "it is not Ready".to_owned()
        };
        return Err(input.precondition(format!("the node is not healthy: {why}")));
    }
    let patch = json!({
        "metadata": { "annotations": { CORDONED_BY: null } },
        "spec": { "unschedulable": null },
    });
    Ok(Plan::new(
        Write::Merge(input.with_version(patch)),
        vec![
            "/spec/unschedulable".to_owned(),
            CORDONED_BY_POINTER.to_owned(),
        ],
    ))
}

fn drain_node(
    input: &Input<'_>,
    DrainNode {
        grace_period_seconds,
        timeout_seconds,
    }: &DrainNode,
) -> Plan {
    let mut evict = Vec::new();
    let mut skipped = Vec::new();
    for pod in &input.facts.pods_on_node {
        let name = format!(
            "Pod {}/{}",
            str_at(pod, "/metadata/namespace"),
            str_at(pod, "/metadata/name")
        );
        let protected = input
            .facts
            .protected_pods
            .get(str_at(pod, "/metadata/uid"))
            .map(|reason| format!("protected: {reason}"));
        // As `kubectl drain` without --force: nothing would recreate it.
        let bare = (controller(pod).is_none() && !input.v.allow_bare_pod_restart)
            .then(|| "no controller would recreate it".to_owned());
        match drain_skip_reason(pod)
            .map(str::to_owned)
            .or(protected)
            .or(bare)
        {
            Some(reason) => skipped.push(format!("{name} ({reason})")),
            None => evict.push((
                str_at(pod, "/metadata/namespace").to_owned(),
                str_at(pod, "/metadata/name").to_owned(),
                str_at(pod, "/metadata/uid").to_owned(),
            )),
        }
    }
    // A rollback uncordons; evicted pods are already replaced.
    let (cordon, fields) = cordon_patch(input);
    Plan::new(
        Write::Drain {
            cordon,
            evict,
            skipped,
            grace_seconds: (*grace_period_seconds > 0).then_some(*grace_period_seconds),
            deadline: input
                .facts
                .started
                .unwrap_or_else(tokio::time::Instant::now)
                + Duration::from_secs(u64::try_from(*timeout_seconds).unwrap_or(1)),
        },
        fields,
    )
}

fn expand_pvc(input: &Input<'_>, ExpandPvc { new_size_bytes }: &ExpandPvc) -> Result<Plan, Error> {
    let current = input.current;
    if input.facts.expandable != Some(true) {
        return Err(input.precondition(format!(
            "its StorageClass {:?} does not allow volume expansion",
            str_at(current, "/spec/storageClassName")
        )));
    }
    let requested = str_at(current, "/spec/resources/requests/storage");
    let size = quantity::parse(requested).ok_or_else(|| {
        input.precondition(format!(
            "its storage request {requested:?} is not a quantity"
        ))
    })?;
    if i128::from(*new_size_bytes) <= size {
        return Err(input.precondition(format!(
            "new size {new_size_bytes} bytes is not larger than the current request {requested} ({size} bytes); volumes are never shrunk"
        )));
    }
    let patch = json!({ "spec": { "resources": { "requests": { "storage": new_size_bytes.to_string() } } } });
    Ok(Plan {
        fields: vec!["/spec/resources/requests/storage".to_owned()],
        ..Plan::irreversible(
            Write::Merge(input.with_version(patch)),
            "volumes are never shrunk",
        )
    })
}

fn patch_resources(
    input: &Input<'_>,
    PatchResources {
        container,
        requests,
        limits,
    }: &PatchResources,
) -> Result<Plan, Error> {
    let containers = input
        .current
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(index) = containers
        .iter()
        .position(|c| c.get("name").and_then(Value::as_str) == Some(container.as_str()))
    else {
        let names: Vec<&str> = containers
            .iter()
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .collect();
        return Err(Error::invalid(
            "recommendation.action.patch_resources.container",
            format!(
                "{} has no container {container:?} (it has {names:?})",
                input.target
            ),
        ));
    };
    let mut new = json!({});
    let mut pointers = Vec::new();
    for (section, values) in [("requests", requests), ("limits", limits)] {
        for (resource, value) in quantities(values.as_ref()) {
            new[section][resource] = json!(value);
            pointers.push(format!(
                "/spec/template/spec/containers/{index}/resources/{section}/{resource}"
            ));
        }
    }
    let patch = json!({ "spec": { "template": { "spec": { "containers": [ { "name": container, "resources": new } ] } } } });
    Ok(Plan {
        container: Some(container.clone()),
        ..Plan::new(Write::Strategic(input.with_version(patch)), pointers)
    })
}

fn delete_job(input: &Input<'_>, job: &DeleteJob) -> Result<Plan, Error> {
    let finished = job_finished_at(input.current).ok_or_else(|| {
        input.precondition("the Job has not finished (no Complete or Failed condition)")
    })?;
    let age = input.now().duration_since(finished).unwrap_or_default();
    let min_age = Duration::from_secs(u64::try_from(job.min_age_seconds).unwrap_or(0));
    if age < min_age {
        return Err(input.precondition(format!(
            "the Job finished {}s ago, less than the required {}s",
            age.as_secs(),
            min_age.as_secs()
        )));
    }
    Ok(Plan::irreversible(
        Write::Delete {
            background: true,
            pin_version: true,
            force: false,
        },
        "a deleted Job would run again if re-created",
    ))
}

fn delete_failed_pods(input: &Input<'_>, delete: &DeleteFailedPods) -> Result<Plan, Error> {
    if !input
        .facts
        .failed_pods
        .iter()
        .any(|pod| str_at(pod, "/status/phase") == "Failed")
    {
        return Err(input.precondition("it has no failed pods to delete"));
    }
    let most = usize::try_from(delete.max_pods).unwrap_or(0);
    if most == 0 {
        return Err(input.precondition("max_pods is 0: nothing may be deleted"));
    }
    // Only what the phase says: a pod listed as Failed that is not is left.
    let failed: Vec<&Value> = input
        .facts
        .failed_pods
        .iter()
        .filter(|pod| str_at(pod, "/status/phase") == "Failed")
        .collect();
    let mut pods = Vec::new();
    let mut shown = Vec::new();
    for pod in failed.iter().take(most) {
        let (namespace, name) = (
            str_at(pod, "/metadata/namespace"),
            str_at(pod, "/metadata/name"),
        );
        let reason = match str_at(pod, "/status/reason") {
            "" => "Failed".to_owned(),
            reason => format!("Failed: {reason}"),
        };
        pods.push((
            namespace.to_owned(),
            name.to_owned(),
            str_at(pod, "/metadata/uid").to_owned(),
        ));
        shown.push(format!("delete Pod {namespace}/{name} ({reason})"));
    }
    let left = failed.len().saturating_sub(pods.len());
    if left > 0 {
        shown.push(format!(
            "leave {left} more failed pods for a later call (at most {most} per call)"
        ));
    }
    Ok(Plan::irreversible(
        Write::DeletePods { pods, shown },
        "the deleted pods had already failed and their controller had replaced them; nothing runs again if they came back",
    ))
}

fn force_delete_pod(input: &Input<'_>) -> Result<Plan, Error> {
    let current = input.current;
    let Some(deadline) = current
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
    else {
        return Err(input.precondition(
            "it is not being deleted: a force delete only finishes a deletion someone asked for",
        ));
    };
    let passed = deadline
        .parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .is_some_and(|t| SystemTime::from(t) <= input.now());
    if !passed {
        return Err(input.precondition(format!(
            "its grace period has not ended (deletion deadline {deadline})"
        )));
    }
    let finalizers: Vec<&str> = current
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !finalizers.is_empty() {
        return Err(input.precondition(format!(
            "finalizer {} holds it: a force delete would not remove it; whoever owns the finalizer must finish",
            finalizers.join(", ")
        )));
    }
    let node = str_at(current, "/spec/nodeName");
    match &input.facts.pod_node {
        PodNode::Gone | PodNode::NotReady => {}
        PodNode::Ready => {
            return Err(input.precondition(format!(
                "its node {node} is Ready: its kubelet will finish the deletion"
            )));
        }
        PodNode::Unknown => {
            return Err(input.precondition(
                "it is bound to no node that could be read: nothing shows its containers cannot be confirmed stopped",
            ));
        }
    }
    Ok(Plan::irreversible(
        Write::Delete {
            background: false,
            pin_version: true,
            force: true,
        },
        "a deleted pod cannot be brought back; its controller, if any, creates a new one",
    ))
}

fn scale_workload(
    input: &Input<'_>,
    ScaleWorkload { replicas }: &ScaleWorkload,
) -> Result<Plan, Error> {
    if let Some(hpa) = &input.facts.scaled_by {
        return Err(input.precondition(format!(
            "{hpa} scales it: change the autoscaler's bounds instead"
        )));
    }
    let current = input
        .current
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    if i64::from(*replicas) <= current {
        return Err(input.precondition(format!(
            "replicas {replicas} is not above the current {current}; ScaleWorkload never lowers them"
        )));
    }
    let patch = json!({ "spec": { "replicas": replicas } });
    Ok(Plan::new(
        Write::Merge(input.with_version(patch)),
        vec!["/spec/replicas".to_owned()],
    ))
}

fn resume_cron_job(input: &Input<'_>) -> Result<Plan, Error> {
    if input
        .current
        .pointer("/spec/suspend")
        .and_then(Value::as_bool)
        != Some(true)
    {
        return Err(input.precondition("it is not suspended"));
    }
    let patch = json!({ "spec": { "suspend": false } });
    Ok(Plan::new(
        Write::Merge(input.with_version(patch)),
        vec!["/spec/suspend".to_owned()],
    ))
}

/// The Deployment's pod template becomes its previous revision's, as
/// `kubectl rollout undo` does: a merge patch that sets every field of that
/// revision's template and removes every field it lacks, carrying the read
/// resourceVersion. The diff shows the containers' images only (a template
/// carries env values that may be secrets), and the record holds no
/// template: it cannot be restored from the record, so it is not
/// reversible (a second RolloutUndo goes back again).
fn rollout_undo(input: &Input<'_>) -> Result<Plan, Error> {
    let current_revision = revision(input.current)
        .ok_or_else(|| input.precondition("it carries no revision to roll back from"))?;
    let Some(previous) = input.facts.previous_revision.as_ref() else {
        return Err(input.precondition(format!(
            "it has no earlier revision to roll back to (it is at revision {current_revision}, and no ReplicaSet it controls holds an earlier one)"
        )));
    };
    // Only a rollout still stuck: a newer one (a fix) is not rolled back.
    let stuck = condition(input.current, "Progressing", "False")
        .is_some_and(|c| str_at(c, "/reason") == "ProgressDeadlineExceeded");
    if !stuck {
        return Err(input.precondition(format!(
            "its rollout of revision {current_revision} is not stuck (Progressing is not False with ProgressDeadlineExceeded): a rollout in progress or done is not rolled back"
        )));
    }
    let mut template = previous
        .pointer("/spec/template")
        .cloned()
        .ok_or_else(|| input.precondition("its previous ReplicaSet has no pod template"))?;
    // The ReplicaSet controller's own label; the Deployment sets it again.
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove("pod-template-hash");
    }
    let current = input
        .current
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    if current == template {
        return Err(input.precondition(format!(
            "its pod template already is revision {}'s",
            revision(previous).unwrap_or_default()
        )));
    }
    let containers = template
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let patch = json!({ "spec": { "template": merge_patch(&current, &template) } });
    Ok(Plan {
        write: Write::Merge(input.with_version(patch)),
        fields: (0..containers)
            .map(|i| format!("/spec/template/spec/containers/{i}/image"))
            .collect(),
        container: None,
        not_reversible: Some(
            "the record holds no pod template (it may carry secrets); a second RolloutUndo returns to the revision this one replaced",
        ),
    })
}

/// The labels the API server generates for a Job's pods (and the Job);
/// the retry gets its own.
const JOB_GENERATED_LABELS: [&str; 4] = [
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "job-name",
    "batch.kubernetes.io/job-name",
];

/// The name of the Job that runs `job` again: `<job>-retry`; a name too
/// long for that (a Job's name is its pods' `job-name` label, at most 63
/// characters) keeps its first 48 characters and a hash of the whole, so
/// two long names never share a retry.
pub fn retry_name(job: &str) -> String {
    const SUFFIX: &str = "-retry";
    if job.len() + SUFFIX.len() <= 63 {
        return format!("{job}{SUFFIX}");
    }
    let digest = Sha256::digest(job.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let cut = (0..=48)
        .rev()
        .find(|i| job.is_char_boundary(*i))
        .unwrap_or(0);
    let head = job[..cut].trim_end_matches(['-', '.']);
    format!("{head}-{hash}{SUFFIX}")
}

/// RetriggerJob: a new Job, `<name>-retry`, with the failed Job's spec
/// (its generated selector and labels dropped, so the Job controller makes
/// new ones) and labels; standalone, so no CronJob counts it among its runs
/// or prunes it. The failed Job is marked first (`nanny.ai/retried-as`, and
/// the action's id): a Job is run again once, whatever becomes of its
/// retry, and a resumed run finds its own mark. The diff names the new Job
/// and its images only (a spec may carry secrets). No undo: its pods may
/// already have done their work.
fn retrigger_job(input: &Input<'_>) -> Result<Plan, Error> {
    if let Some(refusal) = retrigger_refusal(input.current, &input.v.action_id, &input.facts.owners)
    {
        return Err(input.precondition(refusal));
    }
    let object = retry_of(input.current, &input.v.target);
    let name = str_at(&object, "/metadata/name").to_owned();
    let namespace = input.v.target.namespace.as_str();
    let mut shown = vec![format!(
        "create Job {namespace}/{name}: Job {namespace}/{} run again with its spec",
        input.v.target.name
    )];
    for pointer in [
        "/spec/template/spec/initContainers",
        "/spec/template/spec/containers",
    ] {
        for container in object
            .pointer(pointer)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            shown.push(format!(
                "  container {}: image {}",
                str_at(container, "/name"),
                str_at(container, "/image")
            ));
        }
    }
    let mark = input.with_version(json!({ "metadata": {
        "labels": { RETRIED_AS: name },
        "annotations": { RETRIGGERED_BY: input.v.action_id },
    } }));
    Ok(Plan::irreversible(
        Write::Create {
            object: with_action(object, &input.v.action_id),
            shown,
            mark,
        },
        "a Job's run cannot be taken back (its pods may already have done their work); deleting the retry Job stops it",
    ))
}

/// `object` annotated with the action that creates it.
fn with_action(mut object: Value, action_id: &str) -> Value {
    object["metadata"]["annotations"] = json!({ RETRIGGERED_BY: action_id });
    object
}

/// Why `job` must not be run again, if it must not; `owners` nearest first.
fn retrigger_refusal(job: &Value, action_id: &str, owners: &[Value]) -> Option<String> {
    if condition(job, "Failed", "True").is_none() {
        return Some(
            "it has not failed (no Failed condition): only a failed Job is run again".to_owned(),
        );
    }
    let label = |key: &str| {
        job.pointer(&format!("/metadata/labels/{}", key.replace('/', "~1")))
            .and_then(Value::as_str)
    };
    if let Some(original) = label(RETRIGGER_OF) {
        return Some(format!(
            "it is itself Nanny's retry of Job {original}: running it a third time needs a person"
        ));
    }
    let by = job
        .pointer(&format!(
            "/metadata/annotations/{}",
            RETRIGGERED_BY.replace('/', "~1")
        ))
        .and_then(Value::as_str);
    if let Some(retry) = label(RETRIED_AS)
        && by != Some(action_id)
    {
        return Some(format!(
            "it was run again once already, as Job {retry}: a second run needs a person"
        ));
    }
    if let Some((kind, _)) = controller(job).filter(|(kind, _)| *kind != "CronJob") {
        return Some(format!(
            "its controller, a {kind}, decides whether it runs again"
        ));
    }
    let manager = str_at(job, "/spec/managedBy");
    if !manager.is_empty() && manager != "kubernetes.io/job-controller" {
        return Some(format!(
            "{manager} runs it (spec.managedBy), not the Job controller: it decides whether it runs again"
        ));
    }
    if job.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return Some(
            "it sets its own selector (manualSelector), which a retry's pods would share with its own"
                .to_owned(),
        );
    }
    cron_overlap(owners)
}

/// For a CronJob's Job: why a retry now would break the CronJob's own
/// concurrency policy (Forbid or Replace while one of its runs is active).
fn cron_overlap(owners: &[Value]) -> Option<String> {
    let cron = owners.iter().find(|o| str_at(o, "/kind") == "CronJob")?;
    let policy = str_at(cron, "/spec/concurrencyPolicy");
    let active = cron
        .pointer("/status/active")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    (active && matches!(policy, "Forbid" | "Replace")).then(|| {
        format!(
            "its CronJob {} runs a Job now and its concurrencyPolicy is {policy}: a retry would run beside it",
            str_at(cron, "/metadata/name")
        )
    })
}

/// The Job that runs `job` again (not yet annotated with the action).
fn retry_of(job: &Value, target: &ObjectRef) -> Value {
    let mut spec = job.get("spec").cloned().unwrap_or_else(|| json!({}));
    if let Some(spec) = spec.as_object_mut() {
        spec.remove("selector");
    }
    let mut labels = job
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    labels.remove(RETRIED_AS);
    for generated in JOB_GENERATED_LABELS {
        labels.remove(generated);
        if let Some(pod_labels) = spec
            .pointer_mut("/template/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            pod_labels.remove(generated);
        }
    }
    labels.insert(RETRIGGER_OF.to_owned(), json!(target.name));
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": retry_name(&target.name),
            "namespace": target.namespace,
            "labels": labels,
        },
        "spec": spec,
    })
}

/// Whether `manager` owns `spec.unschedulable` in the node's managedFields.
fn owns_unschedulable(node: &Value, manager: &str) -> bool {
    !manager.is_empty()
        && node
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .is_some_and(|entries| {
                entries.iter().any(|e| {
                    str_at(e, "/manager") == manager
                        && e.pointer("/fieldsV1/f:spec/f:unschedulable").is_some()
                })
            })
}

/// The JSON merge patch (RFC 7386) that turns `from` into `to`: objects
/// merge key by key, a key `to` lacks is removed (null), anything else is
/// replaced whole.
pub fn merge_patch(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(from), Value::Object(to)) => {
            let mut patch = serde_json::Map::new();
            for key in from.keys().filter(|k| !to.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            for (key, value) in to {
                match from.get(key) {
                    Some(old) if old == value => {}
                    Some(old) if old.is_object() && value.is_object() => {
                        patch.insert(key.clone(), merge_patch(old, value));
                    }
                    _ => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            Value::Object(patch)
        }
        _ => to.clone(),
    }
}
