//! Proto3 JSON (the canonical mapping grpcurl also speaks) for the `nanny.v1`
//! messages, driven by the descriptor set this crate embeds for reflection
//! (feature `json`: nannyctl's `snapshot -o json` and `analyze -f`, the
//! eval's case files).
//!
//! The generated prost types derive no serde; going through
//! `prost_reflect::DynamicMessage` gets the standard mapping (camelCase
//! fields, enum names, RFC 3339 timestamps) without generated code.

use std::sync::OnceLock;

use anyhow::Context as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

/// Full name of `ClusterSnapshot`.
pub const CLUSTER_SNAPSHOT: &str = "nanny.v1.ClusterSnapshot";
/// Full name of `AnalyzeSnapshotResponse`.
pub const ANALYZE_RESPONSE: &str = "nanny.v1.AnalyzeSnapshotResponse";

fn descriptor(full_name: &str) -> anyhow::Result<MessageDescriptor> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    let pool = POOL
        .get_or_init(|| {
            DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| anyhow::anyhow!("the embedded descriptor set is unreadable: {e}"))?;
    pool.get_message_by_name(full_name)
        .with_context(|| format!("{full_name} is not in the embedded descriptor set"))
}

/// `message` as pretty proto3 JSON.
///
/// # Errors
/// When `full_name` is not `message`'s type.
pub fn to_json<T: prost::Message>(message: &T, full_name: &str) -> anyhow::Result<String> {
    let dynamic =
        DynamicMessage::decode(descriptor(full_name)?, message.encode_to_vec().as_slice())
            .with_context(|| format!("re-decoding as {full_name}"))?;
    Ok(serde_json::to_string_pretty(&dynamic)?)
}

/// Parses proto3 JSON of message `full_name`. Errors name the line, column
/// and what was wrong there (an unknown field, a wrong type).
///
/// # Errors
/// When `text` is not valid JSON for the message.
pub fn from_json<T: prost::Message + Default>(text: &str, full_name: &str) -> anyhow::Result<T> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let dynamic = DynamicMessage::deserialize(descriptor(full_name)?, &mut deserializer)?;
    deserializer.end()?;
    Ok(dynamic.transcode_to()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{ClusterInfo, ClusterSnapshot, Issue, IssueKind, ObjectRef, SnapshotKind};

    fn snapshot() -> ClusterSnapshot {
        ClusterSnapshot {
            id: "snap-1".into(),
            generation: 7,
            kind: SnapshotKind::Full as i32,
            cluster: Some(ClusterInfo {
                version: "v1.34.2".into(),
                node_count: 3,
                name: "dev".into(),
            }),
            taken_at: Some(prost_types::Timestamp {
                seconds: 1_795_000_000,
                nanos: 0,
            }),
            issues: vec![Issue {
                fingerprint: "fp".into(),
                kind: IssueKind::CrashLoopBackOff as i32,
                target: Some(ObjectRef {
                    kind: "Pod".into(),
                    namespace: "shop".into(),
                    name: "web-1".into(),
                    ..ObjectRef::default()
                }),
                ..Issue::default()
            }],
            ..ClusterSnapshot::default()
        }
    }

    #[test]
    fn round_trips_with_the_canonical_mapping() {
        let text = to_json(&snapshot(), CLUSTER_SNAPSHOT).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["kind"], "SNAPSHOT_KIND_FULL");
        assert_eq!(
            value["generation"], "7",
            "uint64 is a string in proto3 JSON"
        );
        assert_eq!(value["takenAt"], "2026-11-18T11:06:40Z");
        assert_eq!(value["issues"][0]["kind"], "ISSUE_KIND_CRASH_LOOP_BACK_OFF");
        assert_eq!(value["cluster"]["nodeCount"], 3);
        let back: ClusterSnapshot = from_json(&text, CLUSTER_SNAPSHOT).unwrap();
        assert_eq!(back, snapshot());
    }

    #[test]
    fn errors_name_the_position_and_the_field() {
        let error = from_json::<ClusterSnapshot>(
            "{\n  \"id\": \"a\",\n  \"podz\": []\n}",
            CLUSTER_SNAPSHOT,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("podz") && error.contains("line 3"),
            "{error}"
        );
        let error = from_json::<ClusterSnapshot>("{\"generation\": \"many\"}", CLUSTER_SNAPSHOT)
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 1 column"), "{error}");
        let error = from_json::<ClusterSnapshot>("{} {}", CLUSTER_SNAPSHOT)
            .unwrap_err()
            .to_string();
        assert!(error.contains("trailing"), "{error}");
    }
}
