//! The consumer side of a `WatchSnapshots` stream: reassemble chunks, apply
//! deltas, and keep one materialised FULL snapshot.
//!
//! The analyzer, the coordinator, nannyctl and the tests all read snapshot
//! streams this way, so the rules for chunks and deltas live in one place.

use std::collections::BTreeMap;

use nanny_proto::v1::{self as pb, ClusterSnapshot, SnapshotKind};

/// A stream that cannot be applied; the consumer should resubscribe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// A chunk arrived out of order or for a different snapshot.
    #[error("chunk {index}/{count} of snapshot {id:?} arrived out of order")]
    Chunk {
        /// The snapshot id.
        id: String,
        /// Its chunk index.
        index: u32,
        /// Its chunk count.
        count: u32,
    },
    /// A delta does not apply to the generation held.
    #[error("delta against generation {base} cannot apply to generation {held}")]
    Base {
        /// The delta's base generation.
        base: u64,
        /// The generation held.
        held: u64,
    },
    /// A message whose kind is neither FULL nor DELTA.
    #[error("snapshot {id:?} has no kind")]
    Kind {
        /// The snapshot id.
        id: String,
    },
}

/// What stopped reading a stream of snapshots.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The server or the connection failed the stream.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(Box<tonic::Status>),
    /// A message could not apply; resubscribe.
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// The value of `issue`'s evidence described as `description`, if any.
pub fn evidence<'i>(issue: &'i pb::Issue, description: &str) -> Option<&'i str> {
    issue
        .evidence
        .iter()
        .find(|e| e.description == description)
        .map(|e| e.value.as_str())
}

/// The whole, non-negative number an issue's evidence `description`
/// holds; `None` when there is none, or it is negative or not a number.
pub fn evidence_number(issue: &pb::Issue, description: &str) -> Option<i64> {
    evidence(issue, description)?
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
}

/// The evidence an `OverProvisioned` issue names its reclaimable CPU by
/// (millicores, across its pods).
pub const RECLAIMABLE_CPU: &str = "reclaimable cpu millicores";
/// ... and its reclaimable memory (bytes, across its pods).
pub const RECLAIMABLE_MEMORY: &str = "reclaimable memory bytes";

/// Reclaimable CPU (millicores) and memory (bytes) by namespace, summed over
/// the `OverProvisioned` issues among `issues`; a value that does not parse
/// counts as nothing.
pub fn reclaimable<'i>(
    issues: impl IntoIterator<Item = &'i pb::Issue>,
) -> BTreeMap<String, (i64, i64)> {
    let mut totals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for issue in issues {
        if issue.kind != pb::IssueKind::OverProvisioned as i32 {
            continue;
        }
        let Some(target) = issue.target.as_ref() else {
            continue;
        };
        let value = |key| evidence_number(issue, key).unwrap_or(0);
        let entry = totals.entry(target.namespace.clone()).or_default();
        entry.0 = entry.0.saturating_add(value(RECLAIMABLE_CPU));
        entry.1 = entry.1.saturating_add(value(RECLAIMABLE_MEMORY));
    }
    totals
}

fn uid_of(reference: Option<&pb::ObjectRef>) -> String {
    reference.map(|r| r.uid.clone()).unwrap_or_default()
}

/// The materialised view of one stream.
#[derive(Debug, Default, Clone)]
pub struct SnapshotView {
    partial: Option<ClusterSnapshot>,
    header: ClusterSnapshot,
    pods: BTreeMap<String, pb::Pod>,
    nodes: BTreeMap<String, pb::Node>,
    workloads: BTreeMap<String, pb::Workload>,
    jobs: BTreeMap<String, pb::Job>,
    hpas: BTreeMap<String, pb::HorizontalPodAutoscaler>,
    pvcs: BTreeMap<String, pb::PersistentVolumeClaim>,
    events: BTreeMap<String, pb::Event>,
    pdbs: BTreeMap<String, pb::PodDisruptionBudget>,
    namespaces: BTreeMap<String, pb::Namespace>,
    services: BTreeMap<String, pb::Service>,
    webhooks: BTreeMap<String, pb::AdmissionWebhook>,
    network_policies: BTreeMap<String, pb::NetworkPolicy>,
    ingresses: BTreeMap<String, pb::Ingress>,
    volumes: BTreeMap<String, pb::PersistentVolume>,
    tls_certificates: BTreeMap<String, pb::TlsCertificate>,
    issues: BTreeMap<String, pb::Issue>,
    metrics: Vec<pb::MetricSample>,
}

/// Invokes `$then!($args…, pods, nodes, …)` with every object table, by
/// field name: each a repeated field of `ClusterSnapshot` and a map by uid
/// in the view. The one list that chunking, removal, applying and the
/// whole view share.
macro_rules! object_fields {
    ($then:ident!($($args:tt)*)) => {
        $then!(
            $($args)* pods, nodes, workloads, jobs, hpas, pvcs, events, pdbs, namespaces,
            services, webhooks, network_policies, ingresses, volumes, tls_certificates
        )
    };
}

macro_rules! remove_all {
    ($self:ident, $uid:ident, $($field:ident),*) => {$(
        $self.$field.remove(&$uid);
    )*};
}

macro_rules! upsert_all {
    ($self:ident, $message:ident, $($field:ident),*) => {$(
        for item in std::mem::take(&mut $message.$field) {
            $self.$field.insert(uid_of(item.r#ref.as_ref()), item);
        }
    )*};
}

impl SnapshotView {
    /// Reads `stream` until the next whole snapshot has applied, and
    /// returns it; `Ok(None)` when the stream ends first.
    ///
    /// # Errors
    /// [`ReadError`] when the stream fails or a message cannot apply.
    pub async fn next_whole(
        &mut self,
        stream: &mut tonic::Streaming<ClusterSnapshot>,
    ) -> Result<Option<ClusterSnapshot>, ReadError> {
        while let Some(message) = stream
            .message()
            .await
            .map_err(|s| ReadError::Status(Box::new(s)))?
        {
            if self.push(message)? {
                return Ok(Some(self.snapshot()));
            }
        }
        Ok(None)
    }

    /// Takes the next message of a stream. Returns `Ok(true)` when a whole
    /// snapshot (all its chunks) has been applied, `Ok(false)` while chunks
    /// are still missing.
    ///
    /// # Errors
    /// [`StreamError`] when the message cannot apply; the view is then
    /// unchanged and the consumer should resubscribe.
    pub fn push(&mut self, message: ClusterSnapshot) -> Result<bool, StreamError> {
        let Some(whole) = self.assemble(message)? else {
            return Ok(false);
        };
        self.apply(whole)?;
        Ok(true)
    }

    fn assemble(
        &mut self,
        message: ClusterSnapshot,
    ) -> Result<Option<ClusterSnapshot>, StreamError> {
        let out_of_order = |m: &ClusterSnapshot| StreamError::Chunk {
            id: m.id.clone(),
            index: m.chunk_index,
            count: m.chunk_count,
        };
        if message.chunk_count <= 1 {
            if self.partial.is_some() {
                self.partial = None;
                return Err(out_of_order(&message));
            }
            return Ok(Some(message));
        }
        let mut partial = match self.partial.take() {
            None if message.chunk_index == 0 => {
                self.partial = Some(message);
                return Ok(None);
            }
            None => return Err(out_of_order(&message)),
            Some(partial) => partial,
        };
        let expected = partial.chunk_index + 1;
        if message.id != partial.id || message.chunk_index != expected {
            return Err(out_of_order(&message));
        }
        let mut message = message;
        macro_rules! extend {
            ($($field:ident),*) => {$( partial.$field.append(&mut message.$field); )*};
        }
        object_fields!(extend!());
        extend!(metrics, issues, removed, resolved_issues);
        partial.chunk_index = message.chunk_index;
        if partial.chunk_index + 1 == partial.chunk_count {
            return Ok(Some(partial));
        }
        self.partial = Some(partial);
        Ok(None)
    }

    fn apply(&mut self, mut message: ClusterSnapshot) -> Result<(), StreamError> {
        match SnapshotKind::try_from(message.kind) {
            Ok(SnapshotKind::Full) => {
                *self = Self::default();
                self.metrics = std::mem::take(&mut message.metrics);
            }
            Ok(SnapshotKind::Delta) => {
                if message.base_generation != self.header.generation || self.header.generation == 0
                {
                    return Err(StreamError::Base {
                        base: message.base_generation,
                        held: self.header.generation,
                    });
                }
                if !message.metrics.is_empty() {
                    self.metrics = std::mem::take(&mut message.metrics);
                }
                for removed in std::mem::take(&mut message.removed) {
                    let uid = removed.uid;
                    object_fields!(remove_all!(self, uid,));
                }
                for fingerprint in std::mem::take(&mut message.resolved_issues) {
                    self.issues.remove(&fingerprint);
                }
            }
            _ => return Err(StreamError::Kind { id: message.id }),
        }
        object_fields!(upsert_all!(self, message,));
        for issue in std::mem::take(&mut message.issues) {
            self.issues.insert(issue.fingerprint.clone(), issue);
        }
        self.header = ClusterSnapshot {
            kind: SnapshotKind::Full as i32,
            base_generation: 0,
            chunk_index: 0,
            chunk_count: 1,
            ..message
        };
        Ok(())
    }

    /// The generation last applied; 0 before the first FULL snapshot.
    pub fn generation(&self) -> u64 {
        self.header.generation
    }

    /// Open issues by fingerprint.
    pub fn issues(&self) -> &BTreeMap<String, pb::Issue> {
        &self.issues
    }

    /// Pods by uid.
    pub fn pods(&self) -> &BTreeMap<String, pb::Pod> {
        &self.pods
    }

    /// Nodes by uid.
    pub fn nodes(&self) -> &BTreeMap<String, pb::Node> {
        &self.nodes
    }

    /// PVCs by uid.
    pub fn pvcs(&self) -> &BTreeMap<String, pb::PersistentVolumeClaim> {
        &self.pvcs
    }

    /// When Prometheus data went stale, if it is.
    pub fn metrics_stale_since(&self) -> Option<prost_types::Timestamp> {
        self.header.metrics_stale_since
    }

    /// The whole view as one FULL snapshot.
    pub fn snapshot(&self) -> ClusterSnapshot {
        macro_rules! whole {
            ($self:ident, $($field:ident),*) => {
                ClusterSnapshot {
                    $($field: $self.$field.values().cloned().collect(),)*
                    issues: $self.issues.values().cloned().collect(),
                    metrics: $self.metrics.clone(),
                    ..$self.header.clone()
                }
            };
        }
        object_fields!(whole!(self,))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str) -> pb::Pod {
        pb::Pod {
            r#ref: Some(pb::ObjectRef {
                uid: uid.to_owned(),
                ..pb::ObjectRef::default()
            }),
            ..pb::Pod::default()
        }
    }

    fn message(
        kind: SnapshotKind,
        generation: u64,
        base: u64,
        pods: Vec<pb::Pod>,
    ) -> ClusterSnapshot {
        ClusterSnapshot {
            id: format!("s{generation}"),
            kind: kind as i32,
            generation,
            base_generation: base,
            chunk_count: 1,
            pods,
            ..ClusterSnapshot::default()
        }
    }

    #[test]
    fn deltas_apply_on_top_of_the_full_snapshot() {
        let mut view = SnapshotView::default();
        assert_eq!(
            view.push(message(SnapshotKind::Full, 1, 0, vec![pod("a"), pod("b")])),
            Ok(true)
        );
        let mut delta = message(SnapshotKind::Delta, 2, 1, vec![pod("c")]);
        delta.removed.push(pb::ObjectRef {
            uid: "a".to_owned(),
            ..pb::ObjectRef::default()
        });
        assert_eq!(view.push(delta), Ok(true));
        assert_eq!(view.pods().keys().collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(view.generation(), 2);
        assert_eq!(view.snapshot().kind, SnapshotKind::Full as i32);
    }

    #[test]
    fn a_delta_against_another_generation_is_refused_and_changes_nothing() {
        let mut view = SnapshotView::default();
        assert!(
            view.push(message(SnapshotKind::Delta, 2, 1, vec![]))
                .is_err(),
            "no FULL yet"
        );
        view.push(message(SnapshotKind::Full, 5, 0, vec![pod("a")]))
            .ok();
        assert_eq!(
            view.push(message(SnapshotKind::Delta, 7, 6, vec![pod("x")])),
            Err(StreamError::Base { base: 6, held: 5 })
        );
        assert_eq!(view.pods().len(), 1);
    }

    #[test]
    fn chunks_are_reassembled_in_order_only() {
        let mut view = SnapshotView::default();
        let chunk = |index: u32, uid: &str| ClusterSnapshot {
            chunk_index: index,
            chunk_count: 2,
            ..message(SnapshotKind::Full, 1, 0, vec![pod(uid)])
        };
        assert_eq!(view.push(chunk(0, "a")), Ok(false));
        assert_eq!(view.push(chunk(1, "b")), Ok(true));
        assert_eq!(view.pods().len(), 2);
        assert!(SnapshotView::default().push(chunk(1, "b")).is_err());
    }
}
