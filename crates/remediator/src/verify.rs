//! Post-action verification: re-read the target over the verification
//! window until the action's effect shows (PASSED), or the window ends
//! (INEFFECTIVE), or the effect can no longer happen (FAILED).

use std::time::{Duration, SystemTime};

use kube::api::{DynamicObject, ListParams};
use nanny_proto::v1::{ExpandPvc, ScaleHpa, VerificationState, action::Kind as ActionKind};
use serde_json::Value;

use crate::{
    actions::{Executor, RETRIGGERED_BY, condition, controller, retry_name, to_value},
    diff::str_at,
    quantity,
    request::{TargetKind, Validated},
};

/// One look at the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The action worked.
    Passed(String),
    /// Not (yet) visible.
    Pending(String),
    /// It cannot work any more.
    Failed(String),
}

/// Re-runs `check` every `poll` until it is decided or `window` ends.
pub async fn watch<F, Fut>(
    window: Duration,
    poll: Duration,
    mut check: F,
) -> (VerificationState, String)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Check>,
{
    let deadline = tokio::time::Instant::now() + window;
    loop {
        match check().await {
            Check::Passed(message) => return (VerificationState::Passed, message),
            Check::Failed(message) => return (VerificationState::Failed, message),
            Check::Pending(message) if tokio::time::Instant::now() >= deadline => {
                return (
                    VerificationState::Ineffective,
                    format!("not effective within {}s: {message}", window.as_secs()),
                );
            }
            Check::Pending(_) => tokio::time::sleep(poll).await,
        }
    }
}

/// One verification look for `v`'s action, begun at `started`.
/// `stable`: how long a restarted pod must have been Ready. `evicted`: the
/// uids of the pods a drain evicted (the ones it left in place, protected
/// ones included, are no failure; `None`: any evictable pod left counts),
/// or of the failed pods DeleteFailedPods deleted.
pub async fn check(
    exec: &Executor,
    v: &Validated,
    owner_uid: Option<&str>,
    started: SystemTime,
    stable: Duration,
    evicted: Option<&[String]>,
) -> Check {
    let api = exec.api(v.kind, &v.target.namespace);
    let current = match api.get_opt(&v.target.name).await {
        Ok(object) => object.as_ref().map(to_value).transpose().ok().flatten(),
        Err(error) => return Check::Pending(format!("cannot read the target: {error}")),
    };
    let replaced = current
        .as_ref()
        .is_some_and(|c| str_at(c, "/metadata/uid") != v.target.uid);
    match &v.action {
        ActionKind::RestartPod(_) => {
            restart_pod(
                exec,
                v,
                owner_uid,
                current.as_ref(),
                replaced,
                started,
                stable,
            )
            .await
        }
        ActionKind::DeleteJob(_) => match current {
            Some(_) if !replaced => Check::Pending("the Job still exists".to_owned()),
            _ => Check::Passed("the Job is gone".to_owned()),
        },
        // The retry is what is verified; the failed Job stays as it was.
        ActionKind::RetriggerJob(_) => retry_started(exec, v).await,
        ActionKind::ForceDeletePod(_) => match current {
            Some(_) if !replaced => Check::Pending("the pod still exists".to_owned()),
            _ => Check::Passed("the pod is gone".to_owned()),
        },
        _ => {
            let Some(current) = current.filter(|_| !replaced) else {
                return Check::Failed(
                    "the target was deleted or replaced during verification".to_owned(),
                );
            };
            match &v.action {
                ActionKind::RolloutRestart(_) | ActionKind::PatchResources(_) => {
                    match rollout_complete(v.kind, &current) {
                        Check::Passed(rolled) => {
                            rollout_stable(exec, v, &current, started, stable, rolled).await
                        }
                        other => other,
                    }
                }
                ActionKind::ScaleHpa(scale) => hpa_below_max(scale, &current),
                ActionKind::ScaleWorkload(_) | ActionKind::RolloutUndo(_) => {
                    rollout_complete(v.kind, &current)
                }
                ActionKind::ResumeCronJob(_) => {
                    if current.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
                        Check::Failed("the CronJob is suspended again".to_owned())
                    } else {
                        Check::Passed("the CronJob runs on its schedule again".to_owned())
                    }
                }
                ActionKind::CordonNode(_) => schedulable(&current, false),
                ActionKind::UncordonNode(_) => schedulable(&current, true),
                ActionKind::DrainNode(_) => drained(exec, &current, evicted).await,
                ActionKind::ExpandPvc(expand) => expanded(expand, &current),
                ActionKind::DeleteFailedPods(_) => {
                    pods_gone(exec, &v.target.namespace, evicted.unwrap_or_default()).await
                }
                _ => Check::Passed(String::new()),
            }
        }
    }
}

/// Whether the Job RetriggerJob created (this action's, by its id) has
/// started or completed. How long it runs, and how it ends, is the Job's
/// own business: started is enough (a retry already failed when first seen
/// fails the verification; one that fails later is its own JobFailed, never
/// retried).
async fn retry_started(exec: &Executor, v: &Validated) -> Check {
    let name = retry_name(&v.target.name);
    let jobs = exec.api(TargetKind::Job, &v.target.namespace);
    let retry = match jobs.get_opt(&name).await {
        Ok(Some(job)) => match to_value(&job) {
            Ok(job) => job,
            Err(error) => return Check::Pending(format!("cannot read Job {name}: {error}")),
        },
        Ok(None) => return Check::Failed(format!("the retry Job {name} is gone")),
        Err(error) => return Check::Pending(format!("cannot read Job {name}: {error}")),
    };
    let by = retry
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(RETRIGGERED_BY))
        .and_then(Value::as_str);
    if by != Some(v.action_id.as_str()) {
        return Check::Failed(format!("Job {name} is not this action's retry"));
    }
    if let Some(failed) = condition(&retry, "Failed", "True") {
        return Check::Failed(format!(
            "the retry Job {name} failed too ({})",
            str_at(failed, "/reason")
        ));
    }
    if condition(&retry, "Complete", "True").is_some() {
        return Check::Passed(format!("the retry Job {name} completed"));
    }
    let active = retry
        .pointer("/status/active")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if active > 0 || retry.pointer("/status/startTime").is_some() {
        Check::Passed(format!(
            "the retry Job {name} started ({active} active pods)"
        ))
    } else {
        Check::Pending(format!("the retry Job {name} has not started"))
    }
}

/// Whether every pod in `uids` is gone from `namespace`.
async fn pods_gone(exec: &Executor, namespace: &str, uids: &[String]) -> Check {
    let pods = exec.api(TargetKind::Pod, namespace);
    let list = match pods.list(&ListParams::default()).await {
        Ok(list) => list,
        Err(error) => return Check::Pending(format!("cannot list pods: {error}")),
    };
    let left: Vec<String> = list
        .items
        .iter()
        .filter(|p| p.metadata.uid.as_ref().is_some_and(|u| uids.contains(u)))
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect();
    if left.is_empty() {
        Check::Passed(format!("the {} failed pods are gone", uids.len()))
    } else {
        Check::Pending(format!("still there: {}", left.join(", ")))
    }
}

async fn restart_pod(
    exec: &Executor,
    v: &Validated,
    owner_uid: Option<&str>,
    current: Option<&Value>,
    replaced: bool,
    started: SystemTime,
    stable: Duration,
) -> Check {
    if current.is_some() && !replaced {
        return Check::Pending("the old pod is still terminating".to_owned());
    }
    let Some(owner) = owner_uid.filter(|uid| !uid.is_empty()) else {
        return Check::Passed("the bare pod is gone".to_owned());
    };
    let pods = exec.api(TargetKind::Pod, &v.target.namespace);
    let list = match pods.list(&ListParams::default()).await {
        Ok(list) => list,
        Err(error) => return Check::Pending(format!("cannot list pods: {error}")),
    };
    // Creation timestamps have second precision.
    let since = started - Duration::from_secs(1);
    let replacements: Vec<Value> = list
        .items
        .iter()
        .filter_map(|p: &DynamicObject| to_value(p).ok())
        .filter(|p| controller(p).is_some_and(|(_, uid)| uid == owner))
        .filter(|p| str_at(p, "/metadata/uid") != v.target.uid)
        .filter(|p| {
            str_at(p, "/metadata/creationTimestamp")
                .parse::<k8s_openapi::jiff::Timestamp>()
                .is_ok_and(|t| SystemTime::from(t) >= since)
        })
        .collect();
    if replacements.is_empty() {
        return Check::Pending("no replacement pod yet".to_owned());
    }
    for pod in &replacements {
        let name = str_at(pod, "/metadata/name");
        // When the pod last turned Ready, if it is Ready now.
        let ready_since = condition(pod, "Ready", "True").map(|c| {
            c["lastTransitionTime"]
                .as_str()
                .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
                .map_or(SystemTime::now(), SystemTime::from)
        });
        let crash_looping = pod
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.pointer("/state/waiting/reason").and_then(Value::as_str)
                        == Some("CrashLoopBackOff")
                })
            });
        if let Some(since) = ready_since
            && !crash_looping
        {
            let ready_for = SystemTime::now().duration_since(since).unwrap_or_default();
            if ready_for >= stable {
                return Check::Passed(format!(
                    "replacement pod {name} has been Ready for {}s",
                    ready_for.as_secs()
                ));
            }
            return Check::Pending(format!(
                "replacement pod {name} has been Ready for only {}s of {}s",
                ready_for.as_secs(),
                stable.as_secs()
            ));
        }
        if crash_looping {
            return Check::Pending(format!("replacement pod {name} is in CrashLoopBackOff"));
        }
    }
    Check::Pending(format!(
        "replacement pod {} is not Ready",
        str_at(&replacements[0], "/metadata/name")
    ))
}

/// After a rollout: the workload's pods must stay Ready, without restarts,
/// for `stable` — a new limit that still OOMs, or a restart into the same
/// crash, is not a success just because the rollout finished.
async fn rollout_stable(
    exec: &Executor,
    v: &Validated,
    workload: &Value,
    started: SystemTime,
    stable: Duration,
    rolled: String,
) -> Check {
    let selector: Vec<String> = workload
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                .collect()
        })
        .unwrap_or_default();
    if selector.is_empty() {
        return Check::Passed(rolled);
    }
    let pods = exec.api(TargetKind::Pod, &v.target.namespace);
    let list = match pods
        .list(&ListParams::default().labels(&selector.join(",")))
        .await
    {
        Ok(list) => list,
        Err(error) => return Check::Pending(format!("cannot list pods: {error}")),
    };
    for pod in list
        .items
        .iter()
        .filter_map(|p: &DynamicObject| to_value(p).ok())
    {
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let name = str_at(&pod, "/metadata/name");
        let unhealthy = pod
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter().find_map(|c| {
                    let waiting = c.pointer("/state/waiting/reason").and_then(Value::as_str);
                    let last = c
                        .pointer("/lastState/terminated/reason")
                        .and_then(Value::as_str);
                    if waiting == Some("CrashLoopBackOff") || int(c, "/restartCount") > 0 {
                        Some(last.or(waiting).unwrap_or("restarting").to_owned())
                    } else {
                        None
                    }
                })
            });
        if let Some(reason) = unhealthy {
            return Check::Pending(format!(
                "{rolled}, but pod {name} keeps restarting ({reason})"
            ));
        }
    }
    let elapsed = SystemTime::now()
        .duration_since(started)
        .unwrap_or_default();
    if elapsed < stable {
        return Check::Pending(format!(
            "{rolled}; watching the pods for {}s of {}s",
            elapsed.as_secs(),
            stable.as_secs()
        ));
    }
    Check::Passed(format!("{rolled}; pods stable for {}s", elapsed.as_secs()))
}

fn int(value: &Value, pointer: &str) -> i64 {
    value.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// Whether a workload's latest spec has rolled out to all replicas.
pub fn rollout_complete(kind: TargetKind, workload: &Value) -> Check {
    let generation = int(workload, "/metadata/generation");
    if int(workload, "/status/observedGeneration") < generation {
        return Check::Pending("the controller has not observed the change yet".to_owned());
    }
    let (want, updated, available) = match kind {
        TargetKind::DaemonSet => (
            int(workload, "/status/desiredNumberScheduled"),
            int(workload, "/status/updatedNumberScheduled"),
            int(workload, "/status/numberAvailable"),
        ),
        TargetKind::StatefulSet => (
            workload
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1),
            int(workload, "/status/updatedReplicas"),
            int(workload, "/status/availableReplicas"),
        ),
        _ => (
            workload
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1),
            int(workload, "/status/updatedReplicas"),
            int(workload, "/status/availableReplicas"),
        ),
    };
    let total = int(workload, "/status/replicas");
    if updated >= want && available >= want && (kind == TargetKind::DaemonSet || total <= want) {
        Check::Passed(format!(
            "rolled out: {updated}/{want} updated and available"
        ))
    } else {
        Check::Pending(format!(
            "rolling out: {updated}/{want} updated, {available}/{want} available"
        ))
    }
}

/// Whether an HPA has room below its (new) maximum.
pub fn hpa_below_max(scale: &ScaleHpa, hpa: &Value) -> Check {
    let max = hpa
        .pointer("/spec/maxReplicas")
        .and_then(Value::as_i64)
        .unwrap_or_default();
    if max != i64::from(scale.max_replicas) {
        return Check::Failed(format!(
            "maxReplicas is {max}, not {}: someone else changed the HPA",
            scale.max_replicas
        ));
    }
    let desired = int(hpa, "/status/desiredReplicas");
    let limited = condition(hpa, "ScalingLimited", "True")
        .is_some_and(|c| str_at(c, "/reason") == "TooManyReplicas");
    if desired < max && !limited {
        Check::Passed(format!(
            "desired replicas {desired} below maxReplicas {max}"
        ))
    } else {
        Check::Pending(format!(
            "desired replicas {desired} of maxReplicas {max}{}",
            if limited {
                ", still limited by TooManyReplicas"
            } else {
                ""
            }
        ))
    }
}

fn schedulable(node: &Value, want: bool) -> Check {
    let unschedulable = node
        .pointer("/spec/unschedulable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if unschedulable != want {
        Check::Passed(
            if want {
                "the node is schedulable"
            } else {
                "the node is cordoned"
            }
            .to_owned(),
        )
    } else {
        Check::Pending(
            if want {
                "the node is still cordoned"
            } else {
                "the node is still schedulable"
            }
            .to_owned(),
        )
    }
}

async fn drained(exec: &Executor, node: &Value, evicted: Option<&[String]>) -> Check {
    if let Check::Pending(message) = schedulable(node, false) {
        return Check::Failed(format!("{message}: someone uncordoned it"));
    }
    match exec.pods_on_node(str_at(node, "/metadata/name")).await {
        Ok(pods) => {
            let left: Vec<String> = pods
                .iter()
                .filter(|p| match evicted {
                    Some(uids) => uids.iter().any(|u| u == str_at(p, "/metadata/uid")),
                    None => crate::actions::drain_skip_reason(p).is_none(),
                })
                .map(|p| {
                    format!(
                        "{}/{}",
                        str_at(p, "/metadata/namespace"),
                        str_at(p, "/metadata/name")
                    )
                })
                .collect();
            if left.is_empty() {
                Check::Passed("the node is cordoned and the drained pods are gone".to_owned())
            } else {
                Check::Pending(format!("pods still on the node: {}", left.join(", ")))
            }
        }
        Err(error) => Check::Pending(format!("cannot list the node's pods: {error}")),
    }
}

fn expanded(expand: &ExpandPvc, claim: &Value) -> Check {
    let capacity = str_at(claim, "/status/capacity/storage");
    match quantity::parse(capacity) {
        Some(size) if size >= i128::from(expand.new_size_bytes) => {
            Check::Passed(format!("capacity is {capacity}"))
        }
        _ => Check::Pending(format!(
            "capacity is {capacity:?}, waiting for {} bytes",
            expand.new_size_bytes
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn watch_reports_ineffective_when_the_window_ends() {
        let mut looks = 0;
        let (state, message) = watch(Duration::from_secs(10), Duration::from_secs(1), || {
            looks += 1;
            async { Check::Pending("still crashing".to_owned()) }
        })
        .await;
        assert_eq!(state, VerificationState::Ineffective);
        assert_eq!(message, "not effective within 10s: still crashing");
        assert_eq!(looks, 11);
    }

    #[tokio::test(start_paused = true)]
    async fn watch_stops_at_the_first_decision() {
        let mut looks = 0;
        let (state, _) = watch(Duration::from_secs(10), Duration::from_secs(1), || {
            looks += 1;
            let n = looks;
            async move {
                if n == 3 {
                    Check::Passed("ok".to_owned())
                } else {
                    Check::Pending("wait".to_owned())
                }
            }
        })
        .await;
        assert_eq!(state, VerificationState::Passed);
        assert_eq!(looks, 3);
    }

    #[test]
    fn rollouts_complete_only_when_every_replica_is_updated() {
        let deployment = |observed, updated, available, replicas| {
            json!({ "metadata": { "generation": 2 }, "spec": { "replicas": 2 },
                    "status": { "observedGeneration": observed, "updatedReplicas": updated, "availableReplicas": available, "replicas": replicas } })
        };
        assert!(matches!(
            rollout_complete(TargetKind::Deployment, &deployment(1, 2, 2, 2)),
            Check::Pending(_)
        ));
        assert!(matches!(
            rollout_complete(TargetKind::Deployment, &deployment(2, 1, 2, 3)),
            Check::Pending(_)
        ));
        assert!(matches!(
            rollout_complete(TargetKind::Deployment, &deployment(2, 2, 2, 3)),
            Check::Pending(_)
        ));
        assert!(matches!(
            rollout_complete(TargetKind::Deployment, &deployment(2, 2, 2, 2)),
            Check::Passed(_)
        ));
    }

    #[test]
    fn hpa_passes_when_no_longer_pinned() {
        let scale = ScaleHpa {
            min_replicas: None,
            max_replicas: 8,
        };
        let hpa = |desired, limited: bool| {
            json!({ "spec": { "maxReplicas": 8 }, "status": { "desiredReplicas": desired,
                "conditions": [{ "type": "ScalingLimited", "status": if limited { "True" } else { "False" }, "reason": "TooManyReplicas" }] } })
        };
        assert!(matches!(
            hpa_below_max(&scale, &hpa(8, true)),
            Check::Pending(_)
        ));
        assert!(matches!(
            hpa_below_max(&scale, &hpa(6, true)),
            Check::Pending(_)
        ));
        assert!(matches!(
            hpa_below_max(&scale, &hpa(6, false)),
            Check::Passed(_)
        ));
        let changed = json!({ "spec": { "maxReplicas": 3 } });
        assert!(matches!(hpa_below_max(&scale, &changed), Check::Failed(_)));
    }
}
