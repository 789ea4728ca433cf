//! Signed verdicts. The safety gate signs every APPROVED and DRY_RUN_ONLY
//! verdict with Ed25519 over [`digest`]; the remediator holds only public
//! keys and refuses any verdict that is unsigned, expired, signed by an
//! unknown key, or signed over other content ([`Verifier::verify`]).
//! Several public keys may be trusted at once, so the gate's key rotates
//! with an overlap.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use ed25519_dalek::{
    Signature, Signer as _, SigningKey, VerifyingKey,
    pkcs8::{DecodePrivateKey as _, DecodePublicKey as _},
};
use nanny_proto::v1::{Recommendation, Verdict};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// Separates this digest from any other use of the key.
const DOMAIN: &[u8] = b"nanny.v1.Verdict/1";

/// SHA-256 over what a signature covers: the recommendation (id, action with
/// its parameters, target with uid and resourceVersion), the policy, the
/// decision, the expiry, `allow_bare_pod_restart` and `human_approved`. Every field is
/// length-prefixed, so no two contents share a digest by concatenation.
pub fn digest(recommendation: &Recommendation, verdict: &Verdict) -> [u8; 32] {
    let mut hash = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(bytes);
    };
    field(DOMAIN);
    field(recommendation.id.as_bytes());
    field(
        &recommendation
            .action
            .as_ref()
            .map(prost::Message::encode_to_vec)
            .unwrap_or_default(),
    );
    let target = recommendation.target.clone().unwrap_or_default();
    for part in [
        &target.kind,
        &target.api_version,
        &target.namespace,
        &target.name,
        &target.uid,
        &target.resource_version,
    ] {
        field(part.as_bytes());
    }
    field(verdict.recommendation_id.as_bytes());
    field(verdict.policy_ref.as_bytes());
    field(&verdict.decision.to_be_bytes());
    let expires = verdict.expires_at.unwrap_or_default();
    field(&expires.seconds.to_be_bytes());
    field(&expires.nanos.to_be_bytes());
    field(&[u8::from(verdict.allow_bare_pod_restart)]);
    field(&[u8::from(verdict.human_approved)]);
    hash.finalize().into()
}

/// Hex of the first 8 bytes of the SHA-256 of a raw public key.
fn key_id(key: &VerifyingKey) -> String {
    Sha256::digest(key.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read(key: &str, path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::config(key, format!("cannot read {}: {e}", path.display())))
}

/// The gate's side: a private key and how long its verdicts hold.
pub struct Signer {
    key: SigningKey,
    key_id: String,
    ttl: Duration,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Loads a PKCS#8 PEM Ed25519 private key (config key `key`).
    ///
    /// # Errors
    /// [`Error::Config`] naming `key` when the file cannot be read or is not
    /// an Ed25519 private key.
    pub fn load(key: &str, path: &Path, ttl: Duration) -> Result<Self, Error> {
        let pem = read(key, path)?;
        let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
            Error::config(
                key,
                format!("{}: not a PKCS#8 Ed25519 private key: {e}", path.display()),
            )
        })?;
        Ok(Self {
            key_id: key_id(&signing.verifying_key()),
            key: signing,
            ttl,
        })
    }

    /// The id verdicts name this key by.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Sets `verdict`'s expiry, key id and signature, for `recommendation`.
    pub fn sign(&self, recommendation: &Recommendation, verdict: &mut Verdict, now: SystemTime) {
        verdict.expires_at = Some((now + self.ttl).into());
        verdict.key_id = self.key_id.clone();
        let signature = self.key.sign(&digest(recommendation, verdict));
        verdict.signature = signature.to_bytes().to_vec();
    }
}

/// Why a verdict is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerdictError {
    /// No signature at all.
    #[error("the verdict is not signed by the safety gate")]
    Unsigned,
    /// Signed by a key this service does not trust.
    #[error("the verdict is signed by key {0:?}, which is not a trusted safety-gate key")]
    UnknownKey(String),
    /// Past its expiry, or with none.
    #[error("the verdict expired at {0}")]
    Expired(String),
    /// The signature does not match the content.
    #[error("the verdict's signature does not match this recommendation and verdict")]
    BadSignature,
}

/// The remediator's side: the public keys it trusts.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Vec<(String, VerifyingKey)>,
}

impl Verifier {
    /// Loads each file of `paths` as an Ed25519 public key: a `PUBLIC KEY`
    /// PEM, or a `CERTIFICATE` PEM whose key is Ed25519 (what a Helm chart
    /// can generate). Config key `key`, for messages.
    ///
    /// # Errors
    /// [`Error::Config`] naming `key` when none is given or a file does not
    /// hold an Ed25519 public key.
    pub fn load(key: &str, paths: &[PathBuf]) -> Result<Self, Error> {
        if paths.is_empty() {
            return Err(Error::config(
                key,
                "no public key of the safety gate: every verdict would be refused",
            ));
        }
        let mut keys = Vec::new();
        for path in paths {
            let pem = read(key, path)?;
            let public = public_key(&pem).map_err(|e| {
                Error::config(
                    key,
                    format!(
                        "{}: not an Ed25519 public key or certificate: {e}",
                        path.display()
                    ),
                )
            })?;
            keys.push((key_id(&public), public));
        }
        Ok(Self { keys })
    }

    /// The ids of the trusted keys.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// Checks `verdict` was signed by a trusted key over exactly
    /// `recommendation` and itself, and has not expired at `now`.
    ///
    /// # Errors
    /// The [`VerdictError`] that refuses it.
    pub fn verify(
        &self,
        recommendation: &Recommendation,
        verdict: &Verdict,
        now: SystemTime,
    ) -> Result<(), VerdictError> {
        if verdict.signature.is_empty() {
            return Err(VerdictError::Unsigned);
        }
        let Some((_, public)) = self.keys.iter().find(|(id, _)| *id == verdict.key_id) else {
            return Err(VerdictError::UnknownKey(verdict.key_id.clone()));
        };
        let expires = verdict
            .expires_at
            .and_then(|t| SystemTime::try_from(t).ok())
            .ok_or_else(|| VerdictError::Expired("(no expiry)".to_owned()))?;
        let signature =
            Signature::from_slice(&verdict.signature).map_err(|_| VerdictError::BadSignature)?;
        public
            .verify_strict(&digest(recommendation, verdict), &signature)
            .map_err(|_| VerdictError::BadSignature)?;
        if now >= expires {
            return Err(VerdictError::Expired(
                verdict
                    .expires_at
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            ));
        }
        Ok(())
    }
}

fn public_key(pem: &str) -> Result<VerifyingKey, String> {
    if pem.contains("BEGIN CERTIFICATE") {
        let (_, der) =
            x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        let cert = der.parse_x509().map_err(|e| e.to_string())?;
        VerifyingKey::from_public_key_der(cert.public_key().raw).map_err(|e| e.to_string())
    } else {
        VerifyingKey::from_public_key_pem(pem).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use nanny_proto::v1::{Action, Decision, ObjectRef, RestartPod, action::Kind};

    use super::*;

    fn files() -> (PathBuf, PathBuf) {
        use ed25519_dalek::pkcs8::{
            EncodePrivateKey as _, EncodePublicKey as _, spki::der::pem::LineEnding,
        };
        let key = SigningKey::from_bytes(&[7; 32]);
        let dir = std::env::temp_dir().join(format!("nanny-verdict-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (private, public) = (dir.join("key.pem"), dir.join("pub.pem"));
        std::fs::write(
            &private,
            key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
        )
        .unwrap();
        std::fs::write(
            &public,
            key.verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        )
        .unwrap();
        (private, public)
    }

    fn recommendation() -> Recommendation {
        Recommendation {
            id: "rec-1".into(),
            action: Some(Action {
                kind: Some(Kind::RestartPod(RestartPod {})),
            }),
            target: Some(ObjectRef {
                kind: "Pod".into(),
                namespace: "shop".into(),
                name: "web-1".into(),
                uid: "uid-1".into(),
                resource_version: "7".into(),
                ..ObjectRef::default()
            }),
            ..Recommendation::default()
        }
    }

    #[test]
    fn a_signed_verdict_verifies_and_any_change_breaks_it() {
        let (private, public) = files();
        let signer = Signer::load("signing.key", &private, Duration::from_secs(900)).unwrap();
        let verifier = Verifier::load("verdicts.public_keys", &[public]).unwrap();
        assert_eq!(verifier.key_ids(), [signer.key_id()]);
        let now = SystemTime::now();
        let rec = recommendation();
        let mut verdict = Verdict {
            recommendation_id: "rec-1".into(),
            decision: Decision::Approved as i32,
            policy_ref: "shop/default".into(),
            ..Verdict::default()
        };
        signer.sign(&rec, &mut verdict, now);
        assert_eq!(verifier.verify(&rec, &verdict, now), Ok(()));

        let mut other_target = rec.clone();
        other_target.target.as_mut().unwrap().uid = "uid-2".into();
        assert_eq!(
            verifier.verify(&other_target, &verdict, now),
            Err(VerdictError::BadSignature)
        );
        let mut newer = rec.clone();
        newer.target.as_mut().unwrap().resource_version = "8".into();
        assert_eq!(
            verifier.verify(&newer, &verdict, now),
            Err(VerdictError::BadSignature)
        );
        let mut bare = verdict.clone();
        bare.allow_bare_pod_restart = true;
        assert_eq!(
            verifier.verify(&rec, &bare, now),
            Err(VerdictError::BadSignature)
        );
        let mut denied = verdict.clone();
        denied.decision = Decision::DryRunOnly as i32;
        assert_eq!(
            verifier.verify(&rec, &denied, now),
            Err(VerdictError::BadSignature)
        );
        let later = now + Duration::from_secs(901);
        assert!(matches!(
            verifier.verify(&rec, &verdict, later),
            Err(VerdictError::Expired(_))
        ));
        let mut unsigned = verdict.clone();
        unsigned.signature.clear();
        assert_eq!(
            verifier.verify(&rec, &unsigned, now),
            Err(VerdictError::Unsigned)
        );
        let mut foreign = verdict;
        foreign.key_id = "0000000000000000".into();
        assert!(matches!(
            verifier.verify(&rec, &foreign, now),
            Err(VerdictError::UnknownKey(_))
        ));
    }

    #[test]
    fn bad_key_files_name_the_key() {
        let (private, public) = files();
        let err = Signer::load("signing.key", &public, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("signing.key"), "{err}");
        let err = Verifier::load("verdicts.public_keys", &[private]).unwrap_err();
        assert!(err.to_string().contains("verdicts.public_keys"), "{err}");
        let err = Verifier::load("verdicts.public_keys", &[]).unwrap_err();
        assert!(err.to_string().contains("no public key"), "{err}");
    }
}
