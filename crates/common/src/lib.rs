//! Plumbing every Nanny service shares, so that each service crate holds only
//! its own logic: typed layered config, logging/metrics/tracing, the gRPC +
//! HTTP server shell (health, reflection, `/metrics`, graceful shutdown) and
//! W3C trace-context propagation across gRPC calls, and the tamper-evident
//! audit log.

pub mod audit;
pub mod client;
pub mod config;
pub mod entrypoint;
pub mod error;
pub mod metrics;
pub mod server;
pub mod telemetry;

pub use error::Error;
