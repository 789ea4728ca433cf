//! The live timeline: each HealingAction's issue → recommendation →
//! verdict → action → verification, printed as it happens.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use futures::StreamExt as _;
use kube::{
    Api, ResourceExt as _,
    runtime::{WatchStreamExt as _, watcher},
};
use nanny_crd::{HealingAction, Phase, SourceKind, TargetRef};
use tokio::task::JoinHandle;

/// Which scenario an action belongs to: (scenario, target namespace, name prefix).
pub(super) type Labels = Arc<Mutex<Vec<(&'static str, String, String)>>>;

pub(super) fn label_of(labels: &Labels, target: &TargetRef) -> Option<&'static str> {
    labels
        .lock()
        .ok()?
        .iter()
        .find(|(_, ns, prefix)| *ns == target.namespace && target.name.starts_with(prefix.as_str()))
        .map(|(label, _, _)| *label)
}

#[derive(Default)]
pub(super) struct Seen {
    pub(super) announced: bool,
    pub(super) phase: Option<Phase>,
    pub(super) verdict: bool,
}

pub(super) fn stamp(t0: Instant) -> String {
    let secs = t0.elapsed().as_secs();
    format!("[{:>2}:{:02}]", secs / 60, secs % 60)
}

/// Prints each HealingAction's progress as the coordinator records it.
#[expect(
    clippy::too_many_lines,
    reason = "one watch loop printing each action's transitions"
)]
pub(super) fn timeline(
    actions: Api<HealingAction>,
    labels: Labels,
    t0: Instant,
    show_all: bool,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
        let stream = watcher(actions, watcher::Config::default())
            .default_backoff()
            .applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let Ok(action) = event else { continue };
            let label = label_of(&labels, &action.spec.target);
            if label.is_none() && !show_all {
                // Another test's node or kube-system pod in the shared cluster.
                continue;
            }
            let label = label.unwrap_or("-");
            let name = action.name_any();
            let entry = seen.entry(name.clone()).or_default();
            let status = action.status.clone().unwrap_or_default();
            let indent = " ".repeat(24);
            if !entry.announced {
                entry.announced = true;
                let spec = &action.spec;
                let t = &spec.target;
                let object = if t.namespace.is_empty() {
                    format!("{} {}", t.kind, t.name)
                } else {
                    format!("{} {}/{}", t.kind, t.namespace, t.name)
                };
                // Issue fingerprints (`issue:…`) mean nothing to a reader.
                let evidence: Vec<&str> = spec
                    .evidence
                    .iter()
                    .map(String::as_str)
                    .filter(|e| !e.starts_with("issue:"))
                    .collect();
                let evidence = if evidence.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", evidence.join("; "))
                };
                println!(
                    "{} {label:<15} issue detected on {object}{evidence}",
                    stamp(t0)
                );
                let source = match spec.source.kind {
                    SourceKind::Rule => format!("rule {}", spec.source.name),
                    SourceKind::Model => format!(
                        "AI {}{}",
                        spec.source.name,
                        spec.source
                            .provider
                            .as_deref()
                            .map(|p| format!(" via {p}"))
                            .unwrap_or_default()
                    ),
                };
                println!(
                    "{indent}→ recommend {:?}{} by {source}, confidence {}%: {}",
                    spec.action.type_,
                    params(&spec.action.params),
                    spec.confidence,
                    spec.reasoning
                );
                println!("{indent}  recorded as HealingAction {name}");
            }
            if let Some(verdict) = &status.verdict
                && !entry.verdict
            {
                entry.verdict = true;
                let why = if verdict.reasons.is_empty() {
                    String::new()
                } else {
                    format!(": {}", verdict.reasons.join("; "))
                };
                println!(
                    "{} {label:<15} verdict {}{why} [{}]",
                    stamp(t0),
                    verdict.decision,
                    verdict.matched_rules.join(", ")
                );
            }
            if status.phase != entry.phase
                && let Some(phase) = status.phase
            {
                entry.phase = Some(phase);
                let (verification, error) = status
                    .result
                    .as_ref()
                    .map(|r| (r.verification.as_str(), r.error.as_str()))
                    .unwrap_or_default();
                let line = match phase {
                    Phase::Proposed | Phase::Recorded => None,
                    Phase::PendingApproval => Some("waiting for a human's approval".to_owned()),
                    Phase::Approved => Some(match &action.spec.approval {
                        Some(a) => format!("approved by {}", a.by),
                        None => "approved".to_owned(),
                    }),
                    Phase::Executing => Some(format!(
                        "action: remediator executes {:?}",
                        action.spec.action.type_
                    )),
                    Phase::Verifying => Some("acted; verifying that it helped".to_owned()),
                    Phase::Succeeded => Some(format!("✔ verified{}", nonempty(": ", verification))),
                    Phase::Failed => Some(format!(
                        "✘ failed{}{}",
                        nonempty(": ", error),
                        nonempty(" / ", verification)
                    )),
                    Phase::Denied => Some(
                        if status.verdict.is_some() && action.spec.approval.is_none() {
                            "⛔ denied by the safety gate: nothing was changed".to_owned()
                        } else {
                            "⛔ rejected: nothing was changed".to_owned()
                        },
                    ),
                    Phase::RolledBack => Some("↩ rolled back".to_owned()),
                    Phase::Expired => Some("⌛ expired: nobody approved it in time".to_owned()),
                    Phase::Escalated => {
                        Some("⚠ escalated: the remedies did not help; a human decides".to_owned())
                    }
                    Phase::Resolved => Some("escalation resolved".to_owned()),
                };
                if let Some(line) = line {
                    println!("{} {label:<15} {line}", stamp(t0));
                }
            }
        }
    })
}

pub(super) fn nonempty(prefix: &str, text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("{prefix}{text}")
    }
}

pub(super) fn params(params: &nanny_crd::ActionParams) -> String {
    let entries = params.entries();
    if entries.is_empty() {
        return String::new();
    }
    let list: Vec<String> = entries.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(" ({})", list.join(", "))
}

// ---------------------------------------------------------------------------
// Scenarios.
