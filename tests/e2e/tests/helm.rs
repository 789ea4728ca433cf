//! The Helm chart (`helm/nanny`) with the real helm binary: it lints, every
//! committed render under `deploy/rendered/` is what the chart produces now,
//! bad values are refused by the schema with a clear message, one image tag
//! changes one Deployment only, and what the chart hands each service (env,
//! the gate's config file) is accepted by that service's real config type.

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(
    clippy::too_many_lines,
    reason = "a test is one scenario against real services, read top to bottom"
)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use nanny_common::config::{ServiceConfig, load};
use nanny_test_util::tools::{HELM, KUBERNETES_VERSION};
use serde_yaml::Value;

const CHART: &str = "helm/nanny";
const SERVICES: [&str; 5] = [
    "collector",
    "analyzer",
    "safety-gate",
    "remediator",
    "coordinator",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn helm_command() -> Command {
    let helm = HELM.require().unwrap();
    let mut command = Command::new(helm);
    command.current_dir(root());
    command
}

/// `helm template` of release `nanny` in namespace `nanny`, with extra args.
/// Returns stdout, or stderr as the error.
fn template(args: &[&str]) -> Result<String, String> {
    let output = helm_command()
        .args([
            "template",
            "nanny",
            CHART,
            "--namespace",
            "nanny",
            "--kube-version",
            KUBERNETES_VERSION,
        ])
        .args(args)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap())
    } else {
        Err(String::from_utf8(output.stderr).unwrap())
    }
}

/// Every object of a multi-document render, keyed by `Kind/name`.
fn objects(yaml: &str) -> BTreeMap<String, Value> {
    let mut objects = BTreeMap::new();
    let mut doc = String::new();
    for line in yaml.lines().chain(std::iter::once("---")) {
        if line == "---" {
            let value: Value = serde_yaml::from_str(&doc).unwrap();
            doc.clear();
            if value.is_null() {
                continue;
            }
            let key = format!(
                "{}/{}",
                value["kind"].as_str().unwrap(),
                value["metadata"]["name"].as_str().unwrap()
            );
            assert!(objects.insert(key.clone(), value).is_none(), "{key} twice");
        } else {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    objects
}

/// The committed renders: file name and contents.
fn rendered_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(root().join("deploy/rendered"))
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// The `helm ...` command a rendered file records on its second line.
fn recorded_args(contents: &str) -> Vec<String> {
    let line = contents.lines().nth(1).unwrap();
    line.strip_prefix("# helm ")
        .unwrap_or_else(|| panic!("no recorded helm command in {line:?}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The values files a rendered file was made with.
fn values_files(args: &[String]) -> Vec<String> {
    args.windows(2)
        .filter(|w| w[0] == "--values")
        .map(|w| w[1].clone())
        .collect()
}

#[test]
fn the_chart_lints_with_every_value_set() {
    for (name, contents) in rendered_files() {
        let mut command = helm_command();
        command.args([
            "lint",
            CHART,
            "--strict",
            "--kube-version",
            KUBERNETES_VERSION,
        ]);
        for file in values_files(&recorded_args(&contents)) {
            command.args(["--values", &file]);
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "helm lint ({name}):\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn committed_renders_match_the_chart() {
    let files = rendered_files();
    let names: BTreeSet<&str> = files
        .iter()
        .map(|(name, _)| name.trim_end_matches(".yaml"))
        .collect();
    for required in [
        "default", "gpu", "canary", "ollama", "dev", "staging", "prod",
    ] {
        assert!(
            names.contains(required),
            "deploy/rendered/{required}.yaml is missing"
        );
    }
    for (name, contents) in &files {
        let args = recorded_args(contents);
        let output = helm_command().args(&args).output().unwrap();
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let fresh = nanny_test_util::helm::without_generated_keys(
            &String::from_utf8(output.stdout).unwrap(),
        );
        let committed = contents.splitn(3, '\n').nth(2).unwrap();
        assert!(
            committed == fresh,
            "deploy/rendered/{name} drifted from the chart; run `cargo xtask helm render`"
        );
        // Every render carries both CRDs and one Deployment per service.
        let objects = objects(&fresh);
        assert!(objects.contains_key("CustomResourceDefinition/healingpolicies.nanny.ai"));
        assert!(objects.contains_key("CustomResourceDefinition/healingactions.nanny.ai"));
        for service in SERVICES {
            assert!(
                objects.contains_key(&format!("Deployment/nanny-{service}")),
                "{name}: no {service} Deployment"
            );
        }
    }
}

#[test]
fn chart_crds_are_the_generated_ones_byte_for_byte() {
    let read = |dir: &str| -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(root().join(dir))
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                (
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&path).unwrap(),
                )
            })
            .collect()
    };
    let generated = read("deploy/crds");
    assert!(!generated.is_empty());
    assert!(
        read("helm/nanny/crds") == generated,
        "helm/nanny/crds differs from deploy/crds; run `cargo xtask helm render`"
    );
}

#[test]
fn bad_values_are_refused_with_a_clear_message() {
    let cases: [(&[&str], &str); 10] = [
        (
            &["--set", "collector.replicas=-1"],
            "collector:\n- at '/replicas': minimum: got -1, want 0",
        ),
        (
            &["--set", "policy.mode=Yolo"],
            "at '/policy/mode': value must be one of 'Monitor', 'DryRun', 'Auto'",
        ),
        (
            &["--set", "analyzer.llm.provider=gpt"],
            "analyzer:\n- at '/llm/provider': value must be one of 'ollama', 'openai'",
        ),
        (
            &["--set", "safety-gate.replicas=3"],
            "safety-gate:\n- at '/replicas': maximum: got 3, want 1",
        ),
        (
            &["--set", "colector.replicas=1"],
            "additional properties 'colector' not allowed",
        ),
        (
            &[
                "--set-json",
                r#"global.protectedResources.namespaces=["kube-system"]"#,
            ],
            "at '/global/protectedResources/namespaces/0': value must be 'kube-public'",
        ),
        (
            &["--set", "analyzer.canary.enabled=true"],
            "analyzer.canary.image.tag is required when analyzer.canary.enabled is true",
        ),
        (
            &["--set", "analyzer.llm.endpoint="],
            "analyzer.llm.endpoint is empty and ollama.enabled is false",
        ),
        (
            &["--set", "coordinator.kubernetes.leaseRenewSecs=10"],
            "coordinator.kubernetes.leaseDurationSecs must be at least twice",
        ),
        (
            &["--set", "coordinator.kubernetes.watchNamespace=Shop"],
            "coordinator:\n- at '/kubernetes/watchNamespace': 'Shop' does not match pattern",
        ),
    ];
    for (args, message) in cases {
        let error = template(args).expect_err(&format!("{args:?} rendered"));
        assert!(
            error.contains(message),
            "{args:?}: expected {message:?} in:\n{error}"
        );
    }
}

/// Objects that differ between two renders. The keys and certificates
/// Helm generates anew at every render (kept by `lookup` on a real install)
/// are not a difference.
fn changed(before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>) -> Vec<String> {
    let stable = |object: Option<&Value>| {
        object.cloned().map(|mut object| {
            if object["metadata"]["annotations"]["nanny.ai/generated-certificate"] == "true"
                && let Some(map) = object.as_mapping_mut()
            {
                map.remove("data");
                map.remove("binaryData");
            }
            object
        })
    };
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| stable(before.get(*k)) != stable(after.get(*k)))
        .cloned()
        .collect()
}

fn image_of(deployment: &Value) -> &str {
    deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
}

#[test]
fn a_canary_tag_change_alters_only_the_canary_deployment() {
    let canary = ["--values", "helm/nanny/ci/canary-values.yaml"];
    let before = objects(&template(&canary).unwrap());
    let after = objects(
        &template(&[&canary[..], &["--set", "analyzer.canary.image.tag=0.3.0"]].concat()).unwrap(),
    );
    assert_eq!(
        changed(&before, &after),
        ["Deployment/nanny-analyzer-canary"]
    );
    let key = "Deployment/nanny-analyzer-canary";
    assert_eq!(
        image_of(&before[key]),
        "ghcr.io/nanny-ai/nanny-analyzer:0.2.0"
    );
    assert_eq!(
        image_of(&after[key]),
        "ghcr.io/nanny-ai/nanny-analyzer:0.3.0"
    );
    // Nothing but the image changed in it.
    let mut patched = after[key].clone();
    patched["spec"]["template"]["spec"]["containers"][0]["image"] =
        before[key]["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    assert_eq!(patched, before[key]);
    // The stable track keeps the chart's version, and one Service selects both.
    assert_eq!(
        image_of(&after["Deployment/nanny-analyzer"]),
        "ghcr.io/nanny-ai/nanny-analyzer:0.1.0"
    );
    let selector = &after["Service/nanny-analyzer"]["spec"]["selector"];
    for track in ["Deployment/nanny-analyzer", key] {
        let labels = after[track]["spec"]["template"]["metadata"]["labels"]
            .as_mapping()
            .unwrap();
        for (k, v) in selector.as_mapping().unwrap() {
            assert_eq!(labels.get(k), Some(v), "{track} not behind the Service");
        }
    }
}

#[test]
fn one_service_tag_upgrade_alters_only_its_deployment() {
    let before = objects(&template(&[]).unwrap());
    let after = objects(&template(&["--set", "remediator.image.tag=0.2.0"]).unwrap());
    assert_eq!(changed(&before, &after), ["Deployment/nanny-remediator"]);
    assert_eq!(
        image_of(&after["Deployment/nanny-remediator"]),
        "ghcr.io/nanny-ai/nanny-remediator:0.2.0"
    );
}

/// A container's literal env values.
fn env_of(deployment: &Value) -> Vec<(String, String)> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                e["value"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// The Deployment's env, with its TLS files (which must be the keys of the
/// service's own Secret, mounted at /etc/nanny/tls) replaced by copies of
/// that Secret's data: so loading the config proves the service accepts the
/// certificates the chart generates.
fn with_chart_certificates(
    objects: &BTreeMap<String, Value>,
    deployment: &Value,
    service: &str,
) -> Vec<(String, String)> {
    let pod = &deployment["spec"]["template"]["spec"];
    let secret_name = format!("nanny-{service}-tls");
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == secret_name.as_str())
        .unwrap_or_else(|| panic!("{service} mounts no Secret {secret_name}"));
    assert!(
        pod["containers"][0]["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|m| m["name"] == volume["name"] && m["mountPath"] == "/etc/nanny/tls"),
        "{service}: {secret_name} is not mounted at /etc/nanny/tls"
    );
    let secret = |name: &str| -> BTreeMap<String, k8s_openapi::ByteString> {
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_yaml::from_value(objects[&format!("Secret/{name}")].clone()).unwrap();
        secret.data.unwrap()
    };
    let config_map: k8s_openapi::api::core::v1::ConfigMap =
        serde_yaml::from_value(objects["ConfigMap/nanny-verdict-signing"].clone()).unwrap();
    // Where the chart mounts what, and where its data comes from.
    let mounted = [
        ("/etc/nanny/tls/", secret(&secret_name)),
        ("/etc/nanny-signing/", secret("nanny-verdict-signing")),
        ("/etc/nanny-verdict-keys/", config_map.binary_data.unwrap()),
    ];
    let dir = std::env::temp_dir().join(format!("nanny-helm-tls-{service}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    env_of(deployment)
        .into_iter()
        .map(|(key, value)| {
            // A value may list several mounted files (`a.pem,b.pem`).
            let mut local_paths = Vec::new();
            for path in value.split(',') {
                let Some((file, data)) = mounted
                    .iter()
                    .find_map(|(prefix, data)| Some((path.strip_prefix(prefix)?, data)))
                else {
                    assert!(!key.starts_with("NANNY_TLS__"), "{service}: {key}={value}");
                    return (key, value);
                };
                let local = dir.join(file);
                std::fs::write(&local, &data[file].0).unwrap();
                local_paths.push(local.display().to_string());
            }
            (key, local_paths.join(","))
        })
        .collect()
}

/// Loads `C` from the Deployment's env (and config file, if any) exactly as
/// the binary would, and checks its ports against the Deployment and Service.
fn check_service<C: ServiceConfig>(objects: &BTreeMap<String, Value>, service: &str) -> C {
    let deployment = &objects[&format!("Deployment/nanny-{service}")];
    let env = with_chart_certificates(objects, deployment, service);
    let file = env
        .iter()
        .find(|(k, _)| k == "NANNY_CONFIG_FILE")
        .map(|(_, path)| {
            // The only file the chart mounts: the gate's ConfigMap.
            assert_eq!(path, "/etc/nanny/config.yaml");
            let text = objects[&format!("ConfigMap/nanny-{service}")]["data"]["config.yaml"]
                .as_str()
                .unwrap()
                .to_owned();
            let local = std::env::temp_dir()
                .join(format!("nanny-helm-{service}-{}.yaml", std::process::id()));
            std::fs::write(&local, text).unwrap();
            local
        });
    let config: C = load(file.as_deref(), env)
        .unwrap_or_else(|e| panic!("{service} refuses the chart's config: {e}"));
    if let Some(file) = file {
        std::fs::remove_file(file).unwrap();
    }
    let ports = |object: &Value, path: &[&str], key: &str| -> Vec<u64> {
        let mut node = object;
        for p in path {
            node = &node[*p];
        }
        node.as_sequence()
            .unwrap()
            .iter()
            .map(|p| p[key].as_u64().unwrap())
            .collect()
    };
    let container_ports = ports(
        &deployment["spec"]["template"]["spec"]["containers"][0],
        &["ports"],
        "containerPort",
    );
    let service_ports = ports(
        &objects[&format!("Service/nanny-{service}")],
        &["spec", "ports"],
        "port",
    );
    for addr in [config.server().grpc_addr, config.server().http_addr] {
        let port = u64::from(addr.port());
        assert!(container_ports.contains(&port), "{service}: {addr}");
        assert!(service_ports.contains(&port), "{service}: {addr}");
    }
    config
}

#[test]
fn every_service_accepts_what_the_chart_configures() {
    for set in [
        "",
        "helm/nanny/ci/ollama-values.yaml",
        "deploy/environments/prod/values.yaml",
    ] {
        let args: &[&str] = if set.is_empty() {
            &[]
        } else {
            &["--values", set]
        };
        let objects = objects(&template(args).unwrap());
        check_service::<nanny_collector::Config>(&objects, "collector");
        let analyzer = check_service::<nanny_analyzer::Config>(&objects, "analyzer");
        if set.contains("ollama") {
            assert_eq!(analyzer.llm.endpoint, "http://nanny-ollama.nanny.svc:11434");
            assert!(objects.contains_key("Service/nanny-ollama"));
            assert!(objects.contains_key("Job/nanny-ollama-preload"));
        }
        let gate = check_service::<nanny_safety_gate::Config>(&objects, "safety-gate");
        assert_eq!(gate.audit.path, "/var/lib/nanny/audit/audit.jsonl");
        let remediator = check_service::<nanny_remediator::Config>(&objects, "remediator");
        // The remediator trusts the key the chart gave the gate.
        let verifier = remediator.verdicts.verifier().unwrap();
        assert_eq!(
            verifier.key_ids(),
            [gate.signing.signer().unwrap().key_id()]
        );
        let coordinator = check_service::<nanny_coordinator::Config>(&objects, "coordinator");
        let peers = &coordinator.peers;
        for (peer, url, port) in [
            ("collector", &peers.collector, 50051),
            ("analyzer", &peers.analyzer, 50052),
            ("safety-gate", &peers.safety_gate, 50053),
            ("remediator", &peers.remediator, 50054),
        ] {
            assert_eq!(url, &format!("http://nanny-{peer}.nanny.svc:{port}"));
        }
        check_coordinator_kubernetes(&objects, &coordinator, "");
    }
    let objects =
        objects(&template(&["--set", "coordinator.kubernetes.watchNamespace=shop"]).unwrap());
    let coordinator = check_service::<nanny_coordinator::Config>(&objects, "coordinator");
    check_coordinator_kubernetes(&objects, &coordinator, "shop");
}

/// The coordinator's analyzer peer is a headless Service (its DNS name lists
/// every analyzer pod, so calls spread over them), its leader Lease is this
/// release's in the release namespace, each replica holds it under its pod
/// name, and two replicas with a budget that keeps one of them running.
fn check_coordinator_kubernetes(
    objects: &BTreeMap<String, Value>,
    coordinator: &nanny_coordinator::Config,
    watch_namespace: &str,
) {
    assert_eq!(
        objects["Service/nanny-analyzer"]["spec"]["clusterIP"], "None",
        "the coordinator balances over the analyzer's pod addresses"
    );
    assert!(
        coordinator
            .peers
            .analyzer
            .starts_with("http://nanny-analyzer.")
    );
    let k = &coordinator.kubernetes;
    assert_eq!(k.watch_namespace, watch_namespace);
    assert_eq!(k.lease_namespace, "nanny");
    assert_eq!(k.lease_name, "nanny-coordinator");
    assert!(k.identity.is_empty(), "identity falls back to $POD_NAME");
    assert!(k.kubeconfig.is_empty(), "in-cluster ServiceAccount");
    let pod = &objects["Deployment/nanny-coordinator"]["spec"]["template"]["spec"];
    let pod_name = pod["containers"][0]["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "POD_NAME")
        .expect("POD_NAME in the coordinator's env");
    assert_eq!(
        pod_name["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(pod["automountServiceAccountToken"], true);
    let replicas = objects["Deployment/nanny-coordinator"]["spec"]["replicas"]
        .as_u64()
        .unwrap();
    assert!(replicas >= 2, "a standby for the leader");
    let pdb = &objects["PodDisruptionBudget/nanny-coordinator"];
    let max_unavailable = pdb["spec"]["maxUnavailable"].as_u64().unwrap();
    assert!(
        max_unavailable < replicas,
        "a disruption leaves one running"
    );
}

#[test]
fn prod_dry_runs_and_is_stricter_than_the_defaults() {
    let default = objects(&template(&[]).unwrap());
    let prod = objects(&template(&["--values", "deploy/environments/prod/values.yaml"]).unwrap());
    let spec = |o: &BTreeMap<String, Value>| o["HealingPolicy/default"]["spec"].clone();
    assert_eq!(spec(&default)["mode"], "Monitor");
    assert_eq!(spec(&prod)["mode"], "DryRun");
    for key in ["maxActionsPerHour", "maxDisruptionPercent"] {
        assert!(
            spec(&prod)["limits"][key].as_u64() < spec(&default)["limits"][key].as_u64(),
            "{key}"
        );
    }
    // The seeds' approval levels: safe actions Auto, node and volume ones Manual.
    let approvals: BTreeMap<String, String> = spec(&default)["actions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["type"].as_str().unwrap().to_owned(),
                a["approval"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for auto in ["RestartPod", "ScaleHpa", "DeleteJob"] {
        assert_eq!(approvals[auto], "Auto");
    }
    for manual in ["CordonNode", "DrainNode", "ExpandPvc"] {
        assert_eq!(approvals[manual], "Manual");
    }
    assert!(!approvals.contains_key("DeleteResource"));
}

fn rules(objects: &BTreeMap<String, Value>, role: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for rule in objects[role]["rules"].as_sequence().unwrap() {
        let list = |key: &str| -> Vec<String> {
            rule[key]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in list("verbs") {
                    out.push((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn rbac_is_least_privilege_and_cluster_names_carry_the_release() {
    let objects = objects(&template(&[]).unwrap());
    let collector = rules(&objects, "ClusterRole/nanny-nanny-collector");
    assert!(
        collector
            .iter()
            .all(|(_, _, verb)| ["get", "list", "watch"].contains(&verb.as_str())),
        "collector may only read: {collector:?}"
    );
    for (group, resource) in [
        ("", "pods"),
        ("", "nodes"),
        ("", "events"),
        ("apps", "deployments"),
        ("batch", "cronjobs"),
        ("autoscaling", "horizontalpodautoscalers"),
        ("", "persistentvolumeclaims"),
        ("storage.k8s.io", "storageclasses"),
        ("policy", "poddisruptionbudgets"),
        ("", "services"),
        ("", "persistentvolumes"),
        ("networking.k8s.io", "networkpolicies"),
        ("networking.k8s.io", "ingresses"),
        ("networking.k8s.io", "ingressclasses"),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
        ),
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
        ),
    ] {
        assert!(
            collector
                .iter()
                .any(|r| r.0 == group && r.1 == resource && r.2 == "watch"),
            "collector cannot watch {resource}"
        );
    }
    assert!(
        !collector
            .iter()
            .any(|r| r.1 == "secrets" || r.1 == "configmaps")
    );
    // TLS Secrets only where asked for: list and watch, and the collector
    // told to read them.
    let reading =
        self::objects(&template(&["--set", "collector.tlsSecrets.enabled=true"]).unwrap());
    let granted = rules(&reading, "ClusterRole/nanny-nanny-collector");
    let secrets: Vec<&str> = granted
        .iter()
        .filter(|r| r.1 == "secrets")
        .map(|r| r.2.as_str())
        .collect();
    assert_eq!(secrets, ["list", "watch"]);
    assert!(env_of(&reading["Deployment/nanny-collector"]).contains(&(
        "NANNY_KUBERNETES__TLS_SECRETS".to_owned(),
        "true".to_owned()
    )));
    assert!(
        !env_of(&objects["Deployment/nanny-collector"])
            .iter()
            .any(|(k, _)| k == "NANNY_KUBERNETES__TLS_SECRETS")
    );
    // RetriggerJob's create and patch on Jobs only where asked for.
    let retrying =
        self::objects(&template(&["--set", "remediator.retriggerJobs.enabled=true"]).unwrap());
    let job_verbs = |objects: &BTreeMap<String, Value>| -> Vec<String> {
        rules(objects, "ClusterRole/nanny-nanny-remediator")
            .into_iter()
            .filter(|r| r.1 == "jobs")
            .map(|r| r.2)
            .collect()
    };
    assert_eq!(job_verbs(&objects), ["delete", "get", "list"]);
    assert_eq!(
        job_verbs(&retrying),
        ["create", "delete", "get", "list", "patch"]
    );
    let remediator = rules(&objects, "ClusterRole/nanny-nanny-remediator");
    assert!(
        !remediator
            .iter()
            .any(|r| r.1 == "secrets" || r.0.contains("rbac"))
    );
    assert!(!remediator.iter().any(|r| r.2 == "*" || r.1 == "*"));
    // The chart and deploy/rbac/remediator.yaml grant the same verbs.
    let shipped = root().join("deploy/rbac/remediator.yaml");
    if shipped.is_file() {
        let text = std::fs::read_to_string(shipped).unwrap();
        let docs = self::objects(&text);
        let role = docs
            .keys()
            .find(|k| k.starts_with("ClusterRole/"))
            .expect("a ClusterRole in deploy/rbac/remediator.yaml")
            .clone();
        assert_eq!(rules(&docs, &role), remediator);
    }
    // The gate only reads the HealingAction history it restores its limits
    // from, exactly as deploy/rbac/safety-gate.yaml grants.
    let gate = rules(&objects, "ClusterRole/nanny-nanny-safety-gate");
    let read = |verb: &str| {
        (
            "nanny.ai".to_owned(),
            "healingactions".to_owned(),
            verb.to_owned(),
        )
    };
    assert_eq!(
        gate,
        [read("get"), read("list"), read("watch")],
        "the gate may only read"
    );
    let text = std::fs::read_to_string(root().join("deploy/rbac/safety-gate.yaml")).unwrap();
    let shipped = self::objects(&text);
    assert_eq!(rules(&shipped, "ClusterRole/nanny-safety-gate"), gate);
    // Its one write: get and patch of the one ConfigMap it anchors the
    // audit head in, by name.
    let anchor = &objects["Role/nanny-audit-anchor"];
    assert_eq!(
        rules(&objects, "Role/nanny-audit-anchor"),
        rules(&shipped, "Role/nanny-safety-gate-audit-anchor")
    );
    assert_eq!(
        anchor["rules"][0]["resourceNames"],
        serde_yaml::from_str::<Value>("[nanny-audit-anchor]").unwrap()
    );
    assert!(
        objects["ConfigMap/nanny-safety-gate"]["data"]["config.yaml"]
            .as_str()
            .is_some_and(|c| c.contains("anchor_configmap: \"nanny/nanny-audit-anchor\"")),
        "the gate is told where to anchor"
    );
    assert_eq!(
        objects["Deployment/nanny-safety-gate"]["spec"]["template"]["spec"]["automountServiceAccountToken"],
        true
    );
    // The coordinator reads policies and writes only its own HealingActions,
    // statuses and Events, exactly as deploy/rbac/coordinator.yaml grants;
    // its Lease access is one Role in the release namespace.
    let coordinator = rules(&objects, "ClusterRole/nanny-nanny-coordinator");
    assert!(
        coordinator
            .iter()
            .all(|(group, resource, verb)| group == "nanny.ai"
                || resource == "events"
                || (resource == "secrets" && verb == "get")),
        "the coordinator touches nothing but its CRs, Events and notification URLs: {coordinator:?}"
    );
    // The one Secret it may read is named: the notification sink URLs.
    let secret_rules: Vec<&Value> = objects["ClusterRole/nanny-nanny-coordinator"]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|r| {
            r["resources"]
                .as_sequence()
                .is_some_and(|s| s.iter().any(|x| x.as_str() == Some("secrets")))
        })
        .collect();
    assert_eq!(secret_rules.len(), 1, "{secret_rules:?}");
    assert_eq!(
        secret_rules[0]["resourceNames"],
        serde_yaml::from_str::<Value>("[nanny-notifications]").unwrap(),
        "only the Secret named nanny-notifications"
    );
    // Its only delete: finished HealingActions past their retention.
    assert!(
        coordinator.iter().all(|(group, resource, verb)| {
            !["deletecollection", "*"].contains(&verb.as_str())
                && (verb != "delete" || (group == "nanny.ai" && resource == "healingactions"))
        }),
        "the coordinator deletes nothing but HealingActions: {coordinator:?}"
    );
    assert!(
        coordinator
            .iter()
            .filter(|r| r.1 == "events")
            .all(|r| r.2 == "create" || r.2 == "patch")
    );
    let text = std::fs::read_to_string(root().join("deploy/rbac/coordinator.yaml")).unwrap();
    let shipped = self::objects(&text);
    assert_eq!(
        rules(&shipped, "ClusterRole/nanny-coordinator"),
        coordinator
    );
    let lease_role = &objects["Role/nanny-coordinator-leader-election"];
    assert_eq!(lease_role["metadata"]["namespace"], "nanny");
    assert_eq!(
        rules(&objects, "Role/nanny-coordinator-leader-election")
            .iter()
            .map(|r| r.2.as_str())
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["create", "get", "update"])
    );
    assert_eq!(
        lease_role["rules"],
        shipped["Role/nanny-coordinator-leader-election"]["rules"]
    );
    // The analyzer has no Kubernetes access at all.
    assert!(
        !objects
            .keys()
            .any(|k| k.contains("Role") && k.ends_with("analyzer")),
        "analyzer has RBAC"
    );
    assert_eq!(
        objects["Deployment/nanny-analyzer"]["spec"]["template"]["spec"]["automountServiceAccountToken"],
        false
    );
    for (key, object) in &objects {
        if object["metadata"]["namespace"].is_null() && !key.starts_with("CustomResourceDefinition")
        {
            assert!(
                object["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("nanny-nanny-"),
                "{key}: cluster-scoped names carry namespace and release"
            );
        }
    }
}

#[test]
fn during_a_verdict_key_rotation_the_remediator_trusts_both_keys() {
    let dir = std::env::temp_dir().join(format!("nanny-helm-rotation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    nanny_test_util::pki::write_signing_key(&dir, "old").unwrap();
    let previous = format!(
        "global.verdictSigning.previousCertificate={}",
        dir.join("old.pem").display()
    );
    let objects = objects(&template(&["--set-file", &previous]).unwrap());
    let gate = check_service::<nanny_safety_gate::Config>(&objects, "safety-gate");
    let remediator = check_service::<nanny_remediator::Config>(&objects, "remediator");
    let trusted = remediator.verdicts.verifier().unwrap();
    let old = nanny_common::verdict::Verifier::load("old", &[dir.join("old.pem")]).unwrap();
    let current = gate.signing.signer().unwrap();
    assert_eq!(
        trusted.key_ids(),
        [current.key_id(), old.key_ids()[0]],
        "the gate's key and the previous one"
    );
}

#[test]
fn every_pod_is_non_root_read_only_and_probed_for_readiness() {
    let objects = objects(&template(&["--values", "helm/nanny/ci/canary-values.yaml"]).unwrap());
    let deployments: Vec<(&String, &Value)> = objects
        .iter()
        .filter(|(k, _)| k.starts_with("Deployment/"))
        .collect();
    assert_eq!(deployments.len(), 7, "five services and two canaries");
    for (key, deployment) in deployments {
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{key}");
        let container = &pod["containers"][0];
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true, "{key}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{key}");
        assert_eq!(security["capabilities"]["drop"][0], "ALL", "{key}");
        let grpc_port = container["ports"][0]["containerPort"].clone();
        assert_eq!(container["ports"][0]["name"], "grpc");
        // The gRPC port serves mutual TLS only, which the kubelet's gRPC
        // probes cannot speak: readiness is /readyz, which mirrors
        // grpc.health.v1, on the HTTP port.
        assert_ne!(grpc_port, Value::Null);
        for probe in ["startupProbe", "readinessProbe"] {
            assert_eq!(
                container[probe]["httpGet"]["path"], "/readyz",
                "{key} {probe}"
            );
            assert_eq!(
                container[probe]["httpGet"]["port"], "metrics",
                "{key} {probe}"
            );
        }
        assert!(container["resources"]["requests"]["memory"].is_string());
        assert!(container["resources"]["limits"]["memory"].is_string());
    }
    for service in SERVICES {
        assert!(objects.contains_key(&format!("PodDisruptionBudget/nanny-{service}")));
        assert!(objects.contains_key(&format!("ServiceAccount/nanny-{service}")));
    }
    assert!(objects.contains_key("HorizontalPodAutoscaler/nanny-analyzer"));
}
