//! The actions: reading the target under its preconditions, planning the
//! exact write ([`plan`], one function per action kind), applying it (as a
//! server-side dry run first), and undoing it.

mod plan;

use std::time::{Duration, SystemTime};

use k8s_openapi::api::storage::v1::StorageClass;
use kube::{
    Api, Client,
    api::{
        DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions,
        PropagationPolicy, VersionMatch,
    },
};
use nanny_proto::v1::{Resources, action::Kind as ActionKind};
use serde_json::{Value, json};

pub use self::plan::plan;
use crate::{
    diff::{self, str_at},
    error::{Error, api_code},
    request::{TargetKind, Validated, describe},
    store::{Summary, TargetRecord, kube_message},
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

    /// Reads the target and checks it is the object the snapshot saw: same
    /// uid, and — when its resourceVersion moved on — the same spec and labels
    /// as at the snapshot's resourceVersion (status churn is fine).
    ///
    /// # Errors
    /// [`Error::TargetGone`], [`Error::TargetReplaced`], [`Error::TargetChanged`],
    /// [`Error::Forbidden`] or [`Error::Kube`].
    pub async fn fetch_target(&self, v: &Validated) -> Result<Value, Error> {
        let target = describe(&v.target);
        let api = self.api(v.kind, &v.target.namespace);
        let current = match api.get_opt(&v.target.name).await {
            Ok(Some(object)) => to_value(&object)?,
            Ok(None) => return Err(Error::TargetGone { target }),
            Err(error) => return Err(refusal_or_error(error, "get", &target)),
        };
        let uid = str_at(&current, "/metadata/uid");
        if uid != v.target.uid {
            return Err(Error::TargetReplaced {
                target,
                expected: v.target.uid.clone(),
                found: uid.to_owned(),
            });
        }
        if str_at(&current, "/metadata/resourceVersion") == v.target.resource_version {
            return Ok(current);
        }
        // The object as the snapshot saw it, read at exactly that version
        // (kept by the API server until compaction, minutes).
        let params = ListParams {
            field_selector: Some(format!("metadata.name={}", v.target.name)),
            resource_version: Some(v.target.resource_version.clone()),
            version_match: Some(VersionMatch::Exact),
            ..ListParams::default()
        };
        let then = match api.list(&params).await {
            Ok(list) => list
                .items
                .into_iter()
                .map(|o| to_value(&o))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .find(|o| str_at(o, "/metadata/uid") == v.target.uid),
            Err(error) if matches!(api_code(&error), Some(410 | 400 | 422 | 504)) => {
                return Err(Error::TargetChanged {
                    target,
                    what: format!(
                        "the snapshot's resourceVersion {} can no longer be compared ({}); take a new snapshot",
                        v.target.resource_version,
                        kube_message(&error)
                    ),
                });
            }
            Err(error) => return Err(refusal_or_error(error, "list", &target)),
        };
        let Some(then) = then else {
            return Err(Error::TargetChanged {
                target,
                what: format!(
                    "it did not exist at the snapshot's resourceVersion {}",
                    v.target.resource_version
                ),
            });
        };
        let (then, current_cmp) = (
            without_controller_taints(then),
            without_controller_taints(current.clone()),
        );
        for (pointer, what) in [("/spec", "its spec"), ("/metadata/labels", "its labels")] {
            if then.pointer(pointer) != current_cmp.pointer(pointer) {
                return Err(Error::TargetChanged {
                    target,
                    what: format!(
                        "{what} changed (resourceVersion {} → {})",
                        v.target.resource_version,
                        str_at(&current, "/metadata/resourceVersion")
                    ),
                });
            }
        }
        Ok(current)
    }

    /// Gathers the [`Facts`] the action's preconditions need.
    ///
    /// # Errors
    /// [`Error::Forbidden`] or [`Error::Kube`] when they cannot be read.
    pub async fn facts(&self, v: &Validated, current: &Value) -> Result<Facts, Error> {
        let mut facts = Facts {
            now: Some(SystemTime::now()),
            started: Some(tokio::time::Instant::now()),
            ..Facts::default()
        };
        match &v.action {
            ActionKind::ExpandPvc(_) => {
                let class = str_at(current, "/spec/storageClassName");
                facts.expandable = Some(if class.is_empty() {
                    false
                } else {
                    let classes: Api<StorageClass> = Api::all(self.client.clone());
                    match classes.get_opt(class).await {
                        Ok(found) => found
                            .and_then(|c| c.allow_volume_expansion)
                            .unwrap_or(false),
                        Err(error) => {
                            return Err(refusal_or_error(
                                error,
                                "get",
                                &format!("StorageClass {class}"),
                            ));
                        }
                    }
                });
            }
            ActionKind::DrainNode(_) => {
                facts.pods_on_node = self.pods_on_node(&v.target.name).await?;
            }
            _ => {}
        }
        facts.owners = self.owners(current).await?;
        Ok(facts)
    }

    /// The objects `object` belongs to, nearest first: its controller
    /// owner's chain, and for an HPA its scale target. An owner that is gone
    /// ends the chain; one that cannot be read is an error (fail closed).
    ///
    /// # Errors
    /// [`Error::Forbidden`] or an outage when an owner cannot be read.
    pub async fn owners(&self, object: &Value) -> Result<Vec<Value>, Error> {
        // Owner chains in Kubernetes are short; the bound stops a cycle.
        const MAX_DEPTH: usize = 5;
        let namespace = str_at(object, "/metadata/namespace").to_owned();
        let mut owners = Vec::new();
        let mut next = object
            .pointer("/spec/scaleTargetRef")
            .filter(|_| str_at(object, "/kind") == "HorizontalPodAutoscaler")
            .cloned()
            .or_else(|| controller_ref(object).cloned());
        if next.is_none()
            && str_at(object, "/kind") == "PersistentVolumeClaim"
            && let Some(set) = self.claim_stateful_set(object).await?
        {
            next = controller_ref(&set).cloned();
            owners.push(set);
        }
        while let Some(reference) = next.take() {
            let text = |key: &str| reference.get(key).and_then(Value::as_str).unwrap_or("");
            let Some(owner) = self
                .get_object(&namespace, text("apiVersion"), text("kind"), text("name"))
                .await?
            else {
                break;
            };
            next = controller_ref(&owner)
                .filter(|_| owners.len() + 1 < MAX_DEPTH)
                .cloned();
            owners.push(owner);
        }
        Ok(owners)
    }

    /// The StatefulSet whose volumeClaimTemplate made the claim `claim`
    /// (such claims carry no owner reference; the name is the link).
    async fn claim_stateful_set(&self, claim: &Value) -> Result<Option<Value>, Error> {
        let namespace = str_at(claim, "/metadata/namespace");
        for (template, set) in
            nanny_common::names::claim_template_candidates(str_at(claim, "/metadata/name"))
        {
            let Some(found) = self
                .get_object(namespace, "apps/v1", "StatefulSet", set)
                .await?
            else {
                continue;
            };
            let templates = found
                .pointer("/spec/volumeClaimTemplates")
                .and_then(Value::as_array);
            if templates
                .into_iter()
                .flatten()
                .any(|t| str_at(t, "/metadata/name") == template)
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    async fn get_object(
        &self,
        namespace: &str,
        api_version: &str,
        kind: &str,
        name: &str,
    ) -> Result<Option<Value>, Error> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        let resource = kube::discovery::ApiResource::from_gvk(&gvk);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        match api.get_opt(name).await {
            Ok(Some(found)) => {
                let mut value = to_value(&found)?;
                // A GET names its kind; make sure protection can read it.
                value["kind"] = json!(kind);
                Ok(Some(value))
            }
            Ok(None) => Ok(None),
            Err(error) => Err(refusal_or_error(
                error,
                "get",
                &format!("{kind} {namespace}/{name} (an owner of the target)"),
            )),
        }
    }

    /// Every pod bound to `node`, in every namespace.
    ///
    /// # Errors
    /// [`Error::Forbidden`] or [`Error::Kube`].
    pub async fn pods_on_node(&self, node: &str) -> Result<Vec<Value>, Error> {
        let pods = Api::<DynamicObject>::all_with(self.client.clone(), &TargetKind::Pod.resource());
        let list = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await
            .map_err(|e| refusal_or_error(e, "list", &format!("pods on Node {node}")))?;
        list.items.iter().map(to_value).collect()
    }

    /// Applies `plan` to the target read as `current`: as a server-side dry
    /// run (`dryRun=All`, which runs RBAC and admission like the real write)
    /// or for real.
    ///
    /// # Errors
    /// [`Error::Forbidden`] when RBAC or admission refuse (nothing written),
    /// [`Error::Kube`] for other API errors.
    pub async fn apply(
        &self,
        v: &Validated,
        current: &Value,
        plan: &Plan,
        dry_run: bool,
    ) -> Result<Applied, Error> {
        let target = describe(&v.target);
        let api = self.api(v.kind, &v.target.namespace);
        let params = PatchParams {
            dry_run,
            field_manager: Some(self.field_manager.clone()),
            ..PatchParams::default()
        };
        let patched = |result: Result<DynamicObject, kube::Error>| -> Result<Applied, Error> {
            let after = to_value(&result.map_err(|e| refusal_or_error(e, "patch", &target))?)?;
            Ok(Applied {
                diff: diff::fields(current, &after, &plan.shown_fields()),
                failed: None,
                wrote: !dry_run,
                after: Some(after),
            })
        };
        match &plan.write {
            Write::Merge(patch) => patched(
                api.patch(&v.target.name, &params, &Patch::Merge(patch))
                    .await,
            ),
            Write::Strategic(patch) => patched(
                api.patch(&v.target.name, &params, &Patch::Strategic(patch))
                    .await,
            ),
            Write::Delete {
                background,
                pin_version,
            } => {
                let delete = DeleteParams {
                    dry_run,
                    propagation_policy: background.then_some(PropagationPolicy::Background),
                    preconditions: Some(Preconditions {
                        uid: Some(v.target.uid.clone()),
                        resource_version: pin_version
                            .then(|| str_at(current, "/metadata/resourceVersion").to_owned()),
                    }),
                    ..DeleteParams::default()
                };
                api.delete(&v.target.name, &delete)
                    .await
                    .map_err(|e| refusal_or_error(e, "delete", &target))?;
                Ok(Applied {
                    diff: diff::deleted(current, &summary(current)),
                    failed: None,
                    wrote: !dry_run,
                    after: None,
                })
            }
            Write::Evict => {
                // No waiting for a budget: a restart the budget refuses now
                // is refused, with nothing written.
                let now = tokio::time::Instant::now();
                if let Some(blocked) = self
                    .evict(
                        &v.target.namespace,
                        &v.target.name,
                        &v.target.uid,
                        None,
                        dry_run,
                        now,
                    )
                    .await?
                {
                    return Err(Error::Blocked {
                        target,
                        message: blocked,
                    });
                }
                Ok(Applied {
                    diff: diff::deleted(current, &summary(current)).replacen("delete", "evict", 1),
                    failed: None,
                    wrote: !dry_run,
                    after: None,
                })
            }
            Write::Drain {
                cordon,
                evict,
                skipped,
                grace_seconds,
                deadline,
            } => {
                let steps = DrainSteps {
                    cordon,
                    evict,
                    skipped,
                    grace_seconds: *grace_seconds,
                    deadline: *deadline,
                };
                self.drain(v, current, steps, dry_run).await
            }
        }
    }

    /// Drains a node. Every eviction is first tried as a dry run (retrying a
    /// PodDisruptionBudget's 429 until the deadline) before the node is
    /// cordoned: a drain a PDB blocks ends Failed having changed nothing.
    async fn drain(
        &self,
        v: &Validated,
        current: &Value,
        steps: DrainSteps<'_>,
        dry_run: bool,
    ) -> Result<Applied, Error> {
        let DrainSteps {
            cordon,
            evict,
            skipped,
            grace_seconds,
            deadline,
        } = steps;
        let target = describe(&v.target);
        let api = self.api(TargetKind::Node, "");
        let mut params = PatchParams {
            dry_run: true,
            field_manager: Some(self.field_manager.clone()),
            ..PatchParams::default()
        };
        let preview = api
            .patch(&v.target.name, &params, &Patch::Merge(cordon))
            .await
            .map_err(|e| refusal_or_error(e, "patch", &target))?;
        let fields = ["/spec/unschedulable".to_owned()];
        let mut text = diff::fields(current, &to_value(&preview)?, &fields);
        for (namespace, name, _) in evict {
            text.push_str(&format!("evict Pod {namespace}/{name}\n"));
        }
        for skip in skipped {
            text.push_str(&format!("skip {skip}\n"));
        }
        for (namespace, name, uid) in evict {
            if let Some(blocked) = self
                .evict(namespace, name, uid, grace_seconds, true, deadline)
                .await?
            {
                return Err(Error::Blocked {
                    target,
                    message: format!(
                        "{blocked}; nothing was evicted and the node was not cordoned"
                    ),
                });
            }
        }
        if dry_run {
            return Ok(Applied {
                diff: text,
                failed: None,
                wrote: false,
                after: None,
            });
        }
        params.dry_run = false;
        let cordoned = api
            .patch(&v.target.name, &params, &Patch::Merge(cordon))
            .await
            .map_err(|e| refusal_or_error(e, "patch", &target))?;
        let after = Some(to_value(&cordoned)?);
        let mut evicted = Vec::new();
        for (namespace, name, uid) in evict {
            if let Some(blocked) = self
                .evict(namespace, name, uid, grace_seconds, false, deadline)
                .await?
            {
                return Ok(Applied {
                    diff: text,
                    failed: Some(format!(
                        "{blocked}; {target} is cordoned and {} of {} pods were evicted ({})",
                        evicted.len(),
                        evict.len(),
                        evicted.join(", ")
                    )),
                    wrote: true,
                    after,
                });
            }
            evicted.push(format!("{namespace}/{name}"));
        }
        Ok(Applied {
            diff: text,
            failed: None,
            wrote: true,
            after,
        })
    }

    /// Evicts one pod through the Eviction API. Returns `Some(reason)` when a
    /// PodDisruptionBudget still refuses at the deadline.
    async fn evict(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        grace_seconds: Option<i64>,
        dry_run: bool,
        deadline: tokio::time::Instant,
    ) -> Result<Option<String>, Error> {
        let pod = format!("Pod {namespace}/{name}");
        let mut delete_options = json!({ "preconditions": { "uid": uid } });
        if let Some(grace) = grace_seconds {
            delete_options["gracePeriodSeconds"] = json!(grace);
        }
        let body = json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": { "name": name, "namespace": namespace },
            "deleteOptions": delete_options,
        });
        let mut path = format!("/api/v1/namespaces/{namespace}/pods/{name}/eviction");
        if dry_run {
            path.push_str("?dryRun=All");
        }
        loop {
            let request = http::Request::post(&path)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(
                    serde_json::to_vec(&body)
                        .map_err(|e| Error::invalid("eviction", e.to_string()))?,
                )
                .map_err(|e| Error::invalid("eviction", e.to_string()))?;
            match self.client.request::<kube::core::Status>(request).await {
                Ok(_) => return Ok(None),
                // Gone already, or replaced by a new pod: nothing to evict.
                Err(error) if matches!(api_code(&error), Some(404 | 409)) => return Ok(None),
                Err(kube::Error::Api(status)) if status.code == 429 => {
                    if tokio::time::Instant::now() >= deadline {
                        // The causes name the budget and its numbers.
                        let causes: Vec<&str> = status
                            .details
                            .iter()
                            .flat_map(|d| &d.causes)
                            .map(|c| c.message.as_str())
                            .filter(|m| !m.is_empty())
                            .collect();
                        let mut message = status.message.clone();
                        if !causes.is_empty() {
                            message = format!("{message} ({})", causes.join("; "));
                        }
                        return Ok(Some(format!(
                            "eviction of {pod} was refused by its PodDisruptionBudget (until the deadline): {message}"
                        )));
                    }
                    // The API server suggests no retry interval for PDBs; a
                    // second keeps the load low and the deadline honest.
                    let wait = Duration::from_secs(1)
                        .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                    tokio::time::sleep(wait).await;
                }
                Err(error) => {
                    return Err(refusal_or_error(
                        error,
                        "create",
                        &format!("eviction of {pod}"),
                    ));
                }
            }
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

/// When a Job finished: its Complete or Failed condition's transition time
/// (or completionTime).
pub fn job_finished_at(job: &Value) -> Option<SystemTime> {
    let condition = job
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| {
            matches!(
                c.get("type").and_then(Value::as_str),
                Some("Complete" | "Failed")
            ) && c.get("status").and_then(Value::as_str) == Some("True")
        })?;
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
