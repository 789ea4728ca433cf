//! Watches: one kube-runtime watcher per kind (and per namespace when the
//! collector is scoped to namespaces), with kube's default backoff.
//!
//! Objects are projected as they arrive, so full objects never accumulate.
//! A (re)list is buffered as projections and swapped into the store at
//! `InitDone`, which is how a dropped watch — an apiserver restart, an
//! expired resourceVersion — ends in an exact picture again.

use std::{
    fmt::Debug,
    sync::{Arc, Mutex},
};

use futures::StreamExt as _;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::{
    admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
    apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet},
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::{CronJob, Job},
    core::v1::{
        Event, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service,
    },
    networking::v1::{Ingress, IngressClass, NetworkPolicy},
    policy::v1::PodDisruptionBudget,
    storage::v1::StorageClass,
};
use kube::{
    Api, Client, Resource,
    runtime::{WatchStreamExt as _, watcher},
};
use prometheus::{IntCounterVec, Opts, Registry};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, mpsc};

use crate::{
    config::KubernetesConfig,
    project::{self, Redaction},
    store::{Item, Labels, Store, Uid, lock},
};

/// Watch metrics.
#[derive(Debug, Clone)]
pub struct WatchMetrics {
    events: IntCounterVec,
    errors: IntCounterVec,
}

impl WatchMetrics {
    /// Registers the watch metrics.
    ///
    /// # Errors
    /// When a metric cannot be registered.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let events = IntCounterVec::new(
            Opts::new(
                "nanny_collector_watch_events_total",
                "Watch events processed, by kind and event type (apply, delete, relist).",
            ),
            &["kind", "type"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "nanny_collector_watch_errors_total",
                "Watch stream errors (each followed by a backoff and a resume or relist), by kind.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        Ok(Self { events, errors })
    }
}

/// Shared by every watcher.
#[derive(Debug, Clone)]
pub struct Context {
    /// Where projections go.
    pub store: Arc<Mutex<Store>>,
    /// Poked after every change.
    pub changed: Arc<Notify>,
    /// Projection rules.
    pub redaction: Arc<Redaction>,
    /// Metrics.
    pub metrics: WatchMetrics,
    /// Each watcher sends its kind once, after its first complete list.
    pub synced: mpsc::UnboundedSender<&'static str>,
}

fn uid<K: Resource>(object: &K) -> Uid {
    Arc::from(object.meta().uid.as_deref().unwrap_or_default())
}

fn labels<K: Resource>(object: &K) -> Labels {
    Arc::new(object.meta().labels.clone().unwrap_or_default())
}

type Projector<K> = fn(&K, &Redaction) -> Option<Item>;

/// Starts every watch; returns how many were started (each reports once on `synced`).
#[expect(
    clippy::too_many_lines,
    reason = "a flat table of watches, one entry per kind"
)]
pub fn spawn_all(client: &Client, config: &KubernetesConfig, context: &Context) -> usize {
    let selector = (!config.label_selector.is_empty()).then(|| config.label_selector.clone());
    let namespaces: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let mut started = 0;
    let mut go = |watch: tokio::task::JoinHandle<()>| {
        drop(watch);
        started += 1;
    };
    // Cluster-scoped kinds.
    go(spawn::<Node>(
        Api::all(client.clone()),
        None,
        None,
        None,
        context,
        "Node",
        |n, _| Some(Item::Node(uid(n), project::node(n))),
    ));
    go(spawn::<StorageClass>(
        Api::all(client.clone()),
        None,
        None,
        None,
        context,
        "StorageClass",
        |c, _| {
            Some(Item::StorageClass(
                uid(c),
                c.metadata.name.clone().unwrap_or_default(),
                project::storage_class(c),
            ))
        },
    ));
    go(spawn::<Namespace>(
        Api::all(client.clone()),
        None,
        None,
        None,
        context,
        "Namespace",
        |n, r| Some(Item::Namespace(uid(n), project::namespace(n, r))),
    ));
    go(spawn::<PersistentVolume>(
        Api::all(client.clone()),
        None,
        None,
        None,
        context,
        "PersistentVolume",
        |v, r| Some(Item::Volume(uid(v), project::volume(v, r))),
    ));
    go(spawn::<IngressClass>(
        Api::all(client.clone()),
        None,
        None,
        None,
        context,
        "IngressClass",
        |c, _| Some(Item::IngressClass(uid(c), project::ingress_class(c))),
    ));
    go(spawn::<ValidatingWebhookConfiguration>(
        Api::all(client.clone()),
        None,
        None,
        None,
        context,
        "ValidatingWebhookConfiguration",
        |c, _| Some(Item::Webhook(uid(c), project::validating_webhooks(c))),
    ));
    go(spawn::<MutatingWebhookConfiguration>(
        Api::all(client.clone()),
        None,
        None,
        None,
        context,
        "MutatingWebhookConfiguration",
        |c, _| Some(Item::Webhook(uid(c), project::mutating_webhooks(c))),
    ));
    for namespace in &namespaces {
        let ns = namespace.as_deref();
        let sel = selector.as_deref();
        go(spawn::<Pod>(
            namespaced(client, ns),
            ns,
            sel,
            None,
            context,
            "Pod",
            |p, r| Some(Item::Pod(uid(p), project::pod(p, r), labels(p))),
        ));
        go(spawn::<Deployment>(
            namespaced(client, ns),
            ns,
            sel,
            None,
            context,
            "Deployment",
            |d, r| {
                Some(Item::Workload(
                    uid(d),
                    project::deployment(d, r),
                    labels(d),
                    true,
                ))
            },
        ));
        go(spawn::<StatefulSet>(
            namespaced(client, ns),
            ns,
            sel,
            None,
            context,
            "StatefulSet",
            |s, r| {
                Some(Item::Workload(
                    uid(s),
                    project::stateful_set(s, r),
                    labels(s),
                    true,
                ))
            },
        ));
        go(spawn::<DaemonSet>(
            namespaced(client, ns),
            ns,
            sel,
            None,
            context,
            "DaemonSet",
            |d, r| {
                Some(Item::Workload(
                    uid(d),
                    project::daemon_set(d, r),
                    labels(d),
                    true,
                ))
            },
        ));
        go(spawn::<ReplicaSet>(
            namespaced(client, ns),
            ns,
            sel,
            None,
            context,
            "ReplicaSet",
            |s, r| {
                let workload = project::replica_set(s, r);
                // A Deployment's ReplicaSets only link its pods to it.
                let visible = workload
                    .owner
                    .as_ref()
                    .is_none_or(|o| o.kind != "Deployment");
                Some(Item::Workload(uid(s), workload, labels(s), visible))
            },
        ));
        go(spawn::<CronJob>(
            namespaced(client, ns),
            ns,
            sel,
            None,
            context,
            "CronJob",
            |c, r| {
                Some(Item::Workload(
                    uid(c),
                    project::cron_job(c, r),
                    labels(c),
                    true,
                ))
            },
        ));
        go(spawn::<Job>(
            namespaced(client, ns),
            ns,
            sel,
            None,
            context,
            "Job",
            |j, _| Some(Item::Job(uid(j), project::job(j), labels(j))),
        ));
        go(spawn::<HorizontalPodAutoscaler>(
            namespaced(client, ns),
            ns,
            None,
            None,
            context,
            "HorizontalPodAutoscaler",
            |h, r| Some(Item::Hpa(uid(h), project::hpa(h, r), labels(h))),
        ));
        go(spawn::<PersistentVolumeClaim>(
            namespaced(client, ns),
            ns,
            None,
            None,
            context,
            "PersistentVolumeClaim",
            |p, _| Some(Item::Pvc(uid(p), project::pvc(p), labels(p))),
        ));
        go(spawn::<PodDisruptionBudget>(
            namespaced(client, ns),
            ns,
            None,
            None,
            context,
            "PodDisruptionBudget",
            |p, _| Some(Item::Pdb(uid(p), project::pdb(p))),
        ));
        go(spawn::<Service>(
            namespaced(client, ns),
            ns,
            None,
            None,
            context,
            "Service",
            |s, _| Some(Item::Service(uid(s), project::service(s))),
        ));
        go(spawn::<NetworkPolicy>(
            namespaced(client, ns),
            ns,
            None,
            None,
            context,
            "NetworkPolicy",
            |n, _| Some(Item::NetworkPolicy(uid(n), project::network_policy(n))),
        ));
        go(spawn::<Ingress>(
            namespaced(client, ns),
            ns,
            None,
            None,
            context,
            "Ingress",
            |i, _| Some(Item::Ingress(uid(i), project::ingress(i))),
        ));
        // Opt-in: TLS Secrets only (the API server filters by type), each
        // reduced to its certificate's validity and names at once.
        if config.tls_secrets {
            go(spawn::<Secret>(
                namespaced(client, ns),
                ns,
                None,
                Some("type=kubernetes.io/tls"),
                context,
                "Secret",
                |s, _| Some(Item::TlsCertificate(uid(s), project::tls_certificate(s))),
            ));
        }
        // Only Warning events matter; the apiserver filters the rest out.
        go(spawn::<Event>(
            namespaced(client, ns),
            ns,
            None,
            Some("type=Warning"),
            context,
            "Event",
            |e, r| project::event(e, r).map(|event| Item::Event(uid(e), event)),
        ));
    }
    started
}

/// The API for `K` in `namespace`, or cluster-wide.
fn namespaced<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn spawn<K>(
    api: Api<K>,
    namespace: Option<&str>,
    labels: Option<&str>,
    fields: Option<&str>,
    context: &Context,
    kind: &'static str,
    projector: Projector<K>,
) -> tokio::task::JoinHandle<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let mut config = watcher::Config::default();
    if let Some(labels) = labels {
        config = config.labels(labels);
    }
    if let Some(fields) = fields {
        config = config.fields(fields);
    }
    let namespace = namespace.map(str::to_owned);
    let context = context.clone();
    tokio::spawn(async move {
        let mut stream = watcher(api, config).default_backoff().boxed();
        let mut buffer: Vec<Item> = Vec::new();
        let mut synced = false;
        let count = |t: &str| context.metrics.events.with_label_values(&[kind, t]).inc();
        while let Some(event) = stream.next().await {
            let changed = match event {
                Ok(watcher::Event::Init) => {
                    buffer.clear();
                    false
                }
                Ok(watcher::Event::InitApply(object)) => {
                    buffer.extend(projector(&object, &context.redaction));
                    false
                }
                Ok(watcher::Event::InitDone) => {
                    count("relist");
                    let items = std::mem::take(&mut buffer);
                    let changed = lock(&context.store).replace(kind, namespace.as_deref(), items);
                    if !synced {
                        synced = true;
                        tracing::info!(
                            kind,
                            namespace = namespace.as_deref().unwrap_or("*"),
                            "Watch synced."
                        );
                        // The receiver only goes away at shutdown.
                        let _ = context.synced.send(kind);
                    }
                    changed
                }
                Ok(watcher::Event::Apply(object)) => {
                    count("apply");
                    projector(&object, &context.redaction)
                        .is_some_and(|item| lock(&context.store).apply(item))
                }
                Ok(watcher::Event::Delete(object)) => {
                    count("delete");
                    projector(&object, &context.redaction)
                        .is_some_and(|item| lock(&context.store).delete(&item))
                }
                Err(error) => {
                    context.metrics.errors.with_label_values(&[kind]).inc();
                    tracing::warn!(%error, kind, "Watch failed; retrying with backoff.");
                    false
                }
            };
            if changed {
                context.changed.notify_one();
            }
        }
    })
}
