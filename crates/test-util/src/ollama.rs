//! A real Ollama for the analyzer's native-provider tests: v0.11.4 built
//! from its Go module (cgo, CPU only: its ggml and llama.cpp sources ship in
//! the module), with the same SmolLM2-135M GGUF as [`crate::llm`] imported
//! as [`MODEL`].
//!
//! [`install`] builds the binary into `~/.cache/nanny/tools/ollama-<version>/`
//! and imports the model into `~/.cache/nanny/llm/ollama-<versions>/` once
//! ([`crate::llm::install`] calls it); [`OllamaServer`] serves that model
//! store on a free loopback port.

use std::{
    io::Read as _,
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    llm::{self, SMOLLM2_VERSION},
    tools::{GoTool, cache_dir},
};

/// Ollama, pinned to v0.11.4: the newest tag whose module zip carries all
/// of its C/C++ sources (later ones fetch llama.cpp at build time).
pub const OLLAMA: GoTool = GoTool {
    name: "ollama",
    version: "v0.11.4",
    package: "github.com/ollama/ollama",
    cgo: true,
};

/// The imported model's name, the analyzer's default `llm.model`.
pub const MODEL: &str = "smollm2:135m";

/// The versioned folder holding the model store and the server's home.
pub fn dir() -> PathBuf {
    cache_dir().join("llm").join(format!(
        "ollama-{}-smollm2-{SMOLLM2_VERSION}",
        OLLAMA.version
    ))
}

fn stamp() -> PathBuf {
    dir().join(".stamp")
}

/// Whether the binary is built and the model imported.
pub fn is_installed() -> bool {
    OLLAMA.is_installed() && stamp().is_file()
}

/// `ollama serve` on `port` over the cached model store. Its own process
/// group, so that killing the group also ends the runner it spawns per
/// loaded model.
fn serve_command(port: u16) -> Command {
    let mut command = Command::new(OLLAMA.binary());
    command
        .arg("serve")
        .env("OLLAMA_HOST", format!("127.0.0.1:{port}"))
        .env("OLLAMA_MODELS", dir().join("models"))
        // Its key pair goes here, not into the user's ~/.ollama.
        .env("HOME", dir().join("home"))
        .env("OLLAMA_NUM_PARALLEL", "1")
        .stdin(Stdio::null())
        .process_group(0);
    command
}

/// Kills a process group started by [`serve_command`].
fn kill_group(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Builds Ollama and imports the model unless both are cached. Needs Go
/// 1.24+, gcc and g++, the Go module proxy, and [`crate::llm`]'s model.
///
/// # Errors
/// When the build or the import fails; the message names the step.
pub fn install() -> anyhow::Result<()> {
    if is_installed() {
        return Ok(());
    }
    if !OLLAMA.is_installed() {
        build()?;
    }
    import()
}

/// The x86 SIMD flags of Ollama's own "haswell" CPU variant when this CPU
/// has them all: a plain `go build` compiles ggml for baseline x86-64, about
/// three times slower.
fn simd_flags() -> Option<&'static str> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))?
        .split_whitespace()
        .collect();
    ["sse4_2", "avx", "f16c", "avx2", "bmi2", "fma"]
        .iter()
        .all(|f| flags.contains(f))
        .then_some("-msse4.2 -mavx -mf16c -mavx2 -mbmi2 -mfma")
}

/// `go install` at the lowest priority (the build compiles llama.cpp: many
/// minutes on a small machine), with the project's Go caches.
fn build() -> anyhow::Result<()> {
    let dir = OLLAMA.dir();
    std::fs::create_dir_all(dir.join("bin"))?;
    let go = cache_dir().join("go");
    let log = dir.join("build.log");
    println!(
        "==> building ollama {} with cgo (CPU only; 10-25 min cold), log in {}",
        OLLAMA.version,
        log.display()
    );
    // Go's default C flags, plus SIMD where the CPU has it; the binary is
    // cached on this machine only.
    let cflags = format!("-O2 -g {}", simd_flags().unwrap_or_default());
    let started = Instant::now();
    let mut child = Command::new("nice")
        .args(["-n", "19", "go", "install"])
        .arg(format!("{}@{}", OLLAMA.package, OLLAMA.version))
        // A newer `go` directive must never trigger a toolchain download.
        .env("GOTOOLCHAIN", "local")
        .env("GOMODCACHE", go.join("mod"))
        .env("GOCACHE", go.join("build"))
        .env("GOFLAGS", "-mod=mod")
        .env("CGO_ENABLED", "1")
        .env("CGO_CFLAGS", &cflags)
        .env("CGO_CXXFLAGS", &cflags)
        .env("GOBIN", dir.join("bin"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("building ollama: cannot run `nice go install` (is Go installed?)")?;
    let mut reported = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if reported.elapsed() >= Duration::from_secs(60) {
            println!("    ollama: still building, {:.0?}", started.elapsed());
            reported = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    if !status.success() {
        let mut text = String::new();
        std::fs::File::open(&log)?.read_to_string(&mut text)?;
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        bail!(
            "building ollama {} failed ({status}):\n{}",
            OLLAMA.version,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    std::fs::write(
        OLLAMA.stamp(),
        format!(
            "{}@{} CGO_CFLAGS={cflags}\n",
            OLLAMA.package, OLLAMA.version
        ),
    )?;
    println!("==> built ollama in {:.0?}", started.elapsed());
    Ok(())
}

/// Serves the empty store once and runs `ollama create` with a Modelfile
/// `FROM <gguf>`: the CLI uploads the file as a blob and creates the model.
fn import() -> anyhow::Result<()> {
    anyhow::ensure!(
        llm::is_installed(),
        "the SmolLM2 model is not installed; run `cargo xtask tools`"
    );
    let dir = dir();
    std::fs::create_dir_all(dir.join("home"))?;
    let modelfile = dir.join("Modelfile");
    std::fs::write(
        &modelfile,
        format!("FROM {}\n", llm::model_path().display()),
    )?;
    println!("==> importing SmolLM2-135M into ollama as {MODEL}");
    let port = free_port()?;
    let mut server = serve_command(port)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting `ollama serve`")?;
    let pid = server.id();
    let result = create(port, &modelfile);
    kill_group(pid);
    let _ = server.wait();
    result?;
    std::fs::write(stamp(), format!("{} {MODEL}\n", OLLAMA.version))?;
    Ok(())
}

fn create(port: u16, modelfile: &std::path::Path) -> anyhow::Result<()> {
    let cli = |args: &[&str]| {
        let mut command = Command::new(OLLAMA.binary());
        command
            .args(args)
            .env("OLLAMA_HOST", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null());
        command
    };
    // `ollama list` fails until the server listens.
    let started = Instant::now();
    while !cli(&["list"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success()
    {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "`ollama serve` did not answer within a minute"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let output = cli(&["create", MODEL, "-f"])
        .arg(modelfile)
        .output()
        .context("running `ollama create`")?;
    if !output.status.success() {
        bail!(
            "`ollama create {MODEL}` failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A running Ollama with [`MODEL`]; its process group is killed when dropped.
#[derive(Debug)]
pub struct OllamaServer {
    /// `http://127.0.0.1:<port>`: the native API's base URL.
    pub url: String,
    child: tokio::process::Child,
}

impl OllamaServer {
    /// The server for a test: `None` (skip, with a notice) when it is not
    /// installed, except under `CI=true`, where that fails the test.
    ///
    /// # Panics
    /// Under CI when not installed, or when the server does not start.
    pub async fn for_test(test: &str) -> Option<Self> {
        if !is_installed() {
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true"),
                "{test}: ollama {} with {MODEL} is not installed (CI=true never skips); `cargo xtask tools` installs it",
                OLLAMA.version
            );
            eprintln!(
                "SKIPPED {test}: ollama {} with {MODEL} is not installed; run `cargo xtask tools`",
                OLLAMA.version
            );
            return None;
        }
        Some(Self::start().await.expect("ollama starts"))
    }

    /// Starts `ollama serve` on a free loopback port and waits until it
    /// answers.
    ///
    /// # Errors
    /// When it cannot start or does not answer within a minute.
    pub async fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut command = tokio::process::Command::from(serve_command(port));
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting `ollama serve`")?;
        let addr = format!("127.0.0.1:{port}").parse()?;
        let server = Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        crate::cluster::eventually("ollama answers", Duration::from_secs(60), || async {
            Ok(crate::http::get(addr, "/api/version")
                .await
                .ok()
                .filter(|(status, _)| *status == 200))
        })
        .await?;
        Ok(server)
    }
}

impl Drop for OllamaServer {
    fn drop(&mut self) {
        // The server and the model runner it started.
        if let Some(pid) = self.child.id() {
            kill_group(pid);
        }
    }
}
