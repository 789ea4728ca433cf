//! The real node: Debian's containerd, runc and CNI plugins, and a kubelet
//! built from the control plane's own module, registered next to the kwok
//! nodes with a certificate from the cluster's CA.
//!
//! Pods reach the API server through the `kubernetes` Service (kube-proxy,
//! built from the same module) and one another's Services by name (CoreDNS
//! on the host's address, the kubelet's cluster DNS).
//!
//! It is labelled `nanny.ai/node=real` and tainted
//! `nanny.ai/real-node=true:NoSchedule`: only pods that ask for it run
//! there, so kwok-simulated workloads (and the scale tests) stay on kwok,
//! and kwok manages only its own nodes (annotation `kwok.x-k8s.io/node`).
//! Images come from no registry: `up` builds and imports a pause image and
//! the fault app's (see [`crate::images`]).
//!
//! `down` stops exactly what `up` started (kubelet, kube-proxy, CoreDNS,
//! containerd, its shims and the containers) and removes the CNI bridge,
//! the iptables chains of the CNI plugins, kube-proxy and the kubelet, the
//! pods' cgroups and every mount
//! under the node's directories.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use nanny_test_util::{
    cluster::state_dir,
    real_node::{FAULT_IMAGE, LABEL, NODE_NAME, PAUSE_IMAGE, TAINT_KEY},
    tools::{coredns_dir, kubelet_dir},
};

use super::build::{BUSYBOX, CNI_BIN_DIR};
use crate::cmd::quiet;

/// Sockets and runtime state: short paths (a unix socket path has at most
/// 107 bytes).
const RUN_DIR: &str = "/run/nanny-node";
/// The CNI bridge.
const BRIDGE: &str = "nanny0";
/// The pods' addresses.
const POD_SUBNET: &str = "10.88.0.0/16";
/// The `kubernetes` Service's address: the first of kwokctl's Service
/// range (10.0.0.0/24); the API server's certificate names it.
pub const API_SERVICE_IP: &str = "10.0.0.1";
/// The cluster's DNS domain.
const CLUSTER_DOMAIN: &str = "cluster.local";

fn node_dir() -> PathBuf {
    state_dir().join("real-node")
}

fn socket() -> String {
    format!("{RUN_DIR}/containerd.sock")
}

/// Where Prometheus scrapes the real kubelet: its address, and the files of
/// the client certificate it presents and of the CA that signed both.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub kubelet: SocketAddr,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Starts containerd, kube-proxy, CoreDNS and the kubelet against the API
/// server at `apiserver_url`, whose CA is in `pki`; answers where its
/// metrics are scraped.
///
/// # Errors
/// When a step fails; its message names the step and the log to read.
pub fn up(pki: &Path, apiserver_url: &str) -> anyhow::Result<Scrape> {
    let host = host_ip()?;
    let kubelet = SocketAddr::new(host, super::free_port()?);
    let dir = node_dir();
    for sub in [
        "pki",
        "cni/net.d",
        "cni/ipam",
        "images",
        "logs",
        "pids",
        "kubelet",
        "pods",
    ] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    std::fs::create_dir_all(RUN_DIR)?;
    credentials(pki, apiserver_url, host, &dir)?;
    std::fs::write(dir.join("cni/net.d/10-nanny.conflist"), cni_config(&dir))?;
    start_with_config(
        Command::new("containerd").arg("--config"),
        "containerd",
        &dir.join("containerd.toml"),
        &containerd_config(&dir),
    )?;
    wait_for(
        "containerd's socket",
        "containerd",
        Duration::from_secs(30),
        || {
            ctr()
                .args(["version"])
                .output()
                .is_ok_and(|o| o.status.success())
        },
    )?;
    import_images(&dir)?;
    start_network(host, &dir)?;
    std::fs::write(
        dir.join("kubelet.yaml"),
        kubelet_config(pki, &dir, host, kubelet.port()),
    )?;
    spawn(
        "kubelet",
        Command::new(kubelet_dir().join("bin/kubelet"))
            .arg("--config")
            .arg(dir.join("kubelet.yaml"))
            .arg("--kubeconfig")
            .arg(dir.join("kubeconfig.yaml"))
            .arg("--root-dir")
            .arg(dir.join("kubelet"))
            .args([
                &format!("--hostname-override={NODE_NAME}"),
                &format!("--node-ip={host}"),
                &format!("--node-labels={LABEL}=real"),
                "--v=1",
            ]),
    )?;
    let prometheus = dir.join("pki/prometheus");
    Ok(Scrape {
        kubelet,
        ca: pki.join("ca.crt"),
        cert: prometheus.with_extension("crt"),
        key: prometheus.with_extension("key"),
    })
}

/// Client certificates and kubeconfigs for the kubelet, kube-proxy and
/// CoreDNS; the kubelet's serving certificate for its address `host`, and
/// Prometheus' client certificate for scraping it.
fn credentials(pki: &Path, apiserver_url: &str, host: IpAddr, dir: &Path) -> anyhow::Result<()> {
    let node_user = format!("system:node:{NODE_NAME}");
    let proxy_user = "system:kube-proxy";
    let client = "extendedKeyUsage = clientAuth";
    certificate(
        pki,
        &dir.join("pki/node"),
        &format!("/O=system:nodes/CN={node_user}"),
        client,
    )?;
    certificate(
        pki,
        &dir.join("pki/proxy"),
        &format!("/O=system:node-proxier/CN={proxy_user}"),
        client,
    )?;
    certificate(pki, &dir.join("pki/prometheus"), "/CN=prometheus", client)?;
    // Prometheus checks the kubelet's certificate against the cluster's CA
    // and the address it scrapes.
    certificate(
        pki,
        &dir.join("pki/kubelet"),
        &format!("/CN={NODE_NAME}"),
        &format!("extendedKeyUsage = serverAuth\nsubjectAltName = IP:{host}"),
    )?;
    std::fs::write(
        dir.join("kubeconfig.yaml"),
        kubeconfig(pki, apiserver_url, &node_user, &dir.join("pki/node")),
    )?;
    std::fs::write(
        dir.join("proxy-kubeconfig.yaml"),
        kubeconfig(pki, apiserver_url, proxy_user, &dir.join("pki/proxy")),
    )?;
    // CoreDNS lists Services and EndpointSlices with the cluster admin's
    // certificate, as the control plane's own components do here.
    std::fs::write(
        dir.join("dns-kubeconfig.yaml"),
        kubeconfig(pki, apiserver_url, "kwok-admin", &pki.join("admin")),
    )?;
    Ok(())
}

/// kube-proxy (the Services' iptables rules) and CoreDNS (their names),
/// waiting until CoreDNS has listed the Services.
fn start_network(host: IpAddr, dir: &Path) -> anyhow::Result<()> {
    start_with_config(
        Command::new(kubelet_dir().join("bin/kube-proxy")).arg("--config"),
        "kube-proxy",
        &dir.join("kube-proxy.yaml"),
        &kube_proxy_config(dir)?,
    )?;
    let ready = SocketAddr::from(([127, 0, 0, 1], super::free_port()?));
    start_with_config(
        Command::new(coredns_dir().join("bin/coredns")).arg("-conf"),
        "coredns",
        &dir.join("Corefile"),
        &corefile(host, ready, dir),
    )?;
    wait_for(
        "the cluster DNS",
        "coredns",
        Duration::from_secs(60),
        || super::http_ok(ready, "/ready"),
    )?;
    Ok(())
}

/// The address the host has towards the `kubernetes` Service (its default
/// route's): the node's InternalIP, where the API server advertises itself
/// and where CoreDNS answers the pods.
fn host_ip() -> anyhow::Result<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket
        .connect((API_SERVICE_IP, 443))
        .context("the real node needs a default route (its address is the route's)")?;
    Ok(socket.local_addr()?.ip())
}

/// A key and certificate (`PREFIX.key`, `PREFIX.crt`) for `subject` with
/// the X.509 `extensions` (openssl's config lines), signed by the cluster's
/// CA (kwokctl's, a PKCS#1 RSA key: openssl reads it as it is).
fn certificate(pki: &Path, prefix: &Path, subject: &str, extensions: &str) -> anyhow::Result<()> {
    let key = prefix.with_extension("key");
    let csr = prefix.with_extension("csr");
    let cert = prefix.with_extension("crt");
    let ext = prefix.with_extension("ext");
    std::fs::write(&ext, format!("{extensions}\n"))?;
    quiet(
        Command::new("openssl")
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr)
            .args(["-subj", subject]),
    )?;
    quiet(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "3650", "-sha256"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(pki.join("ca.crt"))
            .arg("-CAkey")
            .arg(pki.join("ca.key"))
            .arg("-extfile")
            .arg(&ext)
            .args(["-CAcreateserial", "-out"])
            .arg(&cert),
    )
}

/// A kubeconfig for `user` with the certificate `PREFIX.crt`/`PREFIX.key`.
fn kubeconfig(pki: &Path, apiserver_url: &str, user: &str, prefix: &Path) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: nanny
  cluster: {{ server: {apiserver_url}, certificate-authority: {ca} }}
users:
- name: {user}
  user: {{ client-certificate: {cert}, client-key: {key} }}
contexts:
- name: node
  context: {{ cluster: nanny, user: {user} }}
current-context: node
",
        ca = pki.join("ca.crt").display(),
        cert = prefix.with_extension("crt").display(),
        key = prefix.with_extension("key").display(),
    )
}

/// kube-proxy in iptables mode for the pods' subnet. Every Service
/// connection is masqueraded, so a pod reaching a pod on the same bridge
/// through a Service gets its answer back through the host. Conntrack's
/// limits are left as the VM has them.
fn kube_proxy_config(dir: &Path) -> anyhow::Result<String> {
    Ok(format!(
        r#"# Written by `cargo xtask cluster up`.
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
hostnameOverride: {NODE_NAME}
mode: iptables
clusterCIDR: {POD_SUBNET}
healthzBindAddress: 127.0.0.1:{healthz}
metricsBindAddress: 127.0.0.1:{metrics}
iptables:
  masqueradeAll: true
  localhostNodePorts: false
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"#,
        kubeconfig = dir.join("proxy-kubeconfig.yaml").display(),
        healthz = super::free_port()?,
        metrics = super::free_port()?,
    ))
}

/// CoreDNS answering the cluster's names on the host's address, ready
/// once it has listed the Services.
fn corefile(host: IpAddr, ready: SocketAddr, dir: &Path) -> String {
    format!(
        r#"# Written by `cargo xtask cluster up`.
.:53 {{
    bind {host}
    ready {ready}
    errors
    cache 5
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
}}
"#,
        kubeconfig = dir.join("dns-kubeconfig.yaml").display(),
    )
}

fn cni_config(dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "nanny",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": POD_SUBNET }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": dir.join("cni/ipam"),
                },
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    })
    .to_string()
}

/// containerd with only what this VM allows: no lowering of oom_score_adj
/// (no CAP_SYS_RESOURCE), cgroupfs, network namespaces under its state.
fn containerd_config(dir: &Path) -> String {
    format!(
        r#"# Written by `cargo xtask cluster up`.
version = 2
root = "{root}"
state = "{RUN_DIR}/state"
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{conf}"
"#,
        root = dir.join("containerd").display(),
        socket = socket(),
        conf = dir.join("cni/net.d").display(),
    )
}

fn kubelet_config(pki: &Path, dir: &Path, dns: IpAddr, port: u16) -> String {
    format!(
        r#"# Written by `cargo xtask cluster up`.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://{socket}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# No CAP_SYS_RESOURCE in this VM: nothing may lower oom_score_adj.
oomScoreAdj: 0
# The API server (logs, exec) and Prometheus (its resource metrics) reach
# it at the node's InternalIP; only clients with a certificate from the
# cluster's CA get in, and its own is from that CA.
address: 0.0.0.0
port: {port}
tlsCertFile: {serving}.crt
tlsPrivateKeyFile: {serving}.key
readOnlyPort: 0
healthzPort: 0
podLogsDir: {logs}
authentication:
  anonymous: {{ enabled: false }}
  webhook: {{ enabled: false }}
  x509: {{ clientCAFile: {ca} }}
authorization: {{ mode: AlwaysAllow }}
registerWithTaints:
- {{ key: {TAINT_KEY}, value: "true", effect: NoSchedule }}
maxPods: 30
clusterDNS: [{dns}]
clusterDomain: {CLUSTER_DOMAIN}
# The machine's disk is shared: evict only when it is really full, and
# never collect the imported images (there is no registry to pull again).
evictionHard: {{ memory.available: 50Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1% }}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
"#,
        socket = socket(),
        serving = dir.join("pki/kubelet").display(),
        logs = dir.join("pods").display(),
        ca = pki.join("ca.crt").display(),
    )
}

/// `ctr` against this node's containerd, in the CRI's namespace.
fn ctr() -> Command {
    let mut command = Command::new("ctr");
    command.args(["--address", &socket(), "--namespace", "k8s.io"]);
    command
}

/// Builds the pause image (a static busybox sleeping) and the fault app's
/// image, and imports them.
fn import_images(dir: &Path) -> anyhow::Result<()> {
    let rootfs = dir.join("images/busybox-rootfs");
    crate::images::busybox_rootfs(Path::new(BUSYBOX), &rootfs)?;
    let pause = crate::images::Image {
        name: PAUSE_IMAGE,
        rootfs: &rootfs,
        entrypoint: &["/bin/busybox", "sleep", "2147483647"],
        user: "65535:65535",
    };
    let archive = crate::images::write(&pause, &dir.join("images"))?;
    import(&archive).with_context(|| format!("importing {PAUSE_IMAGE}"))?;
    // The fault app, from its release binary, as `cargo xtask images`
    // builds every image.
    let fault = crate::images::release_binaries("nanny-fault", &["nanny-fault"])?;
    let (archive, reference) = crate::images::of_binary(&fault[0], &dir.join("images"))?;
    anyhow::ensure!(
        reference == FAULT_IMAGE,
        "the fault app's image is {reference}, the tests expect {FAULT_IMAGE}"
    );
    import(&archive).with_context(|| format!("importing {reference}"))
}

/// Imports an image archive into the node's containerd.
///
/// # Errors
/// When `ctr` refuses it.
pub fn import(archive: &Path) -> anyhow::Result<()> {
    quiet(ctr().args(["images", "import"]).arg(archive))
}

/// Whether this node's containerd answers.
pub fn running() -> bool {
    Path::new(&socket()).exists()
        && ctr()
            .args(["version"])
            .output()
            .is_ok_and(|o| o.status.success())
}

/// Writes `contents` to `config` and [`spawn`]s `command` with its path
/// appended (after the command's config flag).
fn start_with_config(
    command: &mut Command,
    name: &str,
    config: &Path,
    contents: &str,
) -> anyhow::Result<()> {
    std::fs::write(config, contents).with_context(|| format!("writing {}", config.display()))?;
    spawn(name, command.arg(config))
}

/// Starts `command` in its own process group, logging to `logs/NAME.log`,
/// and records its pid.
fn spawn(name: &str, command: &mut Command) -> anyhow::Result<()> {
    let dir = node_dir();
    let log = std::fs::File::create(dir.join("logs").join(format!("{name}.log")))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    std::fs::write(
        dir.join("pids").join(format!("{name}.pid")),
        child.id().to_string(),
    )?;
    Ok(())
}

/// Waits until `ready`; fails at once, with the end of its log, when the
/// process `name` started has exited (a port taken, settings refused).
fn wait_for(
    what: &str,
    name: &str,
    timeout: Duration,
    ready: impl Fn() -> bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let log = node_dir().join("logs").join(format!("{name}.log"));
    let pid = std::fs::read_to_string(node_dir().join("pids").join(format!("{name}.pid")))
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok());
    while !ready() {
        let exited = pid.is_some_and(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |stat| stat.split_whitespace().nth(2) == Some("Z"))
        });
        if exited || started.elapsed() >= timeout {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            anyhow::bail!(
                "{what}: {name} {}; the end of its log ({}):\n  {}",
                if exited {
                    "exited".to_owned()
                } else {
                    format!("not ready after {timeout:?}")
                },
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// The node's log files, for a failed start's message.
pub fn logs_dir() -> PathBuf {
    node_dir().join("logs")
}

/// Stops the kubelet, the containers, containerd's shims and containerd,
/// and removes the bridge, its iptables chains, the pods' cgroups, every
/// mount under the node's directories and the directories. Returns how
/// many processes it stopped.
pub fn down() -> usize {
    let mut stopped = 0;
    stopped += stop_recorded("kubelet");
    stopped += stop_recorded("kube-proxy");
    stopped += stop_recorded("coredns");
    stopped += kill_all(container_pids());
    stopped += kill_all(shim_pids());
    stopped += stop_recorded("containerd");
    // kube-proxy's own clean-up removes its KUBE-* chains and rules.
    let _ = Command::new(kubelet_dir().join("bin/kube-proxy"))
        .arg("--cleanup")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    unmount_all();
    remove_cgroups();
    let _ = Command::new("ip")
        .args(["link", "delete", BRIDGE])
        .stderr(Stdio::null())
        .status();
    // The CNI plugins' chains, and what kube-proxy's clean-up leaves: the
    // kubelet's own (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT).
    remove_chains();
    for dir in node_dirs() {
        if let Err(error) = std::fs::remove_dir_all(&dir)
            && dir.exists()
        {
            eprintln!("warning: cannot remove {}: {error}", dir.display());
        }
    }
    stopped
}

/// Stops the process recorded as `name` if it still runs the binary it
/// was started from; 1 when one was stopped.
fn stop_recorded(name: &str) -> usize {
    let file = node_dir().join("pids").join(format!("{name}.pid"));
    let Some(pid) = std::fs::read_to_string(file)
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
    else {
        return 0;
    };
    let ours = std::fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|exe| exe.file_name().is_some_and(|n| n.to_string_lossy() == name));
    if !ours {
        return 0;
    }
    super::stop_process(pid, Instant::now() + Duration::from_secs(10));
    1
}

fn kill_all(pids: Vec<u32>) -> usize {
    for pid in &pids {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
    pids.len()
}

/// Every process in the pods' cgroups (`kubepods`, in any hierarchy).
fn container_pids() -> Vec<u32> {
    let mut pids = Vec::new();
    for dir in kubepods_cgroups() {
        for entry in walk(&dir) {
            if let Ok(procs) = std::fs::read_to_string(entry.join("cgroup.procs")) {
                pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// containerd's shims serving this node's containerd.
fn shim_pids() -> Vec<u32> {
    pids_where(|cmd| cmd.contains("containerd-shim") && cmd.contains(RUN_DIR))
}

/// The processes whose command line `accept` accepts.
fn pids_where(accept: impl Fn(&str) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| accept(&String::from_utf8_lossy(&cmd)))
        })
        .collect()
}

/// `kubepods` under each cgroup hierarchy (v1) or the unified one (v2).
fn kubepods_cgroups() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut found = Vec::new();
    if root.join("kubepods").is_dir() {
        found.push(root.join("kubepods"));
    }
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.filter_map(Result::ok) {
            let candidate = entry.path().join("kubepods");
            if candidate.is_dir() {
                found.push(candidate);
            }
        }
    }
    found
}

/// `dir` and every directory below it, parents first.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = std::fs::read_dir(&out[i]) {
            out.extend(
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        i += 1;
    }
    out
}

/// The pods' cgroups, children first (a cgroup is removed with rmdir once
/// empty).
fn remove_cgroups() {
    for dir in kubepods_cgroups() {
        for cgroup in walk(&dir).into_iter().rev() {
            let _ = std::fs::remove_dir(&cgroup);
        }
    }
}

/// The node's directories: its state and its short-path runtime directory.
fn node_dirs() -> [PathBuf; 2] {
    [node_dir(), PathBuf::from(RUN_DIR)]
}

/// Every mount point under the node's directories.
fn mounts() -> Vec<String> {
    let dirs = node_dirs();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| dirs.iter().any(|d| Path::new(p).starts_with(d)))
        .collect()
}

/// Unmounts (lazily) every mount point under the node's directories,
/// deepest first.
fn unmount_all() {
    let mut points = mounts();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount")
            .args(["-l", &point])
            .stderr(Stdio::null())
            .status();
    }
}

/// The chains of `table` (`-N` and built-in `-P` lines) as `program`
/// lists them.
fn chains(program: &str, table: &str) -> Vec<String> {
    iptables(program, &["-t", table, "-S"])
        .lines()
        .filter_map(|l| l.strip_prefix("-N ").or_else(|| l.strip_prefix("-P ")))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// `program args…`'s output; empty when it cannot run.
fn iptables(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

const IPTABLES: [&str; 2] = ["iptables", "ip6tables"];
const TABLES: [&str; 3] = ["nat", "filter", "mangle"];
/// The chains the node's CNI plugins, kube-proxy and kubelet create.
const CHAIN_PREFIXES: [&str; 2] = ["CNI-", "KUBE-"];

fn ours(chain: &str) -> bool {
    CHAIN_PREFIXES.iter().any(|p| chain.starts_with(p))
}

/// The node's chains (IPv4 and IPv6; nat, filter and mangle), and the
/// rules that jump to them.
fn remove_chains() {
    for program in IPTABLES {
        let run = |args: &[&str]| iptables(program, args);
        for table in TABLES {
            let chains = chains(program, table);
            // The jumps into our chains from the others, by number, last first.
            for chain in chains.iter().filter(|c| !ours(c)) {
                let listing = run(&["-t", table, "-L", chain, "--line-numbers", "-n"]);
                let mut numbers: Vec<u32> = listing
                    .lines()
                    .filter_map(|l| {
                        let mut fields = l.split_whitespace();
                        let number = fields.next()?.parse().ok()?;
                        ours(fields.next()?).then_some(number)
                    })
                    .collect();
                numbers.sort_unstable_by(|a, b| b.cmp(a));
                for number in numbers {
                    run(&["-t", table, "-D", chain, &number.to_string()]);
                }
            }
            for chain in chains.iter().filter(|c| ours(c)) {
                run(&["-t", table, "-F", chain]);
            }
            for chain in chains.iter().filter(|c| ours(c)) {
                run(&["-t", table, "-X", chain]);
            }
        }
    }
}

/// What of the real node is on this machine, one line each: its processes
/// (kubelet, kube-proxy, CoreDNS, containerd, shims, containers), mounts
/// under its directories, its bridge, iptables chains and pods' cgroups.
/// Empty once `down` has done its work.
pub fn leftovers() -> Vec<String> {
    let dir_names: Vec<String> = node_dirs()
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    let mut found = Vec::new();
    let mut pids = pids_where(|cmd| dir_names.iter().any(|d| cmd.contains(d.as_str())));
    pids.extend(container_pids());
    pids.sort_unstable();
    pids.dedup();
    for pid in pids {
        let command = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        found.push(format!("process {pid}: {}", command.trim()));
    }
    found.extend(mounts().into_iter().map(|p| format!("mount {p}")));
    if Path::new("/sys/class/net").join(BRIDGE).exists() {
        found.push(format!("bridge {BRIDGE}"));
    }
    for program in IPTABLES {
        for table in TABLES {
            found.extend(
                chains(program, table)
                    .into_iter()
                    .filter(|c| ours(c))
                    .map(|c| format!("{program} {table} chain {c}")),
            );
        }
    }
    found.extend(
        kubepods_cgroups()
            .into_iter()
            .map(|c| format!("cgroup {}", c.display())),
    );
    found
}
