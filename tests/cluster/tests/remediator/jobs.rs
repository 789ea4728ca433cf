//! RetriggerJob: a failed Job is run again as a new Job once a human
//! approves, with its spec and a retry marker; the failed Job stays. Refused
//! with the reason for a Job that has not failed, and once the retry
//! exists; no undo (the retry's pods may already have done their work).

use nanny_proto::vocabulary::{RETRIED_AS, RETRIGGER_OF};

use super::*;

fn retrigger() -> ActionKind {
    ActionKind::RetriggerJob(nanny_proto::v1::RetriggerJob {})
}

#[tokio::test]
async fn retrigger_job_runs_a_failed_job_again_once_and_has_no_undo() {
    let Some(fx) = Fixture::new("rem-retrigger").await else {
        return;
    };
    // The shipped rules and the opt-in RetriggerJob rules, nothing more.
    let opt_in: ClusterRole = serde_yaml::from_str(
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/rbac/remediator-retrigger-jobs.yaml"
        ))
        .unwrap()
        .split("\n---\n")
        .next()
        .unwrap(),
    )
    .unwrap();
    let remediator =
        Remediator::start_with(&fx, |rules| rules.extend(opt_in.rules.unwrap_or_default())).await;
    let jobs: Api<Job> = Api::namespaced(fx.client.clone(), fx.ns());
    // Its batch node is not there yet: the pod cannot be scheduled, and
    // past its deadline the Job controller fails the Job (DeadlineExceeded).
    let node = format!("{}-batch", fx.ns());
    let ns = fx.ns();
    faults::pinned_job(&fx.client, ns, "nightly", &node, Some(30))
        .await
        .unwrap();
    let running = faults::pinned_job(&fx.client, ns, "waiting", &node, None)
        .await
        .unwrap();
    let failed = faults::job_reaches(&fx.client, ns, "nightly", "Failed")
        .await
        .unwrap();

    // A Job that has not failed is not run again.
    let refused = remediator
        .execute(approved("retrigger-waiting", retrigger(), target(&running)))
        .await
        .unwrap();
    assert_eq!(outcome(&refused), Outcome::Refused, "{refused:?}");
    assert!(
        refused.error.contains("it has not failed"),
        "{}",
        refused.error
    );

    // The dry run names the retry and its image, and creates nothing.
    let preview = remediator
        .execute(dry(approved(
            "retrigger-nightly",
            retrigger(),
            target(&failed),
        )))
        .await
        .unwrap();
    assert_eq!(outcome(&preview), Outcome::DryRun, "{preview:?}");
    assert!(
        preview.dry_run_diff.contains(&format!(
            "create Job {ns}/nightly-retry: Job {ns}/nightly run again with its spec"
        )) && preview
            .dry_run_diff
            .contains("container job: image registry.example/nightly:7"),
        "{}",
        preview.dry_run_diff
    );
    assert!(jobs.get_opt("nightly-retry").await.unwrap().is_none());

    // The node arrives (what failed it has passed), and the scheduler
    // places pods there (the waiting Job's runs to completion).
    let _batch = FakeNode::create(&fx.cluster, &fx.client, &node)
        .await
        .unwrap();
    faults::job_reaches(&fx.client, ns, "waiting", "Complete")
        .await
        .unwrap();
    let result = remediator
        .execute(approved("retrigger-nightly", retrigger(), target(&failed)))
        .await
        .unwrap();
    assert_eq!(outcome(&result), Outcome::Succeeded, "{result:?}");
    assert_eq!(
        verification(&result),
        VerificationState::Passed,
        "{result:?}"
    );
    let retry = jobs.get("nightly-retry").await.unwrap();
    assert_eq!(
        retry.labels().get(RETRIGGER_OF).map(String::as_str),
        Some("nightly")
    );
    assert_eq!(
        retry.labels().get("app").map(String::as_str),
        Some("nightly")
    );
    assert_eq!(
        retry
            .annotations()
            .get("nanny.ai/retriggered-by")
            .map(String::as_str),
        Some("retrigger-nightly")
    );
    let selector = |job: &Job| job.spec.as_ref().and_then(|s| s.selector.clone());
    assert_ne!(selector(&retry), selector(&failed), "a selector of its own");
    let image = |job: &Job| {
        job.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref()?.containers[0].image.clone())
    };
    assert_eq!(image(&retry), image(&failed));
    // Its pod runs on the node, and the retry completes.
    faults::job_reaches(&fx.client, ns, "nightly-retry", "Complete")
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(fx.client.clone(), ns);
    let ran = pods
        .list(&ListParams::default().labels("job-name=nightly-retry"))
        .await
        .unwrap();
    assert!(
        ran.items
            .iter()
            .any(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str())),
        "the retry's pod ran on the node"
    );
    // The failed Job stays as it was, with its pods' history.
    let original = jobs.get("nightly").await.unwrap();
    assert_eq!(original.uid(), failed.uid());
    assert!(faults::job_condition(&original, "Failed"));
    // Marked as run again, by this action.
    assert_eq!(
        original.labels().get(RETRIED_AS).map(String::as_str),
        Some("nightly-retry")
    );

    // Once is enough: a second action is refused, and still once the retry
    // is gone (deleted, or pruned by its TTL).
    let again = remediator
        .execute(approved(
            "retrigger-nightly-2",
            retrigger(),
            target(&original),
        ))
        .await
        .unwrap();
    assert_eq!(outcome(&again), Outcome::Refused, "{again:?}");
    assert!(
        again
            .error
            .contains("it was run again once already, as Job nightly-retry"),
        "{}",
        again.error
    );

    // No undo: the retry's pods may already have done their work.
    let rollback = remediator.rollback("retrigger-nightly").await.unwrap_err();
    assert_eq!(
        rollback.code(),
        tonic::Code::FailedPrecondition,
        "{rollback:?}"
    );
    assert!(
        rollback
            .message()
            .contains("a Job's run cannot be taken back"),
        "{rollback:?}"
    );
    assert_eq!(
        jobs.get("nightly-retry").await.unwrap().uid(),
        retry.uid(),
        "the retry stays"
    );

    // The retry gone, the failed Job is still not run a second time.
    jobs.delete("nightly-retry", &DeleteParams::background())
        .await
        .unwrap();
    eventually("nightly-retry gone", WAIT, || async {
        Ok(jobs.get_opt("nightly-retry").await?.is_none().then_some(()))
    })
    .await
    .unwrap();
    let marked = jobs.get("nightly").await.unwrap();
    let third = remediator
        .execute(approved(
            "retrigger-nightly-3",
            retrigger(),
            target(&marked),
        ))
        .await
        .unwrap();
    assert_eq!(outcome(&third), Outcome::Refused, "{third:?}");
    assert!(jobs.get_opt("nightly-retry").await.unwrap().is_none());
}
