//! The committed CRDs on the real API server: a HealingPolicy whose analysis
//! settings the analyzer could not apply is refused at `kubectl apply`
//! time, with the field and the reason, instead of failing later in the
//! pipeline.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::time::Duration;

use kube::{Api, api::PostParams};
use nanny_cluster_tests::Fixture;
use nanny_crd::{Decision, HealingAction, HealingPolicy, Outcome, Phase};
use nanny_test_util::cluster::{eventually, install_crds};
use serde_json::{Value, json};

fn policy(name: &str, rules: Value, ai: Value) -> HealingPolicy {
    serde_json::from_value(json!({
        "apiVersion": "nanny.ai/v1alpha1",
        "kind": "HealingPolicy",
        "metadata": { "name": name },
        "spec": {
            "mode": "Monitor",
            "rules": rules,
            "ai": ai,
        },
    }))
    .unwrap()
}

fn ai(prompts: Value) -> Value {
    json!({ "enabled": true, "minConfidence": 0.75, "maxRecommendations": 5, "prompts": prompts })
}

/// The API server's refusal of `policy`: its HTTP code and message.
async fn refusal(api: &Api<HealingPolicy>, policy: &HealingPolicy) -> (u16, String) {
    match api.create(&PostParams::default(), policy).await {
        Ok(created) => panic!("accepted: {:?}", created.spec),
        Err(kube::Error::Api(status)) => (status.code, status.message),
        Err(error) => panic!("{error}"),
    }
}

#[tokio::test]
async fn policies_with_unknown_rules_scenarios_or_out_of_range_settings_are_refused() {
    let Some(fx) = Fixture::new("crd-policy").await else {
        return;
    };
    install_crds(&fx.client).await.unwrap();
    let api: Api<HealingPolicy> = Api::namespaced(fx.client.clone(), fx.ns());

    // A valid one with every new field: the CRD was just established, so
    // the API may need a moment to serve it.
    let good = policy(
        "good",
        json!({ "disabled": ["crashloop-rollout-restart"], "oomMemoryFactor": 2.0, "staleJobMinAgeSeconds": 3600 }),
        ai(json!({ "memoryAnalysis": "Look for leaks.", "general": "Be brief." })),
    );
    eventually("a valid policy accepted", Duration::from_secs(30), || {
        let (api, good) = (api.clone(), good.clone());
        async move { Ok(Some(api.create(&PostParams::default(), &good).await?)) }
    })
    .await
    .unwrap();
    let stored = api.get("good").await.unwrap();
    assert_eq!(stored.spec.rules.oom_memory_factor, Some(2.0));
    assert_eq!(stored.spec.ai.prompts["general"], "Be brief.");

    for (name, rules, prompts, field, reason) in [
        (
            "unknown-rule",
            json!({ "disabled": ["delete-everything"] }),
            json!({}),
            "spec.rules.disabled",
            "unknown rule id",
        ),
        (
            "big-factor",
            json!({ "oomMemoryFactor": 10.0 }),
            json!({}),
            "spec.rules.oomMemoryFactor",
            "less than or equal to 4",
        ),
        (
            "unknown-scenario",
            json!({}),
            json!({ "jvmAnalysis": "Heap dumps." }),
            "spec.ai.prompts",
            "prompts are keyed by scenario",
        ),
        (
            "long-prompt",
            json!({}),
            json!({ "general": "x".repeat(2001) }),
            "spec.ai.prompts.general",
            "may not be more than 2000",
        ),
    ] {
        let (code, message) = refusal(&api, &policy(name, rules, ai(prompts))).await;
        assert_eq!(code, 422, "{name}: {message}");
        assert!(
            message.contains(field) && message.contains(reason),
            "{name}: {message}"
        );
    }
}

#[tokio::test]
async fn a_ladder_rung_issue_or_sink_type_it_does_not_know_is_refused_with_the_field_named() {
    let Some(fx) = Fixture::new("crd-ladder").await else {
        return;
    };
    install_crds(&fx.client).await.unwrap();
    // Raw JSON: the typed policy could not even hold an unknown rung.
    let resource = kube::api::ApiResource::erase::<HealingPolicy>(&());
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(fx.client.clone(), fx.ns(), &resource);
    let with = |name: &str, field: &str, value: Value| -> kube::api::DynamicObject {
        let mut spec = json!({ "mode": "Monitor" });
        spec[field] = value;
        serde_json::from_value(json!({
            "apiVersion": "nanny.ai/v1alpha1",
            "kind": "HealingPolicy",
            "metadata": { "name": name },
            "spec": spec,
        }))
        .unwrap()
    };
    let with_ladder = |name: &str, ladder: Value| with(name, "ladder", ladder);
    let good = with_ladder(
        "good",
        json!({ "maxIneffective": 3, "steps": [
            { "issue": "OOMKilled", "rungs": ["PatchResources", "RolloutRestart", "Escalate"] }] }),
    );
    eventually("a valid ladder accepted", Duration::from_secs(30), || {
        let (api, good) = (api.clone(), good.clone());
        async move { Ok(Some(api.create(&PostParams::default(), &good).await?)) }
    })
    .await
    .unwrap();
    let stored: HealingPolicy =
        serde_json::from_value(serde_json::to_value(api.get("good").await.unwrap()).unwrap())
            .unwrap();
    assert_eq!(stored.spec.ladder.max_ineffective, 3);
    assert_eq!(stored.spec.ladder.quiet_seconds, 1800, "defaulted");

    for (name, ladder, field) in [
        (
            "unknown-rung",
            json!({ "steps": [{ "issue": "CrashLoopBackOff", "rungs": ["RestartPod", "Reboot"] }] }),
            "spec.ladder.steps[0].rungs[1]",
        ),
        (
            "unknown-issue",
            json!({ "steps": [{ "issue": "DiskOnFire", "rungs": ["Escalate"] }] }),
            "spec.ladder.steps[0].issue",
        ),
        (
            "zero-tries",
            json!({ "maxIneffective": 0 }),
            "spec.ladder.maxIneffective",
        ),
    ] {
        match api
            .create(&PostParams::default(), &with_ladder(name, ladder))
            .await
        {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{name}: {}", status.message);
                assert!(status.message.contains(field), "{name}: {}", status.message);
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    match api
        .create(
            &PostParams::default(),
            &with(
                "unknown-sink",
                "notifications",
                json!({ "sinks": [{ "type": "Pager", "urlKey": "pager" }] }),
            ),
        )
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{}", status.message);
            assert!(
                status.message.contains("spec.notifications.sinks[0].type"),
                "{}",
                status.message
            );
        }
        other => panic!("unknown sink type: {other:?}"),
    }
}

#[tokio::test]
async fn an_action_stored_before_the_records_were_typed_is_accepted_and_reads_typed() {
    let Some(fx) = Fixture::new("crd-stored").await else {
        return;
    };
    install_crds(&fx.client).await.unwrap();
    // The object as an earlier coordinator wrote it, strings and all.
    let mut stored: Value = serde_json::from_str(include_str!(
        "../../../crates/crd/tests/fixtures/healingaction-v1alpha1-strings.json"
    ))
    .unwrap();
    let name = stored["metadata"]["name"].as_str().unwrap().to_owned();
    let status = stored["status"].take();
    let resource = kube::api::ApiResource::erase::<HealingAction>(&());
    let raw: Api<kube::api::DynamicObject> =
        Api::namespaced_with(fx.client.clone(), fx.ns(), &resource);
    let object: kube::api::DynamicObject = serde_json::from_value(stored).unwrap();
    eventually("the stored spec accepted", Duration::from_secs(30), || {
        let (raw, object) = (raw.clone(), object.clone());
        async move { Ok(Some(raw.create(&PostParams::default(), &object).await?)) }
    })
    .await
    .unwrap();
    raw.patch_status(
        &name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({ "status": status })),
    )
    .await
    .expect("the stored status spellings are valid under the typed schema");

    let typed: Api<HealingAction> = Api::namespaced(fx.client.clone(), fx.ns());
    let action = typed.get(&name).await.unwrap();
    let status = action.status.unwrap();
    assert_eq!(status.phase, Some(Phase::RolledBack));
    assert_eq!(status.verdict.unwrap().decision, Decision::Approved);
    assert_eq!(status.result.unwrap().outcome, Outcome::Ineffective);
    assert_eq!(status.rollback.unwrap().outcome, Outcome::RolledBack);

    // A spelling outside the vocabulary never reaches the store.
    match raw
        .patch_status(
            &name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "status": { "verdict": { "decision": "Maybe" } } })),
        )
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{}", status.message);
            assert!(
                status.message.contains("status.verdict.decision"),
                "{}",
                status.message
            );
        }
        other => panic!("an unknown decision was stored: {other:?}"),
    }
}

/// Action parameters are typed at the API server: string parameters as an
/// earlier coordinator wrote them are accepted and read typed, while a
/// malformed number, a parameter of another action type and a missing
/// required one are refused with the field named.
#[tokio::test]
async fn action_parameters_are_typed_and_string_ones_stored_before_still_read() {
    let Some(fx) = Fixture::new("crd-params").await else {
        return;
    };
    install_crds(&fx.client).await.unwrap();
    let resource = kube::api::ApiResource::erase::<HealingAction>(&());
    let raw: Api<kube::api::DynamicObject> =
        Api::namespaced_with(fx.client.clone(), fx.ns(), &resource);
    let with = |name: &str, action: Value| {
        let mut stored: Value = serde_json::from_str(include_str!(
            "../../../crates/crd/tests/fixtures/healingaction-v1alpha1-strings.json"
        ))
        .unwrap();
        stored["metadata"]["name"] = json!(name);
        stored["status"].take();
        stored["spec"]["action"] = action;
        serde_json::from_value::<kube::api::DynamicObject>(stored).unwrap()
    };
    // Stored before typing: numbers as strings, resources as dotted keys.
    let legacy = with(
        "legacy",
        json!({ "type": "PatchResources", "params": { "container": "app", "limits.memoryBytes": "805306368" } }),
    );
    eventually(
        "the legacy action accepted",
        Duration::from_secs(30),
        || {
            let (raw, legacy) = (raw.clone(), legacy.clone());
            async move { Ok(Some(raw.create(&PostParams::default(), &legacy).await?)) }
        },
    )
    .await
    .unwrap();
    let typed: Api<HealingAction> = Api::namespaced(fx.client.clone(), fx.ns());
    let read = typed.get("legacy").await.unwrap().spec.action.params;
    assert_eq!(
        read.limits().and_then(|l| l.memory_bytes),
        Some(nanny_crd::Int(805_306_368)),
        "the dotted key survives the API server and reads as limits"
    );
    raw.create(
        &PostParams::default(),
        &with(
            "scale",
            json!({ "type": "ScaleHpa", "params": { "maxReplicas": "6" } }),
        ),
    )
    .await
    .expect("a numeric string is a number");

    for (name, action, says) in [
        (
            "not-a-number",
            json!({ "type": "ScaleHpa", "params": { "maxReplicas": "six" } }),
            "spec.action.params.maxReplicas",
        ),
        (
            "misplaced",
            json!({ "type": "ScaleHpa", "params": { "maxReplicas": 6, "minAgeSeconds": 60 } }),
            "params.minAgeSeconds belongs to DeleteJob only",
        ),
        (
            "missing",
            json!({ "type": "ExpandPvc", "params": {} }),
            "params.newSizeBytes is required for ExpandPvc",
        ),
    ] {
        match raw
            .create(&PostParams::default(), &with(name, action))
            .await
        {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{name}: {}", status.message);
                assert!(status.message.contains(says), "{name}: {}", status.message);
            }
            other => panic!("{name}: stored: {other:?}"),
        }
    }
}
