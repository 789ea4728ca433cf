//! The facts about a target and the cluster the safety gate needs, taken
//! from the collector's snapshot the recommendation was made from.

use nanny_proto::v1::{self as pb, ClusterSnapshot, ReviewContext};

/// Builds the gate's [`ReviewContext`] for `target` from `snapshot`.
///
/// Where the snapshot cannot tell (a PodDisruptionBudget selector this
/// function does not evaluate), the stricter reading is taken.
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
    fn uid(r: &Option<pb::ObjectRef>) -> Option<&str> {
        r.as_ref().map(|r| r.uid.as_str())
    }
    let workload_of = |workload_uid: &str| {
        snapshot
            .workloads
            .iter()
            .find(|w| uid(&w.r#ref) == Some(workload_uid))
    };
    match target.kind.as_str() {
        "Pod" => {
            if let Some(pod) = snapshot
                .pods
                .iter()
                .find(|p| uid(&p.r#ref) == Some(&target.uid))
            {
                context.target_labels = pod.labels.clone().into_iter().collect();
                context.owner_labels = owner_labels(snapshot, pod.owner.as_ref());
                if let Some(workload) = pod.workload.as_ref().filter(|w| !w.uid.is_empty()) {
                    context.workload_uid = workload.uid.clone();
                    if let Some(w) = workload_of(&workload.uid) {
                        set_replicas(&mut context, w);
                    }
                }
                context.pdb_disruptions_allowed =
                    pdb_allowed(snapshot, &target.namespace, &pod.labels);
            }
        }
        "Deployment" | "StatefulSet" | "DaemonSet" => {
            if let Some(w) = workload_of(&target.uid) {
                context.target_labels = w.labels.clone().into_iter().collect();
                context.owner_labels = owner_labels(snapshot, w.owner.as_ref());
                set_replicas(&mut context, w);
            }
        }
        "Job" => {
            if let Some(job) = snapshot
                .jobs
                .iter()
                .find(|j| uid(&j.r#ref) == Some(&target.uid))
            {
                context.owner_labels = owner_labels(snapshot, job.owner.as_ref());
                context.job_finished_at = job.completion_time.or_else(|| {
                    job.conditions
                        .iter()
                        .find(|c| c.r#type == "Failed" && c.status == "True")
                        .and_then(|c| c.last_transition)
                });
            }
        }
        "HorizontalPodAutoscaler" => {
            if let Some(hpa) = snapshot
                .hpas
                .iter()
                .find(|h| uid(&h.r#ref) == Some(&target.uid))
            {
                context.hpa_max_replicas = hpa.max_replicas;
                context.hpa_min_replicas = hpa.min_replicas;
            }
        }
        "PersistentVolumeClaim" => {
            if let Some(pvc) = snapshot
                .pvcs
                .iter()
                .find(|p| uid(&p.r#ref) == Some(&target.uid))
            {
                context.pvc_capacity_bytes = pvc.capacity_bytes;
            }
        }
        _ => {}
    }
    context
}

/// The labels of `owner` and its owners in the snapshot's workloads
/// (ReplicaSet → Deployment, Job → CronJob), merged; a few levels at most.
fn owner_labels(
    snapshot: &ClusterSnapshot,
    owner: Option<&pb::ObjectRef>,
) -> std::collections::HashMap<String, String> {
    let mut labels = std::collections::HashMap::new();
    let mut next = owner.filter(|o| !o.uid.is_empty()).map(|o| o.uid.clone());
    for _ in 0..4 {
        let Some(uid) = next.take() else { break };
        let Some(workload) = snapshot
            .workloads
            .iter()
            .find(|w| w.r#ref.as_ref().is_some_and(|r| r.uid == uid))
        else {
            break;
        };
        for (key, value) in &workload.labels {
            labels.entry(key.clone()).or_insert_with(|| value.clone());
        }
        next = workload
            .owner
            .as_ref()
            .filter(|o| !o.uid.is_empty())
            .map(|o| o.uid.clone());
    }
    labels
}

fn node_ready(node: &pb::Node) -> bool {
    node.conditions
        .iter()
        .any(|c| c.r#type == "Ready" && c.status == "True")
}

fn set_replicas(context: &mut ReviewContext, workload: &pb::Workload) {
    context.workload_replicas = workload.desired_replicas;
    context.workload_unavailable = (workload.desired_replicas - workload.available_replicas).max(0);
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
/// `labels`. Equality terms are evaluated; any other term counts as a match,
/// so a PDB is never overlooked.
fn may_select(selector: &str, labels: &std::collections::HashMap<String, String>) -> bool {
    let mut depth = 0u32;
    let mut term = String::new();
    let mut terms = Vec::new();
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut term));
                continue;
            }
            _ => {}
        }
        term.push(c);
    }
    terms.push(term);
    terms
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .all(|t| match t.split_once('=') {
            Some((k, v)) if !k.contains([' ', '!']) && !v.contains([' ', '(']) => {
                labels.get(k).is_some_and(|have| have == v)
            }
            _ => true,
        })
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
    }

    #[test]
    fn selectors_it_cannot_evaluate_count_as_matching() {
        let labels = HashMap::from([("app".to_owned(), "web".to_owned())]);
        assert!(may_select("app=web", &labels));
        assert!(!may_select("app=db", &labels));
        assert!(may_select("", &labels));
        assert!(may_select("tier in (a,b)", &labels));
        assert!(!may_select("app=db,tier in (a,b)", &labels));
    }
}
