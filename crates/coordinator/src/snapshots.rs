//! The latest reassembled snapshot of each policy's scope, shared between
//! the policy pipelines (which write it) and the action driver (which builds
//! the gate's review context from it).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use nanny_common::{
    client::TracedChannel,
    snapshot::{ReadError, SnapshotView},
};
use nanny_proto::v1::{
    ClusterSnapshot, GetSnapshotRequest, Scope, collector_client::CollectorClient,
};
use tokio::sync::watch;

use crate::error::Error;

type Latest = watch::Sender<Option<Arc<ClusterSnapshot>>>;

/// Latest snapshot per policy (`namespace/name`); cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Snapshots {
    by_policy: Arc<Mutex<HashMap<String, Latest>>>,
}

impl Snapshots {
    fn sender(&self, policy_ref: &str) -> Option<Latest> {
        let mut map = self.by_policy.lock().ok()?;
        Some(
            map.entry(policy_ref.to_owned())
                .or_insert_with(|| watch::Sender::new(None))
                .clone(),
        )
    }

    /// Publishes the policy's newest snapshot.
    pub fn publish(&self, policy_ref: &str, snapshot: Arc<ClusterSnapshot>) {
        if let Some(sender) = self.sender(policy_ref) {
            sender.send_replace(Some(snapshot));
        }
    }

    /// Subscribes to the policy's snapshots.
    pub fn subscribe(
        &self,
        policy_ref: &str,
    ) -> Option<watch::Receiver<Option<Arc<ClusterSnapshot>>>> {
        self.sender(policy_ref).map(|s| s.subscribe())
    }

    /// Forgets a policy (deleted, or this replica lost the lease).
    pub fn remove(&self, policy_ref: &str) {
        if let Ok(mut map) = self.by_policy.lock() {
            map.remove(policy_ref);
        }
    }

    /// The latest snapshot, waiting up to `wait` for a first one (a
    /// coordinator that just started resumes actions before its pipelines
    /// have received anything).
    pub async fn wait_latest(
        &self,
        policy_ref: &str,
        wait: Duration,
    ) -> Option<Arc<ClusterSnapshot>> {
        let mut receiver = self.subscribe(policy_ref)?;
        let found = tokio::time::timeout(wait, receiver.wait_for(Option::is_some)).await;
        match found {
            Ok(Ok(snapshot)) => snapshot.clone(),
            _ => None,
        }
    }
}

/// One whole snapshot of every namespace from the collector, within
/// `within`: a drain's node runs pods of namespaces a policy's scope may
/// not show.
///
/// # Errors
/// When the collector fails, its stream breaks off or ends before the
/// last chunk, or `within` passes ([`Error::Peer`], transient).
pub async fn fetch_whole(
    collector: TracedChannel,
    within: Duration,
) -> Result<ClusterSnapshot, Error> {
    let fetch = async {
        let mut stream = CollectorClient::new(collector)
            .get_snapshot(GetSnapshotRequest {
                scope: Some(Scope::default()),
            })
            .await
            .map_err(|s| Error::peer("collector", s))?
            .into_inner();
        match SnapshotView::default().next_whole(&mut stream).await {
            Ok(Some(snapshot)) => Ok(snapshot),
            Ok(None) => Err(Error::peer(
                "collector",
                tonic::Status::unavailable("the stream ended before the last chunk"),
            )),
            Err(ReadError::Status(status)) => Err(Error::peer("collector", *status)),
            Err(ReadError::Stream(error)) => Err(Error::peer(
                "collector",
                tonic::Status::data_loss(error.to_string()),
            )),
        }
    };
    tokio::time::timeout(within, fetch)
        .await
        .unwrap_or_else(|_| {
            Err(Error::peer(
                "collector",
                tonic::Status::deadline_exceeded(format!("no whole snapshot within {within:?}")),
            ))
        })
}
