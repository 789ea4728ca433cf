//! The latest reassembled snapshot of each policy's scope, shared between
//! the policy pipelines (which write it) and the action driver (which builds
//! the gate's review context from it).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use nanny_proto::v1::ClusterSnapshot;
use tokio::sync::watch;

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
