//! Masks secrets in free text before it leaves a service: event messages in
//! snapshots (the collector), and diffs, errors and verification messages in
//! action results (the remediator).
//!
//! Projections already copy only named fields, so no Secret, env value or
//! argument is copied on purpose; this is the second line, for text that
//! carries whatever a user or the API server put into it. It errs towards
//! masking: a masked non-secret costs a little context, a leaked secret
//! costs a credential rotation.

use std::{borrow::Cow, sync::LazyLock};

use regex::Regex;

/// What replaces a secret.
pub const MASK: &str = "[REDACTED]";

/// `(pattern, replacement)`, applied in order. Each is compiled once.
static RULES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // PEM blocks (keys, certificates), to their end or the text's end.
        (
            r"-----BEGIN [A-Z0-9 ]+-----(?s:.*?)(?:-----END [A-Z0-9 ]+-----|\z)",
            "[REDACTED PEM]",
        ),
        // JSON Web Tokens: base64url header starting `{"`, payload, signature.
        (
            r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
            "[REDACTED JWT]",
        ),
        // AWS access key ids.
        (
            r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b",
            "[REDACTED AWS KEY]",
        ),
        // Well-known API token shapes: Stripe, GitHub, Slack, Google.
        (
            r"\b(?:[sr]k_(?:live|test)_[0-9A-Za-z]{8,}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{30,})",
            MASK,
        ),
        // Authorization header values.
        (
            r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}",
            "$1 [REDACTED]",
        ),
        // Credentials in URLs: scheme://user:password@host.
        (
            r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s:@]*:[^/\s@]+@",
            "${1}[REDACTED]@",
        ),
        // key=value, key: value and "key": "value" where the key names a
        // secret (STRIPE_KEY, db_password, client-secret, auth_token...).
        (
            r#"(?i)([A-Za-z0-9_.-]*(?:passw(?:or)?d|pwd|secret|token|credential|api[_-]?key|access[_-]?key|private[_-]?key|[_-]key|auth)[A-Za-z0-9_.-]*"?\s*[=:]\s*"?)[^\s"',;&]+"#,
            "${1}[REDACTED]",
        ),
    ]
    .into_iter()
    .map(|(pattern, replacement)| {
        // The patterns are constants, tested below: a bad one is a
        // programming error found by the first test run.
        #[allow(clippy::expect_used)]
        let regex = Regex::new(pattern).expect("redaction pattern compiles");
        (regex, replacement)
    })
    .collect()
});

/// `text` with every secret-looking part masked; borrowed when nothing was.
pub fn text(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    for (regex, replacement) in RULES.iter() {
        if let Cow::Owned(replaced) = regex.replace_all(&out, *replacement) {
            out = Cow::Owned(replaced);
        }
    }
    out
}

/// Planted secrets, one per shape [`text`] masks: the canaries every test
/// of "nothing secret leaves" plants and then greps for. Each value is
/// unique, so finding it anywhere is a leak.
pub mod canaries {
    /// A JWT.
    pub const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJlY2FuYXJ5";
    /// An AWS access key id.
    pub const AWS_KEY: &str = "AKIACANARY7QWERTY123";
    /// The body of a PEM private key.
    pub const PEM_BODY: &str = "MIIEcanaryPEMbodyQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo";
    /// A password in a connection string.
    pub const DB_PASSWORD: &str = "canary-db-pass-41";
    /// A bearer token.
    pub const BEARER: &str = "canarybearertoken0123456789";
    /// A Stripe key in an env value.
    pub const STRIPE: &str = "sk_live_canary0123456789abcd";
    /// A `password=` value.
    pub const PASSWORD: &str = "canary-password-77";

    /// Every canary.
    pub const ALL: [&str; 7] = [
        JWT,
        AWS_KEY,
        PEM_BODY,
        DB_PASSWORD,
        BEARER,
        STRIPE,
        PASSWORD,
    ];

    /// The canaries `text` carries: what leaked.
    pub fn found_in(text: &str) -> Vec<&'static str> {
        ALL.into_iter().filter(|c| text.contains(c)).collect()
    }

    /// Text carrying every canary as it appears in the wild: args, env,
    /// headers, a key file.
    pub fn planted() -> String {
        format!(
            "--db-url=postgres://app:{DB_PASSWORD}@db:5432/shop STRIPE_KEY={STRIPE} \
             Authorization: Bearer {BEARER} token {JWT} aws {AWS_KEY} password={PASSWORD}\n\
             -----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_canary_is_masked_in_every_shape() {
        let shapes = [
            canaries::planted(),
            format!("env:\n- name: STRIPE_KEY\n  value: {}", canaries::STRIPE),
            format!(r#"{{"password": "{}"}}"#, canaries::PASSWORD),
            format!("mysql://root:{}@mysql", canaries::DB_PASSWORD),
            format!("client_secret: {}", canaries::BEARER),
            format!("Back-off pulling image: auth {}", canaries::JWT),
            format!("-----BEGIN PRIVATE KEY-----\n{}", canaries::PEM_BODY),
        ];
        for shape in &shapes {
            let masked = text(shape);
            for canary in canaries::ALL {
                assert!(!masked.contains(canary), "{canary} left in {masked:?}");
            }
        }
        let all = text(&shapes[0]).into_owned();
        assert!(all.contains("postgres://[REDACTED]@db:5432/shop"), "{all}");
        assert!(all.contains("STRIPE_KEY=[REDACTED]"), "{all}");
        assert!(all.contains("[REDACTED PEM]"), "{all}");
    }

    #[test]
    fn ordinary_text_is_kept_as_it_is() {
        for plain in [
            "Back-off restarting failed container web in pod web-1_shop(uid)",
            "0/3 nodes are available: 3 Insufficient memory.",
            "- key: node.kubernetes.io/not-ready\n  effect: NoSchedule",
            "spec:\n  maxReplicas: 10\n  minReplicas: 2",
            "http://prometheus:9090/api/v1/query",
            "kubectl.kubernetes.io/restartedAt: 2026-12-02T10:00:00Z",
        ] {
            assert!(
                matches!(text(plain), Cow::Borrowed(_)),
                "{plain:?} was changed: {}",
                text(plain)
            );
        }
    }
}
