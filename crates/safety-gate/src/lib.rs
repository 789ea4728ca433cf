//! The safety gate: pure policy with no Kubernetes write access.
//!
//! It serves `nanny.v1.SafetyGate`: every recommendation gets a verdict —
//! APPROVED, NEEDS_APPROVAL, DRY_RUN_ONLY or DENIED — with the rule ids that
//! decided it, and anything it cannot fully validate is DENIED. See
//! [`gate`] for the decision procedure and [`limits`] for rate limits,
//! cooldowns and circuit breakers.

pub mod config;
pub mod gate;
pub mod limits;
pub mod service;

use std::future::Future;

use nanny_common::server::{Listeners, Shell};
use nanny_proto::{service_names, v1::safety_gate_server::SafetyGateServer};
use tonic::service::Routes;

pub use crate::{config::Config, gate::Gate, service::SafetyGateService};

/// Binary and metrics name.
pub const BINARY: &str = "nanny-safety-gate";

/// Serves the gate until `shutdown` resolves.
///
/// # Errors
/// When a listener or server fails.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), nanny_common::Error> {
    let shell = Shell::new(BINARY, service_names::SAFETY_GATE, &config.server).await?;
    let gate = Gate::new(config.clone());
    // An audit log that cannot be extended stops the gate: no unaudited
    // decisions. Its records also carry the limits across restarts.
    let audit = if config.audit.path.is_empty() {
        tracing::warn!(
            "audit.path is not set: verdicts are audited in the log stream only, and limits reset on restart."
        );
        None
    } else {
        let (log, records) =
            nanny_common::audit::AuditLog::open(std::path::Path::new(&config.audit.path))?;
        let replayed = gate.restore(
            &records,
            std::time::SystemTime::now(),
            tokio::time::Instant::now(),
        );
        tracing::info!(
            records = records.len(),
            replayed,
            "Restored limits from the audit log."
        );
        Some(log)
    };
    let service = SafetyGateService::new(gate, shell.metrics().registry(), audit)?;
    // Pure policy: nothing external to wait for.
    shell.health().set_ready(true).await;
    shell
        .serve(
            Routes::new(SafetyGateServer::new(service)),
            listeners,
            shutdown,
        )
        .await
}
