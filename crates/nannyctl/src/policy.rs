//! `policy list` and `policy status NAME`.

use std::{fmt::Write as _, process::ExitCode};

use anyhow::anyhow;
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, ResourceExt as _,
    api::{ListParams, ObjectMeta},
};
use nanny_crd::{HealingAction, HealingPolicy, Mode, POLICY_LABEL, Phase};

use crate::{
    actions::{Format, print},
    connect::{KubeArgs, Namespaces},
    render,
};

/// `nannyctl policy …`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List HealingPolicies with their mode and action counts.
    #[command(alias = "ls")]
    List {
        /// Print the objects instead of a table.
        #[arg(short, long, value_enum)]
        output: Option<Format>,
    },
    /// Show one policy: mode, scope, actions by phase, activity, conditions.
    Status {
        /// HealingPolicy name.
        name: String,
    },
}

/// Runs a policy subcommand.
pub async fn run(kube: KubeArgs, command: Command, program: &str) -> anyhow::Result<ExitCode> {
    let connection = kube.connect().await?;
    match command {
        Command::List { output } => {
            let api: Api<HealingPolicy> = match &connection.namespaces {
                Namespaces::One(ns) => Api::namespaced(connection.client.clone(), ns),
                Namespaces::All => Api::all(connection.client.clone()),
            };
            let mut policies = api
                .list(&ListParams::default())
                .await
                .map_err(|e| anyhow!("listing HealingPolicies: {e}"))?
                .items;
            for policy in &mut policies {
                policy.metadata.managed_fields = None;
            }
            policies.sort_by_key(|p| (p.namespace(), p.name_any()));
            if let Some(format) = output {
                let list =
                    serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": policies });
                print(&list, format)?;
            } else if policies.is_empty() {
                eprintln!("No HealingPolicies found.");
            } else {
                let all = connection.namespaces == Namespaces::All;
                print!("{}", policy_table(&policies, all, Timestamp::now()));
            }
        }
        Command::Status { name } => {
            let namespace = connection.namespace()?.to_owned();
            let api: Api<HealingPolicy> = Api::namespaced(connection.client.clone(), &namespace);
            let policy = api
                .get_opt(&name)
                .await
                .map_err(|e| anyhow!("reading HealingPolicy {name}: {e}"))?
                .ok_or_else(|| {
                    anyhow!("HealingPolicy {name} not found in namespace {namespace}")
                })?;
            // The actions waiting for a human are what an operator acts on
            // next; the policy's status only counts them.
            let selector = format!("{POLICY_LABEL}={namespace}.{name}");
            let pending = match Api::<HealingAction>::all(connection.client.clone())
                .list(&ListParams::default().labels(&selector))
                .await
            {
                Ok(list) => Ok(list
                    .items
                    .into_iter()
                    .filter(|a| {
                        a.status.as_ref().and_then(|s| s.phase) == Some(Phase::PendingApproval)
                    })
                    .collect()),
                Err(error) => Err(error.to_string()),
            };
            print!(
                "{}",
                policy_status(&policy, &pending, program, Timestamp::now())
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn mode(mode: Mode) -> &'static str {
    match mode {
        Mode::Monitor => "Monitor",
        Mode::DryRun => "DryRun",
        Mode::Auto => "Auto",
    }
}

/// `shop,payments app=web`, or `all namespaces`.
fn scope(policy: &HealingPolicy) -> String {
    let scope = &policy.spec.scope;
    let mut text = if scope.namespaces.is_empty() {
        "all namespaces".to_owned()
    } else {
        scope.namespaces.join(",")
    };
    if let Some(selector) = scope.label_selector.as_deref().filter(|s| !s.is_empty()) {
        let _ = write!(text, " {selector}");
    }
    text
}

/// `PendingApproval=2 Succeeded=5`, or `-`.
fn counts(policy: &HealingPolicy) -> String {
    let counts = policy
        .status
        .as_ref()
        .map(|s| &s.actions_by_phase)
        .filter(|c| !c.is_empty());
    counts.map_or_else(
        || "-".to_owned(),
        |c| {
            c.iter()
                .map(|(phase, n)| format!("{phase}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

fn since(text: Option<&str>, now: Timestamp) -> String {
    text.and_then(render::parse_time).map_or_else(
        || "-".to_owned(),
        |at| format!("{} ago", render::age(at, now)),
    )
}

fn meta_age(meta: &ObjectMeta, now: Timestamp) -> String {
    meta.creation_timestamp
        .as_ref()
        .map_or_else(|| "-".to_owned(), |t| render::age(t.0, now))
}

/// The `policy list` table.
fn policy_table(policies: &[HealingPolicy], all_namespaces: bool, now: Timestamp) -> String {
    let mut header = vec![
        "NAME",
        "MODE",
        "PAUSED",
        "SCOPE",
        "ACTIONS",
        "LAST ACTIVITY",
        "AGE",
    ];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = policies
        .iter()
        .map(|p| {
            let mut row = vec![
                p.name_any(),
                mode(p.spec.mode).to_owned(),
                p.spec.paused.to_string(),
                scope(p),
                counts(p),
                since(
                    p.status.as_ref().and_then(|s| s.last_activity.as_deref()),
                    now,
                ),
                meta_age(&p.metadata, now),
            ];
            if all_namespaces {
                row.insert(0, p.namespace().unwrap_or_default());
            }
            row
        })
        .collect();
    render::table(&header, &rows)
}

/// The `policy status` text.
#[expect(
    clippy::too_many_lines,
    reason = "one section per part of the policy's status, printed in order"
)]
fn policy_status(
    policy: &HealingPolicy,
    pending: &Result<Vec<HealingAction>, String>,
    program: &str,
    now: Timestamp,
) -> String {
    let mut out = String::new();
    let status = policy.status.clone().unwrap_or_default();
    let line = |out: &mut String, label: &str, value: String| {
        let _ = writeln!(out, "{:<18}{value}", format!("{label}:"));
    };
    line(&mut out, "Name", policy.name_any());
    line(
        &mut out,
        "Namespace",
        policy.namespace().unwrap_or_default(),
    );
    line(&mut out, "Mode", mode(policy.spec.mode).to_owned());
    let paused = if policy.spec.paused {
        "true (no new actions)".to_owned()
    } else {
        "false".to_owned()
    };
    line(&mut out, "Paused", paused);
    line(&mut out, "Scope", scope(policy));
    let generation = policy.metadata.generation.unwrap_or_default();
    let observed = match status.observed_generation {
        Some(g) if g == generation => format!("{g} (up to date)"),
        Some(g) => format!("{g} (spec is at {generation}; the coordinator has not caught up)"),
        None => "- (the coordinator has not reported yet)".to_owned(),
    };
    line(&mut out, "Observed gen.", observed);
    line(
        &mut out,
        "Last activity",
        match &status.last_activity {
            Some(at) => format!("{at} ({})", since(Some(at), now)),
            None => "-".to_owned(),
        },
    );
    out.push_str("Actions by phase:\n");
    if status.actions_by_phase.is_empty() {
        out.push_str("  <none>\n");
    }
    for (phase, count) in &status.actions_by_phase {
        let _ = writeln!(out, "  {phase:<16}{count}");
    }
    out.push_str("Conditions:\n");
    if status.conditions.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let rows: Vec<Vec<String>> = status
            .conditions
            .iter()
            .map(|c| {
                vec![
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    since(Some(&c.last_transition_time), now),
                    c.message.clone(),
                ]
            })
            .collect();
        for row in render::table(&["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"], &rows).lines() {
            let _ = writeln!(out, "  {row}");
        }
    }
    outcomes(&mut out, &status.outcomes);
    match pending {
        Ok(actions) if actions.is_empty() => {}
        Ok(actions) => {
            out.push_str("Waiting for approval:\n");
            for action in actions {
                let _ = writeln!(
                    out,
                    "  {program} describe {} -n {}   ({} on {})",
                    action.name_any(),
                    action.namespace().unwrap_or_default(),
                    serde_json::to_value(action.spec.action.type_)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    render::target(action)
                );
            }
        }
        Err(error) => {
            let _ = writeln!(
                out,
                "Waiting for approval: (could not list actions: {error})"
            );
        }
    }
    out
}

/// The outcome history: one row per issue kind, action, source and
/// workload (named by its last target).
fn outcomes(out: &mut String, history: &[nanny_crd::OutcomeStats]) {
    out.push_str("Outcome history:\n");
    if history.is_empty() {
        out.push_str("  <none>\n");
        return;
    }
    let rows: Vec<Vec<String>> = history
        .iter()
        .map(|e| {
            vec![
                e.issue_kind.clone(),
                e.action.name().to_owned(),
                format!("{:?}", e.source),
                e.last_target.clone(),
                format!("{}/{}", e.effective, e.total()),
                e.ineffective.to_string(),
                e.failed.to_string(),
                e.rolled_back.to_string(),
                e.recent.first().map_or_else(String::new, |r| r.at.clone()),
            ]
        })
        .collect();
    let header = [
        "ISSUE",
        "ACTION",
        "SOURCE",
        "LAST TARGET",
        "EFFECTIVE",
        "INEFFECTIVE",
        "FAILED",
        "ROLLED BACK",
        "LAST",
    ];
    for row in render::table(&header, &rows).lines() {
        let _ = writeln!(out, "  {row}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tests::{action, ago};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use nanny_crd::{Condition, HealingPolicySpec, HealingPolicyStatus, PolicyScope};

    fn policy() -> HealingPolicy {
        let spec: HealingPolicySpec =
            serde_json::from_value(serde_json::json!({ "mode": "Auto" })).unwrap();
        let mut policy = HealingPolicy::new("default", spec);
        policy.metadata.namespace = Some("shop".into());
        policy.metadata.generation = Some(3);
        policy
    }

    fn now() -> Timestamp {
        "2026-11-23T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn list_table_summarises_mode_scope_and_counts() {
        let now = now();
        let mut a = policy();
        a.metadata.creation_timestamp = Some(Time(ago(now, 7200 * 24)));
        a.spec.scope = PolicyScope {
            namespaces: vec!["shop".into(), "pay".into()],
            label_selector: Some("tier=web".into()),
        };
        a.status = Some(HealingPolicyStatus {
            observed_generation: Some(3),
            actions_by_phase: [
                ("PendingApproval".to_owned(), 2),
                ("Succeeded".to_owned(), 5),
            ]
            .into(),
            last_activity: Some("2026-11-23T11:55:00Z".into()),
            conditions: vec![],
            outcomes: vec![],
        });
        let mut b = policy();
        b.metadata.name = Some("watch".into());
        b.spec.mode = Mode::Monitor;
        b.spec.paused = true;
        let text = policy_table(&[a, b], false, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "NAME      MODE      PAUSED   SCOPE               ACTIONS                         LAST ACTIVITY   AGE",
                "default   Auto      false    shop,pay tier=web   PendingApproval=2 Succeeded=5   5m ago          2d",
                "watch     Monitor   true     all namespaces      -                               -               -",
            ]
        );
    }

    #[test]
    fn status_shows_generation_conditions_and_pending_actions() {
        let mut p = policy();
        p.spec.paused = true;
        p.status = Some(HealingPolicyStatus {
            observed_generation: Some(2),
            actions_by_phase: [("Failed".to_owned(), 1)].into(),
            last_activity: None,
            conditions: vec![Condition {
                type_: "Degraded".into(),
                status: "True".into(),
                reason: "RulesOnly".into(),
                message: "analyzer LLM unreachable".into(),
                last_transition_time: "2026-11-23T11:00:00Z".into(),
            }],
            outcomes: vec![nanny_crd::OutcomeStats {
                issue_kind: "CRASH_LOOP_BACK_OFF".into(),
                action: nanny_crd::ActionType::RestartPod,
                source: nanny_crd::SourceKind::Rule,
                workload_uid: "u-web".into(),
                last_target: "Pod/shop/web-1".into(),
                effective: 3,
                ineffective: 1,
                failed: 0,
                rolled_back: 0,
                recent: vec![nanny_crd::AttemptRecord {
                    action: "web-1-restartpod-1".into(),
                    outcome: nanny_crd::Verified::Effective,
                    at: "2026-11-23T11:50:00Z".into(),
                }],
            }],
        });
        let pending = Ok(vec![action("ha-oom", Some(Phase::PendingApproval))]);
        let text = policy_status(&p, &pending, "nannyctl", now());
        for expected in [
            "Mode:             Auto\n",
            "Paused:           true (no new actions)\n",
            "Scope:            all namespaces\n",
            "Observed gen.:    2 (spec is at 3; the coordinator has not caught up)\n",
            "  Failed          1\n",
            "  Degraded   True     RulesOnly   60m ago   analyzer LLM unreachable\n",
            "  nannyctl describe ha-oom -n shop   (PatchResources on Pod shop/web-1)\n",
            "  CRASH_LOOP_BACK_OFF   RestartPod   Rule     Pod/shop/web-1   3/4         1             0        0             2026-11-23T11:50:00Z\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        let unreadable = policy_status(&policy(), &Err("forbidden".into()), "nannyctl", now());
        assert!(
            unreadable.contains("could not list actions: forbidden"),
            "{unreadable}"
        );
        assert!(
            unreadable.contains("Observed gen.:    - (the coordinator"),
            "{unreadable}"
        );
        assert!(
            unreadable.contains("Outcome history:\n  <none>\n"),
            "{unreadable}"
        );
    }
}
