//! `cargo xtask bench …`: performance targets measured outside the tests.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use nanny_test_util::process::ServiceProcess;

use crate::cmd;

/// What to measure.
#[derive(Debug, clap::Subcommand)]
pub enum Target {
    /// Analyzer: rules and validation over a 10k-pod snapshot with 500
    /// issues, and the prompt build (targets: ≤ 20 ms, ≤ 5 ms).
    Analyzer,
    /// Safety gate: reviews/s on one core and Review p99 over gRPC (targets: ≥ 50k/s, ≤ 2 ms).
    Gate,
    /// Collector: snapshot build/encode in-process (10k and 100k pods), then
    /// the release binary against the kwok cluster: RSS, full snapshot over
    /// gRPC, detection latency (targets: ≤ 150 MiB at 10k pods, ≤ 400 MiB at
    /// 100k; ≤ 50 ms per 10k-pod snapshot; detection p99 ≤ 1 s).
    Collector {
        /// Pods to create on the cluster.
        #[arg(long, default_value_t = 10_000)]
        pods: usize,
        /// kwok nodes, when this command starts the cluster itself.
        #[arg(long, default_value_t = 100)]
        nodes: u32,
        /// Faults injected one at a time for the detection latency.
        #[arg(long, default_value_t = 100)]
        faults: usize,
    },
    /// The whole pipeline on the kwok cluster: time from a crash loop visible
    /// in the API to the pod restarted, rules path, Auto mode (target: p95 ≤ 5 s).
    Pipeline {
        /// Crash loops injected one after another.
        #[arg(long, default_value_t = 20)]
        faults: usize,
        /// Also ask the real local model about every incident (the rules'
        /// action must not wait for it).
        #[arg(long)]
        llm: bool,
    },
    /// The model queue: N concurrent incidents across N policies (each
    /// incident seen by two) through the analyzer, against the real
    /// llama.cpp server and real Ollama with SmolLM2-135M (targets: ≥ 95 %
    /// answered ok, ≤ 1 model call per incident, p95 incident → explanation
    /// ≤ 90 s).
    Llm {
        /// Incidents, and policies.
        #[arg(long, default_value_t = 20)]
        incidents: usize,
        /// Which servers, comma-separated: llama, ollama.
        #[arg(long, default_value = "llama,ollama")]
        servers: String,
        /// The analyzer's `llm.parallel` (the servers' parallel slots).
        #[arg(long, default_value_t = 1)]
        parallel: u32,
    },
    /// Idle RSS and start-to-SERVING of every service binary (targets: ≤ 20 MiB, ≤ 200 ms).
    Services {
        /// Cargo profile to build and measure.
        #[arg(long, default_value = "release")]
        profile: String,
        /// Start-up measurements per service.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Seconds to stay idle before reading RSS.
        #[arg(long, default_value_t = 3)]
        idle_secs: u64,
    },
}

pub fn run(target: Target) -> anyhow::Result<()> {
    match target {
        Target::Analyzer => cmd::step(
            "bench analyzer",
            &[
                "cargo",
                "bench",
                "--locked",
                "-p",
                "nanny-analyzer",
                "--bench",
                "rules",
            ],
        ),
        Target::Gate => cmd::step(
            "bench gate",
            &[
                "cargo",
                "bench",
                "--locked",
                "-p",
                "nanny-safety-gate",
                "--bench",
                "review",
            ],
        ),
        Target::Collector {
            pods,
            nodes,
            faults,
        } => collector(pods, nodes, faults),
        Target::Pipeline { faults, llm } => pipeline(faults, llm),
        Target::Llm {
            incidents,
            servers,
            parallel,
        } => llm(incidents, &servers, parallel),
        Target::Services {
            profile,
            runs,
            idle_secs,
        } => services(&profile, runs, Duration::from_secs(idle_secs)),
    }
}

fn collector(pods: usize, nodes: u32, faults: usize) -> anyhow::Result<()> {
    cmd::step(
        "bench collector (in-process snapshot build and encode)",
        &[
            "cargo",
            "bench",
            "--locked",
            "-p",
            "nanny-collector",
            "--bench",
            "snapshot",
        ],
    )?;
    cmd::step(
        "build the release collector",
        &[
            "cargo",
            "build",
            "--locked",
            "--release",
            "-p",
            "nanny-collector",
        ],
    )?;
    // Absolute: the test runs in its own package directory.
    let binary = std::path::absolute(target_dir().join("release/nanny-collector"))?;
    crate::cluster::with_cluster(nodes, |_| {
        ignored_test(
            "bench collector (release binary on the kwok cluster)",
            "nanny-cluster-tests",
            "collector_bench",
            &[
                ("NANNY_BENCH_PODS", pods.to_string()),
                ("NANNY_BENCH_FAULTS", faults.to_string()),
                (
                    "NANNY_BENCH_COLLECTOR",
                    binary.to_string_lossy().into_owned(),
                ),
            ],
        )
    })
}

fn pipeline(faults: usize, llm: bool) -> anyhow::Result<()> {
    anyhow::ensure!(faults > 0, "--faults must be at least 1");
    if llm {
        nanny_test_util::llm::install()?;
    }
    cmd::step(
        "build service binaries",
        &["cargo", "build", "--locked", "--bins"],
    )?;
    crate::cluster::with_cluster(3, |_| {
        ignored_test(
            "bench pipeline (five services on the kwok cluster)",
            "nanny-cluster-tests",
            "pipeline_bench",
            &[
                ("NANNY_BENCH_FAULTS", faults.to_string()),
                ("NANNY_BENCH_LLM", if llm { "1" } else { "0" }.to_owned()),
            ],
        )
    })
}

fn llm(incidents: usize, servers: &str, parallel: u32) -> anyhow::Result<()> {
    anyhow::ensure!(incidents >= 2, "--incidents must be at least 2");
    nanny_test_util::llm::install()?;
    nanny_test_util::ollama::install()?;
    ignored_test(
        "bench llm (the analyzer's model queue against real servers)",
        "nanny-analyzer",
        "llm_bench",
        &[
            ("NANNY_BENCH_INCIDENTS", incidents.to_string()),
            ("NANNY_BENCH_SERVERS", servers.to_owned()),
            ("NANNY_BENCH_PARALLEL", parallel.to_string()),
        ],
    )
}

/// Runs a benchmark kept as an ignored test of `package`:
/// `cargo test -p PACKAGE --test TEST -- --ignored --nocapture`, with `env`.
fn ignored_test(
    what: &str,
    package: &str,
    test: &str,
    env: &[(&str, String)],
) -> anyhow::Result<()> {
    let mut command = std::process::Command::new("cargo");
    command
        .args(["test", "--locked", "-p", package, "--test", test])
        .args(["--", "--ignored", "--nocapture"]);
    for (key, value) in env {
        command.env(key, value);
    }
    cmd::run(what, &mut command)
}

const SERVICES: [(&str, &str); 4] = [
    ("nanny-collector", "nanny.v1.Collector"),
    ("nanny-analyzer", "nanny.v1.Analyzer"),
    ("nanny-safety-gate", "nanny.v1.SafetyGate"),
    ("nanny-remediator", "nanny.v1.Remediator"),
];

fn services(profile: &str, runs: usize, idle: Duration) -> anyhow::Result<()> {
    anyhow::ensure!(runs > 0, "--runs must be at least 1");
    cmd::step(
        "build service binaries",
        &["cargo", "build", "--profile", profile, "--bins", "--locked"],
    )?;
    let dir = target_dir().join(if profile == "dev" { "debug" } else { profile });
    // The collector and remediator are SERVING once the Kubernetes API
    // answers (the collector once it has listed everything): they need the
    // local cluster, started here unless one runs.
    crate::cluster::with_cluster(3, |cluster| {
        let kubeconfig = cluster.kubeconfig.to_string_lossy().into_owned();
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async move {
        println!("{:<20} {:>10} {:>10} {:>10} {:>12}", "SERVICE", "START p50", "START max", "IDLE RSS", "TARGETS MET");
        let mut peers = Vec::new();
        for (binary, grpc_service) in SERVICES {
            let env: &[(&str, &str)] = match binary {
                "nanny-collector" => &[("NANNY_KUBERNETES__KUBECONFIG", &kubeconfig)],
                "nanny-remediator" => &[("NANNY_KUBECONFIG", &kubeconfig)],
                _ => &[],
            };
            let (startups, process) = measure_startup(&dir.join(binary), grpc_service, env, runs).await?;
            peers.push(process);
            tokio::time::sleep(idle).await;
            report(binary, &startups, peers.last().context("peer")?.rss_kib()?);
        }
        // The coordinator is SERVING only once all four peers answer, so
        // its start-up includes one full probe round against them.
        let urls: Vec<String> = peers.iter().map(ServiceProcess::grpc_url).collect();
        let env = [
            ("NANNY_PEERS__COLLECTOR", urls[0].as_str()),
            ("NANNY_PEERS__ANALYZER", urls[1].as_str()),
            ("NANNY_PEERS__SAFETY_GATE", urls[2].as_str()),
            ("NANNY_PEERS__REMEDIATOR", urls[3].as_str()),
            // Its HealingPolicy watches need the API server, like in a pod.
            ("NANNY_KUBERNETES__KUBECONFIG", kubeconfig.as_str()),
        ];
        let (startups, coordinator) = measure_startup(&dir.join("nanny-coordinator"), "", &env, runs).await?;
        tokio::time::sleep(idle).await;
        report("nanny-coordinator", &startups, coordinator.rss_kib()?);
        println!("profile: {profile}; start = spawn until grpc.health.v1 answers SERVING (polled every 2 ms); RSS from /proc after {idle:?} idle");
        Ok(())
    })
    })
}

/// Starts `binary` `runs` times; keeps the last process running for the RSS reading.
async fn measure_startup(
    binary: &std::path::Path,
    grpc_service: &str,
    env: &[(&str, &str)],
    runs: usize,
) -> anyhow::Result<(Vec<Duration>, ServiceProcess)> {
    let mut startups = Vec::with_capacity(runs);
    for run in 0..runs {
        let process = ServiceProcess::spawn(binary, env).await?;
        startups.push(
            process
                .wait_serving(grpc_service, Duration::from_secs(10))
                .await?,
        );
        if run + 1 == runs {
            return Ok((startups, process));
        }
        let status = process.terminate().await?;
        anyhow::ensure!(
            status.success(),
            "{} exited with {status} on SIGTERM",
            binary.display()
        );
    }
    unreachable!("runs > 0 is checked by the caller")
}

fn report(binary: &str, startups: &[Duration], rss_kib: u64) {
    let mut sorted = startups.to_vec();
    sorted.sort();
    let p50 = sorted[sorted.len() / 2];
    let max = sorted[sorted.len() - 1];
    let met = max <= Duration::from_millis(200) && rss_kib <= 20 * 1024;
    println!(
        "{binary:<20} {:>8.1}ms {:>8.1}ms {:>7.1}MiB {:>12}",
        p50.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        rss_kib as f64 / 1024.0,
        if met { "yes" } else { "NO" }
    );
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from)
}
