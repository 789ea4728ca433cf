//! The actions: reading the target under its preconditions, planning the
//! exact write ([`plan`], one function per action kind), applying it (as a
//! server-side dry run first), and undoing it.

mod apply;
mod plan;
mod read;

use std::time::SystemTime;

use kube::{Api, Client, api::DynamicObject};
use nanny_proto::v1::Resources;
use serde_json::{Value, json};

pub use self::plan::{plan, retry_name};
use crate::{
    diff::str_at,
    error::Error,
    request::{TargetKind, Validated},
    store::{Summary, TargetRecord},
};

/// The annotation `kubectl rollout restart` sets; reusing it keeps
/// `kubectl rollout history` meaningful.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// Pods the kubelet mirrors from static manifests carry this annotation.
const MIRROR_POD: &str = "kubernetes.io/config.mirror";

/// What to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// A JSON merge patch (carrying the read resourceVersion as precondition).
    Merge(Value),
    /// A strategic merge patch (lists of containers merge by name).
    Strategic(Value),
    /// Evict the pod through the Eviction API with a uid precondition: its
    /// PodDisruptionBudget (and the budget's unhealthyPodEvictionPolicy)
    /// decides whether it may go now, as for any voluntary disruption.
    Evict,
    /// Delete with uid (and optionally resourceVersion) preconditions.
    Delete {
        /// Background propagation (Jobs: their pods go too).
        background: bool,
        /// Also require the read resourceVersion.
        pin_version: bool,
        /// Grace period 0: the object goes without its kubelet confirming
        /// (ForceDeletePod).
        force: bool,
    },
    /// Delete these pods, each with its uid as precondition: the failed pods
    /// of one workload.
    DeletePods {
        /// `(namespace, name, uid)` of each pod.
        pods: Vec<(String, String, String)>,
        /// The diff's line per pod: its name and why it failed.
        shown: Vec<String>,
    },
    /// Mark the target (a merge patch carrying its resourceVersion), then
    /// create this object in the target's namespace and API (RetriggerJob:
    /// the failed Job marked as run again, then its retry).
    Create {
        /// The object to create.
        object: Value,
        /// The diff's lines: what is created and its images, never its spec
        /// (it may carry secrets).
        shown: Vec<String>,
        /// The mark on the target, written first.
        mark: Value,
    },
    /// Cordon, then evict these pods.
    Drain {
        /// The cordon patch.
        cordon: Value,
        /// `(namespace, name, uid)` of each pod to evict.
        evict: Vec<(String, String, String)>,
        /// Pods left alone and why, for the diff.
        skipped: Vec<String>,
        /// Eviction grace period; `None`: each pod's own.
        grace_seconds: Option<i64>,
        /// The whole drain's deadline, PDB retries included: set once when
        /// the drain is planned, so the dry-run pass and the evictions share it.
        deadline: tokio::time::Instant,
    },
}

/// A planned drain's parts, as [`Write::Drain`] holds them.
struct DrainSteps<'a> {
    cordon: &'a Value,
    evict: &'a [(String, String, String)],
    skipped: &'a [String],
    grace_seconds: Option<i64>,
    deadline: tokio::time::Instant,
}

/// A planned action.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The write.
    pub write: Write,
    /// JSON pointers of the fields the write changes: all a diff shows and
    /// all a rollback restores ([`crate::undo`] checks each is one the
    /// action type may change).
    pub fields: Vec<String>,
    /// PatchResources: the container, by name.
    pub container: Option<String>,
    /// Why it cannot be undone.
    pub not_reversible: Option<&'static str>,
}

impl Plan {
    fn new(write: Write, fields: Vec<String>) -> Self {
        Self {
            write,
            fields,
            container: None,
            not_reversible: None,
        }
    }

    fn irreversible(write: Write, why: &'static str) -> Self {
        Self {
            write,
            fields: Vec::new(),
            container: None,
            not_reversible: Some(why),
        }
    }

    /// What a diff shows: the changed fields, plus the name of each
    /// container whose resources change.
    pub fn shown_fields(&self) -> Vec<String> {
        let mut shown = self.fields.clone();
        for field in &self.fields {
            if let Some(rest) = field.strip_prefix("/spec/template/spec/containers/")
                && let Some((index, _)) = rest.split_once('/')
            {
                let name = format!("/spec/template/spec/containers/{index}/name");
                if !shown.contains(&name) {
                    shown.push(name);
                }
            }
        }
        shown
    }
}

/// The owner and state of `object`, for a record and a delete's summary.
pub fn summary(object: &Value) -> Summary {
    let owner = controller_ref(object).map(|o| TargetRecord {
        kind: str_at(o, "/kind").to_owned(),
        namespace: str_at(object, "/metadata/namespace").to_owned(),
        name: str_at(o, "/name").to_owned(),
        uid: str_at(o, "/uid").to_owned(),
    });
    let state = job_finished_at(object)
        .and_then(|t| k8s_openapi::jiff::Timestamp::try_from(t).ok())
        .map_or_else(
            || str_at(object, "/status/phase").to_owned(),
            |t| format!("finished {t}"),
        );
    Summary { owner, state }
}

/// Facts beyond the target an action's preconditions need.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Now, for ages.
    pub now: Option<SystemTime>,
    /// ExpandPvc: whether the claim's StorageClass allows expansion.
    pub expandable: Option<bool>,
    /// DrainNode: the pods on the node.
    pub pods_on_node: Vec<Value>,
    /// DrainNode: why a pod on the node is protected (it, its namespace or
    /// an owner), by pod uid. A drain leaves these in place.
    pub protected_pods: std::collections::HashMap<String, String>,
    /// When the action began (drain deadlines count from here).
    pub started: Option<tokio::time::Instant>,
    /// The target's owners, nearest first (Pod → ReplicaSet → Deployment,
    /// Job → CronJob), and an HPA's scale target: protection follows them.
    pub owners: Vec<Value>,
    /// DeleteFailedPods: the workload's pods in phase Failed, oldest first.
    pub failed_pods: Vec<Value>,
    /// ForceDeletePod: the pod's node as read.
    pub pod_node: PodNode,
    /// ScaleWorkload: the HorizontalPodAutoscaler that scales the target,
    /// `Kind namespace/name`, if one does.
    pub scaled_by: Option<String>,
    /// RolloutUndo: the ReplicaSet of the Deployment's previous revision
    /// (the highest below its current one), if it still has one.
    pub previous_revision: Option<Value>,
    /// The field manager the remediator writes as: UncordonNode lifts only
    /// a cordon this manager owns.
    pub field_manager: String,
}

pub use nanny_common::kube::CORDONED_BY;
pub use nanny_proto::vocabulary::{RETRIED_AS, RETRIGGER_OF};
/// The annotation on a Job RetriggerJob created: the action's id (a resumed
/// run finds its own retry by it).
pub const RETRIGGERED_BY: &str = "nanny.ai/retriggered-by";
/// [`CORDONED_BY`] as a JSON pointer.
pub const CORDONED_BY_POINTER: &str = "/metadata/annotations/nanny.ai~1cordoned-by";

/// The revision a Deployment or its ReplicaSet carries
/// (`deployment.kubernetes.io/revision`); `None` when absent or unreadable.
pub fn revision(object: &Value) -> Option<u64> {
    object
        .pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
}

/// ForceDeletePod: what the pod's node is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PodNode {
    /// Not read (another action), or the pod names no node.
    #[default]
    Unknown,
    /// The Node object is gone.
    Gone,
    /// Ready: its kubelet will finish the deletion.
    Ready,
    /// Not ready: its Ready condition is not True, or it has none.
    NotReady,
}

/// The result of applying (or dry-running) a plan.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The change as a unified diff of the object's YAML (plus evictions).
    pub diff: String,
    /// Set when the action started but could not finish (a drain blocked by
    /// a PodDisruptionBudget until its deadline).
    pub failed: Option<String>,
    /// Whether anything was written (false for dry runs and for failures
    /// before the first write).
    pub wrote: bool,
    /// The object as the API server answered the patch (none for deletes).
    pub after: Option<Value>,
}

/// Runs actions with one client and field manager.
#[derive(Clone)]
pub struct Executor {
    client: Client,
    field_manager: String,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("field_manager", &self.field_manager)
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// An executor writing as `field_manager`.
    pub fn new(client: Client, field_manager: &str) -> Self {
        Self {
            client,
            field_manager: field_manager.to_owned(),
        }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A dynamic API for `kind` in `namespace` ("" for cluster-scoped).
    pub fn api(&self, kind: TargetKind, namespace: &str) -> Api<DynamicObject> {
        let resource = kind.resource();
        if kind.namespaced() {
            Api::namespaced_with(self.client.clone(), namespace, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        }
    }
}

/// The Kubernetes quantities of the set fields: CPU in millicores, memory in bytes.
fn quantities(resources: Option<&Resources>) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(r) = resources {
        if let Some(cpu) = r.cpu_millicores {
            out.push(("cpu", format!("{cpu}m")));
        }
        if let Some(memory) = r.memory_bytes {
            out.push(("memory", memory.to_string()));
        }
    }
    out
}

/// Why a drain leaves this pod alone, if it does.
pub fn drain_skip_reason(pod: &Value) -> Option<&'static str> {
    if pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(MIRROR_POD))
        .is_some()
    {
        return Some("mirror pod");
    }
    if controller(pod).is_some_and(|(kind, _)| kind == "DaemonSet") {
        return Some("DaemonSet pod");
    }
    if matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed") {
        return Some("already terminated");
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return Some("already terminating");
    }
    None
}

/// The controller owner reference of `object`, if any.
fn controller_ref(object: &Value) -> Option<&Value> {
    object
        .pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
}

/// Why `current` (with the owners in `facts`) must not be touched, if it
/// must not: the remediator's own check of the protections, whatever the
/// verdict says.
pub fn protection_refusal(
    protected: &nanny_common::protect::ProtectedResources,
    v: &Validated,
    current: &Value,
    facts: &Facts,
) -> Option<String> {
    // The live object may lack its kind (typed reads); the request names it.
    let mut target = current.clone();
    if str_at(&target, "/kind").is_empty() {
        target["kind"] = json!(v.target.kind);
    }
    let chain: Vec<&Value> = std::iter::once(&target).chain(&facts.owners).collect();
    protected.refusal(&chain)
}

/// The controlling owner's kind and uid.
pub fn controller(object: &Value) -> Option<(&str, &str)> {
    controller_ref(object).map(|o| {
        (
            o.get("kind").and_then(Value::as_str).unwrap_or_default(),
            o.get("uid").and_then(Value::as_str).unwrap_or_default(),
        )
    })
}

/// The object's condition of type `type_` when its status is `status`
/// ("True", "False"); a condition type appears once in a status.
pub fn condition<'a>(object: &'a Value, type_: &str, status: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| str_at(c, "/type") == type_ && str_at(c, "/status") == status)
}

/// When a Job finished: its Complete or Failed condition's transition time
/// (or completionTime).
pub fn job_finished_at(job: &Value) -> Option<SystemTime> {
    let condition =
        condition(job, "Complete", "True").or_else(|| condition(job, "Failed", "True"))?;
    let time = job
        .pointer("/status/completionTime")
        .or_else(|| condition.get("lastTransitionTime"))?
        .as_str()?;
    let timestamp: k8s_openapi::jiff::Timestamp = time.parse().ok()?;
    Some(SystemTime::from(timestamp))
}

/// A dynamic object as JSON.
///
/// # Errors
/// Never in practice: objects from the API server serialise.
pub fn to_value(object: &DynamicObject) -> Result<Value, Error> {
    serde_json::to_value(object).map_err(|e| Error::invalid("object", e.to_string()))
}

/// A 403 means RBAC or an admission policy refused the remediator's
/// identity: a refusal with nothing written. Other errors stay errors.
pub fn refusal_or_error(error: kube::Error, verb: &'static str, target: &str) -> Error {
    match &error {
        kube::Error::Api(status) if status.code == 403 => Error::Forbidden {
            verb,
            target: target.to_owned(),
            message: status.message.clone(),
        },
        kube::Error::Api(status) if status.code == 404 => Error::TargetGone {
            target: target.to_owned(),
        },
        _ => Error::kube(format!("{verb} {target}"), error),
    }
}

/// A Node's spec without the taints Kubernetes' own controllers manage
/// (`node.kubernetes.io/*`, e.g. `not-ready`, `unreachable`): the node
/// lifecycle controller adds them seconds after a node turns NotReady, so
/// they are not a change of the object a human decided on.
fn without_controller_taints(mut object: Value) -> Value {
    if let Some(taints) = object
        .pointer_mut("/spec/taints")
        .and_then(Value::as_array_mut)
    {
        taints.retain(|t| {
            !t["key"]
                .as_str()
                .is_some_and(|k| k.starts_with("node.kubernetes.io/"))
        });
        if taints.is_empty()
            && let Some(spec) = object.pointer_mut("/spec").and_then(Value::as_object_mut)
        {
            spec.remove("taints");
        }
    }
    object
}

#[cfg(test)]
mod tests;
