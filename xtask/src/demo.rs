//! `cargo xtask demo`: a newcomer watches Nanny heal a cluster in minutes.
//!
//! Builds the binaries, brings up the local cluster (or reuses the running
//! one), installs the CRDs and a demo HealingPolicy, starts the five
//! services and the local LLM server, deploys a small app, then injects the
//! seed scenarios one after another and prints a live timeline from the
//! HealingActions: issue → recommendation → verdict → action →
//! verification. Ctrl-C stops everything the demo started.
//!
//! The scenario mechanics are those of `tests/cluster/tests/pipeline.rs`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures::StreamExt as _;
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        autoscaling::v2::HorizontalPodAutoscaler,
        core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod},
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{WatchStreamExt as _, watcher},
};
use nanny_crd::{ActionType, HealingAction, HealingPolicy, Phase, SourceKind, TargetRef};
use nanny_test_util::{
    cluster::{ClusterInfo, eventually, install_crds},
    faults::{self, HpaAtMax, PodSpec},
    llm::LlamaServer,
    nodes::FakeNode,
    stack::{Options, Stack},
    tools::{cache_dir, kubernetes_dir},
};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::cluster;

/// Where the demo's policy, actions and sample app live.
pub const NAMESPACE: &str = "nanny-demo";
/// The node the node scenario creates (and deletes).
const SICK_NODE: &str = "nanny-demo-sick";
/// The kube-system workload of the protected scenario.
const SYSTEM_APP: &str = "nanny-demo-sys";
/// The PersistentVolume `faults::pvc_nearly_full` creates for claim `data`.
const DEMO_PV: &str = "nanny-demo-data";

/// `cargo xtask demo` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Approve actions that need a human without asking.
    #[arg(long)]
    yes: bool,
    /// After the scenarios, keep Nanny running (until Ctrl-C) and leave the
    /// cluster and the `nanny-demo` namespace in place afterwards.
    #[arg(long)]
    keep: bool,
    /// Run the services against this existing cluster instead of the local
    /// one; nothing is injected unless --inject is given.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// With --kubeconfig: the Prometheus the collector queries.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9090")]
    prometheus_url: String,
    /// With --kubeconfig: inject the scenarios there too (they assume kwok's
    /// fault stages from deploy/kwok/, as the local cluster has).
    #[arg(long, requires = "kubeconfig")]
    inject: bool,
    /// Seconds a scenario may take (time spent waiting for a human not counted).
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    timeout: u64,
    /// With --kubeconfig: a namespace the demo policy also covers (repeat
    /// for more); `nanny-demo` and `kube-system` always are.
    #[arg(long, value_name = "NS", requires = "kubeconfig")]
    scope: Vec<String>,
    /// Rules only: do not start the local LLM server.
    #[arg(long)]
    no_llm: bool,
}

/// Runs the demo; stops everything it started on Ctrl-C or when done.
///
/// # Errors
/// When setting up fails, or a scenario is neither healed nor correctly refused.
pub fn run(args: Args) -> anyhow::Result<()> {
    let started_at = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut started = Started::default();
    let result = runtime.block_on(async {
        // The ctrl_c future is polled at once, so SIGINT no longer kills the
        // process from here on: it ends the demo future and cleanup runs.
        tokio::select! {
            result = demo(&args, &mut started, started_at) => result.map(|()| false),
            signal = tokio::signal::ctrl_c() => signal.map(|()| true).map_err(Into::into),
        }
    });
    // Ctrl-C while the demo waits for it (after the scenarios) is how it
    // ends, not an interruption.
    let interrupted = matches!(result, Ok(true)) && !started.parked;
    let result = match started.parked {
        true if started.failures > 0 => Err(failures(started.failures)),
        true => Ok(false),
        false => result,
    };
    if interrupted {
        println!("\n==> interrupted: stopping everything the demo started");
    }
    let keep = args.keep && !interrupted;
    runtime.block_on(started.stop(keep));
    // Children killed on drop are reaped by the runtime before it goes.
    runtime.shutdown_timeout(Duration::from_secs(5));
    if let Some(setup) = started.setup.take() {
        if !setup.is_finished() {
            println!("==> waiting for the cluster start to finish, to stop it cleanly");
        }
        let _ = setup.join();
    }
    if started.owns_cluster.load(Ordering::SeqCst) && !keep {
        cluster::down()?;
    }
    if interrupted {
        println!(
            "==> demo stopped after {:.0?}; nothing it started is left running",
            started_at.elapsed()
        );
        // The shell convention for "ended by SIGINT"; everything is cleaned up.
        std::process::exit(130);
    }
    result.map(|_| ())
}

/// What the demo started, so that it can stop exactly that.
#[derive(Default)]
#[allow(missing_debug_implementations)] // kube::Client has no Debug
struct Started {
    /// Set just before the demo starts the local cluster itself: a cluster
    /// someone else started is never stopped here.
    owns_cluster: Arc<AtomicBool>,
    /// The scenarios are done and the demo waits for Ctrl-C.
    parked: bool,
    /// Scenarios neither healed nor correctly refused.
    failures: usize,
    /// Tools and cluster start-up, on a thread of its own (it blocks).
    setup: Option<std::thread::JoinHandle<()>>,
    client: Option<Client>,
    /// Whether the demo namespace and its cluster-scoped objects are ours to remove.
    created_objects: bool,
    llm: Option<LlamaServer>,
    stack: Option<Stack>,
    node: Option<FakeNode>,
    /// The timeline and the controllers the local cluster lacks.
    tasks: Vec<JoinHandle<()>>,
}

impl Started {
    async fn stop(&mut self, keep: bool) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        if let Some(mut stack) = self.stack.take() {
            save_logs(&stack);
            let services = std::mem::take(&mut stack.services);
            // SIGTERM and wait, so each shuts down as it would in a pod.
            let stopped = futures::future::join_all(services.into_values().map(|p| async move {
                let name = p.name.clone();
                (name, p.terminate().await)
            }))
            .await;
            for (name, result) in stopped {
                if let Err(error) = result {
                    eprintln!("warning: {name} did not stop cleanly: {error:#}");
                }
            }
            println!(
                "==> services stopped (logs in {})",
                demo_dir().join("logs").display()
            );
        }
        if self.llm.take().is_some() {
            println!("==> LLM server stopped");
        }
        if keep {
            // The node stays with the namespace; `cluster down` removes both.
            std::mem::forget(self.node.take());
            return;
        }
        drop(self.node.take());
        // A cluster the demo stops anyway needs no tidying.
        if let (Some(client), true) = (&self.client, self.created_objects)
            && !self.owns_cluster.load(Ordering::SeqCst)
        {
            if let Err(error) = remove_demo_objects(client, false).await {
                eprintln!("warning: could not remove the demo's objects: {error:#}");
            } else {
                println!(
                    "==> removed namespace {NAMESPACE} and the demo's node, volume and kube-system app"
                );
            }
        }
    }
}

fn demo_dir() -> PathBuf {
    cache_dir().join("demo")
}

fn save_logs(stack: &Stack) {
    let dir = demo_dir().join("logs");
    let _ = std::fs::create_dir_all(&dir);
    for (name, process) in &stack.services {
        let _ = std::fs::write(
            dir.join(format!("{name}.log")),
            process.logs().join("\n") + "\n",
        );
    }
}

/// Runs a blocking step on a thread of its own, so Ctrl-C is still heard.
async fn blocking<T: Send + 'static>(
    started: &mut Started,
    step: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    started.setup = Some(std::thread::spawn(move || {
        let _ = tx.send(step());
    }));
    let result = rx.await.context("the setup thread died")?;
    if let Some(handle) = started.setup.take() {
        let _ = handle.join();
    }
    result
}

async fn demo(args: &Args, started: &mut Started, t0: Instant) -> anyhow::Result<()> {
    println!("==> Nanny demo: build, cluster, services, then faults healed live\n");
    build().await?;

    let no_llm = args.no_llm;
    let kubeconfig = args.kubeconfig.clone();
    let owns_cluster = started.owns_cluster.clone();
    let info = blocking(started, move || {
        crate::go::install_all(&nanny_test_util::tools::TEST_TOOLS)?;
        if !no_llm {
            nanny_test_util::llm::install()?;
        }
        match kubeconfig {
            None => {
                if cluster::running()?.is_none() {
                    owns_cluster.store(true, Ordering::SeqCst);
                }
                cluster::up(3)
            }
            Some(path) => Ok(ClusterInfo {
                kubeconfig: path,
                apiserver_url: String::new(),
                prometheus_url: String::new(),
                kwok_url: String::new(),
                kubectl: kubernetes_dir().join("bin/kubectl"),
                nodes: 0,
                audit_log: std::path::PathBuf::new(),
            }),
        }
    })
    .await?;
    let prometheus_url = if args.kubeconfig.is_some() {
        args.prometheus_url.clone()
    } else {
        info.prometheus_url.clone()
    };
    let client = Client::try_from(
        kube::Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&info.kubeconfig)
                .with_context(|| format!("reading {}", info.kubeconfig.display()))?,
            &KubeConfigOptions::default(),
        )
        .await?,
    )?;
    started.client = Some(client.clone());

    println!("==> installing the CRDs and a demo HealingPolicy (Auto mode) in {NAMESPACE}");
    install_crds(&client).await?;
    remove_demo_objects(&client, true).await?;
    started.created_objects = true;
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": { "name": NAMESPACE, "labels": { "nanny.ai/demo": "true" } }
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    Api::<HealingPolicy>::namespaced(client.clone(), NAMESPACE)
        .create(&PostParams::default(), &policy(&args.scope)?)
        .await?;

    let mut extra_env = Vec::new();
    if args.no_llm {
        println!("==> --no-llm: the analyzer runs its rules only");
    } else {
        println!("==> starting the local LLM server (llama.cpp, SmolLM2-135M-Instruct)");
        let llm = LlamaServer::start(&nanny_test_util::llm::model_path()).await?;
        for (key, value) in [
            ("NANNY_LLM__ENABLED", "true"),
            ("NANNY_LLM__PROVIDER", "openai"),
            ("NANNY_LLM__ENDPOINT", llm.url.as_str()),
            ("NANNY_LLM__MODEL", "SmolLM2-135M-Instruct"),
            // The coordinator waits for the model's answer next to the
            // rules'; a tiny CPU model must not hold the rules up long.
            ("NANNY_LLM__TIMEOUT_SECS", "10"),
        ] {
            extra_env.push(("nanny-analyzer", key.to_owned(), value.to_owned()));
        }
        println!("    {}", llm.url);
        started.llm = Some(llm);
    }

    println!("==> starting collector, analyzer, safety-gate, remediator, coordinator");
    std::fs::create_dir_all(demo_dir())?;
    let audit_path = demo_dir().join("audit.jsonl");
    let _ = std::fs::remove_file(&audit_path);
    let stack = Stack::start(Options {
        kubeconfig: info.kubeconfig.clone(),
        prometheus_url: prometheus_url.clone(),
        namespace: NAMESPACE.to_owned(),
        audit_path: audit_path.clone(),
        extra_env,
    })
    .await?;
    for (name, process) in &stack.services {
        println!(
            "    {name:<18} pid {:<8} gRPC {}  metrics http://{}/metrics",
            process.pid(),
            process.grpc_addr,
            process.http_addr
        );
    }
    let metrics: Vec<(String, String)> = stack
        .services
        .iter()
        .map(|(name, p)| {
            (
                (*name).to_owned(),
                format!("http://{}/metrics", p.http_addr),
            )
        })
        .collect();
    started.stack = Some(stack);

    let actions: Api<HealingAction> = Api::namespaced(client.clone(), NAMESPACE);
    let labels: Labels = Arc::new(Mutex::new(Vec::new()));
    let show_all = args.kubeconfig.is_some() && !args.inject;
    started
        .tasks
        .push(timeline(actions.clone(), labels.clone(), t0, show_all));

    let here = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    println!("\n==> to follow along in another terminal:");
    println!("    export KUBECONFIG={}", info.kubeconfig.display());
    println!(
        "    export PATH={}:{}:$PATH",
        here.display(),
        info.kubectl.parent().unwrap_or(Path::new(".")).display()
    );
    println!(
        "    kubectl get healingactions -n {NAMESPACE} -w    # or: nannyctl list -n {NAMESPACE}"
    );
    // Every gRPC port speaks mutual TLS; the operator certificate opens them.
    let pki = nanny_test_util::pki::test_dir();
    println!(
        "    export NANNYCTL_CA={0}/ca.pem NANNYCTL_CERT={0}/operator.pem NANNYCTL_KEY={0}/operator-key.pem",
        pki.display()
    );
    if let Some(collector) = started
        .stack
        .as_ref()
        .and_then(|stack| stack.services.get("nanny-collector"))
    {
        println!(
            "    grpcurl -cacert $NANNYCTL_CA -cert $NANNYCTL_CERT -key $NANNYCTL_KEY {} list    # the collector",
            collector.grpc_addr
        );
    }

    let mut rows = Vec::new();
    if args.kubeconfig.is_none() || args.inject {
        let ctx = Ctx {
            client: client.clone(),
            actions: actions.clone(),
            labels,
            yes: args.yes,
            timeout: Duration::from_secs(args.timeout),
        };
        println!("\n==> deploying the sample app: Deployment web (3 replicas) in {NAMESPACE}");
        faults::deployment(&client, NAMESPACE, "web", 3, &PodSpec::default()).await?;
        ctx.running_pods("web", 3, ctx.timeout).await?;
        let scenarios = SCENARIOS.len();
        for (index, scenario) in SCENARIOS.iter().enumerate() {
            println!(
                "\n{} ── {}/{scenarios} {}: {} ──",
                stamp(t0),
                index + 1,
                scenario.name,
                scenario.fault
            );
            let row = ctx.run(scenario, &info, started).await;
            rows.push(row);
        }
        summary(&rows, t0.elapsed());
        if let Some(stack) = &started.stack
            && !args.no_llm
        {
            println!(
                "{}",
                model_calls(stack.get("nanny-analyzer").http_addr).await
            );
        }
    }
    where_next(args, &metrics, &prometheus_url, &audit_path);
    let failed = rows.iter().filter(|r| !r.outcome.ok()).count();
    started.failures = failed;
    if args.keep || rows.is_empty() {
        println!(
            "\n==> Nanny keeps running (policy {NAMESPACE}/demo). Ctrl-C stops the services{}.",
            if args.keep {
                "; the cluster and the namespace stay (`cargo xtask cluster down` removes them)"
            } else {
                ""
            }
        );
        started.parked = true;
        tokio::signal::ctrl_c().await?;
        println!();
    }
    if failed > 0 {
        return Err(failures(failed));
    }
    Ok(())
}

fn failures(count: usize) -> anyhow::Error {
    anyhow::anyhow!(
        "{count} scenario(s) neither healed nor correctly refused; service logs: {}",
        demo_dir().join("logs").display()
    )
}

/// `cargo build --workspace --bins` (cargo shows its progress); a no-op when
/// everything is built. Killed if the demo is interrupted.
async fn build() -> anyhow::Result<()> {
    let step = Instant::now();
    println!("==> building the five services and nannyctl (cargo build --workspace --bins)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = tokio::process::Command::new(cargo)
        .args(["build", "--workspace", "--bins", "--locked"])
        .kill_on_drop(true)
        .status()
        .await
        .context("cannot run cargo")?;
    anyhow::ensure!(status.success(), "cargo build failed ({status})");
    println!("==> built in {:.1?}", step.elapsed());
    Ok(())
}

fn policy(scope: &[String]) -> anyhow::Result<HealingPolicy> {
    let mut namespaces = vec![NAMESPACE.to_owned(), "kube-system".to_owned()];
    namespaces.extend(scope.iter().cloned());
    Ok(serde_json::from_value(json!({
        "apiVersion": "nanny.ai/v1alpha1",
        "kind": "HealingPolicy",
        "metadata": { "name": "demo", "namespace": NAMESPACE },
        "spec": {
            "mode": "Auto",
            // kube-system is in scope so that the gate's protection shows.
            "scope": { "namespaces": namespaces },
            "actions": [
                { "type": "RestartPod" },
                { "type": "RolloutRestart" },
                { "type": "PatchResources", "ceilings": { "maxMemory": "2Gi" } },
                { "type": "DeleteJob" },
                { "type": "ScaleHpa", "ceilings": { "maxReplicas": 10 } },
                { "type": "CordonNode" },
                { "type": "ExpandPvc", "ceilings": { "maxStorage": "20Gi" } },
                { "type": "ReportOnly" },
            ],
            "limits": { "maxActionsPerHour": 100, "cooldownSeconds": 120, "maxDisruptionPercent": 50 },
            "ai": { "enabled": true, "minConfidence": 0.75, "maxRecommendations": 5 },
            "verificationTimeoutSeconds": 30,
            "approvalTtlSeconds": 900,
        },
    }))?)
}

/// Removes what a demo creates (a previous one's leftovers with `wait`).
async fn remove_demo_objects(client: &Client, wait: bool) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let exists = namespaces.get_opt(NAMESPACE).await?.is_some();
    if exists {
        if wait {
            println!("==> removing namespace {NAMESPACE} left by an earlier demo");
        }
        let _ = namespaces.delete(NAMESPACE, &DeleteParams::default()).await;
    }
    let _ = Api::<Node>::all(client.clone())
        .delete(SICK_NODE, &DeleteParams::default())
        .await;
    let _ = Api::<PersistentVolume>::all(client.clone())
        .delete(DEMO_PV, &DeleteParams::default())
        .await;
    let _ = Api::<Deployment>::namespaced(client.clone(), "kube-system")
        .delete(SYSTEM_APP, &DeleteParams::default())
        .await;
    if wait && exists {
        eventually(
            &format!("namespace {NAMESPACE} gone"),
            Duration::from_secs(120),
            || async { Ok(namespaces.get_opt(NAMESPACE).await?.is_none().then_some(())) },
        )
        .await?;
    }
    if wait {
        let pvs: Api<PersistentVolume> = Api::all(client.clone());
        eventually(
            "the demo's volume gone",
            Duration::from_secs(60),
            || async { Ok(pvs.get_opt(DEMO_PV).await?.is_none().then_some(())) },
        )
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The live timeline.

/// Which scenario an action belongs to: (scenario, target namespace, name prefix).
type Labels = Arc<Mutex<Vec<(&'static str, String, String)>>>;

fn label_of(labels: &Labels, target: &TargetRef) -> Option<&'static str> {
    labels
        .lock()
        .ok()?
        .iter()
        .find(|(_, ns, prefix)| *ns == target.namespace && target.name.starts_with(prefix.as_str()))
        .map(|(label, _, _)| *label)
}

#[derive(Default)]
struct Seen {
    announced: bool,
    phase: Option<Phase>,
    verdict: bool,
}

fn stamp(t0: Instant) -> String {
    let secs = t0.elapsed().as_secs();
    format!("[{:>2}:{:02}]", secs / 60, secs % 60)
}

/// Prints each HealingAction's progress as the coordinator records it.
fn timeline(
    actions: Api<HealingAction>,
    labels: Labels,
    t0: Instant,
    show_all: bool,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
        let stream = watcher(actions, watcher::Config::default())
            .default_backoff()
            .applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let Ok(action) = event else { continue };
            let label = label_of(&labels, &action.spec.target);
            if label.is_none() && !show_all {
                // Another test's node or kube-system pod in the shared cluster.
                continue;
            }
            let label = label.unwrap_or("-");
            let name = action.name_any();
            let entry = seen.entry(name.clone()).or_default();
            let status = action.status.clone().unwrap_or_default();
            let indent = " ".repeat(24);
            if !entry.announced {
                entry.announced = true;
                let spec = &action.spec;
                let t = &spec.target;
                let object = if t.namespace.is_empty() {
                    format!("{} {}", t.kind, t.name)
                } else {
                    format!("{} {}/{}", t.kind, t.namespace, t.name)
                };
                // Issue fingerprints (`issue:…`) mean nothing to a reader.
                let evidence: Vec<&str> = spec
                    .evidence
                    .iter()
                    .map(String::as_str)
                    .filter(|e| !e.starts_with("issue:"))
                    .collect();
                let evidence = if evidence.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", evidence.join("; "))
                };
                println!(
                    "{} {label:<15} issue detected on {object}{evidence}",
                    stamp(t0)
                );
                let source = match spec.source.kind {
                    SourceKind::Rule => format!("rule {}", spec.source.name),
                    SourceKind::Model => format!(
                        "AI {}{}",
                        spec.source.name,
                        spec.source
                            .provider
                            .as_deref()
                            .map(|p| format!(" via {p}"))
                            .unwrap_or_default()
                    ),
                };
                println!(
                    "{indent}→ recommend {:?}{} by {source}, confidence {}%: {}",
                    spec.action.type_,
                    params(&spec.action.params),
                    spec.confidence,
                    spec.reasoning
                );
                println!("{indent}  recorded as HealingAction {name}");
            }
            if let Some(verdict) = &status.verdict
                && !entry.verdict
            {
                entry.verdict = true;
                let why = if verdict.reasons.is_empty() {
                    String::new()
                } else {
                    format!(": {}", verdict.reasons.join("; "))
                };
                println!(
                    "{} {label:<15} verdict {}{why} [{}]",
                    stamp(t0),
                    verdict.decision,
                    verdict.matched_rules.join(", ")
                );
            }
            if status.phase != entry.phase
                && let Some(phase) = status.phase
            {
                entry.phase = Some(phase);
                let (verification, error) = status
                    .result
                    .as_ref()
                    .map(|r| (r.verification.as_str(), r.error.as_str()))
                    .unwrap_or_default();
                let line = match phase {
                    Phase::Proposed | Phase::Recorded => None,
                    Phase::PendingApproval => Some("waiting for a human's approval".to_owned()),
                    Phase::Approved => Some(match &action.spec.approval {
                        Some(a) => format!("approved by {}", a.by),
                        None => "approved".to_owned(),
                    }),
                    Phase::Executing => Some(format!(
                        "action: remediator executes {:?}",
                        action.spec.action.type_
                    )),
                    Phase::Verifying => Some("acted; verifying that it helped".to_owned()),
                    Phase::Succeeded => Some(format!("✔ verified{}", nonempty(": ", verification))),
                    Phase::Failed => Some(format!(
                        "✘ failed{}{}",
                        nonempty(": ", error),
                        nonempty(" / ", verification)
                    )),
                    Phase::Denied => Some(
                        if status.verdict.is_some() && action.spec.approval.is_none() {
                            "⛔ denied by the safety gate: nothing was changed".to_owned()
                        } else {
                            "⛔ rejected: nothing was changed".to_owned()
                        },
                    ),
                    Phase::RolledBack => Some("↩ rolled back".to_owned()),
                    Phase::Expired => Some("⌛ expired: nobody approved it in time".to_owned()),
                    Phase::Escalated => {
                        Some("⚠ escalated: the remedies did not help; a human decides".to_owned())
                    }
                    Phase::Resolved => Some("escalation resolved".to_owned()),
                };
                if let Some(line) = line {
                    println!("{} {label:<15} {line}", stamp(t0));
                }
            }
        }
    })
}

fn nonempty(prefix: &str, text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("{prefix}{text}")
    }
}

fn params(params: &BTreeMap<String, String>) -> String {
    if params.is_empty() {
        return String::new();
    }
    let list: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(" ({})", list.join(", "))
}

// ---------------------------------------------------------------------------
// Scenarios.

#[derive(Debug, Clone, Copy)]
enum Kind {
    CrashLoop,
    Oom,
    StaleJob,
    HpaAtMax,
    NodeNotReady,
    PvcNearlyFull,
    Protected,
}

#[derive(Debug)]
struct Scenario {
    name: &'static str,
    fault: &'static str,
    kind: Kind,
}

const SCENARIOS: [Scenario; 7] = [
    Scenario {
        name: "crash loop",
        fault: "one pod of web starts crash-looping",
        kind: Kind::CrashLoop,
    },
    Scenario {
        name: "OOM kill",
        fault: "Deployment hungry needs 192Mi but is limited to 128Mi",
        kind: Kind::Oom,
    },
    Scenario {
        name: "stale job",
        fault: "Job nightly-report finished 25 h ago and was never cleaned up",
        kind: Kind::StaleJob,
    },
    Scenario {
        name: "HPA at max",
        fault: "HPA api pinned at maxReplicas 3 with CPU at 95% of target 50%",
        kind: Kind::HpaAtMax,
    },
    Scenario {
        name: "node NotReady",
        fault: "node nanny-demo-sick stops reporting Ready",
        kind: Kind::NodeNotReady,
    },
    Scenario {
        name: "PVC nearly full",
        fault: "claim data is 970Mi used of 1Gi",
        kind: Kind::PvcNearlyFull,
    },
    Scenario {
        name: "kube-system",
        fault: "a kube-system pod crash-loops (protected namespace)",
        kind: Kind::Protected,
    },
];

#[derive(Debug)]
enum Outcome {
    Healed(String),
    Refused(String),
    TimedOut(String),
    Failed(String),
}

impl Outcome {
    fn ok(&self) -> bool {
        matches!(self, Self::Healed(_) | Self::Refused(_))
    }
}

#[derive(Debug)]
struct Row {
    scenario: &'static str,
    outcome: Outcome,
    took: Duration,
    human: Duration,
}

/// A scenario's deadline; time spent waiting for a human moves it.
#[derive(Debug)]
struct Budget {
    deadline: Instant,
    human: Duration,
}

/// A scenario ran out of time while waiting for `0`.
#[derive(Debug)]
struct TimedOut(String);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "timed out waiting for {}", self.0)
    }
}

impl std::error::Error for TimedOut {}

impl Budget {
    /// Polls `check` until it returns `Some` or the deadline passes.
    async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        loop {
            if let Ok(Some(value)) = check().await {
                return Ok(value);
            }
            if Instant::now() > self.deadline {
                return Err(TimedOut(what.to_owned()).into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[allow(missing_debug_implementations)] // kube::Client has no Debug
struct Ctx {
    client: Client,
    actions: Api<HealingAction>,
    labels: Labels,
    yes: bool,
    timeout: Duration,
}

impl Ctx {
    fn label(&self, scenario: &'static str, namespace: &str, prefix: &str) {
        if let Ok(mut labels) = self.labels.lock() {
            labels.push((scenario, namespace.to_owned(), prefix.to_owned()));
        }
    }

    async fn run(&self, scenario: &Scenario, info: &ClusterInfo, started: &mut Started) -> Row {
        let begun = Instant::now();
        let mut budget = Budget {
            deadline: begun + self.timeout,
            human: Duration::ZERO,
        };
        let result = match scenario.kind {
            Kind::CrashLoop => self.crash_loop(scenario.name, &mut budget).await,
            Kind::Oom => self.oom(scenario.name, &mut budget, started).await,
            Kind::StaleJob => self.stale_job(scenario.name, &mut budget).await,
            Kind::HpaAtMax => self.hpa(scenario.name, &mut budget, started).await,
            Kind::NodeNotReady => self.node(scenario.name, &mut budget, info, started).await,
            Kind::PvcNearlyFull => self.pvc(scenario.name, &mut budget, started).await,
            Kind::Protected => self.protected(scenario.name, &mut budget).await,
        };
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(error) => match error.downcast_ref::<TimedOut>() {
                Some(timed_out) => {
                    Outcome::TimedOut(format!("{timed_out} (after {:.0?})", begun.elapsed()))
                }
                None => Outcome::Failed(format!("{error:#}")),
            },
        };
        let mark = match &outcome {
            Outcome::Healed(what) => format!("✔ healed: {what}"),
            Outcome::Refused(what) => format!("✔ correctly refused: {what}"),
            Outcome::TimedOut(what) => format!("✘ {what}"),
            Outcome::Failed(what) => format!("✘ failed: {what}"),
        };
        println!("   {mark} — {:.1?}", begun.elapsed());
        Row {
            scenario: scenario.name,
            outcome,
            took: begun.elapsed(),
            human: budget.human,
        }
    }

    async fn running_pods(
        &self,
        app: &str,
        count: usize,
        wait: Duration,
    ) -> anyhow::Result<Vec<Pod>> {
        eventually(&format!("{count} running {app} pods"), wait, || async {
            let pods = faults::pods_of(&self.client, NAMESPACE, app).await?;
            let running: Vec<Pod> = pods
                .into_iter()
                .filter(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                })
                .collect();
            Ok((running.len() == count).then_some(running))
        })
        .await
    }

    /// Follows the actions on targets matching `on` until one of type
    /// `want` (any type when `None`) ends; asks for (or gives, with --yes)
    /// approval on the way.
    async fn follow(
        &self,
        budget: &mut Budget,
        what: &str,
        on: impl Fn(&TargetRef) -> bool,
        want: Option<ActionType>,
    ) -> anyhow::Result<HealingAction> {
        loop {
            let action = budget
                .until(what, || async {
                    let list = self.actions.list(&Default::default()).await?;
                    Ok(list.items.into_iter().find(|a| {
                        let phase = a.status.as_ref().and_then(|s| s.phase);
                        on(&a.spec.target)
                            && want.is_none_or(|w| a.spec.action.type_ == w)
                            && phase.is_some_and(|p| p.is_terminal() || p == Phase::PendingApproval)
                    }))
                })
                .await?;
            if action.status.as_ref().and_then(|s| s.phase) == Some(Phase::PendingApproval) {
                self.approval(&action, budget).await?;
                continue;
            }
            return Ok(action);
        }
    }

    /// Shows how to approve `action`, approves it with --yes, and waits
    /// until someone decides.
    async fn approval(&self, action: &HealingAction, budget: &mut Budget) -> anyhow::Result<()> {
        let name = action.name_any();
        println!(
            "   ⏸ {:?} on {} {} needs a human. Approve it with:",
            action.spec.action.type_, action.spec.target.kind, action.spec.target.name
        );
        println!("       nannyctl approve {name} -n {NAMESPACE}");
        println!(
            "     or: kubectl annotate healingaction {name} -n {NAMESPACE} {}=$(kubectl auth whoami -o jsonpath='{{.status.userInfo.username}}')",
            nanny_crd::APPROVE_ANNOTATION
        );
        let asked = Instant::now();
        if self.yes {
            let patch = json!({ "spec": { "approval": {
                "decision": "Approve", "by": "cargo xtask demo --yes", "at": Timestamp::now().to_string(),
            } } });
            self.actions
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .with_context(|| format!("approving {name}"))?;
            println!("     --yes: approved");
        } else {
            println!(
                "     waiting for your decision (run the demo with --yes to approve automatically)…"
            );
        }
        loop {
            let now = self.actions.get(&name).await?;
            if now.status.as_ref().and_then(|s| s.phase) != Some(Phase::PendingApproval) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if !self.yes {
            budget.human += asked.elapsed();
            budget.deadline += asked.elapsed();
        }
        Ok(())
    }

    async fn crash_loop(&self, name: &'static str, budget: &mut Budget) -> anyhow::Result<Outcome> {
        let victim = self.running_pods("web", 3, self.timeout).await?.remove(0);
        let pod = victim.name_any();
        let uid = victim.uid().context("pod uid")?;
        self.label(name, NAMESPACE, &pod);
        Api::<Pod>::namespaced(self.client.clone(), NAMESPACE)
            .patch(
                &pod,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({ "metadata": { "labels": { faults::FAULT_LABEL: "crash-loop" } } }),
                ),
            )
            .await?;
        let action = self
            .follow(
                budget,
                "the crash-looping pod's restart",
                |t| t.uid == uid,
                Some(ActionType::RestartPod),
            )
            .await?;
        Ok(match action.phase() {
            Phase::Succeeded => {
                Outcome::Healed(format!("pod {pod} restarted; its replacement runs"))
            }
            _ => unhealed(&action),
        })
    }

    async fn oom(
        &self,
        name: &'static str,
        budget: &mut Budget,
        started: &mut Started,
    ) -> anyhow::Result<Outcome> {
        self.label(name, NAMESPACE, "hungry");
        faults::oom_killed(&self.client, NAMESPACE, "hungry", "128Mi").await?;
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), NAMESPACE);
        let uid = deployments.get("hungry").await?.uid().context("uid")?;
        // The app needs 192Mi: once the limit is raised, its pods run.
        let (tx, rx) = tokio::sync::oneshot::channel();
        started.tasks.push(tokio::spawn({
            let client = self.client.clone();
            async move {
                let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
                loop {
                    if let Ok(d) = deployments.get("hungry").await {
                        let limit = memory_limit(&d);
                        if limit.as_deref().is_some_and(|l| l != "128Mi") {
                            let _ =
                                faults::clear_workload_fault(&client, NAMESPACE, "hungry").await;
                            let _ = tx.send(limit.unwrap_or_default());
                            return;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }));
        let action = self
            .follow(
                budget,
                "the memory limit raised",
                |t| t.uid == uid,
                Some(ActionType::PatchResources),
            )
            .await?;
        if action.phase() != Phase::Succeeded {
            return Ok(unhealed(&action));
        }
        let limit = rx.await.unwrap_or_default();
        Ok(Outcome::Healed(format!(
            "memory limit 128Mi → {} (×1.5), the pod runs",
            mebibytes(&limit)
        )))
    }

    async fn stale_job(&self, name: &'static str, budget: &mut Budget) -> anyhow::Result<Outcome> {
        self.label(name, NAMESPACE, "nightly-report");
        let job = faults::completed_job(
            &self.client,
            NAMESPACE,
            "nightly-report",
            Duration::from_secs(25 * 3600),
        )
        .await?;
        let uid = job.uid().context("uid")?;
        let action = self
            .follow(
                budget,
                "the stale Job deleted",
                |t| t.uid == uid,
                Some(ActionType::DeleteJob),
            )
            .await?;
        Ok(match action.phase() {
            Phase::Succeeded => Outcome::Healed("Job nightly-report deleted".to_owned()),
            _ => unhealed(&action),
        })
    }

    async fn hpa(
        &self,
        name: &'static str,
        budget: &mut Budget,
        started: &mut Started,
    ) -> anyhow::Result<Outcome> {
        self.label(name, NAMESPACE, "api");
        let params = HpaAtMax {
            min_replicas: 1,
            max_replicas: 3,
            target_cpu_percent: 50,
            current_cpu_percent: 95,
        };
        let uid = faults::hpa_at_max(&self.client, NAMESPACE, "api", params)
            .await?
            .uid()
            .context("uid")?;
        // The local cluster runs no HPA controller: play its part.
        started.tasks.push(faults::hpa_controller(
            self.client.clone(),
            NAMESPACE.to_owned(),
            "api".to_owned(),
            4,
        ));
        let action = self
            .follow(
                budget,
                "the HPA's maxReplicas raised",
                |t| t.uid == uid,
                Some(ActionType::ScaleHpa),
            )
            .await?;
        if action.phase() != Phase::Succeeded {
            return Ok(unhealed(&action));
        }
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(self.client.clone(), NAMESPACE);
        let max = hpas.get("api").await?.spec.map_or(0, |s| s.max_replicas);
        Ok(Outcome::Healed(format!("maxReplicas 3 → {max}")))
    }

    async fn node(
        &self,
        name: &'static str,
        budget: &mut Budget,
        info: &ClusterInfo,
        started: &mut Started,
    ) -> anyhow::Result<Outcome> {
        self.label(name, "", SICK_NODE);
        let node = FakeNode::create(info, &self.client, SICK_NODE).await?;
        started.node = Some(node);
        let nodes: Api<Node> = Api::all(self.client.clone());
        // kwok's stage turns the fault label into Ready=False. The node
        // lifecycle controller then taints the node; the remediator refuses
        // a cordon when the node's spec changed after the snapshot the
        // action came from, so the demo puts the controller's NoSchedule
        // taint on in the same patch (the controller finds it present and
        // changes nothing). Its NoExecute taint still follows ~10 s later.
        let fault = json!({
            "metadata": { "labels": { faults::FAULT_LABEL: "not-ready" } },
            "spec": { "taints": [
                { "key": nanny_test_util::nodes::TEST_NODE_TAINT, "value": SICK_NODE, "effect": "NoSchedule" },
                { "key": "node.kubernetes.io/not-ready", "effect": "NoSchedule" },
            ] },
        });
        nodes
            .patch(SICK_NODE, &PatchParams::default(), &Patch::Merge(&fault))
            .await?;
        let uid = nodes.get(SICK_NODE).await?.uid().context("uid")?;
        let action = self
            .follow(
                budget,
                "the sick node cordoned",
                |t| t.uid == uid,
                Some(ActionType::CordonNode),
            )
            .await?;
        let cordoned = nodes
            .get(SICK_NODE)
            .await?
            .spec
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        Ok(match action.phase() {
            Phase::Succeeded if cordoned => {
                Outcome::Healed(format!("node {SICK_NODE} cordoned: no new pods land there"))
            }
            _ => unhealed(&action),
        })
    }

    async fn pvc(
        &self,
        name: &'static str,
        budget: &mut Budget,
        started: &mut Started,
    ) -> anyhow::Result<Outcome> {
        self.label(name, NAMESPACE, "data");
        let claim =
            faults::pvc_nearly_full(&self.client, NAMESPACE, "data", 1 << 30, 970 << 20).await?;
        let uid = claim.uid().context("uid")?;
        // The local cluster has no volume resizer either.
        started.tasks.push(faults::volume_resizer(
            self.client.clone(),
            NAMESPACE.to_owned(),
            "data".to_owned(),
        ));
        let action = self
            .follow(
                budget,
                "the claim expanded",
                |t| t.uid == uid,
                Some(ActionType::ExpandPvc),
            )
            .await?;
        if action.phase() != Phase::Succeeded {
            return Ok(unhealed(&action));
        }
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), NAMESPACE);
        let size = claims
            .get("data")
            .await?
            .spec
            .and_then(|s| s.resources)
            .and_then(|r| r.requests)
            .and_then(|r| r.get("storage").map(|q| q.0.clone()))
            .unwrap_or_default();
        Ok(Outcome::Healed(format!(
            "claim data 1Gi → {}",
            mebibytes(&size)
        )))
    }

    async fn protected(&self, name: &'static str, budget: &mut Budget) -> anyhow::Result<Outcome> {
        self.label(name, "kube-system", SYSTEM_APP);
        faults::crash_loop(&self.client, "kube-system", SYSTEM_APP, 1).await?;
        let action = self
            .follow(
                budget,
                "the kube-system action decided",
                |t| t.namespace == "kube-system" && t.name.starts_with(SYSTEM_APP),
                None,
            )
            .await;
        let _ = Api::<Deployment>::namespaced(self.client.clone(), "kube-system")
            .delete(SYSTEM_APP, &DeleteParams::default())
            .await;
        let action = action?;
        Ok(match action.phase() {
            Phase::Denied => {
                let rules = action
                    .status
                    .and_then(|s| s.verdict)
                    .map(|v| v.matched_rules.join(", "))
                    .unwrap_or_default();
                Outcome::Refused(format!("{:?} denied by {rules}", action.spec.action.type_))
            }
            other => Outcome::Failed(format!(
                "expected the gate to deny, got {}",
                describe(&action, other)
            )),
        })
    }
}

/// A scenario's action that did not heal: a gate's denial is a correct
/// refusal (e.g. the storm guard, when the shared cluster has other sick
/// nodes); anything else is a failure.
fn unhealed(action: &HealingAction) -> Outcome {
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

fn describe(action: &HealingAction, phase: Phase) -> String {
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

fn memory_limit(deployment: &Deployment) -> Option<String> {
    deployment
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")
        .map(|q| q.0.clone())
}

/// `201326592` → `192Mi`; anything else unchanged.
fn mebibytes(quantity: &str) -> String {
    match quantity.parse::<u64>() {
        Ok(bytes) if bytes % (1 << 20) == 0 => format!("{}Mi", bytes >> 20),
        _ => quantity.to_owned(),
    }
}

fn summary(rows: &[Row], total: Duration) {
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
async fn model_calls(metrics: std::net::SocketAddr) -> String {
    let Ok((200, text)) = nanny_test_util::http::get(metrics, "/metrics").await else {
        return "    AI: the analyzer's metrics did not answer".to_owned();
    };
    let calls: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("nanny_analyzer_model_calls_total{outcome=\""))
        .filter_map(|l| {
            let (outcome, count) = l.split_once("\"} ")?;
            Some(format!("{outcome} {count}"))
        })
        .collect();
    format!(
        "    AI: SmolLM2-135M via llama.cpp, model calls: {}. Rules answer alone whenever the model is slow, \
         wrong or off target; a model's suggestion can never raise an approval level.",
        if calls.is_empty() {
            "none".to_owned()
        } else {
            calls.join(", ")
        }
    )
}

fn where_next(args: &Args, metrics: &[(String, String)], prometheus: &str, audit: &Path) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_policy_is_valid_auto_mode_with_kube_system_in_scope() {
        let policy = policy(&["shop".to_owned()]).unwrap();
        assert_eq!(policy.spec.mode, nanny_crd::Mode::Auto);
        assert_eq!(
            policy.spec.scope.namespaces,
            [NAMESPACE, "kube-system", "shop"]
        );
        for wanted in [
            ActionType::RestartPod,
            ActionType::PatchResources,
            ActionType::DeleteJob,
            ActionType::ScaleHpa,
            ActionType::CordonNode,
            ActionType::ExpandPvc,
        ] {
            assert!(
                policy.spec.actions.iter().any(|a| a.type_ == wanted),
                "{wanted:?} allowed"
            );
        }
    }

    #[test]
    fn byte_quantities_read_as_mebibytes() {
        assert_eq!(mebibytes("201326592"), "192Mi");
        assert_eq!(mebibytes("1610612736"), "1536Mi");
        assert_eq!(mebibytes("2Gi"), "2Gi");
    }
}
