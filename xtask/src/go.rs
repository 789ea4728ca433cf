//! Building Go tools from their modules into the versioned cache.

use std::{
    io::Read as _,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nanny_test_util::tools::{GoTool, cache_dir};

/// Builds every tool not yet cached; a second run does nothing.
pub fn install_all(tools: &[GoTool]) -> anyhow::Result<()> {
    for tool in tools {
        install(tool)?;
    }
    Ok(())
}

/// A `go` command with the project's cache and no toolchain downloads.
pub fn go_command() -> Command {
    let cache = cache_dir().join("go");
    let mut command = Command::new("go");
    command
        // A newer `go` directive must never trigger a toolchain download.
        .env("GOTOOLCHAIN", "local")
        .env("GOMODCACHE", cache.join("mod"))
        .env("GOCACHE", cache.join("build"))
        .env("GOFLAGS", "-mod=mod");
    command
}

/// Builds one tool with `go install` unless its stamp exists.
pub fn install(tool: &GoTool) -> anyhow::Result<()> {
    if tool.is_installed() {
        return Ok(());
    }
    let dir = tool.dir();
    std::fs::create_dir_all(dir.join("bin"))?;
    let mut command = go_command();
    command
        .env("GOBIN", dir.join("bin"))
        .env("CGO_ENABLED", if tool.cgo { "1" } else { "0" })
        .args(["install", &format!("{}@{}", tool.package, tool.version)]);
    run_with_progress(&format!("{} {}", tool.name, tool.version), command)?;
    std::fs::write(tool.stamp(), format!("{}@{}\n", tool.package, tool.version))?;
    Ok(())
}

/// Runs a long build, printing elapsed time every 30 s, and on failure shows
/// the component and the tail of Go's output.
pub fn run_with_progress(component: &str, mut command: Command) -> anyhow::Result<()> {
    which_go()?;
    println!(
        "==> building {component} (cached under {})",
        cache_dir().display()
    );
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("building {component}: cannot run {command:?}"))?;
    // Drain stderr on a thread so a chatty build never blocks on the pipe.
    let mut stderr = child.stderr.take().context("stderr")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut last_report = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            println!(
                "    {component}: still building, {:.0?} elapsed",
                started.elapsed()
            );
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = reader.join().unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = output.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "building {component} failed ({status}) after {:.0?}:\n{}",
            started.elapsed(),
            tail.join("\n")
        );
    }
    println!("==> built {component} in {:.0?}", started.elapsed());
    Ok(())
}

fn which_go() -> anyhow::Result<()> {
    match Command::new("go").arg("version").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => bail!(
            "the Go toolchain (`go`) is needed to build the test tools; install Go 1.24 or newer"
        ),
    }
}
