//! The publisher: after each debounced batch of changes (or a Prometheus
//! round, or a periodic tick for time-based thresholds) it runs detection
//! and publishes a new immutable [`World`] on a `watch` channel.
//!
//! A `watch` channel keeps only the latest world, so a slow subscriber
//! skips intermediate ones instead of queueing them: memory stays bounded
//! and no subscriber can hold up another.

use std::{
    collections::{BTreeSet, HashMap},
    hash::{Hash as _, Hasher as _},
    sync::{Arc, Mutex},
    time::Duration,
};

use nanny_proto::v1 as pb;
use prometheus::{GaugeVec, Histogram, HistogramOpts, IntGaugeVec, Opts, Registry};
use prost::Message as _;
use prost_types::Timestamp;
use tokio::sync::{Notify, watch};

use crate::{
    config::Config,
    detect,
    prom::MetricsRound,
    snapshot::{IssueEntry, World},
    store::{self, Store},
};

/// How often time-based thresholds are re-evaluated without any change.
const TICK: Duration = Duration::from_secs(5);

/// Publisher metrics.
#[derive(Debug, Clone)]
pub struct PublishMetrics {
    build: Histogram,
    issues: IntGaugeVec,
    reclaimable_cpu: GaugeVec,
    reclaimable_memory: IntGaugeVec,
}

impl PublishMetrics {
    /// Registers the publisher's metrics.
    ///
    /// # Errors
    /// When a metric cannot be registered.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let build = Histogram::with_opts(
            HistogramOpts::new(
                "nanny_collector_snapshot_build_seconds",
                "Time to run detection and build a world after a batch of changes.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
        )?;
        let issues = IntGaugeVec::new(
            Opts::new("nanny_collector_issues", "Open issues, by kind."),
            &["kind"],
        )?;
        let reclaimable_cpu = GaugeVec::new(
            Opts::new(
                "nanny_collector_reclaimable_cpu_cores",
                "CPU requested above what workloads used (p95 plus the margin), by namespace: the OverProvisioned issues summed.",
            ),
            &["namespace"],
        )?;
        let reclaimable_memory = IntGaugeVec::new(
            Opts::new(
                "nanny_collector_reclaimable_memory_bytes",
                "Memory requested above what workloads used (peak plus the margin), by namespace: the OverProvisioned issues summed.",
            ),
            &["namespace"],
        )?;
        registry.register(Box::new(build.clone()))?;
        registry.register(Box::new(issues.clone()))?;
        registry.register(Box::new(reclaimable_cpu.clone()))?;
        registry.register(Box::new(reclaimable_memory.clone()))?;
        Ok(Self {
            build,
            issues,
            reclaimable_cpu,
            reclaimable_memory,
        })
    }
}

/// Builds worlds from the store.
#[derive(Debug)]
pub struct Publisher {
    store: Arc<Mutex<Store>>,
    changed: Arc<Notify>,
    metrics_rx: watch::Receiver<Arc<MetricsRound>>,
    cluster_rx: watch::Receiver<pb::ClusterInfo>,
    config: Config,
    tx: watch::Sender<Arc<World>>,
    first_seen: HashMap<String, Timestamp>,
    observability: PublishMetrics,
    last: Option<(u64, u64)>,
    /// The namespaces the reclaimable gauges have series for.
    reclaimable_namespaces: BTreeSet<String>,
}

impl Publisher {
    /// A publisher; worlds go out on `tx`.
    pub fn new(
        store: Arc<Mutex<Store>>,
        changed: Arc<Notify>,
        metrics_rx: watch::Receiver<Arc<MetricsRound>>,
        cluster_rx: watch::Receiver<pb::ClusterInfo>,
        config: Config,
        tx: watch::Sender<Arc<World>>,
        observability: PublishMetrics,
    ) -> Self {
        Self {
            store,
            changed,
            metrics_rx,
            cluster_rx,
            config,
            tx,
            first_seen: HashMap::new(),
            observability,
            last: None,
            reclaimable_namespaces: BTreeSet::new(),
        }
    }

    /// Builds one world from the store as it is now.
    pub fn build(&mut self, now: Timestamp) -> World {
        let started = std::time::Instant::now();
        let metrics = self.metrics_rx.borrow().clone();
        let snapshot_config = &self.config.snapshot;
        let (tables, rev) = {
            let mut store = store::lock(&self.store);
            let ttl = i64::try_from(snapshot_config.event_ttl_secs).unwrap_or(i64::MAX);
            store.prune_events(now.seconds.saturating_sub(ttl), snapshot_config.max_events);
            (store.tables(), store.rev())
        };
        let mut issues = detect::detect(&tables, &metrics, &self.config.thresholds, now.seconds);
        issues.retain(|i| detect::judged(i, &self.config.kubernetes));
        issues.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        issues.dedup_by(|a, b| a.fingerprint == b.fingerprint);

        let hold = i64::try_from(self.config.thresholds.service_secs).unwrap_or(i64::MAX);
        let mut by_kind: HashMap<i32, i64> = HashMap::new();
        let mut first_seen = HashMap::with_capacity(issues.len());
        let entries: Vec<IssueEntry> = issues
            .into_iter()
            .filter_map(|mut issue| {
                let first = self
                    .first_seen
                    .get(&issue.fingerprint)
                    .copied()
                    .unwrap_or(now);
                first_seen.insert(issue.fingerprint.clone(), first);
                // Held kinds are reported once their condition has held.
                let held = detect::HELD.iter().any(|k| *k as i32 == issue.kind);
                if held && now.seconds.saturating_sub(first.seconds) < hold {
                    return None;
                }
                *by_kind.entry(issue.kind).or_default() += 1;
                let content = content_hash(&issue);
                issue.first_seen = Some(first);
                issue.last_seen = Some(now);
                Some(IssueEntry {
                    issue: Arc::new(issue),
                    content,
                })
            })
            .collect();
        // Resolved issues are forgotten: if the condition returns, it is new.
        self.first_seen = first_seen;
        for kind in (1..64).filter_map(|k| pb::IssueKind::try_from(k).ok()) {
            let count = by_kind.get(&(kind as i32)).copied().unwrap_or(0);
            self.observability
                .issues
                .with_label_values(&[kind.as_str_name()])
                .set(count);
        }

        self.publish_reclaimable(&entries);

        let mut cluster = self.cluster_rx.borrow().clone();
        cluster.node_count = u32::try_from(tables.nodes.len()).unwrap_or(u32::MAX);
        let world = World {
            generation: self.tx.borrow().generation + 1,
            rev,
            taken_at: now,
            cluster,
            tables,
            issues: entries,
            metrics,
            extra_queries: Arc::new(self.config.prometheus.queries.keys().cloned().collect()),
        };
        self.observability
            .build
            .observe(started.elapsed().as_secs_f64());
        world
    }

    /// Sets the reclaimable gauges from the world's OverProvisioned issues;
    /// set first, then the namespaces gone removed, so a scrape never sees
    /// the series missing in between.
    fn publish_reclaimable(&mut self, entries: &[IssueEntry]) {
        let reclaimable = nanny_common::snapshot::reclaimable(entries.iter().map(|e| &*e.issue));
        // Set, then remove only the namespaces gone: a scrape never sees
        // the series missing in between.
        for gone in self
            .reclaimable_namespaces
            .iter()
            .filter(|ns| !reclaimable.contains_key(*ns))
        {
            let _ = self
                .observability
                .reclaimable_cpu
                .remove_label_values(&[gone]);
            let _ = self
                .observability
                .reclaimable_memory
                .remove_label_values(&[gone]);
        }
        self.reclaimable_namespaces = reclaimable.keys().cloned().collect();
        for (namespace, (millicores, bytes)) in reclaimable {
            #[expect(clippy::cast_precision_loss, reason = "millicores far below 2^52")]
            let cores = millicores as f64 / 1000.0;
            self.observability
                .reclaimable_cpu
                .with_label_values(&[&namespace])
                .set(cores);
            self.observability
                .reclaimable_memory
                .with_label_values(&[&namespace])
                .set(bytes);
        }
    }

    /// Publishes worlds until every receiver is gone.
    pub async fn run(mut self) {
        let debounce = Duration::from_millis(self.config.snapshot.debounce_ms);
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.changed.notified() => {
                    // Let a burst of watch events land in one world.
                    tokio::time::sleep(debounce).await;
                }
                result = self.metrics_rx.changed() => {
                    if result.is_err() {
                        return;
                    }
                    let (containers, volumes) = self.metrics_rx.borrow_and_update().usage();
                    store::lock(&self.store).apply_usage(containers, volumes);
                }
                _ = ticker.tick() => {}
            }
            let world = self.build(Timestamp::from(std::time::SystemTime::now()));
            // Skip publishing when neither objects, issues nor metrics changed.
            let mut hasher = std::hash::DefaultHasher::new();
            for entry in &world.issues {
                entry.issue.fingerprint.hash(&mut hasher);
                entry.content.hash(&mut hasher);
            }
            Arc::as_ptr(&world.metrics).hash(&mut hasher);
            world.cluster.version.hash(&mut hasher);
            let key = (world.rev, hasher.finish());
            if self.last == Some(key) {
                continue;
            }
            self.last = Some(key);
            if self.tx.send(Arc::new(world)).is_err() {
                return;
            }
        }
    }
}

/// A hash of everything in an issue but its timestamps.
fn content_hash(issue: &pb::Issue) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    pb::Issue {
        first_seen: None,
        last_seen: None,
        ..issue.clone()
    }
    .encode_to_vec()
    .hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Item;

    fn publisher(label_selector: &str) -> Publisher {
        let mut store = Store::default();
        store.apply(Item::Service(
            Arc::from("uid-svc"),
            pb::Service {
                r#ref: Some(pb::ObjectRef {
                    kind: "Service".to_owned(),
                    namespace: "shop".to_owned(),
                    name: "typo".to_owned(),
                    uid: "uid-svc".to_owned(),
                    ..pb::ObjectRef::default()
                }),
                selector: [("app".to_owned(), "apii".to_owned())].into(),
                ..pb::Service::default()
            },
        ));
        let mut config = Config::default();
        config.kubernetes.label_selector = label_selector.to_owned();
        Publisher::new(
            Arc::new(Mutex::new(store)),
            Arc::new(Notify::new()),
            watch::channel(Arc::new(MetricsRound::default())).1,
            watch::channel(pb::ClusterInfo::default()).1,
            config,
            watch::channel(Arc::new(World::default())).0,
            PublishMetrics::new(&Registry::new()).unwrap(),
        )
    }

    fn kinds(world: &World) -> Vec<i32> {
        world.issues.iter().map(|e| e.issue.kind).collect()
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    #[test]
    fn held_kinds_are_published_once_they_have_held_the_service_threshold() {
        let mut p = publisher("");
        let hold = i64::try_from(Config::default().thresholds.service_secs).unwrap();
        assert!(kinds(&p.build(at(1_000))).is_empty());
        assert!(kinds(&p.build(at(1_000 + hold - 1))).is_empty());
        let world = p.build(at(1_000 + hold));
        assert_eq!(
            kinds(&world),
            vec![pb::IssueKind::ServiceSelectsNothing as i32]
        );
        // First seen is when the condition was first seen, not published.
        assert_eq!(
            world.issues[0].issue.first_seen.map(|t| t.seconds),
            Some(1_000)
        );
        // Gone and back: it is held again from the start.
        store::lock(&p.store).delete(&Item::Service(Arc::from("uid-svc"), pb::Service::default()));
        assert!(kinds(&p.build(at(2_000))).is_empty());
    }

    #[test]
    fn a_label_scoped_collector_does_not_judge_selectors() {
        let mut p = publisher("app.kubernetes.io/part-of=shop");
        assert!(kinds(&p.build(at(1_000))).is_empty());
        assert!(kinds(&p.build(at(100_000))).is_empty());
    }
}
