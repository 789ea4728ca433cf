//! Chaos: while crash loops, stale Jobs and HPAs at max are injected, every
//! service — the coordinator included, and a standby coordinator taking over
//! the lease — is killed with SIGKILL at random moments. At the end every
//! fault is healed exactly once, no action ran twice and no HealingAction
//! was lost.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use k8s_openapi::api::{autoscaling::v2::HorizontalPodAutoscaler, batch::v1::Job, core::v1::Pod};
use kube::{Api, ResourceExt};
use nanny_cluster_tests::pipeline::{Harness, crash_one_pod};
use nanny_crd::Phase;
use nanny_test_util::{
    cluster::eventually,
    faults::{self, HpaAtMax, PodSpec},
};

/// Faults injected over the run, one every few seconds.
const ROUNDS: usize = 6;
const HEALED: Duration = Duration::from_secs(240);

/// A small deterministic generator: the seed is printed so a failing run
/// can be replayed with `NANNY_CHAOS_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// What was injected, to check at the end: (kind, name, uid).
type Injected = Vec<(&'static str, String, String)>;

#[tokio::test(flavor = "multi_thread")]
async fn killing_any_service_at_random_loses_and_repeats_nothing() {
    let extra = vec![(
        "nanny-remediator",
        "NANNY_VERIFICATION__STALE_CLAIM_SECS".to_owned(),
        "3".to_owned(),
    )];
    let Some(mut h) = Harness::start_with("chaos", "Auto", extra).await else {
        return;
    };
    let seed = std::env::var("NANNY_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    println!("chaos seed {seed} (replay with NANNY_CHAOS_SEED={seed})");
    let mut rng = Rng(seed);
    let client = h.fx.client.clone();
    let ns = h.fx.ns().to_owned();
    // A standby coordinator: it must take over when the leader stays down.
    let standby = h
        .stack
        .spawn_replica(
            "nanny-coordinator",
            &[("NANNY_KUBERNETES__IDENTITY", "coordinator-1")],
        )
        .await
        .unwrap();

    // Injection runs beside the chaos loop.
    let injector = tokio::spawn({
        let (client, ns) = (client.clone(), ns.clone());
        async move {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let mut injected: Injected = Vec::new();
            let mut controllers = Vec::new();
            for round in 0..ROUNDS {
                let app = format!("app-{round}");
                faults::deployment(&client, &ns, &app, 3, &PodSpec::default())
                    .await
                    .unwrap();
                let victim = eventually("a running pod", Duration::from_secs(60), || async {
                    let pods = faults::pods_of(&client, &ns, &app).await?;
                    Ok(pods.into_iter().find(|p| {
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    }))
                })
                .await
                .unwrap();
                crash_one_pod(&pods, &victim).await;
                injected.push(("Pod", victim.name_any(), victim.uid().unwrap()));
                if round % 2 == 0 {
                    let name = format!("job-{round}");
                    let job =
                        faults::completed_job(&client, &ns, &name, Duration::from_secs(25 * 3600))
                            .await
                            .unwrap();
                    injected.push(("Job", name, job.uid().unwrap()));
                } else {
                    let name = format!("hpa-{round}");
                    let params = HpaAtMax {
                        min_replicas: 1,
                        max_replicas: 2,
                        target_cpu_percent: 50,
                        current_cpu_percent: 95,
                    };
                    let hpa = faults::hpa_at_max(&client, &ns, &name, params)
                        .await
                        .unwrap();
                    controllers.push(faults::hpa_controller(
                        client.clone(),
                        ns.clone(),
                        name.clone(),
                        2,
                    ));
                    injected.push(("HorizontalPodAutoscaler", name, hpa.uid().unwrap()));
                }
                tokio::time::sleep(Duration::from_secs(4)).await;
            }
            (injected, controllers)
        }
    });

    // Chaos: kill something every 2-6 s until injection is over.
    let services = [
        "nanny-collector",
        "nanny-analyzer",
        "nanny-safety-gate",
        "nanny-remediator",
        "nanny-coordinator",
    ];
    let mut kills: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failover_done = false;
    // Every service is killed at least once, in a random order, at random
    // moments; then random ones until the injection is over.
    let mut order = services.to_vec();
    for i in (1..order.len()).rev() {
        order.swap(i, usize::try_from(rng.next(i as u64 + 1)).unwrap());
    }
    let mut round = 0;
    while !injector.is_finished() || round < services.len() {
        tokio::time::sleep(Duration::from_millis(1500 + rng.next(3000))).await;
        let victim = if round < order.len() {
            order[round]
        } else {
            services[usize::try_from(rng.next(services.len() as u64)).unwrap()]
        };
        round += 1;
        if victim == "nanny-coordinator" && !failover_done {
            // Keep the leader down past its lease so the standby takes over.
            failover_done = true;
            let process = h.stack.services.remove(victim).unwrap();
            process.kill().await.unwrap();
            tokio::time::sleep(Duration::from_secs(8)).await;
            h.stack.kill_and_restart(victim).await.unwrap();
        } else {
            h.stack.kill_and_restart(victim).await.unwrap();
        }
        *kills.entry(victim).or_default() += 1;
    }
    println!("kills: {kills:?}");
    let (injected, controllers) = injector.await.unwrap();

    // Every fault healed.
    let started = Instant::now();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
    for (kind, name, uid) in &injected {
        let healed = eventually(&format!("{kind} {name} healed"), HEALED, || async {
            Ok(match *kind {
                "Pod" => pods
                    .get_opt(name)
                    .await?
                    .is_none_or(|p| p.uid().as_deref() != Some(uid)),
                "Job" => jobs.get_opt(name).await?.is_none(),
                _ => hpas
                    .get(name)
                    .await?
                    .spec
                    .is_some_and(|s| s.max_replicas > 2),
            }
            .then_some(()))
        })
        .await;
        if let Err(error) = healed {
            panic!(
                "{error}\nactions: {:#?}\n{}\n--- standby ---\n{}",
                h.actions
                    .list(&Default::default())
                    .await
                    .unwrap()
                    .items
                    .iter()
                    .map(|a| (a.name_any(), a.status.clone()))
                    .collect::<Vec<_>>(),
                h.stack.logs(),
                standby.logs().join("\n")
            );
        }
    }
    println!(
        "all {} faults healed {:.1?} after the chaos stopped",
        injected.len(),
        started.elapsed()
    );
    for c in controllers {
        c.abort();
    }

    // Exactly once: one executed record per target in the remediator's
    // store, and every HealingAction on a target finished — none lost.
    for (kind, name, uid) in &injected {
        assert_eq!(
            h.executions_on(uid).await,
            1,
            "{kind} {name} was acted on exactly once"
        );
        let actions = eventually(
            "every action on the target finished",
            // An Execute interrupted mid-verification is awaited, not retried.
            Duration::from_secs(150),
            || async {
                let actions = h.actions_on(uid).await;
                Ok(actions
                    .iter()
                    .all(|a| {
                        a.status
                            .as_ref()
                            .and_then(|s| s.phase)
                            .is_some_and(Phase::is_terminal)
                    })
                    .then_some(actions))
            },
        )
        .await;
        let actions = match actions {
            Ok(actions) => actions,
            Err(error) => panic!(
                "{kind} {name}: {error}\n{:#?}\n{}",
                h.actions_on(uid)
                    .await
                    .iter()
                    .map(|a| (a.name_any(), a.status.clone()))
                    .collect::<Vec<_>>(),
                h.stack.logs()
            ),
        };
        let succeeded = actions
            .iter()
            .filter(|a| a.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded))
            .count();
        let executed_actions = actions
            .iter()
            .filter(|a| a.status.as_ref().is_some_and(|s| s.result.is_some()))
            .count();
        assert!(
            succeeded == 1 && executed_actions == 1,
            "{kind} {name}: one executed, succeeded action: {:#?}",
            actions
                .iter()
                .map(|a| (a.name_any(), a.status.clone()))
                .collect::<Vec<_>>()
        );
    }
}
