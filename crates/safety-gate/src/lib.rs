//! The safety gate: pure policy with no Kubernetes write access.
//!
//! It serves `nanny.v1.SafetyGate`: every recommendation gets a verdict —
//! APPROVED, NEEDS_APPROVAL, DRY_RUN_ONLY or DENIED — with the rule ids that
//! decided it, and anything it cannot fully validate is DENIED. See
//! [`gate`] for the decision procedure, [`limits`] for rate limits,
//! cooldowns and circuit breakers, and [`history`] for how they survive a
//! restart (the audit log, and the HealingAction history it only reads).

mod anchor;
pub mod config;
pub mod gate;
pub mod history;
pub mod limits;
pub mod service;

use std::future::Future;

use nanny_common::server::{Listeners, Shell};
use nanny_proto::{service_names, v1::safety_gate_server::SafetyGateServer};
use tonic::service::Routes;

pub use crate::{config::Config, gate::Gate, service::SafetyGateService};

/// Binary and metrics name.
pub const BINARY: &str = "nanny-safety-gate";

/// Serves the gate until `shutdown` resolves. With `kubernetes.enabled` it
/// reports NOT_SERVING (and refuses every RPC) until its limits are rebuilt
/// from the cluster's HealingAction history, retrying while the API server
/// cannot be reached.
///
/// # Errors
/// When the audit log or the kubeconfig cannot be used, or a listener or
/// server fails.
#[expect(
    clippy::too_many_lines,
    reason = "the gate's start-up in order: keys, audit log, anchor, history restore, serve"
)]
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), nanny_common::Error> {
    let shell = Shell::new(
        BINARY,
        service_names::SAFETY_GATE,
        &config.server,
        &config.tls,
        &[nanny_common::tls::COORDINATOR],
    )
    .await?;
    let gate = Gate::new(config.clone());
    let signer = std::sync::Arc::new(config.signing.signer()?);
    // An audit log that cannot be extended stops the gate: no unaudited
    // decisions. Its records also carry the limits across restarts.
    let (audit, audited) = if config.audit.path.is_empty() {
        tracing::warn!(
            "audit.ephemeral: no audit file; verdicts are audited in the log stream only."
        );
        (None, Vec::new())
    } else {
        let (log, records) = nanny_common::audit::AuditLog::open(
            std::path::Path::new(&config.audit.path),
            signer.clone(),
        )?;
        (Some(log), records)
    };
    // Built before serving, so a bad kubeconfig stops the gate at once.
    let client = if config.kubernetes.enabled {
        Some(kube_client(&config.kubernetes).await?)
    } else {
        None
    };
    let service = SafetyGateService::new(gate, shell.metrics().registry(), audit, signer)?;
    service.remember_issued(&audited);
    // The chain's head outside the log, for as long as the gate serves.
    let _anchor = if config.audit.anchor_configmap.is_empty() {
        None
    } else {
        let client = kube_client(&config.kubernetes).await?;
        Some(anchor::Task(tokio::spawn(anchor::keep(
            client,
            config.audit.anchor_configmap.clone(),
            std::time::Duration::from_secs(config.audit.anchor_interval_secs),
            service.audit_head(),
        ))))
    };
    let audited = history::from_audit(&audited);
    let health = shell.health();
    match client {
        None => {
            if config.audit.path.is_empty() {
                tracing::warn!(
                    "Neither kubernetes nor audit.path is set: limits reset on restart."
                );
            }
            let restoring = service.start_restoring();
            let replayed = restoring.gate().replay(
                &audited,
                std::time::SystemTime::now(),
                tokio::time::Instant::now(),
            );
            restoring.finish();
            tracing::info!(replayed, "Restored limits from the audit log.");
            // Nothing external to wait for.
            health.set_ready(true).await;
        }
        Some(client) => {
            // Serve health at once (NOT_SERVING) while the history loads;
            // every RPC is UNAVAILABLE until then, never decided with empty limits.
            let restoring = service.start_restoring();
            tokio::spawn(async move {
                let objects = history::list_with_retry(client).await;
                let listed = objects.len();
                let (cluster, unreadable) = history::from_objects(objects);
                let replayed = restoring.gate().replay(
                    &history::merge(audited, cluster),
                    std::time::SystemTime::now(),
                    tokio::time::Instant::now(),
                );
                restoring.finish();
                tracing::info!(
                    listed,
                    unreadable,
                    replayed,
                    "Restored limits from the audit log and the HealingAction history."
                );
                health.set_ready(true).await;
            });
        }
    }
    shell
        .serve(
            Routes::new(SafetyGateServer::new(service)),
            listeners,
            shutdown,
        )
        .await
}

/// A read-only client for the HealingAction history.
async fn kube_client(
    config: &config::KubernetesConfig,
) -> Result<kube::Client, nanny_common::Error> {
    let kube_config =
        nanny_common::kube::load_config("kubernetes.kubeconfig", &config.kubeconfig).await?;
    kube::Client::try_from(kube_config)
        .map_err(|e| nanny_common::Error::config("kubernetes.kubeconfig", e.to_string()))
}
