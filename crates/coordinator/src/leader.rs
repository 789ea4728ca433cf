//! Lease-based leader election: of all coordinator replicas, only the one
//! holding the `coordination.k8s.io` Lease drives the pipeline.
//!
//! Every Lease write carries the resourceVersion it read, so two replicas
//! can never both believe they took it. A leader that cannot renew within
//! the lease duration steps down before anyone else may take over (it
//! gives up at `duration - renew`, others wait the full `duration` after the
//! last change they saw), and everything it drives is fenced by the
//! HealingActions' own resourceVersions.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{Api, Client, api::PostParams};
use tokio::{sync::watch, time::Instant};

/// Lease settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// How long a lease holds without renewal.
    pub duration: Duration,
    /// How often the holder renews (and others retry).
    pub renew: Duration,
}

/// Runs the election until `stop` flips, publishing leadership on `leader`.
pub async fn run(
    client: Client,
    settings: Settings,
    leader: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    // The last lease record seen, and when this replica first saw it.
    let mut observed: Option<(String, Instant)> = None;
    let mut last_renewed: Option<Instant> = None;
    loop {
        match try_acquire_or_renew(&api, &settings, &mut observed).await {
            Ok(true) => last_renewed = Some(Instant::now()),
            Ok(false) => last_renewed = None,
            Err(error) => {
                tracing::warn!(%error, lease = %settings.name, "Cannot read or write the leader Lease.")
            }
        }
        // Step down early enough that nobody else can have taken over yet.
        let holding = last_renewed
            .is_some_and(|at| at.elapsed() < settings.duration.saturating_sub(settings.renew));
        leader.send_if_modified(|was| {
            if *was != holding {
                tracing::info!(identity = %settings.identity, leader = holding, "Leadership changed.");
                *was = holding;
                true
            } else {
                false
            }
        });
        tokio::select! {
            () = tokio::time::sleep(settings.renew) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if *leader.borrow() {
        release(&api, &settings).await;
        leader.send_replace(false);
    }
}

/// One round: true when this replica holds the lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    settings: &Settings,
    observed: &mut Option<(String, Instant)>,
) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let Some(mut lease) = api.get_opt(&settings.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(settings.name.clone()),
                namespace: Some(settings.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(spec(settings, now, now, 0)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        };
    };
    let version = lease.metadata.resource_version.clone().unwrap_or_default();
    let current = lease.spec.clone().unwrap_or_default();
    let holder = current.holder_identity.clone().unwrap_or_default();
    let mine = holder == settings.identity;
    // Expiry is judged on this replica's clock: the record must stay
    // unchanged for a full lease duration after this replica saw it change.
    let seen_at = match observed {
        Some((v, at)) if *v == version => *at,
        _ => {
            *observed = Some((version.clone(), Instant::now()));
            Instant::now()
        }
    };
    let duration = current
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(settings.duration, Duration::from_secs);
    let expired = holder.is_empty() || seen_at.elapsed() >= duration;
    if !mine && !expired {
        return Ok(false);
    }
    let acquired = if mine {
        current.acquire_time.map_or(now, |t| t.0)
    } else {
        now
    };
    let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!mine);
    lease.spec = Some(spec(settings, acquired, now, transitions));
    match api
        .replace(&settings.name, &PostParams::default(), &lease)
        .await
    {
        Ok(written) => {
            *observed = Some((
                written.metadata.resource_version.unwrap_or_default(),
                Instant::now(),
            ));
            if !mine {
                tracing::info!(identity = %settings.identity, previous = %holder, "Took over the leader Lease.");
            }
            Ok(true)
        }
        // Someone else wrote first: they hold it (or renewed it).
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

fn spec(
    settings: &Settings,
    acquired: Timestamp,
    renewed: Timestamp,
    transitions: i32,
) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: i32::try_from(settings.duration.as_secs()).ok(),
        acquire_time: Some(MicroTime(acquired)),
        renew_time: Some(MicroTime(renewed)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

/// Hands the lease back on shutdown so a standby takes over at once.
async fn release(api: &Api<Lease>, settings: &Settings) {
    let Ok(Some(mut lease)) = api.get_opt(&settings.name).await else {
        return;
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(&settings.identity) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    if let Err(error) = api
        .replace(&settings.name, &PostParams::default(), &lease)
        .await
    {
        tracing::debug!(%error, "Could not release the leader Lease; it expires on its own.");
    }
}
