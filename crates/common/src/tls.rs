//! Mutual TLS on every gRPC connection, and who may call what.
//!
//! A Nanny service is its certificate: the client certificate's DNS subject
//! alternative names are the caller's identities (`nanny-coordinator`,
//! `operator`, ...). Every server asks for a client certificate signed by
//! `tls.ca`, refuses a handshake without one, and then lets each caller reach
//! only the services that name its identity ([`AuthorizeLayer`]). Health and
//! reflection stay open to every authenticated caller, so grpcurl and
//! kubelet-style probes (the chart uses `/readyz` on the HTTP port) keep
//! working.
//!
//! Certificates rotate without an outage: the server re-reads its files when
//! they change ([`ServerTls::watch`]); a handshake always uses the newest
//! valid set. Clients read theirs when a channel is built.

use std::{
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, RwLock},
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use rustls::{
    RootCertStore, ServerConfig,
    crypto::ring as provider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::WebPkiClientVerifier,
};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::Error;

/// The coordinator's identity: the only caller of the gate and the remediator.
pub const COORDINATOR: &str = "nanny-coordinator";
/// People and their tools (nannyctl, grpcurl).
pub const OPERATOR: &str = "operator";
/// Every identity the development PKI issues a certificate for.
pub const IDENTITIES: [&str; 6] = [
    "nanny-collector",
    "nanny-analyzer",
    "nanny-safety-gate",
    "nanny-remediator",
    COORDINATOR,
    OPERATOR,
];

/// How long a TLS handshake may take before the connection is dropped: a
/// peer that stalls must not hold a socket forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Section `tls`: the service's certificate, its key and the CA that signs
/// every peer (PEM files; `NANNY_TLS__CA`, `NANNY_TLS__CERT`, `NANNY_TLS__KEY`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// CA certificate(s) that sign every peer's certificate.
    pub ca: Option<PathBuf>,
    /// This service's certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// The private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// Plaintext gRPC with no caller authentication. Development only: the
    /// service logs a warning at every start.
    pub insecure_dev: bool,
    /// How often the server checks its files for a rotated certificate.
    pub reload_interval_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            ca: None,
            cert: None,
            key: None,
            insecure_dev: false,
            reload_interval_secs: 30,
        }
    }
}

impl TlsConfig {
    /// Development plaintext: what the unit tests of a service's config use.
    pub fn insecure() -> Self {
        Self {
            insecure_dev: true,
            ..Self::default()
        }
    }

    /// The three files of one identity in a directory written by
    /// `cargo xtask certs` (`ca.pem`, `NAME.pem`, `NAME-key.pem`).
    pub fn from_dir(dir: &Path, identity: &str) -> Self {
        Self {
            ca: Some(dir.join("ca.pem")),
            cert: Some(dir.join(format!("{identity}.pem"))),
            key: Some(dir.join(format!("{identity}-key.pem"))),
            ..Self::default()
        }
    }

    /// Checks that TLS is either fully configured and loadable, or
    /// explicitly switched off.
    ///
    /// # Errors
    /// [`Error::Config`] naming the missing, unreadable or malformed key.
    pub fn validate(&self) -> Result<(), Error> {
        if !(1..=3600).contains(&self.reload_interval_secs) {
            return Err(Error::config(
                "tls.reload_interval_secs",
                "must be between 1 and 3600",
            ));
        }
        if self.insecure_dev {
            return Ok(());
        }
        Material::load(self).map(|_| ())
    }

    fn paths(&self) -> Result<[(&'static str, &Path); 3], Error> {
        fn need<'a>(
            key: &'static str,
            path: &'a Option<PathBuf>,
        ) -> Result<(&'static str, &'a Path), Error> {
            path.as_deref().map(|p| (key, p)).ok_or_else(|| {
                Error::config(
                    key,
                    "not set: TLS is on by default; give tls.ca, tls.cert and tls.key \
                     (NANNY_TLS__CA, NANNY_TLS__CERT, NANNY_TLS__KEY), or set \
                     tls.insecure_dev=true for development",
                )
            })
        }
        Ok([
            need("tls.ca", &self.ca)?,
            need("tls.cert", &self.cert)?,
            need("tls.key", &self.key)?,
        ])
    }

    /// When each file last changed, to notice a rotation.
    fn stamps(&self) -> Vec<Option<SystemTime>> {
        [&self.ca, &self.cert, &self.key]
            .into_iter()
            .map(|p| {
                p.as_deref()
                    .and_then(|p| std::fs::metadata(p).ok())
                    .and_then(|m| m.modified().ok())
            })
            .collect()
    }

    /// The client side of mutual TLS towards a peer that must present the
    /// certificate of `peer_identity`, or `None` for plaintext development.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key whose file cannot be read.
    pub fn client(&self, peer_identity: &str) -> Result<Option<ClientTls>, Error> {
        if self.insecure_dev {
            return Ok(None);
        }
        let stamps = self.stamps();
        let material = Material::load(self)?;
        Ok(Some(ClientTls {
            settings: self.clone(),
            peer: peer_identity.to_owned(),
            stamps,
            config: tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&material.ca_pem))
                .identity(tonic::transport::Identity::from_pem(
                    &material.cert_pem,
                    &material.key_pem,
                ))
                .domain_name(peer_identity),
        }))
    }
}

/// One identity's certificate material, read and checked.
struct Material {
    roots: RootCertStore,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl Material {
    fn load(config: &TlsConfig) -> Result<Self, Error> {
        let [(ca_key, ca), (cert_key, cert), (key_key, key)] = config.paths()?;
        let read = |name: &'static str, path: &Path| {
            std::fs::read(path)
                .map_err(|e| Error::config(name, format!("cannot read {}: {e}", path.display())))
        };
        let (ca_pem, cert_pem, key_pem) = (
            read(ca_key, ca)?,
            read(cert_key, cert)?,
            read(key_key, key)?,
        );
        let certs = |name: &'static str, path: &Path, pem: &[u8]| {
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::config(name, format!("{}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(Error::config(
                    name,
                    format!("{}: no PEM certificate in the file", path.display()),
                ));
            }
            Ok(certs)
        };
        let mut roots = RootCertStore::empty();
        for root in certs(ca_key, ca, &ca_pem)? {
            roots
                .add(root)
                .map_err(|e| Error::config(ca_key, format!("{}: {e}", ca.display())))?;
        }
        let chain = certs(cert_key, cert, &cert_pem)?;
        let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            Error::config(
                key_key,
                format!("{}: no PEM private key in the file ({e})", key.display()),
            )
        })?;
        let signing = provider::sign::any_supported_type(&private).map_err(|e| {
            Error::config(
                key_key,
                format!("{}: unsupported key type: {e}", key.display()),
            )
        })?;
        let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
        certified.keys_match().map_err(|e| {
            Error::config(
                key_key,
                format!("{} does not belong to tls.cert: {e}", key.display()),
            )
        })?;
        Ok(Self {
            roots,
            chain,
            key: private,
            ca_pem,
            cert_pem,
            key_pem,
        })
    }

    fn server_config(self) -> Result<ServerConfig, Error> {
        let provider = Arc::new(provider::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots), provider.clone())
                .build()
                .map_err(|e| Error::config("tls.ca", e.to_string()))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config("tls", e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain, self.key)
            .map_err(|e| Error::config("tls.cert", e.to_string()))?;
        // gRPC is HTTP/2 only.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// The client side of mutual TLS towards one peer.
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: tonic::transport::ClientTlsConfig,
    /// Where it was read from, to notice a rotation.
    settings: TlsConfig,
    peer: String,
    stamps: Vec<Option<SystemTime>>,
}

impl ClientTls {
    /// The tonic configuration.
    pub fn config(&self) -> tonic::transport::ClientTlsConfig {
        self.config.clone()
    }

    /// The same side read anew, when its files changed since it was read
    /// and the new set loads (a half-written rotation is logged and skipped
    /// until it is complete).
    pub fn reloaded(&self) -> Option<Self> {
        if self.settings.stamps() == self.stamps {
            return None;
        }
        match self.settings.client(&self.peer) {
            Ok(Some(fresh)) => {
                tracing::info!(peer = %self.peer, "Reloaded the client certificate after a change on disk.");
                Some(fresh)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, peer = %self.peer, "The client certificate files changed but do not load; keeping the current ones.");
                None
            }
        }
    }
}

/// The server side: the newest valid configuration, swapped in place when
/// the files change.
#[derive(Clone)]
pub struct ServerTls {
    current: Arc<RwLock<Arc<ServerConfig>>>,
    settings: TlsConfig,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the server side, or `None` when `insecure_dev` is set (after
    /// logging the warning every such start owes).
    ///
    /// # Errors
    /// [`Error::Config`] naming the key whose file is missing or malformed.
    pub fn load(settings: &TlsConfig) -> Result<Option<Self>, Error> {
        if settings.insecure_dev {
            tracing::warn!(
                "TLS is off (tls.insecure_dev=true): any caller that reaches the gRPC port is \
                 served without authentication. Never run this in a cluster."
            );
            return Ok(None);
        }
        let config = Material::load(settings)?.server_config()?;
        Ok(Some(Self {
            current: Arc::new(RwLock::new(Arc::new(config))),
            settings: settings.clone(),
        }))
    }

    fn acceptor(&self) -> Option<TlsAcceptor> {
        // A poisoned lock means a reload panicked: refuse connections rather
        // than guess which configuration is in force.
        self.current
            .read()
            .ok()
            .map(|config| TlsAcceptor::from(Arc::clone(&config)))
    }

    /// Re-reads the files whenever they change, until `stop` resolves. A
    /// set that does not load (half-written, mismatched) is logged and the
    /// current one kept.
    pub async fn watch(self, stop: impl Future<Output = ()>) {
        let interval = Duration::from_secs(self.settings.reload_interval_secs);
        let mut seen = self.settings.stamps();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(interval) => {}
            }
            let now = self.settings.stamps();
            if now == seen {
                continue;
            }
            match Material::load(&self.settings).and_then(Material::server_config) {
                Ok(config) => {
                    if let Ok(mut current) = self.current.write() {
                        *current = Arc::new(config);
                        seen = now;
                        tracing::info!("Reloaded the TLS certificate after a change on disk.");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "The TLS files changed but do not load; keeping the current certificate.");
                }
            }
        }
    }

    /// Accepted connections after a completed handshake. Each handshake runs
    /// in its own task, so one slow peer never delays another's accept; a
    /// refused handshake (no certificate, another CA, expired) is logged and
    /// its connection dropped.
    pub fn incoming(
        self,
        listener: TcpListener,
    ) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    // The server stopped reading: stop accepting.
                    () = tx.closed() => return,
                };
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(%error, "Cannot accept a connection.");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // Small unary replies must not wait for the peer's delayed ACK.
                let _ = stream.set_nodelay(true);
                let Some(acceptor) = self.acceptor() else {
                    tracing::error!(
                        "The TLS configuration lock is poisoned; refusing connections."
                    );
                    continue;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send(Ok(tls)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::warn!(%error, %peer, "Refused a TLS connection.");
                        }
                        Err(_) => tracing::warn!(%peer, "A TLS handshake timed out."),
                    }
                });
            }
        });
        ReceiverStream::new(rx)
    }
}

/// The identities (DNS subject alternative names) in a verified client
/// certificate; empty when there is none or it does not parse.
pub fn identities(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        })
        .collect()
}

/// The caller's identities, from the TLS connection a request came in on.
pub fn caller<B>(request: &http::Request<B>) -> Vec<String> {
    request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .and_then(|certs| certs.first().map(|leaf| identities(leaf)))
        .unwrap_or_default()
}

/// Which identities may call a gRPC service (`nanny.v1.Remediator`); the
/// services not listed (health, reflection) serve every authenticated caller.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    /// The gRPC service name.
    pub service: &'static str,
    /// The identities it serves.
    pub callers: &'static [&'static str],
}

/// Refuses, with PERMISSION_DENIED, every call to a service of `rules` from
/// a caller whose certificate names none of its identities. Off (with the
/// TLS warning already logged) in insecure development mode.
#[derive(Debug, Clone)]
pub struct AuthorizeLayer {
    rules: Option<Arc<[Access]>>,
}

impl AuthorizeLayer {
    /// Enforces `rules` when `enabled`.
    pub fn new(rules: &[Access], enabled: bool) -> Self {
        Self {
            rules: enabled.then(|| rules.into()),
        }
    }
}

impl<S> tower::Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            rules: self.rules.clone(),
        }
    }
}

/// The service produced by [`AuthorizeLayer`].
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    rules: Option<Arc<[Access]>>,
}

impl<S> Authorize<S> {
    /// `Some(reason)` when the request must be refused.
    fn refusal<B>(&self, request: &http::Request<B>) -> Option<String> {
        let rules = self.rules.as_ref()?;
        let path = request.uri().path();
        let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
        let rule = rules.iter().find(|r| r.service == service)?;
        let caller = caller(request);
        if caller.iter().any(|id| rule.callers.contains(&id.as_str())) {
            return None;
        }
        tracing::warn!(rpc = %path, caller = ?caller, "Refused a call from an identity this service does not serve.");
        Some(format!(
            "{service} serves only {}; the caller's certificate names {}",
            rule.callers.join(", "),
            if caller.is_empty() {
                "no identity".to_owned()
            } else {
                caller.join(", ")
            }
        ))
    }
}

impl<S, B> tower::Service<http::Request<B>> for Authorize<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.refusal(&request) {
            Some(message) => {
                let response = tonic::Status::permission_denied(message).into_http();
                Box::pin(async move { Ok(response) })
            }
            None => Box::pin(self.inner.call(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_name_the_key_and_the_way_out() {
        let err = TlsConfig::default().validate().unwrap_err().to_string();
        assert!(err.contains("tls.ca: not set"), "{err}");
        assert!(err.contains("insecure_dev"), "{err}");
        let config = TlsConfig {
            ca: Some("/nonexistent/ca.pem".into()),
            cert: Some("/nonexistent/c.pem".into()),
            key: Some("/nonexistent/k.pem".into()),
            ..TlsConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("tls.ca: cannot read /nonexistent/ca.pem"),
            "{err}"
        );
        assert!(TlsConfig::insecure().validate().is_ok());
    }

    #[test]
    fn a_file_of_the_wrong_kind_is_named() {
        let dir = std::env::temp_dir().join(format!("nanny-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a pem\n").unwrap();
        let config = TlsConfig {
            ca: Some(junk.clone()),
            cert: Some(junk.clone()),
            key: Some(junk),
            ..TlsConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("tls.ca:") && err.contains("no PEM certificate"),
            "{err}"
        );
    }
}
