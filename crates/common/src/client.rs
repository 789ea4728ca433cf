//! gRPC clients to other Nanny services: lazily connected channels with
//! timeouts and trace propagation.

use std::time::Duration;

use tonic::{
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint, channel::Change},
};

use crate::{Error, telemetry::TracePropagation, tls::ClientTls};

/// A channel whose calls carry the caller's trace context.
pub type TracedChannel = InterceptedService<Channel, TracePropagation>;

/// A lazily connected channel to `url`: construction never blocks on the
/// peer, so a service starts even while its peers restart; calls fail fast
/// with UNAVAILABLE until the peer answers. With `tls` every connection is
/// mutual TLS whatever the URL's scheme says (`http://` is upgraded), so a
/// peer URL never switches authentication off.
///
/// # Errors
/// [`Error::Config`] for `key` when `url` is not a valid endpoint.
pub fn channel(
    key: &str,
    url: &str,
    timeout: Duration,
    tls: Option<&ClientTls>,
) -> Result<TracedChannel, Error> {
    Ok(InterceptedService::new(
        endpoint(key, url, timeout, tls)?.connect_lazy(),
        TracePropagation,
    ))
}

fn endpoint(
    key: &str,
    url: &str,
    timeout: Duration,
    tls: Option<&ClientTls>,
) -> Result<Endpoint, Error> {
    let invalid =
        |e: &dyn std::fmt::Display| Error::config(key, format!("invalid endpoint {url:?}: {e}"));
    let endpoint = match tls {
        Some(tls) => {
            let url = match url.strip_prefix("http://") {
                Some(rest) => format!("https://{rest}"),
                None => url.to_owned(),
            };
            Endpoint::from_shared(url)
                .map_err(|e| invalid(&e))?
                .tls_config(tls.config())
                .map_err(|e| invalid(&e))?
        }
        None => Endpoint::from_shared(url.to_owned()).map_err(|e| invalid(&e))?,
    };
    Ok(endpoint
        .connect_timeout(timeout)
        .timeout(timeout)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true))
}

/// How often a balanced channel re-resolves its host name.
const RESOLVE_INTERVAL: Duration = Duration::from_secs(10);

/// Like [`channel`], but calls are spread over every address the URL's host
/// name resolves to, re-resolved every 10 s — for a headless Service whose
/// DNS name lists each replica, so that scaling the peer spreads the load
/// without a proxy. An IP address or `localhost` gives a plain channel.
/// Must be called inside a Tokio runtime.
///
/// # Errors
/// [`Error::Config`] for `key` when `url` is not a valid endpoint.
pub fn balanced_channel(
    key: &str,
    url: &str,
    timeout: Duration,
    tls: Option<&ClientTls>,
) -> Result<TracedChannel, Error> {
    let template = endpoint(key, url, timeout, tls)?;
    let uri = template.uri().clone();
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    if host.parse::<std::net::IpAddr>().is_ok() || host == "localhost" {
        return channel(key, url, timeout, tls);
    }
    let scheme = uri.scheme_str().unwrap_or("http").to_owned();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let (balanced, changes) = Channel::balance_channel::<std::net::SocketAddr>(64);
    let key = key.to_owned();
    let tls = tls.cloned();
    tokio::spawn(async move {
        let mut known = std::collections::HashSet::new();
        loop {
            match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(addrs) => {
                    let now: std::collections::HashSet<_> = addrs.collect();
                    for gone in known.difference(&now) {
                        let _ = changes.send(Change::Remove(*gone)).await;
                    }
                    for new in now.difference(&known) {
                        let url = format!("{scheme}://{new}");
                        match endpoint(&key, &url, timeout, tls.as_ref()) {
                            Ok(e) => {
                                let _ = changes.send(Change::Insert(*new, e)).await;
                            }
                            Err(error) => tracing::warn!(%error, "Cannot use a resolved address."),
                        }
                    }
                    if now != known {
                        tracing::info!(peer = %key, addresses = now.len(), "Peer addresses changed.");
                    }
                    known = now;
                }
                Err(error) => {
                    // Keep the addresses we have: DNS hiccups must not cut a peer off.
                    tracing::warn!(%error, peer = %key, "Cannot resolve the peer; keeping its last addresses.");
                }
            }
            if changes.is_closed() {
                return;
            }
            tokio::time::sleep(RESOLVE_INTERVAL).await;
        }
    });
    Ok(InterceptedService::new(balanced, TracePropagation))
}
