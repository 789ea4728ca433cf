//! Issue detection: a pure function of the stored objects, the last
//! Prometheus round, the thresholds and the time.
//!
//! Every issue gets a fingerprint that is stable for the same condition on
//! the same object (kind, target uid, container), so consumers can follow
//! it across snapshots and see it resolve when the condition clears.

use std::collections::{BTreeMap, HashMap};

use nanny_proto::v1::{self as pb, IssueKind, Severity};
use sha2::{Digest as _, Sha256};

use crate::{
    config::Thresholds,
    prom::{MetricsRound, Series},
    store::Tables,
};

/// One detected issue, before the publisher stamps first/last seen.
fn issue(
    kind: IssueKind,
    severity: Severity,
    target: &pb::ObjectRef,
    discriminator: &str,
    summary: String,
    evidence: Vec<(&str, String)>,
) -> pb::Issue {
    pb::Issue {
        fingerprint: fingerprint(kind, &target.uid, discriminator),
        kind: kind as i32,
        severity: severity as i32,
        target: Some(pb::ObjectRef {
            // Issues point at the object, not at one version of it.
            resource_version: String::new(),
            ..target.clone()
        }),
        summary,
        evidence: evidence
            .into_iter()
            .map(|(description, value)| pb::Evidence {
                description: description.to_owned(),
                value,
            })
            .collect(),
        first_seen: None,
        last_seen: None,
        trend: None,
    }
}

/// The stable id of one condition on one object.
pub fn fingerprint(kind: IssueKind, uid: &str, discriminator: &str) -> String {
    let digest = Sha256::digest(format!("{}/{uid}/{discriminator}", kind.as_str_name()));
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn seconds_since(then: Option<&prost_types::Timestamp>, now: i64) -> Option<i64> {
    then.map(|t| now - t.seconds)
}

fn container_index(series: &[Series]) -> HashMap<(&str, &str), Vec<&Series>> {
    let mut index: HashMap<(&str, &str), Vec<&Series>> = HashMap::new();
    for s in series {
        if let (Some(ns), Some(pod)) = (s.labels.get("namespace"), s.labels.get("pod")) {
            index
                .entry((ns.as_str(), pod.as_str()))
                .or_default()
                .push(s);
        }
    }
    index
}

/// All issues in `tables` at `now` (seconds since the epoch).
pub fn detect(tables: &Tables, metrics: &MetricsRound, t: &Thresholds, now: i64) -> Vec<pb::Issue> {
    let mut issues = Vec::new();
    pods(tables, metrics, t, now, &mut issues);
    pod_warnings(tables, t, now, &mut issues);
    nodes(tables, metrics, t, &mut issues);
    workloads(tables, t, now, &mut issues);
    hpas(tables, t, &mut issues);
    autoscaling::hpas_unable(tables, t, now, &mut issues);
    pvcs(tables, t, now, &mut issues);
    jobs(tables, t, now, &mut issues);
    pdbs(tables, t, now, &mut issues);
    namespaces(tables, t, now, &mut issues);
    networking::services(tables, &mut issues);
    volumes(tables, t, now, &mut issues);
    certificates::expiring(tables, t, now, &mut issues);
    // After pods and claims: what has already failed is not predicted.
    predict::predicted(tables, metrics, t, &mut issues);
    autoscaling::hpas_rising(tables, metrics, t, &mut issues);
    cost::cost(tables, metrics, t, &mut issues);
    issues
}

/// Seconds since `then` when it is at least `threshold` ago.
fn for_at_least(then: Option<&prost_types::Timestamp>, now: i64, threshold: u64) -> Option<i64> {
    seconds_since(then, now).filter(|age| *age >= 0 && age.unsigned_abs() >= threshold)
}

/// Pods: container states, and restart rates and throttling from Prometheus.
fn pods(
    tables: &Tables,
    metrics: &MetricsRound,
    t: &Thresholds,
    now: i64,
    issues: &mut Vec<pb::Issue>,
) {
    let empty = Vec::new();
    let restart_rates = container_index(metrics.series.get("restart_rate_15m").unwrap_or(&empty));
    let throttling = container_index(metrics.series.get("cpu_throttling_ratio").unwrap_or(&empty));
    for entry in tables.pods.values() {
        let pod = &entry.value;
        let Some(target) = pod.r#ref.as_ref() else {
            continue;
        };
        pod_issues(pod, target, t, now, issues);
        let key = (target.namespace.as_str(), target.name.as_str());
        for s in restart_rates.get(&key).into_iter().flatten() {
            if s.value > t.restart_rate_per_sec {
                let container = s.labels.get("container").map_or("", String::as_str);
                issues.push(issue(
                    IssueKind::HighRestartRate,
                    Severity::Warning,
                    target,
                    container,
                    format!(
                        "Container {container} of pod {}/{} restarts {:.2} times per minute (15m average).",
                        target.namespace,
                        target.name,
                        s.value * 60.0
                    ),
                    vec![("restarts per second, 15m rate", format!("{:.4}", s.value))],
                ));
            }
        }
        for s in throttling.get(&key).into_iter().flatten() {
            if s.value > t.cpu_throttling_ratio {
                let container = s.labels.get("container").map_or("", String::as_str);
                issues.push(issue(
                    IssueKind::CpuThrottling,
                    Severity::Warning,
                    target,
                    container,
                    format!(
                        "Container {container} of pod {}/{} is CPU-throttled in {:.0}% of periods.",
                        target.namespace,
                        target.name,
                        s.value * 100.0
                    ),
                    vec![("throttled period ratio", format!("{:.3}", s.value))],
                ));
            }
        }
    }
}

/// Nodes: conditions, and available memory from Prometheus.
fn nodes(tables: &Tables, metrics: &MetricsRound, t: &Thresholds, issues: &mut Vec<pb::Issue>) {
    let empty = Vec::new();
    let memory_ratio: HashMap<&str, f64> = metrics
        .series
        .get("node_memory_available_ratio")
        .unwrap_or(&empty)
        .iter()
        .filter_map(|s| Some((s.labels.get("node")?.as_str(), s.value)))
        .collect();
    for entry in tables.nodes.values() {
        let node = &entry.value;
        let Some(target) = node.r#ref.as_ref() else {
            continue;
        };
        node_issues(node, target, issues);
        if let Some(ratio) = memory_ratio.get(target.name.as_str())
            && *ratio < t.node_memory_available_ratio
        {
            issues.push(issue(
                IssueKind::MemoryPressure,
                Severity::Warning,
                target,
                "",
                format!(
                    "Node {} has {:.0}% of its memory available.",
                    target.name,
                    ratio * 100.0
                ),
                vec![("memory available ratio", format!("{ratio:.3}"))],
            ));
        }
    }
}

/// Workloads: rollouts past their progress deadline, Deployments without
/// their minimum available replicas.
fn workloads(tables: &Tables, t: &Thresholds, now: i64, issues: &mut Vec<pb::Issue>) {
    for entry in tables.workloads.values() {
        let workload = &entry.value;
        let Some(target) = workload.r#ref.as_ref() else {
            continue;
        };
        let stuck = workload.conditions.iter().find(|c| {
            c.r#type == "Progressing"
                && c.status == "False"
                && c.reason == "ProgressDeadlineExceeded"
        });
        if let Some(c) = stuck {
            issues.push(issue(
                IssueKind::RolloutStuck,
                Severity::Critical,
                target,
                "",
                format!(
                    "Rollout of {} {}/{} exceeded its progress deadline ({} of {} replicas updated).",
                    target.kind,
                    target.namespace,
                    target.name,
                    workload.updated_replicas,
                    workload.desired_replicas
                ),
                vec![("condition", format!("Progressing=False ({})", c.reason))],
            ));
        }
        if target.kind == "Deployment" {
            deployment_unavailable(workload, target, t, now, issues);
        }
        short_workload(workload, target, t, now, issues);
        if let Some(c) = workload
            .conditions
            .iter()
            .find(|c| c.r#type == "ReplicaFailure" && c.status == "True")
        {
            issues.push(issue(
                IssueKind::ReplicaFailure,
                Severity::Warning,
                target,
                "",
                format!(
                    "{} {}/{} cannot create its pods ({}).",
                    target.kind, target.namespace, target.name, c.reason
                ),
                vec![("condition", format!("ReplicaFailure=True ({})", c.reason))],
            ));
        }
        if let Some(cron) = &workload.cron {
            cron_job(workload, cron, target, t, now, issues);
        }
    }
}

/// A CronJob suspended and idle for long, or one whose schedule named a
/// time that passed without a run.
fn cron_job(
    workload: &pb::Workload,
    cron: &pb::CronSchedule,
    target: &pb::ObjectRef,
    t: &Thresholds,
    now: i64,
    issues: &mut Vec<pb::Issue>,
) {
    let last = cron.last_schedule.as_ref().or(workload.created_at.as_ref());
    if cron.suspended {
        if let Some(idle) = for_at_least(last, now, t.cronjob_suspended_secs) {
            issues.push(issue(
                IssueKind::CronjobSuspended,
                Severity::Info,
                target,
                "",
                format!(
                    "CronJob {}/{} is suspended and has not run for {}h.",
                    target.namespace,
                    target.name,
                    idle / 3600
                ),
                vec![
                    ("schedule", cron.schedule.clone()),
                    ("idle seconds", idle.to_string()),
                ],
            ));
        }
        return;
    }
    // Another zone's times need its rules: not judged rather than misjudged.
    if !matches!(cron.time_zone.as_str(), "" | "UTC" | "Etc/UTC") {
        return;
    }
    let due = match last.map(|l| next_run(&cron.schedule, l.seconds)) {
        Some(Next::At(due)) => due,
        Some(Next::Never) => {
            issues.push(issue(
                IssueKind::CronjobInvalidSchedule,
                Severity::Warning,
                target,
                "",
                format!(
                    "CronJob {}/{} never runs: its schedule {:?} names no time that comes.",
                    target.namespace, target.name, cron.schedule
                ),
                vec![("schedule", cron.schedule.clone())],
            ));
            return;
        }
        Some(Next::Unreadable) | None => return,
    };
    let late = now - due;
    if late >= 0 && late.unsigned_abs() >= t.cronjob_missed_secs {
        issues.push(issue(
            IssueKind::CronjobMissedSchedule,
            Severity::Warning,
            target,
            "",
            format!(
                "CronJob {}/{} should have run {late}s ago ({}) and has not.",
                target.namespace, target.name, cron.schedule
            ),
            vec![
                ("schedule", cron.schedule.clone()),
                ("seconds since the missed run", late.to_string()),
                ("active jobs", workload.ready_replicas.to_string()),
            ],
        ));
    }
}

/// When a schedule next fires.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// At this time (seconds, UTC).
    At(i64),
    /// Never: it reads, but names no time that exists (30 February).
    Never,
    /// croner does not read it (the API server validated it with its own
    /// parser): not judged rather than misjudged.
    Unreadable,
}

/// The first time after `after` (seconds, UTC) that `schedule` names.
fn next_run(schedule: &str, after: i64) -> Next {
    let Ok(cron) = schedule.parse::<croner::Cron>() else {
        return Next::Unreadable;
    };
    let Some(after) = chrono::DateTime::from_timestamp(after, 0) else {
        return Next::Unreadable;
    };
    match cron.find_next_occurrence(&after, false) {
        Ok(t) => Next::At(t.timestamp()),
        // croner searches a bounded number of years ahead, then gives up:
        // a schedule with no time in them never fires.
        Err(croner::errors::CronError::TimeSearchLimitExceeded) => Next::Never,
        Err(_) => Next::Unreadable,
    }
}

/// A StatefulSet or DaemonSet short of its pods for long: the collector
/// keeps since when (neither has a condition that says so).
fn short_workload(
    workload: &pb::Workload,
    target: &pb::ObjectRef,
    t: &Thresholds,
    now: i64,
    issues: &mut Vec<pb::Issue>,
) {
    let (kind, threshold) = match target.kind.as_str() {
        "StatefulSet" => (
            IssueKind::StatefulsetNotProgressing,
            t.statefulset_stuck_secs,
        ),
        "DaemonSet" => (
            IssueKind::DaemonsetUnavailable,
            t.daemonset_unavailable_secs,
        ),
        _ => return,
    };
    let Some(secs) = for_at_least(workload.short_since.as_ref(), now, threshold) else {
        return;
    };
    let (w, desired) = (workload, workload.desired_replicas);
    let summary = if kind == IssueKind::DaemonsetUnavailable {
        format!(
            "DaemonSet {}/{} has {} of {desired} pods available and {} misscheduled, for {secs}s.",
            target.namespace, target.name, w.available_replicas, w.misscheduled
        )
    } else {
        format!(
            "StatefulSet {}/{} has {} of {desired} pods ready for {secs}s.",
            target.namespace, target.name, w.ready_replicas
        )
    };
    issues.push(issue(
        kind,
        Severity::Warning,
        target,
        "",
        summary,
        vec![
            ("desired", desired.to_string()),
            ("ready", w.ready_replicas.to_string()),
            ("available", w.available_replicas.to_string()),
            ("updated", w.updated_replicas.to_string()),
            ("misscheduled", w.misscheduled.to_string()),
            ("short for seconds", secs.to_string()),
        ],
    ));
}

/// What a kubelet warning about a pod means, when it is an issue: probes
/// failing (by the kubelet's own message prefix), volumes that cannot be
/// mounted, a sandbox that cannot be created.
fn warning_kind(event: &pb::Event) -> Option<IssueKind> {
    let said = event.message.as_ref().map_or("", |m| m.text.as_str());
    match event.reason.as_str() {
        "Unhealthy" if said.starts_with("Liveness probe failed") => {
            Some(IssueKind::LivenessProbeFailing)
        }
        "Unhealthy" if said.starts_with("Startup probe failed") => {
            Some(IssueKind::StartupProbeFailing)
        }
        "FailedMount" | "FailedAttachVolume" => Some(IssueKind::VolumeMountFailing),
        "FailedCreatePodSandBox" => Some(IssueKind::PodSandboxFailing),
        _ => None,
    }
}

/// Pods the kubelet keeps warning about: a probe failing at least
/// `probe_failures` times within the warning window (readiness has its own
/// kind, from the pod's status), or a pod still Pending
/// `pod_start_failing_secs` after creation whose volumes or sandbox the
/// kubelet cannot set up. One issue per pod and kind, however many events.
fn pod_warnings(tables: &Tables, t: &Thresholds, now: i64, issues: &mut Vec<pb::Issue>) {
    // (kind, pod uid) → (failures counted, newest event).
    let mut seen: BTreeMap<(IssueKind, &str), (i64, &pb::Event)> = BTreeMap::new();
    for entry in tables.events.values() {
        let event = &*entry.value;
        let recent = seconds_since(event.last_seen.as_ref(), now)
            .is_some_and(|age| age.unsigned_abs() <= t.warning_event_secs);
        let (Some(kind), Some(involved)) = (warning_kind(event), event.involved.as_ref()) else {
            continue;
        };
        if !recent || involved.kind != "Pod" {
            continue;
        }
        let slot = seen
            .entry((kind, involved.uid.as_str()))
            .or_insert((0, event));
        slot.0 += i64::from(event.count.max(1));
        if event.last_seen.map(|t| t.seconds) > slot.1.last_seen.map(|t| t.seconds) {
            slot.1 = event;
        }
    }
    for ((kind, uid), (count, event)) in seen {
        let Some(pod) = tables.pods.get(uid).map(|e| &*e.value) else {
            continue;
        };
        let Some(target) = pod.r#ref.as_ref() else {
            continue;
        };
        let raised = match kind {
            // Failures the kubelet acted on: a container restarted. A slow
            // start within its startup probe's budget, or a liveness probe
            // failing below its threshold, restarts nothing.
            IssueKind::LivenessProbeFailing | IssueKind::StartupProbeFailing => {
                count >= i64::from(t.probe_failures)
                    && pod.containers.iter().any(|c| c.restart_count > 0)
            }
            // Still being created: a pod past its mounts (pulling a large
            // image) is not held by a warning it got on the way.
            _ => {
                pod.phase == "Pending"
                    && for_at_least(pod.created_at.as_ref(), now, t.pod_start_failing_secs)
                        .is_some()
                    && pod.containers.iter().all(|c| {
                        c.state.is_empty()
                            || (c.state == "waiting" && c.state_reason == "ContainerCreating")
                    })
            }
        };
        if !raised {
            continue;
        }
        let what = match kind {
            IssueKind::LivenessProbeFailing => "fails its liveness probe",
            IssueKind::StartupProbeFailing => "fails its startup probe",
            IssueKind::VolumeMountFailing => "cannot mount its volumes",
            _ => "cannot get a sandbox from the runtime",
        };
        issues.push(issue(
            kind,
            Severity::Warning,
            target,
            "",
            format!(
                "Pod {}/{} {what} (the kubelet warned {count} times: {}).",
                target.namespace, target.name, event.reason
            ),
            vec![
                ("kubelet warning", event.reason.clone()),
                ("times", count.to_string()),
                ("phase", pod.phase.clone()),
            ],
        ));
    }
}

fn deployment_unavailable(
    workload: &pb::Workload,
    target: &pb::ObjectRef,
    t: &Thresholds,
    now: i64,
    issues: &mut Vec<pb::Issue>,
) {
    let Some(c) = workload
        .conditions
        .iter()
        .find(|c| c.r#type == "Available" && c.status == "False")
    else {
        return;
    };
    let Some(secs) = for_at_least(
        c.last_transition.as_ref(),
        now,
        t.deployment_unavailable_secs,
    ) else {
        return;
    };
    issues.push(issue(
        IssueKind::DeploymentUnavailable,
        if workload.available_replicas == 0 {
            Severity::Critical
        } else {
            Severity::Warning
        },
        target,
        "",
        format!(
            "Deployment {}/{} has had {} of {} replicas available for {secs}s, below its minimum.",
            target.namespace, target.name, workload.available_replicas, workload.desired_replicas
        ),
        vec![
            ("condition", format!("Available=False ({})", c.reason)),
            (
                "available/desired replicas",
                format!(
                    "{}/{}",
                    workload.available_replicas, workload.desired_replicas
                ),
            ),
            ("ready replicas", workload.ready_replicas.to_string()),
            ("unavailable seconds", secs.to_string()),
        ],
    ));
}

/// HPAs at their maximum while over target.
fn hpas(tables: &Tables, t: &Thresholds, issues: &mut Vec<pb::Issue>) {
    for entry in tables.hpas.values() {
        let hpa = &entry.value;
        let Some(target) = hpa.r#ref.as_ref() else {
            continue;
        };
        if hpa.max_replicas == 0 || hpa.current_replicas < hpa.max_replicas {
            continue;
        }
        let over = hpa.metrics.iter().find(|m| {
            matches!(
                (m.current_utilization_percent, m.target_utilization_percent),
                (Some(current), Some(target)) if current > target + t.hpa_over_target_percent
            )
        });
        if let Some(m) = over {
            let current = m.current_utilization_percent.unwrap_or_default();
            let wanted = m.target_utilization_percent.unwrap_or_default();
            issues.push(issue(
                IssueKind::HpaAtMax,
                Severity::Warning,
                target,
                "",
                format!(
                    "HPA {}/{} is at its maximum of {} replicas with {} at {current}% (target {wanted}%).",
                    target.namespace, target.name, hpa.max_replicas, m.name
                ),
                vec![
                    ("max replicas", hpa.max_replicas.to_string()),
                    ("current replicas", hpa.current_replicas.to_string()),
                    (
                        "utilisation percent (current/target)",
                        format!("{current}/{wanted}"),
                    ),
                ],
            ));
        }
    }
}

/// Claims nearly full, Pending too long, or Lost.
fn pvcs(tables: &Tables, t: &Thresholds, now: i64, issues: &mut Vec<pb::Issue>) {
    for entry in tables.pvcs.values() {
        let pvc = &entry.value;
        let Some(target) = pvc.r#ref.as_ref() else {
            continue;
        };
        let class = || ("storage class", pvc.storage_class.clone());
        if pvc.phase == "Lost" {
            issues.push(issue(
                IssueKind::PvcLost,
                Severity::Critical,
                target,
                "",
                format!(
                    "Volume claim {}/{} lost its volume {}.",
                    target.namespace, target.name, pvc.volume_name
                ),
                vec![
                    ("phase", "Lost".to_owned()),
                    ("volume", pvc.volume_name.clone()),
                    class(),
                ],
            ));
        } else if pvc.phase == "Pending"
            // Such a claim waits for a pod; the pod's own issues say why
            // none is scheduled.
            && !pvc.binds_on_first_consumer
            && let Some(secs) = for_at_least(pvc.created_at.as_ref(), now, t.pvc_pending_secs)
        {
            issues.push(issue(
                IssueKind::PvcPending,
                Severity::Warning,
                target,
                "",
                format!(
                    "Volume claim {}/{} has been Pending for {secs}s.",
                    target.namespace, target.name
                ),
                vec![
                    ("phase", "Pending".to_owned()),
                    ("pending seconds", secs.to_string()),
                    class(),
                    ("requested bytes", pvc.requested_bytes.to_string()),
                ],
            ));
        }
        if let Some(percent) = pvc.usage_percent
            && percent > t.pvc_usage_percent
        {
            issues.push(issue(
                IssueKind::PvcNearlyFull,
                if percent >= 95.0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                target,
                "",
                format!(
                    "Volume claim {}/{} is {percent:.0}% full.",
                    target.namespace, target.name
                ),
                vec![
                    ("usage percent", format!("{percent:.1}")),
                    ("used bytes", pvc.used_bytes.unwrap_or_default().to_string()),
                    ("capacity bytes", pvc.capacity_bytes.to_string()),
                    ("expandable", pvc.expandable.to_string()),
                ],
            ));
        }
    }
}

/// Jobs failed, or completed long ago.
fn jobs(tables: &Tables, t: &Thresholds, now: i64, issues: &mut Vec<pb::Issue>) {
    for entry in tables.jobs.values() {
        let job = &entry.value;
        let Some(target) = job.r#ref.as_ref() else {
            continue;
        };
        let has = |type_: &str| {
            job.conditions
                .iter()
                .find(|c| c.r#type == type_ && c.status == "True")
        };
        if let Some(failed) = has("Failed") {
            issues.push(issue(
                IssueKind::JobFailed,
                Severity::Warning,
                target,
                "",
                format!(
                    "Job {}/{} failed ({}) after {} failed pods.",
                    target.namespace, target.name, failed.reason, job.failed
                ),
                vec![
                    ("reason", failed.reason.clone()),
                    ("failed pods", job.failed.to_string()),
                ],
            ));
        } else if has("Complete").is_some() {
            let age = seconds_since(job.completion_time.as_ref(), now);
            if let Some(age) =
                age.filter(|age| *age >= 0 && age.unsigned_abs() > t.completed_job_age_secs)
            {
                issues.push(issue(
                    IssueKind::JobCompletedStale,
                    Severity::Info,
                    target,
                    "",
                    format!(
                        "Job {}/{} completed {}h ago and is still there.",
                        target.namespace,
                        target.name,
                        age / 3600
                    ),
                    vec![("completed seconds ago", age.to_string())],
                ));
            }
        }
    }
}

/// Disruption budgets that have allowed no disruption for long: every
/// drain and eviction of their pods waits on them.
fn pdbs(tables: &Tables, t: &Thresholds, now: i64, issues: &mut Vec<pb::Issue>) {
    for entry in tables.pdbs.values() {
        let pdb = &entry.value;
        let Some(target) = pdb.r#ref.as_ref() else {
            continue;
        };
        if pdb.disruptions_allowed > 0 || pdb.expected_pods == 0 {
            continue;
        }
        let Some(secs) = for_at_least(pdb.blocked_since.as_ref(), now, t.pdb_blocking_secs) else {
            continue;
        };
        issues.push(issue(
            IssueKind::PdbBlockingDisruptions,
            Severity::Warning,
            target,
            "",
            format!(
                "PodDisruptionBudget {}/{} has allowed no disruption for {secs}s ({} of {} pods healthy, {} required).",
                target.namespace,
                target.name,
                pdb.current_healthy,
                pdb.expected_pods,
                pdb.desired_healthy
            ),
            vec![
                ("disruptions allowed", "0".to_owned()),
                (
                    "healthy/expected pods",
                    format!("{}/{}", pdb.current_healthy, pdb.expected_pods),
                ),
                ("desired healthy", pdb.desired_healthy.to_string()),
                ("blocked seconds", secs.to_string()),
            ],
        ));
    }
}

/// Volumes Released for long (under Retain: kept, paid for, bound to no
/// claim; under Delete: reclamation stuck), or Failed for a while (the PV
/// controller retries). A volume without a phase transition time (an API
/// server before 1.31) is not judged.
fn volumes(tables: &Tables, t: &Thresholds, now: i64, issues: &mut Vec<pb::Issue>) {
    for entry in tables.volumes.values() {
        let v = &entry.value;
        let Some(target) = v.r#ref.as_ref() else {
            continue;
        };
        let claim = v
            .claim
            .as_ref()
            .map_or_else(String::new, |c| format!("{}/{}", c.namespace, c.name));
        let evidence = |extra: Vec<(&'static str, String)>| {
            let mut all = vec![
                ("phase", v.phase.clone()),
                ("reclaim policy", v.reclaim_policy.clone()),
                ("claim", claim.clone()),
                ("storage class", v.storage_class.clone()),
            ];
            all.extend(extra);
            all
        };
        match v.phase.as_str() {
            "Released" => {
                let Some(secs) = for_at_least(v.phase_since.as_ref(), now, t.pv_released_secs)
                else {
                    continue;
                };
                let state = if v.reclaim_policy == "Retain" {
                    "no claim can bind it"
                } else {
                    "its reclamation has not finished"
                };
                issues.push(issue(
                    IssueKind::PvReleased,
                    Severity::Warning,
                    target,
                    "",
                    format!(
                        "PersistentVolume {} has been Released for {secs}s (reclaim policy {}): its claim {claim} is gone and {state}.",
                        target.name, v.reclaim_policy
                    ),
                    evidence(vec![("released seconds", secs.to_string())]),
                ));
            }
            "Failed" => {
                let Some(secs) = for_at_least(v.phase_since.as_ref(), now, t.pv_failed_secs) else {
                    continue;
                };
                issues.push(issue(
                    IssueKind::PvFailed,
                    Severity::Critical,
                    target,
                    "",
                    format!(
                        "PersistentVolume {} has been Failed for {secs}s (reclaim policy {}).",
                        target.name, v.reclaim_policy
                    ),
                    evidence(vec![("failed seconds", secs.to_string())]),
                ));
            }
            _ => {}
        }
    }
}

/// Namespaces terminating for long.
fn namespaces(tables: &Tables, t: &Thresholds, now: i64, issues: &mut Vec<pb::Issue>) {
    for entry in tables.namespaces.values() {
        let ns = &entry.value;
        let Some(target) = ns.r#ref.as_ref() else {
            continue;
        };
        if ns.phase != "Terminating" {
            continue;
        }
        let Some(secs) = for_at_least(
            ns.deletion_requested.as_ref(),
            now,
            t.namespace_terminating_secs,
        ) else {
            continue;
        };
        issues.push(issue(
            IssueKind::NamespaceStuckTerminating,
            Severity::Warning,
            target,
            "",
            format!(
                "Namespace {} has been terminating for {secs}s.",
                target.name
            ),
            vec![
                ("phase", "Terminating".to_owned()),
                ("terminating seconds", secs.to_string()),
            ],
        ));
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "one detector per pod and container state, in the order the kubelet reports them"
)]
fn pod_issues(
    pod: &pb::Pod,
    target: &pb::ObjectRef,
    t: &Thresholds,
    now: i64,
    issues: &mut Vec<pb::Issue>,
) {
    let where_ = |c: &str| format!("container {c} of pod {}/{}", target.namespace, target.name);
    let mut any_waiting = false;
    for c in &pod.containers {
        any_waiting |= c.state == "waiting";
        let last = c.last_termination.as_ref();
        let oom_now = c.state == "terminated" && c.state_reason == "OOMKilled";
        let oom_recent = last.is_some_and(|l| {
            l.reason == "OOMKilled"
                && (c.state != "running"
                    || seconds_since(l.finished_at.as_ref(), now)
                        .is_some_and(|age| age.unsigned_abs() <= t.oom_window_secs))
        });
        let mut evidence = container_evidence(c);
        if let Some(limit) = c.limits.and_then(|l| l.memory_bytes) {
            evidence.push(("memory limit bytes", limit.to_string()));
        }
        if let Some(usage) = c.usage.and_then(|u| u.memory_bytes) {
            evidence.push(("memory usage bytes", usage.to_string()));
        }
        if oom_now || oom_recent {
            issues.push(issue(
                IssueKind::OomKilled,
                Severity::Critical,
                target,
                &c.name,
                format!(
                    "The {} was killed for exceeding its memory limit.",
                    where_(&c.name)
                ),
                evidence,
            ));
            continue;
        }
        let (kind, severity, summary) = match c.state_reason.as_str() {
            "CrashLoopBackOff" if c.state == "waiting" => (
                IssueKind::CrashLoopBackOff,
                if c.restart_count >= 5 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                format!(
                    "The {} is crash-looping ({} restarts).",
                    where_(&c.name),
                    c.restart_count
                ),
            ),
            "ImagePullBackOff" | "ErrImagePull" if c.state == "waiting" => (
                IssueKind::ImagePullBackOff,
                Severity::Warning,
                format!(
                    "The {} cannot pull its image ({}).",
                    where_(&c.name),
                    c.state_reason
                ),
            ),
            "CreateContainerConfigError" if c.state == "waiting" => (
                IssueKind::CreateContainerConfigError,
                Severity::Warning,
                format!(
                    "The {} cannot start: its configuration references something missing.",
                    where_(&c.name)
                ),
            ),
            "CreateContainerError" if c.state == "waiting" => (
                IssueKind::CreateContainerError,
                Severity::Warning,
                format!(
                    "The {} cannot be created by the container runtime.",
                    where_(&c.name)
                ),
            ),
            "RunContainerError" if c.state == "waiting" => (
                IssueKind::RunContainerError,
                Severity::Warning,
                format!(
                    "The {} was created but the runtime cannot start it.",
                    where_(&c.name)
                ),
            ),
            _ if restarting(c, t, now) => (
                IssueKind::ContainerRestarting,
                Severity::Warning,
                format!(
                    "The {} has restarted {} times, last after exit code {}.",
                    where_(&c.name),
                    c.restart_count,
                    last.map_or(0, |l| l.exit_code)
                ),
            ),
            _ => continue,
        };
        issues.push(issue(kind, severity, target, &c.name, summary, evidence));
    }

    for c in &pod.init_containers {
        let last = c.last_termination.as_ref();
        let failed_last = last.is_some_and(|l| l.exit_code != 0);
        let stuck = c.state == "waiting"
            && (c.state_reason == "CrashLoopBackOff" && failed_last
                || KUBELET_WAITING.contains(&c.state_reason.as_str()));
        let failed_now =
            c.state == "terminated" && c.state_reason != "Completed" && c.restart_count > 0;
        if !(stuck || failed_now) {
            continue;
        }
        let evidence = container_evidence(c);
        issues.push(issue(
            IssueKind::InitContainerFailing,
            Severity::Warning,
            target,
            &c.name,
            format!(
                "Init container {} of pod {}/{} keeps failing ({}): the pod cannot start.",
                c.name, target.namespace, target.name, c.state_reason
            ),
            evidence,
        ));
    }
    let gated = pod.unschedulable_reason == "SchedulingGated";
    if pod.phase == "Pending" && gated {
        if let Some(secs) = for_at_least(
            pod.unschedulable_since.as_ref(),
            now,
            t.scheduling_gated_secs,
        ) {
            issues.push(issue(
                IssueKind::SchedulingGated,
                Severity::Warning,
                target,
                "",
                format!(
                    "Pod {}/{} has waited {secs}s for its scheduling gates to be removed ({}).",
                    target.namespace,
                    target.name,
                    pod.scheduling_gates.join(", ")
                ),
                vec![
                    ("scheduling gates", pod.scheduling_gates.join(", ")),
                    ("gated seconds", secs.to_string()),
                ],
            ));
        }
    } else if pod.phase == "Pending" && !pod.unschedulable_reason.is_empty() {
        let pending = seconds_since(pod.unschedulable_since.as_ref(), now).unwrap_or(0);
        if pending >= 0 && pending.unsigned_abs() >= t.unschedulable_secs {
            issues.push(issue(
                IssueKind::Unschedulable,
                Severity::Warning,
                target,
                "",
                format!(
                    "Pod {}/{} cannot be scheduled ({}) for {pending}s.",
                    target.namespace, target.name, pod.unschedulable_reason
                ),
                vec![
                    ("reason", pod.unschedulable_reason.clone()),
                    ("pending seconds", pending.to_string()),
                ],
            ));
        }
    }
    if let Some(secs) = for_at_least(pod.deletion_deadline.as_ref(), now, t.pod_terminating_secs) {
        let mut evidence = vec![
            ("seconds past its grace period", secs.to_string()),
            ("node", pod.node_name.clone()),
        ];
        if !pod.finalizers.is_empty() {
            evidence.push(("finalizers", pod.finalizers.join(", ")));
        }
        issues.push(issue(
            IssueKind::PodStuckTerminating,
            Severity::Warning,
            target,
            "",
            format!(
                "Pod {}/{} is still there {secs}s after its grace period ended.",
                target.namespace, target.name
            ),
            evidence,
        ));
    }
    if pod.status_reason == "Evicted" {
        issues.push(issue(
            IssueKind::Evicted,
            Severity::Warning,
            target,
            "",
            format!(
                "Pod {}/{} was evicted from node {}.",
                target.namespace, target.name, pod.node_name
            ),
            vec![("node", pod.node_name.clone())],
        ));
    }
    if pod.phase == "Running" && !pod.ready && !any_waiting {
        let not_ready = seconds_since(pod.ready_since.as_ref(), now).unwrap_or(0);
        if not_ready >= 0 && not_ready.unsigned_abs() >= t.readiness_failing_secs {
            issues.push(issue(
                IssueKind::ReadinessFailing,
                Severity::Warning,
                target,
                "",
                format!(
                    "Pod {}/{} is running but not ready for {not_ready}s.",
                    target.namespace, target.name
                ),
                vec![("not ready seconds", not_ready.to_string())],
            ));
        }
    }
}

/// A container running again, for `restarting_running_secs` at least,
/// after restarting at least `restarting_restarts` times, the last time
/// with a non-zero exit within `restarting_window_secs`: it crashes now and
/// then, but runs long enough between crashes that the kubelet's back-off
/// never holds it in CrashLoopBackOff (a container that dies within seconds
/// of each start is a crash loop, its own kind).
fn restarting(c: &pb::ContainerStatus, t: &Thresholds, now: i64) -> bool {
    let Some(last) = c.last_termination.as_ref() else {
        return false;
    };
    c.state == "running"
        && for_at_least(c.running_since.as_ref(), now, t.restarting_running_secs).is_some()
        && c.restart_count >= t.restarting_restarts
        && last.exit_code != 0
        && seconds_since(last.finished_at.as_ref(), now)
            .is_some_and(|age| age >= 0 && age.unsigned_abs() <= t.restarting_window_secs)
}

/// The problem conditions node-problem-detector sets (its default
/// monitors): True means the problem is there. Conditions Nanny does not
/// know are not judged, whatever their status.
pub const NODE_PROBLEMS: [&str; 7] = [
    "KernelDeadlock",
    "ReadonlyFilesystem",
    "FrequentKubeletRestart",
    "FrequentDockerRestart",
    "FrequentContainerdRestart",
    "CorruptDockerOverlay2",
    "FilesystemCorruptionDetected",
];

/// A container's restarts, state and last termination, as evidence.
fn container_evidence(c: &pb::ContainerStatus) -> Vec<(&'static str, String)> {
    let mut evidence = vec![
        ("restart count", c.restart_count.to_string()),
        (
            "state",
            format!("{} {}", c.state, c.state_reason).trim().to_owned(),
        ),
    ];
    if let Some(l) = &c.last_termination {
        evidence.push((
            "last termination",
            format!("{} (exit code {})", l.reason, l.exit_code),
        ));
    }
    evidence
}

/// Waiting reasons that say an init container cannot start at all.
const KUBELET_WAITING: [&str; 6] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

fn node_issues(node: &pb::Node, target: &pb::ObjectRef, issues: &mut Vec<pb::Issue>) {
    let conditions: BTreeMap<&str, &pb::Condition> = node
        .conditions
        .iter()
        .map(|c| (c.r#type.as_str(), c))
        .collect();
    if let Some(ready) = conditions.get("Ready").filter(|c| c.status != "True") {
        issues.push(issue(
            IssueKind::NodeNotReady,
            Severity::Critical,
            target,
            "",
            format!("Node {} is not ready ({}).", target.name, ready.reason),
            vec![("Ready", format!("{} ({})", ready.status, ready.reason))],
        ));
    }
    for (type_, kind) in [
        ("MemoryPressure", IssueKind::NodeMemoryPressure),
        ("DiskPressure", IssueKind::NodeDiskPressure),
        ("PIDPressure", IssueKind::NodePidPressure),
    ] {
        if let Some(c) = conditions.get(type_).filter(|c| c.status == "True") {
            issues.push(issue(
                kind,
                Severity::Warning,
                target,
                "",
                format!("Node {} reports {type_} ({}).", target.name, c.reason),
                vec![(type_, format!("True ({})", c.reason))],
            ));
        }
    }
    if let Some(c) = conditions
        .get("NetworkUnavailable")
        .filter(|c| c.status == "True")
    {
        issues.push(issue(
            IssueKind::NodeNetworkUnavailable,
            Severity::Warning,
            target,
            "",
            format!(
                "Node {} reports NetworkUnavailable ({}): its network is not configured.",
                target.name, c.reason
            ),
            vec![("NetworkUnavailable", format!("True ({})", c.reason))],
        ));
    }
    // node-problem-detector's conditions: True is the problem.
    for type_ in NODE_PROBLEMS {
        if let Some(c) = conditions.get(type_).filter(|c| c.status == "True") {
            issues.push(issue(
                IssueKind::NodeProblem,
                Severity::Warning,
                target,
                type_,
                format!("Node {} reports {type_} ({}).", target.name, c.reason),
                vec![(type_, format!("True ({})", c.reason))],
            ));
        }
    }
    if node.unschedulable {
        issues.push(issue(
            IssueKind::NodeCordoned,
            Severity::Info,
            target,
            "",
            format!("Node {} is cordoned.", target.name),
            vec![("unschedulable", "true".to_owned())],
        ));
    }
}

mod autoscaling;
mod certificates;
mod cost;
mod networking;
mod predict;

pub use networking::{HELD, judged};

#[cfg(test)]
mod tests;
