//! The safety gate: pure policy with no Kubernetes write access.
//!
//! It serves `nanny.v1.SafetyGate`. The decision logic lands with the safety
//! gate issue; until then the RPCs answer UNIMPLEMENTED — which every caller
//! must treat as DENIED — while the server, health, reflection, metrics and
//! config (including the protected resources) are complete.

pub mod config;

use std::future::Future;

use nanny_common::server::{Listeners, Shell, unimplemented};
use nanny_proto::{
    service_names,
    v1::{
        ReviewRequest, Verdict,
        safety_gate_server::{SafetyGate, SafetyGateServer},
    },
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming, service::Routes};

pub use crate::config::Config;

/// Binary and metrics name.
pub const BINARY: &str = "nanny-safety-gate";

/// Serves the gate until `shutdown` resolves.
///
/// # Errors
/// When a listener or server fails.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), nanny_common::Error> {
    let shell = Shell::new(BINARY, service_names::SAFETY_GATE, &config.server).await?;
    // Pure policy: nothing external to wait for.
    shell.health().set_ready(true).await;
    shell
        .serve(
            Routes::new(SafetyGateServer::new(SafetyGateService)),
            listeners,
            shutdown,
        )
        .await
}

/// The `nanny.v1.SafetyGate` implementation.
#[derive(Debug, Default)]
pub struct SafetyGateService;

#[tonic::async_trait]
impl SafetyGate for SafetyGateService {
    type ReviewStreamStream = ReceiverStream<Result<Verdict, Status>>;

    #[tracing::instrument(skip_all)]
    async fn review(&self, _request: Request<ReviewRequest>) -> Result<Response<Verdict>, Status> {
        Err(unimplemented("nanny.v1.SafetyGate/Review"))
    }

    #[tracing::instrument(skip_all)]
    async fn review_stream(
        &self,
        _request: Request<Streaming<ReviewRequest>>,
    ) -> Result<Response<Self::ReviewStreamStream>, Status> {
        Err(unimplemented("nanny.v1.SafetyGate/ReviewStream"))
    }
}
