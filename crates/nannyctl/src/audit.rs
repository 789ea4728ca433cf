//! `nannyctl audit verify FILE`: check the safety gate's hash-chained audit log.

use std::{path::PathBuf, process::ExitCode};

/// `nannyctl audit …`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Verify that no record was changed, removed or reordered.
    Verify {
        /// The gate's audit log (its `audit.path`).
        file: PathBuf,
    },
}

/// Runs the subcommand; a broken chain exits 1 naming the first bad line.
pub fn run(command: Command) -> ExitCode {
    match command {
        Command::Verify { file } => match nanny_common::audit::verify(&file) {
            Ok((records, last_hash)) => {
                println!(
                    "{}: {records} records, chain intact (last hash {last_hash})",
                    file.display()
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("nannyctl: TAMPERED OR DAMAGED: {error}");
                ExitCode::FAILURE
            }
        },
    }
}
