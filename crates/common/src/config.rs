//! Typed, layered configuration: built-in defaults < optional file < `NANNY_*`
//! environment variables, validated once at start-up.
//!
//! Environment keys use `__` between sections: `NANNY_SERVER__GRPC_ADDR`
//! sets `server.grpc_addr`. Unknown keys are errors, so a typo never silently
//! falls back to a default.

use std::{net::SocketAddr, path::Path};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::Error;

/// The environment variable naming an optional config file (the `--config`
/// flag wins). It is not itself a config key.
pub const CONFIG_FILE_ENV: &str = "NANNY_CONFIG_FILE";
/// Prefix of every environment variable that sets a config key.
pub const ENV_PREFIX: &str = "NANNY_";

/// What every service's config offers to the shared shell.
pub trait ServiceConfig: Serialize + DeserializeOwned + Default {
    /// Listen addresses and runtime sizing.
    fn server(&self) -> &ServerConfig;
    /// Logging and tracing.
    fn telemetry(&self) -> &TelemetryConfig;
    /// Mutual TLS for the gRPC server and clients.
    fn tls(&self) -> &crate::tls::TlsConfig;
    /// Service-specific checks beyond what the types enforce.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first offending key.
    fn validate(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Keys (dotted, e.g. `llm.allowed_models`) whose environment value is a
    /// comma-separated list.
    const LIST_KEYS: &'static [&'static str] = &[];
}

/// Implements [`ServiceConfig::server`], [`ServiceConfig::telemetry`] and
/// [`ServiceConfig::tls`] for a config struct with `server`, `telemetry` and
/// `tls` fields.
#[macro_export]
macro_rules! service_config_sections {
    () => {
        fn server(&self) -> &$crate::config::ServerConfig {
            &self.server
        }

        fn telemetry(&self) -> &$crate::config::TelemetryConfig {
            &self.telemetry
        }

        fn tls(&self) -> &$crate::tls::TlsConfig {
            &self.tls
        }
    };
}

/// Listen addresses and runtime sizing, section `server`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// gRPC API, health and reflection.
    pub grpc_addr: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub http_addr: SocketAddr,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Tokio worker threads. Two keep idle memory small; raise for load.
    pub worker_threads: usize,
}

impl ServerConfig {
    /// Defaults for a service listening on all interfaces at these ports.
    pub fn with_ports(grpc: u16, http: u16) -> Self {
        Self {
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], grpc)),
            http_addr: SocketAddr::from(([0, 0, 0, 0], http)),
            shutdown_grace_secs: 10,
            worker_threads: 2,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        if !(1..=300).contains(&self.shutdown_grace_secs) {
            return Err(Error::config(
                "server.shutdown_grace_secs",
                "must be between 1 and 300",
            ));
        }
        if !(1..=64).contains(&self.worker_threads) {
            return Err(Error::config(
                "server.worker_threads",
                "must be between 1 and 64",
            ));
        }
        if self.grpc_addr == self.http_addr && self.grpc_addr.port() != 0 {
            return Err(Error::config(
                "server.http_addr",
                "must differ from server.grpc_addr",
            ));
        }
        Ok(())
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Logging and tracing, section `telemetry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// A `tracing` filter directive, e.g. `info,nanny_collector=debug`.
    pub log_filter: String,
    /// OTLP/HTTP base URL, e.g. `http://otel-collector:4318`. Empty: no traces exported.
    pub otlp_endpoint: String,
    /// How often batched spans are exported.
    pub otlp_export_interval_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_filter: "info".to_owned(),
            otlp_endpoint: String::new(),
            otlp_export_interval_ms: 5000,
        }
    }
}

impl TelemetryConfig {
    fn validate(&self) -> Result<(), Error> {
        tracing_subscriber::EnvFilter::try_new(&self.log_filter)
            .map_err(|e| Error::config("telemetry.log_filter", e.to_string()))?;
        if !self.otlp_endpoint.is_empty() {
            let uri: http::Uri = self
                .otlp_endpoint
                .parse()
                .map_err(|e| Error::config("telemetry.otlp_endpoint", format!("not a URL: {e}")))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(Error::config(
                    "telemetry.otlp_endpoint",
                    "must be an http:// or https:// URL with a host",
                ));
            }
        }
        if !(10..=60_000).contains(&self.otlp_export_interval_ms) {
            return Err(Error::config(
                "telemetry.otlp_export_interval_ms",
                "must be between 10 and 60000",
            ));
        }
        Ok(())
    }
}

/// Validates a URL that names a gRPC or HTTP peer.
///
/// # Errors
/// [`Error::Config`] for `key` when `value` is not an absolute http(s) URL.
pub fn validate_url(key: &str, value: &str) -> Result<(), Error> {
    let uri: http::Uri = value
        .parse()
        .map_err(|e| Error::config(key, format!("not a URL: {e}")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(Error::config(
            key,
            format!("{value:?} is not an http:// or https:// URL with a host"),
        ));
    }
    Ok(())
}

/// [`load`] with no file and the environment given as `(name, value)`
/// pairs: what a config test needs.
///
/// # Errors
/// As [`load`].
pub fn load_pairs<T: ServiceConfig>(pairs: &[(&str, &str)]) -> Result<T, Error> {
    load(
        None,
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
}

/// Loads `T` from its defaults, then `file` (if any), then the `NANNY_*`
/// variables among `env`, and validates the result.
///
/// # Errors
/// [`Error::ConfigSource`] when the file or a value cannot be parsed or a key
/// is unknown, [`Error::Config`] when validation fails.
pub fn load<T: ServiceConfig>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, Error> {
    let mut builder =
        ::config::Config::builder().add_source(::config::Config::try_from(&T::default())?);
    if let Some(path) = file {
        builder = builder.add_source(::config::File::from(path).required(true));
    }
    // Only NANNY_* variables are config keys; the file-name variable is not.
    let env: ::config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k != CONFIG_FILE_ENV)
        .collect();
    let mut environment = ::config::Environment::with_prefix("NANNY")
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .source(Some(env));
    if !T::LIST_KEYS.is_empty() {
        environment = environment.list_separator(",");
        for key in T::LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
    }
    builder = builder.add_source(environment);
    let config: T = builder.build()?.try_deserialize()?;
    config.server().validate()?;
    config.telemetry().validate()?;
    config.validate()?;
    // Last: a wrong value is named before the certificates it runs without.
    config.tls().validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TestConfig {
        server: ServerConfig,
        telemetry: TelemetryConfig,
        tls: crate::tls::TlsConfig,
        threshold: u32,
    }

    impl Default for TestConfig {
        fn default() -> Self {
            Self {
                server: ServerConfig::with_ports(1, 2),
                telemetry: TelemetryConfig::default(),
                tls: crate::tls::TlsConfig::insecure(),
                threshold: 5,
            }
        }
    }

    impl ServiceConfig for TestConfig {
        fn server(&self) -> &ServerConfig {
            &self.server
        }
        fn telemetry(&self) -> &TelemetryConfig {
            &self.telemetry
        }
        fn tls(&self) -> &crate::tls::TlsConfig {
            &self.tls
        }
        fn validate(&self) -> Result<(), Error> {
            if self.threshold == 0 {
                return Err(Error::config("threshold", "must be positive"));
            }
            Ok(())
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_apply_without_file_or_env() {
        let c: TestConfig = load(None, env(&[("HOME", "/root")])).unwrap();
        assert_eq!(c.server.grpc_addr.port(), 1);
        assert_eq!(c.threshold, 5);
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let dir = std::env::temp_dir().join(format!("nanny-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.yaml");
        std::fs::write(
            &file,
            "threshold: 7\nserver:\n  grpc_addr: 127.0.0.1:7000\n",
        )
        .unwrap();
        let c: TestConfig = load(Some(&file), env(&[("NANNY_THRESHOLD", "9")])).unwrap();
        assert_eq!(c.threshold, 9, "env wins over file");
        assert_eq!(
            c.server.grpc_addr.to_string(),
            "127.0.0.1:7000",
            "file wins over defaults"
        );
        assert_eq!(
            c.server.http_addr.port(),
            2,
            "untouched nested default survives"
        );
    }

    #[test]
    fn nested_env_keys_use_double_underscore() {
        let c: TestConfig = load(None, env(&[("NANNY_TELEMETRY__LOG_FORMAT", "json")])).unwrap();
        assert_eq!(c.telemetry.log_format, LogFormat::Json);
    }

    #[test]
    fn malformed_value_names_the_key() {
        let err =
            load::<TestConfig>(None, env(&[("NANNY_SERVER__GRPC_ADDR", "nope")])).unwrap_err();
        assert!(err.to_string().contains("server.grpc_addr"), "{err}");
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = load::<TestConfig>(None, env(&[("NANNY_TRESHOLD", "3")])).unwrap_err();
        assert!(err.to_string().contains("tresh"), "{err}");
    }

    #[test]
    fn service_validation_runs() {
        let err = load::<TestConfig>(None, env(&[("NANNY_THRESHOLD", "0")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: threshold: must be positive"
        );
    }

    #[test]
    fn common_sections_are_validated() {
        let err = load::<TestConfig>(None, env(&[("NANNY_TELEMETRY__OTLP_ENDPOINT", "ftp://x")]))
            .unwrap_err();
        assert!(err.to_string().contains("telemetry.otlp_endpoint"), "{err}");
        let err =
            load::<TestConfig>(None, env(&[("NANNY_SERVER__WORKER_THREADS", "0")])).unwrap_err();
        assert!(err.to_string().contains("server.worker_threads"), "{err}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err =
            load::<TestConfig>(Some(Path::new("/nonexistent/nanny.yaml")), env(&[])).unwrap_err();
        assert!(err.to_string().contains("nanny.yaml"), "{err}");
    }

    #[test]
    fn url_validation() {
        assert!(validate_url("k", "http://analyzer:50052").is_ok());
        assert!(validate_url("k", "analyzer:50052").is_err());
        assert!(validate_url("k", "").is_err());
    }
}
