use super::*;

fn reference(kind: &str, namespace: &str, name: &str, uid: &str) -> pb::ObjectRef {
    pb::ObjectRef {
        kind: kind.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        ..pb::ObjectRef::default()
    }
}

fn pod(namespace: &str, name: &str, owner: Option<pb::ObjectRef>) -> Item {
    let uid = format!("{namespace}/{name}");
    Item::Pod(
        Arc::from(uid.as_str()),
        pb::Pod {
            r#ref: Some(reference("Pod", namespace, name, &uid)),
            owner,
            ..pb::Pod::default()
        },
        Labels::default(),
    )
}

fn replica_set(owner: Option<pb::ObjectRef>) -> Item {
    let visible = owner.is_none();
    Item::Workload(
        Arc::from("rs1"),
        pb::Workload {
            r#ref: Some(reference("ReplicaSet", "shop", "web-abc", "rs1")),
            owner,
            ..pb::Workload::default()
        },
        Labels::default(),
        visible,
    )
}

#[test]
fn a_pod_seen_before_its_replica_set_is_relinked_to_the_deployment() {
    let mut store = Store::default();
    let rs = reference("ReplicaSet", "shop", "web-abc", "rs1");
    store.apply(pod("shop", "web-abc-1", Some(rs.clone())));
    let workload = |s: &Store| s.view().pods["shop/web-abc-1"].value.workload.clone();
    assert_eq!(
        workload(&store),
        Some(rs),
        "until the ReplicaSet is known, its pods point at it"
    );

    let before = store.rev();
    let deployment = reference("Deployment", "shop", "web", "d1");
    assert!(store.apply(replica_set(Some(deployment.clone()))));
    assert_eq!(workload(&store), Some(deployment));
    assert!(
        store.view().pods["shop/web-abc-1"].rev > before,
        "the pod changed, so subscribers get it again"
    );
    assert!(
        store.view().workloads.is_empty(),
        "a Deployment's ReplicaSet is not a workload of its own"
    );
}

#[test]
fn applying_an_unchanged_projection_changes_nothing() {
    let mut store = Store::default();
    assert!(store.apply(pod("shop", "a", None)));
    let rev = store.rev();
    assert!(!store.apply(pod("shop", "a", None)));
    assert_eq!(store.rev(), rev);
}

#[test]
fn a_relist_drops_what_disappeared_in_that_namespace_only() {
    let mut store = Store::default();
    for (ns, name) in [("shop", "a"), ("shop", "b"), ("cart", "c")] {
        store.apply(pod(ns, name, None));
    }
    // The watch of "shop" dropped and relisted: b was deleted meanwhile.
    assert!(store.replace("Pod", Some("shop"), vec![pod("shop", "a", None)]));
    let mut left: Vec<&str> = store.view().pods.keys().map(|k| &**k).collect();
    left.sort_unstable();
    assert_eq!(left, ["cart/c", "shop/a"]);

    // A cluster-wide relist is authoritative for every namespace.
    store.replace("Pod", None, vec![pod("shop", "a", None)]);
    assert_eq!(store.view().pods.len(), 1);
}

#[test]
fn usage_rounds_update_only_pods_whose_usage_changed() {
    let mut store = Store::default();
    let mut item = pod("shop", "a", None);
    if let Item::Pod(_, p, _) = &mut item {
        p.containers.push(pb::ContainerStatus {
            name: "app".to_owned(),
            ..pb::ContainerStatus::default()
        });
    }
    store.apply(item);
    store.apply(pod("shop", "b", None));
    let usage = pb::Resources {
        cpu_millicores: Some(250),
        memory_bytes: Some(1 << 20),
    };
    let containers: ContainerUsage =
        [(("shop".to_owned(), "a".to_owned(), "app".to_owned()), usage)].into();
    let rev_b = store.view().pods["shop/b"].rev;
    assert!(store.apply_usage(containers.clone(), VolumeUsage::new()));
    assert_eq!(
        store.view().pods["shop/a"].value.containers[0].usage,
        Some(usage)
    );
    assert_eq!(store.view().pods["shop/b"].rev, rev_b);
    assert!(
        !store.apply_usage(containers, VolumeUsage::new()),
        "same round, no change"
    );
}

#[test]
fn pvc_usage_and_expandability_come_from_metrics_and_storage_classes() {
    let mut store = Store::default();
    store.apply(Item::Pvc(
        Arc::from("p1"),
        pb::PersistentVolumeClaim {
            r#ref: Some(reference("PersistentVolumeClaim", "shop", "data", "p1")),
            storage_class: "fast".to_owned(),
            capacity_bytes: 1000,
            ..pb::PersistentVolumeClaim::default()
        },
        Labels::default(),
    ));
    store.apply(Item::StorageClass(
        Arc::from("sc1"),
        "fast".to_owned(),
        crate::project::ClassFacts {
            expandable: true,
            binds_on_first_consumer: false,
        },
    ));
    store.apply_usage(
        ContainerUsage::new(),
        [(("shop".to_owned(), "data".to_owned()), (900, Some(1000)))].into(),
    );
    let pvc = &store.view().pvcs["p1"].value;
    assert!(pvc.expandable);
    assert_eq!(pvc.used_bytes, Some(900));
    assert_eq!(pvc.usage_percent, Some(90.0));
}

#[test]
fn events_are_pruned_by_age_and_count() {
    let mut store = Store::default();
    for (i, seen) in [100, 200, 300, 400].into_iter().enumerate() {
        let uid = format!("e{i}");
        store.apply(Item::Event(
            Arc::from(uid.as_str()),
            pb::Event {
                r#ref: Some(reference("Event", "shop", &uid, &uid)),
                last_seen: Some(prost_types::Timestamp {
                    seconds: seen,
                    nanos: 0,
                }),
                ..pb::Event::default()
            },
        ));
    }
    assert!(store.prune_events(150, 2));
    let mut left: Vec<&str> = store.view().events.keys().map(|k| &**k).collect();
    left.sort_unstable();
    assert_eq!(left, ["e2", "e3"]);
}

#[test]
fn a_statefulset_keeps_the_time_it_became_short_until_it_is_whole_again() {
    let mut store = Store::default();
    let set = |ready: i32| {
        Item::Workload(
            Arc::from("ss1"),
            pb::Workload {
                r#ref: Some(reference("StatefulSet", "shop", "db", "ss1")),
                desired_replicas: 3,
                ready_replicas: ready,
                ..pb::Workload::default()
            },
            Labels::default(),
            true,
        )
    };
    let since = |s: &Store| s.view().workloads["ss1"].value.short_since;
    store.apply(set(3));
    assert_eq!(since(&store), None, "whole: not short");
    store.apply(set(1));
    let first = since(&store).expect("short from now");
    // Another change while still short keeps the first time.
    store.apply(set(2));
    assert_eq!(since(&store), Some(first));
    store.apply(set(3));
    assert_eq!(since(&store), None, "whole again: cleared");
    store.apply(set(2));
    assert!(since(&store).is_some_and(|t| (t.seconds, t.nanos) >= (first.seconds, first.nanos)));
}
