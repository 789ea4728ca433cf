//! Workloads (Deployments, StatefulSets, DaemonSets, ReplicaSets, CronJobs)
//! → the one `Workload` projection, with their pod template's containers.

use k8s_openapi::{
    api::{
        apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet},
        batch::v1::CronJob,
        core::v1::PodTemplateSpec,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use nanny_proto::v1 as pb;

use super::*;

fn template_containers(template: &PodTemplateSpec) -> Vec<pb::ContainerResources> {
    template
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let (requests, limits) = requirements(c.resources.as_ref());
            pb::ContainerResources {
                name: c.name.clone(),
                requests,
                limits,
            }
        })
        .collect()
}

fn workload_base(
    kind: &str,
    meta: &ObjectMeta,
    template: Option<&PodTemplateSpec>,
    redaction: &Redaction,
) -> pb::Workload {
    let mut annotations = redaction.annotations(meta.annotations.as_ref());
    if let Some(template_meta) = template.and_then(|t| t.metadata.as_ref()) {
        annotations.extend(redaction.annotations(template_meta.annotations.as_ref()));
    }
    let api_version = if kind == "CronJob" {
        "batch/v1"
    } else {
        "apps/v1"
    };
    pb::Workload {
        r#ref: Some(object_ref(kind, api_version, meta)),
        created_at: meta.creation_timestamp.as_ref().map(timestamp),
        containers: template.map(template_containers).unwrap_or_default(),
        owner: controller_of(meta),
        labels: labels(meta),
        annotations,
        template_labels: template
            .and_then(|t| t.metadata.as_ref())
            .map(labels)
            .unwrap_or_default(),
        ..pb::Workload::default()
    }
}

/// `conditions` with the message of a Deployment's ReplicaFailure (why its
/// ReplicaSet cannot create pods: a quota, an admission webhook, a missing
/// ServiceAccount), masked and cut.
fn replica_failure_message(
    mut conditions: Vec<pb::Condition>,
    status: Option<&k8s_openapi::api::apps::v1::DeploymentStatus>,
    redaction: &Redaction,
) -> Vec<pb::Condition> {
    let message = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == "ReplicaFailure")
        .and_then(|c| c.message.as_deref());
    if let (Some(message), Some(condition)) = (
        message,
        conditions.iter_mut().find(|c| c.r#type == "ReplicaFailure"),
    ) {
        condition.message = Some(redaction.untrusted(message));
    }
    conditions
}

/// A Deployment.
pub fn deployment(d: &Deployment, redaction: &Redaction) -> pb::Workload {
    let spec = d.spec.as_ref();
    let status = d.status.as_ref();
    pb::Workload {
        desired_replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
        ready_replicas: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        available_replicas: status.and_then(|s| s.available_replicas).unwrap_or(0),
        updated_replicas: status.and_then(|s| s.updated_replicas).unwrap_or(0),
        conditions: replica_failure_message(conditions!(status), status, redaction),
        ..workload_base(
            "Deployment",
            &d.metadata,
            spec.map(|s| &s.template),
            redaction,
        )
    }
}

/// A StatefulSet.
pub fn stateful_set(s: &StatefulSet, redaction: &Redaction) -> pb::Workload {
    let spec = s.spec.as_ref();
    let status = s.status.as_ref();
    pb::Workload {
        desired_replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
        ready_replicas: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        available_replicas: status.and_then(|s| s.available_replicas).unwrap_or(0),
        updated_replicas: status.and_then(|s| s.updated_replicas).unwrap_or(0),
        conditions: conditions!(status),
        claim_templates: spec
            .and_then(|s| s.volume_claim_templates.as_deref())
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t.metadata.name.clone())
            .collect(),
        service_name: spec
            .and_then(|s| s.service_name.clone())
            .unwrap_or_default(),
        ..workload_base(
            "StatefulSet",
            &s.metadata,
            spec.map(|s| &s.template),
            redaction,
        )
    }
}

/// A DaemonSet.
pub fn daemon_set(d: &DaemonSet, redaction: &Redaction) -> pb::Workload {
    let status = d.status.as_ref();
    pb::Workload {
        desired_replicas: status.map_or(0, |s| s.desired_number_scheduled),
        ready_replicas: status.map_or(0, |s| s.number_ready),
        available_replicas: status.and_then(|s| s.number_available).unwrap_or(0),
        updated_replicas: status.and_then(|s| s.updated_number_scheduled).unwrap_or(0),
        misscheduled: status.map_or(0, |s| s.number_misscheduled),
        conditions: conditions!(status),
        ..workload_base(
            "DaemonSet",
            &d.metadata,
            d.spec.as_ref().map(|s| &s.template),
            redaction,
        )
    }
}

/// A ReplicaSet.
pub fn replica_set(r: &ReplicaSet, redaction: &Redaction) -> pb::Workload {
    let spec = r.spec.as_ref();
    let status = r.status.as_ref();
    pb::Workload {
        desired_replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
        ready_replicas: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        available_replicas: status.and_then(|s| s.available_replicas).unwrap_or(0),
        updated_replicas: status.map_or(0, |s| s.replicas),
        conditions: conditions!(status),
        ..workload_base(
            "ReplicaSet",
            &r.metadata,
            spec.and_then(|s| s.template.as_ref()),
            redaction,
        )
    }
}

/// A CronJob, as a workload: desired is 0 when suspended, 1 otherwise.
pub fn cron_job(c: &CronJob, redaction: &Redaction) -> pb::Workload {
    let spec = c.spec.as_ref();
    let template = spec
        .and_then(|s| s.job_template.spec.as_ref())
        .map(|s| &s.template);
    let active = c
        .status
        .as_ref()
        .and_then(|s| s.active.as_ref())
        .map_or(0, Vec::len);
    let status = c.status.as_ref();
    pb::Workload {
        desired_replicas: i32::from(!spec.and_then(|s| s.suspend).unwrap_or(false)),
        ready_replicas: i32::try_from(active).unwrap_or(i32::MAX),
        cron: Some(pb::CronSchedule {
            schedule: spec
                .map(|s| s.schedule.chars().take(256).collect())
                .unwrap_or_default(),
            suspended: spec.and_then(|s| s.suspend).unwrap_or(false),
            last_schedule: status
                .and_then(|s| s.last_schedule_time.as_ref())
                .map(timestamp),
            last_successful: status
                .and_then(|s| s.last_successful_time.as_ref())
                .map(timestamp),
            time_zone: spec
                .and_then(|s| s.time_zone.clone())
                .unwrap_or_default()
                .chars()
                .take(64)
                .collect(),
            starting_deadline_seconds: spec.and_then(|s| s.starting_deadline_seconds),
            concurrency_policy: spec
                .and_then(|s| s.concurrency_policy.clone())
                .unwrap_or_default(),
        }),
        ..workload_base("CronJob", &c.metadata, template, redaction)
    }
}
