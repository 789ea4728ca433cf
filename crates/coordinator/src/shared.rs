//! What the control loop's parts share: the API client and stores, the
//! peers, the snapshots and the configuration. Built once in [`crate::run`].

use std::time::Duration;

use kube::{
    Client,
    runtime::{events::Recorder, reflector::Store},
};
use nanny_common::client::{Replicas, TracedChannel};
use nanny_crd::{HealingAction, HealingPolicy};
use tokio::sync::watch;

use crate::{Config, config::ActionsConfig, snapshots::Snapshots};

/// Channels to the four services.
#[derive(Debug, Clone)]
pub struct Peers {
    /// The collector.
    pub collector: TracedChannel,
    /// The analyzer (balanced over its replicas).
    pub analyzer: TracedChannel,
    /// The analyzer's replicas, each owning the incidents its
    /// fingerprints hash to.
    pub analyzer_replicas: Replicas,
    /// The safety gate.
    pub gate: TracedChannel,
    /// The remediator.
    pub remediator: TracedChannel,
}

impl Peers {
    /// Channels to the peers `config` names, each expecting its own
    /// identity.
    ///
    /// # Errors
    /// When a peer URL or TLS setting is invalid.
    pub fn connect(config: &Config) -> Result<Self, nanny_common::Error> {
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
        let analyzer_timeout = Duration::from_secs(a.analyze_timeout_secs);
        let analyzer = nanny_common::client::balanced_channel(
            "peers.analyzer",
            &p.analyzer,
            analyzer_timeout,
            tls("nanny-analyzer")?.as_ref(),
        )?;
        let analyzer_replicas = Replicas::new(
            "peers.analyzer",
            &p.analyzer,
            &p.analyzer_replicas,
            analyzer_timeout,
            tls("nanny-analyzer")?.as_ref(),
        )?;
        let remediator = channel(
            "peers.remediator",
            &p.remediator,
            Duration::from_secs(a.execute_timeout_secs),
            tls("nanny-remediator")?.as_ref(),
        )?;
        Ok(Self {
            collector,
            analyzer,
            analyzer_replicas,
            gate,
            remediator,
        })
    }
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

/// The longest a wait for the stores' first complete list takes.
const STORES_READY: Duration = Duration::from_secs(10);

impl Context {
    /// Whether both stores hold a complete list, waiting at most
    /// [`STORES_READY`] for it (a missing CRD keeps a store from ever
    /// listing). Act on complete stores only.
    pub async fn stores_ready(&self) -> bool {
        let ready = tokio::time::timeout(STORES_READY, async {
            self.policies.wait_until_ready().await.is_ok()
                && self.actions.wait_until_ready().await.is_ok()
        });
        matches!(ready.await, Ok(true))
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("peers", &self.peers)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
