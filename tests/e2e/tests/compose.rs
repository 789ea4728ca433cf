//! docker-compose.yaml stays true to the code: every NANNY_* variable is a
//! real config key with a valid value, published ports are the ports the
//! services listen on, peers point at real compose services, and Prometheus
//! scrapes every metrics port. (No Docker engine runs here, so this parses
//! the file instead of `docker compose config`.)

// Test helpers fail loudly: a panic with a message is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, net::SocketAddr, path::Path};

use nanny_common::config::{ServiceConfig, load};
use serde_yaml::Value;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path),
    )
    .unwrap()
}

fn compose() -> Value {
    let mut value: Value = serde_yaml::from_str(&repo_file("docker-compose.yaml")).unwrap();
    value.apply_merge().unwrap();
    value
}

fn environment(service: &Value) -> Vec<(String, String)> {
    let env = service["environment"]
        .as_mapping()
        .expect("environment map");
    env.iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
            };
            // ./certs (what `cargo xtask certs --out certs` writes) holds the
            // same files as the test PKI.
            let value = match value.strip_prefix("/certs/") {
                Some(file) => nanny_test_util::pki::test_dir()
                    .join(file)
                    .display()
                    .to_string(),
                None => value,
            };
            (k.as_str().unwrap().to_owned(), value)
        })
        .collect()
}

/// Container ports published by a service.
fn container_ports(service: &Value) -> Vec<u16> {
    service["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| {
            p.as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

/// Loads `C` from the compose environment exactly as the binary would.
fn check<C: ServiceConfig>(compose: &Value, name: &str) -> C {
    let service = &compose["services"][name];
    let config: C =
        load(None, environment(service)).unwrap_or_else(|e| panic!("compose service {name}: {e}"));
    let ports = container_ports(service);
    for addr in [config.server().grpc_addr, config.server().http_addr] {
        assert!(
            ports.contains(&addr.port()),
            "{name} listens on {addr} but publishes {ports:?}"
        );
    }
    let image_arg = service["build"]["args"]["SERVICE"].as_str().unwrap();
    assert_eq!(
        image_arg,
        format!("nanny-{name}"),
        "{name} builds the wrong binary"
    );
    config
}

#[test]
fn compose_services_match_their_config_types() {
    let compose = compose();
    let mut grpc_ports = BTreeMap::new();
    let mut http_ports = BTreeMap::new();
    let mut record = |name: &str, grpc: SocketAddr, http: SocketAddr| {
        grpc_ports.insert(name.to_owned(), grpc.port());
        http_ports.insert(name.to_owned(), http.port());
    };

    let c = check::<nanny_collector::Config>(&compose, "collector");
    record("collector", c.server.grpc_addr, c.server.http_addr);
    let c = check::<nanny_analyzer::Config>(&compose, "analyzer");
    record("analyzer", c.server.grpc_addr, c.server.http_addr);
    assert_eq!(c.llm.endpoint, "http://ollama:11434");
    assert!(
        compose["services"]["ollama"].is_mapping(),
        "analyzer points at a missing ollama service"
    );
    let c = check::<nanny_safety_gate::Config>(&compose, "safety-gate");
    record("safety-gate", c.server.grpc_addr, c.server.http_addr);
    let c = check::<nanny_remediator::Config>(&compose, "remediator");
    record("remediator", c.server.grpc_addr, c.server.http_addr);
    let coordinator = check::<nanny_coordinator::Config>(&compose, "coordinator");
    record(
        "coordinator",
        coordinator.server.grpc_addr,
        coordinator.server.http_addr,
    );

    // Every peer URL names a compose service and that service's gRPC port.
    let peers = &coordinator.peers;
    for (peer, url) in [
        ("collector", &peers.collector),
        ("analyzer", &peers.analyzer),
        ("safety-gate", &peers.safety_gate),
        ("remediator", &peers.remediator),
    ] {
        assert_eq!(
            url,
            &format!("http://{peer}:{}", grpc_ports[peer]),
            "coordinator's {peer} URL"
        );
    }

    // Prometheus scrapes exactly the five metrics ports.
    let prometheus: Value =
        serde_yaml::from_str(&repo_file("deploy/compose/prometheus.yml")).unwrap();
    let mut targets: Vec<String> = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    targets.sort();
    let mut expected: Vec<String> = http_ports
        .iter()
        .map(|(name, port)| format!("{name}:{port}"))
        .collect();
    expected.sort();
    assert_eq!(targets, expected);
}

#[test]
fn kube_services_get_the_mounted_kubeconfig() {
    let compose = compose();
    for name in ["collector", "remediator", "coordinator"] {
        let service = &compose["services"][name];
        let env = environment(service);
        assert!(
            env.contains(&("KUBECONFIG".to_owned(), "/kube/config".to_owned())),
            "{name}"
        );
        let volumes: Vec<&str> = service["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            volumes.iter().any(|v| v.ends_with(":/kube/config:ro")),
            "{name}: {volumes:?}"
        );
    }
}
