//! Incidents: a snapshot's issues correlated before the model is asked, so
//! it is asked once per cause rather than once per symptom.
//!
//! Correlation, first match wins:
//! - **node**: a node's own issues, and every pod issue on a node that has
//!   one or on which pods of [`NODE_SPREAD`] or more workloads fail;
//! - **systemic**: the same issue kind on [`SYSTEMIC_SPREAD`] or more
//!   workloads of one namespace ("multiple pods failing similarly");
//! - **rollout**: a workload whose failing pods all belong to one
//!   ReplicaSet (revision) while a pod of another one is healthy;
//! - **workload**: the issues of one owner workload (or one bare object).
//!
//! Each incident carries bounded evidence as data, each item with an id the
//! model may cite: the issues' evidence (their summaries are in the prompt's
//! issue lines), the pods' last
//! terminations, restart counts and resources, the failing and healthy
//! revisions, what Nanny already tried on its objects and how it ended, and
//! the Warning events about its objects (untrusted text, cut). The fingerprint names the incident across snapshots, policies and
//! replicas; [`Incident::material`] digests what must change before the
//! model is asked again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nanny_proto::v1::{self as pb, ClusterSnapshot};
use sha2::Digest as _;

use crate::{index::SnapshotIndex, rules::describe};

/// Pods of this many workloads failing on one node make a node incident.
pub const NODE_SPREAD: usize = 3;
/// The same issue kind on this many workloads of a namespace is systemic.
pub const SYSTEMIC_SPREAD: usize = 3;
/// Most evidence items per incident.
pub const MAX_EVIDENCE: usize = 16;
/// Longest evidence value, characters; longer ones are cut.
pub const MAX_VALUE_CHARS: usize = 160;
/// Most of Nanny's earlier actions an incident's evidence names.
pub const MAX_TRIED: usize = 3;
/// Most of Nanny's earlier actions read from a request.
pub const MAX_TRIED_READ: usize = 32;

/// How an incident's issues belong together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IncidentKind {
    /// One node, its issues and its failing pods.
    Node,
    /// One symptom across many workloads of a namespace.
    Systemic,
    /// One new revision of a workload failing while an older one is fine.
    Rollout,
    /// One workload's (or one bare object's) issues.
    Workload,
}

impl IncidentKind {
    /// The name in prompts, metrics and fingerprints.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Systemic => "systemic",
            Self::Rollout => "rollout",
            Self::Workload => "workload",
        }
    }
}

/// One item of evidence the model may cite by `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceItem {
    /// `e1`, `e2`, …, in the incident's order.
    pub id: String,
    /// The object it is about, `Kind namespace/name`.
    pub about: String,
    /// What it is.
    pub description: String,
    /// Its value, cut to [`MAX_VALUE_CHARS`].
    pub value: String,
    /// Text from the cluster that anyone able to write an event controls.
    pub untrusted: bool,
}

impl EvidenceItem {
    /// `id: description = value`, as an explanation cites it.
    pub fn cited(&self) -> String {
        format!("{}: {} = {}", self.id, self.description, self.value)
    }
}

/// Correlated issues of one snapshot, with their evidence.
#[derive(Debug, Clone)]
pub struct Incident<'a> {
    /// `inc-` and 16 hex digits of the kind and what the issues share.
    pub fingerprint: String,
    /// How the issues belong together.
    pub kind: IncidentKind,
    /// What they share, in words: `node n1`, `Deployment shop/web`, …
    pub subject: String,
    /// The issues, most severe first, then by fingerprint.
    pub issues: Vec<&'a pb::Issue>,
    /// The worst severity of its issues.
    pub severity: i32,
    /// Seconds since the epoch when its oldest issue was first seen.
    pub first_seen: i64,
    /// The objects a proposal may target: the issues' targets and the
    /// workloads owning them, sorted by uid.
    pub objects: Vec<&'a pb::ObjectRef>,
    /// At most [`MAX_EVIDENCE`] items.
    pub evidence: Vec<EvidenceItem>,
}

impl Incident<'_> {
    /// Whether `fingerprint` is one of its issues.
    pub fn has_issue(&self, fingerprint: &str) -> bool {
        self.issues.iter().any(|i| i.fingerprint == fingerprint)
    }

    /// Whether `uid` is an object a proposal for it may target.
    pub fn has_object(&self, uid: &str) -> bool {
        self.objects.iter().any(|o| o.uid == uid)
    }

    /// The evidence item `id`.
    pub fn evidence(&self, id: &str) -> Option<&EvidenceItem> {
        self.evidence.iter().find(|e| e.id == id)
    }

    /// A digest of what the model's answer rests on, insensitive to what
    /// changes without changing the picture: timestamps are left out and
    /// every number counts only by its order of magnitude (a restart count
    /// of 9 reads as 12 does). The model is asked again once it changes.
    pub fn material(&self) -> String {
        let mut hasher = sha2::Sha256::new();
        for issue in &self.issues {
            hasher.update(format!(
                "{}|{}|{}\n",
                issue.fingerprint, issue.kind, issue.severity
            ));
        }
        for item in &self.evidence {
            hasher.update(format!(
                "{}|{}|{}\n",
                item.about,
                item.description,
                magnitudes(&item.value)
            ));
        }
        hex(&hasher.finalize()[..8])
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `text` with every run of digits replaced by its order of magnitude in
/// base 2 (`0`, `1`, `2^1`, `2^2`, …).
pub fn magnitudes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.is_empty() {
            return;
        }
        match digits.parse::<u64>() {
            Ok(0) => out.push('0'),
            Ok(n) => out.push_str(&format!("2^{}", n.ilog2())),
            Err(_) => out.push_str("big"),
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

fn fingerprint(kind: IncidentKind, key: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{}/{key}", kind.as_str()));
    format!("inc-{}", hex(&digest[..8]))
}

/// Where one issue belongs, before correlation.
struct Placed<'a> {
    issue: &'a pb::Issue,
    target: &'a pb::ObjectRef,
    /// The pod, when the target is one.
    pod: Option<&'a pb::Pod>,
    /// The owning workload's uid, or the target's own.
    group: &'a str,
}

/// The snapshot's issues under `triggers` (all when `None`) whose target it
/// holds, correlated into incidents: the most severe first, then the
/// oldest, then by fingerprint.
/// `tried` is what Nanny did recently, newest first (the first
/// [`MAX_TRIED_READ`] are read).
pub fn correlate<'a>(
    snapshot: &'a ClusterSnapshot,
    index: &SnapshotIndex<'a>,
    triggers: Option<&BTreeSet<i32>>,
    tried: &[pb::TriedAction],
) -> Vec<Incident<'a>> {
    let tried = &tried[..tried.len().min(MAX_TRIED_READ)];
    let placed: Vec<Placed<'a>> = snapshot
        .issues
        .iter()
        .filter(|i| !i.fingerprint.is_empty() && triggers.is_none_or(|t| t.contains(&i.kind)))
        .filter_map(|issue| {
            let target = index.object(&issue.target.as_ref()?.uid)?;
            let pod = index.pods.get(target.uid.as_str()).copied();
            let group = pod
                .and_then(|p| p.workload.as_ref())
                .map(|w| w.uid.as_str())
                .filter(|u| !u.is_empty())
                .unwrap_or(target.uid.as_str());
            Some(Placed {
                issue,
                target,
                pod,
                group,
            })
        })
        .collect();
    let mut groups: BTreeMap<(IncidentKind, String), (String, Vec<&Placed<'a>>)> = BTreeMap::new();
    let nodes = node_incidents(index, &placed);
    let mut rest = Vec::new();
    for p in &placed {
        let node = if p.target.kind == "Node" {
            Some(p.target.name.as_str())
        } else {
            p.pod.map(|pod| pod.node_name.as_str())
        };
        match node.filter(|n| nodes.contains(*n)) {
            Some(node) => groups
                .entry((IncidentKind::Node, node.to_owned()))
                .or_insert_with(|| (format!("node {node}"), Vec::new()))
                .1
                .push(p),
            None => rest.push(p),
        }
    }
    for (key, members) in by_workload(rest) {
        groups.insert(key.0, (key.1, members));
    }
    let mut incidents: Vec<Incident<'a>> = groups
        .into_iter()
        .map(|((kind, key), (subject, members))| {
            build(snapshot, index, kind, (&key, subject), &members, tried)
        })
        .collect();
    incidents.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.first_seen.cmp(&b.first_seen))
            .then_with(|| a.fingerprint.cmp(&b.fingerprint))
    });
    incidents
}

/// Names of the nodes whose pod issues make one node incident.
fn node_incidents(index: &SnapshotIndex<'_>, placed: &[Placed<'_>]) -> BTreeSet<String> {
    let mut spread: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    let mut nodes = BTreeSet::new();
    for p in placed {
        if p.target.kind == "Node" && index.nodes.contains_key(p.target.uid.as_str()) {
            nodes.insert(p.target.name.clone());
        } else if let Some(node) = p
            .pod
            .map(|pod| pod.node_name.as_str())
            .filter(|n| !n.is_empty())
        {
            spread.entry(node).or_default().insert(p.group);
        }
    }
    nodes.extend(
        spread
            .into_iter()
            .filter(|(_, workloads)| workloads.len() >= NODE_SPREAD)
            .map(|(node, _)| node.to_owned()),
    );
    nodes
}

type Keyed<'p, 'a> = Vec<(((IncidentKind, String), String), Vec<&'p Placed<'a>>)>;

/// The issues off failing nodes, by workload; many workloads of a namespace
/// with the same kind of issue merge into one systemic incident.
fn by_workload<'p, 'a>(rest: Vec<&'p Placed<'a>>) -> Keyed<'p, 'a> {
    let mut workloads: BTreeMap<&str, Vec<&'p Placed<'a>>> = BTreeMap::new();
    for p in rest {
        workloads.entry(p.group).or_default().push(p);
    }
    // A workload's symptom: the kind of its most severe issue.
    let mut symptoms: BTreeMap<(String, i32), Vec<&str>> = BTreeMap::new();
    for (group, members) in &workloads {
        if let Some(worst) = members
            .iter()
            .max_by_key(|p| (p.issue.severity, -p.issue.kind))
        {
            symptoms
                .entry((worst.target.namespace.clone(), worst.issue.kind))
                .or_default()
                .push(group);
        }
    }
    let mut out: Keyed<'p, 'a> = Vec::new();
    for ((namespace, kind), groups) in symptoms {
        if groups.len() < SYSTEMIC_SPREAD || namespace.is_empty() {
            continue;
        }
        let kind_name = pb::IssueKind::try_from(kind).map_or("UNKNOWN", |k| k.as_str_name());
        let members = groups
            .iter()
            .filter_map(|g| workloads.remove(g))
            .flatten()
            .collect();
        out.push((
            (
                (IncidentKind::Systemic, format!("{namespace}/{kind}")),
                format!(
                    "{kind_name} on {} workloads in namespace {namespace}",
                    groups.len()
                ),
            ),
            members,
        ));
    }
    for (group, members) in workloads {
        let subject = members
            .iter()
            .find_map(|p| p.pod.and_then(|pod| pod.workload.as_ref()))
            .unwrap_or(members[0].target);
        out.push((
            (
                (IncidentKind::Workload, group.to_owned()),
                describe(subject),
            ),
            members,
        ));
    }
    out
}

fn build<'a>(
    snapshot: &'a ClusterSnapshot,
    index: &SnapshotIndex<'a>,
    mut kind: IncidentKind,
    (key, mut subject): (&str, String),
    members: &[&Placed<'a>],
    tried: &[pb::TriedAction],
) -> Incident<'a> {
    let mut issues: Vec<&'a pb::Issue> = members.iter().map(|p| p.issue).collect();
    issues.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.fingerprint.cmp(&b.fingerprint))
    });
    issues.dedup_by(|a, b| a.fingerprint == b.fingerprint);
    let mut objects: BTreeMap<&str, &'a pb::ObjectRef> = BTreeMap::new();
    for p in members {
        objects.insert(&p.target.uid, p.target);
        if let Some(w) = p
            .pod
            .and_then(|pod| pod.workload.as_ref())
            .and_then(|w| index.object(&w.uid))
        {
            objects.insert(&w.uid, w);
        }
    }
    let mut evidence = Evidence::default();
    if kind == IncidentKind::Workload
        && let Some(revisions) = rollout(snapshot, key, members)
    {
        kind = IncidentKind::Rollout;
        subject = format!("{subject}, revision {}", revisions.failing);
        evidence.push(
            "",
            "failing revision (ReplicaSet)",
            &revisions.failing,
            false,
        );
        evidence.push(
            "",
            "healthy revision (ReplicaSet)",
            &revisions.healthy,
            false,
        );
        revisions.changes(&mut evidence);
    }
    for issue in &issues {
        let about = issue.target.as_ref().map(describe).unwrap_or_default();
        for e in &issue.evidence {
            evidence.push(&about, &e.description, &e.value, false);
        }
    }
    for p in members {
        if let Some(pod) = p.pod {
            pod_evidence(&mut evidence, pod);
        }
    }
    trends(&mut evidence, snapshot, members);
    let uids: BTreeSet<&str> = objects.keys().copied().collect();
    tried_evidence(&mut evidence, index, (&uids, &subject), tried);
    event_evidence(&mut evidence, snapshot, &uids);
    let severity = issues.iter().map(|i| i.severity).max().unwrap_or_default();
    let first_seen = issues
        .iter()
        .filter_map(|i| i.first_seen.as_ref().map(|t| t.seconds))
        .min()
        .unwrap_or_default();
    Incident {
        fingerprint: fingerprint(kind, key),
        kind,
        subject,
        issues,
        severity,
        first_seen,
        objects: objects.into_values().collect(),
        evidence: evidence.0,
    }
}

/// Evidence items, numbered as they are added, bounded.
#[derive(Default)]
struct Evidence(Vec<EvidenceItem>);

impl Evidence {
    fn push(&mut self, about: &str, description: &str, value: &str, untrusted: bool) {
        if self.0.len() >= MAX_EVIDENCE || value.is_empty() {
            return;
        }
        let value: String = value.chars().take(MAX_VALUE_CHARS).collect();
        if self
            .0
            .iter()
            .any(|e| e.about == about && e.description == description && e.value == value)
        {
            return;
        }
        self.0.push(EvidenceItem {
            id: format!("e{}", self.0.len() + 1),
            about: about.to_owned(),
            description: description.to_owned(),
            value,
            untrusted,
        });
    }
}

fn pod_evidence(evidence: &mut Evidence, pod: &pb::Pod) {
    let about = pod.r#ref.as_ref().map(describe).unwrap_or_default();
    if !pod.node_name.is_empty() {
        evidence.push(&about, "node", &pod.node_name, false);
    }
    for c in &pod.containers {
        let name = &c.name;
        if let Some(t) = &c.last_termination {
            evidence.push(
                &about,
                &format!("container {name} last termination"),
                &format!("{} (exit code {})", t.reason, t.exit_code),
                false,
            );
        }
        if c.restart_count > 0 {
            evidence.push(
                &about,
                &format!("container {name} restarts"),
                &c.restart_count.to_string(),
                false,
            );
        }
        let memory = |r: Option<&pb::Resources>| {
            r.and_then(|r| r.memory_bytes)
                .map(|b| format!("{} MiB", b >> 20))
        };
        if let (Some(limit), usage) = (memory(c.limits.as_ref()), memory(c.usage.as_ref())) {
            let value = usage.map_or(limit.clone(), |u| format!("{u} used of {limit}"));
            evidence.push(&about, &format!("container {name} memory"), &value, false);
        }
    }
}

/// What Nanny already tried on the incident's objects (`uids`, described
/// by the subject when the snapshot no longer holds the target): the
/// outcome, not the time, so the question is asked again when an outcome
/// changes, not as it ages.
fn tried_evidence(
    evidence: &mut Evidence,
    index: &SnapshotIndex<'_>,
    (uids, subject): (&BTreeSet<&str>, &str),
    tried: &[pb::TriedAction],
) {
    for t in tried
        .iter()
        .filter(|t| uids.contains(t.target_uid.as_str()) || uids.contains(t.workload_uid.as_str()))
        .take(MAX_TRIED)
    {
        let about = index
            .object(&t.target_uid)
            .map_or_else(|| subject.to_owned(), describe);
        let action: String = t.action.chars().take(32).collect();
        let outcome: String = t.outcome.chars().take(32).collect();
        let history = if t.outcomes_7d > 0 {
            format!(
                " (it helped this workload {} of {} times in the last 7 days)",
                t.effective_7d.min(t.outcomes_7d),
                t.outcomes_7d
            )
        } else {
            String::new()
        };
        evidence.push(
            &about,
            "Nanny already tried",
            &format!("{action}: {outcome}{history}"),
            false,
        );
    }
}

/// The Warning events about the incident's objects: untrusted text.
fn event_evidence(evidence: &mut Evidence, snapshot: &ClusterSnapshot, uids: &BTreeSet<&str>) {
    for event in &snapshot.events {
        let involved = event.involved.as_ref().map_or("", |r| r.uid.as_str());
        if event.r#type == "Warning" && uids.contains(involved) {
            let about = event.involved.as_ref().map(describe).unwrap_or_default();
            let text = event.message.as_ref().map_or("", |m| m.text.as_str());
            evidence.push(
                &about,
                &format!("event {} (x{})", event.reason, event.count),
                text,
                true,
            );
        }
    }
}

/// Trends from Prometheus about the incident's pods and nodes, as the
/// collector carries them (`MetricSample`s of its built-in queries):
/// memory growth per hour over 30 min, restarts per hour over 15 min, CPU
/// throttling, and a node's available memory.
fn trends(evidence: &mut Evidence, snapshot: &ClusterSnapshot, members: &[&Placed<'_>]) {
    let pods: BTreeMap<(&str, &str), String> = members
        .iter()
        .filter_map(|p| p.pod?.r#ref.as_ref())
        .map(|r| ((r.namespace.as_str(), r.name.as_str()), describe(r)))
        .collect();
    let nodes: BTreeSet<&str> = members
        .iter()
        .filter(|p| p.target.kind == "Node")
        .map(|p| p.target.name.as_str())
        .collect();
    for sample in &snapshot.metrics {
        let label = |key: &str| sample.labels.get(key).map_or("", String::as_str);
        let value = sample.value;
        if !value.is_finite() {
            continue;
        }
        if sample.query == "node_memory_available_ratio" {
            if nodes.contains(label("node")) {
                let about = format!("Node {}", label("node"));
                evidence.push(
                    &about,
                    "memory available",
                    &format!("{:.0} %", value * 100.0),
                    false,
                );
            }
            continue;
        }
        let Some(about) = pods.get(&(label("namespace"), label("pod"))) else {
            continue;
        };
        let container = label("container");
        let (description, shown) = match sample.query.as_str() {
            // Under 1 MiB/h either way: noise, left out to save tokens.
            "container_memory_growth_per_hour" if value.abs() >= f64::from(1u32 << 20) => (
                "memory trend (30 min)",
                format!("{:+.1} MiB/h", value / f64::from(1u32 << 20)),
            ),
            "restart_rate_15m" if value > 0.0 => {
                ("restart rate (15 min)", format!("{:.1}/h", value * 3600.0))
            }
            "cpu_throttling_ratio" if value > 0.0 => {
                ("CPU throttled", format!("{:.0} %", value * 100.0))
            }
            _ => continue,
        };
        evidence.push(
            about,
            &format!("container {container} {description}"),
            &shown,
            false,
        );
    }
}

/// A workload's failing revision and a healthy one, with a pod of each.
struct Revisions<'a> {
    failing: String,
    healthy: String,
    failing_pod: &'a pb::Pod,
    healthy_pod: &'a pb::Pod,
}

impl Revisions<'_> {
    /// What the rollout changed, container by container: the image and
    /// the memory limit, where the two revisions differ.
    fn changes(&self, evidence: &mut Evidence) {
        for new in &self.failing_pod.containers {
            let Some(old) = self
                .healthy_pod
                .containers
                .iter()
                .find(|c| c.name == new.name)
            else {
                continue;
            };
            let name = &new.name;
            if new.image != old.image {
                let value = format!("{} (healthy revision: {})", new.image, old.image);
                evidence.push(
                    "",
                    &format!("container {name} image changed"),
                    &value,
                    false,
                );
            }
            let memory = |c: &pb::ContainerStatus| c.limits.as_ref().and_then(|l| l.memory_bytes);
            if memory(new) != memory(old) {
                let mib =
                    |b: Option<i64>| b.map_or("none".to_owned(), |b| format!("{} MiB", b >> 20));
                let value = format!(
                    "{} (healthy revision: {})",
                    mib(memory(new)),
                    mib(memory(old))
                );
                evidence.push(
                    "",
                    &format!("container {name} memory limit changed"),
                    &value,
                    false,
                );
            }
        }
    }
}

/// For a workload's failing pods: the one revision (owner) they all share
/// and a revision with a healthy pod, when those differ.
fn rollout<'a>(
    snapshot: &'a ClusterSnapshot,
    workload: &str,
    members: &[&Placed<'a>],
) -> Option<Revisions<'a>> {
    let failing: BTreeSet<&str> = members.iter().filter_map(|p| p.pod).map(uid_of).collect();
    let owners: BTreeMap<&str, &pb::ObjectRef> = members
        .iter()
        .filter_map(|p| p.pod.and_then(|pod| pod.owner.as_ref()))
        .filter(|o| o.kind == "ReplicaSet")
        .map(|o| (o.uid.as_str(), o))
        .collect();
    let [owner] = owners.into_values().collect::<Vec<_>>()[..] else {
        return None;
    };
    let healthy = snapshot.pods.iter().find(|p| {
        p.workload.as_ref().is_some_and(|w| w.uid == workload)
            && p.ready
            && !failing.contains(uid_of(p))
            && p.owner
                .as_ref()
                .is_some_and(|o| o.kind == "ReplicaSet" && o.uid != owner.uid)
    })?;
    let failing_pod = members.iter().find_map(|p| p.pod)?;
    Some(Revisions {
        failing: owner.name.clone(),
        healthy: healthy.owner.as_ref()?.name.clone(),
        failing_pod,
        healthy_pod: healthy,
    })
}

fn uid_of(pod: &pb::Pod) -> &str {
    pod.r#ref.as_ref().map_or("", |r| r.uid.as_str())
}

#[cfg(test)]
mod tests;
