//! `nannyctl health`.

use std::{
    fmt::Write as _,
    process::ExitCode,
    time::{Duration, Instant},
};

use nanny_common::tls::ClientTls;
use nanny_proto::service_names;

use crate::tls::TlsArgs;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Where the services are.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Collector gRPC URL.
    #[arg(
        long,
        env = "NANNYCTL_COLLECTOR",
        default_value = "http://127.0.0.1:50051"
    )]
    collector: String,
    /// Analyzer gRPC URL.
    #[arg(
        long,
        env = "NANNYCTL_ANALYZER",
        default_value = "http://127.0.0.1:50052"
    )]
    analyzer: String,
    /// Safety gate gRPC URL.
    #[arg(
        long,
        env = "NANNYCTL_SAFETY_GATE",
        default_value = "http://127.0.0.1:50053"
    )]
    safety_gate: String,
    /// Remediator gRPC URL.
    #[arg(
        long,
        env = "NANNYCTL_REMEDIATOR",
        default_value = "http://127.0.0.1:50054"
    )]
    remediator: String,
    /// Coordinator gRPC URL.
    #[arg(
        long,
        env = "NANNYCTL_COORDINATOR",
        default_value = "http://127.0.0.1:50055"
    )]
    coordinator: String,
    /// Deadline per check, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
}

/// One row of the table.
#[derive(Debug)]
struct Row {
    service: &'static str,
    url: String,
    status: String,
    millis: Option<u128>,
}

/// Checks all five services concurrently; exits non-zero unless all are SERVING.
pub async fn run(tls: &TlsArgs, args: Args) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let targets = [
        ("collector", args.collector, service_names::COLLECTOR),
        ("analyzer", args.analyzer, service_names::ANALYZER),
        ("safety-gate", args.safety_gate, service_names::SAFETY_GATE),
        ("remediator", args.remediator, service_names::REMEDIATOR),
        // The coordinator has no API of its own; its overall health says
        // whether it can reach the other four.
        ("coordinator", args.coordinator, ""),
    ];
    let mut checks = Vec::new();
    for (service, url, grpc_service) in targets {
        let tls = tls.client(&format!("nanny-{service}"))?;
        checks.push(check(service, url, grpc_service, tls, timeout));
    }
    let rows = futures::future::join_all(checks).await;
    print!("{}", render(&rows));
    let all_serving = rows.iter().all(|r| r.status == "SERVING");
    Ok(if all_serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn check(
    service: &'static str,
    url: String,
    grpc_service: &str,
    tls: Option<ClientTls>,
    timeout: Duration,
) -> Row {
    let start = Instant::now();
    let status = match probe(&url, grpc_service, tls.as_ref(), timeout).await {
        Ok(status) => status.as_str_name().to_owned(),
        Err(error) => format!("UNREACHABLE ({error})"),
    };
    Row {
        service,
        url,
        status,
        millis: Some(start.elapsed().as_millis()),
    }
}

async fn probe(
    url: &str,
    grpc_service: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> anyhow::Result<ServingStatus> {
    let channel = nanny_common::client::channel("--url", url, timeout, tls)?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: grpc_service.to_owned(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?;
    Ok(response.into_inner().status())
}

fn render(rows: &[Row]) -> String {
    let url_width = rows.iter().map(|r| r.url.len()).max().unwrap_or(0).max(8);
    let mut out = format!(
        "{:<12} {:<url_width$} {:>8}  STATUS\n",
        "SERVICE", "ENDPOINT", "LATENCY"
    );
    for row in rows {
        let latency = row
            .millis
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms}ms"));
        let _ = writeln!(
            out,
            "{:<12} {:<url_width$} {:>8}  {}",
            row.service, row.url, latency, row.status
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = [
            Row {
                service: "collector",
                url: "http://a:1".into(),
                status: "SERVING".into(),
                millis: Some(3),
            },
            Row {
                service: "safety-gate",
                url: "http://bb:2".into(),
                status: "NOT_SERVING".into(),
                millis: None,
            },
        ];
        let text = render(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "SERVICE      ENDPOINT     LATENCY  STATUS");
        assert_eq!(lines[1], "collector    http://a:1       3ms  SERVING");
        assert_eq!(lines[2], "safety-gate  http://bb:2        -  NOT_SERVING");
    }

    #[tokio::test]
    async fn unreachable_service_is_reported_not_fatal() {
        // Port 1 on loopback refuses connections.
        let row = check(
            "collector",
            "http://127.0.0.1:1".into(),
            "",
            None,
            Duration::from_millis(500),
        )
        .await;
        assert!(row.status.starts_with("UNREACHABLE"), "{}", row.status);
    }
}
