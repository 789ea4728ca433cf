//! Model explanations attached to HealingActions, after the fact: the
//! analyzer's model lane answers when it can, and the rule's action never
//! waits for it.
//!
//! An explanation goes to the newest action of the same policy, target and
//! action type. It is written to `status.explanation` at once when no step
//! of the action can be running (finished, or waiting on a human), and
//! otherwise kept until the action's next reconcile writes it, before that
//! reconcile steps the action — so it never makes a step's write conflict.

use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, ResourceExt as _,
    api::{Patch, PatchParams},
};
use nanny_crd::{ExplanationRecord, HealingAction, HealingPolicy, Phase};
use nanny_proto::v1 as pb;

use super::{Driver, key};

/// How often a pending explanation checks whether its action is quiet.
const SETTLE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// How long it keeps checking; an action still busy by then has its next
/// reconcile write it.
const SETTLE_FOR: std::time::Duration = std::time::Duration::from_secs(120);

/// The record of a model explanation, as attached at `now`.
pub fn record(explanation: &pb::Explanation, now: Timestamp) -> ExplanationRecord {
    let model = explanation.model.clone().unwrap_or_default();
    let name = if model.digest.is_empty() {
        format!("{}/{}", model.provider, model.model)
    } else {
        format!("{}/{}@{}", model.provider, model.model, model.digest)
    };
    let agreement = match pb::Agreement::try_from(explanation.agreement) {
        Ok(pb::Agreement::Agrees) => "Agrees",
        Ok(pb::Agreement::Disagrees) => "Disagrees",
        Ok(pb::Agreement::ModelOnly) => "ModelOnly",
        _ => "Silent",
    };
    let cut = |text: &str, max: usize| text.chars().take(max).collect::<String>();
    ExplanationRecord {
        incident: cut(&explanation.incident, 64),
        hypothesis: cut(&explanation.hypothesis, 1024),
        risk: cut(&explanation.risk, 1024),
        cited_evidence: explanation
            .cited_evidence
            .iter()
            .take(8)
            .map(|c| cut(c, 512))
            .collect(),
        model: cut(&name, 256),
        prompt_version: cut(&model.prompt_version, 64),
        agreement: agreement.to_owned(),
        at: Some(now.to_string()),
    }
}

/// Whether no step of the action can be running: finished (and no
/// rollback asked for) or waiting on a human.
fn quiet(action: &HealingAction) -> bool {
    let phase = action.phase();
    (phase.is_terminal() && !Driver::needs_driving(action))
        || matches!(phase, Phase::PendingApproval | Phase::Escalated)
}

/// The target uid and action type name `rec` proposes.
fn action_of(rec: &pb::Recommendation) -> Option<(String, String)> {
    let uid = rec.target.as_ref().map_or("", |t| t.uid.as_str());
    let kind = rec.action.as_ref().and_then(|a| a.kind.as_ref())?;
    Some((
        uid.to_owned(),
        crate::convert::action_type(kind).name().to_owned(),
    ))
}

/// Whether the action already carries this explanation.
fn has(action: &HealingAction, record: &ExplanationRecord) -> bool {
    action
        .status
        .as_ref()
        .and_then(|s| s.explanation.as_ref())
        .is_some_and(|e| {
            e.incident == record.incident
                && e.hypothesis == record.hypothesis
                && e.agreement == record.agreement
        })
}

impl Driver {
    /// Attaches the explanation `rec` carries to its action under `policy`;
    /// returns what became of it: `attached`, `pending` (written at the
    /// action's next reconcile), `unchanged`, `no-action` or `failed`.
    pub async fn explain(&self, policy: &HealingPolicy, rec: &pb::Recommendation) -> &'static str {
        let Some(explanation) = rec.explanation.as_ref() else {
            return "no-action";
        };
        let policy_ref = key(policy);
        let Some((uid, action_type)) = action_of(rec) else {
            return "no-action";
        };
        let record = record(explanation, Timestamp::now());
        let own = self
            .attach(&policy_ref, (&uid, &action_type), record.clone(), false)
            .await;
        // The incident's other actions (proposed from an earlier picture of
        // it, say a cordon before its drain) that have no explanation yet
        // get this one, as actions the model said nothing about.
        let siblings: Vec<(String, String)> = self
            .inner
            .incidents
            .lock()
            .ok()
            .and_then(|incidents| {
                incidents
                    .get(&(policy_ref.clone(), explanation.incident.clone()))
                    .cloned()
            })
            .unwrap_or_default()
            .into_iter()
            .filter(|sibling| *sibling != (uid.clone(), action_type.clone()))
            .collect();
        for (sibling_uid, sibling_type) in siblings {
            let silent = ExplanationRecord {
                agreement: "Silent".to_owned(),
                ..record.clone()
            };
            let outcome = self
                .attach(&policy_ref, (&sibling_uid, &sibling_type), silent, true)
                .await;
            tracing::debug!(%sibling_uid, %sibling_type, outcome, "The incident's explanation, for another of its actions.");
        }
        own
    }

    /// Remembers which action `rec` stands for under `policy`, by the
    /// incident the analyzer said it addresses, so the incident's
    /// explanation reaches it even when it comes with another picture's
    /// recommendations. Bounded: forgotten wholesale past 10 000 incidents.
    pub fn note_incident(&self, policy: &HealingPolicy, rec: &pb::Recommendation) {
        if rec.incident.is_empty() {
            return;
        }
        let Some(action) = action_of(rec) else {
            return;
        };
        if let Ok(mut incidents) = self.inner.incidents.lock() {
            if incidents.len() >= 10_000 {
                incidents.clear();
            }
            incidents
                .entry((key(policy), rec.incident.clone()))
                .or_default()
                .insert(action);
        }
    }

    /// Attaches `record` to the newest action of `policy_ref` on `target`
    /// (uid, action type): at once when it is quiet, else at its next
    /// reconcile. With `unexplained_only`, an action that has an
    /// explanation keeps it.
    async fn attach(
        &self,
        policy_ref: &str,
        (uid, action_type): (&str, &str),
        record: ExplanationRecord,
        unexplained_only: bool,
    ) -> &'static str {
        let newest = self
            .inner
            .ctx
            .actions
            .state()
            .into_iter()
            .filter(|a| {
                a.spec.policy_ref == policy_ref
                    && a.spec.target.uid == uid
                    && a.spec.action.type_.name() == action_type
            })
            .max_by_key(|a| a.creation_timestamp().map(|t| t.0));
        let (namespace, name) = match &newest {
            Some(action) => (action.namespace().unwrap_or_default(), action.name_any()),
            // Created a moment ago: the watch has not shown it yet.
            None => match self.inner.created.lock().ok().and_then(|created| {
                created
                    .get(&(
                        policy_ref.to_owned(),
                        uid.to_owned(),
                        action_type.to_owned(),
                    ))
                    .cloned()
            }) {
                Some(found) => found,
                None => return "no-action",
            },
        };
        if let Some(action) = newest.as_ref() {
            if has(action, &record)
                || (unexplained_only
                    && action
                        .status
                        .as_ref()
                        .is_some_and(|s| s.explanation.is_some()))
            {
                return "unchanged";
            }
            if quiet(action) {
                return match self.write_explanation(&namespace, &name, &record).await {
                    Ok(()) => "attached",
                    Err(error) => {
                        tracing::warn!(%error, action = %name, "Cannot attach the model's explanation.");
                        "failed"
                    }
                };
            }
        }
        let first = self.inner.explanations.lock().is_ok_and(|mut pending| {
            if unexplained_only && pending.contains_key(&(namespace.clone(), name.clone())) {
                return false;
            }
            pending
                .insert((namespace.clone(), name.clone()), record)
                .is_none()
        });
        // The action's next reconcile writes it; should that reconcile have
        // run already (the store lagging behind its last write), this does
        // once the store shows the action quiet. One such task per pending
        // action: a newer explanation replaces the record it writes.
        if first {
            let driver = self.clone();
            tokio::spawn(async move { driver.settle_explanation(namespace, name).await });
        }
        "pending"
    }

    /// Writes a pending explanation once its action is quiet, checking
    /// every [`SETTLE_EVERY`] for [`SETTLE_FOR`]; stops as soon as a
    /// reconcile has taken it.
    async fn settle_explanation(&self, namespace: String, name: String) {
        let key = (namespace, name);
        let started = std::time::Instant::now();
        while started.elapsed() < SETTLE_FOR {
            tokio::time::sleep(SETTLE_EVERY).await;
            let quiet_now = self
                .inner
                .ctx
                .actions
                .get(&kube::runtime::reflector::ObjectRef::new(&key.1).within(&key.0))
                .is_some_and(|a| quiet(&a));
            let record = {
                let Ok(mut pending) = self.inner.explanations.lock() else {
                    return;
                };
                if !pending.contains_key(&key) {
                    return;
                }
                if !quiet_now {
                    continue;
                }
                pending.remove(&key)
            };
            if let Some(record) = record
                && let Err(error) = self.write_explanation(&key.0, &key.1, &record).await
            {
                tracing::warn!(%error, action = %key.1, "Cannot attach the model's explanation.");
            }
            return;
        }
    }

    /// Writes the explanation kept for `action`, if any; called by its
    /// reconcile before any step.
    pub(super) async fn flush_explanation(&self, action: &HealingAction) {
        let key = (action.namespace().unwrap_or_default(), action.name_any());
        let Some(record) = self
            .inner
            .explanations
            .lock()
            .ok()
            .and_then(|mut pending| pending.remove(&key))
        else {
            return;
        };
        if has(action, &record) {
            return;
        }
        if let Err(error) = self.write_explanation(&key.0, &key.1, &record).await {
            tracing::warn!(%error, action = %key.1, "Cannot attach the model's explanation.");
        }
    }

    async fn write_explanation(
        &self,
        namespace: &str,
        name: &str,
        record: &ExplanationRecord,
    ) -> Result<(), kube::Error> {
        let api: Api<HealingAction> = Api::namespaced(self.inner.ctx.client.clone(), namespace);
        let patch = serde_json::json!({ "status": { "explanation": record } });
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        tracing::info!(action = %name, %namespace, incident = %record.incident, agreement = %record.agreement, "Model explanation attached.");
        Ok(())
    }
}
