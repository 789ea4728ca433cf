//! Predicted issues: the proposal is sized to the trend within its bounds,
//! says it is predicted, and a trend that cannot be trusted yields nothing.

use nanny_proto::v1::{self as pb, ClusterSnapshot, IssueKind, action::Kind};

use super::report_tests::{run, scene};
use super::tests::rule_of;

const MIB: i64 = 1 << 20;

fn with_trend(kind: IssueKind, edit: impl FnOnce(&mut pb::Trend)) -> ClusterSnapshot {
    let mut s = scene(kind);
    if let Some(trend) = s.issues[0].trend.as_mut() {
        edit(trend);
    }
    s
}

fn only(s: &ClusterSnapshot) -> (Kind, String, String) {
    let recs = run(s);
    assert_eq!(recs.len(), 1, "{recs:?}");
    let r = &recs[0];
    (
        r.action.clone().and_then(|a| a.kind).unwrap(),
        r.reason.clone(),
        rule_of(r).to_owned(),
    )
}

fn memory_limit(kind: &Kind) -> Option<i64> {
    match kind {
        Kind::PatchResources(p) => p.limits?.memory_bytes,
        _ => None,
    }
}

#[test]
fn a_predicted_oom_raises_the_limit_to_hold_the_trend_within_bounds() {
    // 256 MiB limit, working set at two thirds of it.
    let steady = with_trend(IssueKind::OomPredicted, |t| {
        t.slope_per_hour = 8.0 * 1_048_576.0
    });
    let (kind, reason, rule) = only(&steady);
    // 170.7 MiB + 24 h × 8 MiB/h = 362.7 MiB, rounded up to a MiB.
    assert_eq!(memory_limit(&kind), Some(363 * MIB));
    assert_eq!(rule, "oom-predicted-raise-memory-limit");
    for words in [
        "predicted to reach its memory limit",
        "Predicted, not yet failed",
        "memory leak",
        "holds the trend",
    ] {
        assert!(reason.contains(words), "{words}: {reason}");
    }
    // Fast growth: at most the limit times the OOM factor (1.5).
    let (kind, ..) = only(&scene(IssueKind::OomPredicted));
    assert_eq!(memory_limit(&kind), Some(384 * MIB));
    // Slow growth: at least a tenth more than the limit.
    let slow = with_trend(IssueKind::OomPredicted, |t| t.slope_per_hour = 1_048_576.0);
    let (kind, ..) = only(&slow);
    assert_eq!(memory_limit(&kind), Some(282 * MIB));
}

#[test]
fn a_predicted_full_claim_is_expanded_to_hold_the_trend_at_most_twice_its_size() {
    let (kind, reason, rule) = only(&scene(IssueKind::PvcPredictedFull));
    assert_eq!(rule, "pvc-predicted-expand");
    assert!(
        matches!(kind, Kind::ExpandPvc(ref e) if e.new_size_bytes == 2048 * MIB),
        "{kind:?}"
    );
    assert!(
        reason.contains("predicted to fill") && reason.contains("Predicted, not yet failed"),
        "{reason}"
    );
    // Slow growth: at least the capacity times the factor (1.5).
    let slow = with_trend(IssueKind::PvcPredictedFull, |t| {
        t.slope_per_hour = 1_048_576.0
    });
    assert!(matches!(only(&slow).0, Kind::ExpandPvc(ref e) if e.new_size_bytes == 1536 * MIB));
    let mut fixed = scene(IssueKind::PvcPredictedFull);
    fixed.pvcs[0].expandable = false;
    let (kind, reason, _) = only(&fixed);
    assert!(
        matches!(kind, Kind::ReportOnly(_)) && reason.contains("predicted"),
        "{kind:?}"
    );
}

#[test]
fn a_node_predicted_to_run_out_of_memory_is_cordoned_or_reported_when_cordoned() {
    let (kind, reason, rule) = only(&scene(IssueKind::NodePredictedExhausted));
    assert_eq!(rule, "node-predicted-cordon");
    assert!(matches!(kind, Kind::CordonNode(_)), "{kind:?}");
    for words in [
        "predicted to reach its allocatable memory in 3.3h",
        "grew 1.6 GiB/h",
        "now 10.7 GiB of 16 GiB",
        "Predicted, not yet failed",
        "Cordon it",
    ] {
        assert!(reason.contains(words), "{words}: {reason}");
    }
    let mut cordoned = scene(IssueKind::NodePredictedExhausted);
    cordoned.nodes[0].unschedulable = true;
    let (kind, reason, _) = only(&cordoned);
    assert!(
        matches!(kind, Kind::ReportOnly(_)) && reason.contains("cordoned already"),
        "{kind:?}: {reason}"
    );
}

#[test]
fn a_node_predicted_to_fill_its_disk_is_cordoned_by_the_same_rule() {
    let (kind, reason, rule) = only(&scene(IssueKind::NodeDiskPredictedFull));
    assert_eq!(rule, "node-predicted-cordon");
    assert!(matches!(kind, Kind::CordonNode(_)), "{kind:?}");
    for words in [
        "bytes used on its filesystem are predicted to reach its allocatable ephemeral storage in 3.3h",
        "grew 10 GiB/h",
        "now 66.7 GiB of 100 GiB",
        "Predicted, not yet failed",
        "Cordon it",
        "DiskPressure",
    ] {
        assert!(reason.contains(words), "{words}: {reason}");
    }
    // Memory and disk predicted on one node: one cordon explaining both.
    let mut both = scene(IssueKind::NodePredictedExhausted);
    let mut disk = scene(IssueKind::NodeDiskPredictedFull).issues.remove(0);
    disk.fingerprint = "fp-disk".into();
    both.issues.push(disk);
    let (kind, reason, _) = only(&both);
    assert!(matches!(kind, Kind::CordonNode(_)), "{kind:?}");
    for words in ["allocatable memory", "allocatable ephemeral storage"] {
        assert!(reason.contains(words), "{words}: {reason}");
    }
}

#[test]
fn an_hpa_at_max_for_a_rising_share_of_each_day_gets_a_higher_max_before_the_peak() {
    let rising = with_trend(IssueKind::HpaAtMaxRising, |t| {
        // 30% of the last day, rising 2 points a day over 14 days.
        t.current = 0.3;
        t.slope_per_hour = 0.02 / 24.0;
        t.samples = 14;
        t.seconds_to_ceiling = 35 * 86_400;
    });
    let (kind, reason, rule) = only(&rising);
    assert_eq!(rule, "hpa-predicted-raise-max");
    let Kind::ScaleHpa(scale) = kind else {
        panic!("{kind:?}");
    };
    // 4 × 1.5 (the HPA rule's factor).
    assert_eq!((scale.max_replicas, scale.min_replicas), (6, None));
    for words in [
        "for 30% of the last day",
        "rising 2.0 points a day over 14 days",
        "pinned there all day in 35.0d",
        "Predicted, not yet failed",
        &format!("A maximum of {} gives it room", scale.max_replicas),
    ] {
        assert!(reason.contains(words), "{words}: {reason}");
    }
}

#[test]
fn a_cordon_on_a_prediction_is_not_lifted_while_the_prediction_stands() {
    // Nanny's cordon on a node Ready for an hour: lifted ...
    let mut s = scene(IssueKind::NodeCordoned);
    let (kind, ..) = only(&s);
    assert!(matches!(kind, Kind::UncordonNode(_)), "{kind:?}");
    // ... unless its memory is still predicted to run out.
    let mut predicted = scene(IssueKind::NodePredictedExhausted).issues.remove(0);
    predicted.fingerprint = "fp-predicted".into();
    predicted.target = s.nodes[0].r#ref.clone();
    s.issues.push(predicted);
    let recs = run(&s);
    assert!(
        recs.iter().all(|r| !matches!(
            r.action.as_ref().and_then(|a| a.kind.as_ref()),
            Some(Kind::UncordonNode(_))
        )),
        "{recs:?}"
    );
}

#[test]
fn a_trend_that_cannot_be_trusted_yields_nothing() {
    let bad: [fn(&mut pb::Trend); 6] = [
        |t| t.slope_per_hour = f64::NAN,
        |t| t.slope_per_hour = -1.0,
        |t| t.r_squared = 1.5,
        |t| t.current = -5.0,
        |t| t.ceiling = f64::INFINITY,
        |t| t.seconds_to_ceiling = -1,
    ];
    for kind in [
        IssueKind::OomPredicted,
        IssueKind::PvcPredictedFull,
        IssueKind::NodePredictedExhausted,
        IssueKind::NodeDiskPredictedFull,
        IssueKind::HpaAtMaxRising,
    ] {
        for edit in bad {
            let recs = run(&with_trend(kind, edit));
            assert!(recs.is_empty(), "{kind:?}: {recs:?}");
        }
        let mut none = scene(kind);
        none.issues[0].trend = None;
        assert!(run(&none).is_empty(), "{kind:?} without a trend");
    }
    // A container the pod does not have.
    let mut other = scene(IssueKind::OomPredicted);
    other.issues[0]
        .evidence
        .retain(|e| e.description != "container");
    other.issues[0].evidence.push(pb::Evidence {
        description: "container".into(),
        value: "sidecar".into(),
    });
    assert!(run(&other).is_empty());
}
