use std::sync::Arc;

use nanny_proto::v1::{self as pb, IssueKind};

use super::*;
use crate::store::{Entry, Labels, Tables};

const NOW: i64 = 1_800_000_000;

fn at(seconds_ago: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: NOW - seconds_ago,
        nanos: 0,
    })
}

fn reference(kind: &str, name: &str) -> pb::ObjectRef {
    pb::ObjectRef {
        kind: kind.to_owned(),
        namespace: if kind == "Node" {
            String::new()
        } else {
            "shop".to_owned()
        },
        name: name.to_owned(),
        uid: format!("uid-{name}"),
        resource_version: "1".to_owned(),
        ..pb::ObjectRef::default()
    }
}

/// An object in namespace `shop`, its uid naming its kind too (objects of
/// several kinds may share a name).
pub(super) fn namespaced(kind: &str, name: &str) -> pb::ObjectRef {
    pb::ObjectRef {
        kind: kind.to_owned(),
        namespace: "shop".to_owned(),
        name: name.to_owned(),
        uid: format!("uid-{kind}-{name}"),
        ..pb::ObjectRef::default()
    }
}

pub(super) fn entry<T>(value: T) -> Entry<T> {
    Entry {
        rev: 1,
        value: Arc::new(value),
        labels: Labels::default(),
    }
}

fn container(state: &str, reason: &str, last: Option<&str>) -> pb::ContainerStatus {
    pb::ContainerStatus {
        name: "app".to_owned(),
        state: state.to_owned(),
        state_reason: reason.to_owned(),
        restart_count: 6,
        last_termination: last.map(|reason| pb::Termination {
            reason: reason.to_owned(),
            exit_code: if reason == "OOMKilled" { 137 } else { 1 },
            finished_at: at(30),
        }),
        ..pb::ContainerStatus::default()
    }
}

fn with_pod(tables: &mut Tables, name: &str, pod: pb::Pod) {
    let pod = pb::Pod {
        r#ref: Some(reference("Pod", name)),
        ..pod
    };
    tables
        .pods
        .insert(Arc::from(format!("uid-{name}").as_str()), entry(pod));
}

/// Each issue's kind and target name, sorted.
pub(super) fn kinds(issues: &[pb::Issue]) -> Vec<(IssueKind, String)> {
    let mut out: Vec<_> = issues
        .iter()
        .map(|i| {
            (
                IssueKind::try_from(i.kind).unwrap_or(IssueKind::Unspecified),
                i.target
                    .as_ref()
                    .map(|t| t.name.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

fn detect_now(tables: &Tables) -> Vec<pb::Issue> {
    detect(
        tables,
        &MetricsRound::default(),
        &Thresholds::default(),
        NOW,
    )
}

#[test]
fn container_states_map_to_issue_kinds_and_oom_wins_over_crash_loop() {
    let mut tables = Tables::default();
    let running = |containers| pb::Pod {
        phase: "Running".to_owned(),
        containers,
        ..pb::Pod::default()
    };
    with_pod(
        &mut tables,
        "crash",
        running(vec![container(
            "waiting",
            "CrashLoopBackOff",
            Some("Error"),
        )]),
    );
    with_pod(
        &mut tables,
        "oom",
        running(vec![container(
            "waiting",
            "CrashLoopBackOff",
            Some("OOMKilled"),
        )]),
    );
    with_pod(
        &mut tables,
        "pull",
        running(vec![container("waiting", "ImagePullBackOff", None)]),
    );
    with_pod(
        &mut tables,
        "errpull",
        running(vec![container("waiting", "ErrImagePull", None)]),
    );
    with_pod(
        &mut tables,
        "config",
        running(vec![container(
            "waiting",
            "CreateContainerConfigError",
            None,
        )]),
    );
    with_pod(
        &mut tables,
        "healthy",
        pb::Pod {
            ready: true,
            ..running(vec![container("running", "", None)])
        },
    );
    assert_eq!(
        kinds(&detect_now(&tables)),
        [
            (IssueKind::CrashLoopBackOff, "crash".to_owned()),
            (IssueKind::OomKilled, "oom".to_owned()),
            (IssueKind::ImagePullBackOff, "errpull".to_owned()),
            (IssueKind::ImagePullBackOff, "pull".to_owned()),
            (IssueKind::CreateContainerConfigError, "config".to_owned()),
        ]
    );
}

#[test]
fn an_old_oom_kill_of_a_running_container_is_history_not_an_issue() {
    let mut tables = Tables::default();
    let mut old = container("running", "", Some("OOMKilled"));
    if let Some(last) = old.last_termination.as_mut() {
        last.finished_at = at(2 * 3600);
    }
    with_pod(
        &mut tables,
        "recovered",
        pb::Pod {
            phase: "Running".to_owned(),
            ready: true,
            containers: vec![old],
            ..pb::Pod::default()
        },
    );
    assert!(detect_now(&tables).is_empty());
}

#[test]
fn fingerprints_are_stable_and_distinguish_kind_target_and_container() {
    let a = fingerprint(IssueKind::CrashLoopBackOff, "uid-1", "app");
    assert_eq!(a, fingerprint(IssueKind::CrashLoopBackOff, "uid-1", "app"));
    assert_ne!(
        a,
        fingerprint(IssueKind::CrashLoopBackOff, "uid-1", "sidecar")
    );
    assert_ne!(a, fingerprint(IssueKind::OomKilled, "uid-1", "app"));
    assert_ne!(a, fingerprint(IssueKind::CrashLoopBackOff, "uid-2", "app"));
    assert_eq!(a.len(), 16);
}

#[test]
fn time_thresholds_hold_back_pending_and_not_ready_pods() {
    let mut tables = Tables::default();
    let pending = |seconds| pb::Pod {
        phase: "Pending".to_owned(),
        unschedulable_reason: "Unschedulable".to_owned(),
        unschedulable_since: at(seconds),
        ..pb::Pod::default()
    };
    with_pod(&mut tables, "pending-new", pending(10));
    with_pod(&mut tables, "pending-old", pending(600));
    let not_ready = |seconds| pb::Pod {
        phase: "Running".to_owned(),
        ready: false,
        ready_since: at(seconds),
        containers: vec![container("running", "", None)],
        ..pb::Pod::default()
    };
    with_pod(&mut tables, "unready-new", not_ready(10));
    with_pod(&mut tables, "unready-old", not_ready(600));
    with_pod(
        &mut tables,
        "evicted",
        pb::Pod {
            phase: "Failed".to_owned(),
            status_reason: "Evicted".to_owned(),
            ..pb::Pod::default()
        },
    );
    assert_eq!(
        kinds(&detect_now(&tables)),
        [
            (IssueKind::Unschedulable, "pending-old".to_owned()),
            (IssueKind::Evicted, "evicted".to_owned()),
            (IssueKind::ReadinessFailing, "unready-old".to_owned()),
        ]
    );
}

#[test]
fn node_conditions_and_cordons_are_issues() {
    let mut tables = Tables::default();
    let condition = |type_: &str, status: &str| pb::Condition {
        r#type: type_.to_owned(),
        status: status.to_owned(),
        reason: "Test".to_owned(),
        last_transition: None,
        message: None,
    };
    for (name, conditions, unschedulable) in [
        ("ok", vec![condition("Ready", "True")], false),
        ("down", vec![condition("Ready", "Unknown")], false),
        (
            "mem",
            vec![
                condition("Ready", "True"),
                condition("MemoryPressure", "True"),
            ],
            false,
        ),
        (
            "disk",
            vec![
                condition("Ready", "True"),
                condition("DiskPressure", "True"),
            ],
            false,
        ),
        (
            "pid",
            vec![condition("Ready", "True"), condition("PIDPressure", "True")],
            false,
        ),
        ("cordoned", vec![condition("Ready", "True")], true),
    ] {
        tables.nodes.insert(
            Arc::from(name),
            entry(pb::Node {
                r#ref: Some(reference("Node", name)),
                conditions,
                unschedulable,
                ..pb::Node::default()
            }),
        );
    }
    assert_eq!(
        kinds(&detect_now(&tables)),
        [
            (IssueKind::NodeNotReady, "down".to_owned()),
            (IssueKind::NodeMemoryPressure, "mem".to_owned()),
            (IssueKind::NodeDiskPressure, "disk".to_owned()),
            (IssueKind::NodePidPressure, "pid".to_owned()),
            (IssueKind::NodeCordoned, "cordoned".to_owned()),
        ]
    );
}

#[test]
fn hpa_pvc_job_and_rollout_issues_follow_their_thresholds() {
    let mut tables = Tables::default();
    let hpa = |name: &str, current: i32, utilisation: i32| pb::HorizontalPodAutoscaler {
        r#ref: Some(reference("HorizontalPodAutoscaler", name)),
        max_replicas: 5,
        current_replicas: current,
        metrics: vec![pb::HpaMetric {
            name: "cpu".to_owned(),
            current_utilization_percent: Some(utilisation),
            target_utilization_percent: Some(70),
        }],
        ..pb::HorizontalPodAutoscaler::default()
    };
    for (name, h) in [
        ("hot", hpa("hot", 5, 95)),
        ("cool", hpa("cool", 5, 50)),
        ("room", hpa("room", 3, 95)),
    ] {
        tables.hpas.insert(Arc::from(name), entry(h));
    }
    for (name, percent) in [("full", 92.0), ("fine", 40.0)] {
        tables.pvcs.insert(
            Arc::from(name),
            entry(pb::PersistentVolumeClaim {
                r#ref: Some(reference("PersistentVolumeClaim", name)),
                usage_percent: Some(percent),
                ..pb::PersistentVolumeClaim::default()
            }),
        );
    }
    let job = |name: &str, type_: &str, completed_ago: i64| pb::Job {
        r#ref: Some(reference("Job", name)),
        completion_time: at(completed_ago),
        conditions: vec![pb::Condition {
            r#type: type_.to_owned(),
            status: "True".to_owned(),
            reason: "BackoffLimitExceeded".to_owned(),
            last_transition: None,
            message: None,
        }],
        ..pb::Job::default()
    };
    for (name, j) in [
        ("failed", job("failed", "Failed", 0)),
        ("stale", job("stale", "Complete", 25 * 3600)),
        ("fresh", job("fresh", "Complete", 3600)),
    ] {
        tables.jobs.insert(Arc::from(name), entry(j));
    }
    tables.workloads.insert(
        Arc::from("stuck"),
        entry(pb::Workload {
            r#ref: Some(reference("Deployment", "stuck")),
            conditions: vec![pb::Condition {
                r#type: "Progressing".to_owned(),
                status: "False".to_owned(),
                reason: "ProgressDeadlineExceeded".to_owned(),
                last_transition: None,
                message: None,
            }],
            ..pb::Workload::default()
        }),
    );
    assert_eq!(
        kinds(&detect_now(&tables)),
        [
            (IssueKind::HpaAtMax, "hot".to_owned()),
            (IssueKind::PvcNearlyFull, "full".to_owned()),
            (IssueKind::JobFailed, "failed".to_owned()),
            (IssueKind::JobCompletedStale, "stale".to_owned()),
            (IssueKind::RolloutStuck, "stuck".to_owned()),
        ]
    );
}

#[test]
fn promql_ratios_become_issues_on_the_right_targets() {
    let mut tables = Tables::default();
    with_pod(
        &mut tables,
        "busy",
        pb::Pod {
            phase: "Running".to_owned(),
            ready: true,
            ..pb::Pod::default()
        },
    );
    tables.nodes.insert(
        Arc::from("n1"),
        entry(pb::Node {
            r#ref: Some(reference("Node", "n1")),
            ..pb::Node::default()
        }),
    );
    let series = |labels: &[(&str, &str)], value: f64| Series {
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        value,
    };
    let metrics = MetricsRound {
        series: [
            (
                "cpu_throttling_ratio".to_owned(),
                vec![series(
                    &[("namespace", "shop"), ("pod", "busy"), ("container", "app")],
                    0.8,
                )],
            ),
            (
                "restart_rate_15m".to_owned(),
                vec![series(
                    &[("namespace", "shop"), ("pod", "busy"), ("container", "app")],
                    0.01,
                )],
            ),
            (
                "node_memory_available_ratio".to_owned(),
                vec![
                    series(&[("node", "n1")], 0.05),
                    series(&[("node", "gone")], 0.01),
                ],
            ),
        ]
        .into(),
        at: NOW,
        ..MetricsRound::default()
    };
    let issues = detect(&tables, &metrics, &Thresholds::default(), NOW);
    assert_eq!(
        kinds(&issues),
        [
            (IssueKind::MemoryPressure, "n1".to_owned()),
            (IssueKind::CpuThrottling, "busy".to_owned()),
            (IssueKind::HighRestartRate, "busy".to_owned()),
        ]
    );
}

/// A table of objects after `with`, each named after its case.
fn table<T>(objects: Vec<(&str, T)>) -> crate::store::Table<T> {
    objects
        .into_iter()
        .map(|(name, value)| (Arc::from(format!("uid-{name}").as_str()), entry(value)))
        .collect()
}

fn condition_at(type_: &str, status: &str, reason: &str, ago: i64) -> pb::Condition {
    pb::Condition {
        r#type: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        last_transition: at(ago),
        message: None,
    }
}

fn claim<'a>(
    name: &'a str,
    phase: &str,
    age: i64,
    first_consumer: bool,
) -> (&'a str, pb::PersistentVolumeClaim) {
    (
        name,
        pb::PersistentVolumeClaim {
            r#ref: Some(reference("PersistentVolumeClaim", name)),
            phase: phase.to_owned(),
            created_at: at(age),
            binds_on_first_consumer: first_consumer,
            volume_name: "pv-1".to_owned(),
            ..pb::PersistentVolumeClaim::default()
        },
    )
}

fn namespace<'a>(name: &'a str, phase: &str, deleted: Option<i64>) -> (&'a str, pb::Namespace) {
    (
        name,
        pb::Namespace {
            r#ref: Some(pb::ObjectRef {
                namespace: String::new(),
                ..reference("Namespace", name)
            }),
            phase: phase.to_owned(),
            deletion_requested: deleted.and_then(at),
            blocked_by: vec![],
        },
    )
}

fn deployment<'a>(name: &'a str, available: &str, ago: i64) -> (&'a str, pb::Workload) {
    (
        name,
        pb::Workload {
            r#ref: Some(reference("Deployment", name)),
            desired_replicas: 3,
            available_replicas: i32::from(available == "True") * 3,
            conditions: vec![condition_at(
                "Available",
                available,
                "MinimumReplicasUnavailable",
                ago,
            )],
            ..pb::Workload::default()
        },
    )
}

fn budget(
    name: &str,
    allowed: i32,
    expected: i32,
    blocked: Option<i64>,
) -> (&str, pb::PodDisruptionBudget) {
    (
        name,
        pb::PodDisruptionBudget {
            r#ref: Some(reference("PodDisruptionBudget", name)),
            disruptions_allowed: allowed,
            expected_pods: expected,
            current_healthy: expected,
            desired_healthy: expected,
            blocked_since: blocked.and_then(at),
            ..pb::PodDisruptionBudget::default()
        },
    )
}

fn pod_deleted(deadline_ago: i64) -> pb::Pod {
    pb::Pod {
        phase: "Running".to_owned(),
        ready: true,
        containers: vec![container("running", "", None)],
        deletion_deadline: at(deadline_ago),
        finalizers: vec!["example.com/block".to_owned()],
        node_name: "n1".to_owned(),
        ..pb::Pod::default()
    }
}

#[test]
fn healthy_objects_of_every_new_kind_raise_nothing() {
    // A node as a real kubelet reports it, with node-problem-detector's
    // conditions: False is healthy for everything but Ready.
    let nodes = table(vec![(
        "n1",
        pb::Node {
            r#ref: Some(reference("Node", "n1")),
            conditions: vec![
                condition_at("Ready", "True", "KubeletReady", 9000),
                condition_at(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    9000,
                ),
                condition_at("DiskPressure", "False", "KubeletHasNoDiskPressure", 9000),
                condition_at("PIDPressure", "False", "KubeletHasSufficientPID", 9000),
                condition_at("NetworkUnavailable", "False", "RouteCreated", 9000),
                condition_at("KernelDeadlock", "False", "KernelHasNoDeadlock", 9000),
                condition_at(
                    "ReadonlyFilesystem",
                    "False",
                    "FilesystemIsNotReadOnly",
                    9000,
                ),
            ],
            ..pb::Node::default()
        },
    )]);
    let mut tables = Tables {
        nodes,
        ..Tables::default()
    };
    // Still within its grace period, or its grace and the threshold.
    with_pod(&mut tables, "leaving", pod_deleted(-20));
    with_pod(&mut tables, "just-late", pod_deleted(299));
    with_pod(
        &mut tables,
        "ok",
        pb::Pod {
            phase: "Running".to_owned(),
            ready: true,
            containers: vec![container("running", "", None)],
            ..pb::Pod::default()
        },
    );
    tables.pvcs = table(vec![
        claim("bound", "Bound", 90_000, false),
        claim("young", "Pending", 60, false),
        // Waits for a pod, however long: the pod's issues say why.
        claim("waits-for-a-pod", "Pending", 90_000, true),
    ]);
    tables.namespaces = table(vec![
        namespace("active", "Active", None),
        namespace("going", "Terminating", Some(120)),
    ]);
    tables.workloads = table(vec![
        deployment("up", "True", 90_000),
        deployment("rolling", "False", 60),
    ]);
    tables.pdbs = table(vec![
        budget("allows", 1, 3, None),
        budget("briefly", 0, 3, Some(600)),
        // Nothing to protect: no pods.
        budget("empty", 0, 0, Some(90_000)),
    ]);
    assert_eq!(kinds(&detect_now(&tables)), []);
}

#[test]
fn the_new_kinds_are_raised_past_their_thresholds_with_evidence() {
    let mut tables = Tables::default();
    for (name, reason) in [
        ("create", "CreateContainerError"),
        ("run", "RunContainerError"),
    ] {
        with_pod(
            &mut tables,
            name,
            pb::Pod {
                phase: "Pending".to_owned(),
                containers: vec![container("waiting", reason, None)],
                ..pb::Pod::default()
            },
        );
    }
    with_pod(&mut tables, "stuck", pod_deleted(301));
    tables.pvcs = table(vec![
        claim("pending", "Pending", 301, false),
        claim("lost", "Lost", 10, false),
    ]);
    tables.namespaces = table(vec![namespace("old", "Terminating", Some(601))]);
    tables.workloads = table(vec![deployment("down", "False", 601)]);
    tables.pdbs = table(vec![budget("strict", 0, 2, Some(3601))]);
    let issues = detect_now(&tables);
    assert_eq!(
        kinds(&issues),
        [
            (IssueKind::CreateContainerError, "create".to_owned()),
            (IssueKind::RunContainerError, "run".to_owned()),
            (IssueKind::PodStuckTerminating, "stuck".to_owned()),
            (IssueKind::PvcPending, "pending".to_owned()),
            (IssueKind::PvcLost, "lost".to_owned()),
            (IssueKind::NamespaceStuckTerminating, "old".to_owned()),
            (IssueKind::DeploymentUnavailable, "down".to_owned()),
            (IssueKind::PdbBlockingDisruptions, "strict".to_owned()),
        ]
    );
    let evidence = |kind: IssueKind| -> Vec<(String, String)> {
        issues
            .iter()
            .find(|i| i.kind == kind as i32)
            .map(|i| {
                i.evidence
                    .iter()
                    .map(|e| (e.description.clone(), e.value.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        evidence(IssueKind::PodStuckTerminating)
            .contains(&("finalizers".to_owned(), "example.com/block".to_owned()))
    );
    assert!(
        evidence(IssueKind::PodStuckTerminating)
            .contains(&("seconds past its grace period".to_owned(), "301".to_owned()))
    );
    assert!(
        evidence(IssueKind::DeploymentUnavailable)
            .contains(&("available/desired replicas".to_owned(), "0/3".to_owned()))
    );
    assert!(
        evidence(IssueKind::PdbBlockingDisruptions)
            .contains(&("healthy/expected pods".to_owned(), "2/2".to_owned()))
    );
    let severity = |kind: IssueKind| {
        issues
            .iter()
            .find(|i| i.kind == kind as i32)
            .map(|i| i.severity)
    };
    assert_eq!(
        severity(IssueKind::PvcLost),
        Some(Severity::Critical as i32)
    );
    assert_eq!(
        severity(IssueKind::DeploymentUnavailable),
        Some(Severity::Critical as i32)
    );
}

fn cron_job<'a>(
    name: &'a str,
    schedule: &str,
    suspended: bool,
    last_ago: i64,
    zone: &str,
) -> (&'a str, pb::Workload) {
    (
        name,
        pb::Workload {
            r#ref: Some(reference("CronJob", name)),
            created_at: at(400 * 86_400),
            cron: Some(pb::CronSchedule {
                schedule: schedule.to_owned(),
                suspended,
                last_schedule: at(last_ago),
                time_zone: zone.to_owned(),
                ..pb::CronSchedule::default()
            }),
            ..pb::Workload::default()
        },
    )
}

#[test]
fn cronjobs_suspended_for_long_or_missing_a_run_are_issues_and_others_are_not() {
    let tables = Tables {
        workloads: table(vec![
            // Every 5 minutes, last run 2 h ago: missed.
            cron_job("missed", "*/5 * * * *", false, 7200, ""),
            // Ran a minute ago: fine.
            cron_job("on-time", "*/5 * * * *", false, 60, ""),
            // Daily at 03:00, last run today at 03:00 (NOW is 08:00 UTC):
            // its next time has not come.
            cron_job("daily", "0 3 * * *", false, 5 * 3600, ""),
            // Last run yesterday at 14:00: today's 03:00 passed without one.
            cron_job("daily-missed", "0 3 * * *", false, 18 * 3600, ""),
            // Another zone's times are not judged.
            cron_job("zoned", "*/5 * * * *", false, 7200, "Europe/Paris"),
            // A schedule croner does not read is not judged.
            cron_job("odd", "@every 5m", false, 7200, ""),
            cron_job("paused", "0 3 * * *", true, 8 * 86_400, ""),
            cron_job("paused-lately", "0 3 * * *", true, 86_400, ""),
        ]),
        ..Tables::default()
    };
    let issues = detect_now(&tables);
    assert_eq!(
        kinds(&issues),
        [
            (IssueKind::CronjobSuspended, "paused".to_owned()),
            (IssueKind::CronjobMissedSchedule, "daily-missed".to_owned()),
            (IssueKind::CronjobMissedSchedule, "missed".to_owned()),
        ]
    );
    let missed = issues
        .iter()
        .find(|i| i.target.as_ref().is_some_and(|t| t.name == "missed"))
        .unwrap();
    // Due 5 minutes after the last run.
    assert!(
        missed
            .evidence
            .iter()
            .any(|e| e.description == "seconds since the missed run" && e.value == "6900"),
        "{missed:?}"
    );
}

#[test]
fn a_nodes_network_and_node_problem_detector_conditions_are_judged_by_meaning() {
    let node = |conditions| pb::Node {
        r#ref: Some(reference("Node", "n1")),
        conditions,
        ..pb::Node::default()
    };
    let tables = Tables {
        nodes: table(vec![(
            "n1",
            node(vec![
                condition_at("Ready", "True", "KubeletReady", 60),
                condition_at("NetworkUnavailable", "True", "NoRouteCreated", 60),
                condition_at("KernelDeadlock", "True", "DockerHung", 60),
                condition_at("ReadonlyFilesystem", "False", "FilesystemIsNotReadOnly", 60),
                // A condition Nanny does not know is not judged.
                condition_at("VendorSpecificThing", "True", "Whatever", 60),
            ]),
        )]),
        ..Tables::default()
    };
    let issues = detect_now(&tables);
    assert_eq!(
        kinds(&issues),
        [
            (IssueKind::NodeNetworkUnavailable, "n1".to_owned()),
            (IssueKind::NodeProblem, "n1".to_owned()),
        ]
    );
    let problem = issues
        .iter()
        .find(|i| i.kind == IssueKind::NodeProblem as i32)
        .unwrap();
    assert_eq!(problem.evidence[0].description, "KernelDeadlock");
}

#[test]
fn failing_init_containers_are_issues_and_finished_or_sidecar_ones_are_not() {
    let init = |name: &str, state: &str, reason: &str, last: Option<&str>| pb::ContainerStatus {
        name: name.to_owned(),
        ..container(state, reason, last)
    };
    let mut tables = Tables::default();
    for (name, inits) in [
        (
            "crashing",
            vec![init(
                "migrate",
                "waiting",
                "CrashLoopBackOff",
                Some("Error"),
            )],
        ),
        (
            "unpullable",
            vec![init("fetch", "waiting", "ImagePullBackOff", None)],
        ),
        (
            "fine",
            vec![
                init("migrate", "terminated", "Completed", None),
                // A sidecar (restartPolicy Always) runs beside the app.
                init("proxy", "running", "", None),
            ],
        ),
    ] {
        with_pod(
            &mut tables,
            name,
            pb::Pod {
                phase: "Pending".to_owned(),
                init_containers: inits,
                ..pb::Pod::default()
            },
        );
    }
    let issues = detect_now(&tables);
    assert_eq!(
        kinds(&issues),
        [
            (IssueKind::InitContainerFailing, "crashing".to_owned()),
            (IssueKind::InitContainerFailing, "unpullable".to_owned()),
        ]
    );
}

fn warning(pod: &str, reason: &str, said: &str, count: i32, ago: i64) -> pb::Event {
    pb::Event {
        involved: Some(reference("Pod", pod)),
        reason: reason.to_owned(),
        r#type: "Warning".to_owned(),
        count,
        last_seen: at(ago),
        message: Some(pb::UntrustedText {
            text: said.to_owned(),
            truncated: false,
        }),
        r#ref: None,
    }
}

fn pod_in(phase: &str, age: i64) -> pb::Pod {
    pb::Pod {
        phase: phase.to_owned(),
        created_at: at(age),
        containers: vec![container("waiting", "ContainerCreating", None)],
        ..pb::Pod::default()
    }
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one table of kubelet warnings, each case with why it is or is not an issue"
)]
fn kubelet_warnings_about_probes_mounts_and_sandboxes_are_one_issue_per_pod_and_kind() {
    let mut tables = Tables::default();
    for (name, phase, age) in [
        ("live", "Running", 3600),
        ("starting", "Running", 3600),
        ("ready-only", "Running", 3600),
        ("once", "Running", 3600),
        ("long-ago", "Running", 3600),
        ("unmounted", "Pending", 300),
        ("unattached", "Pending", 300),
        ("mounted-late", "Running", 300),
        ("young", "Pending", 30),
        ("no-sandbox", "Pending", 300),
        ("slow-start", "Running", 3600),
        ("pulling", "Pending", 300),
    ] {
        with_pod(&mut tables, name, pod_in(phase, age));
    }
    // Within its startup budget: failures, no restart.
    if let Some(p) = tables.pods.get_mut("uid-slow-start") {
        Arc::make_mut(&mut p.value).containers[0].restart_count = 0;
    }
    // Past its mounts, its init containers running.
    if let Some(p) = tables.pods.get_mut("uid-pulling") {
        Arc::make_mut(&mut p.value).containers[0].state_reason = "PodInitializing".to_owned();
    }
    let probe = "Liveness probe failed: HTTP probe failed with statuscode: 500";
    let events = vec![
        // Two events of one probe add up: 2 + 1 failures.
        ("e1", warning("live", "Unhealthy", probe, 2, 10)),
        (
            "e2",
            warning("live", "Unhealthy", "Liveness probe failed: timeout", 1, 20),
        ),
        (
            "e3",
            warning("starting", "Unhealthy", "Startup probe failed: 404", 5, 10),
        ),
        // Readiness has its own kind, from the pod's status.
        (
            "e4",
            warning(
                "ready-only",
                "Unhealthy",
                "Readiness probe failed: 503",
                9,
                10,
            ),
        ),
        // Below the probe-failures threshold (3).
        ("e5", warning("once", "Unhealthy", probe, 1, 10)),
        // Older than the warning window (600 s).
        ("e6", warning("long-ago", "Unhealthy", probe, 9, 1200)),
        (
            "e7",
            warning(
                "unmounted",
                "FailedMount",
                "MountVolume.SetUp failed for volume \"creds\" : secret \"db\" not found",
                4,
                10,
            ),
        ),
        (
            "e8",
            warning(
                "unattached",
                "FailedAttachVolume",
                "Multi-Attach error",
                2,
                10,
            ),
        ),
        // Running now: the mount worked in the end.
        (
            "e9",
            warning("mounted-late", "FailedMount", "timed out", 1, 200),
        ),
        // Pending for less than the pod-start threshold (120 s).
        ("e10", warning("young", "FailedMount", "not found", 3, 10)),
        (
            "e11",
            warning(
                "no-sandbox",
                "FailedCreatePodSandBox",
                "no runtime for \"gvisor\" is configured",
                3,
                10,
            ),
        ),
        // About a pod that is gone.
        ("e12", warning("deleted", "FailedMount", "not found", 9, 10)),
        (
            "e13",
            warning(
                "slow-start",
                "Unhealthy",
                "Startup probe failed: 503",
                5,
                10,
            ),
        ),
        (
            "e14",
            warning("pulling", "FailedMount", "not registered", 1, 100),
        ),
    ];
    tables.events = table(events);
    let issues = detect_now(&tables);
    assert_eq!(
        kinds(&issues),
        [
            (IssueKind::LivenessProbeFailing, "live".to_owned()),
            (IssueKind::StartupProbeFailing, "starting".to_owned()),
            (IssueKind::VolumeMountFailing, "unattached".to_owned()),
            (IssueKind::VolumeMountFailing, "unmounted".to_owned()),
            (IssueKind::PodSandboxFailing, "no-sandbox".to_owned()),
        ]
    );
    let live = issues
        .iter()
        .find(|i| i.kind == IssueKind::LivenessProbeFailing as i32)
        .unwrap();
    assert!(
        live.evidence
            .iter()
            .any(|e| e.description == "times" && e.value == "3"),
        "{live:?}"
    );
}

#[test]
fn gated_pods_are_their_own_kind_and_restarts_before_back_off_are_issues() {
    let mut tables = Tables::default();
    let gated = |since: i64| pb::Pod {
        phase: "Pending".to_owned(),
        unschedulable_reason: "SchedulingGated".to_owned(),
        unschedulable_since: at(since),
        scheduling_gates: vec!["kueue.x-k8s.io/admission".to_owned()],
        ..pb::Pod::default()
    };
    with_pod(&mut tables, "gated", gated(2000));
    with_pod(&mut tables, "gated-lately", gated(60));
    let restarted = |restarts: u32, exit_code: i32, finished: i64| pb::Pod {
        phase: "Running".to_owned(),
        ready: true,
        containers: vec![pb::ContainerStatus {
            restart_count: restarts,
            running_since: at(finished - 5),
            last_termination: Some(pb::Termination {
                reason: if exit_code == 0 { "Completed" } else { "Error" }.to_owned(),
                exit_code,
                finished_at: at(finished),
            }),
            ..container("running", "", None)
        }],
        ..pb::Pod::default()
    };
    with_pod(&mut tables, "restarting", restarted(3, 1, 120));
    with_pod(&mut tables, "restarted-twice", restarted(2, 1, 120));
    with_pod(&mut tables, "exited-cleanly", restarted(5, 0, 120));
    with_pod(&mut tables, "restarted-long-ago", restarted(9, 1, 2000));
    // Dead within seconds of each start: a crash loop between back-offs.
    with_pod(&mut tables, "crash-looping", restarted(9, 1, 20));
    let issues = detect_now(&tables);
    assert_eq!(
        kinds(&issues),
        [
            (IssueKind::SchedulingGated, "gated".to_owned()),
            (IssueKind::ContainerRestarting, "restarting".to_owned()),
        ],
        "a gated pod is not Unschedulable; a few restarts, a clean exit or an old one are not crashing"
    );
    let gated = issues
        .iter()
        .find(|i| i.kind == IssueKind::SchedulingGated as i32)
        .unwrap();
    assert!(
        gated.summary.contains("kueue.x-k8s.io/admission"),
        "{gated:?}"
    );
}

fn short_workload<'a>(kind: &str, name: &'a str, since: Option<i64>) -> (&'a str, pb::Workload) {
    (
        name,
        pb::Workload {
            r#ref: Some(reference(kind, name)),
            desired_replicas: 3,
            ready_replicas: 1,
            available_replicas: 1,
            short_since: since.and_then(at),
            ..pb::Workload::default()
        },
    )
}

#[test]
fn statefulsets_and_daemonsets_short_for_long_and_never_firing_schedules_are_issues() {
    let tables = Tables {
        workloads: table(vec![
            short_workload("StatefulSet", "db", Some(700)),
            short_workload("StatefulSet", "db-rolling", Some(60)),
            short_workload("StatefulSet", "db-healthy", None),
            short_workload("DaemonSet", "agent", Some(700)),
            short_workload("DaemonSet", "agent-new", Some(60)),
            cron_job("never", "0 0 30 2 *", false, 3600, ""),
            cron_job("leap", "0 0 29 2 *", false, 3600, ""),
        ]),
        ..Tables::default()
    };
    let issues = detect_now(&tables);
    assert_eq!(
        kinds(&issues),
        [
            (IssueKind::CronjobInvalidSchedule, "never".to_owned()),
            (IssueKind::StatefulsetNotProgressing, "db".to_owned()),
            (IssueKind::DaemonsetUnavailable, "agent".to_owned()),
        ],
        "29 February comes every four years: not invalid"
    );
}

fn volume<'a>(name: &'a str, phase: &str, since: Option<i64>) -> (&'a str, pb::PersistentVolume) {
    (
        name,
        pb::PersistentVolume {
            r#ref: Some(pb::ObjectRef {
                namespace: String::new(),
                ..reference("PersistentVolume", name)
            }),
            phase: phase.to_owned(),
            reclaim_policy: "Retain".to_owned(),
            claim: Some(reference("PersistentVolumeClaim", "data")),
            phase_since: since.and_then(at),
            ..pb::PersistentVolume::default()
        },
    )
}

#[test]
fn volumes_released_for_long_or_failed_are_issues() {
    let tables = Tables {
        volumes: table(vec![
            volume("bound", "Bound", Some(90_000)),
            volume("available", "Available", Some(90_000)),
            volume("fresh", "Released", Some(3_600)),
            // Before 1.31 there is no phase transition time: not judged.
            volume("unknown", "Released", None),
            volume("kept", "Released", Some(86_400)),
            // Failed a minute ago: the PV controller may still retry.
            volume("retrying", "Failed", Some(60)),
            volume("unknown-failure", "Failed", None),
            volume("broken", "Failed", Some(300)),
        ]),
        ..Tables::default()
    };
    let issues = detect_now(&tables);
    assert_eq!(
        kinds(&issues),
        vec![
            (IssueKind::PvReleased, "kept".to_owned()),
            (IssueKind::PvFailed, "broken".to_owned()),
        ]
    );
    let kept = issues
        .iter()
        .find(|i| i.kind == IssueKind::PvReleased as i32)
        .unwrap();
    assert!(
        kept.summary
            .contains("Released for 86400s (reclaim policy Retain): its claim shop/data is gone"),
        "{}",
        kept.summary
    );
}
