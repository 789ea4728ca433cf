//! What the analyzer's integration tests share: the analyzer itself over
//! real gRPC with mutual TLS on loopback, and a reader of its metrics.

use std::net::SocketAddr;

use nanny_analyzer::Config;
use nanny_common::server::Listeners;
use nanny_proto::v1::analyzer_client::AnalyzerClient;
use tonic::transport::Channel;

/// A running analyzer: its gRPC client (as the coordinator), its HTTP
/// (metrics) address, and the sender that stops it.
pub struct Analyzer {
    pub client: AnalyzerClient<Channel>,
    pub http: SocketAddr,
    pub stop: tokio::sync::oneshot::Sender<()>,
}

/// Serves the analyzer with `config` (its TLS replaced by the test PKI's)
/// on ephemeral loopback ports.
pub async fn start(mut config: Config) -> Analyzer {
    let listeners = Listeners::ephemeral().await.unwrap();
    let grpc = listeners.grpc_addr().unwrap();
    let http = listeners.http_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    config.tls = nanny_test_util::pki::tls("nanny-analyzer");
    tokio::spawn(nanny_analyzer::run(config, listeners, async move {
        let _ = stopped.await;
    }));
    let client = AnalyzerClient::new(nanny_test_util::pki::channel(
        grpc,
        nanny_common::tls::COORDINATOR,
        "nanny-analyzer",
    ))
    .max_decoding_message_size(64 << 20);
    Analyzer { client, http, stop }
}

/// The sum of the series of metric `name` carrying each of `labels`
/// (`key="value"`), whatever other labels they have; `None` when none.
#[allow(dead_code, reason = "not every test file reads metrics")]
pub fn metric(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let values: Vec<f64> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter_map(|rest| {
            let (series, value) = rest.rsplit_once(' ')?;
            (series.is_empty() || series.starts_with('{'))
                .then_some(())
                .filter(|()| labels.iter().all(|l| series.contains(l)))?;
            value.parse::<f64>().ok()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}
