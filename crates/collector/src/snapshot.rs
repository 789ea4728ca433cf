//! Worlds, scopes, deltas and chunks.
//!
//! The publisher turns the store into an immutable [`World`] after each
//! debounced batch of changes. Every subscriber narrows a world to its
//! scope and sends either all of it (FULL) or what changed since its last
//! message (DELTA), split into chunks no larger than the message limit.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use nanny_proto::v1 as pb;
use prost::Message as _;
use prost_types::Timestamp;

use nanny_common::selector::Selector;

use crate::{
    prom::MetricsRound,
    store::{Entry, Object, Table, Tables, Uid},
};

/// Queries whose series snapshots carry as `metrics` (the usage queries are
/// folded into pods and claims instead).
const CARRIED_BUILTINS: &[&str] = &[
    "restart_rate_15m",
    "node_memory_available_ratio",
    "cpu_throttling_ratio",
    "container_memory_growth_per_hour",
];

/// One detected issue and a hash of its content (without timestamps).
#[derive(Debug, Clone)]
pub struct IssueEntry {
    /// The issue with first/last seen stamped.
    pub issue: Arc<pb::Issue>,
    /// Changes when anything but the timestamps changes.
    pub content: u64,
}

/// The cluster as of one publish.
#[derive(Debug, Clone, Default)]
pub struct World {
    /// Increases by one with every publish.
    pub generation: u64,
    /// The store revision it was built from.
    pub rev: u64,
    /// When it was built.
    pub taken_at: Timestamp,
    /// Version, node count and name.
    pub cluster: pb::ClusterInfo,
    /// The objects.
    pub tables: Tables,
    /// Open issues.
    pub issues: Vec<IssueEntry>,
    /// The latest Prometheus round.
    pub metrics: Arc<MetricsRound>,
    /// Named queries besides the carried built-ins.
    pub extra_queries: Arc<Vec<String>>,
}

/// A subscriber's scope, parsed.
#[derive(Debug, Clone, Default)]
pub struct ScopeFilter {
    namespaces: HashSet<String>,
    selector: Selector,
    scope: pb::Scope,
}

impl ScopeFilter {
    /// Parses a scope from a request.
    ///
    /// # Errors
    /// When the label selector does not parse.
    pub fn new(scope: Option<pb::Scope>) -> Result<Self, String> {
        let scope = scope.unwrap_or_default();
        Ok(Self {
            namespaces: scope.namespaces.iter().cloned().collect(),
            selector: Selector::parse(&scope.label_selector)?,
            scope,
        })
    }

    fn namespace_ok(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.contains(namespace)
    }

    fn admits<T: Object>(&self, entry: &Entry<T>, labelled: bool) -> bool {
        let namespace = entry.value.reference().map_or("", |r| r.namespace.as_str());
        self.namespace_ok(namespace) && (!labelled || self.selector.matches(&*entry.labels))
    }
}

/// Anything that knows its reference, behind one pointer type.
pub trait Referenced: std::fmt::Debug + Send + Sync {
    /// The object's reference.
    fn object_ref(&self) -> Option<&pb::ObjectRef>;
}

impl<T: Object> Referenced for T {
    fn object_ref(&self) -> Option<&pb::ObjectRef> {
        self.reference()
    }
}

/// A sent object: the revision sent, the call that last saw it in scope, and
/// the object itself (shared with the world, so keeping it costs nothing
/// until it changes) for its reference should it disappear.
type Sent = (u64, u64, Arc<dyn Referenced>);

/// What one subscriber has been sent.
#[derive(Debug, Default)]
pub struct Subscriber {
    filter: ScopeFilter,
    sent: HashMap<Uid, Sent>,
    /// Issue fingerprint → content hash sent.
    issues: HashMap<String, u64>,
    metrics: Option<Arc<MetricsRound>>,
    generation: u64,
    seq: u64,
}

/// One pass of [`Subscriber::next`] over the tables.
struct Pass<'a> {
    full: bool,
    seq: u64,
    sent: &'a mut HashMap<Uid, Sent>,
    /// Uids of the scoped objects issues and events may point at.
    admitted: HashSet<Uid>,
}

impl Pass<'_> {
    /// Collects the objects of `table` in scope (`in_scope`) that this
    /// subscriber has not been sent at their current revision (all of them
    /// when `full`).
    fn collect<T: Object>(
        &mut self,
        table: &Table<T>,
        in_scope: impl Fn(&Uid, &Entry<T>) -> bool,
        admit: bool,
    ) -> Vec<T> {
        let mut out = Vec::with_capacity(if self.full { table.len() } else { 0 });
        for (uid, entry) in table {
            if !in_scope(uid, entry) {
                continue;
            }
            if admit {
                self.admitted.insert(uid.clone());
            }
            match self.sent.get_mut(uid) {
                Some(slot) if slot.0 == entry.rev => {
                    slot.1 = self.seq;
                    if self.full {
                        out.push((*entry.value).clone());
                    }
                }
                _ => {
                    let value: Arc<dyn Referenced> = entry.value.clone();
                    self.sent.insert(uid.clone(), (entry.rev, self.seq, value));
                    out.push((*entry.value).clone());
                }
            }
        }
        out
    }
}

/// Workloads outside a label-selected scope that own something inside it
/// (a pod's ReplicaSet and Deployment, a Job's CronJob, an HPA's scale
/// target, a claim's StatefulSet), with their own owners: the safety gate
/// needs their labels to know whether an object in scope is protected.
/// Empty without a selector: every workload of the scope's namespaces is
/// sent then.
fn owners_of_scoped(t: &Tables, filter: &ScopeFilter) -> HashSet<Uid> {
    let mut owners = HashSet::new();
    if filter.selector.is_empty() {
        return owners;
    }
    let mut pending: Vec<&str> = Vec::new();
    for pod in t.pods.values().filter(|e| filter.admits(e, true)) {
        pending.extend(ref_uid(pod.value.owner.as_ref()));
        pending.extend(ref_uid(pod.value.workload.as_ref()));
    }
    for job in t.jobs.values().filter(|e| filter.admits(e, true)) {
        pending.extend(ref_uid(job.value.owner.as_ref()));
    }
    for workload in t.workloads.values().filter(|e| filter.admits(e, true)) {
        pending.extend(ref_uid(workload.value.owner.as_ref()));
    }
    let by_name: HashMap<(&str, &str, &str), (&str, &pb::Workload)> = t
        .workloads
        .iter()
        .filter_map(|(uid, e)| {
            let r = e.value.r#ref.as_ref()?;
            Some((
                (r.namespace.as_str(), r.kind.as_str(), r.name.as_str()),
                (uid.as_ref(), e.value.as_ref()),
            ))
        })
        .collect();
    for hpa in t.hpas.values().filter(|e| filter.admits(e, true)) {
        if let Some(target) = hpa.value.scale_target.as_ref()
            && let Some((uid, _)) = by_name.get(&(
                target.namespace.as_str(),
                target.kind.as_str(),
                target.name.as_str(),
            ))
        {
            pending.push(uid);
        }
    }
    for pvc in t.pvcs.values().filter(|e| filter.admits(e, true)) {
        let Some(claim) = pvc.value.r#ref.as_ref() else {
            continue;
        };
        for (template, set) in nanny_common::names::claim_template_candidates(&claim.name) {
            if let Some((uid, set)) = by_name.get(&(claim.namespace.as_str(), "StatefulSet", set))
                && set.claim_templates.iter().any(|t| t == template)
            {
                pending.push(uid);
            }
        }
    }
    while let Some(next) = pending.pop() {
        if let Some((uid, entry)) = t.workloads.get_key_value(next)
            && owners.insert(uid.clone())
        {
            pending.extend(ref_uid(entry.value.owner.as_ref()));
        }
    }
    owners
}

fn ref_uid(reference: Option<&pb::ObjectRef>) -> Option<&str> {
    reference.map(|r| r.uid.as_str()).filter(|u| !u.is_empty())
}

/// The parts of a reference a removal needs.
/// Distinguishes this process's snapshot ids from a previous run's: the
/// generation and sequence restart at 1, and a snapshot id (and so every
/// recommendation id derived from it) must never repeat.
static BOOT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    #[allow(clippy::cast_possible_truncation)] // the low bits are the varying ones
    let nanos = nanos as u64;
    format!(
        "{:x}",
        nanos ^ u64::from(std::process::id()).rotate_left(40)
    )
});

fn removal(value: &dyn Referenced) -> pb::ObjectRef {
    value
        .object_ref()
        .map(|r| pb::ObjectRef {
            resource_version: String::new(),
            ..r.clone()
        })
        .unwrap_or_default()
}

impl Subscriber {
    /// A subscriber that has been sent nothing.
    pub fn new(filter: ScopeFilter) -> Self {
        Self {
            filter,
            ..Self::default()
        }
    }

    /// The next message for this subscriber: everything in scope when
    /// `full` (or on the first call), else what changed since the last
    /// call; `None` when nothing did.
    #[expect(
        clippy::too_many_lines,
        reason = "builds a full or delta message one object kind at a time, each a short block"
    )]
    pub fn next(&mut self, world: &World, full: bool) -> Option<pb::ClusterSnapshot> {
        let full = full || self.generation == 0;
        self.seq += 1;
        let seq = self.seq;
        let filter = self.filter.clone();
        let t = &world.tables;
        let mut s = pb::ClusterSnapshot {
            id: format!("{}-{}-{}", *BOOT, world.generation, seq),
            cluster: Some(world.cluster.clone()),
            scope: Some(filter.scope.clone()),
            generation: world.generation,
            kind: if full {
                pb::SnapshotKind::Full
            } else {
                pb::SnapshotKind::Delta
            } as i32,
            base_generation: if full { 0 } else { self.generation },
            taken_at: Some(world.taken_at),
            metrics_stale_since: world
                .metrics
                .stale_since
                .map(|seconds| Timestamp { seconds, nanos: 0 }),
            ..pb::ClusterSnapshot::default()
        };
        if full {
            self.sent.clear();
            self.issues.clear();
        }
        let mut pass = Pass {
            full,
            seq,
            sent: &mut self.sent,
            admitted: HashSet::new(),
        };
        let owners = owners_of_scoped(t, &filter);
        s.pods = pass.collect(&t.pods, |_, e| filter.admits(e, true), true);
        s.workloads = pass.collect(
            &t.workloads,
            |uid, e| filter.admits(e, true) || owners.contains(uid),
            true,
        );
        s.jobs = pass.collect(&t.jobs, |_, e| filter.admits(e, true), true);
        s.hpas = pass.collect(&t.hpas, |_, e| filter.admits(e, true), true);
        s.pvcs = pass.collect(&t.pvcs, |_, e| filter.admits(e, true), true);
        s.pdbs = pass.collect(&t.pdbs, |_, e| filter.admits(e, false), true);
        s.services = pass.collect(&t.services, |_, e| filter.admits(e, false), true);
        s.ingresses = pass.collect(&t.ingresses, |_, e| filter.admits(e, false), true);
        s.tls_certificates =
            pass.collect(&t.tls_certificates, |_, e| filter.admits(e, false), true);
        // Volumes follow the namespace of the claim they are or were bound to.
        s.volumes = pass.collect(
            &t.volumes,
            |_, e| filter.namespace_ok(e.value.claim.as_ref().map_or("", |c| &c.namespace)),
            true,
        );
        s.network_policies =
            pass.collect(&t.network_policies, |_, e| filter.admits(e, false), true);
        // Nodes are cluster-wide and always in scope.
        s.nodes = pass.collect(&t.nodes, |_, _| true, true);
        // Admission webhooks are cluster-wide; a configuration goes to the
        // scopes that hold one of the Services it calls (whoever runs the
        // webhook), so no scope learns another's Services.
        s.webhooks = pass.collect(
            &t.webhooks,
            |_, e| {
                e.value
                    .calls
                    .iter()
                    .any(|c| filter.namespace_ok(&c.service_namespace))
            },
            true,
        );
        // The scope's namespaces, admitted: a namespace stuck terminating
        // is an issue about it.
        s.namespaces = pass.collect(
            &t.namespaces,
            |_, e| filter.namespace_ok(e.value.r#ref.as_ref().map_or("", |r| &r.name)),
            true,
        );
        // Events follow the objects they are about.
        let admitted = std::mem::take(&mut pass.admitted);
        s.events = pass
            .collect(&t.events, |_, e| filter.admits(e, false), false)
            .into_iter()
            .filter(|e| {
                filter.selector.is_empty()
                    || e.involved
                        .as_ref()
                        .is_some_and(|i| i.kind == "Node" || admitted.contains(i.uid.as_str()))
            })
            .collect();
        let sent = pass.sent;

        // Whatever was sent before and is no longer in scope is gone.
        let mut removed = Vec::new();
        sent.retain(|_, (_, seen, value)| {
            let keep = *seen == seq;
            if !keep && !full {
                removed.push(removal(value.as_ref()));
            }
            keep
        });
        s.removed = removed;

        let mut open = HashSet::new();
        for entry in &world.issues {
            let in_scope = entry
                .issue
                .target
                .as_ref()
                .is_some_and(|t| admitted.contains(t.uid.as_str()));
            if !in_scope {
                continue;
            }
            open.insert(entry.issue.fingerprint.as_str());
            if self.issues.get(&entry.issue.fingerprint) != Some(&entry.content) {
                self.issues
                    .insert(entry.issue.fingerprint.clone(), entry.content);
                s.issues.push((*entry.issue).clone());
            } else if full {
                s.issues.push((*entry.issue).clone());
            }
        }
        let mut resolved = Vec::new();
        self.issues.retain(|fingerprint, _| {
            let keep = open.contains(fingerprint.as_str());
            if !keep {
                resolved.push(fingerprint.clone());
            }
            keep
        });
        s.resolved_issues = resolved;

        let metrics_changed = self
            .metrics
            .as_ref()
            .is_none_or(|m| !Arc::ptr_eq(m, &world.metrics) && **m != *world.metrics);
        if full || metrics_changed {
            s.metrics = self.samples(world);
            self.metrics = Some(world.metrics.clone());
        }
        let changed = full
            || metrics_changed
            || !(s.pods.is_empty()
                && s.nodes.is_empty()
                && s.workloads.is_empty()
                && s.jobs.is_empty()
                && s.hpas.is_empty()
                && s.pvcs.is_empty()
                && s.pdbs.is_empty()
                && s.services.is_empty()
                && s.webhooks.is_empty()
                && s.network_policies.is_empty()
                && s.ingresses.is_empty()
                && s.volumes.is_empty()
                && s.tls_certificates.is_empty()
                && s.namespaces.is_empty()
                && s.events.is_empty()
                && s.removed.is_empty()
                && s.issues.is_empty()
                && s.resolved_issues.is_empty());
        if !changed {
            return None;
        }
        self.generation = world.generation;
        Some(s)
    }

    fn samples(&self, world: &World) -> Vec<pb::MetricSample> {
        let at = Timestamp {
            seconds: world.metrics.at,
            nanos: 0,
        };
        let names = CARRIED_BUILTINS
            .iter()
            .copied()
            .chain(world.extra_queries.iter().map(String::as_str));
        let mut samples = Vec::new();
        for name in names {
            for series in world.metrics.series.get(name).into_iter().flatten() {
                let in_scope = series
                    .labels
                    .get("namespace")
                    .is_none_or(|ns| self.filter.namespace_ok(ns));
                if in_scope {
                    samples.push(pb::MetricSample {
                        query: name.to_owned(),
                        labels: series
                            .labels
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                        value: series.value,
                        at: Some(at),
                    });
                }
            }
        }
        samples
    }
}

/// Headroom per chunk for the fields every chunk repeats.
const HEADER_ALLOWANCE: usize = 4096;

/// Splits `snapshot` into messages of at most `max_bytes` encoded bytes
/// that share its id; one message when it fits.
pub fn chunk(snapshot: pb::ClusterSnapshot, max_bytes: usize) -> Vec<pb::ClusterSnapshot> {
    // One pass over the items' sizes; a snapshot that fits ends up in one chunk.
    let budget = max_bytes.saturating_sub(HEADER_ALLOWANCE).max(1);
    let mut rest = snapshot;
    let header = pb::ClusterSnapshot {
        id: rest.id.clone(),
        cluster: rest.cluster.clone(),
        scope: rest.scope.clone(),
        generation: rest.generation,
        kind: rest.kind,
        base_generation: rest.base_generation,
        taken_at: rest.taken_at,
        metrics_stale_since: rest.metrics_stale_since,
        ..pb::ClusterSnapshot::default()
    };
    let mut chunks = vec![header.clone()];
    let mut size = 0;
    macro_rules! spread {
        ($($field:ident),*) => {$(
            for item in std::mem::take(&mut rest.$field) {
                // Field tag and length prefix: at most 1 + 10 bytes.
                let len = item.encoded_len() + 11;
                if size + len > budget && size > 0 {
                    chunks.push(header.clone());
                    size = 0;
                }
                size += len;
                if let Some(last) = chunks.last_mut() {
                    last.$field.push(item);
                }
            }
        )*};
    }
    spread!(
        issues,
        resolved_issues,
        removed,
        nodes,
        namespaces,
        workloads,
        jobs,
        hpas,
        pvcs,
        pdbs,
        services,
        webhooks,
        network_policies,
        ingresses,
        volumes,
        tls_certificates,
        pods,
        events,
        metrics
    );
    let count = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
    for (index, c) in chunks.iter_mut().enumerate() {
        c.chunk_index = u32::try_from(index).unwrap_or(u32::MAX);
        c.chunk_count = count;
    }
    chunks
}

#[cfg(test)]
mod tests;
