//! Fault injection for the local cluster: each function creates (or marks)
//! real API objects so that the cluster shows exactly what a real one would
//! when that failure happens.
//!
//! Pod and node lifecycles are simulated by kwok. The stages that turn the
//! `nanny.ai/fault` label into container and node states live in
//! `deploy/kwok/stages.yaml`; the emulated kubelet metrics Prometheus scrapes
//! are in `deploy/kwok/metrics.yaml`.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, StatefulSet},
        autoscaling::v2::HorizontalPodAutoscaler,
        batch::v1::Job,
        core::v1::{ContainerStatus, Node, PersistentVolume, PersistentVolumeClaim, Pod},
        storage::v1::StorageClass,
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use crate::cluster::eventually;

/// The label kwok's fault stages select on.
pub const FAULT_LABEL: &str = "nanny.ai/fault";
/// Annotation: `lastState.terminated.reason` of a crash loop.
pub const FAULT_REASON: &str = "nanny.ai/fault-reason";
/// Annotation: `lastState.terminated.exitCode` of a crash loop.
pub const FAULT_EXIT_CODE: &str = "nanny.ai/fault-exit-code";
/// Pod annotation kwok reads for CPU usage (a quantity, e.g. `250m`).
pub const USAGE_CPU: &str = "kwok.x-k8s.io/usage-cpu";
/// Pod annotation kwok reads for memory usage (a quantity, e.g. `300Mi`).
pub const USAGE_MEMORY: &str = "kwok.x-k8s.io/usage-memory";

/// How long fault helpers wait for the cluster to reach the faulty state.
const SETTLE: Duration = Duration::from_secs(60);

/// A pod template's fault settings and resources.
#[derive(Debug, Clone, Default)]
pub struct PodSpec {
    /// Value of the `nanny.ai/fault` label, if any.
    pub fault: Option<&'static str>,
    /// Extra pod annotations.
    pub annotations: Vec<(&'static str, String)>,
    /// Container memory limit, e.g. `256Mi`.
    pub memory_limit: Option<String>,
    /// Container CPU request, e.g. `100m`.
    pub cpu_request: Option<String>,
    /// Container CPU limit alone, e.g. `200m` (the API server defaults the
    /// pod's request to it).
    pub cpu_limit: Option<String>,
    /// Node selector that no node satisfies, for unschedulable pods.
    pub unschedulable: bool,
}

fn pod_template(name: &str, spec: &PodSpec) -> Value {
    let mut labels = json!({ "app": name });
    if let Some(fault) = spec.fault {
        labels[FAULT_LABEL] = json!(fault);
    }
    let annotations: serde_json::Map<String, Value> = spec
        .annotations
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let mut resources = json!({});
    if let Some(limit) = &spec.memory_limit {
        resources["limits"] = json!({ "memory": limit });
        resources["requests"] = json!({ "memory": limit });
    }
    if let Some(cpu) = &spec.cpu_request {
        resources["requests"]["cpu"] = json!(cpu);
    }
    if let Some(cpu) = &spec.cpu_limit {
        resources["limits"]["cpu"] = json!(cpu);
    }
    let mut pod_spec = json!({
        "containers": [{ "name": "app", "image": format!("registry.example/{name}:1"), "resources": resources }],
    });
    if spec.unschedulable {
        pod_spec["nodeSelector"] = json!({ "nanny.ai/no-such-node": "true" });
    }
    json!({ "metadata": { "labels": labels, "annotations": annotations }, "spec": pod_spec })
}

/// Creates a Deployment of `replicas` pods built from `spec`.
///
/// # Errors
/// When the API refuses.
pub async fn deployment(
    client: &Client,
    namespace: &str,
    name: &str,
    replicas: i32,
    spec: &PodSpec,
) -> anyhow::Result<Deployment> {
    deployment_of(client, namespace, name, replicas, pod_template(name, spec)).await
}

/// Creates a Deployment `name` (pods labelled `app=NAME`) of `replicas`
/// pods from `template`, a pod template in JSON carrying that label.
///
/// # Errors
/// When the API refuses.
pub async fn deployment_of(
    client: &Client,
    namespace: &str,
    name: &str,
    replicas: i32,
    template: Value,
) -> anyhow::Result<Deployment> {
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": template,
        },
    }))?;
    Ok(Api::<Deployment>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &deployment)
        .await?)
}

/// A workload whose containers crash over and over: `CrashLoopBackOff` with
/// a growing restartCount and `lastState.terminated.reason=Error`, exit 1.
///
/// # Errors
/// When the API refuses.
pub async fn crash_loop(
    client: &Client,
    namespace: &str,
    name: &str,
    replicas: i32,
) -> anyhow::Result<Deployment> {
    let spec = PodSpec {
        fault: Some("crash-loop"),
        ..PodSpec::default()
    };
    deployment(client, namespace, name, replicas, &spec).await
}

/// A StatefulSet `name` of one crash-looping pod: a workload a rollout
/// restart applies to and the safety gate never deletes.
///
/// # Errors
/// When the API refuses.
pub async fn crash_looping_statefulset(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<StatefulSet> {
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name, FAULT_LABEL: "crash-loop" } },
                "spec": { "containers": [{ "name": name, "image": format!("registry.example/{name}:1") }] },
            },
        },
    }))?;
    Ok(Api::<StatefulSet>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &set)
        .await?)
}

/// A workload killed for exceeding its memory limit: crash loop with
/// `lastState.terminated.reason=OOMKilled`, exit code 137, usage above the limit.
///
/// # Errors
/// When the API refuses.
pub async fn oom_killed(
    client: &Client,
    namespace: &str,
    name: &str,
    memory_limit: &str,
) -> anyhow::Result<Deployment> {
    let spec = PodSpec {
        fault: Some("crash-loop"),
        annotations: vec![
            (FAULT_REASON, "OOMKilled".to_owned()),
            (FAULT_EXIT_CODE, "137".to_owned()),
            (USAGE_MEMORY, memory_limit.to_owned()),
        ],
        memory_limit: Some(memory_limit.to_owned()),
        ..PodSpec::default()
    };
    deployment(client, namespace, name, 1, &spec).await
}

/// A workload whose image cannot be pulled: `ImagePullBackOff`, phase Pending.
///
/// # Errors
/// When the API refuses.
pub async fn image_pull_backoff(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Deployment> {
    let spec = PodSpec {
        fault: Some("image-pull-backoff"),
        ..PodSpec::default()
    };
    deployment(client, namespace, name, 1, &spec).await
}

/// A workload no node can take: the real scheduler marks its pods
/// `PodScheduled=False` with reason `Unschedulable`.
///
/// # Errors
/// When the API refuses.
pub async fn unschedulable(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Deployment> {
    let spec = PodSpec {
        unschedulable: true,
        ..PodSpec::default()
    };
    deployment(client, namespace, name, 1, &spec).await
}

/// A workload whose pods use `cpu` and `memory` (quantities), as Prometheus
/// will report through the emulated kubelet metrics.
///
/// # Errors
/// When the API refuses.
pub async fn with_usage(
    client: &Client,
    namespace: &str,
    name: &str,
    cpu: &str,
    memory: &str,
) -> anyhow::Result<Deployment> {
    let spec = PodSpec {
        annotations: vec![
            (USAGE_CPU, cpu.to_owned()),
            (USAGE_MEMORY, memory.to_owned()),
        ],
        ..PodSpec::default()
    };
    deployment(client, namespace, name, 1, &spec).await
}

/// Removes any fault from a Deployment's pod template, so the rollout
/// replaces the faulty pods with healthy ones (what a fix looks like).
///
/// # Errors
/// When the API refuses.
pub async fn clear_workload_fault(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<()> {
    let patch = json!({ "spec": { "template": {
        "metadata": { "labels": { FAULT_LABEL: null } },
        "spec": { "nodeSelector": null },
    } } });
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// A node fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeFault {
    /// Ready=False.
    NotReady,
    /// MemoryPressure=True (still Ready).
    MemoryPressure,
    /// DiskPressure=True (still Ready).
    DiskPressure,
    /// PIDPressure=True (still Ready).
    PidPressure,
}

impl NodeFault {
    fn label(self) -> &'static str {
        match self {
            Self::NotReady => "not-ready",
            Self::MemoryPressure => "memory-pressure",
            Self::DiskPressure => "disk-pressure",
            Self::PidPressure => "pid-pressure",
        }
    }

    /// The node condition this fault turns on (`Ready` turns off).
    pub fn condition(self) -> (&'static str, &'static str) {
        match self {
            Self::NotReady => ("Ready", "False"),
            Self::MemoryPressure => ("MemoryPressure", "True"),
            Self::DiskPressure => ("DiskPressure", "True"),
            Self::PidPressure => ("PIDPressure", "True"),
        }
    }
}

/// Puts `fault` on `node`; kwok keeps re-asserting it until cleared.
///
/// # Errors
/// When the API refuses.
pub async fn node_fault(client: &Client, node: &str, fault: NodeFault) -> anyhow::Result<()> {
    let patch = json!({ "metadata": { "labels": { FAULT_LABEL: fault.label() } } });
    Api::<Node>::all(client.clone())
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Clears any fault from `node`; kwok's heartbeat makes it healthy again.
///
/// # Errors
/// When the API refuses.
pub async fn clear_node_fault(client: &Client, node: &str) -> anyhow::Result<()> {
    let patch = json!({ "metadata": { "labels": { FAULT_LABEL: null } } });
    Api::<Node>::all(client.clone())
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

fn job(name: &str, fault: Option<&'static str>) -> anyhow::Result<Job> {
    let spec = PodSpec {
        fault,
        ..PodSpec::default()
    };
    let mut template = pod_template(name, &spec);
    template["spec"]["restartPolicy"] = json!("Never");
    Ok(serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "backoffLimit": 0, "template": template },
    }))?)
}

/// Whether the Job has condition `type_` = True.
pub fn job_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// Who manages the Jobs [`completed_job`] creates (`spec.managedBy`).
pub const JOB_MANAGER: &str = "nanny.ai/fault-injector";

/// A Job that completed `finished_ago` in the past.
///
/// Kubernetes makes `status.completionTime` immutable once set, so the
/// built-in Job controller's own "now" cannot be backdated. Instead the Job
/// names this library as its manager (`spec.managedBy`, which the built-in
/// controller leaves alone) and the status an external Job controller would
/// write is written here — validated by the API server like any other.
///
/// # Errors
/// When the API refuses.
pub async fn completed_job(
    client: &Client,
    namespace: &str,
    name: &str,
    finished_ago: Duration,
) -> anyhow::Result<Job> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let mut job = job(name, None)?;
    if let Some(spec) = job.spec.as_mut() {
        spec.managed_by = Some(JOB_MANAGER.to_owned());
        spec.completions = Some(1);
    }
    jobs.create(&PostParams::default(), &job).await?;
    let finished = (Timestamp::now() - jiff_span(finished_ago)?).to_string();
    let started =
        (Timestamp::now() - jiff_span(finished_ago + Duration::from_secs(60))?).to_string();
    let condition = |type_: &str, reason: &str| json!({ "type": type_, "status": "True", "reason": reason, "lastProbeTime": finished, "lastTransitionTime": finished });
    let patch = json!({ "status": {
        "startTime": started,
        "completionTime": finished,
        "succeeded": 1,
        "conditions": [condition("SuccessCriteriaMet", "CompletionsReached"), condition("Complete", "CompletionsReached")],
    } });
    Ok(jobs
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?)
}

fn jiff_span(duration: Duration) -> anyhow::Result<k8s_openapi::jiff::SignedDuration> {
    Ok(k8s_openapi::jiff::SignedDuration::try_from(duration)?)
}

/// A Job whose only pod fails (backoffLimit 0): the Job controller marks it Failed.
///
/// # Errors
/// When the API refuses or the Job does not fail within a minute.
pub async fn failed_job(client: &Client, namespace: &str, name: &str) -> anyhow::Result<Job> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    jobs.create(&PostParams::default(), &job(name, Some("pod-failed"))?)
        .await?;
    job_reaches(client, namespace, name, "Failed").await
}

/// A Job of one pod only node `node` may run (its hostname; the test
/// node's taint tolerated); with `deadline`, the Job controller fails it
/// (DeadlineExceeded) when the pod has not finished by then, e.g. because
/// the node does not exist yet.
///
/// # Errors
/// When the API refuses.
pub async fn pinned_job(
    client: &Client,
    namespace: &str,
    name: &str,
    node: &str,
    deadline: Option<i64>,
) -> anyhow::Result<Job> {
    let job: Job = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": { "backoffLimit": 0, "activeDeadlineSeconds": deadline,
                  "template": { "spec": {
                      "restartPolicy": "Never",
                      "nodeSelector": { "kubernetes.io/hostname": node },
                      "tolerations": [{ "key": crate::nodes::TEST_NODE_TAINT, "operator": "Exists", "effect": "NoSchedule" }],
                      "containers": [{ "name": "job", "image": format!("registry.example/{name}:7") }] } } },
    }))?;
    Ok(Api::<Job>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &job)
        .await?)
}

/// Waits until Job `name` has condition `type_` (`Failed`, `Complete`).
///
/// # Errors
/// When it does not within a minute.
pub async fn job_reaches(
    client: &Client,
    namespace: &str,
    name: &str,
    type_: &str,
) -> anyhow::Result<Job> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    eventually(&format!("job {name} {type_}"), SETTLE, || async {
        Ok(jobs
            .get(name)
            .await
            .ok()
            .filter(|j| job_condition(j, type_)))
    })
    .await
}

/// A TLS Secret (type `kubernetes.io/tls`) holding a self-signed
/// certificate for `host`, issued by "Nanny Test CA" and valid until
/// `days` days from now (negative: expired), with its key.
///
/// # Errors
/// When the certificate cannot be made or the API refuses.
pub async fn tls_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    host: &str,
    days: i64,
) -> anyhow::Result<k8s_openapi::api::core::v1::Secret> {
    use k8s_openapi::jiff::{SignedDuration, tz::TimeZone};
    let date = |t: Timestamp| {
        let d = t.to_zoned(TimeZone::UTC).date();
        rcgen::date_time_ymd(
            i32::from(d.year()),
            d.month().unsigned_abs(),
            d.day().unsigned_abs(),
        )
    };
    let now = Timestamp::now();
    let mut params = rcgen::CertificateParams::new(vec![host.to_owned()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, host);
    params.not_before = date(now - SignedDuration::from_hours(24 * 365));
    params.not_after = date(now + SignedDuration::from_hours(24 * days));
    let issuer_key = rcgen::KeyPair::generate()?;
    let mut issuer = rcgen::CertificateParams::new(Vec::<String>::new())?;
    issuer
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Nanny Test CA");
    issuer.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(issuer, issuer_key);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": { "name": name },
        "type": "kubernetes.io/tls",
        "stringData": { "tls.crt": cert.pem(), "tls.key": key.serialize_pem() },
    }))?;
    Ok(Api::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await?)
}

/// Parameters of [`hpa_at_max`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HpaAtMax {
    /// spec.minReplicas.
    pub min_replicas: i32,
    /// spec.maxReplicas, and the current replica count.
    pub max_replicas: i32,
    /// Target average CPU utilisation, percent.
    pub target_cpu_percent: i32,
    /// Current average CPU utilisation, percent (above target).
    pub current_cpu_percent: i32,
}

/// A Deployment scaled to its HPA's maxReplicas, with CPU utilisation over
/// target. The local cluster runs without the HPA controller (there is no
/// metrics API for it), so the status written here stays as written.
///
/// # Errors
/// When the API refuses.
pub async fn hpa_at_max(
    client: &Client,
    namespace: &str,
    name: &str,
    params: HpaAtMax,
) -> anyhow::Result<HorizontalPodAutoscaler> {
    let usage = format!("{}m", params.current_cpu_percent); // of a 100m request
    let spec = PodSpec {
        cpu_request: Some("100m".to_owned()),
        annotations: vec![(USAGE_CPU, usage)],
        ..PodSpec::default()
    };
    deployment(client, namespace, name, params.max_replicas, &spec).await?;
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": name },
            "minReplicas": params.min_replicas,
            "maxReplicas": params.max_replicas,
            "metrics": [{ "type": "Resource", "resource": { "name": "cpu",
                "target": { "type": "Utilization", "averageUtilization": params.target_cpu_percent } } }],
        },
    }))?;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), namespace);
    hpas.create(&PostParams::default(), &hpa).await?;
    let now = Timestamp::now().to_string();
    let status = json!({ "status": {
        "currentReplicas": params.max_replicas,
        "desiredReplicas": params.max_replicas,
        "lastScaleTime": now,
        "currentMetrics": [{ "type": "Resource", "resource": { "name": "cpu",
            "current": { "averageUtilization": params.current_cpu_percent, "averageValue": format!("{}m", params.current_cpu_percent) } } }],
        "conditions": [
            { "type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "lastTransitionTime": now },
            { "type": "ScalingActive", "status": "True", "reason": "ValidMetricFound", "lastTransitionTime": now },
            { "type": "ScalingLimited", "status": "True", "reason": "TooManyReplicas",
              "message": "the desired replica count is more than the maximum replica count", "lastTransitionTime": now },
        ],
    } });
    Ok(hpas
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?)
}

/// An HPA on cpu utilization over a Deployment of one pod built from `spec`
/// (without a cpu request or limit, the utilization cannot be computed).
/// With `unable`, its status is what the HPA controller writes
/// when no metrics API serves it (ScalingActive False,
/// FailedGetResourceMetric): the local cluster runs no HPA controller, as
/// there is no metrics API for it.
///
/// # Errors
/// When the API refuses.
pub async fn hpa_on_cpu(
    client: &Client,
    namespace: &str,
    name: &str,
    spec: &PodSpec,
    unable: bool,
) -> anyhow::Result<HorizontalPodAutoscaler> {
    deployment(client, namespace, name, 1, spec).await?;
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": name },
            "minReplicas": 1,
            "maxReplicas": 4,
            "metrics": [{ "type": "Resource", "resource": { "name": "cpu",
                "target": { "type": "Utilization", "averageUtilization": 60 } } }],
        },
    }))?;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), namespace);
    let created = hpas.create(&PostParams::default(), &hpa).await?;
    if !unable {
        return Ok(created);
    }
    let now = Timestamp::now().to_string();
    let status = json!({ "status": {
        "currentReplicas": 1,
        "desiredReplicas": 1,
        "conditions": [
            { "type": "AbleToScale", "status": "True", "reason": "SucceededGetScale",
              "message": "the HPA controller was able to get the target's current scale", "lastTransitionTime": now },
            { "type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric",
              "message": "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)",
              "lastTransitionTime": now },
        ],
    } });
    Ok(hpas
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?)
}

mod storage;

pub use storage::{EXPANDABLE_STORAGE_CLASS, claim_request, pvc_nearly_full, volume_resizer};

/// Pods of a workload, by its `app` label.
///
/// # Errors
/// When the API refuses.
pub async fn pods_of(client: &Client, namespace: &str, app: &str) -> anyhow::Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    Ok(pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?
        .items)
}

/// The pods of `app` in phase Failed.
///
/// # Errors
/// When the API refuses the list.
pub async fn failed_pods_of(
    client: &Client,
    namespace: &str,
    app: &str,
) -> anyhow::Result<Vec<Pod>> {
    Ok(pods_of(client, namespace, app)
        .await?
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
        .collect())
}

/// Evicts `count` of `app`'s pods as the kubelet reports an eviction
/// (phase Failed, reason Evicted, through the kwok stage); its ReplicaSet
/// replaces them. Returns their uids once they show Evicted.
///
/// # Errors
/// When the API refuses, or the pods never show Evicted.
pub async fn evict_pods(
    client: &Client,
    namespace: &str,
    app: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let running = eventually(&format!("{count} {app} pods running"), SETTLE, || async {
        let running: Vec<Pod> = pods_of(client, namespace, app)
            .await?
            .into_iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .collect();
        Ok((running.len() >= count).then_some(running))
    })
    .await?;
    let mut evicted = Vec::new();
    for pod in running.iter().take(count) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let patch = json!({ "metadata": {
            "labels": { FAULT_LABEL: "pod-failed" },
            "annotations": { "nanny.ai/fault-pod-reason": "Evicted" },
        } });
        pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        evicted.push(pod.metadata.uid.clone().unwrap_or_default());
    }
    eventually(&format!("{count} {app} pods evicted"), SETTLE, || async {
        let failed = failed_pods_of(client, namespace, app).await?;
        Ok((failed.len() >= count
            && failed
                .iter()
                .all(|p| p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")))
        .then_some(()))
    })
    .await?;
    Ok(evicted)
}

/// The first live (not deleting) pod of `app` whose first container's
/// status `accept` accepts, with that status.
///
/// # Errors
/// When the API refuses the list.
pub async fn container_status_of(
    client: &Client,
    namespace: &str,
    app: &str,
    accept: impl Fn(&ContainerStatus) -> bool,
) -> anyhow::Result<Option<(Pod, ContainerStatus)>> {
    Ok(pods_of(client, namespace, app)
        .await?
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .find_map(|p| {
            let status = p
                .status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .first()?
                .clone();
            accept(&status).then_some((p, status))
        }))
}

/// Runs an instant PromQL query; returns each series' labels and value.
///
/// # Errors
/// When Prometheus is unreachable or answers with an error.
pub async fn prometheus_query(
    prometheus_url: &str,
    query: &str,
) -> anyhow::Result<Vec<(Value, f64)>> {
    let addr = prometheus_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()?;
    let path = format!("/api/v1/query?query={}", percent_encode(query));
    let (status, body) = crate::http::get(addr, &path).await?;
    anyhow::ensure!(status == 200, "prometheus answered {status}: {body}");
    let body: Value = serde_json::from_str(&body)?;
    body["data"]["result"]
        .as_array()
        .context("no result array")?
        .iter()
        .map(|series| {
            let value = series["value"][1]
                .as_str()
                .context("sample value")?
                .parse::<f64>()?;
            Ok((series["metric"].clone(), value))
        })
        .collect()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Plays the HPA controller the local cluster lacks (it has no metrics API):
/// once `name`'s maxReplicas rises above the replicas it runs, the load
/// spreads and the HPA settles at `settle_at` replicas (capped by the new
/// max), no longer limited. Runs until aborted.
pub fn hpa_controller(
    client: Client,
    namespace: String,
    name: String,
    settle_at: i32,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client, &namespace);
        loop {
            if let Ok(hpa) = hpas.get(&name).await {
                let max = hpa.spec.as_ref().map_or(0, |s| s.max_replicas);
                let current = hpa
                    .status
                    .as_ref()
                    .and_then(|s| s.current_replicas)
                    .unwrap_or(0);
                if max > current {
                    let replicas = settle_at.min(max);
                    let now = Timestamp::now().to_string();
                    let status = json!({ "status": {
                        "currentReplicas": replicas,
                        "desiredReplicas": replicas,
                        "conditions": [
                            { "type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "lastTransitionTime": now },
                            { "type": "ScalingActive", "status": "True", "reason": "ValidMetricFound", "lastTransitionTime": now },
                            { "type": "ScalingLimited", "status": "False", "reason": "DesiredWithinRange", "lastTransitionTime": now },
                        ],
                    } });
                    let _ = hpas
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

/// The memory limit of a Deployment's first container, as written.
pub fn memory_limit(deployment: &Deployment) -> Option<String> {
    deployment
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .first()?
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")
        .map(|q| q.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_template_carries_fault_and_resources() {
        let spec = PodSpec {
            fault: Some("crash-loop"),
            annotations: vec![(FAULT_REASON, "OOMKilled".to_owned())],
            memory_limit: Some("256Mi".to_owned()),
            unschedulable: true,
            ..PodSpec::default()
        };
        let t = pod_template("web", &spec);
        assert_eq!(t["metadata"]["labels"][FAULT_LABEL], "crash-loop");
        assert_eq!(t["metadata"]["annotations"][FAULT_REASON], "OOMKilled");
        assert_eq!(
            t["spec"]["containers"][0]["resources"]["limits"]["memory"],
            "256Mi"
        );
        assert_eq!(t["spec"]["nodeSelector"]["nanny.ai/no-such-node"], "true");
    }

    #[test]
    fn promql_is_percent_encoded() {
        assert_eq!(percent_encode(r#"a{b="c"}"#), "a%7Bb%3D%22c%22%7D");
    }
}
