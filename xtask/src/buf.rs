//! `buf lint` and `buf breaking` for proto/.

use std::process::Command;

use anyhow::Context as _;
use nanny_test_util::tools::BUF;

use crate::cmd;

/// Lints proto/ with buf.yaml's rules.
pub fn lint() -> anyhow::Result<()> {
    let buf = BUF.require()?;
    cmd::run("buf lint", Command::new(buf).arg("lint"))
}

/// Fails when proto/ breaks compatibility with the previous commit's protos.
pub fn breaking() -> anyhow::Result<()> {
    let buf = BUF.require()?;
    let base = "HEAD~1";
    let has_base = Command::new("git")
        .args(["cat-file", "-e", &format!("{base}:proto/nanny/v1")])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_base {
        println!("==> buf breaking: skipped, {base} has no proto/nanny/v1 to compare against");
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("nanny-buf-base-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // Extract the previous commit's contract (and its buf.yaml) to compare against.
    let archive = Command::new("git")
        .args(["archive", "--format=tar", base, "proto", "buf.yaml"])
        .output()
        .context("git archive")?;
    anyhow::ensure!(
        archive.status.success(),
        "git archive {base} failed: {}",
        String::from_utf8_lossy(&archive.stderr)
    );
    let tar = dir.join("base.tar");
    std::fs::write(&tar, &archive.stdout)?;
    cmd::run(
        "extract base protos",
        Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&dir),
    )?;
    std::fs::remove_file(&tar)?;
    let result = cmd::run(
        &format!("buf breaking against {base}"),
        Command::new(buf).arg("breaking").arg("--against").arg(&dir),
    );
    let _ = std::fs::remove_dir_all(&dir);
    result
}
