//! `--ca`, `--cert`, `--key`: the operator's client certificate for the
//! commands that call a Nanny service (`snapshot`, `analyze`, `health`).

use std::path::PathBuf;

use anyhow::Context as _;
use nanny_common::tls::{ClientTls, TlsConfig};

/// Mutual-TLS flags. Each defaults to its file in `~/.config/nanny/`
/// (`ca.pem`, `operator.pem`, `operator-key.pem`), which
/// `cargo xtask certs --out ~/.config/nanny` writes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// CA certificate that signs the services' certificates.
    #[arg(long, global = true, env = "NANNYCTL_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Client certificate (the `operator` identity).
    #[arg(long, global = true, env = "NANNYCTL_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Private key of `--cert`.
    #[arg(long, global = true, env = "NANNYCTL_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Plaintext, for services started with `tls.insecure_dev=true`.
    #[arg(long, global = true, conflicts_with_all = ["ca", "cert", "key"])]
    pub insecure_dev: bool,
}

impl TlsArgs {
    /// The client side towards a service that must prove `peer` (e.g.
    /// `nanny-collector`), or `None` with `--insecure-dev`.
    ///
    /// # Errors
    /// When a file is missing or does not load, naming the flag.
    pub fn client(&self, peer: &str) -> anyhow::Result<Option<ClientTls>> {
        if self.insecure_dev {
            return Ok(None);
        }
        let default_dir = defaults_dir();
        let pick = |flag: &Option<PathBuf>, file: &str| {
            flag.clone()
                .or_else(|| default_dir.as_ref().map(|dir| dir.join(file)))
        };
        let config = TlsConfig {
            ca: pick(&self.ca, "ca.pem"),
            cert: pick(&self.cert, "operator.pem"),
            key: pick(&self.key, "operator-key.pem"),
            ..TlsConfig::default()
        };
        config
            .client(peer)
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}",
                    e.to_string().replace("invalid configuration: tls.", "--")
                )
            })
            .context(
                "no usable client certificate: pass --ca, --cert and --key, or write them to \
                 ~/.config/nanny with `cargo xtask certs --out ~/.config/nanny`",
            )
    }
}

/// `~/.config/nanny`: where `cargo xtask certs --out ~/.config/nanny` puts
/// the operator's certificate and the gate's public verdict key.
pub fn defaults_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config/nanny"))
}
