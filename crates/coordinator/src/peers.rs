//! Health of the four services the coordinator wires together.

use std::time::{Duration, Instant};

use nanny_common::{Error, client::TracedChannel, server::Health};
use nanny_proto::service_names;
use prometheus::{GaugeVec, IntGaugeVec, Opts, Registry};
use tokio::sync::watch;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::config::PeersConfig;

/// One peer service.
#[derive(Debug)]
struct Peer {
    /// Label value and log field, e.g. `safety-gate`.
    name: &'static str,
    /// The gRPC service whose health is checked.
    service: &'static str,
    url: String,
    channel: TracedChannel,
}

/// Probes every peer's `grpc.health.v1` and publishes the result.
#[derive(Debug)]
pub(crate) struct Prober {
    peers: Vec<Peer>,
    up: IntGaugeVec,
    latency: GaugeVec,
}

impl Prober {
    pub(crate) fn new(
        config: &PeersConfig,
        tls: &nanny_common::tls::TlsConfig,
        registry: &Registry,
    ) -> Result<Self, Error> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let peers = [
            (
                "collector",
                service_names::COLLECTOR,
                "peers.collector",
                &config.collector,
            ),
            (
                "analyzer",
                service_names::ANALYZER,
                "peers.analyzer",
                &config.analyzer,
            ),
            (
                "safety-gate",
                service_names::SAFETY_GATE,
                "peers.safety_gate",
                &config.safety_gate,
            ),
            (
                "remediator",
                service_names::REMEDIATOR,
                "peers.remediator",
                &config.remediator,
            ),
        ]
        .into_iter()
        .map(|(name, service, key, url)| {
            Ok(Peer {
                name,
                service,
                url: url.clone(),
                channel: nanny_common::client::channel(
                    key,
                    url,
                    timeout,
                    tls.client(&format!("nanny-{name}"))?.as_ref(),
                )?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;

        let up = IntGaugeVec::new(
            Opts::new(
                "nanny_dependency_up",
                "1 when the peer service answers SERVING.",
            ),
            &["dependency"],
        )?;
        registry.register(Box::new(up.clone()))?;
        let latency = GaugeVec::new(
            Opts::new(
                "nanny_dependency_probe_seconds",
                "Duration of the last health probe of the peer.",
            ),
            &["dependency"],
        )?;
        registry.register(Box::new(latency.clone()))?;
        Ok(Self { peers, up, latency })
    }

    /// Probes every `interval` until `stop` flips, keeping `health` SERVING
    /// only while every peer is.
    pub(crate) async fn run(
        self,
        health: Health,
        interval: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut was_ready = None;
        loop {
            let results = futures::future::join_all(self.peers.iter().map(Peer::probe)).await;
            let mut ready = true;
            for (peer, (serving, elapsed)) in self.peers.iter().zip(results) {
                self.up
                    .with_label_values(&[peer.name])
                    .set(i64::from(serving));
                self.latency
                    .with_label_values(&[peer.name])
                    .set(elapsed.as_secs_f64());
                ready &= serving;
            }
            if was_ready != Some(ready) {
                tracing::info!(ready, "Peer health changed.");
                was_ready = Some(ready);
            }
            // The shell flips health to NOT_SERVING on shutdown; never undo that.
            if *stop.borrow() {
                return;
            }
            health.set_ready(ready).await;
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

impl Peer {
    /// Whether the peer answers SERVING, and how long it took to say so.
    #[tracing::instrument(skip(self), fields(otel.kind = "client", peer = self.name, url = %self.url))]
    async fn probe(&self) -> (bool, Duration) {
        let start = Instant::now();
        let request = HealthCheckRequest {
            service: self.service.to_owned(),
        };
        let serving = match HealthClient::new(self.channel.clone()).check(request).await {
            Ok(response) => response.into_inner().status() == ServingStatus::Serving,
            Err(status) => {
                tracing::debug!(code = ?status.code(), message = status.message(), "Peer health probe failed.");
                false
            }
        };
        (serving, start.elapsed())
    }
}
