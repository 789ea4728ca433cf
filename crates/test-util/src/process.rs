//! Service binaries as child processes on ephemeral loopback ports.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// The path of a workspace binary built next to the running test or xtask
/// (`target/<profile>/<name>`).
///
/// # Panics
/// When the binary is missing: build it first (`cargo build --bins`, which
/// `cargo xtask test` does).
pub fn cargo_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> or target/<profile>/<xtask>
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not found: run `cargo build --bins` first",
        path.display()
    );
    path
}

/// A running service binary. Killed when dropped.
#[derive(Debug)]
pub struct ServiceProcess {
    /// Binary name, for messages.
    pub name: String,
    child: Child,
    /// Bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// Bound HTTP (metrics/probes) address.
    pub http_addr: SocketAddr,
    /// When the process was spawned.
    pub spawned_at: Instant,
    logs: Arc<Mutex<Vec<String>>>,
}

impl ServiceProcess {
    /// Spawns `binary` with JSON logs on `127.0.0.1:0` ports, mutual TLS as
    /// the identity named like the binary (from the test PKI, see
    /// [`crate::pki`]), plus `env`, and waits for its "Listening." line to
    /// learn the bound addresses.
    ///
    /// Inherited `NANNY_*` variables are removed so the caller's environment
    /// cannot change what is tested.
    ///
    /// # Errors
    /// When the process cannot start, exits early, or never reports its addresses.
    pub async fn spawn(binary: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut command = Command::new(binary);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("NANNY_")) {
            command.env_remove(key);
        }
        command
            .env("NANNY_TELEMETRY__LOG_FORMAT", "json")
            .env("NANNY_SERVER__GRPC_ADDR", "127.0.0.1:0")
            .env("NANNY_SERVER__HTTP_ADDR", "127.0.0.1:0")
            .envs(crate::pki::env(&name))
            // Tests that need the gate's audit file give NANNY_AUDIT__PATH.
            .envs((name == "nanny-safety-gate").then_some(("NANNY_AUDIT__EPHEMERAL", "true")))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned_at = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        let logs = Arc::new(Mutex::new(Vec::new()));

        let stderr = child.stderr.take().context("stderr")?;
        let stderr_logs = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                stderr_logs.lock().expect("log lock").push(line);
            }
        });

        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let addrs = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await? {
                logs.lock().expect("log lock").push(line.clone());
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "Listening."
                {
                    let addr = |key: &str| -> anyhow::Result<SocketAddr> {
                        Ok(v[key].as_str().context("address field")?.parse()?)
                    };
                    return Ok::<_, anyhow::Error>((addr("grpc_addr")?, addr("http_addr")?));
                }
            }
            bail!("{name} closed stdout before listening")
        })
        .await
        .with_context(|| format!("{name} did not report its addresses"))?;
        let (grpc_addr, http_addr) = match addrs {
            Ok(addrs) => addrs,
            Err(error) => {
                let logs = logs.lock().expect("log lock").join("\n");
                bail!("{error}\n--- {name} output ---\n{logs}");
            }
        };

        // Keep draining stdout so the child never blocks on a full pipe.
        let stdout_logs = logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                stdout_logs.lock().expect("log lock").push(line);
            }
        });
        Ok(Self {
            name,
            child,
            grpc_addr,
            http_addr,
            spawned_at,
            logs,
        })
    }

    /// `http://` URL of the gRPC port, as peers are configured (a Nanny
    /// client with TLS on upgrades it to mutual TLS).
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// A mutual-TLS channel to this service as `identity` (e.g.
    /// [`nanny_common::tls::COORDINATOR`]), checking the server's
    /// certificate names this binary.
    pub fn channel(&self, identity: &str) -> tonic::transport::Channel {
        crate::pki::channel(self.grpc_addr, identity, &self.name)
    }

    /// OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }

    /// Every line the process printed so far (stdout and stderr).
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("log lock").clone()
    }

    /// The health of `service` ("" for the whole server).
    ///
    /// # Errors
    /// When the health RPC fails.
    pub async fn health(&self, service: &str) -> anyhow::Result<ServingStatus> {
        health_status(self.channel(nanny_common::tls::OPERATOR), service).await
    }

    /// Polls health every 2 ms until SERVING; returns the time since spawn.
    ///
    /// # Errors
    /// When `timeout` passes first.
    pub async fn wait_serving(&self, service: &str, timeout: Duration) -> anyhow::Result<Duration> {
        self.wait_status(service, ServingStatus::Serving, timeout)
            .await
    }

    /// Polls health until it reports `status`; returns the time since spawn.
    ///
    /// # Errors
    /// When `timeout` passes first.
    pub async fn wait_status(
        &self,
        service: &str,
        status: ServingStatus,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            if matches!(self.health(service).await, Ok(s) if s == status) {
                return Ok(self.spawned_at.elapsed());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not report {status:?} within {timeout:?}; logs:\n{}",
                    self.name,
                    self.logs().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Resident set size in KiB, from `/proc`.
    ///
    /// # Errors
    /// When `/proc/<pid>/status` cannot be read.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib_of(self.pid())
    }

    /// Kills the process with SIGKILL (no chance to clean up) and reaps it.
    ///
    /// # Errors
    /// When the process cannot be killed.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// Sends SIGTERM and waits (at most 15 s) for the exit status.
    ///
    /// # Errors
    /// When the signal cannot be sent or the process does not exit in time.
    pub async fn terminate(mut self) -> anyhow::Result<ExitStatus> {
        anyhow::ensure!(self.pid() != 0, "{} has already exited", self.name);
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .await?;
        anyhow::ensure!(status.success(), "kill -TERM {} failed", self.pid());
        Ok(tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await??)
    }
}

/// One `grpc.health.v1.Health/Check` over `channel`, within 2 s.
///
/// # Errors
/// When the connection or the RPC fails.
pub async fn health_status(
    channel: tonic::transport::Channel,
    service: &str,
) -> anyhow::Result<ServingStatus> {
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    // Covers the lazy channel's connect and handshake, not just the call.
    let response = tokio::time::timeout(
        Duration::from_secs(2),
        HealthClient::new(channel).check(request),
    )
    .await??
    .into_inner();
    Ok(response.status())
}

/// The resident set size of process `pid` in KiB.
///
/// # Errors
/// When `/proc/<pid>/status` cannot be read.
pub fn rss_kib_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}
