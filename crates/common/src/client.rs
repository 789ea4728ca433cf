//! gRPC clients to other Nanny services: lazily connected channels with
//! timeouts and trace propagation.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tonic::{
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint, channel::Change},
};

use crate::{Error, telemetry::TracePropagation, tls::ClientTls};

mod replicas;

pub use replicas::Replicas;

/// A channel whose calls carry the caller's trace context.
pub type TracedChannel = InterceptedService<ReloadingChannel, TracePropagation>;

/// How often a channel looks at its certificate files.
const RELOAD_CHECK: Duration = Duration::from_secs(5);

/// A channel that is rebuilt when its client certificate files change, so a
/// rotated certificate is used for every new connection without a restart.
/// Calls already made keep their connection.
#[derive(Clone)]
pub struct ReloadingChannel {
    inner: Channel,
    generation: u64,
    reload: Option<Arc<Reload>>,
}

impl std::fmt::Debug for ReloadingChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingChannel")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Builds a channel with the given TLS side.
type Build = Box<dyn Fn(&ClientTls) -> Result<Channel, Error> + Send + Sync>;

struct Reload {
    build: Build,
    state: Mutex<ReloadState>,
}

struct ReloadState {
    generation: u64,
    channel: Channel,
    tls: ClientTls,
    checked: Instant,
}

impl Reload {
    /// The current channel when it is newer than `generation`, after a
    /// look at the files (at most every [`RELOAD_CHECK`]).
    fn newer(&self, generation: u64) -> Option<(u64, Channel)> {
        // A poisoned lock: keep the channel in hand rather than guess.
        let mut state = self.state.lock().ok()?;
        if state.checked.elapsed() >= RELOAD_CHECK {
            state.checked = Instant::now();
            if let Some(tls) = state.tls.reloaded() {
                match (self.build)(&tls) {
                    Ok(channel) => {
                        state.generation += 1;
                        state.channel = channel;
                        state.tls = tls;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Cannot rebuild a channel with the new certificate.");
                    }
                }
            }
        }
        (state.generation != generation).then(|| (state.generation, state.channel.clone()))
    }
}

impl ReloadingChannel {
    fn new(
        tls: Option<&ClientTls>,
        build: impl Fn(Option<&ClientTls>) -> Result<Channel, Error> + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        let inner = build(tls)?;
        let reload = tls.map(|tls| {
            Arc::new(Reload {
                state: Mutex::new(ReloadState {
                    generation: 0,
                    channel: inner.clone(),
                    tls: tls.clone(),
                    checked: Instant::now(),
                }),
                build: Box::new(move |tls| build(Some(tls))),
            })
        });
        Ok(Self {
            inner,
            generation: 0,
            reload,
        })
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for ReloadingChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = tonic::transport::channel::ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Swapped only here: tower's contract is that the channel polled
        // ready is the one that serves the call.
        if let Some((generation, channel)) =
            self.reload.as_ref().and_then(|r| r.newer(self.generation))
        {
            self.inner = channel;
            self.generation = generation;
        }
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        tower::Service::call(&mut self.inner, request)
    }
}

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
    let (key, url) = (key.to_owned(), url.to_owned());
    let channel = ReloadingChannel::new(tls, move |tls| {
        Ok(endpoint(&key, &url, timeout, tls)?.connect_lazy())
    })?;
    Ok(InterceptedService::new(channel, TracePropagation))
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
    let (key, url) = (key.to_owned(), url.to_owned());
    // A rebuilt balanced channel drops the old one, whose resolver then stops.
    let channel = ReloadingChannel::new(tls, move |tls| balanced(&key, &url, timeout, tls))?;
    Ok(InterceptedService::new(channel, TracePropagation))
}

fn balanced(
    key: &str,
    url: &str,
    timeout: Duration,
    tls: Option<&ClientTls>,
) -> Result<Channel, Error> {
    let template = endpoint(key, url, timeout, tls)?;
    let Some(mut resolver) = Resolver::for_url(key, template.uri()) else {
        return Ok(template.connect_lazy());
    };
    let (balanced, changes) = Channel::balance_channel::<std::net::SocketAddr>(64);
    let key = key.to_owned();
    let tls = tls.cloned();
    tokio::spawn(async move {
        loop {
            let (gone, new) = resolver.resolve().await;
            for address in gone {
                let _ = changes.send(Change::Remove(address)).await;
            }
            for address in new {
                match endpoint(&key, &resolver.url_of(address), timeout, tls.as_ref()) {
                    Ok(e) => {
                        let _ = changes.send(Change::Insert(address, e)).await;
                    }
                    Err(error) => tracing::warn!(%error, "Cannot use a resolved address."),
                }
            }
            if changes.is_closed() {
                return;
            }
            tokio::time::sleep(RESOLVE_INTERVAL).await;
        }
    });
    Ok(balanced)
}

/// The addresses a peer URL's host name resolves to, looked up again on
/// each [`Resolver::resolve`].
struct Resolver {
    key: String,
    host: String,
    port: u16,
    scheme: String,
    known: HashSet<SocketAddr>,
}

impl Resolver {
    /// `None` for an IP address or `localhost`: one fixed peer, nothing to
    /// resolve.
    fn for_url(key: &str, uri: &http::Uri) -> Option<Self> {
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        if host.parse::<std::net::IpAddr>().is_ok() || host == "localhost" {
            return None;
        }
        let scheme = uri.scheme_str().unwrap_or("http").to_owned();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        Some(Self {
            key: key.to_owned(),
            host,
            port,
            scheme,
            known: HashSet::new(),
        })
    }

    /// The URL of one resolved address, in the peer URL's scheme.
    fn url_of(&self, address: SocketAddr) -> String {
        format!("{}://{address}", self.scheme)
    }

    /// Looks the name up: the addresses gone and the new ones since the
    /// last lookup. A failed lookup keeps the addresses known: a DNS
    /// hiccup must not cut a peer off.
    async fn resolve(&mut self) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
        match tokio::net::lookup_host((self.host.as_str(), self.port)).await {
            Ok(addresses) => {
                let now: HashSet<SocketAddr> = addresses.collect();
                let gone = self.known.difference(&now).copied().collect();
                let new: Vec<SocketAddr> = now.difference(&self.known).copied().collect();
                if now != self.known {
                    tracing::info!(peer = %self.key, addresses = now.len(), "Peer addresses changed.");
                }
                self.known = now;
                (gone, new)
            }
            Err(error) => {
                tracing::warn!(%error, peer = %self.key, "Cannot resolve the peer; keeping its last addresses.");
                (Vec::new(), Vec::new())
            }
        }
    }
}
