//! The remediator: the only service with write access to the cluster.
//!
//! It serves `nanny.v1.Remediator`. Each Execute is validated (an APPROVED
//! verdict for exactly this recommendation), the target is read under the
//! snapshot's preconditions (same uid; same spec and labels as at the
//! snapshot's resourceVersion), the write is tried as a server-side dry run
//! (so RBAC and admission refuse before anything changes), the action id is
//! claimed in a durable record holding the changed fields' values, the write happens with
//! the read resourceVersion as precondition, and the target is watched for
//! the verification window. Rollback, under the gate's signed rollback
//! verdict, restores only the fields the action changed, and only while they
//! still hold what it wrote.
//!
//! Modules: [`request`] (validation), [`actions`] (planning and writes),
//! [`verify`], [`store`] (MAC'd records), [`undo`] (rollbacks), [`diff`]
//! (what a result shows), [`service`] (gRPC and metrics).

pub mod actions;
pub mod config;
pub mod diff;
pub mod error;
pub mod quantity;
pub mod request;
pub mod service;
pub mod store;
pub mod undo;
pub mod verify;

use std::{future::Future, time::Duration};

use nanny_common::server::{Health, Listeners, Shell};
use nanny_proto::{service_names, v1::remediator_server::RemediatorServer};
use tonic::service::Routes;

pub use crate::{config::Config, error::Error, service::RemediatorService};

/// Binary and metrics name.
pub const BINARY: &str = "nanny-remediator";

/// Serves the remediator until `shutdown` resolves, with a client from
/// `config.kubeconfig` (or the in-cluster ServiceAccount).
///
/// # Errors
/// When the Kubernetes client cannot be configured, or a listener or server fails.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), nanny_common::Error> {
    let kube_config = nanny_common::kube::load_config("kubeconfig", &config.kubeconfig).await?;
    serve(config, kube_config, listeners, shutdown).await
}

/// Serves the remediator as the identity in `kube_config` (whose RBAC
/// bounds what it can do).
///
/// # Errors
/// When the client cannot be built, or a listener or server fails.
pub async fn serve(
    config: Config,
    mut kube_config: kube::Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), nanny_common::Error> {
    // The client's own retries of 429 would retry a PodDisruptionBudget's
    // refusal past the drain's deadline: the remediator retries under its
    // deadlines itself, and the caller retries outages.
    kube_config.default_retry = false;
    let client = kube::Client::try_from(kube_config)
        .map_err(|e| nanny_common::Error::config("kubeconfig", e.to_string()))?;
    let shell = Shell::new(
        BINARY,
        service_names::REMEDIATOR,
        &config.server,
        &config.tls,
        &[nanny_common::tls::COORDINATOR],
    )
    .await?;
    let verifier = config.verdicts.verifier()?;
    let mac_key = config.records.mac_key()?;
    tracing::info!(keys = ?verifier.key_ids(), "Acting only on verdicts signed by these safety-gate keys.");
    let service = RemediatorService::new(
        client.clone(),
        config.clone(),
        shell.metrics().registry(),
        verifier,
        &mac_key,
    )?;
    // Ready only once the API server answers: before that every Execute would fail.
    tokio::spawn(ready_when_reachable(client.clone(), shell.health()));
    let sweeper = tokio::spawn(sweep_records(
        store::Store::new(client, &config.state_namespace, &mac_key),
        config.records.clone(),
    ));
    let result = shell
        .serve(
            Routes::new(RemediatorServer::new(service)),
            listeners,
            shutdown,
        )
        .await;
    sweeper.abort();
    result
}

/// How much longer than `records.retention_secs` a record is kept.
const RECORD_MARGIN_SECS: u64 = 86_400;

/// Deletes finished action records past `records.retention_secs` (plus a
/// day, so that at the same setting a record outlives its HealingAction,
/// which finishes after the record is written and may still be rolled
/// back), at start-up and every `records.sweep_interval_secs`.
async fn sweep_records(store: store::Store, config: config::RecordsConfig) {
    if config.retention_secs == 0 {
        return;
    }
    let retention =
        i64::try_from(config.retention_secs.saturating_add(RECORD_MARGIN_SECS)).unwrap_or(i64::MAX);
    let mut every = tokio::time::interval(Duration::from_secs(config.sweep_interval_secs));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match store.sweep(unix_now().saturating_sub(retention)).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "Deleted action records past their retention."),
            Err(error) => {
                tracing::warn!(%error, "Cannot sweep old action records; retrying later.");
            }
        }
    }
}

async fn ready_when_reachable(client: kube::Client, health: Health) {
    let mut wait = Duration::from_millis(200);
    loop {
        match client.apiserver_version().await {
            Ok(_) => {
                health.set_ready(true).await;
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "The API server is unreachable; not ready yet.");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Seconds since the Unix epoch (0 before it).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
