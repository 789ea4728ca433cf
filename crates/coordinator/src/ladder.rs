//! The remediation ladder. An incident is one issue kind on one workload
//! (or on the target, when it belongs to none) under one policy. What was
//! tried in it, and whether it helped, is read from the HealingActions
//! themselves: durable, the same for every replica, and kept across
//! restarts. An action that did not help `maxIneffective` times is not
//! proposed again in the incident; the next rung is, and at the top a human
//! is asked, once.

use std::{collections::BTreeMap, fmt::Write as _, sync::Arc, time::Duration};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use nanny_crd::{ActionType, HealingAction, Ladder, SourceKind, Verified};
use nanny_proto::v1::{self as pb, ClusterSnapshot};

/// The source name of the actions the ladder itself proposes.
pub const SOURCE: &str = "nanny.ai/ladder";

/// One incident: policy, workload (or target) uid and issue kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// `namespace/name` of the policy.
    pub policy_ref: String,
    /// The workload's uid, or the target's when it belongs to none.
    pub workload: String,
    /// The issue kind as the collector names it, e.g. `CRASH_LOOP_BACK_OFF`.
    pub issue: String,
}

impl Incident {
    /// The incident a recorded action belongs to; `None` for actions
    /// recorded without an issue kind.
    pub fn of(action: &HealingAction) -> Option<Self> {
        let spec = &action.spec;
        Some(Self {
            policy_ref: spec.policy_ref.clone(),
            workload: spec
                .workload_uid
                .clone()
                .unwrap_or_else(|| spec.target.uid.clone()),
            issue: spec.issue_kind.clone()?,
        })
    }

    /// The incident of a recommendation: the kind of the first of its
    /// issues the snapshot holds.
    pub fn of_recommendation(
        policy_ref: &str,
        rec: &pb::Recommendation,
        snapshot: &ClusterSnapshot,
        workload_uid: Option<&str>,
    ) -> Option<Self> {
        let issue = snapshot
            .issues
            .iter()
            .find(|i| rec.issue_fingerprints.contains(&i.fingerprint))?;
        let kind = pb::IssueKind::try_from(issue.kind).ok()?;
        let target = rec.target.as_ref()?;
        Some(Self {
            policy_ref: policy_ref.to_owned(),
            workload: workload_uid.unwrap_or(&target.uid).to_owned(),
            issue: kind
                .as_str_name()
                .trim_start_matches("ISSUE_KIND_")
                .to_owned(),
        })
    }
}

/// An escalation: a report-only action the ladder recorded.
pub fn is_escalation(action: &HealingAction) -> bool {
    action.spec.action.type_ == ActionType::ReportOnly
        && action.spec.source.kind == SourceKind::Rule
        && action.spec.source.name == SOURCE
}

/// What the ladder makes of a proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Climb {
    /// Propose it as it is.
    Propose,
    /// Propose this rung's action instead; `why` says what did not help.
    Next {
        /// The rung's action.
        action: ActionType,
        /// What was tried.
        why: String,
    },
    /// Hand the incident to a human; `tried` lists the attempts.
    Escalate {
        /// What was tried, one line each.
        tried: String,
    },
    /// An escalation is open for the incident: nothing new is proposed.
    Escalated {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// An action of the proposed type is already open in the incident (on
    /// the pod a restart replaced, say): nothing new until it ends.
    Open {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// An action of the proposed type ran in the incident within the
    /// policy's cooldown: nothing new yet (the gate would only deny it).
    CoolingDown,
}

/// Where `incident` stands on `ladder` when `proposed` is proposed for it,
/// given every recorded action and the policy's `cooldown`.
#[expect(
    clippy::too_many_lines,
    reason = "the ladder's rules read as one sequence: tries, cooldown, rung, escalation"
)]
pub fn climb(
    actions: &[Arc<HealingAction>],
    incident: &Incident,
    proposed: ActionType,
    ladder: &Ladder,
    cooldown: Duration,
    now: Timestamp,
) -> Climb {
    let mut history: Vec<&HealingAction> = actions
        .iter()
        .map(AsRef::as_ref)
        .filter(|a| Incident::of(a).as_ref() == Some(incident))
        .collect();
    history.sort_by_key(|a| std::cmp::Reverse(created(a)));
    if let Some(open) = history
        .iter()
        .find(|a| is_escalation(a) && !a.phase().is_terminal())
    {
        return Climb::Escalated {
            namespace: open.namespace().unwrap_or_default(),
            name: open.name_any(),
        };
    }
    let same = |a: &&&HealingAction| a.spec.action.type_ == proposed;
    if let Some(open) = history
        .iter()
        .filter(same)
        .find(|a| !a.phase().is_terminal())
    {
        return Climb::Open {
            namespace: open.namespace().unwrap_or_default(),
            name: open.name_any(),
        };
    }
    // It ran within the cooldown, or the gate said when it could pass
    // again: proposing it before then only piles up denials.
    let later = |time: Option<&str>| time.and_then(|t| t.parse::<Timestamp>().ok());
    let waiting = history.iter().filter(same).any(|a| {
        let Some(status) = a.status.as_ref() else {
            return false;
        };
        let ran = status.result.is_some()
            && later(status.phase_since.as_deref())
                .is_some_and(|t| now.duration_since(t).unsigned_abs() < cooldown);
        let told = status
            .verdict
            .as_ref()
            .and_then(|v| later(v.retry_at.as_deref()))
            .is_some_and(|at| now < at);
        ran || told
    });
    if waiting {
        return Climb::CoolingDown;
    }
    // The incident: the actions back to a quiet gap, or to the last
    // resolved escalation.
    let quiet = Duration::from_secs(u64::from(ladder.quiet_seconds));
    let mut last = now;
    let mut current = Vec::new();
    for action in history {
        let at = created(action);
        if last.duration_since(at).unsigned_abs() > quiet || is_escalation(action) {
            break;
        }
        last = at;
        current.push(action);
    }
    let mut tried: BTreeMap<ActionType, Vec<String>> = BTreeMap::new();
    for action in current.iter().rev() {
        if let Some(line) = ineffective(action) {
            tried
                .entry(action.spec.action.type_)
                .or_default()
                .push(line);
        }
    }
    let max = usize::try_from(ladder.max_ineffective).unwrap_or(usize::MAX);
    let exhausted = |t: ActionType| tried.get(&t).is_some_and(|l| l.len() >= max);
    if !exhausted(proposed) {
        return Climb::Propose;
    }
    let summary = || {
        let mut text = String::new();
        for (action, lines) in &tried {
            for line in lines {
                let _ = writeln!(text, "- {}: {line}", action.name());
            }
        }
        text
    };
    let rungs = ladder
        .steps
        .iter()
        .find(|s| {
            nanny_crd::proto::issue_kind(&s.issue.name())
                == nanny_crd::proto::issue_kind(&incident.issue)
        })
        .map(|s| s.rungs.as_slice())
        .unwrap_or_default();
    let after = rungs
        .iter()
        .position(|r| r.action() == Some(proposed))
        .map_or(rungs.len(), |p| p + 1);
    for rung in &rungs[after..] {
        match rung.action() {
            None => break,
            Some(action) if !exhausted(action) => {
                return Climb::Next {
                    action,
                    why: summary(),
                };
            }
            Some(_) => {}
        }
    }
    Climb::Escalate { tried: summary() }
}

fn created(action: &HealingAction) -> Timestamp {
    action
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

/// A line on an action that ran and did not help (verified ineffective, or
/// failed its verification); `None` for any other.
fn ineffective(action: &HealingAction) -> Option<String> {
    // The outcome history's classification: one source of truth.
    let counted = Verified::of(action)?.did_not_help();
    let result = action.status.as_ref()?.result.as_ref()?;
    counted.then(|| {
        format!(
            "{} at {}: {}",
            action.spec.target.name,
            result.finished_at.as_deref().unwrap_or("?"),
            [result.outcome.as_str(), result.verification.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(": ")
        )
    })
}

/// The recommendation for the next rung: `action` on `rec`'s target or its
/// workload, as the snapshot shows them; `None` when that action cannot
/// take this target (the ladder then escalates).
pub fn next_recommendation(
    rec: &pb::Recommendation,
    action: ActionType,
    why: &str,
    snapshot: &ClusterSnapshot,
) -> Option<pb::Recommendation> {
    let target = rec.target.as_ref()?;
    let (kind, target) = match action {
        ActionType::RestartPod if target.kind == "Pod" => (
            pb::action::Kind::RestartPod(pb::RestartPod {}),
            target.clone(),
        ),
        ActionType::RolloutRestart => {
            let workload = if target.kind == "Pod" {
                snapshot
                    .pods
                    .iter()
                    .find(|p| p.r#ref.as_ref().is_some_and(|r| r.uid == target.uid))?
                    .workload
                    .clone()?
            } else {
                target.clone()
            };
            if !matches!(
                workload.kind.as_str(),
                "Deployment" | "StatefulSet" | "DaemonSet"
            ) {
                return None;
            }
            (
                pb::action::Kind::RolloutRestart(pb::RolloutRestart {}),
                workload,
            )
        }
        _ => return None,
    };
    Some(pb::Recommendation {
        id: format!("{}-ladder-{}", rec.id, action.name()),
        target: Some(target.clone()),
        action: Some(pb::Action { kind: Some(kind) }),
        source: Some(pb::Source {
            kind: Some(pb::source::Kind::RuleId(SOURCE.to_owned())),
        }),
        confidence: 100,
        reason: format!(
            "Earlier actions did not help in this incident:\n{why}Next rung of the ladder: {} of {} {}/{}.",
            action.name(),
            target.kind,
            target.namespace,
            target.name
        ),
        risk: pb::Severity::Warning as i32,
        ..rec.clone()
    })
}

/// The escalation's recommendation: a report on `rec`'s workload (or
/// target) with the evidence a human needs.
pub fn escalation(
    rec: &pb::Recommendation,
    tried: &str,
    snapshot: &ClusterSnapshot,
) -> Option<pb::Recommendation> {
    let target = rec.target.as_ref()?;
    let pod = snapshot
        .pods
        .iter()
        .find(|p| p.r#ref.as_ref().is_some_and(|r| r.uid == target.uid));
    let subject = pod
        .and_then(|p| p.workload.clone())
        .filter(|w| !w.uid.is_empty())
        .unwrap_or_else(|| target.clone());
    let mut text = format!(
        "Automatic remedies did not help; a human must decide.\nTried in this incident:\n{tried}"
    );
    // The workload's pods: their last terminations, and recent events.
    let pods: Vec<&pb::Pod> = snapshot
        .pods
        .iter()
        .filter(|p| {
            p.workload.as_ref().is_some_and(|w| w.uid == subject.uid)
                || p.r#ref.as_ref().is_some_and(|r| r.uid == target.uid)
        })
        .collect();
    for pod in &pods {
        for container in &pod.containers {
            if let Some(t) = &container.last_termination {
                let _ = writeln!(
                    text,
                    "Last termination of {}/{}: {} (exit code {})",
                    pod.r#ref.as_ref().map_or("", |r| r.name.as_str()),
                    container.name,
                    t.reason,
                    t.exit_code
                );
            }
        }
    }
    let uids: Vec<&str> = pods
        .iter()
        .filter_map(|p| p.r#ref.as_ref().map(|r| r.uid.as_str()))
        .chain([subject.uid.as_str()])
        .collect();
    for event in snapshot
        .events
        .iter()
        .filter(|e| {
            e.involved
                .as_ref()
                .is_some_and(|i| uids.contains(&i.uid.as_str()))
        })
        .take(5)
    {
        let _ = writeln!(
            text,
            "Event {} (×{}): {}",
            event.reason,
            event.count,
            event.message.as_ref().map_or("", |m| m.text.as_str())
        );
    }
    Some(pb::Recommendation {
        id: format!("{}-escalation", rec.id),
        target: Some(subject),
        action: Some(pb::Action {
            kind: Some(pb::action::Kind::ReportOnly(pb::ReportOnly {
                explanation: "escalation".to_owned(),
            })),
        }),
        source: Some(pb::Source {
            kind: Some(pb::source::Kind::RuleId(SOURCE.to_owned())),
        }),
        confidence: 100,
        reason: text,
        risk: pb::Severity::Critical as i32,
        ..rec.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "shop/default";

    fn incident(issue: &str) -> Incident {
        Incident {
            policy_ref: POLICY.to_owned(),
            workload: "d1".to_owned(),
            issue: issue.to_owned(),
        }
    }

    /// An action on the incident `issue` of workload d1, created `ago`
    /// seconds before `now()`, that ended with `outcome` (`None`: open).
    fn action(
        name: &str,
        action_type: &str,
        issue: &str,
        ago: i64,
        outcome: Option<&str>,
    ) -> Arc<HealingAction> {
        let created = (now() - Duration::from_secs(ago.unsigned_abs())).to_string();
        let source = if action_type == "ReportOnly" {
            SOURCE
        } else {
            "crashloop-restart"
        };
        let status = match outcome {
            Some("Resolved") => serde_json::json!({ "phase": "Resolved" }),
            Some("Verifying") => serde_json::json!({ "phase": "Verifying" }),
            Some(outcome) => serde_json::json!({
                "phase": "Failed", "phaseSince": created,
                "result": { "outcome": outcome, "dryRunDiff": "", "preImageRef": "",
                            "verification": "INEFFECTIVE: still crash-looping", "error": "",
                            "finishedAt": created },
            }),
            None => serde_json::json!({ "phase": "Escalated" }),
        };
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "nanny.ai/v1alpha1", "kind": "HealingAction",
                "metadata": { "name": name, "namespace": "shop", "creationTimestamp": created },
                "spec": {
                    "policyRef": POLICY,
                    "target": { "kind": "Pod", "namespace": "shop", "name": name, "uid": name },
                    "action": { "type": action_type },
                    "source": { "kind": "Rule", "name": source },
                    "confidence": 100, "reasoning": "", "recommendationId": name,
                    "snapshotId": "s", "workloadUid": "d1", "issueKind": issue,
                },
                "status": status,
            }))
            .unwrap_or_else(|e| panic!("{e}")),
        )
    }

    /// A `action_type` in the crash-loop incident that did not help.
    fn tried(name: &str, action_type: &str, ago: i64) -> Arc<HealingAction> {
        action(
            name,
            action_type,
            "CRASH_LOOP_BACK_OFF",
            ago,
            Some("Ineffective"),
        )
    }

    fn now() -> Timestamp {
        "2026-12-03T12:00:00Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn climb_with(actions: &[Arc<HealingAction>], proposed: ActionType) -> Climb {
        climb(
            actions,
            &incident("CRASH_LOOP_BACK_OFF"),
            proposed,
            &Ladder::default(),
            Duration::from_secs(60),
            now(),
        )
    }

    #[test]
    fn an_action_that_did_not_help_twice_gives_way_to_the_next_rung_then_a_human() {
        let one = [tried("r1", "RestartPod", 300)];
        assert_eq!(climb_with(&one, ActionType::RestartPod), Climb::Propose);

        let two = [one[0].clone(), tried("r2", "RestartPod", 200)];
        let Climb::Next { action: next, why } = climb_with(&two, ActionType::RestartPod) else {
            panic!("the next rung");
        };
        assert_eq!(next, ActionType::RolloutRestart);
        assert!(
            why.contains("- RestartPod: r1 at") && why.contains("- RestartPod: r2 at"),
            "{why}"
        );

        let four = [
            two[0].clone(),
            two[1].clone(),
            tried("o1", "RolloutRestart", 150),
            action(
                "o2",
                "RolloutRestart",
                "CRASH_LOOP_BACK_OFF",
                100,
                Some("Failed"),
            ),
        ];
        let Climb::Escalate { tried } = climb_with(&four, ActionType::RestartPod) else {
            panic!("a human");
        };
        assert_eq!(tried.lines().count(), 4, "{tried}");
        assert!(matches!(
            climb_with(&four, ActionType::RolloutRestart),
            Climb::Escalate { .. }
        ));
    }

    #[test]
    fn an_open_escalation_holds_every_proposal_and_a_resolved_one_starts_afresh() {
        let mut actions = vec![
            tried("r1", "RestartPod", 300),
            tried("r2", "RestartPod", 200),
            action("esc", "ReportOnly", "CRASH_LOOP_BACK_OFF", 100, None),
        ];
        assert_eq!(
            climb_with(&actions, ActionType::RestartPod),
            Climb::Escalated {
                namespace: "shop".to_owned(),
                name: "esc".to_owned()
            }
        );
        actions[2] = action(
            "esc",
            "ReportOnly",
            "CRASH_LOOP_BACK_OFF",
            100,
            Some("Resolved"),
        );
        assert_eq!(climb_with(&actions, ActionType::RestartPod), Climb::Propose);
    }

    #[test]
    fn a_quiet_gap_ends_the_incident_and_other_incidents_do_not_count() {
        let old = [
            tried("r1", "RestartPod", 9000),
            tried("r2", "RestartPod", 8000),
        ];
        assert_eq!(climb_with(&old, ActionType::RestartPod), Climb::Propose);
        let elsewhere = [
            action("r1", "RestartPod", "OOM_KILLED", 300, Some("Ineffective")),
            action("r2", "RestartPod", "OOM_KILLED", 200, Some("Ineffective")),
        ];
        assert_eq!(
            climb_with(&elsewhere, ActionType::RestartPod),
            Climb::Propose
        );
        // Without a ladder for the issue, the next rung is a human.
        assert!(matches!(
            climb(
                &elsewhere,
                &incident("OOM_KILLED"),
                ActionType::RestartPod,
                &Ladder::default(),
                Duration::ZERO,
                now()
            ),
            Climb::Escalate { .. }
        ));
    }

    #[test]
    fn one_open_action_per_incident_and_type_and_none_within_the_cooldown() {
        let verifying = [action(
            "r1",
            "RestartPod",
            "CRASH_LOOP_BACK_OFF",
            30,
            Some("Verifying"),
        )];
        assert_eq!(
            climb_with(&verifying, ActionType::RestartPod),
            Climb::Open {
                namespace: "shop".to_owned(),
                name: "r1".to_owned()
            },
            "the replaced pod's new crash loop waits for the restart's verdict"
        );
        let recent = [tried("r1", "RestartPod", 30)];
        assert_eq!(
            climb_with(&recent, ActionType::RestartPod),
            Climb::CoolingDown
        );
        assert_eq!(
            climb_with(&recent, ActionType::RolloutRestart),
            Climb::Propose
        );
    }

    #[test]
    fn a_limit_the_gate_said_passes_later_holds_new_proposals_until_then() {
        let denied = |retry_at: &str| {
            let mut a = (*action("r1", "RestartPod", "CRASH_LOOP_BACK_OFF", 30, None)).clone();
            a.status = serde_json::from_value(serde_json::json!({
                "phase": "Denied",
                "verdict": { "decision": "Denied", "matchedRules": ["cooldown"], "auditId": "a1",
                             "retryAt": retry_at },
            }))
            .unwrap_or_else(|e| panic!("{e}"));
            vec![Arc::new(a)]
        };
        assert_eq!(
            climb_with(&denied("2026-12-03T12:04:00Z"), ActionType::RestartPod),
            Climb::CoolingDown
        );
        assert_eq!(
            climb_with(&denied("2026-12-03T11:59:00Z"), ActionType::RestartPod),
            Climb::Propose
        );
    }
}
