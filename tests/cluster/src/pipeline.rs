//! The end-to-end pipeline harness shared by `pipeline.rs`, `chaos.rs` and
//! the pipeline bench: a HealingPolicy in a test namespace, all five
//! services as processes, and helpers to inject faults and follow the
//! HealingActions they lead to.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use nanny_crd::{ActionType, HealingAction, HealingPolicy, Phase};
use nanny_test_util::{
    cluster::{eventually, install_crds},
    faults::{self, PodSpec},
    stack::{Options, Stack},
};
use serde_json::json;

use crate::Fixture;

/// How long a scenario step may take.
pub const WAIT: Duration = Duration::from_secs(90);

/// A test namespace with a HealingPolicy and the five services watching it.
#[allow(missing_debug_implementations)] // Fixture holds a kube::Client
pub struct Harness {
    /// The cluster and the test namespace.
    pub fx: Fixture,
    /// The running services.
    pub stack: Stack,
    /// HealingActions in the test namespace.
    pub actions: Api<HealingAction>,
}

/// The test policy: `mode`, the test namespace and kube-system in scope,
/// every scenario action allowed.
pub fn policy(ns: &str, mode: &str) -> HealingPolicy {
    serde_json::from_value(json!({
        "apiVersion": "nanny.ai/v1alpha1",
        "kind": "HealingPolicy",
        "metadata": { "name": "default", "namespace": ns },
        "spec": {
            "mode": mode,
            "scope": { "namespaces": [ns, "kube-system"] },
            "actions": nanny_test_util::scenarios::seed_actions(),
            "limits": {
                "maxActionsPerHour": 100, "maxActionsPerNamespacePerHour": 100,
                "cooldownSeconds": 120, "maxDisruptionPercent": 50,
            },
            "ai": { "enabled": true, "minConfidence": 0.75, "maxRecommendations": 5 },
            "verificationTimeoutSeconds": 30,
        },
    }))
    .unwrap()
}

/// [`policy`] in Auto mode with crash-loop restarts only (the rolling
/// restart off for a single replica), judged within 10 s, a 1 s cooldown
/// and no breaker in the way: the ladder alone stops a workload after two
/// restarts that did not help, then escalates.
pub fn restarts_ladder_policy(ns: &str) -> HealingPolicy {
    let mut policy = policy(ns, "Auto");
    policy.spec.rules.crashloop_rollout_percent = Some(100);
    policy.spec.verification_timeout_seconds = 10;
    policy.spec.limits.cooldown_seconds = 1;
    policy.spec.limits.breaker_failure_threshold = 100;
    policy.spec.ladder = serde_json::from_value(json!({
        "maxIneffective": 2,
        "quietSeconds": 600,
        "steps": [{ "issue": "CrashLoopBackOff", "rungs": ["RestartPod", "Escalate"] }],
    }))
    .unwrap();
    policy
}

impl Harness {
    /// Installs the CRDs, creates the policy and starts the services;
    /// `None` (skip) without a cluster outside CI.
    pub async fn start(test: &str, mode: &str) -> Option<Self> {
        Self::start_with(test, mode, Vec::new()).await
    }

    /// [`Self::start`] with extra service environment.
    pub async fn start_with(
        test: &str,
        mode: &str,
        extra_env: Vec<(&'static str, String, String)>,
    ) -> Option<Self> {
        let fx = Fixture::new(test).await?;
        Some(Self::with_fixture(fx, mode, extra_env).await)
    }

    /// [`Self::start_with`] in a namespace the test already prepared.
    pub async fn with_fixture(
        fx: Fixture,
        mode: &str,
        extra_env: Vec<(&'static str, String, String)>,
    ) -> Self {
        let policy = policy(fx.ns(), mode);
        Self::with_policy(fx, &policy, extra_env).await
    }

    /// [`Self::with_fixture`] with a policy of the test's own.
    pub async fn with_policy(
        fx: Fixture,
        policy: &HealingPolicy,
        extra_env: Vec<(&'static str, String, String)>,
    ) -> Self {
        install_crds(&fx.client).await.unwrap();
        let policies: Api<HealingPolicy> = Api::namespaced(fx.client.clone(), fx.ns());
        policies
            .create(&PostParams::default(), policy)
            .await
            .unwrap();
        let audit = std::env::temp_dir().join(format!("{}-audit.jsonl", fx.ns()));
        let stack = Stack::start(Options {
            kubeconfig: fx.cluster.kubeconfig.clone(),
            prometheus_url: fx.cluster.prometheus_url.clone(),
            namespace: fx.ns().to_owned(),
            audit_path: audit,
            extra_env,
        })
        .await
        .unwrap();
        let actions = Api::namespaced(fx.client.clone(), fx.ns());
        Self { fx, stack, actions }
    }

    /// How many actions the remediator executed on the object with `uid`:
    /// its records (one ConfigMap per action id) that name the target.
    pub async fn executions_on(&self, uid: &str) -> usize {
        let records: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(self.fx.client.clone(), self.fx.ns());
        records
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|r| {
                r.name_any().starts_with("nanny-action-")
                    && r.data
                        .as_ref()
                        .and_then(|d| d.get("record.json"))
                        .is_some_and(|j| j.contains(uid))
            })
            .count()
    }

    /// Every HealingAction on the object with `uid`.
    pub async fn actions_on(&self, uid: &str) -> Vec<HealingAction> {
        self.actions
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|a| a.spec.target.uid == uid)
            .collect()
    }

    /// Waits for an action on any of `uids` (a pod and its workload: the
    /// rules may act on either) the gate denied.
    pub async fn denied_on(&self, uids: &[&str]) -> HealingAction {
        eventually(&format!("an action on {uids:?} denied"), WAIT, || async {
            for uid in uids {
                if let Some(action) = self
                    .actions_on(uid)
                    .await
                    .into_iter()
                    .find(|a| a.status.as_ref().and_then(|s| s.phase) == Some(Phase::Denied))
                {
                    return Ok(Some(action));
                }
            }
            Ok(None)
        })
        .await
        .unwrap()
    }

    /// Waits for the (single) action on `uid` to reach `phase`.
    pub async fn wait_phase(&self, uid: &str, phase: Phase) -> HealingAction {
        let result = eventually(&format!("an action on {uid} in {phase}"), WAIT, || async {
            let actions = self.actions_on(uid).await;
            Ok(actions
                .into_iter()
                .find(|a| a.status.as_ref().and_then(|s| s.phase) == Some(phase)))
        })
        .await;
        match result {
            Ok(action) => action,
            Err(error) => panic!(
                "{error}\nactions: {:#?}\n{}",
                self.actions.list(&Default::default()).await.unwrap().items,
                self.stack.logs()
            ),
        }
    }

    /// Every HealingAction of the namespace in one line each (type, target,
    /// phase, the gate's rules), then the services' logs: what a failed
    /// wait prints.
    pub async fn actions_seen(&self) -> String {
        let actions = self.actions.list(&Default::default()).await.unwrap().items;
        let mut text = String::from("actions:\n");
        for a in actions {
            let status = a.status.unwrap_or_default();
            text.push_str(&format!(
                "  {:?} {} {}: {:?} {:?} {:?}\n",
                a.spec.action.type_,
                a.spec.target.kind,
                a.spec.target.name,
                status.phase,
                status.verdict.map(|v| v.matched_rules).unwrap_or_default(),
                status
                    .result
                    .map(|r| format!("{}: {} {}", r.outcome, r.verification, r.error))
            ));
        }
        text + &self.stack.logs()
    }

    /// [`eventually`], failing with every action and the services' logs
    /// ([`Self::actions_seen`]) when `check` is not satisfied in time.
    pub async fn eventually<T, F, Fut>(&self, what: &str, timeout: Duration, check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        match eventually(what, timeout, check).await {
            Ok(value) => value,
            Err(error) => panic!("{error}\n{}", self.actions_seen().await),
        }
    }

    pub async fn running_pods(&self, app: &str, count: usize) -> Vec<Pod> {
        nanny_test_util::scenarios::running_pods(&self.fx.client, self.fx.ns(), app, count, WAIT)
            .await
            .unwrap()
    }
}

impl Harness {
    /// Approves the action as `nannyctl approve` does: `spec.approval`.
    pub async fn approve(&self, action: &HealingAction) {
        let patch = json!({ "spec": { "approval": {
            "decision": "Approve", "by": "pipeline-test", "at": k8s_openapi::jiff::Timestamp::now().to_string(),
        } } });
        self.actions
            .patch(
                &action.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
            .unwrap();
    }

    /// Waits for an action on `uid` awaiting approval, approves it, and
    /// waits for it to succeed.
    pub async fn approve_and_wait(&self, uid: &str, action_type: ActionType) -> HealingAction {
        let pending = self.wait_phase(uid, Phase::PendingApproval).await;
        assert_eq!(pending.spec.action.type_, action_type);
        self.approve(&pending).await;
        self.wait_phase(uid, Phase::Succeeded).await
    }
}

/// Marks a running pod as crash-looping (kwok's stage selects the label):
/// its replacement, built from the unchanged template, is healthy.
pub async fn crash_one_pod(pods: &Api<Pod>, pod: &Pod) {
    pods.patch(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": { faults::FAULT_LABEL: "crash-loop" } } })),
    )
    .await
    .unwrap();
}

/// Asserts that `text` (an explanation) says every one of `words`.
///
/// # Panics
/// When it does not, naming the words and the text.
pub fn says(text: &str, words: &[&str]) {
    for words in words {
        assert!(text.contains(words), "{words:?} not in {text:?}");
    }
}

/// The highest restart count of the pod's containers.
pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| {
            cs.iter().map(|c| c.restart_count).max().unwrap_or(0)
        })
}

/// The analyzer's crash-loop rule acts from this many restarts on.
pub const MIN_RESTARTS: i32 = 3;

/// Crash loop → the pod is restarted automatically. Returns the time from
/// the crash loop reaching the rule's threshold in the API to the pod's
/// deletion.
pub async fn crash_loop_restarted(h: &Harness, app: &str) -> Duration {
    let pods: Api<Pod> = Api::namespaced(h.fx.client.clone(), h.fx.ns());
    faults::deployment(&h.fx.client, h.fx.ns(), app, 3, &PodSpec::default())
        .await
        .unwrap();
    let victim = h.running_pods(app, 3).await.remove(0);
    let uid = victim.uid().unwrap();
    crash_one_pod(&pods, &victim).await;
    let mut visible = None;
    let deadline = Instant::now() + WAIT;
    loop {
        let pod = pods.get_opt(&victim.name_any()).await.unwrap();
        let Some(pod) = pod.filter(|p| {
            p.uid().as_deref() == Some(&uid) && p.metadata.deletion_timestamp.is_none()
        }) else {
            break;
        };
        if visible.is_none() && restarts(&pod) >= MIN_RESTARTS {
            visible = Some(Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "the crash-looping pod was not replaced\n{}",
            h.stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let healed = visible
        .expect("the crash loop was seen before the restart")
        .elapsed();
    let action = h.wait_phase(&uid, Phase::Succeeded).await;
    assert_eq!(action.spec.action.type_, ActionType::RestartPod);
    // Executed once: the remediator holds one record for the target (a
    // retried Execute call is answered from it, never acted on again).
    assert_eq!(
        h.executions_on(&uid).await,
        1,
        "executed once: {:?}",
        action.status
    );
    assert_eq!(
        h.actions_on(&uid).await.len(),
        1,
        "one action, not duplicated"
    );
    healed
}
