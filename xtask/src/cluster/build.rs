//! `cargo xtask cluster build`: the control plane and tools, built from
//! upstream Go modules and cached under `~/.cache/nanny/tools/<name>-<version>`
//! with a stamp written only after a successful build.

use std::{path::Path, process::Command};

use anyhow::Context as _;
use nanny_test_util::tools::{
    CLUSTER_TOOLS, COREDNS_VERSION, ETCD_VERSION, KUBERNETES_VERSION, TEST_TOOLS, cache_dir,
    coredns_dir, etcd_dir, kubelet_dir, kubernetes_dir,
};

use crate::go::{go_command, install_all, run_with_progress};

/// The three control-plane binaries built from `k8s.io/kubernetes`.
pub const KUBE_BINARIES: [&str; 4] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
];

/// Builds everything missing; a second run does nothing.
pub fn all() -> anyhow::Result<()> {
    install_all(&TEST_TOOLS)?;
    install_all(&CLUSTER_TOOLS)?;
    kubernetes()?;
    etcd()?;
    prometheus()?;
    node_binaries()?;
    coredns()?;
    node_packages()?;
    println!(
        "==> cluster build: everything is cached under {}",
        cache_dir().display()
    );
    Ok(())
}

fn is_built(dir: &Path, binaries: &[&str]) -> bool {
    dir.join(".stamp").is_file() && binaries.iter().all(|b| dir.join("bin").join(b).is_file())
}

/// kube-apiserver, kube-controller-manager, kube-scheduler and kubectl.
fn kubernetes() -> anyhow::Result<()> {
    let dir = kubernetes_dir();
    if is_built(&dir, &KUBE_BINARIES) {
        return Ok(());
    }
    build_kubernetes(
        &dir,
        &KUBE_BINARIES,
        "kube-apiserver, kube-controller-manager, kube-scheduler, kubectl",
    )
}

/// The real node's kubelet and kube-proxy.
pub const NODE_BINARIES: [&str; 2] = ["kubelet", "kube-proxy"];

/// The real node's kubelet and kube-proxy, from the same module, cached
/// apart.
fn node_binaries() -> anyhow::Result<()> {
    let dir = kubelet_dir();
    if is_built(&dir, &NODE_BINARIES) {
        return Ok(());
    }
    build_kubernetes(&dir, &NODE_BINARIES, "kubelet, kube-proxy")
}

/// CoreDNS for the real node's pods, with only the plugins the cluster's
/// DNS needs: a small main module importing them, so the build compiles
/// neither the cloud DNS back ends nor their SDKs.
fn coredns() -> anyhow::Result<()> {
    let dir = coredns_dir();
    if is_built(&dir, &["coredns"]) {
        return Ok(());
    }
    let src = cache_dir()
        .join("src")
        .join(format!("coredns-{COREDNS_VERSION}"));
    std::fs::create_dir_all(&src)?;
    std::fs::write(src.join("main.go"), COREDNS_MAIN)?;
    std::fs::write(
        src.join("go.mod"),
        format!(
            "module nanny.local/coredns\n\ngo 1.24.0\n\nrequire github.com/coredns/coredns {COREDNS_VERSION}\n"
        ),
    )?;
    let mut tidy = go_command();
    tidy.args(["mod", "tidy"]).current_dir(&src);
    run_with_progress(
        &format!("coredns {COREDNS_VERSION} (resolve modules)"),
        tidy,
    )?;
    std::fs::create_dir_all(dir.join("bin"))?;
    let mut build = go_command();
    build
        .env("CGO_ENABLED", "0")
        .args(["build", "-trimpath", "-ldflags", "-s -w", "-o"])
        .arg(dir.join("bin/coredns"))
        .arg(".")
        .current_dir(&src);
    run_with_progress(&format!("coredns {COREDNS_VERSION}"), build)?;
    std::fs::write(
        dir.join(".stamp"),
        format!("github.com/coredns/coredns@{COREDNS_VERSION}\n"),
    )?;
    Ok(())
}

/// CoreDNS's main with the plugins the Corefile in `node.rs` uses, in
/// CoreDNS's own directive order.
const COREDNS_MAIN: &str = r#"// Written by `cargo xtask cluster build`.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	dnsserver.Directives = []string{"bind", "ready", "errors", "cache", "kubernetes"}
}

func main() { coremain.Run() }
"#;

/// Builds `binaries` of `k8s.io/kubernetes/cmd` into `dir/bin` and stamps
/// `dir`.
///
/// `go install k8s.io/kubernetes/cmd/...@v` fails because k8s's go.mod
/// replaces its `k8s.io/*` staging modules with local paths, so a small
/// wrapper module requires `k8s.io/kubernetes` and points every staging
/// module at its published `v0.Y.Z` tag instead.
fn build_kubernetes(dir: &Path, binaries: &[&str], what: &str) -> anyhow::Result<()> {
    let version = KUBERNETES_VERSION;
    let src = cache_dir()
        .join("src")
        .join(format!("kubernetes-{version}"));
    std::fs::create_dir_all(&src)?;

    let download = go_command()
        .args([
            "mod",
            "download",
            "-json",
            &format!("k8s.io/kubernetes@{version}"),
        ])
        .current_dir(&src)
        .output()
        .context("go mod download k8s.io/kubernetes")?;
    anyhow::ensure!(
        download.status.success(),
        "kubernetes {version}: `go mod download` failed:\n{}{}",
        String::from_utf8_lossy(&download.stdout),
        String::from_utf8_lossy(&download.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&download.stdout)?;
    let upstream_mod = info["GoMod"]
        .as_str()
        .context("GoMod path in `go mod download -json`")?;
    let upstream = std::fs::read_to_string(upstream_mod)?;
    std::fs::write(src.join("go.mod"), wrapper_go_mod(&upstream, version)?)?;

    let mut get = go_command();
    get.args(["get", &format!("k8s.io/kubernetes@{version}")])
        .current_dir(&src);
    run_with_progress(&format!("kubernetes {version} (resolve modules)"), get)?;

    // Stamp the version so /version (and Helm's kubeVersion checks) are right.
    let (major, minor) = major_minor(version)?;
    let mut ldflags = String::from("-s -w");
    for pkg in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        ldflags.push_str(&format!(
            " -X {pkg}.gitVersion={version} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean"
        ));
    }
    std::fs::create_dir_all(dir.join("bin"))?;
    let mut build = go_command();
    build
        .env("CGO_ENABLED", "0")
        .args(["build", "-trimpath", "-ldflags", &ldflags, "-o"])
        .arg(format!("{}/", dir.join("bin").display()))
        .args(
            binaries
                .iter()
                .map(|b| format!("k8s.io/kubernetes/cmd/{b}")),
        )
        .current_dir(&src);
    run_with_progress(&format!("{what} {version}"), build)?;
    std::fs::write(dir.join(".stamp"), format!("k8s.io/kubernetes@{version}\n"))?;
    Ok(())
}

/// The wrapper module's go.mod for building `k8s.io/kubernetes` at `version`.
fn wrapper_go_mod(upstream: &str, version: &str) -> anyhow::Result<String> {
    let (major, minor) = major_minor(version)?;
    let patch = version.rsplit('.').next().context("patch version")?;
    let staging_tag = format!("v0.{minor}.{patch}");
    anyhow::ensure!(
        major == "1",
        "unexpected Kubernetes major version in {version}"
    );
    let mut out = String::from("module nanny.local/kubernetes-build\n\ngo 1.24\n\n");
    // Kubernetes pins GODEBUG defaults in its go.mod; the binaries need the same.
    for line in upstream.lines().filter(|l| l.starts_with("godebug")) {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!(
        "\nrequire k8s.io/kubernetes {version}\n\nreplace (\n"
    ));
    let mut staging = 0;
    for line in upstream.lines() {
        if let Some((module, target)) = line.trim().split_once("=>")
            && target.trim().starts_with("./staging/")
        {
            let module = module.trim();
            out.push_str(&format!("\t{module} => {module} {staging_tag}\n"));
            staging += 1;
        }
    }
    anyhow::ensure!(
        staging > 0,
        "no ./staging replaces found in k8s.io/kubernetes {version}'s go.mod"
    );
    out.push_str(")\n");
    Ok(out)
}

fn major_minor(version: &str) -> anyhow::Result<(&str, &str)> {
    let mut parts = version.trim_start_matches('v').split('.');
    let major = parts.next().context("major version")?;
    let minor = parts.next().context("minor version")?;
    Ok((major, minor))
}

/// etcd, through a wrapper `main` calling `etcdmain.Main`: etcd's server
/// module replaces its siblings with `../` paths, so `go install` fails.
fn etcd() -> anyhow::Result<()> {
    let dir = etcd_dir();
    if is_built(&dir, &["etcd"]) {
        return Ok(());
    }
    let src = cache_dir().join("src").join(format!("etcd-{ETCD_VERSION}"));
    std::fs::create_dir_all(&src)?;
    std::fs::write(
        src.join("go.mod"),
        "module nanny.local/etcd-build\n\ngo 1.24\n",
    )?;
    std::fs::write(
        src.join("main.go"),
        "package main\n\nimport (\n\t\"os\"\n\n\t\"go.etcd.io/etcd/server/v3/etcdmain\"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n",
    )?;
    let mut get = go_command();
    get.args(["get", &format!("go.etcd.io/etcd/server/v3@{ETCD_VERSION}")])
        .current_dir(&src);
    run_with_progress(&format!("etcd {ETCD_VERSION} (resolve modules)"), get)?;
    let mut tidy = go_command();
    tidy.args(["mod", "tidy"]).current_dir(&src);
    run_with_progress(&format!("etcd {ETCD_VERSION} (tidy)"), tidy)?;
    std::fs::create_dir_all(dir.join("bin"))?;
    let mut build = go_command();
    build
        .env("CGO_ENABLED", "0")
        .args(["build", "-trimpath", "-ldflags", "-s -w", "-o"])
        .arg(dir.join("bin").join("etcd"))
        .arg(".")
        .current_dir(&src);
    run_with_progress(&format!("etcd {ETCD_VERSION}"), build)?;
    std::fs::write(
        dir.join(".stamp"),
        format!("go.etcd.io/etcd/server/v3@{ETCD_VERSION}\n"),
    )?;
    Ok(())
}

/// Debian's Prometheus, installed when missing.
fn prometheus() -> anyhow::Result<()> {
    if which("prometheus") {
        return Ok(());
    }
    apt_install(&["prometheus"])
}

/// What the real node runs on, from Debian when missing: containerd, runc,
/// the CNI plugins, iptables, conntrack, and a static busybox for the
/// pause and test images.
fn node_packages() -> anyhow::Result<()> {
    let missing = [
        ("containerd", "containerd"),
        ("runc", "runc"),
        ("iptables", "iptables"),
        ("conntrack", "conntrack"),
        ("openssl", "openssl"),
    ]
    .into_iter()
    .filter(|(program, _)| !which(program))
    .map(|(_, package)| package)
    .chain(
        (!Path::new(CNI_BIN_DIR).join("bridge").is_file()).then_some("containernetworking-plugins"),
    )
    .chain((!Path::new(BUSYBOX).is_file()).then_some("busybox-static"))
    .collect::<Vec<_>>();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing)
}

/// Where Debian's containernetworking-plugins puts the plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// Debian's busybox-static.
pub const BUSYBOX: &str = "/bin/busybox";

/// `apt-get install` of Debian `packages`, after an update.
fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    println!("==> installing Debian's {}", packages.join(", "));
    let update = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .context("apt-get update")?;
    anyhow::ensure!(update.success(), "apt-get update failed ({update})");
    let install = Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages)
        .status()
        .context("apt-get install")?;
    anyhow::ensure!(
        install.success(),
        "apt-get install {} failed ({install}); install them by hand",
        packages.join(" ")
    );
    Ok(())
}

/// Whether `program` is on PATH.
pub fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSTREAM: &str = "module k8s.io/kubernetes\n\ngo 1.24.0\n\ngodebug default=go1.24\n\nrequire (\n\tk8s.io/api v0.0.0\n)\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/client-go => ./staging/src/k8s.io/client-go\n\tgithub.com/x/y => github.com/x/y v1.0.0\n)\n";

    #[test]
    fn wrapper_replaces_staging_modules_with_published_tags() {
        let go_mod = wrapper_go_mod(UPSTREAM, "v1.34.2").unwrap();
        assert!(go_mod.contains("godebug default=go1.24\n"), "{go_mod}");
        assert!(
            go_mod.contains("require k8s.io/kubernetes v1.34.2\n"),
            "{go_mod}"
        );
        assert!(
            go_mod.contains("\tk8s.io/api => k8s.io/api v0.34.2\n"),
            "{go_mod}"
        );
        assert!(
            go_mod.contains("\tk8s.io/client-go => k8s.io/client-go v0.34.2\n"),
            "{go_mod}"
        );
        assert!(
            !go_mod.contains("github.com/x/y"),
            "non-staging replaces are not copied: {go_mod}"
        );
    }

    #[test]
    fn wrapper_needs_staging_replaces() {
        assert!(wrapper_go_mod("module k8s.io/kubernetes\n", "v1.34.2").is_err());
    }
}
