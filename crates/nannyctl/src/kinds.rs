//! `nannyctl kinds`: every issue kind Nanny detects, with its default
//! response and who lets it run, and with `--actions` every action type.
//! Read from the same tables as the services (`nanny_proto::kinds`,
//! `nanny_proto::vocabulary`); the README's tables are generated from them
//! too (`cargo xtask docs`).

use std::process::ExitCode;

use nanny_proto::{kinds, vocabulary};

use crate::render::table;

/// `nannyctl kinds`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print Markdown (the README's tables) instead of aligned columns.
    #[arg(long)]
    markdown: bool,
    /// List the action types and their default levels instead.
    #[arg(long)]
    actions: bool,
}

/// Prints the table.
pub fn run(args: &Args) -> ExitCode {
    print!("{}", render(args));
    ExitCode::SUCCESS
}

fn render(args: &Args) -> String {
    match (args.actions, args.markdown) {
        (false, true) => kinds::markdown(),
        (true, true) => vocabulary::markdown(),
        (false, false) => table(
            &["KIND", "AREA", "SEVERITY", "DEFAULT RESPONSE", "LEVEL"],
            &kinds::KINDS
                .iter()
                .map(|k| {
                    vec![
                        k.name.to_owned(),
                        k.area.as_str().to_owned(),
                        kinds::severity_text(k.severity).to_owned(),
                        k.response_text(),
                        k.level_text().to_owned(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
        (true, false) => table(
            &["ACTION", "DEFAULT LEVEL", "DISRUPTIVE"],
            &vocabulary::ACTIONS
                .iter()
                .map(|a| {
                    vec![
                        a.name.to_owned(),
                        a.level_text().to_owned(),
                        if a.disruptive { "yes" } else { "no" }.to_owned(),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_with_its_response_and_level() {
        let out = render(&Args {
            markdown: false,
            actions: false,
        });
        assert_eq!(out.lines().count(), kinds::KINDS.len() + 1, "{out}");
        let crash = out
            .lines()
            .find(|l| l.starts_with("CrashLoopBackOff "))
            .unwrap_or_default();
        assert!(
            crash.contains("RestartPod → RolloutRestart") && crash.ends_with("auto"),
            "{crash}"
        );
        let lost = out
            .lines()
            .find(|l| l.starts_with("PVCLost "))
            .unwrap_or_default();
        assert!(lost.contains("ReportOnly (what to fix)"), "{lost}");
        let actions = render(&Args {
            markdown: false,
            actions: true,
        });
        assert!(
            actions
                .lines()
                .any(|l| l.starts_with("DrainNode ") && l.contains("always a human"))
        );
        assert!(
            actions
                .lines()
                .any(|l| l.starts_with("DeleteResource ") && l.contains("never executed"))
        );
    }
}
