//! gRPC clients to other Nanny services: lazily connected channels with
//! timeouts and trace propagation.

use std::time::Duration;

use tonic::{
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint},
};

use crate::{Error, telemetry::TracePropagation};

/// A channel whose calls carry the caller's trace context.
pub type TracedChannel = InterceptedService<Channel, TracePropagation>;

/// A lazily connected channel to `url`: construction never blocks on the
/// peer, so a service starts even while its peers restart; calls fail fast
/// with UNAVAILABLE until the peer answers.
///
/// # Errors
/// [`Error::Config`] for `key` when `url` is not a valid endpoint.
pub fn channel(key: &str, url: &str, timeout: Duration) -> Result<TracedChannel, Error> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| Error::config(key, format!("invalid endpoint {url:?}: {e}")))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(InterceptedService::new(
        endpoint.connect_lazy(),
        TracePropagation,
    ))
}
