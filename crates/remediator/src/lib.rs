//! The remediator: the only service with write access to the cluster.
//!
//! It serves `nanny.v1.Remediator`. The actions land with the remediator
//! issue; until then the RPCs answer UNIMPLEMENTED (nothing is ever written)
//! while the server, health, reflection, metrics and config are complete.

pub mod config;

use std::future::Future;

use nanny_common::server::{Listeners, Shell, unimplemented};
use nanny_proto::{
    service_names,
    v1::{
        ActionResult, ExecuteRequest, RollbackRequest,
        remediator_server::{Remediator, RemediatorServer},
    },
};
use tonic::{Request, Response, Status, service::Routes};

pub use crate::config::Config;

/// Binary and metrics name.
pub const BINARY: &str = "nanny-remediator";

/// Serves the remediator until `shutdown` resolves.
///
/// # Errors
/// When a listener or server fails.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), nanny_common::Error> {
    let shell = Shell::new(BINARY, service_names::REMEDIATOR, &config.server).await?;
    // No dependency to wait for yet: the Kubernetes client arrives with the remediator issue.
    shell.health().set_ready(true).await;
    shell
        .serve(
            Routes::new(RemediatorServer::new(RemediatorService)),
            listeners,
            shutdown,
        )
        .await
}

/// The `nanny.v1.Remediator` implementation.
#[derive(Debug, Default)]
pub struct RemediatorService;

#[tonic::async_trait]
impl Remediator for RemediatorService {
    #[tracing::instrument(skip_all)]
    async fn execute(
        &self,
        _request: Request<ExecuteRequest>,
    ) -> Result<Response<ActionResult>, Status> {
        Err(unimplemented("nanny.v1.Remediator/Execute"))
    }

    #[tracing::instrument(skip_all)]
    async fn rollback(
        &self,
        _request: Request<RollbackRequest>,
    ) -> Result<Response<ActionResult>, Status> {
        Err(unimplemented("nanny.v1.Remediator/Rollback"))
    }
}
