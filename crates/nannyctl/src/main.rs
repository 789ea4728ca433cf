//! `nannyctl`: operate Nanny from a terminal.
//!
//! Today: `health` checks every service and `audit verify` checks the safety
//! gate's audit log. Later issues add list, describe, approve, reject,
//! rollback, snapshot and analyze.

mod audit;
mod health;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Operate Nanny, the Kubernetes healer.
#[derive(Debug, Parser)]
#[command(name = "nannyctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check every service's gRPC health and print a table.
    Health(health::Args),
    /// Work with the safety gate's audit log.
    #[command(subcommand)]
    Audit(audit::Command),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Health(args) => block_on(health::run(args)),
        Command::Audit(command) => audit::run(command),
    }
}

/// Runs an async command on a single-threaded runtime and maps its result.
fn block_on(command: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("nannyctl: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("nannyctl: {error:#}");
            ExitCode::FAILURE
        }
    }
}
