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
    /// Mutual TLS for the gRPC server and its clients.
    pub tls: nanny_common::tls::TlsConfig,
    /// Field manager named on every write, so `managedFields` show what Nanny changed.
    pub field_manager: String,
    /// Kubeconfig file. Empty: the in-cluster ServiceAccount (or `KUBECONFIG`
    /// / `~/.kube/config` outside a cluster).
    pub kubeconfig: String,
    /// Namespace of the action records (one ConfigMap per executed action:
    /// idempotency and the changed fields' values). Usually the remediator's own namespace.
    pub state_namespace: String,
    /// Post-action verification.
    pub verification: VerificationConfig,
    /// How long finished action records are kept.
    #[serde(default)]
    pub records: RecordsConfig,
    /// Whose signatures make a verdict.
    #[serde(default)]
    pub verdicts: VerdictsConfig,
    /// Never touched, checked again on the live target and its owners
    /// whatever the verdict says. The same section as the gate's.
    #[serde(default)]
    pub protected: nanny_common::protect::ProtectedResources,
}

/// Section `verdicts`: the safety gate's public keys. The remediator acts
/// only on verdicts one of them signed; listing two lets the gate's key
/// rotate with an overlap.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerdictsConfig {
    /// PEM files, each an Ed25519 `PUBLIC KEY` or a certificate holding one
    /// (`NANNY_VERDICTS__PUBLIC_KEYS=a.pem,b.pem`). Required.
    pub public_keys: Vec<std::path::PathBuf>,
}

impl VerdictsConfig {
    /// Loads the trusted keys.
    ///
    /// # Errors
    /// [`Error::Config`] naming `verdicts.public_keys` when none is given or
    /// one does not load.
    pub fn verifier(&self) -> Result<nanny_common::verdict::Verifier, Error> {
        nanny_common::verdict::Verifier::load("verdicts.public_keys", &self.public_keys)
    }
}

/// Section `records`: retention of the action records.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsConfig {
    /// A finished record (acted, or rolled back) older than this plus a day
    /// is deleted; 0 keeps them forever. At least two days: a record is the
    /// idempotency key of its action and the values a rollback restores.
    /// Keep it at least the coordinator's `actions.retention_secs`, so a
    /// HealingAction that can still be rolled back has its record.
    pub retention_secs: u64,
    /// How often old records are looked for.
    pub sweep_interval_secs: u64,
    /// A file of at least 32 random bytes: the key of the HMAC-SHA256 every
    /// record carries (`NANNY_RECORDS__MAC_KEY`). Required; a Secret mounted
    /// only into the remediator. A record without a valid MAC is refused.
    #[serde(default)]
    pub mac_key: Option<std::path::PathBuf>,
}

impl Default for RecordsConfig {
    fn default() -> Self {
        Self {
            retention_secs: 30 * 86_400,
            sweep_interval_secs: 3600,
            mac_key: None,
        }
    }
}

/// The shortest record MAC key, bytes.
pub const MIN_MAC_KEY_BYTES: usize = 32;

impl RecordsConfig {
    /// Reads the records' MAC key (surrounding whitespace dropped, so a
    /// generated text key works as well as raw bytes).
    ///
    /// # Errors
    /// [`Error::Config`] naming `records.mac_key` when it is not set, cannot
    /// be read or is shorter than 32 bytes.
    pub fn mac_key(&self) -> Result<Vec<u8>, Error> {
        let key = "records.mac_key";
        let path = self.mac_key.as_ref().ok_or_else(|| {
            Error::config(
                key,
                "not set: action records are authenticated with a key only the remediator holds; give a file of at least 32 random bytes",
            )
        })?;
        let bytes = std::fs::read(path)
            .map_err(|e| Error::config(key, format!("cannot read {}: {e}", path.display())))?;
        let secret = bytes.trim_ascii();
        if secret.len() < MIN_MAC_KEY_BYTES {
            return Err(Error::config(
                key,
                format!(
                    "{}: {} bytes; at least {MIN_MAC_KEY_BYTES} are needed",
                    path.display(),
                    secret.len()
                ),
            ));
        }
        Ok(secret.to_vec())
    }
}

/// The shortest record retention, seconds.
pub const MIN_RECORD_RETENTION_SECS: u64 = 2 * 86_400;

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
            tls: nanny_common::tls::TlsConfig::default(),
            field_manager: "nanny-remediator".to_owned(),
            kubeconfig: String::new(),
            state_namespace: "nanny-system".to_owned(),
            verification: VerificationConfig::default(),
            records: RecordsConfig::default(),
            verdicts: VerdictsConfig::default(),
            protected: nanny_common::protect::ProtectedResources::default(),
        }
    }
}

impl ServiceConfig for Config {
    nanny_common::service_config_sections!();

    const LIST_KEYS: &'static [&'static str] = &[
        "verdicts.public_keys",
        "protected.namespaces",
        "protected.kinds",
        "protected.labels",
    ];

    fn validate(&self) -> Result<(), Error> {
        self.protected.validate()?;
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
        let r = &self.records;
        if r.retention_secs != 0 && r.retention_secs < MIN_RECORD_RETENTION_SECS {
            return Err(Error::config(
                "records.retention_secs",
                format!(
                    "must be 0 (keep forever) or at least {MIN_RECORD_RETENTION_SECS} (2 days): a record is its action's idempotency key and what its rollback restores"
                ),
            ));
        }
        if !(1..=86_400).contains(&r.sweep_interval_secs) {
            return Err(Error::config(
                "records.sweep_interval_secs",
                "must be between 1 and 86400",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_retention_is_thirty_days_forever_or_at_least_two_days() {
        let mut config = Config::default();
        assert_eq!(config.records.retention_secs, 30 * 86_400);
        config.records.retention_secs = 0;
        assert!(config.validate().is_ok());
        config.records.retention_secs = 3600;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .starts_with("invalid configuration: records.retention_secs: must be 0 (keep forever) or at least 172800")
        );
    }

    #[test]
    fn the_records_mac_key_is_required_and_long_enough() {
        let mut records = RecordsConfig::default();
        let error = records.mac_key().unwrap_err().to_string();
        assert!(error.contains("records.mac_key: not set"), "{error}");
        let dir = std::env::temp_dir().join(format!("nanny-mac-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short.key");
        std::fs::write(&short, "0123456789\n").unwrap();
        records.mac_key = Some(short);
        let error = records.mac_key().unwrap_err().to_string();
        assert!(error.contains("10 bytes; at least 32"), "{error}");
        let good = dir.join("good.key");
        std::fs::write(&good, format!("{}\n", "ab".repeat(32))).unwrap();
        records.mac_key = Some(good);
        assert_eq!(records.mac_key().unwrap().len(), 64);
        records.mac_key = Some(dir.join("missing.key"));
        let error = records.mac_key().unwrap_err().to_string();
        assert!(error.contains("cannot read"), "{error}");
    }

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
