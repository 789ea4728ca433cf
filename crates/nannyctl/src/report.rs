//! `report cost`: what the scope's workloads request above what they use,
//! from the collector's `OverProvisioned` and `WorkloadIdle` issues, per
//! container and summed per namespace.

use std::{fmt::Write as _, process::ExitCode, time::Duration};

use nanny_common::{
    quantity::bytes_text,
    snapshot::{RECLAIMABLE_CPU, RECLAIMABLE_MEMORY, evidence, evidence_number, reclaimable},
};
use nanny_proto::v1::{ClusterSnapshot, IssueKind};

use crate::{connect::KubeArgs, snapshot::fetch, tls::TlsArgs};

/// `report`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Reclaimable CPU and memory (requests above p95 CPU and peak memory
    /// plus the margin) and idle workloads, per namespace (`-n`, repeatable;
    /// `-A`: all).
    Cost(CostArgs),
}

/// `report cost`.
#[derive(Debug, clap::Args)]
pub struct CostArgs {
    /// Collector gRPC URL.
    #[arg(
        long,
        env = "NANNYCTL_COLLECTOR",
        default_value = "http://127.0.0.1:50051"
    )]
    collector: String,
    /// Deadline for the snapshot, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
}

/// Runs a `report` command.
pub async fn run(kube: &KubeArgs, tls: &TlsArgs, command: Command) -> anyhow::Result<ExitCode> {
    let Command::Cost(args) = command;
    let snapshot = fetch(
        kube,
        tls,
        &args.collector,
        String::new(),
        Duration::from_millis(args.timeout_ms),
    )
    .await?;
    print!("{}", cost(&snapshot));
    Ok(ExitCode::SUCCESS)
}

fn cores(millicores: i64) -> String {
    format!("{}.{:03}", millicores / 1000, millicores % 1000)
}

/// The cost report of `snapshot`.
pub fn cost(snapshot: &ClusterSnapshot) -> String {
    let mut out = String::new();
    over_provisioned(snapshot, &mut out);
    totals(snapshot, &mut out);
    idle(snapshot, &mut out);
    out
}

#[expect(clippy::cast_precision_loss, reason = "sizes in bytes")]
fn over_provisioned(snapshot: &ClusterSnapshot, out: &mut String) {
    let mut rows: Vec<[String; 5]> = snapshot
        .issues
        .iter()
        .filter(|i| i.kind == IssueKind::OverProvisioned as i32)
        .filter_map(|i| {
            let t = i.target.as_ref()?;
            Some([
                t.namespace.clone(),
                format!("{}/{}", t.kind, t.name),
                evidence(i, "container").unwrap_or_default().to_owned(),
                cores(evidence_number(i, RECLAIMABLE_CPU).unwrap_or(0)),
                bytes_text(evidence_number(i, RECLAIMABLE_MEMORY).unwrap_or(0) as f64),
            ])
        })
        .collect();
    rows.sort();
    let _ = writeln!(
        out,
        "Over-provisioned (requests above p95 CPU / peak memory plus the margin):"
    );
    if rows.is_empty() {
        let _ = writeln!(
            out,
            "  none judged (workloads need a day of usage history; Prometheus must be set)"
        );
        return;
    }
    let _ = writeln!(
        out,
        "  {:<24} {:<40} {:<16} {:>10} {:>12}",
        "NAMESPACE", "WORKLOAD", "CONTAINER", "CPU", "MEMORY"
    );
    for [ns, workload, container, cpu, memory] in &rows {
        let _ = writeln!(
            out,
            "  {ns:<24} {workload:<40} {container:<16} {cpu:>10} {memory:>12}"
        );
    }
}

#[expect(clippy::cast_precision_loss, reason = "sizes in bytes")]
fn totals(snapshot: &ClusterSnapshot, out: &mut String) {
    let _ = writeln!(out, "Reclaimable per namespace:");
    let totals = reclaimable(&snapshot.issues);
    if totals.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for (namespace, (millicores, bytes)) in &totals {
        let _ = writeln!(
            out,
            "  {namespace:<24} {} cores, {} ({bytes} bytes)",
            cores(*millicores),
            bytes_text(*bytes as f64)
        );
    }
}

#[expect(clippy::cast_precision_loss, reason = "sizes in bytes")]
fn idle(snapshot: &ClusterSnapshot, out: &mut String) {
    let _ = writeln!(out, "Idle workloads:");
    let mut any = false;
    for i in snapshot
        .issues
        .iter()
        .filter(|i| i.kind == IssueKind::WorkloadIdle as i32)
    {
        let Some(t) = i.target.as_ref() else {
            continue;
        };
        any = true;
        let _ = writeln!(
            out,
            "  {}/{} {}: busiest {}m CPU over {}h, holding {}m CPU and {} of requests",
            t.namespace,
            t.kind,
            t.name,
            evidence(i, "busiest cpu millicores").unwrap_or("0"),
            evidence_number(i, "history seconds").unwrap_or(0) / 3600,
            evidence_number(i, "requested cpu millicores").unwrap_or(0),
            bytes_text(evidence_number(i, "requested memory bytes").unwrap_or(0) as f64),
        );
    }
    if !any {
        let _ = writeln!(out, "  none");
    }
}

#[cfg(test)]
mod tests {
    use nanny_proto::v1::{self as pb, Evidence};

    use super::*;

    fn issue(kind: IssueKind, ns: &str, name: &str, evidence: &[(&str, &str)]) -> pb::Issue {
        pb::Issue {
            kind: kind as i32,
            target: Some(pb::ObjectRef {
                kind: "Deployment".into(),
                namespace: ns.into(),
                name: name.into(),
                ..pb::ObjectRef::default()
            }),
            evidence: evidence
                .iter()
                .map(|(d, v)| Evidence {
                    description: (*d).into(),
                    value: (*v).into(),
                })
                .collect(),
            ..pb::Issue::default()
        }
    }

    #[test]
    fn the_report_sums_reclaimable_requests_per_namespace_and_lists_idle_workloads() {
        let over = |name, cpu, memory| {
            issue(
                IssueKind::OverProvisioned,
                "shop",
                name,
                &[
                    ("container", "app"),
                    (RECLAIMABLE_CPU, cpu),
                    (RECLAIMABLE_MEMORY, memory),
                ],
            )
        };
        let snapshot = ClusterSnapshot {
            issues: vec![
                over("web", "760", "696254464"),
                over("api", "1500", "garbage"),
                issue(
                    IssueKind::WorkloadIdle,
                    "batch",
                    "poller",
                    &[
                        ("busiest cpu millicores", "0.4"),
                        ("history seconds", "172800"),
                        ("requested cpu millicores", "200"),
                        ("requested memory bytes", "268435456"),
                    ],
                ),
            ],
            ..ClusterSnapshot::default()
        };
        let text = cost(&snapshot);
        assert!(
            text.contains("shop                     2.260 cores, 664 MiB (696254464 bytes)"),
            "{text}"
        );
        assert!(text.contains("Deployment/web"), "{text}");
        assert!(
            text.contains("batch/Deployment poller: busiest 0.4m CPU over 48h, holding 200m CPU and 256 MiB of requests"),
            "{text}"
        );
    }
}
