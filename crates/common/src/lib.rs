//! Plumbing every Nanny service shares, so that each service crate holds only
//! its own logic: typed layered config, logging/metrics/tracing, the gRPC +
//! HTTP server shell (health, reflection, `/metrics`, graceful shutdown) and
//! W3C trace-context propagation across gRPC calls, the tamper-evident
//! audit log, and the consumer side of snapshot streams.

pub mod audit;
pub mod client;
pub mod config;
pub mod entrypoint;
pub mod error;
#[cfg(feature = "kube")]
pub mod kube;
pub mod metrics;
pub mod names;
pub mod protect;
pub mod quantity;
pub mod redact;
pub mod selector;
pub mod server;
pub mod snapshot;
pub mod telemetry;
pub mod tls;
pub mod verdict;

pub use error::Error;
