//! The collector's in-memory model of the cluster: compact projections keyed
//! by uid, each stamped with the store revision that last changed it, so
//! that every subscriber can send exactly what changed since its last message.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::SystemTime,
};

use nanny_proto::v1 as pb;

use crate::project::ClassFacts;

/// Object uids, shared between the store, worlds and subscribers.
pub type Uid = Arc<str>;
/// Object labels, used for scoping; not necessarily carried in snapshots.
pub type Labels = Arc<BTreeMap<String, String>>;

/// One stored object.
#[derive(Debug, Clone)]
pub struct Entry<T> {
    /// The store revision of the last change.
    pub rev: u64,
    /// The projection.
    pub value: Arc<T>,
    /// All of the object's labels.
    pub labels: Labels,
}

/// Projections that carry their own reference.
pub trait Object: Clone + PartialEq + std::fmt::Debug + Send + Sync + 'static {
    /// The object's reference; projections always set it.
    fn reference(&self) -> Option<&pb::ObjectRef>;
}

macro_rules! objects {
    ($($type:ty),*) => {$(
        impl Object for $type {
            fn reference(&self) -> Option<&pb::ObjectRef> {
                self.r#ref.as_ref()
            }
        }
    )*};
}
objects!(
    pb::Pod,
    pb::Node,
    pb::Workload,
    pb::Job,
    pb::HorizontalPodAutoscaler,
    pb::PersistentVolumeClaim,
    pb::PodDisruptionBudget,
    pb::Namespace,
    pb::Service,
    pb::AdmissionWebhook,
    pb::NetworkPolicy,
    pb::Ingress,
    pb::PersistentVolume,
    pb::TlsCertificate,
    pb::Event
);

/// The objects of one kind (several Kubernetes kinds share the workload table).
pub type Table<T> = HashMap<Uid, Entry<T>>;

/// Which table an item belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    /// Pods.
    Pods,
    /// Nodes.
    Nodes,
    /// Deployments, StatefulSets, DaemonSets, CronJobs, ReplicaSets.
    Workloads,
    /// Jobs.
    Jobs,
    /// HorizontalPodAutoscalers.
    Hpas,
    /// PersistentVolumeClaims.
    Pvcs,
    /// Warning events.
    Events,
    /// PodDisruptionBudgets.
    Pdbs,
    /// Namespaces.
    Namespaces,
    /// Services.
    Services,
    /// Admission webhook configurations.
    Webhooks,
    /// NetworkPolicies.
    NetworkPolicies,
    /// Ingresses.
    Ingresses,
    /// PersistentVolumes.
    Volumes,
    /// TLS Secrets' certificates.
    TlsCertificates,
    /// StorageClasses (only their expandability and binding mode are kept).
    StorageClasses,
}

/// One projected object, ready for the store.
#[derive(Debug, Clone)]
pub enum Item {
    /// A Pod.
    Pod(Uid, pb::Pod, Labels),
    /// A Node.
    Node(Uid, pb::Node),
    /// A workload; `visible: false` for ReplicaSets a Deployment owns, which
    /// only link their pods to the Deployment.
    Workload(Uid, pb::Workload, Labels, bool),
    /// A Job.
    Job(Uid, pb::Job, Labels),
    /// An HPA.
    Hpa(Uid, pb::HorizontalPodAutoscaler, Labels),
    /// A PVC.
    Pvc(Uid, pb::PersistentVolumeClaim, Labels),
    /// A Warning event, keyed by the Event object's uid.
    Event(Uid, pb::Event),
    /// A PDB.
    Pdb(Uid, pb::PodDisruptionBudget),
    /// A Namespace.
    Namespace(Uid, pb::Namespace),
    /// A Service.
    Service(Uid, pb::Service),
    /// A Validating- or MutatingWebhookConfiguration.
    Webhook(Uid, pb::AdmissionWebhook),
    /// A NetworkPolicy.
    NetworkPolicy(Uid, pb::NetworkPolicy),
    /// An Ingress.
    Ingress(Uid, pb::Ingress),
    /// An IngressClass: its name.
    IngressClass(Uid, String),
    /// A PersistentVolume.
    Volume(Uid, pb::PersistentVolume),
    /// A TLS Secret's certificate.
    TlsCertificate(Uid, pb::TlsCertificate),
    /// A StorageClass: name, and whether it allows expansion and binds
    /// on first use.
    StorageClass(Uid, String, ClassFacts),
}

impl Item {
    /// The object's uid.
    pub fn uid(&self) -> &Uid {
        match self {
            Self::Pod(uid, ..)
            | Self::Node(uid, ..)
            | Self::Workload(uid, ..)
            | Self::Job(uid, ..)
            | Self::Hpa(uid, ..)
            | Self::Pvc(uid, ..)
            | Self::Event(uid, ..)
            | Self::Pdb(uid, ..)
            | Self::Namespace(uid, ..)
            | Self::Service(uid, ..)
            | Self::Webhook(uid, ..)
            | Self::NetworkPolicy(uid, ..)
            | Self::Ingress(uid, ..)
            | Self::IngressClass(uid, ..)
            | Self::Volume(uid, ..)
            | Self::TlsCertificate(uid, ..)
            | Self::StorageClass(uid, ..) => uid,
        }
    }
}

/// Container usage from Prometheus, by (namespace, pod, container).
pub type ContainerUsage = HashMap<(String, String, String), pb::Resources>;
/// PVC used and capacity bytes from Prometheus, by (namespace, claim).
pub type VolumeUsage = HashMap<(String, String), (i64, Option<i64>)>;

/// Everything the collector knows, as of revision `rev`.
#[derive(Debug, Default, Clone)]
pub struct Tables {
    /// Pods.
    pub pods: Table<pb::Pod>,
    /// Nodes.
    pub nodes: Table<pb::Node>,
    /// Workloads.
    pub workloads: Table<pb::Workload>,
    /// Jobs.
    pub jobs: Table<pb::Job>,
    /// HPAs.
    pub hpas: Table<pb::HorizontalPodAutoscaler>,
    /// PVCs.
    pub pvcs: Table<pb::PersistentVolumeClaim>,
    /// Warning events.
    pub events: Table<pb::Event>,
    /// PDBs.
    pub pdbs: Table<pb::PodDisruptionBudget>,
    /// Namespaces.
    pub namespaces: Table<pb::Namespace>,
    /// Services.
    pub services: Table<pb::Service>,
    /// Admission webhook configurations.
    pub webhooks: Table<pb::AdmissionWebhook>,
    /// NetworkPolicies.
    pub network_policies: Table<pb::NetworkPolicy>,
    /// Ingresses.
    pub ingresses: Table<pb::Ingress>,
    /// PersistentVolumes.
    pub volumes: Table<pb::PersistentVolume>,
    /// TLS Secrets' certificates.
    pub tls_certificates: Table<pb::TlsCertificate>,
    /// IngressClass names by uid.
    pub ingress_classes: HashMap<Uid, String>,
}

/// The mutable store; wrap it in a lock.
#[derive(Debug, Default)]
pub struct Store {
    rev: u64,
    tables: Tables,
    /// Owner uid → the workload its pods belong to, for ReplicaSets a
    /// Deployment owns and Jobs a CronJob owns; with the owner's kind.
    controllers: HashMap<Uid, (&'static str, pb::ObjectRef)>,
    /// Owner uid → its pods, to re-resolve workloads when a link appears.
    pods_by_owner: HashMap<Uid, HashSet<Uid>>,
    /// StorageClass uid → (name, facts).
    storage_classes: HashMap<Uid, (String, ClassFacts)>,
    container_usage: ContainerUsage,
    volume_usage: VolumeUsage,
    empty_labels: Labels,
}

/// Locks the store. A poisoned lock means a panic mid-update; the maps are
/// still consistent (every update is a single insert or remove), so the
/// collector keeps serving rather than stop seeing the cluster.
pub fn lock(store: &std::sync::Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn upsert<T: Object>(
    table: &mut Table<T>,
    rev: &mut u64,
    uid: Uid,
    value: T,
    labels: Labels,
) -> bool {
    if let Some(existing) = table.get(&uid)
        && *existing.value == value
        && existing.labels == labels
    {
        return false;
    }
    *rev += 1;
    table.insert(
        uid,
        Entry {
            rev: *rev,
            value: Arc::new(value),
            labels,
        },
    );
    true
}

fn remove<T>(table: &mut Table<T>, rev: &mut u64, uid: &str) -> bool {
    if table.remove(uid).is_some() {
        *rev += 1;
        true
    } else {
        false
    }
}

impl Store {
    /// The current revision; it grows with every change.
    pub fn rev(&self) -> u64 {
        self.rev
    }

    /// The tables as of now (cheap: entries share their projections).
    pub fn tables(&self) -> Tables {
        self.tables.clone()
    }

    /// Borrowed view of the tables.
    pub fn view(&self) -> &Tables {
        &self.tables
    }

    /// Applies one added or modified object; true when anything changed.
    #[expect(
        clippy::too_many_lines,
        reason = "one short arm per kind of object the collector watches"
    )]
    pub fn apply(&mut self, item: Item) -> bool {
        match item {
            Item::Pod(uid, pod, labels) => self.upsert_pod(uid, pod, labels),
            Item::Node(uid, node) => {
                let labels = self.empty_labels.clone();
                upsert(&mut self.tables.nodes, &mut self.rev, uid, node, labels)
            }
            Item::Workload(uid, workload, labels, visible) => {
                self.upsert_workload(uid, workload, labels, visible)
            }
            Item::Job(uid, job, labels) => {
                let link = job.owner.as_ref().filter(|o| o.kind == "CronJob").cloned();
                let mut changed = self.set_controller(&uid, "Job", link);
                changed |= upsert(&mut self.tables.jobs, &mut self.rev, uid, job, labels);
                changed
            }
            Item::Hpa(uid, hpa, labels) => {
                upsert(&mut self.tables.hpas, &mut self.rev, uid, hpa, labels)
            }
            Item::Pvc(uid, mut pvc, labels) => {
                self.fill_pvc(&mut pvc);
                upsert(&mut self.tables.pvcs, &mut self.rev, uid, pvc, labels)
            }
            Item::Event(uid, event) => {
                let labels = self.empty_labels.clone();
                upsert(&mut self.tables.events, &mut self.rev, uid, event, labels)
            }
            Item::Pdb(uid, pdb) => {
                let labels = self.empty_labels.clone();
                upsert(&mut self.tables.pdbs, &mut self.rev, uid, pdb, labels)
            }
            Item::Namespace(uid, ns) => {
                let labels = self.empty_labels.clone();
                upsert(&mut self.tables.namespaces, &mut self.rev, uid, ns, labels)
            }
            Item::Service(uid, service) => {
                let labels = self.empty_labels.clone();
                upsert(
                    &mut self.tables.services,
                    &mut self.rev,
                    uid,
                    service,
                    labels,
                )
            }
            Item::Webhook(uid, webhook) => {
                let labels = self.empty_labels.clone();
                upsert(
                    &mut self.tables.webhooks,
                    &mut self.rev,
                    uid,
                    webhook,
                    labels,
                )
            }
            Item::NetworkPolicy(uid, policy) => {
                let labels = self.empty_labels.clone();
                let table = &mut self.tables.network_policies;
                upsert(table, &mut self.rev, uid, policy, labels)
            }
            Item::Volume(uid, volume) => {
                let labels = self.empty_labels.clone();
                upsert(&mut self.tables.volumes, &mut self.rev, uid, volume, labels)
            }
            Item::TlsCertificate(uid, certificate) => {
                let labels = self.empty_labels.clone();
                let table = &mut self.tables.tls_certificates;
                upsert(table, &mut self.rev, uid, certificate, labels)
            }
            Item::Ingress(uid, ingress) => {
                let labels = self.empty_labels.clone();
                upsert(
                    &mut self.tables.ingresses,
                    &mut self.rev,
                    uid,
                    ingress,
                    labels,
                )
            }
            Item::IngressClass(uid, name) => {
                if self.tables.ingress_classes.get(&uid) == Some(&name) {
                    return false;
                }
                self.tables.ingress_classes.insert(uid, name);
                self.rev += 1;
                true
            }
            Item::StorageClass(uid, name, facts) => {
                let previous = self.storage_classes.insert(uid, (name.clone(), facts));
                if previous == Some((name, facts)) {
                    return false;
                }
                self.refill_pvcs()
            }
        }
    }

    /// Applies a deletion; true when anything changed.
    pub fn delete(&mut self, item: &Item) -> bool {
        let uid = item.uid();
        match item {
            Item::Pod(_, pod, _) => {
                if let Some(owner) = pod.owner.as_ref()
                    && let Some(pods) = self.pods_by_owner.get_mut(owner.uid.as_str())
                {
                    pods.remove(uid);
                    if pods.is_empty() {
                        self.pods_by_owner.remove(owner.uid.as_str());
                    }
                }
                remove(&mut self.tables.pods, &mut self.rev, uid)
            }
            Item::Node(..) => remove(&mut self.tables.nodes, &mut self.rev, uid),
            Item::Workload(..) => {
                self.controllers.remove(uid);
                remove(&mut self.tables.workloads, &mut self.rev, uid)
            }
            Item::Job(..) => {
                self.controllers.remove(uid);
                remove(&mut self.tables.jobs, &mut self.rev, uid)
            }
            Item::Hpa(..) => remove(&mut self.tables.hpas, &mut self.rev, uid),
            Item::Pvc(..) => remove(&mut self.tables.pvcs, &mut self.rev, uid),
            Item::Event(..) => remove(&mut self.tables.events, &mut self.rev, uid),
            Item::Pdb(..) => remove(&mut self.tables.pdbs, &mut self.rev, uid),
            Item::Namespace(..) => remove(&mut self.tables.namespaces, &mut self.rev, uid),
            Item::Service(..) => remove(&mut self.tables.services, &mut self.rev, uid),
            Item::Webhook(..) => remove(&mut self.tables.webhooks, &mut self.rev, uid),
            Item::NetworkPolicy(..) => {
                remove(&mut self.tables.network_policies, &mut self.rev, uid)
            }
            Item::Ingress(..) => remove(&mut self.tables.ingresses, &mut self.rev, uid),
            Item::Volume(..) => remove(&mut self.tables.volumes, &mut self.rev, uid),
            Item::TlsCertificate(..) => {
                remove(&mut self.tables.tls_certificates, &mut self.rev, uid)
            }
            Item::IngressClass(..) => {
                let gone = self.tables.ingress_classes.remove(uid).is_some();
                if gone {
                    self.rev += 1;
                }
                gone
            }
            Item::StorageClass(..) => {
                self.storage_classes.remove(uid);
                self.refill_pvcs()
            }
        }
    }

    /// A watch (re)listed everything of `kind` in `namespace` (all when
    /// `None`): objects not in `items` are gone, the rest are applied. This
    /// is how a dropped watch recovers to an exact picture.
    #[expect(
        clippy::too_many_lines,
        reason = "applies one relist to every index of the store in turn, so they never disagree"
    )]
    pub fn replace(&mut self, kind: &str, namespace: Option<&str>, items: Vec<Item>) -> bool {
        let keep: HashSet<Uid> = items.iter().map(|i| i.uid().clone()).collect();
        let stale = |uid: &Uid, reference: Option<&pb::ObjectRef>| {
            !keep.contains(uid)
                && reference
                    .is_some_and(|r| r.kind == kind && namespace.is_none_or(|ns| r.namespace == ns))
        };
        let gone: Vec<Item> = match kind {
            "Pod" => self
                .tables
                .pods
                .iter()
                .filter(|(uid, e)| stale(uid, e.value.reference()))
                .map(|(uid, e)| Item::Pod(uid.clone(), (*e.value).clone(), e.labels.clone()))
                .collect(),
            "IngressClass" => self
                .tables
                .ingress_classes
                .iter()
                .filter(|(uid, _)| !keep.contains(*uid))
                .map(|(uid, name)| Item::IngressClass(uid.clone(), name.clone()))
                .collect(),
            "PersistentVolume" => self.stale_in(&self.tables.volumes, &stale, |uid, _| {
                Item::Volume(uid, pb::PersistentVolume::default())
            }),
            "Secret" => self.stale_in(&self.tables.tls_certificates, &stale, |uid, _| {
                Item::TlsCertificate(uid, pb::TlsCertificate::default())
            }),
            "Ingress" => self.stale_in(&self.tables.ingresses, &stale, |uid, _| {
                Item::Ingress(uid, pb::Ingress::default())
            }),
            "StorageClass" => self
                .storage_classes
                .iter()
                .filter(|(uid, _)| !keep.contains(*uid))
                .map(|(uid, (name, e))| Item::StorageClass(uid.clone(), name.clone(), *e))
                .collect(),
            "Event" => self
                .tables
                .events
                .iter()
                .filter(|(uid, e)| stale(uid, e.value.reference()))
                .map(|(uid, e)| Item::Event(uid.clone(), (*e.value).clone()))
                .collect(),
            "ReplicaSet" | "Job" => {
                let links: Vec<Uid> = self
                    .controllers
                    .iter()
                    .filter(|(uid, (k, r))| {
                        *k == kind
                            && !keep.contains(*uid)
                            && namespace.is_none_or(|ns| r.namespace == ns)
                    })
                    .map(|(uid, _)| uid.clone())
                    .collect();
                for uid in links {
                    self.controllers.remove(&uid);
                }
                if kind == "Job" {
                    self.stale_in(&self.tables.jobs, &stale, |uid, _| {
                        Item::Job(uid, pb::Job::default(), Labels::default())
                    })
                } else {
                    self.stale_in(&self.tables.workloads, &stale, |uid, _| {
                        Item::Workload(uid, pb::Workload::default(), Labels::default(), true)
                    })
                }
            }
            "Node" => self.stale_in(&self.tables.nodes, &stale, |uid, _| {
                Item::Node(uid, pb::Node::default())
            }),
            "HorizontalPodAutoscaler" => self.stale_in(&self.tables.hpas, &stale, |uid, _| {
                Item::Hpa(
                    uid,
                    pb::HorizontalPodAutoscaler::default(),
                    Labels::default(),
                )
            }),
            "PersistentVolumeClaim" => self.stale_in(&self.tables.pvcs, &stale, |uid, _| {
                Item::Pvc(uid, pb::PersistentVolumeClaim::default(), Labels::default())
            }),
            "PodDisruptionBudget" => self.stale_in(&self.tables.pdbs, &stale, |uid, _| {
                Item::Pdb(uid, pb::PodDisruptionBudget::default())
            }),
            "Namespace" => self.stale_in(&self.tables.namespaces, &stale, |uid, _| {
                Item::Namespace(uid, pb::Namespace::default())
            }),
            "Service" => self.stale_in(&self.tables.services, &stale, |uid, _| {
                Item::Service(uid, pb::Service::default())
            }),
            "NetworkPolicy" => self.stale_in(&self.tables.network_policies, &stale, |uid, _| {
                Item::NetworkPolicy(uid, pb::NetworkPolicy::default())
            }),
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => {
                self.stale_in(&self.tables.webhooks, &stale, |uid, _| {
                    Item::Webhook(uid, pb::AdmissionWebhook::default())
                })
            }
            _ => self.stale_in(&self.tables.workloads, &stale, |uid, _| {
                Item::Workload(uid, pb::Workload::default(), Labels::default(), true)
            }),
        };
        let mut changed = false;
        for item in &gone {
            changed |= self.delete(item);
        }
        for item in items {
            changed |= self.apply(item);
        }
        changed
    }

    fn stale_in<T: Object>(
        &self,
        table: &Table<T>,
        stale: &impl Fn(&Uid, Option<&pb::ObjectRef>) -> bool,
        make: impl Fn(Uid, &T) -> Item,
    ) -> Vec<Item> {
        table
            .iter()
            .filter(|(uid, e)| stale(uid, e.value.reference()))
            .map(|(uid, e)| make(uid.clone(), &e.value))
            .collect()
    }

    fn upsert_pod(&mut self, uid: Uid, mut pod: pb::Pod, labels: Labels) -> bool {
        if let Some(owner) = pod.owner.as_ref() {
            self.pods_by_owner
                .entry(Arc::from(owner.uid.as_str()))
                .or_default()
                .insert(uid.clone());
        }
        self.resolve_workload(&mut pod);
        self.fill_usage(&mut pod);
        upsert(&mut self.tables.pods, &mut self.rev, uid, pod, labels)
    }

    fn resolve_workload(&self, pod: &mut pb::Pod) {
        pod.workload = pod.owner.as_ref().map(|owner| {
            self.controllers
                .get(owner.uid.as_str())
                .map_or_else(|| owner.clone(), |(_, workload)| workload.clone())
        });
    }

    fn fill_usage(&self, pod: &mut pb::Pod) {
        let Some(r) = pod.r#ref.as_ref() else { return };
        let (namespace, name) = (r.namespace.clone(), r.name.clone());
        for container in &mut pod.containers {
            container.usage = self
                .container_usage
                .get(&(namespace.clone(), name.clone(), container.name.clone()))
                .copied();
        }
    }

    fn fill_pvc(&self, pvc: &mut pb::PersistentVolumeClaim) {
        let class = self
            .storage_classes
            .values()
            .find(|(name, _)| *name == pvc.storage_class)
            .map(|(_, facts)| *facts);
        pvc.expandable = class.is_some_and(|c| c.expandable);
        pvc.binds_on_first_consumer = class.is_some_and(|c| c.binds_on_first_consumer);
        let Some(r) = pvc.r#ref.as_ref() else { return };
        match self
            .volume_usage
            .get(&(r.namespace.clone(), r.name.clone()))
        {
            Some((used, capacity)) => {
                pvc.used_bytes = Some(*used);
                let capacity = capacity.unwrap_or(pvc.capacity_bytes);
                #[expect(clippy::cast_precision_loss, reason = "a percentage")]
                let percent = (capacity > 0).then(|| *used as f64 * 100.0 / capacity as f64);
                pvc.usage_percent = percent;
            }
            None => {
                pvc.used_bytes = None;
                pvc.usage_percent = None;
            }
        }
    }

    fn refill_pvcs(&mut self) -> bool {
        let mut changed = false;
        let uids: Vec<Uid> = self.tables.pvcs.keys().cloned().collect();
        for uid in uids {
            let Some(entry) = self.tables.pvcs.get(&uid) else {
                continue;
            };
            let mut pvc = (*entry.value).clone();
            let labels = entry.labels.clone();
            self.fill_pvc(&mut pvc);
            changed |= upsert(&mut self.tables.pvcs, &mut self.rev, uid, pvc, labels);
        }
        changed
    }

    fn upsert_workload(
        &mut self,
        uid: Uid,
        mut workload: pb::Workload,
        labels: Labels,
        visible: bool,
    ) -> bool {
        let previous = self.tables.workloads.get(&uid).map(|e| &*e.value);
        workload.short_since = short_since(previous, &workload, SystemTime::now());
        let kind = workload.r#ref.as_ref().map_or("", |r| r.kind.as_str());
        let link = (kind == "ReplicaSet")
            .then(|| workload.owner.clone())
            .flatten()
            .filter(|o| o.kind == "Deployment");
        let mut changed = self.set_controller(&uid, "ReplicaSet", link);
        if visible {
            changed |= upsert(
                &mut self.tables.workloads,
                &mut self.rev,
                uid,
                workload,
                labels,
            );
        } else {
            changed |= remove(&mut self.tables.workloads, &mut self.rev, &uid);
        }
        changed
    }

    /// Records (or clears) the workload an owner's pods belong to and
    /// re-resolves those pods when it changed.
    fn set_controller(
        &mut self,
        uid: &Uid,
        kind: &'static str,
        link: Option<pb::ObjectRef>,
    ) -> bool {
        let current = self.controllers.get(uid).map(|(_, r)| r);
        if current == link.as_ref() {
            return false;
        }
        match link {
            Some(link) => {
                self.controllers.insert(uid.clone(), (kind, link));
            }
            None => {
                self.controllers.remove(uid);
            }
        }
        let pods: Vec<Uid> = self
            .pods_by_owner
            .get(uid)
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default();
        let mut changed = false;
        for pod_uid in pods {
            let Some(entry) = self.tables.pods.get(&pod_uid) else {
                continue;
            };
            let mut pod = (*entry.value).clone();
            let labels = entry.labels.clone();
            self.resolve_workload(&mut pod);
            changed |= upsert(&mut self.tables.pods, &mut self.rev, pod_uid, pod, labels);
        }
        changed
    }

    /// Takes a new round of Prometheus usage; true when any object changed.
    pub fn apply_usage(&mut self, containers: ContainerUsage, volumes: VolumeUsage) -> bool {
        if containers == self.container_usage && volumes == self.volume_usage {
            return false;
        }
        self.container_usage = containers;
        self.volume_usage = volumes;
        let mut changed = false;
        let uids: Vec<Uid> = self.tables.pods.keys().cloned().collect();
        for uid in uids {
            let Some(entry) = self.tables.pods.get(&uid) else {
                continue;
            };
            let mut pod = (*entry.value).clone();
            let labels = entry.labels.clone();
            self.fill_usage(&mut pod);
            if pod != *entry.value {
                changed |= upsert(&mut self.tables.pods, &mut self.rev, uid, pod, labels);
            }
        }
        changed | self.refill_pvcs()
    }

    /// Forgets events older than `oldest` (seconds since the epoch) and all
    /// but the newest `max`; true when any were dropped.
    pub fn prune_events(&mut self, oldest: i64, max: usize) -> bool {
        let seen = |e: &Entry<pb::Event>| e.value.last_seen.as_ref().map_or(0, |t| t.seconds);
        let before = self.tables.events.len();
        self.tables.events.retain(|_, e| seen(e) >= oldest);
        if self.tables.events.len() > max {
            let mut times: Vec<i64> = self.tables.events.values().map(seen).collect();
            times.sort_unstable();
            let cutoff = times[times.len() - max];
            self.tables.events.retain(|_, e| seen(e) >= cutoff);
        }
        let dropped = before != self.tables.events.len();
        if dropped {
            self.rev += 1;
        }
        dropped
    }
}

#[cfg(test)]
mod tests;

/// Since when a StatefulSet or DaemonSet has been short of its desired
/// pods: kept from `previous` while it stays short, `now` when it just
/// became short, unset when it is not (or is another kind). Neither kind
/// has a condition that says so (a Deployment's Available does).
fn short_since(
    previous: Option<&pb::Workload>,
    workload: &pb::Workload,
    now: SystemTime,
) -> Option<prost_types::Timestamp> {
    let kind = workload.r#ref.as_ref().map_or("", |r| r.kind.as_str());
    let short = match kind {
        "StatefulSet" => workload.ready_replicas < workload.desired_replicas,
        "DaemonSet" => {
            workload.available_replicas < workload.desired_replicas || workload.misscheduled > 0
        }
        _ => false,
    };
    if !short {
        return None;
    }
    previous
        .and_then(|p| p.short_since)
        .or_else(|| Some(prost_types::Timestamp::from(now)))
}
