//! The stages of a stateless review that need no gate state: the
//! request's shape, the policy's entry and override for the action, the
//! checks on a model's proposal, and the policy's mode.

use nanny_proto::v1::{
    Action, AllowedAction, ApprovalOverride, GatePolicy, ObjectRef, PolicyMode, Recommendation,
    ReviewRequest, action::Kind, source,
};
use nanny_proto::vocabulary;

use super::{Level, Review, action_type, approval::check_target_kind};

/// The request's parts every later check reads, each present and well
/// formed: the recommendation, its action, its target and its source.
pub(super) fn shape(
    request: &ReviewRequest,
) -> Result<(&Recommendation, &Kind, &ObjectRef, &source::Kind), Review> {
    let Some(recommendation) = &request.recommendation else {
        return Err(Review::denied(
            "malformed",
            "no recommendation in the request",
        ));
    };
    if recommendation.id.is_empty() {
        return Err(Review::denied("malformed", "recommendation has no id"));
    }
    let Some(kind) = recommendation
        .action
        .as_ref()
        .and_then(|a: &Action| a.kind.as_ref())
    else {
        return Err(Review::denied(
            "unknown-action",
            "action missing or not understood by this gate version",
        ));
    };
    let Some(target) = &recommendation.target else {
        return Err(Review::denied("malformed", "recommendation has no target"));
    };
    if target.uid.is_empty() {
        return Err(Review::denied(
            "missing-target-uid",
            "target has no uid, so it cannot be pinned",
        ));
    }
    if target.kind.is_empty() || target.name.is_empty() {
        return Err(Review::denied("malformed", "target kind or name missing"));
    }
    // A look-alike of a protected namespace is no namespace at all:
    // refused before any comparison with the protected list.
    if let Some(reason) = nanny_common::names::refusal(&target.namespace, &target.name) {
        return Err(Review::denied("invalid-name", reason));
    }
    let cluster_scoped = nanny_proto::vocabulary::CLUSTER_SCOPED.contains(&target.kind.as_str());
    if target.namespace.is_empty() && !cluster_scoped {
        return Err(Review::denied(
            "malformed",
            format!("a {} target needs a namespace", target.kind),
        ));
    }
    if recommendation.confidence > 100 {
        return Err(Review::denied(
            "malformed",
            format!("confidence {} is above 100", recommendation.confidence),
        ));
    }
    let Some(source) = recommendation.source.as_ref().and_then(|s| s.kind.as_ref()) else {
        return Err(Review::denied("malformed", "recommendation source missing"));
    };
    if let Err(reason) = check_target_kind(kind, target) {
        return Err(Review::denied("target-kind-mismatch", reason));
    }
    Ok((recommendation, kind, target, source))
}

/// The policy's one entry for the action's type.
pub(super) fn allowed_entry<'p>(
    policy: &'p GatePolicy,
    kind: &Kind,
    policy_ref: &str,
) -> Result<&'p AllowedAction, Review> {
    let entries = policy
        .allowed_actions
        .iter()
        .filter(|a| a.r#type == action_type(kind) as i32)
        .count();
    if entries > 1 {
        return Err(Review::denied(
            "malformed",
            "the policy lists this action type more than once",
        ));
    }
    let allowed = policy
        .allowed_actions
        .iter()
        .find(|a| a.r#type == action_type(kind) as i32);
    let Some(allowed) = allowed else {
        return Err(Review::denied(
            "action-not-allowed",
            format!(
                "policy {} does not allow {}",
                policy_ref,
                action_type(kind).as_str_name()
            ),
        ));
    };
    Ok(allowed)
}

/// The policy's approval override for the action: it may ask for a human,
/// or waive one where the action allows that.
pub(super) fn policy_override(
    review: &mut Review,
    allowed: &AllowedAction,
    kind: &Kind,
) -> Result<(), Review> {
    match ApprovalOverride::try_from(allowed.approval) {
        Ok(ApprovalOverride::Unspecified) => {}
        Ok(ApprovalOverride::Manual) => {
            review.tighten(
                Level::NeedsApproval,
                "policy-manual-approval",
                "the policy requires a human for this action",
            );
        }
        // Actions that reach beyond the target's namespace (a drain
        // evicts pods of every namespace on the node) stay a human's
        // call, whatever a policy says.
        Ok(ApprovalOverride::Auto)
            if vocabulary::of(kind).approval == vocabulary::Approval::AlwaysHuman =>
        {
            review.tighten(
                Level::NeedsApproval,
                "drain-needs-human",
                "a drain evicts pods of every namespace on the node; a human approves it whatever the policy says",
            );
        }
        Ok(ApprovalOverride::Auto) => {
            if review.level == Level::NeedsApproval {
                review.level = Level::Approved;
                review.matched_rules.push("policy-auto-approval");
                review
                    .reasons
                    .push("the policy auto-approves this action type".to_owned());
            }
        }
        Err(_) => return Err(Review::denied("malformed", "unknown approval override")),
    }
    Ok(())
}

/// Model output is untrusted: confidence can only make a review stricter,
/// and a model's proposal needs a human unless the policy says otherwise.
pub(super) fn untrusted_model(
    review: &mut Review,
    recommendation: &Recommendation,
    source: &source::Kind,
    policy: &GatePolicy,
) {
    let confidence = f64::from(recommendation.confidence) / 100.0;
    if confidence < policy.ai_min_confidence {
        let level = if matches!(source, source::Kind::Model(_)) {
            Level::Denied
        } else {
            Level::NeedsApproval
        };
        review.tighten(
            level,
            "low-confidence",
            format!(
                "confidence {confidence:.2} is below the policy minimum {:.2}",
                policy.ai_min_confidence
            ),
        );
    }
    if matches!(source, source::Kind::Model(_)) && !policy.ai_allow_auto_approve {
        review.tighten(
            Level::NeedsApproval,
            "model-needs-human",
            "only a model proposed this; a human must approve",
        );
    }
}

/// The policy's mode (DryRun and Monitor only record) and pause.
pub(super) fn mode(review: &mut Review, policy: &GatePolicy) -> Result<(), Review> {
    match PolicyMode::try_from(policy.mode) {
        Ok(PolicyMode::Auto) => {}
        Ok(PolicyMode::DryRun) => review.tighten(
            Level::DryRunOnly,
            "mode-dry-run",
            "the policy is in DryRun mode",
        ),
        Ok(PolicyMode::Monitor) => review.tighten(
            Level::DryRunOnly,
            "mode-monitor",
            "the policy is in Monitor mode",
        ),
        Ok(PolicyMode::Unspecified) | Err(_) => {
            return Err(Review::denied("unknown-mode", "the policy mode is not set"));
        }
    }
    if policy.paused {
        review.tighten(Level::Denied, "policy-paused", "the policy is paused");
    }
    Ok(())
}
