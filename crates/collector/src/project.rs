//! Kubernetes objects → the compact, redacted projections snapshots carry.
//!
//! Redaction happens here, by construction: a projection copies only the
//! fields it names. Nothing reads Secrets or ConfigMaps, env vars are never
//! copied (names or values), annotations pass only through the allow-list,
//! and free text (event messages) has its secrets masked, is cut and marked
//! untrusted.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::{
    api::{
        admissionregistration::v1::{
            MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
        },
        autoscaling::v2::HorizontalPodAutoscaler,
        batch::v1::Job,
        core::v1::{
            Event, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod,
            ResourceRequirements, Service,
        },
        networking::v1::{Ingress, IngressBackend, IngressClass, NetworkPolicy},
        policy::v1::PodDisruptionBudget,
        storage::v1::StorageClass,
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference, Time},
        util::intstr::IntOrString,
    },
};
use nanny_common::protect::ProtectedResources;
use nanny_proto::v1 as pb;

/// What projections keep besides the fields they name.
#[derive(Debug, Clone)]
pub struct Redaction {
    /// Annotation keys carried; a trailing `*` matches a prefix.
    pub annotation_allow_list: Vec<String>,
    /// Pod label keys carried; `*` carries all.
    pub pod_labels: Vec<String>,
    /// Free text is cut to this many bytes.
    pub max_text_bytes: usize,
}

impl Redaction {
    fn annotations(&self, source: Option<&BTreeMap<String, String>>) -> HashMap<String, String> {
        let Some(source) = source else {
            return HashMap::new();
        };
        source
            .iter()
            .filter(|(key, _)| {
                self.annotation_allow_list
                    .iter()
                    .any(|allowed| match allowed.strip_suffix('*') {
                        Some(prefix) => key.starts_with(prefix),
                        None => *key == allowed,
                    })
            })
            // An allowed key is no promise about its value: masked and cut
            // like any free text.
            .map(|(k, v)| (k.clone(), masked(v, self.max_text_bytes).0))
            .collect()
    }

    fn pod_labels(&self, source: Option<&BTreeMap<String, String>>) -> HashMap<String, String> {
        let Some(source) = source else {
            return HashMap::new();
        };
        let all = self.pod_labels.iter().any(|k| k == "*");
        // The keys of the default protected labels always travel: a pod
        // whose protection the filter dropped would read as unprotected.
        let protected = ProtectedResources::default().labels;
        let protected_key = |key: &str| {
            protected
                .iter()
                .any(|l| l.split_once('=').is_some_and(|(k, _)| k == key))
        };
        source
            .iter()
            .filter(|(key, _)| {
                all || protected_key(key) || self.pod_labels.iter().any(|k| k == *key)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Masks secrets in `text` ([`nanny_common::redact`]), cuts it to the
    /// limit on a character boundary and marks it untrusted.
    pub fn untrusted(&self, text: &str) -> pb::UntrustedText {
        let (text, truncated) = masked(text, self.max_text_bytes);
        pb::UntrustedText { text, truncated }
    }
}

/// One container of a pod: its spec's name, image and resources, and its
/// status when the kubelet reported one.
fn container(
    container: &k8s_openapi::api::core::v1::Container,
    status: Option<&k8s_openapi::api::core::v1::ContainerStatus>,
    redaction: &Redaction,
) -> pb::ContainerStatus {
    let (requests, limits) = requirements(container.resources.as_ref());
    let mut out = pb::ContainerStatus {
        name: container.name.clone(),
        requests,
        limits,
        image: container
            .image
            .as_deref()
            .unwrap_or_default()
            .chars()
            .take(512)
            .collect(),
        ..pb::ContainerStatus::default()
    };
    if let Some(s) = status {
        out.ready = s.ready;
        out.restart_count = u32::try_from(s.restart_count).unwrap_or(0);
        if let Some(state) = &s.state {
            if let Some(waiting) = &state.waiting {
                out.state = "waiting".to_owned();
                out.state_reason = waiting.reason.clone().unwrap_or_default();
                out.state_message = waiting
                    .message
                    .as_deref()
                    .filter(|_| KUBELET_MESSAGES.contains(&out.state_reason.as_str()))
                    .map(|m| redaction.untrusted(m));
            } else if let Some(terminated) = &state.terminated {
                out.state = "terminated".to_owned();
                out.state_reason = terminated.reason.clone().unwrap_or_default();
            } else if let Some(running) = &state.running {
                out.state = "running".to_owned();
                out.running_since = running.started_at.as_ref().map(timestamp);
            }
        }
        out.last_termination = s
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .map(|t| pb::Termination {
                reason: t.reason.clone().unwrap_or_default(),
                exit_code: t.exit_code,
                finished_at: t.finished_at.as_ref().map(timestamp),
            });
    }
    out
}

/// The waiting reasons whose message is carried: the kubelet writes them
/// about the pod's spec (a missing key, ConfigMap or Secret, an image that
/// cannot be pulled). Other messages are not carried: a terminated
/// container's is what the application wrote to its termination log.
const KUBELET_MESSAGES: [&str; 6] = [
    "CreateContainerConfigError",
    "CreateContainerError",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    // The runtime's refusal to start what the spec names (a command not
    // found, a working directory missing), before the application runs.
    "RunContainerError",
];

/// Most finalizer (or scheduling gate) names carried per object.
const MAX_NAMES: usize = 16;

/// Longest event reason carried, bytes (`events.k8s.io/v1`'s own limit).
const MAX_REASON_BYTES: usize = 128;

/// `text` with its secrets masked ([`nanny_common::redact`]) and cut to
/// `max` bytes; whether it was cut.
fn masked(text: &str, max: usize) -> (String, bool) {
    truncate(&nanny_common::redact::text(text), max)
}

fn truncate(text: &str, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text.to_owned(), false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_owned(), true)
}

/// A Kubernetes timestamp as a protobuf one.
pub fn timestamp(time: &Time) -> pb_time::Timestamp {
    pb_time::Timestamp {
        seconds: time.0.as_second(),
        nanos: time.0.subsec_nanosecond(),
    }
}

/// Re-exported so callers need not name `prost_types`.
pub mod pb_time {
    pub use prost_types::Timestamp;
}

/// The reference to an object from its metadata.
pub fn object_ref(kind: &str, api_version: &str, meta: &ObjectMeta) -> pb::ObjectRef {
    pb::ObjectRef {
        kind: kind.to_owned(),
        api_version: api_version.to_owned(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        resource_version: meta.resource_version.clone().unwrap_or_default(),
    }
}

/// The controller among an object's owners, as a reference in `namespace`.
pub fn controller_of(meta: &ObjectMeta) -> Option<pb::ObjectRef> {
    let owners = meta.owner_references.as_deref()?;
    let owner: &OwnerReference = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())?;
    Some(pb::ObjectRef {
        kind: owner.kind.clone(),
        api_version: owner.api_version.clone(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: owner.name.clone(),
        uid: owner.uid.clone(),
        resource_version: String::new(),
    })
}

/// Parses a Kubernetes quantity into base units (cores, bytes); `None` when malformed.
pub fn quantity(q: &Quantity) -> Option<f64> {
    nanny_common::quantity::parse(&q.0)
}

#[expect(
    clippy::cast_possible_truncation,
    reason = "quantities are far below i64::MAX millicores/bytes; `as` saturates"
)]
fn resources(map: Option<&BTreeMap<String, Quantity>>) -> Option<pb::Resources> {
    let map = map?;
    let cpu = map
        .get("cpu")
        .and_then(quantity)
        .map(|c| (c * 1000.0).round() as i64);
    let memory = map
        .get("memory")
        .and_then(quantity)
        .map(|m| m.round() as i64);
    (cpu.is_some() || memory.is_some()).then_some(pb::Resources {
        cpu_millicores: cpu,
        memory_bytes: memory,
    })
}

/// The `name` quantity of `map`, bytes; 0 when absent or malformed.
#[expect(
    clippy::cast_possible_truncation,
    reason = "quantities are far below i64::MAX bytes; `as` saturates"
)]
fn bytes_of(map: Option<&BTreeMap<String, Quantity>>, name: &str) -> i64 {
    map.and_then(|m| m.get(name))
        .and_then(quantity)
        .map_or(0, |b| b.round() as i64)
}

fn requirements(
    r: Option<&ResourceRequirements>,
) -> (Option<pb::Resources>, Option<pb::Resources>) {
    (
        resources(r.and_then(|r| r.requests.as_ref())),
        resources(r.and_then(|r| r.limits.as_ref())),
    )
}

/// A status's conditions: every API kind has its own condition type with the
/// same fields.
macro_rules! conditions {
    ($status:expr) => {
        $status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default()
            .iter()
            .map(|c| {
                condition(
                    &c.type_,
                    &c.status,
                    c.reason.as_ref(),
                    c.last_transition_time.as_ref(),
                )
            })
            .collect()
    };
}

fn condition(
    type_: &str,
    status: &str,
    reason: Option<&String>,
    at: Option<&Time>,
) -> pb::Condition {
    pb::Condition {
        r#type: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.cloned().unwrap_or_default(),
        last_transition: at.map(timestamp),
        message: None,
    }
}

/// A Pod. `workload` is left empty: the store resolves it from the owner.
pub fn pod(pod: &Pod, redaction: &Redaction) -> pb::Pod {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let conditions = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let find = |type_: &str| conditions.iter().find(|c| c.type_ == type_);
    let ready_condition = find("Ready");
    let scheduled = find("PodScheduled").filter(|c| c.status == "False");
    let spec_containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let statuses = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    let containers = spec_containers
        .iter()
        .map(|c| container(c, statuses.iter().find(|s| s.name == c.name), redaction))
        .collect();
    pb::Pod {
        r#ref: Some(object_ref("Pod", "v1", meta)),
        owner: controller_of(meta),
        workload: None,
        node_name: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
        ready: ready_condition.is_some_and(|c| c.status == "True"),
        containers,
        unschedulable_reason: scheduled.and_then(|c| c.reason.clone()).unwrap_or_default(),
        unschedulable_message: scheduled
            .and_then(|c| c.message.as_deref())
            .map(|m| redaction.untrusted(m)),
        status_reason: status.and_then(|s| s.reason.clone()).unwrap_or_default(),
        created_at: meta.creation_timestamp.as_ref().map(timestamp),
        labels: redaction.pod_labels(meta.labels.as_ref()),
        ready_since: ready_condition
            .and_then(|c| c.last_transition_time.as_ref())
            .map(timestamp),
        unschedulable_since: scheduled
            .and_then(|c| c.last_transition_time.as_ref())
            .map(timestamp),
        annotations: redaction.annotations(meta.annotations.as_ref()),
        deletion_deadline: meta.deletion_timestamp.as_ref().map(timestamp),
        finalizers: finalizers(meta),
        init_containers: {
            let statuses = status
                .and_then(|s| s.init_container_statuses.as_deref())
                .unwrap_or_default();
            spec.and_then(|s| s.init_containers.as_deref())
                .unwrap_or_default()
                .iter()
                .map(|c| container(c, statuses.iter().find(|s| s.name == c.name), redaction))
                .collect()
        },
        // Gate names are qualified names the API server validated.
        scheduling_gates: spec
            .and_then(|s| s.scheduling_gates.as_deref())
            .unwrap_or_default()
            .iter()
            .take(MAX_NAMES)
            .map(|g| g.name.clone())
            .collect(),
    }
}

/// The object's finalizers: names the API server validated (qualified
/// names), at most [`MAX_NAMES`].
fn finalizers(meta: &ObjectMeta) -> Vec<String> {
    meta.finalizers
        .iter()
        .flatten()
        .take(MAX_NAMES)
        .cloned()
        .collect()
}

/// A Node.
pub fn node(node: &Node) -> pb::Node {
    let status = node.status.as_ref();
    pb::Node {
        r#ref: Some(object_ref("Node", "v1", &node.metadata)),
        conditions: conditions!(status),
        capacity: resources(status.and_then(|s| s.capacity.as_ref())),
        allocatable: resources(status.and_then(|s| s.allocatable.as_ref())),
        allocatable_ephemeral_storage_bytes: bytes_of(
            status.and_then(|s| s.allocatable.as_ref()),
            "ephemeral-storage",
        ),
        usage: None,
        unschedulable: node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        kubelet_version: status
            .and_then(|s| s.node_info.as_ref())
            .map(|i| i.kubelet_version.clone())
            .unwrap_or_default(),
        labels: labels(&node.metadata),
        cordoned_by_nanny: node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true)
            && node
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(nanny_common::kube::CORDONED_BY)),
    }
}

/// All of an object's labels: the safety gate checks protected labels on
/// every object an action may touch and on its owners, so none is dropped.
fn labels(meta: &ObjectMeta) -> HashMap<String, String> {
    meta.labels
        .as_ref()
        .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

mod tls;
mod workloads;

pub use tls::tls_certificate;
pub use workloads::{cron_job, daemon_set, deployment, replica_set, stateful_set};

/// A Job.
pub fn job(j: &Job) -> pb::Job {
    let status = j.status.as_ref();
    pb::Job {
        r#ref: Some(object_ref("Job", "batch/v1", &j.metadata)),
        owner: controller_of(&j.metadata),
        active: status.and_then(|s| s.active).unwrap_or(0),
        succeeded: status.and_then(|s| s.succeeded).unwrap_or(0),
        failed: status.and_then(|s| s.failed).unwrap_or(0),
        start_time: status.and_then(|s| s.start_time.as_ref()).map(timestamp),
        completion_time: status
            .and_then(|s| s.completion_time.as_ref())
            .map(timestamp),
        conditions: conditions!(status),
        labels: labels(&j.metadata),
        template_labels: j
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .map(labels)
            .unwrap_or_default(),
    }
}

/// A HorizontalPodAutoscaler (autoscaling/v2); resource metrics are matched
/// by name between spec targets and status currents.
pub fn hpa(h: &HorizontalPodAutoscaler, redaction: &Redaction) -> pb::HorizontalPodAutoscaler {
    let meta = &h.metadata;
    let spec = h.spec.as_ref();
    let status = h.status.as_ref();
    let mut metrics: Vec<pb::HpaMetric> = Vec::new();
    for metric in spec.and_then(|s| s.metrics.as_deref()).unwrap_or_default() {
        if let Some(resource) = &metric.resource {
            metrics.push(pb::HpaMetric {
                name: resource.name.clone(),
                current_utilization_percent: None,
                target_utilization_percent: resource.target.average_utilization,
            });
        }
    }
    for current in status
        .and_then(|s| s.current_metrics.as_deref())
        .unwrap_or_default()
    {
        if let Some(resource) = &current.resource {
            let value = resource.current.average_utilization;
            match metrics.iter_mut().find(|m| m.name == resource.name) {
                Some(m) => m.current_utilization_percent = value,
                None => metrics.push(pb::HpaMetric {
                    name: resource.name.clone(),
                    current_utilization_percent: value,
                    target_utilization_percent: None,
                }),
            }
        }
    }
    pb::HorizontalPodAutoscaler {
        r#ref: Some(object_ref(
            "HorizontalPodAutoscaler",
            "autoscaling/v2",
            meta,
        )),
        scale_target: spec.map(|s| pb::ObjectRef {
            kind: s.scale_target_ref.kind.clone(),
            api_version: s.scale_target_ref.api_version.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: s.scale_target_ref.name.clone(),
            ..pb::ObjectRef::default()
        }),
        min_replicas: spec.and_then(|s| s.min_replicas).unwrap_or(1),
        max_replicas: spec.map_or(0, |s| s.max_replicas),
        current_replicas: status.and_then(|s| s.current_replicas).unwrap_or(0),
        desired_replicas: status.map_or(0, |s| s.desired_replicas),
        metrics,
        labels: labels(meta),
        // The controller's message says why it cannot scale (which metric
        // it could not read, which target it could not find).
        conditions: status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default()
            .iter()
            .map(|c| pb::Condition {
                message: c.message.as_deref().map(|m| redaction.untrusted(m)),
                ..condition(
                    &c.type_,
                    &c.status,
                    c.reason.as_ref(),
                    c.last_transition_time.as_ref(),
                )
            })
            .collect(),
    }
}

#[expect(
    clippy::cast_possible_truncation,
    reason = "storage sizes are far below i64::MAX bytes; `as` saturates"
)]
fn storage_bytes(map: Option<&BTreeMap<String, Quantity>>) -> i64 {
    map.and_then(|m| m.get("storage"))
        .and_then(quantity)
        .map_or(0, |b| b.round() as i64)
}

/// A PersistentVolumeClaim; `expandable` is filled from its StorageClass by the store.
pub fn pvc(p: &PersistentVolumeClaim) -> pb::PersistentVolumeClaim {
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    pb::PersistentVolumeClaim {
        r#ref: Some(object_ref("PersistentVolumeClaim", "v1", &p.metadata)),
        storage_class: spec
            .and_then(|s| s.storage_class_name.clone())
            .unwrap_or_default(),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
        requested_bytes: storage_bytes(spec.and_then(|s| s.resources.as_ref()?.requests.as_ref())),
        capacity_bytes: storage_bytes(status.and_then(|s| s.capacity.as_ref())),
        used_bytes: None,
        usage_percent: None,
        expandable: false,
        binds_on_first_consumer: false,
        labels: labels(&p.metadata),
        created_at: p.metadata.creation_timestamp.as_ref().map(timestamp),
        volume_name: spec.and_then(|s| s.volume_name.clone()).unwrap_or_default(),
    }
}

/// A PersistentVolume: its phase, reclaim policy and claim.
pub fn volume(v: &PersistentVolume, redaction: &Redaction) -> pb::PersistentVolume {
    let spec = v.spec.as_ref();
    let status = v.status.as_ref();
    pb::PersistentVolume {
        r#ref: Some(object_ref("PersistentVolume", "v1", &v.metadata)),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
        reclaim_policy: spec
            .and_then(|s| s.persistent_volume_reclaim_policy.clone())
            .unwrap_or_default(),
        claim: spec
            .and_then(|s| s.claim_ref.as_ref())
            .map(|c| pb::ObjectRef {
                kind: "PersistentVolumeClaim".to_owned(),
                api_version: "v1".to_owned(),
                namespace: c.namespace.clone().unwrap_or_default(),
                name: c.name.clone().unwrap_or_default(),
                uid: c.uid.clone().unwrap_or_default(),
                ..pb::ObjectRef::default()
            }),
        storage_class: spec
            .and_then(|s| s.storage_class_name.clone())
            .unwrap_or_default(),
        phase_since: status
            .and_then(|s| s.last_phase_transition_time.as_ref())
            .map(timestamp),
        message: status
            .and_then(|s| s.message.as_deref())
            .map(|m| redaction.untrusted(m)),
        capacity_bytes: storage_bytes(spec.and_then(|s| s.capacity.as_ref())),
    }
}

/// What the collector keeps of a StorageClass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassFacts {
    /// It allows expansion.
    pub expandable: bool,
    /// Its claims bind when a pod first uses them (WaitForFirstConsumer).
    pub binds_on_first_consumer: bool,
}

/// The facts of a StorageClass.
pub fn storage_class(class: &StorageClass) -> ClassFacts {
    ClassFacts {
        expandable: class.allow_volume_expansion.unwrap_or(false),
        binds_on_first_consumer: class.volume_binding_mode.as_deref()
            == Some("WaitForFirstConsumer"),
    }
}

/// A Warning event; `None` for Normal events, which Nanny does not keep,
/// and for Nanny's own (its coordinator reports each action on its target):
/// a report must never quote Nanny back to itself.
pub fn event(e: &Event, redaction: &Redaction) -> Option<pb::Event> {
    if e.type_.as_deref() != Some("Warning") {
        return None;
    }
    let reporter = e
        .reporting_component
        .as_deref()
        .or_else(|| e.source.as_ref().and_then(|s| s.component.as_deref()))
        .unwrap_or_default();
    if reporter.starts_with("nanny-") {
        return None;
    }
    let involved = &e.involved_object;
    let last_seen = e
        .last_timestamp
        .as_ref()
        .map(timestamp)
        .or_else(|| {
            e.series
                .as_ref()
                .and_then(|s| s.last_observed_time.as_ref())
                .map(|t| pb_time::Timestamp {
                    seconds: t.0.as_second(),
                    nanos: t.0.subsec_nanosecond(),
                })
        })
        .or_else(|| {
            e.event_time.as_ref().map(|t| pb_time::Timestamp {
                seconds: t.0.as_second(),
                nanos: t.0.subsec_nanosecond(),
            })
        })
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(timestamp));
    Some(pb::Event {
        involved: Some(pb::ObjectRef {
            kind: involved.kind.clone().unwrap_or_default(),
            api_version: involved.api_version.clone().unwrap_or_default(),
            namespace: involved.namespace.clone().unwrap_or_default(),
            name: involved.name.clone().unwrap_or_default(),
            uid: involved.uid.clone().unwrap_or_default(),
            resource_version: String::new(),
        }),
        // Whoever may create Events writes the reason too: masked and cut
        // to what a reason needs (the Events API allows 128 bytes).
        reason: masked(e.reason.as_deref().unwrap_or_default(), MAX_REASON_BYTES).0,
        r#type: "Warning".to_owned(),
        count: e.count.unwrap_or(1),
        last_seen,
        message: Some(redaction.untrusted(e.message.as_deref().unwrap_or_default())),
        r#ref: Some(object_ref("Event", "v1", &e.metadata)),
    })
}

fn selector_string(selector: Option<&LabelSelector>) -> String {
    let Some(selector) = selector else {
        return String::new();
    };
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for expr in selector.match_expressions.iter().flatten() {
        let values = expr.values.clone().unwrap_or_default().join(",");
        parts.push(match expr.operator.as_str() {
            "In" => format!("{} in ({values})", expr.key),
            "NotIn" => format!("{} notin ({values})", expr.key),
            "Exists" => expr.key.clone(),
            _ => format!("!{}", expr.key),
        });
    }
    parts.join(",")
}

fn int_or_string(value: Option<&IntOrString>) -> String {
    match value {
        Some(IntOrString::Int(i)) => i.to_string(),
        Some(IntOrString::String(s)) => s.clone(),
        None => String::new(),
    }
}

/// A PodDisruptionBudget.
pub fn pdb(p: &PodDisruptionBudget) -> pb::PodDisruptionBudget {
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    pb::PodDisruptionBudget {
        r#ref: Some(object_ref("PodDisruptionBudget", "policy/v1", &p.metadata)),
        selector: selector_string(spec.and_then(|s| s.selector.as_ref())),
        min_available: int_or_string(spec.and_then(|s| s.min_available.as_ref())),
        max_unavailable: int_or_string(spec.and_then(|s| s.max_unavailable.as_ref())),
        disruptions_allowed: status.map_or(0, |s| s.disruptions_allowed),
        current_healthy: status.map_or(0, |s| s.current_healthy),
        desired_healthy: status.map_or(0, |s| s.desired_healthy),
        expected_pods: status.map_or(0, |s| s.expected_pods),
        blocked_since: status
            .and_then(|s| s.conditions.as_deref())
            .and_then(|c| {
                c.iter()
                    .find(|c| c.type_ == "DisruptionAllowed" && c.status == "False")
            })
            .map(|c| timestamp(&c.last_transition_time)),
    }
}

/// A Namespace; while it terminates, the messages of the conditions
/// that hold it.
pub fn namespace(n: &Namespace, redaction: &Redaction) -> pb::Namespace {
    let status = n.status.as_ref();
    let terminating = n.metadata.deletion_timestamp.is_some();
    pb::Namespace {
        r#ref: Some(object_ref("Namespace", "v1", &n.metadata)),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
        deletion_requested: n.metadata.deletion_timestamp.as_ref().map(timestamp),
        blocked_by: status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default()
            .iter()
            .filter(|c| terminating && c.status == "True")
            .filter_map(|c| c.message.as_deref())
            .map(|m| redaction.untrusted(m))
            .collect(),
    }
}

/// A Service: its selector, and what decides which pods are its endpoints.
pub fn service(s: &Service) -> pb::Service {
    let spec = s.spec.as_ref();
    pb::Service {
        r#ref: Some(object_ref("Service", "v1", &s.metadata)),
        selector: spec
            .and_then(|s| s.selector.as_ref())
            .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        r#type: spec
            .and_then(|s| s.type_.clone())
            .unwrap_or_else(|| "ClusterIP".to_owned()),
        headless: spec.and_then(|s| s.cluster_ip.as_deref()) == Some("None"),
        created_at: s.metadata.creation_timestamp.as_ref().map(timestamp),
        labels: labels(&s.metadata),
        publish_not_ready: spec
            .and_then(|s| s.publish_not_ready_addresses)
            .unwrap_or(false),
        managed: controller_of(&s.metadata).is_some(),
    }
}

/// A NetworkPolicy: which pods it selects.
pub fn network_policy(n: &NetworkPolicy) -> pb::NetworkPolicy {
    pb::NetworkPolicy {
        r#ref: Some(object_ref(
            "NetworkPolicy",
            "networking.k8s.io/v1",
            &n.metadata,
        )),
        pod_selector: selector_string(n.spec.as_ref().and_then(|s| s.pod_selector.as_ref())),
        created_at: n.metadata.creation_timestamp.as_ref().map(timestamp),
        managed: controller_of(&n.metadata).is_some(),
    }
}

/// An Ingress: its class and the Services it sends traffic to.
pub fn ingress(i: &Ingress) -> pb::Ingress {
    let spec = i.spec.as_ref();
    let backend = |b: &IngressBackend| b.service.as_ref().map(|s| s.name.clone());
    let mut services: Vec<String> = spec
        .and_then(|s| s.default_backend.as_ref())
        .and_then(backend)
        .into_iter()
        .chain(
            spec.and_then(|s| s.rules.as_deref())
                .unwrap_or_default()
                .iter()
                .filter_map(|r| r.http.as_ref())
                .flat_map(|h| h.paths.iter())
                .filter_map(|p| backend(&p.backend)),
        )
        .collect();
    services.sort();
    services.dedup();
    let legacy = i
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubernetes.io/ingress.class"));
    let named = spec.and_then(|s| s.ingress_class_name.clone());
    pb::Ingress {
        r#ref: Some(object_ref("Ingress", "networking.k8s.io/v1", &i.metadata)),
        legacy_class: named.is_none() && legacy.is_some(),
        class_name: named.or_else(|| legacy.cloned()).unwrap_or_default(),
        backend_services: services,
        tls_secrets: spec
            .and_then(|s| s.tls.as_deref())
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t.secret_name.clone())
            .collect(),
    }
}

/// An IngressClass's name.
pub fn ingress_class(c: &IngressClass) -> String {
    c.metadata.name.clone().unwrap_or_default()
}

/// One webhook's call to a Service; `None` for one that calls a URL.
fn webhook_call(
    name: &str,
    config: &WebhookClientConfig,
    policy: Option<&String>,
) -> Option<pb::WebhookCall> {
    let service = config.service.as_ref()?;
    Some(pb::WebhookCall {
        name: name.to_owned(),
        service_namespace: service.namespace.clone(),
        service_name: service.name.clone(),
        failure_policy: policy.cloned().unwrap_or_else(|| "Fail".to_owned()),
    })
}

/// A webhook configuration of `kind` with `calls` (its webhooks that call a
/// Service).
fn webhooks<'a>(
    kind: &str,
    meta: &ObjectMeta,
    hooks: impl Iterator<Item = (&'a str, &'a WebhookClientConfig, Option<&'a String>)>,
) -> pb::AdmissionWebhook {
    pb::AdmissionWebhook {
        r#ref: Some(object_ref(kind, "admissionregistration.k8s.io/v1", meta)),
        calls: hooks
            .filter_map(|(name, config, policy)| webhook_call(name, config, policy))
            .collect(),
    }
}

/// A ValidatingWebhookConfiguration: its webhooks that call a Service.
pub fn validating_webhooks(c: &ValidatingWebhookConfiguration) -> pb::AdmissionWebhook {
    let hooks = c.webhooks.iter().flatten();
    webhooks(
        "ValidatingWebhookConfiguration",
        &c.metadata,
        hooks.map(|w| (w.name.as_str(), &w.client_config, w.failure_policy.as_ref())),
    )
}

/// A MutatingWebhookConfiguration: its webhooks that call a Service.
pub fn mutating_webhooks(c: &MutatingWebhookConfiguration) -> pb::AdmissionWebhook {
    let hooks = c.webhooks.iter().flatten();
    webhooks(
        "MutatingWebhookConfiguration",
        &c.metadata,
        hooks.map(|w| (w.name.as_str(), &w.client_config, w.failure_policy.as_ref())),
    )
}

#[cfg(test)]
mod tests;
