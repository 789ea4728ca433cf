//! The coordinator: wires the services together per HealingPolicy and drives
//! each HealingAction through its phases.
//!
//! - [`controller`] watches HealingPolicies and HealingActions and, while
//!   this replica holds the leader Lease ([`leader`]), runs one
//!   [`pipeline`] per policy: the collector's snapshots of the policy's
//!   scope → the analyzer → [`actions`], which records each recommendation
//!   as a HealingAction and drives it through the gate and the remediator.
//! - All state is in the HealingActions; a replica that starts (or takes
//!   over) resumes every unfinished one.
//! - Its own health is SERVING while all four peers are ([`peers`]).

pub mod actions;
pub mod config;
pub mod context;
pub mod controller;
pub mod convert;
pub mod error;
pub mod history;
pub mod ladder;
pub mod leader;
pub mod notify;
mod peers;
pub mod pipeline;
pub mod retention;
pub mod shared;
pub mod snapshots;

use std::{future::Future, time::Duration};

use kube::runtime::events::{Recorder, Reporter};
use nanny_common::server::{Listeners, Shell};
use prometheus::IntGauge;
use tokio::sync::watch;
use tonic::service::Routes;

pub use crate::config::Config;

/// Binary, metrics and health-service name. The coordinator has no gRPC API
/// of its own: it serves health and reflection only.
pub const BINARY: &str = "nanny-coordinator";

/// Runs the coordinator until `shutdown` resolves.
///
/// # Errors
/// When config names an invalid peer URL, the kubeconfig cannot be used, or
/// a listener or server fails.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), nanny_common::Error> {
    let shell = Shell::new(BINARY, BINARY, &config.server, &config.tls, &[]).await?;
    let registry = shell.metrics().registry();
    let prober = peers::Prober::new(&config.peers, &config.tls, registry)?;
    let kube_config =
        nanny_common::kube::load_config("kubernetes.kubeconfig", &config.kubernetes.kubeconfig)
            .await?;
    let client = kube::Client::try_from(kube_config)
        .map_err(|e| nanny_common::Error::config("kubernetes.kubeconfig", e.to_string()))?;

    let peers = shared::Peers::connect(&config)?;
    let a = &config.actions;

    let identity = config.kubernetes.identity();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: BINARY.to_owned(),
            instance: Some(identity.clone()),
        },
    );
    let (policies, policy_events, action_controller) = controller::watches(
        &client,
        &config.kubernetes.watch_namespace,
        config.actions.max_in_flight,
    );
    let (leader_tx, leader_rx) = watch::channel(false);
    let snapshots = snapshots::Snapshots::default();
    let ctx = shared::Context {
        client: client.clone(),
        peers,
        policies,
        actions: action_controller.store(),
        snapshots,
        recorder,
        config: config.actions.clone(),
        leader: leader_rx.clone(),
    };
    let driver = actions::Driver::new(&ctx, registry)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let election = spawn_election(
        &config,
        client.clone(),
        identity,
        leader_tx,
        stop_rx.clone(),
        registry,
    )?;
    let retention = retention::Retention::new(
        a.retention_secs,
        Duration::from_secs(a.retention_sweep_secs),
        registry,
    )?;
    let control = tokio::spawn(controller::run(
        ctx,
        driver,
        retention,
        policy_events,
        action_controller,
        stop_rx.clone(),
    ));
    let probing = tokio::spawn(prober.run(shell.health(), config.peers.probe_interval(), stop_rx));

    let result = shell
        .serve(Routes::default(), listeners, async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
    for (what, task) in [
        ("peer prober", probing),
        ("control loop", control),
        ("leader election", election),
    ] {
        if let Err(error) = task.await {
            tracing::error!(%error, "The {what} panicked.");
        }
    }
    result
}

/// Starts the leader election for this replica (and the gauge that shows
/// whether it leads).
fn spawn_election(
    config: &Config,
    client: kube::Client,
    identity: String,
    leader_tx: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
    registry: &prometheus::Registry,
) -> Result<tokio::task::JoinHandle<()>, nanny_common::Error> {
    let leading = IntGauge::new(
        "nanny_coordinator_leader",
        "1 while this replica holds the leader Lease.",
    )?;
    registry.register(Box::new(leading.clone()))?;
    let mut leader_watch = leader_tx.subscribe();
    tokio::spawn(async move {
        while leader_watch.changed().await.is_ok() {
            leading.set(i64::from(*leader_watch.borrow()));
        }
    });
    let k = &config.kubernetes;
    Ok(tokio::spawn(leader::run(
        client,
        leader::Settings {
            namespace: k.lease_namespace.clone(),
            name: k.lease_name.clone(),
            identity,
            duration: Duration::from_secs(k.lease_duration_secs),
            renew: Duration::from_secs(k.lease_renew_secs),
        },
        leader_tx,
        stop,
    )))
}
