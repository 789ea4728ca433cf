//! The analyzer: turns snapshots into validated, typed recommendations.
//!
//! It serves `nanny.v1.Analyzer`. Deterministic [`rules`] turn a snapshot's
//! issues into recommendations pinned to objects of the snapshot; the
//! [`validate`] layer drops anything that does not name a snapshot object
//! exactly or whose parameters are out of bounds, before it leaves. With
//! `llm.enabled`, the [`llm`] path (Ollama native or OpenAI-compatible)
//! adds model proposals, validated the same way; the rules never wait for
//! it and any model failure degrades to rules only.

pub mod analysis;
pub mod catalog;
pub mod config;
pub mod consult;
pub mod error;
pub mod incident;
pub mod index;
pub mod llm;
pub mod rules;
pub mod service;
pub mod settings;
pub mod validate;

use std::future::Future;

use nanny_common::server::{Listeners, Shell};
use nanny_proto::{service_names, v1::analyzer_server::AnalyzerServer};
use tonic::service::Routes;

pub use crate::{analysis::Analysis, config::Config, error::Error, service::AnalyzerService};

/// Binary and metrics name.
pub const BINARY: &str = "nanny-analyzer";

/// Serves the analyzer until `shutdown` resolves.
///
/// # Errors
/// When a metric cannot be registered or a listener or server fails.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), nanny_common::Error> {
    let shell = Shell::new(
        BINARY,
        service_names::ANALYZER,
        &config.server,
        &config.tls,
        &[nanny_common::tls::COORDINATOR, nanny_common::tls::OPERATOR],
    )
    .await?;
    if config.llm.enabled {
        tracing::info!(
            provider = ?config.llm.provider,
            endpoint = %config.llm.endpoint,
            model = %config.llm.model,
            "Model analysis enabled."
        );
    }
    let analysis = Analysis::new(&config, shell.metrics().registry())?;
    // The analyzer is ready without its LLM: it degrades to rules only.
    shell.health().set_ready(true).await;
    shell
        .serve(
            Routes::new(AnalyzerServer::new(AnalyzerService::new(analysis))),
            listeners,
            shutdown,
        )
        .await
}
