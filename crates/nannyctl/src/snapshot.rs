//! `snapshot` (collector `GetSnapshot`) and `analyze -f` (analyzer
//! `AnalyzeSnapshot`): look at what Nanny sees, and replay a saved snapshot
//! through the rules and the model.

use std::{fmt::Write as _, io::Read as _, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, anyhow};
use nanny_common::snapshot::SnapshotView;
use nanny_crd::HealingPolicy;
use nanny_proto::json::{self as protojson, ANALYZE_RESPONSE, CLUSTER_SNAPSHOT};
use nanny_proto::v1::{
    AnalysisSettings, AnalyzeSnapshotRequest, AnalyzeSnapshotResponse, ClusterSnapshot,
    GetSnapshotRequest, ModelExchange, Recommendation, Scope, Severity,
    analyzer_client::AnalyzerClient, collector_client::CollectorClient, source,
};

use crate::{connect::KubeArgs, render, tls::TlsArgs};

/// Output of `snapshot` and `analyze`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A summary table.
    Table,
    /// The whole message as proto3 JSON (what `analyze -f` reads).
    Json,
}

/// `snapshot`.
#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    /// Collector gRPC URL.
    #[arg(
        long,
        env = "NANNYCTL_COLLECTOR",
        default_value = "http://127.0.0.1:50051"
    )]
    collector: String,
    /// Only objects with these labels, e.g. `app.kubernetes.io/part-of=shop`.
    #[arg(short = 'l', long, default_value = "")]
    selector: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    output: Output,
    /// Deadline for the whole snapshot, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
}

/// `analyze`.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Snapshot JSON as `snapshot -o json` prints it; `-` reads stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: PathBuf,
    /// Analyzer gRPC URL.
    #[arg(
        long,
        env = "NANNYCTL_ANALYZER",
        default_value = "http://127.0.0.1:50052"
    )]
    analyzer: String,
    /// `namespace/name` of a HealingPolicy in the cluster whose analysis
    /// settings apply (triggers, allowed actions and ceilings, rule
    /// overrides, model settings and prompts).
    #[arg(long, value_name = "NS/NAME", value_parser = parse_policy_ref)]
    policy: Option<String>,
    /// Also print the exchange with the model: the rendered prompt, the
    /// response schema, the raw reply and what was dropped and why.
    #[arg(long)]
    explain: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    output: Output,
    /// Deadline for the analysis (the model can be slow), in milliseconds.
    #[arg(long, default_value_t = 120_000)]
    timeout_ms: u64,
}

fn parse_policy_ref(text: &str) -> Result<String, String> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(text.to_owned())
        }
        _ => Err(format!("{text:?} is not namespace/name")),
    }
}

/// `snapshot`: one FULL snapshot of the scope, chunks reassembled.
pub async fn snapshot(
    kube: &KubeArgs,
    tls: &TlsArgs,
    args: SnapshotArgs,
) -> anyhow::Result<ExitCode> {
    let snapshot = fetch(
        kube,
        tls,
        &args.collector,
        args.selector,
        Duration::from_millis(args.timeout_ms),
    )
    .await?;
    match args.output {
        Output::Json => println!("{}", protojson::to_json(&snapshot, CLUSTER_SNAPSHOT)?),
        Output::Table => print!("{}", snapshot_summary(&snapshot)),
    }
    Ok(ExitCode::SUCCESS)
}

/// One whole snapshot of the scope (`-n`, repeatable; `-A` or none: every
/// namespace) from the collector at `collector`.
pub async fn fetch(
    kube: &KubeArgs,
    tls: &TlsArgs,
    collector: &str,
    selector: String,
    timeout: Duration,
) -> anyhow::Result<ClusterSnapshot> {
    let channel = nanny_common::client::channel(
        "--collector",
        collector,
        timeout,
        tls.client("nanny-collector")?.as_ref(),
    )?;
    let scope = Scope {
        // -A or no -n: every namespace.
        namespaces: if kube.all_namespaces {
            Vec::new()
        } else {
            kube.namespace.clone()
        },
        label_selector: selector,
    };
    let fetch = async {
        let mut stream = CollectorClient::new(channel)
            .get_snapshot(GetSnapshotRequest { scope: Some(scope) })
            .await
            .map_err(|s| anyhow!("collector {collector}: {}: {}", s.code(), s.message()))?
            .into_inner();
        SnapshotView::default()
            .next_whole(&mut stream)
            .await
            .map_err(|e| anyhow!("collector stream: {e}"))?
            .ok_or_else(|| anyhow!("the collector ended the stream before the last chunk"))
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| anyhow!("no whole snapshot within {timeout:?}"))?
}

/// Reads and parses a snapshot file; errors name the file and the position.
fn read_snapshot(file: &PathBuf) -> anyhow::Result<ClusterSnapshot> {
    let (name, text) = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the snapshot from stdin")?;
        ("<stdin>".to_owned(), text)
    } else {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        (file.display().to_string(), text)
    };
    protojson::from_json(&text, CLUSTER_SNAPSHOT).with_context(|| {
        format!("{name}: not a ClusterSnapshot as `nannyctl snapshot -o json` prints it")
    })
}

/// The analysis settings of the HealingPolicy `policy_ref` in the cluster.
async fn policy_settings(kube: &KubeArgs, policy_ref: &str) -> anyhow::Result<AnalysisSettings> {
    let (namespace, name) = policy_ref
        .split_once('/')
        .ok_or_else(|| anyhow!("{policy_ref:?} is not namespace/name"))?;
    let connection = kube.connect().await?;
    let policies: kube::Api<HealingPolicy> = kube::Api::namespaced(connection.client, namespace);
    let policy = policies
        .get(name)
        .await
        .with_context(|| format!("reading HealingPolicy {policy_ref}"))?;
    Ok(nanny_crd::proto::analysis_settings(&policy.spec))
}

/// `analyze -f FILE`.
pub async fn analyze(
    kube: &KubeArgs,
    tls: &TlsArgs,
    args: AnalyzeArgs,
) -> anyhow::Result<ExitCode> {
    let snapshot = read_snapshot(&args.file)?;
    let settings = match &args.policy {
        Some(policy_ref) => Some(policy_settings(kube, policy_ref).await?),
        None => None,
    };
    let timeout = Duration::from_millis(args.timeout_ms);
    let channel = nanny_common::client::channel(
        "--analyzer",
        &args.analyzer,
        timeout,
        tls.client("nanny-analyzer")?.as_ref(),
    )?;
    let response = AnalyzerClient::new(channel)
        .analyze_snapshot(AnalyzeSnapshotRequest {
            snapshot: Some(snapshot),
            policy_ref: args.policy.unwrap_or_default(),
            rules_only: false,
            settings,
            debug: args.explain,
            incidents: Vec::new(),
            tried: Vec::new(),
        })
        .await
        .map_err(|s| anyhow!("analyzer {}: {}: {}", args.analyzer, s.code(), s.message()))?
        .into_inner();
    match args.output {
        Output::Json => println!("{}", protojson::to_json(&response, ANALYZE_RESPONSE)?),
        Output::Table => {
            print!("{}", recommendations(&response));
            if let Some(exchange) = &response.exchange {
                print!("{}", explain(exchange));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn time(timestamp: Option<&prost_types::Timestamp>) -> String {
    timestamp
        .and_then(|t| k8s_openapi::jiff::Timestamp::new(t.seconds, t.nanos).ok())
        .map_or_else(|| "-".to_owned(), |t| t.to_string())
}

/// `SEVERITY_WARNING` → `warning`.
fn enum_name(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_lowercase()
}

fn object(reference: Option<&nanny_proto::v1::ObjectRef>) -> String {
    match reference {
        Some(r) if r.namespace.is_empty() => format!("{} {}", r.kind, r.name),
        Some(r) => format!("{} {}/{}", r.kind, r.namespace, r.name),
        None => "-".to_owned(),
    }
}

/// The default `snapshot` output: header, object counts, issues.
fn snapshot_summary(s: &ClusterSnapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Snapshot:   {} (generation {}, taken {})",
        s.id,
        s.generation,
        time(s.taken_at.as_ref())
    );
    if let Some(cluster) = &s.cluster {
        let _ = writeln!(
            out,
            "Cluster:    {} {} ({} nodes)",
            cluster.name, cluster.version, cluster.node_count
        );
    }
    let scope = s.scope.clone().unwrap_or_default();
    let namespaces = if scope.namespaces.is_empty() {
        "all namespaces".to_owned()
    } else {
        scope.namespaces.join(",")
    };
    let _ = writeln!(out, "Scope:      {namespaces} {}", scope.label_selector);
    let _ = writeln!(
        out,
        "Objects:    {} pods, {} nodes, {} workloads, {} jobs, {} HPAs, {} PVCs, {} PDBs, {} Services, {} webhook configurations, {} NetworkPolicies, {} Ingresses, {} PVs, {} TLS certificates, {} events, {} metrics",
        s.pods.len(),
        s.nodes.len(),
        s.workloads.len(),
        s.jobs.len(),
        s.hpas.len(),
        s.pvcs.len(),
        s.pdbs.len(),
        s.services.len(),
        s.webhooks.len(),
        s.network_policies.len(),
        s.ingresses.len(),
        s.volumes.len(),
        s.tls_certificates.len(),
        s.events.len(),
        s.metrics.len()
    );
    if let Some(stale) = &s.metrics_stale_since {
        let _ = writeln!(
            out,
            "Metrics:    STALE since {} (Prometheus unreachable)",
            time(Some(stale))
        );
    }
    if s.issues.is_empty() {
        out.push_str("Issues:     none\n");
        return out;
    }
    let _ = writeln!(out, "Issues:     {}\n", s.issues.len());
    let rows: Vec<Vec<String>> = s
        .issues
        .iter()
        .map(|issue| {
            vec![
                enum_name(issue.kind().as_str_name(), "ISSUE_KIND_"),
                enum_name(issue.severity().as_str_name(), "SEVERITY_"),
                object(issue.target.as_ref()),
                issue.summary.clone(),
            ]
        })
        .collect();
    out.push_str(&render::table(
        &["KIND", "SEVERITY", "TARGET", "SUMMARY"],
        &rows,
    ));
    out
}

fn action_name(recommendation: &Recommendation) -> &'static str {
    recommendation
        .action
        .as_ref()
        .and_then(|a| a.kind.as_ref())
        // An arm newer than this nannyctl: say so rather than guess.
        .map_or("<unknown>", |k| nanny_proto::vocabulary::of(k).name)
}

fn source_name(recommendation: &Recommendation) -> String {
    match recommendation.source.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(source::Kind::RuleId(rule)) => rule.clone(),
        Some(source::Kind::Model(model)) => format!("model:{}", model.model),
        None => "-".to_owned(),
    }
}

/// `analyze --explain`: the exchange with the model, after the table; the
/// model's text and the cluster's are shown [`render::printable`].
fn explain(e: &ModelExchange) -> String {
    render::printable(&explain_text(e))
}

fn explain_text(e: &ModelExchange) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nModel exchange: {}", e.outcome);
    if !e.model.is_empty() {
        let _ = writeln!(
            out,
            "  model {} via {}, prompt {}, {} tokens in, {} out",
            e.model, e.provider, e.prompt_version, e.prompt_tokens, e.completion_tokens
        );
    }
    if !e.error.is_empty() {
        let _ = writeln!(out, "  error: {}", e.error);
    }
    for (title, text) in [
        ("System prompt", &e.system_prompt),
        ("User prompt", &e.user_prompt),
        ("Response schema", &e.response_schema),
        ("Raw reply", &e.raw_reply),
    ] {
        if !text.is_empty() {
            let _ = writeln!(out, "--- {title}\n{text}");
        }
    }
    if !e.rejected.is_empty() {
        let _ = writeln!(out, "--- Dropped\n{}", e.rejected.join("\n"));
    }
    out
}

/// The default `analyze` output.
fn recommendations(response: &AnalyzeSnapshotResponse) -> String {
    let mut out = String::new();
    if response.rules_only {
        out.push_str("Note: rules only (the LLM was skipped: down, slow or disabled).\n");
    }
    if response.recommendations.is_empty() {
        out.push_str("No recommendations.\n");
        return out;
    }
    let rows: Vec<Vec<String>> = response
        .recommendations
        .iter()
        .map(|r| {
            vec![
                action_name(r).to_owned(),
                object(r.target.as_ref()),
                source_name(r),
                format!("{}%", r.confidence),
                enum_name(
                    Severity::try_from(r.risk).map_or("SEVERITY_UNSPECIFIED", |s| s.as_str_name()),
                    "SEVERITY_",
                ),
                r.reason.clone(),
            ]
        })
        .collect();
    out.push_str(&render::table(
        &["ACTION", "TARGET", "SOURCE", "CONFIDENCE", "RISK", "REASON"],
        &rows,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nanny_proto::v1::{
        Action, ClusterInfo, Issue, IssueKind, ModelSource, ObjectRef, RestartPod, ScaleHpa,
        Source, action::Kind,
    };

    fn pod(name: &str) -> Option<ObjectRef> {
        Some(ObjectRef {
            kind: "Pod".into(),
            namespace: "shop".into(),
            name: name.into(),
            ..ObjectRef::default()
        })
    }

    #[test]
    fn recommendations_table_shows_action_target_source_and_risk() {
        let response = AnalyzeSnapshotResponse {
            rules_only: true,
            recommendations: vec![
                Recommendation {
                    action: Some(Action {
                        kind: Some(Kind::RestartPod(RestartPod {})),
                    }),
                    target: pod("web-1"),
                    source: Some(Source {
                        kind: Some(source::Kind::RuleId("crashloop-restart".into())),
                    }),
                    confidence: 100,
                    risk: Severity::Info as i32,
                    reason: "CrashLoopBackOff for 10m".into(),
                    ..Recommendation::default()
                },
                Recommendation {
                    action: Some(Action {
                        kind: Some(Kind::ScaleHpa(ScaleHpa::default())),
                    }),
                    target: Some(ObjectRef {
                        kind: "HorizontalPodAutoscaler".into(),
                        namespace: "shop".into(),
                        name: "web".into(),
                        ..ObjectRef::default()
                    }),
                    source: Some(Source {
                        kind: Some(source::Kind::Model(ModelSource {
                            model: "qwen2.5".into(),
                            ..ModelSource::default()
                        })),
                    }),
                    confidence: 80,
                    risk: Severity::Warning as i32,
                    reason: "at max for 30m".into(),
                    ..Recommendation::default()
                },
                Recommendation::default(),
            ],
            exchange: None,
            incident_outcomes: std::collections::HashMap::new(),
            incidents: Vec::new(),
        };
        let text = recommendations(&response);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "Note: rules only (the LLM was skipped: down, slow or disabled).",
                "ACTION       TARGET                             SOURCE              CONFIDENCE   RISK          REASON",
                "RestartPod   Pod shop/web-1                     crashloop-restart   100%         info          CrashLoopBackOff for 10m",
                "ScaleHpa     HorizontalPodAutoscaler shop/web   model:qwen2.5       80%          warning       at max for 30m",
                "<unknown>    -                                  -                   0%           unspecified",
            ]
        );
        assert_eq!(
            recommendations(&AnalyzeSnapshotResponse::default()),
            "No recommendations.\n"
        );
    }

    #[test]
    fn explain_prints_the_exchange_and_skips_what_is_empty() {
        let text = explain(&ModelExchange {
            provider: "ollama".into(),
            model: "smollm2:135m".into(),
            prompt_version: "nanny-v1".into(),
            system_prompt: "You are Nanny.".into(),
            raw_reply: "{\"recommendations\":[]}".into(),
            outcome: "ok".into(),
            prompt_tokens: 300,
            completion_tokens: 9,
            rejected: vec!["#0 restart_pod on uid-x: low_confidence".into()],
            ..ModelExchange::default()
        });
        assert_eq!(
            text,
            "\nModel exchange: ok\n  model smollm2:135m via ollama, prompt nanny-v1, 300 tokens in, 9 out\n\
--- System prompt\nYou are Nanny.\n--- Raw reply\n{\"recommendations\":[]}\n\
--- Dropped\n#0 restart_pod on uid-x: low_confidence\n"
        );
        let skipped = explain(&ModelExchange {
            outcome: "disabled".into(),
            ..ModelExchange::default()
        });
        assert_eq!(skipped, "\nModel exchange: disabled\n");
        // A reply carrying a terminal escape sequence is shown, not obeyed.
        let hostile = explain(&ModelExchange {
            outcome: "malformed".into(),
            raw_reply: "\u{1b}]0;pwned\u{7}\u{1b}[2J".into(),
            ..ModelExchange::default()
        });
        assert!(!hostile.contains('\u{1b}'), "{hostile:?}");
        assert!(
            hostile.contains(r"\u{1b}]0;pwned\u{7}\u{1b}[2J"),
            "{hostile}"
        );
    }

    #[test]
    fn snapshot_summary_counts_objects_and_lists_issues() {
        let snapshot = ClusterSnapshot {
            id: "snap-1".into(),
            generation: 4,
            cluster: Some(ClusterInfo {
                version: "v1.34.2".into(),
                node_count: 3,
                name: "dev".into(),
            }),
            issues: vec![Issue {
                kind: IssueKind::OomKilled as i32,
                severity: Severity::Critical as i32,
                target: pod("api-0"),
                summary: "OOMKilled 3x".into(),
                ..Issue::default()
            }],
            ..ClusterSnapshot::default()
        };
        let text = snapshot_summary(&snapshot);
        assert!(
            text.contains("Snapshot:   snap-1 (generation 4, taken -)"),
            "{text}"
        );
        assert!(text.contains("Cluster:    dev v1.34.2 (3 nodes)"), "{text}");
        assert!(text.contains("Scope:      all namespaces"), "{text}");
        assert!(text.contains("0 pods, 0 nodes"), "{text}");
        assert!(
            text.contains("oom_killed   critical   Pod shop/api-0   OOMKilled 3x"),
            "{text}"
        );
    }

    #[test]
    fn malformed_snapshot_files_name_the_file_and_position() {
        let dir = std::env::temp_dir().join(format!("nannyctl-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("broken.json");
        std::fs::write(
            &file,
            "{\n  \"id\": \"s\",\n  \"pods\": [{\"phase\": 3}]\n}",
        )
        .unwrap();
        let error = format!("{:#}", read_snapshot(&file).unwrap_err());
        assert!(error.contains("broken.json"), "{error}");
        assert!(error.contains("line 3"), "{error}");
        let good = dir.join("good.json");
        std::fs::write(&good, "{\"id\": \"s\", \"generation\": \"2\"}").unwrap();
        assert_eq!(read_snapshot(&good).unwrap().generation, 2);
        let missing = format!("{:#}", read_snapshot(&dir.join("nope.json")).unwrap_err());
        assert!(missing.contains("nope.json"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn policy_refs_must_be_namespace_slash_name() {
        assert!(parse_policy_ref("shop/default").is_ok());
        for bad in ["default", "/x", "x/", "a/b/c"] {
            assert!(parse_policy_ref(bad).is_err(), "{bad}");
        }
    }
}
