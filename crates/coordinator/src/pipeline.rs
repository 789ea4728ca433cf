//! One policy's pipeline: the collector's snapshot stream of the policy's
//! scope → the analyzer → the action driver.
//!
//! The stream is read continuously and reassembled; analysis always takes
//! the newest snapshot and skips the ones that arrived while the previous
//! analysis ran, so a slow analyzer (an LLM on a busy GPU) slows nothing
//! down and nothing queues up without bound.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::jiff::Timestamp;
use nanny_common::{
    client::{Replicas, TracedChannel},
    snapshot::{ReadError, SnapshotView},
};
use nanny_crd::HealingPolicy;
use nanny_proto::v1::{
    AnalyzeSnapshotRequest, AnalyzeSnapshotResponse, ClusterSnapshot, IncidentRef, Issue, Scope,
    TriedAction, WatchRequest, analyzer_client::AnalyzerClient, collector_client::CollectorClient,
};
use tokio::time::Instant;

use crate::{actions::Driver, error::Error, snapshots::Snapshots};

/// How a policy's pipeline is doing, for its status conditions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The collector stream is open and has delivered a snapshot.
    pub collector_connected: bool,
    /// The last collector or analyzer error, if the last attempt failed.
    pub error: Option<String>,
    /// The analyzer answered rules-only (LLM skipped, down or slow).
    pub rules_only: bool,
    /// RFC 3339 time of the last analysis.
    pub last_analysis: Option<String>,
    /// The policy disables AI analysis: rules only by choice.
    pub ai_disabled: bool,
}

/// Shared, mutable [`State`].
pub type SharedState = Arc<Mutex<State>>;

/// Everything a pipeline needs.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The policy as it was when the pipeline started.
    pub policy: Arc<HealingPolicy>,
    /// `namespace/name` of the policy.
    pub policy_ref: String,
    /// Collector channel.
    pub collector: TracedChannel,
    /// Analyzer channel (balanced over its replicas).
    pub analyzer: TracedChannel,
    /// The analyzer's replicas, for routing model questions by incident.
    pub replicas: Replicas,
    /// Where recommendations go.
    pub driver: Driver,
    /// Where snapshots go.
    pub snapshots: Snapshots,
    /// Reported in the policy's status.
    pub state: SharedState,
    /// Longest wait for one analysis.
    pub analyze_timeout: Duration,
}

/// Re-analyze an unchanged set of issues at most this often.
const REANALYZE: Duration = Duration::from_secs(30);

/// Model-lane tasks one policy runs at most (each lists the incidents of
/// one changed picture, then waits for the answers about the new ones).
const MODEL_TASKS: usize = 32;

/// Incidents one policy has asked about and awaits answers for, at most.
const INCIDENTS_IN_FLIGHT: usize = 64;

/// The incidents a policy's model lane awaits answers about, by
/// `fingerprint@version`: each version is asked about once at a time, and
/// a new incident, or one whose evidence or rule actions changed, is asked
/// about at once, however many older questions wait.
#[derive(Debug, Clone, Default)]
struct InFlight(Arc<Mutex<HashSet<String>>>);

impl InFlight {
    /// Claims those of `incidents` not yet awaited (within the bound);
    /// released when the claim is dropped, answered or not.
    fn claim(&self, incidents: &[IncidentRef]) -> Claim {
        let mut claimed = Vec::new();
        if let Ok(mut awaited) = self.0.lock() {
            for incident in incidents {
                if awaited.len() >= INCIDENTS_IN_FLIGHT {
                    break;
                }
                let key = format!("{}@{}", incident.fingerprint, incident.version);
                if awaited.insert(key.clone()) {
                    claimed.push(key);
                }
            }
        }
        Claim {
            set: self.clone(),
            incidents: claimed,
        }
    }
}

/// Incidents claimed by one model-lane task.
struct Claim {
    set: InFlight,
    incidents: Vec<String>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut awaited) = self.set.0.lock() {
            for incident in &self.incidents {
                awaited.remove(incident);
            }
        }
    }
}

impl Pipeline {
    /// Runs until the task is aborted.
    pub async fn run(self) {
        let reader = tokio::spawn(self.clone().read_snapshots());
        self.analyze_loop().await;
        reader.abort();
    }

    fn set(&self, update: impl FnOnce(&mut State)) {
        if let Ok(mut state) = self.state.lock() {
            update(&mut state);
        }
    }

    /// Keeps the collector stream open, reconnecting with backoff.
    async fn read_snapshots(self) {
        let mut wait = Duration::from_millis(200);
        loop {
            let started = Instant::now();
            match self.stream_once().await {
                Ok(()) => {
                    tracing::info!(policy = %self.policy_ref, "Collector stream ended; reconnecting.")
                }
                Err(error) => {
                    tracing::warn!(%error, policy = %self.policy_ref, "Collector stream failed; reconnecting.");
                    self.set(|s| {
                        s.collector_connected = false;
                        s.error = Some(error.to_string());
                    });
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                wait = Duration::from_millis(200);
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    async fn stream_once(&self) -> Result<(), Error> {
        let spec = &self.policy.spec;
        let request = WatchRequest {
            scope: Some(Scope {
                namespaces: spec.scope.namespaces.clone(),
                label_selector: spec.scope.label_selector.clone().unwrap_or_default(),
            }),
            resume_from_generation: 0,
        };
        let mut stream = CollectorClient::new(self.collector.clone())
            .watch_snapshots(request)
            .await
            .map_err(|s| Error::peer("collector", s))?
            .into_inner();
        let mut view = SnapshotView::default();
        loop {
            match view.next_whole(&mut stream).await {
                Ok(Some(snapshot)) => {
                    self.snapshots.publish(&self.policy_ref, Arc::new(snapshot));
                    self.set(|s| s.collector_connected = true);
                }
                Ok(None) => break,
                Err(ReadError::Status(status)) => return Err(Error::peer("collector", *status)),
                // A gap or mismatch: start over with a FULL snapshot.
                Err(ReadError::Stream(error)) => {
                    return Err(Error::invalid("collector stream", error.to_string()));
                }
            }
        }
        Ok(())
    }

    /// Analyzes the newest snapshot whenever its issues change: the rules
    /// at once, and — when the policy enables AI — the model in a lane of
    /// its own, so a slow model never holds the rules up.
    async fn analyze_loop(&self) {
        let model = self.policy.spec.ai.enabled.then(|| {
            let lane = self.clone();
            tokio::spawn(async move { lane.lane(Lane::Model).await })
        });
        if model.is_none() {
            self.set(|s| s.ai_disabled = true);
        }
        self.lane(Lane::Rules).await;
        if let Some(model) = model {
            model.abort();
        }
    }

    async fn lane(&self, lane: Lane) {
        let Some(mut latest) = self.snapshots.subscribe(&self.policy_ref) else {
            return;
        };
        // The issues last analyzed (evidence included: a rule may wait for a
        // restart count), so an unchanged picture is not analyzed again.
        let mut last: Option<(Vec<Issue>, Instant)> = None;
        // The model lane asks about every changed picture without waiting
        // for the previous answer (the analyzer's queue orders, joins and
        // caches the questions), so an incident that heals while the model
        // is busy is still explained. Dropped with the lane: aborted.
        let mut asking = tokio::task::JoinSet::new();
        let in_flight = InFlight::default();
        loop {
            let snapshot = {
                let Ok(()) = latest.changed().await else {
                    return;
                };
                latest.borrow_and_update().clone()
            };
            let Some(snapshot) = snapshot else { continue };
            let mut issues = snapshot.issues.clone();
            for issue in &mut issues {
                issue.last_seen = None;
            }
            issues.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
            let unchanged = last
                .as_ref()
                .is_some_and(|(seen, at)| *seen == issues && at.elapsed() < REANALYZE);
            if issues.is_empty() || unchanged {
                continue;
            }
            if lane == Lane::Model {
                while asking.try_join_next().is_some() {}
                if asking.len() >= MODEL_TASKS {
                    // Asked enough; the next change asks again.
                    tracing::debug!(policy = %self.policy_ref, tasks = asking.len(), "Model lane busy; this picture is skipped.");
                    continue;
                }
                let (this, in_flight) = (self.clone(), in_flight.clone());
                asking.spawn(async move {
                    if let Err(error) = this.ask_model(&snapshot, &in_flight).await {
                        tracing::warn!(%error, policy = %this.policy_ref, "Model analysis failed; the rules answered alone.");
                        this.set(|s| s.error = Some(error.to_string()));
                    }
                });
                last = Some((issues, Instant::now()));
                continue;
            }
            match self.analyze(&snapshot, lane).await {
                Ok(()) => last = Some((issues, Instant::now())),
                Err(error) => {
                    tracing::warn!(%error, policy = %self.policy_ref, ?lane, "Analysis failed; retrying with the next snapshot.");
                    // An outage passes; a refusal (a setting of the policy
                    // the analyzer cannot apply) stays until the policy
                    // changes, which restarts this pipeline.
                    let pause = if error.is_transient() {
                        Duration::from_secs(1)
                    } else {
                        REANALYZE
                    };
                    self.set(|s| s.error = Some(error.to_string()));
                    tokio::time::sleep(pause).await;
                    // Analyze again even if nothing changes meanwhile.
                    latest.mark_changed();
                }
            }
        }
    }

    async fn analyze(&self, snapshot: &ClusterSnapshot, lane: Lane) -> Result<(), Error> {
        let request = self.request(snapshot, lane == Lane::Rules, Vec::new(), Vec::new());
        let response = self.call(self.analyzer.clone(), request).await?;
        self.apply(snapshot, lane, &response).await;
        Ok(())
    }

    /// The model lane: the snapshot's incidents, as a rules-only analysis
    /// lists them; those not already awaited are asked about, each on the
    /// analyzer replica that owns its fingerprint (with one replica, on
    /// it), so every policy's question about one incident meets the same
    /// replica's queue and cache and no incident is asked twice
    /// cluster-wide. Replicas are asked concurrently; one that fails
    /// leaves the others' answers standing.
    async fn ask_model(
        &self,
        snapshot: &ClusterSnapshot,
        in_flight: &InFlight,
    ) -> Result<(), Error> {
        // What was tried is part of each incident's evidence, so a changed
        // outcome is a new version, asked about again.
        let tried = self.driver.tried(&self.policy_ref);
        let listed = self
            .call(
                self.analyzer.clone(),
                self.request(snapshot, true, Vec::new(), tried.clone()),
            )
            .await?;
        let claim = in_flight.claim(&listed.incidents);
        tracing::debug!(policy = %self.policy_ref, listed = listed.incidents.len(), asked = ?claim.incidents, "Model lane: incidents listed.");
        if claim.incidents.is_empty() {
            return Ok(());
        }
        let fingerprints: Vec<String> = claim
            .incidents
            .iter()
            .map(|key| {
                key.split_once('@')
                    .map_or(key.as_str(), |(f, _)| f)
                    .to_owned()
            })
            .collect();
        let routes: Vec<(String, TracedChannel, Vec<String>)> = if self.replicas.len() > 1 {
            self.replicas
                .route(&fingerprints)
                .into_iter()
                .map(|r| (r.replica, r.channel, r.keys))
                .collect()
        } else {
            vec![("analyzer".to_owned(), self.analyzer.clone(), fingerprints)]
        };
        let answers =
            futures::future::join_all(routes.into_iter().map(|(replica, channel, keys)| {
                let request = self.request(snapshot, false, keys, tried.clone());
                async move { (replica, self.call(channel, request).await) }
            }))
            .await;
        drop(claim);
        let mut failed = None;
        for (replica, answer) in answers {
            match answer {
                Ok(response) => self.apply(snapshot, Lane::Model, &response).await,
                Err(error) => {
                    tracing::warn!(%error, %replica, policy = %self.policy_ref, "An analyzer replica did not answer about its incidents.");
                    failed = Some(error);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    fn request(
        &self,
        snapshot: &ClusterSnapshot,
        rules_only: bool,
        incidents: Vec<String>,
        tried: Vec<TriedAction>,
    ) -> AnalyzeSnapshotRequest {
        AnalyzeSnapshotRequest {
            snapshot: Some(snapshot.clone()),
            policy_ref: self.policy_ref.clone(),
            rules_only,
            settings: Some(crate::convert::analysis_settings(&self.policy.spec)),
            debug: false,
            incidents,
            tried,
        }
    }

    async fn call(
        &self,
        channel: TracedChannel,
        request: AnalyzeSnapshotRequest,
    ) -> Result<AnalyzeSnapshotResponse, Error> {
        let mut client = AnalyzerClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        Ok(
            tokio::time::timeout(self.analyze_timeout, client.analyze_snapshot(request))
                .await
                .map_err(|_| {
                    Error::peer(
                        "analyzer",
                        tonic::Status::deadline_exceeded("analysis timed out"),
                    )
                })?
                .map_err(|s| Error::peer("analyzer", s))?
                .into_inner(),
        )
    }

    /// Hands an answer's recommendations and explanations to the driver.
    async fn apply(
        &self,
        snapshot: &ClusterSnapshot,
        lane: Lane,
        response: &AnalyzeSnapshotResponse,
    ) {
        self.set(|s| {
            if lane == Lane::Model {
                s.rules_only = response.rules_only;
            }
            s.error = None;
            s.last_analysis = Some(Timestamp::now().to_string());
        });
        tracing::debug!(policy = %self.policy_ref, ?lane, recommendations = response.recommendations.len(), rules_only = response.rules_only, "Snapshot analyzed.");
        for rec in &response.recommendations {
            // The model lane's answer repeats the rules' recommendations:
            // the driver absorbs them into the actions already open, and
            // attaches the model's explanation to them.
            self.driver.propose(&self.policy, rec, snapshot).await;
            self.driver.note_incident(&self.policy, rec);
            if rec.explanation.is_some() {
                let outcome = self.driver.explain(&self.policy, rec).await;
                tracing::debug!(policy = %self.policy_ref, recommendation = %rec.id, outcome, "Model explanation.");
            }
        }
    }
}

/// Which analysis a lane asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// The deterministic rules only: fast, on every change.
    Rules,
    /// Rules and the model: as often as the model keeps up.
    Model,
}
