//! `cargo xtask <command>`: every project chore in one Rust program, so the
//! README, the justfile, CI and developers all run exactly the same steps.

mod bench;
mod buf;
mod cluster;
mod cmd;
mod demo;
mod eval;
mod go;
mod helm;
mod images;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Nanny project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Everything CI checks: rustfmt, buf lint/breaking, clippy -D warnings, all tests incl. the cluster tier.
    Test,
    /// Build the Go tools the tests need (grpcurl, buf) and install the local LLM server into ~/.cache/nanny.
    Tools,
    /// Regenerate deploy/crds/*.yaml from the Rust types.
    Crds,
    /// Write a development CA and a certificate and key per Nanny identity
    /// (the five services and `operator`, for nannyctl and grpcurl).
    Certs {
        /// Output directory, e.g. ~/.config/nanny for nannyctl's defaults.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Extra DNS name for every certificate (repeatable); `{identity}`
        /// becomes the certificate's identity, e.g.
        /// `{identity}.nanny.svc.cluster.local`.
        #[arg(long = "dns", value_name = "NAME")]
        dns: Vec<String>,
    },
    /// The local Kubernetes cluster for tests and the demo.
    Cluster {
        #[command(subcommand)]
        action: cluster::Action,
    },
    /// Measure performance targets.
    Bench {
        #[command(subcommand)]
        target: bench::Target,
    },
    /// Bring up a local cluster, inject faults and watch Nanny heal them.
    Demo(demo::Args),
    /// Score how the rules and a model choose actions over the labelled
    /// corpus in eval/cases (see eval/README.md).
    Eval(eval::Args),
    /// Build OCI images of the five services, nannyctl and the fault app
    /// from their release binaries, and of the model server (Ollama with the
    /// local model), into target/images/, and import them into the local
    /// cluster's real node when it runs.
    Images {
        /// From the debug binaries `cargo build --workspace --bins` left in
        /// target/debug (debug info stripped), without a release build:
        /// what `cargo xtask test` installs the chart on the real node with.
        #[arg(long)]
        debug: bool,
    },
    /// Regenerate the README's tables of issue kinds and actions.
    Docs,
    /// Lint the Helm chart and render (or drift-check) deploy/rendered/.
    Helm {
        #[command(subcommand)]
        action: helm::Action,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root).with_context(|| format!("cd {}", root.display()))?;
    match cli.command {
        Command::Test => test(),
        Command::Tools => {
            go::install_all(&nanny_test_util::tools::TEST_TOOLS)?;
            nanny_test_util::llm::install()
        }
        Command::Crds => crds(),
        Command::Docs => docs(),
        Command::Certs { out, dns } => {
            nanny_test_util::pki::write(
                &out,
                &nanny_common::tls::IDENTITIES,
                &dns,
                nanny_test_util::pki::Validity::Current,
            )?;
            println!(
                "wrote ca.pem, a certificate and key per identity ({}), the verdict key pair and the records' MAC key to {}",
                nanny_common::tls::IDENTITIES.join(", "),
                out.display()
            );
            Ok(())
        }
        Command::Cluster { action } => cluster::run(action),
        Command::Bench { target } => bench::run(target),
        Command::Helm { action } => helm::run(action),
        Command::Demo(args) => demo::run(args),
        Command::Eval(args) => eval::run(&args),
        Command::Images { debug } => images::all(if debug {
            images::Profile::Debug
        } else {
            images::Profile::Release
        }),
    }
}

/// The repository root (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map_or(manifest.clone(), PathBuf::from)
}

fn test() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    cmd::step("rustfmt", &["cargo", "fmt", "--all", "--check"])?;
    go::install_all(&nanny_test_util::tools::TEST_TOOLS)?;
    // The analyzer's model tests talk to a real small model.
    nanny_test_util::llm::install()?;
    buf::lint()?;
    buf::breaking()?;
    // helm lint and the chart's drift checks (CRD copy, deploy/rendered/).
    helm::check()?;
    cmd::step(
        "clippy",
        &[
            "cargo",
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // Binary-level tests spawn the service binaries: build them first.
    cmd::step(
        "build binaries",
        &["cargo", "build", "--workspace", "--bins", "--locked"],
    )?;
    // The action-choice eval over the real analyzer and gate.
    eval::ci()?;
    // The chart's images, for the real node (imported once it runs).
    images::build(images::Profile::Debug)?;
    // One local cluster for every tier that needs an API server: the
    // e2e tests start the collector and remediator against it, the cluster
    // tests do everything else.
    let totals = cluster::with_cluster(3, |_| {
        images::import_built()?;
        let mut totals = cmd::cargo_test(
            "tests",
            &[
                "test",
                "--workspace",
                "--locked",
                "--exclude",
                "nanny-cluster-tests",
            ],
        )?;
        totals += cmd::cargo_test(
            "cluster tests",
            &["test", "--locked", "--package", "nanny-cluster-tests"],
        )?;
        Ok(totals)
    })?;
    println!("xtask test: all checks passed in {:.0?}", started.elapsed());
    // The plain summary line CI reads.
    println!("tests: {} passed, {} failed", totals.passed, totals.failed);
    Ok(())
}

fn docs() -> anyhow::Result<()> {
    let readme = std::fs::read_to_string("README.md").context("read README.md")?;
    let updated = nanny_proto::kinds::with_readme_section(&readme).with_context(|| {
        format!(
            "README.md has no generated section: put {:?} and {:?} where the tables go",
            nanny_proto::kinds::README_BEGIN,
            nanny_proto::kinds::README_END
        )
    })?;
    std::fs::write("README.md", updated).context("write README.md")?;
    println!("wrote the tables of issue kinds and actions into README.md");
    Ok(())
}

fn crds() -> anyhow::Result<()> {
    let dir = PathBuf::from("deploy/crds");
    std::fs::create_dir_all(&dir)?;
    for (file, yaml) in nanny_crd::crd_yaml()? {
        std::fs::write(dir.join(file), yaml)?;
        println!("wrote deploy/crds/{file}");
    }
    // The chart ships the same CRDs.
    helm::sync_crds()
}
