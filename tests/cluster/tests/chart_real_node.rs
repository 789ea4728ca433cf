//! Nanny installed by its Helm chart as real pods on the real node (images
//! from `cargo xtask images --debug`, no registry): the five services
//! Running and Ready behind their real probes, with mutual TLS, their
//! ServiceAccounts and RBAC, the API server reached through the
//! `kubernetes` Service and every peer by its Service's DNS name. The
//! release heals and reports real container failures in a namespace of
//! workloads, and its safety gate's audit log outlives the gate's pod.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::{
    os::unix::fs::chown,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, ContainerStatus, Event, Node, Pod},
    node::v1::RuntimeClass,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use nanny_cluster_tests::{
    Fixture,
    chart::{self, Release, SERVICES, chart, helm, wait_available},
    create_json,
};
use nanny_crd::{ActionType, HealingAction, Phase, SourceKind};
use nanny_test_util::{
    cluster::{TestNamespace, eventually},
    faults,
    process::cargo_bin,
    real_node::{self, NODE_NAME, OLLAMA_IMAGE},
};
use serde_json::json;

/// Real back-off, real rollouts and the pipeline's cycle take their time.
const REAL: Duration = Duration::from_secs(240);

/// The chart's values for the real node (images, node selector, taint).
fn real_node_values() -> PathBuf {
    chart().join("ci/real-node-values.yaml")
}

/// Every image the release runs, as the node reports it has them (the
/// kubelet lists a newly imported image within a minute).
async fn require_images(client: &Client) {
    let nodes = Api::<Node>::all(client.clone());
    let wanted: Vec<String> = SERVICES
        .iter()
        .map(|s| format!("nanny.local/nanny-{s}:{}", env!("CARGO_PKG_VERSION")))
        .chain([OLLAMA_IMAGE.to_owned()])
        .collect();
    eventually("the node lists the release's images", Duration::from_secs(90), || async {
        let names: Vec<String> = nodes
            .get(NODE_NAME)
            .await?
            .status
            .and_then(|s| s.images)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|i| i.names.unwrap_or_default())
            .collect();
        anyhow::ensure!(
            wanted.iter().all(|w| names.iter().any(|n| n.ends_with(w.as_str()))),
            "the real node lacks some of {wanted:?}: `cargo xtask images --debug` builds and imports them (`cargo xtask test` does); it has {names:?}"
        );
        Ok(Some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The first container status of `app`'s live pods that `accept` accepts.
async fn container_when(
    client: &Client,
    ns: &str,
    app: &str,
    what: &str,
    accept: impl Fn(&ContainerStatus) -> bool,
) -> (Pod, ContainerStatus) {
    eventually(what, REAL, || async {
        faults::container_status_of(client, ns, app, &accept).await
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn waiting_reason(status: &ContainerStatus) -> Option<&str> {
    status.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
}

fn last_exit(status: &ContainerStatus) -> Option<(i32, &str)> {
    let terminated = status.last_state.as_ref()?.terminated.as_ref()?;
    Some((terminated.exit_code, terminated.reason.as_deref()?))
}

/// The release's HealingActions (in its namespace, its policy's) about
/// the workload `app` of namespace `apps`.
async fn actions_about(actions: &Api<HealingAction>, apps: &str, app: &str) -> Vec<HealingAction> {
    actions
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|a| {
            a.spec.target.namespace == apps
                && (a.spec.target.name == app || a.spec.target.name.starts_with(&format!("{app}-")))
        })
        .collect()
}

/// The first action about `app` that `accept` accepts.
async fn action_when(
    actions: &Api<HealingAction>,
    apps: &str,
    app: &str,
    what: &str,
    accept: impl Fn(&HealingAction) -> bool,
) -> HealingAction {
    let found = eventually(what, REAL, || async {
        Ok(actions_about(actions, apps, app)
            .await
            .into_iter()
            .find(|a| accept(a)))
    })
    .await;
    match found {
        Ok(action) => action,
        Err(error) => {
            let seen: Vec<_> = actions_about(actions, apps, app)
                .await
                .iter()
                .map(|a| {
                    (
                        a.name_any(),
                        a.spec.action.type_,
                        a.spec.issue_kind.clone(),
                        phase(a),
                    )
                })
                .collect();
            panic!("{error}; the actions about {app}: {seen:#?}")
        }
    }
}

fn phase(action: &HealingAction) -> Option<Phase> {
    action.status.as_ref().and_then(|s| s.phase)
}

/// A ReportOnly action on `app` for `kind`, explaining in `words`.
async fn reported(
    actions: &Api<HealingAction>,
    apps: &str,
    app: &str,
    kind: &str,
    words: &str,
) -> String {
    let report = action_when(
        actions,
        apps,
        app,
        &format!("{kind} on {app} reported"),
        |a| {
            a.spec.action.type_ == ActionType::ReportOnly
                && a.spec.issue_kind.as_deref() == Some(kind)
                && a.spec.source.kind == SourceKind::Rule
        },
    )
    .await;
    assert!(
        report.spec.reasoning.contains(words),
        "{kind}: {:?}",
        report.spec.reasoning
    );
    // The gate lets nothing run for a report: it is recorded for humans.
    let closed = action_when(
        actions,
        apps,
        app,
        &format!("{kind} on {app} closed"),
        |a| a.name_any() == report.name_any() && phase(a).is_some(),
    )
    .await;
    let status = closed.status.unwrap();
    nanny_cluster_tests::assert_closed_as_report(&status);
    closed.spec.reasoning
}

/// No action about any of `apps` was executed.
async fn nothing_executed(actions: &Api<HealingAction>, apps: &str, names: &[&str]) {
    for app in names {
        let acted = actions_about(actions, apps, app)
            .await
            .into_iter()
            .filter(|a| a.status.as_ref().is_some_and(|s| s.result.is_some()))
            .map(|a| a.name_any())
            .collect::<Vec<_>>();
        assert!(acted.is_empty(), "{app}: {acted:?}");
    }
}

/// The crash loop of `app` acted on: a rolling restart (the chart's
/// default policy asks a human for it: approved with `nannyctl approve`)
/// or a pod restart, executed.
async fn crash_loop_acted_on(
    actions: &Api<HealingAction>,
    kubeconfig: &Path,
    ns: &str,
    apps: &str,
    app: &str,
) -> HealingAction {
    let proposed = action_when(
        actions,
        apps,
        app,
        &format!("{app}'s crash loop acted on"),
        |a| {
            a.spec.issue_kind.as_deref() == Some("CRASH_LOOP_BACK_OFF")
                && matches!(
                    a.spec.action.type_,
                    ActionType::RestartPod | ActionType::RolloutRestart
                )
                && phase(a).is_some_and(|p| p != Phase::Proposed)
        },
    )
    .await;
    if phase(&proposed) == Some(Phase::PendingApproval) {
        nannyctl(kubeconfig, ns, &["approve", &proposed.name_any()]);
    }
    let done = action_when(
        actions,
        apps,
        app,
        &format!("{app}'s restart executed"),
        |a| {
            a.name_any() == proposed.name_any()
                && a.status.as_ref().and_then(|s| s.result.as_ref()).is_some()
        },
    )
    .await;
    let result = done.status.as_ref().unwrap().result.as_ref().unwrap();
    assert!(result.outcome.executed(), "{result:?}");
    done
}

/// `nannyctl` as the cluster's admin.
fn nannyctl(kubeconfig: &Path, ns: &str, args: &[&str]) -> String {
    let output = Command::new(cargo_bin("nannyctl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", ns])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "nannyctl {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// How many records the gate's audit log holds, once `nannyctl audit
/// verify` finds its chain, signatures and head anchor intact.
fn verified_records(kubeconfig: &Path, ns: &str, log: &Path, key: &Path, anchor: &str) -> usize {
    let out = nannyctl(
        kubeconfig,
        ns,
        &[
            "audit",
            "verify",
            log.to_str().unwrap(),
            "--public-key",
            key.to_str().unwrap(),
            "--anchor-configmap",
            anchor,
        ],
    );
    // "FILE: N records, chain intact and signed by …"
    out.split_once(": ")
        .and_then(|(_, rest)| rest.split_once(" records, chain intact"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("nannyctl audit verify: {out}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn chart_on_the_real_node_heals_and_reports_real_failures() {
    let Some(fx) = Fixture::new("chart-node").await else {
        return;
    };
    assert_eq!(
        fx.cluster.real_node.as_deref(),
        Some(NODE_NAME),
        "`cargo xtask cluster up` starts the real node (unless --no-real-node)"
    );
    require_images(&fx.client).await;
    let (client, ns) = (fx.client.clone(), fx.ns().to_owned());
    let kubeconfig = fx.cluster.kubeconfig.clone();
    let apps = TestNamespace::create(&fx.cluster, &client, "chart-apps")
        .await
        .unwrap();
    let apps = apps.name.clone();
    let release = format!("r{}", &ns[ns.len() - 8..]);
    let prefix = format!("{release}-nanny");

    // The gate's audit log on the node's disk, owned by the images' user.
    let audit_dir = chart::audit_volume(&client, &release, &ns, &prefix).await;
    std::fs::create_dir_all(&audit_dir).unwrap();
    chown(&audit_dir, Some(65532), Some(65532)).unwrap();

    // The chart, in Auto mode over the workloads' namespace only, with its
    // model server (Ollama and the local model, a pod on the same node),
    // crash loops acted on from two restarts and an OOM kill's memory ×4,
    // judged over 30 s.
    let chart_path = chart();
    let _release = Release::new(&fx.cluster, &release, &ns);
    helm(
        &fx.cluster,
        &ns,
        &[
            "install",
            &release,
            chart_path.to_str().unwrap(),
            "--namespace",
            &ns,
            "-f",
            real_node_values().to_str().unwrap(),
            "--set",
            "policy.mode=Auto",
            "--set-json",
            &format!("policy.namespaces=[\"{apps}\"]"),
            "--set-json",
            r#"policy.rules={"crashloopMinRestarts":2,"oomMemoryFactor":4.0}"#,
            "--set",
            "policy.verificationTimeoutSeconds=30",
            // A pod that does not fit is an issue after 20 s, not 5 min.
            "--set",
            "collector.thresholds.unschedulableSecs=20",
            // A pod that cannot mount or get a sandbox: after 10 s.
            "--set",
            "collector.thresholds.podStartFailingSecs=10",
            "--wait",
            "--timeout",
            "300s",
        ],
    );
    // The five services and the model server.
    wait_available(&client, &ns, &release, SERVICES.len() + 1).await;
    // Real pods on the real node, every container Ready by its probes.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let nanny_pods = pods
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={release}")))
        .await
        .unwrap()
        .items;
    assert!(nanny_pods.len() >= SERVICES.len(), "{nanny_pods:?}");
    for pod in &nanny_pods {
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(
            spec.node_name.as_deref(),
            Some(NODE_NAME),
            "{}",
            pod.name_any()
        );
        let statuses = pod
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap();
        assert!(
            statuses
                .iter()
                .all(|c| c.ready && c.state.as_ref().unwrap().running.is_some()),
            "{}: {statuses:?}",
            pod.name_any()
        );
        let container = &spec.containers[0];
        assert!(
            container.readiness_probe.is_some() && container.liveness_probe.is_some(),
            "{}",
            pod.name_any()
        );
    }

    // The faults, all at once, in the workloads' namespace.
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), &apps);
    configs
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "settings" },
                "data": { "LOG_LEVEL": "info" },
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let exit = ["--mode", "exit", "--exit-code", "1", "--after", "1"];
    real_node::fault_deployment(&client, &apps, "crasher", &exit, None)
        .await
        .unwrap();
    real_node::fault_deployment(
        &client,
        &apps,
        "hog",
        &["--mode", "memory", "--mib", "48"],
        Some("32Mi"),
    )
    .await
    .unwrap();
    let serve = json!(["--mode", "serve", "--port", "8080"]);
    let probe = |path: &str| json!({ "httpGet": { "path": path, "port": 8080 }, "periodSeconds": 1, "failureThreshold": 1 });
    real_node::fault_deployment_of(
        &client,
        &apps,
        "unhealthy",
        json!({
            "args": ["--mode", "serve", "--port", "8080", "--unhealthy-after", "2"],
            "livenessProbe": probe("/healthz"),
        }),
    )
    .await
    .unwrap();
    real_node::fault_deployment_of(
        &client,
        &apps,
        "missing-image",
        json!({ "image": "nanny.local/does-not-exist:0.1.0" }),
    )
    .await
    .unwrap();
    real_node::fault_deployment_of(
        &client,
        &apps,
        "misconfigured",
        json!({
            "args": serve,
            "env": [{ "name": "DB_URL", "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "DB_URL" } } }],
        }),
    )
    .await
    .unwrap();
    // An init container that exits 1 every time: the pod never starts.
    real_node::fault_deployment_with(
        &client,
        &apps,
        "init-fails",
        json!({ "args": serve }),
        Some(&exit[..]),
    )
    .await
    .unwrap();
    real_node::fault_deployment_of(
        &client,
        &apps,
        "too-big",
        json!({ "args": serve, "resources": { "requests": { "cpu": "64" } } }),
    )
    .await
    .unwrap();
    real_node::fault_deployment_of(
        &client,
        &apps,
        "web",
        json!({ "args": serve, "readinessProbe": probe("/ready") }),
    )
    .await
    .unwrap();

    let actions: Api<HealingAction> = Api::namespaced(client.clone(), &ns);

    // 1. A real crash loop (exit 1, the kubelet's back-off): restarted.
    let (crashing, status) =
        container_when(&client, &apps, "crasher", "a real CrashLoopBackOff", |s| {
            waiting_reason(s) == Some("CrashLoopBackOff")
        })
        .await;
    assert_eq!(last_exit(&status), Some((1, "Error")));
    let restart = crash_loop_acted_on(&actions, &kubeconfig, &ns, &apps, "crasher").await;
    let pods_apps: Api<Pod> = Api::namespaced(client.clone(), &apps);
    eventually("the crashing pod replaced", REAL, || async {
        Ok(faults::pods_of(&client, &apps, "crasher")
            .await?
            .iter()
            .all(|p| p.uid() != crashing.uid())
            .then_some(()))
    })
    .await
    .unwrap();

    // 2. A real liveness probe failure: the kubelet kills the container
    // (its Unhealthy events say why) until it backs off; Nanny acts.
    let (unhealthy, _) = container_when(
        &client,
        &apps,
        "unhealthy",
        "liveness kills and back-off",
        |s| s.restart_count >= 2,
    )
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), &apps);
    eventually("the kubelet's liveness event", REAL, || async {
        Ok(events
            .list(
                &ListParams::default()
                    .fields(&format!("involvedObject.name={}", unhealthy.name_any())),
            )
            .await?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("Unhealthy")
                    && e.message
                        .as_deref()
                        .is_some_and(|m| m.starts_with("Liveness probe failed"))
            }))
    })
    .await
    .unwrap();
    let liveness = crash_loop_acted_on(&actions, &kubeconfig, &ns, &apps, "unhealthy").await;

    // 3-5. What a person fixes is reported, with what to look at, and
    // nothing is done to it.
    let (_, status) = container_when(
        &client,
        &apps,
        "missing-image",
        "a real ErrImagePull",
        |s| matches!(waiting_reason(s), Some("ErrImagePull" | "ImagePullBackOff")),
    )
    .await;
    assert!(status.image.contains("does-not-exist"), "{status:?}");
    reported(
        &actions,
        &apps,
        "missing-image",
        "IMAGE_PULL_BACK_OFF",
        "container app cannot pull image nanny.local/does-not-exist:0.1.0",
    )
    .await;
    container_when(
        &client,
        &apps,
        "misconfigured",
        "a real CreateContainerConfigError",
        |s| waiting_reason(s) == Some("CreateContainerConfigError"),
    )
    .await;
    let config_report = reported(
        &actions,
        &apps,
        "misconfigured",
        "CREATE_CONTAINER_CONFIG_ERROR",
        &format!("ConfigMap {apps}/settings has no key DB_URL, referenced by container app"),
    )
    .await;
    let pending = eventually("a pod the node cannot fit", REAL, || async {
        Ok(faults::pods_of(&client, &apps, "too-big")
            .await?
            .into_iter()
            .find(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| {
                        c.iter().any(|c| {
                            c.type_ == "PodScheduled"
                                && c.reason.as_deref() == Some("Unschedulable")
                                && c.message
                                    .as_deref()
                                    .is_some_and(|m| m.contains("Insufficient cpu"))
                        })
                    })
            }))
    })
    .await
    .unwrap();
    reported(
        &actions,
        &apps,
        "too-big",
        "UNSCHEDULABLE",
        "Insufficient cpu",
    )
    .await;
    // A real init container failing (exit 1, the kubelet's back-off). The
    // report names its state as the kubelet showed it when judged: just
    // exited (Error), or backing off with the last exit code (seen in a
    // fresh-clone CI run at 1ec13dd: the first exit, before any restart).
    let init = reported(
        &actions,
        &apps,
        "init-fails",
        "INIT_CONTAINER_FAILING",
        "). Its main containers wait until every init container succeeds",
    )
    .await;
    assert!(
        init.contains("init container init (Error)") || init.contains("last exit code 1, Error)"),
        "{init}"
    );
    // The kubelet's own warning: a liveness probe failing (the kubelet
    // kills the container each time).
    reported(
        &actions,
        &apps,
        "unhealthy",
        "LIVENESS_PROBE_FAILING",
        // The newest warning is quoted: the app's 500, or, when the probe
        // lands while the restarted container is not yet listening,
        // "connection refused" (seen once in a fresh-clone CI run).
        "The kubelet says \"Liveness probe failed: ",
    )
    .await;
    // Nothing ran against them (a model's proposal would wait for a human).
    nothing_executed(
        &actions,
        &apps,
        &["missing-image", "misconfigured", "too-big"],
    )
    .await;
    assert!(
        pods_apps.get(&pending.name_any()).await.is_ok(),
        "the pending pod was left alone"
    );

    // 6. A rollout stuck on a broken new image: the new pod is reported,
    // the old one keeps serving, untouched.
    let (web, _) = container_when(&client, &apps, "web", "web Ready", |s| s.ready).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &apps);
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": {
                "progressDeadlineSeconds": 10,
                "template": { "spec": { "containers": [{ "name": "app", "image": "nanny.local/nanny-fault:broken" }] } },
            } })),
        )
        .await
        .unwrap();
    eventually("the rollout past its deadline", REAL, || async {
        Ok(deployments
            .get("web")
            .await?
            .status
            .and_then(|s| s.conditions)
            .and_then(|c| {
                c.into_iter().find(|c| {
                    c.type_ == "Progressing"
                        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                })
            }))
    })
    .await
    .unwrap();
    reported(
        &actions,
        &apps,
        "web",
        "IMAGE_PULL_BACK_OFF",
        "cannot pull image nanny.local/nanny-fault:broken",
    )
    .await;
    let old = pods_apps.get(&web.name_any()).await.unwrap();
    assert_eq!(old.uid(), web.uid());
    assert!(
        old.status.unwrap().container_statuses.unwrap()[0].ready,
        "the old pod still serves"
    );

    // 7. A real OOM kill (137): the memory raise waits for a human. The
    // gate restarts first; its audit log, on the node's disk, carries on.
    let (_, status) = container_when(&client, &apps, "hog", "a real OOM kill", |s| {
        last_exit(s).is_some_and(|(_, reason)| reason == "OOMKilled")
    })
    .await;
    assert_eq!(last_exit(&status), Some((137, "OOMKilled")));
    let raise = action_when(
        &actions,
        &apps,
        "hog",
        "a memory raise waiting for a human",
        |a| {
            a.spec.action.type_ == ActionType::PatchResources
                && phase(a) == Some(Phase::PendingApproval)
        },
    )
    .await;
    let key = audit_dir.join("gate.pem");
    let signing = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get(&format!("{prefix}-verdict-signing"))
        .await
        .unwrap();
    std::fs::write(&key, &signing.binary_data.unwrap()["gate.pem"].0).unwrap();
    let log = audit_dir.join("audit.jsonl");
    let anchor = format!("{ns}/{release}-audit-anchor");
    let before = verified_records(&kubeconfig, &ns, &log, &key, &anchor);
    assert!(before > 0, "the gate recorded its verdicts");
    let gate_selector =
        format!("app.kubernetes.io/instance={release},app.kubernetes.io/name=safety-gate");
    let old_gate = pods
        .list(&ListParams::default().labels(&gate_selector))
        .await
        .unwrap()
        .items;
    assert_eq!(old_gate.len(), 1, "{old_gate:?}");
    pods.delete(&old_gate[0].name_any(), &DeleteParams::default())
        .await
        .unwrap();
    eventually("a new gate pod Ready", REAL, || async {
        Ok(pods
            .list(&ListParams::default().labels(&gate_selector))
            .await?
            .items
            .into_iter()
            .find(|p| {
                p.uid() != old_gate[0].uid()
                    && p.status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .is_some_and(|c| c.iter().all(|c| c.ready))
            }))
    })
    .await
    .unwrap();
    nannyctl(&kubeconfig, &ns, &["approve", &raise.name_any()]);
    let done = action_when(&actions, &apps, "hog", "the approved raise verified", |a| {
        a.name_any() == raise.name_any() && phase(a) == Some(Phase::Succeeded)
    })
    .await;
    assert_eq!(
        done.spec.approval.as_ref().map(|a| a.by.as_str()),
        Some("kwok-admin"),
        "the approval names who gave it"
    );
    let after = verified_records(&kubeconfig, &ns, &log, &key, &anchor);
    assert!(
        after > before,
        "the new gate appended to the same log: {before} → {after}"
    );
    let limit = eventually("the raised limit on the Deployment", REAL, || async {
        Ok(faults::memory_limit(&deployments.get("hog").await?).filter(|l| l != "32Mi"))
    })
    .await
    .unwrap();
    container_when(&client, &apps, "hog", "the raised pod Ready", |s| s.ready).await;

    // The analyzer asked the model server next to it: an action carries
    // the local model's explanation.
    let explained = eventually(
        "an action explained by the model on the node",
        REAL,
        || async {
            Ok(actions
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .find_map(|a| {
                    let explanation = a.status?.explanation?;
                    (explanation.model.contains("smollm2:135m")
                        && !explanation.hypothesis.is_empty())
                    .then_some(explanation)
                }))
        },
    )
    .await
    .unwrap();

    // The kubelet's other warnings, once the model has answered (they are
    // rules' reports; asked about too, they would only lengthen the model's
    // queue): a startup probe failing, a Secret volume it cannot mount, a
    // runtime handler containerd lacks.
    // A startup probe on a path the app does not serve (404).
    real_node::fault_deployment_of(
        &client,
        &apps,
        "slow-start",
        json!({
            "args": serve,
            "startupProbe": { "httpGet": { "path": "/started", "port": 8080 },
                              "periodSeconds": 1, "failureThreshold": 3 },
        }),
    )
    .await
    .unwrap();
    // A Secret volume whose Secret does not exist: never mounted.
    real_node::fault_deployment_pod(
        &client,
        &apps,
        "unmounted",
        json!({ "args": serve, "volumeMounts": [{ "name": "creds", "mountPath": "/creds" }] }),
        json!({ "volumes": [{ "name": "creds", "secret": { "secretName": "db-creds" } }] }),
    )
    .await
    .unwrap();
    // A RuntimeClass whose handler the node's containerd does not have:
    // no sandbox for its pods.
    let runtime_classes: Api<RuntimeClass> = Api::all(client.clone());
    let runtime = format!("{release}-missing");
    create_json(
        &runtime_classes,
        json!({ "metadata": { "name": runtime }, "handler": "nanny-missing" }),
    )
    .await;
    real_node::fault_deployment_pod(
        &client,
        &apps,
        "no-sandbox",
        json!({ "args": serve }),
        json!({ "runtimeClassName": runtime }),
    )
    .await
    .unwrap();

    reported(
        &actions,
        &apps,
        "slow-start",
        "STARTUP_PROBE_FAILING",
        "The kubelet says \"Startup probe failed: HTTP probe failed with statuscode: 404\"",
    )
    .await;
    reported(
        &actions,
        &apps,
        "unmounted",
        "VOLUME_MOUNT_FAILING",
        &format!("Secret {apps}/db-creds does not exist: create it"),
    )
    .await;
    let sandbox = reported(
        &actions,
        &apps,
        "no-sandbox",
        "POD_SANDBOX_FAILING",
        "cannot create its sandbox. The kubelet says",
    )
    .await;
    assert!(sandbox.contains("nanny-missing"), "{sandbox}");
    runtime_classes
        .delete(&runtime, &DeleteParams::default())
        .await
        .unwrap();
    nothing_executed(&actions, &apps, &["slow-start", "unmounted", "no-sandbox"]).await;

    println!(
        "chart on the real node: {} pods Ready; crash loop → {:?}; liveness → {:?}; ErrImagePull, CreateContainerConfigError, Unschedulable and a stuck rollout reported; OOM 32Mi → {limit} approved after a gate restart, audit log {before} → {after} records, intact; explained by {}; the configuration report: {config_report}",
        nanny_pods.len(),
        restart.spec.action.type_,
        liveness.spec.action.type_,
        explained.model,
    );
}
