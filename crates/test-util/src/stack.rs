//! All five services as processes against one cluster, wired as in a real
//! deployment: the end-to-end tests and `cargo xtask demo` start Nanny with
//! this.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::Context as _;

use crate::process::{ServiceProcess, cargo_bin};

/// The services in start order (the coordinator needs the other four).
pub const SERVICES: [(&str, &str); 5] = [
    ("nanny-collector", "nanny.v1.Collector"),
    ("nanny-analyzer", "nanny.v1.Analyzer"),
    ("nanny-safety-gate", "nanny.v1.SafetyGate"),
    ("nanny-remediator", "nanny.v1.Remediator"),
    ("nanny-coordinator", ""),
];

/// How to start the stack.
#[derive(Debug, Clone)]
pub struct Options {
    /// Kubeconfig for the services that talk to the API server.
    pub kubeconfig: PathBuf,
    /// Prometheus URL for the collector.
    pub prometheus_url: String,
    /// The coordinator watches HealingPolicies here and holds its Lease
    /// here; the remediator keeps its action records here.
    pub namespace: String,
    /// Where the gate writes its audit log.
    pub audit_path: PathBuf,
    /// Extra environment per binary, e.g. `("nanny-analyzer", "NANNY_LLM__ENABLED", "true")`.
    pub extra_env: Vec<(&'static str, String, String)>,
}

/// The running services. Every process is killed when the stack is dropped.
#[derive(Debug)]
pub struct Stack {
    options: Options,
    /// By binary name.
    pub services: BTreeMap<&'static str, ServiceProcess>,
    /// The environment each was started with (ports pinned after the first start).
    env: BTreeMap<&'static str, Vec<(String, String)>>,
}

const READY: Duration = Duration::from_secs(90);

impl Stack {
    /// Starts the five services and waits until each is SERVING.
    ///
    /// # Errors
    /// When a service does not start or become ready.
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        let mut stack = Self {
            options,
            services: BTreeMap::new(),
            env: BTreeMap::new(),
        };
        for (binary, _) in SERVICES {
            let env = stack.base_env(binary);
            stack.env.insert(binary, env);
            stack.spawn(binary).await?;
        }
        Ok(stack)
    }

    fn base_env(&self, binary: &'static str) -> Vec<(String, String)> {
        let o = &self.options;
        let kubeconfig = o.kubeconfig.to_string_lossy().into_owned();
        let pairs: Vec<(&str, String)> = match binary {
            "nanny-collector" => vec![
                ("NANNY_KUBERNETES__KUBECONFIG", kubeconfig),
                ("NANNY_PROMETHEUS__URL", o.prometheus_url.clone()),
                ("NANNY_PROMETHEUS__INTERVAL_SECS", "2".to_owned()),
            ],
            "nanny-safety-gate" => vec![
                (
                    "NANNY_AUDIT__PATH",
                    o.audit_path.to_string_lossy().into_owned(),
                ),
                ("NANNY_KUBERNETES__ENABLED", "true".to_owned()),
                ("NANNY_KUBERNETES__KUBECONFIG", kubeconfig),
            ],
            "nanny-remediator" => vec![
                ("NANNY_KUBECONFIG", kubeconfig),
                ("NANNY_STATE_NAMESPACE", o.namespace.clone()),
                ("NANNY_VERIFICATION__STABLE_SECS", "8".to_owned()),
            ],
            "nanny-coordinator" => {
                let url = |b: &str| {
                    self.services
                        .get(b)
                        .map(ServiceProcess::grpc_url)
                        .unwrap_or_default()
                };
                vec![
                    ("NANNY_PEERS__COLLECTOR", url("nanny-collector")),
                    ("NANNY_PEERS__ANALYZER", url("nanny-analyzer")),
                    ("NANNY_PEERS__SAFETY_GATE", url("nanny-safety-gate")),
                    ("NANNY_PEERS__REMEDIATOR", url("nanny-remediator")),
                    ("NANNY_PEERS__PROBE_INTERVAL_MS", "500".to_owned()),
                    ("NANNY_KUBERNETES__KUBECONFIG", kubeconfig),
                    ("NANNY_KUBERNETES__WATCH_NAMESPACE", o.namespace.clone()),
                    ("NANNY_KUBERNETES__LEASE_NAMESPACE", o.namespace.clone()),
                    // A restarted process keeps its identity, as a restarted pod keeps its name.
                    ("NANNY_KUBERNETES__IDENTITY", "coordinator-0".to_owned()),
                    ("NANNY_KUBERNETES__LEASE_DURATION_SECS", "6".to_owned()),
                    ("NANNY_KUBERNETES__LEASE_RENEW_SECS", "1".to_owned()),
                    ("NANNY_ACTIONS__SWEEP_INTERVAL_SECS", "1".to_owned()),
                    ("NANNY_ACTIONS__RETRY_BACKOFF_MS", "500".to_owned()),
                ]
            }
            _ => Vec::new(),
        };
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain(
                o.extra_env
                    .iter()
                    .filter(|(b, _, _)| *b == binary)
                    .map(|(_, k, v)| (k.clone(), v.clone())),
            )
            .collect()
    }

    async fn spawn(&mut self, binary: &'static str) -> anyhow::Result<()> {
        let env = self.env.get(binary).cloned().unwrap_or_default();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let process = ServiceProcess::spawn(&cargo_bin(binary), &pairs)
            .await
            .with_context(|| format!("starting {binary}"))?;
        let service = SERVICES
            .iter()
            .find(|(b, _)| *b == binary)
            .map_or("", |(_, s)| *s);
        process.wait_serving(service, READY).await?;
        // Later restarts come back on the same ports, as a pod behind its Service would.
        let entry = self.env.entry(binary).or_default();
        entry.retain(|(k, _)| k != "NANNY_SERVER__GRPC_ADDR" && k != "NANNY_SERVER__HTTP_ADDR");
        entry.push((
            "NANNY_SERVER__GRPC_ADDR".to_owned(),
            process.grpc_addr.to_string(),
        ));
        entry.push((
            "NANNY_SERVER__HTTP_ADDR".to_owned(),
            process.http_addr.to_string(),
        ));
        self.services.insert(binary, process);
        Ok(())
    }

    /// The running process of `binary`.
    ///
    /// # Panics
    /// When `binary` is not one of [`SERVICES`].
    pub fn get(&self, binary: &str) -> &ServiceProcess {
        &self.services[binary]
    }

    /// Kills `binary` with SIGKILL and starts it again on the same ports.
    ///
    /// # Errors
    /// When it cannot be killed or does not come back.
    pub async fn kill_and_restart(&mut self, binary: &'static str) -> anyhow::Result<()> {
        if let Some(process) = self.services.remove(binary) {
            process.kill().await?;
        }
        self.spawn(binary).await
    }

    /// Sets `key` in `binary`'s environment for its next (re)start.
    pub fn set_env(&mut self, binary: &'static str, key: &str, value: &str) {
        let entry = self.env.entry(binary).or_default();
        entry.retain(|(k, _)| k != key);
        entry.push((key.to_owned(), value.to_owned()));
    }

    /// Starts another replica of `binary` on fresh ports with the same
    /// configuration, `overrides` applied last (e.g. a second coordinator
    /// with its own identity).
    ///
    /// # Errors
    /// When it does not start or become ready.
    pub async fn spawn_replica(
        &self,
        binary: &'static str,
        overrides: &[(&str, &str)],
    ) -> anyhow::Result<ServiceProcess> {
        let env: Vec<(String, String)> = self
            .env
            .get(binary)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k != "NANNY_SERVER__GRPC_ADDR" && k != "NANNY_SERVER__HTTP_ADDR")
            .chain(
                overrides
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            )
            .collect();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let process = ServiceProcess::spawn(&cargo_bin(binary), &pairs)
            .await
            .with_context(|| format!("starting a replica of {binary}"))?;
        process.wait_serving("", READY).await?;
        Ok(process)
    }

    /// Every service's logs, for failure messages.
    pub fn logs(&self) -> String {
        self.services
            .iter()
            .map(|(name, p)| format!("--- {name} ---\n{}", p.logs().join("\n")))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
