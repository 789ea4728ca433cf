//! Coordinator configuration.

use std::time::Duration;

use nanny_common::{
    Error,
    config::{ServerConfig, ServiceConfig, TelemetryConfig, validate_url},
};
use serde::{Deserialize, Serialize};

/// Everything the coordinator reads at start-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen addresses (defaults: gRPC 50055, HTTP 9095).
    pub server: ServerConfig,
    /// Logging and tracing.
    pub telemetry: TelemetryConfig,
    /// Mutual TLS for the gRPC server and its clients.
    pub tls: nanny_common::tls::TlsConfig,
    /// Where the other services are.
    pub peers: PeersConfig,
    /// The API server and the leader Lease.
    pub kubernetes: KubernetesConfig,
    /// How actions are driven.
    pub actions: ActionsConfig,
}

/// Section `kubernetes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Kubeconfig file; empty: in-cluster ServiceAccount, then `$KUBECONFIG`,
    /// then `~/.kube/config`.
    pub kubeconfig: String,
    /// Only HealingPolicies (and their HealingActions) in this namespace;
    /// empty: all namespaces.
    pub watch_namespace: String,
    /// Namespace of the leader Lease (the release namespace in the chart).
    pub lease_namespace: String,
    /// Name of the leader Lease.
    pub lease_name: String,
    /// This replica's identity; empty: `$POD_NAME`, then the host name and
    /// process id. A restarted pod keeps its name and so retakes its lease
    /// at once.
    pub identity: String,
    /// How long the lease holds without renewal.
    pub lease_duration_secs: u64,
    /// How often the leader renews.
    pub lease_renew_secs: u64,
}

impl KubernetesConfig {
    /// The identity to hold the lease under.
    pub fn identity(&self) -> String {
        if !self.identity.is_empty() {
            return self.identity.clone();
        }
        if let Ok(pod) = std::env::var("POD_NAME")
            && !pod.is_empty()
        {
            return pod;
        }
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "coordinator".to_owned());
        format!("{host}-{}", std::process::id())
    }
}

/// Section `actions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsConfig {
    /// Most actions driven at once; the rest wait (the remediator verifies
    /// each for up to the policy's verification timeout).
    pub max_in_flight: usize,
    /// Execute calls per action before it is marked Failed.
    pub max_attempts: u32,
    /// Wait between Execute retries while the remediator is unavailable.
    pub retry_backoff_ms: u64,
    /// How long a review retries while the gate is unavailable before the
    /// action is denied.
    pub review_retry_secs: u64,
    /// How long a review waits for a first snapshot of the policy's scope.
    pub snapshot_wait_secs: u64,
    /// Longest wait for one analysis (the LLM included).
    pub analyze_timeout_secs: u64,
    /// Longest wait for one Execute (verification included); at least the
    /// longest policy verification timeout.
    pub execute_timeout_secs: u64,
    /// How often expiries, resumptions and policy statuses are checked.
    pub sweep_interval_secs: u64,
    /// How long a finished HealingAction is kept before it is deleted; 0
    /// keeps them forever. At least two days, so the safety gate can always
    /// rebuild its limits (rates, cooldowns, breakers) from them.
    pub retention_secs: u64,
    /// Least time between two retention sweeps.
    pub retention_sweep_secs: u64,
    /// How long an action a PodDisruptionBudget blocked waits before it
    /// tries again (nothing was written; the budget may allow it later).
    pub blocked_retry_secs: u64,
    /// How many blocked tries an action gets before it is escalated to a
    /// human (Failed, reason `DisruptionBudgetBlocked`); never past its
    /// verdict's expiry.
    pub blocked_tries: u32,
}

impl ActionsConfig {
    /// [`Self::review_retry_secs`] as a duration.
    pub fn review_retry_for(&self) -> Duration {
        Duration::from_secs(self.review_retry_secs)
    }

    /// [`Self::snapshot_wait_secs`] as a duration.
    pub fn snapshot_wait(&self) -> Duration {
        Duration::from_secs(self.snapshot_wait_secs)
    }

    /// [`Self::sweep_interval_secs`] as a duration.
    pub fn sweep(&self) -> Duration {
        Duration::from_secs(self.sweep_interval_secs)
    }

    /// [`Self::retry_backoff_ms`] as a duration.
    pub fn retry_backoff(&self) -> Duration {
        Duration::from_millis(self.retry_backoff_ms)
    }
}

/// Section `peers`: gRPC URLs of the services the coordinator wires together.
/// In Kubernetes these are Service DNS names; the analyzer's is headless so
/// calls spread over its replicas, and each model question goes to the
/// replica that owns its incident.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeersConfig {
    /// Collector URL.
    pub collector: String,
    /// Analyzer URL.
    pub analyzer: String,
    /// Every analyzer replica's URL, where DNS cannot list them (processes
    /// outside Kubernetes). Empty: the replicas are the addresses
    /// `analyzer`'s host name resolves to.
    #[serde(default)]
    pub analyzer_replicas: Vec<String>,
    /// Safety gate URL.
    pub safety_gate: String,
    /// Remediator URL.
    pub remediator: String,
    /// Connect and request deadline per call.
    pub timeout_ms: u64,
    /// How often peers' health is probed.
    pub probe_interval_ms: u64,
}

impl PeersConfig {
    /// [`Self::probe_interval_ms`] as a duration.
    pub fn probe_interval(&self) -> Duration {
        Duration::from_millis(self.probe_interval_ms)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50055, 9095),
            telemetry: TelemetryConfig::default(),
            tls: nanny_common::tls::TlsConfig::default(),
            peers: PeersConfig {
                collector: "http://127.0.0.1:50051".to_owned(),
                analyzer: "http://127.0.0.1:50052".to_owned(),
                analyzer_replicas: Vec::new(),
                safety_gate: "http://127.0.0.1:50053".to_owned(),
                remediator: "http://127.0.0.1:50054".to_owned(),
                timeout_ms: 2000,
                probe_interval_ms: 2000,
            },
            kubernetes: KubernetesConfig {
                kubeconfig: String::new(),
                watch_namespace: String::new(),
                lease_namespace: "nanny-system".to_owned(),
                lease_name: "nanny-coordinator".to_owned(),
                identity: String::new(),
                lease_duration_secs: 15,
                lease_renew_secs: 2,
            },
            actions: ActionsConfig {
                max_in_flight: 32,
                max_attempts: 20,
                retry_backoff_ms: 2000,
                review_retry_secs: 15,
                snapshot_wait_secs: 30,
                analyze_timeout_secs: 60,
                execute_timeout_secs: 3700,
                sweep_interval_secs: 5,
                retention_secs: 30 * 86_400,
                retention_sweep_secs: 60,
                blocked_retry_secs: 30,
                blocked_tries: 10,
            },
        }
    }
}

/// The shortest retention: longer than any window the safety gate rebuilds
/// from HealingActions (hourly rates, cooldowns and breaker periods of at
/// most a day).
pub const MIN_RETENTION_SECS: u64 = 2 * 86_400;

impl ServiceConfig for Config {
    nanny_common::service_config_sections!();

    const LIST_KEYS: &'static [&'static str] = &["peers.analyzer_replicas"];

    fn validate(&self) -> Result<(), Error> {
        let p = &self.peers;
        validate_url("peers.collector", &p.collector)?;
        validate_url("peers.analyzer", &p.analyzer)?;
        for url in &p.analyzer_replicas {
            validate_url("peers.analyzer_replicas", url)?;
        }
        validate_url("peers.safety_gate", &p.safety_gate)?;
        validate_url("peers.remediator", &p.remediator)?;
        if !(50..=60_000).contains(&p.timeout_ms) {
            return Err(Error::config(
                "peers.timeout_ms",
                "must be between 50 and 60000",
            ));
        }
        if !(100..=300_000).contains(&p.probe_interval_ms) {
            return Err(Error::config(
                "peers.probe_interval_ms",
                "must be between 100 and 300000",
            ));
        }
        let k = &self.kubernetes;
        if k.lease_namespace.is_empty() || k.lease_name.is_empty() {
            return Err(Error::config(
                "kubernetes.lease_namespace",
                "the lease namespace and name must be set",
            ));
        }
        if k.lease_renew_secs == 0 || k.lease_duration_secs < 2 * k.lease_renew_secs {
            return Err(Error::config(
                "kubernetes.lease_duration_secs",
                "must be at least twice kubernetes.lease_renew_secs (and renew above 0)",
            ));
        }
        let a = &self.actions;
        for (key, value, low) in [
            ("actions.max_in_flight", a.max_in_flight as u64, 1),
            ("actions.max_attempts", u64::from(a.max_attempts), 1),
            ("actions.analyze_timeout_secs", a.analyze_timeout_secs, 1),
            ("actions.execute_timeout_secs", a.execute_timeout_secs, 10),
            ("actions.sweep_interval_secs", a.sweep_interval_secs, 1),
            ("actions.retention_sweep_secs", a.retention_sweep_secs, 1),
            ("actions.blocked_retry_secs", a.blocked_retry_secs, 1),
            ("actions.blocked_tries", u64::from(a.blocked_tries), 1),
        ] {
            if value < low {
                return Err(Error::config(key, format!("must be at least {low}")));
            }
        }
        if a.retention_secs != 0 && a.retention_secs < MIN_RETENTION_SECS {
            return Err(Error::config(
                "actions.retention_secs",
                format!(
                    "must be 0 (keep forever) or at least {MIN_RETENTION_SECS} (2 days): the safety gate rebuilds its limits from recent HealingActions"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads with `pairs` and plaintext gRPC (no certificates in unit tests).
    fn load(pairs: &[(&str, &str)]) -> Result<Config, Error> {
        let mut pairs = pairs.to_vec();
        pairs.push(("NANNY_TLS__INSECURE_DEV", "true"));
        nanny_common::config::load_pairs(&pairs)
    }

    #[test]
    fn retention_is_thirty_days_forever_or_at_least_two_days() {
        assert_eq!(load(&[]).unwrap().actions.retention_secs, 30 * 86_400);
        assert_eq!(
            load(&[("NANNY_ACTIONS__RETENTION_SECS", "0")])
                .unwrap()
                .actions
                .retention_secs,
            0
        );
        assert!(load(&[("NANNY_ACTIONS__RETENTION_SECS", "172800")]).is_ok());
        let err = load(&[("NANNY_ACTIONS__RETENTION_SECS", "3600")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid configuration: actions.retention_secs: must be 0 (keep forever) or at least 172800"),
            "{err}"
        );
    }
}
