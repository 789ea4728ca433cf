//! HealingActions stored before the records were typed read as they did:
//! the decision and outcome spellings are the same strings, and a spelling
//! this build does not know reads fail-closed.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nanny_crd::{ActionType, Decision, HealingAction, Outcome, Phase};
use serde_json::Value;

fn stored() -> Value {
    serde_json::from_str(include_str!("fixtures/healingaction-v1alpha1-strings.json")).unwrap()
}

#[test]
fn an_action_stored_with_string_records_reads_typed() {
    let action: HealingAction = serde_json::from_value(stored()).unwrap();
    assert_eq!(action.spec.action.type_, ActionType::RestartPod);
    let status = action.status.as_ref().unwrap();
    assert_eq!(status.phase, Some(Phase::RolledBack));
    let verdict = status.verdict.as_ref().unwrap();
    assert_eq!(verdict.decision, Decision::Approved);
    assert_eq!(verdict.audit_seq, Some(42));
    assert_eq!(
        status.result.as_ref().unwrap().outcome,
        Outcome::Ineffective
    );
    assert_eq!(
        status.rollback.as_ref().unwrap().outcome,
        Outcome::RolledBack
    );
}

#[test]
fn typed_records_write_the_same_strings_back() {
    let action: HealingAction = serde_json::from_value(stored()).unwrap();
    let written = serde_json::to_value(&action).unwrap();
    let original = stored();
    for pointer in [
        "/status/verdict/decision",
        "/status/result/outcome",
        "/status/rollback/outcome",
        "/status/phase",
        "/spec/action/type",
    ] {
        assert_eq!(
            written.pointer(pointer),
            original.pointer(pointer),
            "{pointer}"
        );
    }
}

#[test]
fn spellings_this_build_does_not_know_read_fail_closed() {
    let mut newer = stored();
    newer["status"]["verdict"]["decision"] = "ApprovedByOracle".into();
    newer["status"]["result"]["outcome"] = "PartlyHealed".into();
    let action: HealingAction = serde_json::from_value(newer).unwrap();
    let status = action.status.unwrap();
    assert_eq!(status.verdict.unwrap().decision, Decision::Denied);
    let outcome = status.result.unwrap().outcome;
    assert_eq!(outcome, Outcome::Unknown);
    assert!(
        outcome.executed(),
        "an unknown outcome counts as executed and failed"
    );
}

#[test]
fn records_map_the_contract_both_ways() {
    use nanny_proto::v1 as pb;
    for d in [
        pb::Decision::Approved,
        pb::Decision::NeedsApproval,
        pb::Decision::DryRunOnly,
        pb::Decision::Denied,
    ] {
        assert_eq!(Decision::from_proto(d as i32).proto(), d);
    }
    assert_eq!(
        Decision::from_proto(pb::Decision::Unspecified as i32),
        Decision::Denied
    );
    assert_eq!(Decision::from_proto(99), Decision::Denied);
    assert_eq!(
        Outcome::from_proto(pb::Outcome::Blocked as i32),
        Outcome::Blocked
    );
    assert_eq!(Outcome::from_proto(99), Outcome::Unknown);
    assert!(!Outcome::Blocked.executed() && !Outcome::DryRun.executed());
}
