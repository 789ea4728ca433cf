//! The Helm chart on the real cluster: `helm install` into a namespace of its
//! own brings every Deployment to Available (kwok runs the pods; the images
//! need not exist), the CRDs are Established, every ServiceAccount may do
//! exactly what its service needs (a `kubectl auth can-i` matrix), upgrading
//! one subchart's image tag changes that Deployment only, and uninstall
//! leaves no cluster-scoped object behind.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::{collections::BTreeMap, process::Command};

use k8s_openapi::{
    api::{apps::v1::Deployment, rbac::v1::ClusterRole},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{Api, Client, api::ListParams};
use nanny_cluster_tests::{
    Fixture,
    chart::{self, Release, SERVICES, chart, helm, wait_available},
};
use nanny_test_util::cluster::ClusterInfo;

/// `kubectl auth can-i` as a ServiceAccount: true for "yes".
fn can_i(cluster: &ClusterInfo, account: &str, verb: &str, resource: &str, scope: &str) -> bool {
    // `type#name` asks about one named object.
    let named;
    let (resource, subresource) = match (resource.split_once('#'), resource.split_once('/')) {
        (Some((r, name)), _) => {
            named = format!("{r}/{name}");
            (named.as_str(), None)
        }
        (None, Some((r, s))) => (r, Some(s)),
        (None, None) => (resource, None),
    };
    let mut command = Command::new(&cluster.kubectl);
    command
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(["auth", "can-i", verb, resource, "--as", account]);
    if let Some(sub) = subresource {
        command.arg(format!("--subresource={sub}"));
    }
    if scope == "*" {
        command.arg("--all-namespaces");
    } else {
        command.args(["--namespace", scope]);
    }
    let output = command.output().unwrap();
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        answer == "yes" || answer == "no",
        "can-i {verb} {resource}: {answer:?} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    answer == "yes"
}

/// Image and generation of every Deployment of the release.
async fn deployments(client: &Client, ns: &str, release: &str) -> BTreeMap<String, (String, i64)> {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={release}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|d| {
            let image = d
                .spec
                .as_ref()
                .unwrap()
                .template
                .spec
                .as_ref()
                .unwrap()
                .containers[0]
                .image
                .clone()
                .unwrap();
            (
                d.metadata.name.unwrap(),
                (image, d.metadata.generation.unwrap()),
            )
        })
        .collect()
}

#[tokio::test]
async fn chart_installs_with_least_privilege_and_upgrades_one_service_alone() {
    let Some(fx) = Fixture::new("helm").await else {
        return;
    };
    let ns = fx.ns().to_owned();
    let cluster = &fx.cluster;
    // Unique per test run: cluster-scoped names carry it.
    let release = format!("h{}", &ns[ns.len() - 8..]);
    let prefix = format!("{release}-nanny");
    let chart = chart();
    let chart = chart.to_str().unwrap();
    let _release = Release::new(cluster, &release, &ns);
    // The audit log is persisted by default. This cluster has no volume
    // provisioner: a PersistentVolume bound to the chart's claim is what an
    // operator of such a cluster provides.
    chart::audit_volume(&fx.client, &release, &ns, &prefix).await;
    // kwok's fake nodes may carry the kwok taint; the chart takes the
    // toleration as a value like any other cluster's.
    let tolerations = r#"global.tolerations=[{"key":"kwok.x-k8s.io/node","operator":"Exists","effect":"NoSchedule"}]"#;
    let notes = helm(
        cluster,
        &ns,
        &[
            "install",
            &release,
            chart,
            "--namespace",
            &ns,
            "--set-json",
            tolerations,
            "--wait",
            "--timeout",
            "300s",
        ],
    );
    assert!(notes.contains("Monitor mode"), "{notes}");

    // CRDs Established.
    let crds: Api<CustomResourceDefinition> = Api::all(fx.client.clone());
    for name in ["healingpolicies.nanny.ai", "healingactions.nanny.ai"] {
        let crd = crds.get(name).await.unwrap();
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} not Established");
    }
    wait_available(&fx.client, &ns, &release, SERVICES.len()).await;

    // The default policy was accepted by the CRD's schema.
    let mode = Command::new(&cluster.kubectl)
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args([
            "get",
            "healingpolicy",
            "default",
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.mode}",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&mode.stdout), "Monitor");

    // What every ServiceAccount may and may not do. "*" is all namespaces.
    let other = "default";
    let own_lease = format!("leases.coordination.k8s.io#{prefix}-coordinator");
    let matrix: [(&str, &str, &str, &str, bool); 46] = [
        ("collector", "list", "pods", "*", true),
        ("collector", "watch", "nodes", "*", true),
        ("collector", "watch", "events", "*", true),
        ("collector", "list", "deployments.apps", "*", true),
        ("collector", "watch", "jobs.batch", "*", true),
        (
            "collector",
            "watch",
            "horizontalpodautoscalers.autoscaling",
            "*",
            true,
        ),
        ("collector", "watch", "persistentvolumeclaims", "*", true),
        (
            "collector",
            "list",
            "poddisruptionbudgets.policy",
            "*",
            true,
        ),
        ("collector", "watch", "services", "*", true),
        (
            "collector",
            "watch",
            "validatingwebhookconfigurations.admissionregistration.k8s.io",
            "*",
            true,
        ),
        ("collector", "get", "secrets", other, false),
        ("collector", "list", "configmaps", "*", false),
        ("collector", "delete", "pods", other, false),
        ("collector", "patch", "deployments.apps", other, false),
        ("analyzer", "list", "pods", "*", false),
        ("analyzer", "get", "secrets", other, false),
        ("analyzer", "list", "healingpolicies.nanny.ai", "*", false),
        ("safety-gate", "list", "pods", "*", false),
        (
            "safety-gate",
            "create",
            "healingactions.nanny.ai",
            other,
            false,
        ),
        ("safety-gate", "get", "configmaps", &ns, false),
        ("remediator", "delete", "pods", other, true),
        ("remediator", "create", "pods/eviction", other, true),
        ("remediator", "patch", "deployments.apps", other, true),
        (
            "remediator",
            "patch",
            "horizontalpodautoscalers.autoscaling",
            other,
            true,
        ),
        ("remediator", "patch", "nodes", "*", true),
        ("remediator", "patch", "persistentvolumeclaims", other, true),
        ("remediator", "delete", "jobs.batch", other, true),
        ("remediator", "create", "jobs.batch", other, false),
        ("remediator", "create", "deployments.apps", other, false),
        ("remediator", "create", "pods", other, false),
        ("remediator", "get", "secrets", other, false),
        ("remediator", "delete", "deployments.apps", other, false),
        ("remediator", "delete", "statefulsets.apps", other, false),
        ("remediator", "delete", "nodes", "*", false),
        ("remediator", "delete", "persistentvolumes", "*", false),
        (
            "remediator",
            "create",
            "clusterroles.rbac.authorization.k8s.io",
            "*",
            false,
        ),
        (
            "coordinator",
            "watch",
            "healingpolicies.nanny.ai",
            "*",
            true,
        ),
        (
            "coordinator",
            "create",
            "healingactions.nanny.ai",
            other,
            true,
        ),
        (
            "coordinator",
            "patch",
            "healingactions.nanny.ai/status",
            other,
            true,
        ),
        // Retention: finished actions are deleted; policies never.
        (
            "coordinator",
            "delete",
            "healingactions.nanny.ai",
            other,
            true,
        ),
        (
            "coordinator",
            "delete",
            "healingpolicies.nanny.ai",
            other,
            false,
        ),
        // Renewals: only this release's Lease, by name.
        ("coordinator", "update", &own_lease, &ns, true),
        (
            "coordinator",
            "update",
            "leases.coordination.k8s.io",
            &ns,
            false,
        ),
        (
            "coordinator",
            "update",
            "leases.coordination.k8s.io",
            "kube-system",
            false,
        ),
        ("coordinator", "delete", "pods", other, false),
        ("coordinator", "get", "secrets", other, false),
    ];
    let mut wrong = Vec::new();
    for (service, verb, resource, scope, expected) in matrix {
        let account = format!("system:serviceaccount:{ns}:{prefix}-{service}");
        if can_i(cluster, &account, verb, resource, scope) != expected {
            wrong.push(format!(
                "{service} {verb} {resource} in {scope}: expected {expected}"
            ));
        }
    }
    assert!(wrong.is_empty(), "RBAC matrix:\n{}", wrong.join("\n"));

    // Upgrade one subchart's image: that Deployment alone rolls.
    let before = deployments(&fx.client, &ns, &release).await;
    assert_eq!(before.len(), SERVICES.len());
    helm(
        cluster,
        &ns,
        &[
            "upgrade",
            &release,
            chart,
            "--namespace",
            &ns,
            "--reuse-values",
            "--set",
            "coordinator.image.tag=0.2.0",
            "--wait",
            "--timeout",
            "300s",
        ],
    );
    wait_available(&fx.client, &ns, &release, SERVICES.len()).await;
    let after = deployments(&fx.client, &ns, &release).await;
    let upgraded = format!("{prefix}-coordinator");
    for (name, (image, generation)) in &before {
        let (new_image, new_generation) = &after[name];
        if *name == upgraded {
            assert_eq!(new_image, "ghcr.io/nanny-ai/nanny-coordinator:0.2.0");
            assert_eq!(*new_generation, generation + 1, "{name}");
        } else {
            assert_eq!(new_image, image, "{name} changed");
            assert_eq!(new_generation, generation, "{name} rolled");
        }
    }

    // Uninstall: nothing cluster-scoped of this release survives.
    helm(
        cluster,
        &ns,
        &["uninstall", &release, "--namespace", &ns, "--wait"],
    );
    let roles = Api::<ClusterRole>::all(fx.client.clone())
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={release}")))
        .await
        .unwrap();
    assert!(roles.items.is_empty(), "ClusterRoles left behind");
    let vap = Command::new(&cluster.kubectl)
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args([
            "get",
            "validatingadmissionpolicies",
            "-l",
            &format!("app.kubernetes.io/instance={release}"),
            "-o",
            "name",
        ])
        .output()
        .unwrap();
    assert!(vap.status.success());
    assert_eq!(String::from_utf8_lossy(&vap.stdout).trim(), "");
    assert!(deployments(&fx.client, &ns, &release).await.is_empty());
    // The CRDs stay (Helm never deletes crds/): other releases' data lives in them.
    assert!(crds.get("healingactions.nanny.ai").await.is_ok());
}
