//! The `nanny.v1.Collector` gRPC service.

use std::{sync::Arc, time::Duration};

use nanny_proto::v1::{
    ClusterSnapshot, GetSnapshotRequest, WatchRequest, collector_server::Collector,
};
use prometheus::{IntCounter, IntGauge, Registry};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{
    config::SnapshotConfig,
    snapshot::{ScopeFilter, Subscriber, World, chunk},
};

/// How long a request waits for the first complete picture of the cluster.
const SYNC_WAIT: Duration = Duration::from_secs(30);
/// Messages buffered per stream: with 1 MiB chunks, at most a few MiB per
/// subscriber however slow it is.
const STREAM_BUFFER: usize = 4;

/// Subscriber metrics.
#[derive(Debug, Clone)]
pub struct StreamMetrics {
    subscribers: IntGauge,
    dropped: IntCounter,
    messages: IntCounter,
}

impl StreamMetrics {
    /// Registers the stream metrics.
    ///
    /// # Errors
    /// When a metric cannot be registered.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let subscribers = IntGauge::new(
            "nanny_collector_subscribers",
            "Open WatchSnapshots streams.",
        )?;
        let dropped = IntCounter::new(
            "nanny_collector_subscribers_dropped_total",
            "Subscribers dropped for not reading their stream in time.",
        )?;
        let messages = IntCounter::new(
            "nanny_collector_snapshot_messages_total",
            "Snapshot messages (chunks) sent to subscribers.",
        )?;
        registry.register(Box::new(subscribers.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(messages.clone()))?;
        Ok(Self {
            subscribers,
            dropped,
            messages,
        })
    }
}

/// The `nanny.v1.Collector` implementation.
#[derive(Debug, Clone)]
pub struct CollectorService {
    worlds: watch::Receiver<Arc<World>>,
    config: SnapshotConfig,
    slots: Arc<Semaphore>,
    metrics: StreamMetrics,
}

impl CollectorService {
    /// Serves the worlds published on `worlds`.
    pub fn new(
        worlds: watch::Receiver<Arc<World>>,
        config: SnapshotConfig,
        metrics: StreamMetrics,
    ) -> Self {
        Self {
            worlds,
            slots: Arc::new(Semaphore::new(config.max_subscribers)),
            config,
            metrics,
        }
    }

    /// The first world, once every watch has listed its objects.
    async fn synced(&self) -> Result<watch::Receiver<Arc<World>>, Status> {
        let mut worlds = self.worlds.clone();
        let ready = tokio::time::timeout(SYNC_WAIT, worlds.wait_for(|w| w.generation > 0))
            .await
            .map(|result| result.map(drop));
        match ready {
            Ok(Ok(())) => Ok(worlds),
            Ok(Err(_)) => Err(Status::unavailable("the collector is shutting down")),
            Err(_) => Err(Status::unavailable(
                "the collector has not finished listing the cluster yet; retry shortly",
            )),
        }
    }
}

fn filter(scope: Option<nanny_proto::v1::Scope>) -> Result<ScopeFilter, Status> {
    ScopeFilter::new(scope).map_err(|e| Status::invalid_argument(format!("scope: {e}")))
}

#[tonic::async_trait]
impl Collector for CollectorService {
    type WatchSnapshotsStream = ReceiverStream<Result<ClusterSnapshot, Status>>;
    type GetSnapshotStream = ReceiverStream<Result<ClusterSnapshot, Status>>;

    #[tracing::instrument(skip_all)]
    async fn watch_snapshots(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchSnapshotsStream>, Status> {
        let request = request.into_inner();
        let filter = filter(request.scope)?;
        let permit = self.slots.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "the collector serves at most {} WatchSnapshots streams",
                self.config.max_subscribers
            ))
        })?;
        let mut worlds = self.synced().await?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let max_bytes = self.config.max_message_bytes;
        let timeout = Duration::from_secs(self.config.subscriber_timeout_secs);
        let metrics = self.metrics.clone();
        // Every stream starts FULL: resuming from an older generation
        // would need the history of deltas, which the collector does not keep.
        tokio::spawn(async move {
            let _permit = permit;
            metrics.subscribers.inc();
            let mut subscriber = Subscriber::new(filter);
            'stream: loop {
                let world = worlds.borrow_and_update().clone();
                if let Some(snapshot) = subscriber.next(&world, false) {
                    for message in chunk(snapshot, max_bytes) {
                        match tokio::time::timeout(timeout, tx.send(Ok(message))).await {
                            Ok(Ok(())) => metrics.messages.inc(),
                            // The client went away.
                            Ok(Err(_)) => break 'stream,
                            Err(_) => {
                                metrics.dropped.inc();
                                tracing::warn!(
                                    timeout_secs = timeout.as_secs(),
                                    "Dropped a subscriber that stopped reading its stream."
                                );
                                break 'stream;
                            }
                        }
                    }
                }
                tokio::select! {
                    changed = worlds.changed() => if changed.is_err() { break },
                    () = tx.closed() => break,
                }
            }
            metrics.subscribers.dec();
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<Self::GetSnapshotStream>, Status> {
        let filter = filter(request.into_inner().scope)?;
        let worlds = self.synced().await?;
        let world = worlds.borrow().clone();
        let mut subscriber = Subscriber::new(filter);
        let snapshot = subscriber
            .next(&world, true)
            .ok_or_else(|| Status::internal("a full snapshot is never empty"))?;
        let messages = chunk(snapshot, self.config.max_message_bytes);
        let (tx, rx) = mpsc::channel(messages.len().max(1));
        for message in messages {
            // Capacity equals the number of messages: this never waits or fails.
            let _ = tx.try_send(Ok(message));
        }
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests;
