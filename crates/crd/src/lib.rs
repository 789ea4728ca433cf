//! The `nanny.ai/v1alpha1` custom resources.
//!
//! - [`HealingPolicy`]: what Nanny watches, how far it may go, and its limits.
//! - [`HealingAction`]: one proposed action and its life — the audit trail and
//!   the durable state the coordinator resumes from.
//!
//! The CRD YAML under `deploy/crds/` is generated from these types by
//! `cargo xtask crds`; a test fails when the committed files drift.

mod action;
mod history;
mod ladder;
mod notify;
mod params;
mod policy;
pub mod proto;

pub use action::*;
pub use history::*;
pub use ladder::*;
pub use notify::*;
pub use params::*;
pub use policy::*;

use kube::CustomResourceExt as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every Nanny resource.
pub const GROUP: &str = "nanny.ai";

/// Declares [`ActionType`] from one list of variants named exactly as the
/// contract's `ActionType`, with the conversions both ways generated from it.
macro_rules! action_types {
    ($($(#[doc = $doc:literal])+ $name:ident,)+) => {
        /// The action types Nanny knows, as named in policies and actions:
        /// the CRD's spelling of `nanny_proto::vocabulary`.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            JsonSchema,
        )]
        pub enum ActionType {
            $($(#[doc = $doc])+ $name,)+
        }

        impl ActionType {
            /// Every action type, in contract order.
            pub const ALL: &[ActionType] = &[$(ActionType::$name,)+];
        }

        impl From<ActionType> for nanny_proto::v1::ActionType {
            fn from(t: ActionType) -> Self {
                match t {
                    $(ActionType::$name => Self::$name,)+
                }
            }
        }
    };
}

action_types! {
    /// Delete a controller-owned pod.
    RestartPod,
    /// Set the restartedAt annotation on a workload.
    RolloutRestart,
    /// Change an HPA's min/max replicas.
    ScaleHpa,
    /// Mark a node unschedulable.
    CordonNode,
    /// Mark a node schedulable.
    UncordonNode,
    /// Evict a node's pods.
    DrainNode,
    /// Grow a PVC.
    ExpandPvc,
    /// Change container requests/limits on a workload.
    PatchResources,
    /// Delete a finished Job.
    DeleteJob,
    /// Delete the target object (never approved for protected kinds).
    DeleteResource,
    /// Tell a human; nothing to execute.
    ReportOnly,
    /// Delete a workload's failed pods, a capped number per call.
    DeleteFailedPods,
    /// Delete a pod stuck terminating on a gone or not-ready node.
    ForceDeletePod,
    /// Raise the replicas of a workload no HPA scales.
    ScaleWorkload,
    /// Clear a CronJob's suspend.
    ResumeCronJob,
    /// Roll a Deployment back to its previous revision.
    RolloutUndo,
    /// Run a failed Job again, as a new Job.
    RetriggerJob,
}

impl ActionType {
    /// The contract's enum value.
    pub fn proto(self) -> nanny_proto::v1::ActionType {
        self.into()
    }

    /// The vocabulary's entry: name, label, targets, approval.
    pub fn info(self) -> &'static nanny_proto::vocabulary::ActionInfo {
        nanny_proto::vocabulary::of_type(self.proto())
    }

    /// `RestartPod`: the name in CRs, labels and object names.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The CRD type of a contract value; `None` for `Unspecified`.
    pub fn from_proto(t: nanny_proto::v1::ActionType) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.proto() == t)
    }
}

/// A standard Kubernetes condition, as both resources' statuses carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// e.g. `Ready`, `Degraded`, `Approved`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase machine-readable reason.
    #[serde(default)]
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time of the last status change.
    pub last_transition_time: String,
}

/// Both CRDs as YAML documents, in the order they are committed.
///
/// # Errors
/// When serialisation fails (a bug in the types).
pub fn crd_yaml() -> Result<Vec<(&'static str, String)>, serde_yaml::Error> {
    Ok(vec![
        (
            "healingpolicies.nanny.ai.yaml",
            serde_yaml::to_string(&HealingPolicy::crd())?,
        ),
        (
            "healingactions.nanny.ai.yaml",
            serde_yaml::to_string(&HealingAction::crd())?,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_types_are_the_vocabulary_spelled_alike() {
        let vocabulary: Vec<_> = nanny_proto::vocabulary::ACTIONS
            .iter()
            .map(|a| a.action_type)
            .collect();
        let ours: Vec<_> = ActionType::ALL.iter().map(|t| t.proto()).collect();
        assert_eq!(ours, vocabulary, "one CRD variant per vocabulary entry");
        for &t in ActionType::ALL {
            // The CR spelling is the vocabulary's name, both ways.
            assert_eq!(serde_json::to_value(t).unwrap(), t.name());
            assert_eq!(ActionType::from_proto(t.proto()), Some(t));
        }
        assert_eq!(
            ActionType::from_proto(nanny_proto::v1::ActionType::Unspecified),
            None
        );
    }

    #[test]
    fn committed_crds_match_the_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds");
        for (file, generated) in crd_yaml().unwrap() {
            let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            assert!(
                committed == generated,
                "deploy/crds/{file} is out of date: run `cargo xtask crds` and commit the result"
            );
        }
    }

    #[test]
    fn crds_have_printer_columns_and_short_names() {
        let crd = HealingAction::crd();
        let names = crd.spec.names.short_names.clone().unwrap_or_default();
        assert!(names.contains(&"ha".to_owned()), "{names:?}");
        let columns: Vec<String> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(columns, ["Phase", "Action", "Target", "Age"]);
        assert!(
            HealingPolicy::crd()
                .spec
                .names
                .short_names
                .unwrap_or_default()
                .contains(&"hp".to_owned())
        );
    }
}
