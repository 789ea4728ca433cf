//! Cost: workloads whose containers request far more than their pods use
//! (`OverProvisioned`), and workloads that do nothing (`WorkloadIdle`).
//!
//! A resource an HPA scales the workload on by utilization is not judged
//! (lower requests would read as higher utilization and add replicas).
//!
//! Judged per Deployment, StatefulSet or DaemonSet over its live pods, from
//! the usage round (the p95 of each container's CPU and its peak working set
//! over `prometheus.usage_window_secs`), once every live pod has the minimum
//! history: a pod rolled yesterday is judged on its own day, a pod with no
//! usage at all is not judged. The recommendation keeps a margin above what
//! was used and is computed in whole millicores and MiB, so the reclaimable
//! amounts are exact for a known series.

use std::collections::{HashMap, HashSet};

use nanny_common::{
    quantity::{bytes_text, duration_text},
    snapshot::{RECLAIMABLE_CPU, RECLAIMABLE_MEMORY},
};
use nanny_proto::v1::{self as pb, IssueKind, Severity};

use super::issue;
use crate::{
    config::Thresholds,
    prom::{MetricsRound, UsageWindows, usage_of},
    store::Tables,
};

const MIB: i64 = 1 << 20;

/// What the live pods of one workload used of one container: the most any
/// pod used, and the least history any pod has.
struct Used {
    cpu_p95: f64,
    cpu_max: f64,
    memory_peak: f64,
    history_secs: f64,
}

/// What `pods` used of `container`; `None` when a pod has no usage (or an
/// unusable one) for it.
fn used(usage: &UsageWindows, pods: &[&pb::Pod], container: &str) -> Option<Used> {
    let mut used = Used {
        cpu_p95: 0.0,
        cpu_max: 0.0,
        memory_peak: 0.0,
        history_secs: f64::INFINITY,
    };
    let usable = |v: Option<f64>| v.filter(|v| v.is_finite() && *v >= 0.0);
    for pod in pods {
        let r = pod.r#ref.as_ref()?;
        let window = usage_of(usage, &r.namespace, &r.name, container)?;
        used.history_secs = used.history_secs.min(usable(window.history_secs)?);
        used.cpu_p95 = used.cpu_p95.max(usable(window.cpu_p95)?);
        used.cpu_max = used.cpu_max.max(usable(window.cpu_max)?);
        used.memory_peak = used.memory_peak.max(usable(window.memory_peak)?);
    }
    used.history_secs.is_finite().then_some(used)
}

/// `value` plus `margin` percent, rounded up.
fn with_margin(value: i64, margin: u32) -> i64 {
    let margin = i64::from(margin);
    (value.saturating_mul(100 + margin) + 99) / 100
}

/// Over-provisioned and idle workloads.
pub fn cost(tables: &Tables, metrics: &MetricsRound, t: &Thresholds, issues: &mut Vec<pb::Issue>) {
    if metrics.history.usage.is_empty() {
        return;
    }
    let mut live: HashMap<&str, Vec<&pb::Pod>> = HashMap::new();
    for entry in tables.pods.values() {
        let pod = &entry.value;
        if pod.phase == "Running"
            && pod.deletion_deadline.is_none()
            && let Some(workload) = pod.workload.as_ref()
        {
            live.entry(workload.uid.as_str()).or_default().push(pod);
        }
    }
    let autoscaled: HashSet<(&str, &str, &str, &str)> = tables
        .hpas
        .values()
        .flat_map(|e| {
            let hpa = &e.value;
            hpa.metrics
                .iter()
                .filter(|m| m.target_utilization_percent.is_some())
                .filter_map(move |m| {
                    let s = hpa.scale_target.as_ref()?;
                    Some((
                        s.kind.as_str(),
                        s.namespace.as_str(),
                        s.name.as_str(),
                        m.name.as_str(),
                    ))
                })
        })
        .collect();
    for entry in tables.workloads.values() {
        let workload = &entry.value;
        let Some(target) = workload.r#ref.as_ref() else {
            continue;
        };
        if !nanny_proto::vocabulary::WORKLOAD_KINDS.contains(&target.kind.as_str()) {
            continue;
        }
        let Some(pods) = live.get(target.uid.as_str()) else {
            continue;
        };
        let used: Vec<(&pb::ContainerResources, Used)> = workload
            .containers
            .iter()
            .filter_map(|c| Some((c, used(&metrics.history.usage, pods, &c.name)?)))
            .collect();
        if used.len() == workload.containers.len()
            && idle(workload, target, pods.len(), &used, t, issues)
        {
            continue;
        }
        // A resource an HPA scales on by utilization is not judged: lower
        // requests would read as higher utilization and add replicas.
        let scaled_on = |resource: &str| {
            autoscaled.contains(&(
                target.kind.as_str(),
                target.namespace.as_str(),
                target.name.as_str(),
                resource,
            ))
        };
        let judged = (!scaled_on("cpu"), !scaled_on("memory"));
        for (container, used) in &used {
            over_provisioned(target, container, pods.len(), used, judged, t, issues);
        }
    }
}

/// A workload none of whose containers left the idle threshold.
#[expect(
    clippy::cast_precision_loss,
    reason = "thresholds of millicores and seconds"
)]
fn idle(
    workload: &pb::Workload,
    target: &pb::ObjectRef,
    replicas: usize,
    used: &[(&pb::ContainerResources, Used)],
    t: &Thresholds,
    issues: &mut Vec<pb::Issue>,
) -> bool {
    let history = used
        .iter()
        .map(|(_, u)| u.history_secs)
        .fold(f64::INFINITY, f64::min);
    let busiest = used.iter().map(|(_, u)| u.cpu_max).fold(0.0, f64::max);
    if used.is_empty()
        || history < t.idle_min_history_secs as f64
        || busiest * 1000.0 >= t.idle_cpu_millicores as f64
    {
        return false;
    }
    let replicas_i64 = i64::try_from(replicas).unwrap_or(i64::MAX);
    let requested = |f: fn(&pb::Resources) -> Option<i64>| {
        workload
            .containers
            .iter()
            .filter_map(|c| c.requests.as_ref().and_then(f))
            .sum::<i64>()
            .saturating_mul(replicas_i64)
    };
    let (cpu, memory) = (
        requested(|r| r.cpu_millicores),
        requested(|r| r.memory_bytes),
    );
    issues.push(issue(
        IssueKind::WorkloadIdle,
        Severity::Info,
        target,
        "",
        format!(
            "{} {}/{} is idle: its {replicas} pod(s) used at most {:.1}m CPU in any 5 minutes over {}, while holding {cpu}m CPU and {} of requests.",
            target.kind,
            target.namespace,
            target.name,
            busiest * 1000.0,
            duration_text(history),
            bytes_text(memory as f64),
        ),
        vec![
            ("replicas", replicas.to_string()),
            ("busiest cpu millicores", format!("{:.1}", busiest * 1000.0)),
            ("history seconds", format!("{history:.0}")),
            ("requested cpu millicores", cpu.to_string()),
            ("requested memory bytes", memory.to_string()),
        ],
    ));
    true
}

/// A container requesting more than its pods used plus the margin, by at
/// least the minimum, for CPU or memory.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    reason = "usage in cores and bytes, far below 2^52; `as` saturates"
)]
fn over_provisioned(
    target: &pb::ObjectRef,
    container: &pb::ContainerResources,
    replicas: usize,
    used: &Used,
    (cpu_judged, memory_judged): (bool, bool),
    t: &Thresholds,
    issues: &mut Vec<pb::Issue>,
) {
    if used.history_secs < t.rightsizing_min_history_secs as f64 {
        return;
    }
    let requests = container.requests.unwrap_or_default();
    let replicas_i64 = i64::try_from(replicas).unwrap_or(i64::MAX);
    let cpu_p95 = (used.cpu_p95 * 1000.0).round() as i64;
    let cpu_recommended = with_margin(cpu_p95, t.rightsizing_margin_percent).max(1);
    let cpu_reclaim = requests
        .cpu_millicores
        .map_or(0, |r| (r - cpu_recommended).max(0));
    let memory_peak = used.memory_peak.round() as i64;
    let memory_recommended = {
        let wanted = with_margin(memory_peak, t.rightsizing_margin_percent);
        (wanted + MIB - 1) / MIB * MIB
    }
    .max(MIB);
    let memory_reclaim = requests
        .memory_bytes
        .map_or(0, |r| (r - memory_recommended).max(0));
    let cpu_counts = cpu_judged
        && u64::try_from(cpu_reclaim).unwrap_or(0) >= t.rightsizing_min_cpu_millicores.max(1);
    let memory_counts = memory_judged
        && u64::try_from(memory_reclaim).unwrap_or(0) >= t.rightsizing_min_memory_bytes.max(1);
    if !cpu_counts && !memory_counts {
        return;
    }
    // Only what counts is reclaimed; the other stays as requested.
    let (cpu_reclaim, memory_reclaim) = (
        if cpu_counts { cpu_reclaim } else { 0 },
        if memory_counts { memory_reclaim } else { 0 },
    );
    let (cpu_total, memory_total) = (
        cpu_reclaim.saturating_mul(replicas_i64),
        memory_reclaim.saturating_mul(replicas_i64),
    );
    let mut wasted = Vec::new();
    if cpu_counts {
        wasted.push(format!(
            "requests {}m CPU where its pods' p95 was {cpu_p95}m ({cpu_recommended}m keeps a {}% margin)",
            requests.cpu_millicores.unwrap_or_default(),
            t.rightsizing_margin_percent
        ));
    }
    if memory_counts {
        wasted.push(format!(
            "requests {} of memory where its pods peaked at {} ({} keeps a {}% margin)",
            bytes_text(requests.memory_bytes.unwrap_or_default() as f64),
            bytes_text(memory_peak as f64),
            bytes_text(memory_recommended as f64),
            t.rightsizing_margin_percent
        ));
    }
    issues.push(issue(
        IssueKind::OverProvisioned,
        Severity::Info,
        target,
        &container.name,
        format!(
            "Container {} of {} {}/{} {} over {}: {cpu_total}m CPU and {} reclaimable across its {replicas} pod(s).",
            container.name,
            target.kind,
            target.namespace,
            target.name,
            wasted.join(" and "),
            duration_text(used.history_secs),
            bytes_text(memory_total as f64),
        ),
        vec![
            ("container", container.name.clone()),
            ("replicas", replicas.to_string()),
            ("cpu request millicores", requests.cpu_millicores.unwrap_or_default().to_string()),
            ("cpu p95 millicores", cpu_p95.to_string()),
            ("cpu recommended millicores", cpu_recommended.to_string()),
            ("memory request bytes", requests.memory_bytes.unwrap_or_default().to_string()),
            ("memory peak bytes", memory_peak.to_string()),
            ("memory recommended bytes", memory_recommended.to_string()),
            (RECLAIMABLE_CPU, cpu_total.to_string()),
            (RECLAIMABLE_MEMORY, memory_total.to_string()),
            ("history seconds", format!("{:.0}", used.history_secs)),
        ],
    ));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use nanny_common::snapshot::evidence;

    use super::*;
    use crate::{
        detect::tests::{entry, namespaced},
        prom::{History, UsageWindow},
    };

    /// Per pod: (p95 cores, busiest cores, peak bytes, history seconds).
    type Used = (f64, f64, f64, f64);

    /// Deployment `app` requesting `cpu` millicores and `memory` bytes, with
    /// one running pod per entry of `pods`, which used what it says.
    fn run(cpu: i64, memory: i64, pods: &[Used]) -> Vec<pb::Issue> {
        run_with(cpu, memory, pods, None)
    }

    /// [`run`] with an HPA scaling `app` on `resource` utilization.
    fn run_with(cpu: i64, memory: i64, pods: &[Used], hpa_on: Option<&str>) -> Vec<pb::Issue> {
        let mut tables = Tables::default();
        if let Some(resource) = hpa_on {
            tables.hpas.insert(
                Arc::from("uid-hpa"),
                entry(pb::HorizontalPodAutoscaler {
                    r#ref: Some(namespaced("HorizontalPodAutoscaler", "app")),
                    scale_target: Some(namespaced("Deployment", "app")),
                    metrics: vec![pb::HpaMetric {
                        name: resource.into(),
                        current_utilization_percent: Some(20),
                        target_utilization_percent: Some(50),
                    }],
                    ..pb::HorizontalPodAutoscaler::default()
                }),
            );
        }
        let workload = namespaced("Deployment", "app");
        tables.workloads.insert(
            Arc::from(workload.uid.as_str()),
            entry(pb::Workload {
                r#ref: Some(workload.clone()),
                containers: vec![pb::ContainerResources {
                    name: "app".into(),
                    requests: Some(pb::Resources {
                        cpu_millicores: Some(cpu),
                        memory_bytes: Some(memory),
                    }),
                    limits: None,
                }],
                ..pb::Workload::default()
            }),
        );
        let mut usage = UsageWindows::new();
        for (i, (p95, max, peak, history)) in pods.iter().enumerate() {
            let name = format!("app-{i}");
            let pod = namespaced("Pod", &name);
            tables.pods.insert(
                Arc::from(pod.uid.as_str()),
                entry(pb::Pod {
                    r#ref: Some(pod),
                    workload: Some(workload.clone()),
                    phase: "Running".into(),
                    ..pb::Pod::default()
                }),
            );
            usage.entry("shop".into()).or_default().insert(
                name,
                vec![(
                    "app".into(),
                    UsageWindow {
                        cpu_p95: Some(*p95),
                        cpu_max: Some(*max),
                        memory_peak: Some(*peak),
                        history_secs: Some(*history),
                    },
                )],
            );
        }
        let metrics = MetricsRound {
            history: History {
                usage: Arc::new(usage),
                usage_at: 1,
                ..History::default()
            },
            ..MetricsRound::default()
        };
        let mut issues = Vec::new();
        cost(&tables, &metrics, &Thresholds::default(), &mut issues);
        issues
    }

    const DAY: f64 = 86_400.0;
    const MIB: f64 = 1_048_576.0;

    fn figure(issue: &pb::Issue, key: &str) -> String {
        evidence(issue, key).unwrap_or_default().to_owned()
    }

    #[test]
    fn requests_far_above_p95_and_peak_are_reclaimable_exactly_across_the_pods() {
        // 500m and 512 MiB requested; the busier pod's p95 100m (a burst to
        // 400m does not count) and peak 150 MiB.
        let issues = run(
            500,
            512 << 20,
            &[
                (0.1, 0.4, 150.0 * MIB, 2.0 * DAY),
                (0.08, 0.2, 120.0 * MIB, 2.0 * DAY),
            ],
        );
        assert_eq!(issues.len(), 1, "{issues:?}");
        let i = &issues[0];
        assert_eq!(i.kind, IssueKind::OverProvisioned as i32);
        for (key, value) in [
            ("cpu p95 millicores", "100"),
            ("cpu recommended millicores", "120"),
            ("memory peak bytes", "157286400"),
            ("memory recommended bytes", "188743680"),
            (RECLAIMABLE_CPU, "760"),
            (RECLAIMABLE_MEMORY, "696254464"),
            ("replicas", "2"),
        ] {
            assert_eq!(figure(i, key), value, "{key}");
        }
        assert!(
            i.summary
                .contains("760m CPU and 664 MiB reclaimable across its 2 pod(s)"),
            "{}",
            i.summary
        );
    }

    #[test]
    fn only_what_is_far_above_use_counts_and_little_history_judges_nothing() {
        // Memory close to its use: only the CPU is reclaimable.
        let cpu_only = run(500, 200 << 20, &[(0.1, 0.4, 150.0 * MIB, DAY)]);
        assert_eq!(figure(&cpu_only[0], RECLAIMABLE_MEMORY), "0");
        assert_eq!(figure(&cpu_only[0], RECLAIMABLE_CPU), "380");
        // Within 100m and 128 MiB of the recommendation: nothing.
        assert!(run(200, 300 << 20, &[(0.1, 0.4, 150.0 * MIB, DAY)]).is_empty());
        // A pod with only half a day of history: not judged yet.
        assert!(
            run(
                500,
                512 << 20,
                &[
                    (0.1, 0.4, 150.0 * MIB, DAY),
                    (0.1, 0.4, 150.0 * MIB, DAY / 2.0)
                ]
            )
            .is_empty()
        );
        // A pod without usage series: not judged.
        let mut issues = run(500, 512 << 20, &[]);
        assert!(issues.is_empty());
        // Garbage values are not usage.
        issues = run(500, 512 << 20, &[(f64::NAN, 0.4, 150.0 * MIB, DAY)]);
        assert!(issues.is_empty(), "{issues:?}");
    }

    #[test]
    fn a_workload_that_never_leaves_zero_for_days_is_idle_not_over_provisioned() {
        let idle = run(200, 256 << 20, &[(0.001, 0.002, 50.0 * MIB, 3.0 * DAY)]);
        assert_eq!(idle.len(), 1);
        assert_eq!(idle[0].kind, IssueKind::WorkloadIdle as i32);
        assert_eq!(figure(&idle[0], "requested cpu millicores"), "200");
        // Idle for a day only: over-provisioned, not yet idle.
        let young = run(200, 256 << 20, &[(0.001, 0.002, 50.0 * MIB, DAY)]);
        assert_eq!(young[0].kind, IssueKind::OverProvisioned as i32);
    }

    #[test]
    fn a_resource_an_hpa_scales_on_by_utilization_is_not_judged() {
        let pods = [(0.1, 0.4, 150.0 * MIB, DAY)];
        // CPU scaled on: only the memory counts.
        let issues = run_with(500, 512 << 20, &pods, Some("cpu"));
        assert_eq!(figure(&issues[0], RECLAIMABLE_CPU), "0");
        assert_eq!(figure(&issues[0], RECLAIMABLE_MEMORY), "348127232");
        // Both scaled on: nothing.
        let mut tables_cpu_only = run_with(500, 200 << 20, &pods, Some("cpu"));
        assert!(tables_cpu_only.is_empty(), "{tables_cpu_only:?}");
        tables_cpu_only = run_with(500, 200 << 20, &pods, Some("memory"));
        assert_eq!(figure(&tables_cpu_only[0], RECLAIMABLE_CPU), "380");
    }
}
