//! The `nanny.v1.Analyzer` gRPC service: one-shot requests and snapshot
//! streams, each handed to [`Analysis`].

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::SystemTime,
};

use nanny_common::snapshot::SnapshotView;
use nanny_proto::v1::{
    AnalyzeSnapshotRequest, AnalyzeSnapshotResponse, ClusterSnapshot, Issue, Recommendation,
    SnapshotKind, analyzer_server::Analyzer,
};
use tokio::sync::mpsc;
use tokio_stream::{StreamExt as _, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use crate::analysis::{Analysis, ModelAnswer, essence};
use crate::consult::Ask;
use crate::error::Error;

/// One `Analyze` stream's state: the materialised snapshot and the issues
/// already analysed, so each issue yields recommendations when it is new or
/// changes, not on every delta.
#[derive(Debug, Default)]
pub struct StreamState {
    view: SnapshotView,
    seen: HashMap<String, Issue>,
}

/// A whole snapshot from a stream and the fingerprints of its new or
/// changed issues (never empty).
#[derive(Debug)]
pub struct Changed {
    /// The materialised FULL snapshot.
    pub snapshot: ClusterSnapshot,
    /// Fingerprints of the issues to act on.
    pub fingerprints: BTreeSet<String>,
}

impl Changed {
    /// Keeps the recommendations that address a new or changed issue.
    pub fn filter(&self, recommendations: &mut Vec<Recommendation>) {
        recommendations.retain(|r| {
            r.issue_fingerprints
                .iter()
                .any(|f| self.fingerprints.contains(f))
        });
    }
}

impl StreamState {
    /// Applies one stream message; once a whole snapshot is in and some
    /// issue is new or changed, returns it.
    ///
    /// # Errors
    /// [`Error::Stream`] when the message cannot apply.
    pub fn push(&mut self, message: ClusterSnapshot) -> Result<Option<Changed>, Error> {
        if !self.view.push(message)? {
            return Ok(None);
        }
        let mut fingerprints = BTreeSet::new();
        let mut seen = HashMap::with_capacity(self.view.issues().len());
        for (fingerprint, issue) in self.view.issues() {
            let essence = essence(issue);
            if self.seen.get(fingerprint) != Some(&essence) {
                fingerprints.insert(fingerprint.clone());
            }
            seen.insert(fingerprint.clone(), essence);
        }
        // Resolved issues drop out, so their return counts as new.
        self.seen = seen;
        if fingerprints.is_empty() {
            return Ok(None);
        }
        Ok(Some(Changed {
            snapshot: self.view.snapshot(),
            fingerprints,
        }))
    }
}

/// The `nanny.v1.Analyzer` implementation.
#[derive(Debug, Clone)]
pub struct AnalyzerService {
    analysis: Arc<Analysis>,
}

impl AnalyzerService {
    /// Serves `analysis`.
    pub fn new(analysis: Analysis) -> Self {
        Self {
            analysis: Arc::new(analysis),
        }
    }

    async fn analyze_one(
        &self,
        request: AnalyzeSnapshotRequest,
    ) -> Result<AnalyzeSnapshotResponse, Error> {
        let snapshot = request.snapshot.ok_or(Error::MissingSnapshot)?;
        let kind = snapshot.kind;
        let whole = matches!(
            SnapshotKind::try_from(kind),
            Ok(SnapshotKind::Full | SnapshotKind::Unspecified)
        ) && snapshot.chunk_count <= 1;
        if !whole {
            return Err(Error::NotWhole {
                kind,
                count: snapshot.chunk_count,
            });
        }
        let settings = self
            .analysis
            .settings(request.settings.as_ref(), !request.rules_only)?;
        let now = SystemTime::now();
        let mut recommendations = self.analysis.analyze(&snapshot, now, &settings);
        let incidents =
            self.analysis
                .incidents(&snapshot, &mut recommendations, &settings, &request.tried);
        let answer = if request.rules_only {
            ModelAnswer::skipped(request.debug, "rules_only_requested")
        } else {
            let ask = Ask {
                only: &request.incidents,
                tried: &request.tried,
                debug: request.debug,
            };
            self.analysis
                .consult_model(&snapshot, &mut recommendations, now, &settings, ask)
                .await
        };
        let rules_only = answer.separate.is_none();
        recommendations.extend(answer.separate.unwrap_or_default());
        Ok(AnalyzeSnapshotResponse {
            recommendations,
            rules_only,
            exchange: answer.exchange,
            incident_outcomes: answer.outcomes.into_iter().collect(),
            incidents,
        })
    }
}

const ANALYZE: &str = "Analyze";
const ANALYZE_SNAPSHOT: &str = "AnalyzeSnapshot";

/// Sends `recommendations`; false when the client left.
async fn send_all(
    analysis: &Analysis,
    tx: &mpsc::Sender<Result<Recommendation, Status>>,
    recommendations: Vec<Recommendation>,
) -> bool {
    for recommendation in recommendations {
        analysis.count_sent(&recommendation);
        if tx.send(Ok(recommendation)).await.is_err() {
            return false;
        }
    }
    true
}

#[tonic::async_trait]
impl Analyzer for AnalyzerService {
    type AnalyzeStream = ReceiverStream<Result<Recommendation, Status>>;

    #[tracing::instrument(skip_all)]
    async fn analyze(
        &self,
        request: Request<Streaming<ClusterSnapshot>>,
    ) -> Result<Response<Self::AnalyzeStream>, Status> {
        let mut messages = request.into_inner();
        // Small buffer: a slow reader slows the analysis instead of piling
        // recommendations up in memory.
        let (tx, rx) = mpsc::channel(64);
        let analysis = self.analysis.clone();
        tokio::spawn(async move {
            let mut state = StreamState::default();
            let outcome = loop {
                let Some(next) = messages.next().await else {
                    break "ok";
                };
                let message = match next {
                    Ok(message) => message,
                    Err(status) => {
                        tracing::debug!(%status, "Snapshot stream broke.");
                        break "client_error";
                    }
                };
                let id = message.id.clone();
                let changed = match state.push(message) {
                    Ok(Some(changed)) => changed,
                    Ok(None) => continue,
                    Err(error) => {
                        tracing::warn!(%error, snapshot = %id, "Cannot apply a snapshot message; ending the stream.");
                        let outcome = error.outcome();
                        let _ = tx.send(Err(error.into())).await;
                        break outcome;
                    }
                };
                let now = SystemTime::now();
                let settings = analysis.defaults();
                let mut rules = analysis.analyze(&changed.snapshot, now, settings);
                // Rules go out first, so a slow or hanging model never
                // delays them.
                let mut sent = rules.clone();
                changed.filter(&mut sent);
                // A failed send means the client left: stop.
                if !send_all(&analysis, &tx, sent).await {
                    break "client_gone";
                }
                if let Some(mut model) = analysis
                    .consult_model(&changed.snapshot, &mut rules, now, settings, Ask::default())
                    .await
                    .separate
                {
                    changed.filter(&mut model);
                    if !send_all(&analysis, &tx, model).await {
                        break "client_gone";
                    }
                }
            };
            analysis.count_request(ANALYZE, outcome);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    #[tracing::instrument(skip_all)]
    async fn analyze_snapshot(
        &self,
        request: Request<AnalyzeSnapshotRequest>,
    ) -> Result<Response<AnalyzeSnapshotResponse>, Status> {
        match self.analyze_one(request.into_inner()).await {
            Ok(response) => {
                self.analysis.count_request(ANALYZE_SNAPSHOT, "ok");
                for recommendation in &response.recommendations {
                    self.analysis.count_sent(recommendation);
                }
                Ok(Response::new(response))
            }
            Err(error) => {
                self.analysis
                    .count_request(ANALYZE_SNAPSHOT, error.outcome());
                Err(error.into())
            }
        }
    }
}
