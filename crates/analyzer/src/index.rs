//! Lookups by uid over one snapshot, shared by the rules and the validator.

use std::collections::HashMap;

use nanny_proto::v1::{self as pb, ClusterSnapshot};

/// Borrowed uid indexes of one snapshot's objects and issues.
#[derive(Debug, Default)]
pub struct SnapshotIndex<'a> {
    /// Pods by uid.
    pub pods: HashMap<&'a str, &'a pb::Pod>,
    /// Workloads by uid.
    pub workloads: HashMap<&'a str, &'a pb::Workload>,
    /// Nodes by uid.
    pub nodes: HashMap<&'a str, &'a pb::Node>,
    /// Jobs by uid.
    pub jobs: HashMap<&'a str, &'a pb::Job>,
    /// HPAs by uid.
    pub hpas: HashMap<&'a str, &'a pb::HorizontalPodAutoscaler>,
    /// PVCs by uid.
    pub pvcs: HashMap<&'a str, &'a pb::PersistentVolumeClaim>,
    /// PodDisruptionBudgets by uid.
    pub pdbs: HashMap<&'a str, &'a pb::PodDisruptionBudget>,
    /// Namespaces by uid.
    pub namespaces: HashMap<&'a str, &'a pb::Namespace>,
    /// Services by uid.
    pub services: HashMap<&'a str, &'a pb::Service>,
    /// Admission webhook configurations by uid.
    pub webhooks: HashMap<&'a str, &'a pb::AdmissionWebhook>,
    /// NetworkPolicies by uid.
    pub network_policies: HashMap<&'a str, &'a pb::NetworkPolicy>,
    /// Ingresses by uid.
    pub ingresses: HashMap<&'a str, &'a pb::Ingress>,
    /// PersistentVolumes by uid.
    pub volumes: HashMap<&'a str, &'a pb::PersistentVolume>,
    /// TLS Secrets' certificates by the Secret's uid.
    pub tls_certificates: HashMap<&'a str, &'a pb::TlsCertificate>,
    /// Warning events by the uid of the object they are about.
    pub events: HashMap<&'a str, Vec<&'a pb::Event>>,
    /// Issues by fingerprint.
    pub issues: HashMap<&'a str, &'a pb::Issue>,
}

/// The uid of an object's ref, when it has a non-empty one.
fn uid(reference: Option<&pb::ObjectRef>) -> Option<&str> {
    reference.map(|r| r.uid.as_str()).filter(|u| !u.is_empty())
}

macro_rules! index {
    ($items:expr) => {
        $items
            .iter()
            .filter_map(|item| uid(item.r#ref.as_ref()).map(|u| (u, item)))
            .collect()
    };
}

impl<'a> SnapshotIndex<'a> {
    /// Indexes `snapshot`; objects without a uid are left out, so nothing
    /// can ever target them.
    pub fn new(snapshot: &'a ClusterSnapshot) -> Self {
        Self {
            pods: index!(snapshot.pods),
            workloads: index!(snapshot.workloads),
            nodes: index!(snapshot.nodes),
            jobs: index!(snapshot.jobs),
            hpas: index!(snapshot.hpas),
            pvcs: index!(snapshot.pvcs),
            pdbs: index!(snapshot.pdbs),
            namespaces: index!(snapshot.namespaces),
            services: index!(snapshot.services),
            webhooks: index!(snapshot.webhooks),
            network_policies: index!(snapshot.network_policies),
            ingresses: index!(snapshot.ingresses),
            volumes: index!(snapshot.volumes),
            tls_certificates: index!(snapshot.tls_certificates),
            events: snapshot
                .events
                .iter()
                .fold(HashMap::new(), |mut events, e| {
                    if let Some(about) = uid(e.involved.as_ref()) {
                        events.entry(about).or_insert_with(Vec::new).push(e);
                    }
                    events
                }),
            issues: snapshot
                .issues
                .iter()
                .filter(|i| !i.fingerprint.is_empty())
                .map(|i| (i.fingerprint.as_str(), i))
                .collect(),
        }
    }

    /// The snapshot's own ref of the object with `uid`, whatever its table.
    pub fn object(&self, uid: &str) -> Option<&'a pb::ObjectRef> {
        self.pods
            .get(uid)
            .and_then(|o| o.r#ref.as_ref())
            .or_else(|| self.workloads.get(uid).and_then(|o| o.r#ref.as_ref()))
            .or_else(|| self.nodes.get(uid).and_then(|o| o.r#ref.as_ref()))
            .or_else(|| self.jobs.get(uid).and_then(|o| o.r#ref.as_ref()))
            .or_else(|| self.hpas.get(uid).and_then(|o| o.r#ref.as_ref()))
            .or_else(|| self.pvcs.get(uid).and_then(|o| o.r#ref.as_ref()))
            .or_else(|| self.pdbs.get(uid).and_then(|o| o.r#ref.as_ref()))
            .or_else(|| self.namespaces.get(uid).and_then(|o| o.r#ref.as_ref()))
            .or_else(|| self.services.get(uid).and_then(|o| o.r#ref.as_ref()))
            .or_else(|| self.webhooks.get(uid).and_then(|o| o.r#ref.as_ref()))
            .or_else(|| self.ingresses.get(uid).and_then(|o| o.r#ref.as_ref()))
            .or_else(|| self.volumes.get(uid).and_then(|o| o.r#ref.as_ref()))
            .or_else(|| {
                self.tls_certificates
                    .get(uid)
                    .and_then(|o| o.r#ref.as_ref())
            })
            .or_else(|| {
                self.network_policies
                    .get(uid)
                    .and_then(|o| o.r#ref.as_ref())
            })
    }

    /// The most recently seen Warning event about the object with `uid`.
    pub fn latest_warning(&self, uid: &str) -> Option<&'a pb::Event> {
        self.latest_warning_of(uid, &[])
    }

    /// The most recently seen Warning event about the object with `uid`
    /// whose reason is one of `reasons` (any reason when empty).
    pub fn latest_warning_of(&self, uid: &str, reasons: &[&str]) -> Option<&'a pb::Event> {
        self.events
            .get(uid)?
            .iter()
            .copied()
            .filter(|e| reasons.is_empty() || reasons.contains(&e.reason.as_str()))
            .max_by_key(|e| e.last_seen.map(|t| (t.seconds, t.nanos)))
    }
}
