//! `cargo xtask eval`: how well the rules, a model and both together choose
//! remediation actions, scored deterministically against a labelled corpus
//! (`eval/cases/*.json`, see `eval/README.md`).
//!
//! The real analyzer and safety-gate binaries run on loopback with mutual
//! TLS. Each case's snapshot goes to the analyzer (`AnalyzeSnapshot`) under
//! the case's policy; its top proposal is scored (action and target, or an
//! accepted alternative, or a report or nothing where nothing is expected)
//! and reviewed by the gate, whose decision is compared with the class the
//! case expects. Model proposals the gate denies count as unsafe. A fresh
//! gate serves each mode, so one mode's rate limits never touch another's.
//!
//! Modes: `rules` (rules only), `model` (every rule switched off for the
//! call, so the model is asked for proposals) and `combined` (as a policy
//! with AI on runs). Under `--rules-only` only the first runs. The rules
//! must get every rule-covered case right (and the gate decide as
//! expected), or the eval fails.

mod case;
mod score;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail};
use k8s_openapi::jiff;
use nanny_proto::v1::{
    AnalyzeSnapshotRequest, ClusterSnapshot, Decision, Recommendation, ReviewContext,
    ReviewRequest, RuleOverrides, action::Kind, analyzer_client::AnalyzerClient,
    safety_gate_client::SafetyGateClient,
};
use nanny_test_util::{
    http::counts,
    llm::LlamaServer,
    process::{ServiceProcess, cargo_bin},
};
use score::{CaseResult, Mode, ModeCard};

use crate::cmd;

/// The model server an eval asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    /// Ollama's API (`/api/chat`).
    Ollama,
    /// Any OpenAI-compatible API (`/v1/chat/completions`): llama.cpp, vLLM, ...
    Openai,
}

/// `cargo xtask eval` options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The rules alone: no model is asked.
    #[arg(long)]
    rules_only: bool,
    /// The model server's API.
    #[arg(long, value_enum, default_value = "openai")]
    provider: Provider,
    /// The model server's base URL. Default: the project's own server with
    /// SmolLM2-135M, started for the eval (llama.cpp for `openai`, Ollama
    /// for `ollama`).
    #[arg(long)]
    endpoint: Option<String>,
    /// The model's name on that server. Default: the project's SmolLM2-135M
    /// under the name its server gives it.
    #[arg(long)]
    model: Option<String>,
    /// The longest one model call may run, seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u32,
    /// Score only N cases, spread evenly over the corpus by name.
    #[arg(long, value_name = "N")]
    subset: Option<usize>,
    /// Score only the cases whose name contains this.
    #[arg(long, value_name = "TEXT")]
    only: Option<String>,
    /// The corpus.
    #[arg(long, default_value = "eval/cases")]
    cases: PathBuf,
    /// The policy every case starts from (a HealingPolicy spec, JSON).
    #[arg(long, default_value = "eval/policy.json")]
    policy: PathBuf,
    /// Where the scorecard is written (scorecard.json, scorecard.md).
    #[arg(long, default_value = "target/eval")]
    out: PathBuf,
}

/// Cases the local model is scored on in `cargo xtask test`.
const CI_MODEL_CASES: usize = 4;

/// What `cargo xtask test` runs: the whole corpus rules-only (every
/// rule-covered case must come out right), then the local model on a few
/// cases, which must run and write a scorecard (no threshold on a
/// 135M-parameter model's quality).
///
/// # Errors
/// As [`run`].
pub fn ci() -> anyhow::Result<()> {
    let rules = Args {
        rules_only: true,
        provider: Provider::Openai,
        endpoint: None,
        model: None,
        timeout_secs: 60,
        subset: None,
        only: None,
        cases: PathBuf::from("eval/cases"),
        policy: PathBuf::from("eval/policy.json"),
        out: PathBuf::from("target/eval/rules"),
    };
    run(&rules)?;
    run(&Args {
        rules_only: false,
        subset: Some(CI_MODEL_CASES),
        out: PathBuf::from("target/eval/model"),
        ..rules
    })
}

/// The cases picked by `--only` and `--subset`.
fn pick(cases: Vec<case::Case>, args: &Args) -> Vec<case::Case> {
    let cases: Vec<case::Case> = cases
        .into_iter()
        .filter(|c| {
            args.only
                .as_ref()
                .is_none_or(|o| c.name.contains(o.as_str()))
        })
        .collect();
    match args.subset {
        Some(n) if n < cases.len() => {
            let step = cases.len() as f64 / n as f64;
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "an index into the corpus"
            )]
            (0..n)
                .map(|i| cases[(i as f64 * step) as usize].clone())
                .collect()
        }
        _ => cases,
    }
}

/// Runs the eval.
///
/// # Errors
/// A case file that does not load (by path and field), a service that does
/// not start, or a rule-covered case the rules get wrong.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let cases = pick(case::load_all(&args.cases, &args.policy)?, args);
    anyhow::ensure!(!cases.is_empty(), "no case matches --only/--subset");
    // The workspace's binaries, as `cargo xtask test` builds them (the same
    // features: building two packages alone would rebuild their
    // dependencies differently, twice).
    cmd::step(
        "build binaries",
        &["cargo", "build", "--workspace", "--bins", "--locked"],
    )?;
    if !args.rules_only && args.endpoint.is_none() {
        match args.provider {
            Provider::Openai => nanny_test_util::llm::install()?,
            Provider::Ollama => nanny_test_util::ollama::install()?,
        }
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let (cards, model) = runtime.block_on(evaluate(&cases, args))?;
    println!("\n{}", score::table(&cards));
    std::fs::create_dir_all(&args.out)?;
    let json = args.out.join("scorecard.json");
    std::fs::write(
        &json,
        serde_json::to_string_pretty(&score::to_json(&cards, &model))?,
    )?;
    let markdown = args.out.join("scorecard.md");
    std::fs::write(&markdown, score::to_markdown(&cards, &model))?;
    println!("wrote {} and {}", json.display(), markdown.display());
    let missed: Vec<String> = cards
        .iter()
        .filter(|c| c.mode == Mode::Rules)
        .flat_map(|c| &c.results)
        .filter(|r| r.rule_covered && !(r.correct && r.decision_right))
        .map(|r| {
            let got = r.proposal.as_ref().map_or_else(
                || "nothing".to_owned(),
                |p| format!("{} {}/{}", p.action, p.target.namespace, p.target.name),
            );
            format!("{} (got {got}, gate {})", r.case, r.decision)
        })
        .collect();
    if !missed.is_empty() {
        bail!(
            "the rules missed {} rule-covered case(s): {}",
            missed.len(),
            missed.join("; ")
        );
    }
    Ok(())
}

/// Starts the services (and the local model unless `--endpoint`), runs
/// every mode and returns each mode's figures and the model's name.
async fn evaluate(cases: &[case::Case], args: &Args) -> anyhow::Result<(Vec<ModeCard>, String)> {
    // The project's model server, when no endpoint is given; stopped on drop.
    let mut llama = None;
    let mut ollama = None;
    let mut env: Vec<(&str, String)> = vec![("NANNY_LLM__ENABLED", "false".to_owned())];
    let model = if args.rules_only {
        "none (rules only)".to_owned()
    } else {
        let (provider, own_model) = match args.provider {
            Provider::Ollama => ("ollama", nanny_test_util::ollama::MODEL),
            Provider::Openai => ("openai", "SmolLM2-135M-Instruct"),
        };
        let endpoint = match (&args.endpoint, args.provider) {
            (Some(url), _) => url.clone(),
            (None, Provider::Openai) => {
                println!("==> starting the local LLM server (llama.cpp, SmolLM2-135M-Instruct)");
                let server = LlamaServer::start(&nanny_test_util::llm::model_path()).await?;
                let url = server.url.clone();
                llama = Some(server);
                url
            }
            (None, Provider::Ollama) => {
                println!("==> starting the local Ollama server ({own_model})");
                let server = nanny_test_util::ollama::OllamaServer::start().await?;
                let url = server.url.clone();
                ollama = Some(server);
                url
            }
        };
        let model_name = args.model.clone().unwrap_or_else(|| own_model.to_owned());
        env = vec![
            ("NANNY_LLM__ENABLED", "true".to_owned()),
            ("NANNY_LLM__PROVIDER", provider.to_owned()),
            ("NANNY_LLM__ENDPOINT", endpoint.clone()),
            ("NANNY_LLM__MODEL", model_name.clone()),
            ("NANNY_LLM__TIMEOUT_SECS", args.timeout_secs.to_string()),
        ];
        format!("{provider}/{model_name} at {endpoint}")
    };
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let analyzer = ServiceProcess::spawn(&cargo_bin("nanny-analyzer"), &env).await?;
    analyzer
        .wait_serving("nanny.v1.Analyzer", Duration::from_secs(30))
        .await?;
    let modes: &[Mode] = if args.rules_only {
        &[Mode::Rules]
    } else {
        &[Mode::Rules, Mode::Model, Mode::Combined]
    };
    let mut cards = Vec::new();
    for mode in modes {
        println!("==> eval: {} cases, {}", cases.len(), mode.as_str());
        cards.push(run_mode(*mode, cases, &analyzer).await?);
    }
    drop((llama, ollama));
    Ok((cards, model))
}

/// Model calls by outcome and tokens in and out, from the analyzer's
/// metrics.
async fn model_counters(
    analyzer: &ServiceProcess,
) -> anyhow::Result<(BTreeMap<String, f64>, (f64, f64))> {
    let addr = analyzer.http_addr;
    let calls = counts(addr, "nanny_analyzer_model_calls_total", "outcome").await?;
    let tokens = counts(addr, "nanny_analyzer_model_tokens_total", "direction").await?;
    let direction = |d: &str| tokens.get(d).copied().unwrap_or(0.0);
    Ok((calls, (direction("in"), direction("out"))))
}

/// Every case under `mode`, against a fresh gate.
async fn run_mode(
    mode: Mode,
    cases: &[case::Case],
    analyzer: &ServiceProcess,
) -> anyhow::Result<ModeCard> {
    let gate = ServiceProcess::spawn(&cargo_bin("nanny-safety-gate"), &[]).await?;
    gate.wait_serving("nanny.v1.SafetyGate", Duration::from_secs(30))
        .await?;
    let mut analyzer_client = AnalyzerClient::new(analyzer.channel(nanny_common::tls::COORDINATOR))
        .max_decoding_message_size(64 << 20);
    let mut gate_client = SafetyGateClient::new(gate.channel(nanny_common::tls::COORDINATOR));
    let (calls_before, tokens_before) = model_counters(analyzer).await?;
    let now = jiff::Timestamp::now();
    let mut results = Vec::new();
    for case in cases {
        let result = run_case(mode, case, now, &mut analyzer_client, &mut gate_client)
            .await
            .with_context(|| format!("{} ({})", case.path.display(), mode.as_str()))?;
        println!(
            "    {:<44} {:<8} {}",
            case.name,
            if result.correct { "right" } else { "WRONG" },
            result.proposal.as_ref().map_or_else(
                || "nothing".to_owned(),
                |p| format!("{} {} → {}", p.action, p.target.name, result.decision)
            )
        );
        results.push(result);
    }
    let (calls_after, tokens_after) = model_counters(analyzer).await?;
    let calls = calls_after
        .iter()
        .map(|(k, v)| (k.clone(), v - calls_before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect();
    gate.kill().await?;
    Ok(ModeCard {
        mode,
        results,
        calls,
        tokens: (
            tokens_after.0 - tokens_before.0,
            tokens_after.1 - tokens_before.1,
        ),
    })
}

/// The gate's decision class, as cases spell it.
fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Approved => "Approved",
        Decision::NeedsApproval => "NeedsApproval",
        Decision::DryRunOnly => "DryRunOnly",
        Decision::Denied | Decision::Unspecified => "Denied",
    }
}

/// One case under one mode: analyze, pick the top proposal, review every
/// model proposal and the top one with the gate.
async fn run_case(
    mode: Mode,
    case: &case::Case,
    now: jiff::Timestamp,
    analyzer: &mut AnalyzerClient<tonic::transport::Channel>,
    gate: &mut SafetyGateClient<tonic::transport::Channel>,
) -> anyhow::Result<CaseResult> {
    let snapshot = case.snapshot_at(now, &format!("{}-{}", mode.as_str(), case.name))?;
    let mut settings = nanny_crd::proto::analysis_settings(&case.spec);
    if mode == Mode::Model {
        let rules = settings.rules.get_or_insert_with(RuleOverrides::default);
        rules.disabled = nanny_analyzer::catalog::RULES
            .iter()
            .map(|r| r.id.to_owned())
            .collect();
    }
    let policy_ref = format!("eval/{}", case.name);
    let started = Instant::now();
    let response = analyzer
        .analyze_snapshot(AnalyzeSnapshotRequest {
            snapshot: Some(snapshot.clone()),
            policy_ref: policy_ref.clone(),
            rules_only: mode == Mode::Rules,
            settings: Some(settings),
            ..AnalyzeSnapshotRequest::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("AnalyzeSnapshot: {}", s.message()))?
        .into_inner();
    let latency = started.elapsed();
    let proposal = score::top(&response.recommendations);
    let correct = score::correct(case, proposal.as_ref());
    let mentions = score::mentions(case, proposal.as_ref());
    let reviewed = review_all(
        gate,
        case,
        &snapshot,
        &policy_ref,
        &response.recommendations,
        proposal.as_ref(),
    )
    .await?;
    let decision = reviewed.decision;
    let model_recommendations = reviewed.model;
    let unsafe_proposals = reviewed.denied;
    // Where nothing is expected a report is right whatever the gate says.
    // A model's proposal needs a human where the rule's would run alone,
    // unless the policy lets the model's proposals be approved automatically.
    let from_model = proposal.as_ref().is_some_and(|p| p.model);
    let expected = match case.expected.decision.as_str() {
        "Approved" if from_model && !case.spec.ai.allow_auto_approve => "NeedsApproval",
        other => other,
    };
    let decision_right = correct && (case.expected.action == "None" || decision == expected);
    Ok(CaseResult {
        case: case.name.clone(),
        category: case.category.clone(),
        description: case.description.clone(),
        rule_covered: case.rule_covered,
        proposal,
        correct,
        mentions,
        decision,
        decision_right,
        model_recommendations,
        unsafe_proposals,
        model_outcomes: response.incident_outcomes.into_values().collect(),
        latency,
    })
}

/// The facts the coordinator sends with a review: from the case's
/// snapshot, and for a drain every pod on the node (the case's snapshot is
/// the whole picture).
fn context(snapshot: &ClusterSnapshot, recommendation: &Recommendation) -> ReviewContext {
    let target = recommendation.target.clone().unwrap_or_default();
    let mut context = nanny_coordinator::context::review_context(snapshot, &target);
    if matches!(
        recommendation.action.as_ref().and_then(|a| a.kind.as_ref()),
        Some(Kind::DrainNode(_))
    ) {
        context.node_pods = Some(nanny_coordinator::context::node_pods(
            snapshot,
            &target.name,
        ));
    }
    context
}

/// The gate's word on one analysis: its decision on the top proposal, and
/// how many model proposals it reviewed and denied.
struct Reviewed {
    decision: String,
    model: usize,
    denied: usize,
}

/// Reviews the top proposal and every model proposal of an analysis, as
/// the coordinator would send them: the case's policy and the facts from
/// its snapshot.
async fn review_all(
    gate: &mut SafetyGateClient<tonic::transport::Channel>,
    case: &case::Case,
    snapshot: &ClusterSnapshot,
    policy_ref: &str,
    recommendations: &[Recommendation],
    proposal: Option<&score::Proposal>,
) -> anyhow::Result<Reviewed> {
    let gate_policy = nanny_crd::proto::gate_policy(&case.spec);
    let mut review = async |recommendation: &Recommendation| {
        let verdict = gate
            .review(ReviewRequest {
                recommendation: Some(recommendation.clone()),
                policy_ref: policy_ref.to_owned(),
                snapshot_taken_at: Some(SystemTime::now().into()),
                policy: Some(gate_policy.clone()),
                context: Some(context(snapshot, recommendation)),
                human_approval: None,
                policy_generation: 1,
            })
            .await
            .map_err(|s| anyhow::anyhow!("Review: {}", s.message()))?
            .into_inner();
        anyhow::Ok(verdict.decision())
    };
    let mut decision = "None".to_owned();
    let mut model_recommendations = 0;
    let mut unsafe_proposals = 0;
    for recommendation in recommendations {
        let from_model = score::from_model(recommendation);
        let is_top = proposal.is_some_and(|p| {
            recommendation.target.as_ref() == Some(&p.target)
                && recommendation
                    .action
                    .as_ref()
                    .and_then(|a| a.kind.as_ref())
                    .is_some_and(|k| nanny_proto::vocabulary::of(k).name == p.action)
        });
        if !from_model && !is_top {
            continue;
        }
        let verdict = review(recommendation).await?;
        // A report changes nothing: the gate refuses to "execute" it
        // (report-only), which is no unsafe proposal.
        let report = recommendation
            .action
            .as_ref()
            .is_some_and(|a| matches!(a.kind, Some(Kind::ReportOnly(_))));
        if from_model && !report {
            model_recommendations += 1;
            if verdict == Decision::Denied {
                unsafe_proposals += 1;
            }
        }
        if is_top && decision == "None" {
            decision = decision_name(verdict).to_owned();
        }
    }
    Ok(Reviewed {
        decision,
        model: model_recommendations,
        denied: unsafe_proposals,
    })
}
