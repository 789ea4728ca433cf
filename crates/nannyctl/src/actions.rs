//! HealingAction commands: `list`, `get`, `describe`, `approve`, `reject`,
//! `rollback`.
//!
//! Decisions are merge patches that carry the `metadata.resourceVersion` the
//! decision was checked against: if the coordinator (or another human) changed
//! the action in between, the API server answers 409 and nothing is written.

use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, ResourceExt as _,
    api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use nanny_crd::{
    APPROVE_ANNOTATION, HealingAction, HumanApproval, HumanDecision, Phase, REJECT_ANNOTATION,
    ROLLBACK_ANNOTATION,
};
use serde_json::json;

use crate::{
    connect::{KubeArgs, Namespaces},
    render,
};

/// Every phase, for parsing `--phase` and for help.
const PHASES: [Phase; 13] = [
    Phase::Proposed,
    Phase::PendingApproval,
    Phase::Approved,
    Phase::Executing,
    Phase::Verifying,
    Phase::Succeeded,
    Phase::Failed,
    Phase::Denied,
    Phase::RolledBack,
    Phase::Expired,
    Phase::Recorded,
    Phase::Escalated,
    Phase::Resolved,
];

/// Parses a phase name, ignoring case.
fn parse_phase(text: &str) -> Result<Phase, String> {
    PHASES
        .into_iter()
        .find(|p| p.as_str().eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            let names: Vec<&str> = PHASES.iter().map(|p| p.as_str()).collect();
            format!("unknown phase {text:?}; one of: {}", names.join(", "))
        })
}

/// Machine-readable output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// `list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only actions in this phase (e.g. PendingApproval).
    #[arg(long, value_parser = parse_phase)]
    phase: Option<Phase>,
    /// Print the objects instead of a table.
    #[arg(short, long, value_enum)]
    output: Option<Format>,
}

/// `get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// HealingAction name.
    name: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "yaml")]
    output: Format,
}

/// Commands that take just a name.
#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// HealingAction name.
    name: String,
}

/// `approve`.
#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// HealingAction name.
    name: String,
    /// Who approves: must be who the API server authenticates you as
    /// (the default; an admission policy refuses any other name).
    #[arg(long)]
    by: Option<String>,
    /// Why, for the audit trail.
    #[arg(long, default_value = "")]
    comment: String,
}

/// `reject`.
#[derive(Debug, clap::Args)]
pub struct RejectArgs {
    /// HealingAction name.
    name: String,
    /// Who rejects: must be who the API server authenticates you as (the
    /// default; an admission policy refuses any other name).
    #[arg(long)]
    by: Option<String>,
    /// Why, for the audit trail.
    #[arg(long, default_value = "")]
    reason: String,
}

/// `rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// HealingAction name.
    name: String,
    /// Why, for the audit trail.
    #[arg(long)]
    reason: String,
}

/// Prints `value` as JSON or YAML.
pub fn print(value: &impl serde::Serialize, format: Format) -> anyhow::Result<()> {
    let text = match format {
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
        Format::Yaml => serde_yaml::to_string(value)?,
    };
    print!("{text}");
    Ok(())
}

/// The HealingAction API as untyped objects: `get` and `list -o` print what
/// the server holds, fields this nannyctl does not know included.
fn dynamic_api(client: kube::Client, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<HealingAction>(&());
    match namespace {
        Some(ns) => Api::namespaced_with(client, ns, &resource),
        None => Api::all_with(client, &resource),
    }
}

/// Drops what people never want to read (like kubectl's default).
fn tidy(mut object: DynamicObject) -> DynamicObject {
    object.metadata.managed_fields = None;
    object
}

fn phase_name(object: &DynamicObject) -> Option<&str> {
    object.data.get("status")?.get("phase")?.as_str()
}

/// `list`.
pub async fn list(kube: KubeArgs, args: ListArgs) -> anyhow::Result<ExitCode> {
    let connection = kube.connect().await?;
    let namespace = match &connection.namespaces {
        Namespaces::One(ns) => Some(ns.as_str()),
        Namespaces::All => None,
    };
    let mut objects: Vec<DynamicObject> = dynamic_api(connection.client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error(e, "listing HealingActions"))?
        .items
        .into_iter()
        .filter(|o| args.phase.is_none_or(|p| phase_name(o) == Some(p.as_str())))
        .map(tidy)
        .collect();
    objects.sort_by_key(|o| (o.namespace(), o.name_any()));
    if let Some(format) = args.output {
        let list = json!({ "apiVersion": "v1", "kind": "List", "items": objects });
        print(&list, format)?;
        return Ok(ExitCode::SUCCESS);
    }
    if objects.is_empty() {
        let place = match namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "in any namespace".to_owned(),
        };
        let phase = args
            .phase
            .map(|p| format!(" in phase {p}"))
            .unwrap_or_default();
        eprintln!("No HealingActions{phase} found {place}.");
        return Ok(ExitCode::SUCCESS);
    }
    let actions = objects
        .into_iter()
        .map(typed)
        .collect::<anyhow::Result<Vec<_>>>()?;
    print!(
        "{}",
        render::action_table(&actions, namespace.is_none(), Timestamp::now())
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads an untyped object as this nannyctl's HealingAction.
fn typed(object: DynamicObject) -> anyhow::Result<HealingAction> {
    let name = object.name_any();
    let value = serde_json::to_value(object)?;
    serde_json::from_value(value).with_context(|| {
        format!("HealingAction {name} does not parse (written by a newer Nanny? `get -o yaml` shows it as is)")
    })
}

/// `get`.
pub async fn get(kube: KubeArgs, args: GetArgs) -> anyhow::Result<ExitCode> {
    let connection = kube.connect().await?;
    let namespace = connection.namespace()?;
    let object = dynamic_api(connection.client.clone(), Some(namespace))
        .get_opt(&args.name)
        .await
        .map_err(|e| api_error(e, &format!("reading HealingAction {}", args.name)))?
        .ok_or_else(|| not_found(&args.name, namespace))?;
    print(&tidy(object), args.output)?;
    Ok(ExitCode::SUCCESS)
}

fn not_found(name: &str, namespace: &str) -> anyhow::Error {
    anyhow!("HealingAction {name} not found in namespace {namespace} (`list` shows the names)")
}

/// `describe`.
pub async fn describe(kube: KubeArgs, args: NameArgs, program: &str) -> anyhow::Result<ExitCode> {
    let actions = actions(&kube).await?;
    let action = actions.fetch(&args.name).await?;
    print!("{}", render::describe(&action, program, Timestamp::now()));
    Ok(ExitCode::SUCCESS)
}

/// `approve`.
pub async fn approve(kube: KubeArgs, args: ApproveArgs) -> anyhow::Result<ExitCode> {
    decide(
        kube,
        &args.name,
        HumanDecision::Approve,
        args.by,
        args.comment,
    )
    .await
}

/// `reject`.
pub async fn reject(kube: KubeArgs, args: RejectArgs) -> anyhow::Result<ExitCode> {
    decide(
        kube,
        &args.name,
        HumanDecision::Reject,
        args.by,
        args.reason,
    )
    .await
}

/// Who the API server authenticates this client as (SelfSubjectReview,
/// `kubectl auth whoami`); `None` when it does not say.
async fn whoami(api: &Api<HealingAction>) -> Option<String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let client: kube::Client = api.clone().into_client();
    let review = Api::<SelfSubjectReview>::all(client)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .ok()?;
    review.status?.user_info?.username
}

async fn decide(
    kube: KubeArgs,
    name: &str,
    decision: HumanDecision,
    by: Option<String>,
    comment: String,
) -> anyhow::Result<ExitCode> {
    let actions = actions(&kube).await?;
    let action = actions.fetch(name).await?;
    check_decidable(&action).map_err(|refusal| anyhow!("refused: {refusal}"))?;
    // Approvals carry the identity the API server authenticated, not a
    // name anyone can type: the chart's admission policy refuses others.
    let by = match (whoami(&actions.api).await, by.filter(|b| !b.trim().is_empty())) {
        (Some(me), Some(claimed)) if claimed != me => {
            bail!("--by {claimed}: the API server authenticates you as {me}, and an approval carries who decided")
        }
        (Some(me), _) => me,
        (None, claimed) => claimed
            .or(actions.user)
            .context("cannot tell who decides: the API server does not say (SelfSubjectReview); pass --by NAME")?,
    };
    let approval = HumanApproval {
        decision,
        by,
        at: render::now_rfc3339(),
        comment,
    };
    let patch = approval_patch(&action, &approval)?;
    actions
        .api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| write_error(e, name))?;
    let verb = match decision {
        HumanDecision::Approve => "approved",
        HumanDecision::Reject => "rejected",
    };
    println!("healingaction.nanny.ai/{name} {verb} by {}", approval.by);
    Ok(ExitCode::SUCCESS)
}

/// `rollback`.
pub async fn rollback(kube: KubeArgs, args: RollbackArgs) -> anyhow::Result<ExitCode> {
    if args.reason.trim().is_empty() {
        bail!("--reason must say why: it goes into the audit trail");
    }
    let actions = actions(&kube).await?;
    let action = actions.fetch(&args.name).await?;
    check_rollback(&action).map_err(|refusal| anyhow!("refused: {refusal}"))?;
    let patch = rollback_patch(&action, &args.reason)?;
    actions
        .api
        .patch(&args.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| write_error(e, &args.name))?;
    println!(
        "healingaction.nanny.ai/{} rollback requested; the coordinator records the outcome under status.rollback",
        args.name
    );
    Ok(ExitCode::SUCCESS)
}

/// The HealingActions of the one namespace the flags select.
async fn actions(kube: &KubeArgs) -> anyhow::Result<Actions> {
    let connection = kube.connect().await?;
    let namespace = connection.namespace()?.to_owned();
    Ok(Actions {
        api: Api::namespaced(connection.client.clone(), &namespace),
        namespace,
        user: connection.user,
    })
}

/// One namespace's HealingActions.
struct Actions {
    api: Api<HealingAction>,
    namespace: String,
    /// The kubeconfig user, the last fallback for `--by`.
    user: Option<String>,
}

impl Actions {
    async fn fetch(&self, name: &str) -> anyhow::Result<HealingAction> {
        self.api
            .get_opt(name)
            .await
            .map_err(|e| api_error(e, &format!("reading HealingAction {name}")))?
            .ok_or_else(|| not_found(name, &self.namespace))
    }
}

/// Maps a read error to a sentence.
fn api_error(error: kube::Error, what: &str) -> anyhow::Error {
    match &error {
        kube::Error::Api(status) if status.code == 404 => anyhow!(
            "{what}: the HealingAction CRD is not installed (apply deploy/crds/ first): {}",
            status.message
        ),
        kube::Error::Api(status) if status.code == 403 => {
            anyhow!("{what}: not allowed: {}", status.message)
        }
        _ => anyhow!("{what}: {error}"),
    }
}

/// Maps a write error to a sentence; a 409 means the precondition failed.
fn write_error(error: kube::Error, name: &str) -> anyhow::Error {
    match &error {
        kube::Error::Api(status) if status.code == 409 => anyhow!(
            "HealingAction {name} changed meanwhile (the coordinator or someone else updated it); nothing was written: check it with `describe` and retry"
        ),
        kube::Error::Api(status) if status.code == 404 => {
            anyhow!("HealingAction {name} was deleted meanwhile; nothing was written")
        }
        kube::Error::Api(status) if status.code == 403 => {
            anyhow!(
                "not allowed to patch HealingAction {name}: {}",
                status.message
            )
        }
        _ => anyhow!("patching HealingAction {name}: {error}"),
    }
}

fn phase_of(action: &HealingAction) -> Option<Phase> {
    action.status.as_ref().and_then(|s| s.phase)
}

/// Why an action cannot be approved or rejected now, if it cannot.
fn check_decidable(action: &HealingAction) -> Result<(), String> {
    let name = action.name_any();
    if let Some(approval) = &action.spec.approval {
        let verb = match approval.decision {
            HumanDecision::Approve => "approved",
            HumanDecision::Reject => "rejected",
        };
        return Err(format!(
            "HealingAction {name} was already {verb} by {} at {}; a decision is final",
            approval.by, approval.at
        ));
    }
    for annotation in [APPROVE_ANNOTATION, REJECT_ANNOTATION] {
        if action.annotations().contains_key(annotation) {
            return Err(format!(
                "HealingAction {name} already carries the annotation {annotation}; the coordinator is applying that decision"
            ));
        }
    }
    match phase_of(action) {
        Some(Phase::PendingApproval) => Ok(()),
        phase => Err(format!(
            "HealingAction {name} is in phase {}, not PendingApproval: only actions waiting for a human can be approved or rejected",
            phase.map_or("<none>", Phase::as_str)
        )),
    }
}

/// Why an action cannot be rolled back, if it cannot.
fn check_rollback(action: &HealingAction) -> Result<(), String> {
    let name = action.name_any();
    if let Some(reason) = action.annotations().get(ROLLBACK_ANNOTATION) {
        return Err(format!(
            "a rollback of HealingAction {name} was already requested (reason: {reason})"
        ));
    }
    let status = action.status.clone().unwrap_or_default();
    if let Some(rollback) = &status.rollback {
        return Err(format!(
            "HealingAction {name} was already rolled back (outcome: {})",
            rollback.outcome
        ));
    }
    match status.phase {
        Some(Phase::Succeeded | Phase::Failed) => {}
        phase => {
            return Err(format!(
                "HealingAction {name} is in phase {}: only Succeeded or Failed actions can be rolled back",
                phase.map_or("<none>", Phase::as_str)
            ));
        }
    }
    if status
        .result
        .as_ref()
        .is_none_or(|r| r.pre_image_ref.is_empty())
    {
        return Err(format!(
            "HealingAction {name} has no pre-image (status.result.preImageRef is empty): there is nothing to restore"
        ));
    }
    Ok(())
}

fn resource_version(action: &HealingAction) -> anyhow::Result<&str> {
    action
        .metadata
        .resource_version
        .as_deref()
        .context("the API server returned the HealingAction without a resourceVersion")
}

/// The merge patch that records a human decision, guarded by the
/// resourceVersion it was checked against.
fn approval_patch(
    action: &HealingAction,
    approval: &HumanApproval,
) -> anyhow::Result<serde_json::Value> {
    Ok(json!({
        "metadata": { "resourceVersion": resource_version(action)? },
        "spec": { "approval": approval },
    }))
}

/// The merge patch that asks for a rollback, guarded the same way.
fn rollback_patch(action: &HealingAction, reason: &str) -> anyhow::Result<serde_json::Value> {
    Ok(json!({
        "metadata": {
            "resourceVersion": resource_version(action)?,
            "annotations": { ROLLBACK_ANNOTATION: reason },
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tests::action;
    use nanny_crd::{Outcome, ResultRecord};

    fn approval() -> HumanApproval {
        HumanApproval {
            decision: HumanDecision::Approve,
            by: "alice".into(),
            at: "2026-11-23T12:00:00Z".into(),
            comment: "ok".into(),
        }
    }

    fn finished(phase: Phase, pre_image: &str) -> HealingAction {
        let mut action = action("ha-1", Some(phase));
        action.status.as_mut().unwrap().result = Some(ResultRecord {
            outcome: match phase {
                Phase::Succeeded => Outcome::Succeeded,
                Phase::Failed => Outcome::Failed,
                _ => Outcome::Refused,
            },
            dry_run_diff: String::new(),
            pre_image_ref: pre_image.into(),
            verification: String::new(),
            error: String::new(),
            finished_at: None,
        });
        action
    }

    #[test]
    fn phases_parse_case_insensitively() {
        assert_eq!(parse_phase("pendingapproval"), Ok(Phase::PendingApproval));
        assert_eq!(parse_phase("RolledBack"), Ok(Phase::RolledBack));
        let error = parse_phase("Done").unwrap_err();
        assert!(
            error.contains("Succeeded") && error.contains("Recorded"),
            "{error}"
        );
    }

    #[test]
    fn only_pending_undecided_actions_can_be_decided() {
        assert_eq!(
            check_decidable(&action("ha-1", Some(Phase::PendingApproval))),
            Ok(())
        );

        let error = check_decidable(&action("ha-1", Some(Phase::Succeeded))).unwrap_err();
        assert!(
            error.contains("phase Succeeded, not PendingApproval"),
            "{error}"
        );
        let error = check_decidable(&action("ha-1", None)).unwrap_err();
        assert!(error.contains("phase <none>"), "{error}");

        let mut decided = action("ha-1", Some(Phase::PendingApproval));
        decided.spec.approval = Some(approval());
        let error = check_decidable(&decided).unwrap_err();
        assert!(
            error.contains("already approved by alice at 2026-11-23T12:00:00Z"),
            "{error}"
        );

        let mut annotated = action("ha-1", Some(Phase::PendingApproval));
        annotated
            .annotations_mut()
            .insert(REJECT_ANNOTATION.into(), "no".into());
        let error = check_decidable(&annotated).unwrap_err();
        assert!(error.contains(REJECT_ANNOTATION), "{error}");
    }

    #[test]
    fn only_finished_actions_with_a_pre_image_can_be_rolled_back() {
        assert_eq!(
            check_rollback(&finished(Phase::Succeeded, "cm/pre/ha-1")),
            Ok(())
        );
        assert_eq!(
            check_rollback(&finished(Phase::Failed, "cm/pre/ha-1")),
            Ok(())
        );

        let error = check_rollback(&action("ha-1", Some(Phase::PendingApproval))).unwrap_err();
        assert!(error.contains("phase PendingApproval"), "{error}");
        let error = check_rollback(&finished(Phase::Denied, "cm/pre/ha-1")).unwrap_err();
        assert!(error.contains("only Succeeded or Failed"), "{error}");
        let error = check_rollback(&finished(Phase::Succeeded, "")).unwrap_err();
        assert!(error.contains("no pre-image"), "{error}");
        let error = check_rollback(&action("ha-1", Some(Phase::Succeeded))).unwrap_err();
        assert!(error.contains("no pre-image"), "{error}");

        let mut requested = finished(Phase::Succeeded, "cm/pre/ha-1");
        requested
            .annotations_mut()
            .insert(ROLLBACK_ANNOTATION.into(), "broke checkout".into());
        let error = check_rollback(&requested).unwrap_err();
        assert!(
            error.contains("already requested (reason: broke checkout)"),
            "{error}"
        );

        let mut done = finished(Phase::Succeeded, "cm/pre/ha-1");
        done.status.as_mut().unwrap().rollback = Some(ResultRecord {
            outcome: Outcome::Succeeded,
            dry_run_diff: String::new(),
            pre_image_ref: String::new(),
            verification: String::new(),
            error: String::new(),
            finished_at: None,
        });
        assert!(
            check_rollback(&done)
                .unwrap_err()
                .contains("already rolled back")
        );
    }

    #[test]
    fn patches_carry_the_resource_version_precondition() {
        let mut action = action("ha-1", Some(Phase::PendingApproval));
        assert!(approval_patch(&action, &approval()).is_err());
        action.metadata.resource_version = Some("77".into());
        assert_eq!(
            approval_patch(&action, &approval()).unwrap(),
            json!({
                "metadata": { "resourceVersion": "77" },
                "spec": { "approval": {
                    "decision": "Approve", "by": "alice",
                    "at": "2026-11-23T12:00:00Z", "comment": "ok",
                } },
            })
        );
        assert_eq!(
            rollback_patch(&action, "broke checkout").unwrap(),
            json!({ "metadata": {
                "resourceVersion": "77",
                "annotations": { "nanny.ai/rollback": "broke checkout" },
            } })
        );
    }

    #[test]
    fn conflicts_say_changed_meanwhile() {
        let status =
            kube::core::Status::failure("the object has been modified", "Conflict").with_code(409);
        let error = write_error(kube::Error::Api(status.boxed()), "ha-1");
        assert!(error.to_string().contains("changed meanwhile"), "{error}");
        assert!(error.to_string().contains("retry"), "{error}");
    }
}
