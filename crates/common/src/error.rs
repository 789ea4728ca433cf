//! Errors of the shared service shell.

use std::net::SocketAddr;

/// What can go wrong while loading config or running the server shell.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is missing, malformed or out of range.
    #[error("invalid configuration: {key}: {message}")]
    Config {
        /// Dotted key path, e.g. `server.grpc_addr`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The config file or environment could not be read or parsed.
    #[error("invalid configuration: {0}")]
    ConfigSource(#[from] ::config::ConfigError),
    /// A listener could not be bound.
    #[error("failed to bind {addr}: {source}")]
    Bind {
        /// The address from config.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The HTTP (metrics/health) server failed.
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
    /// The OTLP exporter or the tracing subscriber could not be set up.
    #[error("failed to initialise telemetry: {0}")]
    Telemetry(String),
    /// A metric could not be registered.
    #[error("failed to register metric: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The audit log cannot be opened or its chain is broken.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// Reflection could not be built from the descriptor set.
    #[error("failed to build gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// A dependency (the Kubernetes API, Prometheus, ...) cannot be set up.
    #[error("failed to set up {what}: {message}")]
    Dependency {
        /// The dependency, e.g. `the Kubernetes client`.
        what: &'static str,
        /// Why.
        message: String,
    },
}

impl Error {
    /// A validation error for one config key.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}
