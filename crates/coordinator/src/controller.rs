//! The coordinator's control loop: watches HealingPolicies and
//! HealingActions, runs one pipeline per policy while this replica leads,
//! resumes unfinished actions, and keeps each policy's status current.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use futures::{Stream, StreamExt as _};
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, Client, ResourceExt as _,
    api::{Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt as _, controller,
        reflector::{self, Store},
        watcher,
    },
};
use nanny_crd::{Condition, HealingAction, HealingPolicy, HealingPolicyStatus, POLICY_LABEL};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use crate::{
    actions::{self, Driver},
    history,
    pipeline::{Pipeline, SharedState, State},
    retention::Retention,
    shared::Context,
    snapshots::Snapshots,
};

struct Running {
    generation: Option<i64>,
    task: JoinHandle<()>,
    state: SharedState,
}

/// The HealingPolicy reflector (its store, and the stream that drives it)
/// and the HealingAction controller, whose own watch keeps its store
/// current ([`Controller::store`]).
pub fn watches(
    client: &Client,
    namespace: &str,
    max_in_flight: usize,
) -> (
    Store<HealingPolicy>,
    impl Stream<Item = Arc<HealingPolicy>> + Send + use<>,
    Controller<HealingAction>,
) {
    let (policies, policy_events) = reflect(api::<HealingPolicy>(client, namespace));
    let concurrency = u16::try_from(max_in_flight).unwrap_or(u16::MAX);
    let actions = Controller::new(
        api::<HealingAction>(client, namespace),
        watcher::Config::default(),
    )
    .with_config(controller::Config::default().concurrency(concurrency));
    (policies, policy_events, actions)
}

/// A store of `api`'s objects and the stream that keeps it current (and
/// yields each object as it changes); watch errors are logged and retried.
fn reflect<K>(api: Api<K>) -> (Store<K>, impl Stream<Item = Arc<K>> + Send + use<K>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .filter_map(|r| async move {
            r.map_err(|error| {
                tracing::warn!(%error, kind = %K::kind(&()), "Watch failed; retrying.");
            })
            .ok()
            .map(Arc::new)
        });
    (store, events)
}

fn api<K>(client: &Client, namespace: &str) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    if namespace.is_empty() {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), namespace)
    }
}

/// How long running reconciles may take to finish once `stop` flips.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The control loop; returns when `stop` flips. Two parts run side by
/// side:
/// - the HealingAction controller: kube-runtime's `Controller` calls
///   [`Driver::reconcile`] for each action that changes, that a step asked
///   to see again, or — when this replica becomes the leader — for every
///   action;
/// - the policy loop: one pipeline per policy while leading, policy
///   statuses and retention, on each policy change and every sweep.
pub async fn run(
    ctx: Context,
    driver: Driver,
    retention: Retention,
    policy_events: impl Stream<Item = Arc<HealingPolicy>> + Send + 'static,
    actions: Controller<HealingAction>,
    stop: watch::Receiver<bool>,
) {
    let leader_gained = futures::stream::unfold(ctx.leader.clone(), |mut leader| async move {
        loop {
            leader.changed().await.ok()?;
            if *leader.borrow_and_update() {
                return Some(((), leader));
            }
        }
    });
    let stopped = |mut stop: watch::Receiver<bool>, grace: Duration| async move {
        let _ = stop.wait_for(|s| *s).await;
        tokio::time::sleep(grace).await;
    };
    let actions = actions
        .reconcile_all_on(leader_gained)
        // Running reconciles finish; no new one starts.
        .graceful_shutdown_on(stopped(stop.clone(), Duration::ZERO))
        .run(
            Driver::reconcile,
            Driver::error_policy,
            Arc::new(driver.clone()),
        )
        // A controller whose store never listed (no API server) never ends
        // a graceful shutdown (kube-runtime's runner waits for readiness),
        // and a step may wait on a peer: after a short grace the stream is
        // dropped, which cancels what still runs. Every step is fenced by
        // the resourceVersion it read and is resumed by the next leader.
        .take_until(stopped(stop.clone(), SHUTDOWN_GRACE))
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(%error, "HealingAction controller.");
            }
            std::future::ready(())
        });
    tokio::join!(
        actions,
        policy_loop(ctx, driver, retention, policy_events, stop)
    );
}

/// Pipelines, policy statuses and retention.
async fn policy_loop(
    ctx: Context,
    driver: Driver,
    retention: Retention,
    policy_events: impl Stream<Item = Arc<HealingPolicy>> + Send + 'static,
    mut stop: watch::Receiver<bool>,
) {
    let Context {
        client,
        policies,
        actions,
        snapshots,
        mut leader,
        ..
    } = ctx.clone();
    let mut running: HashMap<String, Running> = HashMap::new();
    // The reflector runs on its own so the store fills while this loop
    // waits; a full queue drops notifications, which the sweep makes up for.
    let (policy_tx, mut policy_rx) = mpsc::channel::<()>(16);
    let policy_reflector = tokio::spawn(async move {
        let mut events = std::pin::pin!(policy_events);
        while events.next().await.is_some() {
            let _ = policy_tx.try_send(());
        }
    });
    let mut sweep = tokio::time::interval(ctx.config.sweep());
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut synced = false;
    loop {
        tokio::select! {
            Some(()) = policy_rx.recv() => {}
            _ = leader.changed() => {}
            _ = sweep.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let leading = *leader.borrow();
        if !leading {
            if !running.is_empty() {
                tracing::info!("Not the leader: stopping every pipeline.");
            }
            stop_all(&mut running, &snapshots);
            synced = false;
            continue;
        }
        if !synced {
            // An action missing from a half-listed store would be proposed
            // twice. (Cut short by shutdown.)
            let ready = tokio::select! {
                ready = ctx.stores_ready() => ready,
                _ = stop.wait_for(|s| *s) => break,
            };
            if !ready {
                tracing::warn!(
                    "The HealingPolicy and HealingAction lists are not complete yet (are the CRDs installed?); retrying."
                );
                continue;
            }
            synced = true;
            tracing::info!(
                policies = policies.state().len(),
                actions = actions.state().len(),
                "Leading: starting pipelines (the action controller resumes unfinished actions)."
            );
        }
        reconcile_pipelines(&ctx, &driver, &mut running);
        update_policy_statuses(&client, &policies, &actions, &running, &driver).await;
        retention.sweep(&client, &actions).await;
    }
    stop_all(&mut running, &snapshots);
    policy_reflector.abort();
}

fn stop_all(running: &mut HashMap<String, Running>, snapshots: &Snapshots) {
    for (key, run) in running.drain() {
        run.task.abort();
        snapshots.remove(&key);
    }
}

/// One pipeline per policy, restarted when the policy's spec changes.
fn reconcile_pipelines(ctx: &Context, driver: &Driver, running: &mut HashMap<String, Running>) {
    let snapshots = &ctx.snapshots;
    let current: HashMap<String, Arc<HealingPolicy>> = ctx
        .policies
        .state()
        .into_iter()
        .map(|p| (actions::key(&p), p))
        .collect();
    running.retain(|key, run| {
        let keep = current
            .get(key)
            .is_some_and(|p| p.metadata.generation == run.generation)
            && !run.task.is_finished();
        if !keep {
            tracing::info!(policy = %key, "Stopping the policy's pipeline.");
            run.task.abort();
            snapshots.remove(key);
        }
        keep
    });
    for (key, policy) in current {
        if running.contains_key(&key) {
            continue;
        }
        tracing::info!(policy = %key, mode = ?policy.spec.mode, "Starting the policy's pipeline.");
        let state = SharedState::default();
        let pipeline = Pipeline {
            policy: policy.clone(),
            policy_ref: key.clone(),
            collector: ctx.peers.collector.clone(),
            analyzer: ctx.peers.analyzer.clone(),
            replicas: ctx.peers.analyzer_replicas.clone(),
            driver: driver.clone(),
            snapshots: snapshots.clone(),
            state: state.clone(),
            analyze_timeout: Duration::from_secs(ctx.config.analyze_timeout_secs),
        };
        running.insert(
            key,
            Running {
                generation: policy.metadata.generation,
                task: tokio::spawn(pipeline.run()),
                state,
            },
        );
    }
}

/// Writes each policy's status when it changed: actions by phase, last
/// activity, Ready / Degraded conditions from its pipeline, and its outcome
/// history (see [`history`]); exports every policy's effectiveness ratios.
async fn update_policy_statuses(
    client: &Client,
    policies: &Store<HealingPolicy>,
    actions: &Store<HealingAction>,
    running: &HashMap<String, Running>,
    driver: &Driver,
) {
    let all_actions = actions.state();
    let mut histories = Vec::new();
    for policy in policies.state() {
        let key = actions::key(&policy);
        let label = key.replace('/', ".");
        let mine: Vec<_> = all_actions
            .iter()
            .filter(|a| {
                a.spec.policy_ref == key
                    || a.labels().get(POLICY_LABEL).is_some_and(|l| *l == label)
            })
            .collect();
        let mut by_phase = BTreeMap::new();
        for action in &mine {
            let phase = action.phase();
            *by_phase.entry(phase.as_str().to_owned()).or_insert(0u32) += 1;
        }
        let last_activity = mine
            .iter()
            .filter_map(|a| a.status.as_ref().and_then(|s| s.phase_since.clone()))
            .max();
        let state = running
            .get(&key)
            .and_then(|r| r.state.lock().ok().map(|s| s.clone()))
            .unwrap_or_default();
        let old = policy.status.clone().unwrap_or_default();
        let status = HealingPolicyStatus {
            observed_generation: policy.metadata.generation,
            actions_by_phase: by_phase,
            last_activity,
            conditions: conditions(&state, &old.conditions),
            outcomes: history::merge(&old.outcomes, mine.iter().map(|a| a.as_ref())),
        };
        histories.extend(status.outcomes.iter().cloned());
        if status == old {
            continue;
        }
        let api: Api<HealingPolicy> =
            Api::namespaced(client.clone(), &policy.namespace().unwrap_or_default());
        let patch = serde_json::json!({ "status": status });
        if let Err(error) = api
            .patch_status(
                &policy.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            tracing::warn!(%error, policy = %key, "Cannot update the policy status.");
        }
    }
    driver.export_effectiveness(&history::effectiveness(&histories));
}

fn conditions(state: &State, old: &[Condition]) -> Vec<Condition> {
    let (ready, ready_reason, ready_message) = match (&state.error, state.collector_connected) {
        (Some(error), _) => (false, "PipelineError", error.clone()),
        (None, false) => (
            false,
            "WaitingForSnapshots",
            "no snapshot from the collector yet".to_owned(),
        ),
        (None, true) => (
            true,
            "Running",
            "snapshots flow and the analyzer answers".to_owned(),
        ),
    };
    let (degraded_reason, degraded_message) = if state.ai_disabled {
        (
            "AiDisabled",
            "the policy disables AI analysis: rules only by choice",
        )
    } else if state.rules_only {
        (
            "RulesOnly",
            "the analyzer answers with rules only (its LLM is disabled, down or slow)",
        )
    } else {
        ("AnalyzerFull", "rules and the LLM are both in use")
    };
    [
        ("Ready", ready, ready_reason, ready_message),
        (
            "Degraded",
            state.rules_only && !state.ai_disabled,
            degraded_reason,
            degraded_message.to_owned(),
        ),
    ]
    .into_iter()
    .map(|(type_, on, reason, message)| {
        let status = if on { "True" } else { "False" };
        // The transition time moves only when the status does.
        let since = old
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or_else(
                || Timestamp::now().to_string(),
                |c| c.last_transition_time.clone(),
            );
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            last_transition_time: since,
        }
    })
    .collect()
}
