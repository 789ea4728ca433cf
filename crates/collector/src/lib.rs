//! The collector: Nanny's read-only eyes on the cluster.
//!
//! It watches the cluster ([`watch`]), keeps compact redacted projections
//! ([`project`], [`store`]), reads usage and throttling from Prometheus
//! ([`prom`]), detects issues ([`detect`]), and streams scoped snapshots —
//! FULL, then DELTAs, chunked under the message limit — to every
//! subscriber ([`publish`], [`snapshot`], [`service`]).

pub mod config;
pub mod detect;
pub mod project;
pub mod prom;
pub mod publish;
pub mod service;
pub mod snapshot;
pub mod store;
pub mod trend;
pub mod watch;

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use nanny_common::{
    Error,
    server::{Listeners, Shell},
};
use nanny_proto::{
    service_names,
    v1::{ClusterInfo, collector_server::CollectorServer},
};
use tokio::sync::{Notify, mpsc, watch as channel};
use tonic::service::Routes;

pub use crate::{config::Config, service::CollectorService};

/// Binary and metrics name.
pub const BINARY: &str = "nanny-collector";

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn dependency(what: &'static str) -> impl Fn(String) -> Error {
    move |message| Error::Dependency { what, message }
}

async fn kube_client(config: &config::KubernetesConfig) -> Result<kube::Client, Error> {
    let kube_config =
        nanny_common::kube::load_config("kubernetes.kubeconfig", &config.kubeconfig).await?;
    kube::Client::try_from(kube_config)
        .map_err(|e| dependency("the Kubernetes client")(e.to_string()))
}

/// Serves the collector until `shutdown` resolves.
///
/// # Errors
/// When the Kubernetes client cannot be built, or a listener or server fails.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let shell = Shell::new(
        BINARY,
        service_names::COLLECTOR,
        &config.server,
        &config.tls,
        &[nanny_common::tls::COORDINATOR, nanny_common::tls::OPERATOR],
    )
    .await?;
    let registry = shell.metrics().registry();
    let client = kube_client(&config.kubernetes).await?;

    let store = Arc::new(Mutex::new(store::Store::default()));
    let changed = Arc::new(Notify::new());
    let (synced_tx, mut synced_rx) = mpsc::unbounded_channel();
    let context = watch::Context {
        store: store.clone(),
        changed: changed.clone(),
        redaction: Arc::new(project::Redaction {
            annotation_allow_list: config.snapshot.annotation_allow_list.clone(),
            pod_labels: config.snapshot.pod_labels.clone(),
            max_text_bytes: config.snapshot.max_text_bytes,
        }),
        metrics: watch::WatchMetrics::new(registry)?,
        synced: synced_tx,
    };
    let watches = watch::spawn_all(&client, &config.kubernetes, &context);

    let (metrics_tx, metrics_rx) = channel::channel(Arc::new(prom::MetricsRound::default()));
    let query_metrics = prom::QueryMetrics::new(registry)?;
    // Without Prometheus the sender is held here, so the publisher never
    // sees a closed channel.
    let idle_metrics =
        match prom::Poller::new(&config.prometheus, &config.thresholds, query_metrics)
            .map_err(|e| Error::config("prometheus.url", e))?
        {
            Some(poller) => {
                tokio::spawn(poller.run(metrics_tx));
                None
            }
            None => {
                tracing::warn!(
                    "prometheus.url is not set: no usage, throttling or volume metrics."
                );
                Some(metrics_tx)
            }
        };

    let (cluster_tx, cluster_rx) = channel::channel(ClusterInfo::default());
    tokio::spawn(cluster_version(client.clone(), cluster_tx));

    let (world_tx, world_rx) = channel::channel(Arc::new(snapshot::World::default()));
    let publisher = publish::Publisher::new(
        store,
        changed.clone(),
        metrics_rx,
        cluster_rx,
        config.clone(),
        world_tx,
        publish::PublishMetrics::new(registry)?,
    );
    let service = CollectorService::new(
        world_rx,
        config.snapshot.clone(),
        service::StreamMetrics::new(registry)?,
    );

    // Ready once every watch has listed its objects: before that a
    // snapshot would be incomplete. The publisher starts then, too, so
    // generation 1 is always a complete picture.
    let health = shell.health();
    tokio::spawn(async move {
        for _ in 0..watches {
            if synced_rx.recv().await.is_none() {
                return;
            }
        }
        tracing::info!(watches, "Every watch has synced; serving snapshots.");
        changed.notify_one();
        tokio::spawn(publisher.run());
        health.set_ready(true).await;
    });

    let service = CollectorServer::new(service)
        // Snapshots are chunked below this size; refuse to send anything larger.
        .max_encoding_message_size(config.snapshot.max_message_bytes);
    let served = shell.serve(Routes::new(service), listeners, shutdown).await;
    drop(idle_metrics);
    served
}

/// Keeps the cluster's version current (it changes on upgrades).
async fn cluster_version(client: kube::Client, tx: channel::Sender<ClusterInfo>) {
    loop {
        match client.apiserver_version().await {
            Ok(info) => {
                tx.send_modify(|c| c.version.clone_from(&info.git_version));
                tokio::time::sleep(Duration::from_secs(600)).await;
            }
            Err(error) => {
                tracing::warn!(%error, "Cannot read the Kubernetes version; retrying.");
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}
