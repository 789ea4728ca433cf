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

    let p = &config.peers;
    let a = &config.actions;
    let timeout = Duration::from_millis(p.timeout_ms);
    let channel = nanny_common::client::channel;
    // Each peer must prove its own identity, not just any Nanny certificate.
    let tls = |peer: &str| config.tls.client(peer);
    let collector = channel(
        "peers.collector",
        &p.collector,
        timeout,
        tls("nanny-collector")?.as_ref(),
    )?;
    let gate = channel(
        "peers.safety_gate",
        &p.safety_gate,
        timeout,
        tls("nanny-safety-gate")?.as_ref(),
    )?;
    // Calls that legitimately take long get their own deadlines.
    let analyzer = nanny_common::client::balanced_channel(
        "peers.analyzer",
        &p.analyzer,
        Duration::from_secs(a.analyze_timeout_secs),
        tls("nanny-analyzer")?.as_ref(),
    )?;
    let remediator = channel(
        "peers.remediator",
        &p.remediator,
        Duration::from_secs(a.execute_timeout_secs),
        tls("nanny-remediator")?.as_ref(),
    )?;

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
        peers: shared::Peers {
            collector,
            analyzer,
            gate,
            remediator,
        },
        policies,
        actions: action_controller.store(),
        snapshots,
        recorder,
        config: config.actions.clone(),
        leader: leader_rx.clone(),
    };
    let driver = actions::Driver::new(&ctx, registry)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let leading = IntGauge::new(
        "nanny_coordinator_leader",
        "1 while this replica holds the leader Lease.",
    )?;
    registry.register(Box::new(leading.clone()))?;
    let mut leader_watch = leader_rx.clone();
    tokio::spawn(async move {
        while leader_watch.changed().await.is_ok() {
            leading.set(i64::from(*leader_watch.borrow()));
        }
    });
    let k = &config.kubernetes;
    let election = tokio::spawn(leader::run(
        client.clone(),
        leader::Settings {
            namespace: k.lease_namespace.clone(),
            name: k.lease_name.clone(),
            identity,
            duration: Duration::from_secs(k.lease_duration_secs),
            renew: Duration::from_secs(k.lease_renew_secs),
        },
        leader_tx,
        stop_rx.clone(),
    ));
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
