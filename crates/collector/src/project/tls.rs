//! TLS Secrets: the leaf certificate's validity and names, read from
//! `tls.crt`. Nothing else of the Secret is kept (its key is never looked
//! at): the projection is all that outlives the watch event.

use k8s_openapi::api::core::v1::Secret;
use nanny_proto::v1 as pb;
use x509_parser::{extensions::GeneralName, pem::parse_x509_pem};

use super::{object_ref, pb_time::Timestamp};

/// Names carried per certificate.
const MAX_NAMES: usize = 16;
/// Characters kept of a subject or issuer.
const MAX_NAME_CHARS: usize = 256;

/// The certificate of a TLS Secret; `error` says why there is none.
pub fn tls_certificate(secret: &Secret) -> pb::TlsCertificate {
    let r#ref = Some(object_ref("Secret", "v1", &secret.metadata));
    let pem = secret
        .data
        .as_ref()
        .and_then(|d| d.get("tls.crt"))
        .map(|b| b.0.as_slice());
    match pem.map(certificate) {
        Some(Ok(cert)) => pb::TlsCertificate { r#ref, ..cert },
        Some(Err(error)) => pb::TlsCertificate {
            r#ref,
            error,
            ..pb::TlsCertificate::default()
        },
        None => pb::TlsCertificate {
            r#ref,
            error: "it has no tls.crt".to_owned(),
            ..pb::TlsCertificate::default()
        },
    }
}

/// The first certificate of a PEM chain (the leaf, by convention).
fn certificate(pem: &[u8]) -> Result<pb::TlsCertificate, String> {
    let (_, pem) = parse_x509_pem(pem).map_err(|e| format!("tls.crt is not PEM: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("tls.crt holds no X.509 certificate: {e}"))?;
    let validity = cert.validity();
    let time = |t: &x509_parser::time::ASN1Time| Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    };
    // Whoever writes the Secret writes these names: no control characters,
    // cut; the reports quote them as the certificate's words.
    let common_name = |name: &x509_parser::x509::X509Name<'_>| {
        name.iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_NAME_CHARS)
            .collect::<String>()
    };
    let dns_names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    // Host names only: anything else is not a name a client
                    // connects to.
                    GeneralName::DNSName(dns)
                        if dns.len() <= 253
                            && dns.chars().all(|c| {
                                c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*')
                            }) =>
                    {
                        Some((*dns).to_owned())
                    }
                    _ => None,
                })
                .take(MAX_NAMES)
                .collect()
        })
        .unwrap_or_default();
    Ok(pb::TlsCertificate {
        r#ref: None,
        not_before: Some(time(&validity.not_before)),
        not_after: Some(time(&validity.not_after)),
        subject: common_name(cert.subject()),
        dns_names,
        issuer: common_name(cert.issuer()),
        error: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn secret(crt: &[u8]) -> Secret {
        Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("front-tls".into()),
                namespace: Some("shop".into()),
                uid: Some("s1".into()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(BTreeMap::from([
                ("tls.crt".to_owned(), ByteString(crt.to_vec())),
                (
                    "tls.key".to_owned(),
                    ByteString(b"-----BEGIN PRIVATE KEY-----".to_vec()),
                ),
            ])),
            ..Secret::default()
        }
    }

    #[test]
    fn a_certificate_is_read_for_its_validity_and_names_only() {
        let mut params = rcgen::CertificateParams::new(vec![
            "shop.example".to_owned(),
            "www.shop.example".to_owned(),
        ])
        .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "shop.example");
        params.not_before = rcgen::date_time_ymd(2026, 1, 1);
        params.not_after = rcgen::date_time_ymd(2026, 12, 10);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let projected = tls_certificate(&secret(cert.pem().as_bytes()));
        assert_eq!(projected.error, "");
        assert_eq!(
            projected.r#ref.as_ref().map(|r| r.name.as_str()),
            Some("front-tls")
        );
        assert_eq!(projected.subject, "shop.example");
        assert_eq!(projected.issuer, "shop.example");
        assert_eq!(projected.dns_names, ["shop.example", "www.shop.example"]);
        // 2026-12-10T00:00:00Z.
        assert_eq!(projected.not_after.map(|t| t.seconds), Some(1_796_860_800));
        assert_eq!(projected.not_before.map(|t| t.seconds), Some(1_767_225_600));
    }

    #[test]
    fn a_secret_without_a_readable_certificate_says_why() {
        assert!(
            tls_certificate(&secret(b"not a certificate"))
                .error
                .starts_with("tls.crt is not PEM"),
        );
        let mut empty = secret(b"");
        empty.data = None;
        assert_eq!(tls_certificate(&empty).error, "it has no tls.crt");
        assert!(tls_certificate(&empty).not_after.is_none());
    }
}
