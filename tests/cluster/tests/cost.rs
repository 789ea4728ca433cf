//! Cost right-sizing (#23): usage over days, from a real Prometheus holding
//! two days of known series (backfilled by `promtool`), judged against the
//! requests of real Deployments:
//! - `oversized`, 2 pods requesting 500m CPU and 512 MiB, using 100m (with
//!   two 10-minute bursts to 400m: the p95 ignores them) and 100 MiB
//!   (peaking at 150 MiB once): `OverProvisioned`, 760m CPU and 664 MiB
//!   reclaimable, computed exactly (120m and 180 MiB keep the 20% margin);
//! - `idle`, 1 pod never above 1m CPU: `WorkloadIdle`;
//! - `busy`, 1 pod using nearly what it requests: nothing.
//!
//! With `rules.rightsizing.propose_patch`, `oversized`'s requests are
//! proposed lowered to 120m and 180 MiB (a PatchResources the gate sends to
//! a human), and set so once approved, its limit untouched; `idle` is
//! reported (a ReportOnly HealingAction with the command, nothing
//! executed). What is reclaimable is summed per namespace on the
//! collector's `/metrics` (the Grafana panel's series) and by `nannyctl
//! report cost`.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, ResourceExt};
use nanny_cluster_tests::{
    Fixture,
    pipeline::{Harness, WAIT, policy},
};
use nanny_crd::{ActionType, HealingAction, Phase};
use nanny_test_util::{
    backfill::{self, Series, minutes},
    cluster::eventually,
    faults::{self, PodSpec},
    process::cargo_bin,
};

const MIB: f64 = 1_048_576.0;
const DAYS: i64 = 2;

fn env() -> Vec<(&'static str, String, String)> {
    [
        ("NANNY_PROMETHEUS__USAGE_WINDOW_SECS", "172800"),
        ("NANNY_THRESHOLDS__RIGHTSIZING_MIN_HISTORY_SECS", "86400"),
        ("NANNY_THRESHOLDS__IDLE_MIN_HISTORY_SECS", "86400"),
    ]
    .into_iter()
    .map(|(key, value)| ("nanny-collector", key.to_owned(), value.to_owned()))
    .chain([(
        "nanny-analyzer",
        "NANNY_RULES__RIGHTSIZING__PROPOSE_PATCH".to_owned(),
        "true".to_owned(),
    )])
    .collect()
}

/// Deployment `app` of `replicas` pods requesting `cpu` and `memory`: its
/// uid and its pods' names once they run.
async fn deployment(
    fx: &Fixture,
    app: &str,
    replicas: i32,
    cpu: &str,
    memory: &str,
) -> (String, Vec<String>) {
    let spec = PodSpec {
        cpu_request: Some(cpu.to_owned()),
        memory_limit: Some(memory.to_owned()),
        ..PodSpec::default()
    };
    faults::deployment(&fx.client, fx.ns(), app, replicas, &spec)
        .await
        .unwrap();
    let pods = eventually(&format!("{app}'s pods running"), WAIT, || async {
        let pods = faults::pods_of(&fx.client, fx.ns(), app).await?;
        let running: Vec<String> = pods
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .map(ResourceExt::name_any)
            .collect();
        Ok((running.len() == usize::try_from(replicas).unwrap()).then_some(running))
    })
    .await
    .unwrap();
    let uid = Api::<Deployment>::namespaced(fx.client.clone(), fx.ns())
        .get(app)
        .await
        .unwrap()
        .uid()
        .unwrap();
    (uid, pods)
}

/// A pod's CPU counter (cpu-seconds; `cores(minute)` the rate) and working
/// set (`bytes(minute)`), a sample a minute over the last two days.
fn usage(
    ns: &str,
    pod: &str,
    end: i64,
    cores: impl Fn(i64) -> f64,
    bytes: impl Fn(i64) -> f64,
) -> [Series; 2] {
    let labels = vec![
        ("namespace", ns.to_owned()),
        ("pod", pod.to_owned()),
        ("container", "app".to_owned()),
    ];
    let span = DAYS * 24 * 60;
    let mut total = 0.0;
    let counter: Vec<(i64, f64)> = minutes(end, span, |m| {
        total += cores(m) * 60.0;
        Some(total)
    });
    [
        Series {
            name: "container_cpu_usage_seconds_total",
            labels: labels.clone(),
            samples: counter,
        },
        Series {
            name: "container_memory_working_set_bytes",
            labels,
            samples: minutes(end, span, |m| Some(bytes(m))),
        },
    ]
}

async fn reported(h: &Harness, uid: &str, kind: &str) -> HealingAction {
    let found = eventually(&format!("{kind} reported on {uid}"), WAIT, || async {
        Ok(h.actions_on(uid).await.into_iter().find(|a| {
            a.spec.issue_kind.as_deref() == Some(kind)
                && a.status.as_ref().and_then(|s| s.phase).is_some()
        }))
    })
    .await;
    let action = match found {
        Ok(action) => action,
        Err(error) => panic!("{error}\n{}", h.actions_seen().await),
    };
    assert_eq!(action.spec.action.type_, ActionType::ReportOnly);
    nanny_cluster_tests::assert_closed_as_report(&action.status.clone().unwrap());
    assert_eq!(h.executions_on(uid).await, 0, "{kind}: nothing executed");
    action
}

#[tokio::test]
async fn usage_over_days_reports_exact_reclaimable_requests_and_idle_workloads() {
    let Some(mut fx) = Fixture::new("cost").await else {
        return;
    };
    let ns = fx.ns().to_owned();
    let (oversized_uid, oversized) = deployment(&fx, "oversized", 2, "500m", "512Mi").await;
    let (idle_uid, idle) = deployment(&fx, "idle", 1, "200m", "256Mi").await;
    let (busy_uid, busy) = deployment(&fx, "busy", 1, "100m", "128Mi").await;

    let end = k8s_openapi::jiff::Timestamp::now().as_second();
    let mut series = Vec::new();
    for pod in &oversized {
        // 100m, with two 10-minute bursts of 400m; 100 MiB, 150 MiB for 10
        // minutes once.
        let burst = |m: i64| (1000..1010).contains(&m) || (2000..2010).contains(&m);
        series.extend(usage(
            &ns,
            pod,
            end,
            |m| if burst(m) { 0.4 } else { 0.1 },
            |m| {
                if (1500..1510).contains(&m) {
                    150.0 * MIB
                } else {
                    100.0 * MIB
                }
            },
        ));
    }
    series.extend(usage(&ns, &idle[0], end, |_| 0.001, |_| 50.0 * MIB));
    series.extend(usage(&ns, &busy[0], end, |_| 0.09, |_| 120.0 * MIB));
    let prometheus = backfill::start(
        &std::env::temp_dir().join(format!("{ns}-prometheus")),
        &series,
    )
    .await
    .unwrap();
    fx.cluster.prometheus_url = prometheus.url.clone();
    let h = Harness::with_policy(fx, &policy(&ns, "Auto"), env()).await;

    // Proposed (rules.rightsizing.propose_patch): the requests lowered to
    // what the pods used plus the margin, for a human.
    let over = h.wait_phase(&oversized_uid, Phase::PendingApproval).await;
    assert_eq!(over.spec.issue_kind.as_deref(), Some("OVER_PROVISIONED"));
    assert_eq!(over.spec.action.type_, ActionType::PatchResources);
    let requests = over.spec.action.params.requests().unwrap();
    assert_eq!(
        (
            requests.cpu_millicores.map(|c| c.0),
            requests.memory_bytes.map(|m| m.0)
        ),
        (Some(120), Some(180 << 20)),
        "{:?}",
        over.spec.action
    );
    assert!(over.spec.action.params.limits().is_none(), "limits stay");
    let reasoning = &over.spec.reasoning;
    for words in [
        "requests 500m CPU where its pods' p95 was 100m",
        "requests 512 MiB of memory where its pods peaked at 150 MiB",
        "760m CPU and 664 MiB reclaimable across its 2 pod(s)",
        "Proposed: requests of cpu=120m,memory=180Mi",
    ] {
        assert!(reasoning.contains(words), "{words:?} not in {reasoning:?}");
    }
    println!("OverProvisioned → PatchResources proposed: {reasoning}");
    let idle_report = reported(&h, &idle_uid, "WORKLOAD_IDLE").await;
    assert!(
        idle_report.spec.reasoning.contains("is idle")
            && idle_report.spec.reasoning.contains(&format!(
                "kubectl -n {ns} scale deployment/idle --replicas=0"
            )),
        "{}",
        idle_report.spec.reasoning
    );
    println!("WorkloadIdle: {}", idle_report.spec.reasoning);
    let quiet = h.actions_on(&busy_uid).await;
    assert!(quiet.is_empty(), "busy uses what it requests: {quiet:?}");

    // The namespace's sum, as the Grafana panel reads it.
    let collector = h.stack.get("nanny-collector");
    let (_, metrics) = nanny_test_util::http::get(collector.http_addr, "/metrics")
        .await
        .unwrap();
    for line in [
        format!("nanny_collector_reclaimable_cpu_cores{{namespace=\"{ns}\"}} 0.76"),
        format!("nanny_collector_reclaimable_memory_bytes{{namespace=\"{ns}\"}} 696254464"),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in /metrics");
    }

    // nannyctl report cost -n NS
    let output = std::process::Command::new(cargo_bin("nannyctl"))
        .args([
            "report",
            "cost",
            "-n",
            &ns,
            "--collector",
            &collector.grpc_url(),
        ])
        .envs(nanny_test_util::pki::nannyctl_env())
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains(&format!("{ns:<24} 0.760 cores, 664 MiB (696254464 bytes)")),
        "{text}"
    );
    assert!(
        text.contains("Deployment/oversized") && text.contains(&format!("{ns}/Deployment idle")),
        "{text}"
    );
    println!("{text}");

    // Approved: the API server has the lower requests, the limit as it was.
    h.approve_and_wait(&oversized_uid, ActionType::PatchResources)
        .await;
    let deployment = Api::<Deployment>::namespaced(h.fx.client.clone(), &ns)
        .get("oversized")
        .await
        .unwrap();
    let resources = deployment.spec.unwrap().template.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    let quantity = |map: &Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
                    key: &str| {
        nanny_common::quantity::parse(&map.as_ref().unwrap()[key].0).unwrap()
    };
    assert!(
        (quantity(&resources.requests, "cpu") - 0.12).abs() < 1e-9,
        "{resources:?}"
    );
    assert!(
        (quantity(&resources.requests, "memory") - 180.0 * MIB).abs() < 0.5,
        "{resources:?}"
    );
    assert!(
        (quantity(&resources.limits, "memory") - 512.0 * MIB).abs() < 0.5,
        "{resources:?}"
    );
    println!(
        "approved: requests {:?}, limits {:?}",
        resources.requests, resources.limits
    );
    drop(prometheus);
}
