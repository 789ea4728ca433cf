//! `cargo xtask cluster build|up|down|status`: a real Kubernetes control
//! plane (etcd, kube-apiserver with RBAC, controller-manager, scheduler),
//! kwok simulating nodes and pods, and Prometheus scraping kwok's emulated
//! kubelet metrics — all local processes started by kwokctl's binary runtime.

pub mod build;
mod node;

pub use node::{import as import_image, running as real_node_running};

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use nanny_test_util::{
    cluster::{ClusterInfo, state_dir, wait_nodes_ready},
    real_node::NODE_NAME,
    tools::{ETCD_VERSION, KUBERNETES_VERSION, KWOK, KWOKCTL, etcd_dir, kubernetes_dir},
};

/// kwokctl's name for the cluster.
const NAME: &str = "nanny";

/// What to do with the cluster.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Build and cache the control plane, kwok, helm, grpcurl and buf (and install Prometheus).
    Build,
    /// Start the cluster and wait for its nodes to be Ready.
    Up {
        /// Number of fake nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// Skip the real node (kubelet and containerd) next to them.
        #[arg(long)]
        no_real_node: bool,
    },
    /// Stop everything `up` started and remove its state.
    Down,
    /// Say what runs where.
    Status,
}

pub fn run(action: Action) -> anyhow::Result<()> {
    match action {
        Action::Build => build::all(),
        Action::Up {
            nodes,
            no_real_node,
        } => up(nodes, !no_real_node).map(|_| ()),
        Action::Down => down(),
        Action::Status => status(),
    }
}

fn kwokctl() -> Command {
    let mut command = Command::new(KWOKCTL.binary());
    let kube = kubernetes_dir().join("bin");
    command
        .env("KWOK_WORKDIR", state_dir())
        .env("KWOK_RUNTIME", "binary")
        .env("KWOK_KUBE_VERSION", KUBERNETES_VERSION)
        .env("KWOK_KUBE_BINARY_PREFIX", &kube)
        .env("KWOK_KUBECTL_BINARY", kube.join("kubectl"))
        .env("KWOK_ETCD_BINARY", etcd_dir().join("bin/etcd"))
        .env("KWOK_ETCD_VERSION", ETCD_VERSION.trim_start_matches('v'))
        .env("KWOK_CONTROLLER_BINARY", KWOK.binary())
        .env("KWOK_PROMETHEUS_BINARY", "/usr/bin/prometheus")
        .args(["--name", NAME]);
    command
}

/// Runs kwokctl, keeping its (JSON) chatter in a log file unless it fails.
fn kwokctl_step(what: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = kwokctl()
        .args(args)
        .output()
        .with_context(|| format!("{what}: cannot run kwokctl"))?;
    let log = state_dir().join("kwokctl.log");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    let _ = std::fs::create_dir_all(state_dir());
    let _ = std::fs::write(&log, &text);
    anyhow::ensure!(
        output.status.success(),
        "{what} failed ({}). kwokctl said:\n{}\nComponent logs: {}",
        output.status,
        text.lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n"),
        cluster_dir().join("logs").display()
    );
    Ok(())
}

fn cluster_dir() -> PathBuf {
    state_dir().join("clusters").join(NAME)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts the cluster (building what is missing) and returns what runs where.
/// Runs `work` against the local cluster: the running one (whatever its
/// node count), or one started with `nodes` nodes and stopped afterwards,
/// also when `work` fails.
pub fn with_cluster<T>(
    nodes: u32,
    work: impl FnOnce(&ClusterInfo) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let started = running()?.is_none();
    let info = up(nodes, true)?;
    let result = work(&info);
    if started {
        // What the real node put on the machine, then what `down` left:
        // nothing, or `down` fails naming it.
        let before = node::leftovers();
        down()?;
        println!(
            "==> the real node had {} processes, mounts, chains, cgroups and a bridge on this machine; down left none",
            before.len()
        );
    }
    result
}

#[expect(
    clippy::too_many_lines,
    reason = "the cluster's start-up steps in order, each printed"
)]
pub fn up(nodes: u32, real_node: bool) -> anyhow::Result<ClusterInfo> {
    anyhow::ensure!(
        (1..=1000).contains(&nodes),
        "--nodes must be between 1 and 1000"
    );
    build::all()?;
    if let Some(info) = running()? {
        println!("==> cluster {NAME} is already running");
        print_usage(&info);
        return Ok(info);
    }
    if ClusterInfo::load()?.is_some() || cluster_dir().exists() {
        println!("==> removing a stale cluster {NAME}");
        down()?;
    }
    let started = Instant::now();
    let dir = state_dir();
    std::fs::create_dir_all(&dir)?;

    let apiserver_port = free_port()?;
    let kwok_port = free_port()?;
    let prometheus_port = free_port()?;
    // Copies, so the running cluster never depends on the checkout it came from.
    let stages = dir.join("kwok-stages.yaml");
    let metrics = dir.join("kwok-metrics.yaml");
    std::fs::copy("deploy/kwok/stages.yaml", &stages).context("deploy/kwok/stages.yaml")?;
    std::fs::copy("deploy/kwok/metrics.yaml", &metrics).context("deploy/kwok/metrics.yaml")?;
    let prometheus_config = dir.join("prometheus.yml");
    std::fs::write(&prometheus_config, prometheus_yaml(kwok_port, None))?;
    // Every write, who made it and how it was answered: the evidence the
    // security tests count from (ClusterInfo::audited_writes).
    let audit_policy = dir.join("audit-policy.yaml");
    std::fs::write(&audit_policy, AUDIT_POLICY)?;
    let config = dir.join("kwokctl.yaml");
    std::fs::write(
        &config,
        kwokctl_yaml(
            apiserver_port,
            kwok_port,
            prometheus_port,
            &stages,
            &metrics,
            &prometheus_config,
            &audit_policy,
        ),
    )?;

    println!(
        "==> starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, prometheus"
    );
    let scratch_kubeconfig = dir.join("kwokctl-merged-kubeconfig");
    let config_arg = config.to_string_lossy().into_owned();
    let scratch_arg = scratch_kubeconfig.to_string_lossy().into_owned();
    kwokctl_step(
        "kwokctl create cluster",
        &[
            "create",
            "cluster",
            "--config",
            &config_arg,
            "--kubeconfig",
            &scratch_arg,
            "--wait",
            "120s",
        ],
    )?;
    let nodes_arg = nodes.to_string();
    kwokctl_step(
        "kwokctl scale node",
        &["scale", "node", "--replicas", &nodes_arg],
    )?;

    let apiserver_url = format!("https://127.0.0.1:{apiserver_port}");
    if real_node {
        println!(
            "==> starting the real node {NODE_NAME}: containerd, kube-proxy, CoreDNS and kubelet"
        );
        let started = node::up(&cluster_dir().join("pki"), &apiserver_url).and_then(|scrape| {
            // Prometheus scrapes the real kubelet too, now that its
            // certificates exist.
            std::fs::write(
                &prometheus_config,
                prometheus_yaml(kwok_port, Some(&scrape)),
            )?;
            scrape_real_node(prometheus_port)
        });
        if let Err(error) = started {
            // Stop what was started; the logs stay for reading.
            let logs = std::env::temp_dir().join("nanny-real-node-logs");
            let _ = std::fs::remove_dir_all(&logs);
            let _ = crate::cmd::quiet(
                Command::new("cp")
                    .arg("-r")
                    .arg(node::logs_dir())
                    .arg(&logs),
            );
            let _ = down();
            return Err(error.context(format!(
                "the real node did not start; everything `cluster up` started is stopped; its logs: {}",
                logs.display()
            )));
        }
    }
    let info = ClusterInfo {
        kubeconfig: cluster_dir().join("kubeconfig.yaml"),
        apiserver_url,
        prometheus_url: format!("http://127.0.0.1:{prometheus_port}"),
        kwok_url: format!("http://127.0.0.1:{kwok_port}"),
        kubectl: kubernetes_dir().join("bin/kubectl"),
        nodes,
        audit_log: cluster_dir().join("logs/audit.log"),
        real_node: real_node.then(|| NODE_NAME.to_owned()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ready_after = runtime
        .block_on(async {
            let client = info.client().await?;
            let want = nodes as usize + usize::from(real_node);
            wait_nodes_ready(&client, want, Duration::from_secs(90)).await
        })
        .with_context(|| {
            if real_node {
                format!("the real node's logs: {}", node::logs_dir().display())
            } else {
                String::new()
            }
        })?;
    std::fs::write(ClusterInfo::path(), serde_json::to_string_pretty(&info)?)?;
    println!(
        "==> cluster {NAME} up: {nodes} kwok nodes{} Ready in {:.1?} ({:.1?} after the API answered)",
        if real_node { " and the real node" } else { "" },
        started.elapsed(),
        ready_after
    );
    print_usage(&info);
    Ok(info)
}

fn print_usage(info: &ClusterInfo) {
    println!("    export KUBECONFIG={}", info.kubeconfig.display());
    println!("    {} get nodes", info.kubectl.display());
    println!(
        "    API server: {}   Prometheus: {}   kwok: {}",
        info.apiserver_url, info.prometheus_url, info.kwok_url
    );
    println!("    stop with: cargo xtask cluster down");
}

/// The recorded cluster, if its API server answers.
pub fn running() -> anyhow::Result<Option<ClusterInfo>> {
    // A cluster whose Prometheus died is not usable (the collector's
    // metrics come from it): it counts as stale and is started afresh.
    Ok(ClusterInfo::load()?.filter(|info| apiserver_answers(info) && prometheus_ready(info)))
}

/// Has Prometheus reload its configuration (SIGHUP) and waits until it has
/// scraped the real kubelet.
fn scrape_real_node(prometheus_port: u16) -> anyhow::Result<()> {
    let (_, pid) = recorded_pids()
        .into_iter()
        .find(|(component, _)| component == "prometheus")
        .context("Prometheus is not running (no pid file of kwokctl's names it)")?;
    crate::cmd::quiet(Command::new("kill").args(["-HUP", &pid.to_string()]))?;
    let address = SocketAddr::from(([127, 0, 0, 1], prometheus_port));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let targets = http_get(
            address,
            "/api/v1/targets?scrapePool=real-kubelet&state=active",
        );
        if targets
            .as_deref()
            .is_some_and(|t| t.contains(r#""health":"up""#))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "Prometheus did not scrape the real kubelet within 60 s; its targets: {}; its log: {}",
                targets.as_deref().unwrap_or("(no answer)"),
                cluster_dir().join("logs/prometheus.log").display()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Whether Prometheus answers `GET /-/ready` with 200 within 3 s.
fn prometheus_ready(info: &ClusterInfo) -> bool {
    info.prometheus_url
        .strip_prefix("http://")
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .is_some_and(|address| http_ok(address, "/-/ready"))
}

/// Whether `GET path` on `address` answers 200 within a few seconds.
fn http_ok(address: SocketAddr, path: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let timeout = Duration::from_secs(3);
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    if write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

/// The whole answer (head and body) to `GET path` on `address`, read within
/// a few seconds.
fn http_get(address: SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let timeout = Duration::from_secs(3);
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

fn apiserver_answers(info: &ClusterInfo) -> bool {
    Command::new(&info.kubectl)
        .arg("--kubeconfig")
        .arg(&info.kubeconfig)
        .args(["get", "--raw", "/readyz", "--request-timeout=3s"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Stops exactly the processes `up` started (kwokctl's pid files) and removes the state.
pub fn down() -> anyhow::Result<()> {
    let node_processes = node::down();
    let pids = recorded_pids();
    if cluster_dir().exists() {
        let scratch = state_dir()
            .join("kwokctl-merged-kubeconfig")
            .to_string_lossy()
            .into_owned();
        if let Err(error) = kwokctl_step(
            "kwokctl delete cluster",
            &["delete", "cluster", "--kubeconfig", &scratch],
        ) {
            eprintln!("warning: {error:#}");
        }
    }
    // Whatever kwokctl could not stop, stop by pid: nothing may outlive `down`.
    let deadline = Instant::now() + Duration::from_secs(10);
    for (component, pid) in &pids {
        if stop_process(*pid, deadline) {
            eprintln!("warning: {component} (pid {pid}) needed SIGKILL");
        }
    }
    let dir = state_dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let left = node::leftovers();
    anyhow::ensure!(
        left.is_empty(),
        "cluster down left the real node's {} behind:\n  {}",
        left.len(),
        left.join("\n  ")
    );
    println!(
        "==> cluster {NAME} down ({} processes stopped, state removed, nothing of the real node left)",
        pids.len() + node_processes
    );
    Ok(())
}

/// (component, pid) from kwokctl's pid files, keeping only pids that still
/// run a binary from this cluster's `bin/` (a stale pid may belong to anything).
fn recorded_pids() -> Vec<(String, u32)> {
    let Ok(entries) = std::fs::read_dir(cluster_dir().join("pids")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let pid = std::fs::read_to_string(e.path())
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let name = e.path().file_stem()?.to_string_lossy().into_owned();
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            let ours = std::fs::read_dir(cluster_dir().join("bin"))
                .ok()?
                .filter_map(Result::ok)
                .any(|bin| std::fs::canonicalize(bin.path()).is_ok_and(|target| target == exe));
            ours.then_some((name, pid))
        })
        .collect()
}

/// Sends `pid` SIGTERM until it ends or `deadline` passes, then SIGKILL;
/// whether SIGKILL was needed.
fn stop_process(pid: u32, deadline: Instant) -> bool {
    while process_alive(pid) && Instant::now() < deadline {
        let _ = Command::new("kill").arg(pid.to_string()).status();
        std::thread::sleep(Duration::from_millis(200));
    }
    let stuck = process_alive(pid);
    if stuck {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    stuck
}

/// Whether `pid` runs and is not a zombie.
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

fn status() -> anyhow::Result<()> {
    let Some(info) = ClusterInfo::load()? else {
        println!("cluster {NAME}: not running (start it with `cargo xtask cluster up`)");
        return Ok(());
    };
    let answering = apiserver_answers(&info);
    println!(
        "cluster {NAME}: {}",
        if answering {
            "running"
        } else {
            "NOT answering"
        }
    );
    println!("  kubeconfig  {}", info.kubeconfig.display());
    println!("  apiserver   {}", info.apiserver_url);
    println!("  prometheus  {}", info.prometheus_url);
    println!("  kwok        {}", info.kwok_url);
    println!("  nodes       {}", info.nodes);
    let mut pids = recorded_pids();
    pids.sort();
    for (component, pid) in pids {
        let state = if process_alive(pid) {
            "running"
        } else {
            "DEAD"
        };
        println!(
            "  {component:<24} pid {pid:<8} {state}   log {}",
            cluster_dir()
                .join("logs")
                .join(format!("{component}.log"))
                .display()
        );
    }
    Ok(())
}

fn kwokctl_yaml(
    apiserver_port: u16,
    kwok_port: u16,
    prometheus_port: u16,
    stages: &Path,
    metrics: &Path,
    prometheus: &Path,
    audit_policy: &Path,
) -> String {
    format!(
        r#"# Written by `cargo xtask cluster up`.
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  bindAddress: 127.0.0.1
  kubeVersion: {KUBERNETES_VERSION}
  kubeApiserverPort: {apiserver_port}
  kwokControllerPort: {kwok_port}
  prometheusPort: {prometheus_port}
  kubeAuditPolicy: {audit_policy}
  # Pods reach the API server through the `kubernetes` Service's address.
  kubeApiserverCertSANs: [{api_service_ip}]
componentsPatches:
- name: kube-apiserver
  extraArgs:
  # The real node's pods reach it at the host's address (kube-proxy
  # forwards the `kubernetes` Service there); the other components stay on
  # 127.0.0.1.
  - key: bind-address
    value: 0.0.0.0
    override: true
  # The real node's kubelet by its address, not a host name nobody resolves,
  # with a certificate from the cluster's CA (kubelet logs and exec).
  - key: kubelet-preferred-address-types
    value: InternalIP
  - key: kubelet-client-certificate
    value: {pki}/admin.crt
  - key: kubelet-client-key
    value: {pki}/admin.key
- name: kube-controller-manager
  extraArgs:
  # No metrics API feeds the HPA controller here; without it, HPA status
  # written by the fault library stays as written.
  - key: controllers
    value: "*,-horizontalpodautoscaling"
  # One instance: nothing to elect. With election on, a lease renewal that
  # misses its deadline on a loaded machine ends the process for good.
  - key: leader-elect
    value: "false"
- name: kube-scheduler
  extraArgs:
  - key: leader-elect
    value: "false"
- name: kwok-controller
  extraArgs:
  # Its own nodes only: the real node has a kubelet.
  - key: manage-all-nodes
    value: "false"
    override: true
  - key: manage-nodes-with-annotation-selector
    value: kwok.x-k8s.io/node=fake
  # Nanny's fault stages and emulated kubelet metrics, next to kwok's defaults.
  - key: config
    value: {stages}
  - key: config
    value: {metrics}
- name: prometheus
  extraArgs:
  - key: config.file
    value: {prometheus}
    override: true
"#,
        stages = stages.display(),
        metrics = metrics.display(),
        prometheus = prometheus.display(),
        audit_policy = audit_policy.display(),
        pki = cluster_dir().join("pki").display(),
        api_service_ip = node::API_SERVICE_IP,
    )
}

/// The API server's audit policy: writes only, at Metadata level (who, what,
/// the answer), without the control plane's own churn.
const AUDIT_POLICY: &str = r#"# Written by `cargo xtask cluster up`.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
- level: None
  resources:
  - group: coordination.k8s.io
    resources: ["leases"]
  - group: ""
    resources: ["events", "nodes/status", "pods/status"]
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
"#;

/// Prometheus scrapes kwok's emulated kubelets every 5 s, discovering them
/// (one target per node and Metric) every 5 s, and the real node's kubelet
/// (its resource metrics: the containers' CPU and working set; and its
/// root cgroup's filesystem usage from cAdvisor) when there is one.
fn prometheus_yaml(kwok_port: u16, real_node: Option<&node::Scrape>) -> String {
    // The real kubelet's resource metrics, and of its cAdvisor metrics
    // only the root cgroup's filesystem usage (the built-in
    // node_fs_used_bytes): the rest repeats the resource metrics' CPU and
    // memory series, which sums would count twice.
    let real_node = real_node.map_or_else(String::new, |scrape| {
        let job = |name: &str, path: &str, keep: &str| {
            format!(
                r#"- job_name: {name}
  scheme: https
  metrics_path: {path}
  static_configs:
  - targets: ["{kubelet}"]
    labels: {{ node: {NODE_NAME} }}
  tls_config:
    ca_file: {ca}
    cert_file: {cert}
    key_file: {key}
{keep}"#,
                kubelet = scrape.kubelet,
                ca = scrape.ca.display(),
                cert = scrape.cert.display(),
                key = scrape.key.display(),
            )
        };
        job("real-kubelet", "/metrics/resource", "")
            + &job(
                "real-kubelet-cadvisor",
                "/metrics/cadvisor",
                "  metric_relabel_configs:\n  - source_labels: [__name__, id]\n    regex: container_fs_usage_bytes;/\n    action: keep\n",
            )
    });
    format!(
        r#"# Written by `cargo xtask cluster up`.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
scrape_configs:
- job_name: kwok-kubelets
  http_sd_configs:
  - url: http://127.0.0.1:{kwok_port}/discovery/prometheus
    refresh_interval: 5s
- job_name: kwok-controller
  static_configs:
  - targets: ["127.0.0.1:{kwok_port}"]
{real_node}"#
    )
}
