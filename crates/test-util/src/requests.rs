//! Ready-made contract messages for tests.

use std::time::SystemTime;

use nanny_proto::v1::{
    Action, ActionType, AllowedAction, GatePolicy, IssueKind, ObjectRef, PolicyMode,
    Recommendation, RestartPod, ReviewContext, ReviewRequest, Source, action, source,
};

/// A rule's proposal to restart crash-looping pod `namespace/name` under an
/// Auto-mode policy that allows pod restarts — what the gate auto-approves
/// unless a protection or limit says otherwise.
pub fn crashloop_restart(namespace: &str, name: &str) -> ReviewRequest {
    ReviewRequest {
        recommendation: Some(Recommendation {
            id: format!("rec-{name}"),
            action: Some(Action {
                kind: Some(action::Kind::RestartPod(RestartPod {})),
            }),
            target: Some(ObjectRef {
                kind: "Pod".into(),
                namespace: namespace.into(),
                name: name.into(),
                uid: format!("uid-{namespace}-{name}"),
                ..ObjectRef::default()
            }),
            confidence: 100,
            source: Some(Source {
                kind: Some(source::Kind::RuleId("crashloop-restart".into())),
            }),
            ..Recommendation::default()
        }),
        policy_ref: format!("{namespace}/default"),
        snapshot_taken_at: Some(SystemTime::now().into()),
        policy: Some(GatePolicy {
            mode: PolicyMode::Auto as i32,
            allowed_actions: vec![AllowedAction {
                r#type: ActionType::RestartPod as i32,
                ..AllowedAction::default()
            }],
            ai_min_confidence: 0.75,
            ..GatePolicy::default()
        }),
        context: Some(ReviewContext {
            target_issue_kinds: vec![IssueKind::CrashLoopBackOff as i32],
            facts_complete: true,
            ..ReviewContext::default()
        }),
        human_approval: None,
        policy_generation: 1,
    }
}
