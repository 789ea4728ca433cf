//! The coordinator: wires the services together per HealingPolicy and drives
//! each HealingAction through its phases.
//!
//! Today it watches its four peers' gRPC health and reports SERVING only
//! while all of them are; the policy watch and action lifecycle land with
//! the coordinator issue.

pub mod config;
mod peers;

use std::future::Future;

use nanny_common::server::{Listeners, Shell};
use tokio::sync::watch;
use tonic::service::Routes;

pub use crate::config::Config;

/// Binary, metrics and health-service name. The coordinator has no gRPC API
/// of its own: it serves health and reflection only.
pub const BINARY: &str = "nanny-coordinator";

/// Runs the coordinator until `shutdown` resolves.
///
/// # Errors
/// When config names an invalid peer URL, or a listener or server fails.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), nanny_common::Error> {
    let shell = Shell::new(BINARY, BINARY, &config.server).await?;
    let prober = peers::Prober::new(&config.peers, shell.metrics().registry())?;

    // The prober stops with the server; the watch lets it finish its round.
    let (stop_tx, stop_rx) = watch::channel(false);
    let probing = tokio::spawn(prober.run(shell.health(), config.peers.probe_interval(), stop_rx));
    let routes = Routes::default();
    let result = shell
        .serve(routes, listeners, async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
    if let Err(error) = probing.await {
        tracing::error!(%error, "Peer prober panicked.");
    }
    result
}
