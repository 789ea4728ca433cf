//! Prometheus: the built-in and named queries, run every interval.
//!
//! Prometheus is optional and fallible. When it is down, slow or answers
//! something that is not an instant vector, the round keeps the last good
//! series of that query, `stale_since` is set, the degraded gauge goes to 1,
//! and snapshots keep flowing.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use futures::future::join_all;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use prometheus_http_query::{Client, response::Data};
use tokio::sync::watch;

use crate::{
    config::{PrometheusConfig, TREND_ONLY_QUERIES, TREND_QUERIES, Thresholds, USAGE_QUERIES},
    store::{ContainerUsage, VolumeUsage},
    trend::{self, Fit},
};

/// Most series kept per query, so a careless query cannot blow up snapshots.
pub const MAX_SERIES_PER_QUERY: usize = 20_000;

/// Most series a trend round names in its log lines (gaps, resets); the
/// rest are counted.
const MAX_LOGGED_SERIES: usize = 20;

/// Most series one trend query fetches: the fastest-growing of those that
/// pass the prefilter.
pub const MAX_TREND_SERIES: usize = 2000;

/// The prefilter's R² bar over the last `history`: a rough cut (the fit in
/// the collector applies the threshold); noise reads far below it.
const PREFILTER_R_SQUARED: f64 = 0.5;

/// `query` as a range query of only the series worth fitting: those that
/// grew steadily over the last `history_secs` at the range's end (a slope
/// above zero, and R² from the slope and the spread above
/// [`PREFILTER_R_SQUARED`]), at most [`MAX_TREND_SERIES`]. Prometheus judges
/// this once (`@ end()`), so the collector fetches and fits ranges only for
/// what trends, not for every container of the cluster. Judged over the
/// last `history_secs` rather than the whole window, a series that reset
/// earlier still passes and is fitted since its reset.
pub fn trending(query: &str, history_secs: u64, step_secs: u64) -> String {
    let recent = format!("({query})[{history_secs}s:{step_secs}s] @ end()");
    #[expect(clippy::cast_precision_loss, reason = "seconds, far below 2^52")]
    let time_variance = (history_secs as f64).powi(2) / 12.0;
    format!(
        "({query}) and topk({MAX_TREND_SERIES}, (deriv({recent}) > 0) and (deriv({recent}) ^ 2 * {time_variance} / stddev_over_time({recent}) ^ 2 > {PREFILTER_R_SQUARED}))"
    )
}

/// One series of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its labels, `__name__` included when Prometheus sends it.
    pub labels: BTreeMap<String, String>,
    /// Its value; never NaN or infinite.
    pub value: f64,
}

/// The outcome of the latest query round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsRound {
    /// Series by query name (built-in and named).
    pub series: BTreeMap<String, Vec<Series>>,
    /// When the values were taken (seconds since the epoch).
    pub at: i64,
    /// Set while any query fails; the time of the first failed round.
    pub stale_since: Option<i64>,
    /// Trends and usage, from the slower range and window queries: renewed
    /// on their own intervals, by their own task ([`Poller::run`]).
    pub history: History,
}

/// What the trend and usage queries last found, and when.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Trends by trend query name ([`TREND_QUERIES`]): a line fitted to
    /// each series' range, refreshed every `trend_interval_secs`.
    pub trends: Arc<BTreeMap<String, Vec<TrendSeries>>>,
    /// When every trend query last answered (seconds since the epoch); 0:
    /// never. Trends older than three intervals are dropped.
    pub trends_at: i64,
    /// When the trend queries were last run, answered or not.
    pub trends_tried_at: i64,
    /// Each container's usage over the usage window ([`USAGE_QUERIES`]),
    /// refreshed every `usage_interval_secs`; never carried in snapshots.
    pub usage: Arc<UsageWindows>,
    /// When every usage query last answered; 0: never.
    pub usage_at: i64,
    /// When the usage queries were last run, answered or not.
    pub usage_tried_at: i64,
    /// Each HPA's share of every day spent at its maximum, fitted across
    /// the days (`hpa_share_query`, by `namespace` and
    /// `horizontalpodautoscaler`), renewed with the usage.
    pub hpa_shares: Arc<Vec<TrendSeries>>,
    /// When the share query last answered; 0: never.
    pub hpa_shares_at: i64,
}

/// One container's usage over the usage window; `None` where Prometheus
/// had no value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UsageWindow {
    /// The 95th percentile of its CPU, cores.
    pub cpu_p95: Option<f64>,
    /// Its busiest 5 minutes, cores.
    pub cpu_max: Option<f64>,
    /// Its peak working set, bytes.
    pub memory_peak: Option<f64>,
    /// Seconds of the window with a working set.
    pub history_secs: Option<f64>,
}

/// Usage windows by namespace, pod and container: compact (one entry per
/// container, not one labelled series per query) and looked up by `&str`.
pub type UsageWindows = HashMap<String, HashMap<String, Vec<(String, UsageWindow)>>>;

/// The usage window of `container` of pod `namespace/pod`.
pub fn usage_of<'u>(
    usage: &'u UsageWindows,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Option<&'u UsageWindow> {
    usage
        .get(namespace)?
        .get(pod)?
        .iter()
        .find(|(c, _)| c == container)
        .map(|(_, u)| u)
}

/// One series' trend.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendSeries {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The line through it since its last reset.
    pub fit: Fit,
}

impl TrendSeries {
    /// How the series is named in evidence and logs:
    /// `query{label="value",…}`.
    pub fn name(&self, query: &str) -> String {
        series_name(query, &self.labels)
    }
}

fn series_name(query: &str, labels: &BTreeMap<String, String>) -> String {
    let labels: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{query}{{{}}}", labels.join(","))
}

impl MetricsRound {
    /// Container and volume usage for the store.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "usage values are far below i64::MAX; `as` saturates and NaN is filtered out earlier"
    )]
    pub fn usage(&self) -> (ContainerUsage, VolumeUsage) {
        let mut containers = ContainerUsage::new();
        let key = |s: &Series| {
            Some((
                s.labels.get("namespace")?.clone(),
                s.labels.get("pod")?.clone(),
                s.labels.get("container")?.clone(),
            ))
        };
        for s in self.series.get("container_cpu_cores").into_iter().flatten() {
            if let Some(k) = key(s) {
                containers.entry(k).or_default().cpu_millicores =
                    Some((s.value * 1000.0).round() as i64);
            }
        }
        for s in self
            .series
            .get("container_memory_bytes")
            .into_iter()
            .flatten()
        {
            if let Some(k) = key(s) {
                containers.entry(k).or_default().memory_bytes = Some(s.value.round() as i64);
            }
        }
        let claim = |s: &Series| {
            Some((
                s.labels.get("namespace")?.clone(),
                s.labels.get("persistentvolumeclaim")?.clone(),
            ))
        };
        let mut volumes = VolumeUsage::new();
        for s in self.series.get("pvc_used_bytes").into_iter().flatten() {
            if let Some(k) = claim(s) {
                volumes.insert(k, (s.value.round() as i64, None));
            }
        }
        for s in self.series.get("pvc_capacity_bytes").into_iter().flatten() {
            if let Some(entry) = claim(s).and_then(|k| volumes.get_mut(&k)) {
                entry.1 = Some(s.value.round() as i64).filter(|c| *c > 0);
            }
        }
        (containers, volumes)
    }
}

/// The collector's Prometheus metrics about Prometheus.
#[derive(Debug, Clone)]
pub struct QueryMetrics {
    latency: HistogramVec,
    errors: IntCounterVec,
    degraded: IntGauge,
}

impl QueryMetrics {
    /// Registers the query metrics.
    ///
    /// # Errors
    /// When a metric cannot be registered.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "nanny_collector_prometheus_query_duration_seconds",
                "Prometheus query latency, by query name.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["query"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "nanny_collector_prometheus_query_errors_total",
                "Failed Prometheus queries, by query name and reason (unreachable, timeout, invalid).",
            ),
            &["query", "reason"],
        )?;
        let degraded = IntGauge::new(
            "nanny_collector_metrics_degraded",
            "1 while Prometheus is unconfigured, unreachable or answering garbage; snapshots then carry metrics_stale_since.",
        )?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(degraded.clone()))?;
        Ok(Self {
            latency,
            errors,
            degraded,
        })
    }
}

/// Runs the queries every interval.
pub struct Poller {
    client: Client,
    queries: Vec<(String, String)>,
    /// The built-in queries run as range queries for trends.
    trend_queries: Vec<(String, String)>,
    timeout: Duration,
    /// For range and usage queries, which read hours or days.
    history_timeout: Duration,
    interval: Duration,
    trend_interval: i64,
    trend_window: i64,
    trend_step: i64,
    /// The usage queries, their window filled in.
    usage_queries: Vec<(String, String)>,
    usage_interval: i64,
    /// The HPA share query, and the days it covers; `None`: not run.
    hpa_shares: Option<(String, i64)>,
    metrics: QueryMetrics,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("url", &self.client.base_url().as_str())
            .field("queries", &self.queries.len())
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

enum Failure {
    Unreachable(String),
    Timeout(Duration),
    Invalid(String),
}

impl Failure {
    /// The error counter's reason, and what happened.
    fn describe(self) -> (&'static str, String) {
        match self {
            Self::Unreachable(d) => ("unreachable", d),
            Self::Timeout(timeout) => ("timeout", format!("no answer in {timeout:?}")),
            Self::Invalid(d) => ("invalid", d),
        }
    }
}

impl Poller {
    /// A poller for `config`; `None` when no URL is configured.
    ///
    /// # Errors
    /// When the URL cannot be used.
    pub fn new(
        config: &PrometheusConfig,
        thresholds: &Thresholds,
        metrics: QueryMetrics,
    ) -> Result<Option<Self>, String> {
        if config.url.is_empty() {
            metrics.degraded.set(1);
            return Ok(None);
        }
        let client = Client::try_from(config.url.as_str()).map_err(|e| e.to_string())?;
        Ok(Some(Self {
            client,
            queries: config
                .builtin
                .iter()
                .filter(|(n, _)| !TREND_ONLY_QUERIES.contains(&n.as_str()))
                .chain(&config.queries)
                .map(|(n, q)| (n.clone(), q.clone()))
                .collect(),
            trend_queries: TREND_QUERIES
                .iter()
                .filter_map(|name| {
                    let history = match *name {
                        "pvc_used_bytes" => thresholds.pvc_fill_min_history_secs,
                        "node_memory_bytes" | "node_fs_used_bytes" => {
                            thresholds.node_exhaustion_min_history_secs
                        }
                        _ => thresholds.oom_min_history_secs,
                    };
                    let query =
                        trending(config.builtin.get(*name)?, history, config.trend_step_secs);
                    Some(((*name).to_owned(), query))
                })
                .collect(),
            timeout: Duration::from_secs(config.timeout_secs),
            history_timeout: Duration::from_secs(config.history_timeout_secs),
            interval: Duration::from_secs(config.interval_secs),
            trend_interval: i64::try_from(config.trend_interval_secs).unwrap_or(i64::MAX),
            trend_window: i64::try_from(config.trend_window_secs).unwrap_or(i64::MAX),
            trend_step: i64::try_from(config.trend_step_secs).unwrap_or(i64::MAX),
            usage_queries: USAGE_QUERIES
                .iter()
                .map(|(name, query)| {
                    (
                        (*name).to_owned(),
                        query.replace("{window}", &config.usage_window_secs.to_string()),
                    )
                })
                .collect(),
            usage_interval: i64::try_from(config.usage_interval_secs).unwrap_or(i64::MAX),
            hpa_shares: (!config.hpa_share_query.trim().is_empty()).then(|| {
                (
                    config.hpa_share_query.clone(),
                    i64::try_from(config.hpa_share_days).unwrap_or(i64::MAX),
                )
            }),
            metrics,
        }))
    }

    /// Awaits `request` within `timeout`, timed under `label`.
    async fn timed(
        &self,
        label: &str,
        timeout: Duration,
        request: impl Future<
            Output = Result<
                prometheus_http_query::response::PromqlResult,
                prometheus_http_query::Error,
            >,
        >,
    ) -> Result<Data, Failure> {
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(timeout, request).await;
        self.metrics
            .latency
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
        match result {
            Err(_) => Err(Failure::Timeout(timeout)),
            Ok(Err(prometheus_http_query::Error::Prometheus(e))) => {
                Err(Failure::Invalid(e.to_string()))
            }
            Ok(Err(e)) => Err(Failure::Unreachable(e.to_string())),
            Ok(Ok(result)) => Ok(result.into_inner().0),
        }
    }

    async fn query(
        &self,
        name: &str,
        query: &str,
        timeout: Duration,
    ) -> Result<Vec<Series>, Failure> {
        let data = self
            .timed(name, timeout, self.client.query(query).get())
            .await?;
        let vector = match data {
            Data::Vector(vector) => vector,
            Data::Scalar(sample) => {
                return Ok(Some(sample.value())
                    .filter(|v| v.is_finite())
                    .map(|value| Series {
                        labels: BTreeMap::new(),
                        value,
                    })
                    .into_iter()
                    .collect());
            }
            Data::Matrix(_) => {
                return Err(Failure::Invalid(
                    "a range vector, where an instant vector was expected".to_owned(),
                ));
            }
        };
        Ok(vector
            .into_iter()
            .filter(|v| v.sample().value().is_finite())
            .take(MAX_SERIES_PER_QUERY)
            .map(|v| {
                let (labels, sample) = v.into_inner();
                Series {
                    labels: labels.into_iter().collect(),
                    value: sample.value(),
                }
            })
            .collect())
    }

    /// One range query from `start` to `end`, `step` seconds apart, timed
    /// under `label`: every series' samples, sorted by time.
    async fn query_range(
        &self,
        label: &str,
        query: &str,
        (start, end, step): (i64, i64, i64),
    ) -> Result<Vec<(BTreeMap<String, String>, Vec<(f64, f64)>)>, Failure> {
        #[expect(
            clippy::cast_precision_loss,
            reason = "a step of seconds, far below 2^52"
        )]
        let request = self
            .client
            .query_range(query, start, end, step as f64)
            .get();
        let data = self.timed(label, self.history_timeout, request).await?;
        let Data::Matrix(matrix) = data else {
            return Err(Failure::Invalid(
                "not a range vector, where a range query's matrix was expected".to_owned(),
            ));
        };
        Ok(matrix
            .into_iter()
            .take(MAX_SERIES_PER_QUERY)
            .map(|range| {
                let (labels, samples) = range.into_inner();
                let mut samples: Vec<(f64, f64)> = samples
                    .into_iter()
                    .map(|s| (s.timestamp(), s.value()))
                    .collect();
                samples.sort_by(|a, b| a.0.total_cmp(&b.0));
                (labels.into_iter().collect(), samples)
            })
            .collect())
    }

    /// Fits a line to every series of every trend query. A query that
    /// fails keeps its previous trends while they are younger than three
    /// trend intervals; older, they are dropped (no prediction from stale
    /// data).
    async fn trends(
        &self,
        previous: &History,
        now: i64,
    ) -> (Arc<BTreeMap<String, Vec<TrendSeries>>>, bool) {
        #[expect(clippy::cast_precision_loss, reason = "a step of seconds")]
        let step = self.trend_step as f64;
        let mut trends = BTreeMap::new();
        let mut noted = Vec::new();
        let mut answered = true;
        // One after the other, each fitted before the next is read.
        for (name, query) in &self.trend_queries {
            let range = (now - self.trend_window, now, self.trend_step);
            match self
                .query_range(&format!("trend:{name}"), query, range)
                .await
            {
                Ok(ranges) => {
                    let mut fitted = Vec::with_capacity(ranges.len());
                    for (labels, samples) in ranges {
                        match trend::fit(&samples, step, 0.0) {
                            Ok(fit) => {
                                if fit.resets > 0 || trend::has_gap(&fit, step) {
                                    noted.push(format!(
                                        "{} ({} reset(s), longest gap {:.0}s; fitted {} samples since the last reset)",
                                        series_name(name, &labels),
                                        fit.resets,
                                        fit.longest_gap_secs,
                                        fit.samples
                                    ));
                                }
                                fitted.push(TrendSeries { labels, fit });
                            }
                            Err(why @ trend::NoTrend::TooSparse { .. }) => {
                                noted.push(format!(
                                    "{} (no trend: {why})",
                                    series_name(name, &labels)
                                ));
                            }
                            // Too new to judge: not worth a line.
                            Err(_) => {}
                        }
                    }
                    trends.insert(name.clone(), fitted);
                }
                Err(failure) => {
                    answered = false;
                    self.failed(
                        &format!("trend:{name}"),
                        failure,
                        "Prometheus range query for trends failed; keeping its last trends while they are fresh.",
                    );
                    if now - previous.trends_at < 3 * self.trend_interval
                        && let Some(old) = previous.trends.get(name)
                    {
                        trends.insert(name.clone(), old.clone());
                    }
                }
            }
        }
        for line in noted.iter().take(MAX_LOGGED_SERIES) {
            tracing::info!(series = %line, "Trend series with resets or gaps: fitted since its last reset, across its gaps, or not at all when too sparse.");
        }
        if noted.len() > MAX_LOGGED_SERIES {
            tracing::info!(
                more = noted.len() - MAX_LOGGED_SERIES,
                "More trend series with resets or gaps (not named)."
            );
        }
        (Arc::new(trends), answered)
    }

    /// Counts and logs a failed query.
    fn failed(&self, label: &str, failure: Failure, what: &str) {
        let (reason, detail) = failure.describe();
        self.metrics
            .errors
            .with_label_values(&[label, reason])
            .inc();
        tracing::warn!(query = %label, reason, detail = %detail, "{what}");
    }

    /// Runs the HPA share query: each HPA's share of every day at its
    /// maximum, fitted across the days (every day counts; a quiet one is no
    /// reset). When it fails, the previous shares are kept while they are
    /// younger than three usage intervals, and dropped after.
    async fn hpa_shares(&self, previous: &History, now: i64) -> (Arc<Vec<TrendSeries>>, bool) {
        const DAY: i64 = 86_400;
        let Some((query, days)) = &self.hpa_shares else {
            return (Arc::default(), true);
        };
        let label = "trend:hpa_at_max_share";
        let range = (now - (days - 1) * DAY, now, DAY);
        match self.query_range(label, query, range).await {
            #[expect(clippy::cast_precision_loss, reason = "a day of seconds")]
            Ok(ranges) => {
                let shares = ranges
                    .into_iter()
                    .filter_map(|(labels, samples)| {
                        match trend::fit_all(&samples, DAY as f64, 0.0) {
                            Ok(fit) => Some(TrendSeries { labels, fit }),
                            Err(why @ trend::NoTrend::TooSparse { .. }) => {
                                tracing::info!(series = %series_name("hpa_at_max_share", &labels), %why, "HPA share series too sparse to fit: no trend.");
                                None
                            }
                            // Fewer than 8 days: too new to judge.
                            Err(_) => None,
                        }
                    })
                    .collect();
                (Arc::new(shares), true)
            }
            Err(failure) => {
                self.failed(
                    label,
                    failure,
                    "Prometheus range query for HPA shares failed; keeping the last shares while they are fresh.",
                );
                let kept = if now - previous.hpa_shares_at < 3 * self.usage_interval {
                    previous.hpa_shares.clone()
                } else {
                    Arc::default()
                };
                (kept, false)
            }
        }
    }

    /// Runs the usage queries. When one fails, the previous usage is kept
    /// while it is younger than three usage intervals, and dropped after.
    async fn usage(&self, previous: &History, now: i64) -> (Arc<UsageWindows>, bool) {
        // One after the other, each folded into the compact windows before
        // the next is read: a usage round never holds more than one
        // query's series (one per container of the cluster) at a time.
        let mut usage = UsageWindows::new();
        for (name, query) in &self.usage_queries {
            let label = format!("usage:{name}");
            let series = match self.query(&label, query, self.history_timeout).await {
                Ok(series) => series,
                Err(failure) => {
                    self.failed(
                        &label,
                        failure,
                        "Prometheus usage query failed; keeping the last usage while it is fresh.",
                    );
                    let kept = if now - previous.usage_at < 3 * self.usage_interval {
                        previous.usage.clone()
                    } else {
                        Arc::default()
                    };
                    return (kept, false);
                }
            };
            for s in series.into_iter().filter(|s| s.value >= 0.0) {
                let (Some(ns), Some(pod), Some(container)) = (
                    s.labels.get("namespace"),
                    s.labels.get("pod"),
                    s.labels.get("container"),
                ) else {
                    continue;
                };
                let containers = usage
                    .entry(ns.clone())
                    .or_default()
                    .entry(pod.clone())
                    .or_default();
                let at = match containers.iter().position(|(c, _)| c == container) {
                    Some(at) => at,
                    None => {
                        containers.push((container.clone(), UsageWindow::default()));
                        containers.len() - 1
                    }
                };
                let window = &mut containers[at].1;
                match name.as_str() {
                    "container_cpu_p95" => window.cpu_p95 = Some(s.value),
                    "container_cpu_max" => window.cpu_max = Some(s.value),
                    "container_memory_peak" => window.memory_peak = Some(s.value),
                    _ => window.history_secs = Some(s.value),
                }
            }
        }
        (Arc::new(usage), true)
    }

    /// Runs every instant query once; failed queries keep `previous`
    /// values. Trends and usage are carried over as they were ([`Self::history`]
    /// renews them).
    pub async fn round(&self, previous: &MetricsRound, now: i64) -> MetricsRound {
        let results = join_all(self.queries.iter().map(|(name, query)| async move {
            (name, self.query(name, query, self.timeout).await)
        }))
        .await;
        let mut round = MetricsRound {
            series: BTreeMap::new(),
            at: now,
            stale_since: None,
            history: previous.history.clone(),
        };
        for (name, result) in results {
            match result {
                Ok(series) => {
                    round.series.insert(name.clone(), series);
                }
                Err(failure) => {
                    self.failed(
                        name,
                        failure,
                        "Prometheus query failed; keeping its last good values.",
                    );
                    round.stale_since = Some(previous.stale_since.unwrap_or(now));
                    if let Some(old) = previous.series.get(name) {
                        round.series.insert(name.clone(), old.clone());
                    }
                }
            }
        }
        if round.stale_since.is_some() {
            // Values are as old as the last good round.
            round.at = previous.at;
        }
        self.metrics
            .degraded
            .set(i64::from(round.stale_since.is_some()));
        round
    }

    /// `history` with its trends refitted and its usage read again where
    /// their intervals have passed; `None` when neither is due. A failed
    /// trend or usage query keeps its last results for three intervals
    /// after they were last answered, then drops them; it is counted and
    /// logged, and does not make the instant values stale.
    pub async fn history(&self, history: &History, now: i64) -> Option<History> {
        let trends_due = now - history.trends_tried_at >= self.trend_interval;
        let usage_due = now - history.usage_tried_at >= self.usage_interval;
        if !trends_due && !usage_due {
            return None;
        }
        let mut next = history.clone();
        if trends_due {
            let (trends, answered) = self.trends(history, now).await;
            next.trends = trends;
            next.trends_tried_at = now;
            if answered {
                next.trends_at = now;
            }
        }
        if usage_due {
            let (usage, answered) = self.usage(history, now).await;
            next.usage = usage;
            next.usage_tried_at = now;
            if answered {
                next.usage_at = now;
            }
            let (shares, answered) = self.hpa_shares(history, now).await;
            next.hpa_shares = shares;
            if answered {
                next.hpa_shares_at = now;
            }
        }
        Some(next)
    }

    /// Polls until the receiver side is gone: the instant queries every
    /// interval, and in a task of their own the slower trend and usage
    /// queries, each publishing only its own part of the round. A slow
    /// history round (up to `history_timeout_secs` a query) never holds an
    /// instant round back, and an instant round never undoes a history
    /// published while it ran.
    pub async fn run(self, tx: watch::Sender<Arc<MetricsRound>>) {
        let poller = Arc::new(self);
        let tx = Arc::new(tx);
        // Subscribed before the first instant round can be sent.
        let first = tx.subscribe();
        let history = tokio::spawn({
            let (poller, tx) = (poller.clone(), tx.clone());
            async move { poller.run_history(&tx, first).await }
        });
        poller.run_instant(&tx).await;
        history.abort();
    }

    async fn run_instant(&self, tx: &watch::Sender<Arc<MetricsRound>>) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let previous = tx.borrow().clone();
            let round = self.round(&previous, crate::now_secs()).await;
            tx.send_if_modified(|current| {
                let next = MetricsRound {
                    history: current.history.clone(),
                    ..round
                };
                let changed = **current != next;
                if changed {
                    *current = Arc::new(next);
                }
                changed
            });
            if tx.is_closed() {
                return;
            }
        }
    }

    /// Renews trends and usage when due, starting once the first instant
    /// round is out, answered or not (the two never load Prometheus at
    /// start together).
    async fn run_history(
        &self,
        tx: &watch::Sender<Arc<MetricsRound>>,
        mut first: watch::Receiver<Arc<MetricsRound>>,
    ) {
        if first.changed().await.is_err() {
            return;
        }
        drop(first);
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let history = tx.borrow().history.clone();
            if let Some(next) = self.history(&history, crate::now_secs()).await {
                tx.send_modify(|current| Arc::make_mut(current).history = next);
            }
            if tx.is_closed() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BUILTIN_QUERIES;

    #[test]
    fn a_trend_only_query_runs_as_a_range_query_and_never_in_the_instant_rounds() {
        let config = PrometheusConfig {
            url: "http://prometheus.monitoring:9090".to_owned(),
            ..PrometheusConfig::default()
        };
        let metrics = QueryMetrics::new(&Registry::new()).unwrap();
        let poller = Poller::new(&config, &Thresholds::default(), metrics)
            .unwrap()
            .unwrap();
        let names = |queries: &[(String, String)]| -> Vec<String> {
            queries.iter().map(|(n, _)| n.clone()).collect()
        };
        let instant = names(&poller.queries);
        for trend_only in TREND_ONLY_QUERIES {
            assert!(!instant.contains(&(*trend_only).to_owned()), "{instant:?}");
        }
        assert_eq!(
            instant.len(),
            BUILTIN_QUERIES.len() - TREND_ONLY_QUERIES.len()
        );
        assert_eq!(names(&poller.trend_queries), TREND_QUERIES);
    }
}
