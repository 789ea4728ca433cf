//! The action vocabulary: one entry per action kind, read by every service.
//!
//! Each service still checks an action on its own (defence in depth: the
//! analyzer validates what it proposes, the gate what it approves, the
//! remediator what it executes), but all of them read the facts below from
//! this one table instead of keeping their own copies. Adding an action is:
//! its message and `oneof` arm in `healing.proto`, its `ActionType` in
//! `services.proto`, one entry here, one variant of the CRD's `ActionType`,
//! and then its own implementation (the gate's approval rule, the
//! remediator's plan, the CR parameter mapping).

use crate::v1::{ActionType, action::Kind};

/// The kinds RolloutRestart and PatchResources act on.
pub const WORKLOAD_KINDS: &[&str] = &["Deployment", "StatefulSet", "DaemonSet"];

/// What an action may name as its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    /// Objects of exactly these kinds (as `ObjectRef.kind` spells them).
    Kinds(&'static [&'static str]),
    /// Any kind: the gate decides per kind (DeleteResource), or nothing is
    /// executed (ReportOnly).
    Any,
}

/// The most a safety gate may grant an action by default, before a
/// policy's override and the gate's own checks (which only tighten).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Approval {
    /// Auto-approved when the gate's conditions for it hold (e.g. the pod
    /// is crash-looping, the HPA's max only rises, the Job is old).
    Auto,
    /// A human approves it, unless the policy says `approval: Auto`.
    Human,
    /// A human approves it whatever the policy says: it reaches beyond the
    /// target's own namespace (a drain evicts every namespace's pods).
    AlwaysHuman,
    /// Nothing to execute: reported to people only.
    Never,
}

/// Whether, and how, a model may propose an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelUse {
    /// Offered in the reply schema; the analyzer derives the parameters.
    Offered,
    /// Never offered, but a model that names it anyway is passed on for the
    /// gate to refuse and audit rather than dropped silently.
    PassedToGate,
    /// Never offered; a model naming it is rejected as unknown.
    No,
}

/// Everything the services need to know about one action kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionInfo {
    /// The contract's enum value.
    pub action_type: ActionType,
    /// The CRD's and people's spelling: `RestartPod`.
    pub name: &'static str,
    /// Metric labels and the model's schema: `restart_pod`.
    pub label: &'static str,
    /// What it may target.
    pub targets: Targets,
    /// Takes down running pods (counts against disruption budgets and is
    /// what a policy's disruption cap is about).
    pub disruptive: bool,
    /// The most the gate grants by default.
    pub approval: Approval,
    /// Whether a model may propose it.
    pub model: ModelUse,
    /// The remediator executes it (DeleteResource is approved by humans
    /// only and still not executed; ReportOnly has nothing to execute).
    pub executable: bool,
}

impl ActionInfo {
    /// Whether the action applies to an object of `kind`.
    pub fn accepts(&self, kind: &str) -> bool {
        match self.targets {
            Targets::Kinds(kinds) => kinds.contains(&kind),
            Targets::Any => true,
        }
    }

    /// Who lets it run by default, in words: its approval level, or "never
    /// executed" for an action the remediator does not execute.
    pub fn level_text(&self) -> &'static str {
        if self.executable || self.approval == Approval::Never {
            self.approval.as_str()
        } else {
            "never executed"
        }
    }

    /// Whether the action acts on nodes (the storm guard's node actions).
    pub fn on_nodes(&self) -> bool {
        self.targets == Targets::Kinds(&["Node"])
    }
}

const fn entry(
    action_type: ActionType,
    name: &'static str,
    label: &'static str,
    targets: Targets,
    disruptive: bool,
    approval: Approval,
    model: ModelUse,
) -> ActionInfo {
    ActionInfo {
        action_type,
        name,
        label,
        targets,
        disruptive,
        approval,
        model,
        executable: !matches!(approval, Approval::Never)
            && !matches!(action_type, ActionType::DeleteResource),
    }
}

const NODE: Targets = Targets::Kinds(&["Node"]);

/// Most steps a multi-step plan may hold (`Recommendation.plan`).
pub const MAX_PLAN_STEPS: u32 = 5;

/// The kinds ScaleWorkload acts on: those with a replica count.
pub const SCALABLE: &[&str] = &["Deployment", "StatefulSet"];

/// Kinds without a namespace that an action or a report may name.
pub const CLUSTER_SCOPED: &[&str] = &[
    "Node",
    "Namespace",
    "PersistentVolume",
    "StorageClass",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
];

/// Every action kind, in `ActionType` order.
pub const ACTIONS: &[ActionInfo] = &[
    entry(
        ActionType::RestartPod,
        "RestartPod",
        "restart_pod",
        Targets::Kinds(&["Pod"]),
        true,
        Approval::Auto,
        ModelUse::Offered,
    ),
    entry(
        ActionType::RolloutRestart,
        "RolloutRestart",
        "rollout_restart",
        Targets::Kinds(WORKLOAD_KINDS),
        true,
        Approval::Human,
        ModelUse::Offered,
    ),
    entry(
        ActionType::ScaleHpa,
        "ScaleHpa",
        "scale_hpa",
        Targets::Kinds(&["HorizontalPodAutoscaler"]),
        false,
        Approval::Auto,
        ModelUse::Offered,
    ),
    entry(
        ActionType::CordonNode,
        "CordonNode",
        "cordon_node",
        NODE,
        false,
        Approval::Human,
        ModelUse::Offered,
    ),
    entry(
        ActionType::UncordonNode,
        "UncordonNode",
        "uncordon_node",
        NODE,
        false,
        // Only a cordon Nanny set; the remediator refuses any other.
        Approval::Auto,
        ModelUse::No,
    ),
    entry(
        ActionType::DrainNode,
        "DrainNode",
        "drain_node",
        NODE,
        true,
        Approval::AlwaysHuman,
        ModelUse::Offered,
    ),
    entry(
        ActionType::ExpandPvc,
        "ExpandPvc",
        "expand_pvc",
        Targets::Kinds(&["PersistentVolumeClaim"]),
        false,
        Approval::Human,
        ModelUse::Offered,
    ),
    entry(
        ActionType::PatchResources,
        "PatchResources",
        "patch_resources",
        Targets::Kinds(WORKLOAD_KINDS),
        true,
        Approval::Human,
        ModelUse::No,
    ),
    entry(
        ActionType::DeleteJob,
        "DeleteJob",
        "delete_job",
        Targets::Kinds(&["Job"]),
        false,
        Approval::Auto,
        ModelUse::Offered,
    ),
    entry(
        ActionType::DeleteResource,
        "DeleteResource",
        "delete_resource",
        Targets::Any,
        true,
        Approval::Human,
        ModelUse::PassedToGate,
    ),
    entry(
        ActionType::ReportOnly,
        "ReportOnly",
        "report_only",
        Targets::Any,
        false,
        Approval::Never,
        ModelUse::Offered,
    ),
    entry(
        ActionType::DeleteFailedPods,
        "DeleteFailedPods",
        "delete_failed_pods",
        Targets::Kinds(WORKLOAD_KINDS),
        false,
        Approval::Auto,
        ModelUse::No,
    ),
    entry(
        ActionType::ForceDeletePod,
        "ForceDeletePod",
        "force_delete_pod",
        Targets::Kinds(&["Pod"]),
        false,
        Approval::Human,
        ModelUse::No,
    ),
    entry(
        ActionType::ScaleWorkload,
        "ScaleWorkload",
        "scale_workload",
        Targets::Kinds(SCALABLE),
        false,
        Approval::Human,
        ModelUse::No,
    ),
    entry(
        ActionType::ResumeCronJob,
        "ResumeCronJob",
        "resume_cron_job",
        Targets::Kinds(&["CronJob"]),
        false,
        Approval::Human,
        ModelUse::No,
    ),
    entry(
        ActionType::RolloutUndo,
        "RolloutUndo",
        "rollout_undo",
        Targets::Kinds(&["Deployment"]),
        true,
        Approval::Human,
        ModelUse::No,
    ),
    entry(
        ActionType::RetriggerJob,
        "RetriggerJob",
        "retrigger_job",
        Targets::Kinds(&["Job"]),
        false,
        Approval::Human,
        ModelUse::No,
    ),
];

/// The label on a Job Nanny created to run a failed Job again
/// (RetriggerJob): the failed Job's name. A retry is never retried.
pub const RETRIGGER_OF: &str = "nanny.ai/retrigger-of";

/// The label on a failed Job RetriggerJob ran again: its retry's name. A Job
/// is run again once, whatever becomes of the retry.
pub const RETRIED_AS: &str = "nanny.ai/retried-as";

/// The action type of an action arm: the one exhaustive match over arms.
pub fn action_type(kind: &Kind) -> ActionType {
    match kind {
        Kind::RestartPod(_) => ActionType::RestartPod,
        Kind::RolloutRestart(_) => ActionType::RolloutRestart,
        Kind::ScaleHpa(_) => ActionType::ScaleHpa,
        Kind::CordonNode(_) => ActionType::CordonNode,
        Kind::UncordonNode(_) => ActionType::UncordonNode,
        Kind::DrainNode(_) => ActionType::DrainNode,
        Kind::ExpandPvc(_) => ActionType::ExpandPvc,
        Kind::PatchResources(_) => ActionType::PatchResources,
        Kind::DeleteJob(_) => ActionType::DeleteJob,
        Kind::DeleteResource(_) => ActionType::DeleteResource,
        Kind::ReportOnly(_) => ActionType::ReportOnly,
        Kind::DeleteFailedPods(_) => ActionType::DeleteFailedPods,
        Kind::ForceDeletePod(_) => ActionType::ForceDeletePod,
        Kind::ScaleWorkload(_) => ActionType::ScaleWorkload,
        Kind::ResumeCronJob(_) => ActionType::ResumeCronJob,
        Kind::RolloutUndo(_) => ActionType::RolloutUndo,
        Kind::RetriggerJob(_) => ActionType::RetriggerJob,
    }
}

/// The entry of an action type; `None` for `Unspecified`.
pub fn info(action_type: ActionType) -> Option<&'static ActionInfo> {
    ACTIONS.iter().find(|a| a.action_type == action_type)
}

/// The entry of an action type whose entry must exist: `Unspecified` (and
/// any value the table lacked, which its test rules out) reads as
/// ReportOnly, which executes nothing.
pub fn of_type(action_type: ActionType) -> &'static ActionInfo {
    info(action_type).unwrap_or(REPORT_ONLY)
}

const REPORT_ONLY: &ActionInfo = &ACTIONS[ActionType::ReportOnly as usize - 1];

/// The entry of an action arm (every arm has one).
pub fn of(kind: &Kind) -> &'static ActionInfo {
    of_type(action_type(kind))
}

/// The entry named `name` (`RestartPod`); `None` for a name no action has.
pub fn by_name(name: &str) -> Option<&'static ActionInfo> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// The entry labelled `label` (`restart_pod`); `None` for a label no action has.
pub fn by_label(label: &str) -> Option<&'static ActionInfo> {
    ACTIONS.iter().find(|a| a.label == label)
}

/// The metric label of an optional action arm: `none` when unset (or an
/// arm newer than this build).
pub fn label_of(kind: Option<&Kind>) -> &'static str {
    kind.map_or("none", |k| of(k).label)
}

/// The labels a model may pick, in table order (`report_only` last).
pub fn model_labels() -> Vec<&'static str> {
    ACTIONS
        .iter()
        .filter(|a| a.model == ModelUse::Offered)
        .map(|a| a.label)
        .collect()
}

impl Approval {
    /// In words, as the tables print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Human => "needs approval",
            Self::AlwaysHuman => "always a human",
            Self::Never => "reported, nothing executed",
        }
    }
}

/// The action types as Markdown: the README's, and `nannyctl kinds
/// --actions --markdown`.
pub fn markdown() -> String {
    let mut out = String::from(
        "| action | targets | default level | takes pods down | a model may propose it |\n|---|---|---|---|---|\n",
    );
    for a in ACTIONS {
        let targets = match a.targets {
            Targets::Kinds(kinds) => kinds.join(", "),
            Targets::Any => "any".to_owned(),
        };
        let model = match a.model {
            ModelUse::Offered => "yes",
            ModelUse::PassedToGate => "no (refused and audited by the gate)",
            ModelUse::No => "no",
        };
        out.push_str(&format!(
            "| `{}` | {targets} | {} | {} | {model} |\n",
            a.name,
            a.level_text(),
            if a.disruptive { "yes" } else { "no" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every contract value but `Unspecified`, by number.
    fn every_type() -> Vec<ActionType> {
        (1..).map_while(|n| ActionType::try_from(n).ok()).collect()
    }

    #[test]
    fn every_action_type_has_exactly_one_entry_in_order() {
        let types = every_type();
        assert_eq!(
            ACTIONS.iter().map(|a| a.action_type).collect::<Vec<_>>(),
            types,
            "one entry per ActionType, in contract order"
        );
        assert!(info(ActionType::Unspecified).is_none());
        assert_eq!(of_type(ActionType::Unspecified).name, "ReportOnly");
        assert!(!of_type(ActionType::Unspecified).executable);
    }

    #[test]
    fn names_and_labels_are_the_contract_names() {
        for a in ACTIONS {
            // ACTION_TYPE_RESTART_POD → restart_pod and RestartPod.
            let wire = a.action_type.as_str_name();
            let label = wire.trim_start_matches("ACTION_TYPE_").to_ascii_lowercase();
            assert_eq!(a.label, label, "{wire}");
            let camel: String = label
                .split('_')
                .map(|w| w[..1].to_ascii_uppercase() + &w[1..])
                .collect();
            assert_eq!(a.name, camel, "{wire}");
            assert_eq!(by_name(a.name), Some(a));
            assert_eq!(by_label(a.label), Some(a));
        }
        assert_eq!(by_name("restart_pod"), None);
        assert_eq!(by_label("RestartPod"), None);
    }

    #[test]
    fn only_reports_and_deletes_are_not_executed() {
        let not_executed: Vec<_> = ACTIONS
            .iter()
            .filter(|a| !a.executable)
            .map(|a| a.name)
            .collect();
        assert_eq!(not_executed, ["DeleteResource", "ReportOnly"]);
    }

    #[test]
    fn node_actions_are_known_by_their_targets() {
        let on_nodes: Vec<_> = ACTIONS
            .iter()
            .filter(|a| a.on_nodes())
            .map(|a| a.name)
            .collect();
        assert_eq!(on_nodes, ["CordonNode", "UncordonNode", "DrainNode"]);
        assert!(by_name("DrainNode").is_some_and(|d| d.accepts("Node") && !d.accepts("Pod")));
        assert!(by_name("ReportOnly").is_some_and(|r| r.accepts("Anything")));
    }

    #[test]
    fn the_disruptive_actions_are_those_that_take_running_pods_down() {
        let disruptive: Vec<_> = ACTIONS
            .iter()
            .filter(|a| a.disruptive)
            .map(|a| a.name)
            .collect();
        assert_eq!(
            disruptive,
            [
                "RestartPod",
                "RolloutRestart",
                "DrainNode",
                "PatchResources",
                "DeleteResource",
                "RolloutUndo"
            ]
        );
    }

    #[test]
    fn the_model_is_offered_what_it_can_parameterise_and_report_last() {
        assert_eq!(
            model_labels(),
            [
                "restart_pod",
                "rollout_restart",
                "scale_hpa",
                "cordon_node",
                "drain_node",
                "expand_pvc",
                "delete_job",
                "report_only",
            ]
        );
        assert_eq!(label_of(None), "none");
    }
}
