//! `nannyctl`: operate Nanny from a terminal.
//!
//! - `list` / `get` / `describe` HealingActions, and decide on them with
//!   `approve`, `reject` and `rollback` (merge patches guarded by the
//!   resourceVersion the decision was made on);
//! - `policy list` / `policy status` for HealingPolicies;
//! - `snapshot` asks the collector for one snapshot and `analyze -f` replays a
//!   saved one through the analyzer, for debugging rules and prompts;
//! - `health` checks every service and `audit verify` the gate's audit log;
//! - `kinds` lists every issue kind with its default response and level
//!   (`--actions`: every action type);
//! - `report cost` sums what workloads request above what they use, per
//!   namespace, and lists idle workloads.
//!
//! The same CLI is built as `kubectl-nanny`: with that binary on `PATH`,
//! `kubectl nanny list` works like `nannyctl list`.
//!
//! Cluster commands take `--kubeconfig`, `--context` and `-n/--namespace`
//! like kubectl (the namespace defaults to the context's, else `default`).

mod actions;
mod audit;
mod connect;
mod health;
mod kinds;
mod policy;
mod render;
mod report;
mod snapshot;
mod tls;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

/// Operate Nanny, the Kubernetes healer.
#[derive(Debug, Parser)]
#[command(name = "nannyctl", version, about)]
struct Cli {
    #[command(flatten)]
    kube: connect::KubeArgs,
    #[command(flatten)]
    tls: tls::TlsArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List HealingActions.
    #[command(alias = "ls")]
    List(actions::ListArgs),
    /// Print one HealingAction as YAML or JSON.
    Get(actions::GetArgs),
    /// Explain one HealingAction: what, why, what happened, what to do next.
    Describe(actions::NameArgs),
    /// Approve an action that waits for a human (phase PendingApproval).
    Approve(actions::ApproveArgs),
    /// Reject an action that waits for a human (phase PendingApproval).
    Reject(actions::RejectArgs),
    /// Ask the coordinator to undo a succeeded or failed action.
    Rollback(actions::RollbackArgs),
    /// Inspect HealingPolicies.
    #[command(subcommand)]
    Policy(policy::Command),
    /// Fetch one snapshot from the collector (scope: `-n`, repeatable; all
    /// namespaces by default).
    Snapshot(snapshot::SnapshotArgs),
    /// Run a saved snapshot through the analyzer and print its recommendations.
    Analyze(snapshot::AnalyzeArgs),
    /// Check every service's gRPC health and print a table.
    Health(health::Args),
    /// Work with the safety gate's audit log.
    #[command(subcommand)]
    Audit(audit::Command),
    /// List every issue kind Nanny detects, its default response and who
    /// lets it run (`--actions`: every action type).
    Kinds(kinds::Args),
    /// Reports from the collector's snapshot (`cost`: reclaimable requests
    /// and idle workloads per namespace).
    #[command(subcommand)]
    Report(report::Command),
}

/// Parses the command line and runs the command. `program` is how the user
/// invoked it (`nannyctl`, or `kubectl nanny` for the plugin); help text and
/// suggested next commands use it.
pub fn main(program: &str) -> ExitCode {
    let command = Cli::command().bin_name(program);
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let kube = cli.kube;
    let tls = cli.tls;
    match cli.command {
        Command::List(args) => block_on(actions::list(kube, args)),
        Command::Get(args) => block_on(actions::get(kube, args)),
        Command::Describe(args) => block_on(actions::describe(kube, args, program)),
        Command::Approve(args) => block_on(actions::approve(kube, args)),
        Command::Reject(args) => block_on(actions::reject(kube, args)),
        Command::Rollback(args) => block_on(actions::rollback(kube, args)),
        Command::Policy(command) => block_on(policy::run(kube, command, program)),
        Command::Snapshot(args) => block_on(snapshot::snapshot(&kube, &tls, args)),
        Command::Analyze(args) => block_on(snapshot::analyze(&kube, &tls, args)),
        Command::Health(args) => block_on(health::run(&tls, args)),
        Command::Audit(command) => block_on(audit::run(kube, command)),
        Command::Kinds(args) => kinds::run(&args),
        Command::Report(command) => block_on(report::run(&kube, &tls, command)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("nannyctl").chain(args.iter().copied()))
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_before_and_after_the_subcommand() {
        let cli = parse(&["--kubeconfig", "/k", "list", "-n", "shop", "--context", "c"]).unwrap();
        assert_eq!(
            cli.kube.kubeconfig.as_deref(),
            Some(std::path::Path::new("/k"))
        );
        assert_eq!(cli.kube.context.as_deref(), Some("c"));
        assert_eq!(cli.kube.namespace, ["shop"]);
        assert!(matches!(cli.command, Command::List(_)));
        assert!(matches!(
            parse(&["ls", "-A"]).unwrap().command,
            Command::List(_)
        ));
    }

    #[test]
    fn rollback_requires_a_reason() {
        let error = parse(&["rollback", "ha-1"]).unwrap_err();
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert!(error.to_string().contains("--reason"), "{error}");
        assert!(parse(&["rollback", "ha-1", "--reason", "broke checkout"]).is_ok());
    }

    #[test]
    fn approve_and_reject_need_a_name() {
        for command in ["approve", "reject", "describe", "get"] {
            let error = parse(&[command]).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::MissingRequiredArgument,
                "{command}"
            );
        }
    }

    #[test]
    fn output_formats_are_validated() {
        assert!(parse(&["list", "-o", "json"]).is_ok());
        assert!(parse(&["get", "ha-1", "-o", "yaml"]).is_ok());
        let error = parse(&["list", "-o", "xml"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::InvalidValue);
    }

    #[test]
    fn unknown_phase_filter_lists_the_valid_phases() {
        let error = parse(&["list", "--phase", "Waiting"]).unwrap_err();
        assert!(error.to_string().contains("PendingApproval"), "{error}");
        assert!(parse(&["list", "--phase", "pendingapproval"]).is_ok());
    }

    #[test]
    fn analyze_needs_a_file() {
        let error = parse(&["analyze"]).unwrap_err();
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert!(parse(&["analyze", "-f", "-", "--policy", "shop/default"]).is_ok());
        assert!(parse(&["analyze", "-f", "-", "--explain"]).is_ok());
    }
}
