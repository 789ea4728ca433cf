//! What the control loop's parts share: the API client and stores, the
//! peers, the snapshots and the configuration. Built once in [`crate::run`].

use kube::{
    Client,
    runtime::{events::Recorder, reflector::Store},
};
use nanny_common::client::TracedChannel;
use nanny_crd::{HealingAction, HealingPolicy};
use tokio::sync::watch;

use crate::{config::ActionsConfig, snapshots::Snapshots};

/// Channels to the four services.
#[derive(Debug, Clone)]
pub struct Peers {
    /// The collector.
    pub collector: TracedChannel,
    /// The analyzer (balanced over its replicas).
    pub analyzer: TracedChannel,
    /// The safety gate.
    pub gate: TracedChannel,
    /// The remediator.
    pub remediator: TracedChannel,
}

/// The clients, stores and settings every part of the coordinator reads.
#[derive(Clone)]
pub struct Context {
    /// The Kubernetes API.
    pub client: Client,
    /// The services.
    pub peers: Peers,
    /// Every HealingPolicy in the watched namespaces.
    pub policies: Store<HealingPolicy>,
    /// Every HealingAction in the watched namespaces.
    pub actions: Store<HealingAction>,
    /// Each policy's newest snapshot.
    pub snapshots: Snapshots,
    /// Publishes Events.
    pub recorder: Recorder,
    /// `actions.*` settings.
    pub config: ActionsConfig,
    /// True while this replica holds the leader Lease.
    pub leader: watch::Receiver<bool>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("peers", &self.peers)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
