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
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Namespace, Node, PersistentVolume},
};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use nanny_crd::{HealingAction, HealingPolicy};
use nanny_test_util::{
    cluster::{ClusterInfo, eventually, install_crds},
    faults::{self, PodSpec},
    llm::LlamaServer,
    nodes::FakeNode,
    stack::{Options, Stack},
    tools::{cache_dir, kubernetes_dir},
};
use serde_json::json;
use tokio::task::JoinHandle;

mod scenarios;
mod summary;
mod timeline;

use self::{
    scenarios::{Ctx, SCENARIOS},
    summary::{explanations, model_calls, summary, where_next},
    timeline::{Labels, stamp, timeline},
};
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

#[expect(
    clippy::too_many_lines,
    reason = "the demo's script, step by step as it is printed"
)]
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
                cluster::up(3, true)
            }
            Some(path) => Ok(ClusterInfo {
                kubeconfig: path,
                apiserver_url: String::new(),
                prometheus_url: String::new(),
                kwok_url: String::new(),
                kubectl: kubernetes_dir().join("bin/kubectl"),
                nodes: 0,
                audit_log: std::path::PathBuf::new(),
                real_node: None,
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
            // The longest one call may run; the deadline follows the
            // measured throughput below it.
            ("NANNY_LLM__TIMEOUT_SECS", "30"),
        ] {
            extra_env.push(("nanny-analyzer", key.to_owned(), value.to_owned()));
        }
        println!("    {}", llm.url);
        started.llm = Some(llm);
    }

    // Debugging the demo: NANNY_DEMO_LOG_FILTER sets every service's log
    // filter (e.g. `info,nanny_coordinator=debug`).
    if let Ok(filter) = std::env::var("NANNY_DEMO_LOG_FILTER") {
        for (binary, _) in nanny_test_util::stack::SERVICES {
            extra_env.push((
                binary,
                "NANNY_TELEMETRY__LOG_FILTER".to_owned(),
                filter.clone(),
            ));
        }
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
            real_node: info.real_node.is_some(),
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
            print!("{}", explanations(&actions, Duration::from_secs(30)).await);
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
            "actions": nanny_test_util::scenarios::seed_actions(),
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

#[cfg(test)]
mod tests {
    use nanny_crd::ActionType;

    use super::{scenarios::mebibytes, *};

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
