//! Reading: the target under its preconditions, its owners and the facts
//! a plan needs (the StorageClass, the pods on a node).

use std::time::SystemTime;

use k8s_openapi::api::storage::v1::StorageClass;
use kube::{
    Api,
    api::{DynamicObject, ListParams, VersionMatch},
};
use nanny_proto::v1::action::Kind as ActionKind;
use serde_json::{Value, json};

use super::{
    Executor, Facts, PodNode, condition, controller_ref, refusal_or_error, to_value,
    without_controller_taints,
};
use crate::{
    diff::str_at,
    error::{Error, api_code},
    request::{TargetKind, Validated, describe},
    store::kube_message,
};

impl Executor {
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
            field_manager: self.field_manager.clone(),
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
            ActionKind::DeleteFailedPods(_) => {
                facts.failed_pods = self.failed_pods_of(v, current).await?;
            }
            ActionKind::ForceDeletePod(_) => {
                facts.pod_node = self.pod_node(str_at(current, "/spec/nodeName")).await?;
            }
            ActionKind::ScaleWorkload(_) => {
                facts.scaled_by = self.autoscaler_of(v).await?;
            }
            ActionKind::RolloutUndo(_) => {
                facts.previous_revision = self.previous_revision(v, current).await?;
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

    /// The ReplicaSet the Deployment `current` controls with the highest
    /// revision below its own: where `kubectl rollout undo` goes.
    ///
    /// # Errors
    /// [`Error::Forbidden`] or [`Error::Kube`].
    pub async fn previous_revision(
        &self,
        v: &Validated,
        current: &Value,
    ) -> Result<Option<Value>, Error> {
        let Some(now) = super::revision(current) else {
            return Ok(None);
        };
        let uid = str_at(current, "/metadata/uid");
        let resource = kube::discovery::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "apps",
            "v1",
            "ReplicaSet",
        ));
        let sets: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &v.target.namespace, &resource);
        let listed = sets.list(&ListParams::default()).await.map_err(|e| {
            refusal_or_error(
                e,
                "list",
                &format!("ReplicaSets of {}", describe(&v.target)),
            )
        })?;
        let mut best: Option<(u64, Value)> = None;
        for set in &listed.items {
            let set = to_value(set)?;
            let ours = controller_ref(&set).is_some_and(|o| str_at(o, "/uid") == uid);
            let Some(revision) = super::revision(&set).filter(|r| ours && *r < now) else {
                continue;
            };
            if best.as_ref().is_none_or(|(b, _)| revision > *b) {
                best = Some((revision, set));
            }
        }
        Ok(best.map(|(_, set)| set))
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

    /// The pods in phase Failed whose controller is the workload `current`
    /// (directly, or through a ReplicaSet it controls), oldest first.
    ///
    /// # Errors
    /// [`Error::Forbidden`] or [`Error::Kube`].
    pub async fn failed_pods_of(
        &self,
        v: &Validated,
        current: &Value,
    ) -> Result<Vec<Value>, Error> {
        let namespace = &v.target.namespace;
        let target = describe(&v.target);
        let pods = self.api(TargetKind::Pod, namespace);
        let failed = pods
            .list(&ListParams::default().fields("status.phase=Failed"))
            .await
            .map_err(|e| refusal_or_error(e, "list", &format!("failed pods of {target}")))?;
        let workload_uid = str_at(current, "/metadata/uid");
        // ReplicaSet uid → whether the workload controls it.
        let mut sets: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
        let mut out = Vec::new();
        for pod in failed.items.iter().map(to_value) {
            let pod = pod?;
            let Some(owner) = controller_ref(&pod) else {
                continue;
            };
            let (kind, uid) = (str_at(owner, "/kind"), str_at(owner, "/uid"));
            let ours = if uid == workload_uid {
                true
            } else if kind == "ReplicaSet" && v.kind == TargetKind::Deployment {
                if let Some(known) = sets.get(uid) {
                    *known
                } else {
                    let set = self
                        .get_object(namespace, "apps/v1", "ReplicaSet", str_at(owner, "/name"))
                        .await?;
                    let controlled = set.as_ref().is_some_and(|set| {
                        str_at(set, "/metadata/uid") == uid
                            && controller_ref(set)
                                .is_some_and(|o| str_at(o, "/uid") == workload_uid)
                    });
                    sets.insert(uid.to_owned(), controlled);
                    controlled
                }
            } else {
                false
            };
            if ours {
                out.push(pod);
            }
        }
        out.sort_by(|a, b| {
            str_at(a, "/metadata/creationTimestamp")
                .cmp(str_at(b, "/metadata/creationTimestamp"))
                .then_with(|| str_at(a, "/metadata/name").cmp(str_at(b, "/metadata/name")))
        });
        Ok(out)
    }

    /// What the node `name` is: gone, Ready, or not ready and why.
    ///
    /// # Errors
    /// [`Error::Forbidden`] or [`Error::Kube`].
    pub async fn pod_node(&self, name: &str) -> Result<PodNode, Error> {
        if name.is_empty() {
            return Ok(PodNode::Unknown);
        }
        let nodes = self.api(TargetKind::Node, "");
        let node = match nodes.get_opt(name).await {
            Ok(Some(node)) => to_value(&node)?,
            Ok(None) => return Ok(PodNode::Gone),
            Err(error) => return Err(refusal_or_error(error, "get", &format!("Node {name}"))),
        };
        Ok(if condition(&node, "Ready", "True").is_some() {
            PodNode::Ready
        } else {
            PodNode::NotReady
        })
    }

    /// The HorizontalPodAutoscaler whose scale target is `v`'s target, if
    /// any (`HorizontalPodAutoscaler namespace/name`).
    ///
    /// # Errors
    /// [`Error::Forbidden`] or [`Error::Kube`]: an unreadable list is not
    /// "none" (fail closed).
    pub async fn autoscaler_of(&self, v: &Validated) -> Result<Option<String>, Error> {
        let hpas = self.api(TargetKind::Hpa, &v.target.namespace);
        let list = hpas.list(&ListParams::default()).await.map_err(|e| {
            refusal_or_error(
                e,
                "list",
                &format!("HorizontalPodAutoscalers in {}", v.target.namespace),
            )
        })?;
        for hpa in list.items.iter().map(to_value) {
            let hpa = hpa?;
            if str_at(&hpa, "/spec/scaleTargetRef/kind") == v.target.kind
                && str_at(&hpa, "/spec/scaleTargetRef/name") == v.target.name
            {
                return Ok(Some(format!(
                    "HorizontalPodAutoscaler {}/{}",
                    v.target.namespace,
                    str_at(&hpa, "/metadata/name")
                )));
            }
        }
        Ok(None)
    }
}
