//! `cargo bench -p nanny-analyzer`: rules plus validation over a 10k-pod
//! snapshot with 500 issues (with the configuration alone, and under a
//! HealingPolicy's settings), and prompt building over the same snapshot.
//! Targets: rules ≤ 20 ms, prompt ≤ 5 ms (median, one core).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime};

use nanny_analyzer::{Analysis, Config, index::SnapshotIndex, llm};
use nanny_proto::v1::{self as pb, ClusterSnapshot, IssueKind, SnapshotKind};

fn obj(kind: &str, namespace: &str, name: &str) -> pb::ObjectRef {
    pb::ObjectRef {
        kind: kind.into(),
        api_version: String::new(),
        namespace: namespace.into(),
        name: name.into(),
        uid: format!("uid-{kind}-{namespace}-{name}"),
        resource_version: "1".into(),
    }
}

/// 10k pods in 100 namespaces of 10 Deployments each; 500 issues: crash
/// loops, OOM kills, image pulls and unschedulable pods.
fn snapshot() -> ClusterSnapshot {
    let mut s = ClusterSnapshot {
        id: "bench".into(),
        kind: SnapshotKind::Full as i32,
        generation: 1,
        chunk_count: 1,
        ..ClusterSnapshot::default()
    };
    for d in 0..1000 {
        let namespace = format!("ns-{}", d % 100);
        s.workloads.push(pb::Workload {
            r#ref: Some(obj("Deployment", &namespace, &format!("d{d}"))),
            desired_replicas: 10,
            containers: vec![pb::ContainerResources {
                name: "app".into(),
                requests: None,
                limits: Some(pb::Resources {
                    cpu_millicores: Some(500),
                    memory_bytes: Some(256 << 20),
                }),
            }],
            ..pb::Workload::default()
        });
    }
    for p in 0..10_000 {
        let d = p / 10;
        let namespace = format!("ns-{}", d % 100);
        let workload = obj("Deployment", &namespace, &format!("d{d}"));
        let troubled = p % 20 == 0;
        let (reason, last, kind) = match (p / 20) % 4 {
            0 => ("CrashLoopBackOff", "Error", IssueKind::CrashLoopBackOff),
            1 => ("CrashLoopBackOff", "OOMKilled", IssueKind::OomKilled),
            2 => ("ImagePullBackOff", "", IssueKind::ImagePullBackOff),
            _ => ("", "", IssueKind::Unschedulable),
        };
        let pod_ref = obj("Pod", &namespace, &format!("p{p}"));
        s.pods.push(pb::Pod {
            r#ref: Some(pod_ref.clone()),
            owner: Some(obj("ReplicaSet", &namespace, &format!("d{d}-rs"))),
            workload: Some(workload),
            phase: "Running".into(),
            containers: vec![pb::ContainerStatus {
                name: "app".into(),
                restart_count: if troubled { 7 } else { 0 },
                state: if troubled { "waiting" } else { "running" }.into(),
                state_reason: if troubled { reason } else { "" }.into(),
                last_termination: Some(pb::Termination {
                    reason: if troubled { last } else { "" }.into(),
                    exit_code: 1,
                    finished_at: None,
                }),
                ..pb::ContainerStatus::default()
            }],
            ..pb::Pod::default()
        });
        if troubled {
            s.issues.push(pb::Issue {
                fingerprint: format!("fp-{p}"),
                kind: kind as i32,
                severity: pb::Severity::Warning as i32,
                target: Some(pod_ref),
                summary: "The container is in trouble.".into(),
                ..pb::Issue::default()
            });
        }
    }
    s
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let s = snapshot();
    assert_eq!((s.pods.len(), s.issues.len()), (10_000, 500));
    let analysis = Analysis::new(&Config::default(), &prometheus::Registry::new()).unwrap();
    let now = SystemTime::now();
    let mut count = 0;
    let rules: Vec<Duration> = (0..30)
        .map(|_| {
            let start = Instant::now();
            count = analysis.analyze(&s, now, analysis.defaults()).len();
            start.elapsed()
        })
        .collect();
    // A policy: two triggers, a ceiling, a switched-off rule, a factor.
    let policy = pb::AnalysisSettings {
        triggers: vec![
            IssueKind::CrashLoopBackOff as i32,
            IssueKind::OomKilled as i32,
        ],
        allowed_actions: vec![pb::AllowedAction {
            r#type: pb::ActionType::PatchResources as i32,
            max_memory_bytes: Some(1 << 30),
            ..pb::AllowedAction::default()
        }],
        rules: Some(pb::RuleOverrides {
            disabled: vec!["crashloop-rollout-restart".into()],
            oom_memory_factor: Some(2.0),
            ..pb::RuleOverrides::default()
        }),
        ..pb::AnalysisSettings::default()
    };
    let mut tuned_count = 0;
    let tuned: Vec<Duration> = (0..30)
        .map(|_| {
            let start = Instant::now();
            let settings = analysis.settings(Some(&policy), false).unwrap();
            tuned_count = analysis.analyze(&s, now, &settings).len();
            start.elapsed()
        })
        .collect();
    let mut incidents = 0;
    let prompt: Vec<Duration> = (0..30)
        .map(|_| {
            let start = Instant::now();
            let index = SnapshotIndex::new(&s);
            let prompts =
                llm::build_prompts(&s, &index, analysis.defaults(), llm::MAX_PROMPT_CHARS);
            assert!(prompts.iter().all(|p| p.chars() <= llm::MAX_PROMPT_CHARS));
            incidents = prompts.len();
            start.elapsed()
        })
        .collect();
    let (rules, tuned, prompt) = (median(rules), median(tuned), median(prompt));
    println!(
        "rules+validation over 10k pods / 500 issues: {rules:?} median ({count} recommendations; target ≤ 20 ms)"
    );
    println!(
        "the same under a policy's settings (resolved per call): {tuned:?} median ({tuned_count} recommendations)"
    );
    println!(
        "incident correlation and prompt build over the same snapshot: {prompt:?} median, {incidents} incidents (target ≤ 5 ms)"
    );
}
