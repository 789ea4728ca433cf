use std::collections::BTreeMap;

use prost::Message as _;

use super::*;
use crate::store::{Item, Store};

fn pod(namespace: &str, name: &str, app: &str, phase: &str) -> Item {
    let uid = format!("{namespace}-{name}");
    Item::Pod(
        Arc::from(uid.as_str()),
        pb::Pod {
            r#ref: Some(pb::ObjectRef {
                kind: "Pod".to_owned(),
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                uid,
                ..pb::ObjectRef::default()
            }),
            phase: phase.to_owned(),
            ..pb::Pod::default()
        },
        Arc::new(BTreeMap::from([("app".to_owned(), app.to_owned())])),
    )
}

fn world(store: &Store, generation: u64, issues: &[(&str, &str)]) -> World {
    World {
        generation,
        tables: store.tables(),
        issues: issues
            .iter()
            .map(|(fingerprint, target_uid)| IssueEntry {
                issue: Arc::new(pb::Issue {
                    fingerprint: (*fingerprint).to_owned(),
                    target: Some(pb::ObjectRef {
                        uid: (*target_uid).to_owned(),
                        ..pb::ObjectRef::default()
                    }),
                    ..pb::Issue::default()
                }),
                content: 1,
            })
            .collect(),
        ..World::default()
    }
}

fn names(pods: &[pb::Pod]) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .filter_map(|p| p.r#ref.as_ref().map(|r| r.name.clone()))
        .collect();
    names.sort();
    names
}

#[test]
fn a_stream_sends_everything_once_then_only_changes() -> Result<(), String> {
    let mut store = Store::default();
    store.apply(pod("shop", "a", "web", "Running"));
    store.apply(pod("shop", "b", "web", "Running"));
    let mut subscriber = Subscriber::new(ScopeFilter::new(None)?);

    let full = subscriber
        .next(&world(&store, 1, &[("f1", "shop-a")]), false)
        .ok_or("full")?;
    assert_eq!(full.kind, pb::SnapshotKind::Full as i32);
    assert_eq!(names(&full.pods), ["a", "b"]);
    assert_eq!(full.issues.len(), 1);

    assert!(
        subscriber
            .next(&world(&store, 2, &[("f1", "shop-a")]), false)
            .is_none(),
        "nothing changed, nothing sent"
    );

    store.apply(pod("shop", "a", "web", "Failed"));
    store.delete(&pod("shop", "b", "web", "Running"));
    let delta = subscriber
        .next(&world(&store, 3, &[]), false)
        .ok_or("delta")?;
    assert_eq!(delta.kind, pb::SnapshotKind::Delta as i32);
    assert_eq!(delta.base_generation, 1);
    assert_eq!(names(&delta.pods), ["a"]);
    assert_eq!(
        delta
            .removed
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    assert_eq!(delta.resolved_issues, ["f1"]);
    Ok(())
}

#[test]
fn scopes_narrow_objects_and_issues() -> Result<(), String> {
    let mut store = Store::default();
    store.apply(pod("shop", "a", "web", "Running"));
    store.apply(pod("shop", "b", "db", "Running"));
    store.apply(pod("cart", "c", "web", "Running"));
    let world = world(
        &store,
        1,
        &[("fa", "shop-a"), ("fb", "shop-b"), ("fc", "cart-c")],
    );

    let scope = |namespaces: &[&str], selector: &str| {
        ScopeFilter::new(Some(pb::Scope {
            namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
            label_selector: selector.to_owned(),
        }))
    };
    let shop = Subscriber::new(scope(&["shop"], "")?)
        .next(&world, true)
        .ok_or("shop")?;
    assert_eq!(names(&shop.pods), ["a", "b"]);
    let web = Subscriber::new(scope(&[], "app=web")?)
        .next(&world, true)
        .ok_or("web")?;
    assert_eq!(names(&web.pods), ["a", "c"]);
    let mut fingerprints: Vec<&str> = web.issues.iter().map(|i| i.fingerprint.as_str()).collect();
    fingerprints.sort_unstable();
    assert_eq!(fingerprints, ["fa", "fc"]);
    assert!(
        ScopeFilter::new(Some(pb::Scope {
            namespaces: vec![],
            label_selector: "app in web".to_owned()
        }))
        .is_err()
    );
    Ok(())
}

#[test]
fn large_snapshots_are_chunked_under_the_limit_and_reassemble() -> Result<(), String> {
    let mut store = Store::default();
    for i in 0..3000 {
        store.apply(pod(
            "shop",
            &format!("pod-with-a-long-name-{i:05}"),
            "web",
            "Running",
        ));
    }
    let snapshot = Subscriber::new(ScopeFilter::new(None)?)
        .next(&world(&store, 1, &[]), true)
        .ok_or("full")?;
    let max = 64 * 1024;
    assert!(snapshot.encoded_len() > max);
    let chunks = chunk(snapshot.clone(), max);
    assert!(chunks.len() > 1);
    let mut pods = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        assert!(
            c.encoded_len() <= max,
            "chunk {i} is {} bytes",
            c.encoded_len()
        );
        assert_eq!(c.id, snapshot.id);
        assert_eq!(c.chunk_index as usize, i);
        assert_eq!(c.chunk_count as usize, chunks.len());
        pods.extend(c.pods.iter().cloned());
    }
    assert_eq!(names(&pods), names(&snapshot.pods));

    let small = chunk(pb::ClusterSnapshot::default(), max);
    assert_eq!((small.len(), small[0].chunk_count), (1, 1));
    Ok(())
}

#[test]
fn nodes_are_in_every_scope() {
    let mut store = Store::default();
    store.apply(Item::Node(
        Arc::from("n1"),
        pb::Node {
            r#ref: Some(pb::ObjectRef {
                kind: "Node".to_owned(),
                name: "n1".to_owned(),
                uid: "n1".to_owned(),
                ..pb::ObjectRef::default()
            }),
            ..pb::Node::default()
        },
    ));
    let scoped = ScopeFilter::new(Some(pb::Scope {
        namespaces: vec!["shop".to_owned()],
        label_selector: "app=web".to_owned(),
    }));
    let snapshot = Subscriber::new(scoped.unwrap_or_default()).next(&world(&store, 1, &[]), true);
    assert_eq!(snapshot.map(|s| s.nodes.len()), Some(1));
}

#[test]
fn webhooks_and_volumes_go_to_the_scopes_of_their_services_and_claims() {
    let mut store = Store::default();
    store.apply(Item::Webhook(
        Arc::from("w1"),
        pb::AdmissionWebhook {
            r#ref: Some(pb::ObjectRef {
                kind: "ValidatingWebhookConfiguration".to_owned(),
                name: "guard".to_owned(),
                uid: "w1".to_owned(),
                ..pb::ObjectRef::default()
            }),
            calls: vec![pb::WebhookCall {
                name: "check.example.com".to_owned(),
                service_namespace: "guard-system".to_owned(),
                service_name: "webhook".to_owned(),
                failure_policy: "Fail".to_owned(),
            }],
        },
    ));
    store.apply(Item::Volume(
        Arc::from("v1"),
        pb::PersistentVolume {
            r#ref: Some(pb::ObjectRef {
                kind: "PersistentVolume".to_owned(),
                name: "pv-1".to_owned(),
                uid: "v1".to_owned(),
                ..pb::ObjectRef::default()
            }),
            claim: Some(pb::ObjectRef {
                namespace: "shop".to_owned(),
                name: "data".to_owned(),
                ..pb::ObjectRef::default()
            }),
            ..pb::PersistentVolume::default()
        },
    ));
    let world = world(&store, 1, &[]);
    let sent = |namespaces: &[&str]| {
        let scope = ScopeFilter::new(Some(pb::Scope {
            namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
            label_selector: String::new(),
        }));
        let s = Subscriber::new(scope.unwrap_or_default()).next(&world, true);
        s.map(|s| (s.webhooks.len(), s.volumes.len()))
    };
    assert_eq!(sent(&["shop"]), Some((0, 1)), "no other scope's Services");
    assert_eq!(sent(&["guard-system"]), Some((1, 0)));
    assert_eq!(sent(&[]), Some((1, 1)));
}

fn reference(kind: &str, name: &str) -> Option<pb::ObjectRef> {
    Some(pb::ObjectRef {
        kind: kind.to_owned(),
        namespace: "shop".to_owned(),
        name: name.to_owned(),
        uid: format!("{kind}-{name}"),
        ..pb::ObjectRef::default()
    })
}

fn workload(kind: &str, name: &str, owner: Option<pb::ObjectRef>, app: &str) -> Item {
    let r#ref = reference(kind, name);
    Item::Workload(
        Arc::from(r#ref.as_ref().map_or("", |r| r.uid.as_str())),
        pb::Workload {
            r#ref,
            owner,
            claim_templates: if kind == "StatefulSet" {
                vec!["data".to_owned()]
            } else {
                Vec::new()
            },
            ..pb::Workload::default()
        },
        Arc::new(BTreeMap::from([("app".to_owned(), app.to_owned())])),
        true,
    )
}

#[test]
fn a_label_selected_scope_still_carries_the_owners_of_what_it_holds() -> Result<(), String> {
    let mut store = Store::default();
    let web = Arc::new(BTreeMap::from([("app".to_owned(), "web".to_owned())]));
    // The chart labelled its objects `app=web` but not their owners.
    store.apply(workload("Deployment", "front", None, "chart"));
    // A Deployment's ReplicaSet only links its pods to it.
    if let Item::Workload(uid, rs, labels, _) = workload(
        "ReplicaSet",
        "front-abc",
        reference("Deployment", "front"),
        "chart",
    ) {
        store.apply(Item::Workload(uid, rs, labels, false));
    }
    store.apply(Item::Pod(
        Arc::from("pod-1"),
        pb::Pod {
            r#ref: reference("Pod", "front-1"),
            owner: reference("ReplicaSet", "front-abc"),
            workload: reference("Deployment", "front"),
            ..pb::Pod::default()
        },
        web.clone(),
    ));
    store.apply(workload("CronJob", "nightly", None, "chart"));
    store.apply(Item::Job(
        Arc::from("job-1"),
        pb::Job {
            r#ref: reference("Job", "nightly-1"),
            owner: reference("CronJob", "nightly"),
            ..pb::Job::default()
        },
        web.clone(),
    ));
    store.apply(workload("Deployment", "api", None, "chart"));
    store.apply(Item::Hpa(
        Arc::from("hpa-1"),
        pb::HorizontalPodAutoscaler {
            r#ref: reference("HorizontalPodAutoscaler", "api"),
            scale_target: reference("Deployment", "api").map(|r| pb::ObjectRef {
                uid: String::new(),
                ..r
            }),
            ..pb::HorizontalPodAutoscaler::default()
        },
        web.clone(),
    ));
    store.apply(workload("StatefulSet", "db", None, "chart"));
    store.apply(Item::Pvc(
        Arc::from("pvc-1"),
        pb::PersistentVolumeClaim {
            r#ref: reference("PersistentVolumeClaim", "data-db-0"),
            ..pb::PersistentVolumeClaim::default()
        },
        web,
    ));
    // Owns nothing in scope: stays out.
    store.apply(workload("Deployment", "other", None, "chart"));

    let scoped = ScopeFilter::new(Some(pb::Scope {
        namespaces: vec![],
        label_selector: "app=web".to_owned(),
    }))?;
    let snapshot = Subscriber::new(scoped)
        .next(&world(&store, 1, &[]), true)
        .ok_or("a snapshot")?;
    let mut sent: Vec<String> = snapshot
        .workloads
        .iter()
        .filter_map(|w| w.r#ref.as_ref().map(|r| format!("{}/{}", r.kind, r.name)))
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            "CronJob/nightly",
            "Deployment/api",
            "Deployment/front",
            "StatefulSet/db"
        ]
    );
    Ok(())
}
