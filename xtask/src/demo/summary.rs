//! How each scenario ended, and the closing summary: one row per scenario, the model's calls, and where
//! to look next.

use std::{fmt::Write as _, path::Path, time::Duration};

use kube::{Api, ResourceExt as _, api::ListParams};
use nanny_crd::{HealingAction, Phase};

use super::{Args, NAMESPACE, timeline::nonempty};

#[derive(Debug)]
pub(super) enum Outcome {
    Healed(String),
    Refused(String),
    TimedOut(String),
    Failed(String),
}

impl Outcome {
    pub(super) fn ok(&self) -> bool {
        matches!(self, Self::Healed(_) | Self::Refused(_))
    }
}

#[derive(Debug)]
pub(super) struct Row {
    pub(super) scenario: &'static str,
    pub(super) outcome: Outcome,
    pub(super) took: Duration,
    pub(super) human: Duration,
}

/// A scenario's action that did not heal: a gate's denial is a correct
/// refusal (e.g. the storm guard, when the shared cluster has other sick
/// nodes); anything else is a failure.
pub(super) fn unhealed(action: &HealingAction) -> Outcome {
    let verdict = action.status.as_ref().and_then(|s| s.verdict.as_ref());
    match (action.phase(), verdict) {
        (Phase::Denied, Some(verdict)) if action.spec.approval.is_none() => {
            Outcome::Refused(format!(
                "{:?} denied: {} [{}]",
                action.spec.action.type_,
                verdict.reasons.join("; "),
                verdict.matched_rules.join(", ")
            ))
        }
        (other, _) => Outcome::Failed(describe(action, other)),
    }
}

pub(super) fn describe(action: &HealingAction, phase: Phase) -> String {
    let (verification, error) = action
        .status
        .as_ref()
        .and_then(|s| s.result.as_ref())
        .map(|r| (r.verification.as_str(), r.error.as_str()))
        .unwrap_or_default();
    format!(
        "HealingAction {} ended {phase}{}{}",
        action.name_any(),
        nonempty(": ", error),
        nonempty(" / ", verification)
    )
}

pub(super) fn summary(rows: &[Row], total: Duration) {
    println!("\n==> summary");
    println!(
        "    {:<16} {:<9} {:>13}  details",
        "scenario", "outcome", "time to heal"
    );
    for row in rows {
        let (outcome, detail) = match &row.outcome {
            Outcome::Healed(d) => ("healed", d),
            Outcome::Refused(d) => ("refused", d),
            Outcome::TimedOut(d) => ("TIMED OUT", d),
            Outcome::Failed(d) => ("FAILED", d),
        };
        let human = if row.human.is_zero() {
            String::new()
        } else {
            format!(" (incl. {:.0?} waiting for you)", row.human)
        };
        println!(
            "    {:<16} {outcome:<9} {:>12.1}s  {detail}{human}",
            row.scenario,
            row.took.as_secs_f64()
        );
    }
    let ok = rows.iter().filter(|r| r.outcome.ok()).count();
    println!(
        "    {ok}/{} healed or correctly refused; demo time {:.0?}",
        rows.len(),
        Duration::from_secs(total.as_secs())
    );
}

/// One line on what the model did, from the analyzer's metrics.
pub(super) async fn model_calls(metrics: std::net::SocketAddr) -> String {
    let Ok((200, text)) = nanny_test_util::http::get(metrics, "/metrics").await else {
        return "    AI: the analyzer's metrics did not answer".to_owned();
    };
    // `nanny_analyzer_model_calls_total{model="…",outcome="ok"} 3`
    let calls: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("nanny_analyzer_model_calls_total{"))
        .filter_map(|l| {
            let (labels, count) = l.split_once("} ")?;
            let outcome = labels.split("outcome=\"").nth(1)?.split('"').next()?;
            Some(format!("{outcome} {count}"))
        })
        .collect();
    let count = |outcome: &str| -> f64 {
        calls
            .iter()
            .filter_map(|c| c.split_once(' '))
            .filter(|(o, _)| *o == outcome)
            .filter_map(|(_, n)| n.parse::<f64>().ok())
            .sum()
    };
    // Questions that got an answer of their own, over those that did not
    // (a cache hit or a joined call shares another's; a superseded one
    // never ran: newer evidence took its place).
    let ok = count("ok");
    let failed: f64 = calls
        .iter()
        .filter_map(|c| c.split_once(' '))
        .filter(|(o, _)| !matches!(*o, "ok" | "cache_hit" | "joined" | "superseded"))
        .filter_map(|(_, n)| n.parse::<f64>().ok())
        .sum();
    let share = if ok + failed > 0.0 {
        format!(
            "; {:.0} % of model calls answered ok",
            100.0 * ok / (ok + failed)
        )
    } else {
        String::new()
    };
    format!(
        "    AI: SmolLM2-135M via llama.cpp, model calls: {}{share}. Rules answer alone whenever the model is slow, \
         wrong or off target; a model's suggestion can never raise an approval level.",
        if calls.is_empty() {
            "none".to_owned()
        } else {
            calls.join(", ")
        }
    )
}

/// The model's explanations on the demo's actions, marked as model output.
/// They arrive after the rules' actions: waits up to `grace` for every
/// action to have one.
pub(super) async fn explanations(actions: &Api<HealingAction>, grace: Duration) -> String {
    let deadline = std::time::Instant::now() + grace;
    let list = loop {
        let Ok(list) = actions.list(&ListParams::default()).await else {
            return "    AI explanations: the HealingActions could not be listed".to_owned();
        };
        let all = list
            .items
            .iter()
            .all(|a| a.status.as_ref().is_some_and(|s| s.explanation.is_some()));
        if all || std::time::Instant::now() >= deadline {
            break list.items;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut lines = String::new();
    let mut explained = 0;
    for action in &list {
        let Some(e) = action.status.as_ref().and_then(|s| s.explanation.as_ref()) else {
            continue;
        };
        explained += 1;
        let _ = writeln!(
            lines,
            "      {:?} on {} {}: {:?} (agreement {}, cites {})",
            action.spec.action.type_,
            action.spec.target.kind,
            action.spec.target.name,
            e.hypothesis,
            e.agreement,
            e.cited_evidence.len()
        );
    }
    format!(
        "    AI explanations on {explained}/{} actions (model output, untrusted; `nannyctl describe` shows the evidence cited):\n{lines}",
        list.len()
    )
}

pub(super) fn where_next(
    args: &Args,
    metrics: &[(String, String)],
    prometheus: &str,
    audit: &Path,
) {
    println!("\n==> where to look next");
    if !args.keep && (args.kubeconfig.is_none() || args.inject) {
        println!("    (run `cargo xtask demo --keep` to leave Nanny running and explore)");
    }
    println!("    kubectl get healingactions -n {NAMESPACE}");
    println!("    nannyctl list -n {NAMESPACE}; nannyctl describe NAME -n {NAMESPACE}");
    for (name, url) in metrics {
        println!("    {name:<18} {url}");
    }
    println!("    Prometheus         {prometheus}");
    println!("    gate audit log     {}", audit.display());
    println!(
        "    dashboard          helm/nanny/files/dashboard.json (the chart ships it as a Grafana ConfigMap: helm/nanny/templates/dashboard.yaml)"
    );
}
