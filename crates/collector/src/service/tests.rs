use std::sync::Arc;

use nanny_proto::v1::{
    self as pb, GetSnapshotRequest, Scope, WatchRequest, collector_server::Collector as _,
};
use prometheus::Registry;
use tokio::sync::watch;
use tokio_stream::StreamExt as _;
use tonic::{Code, Request};

use super::*;
use crate::{
    config::SnapshotConfig,
    store::{Item, Store},
};

fn world(generation: u64, pods: usize) -> Arc<World> {
    let mut store = Store::default();
    for i in 0..pods {
        let uid = format!("pod-{i}");
        store.apply(Item::Pod(
            Arc::from(uid.as_str()),
            pb::Pod {
                r#ref: Some(pb::ObjectRef {
                    kind: "Pod".to_owned(),
                    namespace: "shop".to_owned(),
                    name: uid.clone(),
                    uid,
                    ..pb::ObjectRef::default()
                }),
                ..pb::Pod::default()
            },
            Arc::default(),
        ));
    }
    Arc::new(World {
        generation,
        tables: store.tables(),
        ..World::default()
    })
}

fn service(
    worlds: watch::Receiver<Arc<World>>,
    max_subscribers: usize,
) -> (CollectorService, Registry) {
    let registry = Registry::new();
    let config = SnapshotConfig {
        subscriber_timeout_secs: 5,
        max_subscribers,
        ..SnapshotConfig::default()
    };
    let metrics = StreamMetrics::new(&registry).unwrap();
    (CollectorService::new(worlds, config, metrics), registry)
}

fn gauge(registry: &Registry, name: &str) -> f64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .map_or(0.0, |value| value.parse().unwrap())
}

fn watch_request() -> Request<WatchRequest> {
    Request::new(WatchRequest {
        scope: Some(Scope {
            namespaces: vec!["shop".to_owned()],
            label_selector: String::new(),
        }),
        resume_from_generation: 0,
    })
}

#[tokio::test(start_paused = true)]
async fn a_slow_subscriber_is_dropped_and_never_holds_up_the_others() {
    let (tx, rx) = watch::channel(world(1, 1));
    let (service, registry) = service(rx, 8);
    let mut fast = service
        .watch_snapshots(watch_request())
        .await
        .unwrap()
        .into_inner();
    // Never read: its buffer fills, then its sender times out.
    let slow = service
        .watch_snapshots(watch_request())
        .await
        .unwrap()
        .into_inner();

    let first = fast.next().await.unwrap().unwrap();
    assert_eq!(first.kind, pb::SnapshotKind::Full as i32);
    for generation in 2..40 {
        tx.send(world(generation, usize::try_from(generation).unwrap()))
            .unwrap();
        let delta = fast.next().await.unwrap().unwrap();
        assert_eq!(delta.kind, pb::SnapshotKind::Delta as i32);
        assert_eq!(delta.generation, generation, "the fast subscriber keeps up");
    }
    // Paused time auto-advances past the subscriber timeout.
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    assert_eq!(
        gauge(&registry, "nanny_collector_subscribers_dropped_total"),
        1.0
    );
    assert_eq!(gauge(&registry, "nanny_collector_subscribers"), 1.0);
    drop(slow);
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_that_falls_behind_gets_the_latest_world_not_every_one() {
    let (tx, rx) = watch::channel(world(1, 1));
    let (service, _registry) = service(rx, 8);
    let mut stream = service
        .watch_snapshots(watch_request())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.next().await.unwrap().unwrap().generation, 1);
    for generation in 2..=50 {
        tx.send(world(generation, usize::try_from(generation).unwrap()))
            .unwrap();
    }
    // Whatever was sent while it was not reading, the last message carries
    // the latest world, and no more than the buffer's worth queued up.
    let mut last = 0;
    let mut received = 0;
    while let Ok(Some(message)) =
        tokio::time::timeout(std::time::Duration::from_secs(1), stream.next()).await
    {
        last = message.unwrap().generation;
        received += 1;
    }
    assert_eq!(last, 50);
    assert!(
        received < 49,
        "coalesced: {received} messages for 49 worlds"
    );
}

#[tokio::test(start_paused = true)]
async fn subscribers_are_capped_and_bad_scopes_refused() {
    let (_tx, rx) = watch::channel(world(1, 1));
    let (service, _registry) = service(rx, 1);
    let _first = service.watch_snapshots(watch_request()).await.unwrap();
    let refused = service.watch_snapshots(watch_request()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);

    let bad = service
        .get_snapshot(Request::new(GetSnapshotRequest {
            scope: Some(Scope {
                namespaces: vec![],
                label_selector: "app in shop".to_owned(),
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("scope"), "{}", bad.message());
}

#[tokio::test(start_paused = true)]
async fn nothing_is_served_before_the_first_complete_world() {
    let (_tx, rx) = watch::channel(Arc::new(World::default()));
    let (service, _registry) = service(rx, 8);
    let error = service
        .get_snapshot(Request::new(GetSnapshotRequest { scope: None }))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unavailable);
}
