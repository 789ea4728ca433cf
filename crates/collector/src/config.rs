//! Collector configuration.

use std::collections::BTreeMap;

use nanny_common::{
    Error,
    config::{ServerConfig, ServiceConfig, TelemetryConfig, validate_url},
};
use serde::{Deserialize, Serialize};

/// Everything the collector reads at start-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listen addresses (defaults: gRPC 50051, HTTP 9091).
    pub server: ServerConfig,
    /// Logging and tracing.
    pub telemetry: TelemetryConfig,
    /// Mutual TLS for the gRPC server and its clients.
    pub tls: nanny_common::tls::TlsConfig,
    /// What to watch.
    pub kubernetes: KubernetesConfig,
    /// Where usage and throttling come from.
    pub prometheus: PrometheusConfig,
    /// When a condition becomes an issue.
    pub thresholds: Thresholds,
    /// Snapshot encoding, streaming and redaction.
    pub snapshot: SnapshotConfig,
}

/// Section `kubernetes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Kubeconfig file; empty: in-cluster config, then `$KUBECONFIG`, then `~/.kube/config`.
    pub kubeconfig: String,
    /// Namespaces to watch; empty: all. Nodes, StorageClasses and Namespaces are cluster-wide.
    pub namespaces: Vec<String>,
    /// Label selector for Pods, workloads and Jobs (e.g. `app.kubernetes.io/part-of=shop`).
    pub label_selector: String,
    /// Read TLS Secrets (type `kubernetes.io/tls`) for their certificates'
    /// expiry. Off by default: it needs `list`/`watch` on Secrets, which the
    /// chart grants only with it. Only the certificate's validity and names
    /// are kept; the Secret itself, its key included, is dropped at once.
    #[serde(default)]
    pub tls_secrets: bool,
}

/// Section `prometheus`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://prometheus.monitoring:9090`; empty: no metrics.
    pub url: String,
    /// Seconds between query rounds.
    pub interval_secs: u64,
    /// Per-query timeout in seconds; a slower Prometheus counts as down.
    pub timeout_secs: u64,
    /// Timeout of the trend (range) and usage (days) queries, which read
    /// far more samples.
    pub history_timeout_secs: u64,
    /// The built-in queries, by name. Override one to match your exporters;
    /// each must return the labels its consumer needs (see [`BUILTIN_QUERIES`]).
    pub builtin: BTreeMap<String, String>,
    /// Extra named queries; every series they return is carried in the
    /// snapshot's `metrics` as is.
    #[serde(default)]
    pub queries: BTreeMap<String, String>,
    /// Seconds between trend rounds: the [`TREND_QUERIES`] run as range
    /// queries (one request each, whatever the number of series) and a line
    /// is fitted to each series, for the predicted issue kinds.
    pub trend_interval_secs: u64,
    /// The range a trend is fitted over, seconds back from now.
    pub trend_window_secs: u64,
    /// Seconds between the range's samples.
    pub trend_step_secs: u64,
    /// Seconds between usage rounds: the [`USAGE_QUERIES`], each one
    /// request over `usage_window_secs`, for right-sizing and idle
    /// workloads.
    pub usage_interval_secs: u64,
    /// The window usage is judged over (p95 CPU, peak memory), seconds.
    pub usage_window_secs: u64,
    /// The share of a day an HPA spent at its maximum (0 to 1), for the day
    /// before each evaluation, by `namespace` and `horizontalpodautoscaler`
    /// (kube-state-metrics' labels): run each usage round as one range
    /// query a day a step over `hpa_share_days`, for `HPAAtMaxRising`.
    pub hpa_share_query: String,
    /// How many days of shares a rising share is judged on (8 to 90).
    pub hpa_share_days: u64,
}

/// The built-in [`PrometheusConfig::hpa_share_query`]: kube-state-metrics'
/// current replicas against today's maximum (`@ end()`: once the maximum is
/// raised, the days before no longer count as at it), every 5 minutes over
/// the day.
pub const HPA_SHARE_QUERY: &str = "avg_over_time((max by (namespace, horizontalpodautoscaler) (kube_horizontalpodautoscaler_status_current_replicas) >= bool max by (namespace, horizontalpodautoscaler) (kube_horizontalpodautoscaler_spec_max_replicas @ end()))[1d:5m])";

/// Usage over a window, per container: `{window}` is replaced by
/// `usage_window_secs`. A subquery samples every 5 minutes.
pub const USAGE_QUERIES: &[(&str, &str)] = &[
    // The 95th percentile of a container's CPU (cores, 5-minute rate).
    (
        "container_cpu_p95",
        "quantile_over_time(0.95, (sum by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{container!=\"\"}[5m])))[{window}s:5m])",
    ),
    // Its busiest 5 minutes (cores): idle workloads never leave zero.
    (
        "container_cpu_max",
        "max_over_time((sum by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{container!=\"\"}[5m])))[{window}s:5m])",
    ),
    // Its peak working set (bytes), over every sample (a short spike
    // between two 5-minute steps counts).
    (
        "container_memory_peak",
        "max by (namespace, pod, container) (max_over_time(container_memory_working_set_bytes{container!=\"\"}[{window}s]))",
    ),
    // How much history the window holds for it: the seconds its 5-minute
    // samples span (n samples span n - 1 steps).
    (
        "container_usage_history_secs",
        "(count_over_time((max by (namespace, pod, container) (container_memory_working_set_bytes{container!=\"\"}))[{window}s:5m]) - 1) * 300",
    ),
];

/// The built-in queries also run as range queries, for trends: a claim's
/// used bytes (`PVCPredictedFull`), a container's working set
/// (`OOMPredicted`), a node's (`NodePredictedExhausted`) and the bytes used
/// on a node's filesystem (`NodeDiskPredictedFull`).
pub const TREND_QUERIES: &[&str] = &[
    "pvc_used_bytes",
    "container_memory_bytes",
    "node_memory_bytes",
    "node_fs_used_bytes",
];

/// Built-in queries that run only as range queries, for trends: nothing
/// reads their instant values, so the instant rounds (every
/// `interval_secs`) leave them out and Prometheus' load stays as it was.
pub const TREND_ONLY_QUERIES: &[&str] = &["node_memory_bytes", "node_fs_used_bytes"];

/// The built-in queries, their names and what they feed.
///
/// Series must carry `namespace`/`pod`/`container` labels (container
/// queries), `node` (node queries) or `namespace`/`persistentvolumeclaim`
/// (volume queries).
pub const BUILTIN_QUERIES: &[(&str, &str)] = &[
    // The seeds' restart rate: restarts per second over 15 minutes.
    (
        "restart_rate_15m",
        "sum by (namespace, pod, container) (rate(kube_pod_container_status_restarts_total[15m]))",
    ),
    // The seeds' node memory available ratio.
    (
        "node_memory_available_ratio",
        "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
    ),
    // The seeds' CPU throttling ratio: throttled periods over all periods.
    (
        "cpu_throttling_ratio",
        "sum by (namespace, pod, container) (rate(container_cpu_cfs_throttled_periods_total[2m])) / sum by (namespace, pod, container) (rate(container_cpu_cfs_periods_total[2m]))",
    ),
    (
        "container_cpu_cores",
        "sum by (namespace, pod, container) (rate(container_cpu_usage_seconds_total[2m]))",
    ),
    (
        "container_memory_bytes",
        "max by (namespace, pod, container) (container_memory_working_set_bytes{container!=\"\"})",
    ),
    // The working set's trend: bytes per hour over the last 30 minutes (a
    // slow leak reads as a steady positive slope).
    (
        "container_memory_growth_per_hour",
        "max by (namespace, pod, container) (deriv(container_memory_working_set_bytes{container!=\"\"}[30m])) * 3600",
    ),
    // A node's working set, every process on it, from the kubelet's
    // resource metrics; the scrape job gives each node's its `node` label
    // (kube-prometheus-stack's kubelet job does).
    (
        "node_memory_bytes",
        "max by (node) (node_memory_working_set_bytes{node!=\"\"})",
    ),
    // The bytes used on a node's filesystem: cAdvisor's usage of the
    // node's root cgroup (`id="/"`), on its busiest device, from the
    // kubelet's /metrics/cadvisor with the same `node` label. Where the
    // kubelet's filesystem is not the busiest device, point this at it
    // (node-exporter's size less available bytes of its mount point, say,
    // labelled `node`).
    (
        "node_fs_used_bytes",
        "max by (node) (container_fs_usage_bytes{id=\"/\", node!=\"\"})",
    ),
    (
        "pvc_used_bytes",
        "max by (namespace, persistentvolumeclaim) (kubelet_volume_stats_used_bytes{persistentvolumeclaim!=\"\"})",
    ),
    (
        "pvc_capacity_bytes",
        "max by (namespace, persistentvolumeclaim) (kubelet_volume_stats_capacity_bytes{persistentvolumeclaim!=\"\"})",
    ),
];

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            interval_secs: 15,
            timeout_secs: 5,
            history_timeout_secs: 60,
            builtin: BUILTIN_QUERIES
                .iter()
                .map(|(name, query)| ((*name).to_owned(), (*query).to_owned()))
                .collect(),
            queries: BTreeMap::new(),
            trend_interval_secs: 300,
            trend_window_secs: 6 * 3600,
            trend_step_secs: 300,
            usage_interval_secs: 3600,
            usage_window_secs: 7 * 86400,
            hpa_share_query: HPA_SHARE_QUERY.to_owned(),
            hpa_share_days: 14,
        }
    }
}

/// Section `thresholds`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// A pod Pending and unschedulable this long is an issue.
    pub unschedulable_secs: u64,
    /// A running pod not Ready this long is an issue.
    pub readiness_failing_secs: u64,
    /// Restarts per second over 15 minutes above this are a high restart rate.
    pub restart_rate_per_sec: f64,
    /// Node memory available below this ratio is memory pressure.
    pub node_memory_available_ratio: f64,
    /// Throttled CPU periods above this ratio are CPU throttling.
    pub cpu_throttling_ratio: f64,
    /// HPA utilisation over target by this many percentage points, at max.
    pub hpa_over_target_percent: i32,
    /// PVC usage above this percent.
    pub pvc_usage_percent: f64,
    /// A Job completed longer ago than this is stale.
    pub completed_job_age_secs: u64,
    /// A running container last OOM-killed within this window still counts.
    pub oom_window_secs: u64,
    /// A pod still there this long after its grace period ended is stuck
    /// terminating.
    pub pod_terminating_secs: u64,
    /// A claim Pending this long is an issue.
    pub pvc_pending_secs: u64,
    /// A namespace Terminating this long is stuck.
    pub namespace_terminating_secs: u64,
    /// A Deployment Available=False this long is an issue.
    pub deployment_unavailable_secs: u64,
    /// A PodDisruptionBudget allowing no disruption this long is an issue.
    pub pdb_blocking_secs: u64,
    /// A suspended CronJob that has not run for this long is an issue.
    pub cronjob_suspended_secs: u64,
    /// A time a CronJob's schedule names, passed this long ago without a
    /// run, is a missed schedule.
    pub cronjob_missed_secs: u64,
    /// A pod waiting this long for its scheduling gates to go is an issue.
    pub scheduling_gated_secs: u64,
    /// A running container restarted at least this many times, the last
    /// with a non-zero exit, is restarting.
    pub restarting_restarts: u32,
    /// ... when that last exit was at most this long ago,
    pub restarting_window_secs: u64,
    /// ... and it has run again for at least this long (a container that
    /// dies sooner is crash-looping).
    pub restarting_running_secs: u64,
    /// A kubelet warning counts while it was last seen at most this long ago.
    pub warning_event_secs: u64,
    /// A pod whose liveness or startup probe failed this many times within
    /// the warning window is an issue.
    pub probe_failures: u32,
    /// A pod still Pending this long after creation, whose volumes or
    /// sandbox the kubelet cannot set up, is an issue.
    pub pod_start_failing_secs: u64,
    /// A StatefulSet with fewer ready pods than desired this long is not
    /// progressing.
    pub statefulset_stuck_secs: u64,
    /// A DaemonSet with pods unavailable or misscheduled this long is an
    /// issue.
    pub daemonset_unavailable_secs: u64,
    /// A Service selecting no pod or pods none of which is Ready, an
    /// admission webhook whose Service is missing or serves nothing, a
    /// NetworkPolicy selecting no pod, or a StatefulSet's missing governing
    /// Service, this long is an issue (counted from when the collector first
    /// saw it so).
    pub service_secs: u64,
    /// A PersistentVolume Released this long (its claim gone, its storage
    /// kept and paid for, no claim able to bind it) is an issue.
    pub pv_released_secs: u64,
    /// A PersistentVolume Failed this long (the PV controller retries a
    /// failed reclamation) is an issue.
    pub pv_failed_secs: u64,
    /// An HPA unable to scale (AbleToScale or ScalingActive False: its
    /// metrics unreadable, its target missing) this long is an issue; the
    /// HPA controller retries every 15 s and a metrics API restart is brief.
    pub hpa_unable_secs: u64,
    /// A TLS Secret's certificate expiring within this many days is an
    /// issue (read only with `kubernetes.tls_secrets`).
    pub certificate_expiry_days: u64,
    /// A claim whose used bytes' trend reaches its capacity within this
    /// many seconds is predicted full.
    pub pvc_fill_horizon_secs: u64,
    /// ... judged on at least this much history since the series' last
    /// reset,
    pub pvc_fill_min_history_secs: u64,
    /// A container whose working set's trend reaches its memory limit
    /// within this many seconds is predicted to be OOM-killed.
    pub oom_horizon_secs: u64,
    /// ... judged on at least this much history since its last restart,
    pub oom_min_history_secs: u64,
    /// A node whose working set's trend reaches its allocatable memory (or
    /// the bytes used on its filesystem its allocatable ephemeral storage)
    /// within this many seconds is predicted to run out of it, ...
    pub node_exhaustion_horizon_secs: u64,
    /// ... judged on at least this much history,
    pub node_exhaustion_min_history_secs: u64,
    /// ... and for these three, only a fit at least this straight (R², 0
    /// to 1): noise and sawtooths read low.
    pub trend_min_r_squared: f64,
    /// An HPA whose daily share of time at its maximum rises at least this
    /// many percentage points a day ...
    pub hpa_share_rise_percent_per_day: f64,
    /// ... on a fit at least this straight (R², 0 to 1; days differ more
    /// than a leak's minutes do) ...
    pub hpa_share_min_r_squared: f64,
    /// ... and that spent at least this share of the last day at its
    /// maximum, percent, is predicted to be pinned there.
    pub hpa_share_min_percent: f64,
    /// Right-sizing: a workload's container requesting more than its pods'
    /// p95 CPU (peak memory) plus this margin, percent, ...
    pub rightsizing_margin_percent: u32,
    /// ... by at least this many millicores of CPU per pod ...
    pub rightsizing_min_cpu_millicores: u64,
    /// ... or this many bytes of memory per pod, is over-provisioned, ...
    pub rightsizing_min_memory_bytes: u64,
    /// ... judged once every live pod has this much usage history.
    pub rightsizing_min_history_secs: u64,
    /// A workload whose pods' busiest 5 minutes stayed below this many
    /// millicores of CPU ...
    pub idle_cpu_millicores: u64,
    /// ... over at least this much history is idle.
    pub idle_min_history_secs: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            unschedulable_secs: 300,
            readiness_failing_secs: 300,
            restart_rate_per_sec: 0.0,
            node_memory_available_ratio: 0.1,
            cpu_throttling_ratio: 0.5,
            hpa_over_target_percent: 0,
            pvc_usage_percent: 85.0,
            completed_job_age_secs: 24 * 3600,
            oom_window_secs: 3600,
            pod_terminating_secs: 300,
            pvc_pending_secs: 300,
            namespace_terminating_secs: 600,
            deployment_unavailable_secs: 600,
            pdb_blocking_secs: 3600,
            cronjob_suspended_secs: 7 * 24 * 3600,
            cronjob_missed_secs: 900,
            scheduling_gated_secs: 1800,
            restarting_restarts: 3,
            restarting_window_secs: 900,
            restarting_running_secs: 60,
            warning_event_secs: 600,
            probe_failures: 3,
            pod_start_failing_secs: 120,
            statefulset_stuck_secs: 600,
            daemonset_unavailable_secs: 600,
            service_secs: 300,
            pv_released_secs: 24 * 3600,
            pv_failed_secs: 300,
            hpa_unable_secs: 600,
            certificate_expiry_days: 14,
            pvc_fill_horizon_secs: 24 * 3600,
            pvc_fill_min_history_secs: 3600,
            oom_horizon_secs: 12 * 3600,
            oom_min_history_secs: 3600,
            node_exhaustion_horizon_secs: 6 * 3600,
            node_exhaustion_min_history_secs: 3600,
            hpa_share_rise_percent_per_day: 1.0,
            hpa_share_min_r_squared: 0.6,
            hpa_share_min_percent: 10.0,
            trend_min_r_squared: 0.9,
            rightsizing_margin_percent: 20,
            rightsizing_min_cpu_millicores: 100,
            rightsizing_min_memory_bytes: 128 << 20,
            rightsizing_min_history_secs: 24 * 3600,
            idle_cpu_millicores: 5,
            idle_min_history_secs: 2 * 86400,
        }
    }
}

/// Section `snapshot`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Largest encoded gRPC message; bigger snapshots are chunked. 64 KiB–4 MiB.
    pub max_message_bytes: usize,
    /// Changes within this window go out as one delta.
    pub debounce_ms: u64,
    /// A subscriber that does not take a message for this long is dropped.
    pub subscriber_timeout_secs: u64,
    /// Most concurrent `WatchSnapshots` streams.
    pub max_subscribers: usize,
    /// Free text from the cluster (event messages) is cut to this many bytes.
    pub max_text_bytes: usize,
    /// Warning events older than this are forgotten.
    pub event_ttl_secs: u64,
    /// Most Warning events kept; the oldest go first.
    pub max_events: usize,
    /// Pod label keys carried in snapshots; `*` carries all, an empty list
    /// none but the keys of the default protected labels, which always
    /// travel (the gate must see a pod's protection).
    pub pod_labels: Vec<String>,
    /// Annotation keys carried in snapshots (a trailing `*` matches a
    /// prefix); every other annotation is dropped, since annotations often
    /// hold tokens and rendered config.
    pub annotation_allow_list: Vec<String>,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 1024 * 1024,
            debounce_ms: 200,
            subscriber_timeout_secs: 30,
            max_subscribers: 64,
            max_text_bytes: 512,
            event_ttl_secs: 3600,
            max_events: 5000,
            pod_labels: vec!["*".to_owned()],
            annotation_allow_list: vec![
                "kubectl.kubernetes.io/restartedAt".to_owned(),
                "deployment.kubernetes.io/revision".to_owned(),
                "nanny.ai/protected".to_owned(),
            ],
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50051, 9091),
            telemetry: TelemetryConfig::default(),
            tls: nanny_common::tls::TlsConfig::default(),
            kubernetes: KubernetesConfig::default(),
            prometheus: PrometheusConfig::default(),
            thresholds: Thresholds::default(),
            snapshot: SnapshotConfig::default(),
        }
    }
}

impl ServiceConfig for Config {
    nanny_common::service_config_sections!();

    #[expect(
        clippy::too_many_lines,
        reason = "one bounds check per setting, in the order of the config file"
    )]
    fn validate(&self) -> Result<(), Error> {
        let snapshot = &self.snapshot;
        // tonic refuses to decode messages over 4 MiB by default.
        if !(64 * 1024..=4 * 1024 * 1024).contains(&snapshot.max_message_bytes) {
            return Err(Error::config(
                "snapshot.max_message_bytes",
                "must be between 65536 and 4194304",
            ));
        }
        if snapshot.debounce_ms > 10_000 {
            return Err(Error::config(
                "snapshot.debounce_ms",
                "must be at most 10000",
            ));
        }
        if snapshot.max_subscribers == 0 {
            return Err(Error::config(
                "snapshot.max_subscribers",
                "must be at least 1",
            ));
        }
        if !(16..=64 * 1024).contains(&snapshot.max_text_bytes) {
            return Err(Error::config(
                "snapshot.max_text_bytes",
                "must be between 16 and 65536",
            ));
        }
        if snapshot.subscriber_timeout_secs == 0 {
            return Err(Error::config(
                "snapshot.subscriber_timeout_secs",
                "must be at least 1",
            ));
        }
        for (key, value) in [
            (
                "thresholds.restarting_restarts",
                self.thresholds.restarting_restarts,
            ),
            ("thresholds.probe_failures", self.thresholds.probe_failures),
        ] {
            if value == 0 {
                return Err(Error::config(key, "must be at least 1"));
            }
        }
        if !self.prometheus.url.is_empty() {
            validate_url("prometheus.url", &self.prometheus.url)?;
        }
        if self.prometheus.interval_secs == 0 || self.prometheus.timeout_secs == 0 {
            return Err(Error::config(
                "prometheus.interval_secs",
                "interval_secs and timeout_secs must be at least 1",
            ));
        }
        let p = &self.prometheus;
        if p.history_timeout_secs == 0 {
            return Err(Error::config(
                "prometheus.history_timeout_secs",
                "must be at least 1",
            ));
        }
        if p.usage_interval_secs == 0 || p.usage_window_secs < 300 {
            return Err(Error::config(
                "prometheus.usage_window_secs",
                "usage_interval_secs must be at least 1 and usage_window_secs at least 300 (one 5-minute sample)",
            ));
        }
        if p.trend_interval_secs == 0 || p.trend_step_secs == 0 {
            return Err(Error::config(
                "prometheus.trend_interval_secs",
                "trend_interval_secs and trend_step_secs must be at least 1",
            ));
        }
        // Prometheus refuses a range of more than 11,000 points per series.
        if p.trend_window_secs < p.trend_step_secs
            || p.trend_window_secs / p.trend_step_secs > 11_000
        {
            return Err(Error::config(
                "prometheus.trend_window_secs",
                format!(
                    "must hold between 1 and 11000 steps of trend_step_secs ({}s)",
                    p.trend_step_secs
                ),
            ));
        }
        for name in self.prometheus.builtin.keys() {
            if !BUILTIN_QUERIES.iter().any(|(known, _)| known == name) {
                return Err(Error::config(
                    format!("prometheus.builtin.{name}"),
                    "unknown built-in query",
                ));
            }
        }
        for (name, query) in self
            .prometheus
            .builtin
            .iter()
            .chain(&self.prometheus.queries)
        {
            if query.trim().is_empty() {
                return Err(Error::config(
                    format!("prometheus.queries.{name}"),
                    "query is empty",
                ));
            }
        }
        nanny_common::selector::Selector::parse(&self.kubernetes.label_selector)
            .map_err(|e| Error::config("kubernetes.label_selector", e))?;
        let t = &self.thresholds;
        for (key, ratio) in [
            (
                "thresholds.node_memory_available_ratio",
                t.node_memory_available_ratio,
            ),
            ("thresholds.cpu_throttling_ratio", t.cpu_throttling_ratio),
        ] {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(Error::config(key, "must be between 0 and 1"));
            }
        }
        if !(0.0..=100.0).contains(&t.pvc_usage_percent) {
            return Err(Error::config(
                "thresholds.pvc_usage_percent",
                "must be between 0 and 100",
            ));
        }
        for (key, history) in [
            (
                "thresholds.rightsizing_min_history_secs",
                t.rightsizing_min_history_secs,
            ),
            ("thresholds.idle_min_history_secs", t.idle_min_history_secs),
        ] {
            if history > self.prometheus.usage_window_secs {
                return Err(Error::config(
                    key,
                    format!(
                        "is longer than prometheus.usage_window_secs ({}s): nothing could ever be judged",
                        self.prometheus.usage_window_secs
                    ),
                ));
            }
        }
        if t.rightsizing_margin_percent > 1000 {
            return Err(Error::config(
                "thresholds.rightsizing_margin_percent",
                "must be at most 1000",
            ));
        }
        for (key, ratio) in [
            ("thresholds.trend_min_r_squared", t.trend_min_r_squared),
            (
                "thresholds.hpa_share_min_r_squared",
                t.hpa_share_min_r_squared,
            ),
        ] {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(Error::config(key, "must be between 0 and 1"));
            }
        }
        for (key, percent) in [
            (
                "thresholds.hpa_share_rise_percent_per_day",
                t.hpa_share_rise_percent_per_day,
            ),
            ("thresholds.hpa_share_min_percent", t.hpa_share_min_percent),
        ] {
            if !(0.0..=100.0).contains(&percent) {
                return Err(Error::config(key, "must be a percentage, 0 to 100"));
            }
        }
        if !(8..=90).contains(&self.prometheus.hpa_share_days) {
            return Err(Error::config(
                "prometheus.hpa_share_days",
                "must be between 8 and 90: a rising share is fitted to at least 8 days",
            ));
        }
        for (key, history) in [
            (
                "thresholds.pvc_fill_min_history_secs",
                t.pvc_fill_min_history_secs,
            ),
            ("thresholds.oom_min_history_secs", t.oom_min_history_secs),
            (
                "thresholds.node_exhaustion_min_history_secs",
                t.node_exhaustion_min_history_secs,
            ),
        ] {
            if history > self.prometheus.trend_window_secs {
                return Err(Error::config(
                    key,
                    format!(
                        "is longer than prometheus.trend_window_secs ({}s): no trend could ever be judged",
                        self.prometheus.trend_window_secs
                    ),
                ));
            }
        }
        if !t.restart_rate_per_sec.is_finite() || t.restart_rate_per_sec < 0.0 {
            return Err(Error::config(
                "thresholds.restart_rate_per_sec",
                "must be a non-negative number",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(edit: impl FnOnce(&mut Config)) -> String {
        let mut config = Config::default();
        edit(&mut config);
        config.validate().unwrap_err().to_string()
    }

    #[test]
    fn trend_settings_that_could_never_judge_anything_are_refused_by_name() {
        assert!(Config::default().validate().is_ok());
        let error = refused(|c| c.prometheus.trend_step_secs = 0);
        assert!(error.contains("prometheus.trend_interval_secs"), "{error}");
        let error = refused(|c| c.prometheus.trend_window_secs = 10);
        assert!(error.contains("prometheus.trend_window_secs"), "{error}");
        let error = refused(|c| c.prometheus.trend_step_secs = 1);
        assert!(error.contains("11000 steps"), "{error}");
        let error = refused(|c| c.thresholds.oom_min_history_secs = 7 * 3600);
        assert!(
            error.contains("thresholds.oom_min_history_secs")
                && error.contains("no trend could ever be judged"),
            "{error}"
        );
        let error = refused(|c| c.thresholds.trend_min_r_squared = 1.5);
        assert!(error.contains("thresholds.trend_min_r_squared"), "{error}");
    }
}
