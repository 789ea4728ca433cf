//! Collector configuration.

use nanny_common::{
    Error,
    config::{ServerConfig, ServiceConfig, TelemetryConfig},
};
use serde::{Deserialize, Serialize};

/// Everything the collector reads at start-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen addresses (defaults: gRPC 50051, HTTP 9091).
    pub server: ServerConfig,
    /// Logging and tracing.
    pub telemetry: TelemetryConfig,
    /// Snapshot encoding.
    pub snapshot: SnapshotConfig,
}

/// Section `snapshot`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Largest encoded gRPC message; bigger snapshots are chunked. 64 KiB–4 MiB.
    pub max_message_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50051, 9091),
            telemetry: TelemetryConfig::default(),
            snapshot: SnapshotConfig {
                max_message_bytes: 1024 * 1024,
            },
        }
    }
}

impl ServiceConfig for Config {
    nanny_common::service_config_sections!();

    fn validate(&self) -> Result<(), Error> {
        // tonic refuses to decode messages over 4 MiB by default.
        if !(64 * 1024..=4 * 1024 * 1024).contains(&self.snapshot.max_message_bytes) {
            return Err(Error::config(
                "snapshot.max_message_bytes",
                "must be between 65536 and 4194304",
            ));
        }
        Ok(())
    }
}
