//! The facts about a target and the cluster the safety gate needs, taken
//! from the collector's snapshot the recommendation was made from.

use nanny_common::selector::Selector;
use nanny_proto::v1::{self as pb, ClusterSnapshot, ReviewContext};

/// Builds the gate's [`ReviewContext`] for `target` from `snapshot`.
///
/// Where the snapshot cannot tell (a PodDisruptionBudget selector this
/// function does not evaluate), the stricter reading is taken.
#[expect(
    clippy::too_many_lines,
    reason = "one arm per target kind, each finding the facts the gate needs for it"
)]
pub fn review_context(snapshot: &ClusterSnapshot, target: &pb::ObjectRef) -> ReviewContext {
    let mut context = ReviewContext {
        nodes_total: u32::try_from(snapshot.nodes.len()).unwrap_or(u32::MAX),
        nodes_unhealthy: u32::try_from(snapshot.nodes.iter().filter(|n| !node_ready(n)).count())
            .unwrap_or(u32::MAX),
        open_issues: u32::try_from(snapshot.issues.len()).unwrap_or(u32::MAX),
        target_issue_kinds: snapshot
            .issues
            .iter()
            .filter(|i| i.target.as_ref().is_some_and(|t| t.uid == target.uid))
            .map(|i| i.kind)
            .collect(),
        ..ReviewContext::default()
    };
    let workload_of = |workload_uid: &str| {
        snapshot
            .workloads
            .iter()
            .find(|w| uid(&w.r#ref) == Some(workload_uid))
    };
    // The target's own labels and where its owner chain starts; `None`:
    // the target is not in the snapshot.
    let found: Option<(&Labels, Start<'_>)> = match target.kind.as_str() {
        "Pod" => snapshot
            .pods
            .iter()
            .find(|p| uid(&p.r#ref) == Some(&target.uid))
            .map(|pod| {
                if let Some(workload) = pod.workload.as_ref().filter(|w| !w.uid.is_empty()) {
                    context.workload_uid = workload.uid.clone();
                    if let Some(w) = workload_of(&workload.uid) {
                        set_replicas(&mut context, w);
                    }
                }
                context.pdb_disruptions_allowed =
                    pdb_allowed(snapshot, &target.namespace, &pod.labels);
                (&pod.labels, pod_owner(snapshot, pod))
            }),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "CronJob" => {
            workload_of(&target.uid).map(|w| {
                set_replicas(&mut context, w);
                (&w.labels, Start::Owner(w.owner.as_ref()))
            })
        }
        "Job" => snapshot
            .jobs
            .iter()
            .find(|j| uid(&j.r#ref) == Some(&target.uid))
            .map(|job| {
                context.job_finished_at = job.completion_time.or_else(|| {
                    job.conditions
                        .iter()
                        .find(|c| c.r#type == "Failed" && c.status == "True")
                        .and_then(|c| c.last_transition)
                });
                (&job.labels, Start::Owner(job.owner.as_ref()))
            }),
        "HorizontalPodAutoscaler" => snapshot
            .hpas
            .iter()
            .find(|h| uid(&h.r#ref) == Some(&target.uid))
            .map(|hpa| {
                context.hpa_max_replicas = hpa.max_replicas;
                context.hpa_min_replicas = hpa.min_replicas;
                let scaled = hpa.scale_target.as_ref().and_then(|t| {
                    snapshot.workloads.iter().find(|w| {
                        w.r#ref.as_ref().is_some_and(|r| {
                            r.namespace == target.namespace && r.kind == t.kind && r.name == t.name
                        })
                    })
                });
                (&hpa.labels, scaled.map_or(Start::Unknown, Start::Object))
            }),
        "PersistentVolumeClaim" => snapshot
            .pvcs
            .iter()
            .find(|p| uid(&p.r#ref) == Some(&target.uid))
            .map(|pvc| {
                context.pvc_capacity_bytes = pvc.capacity_bytes;
                let set = claim_stateful_set(snapshot, &target.namespace, &target.name);
                (&pvc.labels, set.map_or(Start::Owner(None), Start::Object))
            }),
        "Node" => snapshot
            .nodes
            .iter()
            .find(|n| uid(&n.r#ref) == Some(&target.uid))
            .map(|node| {
                context.node_cordoned_by_nanny = node.cordoned_by_nanny;
                (&node.labels, Start::Owner(None))
            }),
        _ => None,
    };
    if let Some((labels, start)) = found {
        context.target_labels = labels.clone();
        let (owner_labels, complete) = owner_labels(snapshot, start);
        context.owner_labels = owner_labels;
        context.facts_complete = complete;
    }
    context
}

/// What a drain of `node` would act on: every pod `snapshot` shows on it.
/// Give it a snapshot of every namespace: a policy's scoped snapshot may
/// not show them all.
pub fn node_pods(snapshot: &ClusterSnapshot, node: &str) -> pb::NodePods {
    let pods = snapshot
        .pods
        .iter()
        .filter(|pod| pod.node_name == node)
        .map(|pod| {
            let controller = pod.owner.as_ref().filter(|o| !o.uid.is_empty());
            let (owner_labels, facts_complete) = owner_labels(snapshot, pod_owner(snapshot, pod));
            let namespace = pod.r#ref.as_ref().map_or("", |r| r.namespace.as_str());
            let mut drained = pb::NodePod {
                r#ref: pod.r#ref.clone(),
                labels: pod.labels.clone(),
                owner_labels,
                facts_complete,
                // A mirror pod's owner is its Node.
                stays: controller.is_some_and(|o| o.kind == "DaemonSet" || o.kind == "Node")
                    || matches!(pod.phase.as_str(), "Succeeded" | "Failed"),
                bare: controller.is_none(),
                ready: pod.ready,
                pdb_disruptions_allowed: pdb_allowed(snapshot, namespace, &pod.labels),
                ..pb::NodePod::default()
            };
            if let Some(workload) = pod.workload.as_ref().filter(|w| !w.uid.is_empty()) {
                drained.workload_uid.clone_from(&workload.uid);
                if let Some(w) = snapshot
                    .workloads
                    .iter()
                    .find(|w| uid(&w.r#ref) == Some(&workload.uid))
                {
                    drained.workload_replicas = w.desired_replicas;
                    drained.workload_unavailable = unavailable(w);
                }
            }
            drained
        })
        .collect();
    pb::NodePods { pods }
}

type Labels = std::collections::HashMap<String, String>;

fn uid(r: &Option<pb::ObjectRef>) -> Option<&str> {
    r.as_ref().map(|r| r.uid.as_str())
}

/// Where a target's chain of owners starts.
enum Start<'a> {
    /// At this owner reference (`None` or an empty uid: there is none).
    Owner(Option<&'a pb::ObjectRef>),
    /// At this workload (an HPA's scale target, a claim's StatefulSet).
    Object(&'a pb::Workload),
    /// Somewhere the snapshot does not show.
    Unknown,
}

/// A pod's chain starts at its controller, except that the collector leaves
/// out the ReplicaSets a Deployment owns (their labels are the pod
/// template's, which the pod carries) and names the Deployment as the pod's
/// workload instead.
fn pod_owner<'a>(snapshot: &ClusterSnapshot, pod: &'a pb::Pod) -> Start<'a> {
    let owner = pod.owner.as_ref().filter(|o| !o.uid.is_empty());
    let workload = pod.workload.as_ref().filter(|w| !w.uid.is_empty());
    match (owner, workload) {
        (Some(owner), Some(workload))
            if owner.kind == "ReplicaSet"
                && owner.uid != workload.uid
                && labels_of(snapshot, &owner.uid).is_none() =>
        {
            Start::Owner(Some(workload))
        }
        _ => Start::Owner(owner),
    }
}

/// The StatefulSet whose volumeClaimTemplate made the claim `namespace/name`.
fn claim_stateful_set<'a>(
    snapshot: &'a ClusterSnapshot,
    namespace: &str,
    name: &str,
) -> Option<&'a pb::Workload> {
    nanny_common::names::claim_template_candidates(name)
        .into_iter()
        .find_map(|(template, set)| {
            snapshot.workloads.iter().find(|w| {
                w.r#ref.as_ref().is_some_and(|r| {
                    r.kind == "StatefulSet" && r.namespace == namespace && r.name == set
                }) && w.claim_templates.iter().any(|t| t == template)
            })
        })
}

/// The labels and owner of the object with `uid` among the snapshot's
/// workloads, Jobs and Nodes (a mirror pod's owner).
fn labels_of<'a>(
    snapshot: &'a ClusterSnapshot,
    uid: &str,
) -> Option<(&'a Labels, Option<&'a pb::ObjectRef>)> {
    let is = |r: &Option<pb::ObjectRef>| r.as_ref().is_some_and(|r| r.uid == uid);
    snapshot
        .workloads
        .iter()
        .find(|w| is(&w.r#ref))
        .map(|w| (&w.labels, w.owner.as_ref()))
        .or_else(|| {
            snapshot
                .jobs
                .iter()
                .find(|j| is(&j.r#ref))
                .map(|j| (&j.labels, j.owner.as_ref()))
        })
        .or_else(|| {
            snapshot
                .nodes
                .iter()
                .find(|n| is(&n.r#ref))
                .map(|n| (&n.labels, None))
        })
}

/// The labels of the objects in the chain from `start` (ReplicaSet →
/// Deployment, Job → CronJob, ...), merged, and whether the chain is
/// complete: it ends at an object with no owner. An owner the snapshot does
/// not hold, or a chain longer than Kubernetes makes, leaves it incomplete.
fn owner_labels(snapshot: &ClusterSnapshot, start: Start<'_>) -> (Labels, bool) {
    // Owner chains in Kubernetes are short; the bound stops a cycle.
    const MAX_DEPTH: usize = 5;
    let mut labels = Labels::new();
    let mut merge = |from: &Labels| {
        for (key, value) in from {
            labels.entry(key.clone()).or_insert_with(|| value.clone());
        }
    };
    let mut next = match start {
        Start::Owner(owner) => owner,
        Start::Object(workload) => {
            merge(&workload.labels);
            workload.owner.as_ref()
        }
        Start::Unknown => return (labels, false),
    };
    for _ in 0..MAX_DEPTH {
        let Some(owner) = next.filter(|o| !o.uid.is_empty()) else {
            return (labels, true);
        };
        let Some((owner_labels, owner)) = labels_of(snapshot, &owner.uid) else {
            return (labels, false);
        };
        merge(owner_labels);
        next = owner;
    }
    (labels, false)
}

fn node_ready(node: &pb::Node) -> bool {
    node.conditions
        .iter()
        .any(|c| c.r#type == "Ready" && c.status == "True")
}

fn set_replicas(context: &mut ReviewContext, workload: &pb::Workload) {
    context.workload_replicas = workload.desired_replicas;
    context.workload_unavailable = unavailable(workload);
}

fn unavailable(workload: &pb::Workload) -> i32 {
    (workload.desired_replicas - workload.available_replicas).max(0)
}

/// The smallest `disruptionsAllowed` of the PDBs in `namespace` that may
/// select a pod with `labels`; `None` when none does.
fn pdb_allowed(
    snapshot: &ClusterSnapshot,
    namespace: &str,
    labels: &std::collections::HashMap<String, String>,
) -> Option<i32> {
    snapshot
        .pdbs
        .iter()
        .filter(|pdb| pdb.r#ref.as_ref().is_some_and(|r| r.namespace == namespace))
        .filter(|pdb| may_select(&pdb.selector, labels))
        .map(|pdb| pdb.disruptions_allowed)
        .min()
}

/// Whether a selector string (as the collector writes it) may select
/// `labels`: evaluated in full; one that does not parse counts as matching,
/// so a PDB is never overlooked.
fn may_select(selector: &str, labels: &std::collections::HashMap<String, String>) -> bool {
    Selector::parse(selector).map_or(true, |s| s.matches(labels))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn object(kind: &str, ns: &str, name: &str, uid: &str) -> Option<pb::ObjectRef> {
        Some(pb::ObjectRef {
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
            uid: uid.into(),
            ..pb::ObjectRef::default()
        })
    }

    #[test]
    fn pod_context_names_its_workload_pdb_and_storm_inputs() {
        let snapshot = ClusterSnapshot {
            pods: vec![pb::Pod {
                r#ref: object("Pod", "shop", "web-1", "p1"),
                workload: object("Deployment", "shop", "web", "d1"),
                labels: HashMap::from([("app".into(), "web".into())]),
                ..pb::Pod::default()
            }],
            workloads: vec![pb::Workload {
                r#ref: object("Deployment", "shop", "web", "d1"),
                desired_replicas: 4,
                available_replicas: 3,
                ..pb::Workload::default()
            }],
            pdbs: vec![
                pb::PodDisruptionBudget {
                    r#ref: object("PodDisruptionBudget", "shop", "web", "b1"),
                    selector: "app=web".into(),
                    disruptions_allowed: 1,
                    ..pb::PodDisruptionBudget::default()
                },
                pb::PodDisruptionBudget {
                    r#ref: object("PodDisruptionBudget", "shop", "db", "b2"),
                    selector: "app=db".into(),
                    disruptions_allowed: 0,
                    ..pb::PodDisruptionBudget::default()
                },
            ],
            nodes: vec![
                pb::Node {
                    conditions: vec![pb::Condition {
                        r#type: "Ready".into(),
                        status: "True".into(),
                        ..pb::Condition::default()
                    }],
                    ..pb::Node::default()
                },
                pb::Node::default(),
            ],
            issues: vec![pb::Issue {
                kind: pb::IssueKind::CrashLoopBackOff as i32,
                target: object("Pod", "shop", "web-1", "p1"),
                ..pb::Issue::default()
            }],
            ..ClusterSnapshot::default()
        };
        let target = object("Pod", "shop", "web-1", "p1").unwrap();
        let context = review_context(&snapshot, &target);
        assert_eq!(context.workload_uid, "d1");
        assert_eq!(
            (context.workload_replicas, context.workload_unavailable),
            (4, 1)
        );
        assert_eq!(context.pdb_disruptions_allowed, Some(1));
        assert_eq!((context.nodes_total, context.nodes_unhealthy), (2, 1));
        assert_eq!(context.open_issues, 1);
        assert_eq!(
            context.target_issue_kinds,
            [pb::IssueKind::CrashLoopBackOff as i32]
        );
        assert_eq!(
            context.target_labels.get("app").map(String::as_str),
            Some("web")
        );
    }

    #[test]
    fn owners_labels_follow_the_owner_chain() {
        let helm = HashMap::from([("app.kubernetes.io/managed-by".to_owned(), "Helm".to_owned())]);
        let snapshot = ClusterSnapshot {
            pods: vec![pb::Pod {
                r#ref: object("Pod", "shop", "web-1", "p1"),
                owner: object("ReplicaSet", "shop", "web-abc", "rs1"),
                workload: object("Deployment", "shop", "web", "d1"),
                ..pb::Pod::default()
            }],
            workloads: vec![
                pb::Workload {
                    r#ref: object("ReplicaSet", "shop", "web-abc", "rs1"),
                    owner: object("Deployment", "shop", "web", "d1"),
                    labels: HashMap::from([("pod-template-hash".to_owned(), "abc".to_owned())]),
                    ..pb::Workload::default()
                },
                pb::Workload {
                    r#ref: object("Deployment", "shop", "web", "d1"),
                    labels: helm.clone(),
                    ..pb::Workload::default()
                },
                pb::Workload {
                    r#ref: object("CronJob", "shop", "nightly", "c1"),
                    labels: helm.clone(),
                    ..pb::Workload::default()
                },
            ],
            jobs: vec![pb::Job {
                r#ref: object("Job", "shop", "nightly-1", "j1"),
                owner: object("CronJob", "shop", "nightly", "c1"),
                ..pb::Job::default()
            }],
            ..ClusterSnapshot::default()
        };
        let pod = review_context(&snapshot, &object("Pod", "shop", "web-1", "p1").unwrap());
        assert!(pod.target_labels.is_empty(), "the pod itself is unlabelled");
        assert_eq!(
            pod.owner_labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("Helm")
        );
        assert!(pod.owner_labels.contains_key("pod-template-hash"));
        let job = review_context(
            &snapshot,
            &object("Job", "shop", "nightly-1", "j1").unwrap(),
        );
        assert_eq!(job.owner_labels, helm);
        let deployment = review_context(
            &snapshot,
            &object("Deployment", "shop", "web", "d1").unwrap(),
        );
        assert!(deployment.owner_labels.is_empty(), "it has no owner");
        assert!(pod.facts_complete && job.facts_complete && deployment.facts_complete);
    }

    fn helm() -> HashMap<String, String> {
        HashMap::from([("app.kubernetes.io/managed-by".to_owned(), "Helm".to_owned())])
    }

    /// As the collector sends them: a Deployment's ReplicaSets are left out,
    /// the pod names its Deployment as its workload; HPAs, claims and nodes
    /// carry their labels; a StatefulSet names its claim templates.
    fn owned_snapshot() -> ClusterSnapshot {
        ClusterSnapshot {
            pods: vec![
                pb::Pod {
                    r#ref: object("Pod", "shop", "web-1", "p1"),
                    owner: object("ReplicaSet", "shop", "web-abc", "rs1"),
                    workload: object("Deployment", "shop", "web", "d1"),
                    ..pb::Pod::default()
                },
                pb::Pod {
                    r#ref: object("Pod", "shop", "rollout-1", "p2"),
                    owner: object("Rollout", "shop", "rollout", "ro1"),
                    ..pb::Pod::default()
                },
            ],
            workloads: vec![
                pb::Workload {
                    r#ref: object("Deployment", "shop", "web", "d1"),
                    labels: helm(),
                    ..pb::Workload::default()
                },
                pb::Workload {
                    r#ref: object("StatefulSet", "shop", "db", "s1"),
                    labels: helm(),
                    claim_templates: vec!["data".to_owned()],
                    ..pb::Workload::default()
                },
            ],
            hpas: vec![
                pb::HorizontalPodAutoscaler {
                    r#ref: object("HorizontalPodAutoscaler", "shop", "web", "h1"),
                    scale_target: object("Deployment", "shop", "web", ""),
                    ..pb::HorizontalPodAutoscaler::default()
                },
                pb::HorizontalPodAutoscaler {
                    r#ref: object("HorizontalPodAutoscaler", "shop", "gone", "h2"),
                    scale_target: object("Deployment", "shop", "gone", ""),
                    ..pb::HorizontalPodAutoscaler::default()
                },
            ],
            pvcs: vec![
                pb::PersistentVolumeClaim {
                    r#ref: object("PersistentVolumeClaim", "shop", "data-db-0", "c1"),
                    ..pb::PersistentVolumeClaim::default()
                },
                pb::PersistentVolumeClaim {
                    r#ref: object("PersistentVolumeClaim", "shop", "logs-db-0", "c2"),
                    ..pb::PersistentVolumeClaim::default()
                },
            ],
            nodes: vec![pb::Node {
                r#ref: object("Node", "", "n1", "n1"),
                labels: HashMap::from([("nanny.ai/protected".to_owned(), "true".to_owned())]),
                ..pb::Node::default()
            }],
            ..ClusterSnapshot::default()
        }
    }

    #[test]
    fn owners_are_found_for_pods_hpas_claims_and_nodes_as_the_collector_sends_them() {
        let snapshot = owned_snapshot();
        let context = |kind: &str, ns: &str, name: &str, uid: &str| {
            review_context(&snapshot, &object(kind, ns, name, uid).unwrap())
        };
        for (kind, name, uid) in [
            ("Pod", "web-1", "p1"),
            ("HorizontalPodAutoscaler", "web", "h1"),
            ("PersistentVolumeClaim", "data-db-0", "c1"),
        ] {
            let c = context(kind, "shop", name, uid);
            assert_eq!(c.owner_labels, helm(), "{kind} {name}");
            assert!(c.facts_complete, "{kind} {name}");
        }
        let node = context("Node", "", "n1", "n1");
        assert_eq!(
            node.target_labels
                .get("nanny.ai/protected")
                .map(String::as_str),
            Some("true")
        );
        assert!(node.facts_complete);
        let standalone = context("PersistentVolumeClaim", "shop", "logs-db-0", "c2");
        assert!(
            standalone.owner_labels.is_empty() && standalone.facts_complete,
            "no template of db is named logs: the claim stands alone"
        );
    }

    #[test]
    fn a_drain_sees_every_pod_on_its_node_with_owners_workload_and_budget() {
        let mut snapshot = owned_snapshot();
        for pod in &mut snapshot.pods {
            pod.node_name = "n1".to_owned();
            pod.ready = true;
            pod.labels = HashMap::from([("app".to_owned(), "web".to_owned())]);
        }
        snapshot.pods.extend([
            pb::Pod {
                r#ref: object("Pod", "ops", "agent-x", "p3"),
                owner: object("DaemonSet", "ops", "agent", "ds1"),
                node_name: "n1".to_owned(),
                ..pb::Pod::default()
            },
            pb::Pod {
                r#ref: object("Pod", "ops", "debug", "p4"),
                node_name: "n1".to_owned(),
                ..pb::Pod::default()
            },
            pb::Pod {
                r#ref: object("Pod", "shop", "web-2", "p5"),
                node_name: "n2".to_owned(),
                ..pb::Pod::default()
            },
        ]);
        snapshot.workloads[0].desired_replicas = 3;
        snapshot.workloads[0].available_replicas = 2;
        snapshot.pdbs.push(pb::PodDisruptionBudget {
            r#ref: object("PodDisruptionBudget", "shop", "web", "b1"),
            selector: "app=web".into(),
            disruptions_allowed: 0,
            ..pb::PodDisruptionBudget::default()
        });
        let pods = node_pods(&snapshot, "n1").pods;
        let names: Vec<&str> = pods
            .iter()
            .map(|p| p.r#ref.as_ref().unwrap().name.as_str())
            .collect();
        assert_eq!(names, ["web-1", "rollout-1", "agent-x", "debug"]);
        let web = &pods[0];
        assert_eq!(web.owner_labels, helm());
        assert!(web.facts_complete && web.ready && !web.stays && !web.bare);
        assert_eq!(
            (
                web.workload_uid.as_str(),
                web.workload_replicas,
                web.workload_unavailable
            ),
            ("d1", 3, 1)
        );
        assert_eq!(web.pdb_disruptions_allowed, Some(0));
        assert!(!pods[1].facts_complete, "an owner the snapshot lacks");
        assert!(pods[2].stays, "DaemonSet pods stay");
        assert!(pods[3].bare && !pods[3].stays);
        assert_eq!(pods[3].pdb_disruptions_allowed, None);
    }

    #[test]
    fn facts_are_incomplete_when_an_owner_or_the_target_is_missing() {
        let snapshot = owned_snapshot();
        let context = |kind: &str, name: &str, uid: &str| {
            review_context(&snapshot, &object(kind, "shop", name, uid).unwrap())
        };
        assert!(
            !context("Pod", "rollout-1", "p2").facts_complete,
            "an owner of a kind the snapshot does not hold"
        );
        assert!(
            !context("HorizontalPodAutoscaler", "gone", "h2").facts_complete,
            "a scale target the snapshot does not hold"
        );
        assert!(
            !context("Pod", "elsewhere", "p9").facts_complete,
            "no such pod"
        );
        assert!(!context("ConfigMap", "settings", "cm1").facts_complete);
    }

    #[test]
    fn selectors_are_evaluated_in_full_and_unparsable_ones_count_as_matching() {
        let labels = HashMap::from([
            ("app".to_owned(), "web".to_owned()),
            ("tier".to_owned(), "a".to_owned()),
        ]);
        assert!(may_select("app=web", &labels));
        assert!(!may_select("app=db", &labels));
        assert!(may_select("", &labels));
        assert!(may_select("tier in (a,b)", &labels));
        assert!(!may_select("tier in (b,c)", &labels));
        assert!(!may_select("app=db,tier in (a,b)", &labels));
        assert!(may_select("app,!canary,tier notin (z)", &labels));
        assert!(!may_select("!tier", &labels));
        // Not a selector Kubernetes would accept: the PDB is counted.
        assert!(may_select("app === web ((", &labels));
    }
}
