//! `nannyctl`: operate Nanny from a terminal.
//!
//! Today: `health` checks every service. Later issues add list, describe,
//! approve, reject, rollback, snapshot and analyze.

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Health(args) => health::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("nannyctl: {error:#}");
            ExitCode::FAILURE
        }
    }
}
