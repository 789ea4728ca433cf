use std::sync::Arc;

use nanny_proto::v1::{self as pb, IssueKind};

use super::*;
use crate::detect::tests::{entry, kinds, namespaced as reference};

const NOW: i64 = 1_800_000_000;

fn condition(type_: &str, reason: &str, seconds_ago: i64) -> pb::Condition {
    pb::Condition {
        r#type: type_.to_owned(),
        status: "False".to_owned(),
        reason: reason.to_owned(),
        last_transition: Some(prost_types::Timestamp {
            seconds: NOW - seconds_ago,
            nanos: 0,
        }),
        message: None,
    }
}

/// An HPA on Deployment `web`, scaling on cpu utilization.
fn hpa(name: &str, conditions: Vec<pb::Condition>) -> pb::HorizontalPodAutoscaler {
    pb::HorizontalPodAutoscaler {
        r#ref: Some(reference("HorizontalPodAutoscaler", name)),
        scale_target: Some(reference("Deployment", "web")),
        min_replicas: 1,
        max_replicas: 5,
        current_replicas: 2,
        metrics: vec![pb::HpaMetric {
            name: "cpu".to_owned(),
            current_utilization_percent: None,
            target_utilization_percent: Some(60),
        }],
        conditions,
        ..pb::HorizontalPodAutoscaler::default()
    }
}

/// A pod of Deployment `web` whose containers request `cpu` each.
fn web_pod(name: &str, phase: &str, cpu: &[Option<i64>]) -> pb::Pod {
    pb::Pod {
        r#ref: Some(reference("Pod", name)),
        workload: Some(reference("Deployment", "web")),
        phase: phase.to_owned(),
        containers: cpu
            .iter()
            .enumerate()
            .map(|(i, cpu)| pb::ContainerStatus {
                name: format!("c{i}"),
                requests: Some(pb::Resources {
                    cpu_millicores: *cpu,
                    memory_bytes: Some(1 << 20),
                }),
                ..pb::ContainerStatus::default()
            })
            .collect(),
        ..pb::Pod::default()
    }
}

fn run(hpas: Vec<pb::HorizontalPodAutoscaler>, pods: Vec<pb::Pod>) -> Vec<pb::Issue> {
    let mut tables = Tables::default();
    for h in hpas {
        let uid = h.r#ref.as_ref().map(|r| r.uid.clone()).unwrap_or_default();
        tables.hpas.insert(Arc::from(uid.as_str()), entry(h));
    }
    for p in pods {
        let uid = p.r#ref.as_ref().map(|r| r.uid.clone()).unwrap_or_default();
        tables.pods.insert(Arc::from(uid.as_str()), entry(p));
    }
    let mut issues = Vec::new();
    hpas_unable(&tables, &Thresholds::default(), NOW, &mut issues);
    issues
}

#[test]
fn an_hpa_the_controller_says_cannot_scale_is_an_issue_once_past_the_threshold() {
    let issues = run(
        vec![
            hpa(
                "metrics",
                vec![condition("ScalingActive", "FailedGetResourceMetric", 601)],
            ),
            hpa(
                "target",
                vec![condition("AbleToScale", "FailedGetScale", 3600)],
            ),
            hpa(
                "fresh",
                vec![condition("ScalingActive", "FailedGetResourceMetric", 30)],
            ),
        ],
        Vec::new(),
    );
    assert_eq!(
        kinds(&issues),
        [
            (IssueKind::HpaUnableToScale, "metrics".to_owned()),
            (IssueKind::HpaUnableToScale, "target".to_owned()),
        ]
    );
    let metrics = issues
        .iter()
        .find(|i| i.target.as_ref().is_some_and(|t| t.name == "metrics"))
        .expect("the metrics issue");
    let evidence = |d: &str| nanny_common::snapshot::evidence(metrics, d).map(str::to_owned);
    assert_eq!(
        evidence("condition").as_deref(),
        Some("ScalingActive=False (FailedGetResourceMetric)")
    );
    assert_eq!(
        evidence("scale target").as_deref(),
        Some("Deployment shop/web")
    );
    assert_eq!(evidence("unable seconds").as_deref(), Some("601"));
    assert_eq!(
        evidence("replicas (current/min/max)").as_deref(),
        Some("2/1/5")
    );
}

#[test]
fn a_healthy_or_deliberately_idle_hpa_raises_nothing() {
    let healthy = pb::Condition {
        status: "True".to_owned(),
        ..condition("ScalingActive", "ValidMetricFound", 9999)
    };
    let issues = run(
        vec![
            hpa("healthy", vec![healthy]),
            // Its target scaled to zero by a person: scaling is off on purpose.
            hpa(
                "zero",
                vec![condition("ScalingActive", "ScalingDisabled", 9999)],
            ),
            // Old controllers: waiting out a stabilization window.
            hpa(
                "backoff",
                vec![condition("AbleToScale", "BackoffBoth", 9999)],
            ),
            hpa("new", Vec::new()),
        ],
        vec![web_pod("web-1", "Running", &[Some(100), Some(50)])],
    );
    assert_eq!(kinds(&issues), []);
}

#[test]
fn an_hpa_on_cpu_utilization_over_pods_without_cpu_requests_is_an_issue() {
    let issues = run(
        vec![hpa(
            "web",
            vec![condition("ScalingActive", "FailedGetResourceMetric", 9999)],
        )],
        vec![
            web_pod("web-1", "Running", &[Some(100), None]),
            web_pod("web-2", "Pending", &[Some(100), None]),
        ],
    );
    // The missing request is the cause: the controller's condition is not
    // reported again.
    assert_eq!(
        kinds(&issues),
        [(IssueKind::HpaTargetWithoutRequests, "web".to_owned())]
    );
    let evidence = |d: &str| nanny_common::snapshot::evidence(&issues[0], d).map(str::to_owned);
    assert_eq!(evidence("resource").as_deref(), Some("cpu"));
    assert_eq!(
        evidence("containers without a request").as_deref(),
        Some("c1")
    );
    assert_eq!(
        evidence("target utilization percent").as_deref(),
        Some("60")
    );
}

#[test]
fn requests_are_judged_on_live_pods_of_the_target_only() {
    let other = pb::Pod {
        workload: Some(reference("Deployment", "other")),
        ..web_pod("other-1", "Running", &[None])
    };
    let finished = web_pod("web-old", "Succeeded", &[None]);
    let deleting = pb::Pod {
        deletion_deadline: Some(prost_types::Timestamp::default()),
        ..web_pod("web-going", "Running", &[None])
    };
    // A memory target over pods requesting memory, an AverageValue cpu
    // target (no utilization) over pods requesting no cpu.
    let memory = pb::HorizontalPodAutoscaler {
        metrics: vec![
            pb::HpaMetric {
                name: "memory".to_owned(),
                current_utilization_percent: None,
                target_utilization_percent: Some(70),
            },
            pb::HpaMetric {
                name: "cpu".to_owned(),
                current_utilization_percent: None,
                target_utilization_percent: None,
            },
        ],
        ..hpa("memory", Vec::new())
    };
    let issues = run(
        vec![hpa("web", Vec::new()), memory],
        vec![
            other,
            finished,
            deleting,
            web_pod("web-1", "Running", &[Some(100)]),
        ],
    );
    assert_eq!(kinds(&issues), []);
}

/// HPA `web` (at 2 of 5 replicas) with `shares` (one a day, 0 to 1, the
/// newest last) as its daily share at its maximum, and `issues` found
/// before.
fn rising(shares: &[f64], issues: &mut Vec<pb::Issue>) {
    let samples: Vec<(f64, f64)> = (0_i32..)
        .zip(shares)
        .map(|(day, share)| (f64::from(day).mul_add(86_400.0, 1.7e9), *share))
        .collect();
    let mut tables = Tables::default();
    tables.hpas.insert(
        Arc::from("uid-HorizontalPodAutoscaler-web"),
        entry(hpa("web", Vec::new())),
    );
    let metrics = MetricsRound {
        history: crate::prom::History {
            hpa_shares: Arc::new(vec![TrendSeries {
                labels: [
                    ("namespace".to_owned(), "shop".to_owned()),
                    ("horizontalpodautoscaler".to_owned(), "web".to_owned()),
                ]
                .into(),
                fit: crate::trend::fit_all(&samples, 86_400.0, 0.0).unwrap(),
            }]),
            ..crate::prom::History::default()
        },
        ..MetricsRound::default()
    };
    hpas_rising(&tables, &metrics, &Thresholds::default(), issues);
}

#[test]
fn an_hpa_at_max_for_a_rising_share_of_each_day_is_predicted_to_be_pinned() {
    // 4% of the first day, 2 points more each day, 30% of the last; a quiet
    // Sunday (a quarter of its neighbours) is no reset.
    let shares: Vec<f64> = (0..14)
        .map(|d| {
            let share = 0.04 + 0.02 * f64::from(d);
            if d == 6 { share / 4.0 } else { share }
        })
        .collect();
    let mut issues = Vec::new();
    rising(&shares, &mut issues);
    assert_eq!(
        kinds(&issues),
        [(IssueKind::HpaAtMaxRising, "web".to_owned())]
    );
    let trend = issues[0].trend.as_ref().unwrap();
    assert_eq!(trend.samples, 14);
    assert!(trend.r_squared > 0.6 && trend.ceiling == 1.0, "{trend:?}");
    assert!(
        issues[0].summary.contains("maximum of 5 replicas")
            && issues[0].summary.contains("over 14 days")
            && issues[0].summary.contains("Predicted, not yet failed"),
        "{}",
        issues[0].summary
    );
    // Flat, rising from too little, or noise: nothing.
    let flat = [0.3; 14];
    let low: Vec<f64> = (0..14).map(|d| 0.001 * f64::from(d)).collect();
    let noise: Vec<f64> = (0..14)
        .map(|d| if d % 2 == 0 { 0.05 } else { 0.4 })
        .collect();
    for shares in [&flat[..], &low, &noise] {
        let mut issues = Vec::new();
        rising(shares, &mut issues);
        assert_eq!(kinds(&issues), [], "{shares:?}");
    }
    // At its maximum with a metric over target now: HPAAtMax says it.
    let at_max = pb::Issue {
        kind: IssueKind::HpaAtMax as i32,
        fingerprint: crate::detect::fingerprint(
            IssueKind::HpaAtMax,
            "uid-HorizontalPodAutoscaler-web",
            "",
        ),
        ..pb::Issue::default()
    };
    let mut issues = vec![at_max];
    rising(&shares, &mut issues);
    assert_eq!(issues.len(), 1);
}
