//! The analyzer: turns snapshots into validated, typed recommendations.
//!
//! It serves `nanny.v1.Analyzer`. Rules and the LLM providers land with the
//! analyzer issue; until then the RPCs answer UNIMPLEMENTED while the server,
//! health, reflection, metrics and config (including the LLM settings) are
//! complete.

pub mod config;

use std::future::Future;

use nanny_common::server::{Listeners, Shell, unimplemented};
use nanny_proto::{
    service_names,
    v1::{
        AnalyzeSnapshotRequest, AnalyzeSnapshotResponse, ClusterSnapshot, Recommendation,
        analyzer_server::{Analyzer, AnalyzerServer},
    },
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming, service::Routes};

pub use crate::config::Config;

/// Binary and metrics name.
pub const BINARY: &str = "nanny-analyzer";

/// Serves the analyzer until `shutdown` resolves.
///
/// # Errors
/// When a listener or server fails.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), nanny_common::Error> {
    let shell = Shell::new(BINARY, service_names::ANALYZER, &config.server).await?;
    // The analyzer is ready without its LLM: it degrades to rules only.
    shell.health().set_ready(true).await;
    shell
        .serve(
            Routes::new(AnalyzerServer::new(AnalyzerService)),
            listeners,
            shutdown,
        )
        .await
}

/// The `nanny.v1.Analyzer` implementation.
#[derive(Debug, Default)]
pub struct AnalyzerService;

#[tonic::async_trait]
impl Analyzer for AnalyzerService {
    type AnalyzeStream = ReceiverStream<Result<Recommendation, Status>>;

    #[tracing::instrument(skip_all)]
    async fn analyze(
        &self,
        _request: Request<Streaming<ClusterSnapshot>>,
    ) -> Result<Response<Self::AnalyzeStream>, Status> {
        Err(unimplemented("nanny.v1.Analyzer/Analyze"))
    }

    #[tracing::instrument(skip_all)]
    async fn analyze_snapshot(
        &self,
        _request: Request<AnalyzeSnapshotRequest>,
    ) -> Result<Response<AnalyzeSnapshotResponse>, Status> {
        Err(unimplemented("nanny.v1.Analyzer/AnalyzeSnapshot"))
    }
}
