//! External tools built from Go modules and cached outside the repo, keyed by
//! version, each with a stamp file written only after a successful build.

use std::path::PathBuf;

/// One tool installed with `go install`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoTool {
    /// Cache folder name and binary name.
    pub name: &'static str,
    /// Module version.
    pub version: &'static str,
    /// The `go install` package path (without `@version`).
    pub package: &'static str,
    /// Whether the build needs cgo.
    pub cgo: bool,
}

/// grpcurl: the client our users debug services with.
pub const GRPCURL: GoTool = GoTool {
    name: "grpcurl",
    version: "v1.9.3",
    package: "github.com/fullstorydev/grpcurl/cmd/grpcurl",
    cgo: false,
};

/// buf: protobuf lint and breaking-change checks.
pub const BUF: GoTool = GoTool {
    name: "buf",
    version: "v1.75.0",
    package: "github.com/bufbuild/buf/cmd/buf",
    cgo: false,
};

/// kwok: simulates nodes and pod lifecycles. Pinned to v0.7.0: v0.8.0
/// dropped the built-in default stages and fetches a manifest at run time.
pub const KWOK: GoTool = GoTool {
    name: "kwok",
    version: "v0.7.0",
    package: "sigs.k8s.io/kwok/cmd/kwok",
    cgo: false,
};

/// kwokctl: starts and stops the local cluster's processes.
pub const KWOKCTL: GoTool = GoTool {
    name: "kwokctl",
    version: "v0.7.0",
    package: "sigs.k8s.io/kwok/cmd/kwokctl",
    cgo: false,
};

/// helm: chart lint, template and install.
pub const HELM: GoTool = GoTool {
    name: "helm",
    version: "v3.19.0",
    package: "helm.sh/helm/v3/cmd/helm",
    cgo: false,
};

/// The `go install`-able tools the unit, component and e2e tests need.
pub const TEST_TOOLS: [GoTool; 2] = [GRPCURL, BUF];

/// The `go install`-able tools the local cluster needs.
pub const CLUSTER_TOOLS: [GoTool; 3] = [KWOK, KWOKCTL, HELM];

/// Kubernetes control-plane version built from `k8s.io/kubernetes`.
pub const KUBERNETES_VERSION: &str = "v1.34.2";

/// etcd version built from `go.etcd.io/etcd/server/v3`.
pub const ETCD_VERSION: &str = "v3.6.5";

/// Folder holding kube-apiserver, kube-controller-manager and kube-scheduler.
pub fn kubernetes_dir() -> PathBuf {
    cache_dir()
        .join("tools")
        .join(format!("kubernetes-{KUBERNETES_VERSION}"))
}

/// Folder holding the real node's kubelet and kube-proxy (built like the
/// control plane).
pub fn kubelet_dir() -> PathBuf {
    cache_dir()
        .join("tools")
        .join(format!("kubelet-{KUBERNETES_VERSION}"))
}

/// CoreDNS version built for the real node's cluster DNS.
pub const COREDNS_VERSION: &str = "v1.13.1";

/// Folder holding CoreDNS (the plugins the local cluster's DNS needs).
pub fn coredns_dir() -> PathBuf {
    cache_dir()
        .join("tools")
        .join(format!("coredns-{COREDNS_VERSION}"))
}

/// The etcd install folder.
pub fn etcd_dir() -> PathBuf {
    cache_dir()
        .join("tools")
        .join(format!("etcd-{ETCD_VERSION}"))
}

/// `$NANNY_CACHE_DIR`, else `~/.cache/nanny`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NANNY_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache/nanny")
}

impl GoTool {
    /// The versioned install folder.
    pub fn dir(&self) -> PathBuf {
        cache_dir()
            .join("tools")
            .join(format!("{}-{}", self.name, self.version))
    }

    /// Path of the binary (present only once built).
    pub fn binary(&self) -> PathBuf {
        self.dir().join("bin").join(self.name)
    }

    /// The stamp written after a successful build.
    pub fn stamp(&self) -> PathBuf {
        self.dir().join(".stamp")
    }

    /// Whether a completed build is cached.
    pub fn is_installed(&self) -> bool {
        self.stamp().is_file() && self.binary().is_file()
    }

    /// The binary, or an error telling how to build it.
    ///
    /// # Errors
    /// When the tool has not been built into the cache.
    pub fn require(&self) -> anyhow::Result<PathBuf> {
        anyhow::ensure!(
            self.is_installed(),
            "{} {} is not built; run `cargo xtask tools` (it caches under {})",
            self.name,
            self.version,
            cache_dir().display()
        );
        Ok(self.binary())
    }
}
