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
    /// Mutual TLS for the gRPC server and its clients.
    pub tls: nanny_common::tls::TlsConfig,
    /// Never acted on, whatever a policy says. Config can add, never remove, defaults.
    pub protected: ProtectedResources,
    /// Recommendations from older snapshots are denied.
    pub max_snapshot_age_secs: u64,
    /// When too much is wrong at once, stop acting alone.
    pub storm: StormGuard,
    /// Defaults for limits a policy leaves at 0, and the cluster-wide rate.
    pub limits: LimitDefaults,
    /// The tamper-evident audit log.
    pub audit: AuditConfig,
    /// Read-only access to the HealingAction history.
    pub kubernetes: KubernetesConfig,
    /// The key every actionable verdict is signed with.
    #[serde(default)]
    pub signing: SigningConfig,
}

/// Section `signing`: the remediator acts only on verdicts this key signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigningConfig {
    /// PKCS#8 PEM Ed25519 private key (`cargo xtask certs` writes
    /// `verdict-signing-key.pem`; the chart generates one). Required.
    pub key: String,
    /// How long a signed verdict holds; a human approval renews it by a
    /// re-review.
    pub verdict_ttl_secs: u64,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            key: String::new(),
            verdict_ttl_secs: 900,
        }
    }
}

impl SigningConfig {
    /// Loads the signing key.
    ///
    /// # Errors
    /// [`Error::Config`] naming `signing.key` when it is unset or unusable.
    pub fn signer(&self) -> Result<nanny_common::verdict::Signer, Error> {
        if self.key.is_empty() {
            return Err(Error::config(
                "signing.key",
                "not set: the remediator acts only on verdicts the gate signs \
                 (NANNY_SIGNING__KEY; `cargo xtask certs` writes verdict-signing-key.pem)",
            ));
        }
        nanny_common::verdict::Signer::load(
            "signing.key",
            std::path::Path::new(&self.key),
            std::time::Duration::from_secs(self.verdict_ttl_secs),
        )
    }
}

/// Section `kubernetes`: where the limits are restored from at start-up.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Rebuild rate windows, cooldowns and breakers from the cluster's
    /// HealingActions (read-only) before serving; the gate stays NOT_SERVING
    /// until it could. Off: only the audit log carries limits across restarts.
    pub enabled: bool,
    /// Kubeconfig file; empty: the in-cluster ServiceAccount (or
    /// `$KUBECONFIG` / `~/.kube/config` outside a cluster).
    pub kubeconfig: String,
}

/// Section `audit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Hash-chained, signed JSON lines file, one record per verdict
    /// (`nannyctl audit verify` checks it). Required, on a persistent
    /// volume, unless `ephemeral` says otherwise.
    pub path: String,
    /// Runs without an audit file: verdicts are audited in the log stream
    /// only, and limits reset on restart unless the HealingAction history
    /// is read. Development only; say so explicitly.
    #[serde(default)]
    pub ephemeral: bool,
    /// `namespace/name` of a ConfigMap the gate keeps the chain's head in
    /// (last position and hash), outside the log: `nannyctl audit verify
    /// --anchor-configmap` then shows a cut tail after the last action's
    /// anchor too. Empty: no such anchor. Uses `kubernetes.kubeconfig`.
    #[serde(default)]
    pub anchor_configmap: String,
    /// How often the head is written when it moved.
    #[serde(default = "default_anchor_interval")]
    pub anchor_interval_secs: u64,
}

fn default_anchor_interval() -> u64 {
    10
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: String::new(),
            ephemeral: false,
            anchor_configmap: String::new(),
            anchor_interval_secs: default_anchor_interval(),
        }
    }
}

/// Section `storm`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StormGuard {
    /// Above this share of unhealthy nodes (percent), node actions are denied.
    pub max_unhealthy_node_percent: u32,
    /// Above this many open issues, nothing is auto-approved.
    pub max_open_issues: u32,
    /// A drain that would evict more pods than this at once is denied.
    #[serde(default = "default_max_drain_evictions")]
    pub max_drain_evictions: u32,
}

fn default_max_drain_evictions() -> u32 {
    30
}

/// Section `limits`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitDefaults {
    /// Auto-approved actions per hour across all policies.
    pub global_actions_per_hour: u32,
    /// Per policy, when the policy sets none.
    pub actions_per_hour: u32,
    /// Per namespace.
    pub actions_per_namespace_per_hour: u32,
    /// Per target.
    pub actions_per_target_per_hour: u32,
    /// Quiet time per target after an action.
    pub cooldown_seconds: u32,
    /// Consecutive failed or ineffective actions that open a breaker.
    pub breaker_failure_threshold: u32,
    /// How long an open breaker denies.
    pub breaker_open_seconds: u32,
    /// Most of a workload's replicas disrupted at once, percent.
    pub max_disruption_percent: u32,
}

impl Default for LimitDefaults {
    fn default() -> Self {
        Self {
            global_actions_per_hour: 60,
            actions_per_hour: 10,
            actions_per_namespace_per_hour: 5,
            actions_per_target_per_hour: 3,
            cooldown_seconds: 300,
            breaker_failure_threshold: 3,
            breaker_open_seconds: 1800,
            max_disruption_percent: 25,
        }
    }
}

pub use nanny_common::protect::ProtectedResources;

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50053, 9093),
            telemetry: TelemetryConfig::default(),
            tls: nanny_common::tls::TlsConfig::default(),
            protected: ProtectedResources::default(),
            max_snapshot_age_secs: 120,
            storm: StormGuard {
                max_unhealthy_node_percent: 30,
                max_open_issues: 50,
                max_drain_evictions: default_max_drain_evictions(),
            },
            limits: LimitDefaults::default(),
            audit: AuditConfig::default(),
            kubernetes: KubernetesConfig::default(),
            signing: SigningConfig::default(),
        }
    }
}

impl ServiceConfig for Config {
    nanny_common::service_config_sections!();

    #[expect(
        clippy::too_many_lines,
        reason = "one bounds check per setting, in the order of the config file"
    )]
    fn validate(&self) -> Result<(), Error> {
        self.protected.validate()?;
        if !(5..=3600).contains(&self.max_snapshot_age_secs) {
            return Err(Error::config(
                "max_snapshot_age_secs",
                "must be between 5 and 3600",
            ));
        }
        if !(1..=100).contains(&self.storm.max_unhealthy_node_percent) {
            return Err(Error::config(
                "storm.max_unhealthy_node_percent",
                "must be between 1 and 100",
            ));
        }
        if !self.audit.anchor_configmap.is_empty() {
            let valid = self
                .audit
                .anchor_configmap
                .split_once('/')
                .is_some_and(|(ns, name)| {
                    nanny_common::names::is_dns_label(ns)
                        && nanny_common::names::is_dns_subdomain(name)
                });
            if !valid {
                return Err(Error::config(
                    "audit.anchor_configmap",
                    format!("{:?} is not namespace/name", self.audit.anchor_configmap),
                ));
            }
            if self.audit.path.is_empty() {
                return Err(Error::config(
                    "audit.anchor_configmap",
                    "anchors the audit file's head: set audit.path too",
                ));
            }
        }
        if !(1..=3600).contains(&self.audit.anchor_interval_secs) {
            return Err(Error::config(
                "audit.anchor_interval_secs",
                "must be between 1 and 3600",
            ));
        }
        if !(1..=1000).contains(&self.storm.max_drain_evictions) {
            return Err(Error::config(
                "storm.max_drain_evictions",
                "must be between 1 and 1000",
            ));
        }
        if !(1..=100).contains(&self.limits.max_disruption_percent) {
            return Err(Error::config(
                "limits.max_disruption_percent",
                "must be between 1 and 100",
            ));
        }
        if self.limits.breaker_failure_threshold == 0 {
            return Err(Error::config(
                "limits.breaker_failure_threshold",
                "must be at least 1",
            ));
        }
        if !(30..=86_400).contains(&self.signing.verdict_ttl_secs) {
            return Err(Error::config(
                "signing.verdict_ttl_secs",
                "must be between 30 and 86400",
            ));
        }
        if self.kubernetes.enabled
            && !self.kubernetes.kubeconfig.is_empty()
            && !std::path::Path::new(&self.kubernetes.kubeconfig).is_file()
        {
            return Err(Error::config(
                "kubernetes.kubeconfig",
                format!("{:?} is not a readable file", self.kubernetes.kubeconfig),
            ));
        }
        if self.audit.path.is_empty() && !self.audit.ephemeral {
            return Err(Error::config(
                "audit.path",
                "not set: every verdict is audited in a signed, hash-chained file on a persistent volume; \
                 set audit.path (NANNY_AUDIT__PATH), or audit.ephemeral=true for development",
            ));
        }
        // Last: a wrong value is named before the key it runs without.
        self.signing.signer()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults plus the test PKI's signing key, without an audit file:
    /// a config that validates.
    fn valid() -> Config {
        let mut config = Config::default();
        config.signing.key = nanny_test_util::pki::signing_key().display().to_string();
        config.audit.ephemeral = true;
        config
    }

    #[test]
    fn an_audit_file_is_required_unless_explicitly_ephemeral() {
        let mut config = valid();
        config.audit.ephemeral = false;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("audit.path: not set"), "{err}");
        config.audit.path = "/var/lib/nanny/audit.jsonl".to_owned();
        assert!(config.validate().is_ok());
    }

    #[test]
    fn the_audit_anchor_names_a_configmap_and_needs_an_audit_file() {
        let mut config = valid();
        config.audit.path = "/var/lib/nanny/audit.jsonl".to_owned();
        config.audit.anchor_configmap = "nanny/nanny-audit-anchor".to_owned();
        assert!(config.validate().is_ok());
        for bad in ["nanny-audit-anchor", "Nanny/anchor", "nanny/", "/anchor"] {
            config.audit.anchor_configmap = bad.to_owned();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("audit.anchor_configmap"), "{bad}: {err}");
        }
        config.audit.anchor_configmap = "nanny/nanny-audit-anchor".to_owned();
        config.audit.anchor_interval_secs = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("audit.anchor_interval_secs"), "{err}");
        let mut ephemeral = valid();
        ephemeral.audit.anchor_configmap = "nanny/nanny-audit-anchor".to_owned();
        let err = ephemeral.validate().unwrap_err().to_string();
        assert!(err.contains("set audit.path too"), "{err}");
    }

    #[test]
    fn the_signing_key_is_required() {
        let mut config = Config::default();
        config.audit.ephemeral = true;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("signing.key: not set"), "{err}");
        let mut config = valid();
        config.signing.verdict_ttl_secs = 5;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("signing.verdict_ttl_secs"), "{err}");
    }

    #[test]
    fn additions_are_allowed_but_defaults_cannot_be_dropped() {
        let mut config = valid();
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
    fn a_missing_kubeconfig_is_refused_when_the_history_is_read() {
        let mut config = valid();
        config.kubernetes.kubeconfig = "/nonexistent/kubeconfig".to_owned();
        assert!(config.validate().is_ok(), "ignored while disabled");
        config.kubernetes.enabled = true;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("kubernetes.kubeconfig"), "{err}");
    }

    #[test]
    fn labels_must_be_key_value() {
        let mut config = valid();
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
