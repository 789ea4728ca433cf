//! The real `nannyctl` (and `kubectl nanny`) binaries against the real API
//! server: list and describe HealingActions the way an operator sees them,
//! approve and reject with the decision landing in `spec.approval`, and every
//! refusal (decided twice, rollback of an unfinished action, missing action)
//! exiting non-zero with a sentence and nothing written.
//!
//! Build the binaries first: `cargo build --bins` (`cargo xtask test` does).

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use k8s_openapi::jiff::Timestamp;
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use nanny_cluster_tests::{Fixture, create_action};
use nanny_crd::{HealingAction, HealingPolicy, HumanDecision, POLICY_LABEL, ROLLBACK_ANNOTATION};
use nanny_test_util::{
    cluster::{eventually, install_crds},
    faults,
    process::{ServiceProcess, cargo_bin},
};
use serde_json::json;

fn pending_status() -> serde_json::Value {
    json!({
        "phase": "PendingApproval",
        "phaseSince": Timestamp::now().to_string(),
        "verdict": {
            "decision": "NeedsApproval",
            "matchedRules": ["approval.patch-resources"],
            "reasons": ["PatchResources needs a human"],
            "auditId": "audit-1",
        },
        "conditions": [{
            "type": "Reviewed", "status": "True", "reason": "NeedsApproval",
            "message": "gate wants a human", "lastTransitionTime": Timestamp::now().to_string(),
        }],
    })
}

/// Runs a binary with `args`, without the caller's `$USER` unless given.
fn run(binary: &Path, args: &[&str], user: Option<&str>, path: Option<&Path>) -> Output {
    let mut command = Command::new(binary);
    command
        .args(args)
        .envs(nanny_test_util::pki::nannyctl_env())
        .env_remove("USER")
        .env_remove("KUBECONFIG");
    if let Some(user) = user {
        command.env("USER", user);
    }
    if let Some(dir) = path {
        let old = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![dir.to_path_buf()];
        dirs.extend(std::env::split_paths(&old));
        command.env("PATH", std::env::join_paths(dirs).unwrap());
    }
    command.output().unwrap()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The user name of the kubeconfig's current context.
/// Who the API server authenticates `client` as.
async fn whoami(client: &kube::Client) -> String {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    Api::<SelfSubjectReview>::all(client.clone())
        .create(&Default::default(), &SelfSubjectReview::default())
        .await
        .unwrap()
        .status
        .unwrap()
        .user_info
        .unwrap()
        .username
        .unwrap()
}

struct Ctl {
    binary: PathBuf,
    kubeconfig: String,
    ns: String,
}

impl Ctl {
    /// `nannyctl --kubeconfig K -n NS args…`.
    fn run(&self, args: &[&str], user: Option<&str>) -> Output {
        let mut all = vec!["--kubeconfig", &self.kubeconfig, "-n", &self.ns];
        all.extend_from_slice(args);
        run(&self.binary, &all, user, None)
    }

    fn ok(&self, args: &[&str], user: Option<&str>) -> String {
        let output = self.run(args, user);
        let (stdout, stderr) = text(&output);
        assert!(
            output.status.success(),
            "nannyctl {args:?} failed: {stderr}\n{stdout}"
        );
        stdout
    }

    fn refused(&self, args: &[&str]) -> String {
        let output = self.run(args, Some("mallory"));
        let (stdout, stderr) = text(&output);
        assert!(
            !output.status.success(),
            "nannyctl {args:?} should fail: {stdout}"
        );
        assert!(
            stdout.is_empty(),
            "a refusal prints nothing on stdout: {stdout}"
        );
        stderr
    }
}

#[tokio::test]
async fn nannyctl_lists_describes_and_decides_on_real_actions() {
    let Some(fx) = Fixture::new("nannyctl").await else {
        return;
    };
    install_crds(&fx.client).await.unwrap();
    let api: Api<HealingAction> = Api::namespaced(fx.client.clone(), fx.ns());
    create_action(&api, "ha-oom", "shop/default", pending_status()).await;
    create_action(&api, "ha-crash", "shop/default", pending_status()).await;
    let ctl = Ctl {
        binary: cargo_bin("nannyctl"),
        kubeconfig: fx.cluster.kubeconfig.display().to_string(),
        ns: fx.ns().to_owned(),
    };

    // list: both actions, with the columns an operator scans.
    let table = ctl.ok(&["list"], None);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME ") && lines[0].contains("PHASE") && lines[0].ends_with("AGE"),
        "{table}"
    );
    for name in ["ha-oom", "ha-crash"] {
        let row = lines
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{table}"));
        for cell in [
            "PendingApproval",
            "PatchResources",
            &format!("Pod shop/{name}-pod"),
            "oom-raise-memory",
            "100%",
        ] {
            assert!(row.contains(cell), "{cell} missing in {row:?}");
        }
    }
    let (_, stderr) = text(&ctl.run(&["ls", "--phase", "succeeded"], None));
    assert!(
        stderr.contains("No HealingActions in phase Succeeded"),
        "{stderr}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ctl.ok(&["list", "-o", "json"], None)).unwrap();
    assert_eq!(json["items"].as_array().unwrap().len(), 2, "{json}");

    // describe: verdict, rules, reasons, and the exact next command.
    let described = ctl.ok(&["describe", "ha-oom"], None);
    for expected in [
        "Phase:            PendingApproval since",
        "Verdict:          NeedsApproval",
        "approval.patch-resources",
        "PatchResources needs a human",
        "Approval:         <none>",
        &format!("Next:             nannyctl approve ha-oom -n {}", fx.ns()),
    ] {
        assert!(
            described.contains(expected),
            "missing {expected:?} in\n{described}"
        );
    }

    // approve: the decision lands in spec.approval, under the name the API
    // server authenticates (kubectl auth whoami), never a typed one.
    let before = Timestamp::now().as_second();
    let out = ctl.ok(&["approve", "ha-oom", "--comment", "looks right"], None);
    assert!(out.contains("ha-oom approved by"), "{out}");
    let approval = api.get("ha-oom").await.unwrap().spec.approval.unwrap();
    assert_eq!(approval.decision, HumanDecision::Approve);
    let me = whoami(&fx.client).await;
    assert_eq!(approval.by, me);
    assert_eq!(approval.comment, "looks right");
    let at: Timestamp = approval.at.parse().expect("RFC 3339 time");
    assert!(
        (before - 1..=Timestamp::now().as_second()).contains(&at.as_second()),
        "{at}"
    );

    // Deciding twice is refused and changes nothing.
    let stderr = ctl.refused(&["approve", "ha-oom"]);
    assert!(
        stderr.contains("refused") && stderr.contains("already approved by"),
        "{stderr}"
    );
    let stderr = ctl.refused(&["reject", "ha-oom", "--reason", "changed my mind"]);
    assert!(stderr.contains("already approved"), "{stderr}");
    assert_eq!(
        api.get("ha-oom").await.unwrap().spec.approval.unwrap(),
        approval
    );
    let described = ctl.ok(&["describe", "ha-oom"], None);
    assert!(
        described.contains("Approval:         Approved by"),
        "{described}"
    );
    assert!(
        described.contains("waiting for the coordinator"),
        "{described}"
    );

    // rollback of an action that has not run: refused, no annotation.
    let stderr = ctl.refused(&["rollback", "ha-crash", "--reason", "oops"]);
    assert!(
        stderr.contains("phase PendingApproval") && stderr.contains("Succeeded or Failed"),
        "{stderr}"
    );
    let crash = api.get("ha-crash").await.unwrap();
    assert!(
        !crash
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(ROLLBACK_ANNOTATION)
    );

    // reject: a name other than one's own is refused; $USER is not asked.
    let stderr = ctl.refused(&["reject", "ha-crash", "--reason", "x", "--by", "carol"]);
    assert!(
        stderr.contains(&format!("the API server authenticates you as {me}")),
        "{stderr}"
    );
    let out = ctl.ok(
        &["reject", "ha-crash", "--reason", "not during the sale"],
        Some("carol"),
    );
    assert!(out.contains(&format!("ha-crash rejected by {me}")), "{out}");
    let rejection = api.get("ha-crash").await.unwrap().spec.approval.unwrap();
    assert_eq!(rejection.decision, HumanDecision::Reject);
    assert_eq!(rejection.by, me);
    assert_eq!(rejection.comment, "not during the sale");

    // An action that does not exist.
    let stderr = ctl.refused(&["approve", "ha-nope"]);
    assert!(
        stderr.contains(&format!("ha-nope not found in namespace {}", fx.ns())),
        "{stderr}"
    );

    // get -o json round-trips the CR.
    let got: HealingAction =
        serde_json::from_str(&ctl.ok(&["get", "ha-crash", "-o", "json"], None)).unwrap();
    assert_eq!(got.spec.approval.unwrap(), rejection);
}

#[tokio::test]
async fn rollback_is_requested_once_and_guarded_by_resource_version() {
    let Some(fx) = Fixture::new("nannyctl-rb").await else {
        return;
    };
    install_crds(&fx.client).await.unwrap();
    let api: Api<HealingAction> = Api::namespaced(fx.client.clone(), fx.ns());
    create_action(
        &api,
        "ha-done",
        "shop/default",
        json!({
            "phase": "Succeeded",
            "result": { "outcome": "Succeeded", "preImageRef": "configmap/nanny-preimages/ha-done" },
        }),
    )
    .await;
    let ctl = Ctl {
        binary: cargo_bin("nannyctl"),
        kubeconfig: fx.cluster.kubeconfig.display().to_string(),
        ns: fx.ns().to_owned(),
    };
    let described = ctl.ok(&["describe", "ha-done"], None);
    assert!(
        described.contains("nannyctl rollback ha-done"),
        "{described}"
    );

    let stale = api
        .get("ha-done")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    ctl.ok(&["rollback", "ha-done", "--reason", "checkout broke"], None);
    let annotations = api
        .get("ha-done")
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap();
    assert_eq!(annotations[ROLLBACK_ANNOTATION], "checkout broke");
    let stderr = ctl.refused(&["rollback", "ha-done", "--reason", "again"]);
    assert!(
        stderr.contains("already requested (reason: checkout broke)"),
        "{stderr}"
    );

    // The precondition nannyctl relies on: a merge patch carrying a stale
    // resourceVersion is a 409 from the real API server, and writes nothing.
    let error = api
        .patch(
            "ha-done",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": { "resourceVersion": stale, "annotations": { ROLLBACK_ANNOTATION: "racer" } },
            })),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, kube::Error::Api(s) if s.code == 409),
        "{error}"
    );
    let annotations = api
        .get("ha-done")
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap();
    assert_eq!(annotations[ROLLBACK_ANNOTATION], "checkout broke");
}

#[tokio::test]
async fn kubectl_nanny_plugin_and_policy_status() {
    let Some(fx) = Fixture::new("nannyctl-plugin").await else {
        return;
    };
    install_crds(&fx.client).await.unwrap();
    let api: Api<HealingAction> = Api::namespaced(fx.client.clone(), fx.ns());
    create_action(&api, "ha-plug", "shop/default", pending_status()).await;
    // The coordinator labels each action with its policy.
    api.patch(
        "ha-plug",
        &PatchParams::default(),
        &Patch::Merge(
            json!({ "metadata": { "labels": { POLICY_LABEL: format!("{}.default", fx.ns()) } } }),
        ),
    )
    .await
    .unwrap();
    let policies: Api<HealingPolicy> = Api::namespaced(fx.client.clone(), fx.ns());
    let policy: HealingPolicy = serde_json::from_value(json!({
        "apiVersion": "nanny.ai/v1alpha1",
        "kind": "HealingPolicy",
        "metadata": { "name": "default" },
        "spec": { "mode": "Auto", "scope": { "namespaces": ["shop"] } },
    }))
    .unwrap();
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    policies
        .patch_status(
            "default",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": {
                "observedGeneration": 1,
                "actionsByPhase": { "PendingApproval": 1 },
                "conditions": [{ "type": "Degraded", "status": "True", "reason": "RulesOnly",
                    "message": "LLM unreachable", "lastTransitionTime": Timestamp::now().to_string() }],
            } })),
        )
        .await
        .unwrap();

    // kubectl finds `kubectl-nanny` on PATH: `kubectl nanny …` is the same CLI.
    let plugin_dir = cargo_bin("kubectl-nanny").parent().unwrap().to_path_buf();
    let kubeconfig = fx.cluster.kubeconfig.display().to_string();
    let output = run(
        &fx.cluster.kubectl,
        &[
            "nanny",
            "describe",
            "ha-plug",
            "--kubeconfig",
            &kubeconfig,
            "-n",
            fx.ns(),
        ],
        None,
        Some(&plugin_dir),
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "kubectl nanny failed: {stderr}");
    assert!(
        stdout.contains(&format!("kubectl nanny approve ha-plug -n {}", fx.ns())),
        "{stdout}"
    );

    let ctl = Ctl {
        binary: cargo_bin("nannyctl"),
        kubeconfig,
        ns: fx.ns().to_owned(),
    };
    let table = ctl.ok(&["policy", "list"], None);
    let row = table.lines().nth(1).unwrap_or_default();
    for cell in ["default", "Auto", "false", "shop", "PendingApproval=1"] {
        assert!(row.contains(cell), "{cell} missing in\n{table}");
    }
    let status = ctl.ok(&["policy", "status", "default"], None);
    for expected in [
        "Mode:             Auto",
        "Observed gen.:    1 (up to date)",
        "  PendingApproval 1",
        "Degraded",
        "RulesOnly",
        "Waiting for approval:",
        &format!("nannyctl describe ha-plug -n {}", fx.ns()),
    ] {
        assert!(
            status.contains(expected),
            "missing {expected:?} in\n{status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_from_the_collector_replays_through_the_analyzer() {
    let Some(fx) = Fixture::new("nannyctl-snap").await else {
        return;
    };
    faults::crash_loop(&fx.client, fx.ns(), "crash", 1)
        .await
        .unwrap();
    let kubeconfig = fx.cluster.kubeconfig.to_string_lossy().into_owned();
    let collector = fx.start_collector().await;
    // Rules only (the analyzer's LLM is off by default); the crash-loop rule
    // from the first restart, so the test need not wait for three.
    let analyzer = ServiceProcess::spawn(
        &cargo_bin("nanny-analyzer"),
        &[("NANNY_RULES__CRASHLOOP__MIN_RESTARTS", "1")],
    )
    .await
    .unwrap();
    analyzer
        .wait_serving("nanny.v1.Analyzer", Duration::from_secs(60))
        .await
        .unwrap();
    let nannyctl = cargo_bin("nannyctl");
    let collector_url = collector.grpc_url();
    let ns = fx.ns().to_owned();

    // `snapshot -n NS -o json` until the crash loop shows up as an issue.
    let json = eventually(
        "crash loop in nannyctl's snapshot",
        Duration::from_secs(60),
        || {
            let (nannyctl, url, ns) = (nannyctl.clone(), collector_url.clone(), ns.clone());
            async move {
                let scope = ns.clone();
                let output = tokio::task::spawn_blocking(move || {
                    run(
                        &nannyctl,
                        &["snapshot", "-n", &scope, "--collector", &url, "-o", "json"],
                        None,
                        None,
                    )
                })
                .await?;
                let (stdout, stderr) = text(&output);
                anyhow::ensure!(output.status.success(), "snapshot failed: {stderr}");
                let value: serde_json::Value = serde_json::from_str(&stdout)?;
                let crashing = value["issues"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|issue| {
                        issue["kind"] == "ISSUE_KIND_CRASH_LOOP_BACK_OFF"
                            && issue["target"]["namespace"] == ns.as_str()
                    });
                // The rule wants at least one restart on record.
                let restarted = value["pods"].as_array().into_iter().flatten().any(|pod| {
                    pod["containers"].as_array().into_iter().flatten().any(|c| {
                        c["stateReason"] == "CrashLoopBackOff"
                            && c["restartCount"].as_u64() >= Some(1)
                    })
                });
                Ok((crashing && restarted).then_some(stdout))
            }
        },
    )
    .await
    .unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["scope"]["namespaces"], json!([fx.ns()]), "{value}");
    assert!(
        value["pods"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["ref"]["namespace"] == fx.ns()),
        "only the scoped namespace: {value}"
    );
    let summary = text(&run(
        &nannyctl,
        &["snapshot", "-n", fx.ns(), "--collector", &collector_url],
        None,
        None,
    ))
    .0;
    assert!(summary.contains("crash_loop_back_off"), "{summary}");

    // `analyze -f FILE`: the saved snapshot goes through the real rules.
    let dir = std::env::temp_dir().join(format!("{}-snap", fx.ns()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("snapshot.json");
    std::fs::write(&file, &json).unwrap();
    let analyzer_url = analyzer.grpc_url();
    let file_arg = file.to_string_lossy().into_owned();
    let output = run(
        &nannyctl,
        &["analyze", "-f", &file_arg, "--analyzer", &analyzer_url],
        None,
        None,
    );
    let (table, stderr) = text(&output);
    assert!(output.status.success(), "analyze failed: {stderr}");
    let row = table
        .lines()
        .find(|l| l.contains(&format!("{}/crash", fx.ns())))
        .unwrap_or_else(|| panic!("no recommendation for the crash loop:\n{table}"));
    // One replica, all of it looping: a rollout restart of the Deployment
    // (or a pod restart, should the rule's threshold change).
    assert!(
        (row.starts_with("RolloutRestart") || row.starts_with("RestartPod"))
            && row.contains("crashloop-"),
        "{row}"
    );

    // `--policy NS/NAME` applies that HealingPolicy's settings, read from
    // the cluster: with both crash-loop rules switched off, nothing is left.
    // `--explain` says the model was not consulted (this analyzer has none).
    install_crds(&fx.client).await.unwrap();
    let policies: Api<HealingPolicy> = Api::namespaced(fx.client.clone(), fx.ns());
    let careful: HealingPolicy = serde_json::from_value(json!({
        "apiVersion": "nanny.ai/v1alpha1",
        "kind": "HealingPolicy",
        "metadata": { "name": "careful" },
        "spec": {
            "mode": "Monitor",
            "rules": { "disabled": ["crashloop-restart", "crashloop-rollout-restart"] },
        },
    }))
    .unwrap();
    eventually("policy created", Duration::from_secs(30), || {
        let (policies, careful) = (policies.clone(), careful.clone());
        async move {
            Ok(Some(
                policies.create(&PostParams::default(), &careful).await?,
            ))
        }
    })
    .await
    .unwrap();
    let analyze_under = |policy: &str| {
        run(
            &nannyctl,
            &[
                "analyze",
                "-f",
                &file_arg,
                "--analyzer",
                &analyzer_url,
                "--kubeconfig",
                &kubeconfig,
                "--policy",
                policy,
                "--explain",
            ],
            None,
            None,
        )
    };
    let output = analyze_under(&format!("{}/careful", fx.ns()));
    let (table, stderr) = text(&output);
    assert!(output.status.success(), "analyze --policy failed: {stderr}");
    assert!(
        table.contains("No recommendations.") && table.contains("Model exchange: disabled"),
        "{table}"
    );
    let missing = format!("{}/nope", fx.ns());
    let output = analyze_under(&missing);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("reading HealingPolicy {missing}")),
        "{stderr}"
    );

    // A malformed file names itself and the position; the analyzer is not called.
    let broken = dir.join("broken.json");
    std::fs::write(&broken, json.replacen("\"pods\"", "\"podz\"", 1)).unwrap();
    let broken_arg = broken.to_string_lossy().into_owned();
    let output = run(
        &nannyctl,
        &["analyze", "-f", &broken_arg, "--analyzer", &analyzer_url],
        None,
        None,
    );
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("broken.json") && stderr.contains("podz") && stderr.contains("line "),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
