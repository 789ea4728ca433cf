//! OCI images without a registry or Docker: a root filesystem tarred with
//! fixed owners and times, its config and manifest with their sha256
//! digests, and an image layout (`index.json` naming the image) tarred
//! again — what `ctr images import` reads.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// How an image runs.
#[derive(Debug, Clone)]
pub struct Image<'a> {
    /// Its reference, e.g. `registry.k8s.io/pause:3.10` (a fixed tag).
    pub name: &'a str,
    /// The root filesystem to pack.
    pub rootfs: &'a Path,
    /// The entrypoint.
    pub entrypoint: &'a [&'a str],
    /// `uid:gid` it runs as.
    pub user: &'a str,
}

/// Writes `image` as an OCI image-layout archive into `out_dir` and
/// returns its path.
///
/// # Errors
/// When `tar` fails or a file cannot be written.
pub fn write(image: &Image<'_>, out_dir: &Path) -> anyhow::Result<PathBuf> {
    let file_name: String = image
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let layout = out_dir.join(format!("{file_name}.layout"));
    let _ = std::fs::remove_dir_all(&layout);
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;

    let layer_path = layout.join("layer.tar");
    tar(image.rootfs, &layer_path)?;
    let layer = std::fs::read(&layer_path)?;
    std::fs::remove_file(&layer_path)?;
    let layer_digest = blob(&blobs, &layer)?;
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": image.entrypoint,
            "User": image.user,
            // The non-root user's home (its /etc/passwd entry).
            "Env": ["PATH=/bin", "HOME=/tmp"],
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    }))?;
    let config_digest = blob(&blobs, &config)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    }))?;
    let manifest_digest = blob(&blobs, &manifest)?;
    let tag = image.name.rsplit_once(':').map_or("latest", |(_, t)| t);
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest.len(),
                "platform": { "architecture": "amd64", "os": "linux" },
                "annotations": {
                    "io.containerd.image.name": image.name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }],
        }))?,
    )?;
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let archive = out_dir.join(format!("{file_name}.tar"));
    tar(&layout, &archive)?;
    std::fs::remove_dir_all(&layout)?;
    Ok(archive)
}

/// Writes `data` as a blob named by its digest; returns `sha256:…`.
fn blob(dir: &Path, data: &[u8]) -> anyhow::Result<String> {
    let hex: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(dir.join(&hex), data)?;
    Ok(format!("sha256:{hex}"))
}

/// A reproducible tar of `dir`'s contents: sorted, owned by root, dated 0.
fn tar(dir: &Path, archive: &Path) -> anyhow::Result<()> {
    crate::cmd::quiet(
        Command::new("tar")
            .args([
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--mtime=@0",
                "-cf",
            ])
            .arg(archive)
            .arg("-C")
            .arg(dir)
            .arg("."),
    )
}

/// A root filesystem holding only a static busybox (as `/bin/busybox` and
/// `/bin/sh`), written to `dir`.
///
/// # Errors
/// When busybox is missing or a file cannot be written.
pub fn busybox_rootfs(busybox: &Path, dir: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("bin"))?;
    std::fs::create_dir_all(dir.join("tmp"))?;
    std::fs::copy(busybox, dir.join("bin/busybox"))
        .with_context(|| format!("copying {}", busybox.display()))?;
    std::os::unix::fs::symlink("busybox", dir.join("bin/sh"))?;
    Ok(())
}

/// A root filesystem for `binary`: it (as `/bin/NAME`, linked from
/// `/bin/entrypoint`), exactly the shared
/// libraries `ldd` lists for it, the CA certificates, and an `/etc/passwd`
/// naming the non-root user images run as.
///
/// # Errors
/// When `ldd` fails or a file cannot be copied.
pub fn binary_rootfs(binary: &Path, dir: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    let name = binary.file_name().context("binary name")?;
    for sub in ["bin", "etc/ssl/certs", "tmp"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    // Anyone's scratch space, as on any system.
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    let copy = dir.join("bin").join(name);
    std::fs::copy(binary, &copy).with_context(|| format!("copying {}", binary.display()))?;
    // Debug information is no use in an image (a debug build's is most of
    // the binary).
    crate::cmd::quiet(Command::new("strip").arg("--strip-debug").arg(&copy))?;
    // One entrypoint for every image (deploy/images/Dockerfile's too).
    std::os::unix::fs::symlink(name, dir.join("bin/entrypoint"))?;
    let ldd = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd")?;
    for library in shared_libraries(&String::from_utf8_lossy(&ldd.stdout)) {
        let target = dir.join(library.strip_prefix("/").unwrap_or(&library));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // The file itself, under the name the loader looks for.
        std::fs::copy(&library, &target)
            .with_context(|| format!("copying {}", library.display()))?;
    }
    let certs = Path::new("/etc/ssl/certs/ca-certificates.crt");
    if certs.is_file() {
        std::fs::copy(certs, dir.join("etc/ssl/certs/ca-certificates.crt"))?;
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n",
    )?;
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnonroot:x:65532:\n")?;
    Ok(())
}

/// The absolute paths in `ldd`'s output (the vDSO has none).
fn shared_libraries(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// The user every Nanny image runs as.
pub const NONROOT: &str = "65532:65532";

/// Builds `bins` of `package` in release mode; returns their paths.
///
/// # Errors
/// When cargo fails.
pub fn release_binaries(package: &str, bins: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    command.args(["build", "--release", "--locked", "-p", package]);
    for bin in bins {
        command.args(["--bin", bin]);
    }
    let status = command.status().context("running cargo build --release")?;
    anyhow::ensure!(
        status.success(),
        "cargo build --release -p {package} failed ({status})"
    );
    Ok(bins
        .iter()
        .map(|b| target_dir().join("release").join(b))
        .collect())
}

/// The image of one binary, `nanny.local/NAME:VERSION`, written to
/// `out_dir`; returns the archive and the reference.
///
/// # Errors
/// When the root filesystem or the archive cannot be written.
pub fn of_binary(binary: &Path, out_dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    let name = binary
        .file_name()
        .context("binary name")?
        .to_string_lossy()
        .into_owned();
    let reference = format!("nanny.local/{name}:{}", env!("CARGO_PKG_VERSION"));
    let archive = pack(
        binary,
        &reference,
        &["/bin/entrypoint"],
        out_dir,
        |_| Ok(()),
    )?;
    Ok((archive, reference))
}

/// Writes the image `reference` of `binary` ([`binary_rootfs`], then `add`
/// puts whatever else it needs into the root filesystem) to `out_dir`,
/// running as [`NONROOT`]; returns the archive.
fn pack(
    binary: &Path,
    reference: &str,
    entrypoint: &[&str],
    out_dir: &Path,
    add: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    let name = binary.file_name().context("binary name")?.to_string_lossy();
    let rootfs = out_dir.join(format!("{name}-rootfs"));
    binary_rootfs(binary, &rootfs)?;
    add(&rootfs)?;
    let archive = write(
        &Image {
            name: reference,
            rootfs: &rootfs,
            entrypoint,
            user: NONROOT,
        },
        out_dir,
    )?;
    std::fs::remove_dir_all(&rootfs)?;
    Ok(archive)
}

/// The model server's image: the Ollama the analyzer's tests build, serving
/// the local model from its store baked in at `/models` (the chart's
/// `ollama.modelsInImage`), so a cluster without a registry or the
/// internet runs it.
///
/// # Errors
/// When Ollama or the model is not installed (`cargo xtask tools`), or the
/// archive cannot be written.
pub fn ollama(out_dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    use nanny_test_util::ollama;
    anyhow::ensure!(
        ollama::is_installed(),
        "Ollama and its model are not installed: run `cargo xtask tools`"
    );
    let version = ollama::OLLAMA.version.trim_start_matches('v');
    let reference = format!("nanny.local/ollama-smollm2:{version}");
    anyhow::ensure!(
        reference == nanny_test_util::real_node::OLLAMA_IMAGE,
        "the model server's image is {reference}, the chart's real-node values and tests expect {}",
        nanny_test_util::real_node::OLLAMA_IMAGE
    );
    let archive = pack(
        &ollama::OLLAMA.binary(),
        &reference,
        &["/bin/ollama", "serve"],
        out_dir,
        |rootfs| {
            crate::cmd::quiet(
                Command::new("cp")
                    .arg("-r")
                    .arg(ollama::dir().join("models"))
                    .arg(rootfs.join("models")),
            )
        },
    )?;
    Ok((archive, reference))
}

/// What `cargo xtask images` builds: (package, binary).
const IMAGES: [(&str, &str); 7] = [
    ("nanny-collector", "nanny-collector"),
    ("nanny-analyzer", "nanny-analyzer"),
    ("nanny-safety-gate", "nanny-safety-gate"),
    ("nanny-remediator", "nanny-remediator"),
    ("nanny-coordinator", "nanny-coordinator"),
    ("nannyctl", "nannyctl"),
    ("nanny-fault", "nanny-fault"),
];

/// Which build the images are made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `cargo build --release`, package by package.
    Release,
    /// The binaries `cargo build --workspace --bins` left in target/debug.
    Debug,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Debug => "debug",
        }
    }

    /// `target/images/<profile>`.
    fn out_dir(self) -> PathBuf {
        target_dir().join("images").join(self.name())
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from)
}

/// Builds the images of the five services, nannyctl and the fault app
/// from `profile`'s binaries into `target/images/<profile>/`, replacing
/// what was there; returns each archive and reference.
///
/// # Errors
/// When a build fails, a debug binary is missing, or an archive cannot be
/// written.
pub fn build(profile: Profile) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let out = profile.out_dir();
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let mut built = Vec::new();
    for (package, bin) in IMAGES {
        let binary = match profile {
            Profile::Release => release_binaries(package, &[bin])?.remove(0),
            Profile::Debug => {
                let binary = target_dir().join("debug").join(bin);
                anyhow::ensure!(
                    binary.is_file(),
                    "{} is missing: run `cargo build --workspace --bins` first",
                    binary.display()
                );
                binary
            }
        };
        built.push(of_binary(&binary, &out)?);
    }
    built.push(ollama(&out)?);
    println!(
        "==> images of the {} binaries written to {}",
        profile.name(),
        out.display()
    );
    Ok(built)
}

/// Imports the images [`build`] last wrote for the debug profile into the
/// real node (what the cluster tests install the chart with).
///
/// # Errors
/// When none were built or `ctr` refuses one.
pub fn import_built() -> anyhow::Result<()> {
    if !crate::cluster::real_node_running() {
        return Ok(());
    }
    let dir = Profile::Debug.out_dir();
    let mut archives: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}: run `cargo xtask images --debug`", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tar"))
        .collect();
    archives.sort();
    anyhow::ensure!(
        !archives.is_empty(),
        "no images in {}: run `cargo xtask images --debug`",
        dir.display()
    );
    for archive in &archives {
        crate::cluster::import_image(archive)
            .with_context(|| format!("importing {}", archive.display()))?;
    }
    println!(
        "==> {} images imported into the real node from {}",
        archives.len(),
        dir.display()
    );
    Ok(())
}

/// `cargo xtask images`: [`build`], and the images imported into the real
/// node's containerd when the local cluster runs one.
///
/// # Errors
/// When a build, an archive or an import fails.
pub fn all(profile: Profile) -> anyhow::Result<()> {
    let import = crate::cluster::real_node_running();
    for (archive, reference) in build(profile)? {
        let size = std::fs::metadata(&archive)?.len();
        if import {
            crate::cluster::import_image(&archive)?;
        }
        println!(
            "==> {reference}: {} ({:.1} MiB){}",
            archive.display(),
            size as f64 / f64::from(1u32 << 20),
            if import {
                ", imported into the real node"
            } else {
                ""
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_libraries_are_the_absolute_paths_ldd_lists() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            shared_libraries(ldd),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }
}
