//! Retention: a finished HealingAction is deleted once it has been finished
//! for `actions.retention_secs`, so the store (and every list of it) stays
//! bounded on a cluster Nanny watches for months. Open actions, and
//! finished ones with a requested rollback not yet carried out, are kept;
//! every delete carries the uid and resourceVersion it was judged on, so an
//! action changed meanwhile is kept. The safety gate's own audit log keeps
//! every verdict regardless. Sweeps run at most every
//! `actions.retention_sweep_secs` (a minute by default).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Preconditions},
    runtime::reflector::Store,
};
use nanny_crd::HealingAction;
use prometheus::{IntCounter, Registry};

use crate::actions::Driver;

/// Most deletes per sweep: a backlog drains over several sweeps instead of
/// in one burst against the API server.
const PER_SWEEP: usize = 50;

/// When `action` finished: when it entered its terminal phase (its
/// creation when an older writer left no phase time); `None` while it is
/// open or still needs driving.
pub fn finished_at(action: &HealingAction) -> Option<Timestamp> {
    let status = action.status.as_ref()?;
    if !status.phase?.is_terminal() || Driver::needs_driving(action) {
        return None;
    }
    status
        .phase_since
        .as_deref()
        .and_then(|t| t.parse().ok())
        .or_else(|| {
            let created = action.metadata.creation_timestamp.as_ref()?;
            Some(created.0)
        })
}

/// The actions finished for longer than `keep` at `now`, oldest first, at
/// most `limit`.
pub fn due(
    actions: &[Arc<HealingAction>],
    now: Timestamp,
    keep: Duration,
    limit: usize,
) -> Vec<Arc<HealingAction>> {
    let Ok(keep) = k8s_openapi::jiff::SignedDuration::try_from(keep) else {
        return Vec::new();
    };
    let mut old: Vec<(Timestamp, &Arc<HealingAction>)> = actions
        .iter()
        .filter_map(|a| finished_at(a).map(|t| (t, a)))
        .filter(|(finished, _)| now.duration_since(*finished) > keep)
        .collect();
    old.sort_by_key(|(finished, _)| *finished);
    old.into_iter()
        .take(limit)
        .map(|(_, a)| a.clone())
        .collect()
}

/// Deletes finished actions past their retention.
#[derive(Debug)]
pub struct Retention {
    keep: Option<Duration>,
    every: Duration,
    deleted: IntCounter,
    /// When the last sweep ran.
    last: Mutex<Option<Instant>>,
}

impl Retention {
    /// Keeps finished actions for `keep_secs` (0: forever), sweeping at most
    /// every `every`; registers `nanny_coordinator_actions_deleted_total`.
    ///
    /// # Errors
    /// When the metric cannot be registered.
    pub fn new(
        keep_secs: u64,
        every: Duration,
        registry: &Registry,
    ) -> Result<Self, prometheus::Error> {
        let deleted = IntCounter::new(
            "nanny_coordinator_actions_deleted_total",
            "Finished HealingActions deleted after the retention period.",
        )?;
        registry.register(Box::new(deleted.clone()))?;
        Ok(Self {
            keep: (keep_secs > 0).then(|| Duration::from_secs(keep_secs)),
            every,
            deleted,
            last: Mutex::new(None),
        })
    }

    /// Deletes up to [`PER_SWEEP`] actions past retention, each fenced by
    /// its uid and resourceVersion, unless the last sweep was less than
    /// `every` ago; failures are logged and retried at the next sweep.
    pub async fn sweep(&self, client: &Client, actions: &Store<HealingAction>) {
        let Some(keep) = self.keep else {
            return;
        };
        {
            // A poisoned lock fails closed: nothing is deleted.
            let Ok(mut last) = self.last.lock() else {
                return;
            };
            if last.is_some_and(|at| at.elapsed() < self.every) {
                return;
            }
            *last = Some(Instant::now());
        }
        for action in due(&actions.state(), Timestamp::now(), keep, PER_SWEEP) {
            let namespace = action.namespace().unwrap_or_default();
            let name = action.name_any();
            let api: Api<HealingAction> = Api::namespaced(client.clone(), &namespace);
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: action.uid(),
                    resource_version: action.resource_version(),
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {
                    self.deleted.inc();
                    tracing::info!(action = %name, namespace = %namespace, "Deleted a HealingAction past its retention.");
                }
                // Gone already, or changed since it was judged: next sweep.
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                Err(error) => {
                    tracing::warn!(%error, action = %name, "Cannot delete a HealingAction past its retention; retrying later.");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use nanny_crd::{HealingActionStatus, Phase};

    use super::*;

    fn action(name: &str, phase: Phase, since: &str) -> Arc<HealingAction> {
        let mut action: HealingAction = serde_json::from_value(serde_json::json!({
            "apiVersion": "nanny.ai/v1alpha1",
            "kind": "HealingAction",
            "metadata": { "name": name, "namespace": "shop" },
            "spec": {
                "policyRef": "shop/default",
                "target": { "kind": "Pod", "namespace": "shop", "name": "web-1", "uid": "u-1" },
                "action": { "type": "RestartPod" },
                "source": { "kind": "Rule", "name": "crashloop-restart" },
                "confidence": 100,
                "reasoning": "crash loop",
                "recommendationId": format!("rec-{name}"),
                "snapshotId": "snap-1",
            },
        }))
        .unwrap();
        action.status = Some(HealingActionStatus {
            phase: Some(phase),
            phase_since: Some(since.to_owned()),
            ..HealingActionStatus::default()
        });
        Arc::new(action)
    }

    #[test]
    fn only_actions_finished_longer_than_the_retention_are_due_oldest_first() {
        let now: Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        let day = Duration::from_secs(86_400);
        let actions = vec![
            action("recent", Phase::Succeeded, "2026-11-20T12:00:00Z"),
            action("old", Phase::Failed, "2026-10-01T12:00:00Z"),
            action("older", Phase::Recorded, "2026-09-01T12:00:00Z"),
            action("open", Phase::PendingApproval, "2026-09-01T12:00:00Z"),
            action("executing", Phase::Executing, "2026-09-01T12:00:00Z"),
        ];
        let names = |due: Vec<Arc<HealingAction>>| -> Vec<String> {
            due.iter().map(|a| a.name_any()).collect()
        };
        assert_eq!(names(due(&actions, now, 30 * day, 10)), ["older", "old"]);
        assert_eq!(names(due(&actions, now, 30 * day, 1)), ["older"]);
        assert_eq!(
            names(due(&actions, now, 2 * day, 10)),
            ["older", "old", "recent"]
        );
    }

    #[test]
    fn a_finished_action_with_a_rollback_requested_is_kept() {
        let now: Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        let mut asked = (*action("asked", Phase::Succeeded, "2026-09-01T12:00:00Z")).clone();
        asked.annotations_mut().insert(
            nanny_crd::ROLLBACK_ANNOTATION.to_owned(),
            "checkout broke".to_owned(),
        );
        assert_eq!(finished_at(&asked), None);
        assert!(due(&[Arc::new(asked)], now, Duration::from_secs(86_400), 10).is_empty());
    }
}
