//! Predicted issues: a trend fitted to a Prometheus range reaching its
//! ceiling within the horizon, before anything has failed.
//!
//! - `PVCPredictedFull`: a claim's used bytes reach its capacity within
//!   `thresholds.pvc_fill_horizon_secs`;
//! - `OOMPredicted`: a container's working set reaches its memory limit
//!   within `thresholds.oom_horizon_secs`;
//! - `NodePredictedExhausted`: a node's working set reaches its allocatable
//!   memory within `thresholds.node_exhaustion_horizon_secs`;
//! - `NodeDiskPredictedFull`: the bytes used on a node's filesystem reach
//!   its allocatable ephemeral storage within the same horizon.
//!
//! Each needs a fit at least `trend_min_r_squared` straight over at least
//! its minimum history since the series' last reset, and carries the fit as
//! the issue's `trend`. An object already past its threshold (a claim
//! nearly full, a container OOM-killed, a node under memory or disk
//! pressure) has that issue instead.

use std::collections::HashMap;

use nanny_common::quantity::{bytes_text, duration_text};
use nanny_proto::v1::{self as pb, IssueKind, Severity};

use super::issue;
use crate::{
    config::Thresholds,
    prom::{MetricsRound, TrendSeries},
    store::Tables,
};

/// The trends of `query`, by the values of `keys` in their labels.
fn by_labels<'a>(
    metrics: &'a MetricsRound,
    query: &str,
    keys: &[&str],
) -> HashMap<Vec<&'a str>, &'a TrendSeries> {
    metrics
        .history
        .trends
        .get(query)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let key: Option<Vec<&str>> = keys
                .iter()
                .map(|k| t.labels.get(*k).map(String::as_str))
                .collect();
            Some((key?, t))
        })
        .collect()
}

/// The trend of `series` (from `query`) when it reaches `ceiling` bytes
/// within `horizon_secs`, judged on at least `min_history_secs` of history
/// and a fit at least `trend_min_r_squared` straight.
#[expect(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    reason = "sizes in bytes far below 2^52; finite spans of seconds"
)]
fn reaching(
    query: &str,
    series: &TrendSeries,
    ceiling: i64,
    (horizon_secs, min_history_secs): (u64, u64),
    t: &Thresholds,
) -> Option<pb::Trend> {
    let fit = &series.fit;
    if fit.history_secs < min_history_secs as f64 || fit.r_squared < t.trend_min_r_squared {
        return None;
    }
    let ceiling = ceiling as f64;
    let secs = fit
        .seconds_to(ceiling)
        .filter(|s| *s <= horizon_secs as f64)?;
    Some(pb::Trend {
        series: series.name(query),
        slope_per_hour: fit.slope_per_sec * 3600.0,
        r_squared: fit.r_squared,
        current: fit.current,
        ceiling,
        seconds_to_ceiling: secs.ceil() as i64,
        history_seconds: fit.history_secs.round() as i64,
        samples: u32::try_from(fit.samples).unwrap_or(u32::MAX),
    })
}

/// How `trend` reads in a summary: "in ETA: it grew RATE/h over HISTORY
/// (R² R), now CURRENT".
#[expect(clippy::cast_precision_loss, reason = "spans of seconds")]
fn trend_text(trend: &pb::Trend, what: &str) -> String {
    format!(
        "in {}: {what} grew {}/h over {} (R² {:.2}), now {}",
        duration_text(trend.seconds_to_ceiling as f64),
        bytes_text(trend.slope_per_hour),
        duration_text(trend.history_seconds as f64),
        trend.r_squared,
        bytes_text(trend.current),
    )
}

/// A predicted issue of `kind` carrying `trend`, its fit's evidence and
/// `extra`.
pub(super) fn predicted_issue(
    kind: IssueKind,
    target: &pb::ObjectRef,
    discriminator: &str,
    trend: pb::Trend,
    summary: String,
    extra: Vec<(&'static str, String)>,
) -> pb::Issue {
    let mut evidence = fit_evidence(&trend);
    evidence.extend(extra);
    let mut found = issue(
        kind,
        Severity::Warning,
        target,
        discriminator,
        summary,
        evidence,
    );
    found.trend = Some(trend);
    found
}

/// The evidence every predicted issue carries.
fn fit_evidence(trend: &pb::Trend) -> Vec<(&'static str, String)> {
    vec![
        ("predicted", "not yet failed".to_owned()),
        (
            "seconds until the ceiling",
            trend.seconds_to_ceiling.to_string(),
        ),
        (
            "growth per hour",
            // Bytes to the byte; a share (0 to 1) to a millionth.
            if trend.slope_per_hour.abs() >= 1.0 {
                format!("{:.0}", trend.slope_per_hour)
            } else {
                format!("{:.6}", trend.slope_per_hour)
            },
        ),
        ("fit R squared", format!("{:.3}", trend.r_squared)),
        ("history seconds", trend.history_seconds.to_string()),
        ("samples", trend.samples.to_string()),
        ("series", trend.series.clone()),
    ]
}

/// Claims predicted full, containers predicted OOM-killed and nodes
/// predicted out of memory or disk.
pub fn predicted(
    tables: &Tables,
    metrics: &MetricsRound,
    t: &Thresholds,
    issues: &mut Vec<pb::Issue>,
) {
    if metrics.history.trends.is_empty() {
        return;
    }
    claims(tables, metrics, t, issues);
    containers(tables, metrics, t, issues);
    nodes(tables, metrics, t, issues);
}

fn claims(tables: &Tables, metrics: &MetricsRound, t: &Thresholds, issues: &mut Vec<pb::Issue>) {
    const QUERY: &str = "pvc_used_bytes";
    let trends = by_labels(metrics, QUERY, &["namespace", "persistentvolumeclaim"]);
    if trends.is_empty() {
        return;
    }
    let bounds = (t.pvc_fill_horizon_secs, t.pvc_fill_min_history_secs);
    for entry in tables.pvcs.values() {
        let pvc = &entry.value;
        let Some(target) = pvc.r#ref.as_ref() else {
            continue;
        };
        // Nearly full already: that issue says it.
        if pvc.capacity_bytes <= 0 || pvc.usage_percent.is_some_and(|p| p > t.pvc_usage_percent) {
            continue;
        }
        let Some(trend) = trends
            .get(&vec![target.namespace.as_str(), target.name.as_str()])
            .and_then(|series| reaching(QUERY, series, pvc.capacity_bytes, bounds, t))
        else {
            continue;
        };
        let summary = format!(
            "Volume claim {}/{} is predicted to fill {} of {}. Predicted, not yet failed.",
            target.namespace,
            target.name,
            trend_text(&trend, "its used bytes"),
            bytes_text(trend.ceiling),
        );
        let extra = vec![
            ("used bytes (fitted)", format!("{:.0}", trend.current)),
            ("capacity bytes", pvc.capacity_bytes.to_string()),
            ("expandable", pvc.expandable.to_string()),
        ];
        issues.push(predicted_issue(
            IssueKind::PvcPredictedFull,
            target,
            "",
            trend,
            summary,
            extra,
        ));
    }
}

fn containers(
    tables: &Tables,
    metrics: &MetricsRound,
    t: &Thresholds,
    issues: &mut Vec<pb::Issue>,
) {
    const QUERY: &str = "container_memory_bytes";
    let trends = by_labels(metrics, QUERY, &["namespace", "pod", "container"]);
    if trends.is_empty() {
        return;
    }
    let bounds = (t.oom_horizon_secs, t.oom_min_history_secs);
    for entry in tables.pods.values() {
        let pod = &entry.value;
        let Some(target) = pod.r#ref.as_ref() else {
            continue;
        };
        for container in &pod.containers {
            let Some(limit) = container
                .limits
                .and_then(|l| l.memory_bytes)
                .filter(|l| *l > 0)
            else {
                continue;
            };
            // This container OOM-killed already: that issue says it.
            let killed = super::fingerprint(IssueKind::OomKilled, &target.uid, &container.name);
            if issues.iter().any(|i| i.fingerprint == killed) {
                continue;
            }
            let key = vec![
                target.namespace.as_str(),
                target.name.as_str(),
                container.name.as_str(),
            ];
            let Some(trend) = trends
                .get(&key)
                .and_then(|series| reaching(QUERY, series, limit, bounds, t))
            else {
                continue;
            };
            let summary = format!(
                "Container {} of pod {}/{} is predicted to reach its memory limit of {} {}. A steady rise that does not level off suggests a memory leak. Predicted, not yet failed.",
                container.name,
                target.namespace,
                target.name,
                bytes_text(trend.ceiling),
                trend_text(&trend, "its working set"),
            );
            let extra = vec![
                ("container", container.name.clone()),
                (
                    "working set bytes (fitted)",
                    format!("{:.0}", trend.current),
                ),
                ("memory limit bytes", limit.to_string()),
                ("restarts", container.restart_count.to_string()),
            ];
            issues.push(predicted_issue(
                IssueKind::OomPredicted,
                target,
                &container.name,
                trend,
                summary,
                extra,
            ));
        }
    }
}

/// What a node runs out of: its trend query, the issue it raises, its
/// ceiling, and the issues that say it has run out already.
struct NodeResource {
    query: &'static str,
    kind: IssueKind,
    /// The node's allocatable amount, bytes.
    ceiling: fn(&pb::Node) -> i64,
    pressure: &'static [IssueKind],
    /// What grows, and what it runs out of, in a summary.
    what: &'static str,
    of: &'static str,
    /// The evidence names of the fitted value and the ceiling.
    evidence: [&'static str; 2],
}

const NODE_RESOURCES: [NodeResource; 2] = [
    NodeResource {
        query: "node_memory_bytes",
        kind: IssueKind::NodePredictedExhausted,
        ceiling: |n| n.allocatable.and_then(|a| a.memory_bytes).unwrap_or(0),
        // The kubelet's condition, or little memory available.
        pressure: &[IssueKind::NodeMemoryPressure, IssueKind::MemoryPressure],
        what: "its working set",
        of: "run out of memory",
        evidence: ["working set bytes (fitted)", "allocatable memory bytes"],
    },
    NodeResource {
        query: "node_fs_used_bytes",
        kind: IssueKind::NodeDiskPredictedFull,
        ceiling: |n| n.allocatable_ephemeral_storage_bytes,
        pressure: &[IssueKind::NodeDiskPressure],
        what: "the bytes used on its filesystem",
        of: "fill its disk",
        evidence: [
            "filesystem used bytes (fitted)",
            "allocatable ephemeral storage bytes",
        ],
    },
];

fn nodes(tables: &Tables, metrics: &MetricsRound, t: &Thresholds, issues: &mut Vec<pb::Issue>) {
    let bounds = (
        t.node_exhaustion_horizon_secs,
        t.node_exhaustion_min_history_secs,
    );
    for resource in &NODE_RESOURCES {
        let trends = by_labels(metrics, resource.query, &["node"]);
        if trends.is_empty() {
            continue;
        }
        for entry in tables.nodes.values() {
            let node = &entry.value;
            let Some(target) = node.r#ref.as_ref() else {
                continue;
            };
            let ceiling = (resource.ceiling)(node);
            if ceiling <= 0 {
                continue;
            }
            // Under that pressure already: that issue says it.
            let pressure: Vec<String> = resource
                .pressure
                .iter()
                .map(|kind| super::fingerprint(*kind, &target.uid, ""))
                .collect();
            if issues.iter().any(|i| pressure.contains(&i.fingerprint)) {
                continue;
            }
            let Some(trend) = trends
                .get(&vec![target.name.as_str()])
                .and_then(|series| reaching(resource.query, series, ceiling, bounds, t))
            else {
                continue;
            };
            let summary = format!(
                "Node {} is predicted to {} {} of {} allocatable. Predicted, not yet failed.",
                target.name,
                resource.of,
                trend_text(&trend, resource.what),
                bytes_text(trend.ceiling),
            );
            let extra = vec![
                (resource.evidence[0], format!("{:.0}", trend.current)),
                (resource.evidence[1], ceiling.to_string()),
            ];
            issues.push(predicted_issue(
                resource.kind,
                target,
                "",
                trend,
                summary,
                extra,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use super::*;
    use crate::{
        detect::tests::{entry, namespaced},
        prom::History,
        trend,
    };

    const MIB: f64 = 1_048_576.0;
    const STEP: f64 = 60.0;

    /// Samples a minute apart over `minutes`, ending now, valued by `f(minute)`.
    fn samples(minutes: usize, f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (0..=minutes)
            .map(|i| {
                #[expect(clippy::cast_precision_loss, reason = "small test counts")]
                let m = i as f64;
                (1.8e9 - (minutes as f64 - m) * STEP, f(m))
            })
            .collect()
    }

    fn series(labels: &[(&str, &str)], samples: &[(f64, f64)]) -> Option<TrendSeries> {
        Some(TrendSeries {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            fit: trend::fit(samples, STEP, 0.0).ok()?,
        })
    }

    /// A pod `web-1` whose container `app` has a 512 MiB limit and a claim
    /// `data` of 1 GiB, 40% full; `memory` and `used` their series.
    fn run(memory: &[(f64, f64)], used: &[(f64, f64)], issues: &mut Vec<pb::Issue>) {
        let mut tables = Tables::default();
        let pod = pb::Pod {
            r#ref: Some(namespaced("Pod", "web-1")),
            containers: vec![pb::ContainerStatus {
                name: "app".into(),
                limits: Some(pb::Resources {
                    cpu_millicores: None,
                    memory_bytes: Some(512 << 20),
                }),
                ..pb::ContainerStatus::default()
            }],
            ..pb::Pod::default()
        };
        tables.pods.insert(Arc::from("uid-Pod-web-1"), entry(pod));
        let claim = pb::PersistentVolumeClaim {
            r#ref: Some(namespaced("PersistentVolumeClaim", "data")),
            capacity_bytes: 1 << 30,
            usage_percent: Some(40.0),
            expandable: true,
            ..pb::PersistentVolumeClaim::default()
        };
        tables.pvcs.insert(Arc::from("uid-data"), entry(claim));
        let trends = BTreeMap::from([
            (
                "container_memory_bytes".to_owned(),
                series(
                    &[
                        ("namespace", "shop"),
                        ("pod", "web-1"),
                        ("container", "app"),
                    ],
                    memory,
                )
                .into_iter()
                .collect(),
            ),
            (
                "pvc_used_bytes".to_owned(),
                series(
                    &[("namespace", "shop"), ("persistentvolumeclaim", "data")],
                    used,
                )
                .into_iter()
                .collect(),
            ),
        ]);
        predict(&tables, trends, issues);
    }

    /// [`predicted`] on `tables` with `trends` fitted at 1.8e9 s, after
    /// `issues`.
    fn predict(
        tables: &Tables,
        trends: BTreeMap<String, Vec<TrendSeries>>,
        issues: &mut Vec<pb::Issue>,
    ) {
        let history = History {
            trends: Arc::new(trends),
            trends_at: 1_800_000_000,
            ..History::default()
        };
        let metrics = MetricsRound {
            history,
            ..MetricsRound::default()
        };
        predicted(tables, &metrics, &Thresholds::default(), issues);
    }

    fn kinds(issues: &[pb::Issue]) -> Vec<IssueKind> {
        issues
            .iter()
            .filter_map(|i| IssueKind::try_from(i.kind).ok())
            .collect()
    }

    #[test]
    fn steady_growth_toward_the_ceiling_is_predicted_with_its_trend() {
        // Memory: 100 MiB growing 150 MiB/h for two hours (400 MiB now,
        // 512 MiB in 45 minutes). Used bytes: 300 MiB growing 50 MiB/h (400
        // MiB now, 1 GiB in about 12.5 hours).
        let memory = samples(120, |m| (100.0 + 2.5 * m) * MIB);
        let used = samples(120, |m| (300.0 + m * 50.0 / 60.0) * MIB);
        let mut issues = Vec::new();
        run(&memory, &used, &mut issues);
        assert_eq!(
            kinds(&issues),
            [IssueKind::PvcPredictedFull, IssueKind::OomPredicted]
        );
        let pvc = issues[0].trend.as_ref().unwrap();
        assert!((pvc.slope_per_hour / MIB - 50.0).abs() < 1e-6, "{pvc:?}");
        assert!(
            (pvc.seconds_to_ceiling - 12 * 3600 - 1728).abs() <= 1,
            "{pvc:?}"
        );
        assert_eq!(
            pvc.series,
            r#"pvc_used_bytes{namespace="shop",persistentvolumeclaim="data"}"#
        );
        let oom = &issues[1];
        let trend = oom.trend.as_ref().unwrap();
        assert!((trend.r_squared - 1.0).abs() < 1e-9 && trend.samples == 121);
        assert_eq!(
            (trend.seconds_to_ceiling, trend.history_seconds),
            (2688, 7200)
        );
        assert_eq!(
            nanny_common::snapshot::evidence(oom, "container"),
            Some("app")
        );
        assert_eq!(
            nanny_common::snapshot::evidence(oom, "predicted"),
            Some("not yet failed")
        );
        assert!(
            oom.summary.contains("512 MiB in 45m") && oom.summary.contains("memory leak"),
            "{}",
            oom.summary
        );
    }

    /// Node `n1` with 16 GiB allocatable, its working set's trend `memory`
    /// labelled with `node`, and `issues` found before.
    fn run_node(memory: &[(f64, f64)], node: &str, issues: &mut Vec<pb::Issue>) {
        run_node_query("node_memory_bytes", memory, node, issues);
    }

    /// Node `n1` with 16 GiB of allocatable memory and 100 GiB of
    /// allocatable ephemeral storage, `query`'s trend `values` labelled
    /// with `node`, and `issues` found before.
    fn run_node_query(query: &str, values: &[(f64, f64)], node: &str, issues: &mut Vec<pb::Issue>) {
        let mut tables = Tables::default();
        let n1 = pb::Node {
            r#ref: Some(pb::ObjectRef {
                kind: "Node".into(),
                name: "n1".into(),
                uid: "uid-n1".into(),
                ..pb::ObjectRef::default()
            }),
            allocatable: Some(pb::Resources {
                cpu_millicores: Some(4000),
                memory_bytes: Some(16 << 30),
            }),
            allocatable_ephemeral_storage_bytes: 100 << 30,
            ..pb::Node::default()
        };
        tables.nodes.insert(Arc::from("uid-n1"), entry(n1));
        let trends = BTreeMap::from([(
            query.to_owned(),
            series(&[("node", node)], values).into_iter().collect(),
        )]);
        predict(&tables, trends, issues);
    }

    #[test]
    fn a_node_whose_working_set_nears_its_allocatable_memory_is_predicted() {
        // 8 GiB growing 1 GiB/h for two hours: 10 GiB now, 16 GiB in 6 h
        // (the horizon), reached.
        const GIB: f64 = 1024.0 * MIB;
        let growing = samples(120, |m| 8.0 * GIB + m / 60.0 * GIB);
        let mut issues = Vec::new();
        run_node(&growing, "n1", &mut issues);
        assert_eq!(kinds(&issues), [IssueKind::NodePredictedExhausted]);
        let trend = issues[0].trend.as_ref().unwrap();
        assert_eq!(trend.seconds_to_ceiling, 6 * 3600);
        assert_eq!(trend.series, r#"node_memory_bytes{node="n1"}"#);
        assert!(
            issues[0].summary.contains("run out of memory in 6.0h")
                && issues[0]
                    .summary
                    .contains("now 10 GiB of 16 GiB allocatable")
                && issues[0].summary.contains("Predicted, not yet failed"),
            "{}",
            issues[0].summary
        );
        // Half that growth: 12 hours away, past the horizon.
        let slower = samples(120, |m| 8.0 * GIB + m / 120.0 * GIB);
        // Another node's series, and one under memory pressure already.
        let pressure = pb::Issue {
            kind: IssueKind::NodeMemoryPressure as i32,
            fingerprint: crate::detect::fingerprint(IssueKind::NodeMemoryPressure, "uid-n1", ""),
            ..pb::Issue::default()
        };
        for (memory, node, before) in [
            (&slower, "n1", vec![]),
            (&growing, "n2", vec![]),
            (&growing, "n1", vec![pressure.clone()]),
        ] {
            let mut issues = before.clone();
            run_node(memory, node, &mut issues);
            assert_eq!(issues, before, "{node}");
        }
    }

    #[test]
    fn a_node_whose_filesystem_nears_its_allocatable_ephemeral_storage_is_predicted() {
        // 60 GiB growing 6 GiB/h for two hours: 72 GiB now, 100 GiB in
        // 4 h 40 min (within the 6 h horizon).
        const GIB: f64 = 1024.0 * MIB;
        let filling = samples(120, |m| 60.0 * GIB + m / 10.0 * GIB);
        let mut issues = Vec::new();
        run_node_query("node_fs_used_bytes", &filling, "n1", &mut issues);
        assert_eq!(kinds(&issues), [IssueKind::NodeDiskPredictedFull]);
        let trend = issues[0].trend.as_ref().unwrap();
        assert!(
            (16_799..=16_801).contains(&trend.seconds_to_ceiling),
            "{trend:?}"
        );
        assert_eq!(trend.series, r#"node_fs_used_bytes{node="n1"}"#);
        assert!(
            issues[0].summary.contains("fill its disk in 4.7h")
                && issues[0]
                    .summary
                    .contains("now 72 GiB of 100 GiB allocatable")
                && issues[0].summary.contains("Predicted, not yet failed"),
            "{}",
            issues[0].summary
        );
        // Under DiskPressure already: that issue says it. Memory pressure
        // says nothing of the disk.
        let pressure = |kind: IssueKind| pb::Issue {
            kind: kind as i32,
            fingerprint: crate::detect::fingerprint(kind, "uid-n1", ""),
            ..pb::Issue::default()
        };
        let mut issues = vec![pressure(IssueKind::NodeDiskPressure)];
        run_node_query("node_fs_used_bytes", &filling, "n1", &mut issues);
        assert_eq!(kinds(&issues), [IssueKind::NodeDiskPressure]);
        let mut issues = vec![pressure(IssueKind::NodeMemoryPressure)];
        run_node_query("node_fs_used_bytes", &filling, "n1", &mut issues);
        assert_eq!(
            kinds(&issues),
            [
                IssueKind::NodeMemoryPressure,
                IssueKind::NodeDiskPredictedFull
            ]
        );
        // Another node's series says nothing of n1.
        let mut issues = Vec::new();
        run_node_query("node_fs_used_bytes", &filling, "n2", &mut issues);
        assert_eq!(kinds(&issues), [], "another node's series");
    }

    #[test]
    fn noise_slow_growth_short_history_and_what_already_failed_raise_nothing() {
        let flat_with_spikes = samples(180, |m| {
            if m % 13.0 == 0.0 {
                480.0 * MIB
            } else {
                200.0 * MIB
            }
        });
        // 1 MiB/h: the limit is days away.
        let slow = samples(120, |m| (400.0 + m / 60.0) * MIB);
        // Fast, but 40 minutes since the container restarted.
        let restarted = samples(120, |m| {
            if m < 80.0 {
                (300.0 + m) * MIB
            } else {
                (50.0 + 3.0 * (m - 80.0)) * MIB
            }
        });
        for memory in [&flat_with_spikes, &slow, &restarted] {
            let mut issues = Vec::new();
            run(memory, memory, &mut issues);
            assert_eq!(kinds(&issues), [], "{issues:?}");
        }
        // OOM-killed already: that issue speaks for the container.
        let growing = samples(120, |m| (100.0 + 2.5 * m) * MIB);
        let killed = |container: &str| pb::Issue {
            kind: IssueKind::OomKilled as i32,
            fingerprint: crate::detect::fingerprint(
                IssueKind::OomKilled,
                "uid-Pod-web-1",
                container,
            ),
            target: Some(namespaced("Pod", "web-1")),
            ..pb::Issue::default()
        };
        let mut issues = vec![killed("app")];
        run(&growing, &[], &mut issues);
        assert_eq!(kinds(&issues), [IssueKind::OomKilled]);
        // A sidecar OOM-killed does not hide the app container's trend.
        let mut issues = vec![killed("sidecar")];
        run(&growing, &[], &mut issues);
        assert_eq!(
            kinds(&issues),
            [IssueKind::OomKilled, IssueKind::OomPredicted]
        );
    }
}
