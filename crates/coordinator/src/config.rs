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
    /// Where the other services are.
    pub peers: PeersConfig,
}

/// Section `peers`: gRPC URLs of the services the coordinator wires together.
/// In Kubernetes these are Service DNS names; the analyzer's is headless so
/// calls spread over its replicas.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeersConfig {
    /// Collector URL.
    pub collector: String,
    /// Analyzer URL.
    pub analyzer: String,
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
            peers: PeersConfig {
                collector: "http://127.0.0.1:50051".to_owned(),
                analyzer: "http://127.0.0.1:50052".to_owned(),
                safety_gate: "http://127.0.0.1:50053".to_owned(),
                remediator: "http://127.0.0.1:50054".to_owned(),
                timeout_ms: 2000,
                probe_interval_ms: 2000,
            },
        }
    }
}

impl ServiceConfig for Config {
    nanny_common::service_config_sections!();

    fn validate(&self) -> Result<(), Error> {
        let p = &self.peers;
        validate_url("peers.collector", &p.collector)?;
        validate_url("peers.analyzer", &p.analyzer)?;
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
        Ok(())
    }
}
