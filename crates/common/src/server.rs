//! The server shell every service runs in: gRPC (with health, reflection,
//! metrics and tracing layers) and an HTTP port for `/metrics`, `/healthz`
//! and `/readyz`, both stopped gracefully by one shutdown signal.

use std::{future::Future, net::SocketAddr, time::Duration};

use axum::{Router, http::StatusCode, routing::get};
use tokio::{net::TcpListener, sync::watch};
use tokio_stream::{StreamExt as _, wrappers::TcpListenerStream};
use tonic::service::Routes;
use tonic_health::{ServingStatus, server::HealthReporter};
use tower_http::trace::TraceLayer;

use crate::{
    Error,
    config::ServerConfig,
    metrics::{GrpcMetricsLayer, Metrics},
    telemetry,
    tls::{Access, AuthorizeLayer, ServerTls, TlsConfig},
};

/// The two bound listeners of a service.
#[derive(Debug)]
pub struct Listeners {
    /// gRPC.
    pub grpc: TcpListener,
    /// HTTP: metrics and probes.
    pub http: TcpListener,
}

impl Listeners {
    /// Binds both addresses from config.
    ///
    /// # Errors
    /// [`Error::Bind`] naming the address that failed.
    pub async fn bind(config: &ServerConfig) -> Result<Self, Error> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })
        };
        Ok(Self {
            grpc: bind(config.grpc_addr).await?,
            http: bind(config.http_addr).await?,
        })
    }

    /// Binds both on `127.0.0.1:0`, for tests.
    ///
    /// # Errors
    /// [`Error::Bind`] if the OS has no free port.
    pub async fn ephemeral() -> Result<Self, Error> {
        let mut config = ServerConfig::with_ports(0, 0);
        config.grpc_addr.set_ip([127, 0, 0, 1].into());
        config.http_addr.set_ip([127, 0, 0, 1].into());
        Self::bind(&config).await
    }

    /// The bound gRPC address.
    ///
    /// # Errors
    /// The OS error if the socket has no local address.
    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }

    /// The bound HTTP address.
    ///
    /// # Errors
    /// The OS error if the socket has no local address.
    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }
}

/// Readiness as reported by `grpc.health.v1` (for the empty service name and
/// the service's own name), `/readyz` and the `nanny_ready` gauge.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    service: &'static str,
    metrics: Metrics,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Health {
    /// Flips every health view to SERVING or NOT_SERVING.
    pub async fn set_ready(&self, ready: bool) {
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        self.reporter.set_service_status(self.service, status).await;
        self.metrics.set_ready(ready);
    }

    fn is_ready(&self) -> bool {
        self.metrics.is_ready()
    }
}

/// One service's shell: metrics registry and health, then [`Shell::serve`].
#[derive(Debug)]
pub struct Shell {
    metrics: Metrics,
    health: Health,
    health_server:
        tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
    grace: Duration,
    tls: Option<ServerTls>,
    authorize: AuthorizeLayer,
}

impl Shell {
    /// Creates the shell for `grpc_service` (e.g. `nanny.v1.Collector`; the
    /// binary name for services with no API of their own), served over
    /// mutual TLS from `tls` to the identities in `callers` only. Health
    /// starts NOT_SERVING until the service calls [`Health::set_ready`].
    ///
    /// # Errors
    /// [`Error::Metrics`] if the registry cannot be built, [`Error::Config`]
    /// if the TLS files do not load.
    pub async fn new(
        binary: &str,
        grpc_service: &'static str,
        config: &ServerConfig,
        tls: &TlsConfig,
        callers: &'static [&'static str],
    ) -> Result<Self, Error> {
        let server_tls = ServerTls::load(tls)?;
        let authorize = AuthorizeLayer::new(
            &[Access {
                service: grpc_service,
                callers,
            }],
            server_tls.is_some(),
        );
        let metrics = Metrics::new(binary)?;
        let reporter = HealthReporter::new();
        let health_server = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
        );
        let health = Health {
            reporter,
            service: grpc_service,
            metrics: metrics.clone(),
        };
        health.set_ready(false).await;
        Ok(Self {
            metrics,
            health,
            health_server,
            grace: Duration::from_secs(config.shutdown_grace_secs),
            tls: server_tls,
            authorize,
        })
    }

    /// The metrics registry, for the service's own metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The readiness handle.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Serves `routes` plus health and reflection on the gRPC listener and the
    /// probes on the HTTP listener until `shutdown` resolves, then drains
    /// in-flight requests for at most the configured grace period.
    ///
    /// # Errors
    /// [`Error::Reflection`], [`Error::Grpc`] or [`Error::Http`] when a server fails.
    pub async fn serve(
        self,
        routes: Routes,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(nanny_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(nanny_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;
        let routes = routes
            .add_service(self.health_server)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);

        // One signal fans out to both servers.
        let (stop_tx, stop_rx) = watch::channel(false);
        let health = self.health.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("Shutting down: draining in-flight requests.");
            // Stop advertising readiness before draining: health checks see
            // NOT_SERVING while in-flight requests finish.
            health.set_ready(false).await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };

        let router = tonic::transport::Server::builder()
            // Spans first, so metrics and handlers run inside the request's trace.
            .layer(TraceLayer::new_for_grpc().make_span_with(telemetry::server_span))
            // Per-method request counts and latency for /metrics, refusals included.
            .layer(GrpcMetricsLayer::new(self.metrics.clone()))
            // Only the identities this service serves reach its handlers.
            .layer(self.authorize)
            .add_routes(routes);
        let grpc: std::pin::Pin<
            Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>,
        > =
            match self.tls {
                Some(tls) => {
                    tokio::spawn(tls.clone().watch(stopped(stop_rx.clone())));
                    Box::pin(router.serve_with_incoming_shutdown(
                        tls.incoming(listeners.grpc),
                        stopped(stop_rx.clone()),
                    ))
                }
                None => Box::pin(router.serve_with_incoming_shutdown(
                    no_delay(listeners.grpc),
                    stopped(stop_rx.clone()),
                )),
            };

        let http = axum::serve(
            listeners.http,
            probes(self.metrics.clone(), self.health.clone()),
        )
        .with_graceful_shutdown(stopped(stop_rx.clone()));

        let grace = self.grace;
        let drain_deadline = async move {
            stopped(stop_rx).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = async { tokio::try_join!(async { grpc.await.map_err(Error::Grpc) }, async { http.await.map_err(Error::Http) }) } => {
                result?;
            }
            () = drain_deadline => {
                tracing::warn!(grace_secs = grace.as_secs(), "Grace period over; dropping remaining requests.");
            }
        }
        tracing::info!("Stopped.");
        Ok(())
    }
}

/// Accepted gRPC connections with Nagle's algorithm off: small unary
/// replies must not wait for the peer's delayed ACK (a 40 ms stall).
fn no_delay(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    TcpListenerStream::new(listener).map(|connection| {
        if let Ok(stream) = &connection
            && let Err(error) = stream.set_nodelay(true)
        {
            tracing::debug!(%error, "Cannot set TCP_NODELAY.");
        }
        connection
    })
}

fn probes(metrics: Metrics, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(move || async move { metrics.encode() }))
        // Liveness: the process and its runtime answer.
        .route("/healthz", get(|| async { "ok\n" }))
        // Readiness mirrors grpc.health.v1.
        .route(
            "/readyz",
            get(move || async move {
                if health.is_ready() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
        )
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "Cannot listen for SIGINT.");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "Cannot listen for SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("Received SIGINT."),
        () = term => tracing::info!("Received SIGTERM."),
    }
}

/// The status for an RPC of the contract whose logic has not landed in this
/// version yet. Callers treat it like any other failure (the gate's callers:
/// as DENIED).
pub fn unimplemented(rpc: &str) -> tonic::Status {
    tonic::Status::unimplemented(format!("{rpc} is not implemented in this version"))
}
