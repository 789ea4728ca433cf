//! The collector: Nanny's read-only eyes on the cluster.
//!
//! It serves `nanny.v1.Collector`. Watching the cluster, detecting issues and
//! redaction land with the collector issue; until then the RPCs answer
//! UNIMPLEMENTED while the server, health, reflection, metrics and config
//! are complete.

pub mod config;

use std::future::Future;

use nanny_common::server::{Listeners, Shell, unimplemented};
use nanny_proto::{
    service_names,
    v1::{
        ClusterSnapshot, GetSnapshotRequest, WatchRequest,
        collector_server::{Collector, CollectorServer},
    },
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, service::Routes};

pub use crate::config::Config;

/// Binary and metrics name.
pub const BINARY: &str = "nanny-collector";

/// Serves the collector until `shutdown` resolves.
///
/// # Errors
/// When a listener or server fails.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), nanny_common::Error> {
    let shell = Shell::new(BINARY, service_names::COLLECTOR, &config.server).await?;
    let service = CollectorServer::new(CollectorService)
        // Snapshots are chunked below this size; refuse to send anything larger.
        .max_encoding_message_size(config.snapshot.max_message_bytes);
    // No dependency to wait for yet: the Kubernetes watches arrive with the collector issue.
    shell.health().set_ready(true).await;
    shell.serve(Routes::new(service), listeners, shutdown).await
}

/// The `nanny.v1.Collector` implementation.
#[derive(Debug, Default)]
pub struct CollectorService;

#[tonic::async_trait]
impl Collector for CollectorService {
    type WatchSnapshotsStream = ReceiverStream<Result<ClusterSnapshot, Status>>;
    type GetSnapshotStream = ReceiverStream<Result<ClusterSnapshot, Status>>;

    #[tracing::instrument(skip_all)]
    async fn watch_snapshots(
        &self,
        _request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchSnapshotsStream>, Status> {
        Err(unimplemented("nanny.v1.Collector/WatchSnapshots"))
    }

    #[tracing::instrument(skip_all)]
    async fn get_snapshot(
        &self,
        _request: Request<GetSnapshotRequest>,
    ) -> Result<Response<Self::GetSnapshotStream>, Status> {
        Err(unimplemented("nanny.v1.Collector/GetSnapshot"))
    }
}
