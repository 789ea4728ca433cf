//! Safety gate configuration: the seeds' protected resources.

use nanny_common::{
    Error,
    config::{ServerConfig, ServiceConfig, TelemetryConfig},
};
use serde::{Deserialize, Serialize};

/// Everything the gate reads at start-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen addresses (defaults: gRPC 50053, HTTP 9093).
    pub server: ServerConfig,
    /// Logging and tracing.
    pub telemetry: TelemetryConfig,
    /// Never acted on, whatever a policy says. Config can add, never remove, defaults.
    pub protected: ProtectedResources,
}

/// Section `protected`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectedResources {
    /// Namespaces no action may touch.
    pub namespaces: Vec<String>,
    /// Kinds no action may touch.
    pub kinds: Vec<String>,
    /// `key=value` labels that mark an object as protected.
    pub labels: Vec<String>,
}

impl Default for ProtectedResources {
    fn default() -> Self {
        let strings = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        Self {
            namespaces: strings(&[
                "kube-system",
                "kube-public",
                "kube-node-lease",
                "cert-manager",
                "ingress-nginx",
                "monitoring",
            ]),
            kinds: strings(&["CustomResourceDefinition", "PersistentVolume"]),
            labels: strings(&[
                "app.kubernetes.io/managed-by=Helm",
                "nanny.ai/protected=true",
            ]),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50053, 9093),
            telemetry: TelemetryConfig::default(),
            protected: ProtectedResources::default(),
        }
    }
}

impl ServiceConfig for Config {
    nanny_common::service_config_sections!();

    fn validate(&self) -> Result<(), Error> {
        let defaults = ProtectedResources::default();
        // A config may add protections; dropping a default would weaken the gate.
        for (key, configured, required) in [
            (
                "protected.namespaces",
                &self.protected.namespaces,
                &defaults.namespaces,
            ),
            ("protected.kinds", &self.protected.kinds, &defaults.kinds),
            ("protected.labels", &self.protected.labels, &defaults.labels),
        ] {
            if let Some(missing) = required.iter().find(|r| !configured.contains(r)) {
                return Err(Error::config(
                    key,
                    format!("must keep the default {missing:?}"),
                ));
            }
        }
        for label in &self.protected.labels {
            match label.split_once('=') {
                Some((k, v)) if !k.is_empty() && !v.is_empty() => {}
                _ => {
                    return Err(Error::config(
                        "protected.labels",
                        format!("{label:?} is not key=value"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additions_are_allowed_but_defaults_cannot_be_dropped() {
        let mut config = Config::default();
        config.protected.namespaces.push("payments".to_owned());
        assert!(config.validate().is_ok());
        config.protected.namespaces.retain(|n| n != "kube-system");
        let err = config.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid configuration: protected.namespaces: must keep the default "kube-system""#
        );
    }

    #[test]
    fn labels_must_be_key_value() {
        let mut config = Config::default();
        config.protected.labels.push("team".to_owned());
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("protected.labels")
        );
    }
}
