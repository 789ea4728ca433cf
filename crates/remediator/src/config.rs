//! Remediator configuration.

use nanny_common::{
    Error,
    config::{ServerConfig, ServiceConfig, TelemetryConfig},
};
use serde::{Deserialize, Serialize};

/// Everything the remediator reads at start-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen addresses (defaults: gRPC 50054, HTTP 9094).
    pub server: ServerConfig,
    /// Logging and tracing.
    pub telemetry: TelemetryConfig,
    /// Field manager named on every write, so `managedFields` show what Nanny changed.
    pub field_manager: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50054, 9094),
            telemetry: TelemetryConfig::default(),
            field_manager: "nanny-remediator".to_owned(),
        }
    }
}

impl ServiceConfig for Config {
    nanny_common::service_config_sections!();

    fn validate(&self) -> Result<(), Error> {
        let fm = &self.field_manager;
        // The API server's limit for a field manager name.
        if fm.is_empty() || fm.len() > 128 || fm.chars().any(char::is_control) {
            return Err(Error::config(
                "field_manager",
                "must be 1-128 printable characters",
            ));
        }
        Ok(())
    }
}
