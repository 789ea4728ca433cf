//! Shared pieces of the cross-service tests in `tests/`.

// Test support: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod otlp;

/// The four services with a `nanny.v1` API: binary name and gRPC service name.
pub const API_SERVICES: [(&str, &str); 4] = [
    ("nanny-collector", "nanny.v1.Collector"),
    ("nanny-analyzer", "nanny.v1.Analyzer"),
    ("nanny-safety-gate", "nanny.v1.SafetyGate"),
    ("nanny-remediator", "nanny.v1.Remediator"),
];
