//! Applying a plan: every write as a server-side dry run first, evictions
//! through the Eviction API (PodDisruptionBudgets decide), drains.

use std::time::Duration;

use kube::api::{
    DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use serde_json::{Value, json};

use super::{
    Applied, DrainSteps, Executor, Plan, RETRIGGERED_BY, Write, refusal_or_error, summary, to_value,
};
use crate::{
    diff::{self, str_at},
    error::{Error, api_code},
    request::{TargetKind, Validated, describe},
};

impl Executor {
    /// Applies `plan` to the target read as `current`: as a server-side dry
    /// run (`dryRun=All`, which runs RBAC and admission like the real write)
    /// or for real.
    ///
    /// # Errors
    /// [`Error::Forbidden`] when RBAC or admission refuse (nothing written),
    /// [`Error::Kube`] for other API errors.
    #[expect(clippy::too_many_lines, reason = "one arm per kind of write")]
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
                force,
            } => {
                let delete = DeleteParams {
                    dry_run,
                    grace_period_seconds: force.then_some(0),
                    propagation_policy: background.then_some(PropagationPolicy::Background),
                    preconditions: Some(Preconditions {
                        uid: Some(v.target.uid.clone()),
                        resource_version: pin_version
                            .then(|| str_at(current, "/metadata/resourceVersion").to_owned()),
                    }),
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
            Write::DeletePods { pods, shown } => self.delete_pods(pods, shown, dry_run).await,
            Write::Create {
                object,
                shown,
                mark,
            } => self.create(v, object, shown, mark, dry_run).await,
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

    /// Marks the target, then creates `object` in the target's API and
    /// namespace, the create tried as a dry run before anything is written.
    /// An object of that name already there is this action's own (a
    /// resumed run) when it carries the action's id, and a refusal
    /// otherwise. A create refused after the mark is a failed action that
    /// says so (the mark stays: the Job is not run again by another action).
    async fn create(
        &self,
        v: &Validated,
        object: &Value,
        shown: &[String],
        mark: &Value,
        dry_run: bool,
    ) -> Result<Applied, Error> {
        let name = str_at(object, "/metadata/name").to_owned();
        let created = format!("{} {}/{name}", v.target.kind, v.target.namespace);
        let api = self.api(v.kind, &v.target.namespace);
        let body: DynamicObject = serde_json::from_value(object.clone())
            .map_err(|e| Error::invalid("object", e.to_string()))?;
        let post = |dry_run: bool| PostParams {
            dry_run,
            field_manager: Some(self.field_manager.clone()),
        };
        let mut applied = Applied {
            diff: shown.iter().map(|line| format!("{line}\n")).collect(),
            failed: None,
            wrote: false,
            after: None,
        };
        // Already there: this action's own retry (a resumed run), or a Job
        // nobody may replace.
        let existing = api
            .get_opt(&name)
            .await
            .map_err(|e| refusal_or_error(e, "get", &created))?;
        let ours = existing.as_ref().is_some_and(|e| {
            e.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(RETRIGGERED_BY))
                == Some(&v.action_id)
        });
        if existing.is_some() && !ours {
            return Err(Error::Precondition {
                target: describe(&v.target),
                message: format!(
                    "{created} already exists and is not this action's retry: delete or rename it first"
                ),
            });
        }
        if !ours {
            api.create(&post(true), &body)
                .await
                .map_err(|e| refusal_or_error(e, "create", &created))?;
        }
        if dry_run {
            return Ok(applied);
        }
        let params = PatchParams {
            field_manager: Some(self.field_manager.clone()),
            ..PatchParams::default()
        };
        api.patch(&v.target.name, &params, &Patch::Merge(mark))
            .await
            .map_err(|e| refusal_or_error(e, "patch", &describe(&v.target)))?;
        applied.wrote = true;
        if ours {
            return Ok(applied);
        }
        match api.create(&post(false), &body).await {
            Ok(_) => {}
            Err(error) if api_code(&error) == Some(409) => {}
            Err(error) => {
                applied.failed = Some(format!(
                    "{} is marked as run again, but creating {created} failed: {}",
                    describe(&v.target),
                    refusal_or_error(error, "create", &created)
                ));
            }
        }
        Ok(applied)
    }

    /// Deletes each pod with its uid as precondition, every delete tried as
    /// a server-side dry run first: one RBAC or admission refusal writes
    /// nothing. A pod gone (or replaced under its name) meanwhile is skipped.
    async fn delete_pods(
        &self,
        pods: &[(String, String, String)],
        shown: &[String],
        dry_run: bool,
    ) -> Result<Applied, Error> {
        let diff: String = shown.iter().map(|line| format!("{line}\n")).collect();
        for pass_dry in [true, false] {
            if !pass_dry && dry_run {
                break;
            }
            for (namespace, name, uid) in pods {
                let api = self.api(TargetKind::Pod, namespace);
                let delete = DeleteParams {
                    dry_run: pass_dry,
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(name, &delete).await {
                    Ok(_) => {}
                    Err(error) if matches!(api_code(&error), Some(404 | 409)) => {}
                    Err(error) => {
                        return Err(refusal_or_error(
                            error,
                            "delete",
                            &format!("Pod {namespace}/{name}"),
                        ));
                    }
                }
            }
        }
        Ok(Applied {
            diff,
            failed: None,
            wrote: !dry_run,
            after: None,
        })
    }

    /// Drains a node. Every eviction is first tried as a dry run (retrying a
    /// PodDisruptionBudget's 429 until the deadline) before the node is
    /// cordoned: a drain a PDB blocks ends Failed having changed nothing.
    #[expect(
        clippy::too_many_lines,
        reason = "dry-run every eviction, cordon, then evict: one sequence that must not half-apply"
    )]
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
