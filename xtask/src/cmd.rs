//! Running commands with a visible step name and timing.

use std::{process::Command, time::Instant};

use anyhow::{Context as _, bail};

/// Runs `argv`, inheriting stdio, and fails naming the step when it fails.
pub fn step(name: &str, argv: &[&str]) -> anyhow::Result<()> {
    let (program, args) = argv.split_first().context("empty command")?;
    let mut command = Command::new(program);
    command.args(args);
    run(name, &mut command)
}

/// Runs `command`, inheriting stdio, and fails naming the step when it fails.
pub fn run(name: &str, command: &mut Command) -> anyhow::Result<()> {
    println!("==> {name}");
    let started = Instant::now();
    let status = command
        .status()
        .with_context(|| format!("{name}: cannot run {command:?}"))?;
    if !status.success() {
        bail!("{name} failed ({status}) after {:.1?}", started.elapsed());
    }
    println!("==> {name}: ok in {:.1?}", started.elapsed());
    Ok(())
}

/// Runs `command` with its output captured, shown only when it fails.
pub fn quiet(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Totals over every `test result:` line of a cargo test run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TestTotals {
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed.
    pub failed: u64,
}

impl std::ops::AddAssign for TestTotals {
    fn add_assign(&mut self, other: Self) {
        self.passed += other.passed;
        self.failed += other.failed;
    }
}

impl TestTotals {
    /// Adds one libtest summary line (`test result: ok. 3 passed; 0 failed; …`).
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        let count = |word: &str| {
            rest.split(';')
                .find_map(|part| {
                    part.trim()
                        .trim_start_matches(|c: char| !c.is_ascii_digit())
                        .strip_suffix(word)
                })
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        self.passed += count("passed");
        self.failed += count("failed");
    }
}

/// Runs a cargo test command, echoing its output, and returns the totals.
pub fn cargo_test(name: &str, args: &[&str]) -> anyhow::Result<TestTotals> {
    use std::io::BufRead as _;

    println!("==> {name}");
    let started = Instant::now();
    let mut child = Command::new("cargo")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("{name}: cannot run cargo"))?;
    let mut totals = TestTotals::default();
    let stdout = child.stdout.take().context("stdout")?;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        totals.add_line(&line);
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "{name} failed ({status}): {} passed, {} failed",
            totals.passed,
            totals.failed
        );
    }
    println!("==> {name}: ok in {:.1?}", started.elapsed());
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::TestTotals;

    #[test]
    fn sums_libtest_summaries() {
        let mut totals = TestTotals::default();
        totals.add_line("test result: ok. 13 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        totals.add_line(
            "test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        totals.add_line("running 3 tests");
        assert_eq!(
            totals,
            TestTotals {
                passed: 14,
                failed: 2
            }
        );
    }
}
