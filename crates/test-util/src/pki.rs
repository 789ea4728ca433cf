//! A development PKI: one CA, and a certificate and key per Nanny identity
//! (`cargo xtask certs`, the demo and every test tier use it), generated
//! with `rcgen`.
//!
//! Each certificate's DNS names are its identity (which the servers
//! authorize by) plus `localhost`; its IP name is `127.0.0.1`. It serves as
//! both server and client certificate.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use anyhow::Context as _;
use nanny_common::tls::{ClientTls, IDENTITIES, OPERATOR, TlsConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// How a set of certificates is made: the tests' attacks need certificates
/// that are expired or that no Nanny CA signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Valid from yesterday for ten years.
    Current,
    /// Expired in 2021.
    Expired,
}

/// Writes `ca.pem` (and `ca-key.pem`) plus `NAME.pem` and `NAME-key.pem` for
/// every identity in `identities` into `dir`, with `extra_dns` added to each
/// certificate's DNS names (e.g. the Services' cluster names).
///
/// # Errors
/// When a certificate cannot be generated or a file written.
pub fn write(
    dir: &Path,
    identities: &[&str],
    extra_dns: &[String],
    validity: Validity,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params()?, ca_key)?;
    write_file(&dir.join("ca.pem"), &ca.pem())?;
    write_file(&dir.join("ca-key.pem"), &ca_key_pem)?;
    for identity in identities {
        leaf(&ca, dir, identity, extra_dns, validity)?;
    }
    write_signing_key(dir, "verdict-signing")?;
    write_mac_key(&dir.join(RECORDS_MAC_KEY))
}

/// The file name of the remediator's record MAC key in a PKI directory.
pub const RECORDS_MAC_KEY: &str = "records-mac.key";

/// Writes 32 random bytes, hex-encoded (64 characters), for the
/// remediator's `records.mac_key`.
///
/// # Errors
/// When no randomness is available or the file cannot be written.
pub fn write_mac_key(path: &Path) -> anyhow::Result<()> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no system randomness for the records' MAC key"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_file(path, &hex)
}

/// Writes an Ed25519 key pair for signing verdicts: `NAME-key.pem` (PKCS#8,
/// the gate's) and `NAME.pem` (the public key, the remediator's).
///
/// # Errors
/// When the key cannot be generated or a file written.
pub fn write_signing_key(dir: &Path, name: &str) -> anyhow::Result<()> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    write_file(&dir.join(format!("{name}-key.pem")), &key.serialize_pem())?;
    write_file(&dir.join(format!("{name}.pem")), &key.public_key_pem())
}

/// Issues one more certificate for `identity` from the CA that [`write`]
/// left in `ca_dir`, into `out` (`NAME.pem`, `NAME-key.pem`, and a copy of
/// `ca.pem`): how a test gets an expired certificate of a trusted CA.
///
/// # Errors
/// When the CA cannot be read or a file written.
pub fn issue(ca_dir: &Path, identity: &str, validity: Validity, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let key_pem = std::fs::read_to_string(ca_dir.join("ca-key.pem"))?;
    let ca = rcgen::Issuer::new(ca_params()?, KeyPair::from_pem(&key_pem)?);
    leaf(&ca, out, identity, &[], validity)?;
    std::fs::copy(ca_dir.join("ca.pem"), out.join("ca.pem"))?;
    Ok(())
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "Nanny development CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, Validity::Current);
    Ok(params)
}

fn leaf(
    ca: &rcgen::Issuer<'_, KeyPair>,
    dir: &Path,
    identity: &str,
    extra_dns: &[String],
    validity: Validity,
) -> anyhow::Result<()> {
    let mut names = vec![identity.to_owned(), "localhost".to_owned()];
    names.extend(extra_dns.iter().map(|d| d.replace("{identity}", identity)));
    let mut params = CertificateParams::new(names)?;
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params.distinguished_name.push(DnType::CommonName, identity);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, validity);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    write_file(&dir.join(format!("{identity}.pem")), &cert.pem())?;
    write_file(
        &dir.join(format!("{identity}-key.pem")),
        &key.serialize_pem(),
    )?;
    Ok(())
}

fn set_validity(params: &mut CertificateParams, validity: Validity) {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let now = rcgen::date_time_ymd(1970, 1, 1) + since_epoch;
    let day = std::time::Duration::from_secs(86_400);
    match validity {
        Validity::Current => {
            params.not_before = now - day;
            params.not_after = now + day * 3650;
        }
        Validity::Expired => {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
    }
}

fn write_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// This test process's PKI, generated once into a temporary directory.
///
/// # Panics
/// When the certificates cannot be written.
pub fn test_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("nanny-pki-{}", std::process::id()));
        write(&dir, &IDENTITIES, &[], Validity::Current).expect("writing the test PKI");
        dir
    })
}

/// The `tls` section for `identity` under the test PKI.
pub fn tls(identity: &str) -> TlsConfig {
    TlsConfig::from_dir(test_dir(), identity)
}

/// The `NANNY_TLS__*` variables for `identity` under the test PKI, plus the
/// verdict key each side needs: the gate's private key, the remediator's
/// public one.
pub fn env(identity: &str) -> Vec<(String, String)> {
    let config = tls(identity);
    let path = |p: Option<PathBuf>| p.unwrap_or_default().display().to_string();
    let mut env = vec![
        ("NANNY_TLS__CA".to_owned(), path(config.ca)),
        ("NANNY_TLS__CERT".to_owned(), path(config.cert)),
        ("NANNY_TLS__KEY".to_owned(), path(config.key)),
    ];
    match identity {
        "nanny-safety-gate" => env.push((
            "NANNY_SIGNING__KEY".to_owned(),
            signing_key().display().to_string(),
        )),
        "nanny-remediator" => env.extend([
            (
                "NANNY_VERDICTS__PUBLIC_KEYS".to_owned(),
                verifying_key().display().to_string(),
            ),
            (
                "NANNY_RECORDS__MAC_KEY".to_owned(),
                records_mac_key().display().to_string(),
            ),
        ]),
        _ => {}
    }
    env
}

/// The test PKI's verdict-signing key (the gate's).
pub fn signing_key() -> PathBuf {
    test_dir().join("verdict-signing-key.pem")
}

/// The test PKI's record MAC key (the remediator's).
pub fn records_mac_key() -> PathBuf {
    test_dir().join(RECORDS_MAC_KEY)
}

/// Its public half (the remediator's).
pub fn verifying_key() -> PathBuf {
    test_dir().join("verdict-signing.pem")
}

/// Signs `request`'s verdict as the test PKI's gate would, valid for 15
/// minutes: what a test of the remediator sends in the coordinator's place.
///
/// # Panics
/// When the request has no recommendation or verdict, or the key does not load.
pub fn sign(request: &mut nanny_proto::v1::ExecuteRequest) {
    let signer = nanny_common::verdict::Signer::load(
        "signing.key",
        &signing_key(),
        std::time::Duration::from_secs(900),
    )
    .expect("test signing key");
    let recommendation = request.recommendation.as_ref().expect("recommendation");
    let verdict = request.verdict.as_mut().expect("verdict");
    signer.sign(recommendation, verdict, std::time::SystemTime::now());
}

/// Gives `request` an APPROVED rollback verdict for its action id and target
/// (and `recommendation_id`), signed as the test PKI's gate would: what the
/// coordinator forwards from `SafetyGate/ReviewRollback`.
///
/// # Panics
/// When the request has no target, or the key does not load.
pub fn sign_rollback(request: &mut nanny_proto::v1::RollbackRequest, recommendation_id: &str) {
    let signer = nanny_common::verdict::Signer::load(
        "signing.key",
        &signing_key(),
        std::time::Duration::from_secs(900),
    )
    .expect("test signing key");
    let mut verdict = nanny_proto::v1::Verdict {
        recommendation_id: recommendation_id.to_owned(),
        decision: nanny_proto::v1::Decision::Approved as i32,
        ..nanny_proto::v1::Verdict::default()
    };
    signer.sign_rollback(
        &request.action_id,
        request.target.as_ref().expect("target"),
        &mut verdict,
        std::time::SystemTime::now(),
    );
    request.verdict = Some(verdict);
}

/// The `NANNYCTL_CA`, `NANNYCTL_CERT` and `NANNYCTL_KEY` variables that make
/// nannyctl call as `operator` under the test PKI.
pub fn nannyctl_env() -> Vec<(String, String)> {
    env(OPERATOR)
        .into_iter()
        .map(|(k, v)| (k.replace("NANNY_TLS__", "NANNYCTL_"), v))
        .collect()
}

/// A client's TLS as `identity`, talking to a server that must prove `peer`.
///
/// # Panics
/// When the test PKI does not load.
pub fn client(identity: &str, peer: &str) -> ClientTls {
    tls(identity)
        .client(peer)
        .expect("test PKI loads")
        .expect("TLS is on")
}

/// A channel to `addr` as `identity`, checking the server is `peer`.
///
/// # Panics
/// When the endpoint is invalid.
pub fn channel(
    addr: std::net::SocketAddr,
    identity: &str,
    peer: &str,
) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .expect("valid endpoint")
        .tls_config(client(identity, peer).config())
        .expect("TLS config")
        .connect_lazy()
}
