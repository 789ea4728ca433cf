//! Prometheus metrics shared by every service: build info, process stats and
//! per-method gRPC request counts and latencies, collected by a tower layer.

use std::{
    collections::HashSet,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use prost::Message as _;

use crate::Error;

/// A service's metric registry plus the metrics the shell records itself.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    ready: IntGauge,
    known_methods: Arc<HashSet<String>>,
}

impl Metrics {
    /// Creates the registry with `nanny_build_info{service,version}` and process metrics.
    ///
    /// # Errors
    /// [`Error::Metrics`] if a metric cannot be registered.
    pub fn new(service: &str) -> Result<Self, Error> {
        let registry = Registry::new();
        let build_info = IntGauge::with_opts(
            Opts::new(
                "nanny_build_info",
                "Always 1; labels carry the service and version.",
            )
            .const_label("service", service)
            .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build_info.set(1);
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        let requests = IntCounterVec::new(
            Opts::new(
                "nanny_grpc_server_requests_total",
                "gRPC requests handled, by method and status code.",
            ),
            &["method", "code"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "nanny_grpc_server_handling_seconds",
                "Time to the response headers of a gRPC request, by method.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        let ready = IntGauge::new("nanny_ready", "1 when the service reports SERVING, else 0.")?;
        registry.register(Box::new(ready.clone()))?;

        Ok(Self {
            registry,
            requests,
            duration,
            ready,
            known_methods: Arc::new(known_methods()),
        })
    }

    /// The registry, for service-specific metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition of every registered metric.
    pub fn encode(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "Failed to encode metrics.");
                String::new()
            })
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.get() == 1
    }

    fn record(&self, path: &str, code: &str, seconds: f64) {
        // Paths come from clients: only known methods become label values, so
        // a client probing random paths cannot blow up the series count.
        let method = if self.known_methods.contains(path) {
            path
        } else {
            "unknown"
        };
        self.requests.with_label_values(&[method, code]).inc();
        self.duration.with_label_values(&[method]).observe(seconds);
    }
}

/// Every `/package.Service/Method` path this binary can serve.
fn known_methods() -> HashSet<String> {
    let mut methods = HashSet::new();
    let sets = [
        nanny_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    for bytes in sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
            continue;
        };
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    methods.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    methods
}

/// Tower layer recording [`Metrics`] for every gRPC request.
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    metrics: Metrics,
}

impl GrpcMetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service produced by [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready must serve this call (tower's contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        let path = request.uri().path().to_owned();
        Box::pin(async move {
            let start = Instant::now();
            let response = inner.call(request).await;
            // Errors answered before any message (the usual case for unary
            // RPCs) carry grpc-status in the headers; otherwise the status is
            // only known at the trailers and the call counts as started OK.
            let code = match &response {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0")
                    .to_owned(),
                Err(_) => "transport_error".to_owned(),
            };
            metrics.record(&path, &code, start.elapsed().as_secs_f64());
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_build_info_and_counts_known_methods_only() {
        let metrics = Metrics::new("nanny-test").unwrap();
        metrics.record("/grpc.health.v1.Health/Check", "0", 0.001);
        metrics.record("/evil/random-path-1", "12", 0.001);
        let text = metrics.encode();
        assert!(
            text.contains(r#"nanny_build_info{service="nanny-test",version="#),
            "{text}"
        );
        assert!(
            text.contains(r#"method="/grpc.health.v1.Health/Check""#),
            "{text}"
        );
        assert!(!text.contains("random-path"), "{text}");
        assert!(text.contains(r#"method="unknown""#), "{text}");
    }

    #[test]
    fn every_nanny_method_is_known() {
        let methods = known_methods();
        assert!(methods.contains("/nanny.v1.SafetyGate/Review"));
        assert!(methods.contains("/nanny.v1.Collector/WatchSnapshots"));
        assert!(methods.contains("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
    }
}
