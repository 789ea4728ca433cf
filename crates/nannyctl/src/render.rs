//! Pure text rendering of HealingActions: the `list` table, `describe`, ages
//! and the suggested next command. No I/O, so every line is unit-tested.

use std::fmt::Write as _;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use nanny_crd::{HealingAction, Phase, ROLLBACK_ANNOTATION, SourceKind};

/// `text` safe for a terminal: control characters other than newline and
/// tab (escape sequences a model or an event message may carry) are shown
/// escaped, e.g. `\u{1b}`, instead of being sent to the terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Left-aligned columns separated by three spaces, like kubectl; the last
/// column is not padded. Cells are shown [`printable`], on one line.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| printable(&cell.replace(['\n', '\t'], " ")))
                .collect()
        })
        .collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}   ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// kubectl's compact age: `45s`, `3m`, `5h`, `12d`.
pub fn age(since: Timestamp, now: Timestamp) -> String {
    let seconds = now.duration_since(since).as_secs().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 120 * 60 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Parses an RFC 3339 time as the CRs store them.
pub fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

/// `2026-11-23T05:00:00Z (3m ago)`, or the raw text when it does not parse.
fn when(text: &str, now: Timestamp) -> String {
    match parse_time(text) {
        Some(at) if at <= now => format!("{text} ({} ago)", age(at, now)),
        Some(at) => format!("{text} (in {})", age(now, at)),
        None => text.to_owned(),
    }
}

/// Now, rounded to whole seconds, in RFC 3339 (`2026-11-23T05:00:00Z`).
pub fn now_rfc3339() -> String {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

/// The phase, or `-` before the coordinator first wrote status.
pub fn phase(action: &HealingAction) -> String {
    action
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .map_or_else(|| "-".to_owned(), |p| p.to_string())
}

/// `Pod shop/web-1`, or `Node n1` for cluster-scoped targets.
pub fn target(action: &HealingAction) -> String {
    let t = &action.spec.target;
    if t.namespace.is_empty() {
        format!("{} {}", t.kind, t.name)
    } else {
        format!("{} {}/{}", t.kind, t.namespace, t.name)
    }
}

/// The rule id, or `model:<name>`.
pub fn source(action: &HealingAction) -> String {
    let s = &action.spec.source;
    match s.kind {
        SourceKind::Rule => s.name.clone(),
        SourceKind::Model => format!("model:{}", s.name),
    }
}

fn action_type(action: &HealingAction) -> String {
    // The CRD spelling (`RestartPod`), the same the printer column shows.
    serde_json::to_value(action.spec.action.type_)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{:?}", action.spec.action.type_))
}

/// The `list` table. With `all_namespaces` a NAMESPACE column comes first.
pub fn action_table(actions: &[HealingAction], all_namespaces: bool, now: Timestamp) -> String {
    let mut header = vec![
        "NAME",
        "PHASE",
        "ACTION",
        "TARGET",
        "SOURCE",
        "CONFIDENCE",
        "AGE",
    ];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = actions
        .iter()
        .map(|action| {
            let mut row = vec![
                action.name_any(),
                phase(action),
                action_type(action),
                target(action),
                source(action),
                format!("{}%", action.spec.confidence),
                action
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |t| age(t.0, now)),
            ];
            if all_namespaces {
                row.insert(0, action.namespace().unwrap_or_default());
            }
            row
        })
        .collect();
    table(&header, &rows)
}

/// What a human can do next, as a command line to copy, or a sentence when
/// there is nothing to do. `program` is `nannyctl` or `kubectl nanny`.
pub fn next_step(action: &HealingAction, program: &str) -> String {
    let name = action.name_any();
    let ns = action.namespace().unwrap_or_default();
    let status = action.status.as_ref();
    let rollback_requested = action.annotations().contains_key(ROLLBACK_ANNOTATION);
    match status.and_then(|s| s.phase) {
        None | Some(Phase::Proposed) => "none yet: waiting for the safety gate's verdict".into(),
        Some(Phase::PendingApproval) if action.spec.approval.is_some() => {
            "none: decided; waiting for the coordinator to act on it".into()
        }
        Some(Phase::PendingApproval) => format!(
            "{program} approve {name} -n {ns}   (or: {program} reject {name} -n {ns} --reason \"…\")"
        ),
        Some(Phase::Approved | Phase::Executing | Phase::Verifying) => {
            "none: the coordinator is acting on it".into()
        }
        Some(Phase::Succeeded | Phase::Failed)
            if status.and_then(|s| s.rollback.as_ref()).is_some() =>
        {
            "none: a rollback was already attempted (see Rollback)".into()
        }
        Some(Phase::Succeeded | Phase::Failed) if rollback_requested => {
            "none: rollback requested; waiting for the coordinator".into()
        }
        Some(Phase::Succeeded | Phase::Failed)
            if status
                .and_then(|s| s.result.as_ref())
                .is_some_and(|r| !r.pre_image_ref.is_empty()) =>
        {
            format!("none needed; to undo it: {program} rollback {name} -n {ns} --reason \"…\"")
        }
        Some(_) => "none: the action is finished".into(),
    }
}

mod describe;

pub use describe::describe;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use nanny_crd::{
        ActionType, Condition, Decision, HealingActionSpec, HealingActionStatus, HumanApproval,
        HumanDecision, Outcome, ResultRecord, TargetRef, VerdictRecord,
    };

    /// A PatchResources action on `Pod shop/web-1`, built from JSON so
    /// fields added to the CRD later do not break the fixtures.
    pub(crate) fn action(name: &str, phase: Option<Phase>) -> HealingAction {
        let spec: HealingActionSpec = serde_json::from_value(serde_json::json!({
            "policyRef": "shop/default",
            "target": {"kind": "Pod", "namespace": "shop", "name": "web-1", "uid": "u-1", "resourceVersion": "42"},
            "action": {"type": "PatchResources", "params": {"container": "app", "limits": {"memoryBytes": 805_306_368}}},
            "source": {"kind": "Rule", "name": "oom-raise-memory"},
            "confidence": 100,
            "reasoning": "OOMKilled 3 times in 10m",
            "evidence": ["restarts=3"],
            "issueFingerprints": ["fp-oom"],
            "recommendationId": "rec-1",
            "snapshotId": "snap-1",
        }))
        .unwrap();
        let mut action = HealingAction::new(name, spec);
        action.metadata.namespace = Some("shop".into());
        action.status = phase.map(|phase| HealingActionStatus {
            phase: Some(phase),
            ..HealingActionStatus::default()
        });
        action
    }

    /// `seconds` before `now`.
    pub(crate) fn ago(now: Timestamp, seconds: i64) -> Timestamp {
        now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(seconds))
            .unwrap()
    }

    fn now() -> Timestamp {
        "2026-11-23T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn table_cells_are_one_printable_line() {
        let text = table(
            &["NAME", "REASON"],
            &[vec!["a".into(), "two\nlines\u{1b}[31m red".into()]],
        );
        assert_eq!(text, "NAME   REASON\na      two lines\\u{1b}[31m red\n");
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now = now();
        assert_eq!(age(ago(now, 5), now), "5s");
        assert_eq!(age(ago(now, 119), now), "119s");
        assert_eq!(age(ago(now, 600), now), "10m");
        assert_eq!(age(ago(now, 5 * 3600), now), "5h");
        assert_eq!(age(ago(now, 3 * 86_400), now), "3d");
        // Clock skew never prints a negative age.
        assert_eq!(age(ago(now, -30), now), "0s");
    }

    #[test]
    fn list_table_has_the_columns_people_scan_for() {
        let now = now();
        let mut pending = action("ha-oom", Some(Phase::PendingApproval));
        pending.metadata.creation_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ago(now, 300)),
        );
        let mut node = action("ha-node", None);
        node.spec.target = TargetRef {
            kind: "Node".into(),
            namespace: String::new(),
            name: "worker-3".into(),
            uid: "n".into(),
            resource_version: String::new(),
        };
        node.spec.action.type_ = ActionType::CordonNode;
        node.spec.source = serde_json::from_value(serde_json::json!(
            {"kind": "Model", "name": "qwen2.5", "promptVersion": "v3"}
        ))
        .unwrap();
        node.spec.confidence = 80;
        let text = action_table(&[pending, node], false, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "NAME      PHASE             ACTION           TARGET           SOURCE             CONFIDENCE   AGE",
                "ha-oom    PendingApproval   PatchResources   Pod shop/web-1   oom-raise-memory   100%         5m",
                "ha-node   -                 CordonNode       Node worker-3    model:qwen2.5      80%          -",
            ]
        );
    }

    #[test]
    fn all_namespaces_adds_a_namespace_column() {
        let text = action_table(&[action("ha-1", None)], true, now());
        assert!(text.starts_with("NAMESPACE   NAME "), "{text}");
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .starts_with("shop        ha-1 "),
            "{text}"
        );
    }

    #[test]
    fn next_step_is_the_command_to_run() {
        let pending = action("ha-1", Some(Phase::PendingApproval));
        assert_eq!(
            next_step(&pending, "nannyctl"),
            "nannyctl approve ha-1 -n shop   (or: nannyctl reject ha-1 -n shop --reason \"…\")"
        );
        assert!(next_step(&pending, "kubectl nanny").starts_with("kubectl nanny approve ha-1"));

        let mut decided = pending.clone();
        decided.spec.approval = Some(HumanApproval {
            decision: HumanDecision::Approve,
            by: "alice".into(),
            at: "2026-11-23T11:00:00Z".into(),
            comment: String::new(),
        });
        assert!(next_step(&decided, "nannyctl").contains("waiting for the coordinator"));

        let mut done = action("ha-1", Some(Phase::Succeeded));
        assert_eq!(next_step(&done, "nannyctl"), "none: the action is finished");
        done.status.as_mut().unwrap().result = Some(ResultRecord {
            outcome: Outcome::Succeeded,
            dry_run_diff: String::new(),
            pre_image_ref: "configmap/nanny-preimages/ha-1".into(),
            verification: String::new(),
            error: String::new(),
            finished_at: None,
        });
        assert!(
            next_step(&done, "nannyctl").ends_with("nannyctl rollback ha-1 -n shop --reason \"…\""),
            "{}",
            next_step(&done, "nannyctl")
        );
        done.annotations_mut()
            .insert(ROLLBACK_ANNOTATION.into(), "broke checkout".into());
        assert!(next_step(&done, "nannyctl").contains("rollback requested"));
        assert!(next_step(&action("ha-1", None), "nannyctl").contains("safety gate"));
    }

    #[test]
    fn describe_explains_verdict_result_conditions_and_next_step() {
        let now = now();
        let mut action = action("ha-oom", Some(Phase::Failed));
        let status = action.status.as_mut().unwrap();
        status.phase_since = Some("2026-11-23T11:58:00Z".into());
        status.attempts = 1;
        status.verdict = Some(VerdictRecord {
            decision: Decision::NeedsApproval,
            matched_rules: vec!["approval.patch-resources".into()],
            reasons: vec!["PatchResources needs a human".into()],
            audit_id: "audit-7".into(),
            decided_at: Some("2026-11-23T11:00:00Z".into()),
            ..VerdictRecord::default()
        });
        status.result = Some(ResultRecord {
            outcome: Outcome::Ineffective,
            dry_run_diff: "-memory: 512Mi\n+memory: 768Mi".into(),
            pre_image_ref: "configmap/pre/ha-oom".into(),
            verification: "still OOMKilled after 300s".into(),
            error: String::new(),
            finished_at: Some("2026-11-23T11:58:00Z".into()),
        });
        status.conditions = vec![
            Condition {
                type_: "Executed".into(),
                status: "True".into(),
                reason: "Patched".into(),
                message: "memory 512Mi → 768Mi".into(),
                last_transition_time: "2026-11-23T11:53:00Z".into(),
            },
            Condition {
                type_: "Approved".into(),
                status: "True".into(),
                reason: "Human".into(),
                message: "by alice".into(),
                last_transition_time: "2026-11-23T11:50:00Z".into(),
            },
        ];
        action.spec.approval = Some(HumanApproval {
            decision: HumanDecision::Approve,
            by: "alice".into(),
            at: "2026-11-23T11:50:00Z".into(),
            comment: "go".into(),
        });
        let text = describe(&action, "nannyctl", now);
        for expected in [
            "Name:             ha-oom\n",
            "Phase:            Failed since 2026-11-23T11:58:00Z (2m ago)\n",
            "Action:           PatchResources\n",
            "  Param:          container=app\n  Param:          limits.memoryBytes=805306368\n",
            "Target:           Pod shop/web-1\n",
            "  Pinned:         uid u-1, resourceVersion 42\n",
            "Source:           rule oom-raise-memory\n",
            "Confidence:       100%\n",
            "Verdict:          NeedsApproval\n",
            "  Matched rules:  approval.patch-resources\n",
            "    - PatchResources needs a human\n",
            "Approval:         Approved by alice at 2026-11-23T11:50:00Z\n",
            "  Comment:        go\n",
            "  Outcome:        Ineffective\n",
            "  Verification:   still OOMKilled after 300s\n",
            "    +memory: 768Mi\n",
            "Next:             none needed; to undo it: nannyctl rollback ha-oom -n shop --reason \"…\"\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        // The timeline is oldest first, whatever order the status lists.
        let approved = text.find("Approved   True").unwrap();
        let executed = text.find("Executed   True").unwrap();
        assert!(approved < executed, "{text}");
    }

    #[test]
    fn describe_shows_the_model_explanation_marked_as_model_output() {
        let mut action = action("ha-1", Some(Phase::Succeeded));
        action.status.as_mut().unwrap().explanation = Some(nanny_crd::ExplanationRecord {
            incident: "inc-9eab41ea547c0e7a".into(),
            hypothesis: "The new image exits at start.".into(),
            risk: "A restart loses nothing.".into(),
            cited_evidence: vec!["e2: container app restarts = 8".into()],
            model: "openai/smollm2:135m".into(),
            prompt_version: "nanny-v2".into(),
            agreement: "Agrees".into(),
            at: None,
        });
        let text = describe(&action, "nannyctl", now());
        for expected in [
            "Explanation:      (model output, untrusted: openai/smollm2:135m, agreement Agrees) incident inc-9eab41ea547c0e7a\n",
            "  Hypothesis:     \"The new image exits at start.\"\n",
            "  Cites:          e2: container app restarts = 8\n",
            "  Prompt:         nanny-v2\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        action.status.as_mut().unwrap().explanation = None;
        assert!(!describe(&action, "nannyctl", now()).contains("Explanation"));
    }

    #[test]
    fn describe_shows_how_the_confidence_was_calibrated_and_the_history() {
        let mut action = action("ha-1", Some(Phase::Succeeded));
        action.spec.confidence = 50;
        action.spec.calibration = Some(nanny_crd::Calibration {
            reported: 100,
            effective: 0,
            outcomes: 4,
            prior_weight: 4,
            history: "RestartPod fixed this workload 0 of 2 times in the last 7 days.".into(),
        });
        let text = describe(&action, "nannyctl", now());
        for expected in [
            "Confidence:       50% (calibrated: the rule's 100%, 0 of 4 verified outcomes effective, prior weight 4)\n",
            "History:          RestartPod fixed this workload 0 of 2 times in the last 7 days.\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn describe_shows_a_plans_steps_and_how_far_each_got() {
        let mut a = action("node-plan", Some(Phase::Failed));
        let cordon = a.spec.action.clone();
        a.spec.plan = vec![
            cordon,
            nanny_crd::ActionSpec {
                type_: nanny_crd::ActionType::DrainNode,
                params: nanny_crd::ActionParams::default(),
            },
        ];
        let status = a.status.get_or_insert_with(Default::default);
        status.steps = vec![
            nanny_crd::PlanStepStatus {
                step: 1,
                type_: a.spec.plan[0].type_,
                decision: Some(nanny_crd::Decision::NeedsApproval),
                healing_action: "node-plan-s1".into(),
                phase: Some(Phase::Succeeded),
                rollback: Some(nanny_crd::Outcome::RolledBack),
                message: String::new(),
            },
            nanny_crd::PlanStepStatus {
                step: 2,
                type_: nanny_crd::ActionType::DrainNode,
                decision: Some(nanny_crd::Decision::NeedsApproval),
                healing_action: "node-plan-s2".into(),
                phase: Some(Phase::Failed),
                rollback: None,
                message: "a PodDisruptionBudget refused".into(),
            },
        ];
        let text = describe(&a, "nannyctl", now());
        let plan = text.split("Plan:\n").nth(1).unwrap();
        let lines: Vec<&str> = plan.lines().take(3).collect();
        assert!(
            lines[0].contains("STEP") && lines[0].contains("ROLLBACK"),
            "{text}"
        );
        assert!(
            lines[1].contains("Succeeded") && lines[1].contains("RolledBack"),
            "{text}"
        );
        assert!(
            lines[2].contains("DrainNode")
                && lines[2].contains("Failed")
                && lines[2].contains("refused"),
            "{text}"
        );
    }

    #[test]
    fn describe_pending_shows_expiry_and_the_approve_command() {
        let mut action = action("ha-1", Some(Phase::PendingApproval));
        action.status.as_mut().unwrap().expires_at = Some("2026-11-24T12:00:00Z".into());
        let text = describe(&action, "kubectl nanny", now());
        assert!(
            text.contains("Expires:          2026-11-24T12:00:00Z (in 24h)"),
            "{text}"
        );
        assert!(text.contains("Approval:         <none>"), "{text}");
        assert!(
            text.contains("Next:             kubectl nanny approve ha-1 -n shop"),
            "{text}"
        );
    }

    #[test]
    fn now_is_rfc3339_in_whole_seconds() {
        let now = now_rfc3339();
        assert!(parse_time(&now).is_some(), "{now}");
        assert!(now.ends_with('Z') && !now.contains('.'), "{now}");
    }
}
