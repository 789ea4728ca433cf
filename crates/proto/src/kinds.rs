//! The issue kinds: one entry per kind the collector detects, with what
//! raises it and what Nanny does about it by default. `nannyctl kinds`
//! prints this table and the README's is generated from it (`cargo xtask
//! docs`); the analyzer's tests check that its rules answer each kind as
//! the table says.

use crate::{
    v1::{ActionType, IssueKind, Severity},
    vocabulary::{self, Approval},
};

/// Where in the cluster a kind is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Pods,
    Workloads,
    Jobs,
    Nodes,
    Networking,
    Storage,
    Cluster,
}

impl Area {
    /// Lower-case, as the tables print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pods => "pods",
            Self::Workloads => "workloads",
            Self::Jobs => "jobs",
            Self::Nodes => "nodes",
            Self::Networking => "networking",
            Self::Storage => "storage",
            Self::Cluster => "cluster",
        }
    }
}

/// What Nanny does about a kind when the policy allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// A rule proposes the first action; the later ones are the rungs the
    /// ladder (or a rule's threshold) moves on to.
    Act(&'static [ActionType]),
    /// A rule reports it to people with what to fix; nothing is executed.
    Report,
    /// No rule: a model may propose an action it is offered (the gate
    /// reviews it like any other); without one the issue is only in the
    /// snapshot and the metrics.
    Model,
}

/// One issue kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// The contract's enum value.
    pub kind: IssueKind,
    /// The policy's spelling (`triggers`, ladders): `CrashLoopBackOff`.
    pub name: &'static str,
    /// Where it is found.
    pub area: Area,
    /// The most severe level the collector gives it.
    pub severity: Severity,
    /// What raises it, in one line.
    pub raised_when: &'static str,
    /// What Nanny does by default.
    pub response: Response,
}

impl KindInfo {
    /// The response in words, e.g. `RestartPod → RolloutRestart`.
    pub fn response_text(&self) -> String {
        match self.response {
            Response::Act(actions) => actions
                .iter()
                .map(|a| vocabulary::of_type(*a).name)
                .collect::<Vec<_>>()
                .join(" → "),
            Response::Report => "ReportOnly (what to fix)".to_owned(),
            Response::Model => "none by rule; the model may propose one".to_owned(),
        }
    }

    /// Who lets the default action run, before a policy's override.
    pub fn level_text(&self) -> &'static str {
        match self.response {
            Response::Act(actions) => actions
                .first()
                .map_or(Approval::Never, |a| vocabulary::of_type(*a).approval)
                .as_str(),
            Response::Report => Approval::Never.as_str(),
            Response::Model => "as the gate rules for the proposal",
        }
    }
}

const fn kind(
    kind: IssueKind,
    name: &'static str,
    area: Area,
    severity: Severity,
    raised_when: &'static str,
    response: Response,
) -> KindInfo {
    KindInfo {
        kind,
        name,
        area,
        severity,
        raised_when,
        response,
    }
}

use Area::{Cluster, Jobs, Networking, Nodes, Pods, Storage, Workloads};
use IssueKind as K;
use Response::{Act, Model, Report};
use Severity::{Critical, Info, Warning};

/// Every issue kind, in `IssueKind` order.
pub const KINDS: &[KindInfo] = &[
    kind(
        K::CrashLoopBackOff,
        "CrashLoopBackOff",
        Pods,
        Critical,
        "a container waits in CrashLoopBackOff (critical from 5 restarts)",
        Act(&[ActionType::RestartPod, ActionType::RolloutRestart]),
    ),
    kind(
        K::OomKilled,
        "OOMKilled",
        Pods,
        Critical,
        "a container was killed for its memory limit (now, or within the OOM window)",
        Act(&[ActionType::PatchResources]),
    ),
    kind(
        K::ImagePullBackOff,
        "ImagePullBackOff",
        Pods,
        Warning,
        "a container waits in ErrImagePull or ImagePullBackOff",
        Report,
    ),
    kind(
        K::CreateContainerConfigError,
        "CreateContainerConfigError",
        Pods,
        Warning,
        "a container's ConfigMap, Secret or key is missing",
        Report,
    ),
    kind(
        K::Unschedulable,
        "Unschedulable",
        Pods,
        Warning,
        "PodScheduled=False for the unschedulable threshold",
        Report,
    ),
    kind(
        K::Evicted,
        "Evicted",
        Pods,
        Warning,
        "the pod's status reason is Evicted",
        Act(&[ActionType::DeleteFailedPods]),
    ),
    kind(
        K::ReadinessFailing,
        "ReadinessFailing",
        Pods,
        Warning,
        "running, no container waiting, not Ready for the readiness threshold",
        Model,
    ),
    kind(
        K::NodeNotReady,
        "NodeNotReady",
        Nodes,
        Critical,
        "the node's Ready condition is not True",
        Act(&[ActionType::CordonNode, ActionType::DrainNode]),
    ),
    kind(
        K::NodeMemoryPressure,
        "NodeMemoryPressure",
        Nodes,
        Warning,
        "MemoryPressure=True (False is healthy)",
        Act(&[ActionType::CordonNode]),
    ),
    kind(
        K::NodeDiskPressure,
        "NodeDiskPressure",
        Nodes,
        Warning,
        "DiskPressure=True (False is healthy)",
        Act(&[ActionType::CordonNode]),
    ),
    kind(
        K::NodePidPressure,
        "NodePIDPressure",
        Nodes,
        Warning,
        "PIDPressure=True (False is healthy)",
        Act(&[ActionType::CordonNode]),
    ),
    kind(
        K::NodeCordoned,
        "NodeCordoned",
        Nodes,
        Info,
        "spec.unschedulable is set (a cordon Nanny set is lifted once the node is healthy for the uncordon period and no longer predicted to run out of memory or disk; a person's is left to the model and people)",
        Act(&[ActionType::UncordonNode]),
    ),
    kind(
        K::MemoryPressure,
        "MemoryPressure",
        Nodes,
        Warning,
        "Prometheus: the node's available memory ratio below its threshold",
        Model,
    ),
    kind(
        K::CpuThrottling,
        "CPUThrottling",
        Pods,
        Warning,
        "Prometheus: a container throttled in more periods than its threshold",
        Model,
    ),
    kind(
        K::HighRestartRate,
        "HighRestartRate",
        Pods,
        Warning,
        "Prometheus: a container's 15-minute restart rate above its threshold",
        Model,
    ),
    kind(
        K::HpaAtMax,
        "HPAAtMax",
        Workloads,
        Warning,
        "an HPA at maxReplicas with a metric above target",
        Act(&[ActionType::ScaleHpa]),
    ),
    kind(
        K::PvcNearlyFull,
        "PVCNearlyFull",
        Storage,
        Critical,
        "Prometheus: a claim's volume fuller than its threshold (critical from 95%)",
        Act(&[ActionType::ExpandPvc]),
    ),
    kind(
        K::JobFailed,
        "JobFailed",
        Jobs,
        Warning,
        "Failed=True (BackoffLimitExceeded, DeadlineExceeded, ...); run again as a new Job (RetriggerJob, a human approves) only where the policy names RetriggerJob, otherwise the model explains it",
        Model,
    ),
    kind(
        K::JobCompletedStale,
        "JobCompletedStale",
        Jobs,
        Info,
        "completed longer ago than the completed-Job threshold",
        Act(&[ActionType::DeleteJob]),
    ),
    kind(
        K::RolloutStuck,
        "RolloutStuck",
        Workloads,
        Critical,
        "Progressing=False with ProgressDeadlineExceeded (rolled back when a previous revision exists; left to the model otherwise)",
        Act(&[ActionType::RolloutUndo]),
    ),
    kind(
        K::CreateContainerError,
        "CreateContainerError",
        Pods,
        Warning,
        "a container waits in CreateContainerError (the runtime refused to create it)",
        Report,
    ),
    kind(
        K::RunContainerError,
        "RunContainerError",
        Pods,
        Warning,
        "a container waits in RunContainerError (created, but it cannot start)",
        Report,
    ),
    kind(
        K::PodStuckTerminating,
        "PodStuckTerminating",
        Pods,
        Warning,
        "deleted, and still there longer than the terminating threshold after its grace period ended (reported when a finalizer or a Ready node holds it)",
        Act(&[ActionType::ForceDeletePod]),
    ),
    kind(
        K::PvcPending,
        "PVCPending",
        Storage,
        Warning,
        "a claim Pending for the pending-claim threshold",
        Report,
    ),
    kind(
        K::PvcLost,
        "PVCLost",
        Storage,
        Critical,
        "a claim whose volume is gone (phase Lost)",
        Report,
    ),
    kind(
        K::NamespaceStuckTerminating,
        "NamespaceStuckTerminating",
        Cluster,
        Warning,
        "a namespace Terminating for the terminating-namespace threshold",
        Report,
    ),
    kind(
        K::DeploymentUnavailable,
        "DeploymentUnavailable",
        Workloads,
        Critical,
        "Available=False (too few replicas available) for the unavailable threshold",
        Report,
    ),
    kind(
        K::PdbBlockingDisruptions,
        "PDBBlockingDisruptions",
        Workloads,
        Warning,
        "a PodDisruptionBudget allowing no disruption for the blocking threshold (reported when one more replica cannot help)",
        Act(&[ActionType::ScaleWorkload]),
    ),
    kind(
        K::CronjobSuspended,
        "CronJobSuspended",
        Jobs,
        Info,
        "suspended, and not run for the suspended-CronJob threshold (resumed only where the policy allows ResumeCronJob, else reported)",
        Act(&[ActionType::ResumeCronJob]),
    ),
    kind(
        K::CronjobMissedSchedule,
        "CronJobMissedSchedule",
        Jobs,
        Warning,
        "not suspended, and a time its schedule names passed longer ago than the missed-schedule threshold without a run",
        Report,
    ),
    kind(
        K::ReplicaFailure,
        "ReplicaFailure",
        Workloads,
        Warning,
        "ReplicaFailure=True: its ReplicaSet cannot create pods (quota, admission, a missing ServiceAccount)",
        Report,
    ),
    kind(
        K::NodeNetworkUnavailable,
        "NodeNetworkUnavailable",
        Nodes,
        Warning,
        "NetworkUnavailable=True (False is healthy)",
        Act(&[ActionType::CordonNode]),
    ),
    kind(
        K::NodeProblem,
        "NodeProblem",
        Nodes,
        Warning,
        "a node-problem-detector condition True: KernelDeadlock, ReadonlyFilesystem, frequent kubelet or runtime restarts, a corrupt overlay or filesystem (unknown conditions are not judged)",
        Act(&[ActionType::CordonNode]),
    ),
    kind(
        K::InitContainerFailing,
        "InitContainerFailing",
        Pods,
        Warning,
        "an init container crash-loops after a non-zero exit, or cannot be pulled, configured or started",
        Report,
    ),
    kind(
        K::LivenessProbeFailing,
        "LivenessProbeFailing",
        Pods,
        Warning,
        "the kubelet warned of a failed liveness probe at least the probe-failures threshold within the warning window, and restarted a container",
        Report,
    ),
    kind(
        K::StartupProbeFailing,
        "StartupProbeFailing",
        Pods,
        Warning,
        "the kubelet warned of a failed startup probe at least the probe-failures threshold within the warning window, and restarted a container (a slow start within its budget is not an issue)",
        Report,
    ),
    kind(
        K::VolumeMountFailing,
        "VolumeMountFailing",
        Pods,
        Warning,
        "Pending, its containers still being created, past the pod-start threshold while the kubelet warns FailedMount or FailedAttachVolume",
        Report,
    ),
    kind(
        K::PodSandboxFailing,
        "PodSandboxFailing",
        Pods,
        Warning,
        "Pending, its containers still being created, past the pod-start threshold while the kubelet warns FailedCreatePodSandBox",
        Report,
    ),
    kind(
        K::SchedulingGated,
        "SchedulingGated",
        Pods,
        Warning,
        "waiting for its scheduling gates to be removed for the gated threshold",
        Report,
    ),
    kind(
        K::ContainerRestarting,
        "ContainerRestarting",
        Pods,
        Warning,
        "running again for a minute after restarting at least the restarts threshold, the last exit non-zero and recent: it crashes now and then, never long enough in back-off to be a crash loop",
        Report,
    ),
    kind(
        K::CronjobInvalidSchedule,
        "CronJobInvalidSchedule",
        Jobs,
        Warning,
        "its schedule reads but names no time that exists (30 February): it never runs",
        Report,
    ),
    kind(
        K::StatefulsetNotProgressing,
        "StatefulSetNotProgressing",
        Workloads,
        Warning,
        "fewer pods ready than desired for the StatefulSet threshold",
        Report,
    ),
    kind(
        K::DaemonsetUnavailable,
        "DaemonSetUnavailable",
        Workloads,
        Warning,
        "pods unavailable or misscheduled for the DaemonSet threshold",
        Report,
    ),
    kind(
        K::ServiceNoReadyEndpoints,
        "ServiceNoReadyEndpoints",
        Networking,
        Critical,
        "a Service's selector matches pods and none of them is Ready (nor, with publishNotReadyAddresses, scheduled) for the Service threshold: its clients are refused",
        Report,
    ),
    kind(
        K::ServiceSelectsNothing,
        "ServiceSelectsNothing",
        Networking,
        Warning,
        "a Service's selector matches no pod and no workload's pod template in its namespace for the Service threshold (a workload scaled to zero is not an issue)",
        Report,
    ),
    kind(
        K::StatefulsetServiceMissing,
        "StatefulSetServiceMissing",
        Workloads,
        Warning,
        "a StatefulSet's spec.serviceName names a Service that does not exist, for the Service threshold: its pods get no stable DNS names",
        Report,
    ),
    kind(
        K::WebhookNoEndpoints,
        "WebhookNoEndpoints",
        Cluster,
        Critical,
        "an admission webhook's Service is missing, selects no pod or has no Ready pod, for the Service threshold: with failurePolicy Fail (critical) the API server refuses what it covers, with Ignore (warning) lets it through unchecked",
        Report,
    ),
    kind(
        K::NetworkPolicySelectsNothing,
        "NetworkPolicySelectsNothing",
        Networking,
        Warning,
        "a NetworkPolicy's pod selector (not empty) matches no pod and no workload's pod template in its namespace, for the Service threshold: it isolates and allows nothing",
        Report,
    ),
    kind(
        K::IngressMisconfigured,
        "IngressMisconfigured",
        Networking,
        Warning,
        "an Ingress sends traffic to a Service that does not exist, or names an IngressClass that does not exist, for the Service threshold (its TLS Secrets are named, not judged)",
        Report,
    ),
    kind(
        K::PvReleased,
        "PVReleased",
        Storage,
        Warning,
        "a PersistentVolume Released for the released-volume threshold (a day): its claim is gone and, under Retain, its storage kept and paid for with no claim able to bind it; under Delete, its reclamation stuck",
        Report,
    ),
    kind(
        K::PvFailed,
        "PVFailed",
        Storage,
        Critical,
        "a PersistentVolume Failed for the failed-volume threshold (300 s; the PV controller retries): its automatic reclamation failed (its message quoted)",
        Report,
    ),
    kind(
        K::HpaUnableToScale,
        "HPAUnableToScale",
        Workloads,
        Warning,
        "an HPA whose AbleToScale or ScalingActive condition is False (metrics unreadable, scale target missing) for the HPA threshold (10 minutes); ScalingDisabled, a target scaled to zero on purpose, is not judged",
        Report,
    ),
    kind(
        K::HpaTargetWithoutRequests,
        "HPATargetWithoutRequests",
        Workloads,
        Warning,
        "an HPA scaling on cpu or memory utilization while a container of its target's live pods requests none of it (judged on the pods, so LimitRange defaults count), for the Service threshold",
        Report,
    ),
    kind(
        K::TlsCertificateExpiring,
        "TLSCertificateExpiring",
        Cluster,
        Warning,
        "a TLS Secret's certificate expiring within the certificate threshold (14 days, or a third of its lifetime for short-lived ones), critical once expired; read only where the collector reads TLS Secrets (kubernetes.tls_secrets, off by default: Nanny reads no Secret unless asked)",
        Report,
    ),
    kind(
        K::PvcPredictedFull,
        "PVCPredictedFull",
        Storage,
        Warning,
        "predicted, not yet failed: a claim's used bytes (a Prometheus range, fitted by least squares over at least an hour since its last reset, R² at least 0.9) reaching its capacity within 24 hours",
        Act(&[ActionType::ExpandPvc]),
    ),
    kind(
        K::OomPredicted,
        "OOMPredicted",
        Pods,
        Warning,
        "predicted, not yet failed: a container's working set (a Prometheus range, fitted over at least an hour since its last restart, R² at least 0.9) reaching its memory limit within 12 hours; a steady rise is a probable leak",
        Act(&[ActionType::PatchResources]),
    ),
    kind(
        K::OverProvisioned,
        "OverProvisioned",
        Workloads,
        Info,
        "cost: a Deployment's, StatefulSet's or DaemonSet's container requesting more CPU than its live pods' p95 plus a 20% margin by at least 100m a pod, or more memory than their peak plus the margin by at least 128 MiB, over the usage window (7 days), every pod with a day of history; a resource an HPA scales it on by utilization is not judged",
        Report,
    ),
    kind(
        K::WorkloadIdle,
        "WorkloadIdle",
        Workloads,
        Info,
        "cost: a workload whose live pods' busiest 5 minutes stayed below 5m CPU over at least 2 days",
        Report,
    ),
    kind(
        K::NodePredictedExhausted,
        "NodePredictedExhausted",
        Nodes,
        Warning,
        "predicted, not yet failed: a node's working set (a Prometheus range of the kubelet's node_memory_working_set_bytes by its `node` label, fitted over at least an hour, R² at least 0.9) reaching its allocatable memory within 6 hours",
        Act(&[ActionType::CordonNode]),
    ),
    kind(
        K::HpaAtMaxRising,
        "HPAAtMaxRising",
        Workloads,
        Warning,
        "predicted, not yet failed: an HPA at maxReplicas for a share of each day (kube-state-metrics' replicas, over 14 days) rising by at least a point a day (R² at least 0.6), at least 10% of the last day",
        Act(&[ActionType::ScaleHpa]),
    ),
    kind(
        K::NodeDiskPredictedFull,
        "NodeDiskPredictedFull",
        Nodes,
        Warning,
        "predicted, not yet failed: the bytes used on a node's filesystem (a Prometheus range of cAdvisor's container_fs_usage_bytes of the node's root cgroup by its `node` label, fitted over at least an hour, R² at least 0.9) reaching its allocatable ephemeral storage within 6 hours",
        Act(&[ActionType::CordonNode]),
    ),
];

/// The entry of a kind; `None` for `Unspecified`.
pub fn info(kind: IssueKind) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.kind == kind)
}

/// The entry named `name` (`CrashLoopBackOff`); `None` for a name no kind has.
pub fn by_name(name: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.name == name)
}

/// The table as Markdown: the README's, and `nannyctl kinds --markdown`.
pub fn markdown() -> String {
    let mut out = String::from(
        "| kind | area | raised when | severity | default response | level |\n|---|---|---|---|---|---|\n",
    );
    for k in KINDS {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            k.name,
            k.area.as_str(),
            k.raised_when,
            severity_text(k.severity),
            k.response_text(),
            k.level_text()
        ));
    }
    out
}

/// Where the README's generated tables begin and end.
pub const README_BEGIN: &str =
    "<!-- generated by `cargo xtask docs` from crates/proto/src/{kinds,vocabulary}.rs -->";
/// The end marker.
pub const README_END: &str = "<!-- end of generated tables -->";

/// The README's generated part, markers included.
pub fn readme_section() -> String {
    format!(
        "{README_BEGIN}\n{}\n{}{README_END}",
        markdown(),
        vocabulary::markdown()
    )
}

/// `readme` with its generated part replaced by today's; `None` when it has
/// no markers.
pub fn with_readme_section(readme: &str) -> Option<String> {
    let begin = readme.find(README_BEGIN)?;
    let end = readme[begin..].find(README_END)? + begin + README_END.len();
    Some(format!(
        "{}{}{}",
        &readme[..begin],
        readme_section(),
        &readme[end..]
    ))
}

/// `critical`, `warning` or `info`.
pub fn severity_text(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
        Severity::Unspecified => "unspecified",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_issue_kind_has_exactly_one_entry_in_order() {
        let kinds: Vec<IssueKind> = (1..).map_while(|n| IssueKind::try_from(n).ok()).collect();
        assert_eq!(KINDS.iter().map(|k| k.kind).collect::<Vec<_>>(), kinds);
        assert!(info(IssueKind::Unspecified).is_none());
    }

    #[test]
    fn names_are_the_contract_names_without_case_or_underscores() {
        for k in KINDS {
            let wire = k
                .kind
                .as_str_name()
                .trim_start_matches("ISSUE_KIND_")
                .replace('_', "");
            assert!(wire.eq_ignore_ascii_case(k.name), "{wire} vs {}", k.name);
            assert_eq!(by_name(k.name), Some(k));
        }
    }

    #[test]
    fn actions_named_are_executable_and_accept_a_target() {
        for k in KINDS {
            if let Response::Act(actions) = k.response {
                assert!(!actions.is_empty(), "{}", k.name);
                for a in actions {
                    assert!(vocabulary::of_type(*a).executable, "{}: {a:?}", k.name);
                }
            }
        }
    }

    #[test]
    fn the_readmes_tables_are_these() {
        let readme = include_str!("../../../README.md");
        let regenerated = with_readme_section(readme);
        assert!(
            regenerated.is_some(),
            "README.md lost its generated section"
        );
        assert!(
            regenerated.as_deref() == Some(readme),
            "README.md's tables of issue kinds and actions are stale: run `cargo xtask docs`"
        );
    }

    #[test]
    fn the_table_has_one_row_per_kind_with_its_level() {
        let table = markdown();
        assert_eq!(table.lines().count(), KINDS.len() + 2);
        assert!(table.contains(
            "| `CrashLoopBackOff` | pods | a container waits in CrashLoopBackOff (critical from 5 restarts) | critical | RestartPod → RolloutRestart | auto |"
        ));
        assert!(
            table.contains("| `OOMKilled` |")
                && table.contains("| PatchResources | needs approval |")
        );
        assert!(table.contains("| ReportOnly (what to fix) | reported, nothing executed |"));
    }
}
