//! The remediation ladder: what a policy tries next when an action keeps
//! not helping, and when it hands the incident to a human instead.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ActionType;

/// How a policy climbs when its actions do not help. Each rung is still
/// reviewed by the safety gate like any other action: the ladder chooses
/// what to propose, never what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ladder {
    /// Verified-ineffective (or failed) attempts of one action in one
    /// incident before that action is not proposed again for it.
    #[serde(default = "default_max_ineffective")]
    #[schemars(range(min = 1, max = 10))]
    pub max_ineffective: u32,
    /// An incident ends after this long without a new proposal for it: its
    /// attempts are forgotten, and its open escalation is resolved.
    #[serde(default = "default_quiet_seconds")]
    #[schemars(range(min = 60, max = 604_800))]
    pub quiet_seconds: u32,
    /// Per issue kind, the actions to try in order. For a kind not listed
    /// (and for an action its list does not name) the next rung is
    /// `Escalate`.
    #[serde(default = "default_steps")]
    #[schemars(length(max = 32))]
    pub steps: Vec<LadderSteps>,
}

impl Default for Ladder {
    fn default() -> Self {
        Self {
            max_ineffective: default_max_ineffective(),
            quiet_seconds: default_quiet_seconds(),
            steps: default_steps(),
        }
    }
}

fn default_max_ineffective() -> u32 {
    2
}

fn default_quiet_seconds() -> u32 {
    1800
}

/// A crash loop a restart does not fix gets a rolling restart of its
/// workload (which needs a human's approval), then a human.
fn default_steps() -> Vec<LadderSteps> {
    vec![LadderSteps {
        issue: LadderIssue::CrashLoopBackOff,
        rungs: vec![Rung::RestartPod, Rung::RolloutRestart, Rung::Escalate],
    }]
}

/// The rungs for one issue kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LadderSteps {
    /// The issue kind, e.g. `CrashLoopBackOff`.
    pub issue: LadderIssue,
    /// The actions in the order to try them; `Escalate` hands the incident
    /// to a human (always the last rung, whether listed or not).
    #[schemars(length(min = 1, max = 8))]
    pub rungs: Vec<Rung>,
}

/// One step of a ladder.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Rung {
    /// Restart (evict) the pod.
    RestartPod,
    /// Roll the pod's workload.
    RolloutRestart,
    /// Raise the HPA's limits.
    ScaleHpa,
    /// Cordon the node.
    CordonNode,
    /// Drain the node (always with a human's approval).
    DrainNode,
    /// Grow the claim.
    ExpandPvc,
    /// Change the workload's resources.
    PatchResources,
    /// Delete the finished Job.
    DeleteJob,
    /// Delete the workload's failed pods.
    DeleteFailedPods,
    /// Force-delete the pod stuck terminating.
    ForceDeletePod,
    /// Raise the workload's replicas.
    ScaleWorkload,
    /// Resume the CronJob.
    ResumeCronJob,
    /// Run the failed Job again.
    RetriggerJob,
    /// Roll the Deployment back to its previous revision.
    RolloutUndo,
    /// Hand the incident to a human: one open escalation, no more actions.
    Escalate,
}

impl Rung {
    /// The action this rung proposes; `None` for [`Rung::Escalate`].
    pub fn action(self) -> Option<ActionType> {
        Some(match self {
            Self::RestartPod => ActionType::RestartPod,
            Self::RolloutRestart => ActionType::RolloutRestart,
            Self::ScaleHpa => ActionType::ScaleHpa,
            Self::CordonNode => ActionType::CordonNode,
            Self::DrainNode => ActionType::DrainNode,
            Self::ExpandPvc => ActionType::ExpandPvc,
            Self::PatchResources => ActionType::PatchResources,
            Self::DeleteJob => ActionType::DeleteJob,
            Self::DeleteFailedPods => ActionType::DeleteFailedPods,
            Self::ForceDeletePod => ActionType::ForceDeletePod,
            Self::ScaleWorkload => ActionType::ScaleWorkload,
            Self::ResumeCronJob => ActionType::ResumeCronJob,
            Self::RetriggerJob => ActionType::RetriggerJob,
            Self::RolloutUndo => ActionType::RolloutUndo,
            Self::Escalate => return None,
        })
    }
}

/// The issue kinds a ladder can name (the collector's kinds).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[allow(clippy::upper_case_acronyms)]
pub enum LadderIssue {
    CrashLoopBackOff,
    OOMKilled,
    ImagePullBackOff,
    CreateContainerConfigError,
    Unschedulable,
    Evicted,
    ReadinessFailing,
    NodeNotReady,
    NodeMemoryPressure,
    NodeDiskPressure,
    NodePIDPressure,
    NodeCordoned,
    MemoryPressure,
    CPUThrottling,
    HighRestartRate,
    HPAAtMax,
    PVCNearlyFull,
    JobFailed,
    JobCompletedStale,
    RolloutStuck,
    CreateContainerError,
    RunContainerError,
    PodStuckTerminating,
    PVCPending,
    PVCLost,
    NamespaceStuckTerminating,
    DeploymentUnavailable,
    PDBBlockingDisruptions,
    CronJobSuspended,
    CronJobMissedSchedule,
    ReplicaFailure,
    NodeNetworkUnavailable,
    NodeProblem,
    InitContainerFailing,
    LivenessProbeFailing,
    StartupProbeFailing,
    VolumeMountFailing,
    PodSandboxFailing,
    SchedulingGated,
    ContainerRestarting,
    CronJobInvalidSchedule,
    StatefulSetNotProgressing,
    DaemonSetUnavailable,
    ServiceNoReadyEndpoints,
    ServiceSelectsNothing,
    StatefulSetServiceMissing,
    WebhookNoEndpoints,
    NetworkPolicySelectsNothing,
    IngressMisconfigured,
    PVReleased,
    PVFailed,
    HPAUnableToScale,
    HPATargetWithoutRequests,
    TLSCertificateExpiring,
    PVCPredictedFull,
    OOMPredicted,
    OverProvisioned,
    WorkloadIdle,
    NodePredictedExhausted,
    HPAAtMaxRising,
    NodeDiskPredictedFull,
}

impl LadderIssue {
    /// The kind as the policy spells it, e.g. `CrashLoopBackOff`.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_names_every_issue_kind_as_the_kinds_table_spells_it() {
        let names: Vec<String> = nanny_proto::kinds::KINDS
            .iter()
            .map(|k| k.name.to_owned())
            .collect();
        let all: Vec<LadderIssue> =
            serde_json::from_value(serde_json::json!(names)).unwrap_or_default();
        assert_eq!(all.len(), nanny_proto::kinds::KINDS.len());
        for issue in all {
            assert_ne!(
                crate::proto::issue_kind(&issue.name()),
                nanny_proto::v1::IssueKind::Unspecified,
                "{issue:?}"
            );
        }
    }
}
