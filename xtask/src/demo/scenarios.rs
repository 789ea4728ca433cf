//! The seed scenarios: each injects a fault, waits for Nanny's answer
//! within its time budget, and checks the cluster afterwards.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        autoscaling::v2::HorizontalPodAutoscaler,
        core::v1::{Node, PersistentVolumeClaim, Pod},
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, Patch, PatchParams},
};
use nanny_crd::{ActionType, HealingAction, Phase, TargetRef};
use nanny_test_util::{
    cluster::ClusterInfo,
    faults::{self, HpaAtMax},
    nodes::FakeNode,
    real_node,
};
use serde_json::json;

use super::{
    NAMESPACE, SICK_NODE, SYSTEM_APP, Started,
    summary::{Outcome, Row, describe, unhealed},
    timeline::Labels,
};

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    CrashLoop,
    Oom,
    StaleJob,
    HpaAtMax,
    NodeNotReady,
    PvcNearlyFull,
    Protected,
}

#[derive(Debug)]
pub(super) struct Scenario {
    pub(super) name: &'static str,
    pub(super) fault: &'static str,
    pub(super) kind: Kind,
}

pub(super) const SCENARIOS: [Scenario; 7] = [
    Scenario {
        name: "crash loop",
        fault: "one pod of web starts crash-looping",
        kind: Kind::CrashLoop,
    },
    Scenario {
        name: "OOM kill",
        fault: "Deployment hungry needs 192Mi but is limited to 128Mi",
        kind: Kind::Oom,
    },
    Scenario {
        name: "stale job",
        fault: "Job nightly-report finished 25 h ago and was never cleaned up",
        kind: Kind::StaleJob,
    },
    Scenario {
        name: "HPA at max",
        fault: "HPA api pinned at maxReplicas 3 with CPU at 95% of target 50%",
        kind: Kind::HpaAtMax,
    },
    Scenario {
        name: "node NotReady",
        fault: "node nanny-demo-sick stops reporting Ready",
        kind: Kind::NodeNotReady,
    },
    Scenario {
        name: "PVC nearly full",
        fault: "claim data is 970Mi used of 1Gi",
        kind: Kind::PvcNearlyFull,
    },
    Scenario {
        name: "kube-system",
        fault: "a kube-system pod crash-loops (protected namespace)",
        kind: Kind::Protected,
    },
];

/// A scenario's deadline; time spent waiting for a human moves it.
#[derive(Debug)]
pub(super) struct Budget {
    pub(super) deadline: Instant,
    pub(super) human: Duration,
}

/// A scenario ran out of time while waiting for `0`.
#[derive(Debug)]
pub(super) struct TimedOut(String);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "timed out waiting for {}", self.0)
    }
}

impl std::error::Error for TimedOut {}

impl Budget {
    /// Polls `check` until it returns `Some` or the deadline passes.
    async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        loop {
            if let Ok(Some(value)) = check().await {
                return Ok(value);
            }
            if Instant::now() > self.deadline {
                return Err(TimedOut(what.to_owned()).into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[allow(missing_debug_implementations)] // kube::Client has no Debug
pub(super) struct Ctx {
    pub(super) client: Client,
    pub(super) actions: Api<HealingAction>,
    pub(super) labels: Labels,
    pub(super) yes: bool,
    pub(super) timeout: Duration,
    /// The local cluster's real node runs the OOM scenario's container.
    pub(super) real_node: bool,
}

impl Ctx {
    fn label(&self, scenario: &'static str, namespace: &str, prefix: &str) {
        if let Ok(mut labels) = self.labels.lock() {
            labels.push((scenario, namespace.to_owned(), prefix.to_owned()));
        }
    }

    pub(super) async fn run(
        &self,
        scenario: &Scenario,
        info: &ClusterInfo,
        started: &mut Started,
    ) -> Row {
        let begun = Instant::now();
        let mut budget = Budget {
            deadline: begun + self.timeout,
            human: Duration::ZERO,
        };
        let result = match scenario.kind {
            Kind::CrashLoop => self.crash_loop(scenario.name, &mut budget).await,
            Kind::Oom => self.oom(scenario.name, &mut budget, started).await,
            Kind::StaleJob => self.stale_job(scenario.name, &mut budget).await,
            Kind::HpaAtMax => self.hpa(scenario.name, &mut budget, started).await,
            Kind::NodeNotReady => self.node(scenario.name, &mut budget, info, started).await,
            Kind::PvcNearlyFull => self.pvc(scenario.name, &mut budget, started).await,
            Kind::Protected => self.protected(scenario.name, &mut budget).await,
        };
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(error) => match error.downcast_ref::<TimedOut>() {
                Some(timed_out) => {
                    Outcome::TimedOut(format!("{timed_out} (after {:.0?})", begun.elapsed()))
                }
                None => Outcome::Failed(format!("{error:#}")),
            },
        };
        let mark = match &outcome {
            Outcome::Healed(what) => format!("✔ healed: {what}"),
            Outcome::Refused(what) => format!("✔ correctly refused: {what}"),
            Outcome::TimedOut(what) => format!("✘ {what}"),
            Outcome::Failed(what) => format!("✘ failed: {what}"),
        };
        println!("   {mark} — {:.1?}", begun.elapsed());
        Row {
            scenario: scenario.name,
            outcome,
            took: begun.elapsed(),
            human: budget.human,
        }
    }

    pub(super) async fn running_pods(
        &self,
        app: &str,
        count: usize,
        wait: Duration,
    ) -> anyhow::Result<Vec<Pod>> {
        nanny_test_util::scenarios::running_pods(&self.client, NAMESPACE, app, count, wait).await
    }

    /// Follows the actions on targets matching `on` until one of type
    /// `want` (any type when `None`) ends; asks for (or gives, with --yes)
    /// approval on the way.
    async fn follow(
        &self,
        budget: &mut Budget,
        what: &str,
        on: impl Fn(&TargetRef) -> bool,
        want: Option<ActionType>,
    ) -> anyhow::Result<HealingAction> {
        loop {
            let action = budget
                .until(what, || async {
                    let list = self.actions.list(&Default::default()).await?;
                    Ok(list.items.into_iter().find(|a| {
                        let phase = a.status.as_ref().and_then(|s| s.phase);
                        on(&a.spec.target)
                            && want.is_none_or(|w| a.spec.action.type_ == w)
                            && phase.is_some_and(|p| p.is_terminal() || p == Phase::PendingApproval)
                    }))
                })
                .await?;
            if action.status.as_ref().and_then(|s| s.phase) == Some(Phase::PendingApproval) {
                self.approval(&action, budget).await?;
                continue;
            }
            return Ok(action);
        }
    }

    /// Shows how to approve `action`, approves it with --yes, and waits
    /// until someone decides.
    async fn approval(&self, action: &HealingAction, budget: &mut Budget) -> anyhow::Result<()> {
        let name = action.name_any();
        println!(
            "   ⏸ {:?} on {} {} needs a human. Approve it with:",
            action.spec.action.type_, action.spec.target.kind, action.spec.target.name
        );
        println!("       nannyctl approve {name} -n {NAMESPACE}");
        println!(
            "     or: kubectl annotate healingaction {name} -n {NAMESPACE} {}=$(kubectl auth whoami -o jsonpath='{{.status.userInfo.username}}')",
            nanny_crd::APPROVE_ANNOTATION
        );
        let asked = Instant::now();
        if self.yes {
            let patch = json!({ "spec": { "approval": {
                "decision": "Approve", "by": "cargo xtask demo --yes", "at": Timestamp::now().to_string(),
            } } });
            self.actions
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .with_context(|| format!("approving {name}"))?;
            println!("     --yes: approved");
        } else {
            println!(
                "     waiting for your decision (run the demo with --yes to approve automatically)…"
            );
        }
        loop {
            let now = self.actions.get(&name).await?;
            if now.status.as_ref().and_then(|s| s.phase) != Some(Phase::PendingApproval) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if !self.yes {
            budget.human += asked.elapsed();
            budget.deadline += asked.elapsed();
        }
        Ok(())
    }

    async fn crash_loop(&self, name: &'static str, budget: &mut Budget) -> anyhow::Result<Outcome> {
        let victim = self.running_pods("web", 3, self.timeout).await?.remove(0);
        let pod = victim.name_any();
        let uid = victim.uid().context("pod uid")?;
        self.label(name, NAMESPACE, &pod);
        Api::<Pod>::namespaced(self.client.clone(), NAMESPACE)
            .patch(
                &pod,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({ "metadata": { "labels": { faults::FAULT_LABEL: "crash-loop" } } }),
                ),
            )
            .await?;
        let action = self
            .follow(
                budget,
                "the crash-looping pod's restart",
                |t| t.uid == uid,
                Some(ActionType::RestartPod),
            )
            .await?;
        Ok(match action.phase() {
            Phase::Succeeded => {
                Outcome::Healed(format!("pod {pod} restarted; its replacement runs"))
            }
            _ => unhealed(&action),
        })
    }

    /// On the real node the OOM kill is real: the fault app holds 160 MiB
    /// under a 128Mi limit and the kernel kills it (137) until the limit is
    /// raised; then the new pod runs. Elsewhere kwok plays it.
    async fn oom(
        &self,
        name: &'static str,
        budget: &mut Budget,
        started: &mut Started,
    ) -> anyhow::Result<Outcome> {
        self.label(name, NAMESPACE, "hungry");
        let deployment = if self.real_node {
            real_node::fault_deployment(
                &self.client,
                NAMESPACE,
                "hungry",
                &["--mode", "memory", "--mib", "160"],
                Some("128Mi"),
            )
            .await?
        } else {
            faults::oom_killed(&self.client, NAMESPACE, "hungry", "128Mi").await?
        };
        let uid = deployment.uid().context("uid")?;
        // Simulated, the app needs 192Mi: once the limit is raised, its
        // pods run.
        let simulated = (!self.real_node).then(|| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            started.tasks.push(tokio::spawn({
                let client = self.client.clone();
                async move {
                    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
                    loop {
                        if let Ok(d) = deployments.get("hungry").await {
                            let limit = faults::memory_limit(&d);
                            if limit.as_deref().is_some_and(|l| l != "128Mi") {
                                let _ = faults::clear_workload_fault(&client, NAMESPACE, "hungry")
                                    .await;
                                let _ = tx.send(limit.unwrap_or_default());
                                return;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }));
            rx
        });
        let action = self
            .follow(
                budget,
                "the memory limit raised",
                |t| t.uid == uid,
                Some(ActionType::PatchResources),
            )
            .await?;
        if action.phase() != Phase::Succeeded {
            return Ok(unhealed(&action));
        }
        let Some(raised) = simulated else {
            let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), NAMESPACE);
            let limit = faults::memory_limit(&deployments.get("hungry").await?).unwrap_or_default();
            budget
                .until("the raised pod running on the real node", || {
                    faults::container_status_of(&self.client, NAMESPACE, "hungry", |s| {
                        s.ready && s.restart_count == 0
                    })
                })
                .await?;
            return Ok(Outcome::Healed(format!(
                "a real OOM kill (exit 137) on {}: memory limit 128Mi → {} (×1.5), the new pod runs",
                real_node::NODE_NAME,
                mebibytes(&limit)
            )));
        };
        let limit = raised.await.unwrap_or_default();
        Ok(Outcome::Healed(format!(
            "memory limit 128Mi → {} (×1.5), the pod runs",
            mebibytes(&limit)
        )))
    }

    async fn stale_job(&self, name: &'static str, budget: &mut Budget) -> anyhow::Result<Outcome> {
        self.label(name, NAMESPACE, "nightly-report");
        let job = faults::completed_job(
            &self.client,
            NAMESPACE,
            "nightly-report",
            Duration::from_secs(25 * 3600),
        )
        .await?;
        let uid = job.uid().context("uid")?;
        let action = self
            .follow(
                budget,
                "the stale Job deleted",
                |t| t.uid == uid,
                Some(ActionType::DeleteJob),
            )
            .await?;
        Ok(match action.phase() {
            Phase::Succeeded => Outcome::Healed("Job nightly-report deleted".to_owned()),
            _ => unhealed(&action),
        })
    }

    async fn hpa(
        &self,
        name: &'static str,
        budget: &mut Budget,
        started: &mut Started,
    ) -> anyhow::Result<Outcome> {
        self.label(name, NAMESPACE, "api");
        let params = HpaAtMax {
            min_replicas: 1,
            max_replicas: 3,
            target_cpu_percent: 50,
            current_cpu_percent: 95,
        };
        let uid = faults::hpa_at_max(&self.client, NAMESPACE, "api", params)
            .await?
            .uid()
            .context("uid")?;
        // The local cluster runs no HPA controller: play its part.
        started.tasks.push(faults::hpa_controller(
            self.client.clone(),
            NAMESPACE.to_owned(),
            "api".to_owned(),
            4,
        ));
        let action = self
            .follow(
                budget,
                "the HPA's maxReplicas raised",
                |t| t.uid == uid,
                Some(ActionType::ScaleHpa),
            )
            .await?;
        if action.phase() != Phase::Succeeded {
            return Ok(unhealed(&action));
        }
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(self.client.clone(), NAMESPACE);
        let max = hpas.get("api").await?.spec.map_or(0, |s| s.max_replicas);
        Ok(Outcome::Healed(format!("maxReplicas 3 → {max}")))
    }

    async fn node(
        &self,
        name: &'static str,
        budget: &mut Budget,
        info: &ClusterInfo,
        started: &mut Started,
    ) -> anyhow::Result<Outcome> {
        self.label(name, "", SICK_NODE);
        let node = FakeNode::create(info, &self.client, SICK_NODE).await?;
        started.node = Some(node);
        let nodes: Api<Node> = Api::all(self.client.clone());
        // kwok's stage turns the fault label into Ready=False. The node
        // lifecycle controller then taints the node; the remediator refuses
        // a cordon when the node's spec changed after the snapshot the
        // action came from, so the demo puts the controller's NoSchedule
        // taint on in the same patch (the controller finds it present and
        // changes nothing). Its NoExecute taint still follows ~10 s later.
        let fault = json!({
            "metadata": { "labels": { faults::FAULT_LABEL: "not-ready" } },
            "spec": { "taints": [
                { "key": nanny_test_util::nodes::TEST_NODE_TAINT, "value": SICK_NODE, "effect": "NoSchedule" },
                { "key": "node.kubernetes.io/not-ready", "effect": "NoSchedule" },
            ] },
        });
        nodes
            .patch(SICK_NODE, &PatchParams::default(), &Patch::Merge(&fault))
            .await?;
        let uid = nodes.get(SICK_NODE).await?.uid().context("uid")?;
        let action = self
            .follow(
                budget,
                "the sick node cordoned",
                |t| t.uid == uid,
                Some(ActionType::CordonNode),
            )
            .await?;
        let cordoned = nodes
            .get(SICK_NODE)
            .await?
            .spec
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        Ok(match action.phase() {
            Phase::Succeeded if cordoned => {
                Outcome::Healed(format!("node {SICK_NODE} cordoned: no new pods land there"))
            }
            _ => unhealed(&action),
        })
    }

    async fn pvc(
        &self,
        name: &'static str,
        budget: &mut Budget,
        started: &mut Started,
    ) -> anyhow::Result<Outcome> {
        self.label(name, NAMESPACE, "data");
        let claim =
            faults::pvc_nearly_full(&self.client, NAMESPACE, "data", 1 << 30, 970 << 20).await?;
        let uid = claim.uid().context("uid")?;
        // The local cluster has no volume resizer either.
        started.tasks.push(faults::volume_resizer(
            self.client.clone(),
            NAMESPACE.to_owned(),
            "data".to_owned(),
        ));
        let action = self
            .follow(
                budget,
                "the claim expanded",
                |t| t.uid == uid,
                Some(ActionType::ExpandPvc),
            )
            .await?;
        if action.phase() != Phase::Succeeded {
            return Ok(unhealed(&action));
        }
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), NAMESPACE);
        let size = claims
            .get("data")
            .await?
            .spec
            .and_then(|s| s.resources)
            .and_then(|r| r.requests)
            .and_then(|r| r.get("storage").map(|q| q.0.clone()))
            .unwrap_or_default();
        Ok(Outcome::Healed(format!(
            "claim data 1Gi → {}",
            mebibytes(&size)
        )))
    }

    async fn protected(&self, name: &'static str, budget: &mut Budget) -> anyhow::Result<Outcome> {
        self.label(name, "kube-system", SYSTEM_APP);
        faults::crash_loop(&self.client, "kube-system", SYSTEM_APP, 1).await?;
        let action = self
            .follow(
                budget,
                "the kube-system action decided",
                |t| t.namespace == "kube-system" && t.name.starts_with(SYSTEM_APP),
                None,
            )
            .await;
        let _ = Api::<Deployment>::namespaced(self.client.clone(), "kube-system")
            .delete(SYSTEM_APP, &DeleteParams::default())
            .await;
        let action = action?;
        Ok(match action.phase() {
            Phase::Denied => {
                let rules = action
                    .status
                    .and_then(|s| s.verdict)
                    .map(|v| v.matched_rules.join(", "))
                    .unwrap_or_default();
                Outcome::Refused(format!("{:?} denied by {rules}", action.spec.action.type_))
            }
            other => Outcome::Failed(format!(
                "expected the gate to deny, got {}",
                describe(&action, other)
            )),
        })
    }
}

/// `201326592` → `192Mi`; anything else unchanged.
pub(super) fn mebibytes(quantity: &str) -> String {
    match quantity.parse::<u64>() {
        Ok(bytes) if bytes % (1 << 20) == 0 => format!("{}Mi", bytes >> 20),
        _ => quantity.to_owned(),
    }
}
