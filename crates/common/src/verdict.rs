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
use nanny_proto::v1::{ObjectRef, Recommendation, Verdict};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// Separates this digest from any other use of the key.
const DOMAIN: &[u8] = b"nanny.v1.Verdict/1";
/// The same for rollback verdicts.
const ROLLBACK_DOMAIN: &[u8] = b"nanny.v1.RollbackVerdict/1";
/// The same for audit records ([`crate::audit`]).
const AUDIT_DOMAIN: &[u8] = b"nanny.v1.AuditRecord/1";

fn audit_digest(record_hash: &str) -> [u8; 32] {
    let mut fields = Fields::new(AUDIT_DOMAIN);
    fields.add(record_hash.as_bytes());
    fields.finish()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Length-prefixes every field, so no two contents share a digest by
/// concatenation.
struct Fields(Sha256);

impl Fields {
    fn new(domain: &[u8]) -> Self {
        let mut fields = Self(Sha256::new());
        fields.add(domain);
        fields
    }

    fn add(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
    }

    fn target(&mut self, target: &ObjectRef) {
        for part in [
            &target.kind,
            &target.api_version,
            &target.namespace,
            &target.name,
            &target.uid,
            &target.resource_version,
        ] {
            self.add(part.as_bytes());
        }
    }

    /// The verdict's own signed fields.
    fn verdict(&mut self, verdict: &Verdict) {
        self.add(verdict.recommendation_id.as_bytes());
        self.add(verdict.policy_ref.as_bytes());
        self.add(&verdict.decision.to_be_bytes());
        let expires = verdict.expires_at.unwrap_or_default();
        self.add(&expires.seconds.to_be_bytes());
        self.add(&expires.nanos.to_be_bytes());
        self.add(&[u8::from(verdict.allow_bare_pod_restart)]);
        self.add(&[u8::from(verdict.human_approved)]);
    }

    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// SHA-256 over what a signature covers: the recommendation (id, action with
/// its parameters, target with uid and resourceVersion), the policy, the
/// decision, the expiry, `allow_bare_pod_restart` and `human_approved`.
pub fn digest(recommendation: &Recommendation, verdict: &Verdict) -> [u8; 32] {
    let mut fields = Fields::new(DOMAIN);
    fields.add(recommendation.id.as_bytes());
    fields.add(
        &recommendation
            .action
            .as_ref()
            .map(prost::Message::encode_to_vec)
            .unwrap_or_default(),
    );
    fields.target(&recommendation.target.clone().unwrap_or_default());
    fields.verdict(verdict);
    fields.finish()
}

/// SHA-256 over what a rollback verdict covers: the action id, the target
/// (kind, namespace, name, uid), and the verdict's own fields. Its own
/// domain, so an Execute verdict never passes as a rollback one, or back.
pub fn rollback_digest(action_id: &str, target: &ObjectRef, verdict: &Verdict) -> [u8; 32] {
    let mut fields = Fields::new(ROLLBACK_DOMAIN);
    fields.add(action_id.as_bytes());
    fields.target(&ObjectRef {
        kind: target.kind.clone(),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        uid: target.uid.clone(),
        ..ObjectRef::default()
    });
    fields.verdict(verdict);
    fields.finish()
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

    /// A signer from a raw 32-byte secret (tests and tools; services load
    /// a PEM file with [`Signer::load`]).
    pub fn from_bytes(secret: &[u8; 32], ttl: Duration) -> Self {
        let key = SigningKey::from_bytes(secret);
        Self {
            key_id: key_id(&key.verifying_key()),
            key,
            ttl,
        }
    }

    /// The id verdicts name this key by.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// A verifier trusting exactly this key.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            keys: vec![(self.key_id.clone(), self.key.verifying_key())],
        }
    }

    /// Sets `verdict`'s expiry, key id and signature, for `recommendation`.
    pub fn sign(&self, recommendation: &Recommendation, verdict: &mut Verdict, now: SystemTime) {
        self.sign_with(verdict, now, |v| digest(recommendation, v));
    }

    /// Sets `verdict`'s expiry, key id and signature, for rolling back
    /// action `action_id` on `target`.
    pub fn sign_rollback(
        &self,
        action_id: &str,
        target: &ObjectRef,
        verdict: &mut Verdict,
        now: SystemTime,
    ) {
        self.sign_with(verdict, now, |v| rollback_digest(action_id, target, v));
    }

    /// Signs an audit record's hash: `(key id, signature hex)`. A log signed
    /// this way cannot be rewritten, even re-hashed, without this key.
    pub fn sign_audit(&self, record_hash: &str) -> (String, String) {
        let signature = self.key.sign(&audit_digest(record_hash));
        (self.key_id.clone(), hex(&signature.to_bytes()))
    }

    fn sign_with(
        &self,
        verdict: &mut Verdict,
        now: SystemTime,
        digest: impl FnOnce(&Verdict) -> [u8; 32],
    ) {
        verdict.expires_at = Some((now + self.ttl).into());
        verdict.key_id = self.key_id.clone();
        let signature = self.key.sign(&digest(verdict));
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
        self.verify_digest(verdict, &digest(recommendation, verdict), now)
    }

    /// Checks `verdict` was signed by a trusted key for rolling back exactly
    /// action `action_id` on `target`, and has not expired at `now`.
    ///
    /// # Errors
    /// The [`VerdictError`] that refuses it.
    pub fn verify_rollback(
        &self,
        action_id: &str,
        target: &ObjectRef,
        verdict: &Verdict,
        now: SystemTime,
    ) -> Result<(), VerdictError> {
        self.verify_digest(verdict, &rollback_digest(action_id, target, verdict), now)
    }

    /// Checks an audit record's signature (hex) over its hash, by the key
    /// `key_id` names.
    ///
    /// # Errors
    /// [`VerdictError::Unsigned`], [`VerdictError::UnknownKey`] or
    /// [`VerdictError::BadSignature`].
    pub fn verify_audit(
        &self,
        record_hash: &str,
        key_id: &str,
        signature: &str,
    ) -> Result<(), VerdictError> {
        if signature.is_empty() {
            return Err(VerdictError::Unsigned);
        }
        let Some((_, public)) = self.keys.iter().find(|(id, _)| id == key_id) else {
            return Err(VerdictError::UnknownKey(key_id.to_owned()));
        };
        let signature = unhex(signature)
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or(VerdictError::BadSignature)?;
        public
            .verify_strict(&audit_digest(record_hash), &signature)
            .map_err(|_| VerdictError::BadSignature)
    }

    fn verify_digest(
        &self,
        verdict: &Verdict,
        digest: &[u8; 32],
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
            .verify_strict(digest, &signature)
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
        // One directory per call: tests run in parallel threads, and one
        // rewriting a shared key.pem while another reads it read a torn
        // file once (a NUL byte in the PEM preamble).
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = SigningKey::from_bytes(&[7; 32]);
        let dir = std::env::temp_dir().join(format!("nanny-verdict-{}-{call}", std::process::id()));
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
    fn a_rollback_verdict_covers_its_action_and_target_and_is_no_execute_verdict() {
        let (private, public) = files();
        let signer = Signer::load("signing.key", &private, Duration::from_secs(900)).unwrap();
        let verifier = Verifier::load("verdicts.public_keys", &[public]).unwrap();
        let now = SystemTime::now();
        let target = recommendation().target.unwrap();
        let mut verdict = Verdict {
            recommendation_id: "rec-1".into(),
            decision: Decision::Approved as i32,
            policy_ref: "shop/default".into(),
            ..Verdict::default()
        };
        signer.sign_rollback("action-1", &target, &mut verdict, now);
        assert_eq!(
            verifier.verify_rollback("action-1", &target, &verdict, now),
            Ok(())
        );
        // The resourceVersion moves on after the action; it is not covered.
        let mut later = target.clone();
        later.resource_version = "99".into();
        assert_eq!(
            verifier.verify_rollback("action-1", &later, &verdict, now),
            Ok(())
        );
        assert_eq!(
            verifier.verify_rollback("action-2", &target, &verdict, now),
            Err(VerdictError::BadSignature)
        );
        let mut other = target.clone();
        other.uid = "uid-2".into();
        assert_eq!(
            verifier.verify_rollback("action-1", &other, &verdict, now),
            Err(VerdictError::BadSignature)
        );
        // Neither domain accepts the other's signature.
        assert_eq!(
            verifier.verify(&recommendation(), &verdict, now),
            Err(VerdictError::BadSignature)
        );
        let mut execute = verdict.clone();
        signer.sign(&recommendation(), &mut execute, now);
        assert_eq!(
            verifier.verify_rollback("action-1", &target, &execute, now),
            Err(VerdictError::BadSignature)
        );
    }

    #[test]
    fn audit_signatures_cover_the_record_hash() {
        let (private, public) = files();
        let signer = Signer::load("signing.key", &private, Duration::from_secs(900)).unwrap();
        let verifier = Verifier::load("verdicts.public_keys", &[public]).unwrap();
        let (key_id, signature) = signer.sign_audit("abc123");
        assert_eq!(verifier.verify_audit("abc123", &key_id, &signature), Ok(()));
        assert_eq!(
            verifier.verify_audit("abc124", &key_id, &signature),
            Err(VerdictError::BadSignature)
        );
        assert_eq!(
            verifier.verify_audit("abc123", &key_id, "zz"),
            Err(VerdictError::BadSignature)
        );
        assert_eq!(
            verifier.verify_audit("abc123", &key_id, ""),
            Err(VerdictError::Unsigned)
        );
        assert!(matches!(
            verifier.verify_audit("abc123", "other", &signature),
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
