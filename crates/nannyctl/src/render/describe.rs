//! The `describe` text of one HealingAction: header, proposal, decisions,
//! result and conditions.

use std::fmt::Write as _;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use nanny_crd::{
    Condition, ExplanationRecord, HealingAction, HealingActionStatus, HumanDecision, Phase,
    ROLLBACK_ANNOTATION, ResultRecord, SourceKind,
};

use super::*;

fn field(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{:<18}{value}", format!("{label}:"));
}

fn result_lines(out: &mut String, result: &ResultRecord, now: Timestamp) {
    field(out, "  Outcome", result.outcome);
    if let Some(at) = &result.finished_at {
        field(out, "  Finished", when(at, now));
    }
    if !result.verification.is_empty() {
        field(out, "  Verification", &result.verification);
    }
    if !result.pre_image_ref.is_empty() {
        field(out, "  Pre-image", &result.pre_image_ref);
    }
    if !result.error.is_empty() {
        field(out, "  Error", &result.error);
    }
    if !result.dry_run_diff.is_empty() {
        out.push_str("  Diff:\n");
        for line in result.dry_run_diff.lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
}

fn conditions(out: &mut String, conditions: &[Condition]) {
    out.push_str("Conditions:\n");
    if conditions.is_empty() {
        out.push_str("  <none>\n");
        return;
    }
    let mut sorted: Vec<&Condition> = conditions.iter().collect();
    // Oldest first: the conditions read as the action's timeline.
    sorted.sort_by_key(|c| parse_time(&c.last_transition_time));
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|c| {
            vec![
                c.last_transition_time.clone(),
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                c.message.clone(),
            ]
        })
        .collect();
    let text = table(&["TIME", "TYPE", "STATUS", "REASON", "MESSAGE"], &rows);
    for line in text.lines() {
        let _ = writeln!(out, "  {line}");
    }
}

/// The `describe` text.
pub fn describe(action: &HealingAction, program: &str, now: Timestamp) -> String {
    let mut out = String::new();
    let status = action.status.clone().unwrap_or_default();
    header(&mut out, action, &status, now);
    out.push('\n');
    proposal(&mut out, action);
    out.push('\n');
    if let Some(explanation) = &status.explanation {
        explained(&mut out, explanation);
        out.push('\n');
    }
    decisions(&mut out, action, &status, now);
    field(&mut out, "Attempts", status.attempts);
    out.push('\n');
    plan(&mut out, action, &status);
    conditions(&mut out, &status.conditions);
    out.push('\n');
    field(&mut out, "Next", next_step(action, program));
    out
}

/// A plan's steps, or the plan a step belongs to.
fn plan(out: &mut String, action: &HealingAction, status: &HealingActionStatus) {
    if let Some(step) = &action.spec.plan_step {
        field(
            out,
            "Plan",
            format!("step {} of {} of {}", step.step, step.steps, step.action),
        );
        out.push('\n');
    }
    if action.spec.plan.is_empty() {
        return;
    }
    out.push_str("Plan:\n");
    let rows: Vec<Vec<String>> = action
        .spec
        .plan
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let seen = status.steps.get(i);
            let show = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
            vec![
                (i + 1).to_string(),
                step.type_.name().to_owned(),
                show(seen.and_then(|s| s.decision).map(|d| d.to_string())),
                show(seen.and_then(|s| s.phase).map(|p| p.to_string())),
                show(seen.and_then(|s| s.rollback).map(|o| o.to_string())),
                show(
                    seen.map(|s| s.healing_action.clone())
                        .filter(|n| !n.is_empty()),
                ),
                seen.map(|s| s.message.clone()).unwrap_or_default(),
            ]
        })
        .collect();
    let text = table(
        &[
            "STEP",
            "ACTION",
            "REVIEW",
            "PHASE",
            "ROLLBACK",
            "HEALINGACTION",
            "MESSAGE",
        ],
        &rows,
    );
    for line in text.lines() {
        let _ = writeln!(out, "  {line}");
    }
    out.push('\n');
}

/// The model's explanation, marked as model output: text a small model
/// wrote from cluster data, which may repeat what an attacker put there.
fn explained(out: &mut String, explanation: &ExplanationRecord) {
    field(
        out,
        "Explanation",
        format!(
            "(model output, untrusted: {}, agreement {}) incident {}",
            explanation.model, explanation.agreement, explanation.incident
        ),
    );
    field(out, "  Hypothesis", format!("{:?}", explanation.hypothesis));
    if !explanation.risk.is_empty() {
        field(out, "  Risk", format!("{:?}", explanation.risk));
    }
    for cited in &explanation.cited_evidence {
        field(out, "  Cites", cited);
    }
    field(out, "  Prompt", &explanation.prompt_version);
}

/// Name, policy, phase and times.
fn header(out: &mut String, action: &HealingAction, status: &HealingActionStatus, now: Timestamp) {
    let spec = &action.spec;
    field(out, "Name", action.name_any());
    field(out, "Namespace", action.namespace().unwrap_or_default());
    field(out, "Policy", &spec.policy_ref);
    match (&status.phase, &status.phase_since) {
        (Some(phase), Some(since)) => {
            field(out, "Phase", format!("{phase} since {}", when(since, now)))
        }
        (Some(phase), None) => field(out, "Phase", phase),
        (None, _) => field(out, "Phase", "- (no status yet)"),
    }
    if let Some(expires) = &status.expires_at
        && status.phase == Some(Phase::PendingApproval)
    {
        field(out, "Expires", when(expires, now));
    }
    if let Some(created) = &action.metadata.creation_timestamp {
        let text = created.0.to_string();
        field(out, "Created", when(&text, now));
    }
}

/// The confidence, and how it was calibrated from the outcome history.
fn confidence(out: &mut String, spec: &nanny_crd::HealingActionSpec) {
    let stated = if spec.source.kind == SourceKind::Model {
        "the model's own estimate, untrusted"
    } else {
        "the rule's"
    };
    match &spec.calibration {
        Some(c) => {
            field(
                out,
                "Confidence",
                format!(
                    "{}% (calibrated: {stated} {}%, {} of {} verified outcomes effective, prior weight {})",
                    spec.confidence, c.reported, c.effective, c.outcomes, c.prior_weight
                ),
            );
            if !c.history.is_empty() {
                field(out, "History", &c.history);
            }
        }
        None if spec.source.kind == SourceKind::Model => field(
            out,
            "Confidence",
            format!("{}% ({stated})", spec.confidence),
        ),
        None => field(out, "Confidence", format!("{}%", spec.confidence)),
    }
}

/// What was proposed, on what, by whom and why.
fn proposal(out: &mut String, action: &HealingAction) {
    let spec = &action.spec;
    field(out, "Action", action_type(action));
    for (key, value) in spec.action.params.entries() {
        field(out, "  Param", format!("{key}={value}"));
    }
    field(out, "Target", target(action));
    let t = &spec.target;
    field(
        out,
        "  Pinned",
        format!(
            "uid {}{}",
            t.uid,
            if t.resource_version.is_empty() {
                String::new()
            } else {
                format!(", resourceVersion {}", t.resource_version)
            }
        ),
    );
    if let Some(workload) = &spec.workload_uid {
        field(out, "  Workload uid", workload);
    }
    let source = match spec.source.kind {
        SourceKind::Rule => format!("rule {}", spec.source.name),
        SourceKind::Model => {
            let mut text = format!("model {}", spec.source.name);
            let details: Vec<String> = [
                spec.source.provider.as_ref().map(|p| format!("via {p}")),
                spec.source
                    .prompt_version
                    .as_ref()
                    .map(|v| format!("prompt {v}")),
                spec.source.digest.as_ref().map(|d| format!("digest {d}")),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !details.is_empty() {
                let _ = write!(text, " ({})", details.join(", "));
            }
            text
        }
    };
    field(out, "Source", source);
    confidence(out, spec);
    if !spec.risk.is_empty() {
        field(out, "Risk", &spec.risk);
    }
    field(out, "Reasoning", &spec.reasoning);
    if !spec.evidence.is_empty() {
        out.push_str("Evidence:\n");
        for evidence in &spec.evidence {
            let _ = writeln!(out, "  - {evidence}");
        }
    }
    if !spec.issue_fingerprints.is_empty() {
        field(out, "Issues", spec.issue_fingerprints.join(", "));
    }
    field(
        out,
        "Recommendation",
        format!("{} (snapshot {})", spec.recommendation_id, spec.snapshot_id),
    );
}

/// The gate's verdict, a human's decision, the result and any rollback.
fn decisions(
    out: &mut String,
    action: &HealingAction,
    status: &HealingActionStatus,
    now: Timestamp,
) {
    let spec = &action.spec;
    match &status.verdict {
        Some(verdict) => {
            field(out, "Verdict", verdict.decision);
            if let Some(at) = &verdict.decided_at {
                field(out, "  Decided", when(at, now));
            }
            let rules = if verdict.matched_rules.is_empty() {
                "<none>".to_owned()
            } else {
                verdict.matched_rules.join(", ")
            };
            field(out, "  Matched rules", rules);
            if !verdict.reasons.is_empty() {
                out.push_str("  Reasons:\n");
                for reason in &verdict.reasons {
                    let _ = writeln!(out, "    - {reason}");
                }
            }
            if !verdict.audit_id.is_empty() {
                field(out, "  Audit id", &verdict.audit_id);
            }
        }
        None => field(out, "Verdict", "<none yet>"),
    }
    match &spec.approval {
        Some(approval) => {
            let decision = match approval.decision {
                HumanDecision::Approve => "Approved",
                HumanDecision::Reject => "Rejected",
            };
            field(
                out,
                "Approval",
                format!("{decision} by {} at {}", approval.by, approval.at),
            );
            if !approval.comment.is_empty() {
                field(out, "  Comment", &approval.comment);
            }
        }
        None => field(out, "Approval", "<none>"),
    }
    match &status.result {
        Some(result) => {
            out.push_str("Result:\n");
            result_lines(out, result, now);
        }
        None => field(out, "Result", "<none yet>"),
    }
    if let Some(reason) = action.annotations().get(ROLLBACK_ANNOTATION) {
        field(out, "Rollback asked", reason);
    }
    if let Some(rollback) = &status.rollback {
        out.push_str("Rollback:\n");
        result_lines(out, rollback, now);
    }
}
