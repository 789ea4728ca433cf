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
    /// Kubeconfig file. Empty: the in-cluster ServiceAccount (or `KUBECONFIG`
    /// / `~/.kube/config` outside a cluster).
    pub kubeconfig: String,
    /// Namespace of the action records (one ConfigMap per executed action:
    /// idempotency and pre-images). Usually the remediator's own namespace.
    pub state_namespace: String,
    /// Post-action verification.
    pub verification: VerificationConfig,
}

/// Section `verification`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationConfig {
    /// Window when a request gives none.
    pub default_window_secs: u64,
    /// Longest window a request may ask for.
    pub max_window_secs: u64,
    /// How often the target is re-read during the window.
    pub poll_interval_ms: u64,
    /// How long a restarted pod must stay Ready to count as healed (at most
    /// half the window): a crash-looping container is Ready for moments
    /// between crashes.
    pub stable_secs: u64,
    /// A record another process claimed this long ago and never finished is
    /// an interrupted run (that remediator died): it is resumed. The write
    /// follows the claim within milliseconds, so this only has to outlast a
    /// slow API call.
    pub stale_claim_secs: u64,
}

impl Default for VerificationConfig {
    fn default() -> Self {
        Self {
            default_window_secs: 120,
            max_window_secs: 900,
            poll_interval_ms: 500,
            stable_secs: 30,
            stale_claim_secs: 30,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50054, 9094),
            telemetry: TelemetryConfig::default(),
            field_manager: "nanny-remediator".to_owned(),
            kubeconfig: String::new(),
            state_namespace: "nanny-system".to_owned(),
            verification: VerificationConfig::default(),
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
        if !self.kubeconfig.is_empty() && !std::path::Path::new(&self.kubeconfig).is_file() {
            return Err(Error::config(
                "kubeconfig",
                format!("{:?} is not a readable file", self.kubeconfig),
            ));
        }
        let ns = &self.state_namespace;
        if ns.is_empty()
            || ns.len() > 63
            || !ns
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(Error::config(
                "state_namespace",
                "must be a namespace name (1-63 lowercase letters, digits or '-')",
            ));
        }
        let v = &self.verification;
        if !(1..=3600).contains(&v.max_window_secs) {
            return Err(Error::config(
                "verification.max_window_secs",
                "must be between 1 and 3600",
            ));
        }
        if v.default_window_secs == 0 || v.default_window_secs > v.max_window_secs {
            return Err(Error::config(
                "verification.default_window_secs",
                "must be between 1 and verification.max_window_secs",
            ));
        }
        if !(10..=60_000).contains(&v.poll_interval_ms) {
            return Err(Error::config(
                "verification.poll_interval_ms",
                "must be between 10 and 60000",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        assert!(Config::default().validate().is_ok());
        let mut config = Config::default();
        config.verification.default_window_secs = 10_000;
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "invalid configuration: verification.default_window_secs: must be between 1 and verification.max_window_secs"
        );
        let config = Config {
            state_namespace: "Nanny".into(),
            ..Config::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("state_namespace")
        );
    }
}
